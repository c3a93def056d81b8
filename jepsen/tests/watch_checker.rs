//! The watch checker against hand-made histories: one valid history, then that history with
//! one thing broken per guarantee (ordered, unique, atomic, reliable, resumable,
//! bookmarkable), a delivered event that differs from the reference, and a reference that
//! disagrees with the writers.
//!
//! The writes behind every history (revision 1 is the run's readiness probe, not `w/`):
//! r2 put w/a=1-1; r3 Txn w/b=2-1, w/c=2-2; r4 put w/a=1-2; r5 delete w/b; r6 put w/c=1-3
//! (indeterminate, applied); an indeterminate put of w/d that never applied; an acknowledged
//! delete of w/d at r6 that found nothing.

use cairn_jepsen::watch_check::{check, parse, AnomalyKind, WatchVerdict};
use serde_json::{json, Value};

fn put_event(key: &str, value: &str, revision: i64, created: i64, version: i64) -> Value {
    json!({"type": "put", "key": key, "value": value, "mod_revision": revision,
        "create_revision": created, "version": version})
}

fn delete_event(key: &str, revision: i64) -> Value {
    json!({"type": "delete", "key": key, "value": "", "mod_revision": revision,
        "create_revision": 0, "version": 0})
}

/// The reference's events of one revision.
fn rev(revision: i64) -> Vec<Value> {
    match revision {
        2 => vec![put_event("w/a", "1-1", 2, 2, 1)],
        3 => vec![
            put_event("w/b", "2-1", 3, 3, 1),
            put_event("w/c", "2-2", 3, 3, 1),
        ],
        4 => vec![put_event("w/a", "1-2", 4, 2, 2)],
        5 => vec![delete_event("w/b", 5)],
        6 => vec![put_event("w/c", "1-3", 6, 3, 2)],
        _ => vec![],
    }
}

fn revs(revisions: &[i64]) -> Vec<Value> {
    revisions.iter().flat_map(|&r| rev(r)).collect()
}

fn line(value: Value) -> String {
    value.to_string() + "\n"
}

fn write(
    client: u64,
    call: u64,
    revision: Option<i64>,
    ops: Value,
    deleted: Option<i64>,
) -> String {
    let ok = revision.is_some();
    let ret = revision.map(|_| call + 5);
    line(
        json!({"kind": "write", "client": client, "call": call, "return": ret, "ok": ok,
        "revision": revision, "ops": ops, "deleted": deleted}),
    )
}

fn put(key: &str, value: &str) -> Value {
    json!({"op": "put", "key": key, "value": value})
}

fn writes() -> String {
    write(1, 10, Some(2), json!([put("w/a", "1-1")]), None)
        + &write(
            2,
            11,
            Some(3),
            json!([put("w/b", "2-1"), put("w/c", "2-2")]),
            None,
        )
        + &write(1, 20, Some(4), json!([put("w/a", "1-2")]), None)
        + &write(
            2,
            21,
            Some(5),
            json!([{"op": "delete", "key": "w/b"}]),
            Some(1),
        )
        + &write(1, 30, None, json!([put("w/c", "1-3")]), None)
        + &write(2, 31, None, json!([put("w/d", "2-3")]), None)
        + &write(
            1,
            40,
            Some(6),
            json!([{"op": "delete", "key": "w/d"}]),
            Some(0),
        )
}

fn key_state(key: &str, value: &str, revision: i64, created: i64, version: i64) -> Value {
    json!({"key": key, "value": value, "mod_revision": revision, "create_revision": created,
        "version": version})
}

/// The final read and the reference watch, the read holding `kvs`.
fn reference_with(kvs: Value) -> String {
    let mut text = line(json!({"kind": "final_state", "node": 0, "revision": 6, "kvs": kvs}));
    // Catch-up responses hold several whole revisions.
    text +=
        &line(json!({"kind": "reference", "node": 0, "revision": 6, "events": revs(&[2, 3, 4])}));
    text += &line(json!({"kind": "reference", "node": 0, "revision": 6, "events": revs(&[5, 6])}));
    text + &line(json!({"kind": "reference_end", "node": 0, "revision": 6}))
}

