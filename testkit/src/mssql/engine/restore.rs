//! A database's incarnation (the GUIDs of `sys.database_recovery_status`) and full
//! backup / restore, so tests can rewind a database the way a DBA's restore does.
//!
//! Why it matters: "Applications that require synchronization must consider the case
//! in which a database that has change tracking enabled reverts to an earlier version
//! of the data. This can occur after a database is restored from a backup …" — after a
//! restore to version 70 new writes reuse versions 71, 72 … so a client whose
//! checkpoint is 100 validates it against CHANGE_TRACKING_MIN_VALID_VERSION and
//! silently misses the changes it lost ("Work with change tracking", Change Tracking
//! and Data Restore,
//! https://learn.microsoft.com/en-us/sql/relational-databases/track-changes/work-with-change-tracking-sql-server#change-tracking-and-data-restore).
//! What a restore changes (sourced in docs/sql-surface.md, "Database incarnation"):
//!
//! - `database_guid`: "When the database is restored, a new value is assigned"
//!   (backupset (Transact-SQL), database_guid,
//!   https://learn.microsoft.com/en-us/sql/relational-databases/system-tables/backupset-transact-sql);
//!   "RESTORE always generates a new GUID when you restore a database that does not
//!   yet exist" (sys.database_recovery_status (Transact-SQL),
//!   https://learn.microsoft.com/en-us/sql/relational-databases/system-catalog-views/sys-database-recovery-status-transact-sql).
//! - `family_guid`: "Unique ID of the original database at creation. This value
//!   remains the same when the database is restored, even to a different name"
//!   (backupset (Transact-SQL), family_guid).
//! - `recovery_fork_guid`: "Restoring a full database backup and recovering the
//!   database without using any other type of backup" creates a new recovery path
//!   ("Recovery Paths",
//!   https://learn.microsoft.com/en-us/previous-versions/sql/sql-server-2008-r2/ms175078(v=sql.105));
//!   the column "Identifies the current recovery fork on which the database is
//!   currently active" (sys.database_recovery_status).
//! - `first_recovery_fork_guid`: "Identifier of the starting recovery fork"
//!   (sys.database_recovery_status): the fork the backup was taken on, since "For
//!   data backups, first_recovery_fork_guid equals last_recovery_fork_guid"
//!   (backupset (Transact-SQL)). A database that never forked shows NULL here, as in
//!   the published output of `SELECT … first_recovery_fork_guid … FROM
//!   sys.database_recovery_status` right after CREATE DATABASE ("Identifying
//!   Databases with Multiple Recovery Paths", SQL Server 2012 T-SQL Recipes, quoted at
//!   https://demo2s.com/information-technologies/sql-server-identifying-databases-with-multiple-recovery-paths.html);
//!   Microsoft's page documents NULL only for an offline database.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use uuid::Uuid;

use super::catalog::{ci, Database};
use super::error;
use super::server::Engine;
use crate::mssql::types::SqlError;

/// The identity of one incarnation of a database, as `sys.database_recovery_status`
/// shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Incarnation {
    pub database_guid: Uuid,
    pub family_guid: Uuid,
    pub recovery_fork_guid: Uuid,
    /// `None` until the database has forked (been restored).
    pub first_recovery_fork_guid: Option<Uuid>,
}

impl Incarnation {
    /// A newly created database: the family is the database's first GUID
    /// ("Unique ID of the original database at creation", backupset).
    pub fn created() -> Self {
        let database_guid = new_guid();
        Self {
            database_guid,
            family_guid: database_guid,
            recovery_fork_guid: new_guid(),
            first_recovery_fork_guid: None,
        }
    }

    /// The incarnation a restore WITH RECOVERY of a full backup taken at `self`
    /// starts: same family, new database GUID, a new recovery fork that started from
    /// the backup's.
    fn restored(&self) -> Self {
        Self {
            database_guid: new_guid(),
            family_guid: self.family_guid,
            recovery_fork_guid: new_guid(),
            first_recovery_fork_guid: Some(self.recovery_fork_guid),
        }
    }
}

