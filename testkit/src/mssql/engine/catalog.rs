//! The server's state as persistent (structurally shared) values: logins, databases,
//! schemas, tables with their rows and change-tracking side data, users and grants.
//! Cloning a [`State`] is O(1), which is what makes SNAPSHOT transactions and
//! statement-level atomicity cheap even with millions of rows.

use std::sync::Arc;

use imbl::OrdMap;

use super::change_tracking::TableTracking;
use super::collation;
use super::restore::Incarnation;
use super::value::{Key, Row};
use crate::mssql::types::SqlType;

/// Lower-cased name used as a map key: identifiers compare case-insensitively under
/// the default collation.
pub fn ci(name: &str) -> String {
    name.to_lowercase()
}

/// A SQL login.
#[derive(Debug, Clone)]
pub struct Login {
    pub principal_id: i64,
    pub name: String,
    pub password: String,
    pub sysadmin: bool,
    pub default_database: String,
}

/// Database-level change tracking settings (`sys.change_tracking_databases`).
#[derive(Debug, Clone, PartialEq)]
pub struct DatabaseTracking {
    pub retention: i64,
    /// 1 = MINUTES, 2 = HOURS, 3 = DAYS, as `retention_period_units`.
    pub retention_units: u8,
    pub auto_cleanup: bool,
}

impl DatabaseTracking {
    /// The retention as milliseconds of the engine clock.
    pub fn retention_ms(&self) -> u64 {
        let unit: u64 = match self.retention_units {
            1 => 60_000,
            2 => 3_600_000,
            _ => 86_400_000,
        };
        u64::try_from(self.retention).unwrap_or(0).saturating_mul(unit)
    }

    /// `retention_period_units_desc`.
    pub fn units_desc(&self) -> &'static str {
        match self.retention_units {
            1 => "MINUTES",
            2 => "HOURS",
            _ => "DAYS",
        }
    }
}

/// A database user.
#[derive(Debug, Clone)]
pub struct User {
    pub principal_id: i64,
    pub name: String,
    /// The login it maps to (`dbo` maps to `sa`).
    pub login: Option<String>,
}

/// What a GRANT applies to, resolved to ids.
#[derive(Debug, Clone, PartialEq)]
pub enum GrantTarget {
    Object(i64),
    Schema(i64),
    Database,
}

/// One granted permission.
#[derive(Debug, Clone)]
pub struct Grant {
    pub principal_id: i64,
    /// Upper-cased, e.g. `SELECT`, `VIEW CHANGE TRACKING`.
    pub permission: String,
    /// A DENY, which wins over any GRANT (except for owners and sysadmins).
    pub deny: bool,
    pub target: GrantTarget,
}

/// A schema.
#[derive(Debug, Clone)]
pub struct Schema {
    pub schema_id: i64,
    pub name: String,
}

/// One column of a table.
#[derive(Debug, Clone)]
pub struct ColumnMeta {
    pub name: String,
    /// The (base) system type: what is stored and sent on the wire.
    pub ty: SqlType,
    /// The base type as declared (`numeric` vs `decimal`), for `sys.columns`/`sys.types` joins.
    pub type_name: String,
    pub nullable: bool,
    /// `sys.columns.user_type_id` when the column was declared with an alias type
    /// (`sysname`, 256, or a `CREATE TYPE … FROM …` type); `None` for a system type,
    /// whose user_type_id is its system_type_id.
    pub user_type_id: Option<i64>,
    /// `sys.columns.column_id`: "ID of the column. Is unique within the object.
    /// Column IDs might not be sequential" (sys.columns (Transact-SQL),
    /// <https://learn.microsoft.com/en-us/sql/relational-databases/system-catalog-views/sys-columns-transact-sql>).
    /// 1, 2, … at CREATE TABLE; an added column takes the table's next id and a
    /// dropped one leaves a gap (see [`Table::next_column_id`]). Change tracking's
    /// `SYS_CHANGE_COLUMNS` holds these ids.
    pub column_id: i64,
    /// The column's DEFAULT constraint (`ALTER TABLE … ADD c … DEFAULT …`), if any.
    pub default: Option<ColumnDefault>,
}

/// A DEFAULT constraint: its name (a schema-scoped object name) and its constant.
#[derive(Debug, Clone)]
pub struct ColumnDefault {
    pub name: String,
    pub value: crate::mssql::types::Value,
}

