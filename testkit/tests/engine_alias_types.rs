//! Alias (user-defined) data types, through the real tiberius client: `CREATE TYPE
//! [schema.]name FROM base_type [NULL | NOT NULL]` ("CREATE TYPE (Transact-SQL)"),
//! alias-typed columns in CREATE TABLE, and what `sys.types` / `sys.columns` report
//! for them ("sys.types (Transact-SQL)": user_type_id is unique in the database and
//! equals system_type_id for system types only; "sys.columns (Transact-SQL)":
//! system_type_id is the column's system type, user_type_id the type "as defined by
//! the user", to be joined to sys.types for its name). `sysname` is the built-in
//! alias: system_type_id 231 (nvarchar), user_type_id 256, NOT NULL.

mod engine_support;
mod engine_tds_support;

use engine_support::shop;
use engine_tds_support::*;
use tiberius::numeric::Numeric;

const TYPES: &str = "CREATE TYPE [dbo].[Sku] FROM varchar(12) NOT NULL;
CREATE TYPE dbo.Amount FROM decimal(10, 2) NULL;
CREATE TYPE Qty FROM numeric(5);";

const ITEMS: &str = "CREATE TABLE dbo.Items (
    Sku dbo.Sku PRIMARY KEY,
    Name sysname,
    Price [dbo].[Amount],
    Note Sku NULL,
    Stock Qty,
    PlainSku varchar(12) NULL,
    PlainPrice decimal(10, 2) NULL
);";

/// The sidecar's column query, joining on the system type: base type names.
const COLUMNS_BY_SYSTEM_TYPE: &str = "SELECT c.column_id, c.name, t.name AS type_name, c.max_length, c.precision, c.scale, c.is_nullable FROM sys.columns AS c JOIN sys.types AS t ON t.user_type_id = c.system_type_id WHERE c.object_id = @P1 ORDER BY c.column_id";

/// The query joining on the declared type: alias names.
const COLUMNS_BY_USER_TYPE: &str = "SELECT c.column_id, c.name, t.name AS type_name, c.max_length, c.precision, c.scale, c.is_nullable FROM sys.columns AS c JOIN sys.types AS t ON t.user_type_id = c.user_type_id WHERE c.object_id = @P1 ORDER BY c.column_id";

/// `Shop` with the alias types and `dbo.Items`, and an `sa` client on it.
async fn items() -> (Standin, TdsClient) {
    let standin = Standin::start(shop()).await;
    let mut client = standin.sa("Shop").await;
    rows(&mut client, TYPES).await;
    rows(&mut client, ITEMS).await;
    (standin, client)
}

async fn items_object_id(client: &mut TdsClient) -> i32 {
    let r = rows(client, "SELECT OBJECT_ID(N'[dbo].[Items]')").await;
    r[0].get::<i32, _>(0).expect("dbo.Items exists")
}

/// (column_id, name, type_name, max_length, precision, scale, is_nullable).
type ColumnRow = (i64, String, String, i64, i64, i64, bool);

async fn column_rows(client: &mut TdsClient, sql: &str) -> Vec<ColumnRow> {
    let id = items_object_id(client).await;
    rpc(client, sql, &[&id])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|r| {
            (
                int(r, 0).expect("column_id"),
                text(r, 1).expect("name"),
                text(r, 2).expect("type_name"),
                int(r, 3).expect("max_length"),
                int(r, 4).expect("precision"),
                int(r, 5).expect("scale"),
                int(r, 6).expect("is_nullable") == 1,
            )
        })
        .collect()
}

fn col(id: i64, name: &str, ty: &str, len: i64, precision: i64, scale: i64, nullable: bool) -> ColumnRow {
    (id, name.into(), ty.into(), len, precision, scale, nullable)
}

