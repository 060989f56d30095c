//! Restores are detectable, through the real tiberius client. "Work with change
//! tracking", Change Tracking and Data Restore: after a restore to version 70 new
//! writes push the version past a client's checkpoint of 100, the client validates
//! 100 against the minimum valid version and silently misses changes
//! (https://learn.microsoft.com/en-us/sql/relational-databases/track-changes/work-with-change-tracking-sql-server#change-tracking-and-data-restore).
//! What tells the incarnations apart is `sys.database_recovery_status`: a restore WITH
//! RECOVERY starts a new recovery fork and assigns a new database GUID, keeping the
//! family GUID (sources in docs/sql-surface.md, "Database incarnation").

mod engine_support;
mod engine_tds_support;

use std::time::{Duration, Instant};

use engine_support::shop;
use engine_tds_support::*;
use testkit::mssql::engine::Backup;
use tiberius::Uuid;

const INCARNATION: &str = "SELECT database_id, database_guid, family_guid, recovery_fork_guid, first_recovery_fork_guid
FROM sys.database_recovery_status WHERE database_id = DB_ID()";

/// One row of [`INCARNATION`].
#[derive(Debug, Clone, PartialEq)]
struct Incarnation {
    database_id: i64,
    database_guid: Uuid,
    family_guid: Uuid,
    recovery_fork_guid: Uuid,
    first_recovery_fork_guid: Option<Uuid>,
}

async fn incarnation(client: &mut TdsClient) -> Incarnation {
    let r = rpc(client, INCARNATION, &[])
        .await
        .expect("sys.database_recovery_status");
    assert_eq!(r.len(), 1, "one row for the current database");
    let guid = |i: usize| r[0].get::<Uuid, _>(i);
    Incarnation {
        database_id: int(&r[0], 0).expect("database_id"),
        database_guid: guid(1).expect("database_guid"),
        family_guid: guid(2).expect("family_guid"),
        recovery_fork_guid: guid(3).expect("recovery_fork_guid"),
        first_recovery_fork_guid: guid(4),
    }
}

async fn current_version(client: &mut TdsClient) -> i64 {
    let r = rows(client, "SELECT CHANGE_TRACKING_CURRENT_VERSION()").await;
    int(&r[0], 0).expect("change tracking is on")
}

async fn min_valid_version(client: &mut TdsClient) -> i64 {
    let r = rows(
        client,
        "SELECT CHANGE_TRACKING_MIN_VALID_VERSION(OBJECT_ID(N'dbo.Orders'))",
    )
    .await;
    int(&r[0], 0).expect("dbo.Orders is tracked")
}

/// One autocommitted insert: one change tracking version.
async fn insert(client: &mut TdsClient, id: i64, customer: &str) {
    rows(
        client,
        &format!("INSERT INTO dbo.Orders (Id, Customer, Total) VALUES ({id}, N'{customer}', 1)"),
    )
    .await;
}

/// `(SYS_CHANGE_VERSION, SYS_CHANGE_OPERATION, Id)` since `since`, as the sidecar's
/// change query reads them (an RPC with the checkpoint as `@P1`).
async fn changes_since(client: &mut TdsClient, since: i64) -> Vec<(i64, String, i64)> {
    rpc(
        client,
        "SELECT CT.SYS_CHANGE_VERSION, CT.SYS_CHANGE_OPERATION, CT.Id FROM CHANGETABLE(CHANGES dbo.Orders, @P1) AS CT ORDER BY CT.SYS_CHANGE_VERSION, CT.Id",
        &[&since],
    )
    .await
    .expect("changes")
    .iter()
    .map(|r| (int(r, 0).unwrap(), text(r, 1).unwrap(), int(r, 2).unwrap()))
    .collect()
}

async fn order_ids(client: &mut TdsClient) -> Vec<i64> {
    rows(client, "SELECT Id FROM dbo.Orders ORDER BY Id")
        .await
        .iter()
        .map(|r| int(r, 0).unwrap())
        .collect()
}

/// Restores as a DBA does: drop every connection (SINGLE_USER WITH ROLLBACK
/// IMMEDIATE), then RESTORE once the sessions are gone.
async fn restore(standin: &Standin, backup: &Backup) {
    standin.server.drop_connections();
    restore_when_free(standin, backup).await;
}

/// RESTORE as soon as no session uses the database (Msg 3101 until then: a closed
/// connection's session ends when the server notices the close).
async fn restore_when_free(standin: &Standin, backup: &Backup) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match standin.engine.restore(backup) {
            Ok(()) => return,
            Err(e) if e.number == 3101 && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => panic!("restore: {e}"),
        }
    }
}