/// A random (version 4) GUID, as NEWID() makes, without an RNG dependency: the
/// standard library's randomly keyed hasher over a process-wide counter.
fn new_guid() -> Uuid {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let half = |salt: u64| {
        let mut h = RandomState::new().build_hasher();
        h.write_u64(n);
        h.write_u64(salt);
        h.finish()
    };
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&half(0).to_le_bytes());
    bytes[8..].copy_from_slice(&half(1).to_le_bytes());
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

/// A full database backup (`BACKUP DATABASE … TO DISK`): the committed state of one
/// database — tables, rows, users and grants, the change tracking settings, side
/// tables and current version — and its incarnation when it was taken.
#[derive(Debug, Clone)]
pub struct Backup {
    database: Database,
    taken_ms: u64,
}

impl Backup {
    /// The name of the backed-up database (where [`Engine::restore`] puts it back).
    pub fn database_name(&self) -> &str {
        &self.database.name
    }

    /// `CHANGE_TRACKING_CURRENT_VERSION()` when the backup was taken (`None` with
    /// change tracking off): where the version restarts from after a restore.
    pub fn change_tracking_version(&self) -> Option<i64> {
        self.database.tracking.as_ref().map(|_| self.database.ct_version)
    }

    /// When the backup was taken (engine clock, ms since the epoch).
    pub fn taken_ms(&self) -> u64 {
        self.taken_ms
    }
}

/// Msg 3101: "Exclusive access could not be obtained because the database is in use."
/// — "You cannot use the RESTORE DATABASE statement while the database is in use by
/// any user, including yourself" (Error 3101, Troubleshooting SQL Server,
/// https://documentation.help/trblsql.2/tr_reslsyserr_2_7mb5.htm). SQL Server follows
/// it with Msg 3013 "RESTORE DATABASE is terminating abnormally."
fn exclusive_access_denied() -> SqlError {
    SqlError::new(
        3101,
        16,
        "Exclusive access could not be obtained because the database is in use.",
    )
}

impl Engine {
    /// `BACKUP DATABASE [database] TO DISK = …` (a full backup of its committed
    /// state). Msg 911 if the database does not exist.
    pub fn backup(&self, database: &str) -> Result<Backup, SqlError> {
        let state = self.committed();
        let db = state
            .database(database)
            .ok_or_else(|| error::database_not_found(database))?;
        Ok(Backup {
            database: db.clone(),
            taken_ms: self.now_ms(),
        })
    }

    /// `RESTORE DATABASE [name] FROM DISK = … WITH REPLACE, RECOVERY` of `backup`
    /// (under the backup's database name): the database becomes exactly what it was
    /// at the backup — rows, change tracking side tables and settings, and
    /// CHANGE_TRACKING_CURRENT_VERSION, which therefore rewinds and is reused by the
    /// next writes — on a new recovery fork with a new database GUID (module docs).
    /// A database that still exists keeps its `database_id`; a dropped one is
    /// recreated with a new id. `sys.databases.create_date` becomes the restore time.
    ///
    /// Fails with Msg 3101 while any session's current database is this one: RESTORE
    /// needs exclusive access. Close those connections first (for TDS clients,
    /// `MssqlServer::drop_connections`, then wait until the sessions have ended), as a
    /// DBA would with `ALTER DATABASE … SET SINGLE_USER WITH ROLLBACK IMMEDIATE`.
    /// REPLACE is implied: the checks it skips (Msg 3154, a backup of another
    /// database; Msg 3159, tail of the log not backed up) are not modelled.
    pub fn restore(&self, backup: &Backup) -> Result<(), SqlError> {
        let name = backup.database.name.clone();
        if self.sessions().iter().any(|(_, s)| ci(&s.database) == ci(&name)) {
            return Err(exclusive_access_denied());
        }
        let now_ms = self.now_ms();
        self.mutate(|state| {
            let mut db = backup.database.clone();
            db.database_id = match state.database(&name) {
                Some(existing) => existing.database_id,
                None => {
                    let id = state.next_database_id;
                    state.next_database_id += 1;
                    id
                }
            };
            db.incarnation = backup.database.incarnation.restored();
            db.created_ms = now_ms;
            state.databases.insert(ci(&name), db);
            Ok(())
        })
    }

    /// The incarnation of `database` as `sys.database_recovery_status` shows it
    /// (`None` if it does not exist).
    pub fn incarnation(&self, database: &str) -> Option<Incarnation> {
        self.committed().database(database).map(|d| d.incarnation.clone())
    }
}
