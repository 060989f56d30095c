//! Change Tracking rules, each proven by a test named for it, against the engine's
//! SQL surface (as the sidecar would see them through TDS).

mod engine_support;

use std::time::Duration;

use engine_support::*;
use testkit::mssql::engine::Engine;
use testkit::mssql::types::Value;

/// Named `engine::…` so `cargo test -p testkit engine` selects these tests.
mod engine {
    use super::*;

    fn v(engine: &Engine) -> i64 {
        engine.current_version("Shop").expect("CT on")
    }

    #[test]
    fn current_version_starts_at_zero_and_is_null_when_change_tracking_is_off() {
        let engine = shop();
        assert_eq!(
            scalar(&engine, "Shop", "SELECT CHANGE_TRACKING_CURRENT_VERSION()"),
            Value::Int(0)
        );
        engine.execute("master", "CREATE DATABASE Plain").expect("create");
        assert_eq!(
            scalar(&engine, "Plain", "SELECT CHANGE_TRACKING_CURRENT_VERSION()"),
            Value::Null
        );
        assert_eq!(engine.current_version("Plain"), None);
    }

    #[test]
    fn rows_changed_in_one_transaction_share_one_version() {
        let engine = shop();
        engine
        .execute(
            "Shop",
            "BEGIN TRAN; INSERT INTO dbo.Orders VALUES (1, N'a', 1.00), (2, N'b', 2.00); INSERT INTO dbo.Orders VALUES (3, N'c', NULL); COMMIT",
        )
        .expect("txn");
        assert_eq!(v(&engine), 1);
        let c = changes(&engine, Some(0));
        assert_eq!(c.len(), 3);
        assert!(c
            .iter()
            .all(|(ver, created, op, _)| *ver == 1 && *created == Some(1) && op == "I"));
        // Each autocommitted statement is its own transaction.
        engine
            .execute("Shop", "INSERT INTO dbo.Orders VALUES (4, N'd', 4)")
            .expect("insert");
        engine
            .execute("Shop", "INSERT INTO dbo.Orders VALUES (5, N'e', 5)")
            .expect("insert");
        assert_eq!(v(&engine), 3);
    }

    #[test]
    fn the_version_is_database_wide_so_a_table_sees_gaps() {
        let engine = shop();
        engine
        .execute(
            "Shop",
            "CREATE TABLE dbo.Items (Sku nvarchar(20) NOT NULL, Warehouse int NOT NULL, Qty int NULL, CONSTRAINT PK_Items PRIMARY KEY (Sku, Warehouse));
             ALTER TABLE dbo.Items ENABLE CHANGE_TRACKING;",
        )
        .expect("ddl");
        engine
            .execute("Shop", "INSERT INTO dbo.Orders VALUES (1, N'a', 1)")
            .expect("v1");
        engine
            .execute("Shop", "INSERT INTO dbo.Items VALUES (N'x', 1, 5)")
            .expect("v2");
        engine
            .execute("Shop", "INSERT INTO dbo.Orders VALUES (2, N'b', 2)")
            .expect("v3");
        assert_eq!(
            changes(&engine, Some(0)).iter().map(|c| c.0).collect::<Vec<_>>(),
            vec![1, 3]
        );
        let items = query(
            &engine,
            "Shop",
            "SELECT CT.SYS_CHANGE_VERSION, CT.Sku, CT.Warehouse FROM CHANGETABLE(CHANGES dbo.Items, 0) AS CT",
        );
        assert_eq!(
            items,
            vec![vec![Value::Int(2), Value::String("x".into()), Value::Int(1)]]
        );
        // A transaction touching no tracked table does not move the version.
        engine
            .execute(
                "Shop",
                "CREATE TABLE dbo.Untracked (Id int PRIMARY KEY); INSERT INTO dbo.Untracked VALUES (1)",
            )
            .expect("untracked");
        assert_eq!(v(&engine), 3);
    }

    #[test]
    fn insert_then_update_seen_from_before_the_insert_is_an_insert_with_its_creation_version() {
        let engine = shop();
        engine
            .execute("Shop", "INSERT INTO dbo.Orders VALUES (1, N'a', 1)")
            .expect("v1");
        engine
            .execute("Shop", "UPDATE dbo.Orders SET Total = 2 WHERE Id = 1")
            .expect("v2");
        assert_eq!(changes(&engine, Some(0)), vec![(2, Some(1), "I".into(), 1)]);
        assert_eq!(changes(&engine, None), vec![(2, Some(1), "I".into(), 1)]);
    }

