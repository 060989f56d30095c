//! cdc-sidecar: SQL Server Change Tracking → Apache Pulsar + Redis Pub/Sub.
//!
//! The library holds the whole pipeline so tests and benchmarks drive exactly what the
//! binary runs. Its modules, in the order a change flows through them:
//! [`source`] (SQL Server: client, catalog, check, SQL, rows), [`tracker`] (the reader
//! loop and per-table delivery), [`envelope`] (what a message is), [`sink`] (Pulsar,
//! Redis Pub/Sub), [`checkpoint`] (positions and the lease). [`pipeline`] wires them for
//! one run; [`config`], [`metrics`], [`health`], [`http`] and [`admin`] serve it.

#![warn(missing_docs)]

pub mod admin;
pub mod checkpoint;
pub mod config;
pub mod envelope;
pub mod health;
pub mod http;
pub mod metrics;
pub mod pipeline;
pub mod sink;
pub mod source;
pub mod tracker;

pub use config::redis_client;
pub use pipeline::{check, checkpoint_store, run, run_with_metrics, RunError};
