//! In-memory SQL engine with Change Tracking semantics (placeholder).
