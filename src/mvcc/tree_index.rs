//! The in-memory index of every key's history, ordered by key.
//!
//! Records are stored by revision, so a read by key goes through this index: it turns "keys
//! in this range, as of revision R" into the revisions of the records to fetch. It is rebuilt
//! from storage on start.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use super::key_index::{KeyAt, KeyIndex, KeyIndexError};
use super::key_range::KeyRange;
use super::revision::Revision;

/// Every key's history.
///
/// Histories live in one slab, reached two ways: by hash, because most reads name a single
/// key and an ordered map's search compared it with a dozen keys each behind a pointer (a
/// tenth of the server's time on single-key gets), and in key order for ranges. A range
/// walks the ordered map and reads each history straight from the slab (a hash probe per key
/// made a 100,000-key count three times slower).
#[derive(Debug, Default, Clone)]
pub struct TreeIndex {
    histories: Vec<KeyIndex>,
    /// Slab slots no key uses (their history is empty).
    free_slots: Vec<usize>,
    by_key: HashMap<Arc<[u8]>, usize>,
    ordered: BTreeMap<Arc<[u8]>, usize>,
}

/// A key as a read sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexedKey {
    pub key: Vec<u8>,
    pub at: KeyAt,
}

impl TreeIndex {
    fn history_mut(&mut self, key: &[u8]) -> Option<&mut KeyIndex> {
        let slot = *self.by_key.get(key)?;
        self.histories.get_mut(slot)
    }

    fn history(&self, key: &[u8]) -> Option<&KeyIndex> {
        self.histories.get(*self.by_key.get(key)?)
    }

    pub fn put(&mut self, key: &[u8], rev: Revision) -> Result<(), KeyIndexError> {
        match self.history_mut(key) {
            Some(index) => index.put(rev),
            None => {
                let mut index = KeyIndex::default();
                index.put(rev)?;
                self.insert_new(key, index);
                Ok(())
            }
        }
    }

    fn insert_new(&mut self, key: &[u8], index: KeyIndex) {
        let slot = match self.free_slots.pop() {
            Some(slot) => {
                self.histories[slot] = index;
                slot
            }
            None => {
                self.histories.push(index);
                self.histories.len() - 1
            }
        };
        let key: Arc<[u8]> = Arc::from(key);
        self.ordered.insert(Arc::clone(&key), slot);
        self.by_key.insert(key, slot);
        // Why: a key reachable one way and not the other would be invisible to some reads.
        debug_assert_eq!(self.ordered.len(), self.by_key.len(), "both ways agree");
        debug_assert_eq!(
            self.by_key.len() + self.free_slots.len(),
            self.histories.len(),
            "every slot is a key's or free"
        );
    }

    fn remove(&mut self, key: &[u8]) {
        if let Some(slot) = self.by_key.remove(key) {
            self.ordered.remove(key);
            self.histories[slot] = KeyIndex::default();
            self.free_slots.push(slot);
        }
    }

    pub fn tombstone(&mut self, key: &[u8], rev: Revision) -> Result<(), KeyIndexError> {
        self.history_mut(key)
            .ok_or(KeyIndexError::NotFound)?
            .tombstone(rev)
    }

    /// Adds a key found in storage while rebuilding, from its oldest stored record.
    pub fn restore(&mut self, key: &[u8], created: Revision, modified: Revision, version: i64) {
        let index = KeyIndex::restore(created, modified, version);
        match self.history_mut(key) {
            Some(existing) => *existing = index,
            None => self.insert_new(key, index),
        }
    }

    pub fn contains_key(&self, key: &[u8]) -> bool {
        self.by_key.contains_key(key)
    }

    pub fn get(&self, key: &[u8], at: i64) -> Option<KeyAt> {
        self.history(key)?.get(at)
    }

    /// Visits, in key order, every key in `range` that exists at main revision `at`, until
    /// `visit` returns false.
    pub fn visit(&self, range: &KeyRange, at: i64, mut visit: impl FnMut(&[u8], KeyAt) -> bool) {
        if range.is_empty() {
            return;
        }
        if let KeyRange::Single(key) = range {
            if let Some(found) = self.history(key).and_then(|index| index.get(at)) {
                visit(key, found);
            }
            return;
        }
        for (key, &slot) in self.ordered.range::<[u8], _>(range.bounds()) {
            if let Some(found) = self.histories[slot].get(at) {
                if !visit(key, found) {
                    return;
                }
            }
        }
    }

    /// Keys in `range` existing at `at`, in key order, at most `limit` of them (0: all), and
    /// the number of such keys without the limit.
    pub fn range(&self, range: &KeyRange, at: i64, limit: usize) -> (Vec<IndexedKey>, usize) {
        let mut found = Vec::new();
        let mut total = 0;
        self.visit(range, at, |key, at| {
            total += 1;
            if limit == 0 || found.len() < limit {
                found.push(IndexedKey {
                    key: key.to_vec(),
                    at,
                });
            }
            true
        });
        (found, total)
    }

