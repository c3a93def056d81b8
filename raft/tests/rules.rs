//! One test per rule of the Raft paper and thesis that cairn-raft implements.

mod support;

use cairn_raft::{
    ConfChange, DropReason, Entry, Error, HardState, MemStorage, Message, MessageKind, Proposed,
    ReadMode, Role, Storage,
};
use support::{is_kind, Cluster};

fn log_with_terms(voters: &[u64], terms: &[(u64, u64)], hs_term: u64) -> MemStorage {
    let mut s = MemStorage::new_bootstrapped(voters);
    let entries: Vec<Entry> = terms
        .iter()
        .map(|&(index, term)| Entry::new(index, term, index.to_le_bytes().to_vec()))
        .collect();
    s.append(&entries).unwrap();
    s.set_hard_state(HardState {
        term: hs_term,
        vote: 0,
        commit: voters.len() as u64,
    });
    s
}

fn append_response(from: u64, to: u64, term: u64, index: u64) -> Message {
    let mut m = Message::new(MessageKind::AppendResponse, from, to, term);
    m.index = index;
    m
}

// ---- elections ----

#[test]
fn leader_commits_entries_of_earlier_terms_only_through_its_own_term() {
    // Figure 8: an entry of term 2 stored on a majority is still not committed by counting.
    let voters = [1, 2, 3];
    let old = log_with_terms(&voters, &[(4, 2)], 3);
    let mut c = Cluster::from_storages(
        vec![
            (1, old.clone()),
            (2, old),
            (3, log_with_terms(&voters, &[], 3)),
        ],
        |_| {},
    );
    c.dropped_kinds.push(MessageKind::Append);
    c.elect(1);
    let term = c.node(1).term();
    assert_eq!(c.last_index(1), 5, "no-op of the new term at index 5");
    assert_eq!(c.node(1).commit(), 3);
    // Follower 2 acknowledges index 4 (term 2) only: 1 and 2 hold it, a majority.
    c.node(1).step(append_response(2, 1, term, 4)).unwrap();
    c.settle();
    assert_eq!(
        c.node(1).commit(),
        3,
        "term-2 entry must not commit by counting"
    );
    c.node(1).step(append_response(2, 1, term, 5)).unwrap();
    c.settle();
    assert_eq!(
        c.node(1).commit(),
        5,
        "committing the term-4 no-op commits index 4 too"
    );
}

#[test]
fn candidate_counts_its_own_vote_only_once_durable() {
    let mut c = Cluster::new(1, 0, |_| {});
    for _ in 0..100 {
        c.node(1).tick().unwrap();
        if c.node(1).role() == Role::Candidate {
            break;
        }
    }
    assert_eq!(c.node(1).role(), Role::Candidate);
    let rd = c.node(1).ready().unwrap();
    let hs = rd.hard_state.expect("new term and vote to persist");
    assert_eq!(hs.vote, 1);
    assert_eq!(
        c.node(1).role(),
        Role::Candidate,
        "not leader before the vote is durable"
    );
    c.node(1).storage_mut().set_hard_state(hs);
    c.node(1).advance().unwrap();
    assert_eq!(c.node(1).role(), Role::Leader);
}

#[test]
fn pre_vote_keeps_a_rejoining_node_from_disrupting_the_leader() {
    for pre_vote in [true, false] {
        let mut c = Cluster::new(3, 0, |cfg| {
            cfg.pre_vote = pre_vote;
            cfg.check_quorum = false;
        });
        c.elect(1);
        let term = c.node(1).term();
        c.isolate(3);
        for _ in 0..100 {
            c.node(3).tick().unwrap();
            c.settle();
        }
        c.heal();
        for _ in 0..30 {
            c.tick_all();
        }
        if pre_vote {
            assert_eq!(c.node(3).term(), term, "pre-vote never raises the term");
            assert_eq!(c.node(1).role(), Role::Leader);
            assert_eq!(c.node(1).term(), term, "the healthy leader keeps its term");
        } else {
            // The contrast that shows the test can fail: without pre-vote the rejoining
            // node's inflated term deposes the leader.
            assert!(c.node(1).term() > term);
        }
    }
}

