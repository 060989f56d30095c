//! Built-in functions the sidecar and tests call: metadata (`OBJECT_ID`, `DB_ID`,
//! `DB_NAME`, `COLUMNPROPERTY`, `HAS_PERMS_BY_NAME`), Change Tracking
//! (`CHANGE_TRACKING_CURRENT_VERSION`, `…_MIN_VALID_VERSION`, `…_IS_COLUMN_IN_MASK`)
//! and a few scalar helpers. Unknown names are Msg 195, as in SQL Server.

use super::ast::{Expr, ObjectName};
use super::catalog::{ci, Database, GrantTarget, Table};
use super::change_tracking;
use super::datatype::SYSNAME;
use super::env::Env;
use super::error;
use super::expr::{bind, Bound, Func, Scope, Typed};
use super::parser;
use super::security;
use crate::mssql::types::{SqlError, SqlType, Value};

/// Binds a call, checking the name and argument count.
pub fn bind_call(name: &str, args: &[Expr], scope: &Scope, env: &Env<'_>) -> Result<Typed, SqlError> {
    let (func, arity, ty, nullable): (Func, &[usize], SqlType, bool) = match name {
        "OBJECT_ID" => (Func::ObjectId, &[1, 2], SqlType::Int, true),
        "OBJECT_NAME" => (Func::ObjectName, &[1, 2], SYSNAME, true),
        "DB_ID" => (Func::DbId, &[0, 1], SqlType::Int, true),
        "DB_NAME" => (Func::DbName, &[0, 1], SYSNAME, true),
        "SCHEMA_NAME" => (Func::SchemaName, &[0, 1], SYSNAME, true),
        "HAS_PERMS_BY_NAME" => (Func::HasPermsByName, &[3, 4, 5], SqlType::Int, true),
        "COLUMNPROPERTY" => (Func::ColumnProperty, &[3], SqlType::Int, true),
        "CHANGE_TRACKING_CURRENT_VERSION" => (Func::CtCurrentVersion, &[0], SqlType::BigInt, true),
        "CHANGE_TRACKING_MIN_VALID_VERSION" => (Func::CtMinValidVersion, &[1], SqlType::BigInt, true),
        "CHANGE_TRACKING_IS_COLUMN_IN_MASK" => (Func::CtIsColumnInMask, &[2], SqlType::Bit, true),
        "ISNULL" => (Func::IsNull, &[2], SqlType::Int, true),
        "COALESCE" => (Func::Coalesce, &[], SqlType::Int, true),
        "LEN" => (Func::Len, &[1], SqlType::Int, true),
        "UPPER" => (Func::Upper, &[1], SqlType::NVarChar(Some(4000)), true),
        "LOWER" => (Func::Lower, &[1], SqlType::NVarChar(Some(4000)), true),
        "ABS" => (Func::Abs, &[1], SqlType::Int, true),
        "GETDATE" => (Func::GetDate, &[0], SqlType::DateTime, false),
        "GETUTCDATE" => (Func::GetUtcDate, &[0], SqlType::DateTime, false),
        "SYSDATETIME" => (Func::SysDateTime, &[0], SqlType::DateTime2(7), false),
        "SYSUTCDATETIME" => (Func::SysUtcDateTime, &[0], SqlType::DateTime2(7), false),
        "USER_NAME" => (Func::UserName, &[0], SYSNAME, true),
        "SUSER_NAME" | "SUSER_SNAME" => (Func::SuserName, &[0], SYSNAME, true),
        "SERVERPROPERTY" => (Func::ServerProperty, &[1], SqlType::NVarChar(Some(128)), true),
        _ => return Err(error::unknown_function(name)),
    };
    if func == Func::Coalesce {
        if args.len() < 2 {
            return Err(SqlError::new(
                189,
                15,
                "The coalesce function requires 2 to 2147483647 arguments.",
            ));
        }
    } else if !arity.contains(&args.len()) {
        return Err(error::wrong_argument_count(name, arity[arity.len() - 1]));
    }
    let mut bound = Vec::with_capacity(args.len());
    let mut first_ty = None;
    let mut all_nullable = true;
    for a in args {
        let t = bind(a, scope, env)?;
        if first_ty.is_none() {
            first_ty = Some(t.ty.clone());
        }
        all_nullable &= t.nullable;
        bound.push(t.bound);
    }
    let (ty, nullable) = match func {
        Func::IsNull | Func::Coalesce | Func::Abs => (first_ty.unwrap_or(ty), all_nullable),
        Func::Upper | Func::Lower => (first_ty.unwrap_or(ty), nullable),
        _ => (ty, nullable),
    };
    Ok(Typed {
        bound: Bound::Call(func, bound),
        ty,
        nullable,
    })
}

