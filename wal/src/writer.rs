//! The writer: takes every queued operation, encodes the records into the active segment,
//! writes them with one `write` and one fdatasync (group commit), publishes them to the
//! in-memory index, and only then acknowledges. Rotation, truncation and release happen here
//! too. Its state is held by the writer thread, or by an inline append when the log is idle;
//! either way operations reach the disk in the order of the calls that made them.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::error::WalError;
use crate::format::{
    encode_frame, frame_len, segment_file_name, SegmentHeader, SEGMENT_HEADER_BYTES, TMP_SUFFIX,
};
use crate::index::{EntryIndex, EntryLoc};
use crate::io::{WalDir, WalFile};
use crate::metrics::MetricsCells;
use crate::record::LogRecord;
use crate::recovery::{LogState, RecoveredLog};
use crate::spare::{Spare, SPARE_NAME};

pub(crate) type Reply = oneshot::Sender<Result<(), WalError>>;

pub(crate) enum Op {
    Append {
        records: Vec<LogRecord>,
        frame_bytes: usize,
        done: Reply,
    },
    Release {
        before_index: u64,
        done: Reply,
    },
}

impl Op {
    fn frame_bytes(&self) -> usize {
        match self {
            Op::Append { frame_bytes, .. } => *frame_bytes,
            Op::Release { .. } => 0,
        }
    }
    fn fail(self, err: WalError) {
        let done = match self {
            Op::Append { done, .. } | Op::Release { done, .. } => done,
        };
        // The appender may have stopped waiting; nothing to tell then.
        let _ = done.send(Err(err));
    }
}

/// Why the log stopped accepting writes.
#[derive(Debug, Clone)]
pub(crate) struct FatalCause {
    pub file: String,
    pub cause: String,
}

impl FatalCause {
    pub(crate) fn to_error(&self) -> WalError {
        WalError::Fatal {
            file: self.file.clone(),
            cause: self.cause.clone(),
        }
    }
}

#[derive(Default)]
pub(crate) struct Queue {
    pub ops: VecDeque<Op>,
    pub shutdown: bool,
    /// The writer is (about to be) blocked on the condition variable and needs a notify.
    pub writer_parked: bool,
    pub fatal: Option<FatalCause>,
}

/// What readers see: only durable records.
pub(crate) struct View {
    pub index: EntryIndex,
    pub segments: BTreeMap<u32, Arc<dyn WalFile>>,
    pub segment_names: BTreeMap<u32, String>,
    pub state: LogState,
}

pub(crate) struct Shared {
    pub queue: Mutex<Queue>,
    pub queue_cv: Condvar,
    /// Operations ever queued; lets the idle writer watch for work without taking the lock.
    pub enqueued_ops: AtomicU64,
    pub view: Mutex<View>,
    pub metrics: MetricsCells,
}

impl Shared {
    pub(crate) fn lock_queue(&self) -> MutexGuard<'_, Queue> {
        // Poisoning means a thread panicked holding the lock; the data is still consistent
        // because every critical section leaves it so before anything can panic.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
    pub(crate) fn lock_view(&self) -> MutexGuard<'_, View> {
        self.view.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// How long the idle writer watches the queue before parking on the condition variable.
const IDLE_WATCH: Duration = Duration::from_micros(50);

/// Bytes the preamble (metadata, hard state, snapshot marker) can take in a new segment.
pub(crate) const PREAMBLE_MAX_BYTES: usize = 32 + 40 + 32;

/// Largest record body that fits into a fresh segment.
pub(crate) fn max_body_bytes(segment_bytes: u64) -> u64 {
    let room = segment_bytes as usize - SEGMENT_HEADER_BYTES - PREAMBLE_MAX_BYTES;
    // frame_len rounds up to 8; stay below the room with the rounding.
    (room - crate::format::FRAME_HEADER_BYTES) as u64 & !7
}

/// Sizes the writer works within.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WriterLimits {
    pub segment_bytes: u64,
    pub max_batch_bytes: usize,
}

enum IndexEvent {
    Push(u64, EntryLoc),
    TruncateFrom(u64),
    Reset(u64),
}

