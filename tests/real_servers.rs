//! The same pipeline against a real SQL Server and a real Pulsar (e.g. from
//! `docker compose -f docker/compose.yml up`). Skipped unless `CDC_SIDECAR_MSSQL_URL`
//! (an ADO.NET connection string of a login that may create databases) and/or
//! `CDC_SIDECAR_PULSAR_URL` are set; Redis is always the local `redis-server`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use cdc_sidecar::config::Config;
use futures_util::TryStreamExt;
use pulsar::consumer::InitialPosition;
use pulsar::{Consumer, ConsumerOptions, Pulsar, SubType, TokioExecutor};
use testkit::redis::RedisServer;
use tokio::net::TcpStream;
use tokio_util::compat::TokioAsyncWriteCompatExt;
use tokio_util::sync::CancellationToken;

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

async fn admin(url: &str, database: Option<&str>) -> tiberius::Client<tokio_util::compat::Compat<TcpStream>> {
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

/// Waits (60 s at most: a real server is slower to set up) until the checkpoint under
/// `key` satisfies `ok`.
async fn wait_checkpoint(redis: &RedisServer, key: &str, what: &str, ok: impl Fn(i64) -> bool) {
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_sql_server_changes_reach_redis() {
    let Ok(url) = std::env::var("CDC_SIDECAR_MSSQL_URL") else {
        eprintln!("skipped: CDC_SIDECAR_MSSQL_URL is not set");
        return;
    };
    let (host, port, user, password) = parse_ado(&url);
    let db = format!("cdc_it_{}", std::process::id());
    let mut master = admin(&url, None).await;
    master
        .simple_query(format!("CREATE DATABASE [{db}]"))
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap();
    let mut c = admin(&url, Some(&db)).await;
    for stmt in [
        "ALTER DATABASE CURRENT SET CHANGE_TRACKING = ON (CHANGE_RETENTION = 1 DAYS, AUTO_CLEANUP = ON)".to_string(),
        "ALTER DATABASE CURRENT SET ALLOW_SNAPSHOT_ISOLATION ON".to_string(),
        "CREATE TABLE [dbo].[Orders] ([Id] bigint NOT NULL PRIMARY KEY, [Customer] nvarchar(100) NOT NULL)".to_string(),
        "ALTER TABLE [dbo].[Orders] ENABLE CHANGE_TRACKING WITH (TRACK_COLUMNS_UPDATED = ON)".to_string(),
    ] {
        c.simple_query(stmt).await.unwrap().into_results().await.unwrap();
    }
    let redis = RedisServer::start().unwrap();
    let pulsar_url = std::env::var("CDC_SIDECAR_PULSAR_URL").ok();
    let toml = format!(
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
[[tables]]
name = "dbo.Orders"
snapshot = "never"
[checkpoint]
url = "{redis}"
[sinks.pulsar]
enabled = {pulsar_on}
url = "{pulsar}"
[sinks.redis_pubsub]
url = "{redis}"
[http]
listen = "127.0.0.1:0"
"#,
        redis = redis.url(),
        pulsar_on = pulsar_url.is_some(),
        pulsar = pulsar_url.clone().unwrap_or_else(|| "pulsar://127.0.0.1:6650".into()),
    );
    let config = Config::from_toml_str(&toml).unwrap();
    let token = CancellationToken::new();
    let handle = tokio::spawn(cdc_sidecar::run(config, token.clone()));
    let key = format!("cdc-sidecar:checkpoint:{db}:dbo.Orders");
    wait_checkpoint(&redis, &key, "the sidecar to start", |_| true).await;
    c.simple_query("INSERT INTO [dbo].[Orders] VALUES (1, N'real')")
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap();
    let row = c
        .simple_query("SELECT CHANGE_TRACKING_CURRENT_VERSION()")
        .await
        .unwrap()
        .into_row()
        .await
        .unwrap()
        .unwrap();
    let version: i64 = row.get(0).unwrap();
    wait_checkpoint(&redis, &key, "the insert to be delivered", |v| v == version).await;
    token.cancel();
    handle.await.unwrap().unwrap();
    drop(c);
    master
        .simple_query(format!(
            "ALTER DATABASE [{db}] SET SINGLE_USER WITH ROLLBACK IMMEDIATE; DROP DATABASE [{db}]"
        ))
        .await
        .unwrap()
        .into_results()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_pulsar_accepts_the_sinks_batches_and_gives_them_back() {
    let Ok(url) = std::env::var("CDC_SIDECAR_PULSAR_URL") else {
        eprintln!("skipped: CDC_SIDECAR_PULSAR_URL is not set");
        return;
    };
    use cdc_sidecar::sink::{Batch, BatchKind, OpCounts, PulsarSink, Route, Sink};
    let topic = format!("persistent://public/default/cdc-it-{}", std::process::id());
    let route = std::sync::Arc::new(Route {
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
            from_version: v - 1,
            to_version: v,
            ops: OpCounts::default(),
            payload: format!("{{\"to_version\":{v}}}").into_bytes().into(),
        };
        sink.publish(&batch).await.unwrap();
    }
    for v in 1..=3 {
        let msg = tokio::time::timeout(Duration::from_secs(30), consumer.try_next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(msg.payload.data, format!("{{\"to_version\":{v}}}").into_bytes());
        consumer.ack(&msg).await.unwrap();
    }
    sink.close().await;
}
