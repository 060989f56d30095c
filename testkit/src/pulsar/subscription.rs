//! A subscription's cursor and dispatcher: which entries are acknowledged, which are
//! out with which consumer, which must be redelivered, and which consumer gets the
//! next entry (exclusive, failover, shared round-robin, key_shared by key hash),
//! within the permits each consumer granted with FLOW. Sits under the broker state,
//! which calls it with the topic's entries under its lock.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use pulsar::proto::{
    base_command::Type, command_subscribe::SubType, BaseCommand, CommandActiveConsumerChange, CommandCloseConsumer,
    CommandMessage, MessageIdData,
};
use tokio::sync::mpsc::UnboundedSender;

use super::frame::{OutFrame, OutPayload};
use super::payload::StoredEntry;

/// Where a connection's outgoing frames go.
pub(crate) type Outbound = UnboundedSender<OutFrame>;

/// A consumer as the dispatcher knows it.
pub(crate) struct ConsumerHandle {
    pub connection: u64,
    pub consumer_id: u64,
    pub name: String,
    pub priority: i32,
    /// messages the consumer still accepts; batches may drive it negative
    pub permits: i64,
    pub out: Outbound,
}

impl ConsumerHandle {
    fn key(&self) -> (u64, u64) {
        (self.connection, self.consumer_id)
    }

    fn send(&self, command: BaseCommand, payload: Option<OutPayload>) {
        // A closed channel means the connection is going away; its cleanup puts the
        // consumer's entries back for redelivery.
        let _ = self.out.send(OutFrame { command, payload });
    }
}

#[derive(Debug)]
enum AckState {
    /// some batch indexes acknowledged
    Partial(BTreeSet<i32>),
    Full,
}

/// Why a consumer cannot join a subscription (answered as ConsumerBusy).
#[derive(Debug, thiserror::Error)]
pub(crate) enum JoinError {
    #[error("exclusive subscription {0:?} already has a consumer")]
    ExclusiveTaken(String),
    #[error("subscription {name:?} is {existing:?}, a {requested:?} consumer cannot join")]
    TypeMismatch {
        name: String,
        existing: SubType,
        requested: SubType,
    },
}

/// One subscription on one topic (partition).
pub(crate) struct Subscription {
    name: String,
    sub_type: SubType,
    durable: bool,
    partition: i32,
    consumers: Vec<ConsumerHandle>,
    /// next entry never dispatched yet
    read_position: u64,
    /// entries below are all acknowledged
    mark_delete: u64,
    acks: BTreeMap<u64, AckState>,
    /// dispatched, not acknowledged, by entry: the consumer holding it
    pending: BTreeMap<u64, (u64, u64)>,
    /// to dispatch again, before new entries
    redeliver: BTreeSet<u64>,
    redelivery_counts: HashMap<u64, u32>,
    round_robin: usize,
    /// failover: the active consumer
    active: Option<(u64, u64)>,
}

impl Subscription {
    /// A subscription whose cursor starts at `start` (0 = earliest, entry count = latest).
    pub fn new(name: &str, sub_type: SubType, durable: bool, partition: i32, start: u64) -> Self {
        Subscription {
            name: name.to_string(),
            sub_type,
            durable,
            partition,
            consumers: Vec::new(),
            read_position: start,
            mark_delete: start,
            acks: BTreeMap::new(),
            pending: BTreeMap::new(),
            redeliver: BTreeSet::new(),
            redelivery_counts: HashMap::new(),
            round_robin: 0,
            active: None,
        }
    }

    /// Whether the subscription outlives its consumers (false for readers).
    pub fn durable(&self) -> bool {
        self.durable
    }

    /// Whether any consumer is attached.
    pub fn has_consumers(&self) -> bool {
        !self.consumers.is_empty()
    }

    /// Entries not acknowledged yet.
    pub fn backlog(&self, entries: u64) -> u64 {
        let acked_above = self
            .acks
            .iter()
            .filter(|(id, state)| **id >= self.mark_delete && matches!(state, AckState::Full))
            .count() as u64;
        entries.saturating_sub(self.mark_delete) - acked_above
    }

    /// Attaches a consumer; the first one of an empty subscription sets its type.
    pub fn add_consumer(&mut self, consumer: ConsumerHandle, sub_type: SubType) -> Result<(), JoinError> {
        if self.consumers.iter().any(|c| c.key() == consumer.key()) {
            return Ok(()); // a retried SUBSCRIBE for a consumer already attached
        }
        if self.consumers.is_empty() {
            self.sub_type = sub_type;
        } else if self.sub_type != sub_type {
            return Err(JoinError::TypeMismatch {
                name: self.name.clone(),
                existing: self.sub_type,
                requested: sub_type,
            });
        } else if sub_type == SubType::Exclusive {
            return Err(JoinError::ExclusiveTaken(self.name.clone()));
        }
        self.consumers.push(consumer);
        self.update_active();
        Ok(())
    }

