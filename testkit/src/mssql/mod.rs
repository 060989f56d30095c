//! SQL Server stand-in: a TDS 7.4 server (`wire`) in front of an in-memory engine with
//! Change Tracking semantics (`engine`). The two meet at [`types`]: the engine answers a
//! batch with [`types::Outcome`]s, the wire layer encodes them as TDS tokens.

pub mod engine;
pub mod sample;
pub mod sqlcmd;
pub mod types;
pub mod wire;
