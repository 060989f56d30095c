//! Streaming: one SNAPSHOT transaction per tick finds the tables with changes up to
//! the tick's upper bound and reads each one's `CHANGETABLE(CHANGES …)` into batches,
//! at most `poll.tick_bytes` of them, in statements of at most `poll.statement_rows`
//! changes; then it commits, and only then are the batches handed to delivery.
//! Expired checkpoints, a database version below a checkpoint and tables whose
//! tracking was switched off are recognised here and turned into resyncs.
//!
//! Positions: a batch ends either after a whole version or, when one transaction's
//! changes fill more than a batch (or a statement's `TOP`), inside it: part 1, 2, … of
//! that version, each ending at a key. The key of each part's end is stored before the
//! part is published, and a re-read after a restart ends each stored part at the same
//! key, with its own statement (`upto_key`), so a part has the same content and number
//! whenever it is sent.

use std::sync::Arc;
use std::time::Instant;

use futures_util::TryStreamExt;
use tiberius::Query;
use tracing::info;

use super::{Delivery, Reader, ResyncReason, TableState};
use crate::envelope::{Batch, BatchBuilder, BatchKind, Position, Trailer};
use crate::source::catalog::TableInfo;
use crate::source::rows::{key_params, push_change_row, ChangeLayout};
use crate::source::sql::ChangesRange;
use crate::source::{self, sql, SourceError};

/// What one tick's read of a table left.
struct Read {
    /// Whether changes up to the tick's upper bound remain (statement or tick bound).
    more: bool,
}

