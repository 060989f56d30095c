//! The envelope builder: one JSON object per batch with the table's identity, the
//! checkpoint before and after it, and its changes, written incrementally as rows
//! stream in, and sealed by the [`FlushPolicy`].

use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;

use super::{write_position, write_str, Batch, BatchKind, Op, OpCounts, Position, Route, FORMAT};
use crate::config::PollConfig;

/// When a batch is sealed: at `rows` changes or `bytes` encoded bytes, whichever comes
/// first (`poll.batch_rows`, `poll.batch_bytes`). One policy for streamed changes and
/// snapshot rows alike, so both bound memory the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlushPolicy {
    /// Changes per batch.
    pub rows: u64,
    /// Encoded bytes per batch (the last change may overshoot it by one row).
    pub bytes: usize,
}

impl FlushPolicy {
    /// The policy of the `[poll]` section.
    pub fn from_config(poll: &PollConfig) -> Self {
        Self {
            rows: poll.batch_rows as u64,
            bytes: poll.batch_bytes,
        }
    }

    /// What a new batch preallocates: its size limit, but never more than 1 MiB, so a
    /// generous limit on a quiet table costs nothing.
    fn capacity(&self) -> usize {
        self.bytes.min(1 << 20)
    }
}

/// One change's head: what every change object carries besides its key and row.
#[derive(Debug, Clone, Copy)]
pub struct ChangeHead<'a> {
    /// What happened.
    pub op: Op,
    /// `SYS_CHANGE_VERSION` (the snapshot version for a snapshot row).
    pub version: Option<i64>,
    /// `SYS_CHANGE_CREATION_VERSION`.
    pub creation_version: Option<i64>,
    /// The non-key columns an update changed, when the table tracks columns.
    pub changed_columns: Option<&'a [&'a str]>,
    /// `SYS_CHANGE_CONTEXT`, published as base64.
    pub context: Option<&'a [u8]>,
}

/// What follows `to` at the end of an envelope.
#[derive(Debug, Clone, Copy)]
pub enum Trailer<'a> {
    /// Nothing (a `changes` batch).
    None,
    /// A resync's `reason`.
    Reason(&'a str),
    /// A snapshot batch's place: `{"chunk": n, "last": bool}`.
    Snapshot {
        /// The batch's index within the snapshot, from 0.
        chunk: u64,
        /// Whether it is the snapshot's last batch.
        last: bool,
    },
}

/// Builds one batch's JSON in a single buffer, front to back, as rows stream in. Its
/// methods write every field name of the envelope; callers supply only the members of
/// `key` and `row` (column name → value, see `source::rows`).
pub struct BatchBuilder {
    route: Arc<Route>,
    kind: BatchKind,
    seq: u64,
    from: Position,
    body: Vec<u8>,
    ops: OpCounts,
    policy: FlushPolicy,
}