struct SegmentName {
    seq: u32,
    first_index: u64,
    name: String,
}

pub(crate) struct Writer {
    shared: Arc<Shared>,
    dir: Arc<dyn WalDir>,
    segment_bytes: u64,
    segments: VecDeque<SegmentName>,
    active: Arc<dyn WalFile>,
    /// Chain CRC of the last record encoded.
    chain: u32,
    /// Encoded bytes not yet written; they go at `buf_start` in the active segment.
    buf: Vec<u8>,
    buf_start: u64,
    buf_records: u64,
    /// The log as it will be once everything encoded so far is durable.
    next_index: u64,
    first_index: u64,
    state: LogState,
    staged: Vec<IndexEvent>,
    waiters: Vec<Reply>,
    /// Set once a write or fsync failed; mirrors `Queue::fatal`.
    fatal: Option<FatalCause>,
    /// The segment to rotate into, filled ahead of need.
    spare: Spare,
}

fn fatal(file: &str, e: std::io::Error) -> FatalCause {
    FatalCause {
        file: file.to_string(),
        cause: e.to_string(),
    }
}

impl Writer {
    /// A writer continuing a recovered log; `segments` is non-empty.
    pub(crate) fn resume(
        shared: Arc<Shared>,
        dir: Arc<dyn WalDir>,
        limits: WriterLimits,
        log: RecoveredLog,
    ) -> Writer {
        debug_assert!(
            !log.segments.is_empty(),
            "resume needs the recovered segments"
        );
        let active = log.segments[log.segments.len() - 1].file.clone();
        let mut w = Writer {
            shared,
            dir,
            segment_bytes: limits.segment_bytes,
            segments: log
                .segments
                .into_iter()
                .map(|s| SegmentName {
                    seq: s.seq,
                    first_index: s.first_index,
                    name: s.name,
                })
                .collect(),
            active,
            chain: log.chain_crc,
            buf: Vec::new(),
            buf_start: log.write_pos,
            buf_records: 0,
            next_index: log.index.next_index(),
            first_index: log.index.first_index(),
            state: log.state,
            staged: Vec::new(),
            waiters: Vec::new(),
            fatal: None,
            spare: Spare::default(),
        };
        w.spare.prepare(&w.dir, w.segment_bytes);
        w
    }

    /// A writer for a brand-new log: creates its first segment now.
    pub(crate) fn create(
        shared: Arc<Shared>,
        dir: Arc<dyn WalDir>,
        limits: WriterLimits,
    ) -> Result<Writer, WalError> {
        let mut w = Writer {
            shared,
            dir,
            segment_bytes: limits.segment_bytes,
            segments: VecDeque::new(),
            active: Arc::new(NoFile),
            chain: 0,
            buf: Vec::new(),
            buf_start: SEGMENT_HEADER_BYTES as u64,
            buf_records: 0,
            next_index: 1,
            first_index: 1,
            state: LogState::default(),
            staged: Vec::new(),
            waiters: Vec::new(),
            fatal: None,
            spare: Spare::default(),
        };
        w.rotate().map_err(|f| WalError::Io {
            file: f.file,
            source: std::io::Error::other(f.cause),
        })?;
        Ok(w)
    }

    fn active_name(&self) -> String {
        self.segments
            .back()
            .map(|s| self.dir.describe(&s.name))
            .unwrap_or_default()
    }

