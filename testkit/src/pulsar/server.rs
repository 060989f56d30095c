//! The stand-in as tests and the binary see it: start it, point a `pulsar` client at
//! [`PulsarStandin::url`], read back what was stored, inject faults, shut it down.
//! Owns the listener and one task per connection; every task is tracked and awaited
//! by [`PulsarStandin::shutdown`].

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pulsar::proto::ServerError;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use super::broker::{Broker, TopicStats};
use super::config::PulsarStandinConfig;
use super::connection::{self, ConnectionContext};
use super::payload::{PayloadError, StoredEntry, StoredMessage};
use super::topic::{TopicName, TopicNameError};

/// Errors of the in-process API.
#[derive(Debug, thiserror::Error)]
pub enum StandinError {
    /// The topic name is not one a broker accepts.
    #[error(transparent)]
    InvalidTopic(#[from] TopicNameError),
    /// Fewer messages than wanted arrived before the deadline.
    #[error("topic {topic}: {got} of {wanted} messages after {waited:?}")]
    Timeout {
        /// topic waited on
        topic: String,
        /// messages wanted
        wanted: usize,
        /// messages stored when the deadline passed
        got: u64,
        /// how long it waited
        waited: Duration,
    },
    /// A stored entry does not decode: the producer sent something broken.
    #[error(transparent)]
    Payload(#[from] PayloadError),
}

/// Live connections, so they can be dropped on demand and counted.
struct Connections {
    tokens: Mutex<HashMap<u64, CancellationToken>>,
    count: watch::Sender<usize>,
    next_id: AtomicU64,
}

impl Connections {
    fn tokens(&self) -> std::sync::MutexGuard<'_, HashMap<u64, CancellationToken>> {
        self.tokens.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn register(&self, token: CancellationToken) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut tokens = self.tokens();
        tokens.insert(id, token);
        self.count.send_replace(tokens.len());
        id
    }

    fn unregister(&self, id: u64) {
        let mut tokens = self.tokens();
        tokens.remove(&id);
        self.count.send_replace(tokens.len());
    }

    fn drop_all(&self) {
        for token in self.tokens().values() {
            token.cancel();
        }
    }
}

/// What the accept loop hands every connection.
#[derive(Clone)]
struct Shared {
    broker: Arc<Broker>,
    config: Arc<PulsarStandinConfig>,
    connections: Arc<Connections>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

struct Listening {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

/// A Pulsar broker stand-in listening on a local port.
pub struct PulsarStandin {
    shared: Shared,
    addr: SocketAddr,
    listening: tokio::sync::Mutex<Option<Listening>>,
}

impl PulsarStandin {
    /// Binds `config.bind` and starts accepting clients.
    pub async fn start(config: PulsarStandinConfig) -> io::Result<Self> {
        let listener = bind(config.bind)?;
        let addr = listener.local_addr()?;
        let shared = Shared {
            broker: Arc::new(Broker::new()),
            config: Arc::new(config),
            connections: Arc::new(Connections {
                tokens: Mutex::new(HashMap::new()),
                count: watch::Sender::new(0),
                next_id: AtomicU64::new(1),
            }),
            tracker: TaskTracker::new(),
            shutdown: CancellationToken::new(),
        };
        let listening = spawn_listener(listener, &shared);
        info!(%addr, auth = shared.config.token.is_some(), "pulsar stand-in listening");
        Ok(PulsarStandin {
            shared,
            addr,
            listening: tokio::sync::Mutex::new(Some(listening)),
        })
    }

    /// The address the stand-in listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The service URL to give a client: `pulsar://host:port`.
    pub fn url(&self) -> String {
        format!("pulsar://{}", self.addr)
    }

    /// Declares a partitioned topic, as `pulsar-admin topics create-partitioned-topic`
    /// would; otherwise topics are created non-partitioned on first use.
    pub fn create_partitioned_topic(&self, topic: &str, partitions: u32) {
        match TopicName::parse(topic) {
            Ok(name) => self.shared.broker.create_partitioned_topic(&name, partitions),
            Err(e) => warn!(error = %e, "partitioned topic not created"),
        }
    }

    /// Every topic (partition) that exists, fully qualified.
    pub fn topics(&self) -> Vec<String> {
        self.shared.broker.topics()
    }

