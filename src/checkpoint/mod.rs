//! Checkpoints: each table's last fully delivered Change Tracking version, kept outside
//! the process so a restart resumes where delivery stopped, and the [`Lease`] that keeps
//! one sidecar per database. The store is a trait so the delivery task depends on its
//! contract, not on Redis; production uses [`RedisCheckpointStore`].

mod lease;
mod redis_store;

pub use lease::{Lease, LEASE_TTL};
pub use redis_store::RedisCheckpointStore;

use futures_util::future::BoxFuture;

/// A table's stored position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Every change with a version ≤ this has been acknowledged by every sink.
    pub version: i64,
    /// Milliseconds since the Unix epoch of the last write, for operators.
    pub updated_at_ms: i64,
    /// `server/database` that wrote it (absent when written by `checkpoint set` or an
    /// older version).
    pub source: Option<String>,
}

/// Why the store failed. Always retryable: the caller keeps its position in memory and
/// writes again.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint store: {0}")]
    /// Redis failed or is unreachable.
    Redis(#[from] redis::RedisError),
    #[error("checkpoint store: malformed value under {key}: {value:?}")]
    /// The stored value is not a version (written by something else?).
    Malformed {
        /// The Redis key.
        key: String,
        /// What it held.
        value: String,
    },
    #[error("a sidecar ({holder}) is streaming database {database}; stop it before moving checkpoints")]
    /// A running sidecar holds the database's lease.
    Locked {
        /// The database.
        database: String,
        /// The lease holder (`host:pid`).
        holder: String,
    },
}

/// Where checkpoints live.
///
/// Contract: a stored version never moves backwards through [`advance`](Self::advance):
/// a lower version than the stored one is ignored, so a late or repeated write cannot
/// undo progress. Only [`reset`](Self::reset) (after a resync, when the database itself
/// went back) and an operator's `checkpoint set` may lower it. A version is written only
/// after every sink acknowledged every change up to it.
pub trait CheckpointStore: Send + Sync + 'static {
    /// The stored checkpoint of `table` (`schema.table`), if any.
    fn load<'a>(&'a self, table: &'a str) -> BoxFuture<'a, Result<Option<Checkpoint>, CheckpointError>>;

    /// Raises the checkpoint to `version` unless it is already higher. Returns the
    /// version stored afterwards.
    fn advance<'a>(&'a self, table: &'a str, version: i64) -> BoxFuture<'a, Result<i64, CheckpointError>>;

    /// Sets the checkpoint to `version` even if lower (resync, operator action).
    fn reset<'a>(&'a self, table: &'a str, version: i64) -> BoxFuture<'a, Result<(), CheckpointError>>;

    /// Forgets the table's checkpoint: the next start treats it as new.
    fn delete<'a>(&'a self, table: &'a str) -> BoxFuture<'a, Result<bool, CheckpointError>>;

    /// Every stored checkpoint of this database, sorted by table.
    fn list(&self) -> BoxFuture<'_, Result<Vec<(String, Checkpoint)>, CheckpointError>>;
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
