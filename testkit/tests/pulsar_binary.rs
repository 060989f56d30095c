//! The `pulsar-standin` binary: starts on the given port with the given token,
//! serves a real client, and exits cleanly on SIGTERM.

mod pulsar_support;

use std::process::Stdio;

use pulsar_support::*;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

#[tokio::test]
async fn binary_serves_a_token_client_and_stops_on_sigterm() {
    init_tracing();
    let mut child = Command::new(env!("CARGO_BIN_EXE_pulsar-standin"))
        .args(["--port", "0", "--token", "bin-token"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn pulsar-standin");
    let stdout = child.stdout.take().expect("stdout piped");
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(DEADLINE, lines.next_line())
        .await
        .expect("startup line in time")
        .expect("read stdout")
        .expect("a startup line");
    let url = line
        .rsplit(' ')
        .next()
        .filter(|u| u.starts_with("pulsar://"))
        .unwrap_or_else(|| panic!("no URL in {line:?}"))
        .to_string();

    assert!(client_with(&url, Some("wrong")).await.is_err(), "token enforced");
    let client = client_with(&url, Some("bin-token")).await.expect("connects");
    let mut producer = client.producer().with_topic("bin").build().await.expect("producer");
    tokio::time::timeout(DEADLINE, async {
        producer
            .send_non_blocking(b"via the binary".to_vec())
            .await
            .expect("queue")
            .await
            .expect("receipt")
    })
    .await
    .expect("receipt in time");

    let pid = child.id().expect("running").to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .expect("run kill");
    assert!(killed.success());
    let status = tokio::time::timeout(DEADLINE, child.wait())
        .await
        .expect("exits in time")
        .expect("wait");
    assert!(status.success(), "clean exit, got {status:?}");
}
