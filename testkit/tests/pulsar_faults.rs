//! Every injected fault is visible to the real `pulsar` client, as an error or as a
//! retry, and nothing a receipt acknowledged is lost.

mod pulsar_support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use pulsar::producer::SendFuture;
use pulsar::proto::ServerError;
use pulsar::{OperationRetryOptions, Producer, Pulsar, SubType, TokioExecutor};
use pulsar_support::*;
use testkit::pulsar::PulsarStandin;

async fn producer(client: &Pulsar<TokioExecutor>, topic: &str) -> Producer<TokioExecutor> {
    tokio::time::timeout(DEADLINE, client.producer().with_topic(topic).build())
        .await
        .expect("producer in time")
        .expect("producer")
}

async fn queue(producer: &mut Producer<TokioExecutor>, body: String) -> SendFuture {
    tokio::time::timeout(DEADLINE, producer.send_non_blocking(body.into_bytes()))
        .await
        .expect("queued in time")
        .expect("queued")
}

/// Awaits receipts; returns the bodies whose send was acknowledged.
async fn acknowledged(sends: Vec<(String, SendFuture)>) -> Vec<String> {
    let mut ok = Vec::new();
    for (body, receipt) in sends {
        match tokio::time::timeout(DEADLINE, receipt).await {
            Ok(Ok(_)) => ok.push(body),
            Ok(Err(e)) => tracing::info!(%body, error = %e, "send failed"),
            Err(_) => panic!("no outcome for {body} before the deadline"),
        }
    }
    ok
}

fn assert_all_stored(standin: &PulsarStandin, topic: &str, acked: &[String]) {
    let stored: BTreeSet<String> = standin
        .messages(topic)
        .into_iter()
        .map(|m| String::from_utf8(m.payload).expect("utf8"))
        .collect();
    for body in acked {
        assert!(stored.contains(body), "{body} was acknowledged but is not stored");
    }
}

#[tokio::test]
async fn dropped_connections_are_reconnected_and_nothing_acknowledged_is_lost() {
    let standin = standin().await;
    let client = client(&standin.url()).await;
    let topic = topic("drop-connections");
    let mut producer = producer(&client, &topic).await;
    let mut sends = Vec::new();
    for i in 0..40 {
        if i == 20 {
            standin.drop_connections();
        }
        let body = format!("m{i}");
        sends.push((body.clone(), queue(&mut producer, body).await));
    }
    let acked = acknowledged(sends).await;
    assert_eq!(acked.len(), 40, "the client resent what the drop interrupted");
    assert_all_stored(&standin, &topic, &acked);
    // the retry is visible: the producer was created again on a new connection
    assert!(standin.stats(&topic).producers_created >= 2);
    standin.shutdown().await;
}

#[tokio::test]
async fn refused_producers_are_retried_until_accepted() {
    let standin = standin().await;
    let client = client(&standin.url()).await;
    let topic = topic("refuse-producers");
    standin.refuse_producers_for(Duration::from_millis(300));
    let started = Instant::now();
    let mut producer = producer(&client, &topic).await;
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "created only after the refusal"
    );
    let stats = standin.stats(&topic);
    assert!(stats.producers_refused >= 2, "retried: {stats:?}");
    assert_eq!(stats.producers_created, 1);
    let acked = acknowledged(vec![("after".into(), queue(&mut producer, "after".into()).await)]).await;
    assert_eq!(acked, ["after"]);
    standin.shutdown().await;
}

#[tokio::test]
async fn refused_producer_fails_a_client_that_does_not_retry() {
    let standin = standin().await;
    let client = Pulsar::builder(standin.url(), TokioExecutor)
        .with_operation_retry_options(OperationRetryOptions {
            max_retries: Some(0),
            ..operation_retry()
        })
        .with_connection_retry_options(connection_retry())
        .build()
        .await
        .expect("client");
    standin.refuse_producers_for(Duration::from_secs(60));
    let result = tokio::time::timeout(DEADLINE, client.producer().with_topic(topic("refused")).build())
        .await
        .expect("outcome in time");
    let error = result.err().expect("producer refused");
    assert!(format!("{error:?}").contains("ServiceNotReady"), "{error:?}");
    standin.shutdown().await;
}

