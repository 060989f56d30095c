//! Every metric the sidecar exports, named and labelled in this one place. Label values
//! are bounded: table names come from the config, sinks and kinds are fixed sets, and
//! error messages never become labels. Counters move per batch, not per change.

use prometheus::{
    Encoder, Gauge, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// The namespace every metric name starts with.
pub const NAMESPACE: &str = "cdc_sidecar";

/// The states a table can be in, for `table_state`.
pub const TABLE_STATES: [&str; 3] = ["snapshotting", "streaming", "error"];

/// The sidecar's metrics, registered once in their own registry.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Changes published, by table and op (insert, update, delete, read).
    pub changes: IntCounterVec,
    /// Batches acknowledged by a sink, by table and sink.
    pub batches: IntCounterVec,
    /// Payload bytes sent to a sink (after compression), by table and sink.
    pub sink_bytes: IntCounterVec,
    /// Failed publish attempts, by sink. Each is retried.
    pub sink_errors: IntCounterVec,
    /// Time from publish to the sink's acknowledgement, by sink.
    pub sink_latency: HistogramVec,
    /// The last durably delivered version, by table.
    pub checkpoint_version: IntGaugeVec,
    /// The database's `CHANGE_TRACKING_CURRENT_VERSION()` at the last probe.
    pub database_version: IntGauge,
    /// Database version minus the table's checkpoint.
    pub lag_versions: IntGaugeVec,
    /// Times a table's lag crossed `poll.lag_warning_versions`.
    pub lag_warnings: IntCounterVec,
    /// Resyncs, by table and reason.
    pub resyncs: IntCounterVec,
    /// Rows published by snapshots, by table.
    pub snapshot_rows: IntCounterVec,
    /// Version probes, by result (idle, moved, error).
    pub probes: IntCounterVec,
    /// Queries sent to SQL Server while streaming, by kind (probe, discover, changes, snapshot).
    pub source_queries: IntCounterVec,
    /// Source failures (connection lost, server error), by kind.
    pub source_errors: IntCounterVec,
    /// The probe interval now in force, in seconds.
    pub poll_interval: Gauge,
    /// 1 for the state each table is in, 0 for the others.
    pub table_state: IntGaugeVec,
    /// Each table's `CHANGE_TRACKING_MIN_VALID_VERSION` at its last check: how close
    /// cleanup is to the checkpoint.
    pub min_valid_version: IntGaugeVec,
    /// Schema changes noticed (and published as `schema` batches), by table.
    pub schema_changes: IntCounterVec,
    /// Duration of ticks that found the version moved (discover + reads + hand-over).
    pub poll_duration: prometheus::Histogram,
    /// Connections re-established after a failure, by target (source).
    pub reconnects: IntCounterVec,
}

/// Registration can only fail on a duplicate or malformed name: a bug, caught by tests.
#[derive(Debug, thiserror::Error)]
#[error("metric registration failed: {0}")]
pub struct MetricsError(#[from] prometheus::Error);

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Result<Self, MetricsError> {
        let registry = Registry::new();
        let opts = |name: &str, help: &str| Opts::new(name, help).namespace(NAMESPACE);
        let counter = |name: &str, help: &str, labels: &[&str]| -> Result<IntCounterVec, MetricsError> {
            let c = IntCounterVec::new(opts(name, help), labels)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let gauge_vec = |name: &str, help: &str, labels: &[&str]| -> Result<IntGaugeVec, MetricsError> {
            let g = IntGaugeVec::new(opts(name, help), labels)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let changes = counter("changes_total", "Changes published, by table and op.", &["table", "op"])?;
        let batches = counter("batches_total", "Batches acknowledged by a sink.", &["table", "sink"])?;
        let sink_bytes = counter("sink_bytes_total", "Payload bytes sent to a sink.", &["table", "sink"])?;
        let sink_errors = counter("sink_errors_total", "Failed publish attempts (retried).", &["sink"])?;
        let sink_latency = HistogramVec::new(
            HistogramOpts::new("sink_latency_seconds", "Publish to acknowledgement.")
                .namespace(NAMESPACE)
                .buckets(vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
                ]),
            &["sink"],
        )?;
        registry.register(Box::new(sink_latency.clone()))?;
        let checkpoint_version = gauge_vec("checkpoint_version", "Last durably delivered version.", &["table"])?;
        let database_version = IntGauge::with_opts(opts(
            "database_version",
            "CHANGE_TRACKING_CURRENT_VERSION() at the last probe.",
        ))?;
        registry.register(Box::new(database_version.clone()))?;
        let lag_versions = gauge_vec(
            "lag_versions",
            "Database version minus the table's checkpoint.",
            &["table"],
        )?;
        let lag_warnings = counter(
            "lag_warnings_total",
            "Lag crossed poll.lag_warning_versions.",
            &["table"],
        )?;
        let resyncs = counter("resyncs_total", "Resyncs, by reason.", &["table", "reason"])?;
        let snapshot_rows = counter("snapshot_rows_total", "Rows published by snapshots.", &["table"])?;
        let probes = counter("probes_total", "Version probes, by result.", &["result"])?;
        let source_queries = counter(
            "source_queries_total",
            "Queries sent to SQL Server, by kind.",
            &["kind"],
        )?;
        let source_errors = counter("source_errors_total", "Source failures, by kind.", &["kind"])?;
        let poll_interval = Gauge::with_opts(opts("poll_interval_seconds", "The probe interval in force."))?;
        registry.register(Box::new(poll_interval.clone()))?;
        let table_state = gauge_vec("table_state", "1 for the state each table is in.", &["table", "state"])?;
        let schema_changes = counter(
            "schema_changes_total",
            "Schema changes noticed and published, by table.",
            &["table"],
        )?;
        let min_valid_version = gauge_vec(
            "min_valid_version",
            "CHANGE_TRACKING_MIN_VALID_VERSION at the last check.",
            &["table"],
        )?;
        let poll_duration = prometheus::Histogram::with_opts(
            HistogramOpts::new("poll_duration_seconds", "Duration of ticks that found changes.")
                .namespace(NAMESPACE)
                .buckets(vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
                ]),
        )?;
        registry.register(Box::new(poll_duration.clone()))?;
        let reconnects = counter(
            "reconnects_total",
            "Connections re-established after a failure.",
            &["target"],
        )?;
        Ok(Self {
            registry,
            changes,
            batches,
            sink_bytes,
            sink_errors,
            sink_latency,
            checkpoint_version,
            database_version,
            lag_versions,
            lag_warnings,
            resyncs,
            snapshot_rows,
            probes,
            source_queries,
            source_errors,
            poll_interval,
            table_state,
            min_valid_version,
            schema_changes,
            poll_duration,
            reconnects,
        })
    }

    /// Marks `state` as the table's current state.
    pub fn set_table_state(&self, table: &str, state: &str) {
        for s in TABLE_STATES {
            self.table_state
                .with_label_values(&[table, s])
                .set(i64::from(s == state));
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metrics.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    }
}
