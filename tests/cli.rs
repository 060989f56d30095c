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

fn config_with_redis(dir: &std::path::Path, redis_url: &str) -> std::path::PathBuf {
    let path = dir.join("sidecar.toml");
    std::fs::write(
        &path,
        format!(
            "[source]\nhost = \"db\"\ndatabase = \"Shop\"\nuser = \"u\"\npassword = \"p\"\n[[tables]]\nname = \"dbo.Orders\"\n\
             [checkpoint]\nurl = \"{redis_url}\"\n"
        ),
    )
    .unwrap();
    path
}

#[test]
fn checkpoint_subcommand_sets_lists_deletes_and_refuses_while_a_sidecar_runs() {
    let redis = testkit::redis::RedisServer::start().expect("redis-server");
    let dir = tempfile::tempdir().unwrap();
    let config = config_with_redis(dir.path(), &redis.url());
    let run = |args: &[&str]| {
        let out = sidecar().args(args).arg("--config").arg(&config).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    let (code, out, err) = run(&["checkpoint", "set", "dbo.Orders", "42"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let (_, out, _) = run(&["checkpoint", "list"]);
    assert!(out.starts_with("dbo.Orders\t42\t"), "{out}");
    let (code, out, _) = run(&["checkpoint", "delete", "dbo.Orders"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("checkpoint deleted"), "{out}");
    let (_, out, _) = run(&["checkpoint", "list"]);
    assert!(out.is_empty(), "{out}");

    // GIVEN a running sidecar's lease on the database
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_connection().unwrap();
    redis::cmd("SET")
        .arg("cdc-sidecar:lock:Shop")
        .arg("pod-1:7")
        .query::<()>(&mut conn)
        .unwrap();
    let (code, _, err) = run(&["checkpoint", "set", "dbo.Orders", "1"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("pod-1:7") && err.contains("stop it"), "{err}");
}
