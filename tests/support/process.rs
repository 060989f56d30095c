//! The real `cdc-sidecar` binary as a child process, for the tests that SIGKILL it or
//! read its memory from `/proc`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The binary running with a config file, killed when the test ends (even by a failed
/// assertion); then, if the test failed, the tail of its log is printed.
pub struct SidecarProcess {
    pub child: Child,
    log: PathBuf,
}

impl SidecarProcess {
    /// Starts `cdc-sidecar run --config <config>`, its log (`RUST_LOG`, default warn)
    /// going to `log`.
    pub fn start(config: &Path, log: &Path) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_cdc-sidecar"))
            .arg("run")
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap();
        Self {
            child,
            log: log.to_path_buf(),
        }
    }

    /// SIGKILL: no flush, no checkpoint, no lease release.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for SidecarProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(40)..];
            eprintln!("--- last lines of {} ---\n{}", self.log.display(), tail.join("\n"));
        }
    }
}
