//! Definition and configuration statements: databases, schemas, tables, change
//! tracking at database and table level, snapshot isolation, logins, users and
//! grants, TRUNCATE. Each checks what SQL Server checks and fails with its error.

use std::sync::Arc;

use super::ast::{
    AddedColumn, ColumnDef, DatabaseOption, DeclaredType, DropItem, Expr, ObjectName, PermissionAction, PrimaryKeyDef,
    RetentionUnit, SchemaChange, Securable,
};
use super::catalog::{
    ci, AliasType, ColumnDefault, ColumnMeta, Database, DatabaseTracking, Grant, GrantTarget, Login, State, Table, User,
};
use super::change_tracking::TableTracking;
use super::datatype;
use super::error;
use super::value::{coerce, Row, Target};
use crate::mssql::types::{SqlError, SqlType, Value};

/// Who runs the statement, and where.
pub struct Who<'a> {
    pub login: &'a str,
    pub sysadmin: bool,
    pub database: &'a str,
    pub now_ms: u64,
}

fn owner(state: &State, who: &Who<'_>, db: &str) -> bool {
    who.sysadmin
        || state
            .database(db)
            .and_then(|d| d.user_for_login(who.login))
            .is_some_and(|u| u.principal_id == 1)
}

fn db_mut<'s>(state: &'s mut State, name: &str) -> Result<&'s mut Database, SqlError> {
    state.database_mut(name).ok_or_else(|| error::database_not_found(name))
}

/// `CREATE DATABASE`.
pub fn create_database(state: &mut State, who: &Who<'_>, name: &str) -> Result<(), SqlError> {
    if !who.sysadmin {
        return Err(error::database_permission_denied("CREATE DATABASE", "master"));
    }
    if state.database(name).is_some() {
        return Err(error::database_exists(name));
    }
    let id = state.next_database_id;
    state.next_database_id += 1;
    state.databases.insert(ci(name), Database::new(id, name, who.now_ms));
    Ok(())
}

/// `DROP DATABASE`.
pub fn drop_database(state: &mut State, who: &Who<'_>, name: &str) -> Result<(), SqlError> {
    if !who.sysadmin || state.database(name).is_none() || ci(name) == "master" {
        return Err(error::cannot_drop("database", name));
    }
    state.databases.remove(&ci(name));
    Ok(())
}

/// `CREATE SCHEMA`.
pub fn create_schema(state: &mut State, who: &Who<'_>, name: &str) -> Result<(), SqlError> {
    if !owner(state, who, who.database) {
        return Err(error::database_permission_denied("CREATE SCHEMA", who.database));
    }
    let db = db_mut(state, who.database)?;
    if db.schema(name).is_some() {
        return Err(error::object_exists(name));
    }
    let id = db.allocate_small_id();
    db.schemas.insert(
        ci(name),
        super::catalog::Schema {
            schema_id: id,
            name: name.into(),
        },
    );
    Ok(())
}

fn target_db<'n>(who: &'n Who<'_>, name: &'n ObjectName) -> &'n str {
    name.database().unwrap_or(who.database)
}