#[tokio::test]
async fn failed_sends_are_resent_by_the_client() {
    let standin = standin().await;
    let client = client(&standin.url()).await;
    let topic = topic("fail-sends");
    let mut producer = producer(&client, &topic).await;
    standin.fail_next_sends(2);
    let mut sends = Vec::new();
    for i in 0..6 {
        let body = format!("m{i}");
        sends.push((body.clone(), queue(&mut producer, body).await));
    }
    let acked = acknowledged(sends).await;
    assert_eq!(acked.len(), 6, "PersistenceError makes the client re-create and resend");
    assert_all_stored(&standin, &topic, &acked);
    let stats = standin.stats(&topic);
    assert_eq!(stats.send_errors, 2);
    assert!(stats.producers_created >= 2, "re-created: {stats:?}");
    standin.shutdown().await;
}

#[tokio::test]
async fn a_send_error_the_client_does_not_retry_reaches_the_application() {
    let standin = standin().await;
    let client = client(&standin.url()).await;
    let topic = topic("fail-sends-hard");
    let mut producer = producer(&client, &topic).await;
    standin.fail_next_sends_with(1, ServerError::NotAllowedError);
    let failed = queue(&mut producer, "refused".into()).await;
    let outcome = tokio::time::timeout(DEADLINE, failed).await.expect("outcome in time");
    assert!(outcome.is_err(), "the application sees the SEND_ERROR");
    let acked = acknowledged(vec![("next".into(), queue(&mut producer, "next".into()).await)]).await;
    assert_eq!(acked, ["next"]);
    let stored: Vec<Vec<u8>> = standin.messages(&topic).into_iter().map(|m| m.payload).collect();
    assert_eq!(stored, [b"next".to_vec()], "the refused message was not stored");
    standin.shutdown().await;
}

#[tokio::test]
async fn held_receipts_arrive_late_for_messages_already_stored() {
    let standin = standin().await;
    let client = client(&standin.url()).await;
    let topic = topic("hold-receipts");
    let mut producer = producer(&client, &topic).await;
    standin.hold_receipts_for(Duration::from_millis(1000));
    let started = Instant::now();
    let receipt = queue(&mut producer, "slow".into()).await;
    // stored right away ...
    standin
        .wait_for_messages(&topic, 1, Duration::from_millis(800))
        .await
        .expect("stored before the receipt");
    // ... acknowledged only once the hold ends
    tokio::time::timeout(DEADLINE, receipt)
        .await
        .expect("receipt in time")
        .expect("receipt");
    assert!(started.elapsed() >= Duration::from_millis(950), "receipt held");
    standin.shutdown().await;
}

#[tokio::test]
async fn receipts_held_past_the_operation_timeout_fail_the_send_but_the_message_is_stored() {
    let standin = standin().await;
    let client = Pulsar::builder(standin.url(), TokioExecutor)
        .with_operation_retry_options(OperationRetryOptions {
            operation_timeout: Duration::from_millis(300),
            ..operation_retry()
        })
        .with_connection_retry_options(connection_retry())
        .build()
        .await
        .expect("client");
    let topic = topic("hold-receipts-timeout");
    let mut producer = producer(&client, &topic).await;
    standin.hold_receipts_for(Duration::from_millis(900));
    let receipt = queue(&mut producer, "timed-out".into()).await;
    let outcome = tokio::time::timeout(DEADLINE, receipt).await.expect("outcome in time");
    assert!(outcome.is_err(), "the client times out waiting for the receipt");
    let stored = standin.messages(&topic);
    assert_eq!(stored.len(), 1, "stored despite the client's timeout");
    standin.shutdown().await;
}

