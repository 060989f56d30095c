//! The Pulsar sink: one producer per table topic, created up front so a bad URL or
//! token fails at start-up. A batch counts as published only once the broker's send
//! receipt arrives; the pulsar client compresses (the codec is in the message metadata,
//! so consumers decompress transparently) and reconnects by itself.
//!
//! The broker's `maxMessageSize` is enforced here, because the `pulsar` crate does not:
//! it ignores the limit the broker announces in CONNECTED, sends a larger message, the
//! broker closes the connection (disrupting every producer on it), and the crate resends
//! until the operation timeout, so the error looks like an outage and is retried
//! forever (testkit/tests/pulsar_max_message_size.rs). A message over
//! `sinks.pulsar.max_message_bytes` after compression is refused before it is sent.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use pulsar::compression::{
    Compression as PulsarCompression, CompressionLz4, CompressionSnappy, CompressionZlib, CompressionZstd,
};
use pulsar::producer::{Message, ProducerOptions};
use pulsar::{Authentication, ConnectionRetryOptions, OperationRetryOptions, Producer, Pulsar, TokioExecutor};
use tokio::sync::Mutex;

use super::{Sink, SinkError};
use crate::config::{Compression, PulsarConfig};
use crate::envelope::{Batch, Route};

/// Publishes batches to Pulsar topics.
pub struct PulsarSink {
    // Kept for the life of the sink: it owns the connections the producers use.
    _client: Pulsar<TokioExecutor>,
    // One lock per topic: tables publish concurrently, a table's batches in order.
    producers: HashMap<String, Arc<Mutex<Producer<TokioExecutor>>>>,
    send_timeout: Duration,
    /// The producers' codec and settings, to size a message as it is sent.
    compression: PulsarCompression,
    /// `sinks.pulsar.max_message_bytes`.
    max_message_bytes: usize,
    /// Envelopes up to this size fit whatever the codec (see `PulsarConfig::payload_budget`).
    payload_budget: usize,
}

impl PulsarSink {
    /// Connects and creates a producer for each route's topic.
    pub async fn connect(config: &PulsarConfig, routes: &[Arc<Route>], producer_name: &str) -> Result<Self, SinkError> {
        let mut builder = Pulsar::builder(config.url.as_str(), TokioExecutor)
            .with_connection_retry_options(ConnectionRetryOptions {
                min_backoff: Duration::from_millis(50),
                max_backoff: Duration::from_secs(5),
                max_retries: 5,
                connection_timeout: Duration::from_secs(10),
                ..Default::default()
            })
            .with_operation_retry_options(OperationRetryOptions {
                operation_timeout: Duration::from_millis(config.send_timeout_ms),
                retry_delay: Duration::from_millis(200),
                max_retries: Some(5),
            });
        if let Some(token) = &config.token {
            builder = builder.with_auth(Authentication {
                name: "token".into(),
                data: token.expose().as_bytes().to_vec(),
            });
        }
        let client = builder.build().await?;
        let options = ProducerOptions {
            compression: Some(match config.compression {
                Compression::None => PulsarCompression::None,
                Compression::Lz4 => PulsarCompression::Lz4(CompressionLz4::default()),
                Compression::Zstd => PulsarCompression::Zstd(CompressionZstd::default()),
                Compression::Snappy => PulsarCompression::Snappy(CompressionSnappy::default()),
                Compression::Zlib => PulsarCompression::Zlib(CompressionZlib::default()),
            }),
            batch_size: config.batching.then_some(100),
            batch_timeout: config.batching.then_some(Duration::from_millis(5)),
            block_queue_if_full: true,
            ..Default::default()
        };
        let compression = options.compression.clone().unwrap_or_default();
        let mut producers = HashMap::new();
        for route in routes {
            if producers.contains_key(&route.topic) {
                continue;
            }
            let producer = client
                .producer()
                .with_topic(route.topic.as_str())
                .with_name(format!("{producer_name}-{}", route.table))
                .with_options(options.clone())
                .build()
                .await?;
            producers.insert(route.topic.clone(), Arc::new(Mutex::new(producer)));
        }
        Ok(Self {
            _client: client,
            producers,
            send_timeout: Duration::from_millis(config.send_timeout_ms),
            compression,
            max_message_bytes: config.max_message_bytes,
            payload_budget: config.payload_budget(),
        })
    }

