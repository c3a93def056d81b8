//! The lock workload's clients (the history format and the checker are
//! [`crate::lock_check`]'s).
//!
//! Cairn has no Lock service yet, so the clients build a mutex the way etcd's client library
//! does (clientv3/concurrency's `Mutex`), from a lease, a key and a watch:
//! 1. A session: a lease of [`LEASE_TTL_SECONDS`], renewed every second on a LeaseKeepAlive
//!    stream in the background. One renewal that fails, comes late or reports TTL 0 ends the
//!    session: the client can no longer tell whether its lease lives, so it stops believing it
//!    holds anything and starts over with a new lease.
//! 2. The client's key is `lock/<lease id in hex>`, created in a Txn (if its create revision
//!    is 0, put it attached to the lease, otherwise get it). The key's create revision is the
//!    client's place in the queue and, once it holds the lock, its fencing token.
//! 3. Its turn: the newest key under `lock/` created before its own is the one it waits for;
//!    it watches that key from just after the revision of the read until the key is deleted
//!    (rechecking every [`TURN_RECHECK`]), and reads again. When no older key is left, and its
//!    own key is still there (the read checks both at one revision), it holds the lock.
//! 4. Holding, it makes 1–3 fenced writes (below). Half the holds pause for 0.2–2 s after the
//!    first write without looking at the session, as a client stalled by a GC pause or slow
//!    work would: that is the window in which a lease can run out under a holder that still
//!    believes it holds the lock. Before each write the holder checks its session.
//! 5. It releases: deletes its key, then revokes its lease.
//!
//! # Why fencing
//! A lease-based lock is a belief, not a fact: a holder that stalls, or whose keepalives stop
//! reaching the leader, can still believe it holds the lock after its lease expired and
//! another client took it. Jepsen showed that etcd's locks therefore give no mutual exclusion
//! under faults. Each hold is recorded as a "bare" interval (what the client believed) so the
//! checker can show this, and every write to the resource is fenced, which is what protects
//! it: the store refuses a write whose token is older than the newest token that wrote.
//!
//! # Fenced writes
//! [`GUARDED_KEY`] holds entries `token:client:seq` separated by spaces (`seq` counts the
//! client's writes, so every entry is unique in the run). [`FENCE_KEY`] holds the newest
//! token that wrote, as a zero-padded 20-digit decimal, so that the byte-wise value compare
//! orders tokens as numbers. A fenced write reads both keys in one read-only Txn, then commits
//! `fence = token, guarded = list + entry` in a Txn comparing:
//! - `value(fence) < token + 1` (etcd has no ≤); or, when the read found no fence yet,
//!   `create_revision(fence) == 0`, since a value compare on a missing key always fails. No
//!   fence is put before the run: the workload has no set-up step, and the first writer's
//!   compare covers the empty case;
//! - `mod_revision(guarded) == what the read saw`, so an append never overwrites an entry
//!   committed between the read and the commit. Fence and guarded are only ever written
//!   together, so this also pins the fence the read saw, which makes choosing the fence
//!   compare from the read safe.
//!
//! A rejected write (a newer holder wrote, or another write raced in) ends the hold. Every
//! operation has [`OP_TIMEOUT`]; a write that times out or fails is indeterminate and never
//! retried, and any error ends the session.
//!
//! The guarded list grows with the run: a few entries a second while the lock is contended,
//! so an hour is ~20,000 entries of ~20 bytes, well below a request's size limit. Past
//! [`MAX_GUARDED_ENTRIES`] holders stop writing (and say nothing), so a long run stays bounded.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn::proto::etcdserverpb::{
    compare, kv_client::KvClient, lease_client::LeaseClient, range_request, request_op,
    response_op, watch_client::WatchClient, watch_request::RequestUnion, Compare,
    DeleteRangeRequest, LeaseGrantRequest, LeaseKeepAliveRequest, LeaseRevokeRequest, PutRequest,
    RangeRequest, RangeResponse, RequestOp, ResponseHeader, TxnRequest, TxnResponse,
    WatchCreateRequest, WatchRequest,
};
use cairn::proto::mvccpb::event::EventType;
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};

