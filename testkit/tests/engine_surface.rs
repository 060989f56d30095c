//! Every statement of `docs/sql-surface.md`, run as the sidecar would run it (its own
//! login, parameters as `@P1…`), checked for column names, types, nullability and
//! values.

mod engine_support;

use engine_support::*;
use testkit::mssql::engine::{Engine, Session};
use testkit::mssql::types::{BackendSession, Column, Outcome, SqlType, Value};

/// Named `engine::…` so `cargo test -p testkit engine` selects these tests.
mod engine {
    use super::*;

    const MIGRATION: &str = "
IF NOT EXISTS (SELECT 1 FROM sys.change_tracking_databases WHERE database_id = DB_ID())
    ALTER DATABASE CURRENT SET CHANGE_TRACKING = ON (CHANGE_RETENTION = 3 DAYS, AUTO_CLEANUP = ON);
IF NOT EXISTS (SELECT 1 FROM sys.databases WHERE database_id = DB_ID() AND snapshot_isolation_state = 1)
    ALTER DATABASE CURRENT SET ALLOW_SNAPSHOT_ISOLATION ON;
IF NOT EXISTS (SELECT 1 FROM sys.change_tracking_tables WHERE object_id = OBJECT_ID(N'[dbo].[Orders]'))
    ALTER TABLE [dbo].[Orders] ENABLE CHANGE_TRACKING WITH (TRACK_COLUMNS_UPDATED = ON);
IF NOT EXISTS (SELECT 1 FROM sys.server_principals WHERE name = N'cdc_reader')
    CREATE LOGIN [cdc_reader] WITH PASSWORD = N'Reader-Passw0rd!';
IF NOT EXISTS (SELECT 1 FROM sys.database_principals WHERE name = N'cdc_reader')
    CREATE USER [cdc_reader] FOR LOGIN [cdc_reader];
GRANT SELECT ON SCHEMA::[dbo] TO [cdc_reader];
GRANT VIEW CHANGE TRACKING ON SCHEMA::[dbo] TO [cdc_reader];
";

    /// A database prepared only with plain DDL, then the migration run twice.
    fn migrated() -> Engine {
        let engine = Engine::new();
        engine.execute("master", "CREATE DATABASE Shop").expect("db");
        engine
        .execute(
            "Shop",
            "CREATE TABLE [dbo].[Orders] ([Id] int NOT NULL, [Customer] nvarchar(100) NOT NULL, [Total] decimal(10,2) NULL, CONSTRAINT PK_Orders PRIMARY KEY ([Id]))",
        )
        .expect("table");
        engine.execute("Shop", MIGRATION).expect("migration");
        engine.execute("Shop", MIGRATION).expect("migration is idempotent");
        engine
    }

    fn reader(engine: &Engine) -> Session {
        login(engine, "cdc_reader", "Reader-Passw0rd!", Some("Shop")).expect("reader login")
    }

    fn col(name: &str, ty: SqlType, nullable: bool) -> Column {
        Column {
            name: name.into(),
            ty,
            nullable,
        }
    }

    #[test]
    fn migrations_are_idempotent_and_configure_tracking_snapshot_and_access() {
        let engine = migrated();
        let r = query(
        &engine,
        "Shop",
        "SELECT d.snapshot_isolation_state, d.snapshot_isolation_state_desc, ctd.retention_period, ctd.retention_period_units_desc, ctd.is_auto_cleanup_on
         FROM sys.databases AS d LEFT OUTER JOIN sys.change_tracking_databases AS ctd ON ctd.database_id = d.database_id
         WHERE d.name = N'Shop'",
    );
        assert_eq!(
            r,
            vec![vec![
                Value::Int(1),
                Value::String("ON".into()),
                Value::Int(3),
                Value::String("DAYS".into()),
                Value::Bit(true)
            ]]
        );
        assert_eq!(
            query(
                &engine,
                "Shop",
                "SELECT name FROM sys.database_principals WHERE name = N'cdc_reader'"
            )
            .len(),
            1
        );
        assert_eq!(
            query(&engine, "Shop", "SELECT object_id FROM sys.change_tracking_tables").len(),
            1
        );
    }