    /// Keys in `range` existing at `at`, in key order, at most `limit` of them (0: all), and
    /// their number plus one if more follow.
    pub fn page(&self, range: &KeyRange, at: i64, limit: usize) -> (Vec<IndexedKey>, usize) {
        let mut found = Vec::new();
        let mut more = false;
        self.visit(range, at, |key, at| {
            if limit != 0 && found.len() == limit {
                more = true;
                return false;
            }
            found.push(IndexedKey {
                key: key.to_vec(),
                at,
            });
            true
        });
        let count = found.len() + usize::from(more);
        (found, count)
    }

    /// Undoes every change to `key` with main revision > `main` (see
    /// [`KeyIndex::roll_back_after`]).
    pub fn roll_back_after(&mut self, key: &[u8], main: i64) {
        if let Some(index) = self.history_mut(key) {
            if index.roll_back_after(main) {
                self.remove(key);
            }
        }
    }

    /// The revisions ≤ `at` that reads from `at` on need, as [`TreeIndex::compact`] would
    /// return them, without changing anything.
    pub fn compaction_keep_set(&self, at: i64) -> HashSet<Revision> {
        self.by_key
            .values()
            .filter_map(|&slot| self.histories[slot].compaction_keep(at))
            .collect()
    }

    /// Compacts every key's history at main revision `at`, dropping keys with nothing left.
    pub fn compact(&mut self, at: i64) {
        let mut emptied = Vec::new();
        for (key, &slot) in &self.by_key {
            if self.histories[slot].compact(at) {
                emptied.push(Arc::clone(key));
            }
        }
        for key in emptied {
            self.remove(&key);
        }
    }

    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_counts_past_the_limit() {
        let mut index = TreeIndex::default();
        for (main, key) in [(2, "a"), (3, "b"), (4, "c"), (5, "d")] {
            index.put(key.as_bytes(), Revision::new(main, 0)).unwrap();
        }
        index.tombstone(b"c", Revision::new(6, 0)).unwrap();
        let all = KeyRange::from_etcd(b"a", b"\0");
        let (found, total) = index.range(&all, 6, 2);
        assert_eq!(total, 3, "c is deleted at 6");
        assert_eq!(
            found.iter().map(|k| k.key.as_slice()).collect::<Vec<_>>(),
            [b"a", b"b"]
        );
        let (found, total) = index.range(&all, 4, 0);
        assert_eq!((found.len(), total), (3, 3), "d did not exist at 4");
        let (found, _) = index.range(&KeyRange::from_etcd(b"b", b"d"), 6, 0);
        assert_eq!(found.len(), 1);
    }

    #[test]
    fn a_page_stops_one_key_past_its_limit() {
        let mut index = TreeIndex::default();
        for (main, key) in [(2, "a"), (3, "b"), (4, "c"), (5, "d")] {
            index.put(key.as_bytes(), Revision::new(main, 0)).unwrap();
        }
        index.tombstone(b"b", Revision::new(6, 0)).unwrap();
        let all = KeyRange::from_etcd(b"a", b"\0");
        let (found, count) = index.page(&all, 6, 2);
        assert_eq!(count, 3, "more follow: limit + 1");
        assert_eq!(
            found.iter().map(|k| k.key.as_slice()).collect::<Vec<_>>(),
            [b"a", b"c"]
        );
        assert_eq!(index.page(&all, 6, 3).1, 3, "exactly the limit: no more");
        assert_eq!(index.page(&all, 6, 0).1, 3, "no limit: all of them");
    }

    #[test]
    fn compaction_drops_keys_deleted_before_it() {
        let mut index = TreeIndex::default();
        index.put(b"a", Revision::new(2, 0)).unwrap();
        index.put(b"b", Revision::new(2, 1)).unwrap();
        index.tombstone(b"a", Revision::new(3, 0)).unwrap();
        let keep = index.compaction_keep_set(3);
        index.compact(3);
        assert!(!index.contains_key(b"a"));
        assert!(keep.contains(&Revision::new(2, 1)) && keep.len() == 1);
        assert_eq!(index.len(), 1);
    }

    #[test]
    fn a_freed_slot_serves_a_new_key_and_clones_are_independent() {
        let mut index = TreeIndex::default();
        index.put(b"a", Revision::new(2, 0)).unwrap();
        index.put(b"b", Revision::new(3, 0)).unwrap();
        index.tombstone(b"a", Revision::new(4, 0)).unwrap();
        index.compact(4);
        assert!(!index.contains_key(b"a"));
        // The slot "a" had is reused.
        index.put(b"c", Revision::new(5, 0)).unwrap();
        assert_eq!(index.histories.len(), 2, "no new slot while one is free");
        let snapshot = index.clone();
        index.roll_back_after(b"c", 4);
        index.put(b"0", Revision::new(5, 0)).unwrap();
        let all = KeyRange::from_etcd(b"\0", b"\0");
        let keys = |index: &TreeIndex| {
            let (found, _) = index.range(&all, 5, 0);
            found.into_iter().map(|k| k.key).collect::<Vec<_>>()
        };
        assert_eq!(keys(&index), [b"0".to_vec(), b"b".to_vec()]);
        assert_eq!(keys(&snapshot), [b"b".to_vec(), b"c".to_vec()]);
        assert_eq!(index.get(b"c", 5), None);
        assert!(snapshot.get(b"c", 5).is_some());
        assert!(index.get(b"0", 5).is_some());
    }
}