    /// Serves the queue until shutdown, draining whatever was queued before it. Operations
    /// are taken from the queue only while holding the writer: an inline append
    /// ([`Writer::append_inline`]), which holds it too, then knows that nothing queued before
    /// it is still unwritten when it finds the queue empty.
    pub(crate) fn run(writer: Arc<Mutex<Writer>>, shared: Arc<Shared>, max_batch_bytes: usize) {
        let _guard = PanicGuard {
            shared: &shared,
            writer: &writer,
        };
        let mut taken_ops = 0u64;
        let mut last_batch_ops = 0usize;
        loop {
            // After a batch of several appends their callers are busy waking up and will
            // queue the next batch; watching would only take CPU from them.
            if last_batch_ops <= 1 {
                await_work_briefly(&shared, taken_ops);
            }
            {
                let mut q = shared.lock_queue();
                while q.ops.is_empty() && !q.shutdown {
                    q.writer_parked = true;
                    q = shared.queue_cv.wait(q).unwrap_or_else(|e| e.into_inner());
                }
                q.writer_parked = false;
                if q.ops.is_empty() {
                    return;
                }
            }
            let Ok(mut w) = writer.lock() else {
                // An inline append panicked while writing: the state is not to be trusted.
                poisoned(&shared);
                return;
            };
            let ops = {
                let mut q = shared.lock_queue();
                // Everything queued while the last fsync ran goes into this one, up to a bound.
                let mut taken = Vec::new();
                let mut bytes = 0usize;
                while let Some(op) = q.ops.front() {
                    if !taken.is_empty() && bytes + op.frame_bytes() > max_batch_bytes {
                        break;
                    }
                    bytes += op.frame_bytes();
                    if let Some(op) = q.ops.pop_front() {
                        taken.push(op);
                    }
                }
                taken
            };
            debug_assert!(!ops.is_empty(), "only this thread takes from the queue");
            taken_ops += ops.len() as u64;
            last_batch_ops = ops.len();
            w.process(ops);
        }
    }

    /// Appends `records` on the caller's thread when the log is idle (nothing queued, the
    /// writer thread not writing), sparing the caller the hand-off to the writer thread and
    /// back (two thread wake-ups, tens of microseconds each): the outcome. Gives the records
    /// back otherwise.
    pub(crate) fn append_inline(
        writer: &Mutex<Writer>,
        shared: &Shared,
        records: Vec<LogRecord>,
        frame_bytes: usize,
    ) -> Result<Result<(), WalError>, Vec<LogRecord>> {
        // Declared before the lock it may take, so that it runs after the lock is released.
        let _guard = PanicGuard { shared, writer };
        let Ok(mut w) = writer.try_lock() else {
            return Err(records);
        };
        {
            let q = shared.lock_queue();
            if !q.ops.is_empty() || q.shutdown {
                return Err(records);
            }
        }
        // Ops queued from here on come after this one: the writer thread needs the lock held.
        shared.metrics.record_inline_append();
        let (done, mut outcome) = oneshot::channel();
        w.process(vec![Op::Append {
            records,
            frame_bytes,
            done,
        }]);
        // A processed append is always answered; no answer would mean a closed log.
        Ok(outcome.try_recv().unwrap_or(Err(WalError::Closed)))
    }

    fn fatal_cause(&self) -> Option<FatalCause> {
        // Only the holder of the writer makes the log fatal (the panic guard runs after).
        self.fatal.clone()
    }

    fn process(&mut self, ops: Vec<Op>) {
        for op in ops {
            if let Some(f) = self.fatal_cause() {
                op.fail(f.to_error());
                continue;
            }
            match op {
                Op::Append { records, done, .. } => {
                    let skip = match self.validate(&records) {
                        Ok(skip) => skip,
                        Err(e) => {
                            let _ = done.send(Err(e));
                            continue;
                        }
                    };
                    self.waiters.push(done);
                    for (r, skip) in records.iter().zip(skip) {
                        if skip {
                            continue;
                        }
                        if let Err(f) = self.encode(r) {
                            self.go_fatal(f);
                            break;
                        }
                    }
                }
                Op::Release { before_index, done } => {
                    if let Err(f) = self.commit() {
                        self.go_fatal(f);
                        let _ = done.send(Err(self.fatal_or_closed()));
                        continue;
                    }
                    match self.release(before_index) {
                        Ok(()) => {
                            let _ = done.send(Ok(()));
                        }
                        Err(f) => {
                            self.go_fatal(f);
                            let _ = done.send(Err(self.fatal_or_closed()));
                        }
                    }
                }
            }
        }
        if self.fatal_cause().is_none() {
            if let Err(f) = self.commit() {
                self.go_fatal(f);
            }
        }
    }

    fn fatal_or_closed(&self) -> WalError {
        self.fatal_cause()
            .map(|f| f.to_error())
            .unwrap_or(WalError::Closed)
    }