#[test]
fn check_quorum_leader_steps_down_when_cut_off_from_a_quorum() {
    for check_quorum in [true, false] {
        let mut c = Cluster::new(3, 0, |cfg| cfg.check_quorum = check_quorum);
        c.elect(1);
        c.isolate(1);
        for _ in 0..25 {
            c.node(1).tick().unwrap();
            c.settle();
        }
        let expected = if check_quorum {
            Role::Follower
        } else {
            Role::Leader
        };
        assert_eq!(c.node(1).role(), expected, "check_quorum={check_quorum}");
    }
}

#[test]
fn check_quorum_followers_ignore_candidates_while_their_leader_is_live() {
    let mut c = Cluster::new(3, 0, |cfg| {
        cfg.pre_vote = false;
        cfg.check_quorum = true;
    });
    c.elect(1);
    let term = c.node(1).term();
    // 3 stops hearing the leader; 1 and 2 still talk.
    c.cut.insert((1, 3));
    for _ in 0..40 {
        c.tick_all();
    }
    assert!(c.node(3).term() > term, "3 campaigned");
    assert_eq!(c.node(1).role(), Role::Leader);
    assert_eq!(c.node(1).term(), term);
    let grants_from_2 = c.count_delivered(|m| {
        m.kind == MessageKind::VoteResponse && m.from == 2 && m.to == 3 && !m.reject
    });
    assert_eq!(grants_from_2, 0, "2 hears its leader, so it ignores 3");
}

// ---- replication ----

#[test]
fn fast_backtracking_skips_a_whole_conflicting_term_per_round_trip() {
    let voters = [1, 2, 3];
    let new: Vec<(u64, u64)> = (4..=53).map(|i| (i, 3)).collect();
    let stale: Vec<(u64, u64)> = (4..=53).map(|i| (i, 2)).collect();
    let mut c = Cluster::from_storages(
        vec![
            (1, log_with_terms(&voters, &new, 3)),
            (2, log_with_terms(&voters, &stale, 3)),
            (3, log_with_terms(&voters, &new, 3)),
        ],
        |_| {},
    );
    c.elect(1);
    let rejections =
        c.count_delivered(|m| m.kind == MessageKind::AppendResponse && m.reject && m.from == 2);
    assert!(
        (1..=2).contains(&rejections),
        "50 conflicting entries of one term cost {rejections} rejections"
    );
    let t = c.nodes[&1].log_term(53);
    assert_eq!(c.nodes[&2].log_term(53), t, "follower 2 repaired");
}

#[test]
fn replication_bounds_in_flight_appends_and_message_size() {
    let mut c = Cluster::new(3, 0, |cfg| {
        cfg.max_inflight_msgs = 2;
        cfg.max_msg_bytes = 40;
    });
    c.elect(1);
    c.cut.insert((2, 1));
    let before = c.delivered.len();
    for i in 0..10u64 {
        c.node(1).propose(i.to_le_bytes().to_vec()).unwrap();
        c.settle();
    }
    let appends_to_2 = c.delivered[before..]
        .iter()
        .filter(|m| m.kind == MessageKind::Append && m.to == 2 && !m.entries.is_empty())
        .count();
    assert_eq!(appends_to_2, 2, "window of two unacknowledged appends");
    for m in c.delivered.iter().filter(|m| m.kind == MessageKind::Append) {
        let bytes: u64 = m.entries.iter().map(|e| e.size_bytes()).sum();
        assert!(
            m.entries.len() <= 1 || bytes <= 40,
            "append over max_msg_bytes"
        );
    }
    c.heal();
    c.tick_all();
    c.tick_all();
    assert_eq!(
        c.last_index(2),
        c.last_index(1),
        "window reopens once acks flow"
    );
}

