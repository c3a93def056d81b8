//! Linearizable reads without writing to the log (thesis §6.4).
//!
//! The leader queues each read with the commit index at the moment it arrived (or later),
//! then confirms it is still leader by a heartbeat round answered by a quorum. Rounds are
//! numbered; a heartbeat carries the newest round number and its response echoes it, so one
//! answered round confirms every read queued at or before it. At most one round is open at a
//! time: reads arriving meanwhile wait for the next round, which is how many reads share one
//! round trip.

use std::collections::VecDeque;

use crate::config::ReadMode;
use crate::error::{DropReason, Error};
use crate::membership::quorum_index;
use crate::message::{Message, MessageKind, NodeId, NO_NODE};
use crate::node::{RaftNode, Role};
use crate::storage::Storage;

/// A confirmed read: once `applied >= index`, the read named by `context` may be served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadState {
    /// Index the state machine must reach before the read is served.
    pub index: u64,
    /// The caller's read request id, as passed to `read_index`.
    pub context: Vec<u8>,
}

/// One queued read on the leader.
#[derive(Clone, Debug)]
pub(crate) struct PendingRead {
    /// Read index (commit index when the read's round started).
    pub(crate) index: u64,
    pub(crate) context: Vec<u8>,
    /// Who asked: this node, or a follower that forwarded the read.
    pub(crate) requester: NodeId,
    /// The round that confirms this read; 0 until the round starts.
    pub(crate) round: u64,
}

/// Leader-side queue of reads waiting for confirmation.
#[derive(Debug, Default)]
pub(crate) struct ReadIndexQueue {
    /// Oldest first; rounds are non-decreasing along the queue, 0 (not started) at the end.
    pending: VecDeque<PendingRead>,
}

impl ReadIndexQueue {
    pub(crate) fn len(&self) -> usize {
        self.pending.len()
    }

    pub(crate) fn clear(&mut self) -> Vec<PendingRead> {
        self.pending.drain(..).collect()
    }

    pub(crate) fn push(&mut self, context: Vec<u8>, requester: NodeId) {
        self.pending.push_back(PendingRead {
            index: 0,
            context,
            requester,
            round: 0,
        });
    }

    /// Whether a round is started and not yet confirmed.
    pub(crate) fn round_open(&self) -> bool {
        self.pending.front().is_some_and(|r| r.round != 0)
    }

    /// Whether some read waits for a round to start.
    pub(crate) fn has_unstarted(&self) -> bool {
        self.pending.back().is_some_and(|r| r.round == 0)
    }

    /// Puts every not-yet-started read in heartbeat round `round`, fixing their index at
    /// `commit` (at least the commit index when each read arrived, which is what makes the
    /// read linearizable).
    pub(crate) fn start_round(&mut self, round: u64, commit: u64) {
        for r in self.pending.iter_mut().rev() {
            if r.round != 0 {
                break;
            }
            r.round = round;
            r.index = commit;
        }
    }

    /// Releases every read whose round is `<= confirmed_round`.
    pub(crate) fn confirm(&mut self, confirmed_round: u64) -> Vec<PendingRead> {
        let mut out = Vec::new();
        while self
            .pending
            .front()
            .is_some_and(|r| r.round != 0 && r.round <= confirmed_round)
        {
            if let Some(r) = self.pending.pop_front() {
                out.push(r);
            }
        }
        out
    }
}

impl<S: Storage> RaftNode<S> {
    /// Asks for a linearizable read named by `context`. The answer arrives as a
    /// [`ReadState`] in a later `Ready` (or in `Ready::dropped_reads` if leadership is lost
    /// first). A read forwarded to the leader may be lost with the network: callers time out
    /// and retry.
    pub fn read_index(&mut self, context: Vec<u8>) -> Result<(), Error> {
        match self.role {
            Role::Leader => self.leader_read_index(context, self.id),
            _ if self.leader == NO_NODE => Err(DropReason::NoLeader.into()),
            _ => {
                let mut m = Message::new(MessageKind::ReadIndex, self.id, self.leader, 0);
                m.context = context;
                self.send(m);
                Ok(())
            }
        }
    }