    /// Checks a whole append against the log as it will be, so that an invalid record rejects
    /// the append before any of it is written. Returns which records are no-ops.
    fn validate(&self, records: &[LogRecord]) -> Result<Vec<bool>, WalError> {
        let mut next = self.next_index;
        let first = self.first_index;
        let mut snapshot = self.state.snapshot;
        let max_body = max_body_bytes(self.segment_bytes);
        let mut skip = Vec::with_capacity(records.len());
        for r in records {
            let mut is_noop = false;
            match r {
                LogRecord::Entry(e) => {
                    if e.index != next || e.index == u64::MAX {
                        return Err(WalError::NonContiguous {
                            expected: next,
                            found: e.index,
                        });
                    }
                    if r.body_len() as u64 > max_body {
                        return Err(WalError::RecordTooLarge {
                            bytes: r.body_len() as u64,
                            max_bytes: max_body,
                        });
                    }
                    next += 1;
                }
                LogRecord::Truncate { from_index } => {
                    if *from_index < first {
                        return Err(WalError::TruncateBeforeFirst {
                            index: *from_index,
                            first_index: first,
                        });
                    }
                    if let Some(s) = snapshot.filter(|s| *from_index <= s.index) {
                        // Keeps `snapshot.index < next_index`, which the preamble relies on.
                        return Err(WalError::TruncateCoveredBySnapshot {
                            index: *from_index,
                            snapshot_index: s.index,
                        });
                    }
                    if *from_index >= next {
                        is_noop = true;
                    } else {
                        next = *from_index;
                    }
                }
                LogRecord::Snapshot(s) => {
                    if s.index == u64::MAX {
                        return Err(WalError::NonContiguous {
                            expected: next,
                            found: s.index,
                        });
                    }
                    if s.index >= next {
                        next = s.index + 1;
                    }
                    snapshot = Some(*s);
                }
                LogRecord::HardState(_) | LogRecord::Metadata(_) => {}
            }
            skip.push(is_noop);
        }
        Ok(skip)
    }

    /// Encodes one validated record, rotating first if it does not fit.
    fn encode(&mut self, r: &LogRecord) -> Result<(), FatalCause> {
        let flen = frame_len(r.body_len()) as u64;
        if self.buf_start + self.buf.len() as u64 + flen > self.segment_bytes {
            self.flush()?;
            self.rotate()?;
        }
        // A segment's preamble replays its snapshot marker; it must not reset the log there.
        debug_assert!(self
            .state
            .snapshot
            .is_none_or(|s| s.index < self.next_index));
        let offset = self.buf_start + self.buf.len() as u64;
        // Rotation guarantees room; validation bounded the record by a fresh segment's room.
        debug_assert!(offset + flen <= self.segment_bytes);
        let prev = self.chain;
        self.chain = encode_frame(&mut self.buf, r, self.buf_start as u32, prev);
        self.buf_records += 1;
        let seq = self.segments.back().map(|s| s.seq).unwrap_or(0);
        match r {
            LogRecord::Entry(e) => {
                self.staged.push(IndexEvent::Push(
                    e.index,
                    EntryLoc {
                        seq,
                        offset: offset as u32,
                        body_len: r.body_len() as u32,
                        prev_crc: prev,
                    },
                ));
                if self.first_index == self.next_index {
                    self.first_index = e.index;
                }
                self.next_index = e.index + 1;
            }
            LogRecord::Truncate { from_index } => {
                self.staged.push(IndexEvent::TruncateFrom(*from_index));
                self.next_index = *from_index;
                self.first_index = self.first_index.min(*from_index);
            }
            LogRecord::Snapshot(s) => {
                if s.index >= self.next_index {
                    self.staged.push(IndexEvent::Reset(s.index + 1));
                    self.next_index = s.index + 1;
                    self.first_index = s.index + 1;
                }
                self.state.snapshot = Some(*s);
            }
            LogRecord::HardState(h) => self.state.hard_state = Some(*h),
            LogRecord::Metadata(m) => self.state.metadata = Some(*m),
        }
        Ok(())
    }

