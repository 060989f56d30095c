//! The catalog views the sidecar reads (`sys.databases`, `sys.tables`, `sys.columns`,
//! `sys.types`, `sys.indexes`, `sys.index_columns`, `sys.change_tracking_*`,
//! principals…), materialized from the state with SQL Server's column names, types
//! and nullability. Rows of objects the principal may not see are left out.

use chrono::{DateTime, NaiveDateTime};

use super::ast::Isolation;
use super::catalog::Database;
use super::collation;
use super::datatype::{self, SYSNAME};
use super::env::Env;
use super::error;
use super::security;
use crate::mssql::types::{SqlError, SqlType, Value};

/// A materialized catalog view.
pub struct View {
    pub columns: Vec<(&'static str, SqlType, bool)>,
    pub rows: Vec<Vec<Value>>,
}

fn s(v: &str) -> Value {
    Value::String(v.into())
}

fn i(v: i64) -> Value {
    Value::Int(v)
}

fn b(v: bool) -> Value {
    Value::Bit(v)
}

fn time(ms: u64) -> Value {
    let dt = DateTime::from_timestamp_millis(i64::try_from(ms).unwrap_or(0))
        .map(|d| d.naive_utc())
        .unwrap_or(NaiveDateTime::MIN);
    Value::DateTime(dt)
}

const NV60: SqlType = SqlType::NVarChar(Some(60));

/// `transaction_isolation_level` of `sys.dm_exec_sessions`: "0 = Unspecified,
/// 1 = ReadUncommitted, 2 = ReadCommitted, 3 = RepeatableRead, 4 = Serializable,
/// 5 = Snapshot" (sys.dm_exec_sessions (Transact-SQL),
/// https://learn.microsoft.com/en-us/sql/relational-databases/system-dynamic-management-views/sys-dm-exec-sessions-transact-sql).
fn isolation_level(level: Isolation) -> i64 {
    match level {
        Isolation::ReadUncommitted => 1,
        Isolation::ReadCommitted => 2,
        Isolation::RepeatableRead => 3,
        Isolation::Serializable => 4,
        Isolation::Snapshot => 5,
    }
}

/// Whether the principal may read `sys.<name>` at all: the transaction DMVs need
/// VIEW SERVER STATE (only sysadmin holds it here), Msg 300 otherwise
/// (sys.dm_tran_active_snapshot_database_transactions (Transact-SQL), Permissions,
/// https://learn.microsoft.com/en-us/sql/relational-databases/system-dynamic-management-views/sys-dm-tran-active-snapshot-database-transactions-transact-sql).
pub fn check_access(env: &Env<'_>, name: &str) -> Result<(), SqlError> {
    if name.eq_ignore_ascii_case("dm_tran_active_snapshot_database_transactions") && !env.sysadmin {
        return Err(error::view_server_state_denied());
    }
    Ok(())
}

/// The view `sys.<name>` as seen from `db`, or `None` for an unknown view.
pub fn view(env: &Env<'_>, db: &Database, name: &str) -> Option<View> {
    let name = name.to_lowercase();
    Some(match name.as_str() {
        "databases" => View {
            columns: vec![
                ("name", SYSNAME, false),
                ("database_id", SqlType::Int, false),
                ("create_date", SqlType::DateTime, false),
                ("compatibility_level", SqlType::TinyInt, false),
                ("collation_name", SYSNAME, true),
                ("state", SqlType::TinyInt, true),
                ("state_desc", NV60, true),
                ("snapshot_isolation_state", SqlType::TinyInt, true),
                ("snapshot_isolation_state_desc", NV60, true),
                ("is_read_committed_snapshot_on", SqlType::Bit, true),
                // "Unique identifier of the database within an Always On availability
                // group, if any … NULL = database is not part of an availability
                // replica in any availability group" (sys.databases (Transact-SQL),
                // https://learn.microsoft.com/en-us/sql/relational-databases/system-catalog-views/sys-databases-transact-sql):
                // the stand-in has no availability groups.
                ("group_database_id", SqlType::UniqueIdentifier, true),
            ],
            rows: env
                .state
                .databases
                .values()
                // VIEW ANY DATABASE is granted to public: every login sees every database.
                .map(|d| {
                    vec![
                        s(&d.name),
                        i(d.database_id),
                        time(d.created_ms),
                        i(160),
                        s(collation::DEFAULT),
                        i(0),
                        s("ONLINE"),
                        i(i64::from(d.snapshot_isolation)),
                        s(if d.snapshot_isolation { "ON" } else { "OFF" }),
                        b(d.read_committed_snapshot),
                        Value::Null,
                    ]
                })
                .collect(),
        },
        // "Contains one row per database" with its recovery GUIDs
        // (sys.database_recovery_status (Transact-SQL),
        // https://learn.microsoft.com/en-us/sql/relational-databases/system-catalog-views/sys-database-recovery-status-transact-sql);
        // restore.rs says when each changes. The LSN columns (last_log_backup_lsn,
        // fork_point_lsn) are not modelled: the engine keeps no log.
        //
        // "To see the row for a database other than master or tempdb, one of the
        // following must apply: Be the owner of the database. Have ALTER ANY DATABASE
        // or VIEW ANY DATABASE server-level permissions. Have CREATE DATABASE
        // permission in the master database." (same page), and "By default, the VIEW
        // ANY DATABASE permission is granted to the public role" ("VIEW ANY DATABASE
        // Permission",
        // https://learn.microsoft.com/en-us/previous-versions/sql/sql-server-2008/ms189077(v=sql.100)).
        // The engine has no server-level DENY/REVOKE, so public keeps it and every
        // login sees every row, a least-privileged one included.
        "database_recovery_status" => View {
            columns: vec![
                ("database_id", SqlType::Int, false),
                ("database_guid", SqlType::UniqueIdentifier, true),
                ("family_guid", SqlType::UniqueIdentifier, true),
                ("recovery_fork_guid", SqlType::UniqueIdentifier, true),
                ("first_recovery_fork_guid", SqlType::UniqueIdentifier, true),
            ],
            rows: env
                .state
                .databases
                .values()
                .map(|d| {
                    let inc = &d.incarnation;
                    vec![
                        i(d.database_id),
                        Value::Guid(inc.database_guid),
                        Value::Guid(inc.family_guid),
                        Value::Guid(inc.recovery_fork_guid),
                        inc.first_recovery_fork_guid.map_or(Value::Null, Value::Guid),
                    ]
                })
                .collect(),
        },
        "change_tracking_databases" => View {
            columns: vec![
                ("database_id", SqlType::Int, false),
                ("is_auto_cleanup_on", SqlType::Bit, true),
                ("retention_period", SqlType::Int, true),
                ("retention_period_units_desc", NV60, true),
                ("retention_period_units", SqlType::TinyInt, true),
                ("max_cleanup_version", SqlType::BigInt, true),
            ],
            rows: env
                .state
                .databases
                .values()
                .filter_map(|d| {
                    let t = d.tracking.as_ref()?;
                    let max_cleanup = d
                        .tables
                        .values()
                        .filter_map(|t| t.tracking.as_ref().map(|x| x.cleanup_version))
                        .max()
                        .unwrap_or(0);
                    Some(vec![
                        i(d.database_id),
                        b(t.auto_cleanup),
                        i(t.retention),
                        s(t.units_desc()),
                        i(i64::from(t.retention_units)),
                        i(max_cleanup),
                    ])
                })
                .collect(),
        },
        "change_tracking_tables" => View {
            columns: vec![
                ("object_id", SqlType::Int, false),
                ("is_track_columns_updated_on", SqlType::Bit, false),
                ("min_valid_version", SqlType::BigInt, true),
                ("begin_version", SqlType::BigInt, true),
                ("cleanup_version", SqlType::BigInt, true),
            ],
            rows: db
                .tables
                .values()
                .filter(|t| security::can_see_table(env, db, t))
                .filter_map(|t| {
                    let tr = t.tracking.as_ref()?;
                    Some(vec![
                        i(t.object_id),
                        b(tr.track_columns_updated),
                        i(tr.min_valid_version()),
                        i(tr.begin_version),
                        i(tr.cleanup_version),
                    ])
                })
                .collect(),
        },
        "tables" | "objects" => View {
            columns: vec![
                ("name", SYSNAME, false),
                ("object_id", SqlType::Int, false),
                ("principal_id", SqlType::Int, true),
                ("schema_id", SqlType::Int, false),
                ("parent_object_id", SqlType::Int, false),
                ("type", SqlType::Char(2), true),
                ("type_desc", NV60, true),
                ("create_date", SqlType::DateTime, false),
                ("modify_date", SqlType::DateTime, false),
                ("is_ms_shipped", SqlType::Bit, false),
            ],
            rows: db
                .tables
                .values()
                .filter(|t| security::can_see_table(env, db, t))
                .map(|t| {
                    vec![
                        s(&t.name),
                        i(t.object_id),
                        Value::Null,
                        i(t.schema_id),
                        i(0),
                        s("U "),
                        s("USER_TABLE"),
                        time(t.created_ms),
                        time(t.modified_ms),
                        b(false),
                    ]
                })
                .collect(),
        },
        "schemas" => View {
            columns: vec![
                ("name", SYSNAME, false),
                ("schema_id", SqlType::Int, false),
                ("principal_id", SqlType::Int, true),
            ],
            rows: db
                .schemas
                .values()
                .map(|sc| vec![s(&sc.name), i(sc.schema_id), i(1)])
                .collect(),
        },
        "columns" => View {
            columns: vec![
                ("object_id", SqlType::Int, false),
                ("name", SYSNAME, true),
                ("column_id", SqlType::Int, false),
                ("system_type_id", SqlType::TinyInt, false),
                ("user_type_id", SqlType::Int, false),
                ("max_length", SqlType::SmallInt, false),
                ("precision", SqlType::TinyInt, false),
                ("scale", SqlType::TinyInt, false),
                ("collation_name", SYSNAME, true),
                ("is_nullable", SqlType::Bit, true),
                ("is_identity", SqlType::Bit, false),
                ("is_computed", SqlType::Bit, false),
            ],
            rows: db
                .tables
                .values()
                .filter(|t| security::can_see_table(env, db, t))
                .flat_map(|t| {
                    t.columns.iter().map(move |c| {
                        // system_type_id is the base system type's; user_type_id the
                        // declared type's, an alias's own id for alias-typed columns
                        // ("sys.columns (Transact-SQL)").
                        let (id, max_len, prec, scale) = datatype::catalog_facts(&c.ty, &c.type_name);
                        let text = datatype::is_character(&c.ty);
                        vec![
                            i(t.object_id),
                            s(&c.name),
                            i(c.column_id),
                            i(id),
                            i(c.user_type_id.unwrap_or(id)),
                            i(max_len),
                            i(prec),
                            i(scale),
                            // Every text column has the database default collation.
                            if text { s(collation::DEFAULT) } else { Value::Null },
                            b(c.nullable),
                            b(false),
                            b(false),
                        ]
                    })
                })
                .collect(),
        },
        "types" => View {
            columns: vec![
                ("name", SYSNAME, false),
                ("system_type_id", SqlType::TinyInt, false),
                ("user_type_id", SqlType::Int, false),
                ("schema_id", SqlType::Int, false),
                ("principal_id", SqlType::Int, true),
                ("max_length", SqlType::SmallInt, false),
                ("precision", SqlType::TinyInt, false),
                ("scale", SqlType::TinyInt, false),
                ("collation_name", SYSNAME, true),
                ("is_nullable", SqlType::Bit, true),
                ("is_user_defined", SqlType::Bit, false),
                ("is_assembly_type", SqlType::Bit, false),
                ("default_object_id", SqlType::Int, false),
                ("rule_object_id", SqlType::Int, false),
                ("is_table_type", SqlType::Bit, false),
            ],
            // "sys.types (Transact-SQL)": one row per system type (schema `sys`,
            // user_type_id = system_type_id, except `sysname`: 231 / 256, NOT NULL),
            // then one per alias type of this database (its own user_type_id, the
            // base's system_type_id, length, precision and scale, is_user_defined = 1).
            rows: datatype::system_types()
                .into_iter()
                .map(|(name, ty, user_type_id)| {
                    let (system_type_id, max_len, prec, scale) = datatype::catalog_facts(&ty, name);
                    let nullable = datatype::system_alias(name).is_none_or(|(_, nullable)| nullable);
                    type_row(
                        name,
                        (system_type_id, user_type_id, 4),
                        (max_len, prec, scale),
                        &ty,
                        nullable,
                        false,
                    )
                })
                .chain(
                    db.types
                        .values()
                        .filter(|a| security::can_see_schema(env, db, a.schema_id))
                        .map(|a| {
                            let (system_type_id, max_len, prec, scale) = datatype::catalog_facts(&a.base, &a.base_name);
                            type_row(
                                &a.name,
                                (system_type_id, a.user_type_id, a.schema_id),
                                (max_len, prec, scale),
                                &a.base,
                                a.nullable,
                                true,
                            )
                        }),
                )
                .collect(),
        },
        "indexes" => View {
            columns: vec![
                ("object_id", SqlType::Int, false),
                ("name", SYSNAME, true),
                ("index_id", SqlType::Int, false),
                ("type", SqlType::TinyInt, false),
                ("type_desc", NV60, true),
                ("is_unique", SqlType::Bit, true),
                ("is_primary_key", SqlType::Bit, true),
            ],
            rows: db
                .tables
                .values()
                .filter(|t| security::can_see_table(env, db, t))
                .map(|t| {
                    if t.primary_key.is_empty() {
                        vec![i(t.object_id), Value::Null, i(0), i(0), s("HEAP"), b(false), b(false)]
                    } else {
                        vec![
                            i(t.object_id),
                            s(t.pk_name.as_deref().unwrap_or("")),
                            i(1),
                            i(1),
                            s("CLUSTERED"),
                            b(true),
                            b(true),
                        ]
                    }
                })
                .collect(),
        },
        "index_columns" => View {
            columns: vec![
                ("object_id", SqlType::Int, false),
                ("index_id", SqlType::Int, false),
                ("index_column_id", SqlType::Int, false),
                ("column_id", SqlType::Int, false),
                ("key_ordinal", SqlType::TinyInt, false),
                ("partition_ordinal", SqlType::TinyInt, false),
                ("is_descending_key", SqlType::Bit, true),
                ("is_included_column", SqlType::Bit, true),
            ],
            rows: db
                .tables
                .values()
                .filter(|t| security::can_see_table(env, db, t))
                .flat_map(|t| {
                    t.primary_key.iter().enumerate().map(move |(k, &c)| {
                        vec![
                            i(t.object_id),
                            i(1),
                            i(k as i64 + 1),
                            i(t.columns[c].column_id),
                            i(k as i64 + 1),
                            i(0),
                            b(false),
                            b(false),
                        ]
                    })
                })
                .collect(),
        },
        "server_principals" | "sql_logins" => View {
            columns: vec![
                ("name", SYSNAME, false),
                ("principal_id", SqlType::Int, false),
                ("type", SqlType::Char(1), false),
                ("type_desc", NV60, true),
                ("is_disabled", SqlType::Bit, true),
                ("default_database_name", SYSNAME, true),
            ],
            rows: env
                .state
                .logins
                .values()
                .filter(|l| env.sysadmin || l.name.eq_ignore_ascii_case(env.login) || l.name == "sa")
                .map(|l| {
                    vec![
                        s(&l.name),
                        i(l.principal_id),
                        s("S"),
                        s("SQL_LOGIN"),
                        b(false),
                        s(&l.default_database),
                    ]
                })
                .chain(std::iter::once(vec![
                    s("sysadmin"),
                    i(3),
                    s("R"),
                    s("SERVER_ROLE"),
                    b(false),
                    Value::Null,
                ]))
                .collect(),
        },
        "database_principals" => View {
            columns: vec![
                ("name", SYSNAME, false),
                ("principal_id", SqlType::Int, false),
                ("type", SqlType::Char(1), false),
                ("type_desc", NV60, true),
                ("default_schema_name", SYSNAME, true),
            ],
            rows: db
                .users
                .values()
                .map(|u| {
                    vec![
                        s(&u.name),
                        i(u.principal_id),
                        s("S"),
                        s("SQL_USER"),
                        if u.principal_id == 2 { Value::Null } else { s("dbo") },
                    ]
                })
                .chain(std::iter::once(vec![
                    s("public"),
                    i(0),
                    s("R"),
                    s("DATABASE_ROLE"),
                    Value::Null,
                ]))
                .collect(),
        },
        // One row per session; without VIEW SERVER STATE a login sees only its own
        // (sys.dm_exec_sessions (Transact-SQL), Permissions,
        // https://learn.microsoft.com/en-us/sql/relational-databases/system-dynamic-management-views/sys-dm-exec-sessions-transact-sql).
        "dm_exec_sessions" => View {
            columns: vec![
                ("session_id", SqlType::SmallInt, false),
                ("login_time", SqlType::DateTime, false),
                ("login_name", SqlType::NVarChar(Some(128)), false),
                ("status", SqlType::NVarChar(Some(30)), false),
                ("database_id", SqlType::SmallInt, false),
                ("transaction_isolation_level", SqlType::SmallInt, false),
                ("open_transaction_count", SqlType::Int, false),
            ],
            rows: env
                .engine
                .sessions()
                .into_iter()
                .filter(|(spid, _)| env.sysadmin || *spid == env.spid)
                .map(|(spid, info)| {
                    let database_id = env.state.database(&info.database).map_or(0, |d| d.database_id);
                    vec![
                        i(spid),
                        time(info.login_ms),
                        s(&info.login),
                        s(if spid == env.spid { "running" } else { "sleeping" }),
                        i(database_id),
                        i(isolation_level(info.isolation)),
                        i(info.trancount),
                    ]
                })
                .collect(),
        },
        // Open transactions that use row versioning, with the sequence number they
        // got at their first versioned access and the seconds since (for spotting a
        // long-open snapshot transaction). A subset of the documented columns.
        "dm_tran_active_snapshot_database_transactions" => View {
            columns: vec![
                ("transaction_id", SqlType::BigInt, false),
                ("transaction_sequence_num", SqlType::BigInt, false),
                ("commit_sequence_num", SqlType::BigInt, true),
                ("is_snapshot", SqlType::Int, false),
                ("session_id", SqlType::Int, false),
                ("elapsed_time_seconds", SqlType::BigInt, false),
            ],
            rows: {
                let now = env.engine.now_ms();
                env.engine
                    .sessions()
                    .into_iter()
                    .filter_map(|(spid, info)| {
                        let t = info.transaction?;
                        let (xsn, since) = t.xsn?;
                        let elapsed = i64::try_from(now.saturating_sub(since) / 1000).unwrap_or(i64::MAX);
                        Some(vec![
                            i(t.id),
                            i(xsn),
                            Value::Null,
                            i(i64::from(t.snapshot)),
                            i(spid),
                            i(elapsed),
                        ])
                    })
                    .collect()
            },
        },
        _ => return None,
    })
}

/// One row of `sys.types`: ids are (system_type_id, user_type_id, schema_id), sizes
/// (max_length, precision, scale).
fn type_row(
    name: &str,
    (system_type_id, user_type_id, schema_id): (i64, i64, i64),
    (max_len, prec, scale): (i64, i64, i64),
    ty: &SqlType,
    nullable: bool,
    user_defined: bool,
) -> Vec<Value> {
    vec![
        s(name),
        i(system_type_id),
        i(user_type_id),
        i(schema_id),
        Value::Null,
        i(max_len),
        i(prec),
        i(scale),
        // "Name of the collation of the type if it is character-based".
        if datatype::is_character(ty) {
            s("SQL_Latin1_General_CP1_CI_AS")
        } else {
            Value::Null
        },
        b(nullable),
        b(user_defined),
        b(false),
        i(0),
        i(0),
        b(false),
    ]
}
