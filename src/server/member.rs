//! The member: one thread drives Raft (ticks, proposals, reads), makes what it asks durable
//! in the WAL, applies committed entries to the key space, and answers the waiting clients.
//! The gRPC services reach it through [`RaftMember`], which implements [`api::Member`].
//!
//! The loop is a plain thread, not an async task: every step of it is ordered I/O (WAL sync,
//! apply, storage commit) that must not interleave, and a thread keeps that obvious. Clients
//! hand it commands over a channel and wait on one-shot replies.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use cairn_raft::{DropReason, Error as RaftError, Proposed, RaftNode, Role};
use prost::Message;
use tokio::sync::oneshot;
use tonic::Status;

use super::apply::{apply_run, decode_payload, Applied, EntryPayload, ENTRY_FORMAT_VERSION};
use super::raft_log::{encode_conf_state, RaftLog};
use crate::api::{self, Limits};
use crate::kv::KvError;
use crate::lease::{unix_ms_now, GrantRules, LeaseIds, SharedLeases};
use crate::mvcc::MvccStore;
use crate::proto::cairn::entry::v1::{request::Op, MemberAttributes, Request};
use crate::proto::etcdserverpb::{Member as MemberInfo, ResponseHeader, StatusResponse};
use crate::storage::BtreeBackend;

/// Entries kept in the log before a snapshot when there are peers (etcd's
/// `SnapshotCatchUpEntries`), so a follower a little behind needs no snapshot.
const SNAPSHOT_CATCH_UP_ENTRIES: u64 = 5_000;

/// Commands (client requests, peer messages) queued for the loop before new ones are refused.
const MAX_QUEUED_COMMANDS: usize = 65_536;

/// Upper bound on commands taken per loop turn, so ticks are never starved.
const MAX_COMMANDS_PER_TURN: usize = 4096;

/// What clients ask of the loop.
enum Command {
    Propose {
        request: Request,
        reply: oneshot::Sender<Result<Applied, Status>>,
    },
    Read {
        reply: oneshot::Sender<Result<(), Status>>,
    },
    /// A message from a peer.
    Step(cairn_raft::Message),
    /// Hand leadership to a member (the caller waits for it to lead).
    TransferLeader {
        target: u64,
        reply: oneshot::Sender<Result<(), Status>>,
    },
    Stop,
}

/// Facts about this member that do not change while it runs.
#[derive(Debug, Clone)]
pub struct MemberIdentity {
    pub name: String,
    pub member_id: u64,
    pub cluster_id: u64,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
    /// The other members this one was started with (their client URLs are not known here).
    pub others: Vec<MemberInfo>,
}

/// The loop's state, published for the services (relaxed: each value stands alone).
#[derive(Default)]
struct Published {
    term: AtomicU64,
    leader: Arc<AtomicU64>,
    commit: AtomicU64,
    applied: AtomicU64,
    stopped: AtomicBool,
}

/// The handle the services use.
pub struct RaftMember {
    identity: MemberIdentity,
    store: Arc<MvccStore<BtreeBackend>>,
    commands: mpsc::SyncSender<Command>,
    published: Arc<Published>,
    next_request_id: AtomicU64,
    limits: Limits,
    request_timeout: Duration,
    db_path: std::path::PathBuf,
    thread: parking_lot::Mutex<Option<JoinHandle<()>>>,
    leases: Arc<SharedLeases>,
    lease_ids: LeaseIds,
    grant_rules: GrantRules,
    leader_cell: Arc<AtomicU64>,
    /// Members' published attributes (client URLs), by member id.
    attributes: Arc<MemberAttributesTable>,
}

/// Members' published attributes, as applied.
pub type MemberAttributesTable = parking_lot::RwLock<BTreeMap<u64, MemberAttributes>>;

