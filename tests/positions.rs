//! Positions end to end (issue 10): a consumer that applies README's consumer rules to
//! everything Pulsar stored — re-sends after SIGKILLs included — ends with exactly the
//! source table, and a restart inside a transaction split over batches resumes at the
//! stored part instead of re-sending the transaction from its start.

mod support;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::*;
use testkit::mssql::types::{Outcome as SqlOutcome, Value as SqlValue};

// ---- the consumer -------------------------------------------------------------------

/// A position as README orders them: by `version`, then `part`, null (the whole
/// version) last.
type Pos = (i64, u64);

fn pos(p: &Value) -> Pos {
    (
        p["version"].as_i64().expect("position version"),
        p["part"].as_u64().unwrap_or(u64::MAX),
    )
}

/// What the consumer did with one envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Rule 1: the table's history is being replaced.
    Resync,
    /// Rule 2: a `changes` batch whose `to` is not above the last processed `to`.
    Repeat,
    /// Rule 3: `seq` more than one above the last processed `seq`.
    Gap,
    /// Rule 5 (and the snapshot batches of rule 1): applied, `skipped` of its changes
    /// left out because the last processed whole version already held them.
    Applied { skipped: usize },
}

/// README's consumer rules for one table, applied literally, maintaining a replica of
/// the table: key (as JSON) → row.
#[derive(Default)]
struct Consumer {
    /// The last processed `seq` and `to` (rule 1 forgets them).
    last: Option<(u64, Pos)>,
    replica: BTreeMap<String, Value>,
    repeats: usize,
    gaps: usize,
    applied: usize,
    resyncs: usize,
    /// Changes left out by rule 5.
    skipped: usize,
    /// Applied changes by their `version`.
    applied_by_version: BTreeMap<i64, usize>,
    /// The `to` of each applied `changes` batch, in order.
    applied_tos: Vec<Pos>,
    /// Inserts and updates without a row: the replica could not be exact.
    rowless: usize,
}

impl Consumer {
    fn apply(&mut self, envelope: &Value) -> Outcome {
        assert_eq!(envelope["format"], 2, "format 2 envelopes only: {envelope}");
        let kind = envelope["kind"].as_str().expect("kind");
        let seq = envelope["seq"].as_u64().expect("seq");
        let to = pos(&envelope["to"]);
        // Rule 1: forget the last seq and to; the snapshot that follows is the table's
        // new contents.
        if kind == "resync" {
            self.last = None;
            self.replica.clear();
            self.resyncs += 1;
            return Outcome::Resync;
        }
        // Rule 2: a `changes` batch not above the last processed `to` is a repeat.
        if kind == "changes" && self.last.is_some_and(|(_, last_to)| to <= last_to) {
            self.repeats += 1;
            return Outcome::Repeat;
        }
        // Rule 3: a seq more than one above the last follows a gap (at or below: a
        // re-send, never a gap).
        if self.last.is_some_and(|(last_seq, _)| seq > last_seq + 1) {
            self.gaps += 1;
            return Outcome::Gap;
        }
        // Rule 4: apply, skipping changes at or below the last whole version. Snapshot
        // batches are rule 1's "new contents" and are applied whole: every chunk of one
        // snapshot has `to` = the snapshot version and rows whose `version` is that same
        // version, so rule 5's skip read literally would drop every chunk after the first.
        let whole_version = match self.last {
            Some((_, (v, u64::MAX))) if kind == "changes" => Some(v),
            _ => None,
        };
        let mut skipped = 0;
        for change in envelope["changes"].as_array().expect("changes") {
            let version = change["version"].as_i64().expect("change version");
            if whole_version.is_some_and(|v| version <= v) {
                skipped += 1;
                continue;
            }
            let key = serde_json::to_string(&change["key"]).unwrap();
            match change["op"].as_str().expect("op") {
                "insert" | "update" | "read" => {
                    if change["row"].is_null() {
                        self.rowless += 1;
                    }
                    self.replica.insert(key, change["row"].clone());
                }
                "delete" => {
                    self.replica.remove(&key);
                }
                other => panic!("unknown op {other}: {envelope}"),
            }
            *self.applied_by_version.entry(version).or_default() += 1;
        }
        self.skipped += skipped;
        self.applied += 1;
        if kind == "changes" {
            self.applied_tos.push(to);
        }
        self.last = Some((seq, to));
        Outcome::Applied { skipped }
    }
}