use crate::client::OP_TIMEOUT;
use crate::rng::Rng;
use crate::run::HistoryLog;

/// The TTL of every session's lease: three renewals fit in it, and a lost holder's key is
/// gone soon enough that the others keep making progress under faults.
pub const LEASE_TTL_SECONDS: i64 = 3;
const KEEPALIVE_EVERY: Duration = Duration::from_secs(1);
pub const LOCK_PREFIX: &str = "lock/";
/// The end of `LOCK_PREFIX`'s range: '/' + 1.
const LOCK_PREFIX_END: &str = "lock0";
/// The resource the lock guards: the list of entries fenced writes appended.
pub const GUARDED_KEY: &str = "guarded";
/// The newest token that wrote `GUARDED_KEY`.
pub const FENCE_KEY: &str = "fence";
/// A waiter reads again this often even without a delete event: a watch may be slow to
/// deliver, or the key it waits for may be gone before the watch started.
pub const TURN_RECHECK: Duration = Duration::from_secs(5);
const MAX_FENCED_WRITES_PER_HOLD: u64 = 3;
const LONG_HOLD_MIN_MS: u64 = 200;
const LONG_HOLD_SPREAD_MS: u64 = 1_800;
/// Pause after a round that failed, so a dead node is not hammered.
const RETRY_PAUSE: Duration = Duration::from_millis(200);
/// Beyond this many entries in the guarded list holders stop writing.
pub const MAX_GUARDED_ENTRIES: usize = 50_000;
const FINAL_READ_ATTEMPTS: usize = 30;
const FINAL_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// A token as the fence key stores it: zero-padded so byte order is numeric order (any
/// revision is below 10^19, so 20 digits hold them all).
pub fn fence_value(token: i64) -> String {
    format!("{token:020}")
}

/// One fenced write's entry in the guarded list.
pub fn entry(token: i64, client: u64, seq: u64) -> String {
    format!("{token}:{client}:{seq}")
}

/// Why a round of the lock recipe stopped short.
#[derive(Debug, thiserror::Error)]
enum LockError {
    #[error("{0} is not a URL")]
    BadUrl(String),
    #[error("{}: {}", .0.code(), .0.message())]
    Call(tonic::Status),
    #[error("no answer within {0:?}")]
    TimedOut(Duration),
    #[error("lease grant refused: {0}")]
    GrantRefused(String),
    #[error("the session's lease is lost")]
    SessionLost,
    #[error("the watch stream ended")]
    WatchEnded,
    #[error("the watch was canceled: {0}")]
    WatchCanceled(String),
    #[error("malformed response: {0}")]
    Malformed(&'static str),
    #[error("a fenced write was rejected")]
    FencedOut,
    #[error("the run is over")]
    RunOver,
}

/// Awaits one gRPC call for at most `limit`.
async fn bounded<T>(
    limit: Duration,
    call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, LockError> {
    match tokio::time::timeout(limit, call).await {
        Ok(Ok(response)) => Ok(response.into_inner()),
        Ok(Err(status)) => Err(LockError::Call(status)),
        Err(_) => Err(LockError::TimedOut(limit)),
    }
}

fn revision_of(header: Option<&ResponseHeader>) -> Result<i64, LockError> {
    header
        .map(|header| header.revision)
        .ok_or(LockError::Malformed("a response without its header"))
}

fn range_op(range: RangeRequest) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestRange(range)),
    }
}

fn put_op(key: &str, value: Vec<u8>, lease: i64) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestPut(PutRequest {
            key: key.as_bytes().to_vec(),
            value,
            lease,
            ..Default::default()
        })),
    }
}

fn get_op(key: &str) -> RequestOp {
    range_op(RangeRequest {
        key: key.as_bytes().to_vec(),
        ..Default::default()
    })
}

