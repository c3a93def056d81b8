//! The watch workload's history format and its checker (the clients are [`crate::watch`]).
//!
//! # History
//!
//! JSON lines, one object each, told apart by `kind`. Times are nanoseconds since the run
//! began; revisions are etcd's.
//!
//! | `kind` | written | other fields |
//! |---|---|---|
//! | `write` | once per write | `client`, `call`, `return` (null: indeterminate), `ok`, `revision` (the response header's, when ok), `ops`, `deleted` (a delete's count, when ok) |
//! | `response` | once per watch response | `watcher`, `session`, `start`, `resumed`, `node`, `at`, `revision` (the header's), `created`, `canceled`, `compact_revision`, `progress`, `events` |
//! | `end` | once per session | `watcher`, `session`, `start`, `resumed`, `node`, `at`, `interrupted`, `reason` |
//! | `final_state` | once, after the run | `node`, `revision`, `kvs` (every key of the prefix, read at `revision`) |
//! | `reference` | per response of the reference watch | `node`, `revision`, `events` |
//! | `reference_end` | once the reference is complete | `node`, `revision`: every event up to here is in the reference |
//! | `reference_failed` | per failed attempt at the reference | `node`, `reason` |
//!
//! A write's `ops` are `{"op":"put","key":…,"value":…}` or `{"op":"delete","key":…}`; several
//! puts are one Txn (one revision); a delete is a write of its own. Put values are unique in the run, so a value names the
//! write that made it. An event is `{"type":"put"|"delete","key","value","mod_revision",
//! "create_revision","version"}`, as etcd's `mvccpb.Event` holds it; `kvs` entries have the
//! same fields but `type`. A session is a watcher's one Watch stream, numbered from 1 per
//! watcher; `start` is the revision it asked to start at and `resumed` says it continued the
//! previous session after that one broke (or was cut short). A response is a progress
//! notification when it holds no events and is neither `created` nor `canceled` (etcd's
//! definition, which the checker applies; the `progress` field says the same for readers).
//!
//! # Checks
//!
//! The reference is the whole event history of the prefix, read after the faults by one watch
//! from revision 1. Watch is not trusted to judge watch: the reference itself must agree with
//! the writers and with a final read of the keys before any session is judged by it.
//!
//! Each session, against etcd's watch guarantees:
//! - ordered: event revisions never decrease, and the events of one revision come in the
//!   reference's order;
//! - unique: no event (revision, key) is delivered twice;
//! - atomic: a revision's events come in one response, all of them;
//! - reliable: every delivered event equals the reference's (`mismatch` otherwise), and no
//!   reference revision between the session's first and last delivered events is missing, nor
//!   one between its start and its first event, and no event is below its start;
//! - resumable: a resumed session starts right after the last event its previous session
//!   delivered (or where that one started, if it delivered nothing), and misses nothing between
//!   its start and its first event nor delivers below its start (for a session that is not
//!   resumed those are `reliable`'s);
//! - bookmarkable: a progress notification at revision R comes after every reference event
//!   from the session's start up to R, and no later event of the session is at R or below.
//!
//! The reference, against the writers:
//! - `lost-write`: an acknowledged write is not in the reference as acknowledged (missing, at
//!   another revision, or a delete that found nothing while the reference holds the key);
//! - `phantom-write`: a reference event no write attempted (or one applied twice);
//! - `torn-write`: an indeterminate Txn applied in part, or across revisions;
//! - `reference-inconsistent`: the reference is no history (revisions out of order, a
//!   revision holding several writes, versions that do not count up, a final read that
//!   disagrees with it).
//!
//! Indeterminate writes may be absent; a write reported failed counts as indeterminate.
//! Sessions canceled for compaction are checked up to the cancel.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum WatchHistoryError {
    #[error("line {line}: {reason}")]
    Line { line: usize, reason: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    Put,
    Delete,
}

/// One change of one key, as a watch delivers it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Event {
    #[serde(rename = "type")]
    pub kind: EventType,
    pub key: String,
    #[serde(default)]
    pub value: String,
    pub mod_revision: i64,
    #[serde(default)]
    pub create_revision: i64,
    #[serde(default)]
    pub version: i64,
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            EventType::Put => write!(
                f,
                "put {}={} at revision {} (created {}, version {})",
                self.key, self.value, self.mod_revision, self.create_revision, self.version
            ),
            EventType::Delete => write!(f, "delete {} at revision {}", self.key, self.mod_revision),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum WriteOp {
    Put { key: String, value: String },
    Delete { key: String },
}

