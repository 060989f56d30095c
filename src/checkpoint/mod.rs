//! Checkpoints: each table's last fully delivered Change Tracking version, kept outside
//! the process so a restart resumes where delivery stopped, and the [`Lease`] that keeps
//! one sidecar per database. The store is a trait so the delivery task depends on its
//! contract, not on Redis; production uses [`RedisCheckpointStore`].

mod lease;
mod redis_store;

pub use lease::{Lease, LEASE_TTL};
pub use redis_store::RedisCheckpointStore;

use std::collections::BTreeMap;

use futures_util::future::BoxFuture;

use crate::envelope::Position;

/// A table's stored position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Every change with a version below this, and the first `part`s of this version's
    /// changes (all of them when `part` is `None`), has been acknowledged by every sink.
    pub version: i64,
    /// How much of `version` is delivered (see [`Position`]).
    pub part: Option<u32>,
    /// The number of the last batch delivered (see `envelope::Batch::seq`); the next
    /// batch after a restart is numbered one more.
    pub seq: u64,
    /// Where each stored part of a version ends: `(version, part)` → the key of its
    /// last change, as JSON members. Kept from before a part is published until the
    /// checkpoint passes it, so a restart re-reads each part with the same boundaries.
    pub splits: BTreeMap<(i64, u32), String>,
    /// The database incarnation (recovery fork) the position refers to: a different
    /// one means the database was restored and the position means nothing there.
    pub incarnation: Option<String>,
    /// A resync announced and not yet completed (its reason): resumed after a restart.
    pub resync: Option<String>,
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

impl Checkpoint {
    /// The stored position.
    pub fn position(&self) -> Position {
        Position {
            version: self.version,
            part: self.part,
        }
    }
}

/// Where checkpoints live.
///
/// Contract: a stored position never moves backwards through
/// [`advance`](Self::advance): a lower position than the stored one is ignored, so a
/// late or repeated write cannot undo progress. Only [`reset`](Self::reset) (after a
/// resync, when the database itself went back) and an operator's `checkpoint set` may
/// lower it. A position is written only after every sink acknowledged every change up
/// to it, and a part boundary ([`record_split`](Self::record_split)) before any sink
/// sees the part.
pub trait CheckpointStore: Send + Sync + 'static {
    /// The stored checkpoint of `table` (`schema.table`), if any.
    fn load<'a>(&'a self, table: &'a str) -> BoxFuture<'a, Result<Option<Checkpoint>, CheckpointError>>;

    /// Raises the checkpoint to `to` (reached by batch `seq`) unless it is already
    /// higher, and forgets the part boundaries behind it. Returns the position stored
    /// afterwards.
    fn advance<'a>(
        &'a self,
        table: &'a str,
        to: Position,
        seq: u64,
    ) -> BoxFuture<'a, Result<Position, CheckpointError>>;

    /// Stores where part `at.part` of version `at.version` ends (`key`: JSON members of
    /// its last change's key). A no-op for a complete position.
    fn record_split<'a>(
        &'a self,
        table: &'a str,
        at: Position,
        key: &'a str,
    ) -> BoxFuture<'a, Result<(), CheckpointError>>;

    /// Sets the checkpoint to all of `version`, even if lower, and forgets every part
    /// boundary and pending resync (the end of a resync, an operator's action), recording
    /// the `incarnation` it belongs to.
    fn reset<'a>(
        &'a self,
        table: &'a str,
        version: i64,
        seq: u64,
        incarnation: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), CheckpointError>>;

    /// Records that a resync of `table` was announced for `reason`; cleared by the
    /// [`reset`](Self::reset) that ends it.
    fn mark_resync<'a>(&'a self, table: &'a str, reason: &'a str) -> BoxFuture<'a, Result<(), CheckpointError>>;

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
