//! The startup check: everything the sidecar needs from the database, verified before
//! streaming, each failure reported as one line naming the table and the fix. The
//! same pass discovers each table's columns and primary key, which the trackers use.

use std::fmt;

use super::catalog::{declared_type, ColumnInfo, SourceIdentity, TableInfo};
use super::rows::ValueKind;
use super::sql::{self, quote};
use super::{SourceError, SqlClient};
use crate::config::{Config, TableConfig};

/// One thing wrong with the database setup, with the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetupProblem {
    /// The table at fault, or `None` for the database.
    pub table: Option<String>,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for SetupProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.table {
            Some(t) => write!(f, "table {t}: {}", self.message),
            None => write!(f, "database: {}", self.message),
        }
    }
}

/// The outcome of a check: what was found, and what is wrong.
#[derive(Debug, Clone)]
pub struct CheckReport {
    /// Server and database names.
    pub identity: SourceIdentity,
    /// The tables that passed, in config order.
    pub tables: Vec<TableInfo>,
    /// Every problem found; empty when the sidecar can stream.
    pub problems: Vec<SetupProblem>,
}

/// Runs every check. Server errors while checking (lost connection) are `Err`; setup
/// problems are collected in the report so the operator sees all of them at once.
pub async fn check(client: &mut SqlClient, config: &Config) -> Result<CheckReport, SourceError> {
    let row = client
        .query(sql::IDENTITY, &[])
        .await?
        .into_row()
        .await?
        .ok_or_else(|| SourceError::Unexpected("no row from the identity query".into()))?;
    let identity = SourceIdentity {
        server: row.try_get::<&str, _>(0)?.unwrap_or_default().to_string(),
        database: row
            .try_get::<&str, _>(1)?
            .unwrap_or(&config.source.database)
            .to_string(),
        incarnation: super::incarnation(client).await?,
    };
    let mut problems = Vec::new();
    let db_problem = |message: String| SetupProblem { table: None, message };

    let settings = client.query(sql::DATABASE_SETTINGS, &[]).await?.into_row().await?;
    match settings {
        None => problems.push(db_problem(format!(
            "database {} is not visible to the login",
            identity.database
        ))),
        Some(row) => {
            if row.try_get::<u8, _>(0)?.unwrap_or(0) != 1 {
                problems.push(db_problem(format!(
                    "snapshot isolation is not allowed on {} (run migrations/002_allow_snapshot_isolation.sql)",
                    identity.database
                )));
            }
            if row.try_get::<i32, _>(1)?.is_none() {
                problems.push(db_problem(format!(
                    "change tracking is not enabled on database {} (run migrations/001_enable_database_change_tracking.sql)",
                    identity.database
                )));
            }
        }
    }

    let mut tables = Vec::new();
    for t in &config.tables {
        let (info, found) = describe(client, t).await?;
        problems.extend(found.into_iter().map(|message| SetupProblem {
            table: Some(t.name.clone()),
            message,
        }));
        tables.extend(info);
    }
    Ok(CheckReport {
        identity,
        tables,
        problems,
    })
}