#[tokio::test]
async fn alias_type_column_reports_alias_user_type_and_base_system_type() {
    let (_standin, mut client) = items().await;

    // sys.types: the aliases have their own user_type_id (> 256), the base's
    // system_type_id, max_length / precision / scale and is_user_defined = 1.
    let types = rows(
        &mut client,
        "SELECT name, system_type_id, user_type_id, schema_id, max_length, precision, scale, collation_name, is_nullable, is_user_defined
         FROM sys.types WHERE name IN (N'Sku', N'Amount', N'Qty', N'sysname', N'varchar') ORDER BY user_type_id",
    )
    .await;
    let types: Vec<_> = types
        .iter()
        .map(|r| {
            (
                text(r, 0).unwrap(),
                int(r, 1).unwrap(),
                int(r, 2).unwrap(),
                int(r, 3).unwrap(),
                int(r, 4).unwrap(),
                int(r, 5).unwrap(),
                int(r, 6).unwrap(),
                text(r, 7),
                int(r, 8).unwrap() == 1,
                int(r, 9).unwrap() == 1,
            )
        })
        .collect();
    let collation = Some("SQL_Latin1_General_CP1_CI_AS".to_string());
    assert_eq!(
        types,
        vec![
            (
                "varchar".into(),
                167,
                167,
                4,
                8000,
                0,
                0,
                collation.clone(),
                true,
                false
            ),
            (
                "sysname".into(),
                231,
                256,
                4,
                256,
                0,
                0,
                collation.clone(),
                false,
                false
            ),
            ("Sku".into(), 167, 257, 1, 12, 0, 0, collation, false, true),
            ("Amount".into(), 106, 258, 1, 9, 10, 2, None, true, true),
            ("Qty".into(), 108, 259, 1, 5, 5, 0, None, true, true),
        ]
    );

    // sys.columns: system_type_id is the base's, user_type_id the declared type's.
    let id = items_object_id(&mut client).await;
    let columns = rpc(
        &mut client,
        "SELECT name, system_type_id, user_type_id, max_length, is_nullable FROM sys.columns WHERE object_id = @P1 ORDER BY column_id",
        &[&id],
    )
    .await
    .expect("sys.columns");
    let columns: Vec<_> = columns
        .iter()
        .map(|r| {
            (
                text(r, 0).unwrap(),
                int(r, 1).unwrap(),
                int(r, 2).unwrap(),
                int(r, 3).unwrap(),
                int(r, 4).unwrap() == 1,
            )
        })
        .collect();
    assert_eq!(
        columns,
        vec![
            ("Sku".into(), 167, 257, 12, false),
            // sysname is NOT NULL, and so is a column declared with it unless it says NULL.
            ("Name".into(), 231, 256, 256, false),
            ("Price".into(), 106, 258, 9, true),
            // NULL in CREATE TABLE overrides the alias type's NOT NULL.
            ("Note".into(), 167, 257, 12, true),
            ("Stock".into(), 108, 259, 5, true),
            ("PlainSku".into(), 167, 167, 12, true),
            ("PlainPrice".into(), 106, 106, 9, true),
        ]
    );
}

#[tokio::test]
async fn join_on_user_type_id_yields_alias_name() {
    let (_standin, mut client) = items().await;
    assert_eq!(
        column_rows(&mut client, COLUMNS_BY_USER_TYPE).await,
        vec![
            col(1, "Sku", "Sku", 12, 0, 0, false),
            col(2, "Name", "sysname", 256, 0, 0, false),
            col(3, "Price", "Amount", 9, 10, 2, true),
            col(4, "Note", "Sku", 12, 0, 0, true),
            col(5, "Stock", "Qty", 5, 5, 0, true),
            col(6, "PlainSku", "varchar", 12, 0, 0, true),
            col(7, "PlainPrice", "decimal", 9, 10, 2, true),
        ]
    );
}

#[tokio::test]
async fn join_on_system_type_id_yields_base_name() {
    let (_standin, mut client) = items().await;
    assert_eq!(
        column_rows(&mut client, COLUMNS_BY_SYSTEM_TYPE).await,
        vec![
            col(1, "Sku", "varchar", 12, 0, 0, false),
            col(2, "Name", "nvarchar", 256, 0, 0, false),
            col(3, "Price", "decimal", 9, 10, 2, true),
            col(4, "Note", "varchar", 12, 0, 0, true),
            col(5, "Stock", "numeric", 5, 5, 0, true),
            col(6, "PlainSku", "varchar", 12, 0, 0, true),
            col(7, "PlainPrice", "decimal", 9, 10, 2, true),
        ]
    );
}

