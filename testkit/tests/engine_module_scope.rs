//! Module scope and whole-batch compilation, through the real tiberius client.
//!
//! tiberius sends `query`/`execute` as `sp_executesql` RPCs and `simple_query` as a
//! SQL batch. On SQL Server the former is a module: SET options changed inside it
//! revert when it returns ("SET Statements (Transact-SQL)",
//! https://learn.microsoft.com/en-us/sql/t-sql/statements/set-statements-transact-sql),
//! and returning with a different `@@TRANCOUNT` than it was entered with is error
//! 266 ("Rollbacks and Commits in Stored Procedures and Triggers",
//! https://learn.microsoft.com/en-us/previous-versions/sql/sql-server-2008-r2/ms187844(v=sql.105)).
//! A SQL batch is no module: its SETs and BEGIN TRANSACTION last for the session.
//! And a batch is compiled whole before any of it runs.

mod engine_support;
mod engine_tds_support;

use std::sync::Arc;

use engine_support::{query, shop};
use futures_util::TryStreamExt;
use testkit::mssql::engine::{Engine, DEFAULT_SA_PASSWORD};
use testkit::mssql::types::Value;
use testkit::mssql::wire::{MssqlServer, MssqlServerConfig};
use tiberius::error::{Error, TokenError};
use tiberius::{AuthMethod, Client, Config, EncryptionLevel, QueryItem};
use tokio::net::TcpStream;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};

type TdsClient = Client<Compat<TcpStream>>;

/// `sys.dm_exec_sessions.transaction_isolation_level` values.
const READ_COMMITTED: i16 = 2;
const SERIALIZABLE: i16 = 4;
const SNAPSHOT: i16 = 5;

const ISOLATION: &str = "SELECT transaction_isolation_level FROM sys.dm_exec_sessions WHERE session_id = @@SPID";

async fn serve(engine: &Engine) -> MssqlServer {
    MssqlServer::start(Arc::new(engine.clone()), MssqlServerConfig::default())
        .await
        .expect("server starts")
}

async fn connect(server: &MssqlServer) -> TdsClient {
    engine_tds_support::login(server, "sa", DEFAULT_SA_PASSWORD, "Shop")
        .await
        .expect("login")
}

/// The server error a request ended with.
fn server_error<T: std::fmt::Debug>(result: tiberius::Result<T>) -> TokenError {
    match result {
        Err(Error::Server(e)) => e,
        other => panic!("expected a server error, got {other:?}"),
    }
}

/// The error a SQL batch ends with (tiberius reports one met before the first
/// result set when the request is sent, others while reading).
async fn batch_error(client: &mut TdsClient, sql: &str) -> TokenError {
    let result = match client.simple_query(sql).await {
        Ok(stream) => stream.into_results().await.map(|_| ()),
        Err(e) => Err(e),
    };
    server_error(result)
}

/// Runs a SQL batch that must succeed.
async fn batch(client: &mut TdsClient, sql: &str) {
    client
        .simple_query(sql)
        .await
        .expect("send")
        .into_results()
        .await
        .expect("no error");
}

/// A one-value query sent as a SQL batch (no module around it).
async fn batch_scalar<T>(client: &mut TdsClient, sql: &str) -> T
where
    T: for<'a> tiberius::FromSql<'a> + Clone,
{
    let row = client
        .simple_query(sql)
        .await
        .expect("send")
        .into_row()
        .await
        .expect("no error")
        .expect("a row");
    row.get::<T, _>(0).expect("a non-NULL value")
}

/// A one-value query sent as an RPC (`sp_executesql`).
async fn rpc_scalar<T>(client: &mut TdsClient, sql: &str) -> T
where
    T: for<'a> tiberius::FromSql<'a> + Clone,
{
    let row = client
        .query(sql, &[])
        .await
        .expect("send")
        .into_row()
        .await
        .expect("no error")
        .expect("a row");
    row.get::<T, _>(0).expect("a non-NULL value")
}

/// A one-string query, as a batch or as an RPC.
async fn text(client: &mut TdsClient, sql: &str, rpc: bool) -> String {
    let stream = if rpc {
        client.query(sql, &[]).await
    } else {
        client.simple_query(sql).await
    };
    let row = stream
        .expect("send")
        .into_row()
        .await
        .expect("no error")
        .expect("a row");
    row.get::<&str, _>(0).expect("a non-NULL value").to_string()
}

async fn trancount(client: &mut TdsClient) -> i32 {
    batch_scalar(client, "SELECT @@TRANCOUNT").await
}

async fn isolation(client: &mut TdsClient) -> i16 {
    batch_scalar(client, ISOLATION).await
}