/// A user-defined alias data type (`CREATE TYPE [schema.]name FROM base_type`), a
/// row of `sys.types` with `is_user_defined = 1`.
#[derive(Debug, Clone)]
pub struct AliasType {
    /// Unique within the database, above the system types' ids (the first is 257).
    pub user_type_id: i64,
    pub schema_id: i64,
    pub name: String,
    /// The base system type, with its declared length / precision / scale.
    pub base: SqlType,
    /// The base type's name as declared (`numeric`, `smallmoney`…).
    pub base_name: String,
    /// `NULL` (the default) or `NOT NULL`: the default nullability of its columns.
    pub nullable: bool,
}

/// A user table: its definition, rows in primary-key order, and tracking state.
#[derive(Debug, Clone)]
pub struct Table {
    pub object_id: i64,
    pub schema_id: i64,
    pub name: String,
    pub columns: Arc<Vec<ColumnMeta>>,
    /// Indexes into `columns` of the primary key, in key order; empty for a heap.
    pub primary_key: Arc<Vec<usize>>,
    pub pk_name: Option<String>,
    /// Rows keyed by primary key (or a hidden row id for heaps).
    pub rows: OrdMap<Key, Row>,
    pub next_row_id: i64,
    pub tracking: Option<TableTracking>,
    pub created_ms: u64,
    /// `modify_date` of `sys.tables`/`sys.objects`: "Date the object was last
    /// modified by using an ALTER statement" (sys.objects (Transact-SQL),
    /// <https://learn.microsoft.com/en-us/sql/relational-databases/system-catalog-views/sys-objects-transact-sql>).
    /// Set at CREATE TABLE, moved by every ALTER TABLE and by sp_rename.
    pub modified_ms: u64,
    /// The `column_id` the next added column gets: one more than the highest ever
    /// given, so a dropped column's id is not reused.
    pub next_column_id: i64,
}

impl Table {
    /// The key of a row.
    pub fn key_of(&self, row: &[crate::mssql::types::Value]) -> Key {
        self.key_from(self.primary_key.iter().map(|&i| row[i].clone()).collect())
    }

    /// A key from its column values, its strings ordered by their column's collation
    /// rules (nchar/nvarchar key columns by the Unicode ones).
    pub fn key_from(&self, values: Vec<crate::mssql::types::Value>) -> Key {
        let unicode = self
            .primary_key
            .iter()
            .take(32)
            .enumerate()
            .filter(|(_, &c)| collation::rules_of(&self.columns[c].ty) == collation::Rules::Unicode)
            .fold(0u32, |m, (k, _)| m | (1 << k));
        Key::with_rules(values, unicode)
    }

    /// Index of a column by name (case-insensitive).
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns
            .iter()
            .position(|c| c.name.eq_ignore_ascii_case(name) || ci(&c.name) == ci(name))
    }
}

/// A database.
#[derive(Debug, Clone)]
pub struct Database {
    pub database_id: i64,
    pub name: String,
    pub snapshot_isolation: bool,
    pub read_committed_snapshot: bool,
    pub tracking: Option<DatabaseTracking>,
    /// The last committed change-tracking version (0 until a tracked change).
    pub ct_version: i64,
    /// When each version committed (engine clock, ms): retention works on these.
    pub version_times: OrdMap<i64, u64>,
    pub schemas: OrdMap<String, Schema>,
    pub tables: OrdMap<i64, Table>,
    pub users: OrdMap<String, User>,
    pub grants: imbl::Vector<Grant>,
    /// Alias types by `user_type_id`.
    pub types: OrdMap<i64, AliasType>,
    pub next_id: i64,
    pub created_ms: u64,
    /// The GUIDs of `sys.database_recovery_status`; a restore starts a new one.
    pub incarnation: Incarnation,
}

