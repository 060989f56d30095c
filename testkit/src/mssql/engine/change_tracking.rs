//! Change Tracking as Microsoft documents it: one database-wide version per committed
//! transaction that touched a tracked table, per-row side data (last change version,
//! creation version, operation, updated-column mask, context), net changes relative
//! to a caller's baseline, retention-based cleanup raising each table's minimum
//! valid version, and resets on TRUNCATE / disable.
//!
//! Per table the side data is kept twice, like SQL Server's internal side table and
//! its index: `keys` (key → history of changes) and `by_version` (last change version
//! → keys). `CHANGETABLE(CHANGES t, v)` walks `by_version` from `v + 1`, so it costs
//! O(changes since v · log n) instead of a scan of the whole history.

use std::collections::BTreeMap;
use std::sync::Arc;

use imbl::{OrdMap, OrdSet};

use super::catalog::{Database, Table};
use super::error;
use super::value::{Key, Row};
use crate::mssql::types::{SqlError, Value};

/// A row-level change made by a statement, as the storage layer applied it.
#[derive(Debug, Clone)]
pub enum RowChange {
    Insert {
        key: Key,
        row: Row,
    },
    /// `changed` are indexes of the columns in the SET list.
    Update {
        old_key: Key,
        key: Key,
        row: Row,
        changed: Arc<[usize]>,
    },
    Delete {
        key: Key,
    },
}

/// One change of a transaction: the table (by object id) and its context.
#[derive(Debug, Clone)]
pub struct Op {
    pub table: i64,
    pub change: RowChange,
    /// `WITH CHANGE_TRACKING_CONTEXT (…)` of the statement that made it.
    pub context: Option<Arc<[u8]>>,
}

/// The kind of one entry of a row's change history.
#[derive(Debug, Clone, PartialEq)]
pub enum EntryKind {
    Insert,
    /// The updated columns' ids; `None` when every non-key column changed (or the row
    /// was deleted and re-inserted), which SQL Server reports as a NULL mask.
    Update(Option<Arc<[i64]>>),
    Delete,
}

/// What one committed transaction did to one row.
#[derive(Debug, Clone)]
pub struct Entry {
    pub version: i64,
    pub kind: EntryKind,
    pub context: Option<Arc<[u8]>>,
}

/// The tracked history of one primary key.
#[derive(Debug, Clone)]
pub struct KeyHistory {
    /// Version of the last tracked insert of this key.
    pub creation_version: Option<i64>,
    pub entries: Vec<Entry>,
}

/// A table's change tracking state (`sys.change_tracking_tables` and side data).
#[derive(Debug, Clone)]
pub struct TableTracking {
    pub track_columns_updated: bool,
    pub begin_version: i64,
    pub cleanup_version: i64,
    pub keys: OrdMap<Key, KeyHistory>,
    pub by_version: OrdMap<i64, OrdSet<Key>>,
}

impl TableTracking {
    /// Tracking that starts now, at the database's current version.
    pub fn new(track_columns_updated: bool, current_version: i64) -> Self {
        Self {
            track_columns_updated,
            begin_version: current_version,
            cleanup_version: 0,
            keys: OrdMap::new(),
            by_version: OrdMap::new(),
        }
    }

    /// `CHANGE_TRACKING_MIN_VALID_VERSION`: the oldest baseline from which all
    /// changes are still known.
    pub fn min_valid_version(&self) -> i64 {
        self.begin_version.max(self.cleanup_version)
    }
}

/// The pending effect of a transaction on one key, before it gets its version.
struct Pending {
    kind: PendingKind,
    context: Option<Arc<[u8]>>,
}

enum PendingKind {
    Insert,
    /// `None` = all columns.
    Update(Option<std::collections::BTreeSet<i64>>),
    Delete,
}

fn merge(prev: Option<PendingKind>, next: PendingKind) -> PendingKind {
    use PendingKind::*;
    match (prev, next) {
        (None, n) => n,
        (Some(Insert), Update(_)) => Insert,
        (Some(Insert), Delete) => Delete,
        (Some(Update(a)), Update(b)) => match (a, b) {
            (Some(mut a), Some(b)) => {
                a.extend(b);
                Update(Some(a))
            }
            _ => Update(None),
        },
        (Some(Update(_)), Delete) => Delete,
        // A delete followed by an insert of the same key is an update of every column.
        (Some(Delete), Insert) => Update(None),
        (Some(_), n) => n,
    }
}