/// One configured table as the catalog describes it now, with every problem found (each
/// naming its fix). `None` when it cannot be streamed at all (missing, no primary key).
/// Run at start for every table, and again for one whose schema changed while streaming.
pub async fn describe(
    client: &mut SqlClient,
    t: &TableConfig,
) -> Result<(Option<TableInfo>, Vec<String>), SourceError> {
    let (schema, table) = t.schema_and_table();
    let quoted = format!("{}.{}", quote(schema), quote(table));
    let mut problems = Vec::new();
    let mut problem = |message: String| problems.push(message);
    let row = client
        .query(sql::TABLE_ACCESS, &[&quoted.as_str()])
        .await?
        .into_row()
        .await?
        .ok_or_else(|| SourceError::Unexpected("no row from the table access query".into()))?;
    let Some(object_id) = row.try_get::<i32, _>(0)? else {
        problem("does not exist, or the login cannot see it (check the name; grant access with migrations/004_sidecar_login.sql)".into());
        return Ok((None, problems));
    };
    if row.try_get::<i32, _>(1)?.unwrap_or(0) != 1 {
        problem("the login lacks SELECT (run migrations/004_sidecar_login.sql)".into());
    }
    if row.try_get::<i32, _>(2)?.unwrap_or(0) != 1 {
        problem("the login lacks VIEW CHANGE TRACKING (run migrations/004_sidecar_login.sql)".into());
    }
    let tracking = client
        .query(sql::TABLE_TRACKING, &[&object_id])
        .await?
        .into_row()
        .await?;
    let track_columns_updated = match tracking {
        Some(row) => row.try_get::<bool, _>(0)?.unwrap_or(false),
        None => {
            problem(format!(
                "change tracking is not enabled on the table (run migrations/003_enable_table_change_tracking.sql with -v Table={quoted})"
            ));
            false
        }
    };
    let rows = client
        .query(sql::TABLE_COLUMNS, &[&object_id])
        .await?
        .into_first_result()
        .await?;
    let mut all = Vec::with_capacity(rows.len());
    let mut unsupported = Vec::new();
    for row in &rows {
        let id: i32 = row.try_get(0)?.unwrap_or_default();
        let name = row.try_get::<&str, _>(1)?.unwrap_or_default().to_string();
        let type_name = row.try_get::<&str, _>(2)?.unwrap_or_default().to_string();
        let max_length: i16 = row.try_get(3)?.unwrap_or_default();
        let precision: u8 = row.try_get(4)?.unwrap_or_default();
        let scale: u8 = row.try_get(5)?.unwrap_or_default();
        match ValueKind::from_type_name(&type_name, scale) {
            Some(kind) => all.push(ColumnInfo {
                id,
                quoted: quote(&name),
                sql_type: declared_type(&type_name, max_length, precision, scale),
                name,
                kind,
            }),
            None => unsupported.push((name, type_name)),
        }
    }
    let key_rows = client
        .query(sql::TABLE_PRIMARY_KEY, &[&object_id])
        .await?
        .into_first_result()
        .await?;
    let mut key = Vec::with_capacity(key_rows.len());
    for row in &key_rows {
        let name = row.try_get::<&str, _>(1)?.unwrap_or_default();
        match all.iter().find(|c| c.name.eq_ignore_ascii_case(name)) {
            Some(c) => key.push(c.clone()),
            None => problem(format!(
                "primary key column {name} has a type the sidecar cannot encode"
            )),
        }
    }
    if key_rows.is_empty() {
        problem("has no primary key; Change Tracking needs one (add a PRIMARY KEY constraint)".into());
        return Ok((None, problems));
    }
    let columns = match &t.columns {
        None => {
            for (name, ty) in &unsupported {
                problem(format!(
                    "column {name} has type {ty}, which has no lossless JSON form; list the other columns in tables.columns"
                ));
            }
            all.clone()
        }
        Some(wanted) => {
            let mut out = Vec::with_capacity(wanted.len());
            for w in wanted {
                match all.iter().find(|c| c.name.eq_ignore_ascii_case(w)) {
                    Some(c) => out.push(c.clone()),
                    None if unsupported.iter().any(|(n, _)| n.eq_ignore_ascii_case(w)) => problem(format!(
                        "column {w} has a type with no lossless JSON form; remove it from tables.columns"
                    )),
                    None => problem(format!("column {w} (in tables.columns) does not exist")),
                }
            }
            out.sort_by_key(|c| c.id);
            out
        }
    };
    let modified = client
        .query(sql::TABLE_MODIFIED, &[&object_id])
        .await?
        .into_row()
        .await?
        .and_then(|row| row.try_get::<chrono::NaiveDateTime, _>(0).ok().flatten());
    let info = TableInfo {
        name: t.name.clone(),
        schema: schema.to_string(),
        table: table.to_string(),
        quoted,
        object_id,
        columns,
        key,
        track_columns_updated,
        modified,
    };
    Ok((Some(info), problems))
}
