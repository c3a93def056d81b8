//! The in-memory index of live entries: Raft index → where its record is on disk.

use std::collections::VecDeque;

/// Where one entry's record lives. 16 bytes, so 1 GiB of 256-byte entries costs ~64 MiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EntryLoc {
    pub seq: u32,
    /// Offset of the frame header in the segment.
    pub offset: u32,
    pub body_len: u32,
    /// Chain CRC of the record before it, to verify the frame again when reading it back.
    pub prev_crc: u32,
}

/// Live entries `[first_index, next_index)`, contiguous by construction.
#[derive(Debug, Clone)]
pub(crate) struct EntryIndex {
    first_index: u64,
    locs: VecDeque<EntryLoc>,
}

impl EntryIndex {
    pub(crate) fn new(next_index: u64) -> EntryIndex {
        EntryIndex {
            first_index: next_index,
            locs: VecDeque::new(),
        }
    }

    pub(crate) fn first_index(&self) -> u64 {
        self.first_index
    }

    pub(crate) fn next_index(&self) -> u64 {
        self.first_index + self.locs.len() as u64
    }

    pub(crate) fn push(&mut self, index: u64, loc: EntryLoc) {
        // Callers validated contiguity before the record reached the disk.
        debug_assert_eq!(index, self.next_index(), "entries must be contiguous");
        if let Some(last) = self.locs.back() {
            // A later entry is always written after an earlier live one.
            debug_assert!((last.seq, last.offset) < (loc.seq, loc.offset));
        }
        self.locs.push_back(loc);
    }

    /// Drops entries ≥ `from`; below the first entry, the log becomes empty and restarts there.
    pub(crate) fn truncate_from(&mut self, from: u64) {
        if from <= self.first_index {
            self.locs.clear();
            self.first_index = from;
        } else if from < self.next_index() {
            self.locs.truncate((from - self.first_index) as usize);
        }
    }

    /// Drops every entry; the next one must have `next_index`.
    pub(crate) fn reset(&mut self, next_index: u64) {
        self.locs.clear();
        self.first_index = next_index;
    }

    /// Drops the entries stored in segments numbered below `seq` (they are a prefix).
    pub(crate) fn release_segments_before(&mut self, seq: u32) {
        while self.locs.front().is_some_and(|l| l.seq < seq) {
            self.locs.pop_front();
            self.first_index += 1;
        }
    }

    pub(crate) fn get(&self, index: u64) -> Option<EntryLoc> {
        let at = index.checked_sub(self.first_index)?;
        self.locs.get(usize::try_from(at).ok()?).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(seq: u32, offset: u32) -> EntryLoc {
        EntryLoc {
            seq,
            offset,
            body_len: 16,
            prev_crc: 0,
        }
    }

    #[test]
    fn truncation_release_and_reset_keep_indexes_contiguous() {
        let mut ix = EntryIndex::new(5);
        for (i, o) in (5..15).zip((64..).step_by(32)) {
            ix.push(i, loc(1 + (i >= 10) as u32, o));
        }
        assert_eq!((ix.first_index(), ix.next_index()), (5, 15));
        ix.truncate_from(12);
        assert_eq!(ix.next_index(), 12);
        ix.release_segments_before(2);
        assert_eq!((ix.first_index(), ix.next_index()), (10, 12));
        assert_eq!(ix.get(10).map(|l| l.seq), Some(2));
        assert_eq!(ix.get(9), None);
        ix.truncate_from(3);
        assert_eq!((ix.first_index(), ix.next_index()), (3, 3));
        ix.reset(100);
        assert_eq!((ix.first_index(), ix.next_index()), (100, 100));
    }
}