#[tokio::test]
async fn restore_rewinds_the_change_tracking_version() {
    let standin = Standin::start(shop()).await;
    let mut c = standin.sa("Shop").await;
    for id in 1..=3 {
        insert(&mut c, id, "before").await;
    }
    let backup = standin.engine.backup("Shop").expect("backup");
    assert_eq!(backup.change_tracking_version(), Some(3));
    for id in 4..=6 {
        insert(&mut c, id, "lost").await;
    }
    assert_eq!(current_version(&mut c).await, 6);
    drop(c);

    restore(&standin, &backup).await;

    let mut c = standin.sa("Shop").await;
    assert_eq!(current_version(&mut c).await, 3, "the version is the backup's again");
    assert_eq!(order_ids(&mut c).await, vec![1, 2, 3], "rows are the backup's");
    assert_eq!(
        changes_since(&mut c, 0).await,
        vec![(1, "I".into(), 1), (2, "I".into(), 2), (3, "I".into(), 3)],
        "the change tracking side table is the backup's"
    );
    insert(&mut c, 7, "after").await;
    assert_eq!(current_version(&mut c).await, 4, "the next write reuses version 4");
}

#[tokio::test]
async fn restore_gives_a_new_recovery_fork_guid() {
    let standin = Standin::start(shop()).await;
    let mut c = standin.sa("Shop").await;
    let created = incarnation(&mut c).await;
    // A database that never forked: no starting fork, family = its first GUID.
    assert_eq!(created.first_recovery_fork_guid, None);
    assert_eq!(created.family_guid, created.database_guid);
    let created_at = rows(
        &mut c,
        "SELECT create_date FROM sys.databases WHERE database_id = DB_ID()",
    )
    .await[0]
        .get::<chrono::NaiveDateTime, _>(0)
        .expect("create_date");
    let backup = standin.engine.backup("Shop").expect("backup");
    insert(&mut c, 1, "lost").await;
    drop(c);
    standin.engine.advance_clock(Duration::from_secs(3600));

    restore(&standin, &backup).await;

    let mut c = standin.sa("Shop").await;
    let restored = incarnation(&mut c).await;
    assert_ne!(
        restored.recovery_fork_guid, created.recovery_fork_guid,
        "a new recovery fork"
    );
    assert_eq!(
        restored.first_recovery_fork_guid,
        Some(created.recovery_fork_guid),
        "the fork it started from is the backup's"
    );
    assert_ne!(restored.database_guid, created.database_guid, "a new database GUID");
    assert_eq!(restored.family_guid, created.family_guid, "the same backup family");
    assert_eq!(restored.database_id, created.database_id, "restored in place");
    let restored_at = rows(
        &mut c,
        "SELECT create_date FROM sys.databases WHERE database_id = DB_ID()",
    )
    .await[0]
        .get::<chrono::NaiveDateTime, _>(0)
        .expect("create_date");
    assert!(restored_at > created_at, "create_date is the restore time");
    assert_eq!(
        standin.engine.incarnation("Shop").map(|i| i.recovery_fork_guid),
        Some(restored.recovery_fork_guid)
    );
}

#[tokio::test]
async fn recovery_fork_guid_is_stable_without_restore() {
    let standin = Standin::start(shop()).await;
    let mut c = standin.sa("Shop").await;
    let before = incarnation(&mut c).await;
    for id in 1..=3 {
        insert(&mut c, id, "x").await;
    }
    rows(
        &mut c,
        "UPDATE dbo.Orders SET Total = 2 WHERE Id = 1; DELETE FROM dbo.Orders WHERE Id = 2",
    )
    .await;
    rows(
        &mut c,
        "CREATE TABLE dbo.Items (Sku int NOT NULL PRIMARY KEY); ALTER TABLE dbo.Items ENABLE CHANGE_TRACKING",
    )
    .await;
    // A backup is not a restore; neither are retention cleanup nor reconnecting.
    standin.engine.backup("Shop").expect("backup");
    standin.engine.advance_clock(Duration::from_secs(3 * 86_400));
    standin.engine.run_change_tracking_cleanup("Shop");
    assert_eq!(incarnation(&mut c).await, before);
    standin.server.drop_connections();
    let mut c = standin.sa("Shop").await;
    assert_eq!(incarnation(&mut c).await, before);
    // Every database has its own.
    let mut m = standin.sa("master").await;
    let master = incarnation(&mut m).await;
    assert_ne!(master.recovery_fork_guid, before.recovery_fork_guid);
    assert_ne!(master.database_id, before.database_id);
}

