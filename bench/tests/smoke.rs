//! CI's check that the benchmark harness keeps working: every scenario at the tiny size,
//! through the real binary (which re-executes itself as the sidecar child).

use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn every_scenario_runs_at_the_tiny_size() {
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_cdc-bench"))
        .args(["all", "--size", "tiny"])
        .output()
        .expect("cdc-bench runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "cdc-bench failed\n{stdout}\n{stderr}");
    for section in [
        "### Throughput (1) and limits (2)",
        "### Latency (3)",
        "### Idle cost (4)",
        "### Compression (5)",
        "### Backlog catch-up (issue 10)",
    ] {
        assert!(stdout.contains(section), "missing {section:?} in\n{stdout}");
    }
    for figure in [
        "1 table, live | changes/s",
        "sidecar / raw read",
        "commit → Redis subscriber, p99",
        "commit → Pulsar consumer, p99",
        "queries per tick",
        "ZSTD",
        "longest single statement the stand-in executed",
        "Bound: longest statement ≤",
    ] {
        assert!(stdout.contains(figure), "missing {figure:?} in\n{stdout}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the smoke run must stay under a minute; took {:?}",
        started.elapsed()
    );
}
