//! The stored change history, read back as etcd watch events: what a watcher that fell behind
//! (or started in the past) replays before it rejoins the live feed.
//!
//! Compaction rule (etcd's, `watchable_store.go` `chooseAll`: `minRev < compactRev`): history
//! can be read from the compacted revision C on, so a replay starting at C is served and one
//! starting below C fails with [`MvccError::Compacted`]. Known gap, shared with etcd: compaction
//! deletes tombstones at revisions ≤ C, so a replay from exactly C does not see the DELETE
//! events of revision C itself (only its PUTs).

use super::backend::{Backend, BackendRead, Bucket};
use super::key_range::KeyRange;
use super::revision::Revision;
use super::store::{decode_record, MvccError, MvccStore, RangeOptions};
use crate::proto::mvccpb::{event::EventType, Event, KeyValue};

impl<B: Backend> MvccStore<B> {
    /// The stored changes to keys in `range` with main revision in `from_rev..=to_rev`, in
    /// revision order, from one storage snapshot.
    ///
    /// Reading stops before a new revision once `limit_events` events were collected, so the
    /// result always holds whole revisions (one revision larger than the limit comes whole).
    /// Fewer than `limit_events` events means the read covered everything up to `to_rev`;
    /// otherwise it covered up to the last event's revision and the caller continues after it.
    pub fn events(
        &self,
        range: &KeyRange,
        from_rev: i64,
        to_rev: i64,
        limit_events: usize,
    ) -> Result<Vec<Event>, MvccError> {
        self.check_running()?;
        let snapshot = {
            // Taken under the index lock, as compaction commits under its write lock: the
            // compacted revision checked here is the one the snapshot reflects.
            let _index = self.index.read();
            let revisions = *self.revisions.read();
            if from_rev < revisions.compacted {
                return Err(MvccError::Compacted {
                    requested: from_rev,
                    compacted: revisions.compacted,
                });
            }
            if to_rev > revisions.current {
                return Err(MvccError::FutureRevision {
                    requested: to_rev,
                    current: revisions.current,
                });
            }
            self.backend.read()?
        };
        let mut events = Vec::new();
        if from_rev > to_rev || limit_events == 0 || range.is_empty() {
            return Ok(events);
        }
        let from = Revision::main_bound(from_rev.max(0));
        let to = Revision::main_bound(to_rev.saturating_add(1));
        let mut last_main = None;
        let mut failure = None;
        snapshot.scan(Bucket::Key, &from, Some(&to), &mut |key, value| {
            let (record, kv) = match decode_record(key, value) {
                Ok(decoded) => decoded,
                Err(err) => {
                    failure = Some(err);
                    return false;
                }
            };
            if last_main != Some(record.revision.main) && events.len() >= limit_events {
                return false;
            }
            if range.contains(&kv.key) {
                last_main = Some(record.revision.main);
                let kind = if record.tombstone {
                    EventType::Delete
                } else {
                    EventType::Put
                };
                events.push(Event {
                    r#type: kind as i32,
                    kv: Some(kv),
                    prev_kv: None,
                });
            }
            true
        })?;
        match failure {
            Some(err) => Err(err),
            None => Ok(events),
        }
    }

    /// The key's value just before revision `rev` (as of `rev - 1`), for prev_kv watchers;
    /// `None` if it did not exist then. Fails with `Compacted` when `rev - 1` is compacted.
    pub fn prev_kv(&self, key: &[u8], rev: i64) -> Result<Option<KeyValue>, MvccError> {
        if rev <= 1 {
            return Ok(None);
        }
        let found = self.range(
            &KeyRange::Single(key.to_vec()),
            RangeOptions {
                rev: rev - 1,
                limit: 1,
                ..Default::default()
            },
        )?;
        Ok(found.kvs.into_iter().next())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mvcc::MemBackend;

    fn kinds(events: &[Event]) -> Vec<(i32, Vec<u8>, i64)> {
        events
            .iter()
            .map(|e| {
                let kv = e.kv.clone().unwrap_or_default();
                (e.r#type, kv.key, kv.mod_revision)
            })
            .collect()
    }

    fn store_with_history() -> MvccStore<MemBackend> {
        let store = MvccStore::open(MemBackend::default()).expect("open");
        let mut batch = store.write().expect("write");
        batch.put(b"a", b"1", 0).expect("put"); // rev 2
        batch.end_txn();
        batch.put(b"a", b"2", 0).expect("put"); // rev 3
        batch.put(b"b", b"1", 0).expect("put");
        batch.end_txn();
        batch
            .delete_range(&KeyRange::Single(b"a".to_vec()))
            .expect("delete"); // rev 4
        batch.end_txn();
        batch.put(b"c", b"1", 0).expect("put"); // rev 5
        batch.commit().expect("commit");
        store
    }

    #[test]
    fn events_replay_puts_and_tombstones_in_revision_order() {
        let store = store_with_history();
        let all = store
            .events(&KeyRange::prefix(b""), 2, 5, 100)
            .expect("events");
        let (put, del) = (EventType::Put as i32, EventType::Delete as i32);
        assert_eq!(
            kinds(&all),
            vec![
                (put, b"a".to_vec(), 2),
                (put, b"a".to_vec(), 3),
                (put, b"b".to_vec(), 3),
                (del, b"a".to_vec(), 4),
                (put, b"c".to_vec(), 5)
            ]
        );
        let only_a = store
            .events(&KeyRange::Single(b"a".to_vec()), 3, 4, 100)
            .expect("events");
        assert_eq!(
            kinds(&only_a),
            vec![(put, b"a".to_vec(), 3), (del, b"a".to_vec(), 4)]
        );
    }

    #[test]
    fn events_limit_never_splits_a_revision() {
        let store = store_with_history();
        let range = KeyRange::prefix(b"");
        let first = store.events(&range, 2, 5, 2).expect("events");
        // Revision 2 has one event, revision 3 two: the limit is reached inside revision 3,
        // which still comes whole.
        assert_eq!(first.len(), 3);
        let next = store.events(&range, 4, 5, 2).expect("events");
        assert_eq!(next.len(), 2);
    }

    #[test]
    fn events_below_the_compacted_revision_fail_and_at_it_succeed() {
        let store = store_with_history();
        store.compact(3, None).expect("compact");
        let range = KeyRange::prefix(b"");
        assert!(matches!(
            store.events(&range, 2, 5, 10),
            Err(MvccError::Compacted { compacted: 3, .. })
        ));
        let from_compacted = store.events(&range, 3, 5, 10).expect("events");
        assert_eq!(from_compacted.len(), 4);
        assert!(matches!(
            store.events(&range, 3, 6, 10),
            Err(MvccError::FutureRevision { .. })
        ));
    }

    #[test]
    fn prev_kv_is_the_value_one_revision_earlier() {
        let store = store_with_history();
        let prev = store.prev_kv(b"a", 3).expect("prev").expect("exists");
        assert_eq!((prev.value.as_slice(), prev.mod_revision), (&b"1"[..], 2));
        assert_eq!(
            store.prev_kv(b"a", 4).expect("prev").map(|kv| kv.value),
            Some(b"2".to_vec())
        );
        assert_eq!(store.prev_kv(b"a", 5).expect("prev"), None);
        assert_eq!(store.prev_kv(b"c", 5).expect("prev"), None);
    }
}
