//! `cairn-btree` as the MVCC store's [`Backend`]: one named B+tree per [`Bucket`].

use std::cell::RefCell;
use std::ops::Bound;
use std::path::Path;

use cairn_btree::{Database, Durability, Options, ReadTxn, WriteTxn};

use crate::mvcc::backend::{Backend, BackendError, BackendRead, BackendWrite, Bucket};

/// The key-space file.
pub struct BtreeBackend {
    db: Database,
}

fn storage_error(operation: &'static str) -> impl Fn(cairn_btree::Error) -> BackendError {
    move |err| BackendError::new(operation, err)
}

impl BtreeBackend {
    /// Opens (or creates) the file and makes sure every bucket exists. `NoSync` is for a
    /// server whose WAL makes writes durable: the file is rebuilt from the WAL after a crash.
    pub fn open(path: &Path, durability: Durability) -> Result<Self, BackendError> {
        let db = Database::open(path, Options { durability }).map_err(storage_error("open"))?;
        let mut write = db.begin_write().map_err(storage_error("open"))?;
        for bucket in Bucket::ALL {
            write
                .create_bucket_if_missing(bucket.name())
                .map_err(storage_error("create bucket"))?;
        }
        write.commit().map_err(storage_error("commit"))?;
        db.checkpoint().map_err(storage_error("checkpoint"))?;
        Ok(BtreeBackend { db })
    }

    pub fn database(&self) -> &Database {
        &self.db
    }
}

fn bounds<'k>(from: &'k [u8], to: Option<&'k [u8]>) -> (Bound<&'k [u8]>, Bound<&'k [u8]>) {
    (
        Bound::Included(from),
        to.map_or(Bound::Unbounded, Bound::Excluded),
    )
}

/// Hands a range's entries to `visit` until it returns false.
fn visit_entries(
    range: cairn_btree::Range<'_>,
    visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
) -> Result<(), BackendError> {
    for entry in range {
        let (key, value) = entry.map_err(storage_error("scan"))?;
        if !visit(&key, &value) {
            break;
        }
    }
    Ok(())
}

/// A snapshot of the file.
pub struct BtreeRead<'db> {
    txn: ReadTxn<'db>,
}

impl BackendRead for BtreeRead<'_> {
    fn get(&self, bucket: Bucket, key: &[u8]) -> Result<Option<Vec<u8>>, BackendError> {
        self.txn
            .get(bucket.name(), key)
            .map_err(storage_error("read"))
    }

    fn scan(
        &self,
        bucket: Bucket,
        from: &[u8],
        to: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), BackendError> {
        let range = self
            .txn
            .range(bucket.name(), bounds(from, to))
            .map_err(storage_error("scan"))?;
        visit_entries(range, visit)
    }
}

/// The file's write transaction. (Its reads need `&mut`; the MVCC interface reads through
/// `&`, so the transaction sits in a `RefCell`, used by one thread.)
pub struct BtreeWrite<'db> {
    txn: RefCell<WriteTxn<'db>>,
}

impl BackendRead for BtreeWrite<'_> {
    fn get(&self, bucket: Bucket, key: &[u8]) -> Result<Option<Vec<u8>>, BackendError> {
        self.txn
            .borrow_mut()
            .get(bucket.name(), key)
            .map_err(storage_error("read"))
    }

    fn scan(
        &self,
        bucket: Bucket,
        from: &[u8],
        to: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), BackendError> {
        let mut txn = self.txn.borrow_mut();
        let range = txn
            .range(bucket.name(), bounds(from, to))
            .map_err(storage_error("scan"))?;
        visit_entries(range, visit)
    }
}

impl BackendWrite for BtreeWrite<'_> {
    fn put(&mut self, bucket: Bucket, key: &[u8], value: &[u8]) -> Result<(), BackendError> {
        self.txn
            .get_mut()
            .put(bucket.name(), key, value)
            .map_err(storage_error("write"))
    }

    fn delete(&mut self, bucket: Bucket, key: &[u8]) -> Result<(), BackendError> {
        self.txn
            .get_mut()
            .delete(bucket.name(), key)
            .map(|_| ())
            .map_err(storage_error("delete"))
    }

    fn commit(self) -> Result<(), BackendError> {
        self.txn
            .into_inner()
            .commit()
            .map_err(storage_error("commit"))
    }
}

impl Backend for BtreeBackend {
    type Read<'a> = BtreeRead<'a>;
    type Write<'a> = BtreeWrite<'a>;

    fn read(&self) -> Result<BtreeRead<'_>, BackendError> {
        Ok(BtreeRead {
            txn: self.db.begin_read().map_err(storage_error("begin read"))?,
        })
    }

    fn write(&self) -> Result<BtreeWrite<'_>, BackendError> {
        Ok(BtreeWrite {
            txn: RefCell::new(
                self.db
                    .begin_write()
                    .map_err(storage_error("begin write"))?,
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mvcc::model_tests::{run_model, step};
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        /// The MVCC store keeps every promise of the model on the real page store too.
        #[test]
        fn mvcc_on_the_btree_matches_the_model(steps in prop::collection::vec(step(), 1..40)) {
            let dir = tempfile::tempdir().expect("temp dir");
            let backend = BtreeBackend::open(&dir.path().join("db"), Durability::NoSync).expect("open");
            run_model(backend, steps)?;
        }
    }

    #[test]
    fn reopened_file_keeps_committed_revisions() {
        use crate::mvcc::{KeyRange, MvccStore, RangeOptions};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        {
            let store =
                MvccStore::open(BtreeBackend::open(&path, Durability::Durable).unwrap()).unwrap();
            let mut batch = store.write().unwrap();
            batch.put(b"k", b"v1", 0).unwrap();
            batch.end_txn();
            batch.put(b"k", b"v2", 0).unwrap();
            batch.set_applied_index(7).unwrap();
            batch.commit().unwrap();
        }
        let store =
            MvccStore::open(BtreeBackend::open(&path, Durability::Durable).unwrap()).unwrap();
        assert_eq!(store.current_revision(), 3);
        assert_eq!(store.applied_index().unwrap(), 7);
        let old = store
            .range(
                &KeyRange::Single(b"k".to_vec()),
                RangeOptions {
                    rev: 2,
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(old.kvs[0].value, b"v1");
    }
}
