//! TDS 7.4 server: the SQL Server wire protocol as the real `tiberius` client speaks
//! it, in front of any [`Backend`](super::types::Backend).
//!
//! Layers, bottom up: [`packet`] framing; [`prelogin`], [`tls`] and [`login7`] for the
//! handshake; [`requests`] decoding SQL batches, RPC calls and transaction manager
//! requests; [`values`] and [`tokens`] encoding results; [`connection`] running one
//! client; [`server`] accepting them.

pub mod connection;
pub mod cp1252;
pub mod decode;
pub mod login7;
pub mod packet;
pub mod prelogin;
pub mod requests;
pub mod server;
pub mod tls;
pub mod tokens;
pub mod values;

pub use server::{MssqlServer, MssqlServerConfig};
pub use tls::TlsSettings;
