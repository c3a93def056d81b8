//! The node's view of the log: durable entries (through [`Storage`]) followed by the unstable
//! tail, plus the commit, apply and persistence cursors.

use crate::error::{Error, StorageError};
use crate::message::{Entry, SnapshotMeta};
use crate::storage::Storage;
use crate::unstable::Unstable;

/// Durable log + unstable tail + cursors.
pub(crate) struct RaftLog<S: Storage> {
    pub(crate) storage: S,
    pub(crate) unstable: Unstable,
    /// Highest index known committed by a quorum.
    pub(crate) committed: u64,
    /// Highest index the caller reported applied.
    pub(crate) applied: u64,
    /// Highest index handed out for applying (>= applied).
    pub(crate) applying: u64,
    /// Highest index the caller reported durable that is still part of this log.
    pub(crate) persisted: u64,
}

impl<S: Storage> RaftLog<S> {
    pub(crate) fn new(storage: S, committed: u64, applied: u64) -> Result<RaftLog<S>, Error> {
        let first = storage.first_index()?;
        let last = storage.last_index()?;
        // Whatever the storage holds is committed up to the snapshot at least.
        let floor = first - 1;
        let committed = committed.max(floor).min(last);
        let applied = applied.max(floor).min(committed);
        Ok(RaftLog {
            storage,
            unstable: Unstable::new(last + 1),
            committed,
            applied,
            applying: applied,
            persisted: last,
        })
    }

    pub(crate) fn first_index(&self) -> Result<u64, StorageError> {
        match self.unstable.maybe_first_index() {
            Some(i) => Ok(i),
            None => self.storage.first_index(),
        }
    }

    pub(crate) fn last_index(&self) -> Result<u64, StorageError> {
        match self.unstable.maybe_last_index() {
            Some(i) => Ok(i),
            None => self.storage.last_index(),
        }
    }

    pub(crate) fn term(&self, index: u64) -> Result<u64, StorageError> {
        let first = self.first_index()?;
        let last = self.last_index()?;
        if index + 1 < first {
            return Err(StorageError::Compacted {
                index,
                first_index: first,
            });
        }
        if index > last {
            return Err(StorageError::Unavailable {
                index,
                last_index: last,
            });
        }
        if let Some(t) = self.unstable.maybe_term(index) {
            return Ok(t);
        }
        self.storage.term(index)
    }

    pub(crate) fn last_term(&self) -> Result<u64, StorageError> {
        self.term(self.last_index()?)
    }

    /// Whether the entry at `index` has `term` (false if unknown).
    pub(crate) fn match_term(&self, index: u64, term: u64) -> bool {
        matches!(self.term(index), Ok(t) if t == term)
    }

    /// Raft's "at least as up to date" comparison (§5.4.1).
    pub(crate) fn is_up_to_date(&self, last_index: u64, last_term: u64) -> Result<bool, Error> {
        let my_term = self.last_term()?;
        Ok(last_term > my_term || (last_term == my_term && last_index >= self.last_index()?))
    }

    /// Appends leader-sent `entries` that follow `(prev_index, prev_term)`. Returns `None` if
    /// the consistency check fails, else `Some(first)` where `first` is the index of the first
    /// entry actually written (`None` if all were already present).
    pub(crate) fn maybe_append(
        &mut self,
        prev_index: u64,
        prev_term: u64,
        leader_commit: u64,
        entries: &[Entry],
    ) -> Result<Option<Option<u64>>, Error> {
        if !self.match_term(prev_index, prev_term) {
            return Ok(None);
        }
        let last_new = prev_index + entries.len() as u64;
        let conflict = self.find_conflict(entries)?;
        let first_written = (conflict != 0).then_some(conflict);
        if conflict != 0 {
            if conflict <= self.committed {
                // A leader never rewrites committed entries; a message that tries is corrupt.
                return Err(Error::InvalidMessage {
                    from: 0,
                    why: "append conflicts with a committed entry",
                });
            }
            let skip = (conflict - prev_index - 1) as usize;
            self.append(&entries[skip..])?;
        }
        self.commit_to(leader_commit.min(last_new));
        Ok(Some(first_written))
    }

