//! The broker's maximum message size (`maxMessageSize` in broker.conf, 5 MiB by
//! default), as a real broker handles it and as the `pulsar` crate then behaves.
//!
//! A broker announces the limit in CONNECTED's `max_message_size` (PulsarApi.proto,
//! PIP-36) and enforces it on whole frames: its Netty frame decoder is built with
//! `maxMessageSize + Commands.MESSAGE_SIZE_FRAME_PADDING` (10 KiB), and a longer frame
//! raises `TooLongFrameException`, on which `ServerCnx.exceptionCaught` closes the
//! connection. There is no SEND_ERROR: the frame was never read. The Java client
//! checks sizes against the announced value and fails such a send itself
//! (`InvalidMessageException`); the `pulsar` crate ignores the announced value, sends
//! the frame, sees the connection drop, re-creates its producer and resends, again and
//! again, until the message's operation timeout fails it.

mod pulsar_support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures_util::{SinkExt, StreamExt};
use pulsar::error::{ConnectionError, ProducerError};
use pulsar::message::{Codec, Message, Payload};
use pulsar::producer::{ProducerOptions, SendFuture};
use pulsar::proto::{base_command::Type, BaseCommand, CommandConnect, CommandProducer, CommandSend, MessageMetadata};
use pulsar::{Producer, Pulsar, TokioExecutor};
use pulsar_support::*;
use testkit::pulsar::{PulsarStandin, PulsarStandinConfig};
use tokio::net::TcpStream;
use tokio_util::codec::{Encoder, Framed};

/// A broker's default `maxMessageSize`.
const MAX: usize = 5 * 1024 * 1024;
/// Java's `Commands.MESSAGE_SIZE_FRAME_PADDING`: room for command and metadata.
const PADDING: usize = 10 * 1024;

async fn standin_with_max(max_message_size: usize) -> PulsarStandin {
    init_tracing();
    PulsarStandin::start(PulsarStandinConfig {
        max_message_size,
        ..Default::default()
    })
    .await
    .expect("stand-in starts")
}

// ---- raw frames ----

type Raw = Framed<TcpStream, Codec>;

fn command(kind: Type, fill: impl FnOnce(&mut BaseCommand)) -> Message {
    let mut c = BaseCommand {
        r#type: kind as i32,
        ..Default::default()
    };
    fill(&mut c);
    Message {
        command: c,
        payload: None,
    }
}

fn send_frame(sequence_id: u64, data: Vec<u8>) -> Message {
    Message {
        command: BaseCommand {
            r#type: Type::Send as i32,
            send: Some(CommandSend {
                producer_id: 1,
                sequence_id,
                ..Default::default()
            }),
            ..Default::default()
        },
        payload: Some(Payload {
            metadata: MessageMetadata {
                producer_name: "raw".into(),
                sequence_id,
                publish_time: 1,
                ..Default::default()
            },
            data,
        }),
    }
}

/// Bytes on the wire for `message`, its 4-byte size field included.
fn wire_len(message: &Message) -> usize {
    let mut buf = BytesMut::new();
    Codec.encode(message.clone(), &mut buf).expect("encode");
    buf.len()
}

/// A SEND frame of exactly `len` bytes on the wire.
fn send_frame_of(sequence_id: u64, len: usize) -> Message {
    let overhead = wire_len(&send_frame(sequence_id, Vec::new()));
    send_frame(sequence_id, vec![b'x'; len - overhead])
}

/// The next frame that is not a PING; `None` once the stand-in closed the connection.
async fn next(raw: &mut Raw) -> Option<BaseCommand> {
    loop {
        let frame = tokio::time::timeout(DEADLINE, raw.next())
            .await
            .expect("a frame or a close before the deadline");
        match frame {
            None | Some(Err(_)) => return None,
            Some(Ok(m)) if m.command.ping.is_some() => continue,
            Some(Ok(m)) => return Some(m.command),
        }
    }
}

/// Connects, returning the connection and CONNECTED's `max_message_size`.
async fn connect(standin: &PulsarStandin) -> (Raw, Option<i32>) {
    let stream = TcpStream::connect(standin.addr()).await.expect("tcp connect");
    let mut raw = Framed::new(stream, Codec);
    raw.send(command(Type::Connect, |c| {
        c.connect = Some(CommandConnect {
            client_version: "raw-test".into(),
            protocol_version: Some(21),
            ..Default::default()
        })
    }))
    .await
    .expect("send CONNECT");
    let connected = next(&mut raw).await.and_then(|c| c.connected).expect("CONNECTED");
    (raw, connected.max_message_size)
}

/// Connects and creates producer 1 on `topic`.
async fn raw_producer(standin: &PulsarStandin, topic: &str) -> Raw {
    let (mut raw, _) = connect(standin).await;
    raw.send(command(Type::Producer, |c| {
        c.producer = Some(CommandProducer {
            topic: topic.into(),
            producer_id: 1,
            request_id: 1,
            ..Default::default()
        })
    }))
    .await
    .expect("send PRODUCER");
    let answer = next(&mut raw).await.expect("an answer");
    assert!(answer.producer_success.is_some(), "{answer:?}");
    raw
}

