//! Every statement the sidecar sends, run against a real SQL Server and a real Pulsar
//! when `CDC_SIDECAR_MSSQL_URL` (an ADO.NET connection string of a login that may
//! create databases, e.g. `sa`) and `CDC_SIDECAR_PULSAR_URL` are set:
//!
//! ```sh
//! docker compose -f docker/compose.yml up -d mssql redis pulsar
//! CDC_SIDECAR_MSSQL_URL='server=tcp:127.0.0.1,1433;user=sa;password=Sidecar-Sa-Pass-1;TrustServerCertificate=true' \
//! CDC_SIDECAR_PULSAR_URL=pulsar://127.0.0.1:6650 cargo test --test real_servers
//! ```
//!
//! Without them the very same scenarios run against the stand-ins (the SQL Server one
//! behind TLS, logged in as `sa`), so this file is exercised on every run and the first
//! person with a real server runs code that is known to work. Each scenario creates its
//! own database and drops it at the end. Redis is always a local `redis-server`.
//!
//! What is covered, by `docs/sql-surface.md` section: the startup check (identity,
//! settings, access, tracking, columns through an alias type, primary key); the tick
//! (a plain-batch `SET TRANSACTION ISOLATION LEVEL SNAPSHOT; BEGIN TRANSACTION`, the
//! discover query, `CHANGETABLE(CHANGES …)` joined to the table, `COMMIT`), including a
//! transaction that commits while ticks run; TRUNCATE of a caught-up table (a resync);
//! the keyset-paginated snapshot over a `varchar` key with `-`, `'` and mixed case; the
//! bounded `TOP` statements continuing inside a version by key; the incarnation query
//! (`sys.database_recovery_status`) and the discover query's `sys.tables.modify_date`,
//! which every scenario's sidecar runs.

mod support;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cdc_sidecar::config::Config;
use cdc_sidecar::source::sql;
use futures_util::TryStreamExt;
use pulsar::consumer::InitialPosition;
use pulsar::{Consumer, ConsumerOptions, Pulsar, SubType, TokioExecutor};
use serde_json::Value;
use support::{changes, of_kind, subscribe, Subscriber};
use testkit::mssql::engine::Engine;
use testkit::mssql::wire::{MssqlServer, MssqlServerConfig, TlsSettings};
use testkit::pulsar::{PulsarStandin, PulsarStandinConfig};
use testkit::redis::RedisServer;
use tiberius::error::Error as TdsError;
use tokio::net::TcpStream;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};
use tokio_util::sync::CancellationToken;

type Client = tiberius::Client<Compat<TcpStream>>;

/// A real server is slower to set up than the stand-in.
const DEADLINE: Duration = Duration::from_secs(60);

/// The `sa` password of the stand-in, the same as docker/compose.yml's.
const STANDIN_SA_PASSWORD: &str = "Sidecar-Sa-Pass-1";

/// SQL Server: the real one named by `CDC_SIDECAR_MSSQL_URL`, or the stand-in.
struct Mssql {
    url: String,
    real: bool,
    _standin: Option<MssqlServer>,
}

async fn mssql() -> Mssql {
    support::init_tracing();
    if let Ok(url) = std::env::var("CDC_SIDECAR_MSSQL_URL") {
        return Mssql {
            url,
            real: true,
            _standin: None,
        };
    }
    let engine = Engine::with_sa_password(STANDIN_SA_PASSWORD);
    let server = MssqlServer::start(
        Arc::new(engine),
        MssqlServerConfig {
            tls: Some(TlsSettings::self_signed(&["localhost"]).expect("certificate")),
            ..MssqlServerConfig::default()
        },
    )
    .await
    .expect("SQL Server stand-in");
    Mssql {
        url: format!(
            "server=tcp:127.0.0.1,{};user=sa;password={STANDIN_SA_PASSWORD};TrustServerCertificate=true",
            server.addr().port()
        ),
        real: false,
        _standin: Some(server),
    }
}

/// `server=tcp:host,port;user id=…;password=…` → (host, port, user, password).
fn parse_ado(url: &str) -> (String, u16, String, String) {
    let kv: HashMap<String, String> = url
        .split(';')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let server = kv
        .get("server")
        .or(kv.get("data source"))
        .expect("server=")
        .trim_start_matches("tcp:")
        .to_string();
    let (host, port) = match server.split_once(',') {
        Some((h, p)) => (h.to_string(), p.parse().expect("port")),
        None => (server, 1433),
    };
    let user = kv
        .get("user id")
        .or(kv.get("user"))
        .or(kv.get("uid"))
        .expect("user id=")
        .clone();
    let password = kv.get("password").or(kv.get("pwd")).expect("password=").clone();
    (host, port, user, password)
}