impl Reader {
    /// One SNAPSHOT transaction: read the upper bound, find the tables with changes
    /// (all streaming tables, or only `only`), read them. Returns the upper bound and
    /// whether some table has more to read below it (the next tick must read again even
    /// if the database version did not move).
    pub(super) async fn stream_tick(&mut self, only: Option<usize>) -> Result<(i64, bool), SourceError> {
        let database = self.identity.database.clone();
        self.metrics.source_queries.with_label_values(&["discover"]).inc();
        let client = self.client().await?;
        let upper = source::batch_scalar_i64(client, sql::BEGIN_SNAPSHOT)
            .await?
            .ok_or(SourceError::ChangeTrackingDisabled { database })?;
        self.metrics.database_version.set(upper);

        self.revive_parked(Instant::now());
        if std::mem::take(&mut self.restored) {
            for i in 0..self.tables.len() {
                let position = match &self.tables[i].state {
                    TableState::Streaming { position } | TableState::TrackingLost { position } => *position,
                    _ => Position::complete(upper),
                };
                self.start_resync(i, position, upper, ResyncReason::DatabaseRestored);
            }
        }
        // (index, position, went backwards, tracking lost)
        let mut candidates = Vec::new();
        let mut skipped = Vec::new();
        for (i, t) in self.tables.iter().enumerate() {
            if only.is_some_and(|o| o != i) {
                continue;
            }
            let (position, lost) = match t.state {
                TableState::Streaming { position } => (position, false),
                TableState::TrackingLost { position } => (position, true),
                _ => continue,
            };
            if !t.backlog.is_empty() {
                // Its delivery is behind: not read until that drains (see `Table::behind`).
                skipped.push(i);
                continue;
            }
            if position.version > upper {
                candidates.push((i, position, true, lost));
            } else if position < Position::complete(upper) || only.is_some() || lost {
                candidates.push((i, position, false, lost));
            }
        }
        for i in skipped {
            self.tables[i].behind = true;
        }
        for c in &candidates {
            self.tables[c.0].behind = false;
        }
        let backwards: Vec<(usize, Position)> = candidates.iter().filter(|c| c.2).map(|c| (c.0, c.1)).collect();
        for (i, position) in backwards {
            self.start_resync(i, position, upper, ResyncReason::VersionWentBackwards);
        }
        // Tables whose tracking was switched off stay out of the discover query (their
        // CHANGETABLE would fail it for everyone) until it is back.
        let lost: Vec<(usize, Position)> = candidates.iter().filter(|c| !c.2 && c.3).map(|c| (c.0, c.1)).collect();
        if !lost.is_empty() {
            for (i, min_valid) in self.min_valid_versions(&lost).await? {
                if min_valid.is_some() {
                    let position = lost
                        .iter()
                        .find(|(j, _)| *j == i)
                        .map_or(Position::complete(0), |l| l.1);
                    self.health.set_errored(&self.tables[i].info.name, false);
                    info!(table = %self.tables[i].info.name, "change tracking is enabled again");
                    // Whatever changed while tracking was off was never recorded.
                    self.start_resync(i, position, upper, ResyncReason::CheckpointExpired);
                }
            }
        }
        let forward: Vec<(usize, Position)> = candidates.iter().filter(|c| !c.2 && !c.3).map(|c| (c.0, c.1)).collect();
        let mut more = false;
        if !forward.is_empty() {
            let found = match self.discover(&forward, upper).await {
                Ok(found) => found,
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
                Err(e) if e.is_table_error() => {
                    // One table's permission or schema broke the shared query: find it
                    // by asking table by table, park it, and retry without it.
                    for &(i, position) in &forward {
                        if let Err(table_error) = self.discover(&[(i, position)], upper).await {
                            self.park(i, &table_error);
                        }
                    }
                    return Err(e);
                }
                Err(e) => return Err(e),
            };
            let mut budget = self.config.poll.tick_bytes;
            for (i, min_valid, has_changes, modified) in found {
                let Some(&(_, position)) = forward.iter().find(|(j, _)| *j == i) else {
                    return Err(SourceError::Unexpected(format!(
                        "discover returned unknown table index {i}"
                    )));
                };
                if let Some(min_valid) = min_valid {
                    self.metrics
                        .min_valid_version
                        .with_label_values(&[&self.tables[i].info.name])
                        .set(min_valid);
                }
                if modified.is_none() && min_valid.is_some() {
                    let e = SourceError::Unexpected(format!(
                        "table {} no longer exists (dropped or renamed); fix the table or remove it from the config",
                        self.tables[i].info.name
                    ));
                    self.park(i, &e);
                    continue;
                }
                if modified != self.tables[i].info.modified {
                    // Its columns may differ: read them again (after this transaction)
                    // before reading its changes.
                    self.tables[i].stale = true;
                    more = true;
                    continue;
                }
                match min_valid {
                    None => self.mark_tracking_lost(i),
                    Some(min_valid) if position.last_sync_version() < min_valid => {
                        self.start_resync(i, position, upper, ResyncReason::CheckpointExpired);
                    }
                    Some(_) if has_changes && budget == 0 => more = true,
                    Some(_) if has_changes => match self.read_changes(i, position, upper, &mut budget).await {
                        Ok(read) => more |= read.more,
                        Err(e) => {
                            if matches!(e, SourceError::Server { code: 207, .. }) {
                                // A column is gone or renamed: read the columns again.
                                self.tables[i].stale = true;
                            } else if e.is_table_error() {
                                self.park(i, &e);
                            }
                            return Err(e);
                        }
                    },
                    Some(_) => {
                        // Nothing up to `upper`: no batch (consumers see no gap in
                        // `seq`), only the checkpoint follows.
                        self.tables[i].state = TableState::Streaming {
                            position: Position::complete(upper),
                        };
                        self.tables[i].trim_splits(Position::complete(upper));
                        self.send(i, Delivery::Progress(upper));
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
        Ok((upper, more))
    }

    /// `(table index, CHANGE_TRACKING_MIN_VALID_VERSION, has changes up to upper)`.
    async fn discover(
        &mut self,
        tables: &[(usize, Position)],
        upper: i64,
    ) -> Result<Vec<(usize, Option<i64>, bool, Option<chrono::NaiveDateTime>)>, SourceError> {
        let infos: Vec<(usize, &TableInfo)> = tables.iter().map(|(i, _)| (*i, &self.tables[*i].info)).collect();
        let mut query = Query::new(sql::discover(&infos));
        query.bind(upper);
        for (_, position) in tables {
            query.bind(position.last_sync_version());
        }
        let client = self.client().await?;
        let rows = query.query(client).await?.into_first_result().await?;
        let mut found = Vec::with_capacity(rows.len());
        for row in rows {
            let index: i32 = row.try_get(0)?.unwrap_or(-1);
            let min_valid: Option<i64> = row.try_get(1)?;
            let has_changes: i32 = row.try_get(2)?.unwrap_or(0);
            let modified: Option<chrono::NaiveDateTime> = row.try_get(3)?;
            found.push((index as usize, min_valid, has_changes == 1, modified));
        }
        Ok(found)
    }

    /// `(table index, CHANGE_TRACKING_MIN_VALID_VERSION)` for `tables`.
    async fn min_valid_versions(
        &mut self,
        tables: &[(usize, Position)],
    ) -> Result<Vec<(usize, Option<i64>)>, SourceError> {
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

    /// Reads table `i`'s changes after `position` up to `upper`, statement by statement,
    /// until done or `budget` (bytes) is spent; queues the batches.
    async fn read_changes(
        &mut self,
        i: usize,
        mut position: Position,
        upper: i64,
        budget: &mut usize,
    ) -> Result<Read, SourceError> {
        loop {
            let next = self.tables[i].next_split(position).filter(|((v, _), _)| *v <= upper);
            let (end, sealed, sent_bytes) = match next {
                // A stored part ends ahead: re-read up to its end as one batch, as it
                // was sent before the restart (same end, same number).
                Some(((v, part), key)) => {
                    let to = Position {
                        version: v,
                        part: Some(part),
                    };
                    self.read_stored_part(i, position, to, key).await?
                }
                None => self.read_segment(i, position, upper).await?,
            };
            *budget = budget.saturating_sub(sent_bytes);
            for batch in sealed {
                *budget = budget.saturating_sub(batch.payload.len());
                self.tables[i].next_seq = batch.seq + 1;
                self.send(i, Delivery::Batch(batch));
            }
            self.tables[i].state = TableState::Streaming { position: end };
            position = end;
            if position >= Position::complete(upper) {
                self.tables[i].trim_splits(position);
                return Ok(Read { more: false });
            }
            if *budget == 0 {
                return Ok(Read { more: true });
            }
        }
    }

    /// Re-reads up to a stored part's end: the changes after `from` up to `to.version`'s
    /// change at `key`, inclusive, as one batch ending at `to`, whatever the flush
    /// policy (the batch sent before held at least these changes: a version's changes
    /// only ever move to later versions).
    async fn read_stored_part(
        &mut self,
        i: usize,
        from: Position,
        to: Position,
        key: Arc<str>,
    ) -> Result<(Position, Vec<Batch>, usize), SourceError> {
        let info = self.tables[i].info.clone();
        let after = self.tables[i].resume_key(from);
        let range = ChangesRange {
            after_key: after.is_some(),
            upto_key: true,
        };
        let mut query = Query::new(sql::changes(&info, range));
        query.bind(i64::from(i32::MAX));
        query.bind(from.last_sync_version());
        query.bind(to.version);
        if let Some(after) = &after {
            query.bind(from.version);
            for p in key_params(&info, after)? {
                p.bind(&mut query);
            }
        }
        for p in key_params(&info, &key)? {
            p.bind(&mut query);
        }
        self.metrics.source_queries.with_label_values(&["changes"]).inc();
        let t = &self.tables[i];
        let mut builder = BatchBuilder::new(
            t.route.clone(),
            &t.source_json,
            BatchKind::Changes,
            t.next_seq,
            from,
            self.policy,
        );
        let layout = ChangeLayout::new(&info);
        let client = self.client().await?;
        let mut rows = query.query(client).await?.into_row_stream();
        while let Some(row) = rows.try_next().await? {
            push_change_row(&mut builder, &info, &layout, row)?;
        }
        Ok((to, vec![builder.finish(to, Some(key), Trailer::None)], 0))
    }

    /// One statement: at most `poll.statement_rows` changes after `from` up to `bound`,
    /// cut into batches by the flush policy. Returns where it ended and the batches.
    async fn read_segment(
        &mut self,
        i: usize,
        from: Position,
        bound: i64,
    ) -> Result<(Position, Vec<Batch>, usize), SourceError> {
        let info = self.tables[i].info.clone();
        let after = self.tables[i].resume_key(from);
        let limit = self.config.poll.statement_rows;
        let range = ChangesRange {
            after_key: after.is_some(),
            ..ChangesRange::default()
        };
        let mut query = Query::new(sql::changes(&info, range));
        query.bind(limit as i64);
        query.bind(from.last_sync_version());
        query.bind(bound);
        if let Some(after) = &after {
            query.bind(from.version);
            for p in key_params(&info, after)? {
                p.bind(&mut query);
            }
        }
        self.metrics.source_queries.with_label_values(&["changes"]).inc();
        let t = &self.tables[i];
        let source_json = t.source_json.clone();
        let mut builder = BatchBuilder::new(
            t.route.clone(),
            &source_json,
            BatchKind::Changes,
            t.next_seq,
            from,
            self.policy,
        );
        let layout = ChangeLayout::new(&info);
        let mut sealed = Vec::new();
        let mut new_splits = Vec::new();
        // Sealed batches go straight to the delivery queue while it has room and nothing
        // waits before them, so delivery works while the statement is still read.
        let tx = self.tables[i].tx.clone();
        let mut inline = self.tables[i].backlog.is_empty();
        let mut sent: (usize, Option<u64>) = (0, None);
        // The version and key of the last change added, and how many were read.
        let mut last: Option<(i64, String)> = None;
        let mut read = 0usize;
        let client = self.client().await?;
        let mut rows = query.query(client).await?.into_row_stream();
        while let Some(row) = rows.try_next().await? {
            let version: i64 = row.try_get(0)?.unwrap_or_default();
            if builder.is_full() {
                if let Some(last) = last.take() {
                    cut(&mut builder, &source_json, last, version, &mut sealed, &mut new_splits);
                    forward(&tx, &mut sealed, &mut inline, &mut sent);
                }
            }
            let pushed = push_change_row(&mut builder, &info, &layout, row)?;
            // This change took the batch past the policy's hard maximum (a sink's message
            // size limit): the batch ends before it, and it starts the next one.
            if let Some(change) = builder.take_last_over_max() {
                if let Some(last) = last.take() {
                    cut(&mut builder, &source_json, last, version, &mut sealed, &mut new_splits);
                    forward(&tx, &mut sealed, &mut inline, &mut sent);
                }
                builder.push_raw(change);
            }
            last = Some(pushed);
            read += 1;
        }
        drop(rows);
        if let Some(seq) = sent.1 {
            self.tables[i].next_seq = seq + 1;
        }
        let end = match last {
            // The statement's TOP stopped it: end inside the last change's version, which
            // may have more changes.
            Some((last_version, last_key)) if read >= limit => {
                let to = end_after(builder.from(), last_version, true);
                if let Some(part) = to.part {
                    new_splits.push(((to.version, part), Arc::from(last_key.as_str())));
                }
                sealed.push(builder.finish(to, Some(Arc::from(last_key.as_str())), Trailer::None));
                to
            }
            // Everything up to `bound` was read.
            _ => {
                let to = Position::complete(bound);
                if !builder.is_empty() {
                    sealed.push(builder.finish(to, None, Trailer::None));
                } else if from != to {
                    // Nothing more: the checkpoint follows (no empty batch is published).
                    self.send(i, Delivery::Progress(bound));
                }
                to
            }
        };
        self.tables[i].splits.extend(new_splits);
        Ok((end, sealed, sent.0))
    }
}

/// Seals `builder` after its last change `last` (version and key), the next change read
/// having `version`, into `sealed` (and its part boundary into `new_splits` when it ends
/// inside a version), and starts the next batch where it ends.
fn cut(
    builder: &mut BatchBuilder,
    source_json: &str,
    (last_version, last_key): (i64, String),
    version: i64,
    sealed: &mut Vec<Batch>,
    new_splits: &mut Vec<((i64, u32), Arc<str>)>,
) {
    let to = end_after(builder.from(), last_version, version == last_version);
    let split_key = to.part.map(|_| Arc::<str>::from(last_key.as_str()));
    if let (Some(part), Some(key)) = (to.part, &split_key) {
        new_splits.push(((to.version, part), key.clone()));
    }
    let next = builder.next(source_json, to);
    sealed.push(std::mem::replace(builder, next).finish(to, split_key, Trailer::None));
}

/// Passes `sealed` batches to the delivery queue `tx` in order while it takes them
/// without waiting; after the first it refuses, the rest of the statement's batches stay
/// in `sealed` (order is kept). `sent` counts the bytes and the last number passed on.
fn forward(
    tx: &tokio::sync::mpsc::Sender<Delivery>,
    sealed: &mut Vec<Batch>,
    inline: &mut bool,
    sent: &mut (usize, Option<u64>),
) {
    while *inline && !sealed.is_empty() {
        let batch = sealed.remove(0);
        let (bytes, seq) = (batch.payload.len(), batch.seq);
        match tx.try_send(Delivery::Batch(batch)) {
            Ok(()) => *sent = (sent.0 + bytes, Some(seq)),
            Err(
                tokio::sync::mpsc::error::TrySendError::Full(item)
                | tokio::sync::mpsc::error::TrySendError::Closed(item),
            ) => {
                if let Delivery::Batch(batch) = item {
                    sealed.insert(0, batch);
                }
                *inline = false;
            }
        }
    }
}

/// Where a batch that started at `from` and whose last change has version `version`
/// ends: inside that version (the next part) when `inside`, else after all of it.
fn end_after(from: Position, version: i64, inside: bool) -> Position {
    if !inside {
        return Position::complete(version);
    }
    let part = match from.part {
        Some(p) if from.version == version => p + 1,
        _ => 1,
    };
    Position {
        version,
        part: Some(part),
    }
}