/// The `index`th response of a Txn, which must be a range.
fn range_response(response: &TxnResponse, index: usize) -> Result<&RangeResponse, LockError> {
    match response
        .responses
        .get(index)
        .and_then(|op| op.response.as_ref())
    {
        Some(response_op::Response::ResponseRange(range)) => Ok(range),
        _ => Err(LockError::Malformed("a range answered with something else")),
    }
}

/// The clients of one node, sharing one connection.
struct Node {
    kv: KvClient<Channel>,
    leases: LeaseClient<Channel>,
    watches: WatchClient<Channel>,
}

impl Node {
    fn connect(url: &str) -> Result<Node, LockError> {
        let channel = Endpoint::from_shared(url.to_string())
            .map_err(|_| LockError::BadUrl(url.to_string()))?
            .connect_timeout(OP_TIMEOUT)
            .connect_lazy();
        Ok(Node {
            kv: KvClient::new(channel.clone()),
            leases: LeaseClient::new(channel.clone()),
            watches: WatchClient::new(channel),
        })
    }
}

/// A granted lease kept alive in the background until it is lost or the session dropped.
struct Session {
    lease: i64,
    alive: watch::Receiver<bool>,
    keeper: tokio::task::JoinHandle<()>,
}

impl Session {
    async fn grant(node: &Node) -> Result<Session, LockError> {
        let mut leases = node.leases.clone();
        let request = LeaseGrantRequest {
            ttl: LEASE_TTL_SECONDS,
            id: 0,
        };
        let granted = bounded(OP_TIMEOUT, leases.lease_grant(request)).await?;
        if !granted.error.is_empty() {
            return Err(LockError::GrantRefused(granted.error));
        }
        let (alive_sender, alive) = watch::channel(true);
        let keeper = tokio::spawn(keep_alive(leases, granted.id, alive_sender));
        Ok(Session {
            lease: granted.id,
            alive,
            keeper,
        })
    }

    fn lost(&self) -> bool {
        !*self.alive.borrow()
    }

    /// Resolves once the session is lost.
    async fn until_lost(&self) {
        let mut alive = self.alive.clone();
        // An error means the keeper is gone, which only happens once the session is.
        let _ = alive.wait_for(|alive| !*alive).await;
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.keeper.abort();
    }
}

/// Renews `lease` every second until a renewal fails, comes late or finds the lease gone;
/// then marks the session lost. One failure is enough: a holder that cannot tell whether its
/// lease lives must not go on believing it holds the lock.
async fn keep_alive(mut leases: LeaseClient<Channel>, lease: i64, alive: watch::Sender<bool>) {
    let (requests, queue) = mpsc::channel(1);
    let renewal = LeaseKeepAliveRequest { id: lease };
    // Queued before the call: the server sends the call's response headers only with its
    // first message, the answer to this request.
    if requests.try_send(renewal).is_err() {
        alive.send_replace(false);
        return;
    }
    let opened = async {
        let mut responses = leases
            .lease_keep_alive(ReceiverStream::new(queue))
            .await
            .ok()?
            .into_inner();
        let first = responses.message().await.ok()??;
        Some((responses, first.ttl))
    };
    let mut responses = match tokio::time::timeout(OP_TIMEOUT, opened).await {
        Ok(Some((responses, ttl))) if ttl > 0 => responses,
        _ => {
            alive.send_replace(false);
            return;
        }
    };
    loop {
        tokio::time::sleep(KEEPALIVE_EVERY).await;
        let renewed = async {
            requests.send(renewal).await.ok()?;
            responses.message().await.ok()?
        };
        match tokio::time::timeout(OP_TIMEOUT, renewed).await {
            Ok(Some(response)) if response.ttl > 0 => {}
            _ => {
                alive.send_replace(false);
                return;
            }
        }
    }
}

/// Records one operation.
struct Recorder<'a> {
    client: u64,
    origin: Instant,
    history: &'a HistoryLog,
}

