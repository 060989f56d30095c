//! The envelope: what one published message is. Every field name of the JSON lives in
//! this module (the builder writes them), so the format is defined in one place;
//! `README.md` documents it for consumers. Each batch carries the [`Position`] before
//! it (`from`) and after it (`to`); a table's `to` positions strictly increase, and a
//! consumer detects a missed batch when `from` differs from the previous batch's `to`.

mod builder;

pub use builder::{BatchBuilder, ChangeHead, FlushPolicy, RawChange, Trailer};

use std::cmp::Ordering;

use std::sync::Arc;

use bytes::Bytes;

/// The envelope format version; bumped on any incompatible change. 2: `from` and `to`
/// positions (version and part), so one transaction split over several batches never
/// looks like a repeat.
pub const FORMAT: u32 = 2;

/// A place in a table's change stream. Change Tracking numbers changes by the version
/// of the transaction that made them, and one transaction can hold more changes than
/// one batch; so a position is a version plus, when the stream stopped inside that
/// version's changes, the `part` of it delivered so far (1, 2, … in primary-key order).
/// `part: None` means every change of `version` (and before) is delivered.
///
/// Positions order by version, then part, with `None` (the whole version) last: a
/// consumer compares them with integers alone. The key at which each part ends is kept
/// with the checkpoint, so a restart re-reads a part with exactly the same boundaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Position {
    /// The Change Tracking version.
    pub version: i64,
    /// The part of `version` delivered so far; `None` when all of it is.
    pub part: Option<u32>,
}

impl Position {
    /// Every change up to and including `version`.
    pub fn complete(version: i64) -> Self {
        Self { version, part: None }
    }

    /// Whether every change of `version` is included.
    pub fn is_complete(&self) -> bool {
        self.part.is_none()
    }

    /// The `last_sync_version` to pass to `CHANGETABLE(CHANGES …)` to read what follows:
    /// the version itself when complete, else the one before (the rest of this version
    /// is then selected by key).
    pub fn last_sync_version(&self) -> i64 {
        if self.is_complete() {
            self.version
        } else {
            self.version - 1
        }
    }
}

impl Ord for Position {
    fn cmp(&self, other: &Self) -> Ordering {
        self.version.cmp(&other.version).then(match (self.part, other.part) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Greater,
            (Some(_), None) => Ordering::Less,
            (Some(a), Some(b)) => a.cmp(&b),
        })
    }
}

impl PartialOrd for Position {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// A change's operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `SYS_CHANGE_OPERATION` I.
    Insert,
    /// `SYS_CHANGE_OPERATION` U.
    Update,
    /// `SYS_CHANGE_OPERATION` D.
    Delete,
    /// A row read by a snapshot.
    Read,
}

impl Op {
    /// From `SYS_CHANGE_OPERATION`.
    pub fn from_sys_change_operation(op: &str) -> Option<Self> {
        match op.trim() {
            "I" => Some(Op::Insert),
            "U" => Some(Op::Update),
            "D" => Some(Op::Delete),
            _ => None,
        }
    }

    /// The envelope's `op` string.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Insert => "insert",
            Op::Update => "update",
            Op::Delete => "delete",
            Op::Read => "read",
        }
    }
}

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
    /// The table's columns changed: what `row` holds from now on.
    Schema,
}

impl BatchKind {
    /// The envelope's `kind` string.
    pub fn as_str(self) -> &'static str {
        match self {
            BatchKind::Changes => "changes",
            BatchKind::Snapshot => "snapshot",
            BatchKind::Resync => "resync",
            BatchKind::Schema => "schema",
        }
    }
}

/// How many changes of each op a batch holds, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpCounts {
    /// `insert` changes: the `op` label of `cdc_sidecar_changes_total`.
    pub insert: u64,
    /// `update` changes.
    pub update: u64,
    /// `delete` changes.
    pub delete: u64,
    /// `read` rows of a snapshot, counted apart so change rates exclude them.
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
    /// The table's batch number: one more than the previous batch's, so a consumer
    /// sees a lost batch as a jump (a table with nothing to say publishes nothing, so
    /// `from` may move past the previous `to` without a gap). Kept with the checkpoint:
    /// after a restart the batches since the checkpoint come again with their numbers.
    pub seq: u64,
    /// The checkpoint before this batch.
    pub from: Position,
    /// The checkpoint once this batch is delivered.
    pub to: Position,
    /// When `to` ends inside a version: the key (JSON members, as in a change's `key`)
    /// of the last change of that part, which must be stored before the batch is
    /// published so a re-read ends the part at the same place.
    pub split_key: Option<Arc<str>>,
    /// Change counts by op.
    pub ops: OpCounts,
    /// The JSON envelope (uncompressed; each sink compresses as configured).
    pub payload: Bytes,
}

/// The `source` object of a table's envelopes, encoded once.
pub fn source_json(server: &str, database: &str, schema: &str, table: &str) -> Arc<str> {
    let mut out = Vec::new();
    out.extend_from_slice(b"{\"server\":");
    write_str(&mut out, server);
    out.extend_from_slice(b",\"database\":");
    write_str(&mut out, database);
    out.extend_from_slice(b",\"schema\":");
    write_str(&mut out, schema);
    out.extend_from_slice(b",\"table\":");
    write_str(&mut out, table);
    out.push(b'}');
    String::from_utf8_lossy(&out).into()
}

/// Appends `p` as `{"version":…,"part":…}`.
pub fn write_position(out: &mut Vec<u8>, p: Position) {
    out.extend_from_slice(b"{\"version\":");
    out.extend_from_slice(itoa::Buffer::new().format(p.version).as_bytes());
    out.extend_from_slice(b",\"part\":");
    match p.part {
        Some(part) => out.extend_from_slice(itoa::Buffer::new().format(part).as_bytes()),
        None => out.extend_from_slice(b"null"),
    }
    out.push(b'}');
}

/// Appends `s` as a JSON string.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    // Writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}