fn reference() -> String {
    reference_with(json!([
        key_state("w/a", "1-2", 4, 2, 2),
        key_state("w/c", "1-3", 6, 3, 2)
    ]))
}

/// One watcher session, writing its lines.
struct Session {
    watcher: u64,
    number: u64,
    start: i64,
    resumed: bool,
}

impl Session {
    fn new(watcher: u64, number: u64, start: i64, resumed: bool) -> Session {
        Session {
            watcher,
            number,
            start,
            resumed,
        }
    }

    fn response(&self, revision: i64, fields: Value) -> String {
        let mut value = json!({"kind": "response", "watcher": self.watcher, "session": self.number,
            "start": self.start, "resumed": self.resumed, "node": 1, "at": 100, "revision": revision,
            "created": false, "canceled": false, "compact_revision": 0, "progress": false, "events": []});
        if let (Some(base), Some(extra)) = (value.as_object_mut(), fields.as_object()) {
            base.extend(extra.clone());
        }
        line(value)
    }

    fn created(&self) -> String {
        self.response(6, json!({"created": true}))
    }

    fn events(&self, events: Vec<Value>) -> String {
        self.response(6, json!({"events": events}))
    }

    fn progress(&self, revision: i64) -> String {
        self.response(revision, json!({"progress": true}))
    }

    fn end(&self, interrupted: bool) -> String {
        line(
            json!({"kind": "end", "watcher": self.watcher, "session": self.number,
            "start": self.start, "resumed": self.resumed, "node": 1, "at": 200,
            "interrupted": interrupted, "reason": if interrupted { "idle" } else { "done" }}),
        )
    }
}

/// Sessions that saw everything they should: one interrupted and resumed, one from r3.
fn valid_sessions() -> String {
    let first = Session::new(1, 1, 1, false);
    let resumed = Session::new(1, 2, 5, true);
    let other = Session::new(2, 1, 3, false);
    first.created()
        + &first.events(rev(2))
        + &first.events(rev(3))
        + &first.progress(3)
        + &first.events(rev(4))
        + &first.end(true)
        + &resumed.created()
        + &resumed.events(revs(&[5, 6]))
        + &resumed.progress(6)
        + &resumed.end(false)
        + &other.created()
        + &other.events(revs(&[3, 4, 5, 6]))
        + &other.end(false)
}

fn verdict(text: &str) -> WatchVerdict {
    check(&parse(text).expect("history parses"))
}

fn anomalies(text: &str) -> Vec<AnomalyKind> {
    let verdict = verdict(text);
    verdict.anomalies.keys().copied().collect()
}

#[test]
fn sessions_that_saw_everything_in_order_are_valid() {
    let text = writes() + &reference() + &valid_sessions();
    let verdict = verdict(&text);
    assert!(verdict.valid(), "{:?}", verdict.explain());
    assert_eq!(verdict.no_reference, None);
    assert_eq!(verdict.sessions, 3);
    assert_eq!(verdict.resumed_sessions, 1);
    assert_eq!(verdict.progress_notifications, 2);
    assert_eq!(verdict.events_delivered, 11);
    assert_eq!(verdict.reference_events, 6);
}

#[test]
fn watch_events_are_never_duplicated() {
    let s = Session::new(1, 1, 2, false);
    let text = writes() + &reference() + &s.events(rev(2)) + &s.events(rev(2)) + &s.events(rev(3));
    assert_eq!(anomalies(&text), [AnomalyKind::Unique]);
    let verdict = verdict(&text);
    let why = verdict.explain().unwrap_or_default();
    assert!(
        why.contains("watcher 1 session 1") && why.contains("w/a=1-1"),
        "{why}"
    );
}

#[test]
fn a_missing_event_breaks_reliability() {
    let s = Session::new(1, 1, 2, false);
    let text = writes() + &reference() + &s.events(rev(2)) + &s.events(rev(4));
    assert_eq!(anomalies(&text), [AnomalyKind::Reliable]);
    let why = verdict(&text).explain().unwrap_or_default();
    assert!(why.contains("w/b=2-1 at revision 3"), "{why}");
}

