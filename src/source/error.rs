//! SQL Server errors as the sidecar sees them, and the one table that says what each
//! error number means ([`ErrorClass::of`]).

use std::time::Duration;

/// Why talking to SQL Server failed.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot reach SQL Server at {addr}: {source}")]
    /// The TCP connection failed.
    Connect {
        /// `host:port`.
        addr: String,
        /// The OS error (refused, unreachable, DNS), which says what to check first.
        #[source]
        source: std::io::Error,
    },
    #[error("SQL Server at {addr} did not answer within {timeout:?}")]
    /// No login within `source.connect_timeout_ms`.
    ConnectTimeout {
        /// `host:port`.
        addr: String,
        /// The configured limit.
        timeout: Duration,
    },
    #[error("SQL Server error {code} (class {class}): {message}")]
    /// SQL Server answered with an error (number, severity, text).
    Server {
        /// SQL Server's error number (e.g. 1205 for a deadlock victim).
        code: u32,
        /// Severity: 11–16 the statement or its data, 17+ the server or connection.
        class: u8,
        /// SQL Server's message.
        message: String,
    },
    #[error("SQL Server connection: {0}")]
    /// The connection broke or the protocol failed.
    Tds(#[source] tiberius::error::Error),
    #[error("change tracking is not enabled on database {database} (run migrations/001_enable_database_change_tracking.sql)")]
    /// `CHANGE_TRACKING_CURRENT_VERSION()` is NULL: the database is not tracked.
    ChangeTrackingDisabled {
        /// The database.
        database: String,
    },
    #[error("unexpected result from SQL Server: {0}")]
    /// A result did not have the expected shape.
    Unexpected(String),
}

impl From<tiberius::error::Error> for SourceError {
    fn from(e: tiberius::error::Error) -> Self {
        match e {
            tiberius::error::Error::Server(t) => SourceError::Server {
                code: t.code(),
                class: t.class(),
                message: t.message().to_string(),
            },
            other => SourceError::Tds(other),
        }
    }
}

/// What a SQL Server error means to the sidecar: the one table of error numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The login or database is refused (18456 login failed, 4060 cannot open the
    /// database): an operator must fix the setup; retried only at the slowest pace.
    Setup,
    /// One table's permissions or schema (229/230 permission denied on the object or a
    /// column, 297 no permission, 208 invalid object, 207 invalid column): that table
    /// is parked and the others go on.
    Table,
    /// SQL the server could not compile (102 and other syntax errors): a bug of the
    /// sidecar; retried at the slowest pace so the logs say so without hammering.
    Bug,
    /// Anything else (lost connection, 1205 deadlock victim, 3960 snapshot update
    /// conflict, timeouts): retry soon.
    Transient,
}

impl ErrorClass {
    /// The class of SQL Server error `code`.
    pub fn of(code: u32) -> Self {
        match code {
            18456 | 4060 => ErrorClass::Setup,
            229 | 230 | 297 | 208 | 207 => ErrorClass::Table,
            102 | 156 => ErrorClass::Bug,
            _ => ErrorClass::Transient,
        }
    }
}

impl SourceError {
    /// The class of this error; everything that is not a server error is transient.
    pub fn class(&self) -> ErrorClass {
        match self {
            SourceError::Server { code, .. } => ErrorClass::of(*code),
            _ => ErrorClass::Transient,
        }
    }

    /// Whether retrying soon can help: lost connections, deadlocks and snapshot
    /// conflicts pass; setup, table and compile errors need someone to act.
    pub fn is_retryable(&self) -> bool {
        self.class() == ErrorClass::Transient
    }

    /// Whether the error concerns one table rather than the connection.
    pub fn is_table_error(&self) -> bool {
        self.class() == ErrorClass::Table
    }

    /// A bounded label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            SourceError::Connect { .. } | SourceError::ConnectTimeout { .. } => "connect",
            SourceError::Server { .. } => "server",
            SourceError::Tds(_) => "connection",
            SourceError::ChangeTrackingDisabled { .. } => "change_tracking_disabled",
            SourceError::Unexpected(_) => "unexpected",
        }
    }
}
