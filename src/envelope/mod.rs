//! The envelope: what one published message is. Every field name of the JSON lives in
//! this module (the builder writes them), so the format is defined in one place;
//! `README.md` documents it for consumers, who detect a missed batch when
//! `from_version` differs from the previous batch's `to_version`.

mod builder;

pub use builder::{BatchBuilder, ChangeHead, FlushPolicy, Trailer};

use std::sync::Arc;

use bytes::Bytes;

/// The envelope format version; bumped on any incompatible change.
pub const FORMAT: u32 = 1;

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
    /// The checkpoint before this batch.
    pub from_version: i64,
    /// The checkpoint once this batch is delivered.
    pub to_version: i64,
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

/// Appends `s` as a JSON string.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    // Writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}
