//! Helpers shared by the `pulsar_*` tests: a stand-in, a real `pulsar` client with
//! short retry settings (so fault tests do not wait for the 30 s defaults), and a
//! consumer read loop bounded by a deadline.

#![allow(dead_code)] // each test file uses a different subset

use std::time::Duration;

use futures_util::StreamExt;
use pulsar::consumer::{InitialPosition, Message};
use pulsar::{
    Authentication, ConnectionRetryOptions, Consumer, ConsumerOptions, OperationRetryOptions, Pulsar, SubType,
    TokioExecutor,
};
use testkit::pulsar::{PulsarStandin, PulsarStandinConfig};

/// How long any single wait in a test may take.
pub const DEADLINE: Duration = Duration::from_secs(5);

/// Logs to the test output when `RUST_LOG` is set.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

pub async fn standin() -> PulsarStandin {
    init_tracing();
    PulsarStandin::start(PulsarStandinConfig::default())
        .await
        .expect("stand-in starts")
}

pub fn operation_retry() -> OperationRetryOptions {
    OperationRetryOptions {
        operation_timeout: Duration::from_secs(2),
        retry_delay: Duration::from_millis(50),
        max_retries: Some(40),
    }
}

pub fn connection_retry() -> ConnectionRetryOptions {
    ConnectionRetryOptions {
        min_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(200),
        max_retries: 30,
        connection_timeout: Duration::from_secs(2),
        keep_alive: Duration::from_secs(30),
        connection_max_idle: Duration::from_secs(60),
    }
}

/// A client that gives up after one retry, for tests that expect a refusal.
#[allow(dead_code)] // not every test binary that includes this module uses it
pub async fn impatient_client(url: &str) -> Pulsar<TokioExecutor> {
    Pulsar::builder(url, TokioExecutor)
        .with_operation_retry_options(OperationRetryOptions {
            max_retries: Some(1),
            ..operation_retry()
        })
        .with_connection_retry_options(connection_retry())
        .build()
        .await
        .expect("client")
}

pub async fn client(url: &str) -> Pulsar<TokioExecutor> {
    client_with(url, None).await.expect("client connects")
}

pub async fn client_with(url: &str, token: Option<&str>) -> Result<Pulsar<TokioExecutor>, pulsar::Error> {
    let mut builder = Pulsar::builder(url, TokioExecutor)
        .with_operation_retry_options(operation_retry())
        .with_connection_retry_options(connection_retry());
    if let Some(token) = token {
        builder = builder.with_auth(Authentication {
            name: "token".into(),
            data: token.as_bytes().to_vec(),
        });
    }
    tokio::time::timeout(DEADLINE, builder.build())
        .await
        .map_err(|_| pulsar::Error::Custom("client build timed out".into()))?
}

pub async fn consumer(
    client: &Pulsar<TokioExecutor>,
    topic: &str,
    subscription: &str,
    sub_type: SubType,
) -> Consumer<Vec<u8>, TokioExecutor> {
    tokio::time::timeout(
        DEADLINE,
        client
            .consumer()
            .with_topic(topic)
            .with_subscription(subscription)
            .with_subscription_type(sub_type)
            .with_options(ConsumerOptions {
                initial_position: InitialPosition::Earliest,
                ..Default::default()
            })
            .build::<Vec<u8>>(),
    )
    .await
    .expect("subscribe in time")
    .expect("subscribe")
}

/// Reads `n` messages (acknowledging each when `ack`), failing the test if they do
/// not all arrive within [`DEADLINE`].
pub async fn read(consumer: &mut Consumer<Vec<u8>, TokioExecutor>, n: usize, ack: bool) -> Vec<Message<Vec<u8>>> {
    let mut got = Vec::with_capacity(n);
    let reading = async {
        while got.len() < n {
            let message = consumer
                .next()
                .await
                .expect("consumer stream ended")
                .expect("consumer error");
            if ack {
                consumer.ack(&message).await.expect("ack");
            }
            got.push(message);
        }
    };
    if tokio::time::timeout(DEADLINE, reading).await.is_err() {
        panic!("read {} of {n} messages before the deadline", got.len());
    }
    got
}

/// Asserts nothing more arrives within `wait`.
pub async fn assert_quiet(consumer: &mut Consumer<Vec<u8>, TokioExecutor>, wait: Duration) {
    if let Ok(Some(extra)) = tokio::time::timeout(wait, consumer.next()).await {
        panic!("unexpected extra message: {:?}", extra.map(|m| m.payload.data));
    }
}

/// A unique topic name per test, so tests sharing nothing cannot interfere.
pub fn topic(name: &str) -> String {
    format!("persistent://public/default/{name}")
}
