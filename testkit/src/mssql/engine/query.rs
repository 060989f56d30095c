//! SELECT execution: resolving FROM sources (user tables, catalog views,
//! `CHANGETABLE(CHANGES …)`), nested-loop joins that become primary-key lookups when
//! the ON clause pins the right table's key, WHERE, ORDER BY, TOP and UNION ALL.
//!
//! Rows are pushed through the pipeline; when ORDER BY follows the first source's
//! natural order (clustered key, or version-then-key for CHANGETABLE) nothing is
//! sorted and TOP stops the scan early, and a keyset predicate on the leading key
//! column starts the scan at that key. That keeps snapshot chunks and change
//! queries proportional to what they return, not to the table. A predicate on a
//! varchar key compared under the Unicode collation rules (an nvarchar parameter) does
//! not start the scan: the key is stored in non-Unicode order, so like SQL Server after
//! its implicit conversion, every row is filtered.

use std::cmp::Ordering;

use super::aggregate;
use super::ast::{BinOp, Expr, JoinKind, OrderItem, Query, Select, SelectItem, TableRef};
use super::catalog::{ci, Database, Table};
use super::change_tracking::{self, TableTracking};
use super::collation::{self, Rules};
use super::env::Env;
use super::error;
use super::expr::{bind, truthy, wider, Bound, Scope, ScopeColumn};
use super::functions::find_table;
use super::security;
use super::sysviews;
use super::value::{sort_cmp_as, Key, Row};
use crate::mssql::types::{Column, SqlError, SqlType, Value};

/// Rows of one source.
enum Rows<'s> {
    Table(&'s Table),
    Changes {
        tracking: &'s TableTracking,
        since: Option<i64>,
    },
    Materialized(Vec<Vec<Value>>),
}

struct Source<'s> {
    columns: Vec<ScopeColumn>,
    rows: Rows<'s>,
    /// Local column positions the rows come ordered by.
    natural_order: Vec<usize>,
}

/// A result: column metadata and rows.
pub struct ResultSet {
    pub columns: Vec<Column>,
    pub rows: Vec<Vec<Value>>,
}

/// Resolves a user table for reading or writing (Msg 208 when missing).
pub fn resolve_table<'e>(
    env: &'e Env<'_>,
    name: &super::ast::ObjectName,
) -> Result<(&'e Database, &'e Table), SqlError> {
    if let Some(d) = name.database() {
        if env.state.database(d).is_none() {
            return Err(error::invalid_object(&name.display()));
        }
    }
    find_table(env, name).ok_or_else(|| error::invalid_object(&name.display()))
}

fn snapshot_check(env: &Env<'_>, db: &Database) -> Result<(), SqlError> {
    if env.snapshot_txn && !db.snapshot_isolation {
        return Err(error::snapshot_not_allowed(&db.name));
    }
    Ok(())
}

/// Msg 3961: an explicit SNAPSHOT transaction touching a table whose definition a DDL
/// statement (ALTER TABLE, sp_rename, DROP TABLE) changed after its snapshot was taken:
/// "the object accessed by the statement has been modified by a DDL statement in
/// another concurrent transaction since the start of this transaction. It is
/// disallowed because the metadata is not versioned" (MSSQLSERVER_3961,
/// <https://learn.microsoft.com/en-us/sql/relational-databases/errors-events/mssqlserver-3961-database-engine-error>).
/// A single autocommitted statement has no earlier snapshot to be stale against.
pub fn metadata_check(env: &Env<'_>, db: &Database, table: &Table) -> Result<(), SqlError> {
    if !env.snapshot_txn || env.trancount == 0 {
        return Ok(());
    }
    let committed = env.engine.committed();
    match committed
        .database(&db.name)
        .and_then(|d| d.tables.get(&table.object_id))
    {
        Some(now)
            if std::sync::Arc::ptr_eq(&now.columns, &table.columns)
                && now.name == table.name
                && now.modified_ms == table.modified_ms =>
        {
            Ok(())
        }
        _ => Err(error::snapshot_metadata_changed(&db.name)),
    }
}

fn table_columns(exposed: &str, table: &Table) -> Vec<ScopeColumn> {
    table
        .columns
        .iter()
        .map(|c| ScopeColumn {
            qualifier: exposed.to_string(),
            name: c.name.clone(),
            ty: c.ty.clone(),
            nullable: c.nullable,
        })
        .collect()
}

/// The scope of a single table (UPDATE/DELETE).
pub fn table_scope(exposed: &str, table: &Table) -> Scope {
    Scope {
        columns: table_columns(exposed, table),
    }
}

