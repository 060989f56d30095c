//! Redis over TLS (`rediss://`) with a private CA and client certificates, and a Redis 6
//! ACL user limited to the sidecar's keys and channels: the settings of `[checkpoint]`
//! and `[sinks.redis_pubsub]` (`username`, `ca_file`, `cert_file`, `key_file`) against
//! a real `redis-server`.

mod support;

use std::net::TcpListener;
use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose};
use support::*;
use testkit::redis::RedisServer;

/// Where a test's certificates and keys live (PEM files).
struct Pki {
    _dir: tempfile::TempDir,
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
    /// A CA that signed nothing here.
    other_ca: PathBuf,
}

fn ca(name: &str) -> (rcgen::Certificate, KeyPair) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert, key)
}

/// A certificate signed by `issuer`, for `names` (IP addresses become IP SANs).
fn leaf(names: &[&str], eku: ExtendedKeyUsagePurpose, issuer: &(rcgen::Certificate, KeyPair)) -> (String, String) {
    let mut params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name.push(DnType::CommonName, names[0]);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = vec![eku];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &issuer.0, &issuer.1).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, pem: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, pem).unwrap();
        path
    };
    let authority = ca("cdc-sidecar test CA");
    let (server_cert, server_key) = leaf(
        &["localhost", "127.0.0.1"],
        ExtendedKeyUsagePurpose::ServerAuth,
        &authority,
    );
    let (client_cert, client_key) = leaf(&["cdc-sidecar"], ExtendedKeyUsagePurpose::ClientAuth, &authority);
    let other = ca("some other CA");
    Pki {
        ca: write("ca.pem", &authority.0.pem()),
        server_cert: write("server.pem", &server_cert),
        server_key: write("server.key", &server_key),
        client_cert: write("client.pem", &client_cert),
        client_key: write("client.key", &client_key),
        other_ca: write("other-ca.pem", &other.0.pem()),
        _dir: dir,
    }
}

/// `redis-server` with a TLS port that requires client certificates of `pki`'s CA, and
/// its plain port (the test looks at Redis through it). Returns the server and the TLS port.
fn tls_redis(pki: &Pki) -> (RedisServer, u16) {
    let tls_port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let path = |p: &Path| p.to_str().unwrap().to_string();
    let server = RedisServer::start_with_args(&[
        "--tls-port",
        &tls_port.to_string(),
        "--tls-cert-file",
        &path(&pki.server_cert),
        "--tls-key-file",
        &path(&pki.server_key),
        "--tls-ca-cert-file",
        &path(&pki.ca),
        "--tls-auth-clients",
        "yes",
    ])
    .expect("redis-server with TLS (Debian's is built with it)");
    (server, tls_port)
}

/// `h`'s configuration with both Redis sections on `rediss://127.0.0.1:<tls_port>/` and
/// `extra` TOML lines added to each.
fn tls_config(h: &Harness, tables: &[&str], tls_port: u16, extra: &str) -> String {
    let plain = format!("url = \"{}\"", h.redis.url());
    let toml = h.config_toml(tables);
    assert_eq!(
        toml.matches(&plain).count(),
        2,
        "both Redis sections use the harness Redis"
    );
    toml.replace(&plain, &format!("url = \"rediss://127.0.0.1:{tls_port}/\"\n{extra}"))
}

fn files(ca: &Path, cert: &Path, key: &Path) -> String {
    format!(
        "ca_file = '{}'\ncert_file = '{}'\nkey_file = '{}'",
        ca.display(),
        cert.display(),
        key.display()
    )
}

