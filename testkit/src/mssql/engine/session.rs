//! One connection: its database, isolation level, variables and open transaction,
//! and the execution of a batch statement by statement.
//!
//! Outside a transaction each statement runs on a copy of the committed state taken
//! under the engine lock and, if it wrote, replaces it (statement atomicity). Inside
//! one, writes go to a private copy and are replayed onto the committed state at
//! COMMIT as one change-tracking version. A SNAPSHOT transaction keeps the copy it
//! took at its first statement, so its reads see the state as of that moment.

use std::collections::{BTreeSet, HashMap};

use super::ast::{Isolation, Statement, StatementKind};
use super::catalog::{ci, State};
use super::change_tracking::{self, Op, RowChange};
use super::ddl::{self, Who};
use super::dml::{self, Planned};
use super::env::Env;
use super::error;
use super::expr::{bind, truthy, Scope};
use super::parser::parse_batch;
use super::query;
use super::server::Engine;
use super::storage;
use super::value::{coerce, Key, Target};
use crate::mssql::types::{BackendSession, Outcome, Param, SqlError, Value};

/// The writes of one statement inside an explicit transaction.
struct Pending {
    planned: Planned,
    context: Option<std::sync::Arc<[u8]>>,
}

struct Transaction {
    snapshot: bool,
    /// Nesting depth (`@@TRANCOUNT`).
    depth: i64,
    /// The private state: the snapshot (SNAPSHOT) or the last rebuilt view.
    private: Option<State>,
    /// The committed state a SNAPSHOT transaction started from, to detect update
    /// conflicts (Msg 3960) at commit.
    base: Option<State>,
    /// The committed generation the READ COMMITTED private view was built from.
    generation: u64,
    writes: Vec<Pending>,
}

/// A logged-in connection to the engine.
pub struct Session {
    engine: Engine,
    login: String,
    sysadmin: bool,
    database: String,
    isolation: Isolation,
    txn: Option<Transaction>,
    vars: HashMap<String, Value>,
    spid: i64,
    /// `SET NOCOUNT ON`: DML outcomes carry no row count.
    nocount: bool,
}

impl Session {
    /// A session for an authenticated login in `database`.
    pub(super) fn new(engine: Engine, login: String, sysadmin: bool, database: String, spid: i64) -> Self {
        Self {
            engine,
            login,
            sysadmin,
            database,
            isolation: Isolation::ReadCommitted,
            txn: None,
            vars: HashMap::new(),
            spid,
            nocount: false,
        }
    }

    /// Runs `f` with a read view: the transaction's private state, or a copy of the
    /// committed state.
    fn read<R>(&mut self, f: impl FnOnce(&Env<'_>) -> Result<R, SqlError>) -> Result<R, SqlError> {
        let state = self.view_state();
        let env = self.env(&state);
        f(&env)
    }

    fn view_state(&mut self) -> State {
        match self.txn.as_mut() {
            Some(t) => {
                if t.snapshot {
                    if t.private.is_none() {
                        let snapshot = self.engine.committed();
                        t.base = Some(snapshot.clone());
                        t.private = Some(snapshot);
                    }
                    t.private.clone().unwrap_or_else(|| self.engine.committed())
                } else {
                    let (mut state, generation) = self.engine.committed_with_generation();
                    if let Some(private) = &t.private {
                        if t.generation == generation {
                            // Nothing committed since the view was built: it is current.
                            return private.clone();
                        }
                    }
                    t.generation = generation;
                    for w in &t.writes {
                        let mut changes = w.planned.changes.clone();
                        let _ = storage::apply(
                            &mut state,
                            &w.planned.database,
                            w.planned.table_id,
                            &mut changes,
                            &|| error::snapshot_update_conflict("", ""),
                        );
                    }
                    t.private = Some(state.clone());
                    state
                }
            }
            None => self.engine.committed(),
        }
    }

    fn env<'a>(&'a self, state: &'a State) -> Env<'a> {
        Env {
            state,
            database: &self.database,
            login: &self.login,
            sysadmin: self.sysadmin,
            vars: &self.vars,
            server_name: self.engine.server_name(),
            // Outside an explicit transaction each statement is its own transaction
            // at the session's isolation level.
            snapshot_txn: self
                .txn
                .as_ref()
                .map_or(self.isolation == Isolation::Snapshot, |t| t.snapshot),
            now: self.engine.now(),
            spid: self.spid,
            trancount: self.txn.as_ref().map_or(0, |t| t.depth),
        }
    }

    fn who(&self) -> Who<'_> {
        Who {
            login: &self.login,
            sysadmin: self.sysadmin,
            database: &self.database,
            now_ms: self.engine.now_ms(),
        }
    }

