//! # cairn-btree
//!
//! The page store under Cairn's MVCC key space: one memory-mapped file of copy-on-write B+tree
//! pages holding any number of named trees ("buckets") of opaque byte keys and values. One write
//! transaction at a time; any number of read transactions, each a consistent snapshot that the
//! writer never disturbs. Two checksummed meta pages make every commit atomic, freed pages are
//! reused only once no reader can see them, and [`Database::compact_to`] writes a defragmented
//! copy. The engine knows nothing of etcd, MVCC or Raft: it stores bytes.
//!
//! ```no_run
//! use cairn_btree::{Database, Options};
//! let db = Database::open("data.btree", Options::default())?;
//! let mut w = db.begin_write()?;
//! w.create_bucket(b"key")?;
//! w.put(b"key", b"k1", b"v1")?;
//! w.commit()?;
//! let r = db.begin_read()?;
//! assert_eq!(r.get(b"key", b"k1")?.as_deref(), Some(&b"v1"[..]));
//! # Ok::<(), cairn_btree::Error>(())
//! ```
//!
//! # On-disk format (version 1)
//!
//! All integers are little-endian. The file is an array of pages of [`PAGE_SIZE`] = 4096 bytes;
//! page `n` starts at byte `n * 4096`. Pages 0 and 1 are the two meta pages; every other page is a
//! leaf, branch, overflow, free-list or written-list page, or free. The file may be longer than
//! the pages in use (it grows in chunks); bytes past `page_count * 4096` mean nothing.
//!
//! ## Page header (32 bytes, every page)
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | CRC-32 (crc32fast, IEEE) of bytes 4..4096 of the page |
//! | 4 | 8 | page id: the page's own number (catches misdirected writes and stale reads) |
//! | 12 | 8 | id of the transaction that wrote the page |
//! | 20 | 1 | page type: 1 meta, 2 leaf, 3 branch, 4 overflow, 5 free list, 6 written list |
//! | 21 | 1 | reserved, 0 |
//! | 22 | 2 | entry count (leaf entries, branch keys, free-list ids; 0 otherwise) |
//! | 24 | 8 | next page id of an overflow, free-list or written-list chain (0 = end), else 0 |
//!
//! A page is only trusted after its checksum, its page id and its type all match what the
//! reference to it expected, and every offset inside it has been bounds-checked. The process
//! remembers (one bit per page) which tree pages' checksums held since they were last written and
//! skips recomputing those; the writer clears a page's bit before it reuses the page, and
//! [`ReadTxn::check`] recomputes every checksum regardless.
//!
//! ## Meta pages (pages 0 and 1)
//!
//! | offset | size | field |
//! |---|---|---|
//! | 32 | 8 | magic `b"CAIRNBT\0"` |
//! | 40 | 4 | format version (1) |
//! | 44 | 4 | page size (4096) |
//! | 48 | 8 | transaction id of this commit |
//! | 56 | 8 | root page of the bucket catalog tree (0 = no buckets) |
//! | 64 | 8 | first page of the free-list chain (0 = empty) |
//! | 72 | 8 | page count: pages `0..page_count` are either reachable or free |
//! | 80 | 8 | first page of this commit's written list (0 = the list is inline, below) |
//! | 88 | 8 | number of page ids on the written list |
//! | 96 | 4 | CRC-32 over, for each listed page in list order, its id (`u64`) and its stored checksum |
//! | 100 | 4 | ids in the inline free list (used when the free-list head is 0) |
//! | 104 | 4 | ids in the inline written list (used when the written-list head is 0) |
//! | 108 | 4 | byte offset of the inline written list from byte 112 |
//! | 112 | .. | the inline free list, then the inline written list, encoded as id-list bodies |
//!
//! Commit `t` writes meta slot `t % 2`. On open both slots are read; a slot counts only if its
//! checksum, magic, version, page size and page id are right, its page count is at least 2, the
//! file holds `page_count` pages, and its commit is *complete*: every page on its written list
//! (below) has a valid checksum, carries the commit's transaction id in its header, and the list's
//! CRC matches the meta page. The valid, complete slot with the higher transaction id wins. If
//! neither qualifies, open fails with [`Error::Corrupt`] naming page 0.
//!
//! ## Leaf and branch pages
//!
//! After the header, a leaf holds `count` slots (`u16` offsets into the page, in key order), and
//! each slot points at an entry: `flags: u8` (bit 0 = key in overflow, bit 1 = value in
//! overflow), then the key, then the value. An inline key or value is `len: u16` + bytes; an
//! overflow one is `len: u32` + `first_page: u64` of an overflow chain. A branch holds at offset
//! 32 its leftmost child `u64`, then `count` slots pointing at entries `flags: u8`, key, `child:
//! u64`. Child `i` of a branch holds keys `k` with `key[i-1] <= k < key[i]`. Keys longer than
//! [`MAX_INLINE_KEY_BYTES`] and values longer than [`MAX_INLINE_VALUE_BYTES`] go to overflow
//! chains, so that any two entries fit in one page and a split always succeeds. Every overflow
//! chain is owned by exactly one entry (a branch separator owns a copy of its key).
//!
//! The bucket catalog is a tree of the same format whose keys are bucket names and whose values
//! are 16 bytes: the bucket tree's root page (`u64`, 0 = empty) and its entry count (`u64`).
//!
//! ## Overflow pages
//!
//! Header `next` = the next page of the chain (0 = last). Body: `len: u32` of data in this page,
//! then the data (at most 4060 bytes a page). The chain's total length must equal the length in
//! the entry that points at it.
//!
//! ## Free list and written list
//!
//! A chain of free-list pages lists every page in `2..page_count` that no tree reaches, sorted.
//! Each page of an id list holds `count` ids (header), its `next` page (header), and in its body
//! the first id as a `u64` followed by each further id as the LEB128 varint of its difference
//! from the previous one (at least 1).
//!
//! A commit whose two lists together encode into the 3,984 bytes after byte 112 of the meta page
//! keeps them there (chain heads 0), so a small commit writes no list pages at all.
//!
//! In memory the writer keeps two sets: pages free now, and *pending* pages tagged with the id of
//! the transaction that freed them.
//! Pages freed by transaction `x` are still visible to snapshots older than `x`, so they are reused
//! only once every live reader's snapshot id is `>= x`. The free list on disk stores both sets
//! merged: after a reopen no reader exists, and a commit's pages are durable before the next
//! commit may overwrite pages that only older commits reach (see the commit protocol).
//!
//! The written list is an id list of page type 6: the ids of every leaf, branch, overflow
//! and free-list page the commit wrote, sorted. Its own pages are not on it (their checksums and
//! transaction ids vouch for them). Each commit frees the previous commit's free list and written
//! list and writes new ones.
//!
//! ## Commit protocol
//!
//! 1. Every page changed by transaction `t` is written to a page that no snapshot can see (a free
//!    page or one past the old end), never over a page some snapshot reaches (copy-on-write).
//!    The old pages go to the pending list tagged `t`; new free and written lists are built.
//! 2. The file is grown first if needed (`fallocate`, else `set_len`), then the pages are written
//!    with `pwrite`, then the meta page for `t` is written to slot `t % 2`.
//! 3. One `fdatasync`. Only now does commit return, and only now do new readers see `t`.
//!
//! Any subset of the writes of step 2 may reach the disk before a power loss (in any order, torn
//! at sector boundaries). Recovery copes with each case: if the meta page for `t` is torn or old,
//! its checksum or transaction id makes it lose to slot `(t-1) % 2`; if it is whole but any page of
//! `t` is missing or torn, the written-list check fails and commit `t - 1` is chosen. Commit
//! `t - 1` is intact in both cases: `t` wrote only pages `t - 1` does not reach, and the slot of
//! `t - 1` is overwritten only by `t + 1`, which starts after `t`'s sync made `t` durable. Pages
//! freed by `t` (reachable only from `t - 1`) are reused from `t + 1` on for the same reason. A
//! page of `t` damaged later (bit rot) also makes open fall back to `t - 1`; damage anywhere else
//! is reported as [`Error::Corrupt`] by the read or by [`ReadTxn::check`].
//!
//! Any I/O error during a commit poisons the [`Database`]: no later write transaction starts,
//! because the state of the file is unknown until it is reopened. Open syncs the file once before
//! trusting it, so writes a killed process left in the page cache are durable before new commits
//! build on them.
//!
//! With [`Durability::NoSync`] step 3 is skipped. A process crash loses nothing (the kernel still
//! holds the writes), but after a power loss or kernel crash the file may open at an older commit
//! or be reported corrupt. It is for scratch files.
//!
//! With [`Durability::Checkpointed`] a commit does steps 1 and 2 without the meta page and
//! without step 3: it is visible to new readers at once, durable only at the next
//! [`Database::checkpoint`], which writes the last commit's meta page into the slot the previous
//! checkpoint `c` does not hold and syncs once. Two rules keep `c` intact until then, so the file
//! always opens at a checkpoint after any crash: the writer treats `c` as a live reader (pages
//! `c` reaches are not reused), and each commit's written list also names every page the
//! unsynced commits since `c` wrote that it still reaches (the list recovery checks then covers
//! every page the next checkpoint depends on; such a page may carry an older transaction id, and
//! the list's CRC tells it from a stale one). Cairn's apply loop uses this mode: its WAL makes
//! each applied entry durable first, and replays what came after the last checkpoint.
//!
//! ## What a reader may assume (mmap soundness)
//!
//! Readers see the file through a read-only shared `mmap`. Rust requires that the bytes behind a
//! live `&[u8]` never change. That holds because of these invariants, which every `unsafe` block
//! refers to as **the mmap invariant**:
//!
//! * (I1) A page reachable from a committed meta `m` is never written while a reader of `m` or of
//!   any older snapshot lives: writes go only to free pages, and a page freed by transaction `x`
//!   becomes free only when every live reader's snapshot id is `>= x`.
//! * (I2) A reader touches only pages reachable from its own meta (every page id is checked
//!   against its snapshot's page count before its bytes are touched, and free pages are never
//!   read: `snapshot_to` writes zeros for them). Meta pages, which every other commit rewrites,
//!   are never read through the mapping: open reads them with `pread` and keeps them in memory.
//! * (I3) The file never shrinks while open, so no mapped byte ever disappears (which would be a
//!   `SIGBUS`); the length is checked before mapping, and growth maps a new, longer region while
//!   old mappings stay alive, reference-counted (`Arc`), until their last reader ends.
//! * (I4) No other process writes the file: `open` takes an exclusive `flock`; a foreign writer
//!   that ignores it is outside what this crate can defend against.
//!
//! ## Limits
//!
//! Keys up to [`MAX_KEY_BYTES`], values up to [`MAX_VALUE_BYTES`]; tree depth is bounded by
//! [`MAX_TREE_DEPTH`] (a deeper or cyclic tree is reported as corrupt, never followed forever).
//!
mod check;
mod copy;
mod cursor;
mod db;
mod dirty;
mod error;
mod freelist;
mod idlist;
pub mod io;
mod meta;
mod node;
mod overflow;
mod page;
mod source;
mod tree;
mod txn;