/// What an RPC returned before its first error, and that error.
async fn rpc_until_error(client: &mut TdsClient, sql: &str, params: &[&dyn tiberius::ToSql]) -> (Vec<i32>, TokenError) {
    let mut stream = client.query(sql, params).await.expect("send");
    let mut values = Vec::new();
    loop {
        match stream.try_next().await {
            Ok(Some(QueryItem::Row(row))) => values.push(row.get::<i32, _>(0).expect("int")),
            Ok(Some(QueryItem::Metadata(_))) => {}
            Ok(None) => panic!("{sql}: expected an error after {values:?}"),
            Err(e) => return (values, server_error::<()>(Err(e))),
        }
    }
}

fn is_266(e: &TokenError, previous: i64, current: i64) {
    assert_eq!((e.code(), e.class(), e.state()), (266, 16, 2), "{e:?}");
    assert_eq!(
        e.message(),
        format!(
            "Transaction count after EXECUTE indicates a mismatching number of BEGIN and COMMIT statements. Previous count = {previous}, current count = {current}."
        )
    );
}

fn order_ids(engine: &Engine) -> Vec<i64> {
    query(engine, "Shop", "SELECT Id FROM dbo.Orders ORDER BY Id")
        .into_iter()
        .map(|r| match r[0] {
            Value::Int(i) => i,
            ref other => panic!("{other:?}"),
        })
        .collect()
}

#[tokio::test]
async fn begin_transaction_inside_sp_executesql_raises_266_and_leaves_transaction_open() {
    let engine = shop();
    let server = serve(&engine).await;
    let mut client = connect(&server).await;

    let (rows, e) = rpc_until_error(&mut client, "BEGIN TRANSACTION; SELECT CAST(@P1 AS int)", &[&7i32]).await;
    assert_eq!(rows, [7], "the module's results come before the error");
    is_266(&e, 0, 1);

    // SQL Server leaves the transaction open: the client is in it now.
    assert_eq!(trancount(&mut client).await, 1);
    batch(&mut client, "INSERT INTO dbo.Orders VALUES (1, N'a', 1)").await;
    assert!(order_ids(&engine).is_empty(), "nothing committed yet");
    batch(&mut client, "COMMIT").await;
    assert_eq!(trancount(&mut client).await, 0);
    assert_eq!(order_ids(&engine), [1]);
    drop(client);
    server.shutdown().await;
}

#[tokio::test]
async fn set_isolation_level_inside_sp_executesql_reverts_when_it_returns() {
    let engine = shop();
    let server = serve(&engine).await;
    let mut client = connect(&server).await;

    // Inside the module the level is changed…
    let inside: i16 = rpc_scalar(
        &mut client,
        &format!("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE; SET NOCOUNT ON; {ISOLATION}"),
    )
    .await;
    assert_eq!(inside, SERIALIZABLE);
    // …and back to the caller's when it returns, whether read by a batch or an RPC.
    assert_eq!(isolation(&mut client).await, READ_COMMITTED);
    assert_eq!(rpc_scalar::<i16>(&mut client, ISOLATION).await, READ_COMMITTED);

    // SET NOCOUNT reverted too: the next RPC's INSERT reports its row count.
    let done = client
        .execute("INSERT INTO dbo.Orders VALUES (@P1, N'a', 1)", &[&1i32])
        .await
        .unwrap();
    assert_eq!(done.rows_affected(), &[1]);

    // A level set by a batch is the one every module starts from and returns to.
    batch(&mut client, "SET TRANSACTION ISOLATION LEVEL SNAPSHOT").await;
    let inside: i16 = rpc_scalar(&mut client, ISOLATION).await;
    assert_eq!(inside, SNAPSHOT);
    let inside: i16 = rpc_scalar(
        &mut client,
        &format!("SET TRANSACTION ISOLATION LEVEL READ COMMITTED; {ISOLATION}"),
    )
    .await;
    assert_eq!(inside, READ_COMMITTED);
    assert_eq!(isolation(&mut client).await, SNAPSHOT);
    drop(client);
    server.shutdown().await;
}

#[tokio::test]
async fn set_isolation_level_in_a_plain_batch_persists() {
    let engine = shop();
    let server = serve(&engine).await;
    let mut client = connect(&server).await;

    assert_eq!(isolation(&mut client).await, READ_COMMITTED);
    batch(&mut client, "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE").await;
    assert_eq!(isolation(&mut client).await, SERIALIZABLE);
    assert_eq!(rpc_scalar::<i16>(&mut client, ISOLATION).await, SERIALIZABLE);

    // Another session has its own level.
    let mut other = connect(&server).await;
    assert_eq!(isolation(&mut other).await, READ_COMMITTED);
    drop((client, other));
    server.shutdown().await;
}

