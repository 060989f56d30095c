//! Configuration: defaults → `sidecar.toml` → `CDC_SIDECAR_*` environment variables
//! (`__` separates nesting levels, e.g. `CDC_SIDECAR_SOURCE__PASSWORD`), then
//! [`Config::validate`]. Unknown fields are errors, so a typo never silently falls back
//! to a default. Secrets may come from `*_file` paths and never print.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

/// The prefix of every environment override.
pub const ENV_PREFIX: &str = "CDC_SIDECAR_";

/// Why configuration could not be loaded. Each message names the field at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file or an environment variable could not be parsed into [`Config`].
    #[error("invalid configuration: {0}")]
    Parse(#[from] Box<figment::Error>),
    /// A value parsed but makes no sense.
    #[error("invalid configuration: {field}: {reason}")]
    /// A value parsed but is out of range or inconsistent; `field` names it.
    Invalid {
        /// The field, e.g. `poll.max_interval_ms`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A `*_file` secret could not be read.
    #[error("invalid configuration: {field}: cannot read {path}: {source}")]
    SecretFile {
        /// The `*_file` field.
        field: String,
        /// The file that could not be read.
        path: PathBuf,
        /// The OS error (missing, permission denied), as the operator must fix it.
        #[source]
        source: std::io::Error,
    },
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

/// A secret string: never printed by `Debug` or `Display`, so a config dump or an
/// error log cannot leak it.
#[derive(Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The secret itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

/// The whole configuration of one sidecar (one database).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The SQL Server database to stream from.
    pub source: SourceConfig,
    /// How often to look for changes and how large a batch may grow.
    #[serde(default)]
    pub poll: PollConfig,
    /// The tables to stream; at least one.
    #[serde(default)]
    pub tables: Vec<TableConfig>,
    /// Where each table's last delivered version is kept.
    #[serde(default)]
    pub checkpoint: CheckpointConfig,
    /// Where batches go; at least one sink must be enabled.
    #[serde(default)]
    pub sinks: SinksConfig,
    /// The metrics and health endpoints.
    #[serde(default)]
    pub http: HttpConfig,
    /// Log level and format (JSON for log collectors, text for people).
    #[serde(default)]
    pub log: LogConfig,
    /// Stopping on SIGTERM.
    #[serde(default)]
    pub shutdown: ShutdownConfig,
}

/// `[shutdown]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShutdownConfig {
    /// How long, after SIGTERM, the sidecar may spend delivering the batches already read
    /// and writing checkpoints before it exits anyway (exit code 1; what was not
    /// delivered is read again on restart). Keep it below Kubernetes'
    /// `terminationGracePeriodSeconds`.
    pub grace_period_ms: u64,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        Self {
            grace_period_ms: 20_000,
        }
    }
}

/// How the connection to SQL Server is encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Encryption {
    /// No TLS at all (only for servers without a certificate, e.g. a local test server).
    Off,
    /// TLS for the login packet only (protects the password), as SQL Server's default.
    LoginOnly,
    /// TLS for the whole session; the connection fails if the server cannot.
    Required,
}

/// `[source]`: the SQL Server database.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// Host name or address of SQL Server.
    pub host: String,
    /// TCP port (SQL Server's default is 1433).
    #[serde(default = "default_mssql_port")]
    pub port: u16,
    /// The database whose tables are streamed; one sidecar serves one database,
    /// because Change Tracking versions are per database.
    pub database: String,
    /// SQL login. Needs only the grants of `migrations/004_sidecar_login.sql`.
    pub user: String,
    /// The login's password. Prefer `password_file` (a mounted secret).
    #[serde(default)]
    pub password: Option<Secret>,
    /// Path of a file holding the password (trailing newline ignored); overrides `password`.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// `off`, `login_only` or `required`. `required` in production.
    #[serde(default = "default_encryption")]
    pub encryption: Encryption,
    /// Accept any server certificate. Only for test servers with self-signed certificates.
    #[serde(default)]
    pub trust_server_certificate: bool,
    /// PEM file of the CA that signed the server's certificate, when not a public CA.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Application name shown in `sys.dm_exec_sessions`, so a DBA can tell who is querying.
    #[serde(default = "default_app_name")]
    pub app_name: String,
    /// How long to wait for a connection and login before retrying, in milliseconds.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Longest wait for the server's next response while a query runs, in
    /// milliseconds; a stalled server fails the tick and the connection is replaced.
    /// It never trips on the sidecar's own backpressure (a slow sink).
    #[serde(default = "default_command_timeout_ms")]
    pub command_timeout_ms: u64,
}

