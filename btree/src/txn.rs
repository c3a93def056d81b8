//! Read and write transactions.

use std::collections::BTreeMap;
use std::ops::RangeBounds;
use std::sync::Arc;

use parking_lot::MutexGuard;

use crate::cursor::{Range, RangeSpec};
use crate::db::{Database, WriterState};
use crate::dirty::DirtyPages;
use crate::error::{Error, Result};
use crate::source::{lookup, PageSource, Snapshot, ValueRef};
use crate::{tree, PageId, TxnId, MAX_KEY_BYTES, MAX_VALUE_BYTES};

/// Bytes of a bucket's entry in the catalog: root page and entry count.
const BUCKET_DESCRIPTOR_BYTES: usize = 16;

/// A bucket as recorded in the catalog.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BucketDescriptor {
    pub(crate) root: PageId,
    pub(crate) entries: u64,
}

impl BucketDescriptor {
    fn encode(&self) -> [u8; BUCKET_DESCRIPTOR_BYTES] {
        let mut out = [0u8; BUCKET_DESCRIPTOR_BYTES];
        out[..8].copy_from_slice(&self.root.to_le_bytes());
        out[8..].copy_from_slice(&self.entries.to_le_bytes());
        out
    }

    pub(crate) fn decode(catalog_page: PageId, bytes: &[u8]) -> Result<BucketDescriptor> {
        let bad = || Error::corrupt(catalog_page, "bucket descriptor is not 16 bytes");
        if bytes.len() != BUCKET_DESCRIPTOR_BYTES {
            return Err(bad());
        }
        let root = u64::from_le_bytes(bytes[..8].try_into().map_err(|_| bad())?);
        let entries = u64::from_le_bytes(bytes[8..].try_into().map_err(|_| bad())?);
        Ok(BucketDescriptor { root, entries })
    }
}

fn name_str(name: &[u8]) -> String {
    String::from_utf8_lossy(name).into_owned()
}

pub(crate) fn find_bucket(
    src: &impl PageSource,
    catalog_root: PageId,
    name: &[u8],
) -> Result<Option<BucketDescriptor>> {
    match lookup(src, catalog_root, name)? {
        None => Ok(None),
        Some(ValueRef::Inline(bytes)) => Ok(Some(BucketDescriptor::decode(catalog_root, bytes)?)),
        Some(ValueRef::Overflow { first_page, .. }) => Err(Error::corrupt(
            first_page,
            "bucket descriptor stored in an overflow chain",
        )),
    }
}

fn check_key(key: &[u8]) -> Result<()> {
    if key.len() > MAX_KEY_BYTES {
        return Err(Error::KeyTooLarge {
            len_bytes: key.len(),
            max_bytes: MAX_KEY_BYTES,
        });
    }
    Ok(())
}

/// A consistent snapshot of every bucket as of one commit. Cheap; any number may be open, and
/// they never block the writer. Pages it can see are not reused until it is dropped.
pub struct ReadTxn<'db> {
    db: &'db Database,
    pub(crate) snapshot: Arc<Snapshot>,
}

impl<'db> ReadTxn<'db> {
    pub(crate) fn new(db: &'db Database, snapshot: Arc<Snapshot>) -> ReadTxn<'db> {
        ReadTxn { db, snapshot }
    }

    /// The commit this snapshot shows.
    pub fn txn_id(&self) -> TxnId {
        self.snapshot.meta.txn
    }

    fn bucket(&self, name: &[u8]) -> Result<BucketDescriptor> {
        find_bucket(&*self.snapshot, self.snapshot.meta.catalog_root, name)?
            .ok_or_else(|| Error::BucketNotFound(name_str(name)))
    }

    /// Names of all buckets, sorted.
    pub fn bucket_names(&self) -> Result<Vec<Vec<u8>>> {
        let spec = RangeSpec::new(.., false);
        spec.over_snapshot(&self.snapshot, self.snapshot.meta.catalog_root)
            .map(|e| e.map(|(k, _)| k))
            .collect()
    }

    /// Whether bucket `name` exists.
    pub fn bucket_exists(&self, name: &[u8]) -> Result<bool> {
        Ok(find_bucket(&*self.snapshot, self.snapshot.meta.catalog_root, name)?.is_some())
    }

    /// Number of entries in a bucket (kept in the catalog; reads no tree page).
    pub fn len(&self, bucket: &[u8]) -> Result<u64> {
        Ok(self.bucket(bucket)?.entries)
    }

    /// The value of `key`, if present.
    pub fn get(&self, bucket: &[u8], key: &[u8]) -> Result<Option<Vec<u8>>> {
        let root = self.bucket(bucket)?.root;
        match lookup(&*self.snapshot, root, key)? {
            None => Ok(None),
            Some(v) => Ok(Some(v.load(&*self.snapshot)?)),
        }
    }

    /// Entries with keys in `bounds`, in ascending key order.
    pub fn range(&self, bucket: &[u8], bounds: impl RangeBounds<[u8]>) -> Result<Range<'_>> {
        let root = self.bucket(bucket)?.root;
        Ok(RangeSpec::new(bounds, false).over_snapshot(&self.snapshot, root))
    }