    #[test]
    fn startup_checks_return_sql_servers_columns() {
        let engine = migrated();
        let mut s = reader(&engine);
        let out = run(
        &mut s,
        "SELECT @@SERVERNAME AS server_name, DB_NAME() AS database_name, CHANGE_TRACKING_CURRENT_VERSION() AS current_version;",
        &[],
    );
        assert_eq!(
            columns(&out),
            vec![
                col("server_name", SqlType::NVarChar(Some(128)), false),
                col("database_name", SqlType::NVarChar(Some(128)), true),
                col("current_version", SqlType::BigInt, true),
            ]
        );
        assert_eq!(rows(&out)[0][1], Value::String("Shop".into()));
        assert_eq!(rows(&out)[0][2], Value::Int(0));

        let out = run(
            &mut s,
            "SELECT d.snapshot_isolation_state, ctd.retention_period, ctd.retention_period_units_desc,
               ctd.is_auto_cleanup_on
        FROM sys.databases AS d
        LEFT OUTER JOIN sys.change_tracking_databases AS ctd ON ctd.database_id = d.database_id
        WHERE d.database_id = DB_ID();",
            &[],
        );
        assert_eq!(
            columns(&out),
            vec![
                col("snapshot_isolation_state", SqlType::TinyInt, true),
                col("retention_period", SqlType::Int, true),
                col("retention_period_units_desc", SqlType::NVarChar(Some(60)), true),
                col("is_auto_cleanup_on", SqlType::Bit, true),
            ]
        );
        assert_eq!(
            rows(&out),
            vec![vec![
                Value::Int(1),
                Value::Int(3),
                Value::String("DAYS".into()),
                Value::Bit(true)
            ]]
        );

        let name = p("@P1", Value::String("[dbo].[Orders]".into()));
        let out = run(
            &mut s,
            "SELECT OBJECT_ID(@P1) AS object_id,
               HAS_PERMS_BY_NAME(@P1, N'OBJECT', N'SELECT') AS can_select,
               HAS_PERMS_BY_NAME(@P1, N'OBJECT', N'VIEW CHANGE TRACKING') AS can_view_change_tracking;",
            std::slice::from_ref(&name),
        );
        assert_eq!(
            columns(&out),
            vec![
                col("object_id", SqlType::Int, true),
                col("can_select", SqlType::Int, true),
                col("can_view_change_tracking", SqlType::Int, true),
            ]
        );
        let r = rows(&out);
        let Value::Int(object_id) = r[0][0] else {
            panic!("object id {:?}", r[0][0])
        };
        assert_eq!((r[0][1].clone(), r[0][2].clone()), (Value::Int(1), Value::Int(1)));

        let id = p("@P1", Value::Int(object_id));
        let out = run(
            &mut s,
            "SELECT ctt.is_track_columns_updated_on, ctt.min_valid_version, ctt.begin_version
        FROM sys.change_tracking_tables AS ctt WHERE ctt.object_id = @P1;",
            std::slice::from_ref(&id),
        );
        assert_eq!(
            columns(&out),
            vec![
                col("is_track_columns_updated_on", SqlType::Bit, false),
                col("min_valid_version", SqlType::BigInt, true),
                col("begin_version", SqlType::BigInt, true),
            ]
        );
        assert_eq!(rows(&out), vec![vec![Value::Bit(true), Value::Int(0), Value::Int(0)]]);

        let out = run(
            &mut s,
            "SELECT c.column_id, c.name, t.name AS type_name, c.max_length, c.precision, c.scale, c.is_nullable
        FROM sys.columns AS c
        JOIN sys.types AS t ON t.user_type_id = c.user_type_id
        WHERE c.object_id = @P1 ORDER BY c.column_id;",
            std::slice::from_ref(&id),
        );
        assert_eq!(
            columns(&out),
            vec![
                col("column_id", SqlType::Int, false),
                col("name", SqlType::NVarChar(Some(128)), true),
                col("type_name", SqlType::NVarChar(Some(128)), false),
                col("max_length", SqlType::SmallInt, false),
                col("precision", SqlType::TinyInt, false),
                col("scale", SqlType::TinyInt, false),
                col("is_nullable", SqlType::Bit, true),
            ]
        );
        let s_ = |x: &str| Value::String(x.into());
        assert_eq!(
            rows(&out),
            vec![
                vec![
                    Value::Int(1),
                    s_("Id"),
                    s_("int"),
                    Value::Int(4),
                    Value::Int(10),
                    Value::Int(0),
                    Value::Bit(false)
                ],
                vec![
                    Value::Int(2),
                    s_("Customer"),
                    s_("nvarchar"),
                    Value::Int(200),
                    Value::Int(0),
                    Value::Int(0),
                    Value::Bit(false)
                ],
                vec![
                    Value::Int(3),
                    s_("Total"),
                    s_("decimal"),
                    Value::Int(9),
                    Value::Int(10),
                    Value::Int(2),
                    Value::Bit(true)
                ],
            ]
        );

        let out = run(
            &mut s,
            "SELECT ic.key_ordinal, c.name
        FROM sys.indexes AS i
        JOIN sys.index_columns AS ic ON ic.object_id = i.object_id AND ic.index_id = i.index_id
        JOIN sys.columns AS c ON c.object_id = ic.object_id AND c.column_id = ic.column_id
        WHERE i.object_id = @P1 AND i.is_primary_key = 1
        ORDER BY ic.key_ordinal;",
            &[id],
        );
        assert_eq!(
            columns(&out),
            vec![
                col("key_ordinal", SqlType::TinyInt, false),
                col("name", SqlType::NVarChar(Some(128)), true)
            ]
        );
        assert_eq!(rows(&out), vec![vec![Value::Int(1), s_("Id")]]);
    }

