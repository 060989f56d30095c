//! The server's lifecycle and fault injection: concurrent connections, the request
//! counter, `drop_connections` and `shutdown`.

mod tds_common;

use std::time::Duration;

use tds_common::*;
use testkit::mssql::types::{Outcome, SqlType, Value};
use tokio::task::JoinSet;

async fn select_int(client: &mut TdsClient, sql: &str) -> tiberius::Result<Option<i32>> {
    let row = client.simple_query(sql).await?.into_row().await?;
    Ok(row.and_then(|r| r.get::<i32, _>(0)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_connections_are_served_and_counted() {
    let backend = FakeBackend::new();
    for i in 0..20 {
        backend.script(
            &format!("SELECT {i}"),
            vec![rows("v", SqlType::Int, vec![Value::Int(i)])],
        );
    }
    let server = start(&backend).await;
    let addr_config = config(&server, USER, PASSWORD, Some(DATABASE));

    let mut tasks = JoinSet::new();
    for i in 0..20 {
        let config = addr_config.clone();
        tasks.spawn(async move {
            let mut client = connect_with(config).await.expect("login");
            for _ in 0..10 {
                let v = select_int(&mut client, &format!("SELECT {i}")).await.expect("query");
                assert_eq!(v, Some(i));
            }
        });
    }
    let all = tokio::time::timeout(DEADLINE, async {
        while let Some(r) = tasks.join_next().await {
            r.expect("client task");
        }
    })
    .await;
    assert!(all.is_ok(), "clients finished within the deadline");

    assert_eq!(server.requests(), 200);
    server.shutdown().await;
}

#[tokio::test]
async fn requests_counts_batches_and_rpcs() {
    let backend = FakeBackend::new();
    backend.script("SELECT 1", vec![Outcome::Done { row_count: None }]);
    let server = start(&backend).await;
    let mut client = connect(&server).await;
    assert_eq!(server.requests(), 0, "login is not a request");

    client
        .simple_query("SELECT 1")
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap();
    client.execute("SELECT 1", &[&1i32]).await.unwrap();

    assert_eq!(server.requests(), 2);
    drop(client);
    server.shutdown().await;
}

#[tokio::test]
async fn drop_connections_makes_the_next_query_fail_and_new_logins_work() {
    let backend = FakeBackend::new();
    backend.script("SELECT 7", vec![rows("v", SqlType::Int, vec![Value::Int(7)])]);
    let server = start(&backend).await;
    let mut client = connect(&server).await;
    assert_eq!(select_int(&mut client, "SELECT 7").await.unwrap(), Some(7));

    server.drop_connections();
    // The close is asynchronous; wait until the session is gone.
    wait_until(|| backend.sessions_dropped() == 1).await;

    assert!(select_int(&mut client, "SELECT 7").await.is_err());
    let mut fresh = connect(&server).await;
    assert_eq!(select_int(&mut fresh, "SELECT 7").await.unwrap(), Some(7));
    drop(fresh);
    server.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_connections_and_awaits_their_tasks() {
    let backend = FakeBackend::new();
    backend.script("SELECT 7", vec![rows("v", SqlType::Int, vec![Value::Int(7)])]);
    let server = start(&backend).await;
    let addr = server.addr();
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(connect(&server).await);
    }

    tokio::time::timeout(DEADLINE, server.shutdown())
        .await
        .expect("shutdown within the deadline");

    // Every connection task has finished (and dropped its session) by now.
    assert_eq!(backend.sessions_dropped(), 3);
    for client in &mut clients {
        assert!(select_int(client, "SELECT 7").await.is_err());
    }
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "listener closed");
}

/// Polls `cond` until it holds, failing after [`DEADLINE`].
async fn wait_until(cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "condition not met in time");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
