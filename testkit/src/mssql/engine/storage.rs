//! Applying row changes to table storage with SQL Server's set semantics: a
//! statement's deletions (and the old keys of its updates) happen before its
//! insertions, so `UPDATE t SET Id = Id + 1` does not trip over itself, and every
//! insertion checks the primary key (Msg 2627).

use super::catalog::State;
use super::change_tracking::RowChange;
use super::error;
use super::value::Key;
use crate::mssql::types::{SqlError, Value};

/// Applies one statement's changes to `table_id` in `database`. Heap inserts get
/// their hidden row id here. `conflict` is the error for a vanished row (a
/// concurrent transaction deleted it), used when replaying at commit.
pub fn apply(
    state: &mut State,
    database: &str,
    table_id: i64,
    changes: &mut [RowChange],
    conflict: &dyn Fn() -> SqlError,
) -> Result<(), SqlError> {
    let db = state
        .database_mut(database)
        .ok_or_else(|| error::database_not_found(database))?;
    let schema_name = |db: &super::catalog::Database, id: i64| db.schema_name(id).unwrap_or("dbo").to_string();
    let schema = {
        let t = db
            .tables
            .get(&table_id)
            .ok_or_else(|| error::invalid_object(&table_id.to_string()))?;
        schema_name(db, t.schema_id)
    };
    let table = db
        .tables
        .get_mut(&table_id)
        .ok_or_else(|| error::invalid_object(&table_id.to_string()))?;
    let heap = table.primary_key.is_empty();
    // Phase 1: removals.
    for change in changes.iter() {
        match change {
            RowChange::Delete { key } | RowChange::Update { old_key: key, .. } => {
                if table.rows.remove(key).is_none() {
                    return Err(conflict());
                }
            }
            RowChange::Insert { .. } => {}
        }
    }
    // Phase 2: insertions.
    for change in changes.iter_mut() {
        let (key, row) = match change {
            RowChange::Insert { key, row } => {
                if heap {
                    *key = Key::new(vec![Value::Int(table.next_row_id)]);
                    table.next_row_id += 1;
                }
                (key.clone(), row.clone())
            }
            RowChange::Update { key, row, .. } => (key.clone(), row.clone()),
            RowChange::Delete { .. } => continue,
        };
        if table.rows.contains_key(&key) {
            return Err(error::duplicate_key(
                table.pk_name.as_deref().unwrap_or("PK"),
                &format!("{schema}.{}", table.name),
                &key.display(),
            ));
        }
        table.rows.insert(key, row);
    }
    Ok(())
}