    #[test]
    fn streaming_queries_run_in_one_snapshot_transaction() {
        let engine = migrated();
        engine
            .execute("Shop", "INSERT INTO dbo.Orders VALUES (1, N'a', 1.50), (2, N'b', 2.00)")
            .expect("v1");
        engine
            .execute("Shop", "UPDATE dbo.Orders SET Total = 3 WHERE Id = 2")
            .expect("v2");
        engine
            .execute("Shop", "DELETE FROM dbo.Orders WHERE Id = 1")
            .expect("v3");
        let mut s = reader(&engine);
        let out = run(
            &mut s,
            "SELECT CHANGE_TRACKING_CURRENT_VERSION() AS current_version;",
            &[],
        );
        assert_eq!(rows(&out), vec![vec![Value::Int(3)]]);

        run(
            &mut s,
            "SET TRANSACTION ISOLATION LEVEL SNAPSHOT; BEGIN TRANSACTION;",
            &[],
        );
        assert!(s.in_transaction());
        run(
            &mut s,
            "SELECT CHANGE_TRACKING_CURRENT_VERSION() AS current_version;",
            &[],
        );
        let probe = "SELECT 0 AS table_index,
       CHANGE_TRACKING_MIN_VALID_VERSION(OBJECT_ID(N'[dbo].[Orders]')) AS min_valid_version,
       CASE WHEN @P2 >= CHANGE_TRACKING_MIN_VALID_VERSION(OBJECT_ID(N'[dbo].[Orders]'))
                 AND EXISTS (SELECT 1 FROM CHANGETABLE(CHANGES [dbo].[Orders], @P2) AS CT
                             WHERE CT.SYS_CHANGE_VERSION <= @P1)
            THEN 1 ELSE 0 END AS has_changes
UNION ALL
SELECT 1,
       CHANGE_TRACKING_MIN_VALID_VERSION(OBJECT_ID(N'[dbo].[Orders]')),
       CASE WHEN @P3 >= CHANGE_TRACKING_MIN_VALID_VERSION(OBJECT_ID(N'[dbo].[Orders]'))
                 AND EXISTS (SELECT 1 FROM CHANGETABLE(CHANGES [dbo].[Orders], @P3) AS CT
                             WHERE CT.SYS_CHANGE_VERSION <= @P1)
            THEN 1 ELSE 0 END;";
        let out = run(
            &mut s,
            probe,
            &[
                p("@P1", Value::Int(3)),
                p("@P2", Value::Int(0)),
                p("@P3", Value::Int(3)),
            ],
        );
        assert_eq!(
            columns(&out),
            vec![
                col("table_index", SqlType::Int, false),
                col("min_valid_version", SqlType::BigInt, true),
                col("has_changes", SqlType::Int, false),
            ]
        );
        assert_eq!(
            rows(&out),
            vec![
                vec![Value::Int(0), Value::Int(0), Value::Int(1)],
                vec![Value::Int(1), Value::Int(0), Value::Int(0)],
            ]
        );

        let out = run(
            &mut s,
            CHANGE_QUERY,
            &[p("@P1", Value::Int(1)), p("@P2", Value::Int(3))],
        );
        assert_eq!(
            columns(&out),
            vec![
                col("SYS_CHANGE_VERSION", SqlType::BigInt, false),
                col("SYS_CHANGE_CREATION_VERSION", SqlType::BigInt, true),
                col("SYS_CHANGE_OPERATION", SqlType::NChar(1), true),
                col("SYS_CHANGE_CONTEXT", SqlType::VarBinary(Some(128)), true),
                col("__changed_3", SqlType::Bit, true),
                col("__key_Id", SqlType::Int, false),
                // The outer join's inner side is nullable whatever the table declares.
                col("Id", SqlType::Int, true),
                col("Customer", SqlType::NVarChar(Some(100)), true),
                col(
                    "Total",
                    SqlType::Decimal {
                        precision: 10,
                        scale: 2
                    },
                    true
                ),
            ]
        );
        let dec = |v: i128| Value::Decimal { value: v, scale: 2 };
        assert_eq!(
            rows(&out),
            vec![
                vec![
                    Value::Int(2),
                    Value::Int(1),
                    Value::String("U".into()),
                    Value::Null,
                    Value::Bit(true),
                    Value::Int(2),
                    Value::Int(2),
                    Value::String("b".into()),
                    dec(300)
                ],
                vec![
                    Value::Int(3),
                    Value::Null,
                    Value::String("D".into()),
                    Value::Null,
                    Value::Bit(true),
                    Value::Int(1),
                    Value::Null,
                    Value::Null,
                    Value::Null
                ],
            ]
        );
        let out = s.execute("COMMIT TRANSACTION;", &[]);
        assert_eq!(out, vec![Outcome::Done { row_count: None }]);
        assert!(!s.in_transaction());
    }