    /// Removes a consumer and puts what it held back for redelivery.
    pub fn remove_consumer(&mut self, connection: u64, consumer_id: u64) -> bool {
        let before = self.consumers.len();
        self.consumers.retain(|c| c.key() != (connection, consumer_id));
        if self.consumers.len() == before {
            return false;
        }
        self.requeue(|owner| owner == (connection, consumer_id));
        self.update_active();
        true
    }

    /// Closes every consumer with CLOSE_CONSUMER (a topic unload); what they held is
    /// redelivered when they come back.
    pub fn close_all_consumers(&mut self) {
        let consumers: Vec<(u64, u64)> = self.consumers.iter().map(|c| c.key()).collect();
        for c in &self.consumers {
            c.send(
                BaseCommand {
                    r#type: Type::CloseConsumer as i32,
                    close_consumer: Some(CommandCloseConsumer {
                        consumer_id: c.consumer_id,
                        // -1 on the wire: not an answer to a client request
                        request_id: u64::MAX,
                    }),
                    ..Default::default()
                },
                None,
            );
        }
        for (connection, consumer_id) in consumers {
            self.remove_consumer(connection, consumer_id);
        }
    }

    /// Removes every consumer of a closed connection.
    pub fn remove_connection(&mut self, connection: u64) {
        let ids: Vec<u64> = self
            .consumers
            .iter()
            .filter(|c| c.connection == connection)
            .map(|c| c.consumer_id)
            .collect();
        for id in ids {
            self.remove_consumer(connection, id);
        }
    }

    /// Adds permits granted by FLOW.
    pub fn flow(&mut self, connection: u64, consumer_id: u64, permits: u32) {
        if let Some(c) = self.consumers.iter_mut().find(|c| c.key() == (connection, consumer_id)) {
            c.permits += i64::from(permits);
        }
    }

    /// Applies an ACK: whole entries, batch indexes of an entry, or everything up to
    /// an id (cumulative).
    pub fn ack(&mut self, ids: &[MessageIdData], cumulative: bool, entries: &[Arc<StoredEntry>]) {
        for id in ids {
            let Some(entry) = entries.get(id.entry_id as usize) else {
                continue;
            };
            let batch = entry.metadata.num_messages_in_batch.map(|n| n.max(1));
            if cumulative {
                for below in self.mark_delete..id.entry_id {
                    self.acks.insert(below, AckState::Full);
                    self.pending.remove(&below);
                }
            }
            let indexes: Vec<i32> = match (batch, id.batch_index) {
                (Some(_), Some(index)) if cumulative => (0..=index).collect(),
                (Some(_), Some(index)) => vec![index],
                _ => Vec::new(),
            };
            let full = match (batch, self.acks.remove(&id.entry_id)) {
                (_, Some(AckState::Full)) => true,
                (Some(n), previous) if !indexes.is_empty() => {
                    let mut set = match previous {
                        Some(AckState::Partial(set)) => set,
                        _ => BTreeSet::new(),
                    };
                    set.extend(indexes);
                    if set.len() as i32 >= n {
                        true
                    } else {
                        self.acks.insert(id.entry_id, AckState::Partial(set));
                        false
                    }
                }
                _ => true,
            };
            if full {
                self.acks.insert(id.entry_id, AckState::Full);
                self.pending.remove(&id.entry_id);
                self.redeliver.remove(&id.entry_id);
            }
        }
        while matches!(self.acks.get(&self.mark_delete), Some(AckState::Full)) {
            self.acks.remove(&self.mark_delete);
            self.mark_delete += 1;
        }
        self.read_position = self.read_position.max(self.mark_delete);
    }

    /// REDELIVER_UNACKNOWLEDGED_MESSAGES: the given entries (shared types), or all the
    /// consumer holds.
    pub fn redeliver(&mut self, connection: u64, consumer_id: u64, ids: &[MessageIdData]) {
        let owner = (connection, consumer_id);
        let shared = matches!(self.sub_type, SubType::Shared | SubType::KeyShared);
        if shared && !ids.is_empty() {
            let wanted: BTreeSet<u64> = ids.iter().map(|id| id.entry_id).collect();
            let chosen: Vec<u64> = self
                .pending
                .iter()
                .filter(|(id, o)| **o == owner && wanted.contains(id))
                .map(|(id, _)| *id)
                .collect();
            for id in chosen {
                self.pending.remove(&id);
                self.queue_redelivery(id);
            }
        } else {
            self.requeue(|o| o == owner);
        }
    }

