//! Log entries (and at most one snapshot) that raft has accepted but the caller has not yet
//! reported durable. They are handed out in `Ready` and dropped here once acknowledged.

use crate::message::{Entry, SnapshotMeta};

/// The not-yet-durable tail of the log.
#[derive(Debug, Default)]
pub(crate) struct Unstable {
    /// A snapshot received from the leader, waiting to be installed.
    pub(crate) snapshot: Option<SnapshotMeta>,
    /// Entries starting at `offset`, contiguous.
    pub(crate) entries: Vec<Entry>,
    /// Index of `entries[0]` (where the next entry goes if `entries` is empty).
    pub(crate) offset: u64,
}

impl Unstable {
    pub(crate) fn new(offset: u64) -> Unstable {
        Unstable {
            snapshot: None,
            entries: Vec::new(),
            offset,
        }
    }

    /// First index known only here (only if a snapshot is pending).
    pub(crate) fn maybe_first_index(&self) -> Option<u64> {
        self.snapshot.as_ref().map(|s| s.index + 1)
    }

    /// Last index known here.
    pub(crate) fn maybe_last_index(&self) -> Option<u64> {
        match (self.entries.last(), &self.snapshot) {
            (Some(e), _) => Some(e.index),
            (None, Some(s)) => Some(s.index),
            (None, None) => None,
        }
    }

    /// Term at `index` if this tail knows it.
    pub(crate) fn maybe_term(&self, index: u64) -> Option<u64> {
        if index < self.offset {
            return match &self.snapshot {
                Some(s) if s.index == index => Some(s.term),
                _ => None,
            };
        }
        self.entries
            .get((index - self.offset) as usize)
            .map(|e| e.term)
    }

    /// The caller made entries up to `index` (of `term`) durable. Ignored if the tail has
    /// since been rewritten, because then what was written is no longer our log.
    pub(crate) fn stable_to(&mut self, index: u64, term: u64) -> bool {
        if index < self.offset || self.maybe_term(index) != Some(term) {
            return false;
        }
        let n = (index + 1 - self.offset) as usize;
        self.entries.drain(..n);
        self.offset = index + 1;
        true
    }

    /// The caller installed the snapshot at `index`.
    pub(crate) fn stable_snapshot_to(&mut self, index: u64) -> bool {
        if matches!(&self.snapshot, Some(s) if s.index == index) {
            self.snapshot = None;
            return true;
        }
        false
    }

    /// Replace everything with a snapshot.
    pub(crate) fn restore(&mut self, snapshot: SnapshotMeta) {
        self.offset = snapshot.index + 1;
        self.entries.clear();
        self.snapshot = Some(snapshot);
    }

    /// Appends `entries`, dropping anything at or after their first index.
    pub(crate) fn truncate_and_append(&mut self, entries: &[Entry]) {
        let Some(first) = entries.first() else {
            return;
        };
        let after = first.index;
        if after == self.offset + self.entries.len() as u64 {
            self.entries.extend_from_slice(entries);
        } else if after <= self.offset {
            // Replaces the whole tail, and possibly durable entries too: the caller's next
            // append overwrites those.
            self.offset = after;
            self.entries.clear();
            self.entries.extend_from_slice(entries);
        } else {
            self.entries.truncate((after - self.offset) as usize);
            self.entries.extend_from_slice(entries);
        }
        debug_assert!(
            self.entries
                .iter()
                .enumerate()
                .all(|(i, e)| e.index == self.offset + i as u64),
            "unstable entries must stay contiguous from offset"
        );
    }

    /// Entries in `[low, high)`; the caller checked that the range lies within this tail.
    pub(crate) fn slice(&self, low: u64, high: u64) -> &[Entry] {
        debug_assert!(low >= self.offset && high <= self.offset + self.entries.len() as u64);
        &self.entries[(low - self.offset) as usize..(high - self.offset) as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(index: u64, term: u64) -> Entry {
        Entry::new(index, term, Vec::new())
    }

    #[test]
    fn truncate_and_append_handles_every_overlap() {
        let mut u = Unstable::new(5);
        u.truncate_and_append(&[e(5, 1), e(6, 1)]);
        u.truncate_and_append(&[e(7, 1)]);
        assert_eq!(u.maybe_last_index(), Some(7));
        u.truncate_and_append(&[e(6, 2)]);
        assert_eq!(u.maybe_last_index(), Some(6));
        assert_eq!(u.maybe_term(6), Some(2));
        u.truncate_and_append(&[e(3, 3)]);
        assert_eq!(u.offset, 3);
        assert_eq!(u.maybe_last_index(), Some(3));
    }

    #[test]
    fn stable_to_ignores_a_rewritten_tail() {
        let mut u = Unstable::new(1);
        u.truncate_and_append(&[e(1, 1), e(2, 1)]);
        assert!(!u.stable_to(2, 2));
        assert!(u.stable_to(1, 1));
        assert_eq!(u.offset, 2);
        assert_eq!(u.entries.len(), 1);
    }
}
