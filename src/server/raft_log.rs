//! Raft's log, durable in the WAL: entries, hard state and the snapshot marker, with the term
//! of every retained entry and the newest entries kept in memory so Raft's reads rarely touch
//! the disk.
//!
//! An entry's WAL payload is one kind byte (0 normal, 1 membership change; the byte is the
//! version boundary: other values refuse to load) followed by the entry's data.

use std::collections::VecDeque;
use std::sync::Arc;

use cairn_raft::{ConfState, Entry, EntryKind, HardState, SnapshotMeta, Storage, StorageError};
use cairn_wal::{AppendFuture, Record, Wal, WalError};

const KIND_NORMAL: u8 = 0;
const KIND_CONF_CHANGE: u8 = 1;

/// Newest entries kept in memory, by count.
const MAX_CACHED_ENTRIES: usize = 4096;

pub fn encode_entry(entry: &Entry) -> cairn_wal::Entry {
    let kind = match entry.kind {
        EntryKind::Normal => KIND_NORMAL,
        EntryKind::ConfChange => KIND_CONF_CHANGE,
    };
    let mut payload = Vec::with_capacity(1 + entry.data.len());
    payload.push(kind);
    payload.extend_from_slice(&entry.data);
    cairn_wal::Entry {
        index: entry.index,
        term: entry.term,
        payload,
    }
}

pub fn decode_entry(entry: cairn_wal::Entry) -> Result<Entry, StorageError> {
    let kind = match entry.payload.first() {
        Some(&KIND_NORMAL) => EntryKind::Normal,
        Some(&KIND_CONF_CHANGE) => EntryKind::ConfChange,
        other => {
            return Err(StorageError::Io(format!(
                "entry {} has unknown kind byte {other:?}",
                entry.index
            )))
        }
    };
    Ok(Entry {
        index: entry.index,
        term: entry.term,
        kind,
        data: Arc::from(&entry.payload[1..]),
    })
}

fn wal_error(err: WalError) -> StorageError {
    StorageError::Io(err.to_string())
}

/// The WAL seen as Raft's [`Storage`].
pub struct RaftLog {
    wal: Wal,
    hard_state: HardState,
    snapshot: SnapshotMeta,
    /// First retained entry's index.
    first_index: u64,
    /// Term of each retained entry, from `first_index` on.
    terms: VecDeque<u64>,
    /// The newest entries, ending at the last index.
    recent: VecDeque<Entry>,
}

impl RaftLog {
    /// Loads the log's in-memory view from a recovered WAL. `snapshot_conf` is the membership
    /// recorded with the last snapshot (the WAL's snapshot marker holds only index and term).
    pub fn load(wal: Wal, snapshot_conf: ConfState) -> Result<Self, StorageError> {
        let hard_state = wal
            .hard_state()
            .map_or_else(HardState::default, |h| HardState {
                term: h.term,
                vote: h.vote,
                commit: h.commit,
            });
        let snapshot = wal
            .snapshot()
            .map_or_else(SnapshotMeta::default, |s| SnapshotMeta {
                index: s.index,
                term: s.term,
                conf_state: snapshot_conf,
            });
        // Segments holding entries the snapshot covers may linger until released; Raft never
        // needs them again.
        let first_index = wal.first_index().max(snapshot.index + 1);
        let next_index = wal.next_index();
        let mut terms = VecDeque::new();
        let mut recent = VecDeque::new();
        let mut low = first_index;
        // Read in chunks so a long log does not need one huge buffer.
        while low < next_index {
            let high = (low + 1024).min(next_index);
            for entry in wal.read_entries(low, high).map_err(wal_error)? {
                terms.push_back(entry.term);
                recent.push_back(decode_entry(entry)?);
                if recent.len() > MAX_CACHED_ENTRIES {
                    recent.pop_front();
                }
            }
            low = high;
        }
        Ok(RaftLog {
            wal,
            hard_state,
            snapshot,
            first_index,
            terms,
            recent,
        })
    }

