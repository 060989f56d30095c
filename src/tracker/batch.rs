//! The message envelope (format 1), built incrementally as rows stream in: one JSON
//! object per batch with the table's identity, the checkpoint before and after it, and
//! its changes. `README.md` documents the format; a consumer detects a missed batch when
//! `from_version` differs from the previous batch's `to_version`.

use std::sync::Arc;

use bytes::Bytes;

use crate::sink::{Batch, BatchKind, OpCounts, Route};
use crate::source::encode::write_str;

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

    fn as_str(self) -> &'static str {
        match self {
            Op::Insert => "insert",
            Op::Update => "update",
            Op::Delete => "delete",
            Op::Read => "read",
        }
    }
}

/// Builds one batch's JSON. Callers append changes with [`begin_change`](Self::begin_change)
/// and write the fields through [`body`](Self::body), then [`finish`](Self::finish).
pub struct BatchBuilder {
    route: Arc<Route>,
    kind: BatchKind,
    from_version: i64,
    body: Vec<u8>,
    ops: OpCounts,
}

impl BatchBuilder {
    /// Starts a batch. `source_json` is the table's pre-encoded `source` object.
    pub fn new(route: Arc<Route>, source_json: Arc<str>, kind: BatchKind, from_version: i64, capacity: usize) -> Self {
        // The envelope is written in one buffer, front to back: `to_version`, known only
        // at the end, comes after the changes, so the body is never copied.
        let mut body = Vec::with_capacity(capacity + 256);
        body.extend_from_slice(b"{\"format\":");
        body.extend_from_slice(itoa::Buffer::new().format(FORMAT).as_bytes());
        body.extend_from_slice(b",\"kind\":\"");
        body.extend_from_slice(kind.as_str().as_bytes());
        body.extend_from_slice(b"\",\"source\":");
        body.extend_from_slice(source_json.as_bytes());
        body.extend_from_slice(b",\"from_version\":");
        body.extend_from_slice(itoa::Buffer::new().format(from_version).as_bytes());
        body.extend_from_slice(b",\"changes\":[");
        Self {
            route,
            kind,
            from_version,
            body,
            ops: OpCounts::default(),
        }
    }

    /// Changes so far.
    pub fn len(&self) -> u64 {
        self.ops.total()
    }

    /// Whether no change was added.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Encoded bytes so far.
    pub fn bytes(&self) -> usize {
        self.body.len()
    }

    /// The checkpoint before this batch.
    pub fn from_version(&self) -> i64 {
        self.from_version
    }

    /// Opens a change object: writes `{"op":…,"version":…,"creation_version":…` and
    /// leaves the buffer for the caller to add `,"key":{…}` and the rest, then call
    /// [`end_change`](Self::end_change).
    pub fn begin_change(&mut self, op: Op, version: Option<i64>, creation_version: Option<i64>) -> &mut Vec<u8> {
        if !self.is_empty() {
            self.body.push(b',');
        }
        match op {
            Op::Insert => self.ops.insert += 1,
            Op::Update => self.ops.update += 1,
            Op::Delete => self.ops.delete += 1,
            Op::Read => self.ops.read += 1,
        }
        self.body.extend_from_slice(b"{\"op\":\"");
        self.body.extend_from_slice(op.as_str().as_bytes());
        self.body.extend_from_slice(b"\",\"version\":");
        write_opt_i64(&mut self.body, version);
        self.body.extend_from_slice(b",\"creation_version\":");
        write_opt_i64(&mut self.body, creation_version);
        &mut self.body
    }

    /// Closes the change object opened by [`begin_change`](Self::begin_change).
    pub fn end_change(&mut self) {
        self.body.push(b'}');
    }

    /// Seals the batch with the checkpoint it establishes. `extra` is appended as
    /// additional top-level fields (e.g. `"reason":"…"`), already JSON-encoded with a
    /// leading comma.
    pub fn finish(mut self, to_version: i64, extra: &str) -> Batch {
        self.body.extend_from_slice(b"],\"to_version\":");
        self.body
            .extend_from_slice(itoa::Buffer::new().format(to_version).as_bytes());
        self.body.extend_from_slice(extra.as_bytes());
        self.body.push(b'}');
        let out = self.body;
        Batch {
            route: self.route,
            kind: self.kind,
            from_version: self.from_version,
            to_version,
            ops: self.ops,
            payload: Bytes::from(out),
        }
    }
}

fn write_opt_i64(out: &mut Vec<u8>, v: Option<i64>) {
    match v {
        Some(v) => out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes()),
        None => out.extend_from_slice(b"null"),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_is_valid_json_with_the_documented_fields() {
        let route = Arc::new(Route {
            table: "dbo.T".into(),
            topic: "t".into(),
            channel: "c".into(),
        });
        let mut b = BatchBuilder::new(route, source_json("srv", "Db", "dbo", "T"), BatchKind::Changes, 4, 64);
        let buf = b.begin_change(Op::Delete, Some(7), None);
        buf.extend_from_slice(br#","key":{"Id":1},"row":null,"changed_columns":null,"context":null"#);
        b.end_change();
        let batch = b.finish(9, "");
        let v: serde_json::Value = serde_json::from_slice(&batch.payload).unwrap();
        assert_eq!(v["format"], 1);
        assert_eq!(v["kind"], "changes");
        assert_eq!(v["source"]["table"], "T");
        assert_eq!(v["from_version"], 4);
        assert_eq!(v["to_version"], 9);
        assert_eq!(v["changes"][0]["op"], "delete");
        assert_eq!(v["changes"][0]["version"], 7);
        assert!(v["changes"][0]["creation_version"].is_null());
        assert_eq!(batch.ops.delete, 1);
    }
}