fn default_mssql_port() -> u16 {
    1433
}
fn default_encryption() -> Encryption {
    Encryption::Required
}
fn default_app_name() -> String {
    "cdc-sidecar".into()
}
fn default_connect_timeout_ms() -> u64 {
    10_000
}
fn default_command_timeout_ms() -> u64 {
    30_000
}

/// `[poll]`: the shared version probe's backoff and the size of batches.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct PollConfig {
    /// Probe interval right after activity, in milliseconds: the floor of latency.
    pub min_interval_ms: u64,
    /// Probe interval ceiling while idle, in milliseconds: the worst-case latency of the
    /// first change after a quiet spell.
    pub max_interval_ms: u64,
    /// Factor the interval grows by after each idle probe (≥ 1).
    pub multiplier: f64,
    /// A batch is closed when it holds this many changes (or `batch_bytes`, whichever
    /// comes first, or when the read reaches the tick's upper bound).
    pub batch_rows: usize,
    /// A batch is closed when its encoded JSON reaches this many bytes.
    pub batch_bytes: usize,
    /// Rows per keyset-paginated snapshot chunk; each chunk is its own short statement,
    /// so a snapshot never holds one long transaction.
    pub snapshot_chunk_rows: usize,
    /// Most changes one `CHANGETABLE` statement reads (`TOP`): a backlog of millions of
    /// changes is read in statements that each finish well within
    /// `source.command_timeout_ms`, continuing by keyset where the last one stopped.
    pub statement_rows: usize,
    /// Most bytes of batches one tick reads before it commits and hands them over; the
    /// rest is read by the next ticks. Bounds memory and how long the tick's SNAPSHOT
    /// transaction stays open, whatever the backlog.
    pub tick_bytes: usize,
    /// Lag (database version − table checkpoint) above which a `lag` warning is logged
    /// and counted. Gaps in a table's versions are normal; this is only a warning.
    pub lag_warning_versions: i64,
    /// When false, every table is queried every tick (the original per-table polling),
    /// kept only to measure what the shared probe saves.
    pub shared_probe: bool,
}

impl Default for PollConfig {
    fn default() -> Self {
        Self {
            min_interval_ms: 50,
            max_interval_ms: 5_000,
            multiplier: 2.0,
            batch_rows: 1_000,
            batch_bytes: 1 << 20,
            snapshot_chunk_rows: 10_000,
            statement_rows: 10_000,
            tick_bytes: 16 << 20,
            lag_warning_versions: 100_000,
            shared_probe: true,
        }
    }
}

impl PollConfig {
    /// `min_interval_ms` as a duration.
    pub fn min_interval(&self) -> Duration {
        Duration::from_millis(self.min_interval_ms)
    }
    /// `max_interval_ms` as a duration.
    pub fn max_interval(&self) -> Duration {
        Duration::from_millis(self.max_interval_ms)
    }
}

/// What a table does when it has no checkpoint yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotMode {
    /// Publish every existing row (`op = "read"`) first, then stream changes.
    #[default]
    Initial,
    /// Start streaming at the current version; existing rows are not published.
    Never,
}

/// One `[[tables]]` entry.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TableConfig {
    /// `schema.table`, e.g. `dbo.Orders`.
    pub name: String,
    /// Columns to publish in `row`; all columns when absent. Key columns are always in `key`.
    #[serde(default)]
    pub columns: Option<Vec<String>>,
    /// `initial` or `never`: what to do on first start.
    #[serde(default)]
    pub snapshot: SnapshotMode,
    /// Pulsar topic for this table, overriding `sinks.pulsar.topic`.
    #[serde(default)]
    pub topic: Option<String>,
    /// Redis channel for this table, overriding `sinks.redis_pubsub.channel`.
    #[serde(default)]
    pub channel: Option<String>,
}

