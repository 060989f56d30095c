//! In-memory SQL engine with SQL Server's Change Tracking semantics, behind the
//! [`Backend`](crate::mssql::types::Backend) trait the TDS wire layer serves.
//!
//! Layers, bottom up: values, types and string collation (`value`, `datatype`,
//! `collation`), persistent state (`catalog`, `storage`, `change_tracking`), T-SQL
//! text to syntax tree (`lexer`, `parser`, `ast`), execution (`expr`, `functions`,
//! `query`, `aggregate`, `sysviews`, `dml`, `ddl`, `security`), and the
//! connection-facing `session` and `server`. Errors are SQL Server's own (`error`).
//! `docs/sql-surface.md` lists the T-SQL it accepts; anything else is refused with
//! SQL Server's error.
//!
//! ```
//! use testkit::mssql::engine::Engine;
//! use testkit::mssql::types::Value;
//!
//! let engine = Engine::new(); // login `sa`, database `master`
//! engine.execute("master", "CREATE DATABASE Shop; \
//!     ALTER DATABASE Shop SET CHANGE_TRACKING = ON (CHANGE_RETENTION = 2 DAYS, AUTO_CLEANUP = ON)")?;
//! engine.execute("Shop", "CREATE TABLE dbo.Orders (Id int PRIMARY KEY, Total money NULL); \
//!     ALTER TABLE dbo.Orders ENABLE CHANGE_TRACKING WITH (TRACK_COLUMNS_UPDATED = ON)")?;
//! // One committed transaction, one change-tracking version, no SQL parsing.
//! engine.transaction("Shop", |txn| {
//!     txn.insert("dbo.Orders", vec![Value::Int(1), Value::Null])?;
//!     txn.update("dbo.Orders", &[Value::Int(1)], &[("Total", Value::Int(5))])?;
//!     Ok(())
//! })?;
//! assert_eq!(engine.current_version("Shop"), Some(1));
//! # Ok::<(), testkit::mssql::types::SqlError>(())
//! ```

mod aggregate;
mod ast;
mod catalog;
mod change_tracking;
mod collation;
mod datatype;
mod ddl;
mod dml;
mod env;
mod error;
mod expr;
mod functions;
mod lexer;
mod parser;
mod query;
mod restore;
mod security;
mod server;
mod session;
mod storage;
mod sysviews;
mod value;

pub use restore::{Backup, Incarnation};
pub use server::{Engine, Txn, DEFAULT_SA_PASSWORD};
pub use session::Session;
