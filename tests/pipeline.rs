//! The whole pipeline, end to end: SQL Server stand-in → sidecar → Pulsar stand-in and
//! a real Redis, through the real tiberius, pulsar and redis clients.

mod support;

use serde_json::Value;
use support::*;

const ORDERS: &str = "[Id] bigint NOT NULL PRIMARY KEY, [Customer] nvarchar(100) NOT NULL, [Total] decimal(18,2) NULL";
const ORDERS_TOPIC: &str = "persistent://public/default/Shop.dbo.Orders";
const ORDERS_CHANNEL: &str = "cdc:Shop.dbo.Orders";

fn ops(changes: &[Value]) -> Vec<String> {
    changes
        .iter()
        .map(|c| {
            format!(
                "{}:{}",
                c["op"].as_str().unwrap(),
                c["key"]["Id"].as_str().unwrap_or("?")
            )
        })
        .collect()
}

/// Every envelope's from_version equals the previous one's to_version.
fn assert_chained(envelopes: &[Value]) {
    for pair in envelopes.windows(2) {
        assert_eq!(
            pair[1]["from_version"], pair[0]["to_version"],
            "batches must chain: {pair:?}"
        );
    }
}

/// GIVEN a sidecar streaming an empty `dbo.Orders` (no snapshot); returns it and its
/// starting checkpoint.
async fn streaming_orders(h: &Harness) -> (Sidecar, i64) {
    h.create_tracked_table("Orders", ORDERS);
    let sidecar = h.spawn(h.config(&["name = \"dbo.Orders\"\nsnapshot = \"never\""]));
    let start = h
        .wait_checkpoint("dbo.Orders", "the starting checkpoint", |_| true)
        .await;
    (sidecar, start)
}

/// GIVEN a sidecar streaming `dbo.Orders` (no snapshot) with row 1 inserted and delivered;
/// returns the sidecar and the version of that insert.
async fn streaming_orders_with_one_row(h: &Harness) -> (Sidecar, i64) {
    let (sidecar, _) = streaming_orders(h).await;
    h.sql("INSERT INTO [dbo].[Orders] ([Id], [Customer]) VALUES (1, N'a');");
    let v1 = h.current_version();
    h.wait_checkpoint("dbo.Orders", "the first insert", |v| v == v1).await;
    (sidecar, v1)
}

/// Reads `n` envelopes from `topic` with the `pulsar` crate's consumer (which undoes the
/// producer's compression itself).
async fn consume_pulsar(h: &Harness, topic: &str, n: usize) -> Vec<Value> {
    use futures_util::TryStreamExt;
    use pulsar::consumer::InitialPosition;
    use pulsar::{Consumer, ConsumerOptions, Pulsar, SubType, TokioExecutor};
    let client = Pulsar::builder(h.pulsar.url(), TokioExecutor).build().await.unwrap();
    let mut consumer: Consumer<Vec<u8>, _> = client
        .consumer()
        .with_topic(topic)
        .with_subscription("test-readback")
        .with_subscription_type(SubType::Exclusive)
        .with_options(ConsumerOptions::default().with_initial_position(InitialPosition::Earliest))
        .build()
        .await
        .unwrap();
    let mut out = Vec::new();
    while out.len() < n {
        let msg = tokio::time::timeout(DEADLINE, consumer.try_next())
            .await
            .expect("message in time")
            .unwrap()
            .unwrap();
        assert_eq!(msg.key(), Some("dbo.Orders".to_string()));
        out.push(serde_json::from_slice(&msg.payload.data).unwrap());
        consumer.ack(&msg).await.unwrap();
    }
    out
}

