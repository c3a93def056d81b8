//! The hub against a model: the full history of events, kept in memory, and what every
//! watcher should therefore have received. Random writes (published or, for `restore`, not),
//! compactions, creations at past, compacted and future revisions, cancellations, stalled
//! streams, progress requests and ticks, under tiny buffer limits.
//!
//! On failure proptest prints the minimal failing steps and limits and stores the case under
//! `proptest-regressions/` (replayed first on the next run); `CAIRN_WATCH_CASES` sets the
//! number of cases (default 64; thousands run in seconds).

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::hub::STREAM_WATCH_ID;
use super::*;
use crate::mvcc::{KeyRange, MemBackend, MvccStore};
use crate::proto::etcdserverpb::WatchResponse;
use crate::proto::mvccpb::{event::EventType, Event, KeyValue};

const PUT: i32 = EventType::Put as i32;
const DELETE: i32 = EventType::Delete as i32;

pub(super) fn key(k: u8) -> Vec<u8> {
    vec![b'a' + k % 6]
}

pub(super) fn store() -> MvccStore<MemBackend> {
    MvccStore::open(MemBackend::default()).expect("open")
}

/// Commits `txns` (each a list of puts and deletes by key letter) as one batch and publishes
/// it.
pub(super) fn write(
    store: &MvccStore<MemBackend>,
    hub: &mut WatchHub,
    txns: &[Vec<(u8, Option<u8>)>],
) -> Vec<Event> {
    let committed = commit(store, txns);
    hub.publish(store, committed.revision, &committed.events)
        .expect("publish");
    committed.events
}

pub(super) fn write_unpublished(
    store: &MvccStore<MemBackend>,
    txns: &[Vec<(u8, Option<u8>)>],
) -> Vec<Event> {
    commit(store, txns).events
}

pub(super) fn commit(
    store: &MvccStore<MemBackend>,
    txns: &[Vec<(u8, Option<u8>)>],
) -> crate::mvcc::Committed {
    let mut batch = store.write().expect("write");
    for txn in txns {
        // etcd refuses a txn that changes one key twice; prev_kv relies on that.
        let mut touched = Vec::new();
        for (k, value) in txn {
            if touched.contains(&key(*k)) {
                continue;
            }
            touched.push(key(*k));
            match value {
                Some(v) => {
                    batch.put(&key(*k), &[*v], 0).expect("put");
                }
                None => {
                    batch
                        .delete_range(&KeyRange::Single(key(*k)))
                        .expect("delete");
                }
            }
        }
        batch.end_txn();
    }
    batch.commit().expect("commit")
}

pub(super) fn watch_all(start_revision: i64) -> WatchCreate {
    WatchCreate {
        range: KeyRange::prefix(b""),
        start_revision,
        watch_id: 0,
        no_put: false,
        no_delete: false,
        prev_kv: false,
        progress_notify: false,
    }
}

pub(super) fn revisions(responses: &[WatchResponse]) -> Vec<Vec<i64>> {
    responses
        .iter()
        .map(|r| {
            r.events
                .iter()
                .map(|e| e.kv.as_ref().map_or(0, |kv| kv.mod_revision))
                .collect()
        })
        .collect()
}

// ---- the model test ----

#[derive(Debug, Clone)]
enum Step {
    Write(Vec<Vec<(u8, Option<u8>)>>),
    Compact(u8),
    Create {
        stream: u8,
        start: i8,
        watch: u8,
    },
    Cancel {
        stream: u8,
        nth: u8,
    },
    Drain(u8),
    Poll,
    /// One stream's catch-up only (what each stream's send loop does).
    PollStream(u8),
    Progress(u8),
    Tick,
    /// Writes the hub does not see, then `restore` (a Raft snapshot install).
    Restore(Vec<Vec<(u8, Option<u8>)>>),
}

fn step() -> impl Strategy<Value = Step> {
    let op = (0u8..6, prop::option::weighted(0.7, any::<u8>()));
    prop_oneof![
        4 => prop::collection::vec(prop::collection::vec(op.clone(), 1..3), 1..3).prop_map(Step::Write),
        1 => any::<u8>().prop_map(Step::Compact),
        2 => (0u8..3, -3i8..7, any::<u8>())
            .prop_map(|(stream, start, watch)| Step::Create { stream, start, watch }),
        1 => (0u8..3, any::<u8>()).prop_map(|(stream, nth)| Step::Cancel { stream, nth }),
        2 => (0u8..3).prop_map(Step::Drain),
        2 => Just(Step::Poll),
        2 => (0u8..3).prop_map(Step::PollStream),
        1 => (0u8..3).prop_map(Step::Progress),
        1 => Just(Step::Tick),
        1 => prop::collection::vec(prop::collection::vec(op, 1..3), 1..3).prop_map(Step::Restore),
    ]
}

