//! Every statement the sidecar sends, in one place. Identifiers come from the validated
//! config and the catalog and are always bracket-quoted; values are always parameters
//! (`@P1`, … as tiberius binds them). `docs/sql-surface.md` lists the same statements
//! for the SQL Server stand-in.

use std::fmt::Write;

use super::catalog::{ColumnInfo, TableInfo};
use super::rows::ValueKind;

/// `[name]` with `]` doubled, T-SQL's quoting rule.
pub fn quote(name: &str) -> String {
    format!("[{}]", name.replace(']', "]]"))
}

/// The shared probe: one scalar per tick, whatever the number of tables.
pub const PROBE: &str = "SELECT CHANGE_TRACKING_CURRENT_VERSION() AS current_version";

/// Opens the tick's SNAPSHOT transaction and reads its upper bound inside it, so every
/// read of the tick sees the database as of that version. Sent as a plain SQL batch
/// ([`super::batch_scalar_i64`]), never through `sp_executesql`: a module reverts `SET
/// TRANSACTION ISOLATION LEVEL` when it returns and raises error 266 when it ends with a
/// different `@@TRANCOUNT` than it began with ("SET TRANSACTION ISOLATION LEVEL
/// (Transact-SQL)", Remarks; "sp_executesql (Transact-SQL)").
pub const BEGIN_SNAPSHOT: &str = "SET TRANSACTION ISOLATION LEVEL SNAPSHOT; BEGIN TRANSACTION; \
     SELECT CHANGE_TRACKING_CURRENT_VERSION() AS current_version";

/// Ends the tick's transaction (it only read). Also a plain batch, for the same reason.
pub const COMMIT: &str = "COMMIT TRANSACTION";

/// Server and database names, for the envelope's `source`.
pub const IDENTITY: &str = "SELECT @@SERVERNAME AS server_name, DB_NAME() AS database_name, \
     CHANGE_TRACKING_CURRENT_VERSION() AS current_version";

/// The database's incarnation: the recovery fork it is on. A restore that loses data,
/// a forced failover and bringing a mirror or log-shipping copy online each start a new
/// fork; a planned failover does not ("sys.database_recovery_status (Transact-SQL)";
/// "Recovery Paths"; see docs/sql-surface.md, Database incarnation). Stored with each
/// checkpoint, it tells a restored database (whose versions were reused) from the one
/// the checkpoint was taken on, which "Change Tracking and Data Restore" says a version
/// check alone cannot.
pub const INCARNATION: &str = "SELECT recovery_fork_guid FROM sys.database_recovery_status WHERE database_id = DB_ID()";

/// Database-level prerequisites.
pub const DATABASE_SETTINGS: &str = "SELECT d.snapshot_isolation_state, ctd.retention_period, \
     ctd.retention_period_units_desc, ctd.is_auto_cleanup_on \
     FROM sys.databases AS d \
     LEFT OUTER JOIN sys.change_tracking_databases AS ctd ON ctd.database_id = d.database_id \
     WHERE d.database_id = DB_ID()";

/// Object id and the login's permissions on a table (`@P1` = quoted name).
pub const TABLE_ACCESS: &str = "SELECT OBJECT_ID(@P1) AS object_id, \
     HAS_PERMS_BY_NAME(@P1, N'OBJECT', N'SELECT') AS can_select, \
     HAS_PERMS_BY_NAME(@P1, N'OBJECT', N'VIEW CHANGE TRACKING') AS can_view_change_tracking";

/// Change tracking state of a table (`@P1` = object id).
pub const TABLE_TRACKING: &str = "SELECT ctt.is_track_columns_updated_on, ctt.min_valid_version, ctt.begin_version \
     FROM sys.change_tracking_tables AS ctt WHERE ctt.object_id = @P1";

/// Columns of a table (`@P1` = object id). `sys.types` is joined on the column's
/// `system_type_id`, so an alias type (`CREATE TYPE dbo.Code FROM varchar(12)`) reports
/// its base type's name ("sys.types (Transact-SQL)": for a user-defined type
/// `user_type_id` is its own id, `system_type_id` the base's), along with the base's
/// length, precision and scale, which `sys.columns` already carries.
pub const TABLE_COLUMNS: &str =
    "SELECT c.column_id, c.name, t.name AS type_name, c.max_length, c.precision, c.scale, c.is_nullable \
     FROM sys.columns AS c \
     JOIN sys.types AS t ON t.user_type_id = c.system_type_id \
     WHERE c.object_id = @P1 ORDER BY c.column_id";

/// When the table's definition last changed (`@P1` = object id): "Date the object was
/// last modified by using an ALTER statement" ("sys.objects (Transact-SQL)").
pub const TABLE_MODIFIED: &str = "SELECT modify_date FROM sys.tables WHERE object_id = @P1";

