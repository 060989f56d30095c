//! The envelope builder: one JSON object per batch with the table's identity, the
//! checkpoint before and after it, and its changes, written incrementally as rows
//! stream in, and sealed by the [`FlushPolicy`].

use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;

use super::{write_position, write_str, Batch, BatchKind, Op, OpCounts, Position, Route, FORMAT};
use crate::config::{Config, PollConfig};

/// When a batch is sealed: at `rows` changes or `bytes` encoded bytes, whichever comes
/// first (`poll.batch_rows`, `poll.batch_bytes`). One policy for streamed changes and
/// snapshot rows alike, so both bound memory the same way. `max_bytes` is a hard limit
/// on a whole envelope: a change that would take a batch past it goes to the next batch
/// instead (see [`BatchBuilder::take_last_over_max`]); only a batch of that one change
/// alone can be larger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlushPolicy {
    /// Changes per batch.
    pub rows: u64,
    /// Encoded bytes per batch (the last change may overshoot it by one row).
    pub bytes: usize,
    /// Encoded bytes no envelope of more than one change exceeds (`usize::MAX`: none).
    pub max_bytes: usize,
}

/// Room kept under `max_bytes` for what [`BatchBuilder::finish`] appends (`to`, the
/// snapshot trailer or a resync's reason: well under 200 bytes).
const TRAILER_RESERVE: usize = 256;

impl FlushPolicy {
    /// The policy of the `[poll]` section, without a hard maximum.
    pub fn from_config(poll: &PollConfig) -> Self {
        Self {
            rows: poll.batch_rows as u64,
            bytes: poll.batch_bytes,
            max_bytes: usize::MAX,
        }
    }

    /// The policy of the `[poll]` section under a hard maximum of `max_bytes` per
    /// envelope (`None`: none): `bytes` is clamped below it.
    pub fn with_max_bytes(poll: &PollConfig, max_bytes: Option<usize>) -> Self {
        let policy = Self::from_config(poll);
        match max_bytes {
            None => policy,
            Some(max_bytes) => Self {
                bytes: policy.bytes.min(max_bytes.saturating_sub(TRAILER_RESERVE)),
                max_bytes,
                ..policy
            },
        }
    }

