//! The hub against a model: the full history of events, kept in memory, and what every
//! watcher should therefore have received. Replay a failure with `PROPTEST_SEED`-free
//! determinism: proptest prints the minimal failing `steps`, and `CAIRN_WATCH_CASES` sets the
//! number of cases (default 64).

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::hub::STREAM_WATCH_ID;
use super::*;
use crate::mvcc::{KeyRange, MemBackend, MvccStore};
use crate::proto::etcdserverpb::WatchResponse;
use crate::proto::mvccpb::{event::EventType, Event, KeyValue};

const PUT: i32 = EventType::Put as i32;
const DELETE: i32 = EventType::Delete as i32;

fn key(k: u8) -> Vec<u8> {
    vec![b'a' + k % 6]
}

fn store() -> MvccStore<MemBackend> {
    MvccStore::open(MemBackend::default()).expect("open")
}

/// Commits `txns` (each a list of puts and deletes by key letter) as one batch and publishes
/// it.
fn write(
    store: &MvccStore<MemBackend>,
    hub: &mut WatchHub,
    txns: &[Vec<(u8, Option<u8>)>],
) -> Vec<Event> {
    let committed = commit(store, txns);
    hub.publish(store, committed.revision, &committed.events)
        .expect("publish");
    committed.events
}

fn write_unpublished(store: &MvccStore<MemBackend>, txns: &[Vec<(u8, Option<u8>)>]) -> Vec<Event> {
    commit(store, txns).events
}

