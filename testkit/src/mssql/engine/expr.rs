//! Expressions: binding (resolving column names against the FROM scope once per
//! statement, folding parameters to constants, inferring SQL Server's result type)
//! and evaluation per row with three-valued logic. Rows are never re-parsed.

use std::cell::OnceCell;
use std::cmp::Ordering;

use super::ast::{BinOp, Expr, Query};
use super::catalog::ci;
use super::collation::{self, Rules};
use super::env::Env;
use super::error;
use super::functions;
use super::query;
use super::value::{self, compare, value_type};
use crate::mssql::types::{SqlError, SqlType, Value};

/// A column visible to expressions: which table exposes it, and its type.
#[derive(Debug, Clone)]
pub struct ScopeColumn {
    /// Exposed table name or alias (as written), for `T.col` resolution.
    pub qualifier: String,
    pub name: String,
    pub ty: SqlType,
    pub nullable: bool,
}

/// The columns of the FROM clause, flattened in row order.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    pub columns: Vec<ScopeColumn>,
}

impl Scope {
    /// Resolves a (possibly qualified) column to its position.
    pub fn resolve(&self, qualifier: Option<&str>, name: &str) -> Result<usize, SqlError> {
        let lname = ci(name);
        match qualifier {
            Some(q) => {
                let lq = ci(q);
                if !self.columns.iter().any(|c| ci(&c.qualifier) == lq) {
                    return Err(error::multipart_not_bound(&format!("{q}.{name}")));
                }
                self.columns
                    .iter()
                    .position(|c| ci(&c.qualifier) == lq && ci(&c.name) == lname)
                    .ok_or_else(|| error::invalid_column(name))
            }
            None => {
                let mut found = None;
                for (i, c) in self.columns.iter().enumerate() {
                    if ci(&c.name) == lname {
                        if found.is_some() {
                            return Err(error::ambiguous_column(name));
                        }
                        found = Some(i);
                    }
                }
                found.ok_or_else(|| error::invalid_column(name))
            }
        }
    }
}

/// A built-in function, resolved at bind time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    ObjectId,
    ObjectName,
    DbId,
    DbName,
    SchemaName,
    HasPermsByName,
    ColumnProperty,
    CtCurrentVersion,
    CtMinValidVersion,
    CtIsColumnInMask,
    IsNull,
    Coalesce,
    Len,
    Upper,
    Lower,
    GetDate,
    SysDateTime,
    GetUtcDate,
    SysUtcDateTime,
    UserName,
    SuserName,
    ServerProperty,
    Abs,
}

/// A bound expression: column references are row positions, parameters constants.
#[derive(Debug)]
pub enum Bound {
    Const(Value),
    Col(usize),
    Neg(Box<Bound>),
    Not(Box<Bound>),
    /// Arithmetic, concatenation, AND, OR.
    Bin(BinOp, Box<Bound>, Box<Bound>),
    /// `=`, `<>`, `<`, `<=`, `>`, `>=`, strings under the collation rules the operand
    /// types select (data type precedence: nvarchar beats varchar).
    Cmp(BinOp, Rules, Box<Bound>, Box<Bound>),
    IsNull(Box<Bound>, bool),
    In(Box<Bound>, Vec<Bound>, bool, Rules),
    Between(Box<Bound>, Box<Bound>, Box<Bound>, bool, Rules),
    Like(Box<Bound>, Box<Bound>, bool),
    Case {
        operand: Option<Box<Bound>>,
        whens: Vec<(Bound, Bound)>,
        otherwise: Option<Box<Bound>>,
        /// How the operand compares with each WHEN value (simple CASE).
        rules: Rules,
    },
    Call(Func, Vec<Bound>),
    /// Uncorrelated `EXISTS (…)`, evaluated once per statement.
    Exists(Box<Query>, OnceCell<bool>),
    /// Uncorrelated scalar subquery, evaluated once per statement.
    Scalar(Box<Query>, OnceCell<Value>),
    Cast(Box<Bound>, SqlType),
}

/// A bound expression with its inferred result type.
pub struct Typed {
    pub bound: Bound,
    pub ty: SqlType,
    pub nullable: bool,
}

