//! The HTTP endpoints of a running sidecar: `/metrics`, `/healthz`, `/readyz`.

mod support;

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_endpoints_report_metrics_liveness_and_readiness() {
    use std::sync::Arc;
    use testkit::mssql::wire::{MssqlServer, MssqlServerConfig};
    let h = Harness::start().await;
    h.create_tracked_table("Orders", ORDERS);
    // A server of its own, so the test can take the database away.
    let server = MssqlServer::start(Arc::new(h.engine.clone()), MssqlServerConfig::default())
        .await
        .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let toml = h
        .config_toml(&["name = \"dbo.Orders\"\nsnapshot = \"never\""])
        .replace(
            &format!("port = {}", h.mssql.addr().port()),
            &format!("port = {}", server.addr().port()),
        )
        .replace("listen = \"127.0.0.1:0\"", &format!("listen = \"127.0.0.1:{port}\""));
    let sidecar = h.spawn(cdc_sidecar::config::Config::from_toml_str(&toml).unwrap());
    h.wait_checkpoint("dbo.Orders", "the starting checkpoint", |_| true)
        .await;
    wait_for("an idle probe", || {
        (sidecar.metric("cdc_sidecar_probes_total{result=\"idle\"}") >= 1.0).then_some(())
    })
    .await;
    assert_eq!(http_get(port, "/healthz").await.0, 200);
    assert_eq!(http_get(port, "/readyz").await.0, 200);
    let (status, body) = http_get(port, "/metrics").await;
    assert_eq!(status, 200);
    assert!(body.contains("cdc_sidecar_probes_total{result=\"idle\"}"), "{body}");
    assert!(
        body.contains("cdc_sidecar_checkpoint_version{table=\"dbo.Orders\"}"),
        "{body}"
    );
    assert!(
        cdc_sidecar::http::probe(
            format!("127.0.0.1:{port}").parse().unwrap(),
            std::time::Duration::from_secs(2)
        )
        .await
    );

    // WHEN the database goes away THEN readiness fails while liveness holds
    server.shutdown().await;
    let start = std::time::Instant::now();
    while http_get(port, "/readyz").await.0 != 503 {
        assert!(start.elapsed() < DEADLINE, "readiness never failed");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(http_get(port, "/healthz").await.0, 200);
    sidecar.stop().await;
}
