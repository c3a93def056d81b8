//! The durable log as raft reads it. The caller implements [`Storage`] over its WAL; raft
//! only reads through it. Writes happen outside raft, when the caller carries out a `Ready`.
//! [`MemStorage`] is the in-memory implementation used by tests and the simulator.

use crate::error::StorageError;
use crate::message::{
    ConfChange, ConfState, Entry, EntryKind, HardState, NodeId, SnapshotMeta, NO_NODE,
};

/// Read access to what the caller has made durable.
///
/// The log held is `(snapshot.index, last_index]`, where the snapshot's `index`/`term` stand
/// in for the compacted prefix. An empty store has a snapshot at index 0, term 0.
pub trait Storage {
    /// Hard state and the membership as of the latest snapshot (raft rebuilds the current
    /// membership by reading the conf-change entries after it).
    fn initial_state(&self) -> Result<(HardState, ConfState), StorageError>;
    /// Entries in `[low, high)`, stopping early once `max_bytes` is reached (at least one entry
    /// is returned if any is asked for).
    fn entries(&self, low: u64, high: u64, max_bytes: u64) -> Result<Vec<Entry>, StorageError>;
    /// Term of the entry at `index`; the snapshot's index answers with the snapshot's term.
    fn term(&self, index: u64) -> Result<u64, StorageError>;
    /// First index of a retained entry (snapshot index + 1).
    fn first_index(&self) -> Result<u64, StorageError>;
    /// Last durable index (the snapshot's index if no entries follow it).
    fn last_index(&self) -> Result<u64, StorageError>;
    /// Description of the latest snapshot.
    fn snapshot(&self) -> Result<SnapshotMeta, StorageError>;
}

/// An in-memory [`Storage`] that also keeps snapshot bytes, for tests, the simulator and the
/// benchmark.
#[derive(Clone, Debug, Default)]
pub struct MemStorage {
    hard_state: HardState,
    snapshot: SnapshotMeta,
    snapshot_data: Vec<u8>,
    /// Entries after `snapshot.index`, contiguous.
    entries: Vec<Entry>,
}

impl MemStorage {
    /// An empty log with the given initial membership (a fresh cluster's bootstrap).
    pub fn new_with_conf(conf_state: ConfState) -> MemStorage {
        MemStorage {
            snapshot: SnapshotMeta {
                index: 0,
                term: 0,
                conf_state,
            },
            ..MemStorage::default()
        }
    }

    /// A founding member's initial log: entries `1..=n` add each voter (term 1) and are
    /// committed. Founders start from identical logs, and a member that joins later (empty
    /// storage) learns the whole configuration by replicating them, like any other entries.
    pub fn new_bootstrapped(voters: &[NodeId]) -> MemStorage {
        let entries: Vec<Entry> = voters
            .iter()
            .zip(1u64..)
            .map(|(&id, index)| Entry {
                index,
                term: 1,
                kind: EntryKind::ConfChange,
                data: ConfChange::AddVoter(id).encode().into(),
            })
            .collect();
        MemStorage {
            hard_state: HardState {
                term: 1,
                vote: NO_NODE,
                commit: entries.len() as u64,
            },
            entries,
            ..MemStorage::default()
        }
    }

    /// Records the hard state as durable.
    pub fn set_hard_state(&mut self, hard_state: HardState) {
        self.hard_state = hard_state;
    }

    /// The durable hard state.
    pub fn hard_state(&self) -> HardState {
        self.hard_state
    }

