//! Sinks: where encoded batches go. A trait because there are two (Pulsar and Redis
//! Pub/Sub) and tests wrap them to inject faults.

mod compression;
mod pulsar;
mod redis_pubsub;

pub use compression::{compress, Compressor};
pub use pulsar::PulsarSink;
pub use redis_pubsub::RedisPubSubSink;

use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;

/// Where one table's batches go, resolved once from the config templates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// `schema.table`, the metric label and the Pulsar message key.
    pub table: String,
    /// Pulsar topic.
    pub topic: String,
    /// Redis channel.
    pub channel: String,
}

/// What a batch holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchKind {
    /// Changes read from `CHANGETABLE(CHANGES …)`.
    Changes,
    /// Rows of a snapshot chunk.
    Snapshot,
    /// The control event announcing a resync.
    Resync,
}

impl BatchKind {
    /// The envelope's `kind` string.
    pub fn as_str(self) -> &'static str {
        match self {
            BatchKind::Changes => "changes",
            BatchKind::Snapshot => "snapshot",
            BatchKind::Resync => "resync",
        }
    }
}

/// How many changes of each op a batch holds, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpCounts {
    /// Inserts.
    pub insert: u64,
    /// Updates.
    pub update: u64,
    /// Deletes.
    pub delete: u64,
    /// Snapshot reads.
    pub read: u64,
}

impl OpCounts {
    /// Total changes.
    pub fn total(&self) -> u64 {
        self.insert + self.update + self.delete + self.read
    }
}

/// One encoded envelope, ready for every sink.
#[derive(Debug, Clone)]
pub struct Batch {
    /// The table's destinations.
    pub route: Arc<Route>,
    /// What it holds.
    pub kind: BatchKind,
    /// The checkpoint before this batch.
    pub from_version: i64,
    /// The checkpoint once this batch is delivered.
    pub to_version: i64,
    /// Change counts by op.
    pub ops: OpCounts,
    /// The JSON envelope (uncompressed; each sink compresses as configured).
    pub payload: Bytes,
}

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
