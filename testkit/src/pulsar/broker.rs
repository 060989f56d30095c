//! Broker state shared by every connection: topics and their entries, partitioned
//! topic metadata, subscriptions, producers, injected faults and per-topic counters.
//!
//! One `std::sync::Mutex` guards it all: every operation is short and never awaits,
//! and a single lock keeps a store, the dispatch it triggers and concurrent acks
//! consistent. Connections (above) translate commands into these calls; the
//! subscription module (below) does the per-subscription bookkeeping.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use bytes::Bytes;
use pulsar::proto::{
    base_command::Type,
    command_subscribe::{InitialPosition, SubType},
    BaseCommand, CommandCloseProducer, MessageIdData, MessageMetadata, ServerError,
};
use tokio::sync::watch;

use super::frame::OutFrame;
use super::payload::StoredEntry;
use super::subscription::{ConsumerHandle, Outbound, Subscription};
use super::topic::TopicName;

/// Counters for one topic (partition), as seen by the broker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TopicStats {
    /// application messages stored (a batch counts its messages)
    pub messages_received: u64,
    /// entries (SENDs) stored
    pub entries_received: u64,
    /// payload bytes stored, as sent (compressed)
    pub bytes_received: u64,
    /// SENDs answered with SEND_ERROR (injected faults, bad checksums)
    pub send_errors: u64,
    /// producers created (a re-created producer counts again)
    pub producers_created: u64,
    /// PRODUCER commands refused by an injected fault
    pub producers_refused: u64,
    /// entries sent to consumers, redeliveries included
    pub entries_dispatched: u64,
    /// message ids acknowledged by consumers
    pub acks_received: u64,
    /// times the topic was unloaded (a fault closing its producers and consumers)
    pub unloads: u64,
}

/// A refusal, answered with the error code a broker would use.
#[derive(Debug, Clone)]
pub(crate) struct Refusal {
    pub error: ServerError,
    pub message: String,
}

impl Refusal {
    fn new(error: ServerError, message: impl Into<String>) -> Self {
        Refusal {
            error,
            message: message.into(),
        }
    }
}

/// A connected producer, as the broker knows it.
struct ProducerReg {
    connection: u64,
    producer_id: u64,
    /// its connection's outgoing frames, to close it on unload
    out: Outbound,
}

/// Everything a PRODUCER carries that the broker needs.
pub(crate) struct ProducerRequest {
    pub topic: TopicName,
    /// `None`: the broker generates one
    pub name: Option<String>,
    /// any access mode but Shared
    pub exclusive: bool,
    pub connection: u64,
    pub producer_id: u64,
    pub out: Outbound,
}

struct Topic {
    ledger_id: u64,
    partition: i32,
    entries: Vec<Arc<StoredEntry>>,
    subscriptions: BTreeMap<String, Subscription>,
    /// producer name → where it is connected: a name is connected once at a time
    producers: BTreeMap<String, ProducerReg>,
    /// the producer that asked for exclusive access, while connected
    exclusive_producer: Option<String>,
    stats: TopicStats,
}

impl Topic {
    fn forget_gone_exclusive(&mut self) {
        if let Some(name) = &self.exclusive_producer {
            if !self.producers.contains_key(name) {
                self.exclusive_producer = None;
            }
        }
    }

    fn dispatch(&mut self) {
        for sub in self.subscriptions.values_mut() {
            self.stats.entries_dispatched += sub.dispatch(&self.entries);
        }
    }
}

#[derive(Default)]
struct Faults {
    refuse_producers_until: Option<Instant>,
    failing_sends: usize,
    send_error: Option<ServerError>,
    hold_receipts_until: Option<Instant>,
}

#[derive(Default)]
struct State {
    topics: BTreeMap<String, Topic>,
    partitioned: BTreeMap<String, u32>,
    next_ledger: u64,
    next_producer: u64,
    faults: Faults,
}

impl State {
    fn topic(&mut self, name: &TopicName) -> &mut Topic {
        let partition = match name.partition() {
            Some(index) if self.partitioned.contains_key(name.base().as_str()) => index as i32,
            _ => -1,
        };
        let next_ledger = &mut self.next_ledger;
        self.topics.entry(name.as_str().to_string()).or_insert_with(|| {
            *next_ledger += 1;
            Topic {
                ledger_id: *next_ledger,
                partition,
                entries: Vec::new(),
                subscriptions: BTreeMap::new(),
                producers: BTreeMap::new(),
                exclusive_producer: None,
                stats: TopicStats::default(),
            }
        })
    }