async fn connect(url: &str, database: Option<&str>) -> Client {
    let mut config = tiberius::Config::from_ado_string(url).expect("ADO connection string");
    if let Some(db) = database {
        config.database(db);
    }
    config.trust_cert();
    let tcp = TcpStream::connect(config.get_addr()).await.expect("reach SQL Server");
    tcp.set_nodelay(true).unwrap();
    tiberius::Client::connect(config, tcp.compat_write())
        .await
        .expect("log in to SQL Server")
}

async fn exec(c: &mut Client, sql: &str) {
    if let Err(e) = async { c.simple_query(sql).await?.into_results().await }.await {
        panic!("{sql}\n→ {e}");
    }
}

/// The first column of the first row of a plain batch, as bigint.
async fn scalar(c: &mut Client, sql: &str) -> Option<i64> {
    let row = c.simple_query(sql).await.unwrap().into_row().await.unwrap().unwrap();
    row.try_get::<i64, _>(0).unwrap()
}

/// A scratch database with Change Tracking on and SNAPSHOT allowed, as the migrations
/// leave it; dropped by [`Scratch::drop_database`].
struct Scratch {
    server: Mssql,
    name: String,
    admin: Client,
}

impl Scratch {
    async fn create(tag: &str) -> Scratch {
        let server = mssql().await;
        let name = format!("cdc_it_{}_{tag}", std::process::id());
        let mut master = connect(&server.url, None).await;
        exec(&mut master, &format!("CREATE DATABASE [{name}]")).await;
        let mut admin = connect(&server.url, Some(&name)).await;
        exec(
            &mut admin,
            "ALTER DATABASE CURRENT SET CHANGE_TRACKING = ON (CHANGE_RETENTION = 1 DAYS, AUTO_CLEANUP = ON)",
        )
        .await;
        exec(&mut admin, "ALTER DATABASE CURRENT SET ALLOW_SNAPSHOT_ISOLATION ON").await;
        Scratch { server, name, admin }
    }

    async fn sql(&mut self, sql: &str) {
        exec(&mut self.admin, sql).await;
    }

    async fn current_version(&mut self) -> i64 {
        scalar(&mut self.admin, "SELECT CHANGE_TRACKING_CURRENT_VERSION()")
            .await
            .expect("change tracking is on")
    }

    /// A sidecar configuration for `tables` (TOML `[[tables]]` bodies).
    fn config(&self, redis: &RedisServer, pulsar_url: &str, poll: &str, tables: &[&str]) -> Config {
        let (host, port, user, password) = parse_ado(&self.server.url);
        let mut toml = format!(
            r#"
[source]
host = "{host}"
port = {port}
database = "{db}"
user = "{user}"
password = "{password}"
encryption = "required"
trust_server_certificate = true
[poll]
min_interval_ms = 20
max_interval_ms = 200
{poll}
[checkpoint]
url = "{redis}"
idle_write_interval_ms = 100
[sinks.pulsar]
url = "{pulsar_url}"
[sinks.redis_pubsub]
url = "{redis}"
[http]
listen = "127.0.0.1:0"
"#,
            db = self.name,
            redis = redis.url(),
        );
        for t in tables {
            toml.push_str("\n[[tables]]\n");
            toml.push_str(t);
            toml.push('\n');
        }
        Config::from_toml_str(&toml).expect("test config")
    }

    fn channel(&self, table: &str) -> String {
        format!("cdc:{}.{table}", self.name)
    }

    async fn drop_database(mut self) {
        drop(self.admin);
        let mut master = connect(&self.server.url, None).await;
        if self.server.real {
            // Sessions of the stopped sidecar may linger a moment on a real server.
            exec(
                &mut master,
                &format!("ALTER DATABASE [{}] SET SINGLE_USER WITH ROLLBACK IMMEDIATE", self.name),
            )
            .await;
        }
        exec(&mut master, &format!("DROP DATABASE [{}]", self.name)).await;
        self.name.clear();
    }
}

/// Pulsar: the real one named by `CDC_SIDECAR_PULSAR_URL`, or the stand-in.
struct PulsarTarget {
    url: String,
    _standin: Option<PulsarStandin>,
}

