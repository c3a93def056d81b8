//! The write batch: one storage transaction holding any number of etcd transactions, each of
//! which gets its own main revision if it changes anything.
//!
//! The server applies a run of committed Raft entries as one batch, so one storage commit
//! covers many client writes; each entry is still its own etcd transaction with its own
//! revision, and the applied Raft index is recorded in the same storage commit.

use super::backend::{Backend, BackendWrite, Bucket};
use super::key_range::KeyRange;
use super::revision::Revision;
use super::store::{
    fetch, resolve_read_revision, MvccError, MvccStore, RangeOptions, RangeResult, Revisions,
    META_APPLIED_INDEX,
};
use crate::proto::mvccpb::{event::EventType, Event, KeyValue};
use prost::Message;

/// The changes a committed batch made, in order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Committed {
    /// The store's current revision after the batch.
    pub revision: i64,
    /// One event per change, in revision order (for watchers).
    pub events: Vec<Event>,
}

/// The single writer's batch of etcd transactions. Dropping it without `commit` changes
/// nothing.
pub struct WriteBatch<'s, B: Backend> {
    store: &'s MvccStore<B>,
    backend: Option<B::Write<'s>>,
    _writer: parking_lot::MutexGuard<'s, ()>,
    /// Current revision when the batch began (the newest any reader can see).
    published: i64,
    /// Revision after the last finished transaction of this batch.
    last: i64,
    /// Next sub revision within the open transaction (0: it has changed nothing yet).
    sub: i64,
    /// Keys whose index entries this batch changed (rolled back if it does not commit).
    touched: Vec<Vec<u8>>,
    events: Vec<Event>,
    /// Acknowledged (see [`Self::acknowledge`]) and not committed yet.
    acknowledged: bool,
}

impl<'s, B: Backend> WriteBatch<'s, B> {
    pub(super) fn begin(store: &'s MvccStore<B>) -> Result<Self, MvccError> {
        let writer = store.writer.lock();
        store.check_running()?;
        let backend = store.backend.write()?;
        let published = store.revisions.read().current;
        Ok(WriteBatch {
            store,
            backend: Some(backend),
            _writer: writer,
            published,
            last: published,
            sub: 0,
            touched: Vec::new(),
            events: Vec::new(),
            acknowledged: false,
        })
    }