/// Primary key columns in key order (`@P1` = object id).
pub const TABLE_PRIMARY_KEY: &str = "SELECT ic.key_ordinal, c.name \
     FROM sys.indexes AS i \
     JOIN sys.index_columns AS ic ON ic.object_id = i.object_id AND ic.index_id = i.index_id \
     JOIN sys.columns AS c ON c.object_id = ic.object_id AND c.column_id = ic.column_id \
     WHERE i.object_id = @P1 AND i.is_primary_key = 1 \
     ORDER BY ic.key_ordinal";

/// Which tables have changes up to the tick's upper bound, with each table's minimum
/// valid version and `sys.tables.modify_date` (an ALTER TABLE or a renamed column moves
/// it: the schema changed; NULL: the table is gone), as one UNION ALL result, so
/// noticing a schema change costs no query of its own. `@P1` = upper bound; `@P{i+2}` = the
/// checkpoint of `tables[i]`. The CASE guards `CHANGETABLE` against an expired
/// checkpoint, which the caller turns into a resync.
pub fn discover(tables: &[(usize, &TableInfo)]) -> String {
    let mut sql = String::new();
    for (i, (index, t)) in tables.iter().enumerate() {
        if i > 0 {
            sql.push_str(" UNION ALL ");
        }
        let cp = format!("@P{}", i + 2);
        let min_valid = format!(
            "CHANGE_TRACKING_MIN_VALID_VERSION(OBJECT_ID(N'{}'))",
            t.quoted.replace('\'', "''")
        );
        let _ = write!(
            sql,
            "SELECT {index} AS table_index, {min_valid} AS min_valid_version, \
             CASE WHEN {cp} >= {min_valid} AND EXISTS (SELECT 1 FROM CHANGETABLE(CHANGES {q}, {cp}) AS CT \
             WHERE CT.SYS_CHANGE_VERSION <= @P1) THEN 1 ELSE 0 END AS has_changes, \
             (SELECT modify_date FROM sys.tables WHERE object_id = OBJECT_ID(N'{name}')) AS modify_date",
            q = t.quoted,
            name = t.quoted.replace('\'', "''"),
        );
    }
    sql
}

/// Each table's minimum valid version alone, without touching `CHANGETABLE` (which
/// fails the whole statement with error 22105 if any one table lost its tracking).
pub fn min_valid_versions(tables: &[(usize, &TableInfo)]) -> String {
    let parts: Vec<String> = tables
        .iter()
        .map(|(index, t)| {
            format!(
                "SELECT {index} AS table_index, CHANGE_TRACKING_MIN_VALID_VERSION(OBJECT_ID(N'{}')) AS min_valid_version",
                t.quoted.replace('\'', "''")
            )
        })
        .collect();
    parts.join(" UNION ALL ")
}

/// How a published column is selected, under the alias `name`. money would reach
/// tiberius as a float and lose digits, so it is cast to the decimal that holds it exactly.
fn select_expr(alias: &str, c: &ColumnInfo, name: &str) -> String {
    let col = format!("{alias}.{}", c.quoted);
    let expr = match c.kind {
        ValueKind::Money => format!("CAST({col} AS decimal(19,4))"),
        ValueKind::SmallMoney => format!("CAST({col} AS decimal(10,4))"),
        _ => col,
    };
    format!("{expr} AS {}", quote(name))
}

/// Columns whose in-mask flags fit one `int` mask column (bits 0..=30).
pub const MASK_BITS: usize = 31;

/// Which changes one [`changes`] statement reads. Parameters, in order: `@P1` the row
/// limit (`TOP`), `@P2` the `last_sync_version` of CHANGETABLE, `@P3` the highest
/// version to read, then with `after_key` `@P4` the version the key applies to followed
/// by that key's columns, then with `upto_key` the key columns at which version `@P3`
/// ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChangesRange {
    /// Continue inside version `@P4` after a key (the stream stopped mid-version).
    pub after_key: bool,
    /// End inside version `@P3` at a key, inclusive (the stored end of a part).
    pub upto_key: bool,
}

