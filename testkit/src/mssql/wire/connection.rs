//! One client connection, from PRELOGIN to close: encryption negotiation, LOGIN7,
//! then the request loop that runs batches on the [`Backend`] session and writes the
//! outcomes back as tokens. The top layer under [`super::server`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::decode::DecodeError;
use super::login7::{self, Login7};
use super::packet::{self, packet_type, status, Message, PacketError, PacketWriter};
use super::prelogin::{self, Encryption};
use super::requests::{self, RpcCall, RpcError, TmRequest};
use super::server::Shared;
use super::tls::PreloginWrapped;
use super::tokens::{self, cur_cmd, done_status, env, DoneKind};
use super::values::SQL_LATIN1_GENERAL_CP1_CI_AS;
use crate::mssql::types::{Backend, BackendSession, Outcome, Param, SqlError};

/// TDS 7.4, the highest version we speak.
const TDS_7_4: u32 = 0x7400_0004;
/// What LOGINACK and PRELOGIN report: SQL Server 2019 (15.0.2000).
const SERVER_VERSION: [u8; 4] = [15, 0, 0x07, 0xD0];

/// Anything a transport we serve can be.
pub trait Transport: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Transport for T {}

/// Why a connection was closed by the server.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error("reading a message")]
    Packet(#[from] PacketError),
    #[error("i/o")]
    Io(#[from] std::io::Error),
    #[error("malformed {what}")]
    Decode {
        what: &'static str,
        #[source]
        source: DecodeError,
    },
    #[error("unexpected packet type {found:#04x} ({state})")]
    UnexpectedPacket { found: u8, state: &'static str },
    #[error("TLS handshake failed")]
    Tls(#[source] std::io::Error),
    #[error("login failed")]
    LoginFailed,
}

fn decode_err(what: &'static str) -> impl FnOnce(DecodeError) -> ConnectionError {
    move |source| ConnectionError::Decode { what, source }
}

/// Reads a message, treating EOF as the end of the connection.
async fn next_message<S: AsyncRead + Unpin>(io: &mut S) -> Result<Option<Message>, ConnectionError> {
    Ok(packet::read_message(io).await?)
}

/// The first byte of a TLS handshake record: a TDS 8.0 ("strict") client starts TLS
/// before sending anything else.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// Serves one connection until the client leaves or breaks the protocol.
pub(crate) async fn run<B: Backend>(tcp: TcpStream, shared: Arc<Shared<B>>, spid: u16) -> Result<(), ConnectionError> {
    // TDS 8.0 strict encryption: TLS first, then PRELOGIN and LOGIN7 inside it.
    let mut first = [0u8; 1];
    let strict = match &shared.tls {
        Some(_) => tcp.peek(&mut first).await? == 1 && first[0] == TLS_HANDSHAKE_RECORD,
        None => false,
    };
    let mut io: Box<dyn Transport> = match (&shared.tls, strict) {
        (Some(acceptor), true) => {
            let mut wrapped = PreloginWrapped::new(tcp);
            wrapped.handshake_done();
            let tls = acceptor.accept(wrapped).await.map_err(ConnectionError::Tls)?;
            debug!(spid, "TDS 8.0 strict TLS established");
            Box::new(tls)
        }
        _ => Box::new(tcp),
    };

    // PRELOGIN
    let Some(msg) = next_message(&mut io).await? else {
        return Ok(());
    };
    if msg.ty != packet_type::PRELOGIN {
        return Err(ConnectionError::UnexpectedPacket {
            found: msg.ty,
            state: "expected PRELOGIN",
        });
    }
    let client = prelogin::decode(&msg.payload).map_err(decode_err("PRELOGIN"))?;
    let force = shared.config.tls.as_ref().is_some_and(|t| t.force_encryption);
    let answer = if strict {
        // Already encrypted; report it as required, as SQL Server does.
        Encryption::Req
    } else {
        prelogin::negotiate(client.encryption, shared.tls.is_some(), force)
    };
    debug!(spid, client = ?client.encryption, answer = ?answer, "prelogin");
    let mut writer = PacketWriter::new(packet_type::TABULAR_RESULT, shared.config.packet_size, spid);
    prelogin::encode_response(&mut writer.buf, answer, SERVER_VERSION);
    writer.finish(&mut io).await?;

    // Encryption, then LOGIN7 (through TLS when any encryption was agreed).
    let (mut io, login_msg): (Box<dyn Transport>, Message) = match (answer, &shared.tls) {
        _ if strict => {
            let Some(msg) = next_message(&mut io).await? else {
                return Ok(());
            };
            (io, msg)
        }
        (Encryption::NotSup, _) | (_, None) => {
            // A client that insisted on encryption hangs up here.
            let Some(msg) = next_message(&mut io).await? else {
                return Ok(());
            };
            (io, msg)
        }
        (answer, Some(acceptor)) => {
            let wrapped = PreloginWrapped::new(io);
            let mut tls = acceptor.accept(wrapped).await.map_err(ConnectionError::Tls)?;
            tls.get_mut().0.handshake_done();
            let Some(msg) = next_message(&mut tls).await? else {
                return Ok(());
            };
            if answer == Encryption::Off {
                // Login-only encryption: the rest of the session is in the clear.
                let (wrapped, _session) = tls.into_inner();
                (wrapped.into_inner(), msg)
            } else {
                (Box::new(tls), msg)
            }
        }
    };
    if login_msg.ty != packet_type::LOGIN7 {
        return Err(ConnectionError::UnexpectedPacket {
            found: login_msg.ty,
            state: "expected LOGIN7",
        });
    }
    let login = login7::decode(&login_msg.payload).map_err(decode_err("LOGIN7"))?;
    debug!(spid, login = ?login, "login7");

    let mut conn = Connection {
        shared: Arc::clone(&shared),
        spid,
        writer,
        session: None,
        transaction: None,
        attention: Arc::new(AtomicU64::new(0)),
        attention_acked: 0,
    };
    conn.login(&mut io, &login).await?;
    conn.serve_requests(io).await
}

struct Connection<B: Backend> {
    shared: Arc<Shared<B>>,
    spid: u16,
    writer: PacketWriter,
    session: Option<B::Session>,
    /// Descriptor of the open transaction, as reported to the client.
    transaction: Option<[u8; 8]>,
    /// ATTENTION messages received (counted by the reader as they arrive).
    attention: Arc<AtomicU64>,
    /// ATTENTION messages acknowledged so far.
    attention_acked: u64,
}

/// Session state the client tracks through ENVCHANGE, captured before a request.
struct Before {
    database: String,
    in_transaction: bool,
}

impl<B: Backend> Connection<B> {
    fn put_error(&mut self, e: &SqlError, procedure: &str) {
        let m = tokens::Message {
            number: e.number,
            state: e.state,
            class: e.class,
            text: &e.message,
            server: &self.shared.config.server_name,
            procedure,
            line: e.line,
        };
        tokens::error(&mut self.writer.buf, &m);
    }

    /// A statement's message sent ahead of its outcome ([`Outcome::Message`]): INFO
    /// with severity 10 and below sent as class 0, ERROR above.
    fn put_message(&mut self, m: &SqlError) {
        if m.class > 10 {
            self.put_error(m, "");
            return;
        }
        let info = tokens::Message {
            number: m.number,
            state: m.state,
            class: 0,
            text: &m.message,
            server: &self.shared.config.server_name,
            procedure: "",
            line: m.line,
        };
        tokens::info(&mut self.writer.buf, &info);
    }

    fn info(&mut self, number: i32, state: u8, text: &str) {
        let m = tokens::Message {
            number,
            state,
            class: 0,
            text,
            server: &self.shared.config.server_name,
            procedure: "",
            line: 1,
        };
        tokens::info(&mut self.writer.buf, &m);
    }

    async fn login<W: AsyncWrite + Unpin>(&mut self, io: &mut W, login: &Login7) -> Result<(), ConnectionError> {
        let attempt = if login.integrated_security || login.requests_fedauth() {
            // Windows and federated (Azure AD) authentication do not exist here; SQL
            // Server answers an unusable login with 18456 too, and MS-TDS 3.3.5.5 asks
            // for a "Login failed" ERROR then a closed connection for a FEDAUTH token
            // the server cannot validate. Other FeatureExt features do not block a
            // SQL login (see `Login7::feature_acks`).
            let user = match login.user.as_str() {
                "" if login.requests_fedauth() => "<token-identified principal>",
                user => user,
            };
            Err(SqlError::new(18456, 14, format!("Login failed for user '{user}'.")))
        } else {
            let db = (!login.database.is_empty()).then_some(login.database.as_str());
            self.shared.backend.login(&login.user, &login.password, db)
        };
        let session = match attempt {
            Ok(session) => session,
            Err(e) => {
                debug!(spid = self.spid, user = %login.user, error = %e, "login refused");
                self.put_error(&e, "");
                tokens::done(&mut self.writer.buf, DoneKind::Done, done_status::ERROR, 0, 0);
                self.writer.finish(io).await?;
                return Err(ConnectionError::LoginFailed);
            }
        };

        let packet_size = match login.packet_size {
            0 => self.shared.config.packet_size,
            n => n,
        }
        .clamp(512, 32767);
        let tds_version = login.tds_version.min(TDS_7_4);
        let database = session.database();
        let buf = &mut self.writer.buf;
        tokens::env_change_text(buf, env::DATABASE, &database, "master");
        self.info(5701, 2, &format!("Changed database context to '{database}'."));
        let buf = &mut self.writer.buf;
        tokens::env_change_bytes(buf, env::COLLATION, &SQL_LATIN1_GENERAL_CP1_CI_AS, &[]);
        tokens::env_change_text(buf, env::LANGUAGE, "us_english", "");
        self.info(5703, 1, "Changed language setting to us_english.");
        let buf = &mut self.writer.buf;
        tokens::login_ack(buf, tds_version, "Microsoft SQL Server", SERVER_VERSION);
        if let Some(acks) = login.feature_acks() {
            let acks: Vec<(u8, &[u8])> = acks.iter().map(|a| (a.id, a.data.as_slice())).collect();
            tokens::feature_ext_ack(buf, &acks);
        }
        tokens::env_change_text(
            buf,
            env::PACKET_SIZE,
            &packet_size.to_string(),
            &self.shared.config.packet_size.to_string(),
        );
        tokens::done(buf, DoneKind::Done, done_status::FINAL, 0, 0);
        self.writer.finish(io).await?;
        self.writer.set_packet_size(packet_size);
        self.session = Some(session);
        debug!(spid = self.spid, user = %login.user, database = %database, packet_size, "logged in");
        Ok(())
    }

    /// The request loop. A reader runs alongside so an ATTENTION that arrives while a
    /// response is being written can cut that response short, as SQL Server does.
    async fn serve_requests(&mut self, io: Box<dyn Transport>) -> Result<(), ConnectionError> {
        let spid = self.spid;
        let (mut rd, mut wr) = tokio::io::split(io);
        // One message in flight is all TDS allows without MARS.
        let (tx, mut rx) = mpsc::channel::<Message>(1);
        let attention = Arc::clone(&self.attention);
        let reader = async move {
            loop {
                match packet::read_message(&mut rd).await {
                    Ok(Some(msg)) => {
                        if msg.ty == packet_type::ATTENTION {
                            attention.fetch_add(1, Ordering::SeqCst);
                        }
                        if tx.send(msg).await.is_err() {
                            return Ok(());
                        }
                    }
                    Ok(None) => return Ok(()),
                    Err(e) => return Err(ConnectionError::from(e)),
                }
            }
        };
        let processor = async {
            while let Some(msg) = rx.recv().await {
                self.request(&mut wr, msg).await?;
            }
            Ok::<(), ConnectionError>(())
        };
        tokio::pin!(reader, processor);
        let mut read_result = None;
        let processed = loop {
            tokio::select! {
                r = &mut reader, if read_result.is_none() => read_result = Some(r),
                p = &mut processor => break p,
            }
        };
        processed?;
        match read_result {
            Some(Err(e)) => Err(e),
            _ => {
                debug!(spid, "client closed the connection");
                Ok(())
            }
        }
    }

    /// Whether an ATTENTION arrived that no response has acknowledged yet.
    fn attention_pending(&self) -> bool {
        self.attention.load(Ordering::SeqCst) > self.attention_acked
    }

    /// Acknowledges every ATTENTION received so far, ending the current response.
    async fn acknowledge_attention<W: AsyncWrite + Unpin>(&mut self, io: &mut W) -> Result<(), ConnectionError> {
        self.attention_acked = self.attention.load(Ordering::SeqCst);
        tokens::done(&mut self.writer.buf, DoneKind::Done, done_status::ATTN, 0, 0);
        self.writer.finish(io).await?;
        Ok(())
    }

    async fn request<W: AsyncWrite + Unpin>(&mut self, io: &mut W, msg: Message) -> Result<(), ConnectionError> {
        if msg.status & status::IGNORE != 0 {
            return Ok(());
        }
        match msg.ty {
            packet_type::SQL_BATCH => {
                self.shared.requests.fetch_add(1, Ordering::Relaxed);
                let sql = requests::decode_sql_batch(&msg.payload).map_err(decode_err("SQL batch"))?;
                self.sql_batch(io, &sql).await
            }
            packet_type::RPC => {
                self.shared.requests.fetch_add(1, Ordering::Relaxed);
                match requests::decode_rpc(&msg.payload) {
                    Ok(calls) => self.rpc(io, &calls).await,
                    Err(RpcError::Malformed(source)) => Err(ConnectionError::Decode { what: "RPC", source }),
                    Err(RpcError::UnknownType { index, name, ty }) => {
                        let e = SqlError::new(
                            8009,
                            16,
                            format!(
                                "The incoming tabular data stream (TDS) remote procedure call (RPC) protocol stream is incorrect. Parameter {index} (\"{name}\"): Data type 0x{ty:02X} is unknown."
                            ),
                        );
                        self.put_error(&e, "");
                        tokens::done(&mut self.writer.buf, DoneKind::Done, done_status::ERROR, 0, 0);
                        self.writer.finish(io).await?;
                        Ok(())
                    }
                }
            }
            packet_type::TRANSACTION_MANAGER => {
                self.shared.requests.fetch_add(1, Ordering::Relaxed);
                let tm = requests::decode_tm(&msg.payload).map_err(decode_err("transaction manager request"))?;
                self.transaction_manager(io, &tm).await
            }
            packet_type::ATTENTION => {
                // Acknowledged already if it cut a response short; otherwise the
                // response it meant was complete and it gets an ack of its own.
                if self.attention_pending() {
                    self.acknowledge_attention(io).await?;
                }
                Ok(())
            }
            other => Err(ConnectionError::UnexpectedPacket {
                found: other,
                state: "expected a request",
            }),
        }
    }

    fn before(&self) -> Before {
        self.session.as_ref().map_or(
            Before {
                database: String::new(),
                in_transaction: false,
            },
            |s| Before {
                database: s.database(),
                in_transaction: s.in_transaction(),
            },
        )
    }

    /// Runs a batch on the session: as a module for an RPC's statement, as a plain
    /// batch (whose SETs and transactions persist) for a SQL batch. The engine is
    /// synchronous; on a multi-threaded runtime the worker is handed over for the
    /// duration so other connections keep being served while a large batch runs.
    /// Each execution is timed into the server's request statistics
    /// ([`super::MssqlServer::max_request_duration`]).
    fn execute(&mut self, sql: &str, params: &[Param], module: bool) -> Vec<Outcome> {
        let Some(session) = self.session.as_mut() else {
            return Vec::new();
        };
        let mut run = || {
            if module {
                session.execute_module(sql, params)
            } else {
                session.execute(sql, params)
            }
        };
        let multi_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        let started = std::time::Instant::now();
        let outcomes = if multi_thread {
            tokio::task::block_in_place(run)
        } else {
            run()
        };
        self.shared.request_stats.record(started.elapsed());
        outcomes
    }

    /// ENVCHANGE tokens for what the request changed: database (with SQL Server's
    /// INFO 5701) and transaction begin/commit/rollback.
    fn env_changes(&mut self, before: &Before, sql: &str, outcomes: &[Outcome]) {
        let after = self.before();
        if after.database != before.database {
            tokens::env_change_text(&mut self.writer.buf, env::DATABASE, &after.database, &before.database);
            self.info(5701, 1, &format!("Changed database context to '{}'.", after.database));
        }
        match (before.in_transaction, after.in_transaction) {
            (false, true) => {
                let id = self.shared.next_transaction.fetch_add(1, Ordering::Relaxed);
                let descriptor = id.to_le_bytes();
                self.transaction = Some(descriptor);
                tokens::env_change_bytes(&mut self.writer.buf, env::BEGIN_TRAN, &descriptor, &[]);
            }
            (true, false) => {
                let descriptor = self.transaction.take().unwrap_or_default();
                // Msg 266 (a module returned with another @@TRANCOUNT) reports a
                // COMMIT or ROLLBACK inside it; it ends nothing itself.
                let rolled_back = sql.to_ascii_uppercase().contains("ROLLBACK")
                    || outcomes
                        .iter()
                        .any(|o| matches!(o, Outcome::Error(e) if e.number != 266));
                let ty = if rolled_back {
                    env::ROLLBACK_TRAN
                } else {
                    env::COMMIT_TRAN
                };
                tokens::env_change_bytes(&mut self.writer.buf, ty, &[], &descriptor);
            }
            _ => {}
        }
    }

    /// Writes one statement's outcome ending in a DONE-family token of `kind`.
    /// Returns `false` when an ATTENTION cut it short (the caller then acknowledges).
    async fn outcome<W: AsyncWrite + Unpin>(
        &mut self,
        io: &mut W,
        outcome: &Outcome,
        kind: DoneKind,
        more: bool,
    ) -> Result<bool, ConnectionError> {
        if self.attention_pending() {
            return Ok(false);
        }
        let more_bit = if more { done_status::MORE } else { 0 };
        match outcome {
            Outcome::Rows { columns, rows } => {
                tokens::col_metadata(&mut self.writer.buf, columns);
                for (n, row) in rows.iter().enumerate() {
                    if let Err(e) = tokens::row(&mut self.writer.buf, columns, row) {
                        warn!(spid = self.spid, error = %e, "engine returned a value its column type cannot carry");
                        let err = SqlError::new(245, 16, format!("Conversion failed: {e}."));
                        self.put_error(&err, "");
                        tokens::done(
                            &mut self.writer.buf,
                            kind,
                            done_status::ERROR | more_bit,
                            cur_cmd::SELECT,
                            n as u64,
                        );
                        return Ok(true);
                    }
                    self.writer.flush_full(io).await?;
                    if self.attention_pending() {
                        return Ok(false);
                    }
                }
                tokens::done(
                    &mut self.writer.buf,
                    kind,
                    done_status::COUNT | more_bit,
                    cur_cmd::SELECT,
                    rows.len() as u64,
                );
            }
            Outcome::Done { row_count } => {
                let count = if row_count.is_some() { done_status::COUNT } else { 0 };
                tokens::done(
                    &mut self.writer.buf,
                    kind,
                    count | more_bit,
                    cur_cmd::NONE,
                    row_count.unwrap_or(0),
                );
            }
            Outcome::Error(e) => {
                self.put_error(e, "");
                tokens::done(
                    &mut self.writer.buf,
                    kind,
                    done_status::ERROR | more_bit,
                    cur_cmd::NONE,
                    0,
                );
            }
            // No DONE: the outcome that follows ends the statement.
            Outcome::Message(m) => self.put_message(m),
        }
        self.writer.flush_full(io).await?;
        Ok(true)
    }

    async fn sql_batch<W: AsyncWrite + Unpin>(&mut self, io: &mut W, sql: &str) -> Result<(), ConnectionError> {
        let before = self.before();
        let outcomes = self.execute(sql, &[], false);
        self.env_changes(&before, sql, &outcomes);
        if !outcomes.iter().any(|o| !matches!(o, Outcome::Message(_))) {
            for o in &outcomes {
                if let Outcome::Message(m) = o {
                    self.put_message(m);
                }
            }
            tokens::done(&mut self.writer.buf, DoneKind::Done, done_status::FINAL, 0, 0);
            self.writer.finish(io).await?;
            return Ok(());
        }
        // The last DONE-ending outcome carries no DONE_MORE.
        let last = outcomes
            .iter()
            .rposition(|o| !matches!(o, Outcome::Message(_)))
            .unwrap_or(0);
        for (i, o) in outcomes.iter().enumerate() {
            if !self.outcome(io, o, DoneKind::Done, i < last).await? {
                return self.acknowledge_attention(io).await;
            }
        }
        self.writer.finish(io).await?;
        Ok(())
    }

    async fn rpc<W: AsyncWrite + Unpin>(&mut self, io: &mut W, calls: &[RpcCall]) -> Result<(), ConnectionError> {
        let last = calls.len().saturating_sub(1);
        for (i, call) in calls.iter().enumerate() {
            let more_bit = if i < last { done_status::MORE } else { 0 };
            if !call.is_sp_executesql() {
                let e = SqlError {
                    state: 62,
                    ..SqlError::new(
                        2812,
                        16,
                        format!("Could not find stored procedure '{}'.", call.proc_name()),
                    )
                };
                self.put_error(&e, "");
                tokens::done(
                    &mut self.writer.buf,
                    DoneKind::DoneProc,
                    done_status::ERROR | more_bit,
                    cur_cmd::EXECUTE,
                    0,
                );
                continue;
            }
            let stmt = match call.params.first().map(|p| &p.value) {
                Some(crate::mssql::types::Value::String(s)) => s.clone(),
                _ => {
                    let e = SqlError {
                        state: 2,
                        ..SqlError::new(
                            214,
                            16,
                            "Procedure expects parameter '@statement' of type 'ntext/nchar/nvarchar'.",
                        )
                    };
                    self.put_error(&e, "sp_executesql");
                    tokens::done(
                        &mut self.writer.buf,
                        DoneKind::DoneProc,
                        done_status::ERROR | more_bit,
                        cur_cmd::EXECUTE,
                        0,
                    );
                    continue;
                }
            };
            let declared = match call.params.get(1).map(|p| &p.value) {
                Some(crate::mssql::types::Value::String(s)) => requests::declared_names(s),
                _ => Vec::new(),
            };
            let params: Vec<Param> = call
                .params
                .iter()
                .skip(2)
                .enumerate()
                .map(|(i, p)| Param {
                    name: if p.name.is_empty() {
                        declared.get(i).cloned().unwrap_or_else(|| format!("@P{}", i + 1))
                    } else {
                        p.name.clone()
                    },
                    value: p.value.clone(),
                })
                .collect();
            // sp_executesql runs its statement as a module.
            let before = self.before();
            let outcomes = self.execute(&stmt, &params, true);
            self.env_changes(&before, &stmt, &outcomes);
            for o in &outcomes {
                if !self.outcome(io, o, DoneKind::DoneInProc, true).await? {
                    return self.acknowledge_attention(io).await;
                }
            }
            let failed = outcomes.iter().any(|o| matches!(o, Outcome::Error(_)));
            if !failed {
                tokens::return_status(&mut self.writer.buf, 0);
            }
            let error_bit = if failed { done_status::ERROR } else { 0 };
            tokens::done(
                &mut self.writer.buf,
                DoneKind::DoneProc,
                error_bit | more_bit,
                cur_cmd::EXECUTE,
                0,
            );
        }
        self.writer.finish(io).await?;
        Ok(())
    }

    async fn transaction_manager<W: AsyncWrite + Unpin>(
        &mut self,
        io: &mut W,
        tm: &TmRequest,
    ) -> Result<(), ConnectionError> {
        let Some(sql) = tm.to_sql() else {
            let e = SqlError::new(
                8004,
                16,
                "The incoming tabular data stream (TDS) protocol stream is incorrect: unsupported transaction manager request.",
            );
            self.put_error(&e, "");
            tokens::done(&mut self.writer.buf, DoneKind::Done, done_status::ERROR, 0, 0);
            self.writer.finish(io).await?;
            return Ok(());
        };
        let before = self.before();
        let outcomes = self.execute(&sql, &[], false);
        self.env_changes(&before, &sql, &outcomes);
        let mut status = done_status::FINAL;
        for o in &outcomes {
            if let Outcome::Error(e) = o {
                self.put_error(e, "");
                status = done_status::ERROR;
            }
        }
        tokens::done(&mut self.writer.buf, DoneKind::Done, status, 0, 0);
        self.writer.finish(io).await?;
        Ok(())
    }
}
