//! The rules Microsoft's reference pages state for the statements in
//! `docs/sql-surface.md`, each checked through the real tiberius client (plain
//! batches and `sp_executesql` RPCs, as the sidecar sends them). Each test names the
//! rule; the page it comes from is cited beside the statement in the doc.

mod engine_support;
mod engine_tds_support;

use engine_support::shop;
use engine_tds_support::*;

const READER: &str = "CREATE LOGIN [reader] WITH PASSWORD = N'Reader-Passw0rd!';
CREATE USER [reader] FOR LOGIN [reader];";

/// `Shop` (dbo.Orders tracked with TRACK_COLUMNS_UPDATED = ON) and an `sa` client.
async fn standin() -> (Standin, TdsClient) {
    let standin = Standin::start(shop()).await;
    let client = standin.sa("Shop").await;
    (standin, client)
}

async fn scalar(client: &mut TdsClient, sql: &str) -> Option<i64> {
    let r = rows(client, sql).await;
    assert_eq!(r.len(), 1, "one row from {sql}");
    int(&r[0], 0)
}

async fn current_version(client: &mut TdsClient) -> i64 {
    let r = rpc(
        client,
        "SELECT CHANGE_TRACKING_CURRENT_VERSION() AS current_version",
        &[],
    )
    .await
    .expect("current version");
    int(&r[0], 0).expect("change tracking is on")
}

// ---- CHANGETABLE (Transact-SQL) ----

#[tokio::test]
async fn changetable_with_null_last_sync_version_returns_all_tracked_changes() {
    let (_s, mut c) = standin().await;
    rows(&mut c, "INSERT INTO dbo.Orders VALUES (1, N'a', 1), (2, N'b', 2)").await;
    rows(&mut c, "UPDATE dbo.Orders SET Total = 5 WHERE Id = 1").await;
    let r = rows(
        &mut c,
        "SELECT CT.Id, CT.SYS_CHANGE_OPERATION FROM CHANGETABLE(CHANGES dbo.Orders, NULL) AS CT ORDER BY CT.Id",
    )
    .await;
    let got: Vec<_> = r.iter().map(|r| (int(r, 0).unwrap(), text(r, 1).unwrap())).collect();
    // Relative to "no baseline" every row is an insert.
    assert_eq!(got, vec![(1, "I".to_string()), (2, "I".to_string())]);
}

#[tokio::test]
async fn changetable_last_sync_version_must_be_a_scalar_not_an_expression() {
    let (_s, mut c) = standin().await;
    // "The value must be scalar. An expression will cause a syntax error."
    let e = code(
        rpc(
            &mut c,
            "SELECT CT.Id FROM CHANGETABLE(CHANGES dbo.Orders, @P1 + 1) AS CT",
            &[&0i64],
        )
        .await,
    );
    assert_eq!(e, 102);
}

#[tokio::test]
async fn changetable_must_be_aliased_22104() {
    let (_s, mut c) = standin().await;
    let e = code(batch(&mut c, "SELECT * FROM CHANGETABLE(CHANGES dbo.Orders, 0)").await);
    assert_eq!(e, 22104);
}

#[tokio::test]
async fn changetable_on_untracked_table_raises_22105() {
    let (_s, mut c) = standin().await;
    rows(&mut c, "CREATE TABLE dbo.Plain (Id int PRIMARY KEY)").await;
    let e = code(batch(&mut c, "SELECT CT.Id FROM CHANGETABLE(CHANGES dbo.Plain, 0) AS CT").await);
    assert_eq!(e, 22105);
}

#[tokio::test]
async fn changetable_with_version_below_min_valid_is_not_an_error() {
    // The page asks the application to validate last_sync_version against
    // CHANGE_TRACKING_MIN_VALID_VERSION; CHANGETABLE itself raises nothing and
    // returns what is left.
    let (s, mut c) = standin().await;
    rows(&mut c, "INSERT INTO dbo.Orders VALUES (1, N'a', 1)").await;
    s.engine.advance_clock(std::time::Duration::from_secs(3 * 86_400));
    rows(&mut c, "INSERT INTO dbo.Orders VALUES (2, N'b', 2)").await;
    s.engine.run_change_tracking_cleanup("Shop");
    let min_valid = scalar(
        &mut c,
        "SELECT CHANGE_TRACKING_MIN_VALID_VERSION(OBJECT_ID(N'dbo.Orders'))",
    )
    .await
    .expect("tracked");
    assert_eq!(min_valid, 1);
    let r = rows(
        &mut c,
        "SELECT CT.Id FROM CHANGETABLE(CHANGES dbo.Orders, 0) AS CT ORDER BY CT.Id",
    )
    .await;
    assert_eq!(r.iter().map(|r| int(r, 0).unwrap()).collect::<Vec<_>>(), vec![2]);
}

