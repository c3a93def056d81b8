//! The multi-version key space: every write makes a new revision, every revision not yet
//! compacted can be read, and reads never wait for the storage engine's writer.
//!
//! Stored layout (bucket `key`): one record per change, keyed by its [`Revision`] (with a
//! tombstone marker for deletions), holding the encoded `mvccpb.KeyValue`. Bucket `meta` holds
//! the format version, the finished compaction revision and the applied Raft index. The
//! in-memory [`TreeIndex`] maps keys to revisions and is rebuilt from the records on open.
//!
//! Concurrency: one [`WriteBatch`] at a time. A batch updates the shared index as it goes,
//! but only with revisions above the published current revision, which no reader asks for;
//! committing publishes the new revision, and dropping a batch rolls its index changes back.
//! A read holds the index lock only while it resolves revisions and takes its storage
//! snapshot, so it sees one consistent state.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use parking_lot::{Condvar, Mutex, RwLock};
use prost::Message;

use super::backend::{Backend, BackendError, BackendRead, BackendWrite, Bucket};
use super::key_range::KeyRange;
use super::revision::{RecordKey, Revision};
use super::tree_index::TreeIndex;
use super::write_batch::WriteBatch;
use crate::proto::mvccpb::KeyValue;

/// The stored format this code reads and writes, in bucket `meta`.
pub const STORAGE_VERSION: &[u8] = b"cairn-mvcc-1";
pub(super) const META_STORAGE_VERSION: &[u8] = b"storage_version";
pub(super) const META_COMPACTED: &[u8] = b"finished_compact_revision";
pub const META_APPLIED_INDEX: &[u8] = b"applied_raft_index";

/// Why an MVCC operation failed.
#[derive(Debug, thiserror::Error)]
pub enum MvccError {
    #[error("mvcc: required revision has been compacted")]
    Compacted { requested: i64, compacted: i64 },
    #[error("mvcc: required revision is a future revision")]
    FutureRevision { requested: i64, current: i64 },
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error("corrupt record at {what}: {reason}")]
    Corrupt { what: String, reason: String },
    #[error("unsupported storage version {found:?} (this build reads {STORAGE_VERSION:?})")]
    UnsupportedVersion { found: String },
    #[error("the store stopped after a storage failure and must be reopened")]
    Stopped,
}

/// How to read a range.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RangeOptions {
    /// Revision to read at; 0 or less means the current one.
    pub rev: i64,
    /// At most this many keys (0: no limit). The count still covers them all.
    pub limit: usize,
    /// Count only; return no key-values.
    pub count_only: bool,
    /// Paging through a range: stop at the first key past the limit, so `count` is at most
    /// `limit + 1` and says only whether more follow (counting a big range on every page
    /// makes a full pass quadratic).
    pub page: bool,
}

/// What a range read found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RangeResult {
    /// Key-values in key order, at most `limit`.
    pub kvs: Vec<KeyValue>,
    /// Number of keys in the range at that revision, regardless of the limit.
    pub count: usize,
    /// The store's current revision when the read was served (the response header's).
    pub rev: i64,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Revisions {
    /// Newest committed revision; reads at or below it are served.
    pub current: i64,
    /// Reads below this revision fail as compacted.
    pub compacted: i64,
}

/// The multi-version key-value store over a storage engine.
pub struct MvccStore<B: Backend> {
    pub(super) backend: B,
    pub(super) index: RwLock<TreeIndex>,
    pub(super) revisions: RwLock<Revisions>,
    pub(super) writer: Mutex<()>,
    /// Set when a storage failure left the stored state unknown: every operation refuses.
    pub(super) stopped: AtomicBool,
    /// The newest revision whose writers have been answered, possibly before its storage
    /// commit (see [`MvccStore::acknowledge`]); reads wait until it is committed.
    acknowledged: AtomicI64,
    /// Held by a reader waiting for an acknowledged revision and by the writer announcing a
    /// commit, so the announcement cannot slip between the reader's check and its wait.
    commit_announced: Mutex<()>,
    committed: Condvar,
}