    fn refuse_partitioned(&self, name: &TopicName) -> Result<(), Refusal> {
        if self.partitioned.contains_key(name.as_str()) {
            return Err(Refusal::new(
                ServerError::NotAllowedError,
                format!("{name} is a partitioned topic: use its partitions"),
            ));
        }
        Ok(())
    }
}

/// Everything a subscribe carries that the broker needs.
pub(crate) struct SubscribeRequest {
    pub topic: TopicName,
    pub subscription: String,
    pub sub_type: SubType,
    pub initial_position: InitialPosition,
    pub durable: bool,
    pub start_message_id: Option<MessageIdData>,
    pub consumer: ConsumerHandle,
}

/// The shared broker state.
pub(crate) struct Broker {
    state: Mutex<State>,
    /// bumped on every stored entry, so tests can wait for messages without polling
    stored: watch::Sender<u64>,
    /// CONNECTs refused for a wrong or missing token
    auth_refusals: AtomicU64,
    /// connections closed for a frame over the maximum message size
    oversized_frames: AtomicU64,
}

impl Broker {
    /// An empty broker: no topics, no faults.
    pub fn new() -> Self {
        Broker {
            state: Mutex::new(State::default()),
            stored: watch::Sender::new(0),
            auth_refusals: AtomicU64::new(0),
            oversized_frames: AtomicU64::new(0),
        }
    }

    /// A poisoned lock only means a test thread panicked mid-operation; the state is
    /// still the best information available, so keep serving it.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a CONNECT refused for its token, so tests can tell refusal from failure.
    pub fn count_auth_refusal(&self) {
        self.auth_refusals.fetch_add(1, Ordering::Relaxed);
    }

    /// CONNECTs refused so far.
    pub fn auth_refusals(&self) -> u64 {
        self.auth_refusals.load(Ordering::Relaxed)
    }

    /// Counts a connection closed for a frame over the maximum message size.
    pub fn count_oversized_frame(&self) {
        self.oversized_frames.fetch_add(1, Ordering::Relaxed);
    }

    /// Connections closed so far for an oversized frame.
    pub fn oversized_frames(&self) -> u64 {
        self.oversized_frames.load(Ordering::Relaxed)
    }

    /// Notified on every stored entry; lets waiters sleep instead of polling.
    pub fn subscribe_stored(&self) -> watch::Receiver<u64> {
        self.stored.subscribe()
    }

    /// Records partition metadata and creates the partitions, as the admin API would.
    pub fn create_partitioned_topic(&self, name: &TopicName, partitions: u32) {
        let mut state = self.lock();
        state.partitioned.insert(name.as_str().to_string(), partitions);
        for index in 0..partitions {
            state.topic(&name.partition_name(index));
        }
    }

    /// PARTITIONED_METADATA's answer: 0 for a non-partitioned (or unknown) topic.
    pub fn partitions(&self, name: &TopicName) -> u32 {
        self.lock().partitioned.get(name.as_str()).copied().unwrap_or(0)
    }

    /// PRODUCER: names the producer (generating a name when the client has none),
    /// unless a fault refuses producers or the name is connected elsewhere
    /// (ProducerBusy, as a broker answers; the same connection may re-create it), or
    /// exclusive access conflicts: an exclusive producer is refused (ProducerFenced)
    /// while others are connected, others are refused (ProducerBusy) while it is.
    pub fn add_producer(&self, request: ProducerRequest) -> Result<String, Refusal> {
        let ProducerRequest {
            topic,
            name,
            exclusive,
            connection,
            producer_id,
            out,
        } = request;
        let topic = &topic;
        let mut state = self.lock();
        state.refuse_partitioned(topic)?;
        let refused = state
            .faults
            .refuse_producers_until
            .is_some_and(|until| Instant::now() < until);
        if refused {
            state.topic(topic).stats.producers_refused += 1;
            return Err(Refusal::new(
                ServerError::ServiceNotReady,
                "producers are refused for now (injected fault)",
            ));
        }
        let name = match name {
            Some(name) if !name.is_empty() => name,
            _ => {
                state.next_producer += 1;
                format!("standin-0-{}", state.next_producer)
            }
        };
        let t = state.topic(topic);
        if let Some(existing) = t.producers.get(&name) {
            if existing.connection != connection {
                return Err(Refusal::new(
                    ServerError::ProducerBusy,
                    format!("Producer with name '{name}' is already connected to topic {topic}"),
                ));
            }
        }
        if exclusive {
            if let Some(other) = t.producers.keys().find(|n| **n != name) {
                return Err(Refusal::new(
                    ServerError::ProducerFenced,
                    format!("Topic {topic} has an existing producer {other:?}: no exclusive access"),
                ));
            }
            t.exclusive_producer = Some(name.clone());
        } else if let Some(owner) = t.exclusive_producer.as_ref().filter(|o| **o != name) {
            return Err(Refusal::new(
                ServerError::ProducerBusy,
                format!("Topic {topic} has an existing exclusive producer: {owner}"),
            ));
        }
        t.producers.insert(
            name.clone(),
            ProducerReg {
                connection,
                producer_id,
                out,
            },
        );
        t.stats.producers_created += 1;
        Ok(name)
    }