#[tokio::test]
async fn unreachable_broker_refuses_connections_until_it_comes_back() {
    let standin = standin().await;
    let client = client(&standin.url()).await;
    let topic = topic("unreachable");
    let mut producer = producer(&client, &topic).await;
    let before = acknowledged(vec![("before".into(), queue(&mut producer, "before".into()).await)]).await;
    assert_eq!(before, ["before"]);

    standin.go_unreachable().await;
    assert_eq!(standin.connections(), 0);
    // a new client cannot connect
    let refused = Pulsar::builder(standin.url(), TokioExecutor)
        .with_connection_retry_options(pulsar::ConnectionRetryOptions {
            max_retries: 1,
            ..connection_retry()
        })
        .build()
        .await;
    assert!(refused.is_err(), "connection refused while unreachable");

    // a send during the outage waits for the broker to come back
    let during = tokio::spawn(async move {
        let receipt = queue(&mut producer, "during".into()).await;
        (producer, receipt.await)
    });
    tokio::time::sleep(Duration::from_millis(300)).await; // let the client find the broker gone
    standin.come_back().await;
    let (_producer, outcome) = tokio::time::timeout(DEADLINE, during)
        .await
        .expect("outcome in time")
        .expect("task");
    outcome.expect("acknowledged after the broker came back");
    assert_all_stored(&standin, &topic, &["before".into(), "during".into()]);
    standin.shutdown().await;
}

#[tokio::test]
async fn consumer_gets_unacknowledged_messages_again_after_a_dropped_connection() {
    let standin = standin().await;
    let client = client(&standin.url()).await;
    let topic = topic("consumer-drop");
    let mut producer = producer(&client, &topic).await;
    let mut sends = Vec::new();
    for i in 0..20 {
        let body = format!("m{i:02}");
        sends.push((body.clone(), queue(&mut producer, body).await));
    }
    assert_eq!(acknowledged(sends).await.len(), 20);

    let mut consumer = consumer(&client, &topic, "sub", SubType::Exclusive).await;
    let first = read(&mut consumer, 10, true).await;
    let mut seen: BTreeSet<String> = first
        .iter()
        .map(|m| String::from_utf8(m.payload.data.clone()).expect("utf8"))
        .collect();
    standin.drop_connections();
    read_until_seen(
        &mut consumer,
        &mut seen,
        20,
        "every message delivered after the reconnect",
    )
    .await;
    standin.shutdown().await;
}

#[tokio::test]
async fn an_unloaded_topic_gets_its_producers_and_consumers_back_without_loss() {
    let standin = standin().await;
    let client = client(&standin.url()).await;
    let topic = topic("unload");
    let mut producer = producer(&client, &topic).await;
    let mut consumer = consumer(&client, &topic, "sub", SubType::Exclusive).await;
    let mut sends = Vec::new();
    for i in 0..10 {
        let body = format!("m{i:02}");
        sends.push((body.clone(), queue(&mut producer, body).await));
    }
    let mut acked = acknowledged(sends).await;
    let mut seen: BTreeSet<String> = read(&mut consumer, 5, true)
        .await
        .into_iter()
        .map(|m| String::from_utf8(m.payload.data).expect("utf8"))
        .collect();

    // WHEN the broker unloads the topic
    standin.unload_topic(&topic);

    // THEN the producer is re-created and goes on
    let mut sends = Vec::new();
    for i in 10..20 {
        let body = format!("m{i:02}");
        sends.push((body.clone(), queue(&mut producer, body).await));
    }
    acked.extend(acknowledged(sends).await);
    assert_eq!(acked.len(), 20);
    assert_all_stored(&standin, &topic, &acked);
    let stats = standin.stats(&topic);
    assert_eq!(stats.unloads, 1);
    assert!(stats.producers_created >= 2, "re-created: {stats:?}");

    // AND the consumer resubscribes and gets everything it had not acknowledged
    read_until_seen(&mut consumer, &mut seen, 20, "every message delivered after the unload").await;
    standin.shutdown().await;
}

/// Reads (and acknowledges) until `seen` holds `n` distinct payloads, or fails with
/// `what` after the deadline.
async fn read_until_seen(
    consumer: &mut pulsar::Consumer<Vec<u8>, pulsar::TokioExecutor>,
    seen: &mut BTreeSet<String>,
    n: usize,
    what: &str,
) {
    let rest = async {
        while seen.len() < n {
            let m = consumer.next().await.expect("stream").expect("message");
            consumer.ack(&m).await.expect("ack");
            seen.insert(String::from_utf8(m.payload.data).expect("utf8"));
        }
    };
    tokio::time::timeout(DEADLINE, rest).await.expect(what);
}