/// Records a committed transaction's changes in `db`'s tracking side data and
/// returns the version it got, or `None` when it touched no tracked table (then the
/// database version does not move).
pub fn record(db: &mut Database, ops: &[Op], now_ms: u64) -> Option<i64> {
    db.tracking.as_ref()?;
    let mut pending: BTreeMap<i64, BTreeMap<Key, Pending>> = BTreeMap::new();
    for op in ops {
        let Some(table) = db.tables.get(&op.table) else {
            continue;
        };
        let Some(tracking) = &table.tracking else {
            continue;
        };
        let per_table = pending.entry(op.table).or_default();
        let mut add = |key: &Key, kind: PendingKind| {
            let prev = per_table.remove(key).map(|p| p.kind);
            per_table.insert(
                key.clone(),
                Pending {
                    kind: merge(prev, kind),
                    context: op.context.clone(),
                },
            );
        };
        match &op.change {
            RowChange::Insert { key, .. } => add(key, PendingKind::Insert),
            RowChange::Delete { key } => add(key, PendingKind::Delete),
            RowChange::Update {
                old_key, key, changed, ..
            } => {
                if old_key != key {
                    // Primary key updates are a delete of the old key and an insert.
                    add(old_key, PendingKind::Delete);
                    add(key, PendingKind::Insert);
                } else {
                    add(key, PendingKind::Update(update_mask(table, tracking, changed)));
                }
            }
        }
    }
    if pending.values().all(BTreeMap::is_empty) {
        return None;
    }
    let version = db.ct_version + 1;
    db.ct_version = version;
    db.version_times.insert(version, now_ms);
    for (table_id, changes) in pending {
        let Some(table) = db.tables.get_mut(&table_id) else {
            continue;
        };
        let Some(tracking) = table.tracking.as_mut() else {
            continue;
        };
        let mut keys_at_version = tracking.by_version.get(&version).cloned().unwrap_or_default();
        for (key, p) in changes {
            let kind = match p.kind {
                PendingKind::Insert => EntryKind::Insert,
                PendingKind::Delete => EntryKind::Delete,
                PendingKind::Update(mask) => EntryKind::Update(mask.map(|m| m.into_iter().collect())),
            };
            let inserted = matches!(kind, EntryKind::Insert);
            let entry = Entry {
                version,
                kind,
                context: p.context,
            };
            match tracking.keys.get_mut(&key) {
                Some(history) => {
                    if let Some(last) = history.entries.last() {
                        let old = last.version;
                        if let Some(set) = tracking.by_version.get_mut(&old) {
                            set.remove(&key);
                            if set.is_empty() {
                                tracking.by_version.remove(&old);
                            }
                        }
                    }
                    if inserted {
                        history.creation_version = Some(version);
                    }
                    history.entries.push(entry);
                }
                None => {
                    tracking.keys.insert(
                        key.clone(),
                        KeyHistory {
                            creation_version: inserted.then_some(version),
                            entries: vec![entry],
                        },
                    );
                }
            }
            keys_at_version.insert(key);
        }
        tracking.by_version.insert(version, keys_at_version);
    }
    Some(version)
}

/// The mask of an update: the SET columns' `column_id`s (which stay put when other
/// columns are added or dropped), or `None` (all) when column tracking is off or every
/// non-key column was set.
fn update_mask(table: &Table, tracking: &TableTracking, changed: &[usize]) -> Option<std::collections::BTreeSet<i64>> {
    if !tracking.track_columns_updated {
        return None;
    }
    let all_non_key = (0..table.columns.len())
        .filter(|i| !table.primary_key.contains(i))
        .all(|i| changed.contains(&i));
    if all_non_key {
        return None;
    }
    Some(changed.iter().map(|&i| table.columns[i].column_id).collect())
}

/// One row of `CHANGETABLE(CHANGES t, v)` before the key columns are appended.
#[derive(Debug, Clone)]
pub struct ChangeRow {
    pub version: i64,
    pub creation_version: Option<i64>,
    pub operation: char,
    pub columns: Option<Vec<u8>>,
    pub context: Option<Arc<[u8]>>,
    pub key: Key,
}