    /// Entries with keys in `bounds`, in descending key order.
    pub fn range_rev(&self, bucket: &[u8], bounds: impl RangeBounds<[u8]>) -> Result<Range<'_>> {
        let root = self.bucket(bucket)?.root;
        Ok(RangeSpec::new(bounds, true).over_snapshot(&self.snapshot, root))
    }

    /// Entries whose key starts with `prefix`, ascending.
    pub fn prefix(&self, bucket: &[u8], prefix: &[u8]) -> Result<Range<'_>> {
        let root = self.bucket(bucket)?.root;
        Ok(RangeSpec::prefix(prefix, false).over_snapshot(&self.snapshot, root))
    }

    /// Number of keys in `bounds`, without reading any value.
    pub fn count(&self, bucket: &[u8], bounds: impl RangeBounds<[u8]>) -> Result<u64> {
        let root = self.bucket(bucket)?.root;
        let mut spec = RangeSpec::new(bounds, false);
        spec.keys_only = true;
        let mut n = 0u64;
        for entry in spec.over_snapshot(&self.snapshot, root) {
            entry?;
            n += 1;
        }
        Ok(n)
    }

    pub(crate) fn db(&self) -> &'db Database {
        self.db
    }
}

impl Drop for ReadTxn<'_> {
    fn drop(&mut self) {
        self.db.end_read(self.snapshot.meta.txn);
    }
}

/// A bucket's state inside a write transaction.
#[derive(Clone, Copy, Debug)]
struct BucketSlot {
    /// None: the bucket does not exist (or was deleted in this transaction).
    current: Option<BucketDescriptor>,
    changed: bool,
}

/// The one write transaction. Sees its own writes; nothing is visible to others (or durable)
/// until [`WriteTxn::commit`] returns. Dropping it without committing aborts it.
pub struct WriteTxn<'db> {
    db: &'db Database,
    writer: MutexGuard<'db, WriterState>,
    pub(crate) pages: DirtyPages,
    catalog_root: PageId,
    buckets: BTreeMap<Vec<u8>, BucketSlot>,
}