fn typed(bound: Bound, ty: SqlType, nullable: bool) -> Typed {
    Typed { bound, ty, nullable }
}

/// Binds an expression against a scope.
pub fn bind(expr: &Expr, scope: &Scope, env: &Env<'_>) -> Result<Typed, SqlError> {
    Ok(match expr {
        Expr::Literal(v) => {
            let ty = match v {
                Value::Decimal { value, scale } => SqlType::Decimal {
                    precision: (value.unsigned_abs().to_string().len() as u8).max(*scale).max(1),
                    scale: *scale,
                },
                Value::Binary(b) => SqlType::VarBinary(Some(b.len().max(1) as u16)),
                other => value_type(other),
            };
            typed(Bound::Const(v.clone()), ty, matches!(v, Value::Null))
        }
        Expr::StringLiteral { text, national } => {
            let n = text.chars().count().max(1) as u16;
            let ty = if *national {
                SqlType::NVarChar(Some(n.min(4000)))
            } else {
                SqlType::VarChar(Some(n.min(8000)))
            };
            typed(Bound::Const(Value::String(text.clone())), ty, false)
        }
        Expr::Column { qualifier, name } => {
            let i = scope.resolve(qualifier.as_deref(), name)?;
            let c = &scope.columns[i];
            typed(Bound::Col(i), c.ty.clone(), c.nullable)
        }
        Expr::Variable(v) => {
            let value = env.var(v)?;
            let ty = match &value {
                Value::Int(_) => SqlType::BigInt,
                other => value_type(other),
            };
            typed(Bound::Const(value), ty, true)
        }
        Expr::Global(g) => {
            let (v, ty) = functions::global(g, env)?;
            typed(Bound::Const(v), ty, false)
        }
        Expr::Neg(e) => {
            let t = bind(e, scope, env)?;
            typed(Bound::Neg(Box::new(t.bound)), t.ty, t.nullable)
        }
        Expr::Not(e) => {
            let t = bind(e, scope, env)?;
            typed(Bound::Not(Box::new(t.bound)), SqlType::Bit, true)
        }
        Expr::Binary { op, left, right } => {
            let l = bind(left, scope, env)?;
            let r = bind(right, scope, env)?;
            let nullable = l.nullable || r.nullable;
            match op {
                BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Mod => typed(
                    Bound::Bin(*op, Box::new(l.bound), Box::new(r.bound)),
                    arithmetic_type(&l.ty, &r.ty),
                    nullable,
                ),
                BinOp::And | BinOp::Or => typed(
                    Bound::Bin(*op, Box::new(l.bound), Box::new(r.bound)),
                    SqlType::Bit,
                    nullable,
                ),
                BinOp::Eq | BinOp::Ne | BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => {
                    let rules = collation::comparison_rules([&l.ty, &r.ty]);
                    typed(
                        Bound::Cmp(*op, rules, Box::new(l.bound), Box::new(r.bound)),
                        SqlType::Bit,
                        nullable,
                    )
                }
            }
        }
        Expr::IsNull { expr, negated } => {
            let t = bind(expr, scope, env)?;
            typed(Bound::IsNull(Box::new(t.bound), *negated), SqlType::Bit, false)
        }
        Expr::InList { expr, list, negated } => {
            let t = bind(expr, scope, env)?;
            let items = list
                .iter()
                .map(|e| bind(e, scope, env))
                .collect::<Result<Vec<_>, _>>()?;
            let rules = collation::comparison_rules(std::iter::once(&t.ty).chain(items.iter().map(|i| &i.ty)));
            let items = items.into_iter().map(|i| i.bound).collect();
            typed(Bound::In(Box::new(t.bound), items, *negated, rules), SqlType::Bit, true)
        }
        Expr::Between {
            expr,
            low,
            high,
            negated,
        } => {
            let e = bind(expr, scope, env)?;
            let lo = bind(low, scope, env)?;
            let hi = bind(high, scope, env)?;
            let rules = collation::comparison_rules([&e.ty, &lo.ty, &hi.ty]);
            typed(
                Bound::Between(
                    Box::new(e.bound),
                    Box::new(lo.bound),
                    Box::new(hi.bound),
                    *negated,
                    rules,
                ),
                SqlType::Bit,
                true,
            )
        }
        Expr::Like { expr, pattern, negated } => {
            let e = bind(expr, scope, env)?.bound;
            let p = bind(pattern, scope, env)?.bound;
            typed(Bound::Like(Box::new(e), Box::new(p), *negated), SqlType::Bit, true)
        }
        Expr::Function { name, args } => functions::bind_call(name, args, scope, env)?,
        Expr::Case {
            operand,
            whens,
            otherwise,
        } => {
            let operand = match operand {
                Some(o) => Some(bind(o, scope, env)?),
                None => None,
            };
            let mut compared: Vec<SqlType> = operand.iter().map(|o| o.ty.clone()).collect();
            let operand = operand.map(|o| Box::new(o.bound));
            let mut ty: Option<SqlType> = None;
            let mut nullable = otherwise.is_none();
            let mut bound_whens = Vec::new();
            for (c, v) in whens {
                let c = bind(c, scope, env)?;
                if operand.is_some() {
                    compared.push(c.ty.clone());
                }
                let v = bind(v, scope, env)?;
                if !matches!(v.bound, Bound::Const(Value::Null)) {
                    ty = Some(match ty {
                        None => v.ty.clone(),
                        Some(t) => wider(&t, &v.ty),
                    });
                }
                nullable |= v.nullable;
                bound_whens.push((c.bound, v.bound));
            }
            let otherwise = match otherwise {
                Some(o) => {
                    let o = bind(o, scope, env)?;
                    if !matches!(o.bound, Bound::Const(Value::Null)) {
                        ty = Some(match ty {
                            None => o.ty.clone(),
                            Some(t) => wider(&t, &o.ty),
                        });
                    }
                    nullable |= o.nullable;
                    Some(Box::new(o.bound))
                }
                None => None,
            };
            typed(
                Bound::Case {
                    operand,
                    whens: bound_whens,
                    otherwise,
                    rules: collation::comparison_rules(&compared),
                },
                ty.unwrap_or(SqlType::Int),
                nullable,
            )
        }
        Expr::Exists(q) => typed(Bound::Exists(q.clone(), OnceCell::new()), SqlType::Bit, false),
        Expr::Subquery(q) => {
            let columns = query::describe(q, env)?;
            if columns.len() != 1 {
                return Err(SqlError::new(
                    116,
                    16,
                    "Only one expression can be specified in the select list when the subquery is not introduced with EXISTS.",
                ));
            }
            let ty = columns[0].ty.clone();
            typed(Bound::Scalar(q.clone(), OnceCell::new()), ty, true)
        }
        Expr::Cast { expr, ty } => {
            let t = bind(expr, scope, env)?;
            // A constant (a parameter) is converted once, so `key > CAST(@P1 AS
            // varchar(50))` can seek the key; a failing conversion is left to
            // evaluation, which raises it only if a row needs it.
            let bound = match t.bound {
                Bound::Const(v) => match value::coerce(v.clone(), ty, &value::Target { table: "", column: "" }) {
                    Ok(c) => Bound::Const(c),
                    Err(_) => Bound::Cast(Box::new(Bound::Const(v)), ty.clone()),
                },
                other => Bound::Cast(Box::new(other), ty.clone()),
            };
            typed(bound, ty.clone(), t.nullable)
        }
    })
}