// ---- the source table ---------------------------------------------------------------

/// `dbo.Orders` as the sidecar would publish it: key JSON → row JSON.
fn source_table(h: &Harness) -> BTreeMap<String, Value> {
    let sql = "SELECT [Id], [Customer], [Total] FROM [dbo].[Orders] ORDER BY [Id];";
    let outcomes = h.engine.execute(DB, sql).unwrap_or_else(|e| panic!("{sql}\n→ {e}"));
    let rows = outcomes
        .into_iter()
        .find_map(|o| match o {
            SqlOutcome::Rows { rows, .. } => Some(rows),
            _ => None,
        })
        .expect("a result set");
    rows.iter()
        .map(|r| {
            let id = match &r[0] {
                SqlValue::Int(i) => i.to_string(),
                other => panic!("Id {other:?}"),
            };
            let customer = match &r[1] {
                SqlValue::String(s) => Value::String(s.clone()),
                other => panic!("Customer {other:?}"),
            };
            let total = match &r[2] {
                SqlValue::Null => Value::Null,
                SqlValue::Decimal { value, scale } => Value::String(decimal(*value, *scale)),
                other => panic!("Total {other:?}"),
            };
            let key = serde_json::to_string(&json!({ "Id": id })).unwrap();
            (key, json!({ "Id": id, "Customer": customer, "Total": total }))
        })
        .collect()
}

/// `value / 10^scale` with `scale` digits, as README's JSON has decimals.
fn decimal(value: i128, scale: u8) -> String {
    let sign = if value < 0 { "-" } else { "" };
    let abs = value.unsigned_abs();
    let unit = 10u128.pow(u32::from(scale));
    if scale == 0 {
        return format!("{sign}{abs}");
    }
    format!(
        "{sign}{}.{:0width$}",
        abs / unit,
        abs % unit,
        width = usize::from(scale)
    )
}

/// Panics naming the first differences between the replica and the source.
fn assert_same_rows(replica: &BTreeMap<String, Value>, source: &BTreeMap<String, Value>) {
    if replica == source {
        return;
    }
    let mut diffs = Vec::new();
    for (k, v) in source {
        match replica.get(k) {
            None => diffs.push(format!("missing {k}: {v}")),
            Some(r) if r != v => diffs.push(format!("{k}: replica {r}, source {v}")),
            _ => {}
        }
    }
    for (k, v) in replica {
        if !source.contains_key(k) {
            diffs.push(format!("extra {k}: {v}"));
        }
    }
    panic!(
        "the replica differs from the source in {} rows ({} vs {} rows), first: {:#?}",
        diffs.len(),
        replica.len(),
        source.len(),
        &diffs[..diffs.len().min(10)]
    );
}

// ---- the sidecar process ------------------------------------------------------------

/// Starts the binary with `dir/sidecar.toml`; its log goes to `dir/sidecar-<n>.log`.
fn spawn_sidecar(dir: &Path, n: usize) -> SidecarProcess {
    SidecarProcess::start(&dir.join("sidecar.toml"), &dir.join(format!("sidecar-{n}.log")))
}

/// Clears a killed sidecar's lease (it would expire within 15 s; an operator who knows
/// the process is gone may clear it, as the tests do to stay fast) and lets the broker
/// answer again.
async fn before_restart(h: &Harness) {
    h.pulsar.hold_receipts_for(Duration::ZERO);
    h.clear_lease().await;
}

// ---- checkpoints and waiting --------------------------------------------------------

/// A stored checkpoint: the position (`part` empty in Redis when the whole version is
/// delivered) and the number of the last batch delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stored {
    version: i64,
    part: Option<u64>,
    seq: u64,
}

