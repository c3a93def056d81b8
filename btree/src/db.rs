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
    /// A commit is visible at once but durable only at the next [`Database::checkpoint`],
    /// which costs one `fdatasync` however many commits it covers. The file always opens,
    /// intact, at the last checkpoint (after a crash of any kind): its pages are not reused
    /// until the next checkpoint is durable, and commits in between write no meta page. For
    /// callers that can replay what came after from their own log.
    Checkpointed,
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
    /// Checkpointed mode: pages written since the last checkpoint and still reachable, with
    /// their checksums (the next checkpoint's written list covers them all).
    pub(crate) unsynced: BTreeMap<PageId, [u8; 4]>,
    /// Checkpointed mode: the meta page of the last commit, not yet written.
    pub(crate) pending_meta: Option<(Meta, InlineLists)>,
    /// The last commit known durable, and its meta slot.
    pub(crate) durable_txn: TxnId,
    pub(crate) durable_slot: PageId,
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
        // A checkpoint's list also names pages of the unsynced commits before it; the CRC
        // below tells a stale page from the one written.
        if get_u64(page, 12).is_none_or(|txn| txn == 0 || txn > meta.txn) {
            return Err(Error::corrupt(
                id,
                format!("page not written by commit {} or before it", meta.txn),
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
                Ok((meta, inline)) => metas.push((meta, inline, slot)),
                Err(e) => first_error = first_error.or(Some(e)),
            }
        }
        if options.durability != Durability::NoSync {
            // A previous process may have died with writes only in the page cache; make what
            // we are about to verify and build on durable first.
            file.sync_data().map_err(Error::io("syncing at open"))?;
        }
        let mapping = file.map().map_err(Error::io("mapping the file"))?;
        metas.sort_by_key(|(m, _, _)| std::cmp::Reverse(m.txn));
        let mut chosen = None;
        for (meta, inline, slot) in metas {
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
                    chosen = Some((candidate, written_chain, slot));
                    break;
                }
                Err(e) => first_error = first_error.or(Some(e)),
            }
        }
        let Some((snapshot, written_chain, durable_slot)) = chosen else {
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
                unsynced: BTreeMap::new(),
                pending_meta: None,
                durable_txn: meta.txn,
                durable_slot,
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
            let mut oldest = oldest_reader.unwrap_or(base.meta.txn).min(base.meta.txn);
            if self.options.durability == Durability::Checkpointed {
                // The last checkpoint is what the file opens at: its pages stay as they are.
                oldest = oldest.min(writer.durable_txn);
            }
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
        let checkpointed = self.options.durability == Durability::Checkpointed;
        // Pages earlier unsynced commits wrote that this one still reaches: the written list
        // (what recovery checks) must cover them until a checkpoint makes them durable.
        let carried: Vec<PageId> = if checkpointed {
            writer
                .unsynced
                .keys()
                .filter(|id| !pages.freed.contains(id))
                .copied()
                .collect()
        } else {
            Vec::new()
        };
        let own_pages = |pages: &DirtyPages, free_chain: &[PageId]| -> Vec<PageId> {
            let mut own: Vec<PageId> = pages
                .nodes
                .keys()
                .chain(pages.raw.keys())
                .chain(free_chain)
                .copied()
                .collect();
            own.sort_unstable();
            own
        };
        let with_carried = |own: &[PageId]| -> Vec<PageId> {
            let mut listed: Vec<PageId> = own.iter().chain(&carried).copied().collect();
            listed.sort_unstable();
            debug_assert!(
                listed.windows(2).all(|w| w[0] < w[1]),
                "a carried page is never rewritten (it would have been freed and copied)"
            );
            listed
        };
        // Size both lists; allocating a page only shrinks the free list (never lengthening its
        // encoding) and grows the written list, so this settles.
        let (mut free_chain, mut written_chain) = (Vec::new(), Vec::new());
        let mut inline = InlineLists::default();
        let (free_ids, own, listed) = loop {
            let free_ids = pages.freelist.all_ids()?;
            if free_chain.is_empty() && written_chain.is_empty() {
                let own = own_pages(pages, &[]);
                let listed = with_carried(&own);
                // Small lists ride in the meta page: fewer pages for the commit's one sync.
                if encoded_len(&free_ids) + encoded_len(&listed) <= META_INLINE_BYTES {
                    inline = InlineLists {
                        free: free_ids.clone(),
                        written: listed.clone(),
                    };
                    break (free_ids, own, listed);
                }
            }
            if free_chain.len() < split_into_pages(&free_ids).len() {
                free_chain.push(pages.alloc());
                continue;
            }
            let own = own_pages(pages, &free_chain);
            let listed = with_carried(&own);
            if written_chain.len() < split_into_pages(&listed).len() {
                written_chain.push(pages.alloc());
                continue;
            }
            break (free_ids, own, listed);
        };
        let txn = pages.txn;
        let mut ids = own.clone();
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
            }
        }
        // The checksum of every listed page, from this commit's buffer or, for a carried
        // page, as recorded when its commit wrote it.
        let checksum_of = |id: PageId| -> Result<[u8; 4]> {
            match ids.binary_search(&id) {
                Ok(at) => {
                    let mut sum = [0u8; 4];
                    sum.copy_from_slice(&buf[at * PAGE_SIZE..at * PAGE_SIZE + 4]);
                    Ok(sum)
                }
                Err(_) => writer
                    .unsynced
                    .get(&id)
                    .copied()
                    .ok_or_else(|| Error::corrupt(id, "carried page without a checksum")),
            }
        };
        let mut written_crc = crc32fast::Hasher::new();
        let mut own_sums = Vec::with_capacity(if checkpointed { own.len() } else { 0 });
        for &id in &listed {
            let sum = checksum_of(id)?;
            written_crc.update(&id.to_le_bytes());
            written_crc.update(&sum);
            if checkpointed && own.binary_search(&id).is_ok() {
                own_sums.push((id, sum));
            }
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
        let pending_meta = checkpointed.then(|| (meta, inline.clone()));
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
                if checkpointed {
                    for id in &pages.freed {
                        writer.unsynced.remove(id);
                    }
                    writer.unsynced.extend(own_sums);
                    writer.pending_meta = pending_meta;
                }
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
        // A checkpointed commit leaves the meta pages alone: they name the last checkpoint.
        if self.options.durability != Durability::Checkpointed {
            self.file
                .write_all_at(&meta.encode(slot, &inline), slot * PAGE_SIZE as u64)
                .map_err(Error::io("writing the meta page"))?;
        }
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

    /// Makes every commit so far durable ([`Durability::Checkpointed`]; a no-op in the other
    /// modes): writes the last commit's meta page into the slot the previous checkpoint does
    /// not hold, then one `fdatasync` covers it and every page of the commits before it.
    /// Waits for an open write transaction to finish. Poisons the database on an I/O error.
    pub fn checkpoint(&self) -> Result<()> {
        let mut writer = self.writer.lock();
        if let Some(reason) = self.poisoned.lock().clone() {
            return Err(Error::Poisoned(reason));
        }
        let Some((meta, inline)) = writer.pending_meta.take() else {
            return Ok(());
        };
        let slot = 1 - writer.durable_slot;
        let written = self
            .file
            .write_all_at(&meta.encode(slot, &inline), slot * PAGE_SIZE as u64)
            .map_err(Error::io("writing the meta page"))
            .and_then(|()| {
                self.file
                    .sync_data()
                    .map_err(Error::io("syncing the checkpoint"))
            });
        match written {
            Ok(()) => {
                writer.durable_txn = meta.txn;
                writer.durable_slot = slot;
                writer.unsynced.clear();
                Ok(())
            }
            Err(e) => {
                *self.poisoned.lock() = Some(e.to_string());
                Err(e)
            }
        }
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