    fn backend(&mut self) -> Result<&mut B::Write<'s>, MvccError> {
        self.backend.as_mut().ok_or(MvccError::Stopped)
    }

    /// Below this revision history is compacted away.
    pub fn store_compacted_revision(&self) -> i64 {
        self.store.revisions.read().compacted
    }

    /// The revision the open transaction reads at: its own changes included.
    pub fn read_revision(&self) -> i64 {
        if self.sub > 0 {
            self.last + 1
        } else {
            self.last
        }
    }

    /// The revision for the next change of the open transaction.
    fn next_revision(&mut self) -> Revision {
        let rev = Revision::new(self.last + 1, self.sub);
        self.sub += 1;
        rev
    }

    /// Reads inside the open transaction, seeing its own changes and the batch's earlier ones.
    pub fn range(&self, range: &KeyRange, options: RangeOptions) -> Result<RangeResult, MvccError> {
        let current = self.read_revision();
        let compacted = self.store.revisions.read().compacted;
        let at = resolve_read_revision(options.rev, Revisions { current, compacted })?;
        let backend = self.backend.as_ref().ok_or(MvccError::Stopped)?;
        let limit = if options.count_only { 1 } else { options.limit };
        let (found, count) = self.store.index.read().range(range, at, limit);
        let mut kvs = Vec::new();
        if !options.count_only {
            for key in found {
                kvs.push(fetch(backend, key.at.modified)?);
            }
        }
        Ok(RangeResult {
            kvs,
            count,
            rev: current,
        })
    }

    /// Writes `key`; returns what it replaced.
    pub fn put(
        &mut self,
        key: &[u8],
        value: &[u8],
        lease: i64,
    ) -> Result<Option<KeyValue>, MvccError> {
        self.put_returning(key, value, lease, true)
    }

    /// Writes `key`; returns what it replaced only if `return_previous` (reading it costs a
    /// key-space lookup; the key index alone knows the create revision and version).
    pub fn put_returning(
        &mut self,
        key: &[u8],
        value: &[u8],
        lease: i64,
        return_previous: bool,
    ) -> Result<Option<KeyValue>, MvccError> {
        let found = self.store.index.read().get(key, self.read_revision());
        let previous = match found {
            Some(found) if return_previous || cfg!(debug_assertions) => {
                let backend = self.backend.as_ref().ok_or(MvccError::Stopped)?;
                Some(fetch(backend, found.modified)?)
            }
            _ => None,
        };
        // The index and the stored record it points at must tell the same history.
        debug_assert!(
            previous.as_ref().is_none_or(|p| found.is_some_and(|f| {
                p.create_revision == f.created.main && p.version == f.version
            })),
            "key index disagrees with the stored record of {key:?}"
        );
        let rev = self.next_revision();
        let kv = KeyValue {
            key: key.to_vec(),
            create_revision: found.map_or(rev.main, |f| f.created.main),
            mod_revision: rev.main,
            version: found.map_or(1, |f| f.version + 1),
            value: value.to_vec(),
            lease,
        };
        self.backend()?
            .put(Bucket::Key, &rev.to_record_key(false), &kv.encode_to_vec())?;
        self.store
            .index
            .write()
            .put(key, rev)
            .map_err(|err| MvccError::Corrupt {
                what: format!("index of key {key:?}"),
                reason: err.to_string(),
            })?;
        self.touched.push(key.to_vec());
        self.events.push(Event {
            r#type: EventType::Put as i32,
            kv: Some(kv),
            prev_kv: None,
        });
        Ok(previous.filter(|_| return_previous))
    }

    /// Deletes every key in `range`; returns the deleted key-values in key order.
    pub fn delete_range(&mut self, range: &KeyRange) -> Result<Vec<KeyValue>, MvccError> {
        let doomed = self.range(range, RangeOptions::default())?.kvs;
        for kv in &doomed {
            let rev = self.next_revision();
            let tombstone = KeyValue {
                key: kv.key.clone(),
                mod_revision: rev.main,
                ..Default::default()
            };
            self.backend()?.put(
                Bucket::Key,
                &rev.to_record_key(true),
                &tombstone.encode_to_vec(),
            )?;
            self.store
                .index
                .write()
                .tombstone(&kv.key, rev)
                .map_err(|err| MvccError::Corrupt {
                    what: format!("index of key {:?}", kv.key),
                    reason: err.to_string(),
                })?;
            self.touched.push(kv.key.clone());
            self.events.push(Event {
                r#type: EventType::Delete as i32,
                kv: Some(tombstone),
                prev_kv: None,
            });
        }
        Ok(doomed)
    }

    /// Ends the open etcd transaction; returns the store's revision after it (unchanged if
    /// it wrote nothing).
    pub fn end_txn(&mut self) -> i64 {
        if self.sub > 0 {
            self.last += 1;
            self.sub = 0;
        }
        self.last
    }

    /// Ends the open transaction and marks the batch's revision acknowledged (see
    /// [`MvccStore::acknowledge`]): its writers may be answered before [`Self::commit`].
    pub fn acknowledge(&mut self) {
        let revision = self.end_txn();
        self.acknowledged = true;
        self.store.acknowledge(revision);
    }

    /// Writes a record of a bucket beside the key space (leases), in the batch's storage
    /// transaction, so it commits or vanishes with the batch's key changes.
    pub fn put_record(
        &mut self,
        bucket: Bucket,
        key: &[u8],
        value: &[u8],
    ) -> Result<(), MvccError> {
        // Key records must go through put/delete_range, which keep the index in step.
        debug_assert_ne!(bucket, Bucket::Key, "key records bypassing the index");
        self.backend()?.put(bucket, key, value)?;
        Ok(())
    }

    /// Deletes a record of a bucket beside the key space, in the batch's storage transaction.
    pub fn delete_record(&mut self, bucket: Bucket, key: &[u8]) -> Result<(), MvccError> {
        debug_assert_ne!(bucket, Bucket::Key, "key records bypassing the index");
        self.backend()?.delete(bucket, key)?;
        Ok(())
    }

    /// How many changes the batch has made so far (an offset into its events).
    pub fn change_count(&self) -> usize {
        self.events.len()
    }

    /// The batch's changes from offset `from` on, in order.
    pub fn changes_since(&self, from: usize) -> &[Event] {
        &self.events[from.min(self.events.len())..]
    }

    /// Records which Raft entry the batch's state reflects, atomically with the data.
    pub fn set_applied_index(&mut self, index: u64) -> Result<(), MvccError> {
        self.backend()?
            .put(Bucket::Meta, META_APPLIED_INDEX, &index.to_be_bytes())?;
        Ok(())
    }

    /// Commits every transaction of the batch at once and publishes the new revision.
    pub fn commit(mut self) -> Result<Committed, MvccError> {
        let revision = self.end_txn();
        let backend = self.backend.take().ok_or(MvccError::Stopped)?;
        if let Err(err) = backend.commit() {
            // The storage engine's state is unknown: roll back what readers could reach
            // and refuse further work rather than guess.
            self.roll_back_index();
            self.store.stop();
            return Err(err.into());
        }
        self.touched.clear();
        self.acknowledged = false;
        // Readers never see a revision before its records are committed.
        self.store.revisions.write().current = revision;
        self.store.announce_commit();
        Ok(Committed {
            revision,
            events: std::mem::take(&mut self.events),
        })
    }

    fn roll_back_index(&mut self) {
        if self.touched.is_empty() {
            return;
        }
        let mut index = self.store.index.write();
        for key in self.touched.drain(..) {
            index.roll_back_after(&key, self.published);
        }
    }
}

impl<B: Backend> Drop for WriteBatch<'_, B> {
    fn drop(&mut self) {
        self.roll_back_index();
        if self.acknowledged {
            // Writers were told of changes that will not be committed here: the store no
            // longer matches what clients know, so it refuses everything (readers waiting
            // for the commit are released), and the member restarts from its log.
            self.store.stop();
        }
    }
}