/// `@@NAME` values.
pub fn global(name: &str, env: &Env<'_>) -> Result<(Value, SqlType), SqlError> {
    Ok(match name {
        "@@SERVERNAME" => (Value::String(env.server_name.into()), SYSNAME),
        "@@VERSION" => (
            Value::String("Microsoft SQL Server 2022 (RTM) - 16.0.1000.6 (X64) (cdc-sidecar testkit stand-in)".into()),
            SqlType::NVarChar(Some(300)),
        ),
        "@@SPID" => (Value::Int(env.spid), SqlType::SmallInt),
        "@@TRANCOUNT" => (Value::Int(env.trancount), SqlType::Int),
        other => return Err(error::syntax_near(other)),
    })
}

fn int_arg(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        Value::Decimal { value, scale } => i64::try_from(*value / 10i128.pow(u32::from(*scale))).ok(),
        Value::String(s) => s.trim().parse().ok(),
        Value::Bit(b) => Some(i64::from(*b)),
        _ => None,
    }
}

fn str_arg(v: &Value) -> Option<&str> {
    match v {
        Value::String(s) => Some(s.as_str()),
        _ => None,
    }
}

/// Finds a user table by a parsed name (default schema `dbo`), if visible.
pub fn find_table<'e>(env: &'e Env<'_>, name: &ObjectName) -> Option<(&'e Database, &'e Table)> {
    let db = match name.database() {
        Some(d) => env.state.database(d)?,
        None => env.current_db().ok()?,
    };
    let schema = name.schema().unwrap_or("dbo");
    let id = db.table_id(schema, name.object())?;
    let table = db.tables.get(&id)?;
    Some((db, table))
}

fn find_table_by_id<'e>(env: &'e Env<'_>, id: i64) -> Option<(&'e Database, &'e Table)> {
    let db = env.current_db().ok()?;
    let table = db.tables.get(&id)?;
    if !security::can_see_table(env, db, table) {
        return None;
    }
    Some((db, table))
}

