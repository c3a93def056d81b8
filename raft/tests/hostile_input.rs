//! Arbitrary (corrupt, forged, out-of-order) messages never panic a node: each is either
//! taken or refused with a typed error, and the node keeps working afterwards.

mod support;

use cairn_raft::{ConfState, Entry, EntryKind, Message, MessageKind, SnapshotMeta};
use proptest::prelude::*;
use support::Cluster;

const KINDS: [MessageKind; 14] = [
    MessageKind::Append,
    MessageKind::AppendResponse,
    MessageKind::Heartbeat,
    MessageKind::HeartbeatResponse,
    MessageKind::Vote,
    MessageKind::VoteResponse,
    MessageKind::PreVote,
    MessageKind::PreVoteResponse,
    MessageKind::Snapshot,
    MessageKind::TimeoutNow,
    MessageKind::ReadIndex,
    MessageKind::ReadIndexResponse,
    MessageKind::TransferLeader,
    MessageKind::Propose,
];

#[derive(Debug, Clone)]
struct Raw {
    kind: usize,
    from: u64,
    to: u64,
    term: u64,
    log_term: u64,
    index: u64,
    entries: Vec<(u64, u64, bool, Vec<u8>)>,
    commit: u64,
    reject: bool,
    hint: u64,
    context: Vec<u8>,
    snapshot: Option<(u64, u64)>,
}

fn raw() -> impl Strategy<Value = Raw> {
    (
        (0..KINDS.len(), 0u64..5, 1u64..4, 0u64..8, 0u64..8, 0u64..30),
        proptest::collection::vec(
            (
                0u64..30,
                0u64..8,
                any::<bool>(),
                proptest::collection::vec(any::<u8>(), 0..12),
            ),
            0..4,
        ),
        (0u64..30, any::<bool>(), 0u64..30),
        proptest::collection::vec(any::<u8>(), 0..10),
        proptest::option::of((0u64..30, 0u64..8)),
    )
        .prop_map(
            |(
                (kind, from, to, term, log_term, index),
                entries,
                (commit, reject, hint),
                context,
                snapshot,
            )| Raw {
                kind,
                from,
                to,
                term,
                log_term,
                index,
                entries,
                commit,
                reject,
                hint,
                context,
                snapshot,
            },
        )
}

fn to_message(r: &Raw) -> Message {
    let mut m = Message::new(KINDS[r.kind], r.from, r.to, r.term);
    m.log_term = r.log_term;
    m.index = r.index;
    m.commit = r.commit;
    m.reject = r.reject;
    m.reject_hint = r.hint;
    m.context = r.context.clone();
    m.entries = r
        .entries
        .iter()
        .map(|(index, term, conf, data)| Entry {
            index: *index,
            term: *term,
            kind: if *conf {
                EntryKind::ConfChange
            } else {
                EntryKind::Normal
            },
            data: data.clone().into(),
        })
        .collect();
    m.snapshot = r.snapshot.map(|(index, term)| SnapshotMeta {
        index,
        term,
        conf_state: ConfState::with_voters([1, 2, 3]),
    });
    m
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn arbitrary_messages_never_panic_a_node(msgs in proptest::collection::vec(raw(), 1..40)) {
        let mut c = Cluster::new(3, 0, |_| {});
        c.elect(1);
        for r in &msgs {
            let m = to_message(r);
            let to = m.to;
            // Taken or refused with a typed error; either way the node must go on working.
            let _ = c.node(to).step(m);
            c.process(to);
            c.queue.clear();
        }
        for id in 1..=3 {
            c.node(id).tick().unwrap();
            let _ = c.node(id).status();
        }
    }
}
