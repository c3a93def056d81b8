//! The member: one thread drives Raft (ticks, proposals, reads), makes what it asks durable
//! in the WAL, applies committed entries to the key space, and answers the waiting clients.
//! The gRPC services reach it through [`RaftMember`], which implements [`api::Member`].
//!
//! The loop is a plain thread, not an async task: every step of it is ordered I/O (WAL sync,
//! apply, storage commit) that must not interleave, and a thread keeps that obvious. Clients
//! hand it commands over a channel and wait on one-shot replies.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use cairn_raft::RaftNode;
use tokio::sync::oneshot;
use tonic::Status;

use super::apply::{Applied, ENTRY_FORMAT_VERSION};
use super::raft_log::RaftLog;
use super::read_queue::{ReadQueue, SignalOnDrop};
use super::registry::MemberRegistry;
use crate::api::{self, Limits};
use crate::lease::{unix_ms_now, GrantRules, LeaseIds, SharedLeases};
use crate::mvcc::MvccStore;
use crate::proto::cairn::entry::v1::{request::Op, MemberAttributes, MemberChange, Request};
use crate::proto::etcdserverpb::{Member as MemberInfo, ResponseHeader, StatusResponse};
use crate::storage::BtreeBackend;

/// Commands (client requests, peer messages) queued for the loop before new ones are refused.
const MAX_QUEUED_COMMANDS: usize = 65_536;

/// What clients ask of the loop.
pub(super) enum Command {
    Propose {
        request: Request,
        reply: oneshot::Sender<Result<Applied, Status>>,
    },
    /// Linearizable reads joined the read queue: take them into a ReadIndex round.
    ReadsWaiting,
    /// A message from a peer.
    Step(cairn_raft::Message),
    /// Hand leadership to a member (the caller waits for it to lead).
    TransferLeader {
        target: u64,
        reply: oneshot::Sender<Result<(), Status>>,
    },
    /// A snapshot from the leader, received and sealed as `db.incoming`: install it if the
    /// member still needs it (answer: whether it was installed).
    InstallSnapshot {
        meta: cairn_raft::SnapshotMeta,
        reply: oneshot::Sender<Result<bool, String>>,
    },
    /// Whether the member needs a snapshot at this position.
    SnapshotWanted {
        meta: cairn_raft::SnapshotMeta,
        reply: oneshot::Sender<bool>,
    },
    /// A snapshot this leader sent to `to` arrived (or not).
    ReportSnapshot {
        to: u64,
        delivered: bool,
    },
    /// The term of a log index (None: not in the log).
    TermOf {
        index: u64,
        reply: oneshot::Sender<Option<u64>>,
    },
    /// A peer said where it listens (in its handshake).
    PeerAt {
        member_id: u64,
        url: String,
    },
    /// A membership change, checked and proposed by the leader.
    ChangeMembership {
        change: cairn_raft::ConfChange,
        context: MemberChange,
        reply: oneshot::Sender<Result<Applied, Status>>,
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
    /// The other members this one was started with, listed until the registry has members.
    pub others: Vec<MemberInfo>,
}

/// The loop's state, published for the services (relaxed: each value stands alone).
pub(super) struct Published {
    pub(super) term: AtomicU64,
    pub(super) leader: Arc<AtomicU64>,
    pub(super) commit: AtomicU64,
    pub(super) applied: AtomicU64,
    /// The term in which this member keeps lease time (0: it does not): see [`lease_term`].
    /// One value, published by the loop, so that no reader pairs a role with another
    /// moment's applied state.
    pub(super) lease_term: AtomicU64,
    /// The term in which this member leads as the cluster's only voter
    /// ([`super::sole_voter::leads_alone`]), or 0: see [`Published::reads_need_no_round`].
    /// The loop clears it before it steps a peer message that could make another member lead
    /// or commit, and before it proposes a membership change or a leadership transfer; it sets
    /// it only when it publishes.
    pub(super) sole_voter_term: AtomicU64,
    /// When the loop last published, in nanoseconds since `epoch`: a loop that has not
    /// published for `fresh_for` (it does at least once a tick) may be stuck or gone.
    published_at: AtomicU64,
    epoch: Instant,
    fresh_for: Duration,
    pub(super) stopped: AtomicBool,
    /// Whether this member is a learner (the client services refuse most requests then).
    pub(super) learner: Arc<AtomicBool>,
    /// Why the loop stopped (empty: asked to), once it has.
    stop_reason: tokio::sync::watch::Sender<Option<String>>,
}

impl Published {
    fn new(fresh_for: Duration) -> Published {
        Published {
            published_at: AtomicU64::new(0),
            epoch: Instant::now(),
            fresh_for,
            term: AtomicU64::new(0),
            leader: Arc::default(),
            commit: AtomicU64::new(0),
            applied: AtomicU64::new(0),
            lease_term: AtomicU64::new(0),
            sole_voter_term: AtomicU64::new(0),
            stopped: AtomicBool::new(false),
            learner: Arc::default(),
            stop_reason: tokio::sync::watch::Sender::new(None),
        }
    }

