//! INSERT, UPDATE and DELETE planning: name resolution, permissions, value
//! conversion to column types, NOT NULL checks, and the row changes to apply. The
//! plan is computed against a read-only view; [`super::storage`] applies it.

use std::sync::Arc;

use super::ast::{Expr, ObjectName};
use super::catalog::{Database, Table};
use super::change_tracking::RowChange;
use super::env::Env;
use super::error;
use super::expr::{bind, Scope};
use super::query::{matching_rows, metadata_check, resolve_table, table_scope};
use super::security;
use super::value::{coerce, Key, Row, Target};
use crate::mssql::types::{SqlError, Value};

/// A planned statement: which table, and the row changes.
pub struct Planned {
    pub database: String,
    pub table_id: i64,
    pub changes: Vec<RowChange>,
}

fn full_name(db: &Database, table: &Table) -> String {
    format!(
        "{}.{}.{}",
        db.name,
        db.schema_name(table.schema_id).unwrap_or("dbo"),
        table.name
    )
}

fn writable<'e>(env: &'e Env<'_>, name: &ObjectName, permission: &str) -> Result<(&'e Database, &'e Table), SqlError> {
    if name.schema().is_some_and(|s| s.eq_ignore_ascii_case("sys")) {
        return Err(SqlError::new(
            259,
            16,
            "Ad hoc updates to system catalogs are not allowed.",
        ));
    }
    let (db, table) = resolve_table(env, name)?;
    if env.snapshot_txn && !db.snapshot_isolation {
        return Err(error::snapshot_not_allowed(&db.name));
    }
    metadata_check(env, db, table)?;
    security::require_table_permission(env, db, table, permission)?;
    Ok((db, table))
}

/// Converts and checks a full row for `table`. Names for messages are built only
/// when a check fails (this runs once per row of every write).
pub fn check_row(db: &Database, table: &Table, values: Vec<Value>, statement: &str) -> Result<Vec<Value>, SqlError> {
    let mut out = Vec::with_capacity(values.len());
    for (v, c) in values.into_iter().zip(table.columns.iter()) {
        let v = coerce(
            v,
            &c.ty,
            &Target {
                table: "",
                column: &c.name,
            },
        )
        .map_err(|e| {
            if e.number == 2628 {
                // Name the table in the truncation message.
                let full = full_name(db, table);
                SqlError {
                    message: e.message.replacen("table ''", &format!("table '{full}'"), 1),
                    ..e
                }
            } else {
                e
            }
        })?;
        if matches!(v, Value::Null) && !c.nullable {
            return Err(error::null_not_allowed(&c.name, &full_name(db, table), statement));
        }
        let v = narrow_declared(v, &c.type_name)?;
        out.push(v);
    }
    Ok(out)
}

/// Plans `INSERT INTO t [(cols)] VALUES (…), (…)`.
pub fn plan_insert(
    env: &Env<'_>,
    name: &ObjectName,
    columns: Option<&[String]>,
    rows: &[Vec<Expr>],
) -> Result<Planned, SqlError> {
    let (db, table) = writable(env, name, "INSERT")?;
    let targets: Vec<usize> = match columns {
        Some(cols) => {
            let mut v = Vec::new();
            for c in cols {
                let i = table.column_index(c).ok_or_else(|| error::invalid_column(c))?;
                if v.contains(&i) {
                    return Err(SqlError::new(
                        264,
                        16,
                        format!("The column name '{c}' is specified more than once in the SET clause or column list of an INSERT. A column cannot be assigned more than one value in the same clause. Modify the clause to make sure that a column is updated only once. If this statement updates or inserts columns into a view, column aliasing can conceal the duplication in your code."),
                    ));
                }
                v.push(i);
            }
            v
        }
        None => (0..table.columns.len()).collect(),
    };
    let scope = Scope::default();
    let mut changes = Vec::with_capacity(rows.len());
    let mut seen: std::collections::BTreeSet<Key> = Default::default();
    for row in rows {
        if row.len() != targets.len() {
            return Err(match (columns.is_some(), row.len() > targets.len()) {
                (false, _) => error::insert_value_count(),
                (true, true) => error::insert_fewer_columns(),
                (true, false) => error::insert_more_columns(),
            });
        }
        // A column left out of the column list takes its DEFAULT, else NULL.
        let mut values: Vec<Value> = table
            .columns
            .iter()
            .map(|c| c.default.as_ref().map_or(Value::Null, |d| d.value.clone()))
            .collect();
        for (e, &i) in row.iter().zip(targets.iter()) {
            values[i] = bind(e, &scope, env)?.bound.eval(&[], env)?;
        }
        let values = check_row(db, table, values, "INSERT")?;
        let key = table.key_of(&values);
        if !table.primary_key.is_empty() && (table.rows.contains_key(&key) || !seen.insert(key.clone())) {
            return Err(error::duplicate_key(
                table.pk_name.as_deref().unwrap_or("PK"),
                &format!("{}.{}", db.schema_name(table.schema_id).unwrap_or("dbo"), table.name),
                &key.display(),
            ));
        }
        changes.push(RowChange::Insert {
            key,
            row: Row::from(values),
        });
    }
    Ok(Planned {
        database: db.name.clone(),
        table_id: table.object_id,
        changes,
    })
}