    pub fn wal(&self) -> &Wal {
        &self.wal
    }

    fn next_index(&self) -> u64 {
        self.first_index + self.terms.len() as u64
    }

    /// Whether [`RaftLog::persist`] of these will write and fdatasync the WAL. Term and vote
    /// must be durable before anything acts on them; the commit index need not be (Raft
    /// learns it again from the leader, and a restart raises it to what the key space
    /// applied), so a change of commit alone costs no fsync: it rides along with the next
    /// append (etcd's WAL skips the sync the same way).
    pub fn must_sync(&self, entries: &[Entry], hard_state: Option<&HardState>) -> bool {
        !entries.is_empty()
            || hard_state.is_some_and(|hs| {
                hs.term != self.hard_state.term || hs.vote != self.hard_state.vote
            })
    }

    /// Makes what a `Ready` asks durable: entries (replacing any conflicting suffix), then
    /// the hard state. Returns when the WAL has synced them.
    pub fn persist(
        &mut self,
        entries: &[Entry],
        hard_state: Option<HardState>,
    ) -> Vec<AppendFuture> {
        let mut pending = Vec::new();
        if let Some(first) = entries.first() {
            if first.index < self.next_index() {
                pending.push(self.wal.truncate_from(first.index));
                let keep = first.index.saturating_sub(self.first_index) as usize;
                self.terms.truncate(keep);
                while self.recent.back().is_some_and(|e| e.index >= first.index) {
                    self.recent.pop_back();
                }
            }
            // Raft hands out contiguous entries that continue the log.
            debug_assert_eq!(first.index, self.next_index(), "entries leave a gap");
        }
        let must_sync = self.must_sync(entries, hard_state.as_ref());
        let mut records: Vec<Record> = entries
            .iter()
            .map(|e| Record::Entry(encode_entry(e)))
            .collect();
        for entry in entries {
            self.terms.push_back(entry.term);
            self.recent.push_back(entry.clone());
            if self.recent.len() > MAX_CACHED_ENTRIES {
                self.recent.pop_front();
            }
        }
        if let Some(hs) = hard_state {
            self.hard_state = hs;
        }
        if must_sync {
            records.push(Record::HardState(cairn_wal::HardState {
                term: self.hard_state.term,
                vote: self.hard_state.vote,
                commit: self.hard_state.commit,
            }));
            // Written on this (the Raft loop's) thread when the log is idle, as it is between
            // turns: the write+fdatasync without two thread hand-offs.
            pending.push(self.wal.append_inline(records));
        }
        pending
    }

    /// Raises the commit index to `applied` at start-up: an applied entry was committed,
    /// though the commit index recorded with the log may be older (it is not synced on its
    /// own; see [`RaftLog::persist`]).
    pub fn commit_at_least(&mut self, applied: u64) {
        if self.hard_state.commit < applied {
            self.hard_state.commit = applied;
        }
    }
}

impl RaftLog {
    /// Makes `snapshot` (the key space at its index, already durable) the log's new start:
    /// records the marker in the WAL, forgets the covered entries, and deletes the WAL
    /// segments holding only them. Returns when both are durable.
    pub fn compact(&mut self, snapshot: SnapshotMeta) -> Result<(), StorageError> {
        // Only what is applied (hence durable in the key space) may be compacted.
        debug_assert!(snapshot.index < self.next_index(), "snapshot past the log");
        if snapshot.index <= self.snapshot.index {
            return Ok(());
        }
        self.wal
            .append(vec![Record::Snapshot(cairn_wal::SnapshotMarker {
                index: snapshot.index,
                term: snapshot.term,
            })])
            .wait()
            .map_err(wal_error)?;
        let drop = (snapshot.index + 1).saturating_sub(self.first_index) as usize;
        self.terms.drain(..drop.min(self.terms.len()));
        while self
            .recent
            .front()
            .is_some_and(|e| e.index <= snapshot.index)
        {
            self.recent.pop_front();
        }
        self.first_index = snapshot.index + 1;
        self.snapshot = snapshot;
        self.wal
            .release_before(self.first_index)
            .wait()
            .map_err(wal_error)
    }
}

