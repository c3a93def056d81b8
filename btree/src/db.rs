//! The database handle: open and recovery, transaction bookkeeping, and the commit protocol.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};

use crate::dirty::DirtyPages;
use crate::error::{Error, Result};
use crate::freelist::FreeList;
use crate::idlist::{encode_page, encoded_len, read_list, split_into_pages};
use crate::io::Mapping;
use crate::io::{OsFile, StorageFile};
use crate::meta::{InlineLists, Meta, META_INLINE_BYTES};
use crate::page::{get_u64, verify_checksum, PageType};
use crate::source::{PageSource, Snapshot, VerifiedPages};
use crate::txn::{ReadTxn, WriteTxn};
use crate::{PageId, TxnId, PAGE_SIZE};

/// Smallest step the file grows by, in bytes.
const MIN_GROWTH_BYTES: u64 = 1 << 20;
/// Largest step the file grows by, in bytes (below it, the file doubles).
const MAX_GROWTH_BYTES: u64 = 1 << 30;
/// Largest commit buffer kept between commits, in bytes (a huge value's buffer is dropped).
const MAX_RETAINED_COMMIT_BUFFER_BYTES: usize = 16 << 20;

/// When a commit is durable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// `fdatasync` twice per commit (pages, then meta): a returned commit survives power loss.
    #[default]
    Durable,
    /// No `fdatasync`: survives a process crash, not a power loss (the file may then open at an
    /// older commit or be reported corrupt). For callers that can rebuild from their own log.
    NoSync,
}

/// How to open a database.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Sync policy of every commit.
    pub durability: Durability,
}

/// What only the writer touches between commits.
pub(crate) struct WriterState {
    pub(crate) freelist: FreeList,
    pub(crate) page_count: u64,
    pub(crate) file_len: u64,
    /// Pages of the last commit's written list, freed by the next commit.
    pub(crate) written_chain: Vec<PageId>,
    /// Encoded pages of the commit being written; kept to spare page faults on the next one.
    pub(crate) commit_buf: Vec<u8>,
}

/// Pages a mapping covers.
fn mapping_pages(mapping: &dyn Mapping) -> u64 {
    (mapping.bytes().len() / PAGE_SIZE) as u64
}

/// Verifies that every page the commit of `src` wrote is on disk whole (crate docs, recovery);
/// returns the written list's own pages.
fn verify_commit(src: &Snapshot) -> Result<Vec<PageId>> {
    let meta = src.meta;
    let (listed, chain) = read_list(
        src,
        meta.written_head,
        &src.inline.written,
        meta.slot(),
        meta.page_count,
        PageType::WrittenList,
    )?;
    for &id in &chain {
        if get_u64(src.page_bytes(id)?, 12) != Some(meta.txn) {
            return Err(Error::corrupt(
                id,
                format!("written list is not from commit {}", meta.txn),
            ));
        }
    }
    if listed.len() as u64 != meta.written_count {
        return Err(Error::corrupt(
            meta.slot(),
            "written list length differs from the meta page",
        ));
    }
    let mut crc = crc32fast::Hasher::new();
    for (id, _) in listed {
        let page = src.page_bytes(id)?;
        verify_checksum(page, id)?;
        if get_u64(page, 12) != Some(meta.txn) {
            return Err(Error::corrupt(
                id,
                format!("page not written by commit {}", meta.txn),
            ));
        }
        crc.update(&id.to_le_bytes());
        crc.update(&page[..4]);
    }
    if crc.finalize() != meta.written_crc {
        return Err(Error::corrupt(
            meta.slot(),
            "pages differ from those the commit wrote",
        ));
    }
    Ok(chain)
}

/// An open database file. `Sync`: share it (e.g. in an `Arc`) between threads.
pub struct Database {
    pub(crate) file: Arc<dyn StorageFile>,
    options: Options,
    path: Option<PathBuf>,
    current: Mutex<Arc<Snapshot>>,
    /// Live readers per snapshot id; the oldest bounds page reuse.
    readers: Mutex<BTreeMap<TxnId, usize>>,
    writer: Mutex<WriterState>,
    poisoned: Mutex<Option<String>>,
}

fn grown_len(current: u64, needed: u64) -> u64 {
    let step = current.clamp(MIN_GROWTH_BYTES, MAX_GROWTH_BYTES);
    needed
        .max(current + step)
        .next_multiple_of(PAGE_SIZE as u64)
}

impl Database {
    /// Opens the file at `path`, creating an empty database if it is missing or empty.
    pub fn open(path: impl AsRef<Path>, options: Options) -> Result<Database> {
        let path = path.as_ref();
        let file = OsFile::open(path)
            .map_err(Error::io("opening the database file"))?
            .ok_or(Error::Locked)?;
        let mut db = Database::open_file(Arc::new(file), options)?;
        db.path = Some(path.to_path_buf());
        Ok(db)
    }

