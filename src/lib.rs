//! cdc-sidecar: SQL Server Change Tracking → Pulsar + Redis Pub/Sub.
