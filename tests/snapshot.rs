//! Snapshots end to end: existing rows published keyset-paginated, then streaming.

mod support;

use support::*;

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
