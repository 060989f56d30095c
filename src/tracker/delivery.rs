//! One table's delivery task: takes the table's batches in order, publishes each to
//! every sink, and only when all have acknowledged moves the table's checkpoint. A
//! failed sink is retried (only that sink) with backoff; nothing is skipped. The channel
//! in front of it is bounded, so a slow sink slows the reads instead of filling memory.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::checkpoint::CheckpointStore;
use crate::envelope::{Batch, BatchKind, Position};
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
    /// A snapshot finished with batch `seq`: set the checkpoint to its version, even if
    /// lower.
    SnapshotDone {
        /// The snapshot's version: the new checkpoint.
        version: i64,
        /// The number of the snapshot's last batch.
        seq: u64,
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
    /// Where delivery is counted.
    pub metrics: Metrics,
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
                    match recorded.and(self.publish(&batch).await) {
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
                Some(Delivery::SnapshotDone { version, seq: done }) => {
                    pending = None;
                    last_write = Instant::now();
                    seq = seq.max(done);
                    self.reset(version, seq).await
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
        loop {
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
                    Err(error) => {
                        self.metrics.sink_errors.with_label_values(&[sink]).inc();
                        warn!(table = %self.table, sink, %error, to = ?batch.to, "publish failed; retrying");
                    }
                }
            }
            if done.iter().all(|d| *d) {
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
            tokio::select! {
                _ = tokio::time::sleep(backoff.next_delay()) => {}
                _ = self.shutdown.cancelled() => {}
            }
        }
    }

    async fn advance(&self, to: Position, seq: u64) -> Result<(), GaveUp> {
        self.write(to, seq, false).await
    }

    async fn reset(&self, version: i64, seq: u64) -> Result<(), GaveUp> {
        self.write(Position::complete(version), seq, true).await
    }

    /// Stores a part boundary before the part is published (see
    /// [`CheckpointStore::record_split`]); retried like a checkpoint write.
    async fn record_split(&self, at: Position, key: &str) -> Result<(), GaveUp> {
        let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(5), 2.0);
        loop {
            match self.store.record_split(&self.table, at, key).await {
                Ok(()) => return Ok(()),
                Err(error) => {
                    warn!(table = %self.table, %error, ?at, "recording a part boundary failed; retrying");
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

    async fn write(&self, to: Position, seq: u64, reset: bool) -> Result<(), GaveUp> {
        let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(5), 2.0);
        loop {
            let result = if reset {
                self.store.reset(&self.table, to.version, seq).await.map(|()| to)
            } else {
                self.store.advance(&self.table, to, seq).await
            };
            match result {
                Ok(stored) => {
                    self.checkpoint.store(stored.version, Ordering::Relaxed);
                    self.metrics
                        .checkpoint_version
                        .with_label_values(&[&self.table])
                        .set(stored.version);
                    debug!(table = %self.table, position = ?stored, "checkpoint written");
                    return Ok(());
                }
                Err(error) => {
                    warn!(table = %self.table, %error, position = ?to, "checkpoint write failed; retrying");
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
}
