//! Wire-level behaviour checked with raw frames (the `pulsar` crate's own codec on a
//! plain socket): handshake and version negotiation, the AuthenticationError frame,
//! keep-alive both ways, topic validation, checksum errors, and what happens to
//! commands the stand-in does not implement.

mod pulsar_support;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use pulsar::message::{Codec, Message, Payload};
use pulsar::proto::{
    base_command::Type, command_lookup_topic_response, command_partitioned_topic_metadata_response, BaseCommand,
    CommandConnect, CommandLookupTopic, CommandPartitionedTopicMetadata, CommandPing, CommandPong, CommandProducer,
    CommandSeek, CommandSend, MessageMetadata, ProducerAccessMode, ServerError,
};
use pulsar_support::*;
use testkit::pulsar::{PulsarStandin, PulsarStandinConfig};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

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

async fn raw(standin: &PulsarStandin) -> Raw {
    let stream = TcpStream::connect(standin.addr()).await.expect("tcp connect");
    Framed::new(stream, Codec)
}

/// The next frame that is not a PING; `None` when the stand-in closed the connection.
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

async fn request(raw: &mut Raw, message: Message) -> BaseCommand {
    raw.send(message).await.expect("send frame");
    next(raw).await.expect("an answer")
}

fn connect_frame(version: i32, token: Option<&str>) -> Message {
    command(Type::Connect, |c| {
        c.connect = Some(CommandConnect {
            client_version: "raw-test".into(),
            protocol_version: Some(version),
            auth_method_name: token.map(|_| "token".to_string()),
            auth_data: token.map(|t| t.as_bytes().to_vec()),
            ..Default::default()
        })
    })
}

async fn connected(standin: &PulsarStandin) -> Raw {
    let mut raw = raw(standin).await;
    let answer = request(&mut raw, connect_frame(12, None)).await;
    assert!(answer.connected.is_some(), "{answer:?}");
    raw
}

fn producer_frame(topic: &str, producer_id: u64, request_id: u64) -> Message {
    command(Type::Producer, |c| {
        c.producer = Some(CommandProducer {
            topic: topic.into(),
            producer_id,
            request_id,
            ..Default::default()
        })
    })
}