#[test]
fn leader_counts_itself_only_once_its_log_is_durable() {
    let mut c = Cluster::new(3, 0, |_| {});
    c.elect(1);
    c.isolate(3);
    let Proposed::Appended { index, .. } = c.node(1).propose(b"x".to_vec()).unwrap() else {
        panic!("leader appends");
    };
    let rd = c.node(1).ready().unwrap();
    assert_eq!(rd.entries.len(), 1);
    let appends: Vec<Message> = rd
        .messages
        .iter()
        .filter(|m| m.kind == MessageKind::Append && m.to == 2)
        .cloned()
        .collect();
    assert!(
        !appends.is_empty(),
        "appends go out before the leader's write"
    );
    for m in appends {
        c.node(2).step(m).unwrap();
    }
    let rd2 = c.node(2).ready().unwrap();
    assert!(rd2.messages.iter().all(|m| !m.is_response()));
    let acks: Vec<Message> = rd2.persisted_messages.clone();
    assert!(
        acks.iter().any(|m| m.kind == MessageKind::AppendResponse),
        "the follower's ack waits for its persistence"
    );
    c.node(2).storage_mut().append(&rd2.entries).unwrap();
    c.node(2).advance().unwrap();
    for m in acks {
        c.node(1).step(m).unwrap();
    }
    assert!(
        c.node(1).commit() < index,
        "one durable copy of three is no quorum"
    );
    c.node(1).storage_mut().append(&rd.entries).unwrap();
    c.node(1).advance().unwrap();
    assert_eq!(
        c.node(1).commit(),
        index,
        "leader's own durable copy makes the quorum"
    );
}

#[test]
fn snapshot_brings_a_follower_behind_the_compaction_point_up_to_date() {
    let mut c = Cluster::new(3, 0, |_| {});
    c.elect(1);
    c.isolate(3);
    for i in 0..20u64 {
        c.node(1).propose(i.to_le_bytes().to_vec()).unwrap();
    }
    c.settle();
    let applied = c.node(1).status().applied;
    let conf = c.node(1).conf_state().clone();
    c.node(1)
        .storage_mut()
        .compact(applied, conf, b"state".to_vec())
        .unwrap();
    c.heal();
    c.tick_all();
    c.tick_all();
    assert!(c.count_delivered(is_kind(MessageKind::Snapshot)) >= 1);
    let s3 = c.node(3).status();
    assert_eq!(s3.commit, c.node(1).commit());
    assert!(
        s3.first_index > applied,
        "follower's log restarts after the snapshot"
    );
    assert_eq!(c.node(3).storage().snapshot().unwrap().index, applied);
}

// ---- proposals ----

#[test]
fn proposals_are_dropped_with_a_reason_never_silently() {
    let mut c = Cluster::new(3, 0, |cfg| cfg.forward_proposals = false);
    assert_eq!(
        c.node(1).propose(b"a".to_vec()),
        Err(Error::Dropped(DropReason::NoLeader))
    );
    c.elect(1);
    assert_eq!(
        c.node(2).propose(b"a".to_vec()),
        Err(Error::Dropped(DropReason::NotLeader { leader: 1 }))
    );
    let mut c = Cluster::new(3, 0, |cfg| cfg.max_msg_bytes = 100);
    c.elect(1);
    assert!(matches!(
        c.node(1).propose(vec![0u8; 101]),
        Err(Error::Dropped(DropReason::ProposalTooLarge { .. }))
    ));
    assert_eq!(
        c.node(2).propose(b"fwd".to_vec()),
        Ok(Proposed::Forwarded { leader: 1 })
    );
    c.settle();
    assert!(c.applied[&1].iter().any(|e| &e.data[..] == b"fwd"));
}

// ---- reads ----

#[test]
fn read_index_needs_a_heartbeat_quorum_and_batches_reads_into_one_round() {
    let mut c = Cluster::new(3, 0, |_| {});
    c.elect(1);
    c.node(1).propose(b"w".to_vec()).unwrap();
    c.settle();
    let commit = c.node(1).commit();
    c.cut.insert((2, 1));
    c.cut.insert((3, 1));
    c.node(1).read_index(b"r0".to_vec()).unwrap();
    for i in 1..=10u8 {
        c.node(1).read_index(vec![b'r', i]).unwrap();
    }
    c.settle();
    assert!(
        c.read_states.get(&1).is_none_or(|r| r.is_empty()),
        "no quorum answered: no read may be served"
    );
    let before = c.count_delivered(is_kind(MessageKind::Heartbeat));
    c.heal();
    c.node(1).tick().unwrap();
    c.settle();
    let reads = c.read_states[&1].clone();
    assert_eq!(reads.len(), 11);
    assert!(reads.iter().all(|r| r.index >= commit));
    let rounds = (c.count_delivered(is_kind(MessageKind::Heartbeat)) - before) / 2;
    assert!(
        rounds <= 2,
        "eleven reads confirmed in {rounds} heartbeat rounds"
    );
    // A follower's read goes through the leader.
    c.node(2).read_index(b"f".to_vec()).unwrap();
    c.settle();
    assert_eq!(c.read_states[&2].len(), 1);
    assert!(c.read_states[&2][0].index >= commit);
}

