//! Schema changes of tracked tables, through the real tiberius client: `ALTER TABLE …
//! ADD` / `DROP COLUMN` ("ALTER TABLE (Transact-SQL)",
//! https://learn.microsoft.com/en-us/sql/t-sql/statements/alter-table-transact-sql),
//! `sp_rename` of a column ("sp_rename (Transact-SQL)",
//! https://learn.microsoft.com/en-us/sql/relational-databases/system-stored-procedures/sp-rename-transact-sql),
//! what `sys.tables.modify_date` shows of them ("Date the object was last modified by
//! using an ALTER statement", sys.objects (Transact-SQL)), and how change tracking
//! carries on across them ("Manage change tracking (SQL Server)", Understand change
//! tracking overhead: an added column is not tracked, only later changes to it; a
//! non-key column can be dropped; a primary key column cannot,
//! https://learn.microsoft.com/en-us/sql/relational-databases/track-changes/manage-change-tracking-sql-server).
//!
//! `shop()`'s `dbo.Orders` is `(Id int PK, Customer nvarchar(100) NOT NULL, Total
//! decimal(10,2) NULL)`, column ids 1, 2, 3, tracked WITH TRACK_COLUMNS_UPDATED = ON.

mod engine_support;
mod engine_tds_support;
mod tds_common;

use std::time::Duration;

use chrono::NaiveDateTime;
use engine_support::shop;
use engine_tds_support::*;
use testkit::mssql::engine::Engine;
use testkit::mssql::types::{BackendSession, Outcome};

const MODIFY_DATE: &str = "SELECT modify_date FROM sys.tables WHERE object_id = OBJECT_ID(N'[dbo].[Orders]')";
const CREATE_DATE: &str = "SELECT create_date FROM sys.objects WHERE object_id = OBJECT_ID(N'[dbo].[Orders]')";

/// `Shop` served over TDS, with an `sa` client.
async fn standin() -> (Standin, TdsClient) {
    let standin = Standin::start(shop()).await;
    let client = standin.sa("Shop").await;
    (standin, client)
}

async fn date(client: &mut TdsClient, sql: &str) -> NaiveDateTime {
    rows(client, sql).await[0]
        .get::<NaiveDateTime, _>(0)
        .unwrap_or_else(|| panic!("{sql}: a date"))
}

/// `(name, column_id)` of `dbo.Orders` in `sys.columns`, by column_id.
async fn columns(client: &mut TdsClient) -> Vec<(String, i64)> {
    rows(
        client,
        "SELECT name, column_id FROM sys.columns WHERE object_id = OBJECT_ID(N'dbo.Orders') ORDER BY column_id",
    )
    .await
    .iter()
    .map(|r| (text(r, 0).expect("name"), int(r, 1).expect("column_id")))
    .collect()
}

fn named(columns: &[(&str, i64)]) -> Vec<(String, i64)> {
    columns.iter().map(|(n, id)| (n.to_string(), *id)).collect()
}

/// Lets the engine clock move so a new modify_date is distinguishable.
fn tick(engine: &Engine) {
    engine.advance_clock(Duration::from_secs(5));
}

/// The SQL Server error of a failed batch, with its message.
async fn refused(client: &mut TdsClient, sql: &str) -> (u32, String) {
    match batch(client, sql).await {
        Err(tiberius::error::Error::Server(e)) => (e.code(), e.message().to_string()),
        other => panic!("{sql}: expected a server error, got {other:?}"),
    }
}

/// `CHANGE_TRACKING_IS_COLUMN_IN_MASK` of `column_id` in the mask of the change to
/// `dbo.Orders` row `id` since version `since`.
async fn in_mask(client: &mut TdsClient, since: i64, id: i32, column_id: i64) -> i64 {
    let sql = format!(
        "SELECT CHANGE_TRACKING_IS_COLUMN_IN_MASK({column_id}, CT.SYS_CHANGE_COLUMNS)
         FROM CHANGETABLE(CHANGES dbo.Orders, {since}) AS CT WHERE CT.Id = {id}"
    );
    let r = rows(client, &sql).await;
    assert_eq!(r.len(), 1, "{sql}: one change");
    int(&r[0], 0).expect("a bit")
}