/// The documented hazard, scaled down: checkpoint 10 (the page's 100), failure at 12
/// (120), restore to 7 (70), writes to 13 (130). The checkpoint still validates and
/// CHANGETABLE from it says nothing of what changed at 8..10 on either fork; only the
/// recovery fork GUID tells the client its checkpoint belongs to another history.
#[tokio::test]
async fn writes_after_restore_reuse_versions_past_an_old_checkpoint() {
    let standin = Standin::start(shop()).await;
    let mut c = standin.sa("Shop").await;
    for id in 1..=7 {
        insert(&mut c, id, "kept").await;
    }
    let backup = standin.engine.backup("Shop").expect("backup at version 7");
    for id in 8..=10 {
        insert(&mut c, id, "synced then lost").await;
    }
    // The client synchronizes: it now holds orders 1..=10 and checkpoint 10, with the
    // fingerprint of the incarnation it read them from.
    let checkpoint = current_version(&mut c).await;
    assert_eq!(checkpoint, 10);
    let fingerprint = incarnation(&mut c).await.recovery_fork_guid;
    for id in 11..=12 {
        insert(&mut c, id, "lost").await;
    }
    drop(c);

    restore(&standin, &backup).await;

    let mut c = standin.sa("Shop").await;
    assert_eq!(current_version(&mut c).await, 7);
    for id in 101..=106 {
        insert(&mut c, id, "new history").await;
    }
    assert_eq!(current_version(&mut c).await, 13);

    // What the client's next cycle sees from checkpoint 10:
    let min_valid = min_valid_version(&mut c).await;
    assert!(
        checkpoint >= min_valid,
        "the checkpoint validates ({min_valid} <= {checkpoint})"
    );
    assert_eq!(
        changes_since(&mut c, checkpoint).await,
        vec![(11, "I".into(), 104), (12, "I".into(), 105), (13, "I".into(), 106)],
    );
    let ids = order_ids(&mut c).await;
    // Orders 101..=103 (versions 8..=10 of the new history) are never reported to it,
    // and orders 8..=10, which it holds, are gone without a delete being reported.
    for missed in 101..=103 {
        assert!(ids.contains(&missed), "order {missed} exists but is not in the changes");
    }
    for stale in 8..=10 {
        assert!(!ids.contains(&stale), "order {stale} was lost by the restore");
    }
    // The fingerprint is what detects it.
    assert_ne!(incarnation(&mut c).await.recovery_fork_guid, fingerprint);
}

#[tokio::test]
async fn restore_needs_exclusive_access() {
    let standin = Standin::start(shop()).await;
    let mut c = standin.sa("Shop").await;
    insert(&mut c, 1, "x").await;
    let backup = standin.engine.backup("Shop").expect("backup");
    // A connection whose current database is Shop blocks the restore (Msg 3101).
    let e = standin.engine.restore(&backup).expect_err("in use");
    assert_eq!(e.number, 3101);
    assert_eq!(
        e.message,
        "Exclusive access could not be obtained because the database is in use."
    );
    // One whose current database is another (master) does not.
    let mut m = standin.sa("master").await;
    drop(c);
    restore_when_free(&standin, &backup).await;
    assert_eq!(int(&rows(&mut m, "SELECT 1").await[0], 0), Some(1), "still connected");
    let r = rows(&mut standin.sa("Shop").await, "SELECT COUNT(*) FROM dbo.Orders").await;
    assert_eq!(int(&r[0], 0), Some(1));
}

#[tokio::test]
async fn restoring_a_dropped_database_recreates_it_with_a_new_id() {
    let standin = Standin::start(shop()).await;
    let before = standin.engine.incarnation("Shop").expect("Shop exists");
    let backup = standin.engine.backup("Shop").expect("backup");
    let mut m = standin.sa("master").await;
    let old_id = rows(&mut m, "SELECT DB_ID(N'Shop')").await[0]
        .get::<i32, _>(0)
        .expect("id");
    rows(&mut m, "DROP DATABASE Shop").await;
    standin.engine.restore(&backup).expect("nobody uses Shop");
    let new_id = rows(&mut m, "SELECT DB_ID(N'Shop')").await[0]
        .get::<i32, _>(0)
        .expect("id");
    assert_ne!(new_id, old_id);
    let after = standin.engine.incarnation("Shop").expect("Shop exists again");
    assert_ne!(after.database_guid, before.database_guid);
    assert_eq!(after.family_guid, before.family_guid);
    assert_ne!(after.recovery_fork_guid, before.recovery_fork_guid);
}

/// The sidecar's login holds only SELECT and VIEW CHANGE TRACKING on its schema. Its
/// database's row is visible to it because public holds VIEW ANY DATABASE by default
/// ("To see the row for a database other than master or tempdb, one of the following
/// must apply: … Have ALTER ANY DATABASE or VIEW ANY DATABASE server-level
/// permissions", sys.database_recovery_status (Transact-SQL); "By default, the VIEW
/// ANY DATABASE permission is granted to the public role", VIEW ANY DATABASE
/// Permission).
#[tokio::test]
async fn a_least_privileged_login_reads_its_databases_recovery_fork_guid() {
    let standin = Standin::start(shop()).await;
    let mut sa = standin.sa("Shop").await;
    rows(
        &mut sa,
        "CREATE LOGIN [sidecar] WITH PASSWORD = N'Sidecar-Passw0rd!';
         CREATE USER [sidecar] FOR LOGIN [sidecar];
         GRANT SELECT ON SCHEMA::[dbo] TO [sidecar];
         GRANT VIEW CHANGE TRACKING ON SCHEMA::[dbo] TO [sidecar];",
    )
    .await;
    let admin_view = incarnation(&mut sa).await;
    let mut app = standin
        .connect("sidecar", "Sidecar-Passw0rd!", "Shop")
        .await
        .expect("sidecar logs in");
    assert_eq!(incarnation(&mut app).await, admin_view);
    // master's row is visible to everyone.
    let r = rows(
        &mut app,
        "SELECT recovery_fork_guid FROM sys.database_recovery_status WHERE database_id = 1",
    )
    .await;
    assert_eq!(r.len(), 1);
}