    /// Appends entries at the tail (possibly replacing a suffix). Returns the new last index.
    pub(crate) fn append(&mut self, entries: &[Entry]) -> Result<u64, Error> {
        let Some(first) = entries.first() else {
            return Ok(self.last_index()?);
        };
        debug_assert!(
            first.index > self.committed,
            "committed entries are never rewritten"
        );
        if first.index <= self.persisted {
            self.persisted = first.index - 1;
        }
        self.unstable.truncate_and_append(entries);
        Ok(self.last_index()?)
    }

    /// Index of the first entry that is new or disagrees with our log; 0 if all match.
    fn find_conflict(&self, entries: &[Entry]) -> Result<u64, Error> {
        let last = self.last_index()?;
        for e in entries {
            if e.index > last {
                return Ok(e.index);
            }
            match self.term(e.index) {
                Ok(t) if t == e.term => {}
                // Compacted entries are committed, hence matching.
                Err(StorageError::Compacted { .. }) => {}
                Ok(_) => return Ok(e.index),
                Err(err) => return Err(err.into()),
            }
        }
        Ok(0)
    }

    /// Largest index `<= index` whose term is `<= term`, with that term. Terms never decrease
    /// along the log, so a binary search finds it; this is what lets a leader skip a whole
    /// conflicting term per round trip. Stops at the compaction boundary.
    pub(crate) fn find_conflict_by_term(&self, index: u64, term: u64) -> Result<(u64, u64), Error> {
        let floor = self.first_index()? - 1;
        let mut hi = index.min(self.last_index()?);
        if hi <= floor {
            return Ok((floor, self.term(floor)?));
        }
        if self.term(hi)? <= term {
            return Ok((hi, self.term(hi)?));
        }
        // Invariant: term(hi) > term; answer in [floor, hi).
        let mut lo = floor;
        while lo + 1 < hi {
            let mid = lo + (hi - lo) / 2;
            if self.term(mid)? <= term {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        Ok((lo, self.term(lo)?))
    }

    /// Entries in `[low, high)`, capped at `max_bytes` (at least one).
    pub(crate) fn entries(
        &self,
        low: u64,
        high: u64,
        max_bytes: u64,
    ) -> Result<Vec<Entry>, StorageError> {
        if low >= high {
            return Ok(Vec::new());
        }
        let first = self.first_index()?;
        if low < first {
            return Err(StorageError::Compacted {
                index: low,
                first_index: first,
            });
        }
        let last = self.last_index()?;
        if high > last + 1 {
            return Err(StorageError::Unavailable {
                index: high - 1,
                last_index: last,
            });
        }
        let offset = self.unstable.offset;
        let mut out = if low < offset {
            self.storage.entries(low, high.min(offset), max_bytes)?
        } else {
            Vec::new()
        };
        let stored_all = low + out.len() as u64 == high.min(offset);
        if high > offset && (low >= offset || stored_all) {
            let mut bytes: u64 = out.iter().map(Entry::size_bytes).sum();
            for e in self.unstable.slice(low.max(offset), high) {
                bytes += e.size_bytes();
                if !out.is_empty() && bytes > max_bytes {
                    break;
                }
                out.push(e.clone());
            }
        }
        Ok(out)
    }

    /// Commits `index` if it is in the current term (the Figure 8 rule).
    pub(crate) fn maybe_commit(&mut self, index: u64, term: u64) -> bool {
        if index > self.committed && self.match_term(index, term) {
            self.commit_to(index);
            return true;
        }
        false
    }

    pub(crate) fn commit_to(&mut self, index: u64) {
        if index > self.committed {
            let last = self.last_index().unwrap_or(self.committed);
            self.committed = index.min(last);
        }
    }

    /// The next entries to apply: committed, durable here, not yet handed out.
    pub(crate) fn next_committed_entries(&self, max_bytes: u64) -> Result<Vec<Entry>, Error> {
        let low = self.applying + 1;
        let high = self.committed.min(self.persisted) + 1;
        if low >= high || self.unstable.snapshot.is_some() {
            return Ok(Vec::new());
        }
        Ok(self.entries(low, high, max_bytes)?)
    }

    pub(crate) fn has_next_committed_entries(&self) -> bool {
        self.unstable.snapshot.is_none() && self.applying < self.committed.min(self.persisted)
    }

    /// The caller made entries through `(index, term)` durable.
    pub(crate) fn stable_to(&mut self, index: u64, term: u64) {
        if self.unstable.stable_to(index, term) {
            self.persisted = self.persisted.max(index);
        }
    }

    /// Install a snapshot from the leader: the whole log is replaced by it.
    pub(crate) fn restore(&mut self, snapshot: SnapshotMeta) {
        self.committed = snapshot.index;
        self.persisted = self.persisted.min(snapshot.index.saturating_sub(1));
        self.unstable.restore(snapshot);
    }

    /// The caller installed the snapshot at `index`.
    pub(crate) fn stable_snapshot_to(&mut self, index: u64) {
        if self.unstable.stable_snapshot_to(index) {
            self.persisted = self.persisted.max(index);
            self.applied = self.applied.max(index);
            self.applying = self.applying.max(index);
        }
    }

    pub(crate) fn applied_to(&mut self, index: u64) {
        debug_assert!(
            index <= self.committed,
            "only committed entries are applied"
        );
        self.applied = self.applied.max(index);
        self.applying = self.applying.max(index);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemStorage;
    use proptest::prelude::*;

    fn log_from_terms(terms: &[u64], compact_to: u64) -> RaftLog<MemStorage> {
        let mut s = MemStorage::default();
        let entries: Vec<Entry> = terms
            .iter()
            .zip(1u64..)
            .map(|(&t, i)| Entry::new(i, t, Vec::new()))
            .collect();
        s.append(&entries).unwrap();
        if compact_to > 0 {
            s.compact(compact_to, Default::default(), Vec::new())
                .unwrap();
        }
        RaftLog::new(s, compact_to, compact_to).unwrap()
    }

    fn sorted_terms() -> impl Strategy<Value = Vec<u64>> {
        proptest::collection::vec(1u64..6, 0..40).prop_map(|mut v| {
            v.sort_unstable();
            v
        })
    }

    proptest! {
        /// The binary search agrees with the obvious backwards scan.
        #[test]
        fn find_conflict_by_term_matches_linear_scan(
            terms in sorted_terms(),
            index in 0u64..50,
            term in 0u64..7,
            compact_frac in 0u64..100,
        ) {
            let compact_to = terms.len() as u64 * compact_frac / 100;
            let log = log_from_terms(&terms, compact_to);
            let term_at = |i: u64| if i == 0 { 0 } else { terms[(i - 1) as usize] };
            // Nothing below the compaction point can be looked at: the search stops there.
            let mut expect = index.min(terms.len() as u64).max(compact_to);
            while expect > compact_to && term_at(expect) > term {
                expect -= 1;
            }
            let got = log.find_conflict_by_term(index, term).unwrap();
            prop_assert_eq!(got, (expect, term_at(expect)));
        }

        /// Appending leader entries yields the leader's log after the match point, and never
        /// changes what was committed.
        #[test]
        fn maybe_append_converges_to_the_leader_log(
            ours in sorted_terms(),
            leader_extra in proptest::collection::vec(6u64..9, 0..10),
            prev_frac in 0u64..100,
        ) {
            let mut leader_terms = ours.clone();
            let prev = ours.len() as u64 * prev_frac / 100;
            leader_terms.truncate(prev as usize);
            let mut extra = leader_extra.clone();
            extra.sort_unstable();
            leader_terms.extend(extra);
            let mut log = log_from_terms(&ours, 0);
            let prev_term = if prev == 0 { 0 } else { ours[(prev - 1) as usize] };
            let entries: Vec<Entry> = leader_terms[prev as usize..]
                .iter()
                .zip(prev + 1..)
                .map(|(&t, i)| Entry::new(i, t, Vec::new()))
                .collect();
            let res = log.maybe_append(prev, prev_term, 0, &entries).unwrap();
            prop_assert!(res.is_some());
            let last = prev + entries.len() as u64;
            for i in 1..=last {
                prop_assert_eq!(log.term(i).unwrap(), leader_terms[(i - 1) as usize]);
            }
        }
    }
}
