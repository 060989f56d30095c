//! The SQL Server side: connecting through tiberius, the startup checks, the SQL text
//! (all of it in [`sql`]), and encoding result cells as JSON. Concrete, not a trait:
//! there is one source, and tests drive it against the TDS stand-in.

pub mod check;
pub mod encode;
pub mod sql;

use std::time::Duration;

use tiberius::{AuthMethod, Client, Config as TdsConfig, EncryptionLevel};
use tokio::net::TcpStream;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};

use crate::config::{Encryption, SourceConfig};

/// A connected tiberius client.
pub type SqlClient = Client<Compat<TcpStream>>;

/// Why talking to SQL Server failed.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot reach SQL Server at {addr}: {source}")]
    /// The TCP connection failed.
    Connect {
        /// `host:port`.
        addr: String,
        /// Why.
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
        /// Severity.
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

impl SourceError {
    /// Whether retrying later can help. Login failures and missing databases are
    /// setup errors an operator must fix; lost connections, deadlocks and snapshot
    /// conflicts pass.
    pub fn is_retryable(&self) -> bool {
        match self {
            SourceError::Server { code, .. } => !matches!(code, 18456 | 4060 | 229 | 297 | 208 | 207 | 102),
            _ => true,
        }
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

/// Opens a connection and logs in.
pub async fn connect(config: &SourceConfig) -> Result<SqlClient, SourceError> {
    let mut tds = TdsConfig::new();
    tds.host(&config.host);
    tds.port(config.port);
    tds.database(&config.database);
    tds.application_name(&config.app_name);
    let password = config.password.as_ref().map(|p| p.expose()).unwrap_or_default();
    tds.authentication(AuthMethod::sql_server(&config.user, password));
    tds.encryption(match config.encryption {
        Encryption::Off => EncryptionLevel::NotSupported,
        Encryption::LoginOnly => EncryptionLevel::Off,
        Encryption::Required => EncryptionLevel::Required,
    });
    if config.trust_server_certificate {
        tds.trust_cert();
    } else if let Some(ca) = &config.ca_file {
        tds.trust_cert_ca(ca.display());
    }
    let addr = format!("{}:{}", config.host, config.port);
    let timeout = Duration::from_millis(config.connect_timeout_ms);
    tds.handshake_timeout(Some(timeout));
    tds.command_timeout(Some(Duration::from_millis(config.command_timeout_ms)));
    let attempt = async {
        let tcp = TcpStream::connect(&addr).await.map_err(|source| SourceError::Connect {
            addr: addr.clone(),
            source,
        })?;
        tcp.set_nodelay(true).map_err(|source| SourceError::Connect {
            addr: addr.clone(),
            source,
        })?;
        Ok::<_, SourceError>(Client::connect(tds, tcp.compat_write()).await?)
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .map_err(|_| SourceError::ConnectTimeout {
            addr: addr.clone(),
            timeout,
        })?
}

/// Reads a single nullable bigint (the CT functions' type) from the first row of a
/// plain SQL batch (TDS SQLBatch, tiberius's `simple_query`). Only for statements whose
/// effect must outlive them (the tick's `SET TRANSACTION ISOLATION LEVEL …; BEGIN
/// TRANSACTION`): sent through `sp_executesql`, SQL Server would revert the SET when the
/// module returns and raise error 266 for the unbalanced BEGIN. Takes no parameters, so
/// nothing but constant text ever goes this way.
pub async fn batch_scalar_i64(client: &mut SqlClient, sql: &'static str) -> Result<Option<i64>, SourceError> {
    let row = client.simple_query(sql).await?.into_row().await?;
    match row {
        Some(row) => Ok(row.try_get::<i64, _>(0)?),
        None => Err(SourceError::Unexpected(format!("no row from {sql}"))),
    }
}

/// Reads a single nullable bigint (the CT functions' type) from the first row.
pub async fn query_scalar_i64(
    client: &mut SqlClient,
    sql: &str,
    params: &[&dyn tiberius::ToSql],
) -> Result<Option<i64>, SourceError> {
    let row = client.query(sql, params).await?.into_row().await?;
    match row {
        Some(row) => Ok(row.try_get::<i64, _>(0)?),
        None => Err(SourceError::Unexpected(format!("no row from {sql}"))),
    }
}
