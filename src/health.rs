//! Liveness and readiness: what the reader reports and the HTTP endpoints serve. Kept
//! apart from both so neither depends on the other.

use std::sync::atomic::{AtomicBool, AtomicI64};
use std::sync::Mutex;

/// Liveness and readiness, shared by the reader (writer) and `/healthz`, `/readyz`.
#[derive(Debug, Default)]
pub struct Health {
    /// Set once startup checks passed and the first tick succeeded; cleared while the
    /// source is failing.
    pub ready: AtomicBool,
    /// Milliseconds since the Unix epoch of the reader's last loop iteration; `/healthz`
    /// fails when it is older than the stall limit.
    pub last_tick_ms: AtomicI64,
    /// Tables parked by an error (or whose tracking was switched off), for `/readyz`.
    pub errored_tables: Mutex<Vec<String>>,
}

impl Health {
    /// Adds `table` to, or removes it from, the errored list.
    pub fn set_errored(&self, table: &str, errored: bool) {
        // A poisoned lock only means a panic elsewhere; the list is still usable.
        let mut list = self.errored_tables.lock().unwrap_or_else(|p| p.into_inner());
        list.retain(|t| t != table);
        if errored {
            list.push(table.to_string());
        }
    }
}
