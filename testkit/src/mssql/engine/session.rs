//! One connection: its database, isolation level, variables and open transaction,
//! and the execution of a batch statement by statement.
//!
//! A batch is parsed whole before any of it runs. A batch run as a module (the
//! statement of an `sp_executesql` RPC, or `EXEC (N'…')`) is a scope of its own:
//! SET options and the database it changes revert when it returns, and returning
//! with a different `@@TRANCOUNT` than it was entered with is error 266. A plain
//! SQL batch is no module: its SETs and transactions last for the session.
//!
//! Outside a transaction each statement runs on a copy of the committed state taken
//! under the engine lock and, if it wrote, replaces it (statement atomicity). Inside
//! one, writes go to a private copy and are replayed onto the committed state at
//! COMMIT as one change-tracking version. A SNAPSHOT transaction keeps the copy it
//! took at its first statement, so its reads see the state as of that moment.

use std::collections::{BTreeSet, HashMap};

use super::ast::{ExecArg, Isolation, Statement, StatementKind};
use super::catalog::{ci, State};
use super::change_tracking::{self, Op, RowChange};
use super::ddl::{self, Who};
use super::dml::{self, Planned};
use super::env::Env;
use super::error;
use super::expr::{bind, truthy, Scope};
use super::parser::parse_batch;
use super::query;
use super::server::{Engine, SessionInfo, TransactionInfo};
use super::storage;
use super::value::{coerce, Key, Target};
use crate::mssql::types::{BackendSession, Outcome, Param, SqlError, Value};

/// The writes of one statement inside an explicit transaction.
struct Pending {
    planned: Planned,
    context: Option<std::sync::Arc<[u8]>>,
}

struct Transaction {
    /// `transaction_id` in the transaction DMVs.
    id: i64,
    /// Transaction sequence number and when it was assigned (engine clock, ms), once
    /// the transaction uses row versioning.
    xsn: Option<(i64, u64)>,
    snapshot: bool,
    /// Began under SNAPSHOT isolation: only such a transaction may (return to)
    /// SNAPSHOT later; any other is refused with Msg 3951.
    began_snapshot: bool,
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
    /// When the session logged in (engine clock, ms).
    login_ms: u64,
}

/// What a module restores when it returns: "If a SET statement runs in a stored
/// procedure or trigger, the value of the SET option gets restored after the stored
/// procedure or trigger returns control. Also, if you specify a SET statement in a
/// dynamic SQL string that runs by using either sp_executesql or EXECUTE, the value
/// of the SET option gets restored after control returns from the batch that you
/// specified in the dynamic SQL string." (SET Statements (Transact-SQL),
/// https://learn.microsoft.com/en-us/sql/t-sql/statements/set-statements-transact-sql;
/// for the isolation level in particular SET TRANSACTION ISOLATION LEVEL
/// (Transact-SQL), Remarks,
/// https://learn.microsoft.com/en-us/sql/t-sql/statements/set-transaction-isolation-level-transact-sql).
/// A `USE` in the string lasts only until it returns too ("Using sp_executesql",
/// Self-contained Batches,
/// https://learn.microsoft.com/en-us/previous-versions/sql/sql-server-2005/ms175170(v=sql.90)).
struct ModuleScope {
    isolation: Isolation,
    nocount: bool,
    database: String,
    /// `@@TRANCOUNT` at entry, compared on return (Msg 266).
    trancount: i64,
}

/// An error that ends the whole batch (and every module in it) was reported.
struct Abort;

impl Session {
    /// A session for an authenticated login in `database`.
    pub(super) fn new(engine: Engine, login: String, sysadmin: bool, database: String, spid: i64) -> Self {
        let login_ms = engine.now_ms();
        let session = Self {
            engine,
            login,
            sysadmin,
            database,
            isolation: Isolation::ReadCommitted,
            txn: None,
            vars: HashMap::new(),
            spid,
            nocount: false,
            login_ms,
        };
        session.publish();
        session
    }

    /// `@@TRANCOUNT`.
    fn trancount(&self) -> i64 {
        self.txn.as_ref().map_or(0, |t| t.depth)
    }

    /// Tells the engine what the DMVs should show of this session.
    fn publish(&self) {
        self.engine.publish_session(
            self.spid,
            SessionInfo {
                login: self.login.clone(),
                login_ms: self.login_ms,
                database: self.database.clone(),
                isolation: self.isolation,
                trancount: self.trancount(),
                transaction: self.txn.as_ref().map(|t| TransactionInfo {
                    id: t.id,
                    snapshot: t.snapshot,
                    xsn: t.xsn,
                }),
            },
        );
    }

