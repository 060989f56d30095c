//! A recursive-descent parser for the T-SQL subset in `docs/sql-surface.md`. Whatever
//! falls outside it is refused with the error SQL Server's parser gives (102 or 156,
//! naming the offending token), never guessed at.

use super::ast::*;
use super::datatype::parse_type;
use super::error;
use super::lexer::{tokenize, with_line, Tok, Token};
use crate::mssql::types::{SqlError, Value};

/// Words SQL Server reserves: met where an expression or name is expected, they
/// produce Msg 156 rather than 102.
const RESERVED: &[&str] = &[
    "ADD",
    "ALL",
    "ALTER",
    "AND",
    "ANY",
    "AS",
    "ASC",
    "BEGIN",
    "BETWEEN",
    "BY",
    "CASE",
    "CHECK",
    "CLUSTERED",
    "COLUMN",
    "COMMIT",
    "CONSTRAINT",
    "CREATE",
    "CROSS",
    "CURRENT",
    "DATABASE",
    "DECLARE",
    "DEFAULT",
    "DELETE",
    "DESC",
    "DISTINCT",
    "DROP",
    "ELSE",
    "END",
    "EXEC",
    "EXECUTE",
    "EXISTS",
    "FOREIGN",
    "FROM",
    "FULL",
    "GRANT",
    "GROUP",
    "HAVING",
    "IF",
    "IN",
    "INDEX",
    "INNER",
    "INSERT",
    "INTO",
    "IS",
    "JOIN",
    "KEY",
    "LEFT",
    "LIKE",
    "NOT",
    "NULL",
    "OF",
    "ON",
    "OR",
    "ORDER",
    "OUTER",
    "PRIMARY",
    "PROCEDURE",
    "REFERENCES",
    "RIGHT",
    "ROLLBACK",
    "SCHEMA",
    "SELECT",
    "SET",
    "TABLE",
    "THEN",
    "TO",
    "TOP",
    "TRAN",
    "TRANSACTION",
    "TRUNCATE",
    "UNION",
    "UNIQUE",
    "UPDATE",
    "USE",
    "VALUES",
    "VIEW",
    "WHEN",
    "WHERE",
    "WHILE",
    "WITH",
    "GO",
    "RETURN",
    "PRINT",
    "OPEN",
    "CLOSE",
    "FETCH",
    "MERGE",
    "REVOKE",
    "DENY",
];

fn is_reserved(word: &str) -> bool {
    RESERVED.iter().any(|r| r.eq_ignore_ascii_case(word)) && !word.eq_ignore_ascii_case("GO")
}

