//! The history of one key: the revisions at which it was written, grouped into generations.
//!
//! A generation runs from the put that created the key to the deletion that ended it. The
//! last generation is open (the key exists now) or empty (the key was deleted and not written
//! since). This is what lets a read at any revision find the key's record, its create
//! revision and its version without scanning the stored history.

use super::revision::Revision;

/// One life of a key: created by a put, ended by a tombstone (the last revision of every
/// generation but the last).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Generation {
    /// Number of changes made in this generation, counting the ones compacted away.
    version: i64,
    /// The revision that created the key in this generation.
    created: Revision,
    /// Revisions still stored, ascending.
    revs: Vec<Revision>,
}

/// What a read at some revision sees of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyAt {
    /// The revision of the record holding the value at that point.
    pub modified: Revision,
    /// The revision that created the key (in its current generation).
    pub created: Revision,
    /// How many times the key was written in this generation, up to that point.
    pub version: i64,
}

/// Changes that do not fit the key's history.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyIndexError {
    #[error("revision {new} is not after the key's last change {last}")]
    NotAfterLast { new: Revision, last: Revision },
    #[error("cannot delete a key that does not exist")]
    NotFound,
}

/// The history of one key.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyIndex {
    /// The last change (put or tombstone).
    modified: Revision,
    /// Never empty once the key has been written; only the last may have no revisions.
    generations: Vec<Generation>,
}

impl KeyIndex {
    /// Records a put at `rev`.
    pub fn put(&mut self, rev: Revision) -> Result<(), KeyIndexError> {
        if !self.generations.is_empty() && rev <= self.modified {
            return Err(KeyIndexError::NotAfterLast {
                new: rev,
                last: self.modified,
            });
        }
        if self.generations.is_empty() {
            self.generations.push(Generation::default());
        }
        let generation = self
            .generations
            .last_mut()
            .expect("pushed above when empty");
        if generation.revs.is_empty() {
            generation.created = rev;
        }
        generation.revs.push(rev);
        generation.version += 1;
        self.modified = rev;
        Ok(())
    }

    /// Rebuilds the key from its oldest stored record, which after compaction may not be the
    /// put that created it: the record's own create revision and version say where it stands.
    pub fn restore(created: Revision, modified: Revision, version: i64) -> Self {
        // A stored record is at or after its creation, and its version counts at least itself.
        debug_assert!(
            created <= modified && version >= 1,
            "{created} {modified} {version}"
        );
        KeyIndex {
            modified,
            generations: vec![Generation {
                version,
                created,
                revs: vec![modified],
            }],
        }
    }

    /// Records the deletion of the key at `rev`, ending its current generation.
    pub fn tombstone(&mut self, rev: Revision) -> Result<(), KeyIndexError> {
        if self.is_deleted() {
            return Err(KeyIndexError::NotFound);
        }
        self.put(rev)?;
        self.generations.push(Generation::default());
        Ok(())
    }

    /// True when the key does not exist at the newest revision.
    pub fn is_deleted(&self) -> bool {
        self.generations.last().is_none_or(|g| g.revs.is_empty())
    }

    /// The last change, put or tombstone.
    pub fn modified(&self) -> Revision {
        self.modified
    }

    /// The key as a read at main revision `at` sees it, or `None` if it did not exist then.
    pub fn get(&self, at: i64) -> Option<KeyAt> {
        let last = self.generations.len().checked_sub(1)?;
        for (i, generation) in self.generations.iter().enumerate().rev() {
            let Some(first) = generation.revs.first() else {
                continue;
            };
            if first.main > at {
                continue;
            }
            let ended = i != last;
            let tombstone = generation.revs.last().expect("non-empty: first exists");
            if ended && tombstone.main <= at {
                return None;
            }
            let n = generation.revs.iter().rposition(|r| r.main <= at)?;
            let newer = i64::try_from(generation.revs.len() - 1 - n).ok()?;
            return Some(KeyAt {
                modified: generation.revs[n],
                created: generation.created,
                version: generation.version - newer,
            });
        }
        None
    }

