//! The output side: what the caller must persist, send and apply, and the acknowledgement
//! that it did.
//!
//! The caller's loop, per `Ready`:
//! 1. send `messages` (they do not depend on this node's durability; a leader's appends go
//!    out in parallel with its own disk write);
//! 2. install `snapshot` (if any), then durably write `hard_state` and `entries`;
//! 3. send `persisted_messages` (votes and acknowledgements, which promise durability);
//! 4. apply `committed_entries` in order; serve `read_states` once applied reaches them;
//! 5. call [`RaftNode::advance`]. Only then does the leader count its own log as durable.
//!
//! Then check [`RaftNode::has_ready`] again: entries made durable by this round become
//! appliable (a node applies only what it holds durably), and acknowledgements may have
//! advanced the commit index.

use crate::error::Error;
use crate::message::{Entry, HardState, Message, SnapshotMeta};
use crate::node::{RaftNode, Role};
use crate::read_index::ReadState;
use crate::storage::Storage;

/// Everything a node asks its caller to do.
#[derive(Debug, Default, Clone)]
pub struct Ready {
    /// Hard state to persist, if it changed.
    pub hard_state: Option<HardState>,
    /// Entries to append durably (they may replace a suffix of the stored log).
    pub entries: Vec<Entry>,
    /// A snapshot from the leader to install before anything else.
    pub snapshot: Option<SnapshotMeta>,
    /// Entries to apply, in order.
    pub committed_entries: Vec<Entry>,
    /// Messages to send now.
    pub messages: Vec<Message>,
    /// Messages to send only after `hard_state`, `entries` and `snapshot` are durable.
    pub persisted_messages: Vec<Message>,
    /// Reads confirmed: serve each once the applied index reaches its `index`.
    pub read_states: Vec<ReadState>,
    /// Reads that will never be confirmed (leadership changed); the caller retries them.
    pub dropped_reads: Vec<Vec<u8>>,
}

impl Ready {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.hard_state.is_none()
            && self.entries.is_empty()
            && self.snapshot.is_none()
            && self.committed_entries.is_empty()
            && self.messages.is_empty()
            && self.persisted_messages.is_empty()
            && self.read_states.is_empty()
            && self.dropped_reads.is_empty()
    }
}

/// What an outstanding `Ready` handed out, so `advance` acknowledges exactly that.
#[derive(Debug, Clone)]
pub(crate) struct ReadyAck {
    hard_state: Option<HardState>,
    last_entry: Option<(u64, u64)>,
    snapshot_index: Option<u64>,
    applied_to: Option<u64>,
}

impl<S: Storage> RaftNode<S> {
    /// Whether `ready()` has anything to hand out.
    pub fn has_ready(&self) -> bool {
        (self.role == Role::Leader && self.lead.broadcast_pending)
            || self.hard_state() != self.prev_hard_state
            || !self.log.unstable.entries.is_empty()
            || self.log.unstable.snapshot.is_some()
            || self.log.has_next_committed_entries()
            || !self.msgs.is_empty()
            || !self.msgs_after_persist.is_empty()
            || !self.read_states.is_empty()
            || !self.dropped_reads.is_empty()
    }

    /// Collects the work for the caller. Call [`advance`](RaftNode::advance) once it is done
    /// before the next `ready()`; inputs (`step`, `tick`, ...) may still come in between.
    pub fn ready(&mut self) -> Result<Ready, Error> {
        if self.in_flight.is_some() {
            return Err(Error::ReadyNotAdvanced);
        }
        if self.role == Role::Leader && self.lead.broadcast_pending {
            // Batching: every proposal since the last Ready goes out in one append per peer.
            self.lead.broadcast_pending = false;
            self.broadcast_append()?;
        }
        let hs = self.hard_state();
        let hard_state = (hs != self.prev_hard_state).then_some(hs);
        self.prev_hard_state = hs;
        let entries = self.log.unstable.entries.clone();
        let snapshot = self.log.unstable.snapshot.clone();
        let committed_entries = self.log.next_committed_entries(self.cfg.max_apply_bytes)?;
        if let Some(last) = committed_entries.last() {
            self.log.applying = last.index;
        }
        self.in_flight = Some(ReadyAck {
            hard_state,
            last_entry: entries.last().map(|e| (e.index, e.term)),
            snapshot_index: snapshot.as_ref().map(|s| s.index),
            applied_to: committed_entries.last().map(|e| e.index),
        });
        Ok(Ready {
            hard_state,
            entries,
            snapshot,
            committed_entries,
            messages: std::mem::take(&mut self.msgs),
            persisted_messages: std::mem::take(&mut self.msgs_after_persist),
            read_states: std::mem::take(&mut self.read_states),
            dropped_reads: std::mem::take(&mut self.dropped_reads),
        })
    }

    /// Acknowledges the last `Ready`: its snapshot, hard state and entries are durable and its
    /// committed entries applied.
    pub fn advance(&mut self) -> Result<(), Error> {
        let Some(ack) = self.in_flight.take() else {
            return Ok(());
        };
        if let Some(index) = ack.snapshot_index {
            self.log.stable_snapshot_to(index);
        }
        if let Some((index, term)) = ack.last_entry {
            self.log.stable_to(index, term);
        }
        if let Some(index) = ack.applied_to {
            self.log.applied_to(index);
        }
        match self.role {
            Role::Leader => {
                let persisted = self.log.persisted;
                let me = self.id;
                if let Some(pr) = self.progress.get_mut(&me) {
                    pr.maybe_update(persisted);
                }
                if self.maybe_commit_leader()? {
                    self.lead.broadcast_pending = true;
                }
            }
            Role::Candidate if self.self_vote_pending => {
                let ours = ack
                    .hard_state
                    .is_some_and(|hs| hs.term == self.term && hs.vote == self.id);
                if ours {
                    self.self_vote_pending = false;
                    self.record_vote(self.id, true)?;
                }
            }
            _ => {}
        }
        Ok(())
    }
}