/// Parses a whole batch; any syntax error rejects the batch, as SQL Server does.
pub fn parse_batch(sql: &str) -> Result<Vec<Statement>, SqlError> {
    let tokens = tokenize(sql)?;
    let mut p = Parser { tokens, pos: 0 };
    let mut out = Vec::new();
    loop {
        while p.eat_sym(";") {}
        if p.at_end() {
            break;
        }
        let first = out.is_empty();
        out.push(p.statement(first)?);
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

type PResult<T> = Result<T, SqlError>;

impl Parser {
    fn at_end(&self) -> bool {
        self.pos >= self.tokens.len()
    }

    fn peek(&self) -> Option<&Tok> {
        self.tokens.get(self.pos).map(|t| &t.tok)
    }

    fn peek_at(&self, k: usize) -> Option<&Tok> {
        self.tokens.get(self.pos + k).map(|t| &t.tok)
    }

    fn line(&self) -> u32 {
        self.tokens
            .get(self.pos)
            .or_else(|| self.tokens.last())
            .map(|t| t.line)
            .unwrap_or(1)
    }

    fn advance(&mut self) -> Option<Tok> {
        let t = self.tokens.get(self.pos).map(|t| t.tok.clone());
        if t.is_some() {
            self.pos += 1;
        }
        t
    }

    /// The syntax error for the current token (or the last one at end of input).
    fn unexpected(&self) -> SqlError {
        let (tok, line) = match self.tokens.get(self.pos) {
            Some(t) => (t.tok.clone(), t.line),
            None => match self.tokens.last() {
                Some(t) => (t.tok.clone(), t.line),
                None => return error::syntax_near(""),
            },
        };
        let e = match &tok {
            Tok::Word { text, quoted: false } if is_reserved(text) => error::syntax_near_keyword(&text.to_uppercase()),
            other => error::unexpected_end(&other.describe()),
        };
        with_line(e, line)
    }

    fn is_kw(&self, kw: &str) -> bool {
        self.peek().is_some_and(|t| t.is_kw(kw))
    }

    fn is_kw_at(&self, k: usize, kw: &str) -> bool {
        self.peek_at(k).is_some_and(|t| t.is_kw(kw))
    }

    fn eat_kw(&mut self, kw: &str) -> bool {
        if self.is_kw(kw) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect_kw(&mut self, kw: &str) -> PResult<()> {
        if self.eat_kw(kw) {
            Ok(())
        } else {
            Err(self.unexpected())
        }
    }

    fn is_sym(&self, s: &str) -> bool {
        matches!(self.peek(), Some(Tok::Sym(x)) if *x == s)
    }

    fn eat_sym(&mut self, s: &str) -> bool {
        if self.is_sym(s) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect_sym(&mut self, s: &str) -> PResult<()> {
        if self.eat_sym(s) {
            Ok(())
        } else {
            Err(self.unexpected())
        }
    }

    /// An identifier: a quoted word, or a bare word that is not reserved.
    fn ident(&mut self) -> PResult<String> {
        match self.peek() {
            Some(Tok::Word { text, quoted }) if *quoted || !is_reserved(text) => {
                let t = text.clone();
                self.pos += 1;
                Ok(t)
            }
            _ => Err(self.unexpected()),
        }
    }

    fn object_name(&mut self) -> PResult<ObjectName> {
        let mut parts = vec![self.ident()?];
        while self.is_sym(".") {
            self.pos += 1;
            if self.is_sym(".") {
                // `db..table`: default schema.
                parts.push("dbo".into());
                continue;
            }
            parts.push(self.ident()?);
        }
        if parts.len() > 3 {
            return Err(error::not_supported("four-part name"));
        }
        Ok(ObjectName { parts })
    }

    fn statement(&mut self, first_in_batch: bool) -> PResult<Statement> {
        let line = self.line();
        let kind = self.statement_kind(first_in_batch)?;
        Ok(Statement { kind, line })
    }

    fn statement_kind(&mut self, first_in_batch: bool) -> PResult<StatementKind> {
        let Some(tok) = self.peek().cloned() else {
            return Err(self.unexpected());
        };
        let word = match &tok {
            Tok::Word { text, quoted: false } => text.to_uppercase(),
            Tok::Sym("(") => return Ok(StatementKind::Query(self.query()?)),
            Tok::Word { text, quoted: true } if first_in_batch => {
                return Err(with_line(error::unknown_procedure(text), self.line()))
            }
            _ => return Err(self.unexpected()),
        };
        match word.as_str() {
            "SELECT" => Ok(StatementKind::Query(self.query()?)),
            "EXEC" | "EXECUTE" if matches!(self.tokens.get(self.pos + 1).map(|t| &t.tok), Some(Tok::Sym("("))) => {
                self.pos += 2;
                let Some(Tok::Str { text, .. }) = self.peek().cloned() else {
                    return Err(self.unexpected());
                };
                self.pos += 1;
                if !self.eat_sym(")") {
                    return Err(self.unexpected());
                }
                Ok(StatementKind::ExecString(text))
            }
            "INSERT" => self.insert(),
            "UPDATE" => self.update(),
            "DELETE" => self.delete(),
            "TRUNCATE" => {
                self.pos += 1;
                self.expect_kw("TABLE")?;
                Ok(StatementKind::Truncate(self.object_name()?))
            }
            "CREATE" => {
                // CREATE SCHEMA must open its batch (hence EXEC (N'CREATE SCHEMA …')).
                let schema = matches!(self.tokens.get(self.pos + 1).map(|t| &t.tok), Some(Tok::Word { text, quoted: false }) if text.eq_ignore_ascii_case("SCHEMA"));
                if schema && !first_in_batch {
                    self.pos += 1;
                    return Err(self.unexpected());
                }
                self.create()
            }
            "ALTER" => self.alter(),
            "DROP" => self.drop(),
            "GRANT" => self.grant(),
            "USE" => {
                self.pos += 1;
                Ok(StatementKind::Use(self.ident()?))
            }
            "SET" => self.set(),
            "BEGIN" => {
                self.pos += 1;
                if self.eat_kw("TRAN") || self.eat_kw("TRANSACTION") {
                    self.optional_tran_name();
                    return Ok(StatementKind::Begin);
                }
                let mut body = Vec::new();
                loop {
                    while self.eat_sym(";") {}
                    if self.eat_kw("END") {
                        break;
                    }
                    if self.at_end() {
                        return Err(self.unexpected());
                    }
                    body.push(self.statement(false)?);
                }
                Ok(StatementKind::Block(body))
            }
            "COMMIT" => {
                self.pos += 1;
                if self.eat_kw("TRAN") || self.eat_kw("TRANSACTION") || self.eat_kw("WORK") {
                    self.optional_tran_name();
                }
                Ok(StatementKind::Commit)
            }
            "ROLLBACK" => {
                self.pos += 1;
                if self.eat_kw("TRAN") || self.eat_kw("TRANSACTION") || self.eat_kw("WORK") {
                    self.optional_tran_name();
                }
                Ok(StatementKind::Rollback)
            }
            "IF" => {
                self.pos += 1;
                let condition = self.expr()?;
                let then = Box::new(self.statement(false)?);
                let save = self.pos;
                while self.eat_sym(";") {}
                let otherwise = if self.eat_kw("ELSE") {
                    Some(Box::new(self.statement(false)?))
                } else {
                    self.pos = save;
                    None
                };
                Ok(StatementKind::If {
                    condition,
                    then,
                    otherwise,
                })
            }
            "DECLARE" => {
                self.pos += 1;
                let mut vars = Vec::new();
                loop {
                    let name = match self.advance() {
                        Some(Tok::Var(v)) => v,
                        _ => {
                            self.pos -= 1;
                            return Err(self.unexpected());
                        }
                    };
                    self.eat_kw("AS");
                    let (ty, _) = self.data_type()?;
                    let init = if self.eat_sym("=") { Some(self.expr()?) } else { None };
                    vars.push((name, ty, init));
                    if !self.eat_sym(",") {
                        break;
                    }
                }
                Ok(StatementKind::Declare(vars))
            }
            "WITH" => {
                self.pos += 1;
                if !self.eat_kw("CHANGE_TRACKING_CONTEXT") {
                    return Err(self.unexpected());
                }
                self.expect_sym("(")?;
                let context = self.expr()?;
                self.expect_sym(")")?;
                let statement = Box::new(self.statement(false)?);
                if !matches!(
                    statement.kind,
                    StatementKind::Insert { .. } | StatementKind::Update { .. } | StatementKind::Delete { .. }
                ) {
                    return Err(with_line(error::syntax_near(")"), statement.line));
                }
                Ok(StatementKind::WithContext { context, statement })
            }
            _ if first_in_batch && !is_reserved(&word) => {
                let name = self.ident()?;
                Err(with_line(error::unknown_procedure(&name), self.line()))
            }
            _ => Err(self.unexpected()),
        }
    }

    fn optional_tran_name(&mut self) {
        if let Some(Tok::Word { text, quoted }) = self.peek() {
            if *quoted || !is_reserved(text) {
                // A transaction name, unless it starts the next statement.
                let next_statement = [
                    "SELECT", "INSERT", "UPDATE", "DELETE", "SET", "COMMIT", "ROLLBACK", "IF", "CREATE", "ALTER",
                    "DROP", "USE", "GRANT", "TRUNCATE", "DECLARE", "WITH",
                ];
                if *quoted || !next_statement.iter().any(|k| k.eq_ignore_ascii_case(text)) {
                    self.pos += 1;
                }
            }
        }
    }

    fn set(&mut self) -> PResult<StatementKind> {
        self.pos += 1;
        if let Some(Tok::Var(name)) = self.peek().cloned() {
            self.pos += 1;
            self.expect_sym("=")?;
            let value = self.expr()?;
            return Ok(StatementKind::SetVariable { name, value });
        }
        if self.eat_kw("TRANSACTION") {
            self.expect_kw("ISOLATION")?;
            self.expect_kw("LEVEL")?;
            let level = if self.eat_kw("SNAPSHOT") {
                Isolation::Snapshot
            } else if self.eat_kw("SERIALIZABLE") {
                Isolation::Serializable
            } else if self.eat_kw("READ") {
                if self.eat_kw("COMMITTED") {
                    Isolation::ReadCommitted
                } else if self.eat_kw("UNCOMMITTED") {
                    Isolation::ReadUncommitted
                } else {
                    return Err(self.unexpected());
                }
            } else if self.eat_kw("REPEATABLE") {
                self.expect_kw("READ")?;
                Isolation::RepeatableRead
            } else {
                return Err(self.unexpected());
            };
            return Ok(StatementKind::SetIsolation(level));
        }
        const ON_OFF: &[&str] = &[
            "NOCOUNT",
            "XACT_ABORT",
            "ANSI_NULLS",
            "ANSI_PADDING",
            "ANSI_WARNINGS",
            "ANSI_NULL_DFLT_ON",
            "CONCAT_NULL_YIELDS_NULL",
            "QUOTED_IDENTIFIER",
            "ARITHABORT",
            "IMPLICIT_TRANSACTIONS",
            "CURSOR_CLOSE_ON_COMMIT",
        ];
        if let Some(Tok::Word { text, quoted: false }) = self.peek() {
            if ON_OFF.iter().any(|o| o.eq_ignore_ascii_case(text)) {
                if text.eq_ignore_ascii_case("IMPLICIT_TRANSACTIONS") && self.is_kw_at(1, "ON") {
                    self.pos += 1;
                    return Err(error::not_supported("IMPLICIT_TRANSACTIONS ON"));
                }
                self.pos += 1;
                if !(self.eat_kw("ON") || self.eat_kw("OFF")) {
                    return Err(self.unexpected());
                }
                return Ok(StatementKind::SetOption);
            }
            if text.eq_ignore_ascii_case("TEXTSIZE") || text.eq_ignore_ascii_case("LOCK_TIMEOUT") {
                self.pos += 1;
                self.eat_sym("-");
                match self.advance() {
                    Some(Tok::Num(_)) => return Ok(StatementKind::SetOption),
                    _ => {
                        self.pos -= 1;
                        return Err(self.unexpected());
                    }
                }
            }
        }
        Err(self.unexpected())
    }

    fn insert(&mut self) -> PResult<StatementKind> {
        self.pos += 1;
        self.eat_kw("INTO");
        let table = self.object_name()?;
        let columns = if self.eat_sym("(") {
            let mut cols = vec![self.ident()?];
            while self.eat_sym(",") {
                cols.push(self.ident()?);
            }
            self.expect_sym(")")?;
            Some(cols)
        } else {
            None
        };
        self.expect_kw("VALUES")?;
        let mut rows = Vec::new();
        loop {
            self.expect_sym("(")?;
            let mut row = vec![self.expr()?];
            while self.eat_sym(",") {
                row.push(self.expr()?);
            }
            self.expect_sym(")")?;
            rows.push(row);
            if !self.eat_sym(",") {
                break;
            }
        }
        Ok(StatementKind::Insert { table, columns, rows })
    }

    fn update(&mut self) -> PResult<StatementKind> {
        self.pos += 1;
        let table = self.object_name()?;
        self.expect_kw("SET")?;
        let mut sets = Vec::new();
        loop {
            let mut name = self.ident()?;
            // `SET T.col = …` is allowed when T is the updated table.
            if self.eat_sym(".") {
                name = self.ident()?;
            }
            self.expect_sym("=")?;
            sets.push((name, self.expr()?));
            if !self.eat_sym(",") {
                break;
            }
        }
        let filter = if self.eat_kw("WHERE") { Some(self.expr()?) } else { None };
        Ok(StatementKind::Update { table, sets, filter })
    }

    fn delete(&mut self) -> PResult<StatementKind> {
        self.pos += 1;
        self.eat_kw("FROM");
        let table = self.object_name()?;
        let filter = if self.eat_kw("WHERE") { Some(self.expr()?) } else { None };
        Ok(StatementKind::Delete { table, filter })
    }

    fn create(&mut self) -> PResult<StatementKind> {
        self.pos += 1;
        if self.eat_kw("DATABASE") {
            return Ok(StatementKind::CreateDatabase(self.ident()?));
        }
        if self.eat_kw("SCHEMA") {
            let name = self.ident()?;
            if self.eat_kw("AUTHORIZATION") {
                self.ident()?;
            }
            return Ok(StatementKind::CreateSchema(name));
        }
        if self.eat_kw("LOGIN") {
            let name = self.ident()?;
            self.expect_kw("WITH")?;
            self.expect_kw("PASSWORD")?;
            self.expect_sym("=")?;
            let password = match self.advance() {
                Some(Tok::Str { text, .. }) => text,
                _ => {
                    self.pos -= 1;
                    return Err(self.unexpected());
                }
            };
            // Options such as CHECK_POLICY = OFF are accepted and ignored.
            while self.eat_sym(",") {
                self.ident()?;
                self.expect_sym("=")?;
                self.advance();
            }
            return Ok(StatementKind::CreateLogin { name, password });
        }
        if self.eat_kw("USER") {
            let name = self.ident()?;
            let login = if self.eat_kw("FOR") || self.eat_kw("FROM") {
                self.expect_kw("LOGIN")?;
                Some(self.ident()?)
            } else {
                None
            };
            return Ok(StatementKind::CreateUser { name, login });
        }
        if self.eat_kw("TABLE") {
            return self.create_table();
        }
        Err(self.unexpected())
    }

    fn create_table(&mut self) -> PResult<StatementKind> {
        let name = self.object_name()?;
        self.expect_sym("(")?;
        let mut columns: Vec<ColumnDef> = Vec::new();
        let mut primary_key = None;
        loop {
            if self.is_kw("CONSTRAINT") || self.is_kw("PRIMARY") {
                let cname = if self.eat_kw("CONSTRAINT") {
                    Some(self.ident()?)
                } else {
                    None
                };
                self.expect_kw("PRIMARY")?;
                self.expect_kw("KEY")?;
                let _ = self.eat_kw("CLUSTERED") || self.eat_kw("NONCLUSTERED");
                self.expect_sym("(")?;
                let mut cols = Vec::new();
                loop {
                    cols.push(self.ident()?);
                    let _ = self.eat_kw("ASC") || self.eat_kw("DESC");
                    if !self.eat_sym(",") {
                        break;
                    }
                }
                self.expect_sym(")")?;
                if primary_key.is_some() || columns.iter().any(|c| c.primary_key) {
                    return Err(error::multiple_primary_keys(name.object()));
                }
                primary_key = Some(PrimaryKeyDef {
                    name: cname,
                    columns: cols,
                });
            } else {
                let cname = self.ident()?;
                let (ty, type_name) = self.data_type()?;
                let mut col = ColumnDef {
                    name: cname,
                    ty,
                    type_name,
                    nullable: None,
                    primary_key: false,
                    pk_constraint: None,
                };
                loop {
                    if self.eat_kw("NOT") {
                        self.expect_kw("NULL")?;
                        col.nullable = Some(false);
                    } else if self.eat_kw("NULL") {
                        col.nullable = Some(true);
                    } else if self.is_kw("CONSTRAINT") || self.is_kw("PRIMARY") {
                        let cname = if self.eat_kw("CONSTRAINT") {
                            Some(self.ident()?)
                        } else {
                            None
                        };
                        self.expect_kw("PRIMARY")?;
                        self.expect_kw("KEY")?;
                        let _ = self.eat_kw("CLUSTERED") || self.eat_kw("NONCLUSTERED");
                        if primary_key.is_some() || columns.iter().any(|c| c.primary_key) {
                            return Err(error::multiple_primary_keys(name.object()));
                        }
                        col.primary_key = true;
                        col.pk_constraint = cname;
                    } else {
                        break;
                    }
                }
                columns.push(col);
            }
            if self.eat_sym(",") {
                if self.is_sym(")") {
                    break;
                }
                continue;
            }
            break;
        }
        self.expect_sym(")")?;
        Ok(StatementKind::CreateTable {
            name,
            columns,
            primary_key,
        })
    }

    /// A data type: `int`, `decimal(10,2)`, `nvarchar(max)`, …
    fn data_type(&mut self) -> PResult<(crate::mssql::types::SqlType, String)> {
        let line = self.line();
        let name = self.ident()?;
        let mut args: Vec<Option<u32>> = Vec::new();
        if self.eat_sym("(") {
            loop {
                match self.advance() {
                    Some(Tok::Num(n)) => args.push(Some(n.parse().map_err(|_| self.unexpected())?)),
                    Some(Tok::Word { text, .. }) if text.eq_ignore_ascii_case("max") => args.push(None),
                    _ => {
                        self.pos -= 1;
                        return Err(self.unexpected());
                    }
                }
                if !self.eat_sym(",") {
                    break;
                }
            }
            self.expect_sym(")")?;
        }
        let ty = parse_type(&name, &args).map_err(|e| with_line(e, line))?;
        Ok((ty, name.to_lowercase()))
    }

    fn alter(&mut self) -> PResult<StatementKind> {
        self.pos += 1;
        if self.eat_kw("TABLE") {
            let table = self.object_name()?;
            let enable = if self.eat_kw("ENABLE") {
                true
            } else if self.eat_kw("DISABLE") {
                false
            } else {
                return Err(self.unexpected());
            };
            self.expect_kw("CHANGE_TRACKING")?;
            let mut track = false;
            if enable && self.eat_kw("WITH") {
                self.expect_sym("(")?;
                self.expect_kw("TRACK_COLUMNS_UPDATED")?;
                self.expect_sym("=")?;
                track = self.on_off()?;
                self.expect_sym(")")?;
            }
            return Ok(StatementKind::AlterTableChangeTracking {
                table,
                enable,
                track_columns_updated: track,
            });
        }
        if self.eat_kw("DATABASE") {
            let database = if self.eat_kw("CURRENT") {
                None
            } else {
                Some(self.ident()?)
            };
            self.expect_kw("SET")?;
            let option = if self.eat_kw("CHANGE_TRACKING") {
                let on = if self.eat_sym("=") { Some(self.on_off()?) } else { None };
                let mut retention = None;
                let mut auto_cleanup = None;
                if self.eat_sym("(") {
                    loop {
                        if self.eat_kw("CHANGE_RETENTION") {
                            self.expect_sym("=")?;
                            let n = match self.advance() {
                                Some(Tok::Num(n)) => n.parse::<i64>().map_err(|_| self.unexpected())?,
                                _ => {
                                    self.pos -= 1;
                                    return Err(self.unexpected());
                                }
                            };
                            let unit = if self.eat_kw("DAYS") {
                                RetentionUnit::Days
                            } else if self.eat_kw("HOURS") {
                                RetentionUnit::Hours
                            } else if self.eat_kw("MINUTES") {
                                RetentionUnit::Minutes
                            } else {
                                RetentionUnit::Days
                            };
                            retention = Some((n, unit));
                        } else if self.eat_kw("AUTO_CLEANUP") {
                            self.expect_sym("=")?;
                            auto_cleanup = Some(self.on_off()?);
                        } else {
                            return Err(self.unexpected());
                        }
                        if !self.eat_sym(",") {
                            break;
                        }
                    }
                    self.expect_sym(")")?;
                }
                if on.is_none() && retention.is_none() && auto_cleanup.is_none() {
                    return Err(self.unexpected());
                }
                DatabaseOption::ChangeTracking {
                    on,
                    retention,
                    auto_cleanup,
                }
            } else if self.eat_kw("ALLOW_SNAPSHOT_ISOLATION") {
                DatabaseOption::AllowSnapshotIsolation(self.on_off()?)
            } else if self.eat_kw("READ_COMMITTED_SNAPSHOT") {
                let on = self.on_off()?;
                if self.eat_kw("WITH") {
                    if self.eat_kw("ROLLBACK") {
                        self.expect_kw("IMMEDIATE")?;
                    } else {
                        self.expect_kw("NO_WAIT")?;
                    }
                }
                DatabaseOption::ReadCommittedSnapshot(on)
            } else {
                return Err(self.unexpected());
            };
            return Ok(StatementKind::AlterDatabase { database, option });
        }
        Err(self.unexpected())
    }

    fn on_off(&mut self) -> PResult<bool> {
        if self.eat_kw("ON") {
            Ok(true)
        } else if self.eat_kw("OFF") {
            Ok(false)
        } else {
            Err(self.unexpected())
        }
    }

    fn drop(&mut self) -> PResult<StatementKind> {
        self.pos += 1;
        if self.eat_kw("TABLE") {
            let if_exists = if self.eat_kw("IF") {
                self.expect_kw("EXISTS")?;
                true
            } else {
                false
            };
            return Ok(StatementKind::DropTable {
                name: self.object_name()?,
                if_exists,
            });
        }
        if self.eat_kw("DATABASE") {
            return Ok(StatementKind::DropDatabase(self.ident()?));
        }
        Err(self.unexpected())
    }

    fn grant(&mut self) -> PResult<StatementKind> {
        self.pos += 1;
        let mut permissions = Vec::new();
        loop {
            let mut words = Vec::new();
            while let Some(Tok::Word { text, quoted: false }) = self.peek() {
                if text.eq_ignore_ascii_case("ON") || text.eq_ignore_ascii_case("TO") {
                    break;
                }
                words.push(text.to_uppercase());
                self.pos += 1;
            }
            if words.is_empty() {
                return Err(self.unexpected());
            }
            permissions.push(words.join(" "));
            if !self.eat_sym(",") {
                break;
            }
        }
        let on = if self.eat_kw("ON") {
            if self.eat_kw("SCHEMA") {
                self.expect_sym("::")?;
                Securable::Schema(self.ident()?)
            } else if self.eat_kw("OBJECT") {
                self.expect_sym("::")?;
                Securable::Object(self.object_name()?)
            } else if self.eat_kw("DATABASE") {
                self.expect_sym("::")?;
                self.ident()?;
                Securable::Database
            } else {
                Securable::Object(self.object_name()?)
            }
        } else {
            Securable::Database
        };
        self.expect_kw("TO")?;
        let mut to = vec![self.ident()?];
        while self.eat_sym(",") {
            to.push(self.ident()?);
        }
        Ok(StatementKind::Grant { permissions, on, to })
    }

    // ---- queries ----

    fn query(&mut self) -> PResult<Query> {
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
                        self.pos -= 1;
                        return Err(self.unexpected());
                    }
                }
            }
        } else {
            None
        };
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
                    self.pos -= 1;
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
                            self.pos -= 1;
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
                        22103,
                        16,
                        "A table alias must be specified for the CHANGETABLE function.",
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

    fn expr(&mut self) -> PResult<Expr> {
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
fn number_literal(n: &str) -> Option<Expr> {
    if n.contains('e') {
        return n.parse::<f64>().ok().map(|f| Expr::Literal(Value::Float(f)));
    }
    if !n.contains('.') {
        if let Ok(i) = n.parse::<i32>() {
            return Some(Expr::Literal(Value::Int(i64::from(i))));
        }
    }
    let (value, scale) = super::value::parse_decimal(n)?;
    Some(Expr::Literal(Value::Decimal { value, scale }))
}

/// Parses a name given as a string (`N'[dbo].[Orders]'` to OBJECT_ID and friends).
pub fn parse_object_name(text: &str) -> Result<ObjectName, SqlError> {
    let tokens = tokenize(text)?;
    let mut p = Parser { tokens, pos: 0 };
    let name = p.object_name()?;
    if !p.at_end() {
        return Err(p.unexpected());
    }
    Ok(name)
}
