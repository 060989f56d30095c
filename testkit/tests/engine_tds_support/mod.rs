//! The engine behind the TDS server, driven by the real tiberius client the
//! sidecar uses: plain SQL batches (`simple_query`) and `sp_executesql` RPCs
//! (`query` with `@P1…` parameters).

#![allow(dead_code)] // each test binary uses a different subset

use std::sync::Arc;
use std::time::Duration;

use testkit::mssql::engine::{Engine, DEFAULT_SA_PASSWORD};
use testkit::mssql::wire::{MssqlServer, MssqlServerConfig};
use tiberius::{AuthMethod, Client, Config, EncryptionLevel, Row, ToSql};
use tokio::net::TcpStream;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};

pub type TdsClient = Client<Compat<TcpStream>>;

/// Deadline for connecting.
const DEADLINE: Duration = Duration::from_secs(10);

/// An engine served over TDS on a free local port.
pub struct Standin {
    pub engine: Engine,
    pub server: MssqlServer,
}

impl Standin {
    pub async fn start(engine: Engine) -> Self {
        let server = MssqlServer::start(Arc::new(engine.clone()), MssqlServerConfig::default())
            .await
            .expect("server starts");
        Self { engine, server }
    }

    /// A client logged in as `user`.
    pub async fn connect(&self, user: &str, password: &str, database: &str) -> tiberius::Result<TdsClient> {
        login(&self.server, user, password, database).await
    }

    /// A client logged in as `sa`.
    pub async fn sa(&self, database: &str) -> TdsClient {
        self.connect("sa", DEFAULT_SA_PASSWORD, database)
            .await
            .expect("sa logs in")
    }
}

/// A client of `server` logged in as `user` on `database` (no TLS).
pub async fn login(server: &MssqlServer, user: &str, password: &str, database: &str) -> tiberius::Result<TdsClient> {
    let mut config = Config::new();
    config.host("127.0.0.1");
    config.port(server.addr().port());
    config.authentication(AuthMethod::sql_server(user, password));
    config.encryption(EncryptionLevel::NotSupported);
    config.database(database);
    let tcp = TcpStream::connect(config.get_addr()).await.expect("tcp connect");
    tcp.set_nodelay(true).expect("nodelay");
    tokio::time::timeout(DEADLINE, Client::connect(config, tcp.compat_write()))
        .await
        .expect("connect within the deadline")
}

/// Runs a plain SQL batch; every result set, or the first error.
pub async fn batch(client: &mut TdsClient, sql: &str) -> tiberius::Result<Vec<Vec<Row>>> {
    client.simple_query(sql).await?.into_results().await
}

/// Runs a batch that must succeed and returns its last result set (empty if none).
pub async fn rows(client: &mut TdsClient, sql: &str) -> Vec<Row> {
    batch(client, sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .pop()
        .unwrap_or_default()
}

/// Runs a statement through `sp_executesql` with `@P1…` parameters; its first
/// result set, or the first error.
pub async fn rpc(client: &mut TdsClient, sql: &str, params: &[&dyn ToSql]) -> tiberius::Result<Vec<Row>> {
    client.query(sql, params).await?.into_first_result().await
}

/// The SQL Server error number of a failed call.
pub fn code(result: tiberius::Result<impl std::fmt::Debug>) -> u32 {
    match result {
        Err(tiberius::error::Error::Server(e)) => e.code(),
        other => panic!("expected a server error, got {other:?}"),
    }
}

/// The first column of the first row, as i64 (any integer type), `None` for NULL.
pub fn int(row: &Row, index: usize) -> Option<i64> {
    if let Ok(v) = row.try_get::<i64, _>(index) {
        return v;
    }
    if let Ok(v) = row.try_get::<i32, _>(index) {
        return v.map(i64::from);
    }
    if let Ok(v) = row.try_get::<i16, _>(index) {
        return v.map(i64::from);
    }
    if let Ok(v) = row.try_get::<u8, _>(index) {
        return v.map(i64::from);
    }
    if let Ok(v) = row.try_get::<bool, _>(index) {
        return v.map(i64::from);
    }
    panic!("column {index} is not an integer: {:?}", row.columns()[index]);
}

/// A string column (`None` for NULL).
pub fn text(row: &Row, index: usize) -> Option<String> {
    row.try_get::<&str, _>(index)
        .unwrap_or_else(|e| panic!("column {index} is not a string: {e}"))
        .map(str::to_string)
}
