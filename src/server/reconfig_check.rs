//! etcd's strict reconfiguration checks: the leader refuses a membership change that would
//! leave the cluster without a working quorum, or one that makes no sense, with etcd's error.
//!
//! "Started" is etcd's notion: the member has published its attributes (it ran at least
//! once). "Active" means the leader has held a connection to it for the last health
//! interval (etcd's `HealthInterval`, 5 s), as etcd's transport reports `ActiveSince`.

use cairn_raft::ConfChange;
use tonic::Status;

use super::registry::MemberRegistry;

/// etcd 3.5's limit on learners in a cluster.
pub const MAX_LEARNERS: usize = 1;

/// What the checks need to know about the cluster right now, at the leader.
pub struct ClusterView<'a> {
    pub registry: &'a MemberRegistry,
    pub local_id: u64,
    /// Whether the member has published its attributes (it has started at least once).
    pub started: &'a dyn Fn(u64) -> bool,
    /// Whether the leader has been connected to the member for the whole health interval.
    pub active: &'a dyn Fn(u64) -> bool,
    /// Whether the leader is connected to the member at all right now.
    pub connected: &'a dyn Fn(u64) -> bool,
    /// Whether a learner has caught up with the leader's log (etcd: 90% of its match index).
    pub learner_in_sync: &'a dyn Fn(u64) -> bool,
}

pub fn member_not_found() -> Status {
    Status::not_found("etcdserver: member not found")
}

/// etcd 3.5.1 sends this one with code Unknown (observed; its gRPC mapping misses it).
pub fn not_enough_started() -> Status {
    Status::unknown("etcdserver: re-configuration failed due to not enough started members")
}

pub fn unhealthy() -> Status {
    Status::unavailable("etcdserver: unhealthy cluster")
}

