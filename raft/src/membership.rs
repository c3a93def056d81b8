//! Membership as the log defines it, and quorum arithmetic over it.
//!
//! A node uses the newest configuration in its log, committed or not, from the moment the
//! entry is appended (thesis §4.1). If that entry is later truncated by a new leader, the
//! configuration falls back to the previous one, so the node keeps the history of every
//! configuration since the last committed one.

use std::collections::BTreeMap;

use crate::message::{ConfChange, ConfState, Entry, EntryKind, NodeId};

/// Configurations by the index of the entry that introduced them.
#[derive(Debug, Clone)]
pub(crate) struct Membership {
    /// Oldest first; `history[0]` is committed (or the snapshot's), never truncated.
    history: Vec<(u64, ConfState)>,
}

impl Membership {
    pub(crate) fn new(index: u64, conf: ConfState) -> Membership {
        Membership {
            history: vec![(index, conf)],
        }
    }

    /// The configuration in force.
    pub(crate) fn current(&self) -> &ConfState {
        &self.history[self.history.len() - 1].1
    }

    /// Index of the entry that introduced the configuration in force.
    pub(crate) fn current_index(&self) -> u64 {
        self.history[self.history.len() - 1].0
    }

    /// Entries starting at `entries[0].index` were appended, replacing any suffix from there.
    /// Returns whether the configuration in force changed.
    pub(crate) fn on_append(&mut self, entries: &[Entry]) -> bool {
        let Some(first) = entries.first() else {
            return false;
        };
        let before = self.current_index();
        self.truncate_from(first.index);
        for e in entries.iter().filter(|e| e.kind == EntryKind::ConfChange) {
            // An undecodable change is ignored on every node alike (the leader never
            // proposes one), so all nodes still agree on the configuration.
            if let Ok(cc) = ConfChange::decode(&e.data) {
                let next = self.current().applied(&cc);
                self.history.push((e.index, next));
            }
        }
        self.current_index() != before
    }

    fn truncate_from(&mut self, index: u64) {
        while self.history.len() > 1 && self.history[self.history.len() - 1].0 >= index {
            self.history.pop();
        }
    }

    /// Forgets configurations superseded by one at or below `committed`.
    pub(crate) fn compact_to(&mut self, committed: u64) {
        let keep_from = self
            .history
            .iter()
            .rposition(|(i, _)| *i <= committed)
            .unwrap_or(0);
        self.history.drain(..keep_from);
    }

    /// A snapshot replaced the log.
    pub(crate) fn reset(&mut self, index: u64, conf: ConfState) {
        self.history.clear();
        self.history.push((index, conf));
    }
}

/// The highest index that a quorum of `voters` has reached, given each member's index
/// (missing members count as 0). With no voters, nothing is committed.
pub(crate) fn quorum_index(voters: &[NodeId], index_of: impl Fn(NodeId) -> u64) -> u64 {
    if voters.is_empty() {
        return 0;
    }
    let mut indexes: Vec<u64> = voters.iter().map(|&v| index_of(v)).collect();
    indexes.sort_unstable_by(|a, b| b.cmp(a));
    indexes[voters.len() / 2]
}

/// Outcome of counting votes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VoteOutcome {
    Won,
    Lost,
    Pending,
}

/// Counts `votes` (granted or not) of `voters`; only voters count (learners never vote).
pub(crate) fn vote_outcome(voters: &[NodeId], votes: &BTreeMap<NodeId, bool>) -> VoteOutcome {
    let quorum = voters.len() / 2 + 1;
    let granted = voters
        .iter()
        .filter(|v| votes.get(v) == Some(&true))
        .count();
    let rejected = voters
        .iter()
        .filter(|v| votes.get(v) == Some(&false))
        .count();
    if granted >= quorum {
        VoteOutcome::Won
    } else if rejected >= quorum || voters.is_empty() {
        VoteOutcome::Lost
    } else {
        VoteOutcome::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cc_entry(index: u64, cc: ConfChange) -> Entry {
        Entry {
            index,
            term: 1,
            kind: EntryKind::ConfChange,
            data: cc.encode().into(),
        }
    }

    #[test]
    fn configuration_takes_effect_on_append_and_reverts_on_truncation() {
        let mut m = Membership::new(0, ConfState::with_voters([1, 2, 3]));
        assert!(m.on_append(&[cc_entry(5, ConfChange::AddLearner(4))]));
        assert!(m.current().is_learner(4));
        // A new leader overwrites index 5 with a normal entry.
        assert!(m.on_append(&[Entry::new(5, 2, Vec::new())]));
        assert!(!m.current().contains(4));
        m.on_append(&[cc_entry(6, ConfChange::RemoveNode(3))]);
        m.compact_to(6);
        assert_eq!(m.current().voters, vec![1, 2]);
        assert_eq!(m.history.len(), 1);
    }

    #[test]
    fn quorum_index_is_the_majority_minimum() {
        let idx = |id: NodeId| [0, 9, 4, 7, 1, 8][id as usize];
        assert_eq!(quorum_index(&[1, 2, 3], idx), 7);
        assert_eq!(quorum_index(&[1, 2, 3, 4, 5], idx), 7);
        assert_eq!(quorum_index(&[1, 2, 3, 4], idx), 4);
        let mut votes = BTreeMap::new();
        votes.insert(1, true);
        votes.insert(9, true);
        assert_eq!(vote_outcome(&[1, 2, 3], &votes), VoteOutcome::Pending);
        votes.insert(2, true);
        assert_eq!(vote_outcome(&[1, 2, 3], &votes), VoteOutcome::Won);
    }
}
