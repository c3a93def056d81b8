//! When the Raft log becomes a snapshot: every `snapshot_count` applied entries the key space
//! (checkpointed first) stands for the log up to an index, and the WAL releases the segments
//! it covers. A method of the raft loop, kept apart from the loop's message handling.

use std::sync::atomic::Ordering;

use super::member::snapshot_conf_key;
use super::raft_log::encode_conf_state;
use super::raft_loop::RaftLoop;

impl RaftLoop {
    /// Every `snapshot_count` applied entries, the key space (already durable at the applied
    /// index) becomes the log's snapshot and the WAL releases the segments it covers.
    pub(super) fn maybe_snapshot(&mut self) -> Result<(), String> {
        let applied = self.published.applied.load(Ordering::Relaxed);
        if applied < self.snapshot_index.saturating_add(self.snapshot_count) {
            return Ok(());
        }
        let status = self.node.status();
        // With peers, the log keeps the last entries before the snapshot so a follower that
        // is a little behind catches up from the log (a snapshot copies the whole key space).
        let members = status.conf_state.voters.len() + status.conf_state.learners.len();
        let keep = if members > 1 {
            self.snapshot_catchup_entries
        } else {
            0
        };
        let index = applied.saturating_sub(keep);
        if index <= self.snapshot_index {
            return Ok(());
        }
        // The membership in force must be the one as of `index`: wait while a change
        // appended after it is pending.
        if status.conf_index > index {
            return Ok(());
        }
        let term =
            cairn_raft::Storage::term(self.node.storage(), index).map_err(|e| e.to_string())?;
        // Membership first: a snapshot marker in the WAL must always find its own.
        let key = snapshot_conf_key(index);
        let conf = encode_conf_state(&status.conf_state);
        self.store
            .put_meta(&[(key.as_slice(), Some(conf.as_slice()))])
            .map_err(|e| format!("recording the snapshot's membership: {e}"))?;
        // The key space must be durable at `applied` ≥ `index` before the log before `index`
        // goes: a restart replays from the key space's applied index.
        self.store_checkpoints.now(&self.store)?;
        self.node
            .storage_mut()
            .compact(cairn_raft::SnapshotMeta {
                index,
                term,
                conf_state: status.conf_state,
            })
            .map_err(|e| format!("snapshot at {index}: {e}"))?;
        self.snapshot_index = index;
        tracing::info!(index, "snapshot taken; WAL segments before it released");
        Ok(())
    }
}
