//! The watch hub: watchers grouped per stream, the live path (`publish`), the catch-up path
//! (`poll`), and each stream's bounded queue of responses.
//!
//! Responses follow etcd 3.4: a `created` response on creation (`created` and `canceled` both
//! set when a client-chosen id is taken); a `canceled` response with `compact_revision` set when
//! the watcher needs history below the compacted revision; a `canceled` response on cancel;
//! progress responses with `watch_id` -1 for a stream's progress request, and with the
//! watcher's id for `progress_notify` ticks. Every event response holds whole revisions.

use std::collections::{BTreeMap, VecDeque};

use crate::mvcc::{Backend, KeyRange, MvccError, MvccStore};
use crate::proto::etcdserverpb::{ResponseHeader, WatchResponse};
use crate::proto::mvccpb::{event::EventType, Event, KeyValue};

/// Identifies one watch stream (one gRPC `Watch` call) within the hub.
pub type StreamId = u64;

/// The watch id etcd uses for responses that belong to the stream, not to one watcher.
pub const STREAM_WATCH_ID: i64 = -1;

/// Memory bounds of the hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchLimits {
    /// Events a stream may hold undrained; a watcher whose new events do not fit turns
    /// unsynced and catches up from storage later. An empty stream still takes one published
    /// batch or one stored revision larger than this whole, so a stream holds at most this
    /// plus one batch's events.
    pub max_stream_buffer_events: usize,
    /// Events one catch-up read takes from storage (whole revisions).
    pub catch_up_chunk_events: usize,
}

impl Default for WatchLimits {
    fn default() -> Self {
        WatchLimits {
            max_stream_buffer_events: 4096,
            catch_up_chunk_events: 1024,
        }
    }
}

/// A watcher creation request (etcd's `WatchCreateRequest`, with the key range decoded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchCreate {
    pub range: KeyRange,
    /// First revision to deliver; 0 or less means "after the current one".
    pub start_revision: i64,
    /// Client-chosen id; 0 lets the hub assign one (etcd's `AutoWatchID`).
    pub watch_id: i64,
    pub no_put: bool,
    pub no_delete: bool,
    pub prev_kv: bool,
    pub progress_notify: bool,
}

/// Why a hub operation failed.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("unknown watch stream {0}")]
    UnknownStream(StreamId),
    #[error("unknown watch id {0}")]
    UnknownWatch(i64),
    #[error(transparent)]
    Storage(#[from] MvccError),
}

/// What the metrics layer reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WatchStats {
    pub streams: usize,
    pub watchers: usize,
    pub unsynced_watchers: usize,
    /// Events queued in all streams, not yet drained.
    pub buffered_events: usize,
    /// Encoded size of the responses queued in all streams, not yet drained.
    pub buffered_bytes: usize,
    /// Events handed to streams since the hub started (live and catch-up).
    pub events_queued_total: u64,
    /// Storage reads made by catching-up watchers.
    pub catch_up_reads_total: u64,
    /// Times a synced watcher fell back to catch-up because its stream's buffer was full.
    pub slow_fallbacks_total: u64,
    /// Watchers cancelled because they needed compacted history.
    pub compaction_cancels_total: u64,
}

#[derive(Debug)]
struct Watcher {
    range: KeyRange,
    /// The first revision not yet queued for this watcher.
    next_rev: i64,
    synced: bool,
    no_put: bool,
    no_delete: bool,
    prev_kv: bool,
    progress_notify: bool,
    /// Whether events went out since the last progress tick (etcd skips the tick then).
    sent_since_tick: bool,
}

impl Watcher {
    fn wants(&self, event: &Event) -> bool {
        let Some(kv) = &event.kv else {
            return false;
        };
        let put = event.r#type == EventType::Put as i32;
        kv.mod_revision >= self.next_rev
            && self.range.contains(&kv.key)
            && if put { !self.no_put } else { !self.no_delete }
    }
}

#[derive(Debug, Default)]
struct Stream {
    watchers: BTreeMap<i64, Watcher>,
    next_watch_id: i64,
    out: VecDeque<WatchResponse>,
    buffered_events: usize,
    buffered_bytes: usize,
    progress_requested: bool,
}

impl Stream {
    fn push(&mut self, response: WatchResponse, stats: &mut WatchStats) {
        self.buffered_events += response.events.len();
        self.buffered_bytes += prost::Message::encoded_len(&response);
        stats.events_queued_total += response.events.len() as u64;
        self.out.push_back(response);
    }
}