    #[test]
    fn update_seen_from_after_the_insert_is_an_update_keeping_the_creation_version() {
        let engine = shop();
        engine
            .execute("Shop", "INSERT INTO dbo.Orders VALUES (1, N'a', 1)")
            .expect("v1");
        engine
            .execute("Shop", "UPDATE dbo.Orders SET Total = 2 WHERE Id = 1")
            .expect("v2");
        engine
            .execute("Shop", "UPDATE dbo.Orders SET Customer = N'b' WHERE Id = 1")
            .expect("v3");
        assert_eq!(changes(&engine, Some(1)), vec![(3, Some(1), "U".into(), 1)]);
        assert_eq!(changes(&engine, Some(3)), vec![]);
    }

    #[test]
    fn update_of_a_row_that_existed_before_tracking_has_a_null_creation_version() {
        let engine = shop();
        engine
        .execute("Shop", "ALTER TABLE dbo.Orders DISABLE CHANGE_TRACKING; INSERT INTO dbo.Orders VALUES (1, N'a', 1); ALTER TABLE dbo.Orders ENABLE CHANGE_TRACKING")
        .expect("setup");
        engine
            .execute("Shop", "UPDATE dbo.Orders SET Total = 3 WHERE Id = 1")
            .expect("update");
        assert_eq!(changes(&engine, Some(0)), vec![(1, None, "U".into(), 1)]);
    }

    #[test]
    fn delete_is_reported_with_a_null_creation_version_from_any_baseline() {
        let engine = shop();
        engine
            .execute("Shop", "INSERT INTO dbo.Orders VALUES (1, N'a', 1)")
            .expect("v1");
        engine
            .execute("Shop", "DELETE FROM dbo.Orders WHERE Id = 1")
            .expect("v2");
        assert_eq!(changes(&engine, Some(1)), vec![(2, None, "D".into(), 1)]);
        // Inserted and deleted since the baseline: SQL Server keeps one row per key, a D.
        assert_eq!(changes(&engine, Some(0)), vec![(2, None, "D".into(), 1)]);
    }

    #[test]
    fn delete_then_reinsert_of_a_key_is_an_update_of_all_columns() {
        let engine = shop();
        engine
            .execute("Shop", "INSERT INTO dbo.Orders VALUES (1, N'a', 1)")
            .expect("v1");
        engine
            .execute("Shop", "DELETE FROM dbo.Orders WHERE Id = 1")
            .expect("v2");
        engine
            .execute("Shop", "INSERT INTO dbo.Orders VALUES (1, N'b', 2)")
            .expect("v3");
        let r = query(
            &engine,
            "Shop",
            "SELECT CT.SYS_CHANGE_OPERATION, CT.SYS_CHANGE_COLUMNS FROM CHANGETABLE(CHANGES dbo.Orders, 1) AS CT",
        );
        assert_eq!(r, vec![vec![Value::String("U".into()), Value::Null]]);
        assert_eq!(changes(&engine, Some(2)), vec![(3, Some(3), "I".into(), 1)]);
    }

    #[test]
    fn primary_key_update_is_a_delete_of_the_old_key_and_an_insert_of_the_new() {
        let engine = shop();
        engine
            .execute("Shop", "INSERT INTO dbo.Orders VALUES (1, N'a', 1)")
            .expect("v1");
        engine
            .execute("Shop", "UPDATE dbo.Orders SET Id = 10 WHERE Id = 1")
            .expect("v2");
        assert_eq!(
            changes(&engine, Some(1)),
            vec![(2, None, "D".into(), 1), (2, Some(2), "I".into(), 10)]
        );
    }

