//! Refusals: SQL outside the supported surface, unknown objects and columns, and
//! constraint violations all produce SQL Server's own error number, class, state and
//! message, and stop (or not) the batch as SQL Server does.

mod engine_support;

use engine_support::*;
use testkit::mssql::types::{BackendSession, Outcome, Value};

/// Named `engine::…` so `cargo test -p testkit engine` selects these tests.
mod engine {
    use super::*;

    fn err(sql: &str) -> testkit::mssql::types::SqlError {
        let engine = shop();
        let mut s = engine.admin_session("Shop").expect("session");
        error_of(&mut s, sql, &[])
    }

    #[test]
    fn syntax_errors_are_102_naming_the_token() {
        let e = err("SELECT Id FROM dbo.Orders WHERE Id =");
        assert_eq!((e.number, e.class, e.state), (102, 15, 1));
        assert_eq!(e.message, "Incorrect syntax near '='.");
        // Ending on a keyword names the keyword (156).
        let e = err("SELECT Id FROM dbo.Orders WHERE");
        assert_eq!(e.message, "Incorrect syntax near the keyword 'WHERE'.");
        let e = err("SELECT * FROM dbo.Orders ORDER");
        assert_eq!(e.number, 156);
        assert_eq!(e.message, "Incorrect syntax near the keyword 'ORDER'.");
        let e = err("SELECT 1 +");
        assert_eq!(e.number, 102);
        assert_eq!(e.message, "Incorrect syntax near '+'.");
    }

    #[test]
    fn a_reserved_keyword_out_of_place_is_156() {
        let e = err("SELECT FROM dbo.Orders");
        assert_eq!((e.number, e.class), (156, 15));
        assert_eq!(e.message, "Incorrect syntax near the keyword 'FROM'.");
    }

    #[test]
    fn unknown_table_is_208_and_unknown_column_207() {
        let e = err("SELECT * FROM dbo.Missing");
        assert_eq!((e.number, e.class, e.state), (208, 16, 1));
        assert_eq!(e.message, "Invalid object name 'dbo.Missing'.");
        let e = err("SELECT Nope FROM dbo.Orders");
        assert_eq!((e.number, e.class), (207, 16));
        assert_eq!(e.message, "Invalid column name 'Nope'.");
        let e = err("SELECT X.Id FROM dbo.Orders AS T");
        assert_eq!(e.number, 4104);
        assert_eq!(e.message, "The multi-part identifier \"X.Id\" could not be bound.");
        let e = err("SELECT * FROM sys.nothing");
        assert_eq!(e.number, 208);
    }

    #[test]
    fn unknown_procedure_and_function_are_2812_and_195() {
        let e = err("sp_who");
        assert_eq!((e.number, e.class), (2812, 16));
        assert_eq!(e.message, "Could not find stored procedure 'sp_who'.");
        let e = err("EXEC dbo.usp_missing");
        assert_eq!(e.number, 2812);
        assert_eq!(e.message, "Could not find stored procedure 'dbo.usp_missing'.");
        let e = err("SELECT NOSUCHFN(1)");
        assert_eq!(e.number, 195);
        assert_eq!(e.message, "'NOSUCHFN' is not a recognized built-in function name.");
    }

    #[test]
    fn undeclared_parameter_is_137() {
        let e = err("SELECT @P9");
        assert_eq!((e.number, e.class), (137, 15));
        assert_eq!(e.message, "Must declare the scalar variable \"@P9\".");
    }

    #[test]
    fn unsupported_constructs_are_refused_not_answered() {
        for sql in [
            "SELECT DISTINCT Id FROM dbo.Orders",
            "SELECT Id FROM dbo.Orders GROUP BY Id",
            "MERGE dbo.Orders AS t USING dbo.Orders AS s ON t.Id = s.Id",
            "SELECT * FROM CHANGETABLE(VERSION dbo.Orders, (Id), (1)) AS CT",
            "SELECT * FROM CHANGETABLE(CHANGES dbo.Orders, 1 + 1) AS CT",
        ] {
            let engine = shop();
            let mut s = engine.admin_session("Shop").expect("session");
            let out = s.execute(sql, &[]);
            assert!(
                matches!(out.as_slice(), [Outcome::Error(_)]),
                "{sql} should be refused, got {out:?}"
            );
        }
    }