    /// Leader: takes a read from `requester` (itself or a follower).
    pub(crate) fn leader_read_index(
        &mut self,
        context: Vec<u8>,
        requester: NodeId,
    ) -> Result<(), Error> {
        if self.reads.len() >= self.cfg.max_pending_reads {
            let pending = self.reads.len();
            if requester == self.id {
                return Err(DropReason::TooManyPendingReads { pending }.into());
            }
            self.answer_read(requester, context, None);
            return Ok(());
        }
        if self.ready_for_reads() && self.lease_valid() {
            let index = self.log.committed;
            self.answer_read(requester, context, Some(index));
            return Ok(());
        }
        self.reads.push(context, requester);
        if self.ready_for_reads() && !self.reads.round_open() {
            self.broadcast_heartbeat()?;
        }
        Ok(())
    }

    /// The leader has committed an entry of its term, so its commit index is at least every
    /// earlier leader's (leader completeness) and may be used as a read index.
    pub(crate) fn ready_for_reads(&self) -> bool {
        self.role == Role::Leader && self.log.committed >= self.lead.term_start_index
    }

    /// Lease reads: valid while no other node can have become leader. Followers ignore
    /// candidates for `election_timeout_ticks` after hearing a heartbeat, and they heard the
    /// heartbeat of the confirmed round after the leader sent it, so the lease runs from the
    /// send tick for `election_timeout_ticks - lease_clock_drift_ticks` of the leader's ticks.
    pub(crate) fn lease_valid(&self) -> bool {
        if self.cfg.effective_read_mode() != ReadMode::LeaseBased
            || self.lead.timeout_now_sent
            || self.lead.transfer_target.is_some()
        {
            return false;
        }
        let span = u64::from(
            self.cfg
                .election_timeout_ticks
                .saturating_sub(self.cfg.lease_clock_drift_ticks),
        );
        self.lead
            .lease_start_tick
            .is_some_and(|start| self.lead.ticks < start + span)
    }

    fn answer_read(&mut self, requester: NodeId, context: Vec<u8>, index: Option<u64>) {
        if requester == self.id {
            match index {
                Some(index) => self.read_states.push(ReadState { index, context }),
                None => self.dropped_reads.push(context),
            }
            return;
        }
        let mut m = Message::new(
            MessageKind::ReadIndexResponse,
            self.id,
            requester,
            self.term,
        );
        m.index = index.unwrap_or(0);
        m.reject = index.is_none();
        m.context = context;
        self.send(m);
    }

    /// Releases the reads whose round a quorum of voters has acknowledged.
    pub(crate) fn confirm_read_rounds(&mut self) -> Result<(), Error> {
        let confirmed = quorum_index(&self.membership.current().voters, |id| {
            self.progress.get(&id).map_or(0, |p| p.read_round_acked)
        });
        if confirmed <= self.lead.confirmed_round {
            return Ok(());
        }
        self.lead.confirmed_round = confirmed;
        if let Some(&(_, tick)) = self
            .lead
            .round_sent_at
            .iter()
            .find(|(round, _)| *round == confirmed)
        {
            self.lead.lease_start_tick = Some(tick);
        }
        for r in self.reads.confirm(confirmed) {
            debug_assert!(
                r.index <= self.log.committed,
                "read index never passes commit"
            );
            self.answer_read(r.requester, r.context, Some(r.index));
        }
        if self.ready_for_reads() && self.reads.has_unstarted() && !self.reads.round_open() {
            self.broadcast_heartbeat()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_round_confirms_every_read_queued_before_it() {
        let mut q = ReadIndexQueue::default();
        q.push(b"a".to_vec(), 1);
        q.push(b"b".to_vec(), 1);
        q.start_round(1, 5);
        let (r1, r2) = (1, 2);
        q.push(b"c".to_vec(), 2);
        assert!(q.round_open());
        assert!(q.has_unstarted());
        q.start_round(r2, 7);
        let done = q.confirm(r1);
        assert_eq!(done.len(), 2);
        assert!(done.iter().all(|r| r.index == 5));
        let done = q.confirm(r2);
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].index, 7);
        assert!(!q.has_unstarted());
    }
}
