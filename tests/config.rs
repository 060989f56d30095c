//! The shipped `sidecar.toml` parses, environment overrides and secret files work,
//! secrets never print, and bad values are refused naming the field.

use cdc_sidecar::config::{Compression, Config, ConfigError, Encryption};

const MINIMAL: &str = r#"
[source]
host = "db"
database = "Shop"
user = "cdc"
password = "s3cret-value"

[[tables]]
name = "dbo.Orders"
"#;

fn invalid_field(toml: &str) -> String {
    match Config::from_toml_str(toml) {
        Err(ConfigError::Invalid { field, .. }) => field,
        other => panic!("expected an invalid-field error, got {other:?}"),
    }
}

#[test]
fn shipped_sidecar_toml_parses_and_validates() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sidecar.toml");
    let config = Config::load(Some(&path)).expect("sidecar.toml must load");
    assert_eq!(config.source.database, "Shop");
    assert!(config.tables.len() >= 2);
    assert!(config.sinks.pulsar.enabled && config.sinks.redis_pubsub.enabled);
}

#[test]
fn defaults_match_the_documented_polling() {
    let c = Config::from_toml_str(MINIMAL).unwrap();
    assert_eq!(c.poll.min_interval_ms, 50);
    assert_eq!(c.poll.max_interval_ms, 5000);
    assert_eq!(c.poll.multiplier, 2.0);
    assert_eq!(c.source.port, 1433);
    assert_eq!(c.source.encryption, Encryption::Required);
    assert_eq!(c.sinks.pulsar.compression, Compression::Lz4);
}

#[test]
fn secrets_never_appear_in_debug_output() {
    let c = Config::from_toml_str(MINIMAL).unwrap();
    let dump = format!("{c:?}");
    assert!(!dump.contains("s3cret-value"), "{dump}");
    assert!(dump.contains("***"));
}

#[test]
fn password_file_overrides_the_inline_password() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pw");
    std::fs::write(&file, "from-file\n").unwrap();
    let toml = MINIMAL.replace(
        "password = \"s3cret-value\"",
        &format!("password_file = {:?}", file.display().to_string()),
    );
    let c = Config::from_toml_str(&toml).unwrap();
    assert_eq!(c.source.password.unwrap().expose(), "from-file");
}

#[test]
fn missing_secret_file_names_the_field() {
    let toml = MINIMAL.replace("password = \"s3cret-value\"", "password_file = \"/nonexistent/pw\"");
    match Config::from_toml_str(&toml) {
        Err(ConfigError::SecretFile { field, .. }) => assert_eq!(field, "source.password_file"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn unknown_fields_are_refused_naming_them() {
    let err = Config::from_toml_str(&format!("{MINIMAL}\n[poll]\nmin_intervall_ms = 5\n")).unwrap_err();
    assert!(err.to_string().contains("min_intervall_ms"), "{err}");
}

#[test]
fn invalid_values_name_their_field() {
    assert_eq!(
        invalid_field(&MINIMAL.replace("dbo.Orders", "Orders")),
        "tables[0].name"
    );
    assert_eq!(
        invalid_field(&format!("{MINIMAL}\n[poll]\nmax_interval_ms = 10\n")),
        "poll.max_interval_ms"
    );
    assert_eq!(
        invalid_field(&format!("{MINIMAL}\n[poll]\nmultiplier = 0.5\n")),
        "poll.multiplier"
    );
    assert_eq!(
        invalid_field(&format!(
            "{MINIMAL}\n[sinks.pulsar]\nenabled = false\n[sinks.redis_pubsub]\nenabled = false\n"
        )),
        "sinks"
    );
    assert_eq!(
        invalid_field(&format!("{MINIMAL}\n[sinks.pulsar]\ntopic = \"cdc.{{tabel}}\"\n")),
        "sinks.pulsar.topic"
    );
    assert_eq!(
        invalid_field(&format!("{MINIMAL}\n[[tables]]\nname = \"dbo.orders\"\n")),
        "tables[1].name"
    );
    assert_eq!(
        invalid_field(&MINIMAL.replace("password = \"s3cret-value\"", "")),
        "source.password"
    );
    assert_eq!(
        invalid_field(&format!("{MINIMAL}\n[sinks.pulsar]\nmax_message_bytes = 65536\n")),
        "sinks.pulsar.max_message_bytes"
    );
}

#[test]
fn the_pulsar_message_limit_defaults_to_the_brokers() {
    let c = Config::from_toml_str(MINIMAL).unwrap();
    assert_eq!(c.sinks.pulsar.max_message_bytes, 5_242_880);
    assert!(Config::from_toml_str(&format!("{MINIMAL}\n[sinks.pulsar]\nmax_message_bytes = 65537\n")).is_ok());
}

#[test]
#[allow(clippy::result_large_err)] // figment::Jail's closure signature, not ours
fn environment_overrides_the_file_with_double_underscore_nesting() {
    // figment's Jail isolates the process environment for this closure.
    figment::Jail::expect_with(|jail| {
        jail.create_file("sidecar.toml", MINIMAL)?;
        jail.set_env("CDC_SIDECAR_SOURCE__PORT", "14330");
        jail.set_env("CDC_SIDECAR_POLL__MAX_INTERVAL_MS", "1000");
        jail.set_env("CDC_SIDECAR_SINKS__PULSAR__COMPRESSION", "zstd");
        // Same prefix, not a field: the binary's --config variable and the test URLs.
        jail.set_env("CDC_SIDECAR_CONFIG", "sidecar.toml");
        jail.set_env("CDC_SIDECAR_MSSQL_URL", "server=tcp:x");
        let c = Config::load(Some(std::path::Path::new("sidecar.toml"))).map_err(|e| e.to_string())?;
        assert_eq!(c.source.port, 14330);
        assert_eq!(c.poll.max_interval_ms, 1000);
        assert_eq!(c.sinks.pulsar.compression, Compression::Zstd);
        Ok(())
    });
}