async fn pulsar() -> PulsarTarget {
    if let Ok(url) = std::env::var("CDC_SIDECAR_PULSAR_URL") {
        return PulsarTarget { url, _standin: None };
    }
    let standin = PulsarStandin::start(PulsarStandinConfig::default())
        .await
        .expect("Pulsar stand-in");
    PulsarTarget {
        url: standin.url(),
        _standin: Some(standin),
    }
}

/// Waits until the envelopes on `channel` satisfy `ok`, and returns them.
async fn wait_envelopes(sub: &Subscriber, channel: &str, what: &str, ok: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let start = Instant::now();
    loop {
        let seen = sub.on(channel);
        if ok(&seen) {
            return seen;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "timed out waiting for {what}; saw {seen:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The `Id` of each change on `envelopes`, with its operation.
fn ops(envelopes: &[Value]) -> Vec<(String, i64)> {
    changes(envelopes)
        .iter()
        .map(|c| {
            let id = &c["key"]["Id"];
            // bigint keys are JSON strings (lossless), int keys numbers.
            let id = id.as_i64().or_else(|| id.as_str().and_then(|s| s.parse().ok()));
            (c["op"].as_str().unwrap_or_default().to_string(), id.unwrap_or(-1))
        })
        .collect()
}

struct Running {
    token: CancellationToken,
    handle: tokio::task::JoinHandle<Result<(), cdc_sidecar::RunError>>,
}

fn spawn(config: Config) -> Running {
    let token = CancellationToken::new();
    let handle = tokio::spawn(cdc_sidecar::run(config, token.clone()));
    Running { token, handle }
}

impl Running {
    async fn stop(self) {
        self.token.cancel();
        tokio::time::timeout(DEADLINE, self.handle)
            .await
            .expect("sidecar stops in time")
            .unwrap()
            .expect("clean stop");
    }
}

/// The first row of `sql` sent as an RPC (`sp_executesql`), as the sidecar sends its
/// queries.
async fn rpc_row(c: &mut Client, sql: &str) -> tiberius::Row {
    c.query(sql, &[])
        .await
        .unwrap()
        .into_row()
        .await
        .unwrap()
        .expect("a row")
}

/// SQL Server's error number, if `e` is a server error.
fn server_error(e: &TdsError) -> Option<u32> {
    match e {
        TdsError::Server(t) => Some(t.code()),
        _ => None,
    }
}

/// The tick's opening statement must go as a plain batch: through `sp_executesql` (a
/// module) SQL Server raises 266 for the unbalanced BEGIN and reverts the SET when the
/// module returns. Sent as the sidecar sends it, the transaction and SNAPSHOT level
/// hold for the following RPCs until COMMIT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tick_transaction_opens_in_a_plain_batch_and_holds_across_rpcs() {
    let mut db = Scratch::create("tick").await;
    let mut c = connect(&db.server.url, Some(&db.name)).await;
    let isolation = "SELECT transaction_isolation_level FROM sys.dm_exec_sessions WHERE session_id = @@SPID";

    // WHEN the statement goes through sp_executesql (Client::query)
    let err = async { c.query(sql::BEGIN_SNAPSHOT, &[]).await?.into_results().await }
        .await
        .expect_err("SQL Server refuses a module that leaves a transaction open");
    // THEN 266, the transaction is left open, and the isolation level reverted.
    assert_eq!(server_error(&err), Some(266), "{err}");
    let trancount = rpc_row(&mut c, "SELECT @@TRANCOUNT").await;
    assert_eq!(trancount.get::<i32, _>(0), Some(1));
    let level = rpc_row(&mut c, isolation).await;
    assert_eq!(level.get::<i16, _>(0), Some(2), "READ COMMITTED again after the module");
    exec(&mut c, "ROLLBACK TRANSACTION").await;

    // WHEN sent as the sidecar sends it (a plain batch)
    let upper = cdc_sidecar::source::batch_scalar_i64(&mut c, sql::BEGIN_SNAPSHOT)
        .await
        .unwrap()
        .expect("change tracking is on");
    // THEN the following RPCs run inside one SNAPSHOT transaction.
    let trancount = rpc_row(&mut c, "SELECT @@TRANCOUNT").await;
    assert_eq!(trancount.get::<i32, _>(0), Some(1));
    let level = rpc_row(&mut c, isolation).await;
    assert_eq!(level.get::<i16, _>(0), Some(5), "SNAPSHOT");
    // A write committed elsewhere is invisible to the open snapshot.
    db.sql("CREATE TABLE [dbo].[T] ([Id] int NOT NULL PRIMARY KEY)").await;
    db.sql("ALTER TABLE [dbo].[T] ENABLE CHANGE_TRACKING").await;
    db.sql("INSERT INTO [dbo].[T] VALUES (1)").await;
    let inside = cdc_sidecar::source::query_scalar_i64(&mut c, sql::PROBE, &[])
        .await
        .unwrap();
    assert_eq!(inside, Some(upper), "the snapshot still sees the version it began at");
    c.simple_query(sql::COMMIT).await.unwrap().into_results().await.unwrap();
    let trancount = rpc_row(&mut c, "SELECT @@TRANCOUNT").await;
    assert_eq!(trancount.get::<i32, _>(0), Some(0));
    let after = cdc_sidecar::source::query_scalar_i64(&mut c, sql::PROBE, &[])
        .await
        .unwrap();
    assert!(after > Some(upper), "after COMMIT the new version is seen");
    drop(c);
    db.drop_database().await;
}

/// The whole pipeline over a table with an alias-typed column: the startup check, the
/// discover query and CHANGETABLE joined to the table; a transaction opened before a
/// tick and committed after it arrives whole, in commit order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_with_alias_types_and_a_transaction_committing_during_ticks_arrive() {
    let mut db = Scratch::create("stream").await;
    db.sql("CREATE TYPE [dbo].[CustomerName] FROM nvarchar(100) NOT NULL")
        .await;
    db.sql("CREATE TABLE [dbo].[Orders] ([Id] bigint NOT NULL PRIMARY KEY, [Customer] [dbo].[CustomerName], [Total] decimal(12,2) NULL)")
        .await;
    db.sql("ALTER TABLE [dbo].[Orders] ENABLE CHANGE_TRACKING WITH (TRACK_COLUMNS_UPDATED = ON)")
        .await;
    let redis = RedisServer::start().unwrap();
    let pulsar = pulsar().await;
    let sub = subscribe(&redis.url()).await;
    let config = db.config(
        &redis,
        &pulsar.url,
        "",
        &["name = \"dbo.Orders\"\nsnapshot = \"never\""],
    );
    let report = cdc_sidecar::check(&config).await.expect("startup check runs");
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let sidecar = spawn(config);
    let channel = db.channel("dbo.Orders");
    // snapshot = "never" starts at the version current when the sidecar starts.
    let key = format!("cdc-sidecar:checkpoint:{}:dbo.Orders", db.name);
    wait_checkpoint(&redis, &key, "the sidecar to start", |_| true).await;

    db.sql("INSERT INTO [dbo].[Orders] VALUES (1, N'alias', 10.50)").await;
    let first = wait_envelopes(&sub, &channel, "the first insert", |e| {
        ops(e).contains(&("insert".into(), 1))
    })
    .await;
    let row = &changes(&first)[0]["row"];
    assert_eq!(
        row["Customer"], "alias",
        "the alias type is encoded as its base nvarchar"
    );
    assert_eq!(row["Total"], "10.50");

    // GIVEN a transaction that stays open while the sidecar ticks on other changes
    let mut writer = connect(&db.server.url, Some(&db.name)).await;
    exec(
        &mut writer,
        "BEGIN TRANSACTION; INSERT INTO [dbo].[Orders] VALUES (2, N'late', 1.00)",
    )
    .await;
    db.sql("INSERT INTO [dbo].[Orders] VALUES (3, N'meanwhile', 3.00)")
        .await;
    wait_envelopes(&sub, &channel, "the insert committed meanwhile", |e| {
        ops(e).contains(&("insert".into(), 3))
    })
    .await;
    // WHEN it commits after those ticks
    exec(
        &mut writer,
        "UPDATE [dbo].[Orders] SET [Total] = 2.00 WHERE [Id] = 1; COMMIT TRANSACTION",
    )
    .await;
    // THEN both of its changes arrive, after the change that committed first.
    let all = wait_envelopes(&sub, &channel, "the late transaction", |e| {
        ops(e).contains(&("insert".into(), 2)) && ops(e).iter().filter(|o| o.1 == 1).count() == 2
    })
    .await;
    let order: Vec<i64> = ops(&all).iter().map(|o| o.1).collect();
    let pos = |id: i64| order.iter().rposition(|&x| x == id).unwrap();
    assert!(pos(3) < pos(2), "commit order: {order:?}");
    sidecar.stop().await;
    drop(writer);
    db.drop_database().await;
}

/// TRUNCATE of a tracked table leaves no rows in CHANGETABLE and moves the minimum
/// valid version past every checkpoint ("TRUNCATE TABLE (Transact-SQL)" and "Work with
/// change tracking"): a table fully caught up must still be resynced, never silently
/// left with rows its consumers think exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncate_of_a_caught_up_table_announces_a_resync_and_snapshots_again() {
    let mut db = Scratch::create("truncate").await;
    db.sql("CREATE TABLE [dbo].[Items] ([Id] int NOT NULL PRIMARY KEY, [Name] nvarchar(20) NULL)")
        .await;
    db.sql("ALTER TABLE [dbo].[Items] ENABLE CHANGE_TRACKING").await;
    db.sql("INSERT INTO [dbo].[Items] VALUES (1, N'a'), (2, N'b')").await;
    let redis = RedisServer::start().unwrap();
    let pulsar = pulsar().await;
    let sub = subscribe(&redis.url()).await;
    let config = db.config(&redis, &pulsar.url, "", &["name = \"dbo.Items\"\nsnapshot = \"never\""]);
    let sidecar = spawn(config);
    let channel = db.channel("dbo.Items");
    let caught_up = db.current_version().await;
    let key = format!("cdc-sidecar:checkpoint:{}:dbo.Items", db.name);
    wait_checkpoint(&redis, &key, "the table to be caught up", |v| v >= caught_up).await;

    db.sql("TRUNCATE TABLE [dbo].[Items]").await;
    db.sql("INSERT INTO [dbo].[Items] VALUES (3, N'c')").await;
    let seen = wait_envelopes(&sub, &channel, "a resync and the new snapshot", |e| {
        !of_kind(e, "resync").is_empty() && of_kind(e, "snapshot").iter().any(|s| s["snapshot"]["last"] == true)
    })
    .await;
    let snapshot: BTreeSet<i64> = changes(&of_kind(&seen, "snapshot"))
        .iter()
        .map(|c| c["key"]["Id"].as_i64().unwrap())
        .collect();
    assert_eq!(
        snapshot,
        BTreeSet::from([3]),
        "the snapshot is the table after TRUNCATE"
    );
    sidecar.stop().await;
    db.drop_database().await;
}