fn rank(ty: &SqlType) -> u8 {
    match ty {
        SqlType::Bit => 1,
        SqlType::TinyInt => 2,
        SqlType::SmallInt => 3,
        SqlType::Int => 4,
        SqlType::BigInt => 5,
        SqlType::Money => 6,
        SqlType::Decimal { .. } => 7,
        SqlType::Real => 8,
        SqlType::Float => 9,
        _ => 0,
    }
}

/// The type of `a op b` for arithmetic (data type precedence).
fn arithmetic_type(a: &SqlType, b: &SqlType) -> SqlType {
    if rank(a) == 0 && rank(b) == 0 {
        return SqlType::NVarChar(Some(4000));
    }
    let t = if rank(a) >= rank(b) { a } else { b };
    match t {
        SqlType::Bit | SqlType::TinyInt | SqlType::SmallInt => SqlType::Int,
        other => other.clone(),
    }
}

/// The wider of two result types (CASE branches, UNION ALL columns).
pub fn wider(a: &SqlType, b: &SqlType) -> SqlType {
    if rank(a) > 0 && rank(b) > 0 {
        return if rank(a) >= rank(b) { a.clone() } else { b.clone() };
    }
    a.clone()
}

/// Whether a value is TRUE (not FALSE, not UNKNOWN).
pub fn truthy(v: &Value) -> bool {
    matches!(v, Value::Bit(true))
}

