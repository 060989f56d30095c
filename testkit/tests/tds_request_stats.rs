//! The server's request statistics: the longest execution of one request and how many
//! were timed, over SQL batches and RPC calls, and their reset.

mod tds_common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tds_common::*;
use testkit::mssql::types::{Backend, BackendSession, Outcome, Param, SqlError};
use testkit::mssql::wire::{MssqlServer, MssqlServerConfig};

/// How long `SLOW` takes to execute.
const SLOW: Duration = Duration::from_millis(60);

/// A backend whose statement `SLOW` takes [`SLOW`] and every other one no time.
#[derive(Clone)]
struct SlowBackend;

struct SlowSession;

impl Backend for SlowBackend {
    type Session = SlowSession;

    fn login(&self, _user: &str, _password: &str, _database: Option<&str>) -> Result<SlowSession, SqlError> {
        Ok(SlowSession)
    }
}

impl BackendSession for SlowSession {
    fn database(&self) -> String {
        DATABASE.to_string()
    }

    fn execute(&mut self, sql: &str, _params: &[Param]) -> Vec<Outcome> {
        if sql == "SLOW" {
            std::thread::sleep(SLOW);
        }
        vec![Outcome::Done { row_count: None }]
    }

    fn in_transaction(&self) -> bool {
        false
    }
}

async fn batch(client: &mut TdsClient, sql: &str) {
    client.simple_query(sql).await.unwrap().into_results().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_longest_request_is_kept_until_reset() {
    let server = MssqlServer::start(Arc::new(SlowBackend), MssqlServerConfig::default())
        .await
        .expect("server starts");
    let mut client = connect(&server).await;
    assert_eq!(server.max_request_duration(), Duration::ZERO, "login is not a request");
    assert_eq!(server.timed_requests(), 0);

    let started = Instant::now();
    batch(&mut client, "FAST").await;
    client.execute("SLOW", &[&1i32]).await.unwrap();
    batch(&mut client, "FAST").await;
    let wall = started.elapsed();
    assert_eq!(server.timed_requests(), 3, "two batches and one RPC call");
    let longest = server.max_request_duration();
    assert!(longest >= SLOW, "the RPC call took {SLOW:?}; longest {longest:?}");
    assert!(
        longest <= wall,
        "longest {longest:?} within the {wall:?} the client waited"
    );

    server.reset_request_stats();
    assert_eq!(server.max_request_duration(), Duration::ZERO);
    assert_eq!(server.timed_requests(), 0);
    batch(&mut client, "FAST").await;
    assert_eq!(server.timed_requests(), 1);
    let fast = server.max_request_duration();
    assert!(fast < SLOW, "after the reset only the fast batch counts: {fast:?}");
    assert_eq!(server.requests(), 4, "requests() is not reset");

    drop(client);
    server.shutdown().await;
}
