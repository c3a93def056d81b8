//! Safety invariants checked as the run goes, and liveness after healing.

use super::*;

impl Sim {
    pub(crate) fn check_outgoing(&mut self, id: NodeId, conf: &ConfState, m: &Message) -> Check {
        match m.kind {
            MessageKind::Vote | MessageKind::PreVote if !conf.is_voter(id) => {
                return fail(format!("node {id} campaigned while not a voter (learner)"));
            }
            MessageKind::VoteResponse if !m.reject => {
                self.grants.entry((m.term, m.to)).or_default().insert(id);
            }
            MessageKind::Append if m.entries.len() > 1 => {
                let bytes: u64 = m.entries.iter().map(|e| e.size_bytes()).sum();
                if bytes > self.nodes[&id].cfg.max_msg_bytes {
                    return fail(format!("node {id} sent an append of {bytes} bytes"));
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Election safety and leader completeness, whenever a node leads.
    pub(crate) fn check_leader(&mut self, id: NodeId) -> Check {
        let Some(raft) = self.nodes[&id].raft.as_ref() else {
            return Ok(());
        };
        if raft.role() != Role::Leader {
            return Ok(());
        }
        let term = raft.term();
        match self.leaders.get(&term) {
            Some(&other) if other != id => {
                return fail(format!(
                    "election safety: nodes {other} and {id} both lead term {term}"
                ));
            }
            Some(_) => return Ok(()),
            None => {}
        }
        self.leaders.insert(term, id);
        self.stats.elections += 1;
        let conf = raft.conf_state();
        if !conf.is_voter(id) {
            return fail(format!("node {id} became leader without being a voter"));
        }
        // Learners never vote: the winner needs a quorum of grants from its voters alone.
        let granted = self.grants.get(&(term, id));
        let voter_grants = conf
            .voters
            .iter()
            .filter(|&&v| v == id || granted.is_some_and(|g| g.contains(&v)))
            .count();
        if voter_grants <= conf.voters.len() / 2 {
            return fail(format!(
                "node {id} leads term {term} with grants {granted:?} from voters {:?}",
                conf.voters
            ));
        }
        let first = raft.status().first_index;
        for (&index, &(t, _)) in self.applied.range(first..) {
            if raft.log_term(index) != Some(t) {
                return fail(format!(
                    "leader completeness: leader {id} of term {term} lacks committed entry {index} (term {t})"
                ));
            }
        }
        Ok(())
    }

    pub(crate) fn members(&self) -> Vec<NodeId> {
        // Membership as the newest leader (highest term) sees it.
        let mut best: Option<(u64, &ConfState)> = None;
        for n in self.nodes.values() {
            if let Some(r) = &n.raft {
                if r.role() == Role::Leader && best.is_none_or(|(t, _)| r.term() > t) {
                    best = Some((r.term(), r.conf_state()));
                }
            }
        }
        best.map(|(_, c)| c.members().collect()).unwrap_or_default()
    }

    /// Heal everything, then require a leader and a committed, everywhere-applied proposal.
    pub(crate) fn check_liveness(&mut self) -> Check {
        self.blocked.clear();
        self.drop_p = 0.0;
        self.dup_p = 0.0;
        for id in self.ids() {
            self.restart(id)?;
        }
        let healed_at = self.now;
        let commit_deadline = healed_at + LIVENESS_BOUND_TICKS * UNITS_PER_TICK;
        let catch_up_deadline = healed_at + CATCH_UP_BOUND_TICKS * UNITS_PER_TICK;
        let mut marker: Option<(u64, u64)> = None;
        loop {
            let committed = marker.is_some_and(|(cmd, _)| self.acked_cmds.contains(&cmd));
            if !committed && self.now >= commit_deadline {
                return fail(format!(
                    "liveness: no proposal committed within {LIVENESS_BOUND_TICKS} ticks of healing (marker {marker:?})\n{}",
                    self.dump()
                ));
            }
            if self.now >= catch_up_deadline {
                return fail(format!(
                    "liveness: members did not all apply the committed marker within {CATCH_UP_BOUND_TICKS} ticks of healing (marker {marker:?})\n{}",
                    self.dump()
                ));
            }
            self.step_time(false)?;
            let leaders = self.leader_ids();
            let Some(&leader) = leaders
                .iter()
                .max_by_key(|&&l| self.nodes[&l].raft.as_ref().map_or(0, |r| r.term()))
            else {
                continue;
            };
            let raft = self.nodes.get_mut(&leader).unwrap().raft.as_mut().unwrap();
            let retry = marker.is_none_or(|(cmd, at)| {
                !self.acked_cmds.contains(&cmd) && self.now >= at + 10 * UNITS_PER_TICK
            });
            if retry {
                let cmd = self.next_id;
                self.next_id += 1;
                match raft.propose(cmd.to_le_bytes().to_vec()) {
                    Ok(_) => marker = Some((cmd, self.now)),
                    Err(Error::Dropped(
                        DropReason::TransferInProgress { .. }
                        | DropReason::NotMember
                        | DropReason::TooManyUncommitted { .. },
                    )) => {}
                    Err(e @ Error::Dropped(_)) => return fail(format!("leader drops: {e}")),
                    Err(e) => return fail(format!("leader propose: {e}")),
                }
            }
            let Some((cmd, _)) = marker else { continue };
            if !self.acked_cmds.contains(&cmd) {
                continue;
            }
            let members = self.members();
            let done = !members.is_empty()
                && members.iter().all(|m| {
                    self.nodes[m].app.commands.last() == Some(&cmd)
                        || self.nodes[m].app.commands.contains(&cmd)
                });
            if done {
                return self.check_nothing_lost(leader);
            }
        }
    }

    pub(crate) fn dump(&self) -> String {
        let mut out = String::new();
        for (id, n) in &self.nodes {
            match &n.raft {
                Some(r) => out.push_str(&format!(
                    "node {id}: app.applied={} removed={} {:?}\n",
                    n.app.applied,
                    self.removed.contains(id),
                    r.status()
                )),
                None => out.push_str(&format!("node {id}: crashed\n")),
            }
        }
        out
    }

    pub(crate) fn check_nothing_lost(&self, leader: NodeId) -> Check {
        let have: BTreeSet<u64> = self.nodes[&leader].app.commands.iter().copied().collect();
        if let Some(lost) = self.acked_cmds.iter().find(|c| !have.contains(c)) {
            return fail(format!(
                "acknowledged command {lost} missing from leader {leader}'s state"
            ));
        }
        Ok(())
    }
}