impl TableConfig {
    /// Splits `name` into (schema, table). Validated by [`Config::validate`].
    pub fn schema_and_table(&self) -> (&str, &str) {
        self.name.split_once('.').unwrap_or(("dbo", self.name.as_str()))
    }
}

/// `[checkpoint]`: Redis, where each table's last delivered version lives.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct CheckpointConfig {
    /// Redis URL, `redis://host:port/db` (or `rediss://` for TLS).
    pub url: String,
    /// Redis password, when not in the URL. Prefer `password_file`.
    pub password: Option<Secret>,
    /// Path of a file holding the Redis password.
    pub password_file: Option<PathBuf>,
    /// Redis 6+ ACL user (`AUTH <username> <password>`), when not in the URL. Without
    /// it the password authenticates the `default` user. See "Redis ACL" in the README
    /// for the commands and keys the user needs.
    pub username: Option<String>,
    /// PEM file of the CA that signed the server's certificate, for a Redis behind a
    /// private CA that the system trust store does not know (`rediss://` only). When
    /// set, only this CA is trusted, not the system roots.
    pub ca_file: Option<PathBuf>,
    /// PEM certificate (chain) presented to a Redis that requires client certificates
    /// (`tls-auth-clients yes`, mutual TLS); needs `key_file`. `rediss://` only.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file` (PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
    /// Prefix of every key the sidecar writes, so several sidecars can share a Redis.
    pub key_prefix: String,
    /// How often an idle table's checkpoint follows the database version, in
    /// milliseconds. It must follow, or an idle table falsely expires after the
    /// retention period; it need not follow every tick.
    pub idle_write_interval_ms: u64,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379/".into(),
            password: None,
            password_file: None,
            username: None,
            ca_file: None,
            cert_file: None,
            key_file: None,
            key_prefix: "cdc-sidecar".into(),
            idle_write_interval_ms: 5_000,
        }
    }
}

/// `[sinks]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SinksConfig {
    /// Apache Pulsar: the durable stream.
    #[serde(default)]
    pub pulsar: PulsarConfig,
    /// Redis Pub/Sub: fast, fire-and-forget fan-out to whoever is subscribed now.
    #[serde(default)]
    pub redis_pubsub: RedisPubSubConfig,
}

/// Compression codecs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    /// Uncompressed: for consumers that cannot decompress, at several times the bytes.
    None,
    /// LZ4: fastest, least CPU.
    Lz4,
    /// Zstandard: smallest.
    Zstd,
    /// Snappy: fast, for consumers that already speak it.
    Snappy,
    /// zlib (deflate).
    Zlib,
}

/// `[sinks.pulsar]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct PulsarConfig {
    /// Whether batches go to Pulsar.
    pub enabled: bool,
    /// Broker URL, `pulsar://host:6650` or `pulsar+ssl://host:6651`.
    pub url: String,
    /// JWT for token authentication. Prefer `token_file`.
    pub token: Option<Secret>,
    /// Path of a file holding the token.
    pub token_file: Option<PathBuf>,
    /// Topic per table; `{database}`, `{schema}` and `{table}` are replaced.
    pub topic: String,
    /// Compression of each message: `lz4`, `zstd`, `snappy`, `zlib` or `none`.
    /// Consumers decompress transparently (it is in the message metadata).
    pub compression: Compression,
    /// Let the Pulsar client group several batches into one entry. Each message is
    /// already a batch of changes, so this only helps with many tiny batches.
    pub batching: bool,
    /// How long to wait for a broker receipt before the send counts as failed and is
    /// retried, in milliseconds.
    pub send_timeout_ms: u64,
    /// The broker's `maxMessageSize` (broker.conf; 5 MiB = 5242880 by default): set it
    /// to the broker's value. The `pulsar` crate ignores the limit the broker announces
    /// and sends a larger message anyway; the broker then drops the connection (every
    /// producer on it is disrupted) and the crate resends until it times out, forever.
    /// So the sidecar enforces it: batches are cut to fit, and a single change too large
    /// even alone puts its table in error instead of being sent.
    pub max_message_bytes: usize,
}

