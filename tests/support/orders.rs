//! The `dbo.Orders` table most end-to-end tests stream, and the checks they share.

use serde_json::Value;

use super::{wait_for, Harness, Sidecar, DEADLINE};

pub const ORDERS: &str =
    "[Id] bigint NOT NULL PRIMARY KEY, [Customer] nvarchar(100) NOT NULL, [Total] decimal(18,2) NULL";
pub const ORDERS_TOPIC: &str = "persistent://public/default/Shop.dbo.Orders";
pub const ORDERS_CHANNEL: &str = "cdc:Shop.dbo.Orders";

pub fn ops(changes: &[Value]) -> Vec<String> {
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

/// Every envelope continues the previous one: its `from` is the previous `to` (or
/// later, when the table had nothing to publish meanwhile), its `to` is above the
/// previous one (a `schema` batch's is the same), and its `seq` is one more.
pub fn assert_chained(envelopes: &[Value]) {
    let order = |p: &Value| (p["version"].as_i64().unwrap(), p["part"].as_u64().unwrap_or(u64::MAX));
    for pair in envelopes.windows(2) {
        assert_eq!(
            pair[1]["seq"].as_u64().unwrap(),
            pair[0]["seq"].as_u64().unwrap() + 1,
            "batch numbers must follow each other: {pair:?}"
        );
        assert!(
            order(&pair[1]["from"]) >= order(&pair[0]["to"]),
            "batches must chain: {pair:?}"
        );
        // A `schema` batch changes no row: it ends where the previous batch did.
        let increases = if pair[1]["kind"] == "schema" || pair[0]["kind"] == "schema" {
            order(&pair[1]["to"]) >= order(&pair[0]["to"])
        } else {
            order(&pair[1]["to"]) > order(&pair[0]["to"])
        };
        assert!(increases, "ends must strictly increase: {pair:?}");
    }
}

/// GIVEN a sidecar streaming an empty `dbo.Orders` (no snapshot); returns it and its
/// starting checkpoint.
pub async fn streaming_orders(h: &Harness) -> (Sidecar, i64) {
    h.create_tracked_table("Orders", ORDERS);
    let sidecar = h.spawn(h.config(&["name = \"dbo.Orders\"\nsnapshot = \"never\""]));
    let start = h
        .wait_checkpoint("dbo.Orders", "the starting checkpoint", |_| true)
        .await;
    (sidecar, start)
}

/// GIVEN a sidecar streaming `dbo.Orders` (no snapshot) with row 1 inserted and delivered;
/// returns the sidecar and the version of that insert.
pub async fn streaming_orders_with_one_row(h: &Harness) -> (Sidecar, i64) {
    let (sidecar, _) = streaming_orders(h).await;
    h.sql("INSERT INTO [dbo].[Orders] ([Id], [Customer]) VALUES (1, N'a');");
    let v1 = h.current_version();
    h.wait_checkpoint("dbo.Orders", "the first insert", |v| v == v1).await;
    (sidecar, v1)
}

/// Reads `n` envelopes from `topic` with the `pulsar` crate's consumer (which undoes the
/// producer's compression itself).
pub async fn consume_pulsar(h: &Harness, topic: &str, n: usize) -> Vec<Value> {
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
pub async fn wait_snapshot_done(h: &Harness, topic: &str) -> Vec<Value> {
    wait_for("a snapshot's last batch", || {
        let envs = h.pulsar_envelopes(topic);
        envs.iter().any(|e| e["snapshot"]["last"] == true).then_some(envs)
    })
    .await
}
