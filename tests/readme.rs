//! The README's configuration reference is checked against the code, so it cannot go
//! stale: every field the config accepts appears once with its environment variable and
//! default, and nothing else does.

use std::collections::BTreeMap;

use cdc_sidecar::config::Config;
use serde_json::Value;

/// Every field path of the config, with its default (when it has a scalar one).
fn fields_from_code() -> BTreeMap<String, Option<String>> {
    // A config with every optional field present, so serialization lists them all.
    let toml = r#"
[source]
host = "h"
database = "d"
user = "u"
password = "p"
[[tables]]
name = "dbo.T"
columns = ["a"]
topic = "t"
channel = "c"
"#;
    let config = Config::from_toml_str(toml).unwrap();
    let value = serde_json::to_value(&config).unwrap();
    let mut out = BTreeMap::new();
    flatten("", &value, &mut out);
    // Fields set above only to make them appear have no default.
    for required in [
        "source.host",
        "source.database",
        "source.user",
        "source.password",
        "tables[].name",
    ] {
        out.insert(required.to_string(), None);
    }
    for no_default in ["tables[].columns", "tables[].topic", "tables[].channel"] {
        out.insert(no_default.to_string(), None);
    }
    out
}

fn flatten(prefix: &str, value: &Value, out: &mut BTreeMap<String, Option<String>>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                if v.is_object() {
                    flatten(&path, v, out);
                } else if let Value::Array(items) = v {
                    if let Some(first @ Value::Object(_)) = items.first() {
                        flatten(&format!("{path}[]"), first, out);
                    } else {
                        out.insert(path, None);
                    }
                } else {
                    let default = match v {
                        Value::Null => None,
                        Value::String(s) => Some(s.clone()),
                        other => Some(other.to_string()),
                    };
                    out.insert(path, default);
                }
            }
        }
        _ => unreachable!("config serializes to an object"),
    }
}

/// `(field, default cell, env cell)` rows of the README's reference table.
fn rows_from_readme() -> Vec<(String, String, String)> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme
        .find("## Configuration reference")
        .expect("README has a Configuration reference section");
    let section = &readme[start + 1..];
    let section = &section[..section.find("\n## ").unwrap_or(section.len())];
    let clean = |s: &str| s.trim().trim_matches('`').trim_matches('"').to_string();
    section
        .lines()
        .filter(|l| l.starts_with('|'))
        .map(|l| l.split('|').map(str::trim).collect::<Vec<_>>())
        .filter(|cells| cells.len() >= 5 && cells[1].starts_with('`'))
        .map(|cells| (clean(cells[1]), clean(cells[3]), clean(cells[4])))
        .collect()
}

#[test]
fn readme_lists_every_config_field_once_with_env_and_default() {
    let code = fields_from_code();
    let rows = rows_from_readme();
    let mut seen = BTreeMap::new();
    for (field, default, env) in &rows {
        assert!(seen.insert(field.clone(), ()).is_none(), "README lists {field} twice");
        let Some(code_default) = code.get(field) else {
            panic!("README lists {field}, which the config does not have");
        };
        let expected_env = if field.starts_with("tables[]") {
            "—".to_string()
        } else {
            format!("CDC_SIDECAR_{}", field.replace('.', "__").to_uppercase())
        };
        assert_eq!(env, &expected_env, "env name of {field}");
        if let Some(d) = code_default {
            assert_eq!(default, d, "default of {field}");
        }
    }
    let missing: Vec<&String> = code.keys().filter(|k| !seen.contains_key(*k)).collect();
    assert!(missing.is_empty(), "README's configuration reference lacks {missing:?}");
}