async fn version(client: &mut TdsClient) -> i64 {
    int(&rows(client, "SELECT CHANGE_TRACKING_CURRENT_VERSION()").await[0], 0).expect("CT on")
}

/// Named `engine::…` so `cargo test -p testkit engine` selects these tests.
mod engine {
    use super::*;

    #[tokio::test]
    async fn add_column_gets_a_new_column_id_and_changes_modify_date() {
        let (standin, mut client) = standin().await;
        rows(&mut client, "INSERT INTO dbo.Orders VALUES (1, N'a', 1.00)").await;
        let created = date(&mut client, CREATE_DATE).await;
        let before = date(&mut client, MODIFY_DATE).await;
        let v = version(&mut client).await;

        tick(&standin.engine);
        rows(&mut client, "ALTER TABLE [dbo].[Orders] ADD [Note] nvarchar(50) NULL").await;
        assert_eq!(
            columns(&mut client).await,
            named(&[("Id", 1), ("Customer", 2), ("Total", 3), ("Note", 4)])
        );
        let after_add = date(&mut client, MODIFY_DATE).await;
        assert!(after_add > before, "ADD moves modify_date: {before} -> {after_add}");
        assert_eq!(date(&mut client, CREATE_DATE).await, created, "create_date stays");
        let r = rows(&mut client, "SELECT Note FROM dbo.Orders WHERE Id = 1").await;
        assert_eq!(text(&r[0], 0), None, "existing rows get NULL");
        assert_eq!(version(&mut client).await, v, "adding a column is not tracked");
        assert_eq!(
            int(
                &rows(
                    &mut client,
                    "SELECT COLUMNPROPERTY(OBJECT_ID(N'dbo.Orders'), N'Note', 'ColumnId')"
                )
                .await[0],
                0
            ),
            Some(4)
        );

        // A dropped column leaves a gap, and its id is not given again.
        tick(&standin.engine);
        rows(&mut client, "ALTER TABLE dbo.Orders DROP COLUMN Note").await;
        let after_drop = date(&mut client, MODIFY_DATE).await;
        assert!(after_drop > after_add, "DROP COLUMN moves modify_date");
        rows(&mut client, "ALTER TABLE dbo.Orders DROP COLUMN Customer").await;
        rows(
            &mut client,
            "ALTER TABLE dbo.Orders ADD Channel varchar(10) NULL, Flag bit NOT NULL DEFAULT 0",
        )
        .await;
        assert_eq!(
            columns(&mut client).await,
            named(&[("Id", 1), ("Total", 3), ("Channel", 5), ("Flag", 6)])
        );
        // A NOT NULL column with a DEFAULT fills the existing rows with it, and an
        // INSERT that leaves it out gets it too.
        rows(&mut client, "INSERT INTO dbo.Orders (Id, Total) VALUES (2, 2.00)").await;
        let r = rows(&mut client, "SELECT Id, Flag FROM dbo.Orders ORDER BY Id").await;
        assert_eq!(r.iter().map(|r| int(r, 1)).collect::<Vec<_>>(), vec![Some(0), Some(0)]);
        // CHANGETABLE keeps working, with the key column where it was.
        let r = rows(
            &mut client,
            &format!("SELECT CT.Id, CT.SYS_CHANGE_OPERATION FROM CHANGETABLE(CHANGES dbo.Orders, {v}) AS CT"),
        )
        .await;
        assert_eq!(r.len(), 1);
        assert_eq!((int(&r[0], 0), text(&r[0], 1)), (Some(2), Some("I".into())));
    }