#[tokio::test]
async fn changetable_needs_view_change_tracking_and_select_229() {
    let (s, mut c) = standin().await;
    rows(&mut c, READER).await;
    rows(&mut c, "GRANT SELECT ON SCHEMA::dbo TO [reader]").await;
    let mut reader = s.connect("reader", "Reader-Passw0rd!", "Shop").await.expect("reader");
    let sql = "SELECT CT.Id FROM CHANGETABLE(CHANGES dbo.Orders, 0) AS CT";
    assert_eq!(code(batch(&mut reader, sql).await), 229);
    rows(&mut c, "GRANT VIEW CHANGE TRACKING ON SCHEMA::dbo TO [reader]").await;
    rows(&mut reader, sql).await;
}

// ---- TRUNCATE TABLE / CHANGETABLE: "the change tracking version information
// that is associated with the table is reset as if change tracking has just been
// enabled on the table … The validation fails if the table has been truncated." ----

#[tokio::test]
async fn truncate_table_makes_earlier_sync_versions_invalid() {
    let (_s, mut c) = standin().await;
    rows(&mut c, "INSERT INTO dbo.Orders VALUES (1, N'a', 1)").await;
    let synced = current_version(&mut c).await;
    rows(&mut c, "TRUNCATE TABLE dbo.Orders").await;
    let min_valid = scalar(
        &mut c,
        "SELECT min_valid_version FROM sys.change_tracking_tables WHERE object_id = OBJECT_ID(N'dbo.Orders')",
    )
    .await
    .expect("tracked");
    assert!(synced < min_valid, "synced {synced}, min valid {min_valid}");
    assert_eq!(
        scalar(&mut c, "SELECT COUNT(*) FROM CHANGETABLE(CHANGES dbo.Orders, 0) AS CT").await,
        Some(0)
    );
}

// ---- CHANGE_TRACKING_CURRENT_VERSION / CHANGE_TRACKING_MIN_VALID_VERSION ----

#[tokio::test]
async fn change_tracking_current_version_is_null_without_database_tracking() {
    let (_s, mut c) = standin().await;
    rows(&mut c, "CREATE DATABASE Untracked").await;
    let mut u = _s.sa("Untracked").await;
    assert_eq!(scalar(&mut u, "SELECT CHANGE_TRACKING_CURRENT_VERSION()").await, None);
    assert_eq!(
        scalar(&mut c, "SELECT CHANGE_TRACKING_CURRENT_VERSION()").await,
        Some(0)
    );
}

#[tokio::test]
async fn change_tracking_min_valid_version_of_untracked_table_is_null() {
    let (s, mut c) = standin().await;
    rows(&mut c, "CREATE TABLE dbo.Plain (Id int PRIMARY KEY)").await;
    assert_eq!(
        scalar(
            &mut c,
            "SELECT CHANGE_TRACKING_MIN_VALID_VERSION(OBJECT_ID(N'dbo.Plain'))"
        )
        .await,
        None
    );
    // An object id that is not valid in the current database.
    assert_eq!(
        scalar(&mut c, "SELECT CHANGE_TRACKING_MIN_VALID_VERSION(12345)").await,
        None
    );
    // Insufficient permission on the table.
    let id = scalar(&mut c, "SELECT OBJECT_ID(N'dbo.Orders')").await.expect("id");
    rows(&mut c, READER).await;
    let mut reader = s.connect("reader", "Reader-Passw0rd!", "Shop").await.expect("reader");
    let r = rpc(
        &mut reader,
        "SELECT CHANGE_TRACKING_MIN_VALID_VERSION(@P1)",
        &[&(id as i32)],
    )
    .await
    .expect("query");
    assert_eq!(int(&r[0], 0), None);
    // Tracked and visible: the version tracking began at.
    assert_eq!(
        scalar(
            &mut c,
            "SELECT CHANGE_TRACKING_MIN_VALID_VERSION(OBJECT_ID(N'dbo.Orders'))"
        )
        .await,
        Some(0)
    );
}

