//! Scenario 5: what each codec saves and costs, on real envelopes taken from the
//! Pulsar stand-in after the sidecar published them: full 1,000-change batches of the
//! benchmark order lines (a backlog read), and the small batches of the sample `Shop`
//! workload streamed live (a few changes per tick, across three tables).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use cdc_sidecar::config::{Compression, Config};
use testkit::mssql::sample;
use testkit::mssql::types::Value;

use crate::arrivals::{destinations, pulsar_to_version, wait_pulsar, EnvelopeHead};
use crate::report::{thousands, Section};
use crate::rig::{free_port, Rig, SidecarProcess, DB};
use crate::workload::LinesWorkload;
use crate::Size;

const CODECS: [(Compression, &str); 5] = [
    (Compression::None, "none"),
    (Compression::Lz4, "LZ4"),
    (Compression::Zstd, "ZSTD (level 3)"),
    (Compression::Snappy, "Snappy"),
    (Compression::Zlib, "ZLIB (fast)"),
];

pub async fn run(exe: &Path, size: &Size, section: &mut Section) -> Result<()> {
    let big = full_batches(exe, size).await?;
    measure(section, "order lines, 1,000-change batches", &big)?;
    match sample_batches(exe, size).await {
        Ok(small) => measure(section, "sample Shop workload, live batches", &small)?,
        Err(e) => section.note(format!("Sample `Shop` workload skipped: {e:#}")),
    }
    section.note(
        "Redis compresses only payloads ≥ `compression_threshold_bytes` (4,096 by default), so small live \
         batches go out as plain JSON there; Pulsar compresses every message with its codec."
            .into(),
    );
    Ok(())
}

/// Compresses every envelope with every codec; adds bytes/change and MB/s.
fn measure(section: &mut Section, case: &str, envelopes: &[Vec<u8>]) -> Result<()> {
    let changes: u64 = envelopes
        .iter()
        .map(|e| serde_json::from_slice::<EnvelopeHead>(e).map(|h| h.changes.len() as u64))
        .sum::<Result<u64, _>>()
        .context("envelope")?;
    let raw: usize = envelopes.iter().map(Vec::len).sum();
    let case = format!(
        "{case} ({} envelopes, {:.1} changes each)",
        envelopes.len(),
        changes as f64 / envelopes.len() as f64
    );
    for (codec, name) in CODECS {
        let mut bytes = 0usize;
        let mut passes = 0u32;
        let started = Instant::now();
        // Repeat until the timing is long enough to mean something.
        while passes == 0 || started.elapsed() < Duration::from_millis(200) {
            bytes = 0;
            for e in envelopes {
                bytes += cdc_sidecar::sink::compress(codec, e)?.len();
            }
            passes += 1;
        }
        let secs = started.elapsed().as_secs_f64() / passes as f64;
        let speed = raw as f64 / secs / 1e6;
        section.add(
            &case,
            name,
            format!(
                "{:.0} B/change ({:.1}×), {} MB/s",
                bytes as f64 / changes as f64,
                raw as f64 / bytes as f64,
                thousands(speed)
            ),
        );
    }
    // The Redis sink's own compressor, which keeps one ZSTD context between payloads
    // (`compress` above builds one per payload).
    let compressor = cdc_sidecar::sink::Compressor::new(Compression::Zstd)?;
    let mut bytes = 0usize;
    let mut passes = 0u32;
    let started = Instant::now();
    while passes == 0 || started.elapsed() < Duration::from_millis(200) {
        bytes = 0;
        for e in envelopes {
            bytes += compressor.compress(e)?.len();
        }
        passes += 1;
    }
    let secs = started.elapsed().as_secs_f64() / passes as f64;
    section.add(
        &case,
        "ZSTD (level 3), sink::Compressor (one reused context)",
        format!(
            "{:.0} B/change ({:.1}×), {} MB/s",
            bytes as f64 / changes as f64,
            raw as f64 / bytes as f64,
            thousands(raw as f64 / secs / 1e6)
        ),
    );
    Ok(())
}

/// Envelopes of a backlog of order-line changes read by a fresh sidecar.
async fn full_batches(exe: &Path, size: &Size) -> Result<Vec<Vec<u8>>> {
    let rig = Rig::start().await?;
    let names = rig.create_lines_tables(1)?;
    let n = size.compression_changes;
    let txn_rows = size.txn_rows.min(n);
    let engine = rig.engine.clone();
    let list = names.clone();
    let written = tokio::task::spawn_blocking(move || {
        let mut w = LinesWorkload::preload(&engine, &list, n, 1, txn_rows)?;
        let from = engine.current_version(DB).unwrap_or(0);
        w.commit(&engine, n).map(|written| (from, written))
    })
    .await??;
    let port = free_port()?;
    let toml = rig.config_toml(&names, "", port);
    let config = Config::from_toml_str(&toml)?;
    rig.set_checkpoints(&config, written.0).await?;
    let mut sidecar = SidecarProcess::spawn(exe, &toml, port)?;
    let (topic, _) = destinations(&names[0]);
    let last = written.1.last_version;
    wait_pulsar(&rig.pulsar, &[(topic.clone(), last)]).await?;
    sidecar.check_alive()?;
    let _ = sidecar.stop().await?;
    Ok(rig.pulsar.messages(&topic).into_iter().map(|m| m.payload).collect())
}

/// Envelopes of the sample workload (customers, orders, order lines) streamed live.
async fn sample_batches(exe: &Path, size: &Size) -> Result<Vec<Vec<u8>>> {
    let rig = Rig::start_sample().await?;
    let tables: Vec<String> = ["dbo.Customers", "dbo.Orders", "sales.OrderLines"]
        .map(String::from)
        .to_vec();
    let port = free_port()?;
    let toml = rig.config_toml(&tables, "", port);
    let config = Config::from_toml_str(&toml)?;
    let mut sidecar = SidecarProcess::spawn(exe, &toml, port)?;
    rig.wait_started(&config, &mut sidecar).await?;
    let engine = rig.engine.clone();
    let steps = size.sample_steps;
    tokio::task::spawn_blocking(move || -> Result<()> {
        let interval = Duration::from_millis(5);
        let start = Instant::now();
        for step in 0..steps {
            // Pacing the workload (200 steps/s), not synchronisation.
            let due = start + interval * step as u32;
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            sample::workload_step(&engine, step)?;
        }
        // One last change per table, so each has a batch at the final version.
        engine.transaction(DB, |txn| {
            txn.update(
                "dbo.Customers",
                &[Value::Int(1)],
                &[("Name", Value::String("last".into()))],
            )?;
            txn.update(
                "dbo.Orders",
                &[Value::Int(1)],
                &[("Note", Value::String("last".into()))],
            )?;
            txn.update(
                "sales.OrderLines",
                &[Value::Int(1), Value::Int(1)],
                &[("Qty", Value::Int(99))],
            )?;
            Ok(())
        })?;
        Ok(())
    })
    .await??;
    let last = rig.version();
    let wanted: Vec<(String, i64)> = tables.iter().map(|t| (destinations(t).0, last)).collect();
    wait_pulsar(&rig.pulsar, &wanted).await?;
    sidecar.check_alive()?;
    let _ = sidecar.stop().await?;
    let mut out = Vec::new();
    for (topic, _) in &wanted {
        if pulsar_to_version(&rig.pulsar, topic) < last {
            bail!("{topic}: last batch missing");
        }
        out.extend(rig.pulsar.messages(topic).into_iter().map(|m| m.payload));
    }
    Ok(out)
}