    #[tokio::test]
    async fn add_not_null_column_without_default_to_non_empty_table_is_4901() {
        let (_standin, mut client) = standin().await;
        // An empty table takes it.
        rows(&mut client, "ALTER TABLE dbo.Orders ADD Qty int NOT NULL").await;
        rows(&mut client, "INSERT INTO dbo.Orders VALUES (1, N'a', 1.00, 3)").await;
        let (code, message) = refused(&mut client, "ALTER TABLE dbo.Orders ADD Weight int NOT NULL").await;
        assert_eq!(code, 4901);
        assert_eq!(
            message,
            "ALTER TABLE only allows columns to be added that can contain nulls, or have a DEFAULT definition specified, or the column being added is an identity or timestamp column, or alternatively if none of the previous conditions are satisfied the table must be empty to allow addition of this column. Column 'Weight' cannot be added to non-empty table 'Orders' because it does not satisfy these conditions."
        );
        assert_eq!(columns(&mut client).await.len(), 4, "nothing added");
        // Nullable, or NOT NULL with a DEFAULT, is fine; a nullable column's DEFAULT
        // reaches existing rows only WITH VALUES.
        rows(
            &mut client,
            "ALTER TABLE dbo.Orders ADD Weight int NOT NULL CONSTRAINT DF_Orders_Weight DEFAULT (7), Size int NULL DEFAULT 1, Grade int NULL DEFAULT 2 WITH VALUES",
        )
        .await;
        let r = rows(&mut client, "SELECT Weight, Size, Grade FROM dbo.Orders").await;
        assert_eq!((int(&r[0], 0), int(&r[0], 1), int(&r[0], 2)), (Some(7), None, Some(2)));
        // ADD COLUMN is not T-SQL, and a name the table has is 2705.
        assert_eq!(
            refused(&mut client, "ALTER TABLE dbo.Orders ADD COLUMN X int NULL")
                .await
                .0,
            156
        );
        assert_eq!(
            refused(&mut client, "ALTER TABLE dbo.Orders ADD total int NULL")
                .await
                .0,
            2705
        );
    }

    #[tokio::test]
    async fn drop_column_leaves_changetable_working_and_selecting_it_is_207() {
        let (_standin, mut client) = standin().await;
        rows(&mut client, "ALTER TABLE dbo.Orders ADD Note nvarchar(50) NULL").await;
        rows(
            &mut client,
            "INSERT INTO dbo.Orders VALUES (1, N'a', 1.00, NULL), (2, N'b', 2.00, NULL)",
        )
        .await;
        let v1 = version(&mut client).await;
        rows(&mut client, "UPDATE dbo.Orders SET Total = 5 WHERE Id = 1").await;
        let v2 = version(&mut client).await;

        rows(&mut client, "ALTER TABLE dbo.Orders DROP COLUMN Total").await;
        assert_eq!(version(&mut client).await, v2, "dropping a column is not tracked");
        assert_eq!(code(batch(&mut client, "SELECT Total FROM dbo.Orders").await), 207);
        assert_eq!(
            code(rpc(&mut client, "SELECT Id, Total FROM dbo.Orders WHERE Id = @P1", &[&1i32]).await),
            207
        );
        let r = rows(&mut client, "SELECT * FROM dbo.Orders ORDER BY Id").await;
        assert_eq!(r[0].columns().len(), 3, "Id, Customer, Note");
        // The change recorded before the drop still names column 3 ("the dropped
        // column might still be returned as part of the change tracking information").
        assert_eq!(in_mask(&mut client, v1, 1, 3).await, 1);
        // CHANGETABLE works; later updates no longer name it.
        rows(&mut client, "UPDATE dbo.Orders SET Customer = N'bb' WHERE Id = 2").await;
        assert_eq!(in_mask(&mut client, v2, 2, 3).await, 0);
        assert_eq!(in_mask(&mut client, v2, 2, 2).await, 1);
        let r = rows(
            &mut client,
            "SELECT COLUMNPROPERTY(OBJECT_ID(N'dbo.Orders'), N'Total', 'ColumnId')",
        )
        .await;
        assert_eq!(int(&r[0], 0), None, "no column id for a dropped column");
        let r = rows(
            &mut client,
            "SELECT CT.Id, CT.SYS_CHANGE_OPERATION FROM CHANGETABLE(CHANGES dbo.Orders, 0) AS CT ORDER BY CT.Id",
        )
        .await;
        assert_eq!(r.len(), 2);
        // A column that is not there: 4924, unless IF EXISTS.
        assert_eq!(
            refused(&mut client, "ALTER TABLE dbo.Orders DROP COLUMN Total").await.0,
            4924
        );
        rows(&mut client, "ALTER TABLE dbo.Orders DROP COLUMN IF EXISTS Total").await;
    }