    /// `SET TRANSACTION ISOLATION LEVEL`, also when a module's level is restored.
    /// Leaving SNAPSHOT inside a transaction: the transaction stops using row
    /// versioning and reads committed data from then on (SET TRANSACTION ISOLATION
    /// LEVEL (Transact-SQL), the table of changes between levels,
    /// https://learn.microsoft.com/en-us/sql/t-sql/statements/set-transaction-isolation-level-transact-sql).
    fn set_isolation(&mut self, level: Isolation) {
        self.isolation = level;
        if level == Isolation::Snapshot {
            return;
        }
        if let Some(t) = self.txn.as_mut().filter(|t| t.snapshot) {
            t.snapshot = false;
            t.private = None;
            if t.writes.is_empty() {
                t.base = None;
            }
        }
    }

    fn enter_module(&self) -> ModuleScope {
        ModuleScope {
            isolation: self.isolation,
            nocount: self.nocount,
            database: self.database.clone(),
            trancount: self.trancount(),
        }
    }

    /// A module returns: Msg 266 when `@@TRANCOUNT` differs from its value at entry
    /// (the transaction stays as the module left it: "Rollbacks and Commits in Stored
    /// Procedures and Triggers",
    /// https://learn.microsoft.com/en-us/previous-versions/sql/sql-server-2008-r2/ms187844(v=sql.105)),
    /// then the SET options and database revert. A batch aborted by an error that
    /// rolled the transaction back (deadlock victim, update conflict) never returns
    /// to its caller, so it raises no 266.
    fn leave_module(&mut self, scope: ModuleScope, aborted: bool, out: &mut Vec<Outcome>) {
        let current = self.trancount();
        let rolled_back_by_server =
            aborted && matches!(out.last(), Some(Outcome::Error(e)) if matches!(e.number, 1205 | 3960 | 3961 | 3964));
        if current != scope.trancount && !rolled_back_by_server {
            out.push(Outcome::Error(error::transaction_count_mismatch(
                scope.trancount,
                current,
            )));
        }
        if self.isolation != scope.isolation {
            self.set_isolation(scope.isolation);
        }
        self.nocount = scope.nocount;
        self.database = scope.database;
        self.publish();
    }

    /// Runs a parsed batch (a module when `module`) with `params` as its variables.
    fn batch(&mut self, sql: &str, params: &[Param], module: bool) -> Vec<Outcome> {
        if let Some(e) = self.engine.take_fault(sql) {
            self.txn = None;
            self.publish();
            return vec![Outcome::Error(e)];
        }
        // The whole batch is compiled before any of it runs: a syntax error anywhere
        // rejects all of it.
        let statements = match parse_batch(sql) {
            Ok(s) => s,
            Err(e) => return vec![Outcome::Error(e)],
        };
        self.vars = params.iter().map(|p| (ci(&p.name), p.value.clone())).collect();
        let scope = module.then(|| self.enter_module());
        let mut out = Vec::new();
        let aborted = self.run_each(&statements, &mut out).is_err();
        if let Some(scope) = scope {
            self.leave_module(scope, aborted, &mut out);
        }
        self.vars.clear();
        self.publish();
        out
    }

    /// Runs statements in order; an error that does not abort the batch ends only
    /// its statement.
    fn run_each(&mut self, statements: &[Statement], out: &mut Vec<Outcome>) -> Result<(), Abort> {
        for s in statements {
            self.run(s, out)?;
        }
        Ok(())
    }

