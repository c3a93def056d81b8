//! The watch workload's clients (the history format and the checker are
//! [`crate::watch_check`]'s).
//!
//! Writers change a few dozen keys under `w/`: a put of one key, a Txn putting 2–3 keys at
//! once (one revision, several events: what watch's atomicity is about), or a delete, each
//! with [`OP_TIMEOUT`]. Every put value is unique in the run (`<writer>-<n>`), so each event
//! a watcher sees names the one write that made it. A write that fails or times out is
//! indeterminate (`return: null`) and never retried. Writers pause a few milliseconds between
//! writes: every event is recorded again by each watcher that sees it, and the pause keeps
//! the history proportionate to the run.
//!
//! Watchers open sessions, one Watch stream each, on a random node: from a random revision
//! among the last 2,000 before the highest any client of the workload has seen (one session
//! in ten: anywhere from revision 1), or, after a
//! session broke, from just after the last event it delivered (what etcd's clients do after
//! a disconnect: the resumable case; a quarter of the sessions that end normally are resumed
//! too, so the case is covered without faults). A session asks for progress every few
//! hundred milliseconds, reads for 1–5 s and ends by cancelling its watcher; three seconds
//! without a message count as a broken stream (a killed, paused or partitioned node). Every
//! response is recorded as it arrives.
//!
//! After the faults end, [`final_reference`] reads the whole event history of `w/` once from
//! a node that is up to date: a range read (the final state, and the revision the history
//! must reach) and one watch from revision 1 until a progress notification at or past that
//! revision.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn::proto::etcdserverpb::{
    kv_client::KvClient, request_op, watch_client::WatchClient, watch_request::RequestUnion,
    DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, ResponseHeader, TxnRequest,
    WatchCancelRequest, WatchCreateRequest, WatchProgressRequest, WatchRequest, WatchResponse,
};
use cairn::proto::mvccpb::{event::EventType, Event, KeyValue};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};
use tonic::Streaming;

use crate::client::{connect, NodeClient, OP_TIMEOUT};
use crate::rng::Rng;
use crate::run::HistoryLog;

const PREFIX: &str = "w/";
/// The end of `PREFIX`'s range: '/' + 1.
const PREFIX_END: &str = "w0";
const KEYS: usize = 32;
const MAX_TXN_PUTS: u64 = 3;
/// Pause between one writer's writes: `MIN_WRITE_PAUSE_MS` plus up to `WRITE_PAUSE_SPREAD_MS`.
const MIN_WRITE_PAUSE_MS: u64 = 10;
const WRITE_PAUSE_SPREAD_MS: u64 = 40;

/// A stream silent this long is broken (its node is dead, paused or cut off): progress is
/// asked for more often than this, so a healthy stream always has something to say.
const IDLE_TIMEOUT: Duration = Duration::from_secs(3);
const MIN_SESSION: Duration = Duration::from_secs(1);
const SESSION_SPREAD_MS: u64 = 4_000;
const MIN_PROGRESS_EVERY_MS: u64 = 200;
const PROGRESS_SPREAD_MS: u64 = 600;
/// A session from an old revision ends after this many events, so that one session does not
/// replay the whole run into the history.
const MAX_SESSION_EVENTS: usize = 500;
/// What arrives after a session's cancel is recorded up to this many events in all; the rest
/// is read and dropped (the session's history simply ends earlier). The server may have
/// thousands of catch-up events buffered when the cancel lands.
const MAX_RECORDED_SESSION_EVENTS: usize = 2 * MAX_SESSION_EVENTS;
/// Most sessions start this close to the newest revision; one in `FAR_START_ONE_IN` starts
/// anywhere from revision 1. Starting anywhere every time makes the history grow with the
/// square of the run's length (a 30-minute run's outgrew the machine's memory).
const RECENT_REVISIONS: u64 = 2_000;
const FAR_START_ONE_IN: u64 = 10;
/// How long a session waits for its cancel to be acknowledged.
const CANCEL_WAIT: Duration = Duration::from_secs(1);
/// Pause after a broken session, so a dead node is not hammered.
const BROKEN_PAUSE: Duration = Duration::from_millis(200);
/// Requests a stream may have queued (one create, then progress requests and a cancel).
const REQUEST_QUEUE: usize = 8;

