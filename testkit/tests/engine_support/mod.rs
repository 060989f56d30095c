//! Shared helpers for the engine tests: a `Shop` database with change tracking and
//! snapshot isolation on, and shortcuts to read result sets.

#![allow(dead_code)]

use testkit::mssql::engine::{Engine, Session};
use testkit::mssql::types::{Backend, BackendSession, Column, Outcome, Param, SqlError, Value};

/// An engine with database `Shop`, CT on (2 days), snapshot isolation allowed, and
/// `dbo.Orders(Id int PK, Customer nvarchar(100) NOT NULL, Total decimal(10,2) NULL)`
/// tracked with TRACK_COLUMNS_UPDATED = ON.
pub fn shop() -> Engine {
    let engine = Engine::new();
    engine
        .execute(
            "master",
            "CREATE DATABASE Shop;
             ALTER DATABASE Shop SET CHANGE_TRACKING = ON (CHANGE_RETENTION = 2 DAYS, AUTO_CLEANUP = ON);
             ALTER DATABASE Shop SET ALLOW_SNAPSHOT_ISOLATION ON;",
        )
        .expect("create Shop");
    engine
        .execute(
            "Shop",
            "CREATE TABLE dbo.Orders (Id int NOT NULL PRIMARY KEY, Customer nvarchar(100) NOT NULL, Total decimal(10,2) NULL);
             ALTER TABLE dbo.Orders ENABLE CHANGE_TRACKING WITH (TRACK_COLUMNS_UPDATED = ON);",
        )
        .expect("create Orders");
    engine
}

/// The rows of the last result set of a batch.
pub fn rows(outcomes: &[Outcome]) -> Vec<Vec<Value>> {
    outcomes
        .iter()
        .rev()
        .find_map(|o| match o {
            Outcome::Rows { rows, .. } => Some(rows.clone()),
            _ => None,
        })
        .expect("a result set")
}

/// The columns of the last result set of a batch.
pub fn columns(outcomes: &[Outcome]) -> Vec<Column> {
    outcomes
        .iter()
        .rev()
        .find_map(|o| match o {
            Outcome::Rows { columns, .. } => Some(columns.clone()),
            _ => None,
        })
        .expect("a result set")
}

/// Runs a query as `sa` and returns its rows.
pub fn query(engine: &Engine, db: &str, sql: &str) -> Vec<Vec<Value>> {
    rows(&engine.execute(db, sql).expect("query"))
}

/// The single value of a one-row, one-column query.
pub fn scalar(engine: &Engine, db: &str, sql: &str) -> Value {
    let r = query(engine, db, sql);
    assert_eq!(r.len(), 1, "one row expected from {sql}");
    r[0][0].clone()
}

/// The first error of a batch run through a session.
pub fn error_of(session: &mut Session, sql: &str, params: &[Param]) -> SqlError {
    session
        .execute(sql, params)
        .into_iter()
        .find_map(|o| match o {
            Outcome::Error(e) => Some(e),
            _ => None,
        })
        .unwrap_or_else(|| panic!("expected an error from {sql}"))
}

/// Runs a batch through a session and fails on any error outcome.
pub fn run(session: &mut Session, sql: &str, params: &[Param]) -> Vec<Outcome> {
    let out = session.execute(sql, params);
    for o in &out {
        if let Outcome::Error(e) = o {
            panic!("{sql}: {e}");
        }
    }
    out
}

/// A parameter as tiberius names them.
pub fn p(name: &str, value: Value) -> Param {
    Param {
        name: name.into(),
        value,
    }
}

/// `(SYS_CHANGE_VERSION, SYS_CHANGE_CREATION_VERSION, SYS_CHANGE_OPERATION, Id)` of
/// `CHANGETABLE(CHANGES dbo.Orders, since)`, ordered by version and key.
pub fn changes(engine: &Engine, since: Option<i64>) -> Vec<(i64, Option<i64>, String, i64)> {
    let since = since.map_or("NULL".to_string(), |v| v.to_string());
    query(
        engine,
        "Shop",
        &format!(
            "SELECT CT.SYS_CHANGE_VERSION, CT.SYS_CHANGE_CREATION_VERSION, CT.SYS_CHANGE_OPERATION, CT.Id
             FROM CHANGETABLE(CHANGES dbo.Orders, {since}) AS CT ORDER BY CT.SYS_CHANGE_VERSION, CT.Id"
        ),
    )
    .into_iter()
    .map(|r| {
        let int = |v: &Value| match v {
            Value::Int(i) => Some(*i),
            _ => None,
        };
        let op = match &r[2] {
            Value::String(s) => s.clone(),
            other => panic!("operation {other:?}"),
        };
        (int(&r[0]).expect("version"), int(&r[1]), op, int(&r[3]).expect("id"))
    })
    .collect()
}

/// Logs in through the Backend trait.
pub fn login(engine: &Engine, user: &str, password: &str, db: Option<&str>) -> Result<Session, SqlError> {
    engine.login(user, password, db)
}

/// A table's change query for `dbo.Orders` (Id, Customer, Total) with one in-mask flag
/// column (the sidecar packs several flags into one int; one flag is the same evaluation):
/// checkpoint `@P1`, upper bound `@P2`.
#[allow(dead_code)] // not every test binary that includes this module uses it
pub const CHANGE_QUERY: &str = "SELECT CT.SYS_CHANGE_VERSION, CT.SYS_CHANGE_CREATION_VERSION, CT.SYS_CHANGE_OPERATION,
       CT.SYS_CHANGE_CONTEXT,
       CHANGE_TRACKING_IS_COLUMN_IN_MASK(3, CT.SYS_CHANGE_COLUMNS) AS [__changed_3],
       CT.[Id] AS [__key_Id],
       T.[Id], T.[Customer], T.[Total]
FROM CHANGETABLE(CHANGES [dbo].[Orders], @P1) AS CT
LEFT OUTER JOIN [dbo].[Orders] AS T ON T.[Id] = CT.[Id]
WHERE CT.SYS_CHANGE_VERSION <= @P2
ORDER BY CT.SYS_CHANGE_VERSION, CT.[Id];";
