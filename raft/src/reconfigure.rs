//! Membership changes, one server at a time (thesis §4.1–4.3; see the crate docs for why
//! not joint consensus).
//!
//! Rules that make single-server changes safe here:
//! - a node uses the newest configuration in its log as soon as it is appended;
//! - the leader proposes a change only when the previous one is committed, and only after
//!   it has committed an entry of its own term (this closes the known hole where a new
//!   leader's uncommitted change races one from a previous term);
//! - a leader removed by a change keeps leading, not counting itself, until the change
//!   commits, then steps down.

use crate::error::{DropReason, Error};
use crate::message::{ConfChange, EntryKind, NodeId, NO_NODE};
use crate::node::{Proposed, RaftNode, Role};
use crate::progress::Progress;
use crate::storage::Storage;

impl<S: Storage> RaftNode<S> {
    /// Proposes one membership change. Only the leader takes them (the caller redirects).
    pub fn propose_conf_change(&mut self, change: ConfChange) -> Result<Proposed, Error> {
        self.propose_conf_change_with_context(change, &[])
    }

    /// Proposes one membership change carrying the caller's `context` in its entry (see the
    /// crate docs' format table); an empty context writes the shorter version 1 format.
    pub fn propose_conf_change_with_context(
        &mut self,
        change: ConfChange,
        context: &[u8],
    ) -> Result<Proposed, Error> {
        if self.role != Role::Leader {
            return Err(match self.leader {
                NO_NODE => DropReason::NoLeader,
                leader => DropReason::NotLeader { leader },
            }
            .into());
        }
        let pending_index = self.membership.current_index();
        if pending_index > self.log.committed {
            return Err(DropReason::ConfChangeInProgress { pending_index }.into());
        }
        if self.log.committed < self.lead.term_start_index {
            return Err(DropReason::LeaderNotReady.into());
        }
        self.validate_change(&change)?;
        let data = if context.is_empty() {
            change.encode()
        } else {
            change.encode_with_context(context)
        };
        let (index, term) = self.append_as_leader(EntryKind::ConfChange, data.into())?;
        Ok(Proposed::Appended { index, term })
    }

    fn validate_change(&self, change: &ConfChange) -> Result<(), Error> {
        let conf = self.membership.current();
        let invalid = |why: &str| Err(DropReason::InvalidConfChange(why.to_string()).into());
        match *change {
            ConfChange::AddVoter(id) if id == NO_NODE => invalid("node id 0 is reserved"),
            ConfChange::AddVoter(id) if conf.is_voter(id) => invalid("already a voter"),
            ConfChange::AddVoter(id) if conf.is_learner(id) => {
                // Promote only a learner that has caught up, so the new voter does not leave
                // the cluster unable to commit while it catches up (thesis §4.2.1).
                let last = self.log.last_index()?;
                let matched = self.progress.get(&id).map_or(0, |p| p.match_index);
                let lag_entries = last.saturating_sub(matched);
                if lag_entries > self.cfg.max_promotion_lag_entries {
                    return Err(DropReason::LearnerBehind {
                        node: id,
                        lag_entries,
                    }
                    .into());
                }
                Ok(())
            }
            ConfChange::AddVoter(_) => Ok(()),
            ConfChange::AddLearner(id) if id == NO_NODE => invalid("node id 0 is reserved"),
            ConfChange::AddLearner(id) if conf.contains(id) => invalid("already a member"),
            ConfChange::AddLearner(_) => Ok(()),
            ConfChange::RemoveNode(id) if !conf.contains(id) => invalid("not a member"),
            ConfChange::RemoveNode(id) if conf.voters == [id] => {
                invalid("cannot remove the last voter")
            }
            ConfChange::RemoveNode(_) => Ok(()),
        }
    }

    /// The configuration in force changed (an entry was appended or truncated).
    pub(crate) fn on_membership_changed(&mut self) -> Result<(), Error> {
        if self.role != Role::Leader {
            return Ok(());
        }
        let last = self.log.last_index()?;
        let members: Vec<NodeId> = self.membership.current().members().collect();
        for id in members {
            self.progress
                .entry(id)
                .or_insert_with(|| Progress::new(last + 1, self.cfg.max_inflight_msgs));
        }
        if let Some(target) = self.lead.transfer_target {
            if !self.membership.current().is_voter(target) {
                self.lead.transfer_target = None;
            }
        }
        // A smaller quorum may already have the newest entries.
        if self.maybe_commit_leader()? {
            self.lead.broadcast_pending = true;
        }
        Ok(())
    }

    /// The configuration in force is committed.
    pub(crate) fn on_membership_committed(&mut self) -> Result<(), Error> {
        if self.role != Role::Leader {
            return Ok(());
        }
        let conf = self.membership.current().clone();
        // Removed members kept their progress until now so they could learn of the removal.
        self.progress.retain(|&id, _| conf.contains(id));
        if !conf.is_voter(self.id) {
            let term = self.term;
            self.become_follower(term, NO_NODE);
        }
        Ok(())
    }
}
