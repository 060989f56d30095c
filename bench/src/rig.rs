//! The test rig: the SQL Server stand-in with the sample `Shop` database (built by the
//! repository's migrations), the Pulsar stand-in and a real `redis-server`, all in this
//! process (Redis in its own), plus the sidecar in a child process so its CPU time and
//! memory can be read apart from everything else.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use cdc_sidecar::checkpoint::CheckpointStore;
use cdc_sidecar::config::Config;
use testkit::mssql::engine::Engine;
use testkit::mssql::sample;
use testkit::mssql::wire::{MssqlServer, MssqlServerConfig};
use testkit::pulsar::{PulsarStandin, PulsarStandinConfig};
use testkit::redis::RedisServer;

/// The database every scenario streams.
pub const DB: &str = sample::DATABASE;

/// How long any awaited condition (a checkpoint, the last batch) may take before the
/// run fails instead of hanging.
pub const DEADLINE: Duration = Duration::from_secs(600);

/// How long the sidecar may deliver nothing while changes are outstanding before the
/// run fails as stalled (e.g. it keeps failing its poll).
pub const STALL: Duration = Duration::from_secs(30);

/// The benchmark table's columns: the sample `sales.OrderLines` shape (every family of
/// types the sidecar maps) plus an offset timestamp, a note and an exact decimal, so a
/// row is ~200 bytes as SQL Server stores it.
pub const LINES_COLUMNS: &str = "[OrderId] bigint NOT NULL, [LineNo] smallint NOT NULL, [Sku] varchar(40) NOT NULL, \
     [Qty] int NOT NULL, [Price] money NOT NULL, [Weight] real NULL, [Discount] float NULL, [ShipDate] date NULL, \
     [ShipTime] time(3) NULL, [Payload] varbinary(max) NULL, [LegacyTs] datetime NULL, [Flags] tinyint NOT NULL, \
     [PlacedAt] datetimeoffset(7) NOT NULL, [Note] nvarchar(200) NULL, [Total] decimal(18, 2) NOT NULL, \
     PRIMARY KEY ([OrderId], [LineNo])";

/// `dbo.BenchLinesNN`, the name of benchmark table `i` (0-based).
pub fn lines_table(i: usize) -> String {
    format!("dbo.BenchLines{:02}", i + 1)
}

/// The stand-ins and Redis.
pub struct Rig {
    pub engine: Engine,
    pub mssql: MssqlServer,
    pub pulsar: PulsarStandin,
    pub redis: RedisServer,
}

impl Rig {
    /// Starts everything with an empty `Shop` prepared as the migrations prepare a
    /// database: change tracking on, snapshot isolation allowed, and the sidecar's
    /// login with SELECT and VIEW CHANGE TRACKING on `dbo`.
    pub async fn start() -> Result<Self> {
        let engine = Engine::new();
        sample::setup_empty(&engine).context("prepare database")?;
        Self::around(engine).await
    }

    /// Starts everything with the sample `Shop` database built by the repository's
    /// migrations (sample schema, change tracking, snapshot isolation, the login).
    pub async fn start_sample() -> Result<Self> {
        let engine = Engine::new();
        sample::setup(&engine).context("sample database")?;
        Self::around(engine).await
    }

    async fn around(engine: Engine) -> Result<Self> {
        let mssql = MssqlServer::start(Arc::new(engine.clone()), MssqlServerConfig::default())
            .await
            .context("SQL Server stand-in")?;
        let pulsar = PulsarStandin::start(PulsarStandinConfig::default())
            .await
            .context("Pulsar stand-in")?;
        let redis = RedisServer::start().context("redis-server")?;
        Ok(Self {
            engine,
            mssql,
            pulsar,
            redis,
        })
    }

    /// Creates `count` benchmark tables with change tracking (column tracking on, as
    /// migration 003 does); the sidecar's login reads `dbo` by migration 004.
    pub fn create_lines_tables(&self, count: usize) -> Result<Vec<String>> {
        let mut names = Vec::with_capacity(count);
        for i in 0..count {
            let name = lines_table(i);
            let (schema, table) = name.split_once('.').unwrap_or(("dbo", &name));
            self.engine
                .execute(
                    DB,
                    &format!(
                        "CREATE TABLE [{schema}].[{table}] ({LINES_COLUMNS});\n\
                         ALTER TABLE [{schema}].[{table}] ENABLE CHANGE_TRACKING WITH (TRACK_COLUMNS_UPDATED = ON);"
                    ),
                )
                .with_context(|| format!("create {name}"))?;
            names.push(name);
        }
        Ok(names)
    }

    /// `CHANGE_TRACKING_CURRENT_VERSION()` of `Shop`.
    pub fn version(&self) -> i64 {
        self.engine.current_version(DB).unwrap_or(0)
    }

    /// A sidecar configuration for `tables` with the shipped defaults (poll, batch
    /// sizes, compression) except where `extra` (TOML lines placed in `[poll]`) says
    /// otherwise. Tables start at the current version (`snapshot = "never"`).
    pub fn config_toml(&self, tables: &[String], poll_extra: &str, metrics_port: u16) -> String {
        let mut toml = format!(
            r#"[source]
host = "127.0.0.1"
port = {port}
database = "{DB}"
user = "{login}"
password = "{password}"
encryption = "off"

[poll]
{poll_extra}

[checkpoint]
url = "{redis}"

[sinks.pulsar]
url = "{pulsar}"
topic = "persistent://public/default/cdc.{{database}}.{{schema}}.{{table}}"

[sinks.redis_pubsub]
url = "{redis}"
channel = "cdc.{{database}}.{{schema}}.{{table}}"

[http]
listen = "127.0.0.1:{metrics_port}"

[log]
level = "warn,tiberius=error,pulsar::retry_op=error"
"#,
            port = self.mssql.addr().port(),
            login = sample::LOGIN,
            password = sample::PASSWORD,
            redis = self.redis.url(),
            pulsar = self.pulsar.url(),
        );
        for t in tables {
            toml.push_str(&format!("\n[[tables]]\nname = \"{t}\"\nsnapshot = \"never\"\n"));
        }
        toml
    }