/// A key as a range read returns it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct KeyState {
    pub key: String,
    pub value: String,
    pub mod_revision: i64,
    pub create_revision: i64,
    pub version: i64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Write {
    pub client: u64,
    pub call: u64,
    #[serde(rename = "return")]
    pub ret: Option<u64>,
    pub ok: bool,
    pub revision: Option<i64>,
    pub ops: Vec<WriteOp>,
    pub deleted: Option<i64>,
    #[serde(skip)]
    pub line: usize,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Response {
    pub at: u64,
    pub revision: i64,
    #[serde(default)]
    pub created: bool,
    #[serde(default)]
    pub canceled: bool,
    #[serde(default)]
    pub compact_revision: i64,
    pub events: Vec<Event>,
    #[serde(skip)]
    pub line: usize,
}

impl Response {
    /// etcd's definition of a progress notification: a response that carries only a revision.
    /// (The history's `progress` field says the same, for readers.)
    pub fn is_progress(&self) -> bool {
        self.events.is_empty() && !self.created && !self.canceled && self.compact_revision == 0
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct SessionEnd {
    pub at: u64,
    pub interrupted: bool,
    pub reason: String,
    #[serde(skip)]
    pub line: usize,
}

/// Who a session is: every line of it says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct SessionLabel {
    pub watcher: u64,
    #[serde(rename = "session")]
    pub number: u64,
    pub start: i64,
    pub resumed: bool,
    pub node: u64,
}

/// One Watch stream of one watcher, its responses in the order they arrived.
#[derive(Debug, Clone)]
pub struct Session {
    pub label: SessionLabel,
    pub responses: Vec<Response>,
    pub end: Option<SessionEnd>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ReferenceResponse {
    pub revision: i64,
    pub events: Vec<Event>,
    #[serde(skip)]
    pub line: usize,
}

/// The complete event history of the prefix up to `end_revision`.
#[derive(Debug, Clone)]
pub struct Reference {
    pub node: u64,
    pub responses: Vec<ReferenceResponse>,
    pub end_revision: i64,
    pub end_line: usize,
}

#[derive(Debug, Clone, Deserialize)]
pub struct FinalState {
    pub node: u64,
    pub revision: i64,
    pub kvs: Vec<KeyState>,
    #[serde(skip)]
    pub line: usize,
}

#[derive(Debug, Default)]
pub struct WatchHistory {
    pub writes: Vec<Write>,
    /// Ordered by watcher, then session number.
    pub sessions: Vec<Session>,
    /// None: no attempt at the reference completed.
    pub reference: Option<Reference>,
    pub final_state: Option<FinalState>,
    /// Why each failed attempt at the reference failed.
    pub reference_failures: Vec<String>,
}

/// A session's line: its label beside what the line says.
#[derive(Deserialize)]
struct SessionLine<T> {
    #[serde(flatten)]
    label: SessionLabel,
    #[serde(flatten)]
    body: T,
}

#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum RawLine {
    Write(Write),
    Response(SessionLine<Response>),
    End(SessionLine<SessionEnd>),
    FinalState(FinalState),
    Reference(ReferenceResponse),
    ReferenceEnd { node: u64, revision: i64 },
    ReferenceFailed { reason: String },
}

/// The session a line belongs to, created by its first line; later lines must agree on it.
fn session_of(
    sessions: &mut BTreeMap<(u64, u64), Session>,
    label: SessionLabel,
) -> Result<&mut Session, String> {
    let session = sessions
        .entry((label.watcher, label.number))
        .or_insert_with(|| Session {
            label,
            responses: Vec::new(),
            end: None,
        });
    if session.label != label {
        return Err(format!("the session began as {:?}", session.label));
    }
    if let Some(end) = &session.end {
        return Err(format!("the session already ended at line {}", end.line));
    }
    Ok(session)
}

/// What a write must say for the checker to judge it.
fn validate_write(write: &Write) -> Result<(), String> {
    if write.ops.is_empty() {
        return Err("a write needs at least one op".into());
    }
    if write.ok && (write.ret.is_none() || write.revision.is_none()) {
        return Err("an ok write needs its return and revision".into());
    }
    let deletes = write
        .ops
        .iter()
        .any(|op| matches!(op, WriteOp::Delete { .. }));
    if deletes && write.ops.len() > 1 {
        return Err("a delete is a write of its own".into());
    }
    if deletes && write.ok && write.deleted.is_none() {
        return Err("an ok delete needs its deleted count".into());
    }
    Ok(())
}

pub fn parse(text: &str) -> Result<WatchHistory, WatchHistoryError> {
    let mut history = WatchHistory::default();
    let mut sessions: BTreeMap<(u64, u64), Session> = BTreeMap::new();
    let mut reference_lines: Vec<ReferenceResponse> = Vec::new();
    // A value names the write that made it only if no other write used it.
    let mut put_values: HashMap<String, usize> = HashMap::new();
    for (index, text) in text.lines().enumerate() {
        let line = index + 1;
        if text.trim().is_empty() {
            continue;
        }
        let bad = |reason: String| WatchHistoryError::Line { line, reason };
        let raw: RawLine = serde_json::from_str(text).map_err(|err| bad(err.to_string()))?;
        match raw {
            RawLine::Write(write) => {
                validate_write(&write).map_err(bad)?;
                for op in &write.ops {
                    if let WriteOp::Put { value, .. } = op {
                        if let Some(first) = put_values.insert(value.clone(), line) {
                            return Err(bad(format!(
                                "value {value:?} was already written at line {first}; values \
                                 must be unique"
                            )));
                        }
                    }
                }
                history.writes.push(Write { line, ..write });
            }
            RawLine::Response(SessionLine { label, body }) => {
                let session = session_of(&mut sessions, label).map_err(bad)?;
                session.responses.push(Response { line, ..body });
            }
            RawLine::End(SessionLine { label, body }) => {
                session_of(&mut sessions, label).map_err(bad)?.end =
                    Some(SessionEnd { line, ..body });
            }
            RawLine::FinalState(state) if history.final_state.is_none() => {
                history.final_state = Some(FinalState { line, ..state });
            }
            RawLine::Reference(response) if history.reference.is_none() => {
                reference_lines.push(ReferenceResponse { line, ..response });
            }
            RawLine::ReferenceEnd { node, revision } if history.reference.is_none() => {
                history.reference = Some(Reference {
                    node,
                    responses: std::mem::take(&mut reference_lines),
                    end_revision: revision,
                    end_line: line,
                });
            }
            RawLine::FinalState(_) | RawLine::Reference(_) | RawLine::ReferenceEnd { .. } => {
                return Err(bad(
                    "a second final state or reference (a run records one)".into()
                ));
            }
            RawLine::ReferenceFailed { reason } => history.reference_failures.push(reason),
        }
    }
    history.sessions = sessions.into_values().collect();
    Ok(history)
}

/// What kind of promise an anomaly breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AnomalyKind {
    Ordered,
    Unique,
    Atomic,
    Reliable,
    Mismatch,
    Resumable,
    Bookmarkable,
    LostWrite,
    PhantomWrite,
    TornWrite,
    ReferenceInconsistent,
}

impl fmt::Display for AnomalyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AnomalyKind::Ordered => "ordered",
            AnomalyKind::Unique => "unique",
            AnomalyKind::Atomic => "atomic",
            AnomalyKind::Reliable => "reliable",
            AnomalyKind::Mismatch => "mismatch",
            AnomalyKind::Resumable => "resumable",
            AnomalyKind::Bookmarkable => "bookmarkable",
            AnomalyKind::LostWrite => "lost-write",
            AnomalyKind::PhantomWrite => "phantom-write",
            AnomalyKind::TornWrite => "torn-write",
            AnomalyKind::ReferenceInconsistent => "reference-inconsistent",
        })
    }
}

