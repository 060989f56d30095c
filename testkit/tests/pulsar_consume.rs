//! Subscription semantics the real consumer relies on: initial position, individual
//! and cumulative acks, negative acks (REDELIVER_UNACKNOWLEDGED_MESSAGES),
//! redelivery after CLOSE_CONSUMER, UNSUBSCRIBE, and exclusive access.

mod pulsar_support;

use std::time::Duration;

use pulsar::consumer::InitialPosition;
use pulsar::{ConsumerOptions, Pulsar, SubType, TokioExecutor};
use pulsar_support::*;
use testkit::pulsar::PulsarStandin;

async fn produce(client: &Pulsar<TokioExecutor>, topic: &str, bodies: &[&str]) {
    let mut producer = client.producer().with_topic(topic).build().await.expect("producer");
    for body in bodies {
        tokio::time::timeout(DEADLINE, async {
            producer
                .send_non_blocking(body.as_bytes().to_vec())
                .await
                .expect("queue")
                .await
                .expect("receipt")
        })
        .await
        .expect("receipt in time");
    }
    producer.close().await.expect("close");
}

fn bodies(messages: &[pulsar::consumer::Message<Vec<u8>>]) -> Vec<String> {
    messages
        .iter()
        .map(|m| String::from_utf8(m.payload.data.clone()).expect("utf8"))
        .collect()
}

