//! The shipped migrations, run as an operator would (sqlcmd batches, variables) against
//! the SQL Server stand-in, leave a database that passes the sidecar's startup check
//! with the shipped `sidecar.toml`, and running them twice changes nothing.

use std::sync::Arc;

use cdc_sidecar::config::Config;
use testkit::mssql::engine::Engine;
use testkit::mssql::sample;
use testkit::mssql::wire::{MssqlServer, MssqlServerConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_prepare_everything_the_startup_check_requires_and_are_idempotent() {
    let engine = Engine::new();
    sample::setup(&engine).expect("migrations apply");
    let version = engine.current_version(sample::DATABASE);
    sample::setup(&engine).expect("migrations apply a second time");
    assert_eq!(
        engine.current_version(sample::DATABASE),
        version,
        "a rerun changes nothing"
    );

    let server = MssqlServer::start(Arc::new(engine.clone()), MssqlServerConfig::default())
        .await
        .unwrap();
    let shipped = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/sidecar.toml")).unwrap();
    let toml = shipped.replace("port = 1433", &format!("port = {}", server.addr().port()));
    let config = Config::from_toml_str(&toml).unwrap();
    let report = cdc_sidecar::check(&config).await.expect("check runs");
    assert!(report.problems.is_empty(), "{:#?}", report.problems);
    assert_eq!(report.tables.len(), config.tables.len());
    let lines = report.tables.iter().find(|t| t.name == "sales.OrderLines").unwrap();
    assert_eq!(
        lines.key.iter().map(|k| k.name.as_str()).collect::<Vec<_>>(),
        ["OrderId", "LineNo"]
    );
    assert!(lines.track_columns_updated);
    server.shutdown().await;
}

#[test]
fn sample_workload_commits_inserts_updates_and_deletes() {
    let engine = Engine::new();
    sample::setup(&engine).unwrap();
    let before = engine.current_version(sample::DATABASE).unwrap();
    for step in 0..20 {
        sample::workload_step(&engine, step).unwrap();
    }
    assert_eq!(
        engine.current_version(sample::DATABASE).unwrap(),
        before + 20,
        "one version per transaction"
    );
}