impl Database {
    /// A new database with the built-in schemas and users.
    pub fn new(database_id: i64, name: &str, now_ms: u64) -> Self {
        let mut schemas = OrdMap::new();
        for (id, n) in [(1, "dbo"), (2, "guest"), (3, "INFORMATION_SCHEMA"), (4, "sys")] {
            schemas.insert(
                ci(n),
                Schema {
                    schema_id: id,
                    name: n.into(),
                },
            );
        }
        let mut users = OrdMap::new();
        users.insert(
            "dbo".into(),
            User {
                principal_id: 1,
                name: "dbo".into(),
                login: Some("sa".into()),
            },
        );
        users.insert(
            "guest".into(),
            User {
                principal_id: 2,
                name: "guest".into(),
                login: None,
            },
        );
        Self {
            database_id,
            name: name.into(),
            // ALLOW_SNAPSHOT_ISOLATION is ON by default in `master` (and `msdb`),
            // OFF in a new database ("ALTER DATABASE SET options").
            snapshot_isolation: database_id == 1,
            read_committed_snapshot: false,
            tracking: None,
            ct_version: 0,
            version_times: OrdMap::new(),
            schemas,
            tables: OrdMap::new(),
            users,
            grants: imbl::Vector::new(),
            types: OrdMap::new(),
            next_id: 5,
            created_ms: now_ms,
            incarnation: Incarnation::created(),
        }
    }

    /// A fresh object id, shaped like SQL Server's (large, non-sequential-looking).
    pub fn allocate_object_id(&mut self) -> i64 {
        self.next_id += 1;
        245_575_913 + self.next_id * 16_000_057
    }

    /// A fresh schema or principal id.
    pub fn allocate_small_id(&mut self) -> i64 {
        self.next_id += 1;
        self.next_id
    }

    /// The schema with this name.
    pub fn schema(&self, name: &str) -> Option<&Schema> {
        self.schemas.get(&ci(name))
    }

    /// The schema name of an id.
    pub fn schema_name(&self, id: i64) -> Option<&str> {
        self.schemas
            .values()
            .find(|s| s.schema_id == id)
            .map(|s| s.name.as_str())
    }

    /// Looks a table up by schema and name.
    pub fn table_id(&self, schema: &str, name: &str) -> Option<i64> {
        let sid = self.schema(schema)?.schema_id;
        let lname = ci(name);
        self.tables
            .values()
            .find(|t| t.schema_id == sid && ci(&t.name) == lname)
            .map(|t| t.object_id)
    }

    /// The alias type `schema.name` (case-insensitive).
    pub fn alias_type(&self, schema: &str, name: &str) -> Option<&AliasType> {
        let sid = self.schema(schema)?.schema_id;
        let lname = ci(name);
        self.types.values().find(|t| t.schema_id == sid && ci(&t.name) == lname)
    }

    /// A fresh `user_type_id` for an alias type: 257 and up (256 is `sysname`).
    pub fn allocate_user_type_id(&self) -> i64 {
        self.types.keys().next_back().map_or(257, |id| id + 1)
    }

    /// Whether a login may open this database: it has a user here, or the
    /// database is `master`, where the `guest` user is enabled as in SQL Server.
    pub fn admits(&self, login: &str) -> bool {
        self.database_id == 1 || self.user_for_login(login).is_some()
    }

    /// The user a login maps to in this database.
    pub fn user_for_login(&self, login: &str) -> Option<&User> {
        let l = ci(login);
        self.users
            .values()
            .find(|u| u.login.as_deref().map(ci).as_deref() == Some(l.as_str()))
    }
}

/// Everything the server holds. Cloned for every statement and snapshot.
#[derive(Debug, Clone)]
pub struct State {
    pub logins: OrdMap<String, Login>,
    pub databases: OrdMap<String, Database>,
    pub next_database_id: i64,
    pub next_principal_id: i64,
}

impl State {
    /// The initial server: `sa` and `master`.
    pub fn new(sa_password: &str, now_ms: u64) -> Self {
        let mut logins = OrdMap::new();
        logins.insert(
            "sa".into(),
            Login {
                principal_id: 1,
                name: "sa".into(),
                password: sa_password.into(),
                sysadmin: true,
                default_database: "master".into(),
            },
        );
        let mut databases = OrdMap::new();
        databases.insert("master".into(), Database::new(1, "master", now_ms));
        Self {
            logins,
            databases,
            next_database_id: 5,
            next_principal_id: 259,
        }
    }

    /// The database with this name.
    pub fn database(&self, name: &str) -> Option<&Database> {
        self.databases.get(&ci(name))
    }

    /// The database with this name, mutably.
    pub fn database_mut(&mut self, name: &str) -> Option<&mut Database> {
        self.databases.get_mut(&ci(name))
    }

    /// The database with this id.
    pub fn database_by_id(&self, id: i64) -> Option<&Database> {
        self.databases.values().find(|d| d.database_id == id)
    }
}