/// Where the loop reports what it does: metrics, and watchers (after every applied batch).
pub struct Outlets {
    pub observability: Arc<super::observability::Observability>,
    pub watch_hub: Arc<crate::api::watch::SharedWatchHub>,
    /// Lease entries change these; every key change is shown to them.
    pub leases: Arc<SharedLeases>,
    /// Where Raft messages to other members go (none for a single member).
    pub transport: Option<super::peer_transport::PeerTransport>,
    /// Members' attributes as stored (updated as publications apply).
    pub attributes: Arc<MemberAttributesTable>,
}

/// How the loop keeps time and bounds waiting.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub tick: Duration,
    pub request_timeout: Duration,
    /// Raft's election timeout, in ticks.
    pub election_ticks: u32,
    /// Applied entries between snapshots (each lets the WAL release older segments).
    pub snapshot_count: u64,
}

/// Where the membership of each snapshot is kept, beside the key space: this prefix and the
/// snapshot's index (8 bytes, big-endian). Keyed by index because the WAL's snapshot marker
/// and this record are written one after the other: after a crash between them the marker is
/// the older snapshot's, and its own membership must still be found.
pub const META_SNAPSHOT_CONF_STATE: &[u8] = b"raft_snapshot_conf_state/";

/// The meta key of the membership at snapshot `index`.
pub fn snapshot_conf_key(index: u64) -> Vec<u8> {
    [META_SNAPSHOT_CONF_STATE, &index.to_be_bytes()[..]].concat()
}

impl RaftMember {
    /// Starts the loop over a Raft node whose log is `log`.
    pub fn start(
        identity: MemberIdentity,
        node: RaftNode<RaftLog>,
        store: Arc<MvccStore<BtreeBackend>>,
        limits: Limits,
        timing: Timing,
        db_path: std::path::PathBuf,
        outlets: Outlets,
    ) -> std::io::Result<Arc<RaftMember>> {
        let Outlets {
            observability,
            watch_hub,
            leases,
            transport,
            attributes,
        } = outlets;
        // Bounded: a flood of peer messages or client requests is refused at the door (peers
        // retry, clients hear "too many requests") instead of growing memory without limit.
        let (commands, receiver) = mpsc::sync_channel(MAX_QUEUED_COMMANDS);
        let published = Arc::new(Published::default());
        let snapshot_index = cairn_raft::Storage::snapshot(node.storage()).map_or(0, |s| s.index);
        let raft_loop = RaftLoop {
            observability,
            watch_hub,
            leases: Arc::clone(&leases),
            snapshot_count: timing.snapshot_count,
            snapshot_index,
            node,
            store: Arc::clone(&store),
            member_id: identity.member_id,
            published: Arc::clone(&published),
            proposals: BTreeMap::new(),
            forwarded: HashMap::new(),
            transport,
            attributes: Arc::clone(&attributes),
            reads_waiting_confirmation: HashMap::new(),
            reads_waiting_apply: Vec::new(),
            next_read: 0,
        };
        raft_loop.publish();
        let thread = std::thread::Builder::new()
            .name("cairn-raft".into())
            .spawn(move || raft_loop.run(receiver, timing.tick))?;
        // Request ids only need to be unique among this process's waiting requests; start
        // from the clock so ids of an earlier run replayed from the WAL do not collide.
        let start = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        let leader_cell = Arc::clone(&published.leader);
        Ok(Arc::new(RaftMember {
            store,
            commands,
            published,
            next_request_id: AtomicU64::new(start),
            limits,
            request_timeout: timing.request_timeout,
            db_path,
            thread: parking_lot::Mutex::new(Some(thread)),
            leases,
            lease_ids: LeaseIds::new(identity.member_id, unix_ms_now()),
            grant_rules: GrantRules::new(timing.tick, timing.election_ticks),
            attributes,
            leader_cell,
            identity,
        }))
    }

    /// Stops the loop after the command in progress and waits for it.
    pub fn stop(&self) {
        let _ = self.commands.send(Command::Stop);
        if let Some(thread) = self.thread.lock().take() {
            let _ = thread.join();
        }
    }

