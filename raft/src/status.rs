//! A snapshot of a node's state for status APIs, metrics and tests.

use crate::message::{ConfState, NodeId};
use crate::node::{RaftNode, Role};
use crate::progress::{Progress, ProgressState};
use crate::storage::Storage;

/// One member's replication state as the leader sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerStatus {
    /// Member id.
    pub id: NodeId,
    /// Highest index known to match.
    pub match_index: u64,
    /// Next index to send.
    pub next_index: u64,
    /// Pacing state.
    pub state: ProgressState,
    /// Unacknowledged appends.
    pub inflight_msgs: usize,
    /// Heard from within the current check-quorum period.
    pub recent_active: bool,
}

impl PeerStatus {
    fn from_progress(id: NodeId, p: &Progress) -> PeerStatus {
        PeerStatus {
            id,
            match_index: p.match_index,
            next_index: p.next_index,
            state: p.state,
            inflight_msgs: p.inflights.len(),
            recent_active: p.recent_active,
        }
    }
}

/// Everything inspectable about a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// Node id.
    pub id: NodeId,
    /// Current term.
    pub term: u64,
    /// Vote in the current term (0 = none).
    pub vote: NodeId,
    /// Commit index.
    pub commit: u64,
    /// Applied index (acknowledged by `advance`).
    pub applied: u64,
    /// Highest index reported durable.
    pub persisted: u64,
    /// First retained log index.
    pub first_index: u64,
    /// Last log index.
    pub last_index: u64,
    /// Role.
    pub role: Role,
    /// Known leader (0 = none).
    pub leader: NodeId,
    /// Membership in force.
    pub conf_state: ConfState,
    /// Index of the entry that set the membership in force.
    pub conf_index: u64,
    /// Leader only: each member's progress, ordered by id.
    pub progress: Vec<PeerStatus>,
    /// Leader only: transfer target in progress.
    pub transfer_target: Option<NodeId>,
}

impl<S: Storage> RaftNode<S> {
    /// The node's state.
    pub fn status(&self) -> Status {
        Status {
            id: self.id,
            term: self.term,
            vote: self.vote,
            commit: self.log.committed,
            applied: self.log.applied,
            persisted: self.log.persisted,
            first_index: self.log.first_index().unwrap_or(0),
            last_index: self.log.last_index().unwrap_or(0),
            role: self.role,
            leader: self.leader,
            conf_state: self.membership.current().clone(),
            conf_index: self.membership.current_index(),
            progress: self
                .progress
                .iter()
                .map(|(&id, p)| PeerStatus::from_progress(id, p))
                .collect(),
            transfer_target: self.lead.transfer_target,
        }
    }

    /// Role, cheaply.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Term, cheaply.
    pub fn term(&self) -> u64 {
        self.term
    }

    /// Known leader (0 = none), cheaply.
    pub fn leader(&self) -> NodeId {
        self.leader
    }

    /// Commit index, cheaply.
    pub fn commit(&self) -> u64 {
        self.log.committed
    }

    /// Term of the entry at `index` in this node's log, if held (for invariant checks).
    pub fn log_term(&self, index: u64) -> Option<u64> {
        self.log.term(index).ok()
    }

    /// Membership in force.
    pub fn conf_state(&self) -> &ConfState {
        self.membership.current()
    }
}
