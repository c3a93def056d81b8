//! # cairn-wal
//!
//! The durable log under Cairn's Raft: a directory of fixed-size, preallocated segment files
//! holding typed records (entries with index and term, hard state, snapshot markers, metadata),
//! each framed with its length, type and a CRC that chains across records, so that a torn tail
//! is recognised and cut off while corruption before the tail refuses to open with an error
//! naming the file and offset. Concurrent appenders share fsyncs (group commit): an append
//! returns only once its records are durable.
//!
//! The log stores opaque records: it knows nothing of Raft's rules, of etcd, or of the storage
//! engine.
//!
//! # Using the log
//!
//! [`Wal::open`] recovers the directory and reports hard state, snapshot marker, metadata, the
//! live entry range and any torn tail it cut ([`Recovered`]). [`Wal::append`] queues records and
//! returns an [`AppendFuture`] (await it, or `wait()` outside a runtime) that resolves once they
//! are durable; the order of `append` calls is the order on disk. [`Wal::truncate_from`] and
//! [`Wal::release_before`] go through the same queue. [`Wal::read_entries`] reads durable
//! entries back from disk via the in-memory index, checking their CRC again.
//!
//! One writer thread serves the queue: it takes everything queued (up to
//! [`WalConfig::max_batch_bytes`]), writes it with one `write` and one `fdatasync`, publishes it
//! to readers and acknowledges every append in the batch. Appends arriving during that fsync
//! form the next batch; an idle writer wakes on the first append immediately (no timer).
//! [`Wal::metrics`] counts fsyncs, records and bytes synced and fsync latency.
//!
//! All file access goes through [`WalDir`]/[`WalFile`]; [`sim_disk::SimDisk`] implements them in
//! memory with power-loss simulation for tests.
//!
//! # On-disk format (version 1)
//!
//! All integers are little-endian. CRCs are CRC-32 (IEEE, as computed by `crc32fast`).
//!
//! ## Directory
//!
//! The log is one directory of segment files named `{seq:016x}-{first_index:016x}.wal`: `seq`
//! numbers segments 1, 2, 3, … with no gaps, and `first_index` is the Raft index the first entry
//! written into that segment was to have, so `ls` shows both the order and where each segment
//! starts. A segment is born as a file of `segment_bytes` (64 MiB by default) written full of
//! zeros and fdatasync'ed, so that appends overwrite data blocks and their fdatasync commits no
//! block allocation; on a real disk a helper thread prepares it ahead of need as
//! `next-segment.tmp` while the active segment fills up. At rotation its header and preamble
//! are written and fdatasync'ed, then it is renamed to its final name and the directory is
//! fsync'ed, before any record in it is acknowledged. Leftover `*.tmp` files (the spare, or an
//! incomplete rotation: nothing in them was acknowledged) are deleted on open. Other file names
//! are ignored.
//!
//! ## Segment header (64 bytes, at offset 0)
//!
//! | offset | size | field |
//! |-------:|-----:|-------|
//! | 0  | 8  | magic `CAIRNWAL` |
//! | 8  | 4  | format version (1) |
//! | 12 | 4  | reserved, zero |
//! | 16 | 8  | segment sequence number (matches the file name) |
//! | 24 | 8  | first index: the index the next entry appended in this segment gets |
//! | 32 | 4  | running CRC: chain value of the last record of the previous segment (0 in the first segment of a new log) |
//! | 36 | 24 | reserved, zero |
//! | 60 | 4  | CRC of bytes 0..60 |
//!
//! ## Record frame (at 8-byte aligned offsets from 64 on)
//!
//! | offset | size | field |
//! |-------:|-----:|-------|
//! | 0  | 4 | body length in bytes (≥ 8) |
//! | 4  | 1 | kind (below) |
//! | 5  | 3 | reserved, zero |
//! | 8  | 4 | write offset: segment offset at which the `write` that carried this record began |
//! | 12 | 4 | chain CRC: CRC of (previous chain CRC as 4 bytes ‖ bytes 0..12 of this frame ‖ body) |
//! | 16 | n | body |
//! | 16+n | 0..7 | zero padding to the next multiple of 8 |
//!
//! The "previous chain CRC" of the first record in a segment is the header's running CRC, so the
//! chain runs unbroken from the first record ever written to the last: a record moved, dropped,
//! duplicated or spliced in from another log fails its CRC. The write offset lets recovery tell a
//! torn final write from damage to data that an earlier fsync had made durable (see below).
//!
//! Record kinds and bodies:
//!
//! | kind | name | body |
//! |-----:|------|------|
//! | 1 | entry | index u64, term u64, payload (the rest) |
//! | 2 | hard state | term u64, vote u64, commit u64 |
//! | 3 | snapshot marker | index u64, term u64 |
//! | 4 | metadata | cluster id u64, member id u64 |
//! | 5 | truncation | from index u64: entries with index ≥ this are discarded |
//!
//! Every segment starts with a *preamble* right after the header: the current metadata, hard
//! state and snapshot marker records (those that exist), all with write offset 64. Releasing old
//! segments therefore never loses the latest state.
//!
//! ## Meaning of the record stream
//!
//! Replaying segments in order keeps `next_index` (the index the next entry must have; starts as
//! the first segment's `first_index`) and the live entries `[first_index, next_index)`:
//! - entry: its index must equal `next_index` (else: index gap, refuse to open); it becomes live;
//! - truncation(i): requires `i < next_index`; live entries ≥ i are discarded and `next_index = i`;
//! - snapshot marker(s): if `s.index ≥ next_index`, the snapshot covers the whole log: all live
//!   entries are discarded and `next_index = s.index + 1`; in any case it becomes the last
//!   snapshot marker;
//! - hard state, metadata: the last one wins.
//!
//! The writer keeps `snapshot.index < next_index` at all times (a truncation at or below the
//! last snapshot marker is rejected: those entries are committed), so replaying a preamble's
//! snapshot marker never discards entries.
//!
//! Each segment header's `first_index` must equal `next_index` at the point where the previous
//! segment ends, and its running CRC the previous segment's last chain CRC.
//!
//! ## Write discipline (what recovery relies on)
//!
//! - Bytes are only ever written past the end of valid data (never over data once written),
//!   into space that is zero because it was written with zeros before the segment was named.
//! - One `write` at a time: the next write to a segment starts only after the previous one was
//!   fdatasync'ed; a write never spans two segments. Before a new segment is named (renamed
//!   from its temporary name), the old one is fdatasync'ed.
//! - An append is acknowledged only after the fdatasync covering all of its records (and, for a
//!   new segment, the directory fsync) returned success. A failed write or fsync makes the log
//!   *fatal*: that append and every later one fails; nothing is retried.
//! - `release_before` deletes whole segments, oldest first, fsyncing the directory after each,
//!   and never the last one. Nothing is ever rewritten in place.
//!
//! ## Recovery on open
//!
//! Segments are checked in order: consecutive sequence numbers (else: missing segment, refuse),
//! valid header, first index and running CRC continuing the previous segment (else refuse). In
//! each segment, records are read until the first position `f` that is not a valid record. Then:
//! - in a segment other than the last: `f` must be a zero frame header followed only by zero
//!   bytes (the unused preallocated remainder); anything else refuses to open;
//! - in the last segment:
//!   - only zero bytes from `f` on: clean end;
//!   - a frame with an impossible length, unknown kind or non-zero reserved bytes: refuse;
//!   - otherwise the damage must look like a torn last write: the failed frame runs past the
//!     end of the file, or some 512-byte sector piece of it, from the frame (or sector) start to
//!     the end of the sector, is entirely zero; and nothing after `f` proves a later write (which
//!     would mean the write covering `f` had been fsync'ed): neither a frame header whose write
//!     offset is its own offset (> `f`), nor a pair of chained records whose second one verifies
//!     and has a write offset greater than `f`. If so the
//!     tail from `f` on is cut off: zeroed, fdatasync'ed and reported in
//!     [`Recovered::torn_tail`]; if not, refuse to open ("bad CRC followed by valid data").
//!
//! Refusals are [`WalError`]s naming the file and offset; a record whose append returned is never
//! silently dropped. A bit flip inside the very last write cannot be told apart from a torn write
//! and is cut like one.

mod error;
mod format;
mod index;
mod io;
mod metrics;
mod record;
mod recovery;
mod segment_scan;
pub mod sim_disk;
mod spare;
mod wal;
mod writer;

pub use error::WalError;
pub use io::{OsDir, WalDir, WalFile};
pub use metrics::{WalMetrics, FSYNC_DURATION_BUCKETS_US};
pub use record::{Entry, HardState, Metadata, Record, SnapshotMarker};
pub use wal::{AppendFuture, Recovered, TornTail, Wal, WalConfig};
