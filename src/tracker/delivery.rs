//! One table's delivery task: takes the table's batches in order, publishes each to
//! every sink, and only when all have acknowledged moves the table's checkpoint. A
//! failed sink is retried (only that sink) with backoff; nothing is skipped. The channel
//! in front of it is bounded, so a slow sink slows the reads instead of filling memory.
//!
//! A sink that can never accept the batch as things are (a message over the broker's
//! size limit, a refusal the broker will repeat) puts the table in error, visibly (the
//! `table_state` metric, `/readyz`, one log line with the fix) while the other tables
//! stream on, and the batch is retried every [`PERMANENT_RETRY`] until the operator
//! fixed the cause: skipping it would lose its changes.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::checkpoint::CheckpointStore;
use crate::envelope::{Batch, BatchKind, Position};
use crate::health::Health;
use crate::metrics::Metrics;
use crate::sink::Sink;

use super::backoff::Backoff;

/// What the reader hands a table's delivery task, in order.
#[derive(Debug)]
pub enum Delivery {
    /// Publish (after storing its part boundary, if any), then (for `changes`) advance
    /// the checkpoint to its `to`.
    Batch(Batch),
    /// The table had nothing up to this version: advance the checkpoint, at most once
    /// per idle interval.
    Progress(i64),
    /// Announce a resync: first record that it is pending (so a crash before the
    /// snapshot completes resumes the resync instead of streaming on from a position
    /// that means nothing any more), then publish the announcement.
    Resync {
        /// The `resync` batch.
        batch: Batch,
        /// Its reason, as in the envelope.
        reason: &'static str,
    },
    /// A snapshot finished with batch `seq`: set the checkpoint to its version, even if
    /// lower.
    SnapshotDone {
        /// The snapshot's version: the new checkpoint.
        version: i64,
        /// The number of the snapshot's last batch.
        seq: u64,
        /// The database incarnation the snapshot was read from, stored with it.
        incarnation: Option<std::sync::Arc<str>>,
    },
}

/// A table's delivery task.
pub struct DeliveryTask {
    /// `schema.table`: log field and metric label.
    pub table: String,
    /// Every enabled sink; a batch is delivered when all acknowledged it.
    pub sinks: Arc<Vec<Arc<dyn Sink>>>,
    /// Where the checkpoint is written after delivery.
    pub store: Arc<dyn CheckpointStore>,
    /// Where delivery is counted, and the table's state shown.
    pub metrics: Metrics,
    /// Where a table whose batch a sink can never accept is listed (`/readyz`).
    pub health: Arc<Health>,
    /// Least time between two idle-progress checkpoint writes.
    pub idle_write_interval: Duration,
    /// The durable checkpoint, shared with the reader for lag.
    pub checkpoint: Arc<AtomicI64>,
    /// The stored checkpoint's batch number (0 when none).
    pub start_seq: u64,
    /// Cancelled at shutdown: stop retrying, deliver what can be delivered, return.
    pub shutdown: CancellationToken,
}

/// Delivery gave up because of shutdown while a sink or the store was failing.
#[derive(Debug)]
struct GaveUp;

/// How often a batch that a sink refused permanently is tried again: rarely enough not
/// to load the broker or the logs, often enough that a raised limit is noticed soon.
pub const PERMANENT_RETRY: Duration = Duration::from_secs(30);

