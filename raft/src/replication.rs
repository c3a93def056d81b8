//! Log replication: appends with the consistency check, fast backtracking, pipelining,
//! heartbeats, snapshots for followers behind the compaction point, and the commit rule.

use crate::error::{Error, StorageError};
use crate::membership::quorum_index;
use crate::message::{Message, MessageKind, NodeId};
use crate::node::{RaftNode, Role};
use crate::progress::ProgressState;
use crate::storage::Storage;

impl<S: Storage> RaftNode<S> {
    pub(crate) fn tick_leader(&mut self) -> Result<(), Error> {
        self.heartbeat_elapsed += 1;
        self.election_elapsed += 1;
        self.lead.ticks += 1;
        if self.election_elapsed >= self.cfg.election_timeout_ticks {
            self.election_elapsed = 0;
            if self.cfg.check_quorum && !self.quorum_recently_active() {
                // Cut off from a quorum: stop pretending, so clients go elsewhere.
                let term = self.term;
                self.become_follower(term, crate::message::NO_NODE);
                return Ok(());
            }
            let me = self.id;
            for (&id, pr) in self.progress.iter_mut() {
                if id != me {
                    pr.recent_active = false;
                }
                // A snapshot whose outcome was never reported is presumed lost after a full
                // election timeout without news; probing again is always safe.
                if let ProgressState::Snapshot { .. } = pr.state {
                    if pr.snapshot_stale {
                        pr.become_probe();
                    } else {
                        pr.snapshot_stale = true;
                    }
                }
            }
            // A transfer that did not finish within an election timeout is abandoned.
            self.lead.transfer_target = None;
        }
        if self.heartbeat_elapsed >= self.cfg.heartbeat_interval_ticks {
            self.heartbeat_elapsed = 0;
            self.broadcast_heartbeat()?;
        }
        Ok(())
    }

    fn quorum_recently_active(&self) -> bool {
        let voters = &self.membership.current().voters;
        let active = voters
            .iter()
            .filter(|v| self.progress.get(v).is_some_and(|p| p.recent_active))
            .count();
        active > voters.len() / 2
    }

    /// Sends new entries (or just the commit index) to every follower that is not paused.
    pub(crate) fn broadcast_append(&mut self) -> Result<(), Error> {
        let peers: Vec<NodeId> = self.progress.keys().copied().collect();
        let me = self.id;
        for id in peers.into_iter().filter(|&id| id != me) {
            if self.send_append(id, true)? {
                while self.send_append(id, false)? {}
            }
        }
        Ok(())
    }

    /// Sends the next append to `to` if its pacing allows. Returns whether one was sent.
    pub(crate) fn send_append(&mut self, to: NodeId, allow_empty: bool) -> Result<bool, Error> {
        let Some(pr) = self.progress.get(&to) else {
            return Ok(false);
        };
        if pr.is_paused() {
            return Ok(false);
        }
        let next = pr.next_index;
        let prev = next - 1;
        let last = self.log.last_index()?;
        let prev_term = match self.log.term(prev) {
            Ok(t) => t,
            Err(StorageError::Compacted { .. }) => return self.send_snapshot(to),
            Err(e) => return Err(e.into()),
        };
        let entries = match self.log.entries(next, last + 1, self.cfg.max_msg_bytes) {
            Ok(e) => e,
            Err(StorageError::Compacted { .. }) => return self.send_snapshot(to),
            Err(e) => return Err(e.into()),
        };
        if entries.is_empty() && !allow_empty {
            return Ok(false);
        }
        let sent_to = entries.last().map_or(prev, |e| e.index);
        let mut m = Message::new(MessageKind::Append, self.id, to, self.term);
        m.index = prev;
        m.log_term = prev_term;
        m.commit = self.log.committed;
        let nonempty = !entries.is_empty();
        m.entries = entries;
        if let Some(pr) = self.progress.get_mut(&to) {
            match pr.state {
                ProgressState::Replicate if nonempty => pr.sent_entries(sent_to),
                ProgressState::Replicate => {}
                _ => pr.sent_entries(sent_to),
            }
        }
        self.send(m);
        Ok(true)
    }

    fn send_snapshot(&mut self, to: NodeId) -> Result<bool, Error> {
        let meta = self.log.storage.snapshot()?;
        let mut m = Message::new(MessageKind::Snapshot, self.id, to, self.term);
        m.index = meta.index;
        m.log_term = meta.term;
        if let Some(pr) = self.progress.get_mut(&to) {
            pr.become_snapshot(meta.index);
        }
        m.snapshot = Some(meta);
        self.send(m);
        Ok(true)
    }

