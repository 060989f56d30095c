//! In-memory SQL engine with SQL Server's Change Tracking semantics, behind the
//! [`Backend`](crate::mssql::types::Backend) trait the TDS wire layer serves.
//!
//! Layers, bottom up: values and types (`value`, `datatype`), persistent state
//! (`catalog`, `storage`, `change_tracking`), T-SQL text to syntax tree (`lexer`,
//! `parser`, `ast`), execution (`expr`, `functions`, `query`, `sysviews`, `dml`,
//! `ddl`, `security`), and the connection-facing `session` and `server`. Errors are
//! SQL Server's own (`error`). `docs/sql-surface.md` lists the T-SQL it accepts.

mod ast;
mod catalog;
mod change_tracking;
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
mod security;
mod server;
mod session;
mod storage;
mod sysviews;
mod value;

pub use server::{Engine, Txn, DEFAULT_SA_PASSWORD};
pub use session::Session;