impl DeliveryTask {
    /// Runs until the reader closes the channel (or shutdown interrupts a retry).
    pub async fn run(self, mut rx: mpsc::Receiver<Delivery>) {
        let mut pending: Option<i64> = None;
        // The number of the last batch delivered, stored with every checkpoint.
        let mut seq = self.start_seq;
        let mut last_write = Instant::now();
        loop {
            let flush_at = tokio::time::Instant::from_std(last_write + self.idle_write_interval);
            let item = tokio::select! {
                item = rx.recv() => item,
                _ = tokio::time::sleep_until(flush_at), if pending.is_some() => {
                    if let Some(v) = pending.take() {
                        if self.advance(Position::complete(v), seq).await.is_err() { return; }
                        last_write = Instant::now();
                    }
                    continue;
                }
            };
            let result = match item {
                None => break,
                Some(Delivery::Batch(batch)) => {
                    pending = None;
                    let recorded = match &batch.split_key {
                        Some(key) => self.record_split(batch.to, key).await,
                        None => Ok(()),
                    };
                    let published = match recorded {
                        Ok(()) => self.publish(&batch).await,
                        gave_up => gave_up,
                    };
                    match published {
                        Ok(()) if batch.kind == BatchKind::Changes => {
                            last_write = Instant::now();
                            seq = batch.seq;
                            self.advance(batch.to, seq).await
                        }
                        Ok(()) => {
                            seq = batch.seq;
                            Ok(())
                        }
                        other => other,
                    }
                }
                Some(Delivery::Resync { batch, reason }) => {
                    pending = None;
                    let marked = self.mark_resync(reason).await;
                    let published = match marked {
                        Ok(()) => self.publish(&batch).await,
                        gave_up => gave_up,
                    };
                    if published.is_ok() {
                        seq = batch.seq;
                    }
                    published
                }
                Some(Delivery::Progress(v)) => {
                    if last_write.elapsed() >= self.idle_write_interval {
                        last_write = Instant::now();
                        pending = None;
                        self.advance(Position::complete(v), seq).await
                    } else {
                        pending = Some(v);
                        Ok(())
                    }
                }
                Some(Delivery::SnapshotDone {
                    version,
                    seq: done,
                    incarnation,
                }) => {
                    pending = None;
                    last_write = Instant::now();
                    seq = seq.max(done);
                    self.reset(version, seq, incarnation.as_deref()).await
                }
            };
            if result.is_err() {
                return;
            }
        }
        if let Some(v) = pending {
            let _ = self.advance(Position::complete(v), seq).await;
        }
    }

