//! Scenarios 1 and 2: how many changes per second the sidecar delivers to both sinks,
//! what that costs it in CPU and memory, and the limits beside it: a raw tiberius read
//! of the same `CHANGETABLE` rows (same SQL text, no JSON, no sinks) and Redis `PUBLISH`
//! / Pulsar send of the same payloads.
//!
//! Two phases per case. *Live*: the sidecar streams while the writer commits, timed
//! from the first commit to the last batch stored by Pulsar and received by the Redis
//! subscriber — what users see, but bounded by the writer too. *Backlog*: the same
//! number of changes committed while the sidecar is stopped, then a fresh sidecar
//! resumes from the checkpoint before them — the sidecar's own read → encode → publish
//! rate, comparable with the raw read of exactly those rows.

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use cdc_sidecar::config::Config;
use futures_util::TryStreamExt;
use tiberius::Query;

use crate::arrivals::{destinations, wait_pulsar, RedisArrivals};
use crate::report::{mib, thousands, Section};
use crate::rig::{free_port, ProcUsage, Rig, SidecarProcess};
use crate::workload::{LinesWorkload, Written};
use crate::Size;

/// The goal for one table, both sinks, on the 2-core machine.
const GOAL_CHANGES_PER_SEC: f64 = 150_000.0;
/// The goal for sidecar / raw read.
const GOAL_RATIO: f64 = 0.6;

/// One measured phase.
struct Phase {
    changes: u64,
    secs: f64,
    cpu_secs: f64,
    /// CPU of this process (stand-ins, writer, subscriber) over the phase.
    rig_cpu_secs: f64,
    peak_rss: u64,
    writer: Option<Written>,
}

impl Phase {
    fn rate(&self) -> f64 {
        self.changes as f64 / self.secs
    }
    fn cpu_per_million(&self) -> f64 {
        self.cpu_secs / (self.changes as f64 / 1e6)
    }
    fn rig_cpu_per_million(&self) -> f64 {
        self.rig_cpu_secs / (self.changes as f64 / 1e6)
    }
}