/// Plans `UPDATE t SET c = e, … [WHERE …]`.
pub fn plan_update(
    env: &Env<'_>,
    name: &ObjectName,
    sets: &[(String, Expr)],
    filter: Option<&Expr>,
) -> Result<Planned, SqlError> {
    let (db, table) = writable(env, name, "UPDATE")?;
    let scope = table_scope(name.object(), table);
    let mut targets = Vec::new();
    for (c, e) in sets {
        let i = table.column_index(c).ok_or_else(|| error::invalid_column(c))?;
        targets.push((i, bind(e, &scope, env)?.bound));
    }
    let changed: Arc<[usize]> = targets.iter().map(|(i, _)| *i).collect::<Vec<_>>().into();
    let filter = match filter {
        Some(f) => Some(bind(f, &scope, env)?.bound),
        None => None,
    };
    let rows = matching_rows(table, filter.as_ref(), env)?;
    let mut changes = Vec::with_capacity(rows.len());
    for (old_key, row) in rows {
        let mut values = row.to_vec();
        for (i, e) in &targets {
            values[*i] = e.eval(&row, env)?;
        }
        let values = check_row(db, table, values, "UPDATE")?;
        let key = if table.primary_key.is_empty() {
            old_key.clone()
        } else {
            table.key_of(&values)
        };
        changes.push(RowChange::Update {
            old_key,
            key,
            row: Row::from(values),
            changed: changed.clone(),
        });
    }
    Ok(Planned {
        database: db.name.clone(),
        table_id: table.object_id,
        changes,
    })
}

/// Plans `DELETE [FROM] t [WHERE …]`.
pub fn plan_delete(env: &Env<'_>, name: &ObjectName, filter: Option<&Expr>) -> Result<Planned, SqlError> {
    let (db, table) = writable(env, name, "DELETE")?;
    let scope = table_scope(name.object(), table);
    let filter = match filter {
        Some(f) => Some(bind(f, &scope, env)?.bound),
        None => None,
    };
    let rows = matching_rows(table, filter.as_ref(), env)?;
    Ok(Planned {
        database: db.name.clone(),
        table_id: table.object_id,
        changes: rows.into_iter().map(|(key, _)| RowChange::Delete { key }).collect(),
    })
}

/// Looks a table up by a name given to the programmatic API (`dbo.Orders`,
/// `[dbo].[Orders]`, `Orders`).
pub fn table_by_text(db: &Database, name: &str) -> Result<i64, SqlError> {
    let parsed = super::parser::parse_object_name(name)?;
    db.table_id(parsed.schema().unwrap_or("dbo"), parsed.object())
        .ok_or_else(|| error::invalid_object(name))
}

/// Range and precision of declared types stored as a wider type (smallmoney,
/// smalldatetime).
fn narrow_declared(v: Value, type_name: &str) -> Result<Value, SqlError> {
    match (type_name, v) {
        ("smallmoney", Value::Money(m)) => {
            if i32::try_from(m).is_err() {
                return Err(error::arithmetic_overflow("smallmoney"));
            }
            Ok(Value::Money(m))
        }
        ("smalldatetime", Value::DateTime(d)) => {
            use chrono::{Duration, NaiveTime, Timelike};
            let minute = d
                .date()
                .and_time(NaiveTime::from_hms_opt(d.hour(), d.minute(), 0).unwrap_or(NaiveTime::MIN));
            // Rounded to the nearest minute.
            Ok(Value::DateTime(if d.second() >= 30 {
                minute + Duration::minutes(1)
            } else {
                minute
            }))
        }
        (_, v) => Ok(v),
    }
}
