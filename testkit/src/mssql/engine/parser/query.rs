//! Queries and expressions: SELECT (TOP, select list, FROM with joins and
//! `CHANGETABLE(CHANGES …)`, WHERE), UNION ALL, ORDER BY, and scalar expressions
//! with T-SQL operator precedence.

use super::{is_reserved, PResult, Parser};
use crate::mssql::engine::ast::*;
use crate::mssql::engine::error;
use crate::mssql::engine::lexer::{with_line, Tok};
use crate::mssql::types::{SqlError, Value};

impl Parser {
    /// A query: SELECTs joined by UNION ALL, then ORDER BY.
    pub(super) fn query(&mut self) -> PResult<Query> {
        let mut branches = vec![self.select_branch()?];
        while self.is_kw("UNION") {
            self.pos += 1;
            if !self.eat_kw("ALL") {
                return Err(error::not_supported("UNION without ALL"));
            }
            branches.push(self.select_branch()?);
        }
        let mut order_by = Vec::new();
        if self.eat_kw("ORDER") {
            self.expect_kw("BY")?;
            loop {
                let expr = self.expr()?;
                let descending = if self.eat_kw("DESC") {
                    true
                } else {
                    self.eat_kw("ASC");
                    false
                };
                order_by.push(OrderItem { expr, descending });
                if !self.eat_sym(",") {
                    break;
                }
            }
        }
        Ok(Query { branches, order_by })
    }

    fn select_branch(&mut self) -> PResult<Select> {
        if self.eat_sym("(") {
            let q = self.query()?;
            self.expect_sym(")")?;
            if q.branches.len() == 1 && q.order_by.is_empty() {
                return Ok(q.branches.into_iter().next().unwrap_or(Select {
                    top: None,
                    items: vec![],
                    from: None,
                    filter: None,
                }));
            }
            return Err(error::not_supported("nested UNION"));
        }
        self.expect_kw("SELECT")?;
        if self.is_kw("DISTINCT") {
            return Err(error::not_supported("DISTINCT"));
        }
        self.eat_kw("ALL");
        let top = if self.eat_kw("TOP") {
            if self.eat_sym("(") {
                let e = self.expr()?;
                self.expect_sym(")")?;
                Some(e)
            } else {
                match self.advance() {
                    Some(Tok::Num(n)) => Some(Expr::Literal(Value::Int(n.parse().map_err(|_| self.unexpected())?))),
                    _ => {
                        self.pos = self.pos.saturating_sub(1);
                        return Err(self.unexpected());
                    }
                }
            }
        } else {
            None
        };
        if top.is_some() && (self.is_kw("PERCENT") || (self.is_kw("WITH") && self.is_kw_at(1, "TIES"))) {
            return Err(error::not_supported("TOP … PERCENT / WITH TIES"));
        }
        let mut items = Vec::new();
        loop {
            items.push(self.select_item()?);
            if !self.eat_sym(",") {
                break;
            }
        }
        let from = if self.eat_kw("FROM") { Some(self.from()?) } else { None };
        let filter = if self.eat_kw("WHERE") { Some(self.expr()?) } else { None };
        if self.is_kw("GROUP") || self.is_kw("HAVING") {
            return Err(error::not_supported("GROUP BY"));
        }
        Ok(Select {
            top,
            items,
            from,
            filter,
        })
    }

    fn select_item(&mut self) -> PResult<SelectItem> {
        if self.eat_sym("*") {
            return Ok(SelectItem::Star(None));
        }
        if let (Some(Tok::Word { text, .. }), Some(Tok::Sym(".")), Some(Tok::Sym("*"))) =
            (self.peek(), self.peek_at(1), self.peek_at(2))
        {
            let q = text.clone();
            self.pos += 3;
            return Ok(SelectItem::Star(Some(q)));
        }
        // `alias = expr`
        if let (Some(Tok::Word { text, quoted }), Some(Tok::Sym("="))) = (self.peek(), self.peek_at(1)) {
            if *quoted || !is_reserved(text) {
                let alias = text.clone();
                self.pos += 2;
                let expr = self.expr()?;
                return Ok(SelectItem::Expr {
                    expr,
                    alias: Some(alias),
                });
            }
        }
        let expr = self.expr()?;
        let alias = self.alias()?;
        Ok(SelectItem::Expr { expr, alias })
    }