// ---- OBJECT_ID: "metadata-emitting, built-in functions such as OBJECT_ID may
// return NULL if the user does not have any permission on the object" ----

#[tokio::test]
async fn object_id_is_null_without_any_permission_on_the_object() {
    let (s, mut c) = standin().await;
    rows(&mut c, READER).await;
    let mut reader = s.connect("reader", "Reader-Passw0rd!", "Shop").await.expect("reader");
    let sql = "SELECT OBJECT_ID(N'[dbo].[Orders]')";
    assert_eq!(scalar(&mut reader, sql).await, None);
    rows(&mut c, "GRANT SELECT ON SCHEMA::dbo TO [reader]").await;
    assert_eq!(scalar(&mut reader, sql).await, scalar(&mut c, sql).await);
}

// ---- WITH CHANGE_TRACKING_CONTEXT ----

#[tokio::test]
async fn with_change_tracking_context_is_refused_before_select_22108_and_over_128_bytes_22109() {
    let (_s, mut c) = standin().await;
    let e = code(batch(&mut c, "WITH CHANGE_TRACKING_CONTEXT (0x01) SELECT 1").await);
    assert_eq!(e, 22108);
    let long = format!("0x{}", "AB".repeat(129));
    let e = code(
        batch(
            &mut c,
            &format!("DECLARE @ctx varbinary(max) = {long}; WITH CHANGE_TRACKING_CONTEXT (@ctx) INSERT INTO dbo.Orders VALUES (1, N'a', 1)"),
        )
        .await,
    );
    assert_eq!(e, 22109);
}

// ---- TOP (Transact-SQL): "expression is converted to bigint" ----

#[tokio::test]
async fn top_row_count_must_be_a_non_negative_integer() {
    let (_s, mut c) = standin().await;
    let q = "SELECT TOP (@P1) Id FROM dbo.Orders ORDER BY Id";
    assert_eq!(code(rpc(&mut c, q, &[&-1i64]).await), 127);
    assert_eq!(code(rpc(&mut c, q, &[&Option::<i64>::None]).await), 1014);
    assert_eq!(code(rpc(&mut c, q, &[&1.5f64]).await), 1060);
    assert!(rpc(&mut c, q, &[&0i64]).await.expect("TOP (0)").is_empty());
}

// ---- HAS_PERMS_BY_NAME: "NULL when the securable class or permission is not valid" ----

#[tokio::test]
async fn has_perms_by_name_unknown_permission_returns_null() {
    let (_s, mut c) = standin().await;
    let r = rows(
        &mut c,
        "SELECT HAS_PERMS_BY_NAME(N'[dbo].[Orders]', N'OBJECT', N'FLY'),
                HAS_PERMS_BY_NAME(N'[dbo].[Orders]', N'NOSUCHCLASS', N'SELECT'),
                HAS_PERMS_BY_NAME(N'[dbo].[Orders]', N'OBJECT', N'SELECT'),
                HAS_PERMS_BY_NAME(N'[dbo].[Nope]', N'OBJECT', N'SELECT')",
    )
    .await;
    assert_eq!(
        (int(&r[0], 0), int(&r[0], 1), int(&r[0], 2), int(&r[0], 3)),
        (None, None, Some(1), None)
    );
}

#[tokio::test]
async fn has_perms_by_name_any_is_a_wildcard_and_null_database_is_current() {
    let (s, mut c) = standin().await;
    rows(&mut c, READER).await;
    rows(&mut c, "GRANT SELECT ON SCHEMA::dbo TO [reader]").await;
    let mut reader = s.connect("reader", "Reader-Passw0rd!", "Shop").await.expect("reader");
    let r = rpc(
        &mut reader,
        "SELECT HAS_PERMS_BY_NAME(@P1, N'OBJECT', N'ANY'), HAS_PERMS_BY_NAME(@P1, N'OBJECT', N'VIEW CHANGE TRACKING'),
                HAS_PERMS_BY_NAME(NULL, N'DATABASE', N'CONNECT')",
        &[&"[dbo].[Orders]"],
    )
    .await
    .expect("query");
    assert_eq!(
        (int(&r[0], 0), int(&r[0], 1), int(&r[0], 2)),
        (Some(1), Some(0), Some(1))
    );
}

