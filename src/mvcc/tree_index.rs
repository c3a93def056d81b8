//! The in-memory index of every key's history, ordered by key.
//!
//! Records are stored by revision, so a read by key goes through this index: it turns "keys
//! in this range, as of revision R" into the revisions of the records to fetch. It is rebuilt
//! from storage on start.

use std::collections::BTreeMap;

use super::key_index::{KeyAt, KeyIndex, KeyIndexError};
use super::key_range::KeyRange;
use super::revision::Revision;

/// Every key's history.
#[derive(Debug, Default, Clone)]
pub struct TreeIndex {
    keys: BTreeMap<Vec<u8>, KeyIndex>,
}

/// A key as a read sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexedKey {
    pub key: Vec<u8>,
    pub at: KeyAt,
}

impl TreeIndex {
    pub fn put(&mut self, key: &[u8], rev: Revision) -> Result<(), KeyIndexError> {
        match self.keys.get_mut(key) {
            Some(index) => index.put(rev),
            None => {
                let mut index = KeyIndex::default();
                index.put(rev)?;
                self.keys.insert(key.to_vec(), index);
                Ok(())
            }
        }
    }

    pub fn tombstone(&mut self, key: &[u8], rev: Revision) -> Result<(), KeyIndexError> {
        self.keys
            .get_mut(key)
            .ok_or(KeyIndexError::NotFound)?
            .tombstone(rev)
    }

    /// Adds a key found in storage while rebuilding, from its oldest stored record.
    pub fn restore(&mut self, key: &[u8], created: Revision, modified: Revision, version: i64) {
        self.keys
            .insert(key.to_vec(), KeyIndex::restore(created, modified, version));
    }

    pub fn contains_key(&self, key: &[u8]) -> bool {
        self.keys.contains_key(key)
    }

    pub fn get(&self, key: &[u8], at: i64) -> Option<KeyAt> {
        self.keys.get(key)?.get(at)
    }

    /// Visits, in key order, every key in `range` that exists at main revision `at`, until
    /// `visit` returns false.
    pub fn visit(&self, range: &KeyRange, at: i64, mut visit: impl FnMut(&[u8], KeyAt) -> bool) {
        if range.is_empty() {
            return;
        }
        if let KeyRange::Single(key) = range {
            // One search, where a range over the map searches for both of its ends (a
            // tenth of the server's time on single-key gets).
            if let Some((key, index)) = self.keys.get_key_value(key.as_slice()) {
                if let Some(found) = index.get(at) {
                    visit(key, found);
                }
            }
            return;
        }
        for (key, index) in self.keys.range::<[u8], _>(range.bounds()) {
            if let Some(found) = index.get(at) {
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
        if let Some(index) = self.keys.get_mut(key) {
            if index.roll_back_after(main) {
                self.keys.remove(key);
            }
        }
    }

    /// The revisions ≤ `at` that reads from `at` on need, as [`TreeIndex::compact`] would
    /// return them, without changing anything.
    pub fn compaction_keep_set(&self, at: i64) -> std::collections::HashSet<Revision> {
        self.keys
            .values()
            .filter_map(|index| index.compaction_keep(at))
            .collect()
    }

    /// Compacts every key's history at main revision `at`, dropping keys with nothing left.
    pub fn compact(&mut self, at: i64) {
        self.keys.retain(|_, index| !index.compact(at));
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
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
}