pub(super) fn decode_record(key: &[u8], value: &[u8]) -> Result<(RecordKey, KeyValue), MvccError> {
    let record = RecordKey::decode(key).map_err(|err| MvccError::Corrupt {
        what: "record key".into(),
        reason: err.to_string(),
    })?;
    let kv = KeyValue::decode(value).map_err(|err| MvccError::Corrupt {
        what: format!("record {}", record.revision),
        reason: err.to_string(),
    })?;
    Ok((record, kv))
}

/// Reads an 8-byte big-endian number from bucket `meta`.
pub(super) fn read_meta_u64(read: &impl BackendRead, key: &[u8]) -> Result<Option<u64>, MvccError> {
    let Some(bytes) = read.get(Bucket::Meta, key)? else {
        return Ok(None);
    };
    let array: [u8; 8] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| MvccError::Corrupt {
            what: format!("meta {}", String::from_utf8_lossy(key)),
            reason: format!("{} bytes, expected 8", bytes.len()),
        })?;
    Ok(Some(u64::from_be_bytes(array)))
}

/// Fetches the record at `revision` (a put: reads never resolve to tombstones).
pub(super) fn fetch(read: &impl BackendRead, revision: Revision) -> Result<KeyValue, MvccError> {
    let key = revision.to_record_key(false);
    let value = read
        .get(Bucket::Key, &key)?
        .ok_or_else(|| MvccError::Corrupt {
            what: format!("record {revision}"),
            reason: "indexed but not stored".into(),
        })?;
    Ok(decode_record(&key, &value)?.1)
}

impl<B: Backend> MvccStore<B> {
    /// Opens the store: checks the format version (writing it into an empty store) and
    /// rebuilds the index from the stored records.
    pub fn open(backend: B) -> Result<Self, MvccError> {
        let (index, revisions) = {
            let read = backend.read()?;
            match read.get(Bucket::Meta, META_STORAGE_VERSION)? {
                Some(version) if version == STORAGE_VERSION => {}
                Some(other) => {
                    return Err(MvccError::UnsupportedVersion {
                        found: String::from_utf8_lossy(&other).into_owned(),
                    })
                }
                None => {
                    drop(read);
                    let mut write = backend.write()?;
                    write.put(Bucket::Meta, META_STORAGE_VERSION, STORAGE_VERSION)?;
                    write.commit()?;
                }
            }
            let read = backend.read()?;
            rebuild_index(&read)?
        };
        Ok(MvccStore {
            backend,
            index: RwLock::new(index),
            revisions: RwLock::new(revisions),
            writer: Mutex::new(()),
            stopped: AtomicBool::new(false),
            acknowledged: AtomicI64::new(0),
            commit_announced: Mutex::new(()),
            committed: Condvar::new(),
        })
    }

    /// The storage engine (for its own statistics).
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// Gives the storage engine back (to reopen the store on it, or close it).
    pub fn into_backend(self) -> B {
        self.backend
    }

    pub fn current_revision(&self) -> i64 {
        self.revisions.read().current
    }

    pub fn compacted_revision(&self) -> i64 {
        self.revisions.read().compacted
    }

    /// The Raft index whose application produced the stored state (0 if none recorded).
    pub fn applied_index(&self) -> Result<u64, MvccError> {
        let read = self.backend.read()?;
        Ok(read_meta_u64(&read, META_APPLIED_INDEX)?.unwrap_or(0))
    }

    /// A store-wide fact kept in bucket `meta` (for layers above the key space, e.g. the
    /// Raft membership at the last snapshot).
    pub fn meta(&self, key: &[u8]) -> Result<Option<Vec<u8>>, MvccError> {
        Ok(self.backend.read()?.get(Bucket::Meta, key)?)
    }

    /// Visits every record of a bucket beside the key space, in key order, from one
    /// consistent snapshot (to load leases at start).
    pub fn scan_records(
        &self,
        bucket: Bucket,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), MvccError> {
        debug_assert_ne!(bucket, Bucket::Key, "key records are read through ranges");
        self.backend.read()?.scan(bucket, &[], None, visit)?;
        Ok(())
    }