/// Waits for a snapshot's last batch on `topic`; returns every envelope so far.
async fn wait_snapshot_done(h: &Harness, topic: &str) -> Vec<Value> {
    wait_for("a snapshot's last batch", || {
        let envs = h.pulsar_envelopes(topic);
        envs.iter().any(|e| e["snapshot"]["last"] == true).then_some(envs)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_inserts_updates_and_deletes_in_order_to_both_sinks() {
    let h = Harness::start().await;
    h.create_tracked_table("Orders", ORDERS);
    let sub = h.subscribe().await;
    let sidecar = h.spawn(h.config(&["name = \"dbo.Orders\"\nsnapshot = \"never\""]));
    h.wait_checkpoint("dbo.Orders", "the starting checkpoint", |_| true)
        .await;

    // WHEN rows are inserted in one transaction, then updated, then one deleted (each
    // delivered before the next: Change Tracking reports net changes, so faster edits
    // would rightly fold into one)
    let mut last = 0;
    for step in [
        "BEGIN TRAN; INSERT INTO [dbo].[Orders] ([Id], [Customer], [Total]) VALUES (1, N'Ada', 10.50), (2, N'Bob', NULL); COMMIT;",
        "UPDATE [dbo].[Orders] SET [Total] = 99.99 WHERE [Id] = 1;",
        "DELETE FROM [dbo].[Orders] WHERE [Id] = 2;",
    ] {
        h.sql(step);
        last = h.current_version();
        h.wait_checkpoint("dbo.Orders", "the step's delivery", |v| v == last).await;
    }

    // THEN both sinks — read back with the pulsar crate's own consumer and a Redis
    // subscriber — carry every change, in version order, with rows and keys
    let pulsar = wait_for("pulsar to reach the last version", || {
        let envs = h.pulsar_envelopes(ORDERS_TOPIC);
        envs.iter()
            .any(|e| e["to_version"].as_i64() == Some(last))
            .then_some(envs)
    })
    .await;
    let redis = wait_for("redis to reach the last version", || {
        let envs = sub.on(ORDERS_CHANNEL);
        envs.iter()
            .any(|e| e["to_version"].as_i64() == Some(last))
            .then_some(envs)
    })
    .await;
    let consumed = consume_pulsar(&h, ORDERS_TOPIC, pulsar.len()).await;
    assert_eq!(consumed, pulsar, "the consumer decodes what the broker stored");
    for envs in [&pulsar, &redis] {
        assert_chained(envs);
        let all = changes(envs);
        assert_eq!(ops(&all), ["insert:1", "insert:2", "update:1", "delete:2"], "{all:#?}");
        assert_eq!(all[0]["row"]["Customer"], "Ada");
        assert_eq!(all[0]["row"]["Total"], "10.50");
        assert!(all[1]["row"]["Total"].is_null());
        assert_eq!(all[0]["version"], all[1]["version"], "one transaction, one version");
        assert_eq!(all[2]["row"]["Total"], "99.99");
        assert_eq!(all[2]["changed_columns"], serde_json::json!(["Total"]));
        assert!(all[3]["row"].is_null(), "a delete has no row");
        assert_eq!(envs[0]["format"], 1);
        assert_eq!(envs[0]["source"]["database"], "Shop");
        assert_eq!(envs[0]["source"]["table"], "Orders");
    }
    // AND the checkpoint records which server/database wrote it
    let client = redis::Client::open(h.redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let source: Option<String> = redis::cmd("HGET")
        .arg(format!("cdc-sidecar:checkpoint:{DB}:dbo.Orders"))
        .arg("source")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(source.as_deref(), Some("TESTKIT-MSSQL/Shop"));
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_made_between_polls_arrive_as_net_changes() {
    let h = Harness::start().await;
    let (sidecar, _) = streaming_orders(&h).await;
    // WHEN a row is inserted and updated, and another inserted and deleted, in one transaction
    h.sql(
        "BEGIN TRAN; INSERT INTO [dbo].[Orders] ([Id], [Customer]) VALUES (1, N'a'), (2, N'b'); \
         UPDATE [dbo].[Orders] SET [Customer] = N'a2' WHERE [Id] = 1; DELETE FROM [dbo].[Orders] WHERE [Id] = 2; COMMIT;",
    );
    let v = h.current_version();
    h.wait_checkpoint("dbo.Orders", "the transaction", |c| c == v).await;
    // THEN the consumer sees Change Tracking's net result: an insert with the final row, and the delete
    let all = changes(&h.pulsar_envelopes(ORDERS_TOPIC));
    assert_eq!(ops(&all), ["insert:1", "delete:2"]);
    assert_eq!(all[0]["row"]["Customer"], "a2");
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initial_snapshot_publishes_existing_rows_then_streams_changes() {
    let h = Harness::start().await;
    h.create_tracked_table("Orders", ORDERS);
    let values: Vec<String> = (1..=120).map(|i| format!("({i}, N'c{i}', {i}.00)")).collect();
    h.sql(&format!(
        "INSERT INTO [dbo].[Orders] ([Id], [Customer], [Total]) VALUES {};",
        values.join(", ")
    ));
    let sidecar = h.spawn(h.config(&["name = \"dbo.Orders\"\nsnapshot = \"initial\""]));

    // THEN all 120 rows arrive as reads, in key order, over several keyset chunks, the last flagged
    let snap = wait_for("the snapshot's last batch", || {
        let envs = of_kind(&h.pulsar_envelopes(ORDERS_TOPIC), "snapshot");
        envs.iter().any(|e| e["snapshot"]["last"] == true).then_some(envs)
    })
    .await;
    let rows = changes(&snap);
    let ids: Vec<i64> = rows
        .iter()
        .map(|c| c["key"]["Id"].as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(ids, (1..=120).collect::<Vec<_>>());
    assert!(rows.iter().all(|c| c["op"] == "read"));
    assert!(snap.len() >= 3, "chunks of 50 rows: {}", snap.len());
    let version = snap[0]["to_version"].as_i64().unwrap();
    h.wait_checkpoint("dbo.Orders", "the snapshot version", |v| v >= version)
        .await;

    // WHEN a row changes after the snapshot THEN it streams from the snapshot version
    h.sql("UPDATE [dbo].[Orders] SET [Customer] = N'changed' WHERE [Id] = 7;");
    let streamed = wait_for("the change after the snapshot", || {
        let envs = of_kind(&h.pulsar_envelopes(ORDERS_TOPIC), "changes");
        (!envs.is_empty()).then_some(envs)
    })
    .await;
    assert_eq!(streamed[0]["from_version"].as_i64(), Some(version));
    assert_eq!(changes(&streamed)[0]["row"]["Customer"], "changed");
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumes_after_restart_without_loss() {
    let h = Harness::start().await;
    h.create_tracked_table("Orders", ORDERS);
    let config = h.config(&["name = \"dbo.Orders\"\nsnapshot = \"never\""]);
    let sidecar = h.spawn(config.clone());
    h.wait_checkpoint("dbo.Orders", "the starting checkpoint", |_| true)
        .await;
    h.sql("INSERT INTO [dbo].[Orders] ([Id], [Customer]) VALUES (1, N'before');");
    let first = h.current_version();
    h.wait_checkpoint("dbo.Orders", "the first insert", |v| v == first)
        .await;

    // WHEN the sidecar stops, rows change while it is down, and it starts again
    sidecar.stop().await;
    for i in 2..=5 {
        h.sql(&format!(
            "INSERT INTO [dbo].[Orders] ([Id], [Customer]) VALUES ({i}, N'while down');"
        ));
    }
    let last = h.current_version();
    let sidecar = h.spawn(config);

    // THEN every change made while down arrives once, continuing the version chain
    h.wait_checkpoint("dbo.Orders", "the last insert", |v| v == last).await;
    let envs = h.pulsar_envelopes(ORDERS_TOPIC);
    assert_chained(&envs);
    assert_eq!(
        ops(&changes(&envs)),
        ["insert:1", "insert:2", "insert:3", "insert:4", "insert:5"]
    );
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_checkpoint_publishes_a_resync_and_a_fresh_snapshot() {
    let h = Harness::start().await;
    h.create_tracked_table("Orders", ORDERS);
    let config = h.config(&["name = \"dbo.Orders\"\nsnapshot = \"never\""]);
    let sidecar = h.spawn(config.clone());
    h.sql("INSERT INTO [dbo].[Orders] ([Id], [Customer]) VALUES (1, N'a');");
    let v1 = h.current_version();
    h.wait_checkpoint("dbo.Orders", "the first insert", |v| v == v1).await;
    sidecar.stop().await;

    // WHEN changes happen while down and cleanup removes them past the checkpoint
    h.sql("INSERT INTO [dbo].[Orders] ([Id], [Customer]) VALUES (2, N'b');");
    h.sql("UPDATE [dbo].[Orders] SET [Customer] = N'a2' WHERE [Id] = 1;");
    h.engine.advance_clock(std::time::Duration::from_secs(3 * 86_400));
    h.engine.run_change_tracking_cleanup(DB);
    let sidecar = h.spawn(config);

    // THEN a resync event names the reason, and a snapshot carries the current rows
    let envs = wait_snapshot_done(&h, ORDERS_TOPIC).await;
    let resync = of_kind(&envs, "resync");
    assert_eq!(resync.len(), 1);
    assert_eq!(resync[0]["reason"], "checkpoint_expired");
    assert_eq!(resync[0]["from_version"].as_i64(), Some(v1));
    let snap = changes(&of_kind(&envs, "snapshot"));
    let rows: Vec<(String, String)> = snap
        .iter()
        .map(|c| {
            (
                c["key"]["Id"].as_str().unwrap().to_string(),
                c["row"]["Customer"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(rows, [("1".into(), "a2".into()), ("2".into(), "b".into())]);
    let snapshot_version = resync[0]["to_version"].as_i64().unwrap();
    h.wait_checkpoint("dbo.Orders", "the snapshot version", |v| v == snapshot_version)
        .await;
    assert_eq!(
        sidecar.metric("cdc_sidecar_resyncs_total{reason=\"checkpoint_expired\",table=\"dbo.Orders\"}"),
        1.0
    );
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncate_while_running_triggers_a_resync() {
    let h = Harness::start().await;
    let (sidecar, _) = streaming_orders_with_one_row(&h).await;

    h.sql("TRUNCATE TABLE [dbo].[Orders];");
    h.sql("INSERT INTO [dbo].[Orders] ([Id], [Customer]) VALUES (9, N'after');");

    let envs = wait_snapshot_done(&h, ORDERS_TOPIC).await;
    assert_eq!(of_kind(&envs, "resync")[0]["reason"], "checkpoint_expired");
    let snap = changes(&of_kind(&envs, "snapshot"));
    assert_eq!(ops(&snap), ["read:9"]);
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracking_disabled_and_reenabled_while_running_triggers_a_resync() {
    let h = Harness::start().await;
    let (sidecar, _) = streaming_orders_with_one_row(&h).await;

    // WHEN tracking is switched off, a row changes unseen, and tracking comes back
    h.sql("ALTER TABLE [dbo].[Orders] DISABLE CHANGE_TRACKING;");
    h.create_tracked_table("Other", "[Id] int NOT NULL PRIMARY KEY");
    h.sql("INSERT INTO [dbo].[Other] ([Id]) VALUES (1);"); // moves the database version
    wait_for("the table to be reported in error", || {
        (sidecar.metric("cdc_sidecar_table_state{state=\"error\",table=\"dbo.Orders\"}") == 1.0).then_some(())
    })
    .await;
    h.sql("UPDATE [dbo].[Orders] SET [Customer] = N'unseen' WHERE [Id] = 1;");
    h.sql("ALTER TABLE [dbo].[Orders] ENABLE CHANGE_TRACKING WITH (TRACK_COLUMNS_UPDATED = ON);");
    h.sql("INSERT INTO [dbo].[Other] ([Id]) VALUES (2);");

    // THEN the table resyncs and the snapshot carries the unseen change
    let envs = wait_snapshot_done(&h, ORDERS_TOPIC).await;
    assert_eq!(of_kind(&envs, "resync")[0]["reason"], "checkpoint_expired");
    assert_eq!(changes(&of_kind(&envs, "snapshot"))[0]["row"]["Customer"], "unseen");
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_version_below_the_checkpoint_resyncs_as_a_restore() {
    let h = Harness::start().await;
    h.create_tracked_table("Orders", ORDERS);
    h.sql("INSERT INTO [dbo].[Orders] ([Id], [Customer]) VALUES (1, N'a');");
    // GIVEN a checkpoint ahead of the database, as after restoring an older backup
    let ahead = h.current_version() + 1_000;
    let client = redis::Client::open(h.redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("HSET")
        .arg(format!("cdc-sidecar:checkpoint:{DB}:dbo.Orders"))
        .arg("version")
        .arg(ahead)
        .query_async(&mut conn)
        .await
        .unwrap();
    let sidecar = h.spawn(h.config(&["name = \"dbo.Orders\""]));

    let envs = wait_snapshot_done(&h, ORDERS_TOPIC).await;
    assert_eq!(of_kind(&envs, "resync")[0]["reason"], "version_went_backwards");
    // AND the checkpoint is reset down to the database's version
    let current = h.current_version();
    h.wait_checkpoint("dbo.Orders", "reset below the old one", |v| v == current)
        .await;
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulsar_send_errors_hold_the_checkpoint_and_nothing_is_lost() {
    let h = Harness::start().await;
    let (sidecar, start) = streaming_orders(&h).await;

    // WHEN the broker answers the next sends with errors
    h.pulsar
        .fail_next_sends_with(3, testkit::pulsar::ServerError::UnknownError);
    h.sql("INSERT INTO [dbo].[Orders] ([Id], [Customer]) VALUES (1, N'x');");
    let v = h.current_version();

    // THEN the sidecar retries until the broker accepts, and only then checkpoints
    h.wait_checkpoint("dbo.Orders", "delivery after the errors", |c| c == v)
        .await;
    assert!(start < v);
    let envs = h.pulsar_envelopes(ORDERS_TOPIC);
    assert_eq!(ops(&changes(&envs)), ["insert:1"]);
    assert!(sidecar.metric("cdc_sidecar_sink_errors_total{sink=\"pulsar\"}") >= 1.0);
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_database_costs_one_probe_per_tick_whatever_the_table_count() {
    let h = Harness::start().await;
    let mut tables = Vec::new();
    for i in 0..5 {
        h.create_tracked_table(&format!("T{i}"), "[Id] int NOT NULL PRIMARY KEY");
        tables.push(format!("name = \"dbo.T{i}\"\nsnapshot = \"never\""));
    }
    let refs: Vec<&str> = tables.iter().map(String::as_str).collect();
    let sidecar = h.spawn(h.config(&refs));
    wait_for("a first idle probe", || {
        (sidecar.metric("cdc_sidecar_probes_total{result=\"idle\"}") >= 1.0).then_some(())
    })
    .await;

    // WHEN nothing changes for a while
    let requests_before = h.mssql.requests();
    let idle_before = sidecar.metric("cdc_sidecar_probes_total{result=\"idle\"}");
    let discover_before = sidecar.metric("cdc_sidecar_source_queries_total{kind=\"discover\"}");
    wait_for("five more idle probes", || {
        (sidecar.metric("cdc_sidecar_probes_total{result=\"idle\"}") >= idle_before + 5.0).then_some(())
    })
    .await;
    let idle = sidecar.metric("cdc_sidecar_probes_total{result=\"idle\"}") - idle_before;
    let requests = h.mssql.requests() - requests_before;

    // THEN each tick sent exactly one request, and no table was queried
    assert_eq!(
        sidecar.metric("cdc_sidecar_source_queries_total{kind=\"discover\"}"),
        discover_before
    );
    assert!(
        requests as f64 <= idle + 1.0,
        "{requests} requests for {idle} idle probes"
    );
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sql_type_maps_to_json_without_loss() {
    let h = Harness::start().await;
    h.create_tracked_table(
        "Types",
        "[Id] int NOT NULL PRIMARY KEY, [b] bit NULL, [ti] tinyint NULL, [si] smallint NULL, [bi] bigint NULL, \
         [de] decimal(38,10) NULL, [mo] money NULL, [re] real NULL, [fl] float NULL, [ch] char(3) NULL, \
         [vc] varchar(50) NULL, [nc] nchar(2) NULL, [nv] nvarchar(max) NULL, [vb] varbinary(max) NULL, \
         [da] date NULL, [tm] time(7) NULL, [dt] datetime NULL, [d2] datetime2(7) NULL, \
         [dto] datetimeoffset(7) NULL, [gu] uniqueidentifier NULL",
    );
    let sidecar = h.spawn(h.config(&["name = \"dbo.Types\"\nsnapshot = \"never\""]));
    h.wait_checkpoint("dbo.Types", "the starting checkpoint", |_| true)
        .await;
    h.sql(
        "INSERT INTO [dbo].[Types] VALUES (1, 1, 255, -32768, 9223372036854775807, \
         1234567890123456789012345678.0123456789, 922337203685477.5807, 1.5, 0.1, 'abc', 'héllo', N'日本', \
         N'ünïcode ✓', 0x00FF10, '2026-11-24', '23:59:59.1234567', '2026-11-24 10:00:00.997', \
         '2026-11-24 10:00:00.1234567', '2026-11-24 10:00:00.1234567 +05:30', '6F9619FF-8B86-D011-B42D-00C04FC964FF');\
         INSERT INTO [dbo].[Types] ([Id]) VALUES (2);",
    );
    let envs = wait_for("the typed rows", || {
        let all = changes(&h.pulsar_envelopes("persistent://public/default/Shop.dbo.Types"));
        (all.len() == 2).then_some(all)
    })
    .await;
    let row = &envs[0]["row"];
    let expected = serde_json::json!({
        "Id": 1, "b": true, "ti": 255, "si": -32768, "bi": "9223372036854775807",
        "de": "1234567890123456789012345678.0123456789", "mo": "922337203685477.5807", "re": 1.5, "fl": 0.1,
        "ch": "abc", "vc": "héllo", "nc": "日本", "nv": "ünïcode ✓", "vb": "AP8Q",
        "da": "2026-11-24", "tm": "23:59:59.1234567", "dt": "2026-11-24T10:00:00.997",
        "d2": "2026-11-24T10:00:00.1234567", "dto": "2026-11-24T10:00:00.1234567+05:30",
        "gu": "6F9619FF-8B86-D011-B42D-00C04FC964FF"
    });
    assert_eq!(row, &expected);
    let nulls = envs[1]["row"].as_object().unwrap();
    assert!(
        nulls.iter().filter(|(k, _)| *k != "Id").all(|(_, v)| v.is_null()),
        "{nulls:?}"
    );
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn composite_keys_paginate_snapshots_without_gaps_or_repeats() {
    let h = Harness::start().await;
    h.create_tracked_table(
        "Lines",
        "[A] int NOT NULL, [B] smallint NOT NULL, [X] varchar(10) NULL, PRIMARY KEY ([A], [B])",
    );
    let values: Vec<String> = (1..=7)
        .flat_map(|a| (1..=17).map(move |b| format!("({a}, {b}, 'x')")))
        .collect();
    h.sql(&format!("INSERT INTO [dbo].[Lines] VALUES {};", values.join(", ")));
    let sidecar = h.spawn(h.config(&["name = \"dbo.Lines\""]));
    let snap = wait_for("the last snapshot batch", || {
        let envs = h.pulsar_envelopes("persistent://public/default/Shop.dbo.Lines");
        envs.iter().any(|e| e["snapshot"]["last"] == true).then_some(envs)
    })
    .await;
    let keys: Vec<(i64, i64)> = changes(&snap)
        .iter()
        .map(|c| (c["key"]["A"].as_i64().unwrap(), c["key"]["B"].as_i64().unwrap()))
        .collect();
    let expected: Vec<(i64, i64)> = (1..=7).flat_map(|a| (1..=17).map(move |b| (a, b))).collect();
    assert_eq!(keys, expected);
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_check_names_each_table_and_the_migration_that_fixes_it() {
    let h = Harness::start().await;
    h.sql("CREATE TABLE [dbo].[Untracked] ([Id] int NOT NULL PRIMARY KEY);");
    let config = h.config(&["name = \"dbo.Untracked\"", "name = \"dbo.Missing\""]);
    let err = cdc_sidecar::run(config, tokio_util::sync::CancellationToken::new())
        .await
        .unwrap_err();
    let text = err.to_string();
    assert_eq!(err.exit_code(), 3, "{text}");
    assert!(
        text.contains("table dbo.Untracked: change tracking is not enabled"),
        "{text}"
    );
    assert!(text.contains("003_enable_table_change_tracking.sql"), "{text}");
    assert!(text.contains("table dbo.Missing: does not exist"), "{text}");
    assert_eq!(h.redis_keys().await, Vec::<String>::new(), "nothing written to Redis");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_a_setup_error_naming_the_login() {
    let h = Harness::start().await;
    h.create_tracked_table("Orders", ORDERS);
    let toml = h.config_toml(&["name = \"dbo.Orders\""]).replace(PASSWORD, "wrong");
    let config = cdc_sidecar::config::Config::from_toml_str(&toml).unwrap();
    let err = cdc_sidecar::run(config, tokio_util::sync::CancellationToken::new())
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), 3);
    assert!(
        err.to_string().contains("18456") && err.to_string().contains(LOGIN),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_encryption_streams_over_tls() {
    use std::sync::Arc;
    use testkit::mssql::wire::{MssqlServer, MssqlServerConfig, TlsSettings};
    let h = Harness::start().await;
    h.create_tracked_table("Orders", ORDERS);
    let tls = TlsSettings::self_signed(&["localhost"]).unwrap();
    let server = MssqlServer::start(
        Arc::new(h.engine.clone()),
        MssqlServerConfig {
            tls: Some(tls),
            ..MssqlServerConfig::default()
        },
    )
    .await
    .unwrap();
    let toml = h
        .config_toml(&["name = \"dbo.Orders\"\nsnapshot = \"never\""])
        .replace(
            &format!("port = {}", h.mssql.addr().port()),
            &format!("port = {}", server.addr().port()),
        )
        .replace(
            "encryption = \"off\"",
            "encryption = \"required\"\ntrust_server_certificate = true",
        );
    let sidecar = h.spawn(cdc_sidecar::config::Config::from_toml_str(&toml).unwrap());
    h.wait_checkpoint("dbo.Orders", "the starting checkpoint", |_| true)
        .await;
    h.sql("INSERT INTO [dbo].[Orders] ([Id], [Customer]) VALUES (1, N'tls');");
    let v = h.current_version();
    h.wait_checkpoint("dbo.Orders", "the insert over TLS", |c| c == v).await;
    assert_eq!(ops(&changes(&h.pulsar_envelopes(ORDERS_TOPIC))), ["insert:1"]);
    sidecar.stop().await;
    server.shutdown().await;
}

/// `GET path` on 127.0.0.1:port → (status, body).
async fn http_get(port: u16, path: &str) -> (u16, String) {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_endpoints_report_metrics_liveness_and_readiness() {
    use std::sync::Arc;
    use testkit::mssql::wire::{MssqlServer, MssqlServerConfig};
    let h = Harness::start().await;
    h.create_tracked_table("Orders", ORDERS);
    // A server of its own, so the test can take the database away.
    let server = MssqlServer::start(Arc::new(h.engine.clone()), MssqlServerConfig::default())
        .await
        .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let toml = h
        .config_toml(&["name = \"dbo.Orders\"\nsnapshot = \"never\""])
        .replace(
            &format!("port = {}", h.mssql.addr().port()),
            &format!("port = {}", server.addr().port()),
        )
        .replace("listen = \"127.0.0.1:0\"", &format!("listen = \"127.0.0.1:{port}\""));
    let sidecar = h.spawn(cdc_sidecar::config::Config::from_toml_str(&toml).unwrap());
    h.wait_checkpoint("dbo.Orders", "the starting checkpoint", |_| true)
        .await;
    wait_for("an idle probe", || {
        (sidecar.metric("cdc_sidecar_probes_total{result=\"idle\"}") >= 1.0).then_some(())
    })
    .await;
    assert_eq!(http_get(port, "/healthz").await.0, 200);
    assert_eq!(http_get(port, "/readyz").await.0, 200);
    let (status, body) = http_get(port, "/metrics").await;
    assert_eq!(status, 200);
    assert!(body.contains("cdc_sidecar_probes_total{result=\"idle\"}"), "{body}");
    assert!(
        body.contains("cdc_sidecar_checkpoint_version{table=\"dbo.Orders\"}"),
        "{body}"
    );
    assert!(
        cdc_sidecar::http::probe(
            format!("127.0.0.1:{port}").parse().unwrap(),
            std::time::Duration::from_secs(2)
        )
        .await
    );

    // WHEN the database goes away THEN readiness fails while liveness holds
    server.shutdown().await;
    let start = std::time::Instant::now();
    while http_get(port, "/readyz").await.0 != 503 {
        assert!(start.elapsed() < DEADLINE, "readiness never failed");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(http_get(port, "/healthz").await.0, 200);
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulsar_outage_delays_delivery_but_loses_nothing() {
    let h = Harness::start().await;
    let (sidecar, start) = streaming_orders(&h).await;

    // WHEN the broker becomes unreachable while rows keep changing
    h.pulsar.go_unreachable().await;
    for i in 1..=5 {
        h.sql(&format!(
            "INSERT INTO [dbo].[Orders] ([Id], [Customer]) VALUES ({i}, N'during outage');"
        ));
    }
    let last = h.current_version();
    // THEN the checkpoint does not pass what Pulsar has not acknowledged
    wait_for("a failed publish", || {
        (sidecar.metric("cdc_sidecar_sink_errors_total{sink=\"pulsar\"}") >= 1.0).then_some(())
    })
    .await;
    assert_eq!(h.checkpoint("dbo.Orders").await, Some(start));

    // WHEN it comes back THEN everything arrives, in order
    h.pulsar.come_back().await;
    h.wait_checkpoint("dbo.Orders", "delivery after the outage", |c| c == last)
        .await;
    let ids: Vec<String> = ops(&changes(&h.pulsar_envelopes(ORDERS_TOPIC)));
    let mut first_seen: Vec<String> = Vec::new();
    for id in ids {
        if !first_seen.contains(&id) {
            first_seen.push(id);
        }
    }
    assert_eq!(first_seen, ["insert:1", "insert:2", "insert:3", "insert:4", "insert:5"]);
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_table_is_parked_in_error_while_the_others_keep_streaming() {
    let h = Harness::start().await;
    h.create_tracked_table("Orders", ORDERS);
    h.create_tracked_table("Doomed", "[Id] int NOT NULL PRIMARY KEY");
    let sidecar = h.spawn(h.config(&[
        "name = \"dbo.Orders\"\nsnapshot = \"never\"",
        "name = \"dbo.Doomed\"\nsnapshot = \"never\"",
    ]));
    h.wait_checkpoint("dbo.Doomed", "the starting checkpoint", |_| true)
        .await;

    // WHEN one table is dropped and the other keeps changing
    h.sql("DROP TABLE [dbo].[Doomed];");
    h.sql("INSERT INTO [dbo].[Orders] ([Id], [Customer]) VALUES (1, N'still flowing');");
    let v = h.current_version();

    // THEN the dropped table is reported in error and the other is delivered
    h.wait_checkpoint("dbo.Orders", "the surviving table's insert", |c| c == v)
        .await;
    wait_for("the dropped table in error", || {
        (sidecar.metric("cdc_sidecar_table_state{state=\"error\",table=\"dbo.Doomed\"}") == 1.0).then_some(())
    })
    .await;
    assert_eq!(ops(&changes(&h.pulsar_envelopes(ORDERS_TOPIC))), ["insert:1"]);
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_larger_than_a_batch_arrives_whole_and_checkpoints_only_at_its_end() {
    let h = Harness::start().await;
    let (sidecar, start) = streaming_orders(&h).await;
    // WHEN one transaction inserts 350 rows (batch_rows is 100 in the harness)
    let values: Vec<String> = (1..=350).map(|i| format!("({i}, N'row {i}')")).collect();
    h.sql(&format!(
        "INSERT INTO [dbo].[Orders] ([Id], [Customer]) VALUES {};",
        values.join(", ")
    ));
    let v = h.current_version();
    h.wait_checkpoint("dbo.Orders", "the big transaction", |c| c == v).await;

    // THEN every row arrives, split over chained batches, and only the last one claims the
    // transaction's version: a consumer (or a restart) never skips part of it
    let envs = h.pulsar_envelopes(ORDERS_TOPIC);
    assert!(envs.len() >= 4, "{} batches", envs.len());
    assert_chained(&envs);
    assert_eq!(changes(&envs).len(), 350);
    assert!(changes(&envs).iter().all(|c| c["version"].as_i64() == Some(v)));
    let (last, rest) = envs.split_last().unwrap();
    assert_eq!(last["to_version"].as_i64(), Some(v));
    assert!(
        rest.iter().all(|e| e["to_version"].as_i64() == Some(start)),
        "partial batches keep the old checkpoint"
    );
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_tables_checkpoint_follows_the_database_version() {
    let h = Harness::start().await;
    h.create_tracked_table("Busy", "[Id] int NOT NULL PRIMARY KEY");
    h.create_tracked_table("Idle", "[Id] int NOT NULL PRIMARY KEY");
    let sidecar = h.spawn(h.config(&[
        "name = \"dbo.Busy\"\nsnapshot = \"never\"",
        "name = \"dbo.Idle\"\nsnapshot = \"never\"",
    ]));
    let idle_start = h.wait_checkpoint("dbo.Idle", "the starting checkpoint", |_| true).await;
    // WHEN only the other table changes
    for i in 1..=3 {
        h.sql(&format!("INSERT INTO [dbo].[Busy] ([Id]) VALUES ({i});"));
    }
    let v = h.current_version();
    // THEN the idle table's checkpoint still moves up to the database version, so it
    // cannot fall behind the retention period and expire
    h.wait_checkpoint("dbo.Idle", "the idle table following the version", |c| c == v)
        .await;
    assert!(v > idle_start);
    assert!(
        h.pulsar_envelopes("persistent://public/default/Shop.dbo.Idle")
            .is_empty(),
        "no batches for an idle table"
    );
    sidecar.stop().await;
}

/// A child process killed when the test ends, even by a failed assertion.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_stream_then_restart_delivers_everything_at_least_once_in_order() {
    let h = Harness::start().await;
    h.create_tracked_table("Orders", ORDERS);
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("sidecar.toml");
    let toml = h
        .config_toml(&["name = \"dbo.Orders\"\nsnapshot = \"never\""])
        .replace("batch_rows = 100", "batch_rows = 10");
    std::fs::write(&config_path, toml).unwrap();
    let spawn = || {
        KillOnDrop(
            std::process::Command::new(env!("CARGO_BIN_EXE_cdc-sidecar"))
                .arg("run")
                .arg("--config")
                .arg(&config_path)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        )
    };
    let insert = |from: i64, to: i64| {
        for i in (from..=to).step_by(10) {
            let values: Vec<String> = (i..i + 10).map(|id| format!("({id}, N'c{id}')")).collect();
            h.sql(&format!(
                "INSERT INTO [dbo].[Orders] ([Id], [Customer]) VALUES {};",
                values.join(", ")
            ));
        }
    };
    let mut child = spawn();
    h.wait_checkpoint("dbo.Orders", "the starting checkpoint", |_| true)
        .await;

    // GIVEN part of a stream delivered
    insert(1, 500);
    let delivered = h.current_version();
    h.wait_checkpoint("dbo.Orders", "the first part", |c| c == delivered)
        .await;
    // WHEN more is in flight (stored by the broker, receipts held back) and the process is killed
    h.pulsar.hold_receipts_for(std::time::Duration::from_secs(30));
    let stored = h.pulsar.messages(ORDERS_TOPIC).len();
    insert(501, 2000);
    let last = h.current_version();
    wait_for("batches in flight", || {
        (h.pulsar.messages(ORDERS_TOPIC).len() > stored).then_some(())
    })
    .await;
    child.0.kill().unwrap(); // SIGKILL: no flush, no checkpoint, no lease release
    child.0.wait().unwrap();
    assert_eq!(
        h.checkpoint("dbo.Orders").await,
        Some(delivered),
        "nothing unacknowledged was checkpointed"
    );

    // THEN a restart delivers everything, at least once and in order
    h.pulsar.hold_receipts_for(std::time::Duration::ZERO);
    // The killed process's lease would expire within 15 s; an operator who knows it is
    // gone may clear it, as this test does to stay fast.
    let client = redis::Client::open(h.redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: i64 = redis::cmd("DEL")
        .arg(format!("cdc-sidecar:lock:{DB}"))
        .query_async(&mut conn)
        .await
        .unwrap();
    let child = spawn();
    h.wait_checkpoint("dbo.Orders", "everything after the restart", |c| c == last)
        .await;
    drop(child);
    let ids: Vec<i64> = changes(&h.pulsar_envelopes(ORDERS_TOPIC))
        .iter()
        .map(|c| c["key"]["Id"].as_str().unwrap().parse().unwrap())
        .collect();
    let mut first_seen = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for id in &ids {
        if seen.insert(*id) {
            first_seen.push(*id);
        }
    }
    assert_eq!(
        first_seen,
        (1..=2000).collect::<Vec<i64>>(),
        "every change, first seen in order"
    );
    assert!(ids.len() > 2000, "the unacknowledged batches were sent again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_for_a_while_holds_everything_back_then_catches_up() {
    let mut h = Harness::start().await;
    let (sidecar, _) = streaming_orders(&h).await;

    // WHEN Redis (checkpoints and Pub/Sub) goes down while rows change
    h.redis.stop();
    for i in 1..=3 {
        h.sql(&format!(
            "INSERT INTO [dbo].[Orders] ([Id], [Customer]) VALUES ({i}, N'while redis is down');"
        ));
    }
    let last = h.current_version();
    wait_for("a failed Redis publish", || {
        (sidecar.metric("cdc_sidecar_sink_errors_total{sink=\"redis_pubsub\"}") >= 1.0).then_some(())
    })
    .await;
    // THEN nothing is counted as delivered yet
    assert_eq!(
        sidecar.metric("cdc_sidecar_batches_total{sink=\"redis_pubsub\",table=\"dbo.Orders\"}"),
        0.0
    );

    // WHEN it comes back (empty: no persistence) THEN streaming catches up and the
    // checkpoint is written again
    h.redis.restart().unwrap();
    h.wait_checkpoint("dbo.Orders", "the checkpoint after Redis returned", |c| c == last)
        .await;
    let ids: Vec<String> = ops(&changes(&h.pulsar_envelopes(ORDERS_TOPIC)));
    assert_eq!(
        ids,
        ["insert:1", "insert:2", "insert:3"],
        "Pulsar got each batch once: only the failed sink was retried"
    );
    assert!(sidecar.metric("cdc_sidecar_batches_total{sink=\"redis_pubsub\",table=\"dbo.Orders\"}") >= 1.0);
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadlock_victim_read_is_retried_without_loss_or_duplicates() {
    use testkit::mssql::types::SqlError;
    let h = Harness::start().await;
    let (sidecar, _) = streaming_orders(&h).await;
    // WHEN SQL Server picks the sidecar's change query as a deadlock victim, twice
    let deadlock = SqlError::new(
        1205,
        13,
        "Transaction (Process ID 53) was deadlocked on lock resources with another process and has been chosen as the deadlock victim. Rerun the transaction.",
    );
    h.engine
        .fail_next_batches_matching("FROM CHANGETABLE(CHANGES [dbo].[Orders], @P1) AS CT LEFT", 2, deadlock);
    h.sql("INSERT INTO [dbo].[Orders] ([Id], [Customer]) VALUES (1, N'x'), (2, N'y');");
    let v = h.current_version();
    // THEN the read is retried and each change is delivered once
    h.wait_checkpoint("dbo.Orders", "delivery after the deadlocks", |c| c == v)
        .await;
    assert_eq!(
        ops(&changes(&h.pulsar_envelopes(ORDERS_TOPIC))),
        ["insert:1", "insert:2"]
    );
    assert!(sidecar.metric("cdc_sidecar_source_errors_total{kind=\"server\"}") >= 2.0);
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_columns_are_exact_on_tables_wider_than_one_mask_word() {
    let h = Harness::start().await;
    let cols: Vec<String> = (1..=40).map(|i| format!("[c{i}] int NULL")).collect();
    h.create_tracked_table("Wide", &format!("[Id] int NOT NULL PRIMARY KEY, {}", cols.join(", ")));
    let sidecar = h.spawn(h.config(&["name = \"dbo.Wide\"\nsnapshot = \"never\""]));
    h.wait_checkpoint("dbo.Wide", "the starting checkpoint", |_| true).await;
    h.sql("INSERT INTO [dbo].[Wide] ([Id]) VALUES (1);");
    let v = h.current_version();
    h.wait_checkpoint("dbo.Wide", "the insert", |c| c == v).await;
    // WHEN an update touches a column in the first mask word and one in the second
    h.sql("UPDATE [dbo].[Wide] SET [c2] = 7, [c35] = 9 WHERE [Id] = 1;");
    let v = h.current_version();
    h.wait_checkpoint("dbo.Wide", "the update", |c| c == v).await;
    let all = changes(&h.pulsar_envelopes("persistent://public/default/Shop.dbo.Wide"));
    assert_eq!(all[1]["op"], "update");
    assert_eq!(all[1]["changed_columns"], serde_json::json!(["c2", "c35"]));
    assert!(all[0]["changed_columns"].is_null(), "inserts carry no mask");
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_table_polling_mode_still_delivers_everything() {
    // The original design (no shared probe) is kept only to measure what the probe saves;
    // it must still be correct.
    let h = Harness::start().await;
    h.create_tracked_table("Orders", ORDERS);
    let toml = h
        .config_toml(&["name = \"dbo.Orders\"\nsnapshot = \"never\""])
        .replace("[poll]\n", "[poll]\nshared_probe = false\n");
    let sidecar = h.spawn(cdc_sidecar::config::Config::from_toml_str(&toml).unwrap());
    h.wait_checkpoint("dbo.Orders", "the starting checkpoint", |_| true)
        .await;
    h.sql("INSERT INTO [dbo].[Orders] ([Id], [Customer]) VALUES (1, N'x');");
    let v = h.current_version();
    h.wait_checkpoint("dbo.Orders", "the insert", |c| c == v).await;
    assert_eq!(ops(&changes(&h.pulsar_envelopes(ORDERS_TOPIC))), ["insert:1"]);
    sidecar.stop().await;
}