    /// Opens a database on any [`StorageFile`] (tests use [`crate::io::sim::SimDisk`]).
    pub fn open_file(file: Arc<dyn StorageFile>, options: Options) -> Result<Database> {
        let mut len = file
            .len_bytes()
            .map_err(Error::io("reading the file length"))?;
        if len == 0 {
            let empty = Meta::empty();
            let mut both = empty.encode(0, &InlineLists::default());
            both.extend_from_slice(&empty.encode(1, &InlineLists::default()));
            file.write_all_at(&both, 0)
                .map_err(Error::io("writing the first meta pages"))?;
            file.sync_data().map_err(Error::io("syncing a new file"))?;
            len = both.len() as u64;
        }
        if len < 2 * PAGE_SIZE as u64 {
            return Err(Error::corrupt(
                0,
                format!("file is {len} bytes, shorter than its two meta pages"),
            ));
        }
        let mut metas = Vec::new();
        let mut first_error = None;
        for slot in 0..2u64 {
            let mut page = vec![0u8; PAGE_SIZE];
            file.read_exact_at(&mut page, slot * PAGE_SIZE as u64)
                .map_err(Error::io("reading a meta page"))?;
            match Meta::decode(&page, slot, len) {
                Ok(meta) => metas.push(meta),
                Err(e) => first_error = first_error.or(Some(e)),
            }
        }
        if options.durability == Durability::Durable {
            // A previous process may have died with writes only in the page cache; make what
            // we are about to verify and build on durable first.
            file.sync_data().map_err(Error::io("syncing at open"))?;
        }
        let mapping = file.map().map_err(Error::io("mapping the file"))?;
        metas.sort_by_key(|(m, _)| std::cmp::Reverse(m.txn));
        let mut chosen = None;
        for (meta, inline) in metas {
            if (mapping.bytes().len() as u64) < meta.page_count * PAGE_SIZE as u64 {
                return Err(Error::corrupt(meta.slot(), "file shrank while opening"));
            }
            let candidate = Snapshot {
                meta,
                mapping: Arc::clone(&mapping),
                verified: Arc::new(VerifiedPages::new(0)),
                inline: Arc::new(inline),
            };
            match verify_commit(&candidate) {
                Ok(written_chain) => {
                    chosen = Some((candidate, written_chain));
                    break;
                }
                Err(e) => first_error = first_error.or(Some(e)),
            }
        }
        let Some((snapshot, written_chain)) = chosen else {
            let cause = first_error.map(|e| e.to_string()).unwrap_or_default();
            return Err(Error::corrupt(
                0,
                format!("no valid, complete commit ({cause})"),
            ));
        };
        let meta = snapshot.meta;
        let snapshot = Arc::new(Snapshot {
            verified: Arc::new(VerifiedPages::new(mapping_pages(&*snapshot.mapping))),
            ..snapshot
        });
        let freelist = FreeList::read(&*snapshot, &snapshot)?;
        Ok(Database {
            file,
            options,
            path: None,
            current: Mutex::new(snapshot),
            readers: Mutex::new(BTreeMap::new()),
            writer: Mutex::new(WriterState {
                freelist,
                page_count: meta.page_count,
                file_len: len,
                commit_buf: Vec::new(),
                written_chain,
            }),
            poisoned: Mutex::new(None),
        })
    }