    /// Stores (`Some`) or removes (`None`) store-wide facts in bucket `meta`, in one
    /// transaction, durably as the backend commits.
    pub fn put_meta(&self, changes: &[(&[u8], Option<&[u8]>)]) -> Result<(), MvccError> {
        self.check_running()?;
        let _writer = self.writer.lock();
        let mut write = self.backend.write()?;
        for (key, value) in changes {
            match value {
                Some(value) => write.put(Bucket::Meta, key, value)?,
                None => write.delete(Bucket::Meta, key)?,
            }
        }
        if let Err(err) = write.commit() {
            self.stop();
            return Err(err.into());
        }
        Ok(())
    }

    pub(super) fn check_running(&self) -> Result<(), MvccError> {
        if self.stopped.load(Ordering::Acquire) {
            return Err(MvccError::Stopped);
        }
        Ok(())
    }

    pub(super) fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        // Readers waiting for a commit that will not come now see the store stopped.
        self.announce_commit();
    }

    /// Records that the writers of every revision up to `revision` have been (or are about
    /// to be) answered although its batch is not committed yet: the Raft log already holds
    /// those writes durably, and the commit follows at once. Until it does, a reader asking
    /// for the current revision waits, so a client never reads older than what it was told
    /// it wrote.
    pub fn acknowledge(&self, revision: i64) {
        self.acknowledged.fetch_max(revision, Ordering::SeqCst);
    }

    /// The current revision for a new read: once committed, every acknowledged revision (see
    /// [`MvccStore::acknowledge`]); a stopped store answers at once (its reads then fail).
    pub fn readable_revision(&self) -> i64 {
        let current = self.revisions.read().current;
        // Only what was acknowledged by now: batches acknowledged while this read waits were
        // answered after it began, so it need not wait for them too.
        let target = self.acknowledged.load(Ordering::SeqCst);
        if target <= current {
            return current;
        }
        let mut announced = self.commit_announced.lock();
        loop {
            let current = self.revisions.read().current;
            if target <= current || self.stopped.load(Ordering::Acquire) {
                return current;
            }
            // A commit takes microseconds; the bound only guards against a missed wake-up.
            self.committed
                .wait_for(&mut announced, Duration::from_millis(50));
        }
    }

    /// The newest revision a client may have been told of: the current one, or a newer one
    /// acknowledged and about to be committed (for response headers, which must not go back).
    pub fn newest_revision(&self) -> i64 {
        let current = self.revisions.read().current;
        current.max(self.acknowledged.load(Ordering::SeqCst))
    }

    /// Wakes the readers waiting in [`MvccStore::readable_revision`].
    pub(super) fn announce_commit(&self) {
        let _announcing = self.commit_announced.lock();
        self.committed.notify_all();
    }

    /// Reads the keys of `range` at a revision.
    pub fn range(&self, range: &KeyRange, options: RangeOptions) -> Result<RangeResult, MvccError> {
        self.check_running()?;
        let (snapshot, found, count, current) = {
            let index = self.index.read();
            let revisions = *self.revisions.read();
            let at = resolve_read_revision(options.rev, revisions)?;
            let limit = if options.count_only { 1 } else { options.limit };
            let (found, count) = if options.page {
                index.page(range, at, limit)
            } else {
                index.range(range, at, limit)
            };
            // Taken under the index lock, so a compaction cannot remove what `found` names.
            let snapshot = self.backend.read()?;
            (snapshot, found, count, revisions.current)
        };
        let mut kvs = Vec::new();
        if !options.count_only {
            kvs.reserve(found.len());
            for key in found {
                kvs.push(fetch(&snapshot, key.at.modified)?);
            }
        }
        Ok(RangeResult {
            kvs,
            count,
            rev: current,
        })
    }

    /// Begins the write batch (waiting for any other to finish).
    pub fn write(&self) -> Result<WriteBatch<'_, B>, MvccError> {
        self.check_running()?;
        WriteBatch::begin(self)
    }

    /// Drops history below `rev`: reads below it fail as compacted from now on, and stored
    /// records no read at or above it can see are deleted, in the same storage transaction
    /// that records `applied_index` (when given).
    pub fn compact(&self, rev: i64, applied_index: Option<u64>) -> Result<(), MvccError> {
        self.check_running()?;
        let _writer = self.writer.lock();
        let revisions = *self.revisions.read();
        if rev <= revisions.compacted {
            return Err(MvccError::Compacted {
                requested: rev,
                compacted: revisions.compacted,
            });
        }
        if rev > revisions.current {
            return Err(MvccError::FutureRevision {
                requested: rev,
                current: revisions.current,
            });
        }
        let keep = self.index.read().compaction_keep_set(rev);
        let mut write = self.backend.write()?;
        let mut doomed = Vec::new();
        let end = Revision::main_bound(rev + 1);
        write.scan(Bucket::Key, &[], Some(&end), &mut |key, _| {
            match RecordKey::decode(key) {
                Ok(record) if record.tombstone || !keep.contains(&record.revision) => {
                    doomed.push(key.to_vec())
                }
                Ok(_) => {}
                // Unreadable keys are reported by the index rebuild, not silently deleted.
                Err(_) => {}
            }
            true
        })?;
        for key in &doomed {
            write.delete(Bucket::Key, key)?;
        }
        // `rev` ≥ 0 here: it is above the compacted revision, which is at least -1.
        debug_assert!(rev >= 0, "compaction at negative revision {rev}");
        write.put(Bucket::Meta, META_COMPACTED, &rev.to_be_bytes())?;
        if let Some(applied) = applied_index {
            write.put(Bucket::Meta, META_APPLIED_INDEX, &applied.to_be_bytes())?;
        }
        // Readers take their snapshot under the index lock: holding it across the commit and
        // the index compaction means no reader pairs the new records with the old index.
        let mut index = self.index.write();
        if let Err(err) = write.commit() {
            self.stop();
            return Err(err.into());
        }
        index.compact(rev);
        self.revisions.write().compacted = rev;
        Ok(())
    }
}

