//! The syntax tree of the T-SQL subset the stand-in accepts (see
//! `docs/sql-surface.md`): what the parser produces and the executor walks.

use crate::mssql::types::{SqlType, Value};

/// A one- to three-part name, `[db].[schema].[object]`, as written.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectName {
    pub parts: Vec<String>,
}

impl ObjectName {
    /// The object part (last).
    pub fn object(&self) -> &str {
        self.parts.last().map(String::as_str).unwrap_or("")
    }

    /// The schema part, when written.
    pub fn schema(&self) -> Option<&str> {
        if self.parts.len() >= 2 {
            Some(&self.parts[self.parts.len() - 2])
        } else {
            None
        }
    }

    /// The database part, when written.
    pub fn database(&self) -> Option<&str> {
        if self.parts.len() >= 3 {
            Some(&self.parts[self.parts.len() - 3])
        } else {
            None
        }
    }

    /// The name as SQL Server echoes it in messages (`dbo.Orders`).
    pub fn display(&self) -> String {
        self.parts.join(".")
    }
}

/// Binary operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    And,
    Or,
}

/// A scalar expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Literal(Value),
    /// `N'…'` vs `'…'` matters for the result type only.
    StringLiteral {
        text: String,
        national: bool,
    },
    Column {
        qualifier: Option<String>,
        name: String,
    },
    /// `@P1`, `@ctx`.
    Variable(String),
    /// `@@SERVERNAME`.
    Global(String),
    Neg(Box<Expr>),
    Not(Box<Expr>),
    Binary {
        op: BinOp,
        left: Box<Expr>,
        right: Box<Expr>,
    },
    IsNull {
        expr: Box<Expr>,
        negated: bool,
    },
    InList {
        expr: Box<Expr>,
        list: Vec<Expr>,
        negated: bool,
    },
    Between {
        expr: Box<Expr>,
        low: Box<Expr>,
        high: Box<Expr>,
        negated: bool,
    },
    Like {
        expr: Box<Expr>,
        pattern: Box<Expr>,
        negated: bool,
    },
    /// A built-in call; `name` upper-cased.
    Function {
        name: String,
        args: Vec<Expr>,
    },
    Case {
        operand: Option<Box<Expr>>,
        whens: Vec<(Expr, Expr)>,
        otherwise: Option<Box<Expr>>,
    },
    Exists(Box<Query>),
    Subquery(Box<Query>),
    /// `CAST(x AS type)` / `CONVERT(type, x)`.
    Cast {
        expr: Box<Expr>,
        ty: SqlType,
    },
}

/// One item of a select list.
#[derive(Debug, Clone, PartialEq)]
pub enum SelectItem {
    Expr {
        expr: Expr,
        alias: Option<String>,
    },
    /// `*` or `T.*`.
    Star(Option<String>),
}

/// A table source in FROM.
#[derive(Debug, Clone, PartialEq)]
pub enum TableRef {
    Named {
        name: ObjectName,
        alias: Option<String>,
    },
    ChangeTable {
        table: ObjectName,
        since: Expr,
        alias: String,
    },
}

/// Join kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinKind {
    Inner,
    Left,
    Cross,
}

/// `JOIN t ON cond`.
#[derive(Debug, Clone, PartialEq)]
pub struct Join {
    pub kind: JoinKind,
    pub table: TableRef,
    pub on: Option<Expr>,
}

/// The FROM clause.
#[derive(Debug, Clone, PartialEq)]
pub struct From {
    pub first: TableRef,
    pub joins: Vec<Join>,
}

/// One SELECT (a branch of a UNION ALL).
#[derive(Debug, Clone, PartialEq)]
pub struct Select {
    pub top: Option<Expr>,
    pub items: Vec<SelectItem>,
    pub from: Option<From>,
    pub filter: Option<Expr>,
}

/// `ORDER BY` item.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderItem {
    pub expr: Expr,
    pub descending: bool,
}

/// A full query: SELECTs joined by UNION ALL, then ORDER BY.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub branches: Vec<Select>,
    pub order_by: Vec<OrderItem>,
}

/// A column's declared type in CREATE TABLE.
#[derive(Debug, Clone, PartialEq)]
pub enum DeclaredType {
    /// A system type; `name` as declared (`numeric` vs `decimal`, `sysname`), for
    /// sys.columns.
    System { ty: SqlType, name: String },
    /// Any other name: an alias type (`CREATE TYPE`), resolved against the database
    /// when the statement runs (the parser has no catalog). `with_length` records a
    /// `(…)` after it, which an alias type refuses (Msg 2716).
    Alias { name: ObjectName, with_length: bool },
}

/// A column definition in CREATE TABLE.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnDef {
    pub name: String,
    pub ty: DeclaredType,
    pub nullable: Option<bool>,
    pub primary_key: bool,
    pub pk_constraint: Option<String>,
}

/// A table-level PRIMARY KEY constraint.
#[derive(Debug, Clone, PartialEq)]
pub struct PrimaryKeyDef {
    pub name: Option<String>,
    pub columns: Vec<String>,
}

/// What `ALTER TABLE t ADD … | DROP …` changes ("ALTER TABLE (Transact-SQL)",
/// <https://learn.microsoft.com/en-us/sql/t-sql/statements/alter-table-transact-sql>).
#[derive(Debug, Clone, PartialEq)]
pub enum SchemaChange {
    /// `ADD column_definition [, …]`.
    Add(Vec<AddedColumn>),
    /// `DROP { [CONSTRAINT] [IF EXISTS] name | COLUMN [IF EXISTS] name [, …] } [, …]`.
    Drop(Vec<DropItem>),
}