#[tokio::test]
async fn begin_in_plain_batch_then_queries_via_rpc_stay_in_the_transaction() {
    let engine = shop();
    engine
        .execute("Shop", "INSERT INTO dbo.Orders VALUES (1, N'a', 1)")
        .unwrap();
    let server = serve(&engine).await;
    let mut client = connect(&server).await;

    // The sidecar's tick: open the snapshot transaction in a batch…
    batch(
        &mut client,
        "SET TRANSACTION ISOLATION LEVEL SNAPSHOT; BEGIN TRANSACTION",
    )
    .await;
    assert_eq!(trancount(&mut client).await, 1);
    let version: i64 = rpc_scalar(&mut client, "SELECT CHANGE_TRACKING_CURRENT_VERSION()").await;
    assert_eq!(version, 1);
    // …then parameterized RPCs inside it, with no 266 and the snapshot kept while
    // another session commits.
    engine
        .execute("Shop", "INSERT INTO dbo.Orders VALUES (2, N'b', 2)")
        .unwrap();
    let seen: Vec<i32> = client
        .query("SELECT Id FROM dbo.Orders WHERE Id >= @P1 ORDER BY Id", &[&0i32])
        .await
        .unwrap()
        .into_first_result()
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<i32, _>(0).unwrap())
        .collect();
    assert_eq!(seen, [1], "the snapshot predates the other session's insert");
    let version: i64 = rpc_scalar(&mut client, "SELECT CHANGE_TRACKING_CURRENT_VERSION()").await;
    assert_eq!(version, 1);
    assert_eq!(rpc_scalar::<i32>(&mut client, "SELECT @@TRANCOUNT").await, 1);
    assert_eq!(rpc_scalar::<i16>(&mut client, ISOLATION).await, SNAPSHOT);

    // The open snapshot transaction shows in the DMV (what issue 10 reads).
    let open: i32 = batch_scalar(
        &mut client,
        "SELECT COUNT(*) FROM sys.dm_tran_active_snapshot_database_transactions WHERE session_id = @@SPID AND is_snapshot = 1",
    )
    .await;
    assert_eq!(open, 1);

    batch(&mut client, "COMMIT").await;
    assert_eq!(trancount(&mut client).await, 0);
    let version: i64 = rpc_scalar(&mut client, "SELECT CHANGE_TRACKING_CURRENT_VERSION()").await;
    assert_eq!(version, 2);
    let open: i32 = batch_scalar(
        &mut client,
        "SELECT COUNT(*) FROM sys.dm_tran_active_snapshot_database_transactions WHERE session_id = @@SPID",
    )
    .await;
    assert_eq!(open, 0);
    drop(client);
    server.shutdown().await;
}

#[tokio::test]
async fn snapshot_transaction_begun_inside_sp_executesql_loses_its_snapshot_when_the_level_reverts() {
    let engine = shop();
    engine
        .execute("Shop", "INSERT INTO dbo.Orders VALUES (1, N'a', 1)")
        .unwrap();
    let server = serve(&engine).await;
    let mut client = connect(&server).await;

    let (_, e) = rpc_until_error(
        &mut client,
        "SET TRANSACTION ISOLATION LEVEL SNAPSHOT; BEGIN TRANSACTION; SELECT COUNT(*) FROM dbo.Orders",
        &[],
    )
    .await;
    is_266(&e, 0, 1);
    // The transaction is open but back at READ COMMITTED: it sees others' commits.
    assert_eq!(trancount(&mut client).await, 1);
    assert_eq!(isolation(&mut client).await, READ_COMMITTED);
    engine
        .execute("Shop", "INSERT INTO dbo.Orders VALUES (2, N'b', 2)")
        .unwrap();
    let n: i32 = rpc_scalar(&mut client, "SELECT COUNT(*) FROM dbo.Orders").await;
    assert_eq!(n, 2);
    batch(&mut client, "ROLLBACK").await;
    drop(client);
    server.shutdown().await;
}

