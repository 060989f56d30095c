//! The boundary between the TDS wire layer and the SQL engine: SQL Server's types,
//! values, errors and the outcomes of a batch. Both sides depend on this file only.

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime};

/// A SQL Server column type, exactly as a real server would declare it in COLMETADATA.
/// `None` lengths mean `(max)`, which the wire layer sends as PLP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqlType {
    Bit,
    TinyInt,
    SmallInt,
    Int,
    BigInt,
    /// decimal(p, s) / numeric(p, s).
    Decimal {
        precision: u8,
        scale: u8,
    },
    Money,
    Real,
    Float,
    /// char(n): single-byte, collation code page (Latin1_General_CI_AS → cp1252).
    Char(u16),
    /// varchar(n | max)
    VarChar(Option<u16>),
    /// nchar(n), n in characters.
    NChar(u16),
    /// nvarchar(n | max), n in characters.
    NVarChar(Option<u16>),
    /// binary(n)
    Binary(u16),
    /// varbinary(n | max)
    VarBinary(Option<u16>),
    Date,
    /// time(scale)
    Time(u8),
    DateTime,
    /// datetime2(scale)
    DateTime2(u8),
    /// datetimeoffset(scale)
    DateTimeOffset(u8),
    UniqueIdentifier,
}

/// One column of a result set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub ty: SqlType,
    pub nullable: bool,
}

/// A value. The variant need not match the column's [`SqlType`] exactly in width
/// (the wire layer encodes by the column type), but must be of the same family.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bit(bool),
    /// Any integer type (tinyint..bigint).
    Int(i64),
    /// decimal/numeric: `value / 10^scale`.
    Decimal {
        value: i128,
        scale: u8,
    },
    /// money in units of 1/10,000.
    Money(i64),
    Float(f64),
    /// char/varchar/nchar/nvarchar.
    String(String),
    /// binary/varbinary.
    Binary(Vec<u8>),
    Date(NaiveDate),
    Time(NaiveTime),
    /// datetime and datetime2.
    DateTime(NaiveDateTime),
    DateTimeOffset(DateTime<FixedOffset>),
    Guid(uuid::Uuid),
}

/// A server error as SQL Server reports it in an ERROR token (MS-TDS 2.2.7.10).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Msg {number}, Level {class}, State {state}: {message}")]
pub struct SqlError {
    /// SQL Server's message number, e.g. 208 for "Invalid object name".
    pub number: i32,
    pub state: u8,
    /// Severity. 16 for ordinary user errors, 14 for permission/login, 13 for deadlock.
    pub class: u8,
    pub message: String,
    /// Line number within the batch (1-based), as SQL Server reports it.
    pub line: u32,
}

impl SqlError {
    /// Builds an error with state 1 and line 1.
    pub fn new(number: i32, class: u8, message: impl Into<String>) -> Self {
        Self {
            number,
            state: 1,
            class,
            message: message.into(),
            line: 1,
        }
    }
}

/// What one statement of a batch produced, in order. The wire layer turns each into
/// tokens: `Rows` → COLMETADATA + ROW/NBCROW… + DONE(count); `Done` → DONE (with
/// count when `Some`); `Error` → ERROR + DONE(error flag); `Message` → INFO or ERROR
/// alone, ahead of the outcome of the statement that sent it.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Rows {
        columns: Vec<Column>,
        rows: Vec<Vec<Value>>,
    },
    Done {
        row_count: Option<u64>,
    },
    Error(SqlError),
    /// A message a statement sends before its own outcome, with no DONE of its own:
    /// informational when its class (severity) is 10 or less — sp_rename's caution
    /// 15477 — and sent as an INFO token with class 0 ("For compatibility reasons, the
    /// Database Engine converts severity 10 to severity 0 before returning the error
    /// information to the calling application", Database Engine error severities,
    /// <https://learn.microsoft.com/en-us/sql/relational-databases/errors-events/database-engine-error-severities>);
    /// otherwise the first of several errors of one statement, as an ERROR token
    /// (Msg 5074 before the 4922 that ends `ALTER TABLE … DROP COLUMN`).
    Message(SqlError),
}

/// A parameter of an RPC call (`sp_executesql`), as decoded from the wire: name
/// including the leading `@`, e.g. `@P1`.
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    pub name: String,
    pub value: Value,
}

/// What the wire layer needs from a SQL engine. A trait because the wire layer's own
/// tests drive it with a scripted fake, and the real engine ([`super::engine`]) is
/// swapped in everywhere else.
pub trait Backend: Send + Sync + 'static {
    /// A logged-in connection's state (current database, open transaction, …).
    type Session: BackendSession;

    /// Checks SQL authentication and opens a session in `database` (the login's
    /// default database when `None`). A bad user or password is error 18456
    /// (`Login failed for user '…'.`, class 14, state 1); a missing or inaccessible
    /// database is 4060 (`Cannot open database "…" requested by the login. The login
    /// failed.`, class 11).
    fn login(&self, user: &str, password: &str, database: Option<&str>) -> Result<Self::Session, SqlError>;
}

/// One connection's session. Dropping it rolls back any open transaction.
pub trait BackendSession: Send + 'static {
    /// The current database name, reported in ENVCHANGE after login and after `USE`.
    fn database(&self) -> String;

    /// Runs a batch (SQL text with the RPC's parameters, none for a SQL batch) and
    /// returns one outcome per statement, in order. Execution stops at the first
    /// error whose class aborts the batch, as SQL Server does.
    fn execute(&mut self, sql: &str, params: &[Param]) -> Vec<Outcome>;

    /// Runs a batch as a module: the statement of an RPC (`sp_executesql`, which
    /// tiberius sends for every `query`/`execute`). Unlike a SQL batch, SET options
    /// and the database it changes revert when it returns, and ending with a
    /// different `@@TRANCOUNT` than it began with adds error 266 after its outcomes
    /// ("SET Statements (Transact-SQL)",
    /// https://learn.microsoft.com/en-us/sql/t-sql/statements/set-statements-transact-sql).
    /// Backends without modules (the wire layer's scripted fake) run it as a batch.
    fn execute_module(&mut self, sql: &str, params: &[Param]) -> Vec<Outcome> {
        self.execute(sql, params)
    }

    /// Whether a transaction is open (the wire layer reports it in ENVCHANGE
    /// begin/commit/rollback transaction tokens, which tiberius tracks).
    fn in_transaction(&self) -> bool;
}
