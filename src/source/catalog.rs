//! What the database says a table is: its identity, columns (with their JSON
//! encoding and declared type) and primary key. Read by [`super::check`] at start; the
//! SQL text in [`super::sql`] is built from it.

use super::rows::ValueKind;

/// Server and database, for the envelope's `source`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceIdentity {
    /// `@@SERVERNAME`.
    pub server: String,
    /// `DB_NAME()`.
    pub database: String,
    /// The recovery fork the database is on ([`super::sql::INCARNATION`]), or `None`
    /// where it cannot be read (Azure SQL Database has no such view; a login denied
    /// VIEW ANY DATABASE sees no row): restores are then caught only when the version
    /// goes below a checkpoint.
    pub incarnation: Option<String>,
}

/// A column the sidecar reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnInfo {
    /// `sys.columns.column_id`, the argument of `CHANGE_TRACKING_IS_COLUMN_IN_MASK`.
    pub id: i32,
    /// Column name as the catalog spells it.
    pub name: String,
    /// `[name]`.
    pub quoted: String,
    /// How its values are written as JSON.
    pub kind: ValueKind,
    /// The declared type as T-SQL spells it (`varchar(40)`, `decimal(18,2)`), so a value
    /// read from the column can be bound back with the same type: a `String` parameter
    /// goes as nvarchar, and comparing a varchar column with nvarchar follows Unicode
    /// rules while `ORDER BY` of the column follows its SQL collation, which disagree on
    /// `-` and `'` (Microsoft KB 322112). Keyset predicates cast to this type.
    pub sql_type: String,
}

/// The T-SQL spelling of a column's type from `sys.columns`/`sys.types`: lengths in
/// characters (`max_length` is in bytes, -1 for `max`), precision and scale where the
/// type takes them ("sys.columns (Transact-SQL)").
pub fn declared_type(type_name: &str, max_length: i16, precision: u8, scale: u8) -> String {
    let name = type_name.to_ascii_lowercase();
    let length = |per_char: i16| {
        if max_length < 0 {
            "max".to_string()
        } else {
            (max_length / per_char).max(1).to_string()
        }
    };
    match name.as_str() {
        "char" | "varchar" | "binary" | "varbinary" => format!("{name}({})", length(1)),
        "nchar" | "nvarchar" => format!("{name}({})", length(2)),
        "decimal" | "numeric" => format!("{name}({precision},{scale})"),
        "time" | "datetime2" | "datetimeoffset" => format!("{name}({scale})"),
        _ => name,
    }
}

/// A table as the database describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableInfo {
    /// `schema.table` as configured: log field, metric label, checkpoint key.
    pub name: String,
    /// Schema name.
    pub schema: String,
    /// Table name.
    pub table: String,
    /// `[schema].[table]`.
    pub quoted: String,
    /// `OBJECT_ID` of the table.
    pub object_id: i32,
    /// Published columns in column order (all, or the configured subset).
    pub columns: Vec<ColumnInfo>,
    /// Primary key columns in key order.
    pub key: Vec<ColumnInfo>,
    /// Whether `SYS_CHANGE_COLUMNS` is maintained (`TRACK_COLUMNS_UPDATED = ON`).
    pub track_columns_updated: bool,
    /// `sys.tables.modify_date` when the columns were read: ALTER TABLE and renaming a
    /// column move it, so the tick's discover query tells a schema change by it.
    pub modified: Option<chrono::NaiveDateTime>,
}

impl TableInfo {
    /// The envelope's `schema` object: `{"columns":[{"name":…,"type":…},…],"key":[…]}`,
    /// the published columns with their declared types and the key columns in order.
    pub fn schema_json(&self) -> String {
        let columns: Vec<serde_json::Value> = self
            .columns
            .iter()
            .map(|c| serde_json::json!({"name": c.name, "type": c.sql_type}))
            .collect();
        let key: Vec<&str> = self.key.iter().map(|k| k.name.as_str()).collect();
        serde_json::json!({"columns": columns, "key": key}).to_string()
    }

    /// Published non-key columns: the ones whose change is reported in `changed_columns`
    /// (a key column cannot change in an update: that is a delete plus an insert).
    pub fn mask_columns(&self) -> impl Iterator<Item = &ColumnInfo> {
        self.columns.iter().filter(|c| !self.key.iter().any(|k| k.id == c.id))
    }
}