    #[test]
    fn column_mask_lists_updated_columns_and_is_column_in_mask_reads_it() {
        let engine = shop();
        engine
            .execute("Shop", "INSERT INTO dbo.Orders VALUES (1, N'a', 1), (2, N'b', 2)")
            .expect("v1");
        engine
            .execute("Shop", "UPDATE dbo.Orders SET Total = 5 WHERE Id = 1")
            .expect("v2");
        engine
            .execute("Shop", "UPDATE dbo.Orders SET Customer = N'z', Total = 9 WHERE Id = 2")
            .expect("v3");
        let r = query(
            &engine,
            "Shop",
            "SELECT CT.Id, CHANGE_TRACKING_IS_COLUMN_IN_MASK(2, CT.SYS_CHANGE_COLUMNS) AS c2,
                CHANGE_TRACKING_IS_COLUMN_IN_MASK(3, CT.SYS_CHANGE_COLUMNS) AS c3, CT.SYS_CHANGE_COLUMNS
         FROM CHANGETABLE(CHANGES dbo.Orders, 1) AS CT ORDER BY CT.Id",
        );
        // Only Total changed on row 1; on row 2 every non-key column changed → NULL mask.
        assert_eq!(r[0][1], Value::Bit(false));
        assert_eq!(r[0][2], Value::Bit(true));
        assert!(matches!(r[0][3], Value::Binary(_)));
        assert_eq!(r[1][3], Value::Null);
        assert_eq!(r[1][1], Value::Bit(true));
        // Masks accumulate over the updates after the baseline only.
        engine
            .execute("Shop", "UPDATE dbo.Orders SET Customer = N'q' WHERE Id = 1")
            .expect("v4");
        let from1 = query(&engine, "Shop", "SELECT CHANGE_TRACKING_IS_COLUMN_IN_MASK(2, CT.SYS_CHANGE_COLUMNS), CHANGE_TRACKING_IS_COLUMN_IN_MASK(3, CT.SYS_CHANGE_COLUMNS) FROM CHANGETABLE(CHANGES dbo.Orders, 1) AS CT WHERE CT.Id = 1");
        assert_eq!(from1, vec![vec![Value::Bit(true), Value::Bit(true)]]);
        let from2 = query(&engine, "Shop", "SELECT CHANGE_TRACKING_IS_COLUMN_IN_MASK(2, CT.SYS_CHANGE_COLUMNS), CHANGE_TRACKING_IS_COLUMN_IN_MASK(3, CT.SYS_CHANGE_COLUMNS) FROM CHANGETABLE(CHANGES dbo.Orders, 3) AS CT WHERE CT.Id = 1");
        assert_eq!(from2, vec![vec![Value::Bit(true), Value::Bit(false)]]);
    }

    #[test]
    fn column_mask_is_null_when_column_tracking_is_off() {
        let engine = shop();
        engine
        .execute("Shop", "CREATE TABLE dbo.T (Id int PRIMARY KEY, A int, B int); ALTER TABLE dbo.T ENABLE CHANGE_TRACKING; INSERT INTO dbo.T VALUES (1, 1, 1)")
        .expect("setup");
        engine
            .execute("Shop", "UPDATE dbo.T SET A = 2 WHERE Id = 1")
            .expect("update");
        let r = query(
            &engine,
            "Shop",
            "SELECT CT.SYS_CHANGE_OPERATION, CT.SYS_CHANGE_COLUMNS FROM CHANGETABLE(CHANGES dbo.T, 1) AS CT",
        );
        assert_eq!(r, vec![vec![Value::String("U".into()), Value::Null]]);
    }

    #[test]
    fn change_tracking_context_is_stored_with_the_change() {
        let engine = shop();
        engine
        .execute("Shop", "DECLARE @ctx varbinary(128) = 0x0A0B; WITH CHANGE_TRACKING_CONTEXT (@ctx) INSERT INTO dbo.Orders VALUES (1, N'a', 1)")
        .expect("insert");
        engine
            .execute("Shop", "INSERT INTO dbo.Orders VALUES (2, N'b', 1)")
            .expect("insert");
        let r = query(
            &engine,
            "Shop",
            "SELECT CT.Id, CT.SYS_CHANGE_CONTEXT FROM CHANGETABLE(CHANGES dbo.Orders, 0) AS CT ORDER BY CT.Id",
        );
        assert_eq!(r[0][1], Value::Binary(vec![0x0A, 0x0B]));
        assert_eq!(r[1][1], Value::Null);
    }

    #[test]
    fn cleanup_after_the_retention_period_raises_the_min_valid_version() {
        let engine = shop();
        engine
            .execute("Shop", "INSERT INTO dbo.Orders VALUES (1, N'a', 1)")
            .expect("v1");
        engine
            .execute("Shop", "INSERT INTO dbo.Orders VALUES (2, N'b', 1)")
            .expect("v2");
        let min = "SELECT CHANGE_TRACKING_MIN_VALID_VERSION(OBJECT_ID(N'dbo.Orders'))";
        assert_eq!(scalar(&engine, "Shop", min), Value::Int(0));
        // Within retention nothing is cleaned.
        engine.advance_clock(Duration::from_secs(3600));
        engine.run_change_tracking_cleanup("Shop");
        assert_eq!(scalar(&engine, "Shop", min), Value::Int(0));
        engine.advance_clock(Duration::from_secs(3 * 86_400));
        engine
            .execute("Shop", "INSERT INTO dbo.Orders VALUES (3, N'c', 1)")
            .expect("v3");
        engine.run_change_tracking_cleanup("Shop");
        assert_eq!(scalar(&engine, "Shop", min), Value::Int(2));
        assert_eq!(changes(&engine, Some(0)), vec![(3, Some(3), "I".into(), 3)]);
        let ctt = query(
            &engine,
            "Shop",
            "SELECT min_valid_version, cleanup_version FROM sys.change_tracking_tables",
        );
        assert_eq!(ctt, vec![vec![Value::Int(2), Value::Int(2)]]);
    }