// ---- the real client ----

async fn producer(client: &Pulsar<TokioExecutor>, topic: &str, options: ProducerOptions) -> Producer<TokioExecutor> {
    tokio::time::timeout(
        DEADLINE,
        client.producer().with_topic(topic).with_options(options).build(),
    )
    .await
    .expect("producer in time")
    .expect("producer")
}

/// The sidecar's batching options (src/sink/pulsar.rs), but flushing at two messages
/// so that a test controls what shares a batch.
fn batching_of_two() -> ProducerOptions {
    ProducerOptions {
        batch_size: Some(2),
        ..Default::default()
    }
}

async fn queue(producer: &mut Producer<TokioExecutor>, body: Vec<u8>) -> SendFuture {
    tokio::time::timeout(DEADLINE, producer.send_non_blocking(body))
        .await
        .expect("queued in time")
        .expect("queued")
}

async fn outcome(receipt: SendFuture) -> Result<pulsar::proto::CommandSendReceipt, pulsar::Error> {
    tokio::time::timeout(DEADLINE, receipt)
        .await
        .expect("an outcome before the deadline")
}

/// The error the `pulsar` crate gives a message it kept resending until its operation
/// timeout passed: `Producer(Connection(Io(TimedOut)))`.
fn is_operation_timeout(e: &pulsar::Error) -> bool {
    matches!(
        e,
        pulsar::Error::Producer(ProducerError::Connection(ConnectionError::Io(io)))
            if io.kind() == std::io::ErrorKind::TimedOut
    )
}

fn stored_bodies(standin: &PulsarStandin, topic: &str) -> Vec<Vec<u8>> {
    standin.messages(topic).into_iter().map(|m| m.payload).collect()
}

// ---- tests ----

#[tokio::test]
async fn connected_advertises_the_max_message_size() {
    let standin = standin().await;
    let (_raw, announced) = connect(&standin).await;
    assert_eq!(announced, Some(5_242_880), "the broker's default maxMessageSize");
    standin.shutdown().await;

    let standin = standin_with_max(64 * 1024).await;
    let (_raw, announced) = connect(&standin).await;
    assert_eq!(announced, Some(64 * 1024));
    standin.shutdown().await;
}

#[tokio::test]
async fn the_limit_is_on_the_frame_the_max_plus_10_kib_of_padding() {
    let max = 64 * 1024;
    let standin = standin_with_max(max).await;
    let topic = topic("max-size-frame-limit");

    let mut raw = raw_producer(&standin, &topic).await;
    raw.send(send_frame_of(0, max + PADDING)).await.expect("send");
    let answer = next(&mut raw).await.expect("an answer");
    assert!(
        answer.send_receipt.is_some(),
        "a frame of exactly the limit is stored: {answer:?}"
    );

    raw.send(send_frame_of(1, max + PADDING + 1)).await.ok();
    assert!(
        next(&mut raw).await.is_none(),
        "one byte more: the connection closes without SEND_RECEIPT or SEND_ERROR"
    );
    assert_eq!(standin.entries(&topic).len(), 1, "nothing of the refused frame stored");
    assert_eq!(standin.oversized_frames(), 1);
    assert_eq!(standin.stats(&topic).send_errors, 0, "no SEND_ERROR was sent");

    // the stand-in itself carries on: a new connection works
    let mut raw = raw_producer(&standin, &topic).await;
    raw.send(send_frame_of(2, 100)).await.expect("send");
    assert!(next(&mut raw).await.expect("an answer").send_receipt.is_some());
    standin.shutdown().await;
}

#[tokio::test]
async fn a_message_over_the_max_is_refused_and_not_stored() {
    let standin = standin().await;
    let client = client(&standin.url()).await;

    // not batched: the error is the operation timeout, after resending until then
    let topic = topic("max-size-over");
    let mut producer = producer(&client, &topic, ProducerOptions::default()).await;
    let started = Instant::now();
    let receipt = queue(&mut producer, vec![b'x'; MAX + PADDING]).await;
    let error = outcome(receipt).await.expect_err("refused");
    assert!(is_operation_timeout(&error), "{error:?}");
    assert!(started.elapsed() >= operation_retry().operation_timeout);
    assert!(standin.entries(&topic).is_empty(), "nothing stored");
    assert_eq!(standin.stats(&topic).messages_received, 0);
    assert!(standin.oversized_frames() >= 1);
    // each resend came on a new connection, with the producer created again
    assert!(standin.stats(&topic).producers_created >= 2);

    // batched: every message of the batch fails with that error, wrapped in Batch
    let topic = self::topic("max-size-over-batched");
    let mut producer = self::producer(&client, &topic, batching_of_two()).await;
    let small = queue(&mut producer, b"small".to_vec()).await;
    let big = queue(&mut producer, vec![b'x'; MAX + PADDING]).await;
    for receipt in [small, big] {
        match outcome(receipt).await.expect_err("refused") {
            pulsar::Error::Producer(ProducerError::Batch(inner)) => {
                assert!(is_operation_timeout(&inner), "{inner:?}")
            }
            other => panic!("expected a Batch error, got {other:?}"),
        }
    }
    assert!(standin.entries(&topic).is_empty(), "nothing of the batch stored");
    standin.shutdown().await;
}