impl PulsarConfig {
    /// The largest envelope (uncompressed) certain to fit `max_message_bytes` after
    /// compression with any codec: compressing incompressible data grows it a little
    /// (LZ4's block format by up to 1/255, plus a few bytes of headers).
    pub fn payload_budget(&self) -> usize {
        self.max_message_bytes - self.max_message_bytes / 255 - 1024
    }
}

impl Default for PulsarConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            url: "pulsar://127.0.0.1:6650".into(),
            token: None,
            token_file: None,
            topic: "persistent://public/default/{database}.{schema}.{table}".into(),
            compression: Compression::Lz4,
            batching: false,
            send_timeout_ms: 30_000,
            max_message_bytes: 5 * 1024 * 1024,
        }
    }
}

/// `[sinks.redis_pubsub]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisPubSubConfig {
    /// Whether batches are published to Redis.
    pub enabled: bool,
    /// Redis URL; may be the checkpoint Redis or another.
    pub url: String,
    /// Redis password, when not in the URL.
    pub password: Option<Secret>,
    /// Path of a file holding the Redis password.
    pub password_file: Option<PathBuf>,
    /// Redis 6+ ACL user (`AUTH <username> <password>`), when not in the URL. Without
    /// it the password authenticates the `default` user. See "Redis ACL" in the README
    /// for the commands and keys the user needs.
    pub username: Option<String>,
    /// PEM file of the CA that signed the server's certificate, for a Redis behind a
    /// private CA that the system trust store does not know (`rediss://` only). When
    /// set, only this CA is trusted, not the system roots.
    pub ca_file: Option<PathBuf>,
    /// PEM certificate (chain) presented to a Redis that requires client certificates
    /// (`tls-auth-clients yes`, mutual TLS); needs `key_file`. `rediss://` only.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file` (PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
    /// Channel per table; `{database}`, `{schema}` and `{table}` are replaced.
    pub channel: String,
    /// Codec for payloads of at least `compression_threshold_bytes`. Compressed
    /// payloads start with the codec's magic bytes; plain ones with `{`.
    pub compression: Compression,
    /// Payloads smaller than this go out as plain JSON: compressing them costs more
    /// CPU than it saves bandwidth.
    pub compression_threshold_bytes: usize,
}

impl Default for RedisPubSubConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            url: "redis://127.0.0.1:6379/".into(),
            password: None,
            password_file: None,
            username: None,
            ca_file: None,
            cert_file: None,
            key_file: None,
            channel: "cdc:{database}.{schema}.{table}".into(),
            compression: Compression::Zstd,
            compression_threshold_bytes: 4_096,
        }
    }
}

/// `[http]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Address of `/metrics`, `/healthz` and `/readyz`.
    pub listen: SocketAddr,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 9187)),
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// `[log]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A `tracing` filter: `info`, `debug`, or per module, `cdc_sidecar=debug,info`.
    pub level: String,
    /// `text` or `json`.
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