    /// Whether a linearizable read may be served from the applied key space at once, with no
    /// ReadIndex round through the loop. It may when this member leads as the only voter and
    /// has applied all it has published as committed: no other member can lead or commit
    /// without first winning this member's vote and then its acknowledgement, both peer
    /// messages the loop steps only after clearing `sole_voter_term`; and every write
    /// answered before the read arrived was applied (so is in the key space) before its answer.
    /// And only while the loop is alive: it has published within `fresh_for` of `now`.
    pub(super) fn reads_need_no_round(&self, now: Instant) -> bool {
        if self.sole_voter_term.load(Ordering::Acquire) == 0 || self.stopped.load(Ordering::Acquire)
        {
            return false;
        }
        let published_at = Duration::from_nanos(self.published_at.load(Ordering::Acquire));
        let age = now.saturating_duration_since(self.epoch + published_at);
        age <= self.fresh_for
            && self.applied.load(Ordering::Acquire) >= self.commit.load(Ordering::Acquire)
    }

    /// Records that the loop published now, and whether it leads alone (`sole_voter_term`).
    pub(super) fn published_turn(&self, sole_voter_term: u64) {
        let at = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.published_at.store(at, Ordering::Release);
        self.sole_voter_term
            .store(sole_voter_term, Ordering::Release);
    }

