//! Shared by the `tds_*` tests: a scripted fake [`Backend`] (canned outcomes keyed by
//! SQL text, recording every call) and a tiberius client connected to the stand-in.

#![allow(dead_code)] // each test binary uses a different subset

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use testkit::mssql::types::{Backend, BackendSession, Column, Outcome, Param, SqlError, SqlType, Value};
use testkit::mssql::wire::{MssqlServer, MssqlServerConfig};
use tiberius::{AuthMethod, Client, Config, EncryptionLevel};
use tokio::net::TcpStream;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};

pub type TdsClient = Client<Compat<TcpStream>>;

pub const USER: &str = "sidecar";
pub const PASSWORD: &str = "S3cret!pässword";
pub const DATABASE: &str = "Shop";

/// Deadline for anything a test waits on.
pub const DEADLINE: Duration = Duration::from_secs(10);

#[derive(Default)]
struct Inner {
    script: Mutex<HashMap<String, Vec<Outcome>>>,
    calls: Mutex<Vec<(String, Vec<Param>)>>,
    logins: Mutex<Vec<(String, String, Option<String>)>>,
    sessions_dropped: std::sync::atomic::AtomicUsize,
}

/// Answers scripted SQL; `BEGIN TRANSACTION`, `COMMIT`, `ROLLBACK` and `USE` change
/// the session state the way the wire layer must report.
#[derive(Clone, Default)]
pub struct FakeBackend {
    inner: Arc<Inner>,
}

impl FakeBackend {
    pub fn new() -> Self {
        Self::default()
    }

    /// Answers `sql` with `outcomes` from now on.
    pub fn script(&self, sql: &str, outcomes: Vec<Outcome>) {
        self.inner.script.lock().unwrap().insert(sql.to_string(), outcomes);
    }

    /// Every (sql, params) executed so far, in order.
    pub fn calls(&self) -> Vec<(String, Vec<Param>)> {
        self.inner.calls.lock().unwrap().clone()
    }