/// One column of `ALTER TABLE … ADD` ("ALTER TABLE column_definition (Transact-SQL)",
/// <https://learn.microsoft.com/en-us/sql/t-sql/statements/alter-table-column-definition-transact-sql>).
#[derive(Debug, Clone, PartialEq)]
pub struct AddedColumn {
    pub column: ColumnDef,
    pub default: Option<DefaultDef>,
}

/// `[CONSTRAINT name] DEFAULT constant_expression [WITH VALUES]`.
#[derive(Debug, Clone, PartialEq)]
pub struct DefaultDef {
    pub name: Option<String>,
    pub value: Expr,
    pub with_values: bool,
}

/// One item of `ALTER TABLE … DROP`.
#[derive(Debug, Clone, PartialEq)]
pub struct DropItem {
    /// `COLUMN name`; otherwise a constraint.
    pub column: bool,
    pub name: String,
    pub if_exists: bool,
}

/// One argument of an EXEC, as written: `[@name =] value`; `value` is `None` for
/// `DEFAULT`.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecArg {
    pub name: Option<String>,
    pub value: Option<Expr>,
}

/// Retention units of CHANGE_RETENTION.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetentionUnit {
    Minutes,
    Hours,
    Days,
}

/// What `ALTER DATABASE … SET` changes.
#[derive(Debug, Clone, PartialEq)]
pub enum DatabaseOption {
    /// `CHANGE_TRACKING = ON|OFF (…)` or `CHANGE_TRACKING (…)` (on: None).
    ChangeTracking {
        on: Option<bool>,
        retention: Option<(i64, RetentionUnit)>,
        auto_cleanup: Option<bool>,
    },
    AllowSnapshotIsolation(bool),
    ReadCommittedSnapshot(bool),
}

/// What a GRANT applies to.
#[derive(Debug, Clone, PartialEq)]
pub enum Securable {
    Object(ObjectName),
    Schema(String),
    Database,
}

/// What a permission statement does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PermissionAction {
    Grant,
    Deny,
    Revoke,
}

/// Transaction isolation levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    ReadUncommitted,
    ReadCommitted,
    RepeatableRead,
    Snapshot,
    Serializable,
}

/// One statement of a batch, with the line it starts on.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    pub kind: StatementKind,
    pub line: u32,
}

/// The statements the stand-in executes.
#[derive(Debug, Clone, PartialEq)]
pub enum StatementKind {
    Query(Query),
    /// `EXEC (N'…')`: the string runs as a batch of its own (so `CREATE SCHEMA` may
    /// be its first statement), the documented way to create a schema conditionally.
    /// It is a module scope: SET options and `USE` revert when it returns, and a
    /// different `@@TRANCOUNT` on return is error 266.
    ExecString(String),
    /// `EXEC name [args]`, or a batch whose first statement is a bare name (an
    /// implicit EXEC). No stored procedures exist here, so running it is Msg 2812 —
    /// at run time, after the whole batch parsed, as SQL Server resolves procedure
    /// names when it executes the call.
    ExecProcedure(ObjectName),
    Insert {
        table: ObjectName,
        columns: Option<Vec<String>>,
        rows: Vec<Vec<Expr>>,
    },
    Update {
        table: ObjectName,
        sets: Vec<(String, Expr)>,
        filter: Option<Expr>,
    },
    Delete {
        table: ObjectName,
        filter: Option<Expr>,
    },
    Truncate(ObjectName),
    CreateDatabase(String),
    DropDatabase(String),
    CreateSchema(String),
    CreateTable {
        name: ObjectName,
        columns: Vec<ColumnDef>,
        primary_key: Option<PrimaryKeyDef>,
    },
    DropTable {
        name: ObjectName,
        if_exists: bool,
    },
    /// `CREATE TYPE [schema.]name FROM base_type [NULL | NOT NULL]`.
    CreateType {
        name: ObjectName,
        base: SqlType,
        /// The base type's name as declared (`numeric`, `smallmoney`…).
        base_name: String,
        /// `NULL` unless `NOT NULL` is written.
        nullable: bool,
    },
    AlterTableChangeTracking {
        table: ObjectName,
        enable: bool,
        track_columns_updated: bool,
    },
    /// `ALTER TABLE t ADD column …` / `ALTER TABLE t DROP COLUMN c | CONSTRAINT n`.
    AlterTableSchema {
        table: ObjectName,
        change: SchemaChange,
    },
    /// `EXEC sp_rename …` (the one system procedure the stand-in runs besides
    /// sp_executesql), its arguments bound when it runs.
    Rename(Vec<ExecArg>),
    AlterDatabase {
        /// `None` for `CURRENT`.
        database: Option<String>,
        option: DatabaseOption,
    },
    CreateLogin {
        name: String,
        password: String,
    },
    CreateUser {
        name: String,
        login: Option<String>,
    },
    /// GRANT, DENY or REVOKE.
    Grant {
        action: PermissionAction,
        permissions: Vec<String>,
        on: Securable,
        to: Vec<String>,
    },
    Use(String),
    SetIsolation(Isolation),
    /// `SET NOCOUNT ON` and the like: accepted, no effect on results here.
    SetOption,
    /// `PRINT expr`: evaluated, its message is not carried by [`Outcome`](crate::mssql::types::Outcome).
    Print(Expr),
    /// `SET NOCOUNT ON|OFF`: whether DML reports its row count.
    SetNoCount(bool),
    Begin,
    Commit,
    Rollback,
    If {
        condition: Expr,
        then: Box<Statement>,
        otherwise: Option<Box<Statement>>,
    },
    Block(Vec<Statement>),
    Declare(Vec<(String, SqlType, Option<Expr>)>),
    SetVariable {
        name: String,
        value: Expr,
    },
    /// `WITH CHANGE_TRACKING_CONTEXT (@ctx) <dml>`.
    WithContext {
        context: Expr,
        statement: Box<Statement>,
    },
}