    /// The checkpoint store the sidecar of `config` uses.
    pub async fn checkpoints(&self, config: &Config) -> Result<cdc_sidecar::checkpoint::RedisCheckpointStore> {
        Ok(cdc_sidecar::checkpoint_store(config).await?)
    }

    /// Sets every table's checkpoint (as `cdc-sidecar checkpoint set` does), so a
    /// sidecar started next reads the changes after `version`.
    pub async fn set_checkpoints(&self, config: &Config, version: i64) -> Result<()> {
        let store = self.checkpoints(config).await?;
        for t in &config.tables {
            store.reset(&t.name, version, 0, None).await?;
        }
        Ok(())
    }

    /// Waits until every table of `config` has a checkpoint: the sidecar has started
    /// and recorded where it streams from.
    pub async fn wait_started(&self, config: &Config, sidecar: &mut SidecarProcess) -> Result<()> {
        let store = self.checkpoints(config).await?;
        let started = Instant::now();
        for t in &config.tables {
            while store.load(&t.name).await?.is_none() {
                sidecar.check_alive()?;
                if started.elapsed() > DEADLINE {
                    bail!("the sidecar did not record a checkpoint for {} in {DEADLINE:?}", t.name);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        Ok(())
    }
}

/// A free loopback port for the sidecar's HTTP endpoints.
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The sidecar in a child process: this binary re-executed as `cdc-bench sidecar
/// --config <file>`, which runs `cdc_sidecar::run` like the `cdc-sidecar` binary. It
/// stops when its stdin closes.
pub struct SidecarProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    metrics_port: u16,
    _config: TempFile,
}

impl SidecarProcess {
    /// Writes `toml` to a file and starts the child on it.
    pub fn spawn(exe: &Path, toml: &str, metrics_port: u16) -> Result<Self> {
        let path = std::env::temp_dir().join(format!("cdc-bench-{}-{metrics_port}.toml", std::process::id()));
        std::fs::write(&path, toml)?;
        let config = TempFile(path.clone());
        let mut child = Command::new(exe)
            .arg("sidecar")
            .arg("--config")
            .arg(&path)
            .stdin(Stdio::piped())
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("start {}", exe.display()))?;
        let stdin = child.stdin.take();
        Ok(Self {
            child,
            stdin,
            metrics_port,
            _config: config,
        })
    }

    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails if the child has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("the sidecar exited early: {status}");
        }
        Ok(())
    }

    /// CPU time and memory of the child now.
    pub fn usage(&self) -> Result<ProcUsage> {
        ProcUsage::read(self.pid())
    }

    /// The child's `/metrics` exposition.
    pub async fn metrics(&self) -> Result<String> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", self.metrics_port)).await?;
        stream
            .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .await?;
        let mut body = String::new();
        stream.read_to_string(&mut body).await?;
        Ok(body)
    }

    /// The sum of every sample of metric `name` (all label sets) in the child's
    /// exposition, e.g. `cdc_sidecar_probes_total`.
    pub async fn metric_sum(&self, name: &str, label_filter: &str) -> Result<f64> {
        let text = self.metrics().await?;
        Ok(text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| l.starts_with(name) && matches!(l.as_bytes().get(name.len()), Some(b'{' | b' ')))
            .filter(|l| l.contains(label_filter))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum())
    }

    /// Closes stdin (the child's shutdown signal) and waits for a clean exit.
    pub async fn stop(mut self) -> Result<ProcUsage> {
        let usage = self.usage()?;
        drop(self.stdin.take());
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                if !status.success() {
                    bail!("the sidecar stopped with {status}");
                }
                return Ok(usage);
            }
            if started.elapsed() > Duration::from_secs(30) {
                let _ = self.child.kill();
                bail!("the sidecar did not stop within 30 s of its stdin closing");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl Drop for SidecarProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

struct TempFile(PathBuf);
impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A process's CPU time so far and its memory, from `/proc`.
#[derive(Debug, Clone, Copy)]
pub struct ProcUsage {
    /// User + system CPU seconds.
    pub cpu_secs: f64,
    /// Resident set size now, bytes.
    pub rss: u64,
    /// Peak resident set size (VmHWM), bytes.
    pub peak_rss: u64,
}

impl ProcUsage {
    /// Reads `/proc/<pid>/stat` (utime, stime) and `/proc/<pid>/status` (VmRSS, VmHWM).
    pub fn read(pid: u32) -> Result<Self> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        // The command name may hold spaces; fields are counted after its closing ')'.
        let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let fields: Vec<&str> = after.split_whitespace().collect();
        // After ')': state is field 3, so utime (14) and stime (15) are at 11 and 12.
        let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
        let cpu_secs = (ticks(11) + ticks(12)) as f64 / clock_ticks() as f64;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let kb = |key: &str| {
            status
                .lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
                * 1024
        };
        Ok(Self {
            cpu_secs,
            rss: kb("VmRSS:"),
            peak_rss: kb("VmHWM:"),
        })
    }
}

fn clock_ticks() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100)
    })
}