    /// Runs DDL against the committed state (DDL is not transactional here).
    fn ddl(&mut self, f: impl FnOnce(&mut State, &Who<'_>) -> Result<(), SqlError>) -> Result<Vec<Outcome>, SqlError> {
        let who = self.who();
        self.engine.mutate(|state| f(state, &who))?;
        if let Some(t) = self.txn.as_mut() {
            if !t.snapshot {
                t.private = None;
            }
        }
        Ok(vec![Outcome::Done { row_count: None }])
    }

    fn dml(&mut self, kind: &StatementKind, context: Option<std::sync::Arc<[u8]>>) -> Result<Vec<Outcome>, SqlError> {
        let plan = |env: &Env<'_>| -> Result<Planned, SqlError> {
            match kind {
                StatementKind::Insert { table, columns, rows } => {
                    dml::plan_insert(env, table, columns.as_deref(), rows)
                }
                StatementKind::Update { table, sets, filter } => dml::plan_update(env, table, sets, filter.as_ref()),
                StatementKind::Delete { table, filter } => dml::plan_delete(env, table, filter.as_ref()),
                _ => Err(error::syntax_near("")),
            }
        };
        if self.txn.is_some() {
            let mut state = self.view_state();
            let mut planned = {
                let env = self.env(&state);
                plan(&env)?
            };
            let count = planned.changes.len() as u64;
            storage::apply(
                &mut state,
                &planned.database,
                planned.table_id,
                &mut planned.changes,
                &|| error::snapshot_update_conflict("", ""),
            )?;
            if let Some(t) = self.txn.as_mut() {
                t.private = Some(state);
                t.writes.push(Pending { planned, context });
            }
            return Ok(vec![self.dml_done(count)]);
        }
        let now_ms = self.engine.now_ms();
        let count = {
            let this = &*self;
            this.engine.mutate(|state| {
                let mut planned = {
                    let env = this.env(state);
                    plan(&env)?
                };
                let count = planned.changes.len() as u64;
                storage::apply(
                    state,
                    &planned.database,
                    planned.table_id,
                    &mut planned.changes,
                    &|| error::snapshot_update_conflict("", ""),
                )?;
                record(
                    state,
                    &planned.database,
                    planned.table_id,
                    planned.changes,
                    context,
                    now_ms,
                );
                Ok(count)
            })?
        };
        Ok(vec![self.dml_done(count)])
    }

    fn dml_done(&self, count: u64) -> Outcome {
        Outcome::Done {
            row_count: (!self.nocount).then_some(count),
        }
    }

    fn commit(&mut self) -> Result<(), SqlError> {
        let Some(t) = self.txn.take() else {
            return Err(error::commit_without_begin());
        };
        if t.writes.is_empty() {
            return Ok(());
        }
        let now_ms = self.engine.now_ms();
        self.engine.mutate(|state| {
            let mut per_db: Vec<(String, Vec<Op>)> = Vec::new();
            let mut touched: BTreeSet<(i64, Key)> = BTreeSet::new();
            for w in t.writes {
                let mut changes = w.planned.changes;
                let db = w.planned.database;
                let table = w.planned.table_id;
                if let Some(base) = &t.base {
                    check_conflicts(state, base, &db, table, &changes, &mut touched)?;
                }
                storage::apply(state, &db, table, &mut changes, &|| {
                    error::snapshot_update_conflict(&table.to_string(), &db)
                })?;
                let ops = changes.into_iter().map(|change| Op {
                    table,
                    change,
                    context: w.context.clone(),
                });
                match per_db.iter_mut().find(|(d, _)| ci(d) == ci(&db)) {
                    Some((_, v)) => v.extend(ops),
                    None => per_db.push((db, ops.collect())),
                }
            }
            for (db, ops) in per_db {
                if let Some(d) = state.database_mut(&db) {
                    change_tracking::record(d, &ops, now_ms);
                }
            }
            Ok(())
        })
    }

    fn eval_scalar(&mut self, expr: &super::ast::Expr) -> Result<Value, SqlError> {
        self.read(|env| bind(expr, &Scope::default(), env)?.bound.eval(&[], env))
    }

