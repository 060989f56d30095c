//! The database lease: at most one sidecar streams a database at a time. The holder
//! renews it every third of its TTL; a crashed sidecar blocks its successor for at most
//! [`LEASE_TTL`].

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::warn;

use super::{CheckpointError, RedisCheckpointStore};

/// How long the lease lives without renewal.
pub const LEASE_TTL: Duration = Duration::from_secs(15);

/// This process's hold on the database's lease. Dropping it stops the renewal, which
/// then releases the lease, so no exit path, error or not, leaves it renewed by a
/// process that stopped streaming.
pub struct Lease {
    stop: CancellationToken,
}

impl Lease {
    /// Waits until this sidecar holds the lease as `holder`, then keeps renewing it on
    /// `tasks`. `None` when `shutdown` came first.
    pub async fn acquire(
        store: Arc<RedisCheckpointStore>,
        holder: String,
        tasks: &TaskTracker,
        shutdown: &CancellationToken,
    ) -> Result<Option<Lease>, CheckpointError> {
        let ttl_ms = LEASE_TTL.as_millis() as u64;
        let mut announced = false;
        while !store.try_lock(&holder, ttl_ms).await? {
            if !announced {
                let other = store.lock_holder().await?.unwrap_or_default();
                warn!(holder = %other, "another sidecar holds this database's lease; waiting for it to stop");
                announced = true;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.cancelled() => return Ok(None),
            }
        }
        let stop = CancellationToken::new();
        let renewal = stop.clone();
        tasks.spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(LEASE_TTL / 3) => {}
                    _ = renewal.cancelled() => break,
                }
                match store.try_lock(&holder, ttl_ms).await {
                    Ok(true) => {}
                    Ok(false) => warn!("lost this database's lease to another sidecar"),
                    Err(error) => warn!(%error, "could not renew the lease"),
                }
            }
            let _ = store.unlock(&holder).await;
        });
        Ok(Some(Lease { stop }))
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