    fn alias(&mut self) -> PResult<Option<String>> {
        if self.eat_kw("AS") {
            return match self.advance() {
                Some(Tok::Word { text, .. }) => Ok(Some(text)),
                Some(Tok::Str { text, .. }) => Ok(Some(text)),
                _ => {
                    self.pos = self.pos.saturating_sub(1);
                    Err(self.unexpected())
                }
            };
        }
        match self.peek() {
            Some(Tok::Word { text, quoted }) if *quoted || !is_reserved(text) => {
                let t = text.clone();
                self.pos += 1;
                Ok(Some(t))
            }
            _ => Ok(None),
        }
    }

    fn from(&mut self) -> PResult<From> {
        let first = self.table_ref()?;
        let mut joins = Vec::new();
        loop {
            let kind = if self.eat_sym(",") {
                JoinKind::Cross
            } else if self.is_kw("JOIN") {
                self.pos += 1;
                JoinKind::Inner
            } else if self.is_kw("INNER") {
                self.pos += 1;
                self.expect_kw("JOIN")?;
                JoinKind::Inner
            } else if self.is_kw("LEFT") {
                self.pos += 1;
                self.eat_kw("OUTER");
                self.expect_kw("JOIN")?;
                JoinKind::Left
            } else if self.is_kw("CROSS") {
                self.pos += 1;
                self.expect_kw("JOIN")?;
                JoinKind::Cross
            } else if self.is_kw("RIGHT") || self.is_kw("FULL") {
                return Err(error::not_supported("RIGHT/FULL JOIN"));
            } else {
                break;
            };
            let table = self.table_ref()?;
            let on = if kind == JoinKind::Cross {
                None
            } else {
                self.expect_kw("ON")?;
                Some(self.expr()?)
            };
            joins.push(Join { kind, table, on });
        }
        Ok(From { first, joins })
    }

    fn table_ref(&mut self) -> PResult<TableRef> {
        if self.is_kw("CHANGETABLE") {
            self.pos += 1;
            self.expect_sym("(")?;
            if !self.eat_kw("CHANGES") {
                if self.is_kw("VERSION") {
                    return Err(error::not_supported("CHANGETABLE(VERSION …)"));
                }
                return Err(self.unexpected());
            }
            let table = self.object_name()?;
            self.expect_sym(",")?;
            // SQL Server accepts only a scalar here: a variable, a literal or NULL.
            let since = match self.peek().cloned() {
                Some(Tok::Var(v)) => {
                    self.pos += 1;
                    Expr::Variable(v)
                }
                Some(Tok::Num(n)) => {
                    self.pos += 1;
                    Expr::Literal(Value::Int(n.parse().map_err(|_| self.unexpected())?))
                }
                Some(Tok::Sym("-")) => {
                    self.pos += 1;
                    match self.advance() {
                        Some(Tok::Num(n)) => {
                            Expr::Literal(Value::Int(-n.parse::<i64>().map_err(|_| self.unexpected())?))
                        }
                        _ => {
                            self.pos = self.pos.saturating_sub(1);
                            return Err(self.unexpected());
                        }
                    }
                }
                Some(t) if t.is_kw("NULL") => {
                    self.pos += 1;
                    Expr::Literal(Value::Null)
                }
                _ => return Err(self.unexpected()),
            };
            if self.eat_sym(",") {
                self.expect_kw("FORCESEEK")?;
            }
            self.expect_sym(")")?;
            let alias = self.alias()?.ok_or_else(|| {
                with_line(
                    SqlError::new(
                        22104,
                        16,
                        "A table returned by the CHANGETABLE function must be aliased.",
                    ),
                    self.line(),
                )
            })?;
            return Ok(TableRef::ChangeTable { table, since, alias });
        }
        if self.is_sym("(") {
            return Err(error::not_supported("derived table"));
        }
        let name = self.object_name()?;
        let alias = self.alias()?;
        if self.is_kw("WITH") && matches!(self.peek_at(1), Some(Tok::Sym("("))) {
            // Table hints (NOLOCK…) are accepted and ignored.
            self.pos += 2;
            while !self.eat_sym(")") {
                if self.advance().is_none() {
                    return Err(self.unexpected());
                }
            }
        }
        Ok(TableRef::Named { name, alias })
    }

    // ---- expressions ----

    /// A scalar or boolean expression (lowest precedence: OR).
    pub(super) fn expr(&mut self) -> PResult<Expr> {
        self.or_expr()
    }

    fn or_expr(&mut self) -> PResult<Expr> {
        let mut left = self.and_expr()?;
        while self.eat_kw("OR") {
            let right = self.and_expr()?;
            left = Expr::Binary {
                op: BinOp::Or,
                left: Box::new(left),
                right: Box::new(right),
            };
        }
        Ok(left)
    }