    #[tokio::test]
    async fn drop_table_makes_changetable_208() {
        let (_standin, mut client) = standin().await;
        rows(&mut client, "INSERT INTO dbo.Orders VALUES (1, N'a', 1.00)").await;
        rows(&mut client, "DROP TABLE dbo.Orders").await;
        assert_eq!(
            code(
                batch(
                    &mut client,
                    "SELECT CT.Id FROM CHANGETABLE(CHANGES dbo.Orders, 0) AS CT"
                )
                .await
            ),
            208
        );
    }

    #[tokio::test]
    async fn drop_primary_key_column_is_refused() {
        let (standin, mut client) = standin().await;
        // Through tiberius: the first of the statement's errors.
        let (code, message) = refused(&mut client, "ALTER TABLE dbo.Orders DROP COLUMN Id").await;
        assert_eq!(code, 5074);
        assert!(
            message.starts_with("The object 'PK__Orders__") && message.ends_with("' is dependent on column 'Id'."),
            "{message}"
        );
        assert_eq!(columns(&mut client).await.len(), 3, "nothing dropped");

        // Both messages, as SQL Server sends them: 5074 per dependent object, then 4922.
        let mut session = standin.engine.admin_session("Shop").expect("session");
        rows(
            &mut client,
            "ALTER TABLE dbo.Orders ADD Flag bit NOT NULL CONSTRAINT DF_Orders_Flag DEFAULT 0",
        )
        .await;
        let out = session.execute("ALTER TABLE dbo.Orders DROP COLUMN Flag", &[]);
        let numbers: Vec<(i32, u8)> = out
            .iter()
            .map(|o| match o {
                Outcome::Message(e) | Outcome::Error(e) => (e.number, e.state),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(numbers, vec![(5074, 1), (4922, 9)]);
        assert!(
            matches!(&out[0], Outcome::Message(e) if e.message == "The object 'DF_Orders_Flag' is dependent on column 'Flag'.")
        );
        assert!(
            matches!(&out[1], Outcome::Error(e) if e.message == "ALTER TABLE DROP COLUMN Flag failed because one or more objects access this column.")
        );
        // Without its DEFAULT constraint the column goes.
        rows(&mut client, "ALTER TABLE dbo.Orders DROP CONSTRAINT DF_Orders_Flag").await;
        rows(&mut client, "ALTER TABLE dbo.Orders DROP COLUMN Flag").await;

        // The PRIMARY KEY constraint of a tracked table stays: 3735, then 3727.
        let pk = text(
            &rows(
                &mut client,
                "SELECT name FROM sys.indexes WHERE object_id = OBJECT_ID(N'dbo.Orders') AND is_primary_key = 1",
            )
            .await[0],
            0,
        )
        .expect("pk name");
        let out = session.execute(&format!("ALTER TABLE dbo.Orders DROP CONSTRAINT [{pk}]"), &[]);
        assert!(matches!(&out[0], Outcome::Message(e) if e.number == 3735));
        assert!(matches!(&out[1], Outcome::Error(e) if e.number == 3727));
        assert_eq!(
            refused(&mut client, "ALTER TABLE dbo.Orders DROP CONSTRAINT Nope")
                .await
                .0,
            3728
        );
    }

    #[tokio::test]
    async fn sp_rename_column_changes_the_name_and_modify_date_and_warns_15477() {
        let (standin, mut client) = standin().await;
        rows(&mut client, "INSERT INTO dbo.Orders VALUES (1, N'a', 1.00)").await;
        let before = date(&mut client, MODIFY_DATE).await;
        tick(&standin.engine);

        // As tiberius sends it with parameters: sp_executesql running the EXEC.
        client
            .execute(
                "EXEC sp_rename @P1, @P2, N'COLUMN'",
                &[&"[dbo].[Orders].[Total]", &"Amount"],
            )
            .await
            .expect("sp_rename through sp_executesql");
        assert_eq!(
            columns(&mut client).await,
            named(&[("Id", 1), ("Customer", 2), ("Amount", 3)])
        );
        assert_eq!(code(batch(&mut client, "SELECT Total FROM dbo.Orders").await), 207);
        let r = rows(&mut client, "SELECT Amount FROM dbo.Orders").await;
        assert_eq!(r.len(), 1);
        let after = date(&mut client, MODIFY_DATE).await;
        assert!(after > before, "sp_rename moves modify_date: {before} -> {after}");

        // As a batch statement, named arguments, a bare new name, no @objtype.
        rows(
            &mut client,
            "EXEC sys.sp_rename @objname = N'dbo.Orders.Amount', @newname = Total",
        )
        .await;
        rows(&mut client, "SELECT Total FROM dbo.Orders").await;
        // The column keeps its id: later updates of it still mark column 3.
        let v = version(&mut client).await;
        rows(&mut client, "UPDATE dbo.Orders SET Total = 9 WHERE Id = 1").await;
        assert_eq!(in_mask(&mut client, v, 1, 3).await, 1);

        // The caution is an informational message: severity 10, sent as class 0 in an
        // INFO token (tiberius logs INFO tokens without handing them to callers, so
        // it is read off the wire here).
        let (_, mut tcp) = tds_common::raw_login(
            &standin.server,
            "sa",
            testkit::mssql::engine::DEFAULT_SA_PASSWORD,
            "Shop",
        )
        .await;
        tds_common::raw_batch(&mut tcp, "EXEC sp_rename 'dbo.Orders.Total', 'Amount', 'COLUMN'").await;
        let response = tds_common::read_response(&mut tcp).await;
        let number = 15477i32.to_le_bytes();
        let at = response
            .windows(4)
            .position(|w| w == number)
            .expect("message 15477 on the wire");
        assert_eq!(response[at - 3], 0xAB, "an INFO token");
        assert_eq!(&response[at + 4..at + 6], &[1, 0], "state 1, class 0");
        let caution: Vec<u8> =
            "Caution: Changing any part of an object name could break scripts and stored procedures."
                .encode_utf16()
                .flat_map(u16::to_le_bytes)
                .collect();
        assert!(response.windows(caution.len()).any(|w| w == caution.as_slice()));
        // In the engine's outcomes: the message, severity 10, then the DONE.
        let mut session = standin.engine.admin_session("Shop").expect("session");
        let out = session.execute("EXEC sp_rename N'dbo.Orders.Amount', N'Total', N'COLUMN'", &[]);
        assert!(matches!(&out[0], Outcome::Message(e) if e.number == 15477 && e.class == 10));
        assert!(matches!(&out[1], Outcome::Done { .. }));
    }

    #[tokio::test]
    async fn sp_rename_to_existing_name_is_refused() {
        let (standin, mut client) = standin().await;
        let before = date(&mut client, MODIFY_DATE).await;
        tick(&standin.engine);
        let (code, message) = refused(
            &mut client,
            "EXEC sp_rename N'dbo.Orders.Total', N'customer', N'COLUMN'",
        )
        .await;
        assert_eq!(code, 15335);
        assert_eq!(
            message,
            "Error: The new name 'customer' is already in use as a COLUMN name and would cause a duplicate that is not permitted."
        );
        // Without @objtype the inferred kind is named in lower case.
        let (code, message) = refused(&mut client, "EXEC sp_rename 'Orders.Total', 'Id'").await;
        assert_eq!(code, 15335);
        assert!(message.contains("as a column name"), "{message}");
        assert_eq!(
            columns(&mut client).await,
            named(&[("Id", 1), ("Customer", 2), ("Total", 3)])
        );
        assert_eq!(date(&mut client, MODIFY_DATE).await, before, "nothing changed");
        // Nothing of that kind by that name.
        assert_eq!(
            refused(&mut client, "EXEC sp_rename 'dbo.Orders.Nope', 'x', 'COLUMN'").await,
            (
                15248,
                "Either the parameter @objname is ambiguous or the claimed @objtype (COLUMN) is wrong.".into()
            )
        );
        assert_eq!(refused(&mut client, "EXEC sp_rename 'dbo.Nope', 'x'").await.0, 15225);
        // A case-only rename is a rename of the column itself.
        rows(&mut client, "EXEC sp_rename 'dbo.Orders.Total', 'TOTAL', 'COLUMN'").await;
        assert_eq!(columns(&mut client).await[2].0, "TOTAL");
        // Missing and unknown parameters, as for any procedure call.
        assert_eq!(refused(&mut client, "EXEC sp_rename 'dbo.Orders.Total'").await.0, 201);
        assert_eq!(
            refused(&mut client, "EXEC sp_rename @objname = 'x', @nope = 'y'")
                .await
                .0,
            8145
        );
    }

    #[tokio::test]
    async fn updates_after_add_column_mark_the_new_column_in_the_mask() {
        let (_standin, mut client) = standin().await;
        rows(&mut client, "INSERT INTO dbo.Orders VALUES (1, N'a', 1.00)").await;
        let v = version(&mut client).await;
        rows(&mut client, "ALTER TABLE dbo.Orders ADD Note nvarchar(50) NULL").await;
        assert_eq!(version(&mut client).await, v, "the ADD itself is not a change");
        rows(&mut client, "UPDATE dbo.Orders SET Note = N'gift' WHERE Id = 1").await;
        let r = rows(
            &mut client,
            &format!(
                "SELECT CT.SYS_CHANGE_OPERATION,
                        CHANGE_TRACKING_IS_COLUMN_IN_MASK(COLUMNPROPERTY(OBJECT_ID(N'dbo.Orders'), N'Note', 'ColumnId'), CT.SYS_CHANGE_COLUMNS),
                        CHANGE_TRACKING_IS_COLUMN_IN_MASK(COLUMNPROPERTY(OBJECT_ID(N'dbo.Orders'), N'Total', 'ColumnId'), CT.SYS_CHANGE_COLUMNS),
                        CHANGE_TRACKING_IS_COLUMN_IN_MASK(4, CT.SYS_CHANGE_COLUMNS)
                 FROM CHANGETABLE(CHANGES dbo.Orders, {v}) AS CT"
            ),
        )
        .await;
        assert_eq!(r.len(), 1);
        assert_eq!(text(&r[0], 0).as_deref(), Some("U"));
        assert_eq!(
            (int(&r[0], 1), int(&r[0], 2), int(&r[0], 3)),
            (Some(1), Some(0), Some(1))
        );
    }

    #[tokio::test]
    async fn ddl_after_a_snapshot_transaction_read_the_table_fails_it_with_3961() {
        let (standin, mut other) = standin().await;
        rows(&mut other, "INSERT INTO dbo.Orders VALUES (1, N'a', 1.00)").await;
        let mut tick = standin.sa("Shop").await;
        rows(
            &mut tick,
            "SET TRANSACTION ISOLATION LEVEL SNAPSHOT; BEGIN TRAN; SELECT Id FROM dbo.Orders",
        )
        .await;
        rows(&mut other, "ALTER TABLE dbo.Orders ADD Note nvarchar(50) NULL").await;
        let (number, message) = refused(&mut tick, "SELECT CT.Id FROM CHANGETABLE(CHANGES dbo.Orders, 0) AS CT").await;
        assert_eq!(number, 3961);
        assert!(
            message.starts_with("Snapshot isolation transaction failed in database 'Shop'"),
            "{message}"
        );
        // The transaction is gone; a new one sees the new definition.
        assert_eq!(int(&rows(&mut tick, "SELECT @@TRANCOUNT").await[0], 0), Some(0));
        rows(&mut tick, "BEGIN TRAN; SELECT Id, Note FROM dbo.Orders").await;
        // ALTER TABLE inside a snapshot transaction is refused outright.
        assert_eq!(
            refused(&mut tick, "ALTER TABLE dbo.Orders ADD Extra int NULL").await.0,
            3964
        );
        assert_eq!(int(&rows(&mut tick, "SELECT @@TRANCOUNT").await[0], 0), Some(0));
        // sp_rename elsewhere fails a snapshot transaction that read the table, too.
        rows(&mut tick, "BEGIN TRAN; SELECT Id FROM dbo.Orders").await;
        rows(&mut other, "EXEC sp_rename 'dbo.Orders.Note', 'Memo', 'COLUMN'").await;
        assert_eq!(code(batch(&mut tick, "SELECT Id FROM dbo.Orders").await), 3961);
    }

    #[tokio::test]
    async fn sys_tables_modify_date_is_visible_to_a_login_with_select() {
        let (standin, mut client) = standin().await;
        rows(
            &mut client,
            "CREATE LOGIN [app] WITH PASSWORD = N'App-Passw0rd!'; CREATE USER [app] FOR LOGIN [app];
             CREATE LOGIN [nobody] WITH PASSWORD = N'No-Passw0rd!'; CREATE USER [nobody] FOR LOGIN [nobody];
             GRANT SELECT, VIEW CHANGE TRACKING ON SCHEMA::dbo TO [app];",
        )
        .await;
        let mut app = standin
            .connect("app", "App-Passw0rd!", "Shop")
            .await
            .expect("app logs in");
        // The sidecar's per-tick question, the schema check folded into it: a scalar
        // subquery in each branch of a UNION ALL.
        const DISCOVER: &str =
            "SELECT N'Orders' AS t, CHANGE_TRACKING_MIN_VALID_VERSION(OBJECT_ID(N'[dbo].[Orders]')) AS min_valid,
                (SELECT modify_date FROM sys.tables WHERE object_id = OBJECT_ID(N'[dbo].[Orders]')) AS modified
            UNION ALL
            SELECT N'current', CHANGE_TRACKING_CURRENT_VERSION(), NULL";
        let seen = |r: &[tiberius::Row]| r[0].get::<NaiveDateTime, _>(2);
        let r = rpc(&mut app, DISCOVER, &[]).await.expect("discover as app");
        assert_eq!(r.len(), 2);
        let before = seen(&r).expect("app sees dbo.Orders in sys.tables");
        assert_eq!(before, date(&mut client, MODIFY_DATE).await, "the same date sa sees");

        tick(&standin.engine);
        rows(&mut client, "ALTER TABLE dbo.Orders ADD Note nvarchar(50) NULL").await;
        let r = rpc(&mut app, DISCOVER, &[]).await.expect("discover as app");
        let after = seen(&r).expect("still visible");
        assert!(after > before, "the change shows: {before} -> {after}");

        // Metadata visibility: without any permission on it, the table is not there.
        let mut nobody = standin
            .connect("nobody", "No-Passw0rd!", "Shop")
            .await
            .expect("nobody logs in");
        let r = rows(&mut nobody, MODIFY_DATE).await;
        assert!(r.is_empty(), "no row for a table the principal cannot see");
    }
}
