//! What arrives where: a Redis subscriber that records every envelope the sidecar
//! publishes (when, how many changes, up to which version), and a look at what the
//! Pulsar stand-in has stored.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use futures_util::StreamExt;
use serde::Deserialize;
use testkit::pulsar::PulsarStandin;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::rig::{DEADLINE, STALL};

/// The parts of an envelope the benchmarks read; serde skips the rest.
#[derive(Debug, Deserialize)]
pub struct EnvelopeHead {
    pub to_version: i64,
    pub changes: Vec<ChangeHead>,
}

/// The part of a change the benchmarks read.
#[derive(Debug, Deserialize)]
pub struct ChangeHead {
    pub version: Option<i64>,
}

/// Per channel: what has arrived so far.
#[derive(Debug, Default, Clone)]
pub struct ChannelState {
    pub changes: u64,
    pub envelopes: u64,
    pub to_version: i64,
    pub last_arrival: Option<Instant>,
}

#[derive(Default)]
struct State {
    channels: HashMap<String, ChannelState>,
    /// (change version, arrival) of every change, when recording.
    versions: Vec<(i64, Instant)>,
    /// Payloads as published (compressed as the sidecar sent them), when capturing.
    payloads: Vec<(Bytes, u64)>,
    record_versions: bool,
    capture: bool,
    error: Option<String>,
}

/// A Redis Pub/Sub subscriber on `cdc.*`.
pub struct RedisArrivals {
    state: Arc<Mutex<State>>,
    arrived: watch::Receiver<u64>,
    task: JoinHandle<()>,
}

impl RedisArrivals {
    /// Subscribes before the sidecar starts, so nothing is missed. `record_versions`
    /// keeps every change's version and arrival (latency); `capture` keeps the payloads
    /// (the Redis PUBLISH limit replays them).
    pub async fn subscribe(redis_url: &str, record_versions: bool, capture: bool) -> Result<Self> {
        let client = redis::Client::open(redis_url)?;
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.psubscribe("cdc.*").await?;
        let state = Arc::new(Mutex::new(State {
            record_versions,
            capture,
            ..State::default()
        }));
        let (tx, arrived) = watch::channel(0u64);
        let shared = state.clone();
        let task = tokio::spawn(async move {
            let mut stream = pubsub.into_on_message();
            while let Some(msg) = stream.next().await {
                let at = Instant::now();
                let channel = msg.get_channel_name().to_string();
                let payload = msg.get_payload_bytes();
                let head = decompress(payload)
                    .and_then(|json| serde_json::from_slice::<EnvelopeHead>(&json).context("envelope is not JSON"));
                let mut s = lock(&shared);
                match head {
                    Ok(head) => {
                        let n = head.changes.len() as u64;
                        if s.record_versions {
                            s.versions
                                .extend(head.changes.iter().filter_map(|c| c.version).map(|v| (v, at)));
                        }
                        if s.capture {
                            s.payloads.push((Bytes::copy_from_slice(payload), n));
                        }
                        let c = s.channels.entry(channel).or_default();
                        c.changes += n;
                        c.envelopes += 1;
                        c.to_version = c.to_version.max(head.to_version);
                        c.last_arrival = Some(at);
                    }
                    Err(e) => s.error = Some(format!("{channel}: {e:#}")),
                }
                drop(s);
                tx.send_modify(|n| *n += 1);
            }
        });
        Ok(Self { state, arrived, task })
    }

    /// Forgets everything received so far (a new phase of a run).
    pub fn reset(&self) {
        let mut s = lock(&self.state);
        s.channels.clear();
        s.versions.clear();
        s.payloads.clear();
    }

    /// A copy of a channel's state.
    pub fn channel(&self, channel: &str) -> ChannelState {
        lock(&self.state).channels.get(channel).cloned().unwrap_or_default()
    }

    /// Every (version, arrival) recorded.
    pub fn versions(&self) -> Vec<(i64, Instant)> {
        lock(&self.state).versions.clone()
    }

    /// The captured payloads and their change counts.
    pub fn take_payloads(&self) -> Vec<(Bytes, u64)> {
        std::mem::take(&mut lock(&self.state).payloads)
    }

    /// Waits until `done` holds for the state, failing after [`DEADLINE`] or on an
    /// undecodable envelope. `alive` is checked on every wake-up.
    pub async fn wait(
        &mut self,
        what: &str,
        mut alive: impl FnMut() -> Result<()>,
        done: impl Fn(&HashMap<String, ChannelState>) -> bool,
    ) -> Result<()> {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        let mut last_progress = tokio::time::Instant::now();
        loop {
            {
                let s = lock(&self.state);
                if let Some(e) = &s.error {
                    bail!("redis subscriber: {e}");
                }
                if done(&s.channels) {
                    return Ok(());
                }
            }
            alive()?;
            // Wake on every envelope, and at least every 100 ms to check the child.
            let wake = tokio::time::Instant::now() + Duration::from_millis(100);
            match tokio::time::timeout_at(wake.min(deadline), self.arrived.changed()).await {
                Ok(Ok(())) => last_progress = tokio::time::Instant::now(),
                Ok(Err(_)) => bail!("redis subscriber stopped while waiting for {what}"),
                Err(_) if last_progress.elapsed() > STALL => {
                    bail!("nothing arrived on Redis for {STALL:?} while waiting for {what}: the sidecar stalled (see its log above)")
                }
                Err(_) if tokio::time::Instant::now() >= deadline => {
                    bail!("timed out after {DEADLINE:?} waiting for {what} on Redis")
                }
                Err(_) => {}
            }
        }
    }
}

impl Drop for RedisArrivals {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// Undoes the Redis sink's compression (the library's own decompress).
pub fn decompress(payload: &[u8]) -> Result<Vec<u8>> {
    Ok(cdc_sidecar::sink::decompress(payload)?)
}

/// The `to_version` property of the last entry stored on `topic` (0 when none).
pub fn pulsar_to_version(pulsar: &PulsarStandin, topic: &str) -> i64 {
    pulsar
        .entries(topic)
        .last()
        .and_then(|e| {
            e.metadata
                .properties
                .iter()
                .find(|kv| kv.key == "to_version")
                .and_then(|kv| kv.value.parse().ok())
        })
        .unwrap_or(0)
}

/// Waits until every `(topic, version)` has an entry with at least that `to_version`
/// on the Pulsar stand-in; returns when that was first seen (polled every millisecond,
/// so at most ~1 ms late).
pub async fn wait_pulsar(pulsar: &PulsarStandin, wanted: &[(String, i64)]) -> Result<Instant> {
    let started = Instant::now();
    let mut last_entries: Vec<u64> = vec![u64::MAX; wanted.len()];
    let mut done = vec![false; wanted.len()];
    loop {
        for (i, (topic, version)) in wanted.iter().enumerate() {
            if done[i] {
                continue;
            }
            let entries = pulsar.stats(topic).entries_received;
            if entries != last_entries[i] {
                last_entries[i] = entries;
                done[i] = pulsar_to_version(pulsar, topic) >= *version;
            }
        }
        if done.iter().all(|d| *d) {
            return Ok(Instant::now());
        }
        if started.elapsed() > DEADLINE {
            bail!("timed out after {DEADLINE:?} waiting for Pulsar to store the last batches");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// The Pulsar topic and Redis channel of `schema.table` with the templates of
/// [`crate::rig::Rig::config_toml`].
pub fn destinations(table: &str) -> (String, String) {
    let channel = format!("cdc.{}.{table}", crate::rig::DB);
    (format!("persistent://public/default/{channel}"), channel)
}