const REFERENCE_ATTEMPTS: usize = 30;
const REFERENCE_TIMEOUT: Duration = Duration::from_secs(60);
const REFERENCE_PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// The reference is held in memory before it is recorded; a run that wrote more than this
/// is beyond what the checker is meant for.
const MAX_REFERENCE_EVENTS: usize = 5_000_000;

/// State the workload's clients share: the highest revision any of them has seen, the end
/// of the range watchers pick their start revisions from.
#[derive(Default)]
pub struct WatchShared {
    highest_revision: AtomicI64,
}

impl WatchShared {
    fn saw(&self, revision: i64) {
        self.highest_revision.fetch_max(revision, Ordering::SeqCst);
    }

    fn highest(&self) -> i64 {
        self.highest_revision.load(Ordering::SeqCst)
    }
}

/// Why a watch stream (or the reference read) stopped short.
#[derive(Debug, thiserror::Error)]
enum StreamError {
    #[error("{0} is not a URL")]
    BadUrl(String),
    #[error("{}: {}", .0.code(), .0.message())]
    Call(tonic::Status),
    #[error("no message for {0:?}")]
    Idle(Duration),
    #[error("not done within {0:?}")]
    TooSlow(Duration),
    #[error("the server ended the stream")]
    Ended,
    #[error("the request stream closed")]
    RequestsClosed,
    #[error("canceled by the server: {0}")]
    Canceled(String),
    #[error("compacted at revision {0}")]
    Compacted(i64),
    #[error("more than {0} events")]
    TooLarge(usize),
}

fn now_ns(origin: Instant) -> u64 {
    origin.elapsed().as_nanos() as u64
}

fn revision_of(header: Option<&ResponseHeader>) -> Result<i64, tonic::Status> {
    header
        .map(|header| header.revision)
        .ok_or_else(|| tonic::Status::internal("a response without its header"))
}

/// What a writer is about to do.
enum Planned {
    /// One put, or a Txn of several (distinct keys).
    Puts(Vec<(String, String)>),
    Delete(String),
}

impl Planned {
    fn ops(&self) -> Value {
        match self {
            Planned::Puts(puts) => puts
                .iter()
                .map(|(key, value)| json!({"op": "put", "key": key, "value": value}))
                .collect(),
            Planned::Delete(key) => json!([{"op": "delete", "key": key}]),
        }
    }
}

fn key_name(n: usize) -> String {
    format!("{PREFIX}{n}")
}

fn plan(rng: &mut Rng, writer: u64, written: &mut u64) -> Planned {
    let puts = match rng.below(10) {
        0..=4 => 1,
        5..=8 => 2 + rng.below(MAX_TXN_PUTS - 1) as usize,
        _ => return Planned::Delete(key_name(rng.below(KEYS as u64) as usize)),
    };
    let puts = rng
        .sample(KEYS, puts)
        .into_iter()
        .map(|key| {
            *written += 1;
            (key_name(key), format!("{writer}-{written}"))
        })
        .collect();
    Planned::Puts(puts)
}

/// An applied write: its revision, and what a delete deleted.
struct Applied {
    revision: i64,
    deleted: Option<i64>,
}

