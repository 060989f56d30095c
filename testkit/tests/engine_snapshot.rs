//! SNAPSHOT isolation: reads inside a snapshot transaction see the committed state
//! as of its first statement while other sessions commit; refused with 3952 where
//! the database does not allow it.

mod engine_support;

use engine_support::*;
use testkit::mssql::types::{BackendSession, Value};

/// Named `engine::…` so `cargo test -p testkit engine` selects these tests.
mod engine {
    use super::*;

    #[test]
    fn snapshot_transaction_sees_the_state_at_its_start_while_another_session_commits() {
        let engine = shop();
        engine
            .execute("Shop", "INSERT INTO dbo.Orders VALUES (1, N'a', 1)")
            .expect("v1");
        let mut reader = engine.admin_session("Shop").expect("reader");
        let mut writer = engine.admin_session("Shop").expect("writer");
        run(
            &mut reader,
            "SET TRANSACTION ISOLATION LEVEL SNAPSHOT; BEGIN TRANSACTION;",
            &[],
        );
        let v = rows(&run(&mut reader, "SELECT CHANGE_TRACKING_CURRENT_VERSION()", &[]));
        assert_eq!(v, vec![vec![Value::Int(1)]]);

        run(
            &mut writer,
            "INSERT INTO dbo.Orders VALUES (2, N'b', 2); UPDATE dbo.Orders SET Total = 9 WHERE Id = 1",
            &[],
        );
        assert_eq!(engine.current_version("Shop"), Some(3));

        let v = rows(&run(&mut reader, "SELECT CHANGE_TRACKING_CURRENT_VERSION()", &[]));
        assert_eq!(v, vec![vec![Value::Int(1)]]);
        let r = rows(&run(&mut reader, "SELECT Id, Total FROM dbo.Orders ORDER BY Id", &[]));
        assert_eq!(r, vec![vec![Value::Int(1), Value::Decimal { value: 100, scale: 2 }]]);
        let c = rows(&run(
            &mut reader,
            "SELECT CT.Id FROM CHANGETABLE(CHANGES dbo.Orders, 0) AS CT",
            &[],
        ));
        assert_eq!(c, vec![vec![Value::Int(1)]]);
        let m = rows(&run(
            &mut reader,
            "SELECT COLUMNPROPERTY(OBJECT_ID(N'dbo.Orders'), N'Total', 'ColumnId')",
            &[],
        ));
        assert_eq!(m, vec![vec![Value::Int(3)]]);
        run(&mut reader, "COMMIT", &[]);

        let v = rows(&run(&mut reader, "SELECT CHANGE_TRACKING_CURRENT_VERSION()", &[]));
        assert_eq!(v, vec![vec![Value::Int(3)]]);
    }

    #[test]
    fn snapshot_isolation_without_allow_snapshot_isolation_is_3952() {
        let engine = shop();
        engine
            .execute("master", "ALTER DATABASE Shop SET ALLOW_SNAPSHOT_ISOLATION OFF")
            .expect("off");
        let mut s = engine.admin_session("Shop").expect("session");
        run(&mut s, "SET TRANSACTION ISOLATION LEVEL SNAPSHOT; BEGIN TRAN;", &[]);
        // Functions and catalog views do not touch user tables.
        run(
            &mut s,
            "SELECT CHANGE_TRACKING_CURRENT_VERSION(); SELECT name FROM sys.tables",
            &[],
        );
        let e = error_of(&mut s, "SELECT * FROM dbo.Orders", &[]);
        assert_eq!((e.number, e.class, e.state), (3952, 16, 1));
        assert_eq!(
        e.message,
        "Snapshot isolation transaction failed accessing database 'Shop' because snapshot isolation is not allowed in this database. Use ALTER DATABASE to allow snapshot isolation."
    );
        let e = error_of(&mut s, "SELECT * FROM CHANGETABLE(CHANGES dbo.Orders, 0) AS CT", &[]);
        assert_eq!(e.number, 3952);
        run(&mut s, "ROLLBACK", &[]);
    }

