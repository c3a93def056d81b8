//! The public handle: open (recover), append, truncate, release, read.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll};
use std::thread::JoinHandle;

use tokio::sync::oneshot;

use crate::error::WalError;
use crate::format::{
    frame_len, FrameHeader, FRAME_HEADER_BYTES, SECTOR_BYTES, SEGMENT_HEADER_BYTES,
};
use crate::index::EntryIndex;
use crate::index::EntryLoc;
use crate::io::{OsDir, WalDir};
use crate::metrics::{MetricsCells, WalMetrics};
use crate::record::{Entry, HardState, LogRecord, Metadata, Record, SnapshotMarker};
pub use crate::recovery::TornTail;
use crate::recovery::{recover, LogState};
use crate::writer::{
    max_body_bytes, Op, Queue, Shared, View, Writer, WriterLimits, PREAMBLE_MAX_BYTES,
};

/// Tunables of a log.
#[derive(Debug, Clone)]
pub struct WalConfig {
    /// Size of every segment file, preallocated (64 MiB by default). Tests use small ones.
    pub segment_bytes: u64,
    /// Upper bound on the frame bytes one group commit takes from the queue (at least one
    /// append is always taken, however large).
    pub max_batch_bytes: usize,
}

impl Default for WalConfig {
    fn default() -> Self {
        WalConfig {
            segment_bytes: 64 << 20,
            max_batch_bytes: 8 << 20,
        }
    }
}

/// Smallest segment accepted: room for the header, a preamble and some records.
const MIN_SEGMENT_BYTES: u64 = 4096;

impl WalConfig {
    fn validate(&self) -> Result<(), WalError> {
        if self.segment_bytes < MIN_SEGMENT_BYTES || self.segment_bytes > u64::from(u32::MAX) {
            return Err(WalError::InvalidConfig(format!(
                "segment_bytes {} must be within {MIN_SEGMENT_BYTES}..=2^32-1",
                self.segment_bytes
            )));
        }
        if self.segment_bytes % SECTOR_BYTES != 0 {
            return Err(WalError::InvalidConfig(format!(
                "segment_bytes {} must be a multiple of {SECTOR_BYTES}",
                self.segment_bytes
            )));
        }
        if self.max_batch_bytes == 0 {
            return Err(WalError::InvalidConfig(
                "max_batch_bytes must be positive".into(),
            ));
        }
        Ok(())
    }
}

/// What recovery found when the log was opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovered {
    pub hard_state: Option<HardState>,
    /// The last snapshot marker; entries after it are `snapshot.index + 1 .. next_index`.
    pub snapshot: Option<SnapshotMarker>,
    pub metadata: Option<Metadata>,
    /// First entry still in the log (equals `next_index` when it holds none).
    pub first_index: u64,
    /// The index the next entry must have.
    pub next_index: u64,
    /// A torn final write that was cut off (the caller should log it).
    pub torn_tail: Option<TornTail>,
}

/// A durable log shared by any number of appenders and readers (clones share it).
#[derive(Clone)]
pub struct Wal {
    inner: Arc<WalInner>,
}

struct WalInner {
    shared: Arc<Shared>,
    /// The writer state, held by the writer thread while it writes a batch and by an inline
    /// append ([`Wal::append_inline`]) while it writes its own.
    state: Arc<Mutex<Writer>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    segment_bytes: u64,
}

impl Drop for WalInner {
    fn drop(&mut self) {
        self.shared.lock_queue().shutdown = true;
        self.shared.queue_cv.notify_all();
        let handle = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(h) = handle {
            // A panicked writer has already failed its waiters (see the writer's panic guard).
            let _ = h.join();
        }
    }
}

/// Resolves when an append (or truncation, or release) is durable, or failed.
///
/// The operation was queued when the call that returned this future was made, so the order of
/// calls is the order on disk, whether or not the future is ever polled.
pub struct AppendFuture {
    state: AppendState,
}

enum AppendState {
    Ready(Option<WalError>),
    Waiting(oneshot::Receiver<Result<(), WalError>>),
}