fn bool_value(b: Option<bool>) -> Value {
    match b {
        Some(b) => Value::Bit(b),
        None => Value::Null,
    }
}

fn as_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bit(b) => Some(*b),
        Value::Null => None,
        Value::Int(i) => Some(*i != 0),
        _ => Some(false),
    }
}

impl Bound {
    /// Evaluates against one row.
    pub fn eval(&self, row: &[Value], env: &Env<'_>) -> Result<Value, SqlError> {
        Ok(match self {
            Bound::Const(v) => v.clone(),
            Bound::Col(i) => row.get(*i).cloned().unwrap_or(Value::Null),
            Bound::Neg(e) => match e.eval(row, env)? {
                Value::Int(i) => Value::Int(i.checked_neg().ok_or_else(|| error::arithmetic_overflow("bigint"))?),
                Value::Decimal { value, scale } => Value::Decimal { value: -value, scale },
                Value::Money(m) => Value::Money(-m),
                Value::Float(f) => Value::Float(-f),
                Value::Null => Value::Null,
                other => return Err(error::operand_clash(value::family_name(&other), "numeric")),
            },
            Bound::Not(e) => bool_value(as_bool(&e.eval(row, env)?).map(|b| !b)),
            Bound::Bin(op, l, r) => match op {
                BinOp::And => {
                    let a = as_bool(&l.eval(row, env)?);
                    if a == Some(false) {
                        return Ok(Value::Bit(false));
                    }
                    let b = as_bool(&r.eval(row, env)?);
                    bool_value(match (a, b) {
                        (_, Some(false)) => Some(false),
                        (Some(true), Some(true)) => Some(true),
                        _ => None,
                    })
                }
                BinOp::Or => {
                    let a = as_bool(&l.eval(row, env)?);
                    if a == Some(true) {
                        return Ok(Value::Bit(true));
                    }
                    let b = as_bool(&r.eval(row, env)?);
                    bool_value(match (a, b) {
                        (_, Some(true)) => Some(true),
                        (Some(false), Some(false)) => Some(false),
                        _ => None,
                    })
                }
                _ => arithmetic(*op, l.eval(row, env)?, r.eval(row, env)?)?,
            },
            Bound::Cmp(op, rules, l, r) => {
                let a = l.eval(row, env)?;
                let b = r.eval(row, env)?;
                bool_value(compare(&a, &b, *rules)?.map(|o| match op {
                    BinOp::Eq => o == Ordering::Equal,
                    BinOp::Ne => o != Ordering::Equal,
                    BinOp::Lt => o == Ordering::Less,
                    BinOp::Le => o != Ordering::Greater,
                    BinOp::Gt => o == Ordering::Greater,
                    _ => o != Ordering::Less,
                }))
            }
            Bound::IsNull(e, negated) => {
                let is_null = matches!(e.eval(row, env)?, Value::Null);
                Value::Bit(is_null != *negated)
            }
            Bound::In(e, list, negated, rules) => {
                let v = e.eval(row, env)?;
                let mut result = Some(false);
                for item in list {
                    match compare(&v, &item.eval(row, env)?, *rules)? {
                        Some(Ordering::Equal) => {
                            result = Some(true);
                            break;
                        }
                        None => result = None,
                        _ => {}
                    }
                }
                bool_value(result.map(|b| b != *negated))
            }
            Bound::Between(e, lo, hi, negated, rules) => {
                let v = e.eval(row, env)?;
                let a = compare(&v, &lo.eval(row, env)?, *rules)?.map(|o| o != Ordering::Less);
                let b = compare(&v, &hi.eval(row, env)?, *rules)?.map(|o| o != Ordering::Greater);
                let r = match (a, b) {
                    (Some(false), _) | (_, Some(false)) => Some(false),
                    (Some(true), Some(true)) => Some(true),
                    _ => None,
                };
                bool_value(r.map(|b| b != *negated))
            }
            Bound::Like(e, p, negated) => match (e.eval(row, env)?, p.eval(row, env)?) {
                (Value::String(s), Value::String(p)) => Value::Bit(like(&s, &p) != *negated),
                (Value::Null, _) | (_, Value::Null) => Value::Null,
                (other, Value::String(p)) => Value::Bit(like(&value::display_value(&other), &p) != *negated),
                _ => Value::Bit(false),
            },
            Bound::Case {
                operand,
                whens,
                otherwise,
                rules,
            } => {
                let op = match operand {
                    Some(o) => Some(o.eval(row, env)?),
                    None => None,
                };
                for (c, v) in whens {
                    let hit = match &op {
                        Some(x) => compare(x, &c.eval(row, env)?, *rules)? == Some(Ordering::Equal),
                        None => truthy(&c.eval(row, env)?),
                    };
                    if hit {
                        return v.eval(row, env);
                    }
                }
                match otherwise {
                    Some(o) => o.eval(row, env)?,
                    None => Value::Null,
                }
            }
            Bound::Call(f, args) => {
                let mut values = Vec::with_capacity(args.len());
                for a in args {
                    values.push(a.eval(row, env)?);
                }
                functions::call(*f, &values, env)?
            }
            Bound::Exists(q, cell) => {
                if let Some(b) = cell.get() {
                    return Ok(Value::Bit(*b));
                }
                let b = query::exists(q, env)?;
                let _ = cell.set(b);
                Value::Bit(b)
            }
            Bound::Scalar(q, cell) => {
                if let Some(v) = cell.get() {
                    return Ok(v.clone());
                }
                let v = query::scalar(q, env)?;
                let _ = cell.set(v.clone());
                v
            }
            Bound::Cast(e, ty) => {
                let v = e.eval(row, env)?;
                value::coerce(v, ty, &value::Target { table: "", column: "" }).map_err(|e| {
                    if e.number == 2628 {
                        SqlError::new(8152, 16, "String or binary data would be truncated.")
                    } else {
                        e
                    }
                })?
            }
        })
    }