impl Config {
    /// Loads `path` (when given) and the `CDC_SIDECAR_*` environment, reads secret
    /// files and validates.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::new();
        if let Some(path) = path {
            figment = figment.merge(Toml::file_exact(path));
        }
        // Only nested keys (`SECTION__FIELD`) are config: `CDC_SIDECAR_CONFIG` and the test
        // URLs share the prefix but are not fields, and must not be refused as unknown.
        Self::from_figment(
            figment.merge(
                Env::prefixed(ENV_PREFIX)
                    .filter(|k| k.as_str().contains("__"))
                    .split("__"),
            ),
        )
    }

    /// Loads from TOML text plus the environment (for tests and `check`).
    pub fn from_toml_str(toml: &str) -> Result<Self, ConfigError> {
        Self::from_figment(Figment::new().merge(Toml::string(toml)))
    }

    fn from_figment(figment: Figment) -> Result<Self, ConfigError> {
        let mut config: Config = figment.extract().map_err(Box::new)?;
        config.resolve_secrets()?;
        config.validate()?;
        Ok(config)
    }

    fn resolve_secrets(&mut self) -> Result<(), ConfigError> {
        fn read(field: &str, file: &Option<PathBuf>, value: &mut Option<Secret>) -> Result<(), ConfigError> {
            if let Some(path) = file {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::SecretFile {
                    field: field.into(),
                    path: path.clone(),
                    source,
                })?;
                *value = Some(Secret(text.trim_end_matches(['\r', '\n']).to_string()));
            }
            Ok(())
        }
        read(
            "source.password_file",
            &self.source.password_file,
            &mut self.source.password,
        )?;
        read(
            "checkpoint.password_file",
            &self.checkpoint.password_file,
            &mut self.checkpoint.password,
        )?;
        read(
            "sinks.pulsar.token_file",
            &self.sinks.pulsar.token_file,
            &mut self.sinks.pulsar.token,
        )?;
        read(
            "sinks.redis_pubsub.password_file",
            &self.sinks.redis_pubsub.password_file,
            &mut self.sinks.redis_pubsub.password,
        )?;
        Ok(())
    }

    /// Checks what the types cannot: ranges, names, templates, at least one sink.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let s = &self.source;
        if s.host.trim().is_empty() {
            return Err(invalid("source.host", "must not be empty"));
        }
        if s.database.trim().is_empty() {
            return Err(invalid("source.database", "must not be empty"));
        }
        if s.user.trim().is_empty() {
            return Err(invalid("source.user", "must not be empty"));
        }
        if s.password.is_none() {
            return Err(invalid(
                "source.password",
                "required (set source.password, source.password_file or CDC_SIDECAR_SOURCE__PASSWORD)",
            ));
        }
        let p = &self.poll;
        if s.connect_timeout_ms == 0 {
            return Err(invalid("source.connect_timeout_ms", "must be at least 1"));
        }
        if s.command_timeout_ms == 0 {
            return Err(invalid("source.command_timeout_ms", "must be at least 1"));
        }
        if p.min_interval_ms == 0 {
            return Err(invalid("poll.min_interval_ms", "must be at least 1"));
        }
        if p.max_interval_ms < p.min_interval_ms {
            return Err(invalid("poll.max_interval_ms", "must be at least poll.min_interval_ms"));
        }
        if !(p.multiplier >= 1.0 && p.multiplier.is_finite()) {
            return Err(invalid("poll.multiplier", "must be a number ≥ 1"));
        }
        if p.batch_rows == 0 {
            return Err(invalid("poll.batch_rows", "must be at least 1"));
        }
        if p.batch_bytes < 1024 {
            return Err(invalid("poll.batch_bytes", "must be at least 1024"));
        }
        if p.statement_rows == 0 {
            return Err(invalid("poll.statement_rows", "must be at least 1"));
        }
        if p.tick_bytes == 0 {
            return Err(invalid("poll.tick_bytes", "must be at least 1"));
        }
        if p.snapshot_chunk_rows == 0 {
            return Err(invalid("poll.snapshot_chunk_rows", "must be at least 1"));
        }
        if self.tables.is_empty() {
            return Err(invalid("tables", "configure at least one [[tables]] entry"));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, t) in self.tables.iter().enumerate() {
            let field = format!("tables[{i}].name");
            let Some((schema, table)) = t.name.split_once('.') else {
                return Err(invalid(
                    field,
                    format!("{:?} must be schema.table, e.g. dbo.Orders", t.name),
                ));
            };
            for part in [schema, table] {
                validate_identifier(part).map_err(|reason| invalid(&field, format!("{:?}: {reason}", t.name)))?;
            }
            if !seen.insert(t.name.to_lowercase()) {
                return Err(invalid(field, format!("{:?} is listed twice", t.name)));
            }
            if let Some(columns) = &t.columns {
                if columns.is_empty() {
                    return Err(invalid(
                        format!("tables[{i}].columns"),
                        "omit it for all columns, or list at least one",
                    ));
                }
                for c in columns {
                    validate_identifier(c)
                        .map_err(|reason| invalid(format!("tables[{i}].columns"), format!("{c:?}: {reason}")))?;
                }
            }
        }
        let sinks = &self.sinks;
        if !sinks.pulsar.enabled && !sinks.redis_pubsub.enabled {
            return Err(invalid(
                "sinks",
                "enable at least one of sinks.pulsar and sinks.redis_pubsub",
            ));
        }
        if sinks.pulsar.enabled {
            if !(sinks.pulsar.url.starts_with("pulsar://") || sinks.pulsar.url.starts_with("pulsar+ssl://")) {
                return Err(invalid(
                    "sinks.pulsar.url",
                    "must start with pulsar:// or pulsar+ssl://",
                ));
            }
            validate_template("sinks.pulsar.topic", &sinks.pulsar.topic)?;
            if sinks.pulsar.send_timeout_ms == 0 {
                return Err(invalid("sinks.pulsar.send_timeout_ms", "must be at least 1"));
            }
            if sinks.pulsar.max_message_bytes <= 64 * 1024 {
                return Err(invalid(
                    "sinks.pulsar.max_message_bytes",
                    "must be more than 65536 (64 KiB); set it to the broker's maxMessageSize (default 5242880)",
                ));
            }
        }
        if sinks.redis_pubsub.enabled {
            validate_redis(&sinks.redis_pubsub.endpoint())?;
            validate_template("sinks.redis_pubsub.channel", &sinks.redis_pubsub.channel)?;
        }
        validate_redis(&self.checkpoint.endpoint())?;
        if self.checkpoint.key_prefix.is_empty() {
            return Err(invalid("checkpoint.key_prefix", "must not be empty"));
        }
        tracing_subscriber::EnvFilter::try_new(&self.log.level).map_err(|e| invalid("log.level", e.to_string()))?;
        Ok(())
    }
}

