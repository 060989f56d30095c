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

/// A failed publish. Always retried by the caller (no batch is ever skipped), slowly and
/// with the table shown in error when [`is_permanent`](SinkError::is_permanent).
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
    #[error("pulsar: the message is {bytes} bytes, over sinks.pulsar.max_message_bytes = {max}")]
    /// The message is larger than the broker accepts (`sinks.pulsar.max_message_bytes`),
    /// so it was not sent: a broker drops the connection on such a message, and the
    /// `pulsar` crate would resend it until it times out.
    TooLarge {
        /// The message's size as it would be sent (after compression).
        bytes: usize,
        /// `sinks.pulsar.max_message_bytes`.
        max: usize,
    },
}

impl SinkError {
    /// Whether retrying cannot succeed until an operator changes something: a message
    /// over the size limit, or a broker refusal that the `pulsar` crate itself does not
    /// retry (its `producer::is_permanent`: a terminated, missing or invalid topic, or
    /// the role not allowed to produce). The batch is still retried, slowly, so that the
    /// fix is picked up without a restart.
    pub fn is_permanent(&self) -> bool {
        match self {
            SinkError::TooLarge { .. } => true,
            SinkError::Pulsar(e) => pulsar_refusal(e).is_some_and(is_permanent_refusal),
            _ => false,
        }
    }

    /// What the operator does about a permanent error (see [`Self::is_permanent`]).
    pub fn fix(&self) -> &'static str {
        match self {
            SinkError::TooLarge { .. } => {
                "raise the broker's maxMessageSize and sinks.pulsar.max_message_bytes with it, or leave the large column out of the table's columns"
            }
            SinkError::Pulsar(_) => {
                "check the topic (created, not terminated) and the role's permission to produce on it"
            }
            _ => "see the error",
        }
    }
}

/// The broker's error code in a `pulsar` error, if it carries one.
fn pulsar_refusal(error: &::pulsar::Error) -> Option<::pulsar::proto::ServerError> {
    use ::pulsar::error::{ConnectionError, ProducerError, ServiceDiscoveryError};
    match error {
        ::pulsar::Error::Connection(ConnectionError::PulsarError(kind, _))
        | ::pulsar::Error::Producer(ProducerError::Connection(ConnectionError::PulsarError(kind, _)))
        | ::pulsar::Error::ServiceDiscovery(ServiceDiscoveryError::Query(kind, _)) => *kind,
        ::pulsar::Error::Producer(ProducerError::Batch(inner)) => pulsar_refusal(inner),
        _ => None,
    }
}

/// Broker refusals after which the `pulsar` crate stops re-creating the producer
/// (pulsar 6.9 `producer::is_permanent`), less those that do not apply to the sidecar's
/// producers (fencing: no exclusive access; schemas: none) or can pass by themselves
/// (authentication: a token being rotated).
fn is_permanent_refusal(kind: ::pulsar::proto::ServerError) -> bool {
    use ::pulsar::proto::ServerError as E;
    matches!(
        kind,
        E::TopicNotFound | E::TopicTerminatedError | E::AuthorizationError | E::NotAllowedError | E::InvalidTopicName
    )
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
        let client = crate::config::redis_client(&rp.endpoint())?;
        sinks.push(Arc::new(RedisPubSubSink::connect(client, rp).await?));
    }
    Ok(sinks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::pulsar::error::{ConnectionError, ProducerError};
    use ::pulsar::proto::ServerError;

    fn refusal(kind: ServerError) -> SinkError {
        SinkError::Pulsar(::pulsar::Error::Producer(ProducerError::Connection(
            ConnectionError::PulsarError(Some(kind), Some("refused".into())),
        )))
    }

    #[test]
    fn only_what_retrying_cannot_fix_is_permanent() {
        assert!(SinkError::TooLarge { bytes: 2, max: 1 }.is_permanent());
        assert!(refusal(ServerError::TopicTerminatedError).is_permanent());
        assert!(refusal(ServerError::AuthorizationError).is_permanent());
        assert!(!refusal(ServerError::ServiceNotReady).is_permanent());
        assert!(!refusal(ServerError::PersistenceError).is_permanent());
        assert!(!refusal(ServerError::AuthenticationError).is_permanent());
        let timeout = ::pulsar::Error::Producer(ProducerError::Connection(ConnectionError::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "operation timeout",
        ))));
        assert!(!SinkError::Pulsar(timeout).is_permanent());
        assert!(!SinkError::PulsarTimeout(std::time::Duration::from_secs(1)).is_permanent());
    }
}
