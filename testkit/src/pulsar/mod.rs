//! Apache Pulsar broker stand-in: speaks Pulsar's binary protocol well enough that
//! the real `pulsar` crate produces to it and consumes from it unchanged, stores
//! what it receives for tests to inspect, and injects the faults a real broker can
//! have (dropped connections, refused producers, failed sends, slow receipts, being
//! unreachable, topic unloads).
//!
//! Layers, bottom up: `frame` (framing, CRC32C) → `topic` (names) and
//! `payload` (stored entries, decompression, batches) → `subscription` (cursor and
//! dispatch) → `broker` (shared state) → `connection` (one client) → `server`
//! ([`PulsarStandin`], the in-process API). The `pulsar-standin` binary wraps the
//! server for use outside Rust tests.
//!
//! Where it knowingly differs from a real broker:
//! - everything lives in memory and nothing expires (no retention, TTL or backlog
//!   quotas); non-persistent topics are stored like persistent ones;
//! - no topic policies: only the broker-wide `maxMessageSize` applies (a frame over
//!   it closes the connection, as on a broker), not a smaller topic-level one (which a
//!   broker answers with SEND_ERROR(NotAllowedError) "Exceed maximum message size");
//! - no deduplication (PRODUCER_SUCCESS says `last_sequence_id = -1`): a message the
//!   client resends after a lost receipt is stored twice, as with a default broker;
//! - acks of batched messages are tracked per batch index, so an entry counts as
//!   acknowledged only once all its messages are (a broker without batch-index acks
//!   takes the first ack for the whole entry);
//! - Key_Shared splits the hash range evenly over consumers in join order; a batch
//!   is routed by its first message's key; an entry whose consumer has no permits
//!   holds back the entries behind it;
//! - WaitForExclusive and ExclusiveWithFencing producers are served as Exclusive;
//!   `deliver_at_time` is ignored (delivered at once);
//! - SEEK, CONSUMER_STATS, schemas, transactions and chunking are not implemented
//!   (answered with ERROR, GET_SCHEMA with "no schema"); no TLS.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use testkit::pulsar::{PulsarStandin, PulsarStandinConfig};
//! let standin = PulsarStandin::start(PulsarStandinConfig::default()).await?;
//! // point pulsar::Pulsar::builder(standin.url(), TokioExecutor) at it, produce...
//! let got = standin
//!     .wait_for_messages("orders", 1, std::time::Duration::from_secs(5))
//!     .await?;
//! standin.shutdown().await;
//! # Ok(()) }
//! ```

mod broker;
mod config;
mod connection;
mod frame;
mod payload;
mod server;
mod subscription;
mod topic;

pub use broker::TopicStats;
pub use config::PulsarStandinConfig;
pub use connection::ConnectionError;
pub use frame::FrameError;
pub use payload::{PayloadError, StoredEntry, StoredMessage};
pub use pulsar::proto::ServerError;
pub use server::{PulsarStandin, StandinError};
pub use topic::{TopicName, TopicNameError};