async fn apply(kv: &mut KvClient<Channel>, planned: &Planned) -> Result<Applied, tonic::Status> {
    let put = |(key, value): &(String, String)| PutRequest {
        key: key.as_bytes().to_vec(),
        value: value.as_bytes().to_vec(),
        ..Default::default()
    };
    match planned {
        Planned::Puts(puts) if puts.len() == 1 => {
            let response = kv.put(put(&puts[0])).await?.into_inner();
            Ok(Applied {
                revision: revision_of(response.header.as_ref())?,
                deleted: None,
            })
        }
        Planned::Puts(puts) => {
            let success = puts
                .iter()
                .map(|kv| RequestOp {
                    request: Some(request_op::Request::RequestPut(put(kv))),
                })
                .collect();
            let response = kv
                .txn(TxnRequest {
                    success,
                    ..Default::default()
                })
                .await?
                .into_inner();
            if !response.succeeded {
                return Err(tonic::Status::internal("a Txn without compares failed"));
            }
            Ok(Applied {
                revision: revision_of(response.header.as_ref())?,
                deleted: None,
            })
        }
        Planned::Delete(key) => {
            let response = kv
                .delete_range(DeleteRangeRequest {
                    key: key.as_bytes().to_vec(),
                    ..Default::default()
                })
                .await?
                .into_inner();
            Ok(Applied {
                revision: revision_of(response.header.as_ref())?,
                deleted: Some(response.deleted),
            })
        }
    }
}

/// One writer's loop until `deadline`.
pub async fn writer(
    id: u64,
    endpoints: Vec<String>,
    shared: Arc<WatchShared>,
    seed: u64,
    deadline: Instant,
    origin: Instant,
    history: Arc<HistoryLog>,
) {
    let mut rng = Rng::new(seed);
    let mut node = NodeClient::new(id, endpoints);
    let mut written = 0u64;
    while Instant::now() < deadline {
        let pause = MIN_WRITE_PAUSE_MS + rng.below(WRITE_PAUSE_SPREAD_MS);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let Some(mut client) = node.kv() else { return };
        let planned = plan(&mut rng, id, &mut written);
        let call = now_ns(origin);
        let line = match tokio::time::timeout(OP_TIMEOUT, apply(&mut client, &planned)).await {
            Ok(Ok(applied)) => {
                shared.saw(applied.revision);
                json!({"kind": "write", "client": id, "call": call, "return": now_ns(origin),
                    "ok": true, "revision": applied.revision, "ops": planned.ops(),
                    "deleted": applied.deleted})
            }
            // An error may come after the write was proposed: its outcome is unknown.
            _ => {
                node.failed();
                json!({"kind": "write", "client": id, "call": call, "return": null,
                    "ok": false, "revision": null, "ops": planned.ops(), "deleted": null})
            }
        };
        history.push(line.to_string());
    }
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn key_value_json(kv: &KeyValue) -> Value {
    json!({"key": lossy(&kv.key), "value": lossy(&kv.value), "mod_revision": kv.mod_revision,
        "create_revision": kv.create_revision, "version": kv.version})
}

fn event_json(event: &Event) -> Value {
    let kind = if event.r#type == EventType::Delete as i32 {
        "delete"
    } else {
        "put"
    };
    let mut value = event.kv.as_ref().map_or_else(|| json!({}), key_value_json);
    if let Some(fields) = value.as_object_mut() {
        fields.insert("type".into(), json!(kind));
    }
    value
}

fn events_json(response: &WatchResponse) -> Value {
    response.events.iter().map(event_json).collect()
}

fn header_revision(response: &WatchResponse) -> i64 {
    response.header.as_ref().map_or(0, |header| header.revision)
}

/// etcd's definition: a response that carries only a revision.
fn is_progress(response: &WatchResponse) -> bool {
    response.events.is_empty()
        && !response.created
        && !response.canceled
        && response.compact_revision == 0
}

fn request(union: RequestUnion) -> WatchRequest {
    WatchRequest {
        request_union: Some(union),
    }
}

/// One Watch call watching the whole prefix.
struct WatchStream {
    requests: mpsc::Sender<WatchRequest>,
    responses: Streaming<WatchResponse>,
}