    /// Follower: the consistency check and append (§5.3).
    pub(crate) fn handle_append(&mut self, m: Message) -> Result<(), Error> {
        check_append_shape(&m)?;
        let mut resp = Message::new(MessageKind::AppendResponse, self.id, m.from, self.term);
        if m.index < self.log.committed {
            // Everything up to our commit index already matches the leader.
            resp.index = self.log.committed;
            self.send(resp);
            return Ok(());
        }
        let last_new = m.index + m.entries.len() as u64;
        let appended = match self
            .log
            .maybe_append(m.index, m.log_term, m.commit, &m.entries)
        {
            Err(Error::InvalidMessage { why, .. }) => {
                return Err(Error::InvalidMessage { from: m.from, why })
            }
            other => other?,
        };
        match appended {
            Some(first_new) => {
                if let Some(first_new) = first_new {
                    let skip = (first_new - m.index - 1) as usize;
                    if self.membership.on_append(&m.entries[skip..]) {
                        self.on_membership_changed()?;
                    }
                }
                self.membership.compact_to(self.log.committed);
                resp.index = last_new;
            }
            None => {
                // Fast backtracking: point the leader at the last entry that could match,
                // skipping the whole conflicting term instead of one entry per round trip.
                let probe = m.index.min(self.log.last_index()?);
                let (hint_index, hint_term) = self.log.find_conflict_by_term(probe, m.log_term)?;
                resp.reject = true;
                resp.index = m.index;
                resp.reject_hint = hint_index;
                resp.log_term = hint_term;
            }
        }
        self.send(resp);
        Ok(())
    }

    pub(crate) fn handle_heartbeat(&mut self, m: &Message) -> Result<(), Error> {
        // The leader sends at most our match index, so this never runs past our log.
        self.log.commit_to(m.commit);
        self.membership.compact_to(self.log.committed);
        let mut resp = Message::new(MessageKind::HeartbeatResponse, self.id, m.from, self.term);
        resp.context = m.context.clone();
        self.send(resp);
        Ok(())
    }

    /// Follower: a snapshot from the leader (its bytes were delivered by the caller).
    pub(crate) fn handle_snapshot(&mut self, m: &Message) -> Result<(), Error> {
        let Some(meta) = m.snapshot.clone() else {
            return Err(Error::InvalidMessage {
                from: m.from,
                why: "snapshot message without metadata",
            });
        };
        let mut resp = Message::new(MessageKind::AppendResponse, self.id, m.from, self.term);
        if meta.index <= self.log.committed {
            resp.index = self.log.committed;
        } else if self.log.match_term(meta.index, meta.term) {
            // We already have the snapshot's entries: just learn that they are committed.
            self.log.commit_to(meta.index);
            self.membership.compact_to(self.log.committed);
            resp.index = self.log.committed;
        } else {
            self.membership.reset(meta.index, meta.conf_state.clone());
            self.log.restore(meta);
            resp.index = self.log.committed;
        }
        self.send(resp);
        Ok(())
    }

    pub(crate) fn handle_append_response(&mut self, m: &Message) -> Result<(), Error> {
        let last = self.log.last_index()?;
        if !m.reject && m.index > last {
            return Err(Error::InvalidMessage {
                from: m.from,
                why: "acknowledges entries the leader does not have",
            });
        }
        let Some(pr) = self.progress.get_mut(&m.from) else {
            return Ok(());
        };
        pr.recent_active = true;
        if m.reject {
            let retry_from = if m.log_term > 0 {
                self.log.find_conflict_by_term(m.reject_hint, m.log_term)?.0 + 1
            } else {
                m.reject_hint + 1
            };
            let Some(pr) = self.progress.get_mut(&m.from) else {
                return Ok(());
            };
            if pr.maybe_decrease_to(m.index, retry_from) {
                if pr.state == ProgressState::Replicate {
                    pr.become_probe();
                }
                self.send_append(m.from, true)?;
            }
            return Ok(());
        }
        if pr.maybe_update(m.index) {
            match pr.state {
                ProgressState::Probe => pr.become_replicate(),
                ProgressState::Snapshot { pending_index } if pr.match_index >= pending_index => {
                    pr.become_probe();
                    pr.become_replicate();
                }
                ProgressState::Snapshot { .. } => {}
                ProgressState::Replicate => pr.inflights.free_to(m.index),
            }
            let match_index = pr.match_index;
            if self.maybe_commit_leader()? {
                self.lead.broadcast_pending = true;
            }
            if self.role != Role::Leader {
                return Ok(());
            }
            // Pipelining: keep the window full.
            while self.send_append(m.from, false)? {}
            if self.lead.transfer_target == Some(m.from) && match_index == last {
                self.send_timeout_now(m.from);
            }
        } else if pr.state == ProgressState::Replicate {
            pr.inflights.free_to(m.index);
        }
        Ok(())
    }

