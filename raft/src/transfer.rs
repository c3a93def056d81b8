//! Leadership transfer (thesis §3.10): stop taking proposals, bring the target's log up to
//! date, then tell it to campaign at once with `TimeoutNow`. Abandoned after one election
//! timeout if it has not happened.

use crate::error::{DropReason, Error};
use crate::message::{Message, MessageKind, NodeId, NO_NODE};
use crate::node::{RaftNode, Role};
use crate::storage::Storage;

impl<S: Storage> RaftNode<S> {
    /// Asks for leadership to move to `target`. On a follower the request is forwarded to
    /// the leader (unconfirmed: watch the status for the leader to change).
    pub fn transfer_leader(&mut self, target: NodeId) -> Result<(), Error> {
        match self.role {
            Role::Leader => self.leader_transfer(target),
            _ if self.leader == NO_NODE => Err(DropReason::NoLeader.into()),
            _ => {
                let mut m = Message::new(MessageKind::TransferLeader, self.id, self.leader, 0);
                m.index = target;
                self.send(m);
                Ok(())
            }
        }
    }

    pub(crate) fn leader_transfer(&mut self, target: NodeId) -> Result<(), Error> {
        if target == self.id {
            return Err(DropReason::InvalidTransferTarget {
                target,
                why: "already the leader",
            }
            .into());
        }
        if !self.membership.current().is_voter(target) {
            return Err(DropReason::InvalidTransferTarget {
                target,
                why: "not a voter",
            }
            .into());
        }
        if self.lead.transfer_target == Some(target) {
            return Ok(());
        }
        self.lead.transfer_target = Some(target);
        // The transfer gets one election timeout to finish (see `tick_leader`).
        self.election_elapsed = 0;
        let last = self.log.last_index()?;
        let caught_up = self
            .progress
            .get(&target)
            .is_some_and(|p| p.match_index == last);
        if caught_up {
            self.send_timeout_now(target);
        } else {
            self.send_append(target, true)?;
        }
        Ok(())
    }

    pub(crate) fn send_timeout_now(&mut self, to: NodeId) {
        self.lead.timeout_now_sent = true;
        let m = Message::new(MessageKind::TimeoutNow, self.id, to, self.term);
        self.send(m);
    }
}
