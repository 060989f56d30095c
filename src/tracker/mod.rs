//! The trackers: one reader that owns the SQL Server connection and one delivery task
//! per table. Each tick the reader probes `CHANGE_TRACKING_CURRENT_VERSION()` once for
//! the whole database; only when it moved does it open a SNAPSHOT transaction, find the
//! tables with changes up to the new upper bound (checking every table's minimum valid
//! version in the same query), and stream just those tables' changes into batches
//! ([`stream`]). Tables without a usable position take a snapshot ([`snapshot`]).
//! Idle, the probe interval backs off exponentially; on activity it resets.
//!
//! This module holds the loop; [`table`] the per-table state, [`delivery`] the tasks
//! that publish and checkpoint.

mod backoff;
mod delivery;
mod snapshot;
mod stream;
mod table;

pub use backoff::Backoff;
pub use delivery::{Delivery, DeliveryTask};

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::checkpoint::Checkpoint;
use crate::config::{Config, SnapshotMode};
use crate::envelope::{source_json, FlushPolicy, Position, Route};
use crate::health::Health;
use crate::metrics::Metrics;
use crate::source::catalog::{SourceIdentity, TableInfo};
use crate::source::{self, sql, ErrorClass, SourceError, SqlClient};
use table::{Table, TableState};

/// Why a table is being resynced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResyncReason {
    /// The checkpoint is below `CHANGE_TRACKING_MIN_VALID_VERSION`: cleanup ran past it,
    /// the table was truncated, or tracking was re-enabled.
    CheckpointExpired,
    /// The database version is below the checkpoint: a restore or failover.
    VersionWentBackwards,
    /// The database is on another recovery fork than the checkpoint was taken on: it
    /// was restored (or forced over to a copy), and versions may have been reused.
    DatabaseRestored,
}

impl ResyncReason {
    /// The envelope's `reason` and the metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            ResyncReason::CheckpointExpired => "checkpoint_expired",
            ResyncReason::VersionWentBackwards => "version_went_backwards",
            ResyncReason::DatabaseRestored => "database_restored",
        }
    }

    /// The reason stored with a pending resync.
    fn parse(reason: &str) -> Self {
        match reason {
            "version_went_backwards" => ResyncReason::VersionWentBackwards,
            "database_restored" => ResyncReason::DatabaseRestored,
            _ => ResyncReason::CheckpointExpired,
        }
    }
}

/// The shared reader: one connection, every table.
pub struct Reader {
    config: Arc<Config>,
    identity: SourceIdentity,
    client: Option<SqlClient>,
    tables: Vec<Table>,
    /// The database's recovery fork (see `source::sql::INCARNATION`), checked again on
    /// every reconnect: a RESTORE needs exclusive access, so it always ends our session.
    incarnation: Option<Arc<str>>,
    /// The incarnation changed under a running reader: every table resyncs next tick.
    restored: bool,
    policy: FlushPolicy,
    metrics: Metrics,
    health: Arc<Health>,
}

/// Everything a table needs to start: where it goes and what it resumes from.
pub struct TableStart {
    /// The table as the catalog describes it.
    pub info: TableInfo,
    /// Its topic and channel.
    pub route: Arc<Route>,
    /// The stored checkpoint, if any.
    pub checkpoint: Option<Checkpoint>,
    /// Its delivery task's queue (bounded: backpressure).
    pub tx: mpsc::Sender<Delivery>,
    /// The durable checkpoint, shared with the delivery task for lag.
    pub checkpoint_cell: Arc<AtomicI64>,
}