    #[test]
    fn explicit_transaction_commits_all_its_writes_as_one_version() {
        let engine = shop();
        let mut s = engine.admin_session("Shop").expect("session");
        let other = engine.admin_session("Shop").expect("other");
        run(
            &mut s,
            "BEGIN TRANSACTION; INSERT INTO dbo.Orders VALUES (1, N'a', 1)",
            &[],
        );
        run(
            &mut s,
            "INSERT INTO dbo.Orders VALUES (2, N'b', 1); UPDATE dbo.Orders SET Total = 5 WHERE Id = 1",
            &[],
        );
        assert!(s.in_transaction());
        assert_eq!(engine.current_version("Shop"), Some(0));
        drop(other);
        run(&mut s, "COMMIT TRANSACTION", &[]);
        assert_eq!(engine.current_version("Shop"), Some(1));
        assert_eq!(
            changes(&engine, Some(0)),
            vec![(1, Some(1), "I".into(), 1), (1, Some(1), "I".into(), 2)]
        );
    }

    #[test]
    fn dropping_a_session_rolls_back_its_transaction() {
        let engine = shop();
        {
            let mut s = engine.admin_session("Shop").expect("session");
            run(&mut s, "BEGIN TRAN; INSERT INTO dbo.Orders VALUES (1, N'a', 1)", &[]);
        }
        assert!(query(&engine, "Shop", "SELECT Id FROM dbo.Orders").is_empty());
    }

    #[test]
    fn snapshot_update_of_a_row_changed_since_the_snapshot_is_3960() {
        let engine = shop();
        engine
            .execute("Shop", "INSERT INTO dbo.Orders VALUES (1, N'a', 1), (2, N'b', 2)")
            .expect("seed");
        let mut s = engine.admin_session("Shop").expect("session");
        run(
            &mut s,
            "SET TRANSACTION ISOLATION LEVEL SNAPSHOT; BEGIN TRAN; SELECT Id FROM dbo.Orders",
            &[],
        );
        engine
            .execute("Shop", "UPDATE dbo.Orders SET Total = 5 WHERE Id = 1")
            .expect("other writer");
        // Updating a row nobody else touched is fine; the conflict surfaces at commit.
        run(
            &mut s,
            "UPDATE dbo.Orders SET Total = 7 WHERE Id = 2; UPDATE dbo.Orders SET Total = 8 WHERE Id = 1",
            &[],
        );
        let e = error_of(&mut s, "COMMIT", &[]);
        assert_eq!((e.number, e.class), (3960, 16));
        assert!(!s.in_transaction());
        assert_eq!(
            query(&engine, "Shop", "SELECT Total FROM dbo.Orders ORDER BY Id"),
            vec![
                vec![Value::Decimal { value: 500, scale: 2 }],
                vec![Value::Decimal { value: 200, scale: 2 }]
            ]
        );
    }

    #[test]
    fn snapshot_isolation_level_applies_to_autocommitted_statements_too() {
        let engine = shop();
        engine
            .execute("master", "ALTER DATABASE Shop SET ALLOW_SNAPSHOT_ISOLATION OFF")
            .expect("off");
        let mut s = engine.admin_session("Shop").expect("session");
        run(&mut s, "SET TRANSACTION ISOLATION LEVEL SNAPSHOT", &[]);
        assert_eq!(error_of(&mut s, "SELECT Id FROM dbo.Orders", &[]).number, 3952);
        run(
            &mut s,
            "SET TRANSACTION ISOLATION LEVEL READ COMMITTED; SELECT Id FROM dbo.Orders",
            &[],
        );
    }

    #[test]
    fn read_committed_transaction_sees_its_writes_and_others_commits() {
        let engine = shop();
        let mut s = engine.admin_session("Shop").expect("session");
        run(&mut s, "BEGIN TRAN; INSERT INTO dbo.Orders VALUES (1, N'mine', 1)", &[]);
        engine
            .execute("Shop", "INSERT INTO dbo.Orders VALUES (2, N'theirs', 1)")
            .expect("other session");
        let r = rows(&run(&mut s, "SELECT Id FROM dbo.Orders ORDER BY Id", &[]));
        assert_eq!(r, vec![vec![Value::Int(1)], vec![Value::Int(2)]]);
        run(&mut s, "UPDATE dbo.Orders SET Total = 3 WHERE Id = 1; COMMIT", &[]);
        assert_eq!(engine.current_version("Shop"), Some(2));
        assert_eq!(changes(&engine, Some(1)), vec![(2, Some(2), "I".into(), 1)]);
    }
}
