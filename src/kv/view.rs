//! What the request logic reads and writes through: the store at one revision (reads and
//! read-only transactions) or the apply batch (writes).

use crate::mvcc::{Backend, KeyRange, MvccError, MvccStore, RangeOptions, RangeResult, WriteBatch};
use crate::proto::mvccpb::KeyValue;

/// A consistent view of the key space.
pub trait KvRead {
    fn range(&self, range: &KeyRange, options: RangeOptions) -> Result<RangeResult, MvccError>;
    /// The revision reads without an explicit revision see.
    fn revision(&self) -> i64;
    fn compacted_revision(&self) -> i64;
}

impl<R: KvRead + ?Sized> KvRead for &R {
    fn range(&self, range: &KeyRange, options: RangeOptions) -> Result<RangeResult, MvccError> {
        (**self).range(range, options)
    }

    fn revision(&self) -> i64 {
        (**self).revision()
    }

    fn compacted_revision(&self) -> i64 {
        (**self).compacted_revision()
    }
}

/// A view that can also change the key space (inside the current etcd transaction).
pub trait KvWrite: KvRead {
    /// Writes `key`; what it replaced comes back only if `return_previous`.
    fn put(
        &mut self,
        key: &[u8],
        value: &[u8],
        lease: i64,
        return_previous: bool,
    ) -> Result<Option<KeyValue>, MvccError>;
    fn delete_range(&mut self, range: &KeyRange) -> Result<Vec<KeyValue>, MvccError>;
}

/// The store as of one revision: every read through it sees the same state, so a read-only
/// transaction is atomic even while writes commit.
pub struct PinnedRead<'s, B: Backend> {
    store: &'s MvccStore<B>,
    revision: i64,
}

impl<'s, B: Backend> PinnedRead<'s, B> {
    /// Pins the store's current revision (waiting for the commit of any revision whose
    /// writers were already answered).
    pub fn new(store: &'s MvccStore<B>) -> Self {
        PinnedRead {
            store,
            revision: store.readable_revision(),
        }
    }
}

impl<B: Backend> KvRead for PinnedRead<'_, B> {
    fn range(&self, range: &KeyRange, mut options: RangeOptions) -> Result<RangeResult, MvccError> {
        if options.rev <= 0 {
            options.rev = self.revision;
        } else if options.rev > self.revision {
            // Newer revisions may exist by now, but not for this view.
            return Err(MvccError::FutureRevision {
                requested: options.rev,
                current: self.revision,
            });
        }
        let mut result = self.store.range(range, options)?;
        result.rev = self.revision;
        Ok(result)
    }

    fn revision(&self) -> i64 {
        self.revision
    }

    fn compacted_revision(&self) -> i64 {
        self.store.compacted_revision()
    }
}

impl<B: Backend> KvRead for WriteBatch<'_, B> {
    fn range(&self, range: &KeyRange, options: RangeOptions) -> Result<RangeResult, MvccError> {
        WriteBatch::range(self, range, options)
    }

    fn revision(&self) -> i64 {
        self.read_revision()
    }

    fn compacted_revision(&self) -> i64 {
        self.store_compacted_revision()
    }
}

impl<B: Backend> KvWrite for WriteBatch<'_, B> {
    fn put(
        &mut self,
        key: &[u8],
        value: &[u8],
        lease: i64,
        return_previous: bool,
    ) -> Result<Option<KeyValue>, MvccError> {
        WriteBatch::put_returning(self, key, value, lease, return_previous)
    }

    fn delete_range(&mut self, range: &KeyRange) -> Result<Vec<KeyValue>, MvccError> {
        WriteBatch::delete_range(self, range)
    }
}

/// Lets a read-only transaction run through the write path's code; it never writes (the
/// server routes any transaction with a write through consensus instead).
pub struct ReadOnly<R>(pub R);

impl<R: KvRead> KvRead for ReadOnly<R> {
    fn range(&self, range: &KeyRange, options: RangeOptions) -> Result<RangeResult, MvccError> {
        self.0.range(range, options)
    }

    fn revision(&self) -> i64 {
        self.0.revision()
    }

    fn compacted_revision(&self) -> i64 {
        self.0.compacted_revision()
    }
}

impl<R: KvRead> KvWrite for ReadOnly<R> {
    fn put(&mut self, _: &[u8], _: &[u8], _: i64, _: bool) -> Result<Option<KeyValue>, MvccError> {
        Err(MvccError::Corrupt {
            what: "read-only transaction".into(),
            reason: "a write reached a transaction served without consensus".into(),
        })
    }

    fn delete_range(&mut self, _: &KeyRange) -> Result<Vec<KeyValue>, MvccError> {
        Err(MvccError::Corrupt {
            what: "read-only transaction".into(),
            reason: "a write reached a transaction served without consensus".into(),
        })
    }
}
