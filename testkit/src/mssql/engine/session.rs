//! One connection: its database, isolation level, variables and open transaction,
//! and the execution of a batch statement by statement.
//!
//! Outside a transaction each statement runs on a copy of the committed state taken
//! under the engine lock and, if it wrote, replaces it (statement atomicity). Inside
//! one, writes go to a private copy and are replayed onto the committed state at
//! COMMIT as one change-tracking version. A SNAPSHOT transaction keeps the copy it
//! took at its first statement, so its reads see the state as of that moment.

use std::collections::HashMap;

use super::ast::{Isolation, Statement, StatementKind};
use super::catalog::{ci, State};
use super::change_tracking::{self, Op};
use super::ddl::{self, Who};
use super::dml::{self, Planned};
use super::env::Env;
use super::error;
use super::expr::{bind, truthy, Scope};
use super::parser::parse_batch;
use super::query;
use super::server::Engine;
use super::storage;
use super::value::{coerce, Target};
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
}

impl Session {
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
                        t.private = Some(self.engine.committed());
                    }
                    t.private.clone().unwrap_or_else(|| self.engine.committed())
                } else {
                    let mut state = self.engine.committed();
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
            snapshot_txn: self.txn.as_ref().is_some_and(|t| t.snapshot),
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
            return Ok(vec![Outcome::Done { row_count: Some(count) }]);
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
        Ok(vec![Outcome::Done { row_count: Some(count) }])
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
            for w in t.writes {
                let mut changes = w.planned.changes;
                let db = w.planned.database;
                let table = w.planned.table_id;
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
                    Value::Binary(b) => {
                        if b.len() > 128 {
                            return Err(SqlError::new(8152, 16, "String or binary data would be truncated."));
                        }
                        Some(std::sync::Arc::from(b))
                    }
                    other => {
                        return Err(error::implicit_conversion(
                            super::value::family_name(&other),
                            "varbinary",
                        ))
                    }
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
            StatementKind::Grant { permissions, on, to } => self.ddl(|s, w| ddl::grant(s, w, permissions, on, to)),
            StatementKind::Use(db) => {
                let state = self.engine.committed();
                let Some(d) = state.database(db) else {
                    return Err(error::database_not_found(db));
                };
                if !self.sysadmin && d.user_for_login(&self.login).is_none() {
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
            StatementKind::Begin => {
                match self.txn.as_mut() {
                    Some(t) => t.depth += 1,
                    None => {
                        self.txn = Some(Transaction {
                            snapshot: self.isolation == Isolation::Snapshot,
                            depth: 1,
                            private: None,
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
            StatementKind::ExecString(sql) => {
                let statements = parse_batch(sql)?;
                let mut out = Vec::new();
                for s in &statements {
                    out.extend(self.statement(s)?);
                }
                Ok(out)
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

/// Records an autocommitted statement's changes in change tracking.
fn record(
    state: &mut State,
    database: &str,
    table: i64,
    changes: Vec<super::change_tracking::RowChange>,
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
