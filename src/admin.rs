//! Operator commands on a configured sidecar's state, without streaming: the
//! `cdc-sidecar checkpoint` subcommands. Moving a checkpoint under a running sidecar
//! would be overwritten or, worse, race it, so changes are refused while the
//! database's lease is held.

use crate::checkpoint::{Checkpoint, CheckpointError, CheckpointStore, RedisCheckpointStore};
use crate::config::Config;
use crate::pipeline::{checkpoint_store, RunError};

/// Every stored checkpoint of the configured database.
pub async fn checkpoint_list(config: &Config) -> Result<Vec<(String, Checkpoint)>, RunError> {
    Ok(checkpoint_store(config).await?.list().await?)
}

/// Sets `table`'s checkpoint to `version`, even backwards (replays) or forwards (skips).
pub async fn checkpoint_set(config: &Config, table: &str, version: i64) -> Result<(), RunError> {
    let store = unleased_store(config).await?;
    // Batch numbers go on from the stored ones, so consumers see no false gap.
    let stored = store.load(table).await?;
    let seq = stored.as_ref().map_or(0, |c| c.seq);
    let incarnation = stored.and_then(|c| c.incarnation);
    Ok(store.reset(table, version, seq, incarnation.as_deref()).await?)
}

/// Deletes `table`'s checkpoint; returns whether there was one.
pub async fn checkpoint_delete(config: &Config, table: &str) -> Result<bool, RunError> {
    let store = unleased_store(config).await?;
    Ok(store.delete(table).await?)
}

async fn unleased_store(config: &Config) -> Result<RedisCheckpointStore, RunError> {
    let store = checkpoint_store(config).await?;
    if let Some(holder) = store.lock_holder().await? {
        return Err(CheckpointError::Locked {
            database: config.source.database.clone(),
            holder,
        }
        .into());
    }
    Ok(store)
}
