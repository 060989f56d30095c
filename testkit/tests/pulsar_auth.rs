//! Token authentication: with a token configured, CONNECT must carry it; a wrong or
//! missing token gets the AuthenticationError a broker sends, which the `pulsar`
//! client reports instead of retrying.

mod pulsar_support;

use std::time::Duration;

use pulsar::error::ConnectionError;
use pulsar::proto::ServerError;
use pulsar_support::*;
use testkit::pulsar::{PulsarStandin, PulsarStandinConfig};

const TOKEN: &str = "eyJhbGciOiJIUzI1NiJ9.c2lkZWNhcg.stand-in";

async fn standin_with_token() -> PulsarStandin {
    init_tracing();
    PulsarStandin::start(PulsarStandinConfig {
        token: Some(TOKEN.into()),
        ..Default::default()
    })
    .await
    .expect("stand-in starts")
}

/// The client logs the broker's AuthenticationError but reports it as a fatal
/// connection error; the stand-in's counter shows which refusal it was.
fn assert_refused(standin: &PulsarStandin, result: Result<pulsar::Pulsar<pulsar::TokioExecutor>, pulsar::Error>) {
    match result {
        Err(pulsar::Error::Connection(ConnectionError::PulsarError(Some(kind), _))) => {
            assert_eq!(kind, ServerError::AuthenticationError)
        }
        Err(pulsar::Error::Connection(ConnectionError::Io(e))) => {
            assert!(e.to_string().contains("fatal"), "unexpected i/o error {e}")
        }
        Err(other) => panic!("expected a refused connection, got {other:?}"),
        Ok(_) => panic!("expected a refused connection, the client connected"),
    }
    assert_eq!(standin.auth_refusals(), 1, "refused once, not retried");
}

#[tokio::test]
async fn accepts_the_configured_token() {
    let standin = standin_with_token().await;
    let client = client_with(&standin.url(), Some(TOKEN))
        .await
        .expect("the right token connects");
    let topic = topic("auth-ok");
    let mut producer = client.producer().with_topic(&topic).build().await.expect("producer");
    producer
        .send_non_blocking(b"authorised".to_vec())
        .await
        .expect("queue")
        .await
        .expect("receipt");
    let stored = standin.wait_for_messages(&topic, 1, DEADLINE).await.expect("stored");
    assert_eq!(stored[0].payload, b"authorised");
    assert_eq!(standin.auth_refusals(), 0);
    standin.shutdown().await;
}

#[tokio::test]
async fn refuses_a_wrong_token_with_authentication_error() {
    let standin = standin_with_token().await;
    let started = std::time::Instant::now();
    assert_refused(&standin, client_with(&standin.url(), Some("not-the-token")).await);
    assert!(started.elapsed() < Duration::from_secs(2), "refused without retrying");
    assert_eq!(standin.topics(), Vec::<String>::new());
    standin.shutdown().await;
}

#[tokio::test]
async fn refuses_a_client_without_token() {
    let standin = standin_with_token().await;
    assert_refused(&standin, client_with(&standin.url(), None).await);
    standin.shutdown().await;
}

#[tokio::test]
async fn without_configured_token_any_client_connects() {
    let standin = standin().await;
    client_with(&standin.url(), Some("whatever"))
        .await
        .expect("no auth required");
    client_with(&standin.url(), None).await.expect("no auth required");
    standin.shutdown().await;
}
