//! The node value: its state, the input API (tick, step, propose) and role changes. Each
//! concern's handlers live in their own module (`election`, `replication`, `reads`,
//! `reconfigure`, `ready`).

use std::collections::{BTreeMap, VecDeque};

use crate::config::{Config, TimeoutRng};
use crate::error::{DropReason, Error};
use crate::log::RaftLog;
use crate::membership::Membership;
use crate::message::{
    Entry, EntryKind, HardState, Message, MessageKind, NodeId, CAMPAIGN_TRANSFER, NO_NODE,
};
use crate::progress::Progress;
use crate::read_index::{ReadIndexQueue, ReadState};
use crate::storage::Storage;

/// What a node currently is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Follows a leader (or waits for one).
    Follower,
    /// Asking whether it could win, without disturbing anyone's term.
    PreCandidate,
    /// Campaigning in its own term.
    Candidate,
    /// Leading its term.
    Leader,
}

/// Where a proposal went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proposed {
    /// Appended to the leader's log at `index` in `term`. It is committed once an entry with
    /// this index and term shows up in `Ready::committed_entries`; if another term shows up at
    /// that index (or a snapshot covers it first), its fate is unknown and the caller retries.
    Appended {
        /// Log index assigned.
        index: u64,
        /// Term assigned.
        term: u64,
    },
    /// Forwarded to the leader. The network may lose it: the caller waits for its command to
    /// be applied and retries after a timeout.
    Forwarded {
        /// The leader it was sent to.
        leader: NodeId,
    },
}

/// Leader-only bookkeeping, reset at each term.
#[derive(Debug, Default)]
pub(crate) struct LeaderState {
    /// Index of this term's no-op; commit at or past it means the term has committed.
    pub(crate) term_start_index: u64,
    /// Heartbeat rounds started this term (read confirmation and lease).
    pub(crate) heartbeat_round: u64,
    /// Highest round acknowledged by a quorum.
    pub(crate) confirmed_round: u64,
    /// Leader tick at which each recent round was sent, oldest first (bounded).
    pub(crate) round_sent_at: VecDeque<(u64, u64)>,
    /// Leader tick when the newest quorum-confirmed round was sent (lease start).
    pub(crate) lease_start_tick: Option<u64>,
    /// Ticks since becoming leader.
    pub(crate) ticks: u64,
    /// Transfer target, if a transfer is in progress.
    pub(crate) transfer_target: Option<NodeId>,
    /// A TimeoutNow went out this term: some peer may win an election that ignores leases,
    /// so lease reads are off for the rest of the term.
    pub(crate) timeout_now_sent: bool,
    /// New entries or a new commit index wait to be broadcast at the next `ready()`.
    pub(crate) broadcast_pending: bool,
}

/// Bound on remembered heartbeat rounds (for lease start times).
pub(crate) const MAX_TRACKED_ROUNDS: usize = 64;

/// A Raft node. Feed it with [`tick`](RaftNode::tick), [`step`](RaftNode::step),
/// [`propose`](RaftNode::propose) and friends; carry out its [`ready`](RaftNode::ready) and
/// acknowledge with [`advance`](RaftNode::advance).
pub struct RaftNode<S: Storage> {
    pub(crate) id: NodeId,
    pub(crate) cfg: Config,
    pub(crate) term: u64,
    pub(crate) vote: NodeId,
    pub(crate) leader: NodeId,
    pub(crate) role: Role,
    pub(crate) log: RaftLog<S>,
    pub(crate) membership: Membership,
    /// Leader: every member's replication state (removed members stay until the removal
    /// commits, so they learn of it).
    pub(crate) progress: BTreeMap<NodeId, Progress>,
    /// Candidate / pre-candidate: votes received.
    pub(crate) votes: BTreeMap<NodeId, bool>,
    /// Candidate: its own vote counts only once its hard state is durable.
    pub(crate) self_vote_pending: bool,
    pub(crate) election_elapsed: u32,
    /// Lease reads only: since (re)start, until a full election timeout passes, refuse votes
    /// as if a leader were live, because before a crash this node may have acknowledged a
    /// leader whose lease is still running.
    pub(crate) restart_vote_guard: bool,
    pub(crate) heartbeat_elapsed: u32,
    pub(crate) randomized_election_timeout: u32,
    pub(crate) lead: LeaderState,
    pub(crate) reads: ReadIndexQueue,
    pub(crate) read_states: Vec<ReadState>,
    pub(crate) dropped_reads: Vec<Vec<u8>>,
    /// Messages that may go out at once.
    pub(crate) msgs: Vec<Message>,
    /// Messages that must wait until this node's hard state and entries are durable.
    pub(crate) msgs_after_persist: Vec<Message>,
    pub(crate) rng: TimeoutRng,
    /// Hard state last handed out for persistence.
    pub(crate) prev_hard_state: HardState,
    pub(crate) in_flight: Option<crate::ready::ReadyAck>,
}

