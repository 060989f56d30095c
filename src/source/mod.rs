//! The SQL Server side: the client (connecting through tiberius), what its errors mean
//! ([`SourceError`], [`ErrorClass`]), the catalog, the startup check, the SQL text (all
//! of it in [`sql`]), and result rows as JSON ([`rows`]). Concrete, not a trait: there
//! is one source, and tests drive it against the TDS stand-in.

pub mod catalog;
pub mod check;
mod error;
pub mod rows;
pub mod sql;

pub use error::{ErrorClass, SourceError};

use std::time::Duration;

use tiberius::{AuthMethod, Client, Config as TdsConfig, EncryptionLevel};
use tokio::net::TcpStream;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};

use crate::config::{Encryption, SourceConfig};

/// A connected tiberius client.
pub type SqlClient = Client<Compat<TcpStream>>;

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

/// The database's incarnation ([`sql::INCARNATION`]); `None` when it cannot be read
/// (no such view, Msg 208, on Azure SQL Database; no row without VIEW ANY DATABASE).
pub async fn incarnation(client: &mut SqlClient) -> Result<Option<String>, SourceError> {
    let row = match client.query(sql::INCARNATION, &[]).await {
        Ok(stream) => stream.into_row().await,
        Err(e) => Err(e),
    };
    match row.map_err(SourceError::from) {
        Ok(row) => Ok(row
            .and_then(|r| r.try_get::<tiberius::Uuid, _>(0).ok().flatten())
            .map(|u| u.to_string().to_uppercase())),
        Err(SourceError::Server { code: 208 | 229, .. }) => Ok(None),
        Err(e) => Err(e),
    }
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