/// What the test remembers of one watcher.
struct Seen {
    create: WatchCreate,
    /// First revision it must deliver.
    from: i64,
    events: Vec<Event>,
    /// The revision of the last response's events (strictly increasing across responses).
    last_rev: i64,
    canceled: bool,
    compact_revision: i64,
    /// Its `created` response was received (a progress answer before it promises nothing).
    created: bool,
}

struct Model {
    /// Every event ever committed, with prev_kv from the model's own key space.
    history: Vec<Event>,
    state: BTreeMap<Vec<u8>, KeyValue>,
}

impl Model {
    fn record(&mut self, events: &[Event]) {
        for event in events {
            let kv = event.kv.clone().unwrap_or_default();
            let prev = if event.r#type == PUT {
                self.state.insert(kv.key.clone(), kv.clone())
            } else {
                self.state.remove(&kv.key)
            };
            self.history.push(Event {
                prev_kv: prev,
                ..event.clone()
            });
        }
    }

    fn expected(&self, seen: &Seen) -> Vec<Event> {
        let c = &seen.create;
        self.history
            .iter()
            .filter(|e| {
                let kv = e.kv.as_ref().expect("kv");
                kv.mod_revision >= seen.from
                    && c.range.contains(&kv.key)
                    && !(c.no_put && e.r#type == PUT)
                    && !(c.no_delete && e.r#type == DELETE)
            })
            .map(|e| Event {
                prev_kv: if c.prev_kv { e.prev_kv.clone() } else { None },
                ..e.clone()
            })
            .collect()
    }
}

fn rev(e: &Event) -> i64 {
    e.kv.as_ref().map_or(0, |kv| kv.mod_revision)
}

fn watch_request(watch: u8, start_revision: i64) -> WatchCreate {
    let range = match watch % 3 {
        0 => KeyRange::prefix(b""),
        1 => KeyRange::Single(key(watch / 3)),
        _ => KeyRange::from_etcd(b"b", b"e"),
    };
    WatchCreate {
        range,
        start_revision,
        watch_id: 0,
        no_put: watch & 0x10 != 0 && watch & 0x20 == 0,
        no_delete: watch & 0x20 != 0 && watch & 0x10 == 0,
        prev_kv: watch & 0x40 != 0,
        progress_notify: watch & 0x80 != 0,
    }
}

struct Run {
    store: MvccStore<MemBackend>,
    hub: WatchHub,
    model: Model,
    streams: Vec<StreamId>,
    /// (stream index, watch id) → what it received; canceled ones stay for the final check.
    seen: BTreeMap<(usize, i64), Seen>,
    /// Events of revisions with DELETEs: compacting at one would lose them (see history.rs).
    delete_revisions: Vec<i64>,
}

impl Run {
    fn drain(&mut self, s: usize) -> Result<(), TestCaseError> {
        let responses = self.hub.drain(self.streams[s]).expect("drain");
        for response in responses {
            if response.watch_id == STREAM_WATCH_ID {
                // Bookmarkable: every live watcher already has everything up to the revision.
                let at = response.header.as_ref().map_or(0, |h| h.revision);
                for (&(stream, _), seen) in &self.seen {
                    if stream != s || seen.canceled || !seen.created {
                        continue;
                    }
                    let expected: Vec<_> = self
                        .model
                        .expected(seen)
                        .into_iter()
                        .filter(|e| rev(e) <= at)
                        .map(|e| (e.r#type, e.kv))
                        .collect();
                    let delivered: Vec<_> = seen
                        .events
                        .iter()
                        .filter(|e| rev(e) <= at)
                        .map(|e| (e.r#type, e.kv.clone()))
                        .collect();
                    // (prev_kv is checked at the end, where compaction is known.)
                    prop_assert_eq!(delivered, expected, "progress {} came early", at);
                }
                continue;
            }
            let Some(seen) = self.seen.get_mut(&(s, response.watch_id)) else {
                return Err(TestCaseError::fail(format!(
                    "response for unknown watcher {response:?}"
                )));
            };
            prop_assert!(!seen.canceled, "response after cancel");
            if response.created {
                prop_assert!(!seen.created, "created twice");
                seen.created = true;
                continue;
            }
            if response.canceled {
                seen.canceled = true;
                seen.compact_revision = response.compact_revision;
                continue;
            }
            if response.events.is_empty() {
                // A progress_notify tick: this watcher has everything up to the revision.
                prop_assert!(seen.create.progress_notify, "empty event response");
                let at = response.header.as_ref().map_or(0, |h| h.revision);
                let expected = self
                    .model
                    .expected(seen)
                    .iter()
                    .filter(|e| rev(e) <= at)
                    .count();
                let delivered = seen.events.iter().filter(|e| rev(e) <= at).count();
                prop_assert_eq!(delivered, expected, "tick at {} came early", at);
                continue;
            }
            let revs: Vec<i64> = response.events.iter().map(rev).collect();
            // Ordered, and unique/atomic: each response starts after the previous one ended.
            prop_assert!(
                revs.windows(2).all(|w| w[0] <= w[1]),
                "unordered {:?}",
                revs
            );
            prop_assert!(
                revs[0] > seen.last_rev,
                "revision {} sent twice or out of order",
                revs[0]
            );
            seen.last_rev = revs[revs.len() - 1];
            seen.events.extend(response.events);
        }
        Ok(())
    }
}

fn run_model(steps: Vec<Step>, limits: WatchLimits) -> Result<(), TestCaseError> {
    let store = store();
    let hub = WatchHub::new(limits, store.current_revision());
    let mut run = Run {
        store,
        hub,
        model: Model {
            history: Vec::new(),
            state: BTreeMap::new(),
        },
        streams: Vec::new(),
        seen: BTreeMap::new(),
        delete_revisions: Vec::new(),
    };
    for _ in 0..3 {
        let id = run.hub.open_stream();
        run.streams.push(id);
    }
    for step in steps {
        match step {
            Step::Write(txns) => {
                let events = write(&run.store, &mut run.hub, &txns);
                for e in &events {
                    if e.r#type == DELETE {
                        run.delete_revisions.push(rev(e));
                    }
                }
                run.model.record(&events);
            }
            Step::Compact(pick) => {
                let (low, high) = (
                    run.store.compacted_revision() + 1,
                    run.store.current_revision(),
                );
                if low <= high {
                    let at = low + i64::from(pick) % (high - low + 1);
                    if !run.delete_revisions.contains(&at) {
                        run.store.compact(at, None).expect("compact");
                    }
                }
            }
            Step::Create {
                stream,
                start,
                watch,
            } => {
                let s = usize::from(stream);
                let current = run.hub.current_revision();
                // start: ≤ 0 "now"; 1 the first revision (compacted, once compacted); 2..=6 from
                // two revisions back to two ahead.
                let start_revision = match start {
                    ..=0 => 0,
                    1 => 1,
                    _ => (current + i64::from(start) - 4).max(1),
                };
                let request = watch_request(watch, start_revision);
                let id = run
                    .hub
                    .create(run.streams[s], request.clone())
                    .expect("create");
                let from = if start_revision <= 0 {
                    current + 1
                } else {
                    start_revision
                };
                run.seen.insert(
                    (s, id),
                    Seen {
                        create: request,
                        from,
                        events: Vec::new(),
                        last_rev: 0,
                        canceled: false,
                        compact_revision: 0,
                        created: false,
                    },
                );
            }
            Step::Cancel { stream, nth } => {
                let s = usize::from(stream);
                run.drain(s)?;
                let live: Vec<i64> = run
                    .seen
                    .iter()
                    .filter(|(k, v)| k.0 == s && !v.canceled)
                    .map(|(k, _)| k.1)
                    .collect();
                if !live.is_empty() {
                    let id = live[usize::from(nth) % live.len()];
                    run.hub.cancel(run.streams[s], id).expect("cancel");
                    run.drain(s)?;
                }
            }
            Step::Drain(s) => run.drain(usize::from(s))?,
            Step::Tick => run.hub.progress_tick(),
            Step::Restore(txns) => {
                let events = write_unpublished(&run.store, &txns);
                for e in &events {
                    if e.r#type == DELETE {
                        run.delete_revisions.push(rev(e));
                    }
                }
                run.model.record(&events);
                run.hub.restore(run.store.current_revision());
            }
            Step::Poll => {
                run.hub.poll(&run.store).expect("poll");
            }
            Step::PollStream(s) => {
                run.hub
                    .poll_stream(&run.store, run.streams[usize::from(s)])
                    .expect("poll stream");
            }
            Step::Progress(s) => run
                .hub
                .request_progress(run.streams[usize::from(s)])
                .expect("progress"),
        }
        // Bounded: each stream holds at most its limit plus one batch (≤ 4 events here).
        let bound = run.streams.len() * (limits.max_stream_buffer_events + 4);
        prop_assert!(
            run.hub.stats().buffered_events <= bound,
            "buffers over {}",
            bound
        );
    }
    // Let everyone catch up: reliable means a watcher not canceled ends with every event.
    for _ in 0..10_000 {
        let behind = run.hub.poll(&run.store).expect("poll");
        for s in 0..run.streams.len() {
            run.drain(s)?;
        }
        if !behind && run.hub.stats().unsynced_watchers == 0 {
            break;
        }
    }
    prop_assert_eq!(
        run.hub.stats().unsynced_watchers,
        0,
        "catch-up never finished"
    );
    prop_assert_eq!(run.hub.stats().buffered_events, 0);
    let current = run.hub.current_revision();
    let compacted = run.store.compacted_revision();
    for (&(s, id), seen) in &run.seen {
        let expected = run.model.expected(seen);
        let upto = if seen.canceled {
            seen.last_rev
        } else {
            current
        };
        let want: Vec<_> = expected
            .iter()
            .filter(|e| rev(e) <= upto)
            .cloned()
            .collect();
        // prev_kv may be absent where its revision was compacted away, as in etcd.
        let got: Vec<_> = seen
            .events
            .iter()
            .zip(want.iter())
            .map(|(g, w)| {
                if g.prev_kv.is_none() && rev(w) - 1 < compacted {
                    Event {
                        prev_kv: None,
                        ..w.clone()
                    }
                } else {
                    w.clone()
                }
            })
            .collect();
        prop_assert_eq!(
            &seen.events,
            &got,
            "watcher {} on stream {} got wrong events",
            id,
            s
        );
        prop_assert_eq!(
            seen.events.len(),
            want.len(),
            "watcher {} on stream {} missed events",
            id,
            s
        );
        if seen.compact_revision != 0 {
            prop_assert!(seen.compact_revision > seen.last_rev.max(seen.from - 1));
        }
        // Resumable: a new watcher from a delivered revision + 1 gets exactly the rest.
        let cut = seen
            .events
            .get(seen.events.len() / 2)
            .map_or(seen.from - 1, rev);
        let resume_from = (cut + 1).max(seen.from);
        if !seen.canceled && resume_from >= compacted {
            let mut hub = WatchHub::new(limits, current);
            let stream = hub.open_stream();
            let request = WatchCreate {
                start_revision: resume_from,
                ..seen.create.clone()
            };
            hub.create(stream, request).expect("create");
            let mut rest = Vec::new();
            while hub.poll(&run.store).expect("poll") || hub.stats().unsynced_watchers > 0 {
                rest.extend(hub.drain(stream).expect("drain"));
            }
            rest.extend(hub.drain(stream).expect("drain"));
            let strip = |e: &Event| (e.r#type, e.kv.clone());
            let rest: Vec<_> = rest
                .iter()
                .flat_map(|r| r.events.iter().map(strip))
                .collect();
            let want: Vec<_> = seen
                .events
                .iter()
                .filter(|e| rev(e) >= resume_from)
                .map(strip)
                .collect();
            prop_assert_eq!(rest, want, "resume of watcher {} from {}", id, resume_from);
        }
    }
    Ok(())
}

fn cases() -> u32 {
    std::env::var("CAIRN_WATCH_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn watchers_get_every_event_once_in_order_under_stalls_and_compaction(
        steps in prop::collection::vec(step(), 1..80),
        buffer in 1usize..6,
        chunk in 1usize..4,
    ) {
        let limits = WatchLimits { max_stream_buffer_events: buffer, catch_up_chunk_events: chunk };
        run_model(steps, limits)?;
    }
}