#[tokio::test]
async fn alias_type_values_round_trip_as_base_type() {
    let (_standin, mut client) = items().await;
    rows(
        &mut client,
        "INSERT INTO dbo.Items (Sku, Name, Price, Note, Stock, PlainSku, PlainPrice)
         VALUES ('A-1', N'first', 12.50, NULL, 7, 'A-1', 12.50), ('B-2', N'second', NULL, 'n', NULL, 'B-2', NULL)",
    )
    .await;

    // Through sp_executesql, the key bound as a parameter.
    let found = rpc(
        &mut client,
        "SELECT Sku, Name, Price, Note, Stock, PlainSku, PlainPrice FROM dbo.Items WHERE Sku = @P1",
        &[&"A-1"],
    )
    .await
    .expect("select by alias-typed key");
    assert_eq!(found.len(), 1);
    let row = &found[0];
    assert_eq!(row.get::<&str, _>(0), Some("A-1"));
    assert_eq!(row.get::<&str, _>(1), Some("first"));
    assert_eq!(row.get::<Numeric, _>(2), Some(Numeric::new_with_scale(1250, 2)));
    assert_eq!(row.get::<&str, _>(3), None);
    assert_eq!(row.get::<Numeric, _>(4), Some(Numeric::new_with_scale(7, 0)));

    // On the wire an alias-typed column is its base type: same TDS type as the
    // plainly declared twin.
    let columns = row.columns();
    assert_eq!(columns[0].column_type(), columns[5].column_type());
    assert_eq!(columns[2].column_type(), columns[6].column_type());

    // The base type's rules apply: varchar(12) truncation (2628), NOT NULL (515).
    let e = code(
        batch(
            &mut client,
            "INSERT INTO dbo.Items (Sku, Name) VALUES ('ABCDEFGHIJKLM', N'x')",
        )
        .await,
    );
    assert_eq!(e, 2628);
    let e = code(batch(&mut client, "INSERT INTO dbo.Items (Sku, Name) VALUES ('C-3', NULL)").await);
    assert_eq!(e, 515);
}

#[tokio::test]
async fn create_type_twice_is_error_219() {
    let (_standin, mut client) = items().await;
    let e = batch(&mut client, "CREATE TYPE [dbo].[Sku] FROM int").await;
    match e {
        Err(tiberius::error::Error::Server(e)) => {
            assert_eq!(e.code(), 219);
            assert_eq!(
                e.message(),
                "The type 'dbo.Sku' already exists, or you do not have permission to create it."
            );
        }
        other => panic!("expected Msg 219, got {other:?}"),
    }
    // Unqualified, the name lands in dbo too.
    assert_eq!(code(batch(&mut client, "CREATE TYPE Amount FROM int").await), 219);
    // Another schema has its own namespace.
    rows(
        &mut client,
        "EXEC (N'CREATE SCHEMA sales'); CREATE TYPE sales.Sku FROM int",
    )
    .await;
}

#[tokio::test]
async fn alias_type_length_in_create_table_is_error_2716() {
    let (_standin, mut client) = items().await;
    let e = batch(&mut client, "CREATE TABLE dbo.T (Id int PRIMARY KEY, S dbo.Sku(20))").await;
    match e {
        Err(tiberius::error::Error::Server(e)) => {
            assert_eq!(e.code(), 2716);
            assert_eq!(
                e.message(),
                "Column, parameter, or variable #2: Cannot specify a column width on data type dbo.Sku."
            );
        }
        other => panic!("expected Msg 2716, got {other:?}"),
    }
}

#[tokio::test]
async fn unknown_column_type_is_error_2715_for_its_column() {
    let (_standin, mut client) = items().await;
    let e = batch(
        &mut client,
        "CREATE TABLE dbo.T (Id int PRIMARY KEY, A int, B dbo.Nope)",
    )
    .await;
    match e {
        Err(tiberius::error::Error::Server(e)) => {
            assert_eq!(e.code(), 2715);
            assert_eq!(
                e.message(),
                "Column, parameter, or variable #3: Cannot find data type dbo.Nope."
            );
        }
        other => panic!("expected Msg 2715, got {other:?}"),
    }
}

#[tokio::test]
async fn create_type_from_anything_but_a_system_type_is_error_222() {
    let (_standin, mut client) = items().await;
    for base in ["dbo.Sku", "sysname", "nope"] {
        let e = code(batch(&mut client, &format!("CREATE TYPE dbo.Other FROM {base}")).await);
        assert_eq!(e, 222, "FROM {base}");
    }
    // A missing schema is Msg 2760, as for CREATE TABLE.
    assert_eq!(code(batch(&mut client, "CREATE TYPE nope.Other FROM int").await), 2760);
}
