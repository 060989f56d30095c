//! Scenario 3: latency at a steady rate with the default poll. Each change is its own
//! one-row transaction, so its version identifies its commit instant; the Redis
//! subscriber and a Pulsar consumer (both in this process, on the same monotonic clock)
//! record when each version arrives.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use cdc_sidecar::config::Config;
use futures_util::StreamExt;
use pulsar::consumer::InitialPosition;
use pulsar::{ConsumerOptions, Pulsar, SubType, TokioExecutor};

use crate::arrivals::{destinations, EnvelopeHead, RedisArrivals};
use crate::report::{ms, thousands, Section};
use crate::rig::{free_port, Rig, SidecarProcess, DB, DEADLINE};
use crate::workload::line_row;
use crate::Size;

/// The goal for p99 commit → Redis at the default poll.
const GOAL_P99: Duration = Duration::from_millis(100);

pub async fn run(exe: &Path, size: &Size, section: &mut Section) -> Result<()> {
    let rig = Rig::start().await?;
    let names = rig.create_lines_tables(1)?;
    let port = free_port()?;
    let toml = rig.config_toml(&names, "", port);
    let config = Config::from_toml_str(&toml).context("benchmark config")?;
    let (topic, _) = destinations(&names[0]);
    let mut redis = RedisArrivals::subscribe(&rig.redis.url(), true, false).await?;
    let pulsar_arrivals = Arc::new(Mutex::new(Vec::<(i64, Instant)>::new()));
    let consumer = spawn_consumer(&rig.pulsar.url(), &topic, pulsar_arrivals.clone()).await?;

    let mut sidecar = SidecarProcess::spawn(exe, &toml, port)?;
    rig.wait_started(&config, &mut sidecar).await?;
    let before = sidecar.usage()?;

    let engine = rig.engine.clone();
    let table = names[0].clone();
    let (rate, secs) = (size.latency_rate, size.latency_secs);
    let commits = tokio::task::spawn_blocking(move || -> Result<Vec<(i64, Instant)>> {
        let count = (rate as f64 * secs) as usize;
        let interval = Duration::from_secs_f64(1.0 / rate as f64);
        let mut commits = Vec::with_capacity(count);
        let start = Instant::now();
        for i in 0..count {
            // Pacing a steady rate, not synchronisation: commit i is due at start + i·interval.
            let due = start + interval * i as u32;
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            engine.transaction(DB, |txn| txn.insert(&table, line_row(i as i64, 0)))?;
            let at = Instant::now();
            commits.push((engine.current_version(DB).unwrap_or(0), at));
        }
        Ok(commits)
    })
    .await??;
    let last = commits.last().map(|c| c.0).unwrap_or(0);
    let expected = commits.len() as u64;
    let channel = destinations(&names[0]).1;
    redis
        .wait(
            "the last change",
            || sidecar.check_alive(),
            |s| {
                s.get(&channel)
                    .is_some_and(|c| c.changes >= expected && c.to_version >= last)
            },
        )
        .await?;
    let wait_started = Instant::now();
    while (pulsar_arrivals.lock().unwrap_or_else(|e| e.into_inner()).len() as u64) < expected {
        if wait_started.elapsed() > DEADLINE {
            bail!("timed out waiting for the Pulsar consumer");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let after = sidecar.usage()?;
    let _ = sidecar.stop().await?;
    consumer.abort();

    let committed: HashMap<i64, Instant> = commits.iter().copied().collect();
    let first_commit = commits.first().map(|c| c.1).unwrap_or_else(Instant::now);
    let measured = commits.last().map(|c| c.1).unwrap_or(first_commit) - first_commit;
    let case = format!("{} changes/s for {:.0} s, poll 50 ms", thousands(rate as f64), secs);
    let cpu_pct = 100.0 * (after.cpu_secs - before.cpu_secs) / measured.as_secs_f64().max(1e-9);
    for (sink, arrivals) in [
        ("Redis subscriber", redis.versions()),
        (
            "Pulsar consumer",
            pulsar_arrivals.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        ),
    ] {
        let mut lat: Vec<Duration> = arrivals
            .iter()
            .filter_map(|(v, at)| committed.get(v).map(|c| at.saturating_duration_since(*c)))
            .collect();
        if lat.len() as u64 != expected {
            bail!("{sink}: {} changes matched, {expected} committed", lat.len());
        }
        // Latency over time: the first and last thirds of the run apart, to tell a
        // steady cost from one that grows with the table's change history.
        let mut by_commit: Vec<(Instant, Duration)> = arrivals
            .iter()
            .filter_map(|(v, at)| committed.get(v).map(|c| (*c, at.saturating_duration_since(*c))))
            .collect();
        by_commit.sort();
        let third = by_commit.len() / 3;
        let p99_of = |part: &[(Instant, Duration)]| {
            let mut l: Vec<Duration> = part.iter().map(|x| x.1).collect();
            l.sort();
            l.get(((l.len().max(1) - 1) as f64 * 0.99).round() as usize)
                .copied()
                .unwrap_or_default()
        };
        if third > 0 {
            section.add(
                &case,
                &format!("commit → {sink}, p99 first third / last third"),
                format!(
                    "{} / {}",
                    ms(p99_of(&by_commit[..third])),
                    ms(p99_of(&by_commit[by_commit.len() - third..]))
                ),
            );
        }
        // Interval between envelopes (distinct arrival instants): the tick period seen
        // from outside.
        let mut arrivals_at: Vec<Instant> = arrivals.iter().map(|a| a.1).collect();
        arrivals_at.sort();
        arrivals_at.dedup();
        let mut gaps: Vec<Duration> = arrivals_at.windows(2).map(|w| w[1] - w[0]).collect();
        gaps.sort();
        if !gaps.is_empty() {
            let g = |q: f64| gaps[((gaps.len() - 1) as f64 * q).round() as usize];
            section.add(
                &case,
                &format!("interval between batches at the {sink}, p50 / p99 / max"),
                format!("{} / {} / {}", ms(g(0.5)), ms(g(0.99)), ms(gaps[gaps.len() - 1])),
            );
        }
        lat.sort();
        let pick = |q: f64| lat[((lat.len() - 1) as f64 * q).round() as usize];
        let (p50, p99, max) = (pick(0.5), pick(0.99), lat[lat.len() - 1]);
        section.add(&case, &format!("commit → {sink}, p50"), ms(p50));
        if sink == "Redis subscriber" {
            section.add_goal(
                &case,
                &format!("commit → {sink}, p99"),
                ms(p99),
                "≤ 100 ms",
                p99 <= GOAL_P99,
            );
        } else {
            section.add(&case, &format!("commit → {sink}, p99"), ms(p99));
        }
        section.add(&case, &format!("commit → {sink}, max"), ms(max));
    }
    section.add(&case, "sidecar CPU", format!("{cpu_pct:.1} %"));
    section.add(&case, "sidecar RSS", crate::report::mib(after.rss));
    Ok(())
}

/// A Pulsar consumer on `topic` recording (version, arrival) of every change.
async fn spawn_consumer(
    url: &str,
    topic: &str,
    arrivals: Arc<Mutex<Vec<(i64, Instant)>>>,
) -> Result<tokio::task::JoinHandle<()>> {
    let client = Pulsar::builder(url, TokioExecutor).build().await?;
    let mut consumer = client
        .consumer()
        .with_topic(topic)
        .with_subscription("cdc-bench-latency")
        .with_subscription_type(SubType::Exclusive)
        .with_options(ConsumerOptions {
            initial_position: InitialPosition::Earliest,
            ..Default::default()
        })
        .build::<Vec<u8>>()
        .await?;
    Ok(tokio::spawn(async move {
        let _client = client;
        while let Some(Ok(message)) = consumer.next().await {
            let at = Instant::now();
            if let Ok(head) = serde_json::from_slice::<EnvelopeHead>(&message.payload.data) {
                let mut a = arrivals.lock().unwrap_or_else(|e| e.into_inner());
                a.extend(head.changes.iter().filter_map(|c| c.version).map(|v| (v, at)));
            }
            let _ = consumer.ack(&message).await;
        }
    }))
}
