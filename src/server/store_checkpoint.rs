//! When the key-space file is made durable.
//!
//! The WAL makes every applied entry durable before it is applied, so the key-space file needs
//! no fsync of its own per commit: it runs in `Durability::Checkpointed` mode and is made
//! durable every `CHECKPOINT_INTERVAL` (etcd's backend commits on a 100 ms timer for the same
//! reason), before the WAL releases the segments a snapshot covers, and when the member stops.
//! After a crash the file opens at its last checkpoint and the entries after its applied index
//! are replayed from the WAL.

use std::time::{Duration, Instant};

use crate::mvcc::MvccStore;
use crate::storage::btree_backend::BtreeBackend;

/// How often applied commits are made durable in the key-space file.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(100);

/// The timer of the key-space file's checkpoints.
#[derive(Debug, Default)]
pub struct StoreCheckpoints {
    /// None until the first: what start-up wrote is made durable at the loop's first turn.
    last: Option<Instant>,
}

impl StoreCheckpoints {
    /// Checkpoints if the interval has passed since the last one (a no-op, no sync, when
    /// nothing was committed since).
    pub fn maybe(&mut self, store: &MvccStore<BtreeBackend>) -> Result<(), String> {
        if self
            .last
            .is_some_and(|last| last.elapsed() < CHECKPOINT_INTERVAL)
        {
            return Ok(());
        }
        self.now(store)
    }

    /// Makes every applied commit durable in the key-space file now.
    pub fn now(&mut self, store: &MvccStore<BtreeBackend>) -> Result<(), String> {
        self.last = Some(Instant::now());
        store
            .backend()
            .database()
            .checkpoint()
            .map_err(|e| format!("checkpointing the key space: {e}"))
    }
}
