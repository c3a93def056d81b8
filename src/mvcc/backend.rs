//! What the MVCC store needs from a storage engine: named buckets of ordered byte keys, read
//! snapshots, and one atomic write transaction at a time.
//!
//! `cairn-btree` implements this in the server; [`MemBackend`] is a small in-memory
//! implementation for tests and tools.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

/// The named trees Cairn keeps in its storage file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Bucket {
    /// Every key-value record, keyed by revision.
    Key,
    /// Store-wide facts: compaction marks, the applied Raft index.
    Meta,
    /// One record per live lease, keyed by lease id.
    Lease,
}

impl Bucket {
    pub const ALL: [Bucket; 3] = [Bucket::Key, Bucket::Meta, Bucket::Lease];

    /// The bucket's name in the storage file.
    pub fn name(self) -> &'static [u8] {
        match self {
            Bucket::Key => b"key",
            Bucket::Meta => b"meta",
            Bucket::Lease => b"lease",
        }
    }
}

/// A storage engine failure. The store stops on one rather than continue on an unknown state.
#[derive(Debug, thiserror::Error)]
#[error("storage {operation} failed: {source}")]
pub struct BackendError {
    pub operation: &'static str,
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

impl BackendError {
    pub fn new(
        operation: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        BackendError {
            operation,
            source: source.into(),
        }
    }
}

/// Reads from one consistent state of every bucket.
pub trait BackendRead {
    fn get(&self, bucket: Bucket, key: &[u8]) -> Result<Option<Vec<u8>>, BackendError>;

    /// Visits entries with `from` ≤ key < `to` (no `to`: to the end) in key order, until
    /// `visit` returns false.
    fn scan(
        &self,
        bucket: Bucket,
        from: &[u8],
        to: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), BackendError>;
}

/// The single write transaction: reads see its own writes; nothing is visible to readers
/// until `commit` returns.
pub trait BackendWrite: BackendRead {
    fn put(&mut self, bucket: Bucket, key: &[u8], value: &[u8]) -> Result<(), BackendError>;
    fn delete(&mut self, bucket: Bucket, key: &[u8]) -> Result<(), BackendError>;
    fn commit(self) -> Result<(), BackendError>;
}

/// A storage engine.
pub trait Backend: Send + Sync {
    type Read<'a>: BackendRead
    where
        Self: 'a;
    type Write<'a>: BackendWrite
    where
        Self: 'a;

    /// A snapshot of the last committed state.
    fn read(&self) -> Result<Self::Read<'_>, BackendError>;
    /// Begins the write transaction, waiting for any other writer to finish.
    fn write(&self) -> Result<Self::Write<'_>, BackendError>;
}

type Tree = BTreeMap<(Bucket, Vec<u8>), Vec<u8>>;

/// An in-memory backend: each commit publishes a new immutable copy of the data.
#[derive(Debug, Default)]
pub struct MemBackend {
    committed: RwLock<Arc<Tree>>,
    writer: Mutex<()>,
}

/// A snapshot of a [`MemBackend`].
#[derive(Debug, Clone)]
pub struct MemRead {
    tree: Arc<Tree>,
}

/// The write transaction of a [`MemBackend`].
#[derive(Debug)]
pub struct MemWrite<'a> {
    backend: &'a MemBackend,
    tree: Tree,
    _writer: MutexGuard<'a, ()>,
}

fn scan_tree(
    tree: &Tree,
    bucket: Bucket,
    from: &[u8],
    to: Option<&[u8]>,
    visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
) {
    use std::ops::Bound;
    let start = Bound::Included((bucket, from.to_vec()));
    let end = match to {
        Some(to) => Bound::Excluded((bucket, to.to_vec())),
        None => Bound::Unbounded,
    };
    for ((entry_bucket, key), value) in tree.range((start, end)) {
        if *entry_bucket != bucket || !visit(key, value) {
            return;
        }
    }
}

/// Both sides of [`MemBackend`] read the same way: from the tree they hold.
macro_rules! read_from_tree {
    ($($reader:ty),*) => {$(
        impl BackendRead for $reader {
            fn get(&self, bucket: Bucket, key: &[u8]) -> Result<Option<Vec<u8>>, BackendError> {
                Ok(self.tree.get(&(bucket, key.to_vec())).cloned())
            }

            fn scan(
                &self,
                bucket: Bucket,
                from: &[u8],
                to: Option<&[u8]>,
                visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
            ) -> Result<(), BackendError> {
                scan_tree(&self.tree, bucket, from, to, visit);
                Ok(())
            }
        }
    )*};
}