/// Runs the case with `tables` tables and `total` changes (split evenly).
pub async fn run(exe: &Path, size: &Size, tables: usize, section: &mut Section) -> Result<()> {
    let case = if tables == 1 {
        "1 table".to_string()
    } else {
        format!("{tables} tables")
    };
    let per_table = size.changes / tables;
    let txn_rows = size.txn_rows.min(per_table.max(1));
    let rig = Rig::start().await?;
    let names = rig.create_lines_tables(tables)?;
    let engine = rig.engine.clone();
    let preload_names = names.clone();
    let workload =
        tokio::task::spawn_blocking(move || LinesWorkload::preload(&engine, &preload_names, per_table, 2, txn_rows))
            .await??;

    let port = free_port()?;
    let toml = rig.config_toml(&names, "", port);
    let config = Config::from_toml_str(&toml).context("benchmark config")?;
    let mut redis = RedisArrivals::subscribe(&rig.redis.url(), false, true).await?;

    // Live: the sidecar streams while the writer commits.
    let mut sidecar = SidecarProcess::spawn(exe, &toml, port)?;
    rig.wait_started(&config, &mut sidecar).await?;
    let before = sidecar.usage()?;
    let engine = rig.engine.clone();
    let writer = tokio::task::spawn_blocking(move || {
        let mut workload = workload;
        let written = workload.commit(&engine, per_table);
        written.map(|w| (w, workload))
    });
    let (mut live, (written, mut workload)) = deliver(
        &rig,
        &names,
        &mut redis,
        &mut sidecar,
        per_table,
        before,
        writer_phase(writer),
    )
    .await?;
    live.writer = Some(written);
    let _ = sidecar.stop().await?;

    // Backlog: commit with the sidecar stopped, then resume from the checkpoint before.
    redis.reset();
    let from = rig.version();
    let engine = rig.engine.clone();
    let written = tokio::task::spawn_blocking(move || workload.commit(&engine, per_table)).await??;
    let to = written.last_version;
    rig.set_checkpoints(&config, from).await?;
    let started = Instant::now();
    let mut sidecar = SidecarProcess::spawn(exe, &toml, port)?;
    let zero = ProcUsage {
        cpu_secs: 0.0,
        rss: 0,
        peak_rss: 0,
    };
    let done = async { Ok((started, ())) };
    let (mut backlog, ()) = deliver(&rig, &names, &mut redis, &mut sidecar, per_table, zero, done).await?;
    backlog.writer = None;
    let _ = sidecar.stop().await?;
    let payloads = redis.take_payloads();
    drop(redis);

    // The limits, over exactly the backlog's rows and payloads.
    let raw = raw_read(&config, from, to, true).await?;
    let raw_unmasked = raw_read(&config, from, to, false).await?;
    let publish = redis_publish(&rig.redis.url(), &payloads).await?;
    let send = pulsar_send(&rig.pulsar.url(), &payloads).await?;

    if let Some(live_writer) = live.writer {
        let goal_met = live.rate() >= GOAL_CHANGES_PER_SEC;
        let label = format!("{case}, live");
        if tables == 1 {
            section.add_goal(
                &label,
                "changes/s, first commit → last batch on Pulsar and Redis",
                thousands(live.rate()),
                "≥ 150,000",
                goal_met,
            );
        } else {
            section.add(
                &label,
                "changes/s, first commit → last batch on Pulsar and Redis",
                thousands(live.rate()),
            );
        }
        section.add(
            &label,
            "writer's commit rate (changes/s, stand-in fast path)",
            thousands(
                live_writer.changes as f64
                    / (live_writer.last_commit - live_writer.first_commit)
                        .as_secs_f64()
                        .max(1e-9),
            ),
        );
        section.add(
            &label,
            "sidecar CPU s per million changes",
            format!("{:.2}", live.cpu_per_million()),
        );
        section.add(
            &label,
            "bench process CPU s per million (stand-ins, writer, subscriber)",
            format!("{:.2}", live.rig_cpu_per_million()),
        );
        section.add(&label, "sidecar peak RSS", mib(live.peak_rss));
    }
    let label = format!("{case}, backlog");
    section.add(
        &label,
        "changes/s, sidecar start → last batch on Pulsar and Redis",
        thousands(backlog.rate()),
    );
    section.add(
        &label,
        "sidecar CPU s per million changes",
        format!("{:.2}", backlog.cpu_per_million()),
    );
    section.add(
        &label,
        "bench process CPU s per million (stand-ins, subscriber)",
        format!("{:.2}", backlog.rig_cpu_per_million()),
    );
    section.add(&label, "sidecar peak RSS", mib(backlog.peak_rss));
    section.add(
        &label,
        "limit: raw tiberius read of the same rows (rows/s)",
        thousands(raw.rows_per_sec),
    );
    section.add(
        &label,
        "  share of the raw read before the first row (stand-in building its result)",
        format!("{:.0} %", raw.before_first_row * 100.0),
    );
    section.add(
        &label,
        "  raw read without the per-column CHANGE_TRACKING_IS_COLUMN_IN_MASK flags (rows/s)",
        thousands(raw_unmasked.rows_per_sec),
    );
    let ratio = backlog.rate() / raw.rows_per_sec;
    section.add_goal(
        &label,
        "sidecar / raw read",
        format!("{ratio:.2}"),
        "≥ 0.6",
        ratio >= GOAL_RATIO,
    );
    section.add(
        &label,
        "sidecar (live) / raw read",
        format!("{:.2}", live.rate() / raw.rows_per_sec),
    );
    section.add(
        &label,
        "limit: Redis PUBLISH of the same payloads, one at a time (changes/s)",
        thousands(publish),
    );
    section.add(
        &label,
        "limit: Pulsar send (LZ4) of the same envelopes, one at a time (changes/s)",
        thousands(send),
    );
    Ok(())
}

/// Waits until every table's channel has `per_table` changes and Pulsar stored the
/// batches up to the same versions; returns the phase's figures. `start` resolves to
/// when timing starts (the writer's first commit, or the sidecar's start) plus a value
/// handed back.
async fn deliver<T>(
    rig: &Rig,
    names: &[String],
    redis: &mut RedisArrivals,
    sidecar: &mut SidecarProcess,
    per_table: usize,
    before: ProcUsage,
    start: impl std::future::Future<Output = Result<(Instant, T)>>,
) -> Result<(Phase, T)> {
    let rig_before = ProcUsage::read(std::process::id())?;
    let channels: Vec<(String, String)> = names.iter().map(|n| destinations(n)).collect();
    let want = per_table as u64;
    let waiting = redis.wait(
        "every change",
        || sidecar.check_alive(),
        |state| {
            channels
                .iter()
                .all(|(_, c)| state.get(c).is_some_and(|s| s.changes >= want))
        },
    );
    let (waited, started) = tokio::join!(waiting, start);
    waited?;
    let (started, value) = started?;
    let mut last_redis = started;
    let mut wanted = Vec::with_capacity(channels.len());
    for (topic, channel) in &channels {
        let state = redis.channel(channel);
        if state.changes != want {
            bail!("{channel}: {} changes arrived, {want} committed", state.changes);
        }
        last_redis = last_redis.max(state.last_arrival.unwrap_or(started));
        wanted.push((topic.clone(), state.to_version));
    }
    let pulsar_done = wait_pulsar(&rig.pulsar, &wanted).await?;
    let end = last_redis.max(pulsar_done);
    let after = sidecar.usage()?;
    let rig_after = ProcUsage::read(std::process::id())?;
    Ok((
        Phase {
            changes: want * names.len() as u64,
            secs: (end - started).as_secs_f64(),
            cpu_secs: after.cpu_secs - before.cpu_secs,
            rig_cpu_secs: rig_after.cpu_secs - rig_before.cpu_secs,
            peak_rss: after.peak_rss,
            writer: None,
        },
        value,
    ))
}

