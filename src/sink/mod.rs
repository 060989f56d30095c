//! Sinks: where encoded batches go. A trait because there are two (Pulsar and Redis
//! Pub/Sub) that the delivery task treats alike.

mod compression;
mod pulsar;
mod redis_pubsub;

pub use compression::{compress, decompress, Compressor};
pub use pulsar::PulsarSink;
pub use redis_pubsub::RedisPubSubSink;

use std::sync::Arc;

use crate::config::Config;
use crate::envelope::{Batch, Route};

use futures_util::future::BoxFuture;

/// A failed publish. Always retried by the caller; the kind is a bounded label.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("pulsar: {0}")]
    /// The Pulsar client or broker refused the send.
    Pulsar(#[from] ::pulsar::Error),
    #[error("pulsar: no receipt within {0:?}")]
    /// No receipt within `sinks.pulsar.send_timeout_ms`.
    PulsarTimeout(std::time::Duration),
    #[error("redis: {0}")]
    /// Redis failed or is unreachable.
    Redis(#[from] redis::RedisError),
    #[error("compression: {0}")]
    /// Compressing the payload failed.
    Compression(#[from] std::io::Error),
}

/// A destination of batches.
///
/// Contract: [`publish`](Self::publish) returns `Ok` only once the destination has
/// acknowledged the batch (Pulsar: the broker's receipt; Redis: `PUBLISH` answered), and
/// only then may the caller count it delivered and move the checkpoint. Delivery is
/// at-least-once: after an error the caller publishes the same batch again, so consumers
/// must tolerate duplicates (dedupe on `table` + `to_version`). Batches of one table are
/// published one at a time, in order.
pub trait Sink: Send + Sync + 'static {
    /// The sink's name, a metric label.
    fn name(&self) -> &'static str;

    /// Publishes one batch; returns the bytes sent on the wire.
    fn publish<'a>(&'a self, batch: &'a Batch) -> BoxFuture<'a, Result<u64, SinkError>>;

    /// Flushes and closes connections at shutdown.
    fn close(&self) -> BoxFuture<'_, ()>;
}

/// Connects every enabled sink for `routes`. The Pulsar producers are named after the
/// `database`, one per topic.
pub async fn build(config: &Config, routes: &[Arc<Route>], database: &str) -> Result<Vec<Arc<dyn Sink>>, SinkError> {
    let mut sinks: Vec<Arc<dyn Sink>> = Vec::new();
    if config.sinks.pulsar.enabled {
        let name = format!("cdc-sidecar-{database}");
        sinks.push(Arc::new(
            PulsarSink::connect(&config.sinks.pulsar, routes, &name).await?,
        ));
    }
    if config.sinks.redis_pubsub.enabled {
        let rp = &config.sinks.redis_pubsub;
        let client = crate::config::redis_client(&rp.url, rp.password.as_ref())?;
        sinks.push(Arc::new(RedisPubSubSink::connect(client, rp).await?));
    }
    Ok(sinks)
}