impl WatchStream {
    async fn open(url: &str, start_revision: i64) -> Result<WatchStream, StreamError> {
        let channel = Endpoint::from_shared(url.to_string())
            .map_err(|_| StreamError::BadUrl(url.to_string()))?
            .connect_timeout(OP_TIMEOUT)
            .connect_lazy();
        let (requests, queue) = mpsc::channel(REQUEST_QUEUE);
        // Queued before the call: the server sends the call's response headers only with its
        // first message, the answer to this request.
        let create = WatchCreateRequest {
            key: PREFIX.as_bytes().to_vec(),
            range_end: PREFIX_END.as_bytes().to_vec(),
            start_revision,
            progress_notify: true,
            ..Default::default()
        };
        requests
            .try_send(request(RequestUnion::CreateRequest(create)))
            .map_err(|_| StreamError::RequestsClosed)?;
        let mut client = WatchClient::new(channel);
        let call = client.watch(ReceiverStream::new(queue));
        let responses = tokio::time::timeout(IDLE_TIMEOUT, call)
            .await
            .map_err(|_| StreamError::Idle(IDLE_TIMEOUT))?
            .map_err(StreamError::Call)?
            .into_inner();
        Ok(WatchStream {
            requests,
            responses,
        })
    }

    /// Asks for a progress notification; a full queue already holds one.
    fn request_progress(&self) {
        let _ = self
            .requests
            .try_send(request(RequestUnion::ProgressRequest(
                WatchProgressRequest {},
            )));
    }

    fn cancel(&self, watch_id: i64) {
        let _ = self
            .requests
            .try_send(request(RequestUnion::CancelRequest(WatchCancelRequest {
                watch_id,
            })));
    }

    /// The next response, or None when `until` comes first.
    async fn next(&mut self, until: Instant) -> Result<Option<WatchResponse>, StreamError> {
        let until = tokio::time::Instant::from_std(until);
        match tokio::time::timeout_at(until, self.responses.message()).await {
            Err(_) => Ok(None),
            Ok(Ok(Some(response))) => Ok(Some(response)),
            Ok(Ok(None)) => Err(StreamError::Ended),
            Ok(Err(status)) => Err(StreamError::Call(status)),
        }
    }
}

/// Who a session is; every line of it says so.
struct SessionLabel {
    watcher: u64,
    session: u64,
    start: i64,
    resumed: bool,
    node: usize,
}

/// How a session ended.
enum SessionEnd {
    /// It ran its time (or its events) out and was cancelled.
    Done(&'static str),
    Compacted(i64),
    Broken(StreamError),
}

/// Records one session's lines and remembers what it delivered.
struct SessionRecord<'a> {
    label: SessionLabel,
    origin: Instant,
    history: &'a HistoryLog,
    shared: &'a WatchShared,
    last_delivered: Option<i64>,
    events: usize,
}

impl SessionRecord<'_> {
    fn line(&self, kind: &str, fields: Value) -> String {
        let label = &self.label;
        let mut line = json!({"kind": kind, "watcher": label.watcher, "session": label.session,
            "start": label.start, "resumed": label.resumed, "node": label.node,
            "at": now_ns(self.origin)});
        if let (Some(line), Value::Object(fields)) = (line.as_object_mut(), fields) {
            line.extend(fields);
        }
        line.to_string()
    }

    fn response(&mut self, response: &WatchResponse) {
        let revision = header_revision(response);
        self.shared.saw(revision);
        self.events += response.events.len();
        let delivered = response
            .events
            .iter()
            .filter_map(|e| Some(e.kv.as_ref()?.mod_revision));
        self.last_delivered = self.last_delivered.into_iter().chain(delivered).max();
        let line = self.line(
            "response",
            json!({"revision": revision, "created": response.created,
                "canceled": response.canceled, "compact_revision": response.compact_revision,
                "progress": is_progress(response), "events": events_json(response)}),
        );
        self.history.push(line);
    }

    fn end(&self, end: &SessionEnd) {
        let (interrupted, reason) = match end {
            SessionEnd::Done(why) => (false, why.to_string()),
            SessionEnd::Compacted(revision) => (false, format!("compacted at {revision}")),
            SessionEnd::Broken(err) => (true, err.to_string()),
        };
        let line = self.line("end", json!({"interrupted": interrupted, "reason": reason}));
        self.history.push(line);
    }
}