// ---- SET TRANSACTION ISOLATION LEVEL ----

#[tokio::test]
async fn snapshot_isolation_in_a_transaction_started_otherwise_raises_3951_and_rolls_back() {
    // "A transaction cannot be set to SNAPSHOT isolation level that started with
    // another isolation level; doing so will cause the transaction to abort."
    let (_s, mut c) = standin().await;
    rows(&mut c, "BEGIN TRANSACTION; INSERT INTO dbo.Orders VALUES (1, N'a', 1)").await;
    rows(&mut c, "SET TRANSACTION ISOLATION LEVEL SNAPSHOT").await;
    assert_eq!(code(batch(&mut c, "SELECT COUNT(*) FROM dbo.Orders").await), 3951);
    assert_eq!(scalar(&mut c, "SELECT @@TRANCOUNT").await, Some(0));
    assert_eq!(scalar(&mut c, "SELECT COUNT(*) FROM dbo.Orders").await, Some(0));

    // "If a transaction starts in the SNAPSHOT isolation level, you can change it to
    // another isolation level and then back to SNAPSHOT."
    rows(&mut c, "BEGIN TRANSACTION; SELECT COUNT(*) FROM dbo.Orders").await;
    rows(
        &mut c,
        "SET TRANSACTION ISOLATION LEVEL READ COMMITTED; SELECT COUNT(*) FROM dbo.Orders",
    )
    .await;
    rows(
        &mut c,
        "SET TRANSACTION ISOLATION LEVEL SNAPSHOT; SELECT COUNT(*) FROM dbo.Orders",
    )
    .await;
    rows(&mut c, "COMMIT TRANSACTION").await;
}

#[tokio::test]
async fn snapshot_transaction_in_database_without_allow_snapshot_isolation_raises_3952() {
    // "The ALLOW_SNAPSHOT_ISOLATION database option must be set to ON before you
    // can start a transaction that uses the SNAPSHOT isolation level."
    let (_s, mut c) = standin().await;
    rows(&mut c, "ALTER DATABASE Shop SET ALLOW_SNAPSHOT_ISOLATION OFF").await;
    let e = code(
        batch(
            &mut c,
            "SET TRANSACTION ISOLATION LEVEL SNAPSHOT; BEGIN TRANSACTION; SELECT COUNT(*) FROM dbo.Orders",
        )
        .await,
    );
    assert_eq!(e, 3952);
}

#[tokio::test]
async fn snapshot_transaction_begun_in_a_batch_spans_later_rpc_calls() {
    // The sidecar's tick: SET + BEGIN as a plain batch (at session scope, so they
    // last), the reads as sp_executesql RPCs, COMMIT as a plain batch.
    let (s, mut c) = standin().await;
    rows(&mut c, "INSERT INTO dbo.Orders VALUES (1, N'a', 1)").await;
    batch(&mut c, "SET TRANSACTION ISOLATION LEVEL SNAPSHOT; BEGIN TRANSACTION")
        .await
        .expect("begin");
    let seen = current_version(&mut c).await;
    let mut other = s.sa("Shop").await;
    rows(&mut other, "INSERT INTO dbo.Orders VALUES (2, N'b', 2)").await;
    assert_eq!(current_version(&mut c).await, seen, "the snapshot holds across RPCs");
    let changed = rpc(
        &mut c,
        "SELECT CT.Id FROM CHANGETABLE(CHANGES [dbo].[Orders], @P1) AS CT WHERE CT.SYS_CHANGE_VERSION <= @P2",
        &[&0i64, &seen],
    )
    .await
    .expect("changes");
    assert_eq!(changed.len(), 1);
    batch(&mut c, "COMMIT TRANSACTION").await.expect("commit");
    assert_eq!(current_version(&mut c).await, seen + 1);
}

// ---- BEGIN / COMMIT TRANSACTION ----

#[tokio::test]
async fn commit_without_begin_raises_3902() {
    let (_s, mut c) = standin().await;
    assert_eq!(code(batch(&mut c, "COMMIT TRANSACTION").await), 3902);
}

// ---- ALTER DATABASE SET options ----