/// The checker's findings: each kind of anomaly with its count and first example.
#[derive(Debug, Default)]
pub struct WatchVerdict {
    pub writes: usize,
    pub indeterminate_writes: usize,
    pub sessions: usize,
    pub resumed_sessions: usize,
    pub events_delivered: usize,
    pub progress_notifications: usize,
    pub reference_events: usize,
    pub reference_end: Option<i64>,
    /// Kind → (count, first example).
    pub anomalies: BTreeMap<AnomalyKind, (usize, String)>,
    /// Why the sessions could not be judged against a reference (None: they were). Without
    /// one only what needs no reference is checked; a run should call that unknown.
    pub no_reference: Option<String>,
}

impl WatchVerdict {
    pub fn valid(&self) -> bool {
        self.anomalies.is_empty()
    }

    pub fn explain(&self) -> Option<String> {
        if self.valid() {
            return None;
        }
        Some(
            self.anomalies
                .iter()
                .map(|(kind, (count, first))| format!("{kind} ({count}): {first}"))
                .collect::<Vec<_>>()
                .join("; "),
        )
    }

    /// One line of counts, for a run's summary.
    pub fn counts(&self) -> String {
        let reference = match self.reference_end {
            Some(end) => format!(
                "reference of {} events to revision {end}",
                self.reference_events
            ),
            None => "no reference".to_string(),
        };
        format!(
            "{} writes ({} indeterminate), {} sessions ({} resumed), {} events delivered, \
             {} progress notifications, {reference}",
            self.writes,
            self.indeterminate_writes,
            self.sessions,
            self.resumed_sessions,
            self.events_delivered,
            self.progress_notifications,
        )
    }

