//! TDS 7.4 server (placeholder).
