//! Copies of a snapshot: a byte-for-byte stream (`snapshot_to`) and a compacted rebuild
//! (`compact_to`, etcd's defrag).

use std::io::Write;
use std::path::Path;

use crate::db::{Database, Options};
use crate::error::{Error, Result};
use crate::freelist::FreeList;
use crate::source::PageSource;
use crate::txn::ReadTxn;
use crate::PAGE_SIZE;

/// Entries copied per write transaction while compacting (bounds the writer's memory).
const COMPACT_BATCH_ENTRIES: usize = 10_000;

impl ReadTxn<'_> {
    /// Streams a consistent copy of this snapshot as a database file: both meta slots show this
    /// commit, reachable pages are copied, free pages are written as zeros (the writer may be
    /// reusing them right now). Writes continue meanwhile. Returns the bytes written.
    pub fn snapshot_to(&self, out: &mut impl Write) -> Result<u64> {
        let src = &*self.snapshot;
        let meta = src.meta;
        let free = FreeList::read(src, src)?;
        let write = |out: &mut dyn Write, bytes: &[u8]| {
            out.write_all(bytes)
                .map_err(Error::io("writing a snapshot"))
        };
        write(out, &meta.encode(0, &src.inline))?;
        write(out, &meta.encode(1, &src.inline))?;
        let zeros = vec![0u8; PAGE_SIZE];
        for id in 2..meta.page_count {
            if free.contains(id) {
                write(out, &zeros)?;
            } else {
                write(out, src.page_bytes(id)?)?;
            }
        }
        out.flush().map_err(Error::io("flushing a snapshot"))?;
        Ok(meta.page_count * PAGE_SIZE as u64)
    }

    /// Writes a compacted copy of this snapshot to a new file at `path` (which must not exist
    /// or be empty): every bucket re-inserted in key order, so pages are full and no page is
    /// free. The copy is synced before this returns.
    pub fn compact_to(&self, path: impl AsRef<Path>) -> Result<()> {
        let target = Database::open(path.as_ref(), Options::default())?;
        if target.begin_read()?.txn_id() != 0 {
            return Err(Error::CompactionTargetNotEmpty(path.as_ref().to_path_buf()));
        }
        for name in self.bucket_names()? {
            let mut w = target.begin_write()?;
            w.create_bucket(&name)?;
            let mut in_batch = 0usize;
            for entry in self.range(&name, ..)? {
                let (key, value) = entry?;
                w.put(&name, &key, &value)?;
                in_batch += 1;
                if in_batch == COMPACT_BATCH_ENTRIES {
                    w.commit()?;
                    w = target.begin_write()?;
                    in_batch = 0;
                }
            }
            w.commit()?;
        }
        Ok(())
    }
}

impl Database {
    /// Writes a compacted copy of the last commit to `path` (see [`ReadTxn::compact_to`]).
    pub fn compact_to(&self, path: impl AsRef<Path>) -> Result<()> {
        self.begin_read()?.compact_to(path)
    }

    /// Rewrites the file compactly and swaps to it (etcd's defrag): compacts into
    /// `<path>.compact`, renames it over the original, syncs the directory and reopens. Needs
    /// the database by value, so no transaction can be open.
    pub fn compact(self) -> Result<Database> {
        let path = self
            .path()
            .ok_or_else(|| Error::Io {
                action: "compacting a database not opened from a path",
                source: std::io::Error::from(std::io::ErrorKind::Unsupported),
            })?
            .to_path_buf();
        let options = self.options();
        let tmp = path.with_extension("compact");
        let _ = std::fs::remove_file(&tmp);
        self.begin_read()?.compact_to(&tmp)?;
        drop(self);
        std::fs::rename(&tmp, &path).map_err(Error::io("renaming the compacted file"))?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(Error::io("syncing the directory"))?;
        }
        Database::open(&path, options)
    }
}