/// Every watch stream of one member.
#[derive(Debug)]
pub struct WatchHub {
    limits: WatchLimits,
    /// The newest revision published: everything up to it is committed and readable.
    current: i64,
    streams: BTreeMap<StreamId, Stream>,
    next_stream: StreamId,
    stats: WatchStats,
}

fn header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader {
        revision,
        ..Default::default()
    })
}

fn revision_of(event: &Event) -> i64 {
    event.kv.as_ref().map_or(0, |kv| kv.mod_revision)
}

/// Fills each event's prev_kv. A previous value that is compacted away is left out, as etcd
/// does (its watch server ignores the failed range).
fn fill_prev_kv<B: Backend>(store: &MvccStore<B>, events: &mut [Event]) -> Result<(), MvccError> {
    for event in events {
        let Some(kv) = &event.kv else { continue };
        match store.prev_kv(&kv.key, kv.mod_revision) {
            Ok(prev) => event.prev_kv = prev,
            Err(MvccError::Compacted { .. }) => event.prev_kv = None,
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

impl WatchHub {
    /// A hub whose history starts after revision `current` (the store's, when the server starts).
    pub fn new(limits: WatchLimits, current: i64) -> Self {
        WatchHub {
            limits,
            current,
            streams: BTreeMap::new(),
            next_stream: 1,
            stats: WatchStats::default(),
        }
    }

    pub fn current_revision(&self) -> i64 {
        self.current
    }

    pub fn open_stream(&mut self) -> StreamId {
        let id = self.next_stream;
        self.next_stream += 1;
        self.streams.insert(id, Stream::default());
        id
    }

    /// Drops a stream and its watchers (the client went away).
    pub fn close_stream(&mut self, stream: StreamId) {
        self.streams.remove(&stream);
    }

    fn stream(&mut self, stream: StreamId) -> Result<&mut Stream, WatchError> {
        self.streams
            .get_mut(&stream)
            .ok_or(WatchError::UnknownStream(stream))
    }

    /// Creates a watcher as [`WatchHub::create_seen`] does for a client told of nothing newer
    /// than the hub's revision.
    #[cfg(test)]
    pub fn create(&mut self, stream_id: StreamId, request: WatchCreate) -> Result<i64, WatchError> {
        self.create_seen(stream_id, request, self.current)
    }

    /// Creates a watcher; returns its id (the `created` response is queued on the stream).
    /// `seen` is the newest revision a client may already have been told of (writers are
    /// answered before their batch is committed and published here): a watch without a start
    /// revision begins after it, so it never reports a write its client already saw done.
    pub fn create_seen(
        &mut self,
        stream_id: StreamId,
        request: WatchCreate,
        seen: i64,
    ) -> Result<i64, WatchError> {
        let published = self.current;
        let current = published.max(seen);
        let stream = self
            .streams
            .get_mut(&stream_id)
            .ok_or(WatchError::UnknownStream(stream_id))?;
        let id = if request.watch_id == 0 {
            while stream.watchers.contains_key(&stream.next_watch_id) {
                stream.next_watch_id += 1;
            }
            let id = stream.next_watch_id;
            stream.next_watch_id += 1;
            id
        } else if stream.watchers.contains_key(&request.watch_id) {
            let refused = WatchResponse {
                header: header(current),
                watch_id: request.watch_id,
                created: true,
                canceled: true,
                cancel_reason: "mvcc: duplicate watch ID provided on the WatchStream".into(),
                ..Default::default()
            };
            stream.push(refused, &mut self.stats);
            return Ok(request.watch_id);
        } else {
            request.watch_id
        };
        let next_rev = if request.start_revision <= 0 {
            current + 1
        } else {
            request.start_revision
        };
        stream.watchers.insert(
            id,
            Watcher {
                range: request.range,
                next_rev,
                // A future start waits on the live path, which skips revisions below it.
                synced: next_rev > published,
                no_put: request.no_put,
                no_delete: request.no_delete,
                prev_kv: request.prev_kv,
                progress_notify: request.progress_notify,
                sent_since_tick: false,
            },
        );
        let created = WatchResponse {
            header: header(current),
            watch_id: id,
            created: true,
            ..Default::default()
        };
        stream.push(created, &mut self.stats);
        Ok(id)
    }

    /// Cancels a watcher; its `canceled` response is queued after everything it was sent.
    pub fn cancel(&mut self, stream_id: StreamId, watch_id: i64) -> Result<(), WatchError> {
        let current = self.current;
        let stream = self
            .streams
            .get_mut(&stream_id)
            .ok_or(WatchError::UnknownStream(stream_id))?;
        if stream.watchers.remove(&watch_id).is_none() {
            return Err(WatchError::UnknownWatch(watch_id));
        }
        let canceled = WatchResponse {
            header: header(current),
            watch_id,
            canceled: true,
            ..Default::default()
        };
        stream.push(canceled, &mut self.stats);
        Ok(())
    }

    /// A `WatchProgressRequest`: answered with the current revision once every watcher of the
    /// stream is synced (so every event up to it is queued before the answer).
    pub fn request_progress(&mut self, stream_id: StreamId) -> Result<(), WatchError> {
        self.stream(stream_id)?.progress_requested = true;
        self.answer_progress(stream_id);
        Ok(())
    }

    fn answer_progress(&mut self, stream_id: StreamId) {
        let current = self.current;
        let Some(stream) = self.streams.get_mut(&stream_id) else {
            return;
        };
        if stream.progress_requested && stream.watchers.values().all(|w| w.synced) {
            stream.progress_requested = false;
            let progress = WatchResponse {
                header: header(current),
                watch_id: STREAM_WATCH_ID,
                ..Default::default()
            };
            stream.push(progress, &mut self.stats);
        }
    }

    /// The periodic `progress_notify` tick: each synced watcher that asked for it and was sent
    /// no events since the last tick gets an empty response at the current revision. A stream
    /// holding `max_stream_buffer_events` undrained responses gets none (its client is not
    /// reading; the next tick tries again), so ticks never grow a stalled stream's queue.
    pub fn progress_tick(&mut self) {
        let current = self.current;
        let limit = self.limits.max_stream_buffer_events;
        for stream in self.streams.values_mut() {
            if stream.out.len() >= limit {
                continue;
            }
            let mut due = Vec::new();
            for (&id, watcher) in stream.watchers.iter_mut() {
                if watcher.progress_notify && watcher.synced && !watcher.sent_since_tick {
                    due.push(id);
                }
                watcher.sent_since_tick = false;
            }
            for id in due {
                let progress = WatchResponse {
                    header: header(current),
                    watch_id: id,
                    ..Default::default()
                };
                stream.push(progress, &mut self.stats);
            }
        }
    }

    /// The live path: the events of a committed batch (revisions up to `revision`, in order).
    /// Called once per applied batch, in commit order, after the store committed it.
    pub fn publish<B: Backend>(
        &mut self,
        store: &MvccStore<B>,
        revision: i64,
        events: &[Event],
    ) -> Result<(), WatchError> {
        // Revisions only move forward; a repeated batch would be sent twice.
        debug_assert!(revision >= self.current, "publish went back in time");
        debug_assert!(events.iter().all(|e| revision_of(e) <= revision));
        self.current = self.current.max(revision);
        let limit = self.limits.max_stream_buffer_events;
        let mut answer = Vec::new();
        let mut prev_cache: Vec<Option<Option<KeyValue>>> = vec![None; events.len()];
        for (&stream_id, stream) in self.streams.iter_mut() {
            let mut queued = Vec::new();
            for (&id, watcher) in stream.watchers.iter_mut() {
                if !watcher.synced {
                    continue;
                }
                let matching: Vec<usize> = (0..events.len())
                    .filter(|&i| watcher.wants(&events[i]))
                    .collect();
                if !matching.is_empty() {
                    if stream.buffered_events + matching.len() > limit && stream.buffered_events > 0
                    {
                        // Too slow a reader: it catches up from storage from next_rev on.
                        watcher.synced = false;
                        self.stats.slow_fallbacks_total += 1;
                        continue;
                    }
                    let mut out = Vec::with_capacity(matching.len());
                    for i in matching {
                        let mut event = events[i].clone();
                        if watcher.prev_kv {
                            // One storage read per event, however many watchers want it.
                            if prev_cache[i].is_none() {
                                let mut filled = [events[i].clone()];
                                fill_prev_kv(store, &mut filled)?;
                                let [filled] = filled;
                                prev_cache[i] = Some(filled.prev_kv);
                            }
                            event.prev_kv = prev_cache[i].clone().flatten();
                        }
                        out.push(event);
                    }
                    let matching = out;
                    watcher.sent_since_tick = true;
                    stream.buffered_events += matching.len();
                    queued.push(WatchResponse {
                        header: header(revision),
                        watch_id: id,
                        events: matching,
                        ..Default::default()
                    });
                }
                watcher.next_rev = watcher.next_rev.max(revision + 1);
            }
            for response in queued {
                // Already counted in buffered_events above, so the limit check saw it.
                stream.buffered_events -= response.events.len();
                stream.push(response, &mut self.stats);
            }
            if stream.progress_requested {
                answer.push(stream_id);
            }
        }
        for stream_id in answer {
            self.answer_progress(stream_id);
        }
        Ok(())
    }

    /// The store jumped to `revision` without the hub seeing its events (a Raft snapshot was
    /// installed): every watcher that had not yet been given everything up to it catches up
    /// from storage, where the history is (or is compacted, which cancels the watcher).
    pub fn restore(&mut self, revision: i64) {
        debug_assert!(revision >= self.current, "restore went back in time");
        self.current = self.current.max(revision);
        for stream in self.streams.values_mut() {
            for watcher in stream.watchers.values_mut() {
                if watcher.next_rev <= self.current {
                    watcher.synced = false;
                }
            }
        }
    }

    /// The catch-up path: unsynced watchers read from storage while their stream has room.
    /// Returns whether any watcher is still unsynced (call again after draining).
    pub fn poll<B: Backend>(&mut self, store: &MvccStore<B>) -> Result<bool, WatchError> {
        let mut behind = false;
        let stream_ids: Vec<StreamId> = self.streams.keys().copied().collect();
        for stream_id in stream_ids {
            behind |= self.catch_up_stream(store, stream_id)?;
        }
        Ok(behind)
    }

    /// [`WatchHub::poll`] for one stream's watchers only: what each stream's send loop calls,
    /// so that a hub of many streams is not walked whole by every one of them.
    pub fn poll_stream<B: Backend>(
        &mut self,
        store: &MvccStore<B>,
        stream_id: StreamId,
    ) -> Result<bool, WatchError> {
        self.catch_up_stream(store, stream_id)
    }

    fn catch_up_stream<B: Backend>(
        &mut self,
        store: &MvccStore<B>,
        stream_id: StreamId,
    ) -> Result<bool, WatchError> {
        let current = self.current;
        let limits = self.limits;
        let mut behind = false;
        let Some(stream) = self.streams.get_mut(&stream_id) else {
            return Ok(false);
        };
        let ids: Vec<i64> = stream
            .watchers
            .iter()
            .filter(|(_, w)| !w.synced)
            .map(|(&id, _)| id)
            .collect();
        for id in ids {
            loop {
                let room = limits
                    .max_stream_buffer_events
                    .saturating_sub(stream.buffered_events);
                let Some(watcher) = stream.watchers.get_mut(&id) else {
                    break;
                };
                if watcher.synced {
                    break;
                }
                if room == 0 {
                    behind = true;
                    break;
                }
                let chunk = room.min(limits.catch_up_chunk_events).max(1);
                self.stats.catch_up_reads_total += 1;
                let read = store.events(&watcher.range, watcher.next_rev, current, chunk);
                let mut events = match read {
                    Ok(events) => events,
                    Err(MvccError::Compacted { compacted, .. }) => {
                        stream.watchers.remove(&id);
                        self.stats.compaction_cancels_total += 1;
                        let canceled = WatchResponse {
                            header: header(current),
                            watch_id: id,
                            canceled: true,
                            compact_revision: compacted,
                            ..Default::default()
                        };
                        stream.push(canceled, &mut self.stats);
                        break;
                    }
                    Err(err) => return Err(err.into()),
                };
                let covered = if events.len() < chunk {
                    current
                } else {
                    events.last().map_or(current, revision_of)
                };
                events.retain(|e| watcher.wants(e));
                if watcher.prev_kv {
                    fill_prev_kv(store, &mut events)?;
                }
                watcher.next_rev = covered + 1;
                watcher.synced = covered >= current;
                if !events.is_empty() {
                    watcher.sent_since_tick = true;
                    let response = WatchResponse {
                        header: header(current),
                        watch_id: id,
                        events,
                        ..Default::default()
                    };
                    stream.push(response, &mut self.stats);
                }
            }
        }
        self.answer_progress(stream_id);
        Ok(behind)
    }

    /// Takes every queued response of a stream, oldest first (the stream's send loop).
    pub fn drain(&mut self, stream_id: StreamId) -> Result<Vec<WatchResponse>, WatchError> {
        let stream = self.stream(stream_id)?;
        stream.buffered_events = 0;
        stream.buffered_bytes = 0;
        Ok(stream.out.drain(..).collect())
    }

    pub fn stats(&self) -> WatchStats {
        let mut stats = self.stats;
        stats.streams = self.streams.len();
        for stream in self.streams.values() {
            stats.watchers += stream.watchers.len();
            stats.unsynced_watchers += stream.watchers.values().filter(|w| !w.synced).count();
            stats.buffered_events += stream.buffered_events;
            stats.buffered_bytes += stream.buffered_bytes;
        }
        stats
    }
}
