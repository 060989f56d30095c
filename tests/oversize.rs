//! Messages and the broker's maximum message size (`maxMessageSize`, which the `pulsar`
//! crate does not enforce: a broker drops the connection on a larger frame, and the
//! crate resends until it times out — testkit/tests/pulsar_max_message_size.rs). The
//! sidecar keeps every message under `sinks.pulsar.max_message_bytes`: a transaction
//! larger than that is cut into parts that fit, and a single change too large even
//! alone stops its table in error, visibly, without loss, while the others stream on.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::*;
use testkit::pulsar::PulsarStandinConfig;

/// The broker's limit in these tests, and `sinks.pulsar.max_message_bytes`.
const MAX: usize = 100_000;

const DOCS: &str = "[Id] bigint NOT NULL PRIMARY KEY, [Doc] nvarchar(max) NULL";
const DOCS_TOPIC: &str = "persistent://public/default/Shop.dbo.Docs";
const DOCS_CHANNEL: &str = "cdc:Shop.dbo.Docs";

async fn harness() -> Harness {
    Harness::start_with(PulsarStandinConfig {
        max_message_size: MAX,
        ..Default::default()
    })
    .await
}

/// The harness's configuration for `tables`, with batches of up to 1 MiB (so only the
/// Pulsar limit cuts them), `max_message_bytes` = [`MAX`], and `/readyz` on `http_port`.
fn config_toml(h: &Harness, tables: &[&str], http_port: u16) -> String {
    h.config_toml(tables)
        .replace("batch_rows = 100\n", "batch_rows = 100000\nbatch_bytes = 1048576\n")
        .replace(
            "[sinks.pulsar]\n",
            &format!("[sinks.pulsar]\nmax_message_bytes = {MAX}\n"),
        )
        .replace(
            "listen = \"127.0.0.1:0\"",
            &format!("listen = \"127.0.0.1:{http_port}\""),
        )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `len` characters that LZ4 cannot shrink much (so the compressed message is about as
/// large as the envelope), different for each `seed`.
fn noise(seed: u64, len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ALPHABET[(x % ALPHABET.len() as u64) as usize] as char
        })
        .collect()
}

/// A change's `Id` (bigint keys are JSON strings).
fn id(change: &Value) -> i64 {
    let v = &change["key"]["Id"];
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or_else(|| panic!("no Id in {change}"))
}