    /// One `write` of the buffered frames and one fdatasync.
    fn flush(&mut self) -> Result<(), FatalCause> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let name = self.active_name();
        self.active
            .write_at(self.buf_start, &self.buf)
            .map_err(|e| fatal(&name, e))?;
        let started = Instant::now();
        self.active.sync_data().map_err(|e| fatal(&name, e))?;
        self.shared.metrics.record_fsync(
            self.buf_records,
            self.buf.len() as u64,
            started.elapsed(),
        );
        self.buf_start += self.buf.len() as u64;
        self.buf.clear();
        self.buf_records = 0;
        Ok(())
    }

    /// Makes everything encoded durable, publishes it to readers, then acknowledges.
    fn commit(&mut self) -> Result<(), FatalCause> {
        self.flush()?;
        {
            let mut view = self.shared.lock_view();
            for ev in self.staged.drain(..) {
                match ev {
                    IndexEvent::Push(i, loc) => view.index.push(i, loc),
                    IndexEvent::TruncateFrom(i) => view.index.truncate_from(i),
                    IndexEvent::Reset(i) => view.index.reset(i),
                }
            }
            view.state = self.state.clone();
            // The published log and the writer's plan agree once everything is durable.
            debug_assert_eq!(view.index.next_index(), self.next_index);
            debug_assert_eq!(view.index.first_index(), self.first_index);
        }
        for w in self.waiters.drain(..) {
            let _ = w.send(Ok(()));
        }
        Ok(())
    }

    fn go_fatal(&mut self, f: FatalCause) {
        self.shared.lock_queue().fatal.get_or_insert(f.clone());
        self.fatal.get_or_insert(f.clone());
        self.staged.clear();
        self.buf.clear();
        for w in self.waiters.drain(..) {
            let _ = w.send(Err(f.to_error()));
        }
    }

    /// Starts the next segment: the old one was fdatasync'ed by the caller; the new one is
    /// complete (header and preamble, durable) and named before anything is written into it.
    fn rotate(&mut self) -> Result<(), FatalCause> {
        debug_assert!(
            self.buf.is_empty(),
            "the old segment's bytes are written first"
        );
        let prev_seq = self.segments.back().map(|s| s.seq).unwrap_or(0);
        let Some(seq) = prev_seq.checked_add(1) else {
            return Err(FatalCause {
                file: self.active_name(),
                cause: "segment numbers exhausted".into(),
            });
        };
        let name = segment_file_name(u64::from(seq), self.next_index);
        let tmp = format!("{name}{TMP_SUFFIX}");
        let header = SegmentHeader {
            seq: u64::from(seq),
            first_index: self.next_index,
            prev_crc: self.chain,
        };
        let mut bytes = header.encode().to_vec();
        let mut chain = self.chain;
        let preamble = [
            self.state.metadata.map(LogRecord::Metadata),
            self.state.hard_state.map(LogRecord::HardState),
            self.state.snapshot.map(LogRecord::Snapshot),
        ];
        for r in preamble.iter().flatten() {
            chain = encode_frame(&mut bytes, r, SEGMENT_HEADER_BYTES as u32, chain);
        }
        debug_assert!(bytes.len() <= SEGMENT_HEADER_BYTES + PREAMBLE_MAX_BYTES);
        let (tmp, file) = match self.spare.take() {
            Some(file) => (SPARE_NAME.to_string(), file),
            None => {
                let file = self
                    .dir
                    .create(&tmp, self.segment_bytes)
                    .map_err(|e| fatal(&self.dir.describe(&tmp), e))?;
                (tmp, file)
            }
        };
        let tmp_desc = self.dir.describe(&tmp);
        file.write_at(0, &bytes).map_err(|e| fatal(&tmp_desc, e))?;
        let started = Instant::now();
        file.sync_data().map_err(|e| fatal(&tmp_desc, e))?;
        self.shared.metrics.record_fsync(
            preamble.iter().flatten().count() as u64,
            bytes.len() as u64,
            started.elapsed(),
        );
        self.dir
            .rename(&tmp, &name)
            .map_err(|e| fatal(&tmp_desc, e))?;
        self.dir
            .sync_dir()
            .map_err(|e| fatal(&self.dir.describe(&name), e))?;
        {
            let mut view = self.shared.lock_view();
            view.segments.insert(seq, file.clone());
            view.segment_names.insert(seq, self.dir.describe(&name));
        }
        self.segments.push_back(SegmentName {
            seq,
            first_index: self.next_index,
            name,
        });
        self.active = file;
        self.chain = chain;
        self.buf_start = bytes.len() as u64;
        self.spare.prepare(&self.dir, self.segment_bytes);
        Ok(())
    }

    /// Deletes whole segments whose live entries are all below `before_index`, oldest first,
    /// never the active one. Everything before was committed by the caller.
    fn release(&mut self, before_index: u64) -> Result<(), FatalCause> {
        debug_assert!(self.staged.is_empty(), "release runs between commits");
        // A segment's live entries are all below the next segment's first index.
        while self.segments.len() >= 2 && self.segments[1].first_index <= before_index {
            let Some(old) = self.segments.pop_front() else {
                break;
            };
            let desc = self.dir.describe(&old.name);
            self.dir.remove(&old.name).map_err(|e| fatal(&desc, e))?;
            // One directory fsync per removal: a crash must never leave a hole in the middle.
            self.dir.sync_dir().map_err(|e| fatal(&desc, e))?;
            let mut view = self.shared.lock_view();
            view.segments.remove(&old.seq);
            view.segment_names.remove(&old.seq);
            let keep_from = self.segments.front().map(|s| s.seq).unwrap_or(u32::MAX);
            view.index.release_segments_before(keep_from);
            self.first_index = view.index.first_index();
        }
        Ok(())
    }
}