async fn plain(h: &Harness) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(h.redis.url()).unwrap();
    client.get_multiplexed_async_connection().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_and_pubsub_work_over_mutual_tls_with_a_private_ca() {
    // GIVEN a Redis that speaks TLS with a certificate of a private CA and requires
    // client certificates of that CA
    let mut h = Harness::start().await;
    let pki = pki();
    let (redis, tls_port) = tls_redis(&pki);
    h.redis = redis;
    h.create_tracked_table("Orders", ORDERS);
    let sub = h.subscribe().await;

    // WHEN the sidecar's checkpoint and Pub/Sub sections use rediss:// with the CA and a
    // client certificate
    let toml = tls_config(
        &h,
        &["name = \"dbo.Orders\"\nsnapshot = \"never\""],
        tls_port,
        &files(&pki.ca, &pki.client_cert, &pki.client_key),
    );
    let config = cdc_sidecar::config::Config::from_toml_str(&toml).expect("TLS config");
    let sidecar = h.spawn(config.clone());
    h.wait_checkpoint("dbo.Orders", "the starting checkpoint", |_| true)
        .await;
    h.sql("INSERT INTO [dbo].[Orders] ([Id], [Customer], [Total]) VALUES (1, N'Ada', 10.50);");
    let last = h.current_version();

    // THEN the change is published and checkpointed, over the TLS port
    h.wait_checkpoint("dbo.Orders", "the insert's delivery", |v| v == last)
        .await;
    let envs = wait_for("the insert on Pub/Sub", || {
        let envs = sub.on(ORDERS_CHANNEL);
        envs.iter()
            .any(|e| e["to_version"].as_i64() == Some(last))
            .then_some(envs)
    })
    .await;
    assert_eq!(ops(&changes(&envs)), ["insert:1"]);
    let clients: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut plain(&h).await)
        .await
        .unwrap();
    let over_tls = clients
        .lines()
        .filter(|l| l.contains(&format!("laddr=127.0.0.1:{tls_port} ")))
        .count();
    assert!(
        over_tls >= 2,
        "the checkpoint store and the Pub/Sub sink connect over TLS:\n{clients}"
    );

    // AND without the client certificate the same Redis refuses the connection
    let mut no_cert = config.checkpoint.clone();
    no_cert.cert_file = None;
    no_cert.key_file = None;
    let client = cdc_sidecar::redis_client(&no_cert.endpoint()).unwrap();
    let refused = tokio::time::timeout(DEADLINE, async {
        let mut conn = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING").query_async::<String>(&mut conn).await
    })
    .await
    .expect("refused in time");
    assert!(refused.is_err(), "a client without a certificate is refused");

    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_ca_is_refused_with_a_clear_error() {
    // GIVEN the TLS Redis, and a sidecar that trusts another CA
    let mut h = Harness::start().await;
    let pki = pki();
    let (redis, tls_port) = tls_redis(&pki);
    h.redis = redis;
    h.create_tracked_table("Orders", ORDERS);
    let toml = tls_config(
        &h,
        &["name = \"dbo.Orders\"\nsnapshot = \"never\""],
        tls_port,
        &files(&pki.other_ca, &pki.client_cert, &pki.client_key),
    );
    let config = cdc_sidecar::config::Config::from_toml_str(&toml).expect("the config itself is valid");

    // WHEN it starts
    let sidecar = h.spawn(config);
    let result = tokio::time::timeout(DEADLINE * 3, sidecar.handle)
        .await
        .expect("the start fails rather than retrying forever")
        .unwrap();

    // THEN it fails, saying the server's certificate is not trusted
    let error = result.expect_err("a server certificate of an unknown CA is refused");
    let message = error.to_string();
    assert!(
        message.contains("certificate") && message.contains("UnknownIssuer"),
        "the error names the certificate problem: {message}"
    );
    assert!(h.checkpoint("dbo.Orders").await.is_none(), "nothing was written");
}

#[test]
fn tls_settings_are_validated_naming_the_field() {
    let pki = pki();
    let base = |checkpoint: &str| {
        format!(
            r#"
[source]
host = "h"
database = "d"
user = "u"
password = "p"
[[tables]]
name = "dbo.T"
[checkpoint]
{checkpoint}
"#
        )
    };
    let error = |checkpoint: &str| {
        cdc_sidecar::config::Config::from_toml_str(&base(checkpoint))
            .expect_err(checkpoint)
            .to_string()
    };
    let cert = format!("cert_file = '{}'", pki.client_cert.display());
    let key = format!("key_file = '{}'", pki.client_key.display());
    let ca = format!("ca_file = '{}'", pki.ca.display());
    let tls = "url = \"rediss://127.0.0.1:6380/\"";

    let e = error(&format!("{tls}\n{cert}"));
    assert!(e.contains("checkpoint.key_file") && e.contains("cert_file"), "{e}");
    let e = error(&format!("{tls}\n{key}"));
    assert!(e.contains("checkpoint.cert_file"), "{e}");
    let e = error(&format!("url = \"redis://127.0.0.1:6379/\"\n{ca}"));
    assert!(e.contains("checkpoint.ca_file") && e.contains("rediss://"), "{e}");
    let e = error(&format!("{tls}\nca_file = '/nonexistent/ca.pem'"));
    assert!(
        e.contains("checkpoint.ca_file") && e.contains("/nonexistent/ca.pem"),
        "{e}"
    );
    let e = error(&format!("{tls}\nca_file = '{}'", pki.client_key.display()));
    assert!(e.contains("checkpoint.ca_file") && e.contains("not PEM"), "{e}");
    let e = error(&format!("{tls}\n{cert}\nkey_file = '{}'", pki.ca.display()));
    assert!(e.contains("checkpoint.key_file"), "{e}");
    let e = error("username = \"\"");
    assert!(e.contains("checkpoint.username"), "{e}");

    cdc_sidecar::config::Config::from_toml_str(&base(&format!("{tls}\n{ca}\n{cert}\n{key}\nusername = \"sidecar\"")))
        .expect("a complete TLS section is valid");
}

