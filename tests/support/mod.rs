//! End-to-end harness: the SQL Server and Pulsar stand-ins, a real `redis-server`, and
//! the sidecar library run in-process exactly as the binary runs it.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cdc_sidecar::config::Config;
use cdc_sidecar::metrics::Metrics;
use cdc_sidecar::RunError;
use futures_util::StreamExt;
use serde_json::Value;
use testkit::mssql::engine::Engine;
use testkit::mssql::wire::{MssqlServer, MssqlServerConfig};
use testkit::pulsar::{PulsarStandin, PulsarStandinConfig};
use testkit::redis::RedisServer;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use testkit::mssql::sample::{DATABASE as DB, LOGIN, PASSWORD};

mod orders;
mod process;
// Only the tests that run the binary use it.
#[allow(unused_imports)]
pub use process::SidecarProcess;
// Not every test file streams the Orders table.
#[allow(unused_imports)]
pub use orders::*;

/// How long any condition may take before a test fails.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Waits until `f` returns `Some`, or panics naming `what` after [`DEADLINE`].
pub async fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Logs of the code under test to the test's output (`RUST_LOG`, default warn).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .try_init();
}

/// The stand-ins and Redis.
pub struct Harness {
    pub engine: Engine,
    pub mssql: MssqlServer,
    pub pulsar: PulsarStandin,
    pub redis: RedisServer,
}

impl Harness {
    /// Starts everything with database `Shop` prepared as the migrations would: Change
    /// Tracking on (retention 1 day), snapshot isolation allowed, and the sidecar login
    /// with SELECT and VIEW CHANGE TRACKING on `dbo`.
    pub async fn start() -> Self {
        init_tracing();
        let engine = Engine::new();
        testkit::mssql::sample::setup_empty(&engine).expect("prepare database");
        let mssql = MssqlServer::start(Arc::new(engine.clone()), MssqlServerConfig::default())
            .await
            .expect("mssql stand-in");
        let pulsar = PulsarStandin::start(PulsarStandinConfig::default())
            .await
            .expect("pulsar stand-in");
        let redis = RedisServer::start().expect("redis-server (install the Debian package redis-server)");
        Self {
            engine,
            mssql,
            pulsar,
            redis,
        }
    }

    /// Runs SQL as `sa` in `Shop`.
    pub fn sql(&self, sql: &str) {
        if let Err(e) = self.engine.execute(DB, sql) {
            panic!("{sql}\n→ {e}");
        }
    }

    /// Creates `dbo.<name>` with `columns` (SQL), primary key included, and enables
    /// change tracking with column tracking.
    pub fn create_tracked_table(&self, name: &str, columns: &str) {
        self.sql(&format!(
            "CREATE TABLE [dbo].[{name}] ({columns});\n\
             ALTER TABLE [dbo].[{name}] ENABLE CHANGE_TRACKING WITH (TRACK_COLUMNS_UPDATED = ON);"
        ));
    }

    /// A configuration pointing at the stand-ins, for `tables` (TOML `[[tables]]` bodies).
    pub fn config_toml(&self, tables: &[&str]) -> String {
        let mut toml = format!(
            r#"
[source]
host = "127.0.0.1"
port = {port}
database = "{DB}"
user = "{LOGIN}"
password = "{PASSWORD}"
encryption = "off"

[poll]
min_interval_ms = 10
max_interval_ms = 100
batch_rows = 100
snapshot_chunk_rows = 50

[checkpoint]
url = "{redis}"
idle_write_interval_ms = 100

[sinks.pulsar]
url = "{pulsar}"
send_timeout_ms = 3000

[sinks.redis_pubsub]
url = "{redis}"
compression_threshold_bytes = 512

[http]
listen = "127.0.0.1:0"
"#,
            port = self.mssql.addr().port(),
            redis = self.redis.url(),
            pulsar = self.pulsar.url(),
        );
        for t in tables {
            toml.push_str("\n[[tables]]\n");
            toml.push_str(t);
            toml.push('\n');
        }
        toml
    }

    pub fn config(&self, tables: &[&str]) -> Config {
        Config::from_toml_str(&self.config_toml(tables)).expect("test config")
    }

    /// Starts the sidecar in-process.
    pub fn spawn(&self, config: Config) -> Sidecar {
        let token = CancellationToken::new();
        let metrics = Metrics::new().unwrap();
        let handle = tokio::spawn(cdc_sidecar::run_with_metrics(config, metrics.clone(), token.clone()));
        Sidecar { token, handle, metrics }
    }

    /// Subscribes to every `cdc:*` channel; envelopes are decompressed and parsed.
    pub async fn subscribe(&self) -> Subscriber {
        subscribe(&self.redis.url()).await
    }

    /// Decoded Pulsar messages on `topic`, as envelopes.
    pub fn pulsar_envelopes(&self, topic: &str) -> Vec<Value> {
        self.pulsar
            .messages(topic)
            .iter()
            .map(|m| serde_json::from_slice(&m.payload).expect("envelope is JSON"))
            .collect()
    }