    fn note(&mut self, kind: AnomalyKind, example: impl FnOnce() -> String) {
        let entry = self.anomalies.entry(kind).or_insert_with(|| (0, example()));
        entry.0 += 1;
    }
}

/// Notes an anomaly of a kind, its explanation formatted only when it is the kind's first.
macro_rules! note {
    ($verdict:expr, ($kind:expr) => $($explanation:tt)+) => {
        $verdict.note($kind, || format!($($explanation)+))
    };
    ($verdict:expr, $kind:ident => $($explanation:tt)+) => {
        note!($verdict, (AnomalyKind::$kind) => $($explanation)+)
    };
}

// After the macro: the submodule uses it.
mod reference;

use reference::{check_final_state, check_writes, ReferenceIndex};

/// Where a session's successor resumes: right after its last delivered event.
fn resume_point(session: &Session) -> i64 {
    let delivered = session
        .responses
        .iter()
        .flat_map(|r| &r.events)
        .map(|e| e.mod_revision);
    delivered.max().map_or(session.label.start, |last| last + 1)
}

/// How one revision reached a session.
#[derive(Default)]
struct Delivery<'h> {
    /// Its keys in the order they came (first deliveries only).
    keys: Vec<&'h str>,
    /// The lines of the responses they came in.
    lines: Vec<usize>,
}

/// What one session delivered, walked in order.
struct SessionWalk<'h> {
    deliveries: BTreeMap<i64, Delivery<'h>>,
    /// The first delivered revision at or past the start.
    first: Option<i64>,
    highest: i64,
}

/// Walks a session's responses in order: ordering, uniqueness, bookmarks, and each event
/// against the reference.
fn walk<'h>(
    session: &'h Session,
    who: &str,
    index: Option<&ReferenceIndex>,
    verdict: &mut WatchVerdict,
) -> SessionWalk<'h> {
    let start = session.label.start;
    let head = head_kind(session);
    let mut walk = SessionWalk {
        deliveries: BTreeMap::new(),
        first: None,
        highest: i64::MIN,
    };
    let mut seen: HashSet<(i64, &str)> = HashSet::new();
    // The highest progress notification so far: (revision, line).
    let mut bookmark: Option<(i64, usize)> = None;
    for response in &session.responses {
        let line = response.line;
        if response.is_progress() {
            verdict.progress_notifications += 1;
            let at = response.revision;
            // Revisions below the latest one up to `at` are reliable's to check.
            let latest = index
                .filter(|_| start <= at)
                .and_then(|index| index.by_revision.range(start..=at).next_back());
            if let Some((&revision, events)) = latest {
                if let Some(missing) = events
                    .iter()
                    .find(|e| !seen.contains(&(revision, e.key.as_str())))
                {
                    note!(verdict, Bookmarkable =>
                        "{who} had a progress notification at revision {at} (line {line}) before \
                         {missing}");
                }
            }
            if bookmark.is_none_or(|(before, _)| before < at) {
                bookmark = Some((at, line));
            }
            continue;
        }
        for event in &response.events {
            verdict.events_delivered += 1;
            let revision = event.mod_revision;
            if revision < start {
                note!(verdict, (head) => "{who} delivered {event} (line {line}) below its start");
            }
            if revision < walk.highest {
                note!(verdict, Ordered =>
                    "{who} delivered {event} (line {line}) after revision {}", walk.highest);
            }
            walk.highest = walk.highest.max(revision);
            if let Some((at, at_line)) = bookmark.filter(|&(at, _)| revision <= at) {
                note!(verdict, Bookmarkable =>
                    "{who} delivered {event} (line {line}) after a progress notification at \
                     revision {at} (line {at_line})");
            }
            if !seen.insert((revision, event.key.as_str())) {
                note!(verdict, Unique => "{who} delivered {event} again (line {line})");
                continue;
            }
            if revision >= start {
                walk.first.get_or_insert(revision);
            }
            let delivery = walk.deliveries.entry(revision).or_default();
            delivery.keys.push(&event.key);
            if delivery.lines.last() != Some(&line) {
                delivery.lines.push(line);
            }
            match index.map(|index| index.event(revision, &event.key)) {
                Some(Some(reference)) if reference != event => {
                    note!(verdict, Mismatch =>
                        "{who} delivered {event} (line {line}) where the reference has {reference}")
                }
                Some(None) => {
                    note!(verdict, Mismatch =>
                        "{who} delivered {event} (line {line}), which the reference lacks")
                }
                _ => {}
            }
        }
    }
    walk
}

