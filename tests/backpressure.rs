//! Backpressure end to end: a sink that is down for a long while stalls the reads, but
//! never with a SNAPSHOT transaction left open on SQL Server and never by filling the
//! sidecar's memory; when the sink returns, everything arrives.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;
use testkit::mssql::engine::Engine;
use testkit::mssql::types::{Outcome, Value as SqlValue};

/// How long Pulsar is unreachable while the writer keeps changing rows (issue 10).
const OUTAGE: Duration = Duration::from_secs(60);
/// The writer commits a round of transactions this often during the outage.
const WRITE_EVERY: Duration = Duration::from_millis(100);
/// How often the sidecar's transactions and memory are sampled.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);
/// Longest a transaction of the sidecar may be seen open: a tick reads at most
/// `poll.tick_bytes` (32 KiB here), which takes milliseconds; 2 s leaves room for a
/// loaded 2-core machine without letting a transaction held across the outage pass.
const MAX_TRANSACTION_AGE: Duration = Duration::from_secs(2);
/// Longest pause between two samples that still counts as watching: a transaction held
/// across it is seen twice (by `transaction_id`) or reports a large `elapsed_time_seconds`.
const MAX_SAMPLE_GAP: Duration = Duration::from_secs(2);
/// The sidecar's resident memory must stay below this, whatever the backlog.
const RSS_BOUND_KIB: u64 = 200 * 1024;
/// Time allowed for the backlog to be delivered once Pulsar is back (the Pulsar client
/// reconnects with a backoff of up to 5 s, then some 90 000 changes are read and sent).
const CATCH_UP: Duration = Duration::from_secs(240);

/// Small batches, statements and ticks: the backlog is read in many short ticks.
const POLL: &str = "batch_rows = 20\nbatch_bytes = 4096\nstatement_rows = 200\ntick_bytes = 32768";

/// Starts the real binary with `toml` as its configuration; its log goes to a file.
fn spawn_sidecar(dir: &Path, toml: &str) -> SidecarProcess {
    let config = dir.join("sidecar.toml");
    std::fs::write(&config, toml).unwrap();
    SidecarProcess::start(&config, &dir.join("sidecar.log"))
}

/// `VmRSS` of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the sidecar is running");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/<pid>/status")
}