#[test]
fn lease_reads_skip_the_round_only_with_check_quorum() {
    for check_quorum in [true, false] {
        let mut c = Cluster::new(3, 0, |cfg| {
            cfg.read_mode = ReadMode::LeaseBased;
            cfg.check_quorum = check_quorum;
        });
        // With leases, freshly started nodes refuse votes for one election timeout, so let
        // everyone's clock run until someone wins.
        let l = c.tick_until_leader();
        c.tick_all();
        c.isolate(l);
        c.node(l).read_index(b"lease".to_vec()).unwrap();
        c.settle();
        let served = c.read_states.get(&l).map_or(0, |r| r.len());
        assert_eq!(
            served,
            usize::from(check_quorum),
            "check_quorum={check_quorum}"
        );
        // The lease runs out: after an election timeout no read is served without a round.
        for _ in 0..12 {
            c.node(l).tick().unwrap();
            c.settle();
        }
        if c.node(l).role() == Role::Leader {
            c.node(l).read_index(b"late".to_vec()).unwrap();
            c.settle();
            assert_eq!(c.read_states.get(&l).map_or(0, |r| r.len()), served);
        }
    }
}

// ---- membership ----

#[test]
fn learner_gets_the_log_never_counts_as_voter_and_can_be_promoted() {
    let mut c = Cluster::new(3, 1, |_| {});
    c.elect(1);
    c.node(1)
        .propose_conf_change(ConfChange::AddLearner(4))
        .unwrap();
    c.settle();
    c.tick_all();
    assert!(c.node(4).conf_state().is_learner(4));
    assert_eq!(
        c.last_index(4),
        c.last_index(1),
        "learner replicates the log"
    );
    for _ in 0..50 {
        c.node(4).tick().unwrap();
        c.settle();
    }
    assert_eq!(
        c.count_delivered(
            |m| m.from == 4 && matches!(m.kind, MessageKind::Vote | MessageKind::PreVote)
        ),
        0,
        "learners never campaign"
    );
    // Voters 2 and 3 gone: 1 may get 4's answer, but a learner's vote never elects.
    c.isolate(2);
    c.isolate(3);
    for _ in 0..60 {
        c.node(1).tick().unwrap();
        c.node(4).tick().unwrap();
        c.settle();
    }
    assert_ne!(c.node(1).role(), Role::Leader);
    c.heal();
    let leader = c.tick_until_leader();
    c.tick_all();
    c.node(leader)
        .propose_conf_change(ConfChange::AddVoter(4))
        .unwrap();
    c.settle();
    c.tick_all();
    for id in 1..=4 {
        assert!(
            c.node(id).conf_state().is_voter(4),
            "node {id} sees 4 promoted"
        );
    }
    // A promoted learner can lead.
    c.node(leader).transfer_leader(4).unwrap();
    c.settle();
    c.tick_all();
    assert_eq!(c.node(4).role(), Role::Leader);
}

#[test]
fn membership_changes_one_at_a_time() {
    let mut c = Cluster::new(3, 2, |_| {});
    c.elect(1);
    c.node(1)
        .propose_conf_change(ConfChange::AddLearner(4))
        .unwrap();
    assert!(matches!(
        c.node(1).propose_conf_change(ConfChange::AddLearner(5)),
        Err(Error::Dropped(DropReason::ConfChangeInProgress { .. }))
    ));
    assert!(matches!(
        c.node(1).propose_conf_change(ConfChange::RemoveNode(9)),
        Err(Error::Dropped(_))
    ));
    c.settle();
    c.node(1)
        .propose_conf_change(ConfChange::AddLearner(5))
        .unwrap();
}