/// Column layout of [`changes`]: version, creation version, operation, context, then
/// (with column tracking) the updated-columns flags of the non-key columns packed as
/// bits into `int` columns of [`MASK_BITS`] each (NULL when `SYS_CHANGE_COLUMNS` is NULL:
/// inserts, deletes, or every column changed), then the key from CHANGETABLE (present for
/// deletes), then the row from the LEFT JOIN. One packed column instead of one flag
/// column per table column keeps wide tables' rows small.
///
/// Ordered by version, then key: the order of [`crate::envelope::Position`]'s parts.
/// `TOP` bounds every statement, so a backlog of millions of changes is read in
/// statements that each finish well within `source.command_timeout_ms`, continuing by
/// keyset from where the last one stopped.
pub fn changes(t: &TableInfo, range: ChangesRange) -> String {
    let mut sql = String::from(
        "SELECT TOP (@P1) CT.SYS_CHANGE_VERSION, CT.SYS_CHANGE_CREATION_VERSION, CT.SYS_CHANGE_OPERATION, CT.SYS_CHANGE_CONTEXT",
    );
    if t.track_columns_updated {
        let masked: Vec<_> = t.mask_columns().collect();
        for (chunk_index, chunk) in masked.chunks(MASK_BITS).enumerate() {
            let terms: Vec<String> = chunk
                .iter()
                .enumerate()
                .map(|(bit, c)| {
                    format!(
                        "CAST(CHANGE_TRACKING_IS_COLUMN_IN_MASK({}, CT.SYS_CHANGE_COLUMNS) AS int) * {}",
                        c.id,
                        1u32 << bit
                    )
                })
                .collect();
            let _ = write!(
                sql,
                ", CASE WHEN CT.SYS_CHANGE_COLUMNS IS NULL THEN NULL ELSE {} END AS [__changed_{chunk_index}]",
                terms.join(" + ")
            );
        }
    }
    for k in &t.key {
        let _ = write!(sql, ", {}", select_expr("CT", k, &format!("__key_{}", k.name)));
    }
    for c in &t.columns {
        let _ = write!(sql, ", {}", select_expr("T", c, &c.name));
    }
    let on: Vec<String> = t.key.iter().map(|k| format!("T.{q} = CT.{q}", q = k.quoted)).collect();
    let order: Vec<String> = t.key.iter().map(|k| format!("CT.{}", k.quoted)).collect();
    let _ = write!(
        sql,
        " FROM CHANGETABLE(CHANGES {q}, @P2) AS CT LEFT OUTER JOIN {q} AS T ON {on} WHERE CT.SYS_CHANGE_VERSION <= @P3",
        q = t.quoted,
        on = on.join(" AND "),
    );
    let mut next = 4;
    if range.after_key {
        let _ = write!(
            sql,
            " AND (CT.SYS_CHANGE_VERSION > @P4 OR (CT.SYS_CHANGE_VERSION = @P4 AND {}))",
            key_after("CT", &t.key, 5)
        );
        next = 5 + t.key.len();
    }
    if range.upto_key {
        let _ = write!(
            sql,
            " AND (CT.SYS_CHANGE_VERSION < @P3 OR NOT {})",
            key_after("CT", &t.key, next)
        );
    }
    let _ = write!(sql, " ORDER BY CT.SYS_CHANGE_VERSION, {}", order.join(", "));
    sql
}

/// `(k1 > a) OR (k1 = a AND k2 > b) …`: the rows after a key in key order, over
/// composite keys, with the key's values as parameters from `@P{first}` on, each cast
/// to its column's declared type.
fn key_after(alias: &str, key: &[ColumnInfo], first: usize) -> String {
    let mut ors = Vec::with_capacity(key.len());
    for i in 0..key.len() {
        let mut ands: Vec<String> = key[..i]
            .iter()
            .enumerate()
            .map(|(j, k)| format!("{alias}.{} = {}", k.quoted, typed_param(k, first + j)))
            .collect();
        ands.push(format!(
            "{alias}.{} > {}",
            key[i].quoted,
            typed_param(&key[i], first + i)
        ));
        ors.push(format!("({})", ands.join(" AND ")));
    }
    format!("({})", ors.join(" OR "))
}

/// `CAST(@Pn AS <declared type>)`: a parameter compared with `column` as the column's
/// own type ("Data type precedence (Transact-SQL)": without it nvarchar wins).
fn typed_param(column: &ColumnInfo, n: usize) -> String {
    format!("CAST(@P{n} AS {})", column.sql_type)
}

/// Index of the first key column in a [`changes`] row.
pub fn changes_key_offset(t: &TableInfo) -> usize {
    4 + if t.track_columns_updated {
        t.mask_columns().count().div_ceil(MASK_BITS)
    } else {
        0
    }
}

/// One keyset-paginated snapshot chunk: `@P1` = chunk size; after the first chunk,
/// `@P2…` = the last key read, compared lexicographically over composite keys, each
/// cast to its column's declared type so that `>` and `ORDER BY` follow the same
/// collation and the predicate stays sargable (a varchar key compared with the nvarchar
/// a `String` parameter is sent as would be compared under Unicode rules and skip or
/// repeat rows around `-` and `'`). Columns: the key, then the published columns.
pub fn snapshot_chunk(t: &TableInfo, first: bool) -> String {
    let mut cols: Vec<String> = t.key.iter().map(|k| select_expr("T", k, &k.name)).collect();
    cols.extend(t.columns.iter().map(|c| select_expr("T", c, &c.name)));
    let mut sql = format!("SELECT TOP (@P1) {} FROM {} AS T", cols.join(", "), t.quoted);
    if !first {
        let _ = write!(sql, " WHERE {}", key_after("T", &t.key, 2));
    }
    let order: Vec<String> = t.key.iter().map(|k| format!("T.{}", k.quoted)).collect();
    let _ = write!(sql, " ORDER BY {}", order.join(", "));
    sql
}