    #[test]
    fn a_syntax_error_anywhere_rejects_the_whole_batch() {
        let engine = shop();
        let mut s = engine.admin_session("Shop").expect("session");
        let out = s.execute("INSERT INTO dbo.Orders VALUES (1, N'a', 1); SELEC 1", &[]);
        assert_eq!(out.len(), 1);
        assert!(matches!(&out[0], Outcome::Error(e) if e.number == 102 || e.number == 2812));
        assert!(query(&engine, "Shop", "SELECT Id FROM dbo.Orders").is_empty());
    }

    #[test]
    fn duplicate_key_is_2627_and_ends_only_its_statement() {
        let engine = shop();
        let mut s = engine.admin_session("Shop").expect("session");
        let out = s.execute(
        "INSERT INTO dbo.Orders VALUES (1, N'a', 1); INSERT INTO dbo.Orders VALUES (1, N'b', 1); INSERT INTO dbo.Orders VALUES (2, N'c', 1)",
        &[],
    );
        assert_eq!(out.len(), 3);
        let Outcome::Error(e) = &out[1] else { panic!("{out:?}") };
        assert_eq!((e.number, e.class, e.state), (2627, 14, 1));
        assert!(
            e.message
                .starts_with("Violation of PRIMARY KEY constraint 'PK__Orders__"),
            "{}",
            e.message
        );
        assert!(e
            .message
            .ends_with("Cannot insert duplicate key in object 'dbo.Orders'. The duplicate key value is (1)."));
        assert_eq!(out[2], Outcome::Done { row_count: Some(1) });
    }

    #[test]
    fn an_invalid_object_ends_the_batch() {
        let engine = shop();
        let mut s = engine.admin_session("Shop").expect("session");
        let out = s.execute(
            "SELECT * FROM dbo.Missing; INSERT INTO dbo.Orders VALUES (1, N'a', 1)",
            &[],
        );
        assert_eq!(out.len(), 1);
        assert!(query(&engine, "Shop", "SELECT Id FROM dbo.Orders").is_empty());
    }

    #[test]
    fn null_into_not_null_is_515_and_overlong_string_2628() {
        let e = err("INSERT INTO dbo.Orders VALUES (1, NULL, 1)");
        assert_eq!((e.number, e.class, e.state), (515, 16, 2));
        assert_eq!(
        e.message,
        "Cannot insert the value NULL into column 'Customer', table 'Shop.dbo.Orders'; column does not allow nulls. INSERT fails."
    );
        let long = "x".repeat(101);
        let e = err(&format!("INSERT INTO dbo.Orders VALUES (1, N'{long}', 1)"));
        assert_eq!(e.number, 2628);
    }

    #[test]
    fn transaction_control_errors_are_3902_and_3903() {
        assert_eq!(err("COMMIT").number, 3902);
        assert_eq!(err("ROLLBACK TRANSACTION").number, 3903);
    }

    #[test]
    fn rollback_discards_the_transactions_writes_and_version() {
        let engine = shop();
        let mut s = engine.admin_session("Shop").expect("session");
        run(
            &mut s,
            "BEGIN TRAN; INSERT INTO dbo.Orders VALUES (1, N'a', 1); UPDATE dbo.Orders SET Total = 2 WHERE Id = 1",
            &[],
        );
        // Own writes are visible inside the transaction, not outside.
        assert_eq!(
            rows(&run(&mut s, "SELECT Total FROM dbo.Orders", &[])),
            vec![vec![Value::Decimal { value: 200, scale: 2 }]]
        );
        assert!(query(&engine, "Shop", "SELECT Id FROM dbo.Orders").is_empty());
        run(&mut s, "ROLLBACK", &[]);
        assert!(!s.in_transaction());
        assert!(query(&engine, "Shop", "SELECT Id FROM dbo.Orders").is_empty());
        assert_eq!(engine.current_version("Shop"), Some(0));
    }

    #[test]
    fn enabling_tracking_needs_a_primary_key_and_database_tracking() {
        let engine = shop();
        engine
            .execute("Shop", "CREATE TABLE dbo.Heap (A int NULL)")
            .expect("heap");
        let e = engine
            .execute("Shop", "ALTER TABLE dbo.Heap ENABLE CHANGE_TRACKING")
            .expect_err("no pk");
        assert_eq!(e.number, 4997);
        engine.execute("master", "CREATE DATABASE Plain").expect("db");
        engine
            .execute("Plain", "CREATE TABLE dbo.T (Id int PRIMARY KEY)")
            .expect("t");
        let e = engine
            .execute("Plain", "ALTER TABLE dbo.T ENABLE CHANGE_TRACKING")
            .expect_err("db off");
        assert_eq!(e.number, 1718);
        assert_eq!(
            e.message,
            "Change tracking must be enabled on database 'Plain' before it can be enabled on table 'dbo.T'."
        );
        let e = engine
            .execute("Shop", "ALTER DATABASE Shop SET CHANGE_TRACKING = OFF")
            .expect_err("tables tracked");
        assert_eq!(e.number, 22115);
    }

