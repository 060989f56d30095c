//! Faults end to end: sinks, Redis, the database and the process itself failing, and
//! nothing lost or reordered.

mod support;

use support::*;

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
async fn sigkill_mid_stream_then_restart_delivers_everything_at_least_once_in_order() {
    let h = Harness::start().await;
    h.create_tracked_table("Orders", ORDERS);
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("sidecar.toml");
    let toml = h
        .config_toml(&["name = \"dbo.Orders\"\nsnapshot = \"never\""])
        .replace("batch_rows = 100", "batch_rows = 10");
    std::fs::write(&config_path, toml).unwrap();
    let spawn = || SidecarProcess::start(&config_path, &dir.path().join("sidecar.log"));
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
    child.kill();
    assert_eq!(
        h.checkpoint("dbo.Orders").await,
        Some(delivered),
        "nothing unacknowledged was checkpointed"
    );

    // THEN a restart delivers everything, at least once and in order
    h.pulsar.hold_receipts_for(std::time::Duration::ZERO);
    h.clear_lease().await;
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
        .fail_next_batches_matching("FROM CHANGETABLE(CHANGES [dbo].[Orders], @P2) AS CT LEFT", 2, deadlock);
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
