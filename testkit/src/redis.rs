//! A real `redis-server` on a free loopback port, for tests and benchmarks. Redis is
//! not stood in for: the real server is cheap to run, so we run it.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `redis-server` child process, killed on drop.
pub struct RedisServer {
    child: Child,
    port: u16,
    dir: TempDir,
    /// Extra `redis-server` arguments ([`RedisServer::start_with_args`]), kept for restarts.
    extra: Vec<String>,
}

/// Errors starting the server.
#[derive(Debug, thiserror::Error)]
pub enum RedisServerError {
    #[error("could not start redis-server (install the Debian package `redis-server`): {0}")]
    Spawn(#[source] std::io::Error),
    #[error("redis-server did not accept connections on port {0} within 10 s")]
    NotReady(u16),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

struct TempDir(PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl RedisServer {
    /// Starts `redis-server` with no persistence on a free port and waits until it
    /// accepts connections.
    pub fn start() -> Result<Self, RedisServerError> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let dir = std::env::temp_dir().join(format!("testkit-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let child = spawn(port, &dir, &[])?;
        let server = Self {
            child,
            port,
            dir: TempDir(dir),
            extra: Vec::new(),
        };
        wait_ready(port)?;
        Ok(server)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Stops the server; its data is lost, as when a cache without persistence crashes.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again, empty, on the same port, and waits until it accepts connections.
    pub fn restart(&mut self) -> Result<(), RedisServerError> {
        self.stop();
        self.child = spawn(self.port, &self.dir.0, &self.extra)?;
        wait_ready(self.port)
    }
}

fn spawn(port: u16, dir: &Path, extra: &[String]) -> Result<Child, RedisServerError> {
    Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .arg("--dir")
        .arg(dir)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(RedisServerError::Spawn)
}

fn wait_ready(port: u16) -> Result<(), RedisServerError> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return Err(RedisServerError::NotReady(port));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

impl RedisServer {
    /// [`RedisServer::start`] with extra `redis-server` arguments after the defaults
    /// (later ones win), e.g. a TLS port and its certificates:
    /// `["--tls-port", "6380", "--tls-cert-file", ..., "--tls-auth-clients", "yes"]`.
    /// The plain port stays open, so the test can look at Redis without TLS; readiness
    /// is awaited on it.
    pub fn start_with_args(args: &[&str]) -> Result<Self, RedisServerError> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let dir = std::env::temp_dir().join(format!("testkit-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let extra: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let child = spawn(port, &dir, &extra)?;
        let server = Self {
            child,
            port,
            dir: TempDir(dir),
            extra,
        };
        wait_ready(port)?;
        Ok(server)
    }
}
