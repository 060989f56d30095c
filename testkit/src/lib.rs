//! Wire-level stand-ins for the services the sidecar talks to but that cannot run on
//! our machines: SQL Server (TDS 7.4 with Change Tracking) and Apache Pulsar (binary
//! protocol). Tests, benchmarks and the demo use them; the product never links this crate.

pub mod mssql;
pub mod pulsar;
pub mod redis;
