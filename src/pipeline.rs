//! The wiring of one run, in the order a value flows: check the database, take the
//! lease, connect the sinks, resume each table's delivery task from its checkpoint,
//! then run the reader until shutdown; and the errors that end a run, with their exit
//! codes.
//!
//! ```text
//! source (tiberius) ──► tracker::Reader ──► per-table DeliveryTask ──► sinks (Pulsar, Redis)
//!                                                        └──► checkpoint (Redis)
//! ```

use std::net::SocketAddr;
use std::sync::atomic::AtomicI64;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::checkpoint::{CheckpointError, CheckpointStore, Lease, RedisCheckpointStore};
use crate::config::{self, redis_client, render_template, Config};
use crate::envelope::Route;
use crate::health::Health;
use crate::http;
use crate::metrics::{self, Metrics};
use crate::sink::{self, SinkError};
use crate::source::catalog::TableInfo;
use crate::source::check::{CheckReport, SetupProblem};
use crate::source::{self, SourceError};
use crate::tracker::{DeliveryTask, Reader, TableStart};

/// Why the sidecar stopped with an error. The binary maps each to an exit code.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The configuration is invalid; the message names the field.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// Every problem the startup check found, each with its fix.
    #[error("database setup is incomplete:\n{}", format_problems(.0))]
    Setup(Vec<SetupProblem>),
    /// SQL Server could not be reached or failed.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The checkpoint store failed.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// A sink could not be set up.
    #[error("sink: {0}")]
    Sink(#[from] SinkError),
    /// A Redis URL or connection failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// The HTTP listener could not bind.
    #[error("http listener on {addr}: {source}")]
    Http {
        /// The configured `http.listen`.
        addr: SocketAddr,
        /// The bind error (address in use, permission denied).
        #[source]
        source: std::io::Error,
    },
    /// The metrics registry refused a metric (a bug).
    #[error(transparent)]
    Metrics(#[from] metrics::MetricsError),
}

fn format_problems(problems: &[SetupProblem]) -> String {
    problems
        .iter()
        .map(|p| format!("  - {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

impl RunError {
    /// The process exit code: 2 bad configuration, 3 database setup, 1 anything else.
    pub fn exit_code(&self) -> i32 {
        match self {
            RunError::Config(_) => 2,
            RunError::Setup(_) => 3,
            RunError::Source(SourceError::Server { code: 18456 | 4060, .. }) => 3,
            _ => 1,
        }
    }
}

/// Connects to SQL Server and runs the startup checks (`cdc-sidecar check`).
pub async fn check(config: &Config) -> Result<CheckReport, RunError> {
    let mut client = source::connect(&config.source).await?;
    let report = source::check::check(&mut client, config).await?;
    let _ = client.close().await;
    Ok(report)
}

/// The checkpoint store of the configured database.
pub async fn checkpoint_store(config: &Config) -> Result<RedisCheckpointStore, RunError> {
    let client = redis_client(&config.checkpoint.endpoint())?;
    Ok(RedisCheckpointStore::connect(client, &config.checkpoint.key_prefix, &config.source.database).await?)
}

/// Runs the sidecar until `shutdown` is cancelled: checks, resumes, streams, then
/// drains what was read, writes checkpoints and closes connections.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), RunError> {
    let metrics = Metrics::new()?;
    run_with_metrics(config, metrics, shutdown).await
}

/// [`run`] with a caller-owned metrics registry (tests and benchmarks read it).
pub async fn run_with_metrics(config: Config, metrics: Metrics, shutdown: CancellationToken) -> Result<(), RunError> {
    let config = Arc::new(config);
    let health = Arc::new(Health::default());
    let tasks = TaskTracker::new();

    let listener = TcpListener::bind(config.http.listen)
        .await
        .map_err(|source| RunError::Http {
            addr: config.http.listen,
            source,
        })?;
    let stall_after = Duration::from_secs(30)
        + config.poll.max_interval() * 3
        + Duration::from_millis(config.source.connect_timeout_ms);
    {
        let (metrics, health, shutdown) = (metrics.clone(), health.clone(), shutdown.clone());
        tasks.spawn(async move {
            if let Err(error) = http::serve(listener, metrics, health, stall_after, shutdown).await {
                warn!(%error, "http server stopped");
            }
        });
    }

    let result = run_pipeline(config, metrics, health, &tasks, shutdown.clone()).await;
    // Whatever happened, stop the HTTP server and wait for every task.
    shutdown.cancel();
    tasks.close();
    tasks.wait().await;
    result
}

async fn run_pipeline(
    config: Arc<Config>,
    metrics: Metrics,
    health: Arc<Health>,
    tasks: &TaskTracker,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    let mut client = source::connect(&config.source).await?;
    let report = source::check::check(&mut client, &config).await?;
    if !report.problems.is_empty() {
        return Err(RunError::Setup(report.problems));
    }
    let identity = report.identity.clone();
    info!(server = %identity.server, database = %identity.database, tables = report.tables.len(), "startup checks passed");
    if identity.incarnation.is_none() {
        warn!(
            database = %identity.database,
            "cannot read sys.database_recovery_status: a restore that reuses versions past a checkpoint would go unnoticed \
             (GRANT VIEW ANY DATABASE TO the sidecar's login; on Azure SQL Database the view does not exist)"
        );
    }

    let store = Arc::new(
        checkpoint_store(&config)
            .await?
            .with_source(&identity.server, &identity.database),
    );
    let this_source = format!("{}/{}", identity.server, identity.database);
    let holder = format!("{}:{}", hostname(), std::process::id());
    let Some(_lease) = Lease::acquire(store.clone(), holder, tasks, &shutdown).await? else {
        return Ok(());
    };

    let routes = routes(&config, &identity.database, &report.tables);
    let sinks = Arc::new(sink::build(&config, &routes, &identity.database).await?);

    let current_version = source::query_scalar_i64(&mut client, source::sql::PROBE, &[])
        .await?
        .ok_or_else(|| SourceError::ChangeTrackingDisabled {
            database: identity.database.clone(),
        })?;
    let delivery_tasks = TaskTracker::new();
    let mut starts = Vec::with_capacity(report.tables.len());
    for (info, route) in report.tables.into_iter().zip(routes) {
        let stored = store.load(&info.name).await?;
        let cell = Arc::new(AtomicI64::new(stored.as_ref().map_or(0, |c| c.version)));
        if let Some(cp) = &stored {
            metrics
                .checkpoint_version
                .with_label_values(&[&info.name])
                .set(cp.version);
            info!(table = %info.name, checkpoint = cp.version, "resuming");
            if let Some(source) = cp.source.as_deref().filter(|s| *s != this_source) {
                // A failover renames the server legitimately; a restored database is
                // caught by its incarnation (the reader resyncs). Worth a look either way.
                warn!(table = %info.name, written_by = source, now = %this_source, "checkpoint was written for another server/database");
            }
            if let (None, Some(now)) = (&cp.incarnation, &identity.incarnation) {
                // Written before restore detection: from now on a restore is told apart.
                store.adopt_incarnation(&info.name, now).await?;
            }
        }
        let (tx, rx) = mpsc::channel(4);
        let task = DeliveryTask {
            table: info.name.clone(),
            sinks: sinks.clone(),
            store: store.clone() as Arc<dyn CheckpointStore>,
            metrics: metrics.clone(),
            health: health.clone(),
            idle_write_interval: Duration::from_millis(config.checkpoint.idle_write_interval_ms),
            checkpoint: cell.clone(),
            start_seq: stored.as_ref().map_or(0, |c| c.seq),
            shutdown: shutdown.clone(),
        };
        delivery_tasks.spawn(task.run(rx));
        starts.push(TableStart {
            info,
            route,
            checkpoint: stored,
            tx,
            checkpoint_cell: cell,
        });
    }
    let reader = Reader::new(
        config.clone(),
        identity,
        client,
        starts,
        current_version,
        metrics,
        health,
    )
    .await;
    reader.run(shutdown).await;
    info!("reader stopped; delivering what was read");
    delivery_tasks.close();
    delivery_tasks.wait().await;
    for sink in sinks.iter() {
        sink.close().await;
    }
    info!("stopped cleanly");
    Ok(())
}

/// Each table's topic and channel, from its own templates or the sinks' defaults.
fn routes(config: &Config, database: &str, tables: &[TableInfo]) -> Vec<Arc<Route>> {
    tables
        .iter()
        .map(|t| {
            let tc = config.tables.iter().find(|c| c.name == t.name);
            let topic = tc
                .and_then(|c| c.topic.clone())
                .unwrap_or_else(|| config.sinks.pulsar.topic.clone());
            let channel = tc
                .and_then(|c| c.channel.clone())
                .unwrap_or_else(|| config.sinks.redis_pubsub.channel.clone());
            Arc::new(Route {
                table: t.name.clone(),
                topic: render_template(&topic, database, &t.schema, &t.table),
                channel: render_template(&channel, database, &t.schema, &t.table),
            })
        })
        .collect()
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "cdc-sidecar".into())
}