read_from_tree!(MemRead, MemWrite<'_>);

impl BackendWrite for MemWrite<'_> {
    fn put(&mut self, bucket: Bucket, key: &[u8], value: &[u8]) -> Result<(), BackendError> {
        self.tree.insert((bucket, key.to_vec()), value.to_vec());
        Ok(())
    }

    fn delete(&mut self, bucket: Bucket, key: &[u8]) -> Result<(), BackendError> {
        self.tree.remove(&(bucket, key.to_vec()));
        Ok(())
    }

    fn commit(self) -> Result<(), BackendError> {
        let mut committed = self
            .backend
            .committed
            .write()
            .map_err(|_| BackendError::new("commit", "lock poisoned"))?;
        *committed = Arc::new(self.tree);
        Ok(())
    }
}

impl Backend for MemBackend {
    type Read<'a> = MemRead;
    type Write<'a> = MemWrite<'a>;

    fn read(&self) -> Result<MemRead, BackendError> {
        let committed = self
            .committed
            .read()
            .map_err(|_| BackendError::new("read", "lock poisoned"))?;
        Ok(MemRead {
            tree: Arc::clone(&committed),
        })
    }

    fn write(&self) -> Result<MemWrite<'_>, BackendError> {
        let guard = self
            .writer
            .lock()
            .map_err(|_| BackendError::new("write", "lock poisoned"))?;
        let tree = self.read()?.tree.as_ref().clone();
        Ok(MemWrite {
            backend: self,
            tree,
            _writer: guard,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_do_not_see_later_or_uncommitted_writes() {
        let backend = MemBackend::default();
        let mut write = backend.write().unwrap();
        write.put(Bucket::Key, b"a", b"1").unwrap();
        assert_eq!(write.get(Bucket::Key, b"a").unwrap(), Some(b"1".to_vec()));
        let before = backend.read().unwrap();
        write.commit().unwrap();
        assert_eq!(before.get(Bucket::Key, b"a").unwrap(), None);
        let after = backend.read().unwrap();
        assert_eq!(after.get(Bucket::Key, b"a").unwrap(), Some(b"1".to_vec()));
        drop(backend.write().unwrap()); // an abandoned write changes nothing
        assert_eq!(
            backend.read().unwrap().get(Bucket::Meta, b"a").unwrap(),
            None
        );
    }

    #[test]
    fn scans_stay_inside_their_bucket_and_bounds() {
        let backend = MemBackend::default();
        let mut write = backend.write().unwrap();
        for key in [b"a", b"b", b"c"] {
            write.put(Bucket::Key, key, b"").unwrap();
            write.put(Bucket::Meta, key, b"").unwrap();
        }
        write.commit().unwrap();
        let mut seen = Vec::new();
        let read = backend.read().unwrap();
        read.scan(Bucket::Key, b"b", None, &mut |k, _| {
            seen.push(k.to_vec());
            true
        })
        .unwrap();
        assert_eq!(seen, vec![b"b".to_vec(), b"c".to_vec()]);
        seen.clear();
        read.scan(Bucket::Meta, b"a", Some(b"c"), &mut |k, _| {
            seen.push(k.to_vec());
            true
        })
        .unwrap();
        assert_eq!(seen, vec![b"a".to_vec(), b"b".to_vec()]);
    }
}

/// A [`MemBackend`] whose commits fail on demand, as a disk whose fsync fails would.
#[cfg(test)]
#[derive(Debug, Default)]
pub(crate) struct FailingBackend {
    pub inner: MemBackend,
    pub fail_commits: std::sync::atomic::AtomicBool,
}

#[cfg(test)]
pub(crate) struct FailingWrite<'a> {
    inner: MemWrite<'a>,
    fail: bool,
}

#[cfg(test)]
impl BackendRead for FailingWrite<'_> {
    fn get(&self, bucket: Bucket, key: &[u8]) -> Result<Option<Vec<u8>>, BackendError> {
        self.inner.get(bucket, key)
    }

    fn scan(
        &self,
        bucket: Bucket,
        from: &[u8],
        to: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), BackendError> {
        self.inner.scan(bucket, from, to, visit)
    }
}

#[cfg(test)]
impl BackendWrite for FailingWrite<'_> {
    fn put(&mut self, bucket: Bucket, key: &[u8], value: &[u8]) -> Result<(), BackendError> {
        self.inner.put(bucket, key, value)
    }

    fn delete(&mut self, bucket: Bucket, key: &[u8]) -> Result<(), BackendError> {
        self.inner.delete(bucket, key)
    }

    fn commit(self) -> Result<(), BackendError> {
        if self.fail {
            return Err(BackendError::new("commit", "fdatasync failed (injected)"));
        }
        self.inner.commit()
    }
}

#[cfg(test)]
impl Backend for FailingBackend {
    type Read<'a> = MemRead;
    type Write<'a> = FailingWrite<'a>;

    fn read(&self) -> Result<MemRead, BackendError> {
        self.inner.read()
    }

    fn write(&self) -> Result<FailingWrite<'_>, BackendError> {
        Ok(FailingWrite {
            inner: self.inner.write()?,
            fail: self.fail_commits.load(std::sync::atomic::Ordering::SeqCst),
        })
    }
}