    #[test]
    fn cleanup_does_nothing_when_auto_cleanup_is_off() {
        let engine = shop();
        engine
            .execute("Shop", "ALTER DATABASE Shop SET CHANGE_TRACKING (AUTO_CLEANUP = OFF)")
            .expect("off");
        engine
            .execute("Shop", "INSERT INTO dbo.Orders VALUES (1, N'a', 1)")
            .expect("v1");
        engine.advance_clock(Duration::from_secs(30 * 86_400));
        engine.run_change_tracking_cleanup("Shop");
        assert_eq!(changes(&engine, Some(0)).len(), 1);
    }

    #[test]
    fn truncate_takes_a_version_and_moves_the_min_valid_version_to_it() {
        let engine = shop();
        engine
            .execute("Shop", "INSERT INTO dbo.Orders VALUES (1, N'a', 1)")
            .expect("v1");
        engine
            .execute("Shop", "INSERT INTO dbo.Orders VALUES (2, N'b', 1)")
            .expect("v2");
        engine.execute("Shop", "TRUNCATE TABLE dbo.Orders").expect("truncate");
        // A client synced to version 2 must see its checkpoint expire.
        assert_eq!(v(&engine), 3);
        assert_eq!(
            scalar(
                &engine,
                "Shop",
                "SELECT CHANGE_TRACKING_MIN_VALID_VERSION(OBJECT_ID(N'dbo.Orders'))"
            ),
            Value::Int(3)
        );
        assert_eq!(changes(&engine, Some(0)), vec![]);
        assert!(query(&engine, "Shop", "SELECT Id FROM dbo.Orders").is_empty());
    }

    #[test]
    fn disable_and_reenable_resets_the_tables_tracking() {
        let engine = shop();
        engine
            .execute("Shop", "INSERT INTO dbo.Orders VALUES (1, N'a', 1)")
            .expect("v1");
        engine
            .execute("Shop", "ALTER TABLE dbo.Orders DISABLE CHANGE_TRACKING")
            .expect("disable");
        assert_eq!(
            scalar(
                &engine,
                "Shop",
                "SELECT CHANGE_TRACKING_MIN_VALID_VERSION(OBJECT_ID(N'dbo.Orders'))"
            ),
            Value::Null
        );
        // Changes while disabled are not tracked and do not move the version.
        engine
            .execute("Shop", "INSERT INTO dbo.Orders VALUES (2, N'b', 1)")
            .expect("untracked");
        assert_eq!(v(&engine), 1);
        engine
            .execute("Shop", "ALTER TABLE dbo.Orders ENABLE CHANGE_TRACKING")
            .expect("enable");
        let r = query(
            &engine,
            "Shop",
            "SELECT begin_version, min_valid_version, is_track_columns_updated_on FROM sys.change_tracking_tables",
        );
        assert_eq!(r, vec![vec![Value::Int(1), Value::Int(1), Value::Bit(false)]]);
        assert_eq!(changes(&engine, None), vec![]);
    }

    #[test]
    fn changetable_on_an_untracked_table_is_error_22105() {
        let engine = shop();
        engine
            .execute("Shop", "CREATE TABLE dbo.Plain (Id int PRIMARY KEY)")
            .expect("ddl");
        let e = engine
            .execute("Shop", "SELECT * FROM CHANGETABLE(CHANGES dbo.Plain, 0) AS CT")
            .expect_err("22105");
        assert_eq!((e.number, e.class, e.state), (22105, 16, 1));
        assert_eq!(e.message, "Change tracking is not enabled on table 'dbo.Plain'.");
    }

    #[test]
    fn changetable_costs_changes_since_the_baseline_not_the_history() {
        let engine = shop();
        engine
            .transaction("Shop", |t| {
                for i in 0..50_000 {
                    t.insert(
                        "dbo.Orders",
                        vec![Value::Int(i), Value::String("c".into()), Value::Null],
                    )?;
                }
                Ok(())
            })
            .expect("bulk");
        for i in 0..100 {
            engine
                .transaction("Shop", |t| {
                    t.update("dbo.Orders", &[Value::Int(i)], &[("Total", Value::Int(i))])
                        .map(|_| ())
                })
                .expect("update");
        }
        let started = std::time::Instant::now();
        for _ in 0..200 {
            let c = changes(&engine, Some(100));
            assert_eq!(c.len(), 1);
        }
        // 200 queries over a 50k-row history: a scan would take seconds.
        assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    }