/// The first result set of `sql`, run as `sa`.
fn query(engine: &Engine, sql: &str) -> Vec<Vec<SqlValue>> {
    let outcomes = engine.execute(DB, sql).unwrap_or_else(|e| panic!("{sql}\n→ {e}"));
    outcomes
        .into_iter()
        .find_map(|o| match o {
            Outcome::Rows { rows, .. } => Some(rows),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{sql}\n→ no result set"))
}

fn int(v: &SqlValue) -> Option<i64> {
    match v {
        SqlValue::Int(i) => Some(*i),
        _ => None,
    }
}

/// What the transaction DMVs show of the sidecar's sessions at one moment.
struct Sample {
    /// The sidecar's sessions (its login's).
    sessions: usize,
    /// Its open row-versioning transactions: (session, transaction_id, elapsed seconds).
    transactions: Vec<(i64, i64, i64)>,
}

fn sample_transactions(engine: &Engine) -> Sample {
    let rows = query(
        engine,
        &format!(
            "SELECT s.session_id, t.transaction_id, t.elapsed_time_seconds \
             FROM sys.dm_exec_sessions AS s \
             LEFT JOIN sys.dm_tran_active_snapshot_database_transactions AS t ON t.session_id = s.session_id \
             WHERE s.login_name = N'{LOGIN}'"
        ),
    );
    let mut sessions = std::collections::BTreeSet::new();
    let mut transactions = Vec::new();
    for row in &rows {
        let session = int(&row[0]).expect("session_id");
        sessions.insert(session);
        if let (Some(id), Some(elapsed)) = (int(&row[1]), int(&row[2])) {
            transactions.push((session, id, elapsed));
        }
    }
    Sample {
        sessions: sessions.len(),
        transactions,
    }
}

/// Everything sampled, outage and catch-up alike.
#[derive(Default)]
struct Watch {
    samples: usize,
    samples_with_session: usize,
    /// Longest time between two samples: a transaction open longer than this plus
    /// [`MAX_TRANSACTION_AGE`] cannot go unseen.
    max_gap: Duration,
    last_sample: Option<Instant>,
    /// (session, transaction_id) → first and last time seen.
    seen: HashMap<(i64, i64), (Instant, Instant)>,
    max_elapsed_seconds: i64,
    max_rss_kib: u64,
}

impl Watch {
    fn sample(&mut self, engine: &Engine, pid: u32) {
        let now = Instant::now();
        let s = sample_transactions(engine);
        self.samples += 1;
        if s.sessions > 0 {
            self.samples_with_session += 1;
        }
        if let Some(last) = self.last_sample {
            self.max_gap = self.max_gap.max(now - last);
        }
        self.last_sample = Some(now);
        for (session, id, elapsed) in s.transactions {
            let span = self.seen.entry((session, id)).or_insert((now, now));
            span.1 = now;
            self.max_elapsed_seconds = self.max_elapsed_seconds.max(elapsed);
        }
        self.max_rss_kib = self.max_rss_kib.max(rss_kib(pid));
    }

    /// The transaction seen open the longest, and for how long.
    fn oldest(&self) -> Option<((i64, i64), Duration)> {
        self.seen
            .iter()
            .map(|(k, (first, last))| (*k, *last - *first))
            .max_by_key(|(_, age)| *age)
    }

    fn report(&self, phase: &str) {
        let oldest = self.oldest();
        println!(
            "{phase}: {} samples ({} showing the sidecar's session), longest gap {:?}; \
             {} distinct transactions seen, longest seen open {:?} (transaction {:?}), \
             max elapsed_time_seconds {}; max RSS {} KiB",
            self.samples,
            self.samples_with_session,
            self.max_gap,
            self.seen.len(),
            oldest.map_or(Duration::ZERO, |o| o.1),
            oldest.map(|o| o.0),
            self.max_elapsed_seconds,
            self.max_rss_kib,
        );
    }

    fn check(&self, phase: &str) {
        assert!(
            self.samples_with_session * 10 >= self.samples * 9,
            "{phase}: the sidecar's session was missing from {} of {} samples: is `login_name` the right filter?",
            self.samples - self.samples_with_session,
            self.samples
        );
        assert!(
            self.max_gap < MAX_SAMPLE_GAP,
            "{phase}: sampling stalled for {:?}; a held transaction could have gone unseen",
            self.max_gap
        );
        if let Some((tx, age)) = self.oldest() {
            assert!(
                age <= MAX_TRANSACTION_AGE,
                "{phase}: the sidecar's transaction {tx:?} (session, transaction_id) was seen open for {age:?}, \
                 more than {MAX_TRANSACTION_AGE:?}: a transaction is held while the sink is down"
            );
        }
        assert!(
            self.max_elapsed_seconds <= MAX_TRANSACTION_AGE.as_secs() as i64,
            "{phase}: a transaction of the sidecar reported elapsed_time_seconds = {}",
            self.max_elapsed_seconds
        );
        assert!(
            self.max_rss_kib < RSS_BOUND_KIB,
            "{phase}: the sidecar's RSS reached {} KiB, above the bound of {RSS_BOUND_KIB} KiB",
            self.max_rss_kib
        );
    }
}

/// The writer: every [`WRITE_EVERY`] until `stop`, 8 transactions each inserting 10
/// rows, updating 5 and deleting 1, and every 20th round one transaction of 300
/// inserts and 100 updates (many batches' worth, so it is delivered in parts).
/// Returns the number of row changes made.
fn write_until(engine: &Engine, stop: &AtomicBool, first_id: i64) -> u64 {
    let mut next_id = first_id;
    let mut changes = 0u64;
    let mut round = 0u64;
    let start = Instant::now();
    // A spread of existing ids, deterministic.
    let pick = |seed: u64, below: i64| -> i64 { (seed.wrapping_mul(2_654_435_761) % below.max(1) as u64) as i64 + 1 };
    while !stop.load(Ordering::Relaxed) {
        let big = round % 20 == 19;
        let txns = if big { 1 } else { 8 };
        for t in 0..txns {
            let (inserts, updates, deletes) = if big { (300, 100, 0) } else { (10, 5, 1) };
            let made = engine
                .transaction(DB, |txn| {
                    let mut made = 0u64;
                    for _ in 0..inserts {
                        let total = if next_id % 5 == 0 {
                            SqlValue::Null
                        } else {
                            SqlValue::Decimal {
                                value: i128::from(next_id % 100_000) * 7,
                                scale: 2,
                            }
                        };
                        txn.insert(
                            "dbo.Orders",
                            vec![
                                SqlValue::Int(next_id),
                                SqlValue::String(format!("customer {next_id}")),
                                total,
                            ],
                        )?;
                        next_id += 1;
                        made += 1;
                    }
                    for u in 0..updates {
                        let id = pick(round * 1_000 + t * 100 + u, next_id - 1);
                        let set = [
                            ("Customer", SqlValue::String(format!("updated in round {round}"))),
                            (
                                "Total",
                                SqlValue::Decimal {
                                    value: i128::from(round as i64 * 100 + u as i64),
                                    scale: 2,
                                },
                            ),
                        ];
                        if txn.update("dbo.Orders", &[SqlValue::Int(id)], &set)? {
                            made += 1;
                        }
                    }
                    for d in 0..deletes {
                        let id = pick(round * 7_919 + t * 31 + d + 17, next_id - 1);
                        if txn.delete("dbo.Orders", &[SqlValue::Int(id)])? {
                            made += 1;
                        }
                    }
                    Ok(made)
                })
                .expect("writer transaction");
            changes += made;
        }
        round += 1;
        // Rounds keep their pace whatever a round cost.
        let next = start + WRITE_EVERY * round as u32;
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    changes
}

/// The stored checkpoint of `dbo.Orders` as a position: (version, part), `None` for the
/// whole version.
async fn stored_position(conn: &mut redis::aio::MultiplexedConnection) -> Option<(i64, Option<u64>)> {
    let (version, part): (Option<String>, Option<String>) = redis::cmd("HMGET")
        .arg(format!("cdc-sidecar:checkpoint:{DB}:dbo.Orders"))
        .arg("version")
        .arg("part")
        .query_async(conn)
        .await
        .unwrap();
    let part = part.filter(|p| !p.is_empty()).map(|p| p.parse().unwrap());
    Some((version?.parse().unwrap(), part))
}

/// `(Customer, Total)` by `Id`, all as the envelopes write them.
type Contents = BTreeMap<String, (String, Option<String>)>;

fn decimal(value: i128, scale: u8) -> String {
    let unit = 10i128.pow(u32::from(scale));
    let sign = if value < 0 { "-" } else { "" };
    let (whole, frac) = (value.abs() / unit, value.abs() % unit);
    if scale == 0 {
        format!("{sign}{whole}")
    } else {
        format!("{sign}{whole}.{frac:0width$}", width = usize::from(scale))
    }
}

/// `dbo.Orders` as it is in the database.
fn table_contents(engine: &Engine) -> Contents {
    query(engine, "SELECT [Id], [Customer], [Total] FROM [dbo].[Orders]")
        .into_iter()
        .map(|row| {
            let id = int(&row[0]).expect("Id").to_string();
            let customer = match &row[1] {
                SqlValue::String(s) => s.clone(),
                other => panic!("Customer {other:?}"),
            };
            let total = match &row[2] {
                SqlValue::Null => None,
                SqlValue::Decimal { value, scale } => Some(decimal(*value, *scale)),
                other => panic!("Total {other:?}"),
            };
            (id, (customer, total))
        })
        .collect()
}

/// A consumer following the README's "Consumer rules" for one table's `changes`
/// batches. Returns the table it rebuilt and the number of changes it applied.
fn replay(envelopes: &[Value]) -> (Contents, u64) {
    let position = |p: &Value| (p["version"].as_i64().unwrap(), p["part"].as_u64().unwrap_or(u64::MAX));
    let mut rows = Contents::new();
    let mut last: Option<(u64, (i64, u64))> = None;
    let mut applied = 0u64;
    for e in envelopes {
        assert_eq!(e["kind"], "changes", "no resync or snapshot is expected here: {e}");
        let seq = e["seq"].as_u64().unwrap();
        let to = position(&e["to"]);
        if let Some((last_seq, last_to)) = last {
            // Rule 2: a repeat.
            if to <= last_to {
                continue;
            }
            // Rule 3: a gap.
            assert!(seq <= last_seq + 1, "gap: seq {seq} after {last_seq}: {e}");
        }
        // Rule 4: apply, skipping what a whole processed version already held.
        let whole = last.and_then(|(_, (v, part))| (part == u64::MAX).then_some(v));
        for c in e["changes"].as_array().unwrap() {
            if whole.is_some_and(|v| c["version"].as_i64().unwrap() <= v) {
                continue;
            }
            let id = c["key"]["Id"].as_str().unwrap().to_string();
            match c["op"].as_str().unwrap() {
                "insert" | "update" => {
                    let row = &c["row"];
                    assert_eq!(row["Id"].as_str(), Some(id.as_str()), "{c}");
                    let customer = row["Customer"].as_str().unwrap().to_string();
                    let total = row["Total"].as_str().map(str::to_string);
                    rows.insert(id, (customer, total));
                }
                "delete" => {
                    rows.remove(&id);
                }
                op => panic!("unexpected op {op}: {c}"),
            }
            applied += 1;
        }
        last = Some((seq, to));
    }
    (rows, applied)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_transaction_is_held_open_while_pulsar_is_down_and_everything_arrives_after() {
    let h = Harness::start().await;
    h.create_tracked_table("Orders", ORDERS);
    let dir = tempfile::tempdir().unwrap();
    let toml = h
        .config_toml(&["name = \"dbo.Orders\"\nsnapshot = \"never\""])
        .replace("batch_rows = 100", POLL);
    let sidecar = spawn_sidecar(dir.path(), &toml);
    let pid = sidecar.child.id();
    h.wait_checkpoint("dbo.Orders", "the starting checkpoint", |_| true)
        .await;

    // GIVEN a sidecar streaming dbo.Orders with small batches and ticks, warmed up
    let warm_up: Vec<String> = (1..=100).map(|id| format!("({id}, N'warm-up {id}', 1.00)")).collect();
    h.sql(&format!(
        "INSERT INTO [dbo].[Orders] ([Id], [Customer], [Total]) VALUES {};",
        warm_up.join(", ")
    ));
    let warmed = h.current_version();
    let redis = redis::Client::open(h.redis.url()).unwrap();
    let mut conn = redis.get_multiplexed_async_connection().await.unwrap();
    let warm_up_start = Instant::now();
    // All of the warm-up's version, not just its first part.
    while stored_position(&mut conn).await != Some((warmed, None)) {
        assert!(
            warm_up_start.elapsed() < DEADLINE,
            "timed out waiting for the warm-up rows"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let baseline_rss = rss_kib(pid);
    println!("baseline RSS {baseline_rss} KiB; bound {RSS_BOUND_KIB} KiB");

    // WHEN Pulsar is unreachable for OUTAGE while a writer keeps changing rows
    h.pulsar.go_unreachable().await;
    let outage_start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let engine = h.engine.clone();
        let stop = stop.clone();
        std::thread::spawn(move || write_until(&engine, &stop, 101))
    };
    let mut outage = Watch::default();
    let mut ticker = tokio::time::interval(SAMPLE_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while outage_start.elapsed() < OUTAGE {
        ticker.tick().await;
        outage.sample(&h.engine, pid);
    }
    stop.store(true, Ordering::Relaxed);
    let written = tokio::task::spawn_blocking(move || writer.join().expect("writer"))
        .await
        .unwrap();
    let last = h.current_version();
    let checkpoint_during = stored_position(&mut conn).await;
    outage.report("outage");
    println!(
        "writer: {} row changes in {:?}, up to version {last}; checkpoint at the end of the outage {checkpoint_during:?} \
         (warm-up ended at {warmed})",
        written + 100,
        outage_start.elapsed()
    );
    assert_eq!(
        checkpoint_during,
        Some((warmed, None)),
        "the checkpoint moved past what Pulsar acknowledged before the outage"
    );

    // THEN no transaction of the sidecar stayed open and its memory stayed bounded
    outage.check("outage");

    // WHEN Pulsar is back THEN every change arrives, still in short transactions
    h.pulsar.come_back().await;
    let back = Instant::now();
    let mut catch_up = Watch::default();
    loop {
        ticker.tick().await;
        catch_up.sample(&h.engine, pid);
        let stored = stored_position(&mut conn).await;
        if stored == Some((last, None)) {
            break;
        }
        assert!(
            back.elapsed() < CATCH_UP,
            "timed out after {CATCH_UP:?} waiting for the backlog: checkpoint {stored:?}, last version {last}"
        );
    }
    let caught_up_in = back.elapsed();
    catch_up.report("catch-up");
    catch_up.check("catch-up");

    let envelopes = h.pulsar_envelopes(ORDERS_TOPIC);
    let (replayed, applied) = replay(&envelopes);
    let expected = table_contents(&h.engine);
    println!(
        "caught up in {caught_up_in:?}: {} envelopes on Pulsar, {applied} changes applied by the consumer, \
         {} rows in dbo.Orders",
        envelopes.len(),
        expected.len()
    );
    if replayed != expected {
        let missing: Vec<_> = expected.keys().filter(|k| !replayed.contains_key(*k)).take(5).collect();
        let extra: Vec<_> = replayed.keys().filter(|k| !expected.contains_key(*k)).take(5).collect();
        let differing: Vec<_> = expected
            .iter()
            .filter(|(k, v)| replayed.get(*k).is_some_and(|r| r != *v))
            .take(5)
            .collect();
        panic!(
            "the envelopes do not reproduce dbo.Orders ({} rows replayed, {} in the table): \
             missing {missing:?}, extra {extra:?}, differing {differing:?}",
            replayed.len(),
            expected.len()
        );
    }
    drop(sidecar);
}