fn commit(store: &MvccStore<MemBackend>, txns: &[Vec<(u8, Option<u8>)>]) -> crate::mvcc::Committed {
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

fn watch_all(start_revision: i64) -> WatchCreate {
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

fn revisions(responses: &[WatchResponse]) -> Vec<Vec<i64>> {
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

#[test]
fn created_response_comes_first_with_an_assigned_id() {
    let store = store();
    let mut hub = WatchHub::new(WatchLimits::default(), store.current_revision());
    let stream = hub.open_stream();
    let first = hub.create(stream, watch_all(0)).expect("create");
    let second = hub.create(stream, watch_all(0)).expect("create");
    assert_eq!((first, second), (0, 1));
    let chosen = WatchCreate {
        watch_id: 7,
        ..watch_all(0)
    };
    assert_eq!(hub.create(stream, chosen.clone()).expect("create"), 7);
    hub.create(stream, chosen)
        .expect("duplicate answered in-band");
    let out = hub.drain(stream).expect("drain");
    let flags: Vec<_> = out
        .iter()
        .map(|r| (r.watch_id, r.created, r.canceled))
        .collect();
    assert_eq!(
        flags,
        vec![
            (0, true, false),
            (1, true, false),
            (7, true, false),
            (7, true, true)
        ]
    );
}

#[test]
fn a_watch_below_the_compacted_revision_is_canceled_with_compact_revision() {
    let store = store();
    let mut hub = WatchHub::new(WatchLimits::default(), store.current_revision());
    for v in 0..4 {
        write(&store, &mut hub, &[vec![(0, Some(v))]]); // revisions 2..=5
    }
    store.compact(4, None).expect("compact");
    let stream = hub.open_stream();
    let below = hub.create(stream, watch_all(3)).expect("create");
    let at = hub.create(stream, watch_all(4)).expect("create");
    assert!(!hub.poll(&store).expect("poll"));
    let out = hub.drain(stream).expect("drain");
    let canceled: Vec<_> = out.iter().filter(|r| r.canceled).collect();
    assert_eq!(canceled.len(), 1);
    assert_eq!(
        (canceled[0].watch_id, canceled[0].compact_revision),
        (below, 4)
    );
    // etcd serves a watch from the compacted revision itself.
    let served: Vec<_> = out.iter().filter(|r| r.watch_id == at).collect();
    assert_eq!(
        revisions(&served.into_iter().cloned().collect::<Vec<_>>()),
        vec![vec![], vec![4, 5]]
    );
}

#[test]
fn a_future_start_revision_waits_and_never_sends_older_events() {
    let store = store();
    let mut hub = WatchHub::new(WatchLimits::default(), store.current_revision());
    let stream = hub.open_stream();
    let id = hub.create(stream, watch_all(4)).expect("create");
    write(&store, &mut hub, &[vec![(0, Some(0))], vec![(1, Some(0))]]); // 2, 3
    assert!(hub
        .drain(stream)
        .expect("drain")
        .iter()
        .all(|r| r.events.is_empty()));
    write(
        &store,
        &mut hub,
        &[vec![(0, Some(1)), (1, Some(1))], vec![(2, Some(0))]],
    ); // 4, 5
    let out = hub.drain(stream).expect("drain");
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].watch_id, id);
    assert_eq!(revisions(&out), vec![vec![4, 4, 5]]);
}

#[test]
fn cancel_is_answered_after_what_was_already_queued() {
    let store = store();
    let mut hub = WatchHub::new(WatchLimits::default(), store.current_revision());
    let stream = hub.open_stream();
    let id = hub.create(stream, watch_all(0)).expect("create");
    write(&store, &mut hub, &[vec![(0, Some(0))]]);
    hub.cancel(stream, id).expect("cancel");
    assert!(matches!(
        hub.cancel(stream, id),
        Err(WatchError::UnknownWatch(_))
    ));
    write(&store, &mut hub, &[vec![(0, Some(1))]]);
    let out = hub.drain(stream).expect("drain");
    let kinds: Vec<_> = out
        .iter()
        .map(|r| (r.created, r.canceled, r.events.len()))
        .collect();
    assert_eq!(
        kinds,
        vec![(true, false, 0), (false, false, 1), (false, true, 0)]
    );
}

#[test]
fn progress_waits_until_the_stream_has_caught_up() {
    let store = store();
    let limits = WatchLimits {
        max_stream_buffer_events: 2,
        catch_up_chunk_events: 1,
    };
    let mut hub = WatchHub::new(limits, store.current_revision());
    for v in 0..5 {
        write(&store, &mut hub, &[vec![(0, Some(v))]]); // 2..=6
    }
    let stream = hub.open_stream();
    hub.create(stream, watch_all(2)).expect("create");
    hub.request_progress(stream).expect("progress");
    let mut seen = Vec::new();
    for _ in 0..10 {
        hub.poll(&store).expect("poll");
        seen.extend(hub.drain(stream).expect("drain"));
    }
    let progress = seen
        .iter()
        .position(|r| r.watch_id == STREAM_WATCH_ID)
        .expect("progress answered");
    let last_event = seen
        .iter()
        .rposition(|r| !r.events.is_empty())
        .expect("events");
    assert!(last_event < progress);
    assert_eq!(seen[progress].header.as_ref().map(|h| h.revision), Some(6));
}

#[test]
fn a_slow_stream_falls_back_to_storage_and_rejoins_without_gaps() {
    let store = store();
    let limits = WatchLimits {
        max_stream_buffer_events: 3,
        catch_up_chunk_events: 2,
    };
    let mut hub = WatchHub::new(limits, store.current_revision());
    let slow = hub.open_stream();
    let fast = hub.open_stream();
    hub.create(slow, watch_all(0)).expect("create");
    hub.create(fast, watch_all(0)).expect("create");
    let mut fast_seen = Vec::new();
    for v in 0..10 {
        write(&store, &mut hub, &[vec![(v % 3, Some(v))]]); // 2..=11
        fast_seen.extend(hub.drain(fast).expect("drain"));
    }
    assert!(hub.stats().unsynced_watchers == 1 && hub.stats().slow_fallbacks_total == 1);
    let mut slow_seen = Vec::new();
    while hub.poll(&store).expect("poll") || hub.stats().unsynced_watchers > 0 {
        slow_seen.extend(hub.drain(slow).expect("drain"));
    }
    write(&store, &mut hub, &[vec![(0, Some(99))]]); // 12
    slow_seen.extend(hub.drain(slow).expect("drain"));
    fast_seen.extend(hub.drain(fast).expect("drain"));
    let flat = |r: &[WatchResponse]| revisions(r).concat();
    let expected: Vec<i64> = (2..=12).collect();
    assert_eq!(flat(&slow_seen), expected);
    assert_eq!(flat(&fast_seen), expected);
}

#[test]
fn progress_notify_ticks_only_idle_synced_watchers() {
    let store = store();
    let mut hub = WatchHub::new(WatchLimits::default(), store.current_revision());
    let stream = hub.open_stream();
    let notify = WatchCreate {
        progress_notify: true,
        ..watch_all(0)
    };
    let idle = hub.create(stream, notify.clone()).expect("create");
    let busy = hub
        .create(
            stream,
            WatchCreate {
                range: KeyRange::Single(key(0)),
                ..notify
            },
        )
        .expect("create");
    let quiet = hub.create(stream, watch_all(0)).expect("create");
    hub.drain(stream).expect("drain");
    hub.progress_tick();
    write(&store, &mut hub, &[vec![(0, Some(1))]]); // 2: both notify watchers see it
    hub.progress_tick();
    write(&store, &mut hub, &[vec![(1, Some(1))]]); // 3: only `idle` and `quiet` see it
    hub.progress_tick();
    let ticks: Vec<(i64, i64)> = hub
        .drain(stream)
        .expect("drain")
        .iter()
        .filter(|r| r.events.is_empty())
        .map(|r| (r.watch_id, r.header.as_ref().map_or(0, |h| h.revision)))
        .collect();
    assert_eq!(ticks, vec![(idle, 1), (busy, 1), (busy, 3)]);
    assert!(ticks.iter().all(|(id, _)| *id != quiet));
}

#[test]
fn ten_thousand_watchers_on_one_key_and_one_on_ten_thousand_keys_lose_no_event() {
    let store = store();
    let limits = WatchLimits {
        max_stream_buffer_events: 64,
        catch_up_chunk_events: 16,
    };
    let mut hub = WatchHub::new(limits, store.current_revision());
    let streams: Vec<StreamId> = (0..100).map(|_| hub.open_stream()).collect();
    for &stream in &streams {
        for _ in 0..100 {
            let one_key = WatchCreate {
                range: KeyRange::Single(b"hot".to_vec()),
                prev_kv: true,
                ..watch_all(0)
            };
            hub.create(stream, one_key).expect("create");
        }
    }
    let wide = hub.open_stream();
    hub.create(wide, watch_all(0)).expect("create");
    let mut delivered: BTreeMap<(StreamId, i64), Vec<i64>> = BTreeMap::new();
    let mut collect = |hub: &mut WatchHub, stream: StreamId| {
        for response in hub.drain(stream).expect("drain") {
            let entry = delivered.entry((stream, response.watch_id)).or_default();
            for event in &response.events {
                let kv = event.kv.as_ref().expect("kv");
                if stream != wide && kv.mod_revision > 3 {
                    let prev = event
                        .prev_kv
                        .as_ref()
                        .unwrap_or_else(|| panic!("prev_kv of {event:?} in {response:?}"));
                    assert_eq!(prev.mod_revision, kv.mod_revision - 1);
                }
                entry.push(kv.mod_revision);
            }
        }
    };
    let mut batch = store.write().expect("write");
    for i in 0..10_000u32 {
        batch
            .put(format!("k{i:05}").as_bytes(), b"v", 0)
            .expect("put");
    }
    let committed = batch.commit().expect("commit"); // revision 2, 10,000 events
    hub.publish(&store, committed.revision, &committed.events)
        .expect("publish");
    for round in 0..20u8 {
        let mut batch = store.write().expect("write");
        batch.put(b"hot", &[round], 0).expect("put");
        let committed = batch.commit().expect("commit");
        hub.publish(&store, committed.revision, &committed.events)
            .expect("publish");
        hub.poll(&store).expect("poll");
        // Drain only half of the streams each round: the others stall and fall behind.
        for (i, &stream) in streams.iter().enumerate() {
            if (i + usize::from(round)) % 2 == 0 {
                collect(&mut hub, stream);
            }
        }
    }
    collect(&mut hub, wide);
    while hub.poll(&store).expect("poll") || hub.stats().unsynced_watchers > 0 {
        for &stream in streams.iter().chain([&wide]) {
            collect(&mut hub, stream);
        }
    }
    for &stream in streams.iter().chain([&wide]) {
        collect(&mut hub, stream);
    }
    // Revision 2 made the 10,000 keys; "hot" is written at 3..=22.
    let hot: Vec<i64> = (0..20).map(|round| 3 + round).collect();
    assert_eq!(delivered.len(), 100 * 100 + 1);
    for ((stream, _), revisions) in &delivered {
        if *stream == wide {
            assert_eq!(revisions.len(), 10_000 + 20);
            assert!(revisions.windows(2).all(|w| w[0] <= w[1]));
        } else {
            assert_eq!(revisions, &hot);
        }
    }
    assert!(
        hub.stats().slow_fallbacks_total > 0,
        "the stalls never forced a catch-up"
    );
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
