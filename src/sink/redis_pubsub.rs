//! The Redis Pub/Sub sink: `PUBLISH <channel> <payload>`, compressed above a threshold.
//! Pub/Sub keeps nothing for absent subscribers, so this is the fast fan-out path and
//! Pulsar the durable one; the sidecar still waits for `PUBLISH` to be answered so a
//! Redis outage holds the checkpoint back rather than silently dropping batches.

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use redis::aio::ConnectionManager;

use super::{Compressor, Sink, SinkError};
use crate::config::{Compression, RedisPubSubConfig};
use crate::envelope::Batch;

/// Publishes batches to Redis channels.
pub struct RedisPubSubSink {
    conn: ConnectionManager,
    compression: Compression,
    compressor: Compressor,
    threshold: usize,
}

impl RedisPubSubSink {
    /// Connects (the connection manager reconnects by itself).
    pub async fn connect(client: redis::Client, config: &RedisPubSubConfig) -> Result<Self, SinkError> {
        let conn = ConnectionManager::new(client).await?;
        Ok(Self {
            conn,
            compression: config.compression,
            compressor: Compressor::new(config.compression)?,
            threshold: config.compression_threshold_bytes,
        })
    }

    async fn send(&self, batch: &Batch) -> Result<u64, SinkError> {
        let mut conn = self.conn.clone();
        let compressed;
        let payload: &[u8] = if self.compression != Compression::None && batch.payload.len() >= self.threshold {
            compressed = self.compressor.compress(&batch.payload)?;
            &compressed
        } else {
            &batch.payload
        };
        let _receivers: i64 = redis::cmd("PUBLISH")
            .arg(&batch.route.channel)
            .arg(payload)
            .query_async(&mut conn)
            .await?;
        Ok(payload.len() as u64)
    }
}

impl Sink for RedisPubSubSink {
    fn name(&self) -> &'static str {
        "redis_pubsub"
    }

    fn publish<'a>(&'a self, batch: &'a Batch) -> BoxFuture<'a, Result<u64, SinkError>> {
        self.send(batch).boxed()
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        async {}.boxed()
    }
}