/// Keyset pagination binds the last key as the column's declared type: a varchar key
/// compared with an nvarchar parameter follows Unicode rules while ORDER BY follows the
/// SQL collation, and they disagree on `-` and `'` (KB 322112). With chunks of 3, every
/// row arrives exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_over_a_varchar_key_with_hyphens_apostrophes_and_case_returns_every_row_once() {
    let mut db = Scratch::create("varchar").await;
    db.sql("CREATE TYPE [dbo].[Code] FROM varchar(20)").await;
    db.sql("CREATE TABLE [dbo].[Codes] ([Code] [dbo].[Code] NOT NULL PRIMARY KEY, [N] int NOT NULL)")
        .await;
    db.sql("ALTER TABLE [dbo].[Codes] ENABLE CHANGE_TRACKING").await;
    let keys = [
        "a", "a-b", "a'c", "ab", "AC", "ad", "b", "B-A", "b'b", "ba", "co-op", "coop", "Co-Op2", "coq", "c'o", "d",
        "D-1", "d1", "e-", "e'",
    ];
    for (n, k) in keys.iter().enumerate() {
        db.sql(&format!(
            "INSERT INTO [dbo].[Codes] VALUES ('{}', {n})",
            k.replace('\'', "''")
        ))
        .await;
    }
    let redis = RedisServer::start().unwrap();
    let pulsar = pulsar().await;
    let sub = subscribe(&redis.url()).await;
    let config = db.config(
        &redis,
        &pulsar.url,
        "snapshot_chunk_rows = 3\nbatch_rows = 2",
        &["name = \"dbo.Codes\"\nsnapshot = \"initial\""],
    );
    let sidecar = spawn(config);
    let seen = wait_envelopes(&sub, &db.channel("dbo.Codes"), "the whole snapshot", |e| {
        of_kind(e, "snapshot").iter().any(|s| s["snapshot"]["last"] == true)
    })
    .await;
    let got: Vec<String> = changes(&of_kind(&seen, "snapshot"))
        .iter()
        .map(|c| c["key"]["Code"].as_str().unwrap().to_string())
        .collect();
    let mut sorted = got.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), got.len(), "no row twice: {got:?}");
    let mut want: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    want.sort();
    assert_eq!(sorted, want, "every row once");
    sidecar.stop().await;
    db.drop_database().await;
}