    /// Every stored revision of the key with main revision ≥ `from`, ascending, tombstones
    /// included.
    pub fn since(&self, from: i64) -> impl Iterator<Item = Revision> + '_ {
        self.generations
            .iter()
            .flat_map(|g| g.revs.iter().copied())
            .filter(move |r| r.main >= from)
    }

    /// Undoes every change with main revision > `main` (a write batch that never committed),
    /// restoring the history as it was when `main` was the newest revision. Returns true when
    /// nothing of the key is left.
    pub fn roll_back_after(&mut self, main: i64) -> bool {
        let mut dropped_generations = false;
        while let Some(last) = self.generations.last_mut() {
            let kept = last.revs.partition_point(|r| r.main <= main);
            let removed = last.revs.len() - kept;
            if removed == 0 && !last.revs.is_empty() {
                // Untouched: closed if generations followed it (its tombstone is older).
                if dropped_generations {
                    self.generations.push(Generation::default());
                }
                break;
            }
            last.revs.truncate(kept);
            last.version -= i64::try_from(removed).unwrap_or(i64::MAX);
            if last.revs.is_empty() {
                self.generations.pop();
                dropped_generations = true;
                continue;
            }
            // Revisions were cut from this generation, its tombstone among them if it had
            // one: it is open again.
            break;
        }
        if let Some(newest) = self.generations.iter().rev().find_map(|g| g.revs.last()) {
            self.modified = *newest;
        }
        self.generations.is_empty()
    }

    /// Index of the first generation still visible to reads at main revision ≥ `at`:
    /// generations that ended (tombstone) at or before `at` are invisible from `at` on.
    fn first_live_generation(&self, at: i64) -> usize {
        let mut dead = 0;
        while dead + 1 < self.generations.len()
            && self.generations[dead]
                .revs
                .last()
                .is_some_and(|tombstone| tombstone.main <= at)
        {
            dead += 1;
        }
        dead
    }

    /// The stored revision ≤ `at` that reads at main revision ≥ `at` still need, if any.
    pub fn compaction_keep(&self, at: i64) -> Option<Revision> {
        let generation = self.generations.get(self.first_live_generation(at))?;
        let n = generation.revs.iter().rposition(|r| r.main <= at)?;
        Some(generation.revs[n])
    }

    /// Forgets history that no read at main revision ≥ `at` can see. Every stored revision
    /// ≤ `at` other than [`KeyIndex::compaction_keep`] may then be removed from storage.
    /// Returns true when nothing of the key is left.
    pub fn compact(&mut self, at: i64) -> bool {
        let dead = self.first_live_generation(at);
        self.generations.drain(..dead);
        if let Some(generation) = self.generations.first_mut() {
            if let Some(n) = generation.revs.iter().rposition(|r| r.main <= at) {
                generation.revs.drain(..n);
            }
        }
        self.generations.len() <= 1 && self.is_deleted()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rev(main: i64) -> Revision {
        Revision::new(main, 0)
    }

    /// put@2 put@4 del@6 put@8 put@10: two generations, the second open.
    fn history() -> KeyIndex {
        let mut ki = KeyIndex::default();
        ki.put(rev(2)).unwrap();
        ki.put(rev(4)).unwrap();
        ki.tombstone(rev(6)).unwrap();
        ki.put(rev(8)).unwrap();
        ki.put(rev(10)).unwrap();
        ki
    }

    #[test]
    fn reads_see_the_generation_alive_at_their_revision() {
        let ki = history();
        assert_eq!(ki.get(1), None);
        let at3 = ki.get(3).unwrap();
        assert_eq!(
            (at3.modified, at3.created, at3.version),
            (rev(2), rev(2), 1)
        );
        let at5 = ki.get(5).unwrap();
        assert_eq!(
            (at5.modified, at5.created, at5.version),
            (rev(4), rev(2), 2)
        );
        assert_eq!(ki.get(6), None, "deleted at 6");
        assert_eq!(ki.get(7), None);
        let at9 = ki.get(9).unwrap();
        assert_eq!(
            (at9.modified, at9.created, at9.version),
            (rev(8), rev(8), 1)
        );
        let now = ki.get(100).unwrap();
        assert_eq!(
            (now.modified, now.created, now.version),
            (rev(10), rev(8), 2)
        );
    }

    #[test]
    fn changes_must_move_forward() {
        let mut ki = history();
        assert!(matches!(
            ki.put(rev(10)),
            Err(KeyIndexError::NotAfterLast { .. })
        ));
        ki.tombstone(rev(11)).unwrap();
        assert_eq!(ki.tombstone(rev(12)), Err(KeyIndexError::NotFound));
        assert!(ki.is_deleted());
    }

    fn compacted(at: i64) -> (KeyIndex, Vec<Revision>, bool) {
        let mut ki = history();
        let kept = ki.compaction_keep(at).into_iter().collect();
        let empty = ki.compact(at);
        (ki, kept, empty)
    }

    #[test]
    fn compaction_keeps_what_later_reads_need() {
        for at in 1..=12 {
            let before = history();
            let (after, _, empty) = compacted(at);
            assert!(!empty);
            for read in at..=12 {
                assert_eq!(
                    after.get(read),
                    before.get(read),
                    "compacted at {at}, read at {read}"
                );
            }
        }
    }

    #[test]
    fn compaction_keeps_exactly_the_visible_record() {
        assert_eq!(compacted(1).1, vec![]);
        assert_eq!(compacted(5).1, vec![rev(4)]);
        // At 7 the first generation is dead (deleted at 6): nothing of it is kept.
        assert_eq!(compacted(7).1, vec![]);
        assert_eq!(compacted(9).1, vec![rev(8)]);
        assert_eq!(compacted(12).1, vec![rev(10)]);
        let (ki, _, _) = compacted(12);
        assert_eq!(ki.since(0).collect::<Vec<_>>(), vec![rev(10)]);
    }

    #[test]
    fn a_deleted_key_compacted_past_its_tombstone_is_gone() {
        let mut ki = KeyIndex::default();
        ki.put(rev(2)).unwrap();
        ki.tombstone(rev(3)).unwrap();
        assert_eq!(ki.compaction_keep(2), Some(rev(2)));
        assert!(!ki.clone().compact(2));
        assert_eq!(ki.compaction_keep(3), None);
        assert!(ki.compact(3));
    }

    #[test]
    fn roll_back_restores_the_history_exactly() {
        // Every prefix of a history, extended by every continuation, rolls back to itself.
        let ops: [(i64, bool); 7] = [
            (2, false),
            (3, false),
            (4, true),
            (5, false),
            (6, true),
            (7, false),
            (8, false),
        ];
        for split in 0..ops.len() {
            let mut ki = KeyIndex::default();
            let apply = |ki: &mut KeyIndex, (main, tomb): (i64, bool)| {
                if tomb {
                    ki.tombstone(rev(main)).unwrap();
                } else {
                    ki.put(rev(main)).unwrap();
                }
            };
            for op in &ops[..split] {
                apply(&mut ki, *op);
            }
            let before = ki.clone();
            for op in &ops[split..] {
                apply(&mut ki, *op);
            }
            let last_before = ops[..split].last().map_or(1, |op| op.0);
            let gone = ki.roll_back_after(last_before);
            assert_eq!(gone, split == 0, "split {split}");
            if split > 0 {
                assert_eq!(ki, before, "split {split}");
            }
        }
    }

    #[test]
    fn restored_key_reads_like_the_original() {
        let ki = KeyIndex::restore(rev(3), rev(7), 4);
        let at = ki.get(7).unwrap();
        assert_eq!((at.modified, at.created, at.version), (rev(7), rev(3), 4));
        assert_eq!(
            ki.get(6),
            None,
            "history before the oldest stored record is compacted"
        );
    }
}
