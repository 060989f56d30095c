//! The trackers: one reader that owns the SQL Server connection and one delivery task
//! per table. Each tick the reader probes `CHANGE_TRACKING_CURRENT_VERSION()` once for
//! the whole database; only when it moved does it open a SNAPSHOT transaction, find the
//! tables with changes up to the new upper bound (checking every table's minimum valid
//! version in the same query), and stream just those tables' changes into batches.
//! Idle, the probe interval backs off exponentially; on activity it resets.

mod backoff;
mod batch;
mod delivery;

pub use backoff::Backoff;
pub use batch::{source_json, BatchBuilder, Op, FORMAT};
pub use delivery::{Delivery, DeliveryTask};

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures_util::TryStreamExt;
use tiberius::{ColumnData, Query, Row};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::{Config, SnapshotMode};
use crate::metrics::Metrics;
use crate::sink::{BatchKind, Route};
use crate::source::check::{SourceIdentity, TableInfo};
use crate::source::encode::{is_null, write_str, write_value};
use crate::source::{self, sql, SourceError, SqlClient};

/// Why a table is being resynced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResyncReason {
    /// The checkpoint is below `CHANGE_TRACKING_MIN_VALID_VERSION`: cleanup ran past it,
    /// the table was truncated, or tracking was re-enabled.
    CheckpointExpired,
    /// The database version is below the checkpoint: a restore or failover.
    VersionWentBackwards,
}

impl ResyncReason {
    /// The envelope's `reason` and the metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            ResyncReason::CheckpointExpired => "checkpoint_expired",
            ResyncReason::VersionWentBackwards => "version_went_backwards",
        }
    }
}

/// Where a table is.
#[derive(Debug, Clone)]
enum TableState {
    /// Reading changes after `position` (everything up to it has been handed to delivery).
    Streaming { position: i64 },
    /// Publishing existing rows as of `version`, keyset-paginated after `last_key`.
    Snapshotting {
        version: i64,
        last_key: Option<Vec<ColumnData<'static>>>,
        batches: u64,
    },
}

/// One table's reader-side state.
struct Table {
    info: TableInfo,
    route: Arc<Route>,
    source_json: Arc<str>,
    state: TableState,
    tx: mpsc::Sender<Delivery>,
    checkpoint: Arc<AtomicI64>,
    lagging: bool,
    /// Tracking was seen disabled; when it comes back the table must resync, since
    /// changes made meanwhile were never recorded.
    tracking_lost: bool,
    /// A permanent error (permission denied, table dropped) parked the table until
    /// this instant; the other tables keep streaming meanwhile.
    errored_until: Option<Instant>,
}

/// Liveness and readiness, shared with the HTTP endpoints.
#[derive(Debug, Default)]
pub struct Health {
    /// Set once startup checks passed and the first tick succeeded; cleared while the
    /// source is failing.
    pub ready: AtomicBool,
    /// Milliseconds since the Unix epoch of the reader's last loop iteration.
    pub last_tick_ms: AtomicI64,
    /// Tables parked by an error (or whose tracking was switched off), for `/readyz`.
    pub errored_tables: std::sync::Mutex<Vec<String>>,
}

impl Health {
    fn set_errored(&self, table: &str, errored: bool) {
        // A poisoned lock only means a panic elsewhere; the list is still usable.
        let mut list = self.errored_tables.lock().unwrap_or_else(|p| p.into_inner());
        list.retain(|t| t != table);
        if errored {
            list.push(table.to_string());
        }
    }
}