    async fn publish(&self, batch: &Batch) -> Result<(), GaveUp> {
        let mut done = vec![false; self.sinks.len()];
        let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(5), 2.0);
        // Whether a sink refused this batch permanently: the table is shown in error.
        let mut stuck = false;
        loop {
            let mut permanent = false;
            let attempts = self
                .sinks
                .iter()
                .enumerate()
                .filter(|(i, _)| !done[*i])
                .map(|(i, sink)| async move {
                    let started = Instant::now();
                    (i, sink.publish(batch).await, started.elapsed())
                });
            for (i, result, elapsed) in futures_util::future::join_all(attempts).await {
                let sink = self.sinks[i].name();
                match result {
                    Ok(bytes) => {
                        done[i] = true;
                        self.metrics
                            .sink_latency
                            .with_label_values(&[sink])
                            .observe(elapsed.as_secs_f64());
                        self.metrics.batches.with_label_values(&[&self.table, sink]).inc();
                        self.metrics
                            .sink_bytes
                            .with_label_values(&[&self.table, sink])
                            .inc_by(bytes);
                    }
                    Err(error) if error.is_permanent() => {
                        self.metrics.sink_errors.with_label_values(&[sink]).inc();
                        permanent = true;
                        if !stuck {
                            // Once per batch, not per retry.
                            error!(
                                table = %self.table, sink, %error, fix = error.fix(), to = ?batch.to, retry_every = ?PERMANENT_RETRY,
                                "the sink refuses this batch and will until the cause is fixed; the table is stopped in error (nothing is skipped), the other tables stream on"
                            );
                            stuck = true;
                        } else {
                            debug!(table = %self.table, sink, %error, to = ?batch.to, "still refused");
                        }
                        // Every time: the reader, ahead of delivery, may have shown the
                        // state it read to (a snapshot it finished reading) meanwhile.
                        self.metrics.set_table_state(&self.table, "error");
                        self.health.set_errored(&self.table, true);
                    }
                    Err(error) => {
                        self.metrics.sink_errors.with_label_values(&[sink]).inc();
                        warn!(table = %self.table, sink, %error, to = ?batch.to, "publish failed; retrying");
                    }
                }
            }
            if done.iter().all(|d| *d) {
                if stuck {
                    info!(table = %self.table, to = ?batch.to, "the refused batch is delivered; the table streams again");
                    let state = if batch.kind == BatchKind::Snapshot {
                        "snapshotting"
                    } else {
                        "streaming"
                    };
                    self.metrics.set_table_state(&self.table, state);
                    self.health.set_errored(&self.table, false);
                }
                let ops = &batch.ops;
                for (op, n) in [
                    ("insert", ops.insert),
                    ("update", ops.update),
                    ("delete", ops.delete),
                    ("read", ops.read),
                ] {
                    if n > 0 {
                        self.metrics.changes.with_label_values(&[&self.table, op]).inc_by(n);
                    }
                }
                if batch.kind == BatchKind::Snapshot {
                    self.metrics
                        .snapshot_rows
                        .with_label_values(&[&self.table])
                        .inc_by(ops.read);
                }
                return Ok(());
            }
            if self.shutdown.is_cancelled() {
                warn!(table = %self.table, to = ?batch.to, "shutting down with an undelivered batch; it will be read again on restart");
                return Err(GaveUp);
            }
            let delay = if permanent {
                PERMANENT_RETRY
            } else {
                backoff.next_delay()
            };
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = self.shutdown.cancelled() => {}
            }
        }
    }

    async fn advance(&self, to: Position, seq: u64) -> Result<(), GaveUp> {
        self.write(to, seq, None).await
    }

    async fn reset(&self, version: i64, seq: u64, incarnation: Option<&str>) -> Result<(), GaveUp> {
        self.write(Position::complete(version), seq, Some(incarnation)).await
    }

    /// Stores a part boundary before the part is published (see
    /// [`CheckpointStore::record_split`]).
    async fn record_split(&self, at: Position, key: &str) -> Result<(), GaveUp> {
        self.persist("recording a part boundary", || {
            self.store.record_split(&self.table, at, key)
        })
        .await
    }

    /// Records a pending resync before it is announced (see
    /// [`CheckpointStore::mark_resync`]).
    async fn mark_resync(&self, reason: &str) -> Result<(), GaveUp> {
        self.persist("recording a pending resync", || {
            self.store.mark_resync(&self.table, reason)
        })
        .await
    }

    /// Runs a store write until it succeeds, with backoff; gives up only at shutdown.
    async fn persist<'a, T, F>(&'a self, what: &str, write: impl Fn() -> F) -> Result<T, GaveUp>
    where
        F: std::future::Future<Output = Result<T, crate::checkpoint::CheckpointError>> + 'a,
    {
        let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(5), 2.0);
        loop {
            match write().await {
                Ok(value) => return Ok(value),
                Err(error) => {
                    warn!(table = %self.table, %error, "{what} failed; retrying");
                    if self.shutdown.is_cancelled() {
                        return Err(GaveUp);
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(backoff.next_delay()) => {}
                        _ = self.shutdown.cancelled() => {}
                    }
                }
            }
        }
    }

    /// Advances the checkpoint to `to`, or with `reset: Some(incarnation)` sets it.
    async fn write(&self, to: Position, seq: u64, reset: Option<Option<&str>>) -> Result<(), GaveUp> {
        let stored = self
            .persist("checkpoint write", || async move {
                match reset {
                    Some(incarnation) => self
                        .store
                        .reset(&self.table, to.version, seq, incarnation)
                        .await
                        .map(|()| to),
                    None => self.store.advance(&self.table, to, seq).await,
                }
            })
            .await?;
        self.checkpoint.store(stored.version, Ordering::Relaxed);
        self.metrics
            .checkpoint_version
            .with_label_values(&[&self.table])
            .set(stored.version);
        debug!(table = %self.table, position = ?stored, "checkpoint written");
        Ok(())
    }
}