/// The value of `name` for the series with every label of `labels` (`key="value"`).
fn metric(sidecar: &Sidecar, name: &str, labels: &[&str]) -> f64 {
    sidecar
        .metrics
        .render()
        .lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with('{'))
        .find(|l| labels.iter().all(|label| l.contains(label)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_larger_than_the_pulsar_limit_is_split_under_it() {
    let h = harness().await;
    h.create_tracked_table("Docs", DOCS);
    let sidecar = h.spawn(
        cdc_sidecar::config::Config::from_toml_str(&config_toml(&h, &["name = \"dbo.Docs\"\nsnapshot = \"never\""], 0))
            .unwrap(),
    );
    h.wait_checkpoint("dbo.Docs", "the starting checkpoint", |_| true).await;

    // WHEN one transaction writes 400 rows of 5 to 15 KB each: some 4 MB, 40 times the
    // limit, where a batch of 1 MiB would be allowed
    let rows = 400;
    let mut sql = String::from("BEGIN TRANSACTION;\n");
    let mut total = 0;
    for chunk in (1..=rows).collect::<Vec<i64>>().chunks(20) {
        let values: Vec<String> = chunk
            .iter()
            .map(|&i| {
                let doc = noise(i as u64, 5_000 + (i as usize * 7_919) % 10_000);
                total += doc.len();
                format!("({i}, N'{doc}')")
            })
            .collect();
        sql.push_str(&format!(
            "INSERT INTO [dbo].[Docs] ([Id], [Doc]) VALUES {};\n",
            values.join(", ")
        ));
    }
    sql.push_str("COMMIT;");
    let before = h.current_version();
    h.sql(&sql);
    let v = h.current_version();
    assert_eq!(v, before + 1, "one transaction");
    assert!(total > 3_500_000, "{total} bytes of documents");

    // THEN it all arrives, in parts that each fit the broker's limit
    // (The checkpoint's `version` reaches `v` with the first part.)
    wait_for("the last part of the big transaction", || {
        let envelopes = h.pulsar_envelopes(DOCS_TOPIC);
        let last = envelopes.last()?;
        (last["to"]["version"] == v && last["to"]["part"].is_null()).then_some(())
    })
    .await;
    let messages = h.pulsar.messages(DOCS_TOPIC);
    let largest = messages.iter().map(|m| m.payload.len()).max().unwrap();
    assert!(largest <= MAX, "a message of {largest} bytes, over {MAX}");
    assert_eq!(h.pulsar.oversized_frames(), 0, "the broker never saw a frame too large");
    assert_eq!(
        metric(&sidecar, "cdc_sidecar_sink_errors_total", &["sink=\"pulsar\""]),
        0.0
    );
    let envelopes = h.pulsar_envelopes(DOCS_TOPIC);
    assert!(
        envelopes.len() >= total / MAX,
        "{} messages for {total} bytes",
        envelopes.len()
    );
    // Full batches: each holds all it could before the next change would not fit.
    assert!(largest > MAX - 20_000, "largest message {largest} bytes");
    assert_chained(&envelopes);
    let last = envelopes.last().unwrap();
    assert_eq!(last["to"]["version"], v);
    assert!(last["to"]["part"].is_null(), "the last part completes the version");
    for e in &envelopes[..envelopes.len() - 1] {
        assert_eq!(e["to"]["version"], v);
        assert!(e["to"]["part"].is_u64(), "a part of the version: {}", e["to"]);
    }
    let ids: Vec<i64> = changes(&envelopes).iter().map(id).collect();
    assert_eq!(ids, (1..=rows).collect::<Vec<_>>(), "every row once, in key order");
    let docs_ok = changes(&envelopes)
        .iter()
        .all(|c| c["row"]["Doc"].as_str().map(str::len) == Some(5_000 + (id(c) as usize * 7_919) % 10_000));
    assert!(docs_ok, "every document whole");
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_of_large_rows_is_cut_under_the_limit() {
    let h = harness().await;
    h.create_tracked_table("Docs", DOCS);
    // GIVEN 200 rows of 5 to 15 KB (some 2 MB; snapshot chunks of 50 rows, ~500 KB)
    let rows = 200;
    for chunk in (1..=rows).collect::<Vec<i64>>().chunks(20) {
        let values: Vec<String> = chunk
            .iter()
            .map(|&i| format!("({i}, N'{}')", noise(i as u64, 5_000 + (i as usize * 7_919) % 10_000)))
            .collect();
        h.sql(&format!(
            "INSERT INTO [dbo].[Docs] ([Id], [Doc]) VALUES {};",
            values.join(", ")
        ));
    }
    // WHEN the sidecar takes the initial snapshot
    let sidecar =
        h.spawn(cdc_sidecar::config::Config::from_toml_str(&config_toml(&h, &["name = \"dbo.Docs\""], 0)).unwrap());
    let envelopes = wait_snapshot_done(&h, DOCS_TOPIC).await;

    // THEN every row arrives once, in messages that each fit the limit
    let largest = h
        .pulsar
        .messages(DOCS_TOPIC)
        .iter()
        .map(|m| m.payload.len())
        .max()
        .unwrap();
    assert!(largest <= MAX, "a message of {largest} bytes, over {MAX}");
    assert_eq!(h.pulsar.oversized_frames(), 0);
    let snapshot = of_kind(&envelopes, "snapshot");
    let chunks: Vec<u64> = snapshot
        .iter()
        .map(|e| e["snapshot"]["chunk"].as_u64().unwrap())
        .collect();
    assert_eq!(
        chunks,
        (0..snapshot.len() as u64).collect::<Vec<_>>(),
        "chunks numbered in order"
    );
    assert!(snapshot.len() >= 20, "{} batches", snapshot.len());
    let ids: Vec<i64> = changes(&snapshot).iter().map(id).collect();
    assert_eq!(ids, (1..=rows).collect::<Vec<_>>());
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_row_over_the_limit_parks_its_table_visibly_while_others_stream() {
    let h = harness().await;
    h.create_tracked_table("Docs", DOCS);
    h.create_tracked_table("Orders", ORDERS);
    let port = free_port();
    let sidecar = h.spawn(
        cdc_sidecar::config::Config::from_toml_str(&config_toml(
            &h,
            &[
                "name = \"dbo.Docs\"\nsnapshot = \"never\"",
                "name = \"dbo.Orders\"\nsnapshot = \"never\"",
            ],
            port,
        ))
        .unwrap(),
    );
    let subscriber = h.subscribe().await;
    h.wait_checkpoint("dbo.Docs", "the starting checkpoint", |_| true).await;
    h.wait_checkpoint("dbo.Orders", "the starting checkpoint", |_| true)
        .await;
    h.sql("INSERT INTO [dbo].[Docs] ([Id], [Doc]) VALUES (1, N'small');");
    let v1 = h.current_version();
    h.wait_checkpoint("dbo.Docs", "the small row", |c| c == v1).await;

    // WHEN a row of 300 KB (incompressible: over the limit even compressed) is written,
    // then a small one after it
    h.sql(&format!(
        "INSERT INTO [dbo].[Docs] ([Id], [Doc]) VALUES (2, N'{}');",
        noise(2, 300_000)
    ));
    let v2 = h.current_version();
    h.sql("INSERT INTO [dbo].[Docs] ([Id], [Doc]) VALUES (3, N'after');");

    // THEN the table is shown in error: its state metric and /readyz name it
    let errored = || {
        metric(
            &sidecar,
            "cdc_sidecar_table_state",
            &["table=\"dbo.Docs\"", "state=\"error\""],
        )
    };
    wait_for("dbo.Docs in the error state", || (errored() == 1.0).then_some(())).await;
    assert_eq!(
        metric(
            &sidecar,
            "cdc_sidecar_table_state",
            &["table=\"dbo.Orders\"", "state=\"error\""]
        ),
        0.0
    );
    let (status, body) = http_get(port, "/readyz").await;
    assert_eq!(status, 200, "one table in error does not make the pod unready: {body}");
    assert!(body.contains("tables in error: dbo.Docs"), "{body}");
    assert!(metric(&sidecar, "cdc_sidecar_sink_errors_total", &["sink=\"pulsar\""]) >= 1.0);

    // AND the other table streams on meanwhile
    let mut last = 0;
    for i in 1..=5 {
        h.sql(&format!(
            "INSERT INTO [dbo].[Orders] ([Id], [Customer]) VALUES ({i}, N'c{i}');"
        ));
        last = h.current_version();
        h.wait_checkpoint("dbo.Orders", "an order while dbo.Docs is stuck", |c| c == last)
            .await;
    }
    let orders = changes(&h.pulsar_envelopes(ORDERS_TOPIC));
    assert_eq!(
        ops(&orders),
        ["insert:1", "insert:2", "insert:3", "insert:4", "insert:5"]
    );

    // AND nothing of dbo.Docs after the big row went anywhere, nor the big row to Pulsar
    // (the broker never saw it: no dropped connection)
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(errored(), 1.0, "still in error");
    let docs = h.pulsar_envelopes(DOCS_TOPIC);
    assert_eq!(changes(&docs).iter().map(id).collect::<Vec<_>>(), [1]);
    assert_eq!(h.pulsar.oversized_frames(), 0);
    let on_redis: Vec<i64> = changes(&subscriber.on(DOCS_CHANNEL)).iter().map(id).collect();
    assert!(!on_redis.contains(&3), "the row after the big one waits: {on_redis:?}");
    assert_eq!(
        h.checkpoint("dbo.Docs").await,
        Some(v1),
        "the checkpoint stays before the big row"
    );
    assert!(last > v2);

    // WHEN the sidecar stops THEN it stops cleanly, and the big row is still ahead of
    // the checkpoint, to be delivered once the limit allows
    sidecar.stop().await;
    assert_eq!(h.checkpoint("dbo.Docs").await, Some(v1));
    assert_eq!(h.checkpoint("dbo.Orders").await, Some(last));
}
