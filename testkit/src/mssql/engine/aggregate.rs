//! Aggregates over a whole result (`COUNT(*)`, `COUNT_BIG`, `MIN`, `MAX`, `SUM`,
//! `AVG` without GROUP BY), which tests and workloads use to check row counts.
//! GROUP BY itself is refused by the parser.

use std::cmp::Ordering;

use super::ast::{BinOp, Expr, Select, SelectItem};
use super::collation::{self, Rules};
use super::env::Env;
use super::error;
use super::expr::{arithmetic, bind, Bound, Scope};
use super::value::sort_cmp_as;
use crate::mssql::types::{Column, SqlError, SqlType, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Count,
    CountBig,
    Min,
    Max,
    Sum,
    Avg,
}

fn kind_of(expr: &Expr) -> Option<(Kind, &Expr)> {
    let Expr::Function { name, args } = expr else {
        return None;
    };
    let kind = match name.as_str() {
        "COUNT" => Kind::Count,
        "COUNT_BIG" => Kind::CountBig,
        "MIN" => Kind::Min,
        "MAX" => Kind::Max,
        "SUM" => Kind::Sum,
        "AVG" => Kind::Avg,
        _ => return None,
    };
    match args.as_slice() {
        [a] => Some((kind, a)),
        _ => None,
    }
}

/// Whether the select list aggregates (then the query yields exactly one row).
pub fn is_aggregate(select: &Select) -> bool {
    select
        .items
        .iter()
        .any(|i| matches!(i, SelectItem::Expr { expr, .. } if kind_of(expr).is_some()))
}

enum Item {
    Agg {
        kind: Kind,
        arg: Bound,
        acc: Value,
        count: i64,
        /// MIN/MAX of strings follow the argument's collation rules.
        rules: Rules,
    },
    Const(Bound),
}

/// An aggregating projection: fed every row, then finished into one.
pub struct Aggregation {
    pub columns: Vec<Column>,
    items: Vec<Item>,
}

/// Binds the select list of an aggregate query.
pub fn prepare(select: &Select, scope: &Scope, env: &Env<'_>) -> Result<Aggregation, SqlError> {
    let mut columns = Vec::new();
    let mut items = Vec::new();
    for item in &select.items {
        let SelectItem::Expr { expr, alias } = item else {
            return Err(error::syntax_near("*"));
        };
        let name = alias.clone().unwrap_or_default();
        match kind_of(expr) {
            Some((kind, arg)) => {
                let t = bind(arg, scope, env)?;
                let rules = collation::rules_of(&t.ty);
                let (ty, nullable) = match kind {
                    Kind::Count => (SqlType::Int, false),
                    Kind::CountBig => (SqlType::BigInt, false),
                    Kind::Min | Kind::Max => (t.ty.clone(), true),
                    Kind::Sum | Kind::Avg => (
                        match t.ty {
                            SqlType::TinyInt | SqlType::SmallInt | SqlType::Int | SqlType::Bit => SqlType::Int,
                            SqlType::Decimal { scale, .. } => SqlType::Decimal { precision: 38, scale },
                            SqlType::Real => SqlType::Float,
                            other => other,
                        },
                        true,
                    ),
                };
                columns.push(Column { name, ty, nullable });
                items.push(Item::Agg {
                    kind,
                    arg: t.bound,
                    acc: Value::Null,
                    count: 0,
                    rules,
                });
            }
            None => {
                let t = bind(expr, &Scope::default(), env).map_err(|e| {
                    if e.number == 207 || e.number == 4104 {
                        SqlError::new(
                            8120,
                            16,
                            format!("Column '{}' is invalid in the select list because it is not contained in either an aggregate function or the GROUP BY clause.", column_name(expr)),
                        )
                    } else {
                        e
                    }
                })?;
                columns.push(Column {
                    name,
                    ty: t.ty,
                    nullable: t.nullable,
                });
                items.push(Item::Const(t.bound));
            }
        }
    }
    Ok(Aggregation { columns, items })
}

fn column_name(expr: &Expr) -> String {
    match expr {
        Expr::Column {
            qualifier: Some(q),
            name,
        } => format!("{q}.{name}"),
        Expr::Column { name, .. } => name.clone(),
        _ => String::new(),
    }
}

impl Aggregation {
    /// Accumulates one row.
    pub fn feed(&mut self, row: &[Value], env: &Env<'_>) -> Result<(), SqlError> {
        for item in &mut self.items {
            let Item::Agg {
                kind,
                arg,
                acc,
                count,
                rules,
            } = item
            else {
                continue;
            };
            let v = arg.eval(row, env)?;
            if matches!(v, Value::Null) {
                continue;
            }
            *count += 1;
            match kind {
                Kind::Count | Kind::CountBig => {}
                Kind::Min | Kind::Max => {
                    let better = match &*acc {
                        Value::Null => true,
                        current => {
                            let o = sort_cmp_as(&v, current, *rules);
                            (*kind == Kind::Min && o == Ordering::Less)
                                || (*kind == Kind::Max && o == Ordering::Greater)
                        }
                    };
                    if better {
                        *acc = v;
                    }
                }
                Kind::Sum | Kind::Avg => {
                    let sum = match &*acc {
                        Value::Null => v,
                        current => arithmetic(BinOp::Add, current.clone(), v)?,
                    };
                    *acc = sum;
                }
            }
        }
        Ok(())
    }

    /// The single result row.
    pub fn finish(self, env: &Env<'_>) -> Result<Vec<Value>, SqlError> {
        let mut out = Vec::with_capacity(self.items.len());
        for item in self.items {
            out.push(match item {
                Item::Const(b) => b.eval(&[], env)?,
                Item::Agg { kind, acc, count, .. } => match kind {
                    Kind::Count | Kind::CountBig => Value::Int(count),
                    Kind::Avg if count > 0 => arithmetic(BinOp::Div, acc, Value::Int(count))?,
                    _ => acc,
                },
            });
        }
        Ok(out)
    }
}