/// The net change of one key relative to `since` (`None` = all tracked changes).
pub fn net_change(history: &KeyHistory, key: &Key, since: Option<i64>, track_columns: bool) -> Option<ChangeRow> {
    let last = history.entries.last()?;
    let after_start = match since {
        Some(v) => history.entries.partition_point(|e| e.version <= v),
        None => 0,
    };
    let after = &history.entries[after_start..];
    let first = after.first()?;
    if last.kind == EntryKind::Delete {
        return Some(ChangeRow {
            version: last.version,
            creation_version: None,
            operation: 'D',
            columns: None,
            context: last.context.clone(),
            key: key.clone(),
        });
    }
    if first.kind == EntryKind::Insert {
        return Some(ChangeRow {
            version: last.version,
            creation_version: history.creation_version,
            operation: 'I',
            columns: None,
            context: last.context.clone(),
            key: key.clone(),
        });
    }
    let mut mask: Option<std::collections::BTreeSet<i64>> = Some(Default::default());
    if !track_columns {
        mask = None;
    }
    for e in after {
        match (&e.kind, mask.as_mut()) {
            (EntryKind::Update(Some(cols)), Some(m)) => m.extend(cols.iter().copied()),
            (EntryKind::Update(Some(_)), None) => {}
            _ => mask = None,
        }
    }
    Some(ChangeRow {
        version: last.version,
        creation_version: history.creation_version,
        operation: 'U',
        columns: mask.map(|m| encode_mask(&m)),
        context: last.context.clone(),
        key: key.clone(),
    })
}

/// Iterates the net changes since `since`, ordered by last change version then key.
pub fn changes_since(tracking: &TableTracking, since: Option<i64>) -> impl Iterator<Item = ChangeRow> + '_ {
    let from = since.map_or(i64::MIN, |v| v.saturating_add(1));
    tracking
        .by_version
        .range(from..)
        .flat_map(move |(_, keys)| keys.iter())
        .filter_map(move |key| {
            let history = tracking.keys.get(key)?;
            net_change(history, key, since, tracking.track_columns_updated)
        })
}

/// Encodes a column mask for `SYS_CHANGE_COLUMNS`: the column ids as 4-byte
/// little-endian integers. Applications must treat it as opaque and test it with
/// `CHANGE_TRACKING_IS_COLUMN_IN_MASK`, as with SQL Server.
pub fn encode_mask(columns: &std::collections::BTreeSet<i64>) -> Vec<u8> {
    let mut out = Vec::with_capacity(columns.len() * 4);
    for c in columns {
        out.extend_from_slice(&(*c as i32).to_le_bytes());
    }
    out
}

/// `CHANGE_TRACKING_IS_COLUMN_IN_MASK(column_id, mask)`; a mask that did not come
/// from CHANGETABLE is Msg 22101.
pub fn is_column_in_mask(column_id: i64, mask: &Value) -> Result<Value, SqlError> {
    match mask {
        // NULL mask: insert, delete, or every column changed.
        Value::Null => Ok(Value::Bit(true)),
        Value::Binary(bytes) if bytes.len() % 4 == 0 => {
            Ok(Value::Bit(bytes.chunks_exact(4).any(|c| {
                i64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]])) == column_id
            })))
        }
        _ => Err(error::invalid_change_columns()),
    }
}

/// Runs the cleanup task: drops side data older than the retention period and
/// raises each tracked table's cleanup (and so minimum valid) version.
pub fn cleanup(db: &mut Database, now_ms: u64) {
    let Some(settings) = db.tracking.clone() else {
        return;
    };
    if !settings.auto_cleanup {
        return;
    }
    let cutoff = now_ms.saturating_sub(settings.retention_ms());
    let expired = db
        .version_times
        .iter()
        .take_while(|(_, t)| **t < cutoff)
        .map(|(v, _)| *v)
        .last();
    let Some(upto) = expired else {
        return;
    };
    let table_ids: Vec<i64> = db.tables.keys().copied().collect();
    for id in table_ids {
        let Some(table) = db.tables.get_mut(&id) else {
            continue;
        };
        let Some(tracking) = table.tracking.as_mut() else {
            continue;
        };
        tracking.cleanup_version = tracking.cleanup_version.max(upto);
        let old_versions: Vec<i64> = tracking.by_version.range(..=upto).map(|(v, _)| *v).collect();
        for v in old_versions {
            if let Some(keys) = tracking.by_version.remove(&v) {
                for key in keys {
                    tracking.keys.remove(&key);
                }
            }
        }
        // Keys whose latest change survives keep only their surviving entries.
        let touched: Vec<Key> = tracking
            .keys
            .iter()
            .filter(|(_, h)| h.entries.first().is_some_and(|e| e.version <= upto))
            .map(|(k, _)| k.clone())
            .collect();
        for key in touched {
            if let Some(h) = tracking.keys.get_mut(&key) {
                h.entries.retain(|e| e.version > upto);
            }
        }
    }
    let old: Vec<i64> = db.version_times.range(..=upto).map(|(v, _)| *v).collect();
    for v in old {
        db.version_times.remove(&v);
    }
}