#[tokio::test]
async fn commit_inside_rpc_of_outer_transaction_raises_266() {
    let engine = shop();
    let server = serve(&engine).await;
    let mut client = connect(&server).await;

    batch(
        &mut client,
        "BEGIN TRANSACTION; INSERT INTO dbo.Orders VALUES (1, N'a', 1)",
    )
    .await;
    let e = server_error(client.execute("COMMIT TRANSACTION", &[]).await);
    is_266(&e, 1, 0);
    // The COMMIT did commit: SQL Server reports the mismatch, it undoes nothing.
    assert_eq!(trancount(&mut client).await, 0);
    assert_eq!(order_ids(&engine), [1]);

    // ROLLBACK inside an RPC likewise ends the caller's transaction, with 266.
    batch(
        &mut client,
        "BEGIN TRANSACTION; INSERT INTO dbo.Orders VALUES (2, N'b', 2)",
    )
    .await;
    let e = server_error(client.execute("ROLLBACK", &[]).await);
    is_266(&e, 1, 0);
    assert_eq!(trancount(&mut client).await, 0);
    assert_eq!(order_ids(&engine), [1]);

    // A balanced BEGIN…COMMIT inside one RPC is fine.
    client
        .execute(
            "BEGIN TRANSACTION; INSERT INTO dbo.Orders VALUES (@P1, N'c', 3); COMMIT",
            &[&3i32],
        )
        .await
        .unwrap();
    assert_eq!(order_ids(&engine), [1, 3]);
    drop(client);
    server.shutdown().await;
}

#[tokio::test]
async fn syntax_error_late_in_batch_runs_nothing() {
    let engine = shop();
    let server = serve(&engine).await;
    let mut client = connect(&server).await;

    // As a SQL batch: the INSERT and BEGIN before the error never run.
    let e = batch_error(
        &mut client,
        "INSERT INTO dbo.Orders VALUES (1, N'a', 1);\nBEGIN TRANSACTION;\nSELECT Id FROM dbo.Orders WHERE Id =",
    )
    .await;
    assert_eq!((e.code(), e.class(), e.line()), (102, 15, 3), "{e:?}");
    assert_eq!(e.message(), "Incorrect syntax near '='.");
    assert!(order_ids(&engine).is_empty());
    assert_eq!(trancount(&mut client).await, 0);

    // As an RPC: the same, and no 266 since nothing ran.
    let e = server_error(
        client
            .execute(
                "BEGIN TRANSACTION; INSERT INTO dbo.Orders VALUES (@P1, N'a', 1); SELECT FROM dbo.Orders",
                &[&1i32],
            )
            .await,
    );
    assert_eq!((e.code(), e.class()), (156, 15), "{e:?}");
    assert!(order_ids(&engine).is_empty());
    assert_eq!(trancount(&mut client).await, 0);
    drop(client);
    server.shutdown().await;
}

#[tokio::test]
async fn a_batch_starting_with_a_bare_name_is_an_exec_only_when_all_of_it_parses() {
    let engine = shop();
    let server = serve(&engine).await;
    let mut client = connect(&server).await;

    // A bare name and its arguments: EXEC of a missing procedure, Msg 2812 at run time.
    let e = batch_error(&mut client, "usp_refresh 1, N'x', @flag = DEFAULT").await;
    assert_eq!((e.code(), e.class(), e.state()), (2812, 16, 62), "{e:?}");
    assert_eq!(e.message(), "Could not find stored procedure 'usp_refresh'.");

    // A typo'd keyword followed by what no EXEC can take: the batch does not parse,
    // so it is the syntax error (not 2812) and nothing in it runs.
    let e = batch_error(
        &mut client,
        "SELEC * FROM dbo.Orders; INSERT INTO dbo.Orders VALUES (1, N'a', 1)",
    )
    .await;
    assert_eq!((e.code(), e.class()), (102, 15), "{e:?}");
    assert_eq!(e.message(), "Incorrect syntax near '*'.");
    // An implicit EXEC whose batch has a syntax error further on: also 102.
    let e = batch_error(
        &mut client,
        "usp_refresh; INSERT INTO dbo.Orders VALUES (1, N'a', 1); SELECT 1 +",
    )
    .await;
    assert_eq!(e.code(), 102, "{e:?}");
    assert!(order_ids(&engine).is_empty());
    drop(client);
    server.shutdown().await;
}