impl Recorder<'_> {
    fn now(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }

    fn record(&self, call: u64, ret: Option<u64>, ok: bool, fields: Value) {
        let mut line = json!({"client": self.client, "call": call, "return": ret, "ok": ok});
        if let (Some(line), Value::Object(fields)) = (line.as_object_mut(), fields) {
            line.extend(fields);
        }
        self.history.push(line.to_string());
    }
}

/// What a fenced write's read saw.
struct GuardedState {
    list: String,
    entries: usize,
    guarded_mod_revision: i64,
    fence: Option<Vec<u8>>,
}

fn read_guarded_request() -> TxnRequest {
    TxnRequest {
        success: vec![get_op(FENCE_KEY), get_op(GUARDED_KEY)],
        ..Default::default()
    }
}

fn guarded_state(response: &TxnResponse) -> Result<GuardedState, LockError> {
    let fence = range_response(response, 0)?
        .kvs
        .first()
        .map(|kv| kv.value.clone());
    let guarded = range_response(response, 1)?.kvs.first();
    let list = guarded.map_or_else(String::new, |kv| {
        String::from_utf8_lossy(&kv.value).into_owned()
    });
    Ok(GuardedState {
        entries: list.split_whitespace().count(),
        list,
        guarded_mod_revision: guarded.map_or(0, |kv| kv.mod_revision),
        fence,
    })
}

/// The commit of a fenced write (see the module docs for its compares).
fn fenced_commit_request(
    seen: &GuardedState,
    token: i64,
    entry: &str,
) -> Result<TxnRequest, LockError> {
    let fence_compare = match seen.fence {
        Some(_) => {
            let above = token
                .checked_add(1)
                .ok_or(LockError::Malformed("a token at the end of the revisions"))?;
            Compare {
                result: compare::CompareResult::Less as i32,
                target: compare::CompareTarget::Value as i32,
                key: FENCE_KEY.as_bytes().to_vec(),
                target_union: Some(compare::TargetUnion::Value(fence_value(above).into_bytes())),
                ..Default::default()
            }
        }
        None => Compare {
            result: compare::CompareResult::Equal as i32,
            target: compare::CompareTarget::Create as i32,
            key: FENCE_KEY.as_bytes().to_vec(),
            target_union: Some(compare::TargetUnion::CreateRevision(0)),
            ..Default::default()
        },
    };
    let guarded_compare = Compare {
        result: compare::CompareResult::Equal as i32,
        target: compare::CompareTarget::Mod as i32,
        key: GUARDED_KEY.as_bytes().to_vec(),
        target_union: Some(compare::TargetUnion::ModRevision(seen.guarded_mod_revision)),
        ..Default::default()
    };
    let list = if seen.list.trim().is_empty() {
        entry.to_string()
    } else {
        format!("{} {entry}", seen.list.trim_end())
    };
    Ok(TxnRequest {
        compare: vec![fence_compare, guarded_compare],
        success: vec![
            put_op(FENCE_KEY, fence_value(token).into_bytes(), 0),
            put_op(GUARDED_KEY, list.into_bytes(), 0),
        ],
        // On a rejection, the fence that refused it (for the history's reader).
        failure: vec![get_op(FENCE_KEY)],
    })
}

/// One client's state across its rounds.
struct LockClient<'a> {
    id: u64,
    rng: Rng,
    /// Fenced writes attempted so far (the `seq` of entries).
    writes: u64,
    deadline: Instant,
    recorder: Recorder<'a>,
}

/// How a hold ended, as the history says it.
fn end_name(result: &Result<(), LockError>) -> &'static str {
    match result {
        Ok(()) => "released",
        Err(LockError::SessionLost) => "session-lost",
        Err(LockError::FencedOut) => "fenced-out",
        Err(_) => "error",
    }
}