    #[test]
    fn engine_transaction_commits_one_version_and_rolls_back_on_error() {
        let engine = shop();
        let started = std::time::Instant::now();
        engine
            .transaction("Shop", |t| {
                t.set_context(b"bench".to_vec());
                for i in 0..1000 {
                    t.insert(
                        "[dbo].[Orders]",
                        vec![Value::Int(i), Value::String(format!("c{i}")), Value::Int(i)],
                    )?;
                }
                Ok(())
            })
            .expect("txn");
        let elapsed = started.elapsed();
        assert_eq!(v(&engine), 1);
        assert!(elapsed < Duration::from_millis(500), "{elapsed:?}");
        let err = engine
            .transaction("Shop", |t| {
                t.delete("dbo.Orders", &[Value::Int(1)])?;
                t.insert(
                    "dbo.Orders",
                    vec![Value::Int(2), Value::String("dup".into()), Value::Null],
                )
            })
            .expect_err("duplicate");
        assert_eq!(err.number, 2627);
        assert_eq!(v(&engine), 1);
        assert_eq!(
            query(&engine, "Shop", "SELECT Id FROM dbo.Orders WHERE Id = 1").len(),
            1
        );
    }

    #[test]
    fn changes_above_the_queried_upper_bound_are_left_out() {
        let engine = shop();
        for i in 1..=5 {
            engine
                .execute("Shop", &format!("INSERT INTO dbo.Orders VALUES ({i}, N'c', 1)"))
                .expect("insert");
        }
        let r = query(
        &engine,
        "Shop",
        "SELECT CT.Id FROM CHANGETABLE(CHANGES dbo.Orders, 1) AS CT WHERE CT.SYS_CHANGE_VERSION <= 3 ORDER BY CT.SYS_CHANGE_VERSION",
    );
        assert_eq!(r, vec![vec![Value::Int(2)], vec![Value::Int(3)]]);
        let r = query(
            &engine,
            "Shop",
            "SELECT CT.Id FROM CHANGETABLE(CHANGES dbo.Orders, 1) AS CT WHERE 4 > CT.SYS_CHANGE_VERSION AND CT.Id > 2",
        );
        assert_eq!(r, vec![vec![Value::Int(3)]]);
    }

    #[test]
    fn a_polling_reader_sees_every_change_once_while_a_writer_commits() {
        let engine = shop();
        let writer_engine = engine.clone();
        let writer = std::thread::spawn(move || {
            for t in 0..200i64 {
                writer_engine
                    .transaction("Shop", |x| {
                        for i in 0..50 {
                            x.insert(
                                "dbo.Orders",
                                vec![Value::Int(t * 50 + i), Value::String("w".into()), Value::Null],
                            )?;
                        }
                        Ok(())
                    })
                    .expect("commit");
            }
        });
        let mut reader = engine.admin_session("Shop").expect("reader");
        let mut checkpoint = 0i64;
        let mut seen = std::collections::BTreeSet::new();
        loop {
            let done = writer.is_finished();
            let out = run(
                &mut reader,
                "SET TRANSACTION ISOLATION LEVEL SNAPSHOT; BEGIN TRANSACTION; SELECT CHANGE_TRACKING_CURRENT_VERSION()",
                &[],
            );
            let Value::Int(upper) = rows(&out)[0][0] else {
                panic!("version")
            };
            let out = run(
            &mut reader,
            "SELECT CT.Id FROM CHANGETABLE(CHANGES dbo.Orders, @P1) AS CT WHERE CT.SYS_CHANGE_VERSION <= @P2 ORDER BY CT.SYS_CHANGE_VERSION, CT.Id",
            &[p("@P1", Value::Int(checkpoint)), p("@P2", Value::Int(upper))],
        );
            for r in rows(&out) {
                let Value::Int(id) = r[0] else { panic!("id") };
                assert!(seen.insert(id), "id {id} delivered twice");
            }
            run(&mut reader, "COMMIT TRANSACTION", &[]);
            assert!(upper >= checkpoint);
            checkpoint = upper;
            if done && checkpoint == engine.current_version("Shop").expect("on") {
                break;
            }
        }
        writer.join().expect("writer");
        assert_eq!(seen.len(), 10_000);
        assert_eq!(checkpoint, 200);
    }
}