    fn statement(&mut self, stmt: &Statement) -> Result<Vec<Outcome>, SqlError> {
        let done = || Ok(vec![Outcome::Done { row_count: None }]);
        match &stmt.kind {
            StatementKind::Query(q) => {
                let rs = self.read(|env| query::run(q, env))?;
                Ok(vec![Outcome::Rows {
                    columns: rs.columns,
                    rows: rs.rows,
                }])
            }
            k @ (StatementKind::Insert { .. } | StatementKind::Update { .. } | StatementKind::Delete { .. }) => {
                self.dml(k, None)
            }
            StatementKind::WithContext { context, statement } => {
                let v = self.eval_scalar(context)?;
                let ctx = match v {
                    Value::Null => None,
                    Value::Binary(b) if b.len() <= 128 => Some(std::sync::Arc::from(b)),
                    _ => return Err(error::invalid_change_tracking_context()),
                };
                self.dml(&statement.kind, ctx)
            }
            StatementKind::Truncate(name) => self.ddl(|s, w| ddl::truncate(s, w, name)),
            StatementKind::CreateDatabase(name) => {
                if self.txn.is_some() {
                    return Err(error::not_allowed_in_transaction("CREATE DATABASE"));
                }
                self.ddl(|s, w| ddl::create_database(s, w, name))
            }
            StatementKind::DropDatabase(name) => {
                if self.txn.is_some() {
                    return Err(error::not_allowed_in_transaction("DROP DATABASE"));
                }
                self.ddl(|s, w| ddl::drop_database(s, w, name))
            }
            StatementKind::CreateSchema(name) => self.ddl(|s, w| ddl::create_schema(s, w, name)),
            StatementKind::CreateTable {
                name,
                columns,
                primary_key,
            } => self.ddl(|s, w| ddl::create_table(s, w, name, columns, primary_key.as_ref())),
            StatementKind::DropTable { name, if_exists } => self.ddl(|s, w| ddl::drop_table(s, w, name, *if_exists)),
            StatementKind::AlterTableChangeTracking {
                table,
                enable,
                track_columns_updated,
            } => self.ddl(|s, w| ddl::alter_table_tracking(s, w, table, *enable, *track_columns_updated)),
            StatementKind::AlterDatabase { database, option } => {
                if self.txn.is_some() {
                    return Err(error::not_allowed_in_transaction("ALTER DATABASE"));
                }
                self.ddl(|s, w| ddl::alter_database(s, w, database.as_deref(), option))
            }
            StatementKind::CreateLogin { name, password } => self.ddl(|s, w| ddl::create_login(s, w, name, password)),
            StatementKind::CreateUser { name, login } => {
                self.ddl(|s, w| ddl::create_user(s, w, name, login.as_deref()))
            }
            StatementKind::Grant {
                action,
                permissions,
                on,
                to,
            } => self.ddl(|s, w| ddl::grant(s, w, *action, permissions, on, to)),
            StatementKind::Use(db) => {
                let state = self.engine.committed();
                let Some(d) = state.database(db) else {
                    return Err(error::database_not_found(db));
                };
                if !self.sysadmin && !d.admits(&self.login) {
                    return Err(error::cannot_access_database(&self.login, &d.name));
                }
                self.database = d.name.clone();
                done()
            }
            StatementKind::SetIsolation(level) => {
                self.isolation = *level;
                done()
            }
            StatementKind::SetOption => done(),
            StatementKind::ExecString(sql) => {
                let statements = parse_batch(sql)?;
                let mut out = Vec::new();
                for s in &statements {
                    out.extend(self.statement(s)?);
                }
                Ok(out)
            }
            StatementKind::Print(e) => {
                self.eval_scalar(e)?;
                done()
            }
            StatementKind::SetNoCount(on) => {
                self.nocount = *on;
                done()
            }
            StatementKind::Begin => {
                match self.txn.as_mut() {
                    Some(t) => t.depth += 1,
                    None => {
                        self.txn = Some(Transaction {
                            snapshot: self.isolation == Isolation::Snapshot,
                            depth: 1,
                            private: None,
                            base: None,
                            generation: 0,
                            writes: Vec::new(),
                        })
                    }
                }
                done()
            }
            StatementKind::Commit => {
                match self.txn.as_mut() {
                    Some(t) if t.depth > 1 => t.depth -= 1,
                    _ => self.commit()?,
                }
                done()
            }
            StatementKind::Rollback => {
                if self.txn.take().is_none() {
                    return Err(error::rollback_without_begin());
                }
                done()
            }
            StatementKind::If {
                condition,
                then,
                otherwise,
            } => {
                let cond = self.eval_scalar(condition)?;
                if truthy(&cond) {
                    self.statement(then)
                } else if let Some(o) = otherwise {
                    self.statement(o)
                } else {
                    done()
                }
            }
            StatementKind::Block(stmts) => {
                let mut out = Vec::new();
                for s in stmts {
                    out.extend(self.statement(s)?);
                }
                Ok(out)
            }
            StatementKind::Declare(vars) => {
                for (name, ty, init) in vars {
                    let v = match init {
                        Some(e) => {
                            let v = self.eval_scalar(e)?;
                            coerce(
                                v,
                                ty,
                                &Target {
                                    table: "",
                                    column: name,
                                },
                            )?
                        }
                        None => Value::Null,
                    };
                    self.vars.insert(ci(name), v);
                }
                done()
            }
            StatementKind::SetVariable { name, value } => {
                if !self.vars.contains_key(&ci(name)) {
                    return Err(error::undeclared_variable(name));
                }
                let v = self.eval_scalar(value)?;
                self.vars.insert(ci(name), v);
                done()
            }
        }
    }
}