/// The ACL of the README's "Redis ACL" paragraph, for user `sidecar` with password `pw`.
const ACL: &[&str] = &[
    "sidecar",
    "reset",
    "on",
    ">pw",
    "~cdc-sidecar:*",
    "&cdc:*",
    "+get",
    "+set",
    "+del",
    "+hget",
    "+hgetall",
    "+hset",
    "+hmset",
    "+hsetnx",
    "+hdel",
    "+hkeys",
    "+pexpire",
    "+scan",
    "+evalsha",
    "+script|load",
    "+multi",
    "+exec",
    "+publish",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acl_user_limited_to_the_prefix_and_channels_can_run_the_sidecar() {
    // GIVEN an ACL user allowed only the sidecar's commands, its key prefix and its channels
    let h = Harness::start().await;
    h.create_tracked_table("Orders", ORDERS);
    let mut admin = plain(&h).await;
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg(ACL)
        .query_async(&mut admin)
        .await
        .unwrap();
    // Redis 7.2+: the client library names itself once per connection (7.0 lacks the
    // command, and SETUSER refuses to name it).
    let _: redis::RedisResult<()> = redis::cmd("ACL")
        .arg("SETUSER")
        .arg("sidecar")
        .arg("+client|setinfo")
        .query_async(&mut admin)
        .await;
    let _: () = redis::cmd("ACL")
        .arg("LOG")
        .arg("RESET")
        .query_async(&mut admin)
        .await
        .unwrap();
    let sub = h.subscribe().await;

    // WHEN the sidecar runs as that user
    let plain_url = format!("url = \"{}\"", h.redis.url());
    let toml = h
        .config_toml(&["name = \"dbo.Orders\"\nsnapshot = \"initial\""])
        .replace(
            &plain_url,
            &format!("{plain_url}\nusername = \"sidecar\"\npassword = \"pw\""),
        );
    let config = cdc_sidecar::config::Config::from_toml_str(&toml).unwrap();
    h.sql("INSERT INTO [dbo].[Orders] ([Id], [Customer], [Total]) VALUES (1, N'Ada', 10.50);");
    let sidecar = h.spawn(config.clone());
    h.wait_checkpoint("dbo.Orders", "the snapshot", |_| true).await;
    h.sql("INSERT INTO [dbo].[Orders] ([Id], [Customer], [Total]) VALUES (2, N'Bob', 1.00);");
    let last = h.current_version();

    // THEN it snapshots, streams, checkpoints and stops cleanly (releasing its lease),
    // and Redis denied it nothing
    h.wait_checkpoint("dbo.Orders", "the insert's delivery", |v| v == last)
        .await;
    wait_for("the insert on Pub/Sub", || {
        sub.on(ORDERS_CHANNEL)
            .iter()
            .any(|e| e["to_version"].as_i64() == Some(last))
            .then_some(())
    })
    .await;
    sidecar.stop().await;
    // The checkpoint commands (`checkpoint list`, `set`, `delete`) as that user too.
    let store = cdc_sidecar::pipeline::checkpoint_store(&config).await.unwrap();
    let listed = cdc_sidecar::checkpoint::CheckpointStore::list(&store).await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    let denied: redis::Value = redis::cmd("ACL").arg("LOG").query_async(&mut admin).await.unwrap();
    assert_eq!(denied, redis::Value::Array(vec![]), "ACL denials");

    // AND the user really is limited: other keys and channels are refused
    let client = cdc_sidecar::redis_client(&config.checkpoint.endpoint()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let other_key: redis::RedisResult<()> = redis::cmd("SET").arg("other:key").arg("1").query_async(&mut conn).await;
    assert!(other_key.is_err(), "a key outside the prefix is refused");
    let other_channel: redis::RedisResult<i64> =
        redis::cmd("PUBLISH").arg("other").arg("x").query_async(&mut conn).await;
    assert!(other_channel.is_err(), "a channel outside cdc:* is refused");
}
