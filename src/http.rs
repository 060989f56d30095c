//! `/metrics`, `/healthz` and `/readyz`, side by side on one listener.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::health::Health;
use crate::metrics::Metrics;

#[derive(Clone)]
struct AppState {
    metrics: Metrics,
    health: Arc<Health>,
    /// Longest silence of the reader loop before liveness fails: a stuck loop
    /// (not a failing database, which still loops) should get the pod restarted.
    stall_after: Duration,
}

/// Serves until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    metrics: Metrics,
    health: Arc<Health>,
    stall_after: Duration,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(AppState {
            metrics,
            health,
            stall_after,
        });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

async fn metrics_handler(State(s): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
}

async fn healthz(State(s): State<AppState>) -> impl IntoResponse {
    let last = s.health.last_tick_ms.load(Ordering::Relaxed);
    let age = crate::checkpoint::now_ms().saturating_sub(last);
    if last == 0 || age <= s.stall_after.as_millis() as i64 {
        (StatusCode::OK, "ok\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "reader loop stalled\n")
    }
}

/// 503 while the source is unreachable or not yet checked. A table in error does not
/// fail readiness (the other tables stream on, and an unready pod would drop out of the
/// metrics Service just when its metrics matter); it is listed in the body instead.
async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    if !s.health.ready.load(Ordering::Relaxed) {
        return (StatusCode::SERVICE_UNAVAILABLE, "not ready\n".to_string());
    }
    let errored = s.health.errored_tables.lock().map(|l| l.clone()).unwrap_or_default();
    if errored.is_empty() {
        (StatusCode::OK, "ready\n".to_string())
    } else {
        (
            StatusCode::OK,
            format!("ready; tables in error: {}\n", errored.join(", ")),
        )
    }
}

/// `cdc-sidecar healthcheck`: GETs `/healthz` at `addr` with a bare HTTP/1.0 request,
/// so the container image needs no curl. Returns whether it answered 200.
pub async fn probe(addr: std::net::SocketAddr, timeout: Duration) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream
            .write_all(b"GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .await?;
        let mut buf = Vec::new();
        stream.read_to_end(&mut buf).await?;
        Ok::<_, std::io::Error>(buf.starts_with(b"HTTP/1.0 200") || buf.starts_with(b"HTTP/1.1 200"))
    };
    matches!(tokio::time::timeout(timeout, attempt).await, Ok(Ok(true)))
}