/// Msg 3960: a SNAPSHOT transaction updating or deleting a row that another
/// transaction changed after the snapshot was taken.
fn check_conflicts(
    committed: &State,
    base: &State,
    database: &str,
    table: i64,
    changes: &[RowChange],
    touched: &mut BTreeSet<(i64, Key)>,
) -> Result<(), SqlError> {
    let now = committed.database(database).and_then(|d| d.tables.get(&table));
    let then = base.database(database).and_then(|d| d.tables.get(&table));
    let (Some(now), Some(then)) = (now, then) else {
        return Ok(());
    };
    for change in changes {
        let (old, new) = match change {
            RowChange::Update { old_key, key, .. } => (Some(old_key), key),
            RowChange::Delete { key } => (Some(key), key),
            RowChange::Insert { key, .. } => (None, key),
        };
        if let Some(old) = old {
            if !touched.contains(&(table, old.clone())) {
                let same = match (now.rows.get(old), then.rows.get(old)) {
                    (Some(a), Some(b)) => std::sync::Arc::ptr_eq(a, b),
                    _ => false,
                };
                if !same {
                    return Err(error::snapshot_update_conflict(
                        &format!(
                            "{}.{}",
                            committed
                                .database(database)
                                .and_then(|d| d.schema_name(now.schema_id))
                                .unwrap_or("dbo"),
                            now.name
                        ),
                        database,
                    ));
                }
            }
            touched.insert((table, old.clone()));
        }
        touched.insert((table, new.clone()));
    }
    Ok(())
}

/// Records an autocommitted statement's changes in change tracking.
fn record(
    state: &mut State,
    database: &str,
    table: i64,
    changes: Vec<RowChange>,
    context: Option<std::sync::Arc<[u8]>>,
    now_ms: u64,
) {
    let ops: Vec<Op> = changes
        .into_iter()
        .map(|change| Op {
            table,
            change,
            context: context.clone(),
        })
        .collect();
    if let Some(d) = state.database_mut(database) {
        change_tracking::record(d, &ops, now_ms);
    }
}

impl BackendSession for Session {
    fn database(&self) -> String {
        self.database.clone()
    }

    fn execute(&mut self, sql: &str, params: &[Param]) -> Vec<Outcome> {
        if let Some(e) = self.engine.take_fault(sql) {
            self.txn = None;
            return vec![Outcome::Error(e)];
        }
        let statements = match parse_batch(sql) {
            Ok(s) => s,
            Err(e) => return vec![Outcome::Error(e)],
        };
        self.vars = params.iter().map(|p| (ci(&p.name), p.value.clone())).collect();
        let mut out = Vec::new();
        for stmt in &statements {
            match self.statement(stmt) {
                Ok(o) => out.extend(o),
                Err(mut e) => {
                    if e.line <= 1 {
                        e.line = stmt.line;
                    }
                    let abort = error::aborts_batch(&e);
                    out.push(Outcome::Error(e));
                    if abort {
                        break;
                    }
                }
            }
        }
        self.vars.clear();
        out
    }

    fn in_transaction(&self) -> bool {
        self.txn.is_some()
    }
}