fn open_source<'s>(env: &'s Env<'_>, table_ref: &TableRef) -> Result<Source<'s>, SqlError> {
    match table_ref {
        TableRef::Named { name, alias } => {
            let exposed = alias.clone().unwrap_or_else(|| name.object().to_string());
            if name.schema().is_some_and(|s| s.eq_ignore_ascii_case("sys")) {
                let db = match name.database() {
                    Some(d) => env
                        .state
                        .database(d)
                        .ok_or_else(|| error::invalid_object(&name.display()))?,
                    None => env.current_db()?,
                };
                sysviews::check_access(env, name.object())?;
                let view =
                    sysviews::view(env, db, name.object()).ok_or_else(|| error::invalid_object(&name.display()))?;
                return Ok(Source {
                    columns: view
                        .columns
                        .iter()
                        .map(|(n, ty, nullable)| ScopeColumn {
                            qualifier: exposed.clone(),
                            name: (*n).to_string(),
                            ty: ty.clone(),
                            nullable: *nullable,
                        })
                        .collect(),
                    rows: Rows::Materialized(view.rows),
                    natural_order: vec![],
                });
            }
            let (db, table) = resolve_table(env, name)?;
            snapshot_check(env, db)?;
            metadata_check(env, db, table)?;
            security::require_table_permission(env, db, table, "SELECT")?;
            Ok(Source {
                columns: table_columns(&exposed, table),
                rows: Rows::Table(table),
                natural_order: table.primary_key.to_vec(),
            })
        }
        TableRef::ChangeTable {
            table: name,
            since,
            alias,
        } => {
            let (db, table) = resolve_table(env, name)?;
            let display = format!("{}.{}", db.schema_name(table.schema_id).unwrap_or("dbo"), table.name);
            let tracking = match (&db.tracking, &table.tracking) {
                (Some(_), Some(t)) => t,
                _ => return Err(error::change_tracking_not_enabled_on_table(&display)),
            };
            snapshot_check(env, db)?;
            metadata_check(env, db, table)?;
            security::require_table_permission(env, db, table, "VIEW CHANGE TRACKING")?;
            security::require_table_permission(env, db, table, "SELECT")?;
            let since_value = bind(since, &Scope::default(), env)?.bound.eval(&[], env)?;
            let since = match since_value {
                Value::Null => None,
                Value::Int(i) => Some(i),
                other => match super::value::coerce(
                    other,
                    &SqlType::BigInt,
                    &super::value::Target { table: "", column: "" },
                )? {
                    Value::Int(i) => Some(i),
                    _ => None,
                },
            };
            let mut columns = vec![
                ScopeColumn {
                    qualifier: alias.clone(),
                    name: "SYS_CHANGE_VERSION".into(),
                    ty: SqlType::BigInt,
                    nullable: false,
                },
                ScopeColumn {
                    qualifier: alias.clone(),
                    name: "SYS_CHANGE_CREATION_VERSION".into(),
                    ty: SqlType::BigInt,
                    nullable: true,
                },
                ScopeColumn {
                    qualifier: alias.clone(),
                    name: "SYS_CHANGE_OPERATION".into(),
                    ty: SqlType::NChar(1),
                    nullable: true,
                },
                ScopeColumn {
                    qualifier: alias.clone(),
                    name: "SYS_CHANGE_COLUMNS".into(),
                    ty: SqlType::VarBinary(Some(4100)),
                    nullable: true,
                },
                ScopeColumn {
                    qualifier: alias.clone(),
                    name: "SYS_CHANGE_CONTEXT".into(),
                    ty: SqlType::VarBinary(Some(128)),
                    nullable: true,
                },
            ];
            for &k in table.primary_key.iter() {
                let c = &table.columns[k];
                columns.push(ScopeColumn {
                    qualifier: alias.clone(),
                    name: c.name.clone(),
                    ty: c.ty.clone(),
                    nullable: false,
                });
            }
            let mut natural_order = vec![0];
            natural_order.extend(5..5 + table.primary_key.len());
            Ok(Source {
                columns,
                rows: Rows::Changes { tracking, since },
                natural_order,
            })
        }
    }
}

fn change_values(c: change_tracking::ChangeRow) -> Vec<Value> {
    let mut v = Vec::with_capacity(5 + c.key.0.len());
    v.push(Value::Int(c.version));
    v.push(c.creation_version.map_or(Value::Null, Value::Int));
    v.push(Value::String(c.operation.to_string()));
    v.push(c.columns.map_or(Value::Null, Value::Binary));
    v.push(c.context.map_or(Value::Null, |x| Value::Binary(x.to_vec())));
    v.extend(c.key.0.iter().cloned());
    v
}

