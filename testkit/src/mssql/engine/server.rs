//! The engine handle: shared committed state behind one lock, the engine clock
//! (movable by tests, since change retention is time-based), logins, and the fast
//! programmatic path ([`Engine::transaction`]) that workloads and benchmarks use to
//! commit changes without SQL parsing.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, NaiveDateTime};

use super::ast::Isolation;
use super::catalog::{ci, State};
use super::change_tracking::{self, Op, RowChange};
use super::dml;
use super::error;
use super::session::Session;
use super::value::{coerce, Key, Row, Target};
use crate::mssql::types::{Backend, BackendSession, Outcome, SqlError, Value};

struct Inner {
    /// The committed state. A std mutex: held only to clone or swap the state (or
    /// for one autocommit statement), never across an await.
    state: Mutex<State>,
    clock_offset_ms: AtomicU64,
    next_spid: AtomicI64,
    /// Bumped under the state lock each time a new committed state is published.
    generation: AtomicU64,
    server_name: String,
    /// Injected failures: (text the batch must contain, error), consumed in order.
    faults: Mutex<std::collections::VecDeque<(String, SqlError)>>,
    /// What the server-scoped DMVs show of each live session, by session id.
    sessions: Mutex<BTreeMap<i64, SessionInfo>>,
    next_transaction_id: AtomicI64,
    /// Transaction sequence numbers (XSN) of row-versioning transactions.
    next_xsn: AtomicI64,
}

/// A live session as `sys.dm_exec_sessions` and the transaction DMVs show it;
/// each session publishes its own after every statement.
#[derive(Debug, Clone)]
pub(super) struct SessionInfo {
    pub login: String,
    pub login_ms: u64,
    /// The current database (its id is looked up when the view is read).
    pub database: String,
    pub isolation: Isolation,
    /// `@@TRANCOUNT`.
    pub trancount: i64,
    pub transaction: Option<TransactionInfo>,
}

/// A session's open transaction.
#[derive(Debug, Clone)]
pub(super) struct TransactionInfo {
    pub id: i64,
    pub snapshot: bool,
    /// The transaction sequence number and when it was assigned (engine clock, ms):
    /// at a SNAPSHOT transaction's first data access, or a transaction's first write
    /// in a database with row versioning on.
    pub xsn: Option<(i64, u64)>,
}

/// An in-memory SQL Server with Change Tracking. Cheap to clone (an `Arc`).
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl Default for Engine {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("server_name", &self.inner.server_name)
            .finish()
    }
}

/// The default `sa` password of [`Engine::new`].
pub const DEFAULT_SA_PASSWORD: &str = "Sa-Passw0rd!";

impl Engine {
    /// An engine with login `sa` (password [`DEFAULT_SA_PASSWORD`], sysadmin) and
    /// database `master`.
    pub fn new() -> Self {
        Self::with_sa_password(DEFAULT_SA_PASSWORD)
    }

