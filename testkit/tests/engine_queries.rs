//! General query behaviour tests and workloads rely on: aggregates for row counts,
//! filters, ordering, UNION ALL, casts, set-based updates, composite and string
//! keys under the case-insensitive default collation, heaps.

mod engine_support;

use engine_support::*;
use testkit::mssql::types::{SqlType, Value};

/// Named `engine::…` so `cargo test -p testkit engine` selects these tests.
mod engine {
    use super::*;

    fn seeded() -> testkit::mssql::engine::Engine {
        let engine = shop();
        engine
        .execute(
            "Shop",
            "INSERT INTO dbo.Orders (Id, Customer, Total) VALUES (1, N'alice', 10.50), (2, N'Bob', NULL), (3, N'carol', 7)",
        )
        .expect("seed");
        engine
    }

    #[test]
    fn count_min_max_sum_avg_over_a_table() {
        let engine = seeded();
        let out = engine
        .execute(
            "Shop",
            "SELECT COUNT(*) AS n, COUNT(Total) AS with_total, COUNT_BIG(*) AS big, MIN(Id) AS lo, MAX(Customer) AS hi, SUM(Total) AS s, AVG(Id) AS a FROM dbo.Orders",
        )
        .expect("aggregates");
        let cols = columns(&out);
        assert_eq!(cols[0].ty, SqlType::Int);
        assert!(!cols[0].nullable);
        assert_eq!(cols[2].ty, SqlType::BigInt);
        assert_eq!(
            rows(&out),
            vec![vec![
                Value::Int(3),
                Value::Int(2),
                Value::Int(3),
                Value::Int(1),
                Value::String("carol".into()),
                Value::Decimal { value: 1750, scale: 2 },
                Value::Int(2)
            ]]
        );
        assert_eq!(
            scalar(&engine, "Shop", "SELECT COUNT(*) FROM dbo.Orders WHERE Id > 100"),
            Value::Int(0)
        );
        let e = engine
            .execute("Shop", "SELECT Id, COUNT(*) FROM dbo.Orders")
            .expect_err("8120");
        assert_eq!(e.number, 8120);
    }

    #[test]
    fn filters_ordering_and_expressions() {
        let engine = seeded();
        let q = |sql: &str| query(&engine, "Shop", sql);
        assert_eq!(
            q("SELECT Id FROM dbo.Orders WHERE Customer = N'BOB'"),
            vec![vec![Value::Int(2)]]
        );
        assert_eq!(
            q("SELECT Id FROM dbo.Orders WHERE Total IS NULL"),
            vec![vec![Value::Int(2)]]
        );
        assert_eq!(
            q("SELECT Id FROM dbo.Orders WHERE Id IN (1, 3) ORDER BY Id DESC"),
            vec![vec![Value::Int(3)], vec![Value::Int(1)]]
        );
        assert_eq!(
            q("SELECT Id FROM dbo.Orders WHERE Customer LIKE N'c%'"),
            vec![vec![Value::Int(3)]]
        );
        assert_eq!(
            q("SELECT Id FROM dbo.Orders WHERE Id BETWEEN 2 AND 3 AND Total > 5"),
            vec![vec![Value::Int(3)]]
        );
        assert_eq!(
            q("SELECT Id AS k FROM dbo.Orders ORDER BY k DESC"),
            vec![vec![Value::Int(3)], vec![Value::Int(2)], vec![Value::Int(1)]]
        );
        assert_eq!(
            q("SELECT ISNULL(Total, 0) AS t, CAST(Id AS nvarchar(10)) AS s FROM dbo.Orders WHERE Id = 2"),
            vec![vec![Value::Decimal { value: 0, scale: 2 }, Value::String("2".into())]]
        );
        assert_eq!(
            q("SELECT 2 AS x UNION ALL SELECT 1 ORDER BY x"),
            vec![vec![Value::Int(1)], vec![Value::Int(2)]]
        );
        assert_eq!(
            q("SELECT (SELECT MAX(Id) FROM dbo.Orders) + 1"),
            vec![vec![Value::Int(4)]]
        );
        assert_eq!(q("SELECT * FROM dbo.Orders WHERE Id = 1")[0].len(), 3);
    }

    #[test]
    fn set_based_update_can_shift_primary_keys() {
        let engine = seeded();
        engine
            .execute("Shop", "UPDATE dbo.Orders SET Id = Id + 1")
            .expect("shift");
        assert_eq!(
            query(&engine, "Shop", "SELECT Id FROM dbo.Orders ORDER BY Id"),
            vec![vec![Value::Int(2)], vec![Value::Int(3)], vec![Value::Int(4)]]
        );
    }