struct JoinPlan {
    kind: JoinKind,
    on: Option<Bound>,
    /// Expressions (over the left columns) giving the right table's key.
    lookup: Option<Vec<Bound>>,
    width: usize,
    /// Right rows when not looked up by key.
    rows: Vec<Vec<Value>>,
}

/// How the first source is scanned.
enum Access {
    Full,
    From(Key),
    Point(Vec<Bound>),
    /// CHANGETABLE rows up to this SYS_CHANGE_VERSION (they come in version order,
    /// so the scan stops there instead of filtering the rest).
    UpToVersion(i64),
}

/// An upper bound on column 0 (`SYS_CHANGE_VERSION`) implied by an AND-only filter.
fn version_upper_bound(filter: Option<&Bound>) -> Option<i64> {
    let f = filter?;
    if f.disjuncts().len() != 1 {
        return None;
    }
    let mut best: Option<i64> = None;
    for c in f.conjuncts() {
        let Bound::Cmp(op, _, a, b) = c else {
            continue;
        };
        let bound = match (op, a.as_ref(), b.as_ref()) {
            (BinOp::Le | BinOp::Eq, Bound::Col(0), Bound::Const(Value::Int(v)))
            | (BinOp::Ge | BinOp::Eq, Bound::Const(Value::Int(v)), Bound::Col(0)) => Some(*v),
            (BinOp::Lt, Bound::Col(0), Bound::Const(Value::Int(v)))
            | (BinOp::Gt, Bound::Const(Value::Int(v)), Bound::Col(0)) => Some(v.saturating_sub(1)),
            _ => None,
        };
        if let Some(v) = bound {
            best = Some(best.map_or(v, |b| b.min(v)));
        }
    }
    best
}

struct Plan<'s> {
    sources: Vec<Source<'s>>,
    joins: Vec<JoinPlan>,
    filter: Option<Bound>,
    access: Access,
}

/// Finds, for each key column (global positions), a conjunct `col = expr` where
/// `expr` reads only columns below `limit`.
fn key_lookup(on: &Bound, key_cols: &[usize], limit: usize) -> Option<Vec<Bound>> {
    let conj = on.conjuncts();
    let mut out = Vec::new();
    for &k in key_cols {
        let found = conj.iter().find_map(|c| match c {
            Bound::Cmp(BinOp::Eq, _, a, b) => match (a.as_ref(), b.as_ref()) {
                (Bound::Col(i), other) | (other, Bound::Col(i))
                    if *i == k
                        && other.max_column().is_none_or(|m| m < limit)
                        && !matches!(other, Bound::Col(j) if *j == k) =>
                {
                    Some(clone_simple(other)?)
                }
                _ => None,
            },
            _ => None,
        })?;
        out.push(found);
    }
    Some(out)
}

/// Clones expressions made of columns and constants (all a key lookup needs).
fn clone_simple(b: &Bound) -> Option<Bound> {
    match b {
        Bound::Const(v) => Some(Bound::Const(v.clone())),
        Bound::Col(i) => Some(Bound::Col(*i)),
        _ => None,
    }
}

/// A lower bound on the leading key column implied by every OR branch of `filter`.
/// `key_rules` is the collation rules a string key column is stored in: an inequality
/// under other rules bounds nothing in storage order (equality is the same under both).
fn leading_lower_bound(filter: &Bound, col: usize, key_rules: Option<Rules>) -> Option<Value> {
    let mut best: Option<Value> = None;
    for d in filter.disjuncts() {
        let mut found: Option<Value> = None;
        for c in d.conjuncts() {
            if let Bound::Cmp(op, rules, a, b) = c {
                if *op != BinOp::Eq && key_rules.is_some_and(|k| k != *rules) {
                    continue;
                }
                let v = match (op, a.as_ref(), b.as_ref()) {
                    (BinOp::Gt | BinOp::Ge | BinOp::Eq, Bound::Col(i), Bound::Const(v)) if *i == col => Some(v),
                    (BinOp::Lt | BinOp::Le | BinOp::Eq, Bound::Const(v), Bound::Col(i)) if *i == col => Some(v),
                    _ => None,
                };
                if let Some(v) = v {
                    if !matches!(v, Value::Null) {
                        found = Some(v.clone());
                    }
                }
            }
        }
        let v = found?;
        best = Some(match best {
            Some(b) if sort_cmp_as(&b, &v, key_rules.unwrap_or_default()) != Ordering::Greater => b,
            _ => v,
        });
    }
    best
}