impl Stored {
    fn pos(&self) -> Pos {
        (self.version, self.part.unwrap_or(u64::MAX))
    }
    fn json(&self) -> Value {
        json!({ "version": self.version, "part": self.part })
    }
}

/// The checkpoint hash `cdc-sidecar:checkpoint:Shop:dbo.Orders`, read with the redis crate.
async fn stored(h: &Harness) -> Option<Stored> {
    let client = redis::Client::open(h.redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let fields: std::collections::HashMap<String, String> = redis::cmd("HGETALL")
        .arg(format!("cdc-sidecar:checkpoint:{DB}:dbo.Orders"))
        .query_async(&mut conn)
        .await
        .unwrap();
    let version = fields.get("version")?.parse().expect("version");
    let part = fields
        .get("part")
        .filter(|p| !p.is_empty())
        .map(|p| p.parse().expect("part"));
    let seq = fields.get("seq").map_or(0, |s| s.parse().expect("seq"));
    Some(Stored { version, part, seq })
}

/// Polls `f` every 20 ms until it returns `Some`, or panics naming `what` after `limit`.
async fn poll<T, Fut: Future<Output = Option<T>>>(what: &str, limit: Duration, mut f: impl FnMut() -> Fut) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until every change up to and including version `v` is checkpointed.
async fn wait_whole(h: &Harness, what: &str, v: i64, limit: Duration) -> Stored {
    poll(what, limit, || async move {
        stored(h).await.filter(|s| s.version == v && s.part.is_none())
    })
    .await
}

/// Makes the broker store SENDs but hold their receipts for 30 s; returns how many
/// messages the topic held before.
fn hold_receipts(h: &Harness) -> usize {
    let before = h.pulsar.messages(ORDERS_TOPIC).len();
    h.pulsar.hold_receipts_for(Duration::from_secs(30));
    before
}

/// With receipts held since the topic had `before` messages, waits until the sidecar is
/// stuck on a batch stored since: its send timed out and it sent the same batch again,
/// so the topic's last two messages are that batch. Nothing from it on can be
/// checkpointed until the hold ends; returns it.
async fn wait_stuck(h: &Harness, before: usize) -> Value {
    poll("a batch sent again for want of a receipt", DEADLINE, || async move {
        let messages = h.pulsar.messages(ORDERS_TOPIC);
        let [.., a, b] = messages.get(before..)? else {
            return None;
        };
        let a: Value = serde_json::from_slice(&a.payload).unwrap();
        let b: Value = serde_json::from_slice(&b.payload).unwrap();
        (a["seq"] == b["seq"]).then_some(b)
    })
    .await
}

/// `n` rows from `first` on, inserted by statements of at most 1000 rows (SQL Server's
/// limit for a VALUES list) — as SQL, to run inside one transaction.
fn inserts(first: i64, n: i64) -> String {
    let ids: Vec<i64> = (first..first + n).collect();
    ids.chunks(1000)
        .map(|chunk| {
            let values: Vec<String> = chunk.iter().map(|id| format!("({id}, N'c{id}')")).collect();
            format!(
                "INSERT INTO [dbo].[Orders] ([Id], [Customer]) VALUES {};\n",
                values.join(", ")
            )
        })
        .collect()
}

/// Runs `body` as one transaction; returns its Change Tracking version.
fn transaction(h: &Harness, body: &str) -> i64 {
    let before = h.current_version();
    h.sql(&format!("BEGIN TRANSACTION;\n{body}COMMIT;"));
    let v = h.current_version();
    assert_eq!(v, before + 1, "one transaction, one version");
    v
}

/// Within one process lifetime the sidecar sends its batches in order: `seq` one apart,
/// each `from` at or after the previous `to`, `to` strictly increasing (equal only
/// between a snapshot's chunks), except that a batch whose send timed out is sent
/// again as it was.
fn assert_in_order_within_a_lifetime(lifetime: &[Value]) {
    for pair in lifetime.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        if a["seq"] == b["seq"] {
            assert_eq!(a, b, "only a timed-out send repeats a seq, unchanged");
            continue;
        }
        assert_eq!(
            b["seq"].as_u64().unwrap(),
            a["seq"].as_u64().unwrap() + 1,
            "seq one apart: {a}\n{b}"
        );
        assert!(pos(&b["from"]) >= pos(&a["to"]), "batches chain: {a}\n{b}");
        if a["kind"] == "snapshot" && b["kind"] == "snapshot" {
            assert_eq!(pos(&b["to"]), pos(&a["to"]), "one snapshot version: {a}\n{b}");
        } else {
            assert!(pos(&b["to"]) > pos(&a["to"]), "ends strictly increase: {a}\n{b}");
        }
    }
}