    /// The path this database was opened from, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// A snapshot of the last commit. Never waits for the writer.
    pub fn begin_read(&self) -> Result<ReadTxn<'_>> {
        let current = self.current.lock();
        // Registered under the `current` lock, so a writer computing the oldest snapshot
        // cannot miss a reader that has already taken this one.
        *self.readers.lock().entry(current.meta.txn).or_insert(0) += 1;
        Ok(ReadTxn::new(self, Arc::clone(&current)))
    }

    pub(crate) fn end_read(&self, txn: TxnId) {
        let mut readers = self.readers.lock();
        if let Some(n) = readers.get_mut(&txn) {
            *n -= 1;
            if *n == 0 {
                readers.remove(&txn);
            }
        }
    }

    /// Starts the write transaction, waiting while another one is open (in any thread: a
    /// thread that already holds a [`WriteTxn`] and asks for another waits forever).
    pub fn begin_write(&self) -> Result<WriteTxn<'_>> {
        let writer = self.writer.lock();
        if let Some(reason) = self.poisoned.lock().clone() {
            return Err(Error::Poisoned(reason));
        }
        let (base, oldest) = {
            let current = self.current.lock();
            let oldest_reader = self.readers.lock().keys().next().copied();
            let base = Arc::clone(&current);
            let oldest = oldest_reader.unwrap_or(base.meta.txn).min(base.meta.txn);
            (base, oldest)
        };
        let mut freelist = writer.freelist.clone();
        freelist.release_up_to(oldest);
        let pages = DirtyPages::new(base, freelist, writer.page_count);
        Ok(WriteTxn::new(self, writer, pages))
    }

    /// Steps 1–3 of the commit protocol (crate docs). Poisons the database on any I/O error.
    pub(crate) fn commit(
        &self,
        writer: &mut MutexGuard<'_, WriterState>,
        pages: &mut DirtyPages,
        catalog_root: PageId,
    ) -> Result<()> {
        pages.write_key_chains();
        // This commit writes a new free list and written list; the last commit's are freed.
        let old_chains: Vec<PageId> = std::mem::take(&mut pages.freelist.chain)
            .into_iter()
            .chain(writer.written_chain.iter().copied())
            .collect();
        for id in old_chains {
            pages.free(id)?;
        }
        // Size both lists; allocating a page only shrinks the free list (never lengthening its
        // encoding) and grows the written list, so this settles.
        let (mut free_chain, mut written_chain) = (Vec::new(), Vec::new());
        let mut inline = InlineLists::default();
        let (free_ids, listed) = loop {
            let free_ids = pages.freelist.all_ids();
            if free_chain.is_empty() && written_chain.is_empty() {
                let mut listed: Vec<PageId> = pages
                    .nodes
                    .keys()
                    .chain(pages.raw.keys())
                    .copied()
                    .collect();
                listed.sort_unstable();
                // Small lists ride in the meta page: fewer pages for the commit's one sync.
                if encoded_len(&free_ids) + encoded_len(&listed) <= META_INLINE_BYTES {
                    inline = InlineLists {
                        free: free_ids.clone(),
                        written: listed.clone(),
                    };
                    break (free_ids, listed);
                }
            }
            if free_chain.len() < split_into_pages(&free_ids).len() {
                free_chain.push(pages.alloc());
                continue;
            }
            let mut listed: Vec<PageId> = pages
                .nodes
                .keys()
                .chain(pages.raw.keys())
                .copied()
                .collect();
            listed.extend_from_slice(&free_chain);
            listed.sort_unstable();
            if written_chain.len() < split_into_pages(&listed).len() {
                written_chain.push(pages.alloc());
                continue;
            }
            break (free_ids, listed);
        };
        let txn = pages.txn;
        let mut ids = listed.clone();
        ids.extend_from_slice(&written_chain);
        ids.sort_unstable();
        debug_assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "each page is written once"
        );
        debug_assert!(
            ids.iter().all(|id| *id >= 2 && *id < pages.page_count),
            "pages in range"
        );
        let free_split = split_into_pages(&free_ids);
        let listed_split = split_into_pages(&listed);
        let share =
            |all: &'_ [PageId], split: &[std::ops::Range<usize>], index: usize| -> Vec<PageId> {
                split
                    .get(index)
                    .map(|r| all[r.clone()].to_vec())
                    .unwrap_or_default()
            };
        // One zeroed buffer, reused across commits, holds every page in id order.
        let mut buf = std::mem::take(&mut writer.commit_buf);
        buf.clear();
        buf.resize(ids.len() * PAGE_SIZE, 0);
        let mut written_crc = crc32fast::Hasher::new();
        for (page, id) in buf.chunks_exact_mut(PAGE_SIZE).zip(&ids) {
            if let Some(node) = pages.nodes.get(id) {
                node.encode_into(page, *id, txn)?;
            } else if let Some(raw) = pages.raw.get(id) {
                page.copy_from_slice(raw);
            } else if let Some(index) = free_chain.iter().position(|c| c == id) {
                let next = free_chain.get(index + 1).copied().unwrap_or(0);
                let share = share(&free_ids, &free_split, index);
                encode_page(page, PageType::FreeList, &share, *id, next, txn);
            } else if let Some(index) = written_chain.iter().position(|c| c == id) {
                let next = written_chain.get(index + 1).copied().unwrap_or(0);
                let share = share(&listed, &listed_split, index);
                encode_page(page, PageType::WrittenList, &share, *id, next, txn);
                continue;
            }
            // `listed` and `ids` are both sorted, so this visits `listed` in order.
            written_crc.update(&id.to_le_bytes());
            written_crc.update(&page[..4]);
        }
        let meta = Meta {
            txn,
            catalog_root,
            freelist_head: free_chain.first().copied().unwrap_or(0),
            page_count: pages.page_count,
            written_head: written_chain.first().copied().unwrap_or(0),
            written_count: listed.len() as u64,
            written_crc: written_crc.finalize(),
        };
        let file_len = writer.file_len;
        let written = self.write_commit(&ids, &buf, meta, inline, file_len, &pages.base);
        if buf.capacity() <= MAX_RETAINED_COMMIT_BUFFER_BYTES {
            writer.commit_buf = buf;
        }
        match written {
            Ok((snapshot, file_len)) => {
                pages.freelist.chain = free_chain;
                writer.written_chain = written_chain;
                writer.freelist = std::mem::take(&mut pages.freelist);
                writer.page_count = meta.page_count;
                writer.file_len = file_len;
                *self.current.lock() = Arc::new(snapshot);
                Ok(())
            }
            Err(e) => {
                *self.poisoned.lock() = Some(e.to_string());
                Err(e)
            }
        }
    }

    fn write_commit(
        &self,
        ids: &[PageId],
        buf: &[u8],
        meta: Meta,
        inline: InlineLists,
        file_len: u64,
        base: &Snapshot,
    ) -> Result<(Snapshot, u64)> {
        let needed = meta.page_count * PAGE_SIZE as u64;
        let mut new_len = file_len;
        if needed > file_len {
            new_len = grown_len(file_len, needed);
            self.file
                .set_len(new_len)
                .map_err(Error::io("growing the file"))?;
        }
        // Coalesce runs of consecutive pages into one write each.
        let mut i = 0;
        while i < ids.len() {
            let mut j = i + 1;
            while j < ids.len() && ids[j] == ids[j - 1] + 1 {
                j += 1;
            }
            self.file
                .write_all_at(
                    &buf[i * PAGE_SIZE..j * PAGE_SIZE],
                    ids[i] * PAGE_SIZE as u64,
                )
                .map_err(Error::io("writing pages"))?;
            i = j;
        }
        let slot = meta.slot();
        self.file
            .write_all_at(&meta.encode(slot, &inline), slot * PAGE_SIZE as u64)
            .map_err(Error::io("writing the meta page"))?;
        if self.options.durability == Durability::Durable {
            // One sync covers pages and meta: recovery verifies the written list (crate docs).
            self.file
                .sync_data()
                .map_err(Error::io("syncing the commit"))?;
        }
        let mapping = if new_len != file_len || !self.file.mapping_tracks_writes() {
            self.file
                .map()
                .map_err(Error::io("mapping the grown file"))?
        } else {
            Arc::clone(&base.mapping)
        };
        if (mapping.bytes().len() as u64) < needed {
            return Err(Error::corrupt(slot, "mapping shorter than the page count"));
        }
        let verified = if Arc::ptr_eq(&mapping, &base.mapping) {
            // Same mapping: pages rewritten by this commit must be verified afresh. No live
            // reader can reach their old content (I1), so none can set these bits again.
            for &id in ids {
                base.verified.forget(id);
            }
            Arc::clone(&base.verified)
        } else {
            Arc::new(VerifiedPages::new(mapping_pages(&*mapping)))
        };
        Ok((
            Snapshot {
                meta,
                mapping,
                verified,
                inline: Arc::new(inline),
            },
            new_len,
        ))
    }

    /// Why the database refuses writes, if it does.
    pub fn poisoned(&self) -> Option<String> {
        self.poisoned.lock().clone()
    }
}