    #[test]
    fn changetable_needs_an_alias_and_context_needs_short_varbinary() {
        let e = err("SELECT * FROM CHANGETABLE(CHANGES dbo.Orders, 0)");
        assert_eq!((e.number, e.class), (22104, 16));
        assert_eq!(
            e.message,
            "A table returned by the CHANGETABLE function must be aliased."
        );
        let e = err("WITH CHANGE_TRACKING_CONTEXT (0x01) SELECT 1");
        assert_eq!(e.number, 22108);
        let e = err("WITH CHANGE_TRACKING_CONTEXT (N'text') INSERT INTO dbo.Orders VALUES (1, N'a', 1)");
        assert_eq!(e.number, 22109);
        let e = err("SELECT CHANGE_TRACKING_IS_COLUMN_IN_MASK(1, 0x010203)");
        assert_eq!(e.number, 22101);
    }

    #[test]
    fn database_change_tracking_settings_follow_sql_servers_rules() {
        let engine = shop();
        let e = engine
            .execute("Shop", "ALTER DATABASE CURRENT SET CHANGE_TRACKING = ON")
            .expect_err("already on");
        assert_eq!(e.number, 5088);
        engine
            .execute(
                "Shop",
                "ALTER DATABASE CURRENT SET CHANGE_TRACKING (CHANGE_RETENTION = 90 MINUTES)",
            )
            .expect("retention");
        let r = query(&engine, "Shop", "SELECT retention_period, retention_period_units, retention_period_units_desc FROM sys.change_tracking_databases");
        assert_eq!(
            r,
            vec![vec![Value::Int(90), Value::Int(1), Value::String("MINUTES".into())]]
        );
        engine.execute("master", "CREATE DATABASE Plain").expect("db");
        let e = engine
            .execute("Plain", "ALTER DATABASE CURRENT SET CHANGE_TRACKING = OFF")
            .expect_err("off already");
        assert_eq!((e.number, e.state), (5089, 1));
        engine
            .execute(
                "Shop",
                "ALTER TABLE dbo.Orders DISABLE CHANGE_TRACKING; ALTER DATABASE Shop SET CHANGE_TRACKING = OFF",
            )
            .expect("turn off");
        assert_eq!(engine.current_version("Shop"), None);
        assert!(query(&engine, "Shop", "SELECT database_id FROM sys.change_tracking_databases").is_empty());
    }

    #[test]
    fn conversion_failures_use_sql_servers_numbers() {
        let engine = shop();
        engine
        .execute("Shop", "CREATE TABLE dbo.Conv (Id int PRIMARY KEY, T tinyint NULL, D decimal(4,2) NULL, W datetime2 NULL, G uniqueidentifier NULL)")
        .expect("table");
        let mut s = engine.admin_session("Shop").expect("session");
        let e = error_of(&mut s, "INSERT INTO dbo.Conv (Id, T) VALUES (1, 300)", &[]);
        assert_eq!(e.number, 220);
        assert_eq!(
            e.message,
            "Arithmetic overflow error for data type tinyint, value = 300."
        );
        let e = error_of(&mut s, "INSERT INTO dbo.Conv (Id, D) VALUES (1, 123.45)", &[]);
        assert_eq!(e.number, 8115);
        assert_eq!(
            e.message,
            "Arithmetic overflow error converting numeric to data type numeric."
        );
        let e = error_of(&mut s, "INSERT INTO dbo.Conv (Id) VALUES ('abc')", &[]);
        assert_eq!(e.number, 245);
        assert_eq!(
            e.message,
            "Conversion failed when converting the varchar value 'abc' to data type int."
        );
        let e = error_of(&mut s, "INSERT INTO dbo.Conv (Id, W) VALUES (1, 'not a date')", &[]);
        assert_eq!(e.number, 241);
        let e = error_of(&mut s, "INSERT INTO dbo.Conv (Id, G) VALUES (1, 'nope')", &[]);
        assert_eq!(e.number, 8169);
        assert_eq!(error_of(&mut s, "SELECT 1 / 0", &[]).number, 8134);
    }
}