/// The main revision a read with requested revision `rev` is served at.
pub(super) fn resolve_read_revision(rev: i64, revisions: Revisions) -> Result<i64, MvccError> {
    if rev <= 0 {
        return Ok(revisions.current);
    }
    if rev > revisions.current {
        return Err(MvccError::FutureRevision {
            requested: rev,
            current: revisions.current,
        });
    }
    if rev < revisions.compacted {
        return Err(MvccError::Compacted {
            requested: rev,
            compacted: revisions.compacted,
        });
    }
    Ok(rev)
}

/// Rebuilds the key index from every stored record, in revision order.
fn rebuild_index(read: &impl BackendRead) -> Result<(TreeIndex, Revisions), MvccError> {
    let mut index = TreeIndex::default();
    let mut newest = 0;
    let mut failure = None;
    read.scan(Bucket::Key, &[], None, &mut |key, value| {
        let step = decode_record(key, value).and_then(|(record, kv)| {
            newest = newest.max(record.revision.main);
            let applied = if record.tombstone {
                index.tombstone(&kv.key, record.revision)
            } else if index.contains_key(&kv.key) {
                index.put(&kv.key, record.revision)
            } else {
                index.restore(
                    &kv.key,
                    Revision::new(kv.create_revision, 0),
                    record.revision,
                    kv.version,
                );
                Ok(())
            };
            applied.map_err(|err| MvccError::Corrupt {
                what: format!("record {}", record.revision),
                reason: err.to_string(),
            })
        });
        match step {
            Ok(()) => true,
            Err(err) => {
                failure = Some(err);
                false
            }
        }
    })?;
    if let Some(err) = failure {
        return Err(err);
    }
    // A store never compacted is "compacted at -1", as etcd's, so compacting at 0 works once.
    let compacted = match read_meta_u64(read, META_COMPACTED)? {
        None => -1,
        Some(stored) => i64::try_from(stored).map_err(|_| MvccError::Corrupt {
            what: "meta finished_compact_revision".into(),
            reason: format!("{stored} is not a revision"),
        })?,
    };
    // Compaction may have removed every record of the newest revisions (tombstones), but
    // the revision never moves backwards: the compacted revision was once current. An empty
    // store is at revision 1, as etcd's is, so the first write makes revision 2.
    let current = newest.max(compacted).max(1);
    Ok((index, Revisions { current, compacted }))
}