impl Database {
    pub(crate) fn options(&self) -> Options {
        self.options
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrite(db: &Database, byte: u8) -> Vec<PageId> {
        let mut w = db.begin_write().unwrap();
        w.create_bucket_if_missing(b"b").unwrap();
        for i in 0..2000u32 {
            w.put(b"b", &i.to_be_bytes(), &[byte; 100]).unwrap();
        }
        let written = w.pages.nodes.keys().copied().collect();
        w.commit().unwrap();
        written
    }

    #[test]
    fn pages_a_commit_rewrites_lose_their_verified_mark() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(dir.path().join("v.btree"), Options::default()).unwrap();
        rewrite(&db, 1);
        let r = db.begin_read().unwrap();
        assert_eq!(r.range(b"b", ..).unwrap().count(), 2000);
        let verified = Arc::clone(&r.snapshot.verified);
        drop(r);
        rewrite(&db, 2);
        // The third commit reuses the pages the first wrote, which the reader above verified.
        let marked_before: Vec<PageId> = (0..db.current.lock().meta.page_count)
            .filter(|&id| verified.is_verified(id))
            .collect();
        let written = rewrite(&db, 3);
        assert!(
            Arc::ptr_eq(&db.current.lock().verified, &verified),
            "same mapping, same record"
        );
        assert!(
            written.iter().any(|id| marked_before.contains(id)),
            "the test reuses verified pages"
        );
        assert!(
            written.iter().all(|&id| !verified.is_verified(id)),
            "rewritten pages are checked again"
        );
    }
}