pub use check::{BucketStats, Stats};
pub use cursor::Range;
pub use db::{Database, Durability, Options};
pub use error::{Error, Result};
pub use txn::{ReadTxn, WriteTxn};

/// Size of every page, in bytes.
pub const PAGE_SIZE: usize = 4096;
/// Format version written in the meta pages; bumped whenever the layout above changes.
pub const FORMAT_VERSION: u32 = 2;
/// The oldest format version this build opens. Version 2 lets a commit's written list name
/// pages of earlier unsynced commits ([`Durability::Checkpointed`]); a version-1 file is read
/// the same way and rewritten as version 2 by its next commit.
pub const OLDEST_READABLE_FORMAT_VERSION: u32 = 1;
/// Longest key stored inside a leaf or branch page; longer keys go to an overflow chain.
pub const MAX_INLINE_KEY_BYTES: usize = 1024;
/// Longest value stored inside a leaf page; longer values go to an overflow chain.
pub const MAX_INLINE_VALUE_BYTES: usize = 1000;
/// Longest key accepted.
pub const MAX_KEY_BYTES: usize = 1 << 20;
/// Longest value accepted.
pub const MAX_VALUE_BYTES: usize = 64 << 20;
/// Deepest tree followed; with at least two entries a node, 2^32 entries need 32 levels.
pub const MAX_TREE_DEPTH: usize = 32;

/// Number of a page in the file.
pub type PageId = u64;
/// Id of a committed transaction; a durable commit `t` writes meta slot `t % 2`, a checkpoint
/// the slot its predecessor does not hold.
pub type TxnId = u64;