    /// An engine whose `sa` login has this password.
    pub fn with_sa_password(password: &str) -> Self {
        let now = wall_ms();
        Self {
            inner: Arc::new(Inner {
                state: Mutex::new(State::new(password, now)),
                clock_offset_ms: AtomicU64::new(0),
                next_spid: AtomicI64::new(51),
                generation: AtomicU64::new(0),
                server_name: "TESTKIT-MSSQL".into(),
                faults: Mutex::new(std::collections::VecDeque::new()),
                sessions: Mutex::new(BTreeMap::new()),
                next_transaction_id: AtomicI64::new(1000),
                next_xsn: AtomicI64::new(1),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A copy of the committed state (O(1)).
    pub(super) fn committed(&self) -> State {
        self.lock().clone()
    }

    /// A copy of the committed state with its generation (bumped by every publish),
    /// so a READ COMMITTED transaction can tell whether its private view is stale.
    pub(super) fn committed_with_generation(&self) -> (State, u64) {
        let guard = self.lock();
        (guard.clone(), self.inner.generation.load(Ordering::Relaxed))
    }

    /// Runs `f` on a copy of the committed state under the lock and publishes the
    /// copy only if `f` succeeds: statement-level atomicity.
    pub(super) fn mutate<R>(&self, f: impl FnOnce(&mut State) -> Result<R, SqlError>) -> Result<R, SqlError> {
        let mut guard = self.lock();
        let mut work = guard.clone();
        let r = f(&mut work)?;
        *guard = work;
        self.inner.generation.fetch_add(1, Ordering::Relaxed);
        Ok(r)
    }

    /// `@@SERVERNAME`.
    pub fn server_name(&self) -> &str {
        &self.inner.server_name
    }

    /// The engine clock in milliseconds since the epoch (wall clock + advances).
    pub fn now_ms(&self) -> u64 {
        wall_ms().saturating_add(self.inner.clock_offset_ms.load(Ordering::Relaxed))
    }

    /// The engine clock as a date-time (GETDATE and catalog dates).
    pub(super) fn now(&self) -> NaiveDateTime {
        DateTime::from_timestamp_millis(i64::try_from(self.now_ms()).unwrap_or(0))
            .map(|d| d.naive_utc())
            .unwrap_or(NaiveDateTime::MIN)
    }

    /// Runs a batch as `sa` in `database` (convenience for tests and workloads);
    /// the first Error outcome becomes `Err`.
    pub fn execute(&self, database: &str, sql: &str) -> Result<Vec<Outcome>, SqlError> {
        let mut session = self.admin_session(database)?;
        let outcomes = session.execute(sql, &[]);
        if let Some(e) = outcomes.iter().find_map(|o| match o {
            Outcome::Error(e) => Some(e.clone()),
            _ => None,
        }) {
            return Err(e);
        }
        Ok(outcomes)
    }

    /// A session as `sa` in `database`, without a password check (test helper).
    pub fn admin_session(&self, database: &str) -> Result<Session, SqlError> {
        let state = self.committed();
        let db = state
            .database(database)
            .ok_or_else(|| error::cannot_open_database(database))?;
        Ok(Session::new(
            self.clone(),
            "sa".into(),
            true,
            db.name.clone(),
            self.spid(),
        ))
    }

    fn spid(&self) -> i64 {
        self.inner.next_spid.fetch_add(1, Ordering::Relaxed)
    }

    /// A new `transaction_id`.
    pub(super) fn next_transaction_id(&self) -> i64 {
        self.inner.next_transaction_id.fetch_add(1, Ordering::Relaxed)
    }

    /// A new transaction sequence number.
    pub(super) fn next_xsn(&self) -> i64 {
        self.inner.next_xsn.fetch_add(1, Ordering::Relaxed)
    }

    fn session_registry(&self) -> std::sync::MutexGuard<'_, BTreeMap<i64, SessionInfo>> {
        self.inner.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records what the DMVs show of session `spid`.
    pub(super) fn publish_session(&self, spid: i64, info: SessionInfo) {
        self.session_registry().insert(spid, info);
    }

    /// Forgets a closed session.
    pub(super) fn end_session(&self, spid: i64) {
        self.session_registry().remove(&spid);
    }

    /// Every live session, by session id.
    pub(super) fn sessions(&self) -> Vec<(i64, SessionInfo)> {
        self.session_registry()
            .iter()
            .map(|(spid, info)| (*spid, info.clone()))
            .collect()
    }

    /// Fast path for benchmarks and workloads: runs `f` as one committed transaction
    /// (one change-tracking version for all its changes), without SQL parsing. If
    /// `f` fails nothing is committed. `f` runs under the engine lock, so it must not
    /// call back into the engine (that would deadlock); other sessions wait for it.
    pub fn transaction<R>(
        &self,
        database: &str,
        f: impl FnOnce(&mut Txn<'_>) -> Result<R, SqlError>,
    ) -> Result<R, SqlError> {
        let now_ms = self.now_ms();
        self.mutate(|state| {
            let dbname = state
                .database(database)
                .map(|d| d.name.clone())
                .ok_or_else(|| error::database_not_found(database))?;
            let mut txn = Txn {
                state,
                database: dbname,
                ops: Vec::new(),
                context: None,
                tables: HashMap::new(),
            };
            let r = f(&mut txn)?;
            let Txn {
                state, database, ops, ..
            } = txn;
            if let Some(db) = state.database_mut(&database) {
                change_tracking::record(db, &ops, now_ms);
            }
            Ok(r)
        })
    }

    /// Moves the engine clock forward (change retention is measured on it).
    pub fn advance_clock(&self, by: Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.inner.clock_offset_ms.fetch_add(ms, Ordering::Relaxed);
    }

    /// Runs the change tracking auto-cleanup task for `database` now (a no-op when
    /// AUTO_CLEANUP is OFF or the database does not exist).
    pub fn run_change_tracking_cleanup(&self, database: &str) {
        let now = self.now_ms();
        let _ = self.mutate(|state| {
            if let Some(db) = state.database_mut(database) {
                change_tracking::cleanup(db, now);
            }
            Ok(())
        });
    }

    /// Fault injection: the next `n` batches whose text contains `needle`
    /// (case-insensitive) fail with `error` before running, and any open transaction
    /// of their session is rolled back — as SQL Server does to a deadlock victim (1205)
    /// or on a snapshot update conflict (3960).
    pub fn fail_next_batches_matching(&self, needle: &str, n: usize, error: SqlError) {
        let mut faults = self.inner.faults.lock().unwrap_or_else(|e| e.into_inner());
        for _ in 0..n {
            faults.push_back((needle.to_lowercase(), error.clone()));
        }
    }

    /// The error to fail this batch with, if a fault was injected for it.
    pub(super) fn take_fault(&self, sql: &str) -> Option<SqlError> {
        let mut faults = self.inner.faults.lock().unwrap_or_else(|e| e.into_inner());
        if faults.is_empty() {
            return None;
        }
        let lower = sql.to_lowercase();
        let at = faults.iter().position(|(needle, _)| lower.contains(needle.as_str()))?;
        faults.remove(at).map(|(_, e)| e)
    }

    /// `CHANGE_TRACKING_CURRENT_VERSION()` of `database` (`None` when change
    /// tracking is off or the database does not exist).
    pub fn current_version(&self, database: &str) -> Option<i64> {
        let state = self.committed();
        let db = state.database(database)?;
        db.tracking.as_ref().map(|_| db.ct_version)
    }
}

fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl Backend for Engine {
    type Session = Session;

    fn login(&self, user: &str, password: &str, database: Option<&str>) -> Result<Session, SqlError> {
        let state = self.committed();
        let login = state
            .logins
            .get(&ci(user))
            .filter(|l| l.password == password)
            .ok_or_else(|| error::login_failed(user))?;
        let dbname = database.unwrap_or(&login.default_database);
        let db = state
            .database(dbname)
            .ok_or_else(|| error::cannot_open_database(dbname))?;
        if !login.sysadmin && !db.admits(&login.name) {
            return Err(error::cannot_open_database(dbname));
        }
        Ok(Session::new(
            self.clone(),
            login.name.clone(),
            login.sysadmin,
            db.name.clone(),
            self.spid(),
        ))
    }
}

/// One transaction of [`Engine::transaction`]: row-level writes by table name
/// (`dbo.Orders`, `[dbo].[Orders]` or `Orders`) and primary key values.
pub struct Txn<'a> {
    state: &'a mut State,
    database: String,
    ops: Vec<Op>,
    context: Option<Arc<[u8]>>,
    tables: HashMap<String, i64>,
}

impl Txn<'_> {
    fn table_id(&mut self, table: &str) -> Result<i64, SqlError> {
        if let Some(id) = self.tables.get(table) {
            return Ok(*id);
        }
        let db = self
            .state
            .database(&self.database)
            .ok_or_else(|| error::database_not_found(&self.database))?;
        let id = dml::table_by_text(db, table)?;
        self.tables.insert(table.to_string(), id);
        Ok(id)
    }

    fn key(&self, id: i64, key: &[Value]) -> Result<Key, SqlError> {
        let db = self
            .state
            .database(&self.database)
            .ok_or_else(|| error::database_not_found(&self.database))?;
        let t = db
            .tables
            .get(&id)
            .ok_or_else(|| error::invalid_object(&id.to_string()))?;
        if key.len() != t.primary_key.len() {
            return Err(SqlError::new(
                8144,
                16,
                format!(
                    "Key of table '{}' has {} column(s), {} given.",
                    t.name,
                    t.primary_key.len(),
                    key.len()
                ),
            ));
        }
        let mut out = Vec::with_capacity(key.len());
        for (v, &i) in key.iter().zip(t.primary_key.iter()) {
            let c = &t.columns[i];
            out.push(coerce(
                v.clone(),
                &c.ty,
                &Target {
                    table: &t.name,
                    column: &c.name,
                },
            )?);
        }
        Ok(t.key_from(out))
    }

    /// Sets the `SYS_CHANGE_CONTEXT` of the following changes (≤ 128 bytes).
    pub fn set_context(&mut self, context: Vec<u8>) {
        self.context = Some(Arc::from(context));
    }

    /// Inserts a row given in column order.
    pub fn insert(&mut self, table: &str, row: Vec<Value>) -> Result<(), SqlError> {
        let id = self.table_id(table)?;
        let db = self
            .state
            .database_mut(&self.database)
            .ok_or_else(|| error::database_not_found(&self.database))?;
        let t = db.tables.get(&id).ok_or_else(|| error::invalid_object(table))?;
        if row.len() != t.columns.len() {
            return Err(error::insert_value_count());
        }
        let values = dml::check_row(db, t, row, "INSERT")?;
        let key = (!t.primary_key.is_empty()).then(|| t.key_of(&values));
        if let Some(k) = &key {
            if t.rows.contains_key(k) {
                return Err(error::duplicate_key(
                    t.pk_name.as_deref().unwrap_or("PK"),
                    &format!("{}.{}", db.schema_name(t.schema_id).unwrap_or("dbo"), t.name),
                    &k.display(),
                ));
            }
        }
        let t = db.tables.get_mut(&id).ok_or_else(|| error::invalid_object(table))?;
        let key = match key {
            Some(k) => k,
            None => {
                t.next_row_id += 1;
                Key::new(vec![Value::Int(t.next_row_id - 1)])
            }
        };
        let row: Row = Row::from(values);
        t.rows.insert(key.clone(), row.clone());
        self.ops.push(Op {
            table: id,
            change: RowChange::Insert { key, row },
            context: self.context.clone(),
        });
        Ok(())
    }

    /// Updates the row with this primary key; returns whether it existed.
    pub fn update(&mut self, table: &str, key: &[Value], set: &[(&str, Value)]) -> Result<bool, SqlError> {
        let id = self.table_id(table)?;
        let old_key = self.key(id, key)?;
        let db = self
            .state
            .database_mut(&self.database)
            .ok_or_else(|| error::database_not_found(&self.database))?;
        let t = db.tables.get(&id).ok_or_else(|| error::invalid_object(table))?;
        let Some(old) = t.rows.get(&old_key) else {
            return Ok(false);
        };
        let mut values = old.to_vec();
        let mut changed = Vec::with_capacity(set.len());
        for (name, v) in set {
            let i = t.column_index(name).ok_or_else(|| error::invalid_column(name))?;
            values[i] = v.clone();
            changed.push(i);
        }
        let values = dml::check_row(db, t, values, "UPDATE")?;
        let new_key = t.key_of(&values);
        if new_key != old_key && t.rows.contains_key(&new_key) {
            return Err(error::duplicate_key(
                t.pk_name.as_deref().unwrap_or("PK"),
                &format!("{}.{}", db.schema_name(t.schema_id).unwrap_or("dbo"), t.name),
                &new_key.display(),
            ));
        }
        let t = db.tables.get_mut(&id).ok_or_else(|| error::invalid_object(table))?;
        let row: Row = Row::from(values);
        if new_key != old_key {
            t.rows.remove(&old_key);
        }
        t.rows.insert(new_key.clone(), row.clone());
        self.ops.push(Op {
            table: id,
            change: RowChange::Update {
                old_key,
                key: new_key,
                row,
                changed: changed.into(),
            },
            context: self.context.clone(),
        });
        Ok(true)
    }

    /// Deletes the row with this primary key; returns whether it existed.
    pub fn delete(&mut self, table: &str, key: &[Value]) -> Result<bool, SqlError> {
        let id = self.table_id(table)?;
        let key = self.key(id, key)?;
        let db = self
            .state
            .database_mut(&self.database)
            .ok_or_else(|| error::database_not_found(&self.database))?;
        let t = db.tables.get_mut(&id).ok_or_else(|| error::invalid_object(table))?;
        if t.rows.remove(&key).is_none() {
            return Ok(false);
        }
        self.ops.push(Op {
            table: id,
            change: RowChange::Delete { key },
            context: self.context.clone(),
        });
        Ok(true)
    }
}