    fn requeue(&mut self, owned_by: impl Fn((u64, u64)) -> bool) {
        let ids: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, owner)| owned_by(**owner))
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.pending.remove(&id);
            self.queue_redelivery(id);
        }
    }

    fn queue_redelivery(&mut self, id: u64) {
        *self.redelivery_counts.entry(id).or_insert(0) += 1;
        self.redeliver.insert(id);
    }

    fn is_acked(&self, id: u64) -> bool {
        id < self.mark_delete || matches!(self.acks.get(&id), Some(AckState::Full))
    }

    /// Failover: the active consumer is the first by (priority, name), shifted by the
    /// partition index so partitions spread over consumers. Tells every consumer
    /// whether it is active, and takes back what a deposed consumer held.
    fn update_active(&mut self) {
        if self.sub_type != SubType::Failover {
            self.active = None;
            return;
        }
        let mut order: Vec<&ConsumerHandle> = self.consumers.iter().collect();
        order.sort_by(|a, b| (a.priority, &a.name).cmp(&(b.priority, &b.name)));
        let active = (!order.is_empty()).then(|| order[self.partition.max(0) as usize % order.len()].key());
        if active == self.active {
            return;
        }
        if let Some(previous) = self.active {
            self.requeue(|owner| owner == previous);
        }
        self.active = active;
        for c in &self.consumers {
            c.send(
                BaseCommand {
                    r#type: Type::ActiveConsumerChange as i32,
                    active_consumer_change: Some(CommandActiveConsumerChange {
                        consumer_id: c.consumer_id,
                        is_active: Some(Some(c.key()) == active),
                    }),
                    ..Default::default()
                },
                None,
            );
        }
    }

    fn pick(&mut self, entry: &StoredEntry) -> Option<usize> {
        let n = self.consumers.len();
        if n == 0 {
            return None;
        }
        let index = match self.sub_type {
            SubType::Exclusive => 0,
            SubType::Failover => {
                let active = self.active?;
                self.consumers.iter().position(|c| c.key() == active)?
            }
            SubType::Shared => {
                let found = (0..n)
                    .map(|k| (self.round_robin + k) % n)
                    .find(|i| self.consumers[*i].permits > 0)?;
                self.round_robin = found + 1;
                found
            }
            // Hash ranges split evenly over the consumers in join order. An entry
            // whose consumer has no permits blocks the ones behind it, which keeps
            // each key in order.
            SubType::KeyShared => {
                let hash = crc32c::crc32c(&entry.sticky_key()) as usize % 65536;
                hash * n / 65536
            }
        };
        (self.consumers[index].permits > 0).then_some(index)
    }

    /// Sends entries to consumers while they have permits: redeliveries first, then
    /// new entries in order. Returns how many entries went out.
    pub fn dispatch(&mut self, entries: &[Arc<StoredEntry>]) -> u64 {
        let mut sent = 0;
        loop {
            let (id, redelivery) = match self.next_entry(entries.len() as u64) {
                Some(next) => next,
                None => return sent,
            };
            let entry = &entries[id as usize];
            let Some(index) = self.pick(entry) else {
                return sent;
            };
            let consumer = &mut self.consumers[index];
            consumer.permits -= entry.num_messages() as i64;
            let redelivery_count = self.redelivery_counts.get(&id).copied().unwrap_or(0);
            consumer.send(
                BaseCommand {
                    r#type: Type::Message as i32,
                    message: Some(CommandMessage {
                        consumer_id: consumer.consumer_id,
                        message_id: MessageIdData {
                            ledger_id: entry.ledger_id,
                            entry_id: entry.entry_id,
                            partition: Some(entry.partition),
                            ..Default::default()
                        },
                        redelivery_count: Some(redelivery_count),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                Some(OutPayload {
                    metadata_bytes: entry.metadata_bytes.clone(),
                    data: entry.payload.clone(),
                }),
            );
            let owner = consumer.key();
            self.pending.insert(id, owner);
            if redelivery {
                self.redeliver.remove(&id);
            } else {
                self.read_position += 1;
            }
            sent += 1;
        }
    }

    fn next_entry(&mut self, len: u64) -> Option<(u64, bool)> {
        while let Some(&id) = self.redeliver.first() {
            if self.is_acked(id) || self.pending.contains_key(&id) || id >= len {
                self.redeliver.remove(&id);
                continue;
            }
            return Some((id, true));
        }
        while self.read_position < len && self.is_acked(self.read_position) {
            self.read_position += 1;
        }
        (self.read_position < len).then_some((self.read_position, false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use pulsar::proto::MessageMetadata;
    use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

    fn entries(batches: &[Option<i32>]) -> Vec<Arc<StoredEntry>> {
        batches
            .iter()
            .enumerate()
            .map(|(i, batch)| {
                Arc::new(StoredEntry {
                    topic: "persistent://public/default/t".into(),
                    ledger_id: 1,
                    entry_id: i as u64,
                    partition: -1,
                    metadata: MessageMetadata {
                        num_messages_in_batch: *batch,
                        ..Default::default()
                    },
                    metadata_bytes: Bytes::new(),
                    payload: Bytes::new(),
                })
            })
            .collect()
    }

    fn consumer(id: u64, permits: i64) -> (ConsumerHandle, UnboundedReceiver<OutFrame>) {
        let (out, rx) = unbounded_channel();
        let handle = ConsumerHandle {
            connection: 1,
            consumer_id: id,
            name: format!("c{id}"),
            priority: 0,
            permits,
            out,
        };
        (handle, rx)
    }

    fn delivered(rx: &mut UnboundedReceiver<OutFrame>) -> Vec<(u64, u32)> {
        let mut ids = Vec::new();
        while let Ok(frame) = rx.try_recv() {
            if let Some(m) = frame.command.message {
                ids.push((m.message_id.entry_id, m.redelivery_count.unwrap_or(0)));
            }
        }
        ids
    }

    fn id(entry_id: u64, batch_index: Option<i32>) -> MessageIdData {
        MessageIdData {
            ledger_id: 1,
            entry_id,
            batch_index,
            ..Default::default()
        }
    }

    #[test]
    fn dispatch_stops_when_permits_run_out_and_resumes_with_flow() {
        let entries = entries(&[None, Some(3), None]);
        let mut sub = Subscription::new("s", SubType::Exclusive, true, -1, 0);
        let (c, mut rx) = consumer(1, 2);
        sub.add_consumer(c, SubType::Exclusive).unwrap();
        // one message, then a batch of three drives the permits negative
        assert_eq!(sub.dispatch(&entries), 2);
        assert_eq!(delivered(&mut rx), [(0, 0), (1, 0)]);
        sub.flow(1, 1, 1);
        assert_eq!(sub.dispatch(&entries), 0, "still owes two permits");
        sub.flow(1, 1, 5);
        assert_eq!(sub.dispatch(&entries), 1);
        assert_eq!(delivered(&mut rx), [(2, 0)]);
    }

    #[test]
    fn a_batch_is_acknowledged_when_every_index_is() {
        let entries = entries(&[Some(3), None]);
        let mut sub = Subscription::new("s", SubType::Shared, true, -1, 0);
        let (c, _rx) = consumer(1, 100);
        sub.add_consumer(c, SubType::Shared).unwrap();
        sub.dispatch(&entries);
        sub.ack(&[id(0, Some(0)), id(0, Some(2))], false, &entries);
        assert_eq!(sub.backlog(2), 2);
        sub.ack(&[id(1, None)], false, &entries);
        assert_eq!(sub.backlog(2), 1);
        sub.ack(&[id(0, Some(1))], false, &entries);
        assert_eq!(sub.backlog(2), 0);
    }

    #[test]
    fn closing_a_consumer_redelivers_what_it_held_to_the_next() {
        let entries = entries(&[None, None, None]);
        let mut sub = Subscription::new("s", SubType::Failover, true, -1, 0);
        let (a, mut rx_a) = consumer(1, 100);
        let (b, mut rx_b) = consumer(2, 100);
        sub.add_consumer(a, SubType::Failover).unwrap();
        sub.add_consumer(b, SubType::Failover).unwrap();
        sub.dispatch(&entries);
        assert_eq!(delivered(&mut rx_a), [(0, 0), (1, 0), (2, 0)]);
        assert_eq!(delivered(&mut rx_b), []);
        sub.ack(&[id(0, None)], true, &entries);
        assert!(sub.remove_consumer(1, 1));
        sub.dispatch(&entries);
        assert_eq!(delivered(&mut rx_b), [(1, 1), (2, 1)]);
    }

    #[test]
    fn exclusive_and_type_mismatch_are_refused() {
        let mut sub = Subscription::new("s", SubType::Exclusive, true, -1, 0);
        sub.add_consumer(consumer(1, 0).0, SubType::Exclusive).unwrap();
        assert!(matches!(
            sub.add_consumer(consumer(2, 0).0, SubType::Exclusive),
            Err(JoinError::ExclusiveTaken(_))
        ));
        assert!(matches!(
            sub.add_consumer(consumer(3, 0).0, SubType::Shared),
            Err(JoinError::TypeMismatch { .. })
        ));
    }
}