impl Reader {
    /// Builds the reader. `current_version` is the database version at start-up: new
    /// tables with `snapshot = "never"` start there, new tables with `"initial"`
    /// snapshot as of it.
    pub async fn new(
        config: Arc<Config>,
        identity: SourceIdentity,
        client: SqlClient,
        starts: Vec<TableStart>,
        current_version: i64,
        metrics: Metrics,
        health: Arc<Health>,
    ) -> Self {
        let mut tables = Vec::with_capacity(starts.len());
        // Tables whose checkpoint cannot be trusted: (index, its position, why).
        let mut resyncs = Vec::new();
        for s in starts {
            if let Some(cp) = &s.checkpoint {
                let restored = matches!((&cp.incarnation, &identity.incarnation), (Some(a), Some(b)) if a != b);
                if let Some(reason) = &cp.resync {
                    // Announced before a crash or stop and never completed.
                    info!(table = %s.info.name, reason, "resuming the resync that was under way");
                    resyncs.push((tables.len(), cp.position(), ResyncReason::parse(reason)));
                } else if restored {
                    resyncs.push((tables.len(), cp.position(), ResyncReason::DatabaseRestored));
                }
            }
            let mode = config
                .tables
                .iter()
                .find(|t| t.name == s.info.name)
                .map(|t| t.snapshot)
                .unwrap_or_default();
            let (splits, next_seq) = match &s.checkpoint {
                Some(cp) => (
                    cp.splits.iter().map(|(k, v)| (*k, Arc::from(v.as_str()))).collect(),
                    cp.seq + 1,
                ),
                None => (Default::default(), 1),
            };
            let state = match (s.checkpoint.as_ref(), mode) {
                (Some(cp), _) => TableState::Streaming {
                    position: cp.position(),
                },
                (None, SnapshotMode::Initial) => {
                    info!(table = %s.info.name, version = current_version, "no checkpoint: taking the initial snapshot");
                    TableState::Snapshotting {
                        version: current_version,
                        last_key: None,
                        batches: 0,
                    }
                }
                (None, SnapshotMode::Never) => {
                    info!(table = %s.info.name, version = current_version, "no checkpoint: starting at the current version");
                    // Recorded at once so a restart does not move the start.
                    let _ =
                        s.tx.send(Delivery::SnapshotDone {
                            version: current_version,
                            seq: 0,
                            incarnation: identity.incarnation.as_deref().map(Arc::from),
                        })
                        .await;
                    TableState::Streaming {
                        position: Position::complete(current_version),
                    }
                }
            };
            let source_json = source_json(&identity.server, &identity.database, &s.info.schema, &s.info.table);
            metrics.set_table_state(&s.info.name, state.label());
            tables.push(Table {
                info: s.info,
                route: s.route,
                source_json,
                state,
                tx: s.tx,
                checkpoint: s.checkpoint_cell,
                lagging: false,
                splits,
                next_seq,
                backlog: Default::default(),
                behind: false,
                stale: false,
            });
        }
        let mut reader = Self {
            policy: FlushPolicy::for_config(&config),
            config,
            incarnation: identity.incarnation.as_deref().map(Arc::from),
            restored: false,
            identity,
            client: Some(client),
            tables,
            metrics,
            health,
        };
        for (i, position, reason) in resyncs {
            reader.start_resync(i, position, current_version, reason);
        }
        reader
    }