impl LockClient<'_> {
    /// One round of the recipe on `node`: a session, the lock, a hold, the release.
    async fn round(&mut self, node: &Node) -> Result<(), LockError> {
        let session = Session::grant(node).await?;
        let key = format!("{LOCK_PREFIX}{:x}", session.lease);
        let result = match self.acquire(node, &session, &key).await {
            Ok(token) => {
                let from = self.recorder.now();
                let held = self.hold(node, &session, token).await;
                let to = self.recorder.now();
                self.recorder.record(
                    to,
                    Some(to),
                    true,
                    json!({"op": "hold", "token": token, "from": from, "to": to,
                        "end": end_name(&held)}),
                );
                self.release(node, &session, &key, Some(token)).await;
                held
            }
            Err(err) => {
                self.release(node, &session, &key, None).await;
                Err(err)
            }
        };
        drop(session);
        result
    }

    /// Creates this session's key and waits for its turn; the token on success.
    async fn acquire(&self, node: &Node, session: &Session, key: &str) -> Result<i64, LockError> {
        let fields = |token: Option<i64>| json!({"op": "acquire", "key": key, "lease": session.lease, "token": token});
        let call = self.recorder.now();
        let create = TxnRequest {
            compare: vec![Compare {
                result: compare::CompareResult::Equal as i32,
                target: compare::CompareTarget::Create as i32,
                key: key.as_bytes().to_vec(),
                target_union: Some(compare::TargetUnion::CreateRevision(0)),
                ..Default::default()
            }],
            success: vec![put_op(key, Vec::new(), session.lease)],
            failure: vec![get_op(key)],
        };
        let mut kv = node.kv.clone();
        let created = bounded(OP_TIMEOUT, kv.txn(create)).await;
        let token = match created.and_then(|response| own_revision(&response)) {
            Ok(token) => token,
            Err(err) => {
                // The key may have been created: whether this client queued is unknown.
                self.recorder.record(call, None, false, fields(None));
                return Err(err);
            }
        };
        match self.wait_turn(node, session, key, token).await {
            Ok(()) => {
                self.recorder
                    .record(call, Some(self.recorder.now()), true, fields(Some(token)));
                Ok(token)
            }
            Err(err) => {
                self.recorder
                    .record(call, Some(self.recorder.now()), false, fields(Some(token)));
                Err(err)
            }
        }
    }

    /// Waits until no key under the prefix is older than this client's (`own_revision`).
    async fn wait_turn(
        &self,
        node: &Node,
        session: &Session,
        key: &str,
        own_revision: i64,
    ) -> Result<(), LockError> {
        loop {
            if session.lost() {
                return Err(LockError::SessionLost);
            }
            if Instant::now() >= self.deadline {
                return Err(LockError::RunOver);
            }
            // A max_create_revision of 0 means "no limit", so at revision 1 (nobody can be
            // ahead) an unreachable minimum keeps the range empty; the own key is still read.
            let older = RangeRequest {
                key: LOCK_PREFIX.as_bytes().to_vec(),
                range_end: LOCK_PREFIX_END.as_bytes().to_vec(),
                max_create_revision: (own_revision - 1).max(0),
                min_create_revision: if own_revision > 1 { 0 } else { i64::MAX },
                sort_order: range_request::SortOrder::Descend as i32,
                sort_target: range_request::SortTarget::Create as i32,
                limit: 1,
                ..Default::default()
            };
            let request = TxnRequest {
                success: vec![range_op(older), get_op(key)],
                ..Default::default()
            };
            let mut kv = node.kv.clone();
            let response = bounded(OP_TIMEOUT, kv.txn(request)).await?;
            if range_response(&response, 1)?.kvs.is_empty() {
                // The lease expired (or was revoked) and took the key with it.
                return Err(LockError::SessionLost);
            }
            let Some(ahead) = range_response(&response, 0)?.kvs.first() else {
                return Ok(());
            };
            let revision = revision_of(response.header.as_ref())?;
            self.await_delete(node, session, &ahead.key, revision + 1)
                .await?;
        }
    }

    /// Watches `key` from `from_revision` until it is deleted, the session is lost, or
    /// `TURN_RECHECK` passes (Ok: time to read again).
    async fn await_delete(
        &self,
        node: &Node,
        session: &Session,
        key: &[u8],
        from_revision: i64,
    ) -> Result<(), LockError> {
        let (requests, queue) = mpsc::channel(1);
        let create = WatchCreateRequest {
            key: key.to_vec(),
            start_revision: from_revision,
            ..Default::default()
        };
        // Queued before the call, as the keepalive's first renewal is.
        requests
            .try_send(WatchRequest {
                request_union: Some(RequestUnion::CreateRequest(create)),
            })
            .map_err(|_| LockError::WatchEnded)?;
        let mut watches = node.watches.clone();
        let mut responses = bounded(OP_TIMEOUT, watches.watch(ReceiverStream::new(queue))).await?;
        let recheck_at = (Instant::now() + TURN_RECHECK).min(self.deadline);
        let recheck_at = tokio::time::Instant::from_std(recheck_at);
        loop {
            tokio::select! {
                _ = session.until_lost() => return Err(LockError::SessionLost),
                _ = tokio::time::sleep_until(recheck_at) => return Ok(()),
                message = responses.message() => match message {
                    Ok(Some(response)) if response.canceled => {
                        return Err(LockError::WatchCanceled(response.cancel_reason));
                    }
                    Ok(Some(response)) => {
                        let deleted = response
                            .events
                            .iter()
                            .any(|event| event.r#type == EventType::Delete as i32);
                        if deleted {
                            return Ok(());
                        }
                    }
                    Ok(None) => return Err(LockError::WatchEnded),
                    Err(status) => return Err(LockError::Call(status)),
                },
            }
        }
    }

    /// Holds the lock: 1–3 fenced writes, half the time with a stall after the first.
    async fn hold(&mut self, node: &Node, session: &Session, token: i64) -> Result<(), LockError> {
        let writes = 1 + self.rng.below(MAX_FENCED_WRITES_PER_HOLD);
        let stall = (self.rng.below(2) == 0)
            .then(|| Duration::from_millis(LONG_HOLD_MIN_MS + self.rng.below(LONG_HOLD_SPREAD_MS)));
        for n in 0..writes {
            if session.lost() {
                return Err(LockError::SessionLost);
            }
            self.fenced_write(node, token).await?;
            if let (0, Some(stall)) = (n, stall) {
                // Deliberately blind to the session: this is the stalled holder.
                tokio::time::sleep(stall).await;
            }
        }
        Ok(())
    }

    /// One fenced write of a new entry.
    async fn fenced_write(&mut self, node: &Node, token: i64) -> Result<(), LockError> {
        let mut kv = node.kv.clone();
        let call = self.recorder.now();
        let read = bounded(OP_TIMEOUT, kv.txn(read_guarded_request())).await;
        let seen = read.and_then(|response| guarded_state(&response));
        if seen
            .as_ref()
            .is_ok_and(|seen| seen.entries >= MAX_GUARDED_ENTRIES)
        {
            return Ok(());
        }
        self.writes += 1;
        let entry = entry(token, self.id, self.writes);
        let fields = json!({"op": "fenced-write", "token": token, "entry": entry});
        let commit = seen.and_then(|seen| fenced_commit_request(&seen, token, &entry));
        let commit = match commit {
            Ok(commit) => commit,
            Err(err) => {
                // Nothing was sent that could write.
                self.recorder
                    .record(call, Some(self.recorder.now()), false, fields);
                return Err(err);
            }
        };
        match bounded(OP_TIMEOUT, kv.txn(commit)).await {
            Ok(response) if response.succeeded => {
                self.recorder
                    .record(call, Some(self.recorder.now()), true, fields);
                Ok(())
            }
            Ok(response) => {
                let fence = range_response(&response, 0)
                    .ok()
                    .and_then(|range| range.kvs.first())
                    .map(|kv| String::from_utf8_lossy(&kv.value).into_owned());
                let fields = json!({"op": "fenced-write", "token": token, "entry": entry,
                    "fence": fence});
                self.recorder
                    .record(call, Some(self.recorder.now()), false, fields);
                Err(LockError::FencedOut)
            }
            // An error may come after the commit was proposed: its outcome is unknown.
            Err(err) => {
                self.recorder.record(call, None, false, fields);
                Err(err)
            }
        }
    }

    /// Deletes the key and revokes the lease; recorded when the lock was held (`token`).
    async fn release(&self, node: &Node, session: &Session, key: &str, token: Option<i64>) {
        let call = self.recorder.now();
        let mut kv = node.kv.clone();
        let delete = DeleteRangeRequest {
            key: key.as_bytes().to_vec(),
            ..Default::default()
        };
        let deleted = bounded(OP_TIMEOUT, kv.delete_range(delete)).await.is_ok();
        let deleted_at = deleted.then(|| self.recorder.now());
        let mut leases = node.leases.clone();
        let revoke = LeaseRevokeRequest { id: session.lease };
        // A failed revoke leaves the lease to expire within its TTL.
        let revoked = bounded(OP_TIMEOUT, leases.lease_revoke(revoke))
            .await
            .is_ok();
        if let Some(token) = token {
            self.recorder.record(
                call,
                deleted_at,
                deleted,
                json!({"op": "release", "token": token, "key": key, "revoked": revoked}),
            );
        }
    }
}