/// Evaluates a built-in on already evaluated arguments.
pub fn call(f: Func, args: &[Value], env: &Env<'_>) -> Result<Value, SqlError> {
    Ok(match f {
        Func::ObjectId => {
            let Some(name) = args.first().and_then(str_arg) else {
                return Ok(Value::Null);
            };
            let Ok(parsed) = parser::parse_object_name(name) else {
                return Ok(Value::Null);
            };
            if let Some(t) = args.get(1).and_then(str_arg) {
                if !t.trim().eq_ignore_ascii_case("U") {
                    return Ok(Value::Null);
                }
            }
            match find_table(env, &parsed) {
                Some((db, table)) if security::can_see_table(env, db, table) => Value::Int(table.object_id),
                _ => Value::Null,
            }
        }
        Func::ObjectName => match args.first().and_then(int_arg).and_then(|id| find_table_by_id(env, id)) {
            Some((_, t)) => Value::String(t.name.clone()),
            None => Value::Null,
        },
        Func::DbId => match args.first() {
            None => Value::Int(env.current_db()?.database_id),
            Some(Value::Null) => Value::Null,
            Some(v) => match str_arg(v).and_then(|n| env.state.database(n)) {
                Some(db) => Value::Int(db.database_id),
                None => Value::Null,
            },
        },
        Func::DbName => match args.first() {
            None => Value::String(env.current_db()?.name.clone()),
            Some(v) => match int_arg(v).and_then(|id| env.state.database_by_id(id)) {
                Some(db) => Value::String(db.name.clone()),
                None => Value::Null,
            },
        },
        Func::SchemaName => {
            let db = env.current_db()?;
            match args.first() {
                None => Value::String("dbo".into()),
                Some(v) => match int_arg(v).and_then(|id| db.schema_name(id)) {
                    Some(n) => Value::String(n.into()),
                    None => Value::Null,
                },
            }
        }
        Func::HasPermsByName => has_perms_by_name(args, env)?,
        Func::ColumnProperty => {
            let (Some(id), Some(col), Some(prop)) = (
                args.first().and_then(int_arg),
                args.get(1).and_then(str_arg),
                args.get(2).and_then(str_arg),
            ) else {
                return Ok(Value::Null);
            };
            let Some((_, table)) = find_table_by_id(env, id) else {
                return Ok(Value::Null);
            };
            let Some(i) = table.column_index(col) else {
                return Ok(Value::Null);
            };
            match ci(prop).as_str() {
                "columnid" => Value::Int(table.columns[i].column_id),
                "allowsnull" => Value::Int(i64::from(table.columns[i].nullable)),
                "precision" => Value::Int(super::datatype::precision(&table.columns[i].ty)),
                "scale" => Value::Int(super::datatype::scale(&table.columns[i].ty)),
                _ => Value::Null,
            }
        }
        Func::CtCurrentVersion => {
            let db = env.current_db()?;
            match db.tracking {
                Some(_) => Value::Int(db.ct_version),
                None => Value::Null,
            }
        }
        Func::CtMinValidVersion => match args.first().and_then(int_arg).and_then(|id| find_table_by_id(env, id)) {
            Some((_, t)) => match &t.tracking {
                Some(tr) => Value::Int(tr.min_valid_version()),
                None => Value::Null,
            },
            None => Value::Null,
        },
        Func::CtIsColumnInMask => match args.first().and_then(int_arg) {
            Some(id) => change_tracking::is_column_in_mask(id, args.get(1).unwrap_or(&Value::Null))?,
            None => Value::Null,
        },
        Func::IsNull | Func::Coalesce => args
            .iter()
            .find(|v| !matches!(v, Value::Null))
            .cloned()
            .unwrap_or(Value::Null),
        Func::Len => match args.first() {
            Some(Value::String(s)) => Value::Int(s.trim_end_matches(' ').chars().count() as i64),
            Some(Value::Null) | None => Value::Null,
            Some(other) => Value::Int(super::value::display_value(other).chars().count() as i64),
        },
        Func::Upper => match args.first() {
            Some(Value::String(s)) => Value::String(s.to_uppercase()),
            other => other.cloned().unwrap_or(Value::Null),
        },
        Func::Lower => match args.first() {
            Some(Value::String(s)) => Value::String(s.to_lowercase()),
            other => other.cloned().unwrap_or(Value::Null),
        },
        Func::Abs => match args.first() {
            Some(Value::Int(i)) => Value::Int(i.abs()),
            Some(Value::Float(f)) => Value::Float(f.abs()),
            Some(Value::Decimal { value, scale }) => Value::Decimal {
                value: value.abs(),
                scale: *scale,
            },
            other => other.cloned().unwrap_or(Value::Null),
        },
        Func::GetDate | Func::SysDateTime | Func::GetUtcDate | Func::SysUtcDateTime => Value::DateTime(env.now),
        Func::UserName => match env.current_db()?.user_for_login(env.login) {
            Some(u) => Value::String(u.name.clone()),
            None => Value::String("guest".into()),
        },
        Func::SuserName => Value::String(env.login.into()),
        Func::ServerProperty => {
            let name = args.first().and_then(str_arg).unwrap_or("").to_ascii_lowercase();
            match name.as_str() {
                "productversion" => Value::String("16.0.1000.6".into()),
                "productmajorversion" => Value::String("16".into()),
                "edition" => Value::String("Developer Edition (64-bit)".into()),
                "engineedition" => Value::String("3".into()),
                "servername" | "machinename" => Value::String(env.server_name.into()),
                "collation" => Value::String("SQL_Latin1_General_CP1_CI_AS".into()),
                _ => Value::Null,
            }
        }
    })
}