/// A transaction larger than one statement's `TOP` is read in bounded statements, each
/// continuing inside the version after the last key (`SYS_CHANGE_VERSION = v AND key >
/// CAST(@P AS <type>)`), as batches ending at parts of the version: every change once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_larger_than_a_statement_is_read_in_bounded_statements_exactly_once() {
    let mut db = Scratch::create("bounded").await;
    db.sql("CREATE TABLE [dbo].[Lines] ([Id] int NOT NULL PRIMARY KEY, [Qty] int NOT NULL)")
        .await;
    db.sql("ALTER TABLE [dbo].[Lines] ENABLE CHANGE_TRACKING").await;
    let redis = RedisServer::start().unwrap();
    let pulsar = pulsar().await;
    let sub = subscribe(&redis.url()).await;
    let config = db.config(
        &redis,
        &pulsar.url,
        "statement_rows = 7\nbatch_rows = 5",
        &["name = \"dbo.Lines\"\nsnapshot = \"never\""],
    );
    let sidecar = spawn(config);
    let key = format!("cdc-sidecar:checkpoint:{}:dbo.Lines", db.name);
    wait_checkpoint(&redis, &key, "the sidecar to start", |_| true).await;
    let values: Vec<String> = (1..=50).map(|i| format!("({i}, {i})")).collect();
    db.sql(&format!("INSERT INTO [dbo].[Lines] VALUES {}", values.join(", ")))
        .await;
    let version = db.current_version().await;
    let seen = wait_envelopes(&sub, &db.channel("dbo.Lines"), "the whole transaction", |e| {
        e.iter()
            .any(|b| b["to"] == serde_json::json!({"version": version, "part": null}))
    })
    .await;
    let ids: Vec<i64> = changes(&seen)
        .iter()
        .map(|c| c["key"]["Id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, (1..=50).collect::<Vec<i64>>(), "every change once, in key order");
    assert!(
        seen.iter().any(|b| b["to"]["part"].is_u64()),
        "the version was split into parts"
    );
    sidecar.stop().await;
    db.drop_database().await;
}

/// Waits (a real server is slower) until the checkpoint under `key` satisfies `ok`.
async fn wait_checkpoint(redis: &RedisServer, key: &str, what: &str, ok: impl Fn(i64) -> bool) {
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let deadline = Instant::now() + DEADLINE;
    loop {
        let v: Option<String> = redis::cmd("HGET")
            .arg(key)
            .arg("version")
            .query_async(&mut conn)
            .await
            .unwrap();
        if v.and_then(|v| v.parse::<i64>().ok()).is_some_and(&ok) {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The Pulsar sink's batches come back from the broker as they were sent, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulsar_accepts_the_sinks_batches_and_gives_them_back() {
    use cdc_sidecar::envelope::{Batch, BatchKind, OpCounts, Position, Route};
    use cdc_sidecar::sink::{PulsarSink, Sink};
    let target = pulsar().await;
    let url = target.url.clone();
    let topic = format!("persistent://public/default/cdc-it-{}", std::process::id());
    let route = Arc::new(Route {
        table: "dbo.T".into(),
        topic: topic.clone(),
        channel: "c".into(),
    });
    let mut config = cdc_sidecar::config::PulsarConfig {
        url: url.clone(),
        ..Default::default()
    };
    config.compression = cdc_sidecar::config::Compression::Zstd;
    let sink = PulsarSink::connect(&config, std::slice::from_ref(&route), "cdc-it")
        .await
        .unwrap();
    let client = Pulsar::builder(url.as_str(), TokioExecutor).build().await.unwrap();
    let mut consumer: Consumer<Vec<u8>, _> = client
        .consumer()
        .with_topic(&topic)
        .with_subscription("it")
        .with_subscription_type(SubType::Exclusive)
        .with_options(ConsumerOptions::default().with_initial_position(InitialPosition::Earliest))
        .build()
        .await
        .unwrap();
    for v in 1..=3 {
        let batch = Batch {
            route: route.clone(),
            kind: BatchKind::Changes,
            seq: v as u64,
            from: Position::complete(v - 1),
            to: Position::complete(v),
            split_key: None,
            ops: OpCounts::default(),
            payload: format!("{{\"to_version\":{v}}}").into_bytes().into(),
        };
        sink.publish(&batch).await.unwrap();
    }
    for v in 1..=3 {
        let msg = tokio::time::timeout(DEADLINE, consumer.try_next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(msg.payload.data, format!("{{\"to_version\":{v}}}").into_bytes());
        consumer.ack(&msg).await.unwrap();
    }
    sink.close().await;
}