fn send_frame(producer_id: u64, sequence_id: u64, data: &[u8]) -> Message {
    Message {
        command: BaseCommand {
            r#type: Type::Send as i32,
            send: Some(CommandSend {
                producer_id,
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
            data: data.to_vec(),
        }),
    }
}

#[tokio::test]
async fn negotiates_the_lower_protocol_version() {
    let standin = standin().await;
    for (client, expected) in [(12, 12), (6, 6), (99, 21)] {
        let mut raw = raw(&standin).await;
        let answer = request(&mut raw, connect_frame(client, None)).await;
        let connected = answer.connected.expect("CONNECTED");
        assert_eq!(connected.protocol_version, Some(expected));
        assert_eq!(connected.max_message_size, Some(5 * 1024 * 1024));
    }
    standin.shutdown().await;
}

#[tokio::test]
async fn wrong_token_gets_authentication_error_then_close() {
    init_tracing();
    let standin = PulsarStandin::start(PulsarStandinConfig {
        token: Some("right".into()),
        ..Default::default()
    })
    .await
    .expect("start");
    let mut raw = raw(&standin).await;
    let answer = request(&mut raw, connect_frame(12, Some("wrong"))).await;
    let error = answer.error.expect("ERROR");
    assert_eq!(error.error, ServerError::AuthenticationError as i32);
    assert!(next(&mut raw).await.is_none(), "connection closed");

    let mut raw = self::raw(&standin).await;
    let answer = request(&mut raw, connect_frame(12, Some("right"))).await;
    assert!(answer.connected.is_some());
    standin.shutdown().await;
}

#[tokio::test]
async fn a_first_command_other_than_connect_closes_the_connection() {
    let standin = standin().await;
    let mut raw = raw(&standin).await;
    raw.send(command(Type::Ping, |c| c.ping = Some(CommandPing {})))
        .await
        .expect("send");
    assert!(next(&mut raw).await.is_none());
    standin.shutdown().await;
}

#[tokio::test]
async fn answers_pings_and_pings_idle_clients_then_drops_silent_ones() {
    init_tracing();
    let standin = PulsarStandin::start(PulsarStandinConfig {
        keep_alive: Duration::from_millis(300),
        ..Default::default()
    })
    .await
    .expect("start");
    let mut raw = connected(&standin).await;
    let pong = request(&mut raw, command(Type::Ping, |c| c.ping = Some(CommandPing {}))).await;
    assert!(pong.pong.is_some(), "{pong:?}");

    // the stand-in pings; answering keeps the connection alive
    for _ in 0..3 {
        let frame = tokio::time::timeout(DEADLINE, raw.next())
            .await
            .expect("ping in time")
            .expect("open")
            .expect("frame");
        assert!(frame.command.ping.is_some(), "{:?}", frame.command);
        raw.send(command(Type::Pong, |c| c.pong = Some(CommandPong {})))
            .await
            .expect("pong");
    }
    assert_eq!(standin.connections(), 1);
    // a client that stops answering is dropped
    assert!(next(&mut raw).await.is_none(), "silent client dropped");
    standin.shutdown().await;
}

#[tokio::test]
async fn validates_and_expands_topic_names() {
    let standin = standin().await;
    standin.create_partitioned_topic("parted", 3);
    let mut raw = connected(&standin).await;

    let metadata = |topic: &str, request_id| {
        let topic = topic.to_string();
        command(Type::PartitionedMetadata, move |c| {
            c.partition_metadata = Some(CommandPartitionedTopicMetadata {
                topic,
                request_id,
                ..Default::default()
            })
        })
    };
    let answer = request(&mut raw, metadata("parted", 1)).await;
    let r = answer.partition_metadata_response.expect("response");
    assert_eq!(r.partitions, Some(3));
    let answer = request(&mut raw, metadata("persistent://public/default/parted", 2)).await;
    assert_eq!(
        answer.partition_metadata_response.expect("response").partitions,
        Some(3)
    );
    let answer = request(&mut raw, metadata("plain", 3)).await;
    assert_eq!(
        answer.partition_metadata_response.expect("response").partitions,
        Some(0)
    );
    let answer = request(&mut raw, metadata("a/b", 4)).await;
    let r = answer.partition_metadata_response.expect("response");
    assert_eq!(
        r.response,
        Some(command_partitioned_topic_metadata_response::LookupType::Failed as i32)
    );
    assert_eq!(r.error, Some(ServerError::InvalidTopicName as i32));

    let lookup = |topic: &str, request_id| {
        let topic = topic.to_string();
        command(Type::Lookup, move |c| {
            c.lookup_topic = Some(CommandLookupTopic {
                topic,
                request_id,
                ..Default::default()
            })
        })
    };
    let r = request(&mut raw, lookup("parted-partition-1", 5))
        .await
        .lookup_topic_response
        .expect("lookup response");
    assert_eq!(
        r.response,
        Some(command_lookup_topic_response::LookupType::Connect as i32)
    );
    assert_eq!(r.broker_service_url.as_deref(), Some(standin.url().as_str()));
    let r = request(&mut raw, lookup("kafka://x/y/z", 6))
        .await
        .lookup_topic_response
        .expect("lookup response");
    assert_eq!(
        r.response,
        Some(command_lookup_topic_response::LookupType::Failed as i32)
    );
    assert_eq!(r.error, Some(ServerError::InvalidTopicName as i32));

    let answer = request(&mut raw, producer_frame("persistent://only/two", 1, 7)).await;
    assert_eq!(answer.error.expect("ERROR").error, ServerError::InvalidTopicName as i32);
    // a partitioned topic takes producers on its partitions only
    let answer = request(&mut raw, producer_frame("parted", 1, 8)).await;
    assert_eq!(answer.error.expect("ERROR").error, ServerError::NotAllowedError as i32);
    let answer = request(&mut raw, producer_frame("parted-partition-2", 1, 9)).await;
    let success = answer.producer_success.expect("PRODUCER_SUCCESS");
    assert_eq!(success.request_id, 9);
    assert!(!success.producer_name.is_empty(), "a generated producer name");
    assert!(standin
        .topics()
        .contains(&"persistent://public/default/parted-partition-2".to_string()));
    standin.shutdown().await;
}

#[tokio::test]
async fn a_corrupted_send_gets_checksum_error_and_the_connection_goes_on() {
    let standin = standin().await;
    let mut raw = connected(&standin).await;
    let answer = request(&mut raw, producer_frame("crc", 7, 1)).await;
    assert!(answer.producer_success.is_some(), "{answer:?}");

    // encode a SEND with the client codec, then flip a payload byte on the wire
    let mut bytes = bytes::BytesMut::new();
    tokio_util::codec::Encoder::encode(&mut Codec, send_frame(7, 0, b"payload"), &mut bytes).expect("encode");
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    raw.get_mut().write_all(&bytes).await.expect("write corrupted frame");
    let answer = next(&mut raw).await.expect("answer");
    let error = answer.send_error.expect("SEND_ERROR");
    assert_eq!(error.error, ServerError::ChecksumError as i32);
    assert_eq!((error.producer_id, error.sequence_id), (7, 0));

    let answer = request(&mut raw, send_frame(7, 1, b"payload")).await;
    let receipt = answer.send_receipt.expect("SEND_RECEIPT");
    assert_eq!(receipt.sequence_id, 1);
    assert_eq!(receipt.message_id.expect("message id").entry_id, 0);
    assert_eq!(standin.messages("crc").len(), 1);
    assert_eq!(standin.stats("crc").send_errors, 1);
    standin.shutdown().await;
}

#[tokio::test]
async fn unsupported_commands_get_an_error_and_unknown_ones_close_the_connection() {
    let standin = standin().await;
    let mut raw = connected(&standin).await;
    let answer = request(
        &mut raw,
        command(Type::Seek, |c| {
            c.seek = Some(CommandSeek {
                consumer_id: 1,
                request_id: 42,
                ..Default::default()
            })
        }),
    )
    .await;
    let error = answer.error.expect("ERROR");
    assert_eq!(error.request_id, 42);
    assert_eq!(error.error, ServerError::NotAllowedError as i32);

    // a SEND for a producer never created is a protocol violation
    raw.send(send_frame(99, 0, b"x")).await.expect("send");
    assert!(next(&mut raw).await.is_none(), "closed");

    let mut raw = connected(&standin).await;
    raw.send(command(Type::Connect, |_| {})).await.expect("send");
    let mut raw2 = connected(&standin).await;
    raw2.send(Message {
        command: BaseCommand {
            r#type: 1000,
            ..Default::default()
        },
        payload: None,
    })
    .await
    .expect("send");
    assert!(next(&mut raw2).await.is_none(), "unknown command closes");
    assert!(next(&mut raw).await.is_none(), "empty command closes");
    standin.shutdown().await;
}

#[tokio::test]
async fn serves_several_clients_at_once() {
    let standin = standin().await;
    let topic = topic("many-clients");
    let mut tasks = Vec::new();
    for c in 0..4 {
        let url = standin.url();
        let topic = topic.clone();
        tasks.push(tokio::spawn(async move {
            let client = client(&url).await;
            let mut producer = client.producer().with_topic(&topic).build().await.expect("producer");
            for i in 0..25 {
                producer
                    .send_non_blocking(format!("c{c}-{i}").into_bytes())
                    .await
                    .expect("queue")
                    .await
                    .expect("receipt");
            }
        }));
    }
    for task in tasks {
        tokio::time::timeout(DEADLINE, task)
            .await
            .expect("in time")
            .expect("task");
    }
    let stored = standin.wait_for_messages(&topic, 100, DEADLINE).await.expect("stored");
    assert_eq!(stored.len(), 100);
    // each producer's messages are stored in the order it sent them
    for c in 0..4 {
        let mine: Vec<String> = stored
            .iter()
            .map(|m| String::from_utf8(m.payload.clone()).expect("utf8"))
            .filter(|s| s.starts_with(&format!("c{c}-")))
            .collect();
        let expected: Vec<String> = (0..25).map(|i| format!("c{c}-{i}")).collect();
        assert_eq!(mine, expected);
    }
    standin.shutdown().await;
}

#[tokio::test]
async fn a_producer_name_is_connected_once_at_a_time() {
    let standin = standin().await;
    let topic = topic("named");
    let first_client = client(&standin.url()).await;
    let mut first = first_client
        .producer()
        .with_topic(&topic)
        .with_name("sidecar")
        .build()
        .await
        .expect("first producer");
    let impatient = impatient_client(&standin.url()).await;
    let busy = tokio::time::timeout(
        DEADLINE,
        impatient.producer().with_topic(&topic).with_name("sidecar").build(),
    )
    .await
    .expect("outcome in time");
    let error = busy.err().expect("same name refused");
    assert!(format!("{error:?}").contains("ProducerBusy"), "{error:?}");

    // once the first closes, the name is free
    first.close().await.expect("close");
    let mut second = tokio::time::timeout(
        DEADLINE,
        impatient.producer().with_topic(&topic).with_name("sidecar").build(),
    )
    .await
    .expect("in time")
    .expect("name free again");
    second
        .send_non_blocking(b"x".to_vec())
        .await
        .expect("queue")
        .await
        .expect("receipt");
    standin.shutdown().await;
}

#[tokio::test]
async fn an_exclusive_producer_keeps_others_off_the_topic() {
    let standin = standin().await;
    let topic = topic("exclusive-producer");
    let client = client(&standin.url()).await;
    let exclusive = pulsar::ProducerOptions {
        access_mode: Some(ProducerAccessMode::Exclusive as i32),
        ..Default::default()
    };
    let mut owner = client
        .producer()
        .with_topic(&topic)
        .with_name("owner")
        .with_options(exclusive.clone())
        .build()
        .await
        .expect("exclusive producer");
    let impatient = impatient_client(&standin.url()).await;
    let shared = tokio::time::timeout(DEADLINE, impatient.producer().with_topic(&topic).build())
        .await
        .expect("outcome in time");
    let error = shared.err().expect("a shared producer is kept off");
    assert!(format!("{error:?}").contains("ProducerBusy"), "{error:?}");
    let rival = tokio::time::timeout(
        DEADLINE,
        impatient
            .producer()
            .with_topic(&topic)
            .with_name("rival")
            .with_options(exclusive)
            .build(),
    )
    .await
    .expect("outcome in time");
    let error = rival.err().expect("a second exclusive producer is fenced");
    assert!(format!("{error:?}").contains("ProducerFenced"), "{error:?}");

    owner.close().await.expect("close");
    tokio::time::timeout(DEADLINE, impatient.producer().with_topic(&topic).build())
        .await
        .expect("in time")
        .expect("the topic is open again");
    standin.shutdown().await;
}
