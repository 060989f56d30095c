//! Streaming: one SNAPSHOT transaction per tick finds the tables with changes up to
//! the tick's upper bound and reads each one's `CHANGETABLE(CHANGES …)` into batches.
//! Expired checkpoints, a database version below a checkpoint and tables whose
//! tracking was switched off are recognised here and turned into resyncs.

use std::time::Instant;

use futures_util::TryStreamExt;
use tiberius::Query;
use tracing::info;

use super::{stopped, Delivery, Reader, ResyncReason, TableState};
use crate::envelope::{BatchBuilder, BatchKind, Trailer};
use crate::source::catalog::TableInfo;
use crate::source::rows::{push_change_row, ChangeLayout};
use crate::source::{self, sql, SourceError};

impl Reader {
    /// One SNAPSHOT transaction: read the upper bound, find the tables with changes
    /// (all streaming tables, or only `only`), stream them. Returns the upper bound.
    pub(super) async fn stream_tick(&mut self, only: Option<usize>) -> Result<i64, SourceError> {
        let database = self.identity.database.clone();
        self.metrics.source_queries.with_label_values(&["discover"]).inc();
        let client = self.client().await?;
        let upper = source::batch_scalar_i64(client, sql::BEGIN_SNAPSHOT)
            .await?
            .ok_or(SourceError::ChangeTrackingDisabled { database })?;
        self.metrics.database_version.set(upper);

        self.revive_parked(Instant::now());
        // (index, position, went backwards, tracking lost)
        let mut candidates = Vec::new();
        for (i, t) in self.tables.iter().enumerate() {
            if only.is_some_and(|o| o != i) {
                continue;
            }
            let (position, lost) = match t.state {
                TableState::Streaming { position } => (position, false),
                TableState::TrackingLost { position } => (position, true),
                _ => continue,
            };
            if position > upper {
                candidates.push((i, position, true, lost));
            } else if position < upper || only.is_some() || lost {
                candidates.push((i, position, false, lost));
            }
        }
        let backwards: Vec<(usize, i64)> = candidates.iter().filter(|c| c.2).map(|c| (c.0, c.1)).collect();
        for (i, position) in backwards {
            self.start_resync(i, position, upper, ResyncReason::VersionWentBackwards)
                .await?;
        }
        // Tables whose tracking was switched off stay out of the discover query (their
        // CHANGETABLE would fail it for everyone) until it is back.
        let lost: Vec<(usize, i64)> = candidates.iter().filter(|c| !c.2 && c.3).map(|c| (c.0, c.1)).collect();
        if !lost.is_empty() {
            for (i, min_valid) in self.min_valid_versions(&lost).await? {
                if min_valid.is_some() {
                    let position = lost.iter().find(|(j, _)| *j == i).map_or(0, |l| l.1);
                    self.health.set_errored(&self.tables[i].info.name, false);
                    info!(table = %self.tables[i].info.name, "change tracking is enabled again");
                    // Whatever changed while tracking was off was never recorded.
                    self.start_resync(i, position, upper, ResyncReason::CheckpointExpired)
                        .await?;
                }
            }
        }
        let forward: Vec<(usize, i64)> = candidates.iter().filter(|c| !c.2 && !c.3).map(|c| (c.0, c.1)).collect();
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
                Err(e) if e.is_table_error() => {
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
                if let Some(min_valid) = min_valid {
                    self.metrics
                        .min_valid_version
                        .with_label_values(&[&self.tables[i].info.name])
                        .set(min_valid);
                }
                match min_valid {
                    None => self.mark_tracking_lost(i),
                    Some(min_valid) if position < min_valid => {
                        self.start_resync(i, position, upper, ResyncReason::CheckpointExpired)
                            .await?;
                    }
                    Some(_) => {
                        if has_changes {
                            if let Err(e) = self.read_changes(i, position, upper).await {
                                if e.is_table_error() {
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

    /// Streams one table's changes in (position, upper] into batches.
    async fn read_changes(&mut self, i: usize, position: i64, upper: i64) -> Result<(), SourceError> {
        self.metrics.source_queries.with_label_values(&["changes"]).inc();
        let text = sql::changes(&self.tables[i].info);
        let info = self.tables[i].info.clone();
        let (route, source_json, policy) = (
            self.tables[i].route.clone(),
            self.tables[i].source_json.clone(),
            self.policy,
        );
        let tx = self.tables[i].tx.clone();
        let layout = ChangeLayout::new(&info);
        let mut query = Query::new(text);
        query.bind(position);
        query.bind(upper);
        self.client().await?;
        let Some(client) = self.client.as_mut() else {
            return Err(SourceError::Unexpected("no connection".into()));
        };
        let mut rows = query.query(client).await?.into_row_stream();
        let mut builder = BatchBuilder::new(route, &source_json, BatchKind::Changes, position, policy);
        while let Some(row) = rows.try_next().await? {
            let version: i64 = row.try_get(0)?.unwrap_or_default();
            if builder.is_full() {
                let to = (version - 1).max(builder.from_version());
                let next = builder.next(&source_json, to);
                let full = std::mem::replace(&mut builder, next);
                tx.send(Delivery::Batch(full.finish(to, Trailer::None)))
                    .await
                    .map_err(|_| stopped(&info))?;
                // Handed over: after a failure the next read resumes here, without duplicates.
                self.tables[i].state = TableState::Streaming { position: to };
            }
            push_change_row(&mut builder, &info, &layout, row)?;
        }
        drop(rows);
        if builder.is_empty() {
            tx.send(Delivery::Progress(upper)).await.map_err(|_| stopped(&info))?;
        } else {
            tx.send(Delivery::Batch(builder.finish(upper, Trailer::None)))
                .await
                .map_err(|_| stopped(&info))?;
        }
        self.tables[i].state = TableState::Streaming { position: upper };
        Ok(())
    }
}