#[tokio::test]
async fn a_message_at_the_max_is_accepted() {
    let standin = standin().await;
    let client = client(&standin.url()).await;

    let topic = topic("max-size-at");
    let mut producer = producer(&client, &topic, ProducerOptions::default()).await;
    let receipt = queue(&mut producer, vec![b'x'; MAX]).await;
    outcome(receipt).await.expect("stored");

    let batched = self::topic("max-size-at-batched");
    let mut producer = self::producer(
        &client,
        &batched,
        ProducerOptions {
            batch_size: Some(100),
            batch_timeout: Some(Duration::from_millis(5)),
            ..Default::default()
        },
    )
    .await;
    let receipt = queue(&mut producer, vec![b'y'; MAX]).await;
    outcome(receipt).await.expect("stored");

    assert_eq!(stored_bodies(&standin, &topic), vec![vec![b'x'; MAX]]);
    assert_eq!(stored_bodies(&standin, &batched), vec![vec![b'y'; MAX]]);
    assert_eq!(standin.oversized_frames(), 0);
    standin.shutdown().await;
}

#[tokio::test]
async fn a_message_a_little_over_the_max_fits_in_the_frame_padding() {
    // A broker only limits frames; a Java client would refuse this message itself
    // (it exceeds the announced max), the `pulsar` crate sends it and it is stored.
    let standin = standin().await;
    let client = client(&standin.url()).await;
    let topic = topic("max-size-padding");
    let mut producer = producer(&client, &topic, ProducerOptions::default()).await;
    let receipt = queue(&mut producer, vec![b'x'; MAX + 1024]).await;
    outcome(receipt).await.expect("stored");
    assert_eq!(stored_bodies(&standin, &topic), vec![vec![b'x'; MAX + 1024]]);
    standin.shutdown().await;
}

#[tokio::test]
async fn after_a_refusal_the_client_reconnects_and_smaller_messages_get_through() {
    // A broker does not keep the connection after an oversized frame (see the module
    // comment), so "keeps working" means: on the connection the client opens next.
    let standin = standin().await;
    let client = client(&standin.url()).await;
    let topic = topic("max-size-after");
    let mut producer = producer(&client, &topic, ProducerOptions::default()).await;
    let receipt = queue(&mut producer, vec![b'x'; MAX + PADDING]).await;
    let error = outcome(receipt).await.expect_err("refused");
    assert!(is_operation_timeout(&error), "{error:?}");
    let created = standin.stats(&topic).producers_created;
    assert!(created >= 2, "the producer was re-created after the close");

    let receipt = queue(&mut producer, b"small".to_vec()).await;
    outcome(receipt).await.expect("stored");
    assert_eq!(stored_bodies(&standin, &topic), vec![b"small".to_vec()]);
    assert!(standin.connections() >= 1);
    standin.shutdown().await;
}

#[tokio::test]
async fn producers_sharing_the_connection_are_disrupted_but_lose_nothing_acknowledged() {
    // One client has one connection per broker: an oversized frame from one producer
    // drops the others' connection too, again at every resend until it times out.
    let standin = standin().await;
    let client = client(&standin.url()).await;
    let big_topic = topic("max-size-shared-big");
    let other_topic = topic("max-size-shared-other");
    let mut big = producer(&client, &big_topic, ProducerOptions::default()).await;
    let mut other = producer(&client, &other_topic, ProducerOptions::default()).await;
    let before = queue(&mut other, b"before".to_vec()).await;
    outcome(before).await.expect("stored");

    let refused = queue(&mut big, vec![b'x'; MAX + PADDING]).await;
    let mut during = Vec::new();
    for i in 0..5 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let body = format!("during-{i}").into_bytes();
        during.push((body.clone(), queue(&mut other, body).await));
    }
    let error = outcome(refused).await.expect_err("refused");
    assert!(is_operation_timeout(&error), "{error:?}");
    let mut acknowledged = vec![b"before".to_vec()];
    for (body, receipt) in during {
        match outcome(receipt).await {
            Ok(_) => acknowledged.push(body),
            // sent too close to the oversized one, it can time out with it
            Err(e) => {
                assert!(is_operation_timeout(&e), "{e:?}");
                tracing::info!(body = %String::from_utf8_lossy(&body), "timed out beside the oversized message");
            }
        }
    }
    let after = queue(&mut other, b"after".to_vec()).await;
    outcome(after).await.expect("stored once the oversized message gave up");
    acknowledged.push(b"after".to_vec());

    let stored: BTreeSet<Vec<u8>> = stored_bodies(&standin, &other_topic).into_iter().collect();
    for body in &acknowledged {
        assert!(
            stored.contains(body),
            "{:?} acknowledged but not stored",
            String::from_utf8_lossy(body)
        );
    }
    assert!(
        standin.stats(&other_topic).producers_created >= 2,
        "the other producer lost its connection too"
    );
    assert!(standin.entries(&big_topic).is_empty());
    standin.shutdown().await;
}
