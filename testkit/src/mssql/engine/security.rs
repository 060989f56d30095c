//! Who may do what: sysadmin logins and `dbo` may do everything in a database;
//! other users need a GRANT on the object, its schema or the database. Metadata
//! (catalog rows, OBJECT_ID) is visible only where some permission exists, as with
//! SQL Server's metadata visibility rules.

use super::catalog::{Database, GrantTarget, Table};
use super::env::Env;
use super::error;
use crate::mssql::types::SqlError;

/// Whether the session's principal holds `permission` on `table`.
pub fn has_table_permission(env: &Env<'_>, db: &Database, table: &Table, permission: &str) -> bool {
    if env.sysadmin {
        return true;
    }
    let Some(user) = db.user_for_login(env.login) else {
        return false;
    };
    if user.principal_id == 1 {
        return true;
    }
    let applies = |g: &&super::catalog::Grant| {
        g.principal_id == user.principal_id
            && (g.permission == permission || g.permission == "CONTROL")
            && match g.target {
                GrantTarget::Object(id) => id == table.object_id,
                GrantTarget::Schema(id) => id == table.schema_id,
                GrantTarget::Database => true,
            }
    };
    let mut granted = false;
    for g in db.grants.iter().filter(applies) {
        if g.deny {
            return false;
        }
        granted = true;
    }
    granted
}

/// Whether any permission makes the table's metadata visible.
pub fn can_see_table(env: &Env<'_>, db: &Database, table: &Table) -> bool {
    if env.sysadmin {
        return true;
    }
    let Some(user) = db.user_for_login(env.login) else {
        return false;
    };
    if user.principal_id == 1 {
        return true;
    }
    db.grants.iter().any(|g| {
        !g.deny
            && g.principal_id == user.principal_id
            && match g.target {
                GrantTarget::Object(id) => id == table.object_id,
                GrantTarget::Schema(id) => id == table.schema_id,
                GrantTarget::Database => true,
            }
    })
}

/// Whether the metadata of a schema-contained securable other than a table (an
/// alias type) is visible: to owners, and to users holding some permission on its
/// schema or the database (an approximation of metadata visibility).
pub fn can_see_schema(env: &Env<'_>, db: &Database, schema_id: i64) -> bool {
    if is_db_owner(env, db) {
        return true;
    }
    let Some(user) = db.user_for_login(env.login) else {
        return false;
    };
    db.grants.iter().any(|g| {
        !g.deny
            && g.principal_id == user.principal_id
            && match g.target {
                GrantTarget::Schema(id) => id == schema_id,
                GrantTarget::Database => true,
                GrantTarget::Object(_) => false,
            }
    })
}

/// Msg 229 unless the permission is held.
pub fn require_table_permission(env: &Env<'_>, db: &Database, table: &Table, permission: &str) -> Result<(), SqlError> {
    if has_table_permission(env, db, table, permission) {
        return Ok(());
    }
    Err(error::permission_denied(
        permission,
        &table.name,
        &db.name,
        db.schema_name(table.schema_id).unwrap_or("dbo"),
    ))
}

/// Whether the principal owns the database (sysadmin or `dbo`): DDL, GRANT, CT
/// configuration.
pub fn is_db_owner(env: &Env<'_>, db: &Database) -> bool {
    env.sysadmin || db.user_for_login(env.login).is_some_and(|u| u.principal_id == 1)
}
