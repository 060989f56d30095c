//! Throughput guards for the paths benchmarks lean on: committing changes through
//! [`Engine::transaction`] and reading them back with the sidecar's change query.
//! Bounds are generous (debug builds, shared CI cores); they catch accidental
//! O(n) scans per call, not small regressions.

mod engine_support;

use std::time::{Duration, Instant};

use engine_support::*;
use testkit::mssql::engine::Engine;
use testkit::mssql::types::{BackendSession, Value};

/// Named `engine::…` so `cargo test -p testkit engine` selects these tests.
mod engine {
    use super::*;

    fn load(engine: &Engine, txns: i64, per_txn: i64) {
        for t in 0..txns {
            engine
                .transaction("Shop", |x| {
                    for i in 0..per_txn {
                        let id = t * per_txn + i;
                        x.insert(
                            "dbo.Orders",
                            vec![Value::Int(id), Value::String(format!("customer {id}")), Value::Int(id)],
                        )?;
                    }
                    Ok(())
                })
                .expect("txn");
        }
    }

    #[test]
    fn engine_changes_flow_in_and_out_at_benchmark_rates() {
        let engine = shop();
        let started = Instant::now();
        load(&engine, 100, 1000);
        let write = started.elapsed();
        let mut session = engine.admin_session("Shop").expect("session");
        let started = Instant::now();
        let mut seen = 0;
        let mut from = 0;
        while from < 100 {
            let to = (from + 10).min(100);
            let out = session.execute(CHANGE_QUERY, &[p("@P1", Value::Int(from)), p("@P2", Value::Int(to))]);
            seen += rows(&out).len();
            from = to;
        }
        let read = started.elapsed();
        assert_eq!(seen, 100_000);
        eprintln!("100k changes: write {write:?}, read {read:?}");
        assert!(write < Duration::from_secs(20), "write {write:?}");
        assert!(read < Duration::from_secs(20), "read {read:?}");
    }
}