    pub fn identity(&self) -> &MemberIdentity {
        &self.identity
    }

    /// The leader id as the Raft loop last published it (0: no leader), shared.
    pub fn leader_cell(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.leader_cell)
    }

    fn send(&self, command: Command) -> Result<(), Status> {
        if self.published.stopped.load(Ordering::Acquire) {
            return Err(Status::unavailable("etcdserver: server stopped"));
        }
        self.commands.try_send(command).map_err(|err| match err {
            mpsc::TrySendError::Full(_) => {
                Status::resource_exhausted("etcdserver: too many requests")
            }
            mpsc::TrySendError::Disconnected(_) => {
                Status::unavailable("etcdserver: server stopped")
            }
        })
    }

    async fn wait<T>(&self, reply: oneshot::Receiver<Result<T, Status>>) -> Result<T, Status> {
        match tokio::time::timeout(self.request_timeout, reply).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(Status::unavailable("etcdserver: server stopped")),
            Err(_) => Err(Status::unavailable("etcdserver: request timed out")),
        }
    }
}

#[tonic::async_trait]
impl api::Member for RaftMember {
    type Backend = BtreeBackend;

    async fn propose(&self, op: Op) -> Result<Applied, Status> {
        let request = Request {
            format_version: ENTRY_FORMAT_VERSION,
            id: self.next_request_id.fetch_add(1, Ordering::Relaxed),
            proposer: self.identity.member_id,
            proposed_at_unix_ms: unix_ms_now(),
            op: Some(op),
        };
        let (reply, receiver) = oneshot::channel();
        self.send(Command::Propose { request, reply })?;
        self.wait(receiver).await
    }

    async fn read_barrier(&self) -> Result<(), Status> {
        let (reply, receiver) = oneshot::channel();
        self.send(Command::Read { reply })?;
        self.wait(receiver).await
    }

    fn store(&self) -> &MvccStore<BtreeBackend> {
        &self.store
    }

    fn header(&self) -> ResponseHeader {
        ResponseHeader {
            cluster_id: self.identity.cluster_id,
            member_id: self.identity.member_id,
            revision: 0,
            raft_term: self.published.term.load(Ordering::Relaxed),
        }
    }

    fn limits(&self) -> Limits {
        self.limits
    }

    fn status(&self) -> StatusResponse {
        // The file length; the in-use figure needs a page walk, so until the B+tree keeps a
        // cheap count it reports the same (etcd's after a defragmentation).
        let db_size = std::fs::metadata(&self.db_path).map_or(0, |m| m.len());
        StatusResponse {
            header: None,
            version: crate::version::ETCD_SERVER_VERSION.to_string(),
            db_size: i64::try_from(db_size).unwrap_or(i64::MAX),
            leader: self.published.leader.load(Ordering::Relaxed),
            raft_index: self.published.commit.load(Ordering::Relaxed),
            raft_term: self.published.term.load(Ordering::Relaxed),
            raft_applied_index: self.published.applied.load(Ordering::Relaxed),
            errors: Vec::new(),
            db_size_in_use: i64::try_from(db_size).unwrap_or(i64::MAX),
            is_learner: false,
        }
    }

    fn db_size_in_use(&self) -> Option<i64> {
        let stats = self
            .store
            .backend()
            .database()
            .begin_read()
            .and_then(|read| read.stats())
            .ok()?;
        i64::try_from(stats.used_bytes).ok()
    }

    fn leases(&self) -> &Arc<SharedLeases> {
        &self.leases
    }

    fn lease_ids(&self) -> &LeaseIds {
        &self.lease_ids
    }

    fn grant_rules(&self) -> GrantRules {
        self.grant_rules
    }

    fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    async fn move_leader(&self, target: u64) -> Result<(), Status> {
        if !self.is_leader() {
            return Err(Status::failed_precondition("etcdserver: not leader"));
        }
        if target == self.identity.member_id {
            return Ok(());
        }
        if !self.identity.others.iter().any(|m| m.id == target) {
            return Err(Status::failed_precondition(
                "etcdserver: bad leader transferee",
            ));
        }
        let (reply, receiver) = oneshot::channel();
        self.send(Command::TransferLeader { target, reply })?;
        self.wait(receiver).await?;
        let deadline = Instant::now() + self.request_timeout;
        while self.published.leader.load(Ordering::Relaxed) != target {
            if Instant::now() >= deadline {
                return Err(Status::deadline_exceeded(
                    "etcdserver: request timed out, leader transfer took too long",
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    fn leader_client_url(&self) -> Option<(u64, String)> {
        let leader = self.published.leader.load(Ordering::Relaxed);
        if leader == 0 || leader == self.identity.member_id {
            return None;
        }
        let url = self
            .attributes
            .read()
            .get(&leader)?
            .client_urls
            .first()?
            .clone();
        Some((leader, url))
    }

    fn is_leader(&self) -> bool {
        self.published.leader.load(Ordering::Relaxed) == self.identity.member_id
    }

    fn members(&self) -> Vec<MemberInfo> {
        let mut members = vec![MemberInfo {
            id: self.identity.member_id,
            name: self.identity.name.clone(),
            peer_ur_ls: self.identity.peer_urls.clone(),
            client_ur_ls: self.identity.client_urls.clone(),
            is_learner: false,
        }];
        let published = self.attributes.read();
        members.extend(self.identity.others.iter().map(|other| {
            let mut other = other.clone();
            if let Some(attributes) = published.get(&other.id) {
                other.client_ur_ls = attributes.client_urls.clone();
            }
            other
        }));
        members.sort_by_key(|m| m.id);
        members
    }
}

/// A proposal appended to the log, waiting to be applied.
struct PendingProposal {
    id: u64,
    reply: oneshot::Sender<Result<Applied, Status>>,
}

impl super::peer_transport::RaftInbox for RaftMember {
    fn deliver(&self, message: cairn_raft::Message) -> bool {
        !self.published.stopped.load(Ordering::Acquire)
            // A full queue drops the message; Raft resends what matters.
            && !matches!(
                self.commands.try_send(Command::Step(message)),
                Err(mpsc::TrySendError::Disconnected(_))
            )
    }
}

struct RaftLoop {
    observability: Arc<super::observability::Observability>,
    /// Watchers hear of every applied batch, in commit order.
    watch_hub: Arc<crate::api::watch::SharedWatchHub>,
    leases: Arc<SharedLeases>,
    snapshot_count: u64,
    /// Index of the last snapshot (the log starts after it).
    snapshot_index: u64,
    node: RaftNode<RaftLog>,
    store: Arc<MvccStore<BtreeBackend>>,
    member_id: u64,
    published: Arc<Published>,
    /// Appended proposals by log index.
    proposals: BTreeMap<u64, PendingProposal>,
    /// Proposals forwarded to the leader, by request id (their index is not known here).
    forwarded: HashMap<u64, oneshot::Sender<Result<Applied, Status>>>,
    transport: Option<super::peer_transport::PeerTransport>,
    attributes: Arc<MemberAttributesTable>,
    /// Reads waiting for the leader to confirm it still leads, by context.
    reads_waiting_confirmation: HashMap<u64, oneshot::Sender<Result<(), Status>>>,
    /// Confirmed reads waiting for the applied index to reach theirs.
    reads_waiting_apply: Vec<(u64, oneshot::Sender<Result<(), Status>>)>,
    next_read: u64,
}

fn dropped(err: &RaftError) -> Status {
    match err {
        RaftError::Dropped(DropReason::NoLeader) => Status::unavailable("etcdserver: no leader"),
        RaftError::Dropped(DropReason::TransferInProgress { .. }) => {
            Status::unavailable("etcdserver: leader changed")
        }
        RaftError::Dropped(DropReason::NotLeader { .. }) => {
            Status::failed_precondition("etcdserver: not leader")
        }
        RaftError::Dropped(_) => Status::unavailable("etcdserver: too many requests"),
        other => Status::internal(format!("etcdserver: {other}")),
    }
}

impl RaftLoop {
    fn run(mut self, commands: mpsc::Receiver<Command>, tick: Duration) {
        let mut next_tick = Instant::now() + tick;
        loop {
            let timeout = next_tick.saturating_duration_since(Instant::now());
            match commands.recv_timeout(timeout) {
                Ok(Command::Stop) | Err(RecvTimeoutError::Disconnected) => break,
                Ok(command) => {
                    if !self.handle(command) {
                        break;
                    }
                    for command in commands.try_iter().take(MAX_COMMANDS_PER_TURN) {
                        if !self.handle(command) {
                            self.stop_with(Status::unavailable("etcdserver: server stopped"));
                            return;
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
            if Instant::now() >= next_tick {
                next_tick += tick;
                // Forwarded proposals whose clients gave up (lost on the way).
                self.forwarded.retain(|_, waiting| !waiting.is_closed());
                if let Err(err) = self.node.tick() {
                    tracing::error!(%err, "raft tick failed; stopping");
                    break;
                }
            }
            if let Err(err) = self.process_ready() {
                tracing::error!(%err, "stopping the member");
                break;
            }
            self.publish();
        }
        self.stop_with(Status::unavailable("etcdserver: server stopped"));
    }

    /// Returns false when the loop must stop.
    fn handle(&mut self, command: Command) -> bool {
        match command {
            Command::Stop => false,
            Command::Propose { request, reply } => {
                let data = request.encode_to_vec();
                match self.node.propose(data) {
                    Ok(Proposed::Appended { index, .. }) => {
                        let pending = PendingProposal {
                            id: request.id,
                            reply,
                        };
                        if let Some(older) = self.proposals.insert(index, pending) {
                            // Its entry was overwritten by another leader's before it applied.
                            let status = Status::unavailable("etcdserver: leader changed");
                            let _ = older.reply.send(Err(status));
                        }
                    }
                    Ok(Proposed::Forwarded { .. }) => {
                        // Answered when the entry applies here, or by the client's timeout.
                        self.forwarded.insert(request.id, reply);
                    }
                    Err(err) => {
                        let _ = reply.send(Err(dropped(&err)));
                    }
                }
                true
            }
            Command::TransferLeader { target, reply } => {
                let outcome = self.node.transfer_leader(target).map_err(|err| match err {
                    RaftError::Dropped(DropReason::InvalidTransferTarget { .. }) => {
                        Status::failed_precondition("etcdserver: bad leader transferee")
                    }
                    other => dropped(&other),
                });
                let _ = reply.send(outcome);
                true
            }
            Command::Step(message) => {
                if let Err(err) = self.node.step(message) {
                    tracing::debug!(%err, "peer message refused by raft");
                }
                true
            }
            Command::Read { reply } => {
                self.next_read += 1;
                let context = self.next_read.to_le_bytes().to_vec();
                match self.node.read_index(context) {
                    Ok(()) => {
                        self.reads_waiting_confirmation
                            .insert(self.next_read, reply);
                    }
                    Err(err) => {
                        let _ = reply.send(Err(dropped(&err)));
                    }
                }
                true
            }
        }
    }

    fn process_ready(&mut self) -> Result<(), String> {
        while self.node.has_ready() {
            let ready = self.node.ready().map_err(|e| e.to_string())?;
            if let Some(snapshot) = &ready.snapshot {
                // Stopping beats running on a log that does not match the key space.
                return Err(format!(
                    "the leader sent a snapshot at index {}; installing snapshots is not supported by this build yet",
                    snapshot.index
                ));
            }
            // Sent before the local append: followers persist in parallel with the leader.
            self.send_messages(ready.messages);
            for pending in self
                .node
                .storage_mut()
                .persist(&ready.entries, ready.hard_state)
            {
                // The loop is the WAL's only appender: an append's wait is its write+fdatasync.
                let started = Instant::now();
                #[cfg(feature = "failpoints")]
                crate::failpoints::reach("wal-fsync");
                let outcome = pending.wait();
                self.observability
                    .metrics
                    .wal_fsync_duration
                    .observe(started.elapsed().as_secs_f64());
                outcome.map_err(|e| format!("WAL append failed: {e}"))?;
            }
            self.send_messages(ready.persisted_messages);
            self.apply(&ready.committed_entries)?;
            for read in ready.read_states {
                let Ok(context) = <[u8; 8]>::try_from(read.context.as_slice()) else {
                    continue;
                };
                if let Some(reply) = self
                    .reads_waiting_confirmation
                    .remove(&u64::from_le_bytes(context))
                {
                    self.reads_waiting_apply.push((read.index, reply));
                }
            }
            for context in ready.dropped_reads {
                if let Ok(context) = <[u8; 8]>::try_from(context.as_slice()) {
                    if let Some(reply) = self
                        .reads_waiting_confirmation
                        .remove(&u64::from_le_bytes(context))
                    {
                        let _ = reply.send(Err(Status::unavailable("etcdserver: leader changed")));
                    }
                }
            }
            self.node.advance().map_err(|e| e.to_string())?;
            self.serve_reads();
            self.maybe_snapshot()?;
        }
        Ok(())
    }

    fn send_messages(&self, messages: Vec<cairn_raft::Message>) {
        let Some(transport) = &self.transport else {
            debug_assert!(messages.is_empty(), "a single member has no one to message");
            return;
        };
        for message in messages {
            transport.send(message);
        }
    }

    /// Every `snapshot_count` applied entries, the key space (already durable at the applied
    /// index) becomes the log's snapshot and the WAL releases the segments it covers.
    fn maybe_snapshot(&mut self) -> Result<(), String> {
        let applied = self.published.applied.load(Ordering::Relaxed);
        if applied < self.snapshot_index.saturating_add(self.snapshot_count) {
            return Ok(());
        }
        let status = self.node.status();
        // With peers, the log keeps the last entries before the snapshot so a follower that
        // is a little behind catches up from the log (snapshots cannot be sent yet).
        let members = status.conf_state.voters.len() + status.conf_state.learners.len();
        let keep = if members > 1 {
            SNAPSHOT_CATCH_UP_ENTRIES
        } else {
            0
        };
        let index = applied.saturating_sub(keep);
        if index <= self.snapshot_index {
            return Ok(());
        }
        // The membership in force must be the one as of `index`: wait while a change
        // appended after it is pending.
        if status.conf_index > index {
            return Ok(());
        }
        let term =
            cairn_raft::Storage::term(self.node.storage(), index).map_err(|e| e.to_string())?;
        // Membership first: a snapshot marker in the WAL must always find its own.
        let key = snapshot_conf_key(index);
        let conf = encode_conf_state(&status.conf_state);
        self.store
            .put_meta(&[(key.as_slice(), Some(conf.as_slice()))])
            .map_err(|e| format!("recording the snapshot's membership: {e}"))?;
        // The key space is durable at `applied` ≥ `index`: a restart replays from `applied`.
        self.node
            .storage_mut()
            .compact(cairn_raft::SnapshotMeta {
                index,
                term,
                conf_state: status.conf_state,
            })
            .map_err(|e| format!("snapshot at {index}: {e}"))?;
        self.snapshot_index = index;
        tracing::info!(index, "snapshot taken; WAL segments before it released");
        Ok(())
    }

    fn apply(&mut self, committed: &[cairn_raft::Entry]) -> Result<(), String> {
        let Some(last) = committed.last() else {
            return Ok(());
        };
        #[cfg(feature = "failpoints")]
        crate::failpoints::reach("apply");
        let mut payloads = Vec::with_capacity(committed.len());
        for entry in committed {
            let payload = match entry.kind {
                cairn_raft::EntryKind::Normal => {
                    decode_payload(entry.index, &entry.data).map_err(|e| e.to_string())?
                }
                cairn_raft::EntryKind::ConfChange => EntryPayload::Nothing,
            };
            payloads.push((entry.index, payload));
        }
        let (run, revoked) = {
            // Held through the storage commit: nobody sees a lease change before its commit.
            let mut leases = self.leases.state.lock();
            let revoked_before = leases.counts.revoked;
            let run = apply_run(&self.store, &payloads, &mut leases, Instant::now())
                .map_err(|e| e.to_string())?;
            debug_assert!(leases.table().check_attachments().is_ok());
            (run, leases.counts.revoked != revoked_before)
        };
        if revoked {
            self.leases.revoked.notify_waiters();
        }
        {
            let mut hub = self.watch_hub.hub.lock();
            if let Err(err) = hub.publish(&self.store, run.revision, &run.events) {
                return Err(format!("publishing applied changes to watchers: {err}"));
            }
        }
        self.watch_hub.wake();
        for took in &run.commit_durations {
            self.observability
                .metrics
                .btree_commit_duration
                .observe(took.as_secs_f64());
        }
        // Outcomes by log index: a proposal is answered by the entry at the index it was
        // appended at, and only if that entry is still its own (same proposer and id).
        for request in &run.requests {
            if let Ok(Applied::MemberAttributes(published)) = &request.result {
                self.attributes
                    .write()
                    .insert(published.member_id, published.clone());
            }
        }
        let mut outcomes: HashMap<u64, (u64, Result<Applied, KvError>)> = HashMap::new();
        for request in run
            .requests
            .into_iter()
            .filter(|r| r.proposer == self.member_id)
        {
            if let Some(reply) = self.forwarded.remove(&request.id) {
                let _ = reply.send(request.result.map_err(Status::from));
                continue;
            }
            outcomes.insert(request.index, (request.id, request.result));
        }
        // Every proposal at or below the last applied index is settled now: applied, or
        // replaced by another leader's entry.
        let settled: Vec<u64> = self
            .proposals
            .range(..=last.index)
            .map(|(i, _)| *i)
            .collect();
        for index in settled {
            if let Some(pending) = self.proposals.remove(&index) {
                let result = match outcomes.remove(&index) {
                    Some((id, result)) if id == pending.id => result.map_err(Status::from),
                    _ => Err(Status::unavailable("etcdserver: leader changed")),
                };
                let _ = pending.reply.send(result);
            }
        }
        self.published.applied.store(last.index, Ordering::Relaxed);
        Ok(())
    }

    fn serve_reads(&mut self) {
        let applied = self.published.applied.load(Ordering::Relaxed);
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.reads_waiting_apply)
            .into_iter()
            .partition(|(index, _)| *index <= applied);
        self.reads_waiting_apply = waiting;
        for (_, reply) in ready {
            let _ = reply.send(Ok(()));
        }
    }

    fn publish(&self) {
        let status = self.node.status();
        self.published.term.store(status.term, Ordering::Relaxed);
        let leader = if status.role == Role::Leader {
            status.id
        } else {
            status.leader
        };
        self.published.leader.store(leader, Ordering::Relaxed);
        self.published
            .commit
            .store(status.commit, Ordering::Relaxed);
    }

    fn stop_with(&mut self, status: Status) {
        self.published.stopped.store(true, Ordering::Release);
        for (_, pending) in std::mem::take(&mut self.proposals) {
            let _ = pending.reply.send(Err(status.clone()));
        }
        for (_, reply) in self.forwarded.drain() {
            let _ = reply.send(Err(status.clone()));
        }
        for (_, reply) in self.reads_waiting_confirmation.drain() {
            let _ = reply.send(Err(status.clone()));
        }
        for (_, reply) in self.reads_waiting_apply.drain(..) {
            let _ = reply.send(Err(status.clone()));
        }
    }
}