impl RaftLog {
    /// Makes a snapshot received from the leader (its key space already sealed beside the
    /// current one) the log's new start: entries after it are cut, the marker and `hard_state`
    /// recorded; the log then holds nothing before `snapshot.index + 1`. Returns when durable.
    pub fn install_snapshot(
        &mut self,
        snapshot: SnapshotMeta,
        hard_state: HardState,
    ) -> Result<(), StorageError> {
        debug_assert!(
            snapshot.index > self.snapshot.index,
            "an older snapshot installed"
        );
        if snapshot.index + 1 < self.next_index() {
            self.wal
                .truncate_from(snapshot.index + 1)
                .wait()
                .map_err(wal_error)?;
        }
        self.wal
            .append(vec![
                Record::Snapshot(cairn_wal::SnapshotMarker {
                    index: snapshot.index,
                    term: snapshot.term,
                }),
                Record::HardState(cairn_wal::HardState {
                    term: hard_state.term,
                    vote: hard_state.vote,
                    commit: hard_state.commit,
                }),
            ])
            .wait()
            .map_err(wal_error)?;
        self.terms.clear();
        self.recent.clear();
        self.first_index = snapshot.index + 1;
        self.snapshot = snapshot;
        self.hard_state = hard_state;
        self.wal
            .release_before(self.first_index)
            .wait()
            .map_err(wal_error)
    }
}

/// The membership recorded with a snapshot, as stored beside the key space: a format byte
/// (1), then voters and learners, each a little-endian u32 count and u64 ids.
pub fn encode_conf_state(conf: &ConfState) -> Vec<u8> {
    let mut out = vec![1u8];
    for ids in [&conf.voters, &conf.learners] {
        out.extend_from_slice(&(ids.len() as u32).to_le_bytes());
        for id in ids {
            out.extend_from_slice(&id.to_le_bytes());
        }
    }
    out
}

pub fn decode_conf_state(bytes: &[u8]) -> Result<ConfState, StorageError> {
    let bad = |why: &str| StorageError::Io(format!("stored membership is unreadable: {why}"));
    let (version, mut rest) = bytes.split_first().ok_or_else(|| bad("empty"))?;
    if *version != 1 {
        return Err(bad(&format!("format {version}")));
    }
    let mut lists = Vec::with_capacity(2);
    for _ in 0..2 {
        let (count, after) = rest
            .split_at_checked(4)
            .ok_or_else(|| bad("truncated count"))?;
        let count = u32::from_le_bytes(count.try_into().map_err(|_| bad("count"))?) as usize;
        let (ids, after) = after
            .split_at_checked(count.checked_mul(8).ok_or_else(|| bad("count"))?)
            .ok_or_else(|| bad("truncated ids"))?;
        lists.push(
            ids.chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                .collect::<Vec<u64>>(),
        );
        rest = after;
    }
    if !rest.is_empty() {
        return Err(bad("trailing bytes"));
    }
    let learners = lists.pop().unwrap_or_default();
    let voters = lists.pop().unwrap_or_default();
    Ok(ConfState { voters, learners })
}

impl Storage for RaftLog {
    fn initial_state(&self) -> Result<(HardState, ConfState), StorageError> {
        Ok((self.hard_state, self.snapshot.conf_state.clone()))
    }