    /// The stored checkpoint of `table`, read straight from Redis.
    pub async fn checkpoint(&self, table: &str) -> Option<i64> {
        let client = redis::Client::open(self.redis.url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let v: Option<String> = redis::cmd("HGET")
            .arg(format!("cdc-sidecar:checkpoint:{DB}:{table}"))
            .arg("version")
            .query_async(&mut conn)
            .await
            .unwrap();
        v.map(|v| v.parse().unwrap())
    }

    /// Waits until the stored checkpoint of `table` satisfies `ok`; returns it.
    pub async fn wait_checkpoint(&self, table: &str, what: &str, ok: impl Fn(i64) -> bool) -> i64 {
        let start = Instant::now();
        loop {
            if let Some(v) = self.checkpoint(table).await {
                if ok(v) {
                    return v;
                }
            }
            assert!(
                start.elapsed() < DEADLINE,
                "timed out waiting for the checkpoint of {table}: {what}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Clears a killed sidecar's lease (it would expire within 15 s; an operator who
    /// knows the process is gone may clear it, as the tests do to stay fast).
    pub async fn clear_lease(&self) {
        let client = redis::Client::open(self.redis.url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let _: i64 = redis::cmd("DEL")
            .arg(format!("cdc-sidecar:lock:{DB}"))
            .query_async(&mut conn)
            .await
            .unwrap();
    }

    /// Every key in Redis.
    pub async fn redis_keys(&self) -> Vec<String> {
        let client = redis::Client::open(self.redis.url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        redis::cmd("KEYS").arg("*").query_async(&mut conn).await.unwrap()
    }

    pub fn current_version(&self) -> i64 {
        self.engine.current_version(DB).expect("CT on")
    }
}

/// Subscribes to every `cdc:*` channel of the Redis at `url`; envelopes are
/// decompressed and parsed.
pub async fn subscribe(url: &str) -> Subscriber {
    let client = redis::Client::open(url).unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub.psubscribe("cdc:*").await.unwrap();
    let received = Arc::new(Mutex::new(Vec::new()));
    let sink = received.clone();
    let task = tokio::spawn(async move {
        let mut stream = pubsub.into_on_message();
        while let Some(msg) = stream.next().await {
            let payload: Vec<u8> = msg.get_payload_bytes().to_vec();
            let json = decompress(&payload);
            let value: Value = serde_json::from_slice(&json).expect("envelope is JSON");
            sink.lock().unwrap().push((msg.get_channel_name().to_string(), value));
        }
    });
    Subscriber { received, task }
}

/// `GET path` on 127.0.0.1:`port` → (status, whole response).
pub async fn http_get(port: u16, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.unwrap();
    let status = buf.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, buf)
}

/// Undoes the Redis sink's compression (the library's own [`cdc_sidecar::sink::decompress`]).
pub fn decompress(payload: &[u8]) -> Vec<u8> {
    cdc_sidecar::sink::decompress(payload).expect("a payload the sink wrote")
}

/// A running sidecar.
pub struct Sidecar {
    pub token: CancellationToken,
    pub handle: JoinHandle<Result<(), RunError>>,
    pub metrics: Metrics,
}

impl Sidecar {
    /// Cancels (as SIGTERM does) and waits for a clean stop.
    pub async fn stop(self) {
        self.token.cancel();
        tokio::time::timeout(DEADLINE, self.handle)
            .await
            .expect("sidecar stops in time")
            .unwrap()
            .expect("clean stop");
    }

    /// The value of a metric line in the exposition, e.g. `cdc_sidecar_probes_total{result="idle"}`.
    pub fn metric(&self, line_prefix: &str) -> f64 {
        self.metrics
            .render()
            .lines()
            .find(|l| l.starts_with(line_prefix) && l[line_prefix.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    }
}

/// Everything received on Redis Pub/Sub.
pub struct Subscriber {
    pub received: Arc<Mutex<Vec<(String, Value)>>>,
    task: JoinHandle<()>,
}

impl Subscriber {
    /// Envelopes received on `channel`.
    pub fn on(&self, channel: &str) -> Vec<Value> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter(|(c, _)| c == channel)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Every change in `envelopes`, flattened, in order.
pub fn changes(envelopes: &[Value]) -> Vec<Value> {
    envelopes
        .iter()
        .flat_map(|e| e["changes"].as_array().cloned().unwrap_or_default())
        .collect()
}

/// Envelopes of one kind.
pub fn of_kind(envelopes: &[Value], kind: &str) -> Vec<Value> {
    envelopes.iter().filter(|e| e["kind"] == kind).cloned().collect()
}

impl Harness {
    /// [`Harness::start`] with the Pulsar stand-in configured by `pulsar` (e.g. a
    /// broker's `max_message_size`).
    pub async fn start_with(pulsar: PulsarStandinConfig) -> Self {
        init_tracing();
        let engine = Engine::new();
        testkit::mssql::sample::setup_empty(&engine).expect("prepare database");
        let mssql = MssqlServer::start(Arc::new(engine.clone()), MssqlServerConfig::default())
            .await
            .expect("mssql stand-in");
        let pulsar = PulsarStandin::start(pulsar).await.expect("pulsar stand-in");
        let redis = RedisServer::start().expect("redis-server (install the Debian package redis-server)");
        Self {
            engine,
            mssql,
            pulsar,
            redis,
        }
    }
}
