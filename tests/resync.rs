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
