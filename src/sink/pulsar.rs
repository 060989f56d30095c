//! The Pulsar sink: one producer per table topic, created up front so a bad URL or
//! token fails at start-up. A batch counts as published only once the broker's send
//! receipt arrives; the pulsar client compresses (the codec is in the message metadata,
//! so consumers decompress transparently) and reconnects by itself.

use std::collections::HashMap;
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
        })
    }

    async fn send(&self, batch: &Batch) -> Result<u64, SinkError> {
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