    fn and_expr(&mut self) -> PResult<Expr> {
        let mut left = self.not_expr()?;
        while self.eat_kw("AND") {
            let right = self.not_expr()?;
            left = Expr::Binary {
                op: BinOp::And,
                left: Box::new(left),
                right: Box::new(right),
            };
        }
        Ok(left)
    }

    fn not_expr(&mut self) -> PResult<Expr> {
        if self.eat_kw("NOT") {
            return Ok(Expr::Not(Box::new(self.not_expr()?)));
        }
        self.comparison()
    }

    fn comparison(&mut self) -> PResult<Expr> {
        let left = self.additive()?;
        let op = match self.peek() {
            Some(Tok::Sym("=")) => Some(BinOp::Eq),
            Some(Tok::Sym("<>")) | Some(Tok::Sym("!=")) => Some(BinOp::Ne),
            Some(Tok::Sym("<")) => Some(BinOp::Lt),
            Some(Tok::Sym("<=")) => Some(BinOp::Le),
            Some(Tok::Sym(">")) => Some(BinOp::Gt),
            Some(Tok::Sym(">=")) => Some(BinOp::Ge),
            _ => None,
        };
        if let Some(op) = op {
            self.pos += 1;
            let right = self.additive()?;
            return Ok(Expr::Binary {
                op,
                left: Box::new(left),
                right: Box::new(right),
            });
        }
        if self.eat_kw("IS") {
            let negated = self.eat_kw("NOT");
            self.expect_kw("NULL")?;
            return Ok(Expr::IsNull {
                expr: Box::new(left),
                negated,
            });
        }
        let negated = if self.is_kw("NOT")
            && (self.is_kw_at(1, "IN") || self.is_kw_at(1, "BETWEEN") || self.is_kw_at(1, "LIKE"))
        {
            self.pos += 1;
            true
        } else {
            false
        };
        if self.eat_kw("IN") {
            self.expect_sym("(")?;
            if self.is_kw("SELECT") {
                return Err(error::not_supported("IN (subquery)"));
            }
            let mut list = vec![self.expr()?];
            while self.eat_sym(",") {
                list.push(self.expr()?);
            }
            self.expect_sym(")")?;
            return Ok(Expr::InList {
                expr: Box::new(left),
                list,
                negated,
            });
        }
        if self.eat_kw("BETWEEN") {
            let low = self.additive()?;
            self.expect_kw("AND")?;
            let high = self.additive()?;
            return Ok(Expr::Between {
                expr: Box::new(left),
                low: Box::new(low),
                high: Box::new(high),
                negated,
            });
        }
        if self.eat_kw("LIKE") {
            let pattern = self.additive()?;
            return Ok(Expr::Like {
                expr: Box::new(left),
                pattern: Box::new(pattern),
                negated,
            });
        }
        if negated {
            return Err(self.unexpected());
        }
        Ok(left)
    }

    fn additive(&mut self) -> PResult<Expr> {
        let mut left = self.multiplicative()?;
        loop {
            let op = if self.is_sym("+") {
                BinOp::Add
            } else if self.is_sym("-") {
                BinOp::Sub
            } else {
                break;
            };
            self.pos += 1;
            let right = self.multiplicative()?;
            left = Expr::Binary {
                op,
                left: Box::new(left),
                right: Box::new(right),
            };
        }
        Ok(left)
    }

    fn multiplicative(&mut self) -> PResult<Expr> {
        let mut left = self.unary()?;
        loop {
            let op = if self.is_sym("*") {
                BinOp::Mul
            } else if self.is_sym("/") {
                BinOp::Div
            } else if self.is_sym("%") {
                BinOp::Mod
            } else {
                break;
            };
            self.pos += 1;
            let right = self.unary()?;
            left = Expr::Binary {
                op,
                left: Box::new(left),
                right: Box::new(right),
            };
        }
        Ok(left)
    }

    fn unary(&mut self) -> PResult<Expr> {
        if self.eat_sym("-") {
            return Ok(Expr::Neg(Box::new(self.unary()?)));
        }
        if self.eat_sym("+") {
            return self.unary();
        }
        self.primary()
    }