    #[test]
    fn keyset_snapshot_chunks_walk_composite_keys_in_order() {
        let engine = migrated();
        engine
        .execute(
            "Shop",
            "CREATE TABLE [dbo].[T] ([A] int NOT NULL, [B] nvarchar(10) NOT NULL, [X] int NULL, PRIMARY KEY ([A], [B]))",
        )
        .expect("table");
        engine
            .transaction("Shop", |t| {
                for a in 0..10 {
                    for b in ["x", "y", "z"] {
                        t.insert("dbo.T", vec![Value::Int(a), Value::String(b.into()), Value::Int(a)])?;
                    }
                }
                Ok(())
            })
            .expect("rows");
        let mut s = reader(&engine);
        let first = run(
            &mut s,
            "SELECT TOP (@P1) T.[A], T.[B], T.[X] FROM [dbo].[T] AS T ORDER BY T.[A], T.[B];",
            &[p("@P1", Value::Int(4))],
        );
        let r = rows(&first);
        assert_eq!(r.len(), 4);
        assert_eq!(r[3][..2], [Value::Int(1), Value::String("x".into())]);
        let mut seen = r.len();
        let mut last = (r[3][0].clone(), r[3][1].clone());
        loop {
            let out = run(
                &mut s,
                "SELECT TOP (@P1) T.[A], T.[B], T.[X] FROM [dbo].[T] AS T
WHERE (T.[A] > @P2) OR (T.[A] = @P2 AND T.[B] > @P3)
ORDER BY T.[A], T.[B];",
                &[
                    p("@P1", Value::Int(4)),
                    p("@P2", last.0.clone()),
                    p("@P3", last.1.clone()),
                ],
            );
            let r = rows(&out);
            if r.is_empty() {
                break;
            }
            assert!(r.len() <= 4);
            seen += r.len();
            let l = r.last().expect("row");
            last = (l[0].clone(), l[1].clone());
        }
        assert_eq!(seen, 30);
    }

    #[test]
    fn keyset_chunk_on_a_large_table_does_not_scan_it() {
        let engine = migrated();
        engine
            .transaction("Shop", |t| {
                for i in 0..200_000 {
                    t.insert(
                        "dbo.Orders",
                        vec![Value::Int(i), Value::String("c".into()), Value::Null],
                    )?;
                }
                Ok(())
            })
            .expect("rows");
        let mut s = reader(&engine);
        let started = std::time::Instant::now();
        for k in 0..50 {
            let out = run(
            &mut s,
            "SELECT TOP (@P1) T.[Id], T.[Customer], T.[Total] FROM [dbo].[Orders] AS T WHERE (T.[Id] > @P2) ORDER BY T.[Id];",
            &[p("@P1", Value::Int(100)), p("@P2", Value::Int(150_000 + k * 100))],
        );
            assert_eq!(rows(&out).len(), 100);
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }
}
