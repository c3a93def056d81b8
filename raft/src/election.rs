//! Leader election: Pre-Vote, campaigns, vote granting and becoming leader (§5.2, §5.4.1,
//! thesis §9.6).

use std::sync::Arc;

use crate::error::Error;
use crate::membership::{vote_outcome, VoteOutcome};
use crate::message::{EntryKind, Message, MessageKind, NodeId, CAMPAIGN_TRANSFER, NO_NODE};
use crate::node::{RaftNode, Role};
use crate::progress::Progress;
use crate::storage::Storage;

impl<S: Storage> RaftNode<S> {
    /// Election timeout fired (or `TimeoutNow` arrived, `transfer == true`).
    pub(crate) fn start_election(&mut self, transfer: bool) -> Result<(), Error> {
        if self.role == Role::Leader || !self.promotable() {
            return Ok(());
        }
        if self.cfg.pre_vote && !transfer {
            self.become_pre_candidate()
        } else {
            self.become_candidate(transfer)
        }
    }

    fn become_pre_candidate(&mut self) -> Result<(), Error> {
        // Pre-Vote changes neither term nor vote: a node cut off from the cluster can retry
        // forever without inflating its term and deposing a healthy leader on return.
        let term = self.term;
        self.reset(term);
        self.role = Role::PreCandidate;
        self.votes.insert(self.id, true);
        self.request_votes(MessageKind::PreVote, self.term + 1, false)?;
        self.tally()
    }

    fn become_candidate(&mut self, transfer: bool) -> Result<(), Error> {
        let term = self.term + 1;
        self.reset(term);
        self.role = Role::Candidate;
        self.vote = self.id;
        // Our own vote counts once the new term and vote are durable (see `advance`):
        // otherwise a crash could let us vote again in this term for someone else.
        self.self_vote_pending = true;
        self.request_votes(MessageKind::Vote, self.term, transfer)
    }

    fn request_votes(&mut self, kind: MessageKind, term: u64, transfer: bool) -> Result<(), Error> {
        let last_index = self.log.last_index()?;
        let last_term = self.log.last_term()?;
        let voters: Vec<NodeId> = self.membership.current().voters.clone();
        let me = self.id;
        for v in voters.into_iter().filter(|&v| v != me) {
            let mut m = Message::new(kind, self.id, v, term);
            m.index = last_index;
            m.log_term = last_term;
            if transfer {
                m.context = CAMPAIGN_TRANSFER.to_vec();
            }
            self.send(m);
        }
        Ok(())
    }

    /// Records a vote (ours or a peer's) and acts on the outcome.
    pub(crate) fn record_vote(&mut self, from: NodeId, granted: bool) -> Result<(), Error> {
        self.votes.entry(from).or_insert(granted);
        self.tally()
    }

    fn tally(&mut self) -> Result<(), Error> {
        match vote_outcome(&self.membership.current().voters, &self.votes) {
            VoteOutcome::Won if self.role == Role::PreCandidate => self.become_candidate(false),
            VoteOutcome::Won => self.become_leader(),
            VoteOutcome::Lost => {
                let term = self.term;
                self.become_follower(term, NO_NODE);
                Ok(())
            }
            VoteOutcome::Pending => Ok(()),
        }
    }

    /// A (pre-)vote request of a term at least ours.
    pub(crate) fn handle_vote_request(&mut self, m: &Message) -> Result<(), Error> {
        let pre = m.kind == MessageKind::PreVote;
        let can_vote = self.vote == m.from
            || (self.vote == NO_NODE && self.leader == NO_NODE)
            || (pre && m.term > self.term);
        // A learner in our configuration may answer: being asked means the candidate's
        // newer configuration may already have promoted us, and refusing could leave that
        // configuration without a quorum. Only the candidate decides whose vote counts: it
        // counts voters of its own configuration, never learners.
        let grant = can_vote && self.log.is_up_to_date(m.index, m.log_term)?;
        let kind = if pre {
            MessageKind::PreVoteResponse
        } else {
            MessageKind::VoteResponse
        };
        // A granted pre-vote answers in the asked-for term, so the pre-candidate counts it;
        // a refusal carries our term so a stale pre-candidate catches up.
        let term = if grant { m.term } else { self.term };
        let mut resp = Message::new(kind, self.id, m.from, term);
        resp.reject = !grant;
        if grant && !pre {
            debug_assert_eq!(m.term, self.term, "step moved us to the candidate's term");
            self.election_elapsed = 0;
            self.vote = m.from;
        }
        self.send(resp);
        Ok(())
    }

    pub(crate) fn become_leader(&mut self) -> Result<(), Error> {
        debug_assert!(
            self.role == Role::Candidate,
            "only a candidate becomes leader"
        );
        let term = self.term;
        self.reset(term);
        self.role = Role::Leader;
        self.leader = self.id;
        let last = self.log.last_index()?;
        let members: Vec<NodeId> = self.membership.current().members().collect();
        for id in members {
            let mut pr = Progress::new(last + 1, self.cfg.max_inflight_msgs);
            if id == self.id {
                // The leader counts only what it has made durable itself.
                pr.match_index = self.log.persisted;
                pr.recent_active = true;
            }
            self.progress.insert(id, pr);
        }
        // Commit an entry of this term (a no-op) so earlier entries commit (Figure 8) and
        // reads and membership changes become safe.
        let (index, _) = self.append_as_leader(EntryKind::Normal, Arc::from(&[][..]))?;
        self.lead.term_start_index = index;
        Ok(())
    }
}
