//! TDS 7.4 server: the SQL Server wire protocol as the real `tiberius` client speaks
//! it, in front of any [`Backend`](super::types::Backend).
//!
//! Layers, bottom up: `packet` framing; `prelogin`, `tls` and `login7` for the
//! handshake; `requests` decoding SQL batches, RPC calls and transaction manager
//! requests; `values` and `tokens` encoding results; `connection` running one
//! client; `server` accepting them.
//!
//! ```no_run
//! # async fn demo<B: testkit::mssql::types::Backend>(engine: std::sync::Arc<B>) -> std::io::Result<()> {
//! use testkit::mssql::wire::{MssqlServer, MssqlServerConfig, TlsSettings};
//!
//! let config = MssqlServerConfig {
//!     // Optional: TLS like a real server (tiberius then needs `trust_cert()`).
//!     tls: Some(TlsSettings::self_signed(&["localhost"]).map_err(std::io::Error::other)?),
//!     ..MssqlServerConfig::default()
//! };
//! let server = MssqlServer::start(engine, config).await?;
//! let port = server.addr().port(); // connect tiberius to 127.0.0.1:port
//! # let _ = port;
//! server.drop_connections(); // fault injection
//! println!("{} requests", server.requests());
//! server.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod connection;
mod cp1252;
mod decode;
mod login7;
mod packet;
mod prelogin;
mod requests;
mod server;
mod tls;
mod tokens;
mod values;

pub use server::{MssqlServer, MssqlServerConfig};
pub use tls::TlsSettings;