/// Follows one session until `until`, recording every response.
async fn follow(
    record: &mut SessionRecord<'_>,
    url: &str,
    until: Instant,
    rng: &mut Rng,
) -> SessionEnd {
    let mut stream = match WatchStream::open(url, record.label.start).await {
        Ok(stream) => stream,
        Err(err) => return SessionEnd::Broken(err),
    };
    let mut progress_every =
        || Duration::from_millis(MIN_PROGRESS_EVERY_MS + rng.below(PROGRESS_SPREAD_MS));
    let mut progress_due = Instant::now() + progress_every();
    let mut last_message = Instant::now();
    let mut watch_id = None;
    let reason = loop {
        let now = Instant::now();
        if now >= until {
            break "done";
        }
        if record.events >= MAX_SESSION_EVENTS {
            break "event limit";
        }
        if now >= progress_due {
            stream.request_progress();
            progress_due = now + progress_every();
        }
        let idle_at = last_message + IDLE_TIMEOUT;
        let response = match stream.next(until.min(progress_due).min(idle_at)).await {
            Ok(Some(response)) => response,
            Ok(None) if Instant::now() >= idle_at => {
                return SessionEnd::Broken(StreamError::Idle(IDLE_TIMEOUT))
            }
            Ok(None) => continue,
            Err(err) => return SessionEnd::Broken(err),
        };
        last_message = Instant::now();
        record.response(&response);
        if response.created {
            watch_id = Some(response.watch_id);
        }
        if response.canceled {
            return match response.compact_revision {
                0 => SessionEnd::Broken(StreamError::Canceled(response.cancel_reason)),
                revision => SessionEnd::Compacted(revision),
            };
        }
    };
    // Cancels, recording what still arrives: those events were delivered too.
    if let Some(id) = watch_id {
        stream.cancel(id);
        let until = Instant::now() + CANCEL_WAIT;
        // Once one response is dropped, so is everything after it: a gap would read as
        // events the server failed to deliver.
        let mut recording = true;
        while let Ok(Some(response)) = stream.next(until).await {
            recording &= record.events + response.events.len() <= MAX_RECORDED_SESSION_EVENTS;
            if recording {
                record.response(&response);
            }
            if response.canceled {
                break;
            }
        }
    }
    SessionEnd::Done(reason)
}

/// One watcher's loop of sessions until `deadline`.
pub async fn watcher(
    id: u64,
    endpoints: Vec<String>,
    shared: Arc<WatchShared>,
    seed: u64,
    deadline: Instant,
    origin: Instant,
    history: Arc<HistoryLog>,
) {
    if endpoints.is_empty() {
        return;
    }
    let mut rng = Rng::new(seed);
    let mut resume_at: Option<i64> = None;
    let mut session = 0;
    while Instant::now() < deadline {
        session += 1;
        let (start, resumed) = match resume_at.take() {
            Some(revision) => (revision, true),
            None => {
                let highest = shared.highest().max(0) as u64;
                let start = if rng.below(FAR_START_ONE_IN) == 0 {
                    1 + rng.below(highest)
                } else {
                    highest.saturating_sub(rng.below(RECENT_REVISIONS)).max(1)
                };
                (start as i64, false)
            }
        };
        let node = rng.below(endpoints.len() as u64) as usize;
        let mut record = SessionRecord {
            label: SessionLabel {
                watcher: id,
                session,
                start,
                resumed,
                node,
            },
            origin,
            history: &history,
            shared: &shared,
            last_delivered: None,
            events: 0,
        };
        let length = MIN_SESSION + Duration::from_millis(rng.below(SESSION_SPREAD_MS));
        let until = (Instant::now() + length).min(deadline);
        let end = follow(&mut record, &endpoints[node], until, &mut rng).await;
        record.end(&end);
        // The next session resumes right after the last delivered event (or where this
        // one started, when it delivered none).
        let next = record.last_delivered.map_or(start, |revision| revision + 1);
        match end {
            SessionEnd::Broken(_) => {
                resume_at = Some(next);
                tokio::time::sleep(BROKEN_PAUSE).await;
            }
            SessionEnd::Done(_) if rng.below(4) == 0 => resume_at = Some(next),
            SessionEnd::Done(_) | SessionEnd::Compacted(_) => {}
        }
    }
}