impl<S: Storage> RaftNode<S> {
    /// Starts (or restarts) a node over `storage`, rebuilding membership from the snapshot
    /// and the conf-change entries after it.
    pub fn new(cfg: Config, storage: S) -> Result<RaftNode<S>, Error> {
        cfg.validate()?;
        let (hard_state, snapshot_conf) = storage.initial_state()?;
        let snapshot_index = storage.first_index()? - 1;
        let log = RaftLog::new(storage, hard_state.commit, cfg.applied)?;
        let mut membership = Membership::new(snapshot_index, snapshot_conf);
        let last = log.last_index()?;
        let mut next = snapshot_index + 1;
        while next <= last {
            let batch = log.entries(next, last + 1, cfg.max_msg_bytes)?;
            let Some(last_read) = batch.last().map(|e| e.index) else {
                break;
            };
            membership.on_append(&batch);
            next = last_read + 1;
        }
        membership.compact_to(log.committed);
        let lease_reads = cfg.effective_read_mode() == crate::config::ReadMode::LeaseBased;
        let mut node = RaftNode {
            id: cfg.id,
            rng: TimeoutRng::new(cfg.seed, cfg.id),
            cfg,
            term: hard_state.term,
            vote: hard_state.vote,
            leader: NO_NODE,
            role: Role::Follower,
            log,
            membership,
            progress: BTreeMap::new(),
            votes: BTreeMap::new(),
            self_vote_pending: false,
            election_elapsed: 0,
            restart_vote_guard: lease_reads,
            heartbeat_elapsed: 0,
            randomized_election_timeout: 0,
            lead: LeaderState::default(),
            reads: ReadIndexQueue::default(),
            read_states: Vec::new(),
            dropped_reads: Vec::new(),
            msgs: Vec::new(),
            msgs_after_persist: Vec::new(),
            prev_hard_state: HardState {
                commit: hard_state.commit.min(last),
                ..hard_state
            },
            in_flight: None,
        };
        node.become_follower(hard_state.term, NO_NODE);
        Ok(node)
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Read access to the storage (for the caller's compaction and inspection).
    pub fn storage(&self) -> &S {
        &self.log.storage
    }

    /// Mutable access to the storage, for the caller to write what a `Ready` asked for.
    pub fn storage_mut(&mut self) -> &mut S {
        &mut self.log.storage
    }

    /// Advances the logical clock by one tick.
    pub fn tick(&mut self) -> Result<(), Error> {
        match self.role {
            Role::Leader => self.tick_leader(),
            _ => {
                // Keeps counting on a node that cannot campaign (a learner), so that its
                // leader lease (vote refusal window) ends when its leader goes quiet.
                self.election_elapsed = self.election_elapsed.saturating_add(1);
                if self.election_elapsed >= self.cfg.election_timeout_ticks {
                    self.restart_vote_guard = false;
                }
                if self.promotable() && self.election_elapsed >= self.randomized_election_timeout {
                    self.election_elapsed = 0;
                    self.start_election(false)?;
                }
                Ok(())
            }
        }
    }

    /// Proposes an application command.
    pub fn propose(&mut self, data: impl Into<std::sync::Arc<[u8]>>) -> Result<Proposed, Error> {
        let data = data.into();
        let bytes = data.len() as u64;
        if bytes > self.cfg.max_msg_bytes {
            return Err(DropReason::ProposalTooLarge {
                bytes,
                limit: self.cfg.max_msg_bytes,
            }
            .into());
        }
        if self.role == Role::Leader {
            let (index, term) = self.append_as_leader(EntryKind::Normal, data)?;
            return Ok(Proposed::Appended { index, term });
        }
        if self.leader == NO_NODE {
            return Err(DropReason::NoLeader.into());
        }
        if !self.cfg.forward_proposals {
            return Err(DropReason::NotLeader {
                leader: self.leader,
            }
            .into());
        }
        let mut m = Message::new(MessageKind::Propose, self.id, self.leader, 0);
        m.entries.push(Entry::new(0, 0, data));
        self.send(m);
        Ok(Proposed::Forwarded {
            leader: self.leader,
        })
    }

    /// Leader: appends one entry of this term, if proposals are being taken.
    pub(crate) fn append_as_leader(
        &mut self,
        kind: EntryKind,
        data: std::sync::Arc<[u8]>,
    ) -> Result<(u64, u64), Error> {
        debug_assert_eq!(self.role, Role::Leader, "only the leader appends proposals");
        if let Some(target) = self.lead.transfer_target {
            return Err(DropReason::TransferInProgress { target }.into());
        }
        if !self.membership.current().contains(self.id) {
            return Err(DropReason::NotMember.into());
        }
        let index = self.log.last_index()? + 1;
        let uncommitted = index - 1 - self.log.committed;
        // The no-op of a new term always goes in, so the leader can make progress.
        if uncommitted >= self.cfg.max_uncommitted_entries && !data.is_empty() {
            return Err(DropReason::TooManyUncommitted { uncommitted }.into());
        }
        let entry = Entry {
            index,
            term: self.term,
            kind,
            data,
        };
        self.append_entries(std::slice::from_ref(&entry))?;
        self.lead.broadcast_pending = true;
        Ok((index, self.term))
    }

    /// Appends to the log and keeps membership in step with it.
    pub(crate) fn append_entries(&mut self, entries: &[Entry]) -> Result<(), Error> {
        self.log.append(entries)?;
        if self.membership.on_append(entries) {
            self.on_membership_changed()?;
        }
        Ok(())
    }

    /// Feeds one message from a peer.
    pub fn step(&mut self, m: Message) -> Result<(), Error> {
        if m.to != self.id {
            return Err(Error::InvalidMessage {
                from: m.from,
                why: "addressed to another node",
            });
        }
        if m.from == NO_NODE || m.from == self.id {
            return Err(Error::InvalidMessage {
                from: m.from,
                why: "bad sender id",
            });
        }
        if m.term == u64::MAX {
            // No real cluster gets there; accepting it would overflow the next election.
            return Err(Error::InvalidMessage {
                from: m.from,
                why: "term out of range",
            });
        }
        let local = matches!(
            m.kind,
            MessageKind::Propose | MessageKind::ReadIndex | MessageKind::TransferLeader
        );
        if !local {
            if m.term > self.term {
                if matches!(m.kind, MessageKind::Vote | MessageKind::PreVote) {
                    let forced = m.context == CAMPAIGN_TRANSFER;
                    // Leader stickiness: while we hear from a live leader, a candidate is
                    // either partitioned from it or removed; ignoring it keeps leases valid.
                    let in_lease = self.cfg.check_quorum
                        && (self.leader != NO_NODE || self.restart_vote_guard)
                        && self.election_elapsed < self.cfg.election_timeout_ticks;
                    if !forced && in_lease {
                        return Ok(());
                    }
                }
                let future_ok = m.kind == MessageKind::PreVote
                    || (m.kind == MessageKind::PreVoteResponse && !m.reject);
                if !future_ok {
                    let leader = if matches!(
                        m.kind,
                        MessageKind::Append | MessageKind::Heartbeat | MessageKind::Snapshot
                    ) {
                        m.from
                    } else {
                        NO_NODE
                    };
                    self.become_follower(m.term, leader);
                }
            } else if m.term < self.term {
                self.answer_stale(&m);
                return Ok(());
            }
        }
        match m.kind {
            MessageKind::Vote | MessageKind::PreVote => self.handle_vote_request(&m),
            _ => match self.role {
                Role::Leader => self.step_leader(m),
                Role::Candidate | Role::PreCandidate => self.step_candidate(m),
                Role::Follower => self.step_follower(m),
            },
        }
    }

    /// A message from an older term: tell its sender our term where that unblocks it.
    fn answer_stale(&mut self, m: &Message) {
        match m.kind {
            // A deposed leader (e.g. healed from a partition) learns our term and steps down;
            // without this, Pre-Vote/Check-Quorum could leave it stuck as a stale leader.
            MessageKind::Append | MessageKind::Heartbeat
                if self.cfg.check_quorum || self.cfg.pre_vote =>
            {
                let resp = Message::new(MessageKind::AppendResponse, self.id, m.from, self.term);
                self.send(resp);
            }
            MessageKind::PreVote => {
                let mut resp =
                    Message::new(MessageKind::PreVoteResponse, self.id, m.from, self.term);
                resp.reject = true;
                self.send(resp);
            }
            _ => {}
        }
    }

    fn step_follower(&mut self, m: Message) -> Result<(), Error> {
        match m.kind {
            MessageKind::Append => {
                self.election_elapsed = 0;
                self.leader = m.from;
                self.handle_append(m)
            }
            MessageKind::Heartbeat => {
                self.election_elapsed = 0;
                self.leader = m.from;
                self.handle_heartbeat(&m)
            }
            MessageKind::Snapshot => {
                self.election_elapsed = 0;
                self.leader = m.from;
                self.handle_snapshot(&m)
            }
            MessageKind::TimeoutNow => self.start_election(true),
            MessageKind::ReadIndexResponse => {
                if m.reject {
                    self.dropped_reads.push(m.context);
                } else {
                    self.read_states.push(ReadState {
                        index: m.index,
                        context: m.context,
                    });
                }
                Ok(())
            }
            MessageKind::TransferLeader if self.leader != NO_NODE => {
                let mut fwd = m;
                fwd.from = self.id;
                fwd.to = self.leader;
                self.send(fwd);
                Ok(())
            }
            // Forwarded proposals and reads that reach a non-leader are dropped; their
            // senders were told the forward is unconfirmed and retry on timeout.
            _ => Ok(()),
        }
    }

    fn step_candidate(&mut self, m: Message) -> Result<(), Error> {
        match m.kind {
            MessageKind::Append | MessageKind::Heartbeat | MessageKind::Snapshot => {
                // Someone won this term.
                self.become_follower(m.term, m.from);
                self.step_follower(m)
            }
            MessageKind::VoteResponse if self.role == Role::Candidate => {
                self.record_vote(m.from, !m.reject)
            }
            MessageKind::PreVoteResponse if self.role == Role::PreCandidate => {
                self.record_vote(m.from, !m.reject)
            }
            _ => Ok(()),
        }
    }

    fn step_leader(&mut self, m: Message) -> Result<(), Error> {
        match m.kind {
            MessageKind::AppendResponse => self.handle_append_response(&m),
            MessageKind::HeartbeatResponse => self.handle_heartbeat_response(&m),
            MessageKind::Propose => {
                for e in m.entries {
                    // Only application commands may be forwarded; a full drop is invisible to
                    // the sender by design (it was told the forward is unconfirmed).
                    if e.kind != EntryKind::Normal
                        || e.data.len() as u64 > self.cfg.max_msg_bytes
                        || self.append_as_leader(EntryKind::Normal, e.data).is_err()
                    {
                        break;
                    }
                }
                Ok(())
            }
            MessageKind::ReadIndex => self.leader_read_index(m.context, m.from),
            MessageKind::TransferLeader => {
                // Errors are the requester's to see; a remote one just gets no transfer.
                let _ = self.leader_transfer(m.index);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Queues a message in the right outbox: answers wait for persistence, requests do not.
    pub(crate) fn send(&mut self, m: Message) {
        debug_assert_ne!(m.to, self.id, "a node never messages itself");
        if m.is_response() {
            self.msgs_after_persist.push(m);
        } else {
            self.msgs.push(m);
        }
    }

    pub(crate) fn reset(&mut self, term: u64) {
        if self.term != term {
            self.term = term;
            self.vote = NO_NODE;
        }
        self.leader = NO_NODE;
        self.election_elapsed = 0;
        self.heartbeat_elapsed = 0;
        let base = self.cfg.election_timeout_ticks;
        self.randomized_election_timeout = base + self.rng.next_below(base);
        self.votes.clear();
        self.self_vote_pending = false;
        self.lead = LeaderState::default();
        self.progress.clear();
        for r in self.reads.clear() {
            if r.requester == self.id {
                self.dropped_reads.push(r.context);
            } else {
                let mut resp =
                    Message::new(MessageKind::ReadIndexResponse, self.id, r.requester, term);
                resp.reject = true;
                resp.context = r.context;
                self.send(resp);
            }
        }
    }

    pub(crate) fn become_follower(&mut self, term: u64, leader: NodeId) {
        self.reset(term);
        self.role = Role::Follower;
        self.leader = leader;
    }

    /// Whether this node may campaign: a voter in its own configuration.
    pub(crate) fn promotable(&self) -> bool {
        self.membership.current().is_voter(self.id)
    }

    pub(crate) fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            vote: self.vote,
            commit: self.log.committed,
        }
    }
}
