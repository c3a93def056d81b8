//! The Raft loop: the one thread that ticks Raft, feeds it proposals, reads and peer
//! messages, makes what it asks durable in the WAL, sends its messages, applies committed
//! entries to the key space and answers the clients waiting on them.
//!
//! It is a plain thread, not an async task: every step of it is ordered I/O (WAL sync,
//! apply, storage commit) that must not interleave, and a thread keeps that obvious.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_raft::{ConfChange, DropReason, Error as RaftError, Proposed, RaftNode, Role};
use prost::Message;
use tokio::sync::oneshot;
use tonic::Status;

use super::apply::{
    apply_run_answering, decode_membership, decode_payload, superseded, Applied, AppliedRequest,
    AppliedRun, EntryPayload,
};
use super::idle_poll::IdlePoll;
use super::member::{Command, MemberAttributesTable, Published};
use super::peer_transport::PeerTransport;
use super::raft_log::RaftLog;
use super::read_queue::{ReadQueue, ReadReply};
use super::reconfig_check::ClusterView;
use super::registry::MemberRegistry;
use crate::kv::KvError;
use crate::lease::SharedLeases;
use crate::mvcc::MvccStore;
use crate::proto::cairn::entry::v1::MemberChange;
use crate::storage::BtreeBackend;

/// Upper bound on commands taken per loop turn, so ticks are never starved.
const MAX_COMMANDS_PER_TURN: usize = 4096;

/// etcd's `HealthInterval`: a peer counts as active once connected this long.
const HEALTH_INTERVAL: Duration = Duration::from_secs(5);

/// A learner within this fraction of the leader's log may be promoted (etcd's 90%).
const PROMOTABLE_MATCH_PERCENT: u64 = 90;

/// Why the loop stops after installing a snapshot: the member restarts on the new key space.
pub const SNAPSHOT_INSTALLED: &str = "installed a snapshot from the leader; restarting on it";

/// Why a removed member stops (etcd's words).
pub const REMOVED_MESSAGE: &str = "the member has been permanently removed from the cluster";

/// A proposal appended to the log, waiting to be applied.
pub(super) struct PendingProposal {
    id: u64,
    reply: oneshot::Sender<Result<Applied, Status>>,
}

pub(super) struct RaftLoop {
    pub(super) observability: Arc<super::observability::Observability>,
    /// Watchers hear of every applied batch, in commit order.
    pub(super) watch_hub: Arc<crate::api::watch::SharedWatchHub>,
    pub(super) leases: Arc<SharedLeases>,
    pub(super) snapshot_count: u64,
    /// Entries kept in the log behind a snapshot when there are peers (etcd's
    /// `SnapshotCatchUpEntries`), so a follower a little behind needs no snapshot.
    pub(super) snapshot_catchup_entries: u64,
    /// Index of the last snapshot (the log starts after it).
    pub(super) snapshot_index: u64,
    pub(super) node: RaftNode<RaftLog>,
    pub(super) store: Arc<MvccStore<BtreeBackend>>,
    /// When the key-space file is next made durable.
    pub(super) store_checkpoints: super::store_checkpoint::StoreCheckpoints,
    pub(super) member_id: u64,
    pub(super) published: Arc<Published>,
    /// Appended proposals by log index.
    pub(super) proposals: BTreeMap<u64, PendingProposal>,
    /// Proposals forwarded to the leader, by request id (their index is not known here).
    pub(super) forwarded: HashMap<u64, oneshot::Sender<Result<Applied, Status>>>,
    pub(super) transport: PeerTransport,
    pub(super) attributes: Arc<MemberAttributesTable>,
    /// The members as applied (shared with the services, changed only here).
    pub(super) registry: Arc<parking_lot::RwLock<MemberRegistry>>,
    /// Linearizable reads not yet taken into a round (shared with the services).
    pub(super) reads: Arc<ReadQueue>,
    /// Rounds of reads waiting for the leader to confirm it still leads, by context.
    pub(super) reads_waiting_confirmation: HashMap<u64, Vec<ReadReply>>,
    /// Confirmed rounds of reads waiting for the applied index to reach theirs.
    pub(super) reads_waiting_apply: Vec<(u64, Vec<ReadReply>)>,
    pub(super) next_read: u64,
    /// The term of the last entry applied.
    pub(super) applied_term: u64,
    pub(super) snapshots: SnapshotDuties,
    /// How long to poll for the next command before sleeping.
    pub(super) idle_poll: IdlePoll,
}