fn config(h: &Harness, snapshot: &str, poll: &str) -> String {
    h.config_toml(&[&format!("name = \"dbo.Orders\"\nsnapshot = \"{snapshot}\"")])
        .replace("batch_rows = 100\n", poll)
        .replace("send_timeout_ms = 3000", "send_timeout_ms = 1000")
}

// ---- the tests ----------------------------------------------------------------------

/// How long the sidecar may take to deliver the 25 000-change transaction (some 4 000
/// batches) on a loaded 2-core machine.
const BIG: Duration = Duration::from_secs(45);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_applying_the_readme_rules_ends_with_exactly_the_source_table() {
    let started = Instant::now();
    let harness = Harness::start().await;
    let h = &harness;
    h.create_tracked_table("Orders", ORDERS);
    let dir = tempfile::tempdir().unwrap();
    // Batches of 7 changes, statements of 250, ticks of about 20 KB: transactions end
    // inside batches, statements and ticks. (Statements of 50 would take the stand-in
    // too long: each statement inside one version walks all of that version's changes
    // again, so 500 of them over the 25 000-change version cost some 40 s of CPU.)
    std::fs::write(
        dir.path().join("sidecar.toml"),
        config(
            h,
            "initial",
            "batch_rows = 7\nstatement_rows = 250\ntick_bytes = 20000\n",
        ),
    )
    .unwrap();

    // GIVEN 120 existing rows, published by an initial snapshot (chunks of 50)
    let v0 = transaction(h, &inserts(50_001, 120));
    let mut child = spawn_sidecar(dir.path(), 1);
    wait_whole(h, "the initial snapshot", v0, DEADLINE).await;

    // WHEN transactions of 1, 999, 1000, 1001 and 1500 changes commit one after the other
    let mut sizes = Vec::new();
    for (body, size) in [
        (inserts(1, 1), 1),
        (inserts(2, 999), 999),
        (
            format!(
                "UPDATE [dbo].[Orders] SET [Customer] = N'u' + CAST([Id] AS nvarchar(20)), [Total] = 12.50 \
                 WHERE [Id] BETWEEN 1 AND 500;\n\
                 DELETE FROM [dbo].[Orders] WHERE [Id] BETWEEN 501 AND 750;\n{}",
                inserts(2001, 250)
            ),
            1000,
        ),
        (inserts(3001, 1001), 1001),
        (
            "UPDATE [dbo].[Orders] SET [Customer] = N'v' + CAST([Id] AS nvarchar(20)), [Total] = 0.99 \
             WHERE [Id] BETWEEN 3001 AND 4000;\n\
             DELETE FROM [dbo].[Orders] WHERE [Id] BETWEEN 751 AND 1000 OR [Id] BETWEEN 2001 AND 2250;\n"
                .to_string(),
            1500,
        ),
    ] {
        let v = transaction(h, &body);
        wait_whole(h, &format!("the transaction of {size} changes"), v, DEADLINE).await;
        sizes.push((v, size));
    }
    let small_done = started.elapsed();

    // WHEN a transaction of 25 000 inserts is being delivered (some of its parts are
    // checkpointed) and the sidecar is SIGKILLed while the broker holds a batch's receipt
    let v6 = transaction(h, &inserts(10_001, 25_000));
    poll("part 20 of the big transaction checkpointed", BIG, || async move {
        stored(h)
            .await
            .filter(|s| s.version == v6 && s.part.is_some_and(|p| p >= 20))
    })
    .await;
    let before = hold_receipts(h);
    let held = wait_stuck(h, before).await;
    child.kill();
    let at_kill_1 = stored(h).await.unwrap();
    let boundary_1 = h.pulsar.messages(ORDERS_TOPIC).len();
    assert!(
        at_kill_1.version == v6 && at_kill_1.part.is_some(),
        "killed inside the big transaction: {at_kill_1:?}"
    );
    assert!(
        pos(&held["to"]) > at_kill_1.pos(),
        "the held batch is beyond the checkpoint: {held}, {at_kill_1:?}"
    );

    // AND while it is down, rows of that transaction (delivered and not), older rows,
    // and every row of the held part change again: re-read, that part holds nothing
    let held_ids: Vec<String> = held["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["key"]["Id"].as_str().unwrap().to_string())
        .collect();
    assert!(!held_ids.is_empty(), "{held}");
    let v7 = transaction(
        h,
        &format!(
            "UPDATE [dbo].[Orders] SET [Customer] = N'late' WHERE [Id] BETWEEN 34001 AND 34500 \
               OR [Id] BETWEEN 10001 AND 10010 OR [Id] BETWEEN 3001 AND 3010 OR [Id] BETWEEN 50001 AND 50010;\n\
             DELETE FROM [dbo].[Orders] WHERE [Id] BETWEEN 34501 AND 35000 OR [Id] BETWEEN 10011 AND 10020 \
               OR [Id] IN ({});\n",
            held_ids.join(", ")
        ),
    );

    // AND it restarts
    before_restart(h).await;
    let mut child = spawn_sidecar(dir.path(), 2);
    wait_whole(h, "everything after the first restart", v7, BIG).await;
    let big_done = started.elapsed();

    // WHEN a small transaction is stored by the broker but its receipt held, two more
    // commit, and the sidecar is SIGKILLed again
    let before = hold_receipts(h);
    let v8 = transaction(h, &inserts(40_001, 3));
    let stuck = wait_stuck(h, before).await;
    assert_eq!(pos(&stuck["to"]), (v8, u64::MAX), "{stuck}");
    transaction(h, &inserts(40_004, 2));
    let v10 = transaction(h, &inserts(40_006, 1));
    child.kill();
    let at_kill_2 = stored(h).await.unwrap();
    let boundary_2 = h.pulsar.messages(ORDERS_TOPIC).len();
    assert!(at_kill_2.pos() < (v8, 0), "{at_kill_2:?}");
    before_restart(h).await;
    let child = spawn_sidecar(dir.path(), 3);
    wait_whole(h, "everything after the second restart", v10, DEADLINE).await;
    drop(child);

    // THEN a consumer applying README's rules to everything Pulsar stored, re-sends
    // included, ends with exactly the source table
    let envelopes = h.pulsar_envelopes(ORDERS_TOPIC);
    let mut consumer = Consumer::default();
    let outcomes: Vec<Outcome> = envelopes.iter().map(|e| consumer.apply(e)).collect();
    assert_eq!(consumer.gaps, 0, "no gaps");
    assert_eq!(consumer.rowless, 0, "every insert and update has its row");
    assert_eq!(consumer.resyncs, 0);
    assert_same_rows(&consumer.replica, &source_table(h));

    // AND the rules were exercised: the batch held at the first kill came again and was
    // a repeat; the batch after the second restart started before the held whole version
    // and rule 5 left that version's 3 changes out
    assert!(
        outcomes[boundary_1..boundary_2].contains(&Outcome::Repeat),
        "a repeat after the first restart"
    );
    let after_2: Vec<&Outcome> = outcomes[boundary_2..]
        .iter()
        .filter(|o| **o != Outcome::Repeat)
        .collect();
    assert_eq!(
        after_2.first(),
        Some(&&Outcome::Applied { skipped: 3 }),
        "after the second restart: {:?}",
        &envelopes[boundary_2..]
    );
    assert_eq!(consumer.skipped, 3);

    // AND the transactions before the kills were applied with exactly their sizes
    for (v, size) in sizes {
        assert_eq!(consumer.applied_by_version.get(&v), Some(&size), "version {v}");
    }
    // AND the applied ends strictly increase
    assert!(
        consumer.applied_tos.windows(2).all(|w| w[0] < w[1]),
        "applied ends strictly increase"
    );
    // AND each process sent in order, and each restart resumed at the stored position
    for (lifetime, at_kill) in [
        (&envelopes[..boundary_1], None),
        (&envelopes[boundary_1..boundary_2], Some(at_kill_1)),
        (&envelopes[boundary_2..], Some(at_kill_2)),
    ] {
        assert_in_order_within_a_lifetime(lifetime);
        if let Some(at_kill) = at_kill {
            assert_eq!(lifetime[0]["from"], at_kill.json(), "resumed at the checkpoint");
            assert_eq!(lifetime[0]["seq"].as_u64(), Some(at_kill.seq + 1));
        }
    }
    assert_eq!(
        envelopes[boundary_1]["to"], held["to"],
        "the held part was re-sent with the same end"
    );
    assert_eq!(
        envelopes[boundary_1]["changes"],
        json!([]),
        "re-read, the held part is empty: its rows changed again while the sidecar was down"
    );
    assert!(
        envelopes.iter().filter(|e| e["to"]["part"].is_u64()).count() > 3000,
        "transactions split over batches"
    );
    eprintln!(
        "{} envelopes ({} applied, {} repeats), {} rows; small transactions done after {small_done:?}, \
         the big one after {big_done:?}, all after {:?}",
        envelopes.len(),
        consumer.applied,
        consumer.repeats,
        consumer.replica.len(),
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_split_over_batches_resumes_inside_it_after_sigkill() {
    let harness = Harness::start().await;
    let h = &harness;
    h.create_tracked_table("Orders", ORDERS);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("sidecar.toml"), config(h, "never", "batch_rows = 10\n")).unwrap();
    let mut child = spawn_sidecar(dir.path(), 1);
    let start = poll("the starting checkpoint", DEADLINE, || stored(h)).await;

    // GIVEN one transaction of 1001 inserts, split over batches of 10
    let v = transaction(h, &inserts(1, 1001));
    // WHEN the checkpoint is inside it and the sidecar is SIGKILLed while the broker
    // holds the next batch's receipt
    poll("a part of the transaction checkpointed", DEADLINE, || async move {
        stored(h)
            .await
            .filter(|s| s.version == v && s.part.is_some_and(|p| p >= 3))
    })
    .await;
    let before = hold_receipts(h);
    let held = wait_stuck(h, before).await;
    child.kill();
    let at_kill = stored(h).await.unwrap();
    let boundary = h.pulsar.messages(ORDERS_TOPIC).len();
    assert!(
        at_kill.version == v && at_kill.part.is_some(),
        "killed inside the transaction: {at_kill:?}"
    );
    assert_eq!(held["from"], at_kill.json(), "the held batch follows the checkpoint");
    assert_eq!(held["seq"].as_u64(), Some(at_kill.seq + 1));

    // AND it restarts
    before_restart(h).await;
    let child = spawn_sidecar(dir.path(), 2);
    wait_whole(h, "the transaction after the restart", v, DEADLINE).await;
    drop(child);

    // THEN the restarted sidecar re-sends nothing before the checkpoint: its first batch
    // is the held part again, from the checkpoint, with the same end and changes
    let envelopes = h.pulsar_envelopes(ORDERS_TOPIC);
    let resent = &envelopes[boundary..];
    let first = &resent[0];
    assert_eq!(first["from"], at_kill.json(), "{first}");
    assert_eq!(first["seq"].as_u64(), Some(at_kill.seq + 1), "{first}");
    assert_eq!(first["to"], held["to"], "the same end");
    assert_eq!(first["changes"], held["changes"], "the same changes");
    assert!(
        resent.iter().all(|e| pos(&e["from"]) >= at_kill.pos()),
        "nothing from before the checkpoint"
    );
    assert_in_order_within_a_lifetime(&envelopes[..boundary]);
    assert_in_order_within_a_lifetime(resent);
    assert_eq!(resent.last().unwrap()["to"], json!({ "version": v, "part": null }));
    assert_eq!(envelopes[0]["from"], json!({ "version": start.version, "part": null }));

    // AND a consumer applying README's rules ends with exactly the source table
    let mut consumer = Consumer::default();
    let outcomes: Vec<Outcome> = envelopes.iter().map(|e| consumer.apply(e)).collect();
    assert_eq!(consumer.gaps, 0);
    assert_eq!(outcomes[boundary], Outcome::Repeat, "the held part, again");
    assert_eq!(consumer.applied_by_version.get(&v), Some(&1001));
    assert_same_rows(&consumer.replica, &source_table(h));
}

/// A sidecar bug this test exposes: the killed sidecar's last batch (seq 1) held the 3
/// changes of version va and the first 4 of vb, ending at part 1 of vb. The restarted
/// sidecar re-reads that range as two batches — seq 1 up to the whole of va (the version
/// before the stored part), then seq 2 = the stored part 1 of vb — so every later batch
/// is numbered one more than the first sidecar would have numbered it, and rule 3 takes
/// seq 3 (two above the last processed seq, 1) for a gap. Positions alone (rules 2 and
/// 4) would be exact; it is the seq numbering that does not survive the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_ending_in_the_first_part_of_a_version_after_another_version_is_resumed_without_a_gap() {
    let harness = Harness::start().await;
    let h = &harness;
    h.create_tracked_table("Orders", ORDERS);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("sidecar.toml"), config(h, "never", "batch_rows = 7\n")).unwrap();
    let mut child = spawn_sidecar(dir.path(), 1);
    let start = poll("the starting checkpoint", DEADLINE, || stored(h)).await;
    child.kill();

    // GIVEN, while the sidecar is down, a transaction of 3 inserts then one of 100: its
    // first batch holds the 3 and the first 4 of the 100, ending at part 1 of the second
    let va = transaction(h, &inserts(1, 3));
    let vb = transaction(h, &inserts(4, 100));
    // WHEN the sidecar starts, the broker stores that batch but holds its receipt, and
    // the sidecar is SIGKILLed
    let before = hold_receipts(h);
    h.clear_lease().await;
    let mut child = spawn_sidecar(dir.path(), 2);
    let held = wait_stuck(h, before).await;
    child.kill();
    assert_eq!(
        held["from"],
        json!({ "version": start.version, "part": null }),
        "{held}"
    );
    assert_eq!(held["to"], json!({ "version": vb, "part": 1 }), "{held}");
    assert_eq!(changes(std::slice::from_ref(&held)).len(), 7);
    let boundary = h.pulsar.messages(ORDERS_TOPIC).len();

    // AND it restarts
    before_restart(h).await;
    let child = spawn_sidecar(dir.path(), 3);
    wait_whole(h, "both transactions after the restart", vb, DEADLINE).await;
    drop(child);

    // THEN a consumer applying README's rules sees no gap and ends with the table
    let envelopes = h.pulsar_envelopes(ORDERS_TOPIC);
    let mut consumer = Consumer::default();
    let outcomes: Vec<Outcome> = envelopes.iter().map(|e| consumer.apply(e)).collect();
    let summary: Vec<String> = envelopes
        .iter()
        .zip(&outcomes)
        .map(|(e, o)| {
            format!(
                "seq {} from {} to {} ({} changes): {o:?}",
                e["seq"],
                e["from"],
                e["to"],
                e["changes"].as_array().unwrap().len()
            )
        })
        .collect();
    assert_eq!(
        consumer.gaps,
        0,
        "boundary {boundary}, va {va}:\n{}",
        summary.join("\n")
    );
    assert_same_rows(&consumer.replica, &source_table(h));
}