#[tokio::test]
async fn master_allows_snapshot_isolation_by_default() {
    // "The option is ON by default for the master and msdb databases."
    let (_s, mut c) = standin().await;
    let r = rows(
        &mut c,
        "SELECT name, snapshot_isolation_state FROM sys.databases WHERE name IN (N'master', N'Untouched') ORDER BY database_id",
    )
    .await;
    assert_eq!(int(&r[0], 1), Some(1));
    rows(&mut c, "CREATE DATABASE Untouched").await;
    assert_eq!(
        scalar(
            &mut c,
            "SELECT snapshot_isolation_state FROM sys.databases WHERE name = N'Untouched'"
        )
        .await,
        Some(0)
    );
}

#[tokio::test]
async fn alter_database_change_tracking_off_takes_no_options() {
    // `CHANGE_TRACKING { = OFF | = ON [ ( … ) ] | ( … ) }`
    let (_s, mut c) = standin().await;
    let e = code(
        batch(
            &mut c,
            "ALTER DATABASE Shop SET CHANGE_TRACKING = OFF (AUTO_CLEANUP = ON)",
        )
        .await,
    );
    assert_eq!(e, 102);
}

#[tokio::test]
async fn change_tracking_off_while_tables_are_tracked_raises_22115() {
    // "Change tracking must first be disabled for all change-tracked tables before
    // change tracking can be set to OFF for the database."
    let (_s, mut c) = standin().await;
    assert_eq!(
        code(batch(&mut c, "ALTER DATABASE Shop SET CHANGE_TRACKING = OFF").await),
        22115
    );
    rows(&mut c, "ALTER TABLE dbo.Orders DISABLE CHANGE_TRACKING").await;
    rows(&mut c, "ALTER DATABASE Shop SET CHANGE_TRACKING = OFF").await;
}

// ---- ALTER TABLE … ENABLE CHANGE_TRACKING ----

#[tokio::test]
async fn enable_change_tracking_needs_a_primary_key_4997_and_only_once_4996() {
    let (_s, mut c) = standin().await;
    rows(&mut c, "CREATE TABLE dbo.Heap (Id int NOT NULL)").await;
    assert_eq!(
        code(batch(&mut c, "ALTER TABLE dbo.Heap ENABLE CHANGE_TRACKING").await),
        4997
    );
    assert_eq!(
        code(batch(&mut c, "ALTER TABLE dbo.Orders ENABLE CHANGE_TRACKING").await),
        4996
    );
    // TRACK_COLUMNS_UPDATED is OFF unless asked for.
    rows(&mut c, "CREATE TABLE dbo.Keyed (Id int PRIMARY KEY)").await;
    rows(&mut c, "ALTER TABLE dbo.Keyed ENABLE CHANGE_TRACKING").await;
    assert_eq!(
        scalar(
            &mut c,
            "SELECT CAST(is_track_columns_updated_on AS int) FROM sys.change_tracking_tables WHERE object_id = OBJECT_ID(N'dbo.Keyed')",
        )
        .await,
        Some(0)
    );
}

// ---- The snapshot chunk: keys bound as CAST(@P2 AS <declared type>) ----

#[tokio::test]
async fn keyset_chunk_binds_keys_as_cast_to_their_declared_type() {
    let (_s, mut c) = standin().await;
    rows(
        &mut c,
        "CREATE TABLE dbo.Codes (K varchar(40) NOT NULL, N int NOT NULL, V int NULL, CONSTRAINT PK_Codes PRIMARY KEY (K, N));
         INSERT INTO dbo.Codes VALUES ('a', 1, 1), ('a', 2, 2), ('b', 1, 3), ('c', 1, 4)",
    )
    .await;
    let chunk = "SELECT TOP (@P1) T.[K], T.[N], T.[V] FROM [dbo].[Codes] AS T
        WHERE (T.[K] > CAST(@P2 AS varchar(40))) OR (T.[K] = CAST(@P2 AS varchar(40)) AND T.[N] > CAST(@P3 AS int))
        ORDER BY T.[K], T.[N]";
    let r = rpc(&mut c, chunk, &[&2i64, &"a", &1i64]).await.expect("chunk");
    let got: Vec<_> = r.iter().map(|r| (text(r, 0).unwrap(), int(r, 1).unwrap())).collect();
    assert_eq!(got, vec![("a".to_string(), 2), ("b".to_string(), 1)]);
}