/// What the loop needs for snapshots between members.
pub(super) struct SnapshotDuties {
    /// `member/snap`: the key-space file and a received copy live here.
    pub(super) snap_dir: std::path::PathBuf,
    pub(super) cluster_id: u64,
    /// Followers a snapshot is being sent to (one transfer each at a time).
    pub(super) in_flight: std::collections::HashSet<u64>,
    /// The loop's own queue, for transfers to report back.
    pub(super) commands: mpsc::SyncSender<Command>,
    /// Failed deliveries, reported to Raft after a backoff (it would ask again at once).
    pub(super) retries: super::snapshot_retry::SnapshotRetries,
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
    pub(super) fn run(mut self, commands: mpsc::Receiver<Command>, tick: Duration) {
        let mut next_tick = Instant::now() + tick;
        loop {
            let timeout = next_tick.saturating_duration_since(Instant::now());
            match self.idle_poll.recv(&commands, timeout) {
                Ok(Command::Stop) | Err(RecvTimeoutError::Disconnected) => break,
                Ok(command) => {
                    if !self.handle(command) {
                        break;
                    }
                    for command in commands.try_iter().take(MAX_COMMANDS_PER_TURN) {
                        if !self.handle(command) {
                            self.stop_with(Status::unavailable("etcdserver: server stopped"), "");
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
                // Likewise reads whose read index was asked of a leader that never answered.
                self.reads_waiting_confirmation
                    .retain(|_, replies| replies.iter().any(|reply| !reply.is_closed()));
                // A backstop: queued reads are taken at least once a tick whatever became
                // of their signal.
                self.handle(Command::ReadsWaiting);
                if self.transport.was_removed() {
                    tracing::error!("{REMOVED_MESSAGE}; the data dir of this member must be removed before it can join again");
                    self.stop_with(
                        Status::unavailable(format!("etcdserver: {REMOVED_MESSAGE}")),
                        REMOVED_MESSAGE,
                    );
                    return;
                }
                for to in self.snapshots.retries.due(Instant::now()) {
                    self.snapshots.in_flight.remove(&to);
                    self.node.report_snapshot(to, false);
                }
                if let Err(err) = self.node.tick() {
                    tracing::error!(%err, "raft tick failed; stopping");
                    break;
                }
            }
            if let Err(err) = self.process_ready() {
                if err == REMOVED_MESSAGE {
                    tracing::error!("{REMOVED_MESSAGE}; the data dir of this member must be removed before it can join again");
                    self.stop_with(
                        Status::unavailable(format!("etcdserver: {REMOVED_MESSAGE}")),
                        REMOVED_MESSAGE,
                    );
                    return;
                }
                tracing::error!(%err, "stopping the member");
                self.stop_with(Status::unavailable("etcdserver: server stopped"), &err);
                return;
            }
            if let Err(err) = self.store_checkpoints.maybe(&self.store) {
                tracing::error!(%err, "stopping the member");
                self.stop_with(Status::unavailable("etcdserver: server stopped"), &err);
                return;
            }
            self.publish();
        }
        self.stop_with(Status::unavailable("etcdserver: server stopped"), "");
    }

    /// Returns false when the loop must stop.
    fn handle(&mut self, command: Command) -> bool {
        match command {
            Command::Stop => false,
            Command::Propose { request, reply } => {
                self.idle_poll.served(1);
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
            Command::InstallSnapshot { meta, reply } => self.install_snapshot(meta, reply),
            Command::SnapshotWanted { meta, reply } => {
                let _ = reply.send(self.needs_snapshot(&meta));
                true
            }
            Command::ReportSnapshot { to, delivered } => {
                if delivered {
                    self.snapshots.retries.delivered(to);
                    self.snapshots.in_flight.remove(&to);
                    self.node.report_snapshot(to, true);
                } else {
                    // Still marked in flight: no new attempt until the report is due.
                    self.snapshots.retries.failed(to, Instant::now());
                }
                true
            }
            Command::TermOf { index, reply } => {
                let term = cairn_raft::Storage::term(self.node.storage(), index).ok();
                let _ = reply.send(term);
                true
            }
            Command::PeerAt { member_id, url } => {
                // A removed member's handshake is refused before it gets here.
                if !self.registry.read().is_removed(member_id) {
                    self.transport.relocate(member_id, &url);
                }
                true
            }
            Command::ChangeMembership {
                change,
                context,
                reply,
            } => {
                // A voter added counts from the entry's append, before the turn ends.
                self.published.sole_voter_term.store(0, Ordering::SeqCst);
                self.propose_membership(change, context, reply);
                true
            }
            Command::TransferLeader { target, reply } => {
                self.published.sole_voter_term.store(0, Ordering::SeqCst);
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
                if super::sole_voter::may_end_leading_alone(&message, self.node.term()) {
                    // Reads go through a round again until the next publish has looked.
                    self.published.sole_voter_term.store(0, Ordering::SeqCst);
                }
                if let Err(err) = self.node.step(message) {
                    tracing::debug!(%err, "peer message refused by raft");
                }
                true
            }
            Command::ReadsWaiting => {
                // Every read taken here arrived before this read index is asked for.
                let replies = self.reads.take();
                if replies.is_empty() {
                    return true;
                }
                self.idle_poll.served(replies.len());
                self.next_read += 1;
                let context = self.next_read.to_le_bytes().to_vec();
                match self.node.read_index(context) {
                    Ok(()) => {
                        self.reads_waiting_confirmation
                            .insert(self.next_read, replies);
                    }
                    Err(err) => {
                        let status = dropped(&err);
                        for reply in replies {
                            let _ = reply.send(Err(status.clone()));
                        }
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
                // Snapshots travel beside Raft (Peer.SendSnapshot, installed by a restart);
                // one inside a Raft message comes from a member that does not do that.
                // Stopping beats running on a log that does not match the key space.
                return Err(format!(
                    "a Raft message carried a snapshot at index {} instead of Peer.SendSnapshot; is a member of another build in the cluster?",
                    snapshot.index
                ));
            }
            // Sent before the local append: followers persist in parallel with the leader.
            self.send_messages(ready.messages);
            // The loop is the WAL's only appender: persisting is a write+fdatasync, done on
            // this thread (an idle log writes inline) or waited for.
            let started = Instant::now();
            #[cfg(feature = "failpoints")]
            if self
                .node
                .storage()
                .must_sync(&ready.entries, ready.hard_state.as_ref())
            {
                crate::failpoints::reach("wal-fsync");
                if crate::failpoints::error("wal-fsync") {
                    return Err(
                        "WAL append failed: fsync error injected (failpoint wal-fsync)".into(),
                    );
                }
            }
            let pending = self
                .node
                .storage_mut()
                .persist(&ready.entries, ready.hard_state);
            let synced = !pending.is_empty();
            for pending in pending {
                pending
                    .wait()
                    .map_err(|e| format!("WAL append failed: {e}"))?;
                #[cfg(feature = "failpoints")]
                crate::failpoints::reach("wal-fsync-after");
            }
            if synced {
                self.observability
                    .metrics
                    .wal_fsync_duration
                    .observe(started.elapsed().as_secs_f64());
            }
            self.send_messages(ready.persisted_messages);
            self.apply(&ready.committed_entries)?;
            for read in ready.read_states {
                let Ok(context) = <[u8; 8]>::try_from(read.context.as_slice()) else {
                    continue;
                };
                if let Some(replies) = self
                    .reads_waiting_confirmation
                    .remove(&u64::from_le_bytes(context))
                {
                    self.reads_waiting_apply.push((read.index, replies));
                }
            }
            for context in ready.dropped_reads {
                if let Ok(context) = <[u8; 8]>::try_from(context.as_slice()) {
                    if let Some(replies) = self
                        .reads_waiting_confirmation
                        .remove(&u64::from_le_bytes(context))
                    {
                        for reply in replies {
                            let _ =
                                reply.send(Err(Status::unavailable("etcdserver: leader changed")));
                        }
                    }
                }
            }
            self.node.advance().map_err(|e| e.to_string())?;
            self.serve_reads();
            self.maybe_snapshot()?;
        }
        Ok(())
    }

    fn send_messages(&mut self, messages: Vec<cairn_raft::Message>) {
        for message in messages {
            if message.kind == cairn_raft::MessageKind::Snapshot {
                self.send_snapshot(message.to);
                continue;
            }
            self.transport.send(message);
        }
    }

    /// Checks a membership change as etcd's strict reconfiguration does, then proposes it;
    /// the client is answered when it applies.
    fn propose_membership(
        &mut self,
        change: ConfChange,
        context: MemberChange,
        reply: oneshot::Sender<Result<Applied, Status>>,
    ) {
        let status = self.node.status();
        if status.role != Role::Leader {
            let _ = reply.send(Err(Status::failed_precondition("etcdserver: not leader")));
            return;
        }
        // The checks read the applied registry: it must include every change in the log.
        if status.conf_index > self.published.applied.load(Ordering::Relaxed) {
            let _ = reply.send(Err(super::reconfig_check::unhealthy()));
            return;
        }
        let leader_match = status.last_index;
        let progress: HashMap<u64, (u64, bool)> = status
            .progress
            .iter()
            .map(|p| (p.id, (p.match_index, p.recent_active)))
            .collect();
        let attributes = self.attributes.read();
        let registry = self.registry.read();
        let started = |id: u64| {
            id == self.member_id
                || attributes.contains_key(&id)
                || registry.get(id).is_some_and(|m| !m.name.is_empty())
        };
        let active = |id: u64| self.transport.connected_for(id) >= HEALTH_INTERVAL;
        let connected = |id: u64| self.transport.connected_for(id) > Duration::ZERO;
        let learner_in_sync = |id: u64| {
            progress.get(&id).is_some_and(|&(matched, _)| {
                matched.saturating_mul(100) >= leader_match.saturating_mul(PROMOTABLE_MATCH_PERCENT)
            })
        };
        let view = ClusterView {
            registry: &registry,
            local_id: self.member_id,
            started: &started,
            active: &active,
            connected: &connected,
            learner_in_sync: &learner_in_sync,
        };
        let peer_urls = context
            .member
            .as_ref()
            .map(|m| m.peer_urls.clone())
            .unwrap_or_default();
        let checked = view.check(change, &peer_urls);
        drop(registry);
        drop(attributes);
        if let Err(status) = checked {
            let _ = reply.send(Err(status));
            return;
        }
        let id = context.id;
        match self
            .node
            .propose_conf_change_with_context(change, &context.encode_to_vec())
        {
            Ok(Proposed::Appended { index, .. }) => {
                self.proposals.insert(index, PendingProposal { id, reply });
            }
            Ok(Proposed::Forwarded { .. }) => {
                let _ = reply.send(Err(Status::failed_precondition("etcdserver: not leader")));
            }
            Err(RaftError::Dropped(DropReason::ConfChangeInProgress { .. }))
            | Err(RaftError::Dropped(DropReason::LeaderNotReady)) => {
                // etcd applies one change at a time too; the client may retry.
                let _ = reply.send(Err(Status::unavailable("etcdserver: unhealthy cluster")));
            }
            Err(RaftError::Dropped(DropReason::LearnerBehind { .. })) => {
                let _ = reply.send(Err(Status::failed_precondition(
                    "etcdserver: can only promote a learner member which is in sync with leader",
                )));
            }
            Err(RaftError::Dropped(DropReason::InvalidConfChange(why))) => {
                let _ = reply.send(Err(Status::failed_precondition(format!(
                    "etcdserver: invalid membership change: {why}"
                ))));
            }
            Err(err) => {
                let _ = reply.send(Err(dropped(&err)));
            }
        }
    }

    /// After membership changes applied (`before` → the registry now): links follow what
    /// changed, and a member that was removed stops. Links are never dropped for a member
    /// merely absent from an applied registry that may lag (one catching up from old
    /// entries): only removals and URL updates change them.
    fn follow_membership(&mut self, before: &MemberRegistry) -> Result<(), String> {
        let registry = self.registry.read().clone();
        if registry.is_removed(self.member_id) {
            return Err(REMOVED_MESSAGE.to_string());
        }
        for id in registry.removed().filter(|&id| !before.is_removed(id)) {
            self.transport.unlink(id);
        }
        for member in registry.members() {
            let Some(url) = member.peer_urls.first() else {
                continue;
            };
            let old_url = before.get(member.id).and_then(|m| m.peer_urls.first());
            if old_url.is_some_and(|old| old != url) {
                self.transport.relocate(member.id, url);
            } else {
                self.transport.sync(&[(member.id, url.clone())]);
            }
        }
        self.publish_learner();
        Ok(())
    }

    pub(super) fn publish_learner(&self) {
        let learner = self
            .registry
            .read()
            .get(self.member_id)
            .is_some_and(|m| m.is_learner);
        self.published.learner.store(learner, Ordering::Relaxed);
    }

    fn apply(&mut self, committed: &[cairn_raft::Entry]) -> Result<(), String> {
        let Some(last) = committed.last() else {
            return Ok(());
        };
        #[cfg(feature = "failpoints")]
        crate::failpoints::reach("apply");
        #[cfg(feature = "failpoints")]
        if self.node.role() != Role::Leader {
            crate::failpoints::reach("follower-apply");
        }
        #[cfg(feature = "failpoints")]
        if crate::failpoints::error("apply") {
            return Err("applying failed: storage error injected (failpoint apply)".into());
        }
        let mut payloads = Vec::with_capacity(committed.len());
        for entry in committed {
            let payload = match entry.kind {
                cairn_raft::EntryKind::Normal => decode_payload(entry.index, &entry.data),
                cairn_raft::EntryKind::ConfChange => decode_membership(entry.index, &entry.data),
            }
            .map_err(|e| e.to_string())?;
            let payload = match payload {
                EntryPayload::Request(request) if superseded(&request, entry.term) => {
                    tracing::info!(
                        index = entry.index,
                        decided_in_term = request.leader_term,
                        committed_in_term = entry.term,
                        "dropped a deposed leader's lease duty"
                    );
                    EntryPayload::Superseded(request)
                }
                other => other,
            };
            payloads.push((entry.index, payload));
        }
        // Changed on a copy, published once committed (a few members: cheap to copy).
        // Only a batch holding membership entries touches the registry: the others skip
        // copying it (every applied batch passes here).
        let touches_members = payloads.iter().any(|(_, payload)| match payload {
            EntryPayload::Membership { .. } => true,
            EntryPayload::Request(request) => matches!(
                request.op,
                Some(crate::proto::cairn::entry::v1::request::Op::MemberPeerUrls(
                    _
                ))
            ),
            EntryPayload::Nothing | EntryPayload::Superseded(_) => false,
        });
        let before = if touches_members {
            self.registry.read().clone()
        } else {
            MemberRegistry::default()
        };
        let mut registry = before.clone();
        let (run, revoked) = {
            // Held through the storage commit: nobody sees a lease change before its commit.
            let mut leases = self.leases.state.lock();
            let revoked_before = leases.counts.revoked;
            // A run that changes no membership answers its writers before its storage
            // commit (they wait through the commit otherwise); a membership change is
            // answered once the new registry is published, below.
            let (member_id, attributes) = (self.member_id, &self.attributes);
            let (forwarded, proposals) = (&mut self.forwarded, &mut self.proposals);
            let mut answer_early = |run: &mut AppliedRun| {
                let requests = std::mem::take(&mut run.requests);
                answer(
                    member_id, attributes, forwarded, proposals, requests, last.index,
                );
            };
            let run = apply_run_answering(
                &self.store,
                &payloads,
                &mut leases,
                &mut registry,
                Instant::now(),
                (!touches_members).then_some(&mut answer_early as &mut dyn FnMut(&mut AppliedRun)),
            )
            .map_err(|e| e.to_string())?;
            debug_assert!(leases.table().check_attachments().is_ok());
            (run, leases.counts.revoked != revoked_before)
        };
        if revoked {
            self.leases.revoked.notify_waiters();
        }
        let membership_changed = run.membership_changed;
        debug_assert!(
            touches_members || !membership_changed,
            "an unexpected registry change"
        );
        if membership_changed {
            *self.registry.write() = registry;
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
        // Answered here unless answered before the commit (then `run.requests` is empty and
        // only proposals replaced by another leader's entries are left to settle).
        answer(
            self.member_id,
            &self.attributes,
            &mut self.forwarded,
            &mut self.proposals,
            run.requests,
            last.index,
        );
        self.published.applied.store(last.index, Ordering::Relaxed);
        self.applied_term = last.term;
        if membership_changed {
            self.follow_membership(&before)?;
        }
        Ok(())
    }

    fn serve_reads(&mut self) {
        let applied = self.published.applied.load(Ordering::Relaxed);
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.reads_waiting_apply)
            .into_iter()
            .partition(|(index, _)| *index <= applied);
        self.reads_waiting_apply = waiting;
        for reply in ready.into_iter().flat_map(|(_, replies)| replies) {
            let _ = reply.send(Ok(()));
        }
    }

    pub(super) fn publish(&self) {
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
        let lease_term =
            super::member::lease_term(status.role == Role::Leader, status.term, self.applied_term);
        self.published
            .lease_term
            .store(lease_term.unwrap_or(0), Ordering::Relaxed);
        let applied = self.published.applied.load(Ordering::Relaxed);
        let alone = super::sole_voter::leads_alone(&status, applied, self.applied_term);
        self.published
            .published_turn(if alone { status.term } else { 0 });
    }

    /// Fails everything waiting with `status`; `reason` (empty: a requested stop) is what
    /// the process hears.
    pub(super) fn stop_with(&mut self, status: Status, reason: &str) {
        // What was applied need not be replayed at the next start (a failure here costs
        // only that replay).
        if let Err(err) = self.store_checkpoints.now(&self.store) {
            tracing::warn!(%err, "the key space was not checkpointed on stopping");
        }
        self.published.stop(reason);
        for (_, pending) in std::mem::take(&mut self.proposals) {
            let _ = pending.reply.send(Err(status.clone()));
        }
        for (_, reply) in self.forwarded.drain() {
            let _ = reply.send(Err(status.clone()));
        }
        let confirming = self.reads_waiting_confirmation.drain().map(|(_, r)| r);
        let applying = self.reads_waiting_apply.drain(..).map(|(_, r)| r);
        for reply in confirming.chain(applying).flatten() {
            let _ = reply.send(Err(status.clone()));
        }
        self.reads.fail_all(&status);
    }
}

/// Answers the applied requests this member proposed (or forwarded), and settles every
/// proposal at or below `last_index`: applied, or replaced by another leader's entry.
fn answer(
    member_id: u64,
    attributes: &Arc<MemberAttributesTable>,
    forwarded: &mut HashMap<u64, oneshot::Sender<Result<Applied, Status>>>,
    proposals: &mut BTreeMap<u64, PendingProposal>,
    requests: Vec<AppliedRequest>,
    last_index: u64,
) {
    for request in &requests {
        if let Ok(Applied::MemberAttributes(published)) = &request.result {
            attributes
                .write()
                .insert(published.member_id, published.clone());
        }
    }
    // Outcomes by log index: a proposal is answered by the entry at the index it was
    // appended at, and only if that entry is still its own (same proposer and id).
    let mut outcomes: HashMap<u64, (u64, Result<Applied, KvError>)> = HashMap::new();
    for request in requests.into_iter().filter(|r| r.proposer == member_id) {
        if let Some(reply) = forwarded.remove(&request.id) {
            let _ = reply.send(request.result.map_err(Status::from));
            continue;
        }
        outcomes.insert(request.index, (request.id, request.result));
    }
    let settled: Vec<u64> = proposals.range(..=last_index).map(|(i, _)| *i).collect();
    for index in settled {
        if let Some(pending) = proposals.remove(&index) {
            let result = match outcomes.remove(&index) {
                Some((id, result)) if id == pending.id => result.map_err(Status::from),
                _ => Err(Status::unavailable("etcdserver: leader changed")),
            };
            let _ = pending.reply.send(result);
        }
    }
}
