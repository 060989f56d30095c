//! The listening server: accepts TCP connections, runs each in its own tracked task,
//! and offers the knobs tests and benchmarks need (request count, the longest request,
//! fault injection, orderly shutdown).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use super::connection;
use super::tls::TlsSettings;
use crate::mssql::types::Backend;

/// How the stand-in listens and what it tells clients.
#[derive(Debug, Clone)]
pub struct MssqlServerConfig {
    /// Address to listen on; port 0 picks a free one (see [`MssqlServer::addr`]).
    pub bind: SocketAddr,
    /// Packet size used until login and when the client asks for the server default;
    /// a client's LOGIN7 request (512..=32767) wins, as with SQL Server.
    pub packet_size: u32,
    /// Certificate for encryption; `None` answers ENCRYPT_NOT_SUP like a server
    /// without TLS, so clients that require encryption refuse to connect.
    pub tls: Option<TlsSettings>,
    /// The server name in ERROR and INFO tokens; keep it equal to the engine's
    /// `@@SERVERNAME` (the engine's default is `TESTKIT-MSSQL`, as is this one).
    pub server_name: String,
}

impl Default for MssqlServerConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            packet_size: 4096,
            tls: None,
            server_name: "TESTKIT-MSSQL".to_string(),
        }
    }
}

/// State every connection task shares.
pub(crate) struct Shared<B> {
    pub(crate) backend: Arc<B>,
    pub(crate) config: MssqlServerConfig,
    pub(crate) tls: Option<tokio_rustls::TlsAcceptor>,
    pub(crate) requests: Arc<AtomicU64>,
    pub(crate) request_stats: Arc<RequestStats>,
    pub(crate) next_transaction: AtomicU64,
}

/// How long the backend took to execute requests (a SQL batch, one RPC call, a
/// transaction manager request), from the request decoded to its outcomes built, not
/// counting writing them to the client: the longest and how many, since start or the
/// last [`MssqlServer::reset_request_stats`]. Two relaxed atomics per request.
#[derive(Debug, Default)]
pub(crate) struct RequestStats {
    longest_nanos: AtomicU64,
    executions: AtomicU64,
}

impl RequestStats {
    pub(crate) fn record(&self, took: Duration) {
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.longest_nanos.fetch_max(nanos, Ordering::Relaxed);
        self.executions.fetch_add(1, Ordering::Relaxed);
    }
}

/// Counters and switches the handle shares with the accept loop.
#[derive(Debug)]
struct Control {
    requests: Arc<AtomicU64>,
    request_stats: Arc<RequestStats>,
    /// Cancelled by [`MssqlServer::drop_connections`]; connections hold the token
    /// current when they were accepted, later ones get a fresh one.
    drop_generation: Mutex<CancellationToken>,
}