#[test]
fn the_head_of_a_session_is_never_skipped() {
    // Asked for r2, got r3 first.
    let s = Session::new(1, 1, 2, false);
    let text = writes() + &reference() + &s.events(rev(3));
    assert_eq!(anomalies(&text), [AnomalyKind::Reliable]);
}

#[test]
fn reordered_events_break_ordering() {
    let s = Session::new(1, 1, 2, false);
    let text = writes() + &reference() + &s.events(rev(2)) + &s.events(rev(4)) + &s.events(rev(3));
    assert_eq!(anomalies(&text), [AnomalyKind::Ordered]);
}

#[test]
fn events_of_one_revision_keep_the_reference_order() {
    let s = Session::new(1, 1, 3, false);
    let mut swapped = rev(3);
    swapped.reverse();
    let text = writes() + &reference() + &s.events(swapped);
    assert_eq!(anomalies(&text), [AnomalyKind::Ordered]);
}

#[test]
fn a_revision_split_across_responses_breaks_atomicity() {
    let s = Session::new(1, 1, 3, false);
    let [b, c] = <[Value; 2]>::try_from(rev(3)).expect("revision 3 has two events");
    let text = writes() + &reference() + &s.events(vec![b]) + &s.events(vec![c]);
    assert_eq!(anomalies(&text), [AnomalyKind::Atomic]);
}

#[test]
fn a_revision_delivered_in_part_breaks_atomicity() {
    let s = Session::new(1, 1, 3, false);
    let text = writes() + &reference() + &s.events(rev(3)[..1].to_vec()) + &s.events(rev(4));
    assert_eq!(anomalies(&text), [AnomalyKind::Atomic]);
}

#[test]
fn a_resumed_session_that_skips_a_revision_breaks_resumability() {
    let first = Session::new(1, 1, 2, false);
    let resumed = Session::new(1, 2, 4, true);
    let text = writes()
        + &reference()
        + &first.events(revs(&[2, 3]))
        + &first.end(true)
        + &resumed.events(revs(&[5, 6]));
    assert_eq!(anomalies(&text), [AnomalyKind::Resumable]);
    let why = verdict(&text).explain().unwrap_or_default();
    assert!(
        why.contains("watcher 1 session 2") && why.contains("revision 4"),
        "{why}"
    );
}

#[test]
fn a_resumed_session_starts_right_after_the_last_delivered_event() {
    let first = Session::new(1, 1, 2, false);
    // The previous session ended with r3: resuming at r5 leaves r4 to nobody.
    let resumed = Session::new(1, 2, 5, true);
    let text = writes()
        + &reference()
        + &first.events(revs(&[2, 3]))
        + &first.end(true)
        + &resumed.events(revs(&[5, 6]));
    assert_eq!(anomalies(&text), [AnomalyKind::Resumable]);
}

#[test]
fn an_older_event_after_a_progress_notification_breaks_bookmarks() {
    let s = Session::new(1, 1, 2, false);
    let text =
        writes() + &reference() + &s.events(revs(&[2, 3])) + &s.progress(4) + &s.events(rev(4));
    assert_eq!(anomalies(&text), [AnomalyKind::Bookmarkable]);
    // Both halves: the notification came early, and r4 came after it.
    assert_eq!(verdict(&text).anomalies[&AnomalyKind::Bookmarkable].0, 2);
}

#[test]
fn a_progress_notification_before_the_events_it_covers_breaks_bookmarks() {
    let s = Session::new(1, 1, 2, false);
    let text = writes() + &reference() + &s.progress(6);
    assert_eq!(anomalies(&text), [AnomalyKind::Bookmarkable]);
}

#[test]
fn a_session_canceled_for_compaction_keeps_what_it_delivered() {
    let s = Session::new(1, 1, 2, false);
    let text = writes()
        + &reference()
        + &s.events(rev(2))
        + &s.response(6, json!({"canceled": true, "compact_revision": 4}))
        + &s.end(false);
    assert!(anomalies(&text).is_empty(), "{:?}", anomalies(&text));
}