    /// Runs one statement, appending its outcomes (and those of the statements it
    /// contains) to `out`.
    fn run(&mut self, stmt: &Statement, out: &mut Vec<Outcome>) -> Result<(), Abort> {
        let result = match &stmt.kind {
            StatementKind::Block(stmts) => return self.run_each(stmts, out),
            StatementKind::If {
                condition,
                then,
                otherwise,
            } => match self.eval_scalar(condition) {
                Ok(cond) if truthy(&cond) => return self.run(then, out),
                Ok(_) => match otherwise {
                    Some(o) => return self.run(o, out),
                    None => Ok(vec![Outcome::Done { row_count: None }]),
                },
                Err(e) => Err(e),
            },
            StatementKind::ExecString(sql) => return self.exec_string(sql, stmt.line, out),
            StatementKind::AlterTableSchema { .. } if self.txn.as_ref().is_some_and(|t| t.snapshot) => {
                return self.fail(error::ddl_in_snapshot_transaction(), stmt.line, out)
            }
            StatementKind::AlterTableSchema { table, change } => {
                return self.schema_change(stmt.line, None, out, |s, w| {
                    ddl::alter_table_schema(s, w, table, change)
                })
            }
            StatementKind::Rename(args) => return self.rename(args, stmt.line, out),
            _ => self.statement(stmt),
        };
        match result {
            Ok(o) => {
                out.extend(o);
                self.publish();
                Ok(())
            }
            Err(e) => self.fail(e, stmt.line, out),
        }
    }

    /// Reports a statement's error; `Err` when it ends the batch.
    fn fail(&mut self, mut e: SqlError, line: u32, out: &mut Vec<Outcome>) -> Result<(), Abort> {
        if e.line <= 1 {
            e.line = line;
        }
        let abort = error::aborts_batch(&e);
        // Snapshot isolation failures roll the transaction back (MSSQLSERVER_3961).
        if matches!(e.number, 3961 | 3964) {
            self.txn = None;
        }
        out.push(Outcome::Error(e));
        self.publish();
        if abort {
            Err(Abort)
        } else {
            Ok(())
        }
    }