    /// Marks the loop stopped; the first reason given is the one kept.
    pub(super) fn stop(&self, reason: &str) {
        self.sole_voter_term.store(0, Ordering::SeqCst);
        self.stopped.store(true, Ordering::Release);
        self.stop_reason.send_if_modified(|kept| {
            if kept.is_some() {
                return false;
            }
            *kept = Some(reason.to_string());
            true
        });
    }
}

/// The term in which a member keeps lease time: it leads in `term` and has applied an entry
/// of that term, or None. It leads from its election, but an entry an earlier leader
/// committed may reach its applied state only once it commits an entry of its own term:
/// lease time kept any sooner would start from figures older than the last renewal answered
/// (and checkpoints applied later do not move a leader's clock).
pub(super) fn lease_term(leads: bool, term: u64, applied_term: u64) -> Option<u64> {
    // Entries apply in log order: one of this term means all before it have applied.
    (leads && applied_term == term).then_some(term)
}

/// The handle the services use.
pub struct RaftMember {
    identity: MemberIdentity,
    store: Arc<MvccStore<BtreeBackend>>,
    commands: mpsc::SyncSender<Command>,
    published: Arc<Published>,
    reads: Arc<ReadQueue>,
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
    /// The members as applied.
    pub(super) registry: Arc<parking_lot::RwLock<MemberRegistry>>,
}

/// Members' published attributes, as applied.
pub type MemberAttributesTable = parking_lot::RwLock<BTreeMap<u64, MemberAttributes>>;

/// Where the loop reports what it does: metrics, and watchers (after every applied batch).
pub struct Outlets {
    pub observability: Arc<super::observability::Observability>,
    pub watch_hub: Arc<crate::api::watch::SharedWatchHub>,
    /// Lease entries change these; every key change is shown to them.
    pub leases: Arc<SharedLeases>,
    /// Where Raft messages to other members go.
    pub transport: super::peer_transport::PeerTransport,
    /// Members' attributes as stored (updated as publications apply).
    pub attributes: Arc<MemberAttributesTable>,
    /// The members as stored (updated as membership changes apply).
    pub registry: Arc<parking_lot::RwLock<MemberRegistry>>,
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
    /// Entries kept behind each snapshot when there are peers.
    pub snapshot_catchup_entries: u64,
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
            registry,
        } = outlets;
        // Bounded: a flood of peer messages or client requests is refused at the door (peers
        // retry, clients hear "too many requests") instead of growing memory without limit.
        let (commands, receiver) = mpsc::sync_channel(MAX_QUEUED_COMMANDS);
        // The loop publishes at least once a tick; three ticks without marks it stuck.
        let published = Arc::new(Published::new(timing.tick * 3));
        let reads = Arc::new(ReadQueue::default());
        let snapshot_index = cairn_raft::Storage::snapshot(node.storage()).map_or(0, |s| s.index);
        let raft_loop = super::raft_loop::RaftLoop {
            observability,
            watch_hub,
            leases: Arc::clone(&leases),
            snapshot_count: timing.snapshot_count,
            snapshot_catchup_entries: timing.snapshot_catchup_entries,
            snapshot_index,
            node,
            store: Arc::clone(&store),
            store_checkpoints: Default::default(),
            member_id: identity.member_id,
            published: Arc::clone(&published),
            proposals: BTreeMap::new(),
            forwarded: HashMap::new(),
            transport,
            attributes: Arc::clone(&attributes),
            registry: Arc::clone(&registry),
            reads: Arc::clone(&reads),
            reads_waiting_confirmation: HashMap::new(),
            reads_waiting_apply: Vec::new(),
            next_read: 0,
            applied_term: 0,
            idle_poll: Default::default(),
            snapshots: super::raft_loop::SnapshotDuties {
                retries: Default::default(),
                snap_dir: db_path
                    .parent()
                    .map(std::path::Path::to_path_buf)
                    .unwrap_or_default(),
                cluster_id: identity.cluster_id,
                in_flight: std::collections::HashSet::new(),
                commands: commands.clone(),
            },
        };
        raft_loop.publish();
        raft_loop.publish_learner();
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
            reads,
            next_request_id: AtomicU64::new(start),
            limits,
            request_timeout: timing.request_timeout,
            db_path,
            thread: parking_lot::Mutex::new(Some(thread)),
            leases,
            lease_ids: LeaseIds::new(identity.member_id, unix_ms_now()),
            grant_rules: GrantRules::new(timing.tick, timing.election_ticks),
            attributes,
            registry,
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

    pub(super) fn attributes_table(&self) -> &MemberAttributesTable {
        &self.attributes
    }

    pub(super) fn next_request_id(&self) -> u64 {
        self.next_request_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Resolves once the loop has stopped, with why (empty: it was asked to).
    pub async fn stopped(&self) -> String {
        let mut reason = self.published.stop_reason.subscribe();
        let stopped = reason
            .wait_for(Option::is_some)
            .await
            .map(|reason| reason.clone().unwrap_or_default());
        stopped.unwrap_or_default()
    }

    /// The leader id as the Raft loop last published it (0: no leader), shared.
    pub fn leader_cell(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.leader_cell)
    }

