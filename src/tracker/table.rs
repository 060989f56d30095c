//! One table as the reader sees it: where it is ([`TableState`]), where its batches go,
//! and the queue to its delivery task.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::AtomicI64;
use std::sync::Arc;
use std::time::Instant;

use tiberius::ColumnData;
use tokio::sync::mpsc;

use super::delivery::Delivery;
use crate::envelope::{Position, Route};
use crate::source::catalog::TableInfo;

/// Where a table is. Exactly one state at a time, so "errored while snapshotting" or
/// "tracking lost while parked" cannot be half-recorded in loose flags.
#[derive(Debug, Clone)]
pub(super) enum TableState {
    /// Reading changes after `position` (everything up to it has been handed to delivery).
    Streaming { position: Position },
    /// Publishing existing rows as of `version`, keyset-paginated after `last_key`.
    Snapshotting {
        version: i64,
        last_key: Option<Vec<ColumnData<'static>>>,
        batches: u64,
    },
    /// A permanent error (permission denied, table dropped) parked the table until
    /// `until`; then it goes back to `resume`. The other tables keep streaming.
    Errored { until: Instant, resume: Box<TableState> },
    /// Change tracking was switched off on the table while it streamed from
    /// `position`; when it is back the table must resync, since changes made meanwhile
    /// were never recorded. Kept out of the shared discover query, whose CHANGETABLE
    /// would fail for every table.
    TrackingLost { position: Position },
}

impl TableState {
    /// The `state` label of `cdc_sidecar_table_state` (see [`crate::metrics`]).
    pub(super) fn label(&self) -> &'static str {
        match self {
            TableState::Streaming { .. } => "streaming",
            TableState::Snapshotting { .. } => "snapshotting",
            TableState::Errored { .. } | TableState::TrackingLost { .. } => "error",
        }
    }
}

/// One table's reader-side state.
pub(super) struct Table {
    pub(super) info: TableInfo,
    pub(super) route: Arc<Route>,
    /// The envelope's `source` object, encoded once.
    pub(super) source_json: Arc<str>,
    pub(super) state: TableState,
    pub(super) tx: mpsc::Sender<Delivery>,
    /// The durable checkpoint, written by the delivery task, read here for lag.
    pub(super) checkpoint: Arc<AtomicI64>,
    /// Whether the lag warning was logged (once per episode, not per tick).
    pub(super) lagging: bool,
    /// Where each part of a version ends, `(version, part)` → key as JSON members: the
    /// ones stored with the checkpoint (a restart re-reads those parts with exactly
    /// these ends) and the ones made since. Entries behind the position are dropped.
    pub(super) splits: BTreeMap<(i64, u32), Arc<str>>,
    /// The number of the next batch (see `envelope::Batch::seq`).
    pub(super) next_seq: u64,
    /// Read but not yet taken by the delivery task (its queue was full). While not
    /// empty the table is not read again, so a stalled sink costs one tick's worth of
    /// memory and never blocks the reader or the other tables.
    pub(super) backlog: VecDeque<Delivery>,
    /// Skipped by a tick while its backlog was full: read again as soon as it drains,
    /// even if the database version has not moved.
    pub(super) behind: bool,
    /// Its schema changed (a new `modify_date`, or a read failed with 207 invalid
    /// column): its columns are read again before it is read.
    pub(super) stale: bool,
}

impl Table {
    /// Passes queued items to the delivery task, in order, as far as its bounded queue
    /// takes them without waiting. Returns whether anything was passed on, or `Err` when
    /// the delivery task has stopped.
    pub(super) fn drain(&mut self) -> Result<bool, ()> {
        let mut sent = false;
        while let Some(item) = self.backlog.pop_front() {
            match self.tx.try_send(item) {
                Ok(()) => sent = true,
                Err(mpsc::error::TrySendError::Full(item)) => {
                    self.backlog.push_front(item);
                    break;
                }
                Err(mpsc::error::TrySendError::Closed(item)) => {
                    // Kept, so every later hand-over reports the stopped task too.
                    self.backlog.push_front(item);
                    return Err(());
                }
            }
        }
        Ok(sent)
    }

    /// The key after which reading continues from `position` inside its version.
    pub(super) fn resume_key(&self, position: Position) -> Option<Arc<str>> {
        position
            .part
            .and_then(|p| self.splits.get(&(position.version, p)).cloned())
    }

    /// The first stored part end after `position`, if any.
    pub(super) fn next_split(&self, position: Position) -> Option<((i64, u32), Arc<str>)> {
        let from = match position.part {
            Some(p) => (position.version, p + 1),
            None => (position.version + 1, 0),
        };
        self.splits.range(from..).next().map(|(k, v)| (*k, v.clone()))
    }

    /// Forgets part ends behind `position` (kept: its own, the resume key).
    pub(super) fn trim_splits(&mut self, position: Position) {
        let keep_from = match position.part {
            Some(p) => (position.version, p),
            None => (position.version + 1, 0),
        };
        self.splits = self.splits.split_off(&keep_from);
    }
}