/// `CREATE TABLE`.
pub fn create_table(
    state: &mut State,
    who: &Who<'_>,
    name: &ObjectName,
    columns: &[ColumnDef],
    primary_key: Option<&PrimaryKeyDef>,
) -> Result<(), SqlError> {
    let dbname = target_db(who, name).to_string();
    if state.database(&dbname).is_none() {
        return Err(error::database_not_found(&dbname));
    }
    if !owner(state, who, &dbname) {
        return Err(error::database_permission_denied("CREATE TABLE", &dbname));
    }
    let db = db_mut(state, &dbname)?;
    let schema_name = name.schema().unwrap_or("dbo");
    let schema_id = db
        .schema(schema_name)
        .ok_or_else(|| error::schema_not_found(schema_name))?
        .schema_id;
    if db.table_id(schema_name, name.object()).is_some() {
        return Err(error::object_exists(name.object()));
    }
    let mut metas: Vec<ColumnMeta> = Vec::new();
    for (k, c) in columns.iter().enumerate() {
        if metas.iter().any(|m| ci(&m.name) == ci(&c.name)) {
            return Err(error::duplicate_column(&c.name, name.object()));
        }
        let (ty, type_name, user_type_id, type_nullable) = resolve_column_type(db, &c.ty, k + 1)?;
        metas.push(ColumnMeta {
            name: c.name.clone(),
            ty,
            type_name,
            // A column without NULL / NOT NULL takes its alias type's nullability
            // ("The NULL or NOT NULL assignment for an alias data type can be
            // overridden during the CREATE TABLE statement", CREATE TABLE).
            nullable: c.nullable.unwrap_or(type_nullable),
            user_type_id,
            column_id: k as i64 + 1,
            default: None,
        });
    }
    let (pk_cols, pk_name): (Vec<String>, Option<String>) = match primary_key {
        Some(pk) => (pk.columns.clone(), pk.name.clone()),
        None => match columns.iter().find(|c| c.primary_key) {
            Some(c) => (vec![c.name.clone()], c.pk_constraint.clone()),
            None => (vec![], None),
        },
    };
    let mut pk = Vec::new();
    for c in &pk_cols {
        let i = metas.iter().position(|m| ci(&m.name) == ci(c)).ok_or_else(|| {
            SqlError::new(
                1911,
                16,
                format!("Column name '{c}' does not exist in the target table or view."),
            )
        })?;
        if columns[i].nullable == Some(true) {
            return Err(error::nullable_primary_key(&metas[i].name, name.object()));
        }
        metas[i].nullable = false;
        pk.push(i);
    }
    let object_id = db.allocate_object_id();
    let pk_name = if pk.is_empty() {
        None
    } else {
        Some(pk_name.unwrap_or_else(|| {
            let short: String = name.object().chars().take(8).collect();
            format!(
                "PK__{short}__{:016X}",
                (object_id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
            )
        }))
    };
    if let Some(n) = &pk_name {
        if db.tables.values().any(|t| t.pk_name.as_deref().map(ci) == Some(ci(n))) {
            return Err(error::object_exists(n));
        }
    }
    db.tables.insert(
        object_id,
        Table {
            object_id,
            schema_id,
            name: name.object().to_string(),
            columns: Arc::new(metas),
            primary_key: Arc::new(pk),
            pk_name,
            rows: imbl::OrdMap::new(),
            next_row_id: 1,
            tracking: None,
            created_ms: who.now_ms,
            modified_ms: who.now_ms,
            next_column_id: columns.len() as i64 + 1,
        },
    );
    Ok(())
}

/// A column's declared type as (base type, base name as declared, alias
/// user_type_id, default nullability). An unqualified name is a system type first,
/// then an alias type in the user's default schema (`dbo` here), as CREATE TABLE
/// resolves it.
fn resolve_column_type(
    db: &Database,
    declared: &DeclaredType,
    ordinal: usize,
) -> Result<(SqlType, String, Option<i64>, bool), SqlError> {
    match declared {
        DeclaredType::System { ty, name } => {
            let (user_type_id, nullable) = match datatype::system_alias(name) {
                Some((id, nullable)) => (Some(id), nullable),
                None => (None, true),
            };
            Ok((ty.clone(), name.clone(), user_type_id, nullable))
        }
        DeclaredType::Alias { name, with_length } => {
            let schema = name.schema().unwrap_or("dbo");
            let Some(alias) = db.alias_type(schema, name.object()) else {
                return Err(error::unknown_type(&ordinal.to_string(), &name.display()));
            };
            if *with_length {
                let schema_name = db.schema_name(alias.schema_id).unwrap_or("dbo");
                return Err(error::alias_type_with_length(
                    ordinal,
                    &format!("{schema_name}.{}", alias.name),
                ));
            }
            Ok((
                alias.base.clone(),
                alias.base_name.clone(),
                Some(alias.user_type_id),
                alias.nullable,
            ))
        }
    }
}

/// `CREATE TYPE [schema.]name FROM base_type [NULL | NOT NULL]`: a new row of
/// `sys.types` with its own user_type_id (Msg 219 when the schema has the name).
pub fn create_type(
    state: &mut State,
    who: &Who<'_>,
    name: &ObjectName,
    base: &SqlType,
    base_name: &str,
    nullable: bool,
) -> Result<(), SqlError> {
    if !owner(state, who, who.database) {
        return Err(error::database_permission_denied("CREATE TYPE", who.database));
    }
    let db = db_mut(state, who.database)?;
    let schema_name = name.schema().unwrap_or("dbo");
    let schema = db
        .schema(schema_name)
        .ok_or_else(|| error::schema_not_found(schema_name))?;
    let (schema_id, schema_name) = (schema.schema_id, schema.name.clone());
    if db.alias_type(&schema_name, name.object()).is_some() {
        return Err(error::type_exists(&format!("{schema_name}.{}", name.object())));
    }
    let user_type_id = db.allocate_user_type_id();
    db.types.insert(
        user_type_id,
        AliasType {
            user_type_id,
            schema_id,
            name: name.object().to_string(),
            base: base.clone(),
            base_name: base_name.to_string(),
            nullable,
        },
    );
    Ok(())
}

fn find_table_id(state: &State, who: &Who<'_>, name: &ObjectName) -> Option<(String, i64)> {
    let dbname = target_db(who, name);
    let db = state.database(dbname)?;
    let id = db.table_id(name.schema().unwrap_or("dbo"), name.object())?;
    Some((db.name.clone(), id))
}

/// `DROP TABLE [IF EXISTS]`.
pub fn drop_table(state: &mut State, who: &Who<'_>, name: &ObjectName, if_exists: bool) -> Result<(), SqlError> {
    let Some((dbname, id)) = find_table_id(state, who, name) else {
        if if_exists {
            return Ok(());
        }
        return Err(error::cannot_drop("table", &name.display()));
    };
    if !owner(state, who, &dbname) {
        return Err(error::cannot_drop("table", &name.display()));
    }
    let db = db_mut(state, &dbname)?;
    db.tables.remove(&id);
    db.grants.retain(|g| g.target != GrantTarget::Object(id));
    Ok(())
}

/// `TRUNCATE TABLE`: removes every row without tracking them, and resets the
/// table's change tracking as if it had just been enabled. On a tracked table the
/// truncation commits as a transaction of its own, so it takes a new version and the
/// minimum valid version moves to it: a client that synced up to the previous version
/// sees its checkpoint expire instead of silently missing the truncation.
pub fn truncate(state: &mut State, who: &Who<'_>, name: &ObjectName) -> Result<(), SqlError> {
    let Some((dbname, id)) = find_table_id(state, who, name) else {
        return Err(error::truncate_missing(&name.display()));
    };
    if !owner(state, who, &dbname) {
        return Err(error::truncate_missing(&name.display()));
    }
    let db = db_mut(state, &dbname)?;
    let tracked = db.tables.get(&id).is_some_and(|t| t.tracking.is_some());
    if tracked && db.tracking.is_some() {
        db.ct_version += 1;
        db.version_times.insert(db.ct_version, who.now_ms);
    }
    let current = db.ct_version;
    if let Some(t) = db.tables.get_mut(&id) {
        t.rows = imbl::OrdMap::new();
        if let Some(tr) = &t.tracking {
            t.tracking = Some(TableTracking::new(tr.track_columns_updated, current));
        }
    }
    Ok(())
}

/// `ALTER TABLE … ENABLE|DISABLE CHANGE_TRACKING`.
pub fn alter_table_tracking(
    state: &mut State,
    who: &Who<'_>,
    name: &ObjectName,
    enable: bool,
    track_columns: bool,
) -> Result<(), SqlError> {
    let Some((dbname, id)) = find_table_id(state, who, name) else {
        return Err(error::alter_missing(&name.display()));
    };
    if !owner(state, who, &dbname) {
        return Err(error::alter_missing(&name.display()));
    }
    let db = db_mut(state, &dbname)?;
    let db_tracking = db.tracking.is_some();
    let current = db.ct_version;
    let db_display = db.name.clone();
    let schema = db
        .schema_name(db.tables.get(&id).map_or(1, |t| t.schema_id))
        .unwrap_or("dbo")
        .to_string();
    let Some(table) = db.tables.get_mut(&id) else {
        return Err(error::alter_missing(&name.display()));
    };
    let display = format!("{schema}.{}", table.name);
    if enable {
        if !db_tracking {
            return Err(error::change_tracking_not_enabled_on_database(&db_display, &display));
        }
        if table.tracking.is_some() {
            return Err(error::change_tracking_already_enabled(&display));
        }
        if table.primary_key.is_empty() {
            return Err(error::change_tracking_needs_primary_key(&display));
        }
        table.tracking = Some(TableTracking::new(track_columns, current));
    } else {
        if table.tracking.is_none() {
            return Err(error::change_tracking_not_enabled_for_disable(&display));
        }
        table.tracking = None;
    }
    // An ALTER statement: modify_date moves (sys.objects (Transact-SQL)).
    table.modified_ms = who.now_ms;
    Ok(())
}

/// A refusal SQL Server reports as several messages: `before` go out ahead of
/// `error` (the 5074s before 4922, 3728 or 3735 before 3727, 2714 before 1750).
#[derive(Debug)]
pub struct Refusal {
    pub before: Vec<SqlError>,
    pub error: SqlError,
}

impl From<SqlError> for Refusal {
    fn from(error: SqlError) -> Self {
        Self {
            before: Vec::new(),
            error,
        }
    }
}

/// Whether `who` may alter `table`: the database's owner, or a user granted ALTER or
/// CONTROL on the table, its schema or the database and not denied it ("Requires
/// ALTER permission on the table", ALTER TABLE (Transact-SQL), Permissions; sp_rename
/// (Transact-SQL), Permissions).
fn may_alter(state: &State, who: &Who<'_>, dbname: &str, table: &Table) -> bool {
    if owner(state, who, dbname) {
        return true;
    }
    let Some(db) = state.database(dbname) else {
        return false;
    };
    let Some(user) = db.user_for_login(who.login) else {
        return false;
    };
    let mut granted = false;
    for g in db.grants.iter().filter(|g| {
        g.principal_id == user.principal_id
            && (g.permission == "ALTER" || g.permission == "CONTROL")
            && match g.target {
                GrantTarget::Object(id) => id == table.object_id,
                GrantTarget::Schema(id) => id == table.schema_id,
                GrantTarget::Database => true,
            }
    }) {
        if g.deny {
            return false;
        }
        granted = true;
    }
    granted
}

/// `ALTER TABLE t ADD column_definition [, …]` and `ALTER TABLE t DROP { COLUMN c |
/// [CONSTRAINT] n } [, …]` ("ALTER TABLE (Transact-SQL)",
/// <https://learn.microsoft.com/en-us/sql/t-sql/statements/alter-table-transact-sql>),
/// all or nothing, moving the table's modify_date. On a change-tracked table neither
/// is tracked and tracking carries on: "If a new column is added to the change
/// tracked table, the addition of the column is not tracked. Only the updates and
/// changes that are made to the new column are tracked", and a non-key column can be
/// dropped, though "the dropped column might still be returned as part of the change
/// tracking information" ("Manage change tracking (SQL Server)", Understand change
/// tracking overhead,
/// <https://learn.microsoft.com/en-us/sql/relational-databases/track-changes/manage-change-tracking-sql-server>):
/// masks recorded before the drop keep its column_id.
pub fn alter_table_schema(
    state: &mut State,
    who: &Who<'_>,
    name: &ObjectName,
    change: &SchemaChange,
) -> Result<(), Refusal> {
    let Some((dbname, id)) = find_table_id(state, who, name) else {
        return Err(error::alter_missing(&name.display()).into());
    };
    let allowed = state
        .database(&dbname)
        .and_then(|d| d.tables.get(&id))
        .is_some_and(|t| may_alter(state, who, &dbname, t));
    if !allowed {
        return Err(error::alter_missing(&name.display()).into());
    }
    let db = db_mut(state, &dbname)?;
    match change {
        SchemaChange::Add(columns) => {
            for c in columns {
                add_column(db, id, c)?;
            }
        }
        SchemaChange::Drop(items) => {
            for item in items {
                if item.column {
                    drop_column(db, id, item)?;
                } else {
                    drop_constraint(db, id, item)?;
                }
            }
        }
    }
    if let Some(t) = db.tables.get_mut(&id) {
        t.modified_ms = who.now_ms;
    }
    Ok(())
}

fn table_of(db: &Database, id: i64) -> Result<&Table, SqlError> {
    db.tables.get(&id).ok_or_else(|| error::invalid_object(&id.to_string()))
}

/// A DEFAULT's constant_expression as a value: a literal, possibly negated or in
/// parentheses ("ALTER TABLE column_definition (Transact-SQL)": "constant_expression
/// Is a literal value, a NULL, or a system function used as the default column
/// value"; system functions are not modelled).
fn constant(e: &Expr) -> Option<Value> {
    match e {
        Expr::Literal(v) => Some(v.clone()),
        Expr::StringLiteral { text, .. } => Some(Value::String(text.clone())),
        Expr::Neg(inner) => match constant(inner)? {
            Value::Int(i) => Some(Value::Int(-i)),
            Value::Decimal { value, scale } => Some(Value::Decimal { value: -value, scale }),
            Value::Float(f) => Some(Value::Float(-f)),
            Value::Money(m) => Some(Value::Money(-m)),
            _ => None,
        },
        _ => None,
    }
}

/// Whether a schema-scoped object (table, PRIMARY KEY or DEFAULT constraint) of this
/// database already has the name.
fn object_name_taken(db: &Database, name: &str) -> bool {
    let n = ci(name);
    db.tables.values().any(|t| {
        ci(&t.name) == n
            || t.pk_name.as_deref().map(ci).as_deref() == Some(n.as_str())
            || t.columns
                .iter()
                .any(|c| c.default.as_ref().is_some_and(|d| ci(&d.name) == n))
    })
}

/// One column of `ALTER TABLE … ADD`: the next column_id (a dropped column's id is
/// not reused), and a value for every existing row — its DEFAULT when the column is
/// NOT NULL or `WITH VALUES` is given, NULL otherwise ("WITH VALUES … If the added
/// column allows null values and WITH VALUES is specified, the default value is stored
/// in the new column, added to existing rows", ALTER TABLE column_definition
/// (Transact-SQL),
/// <https://learn.microsoft.com/en-us/sql/t-sql/statements/alter-table-column-definition-transact-sql>).
/// A NOT NULL column without a default cannot be added to a table with rows (Msg
/// 4901: "ALTER TABLE only allows columns to be added that can contain nulls, or have
/// a DEFAULT definition specified, … or alternatively … the table must be empty").
fn add_column(db: &mut Database, id: i64, added: &AddedColumn) -> Result<(), Refusal> {
    let table = table_of(db, id)?;
    let c = &added.column;
    let schema = db.schema_name(table.schema_id).unwrap_or("dbo");
    if table.column_index(&c.name).is_some() {
        return Err(error::duplicate_added_column(&c.name, &format!("{schema}.{}", table.name)).into());
    }
    let (ty, type_name, user_type_id, type_nullable) = resolve_column_type(db, &c.ty, table.columns.len() + 1)?;
    let nullable = c.nullable.unwrap_or(type_nullable);
    let mut existing = Value::Null;
    let default = match &added.default {
        None => None,
        Some(d) => {
            let value = constant(&d.value).ok_or_else(|| error::not_supported("DEFAULT other than a constant"))?;
            let value = coerce(
                value,
                &ty,
                &Target {
                    table: &table.name,
                    column: &c.name,
                },
            )?;
            if !nullable || d.with_values {
                existing = value.clone();
            }
            Some((d.name.clone(), value))
        }
    };
    if !nullable && !table.rows.is_empty() && matches!(existing, Value::Null) {
        return Err(match default {
            None => error::add_column_needs_default(&c.name, &table.name),
            Some(_) => error::null_not_allowed(&c.name, &format!("{}.{schema}.{}", db.name, table.name), "UPDATE"),
        }
        .into());
    }
    let default = match default {
        None => None,
        Some((name, value)) => {
            // An unnamed DEFAULT gets a generated name, DF__<table>__<column>__<the
            // constraint's object_id in hex> (the shape SQL Server gives them).
            let name = match name {
                Some(n) => n,
                None => {
                    let t: String = table.name.chars().take(9).collect();
                    let col: String = c.name.chars().take(7).collect();
                    let object_id = db.allocate_object_id();
                    format!("DF__{t}__{col}__{:08X}", object_id as u32)
                }
            };
            if object_name_taken(db, &name) {
                return Err(Refusal {
                    before: vec![error::object_exists(&name)],
                    error: error::could_not_create_constraint(),
                });
            }
            Some(ColumnDefault { name, value })
        }
    };
    let t = db
        .tables
        .get_mut(&id)
        .ok_or_else(|| error::invalid_object(&id.to_string()))?;
    let mut columns = t.columns.to_vec();
    columns.push(ColumnMeta {
        name: c.name.clone(),
        ty,
        type_name,
        nullable,
        user_type_id,
        column_id: t.next_column_id,
        default,
    });
    t.columns = Arc::new(columns);
    t.next_column_id += 1;
    if !t.rows.is_empty() {
        t.rows = t
            .rows
            .iter()
            .map(|(k, r)| {
                let mut v = r.to_vec();
                v.push(existing.clone());
                (k.clone(), Row::from(v))
            })
            .collect();
    }
    Ok(())
}

/// `DROP COLUMN c`: refused while an object uses the column — its PRIMARY KEY or
/// DEFAULT constraint, one Msg 5074 each, then 4922 ("A column can't be dropped when
/// it's … Used in a CHECK, FOREIGN KEY, UNIQUE, or PRIMARY KEY constraint. Associated
/// with a default that's defined with the DEFAULT keyword", ALTER TABLE
/// (Transact-SQL), DROP COLUMN) — and for the table's only column (4923). The other
/// columns keep their column_ids.
fn drop_column(db: &mut Database, id: i64, item: &DropItem) -> Result<(), Refusal> {
    let table = table_of(db, id)?;
    let Some(i) = table.column_index(&item.name) else {
        if item.if_exists {
            return Ok(());
        }
        return Err(error::drop_column_missing(&item.name, &table.name).into());
    };
    let mut dependents = Vec::new();
    if table.primary_key.contains(&i) {
        dependents.push(table.pk_name.clone().unwrap_or_default());
    }
    if let Some(d) = &table.columns[i].default {
        dependents.push(d.name.clone());
    }
    if !dependents.is_empty() {
        return Err(Refusal {
            before: dependents
                .iter()
                .map(|o| error::object_depends_on_column(o, &item.name))
                .collect(),
            error: error::drop_column_failed(&item.name),
        });
    }
    if table.columns.len() == 1 {
        return Err(error::drop_only_column(&item.name, &table.name).into());
    }
    let t = db
        .tables
        .get_mut(&id)
        .ok_or_else(|| error::invalid_object(&id.to_string()))?;
    let mut columns = t.columns.to_vec();
    columns.remove(i);
    t.columns = Arc::new(columns);
    t.primary_key = Arc::new(t.primary_key.iter().map(|&p| if p > i { p - 1 } else { p }).collect());
    t.rows = t
        .rows
        .iter()
        .map(|(k, r)| {
            let mut v = r.to_vec();
            v.remove(i);
            (k.clone(), Row::from(v))
        })
        .collect();
    Ok(())
}

/// `DROP [CONSTRAINT] n`: a DEFAULT constraint goes; the PRIMARY KEY of a tracked
/// table stays ("ALTER TABLE DROP CONSTRAINT: An attempt to drop the PRIMARY KEY
/// constraint fails. Change tracking must be disabled before the PRIMARY KEY
/// constraint can be dropped", Manage change tracking (SQL Server)); any other name is
/// Msg 3728. Each refusal ends with 3727.
fn drop_constraint(db: &mut Database, id: i64, item: &DropItem) -> Result<(), Refusal> {
    let table = table_of(db, id)?;
    let n = ci(&item.name);
    if let Some(i) = table
        .columns
        .iter()
        .position(|c| c.default.as_ref().is_some_and(|d| ci(&d.name) == n))
    {
        let t = db
            .tables
            .get_mut(&id)
            .ok_or_else(|| error::invalid_object(&id.to_string()))?;
        let mut columns = t.columns.to_vec();
        columns[i].default = None;
        t.columns = Arc::new(columns);
        return Ok(());
    }
    if let Some(pk) = table.pk_name.as_deref().filter(|pk| ci(pk) == n) {
        if table.tracking.is_some() {
            return Err(Refusal {
                before: vec![error::tracked_primary_key_drop(pk, &table.name)],
                error: error::could_not_drop_constraint(),
            });
        }
        return Err(error::not_supported("ALTER TABLE … DROP CONSTRAINT <primary key>").into());
    }
    if item.if_exists {
        return Ok(());
    }
    Err(Refusal {
        before: vec![error::not_a_constraint(&item.name)],
        error: error::could_not_drop_constraint(),
    })
}

/// `sp_rename @objname, @newname [, @objtype]` for a column or a table of the current
/// database ("sp_rename (Transact-SQL)",
/// <https://learn.microsoft.com/en-us/sql/relational-databases/system-stored-procedures/sp-rename-transact-sql>):
/// "If the object to be renamed is a column in a table, object_name must be in the
/// form table.column or schema.table.column". Without @objtype a name that is no
/// table is tried as table.column. @newname is taken as written, never parsed.
/// Refusals are sp_rename's: 15248 (nothing of the claimed @objtype by that name),
/// 15225 (nothing at all, @objtype NULL), 15335 (the new name is taken), 15249 (an
/// unknown @objtype). A rename moves the table's modify_date: the page does not say
/// so, but a renamed column changes the table's definition as an ALTER does. Only
/// principals that may ALTER the table find it. Indexes, constraints, types and
/// databases are not renamed here.
pub fn rename(
    state: &mut State,
    who: &Who<'_>,
    objname: &str,
    newname: &str,
    objtype: Option<&str>,
) -> Result<(), Refusal> {
    let kind = objtype.map(|t| t.trim().to_ascii_uppercase());
    match kind.as_deref() {
        None | Some("COLUMN") | Some("OBJECT") => {}
        Some("INDEX" | "DATABASE" | "USERDATATYPE" | "STATISTICS") => {
            return Err(error::not_supported(&format!("sp_rename @objtype = '{}'", objtype.unwrap_or(""))).into())
        }
        Some(_) => return Err(error::rename_unknown_objtype(objtype.unwrap_or("")).into()),
    }
    let dbname = who.database.to_string();
    let parts = super::parser::parse_object_name(objname)
        .map(|n| n.parts)
        .unwrap_or_default();
    let db = state
        .database(&dbname)
        .ok_or_else(|| error::database_not_found(&dbname))?;
    let visible = |id: i64| {
        db.tables
            .get(&id)
            .filter(|t| may_alter(state, who, &dbname, t))
            .map(|t| t.object_id)
    };
    // `[db.][schema.]table`, the database (when named) being the current one.
    let table_named = |parts: &[String]| -> Option<i64> {
        let id = match parts {
            [t] => db.table_id("dbo", t),
            [s, t] => db.table_id(s, t),
            [d, s, t] if ci(d) == ci(&db.name) => db.table_id(s, t),
            _ => None,
        }?;
        visible(id)
    };
    // `[schema.]table.column`.
    let column_named = |parts: &[String]| -> Option<(i64, usize)> {
        let (column, table) = parts.split_last()?;
        let id = match table {
            [t] => db.table_id("dbo", t),
            [s, t] => db.table_id(s, t),
            _ => None,
        }?;
        let id = visible(id)?;
        Some((id, db.tables.get(&id)?.column_index(column)?))
    };
    let (target, kind_word) = match kind.as_deref() {
        Some("COLUMN") => (
            column_named(&parts).map(|(t, c)| (t, Some(c))),
            objtype.unwrap_or("COLUMN").to_string(),
        ),
        Some(_) => (
            table_named(&parts).map(|t| (t, None)),
            objtype.unwrap_or("OBJECT").to_string(),
        ),
        None => match table_named(&parts) {
            Some(t) => (Some((t, None)), "object".to_string()),
            None => (column_named(&parts).map(|(t, c)| (t, Some(c))), "column".to_string()),
        },
    };
    let Some((id, column)) = target else {
        return Err(match objtype {
            Some(t) => error::rename_ambiguous(t),
            None => error::rename_item_not_found(objname, &db.name, "(null)"),
        }
        .into());
    };
    let table = table_of(db, id)?;
    let new = ci(newname);
    match column {
        Some(i) => {
            if table
                .columns
                .iter()
                .enumerate()
                .any(|(k, c)| k != i && ci(&c.name) == new)
            {
                return Err(error::rename_duplicate(newname, &kind_word).into());
            }
        }
        None => {
            let taken = db.tables.values().any(|t| {
                t.object_id != id
                    && t.schema_id == table.schema_id
                    && (ci(&t.name) == new || t.pk_name.as_deref().map(ci).as_deref() == Some(new.as_str()))
            }) || db.tables.values().any(|t| {
                t.schema_id == table.schema_id
                    && t.columns
                        .iter()
                        .any(|c| c.default.as_ref().is_some_and(|d| ci(&d.name) == new))
            });
            if taken {
                return Err(error::rename_duplicate(newname, &kind_word).into());
            }
        }
    }
    let db = db_mut(state, &dbname)?;
    let t = db
        .tables
        .get_mut(&id)
        .ok_or_else(|| error::invalid_object(&id.to_string()))?;
    match column {
        Some(i) => {
            let mut columns = t.columns.to_vec();
            columns[i].name = newname.to_string();
            t.columns = Arc::new(columns);
        }
        None => t.name = newname.to_string(),
    }
    t.modified_ms = who.now_ms;
    Ok(())
}

/// `ALTER DATABASE … SET …`.
pub fn alter_database(
    state: &mut State,
    who: &Who<'_>,
    database: Option<&str>,
    option: &DatabaseOption,
) -> Result<(), SqlError> {
    let dbname = database.unwrap_or(who.database).to_string();
    if state.database(&dbname).is_none() {
        return Err(error::database_not_found(&dbname));
    }
    if !owner(state, who, &dbname) {
        return Err(SqlError::new(
            5011,
            14,
            format!("User does not have permission to alter database '{dbname}', the database does not exist, or the database is not in a state that allows access checks."),
        ));
    }
    let db = db_mut(state, &dbname)?;
    match option {
        DatabaseOption::ChangeTracking {
            on,
            retention,
            auto_cleanup,
        } => {
            let apply = |t: &mut DatabaseTracking| {
                if let Some((n, unit)) = retention {
                    t.retention = *n;
                    t.retention_units = match unit {
                        RetentionUnit::Minutes => 1,
                        RetentionUnit::Hours => 2,
                        RetentionUnit::Days => 3,
                    };
                }
                if let Some(a) = auto_cleanup {
                    t.auto_cleanup = *a;
                }
            };
            match on {
                Some(true) => {
                    if db.tracking.is_some() {
                        return Err(error::change_tracking_already_on_database(&db.name));
                    }
                    let mut t = DatabaseTracking {
                        retention: 2,
                        retention_units: 3,
                        auto_cleanup: true,
                    };
                    apply(&mut t);
                    db.tracking = Some(t);
                }
                Some(false) => {
                    if db.tracking.is_none() {
                        return Err(error::change_tracking_disabled_on_database(&db.name, 1));
                    }
                    if db.tables.values().any(|t| t.tracking.is_some()) {
                        return Err(error::change_tracking_tables_still_tracked(&db.name));
                    }
                    db.tracking = None;
                    db.version_times = imbl::OrdMap::new();
                }
                None => match db.tracking.as_mut() {
                    Some(t) => apply(t),
                    None => return Err(error::change_tracking_disabled_on_database(&db.name, 2)),
                },
            }
        }
        DatabaseOption::AllowSnapshotIsolation(on) => db.snapshot_isolation = *on,
        DatabaseOption::ReadCommittedSnapshot(on) => db.read_committed_snapshot = *on,
    }
    Ok(())
}

/// `CREATE LOGIN … WITH PASSWORD = …`.
pub fn create_login(state: &mut State, who: &Who<'_>, name: &str, password: &str) -> Result<(), SqlError> {
    if !who.sysadmin {
        return Err(error::no_permission_for_action());
    }
    if state.logins.contains_key(&ci(name)) {
        return Err(error::login_exists(name));
    }
    let id = state.next_principal_id;
    state.next_principal_id += 1;
    state.logins.insert(
        ci(name),
        Login {
            principal_id: id,
            name: name.into(),
            password: password.into(),
            sysadmin: false,
            default_database: "master".into(),
        },
    );
    Ok(())
}

/// `CREATE USER … [FOR LOGIN …]`.
pub fn create_user(state: &mut State, who: &Who<'_>, name: &str, login: Option<&str>) -> Result<(), SqlError> {
    if !owner(state, who, who.database) {
        return Err(error::no_permission_for_action());
    }
    let login_name = login.unwrap_or(name);
    let Some(l) = state.logins.get(&ci(login_name)) else {
        return Err(error::login_not_found(login_name));
    };
    let login_name = l.name.clone();
    let db = db_mut(state, who.database)?;
    if db.users.contains_key(&ci(name)) {
        return Err(error::user_exists(name));
    }
    if db.user_for_login(&login_name).is_some() {
        return Err(error::login_already_has_user());
    }
    let id = db.allocate_small_id();
    db.users.insert(
        ci(name),
        User {
            principal_id: id,
            name: name.into(),
            login: Some(login_name),
        },
    );
    Ok(())
}

const PERMISSIONS: &[&str] = &[
    "SELECT",
    "INSERT",
    "UPDATE",
    "DELETE",
    "VIEW CHANGE TRACKING",
    "CONTROL",
    "ALTER",
    "REFERENCES",
    "EXECUTE",
    "VIEW DEFINITION",
    "CONNECT",
];

/// `GRANT` / `DENY` / `REVOKE perms ON securable TO principals`: each replaces what
/// the others set for the same principal, permission and securable (REVOKE just
/// removes), so running a migration twice changes nothing.
pub fn grant(
    state: &mut State,
    who: &Who<'_>,
    action: PermissionAction,
    permissions: &[String],
    on: &Securable,
    to: &[String],
) -> Result<(), SqlError> {
    for p in permissions {
        if !PERMISSIONS.contains(&p.as_str()) {
            return Err(error::syntax_near(p));
        }
    }
    if !owner(state, who, who.database) {
        return Err(error::no_permission_for_action());
    }
    let db = db_mut(state, who.database)?;
    let target = match on {
        Securable::Schema(s) => GrantTarget::Schema(
            db.schema(s)
                .ok_or_else(|| error::cannot_find_principal("schema", s))?
                .schema_id,
        ),
        Securable::Object(name) => GrantTarget::Object(
            db.table_id(name.schema().unwrap_or("dbo"), name.object())
                .ok_or_else(|| error::cannot_find_principal("object", &name.display()))?,
        ),
        Securable::Database => GrantTarget::Database,
    };
    for principal in to {
        let user = db
            .users
            .get(&ci(principal))
            .ok_or_else(|| error::cannot_find_principal("user", principal))?
            .principal_id;
        for p in permissions {
            db.grants
                .retain(|g| !(g.principal_id == user && &g.permission == p && g.target == target));
            if action != PermissionAction::Revoke {
                db.grants.push_back(Grant {
                    principal_id: user,
                    permission: p.clone(),
                    deny: action == PermissionAction::Deny,
                    target: target.clone(),
                });
            }
        }
    }
    Ok(())
}