#[test]
fn a_delivered_event_must_equal_the_reference() {
    let s = Session::new(1, 1, 4, false);
    let text = writes() + &reference() + &s.events(vec![put_event("w/a", "1-9", 4, 2, 2)]);
    assert_eq!(anomalies(&text), [AnomalyKind::Mismatch]);
    let why = verdict(&text).explain().unwrap_or_default();
    assert!(why.contains("w/a=1-9") && why.contains("w/a=1-2"), "{why}");
}

#[test]
fn an_acknowledged_write_missing_from_the_reference_is_lost() {
    let text = writes()
        + &write(2, 50, Some(7), json!([put("w/e", "2-9")]), None)
        + &reference()
        + &valid_sessions();
    assert_eq!(anomalies(&text), [AnomalyKind::LostWrite]);
    let why = verdict(&text).explain().unwrap_or_default();
    assert!(
        why.contains("w/e=2-9") && why.contains("revision 7"),
        "{why}"
    );
}

#[test]
fn an_acknowledged_delete_that_found_nothing_must_find_nothing_in_the_reference() {
    // w/a exists at r6.
    let text = writes()
        + &write(
            1,
            50,
            Some(6),
            json!([{"op": "delete", "key": "w/a"}]),
            Some(0),
        )
        + &reference();
    assert_eq!(anomalies(&text), [AnomalyKind::LostWrite]);
}

#[test]
fn a_reference_event_nobody_wrote_is_a_phantom() {
    // Without the write of w/c=1-3, revision 6 comes from nowhere.
    let text: String = writes()
        .lines()
        .filter(|line| !line.contains("1-3"))
        .map(|line| line.to_string() + "\n")
        .collect();
    let text = text + &reference();
    assert_eq!(anomalies(&text), [AnomalyKind::PhantomWrite]);
}

#[test]
fn an_indeterminate_txn_applies_whole_or_not_at_all() {
    let text = writes()
        + &write(
            2,
            50,
            None,
            json!([put("w/e", "2-8"), put("w/f", "2-9")]),
            None,
        )
        + &line(
            json!({"kind": "reference", "node": 0, "revision": 7, "events": revs(&[2, 3, 4, 5, 6])}),
        )
        + &line(json!({"kind": "reference", "node": 0, "revision": 7,
            "events": [put_event("w/e", "2-8", 7, 7, 1)]}))
        + &line(json!({"kind": "reference_end", "node": 0, "revision": 7}));
    assert_eq!(anomalies(&text), [AnomalyKind::TornWrite]);
}

#[test]
fn the_reference_must_agree_with_the_final_read() {
    // The read says w/c last changed at r5; the reference has it at r6.
    let text = writes()
        + &reference_with(json!([
            key_state("w/a", "1-2", 4, 2, 2),
            key_state("w/c", "1-3", 5, 3, 2)
        ]));
    assert_eq!(anomalies(&text), [AnomalyKind::ReferenceInconsistent]);
}

#[test]
fn without_a_reference_the_sessions_are_judged_on_what_they_show() {
    let s = Session::new(1, 1, 2, false);
    let text = writes()
        + &line(json!({"kind": "reference_failed", "node": 2, "reason": "idle for 3s"}))
        + &s.events(rev(2))
        + &s.events(rev(2));
    let verdict = verdict(&text);
    assert!(verdict
        .no_reference
        .as_deref()
        .is_some_and(|why| why.contains("idle for 3s")));
    assert_eq!(
        verdict.anomalies.keys().copied().collect::<Vec<_>>(),
        [AnomalyKind::Unique]
    );
}

#[test]
fn parse_errors_name_the_line() {
    let text = writes() + "{\"kind\":\"response\",\"watcher\":1}\n";
    let err = parse(&text).expect_err("a response without its session");
    assert!(err.to_string().starts_with("line 8:"), "{err}");

    let s = Session::new(1, 1, 2, false);
    let text = s.events(rev(2)) + &s.end(false) + &s.events(rev(3));
    let err = parse(&text).expect_err("a response after its session ended");
    assert!(err.to_string().starts_with("line 3:"), "{err}");

    let text = writes() + &write(3, 60, Some(9), json!([put("w/a", "1-1")]), None);
    let err = parse(&text).expect_err("a value written twice");
    assert!(err.to_string().starts_with("line 8:"), "{err}");
}