    async fn send(&self, batch: &Batch) -> Result<u64, SinkError> {
        if batch.payload.len() > self.payload_budget {
            // Rare (only a single change can be this large): size it exactly.
            let bytes = compressed_len(&self.compression, &batch.payload)?;
            if bytes > self.max_message_bytes {
                return Err(SinkError::TooLarge {
                    bytes,
                    max: self.max_message_bytes,
                });
            }
        }
        let Some(producer) = self.producers.get(&batch.route.topic) else {
            // Routes are fixed at start-up; a missing producer is a bug, not a runtime state.
            return Err(SinkError::Pulsar(pulsar::Error::Custom(format!(
                "no producer for topic {}",
                batch.route.topic
            ))));
        };
        let mut properties = HashMap::with_capacity(5);
        properties.insert("table".to_string(), batch.route.table.clone());
        properties.insert("format".to_string(), crate::envelope::FORMAT.to_string());
        properties.insert("kind".to_string(), batch.kind.as_str().to_string());
        properties.insert("from_version".to_string(), batch.from.version.to_string());
        properties.insert("to_version".to_string(), batch.to.version.to_string());
        if let Some(part) = batch.to.part {
            properties.insert("to_part".to_string(), part.to_string());
        }
        let message = Message {
            payload: batch.payload.to_vec(),
            properties,
            partition_key: Some(batch.route.table.clone()),
            ..Default::default()
        };
        let receipt = {
            let mut producer = producer.lock().await;
            producer.send_non_blocking(message).await?
        };
        match tokio::time::timeout(self.send_timeout, receipt).await {
            Ok(result) => {
                result?;
                Ok(batch.payload.len() as u64)
            }
            Err(_) => Err(SinkError::PulsarTimeout(self.send_timeout)),
        }
    }
}

impl Sink for PulsarSink {
    fn name(&self) -> &'static str {
        "pulsar"
    }

    fn publish<'a>(&'a self, batch: &'a Batch) -> BoxFuture<'a, Result<u64, SinkError>> {
        self.send(batch).boxed()
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        async move {
            for producer in self.producers.values() {
                let _ = producer.lock().await.close().await;
            }
        }
        .boxed()
    }
}

/// The size of `payload` once compressed as the `pulsar` crate compresses it
/// (`producer::compress_message` of pulsar 6.9: the same codecs, formats and settings):
/// what the broker's limit applies to.
fn compressed_len(compression: &PulsarCompression, payload: &[u8]) -> std::io::Result<usize> {
    Ok(match compression {
        PulsarCompression::None => payload.len(),
        PulsarCompression::Lz4(c) => lz4::block::compress(payload, Some(c.mode), false)?.len(),
        PulsarCompression::Zlib(c) => {
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), c.level);
            e.write_all(payload)?;
            e.finish()?.len()
        }
        PulsarCompression::Zstd(c) => zstd::encode_all(payload, c.level)?.len(),
        PulsarCompression::Snappy(_) => {
            let mut out = Vec::new();
            {
                let mut e = snap::write::FrameEncoder::new(&mut out);
                e.write_all(payload)?;
                e.flush()?;
            }
            out.len()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_sized_as_compressed() {
        // Incompressible: every codec keeps it about as large (LZ4 a little larger).
        let mut x: u32 = 1;
        let noise: Vec<u8> = (0..200_000)
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                (x >> 16) as u8
            })
            .collect();
        let repeated = vec![b'x'; 200_000];
        for codec in [
            PulsarCompression::None,
            PulsarCompression::Lz4(CompressionLz4::default()),
            PulsarCompression::Zlib(CompressionZlib::default()),
            PulsarCompression::Zstd(CompressionZstd::default()),
            PulsarCompression::Snappy(CompressionSnappy::default()),
        ] {
            let noisy = compressed_len(&codec, &noise).unwrap();
            assert!(noisy >= 195_000, "{codec:?}: {noisy}");
            assert!(noisy <= 200_000 + 200_000 / 255 + 1024, "{codec:?}: {noisy}");
            let small = compressed_len(&codec, &repeated).unwrap();
            match codec {
                PulsarCompression::None => assert_eq!(small, 200_000),
                _ => assert!(small < 20_000, "{codec:?}: {small}"),
            }
        }
    }
}