async fn wait_backlog(standin: &PulsarStandin, topic: &str, sub: &str, expected: Option<u64>) {
    let reached = tokio::time::timeout(DEADLINE, async {
        while standin.backlog(topic, sub) != expected {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(
        reached.is_ok(),
        "backlog {:?}, expected {expected:?}",
        standin.backlog(topic, sub)
    );
}

#[tokio::test]
async fn cumulative_ack_clears_everything_up_to_the_message() {
    let standin = standin().await;
    let client = client(&standin.url()).await;
    let topic = topic("cumulative");
    produce(&client, &topic, &["a", "b", "c", "d"]).await;
    let mut consumer = consumer(&client, &topic, "sub", SubType::Exclusive).await;
    let got = read(&mut consumer, 4, false).await;
    assert_eq!(bodies(&got), ["a", "b", "c", "d"]);
    wait_backlog(&standin, &topic, "sub", Some(4)).await;
    consumer.cumulative_ack(&got[2]).await.expect("ack");
    wait_backlog(&standin, &topic, "sub", Some(1)).await;
    consumer.ack(&got[3]).await.expect("ack");
    wait_backlog(&standin, &topic, "sub", Some(0)).await;
    assert!(standin.stats(&topic).acks_received >= 2);
    standin.shutdown().await;
}

#[tokio::test]
async fn a_negative_ack_gets_only_that_message_again() {
    let standin = standin().await;
    let client = client(&standin.url()).await;
    let topic = topic("nack");
    produce(&client, &topic, &["a", "b", "c"]).await;
    let mut consumer = consumer(&client, &topic, "sub", SubType::Shared).await;
    let got = read(&mut consumer, 3, false).await;
    consumer.ack(&got[0]).await.expect("ack");
    consumer.ack(&got[2]).await.expect("ack");
    consumer.nack(&got[1]).await.expect("nack");
    let again = read(&mut consumer, 1, true).await;
    assert_eq!(bodies(&again), ["b"]);
    assert_quiet(&mut consumer, Duration::from_millis(200)).await;
    wait_backlog(&standin, &topic, "sub", Some(0)).await;
    standin.shutdown().await;
}

#[tokio::test]
async fn unacknowledged_messages_return_after_the_consumer_closes() {
    let standin = standin().await;
    let client = client(&standin.url()).await;
    let topic = topic("close-redeliver");
    produce(&client, &topic, &["a", "b", "c"]).await;
    let mut first = consumer(&client, &topic, "sub", SubType::Exclusive).await;
    let got = read(&mut first, 3, false).await;
    first.ack(&got[0]).await.expect("ack");
    wait_backlog(&standin, &topic, "sub", Some(2)).await;
    first.close().await.expect("close");
    let mut second = consumer(&client, &topic, "sub", SubType::Exclusive).await;
    assert_eq!(bodies(&read(&mut second, 2, true).await), ["b", "c"]);
    assert_quiet(&mut second, Duration::from_millis(200)).await;
    standin.shutdown().await;
}

#[tokio::test]
async fn latest_position_skips_what_was_there_before() {
    let standin = standin().await;
    let client = client(&standin.url()).await;
    let topic = topic("latest");
    produce(&client, &topic, &["old-1", "old-2"]).await;
    let mut consumer = tokio::time::timeout(
        DEADLINE,
        client
            .consumer()
            .with_topic(&topic)
            .with_subscription("late")
            .with_subscription_type(SubType::Exclusive)
            .with_options(ConsumerOptions {
                initial_position: InitialPosition::Latest,
                ..Default::default()
            })
            .build::<Vec<u8>>(),
    )
    .await
    .expect("in time")
    .expect("subscribe");
    produce(&client, &topic, &["new-1", "new-2"]).await;
    assert_eq!(bodies(&read(&mut consumer, 2, true).await), ["new-1", "new-2"]);
    standin.shutdown().await;
}

#[tokio::test]
async fn unsubscribe_removes_the_subscription() {
    let standin = standin().await;
    let client = client(&standin.url()).await;
    let topic = topic("unsubscribe");
    produce(&client, &topic, &["a"]).await;
    let mut consumer = consumer(&client, &topic, "gone", SubType::Exclusive).await;
    read(&mut consumer, 1, false).await;
    assert_eq!(standin.backlog(&topic, "gone"), Some(1));
    tokio::time::timeout(DEADLINE, consumer.unsubscribe())
        .await
        .expect("in time")
        .expect("unsubscribe");
    assert_eq!(standin.backlog(&topic, "gone"), None);
    standin.shutdown().await;
}

#[tokio::test]
async fn an_exclusive_subscription_refuses_a_second_consumer() {
    let standin = standin().await;
    let client = impatient_client(&standin.url()).await;
    let topic = topic("exclusive");
    let _first = consumer(&client, &topic, "mine", SubType::Exclusive).await;
    let second = tokio::time::timeout(
        DEADLINE,
        client
            .consumer()
            .with_topic(&topic)
            .with_subscription("mine")
            .with_subscription_type(SubType::Exclusive)
            .build::<Vec<u8>>(),
    )
    .await
    .expect("outcome in time");
    let error = second.err().expect("second consumer refused");
    assert!(format!("{error:?}").contains("ConsumerBusy"), "{error:?}");
    // a consumer on another subscription is fine
    let mut other = consumer(&client, &topic, "theirs", SubType::Exclusive).await;
    produce(&client, &topic, &["x"]).await;
    assert_eq!(bodies(&read(&mut other, 1, true).await), ["x"]);
    assert_quiet(&mut other, Duration::from_millis(100)).await;
    standin.shutdown().await;
}

#[tokio::test]
async fn a_reader_reads_from_the_start_and_its_subscription_ends_with_it() {
    use futures_util::StreamExt;
    let standin = standin().await;
    let client = client(&standin.url()).await;
    let topic = topic("reader");
    produce(&client, &topic, &["a", "b", "c"]).await;
    let mut reader = tokio::time::timeout(
        DEADLINE,
        client
            .reader()
            .with_topic(&topic)
            .with_subscription("r")
            .with_options(ConsumerOptions {
                initial_position: InitialPosition::Earliest,
                ..Default::default()
            })
            .into_reader::<Vec<u8>>(),
    )
    .await
    .expect("in time")
    .expect("reader");
    let mut got = Vec::new();
    tokio::time::timeout(DEADLINE, async {
        while got.len() < 3 {
            let m = reader.next().await.expect("stream").expect("message");
            got.push(String::from_utf8(m.payload.data).expect("utf8"));
        }
    })
    .await
    .expect("read in time");
    assert_eq!(got, ["a", "b", "c"]);
    assert!(
        standin.backlog(&topic, "r").is_some(),
        "non-durable subscription exists"
    );
    drop(reader);
    wait_backlog(&standin, &topic, "r", None).await;
    standin.shutdown().await;
}