    /// The policy of `config`: `[poll]`, and when Pulsar is enabled, envelopes that fit
    /// its `max_message_bytes` whatever the compression.
    pub fn for_config(config: &Config) -> Self {
        let pulsar = &config.sinks.pulsar;
        Self::with_max_bytes(&config.poll, pulsar.enabled.then(|| pulsar.payload_budget()))
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
    /// A schema batch's `schema` object, already JSON-encoded.
    Schema(&'a str),
    /// A snapshot batch's place: `{"chunk": n, "last": bool}`.
    Snapshot {
        /// The batch's index within the snapshot, from 0.
        chunk: u64,
        /// Whether it is the snapshot's last batch.
        last: bool,
    },
}

/// One encoded change taken out of a batch by [`BatchBuilder::take_last_over_max`], to
/// be put into the next one with [`BatchBuilder::push_raw`].
#[derive(Debug)]
pub struct RawChange {
    op: Op,
    json: Vec<u8>,
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
    /// Where the last change's object starts in `body`, and its op.
    last: Option<(usize, Op)>,
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
            last: None,
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

    /// When the last change took this batch past the policy's `max_bytes` and it is not
    /// the batch's only change: removes it and returns it, so the caller seals the batch
    /// without it and starts the next one with it ([`Self::push_raw`]). `None` otherwise.
    pub fn take_last_over_max(&mut self) -> Option<RawChange> {
        if self.body.len() + TRAILER_RESERVE <= self.policy.max_bytes || self.len() < 2 {
            return None;
        }
        let (start, op) = self.last.take()?;
        let mut json = self.body.split_off(start);
        // The comma that separated it from the change before.
        if json.first() == Some(&b',') {
            json.drain(..1);
        }
        *self.count(op) -= 1;
        Some(RawChange { op, json })
    }

    /// Appends a change taken out of another batch by [`Self::take_last_over_max`].
    pub fn push_raw(&mut self, change: RawChange) {
        let start = self.body.len();
        if !self.is_empty() {
            self.body.push(b',');
        }
        self.body.extend_from_slice(&change.json);
        *self.count(change.op) += 1;
        self.last = Some((start, change.op));
    }

    fn count(&mut self, op: Op) -> &mut u64 {
        match op {
            Op::Insert => &mut self.ops.insert,
            Op::Update => &mut self.ops.update,
            Op::Delete => &mut self.ops.delete,
            Op::Read => &mut self.ops.read,
        }
    }

    /// Appends one change. `key` writes the members of the `key` object, `row` those of
    /// the `row` object (`None`: the row is gone, written as `null`).
    pub fn push_change<E>(
        &mut self,
        head: &ChangeHead<'_>,
        key: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
        row: Option<impl FnOnce(&mut Vec<u8>) -> Result<(), E>>,
    ) -> Result<(), E> {
        let start = self.body.len();
        if !self.is_empty() {
            self.body.push(b',');
        }
        *self.count(head.op) += 1;
        self.last = Some((start, head.op));
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
            Trailer::Schema(schema) => {
                out.extend_from_slice(b",\"schema\":");
                out.extend_from_slice(schema.as_bytes());
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
            max_bytes: usize::MAX,
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

    fn route() -> Arc<Route> {
        Arc::new(Route {
            table: "dbo.T".into(),
            topic: "t".into(),
            channel: "c".into(),
        })
    }

    fn push(b: &mut BatchBuilder, op: Op, id: u32, filler: usize) {
        let head = ChangeHead {
            op,
            version: Some(5),
            creation_version: None,
            changed_columns: None,
            context: None,
        };
        type Members<'a> = Box<dyn FnOnce(&mut Vec<u8>) -> Result<(), ()> + 'a>;
        let key: Members = Box::new(move |out| {
            out.extend_from_slice(format!(r#""Id":{id}"#).as_bytes());
            Ok(())
        });
        let row: Members = Box::new(move |out| {
            out.extend_from_slice(br#""V":""#);
            out.extend(std::iter::repeat_n(b'x', filler));
            out.push(b'"');
            Ok(())
        });
        b.push_change(&head, key, Some(row)).unwrap();
    }

    fn ids(batch: &Batch) -> Vec<u64> {
        let v: serde_json::Value = serde_json::from_slice(&batch.payload).unwrap();
        v["changes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["key"]["Id"].as_u64().unwrap())
            .collect()
    }

    #[test]
    fn the_byte_limit_is_clamped_below_the_hard_maximum() {
        let poll = PollConfig {
            batch_bytes: 1 << 20,
            ..Default::default()
        };
        let policy = FlushPolicy::with_max_bytes(&poll, Some(100_000));
        assert_eq!(policy.max_bytes, 100_000);
        assert!(policy.bytes < 100_000);
        assert_eq!(
            FlushPolicy::with_max_bytes(&poll, None),
            FlushPolicy::from_config(&poll)
        );
        let small = PollConfig {
            batch_bytes: 4096,
            ..Default::default()
        };
        assert_eq!(FlushPolicy::with_max_bytes(&small, Some(100_000)).bytes, 4096);
    }

    #[test]
    fn a_change_that_takes_a_batch_past_the_maximum_moves_to_the_next_batch() {
        let policy = FlushPolicy {
            rows: 100,
            bytes: 1_000,
            max_bytes: 2_000,
        };
        let source = super::super::source_json("srv", "Db", "dbo", "T");
        let mut b = BatchBuilder::new(route(), &source, BatchKind::Changes, 1, Position::complete(4), policy);
        push(&mut b, Op::Insert, 1, 10);
        assert!(b.take_last_over_max().is_none(), "under the maximum");
        push(&mut b, Op::Update, 2, 700);
        assert!(b.take_last_over_max().is_none(), "still under the maximum");
        push(&mut b, Op::Delete, 3, 1_500);
        let carried = b.take_last_over_max().expect("past the maximum with three changes");
        assert!(b.take_last_over_max().is_none(), "only the last change is taken");
        assert_eq!(b.len(), 2);
        let mut next = b.next(&source, Position::complete(5));
        let first = b.finish(Position::complete(5), None, Trailer::None);
        assert_eq!(ids(&first), [1, 2]);
        assert_eq!((first.ops.insert, first.ops.update, first.ops.delete), (1, 1, 0));
        assert!(first.payload.len() <= 2_000);

        next.push_raw(carried);
        // Alone, a change over the maximum stays: there is nowhere else to put it.
        assert!(next.take_last_over_max().is_none());
        push(&mut next, Op::Insert, 4, 10);
        let carried = next
            .take_last_over_max()
            .expect("the small change after the big one moves on");
        let mut third = next.next(&source, Position::complete(6));
        let second = next.finish(Position::complete(6), None, Trailer::None);
        assert_eq!(ids(&second), [3]);
        assert_eq!((second.ops.delete, second.ops.insert), (1, 0));
        third.push_raw(carried);
        push(&mut third, Op::Insert, 5, 10);
        let third = third.finish(Position::complete(7), None, Trailer::None);
        assert_eq!(ids(&third), [4, 5]);
        assert_eq!(third.ops.insert, 2);
    }
}