    /// Runs a schema change against the committed state like [`Self::ddl`]; a refusal
    /// sends its leading messages (5074, 3728…) before the error that ends the
    /// statement, and a success sends `notice` (sp_rename's caution) before its DONE.
    fn schema_change(
        &mut self,
        line: u32,
        notice: Option<SqlError>,
        out: &mut Vec<Outcome>,
        f: impl FnOnce(&mut State, &Who<'_>) -> Result<(), ddl::Refusal>,
    ) -> Result<(), Abort> {
        let mut before = Vec::new();
        let result = self.ddl(|state, who| {
            f(state, who).map_err(|r| {
                before = r.before;
                r.error
            })
        });
        let at_line = |mut m: SqlError| {
            if m.line <= 1 {
                m.line = line;
            }
            Outcome::Message(m)
        };
        match result {
            Ok(done) => {
                out.extend(notice.map(at_line));
                out.extend(done);
                self.publish();
                Ok(())
            }
            Err(e) => {
                out.extend(before.into_iter().map(at_line));
                self.fail(e, line, out)
            }
        }
    }

    /// `EXEC sp_rename …`: binds the arguments as a procedure call does, then renames
    /// and sends Msg 15477's caution, severity 10 ("sp_rename (Transact-SQL)",
    /// <https://learn.microsoft.com/en-us/sql/relational-databases/system-stored-procedures/sp-rename-transact-sql>).
    fn rename(&mut self, args: &[ExecArg], line: u32, out: &mut Vec<Outcome>) -> Result<(), Abort> {
        let (objname, newname, objtype) = match self.rename_arguments(args) {
            Ok(a) => a,
            Err(e) => return self.fail(e, line, out),
        };
        self.schema_change(line, Some(error::rename_caution()), out, |s, w| {
            ddl::rename(s, w, &objname, &newname, objtype.as_deref())
        })
    }

    /// sp_rename's parameters `@objname, @newname [, @objtype]`, by position or by
    /// name (Msg 119 for a positional one after a named one, 8145 for an unknown name,
    /// 8144 for a fourth, 201 for a missing required one, 15223 for a NULL name).
    fn rename_arguments(&mut self, args: &[ExecArg]) -> Result<(String, String, Option<String>), SqlError> {
        const PARAMS: [&str; 3] = ["@objname", "@newname", "@objtype"];
        let mut values: [Option<Value>; 3] = [None, None, None];
        let mut named = false;
        for (k, a) in args.iter().enumerate() {
            let slot = match &a.name {
                Some(n) => {
                    named = true;
                    PARAMS
                        .iter()
                        .position(|p| p.eq_ignore_ascii_case(n))
                        .ok_or_else(|| error::not_a_parameter(n, "sp_rename"))?
                }
                None if named => return Err(error::positional_after_named(k + 1)),
                None if k >= PARAMS.len() => return Err(error::too_many_arguments("sp_rename")),
                None => k,
            };
            if let Some(e) = &a.value {
                values[slot] = Some(self.eval_scalar(e)?);
            }
        }
        let [objname, newname, objtype] = values;
        let text = |v: Value| match v {
            Value::String(s) => s,
            other => super::value::display_value(&other),
        };
        let required = |v: Option<Value>, p: &str| match v {
            None => Err(error::missing_parameter("sp_rename", p)),
            Some(Value::Null) => Err(error::rename_null_parameter(p)),
            Some(v) => Ok(text(v)),
        };
        let objname = required(objname, PARAMS[0])?;
        let newname = required(newname, PARAMS[1])?;
        let objtype = objtype.filter(|v| !matches!(v, Value::Null)).map(text);
        Ok((objname, newname, objtype))
    }

    /// `EXEC (N'…')`: the string is compiled when the EXEC runs, as a batch of its
    /// own that sees none of the caller's variables, and runs as a module.
    fn exec_string(&mut self, sql: &str, line: u32, out: &mut Vec<Outcome>) -> Result<(), Abort> {
        let statements = match parse_batch(sql) {
            Ok(s) => s,
            Err(e) => return self.fail(e, line, out),
        };
        let scope = self.enter_module();
        let caller_vars = std::mem::take(&mut self.vars);
        let result = self.run_each(&statements, out);
        self.vars = caller_vars;
        self.leave_module(scope, result.is_err(), out);
        result
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
                        // A SNAPSHOT transaction gets its sequence number at its
                        // first data access.
                        if t.xsn.is_none() {
                            t.xsn = Some((self.engine.next_xsn(), self.engine.now_ms()));
                        }
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
            trancount: self.trancount(),
            engine: &self.engine,
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
            // A write in a database with row versioning on gives the transaction
            // its sequence number.
            let versioned = state
                .database(&planned.database)
                .is_some_and(|d| d.snapshot_isolation || d.read_committed_snapshot);
            if let Some(t) = self.txn.as_mut() {
                if versioned && t.xsn.is_none() {
                    t.xsn = Some((self.engine.next_xsn(), self.engine.now_ms()));
                }
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

    /// Msg 3951: "A transaction cannot be set to SNAPSHOT isolation level that
    /// started with another isolation level; doing so will cause the transaction to
    /// abort" (SET TRANSACTION ISOLATION LEVEL). Checked when a statement reads or
    /// writes data; the transaction is rolled back.
    fn refuse_late_snapshot(&mut self) -> Result<(), SqlError> {
        if self.isolation == Isolation::Snapshot && self.txn.as_ref().is_some_and(|t| !t.began_snapshot) {
            self.txn = None;
            return Err(error::snapshot_after_start(&self.database));
        }
        Ok(())
    }

    fn statement(&mut self, stmt: &Statement) -> Result<Vec<Outcome>, SqlError> {
        let done = || Ok(vec![Outcome::Done { row_count: None }]);
        if matches!(
            stmt.kind,
            StatementKind::Query(_)
                | StatementKind::Insert { .. }
                | StatementKind::Update { .. }
                | StatementKind::Delete { .. }
                | StatementKind::WithContext { .. }
        ) {
            self.refuse_late_snapshot()?;
        }
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
            StatementKind::CreateType {
                name,
                base,
                base_name,
                nullable,
            } => self.ddl(|s, w| ddl::create_type(s, w, name, base, base_name, *nullable)),
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
                self.set_isolation(*level);
                done()
            }
            StatementKind::SetOption => done(),
            // Control flow and EXEC of a string run through `run`, which reports the
            // outcomes of each statement they contain.
            StatementKind::ExecString(_)
            | StatementKind::If { .. }
            | StatementKind::Block(_)
            | StatementKind::AlterTableSchema { .. }
            | StatementKind::Rename(_) => {
                let mut out = Vec::new();
                let _ = self.run(stmt, &mut out);
                Ok(out)
            }
            StatementKind::ExecProcedure(name) => Err(error::unknown_procedure(&name.display())),
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
                            id: self.engine.next_transaction_id(),
                            xsn: None,
                            snapshot: self.isolation == Isolation::Snapshot,
                            began_snapshot: self.isolation == Isolation::Snapshot,
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
        self.batch(sql, params, false)
    }

    fn execute_module(&mut self, sql: &str, params: &[Param]) -> Vec<Outcome> {
        self.batch(sql, params, true)
    }

    fn in_transaction(&self) -> bool {
        self.txn.is_some()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.engine.end_session(self.spid);
    }
}