/// A phase driven by the writer: `writer` finishes with what it wrote.
async fn writer_phase<T>(writer: tokio::task::JoinHandle<Result<(Written, T)>>) -> Result<(Instant, (Written, T))> {
    let (written, rest) = writer.await??;
    Ok((written.first_commit, (written, rest)))
}

/// Reads the rows of `(from, to]` of every configured table with the sidecar's own
/// `CHANGETABLE` query, over one tiberius connection as the sidecar's login, touching
/// every cell but encoding nothing. With `mask_flags` false, the same query as for a
/// table without column tracking (what the flags cost). Returns rows/s.
/// What a raw read measured.
pub struct RawRead {
    /// Rows per second over the whole read.
    pub rows_per_sec: f64,
    /// Share of the read spent before each query's first row arrived (the server
    /// preparing its result), summed over the tables.
    pub before_first_row: f64,
}

pub async fn raw_read(config: &Config, from: i64, to: i64, mask_flags: bool) -> Result<RawRead> {
    let mut client = cdc_sidecar::source::connect(&config.source).await?;
    let report = cdc_sidecar::source::check::check(&mut client, config).await?;
    if !report.problems.is_empty() {
        bail!("raw read: setup problems {:?}", report.problems);
    }
    let started = Instant::now();
    let mut rows = 0u64;
    let mut cells = 0u64;
    let mut waiting = std::time::Duration::ZERO;
    for info in &report.tables {
        let mut info = info.clone();
        // Without column tracking the query has no SYS_CHANGE_COLUMNS and no
        // CHANGE_TRACKING_IS_COLUMN_IN_MASK column per non-key column.
        info.track_columns_updated &= mask_flags;
        let range = cdc_sidecar::source::sql::ChangesRange::default();
        let mut query = Query::new(cdc_sidecar::source::sql::changes(&info, range));
        query.bind(i64::MAX);
        query.bind(from);
        query.bind(to);
        let asked = Instant::now();
        let mut first = true;
        let mut stream = query.query(&mut client).await?.into_row_stream();
        while let Some(row) = stream.try_next().await? {
            if first {
                waiting += asked.elapsed();
                first = false;
            }
            rows += 1;
            cells += row.len() as u64;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let _ = client.close().await;
    if cells == 0 {
        bail!("raw read returned no rows between versions {from} and {to}");
    }
    Ok(RawRead {
        rows_per_sec: rows as f64 / secs,
        before_first_row: waiting.as_secs_f64() / secs,
    })
}

/// Publishes the captured payloads again, one at a time and awaited, as the sink does.
/// Returns changes/s.
async fn redis_publish(url: &str, payloads: &[(bytes::Bytes, u64)]) -> Result<f64> {
    let client = redis::Client::open(url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let started = Instant::now();
    let mut changes = 0;
    for (payload, n) in payloads {
        let _: i64 = redis::cmd("PUBLISH")
            .arg("bench.limit")
            .arg(payload.as_ref())
            .query_async(&mut conn)
            .await?;
        changes += n;
    }
    Ok(changes as f64 / started.elapsed().as_secs_f64())
}

/// Sends the captured envelopes (decompressed first, untimed) through a Pulsar producer
/// with the sink's default codec (LZ4), awaiting each receipt as the sink does. Returns
/// changes/s.
async fn pulsar_send(url: &str, payloads: &[(bytes::Bytes, u64)]) -> Result<f64> {
    use pulsar::compression::{Compression, CompressionLz4};
    use pulsar::producer::{Message, ProducerOptions};
    let envelopes: Vec<(Vec<u8>, u64)> = payloads
        .iter()
        .map(|(p, n)| crate::arrivals::decompress(p).map(|e| (e, *n)))
        .collect::<Result<_>>()?;
    let client = pulsar::Pulsar::builder(url, pulsar::TokioExecutor).build().await?;
    let mut producer = client
        .producer()
        .with_topic("persistent://public/default/cdc-bench-limit")
        .with_name("cdc-bench-limit")
        .with_options(ProducerOptions {
            compression: Some(Compression::Lz4(CompressionLz4::default())),
            ..Default::default()
        })
        .build()
        .await?;
    let started = Instant::now();
    let mut changes = 0;
    for (envelope, n) in envelopes {
        let receipt = producer
            .send_non_blocking(Message {
                payload: envelope,
                ..Default::default()
            })
            .await?;
        receipt.await?;
        changes += n;
    }
    let rate = changes as f64 / started.elapsed().as_secs_f64();
    let _ = producer.close().await;
    Ok(rate)
}
