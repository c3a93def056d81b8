//! Loading leases at start: the stored records, then the keys the key space attaches to them.

use std::time::Instant;

use super::table::{LeaseLoadError, LeaseTable};
use crate::mvcc::{Backend, Bucket, KeyRange, MvccError, MvccStore, RangeOptions};

/// Keys read per range while attaching keys to their leases (bounds memory at start).
pub(super) const ATTACH_SCAN_KEYS: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Record(#[from] LeaseLoadError),
    #[error("reading leases: {0}")]
    Store(#[from] MvccError),
}

/// The lease table as the store holds it, `now` being the start.
pub fn load_table<B: Backend>(
    store: &MvccStore<B>,
    now: Instant,
    now_unix_ms: u64,
) -> Result<LeaseTable, LoadError> {
    let mut records = Vec::new();
    store.scan_records(Bucket::Lease, &mut |key, value| {
        records.push((key.to_vec(), value.to_vec()));
        true
    })?;
    let mut table = LeaseTable::load(records, now, now_unix_ms)?;
    if table.is_empty() {
        return Ok(table);
    }
    let at = store.current_revision();
    let mut from = vec![0u8];
    let mut orphans = 0usize;
    loop {
        let found = store.range(
            &KeyRange::from_etcd(&from, b"\0"),
            RangeOptions {
                rev: at,
                limit: ATTACH_SCAN_KEYS,
                page: true,
                ..Default::default()
            },
        )?;
        for kv in found.kvs.iter().filter(|kv| kv.lease != 0) {
            if !table.attach_loaded_key(&kv.key, kv.lease) {
                orphans += 1;
            }
        }
        match found.kvs.last() {
            Some(last) if found.count > found.kvs.len() => {
                from = [last.key.as_slice(), &[0]].concat();
            }
            _ => break,
        }
    }
    if orphans > 0 {
        tracing::warn!(
            orphans,
            "keys name leases that do not exist; they stay, unattached"
        );
    }
    Ok(table)
}