#[tokio::test]
async fn exec_paren_string_is_a_module_scope() {
    let engine = shop();
    let server = serve(&engine).await;
    let mut client = connect(&server).await;

    // SET inside EXEC (N'…') reverts when it returns, even within one batch.
    let levels: Vec<i16> = client
        .simple_query(format!(
            "EXEC (N'SET TRANSACTION ISOLATION LEVEL SERIALIZABLE; {ISOLATION}'); {ISOLATION}"
        ))
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap()
        .iter()
        .map(|rs| rs[0].get::<i16, _>(0).unwrap())
        .collect();
    assert_eq!(levels, [SERIALIZABLE, READ_COMMITTED]);

    // BEGIN TRANSACTION inside it: 266 (tiberius reports errors once the response
    // is read), the transaction stays open and the calling batch goes on.
    let mut stream = client
        .simple_query("EXEC (N'BEGIN TRANSACTION; SELECT 1'); SELECT @@TRANCOUNT")
        .await
        .unwrap();
    let mut values = Vec::new();
    let mut errors = Vec::new();
    loop {
        match stream.try_next().await {
            Ok(Some(QueryItem::Row(row))) => values.push(row.get::<i32, _>(0).unwrap()),
            Ok(Some(QueryItem::Metadata(_))) => {}
            Ok(None) => break,
            Err(e) => {
                errors.push(server_error::<()>(Err(e)));
                break;
            }
        }
    }
    drop(stream);
    assert_eq!(values, [1, 1], "the EXEC's result, then the caller's @@TRANCOUNT");
    assert_eq!(errors.len(), 1);
    is_266(&errors[0], 0, 1);
    assert_eq!(trancount(&mut client).await, 1);
    batch(&mut client, "ROLLBACK").await;

    // The string sees none of the caller's variables (Msg 137).
    let e = batch_error(&mut client, "DECLARE @x int = 1; EXEC (N'SELECT @x')").await;
    assert_eq!(e.code(), 137, "{e:?}");
    drop(client);
    server.shutdown().await;
}

#[test]
fn error_266_follows_the_module_results() {
    use testkit::mssql::types::{BackendSession, Outcome};
    let engine = shop();
    let mut session = engine.admin_session("Shop").unwrap();
    let out = session.execute_module("BEGIN TRANSACTION; SELECT 1 AS one", &[]);
    assert!(matches!(out[0], Outcome::Done { .. }), "{out:?}");
    assert!(matches!(out[1], Outcome::Rows { .. }), "{out:?}");
    match &out[2..] {
        [Outcome::Error(e)] => assert_eq!((e.number, e.state), (266, 2)),
        other => panic!("{other:?}"),
    }
    assert!(session.in_transaction());
    // The same batch, not as a module: no 266.
    let mut session = engine.admin_session("Shop").unwrap();
    let out = session.execute("BEGIN TRANSACTION; SELECT 1 AS one", &[]);
    assert!(!out.iter().any(|o| matches!(o, Outcome::Error(_))), "{out:?}");
}

#[tokio::test]
async fn use_inside_sp_executesql_lasts_until_it_returns() {
    let engine = shop();
    let server = serve(&engine).await;
    let mut client = connect(&server).await;

    let inside = text(&mut client, "USE master; SELECT DB_NAME()", true).await;
    assert_eq!(inside, "master");
    let after = text(&mut client, "SELECT DB_NAME()", false).await;
    assert_eq!(after, "Shop");
    drop(client);
    server.shutdown().await;
}

#[tokio::test]
async fn dm_exec_sessions_shows_other_sessions_only_to_sysadmin() {
    let engine = shop();
    engine
        .execute(
            "Shop",
            "CREATE LOGIN [reader] WITH PASSWORD = N'Reader-Passw0rd!'; CREATE USER [reader] FOR LOGIN [reader];",
        )
        .unwrap();
    let server = serve(&engine).await;
    let mut admin = connect(&server).await;
    let mut config = Config::new();
    config.host("127.0.0.1");
    config.port(server.addr().port());
    config.authentication(AuthMethod::sql_server("reader", "Reader-Passw0rd!"));
    config.encryption(EncryptionLevel::NotSupported);
    config.database("Shop");
    let tcp = TcpStream::connect(config.get_addr()).await.unwrap();
    let mut reader = Client::connect(config, tcp.compat_write()).await.unwrap();

    let seen_by_admin: i32 = batch_scalar(&mut admin, "SELECT COUNT(*) FROM sys.dm_exec_sessions").await;
    assert!(seen_by_admin >= 2, "{seen_by_admin}");
    let seen_by_reader: i32 = batch_scalar(&mut reader, "SELECT COUNT(*) FROM sys.dm_exec_sessions").await;
    assert_eq!(seen_by_reader, 1);
    let own = text(
        &mut reader,
        "SELECT login_name FROM sys.dm_exec_sessions WHERE session_id = @@SPID",
        false,
    )
    .await;
    assert_eq!(own, "reader");
    // The transaction DMV needs VIEW SERVER STATE.
    let e = batch_error(
        &mut reader,
        "SELECT * FROM sys.dm_tran_active_snapshot_database_transactions",
    )
    .await;
    assert_eq!((e.code(), e.class()), (300, 14), "{e:?}");
    drop((admin, reader));
    server.shutdown().await;
}