/// Right after a lone append's commit the next append usually arrives within microseconds
/// (its caller was just woken); watching for it, yielding the CPU meanwhile, avoids the cost
/// of parking and waking the writer thread. It never delays work: it returns as soon as
/// anything is queued.
fn await_work_briefly(shared: &Shared, taken_ops: u64) {
    let started = Instant::now();
    while shared.enqueued_ops.load(Ordering::Acquire) == taken_ops && started.elapsed() < IDLE_WATCH
    {
        std::thread::yield_now();
    }
}

/// If writing panics (a broken invariant), on the writer thread or inline, the log turns
/// fatal so that appenders get an error instead of waiting forever: those queued and those
/// whose records were being written.
struct PanicGuard<'a> {
    shared: &'a Shared,
    writer: &'a Mutex<Writer>,
}

impl Drop for PanicGuard<'_> {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        poisoned(self.shared);
        // The panicking holder's guard is gone by now (declared after this one).
        let mut w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let cause = self.shared.lock_queue().fatal.clone();
        for waiter in w.waiters.drain(..) {
            let err = cause
                .as_ref()
                .map_or(WalError::Closed, FatalCause::to_error);
            let _ = waiter.send(Err(err));
        }
    }
}

/// Makes the log fatal after a panic while writing and fails everything queued.
fn poisoned(shared: &Shared) {
    let mut q = shared.lock_queue();
    let cause = q.fatal.get_or_insert(FatalCause {
        file: "wal writer".into(),
        cause: "panicked".into(),
    });
    let err = cause.clone();
    for op in q.ops.drain(..) {
        op.fail(err.to_error());
    }
}

/// Placeholder before the first segment exists; never written to.
struct NoFile;

impl WalFile for NoFile {
    fn read_at(&self, _: u64, _: &mut [u8]) -> std::io::Result<()> {
        Err(std::io::Error::other("no segment yet"))
    }
    fn write_at(&self, _: u64, _: &[u8]) -> std::io::Result<()> {
        Err(std::io::Error::other("no segment yet"))
    }
    fn sync_data(&self) -> std::io::Result<()> {
        Ok(())
    }
    fn size(&self) -> std::io::Result<u64> {
        Ok(0)
    }
    fn set_len(&self, _: u64) -> std::io::Result<()> {
        Err(std::io::Error::other("no segment yet"))
    }
}
