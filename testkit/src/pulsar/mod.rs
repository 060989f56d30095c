//! Pulsar broker stand-in (placeholder).
