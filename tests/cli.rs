//! The binary's edges: exit codes and messages for bad configuration and a dead
//! health endpoint.

use std::process::Command;

fn sidecar() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cdc-sidecar"));
    // The developer's own environment must not leak into these checks.
    for (k, _) in std::env::vars() {
        if k.starts_with("CDC_SIDECAR_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

#[test]
fn bad_configuration_exits_2_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sidecar.toml");
    std::fs::write(
        &path,
        "[source]\nhost = \"db\"\ndatabase = \"Shop\"\nuser = \"u\"\npassword = \"p\"\n[poll]\nmin_interval_ms = 0\n[[tables]]\nname = \"dbo.T\"\n",
    )
    .unwrap();
    let out = sidecar().args(["check", "--config"]).arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("poll.min_interval_ms"), "{stderr}");
}

#[test]
fn missing_config_file_exits_2() {
    let out = sidecar()
        .args(["check", "--config", "/nonexistent/sidecar.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn healthcheck_fails_when_nothing_listens() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sidecar.toml");
    let out = sidecar()
        .args(["healthcheck", "--addr", &format!("127.0.0.1:{port}"), "--config"])
        .arg(path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}
