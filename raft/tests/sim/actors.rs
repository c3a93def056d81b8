//! Clients and operators: proposals, reads, compaction, membership changes, transfers.

use super::*;

impl Sim {
    pub(crate) fn client_propose(&mut self, id: NodeId) -> Check {
        let cmd = self.next_id;
        self.next_id += 1;
        let Some(raft) = self.nodes.get_mut(&id).and_then(|n| n.raft.as_mut()) else {
            return Ok(());
        };
        self.stats.proposals += 1;
        match raft.propose(cmd.to_le_bytes().to_vec()) {
            Ok(_) => Ok(()),
            Err(Error::Dropped(_)) => {
                self.stats.dropped_proposals += 1;
                Ok(())
            }
            Err(e) => fail(format!("propose on {id}: {e}")),
        }
    }

    pub(crate) fn client_read(&mut self, id: NodeId) -> Check {
        let rid = self.next_id;
        self.next_id += 1;
        let must_see = self.max_applied.max(self.max_read_result);
        let Some(raft) = self.nodes.get_mut(&id).and_then(|n| n.raft.as_mut()) else {
            return Ok(());
        };
        match raft.read_index(rid.to_le_bytes().to_vec()) {
            Ok(()) => {
                self.pending_reads.insert(rid, (id, must_see));
                Ok(())
            }
            Err(Error::Dropped(_)) => Ok(()),
            Err(e) => fail(format!("read on {id}: {e}")),
        }
    }

    pub(crate) fn compact(&mut self, id: NodeId) -> Check {
        let Some(node) = self.nodes.get_mut(&id) else {
            return Ok(());
        };
        let Some(raft) = node.raft.as_mut() else {
            return Ok(());
        };
        let applied = node.app.applied;
        let first = raft.storage().first_index().unwrap_or(1);
        if applied < first + 3 {
            return Ok(());
        }
        let data = node.app.encode();
        raft.storage_mut()
            .compact(applied, node.app.conf.clone(), data)
            .map_err(|e| format!("compact on {id}: {e}"))
    }

    pub(crate) fn change_membership(&mut self) -> Check {
        let Some(leader) = self.rng.pick(&self.leader_ids()) else {
            return Ok(());
        };
        let raft = self.nodes.get_mut(&leader).unwrap().raft.as_mut().unwrap();
        let conf = raft.conf_state().clone();
        let spare: Vec<NodeId> = self
            .ids()
            .into_iter()
            .filter(|id| !conf.contains(*id) && !self.removed.contains(id))
            .collect();
        let mut options: Vec<ConfChange> = Vec::new();
        options.extend(spare.iter().map(|&id| ConfChange::AddLearner(id)));
        options.extend(conf.learners.iter().map(|&id| ConfChange::AddVoter(id)));
        if conf.voters.len() > 3 {
            options.extend(conf.voters.iter().map(|&id| ConfChange::RemoveNode(id)));
        }
        options.extend(conf.learners.iter().map(|&id| ConfChange::RemoveNode(id)));
        let Some(cc) = self.rng.pick(&options) else {
            return Ok(());
        };
        let raft = self.nodes.get_mut(&leader).unwrap().raft.as_mut().unwrap();
        match raft.propose_conf_change(cc) {
            Ok(_) => {
                self.stats.conf_changes += 1;
                if let ConfChange::RemoveNode(id) = cc {
                    // Never re-added: a removed member's old state must not come back.
                    self.removed.insert(id);
                }
                Ok(())
            }
            Err(Error::Dropped(_)) => Ok(()),
            Err(e) => fail(format!("conf change on {leader}: {e}")),
        }
    }

    pub(crate) fn transfer(&mut self) -> Check {
        let Some(leader) = self.rng.pick(&self.leader_ids()) else {
            return Ok(());
        };
        let raft = self.nodes.get_mut(&leader).unwrap().raft.as_mut().unwrap();
        let voters = raft.conf_state().voters.clone();
        let Some(target) = self.rng.pick(&voters) else {
            return Ok(());
        };
        match raft.transfer_leader(target) {
            Ok(()) => {
                self.stats.transfers += 1;
                Ok(())
            }
            Err(Error::Dropped(_)) => Ok(()),
            Err(e) => fail(format!("transfer on {leader}: {e}")),
        }
    }

    pub(crate) fn random_events(&mut self) -> Check {
        let ids = self.ids();
        let live = self.live_ids();
        if self.rng.chance(0.06) {
            if let Some(id) = self.rng.pick(&live) {
                self.client_propose(id)?;
            }
        }
        if self.rng.chance(0.02) {
            if let Some(id) = self.rng.pick(&live) {
                self.client_read(id)?;
            }
        }
        if self.rng.chance(0.0006 * self.storm) {
            if let Some(id) = self.rng.pick(&live) {
                self.crash(id);
            }
        }
        if self.rng.chance(0.004 * self.storm) {
            let crashed: Vec<NodeId> = ids
                .iter()
                .copied()
                .filter(|id| !live.contains(id))
                .collect();
            if let Some(id) = self.rng.pick(&crashed) {
                self.restart(id)?;
            }
        }
        if self.rng.chance(0.002 * self.storm) {
            self.new_partition();
        }
        if self.rng.chance(0.004) {
            if let Some(id) = self.rng.pick(&live) {
                self.compact(id)?;
            }
        }
        if self.rng.chance(0.002) {
            self.change_membership()?;
        }
        if self.rng.chance(0.0008) {
            self.transfer()?;
        }
        Ok(())
    }
}