fn validate_identifier(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("empty name");
    }
    if name.len() > 128 {
        return Err("longer than SQL Server's 128-character limit");
    }
    if name.chars().any(|c| c.is_control() || c == ']' || c == '[') {
        return Err("brackets and control characters are not allowed");
    }
    Ok(())
}

fn validate_template(field: &str, template: &str) -> Result<(), ConfigError> {
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let Some(len) = rest[start..].find('}') else {
            return Err(invalid(field, "unclosed `{`"));
        };
        let name = &rest[start + 1..start + len];
        if !matches!(name, "database" | "schema" | "table") {
            return Err(invalid(
                field,
                format!("unknown placeholder {{{name}}}; use {{database}}, {{schema}}, {{table}}"),
            ));
        }
        rest = &rest[start + len + 1..];
    }
    if !template.contains("{table}") {
        return Err(invalid(
            field,
            "must contain {table}, or every table would share one stream",
        ));
    }
    Ok(())
}

/// Checks one Redis section: the URL parses, the TLS files are consistent, readable and
/// PEM, and the client builds. Each error names the field at fault.
fn validate_redis(endpoint: &RedisEndpoint<'_>) -> Result<(), ConfigError> {
    let section = endpoint.section;
    let info = redis::IntoConnectionInfo::into_connection_info(endpoint.url)
        .map_err(|e| invalid(format!("{section}.url"), e.to_string()))?;
    if let Some(username) = endpoint.username {
        if username.is_empty() || username.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid(
                format!("{section}.username"),
                "must be a non-empty ACL user name without spaces",
            ));
        }
    }
    match (endpoint.cert_file, endpoint.key_file) {
        (Some(_), None) => {
            return Err(invalid(
                format!("{section}.key_file"),
                format!("required with {section}.cert_file (the client certificate's private key)"),
            ))
        }
        (None, Some(_)) => {
            return Err(invalid(
                format!("{section}.cert_file"),
                format!("required with {section}.key_file (the certificate of that key)"),
            ))
        }
        _ => {}
    }
    let tls = matches!(info.addr(), redis::ConnectionAddr::TcpTls { .. });
    for (name, file) in [
        ("ca_file", endpoint.ca_file),
        ("cert_file", endpoint.cert_file),
        ("key_file", endpoint.key_file),
    ] {
        if file.is_some() && !tls {
            return Err(invalid(
                format!("{section}.{name}"),
                format!("TLS files need a rediss:// URL in {section}.url"),
            ));
        }
    }
    // Reads and checks the files (the messages name the field), then builds the client
    // as the sidecar will.
    redis_client(endpoint).map_err(|e| invalid(format!("{section}.url"), e.to_string()))?;
    Ok(())
}

