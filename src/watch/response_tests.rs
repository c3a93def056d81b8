//! etcd's watch responses, case by case: created, canceled (by request and by compaction),
//! future start revisions, progress, slow streams, and many watchers.

use std::collections::BTreeMap;

use super::hub::STREAM_WATCH_ID;
use super::model_tests::{key, revisions, store, watch_all, write};
use super::*;
use crate::mvcc::KeyRange;
use crate::proto::etcdserverpb::WatchResponse;

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
fn a_watch_starts_after_a_revision_its_client_was_told_of_before_the_hub_saw_it() {
    let store = store();
    let mut hub = WatchHub::new(WatchLimits::default(), store.current_revision());
    let stream = hub.open_stream();
    // The writer of revision 2 was answered before its batch reached the hub.
    let seen = store.current_revision() + 1;
    let id = hub.create_seen(stream, watch_all(0), seen).expect("create");
    let created = hub.drain(stream).expect("drain");
    assert_eq!(created.len(), 1);
    let header = created[0].header.as_ref().expect("header");
    assert_eq!(header.revision, seen, "the header must not go back");
    write(&store, &mut hub, &[vec![(0, Some(0))], vec![(1, Some(0))]]); // 2, 3
    let out = hub.drain(stream).expect("drain");
    assert!(out.iter().all(|r| r.watch_id == id));
    assert_eq!(revisions(&out), vec![vec![3]]);
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
