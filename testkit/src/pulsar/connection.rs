//! One client connection: the CONNECT handshake (protocol version, token), then a
//! loop turning each command into a broker call and an answer, with keep-alive
//! pings both ways. Sits between the frame layer (below) and the server (above),
//! which spawns one of these per accepted socket.
//!
//! Outgoing frames go through a writer task fed by a channel, so that dispatch to
//! this connection's consumers can happen from any connection's SEND. Answers to
//! SENDs go through a second, ordered queue that can hold them back (the
//! `hold_receipts_for` fault) without delaying pings or messages.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use pulsar::proto::{
    base_command::Type,
    command_ack::AckType,
    command_get_topics_of_namespace::Mode,
    command_lookup_topic_response, command_partitioned_topic_metadata_response,
    command_subscribe::{InitialPosition, SubType},
    BaseCommand, CommandAckResponse, CommandConnected, CommandError, CommandGetLastMessageIdResponse,
    CommandGetSchemaResponse, CommandGetTopicsOfNamespaceResponse, CommandLookupTopicResponse,
    CommandPartitionedTopicMetadataResponse, CommandPing, CommandPong, CommandProducerSuccess, CommandSendError,
    CommandSendReceipt, CommandSuccess, ProducerAccessMode, ServerError,
};
use tokio::net::TcpStream;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::broker::{Broker, ProducerRequest, Refusal, SubscribeRequest};
use super::config::PulsarStandinConfig;
use super::frame::{FrameCodec, FrameError, InFrame, OutFrame};
use super::subscription::ConsumerHandle;
use super::topic::TopicName;

/// The highest protocol version the stand-in speaks; CONNECTED answers the lower of
/// this and the client's.
const MAX_PROTOCOL_VERSION: i32 = 21;

/// Room for the command and metadata around a message of `max_message_size`: a
/// broker's frame decoder takes `maxMessageSize + Commands.MESSAGE_SIZE_FRAME_PADDING`
/// (10 KiB) bytes per frame (`PulsarChannelInitializer`), so the limit is on the whole
/// frame and a payload a little over `max_message_size` still fits.
const FRAME_OVERHEAD: usize = 10 * 1024;