/// One Redis section's connection settings (`[checkpoint]` or `[sinks.redis_pubsub]`),
/// borrowed from the configuration; [`redis_client`] builds the client.
#[derive(Debug, Clone, Copy)]
pub struct RedisEndpoint<'a> {
    /// The section's field prefix, for error messages: `checkpoint` or `sinks.redis_pubsub`.
    pub section: &'static str,
    /// `redis://` or `rediss://` URL.
    pub url: &'a str,
    /// ACL user, overriding one in the URL.
    pub username: Option<&'a str>,
    /// Password, overriding one in the URL.
    pub password: Option<&'a Secret>,
    /// PEM of a private CA to trust.
    pub ca_file: Option<&'a Path>,
    /// PEM client certificate (mutual TLS).
    pub cert_file: Option<&'a Path>,
    /// PEM key of `cert_file`.
    pub key_file: Option<&'a Path>,
}

impl CheckpointConfig {
    /// How to reach the checkpoint Redis.
    pub fn endpoint(&self) -> RedisEndpoint<'_> {
        RedisEndpoint {
            section: "checkpoint",
            url: &self.url,
            username: self.username.as_deref(),
            password: self.password.as_ref(),
            ca_file: self.ca_file.as_deref(),
            cert_file: self.cert_file.as_deref(),
            key_file: self.key_file.as_deref(),
        }
    }
}

impl RedisPubSubConfig {
    /// How to reach the Pub/Sub Redis.
    pub fn endpoint(&self) -> RedisEndpoint<'_> {
        RedisEndpoint {
            section: "sinks.redis_pubsub",
            url: &self.url,
            username: self.username.as_deref(),
            password: self.password.as_ref(),
            ca_file: self.ca_file.as_deref(),
            cert_file: self.cert_file.as_deref(),
            key_file: self.key_file.as_deref(),
        }
    }
}

/// Reads one of a section's PEM files; the error names the field.
fn read_pem(section: &str, name: &str, path: &Path, marker: &str) -> Result<Vec<u8>, redis::RedisError> {
    let fail = |detail: String| {
        redis::RedisError::from((
            redis::ErrorKind::InvalidClientConfig,
            "invalid Redis TLS file",
            format!("{section}.{name}: {}: {detail}", path.display()),
        ))
    };
    let bytes = std::fs::read(path).map_err(|e| fail(format!("cannot read: {e}")))?;
    if !String::from_utf8_lossy(&bytes).contains(marker) {
        return Err(fail(format!("not PEM (no `{marker}` block)")));
    }
    Ok(bytes)
}

/// Fills a topic or channel template for one table.
pub fn render_template(template: &str, database: &str, schema: &str, table: &str) -> String {
    template
        .replace("{database}", database)
        .replace("{schema}", schema)
        .replace("{table}", table)
}

/// A Redis client for a checkpoint or Pub/Sub section: its URL, with the section's
/// username and password when set, and over `rediss://` its CA and client certificate
/// files (rustls; the system roots unless a CA file is given).
pub fn redis_client(endpoint: &RedisEndpoint<'_>) -> Result<redis::Client, redis::RedisError> {
    let mut info = redis::IntoConnectionInfo::into_connection_info(endpoint.url)?;
    let mut settings = info.redis_settings().clone();
    if let Some(u) = endpoint.username {
        settings = settings.set_username(u);
    }
    if let Some(p) = endpoint.password {
        settings = settings.set_password(p.expose());
    }
    info = info.set_redis_settings(settings);
    if !matches!(info.addr(), redis::ConnectionAddr::TcpTls { .. }) {
        return redis::Client::open(info);
    }
    // rustls needs a process-wide crypto provider; pulsar's (aws-lc-rs) is the one built
    // in. An error only means one is installed already.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let section = endpoint.section;
    let root_cert = endpoint
        .ca_file
        .map(|p| read_pem(section, "ca_file", p, "-----BEGIN CERTIFICATE-----"))
        .transpose()?;
    let client_tls = match (endpoint.cert_file, endpoint.key_file) {
        (Some(cert), Some(key)) => Some(redis::ClientTlsConfig {
            client_cert: read_pem(section, "cert_file", cert, "-----BEGIN CERTIFICATE-----")?,
            client_key: read_pem(section, "key_file", key, "PRIVATE KEY-----")?,
        }),
        _ => None,
    };
    redis::Client::build_with_tls(info, redis::TlsCertificates { client_tls, root_cert })
}
