//! Definition and configuration statements: databases, schemas, tables, change
//! tracking at database and table level, snapshot isolation, logins, users and
//! grants, TRUNCATE. Each checks what SQL Server checks and fails with its error.

use std::sync::Arc;

use super::ast::{
    ColumnDef, DatabaseOption, DeclaredType, ObjectName, PermissionAction, PrimaryKeyDef, RetentionUnit, Securable,
};
use super::catalog::{
    ci, AliasType, ColumnMeta, Database, DatabaseTracking, Grant, GrantTarget, Login, State, Table, User,
};
use super::change_tracking::TableTracking;
use super::datatype;
use super::error;
use crate::mssql::types::{SqlError, SqlType};

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
