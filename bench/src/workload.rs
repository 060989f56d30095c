//! What the benchmarks commit: order lines of the `rig::LINES_COLUMNS` shape, written
//! through the stand-in's fast path (`Engine::transaction`, no SQL parsing) so the
//! writer costs as little as possible next to the sidecar.
//!
//! Every change of a run touches a different row (inserts of new keys, updates and
//! deletes of rows preloaded before the sidecar starts), so Change Tracking cannot fold
//! two changes into one and the number of changes delivered must equal the number
//! committed.

use std::time::Instant;

use anyhow::{Context, Result};
use chrono::{FixedOffset, NaiveDate, NaiveTime, TimeZone};
use testkit::mssql::engine::Engine;
use testkit::mssql::types::Value;

use crate::rig::DB;

/// Percent of each transaction's rows that are updates and deletes; the rest are inserts.
const UPDATE_PERCENT: usize = 15;
const DELETE_PERCENT: usize = 5;

/// The row with key (`order_id`, 1): ~200 bytes stored, ~490 bytes as an envelope change.
pub fn line_row(order_id: i64, revision: i64) -> Vec<Value> {
    let date = NaiveDate::from_ymd_opt(2026, 11, 24).unwrap_or_default();
    let time = NaiveTime::from_hms_milli_opt(8, 30, 0, 250).unwrap_or_default();
    let offset = FixedOffset::east_opt(3600).unwrap_or_else(|| FixedOffset::east_opt(0).expect("UTC"));
    let placed = offset
        .from_local_datetime(&date.and_time(time))
        .single()
        .unwrap_or_else(|| offset.from_utc_datetime(&date.and_time(time)));
    // A digest-like binary column: bytes that do not compress, as in real tables.
    let mut x = (order_id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let payload: Vec<u8> = (0..24)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    vec![
        Value::Int(order_id),
        Value::Int(1),
        Value::String(format!("SKU-{:06}-{}", order_id % 50_000, order_id % 7)),
        Value::Int(1 + order_id % 9 + revision),
        Value::Money(199_900 + (order_id % 1000) * 100),
        Value::Float(1.5),
        if order_id % 3 == 0 {
            Value::Null
        } else {
            Value::Float(0.1)
        },
        Value::Date(date),
        Value::Time(time),
        Value::Binary(payload),
        Value::DateTime(date.and_time(time)),
        Value::Int(order_id % 4),
        Value::DateTimeOffset(placed),
        Value::String(format!(
            "order {order_id}: leave at the door, ring twice (rev {revision})"
        )),
        Value::Decimal {
            value: 1_999 + (order_id % 10_000) as i128 * 7,
            scale: 2,
        },
    ]
}

/// One table's cursor: which keys are new, which preloaded rows are still untouched.
#[derive(Debug, Clone)]
struct Cursor {
    table: String,
    next_insert: i64,
    next_update: i64,
    next_delete: i64,
    update_end: i64,
}

/// Order-line changes over several tables, in fixed-size transactions.
pub struct LinesWorkload {
    cursors: Vec<Cursor>,
    txn_rows: usize,
}

/// What a writer did.
#[derive(Debug, Clone, Copy)]
pub struct Written {
    /// Changes committed.
    pub changes: u64,
    /// When the first transaction committed.
    pub first_commit: Instant,
    /// When the last transaction committed.
    pub last_commit: Instant,
    /// The database version after the last commit.
    pub last_version: i64,
}

impl LinesWorkload {
    /// Preloads enough rows in each of `tables` for `rounds` runs of `per_table`
    /// changes each (their updates and deletes need existing rows).
    pub fn preload(
        engine: &Engine,
        tables: &[String],
        per_table: usize,
        rounds: usize,
        txn_rows: usize,
    ) -> Result<Self> {
        let per_run = per_table * (UPDATE_PERCENT + DELETE_PERCENT) / 100 + txn_rows;
        let preload = (per_run * rounds) as i64;
        let mut cursors = Vec::with_capacity(tables.len());
        for table in tables {
            let mut id = 0;
            while id < preload {
                let end = (id + 10_000).min(preload);
                engine
                    .transaction(DB, |txn| {
                        for k in id..end {
                            txn.insert(table, line_row(k, 0))?;
                        }
                        Ok(())
                    })
                    .with_context(|| format!("preload {table}"))?;
                id = end;
            }
            let update_end = preload * UPDATE_PERCENT as i64 / (UPDATE_PERCENT + DELETE_PERCENT) as i64;
            cursors.push(Cursor {
                table: table.clone(),
                next_insert: preload,
                next_update: 0,
                next_delete: update_end,
                update_end,
            });
        }
        Ok(Self { cursors, txn_rows })
    }

    /// Commits `per_table` changes to every table, round-robin, `txn_rows` per
    /// transaction. Blocking: run it on its own thread.
    pub fn commit(&mut self, engine: &Engine, per_table: usize) -> Result<Written> {
        let mut remaining = vec![per_table; self.cursors.len()];
        let mut first_commit = None;
        let mut changes = 0u64;
        while remaining.iter().any(|r| *r > 0) {
            for (i, cursor) in self.cursors.iter_mut().enumerate() {
                let rows = remaining[i].min(self.txn_rows);
                if rows == 0 {
                    continue;
                }
                let updates = rows * UPDATE_PERCENT / 100;
                let deletes = rows * DELETE_PERCENT / 100;
                let inserts = rows - updates - deletes;
                if cursor.next_update + updates as i64 > cursor.update_end {
                    anyhow::bail!("{}: preloaded rows for updates exhausted", cursor.table);
                }
                let table = cursor.table.clone();
                engine.transaction(DB, |txn| {
                    for _ in 0..inserts {
                        txn.insert(&table, line_row(cursor.next_insert, 0))?;
                        cursor.next_insert += 1;
                    }
                    for _ in 0..updates {
                        let id = cursor.next_update;
                        txn.update(
                            &table,
                            &[Value::Int(id), Value::Int(1)],
                            &[
                                ("Qty", Value::Int(100 + id % 7)),
                                ("Note", Value::String(format!("updated {id}"))),
                            ],
                        )?;
                        cursor.next_update += 1;
                    }
                    for _ in 0..deletes {
                        txn.delete(&table, &[Value::Int(cursor.next_delete), Value::Int(1)])?;
                        cursor.next_delete += 1;
                    }
                    Ok(())
                })?;
                first_commit.get_or_insert_with(Instant::now);
                remaining[i] -= rows;
                changes += rows as u64;
            }
        }
        let last_commit = Instant::now();
        Ok(Written {
            changes,
            first_commit: first_commit.unwrap_or(last_commit),
            last_commit,
            last_version: engine.current_version(DB).unwrap_or(0),
        })
    }
}