    /// The highest row position the expression reads, if any (for join planning);
    /// `Err(())` when it contains something that is not a plain scalar.
    pub fn max_column(&self) -> Option<usize> {
        let mut max = None;
        self.visit_columns(&mut |i| max = Some(max.map_or(i, |m: usize| m.max(i))));
        max
    }

    fn visit_columns(&self, f: &mut dyn FnMut(usize)) {
        match self {
            Bound::Const(_) | Bound::Exists(..) | Bound::Scalar(..) => {}
            Bound::Col(i) => f(*i),
            Bound::Neg(e) | Bound::Not(e) | Bound::IsNull(e, _) | Bound::Cast(e, _) => e.visit_columns(f),
            Bound::Bin(_, a, b) | Bound::Cmp(_, _, a, b) | Bound::Like(a, b, _) => {
                a.visit_columns(f);
                b.visit_columns(f);
            }
            Bound::Between(a, b, c, _, _) => {
                a.visit_columns(f);
                b.visit_columns(f);
                c.visit_columns(f);
            }
            Bound::In(e, list, _, _) => {
                e.visit_columns(f);
                for x in list {
                    x.visit_columns(f);
                }
            }
            Bound::Case {
                operand,
                whens,
                otherwise,
                ..
            } => {
                if let Some(o) = operand {
                    o.visit_columns(f);
                }
                for (a, b) in whens {
                    a.visit_columns(f);
                    b.visit_columns(f);
                }
                if let Some(o) = otherwise {
                    o.visit_columns(f);
                }
            }
            Bound::Call(_, args) => {
                for a in args {
                    a.visit_columns(f);
                }
            }
        }
    }

