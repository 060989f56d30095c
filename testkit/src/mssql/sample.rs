//! The sample `Shop` database of the demo, the benchmarks and the migrations test,
//! built by running the repository's own `migrations/` (so they are tested on every
//! run), plus a small live workload that exercises inserts, updates and deletes.

use std::collections::HashMap;

use super::engine::Engine;
use super::sqlcmd::{run_script, ScriptError};
use super::types::SqlError;

/// The sample database.
pub const DATABASE: &str = "Shop";
/// The sidecar's least-privilege login in the sample.
pub const LOGIN: &str = "cdc_sidecar";
/// Its password (the one in the shipped `sidecar.toml`).
pub const PASSWORD: &str = "Sidecar-Pass-1";
/// The tracked sample tables.
pub const TABLES: [&str; 3] = ["[dbo].[Customers]", "[dbo].[Orders]", "[sales].[OrderLines]"];

/// The migrations, in the order the README gives.
pub const MIGRATIONS: [(&str, &str); 5] = [
    (
        "sample/001_sample_schema.sql",
        include_str!("../../../migrations/sample/001_sample_schema.sql"),
    ),
    (
        "001_enable_database_change_tracking.sql",
        include_str!("../../../migrations/001_enable_database_change_tracking.sql"),
    ),
    (
        "002_allow_snapshot_isolation.sql",
        include_str!("../../../migrations/002_allow_snapshot_isolation.sql"),
    ),
    (
        "003_enable_table_change_tracking.sql",
        include_str!("../../../migrations/003_enable_table_change_tracking.sql"),
    ),
    (
        "004_sidecar_login.sql",
        include_str!("../../../migrations/004_sidecar_login.sql"),
    ),
];

/// A migration that failed, named.
#[derive(Debug, thiserror::Error)]
#[error("migrations/{file}: {error}")]
pub struct MigrationError {
    pub file: &'static str,
    #[source]
    pub error: ScriptError,
}

/// Creates `Shop` (if missing) and applies every migration; safe to run twice.
pub fn setup(engine: &Engine) -> Result<(), MigrationError> {
    let wrap = |file: &'static str| move |error| MigrationError { file, error };
    let created = engine.execute(
        "master",
        &format!("IF NOT EXISTS (SELECT 1 FROM sys.databases WHERE name = N'{DATABASE}') CREATE DATABASE [{DATABASE}]"),
    );
    created.map_err(|error| MigrationError {
        file: "(create database)",
        error: ScriptError::Sql { batch: 1, error },
    })?;
    for (file, script) in MIGRATIONS {
        match file {
            "003_enable_table_change_tracking.sql" => {
                for table in TABLES {
                    run_script(engine, DATABASE, script, &HashMap::from([("Table", table)])).map_err(wrap(file))?;
                }
            }
            "004_sidecar_login.sql" => {
                for schema in ["dbo", "sales"] {
                    let vars = HashMap::from([("Login", LOGIN), ("Password", PASSWORD), ("Schema", schema)]);
                    run_script(engine, DATABASE, script, &vars).map_err(wrap(file))?;
                }
            }
            _ => run_script(engine, DATABASE, script, &HashMap::new()).map_err(wrap(file))?,
        }
    }
    Ok(())
}

/// Creates an empty `Shop` prepared as the migrations prepare a database — change
/// tracking on (retention 1 day, so tests can expire it by moving the clock a little),
/// snapshot isolation allowed, and the sidecar's login with SELECT and VIEW CHANGE
/// TRACKING on `dbo` — for tests and benchmarks that create their own tables.
pub fn setup_empty(engine: &Engine) -> Result<(), SqlError> {
    engine.execute(
        "master",
        &format!("CREATE DATABASE [{DATABASE}];\nCREATE LOGIN [{LOGIN}] WITH PASSWORD = N'{PASSWORD}';"),
    )?;
    engine.execute(
        DATABASE,
        &format!(
            "ALTER DATABASE CURRENT SET CHANGE_TRACKING = ON (CHANGE_RETENTION = 1 DAYS, AUTO_CLEANUP = ON);\n\
             ALTER DATABASE CURRENT SET ALLOW_SNAPSHOT_ISOLATION ON;\n\
             CREATE USER [{LOGIN}] FOR LOGIN [{LOGIN}];\n\
             GRANT SELECT ON SCHEMA::[dbo] TO [{LOGIN}];\n\
             GRANT VIEW CHANGE TRACKING ON SCHEMA::[dbo] TO [{LOGIN}];"
        ),
    )?;
    Ok(())
}

/// One workload transaction, number `step`: a new customer every 10 steps, a new
/// order with two lines every step, an update of an older order, and every 7 steps the
/// deletion of an old line.
pub fn workload_step(engine: &Engine, step: u64) -> Result<(), SqlError> {
    let order = step as i64 + 1;
    let customer = (step / 10) as i64 + 1;
    let mut sql = String::from("BEGIN TRANSACTION;\n");
    if step.is_multiple_of(10) {
        sql.push_str(&format!(
            "INSERT INTO [dbo].[Customers] ([Id], [Name], [Email], [CreatedAt], [ExternalId]) VALUES \
             ({customer}, N'Customer {customer}', 'c{customer}@example.com', '2026-11-24 10:00:00.123', '{customer:08X}-0000-4000-8000-00C04FC964FF');\n"
        ));
    }
    sql.push_str(&format!(
        "INSERT INTO [dbo].[Orders] ([Id], [CustomerId], [Total], [Currency], [PlacedAt], [Note], [Paid]) VALUES \
         ({order}, {customer}, {total}.{cents:02}, 'EUR', '2026-11-24 10:00:00.1234567 +01:00', N'order {order} ✓', 0);\n\
         INSERT INTO [sales].[OrderLines] ([OrderId], [LineNo], [Sku], [Qty], [Price], [Weight], [Discount], [ShipDate], [ShipTime], [Payload], [LegacyTs], [Flags]) VALUES \
         ({order}, 1, 'SKU-{sku}', 2, 19.9900, 1.5, 0.1, '2026-11-25', '08:30:00.250', 0x0102, '2026-11-24 10:00:00.997', 1), \
         ({order}, 2, 'SKU-{sku2}', 1, 5.0000, NULL, NULL, NULL, NULL, NULL, NULL, 0);\n",
        total = 10 + step % 90,
        cents = step % 100,
        sku = step % 50,
        sku2 = (step + 7) % 50,
    ));
    if order > 3 {
        sql.push_str(&format!(
            "UPDATE [dbo].[Orders] SET [Paid] = 1, [Note] = N'paid' WHERE [Id] = {};\n",
            order - 3
        ));
    }
    if step % 7 == 6 && order > 5 {
        sql.push_str(&format!(
            "DELETE FROM [sales].[OrderLines] WHERE [OrderId] = {} AND [LineNo] = 2;\n",
            order - 5
        ));
    }
    sql.push_str("COMMIT TRANSACTION;");
    engine.execute(DATABASE, &sql).map(|_| ())
}