#[test]
fn removed_leader_steps_down_once_its_removal_commits() {
    let mut c = Cluster::new(3, 0, |_| {});
    c.elect(1);
    c.node(1)
        .propose_conf_change(ConfChange::RemoveNode(1))
        .unwrap();
    c.settle();
    assert_eq!(c.node(1).role(), Role::Follower);
    assert!(!c.node(1).conf_state().contains(1));
    let before = c.delivered.len();
    for _ in 0..40 {
        c.tick_all();
    }
    assert!(
        c.delivered[before..]
            .iter()
            .all(|m| !(m.from == 1 && matches!(m.kind, MessageKind::Vote | MessageKind::PreVote))),
        "a removed node never campaigns"
    );
    let leaders: Vec<u64> = [2, 3]
        .into_iter()
        .filter(|&id| c.nodes[&id].role() == Role::Leader)
        .collect();
    assert_eq!(leaders.len(), 1, "the remaining two elect a leader");
    assert_eq!(c.node(leaders[0]).conf_state().voters, vec![2, 3]);
}

// ---- transfer ----

#[test]
fn transfer_catches_the_target_up_then_hands_over_with_timeout_now() {
    let mut c = Cluster::new(3, 0, |_| {});
    c.elect(1);
    c.cut.insert((1, 3));
    for i in 0..5u64 {
        c.node(1).propose(i.to_le_bytes().to_vec()).unwrap();
    }
    c.settle();
    assert!(c.last_index(3) < c.last_index(1), "3 lags");
    c.node(1).transfer_leader(3).unwrap();
    assert_eq!(
        c.node(1).propose(b"during".to_vec()),
        Err(Error::Dropped(DropReason::TransferInProgress { target: 3 }))
    );
    c.settle();
    assert_eq!(c.count_delivered(is_kind(MessageKind::TimeoutNow)), 0);
    c.heal();
    c.node(1).tick().unwrap();
    c.settle();
    assert_eq!(c.count_delivered(is_kind(MessageKind::TimeoutNow)), 1);
    assert_eq!(c.node(3).role(), Role::Leader);
    assert_eq!(c.node(1).role(), Role::Follower);
    assert!(
        c.applied[&3]
            .iter()
            .any(|e| e.data[..] == 4u64.to_le_bytes()),
        "nothing committed is lost across the transfer"
    );
}

#[test]
fn malformed_messages_are_errors_not_panics() {
    let mut c = Cluster::new(3, 0, |_| {});
    let m = Message::new(MessageKind::Append, 2, 9, 1);
    assert!(matches!(
        c.node(1).step(m),
        Err(Error::InvalidMessage { .. })
    ));
    let m = Message::new(MessageKind::Snapshot, 2, 1, 5);
    assert!(matches!(
        c.node(1).step(m),
        Err(Error::InvalidMessage { .. })
    ));
    let m = Message::new(MessageKind::Heartbeat, 0, 1, 5);
    assert!(matches!(
        c.node(1).step(m),
        Err(Error::InvalidMessage { .. })
    ));
}

#[test]
fn requests_that_cannot_be_served_say_why() {
    let mut c = Cluster::new(3, 1, |cfg| cfg.max_pending_reads = 2);
    assert_eq!(
        c.node(2).read_index(b"r".to_vec()),
        Err(Error::Dropped(DropReason::NoLeader))
    );
    assert_eq!(
        c.node(2).transfer_leader(3),
        Err(Error::Dropped(DropReason::NoLeader))
    );
    c.elect(1);
    assert!(matches!(
        c.node(1).transfer_leader(4),
        Err(Error::Dropped(DropReason::InvalidTransferTarget { .. }))
    ));
    assert!(matches!(
        c.node(2).propose_conf_change(ConfChange::AddLearner(4)),
        Err(Error::Dropped(DropReason::NotLeader { leader: 1 }))
    ));
    c.isolate(1);
    c.node(1).read_index(b"a".to_vec()).unwrap();
    c.node(1).read_index(b"b".to_vec()).unwrap();
    assert!(matches!(
        c.node(1).read_index(b"c".to_vec()),
        Err(Error::Dropped(DropReason::TooManyPendingReads {
            pending: 2
        }))
    ));
    let _rd = c.node(1).ready().unwrap();
    assert_eq!(c.node(1).ready().unwrap_err(), Error::ReadyNotAdvanced);
}