    /// Entries as sent (metadata and payload, compressed and batched as the producer
    /// did). A partitioned topic's name gives its partitions' entries, partition by
    /// partition. Short names are expanded; an invalid name has no entries.
    pub fn entries(&self, topic: &str) -> Vec<StoredEntry> {
        match TopicName::parse(topic) {
            Ok(name) => self
                .shared
                .broker
                .entries(&name)
                .iter()
                .map(|e| StoredEntry::clone(e))
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Messages as an application would read them: entries decompressed and batches
    /// split, in storage order. Use [`Self::try_messages`] to see decoding errors;
    /// here an undecodable entry is logged and skipped.
    pub fn messages(&self, topic: &str) -> Vec<StoredMessage> {
        let mut out = Vec::new();
        for entry in self.entries(topic) {
            match entry.decode() {
                Ok(messages) => out.extend(messages),
                Err(e) => warn!(topic, error = %e, "stored entry does not decode"),
            }
        }
        out
    }

    /// Like [`Self::messages`], failing on the first entry that does not decode.
    pub fn try_messages(&self, topic: &str) -> Result<Vec<StoredMessage>, StandinError> {
        let name = TopicName::parse(topic)?;
        let mut out = Vec::new();
        for entry in self.shared.broker.entries(&name) {
            out.extend(entry.decode()?);
        }
        Ok(out)
    }

    /// Waits until `topic` holds at least `n` messages, then returns them all
    /// (decoded); fails with [`StandinError::Timeout`] after `timeout`.
    pub async fn wait_for_messages(
        &self,
        topic: &str,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<StoredMessage>, StandinError> {
        let name = TopicName::parse(topic)?;
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + timeout;
        let mut stored = self.shared.broker.subscribe_stored();
        loop {
            stored.borrow_and_update();
            let got = self.shared.broker.message_count(&name);
            if got >= n as u64 {
                return self.try_messages(topic);
            }
            match tokio::time::timeout_at(deadline, stored.changed()).await {
                Ok(Ok(())) => continue,
                // the sender lives as long as the broker, which we hold: only the deadline ends this
                _ => {
                    return Err(StandinError::Timeout {
                        topic: name.as_str().to_string(),
                        wanted: n,
                        got: self.shared.broker.message_count(&name),
                        waited: started.elapsed(),
                    })
                }
            }
        }
    }

    /// Counters for a topic (a partitioned topic sums its partitions).
    pub fn stats(&self, topic: &str) -> TopicStats {
        match TopicName::parse(topic) {
            Ok(name) => self.shared.broker.stats(&name),
            Err(_) => TopicStats::default(),
        }
    }

    /// Entries of `topic` not yet acknowledged on `subscription` (`None`: no such
    /// subscription).
    pub fn backlog(&self, topic: &str, subscription: &str) -> Option<u64> {
        let name = TopicName::parse(topic).ok()?;
        self.shared.broker.backlog(&name, subscription)
    }

    /// CONNECTs refused because of a wrong or missing token.
    pub fn auth_refusals(&self) -> u64 {
        self.shared.broker.auth_refusals()
    }

    /// Connections closed because a frame exceeded `max_message_size` plus the
    /// broker's 10 KiB frame padding (see [`PulsarStandinConfig::max_message_size`]).
    pub fn oversized_frames(&self) -> u64 {
        self.shared.broker.oversized_frames()
    }

    /// Client connections currently open.
    pub fn connections(&self) -> usize {
        *self.shared.connections.count.borrow()
    }

    // ---- faults ----

    /// Closes every client connection now, as a broker restart would. Clients
    /// reconnect; producers resend what had no receipt.
    pub fn drop_connections(&self) {
        warn!("dropping all client connections (injected fault)");
        self.shared.connections.drop_all();
    }

    /// Answers PRODUCER with ServiceNotReady for `d`; clients retry after their
    /// operation retry delay.
    pub fn refuse_producers_for(&self, d: Duration) {
        self.shared.broker.refuse_producers_until(Instant::now() + d);
    }

    /// Answers the next `n` SENDs with SEND_ERROR(PersistenceError), without storing
    /// them, as a broker does when it cannot write; the `pulsar` client then
    /// re-creates its producer and resends.
    pub fn fail_next_sends(&self, n: usize) {
        self.fail_next_sends_with(n, ServerError::PersistenceError);
    }

    /// Answers the next `n` SENDs with SEND_ERROR(`error`), without storing them. With
    /// an error other than PersistenceError the `pulsar` client fails the send.
    pub fn fail_next_sends_with(&self, n: usize, error: ServerError) {
        self.shared.broker.fail_next_sends(n, error);
    }

    /// Stores SENDs arriving within `d` at once but holds their receipts until `d`
    /// has passed (a slow bookie). A client whose operation timeout is shorter sees
    /// a timeout for messages that were in fact stored.
    pub fn hold_receipts_for(&self, d: Duration) {
        self.shared.broker.hold_receipts_until(Instant::now() + d);
    }

    /// Closes every producer and consumer of `topic` (all its partitions) with
    /// CLOSE_PRODUCER / CLOSE_CONSUMER, as a broker unloading the topic does; the
    /// `pulsar` client re-creates them and resends what had no receipt. Not one of
    /// the faults the stand-in was asked for, but the one a broker causes most often.
    pub fn unload_topic(&self, topic: &str) {
        match TopicName::parse(topic) {
            Ok(name) => {
                warn!(topic = %name, "unloading topic (injected fault)");
                self.shared.broker.unload(&name);
            }
            Err(e) => warn!(error = %e, "topic not unloaded"),
        }
    }

    /// Stops listening and drops every connection: clients get "connection refused"
    /// until [`Self::come_back`].
    pub async fn go_unreachable(&self) {
        if let Some(listening) = self.listening.lock().await.take() {
            listening.stop.cancel();
            let _ = listening.task.await;
        }
        self.shared.connections.drop_all();
        let mut count = self.shared.connections.count.subscribe();
        // connections end as soon as they see the cancellation; bound the wait anyway
        let _ = tokio::time::timeout(Duration::from_secs(5), count.wait_for(|n| *n == 0)).await;
        warn!(addr = %self.addr, "stand-in unreachable (injected fault)");
    }

    /// Listens again on the same port after [`Self::go_unreachable`]; logs if the
    /// port cannot be bound (see [`Self::try_come_back`]).
    pub async fn come_back(&self) {
        if let Err(e) = self.try_come_back().await {
            warn!(addr = %self.addr, error = %e, "stand-in could not listen again");
        }
    }

    /// Listens again on the same port; no-op when already listening.
    pub async fn try_come_back(&self) -> io::Result<()> {
        let mut listening = self.listening.lock().await;
        if listening.is_none() {
            let listener = bind(self.addr)?;
            *listening = Some(spawn_listener(listener, &self.shared));
            info!(addr = %self.addr, "stand-in reachable again");
        }
        Ok(())
    }

    /// Stops listening, closes every connection and waits for all tasks to end.
    pub async fn shutdown(self) {
        self.shared.shutdown.cancel();
        self.shared.tracker.close();
        self.shared.tracker.wait().await;
        info!(addr = %self.addr, "pulsar stand-in stopped");
    }
}

impl Drop for PulsarStandin {
    /// A test that forgets [`PulsarStandin::shutdown`] still stops the tasks.
    fn drop(&mut self) {
        self.shared.shutdown.cancel();
    }
}

/// Binds with SO_REUSEADDR so that the port can be bound again right after
/// [`PulsarStandin::go_unreachable`], despite connections in TIME_WAIT.
fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

fn spawn_listener(listener: TcpListener, shared: &Shared) -> Listening {
    let stop = shared.shutdown.child_token();
    let task = shared
        .tracker
        .spawn(accept_loop(listener, shared.clone(), stop.clone()));
    Listening { stop, task }
}

async fn accept_loop(listener: TcpListener, shared: Shared, stop: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // e.g. out of file descriptors: back off instead of spinning
                warn!(error = %e, "accept failed");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(50)) => continue,
                }
            }
        };
        let cancel = shared.shutdown.child_token();
        let id = shared.connections.register(cancel.clone());
        let ctx = ConnectionContext {
            id,
            broker: shared.broker.clone(),
            config: shared.config.clone(),
            cancel,
        };
        let connections = shared.connections.clone();
        shared.tracker.spawn(async move {
            if let Err(e) = connection::serve(stream, ctx).await {
                warn!(connection = id, %peer, error = %e, "connection ended with an error");
            }
            connections.unregister(id);
        });
    }
}