    /// Appends entries, replacing any conflicting suffix. Entries before the snapshot are
    /// ignored; a gap after the last entry is a caller bug and is refused.
    pub fn append(&mut self, entries: &[Entry]) -> Result<(), StorageError> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        let snap_index = self.snapshot.index;
        let skip = snap_index.saturating_sub(first.index - 1) as usize;
        if skip >= entries.len() {
            return Ok(());
        }
        let entries = &entries[skip..];
        let start = entries[0].index;
        let last = self.last_index_inner();
        if start > last + 1 {
            return Err(StorageError::Unavailable {
                index: start,
                last_index: last,
            });
        }
        self.entries.truncate((start - snap_index - 1) as usize);
        self.entries.extend_from_slice(entries);
        Ok(())
    }

    /// Replaces everything with a snapshot received from the leader.
    pub fn apply_snapshot(&mut self, meta: SnapshotMeta, data: Vec<u8>) {
        if meta.index <= self.snapshot.index {
            return;
        }
        // Keep the entries after the snapshot only if the log agrees with it at its index.
        let keep = matches!(self.term(meta.index), Ok(t) if t == meta.term);
        if keep {
            let drop = (meta.index - self.snapshot.index) as usize;
            self.entries.drain(..drop);
        } else {
            self.entries.clear();
        }
        self.hard_state.commit = self.hard_state.commit.max(meta.index);
        self.snapshot = meta;
        self.snapshot_data = data;
    }

    /// Takes a snapshot at `index` (already applied by the caller) and drops the log up to it.
    pub fn compact(
        &mut self,
        index: u64,
        conf_state: ConfState,
        data: Vec<u8>,
    ) -> Result<(), StorageError> {
        if index <= self.snapshot.index {
            return Ok(());
        }
        let term = self.term(index)?;
        let drop = (index - self.snapshot.index) as usize;
        self.entries.drain(..drop);
        self.snapshot = SnapshotMeta {
            index,
            term,
            conf_state,
        };
        self.snapshot_data = data;
        Ok(())
    }

    /// The bytes of the latest snapshot.
    pub fn snapshot_data(&self) -> &[u8] {
        &self.snapshot_data
    }

    fn last_index_inner(&self) -> u64 {
        self.snapshot.index + self.entries.len() as u64
    }
}

impl Storage for MemStorage {
    fn initial_state(&self) -> Result<(HardState, ConfState), StorageError> {
        Ok((self.hard_state, self.snapshot.conf_state.clone()))
    }

    fn entries(&self, low: u64, high: u64, max_bytes: u64) -> Result<Vec<Entry>, StorageError> {
        if low >= high {
            return Ok(Vec::new());
        }
        let first = self.snapshot.index + 1;
        let last = self.last_index_inner();
        if low < first {
            return Err(StorageError::Compacted {
                index: low,
                first_index: first,
            });
        }
        if high > last + 1 {
            return Err(StorageError::Unavailable {
                index: high - 1,
                last_index: last,
            });
        }
        let mut out = Vec::new();
        let mut bytes = 0u64;
        for e in &self.entries[(low - first) as usize..(high - first) as usize] {
            bytes += e.size_bytes();
            if !out.is_empty() && bytes > max_bytes {
                break;
            }
            out.push(e.clone());
        }
        Ok(out)
    }

    fn term(&self, index: u64) -> Result<u64, StorageError> {
        let snap = self.snapshot.index;
        if index < snap {
            return Err(StorageError::Compacted {
                index,
                first_index: snap + 1,
            });
        }
        if index == snap {
            return Ok(self.snapshot.term);
        }
        match self.entries.get((index - snap - 1) as usize) {
            Some(e) => Ok(e.term),
            None => Err(StorageError::Unavailable {
                index,
                last_index: self.last_index_inner(),
            }),
        }
    }

    fn first_index(&self) -> Result<u64, StorageError> {
        Ok(self.snapshot.index + 1)
    }

    fn last_index(&self) -> Result<u64, StorageError> {
        Ok(self.last_index_inner())
    }

    fn snapshot(&self) -> Result<SnapshotMeta, StorageError> {
        Ok(self.snapshot.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(index: u64, term: u64) -> Entry {
        Entry::new(index, term, vec![index as u8])
    }

    #[test]
    fn append_replaces_conflicting_suffix_and_refuses_gaps() {
        let mut s = MemStorage::default();
        s.append(&[e(1, 1), e(2, 1), e(3, 1)]).unwrap();
        s.append(&[e(2, 2)]).unwrap();
        assert_eq!(s.last_index().unwrap(), 2);
        assert_eq!(s.term(2).unwrap(), 2);
        assert!(s.append(&[e(5, 2)]).is_err());
    }

    #[test]
    fn compaction_keeps_term_of_snapshot_index() {
        let mut s = MemStorage::default();
        s.append(&[e(1, 1), e(2, 2), e(3, 3)]).unwrap();
        s.compact(2, ConfState::default(), vec![1]).unwrap();
        assert_eq!(s.first_index().unwrap(), 3);
        assert_eq!(s.term(2).unwrap(), 2);
        assert!(matches!(s.term(1), Err(StorageError::Compacted { .. })));
        assert!(matches!(
            s.entries(2, 4, u64::MAX),
            Err(StorageError::Compacted { .. })
        ));
        assert_eq!(s.entries(3, 4, 0).unwrap().len(), 1, "at least one entry");
    }
}