/// The complete history of the prefix as one node holds it.
struct ReferenceRead {
    /// The range read: its revision and the keys.
    state_revision: i64,
    kvs: Vec<KeyValue>,
    /// The responses that held events, in order.
    responses: Vec<WatchResponse>,
    /// A progress notification's revision: every event up to it is in `responses`.
    end_revision: i64,
}

async fn read_reference(url: &str, floor: i64) -> Result<ReferenceRead, StreamError> {
    let mut kv = connect(url).ok_or_else(|| StreamError::BadUrl(url.to_string()))?;
    let range = RangeRequest {
        key: PREFIX.as_bytes().to_vec(),
        range_end: PREFIX_END.as_bytes().to_vec(),
        ..Default::default()
    };
    let range = tokio::time::timeout(IDLE_TIMEOUT, kv.range(range))
        .await
        .map_err(|_| StreamError::Idle(IDLE_TIMEOUT))?
        .map_err(StreamError::Call)?
        .into_inner();
    let state_revision = revision_of(range.header.as_ref()).map_err(StreamError::Call)?;
    // Not below what any client saw: a node behind them cannot give the whole history.
    let target = state_revision.max(floor);
    let mut stream = WatchStream::open(url, 1).await?;
    let mut responses = Vec::new();
    let mut events = 0;
    let mut last_message = Instant::now();
    let mut progress_due = Instant::now();
    loop {
        if Instant::now() >= progress_due {
            // Unanswered while the watcher catches up; asked again until answered.
            stream.request_progress();
            progress_due = Instant::now() + REFERENCE_PROGRESS_EVERY;
        }
        let idle_at = last_message + IDLE_TIMEOUT;
        let Some(response) = stream.next(progress_due.min(idle_at)).await? else {
            if Instant::now() >= idle_at {
                return Err(StreamError::Idle(IDLE_TIMEOUT));
            }
            continue;
        };
        last_message = Instant::now();
        if response.canceled {
            return Err(match response.compact_revision {
                0 => StreamError::Canceled(response.cancel_reason),
                revision => StreamError::Compacted(revision),
            });
        }
        if is_progress(&response) && header_revision(&response) >= target {
            return Ok(ReferenceRead {
                state_revision,
                kvs: range.kvs,
                responses,
                end_revision: header_revision(&response),
            });
        }
        if !response.events.is_empty() {
            events += response.events.len();
            if events > MAX_REFERENCE_EVENTS {
                return Err(StreamError::TooLarge(MAX_REFERENCE_EVENTS));
            }
            responses.push(response);
        }
    }
}

/// Reads the reference once the faults are over (retrying on the next node: reading changes
/// nothing) and records it; records nothing but the failures when no attempt completes.
pub async fn final_reference(
    endpoints: &[String],
    shared: &WatchShared,
    origin: Instant,
    history: &HistoryLog,
) {
    for attempt in 0..REFERENCE_ATTEMPTS {
        let Some(url) = endpoints.get(attempt % endpoints.len().max(1)) else {
            return;
        };
        let node = attempt % endpoints.len();
        let read = tokio::time::timeout(REFERENCE_TIMEOUT, read_reference(url, shared.highest()))
            .await
            .unwrap_or_else(|_| Err(StreamError::TooSlow(REFERENCE_TIMEOUT)));
        let reference = match read {
            Ok(reference) => reference,
            Err(err) => {
                history.push(
                    json!({"kind": "reference_failed", "node": node, "at": now_ns(origin),
                        "reason": err.to_string()})
                    .to_string(),
                );
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let kvs: Vec<Value> = reference.kvs.iter().map(key_value_json).collect();
        history.push(
            json!({"kind": "final_state", "node": node, "revision": reference.state_revision,
                "kvs": kvs})
            .to_string(),
        );
        for response in &reference.responses {
            history.push(
                json!({"kind": "reference", "node": node,
                    "revision": header_revision(response), "events": events_json(response)})
                .to_string(),
            );
        }
        history.push(
            json!({"kind": "reference_end", "node": node, "revision": reference.end_revision,
                "at": now_ns(origin)})
            .to_string(),
        );
        return;
    }
}