/// The shared reader: one connection, every table.
pub struct Reader {
    config: Arc<Config>,
    identity: SourceIdentity,
    client: Option<SqlClient>,
    tables: Vec<Table>,
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
    pub checkpoint: Option<i64>,
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
        for s in starts {
            let mode = config
                .tables
                .iter()
                .find(|t| t.name == s.info.name)
                .map(|t| t.snapshot)
                .unwrap_or_default();
            let state = match (s.checkpoint, mode) {
                (Some(position), _) => TableState::Streaming { position },
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
                    let _ = s.tx.send(Delivery::SnapshotDone(current_version)).await;
                    TableState::Streaming {
                        position: current_version,
                    }
                }
            };
            let source_json = source_json(&identity.server, &identity.database, &s.info.schema, &s.info.table);
            metrics.set_table_state(&s.info.name, state_label(&state));
            tables.push(Table {
                info: s.info,
                route: s.route,
                source_json,
                state,
                tx: s.tx,
                checkpoint: s.checkpoint_cell,
                lagging: false,
                tracking_lost: false,
                errored_until: None,
            });
        }
        Self {
            config,
            identity,
            client: Some(client),
            tables,
            metrics,
            health,
        }
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
                r = self.tick(&mut last_seen) => r,
                _ = shutdown.cancelled() => break,
            };
            if result.is_ok() {
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
                    if !e.is_retryable() && !is_table_error(&e) {
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
            } else {
                interval.next_delay()
            };
            self.metrics.poll_interval.set(delay.as_secs_f64());
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = shutdown.cancelled() => break,
            }
        }
        if let Some(client) = self.client.take() {
            let _ = client.close().await;
        }
    }

    async fn client(&mut self) -> Result<&mut SqlClient, SourceError> {
        if self.client.is_none() {
            let client = source::connect(&self.config.source).await?;
            self.metrics.reconnects.with_label_values(&["source"]).inc();
            info!("reconnected to SQL Server");
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
        let snapshotting = self
            .tables
            .iter()
            .any(|t| matches!(t.state, TableState::Snapshotting { .. }));
        if shared_probe {
            self.metrics.source_queries.with_label_values(&["probe"]).inc();
            let database = self.identity.database.clone();
            let current = source::query_scalar_i64(self.client().await?, sql::PROBE, &[])
                .await?
                .ok_or(SourceError::ChangeTrackingDisabled { database })?;
            self.metrics.database_version.set(current);
            if Some(current) == *last_seen && !snapshotting {
                self.metrics.probes.with_label_values(&["idle"]).inc();
                return Ok(false);
            }
            self.metrics.probes.with_label_values(&["moved"]).inc();
            let timer = self.metrics.poll_duration.start_timer();
            let upper = self.stream_tick(None).await?;
            timer.observe_duration();
            *last_seen = Some(upper);
        } else {
            // The original design, kept for comparison: every table queried every tick,
            // backing off only while no table had anything.
            let mut moved = false;
            for i in 0..self.tables.len() {
                if let TableState::Streaming { position } = self.tables[i].state {
                    let upper = self.stream_tick(Some(i)).await?;
                    moved |= upper != position;
                }
            }
            if !moved && !snapshotting {
                return Ok(false);
            }
        }
        for i in 0..self.tables.len() {
            if matches!(self.tables[i].state, TableState::Snapshotting { .. }) {
                if let Err(e) = self.snapshot_chunk(i).await {
                    if is_table_error(&e) {
                        self.park(i, &e);
                    }
                    return Err(e);
                }
            }
        }
        Ok(true)
    }

    /// One SNAPSHOT transaction: read the upper bound, find the tables with changes
    /// (all streaming tables, or only `only`), stream them. Returns the upper bound.
    async fn stream_tick(&mut self, only: Option<usize>) -> Result<i64, SourceError> {
        let database = self.identity.database.clone();
        self.metrics.source_queries.with_label_values(&["discover"]).inc();
        let client = self.client().await?;
        let upper = source::batch_scalar_i64(client, sql::BEGIN_SNAPSHOT)
            .await?
            .ok_or(SourceError::ChangeTrackingDisabled { database })?;
        self.metrics.database_version.set(upper);

        let now = Instant::now();
        for t in &mut self.tables {
            if t.errored_until.is_some_and(|until| until <= now) {
                info!(table = %t.info.name, "retrying the table after its error");
                t.errored_until = None;
                self.metrics.set_table_state(&t.info.name, state_label(&t.state));
                self.health.set_errored(&t.info.name, false);
            }
        }
        let mut candidates = Vec::new();
        for (i, t) in self.tables.iter().enumerate() {
            if only.is_some_and(|o| o != i) || t.errored_until.is_some() {
                continue;
            }
            if let TableState::Streaming { position } = t.state {
                if position > upper {
                    candidates.push((i, position, true));
                } else if position < upper || only.is_some() {
                    candidates.push((i, position, false));
                }
            }
        }
        let backwards: Vec<(usize, i64)> = candidates.iter().filter(|c| c.2).map(|c| (c.0, c.1)).collect();
        for (i, position) in backwards {
            self.start_resync(i, position, upper, ResyncReason::VersionWentBackwards)
                .await?;
        }
        // Tables whose tracking was switched off stay out of the discover query (their
        // CHANGETABLE would fail it for everyone) until it is back.
        let lost: Vec<(usize, i64)> = candidates
            .iter()
            .filter(|c| !c.2 && self.tables[c.0].tracking_lost)
            .map(|c| (c.0, c.1))
            .collect();
        if !lost.is_empty() {
            for (i, min_valid) in self.min_valid_versions(&lost).await? {
                if min_valid.is_some() {
                    let position = lost.iter().find(|(j, _)| *j == i).map_or(0, |l| l.1);
                    self.tables[i].tracking_lost = false;
                    self.health.set_errored(&self.tables[i].info.name, false);
                    info!(table = %self.tables[i].info.name, "change tracking is enabled again");
                    // Whatever changed while tracking was off was never recorded.
                    self.start_resync(i, position, upper, ResyncReason::CheckpointExpired)
                        .await?;
                }
            }
        }
        let forward: Vec<(usize, i64)> = candidates
            .iter()
            .filter(|c| !c.2 && !self.tables[c.0].tracking_lost)
            .map(|c| (c.0, c.1))
            .collect();
        if !forward.is_empty() {
            let infos: Vec<(usize, &TableInfo)> = forward.iter().map(|(i, _)| (*i, &self.tables[*i].info)).collect();
            let text = sql::discover(&infos);
            let mut query = Query::new(text);
            query.bind(upper);
            for (_, position) in &forward {
                query.bind(*position);
            }
            let client = self.client().await?;
            let rows = match query.query(client).await {
                Ok(stream) => stream.into_first_result().await,
                Err(e) => Err(e),
            };
            let rows = match rows.map_err(SourceError::from) {
                Ok(rows) => rows,
                Err(e @ SourceError::Server { code: 22105, .. }) => {
                    // A table lost its tracking between ticks: find which, then retry
                    // on a fresh connection without it.
                    for (i, min_valid) in self.min_valid_versions(&forward).await? {
                        if min_valid.is_none() {
                            self.mark_tracking_lost(i);
                        }
                    }
                    return Err(e);
                }
                Err(e) if is_table_error(&e) => {
                    // One table's permission or schema broke the shared query: find it
                    // by asking table by table, park it, and retry without it.
                    for &(i, position) in &forward {
                        let info = [(i, &self.tables[i].info)];
                        let mut q = Query::new(sql::discover(&info));
                        q.bind(upper);
                        q.bind(position);
                        let client = self.client().await?;
                        let result = match q.query(client).await {
                            Ok(stream) => stream.into_first_result().await.map(|_| ()),
                            Err(e) => Err(e),
                        };
                        if let Err(table_error) = result.map_err(SourceError::from) {
                            self.park(i, &table_error);
                        }
                    }
                    return Err(e);
                }
                Err(e) => return Err(e),
            };
            let mut found = Vec::with_capacity(rows.len());
            for row in rows {
                let index: i32 = row.try_get(0)?.unwrap_or(-1);
                let min_valid: Option<i64> = row.try_get(1)?;
                let has_changes: i32 = row.try_get(2)?.unwrap_or(0);
                found.push((index as usize, min_valid, has_changes == 1));
            }
            for (i, min_valid, has_changes) in found {
                let Some(&(_, position)) = forward.iter().find(|(j, _)| *j == i) else {
                    return Err(SourceError::Unexpected(format!(
                        "discover returned unknown table index {i}"
                    )));
                };
                match min_valid {
                    None => self.mark_tracking_lost(i),
                    Some(min_valid) if position < min_valid => {
                        self.start_resync(i, position, upper, ResyncReason::CheckpointExpired)
                            .await?;
                    }
                    Some(_) => {
                        if has_changes {
                            if let Err(e) = self.read_changes(i, position, upper).await {
                                if is_table_error(&e) {
                                    self.park(i, &e);
                                }
                                return Err(e);
                            }
                        } else {
                            self.tables[i].state = TableState::Streaming { position: upper };
                            self.send(i, Delivery::Progress(upper)).await?;
                        }
                    }
                }
                self.observe_lag(i, upper);
            }
        }
        self.client()
            .await?
            .simple_query(sql::COMMIT)
            .await?
            .into_results()
            .await?;
        Ok(upper)
    }

    /// Parks a table after a permanent error, for [`TABLE_RETRY`].
    fn park(&mut self, i: usize, e: &SourceError) {
        let t = &mut self.tables[i];
        error!(table = %t.info.name, error = %e, retry_in = ?TABLE_RETRY, "table failed; the other tables keep streaming");
        t.errored_until = Some(Instant::now() + TABLE_RETRY);
        self.metrics.set_table_state(&t.info.name, "error");
        self.health.set_errored(&t.info.name, true);
    }

    fn mark_tracking_lost(&mut self, i: usize) {
        let t = &mut self.tables[i];
        if !t.tracking_lost {
            error!(table = %t.info.name, "change tracking is no longer enabled on the table; waiting for it to be re-enabled (migrations/003_enable_table_change_tracking.sql)");
            t.tracking_lost = true;
        }
        self.metrics.set_table_state(&t.info.name, "error");
        self.health.set_errored(&t.info.name, true);
    }

    /// `(table index, CHANGE_TRACKING_MIN_VALID_VERSION)` for `tables`.
    async fn min_valid_versions(&mut self, tables: &[(usize, i64)]) -> Result<Vec<(usize, Option<i64>)>, SourceError> {
        let infos: Vec<(usize, &TableInfo)> = tables.iter().map(|(i, _)| (*i, &self.tables[*i].info)).collect();
        let text = sql::min_valid_versions(&infos);
        self.metrics.source_queries.with_label_values(&["discover"]).inc();
        let client = self.client().await?;
        let rows = client.simple_query(text).await?.into_first_result().await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let index: i32 = row.try_get(0)?.unwrap_or(-1);
            out.push((index as usize, row.try_get::<i64, _>(1)?));
        }
        Ok(out)
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

    async fn send(&self, i: usize, item: Delivery) -> Result<(), SourceError> {
        self.tables[i]
            .tx
            .send(item)
            .await
            .map_err(|_| SourceError::Unexpected(format!("delivery task of {} stopped", self.tables[i].info.name)))
    }

    async fn start_resync(
        &mut self,
        i: usize,
        position: i64,
        version: i64,
        reason: ResyncReason,
    ) -> Result<(), SourceError> {
        let t = &self.tables[i];
        warn!(table = %t.info.name, checkpoint = position, version, reason = reason.as_str(), "resync: changes were lost, taking a fresh snapshot");
        self.metrics
            .resyncs
            .with_label_values(&[&t.info.name, reason.as_str()])
            .inc();
        let builder = BatchBuilder::new(t.route.clone(), t.source_json.clone(), BatchKind::Resync, position, 0);
        let batch = builder.finish(version, &format!(",\"reason\":\"{}\"", reason.as_str()));
        self.send(i, Delivery::Batch(batch)).await?;
        self.tables[i].state = TableState::Snapshotting {
            version,
            last_key: None,
            batches: 0,
        };
        self.metrics.set_table_state(&self.tables[i].info.name, "snapshotting");
        Ok(())
    }

    /// Streams one table's changes in (position, upper] into batches.
    async fn read_changes(&mut self, i: usize, position: i64, upper: i64) -> Result<(), SourceError> {
        self.metrics.source_queries.with_label_values(&["changes"]).inc();
        let (batch_rows, batch_bytes) = (self.config.poll.batch_rows as u64, self.config.poll.batch_bytes);
        let text = sql::changes(&self.tables[i].info);
        let info = self.tables[i].info.clone();
        let (route, source_json) = (self.tables[i].route.clone(), self.tables[i].source_json.clone());
        let tx = self.tables[i].tx.clone();
        let key_offset = sql::changes_key_offset(&info);
        let key_in_row: Vec<usize> = info
            .key
            .iter()
            .filter_map(|k| info.columns.iter().position(|c| c.id == k.id))
            .collect();
        let mut query = Query::new(text);
        query.bind(position);
        query.bind(upper);
        self.client().await?;
        let Some(client) = self.client.as_mut() else {
            return Err(SourceError::Unexpected("no connection".into()));
        };
        let mut rows = query.query(client).await?.into_row_stream();
        let mut builder = BatchBuilder::new(
            route.clone(),
            source_json.clone(),
            BatchKind::Changes,
            position,
            batch_bytes.min(1 << 20),
        );
        while let Some(row) = rows.try_next().await? {
            let version: i64 = row.try_get(0)?.unwrap_or_default();
            if builder.len() >= batch_rows || builder.bytes() >= batch_bytes {
                let to = (version - 1).max(builder.from_version());
                let full = std::mem::replace(
                    &mut builder,
                    BatchBuilder::new(
                        route.clone(),
                        source_json.clone(),
                        BatchKind::Changes,
                        to,
                        batch_bytes.min(1 << 20),
                    ),
                );
                tx.send(Delivery::Batch(full.finish(to, "")))
                    .await
                    .map_err(|_| stopped(&info))?;
                // Handed over: after a failure the next read resumes here, without duplicates.
                self.tables[i].state = TableState::Streaming { position: to };
            }
            encode_change(&mut builder, &info, key_offset, &key_in_row, row)?;
        }
        drop(rows);
        if builder.is_empty() {
            tx.send(Delivery::Progress(upper)).await.map_err(|_| stopped(&info))?;
        } else {
            tx.send(Delivery::Batch(builder.finish(upper, "")))
                .await
                .map_err(|_| stopped(&info))?;
        }
        self.tables[i].state = TableState::Streaming { position: upper };
        Ok(())
    }

    /// One keyset-paginated chunk of a snapshot, as its own statement.
    async fn snapshot_chunk(&mut self, i: usize) -> Result<(), SourceError> {
        let TableState::Snapshotting {
            version,
            last_key,
            batches,
        } = self.tables[i].state.clone()
        else {
            return Ok(());
        };
        self.metrics.source_queries.with_label_values(&["snapshot"]).inc();
        let chunk_rows = self.config.poll.snapshot_chunk_rows;
        let (batch_rows, batch_bytes) = (self.config.poll.batch_rows as u64, self.config.poll.batch_bytes);
        let info = self.tables[i].info.clone();
        let (route, source_json) = (self.tables[i].route.clone(), self.tables[i].source_json.clone());
        let tx = self.tables[i].tx.clone();
        let mut query = Query::new(sql::snapshot_chunk(&info, last_key.is_none()));
        query.bind(chunk_rows as i64);
        for k in last_key.iter().flatten() {
            query.bind(k.clone());
        }
        let client = self.client().await?;
        let mut rows = query.query(client).await?.into_row_stream();
        let mut builder = BatchBuilder::new(
            route.clone(),
            source_json.clone(),
            BatchKind::Snapshot,
            version,
            batch_bytes.min(1 << 20),
        );
        let mut batches = batches;
        let mut read = 0usize;
        let mut new_last_key = last_key;
        while let Some(row) = rows.try_next().await? {
            if builder.len() >= batch_rows || builder.bytes() >= batch_bytes {
                let full = std::mem::replace(
                    &mut builder,
                    BatchBuilder::new(
                        route.clone(),
                        source_json.clone(),
                        BatchKind::Snapshot,
                        version,
                        batch_bytes.min(1 << 20),
                    ),
                );
                let extra = format!(",\"snapshot\":{{\"chunk\":{batches},\"last\":false}}");
                tx.send(Delivery::Batch(full.finish(version, &extra)))
                    .await
                    .map_err(|_| stopped(&info))?;
                batches += 1;
            }
            read += 1;
            let cells: Vec<ColumnData<'static>> = row.into_iter().collect();
            let key_len = info.key.len();
            {
                let out = builder.begin_change(Op::Read, Some(version), None);
                out.extend_from_slice(b",\"key\":{");
                write_object(out, &info.key, &cells[..key_len])?;
                out.extend_from_slice(b"},\"row\":{");
                write_object(out, &info.columns, &cells[key_len..])?;
                out.extend_from_slice(b"},\"changed_columns\":null,\"context\":null");
            }
            builder.end_change();
            new_last_key = Some(cells[..key_len].to_vec());
        }
        drop(rows);
        let last = read < chunk_rows;
        if !builder.is_empty() || last {
            let extra = format!(",\"snapshot\":{{\"chunk\":{batches},\"last\":{last}}}");
            tx.send(Delivery::Batch(builder.finish(version, &extra)))
                .await
                .map_err(|_| stopped(&info))?;
            batches += 1;
        }
        if last {
            info!(table = %info.name, version, batches, "snapshot complete; streaming changes");
            tx.send(Delivery::SnapshotDone(version))
                .await
                .map_err(|_| stopped(&info))?;
            self.tables[i].state = TableState::Streaming { position: version };
            self.metrics.set_table_state(&info.name, "streaming");
        } else {
            self.tables[i].state = TableState::Snapshotting {
                version,
                last_key: new_last_key,
                batches,
            };
        }
        Ok(())
    }
}