/// Permissions that exist on an object or a schema (`sys.fn_builtin_permissions`);
/// `ANY` is HAS_PERMS_BY_NAME's wildcard.
const OBJECT_PERMISSIONS: &[&str] = &[
    "ALTER",
    "CONTROL",
    "DELETE",
    "EXECUTE",
    "INSERT",
    "RECEIVE",
    "REFERENCES",
    "SELECT",
    "TAKE OWNERSHIP",
    "UPDATE",
    "VIEW CHANGE TRACKING",
    "VIEW DEFINITION",
    "ANY",
];

/// `HAS_PERMS_BY_NAME(securable, class, permission)` ("HAS_PERMS_BY_NAME
/// (Transact-SQL)"): 1 or 0 for an effective permission, NULL when the securable
/// class or permission is not valid or the securable cannot be found. A NULL
/// securable of class DATABASE is the current database.
fn has_perms_by_name(args: &[Value], env: &Env<'_>) -> Result<Value, SqlError> {
    let securable = args.first().and_then(str_arg);
    let class = match args.get(1) {
        None | Some(Value::Null) => "SERVER".to_string(),
        Some(v) => match str_arg(v) {
            Some(c) => c.trim().to_uppercase(),
            None => return Ok(Value::Null),
        },
    };
    let Some(permission) = args.get(2).and_then(str_arg) else {
        return Ok(Value::Null);
    };
    let permission = permission.trim().to_uppercase();
    if matches!(class.as_str(), "OBJECT" | "SCHEMA") && !OBJECT_PERMISSIONS.contains(&permission.as_str()) {
        return Ok(Value::Null);
    }
    match class.as_str() {
        "OBJECT" => {
            let Some(securable) = securable else {
                return Ok(Value::Null);
            };
            let Ok(name) = parser::parse_object_name(securable) else {
                return Ok(Value::Null);
            };
            match find_table(env, &name) {
                Some((db, table)) if security::can_see_table(env, db, table) => {
                    let held = permission == "ANY" || security::has_table_permission(env, db, table, &permission);
                    Ok(Value::Int(i64::from(held)))
                }
                _ => Ok(Value::Null),
            }
        }
        "SCHEMA" => {
            let db = env.current_db()?;
            let Some(schema) = securable.and_then(|s| db.schema(s.trim_matches(|c| c == '[' || c == ']'))) else {
                return Ok(Value::Null);
            };
            if security::is_db_owner(env, db) {
                return Ok(Value::Int(1));
            }
            let user = db.user_for_login(env.login);
            Ok(Value::Int(i64::from(user.is_some_and(|u| {
                db.grants.iter().any(|g| {
                    !g.deny
                        && g.principal_id == u.principal_id
                        && (permission == "ANY" || g.permission == permission || g.permission == "CONTROL")
                        && matches!(g.target, GrantTarget::Schema(id) if id == schema.schema_id)
                })
            }))))
        }
        "DATABASE" => {
            let db = match securable {
                None => env.current_db()?,
                Some(name) => match env.state.database(name) {
                    Some(db) => db,
                    None => return Ok(Value::Null),
                },
            };
            if security::is_db_owner(env, db) {
                return Ok(Value::Int(1));
            }
            let user = db.user_for_login(env.login);
            Ok(Value::Int(i64::from(user.is_some_and(|u| {
                permission == "CONNECT"
                    || permission == "ANY"
                    || db.grants.iter().any(|g| {
                        !g.deny
                            && g.principal_id == u.principal_id
                            && g.permission == permission
                            && g.target == GrantTarget::Database
                    })
            }))))
        }
        // "For the server itself, a null value (meaning "current server") is required."
        "SERVER" if securable.is_none() => Ok(Value::Int(i64::from(env.sysadmin))),
        _ => Ok(Value::Null),
    }
}