    /// How many sessions have been dropped (their connection task ended).
    pub fn sessions_dropped(&self) -> usize {
        self.inner.sessions_dropped.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Every (user, password, database) login attempt.
    pub fn logins(&self) -> Vec<(String, String, Option<String>)> {
        self.inner.logins.lock().unwrap().clone()
    }
}

pub struct FakeSession {
    inner: Arc<Inner>,
    database: String,
    in_transaction: bool,
}

impl Drop for FakeSession {
    fn drop(&mut self) {
        self.inner
            .sessions_dropped
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Backend for FakeBackend {
    type Session = FakeSession;

    fn login(&self, user: &str, password: &str, database: Option<&str>) -> Result<FakeSession, SqlError> {
        self.inner
            .logins
            .lock()
            .unwrap()
            .push((user.to_string(), password.to_string(), database.map(str::to_string)));
        if user != USER || password != PASSWORD {
            return Err(SqlError::new(18456, 14, format!("Login failed for user '{user}'.")));
        }
        let database = database.unwrap_or("master");
        if database != DATABASE && database != "master" {
            return Err(SqlError::new(
                4060,
                11,
                format!("Cannot open database \"{database}\" requested by the login. The login failed."),
            ));
        }
        Ok(FakeSession {
            inner: Arc::clone(&self.inner),
            database: database.to_string(),
            in_transaction: false,
        })
    }
}

impl BackendSession for FakeSession {
    fn database(&self) -> String {
        self.database.clone()
    }

    fn execute(&mut self, sql: &str, params: &[Param]) -> Vec<Outcome> {
        self.inner
            .calls
            .lock()
            .unwrap()
            .push((sql.to_string(), params.to_vec()));
        let upper = sql.to_ascii_uppercase();
        if upper.contains("BEGIN TRAN") {
            self.in_transaction = true;
        }
        if upper.contains("COMMIT") || upper.contains("ROLLBACK") {
            self.in_transaction = false;
        }
        if let Some(db) = sql.strip_prefix("USE ") {
            self.database = db.trim_matches(|c| c == '[' || c == ']').to_string();
            return vec![Outcome::Done { row_count: None }];
        }
        match self.inner.script.lock().unwrap().get(sql) {
            Some(outcomes) => outcomes.clone(),
            None if upper.contains("TRAN") || upper.starts_with("COMMIT") || upper.starts_with("ROLLBACK") => {
                vec![Outcome::Done { row_count: None }]
            }
            None => vec![Outcome::Error(SqlError::new(
                50000,
                16,
                format!("fake backend has no script for {sql:?}"),
            ))],
        }
    }

    fn in_transaction(&self) -> bool {
        self.in_transaction
    }
}

/// Starts the stand-in with default config over `backend`.
pub async fn start(backend: &FakeBackend) -> MssqlServer {
    start_with(backend, MssqlServerConfig::default()).await
}

pub async fn start_with(backend: &FakeBackend, config: MssqlServerConfig) -> MssqlServer {
    // `RUST_LOG=testkit=debug` shows the server's side of a failing test.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    MssqlServer::start(Arc::new(backend.clone()), config)
        .await
        .expect("server starts")
}

/// A tiberius config for the stand-in: SQL auth, no encryption.
pub fn config(server: &MssqlServer, user: &str, password: &str, db: Option<&str>) -> Config {
    let mut config = Config::new();
    config.host("127.0.0.1");
    config.port(server.addr().port());
    config.authentication(AuthMethod::sql_server(user, password));
    config.encryption(EncryptionLevel::NotSupported);
    if let Some(db) = db {
        config.database(db);
    }
    config
}

pub async fn connect_with(config: Config) -> tiberius::Result<TdsClient> {
    let tcp = TcpStream::connect(config.get_addr()).await.expect("tcp connect");
    tcp.set_nodelay(true).expect("nodelay");
    tokio::time::timeout(DEADLINE, Client::connect(config, tcp.compat_write()))
        .await
        .expect("connect within the deadline")
}

/// A logged-in client on the test database.
pub async fn connect(server: &MssqlServer) -> TdsClient {
    connect_with(config(server, USER, PASSWORD, Some(DATABASE)))
        .await
        .expect("login succeeds")
}

/// Runs `sql` as a batch and returns its first row (which must exist).
#[allow(dead_code)] // not every test binary that includes this module uses it
pub async fn first_row(client: &mut TdsClient, sql: &str) -> tiberius::Row {
    client
        .simple_query(sql)
        .await
        .unwrap()
        .into_row()
        .await
        .unwrap()
        .expect("a row")
}

pub fn col(name: &str, ty: SqlType) -> Column {
    Column {
        name: name.to_string(),
        ty,
        nullable: true,
    }
}

/// A one-column result set with the given values.
pub fn rows(name: &str, ty: SqlType, values: Vec<Value>) -> Outcome {
    Outcome::Rows {
        columns: vec![col(name, ty)],
        rows: values.into_iter().map(|v| vec![v]).collect(),
    }
}

/// Writes one client message as a single packet.
async fn send_packet(tcp: &mut TcpStream, ty: u8, payload: &[u8]) {
    use tokio::io::AsyncWriteExt;
    let len = (payload.len() + 8) as u16;
    let mut packet = vec![ty, 0x01];
    packet.extend_from_slice(&len.to_be_bytes());
    packet.extend_from_slice(&[0, 0, 1, 0]);
    packet.extend_from_slice(payload);
    tcp.write_all(&packet).await.expect("write packet");
}

/// Reads one whole server message (payloads of packets up to END_OF_MESSAGE).
pub async fn read_response(tcp: &mut TcpStream) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut out = Vec::new();
    loop {
        let mut header = [0u8; 8];
        tcp.read_exact(&mut header).await.expect("response header");
        let len = u16::from_be_bytes([header[2], header[3]]) as usize;
        let mut body = vec![0u8; len - 8];
        tcp.read_exact(&mut body).await.expect("response body");
        out.extend_from_slice(&body);
        if header[1] & 1 != 0 {
            return out;
        }
    }
}

fn ucs2(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(|u| u.to_le_bytes()).collect()
}

/// A hand-built LOGIN7 (MS-TDS 2.2.6.4) with SQL authentication.
pub fn login7(user: &str, password: &str, database: &str, packet_size: u32) -> Vec<u8> {
    let obfuscated: Vec<u8> = ucs2(password).into_iter().map(|b| b.rotate_left(4) ^ 0xA5).collect();
    let fields: [(Vec<u8>, usize); 9] = [
        (ucs2("host"), 4),
        (ucs2(user), user.encode_utf16().count()),
        (obfuscated, password.encode_utf16().count()),
        (ucs2("raw-test"), 8),
        (ucs2("server"), 6),
        (Vec::new(), 0), // extension
        (ucs2("lib"), 3),
        (Vec::new(), 0), // language
        (ucs2(database), database.encode_utf16().count()),
    ];
    let mut fixed = Vec::new();
    fixed.extend_from_slice(&0u32.to_le_bytes()); // length, patched below
    fixed.extend_from_slice(&0x7400_0004u32.to_le_bytes());
    fixed.extend_from_slice(&packet_size.to_le_bytes());
    fixed.extend_from_slice(&[0u8; 12]);
    fixed.extend_from_slice(&[0xE0, 0x03, 0x00, 0x00]);
    fixed.extend_from_slice(&[0u8; 8]);
    let mut data = Vec::new();
    let mut offset = 94usize;
    for (bytes, chars) in &fields {
        fixed.extend_from_slice(&(offset as u16).to_le_bytes());
        fixed.extend_from_slice(&(*chars as u16).to_le_bytes());
        data.extend_from_slice(bytes);
        offset += bytes.len();
    }
    fixed.extend_from_slice(&[0u8; 6]); // client id
    for _ in 0..3 {
        // SSPI, attach db file, change password
        fixed.extend_from_slice(&(offset as u16).to_le_bytes());
        fixed.extend_from_slice(&0u16.to_le_bytes());
    }
    fixed.extend_from_slice(&0u32.to_le_bytes()); // SSPI long
    assert_eq!(fixed.len(), 94);
    fixed.extend_from_slice(&data);
    let len = fixed.len() as u32;
    fixed[..4].copy_from_slice(&len.to_le_bytes());
    fixed
}

/// PRELOGIN with ENCRYPT_NOT_SUP, then LOGIN7; returns the login response payload
/// and the still-open socket.
pub async fn raw_login(server: &MssqlServer, user: &str, password: &str, database: &str) -> (Vec<u8>, TcpStream) {
    raw_login_full(server, user, password, database, 4096).await
}

/// [`raw_login`] as the test user, asking for `packet_size`.
pub async fn raw_login_with_packet_size(server: &MssqlServer, packet_size: u32) -> (Vec<u8>, TcpStream) {
    raw_login_full(server, USER, PASSWORD, DATABASE, packet_size).await
}

async fn raw_login_full(
    server: &MssqlServer,
    user: &str,
    password: &str,
    database: &str,
    packet_size: u32,
) -> (Vec<u8>, TcpStream) {
    let mut tcp = TcpStream::connect(server.addr()).await.expect("connect");
    // VERSION (6 bytes) and ENCRYPTION (1 byte) options, then the terminator.
    let prelogin = [
        0x00, 0x00, 0x0B, 0x00, 0x06, 0x01, 0x00, 0x11, 0x00, 0x01, 0xFF, 0, 0, 0, 0, 0, 0, 0x02,
    ];
    send_packet(&mut tcp, 0x12, &prelogin).await;
    let _answer = read_response(&mut tcp).await;
    send_packet(&mut tcp, 0x10, &login7(user, password, database, packet_size)).await;
    let response = read_response(&mut tcp).await;
    (response, tcp)
}

/// Sends a raw SQL batch packet on a logged-in raw connection.
pub async fn raw_batch(tcp: &mut TcpStream, sql: &str) {
    let mut payload = Vec::new();
    payload.extend_from_slice(&22u32.to_le_bytes());
    payload.extend_from_slice(&18u32.to_le_bytes());
    payload.extend_from_slice(&2u16.to_le_bytes());
    payload.extend_from_slice(&[0u8; 8]);
    payload.extend_from_slice(&1u32.to_le_bytes());
    payload.extend_from_slice(&ucs2(sql));
    send_packet(tcp, 0x01, &payload).await;
}

/// Sends raw bytes as one packet of type `ty`.
pub async fn raw_packet(tcp: &mut TcpStream, ty: u8, payload: &[u8]) {
    send_packet(tcp, ty, payload).await;
}

/// Whether the server closes `tcp` (EOF) within the deadline.
pub async fn closed_by_server(tcp: &mut TcpStream) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(DEADLINE, tcp.read(&mut buf)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

/// Reads one server message and returns the length of each of its packets.
pub async fn read_packet_sizes(tcp: &mut TcpStream) -> Vec<usize> {
    use tokio::io::AsyncReadExt;
    let mut sizes = Vec::new();
    loop {
        let mut header = [0u8; 8];
        tcp.read_exact(&mut header).await.expect("header");
        let len = u16::from_be_bytes([header[2], header[3]]) as usize;
        let mut body = vec![0u8; len - 8];
        tcp.read_exact(&mut body).await.expect("body");
        sizes.push(len);
        if header[1] & 1 != 0 {
            return sizes;
        }
    }
}