    /// Stores one SEND and dispatches it, unless a fault makes it fail.
    pub fn publish(
        &self,
        topic: &TopicName,
        (connection, producer_id): (u64, u64),
        metadata: MessageMetadata,
        metadata_bytes: Bytes,
        payload: Bytes,
    ) -> Result<MessageIdData, Refusal> {
        let mut state = self.lock();
        if state.faults.failing_sends > 0 {
            state.faults.failing_sends -= 1;
            let error = state.faults.send_error.unwrap_or(ServerError::PersistenceError);
            state.topic(topic).stats.send_errors += 1;
            return Err(Refusal::new(error, "could not store the message (injected fault)"));
        }
        let t = state.topic(topic);
        let registered = t
            .producers
            .values()
            .any(|p| (p.connection, p.producer_id) == (connection, producer_id));
        if !registered {
            // closed by an unload: a broker fails the sends still in flight this way
            t.stats.send_errors += 1;
            return Err(Refusal::new(
                ServerError::PersistenceError,
                "the producer was closed by the broker (topic unloaded)",
            ));
        }
        let entry = StoredEntry {
            topic: topic.as_str().to_string(),
            ledger_id: t.ledger_id,
            entry_id: t.entries.len() as u64,
            partition: t.partition,
            metadata,
            metadata_bytes,
            payload,
        };
        let id = MessageIdData {
            ledger_id: entry.ledger_id,
            entry_id: entry.entry_id,
            partition: Some(entry.partition),
            ..Default::default()
        };
        t.stats.messages_received += entry.num_messages();
        t.stats.entries_received += 1;
        t.stats.bytes_received += entry.payload.len() as u64;
        t.entries.push(Arc::new(entry));
        t.dispatch();
        drop(state);
        self.stored.send_modify(|n| *n += 1);
        Ok(id)
    }

    /// CLOSE_PRODUCER: frees the name.
    pub fn remove_producer(&self, topic: &TopicName, connection: u64, producer_id: u64) {
        if let Some(t) = self.lock().topics.get_mut(topic.as_str()) {
            t.producers
                .retain(|_, p| (p.connection, p.producer_id) != (connection, producer_id));
            t.forget_gone_exclusive();
        }
    }

    /// Counts a SEND refused before reaching storage (bad checksum).
    pub fn count_send_error(&self, topic: &TopicName) {
        self.lock().topic(topic).stats.send_errors += 1;
    }

    /// When receipts for SENDs arriving now may go out (`None`: right away).
    pub fn receipt_release(&self) -> Option<Instant> {
        self.lock()
            .faults
            .hold_receipts_until
            .filter(|until| *until > Instant::now())
    }

    /// SUBSCRIBE: creates the subscription at its initial position if new, then
    /// adds the consumer (ConsumerBusy when its type or exclusivity forbids it).
    pub fn subscribe(&self, request: SubscribeRequest) -> Result<(), Refusal> {
        let mut state = self.lock();
        state.refuse_partitioned(&request.topic)?;
        let topic = state.topic(&request.topic);
        let len = topic.entries.len() as u64;
        let partition = topic.partition;
        let sub = topic
            .subscriptions
            .entry(request.subscription.clone())
            .or_insert_with(|| {
                let start = match (&request.start_message_id, request.initial_position) {
                    // MessageId.earliest is (-1, -1) on the wire
                    (Some(id), _) if id.ledger_id == u64::MAX => 0,
                    (Some(id), _) => id.entry_id.min(len),
                    (None, InitialPosition::Earliest) => 0,
                    (None, InitialPosition::Latest) => len,
                };
                Subscription::new(
                    &request.subscription,
                    request.sub_type,
                    request.durable,
                    partition,
                    start,
                )
            });
        sub.add_consumer(request.consumer, request.sub_type)
            .map_err(|e| Refusal::new(ServerError::ConsumerBusy, e.to_string()))?;
        topic.dispatch();
        Ok(())
    }