/// The create revision of the own key from the creating Txn: the Txn's revision when it
/// put the key, the key's create revision when it was there already.
fn own_revision(response: &TxnResponse) -> Result<i64, LockError> {
    let revision = if response.succeeded {
        revision_of(response.header.as_ref())?
    } else {
        range_response(response, 0)?
            .kvs
            .first()
            .map(|kv| kv.create_revision)
            .ok_or(LockError::Malformed("the own key is neither new nor there"))?
    };
    if revision <= 0 {
        return Err(LockError::Malformed("a create revision below 1"));
    }
    Ok(revision)
}

/// One client's loop until `deadline`: rounds of the recipe, each on the next node.
pub async fn worker(
    id: u64,
    endpoints: Vec<String>,
    seed: u64,
    deadline: Instant,
    origin: Instant,
    history: Arc<HistoryLog>,
) {
    let mut client = LockClient {
        id,
        rng: Rng::new(seed),
        writes: 0,
        deadline,
        recorder: Recorder {
            client: id,
            origin,
            history: &history,
        },
    };
    let mut round = 0u64;
    while Instant::now() < deadline {
        round += 1;
        let Some(url) = endpoints.get((id + round) as usize % endpoints.len().max(1)) else {
            return;
        };
        let Ok(node) = Node::connect(url) else { return };
        if client.round(&node).await.is_err() {
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }
}

/// Reads the guarded list and the fence once the faults are over (retrying: a read changes
/// nothing), as client 0's `final`.
pub async fn final_read(endpoints: &[String], origin: Instant, history: &HistoryLog) {
    let recorder = Recorder {
        client: 0,
        origin,
        history,
    };
    for attempt in 0..FINAL_READ_ATTEMPTS {
        let Some(url) = endpoints.get(attempt % endpoints.len().max(1)) else {
            return;
        };
        let Ok(node) = Node::connect(url) else {
            continue;
        };
        let mut kv = node.kv;
        let call = recorder.now();
        let read = bounded(FINAL_READ_TIMEOUT, kv.txn(read_guarded_request())).await;
        if let Ok(seen) = read.and_then(|response| guarded_state(&response)) {
            let entries: Vec<&str> = seen.list.split_whitespace().collect();
            let fence = seen
                .fence
                .map(|fence| String::from_utf8_lossy(&fence).into_owned());
            recorder.record(
                call,
                Some(recorder.now()),
                true,
                json!({"op": "final", "value": entries, "fence": fence}),
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
