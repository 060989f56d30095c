//! The in-process API tests and benchmarks use: names resolved like a broker does,
//! condition waits that fail with what they saw, per-topic counters.

mod pulsar_support;

use std::time::{Duration, Instant};

use pulsar_support::*;
use testkit::pulsar::StandinError;

#[tokio::test]
async fn wait_for_messages_reports_what_it_got_when_the_deadline_passes() {
    let standin = standin().await;
    let client = client(&standin.url()).await;
    let mut producer = client.producer().with_topic("short").build().await.expect("producer");
    producer
        .send_non_blocking(b"one".to_vec())
        .await
        .expect("queue")
        .await
        .expect("receipt");
    let started = Instant::now();
    let error = standin
        .wait_for_messages("short", 2, Duration::from_millis(200))
        .await
        .expect_err("only one message");
    assert!(started.elapsed() >= Duration::from_millis(200));
    match error {
        StandinError::Timeout { wanted, got, topic, .. } => {
            assert_eq!((wanted, got), (2, 1));
            assert_eq!(topic, "persistent://public/default/short");
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    // a waiter is woken by the store itself, not by polling
    let waiter = standin.wait_for_messages("persistent://public/default/short", 2, DEADLINE);
    let sender = async {
        producer
            .send_non_blocking(b"two".to_vec())
            .await
            .expect("queue")
            .await
            .expect("receipt");
    };
    let (got, ()) = tokio::join!(waiter, sender);
    let payloads: Vec<Vec<u8>> = got.expect("two messages").into_iter().map(|m| m.payload).collect();
    assert_eq!(payloads, [b"one".to_vec(), b"two".to_vec()]);
    standin.shutdown().await;
}

#[tokio::test]
async fn names_resolve_like_a_broker_and_partitioned_topics_aggregate() {
    let standin = standin().await;
    standin.create_partitioned_topic("acme/cdc/orders", 2);
    let client = client(&standin.url()).await;
    let mut producer = client
        .producer()
        .with_topic("persistent://acme/cdc/orders")
        .build()
        .await
        .expect("producer");
    for i in 0..4 {
        producer
            .send_non_blocking(format!("{i}").into_bytes())
            .await
            .expect("queue")
            .await
            .expect("receipt");
    }
    assert_eq!(
        standin.topics(),
        [
            "persistent://acme/cdc/orders-partition-0",
            "persistent://acme/cdc/orders-partition-1"
        ]
    );
    // the partitioned name sums its partitions; short and full names agree
    assert_eq!(standin.entries("acme/cdc/orders").len(), 4);
    assert_eq!(standin.stats("persistent://acme/cdc/orders").messages_received, 4);
    let per_partition: u64 = (0..2)
        .map(|p| {
            standin
                .stats(&format!("acme/cdc/orders-partition-{p}"))
                .messages_received
        })
        .sum();
    assert_eq!(per_partition, 4);
    for entry in standin.entries("acme/cdc/orders") {
        assert!(entry.partition == 0 || entry.partition == 1, "{}", entry.partition);
    }
    assert!(standin.entries("not a/valid/name/at/all").is_empty());
    assert!(standin.connections() >= 1);
    standin.shutdown().await;
}