impl BatchBuilder {
    /// Starts a batch. `source_json` is the table's pre-encoded `source` object.
    pub fn new(
        route: Arc<Route>,
        source_json: &str,
        kind: BatchKind,
        seq: u64,
        from: Position,
        policy: FlushPolicy,
    ) -> Self {
        // `to`, known only at the end, comes after the changes, so the body is
        // never copied.
        let mut body = Vec::with_capacity(policy.capacity() + 256);
        body.extend_from_slice(b"{\"format\":");
        body.extend_from_slice(itoa::Buffer::new().format(FORMAT).as_bytes());
        body.extend_from_slice(b",\"kind\":\"");
        body.extend_from_slice(kind.as_str().as_bytes());
        body.extend_from_slice(b"\",\"source\":");
        body.extend_from_slice(source_json.as_bytes());
        body.extend_from_slice(b",\"seq\":");
        body.extend_from_slice(itoa::Buffer::new().format(seq).as_bytes());
        body.extend_from_slice(b",\"from\":");
        write_position(&mut body, from);
        body.extend_from_slice(b",\"from_version\":");
        body.extend_from_slice(itoa::Buffer::new().format(from.version).as_bytes());
        body.extend_from_slice(b",\"changes\":[");
        Self {
            route,
            kind,
            seq,
            from,
            body,
            ops: OpCounts::default(),
            policy,
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

    /// Whether the flush policy says to seal this batch before adding another change.
    pub fn is_full(&self) -> bool {
        self.len() >= self.policy.rows || self.body.len() >= self.policy.bytes
    }

    /// The checkpoint before this batch.
    pub fn from(&self) -> Position {
        self.from
    }

    /// This batch's number.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The batch after this one: same table, kind and policy, the next number,
    /// starting at `from`.
    pub fn next(&self, source_json: &str, from: Position) -> Self {
        Self::new(
            self.route.clone(),
            source_json,
            self.kind,
            self.seq + 1,
            from,
            self.policy,
        )
    }

    /// Appends one change. `key` writes the members of the `key` object, `row` those of
    /// the `row` object (`None`: the row is gone, written as `null`).
    pub fn push_change<E>(
        &mut self,
        head: &ChangeHead<'_>,
        key: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
        row: Option<impl FnOnce(&mut Vec<u8>) -> Result<(), E>>,
    ) -> Result<(), E> {
        if !self.is_empty() {
            self.body.push(b',');
        }
        match head.op {
            Op::Insert => self.ops.insert += 1,
            Op::Update => self.ops.update += 1,
            Op::Delete => self.ops.delete += 1,
            Op::Read => self.ops.read += 1,
        }
        let out = &mut self.body;
        out.extend_from_slice(b"{\"op\":\"");
        out.extend_from_slice(head.op.as_str().as_bytes());
        out.extend_from_slice(b"\",\"version\":");
        write_opt_i64(out, head.version);
        out.extend_from_slice(b",\"creation_version\":");
        write_opt_i64(out, head.creation_version);
        out.extend_from_slice(b",\"key\":{");
        key(out)?;
        out.extend_from_slice(b"},\"row\":");
        match row {
            Some(row) => {
                out.push(b'{');
                row(out)?;
                out.push(b'}');
            }
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"changed_columns\":");
        match head.changed_columns {
            Some(names) => {
                out.push(b'[');
                for (j, n) in names.iter().enumerate() {
                    if j > 0 {
                        out.push(b',');
                    }
                    write_str(out, n);
                }
                out.push(b']');
            }
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"context\":");
        match head.context {
            Some(c) => {
                out.push(b'"');
                out.extend_from_slice(base64::engine::general_purpose::STANDARD.encode(c).as_bytes());
                out.push(b'"');
            }
            None => out.extend_from_slice(b"null"),
        }
        out.push(b'}');
        Ok(())
    }

    /// Seals the batch with the checkpoint it establishes (see [`Batch::split_key`]).
    pub fn finish(mut self, to: Position, split_key: Option<Arc<str>>, trailer: Trailer<'_>) -> Batch {
        let out = &mut self.body;
        out.extend_from_slice(b"],\"to\":");
        write_position(out, to);
        out.extend_from_slice(b",\"to_version\":");
        out.extend_from_slice(itoa::Buffer::new().format(to.version).as_bytes());
        match trailer {
            Trailer::None => {}
            Trailer::Reason(reason) => {
                out.extend_from_slice(b",\"reason\":");
                write_str(out, reason);
            }
            Trailer::Snapshot { chunk, last } => {
                out.extend_from_slice(b",\"snapshot\":{\"chunk\":");
                out.extend_from_slice(itoa::Buffer::new().format(chunk).as_bytes());
                out.extend_from_slice(if last { b",\"last\":true}" } else { b",\"last\":false}" });
            }
        }
        out.push(b'}');
        Batch {
            route: self.route,
            kind: self.kind,
            seq: self.seq,
            from: self.from,
            to,
            split_key,
            ops: self.ops,
            payload: Bytes::from(self.body),
        }
    }
}

fn write_opt_i64(out: &mut Vec<u8>, v: Option<i64>) {
    match v {
        Some(v) => out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes()),
        None => out.extend_from_slice(b"null"),
    }
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
        let policy = FlushPolicy {
            rows: 10,
            bytes: 1 << 10,
        };
        let source = super::super::source_json("srv", "Db", "dbo", "T");
        let mut b = BatchBuilder::new(route, &source, BatchKind::Changes, 7, Position::complete(4), policy);
        let head = ChangeHead {
            op: Op::Delete,
            version: Some(7),
            creation_version: None,
            changed_columns: None,
            context: Some(b"ctx"),
        };
        type Members = fn(&mut Vec<u8>) -> Result<(), ()>;
        let key: Members = |out| {
            out.extend_from_slice(br#""Id":1"#);
            Ok(())
        };
        b.push_change(&head, key, None::<Members>).unwrap();
        let to = Position {
            version: 9,
            part: Some(2),
        };
        let batch = b.finish(to, Some("\"Id\":1".into()), Trailer::Snapshot { chunk: 2, last: true });
        let v: serde_json::Value = serde_json::from_slice(&batch.payload).unwrap();
        assert_eq!(v["format"], 2);
        assert_eq!(v["seq"], 7);
        assert_eq!(v["from"]["version"], 4);
        assert!(v["from"]["part"].is_null());
        assert_eq!(v["to"]["version"], 9);
        assert_eq!(v["to"]["part"], 2);
        assert_eq!(v["kind"], "changes");
        assert_eq!(v["source"]["table"], "T");
        assert_eq!(v["from_version"], 4);
        assert_eq!(v["to_version"], 9);
        assert_eq!(v["changes"][0]["op"], "delete");
        assert_eq!(v["changes"][0]["version"], 7);
        assert!(v["changes"][0]["creation_version"].is_null());
        assert_eq!(v["changes"][0]["key"]["Id"], 1);
        assert!(v["changes"][0]["row"].is_null());
        assert_eq!(v["changes"][0]["context"], "Y3R4");
        assert_eq!(v["snapshot"]["chunk"], 2);
        assert_eq!(v["snapshot"]["last"], true);
        assert_eq!(batch.ops.delete, 1);
    }
}