impl Control {
    fn current_generation(&self) -> CancellationToken {
        self.drop_generation
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// A running TDS 7.4 server in front of a [`Backend`].
#[derive(Debug)]
pub struct MssqlServer {
    addr: SocketAddr,
    control: Arc<Control>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

impl MssqlServer {
    /// Binds, then accepts connections in the background until [`Self::shutdown`].
    pub async fn start<B: Backend>(backend: Arc<B>, config: MssqlServerConfig) -> std::io::Result<MssqlServer> {
        let tls = config.tls.as_ref().map(TlsSettings::acceptor).transpose()?;
        let listener = TcpListener::bind(config.bind).await?;
        let addr = listener.local_addr()?;
        let requests = Arc::new(AtomicU64::new(0));
        let request_stats = Arc::new(RequestStats::default());
        let control = Arc::new(Control {
            requests: Arc::clone(&requests),
            request_stats: Arc::clone(&request_stats),
            drop_generation: Mutex::new(CancellationToken::new()),
        });
        let shared = Arc::new(Shared {
            backend,
            config,
            tls,
            requests,
            request_stats,
            next_transaction: AtomicU64::new(1),
        });
        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        tracker.spawn(accept_loop(
            listener,
            shared,
            Arc::clone(&control),
            shutdown.clone(),
            tracker.clone(),
        ));
        info!(%addr, "SQL Server stand-in listening");
        Ok(MssqlServer {
            addr,
            control,
            shutdown,
            tracker,
        })
    }

    /// The bound address (with the real port when the config said 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// SQL batches, RPC calls and transaction manager requests received so far, over
    /// all connections: the database load a benchmark caused.
    pub fn requests(&self) -> u64 {
        self.control.requests.load(Ordering::Relaxed)
    }

    /// The longest time the backend took to execute one request (a SQL batch, one
    /// call of an RPC request, a transaction manager request) since the server started
    /// or [`Self::reset_request_stats`], over all connections: the longest statement a
    /// client made the server run. Measured from the request decoded to its outcomes
    /// built (the engine materialises a result before any of it is sent), so time spent
    /// writing rows to a slow client is not included. Zero before any request.
    pub fn max_request_duration(&self) -> Duration {
        Duration::from_nanos(self.control.request_stats.longest_nanos.load(Ordering::Relaxed))
    }

    /// How many executions [`Self::max_request_duration`] is the longest of: SQL
    /// batches, RPC calls (one per call of a multi-call request) and transaction
    /// manager requests since start or the last [`Self::reset_request_stats`].
    pub fn timed_requests(&self) -> u64 {
        self.control.request_stats.executions.load(Ordering::Relaxed)
    }

    /// Starts a new measurement window for [`Self::max_request_duration`] and
    /// [`Self::timed_requests`] (e.g. just before the workload a benchmark measures).
    /// A request executing meanwhile is counted in the new window. [`Self::requests`]
    /// is not reset.
    pub fn reset_request_stats(&self) {
        let stats = &self.control.request_stats;
        stats.longest_nanos.store(0, Ordering::Relaxed);
        stats.executions.store(0, Ordering::Relaxed);
    }

    /// Fault injection: abruptly closes every open connection (no DONE, no FIN
    /// ordering guarantees beyond the socket close), as a crashed or failed-over
    /// server would. New connections are accepted as before.
    pub fn drop_connections(&self) {
        let mut generation = self
            .control
            .drop_generation
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        generation.cancel();
        *generation = CancellationToken::new();
    }

    /// Stops accepting, closes every connection and waits for all tasks to end.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

impl Drop for MssqlServer {
    fn drop(&mut self) {
        // A server dropped without `shutdown` still stops its tasks.
        self.shutdown.cancel();
    }
}

async fn accept_loop<B: Backend>(
    listener: TcpListener,
    shared: Arc<Shared<B>>,
    control: Arc<Control>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    // Session ids as SQL Server numbers user sessions, from 51.
    let next_spid = AtomicU16::new(51);
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Per-connection accept errors (e.g. the peer reset first) are not
                // fatal to the listener.
                warn!(error = %e, "accept failed");
                continue;
            }
        };
        if let Err(e) = tcp.set_nodelay(true) {
            debug!(error = %e, "set_nodelay failed");
        }
        let spid = next_spid.fetch_add(1, Ordering::Relaxed);
        let dropped = control.current_generation();
        let shutdown = shutdown.clone();
        let shared = Arc::clone(&shared);
        tracker.spawn(async move {
            tokio::select! {
                _ = shutdown.cancelled() => debug!(spid, %peer, "closed by shutdown"),
                _ = dropped.cancelled() => debug!(spid, %peer, "dropped by fault injection"),
                result = connection::run(tcp, shared, spid) => match result {
                    Ok(()) => debug!(spid, %peer, "connection ended"),
                    Err(connection::ConnectionError::LoginFailed) => {
                        debug!(spid, %peer, "closed after failed login")
                    }
                    Err(e) => warn!(spid, %peer, error = %e, source = ?std::error::Error::source(&e), "connection closed on protocol error"),
                },
            }
        });
    }
    debug!("accept loop stopped");
}