/// How long a table that failed permanently waits before it is tried again: long
/// enough not to hammer the server, short enough that a fixed grant is noticed soon.
const TABLE_RETRY: Duration = Duration::from_secs(30);

/// Errors that concern one table's permissions or schema, not the connection:
/// permission denied (229, 230, 297), invalid object or column (208, 207).
fn is_table_error(e: &SourceError) -> bool {
    matches!(
        e,
        SourceError::Server {
            code: 229 | 230 | 297 | 208 | 207,
            ..
        }
    )
}

fn stopped(info: &TableInfo) -> SourceError {
    SourceError::Unexpected(format!("delivery task of {} stopped", info.name))
}

fn state_label(state: &TableState) -> &'static str {
    match state {
        TableState::Streaming { .. } => "streaming",
        TableState::Snapshotting { .. } => "snapshotting",
    }
}

fn write_object(
    out: &mut Vec<u8>,
    columns: &[crate::source::check::ColumnInfo],
    cells: &[ColumnData<'static>],
) -> Result<(), SourceError> {
    for (j, (c, cell)) in columns.iter().zip(cells).enumerate() {
        if j > 0 {
            out.push(b',');
        }
        write_str(out, &c.name);
        out.push(b':');
        write_value(out, &c.name, c.kind, cell).map_err(|e| SourceError::Unexpected(e.to_string()))?;
    }
    Ok(())
}

/// Appends one `CHANGETABLE` row (layout of [`sql::changes`]) to the batch.
/// `key_in_row` holds the positions of the key columns among the published columns.
fn encode_change(
    builder: &mut BatchBuilder,
    info: &TableInfo,
    key_offset: usize,
    key_in_row: &[usize],
    row: Row,
) -> Result<(), SourceError> {
    let version: Option<i64> = row.try_get(0)?;
    let creation: Option<i64> = row.try_get(1)?;
    let op_text: Option<&str> = row.try_get(2)?;
    let op = op_text
        .and_then(Op::from_sys_change_operation)
        .ok_or_else(|| SourceError::Unexpected(format!("unknown SYS_CHANGE_OPERATION {op_text:?}")))?;
    let context: Option<&[u8]> = row.try_get(3)?;
    let context = context.map(|c| base64::engine::general_purpose::STANDARD.encode(c));
    let mut changed: Option<Vec<&str>> = None;
    if info.track_columns_updated && op == Op::Update {
        // Packed in-mask flags (see sql::changes); NULL means no per-column mask.
        let mut names = Vec::new();
        let mut any_mask = false;
        for (chunk_index, chunk) in info
            .mask_columns()
            .collect::<Vec<_>>()
            .chunks(sql::MASK_BITS)
            .enumerate()
        {
            if let Some(bits) = row.try_get::<i32, _>(4 + chunk_index)? {
                any_mask = true;
                for (bit, c) in chunk.iter().enumerate() {
                    if bits & (1 << bit) != 0 {
                        names.push(c.name.as_str());
                    }
                }
            }
        }
        if any_mask {
            changed = Some(names);
        }
    }
    let cells: Vec<ColumnData<'static>> = row.into_iter().collect();
    let key_cells = &cells[key_offset..key_offset + info.key.len()];
    let row_cells = &cells[key_offset + info.key.len()..];
    // With the LEFT JOIN, a row that is gone has NULL in every key column.
    let row_present =
        op != Op::Delete && (key_in_row.is_empty() || key_in_row.iter().any(|&p| !is_null(&row_cells[p])));
    let out = builder.begin_change(op, version, creation);
    out.extend_from_slice(b",\"key\":{");
    write_object(out, &info.key, key_cells)?;
    out.extend_from_slice(b"},\"row\":");
    if row_present {
        out.push(b'{');
        write_object(out, &info.columns, row_cells)?;
        out.push(b'}');
    } else {
        out.extend_from_slice(b"null");
    }
    out.extend_from_slice(b",\"changed_columns\":");
    match changed {
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
    match context {
        Some(c) => {
            out.push(b'"');
            out.extend_from_slice(c.as_bytes());
            out.push(b'"');
        }
        None => out.extend_from_slice(b"null"),
    }
    builder.end_change();
    Ok(())
}