    fn with_subscription(
        &self,
        topic: &TopicName,
        subscription: &str,
        f: impl FnOnce(&mut Subscription, &[Arc<StoredEntry>], &mut TopicStats),
    ) {
        let mut state = self.lock();
        let Some(t) = state.topics.get_mut(topic.as_str()) else {
            return;
        };
        if let Some(sub) = t.subscriptions.get_mut(subscription) {
            f(sub, &t.entries, &mut t.stats);
        }
        t.dispatch();
    }

    /// FLOW: more permits for a consumer, then dispatch.
    pub fn flow(&self, topic: &TopicName, sub: &str, connection: u64, consumer_id: u64, permits: u32) {
        self.with_subscription(topic, sub, |s, _, _| s.flow(connection, consumer_id, permits));
    }

    /// ACK, individual or cumulative.
    pub fn ack(&self, topic: &TopicName, sub: &str, ids: &[MessageIdData], cumulative: bool) {
        self.with_subscription(topic, sub, |s, entries, stats| {
            stats.acks_received += ids.len() as u64;
            s.ack(ids, cumulative, entries);
        });
    }

    /// REDELIVER_UNACKNOWLEDGED_MESSAGES, then dispatch.
    pub fn redeliver(&self, topic: &TopicName, sub: &str, connection: u64, consumer_id: u64, ids: &[MessageIdData]) {
        self.with_subscription(topic, sub, |s, _, _| s.redeliver(connection, consumer_id, ids));
    }

    /// CLOSE_CONSUMER: what it held goes to the others; a non-durable (reader)
    /// subscription ends with its last consumer.
    pub fn close_consumer(&self, topic: &TopicName, sub: &str, connection: u64, consumer_id: u64) {
        let mut state = self.lock();
        let Some(t) = state.topics.get_mut(topic.as_str()) else {
            return;
        };
        if let Some(s) = t.subscriptions.get_mut(sub) {
            s.remove_consumer(connection, consumer_id);
            if !s.durable() && !s.has_consumers() {
                t.subscriptions.remove(sub);
            }
        }
        t.dispatch();
    }

    /// UNSUBSCRIBE: deletes the subscription, refused while others are connected.
    pub fn unsubscribe(&self, topic: &TopicName, sub: &str, connection: u64, consumer_id: u64) -> Result<(), Refusal> {
        let mut state = self.lock();
        let Some(t) = state.topics.get_mut(topic.as_str()) else {
            return Ok(());
        };
        if let Some(s) = t.subscriptions.get_mut(sub) {
            s.remove_consumer(connection, consumer_id);
            if s.has_consumers() {
                t.dispatch();
                return Err(Refusal::new(
                    ServerError::UnknownError,
                    format!("subscription {sub:?} has other connected consumers"),
                ));
            }
            t.subscriptions.remove(sub);
        }
        Ok(())
    }

    /// Forgets the producers and consumers of a closed connection; what the consumers
    /// held is redelivered.
    pub fn connection_closed(&self, connection: u64) {
        let mut state = self.lock();
        for t in state.topics.values_mut() {
            t.producers.retain(|_, p| p.connection != connection);
            t.forget_gone_exclusive();
            for s in t.subscriptions.values_mut() {
                s.remove_connection(connection);
            }
            t.subscriptions.retain(|_, s| s.durable() || s.has_consumers());
            t.dispatch();
        }
    }

    /// GET_LAST_MESSAGE_ID's answer.
    pub fn last_message_id(&self, topic: &TopicName) -> MessageIdData {
        let mut state = self.lock();
        let t = state.topic(topic);
        MessageIdData {
            ledger_id: t.ledger_id,
            // -1 on the wire when the topic is empty, as a broker answers
            entry_id: (t.entries.len() as u64).wrapping_sub(1),
            partition: Some(t.partition),
            ..Default::default()
        }
    }