    /// Splits an AND chain into its conjuncts.
    pub fn conjuncts(&self) -> Vec<&Bound> {
        match self {
            Bound::Bin(BinOp::And, a, b) => {
                let mut v = a.conjuncts();
                v.extend(b.conjuncts());
                v
            }
            other => vec![other],
        }
    }

    /// Splits an OR chain into its disjuncts.
    pub fn disjuncts(&self) -> Vec<&Bound> {
        match self {
            Bound::Bin(BinOp::Or, a, b) => {
                let mut v = a.disjuncts();
                v.extend(b.disjuncts());
                v
            }
            other => vec![other],
        }
    }
}

/// `a op b` for the arithmetic operators (also used by SUM/AVG).
pub fn arithmetic(op: BinOp, a: Value, b: Value) -> Result<Value, SqlError> {
    use Value::*;
    if matches!(a, Null) || matches!(b, Null) {
        return Ok(Null);
    }
    if let (String(x), String(y)) = (&a, &b) {
        if op == BinOp::Add {
            return Ok(String(format!("{x}{y}")));
        }
    }
    let overflow = || error::arithmetic_overflow("int");
    match (&a, &b) {
        (Int(x), Int(y)) => Ok(Int(match op {
            BinOp::Add => x.checked_add(*y).ok_or_else(overflow)?,
            BinOp::Sub => x.checked_sub(*y).ok_or_else(overflow)?,
            BinOp::Mul => x.checked_mul(*y).ok_or_else(overflow)?,
            BinOp::Div => {
                if *y == 0 {
                    return Err(error::divide_by_zero());
                }
                x.checked_div(*y).ok_or_else(overflow)?
            }
            _ => {
                if *y == 0 {
                    return Err(error::divide_by_zero());
                }
                x.checked_rem(*y).ok_or_else(overflow)?
            }
        })),
        _ => {
            let to_f = |v: &Value| -> Result<f64, SqlError> {
                match v {
                    Int(i) => Ok(*i as f64),
                    Bit(b) => Ok(f64::from(u8::from(*b))),
                    Decimal { value, scale } => Ok(*value as f64 / 10f64.powi(i32::from(*scale))),
                    Money(m) => Ok(*m as f64 / 10_000.0),
                    Float(f) => Ok(*f),
                    String(s) => s
                        .trim()
                        .parse::<f64>()
                        .map_err(|_| error::conversion_failed("varchar", s, "numeric")),
                    other => Err(error::operand_clash(value::family_name(other), "numeric")),
                }
            };
            let x = to_f(&a)?;
            let y = to_f(&b)?;
            if matches!(op, BinOp::Div | BinOp::Mod) && y == 0.0 {
                return Err(error::divide_by_zero());
            }
            let r = match op {
                BinOp::Add => x + y,
                BinOp::Sub => x - y,
                BinOp::Mul => x * y,
                BinOp::Div => x / y,
                _ => x % y,
            };
            let exact = |v: &Value| matches!(v, Int(_) | Bit(_) | Decimal { .. } | Money(_));
            if exact(&a) && exact(&b) {
                let scale = match (&a, &b) {
                    (Decimal { scale: s1, .. }, Decimal { scale: s2, .. }) => (*s1).max(*s2),
                    (Decimal { scale, .. }, _) | (_, Decimal { scale, .. }) => *scale,
                    _ => 4,
                };
                let scale = if op == BinOp::Div { scale.max(6) } else { scale };
                let value = (r * 10f64.powi(i32::from(scale))).round() as i128;
                return Ok(Decimal { value, scale });
            }
            Ok(Float(r))
        }
    }
}

/// `LIKE` with `%` and `_`, case-insensitive.
fn like(s: &str, p: &str) -> bool {
    let s: Vec<char> = s.to_lowercase().chars().collect();
    let p: Vec<char> = p.to_lowercase().chars().collect();
    fn m(s: &[char], p: &[char]) -> bool {
        match p.first() {
            None => s.is_empty(),
            Some('%') => (0..=s.len()).any(|k| m(&s[k..], &p[1..])),
            Some('_') => !s.is_empty() && m(&s[1..], &p[1..]),
            Some(c) => s.first() == Some(c) && m(&s[1..], &p[1..]),
        }
    }
    m(&s, &p)
}