impl ClusterView<'_> {
    fn voters(&self) -> Vec<u64> {
        self.registry
            .members()
            .filter(|m| !m.is_learner)
            .map(|m| m.id)
            .collect()
    }

    /// Whether `a` voters started out of `n` reach a quorum of `n`.
    fn quorum_started(started: usize, voters: usize) -> bool {
        started > voters / 2
    }

    /// Checks `change` (for an add: of a member with `peer_urls`) before it is proposed.
    pub fn check(&self, change: ConfChange, peer_urls: &[String]) -> Result<(), Status> {
        let id = change.node_id();
        match change {
            ConfChange::AddLearner(_) | ConfChange::AddVoter(_)
                if self.registry.get(id).is_none() =>
            {
                self.check_add(id, matches!(change, ConfChange::AddLearner(_)), peer_urls)
            }
            ConfChange::AddLearner(_) => Err(Status::failed_precondition(
                "etcdserver: member ID already exist",
            )),
            ConfChange::AddVoter(_) => self.check_promote(id),
            ConfChange::RemoveNode(_) => self.check_remove(id),
        }
    }

    /// etcd's order: quorum of started voters (voter adds only), then every voter connected
    /// (learner adds too), then the change itself (duplicate URLs, learner limit).
    fn check_add(&self, id: u64, learner: bool, peer_urls: &[String]) -> Result<(), Status> {
        let voters = self.voters();
        if !learner {
            let started = voters.iter().filter(|&&v| (self.started)(v)).count();
            // The new member counts toward the quorum but has not started; etcd lets a lone
            // member add a second (the cluster waits for it to start).
            let lone = started == 1 && voters.len() == 1;
            if !lone && !Self::quorum_started(started, voters.len() + 1) {
                return Err(not_enough_started());
            }
        }
        let all_active = voters
            .iter()
            .all(|&v| v == self.local_id || (self.active)(v));
        if !all_active {
            return Err(unhealthy());
        }
        if self.registry.is_removed(id) {
            return Err(Status::failed_precondition(
                "etcdserver: member ID already exist",
            ));
        }
        if self.registry.peer_url_owner(peer_urls, 0).is_some() {
            return Err(Status::failed_precondition(
                "etcdserver: Peer URLs already exists",
            ));
        }
        if learner && self.registry.learner_count() >= MAX_LEARNERS {
            return Err(Status::failed_precondition(
                "etcdserver: too many learner members in cluster",
            ));
        }
        Ok(())
    }

    fn check_promote(&self, id: u64) -> Result<(), Status> {
        let Some(member) = self.registry.get(id) else {
            return Err(member_not_found());
        };
        if !member.is_learner {
            return Err(Status::failed_precondition(
                "etcdserver: can only promote a learner member",
            ));
        }
        if !(self.learner_in_sync)(id) {
            return Err(Status::failed_precondition(
                "etcdserver: can only promote a learner member which is in sync with leader",
            ));
        }
        let voters = self.voters();
        let started = voters.iter().filter(|&&v| (self.started)(v)).count() + 1;
        if !Self::quorum_started(started, voters.len() + 1) {
            return Err(not_enough_started());
        }
        Ok(())
    }

    fn check_remove(&self, id: u64) -> Result<(), Status> {
        let Some(member) = self.registry.get(id) else {
            return Err(member_not_found());
        };
        if member.is_learner {
            return Ok(());
        }
        let remaining: Vec<u64> = self.voters().into_iter().filter(|&v| v != id).collect();
        if remaining.is_empty() {
            return Err(not_enough_started());
        }
        let started = remaining.iter().filter(|&&v| (self.started)(v)).count();
        if !Self::quorum_started(started, remaining.len()) {
            return Err(not_enough_started());
        }
        // A member that is down is not part of the working quorum: removing it is safe.
        if id != self.local_id && !(self.connected)(id) {
            return Ok(());
        }
        // etcd's arithmetic: the active voters less the one removed must still be a quorum
        // of the voters before the change.
        let voters = self.voters();
        let active = voters
            .iter()
            .filter(|&&v| v == self.local_id || (self.active)(v))
            .count();
        if active.saturating_sub(1) < 1 + (voters.len() - 1) / 2 {
            return Err(unhealthy());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mvcc::{MemBackend, MvccStore};
    use crate::proto::cairn::entry::v1::MemberRecord;

    fn registry(voters: &[u64], learners: &[u64]) -> MemberRegistry {
        let store = MvccStore::open(MemBackend::default()).unwrap();
        let mut registry = MemberRegistry::default();
        let mut batch = store.write().unwrap();
        for &id in voters.iter().chain(learners) {
            let record = MemberRecord {
                id,
                name: format!("m{id}"),
                peer_urls: vec![format!("http://m{id}:2380")],
                is_learner: false,
            };
            let change = if learners.contains(&id) {
                ConfChange::AddLearner(id)
            } else {
                ConfChange::AddVoter(id)
            };
            registry
                .apply_change(&mut batch, change, Some(&record))
                .unwrap();
        }
        batch.commit().unwrap();
        registry
    }

    fn check(
        registry: &MemberRegistry,
        down: &[u64],
        change: ConfChange,
        urls: &[&str],
    ) -> Result<(), String> {
        let active = |id: u64| !down.contains(&id);
        let view = ClusterView {
            registry,
            local_id: 1,
            started: &|_| true,
            active: &active,
            connected: &active,
            learner_in_sync: &|id| id != 9,
        };
        let urls: Vec<String> = urls.iter().map(|u| u.to_string()).collect();
        view.check(change, &urls)
            .map_err(|s| s.message().to_string())
    }

    #[test]
    fn adds_are_refused_like_etcds() {
        let three = registry(&[1, 2, 3], &[]);
        assert_eq!(
            check(&three, &[], ConfChange::AddLearner(4), &["http://m4:2380"]),
            Ok(())
        );
        assert_eq!(
            check(&three, &[], ConfChange::AddLearner(4), &["http://m2:2380"]).unwrap_err(),
            "etcdserver: Peer URLs already exists"
        );
        assert_eq!(
            check(&three, &[3], ConfChange::AddVoter(4), &["http://m4:2380"]).unwrap_err(),
            "etcdserver: unhealthy cluster"
        );
        // As etcd 3.5.1 does: even a learner waits for every voter to be connected.
        assert_eq!(
            check(&three, &[3], ConfChange::AddLearner(4), &["http://m4:2380"]).unwrap_err(),
            "etcdserver: unhealthy cluster"
        );
        let with_learner = registry(&[1, 2, 3], &[4]);
        assert_eq!(
            check(
                &with_learner,
                &[],
                ConfChange::AddLearner(5),
                &["http://m5:2380"]
            )
            .unwrap_err(),
            "etcdserver: too many learner members in cluster"
        );
    }

    #[test]
    fn promotions_need_a_learner_in_sync() {
        let cluster = registry(&[1, 2, 3], &[4, 9]);
        assert_eq!(check(&cluster, &[], ConfChange::AddVoter(4), &[]), Ok(()));
        assert_eq!(
            check(&cluster, &[], ConfChange::AddVoter(9), &[]).unwrap_err(),
            "etcdserver: can only promote a learner member which is in sync with leader"
        );
        assert_eq!(
            check(&cluster, &[], ConfChange::AddVoter(2), &[]).unwrap_err(),
            "etcdserver: can only promote a learner member"
        );
    }

    #[test]
    fn removals_that_would_lose_the_working_quorum_are_refused() {
        let three = registry(&[1, 2, 3], &[]);
        assert_eq!(check(&three, &[], ConfChange::RemoveNode(3), &[]), Ok(()));
        // With 3 down, removing 2 leaves {1, 3} with only 1 active: no quorum.
        assert_eq!(
            check(&three, &[3], ConfChange::RemoveNode(2), &[]).unwrap_err(),
            "etcdserver: unhealthy cluster"
        );
        let five = registry(&[1, 2, 3, 4, 5], &[]);
        assert_eq!(check(&five, &[5], ConfChange::RemoveNode(2), &[]), Ok(()));
        assert!(check(&five, &[4, 5], ConfChange::RemoveNode(2), &[]).is_err());
        // Removing the member that is down is what repairs the cluster.
        assert_eq!(check(&three, &[3], ConfChange::RemoveNode(3), &[]), Ok(()));
        assert_eq!(
            check(&three, &[], ConfChange::RemoveNode(7), &[]).unwrap_err(),
            "etcdserver: member not found"
        );
        let one = registry(&[1], &[]);
        assert!(check(&one, &[], ConfChange::RemoveNode(1), &[]).is_err());
        // etcd lets a lone member take a second voter.
        assert_eq!(
            check(&one, &[], ConfChange::AddVoter(2), &["http://m2:2380"]),
            Ok(())
        );
    }
}