    pub(crate) fn handle_heartbeat_response(&mut self, m: &Message) -> Result<(), Error> {
        let last = self.log.last_index()?;
        let Some(pr) = self.progress.get_mut(&m.from) else {
            return Ok(());
        };
        pr.recent_active = true;
        pr.probe_sent = false;
        if pr.state == ProgressState::Replicate && pr.inflights.full() {
            // Appends may have been lost; let one more through so a rejection (and with it
            // a probe from the match point) can happen instead of waiting forever.
            pr.inflights.free_first();
        }
        if let Some(round) = decode_round(&m.context) {
            pr.read_round_acked = pr.read_round_acked.max(round);
        }
        if pr.match_index < last {
            // Even with nothing new to send: if appends in flight were lost, the follower
            // rejects this one and replication restarts from its match point.
            self.send_append(m.from, true)?;
        }
        self.confirm_read_rounds()
    }

    /// Leader: one heartbeat round (also a read-confirmation round).
    pub(crate) fn broadcast_heartbeat(&mut self) -> Result<(), Error> {
        self.lead.heartbeat_round += 1;
        let round = self.lead.heartbeat_round;
        if self.lead.round_sent_at.len() >= crate::node::MAX_TRACKED_ROUNDS {
            self.lead.round_sent_at.pop_front();
        }
        self.lead.round_sent_at.push_back((round, self.lead.ticks));
        if self.ready_for_reads() {
            self.reads.start_round(round, self.log.committed);
        }
        let me = self.id;
        if let Some(pr) = self.progress.get_mut(&me) {
            pr.read_round_acked = round;
        }
        let peers: Vec<(NodeId, u64)> = self
            .progress
            .iter()
            .filter(|(&id, _)| id != me)
            .map(|(&id, pr)| (id, pr.match_index))
            .collect();
        for (id, match_index) in peers {
            let mut m = Message::new(MessageKind::Heartbeat, me, id, self.term);
            m.commit = match_index.min(self.log.committed);
            m.context = round.to_le_bytes().to_vec();
            self.send(m);
        }
        self.confirm_read_rounds()
    }

    /// Leader: commit what a quorum has durably (Figure 8: only entries of this term count).
    pub(crate) fn maybe_commit_leader(&mut self) -> Result<bool, Error> {
        let q = quorum_index(&self.membership.current().voters, |id| {
            self.progress.get(&id).map_or(0, |p| p.match_index)
        });
        if !self.log.maybe_commit(q, self.term) {
            return Ok(false);
        }
        self.on_commit_advanced()?;
        Ok(true)
    }

    fn on_commit_advanced(&mut self) -> Result<(), Error> {
        self.membership.compact_to(self.log.committed);
        if self.membership.current_index() <= self.log.committed {
            self.on_membership_committed()?;
        }
        if self.role == Role::Leader && self.ready_for_reads() && self.reads.has_unstarted() {
            self.broadcast_heartbeat()?;
        }
        Ok(())
    }

    /// The caller's report on a snapshot it was asked to send to `to`.
    pub fn report_snapshot(&mut self, to: NodeId, delivered: bool) {
        if let Some(pr) = self.progress.get_mut(&to) {
            if let ProgressState::Snapshot { pending_index } = pr.state {
                if !delivered {
                    // Retry from what is known to match; a new snapshot follows if needed.
                    pr.state = ProgressState::Probe;
                    pr.next_index = pr.match_index + 1;
                    pr.probe_sent = false;
                } else {
                    debug_assert!(pending_index > 0, "snapshots cover a non-empty prefix");
                    pr.become_probe();
                }
            }
        }
    }

    /// The caller could not reach `to`: stop streaming and probe instead.
    pub fn report_unreachable(&mut self, to: NodeId) {
        if let Some(pr) = self.progress.get_mut(&to) {
            if pr.state == ProgressState::Replicate {
                pr.become_probe();
            }
        }
    }
}

/// Entries must follow `index` contiguously, with terms that never decrease and never pass
/// the sender's term; anything else is a corrupt message, refused before it touches the log.
fn check_append_shape(m: &Message) -> Result<(), Error> {
    let bad = |why| Err(Error::InvalidMessage { from: m.from, why });
    let mut prev_term = m.log_term;
    for (e, offset) in m.entries.iter().zip(1u64..) {
        if m.index.checked_add(offset) != Some(e.index) {
            return bad("append entries are not contiguous after index");
        }
        if e.term < prev_term || e.term > m.term {
            return bad("append entry terms out of order");
        }
        prev_term = e.term;
    }
    Ok(())
}

/// A heartbeat's context is its round number (8 bytes little endian); anything else is no
/// round (ignored, never trusted).
pub(crate) fn decode_round(context: &[u8]) -> Option<u64> {
    let bytes: [u8; 8] = context.try_into().ok()?;
    Some(u64::from_le_bytes(bytes))
}