impl Future for AppendFuture {
    type Output = Result<(), WalError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.state {
            AppendState::Ready(err) => Poll::Ready(match err.take() {
                Some(e) => Err(e),
                None => Ok(()),
            }),
            AppendState::Waiting(rx) => match Pin::new(rx).poll(cx) {
                Poll::Ready(Ok(result)) => Poll::Ready(result),
                Poll::Ready(Err(_)) => Poll::Ready(Err(WalError::Closed)),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl AppendFuture {
    /// Blocks the thread until the outcome is known. Not for use inside an async runtime
    /// (await the future there).
    pub fn wait(self) -> Result<(), WalError> {
        match self.state {
            AppendState::Ready(None) => Ok(()),
            AppendState::Ready(Some(e)) => Err(e),
            AppendState::Waiting(rx) => rx.blocking_recv().unwrap_or(Err(WalError::Closed)),
        }
    }
}

impl Wal {
    /// Opens (creating if needed) the log in directory `path`, recovering what is there.
    pub fn open(path: &Path, config: WalConfig) -> Result<(Wal, Recovered), WalError> {
        let dir = OsDir::open(path).map_err(|e| WalError::io(path.display().to_string(), e))?;
        Wal::open_dir(Arc::new(dir), config)
    }

    /// Opens the log through any I/O layer (the simulated disk in tests).
    pub fn open_dir(dir: Arc<dyn WalDir>, config: WalConfig) -> Result<(Wal, Recovered), WalError> {
        config.validate()?;
        let recovered = recover(&*dir, config.segment_bytes)?;
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            queue_cv: Condvar::new(),
            enqueued_ops: AtomicU64::new(0),
            view: Mutex::new(View {
                index: EntryIndex::new(1),
                segments: Default::default(),
                segment_names: Default::default(),
                state: LogState::default(),
            }),
            metrics: MetricsCells::default(),
        });
        let limits = WriterLimits {
            segment_bytes: config.segment_bytes,
            max_batch_bytes: config.max_batch_bytes,
        };
        let (writer, torn_tail) = match recovered {
            None => (Writer::create(shared.clone(), dir.clone(), limits)?, None),
            Some(log) => {
                {
                    let mut view = shared.lock_view();
                    view.index = log.index.clone();
                    view.state = log.state.clone();
                    for s in &log.segments {
                        view.segments.insert(s.seq, s.file.clone());
                        view.segment_names.insert(s.seq, dir.describe(&s.name));
                    }
                }
                let torn_tail = log.torn_tail.clone();
                (
                    Writer::resume(shared.clone(), dir.clone(), limits, log),
                    torn_tail,
                )
            }
        };
        let report = {
            let view = shared.lock_view();
            Recovered {
                hard_state: view.state.hard_state,
                snapshot: view.state.snapshot,
                metadata: view.state.metadata,
                first_index: view.index.first_index(),
                next_index: view.index.next_index(),
                torn_tail,
            }
        };
        let state = Arc::new(Mutex::new(writer));
        let handle = {
            let (state, shared) = (state.clone(), shared.clone());
            let max_batch_bytes = limits.max_batch_bytes;
            std::thread::Builder::new()
                .name("cairn-wal-writer".into())
                .spawn(move || Writer::run(state, shared, max_batch_bytes))
                .map_err(|e| WalError::io("writer thread", e))?
        };
        let wal = Wal {
            inner: Arc::new(WalInner {
                shared,
                state,
                writer: Mutex::new(Some(handle)),
                segment_bytes: config.segment_bytes,
            }),
        };
        Ok((wal, report))
    }

    fn enqueue(&self, make: impl FnOnce(crate::writer::Reply) -> Op) -> AppendFuture {
        let (tx, rx) = oneshot::channel();
        let mut q = self.inner.shared.lock_queue();
        if let Some(f) = &q.fatal {
            return AppendFuture {
                state: AppendState::Ready(Some(f.to_error())),
            };
        }
        if q.shutdown {
            return AppendFuture {
                state: AppendState::Ready(Some(WalError::Closed)),
            };
        }
        q.ops.push_back(make(tx));
        self.inner
            .shared
            .enqueued_ops
            .fetch_add(1, Ordering::Release);
        // A busy writer finds the op when it next takes the queue; only a parked one needs the
        // (system-call) wake-up.
        let wake = q.writer_parked;
        drop(q);
        if wake {
            self.inner.shared.queue_cv.notify_one();
        }
        AppendFuture {
            state: AppendState::Waiting(rx),
        }
    }

    fn append_log_records(&self, records: Vec<LogRecord>) -> AppendFuture {
        let frame_bytes = records.iter().map(|r| frame_len(r.body_len())).sum();
        self.enqueue(|done| Op::Append {
            records,
            frame_bytes,
            done,
        })
    }

    /// Appends records; the future resolves once all of them are durable. Entries must
    /// continue the log (`index == next_index`); an invalid record rejects the whole call.
    pub fn append(&self, records: Vec<Record>) -> AppendFuture {
        self.append_log_records(records.into_iter().map(LogRecord::from).collect())
    }

    /// [`Wal::append`], written on the calling thread when the log is idle (nothing queued,
    /// no batch being written): the returned future is then already resolved, and the
    /// caller was spared two thread hand-offs. Otherwise the records are queued as by
    /// `append`. Blocks for a write and an fdatasync: not for use inside an async runtime.
    pub fn append_inline(&self, records: Vec<Record>) -> AppendFuture {
        let records: Vec<LogRecord> = records.into_iter().map(LogRecord::from).collect();
        let frame_bytes = records.iter().map(|r| frame_len(r.body_len())).sum();
        match Writer::append_inline(&self.inner.state, &self.inner.shared, records, frame_bytes) {
            Ok(outcome) => AppendFuture {
                state: AppendState::Ready(outcome.err()),
            },
            Err(records) => self.enqueue(|done| Op::Append {
                records,
                frame_bytes,
                done,
            }),
        }
    }

    /// Durably discards entries with index ≥ `index` (no-op past the end).
    pub fn truncate_from(&self, index: u64) -> AppendFuture {
        self.append_log_records(vec![LogRecord::Truncate { from_index: index }])
    }

    /// Deletes whole segments holding only entries below `index` (a snapshot covers them).
    /// The segment being written is never deleted, so some older entries may stay.
    pub fn release_before(&self, index: u64) -> AppendFuture {
        self.enqueue(|done| Op::Release {
            before_index: index,
            done,
        })
    }

    /// The first entry in the log (equals `next_index` when it holds none).
    pub fn first_index(&self) -> u64 {
        self.inner.shared.lock_view().index.first_index()
    }

    /// The index the next appended entry must have.
    pub fn next_index(&self) -> u64 {
        self.inner.shared.lock_view().index.next_index()
    }

    pub fn hard_state(&self) -> Option<HardState> {
        self.inner.shared.lock_view().state.hard_state
    }

    pub fn snapshot(&self) -> Option<SnapshotMarker> {
        self.inner.shared.lock_view().state.snapshot
    }

    pub fn metadata(&self) -> Option<Metadata> {
        self.inner.shared.lock_view().state.metadata
    }

    /// Largest payload one entry can carry with this configuration.
    pub fn max_payload_bytes(&self) -> u64 {
        max_body_bytes(self.inner.segment_bytes) - crate::record::ENTRY_PREFIX_BYTES as u64
    }

    pub fn metrics(&self) -> WalMetrics {
        self.inner.shared.metrics.snapshot()
    }

    /// Reads the durable entries `lo..hi` from disk, verifying each record's CRC again.
    pub fn read_entries(&self, lo: u64, hi: u64) -> Result<Vec<Entry>, WalError> {
        self.read_entries_limited(lo, hi, u64::MAX)
    }

    /// Like [`Wal::read_entries`], but stops before the payloads would exceed `max_bytes`
    /// (always returning at least the first entry), as Raft's replication wants.
    pub fn read_entries_limited(
        &self,
        lo: u64,
        hi: u64,
        max_bytes: u64,
    ) -> Result<Vec<Entry>, WalError> {
        if hi <= lo {
            return Ok(Vec::new());
        }
        let (locs, files, names) = {
            let view = self.inner.shared.lock_view();
            let first = view.index.first_index();
            let next = view.index.next_index();
            if lo < first {
                return Err(WalError::Compacted {
                    index: lo,
                    first_index: first,
                });
            }
            if hi > next {
                return Err(WalError::Unavailable {
                    index: hi - 1,
                    next_index: next,
                });
            }
            let mut locs = Vec::new();
            let mut bytes = 0u64;
            for i in lo..hi {
                // Every index in [first, next) is live by the index's invariant.
                let Some(loc) = view.index.get(i) else {
                    return Err(WalError::Unavailable {
                        index: i,
                        next_index: next,
                    });
                };
                bytes += u64::from(loc.body_len);
                if !locs.is_empty() && bytes > max_bytes {
                    break;
                }
                locs.push(loc);
            }
            let seqs: std::collections::BTreeSet<u32> = locs.iter().map(|l| l.seq).collect();
            let mut files = std::collections::BTreeMap::new();
            let mut names = std::collections::BTreeMap::new();
            for s in seqs {
                if let (Some(f), Some(n)) = (view.segments.get(&s), view.segment_names.get(&s)) {
                    files.insert(s, f.clone());
                    names.insert(s, n.clone());
                }
            }
            (locs, files, names)
        };
        let mut out = Vec::with_capacity(locs.len());
        let mut at = 0;
        while at < locs.len() {
            // Read runs of entries from one segment with one read, bounded in size.
            let seq = locs[at].seq;
            let start = u64::from(locs[at].offset);
            let mut end_idx = at;
            while end_idx < locs.len()
                && locs[end_idx].seq == seq
                && frame_end(&locs[end_idx]) - start <= MAX_READ_RUN_BYTES
            {
                end_idx += 1;
            }
            end_idx = end_idx.max(at + 1);
            let run_end = frame_end(&locs[end_idx - 1]);
            let name = names
                .get(&seq)
                .cloned()
                .unwrap_or_else(|| format!("segment {seq}"));
            let Some(file) = files.get(&seq) else {
                return Err(WalError::corrupt(
                    name,
                    start,
                    "segment of a live entry is gone",
                ));
            };
            let mut buf = vec![0u8; (run_end - start) as usize];
            file.read_at(start, &mut buf)
                .map_err(|e| WalError::io(name.clone(), e))?;
            for (k, loc) in locs[at..end_idx].iter().enumerate() {
                let rel = (u64::from(loc.offset) - start) as usize;
                let entry = decode_entry_at(&buf[rel..], loc).map_err(|reason| {
                    WalError::corrupt(name.clone(), u64::from(loc.offset), reason)
                })?;
                let expected = lo + (at + k) as u64;
                if entry.index != expected {
                    return Err(WalError::corrupt(
                        name.clone(),
                        u64::from(loc.offset),
                        "entry has the wrong index",
                    ));
                }
                out.push(entry);
            }
            at = end_idx;
        }
        Ok(out)
    }
}

/// Bound on one read of a run of entries, so a long range does not allocate one huge buffer.
const MAX_READ_RUN_BYTES: u64 = 4 << 20;

/// End of an entry's frame without its padding (a file may end before the padding).
fn frame_end(loc: &EntryLoc) -> u64 {
    u64::from(loc.offset) + (FRAME_HEADER_BYTES as u64) + u64::from(loc.body_len)
}

fn decode_entry_at(b: &[u8], loc: &EntryLoc) -> Result<Entry, String> {
    let h = FrameHeader::parse(b);
    if h.body_len != loc.body_len {
        return Err("record length changed since it was written".into());
    }
    let body = &b[FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + loc.body_len as usize];
    if crate::format::chain_crc(loc.prev_crc, &b[..12], body) != h.crc {
        return Err("record CRC mismatch on read".into());
    }
    match LogRecord::decode(h.kind, body) {
        Some(LogRecord::Entry(e)) => Ok(e),
        _ => Err("record is not an entry".into()),
    }
}

// Compile-time check that the preamble always fits with room for records in a minimal segment.
const _: () = assert!(SEGMENT_HEADER_BYTES + PREAMBLE_MAX_BYTES < MIN_SEGMENT_BYTES as usize / 2);