    fn primary(&mut self) -> PResult<Expr> {
        let Some(tok) = self.peek().cloned() else {
            return Err(self.unexpected());
        };
        match tok {
            Tok::Num(n) => {
                self.pos += 1;
                number_literal(&n).ok_or_else(|| error::syntax_near(&n))
            }
            Tok::Str { text, national } => {
                self.pos += 1;
                Ok(Expr::StringLiteral { text, national })
            }
            Tok::Bin(b) => {
                self.pos += 1;
                Ok(Expr::Literal(Value::Binary(b)))
            }
            Tok::Var(v) => {
                self.pos += 1;
                Ok(Expr::Variable(v))
            }
            Tok::Global(g) => {
                self.pos += 1;
                Ok(Expr::Global(g.to_uppercase()))
            }
            Tok::Sym("(") => {
                self.pos += 1;
                if self.is_kw("SELECT") {
                    let q = self.query()?;
                    self.expect_sym(")")?;
                    return Ok(Expr::Subquery(Box::new(q)));
                }
                let e = self.expr()?;
                self.expect_sym(")")?;
                Ok(e)
            }
            Tok::Word { text, quoted } => {
                let upper = text.to_uppercase();
                if !quoted {
                    match upper.as_str() {
                        "NULL" => {
                            self.pos += 1;
                            return Ok(Expr::Literal(Value::Null));
                        }
                        "EXISTS" => {
                            self.pos += 1;
                            self.expect_sym("(")?;
                            let q = self.query()?;
                            self.expect_sym(")")?;
                            return Ok(Expr::Exists(Box::new(q)));
                        }
                        "CASE" => return self.case(),
                        "CAST" if self.is_sym_at(1, "(") => {
                            self.pos += 2;
                            let e = self.expr()?;
                            self.expect_kw("AS")?;
                            let (ty, _) = self.data_type()?;
                            self.expect_sym(")")?;
                            return Ok(Expr::Cast { expr: Box::new(e), ty });
                        }
                        "CONVERT" if self.is_sym_at(1, "(") => {
                            self.pos += 2;
                            let (ty, _) = self.data_type()?;
                            self.expect_sym(",")?;
                            let e = self.expr()?;
                            self.expect_sym(")")?;
                            return Ok(Expr::Cast { expr: Box::new(e), ty });
                        }
                        _ => {}
                    }
                    if is_reserved(&upper) {
                        return Err(self.unexpected());
                    }
                }
                // function call?
                if !quoted && self.is_sym_at(1, "(") {
                    self.pos += 2;
                    if (upper == "COUNT" || upper == "COUNT_BIG") && self.eat_sym("*") {
                        self.expect_sym(")")?;
                        // COUNT(*) counts rows: the same as counting a non-NULL constant.
                        return Ok(Expr::Function {
                            name: upper,
                            args: vec![Expr::Literal(Value::Int(1))],
                        });
                    }
                    if self.is_kw("DISTINCT") {
                        return Err(error::not_supported("aggregate DISTINCT"));
                    }
                    let mut args = Vec::new();
                    if !self.eat_sym(")") {
                        loop {
                            args.push(self.expr()?);
                            if !self.eat_sym(",") {
                                break;
                            }
                        }
                        self.expect_sym(")")?;
                    }
                    return Ok(Expr::Function { name: upper, args });
                }
                self.pos += 1;
                if self.is_sym(".") {
                    self.pos += 1;
                    let name = self.ident()?;
                    if self.is_sym(".") {
                        return Err(error::not_supported("three-part column name"));
                    }
                    return Ok(Expr::Column {
                        qualifier: Some(text),
                        name,
                    });
                }
                Ok(Expr::Column {
                    qualifier: None,
                    name: text,
                })
            }
            _ => Err(self.unexpected()),
        }
    }

    fn is_sym_at(&self, k: usize, s: &str) -> bool {
        matches!(self.peek_at(k), Some(Tok::Sym(x)) if *x == s)
    }

    fn case(&mut self) -> PResult<Expr> {
        self.pos += 1;
        let operand = if self.is_kw("WHEN") {
            None
        } else {
            Some(Box::new(self.expr()?))
        };
        let mut whens = Vec::new();
        while self.eat_kw("WHEN") {
            let cond = self.expr()?;
            self.expect_kw("THEN")?;
            let value = self.expr()?;
            whens.push((cond, value));
        }
        if whens.is_empty() {
            return Err(self.unexpected());
        }
        let otherwise = if self.eat_kw("ELSE") {
            Some(Box::new(self.expr()?))
        } else {
            None
        };
        self.expect_kw("END")?;
        Ok(Expr::Case {
            operand,
            whens,
            otherwise,
        })
    }
}

/// A numeric literal: int when it fits, else bigint-sized decimal, else decimal.
pub(super) fn number_literal(n: &str) -> Option<Expr> {
    if n.contains('e') {
        return n.parse::<f64>().ok().map(|f| Expr::Literal(Value::Float(f)));
    }
    if !n.contains('.') {
        if let Ok(i) = n.parse::<i32>() {
            return Some(Expr::Literal(Value::Int(i64::from(i))));
        }
    }
    let (value, scale) = crate::mssql::engine::value::parse_decimal(n)?;
    Some(Expr::Literal(Value::Decimal { value, scale }))
}