#[test]
fn reads_pending_when_leadership_is_lost_are_reported_dropped() {
    let mut c = Cluster::new(3, 0, |_| {});
    c.elect(1);
    c.isolate(1);
    c.node(1).read_index(b"lost".to_vec()).unwrap();
    let mut dropped = Vec::new();
    for _ in 0..30 {
        c.node(1).tick().unwrap();
        let rd = c.node(1).ready().unwrap();
        dropped.extend(rd.dropped_reads);
        c.node(1).advance().unwrap();
    }
    assert_ne!(c.node(1).role(), Role::Leader, "check-quorum deposed it");
    assert_eq!(dropped, vec![b"lost".to_vec()]);
}

#[test]
fn restart_rebuilds_membership_and_state_from_storage() {
    let mut c = Cluster::new(3, 1, |_| {});
    c.elect(1);
    c.node(1)
        .propose_conf_change(ConfChange::AddLearner(4))
        .unwrap();
    c.settle();
    c.node(1).propose(b"after".to_vec()).unwrap();
    c.settle();
    let before = c.node(2).status();
    let storage = c.node(2).storage().clone();
    let mut cfg = support::config(2);
    cfg.applied = before.applied;
    let restarted = cairn_raft::RaftNode::new(cfg, storage).unwrap();
    let after = restarted.status();
    assert!(after.conf_state.is_learner(4), "membership from the log");
    assert_eq!(after.term, before.term);
    assert_eq!(after.vote, before.vote);
    assert_eq!(after.last_index, before.last_index);
    assert_eq!(after.applied, before.applied);
    assert_eq!(after.role, Role::Follower);
}

#[test]
fn corrupt_appends_are_refused_before_touching_the_log() {
    let mut c = Cluster::new(3, 0, |_| {});
    c.elect(1);
    let term = c.node(1).term();
    let last = c.last_index(2);
    let mut gap = Message::new(MessageKind::Append, 1, 2, term);
    gap.index = last;
    gap.log_term = c.nodes[&2].log_term(last).unwrap();
    gap.entries = vec![Entry::new(last + 2, term, b"gap".to_vec())];
    assert!(matches!(
        c.node(2).step(gap),
        Err(Error::InvalidMessage { .. })
    ));
    let mut future = Message::new(MessageKind::Append, 1, 2, term);
    future.index = last;
    future.log_term = c.nodes[&2].log_term(last).unwrap();
    future.entries = vec![Entry::new(last + 1, term + 5, b"x".to_vec())];
    assert!(matches!(
        c.node(2).step(future),
        Err(Error::InvalidMessage { .. })
    ));
    let huge = Message::new(MessageKind::Heartbeat, 1, 2, u64::MAX);
    assert!(matches!(
        c.node(2).step(huge),
        Err(Error::InvalidMessage { .. })
    ));
    assert_eq!(c.last_index(2), last);
    assert_eq!(c.node(2).status().last_index, last, "log untouched");
}

#[test]
fn new_leader_changes_membership_only_after_committing_in_its_term() {
    // The single-server-change erratum: a leader must commit an entry of its own term before
    // it may propose a membership change.
    let mut c = Cluster::new(3, 1, |_| {});
    c.dropped_kinds.push(MessageKind::Append);
    c.elect(1);
    assert_eq!(
        c.node(1).propose_conf_change(ConfChange::AddLearner(4)),
        Err(Error::Dropped(DropReason::LeaderNotReady))
    );
    c.dropped_kinds.clear();
    c.tick_all();
    c.node(1)
        .propose_conf_change(ConfChange::AddLearner(4))
        .unwrap();
}

#[test]
fn leader_without_a_quorum_stops_taking_proposals_at_the_uncommitted_bound() {
    let mut c = Cluster::new(3, 0, |cfg| cfg.max_uncommitted_entries = 5);
    c.elect(1);
    c.isolate(1);
    let mut taken = 0;
    let err = loop {
        match c.node(1).propose(b"p".to_vec()) {
            Ok(_) => taken += 1,
            Err(e) => break e,
        }
        assert!(taken <= 5, "bound not enforced");
    };
    assert!(matches!(
        err,
        Error::Dropped(DropReason::TooManyUncommitted { uncommitted: 5 })
    ));
}
