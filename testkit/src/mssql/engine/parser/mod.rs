//! A recursive-descent parser for the T-SQL subset in `docs/sql-surface.md`. Whatever
//! falls outside it is refused with the error SQL Server's parser gives (102 or 156,
//! naming the offending token), never guessed at.

mod query;

use super::ast::*;
use super::datatype::parse_type;
use super::error;
use super::lexer::{tokenize, with_line, Tok, Token};
use crate::mssql::types::SqlError;

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
    let mut p = Parser {
        tokens,
        pos: 0,
        depth: 0,
    };
    let mut out = Vec::new();
    loop {
        while p.eat_sym(";") {}
        if p.at_end() {
            break;
        }
        let first = out.is_empty();
        let statement = p.statement(first)?;
        if !first && matches!(statement.kind, StatementKind::CreateSchema(_)) {
            return Err(with_line(
                SqlError::new(111, 15, "'CREATE SCHEMA' must be the first statement in a query batch."),
                statement.line,
            ));
        }
        out.push(statement);
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    /// Nesting of statements inside IF / BEGIN…END / WITH (0 at batch level).
    depth: usize,
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

    /// A statement inside IF / BEGIN…END / WITH.
    fn nested_statement(&mut self) -> PResult<Statement> {
        self.depth += 1;
        let s = self.statement(false);
        self.depth -= 1;
        s
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
            // A batch starting with a name is an implicit EXEC of that procedure.
            Tok::Word { quoted: true, .. } if first_in_batch => return self.exec_procedure(),
            _ => return Err(self.unexpected()),
        };
        match word.as_str() {
            "SELECT" => Ok(StatementKind::Query(self.query()?)),
            "INSERT" => self.insert(),
            "UPDATE" => self.update(),
            "DELETE" => self.delete(),
            "TRUNCATE" => {
                self.pos += 1;
                self.expect_kw("TABLE")?;
                Ok(StatementKind::Truncate(self.object_name()?))
            }
            "CREATE" => {
                // CREATE SCHEMA cannot be nested in IF/BEGIN…END: SQL Server's parser
                // stops at SCHEMA (156); later in a batch it is Msg 111 (see
                // parse_batch). Hence `EXEC (N'CREATE SCHEMA …')` in scripts.
                if self.depth > 0 && self.is_kw_at(1, "SCHEMA") {
                    self.pos += 1;
                    return Err(self.unexpected());
                }
                self.create()
            }
            "ALTER" => self.alter(),
            "DROP" => self.drop(),
            "GRANT" => self.grant(PermissionAction::Grant),
            "DENY" => self.grant(PermissionAction::Deny),
            "REVOKE" => self.grant(PermissionAction::Revoke),
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
                    body.push(self.nested_statement()?);
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
                let then = Box::new(self.nested_statement()?);
                let save = self.pos;
                while self.eat_sym(";") {}
                let otherwise = if self.eat_kw("ELSE") {
                    Some(Box::new(self.nested_statement()?))
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
                            self.pos = self.pos.saturating_sub(1);
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
            "EXEC" | "EXECUTE" if matches!(self.peek_at(1), Some(Tok::Sym("("))) => {
                // `EXEC (N'…')`: the string runs as a batch of its own (the documented
                // way to create a schema conditionally).
                self.pos += 2;
                let Some(Tok::Str { text, .. }) = self.peek().cloned() else {
                    return Err(self.unexpected());
                };
                self.pos += 1;
                self.expect_sym(")")?;
                Ok(StatementKind::ExecString(text))
            }
            "EXEC" | "EXECUTE" => {
                // No stored procedures exist here (sp_executesql arrives as an RPC
                // the wire layer decodes), so any EXEC names a missing procedure:
                // Msg 2812 when it runs, once the whole batch has parsed.
                self.pos += 1;
                self.exec_procedure()
            }
            "PRINT" => {
                self.pos += 1;
                Ok(StatementKind::Print(self.expr()?))
            }
            "WITH" => {
                self.pos += 1;
                if !self.eat_kw("CHANGE_TRACKING_CONTEXT") {
                    return Err(self.unexpected());
                }
                self.expect_sym("(")?;
                let context = self.expr()?;
                self.expect_sym(")")?;
                let statement = Box::new(self.nested_statement()?);
                if matches!(statement.kind, StatementKind::Query(_)) {
                    return Err(with_line(
                        SqlError::new(
                            22108,
                            16,
                            "The CHANGE_TRACKING_CONTEXT WITH clause cannot be used with a SELECT statement.",
                        ),
                        statement.line,
                    ));
                }
                if !matches!(
                    statement.kind,
                    StatementKind::Insert { .. } | StatementKind::Update { .. } | StatementKind::Delete { .. }
                ) {
                    return Err(with_line(error::syntax_near(")"), statement.line));
                }
                Ok(StatementKind::WithContext { context, statement })
            }
            // "You do not have to specify the EXECUTE keyword when executing stored
            // procedures when the statement is the first one in a batch" (EXECUTE
            // (Transact-SQL), https://learn.microsoft.com/en-us/sql/t-sql/language-elements/execute-transact-sql).
            // It is an EXEC only if the rest of the batch parses too; a syntax error
            // anywhere still rejects the whole batch (102/156) and nothing runs.
            _ if first_in_batch && !is_reserved(&word) => self.exec_procedure(),
            _ => Err(self.unexpected()),
        }
    }

    /// The rest of an EXEC, explicit or implicit: `name [[@param =] value [OUTPUT]
    /// [, …]]`, values being constants, variables, DEFAULT or bare words (which SQL
    /// Server passes as strings).
    fn exec_procedure(&mut self) -> PResult<StatementKind> {
        let name = self.object_name()?;
        let mut args = Vec::new();
        if self.exec_argument_follows() {
            loop {
                let mut arg_name = None;
                if let (Some(Tok::Var(v)), Some(Tok::Sym("="))) = (self.peek(), self.peek_at(1)) {
                    arg_name = Some(v.clone());
                    self.pos += 2;
                }
                if !self.exec_argument_follows() {
                    return Err(self.unexpected());
                }
                let negative = self.eat_sym("-");
                let value = match self.advance() {
                    Some(Tok::Var(v)) => Some(Expr::Variable(v)),
                    Some(Tok::Str { text, national }) => Some(Expr::StringLiteral { text, national }),
                    Some(Tok::Num(n)) => Some(Expr::StringLiteral {
                        text: if negative { format!("-{n}") } else { n },
                        national: false,
                    }),
                    Some(Tok::Bin(b)) => Some(Expr::Literal(crate::mssql::types::Value::Binary(b))),
                    Some(Tok::Word { text, quoted: false }) if text.eq_ignore_ascii_case("DEFAULT") => None,
                    Some(Tok::Word { text, quoted: false }) if text.eq_ignore_ascii_case("NULL") => {
                        Some(Expr::Literal(crate::mssql::types::Value::Null))
                    }
                    // A bare word is passed as a string, case as written.
                    Some(Tok::Word { text, .. }) => Some(Expr::StringLiteral { text, national: false }),
                    _ => None,
                };
                args.push(ExecArg { name: arg_name, value });
                let _ = self.eat_kw("OUTPUT") || self.eat_kw("OUT");
                if !self.eat_sym(",") {
                    break;
                }
            }
        }
        // sp_rename lives in `sys` and resolves from any database (a one-part
        // `sp_rename` or `sys.sp_rename`).
        let system = match name.parts.len() {
            1 => true,
            2 => name.schema().is_some_and(|s| s.eq_ignore_ascii_case("sys")),
            _ => false,
        };
        if system && name.object().eq_ignore_ascii_case("sp_rename") {
            return Ok(StatementKind::Rename(args));
        }
        Ok(StatementKind::ExecProcedure(name))
    }

    /// Whether the next token can start an EXEC argument value.
    fn exec_argument_follows(&self) -> bool {
        match self.peek() {
            Some(Tok::Var(_) | Tok::Num(_) | Tok::Str { .. } | Tok::Bin(_)) => true,
            Some(Tok::Sym("-")) => matches!(self.peek_at(1), Some(Tok::Num(_))),
            Some(Tok::Word { text, quoted }) => {
                *quoted
                    || !is_reserved(text)
                    || text.eq_ignore_ascii_case("DEFAULT")
                    || text.eq_ignore_ascii_case("NULL")
            }
            _ => false,
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
                let nocount = text.eq_ignore_ascii_case("NOCOUNT");
                self.pos += 1;
                let on = if self.eat_kw("ON") {
                    true
                } else if self.eat_kw("OFF") {
                    false
                } else {
                    return Err(self.unexpected());
                };
                if nocount {
                    return Ok(StatementKind::SetNoCount(on));
                }
                return Ok(StatementKind::SetOption);
            }
            if text.eq_ignore_ascii_case("TEXTSIZE") || text.eq_ignore_ascii_case("LOCK_TIMEOUT") {
                self.pos += 1;
                self.eat_sym("-");
                match self.advance() {
                    Some(Tok::Num(_)) => return Ok(StatementKind::SetOption),
                    _ => {
                        self.pos = self.pos.saturating_sub(1);
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
                    self.pos = self.pos.saturating_sub(1);
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
        if self.eat_kw("TYPE") {
            return self.create_type();
        }
        Err(self.unexpected())
    }

    /// `CREATE TYPE [schema.]name FROM base_type [(…)] [NULL | NOT NULL]`: an alias
    /// type ("CREATE TYPE (Transact-SQL)"). Table types and CLR types are refused.
    fn create_type(&mut self) -> PResult<StatementKind> {
        let line = self.line();
        let name = self.object_name()?;
        if name.parts.len() > 2 {
            return Err(with_line(
                SqlError::new(
                    166,
                    15,
                    "'CREATE TYPE' does not allow specifying the database name as a prefix to the object name.",
                ),
                line,
            ));
        }
        if self.is_kw("AS") || self.is_kw("EXTERNAL") {
            return Err(error::not_supported("CREATE TYPE … AS TABLE / EXTERNAL NAME"));
        }
        self.expect_kw("FROM")?;
        let line = self.line();
        // Only a system type can be a base type: neither another alias type (a
        // two-part name) nor `sysname`, which is itself an alias of nvarchar(128).
        if matches!(self.peek_at(1), Some(Tok::Sym("."))) {
            let base = self.object_name()?;
            return Err(with_line(error::invalid_alias_base(&base.display()), line));
        }
        let written = match self.peek() {
            Some(Tok::Word { text, .. }) => text.clone(),
            _ => return Err(self.unexpected()),
        };
        let (base, base_name) = match self.data_type() {
            Ok(t) => t,
            Err(e) if e.number == 2715 => return Err(with_line(error::invalid_alias_base(&written), line)),
            Err(e) => return Err(e),
        };
        if base_name == "sysname" {
            return Err(with_line(error::invalid_alias_base(&written), line));
        }
        let nullable = if self.eat_kw("NOT") {
            self.expect_kw("NULL")?;
            false
        } else {
            self.eat_kw("NULL");
            true
        };
        Ok(StatementKind::CreateType {
            name,
            base,
            base_name,
            nullable,
        })
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
                let ty = self.column_type()?;
                let mut col = ColumnDef {
                    name: cname,
                    ty,
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
                    } else if self.eat_kw("COLLATE") {
                        // Only the database default collation exists here (see
                        // `collation`); naming it is accepted, any other is refused.
                        let collation = self.ident()?;
                        if let DeclaredType::System { ty, name } = &col.ty {
                            if !super::collation::is_text(ty) {
                                return Err(error::collate_invalid_for_type(name));
                            }
                        }
                        if !super::collation::is_supported(&collation) {
                            return Err(error::not_supported(&format!("COLLATE {collation}")));
                        }
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

    /// A column's type in CREATE TABLE: a system type, or an alias type's (possibly
    /// schema-qualified) name, resolved when the statement runs.
    fn column_type(&mut self) -> PResult<DeclaredType> {
        let start = self.pos;
        let first = self.ident()?;
        let parts = if self.eat_sym(".") {
            vec![first, self.ident()?]
        } else {
            self.pos = start;
            match self.data_type() {
                Ok((ty, name)) => return Ok(DeclaredType::System { ty, name }),
                Err(e) if e.number == 2715 => {
                    self.pos = start + 1;
                    vec![first]
                }
                Err(e) => return Err(e),
            }
        };
        let with_length = self.eat_sym("(");
        if with_length {
            while !self.eat_sym(")") {
                if self.advance().is_none() {
                    return Err(self.unexpected());
                }
            }
        }
        Ok(DeclaredType::Alias {
            name: ObjectName { parts },
            with_length,
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
                        self.pos = self.pos.saturating_sub(1);
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
            if self.eat_kw("ADD") {
                return self.alter_table_add(table);
            }
            if self.eat_kw("DROP") {
                return self.alter_table_drop(table);
            }
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
                // `CHANGE_TRACKING { = OFF | = ON [ ( … ) ] | ( … ) }`: OFF takes no
                // options ("ALTER DATABASE SET options").
                if on == Some(false) && self.is_sym("(") {
                    return Err(self.unexpected());
                }
                if self.eat_sym("(") {
                    loop {
                        if self.eat_kw("CHANGE_RETENTION") {
                            self.expect_sym("=")?;
                            let n = match self.advance() {
                                Some(Tok::Num(n)) => n.parse::<i64>().map_err(|_| self.unexpected())?,
                                _ => {
                                    self.pos = self.pos.saturating_sub(1);
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

    /// `ALTER TABLE t ADD column_definition [, …]`: a name, a type, NULL / NOT NULL,
    /// COLLATE and `[CONSTRAINT name] DEFAULT constant [WITH VALUES]`, in any order
    /// ("ALTER TABLE column_definition (Transact-SQL)",
    /// <https://learn.microsoft.com/en-us/sql/t-sql/statements/alter-table-column-definition-transact-sql>).
    /// `ADD COLUMN` is not T-SQL: COLUMN is reserved, so it is Msg 156. Table-level
    /// constraints, IDENTITY and column constraints other than DEFAULT are not modelled.
    fn alter_table_add(&mut self, table: ObjectName) -> PResult<StatementKind> {
        let mut added = Vec::new();
        loop {
            if ["CONSTRAINT", "PRIMARY", "UNIQUE", "CHECK", "FOREIGN", "INDEX"]
                .iter()
                .any(|k| self.is_kw(k))
            {
                return Err(error::not_supported("ALTER TABLE … ADD <table_constraint>"));
            }
            let name = self.ident()?;
            let ty = self.column_type()?;
            let mut column = ColumnDef {
                name,
                ty,
                nullable: None,
                primary_key: false,
                pk_constraint: None,
            };
            let mut default: Option<DefaultDef> = None;
            loop {
                if self.eat_kw("NOT") {
                    self.expect_kw("NULL")?;
                    column.nullable = Some(false);
                } else if self.eat_kw("NULL") {
                    column.nullable = Some(true);
                } else if (self.is_kw("DEFAULT") || self.is_kw("CONSTRAINT")) && default.is_none() {
                    let name = if self.eat_kw("CONSTRAINT") {
                        Some(self.ident()?)
                    } else {
                        None
                    };
                    if !self.eat_kw("DEFAULT") {
                        return Err(error::not_supported(
                            "ALTER TABLE … ADD column with a constraint other than DEFAULT",
                        ));
                    }
                    let value = self.expr()?;
                    let with_values = self.is_kw("WITH") && self.is_kw_at(1, "VALUES");
                    if with_values {
                        self.pos += 2;
                    }
                    default = Some(DefaultDef {
                        name,
                        value,
                        with_values,
                    });
                } else if self.eat_kw("COLLATE") {
                    let collation = self.ident()?;
                    if let DeclaredType::System { ty, name } = &column.ty {
                        if !super::collation::is_text(ty) {
                            return Err(error::collate_invalid_for_type(name));
                        }
                    }
                    if !super::collation::is_supported(&collation) {
                        return Err(error::not_supported(&format!("COLLATE {collation}")));
                    }
                } else if ["PRIMARY", "UNIQUE", "CHECK", "REFERENCES", "FOREIGN", "IDENTITY"]
                    .iter()
                    .any(|k| self.is_kw(k))
                {
                    return Err(error::not_supported(
                        "ALTER TABLE … ADD column with a constraint other than DEFAULT",
                    ));
                } else {
                    break;
                }
            }
            added.push(AddedColumn { column, default });
            if !self.eat_sym(",") {
                break;
            }
        }
        Ok(StatementKind::AlterTableSchema {
            table,
            change: SchemaChange::Add(added),
        })
    }

    /// `ALTER TABLE t DROP { [CONSTRAINT] [IF EXISTS] name | COLUMN [IF EXISTS] name
    /// [, …] } [, …]`: after COLUMN, further bare names are columns too.
    fn alter_table_drop(&mut self, table: ObjectName) -> PResult<StatementKind> {
        let mut items = Vec::new();
        let mut column = false;
        loop {
            if self.eat_kw("COLUMN") {
                column = true;
            } else if self.eat_kw("CONSTRAINT") {
                column = false;
            }
            let if_exists = if self.is_kw("IF") && self.is_kw_at(1, "EXISTS") {
                self.pos += 2;
                true
            } else {
                false
            };
            items.push(DropItem {
                column,
                name: self.ident()?,
                if_exists,
            });
            if !self.eat_sym(",") {
                break;
            }
        }
        Ok(StatementKind::AlterTableSchema {
            table,
            change: SchemaChange::Drop(items),
        })
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

    /// GRANT / DENY / REVOKE perms [ON securable] TO|FROM principals.
    fn grant(&mut self, action: PermissionAction) -> PResult<StatementKind> {
        self.pos += 1;
        let mut permissions = Vec::new();
        loop {
            let mut words = Vec::new();
            while let Some(Tok::Word { text, quoted: false }) = self.peek() {
                if text.eq_ignore_ascii_case("ON")
                    || text.eq_ignore_ascii_case("TO")
                    || text.eq_ignore_ascii_case("FROM")
                {
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
        if !(self.eat_kw("TO") || (action == PermissionAction::Revoke && self.eat_kw("FROM"))) {
            return Err(self.unexpected());
        }
        let mut to = vec![self.ident()?];
        while self.eat_sym(",") {
            to.push(self.ident()?);
        }
        Ok(StatementKind::Grant {
            action,
            permissions,
            on,
            to,
        })
    }
}

/// Parses a name given as a string (`N'[dbo].[Orders]'` to OBJECT_ID and friends).
pub fn parse_object_name(text: &str) -> Result<ObjectName, SqlError> {
    let tokens = tokenize(text)?;
    let mut p = Parser {
        tokens,
        pos: 0,
        depth: 0,
    };
    let name = p.object_name()?;
    if !p.at_end() {
        return Err(p.unexpected());
    }
    Ok(name)
}
