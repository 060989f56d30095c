//! What an executing statement can see: the (possibly snapshot) server state, the
//! session's database, principal and variables. Expressions, queries and security
//! checks all read through it.

use std::collections::HashMap;

use chrono::NaiveDateTime;

use super::catalog::{ci, Database, State};
use super::error;
use super::server::Engine;
use crate::mssql::types::{SqlError, Value};

/// The read-side context of one statement.
pub struct Env<'a> {
    pub state: &'a State,
    /// The session's current database.
    pub database: &'a str,
    pub login: &'a str,
    pub sysadmin: bool,
    /// Parameters and declared variables, keyed lower-case with the `@`.
    pub vars: &'a HashMap<String, Value>,
    pub server_name: &'a str,
    /// Inside a SNAPSHOT transaction (user-table access needs ALLOW_SNAPSHOT_ISOLATION).
    pub snapshot_txn: bool,
    pub now: NaiveDateTime,
    pub spid: i64,
    pub trancount: i64,
    /// The engine, for server-scoped views of other sessions (the DMVs).
    pub engine: &'a Engine,
}

impl Env<'_> {
    /// The current database's state.
    pub fn current_db(&self) -> Result<&Database, SqlError> {
        self.state
            .database(self.database)
            .ok_or_else(|| error::database_not_found(self.database))
    }

    /// A variable's value (Msg 137 when undeclared).
    pub fn var(&self, name: &str) -> Result<Value, SqlError> {
        self.vars
            .get(&ci(name))
            .cloned()
            .ok_or_else(|| error::undeclared_variable(name))
    }
}
