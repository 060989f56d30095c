//! Streaming end to end: changes from the SQL Server stand-in reach the Pulsar stand-in
//! and a real Redis in order, through the real tiberius, pulsar and redis clients.

mod support;

use support::*;

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
        assert_eq!(envs[0]["format"], 2);
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
    // (The checkpoint's version is `v` from the first part on: wait for the last part.)
    wait_for("the whole transaction on Pulsar", || {
        h.pulsar_envelopes(ORDERS_TOPIC)
            .last()
            .is_some_and(|e| e["to"] == serde_json::json!({"version": v, "part": null}))
            .then_some(())
    })
    .await;

    // THEN every row arrives, split over chained batches whose ends are parts 1, 2, 3 of
    // the transaction's version, strictly increasing, and only the last one claims all of
    // it: a consumer (or a restart) never takes a part for a repeat, nor skips one
    let envs = h.pulsar_envelopes(ORDERS_TOPIC);
    assert!(envs.len() >= 4, "{} batches", envs.len());
    assert_chained(&envs);
    assert_eq!(changes(&envs).len(), 350);
    assert!(changes(&envs).iter().all(|c| c["version"].as_i64() == Some(v)));
    assert_eq!(envs[0]["from"], serde_json::json!({"version": start, "part": null}));
    let (last, rest) = envs.split_last().unwrap();
    assert_eq!(last["to"], serde_json::json!({"version": v, "part": null}));
    for (n, e) in rest.iter().enumerate() {
        assert_eq!(
            e["to"],
            serde_json::json!({"version": v, "part": n + 1}),
            "part {}",
            n + 1
        );
    }
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