impl<'db> WriteTxn<'db> {
    pub(crate) fn new(
        db: &'db Database,
        writer: MutexGuard<'db, WriterState>,
        pages: DirtyPages,
    ) -> WriteTxn<'db> {
        let catalog_root = pages.base.meta.catalog_root;
        WriteTxn {
            db,
            writer,
            pages,
            catalog_root,
            buckets: BTreeMap::new(),
        }
    }

    /// The id this transaction will commit as.
    pub fn txn_id(&self) -> TxnId {
        self.pages.txn
    }

    fn slot(&mut self, name: &[u8]) -> Result<&mut BucketSlot> {
        if !self.buckets.contains_key(name) {
            let current = find_bucket(&self.pages, self.catalog_root, name)?;
            self.buckets.insert(
                name.to_vec(),
                BucketSlot {
                    current,
                    changed: false,
                },
            );
        }
        self.buckets
            .get_mut(name)
            .ok_or_else(|| Error::BucketNotFound(name_str(name)))
    }

    fn existing(&mut self, name: &[u8]) -> Result<(&mut BucketSlot, BucketDescriptor)> {
        let slot = self.slot(name)?;
        let desc = slot
            .current
            .ok_or_else(|| Error::BucketNotFound(name_str(name)))?;
        Ok((slot, desc))
    }

    fn read_root(&mut self, name: &[u8]) -> Result<PageId> {
        Ok(self.existing(name)?.1.root)
    }

    /// Creates an empty bucket; fails if it exists.
    pub fn create_bucket(&mut self, name: &[u8]) -> Result<()> {
        check_key(name)?;
        let slot = self.slot(name)?;
        if slot.current.is_some() {
            return Err(Error::BucketExists(name_str(name)));
        }
        slot.current = Some(BucketDescriptor {
            root: 0,
            entries: 0,
        });
        slot.changed = true;
        Ok(())
    }

    /// Creates the bucket unless it exists.
    pub fn create_bucket_if_missing(&mut self, name: &[u8]) -> Result<()> {
        if self.slot(name)?.current.is_none() {
            self.create_bucket(name)?;
        }
        Ok(())
    }

    /// Deletes a bucket and everything in it; its pages are freed.
    pub fn delete_bucket(&mut self, name: &[u8]) -> Result<()> {
        let (slot, desc) = self.existing(name)?;
        slot.current = None;
        slot.changed = true;
        tree::free_tree(&mut self.pages, desc.root)
    }

    /// Whether bucket `name` exists.
    pub fn bucket_exists(&mut self, name: &[u8]) -> Result<bool> {
        Ok(self.slot(name)?.current.is_some())
    }

    /// Inserts or replaces `key`.
    pub fn put(&mut self, bucket: &[u8], key: &[u8], value: &[u8]) -> Result<()> {
        check_key(key)?;
        if value.len() > MAX_VALUE_BYTES {
            return Err(Error::ValueTooLarge {
                len_bytes: value.len(),
                max_bytes: MAX_VALUE_BYTES,
            });
        }
        let (_, mut desc) = self.existing(bucket)?;
        let existed = tree::insert(&mut self.pages, &mut desc.root, key, value)?;
        desc.entries += u64::from(!existed);
        let slot = self.slot(bucket)?;
        slot.current = Some(desc);
        slot.changed = true;
        Ok(())
    }

    /// Removes `key`; returns whether it was present.
    pub fn delete(&mut self, bucket: &[u8], key: &[u8]) -> Result<bool> {
        let (_, mut desc) = self.existing(bucket)?;
        let existed = tree::remove(&mut self.pages, &mut desc.root, key)?;
        if existed {
            desc.entries = desc.entries.saturating_sub(1);
            let slot = self.slot(bucket)?;
            slot.current = Some(desc);
            slot.changed = true;
        }
        Ok(existed)
    }

    /// The value of `key` as this transaction sees it.
    pub fn get(&mut self, bucket: &[u8], key: &[u8]) -> Result<Option<Vec<u8>>> {
        let root = self.read_root(bucket)?;
        tree::get(&self.pages, root, key)
    }

    /// Number of entries in a bucket.
    pub fn len(&mut self, bucket: &[u8]) -> Result<u64> {
        Ok(self.existing(bucket)?.1.entries)
    }

    /// Entries with keys in `bounds`, ascending, as this transaction sees them.
    pub fn range(&mut self, bucket: &[u8], bounds: impl RangeBounds<[u8]>) -> Result<Range<'_>> {
        let root = self.read_root(bucket)?;
        Ok(RangeSpec::new(bounds, false).over_dirty(&self.pages, root))
    }

    /// Entries with keys in `bounds`, descending, as this transaction sees them.
    pub fn range_rev(
        &mut self,
        bucket: &[u8],
        bounds: impl RangeBounds<[u8]>,
    ) -> Result<Range<'_>> {
        let root = self.read_root(bucket)?;
        Ok(RangeSpec::new(bounds, true).over_dirty(&self.pages, root))
    }

    /// Makes every change durable (in [`crate::Durability::Durable`] mode) and visible, atomically.
    pub fn commit(mut self) -> Result<()> {
        let changed: Vec<(Vec<u8>, Option<BucketDescriptor>)> = self
            .buckets
            .iter()
            .filter(|(_, s)| s.changed)
            .map(|(name, s)| (name.clone(), s.current))
            .collect();
        if changed.is_empty() {
            return Ok(());
        }
        for (name, desc) in changed {
            match desc {
                Some(desc) => {
                    tree::insert(
                        &mut self.pages,
                        &mut self.catalog_root,
                        &name,
                        &desc.encode(),
                    )?;
                }
                None => {
                    tree::remove(&mut self.pages, &mut self.catalog_root, &name)?;
                }
            }
        }
        let catalog_root = self.catalog_root;
        self.db
            .commit(&mut self.writer, &mut self.pages, catalog_root)
    }

    /// Discards every change.
    pub fn abort(self) {}
}