    /// Polls until `shutdown`. On return every table's sender is dropped, so delivery
    /// tasks drain what was handed to them and stop.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let poll = &self.config.poll;
        let mut interval = Backoff::new(poll.min_interval(), poll.max_interval(), poll.multiplier);
        let mut last_seen: Option<i64> = None;
        let mut failing = false;
        loop {
            self.health
                .last_tick_ms
                .store(crate::checkpoint::now_ms(), Ordering::Relaxed);
            let result = tokio::select! {
                r = async {
                    let ticked = self.tick(&mut last_seen).await;
                    // What was read is handed over even when the tick then failed: it
                    // was read consistently and the positions already moved past it.
                    let handed = self.hand_over();
                    ticked.and_then(|moved| handed.map(|sent| moved || sent))
                } => r,
                _ = shutdown.cancelled() => break,
            };
            let result_ok = result.is_ok();
            if result_ok {
                failing = false;
            }
            match result {
                Ok(true) => {
                    interval.reset();
                    self.health.ready.store(true, Ordering::Relaxed);
                }
                Ok(false) => {
                    self.health.ready.store(true, Ordering::Relaxed);
                }
                Err(e) => {
                    self.health.ready.store(false, Ordering::Relaxed);
                    self.metrics.probes.with_label_values(&["error"]).inc();
                    self.metrics.source_errors.with_label_values(&[e.metric_label()]).inc();
                    error!(error = %e, "poll failed; reconnecting");
                    // A connection in an unknown state (maybe mid-transaction) is dropped.
                    self.client = None;
                    last_seen = None;
                    if matches!(e.class(), ErrorClass::Setup | ErrorClass::Bug) {
                        // A login or permission problem needs an operator: keep trying,
                        // but at the slowest pace rather than hammering the server.
                        error!(error = %e, "the source refuses the sidecar; fix the login or grants (see README, Troubleshooting)");
                        interval.saturate();
                        failing = true;
                    } else if !failing {
                        // Retry soon after a first failure, then back off.
                        interval.reset();
                        failing = true;
                    }
                }
            }
            let delay = if failing {
                interval.next_delay_jittered()
            } else if last_seen.is_none() && result_ok {
                // The tick stopped at its bounds with more to read: read on at once.
                Duration::ZERO
            } else {
                interval.next_delay()
            };
            self.metrics.poll_interval.set(delay.as_secs_f64());
            match self
                .hand_over_until(tokio::time::Instant::now() + delay, &shutdown)
                .await
            {
                Ok(()) => {}
                Err(error) => {
                    error!(%error, "a delivery task stopped");
                    break;
                }
            }
            if shutdown.is_cancelled() {
                break;
            }
        }
        if let Some(client) = self.client.take() {
            let _ = client.close().await;
        }
        // Deliver what was read; a delivery task that gives up (shutdown while its sink
        // fails) drops its queue, and the rest is read again after the restart.
        for t in &mut self.tables {
            while let Some(item) = t.backlog.pop_front() {
                if t.tx.send(item).await.is_err() {
                    break;
                }
            }
        }
    }

    async fn client(&mut self) -> Result<&mut SqlClient, SourceError> {
        if self.client.is_none() {
            let mut client = source::connect(&self.config.source).await?;
            self.metrics.reconnects.with_label_values(&["source"]).inc();
            info!("reconnected to SQL Server");
            // A restore needs exclusive access (Msg 3101), so it always ended our last
            // session: checking on reconnect sees every one.
            let now = source::incarnation(&mut client).await?.map(Arc::<str>::from);
            if let (Some(before), Some(now)) = (&self.incarnation, &now) {
                if before != now {
                    warn!(%before, %now, "the database is on a new recovery fork (restored, or forced over to a copy): every table resyncs");
                    self.restored = true;
                }
            }
            if now.is_some() {
                self.incarnation = now;
            }
            self.client = Some(client);
        }
        // Set just above.
        self.client
            .as_mut()
            .ok_or_else(|| SourceError::Unexpected("no connection".into()))
    }

    /// One tick. Returns whether anything happened (which resets the backoff).
    async fn tick(&mut self, last_seen: &mut Option<i64>) -> Result<bool, SourceError> {
        let shared_probe = self.config.poll.shared_probe;
        let sent = self.hand_over()?;
        let mut rediscovered = false;
        for i in 0..self.tables.len() {
            if self.tables[i].stale && self.tables[i].backlog.is_empty() {
                self.rediscover(i).await?;
                rediscovered = true;
            }
        }
        if rediscovered {
            // Read the tables whose columns were just read again, whatever the probe says.
            *last_seen = None;
        }
        let snapshotting = self
            .tables
            .iter()
            .any(|t| matches!(t.state, TableState::Snapshotting { .. }) && t.backlog.is_empty());
        // A table skipped while its sink was stalled is read as soon as it can be.
        let catching_up = self.tables.iter().any(|t| t.behind && t.backlog.is_empty());
        if shared_probe {
            self.metrics.source_queries.with_label_values(&["probe"]).inc();
            let database = self.identity.database.clone();
            let current = source::query_scalar_i64(self.client().await?, sql::PROBE, &[])
                .await?
                .ok_or(SourceError::ChangeTrackingDisabled { database })?;
            self.metrics.database_version.set(current);
            if Some(current) == *last_seen && !snapshotting && !catching_up {
                self.metrics.probes.with_label_values(&["idle"]).inc();
                return Ok(sent);
            }
            self.metrics.probes.with_label_values(&["moved"]).inc();
            let timer = self.metrics.poll_duration.start_timer();
            let (upper, more) = self.stream_tick(None).await?;
            timer.observe_duration();
            // With more to read below `upper`, the next tick reads on at once.
            *last_seen = (!more).then_some(upper);
        } else {
            // The original design, kept for comparison: every table queried every tick,
            // backing off only while no table had anything.
            let mut moved = false;
            for i in 0..self.tables.len() {
                if let TableState::Streaming { position } = self.tables[i].state {
                    let (upper, more) = self.stream_tick(Some(i)).await?;
                    moved |= more || Position::complete(upper) != position;
                }
            }
            if !moved && !snapshotting {
                return Ok(sent);
            }
        }
        for i in 0..self.tables.len() {
            if matches!(self.tables[i].state, TableState::Snapshotting { .. }) && self.tables[i].backlog.is_empty() {
                if let Err(e) = self.snapshot_chunk(i).await {
                    if e.is_table_error() {
                        self.park(i, &e);
                    }
                    return Err(e);
                }
            }
        }
        Ok(true)
    }

    /// Reads table `i`'s columns and key again after its schema changed, publishes a
    /// `schema` batch when they differ, and goes on streaming with them; a table that
    /// can no longer be streamed (no primary key, unsupported new column) is parked with
    /// the reason.
    async fn rediscover(&mut self, i: usize) -> Result<(), SourceError> {
        let name = self.tables[i].info.name.clone();
        let Some(config) = self.config.tables.iter().find(|t| t.name == name).cloned() else {
            return Ok(());
        };
        self.metrics.source_queries.with_label_values(&["discover"]).inc();
        let client = self.client().await?;
        let (info, problems) = source::check::describe(client, &config).await?;
        self.tables[i].stale = false;
        let info = match info {
            Some(info) if problems.is_empty() => info,
            _ => {
                let reason = problems.join("; ");
                let e = SourceError::Unexpected(format!("table {name} after its schema changed: {reason}"));
                self.park(i, &e);
                return Ok(());
            }
        };
        let t = &mut self.tables[i];
        let changed = t.info.columns != info.columns || t.info.key != info.key;
        let old_columns: Vec<String> = t.info.columns.iter().map(|c| c.name.clone()).collect();
        t.info = info;
        if changed {
            let new_columns: Vec<String> = t.info.columns.iter().map(|c| c.name.clone()).collect();
            info!(table = %name, from = ?old_columns, to = ?new_columns, "the table's schema changed; publishing it and streaming on");
            let position = match t.state {
                TableState::Streaming { position } => position,
                _ => Position::complete(0),
            };
            let schema = t.info.schema_json();
            let batch = crate::envelope::BatchBuilder::new(
                t.route.clone(),
                &t.source_json,
                crate::envelope::BatchKind::Schema,
                t.next_seq,
                position,
                self.policy,
            )
            .finish(position, None, crate::envelope::Trailer::Schema(&schema));
            t.next_seq += 1;
            self.metrics.schema_changes.with_label_values(&[&name]).inc();
            self.send(i, Delivery::Batch(batch));
        }
        Ok(())
    }

    /// Parks a table after a permanent error, for [`TABLE_RETRY`].
    fn park(&mut self, i: usize, e: &SourceError) {
        let t = &mut self.tables[i];
        error!(table = %t.info.name, error = %e, retry_in = ?TABLE_RETRY, "table failed; the other tables keep streaming");
        let placeholder = TableState::Streaming {
            position: Position::complete(0),
        };
        let resume = match std::mem::replace(&mut t.state, placeholder) {
            // Parked again before its retry: keep what it goes back to.
            TableState::Errored { resume, .. } => resume,
            other => Box::new(other),
        };
        t.state = TableState::Errored {
            until: Instant::now() + TABLE_RETRY,
            resume,
        };
        self.metrics.set_table_state(&t.info.name, t.state.label());
        self.health.set_errored(&t.info.name, true);
    }

    /// Tables parked whose retry time has come go back to where they were.
    fn revive_parked(&mut self, now: Instant) {
        for t in &mut self.tables {
            if let TableState::Errored { until, resume } = &t.state {
                if *until <= now {
                    info!(table = %t.info.name, "retrying the table after its error");
                    t.state = (**resume).clone();
                    self.metrics.set_table_state(&t.info.name, t.state.label());
                    self.health.set_errored(&t.info.name, false);
                }
            }
        }
    }

    /// Change tracking was switched off on a streaming table.
    fn mark_tracking_lost(&mut self, i: usize) {
        let t = &mut self.tables[i];
        if let TableState::Streaming { position } = t.state {
            error!(table = %t.info.name, "change tracking is no longer enabled on the table; waiting for it to be re-enabled (migrations/003_enable_table_change_tracking.sql)");
            t.state = TableState::TrackingLost { position };
        }
        self.metrics.set_table_state(&t.info.name, t.state.label());
        self.health.set_errored(&t.info.name, true);
    }

    fn observe_lag(&mut self, i: usize, upper: i64) {
        let t = &mut self.tables[i];
        let lag = (upper - t.checkpoint.load(Ordering::Relaxed)).max(0);
        self.metrics.lag_versions.with_label_values(&[&t.info.name]).set(lag);
        let threshold = self.config.poll.lag_warning_versions;
        if lag > threshold && !t.lagging {
            t.lagging = true;
            self.metrics.lag_warnings.with_label_values(&[&t.info.name]).inc();
            warn!(table = %t.info.name, lag, threshold, "table is lagging behind the database version");
        } else if lag <= threshold {
            t.lagging = false;
        }
    }

    /// Queues `item` for table `i`'s delivery task, never waiting: what its queue does
    /// not take now, [`Self::hand_over`] passes on later.
    fn send(&mut self, i: usize, item: Delivery) {
        let t = &mut self.tables[i];
        t.backlog.push_back(item);
        // Pass on at once what the queue takes without waiting, so delivery works in
        // parallel with the rest of the read; a stopped task shows at the next hand-over.
        let _ = t.drain();
    }

    /// Waits until `deadline` (the next tick), meanwhile passing queued items on as soon
    /// as a delivery queue has room; returns early when a table that was skipped for its
    /// backlog has drained (it is read at once) or at shutdown.
    async fn hand_over_until(
        &mut self,
        deadline: tokio::time::Instant,
        shutdown: &CancellationToken,
    ) -> Result<(), SourceError> {
        loop {
            self.hand_over()?;
            if self.tables.iter().any(|t| t.behind && t.backlog.is_empty()) {
                return Ok(());
            }
            let waiting: Vec<_> = self
                .tables
                .iter()
                .enumerate()
                .filter(|(_, t)| !t.backlog.is_empty())
                .map(|(i, t)| {
                    let tx = t.tx.clone();
                    Box::pin(async move { (i, tx.reserve_owned().await) })
                })
                .collect();
            if waiting.is_empty() {
                tokio::select! {
                    _ = tokio::time::sleep_until(deadline) => {}
                    _ = shutdown.cancelled() => {}
                }
                return Ok(());
            }
            tokio::select! {
                ((i, permit), _, _) = futures_util::future::select_all(waiting) => {
                    let t = &mut self.tables[i];
                    let permit = permit.map_err(|_| stopped(&t.info))?;
                    if let Some(item) = t.backlog.pop_front() {
                        permit.send(item);
                    }
                }
                _ = tokio::time::sleep_until(deadline) => return Ok(()),
                _ = shutdown.cancelled() => return Ok(()),
            }
        }
    }

    /// Passes queued items to the delivery tasks, in order, as far as their bounded
    /// queues take them, without waiting: a full queue (a slow or failing sink) leaves
    /// the rest queued and that table unread until it drains. Returns whether anything
    /// was passed on.
    fn hand_over(&mut self) -> Result<bool, SourceError> {
        let mut sent = false;
        for t in &mut self.tables {
            sent |= t.drain().map_err(|()| stopped(&t.info))?;
        }
        Ok(sent)
    }
}

/// How long a table that failed permanently waits before it is tried again: long
/// enough not to hammer the server, short enough that a fixed grant is noticed soon.
const TABLE_RETRY: Duration = Duration::from_secs(30);

fn stopped(info: &TableInfo) -> SourceError {
    SourceError::Unexpected(format!("delivery task of {} stopped", info.name))
}
