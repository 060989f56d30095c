//! Runs sqlcmd-style scripts (the repo's `migrations/`) against the engine: batches
//! separated by `GO` lines, `$(Var)` scripting variables substituted first. An
//! undefined variable is refused as sqlcmd refuses it.

use std::collections::HashMap;

use super::engine::Engine;
use super::types::SqlError;

/// Why a script failed.
#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    /// sqlcmd's own message for an undefined variable.
    #[error("'{0}' scripting variable not defined.")]
    UndefinedVariable(String),
    /// A batch failed; `batch` is its 1-based index.
    #[error("batch {batch}: {error}")]
    Sql { batch: usize, error: SqlError },
}

/// Substitutes `$(Name)` variables.
pub fn substitute(script: &str, vars: &HashMap<&str, &str>) -> Result<String, ScriptError> {
    let mut out = String::with_capacity(script.len());
    let mut rest = script;
    while let Some(start) = rest.find("$(") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find(')') else {
            out.push_str(&rest[start..]);
            return Ok(out);
        };
        let name = &after[..end];
        let value = vars
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
            .ok_or_else(|| ScriptError::UndefinedVariable(name.to_string()))?;
        out.push_str(value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Splits a script into batches at lines consisting of `GO` alone.
pub fn batches(script: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in script.lines() {
        if line.trim().eq_ignore_ascii_case("go") {
            if !current.trim().is_empty() {
                out.push(std::mem::take(&mut current));
            }
            current.clear();
        } else {
            current.push_str(line);
            current.push('\n');
        }
    }
    if !current.trim().is_empty() {
        out.push(current);
    }
    out
}

/// Runs `script` in `database` as `sa`, batch by batch, stopping at the first error.
pub fn run_script(
    engine: &Engine,
    database: &str,
    script: &str,
    vars: &HashMap<&str, &str>,
) -> Result<(), ScriptError> {
    let script = substitute(script, vars)?;
    for (i, batch) in batches(&script).iter().enumerate() {
        engine
            .execute(database, batch)
            .map_err(|error| ScriptError::Sql { batch: i + 1, error })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_on_go_lines_only_and_substitutes_variables() {
        let vars = HashMap::from([("Table", "[dbo].[T]")]);
        let script = substitute("SELECT 1\nGO\n-- GOAL\nALTER TABLE $(Table) X\n go \n", &vars).unwrap();
        assert_eq!(batches(&script), ["SELECT 1\n", "-- GOAL\nALTER TABLE [dbo].[T] X\n"]);
        assert!(matches!(substitute("$(Nope)", &vars), Err(ScriptError::UndefinedVariable(v)) if v == "Nope"));
    }
}
