//! Schema changes of a streamed table, end to end: an added, dropped or renamed column
//! is noticed within a tick (the discover query carries `sys.tables.modify_date`), the
//! table's columns are read again, a `schema` batch tells consumers what `row` holds
//! from then on, and no change is lost; a dropped table is a visible error.

mod support;

use serde_json::{json, Value};
use support::*;

/// The `schema` batches on `topic`.
fn schemas(envs: &[Value]) -> Vec<Value> {
    of_kind(envs, "schema")
}

/// Waits until the Pulsar topic holds a change of row `id` satisfying `ok`.
async fn wait_change(h: &Harness, what: &str, ok: impl Fn(&Value) -> bool) -> Vec<Value> {
    wait_for(what, || {
        let envs = h.pulsar_envelopes(ORDERS_TOPIC);
        changes(&envs).iter().any(&ok).then_some(envs)
    })
    .await
}

fn id_is(c: &Value, id: &str) -> bool {
    c["key"]["Id"] == id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_added_column_is_published_as_a_schema_batch_and_streams_from_then_on() {
    let h = Harness::start().await;
    let (sidecar, _) = streaming_orders_with_one_row(&h).await;
    // WHEN a column is added and a row uses it
    h.sql("ALTER TABLE [dbo].[Orders] ADD [Note] nvarchar(50) NULL;");
    h.sql("INSERT INTO [dbo].[Orders] ([Id], [Customer], [Note]) VALUES (2, N'b', N'hello');");
    // THEN a schema batch lists it, before the change that carries it
    let envs = wait_change(&h, "row 2 with its note", |c| {
        id_is(c, "2") && c["row"]["Note"] == "hello"
    })
    .await;
    let s = schemas(&envs);
    assert_eq!(s.len(), 1, "{s:#?}");
    let names: Vec<&str> = s[0]["schema"]["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Id", "Customer", "Total", "Note"]);
    assert_eq!(s[0]["schema"]["key"], json!(["Id"]));
    assert_eq!(s[0]["schema"]["columns"][3]["type"], "nvarchar(50)");
    let at_schema = envs.iter().position(|e| e["kind"] == "schema").unwrap();
    let at_row2 = envs
        .iter()
        .position(|e| changes(std::slice::from_ref(e)).iter().any(|c| id_is(c, "2")))
        .unwrap();
    assert!(at_schema < at_row2, "the schema comes first");
    assert_chained(&envs);
    assert_eq!(ops(&changes(&envs)), ["insert:1", "insert:2"]);
    assert_eq!(
        sidecar.metric("cdc_sidecar_schema_changes_total{table=\"dbo.Orders\"}"),
        1.0
    );
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_column_and_a_renamed_one_are_published_and_nothing_is_lost() {
    let h = Harness::start().await;
    let (sidecar, _) = streaming_orders_with_one_row(&h).await;
    // WHEN Total is dropped (with changes pending around it) and Customer renamed
    h.sql("UPDATE [dbo].[Orders] SET [Total] = 5 WHERE [Id] = 1;");
    h.sql("ALTER TABLE [dbo].[Orders] DROP COLUMN [Total];");
    h.sql("INSERT INTO [dbo].[Orders] ([Id], [Customer]) VALUES (2, N'b');");
    h.sql("EXEC sp_rename N'[dbo].[Orders].[Customer]', N'Buyer', N'COLUMN';");
    h.sql("INSERT INTO [dbo].[Orders] ([Id], [Buyer]) VALUES (3, N'c');");
    // THEN every change arrives, the last with the new column name, after the schemas
    let envs = wait_change(&h, "row 3 under the new name", |c| {
        id_is(c, "3") && c["row"]["Buyer"] == "c"
    })
    .await;
    let last = schemas(&envs).last().cloned().unwrap();
    let names: Vec<&str> = last["schema"]["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Id", "Buyer"]);
    let all = changes(&envs);
    for id in ["1", "2", "3"] {
        assert!(all.iter().any(|c| id_is(c, id)), "row {id} arrived: {all:#?}");
    }
    assert!(all
        .iter()
        .all(|c| c["row"].get("Total").is_none() || c["key"]["Id"] == "1"));
    assert_eq!(h.checkpoint("dbo.Orders").await, Some(h.current_version()));
    assert_eq!(
        sidecar.metric("cdc_sidecar_table_state{state=\"error\",table=\"dbo.Orders\"}"),
        0.0,
        "never parked"
    );
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_table_is_a_visible_error_while_the_others_stream() {
    let h = Harness::start().await;
    h.create_tracked_table("Orders", ORDERS);
    h.create_tracked_table("Other", "[Id] int NOT NULL PRIMARY KEY");
    let sidecar = h.spawn(h.config(&[
        "name = \"dbo.Orders\"\nsnapshot = \"never\"",
        "name = \"dbo.Other\"\nsnapshot = \"never\"",
    ]));
    h.wait_checkpoint("dbo.Other", "the start", |_| true).await;
    // WHEN Orders is dropped
    h.sql("DROP TABLE [dbo].[Orders];");
    h.sql("INSERT INTO [dbo].[Other] ([Id]) VALUES (1);");
    // THEN Orders is in error, and Other streams on
    wait_for("dbo.Orders in error", || {
        (sidecar.metric("cdc_sidecar_table_state{state=\"error\",table=\"dbo.Orders\"}") == 1.0).then_some(())
    })
    .await;
    let v = h.current_version();
    h.wait_checkpoint("dbo.Other", "the insert into Other", |c| c == v)
        .await;
    sidecar.stop().await;
}