/// Why a connection ended abnormally (logged by the server, never fatal to it).
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    /// Reading or writing a frame failed.
    #[error("frame: {0}")]
    Frame(#[from] FrameError),
    /// The socket failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The client did not send CONNECT in time, or sent something else first.
    #[error("no CONNECT: {0}")]
    Handshake(&'static str),
}

type Sink = SplitSink<Framed<TcpStream, FrameCodec>, OutFrame>;
type Source = SplitStream<Framed<TcpStream, FrameCodec>>;

/// What a connection needs from the server.
pub(crate) struct ConnectionContext {
    pub id: u64,
    pub broker: Arc<Broker>,
    pub config: Arc<PulsarStandinConfig>,
    /// cancelled to drop this connection (a fault, going unreachable, shutdown)
    pub cancel: CancellationToken,
}

/// Serves one accepted socket until the client leaves, the protocol is violated,
/// or `ctx.cancel` fires.
pub(crate) async fn serve(stream: TcpStream, ctx: ConnectionContext) -> Result<(), ConnectionError> {
    let local = stream.local_addr()?;
    let _ = stream.set_nodelay(true);
    let codec = FrameCodec::new(ctx.config.max_message_size + FRAME_OVERHEAD);
    let mut framed = Framed::new(stream, codec);
    let connected = tokio::select! {
        _ = ctx.cancel.cancelled() => return Ok(()),
        r = handshake(&mut framed, &ctx.config, &ctx.broker) => r.inspect_err(|e| count_oversized(e, &ctx.broker))?,
    };
    if !connected {
        return Ok(());
    }
    let (sink, source) = framed.split();
    let (out_tx, out_rx) = unbounded_channel();
    let (answer_tx, answer_rx) = unbounded_channel();
    let closing = CancellationToken::new();
    let writer = tokio::spawn(write_loop(sink, out_rx, closing.clone()));
    let answers = tokio::spawn(answer_loop(answer_rx, out_tx.clone(), closing.clone()));
    let advertised = ctx
        .config
        .advertised_url
        .clone()
        .unwrap_or_else(|| format!("pulsar://{local}"));
    let mut session = Session {
        id: ctx.id,
        broker: ctx.broker.clone(),
        advertised,
        out: out_tx,
        answers: answer_tx,
        producers: HashMap::new(),
        consumers: HashMap::new(),
    };
    let result = session.run(source, &ctx).await;
    if let Err(e) = &result {
        count_oversized(e, &ctx.broker);
    }
    ctx.broker.connection_closed(ctx.id);
    drop(session);
    closing.cancel();
    let _ = writer.await;
    let _ = answers.await;
    result
}

/// A frame over the limit ends the connection without an answer, as on a broker: its
/// frame decoder raises `TooLongFrameException` and `ServerCnx.exceptionCaught` closes
/// the channel. No SEND_ERROR is possible, since the frame (hence which producer and
/// sequence id) was never read. The caller returns the error, which the server logs.
fn count_oversized(e: &ConnectionError, broker: &Broker) {
    if let ConnectionError::Frame(FrameError::TooLarge { .. }) = e {
        broker.count_oversized_frame();
    }
}

/// Reads CONNECT, checks the token and answers CONNECTED (true) or the
/// AuthenticationError a broker sends (false).
async fn handshake(
    framed: &mut Framed<TcpStream, FrameCodec>,
    config: &PulsarStandinConfig,
    broker: &Broker,
) -> Result<bool, ConnectionError> {
    let first = tokio::time::timeout(config.handshake_timeout, framed.next())
        .await
        .map_err(|_| ConnectionError::Handshake("timed out"))?;
    let frame = match first {
        None => return Ok(false),
        Some(frame) => frame?,
    };
    let Some(connect) = frame.command.connect else {
        return Err(ConnectionError::Handshake("first command is not CONNECT"));
    };
    if let Some(token) = &config.token {
        let method = connect.auth_method_name.as_deref().unwrap_or("none");
        let data = connect.auth_data.as_deref().unwrap_or_default();
        if method != "token" || data != token.as_bytes() {
            warn!(client = %connect.client_version, method, "authentication refused");
            broker.count_auth_refusal();
            let refusal = Refusal {
                error: ServerError::AuthenticationError,
                message: "Failed to authenticate: invalid or missing token".into(),
            };
            // request id -1 on the wire, as a broker answers a failed CONNECT
            framed.send(error_frame(u64::MAX, &refusal)).await?;
            return Ok(false);
        }
    }
    let version = connect.protocol_version.unwrap_or(0).min(MAX_PROTOCOL_VERSION);
    debug!(client = %connect.client_version, version, "client connected");
    framed
        .send(OutFrame::command(BaseCommand {
            r#type: Type::Connected as i32,
            connected: Some(CommandConnected {
                server_version: concat!("testkit-pulsar-standin-", env!("CARGO_PKG_VERSION")).into(),
                protocol_version: Some(version),
                // PulsarApi.proto: `optional int32 max_message_size = 3`, set by a
                // broker from its `maxMessageSize` (PIP-36)
                max_message_size: Some(i32::try_from(config.max_message_size).unwrap_or(i32::MAX)),
            }),
            ..Default::default()
        }))
        .await?;
    Ok(true)
}

/// Writes queued frames, flushing when the queue runs dry.
async fn write_loop(mut sink: Sink, mut rx: UnboundedReceiver<OutFrame>, closing: CancellationToken) {
    let write = async {
        while let Some(frame) = rx.recv().await {
            sink.feed(frame).await?;
            while let Ok(frame) = rx.try_recv() {
                sink.feed(frame).await?;
            }
            sink.flush().await?;
        }
        Ok::<(), FrameError>(())
    };
    tokio::select! {
        _ = closing.cancelled() => {}
        r = write => if let Err(e) = r { debug!(error = %e, "write failed") },
    }
}

/// Forwards answers to SENDs in order, each no earlier than its release time.
async fn answer_loop(
    mut rx: UnboundedReceiver<(Option<Instant>, OutFrame)>,
    out: UnboundedSender<OutFrame>,
    closing: CancellationToken,
) {
    let forward = async {
        while let Some((release, frame)) = rx.recv().await {
            if let Some(at) = release {
                tokio::time::sleep_until(at.into()).await;
            }
            if out.send(frame).is_err() {
                return;
            }
        }
    };
    tokio::select! {
        _ = closing.cancelled() => {}
        _ = forward => {}
    }
}

fn error_frame(request_id: u64, refusal: &Refusal) -> OutFrame {
    OutFrame::command(BaseCommand {
        r#type: Type::Error as i32,
        error: Some(CommandError {
            request_id,
            error: refusal.error as i32,
            message: refusal.message.clone(),
        }),
        ..Default::default()
    })
}

fn success_frame(request_id: u64) -> OutFrame {
    OutFrame::command(BaseCommand {
        r#type: Type::Success as i32,
        success: Some(CommandSuccess {
            request_id,
            schema: None,
        }),
        ..Default::default()
    })
}

fn invalid_topic(e: super::topic::TopicNameError) -> Refusal {
    Refusal {
        error: ServerError::InvalidTopicName,
        message: e.to_string(),
    }
}

/// Whether the connection goes on after a command.
enum Step {
    Continue,
    Close(&'static str),
}

struct Producer {
    topic: TopicName,
    name: String,
}

struct Session {
    id: u64,
    broker: Arc<Broker>,
    advertised: String,
    out: UnboundedSender<OutFrame>,
    answers: UnboundedSender<(Option<Instant>, OutFrame)>,
    producers: HashMap<u64, Producer>,
    /// consumer id → (topic, subscription)
    consumers: HashMap<u64, (TopicName, String)>,
}

impl Session {
    fn send(&self, frame: OutFrame) {
        // fails only when the writer stopped, i.e. the connection is closing anyway
        let _ = self.out.send(frame);
    }

    async fn run(&mut self, mut source: Source, ctx: &ConnectionContext) -> Result<(), ConnectionError> {
        let period = ctx.config.keep_alive;
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        // a late tick must not be followed by an immediate one, or a slow test machine
        // would look like a silent client
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // As a broker does: ping every period, and close if the previous ping got no
        // answer (any frame counts as one).
        let mut awaiting_pong = false;
        loop {
            tokio::select! {
                _ = ctx.cancel.cancelled() => {
                    debug!(connection = self.id, "connection dropped by the stand-in");
                    return Ok(());
                }
                _ = ticker.tick() => {
                    if awaiting_pong {
                        warn!(connection = self.id, "no answer to a keep-alive ping, closing");
                        return Ok(());
                    }
                    awaiting_pong = true;
                    self.send(OutFrame::command(BaseCommand {
                        r#type: Type::Ping as i32,
                        ping: Some(CommandPing {}),
                        ..Default::default()
                    }));
                }
                frame = source.next() => {
                    let Some(frame) = frame else { return Ok(()) };
                    awaiting_pong = false;
                    if let Step::Close(why) = self.handle(frame?) {
                        warn!(connection = self.id, why, "closing the connection");
                        return Ok(());
                    }
                }
            }
        }
    }

    fn handle(&mut self, frame: InFrame) -> Step {
        let InFrame { command: c, payload } = frame;
        if c.ping.is_some() {
            self.send(OutFrame::command(BaseCommand {
                r#type: Type::Pong as i32,
                pong: Some(CommandPong {}),
                ..Default::default()
            }));
        } else if c.pong.is_some() {
        } else if let Some(send) = c.send {
            return self.on_send(send, payload);
        } else if let Some(p) = c.partition_metadata {
            let response = match TopicName::parse(&p.topic) {
                Ok(topic) => CommandPartitionedTopicMetadataResponse {
                    partitions: Some(self.broker.partitions(&topic)),
                    request_id: p.request_id,
                    response: Some(command_partitioned_topic_metadata_response::LookupType::Success as i32),
                    ..Default::default()
                },
                Err(e) => CommandPartitionedTopicMetadataResponse {
                    request_id: p.request_id,
                    response: Some(command_partitioned_topic_metadata_response::LookupType::Failed as i32),
                    error: Some(ServerError::InvalidTopicName as i32),
                    message: Some(e.to_string()),
                    ..Default::default()
                },
            };
            self.send(OutFrame::command(BaseCommand {
                r#type: Type::PartitionedMetadataResponse as i32,
                partition_metadata_response: Some(response),
                ..Default::default()
            }));
        } else if let Some(l) = c.lookup_topic {
            use command_lookup_topic_response::LookupType;
            let response = match TopicName::parse(&l.topic) {
                Ok(_) => CommandLookupTopicResponse {
                    broker_service_url: Some(self.advertised.clone()),
                    response: Some(LookupType::Connect as i32),
                    request_id: l.request_id,
                    authoritative: Some(true),
                    proxy_through_service_url: Some(false),
                    ..Default::default()
                },
                Err(e) => CommandLookupTopicResponse {
                    response: Some(LookupType::Failed as i32),
                    request_id: l.request_id,
                    error: Some(ServerError::InvalidTopicName as i32),
                    message: Some(e.to_string()),
                    ..Default::default()
                },
            };
            self.send(OutFrame::command(BaseCommand {
                r#type: Type::LookupResponse as i32,
                lookup_topic_response: Some(response),
                ..Default::default()
            }));
        } else if let Some(p) = c.producer {
            let result = TopicName::parse(&p.topic).map_err(invalid_topic).and_then(|topic| {
                // a retried or re-created producer replaces its earlier registration
                if let Some(old) = self.producers.remove(&p.producer_id) {
                    self.broker.remove_producer(&old.topic, self.id, p.producer_id);
                }
                let name = self.broker.add_producer(ProducerRequest {
                    topic: topic.clone(),
                    name: p.producer_name.clone(),
                    // WaitForExclusive and ExclusiveWithFencing are served as Exclusive
                    exclusive: p
                        .producer_access_mode
                        .is_some_and(|m| m != ProducerAccessMode::Shared as i32),
                    connection: self.id,
                    producer_id: p.producer_id,
                    out: self.out.clone(),
                })?;
                info!(connection = self.id, %topic, producer = %name, "producer created");
                self.producers.insert(
                    p.producer_id,
                    Producer {
                        topic,
                        name: name.clone(),
                    },
                );
                Ok(name)
            });
            self.send(match result {
                Ok(producer_name) => OutFrame::command(BaseCommand {
                    r#type: Type::ProducerSuccess as i32,
                    producer_success: Some(CommandProducerSuccess {
                        request_id: p.request_id,
                        producer_name,
                        last_sequence_id: Some(-1),
                        producer_ready: Some(true),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                Err(refusal) => {
                    warn!(connection = self.id, topic = %p.topic, error = ?refusal.error, "producer refused");
                    error_frame(p.request_id, &refusal)
                }
            });
        } else if let Some(cp) = c.close_producer {
            if let Some(producer) = self.producers.remove(&cp.producer_id) {
                info!(connection = self.id, topic = %producer.topic, producer = %producer.name, "producer closed");
                self.broker.remove_producer(&producer.topic, self.id, cp.producer_id);
            }
            self.send(success_frame(cp.request_id));
        } else if let Some(s) = c.subscribe {
            let request_id = s.request_id;
            let result = self.on_subscribe(s);
            self.send(match result {
                Ok(()) => success_frame(request_id),
                Err(refusal) => error_frame(request_id, &refusal),
            });
        } else if let Some(f) = c.flow {
            if let Some((topic, sub)) = self.consumers.get(&f.consumer_id) {
                self.broker.flow(topic, sub, self.id, f.consumer_id, f.message_permits);
            }
        } else if let Some(a) = c.ack {
            if let Some((topic, sub)) = self.consumers.get(&a.consumer_id) {
                let cumulative = a.ack_type == AckType::Cumulative as i32;
                self.broker.ack(topic, sub, &a.message_id, cumulative);
            }
            if let Some(request_id) = a.request_id {
                self.send(OutFrame::command(BaseCommand {
                    r#type: Type::AckResponse as i32,
                    ack_response: Some(CommandAckResponse {
                        consumer_id: a.consumer_id,
                        request_id: Some(request_id),
                        ..Default::default()
                    }),
                    ..Default::default()
                }));
            }
        } else if let Some(r) = c.redeliver_unacknowledged_messages {
            if let Some((topic, sub)) = self.consumers.get(&r.consumer_id) {
                self.broker
                    .redeliver(topic, sub, self.id, r.consumer_id, &r.message_ids);
            }
        } else if let Some(cc) = c.close_consumer {
            if let Some((topic, sub)) = self.consumers.remove(&cc.consumer_id) {
                self.broker.close_consumer(&topic, &sub, self.id, cc.consumer_id);
            }
            self.send(success_frame(cc.request_id));
        } else if let Some(u) = c.unsubscribe {
            let result = match self.consumers.get(&u.consumer_id) {
                None => Ok(()),
                Some((topic, sub)) => self.broker.unsubscribe(topic, sub, self.id, u.consumer_id),
            };
            self.consumers.remove(&u.consumer_id);
            self.send(match result {
                Ok(()) => success_frame(u.request_id),
                Err(refusal) => error_frame(u.request_id, &refusal),
            });
        } else if let Some(g) = c.get_last_message_id {
            self.send(match self.consumers.get(&g.consumer_id) {
                Some((topic, _)) => OutFrame::command(BaseCommand {
                    r#type: Type::GetLastMessageIdResponse as i32,
                    get_last_message_id_response: Some(CommandGetLastMessageIdResponse {
                        last_message_id: self.broker.last_message_id(topic),
                        request_id: g.request_id,
                        consumer_mark_delete_position: None,
                    }),
                    ..Default::default()
                }),
                None => error_frame(
                    g.request_id,
                    &Refusal {
                        error: ServerError::ConsumerNotFound,
                        message: format!("consumer {} not found", g.consumer_id),
                    },
                ),
            });
        } else if let Some(g) = c.get_topics_of_namespace {
            let mode = g.mode.and_then(|m| Mode::try_from(m).ok()).unwrap_or(Mode::Persistent);
            let topics =
                self.broker
                    .topics_in_namespace(&g.namespace, mode != Mode::NonPersistent, mode != Mode::Persistent);
            self.send(OutFrame::command(BaseCommand {
                r#type: Type::GetTopicsOfNamespaceResponse as i32,
                get_topics_of_namespace_response: Some(CommandGetTopicsOfNamespaceResponse {
                    request_id: g.request_id,
                    topics,
                    filtered: Some(false),
                    topics_hash: None,
                    changed: Some(true),
                }),
                ..Default::default()
            }));
        } else if let Some(g) = c.get_schema {
            // topics here carry no schema; a broker answers that with TopicNotFound
            self.send(OutFrame::command(BaseCommand {
                r#type: Type::GetSchemaResponse as i32,
                get_schema_response: Some(CommandGetSchemaResponse {
                    request_id: g.request_id,
                    error_code: Some(ServerError::TopicNotFound as i32),
                    error_message: Some("Topic not found or no-schema".into()),
                    ..Default::default()
                }),
                ..Default::default()
            }));
        } else if let Some(request_id) = unsupported_request_id(&c) {
            let kind = Type::try_from(c.r#type).map(|t| t.as_str_name()).unwrap_or("unknown");
            warn!(
                connection = self.id,
                command = kind,
                "unsupported command answered with an error"
            );
            self.send(error_frame(
                request_id,
                &Refusal {
                    error: ServerError::NotAllowedError,
                    message: format!("{kind} is not supported by the stand-in"),
                },
            ));
        } else {
            warn!(connection = self.id, r#type = c.r#type, "unexpected command");
            return Step::Close("unexpected command");
        }
        Step::Continue
    }

    fn on_subscribe(&mut self, s: pulsar::proto::CommandSubscribe) -> Result<(), Refusal> {
        let topic = TopicName::parse(&s.topic).map_err(invalid_topic)?;
        if s.subscription.is_empty() {
            return Err(Refusal {
                error: ServerError::NotAllowedError,
                message: "empty subscription name".into(),
            });
        }
        let sub_type = SubType::try_from(s.sub_type).unwrap_or(SubType::Exclusive);
        let initial_position = s
            .initial_position
            .and_then(|p| InitialPosition::try_from(p).ok())
            .unwrap_or(InitialPosition::Latest);
        self.broker.subscribe(SubscribeRequest {
            topic: topic.clone(),
            subscription: s.subscription.clone(),
            sub_type,
            initial_position,
            durable: s.durable.unwrap_or(true),
            start_message_id: s.start_message_id,
            consumer: ConsumerHandle {
                connection: self.id,
                consumer_id: s.consumer_id,
                name: s.consumer_name.unwrap_or_default(),
                priority: s.priority_level.unwrap_or(0),
                permits: 0,
                out: self.out.clone(),
            },
        })?;
        info!(connection = self.id, %topic, subscription = %s.subscription, ?sub_type, "consumer subscribed");
        self.consumers.insert(s.consumer_id, (topic, s.subscription));
        Ok(())
    }

    fn on_send(&mut self, send: pulsar::proto::CommandSend, payload: Option<super::frame::InPayload>) -> Step {
        let Some(producer) = self.producers.get(&send.producer_id) else {
            // a broker closes the connection on a SEND for a producer it does not know
            return Step::Close("SEND for an unknown producer");
        };
        let Some(payload) = payload else {
            return Step::Close("SEND without payload");
        };
        let result = if payload.checksum_ok {
            self.broker.publish(
                &producer.topic,
                (self.id, send.producer_id),
                payload.metadata,
                payload.metadata_bytes,
                payload.data,
            )
        } else {
            warn!(connection = self.id, producer = %producer.name, sequence_id = send.sequence_id, "checksum mismatch");
            self.broker.count_send_error(&producer.topic);
            Err(Refusal {
                error: ServerError::ChecksumError,
                message: "checksum mismatch".into(),
            })
        };
        let frame = match result {
            Ok(message_id) => OutFrame::command(BaseCommand {
                r#type: Type::SendReceipt as i32,
                send_receipt: Some(CommandSendReceipt {
                    producer_id: send.producer_id,
                    sequence_id: send.sequence_id,
                    message_id: Some(message_id),
                    highest_sequence_id: send.highest_sequence_id,
                }),
                ..Default::default()
            }),
            Err(refusal) => {
                warn!(connection = self.id, producer = %producer.name, error = ?refusal.error, "send failed");
                OutFrame::command(BaseCommand {
                    r#type: Type::SendError as i32,
                    send_error: Some(CommandSendError {
                        producer_id: send.producer_id,
                        sequence_id: send.sequence_id,
                        error: refusal.error as i32,
                        message: refusal.message,
                    }),
                    ..Default::default()
                })
            }
        };
        let _ = self.answers.send((self.broker.receipt_release(), frame));
        Step::Continue
    }
}

/// The request id of a known command the stand-in does not implement, so it can be
/// answered with ERROR instead of leaving the client waiting.
fn unsupported_request_id(c: &BaseCommand) -> Option<u64> {
    if let Some(x) = &c.seek {
        return Some(x.request_id);
    }
    if let Some(x) = &c.consumer_stats {
        return Some(x.request_id);
    }
    if let Some(x) = &c.get_or_create_schema {
        return Some(x.request_id);
    }
    if let Some(x) = &c.new_txn {
        return Some(x.request_id);
    }
    if let Some(x) = &c.add_partition_to_txn {
        return Some(x.request_id);
    }
    if let Some(x) = &c.add_subscription_to_txn {
        return Some(x.request_id);
    }
    if let Some(x) = &c.end_txn {
        return Some(x.request_id);
    }
    if let Some(x) = &c.tc_client_connect_request {
        return Some(x.request_id);
    }
    None
}