/// Missing the head of what a session asked for breaks the promise it relied on: resuming
/// when it was resumed, reliability otherwise.
fn head_kind(session: &Session) -> AnomalyKind {
    if session.label.resumed {
        AnomalyKind::Resumable
    } else {
        AnomalyKind::Reliable
    }
}

/// Each delivered revision whole, in one response, in the reference's order; no reference
/// revision missing from the session's start to its last event.
fn check_coverage(
    session: &Session,
    walk: &SessionWalk,
    who: &str,
    index: Option<&ReferenceIndex>,
    verdict: &mut WatchVerdict,
) {
    for (&revision, delivery) in &walk.deliveries {
        let lines = &delivery.lines;
        if lines.len() > 1 {
            note!(verdict, Atomic =>
                "{who} got revision {revision} split across the responses at lines {lines:?}");
        }
        let Some(events) = index.and_then(|index| index.by_revision.get(&revision)) else {
            continue;
        };
        let positions: Vec<usize> = delivery
            .keys
            .iter()
            .filter_map(|key| events.iter().position(|e| e.key == *key))
            .collect();
        if positions.windows(2).any(|pair| pair[0] > pair[1]) {
            let order: Vec<&str> = events.iter().map(|e| e.key.as_str()).collect();
            note!(verdict, Ordered =>
                "{who} got revision {revision}'s events as {:?}, the reference has \
                 {order:?}", delivery.keys);
        }
        let missing = events
            .iter()
            .find(|e| !delivery.keys.contains(&e.key.as_str()));
        if let (Some(missing), [line]) = (missing, lines.as_slice()) {
            note!(verdict, Atomic =>
                "{who} got revision {revision} (line {line}) without {missing}");
        }
    }
    let (Some(index), Some(first)) = (index, walk.first) else {
        return;
    };
    let head = head_kind(session);
    for (_, events) in index.by_revision.range(session.label.start..first) {
        note!(verdict, (head) => "{who} delivered revision {first} first, never {}", events[0]);
    }
    let highest = walk.highest;
    for (revision, events) in index.by_revision.range(first..=highest) {
        if !walk.deliveries.contains_key(revision) {
            note!(verdict, Reliable =>
                "{who} delivered revisions {first} to {highest} but not {}", events[0]);
        }
    }
}

fn check_session(
    session: &Session,
    previous: Option<&Session>,
    index: Option<&ReferenceIndex>,
    verdict: &mut WatchVerdict,
) {
    let label = &session.label;
    let resumed = if label.resumed { ", resumed" } else { "" };
    let who = format!(
        "watcher {} session {} (from revision {}{resumed}, node {})",
        label.watcher, label.number, label.start, label.node
    );
    if label.resumed {
        verdict.resumed_sessions += 1;
        // It continues right where its predecessor stopped.
        let number = label.number;
        match previous.filter(|p| p.label.number + 1 == number) {
            None => note!(verdict, Resumable =>
                "{who} is resumed, but session {} is not in the history", number - 1),
            Some(previous) if resume_point(previous) != label.start => note!(verdict, Resumable =>
                "{who} resumed, but session {} last delivered revision {}",
                number - 1, resume_point(previous) - 1),
            Some(_) => {}
        }
    }
    let walk = walk(session, &who, index, verdict);
    check_coverage(session, &walk, &who, index, verdict);
}

pub fn check(history: &WatchHistory) -> WatchVerdict {
    let mut verdict = WatchVerdict {
        writes: history.writes.len(),
        indeterminate_writes: history.writes.iter().filter(|w| !w.ok).count(),
        sessions: history.sessions.len(),
        ..Default::default()
    };
    let index = history.reference.as_ref().map(|reference| {
        verdict.reference_end = Some(reference.end_revision);
        ReferenceIndex::build(reference, &mut verdict)
    });
    match &index {
        Some(index) => {
            if let Some(state) = &history.final_state {
                check_final_state(state, index, &mut verdict);
            }
            check_writes(&history.writes, index, &mut verdict);
        }
        None => {
            let failures = &history.reference_failures;
            verdict.no_reference = Some(match failures.last() {
                Some(last) => format!(
                    "no attempt at the reference completed ({} failed, the last: {last})",
                    failures.len()
                ),
                None => "the history holds no reference".to_string(),
            });
        }
    }
    let mut previous: Option<&Session> = None;
    for session in &history.sessions {
        let same_watcher = previous.filter(|p| p.label.watcher == session.label.watcher);
        check_session(session, same_watcher, index.as_ref(), &mut verdict);
        previous = Some(session);
    }
    verdict
}