    #[test]
    fn string_keys_follow_the_case_insensitive_collation() {
        let engine = shop();
        engine
            .execute(
                "Shop",
                "CREATE TABLE dbo.K (Code varchar(10) NOT NULL PRIMARY KEY, N int)",
            )
            .expect("table");
        engine
            .execute("Shop", "INSERT INTO dbo.K VALUES ('abc', 1)")
            .expect("insert");
        let e = engine
            .execute("Shop", "INSERT INTO dbo.K VALUES ('ABC', 2)")
            .expect_err("duplicate");
        assert_eq!(e.number, 2627);
        assert_eq!(
            query(&engine, "Shop", "SELECT N FROM dbo.K WHERE Code = 'ABC'"),
            vec![vec![Value::Int(1)]]
        );
    }

    #[test]
    fn heaps_hold_rows_without_a_key() {
        let engine = shop();
        engine
            .execute("Shop", "CREATE TABLE dbo.Log (Msg nvarchar(max) NULL)")
            .expect("heap");
        engine
            .execute("Shop", "INSERT INTO dbo.Log VALUES (N'a'), (N'a')")
            .expect("insert");
        assert_eq!(scalar(&engine, "Shop", "SELECT COUNT(*) FROM dbo.Log"), Value::Int(2));
        engine
            .execute("Shop", "DELETE FROM dbo.Log WHERE Msg = N'a'")
            .expect("delete");
        assert_eq!(scalar(&engine, "Shop", "SELECT COUNT(*) FROM dbo.Log"), Value::Int(0));
    }

    #[test]
    fn schemas_and_use_switch_where_names_resolve() {
        let engine = shop();
        engine.execute("Shop", "CREATE SCHEMA sales").expect("schema");
        let e = engine
            .execute("Shop", "SELECT 1; CREATE SCHEMA other")
            .expect_err("111");
        assert_eq!(e.number, 111);
        engine
            .execute(
                "Shop",
                "CREATE TABLE sales.Leads (Id bigint PRIMARY KEY, At datetime2(3) NULL, G uniqueidentifier NULL)",
            )
            .expect("table");
        engine
        .execute("master", "USE Shop; INSERT INTO sales.Leads VALUES (1, '2024-01-02 03:04:05.123', '6F9619FF-8B86-D011-B42D-00C04FC964FF')")
        .expect("use + insert");
        let r = query(&engine, "Shop", "SELECT Id, At FROM sales.Leads");
        assert_eq!(r[0][0], Value::Int(1));
        assert!(matches!(r[0][1], Value::DateTime(_)));
        let e = engine.execute("master", "USE Nope").expect_err("911");
        assert_eq!(e.number, 911);
    }

    #[test]
    fn nocount_hides_dml_row_counts() {
        use testkit::mssql::types::{BackendSession, Outcome};
        let engine = shop();
        let mut s = engine.admin_session("Shop").expect("session");
        let out = run(
            &mut s,
            "INSERT INTO dbo.Orders VALUES (1, N'a', 1); SET NOCOUNT ON; INSERT INTO dbo.Orders VALUES (2, N'b', 1)",
            &[],
        );
        assert_eq!(out[0], Outcome::Done { row_count: Some(1) });
        assert_eq!(out[2], Outcome::Done { row_count: None });
        assert!(!s.in_transaction());
    }

    #[test]
    fn smallmoney_and_smalldatetime_are_reported_as_declared() {
        let engine = shop();
        engine
            .execute(
                "Shop",
                "CREATE TABLE dbo.Small (Id int PRIMARY KEY, Price smallmoney NULL, At smalldatetime NULL)",
            )
            .expect("table");
        let r = query(
            &engine,
            "Shop",
            "SELECT t.name, c.max_length, c.precision, c.scale FROM sys.columns AS c JOIN sys.types AS t ON t.user_type_id = c.user_type_id WHERE c.object_id = OBJECT_ID(N'dbo.Small') AND c.column_id > 1 ORDER BY c.column_id",
        );
        let s = |x: &str| Value::String(x.into());
        assert_eq!(
            r,
            vec![
                vec![s("smallmoney"), Value::Int(4), Value::Int(10), Value::Int(4)],
                vec![s("smalldatetime"), Value::Int(4), Value::Int(16), Value::Int(0)],
            ]
        );
        engine
            .execute("Shop", "INSERT INTO dbo.Small VALUES (1, 12.5, '2024-01-02 03:04:40')")
            .expect("insert");
        let r = query(
            &engine,
            "Shop",
            "SELECT Price, CAST(Price AS decimal(10,4)), At FROM dbo.Small",
        );
        assert_eq!(r[0][0], Value::Money(125_000));
        assert_eq!(
            r[0][1],
            Value::Decimal {
                value: 125_000,
                scale: 4
            }
        );
        assert_eq!(
            r[0][2],
            Value::DateTime(
                chrono::NaiveDate::from_ymd_opt(2024, 1, 2)
                    .and_then(|d| d.and_hms_opt(3, 5, 0))
                    .expect("date")
            )
        );
        let e = engine
            .execute("Shop", "INSERT INTO dbo.Small VALUES (2, 300000, NULL)")
            .expect_err("smallmoney range");
        assert_eq!(e.number, 8115);
    }
}