/// Chooses how to scan a table given its filter (bound against the table's columns
/// first): exact key, key range, or full.
fn table_access(filter: Option<&Bound>, table: &Table) -> Access {
    let Some(f) = filter else {
        return Access::Full;
    };
    let pk_global: &[usize] = &table.primary_key;
    if pk_global.is_empty() {
        return Access::Full;
    }
    if f.disjuncts().len() == 1 {
        if let Some(exprs) = key_lookup(f, pk_global, 0) {
            return Access::Point(exprs);
        }
    }
    let leading = &table.columns[pk_global[0]].ty;
    let key_rules = collation::is_text(leading).then(|| collation::rules_of(leading));
    match leading_lower_bound(f, pk_global[0], key_rules) {
        Some(v) => Access::From(Key::new(vec![v])),
        None => Access::Full,
    }
}

impl Plan<'_> {
    fn width(&self) -> usize {
        self.sources.iter().map(|s| s.columns.len()).sum()
    }

    /// Pushes every joined, filtered row to `sink` until it returns `false`.
    fn scan(&self, env: &Env<'_>, sink: &mut dyn FnMut(&[Value]) -> Result<bool, SqlError>) -> Result<(), SqlError> {
        let mut buf: Vec<Value> = Vec::with_capacity(self.width());
        let mut emit = |row: &[Value], buf: &mut Vec<Value>| -> Result<bool, SqlError> {
            buf.clear();
            buf.extend_from_slice(row);
            self.join(1, buf, env, sink)
        };
        match &self.sources[0].rows {
            Rows::Table(t) => match &self.access {
                Access::Point(exprs) => {
                    let mut key = Vec::with_capacity(exprs.len());
                    for e in exprs {
                        key.push(e.eval(&[], env)?);
                    }
                    if key.iter().any(|v| matches!(v, Value::Null)) {
                        return Ok(());
                    }
                    if let Some(row) = t.rows.get(&Key::new(key)) {
                        emit(row, &mut buf)?;
                    }
                }
                Access::From(start) => {
                    for (_, row) in t.rows.range(start.clone()..) {
                        if !emit(row, &mut buf)? {
                            break;
                        }
                    }
                }
                Access::Full | Access::UpToVersion(_) => {
                    for row in t.rows.values() {
                        if !emit(row, &mut buf)? {
                            break;
                        }
                    }
                }
            },
            Rows::Changes { tracking, since } => {
                let upper = match self.access {
                    Access::UpToVersion(v) => v,
                    _ => i64::MAX,
                };
                for c in change_tracking::changes_since(tracking, *since) {
                    if c.version > upper {
                        break;
                    }
                    let values = change_values(c);
                    if !emit(&values, &mut buf)? {
                        break;
                    }
                }
            }
            Rows::Materialized(rows) => {
                for row in rows {
                    if !emit(row, &mut buf)? {
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    fn join(
        &self,
        level: usize,
        buf: &mut Vec<Value>,
        env: &Env<'_>,
        sink: &mut dyn FnMut(&[Value]) -> Result<bool, SqlError>,
    ) -> Result<bool, SqlError> {
        if level == self.sources.len() {
            if let Some(f) = &self.filter {
                if !truthy(&f.eval(buf, env)?) {
                    return Ok(true);
                }
            }
            return sink(buf);
        }
        let plan = &self.joins[level - 1];
        let base = buf.len();
        let mut matched = false;
        let mut try_row = |row: &[Value], buf: &mut Vec<Value>, matched: &mut bool| -> Result<bool, SqlError> {
            buf.truncate(base);
            buf.extend_from_slice(row);
            let ok = match &plan.on {
                Some(on) => truthy(&on.eval(buf, env)?),
                None => true,
            };
            if ok {
                *matched = true;
                return self.join(level + 1, buf, env, sink);
            }
            Ok(true)
        };
        if let (Some(exprs), Rows::Table(t)) = (&plan.lookup, &self.sources[level].rows) {
            let mut key = Vec::with_capacity(exprs.len());
            for e in exprs {
                key.push(e.eval(buf, env)?);
            }
            if !key.iter().any(|v| matches!(v, Value::Null)) {
                if let Some(row) = t.rows.get(&Key::new(key)) {
                    let row: Row = row.clone();
                    if !try_row(&row, buf, &mut matched)? {
                        return Ok(false);
                    }
                }
            }
        } else {
            for row in &plan.rows {
                if !try_row(row, buf, &mut matched)? {
                    return Ok(false);
                }
            }
        }
        if !matched && plan.kind == JoinKind::Left {
            buf.truncate(base);
            buf.extend(std::iter::repeat_n(Value::Null, plan.width));
            let cont = self.join(level + 1, buf, env, sink)?;
            buf.truncate(base);
            return Ok(cont);
        }
        buf.truncate(base);
        Ok(true)
    }
}

fn materialize(source: &Source<'_>) -> Vec<Vec<Value>> {
    match &source.rows {
        Rows::Table(t) => t.rows.values().map(|r| r.to_vec()).collect(),
        Rows::Changes { tracking, since } => change_tracking::changes_since(tracking, *since)
            .map(change_values)
            .collect(),
        Rows::Materialized(rows) => rows.clone(),
    }
}

struct Projection {
    columns: Vec<Column>,
    exprs: Vec<Bound>,
}

fn output_name(expr: &Expr) -> String {
    match expr {
        Expr::Column { name, .. } => name.clone(),
        _ => String::new(),
    }
}

fn project(select: &Select, scope: &Scope, env: &Env<'_>) -> Result<Projection, SqlError> {
    let mut columns = Vec::new();
    let mut exprs = Vec::new();
    for item in &select.items {
        match item {
            SelectItem::Star(q) => {
                if select.from.is_none() {
                    return Err(error::star_without_from());
                }
                let mut any = false;
                for (i, c) in scope.columns.iter().enumerate() {
                    if q.as_ref().is_none_or(|q| ci(q) == ci(&c.qualifier)) {
                        any = true;
                        columns.push(Column {
                            name: c.name.clone(),
                            ty: c.ty.clone(),
                            nullable: c.nullable,
                        });
                        exprs.push(Bound::Col(i));
                    }
                }
                if !any {
                    return Err(SqlError::new(
                        107,
                        15,
                        format!(
                            "The column prefix '{}' does not match with a table name or alias name used in the query.",
                            q.clone().unwrap_or_default()
                        ),
                    ));
                }
            }
            SelectItem::Expr { expr, alias } => {
                let t = bind(expr, scope, env)?;
                columns.push(Column {
                    name: alias.clone().unwrap_or_else(|| output_name(expr)),
                    ty: t.ty,
                    nullable: t.nullable,
                });
                exprs.push(t.bound);
            }
        }
    }
    Ok(Projection { columns, exprs })
}

fn eval_top(select: &Select, env: &Env<'_>) -> Result<Option<usize>, SqlError> {
    let Some(top) = &select.top else {
        return Ok(None);
    };
    // "TOP (Transact-SQL)": the expression is converted to bigint. A negative count
    // is Msg 127, a NULL one (a variable or parameter) Msg 1014, a value of a
    // non-integer type (decimal, float, string) Msg 1060.
    let v = bind(top, &Scope::default(), env)?.bound.eval(&[], env)?;
    match v {
        Value::Int(n) if n >= 0 => Ok(Some(usize::try_from(n).unwrap_or(usize::MAX))),
        Value::Int(_) => Err(error::top_negative()),
        Value::Bit(b) => Ok(Some(usize::from(b))),
        // A literal NULL is refused when the batch compiles, as not an integer.
        Value::Null if matches!(top, Expr::Literal(Value::Null)) => Err(error::top_not_integer()),
        Value::Null => Err(error::top_invalid()),
        _ => Err(error::top_not_integer()),
    }
}

/// Binds ORDER BY items of a single SELECT: select-list aliases and ordinals first,
/// then FROM columns. Each item sorts strings by its type's collation rules.
fn bind_order(
    order_by: &[OrderItem],
    select: &Select,
    scope: &Scope,
    projection: &Projection,
    env: &Env<'_>,
) -> Result<Vec<(Bound, bool, Rules)>, SqlError> {
    let mut out = Vec::new();
    for item in order_by {
        if let Expr::Literal(Value::Int(k)) = &item.expr {
            let k = usize::try_from(*k).unwrap_or(0);
            if k == 0 || k > projection.exprs.len() {
                return Err(SqlError::new(
                    108,
                    15,
                    format!(
                        "The ORDER BY position number {k} is out of range of the number of items in the select list."
                    ),
                ));
            }
            let rules = collation::rules_of(&projection.columns[k - 1].ty);
            out.push((rebind_output(select, scope, k - 1, env)?, item.descending, rules));
            continue;
        }
        if let Expr::Column { qualifier: None, name } = &item.expr {
            let hits: Vec<usize> = projection
                .columns
                .iter()
                .enumerate()
                .filter(|(i, c)| {
                    ci(&c.name) == ci(name)
                        && matches!(select.items.get(*i), Some(SelectItem::Expr { alias: Some(_), .. }))
                })
                .map(|(i, _)| i)
                .collect();
            if let Some(&i) = hits.first() {
                let rules = collation::rules_of(&projection.columns[i].ty);
                out.push((rebind_output(select, scope, i, env)?, item.descending, rules));
                continue;
            }
        }
        let t = bind(&item.expr, scope, env)?;
        out.push((t.bound, item.descending, collation::rules_of(&t.ty)));
    }
    Ok(out)
}

fn rebind_output(select: &Select, scope: &Scope, index: usize, env: &Env<'_>) -> Result<Bound, SqlError> {
    let mut k = 0;
    for item in &select.items {
        match item {
            SelectItem::Expr { expr, .. } => {
                if k == index {
                    return Ok(bind(expr, scope, env)?.bound);
                }
                k += 1;
            }
            SelectItem::Star(q) => {
                for (i, c) in scope.columns.iter().enumerate() {
                    if q.as_ref().is_none_or(|q| ci(q) == ci(&c.qualifier)) {
                        if k == index {
                            return Ok(Bound::Col(i));
                        }
                        k += 1;
                    }
                }
            }
        }
    }
    Err(error::invalid_column(""))
}

/// Runs one SELECT branch. `order_by` applies to it alone (single-branch queries);
/// `limit` caps rows (EXISTS).
fn run_select(
    select: &Select,
    order_by: &[OrderItem],
    limit: Option<usize>,
    env: &Env<'_>,
) -> Result<ResultSet, SqlError> {
    let mut sources = Vec::new();
    let mut join_specs = Vec::new();
    if let Some(from) = &select.from {
        sources.push(open_source(env, &from.first)?);
        for j in &from.joins {
            sources.push(open_source(env, &j.table)?);
            join_specs.push(j);
        }
    }
    // Duplicate exposed names (Msg 1013).
    for (i, a) in sources.iter().enumerate() {
        for b in sources.iter().skip(i + 1) {
            if let (Some(x), Some(y)) = (a.columns.first(), b.columns.first()) {
                if ci(&x.qualifier) == ci(&y.qualifier) {
                    return Err(error::duplicate_exposed_name(&x.qualifier));
                }
            }
        }
    }
    let mut scope = Scope::default();
    let mut offsets = Vec::new();
    for s in &sources {
        offsets.push(scope.columns.len());
        scope.columns.extend(s.columns.iter().cloned());
    }
    // The inner side of an outer join yields NULLs, whatever its columns declare.
    for (k, spec) in join_specs.iter().enumerate() {
        if spec.kind == JoinKind::Left {
            let level = k + 1;
            for c in &mut scope.columns[offsets[level]..offsets[level] + sources[level].columns.len()] {
                c.nullable = true;
            }
        }
    }
    // ON clauses are bound against the sources joined so far (SQL Server's rule).
    let mut joins = Vec::new();
    for (k, spec) in join_specs.iter().enumerate() {
        let level = k + 1;
        let partial = Scope {
            columns: scope.columns[..offsets[level] + sources[level].columns.len()].to_vec(),
        };
        let on = match &spec.on {
            Some(e) => Some(bind(e, &partial, env)?.bound),
            None => None,
        };
        let lookup = match (&on, &sources[level].rows) {
            (Some(on), Rows::Table(t)) if !t.primary_key.is_empty() => {
                let key_cols: Vec<usize> = t.primary_key.iter().map(|&c| offsets[level] + c).collect();
                key_lookup(on, &key_cols, offsets[level])
            }
            _ => None,
        };
        let rows = if lookup.is_some() {
            Vec::new()
        } else {
            materialize(&sources[level])
        };
        joins.push(JoinPlan {
            kind: spec.kind,
            on,
            lookup,
            width: sources[level].columns.len(),
            rows,
        });
    }
    let filter = match &select.filter {
        Some(f) => Some(bind(f, &scope, env)?.bound),
        None => None,
    };
    if aggregate::is_aggregate(select) {
        let mut agg = aggregate::prepare(select, &scope, env)?;
        let top = eval_top(select, env)?;
        let plan = Plan {
            access: match sources.first().map(|s| &s.rows) {
                Some(Rows::Table(t)) => table_access(filter.as_ref(), t),
                Some(Rows::Changes { .. }) => {
                    version_upper_bound(filter.as_ref()).map_or(Access::Full, Access::UpToVersion)
                }
                _ => Access::Full,
            },
            sources,
            joins,
            filter,
        };
        if plan.sources.is_empty() {
            let pass = match &plan.filter {
                Some(f) => truthy(&f.eval(&[], env)?),
                None => true,
            };
            if pass {
                agg.feed(&[], env)?;
            }
        } else {
            plan.scan(env, &mut |row| {
                agg.feed(row, env)?;
                Ok(true)
            })?;
        }
        let columns = agg.columns.clone();
        let row = agg.finish(env)?;
        return Ok(ResultSet {
            columns,
            rows: if top == Some(0) { vec![] } else { vec![row] },
        });
    }
    let projection = project(select, &scope, env)?;
    let order = bind_order(order_by, select, &scope, &projection, env)?;
    let mut top = eval_top(select, env)?;
    if let Some(l) = limit {
        top = Some(top.map_or(l, |t| t.min(l)));
    }
    if sources.is_empty() {
        // SELECT without FROM: one row, if it passes WHERE.
        let pass = match &filter {
            Some(f) => truthy(&f.eval(&[], env)?),
            None => true,
        };
        let mut rows = Vec::new();
        if pass && top != Some(0) {
            let mut row = Vec::with_capacity(projection.exprs.len());
            for e in &projection.exprs {
                row.push(e.eval(&[], env)?);
            }
            rows.push(row);
        }
        return Ok(ResultSet {
            columns: projection.columns,
            rows,
        });
    }
    let access = match &sources[0].rows {
        Rows::Table(t) => table_access(filter.as_ref(), t),
        Rows::Changes { .. } => version_upper_bound(filter.as_ref()).map_or(Access::Full, Access::UpToVersion),
        Rows::Materialized(_) => Access::Full,
    };
    let natural = &sources[0].natural_order;
    let presorted = order.len() <= natural.len()
        && order
            .iter()
            .zip(natural.iter())
            .all(|((b, desc, _), n)| !desc && matches!(b, Bound::Col(i) if i == n));
    let plan = Plan {
        sources,
        joins,
        filter,
        access,
    };
    let mut rows: Vec<Vec<Value>> = Vec::new();
    if order.is_empty() || presorted {
        if top == Some(0) {
            return Ok(ResultSet {
                columns: projection.columns,
                rows,
            });
        }
        plan.scan(env, &mut |row| {
            let mut out = Vec::with_capacity(projection.exprs.len());
            for e in &projection.exprs {
                out.push(e.eval(row, env)?);
            }
            rows.push(out);
            Ok(top.is_none_or(|t| rows.len() < t))
        })?;
    } else {
        let mut keyed: Vec<(Vec<Value>, Vec<Value>)> = Vec::new();
        plan.scan(env, &mut |row| {
            let mut keys = Vec::with_capacity(order.len());
            for (b, _, _) in &order {
                keys.push(b.eval(row, env)?);
            }
            let mut out = Vec::with_capacity(projection.exprs.len());
            for e in &projection.exprs {
                out.push(e.eval(row, env)?);
            }
            keyed.push((keys, out));
            Ok(true)
        })?;
        keyed.sort_by(|a, b| compare_keys(&a.0, &b.0, &order));
        if let Some(t) = top {
            keyed.truncate(t);
        }
        rows = keyed.into_iter().map(|(_, r)| r).collect();
    }
    Ok(ResultSet {
        columns: projection.columns,
        rows,
    })
}

fn compare_keys(a: &[Value], b: &[Value], order: &[(Bound, bool, Rules)]) -> Ordering {
    for (i, (_, desc, rules)) in order.iter().enumerate() {
        let o = sort_cmp_as(&a[i], &b[i], *rules);
        let o = if *desc { o.reverse() } else { o };
        if o != Ordering::Equal {
            return o;
        }
    }
    Ordering::Equal
}

/// Runs a query (SELECTs joined by UNION ALL, then ORDER BY); every value has its
/// column's type family.
pub fn run(query: &Query, env: &Env<'_>) -> Result<ResultSet, SqlError> {
    let mut rs = run_unconformed(query, env)?;
    for row in &mut rs.rows {
        for (v, c) in row.iter_mut().zip(rs.columns.iter_mut()) {
            if !super::value::fits_family(v, &c.ty) {
                *v = super::value::conform(std::mem::replace(v, Value::Null), &c.ty)?;
            }
            // The wire layer encodes NOT NULL columns with fixed-length types; a
            // NULL there would be unencodable, so the metadata must admit it.
            if matches!(v, Value::Null) {
                c.nullable = true;
            }
        }
    }
    Ok(rs)
}

fn run_unconformed(query: &Query, env: &Env<'_>) -> Result<ResultSet, SqlError> {
    if query.branches.len() == 1 {
        return run_select(&query.branches[0], &query.order_by, None, env);
    }
    let mut result: Option<ResultSet> = None;
    for branch in &query.branches {
        let rs = run_select(branch, &[], None, env)?;
        result = Some(match result {
            None => rs,
            Some(mut acc) => {
                if acc.columns.len() != rs.columns.len() {
                    return Err(error::union_column_count());
                }
                for (a, b) in acc.columns.iter_mut().zip(rs.columns.iter()) {
                    a.ty = wider(&a.ty, &b.ty);
                    a.nullable |= b.nullable;
                }
                acc.rows.extend(rs.rows);
                acc
            }
        });
    }
    let mut result = result.ok_or_else(|| error::syntax_near("UNION"))?;
    if !query.order_by.is_empty() {
        let mut idx = Vec::new();
        for item in &query.order_by {
            let i = match &item.expr {
                Expr::Literal(Value::Int(k)) => usize::try_from(*k - 1).ok(),
                Expr::Column { name, .. } => result.columns.iter().position(|c| ci(&c.name) == ci(name)),
                _ => None,
            }
            .ok_or_else(|| {
                SqlError::new(
                    104,
                    16,
                    "ORDER BY items must appear in the select list if the statement contains a UNION, INTERSECT or EXCEPT operator.",
                )
            })?;
            let rules = result
                .columns
                .get(i)
                .map_or(Rules::NonUnicode, |c| collation::rules_of(&c.ty));
            idx.push((i, item.descending, rules));
        }
        result.rows.sort_by(|a, b| {
            for (i, desc, rules) in &idx {
                let o = sort_cmp_as(&a[*i], &b[*i], *rules);
                let o = if *desc { o.reverse() } else { o };
                if o != Ordering::Equal {
                    return o;
                }
            }
            Ordering::Equal
        });
    }
    Ok(result)
}

/// `EXISTS (query)`: stops at the first row.
pub fn exists(query: &Query, env: &Env<'_>) -> Result<bool, SqlError> {
    for branch in &query.branches {
        if !run_select(branch, &[], Some(1), env)?.rows.is_empty() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// A scalar subquery's value (NULL when empty; Msg 512 when several rows).
pub fn scalar(query: &Query, env: &Env<'_>) -> Result<Value, SqlError> {
    let rs = run(query, env)?;
    if rs.rows.len() > 1 {
        return Err(SqlError::new(
            512,
            16,
            "Subquery returned more than 1 value. This is not permitted when the subquery follows =, !=, <, <= , >, >= or when the subquery is used as an expression.",
        ));
    }
    Ok(rs
        .rows
        .into_iter()
        .next()
        .and_then(|r| r.into_iter().next())
        .unwrap_or(Value::Null))
}

/// The result columns of a query (for typing scalar subqueries).
pub fn describe(query: &Query, env: &Env<'_>) -> Result<Vec<Column>, SqlError> {
    let first = query.branches.first().ok_or_else(|| error::syntax_near("SELECT"))?;
    Ok(run_select(first, &[], Some(0), env)?.columns)
}

/// Rows of `table` matching `filter` (bound against [`table_scope`]), using the key
/// when the filter pins or bounds it.
pub fn matching_rows(table: &Table, filter: Option<&Bound>, env: &Env<'_>) -> Result<Vec<(Key, Row)>, SqlError> {
    let access = table_access(filter, table);
    let mut out = Vec::new();
    let mut check = |key: &Key, row: &Row| -> Result<(), SqlError> {
        let pass = match filter {
            Some(f) => truthy(&f.eval(row, env)?),
            None => true,
        };
        if pass {
            out.push((key.clone(), row.clone()));
        }
        Ok(())
    };
    match access {
        Access::Point(exprs) => {
            let mut key = Vec::new();
            for e in &exprs {
                key.push(e.eval(&[], env)?);
            }
            // The stored key (not the probe) goes on to change tracking.
            if let Some((key, row)) = table.rows.get_key_value(&Key::new(key)) {
                check(key, row)?;
            }
        }
        Access::From(start) => {
            for (key, row) in table.rows.range(start..) {
                check(key, row)?;
            }
        }
        Access::Full | Access::UpToVersion(_) => {
            for (key, row) in table.rows.iter() {
                check(key, row)?;
            }
        }
    }
    Ok(out)
}