    fn entries(&self, low: u64, high: u64, max_bytes: u64) -> Result<Vec<Entry>, StorageError> {
        if low < self.first_index {
            return Err(StorageError::Compacted {
                index: low,
                first_index: self.first_index,
            });
        }
        if high > self.next_index() {
            return Err(StorageError::Unavailable {
                index: high.saturating_sub(1),
                last_index: self.next_index().saturating_sub(1),
            });
        }
        let cached_from = self.recent.front().map_or(u64::MAX, |e| e.index);
        if low >= high {
            return Ok(Vec::new());
        }
        let entries: Vec<Entry> = if low >= cached_from {
            let skip = (low - cached_from) as usize;
            self.recent
                .iter()
                .skip(skip)
                .take((high - low) as usize)
                .cloned()
                .collect()
        } else {
            // Bounded at the source: a far-behind reader never pulls the whole tail.
            self.wal
                .read_entries_limited(low, high, max_bytes)
                .map_err(wal_error)?
                .into_iter()
                .map(decode_entry)
                .collect::<Result<_, _>>()?
        };
        let mut total = 0u64;
        let mut limited = Vec::with_capacity(entries.len());
        for entry in entries {
            total += entry.data.len() as u64 + 24;
            if !limited.is_empty() && total > max_bytes {
                break;
            }
            limited.push(entry);
        }
        Ok(limited)
    }

    fn term(&self, index: u64) -> Result<u64, StorageError> {
        if index == self.snapshot.index {
            return Ok(self.snapshot.term);
        }
        if index < self.first_index {
            return Err(StorageError::Compacted {
                index,
                first_index: self.first_index,
            });
        }
        self.terms
            .get((index - self.first_index) as usize)
            .copied()
            .ok_or(StorageError::Unavailable {
                index,
                last_index: self.next_index().saturating_sub(1),
            })
    }

    fn first_index(&self) -> Result<u64, StorageError> {
        Ok(self.first_index)
    }

    fn last_index(&self) -> Result<u64, StorageError> {
        Ok(self.next_index().saturating_sub(1).max(self.snapshot.index))
    }

    fn snapshot(&self) -> Result<SnapshotMeta, StorageError> {
        Ok(self.snapshot.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_of_commit_alone_is_not_synced_and_start_up_raises_it_to_applied() {
        let dir = tempfile::tempdir().unwrap();
        let config = cairn_wal::WalConfig {
            segment_bytes: 1 << 20,
            ..cairn_wal::WalConfig::default()
        };
        let (wal, _) = Wal::open(dir.path(), config.clone()).unwrap();
        let mut log = RaftLog::load(wal, ConfState::default()).unwrap();
        let entry = |index| Entry {
            index,
            term: 1,
            kind: EntryKind::Normal,
            data: Vec::new().into(),
        };
        let state = |term, commit| HardState {
            term,
            vote: 7,
            commit,
        };
        for pending in log.persist(&[entry(1), entry(2)], Some(state(1, 1))) {
            pending.wait().unwrap();
        }
        assert!(
            log.persist(&[], Some(state(1, 2))).is_empty(),
            "a new commit index alone waits for no sync"
        );
        drop(log);
        let (wal, _) = Wal::open(dir.path(), config.clone()).unwrap();
        let mut log = RaftLog::load(wal, ConfState::default()).unwrap();
        assert_eq!(
            log.initial_state().unwrap().0,
            state(1, 1),
            "it was not written"
        );
        log.commit_at_least(2);
        assert_eq!(
            log.initial_state().unwrap().0,
            state(1, 2),
            "raised to what was applied"
        );
        log.commit_at_least(1);
        assert_eq!(log.initial_state().unwrap().0.commit, 2, "never lowered");
        let pending = log.persist(&[], Some(state(2, 2)));
        assert_eq!(pending.len(), 1, "a new term is synced");
        for pending in pending {
            pending.wait().unwrap();
        }
        drop(log);
        let (wal, _) = Wal::open(dir.path(), config).unwrap();
        let log = RaftLog::load(wal, ConfState::default()).unwrap();
        assert_eq!(log.initial_state().unwrap().0, state(2, 2));
    }

    #[test]
    fn membership_round_trips_and_damage_is_refused() {
        let conf = ConfState {
            voters: vec![3, 1 << 40],
            learners: vec![9],
        };
        let bytes = encode_conf_state(&conf);
        assert_eq!(decode_conf_state(&bytes).unwrap(), conf);
        for cut in 0..bytes.len() {
            assert!(decode_conf_state(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut newer = bytes.clone();
        newer[0] = 2;
        assert!(decode_conf_state(&newer).is_err());
    }
}