    /// GET_TOPICS_OF_NAMESPACE's answer (used by regex consumers).
    pub fn topics_in_namespace(&self, namespace: &str, persistent: bool, non_persistent: bool) -> Vec<String> {
        self.lock()
            .topics
            .keys()
            .filter(|name| {
                TopicName::parse(name).is_ok_and(|t| t.namespace() == namespace)
                    && ((persistent && name.starts_with("persistent://"))
                        || (non_persistent && name.starts_with("non-persistent://")))
            })
            .cloned()
            .collect()
    }

    // ---- queries and faults for the in-process API ----

    /// The stored topics named by `name`: the partitions of a partitioned topic, else itself.
    fn resolve(state: &State, name: &TopicName) -> Vec<String> {
        match state.partitioned.get(name.as_str()) {
            Some(n) => (0..*n).map(|i| name.partition_name(i).as_str().to_string()).collect(),
            None => vec![name.as_str().to_string()],
        }
    }

    /// Every topic (partition) that exists.
    pub fn topics(&self) -> Vec<String> {
        self.lock().topics.keys().cloned().collect()
    }

    /// Stored entries, partition by partition for a partitioned topic.
    pub fn entries(&self, name: &TopicName) -> Vec<Arc<StoredEntry>> {
        let state = self.lock();
        Self::resolve(&state, name)
            .iter()
            .filter_map(|t| state.topics.get(t))
            .flat_map(|t| t.entries.iter().cloned())
            .collect()
    }

    /// Messages stored (batches counted by their messages).
    pub fn message_count(&self, name: &TopicName) -> u64 {
        let state = self.lock();
        Self::resolve(&state, name)
            .iter()
            .filter_map(|t| state.topics.get(t))
            .map(|t| t.stats.messages_received)
            .sum()
    }

    /// Counters, summed over partitions.
    pub fn stats(&self, name: &TopicName) -> TopicStats {
        let state = self.lock();
        let mut sum = TopicStats::default();
        for t in Self::resolve(&state, name).iter().filter_map(|t| state.topics.get(t)) {
            let s = t.stats;
            sum.messages_received += s.messages_received;
            sum.entries_received += s.entries_received;
            sum.bytes_received += s.bytes_received;
            sum.send_errors += s.send_errors;
            sum.producers_created += s.producers_created;
            sum.producers_refused += s.producers_refused;
            sum.entries_dispatched += s.entries_dispatched;
            sum.acks_received += s.acks_received;
            sum.unloads += s.unloads;
        }
        sum
    }

    /// Entries not acknowledged on a subscription, summed over partitions.
    pub fn backlog(&self, name: &TopicName, subscription: &str) -> Option<u64> {
        let state = self.lock();
        let mut found = None;
        for t in Self::resolve(&state, name).iter().filter_map(|t| state.topics.get(t)) {
            if let Some(s) = t.subscriptions.get(subscription) {
                *found.get_or_insert(0) += s.backlog(t.entries.len() as u64);
            }
        }
        found
    }

    /// Fault: closes every producer and consumer of a topic (all partitions) with
    /// CLOSE_PRODUCER / CLOSE_CONSUMER, as a broker unloading the topic does.
    pub fn unload(&self, name: &TopicName) {
        let mut state = self.lock();
        for topic in Self::resolve(&state, name) {
            let Some(t) = state.topics.get_mut(&topic) else {
                continue;
            };
            for p in std::mem::take(&mut t.producers).into_values() {
                let _ = p.out.send(OutFrame::command(BaseCommand {
                    r#type: Type::CloseProducer as i32,
                    close_producer: Some(CommandCloseProducer {
                        producer_id: p.producer_id,
                        // -1 on the wire: not an answer to a client request
                        request_id: u64::MAX,
                    }),
                    ..Default::default()
                }));
            }
            t.exclusive_producer = None;
            for s in t.subscriptions.values_mut() {
                s.close_all_consumers();
            }
            t.subscriptions.retain(|_, s| s.durable());
            t.stats.unloads += 1;
        }
    }

    /// Fault: PRODUCER answered ServiceNotReady until `until`.
    pub fn refuse_producers_until(&self, until: Instant) {
        self.lock().faults.refuse_producers_until = Some(until);
    }

    /// Fault: the next `n` SENDs answered SEND_ERROR(`error`), not stored.
    pub fn fail_next_sends(&self, n: usize, error: ServerError) {
        let mut state = self.lock();
        state.faults.failing_sends = n;
        state.faults.send_error = Some(error);
    }

    /// Fault: receipts of SENDs stored before `until` are held until then.
    pub fn hold_receipts_until(&self, until: Instant) {
        self.lock().faults.hold_receipts_until = Some(until);
    }
}
