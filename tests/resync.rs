//! Resyncs end to end: every documented kind of lost changes is announced and
//! followed by a fresh snapshot, never skipped silently.

mod support;

use support::*;

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

/// "Change Tracking and Data Restore" ("Work with change tracking"): restored to an
/// older backup, the database reuses versions; once new writes pass the checkpoint, a
/// version check validates it and the changes in between are silently different. The
/// stored incarnation (recovery fork) tells the restored database apart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_that_reuses_versions_past_the_checkpoint_resyncs_as_database_restored() {
    let h = Harness::start().await;
    let (sidecar, _) = streaming_orders_with_one_row(&h).await;
    // GIVEN a backup taken at row 1, then rows 2..=5 delivered
    let backup = h.engine.backup(DB).expect("backup");
    for id in 2..=5 {
        h.sql(&format!(
            "INSERT INTO [dbo].[Orders] ([Id], [Customer]) VALUES ({id}, N'lost');"
        ));
    }
    let before_restore = h.current_version();
    h.wait_checkpoint("dbo.Orders", "rows 2..=5", |v| v == before_restore)
        .await;
    sidecar.stop().await;
    // WHEN the database is restored to the backup and new writes push its version past
    // the checkpoint (the page's scenario)
    h.engine
        .restore(&backup)
        .expect("restore (no session uses the database)");
    assert!(h.current_version() < before_restore, "the restore rewinds the version");
    for id in 10..=20 {
        h.sql(&format!(
            "INSERT INTO [dbo].[Orders] ([Id], [Customer]) VALUES ({id}, N'new');"
        ));
    }
    assert!(
        h.current_version() > before_restore,
        "new writes reuse versions past the checkpoint"
    );
    let sidecar = h.spawn(h.config(&["name = \"dbo.Orders\"\nsnapshot = \"never\""]));

    // THEN a resync names the restore, and the snapshot is the restored table
    let envs = wait_snapshot_done(&h, ORDERS_TOPIC).await;
    let resync = of_kind(&envs, "resync");
    assert_eq!(resync.len(), 1, "{resync:#?}");
    assert_eq!(resync[0]["reason"], "database_restored");
    let mut ids: Vec<i64> = changes(&of_kind(&envs, "snapshot"))
        .iter()
        .map(|c| c["key"]["Id"].as_str().unwrap().parse().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, [1].into_iter().chain(10..=20).collect::<Vec<i64>>());
    let current = h.current_version();
    h.wait_checkpoint("dbo.Orders", "the snapshot version", |v| v == current)
        .await;
    assert_eq!(
        sidecar.metric("cdc_sidecar_resyncs_total{reason=\"database_restored\",table=\"dbo.Orders\"}"),
        1.0
    );
    sidecar.stop().await;
}

/// A resync is recorded as pending before it is announced: killed in the middle of the
/// snapshot, the sidecar announces and takes it again on restart instead of streaming
/// on from a position that no longer means anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_a_resync_snapshot_resumes_the_resync_after_restart() {
    let h = Harness::start().await;
    h.create_tracked_table("Orders", ORDERS);
    let values: Vec<String> = (1..=2000).map(|i| format!("({i}, N'c{i}')")).collect();
    h.sql(&format!(
        "INSERT INTO [dbo].[Orders] ([Id], [Customer]) VALUES {};",
        values.join(", ")
    ));
    // GIVEN a checkpoint ahead of the database (as after a restore): a resync is due
    let key = format!("cdc-sidecar:checkpoint:{DB}:dbo.Orders");
    let client = redis::Client::open(h.redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("HSET")
        .arg(&key)
        .arg("version")
        .arg(h.current_version() + 1_000)
        .query_async(&mut conn)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("sidecar.toml");
    let toml = h
        .config_toml(&["name = \"dbo.Orders\""])
        .replace("batch_rows = 100", "batch_rows = 10");
    std::fs::write(&config_path, toml).unwrap();
    let spawn = || SidecarProcess::start(&config_path, &dir.path().join("sidecar.log"));
    // WHEN it is killed after the resync was announced and part of the snapshot sent
    let mut child = spawn();
    wait_for("part of the snapshot", || {
        let envs = h.pulsar_envelopes(ORDERS_TOPIC);
        (of_kind(&envs, "snapshot").len() >= 3).then_some(())
    })
    .await;
    child.kill();
    let sent = h.pulsar_envelopes(ORDERS_TOPIC);
    assert!(
        !of_kind(&sent, "snapshot").iter().any(|e| e["snapshot"]["last"] == true),
        "killed before the snapshot completed"
    );
    let pending: Option<String> = redis::cmd("HGET")
        .arg(&key)
        .arg("resync")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        pending.as_deref(),
        Some("version_went_backwards"),
        "recorded before it was announced"
    );
    // THEN after the restart the resync is announced again and the snapshot completes
    h.clear_lease().await;
    let _child = spawn();
    let envs = wait_for("the snapshot to complete after the restart", || {
        let envs = h.pulsar_envelopes(ORDERS_TOPIC);
        envs.iter().any(|e| e["snapshot"]["last"] == true).then_some(envs)
    })
    .await;
    let resyncs = of_kind(&envs, "resync");
    assert_eq!(resyncs.len(), 2, "announced again after the restart");
    assert!(resyncs.iter().all(|r| r["reason"] == "version_went_backwards"));
    // The snapshot after the second announcement holds every row exactly once.
    let second = envs.iter().rposition(|e| e["kind"] == "resync").unwrap();
    let mut ids: Vec<i64> = changes(&of_kind(&envs[second..], "snapshot"))
        .iter()
        .map(|c| c["key"]["Id"].as_str().unwrap().parse().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, (1..=2000).collect::<Vec<i64>>());
    let current = h.current_version();
    h.wait_checkpoint("dbo.Orders", "the snapshot version", |v| v == current)
        .await;
    let pending: Option<String> = redis::cmd("HGET")
        .arg(&key)
        .arg("resync")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(pending, None, "the completed resync is no longer pending");
}
