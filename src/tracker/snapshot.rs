//! Snapshots: a resync is announced, then the table's rows are read as of a version in
//! keyset-paginated chunks, each its own short statement, so a snapshot never holds a
//! long transaction on the database.

use futures_util::TryStreamExt;
use tiberius::Query;
use tracing::{info, warn};

use super::{Delivery, Reader, ResyncReason, TableState};
use crate::envelope::{Batch, BatchBuilder, BatchKind, Position, Trailer};
use crate::source::rows::push_snapshot_row;
use crate::source::{sql, SourceError};

impl Reader {
    /// Announces a resync of table `i` (its checkpoint `position` is no longer usable)
    /// and starts a snapshot as of `version`.
    pub(super) fn start_resync(&mut self, i: usize, position: Position, version: i64, reason: ResyncReason) {
        let t = &self.tables[i];
        warn!(table = %t.info.name, checkpoint = ?position, version, reason = reason.as_str(), "resync: changes were lost, taking a fresh snapshot");
        self.metrics
            .resyncs
            .with_label_values(&[&t.info.name, reason.as_str()])
            .inc();
        let builder = BatchBuilder::new(
            t.route.clone(),
            &t.source_json,
            BatchKind::Resync,
            t.next_seq,
            position,
            self.policy,
        );
        let batch = builder.finish(Position::complete(version), None, Trailer::Reason(reason.as_str()));
        self.tables[i].next_seq += 1;
        self.send(
            i,
            Delivery::Resync {
                batch,
                reason: reason.as_str(),
            },
        );
        self.tables[i].state = TableState::Snapshotting {
            version,
            last_key: None,
            batches: 0,
        };
        self.tables[i].splits.clear();
        self.metrics
            .set_table_state(&self.tables[i].info.name, self.tables[i].state.label());
    }

    /// One keyset-paginated chunk of a snapshot, as its own statement.
    pub(super) async fn snapshot_chunk(&mut self, i: usize) -> Result<(), SourceError> {
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
        let info = self.tables[i].info.clone();
        let (route, source_json, policy) = (
            self.tables[i].route.clone(),
            self.tables[i].source_json.clone(),
            self.policy,
        );
        let mut query = Query::new(sql::snapshot_chunk(&info, last_key.is_none()));
        query.bind(chunk_rows as i64);
        for k in last_key.iter().flatten() {
            query.bind(k.clone());
        }
        let at = Position::complete(version);
        let mut builder = BatchBuilder::new(
            route,
            &source_json,
            BatchKind::Snapshot,
            self.tables[i].next_seq,
            at,
            policy,
        );
        let mut sealed = Vec::new();
        let mut batches = batches;
        let mut read = 0usize;
        let mut new_last_key = last_key;
        let client = self.client().await?;
        let mut rows = query.query(client).await?.into_row_stream();
        // Seals the batch (not the snapshot's last) and starts the next.
        let cut = |builder: &mut BatchBuilder, sealed: &mut Vec<Batch>, batches: &mut u64| {
            let next = builder.next(&source_json, at);
            let full = std::mem::replace(builder, next);
            let trailer = Trailer::Snapshot {
                chunk: *batches,
                last: false,
            };
            sealed.push(full.finish(at, None, trailer));
            *batches += 1;
        };
        while let Some(row) = rows.try_next().await? {
            if builder.is_full() {
                cut(&mut builder, &mut sealed, &mut batches);
            }
            read += 1;
            new_last_key = Some(push_snapshot_row(&mut builder, &info, version, row)?);
            // This row took the batch past the policy's hard maximum (a sink's message
            // size limit): the batch ends before it, and it starts the next one.
            if let Some(row) = builder.take_last_over_max() {
                cut(&mut builder, &mut sealed, &mut batches);
                builder.push_raw(row);
            }
        }
        drop(rows);
        let last = read < chunk_rows;
        if !builder.is_empty() || last {
            let trailer = Trailer::Snapshot { chunk: batches, last };
            sealed.push(builder.finish(at, None, trailer));
            batches += 1;
        }
        // Handed over after the statement is done (see `Reader::hand_over`).
        for batch in sealed {
            self.tables[i].next_seq = batch.seq + 1;
            self.send(i, Delivery::Batch(batch));
        }
        if last {
            info!(table = %info.name, version, batches, "snapshot complete; streaming changes");
            let seq = self.tables[i].next_seq - 1;
            let incarnation = self.incarnation.clone();
            self.send(
                i,
                Delivery::SnapshotDone {
                    version,
                    seq,
                    incarnation,
                },
            );
            self.tables[i].state = TableState::Streaming { position: at };
            self.metrics.set_table_state(&info.name, self.tables[i].state.label());
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