    /// Whether this member is a learner, as the loop last published it, shared.
    pub fn learner_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.published.learner)
    }

    /// A ReadIndex round through the loop, even where [`Published::reads_need_no_round`]
    /// would skip it: `/health` checks that the loop itself answers.
    pub async fn read_round(&self) -> Result<(), Status> {
        let (reply, receiver) = oneshot::channel();
        if self.reads.join(reply) {
            // The loop is signalled even if this read is dropped meanwhile (its client gave
            // up): every read queued behind the signal depends on it.
            let signal = SignalOnDrop::new(|| {
                if let Err(status) = self.send(Command::ReadsWaiting) {
                    // Nobody will take the queue: fail it (this read among it).
                    self.reads.fail_all(&status);
                }
            });
            // Reads the runtime is about to run join this round first: one wake-up of the
            // loop for the burst, not one for every few reads.
            tokio::task::yield_now().await;
            drop(signal);
        }
        self.wait(receiver).await
    }

    pub(super) fn send(&self, command: Command) -> Result<(), Status> {
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

    pub(super) async fn wait<T>(
        &self,
        reply: oneshot::Receiver<Result<T, Status>>,
    ) -> Result<T, Status> {
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

    async fn until_stopped(&self) {
        self.stopped().await;
    }

    async fn propose(&self, op: Op) -> Result<Applied, Status> {
        self.propose_as_leader(op, 0).await
    }

    async fn propose_as_leader(&self, op: Op, leader_term: u64) -> Result<Applied, Status> {
        let request = Request {
            format_version: ENTRY_FORMAT_VERSION,
            id: self.next_request_id(),
            proposer: self.identity.member_id,
            proposed_at_unix_ms: unix_ms_now(),
            leader_term,
            op: Some(op),
        };
        let (reply, receiver) = oneshot::channel();
        self.send(Command::Propose { request, reply })?;
        self.wait(receiver).await
    }

    async fn read_barrier(&self) -> Result<(), Status> {
        if self.published.reads_need_no_round(Instant::now()) {
            return Ok(());
        }
        self.read_round().await
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
            is_learner: self.is_learner(),
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
        let is_voter = self
            .registry
            .read()
            .get(target)
            .is_some_and(|m| !m.is_learner);
        if !is_voter {
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

    fn lease_term(&self) -> Option<u64> {
        match self.published.lease_term.load(Ordering::Relaxed) {
            0 => None,
            term => Some(term),
        }
    }

    fn members(&self) -> Vec<MemberInfo> {
        self.member_list()
    }

    fn is_learner(&self) -> bool {
        self.published.learner.load(Ordering::Relaxed)
    }

    async fn add_member(
        &self,
        peer_urls: Vec<String>,
        is_learner: bool,
    ) -> Result<(MemberInfo, Vec<MemberInfo>), Status> {
        RaftMember::add_member(self, peer_urls, is_learner).await
    }

    async fn remove_member(&self, id: u64) -> Result<Vec<MemberInfo>, Status> {
        RaftMember::remove_member(self, id).await
    }

    async fn promote_member(&self, id: u64) -> Result<Vec<MemberInfo>, Status> {
        RaftMember::promote_member(self, id).await
    }

    async fn update_member(
        &self,
        id: u64,
        peer_urls: Vec<String>,
    ) -> Result<Vec<MemberInfo>, Status> {
        RaftMember::update_member(self, id, peer_urls).await
    }
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

    fn install_snapshot(
        &self,
        meta: cairn_raft::SnapshotMeta,
    ) -> Option<oneshot::Receiver<Result<bool, String>>> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::InstallSnapshot { meta, reply })
            .ok()
            .map(|()| answer)
    }

    fn snapshot_wanted(&self, meta: &cairn_raft::SnapshotMeta) -> Option<oneshot::Receiver<bool>> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::SnapshotWanted {
            meta: meta.clone(),
            reply,
        })
        .ok()
        .map(|()| answer)
    }

    fn peer_at(&self, member_id: u64, url: &str) {
        let _ = self.commands.try_send(Command::PeerAt {
            member_id,
            url: url.to_string(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_skip_the_round_only_for_a_running_sole_voter_that_applied_its_commits() {
        let published = Published::new(Duration::from_millis(300));
        let now = Instant::now();
        published.commit.store(7, Ordering::Relaxed);
        published.applied.store(7, Ordering::Relaxed);
        assert!(
            !published.reads_need_no_round(now),
            "not published as sole voter"
        );
        published.published_turn(3);
        let now = Instant::now();
        assert!(published.reads_need_no_round(now));
        assert!(
            !published.reads_need_no_round(now + Duration::from_secs(1)),
            "the loop has not published for a second: it may be stuck"
        );
        published.commit.store(8, Ordering::Relaxed);
        assert!(
            !published.reads_need_no_round(now),
            "a committed entry is not applied yet"
        );
        published.applied.store(8, Ordering::Relaxed);
        assert!(published.reads_need_no_round(now));
        published.stop("test");
        assert!(!published.reads_need_no_round(now), "a stopped member");
    }

    #[test]
    fn a_new_leader_keeps_lease_time_only_once_an_entry_of_its_term_has_applied() {
        // Elected in term 5, the last applied entry still of term 4: the previous leader's
        // last checkpoints may be committed and not yet applied here.
        assert_eq!(lease_term(true, 5, 4), None);
        assert_eq!(lease_term(true, 5, 5), Some(5));
        assert_eq!(
            lease_term(false, 5, 5),
            None,
            "a follower keeps no lease time"
        );
    }
}
