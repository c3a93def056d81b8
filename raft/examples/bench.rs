//! Throughput of the Raft state machine alone: an in-memory 3-node cluster (no disk, no
//! network) driven as fast as possible on one thread, with 1, 64 and 1,024 outstanding
//! proposals of 256-byte commands.
//!
//! Run: `cargo run --release -p cairn-raft --example bench`

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use cairn_raft::{Config, MemStorage, Message, NodeId, RaftNode, Role, Storage};

const COMMAND_BYTES: usize = 256;
const NODES: u64 = 3;
/// Compact each node's in-memory log every this many applied entries.
const COMPACT_EVERY_ENTRIES: u64 = 20_000;

struct Cluster {
    nodes: Vec<RaftNode<MemStorage>>,
    queue: VecDeque<Message>,
    leader_applied_cmds: u64,
}

impl Cluster {
    fn new() -> Cluster {
        let ids: Vec<NodeId> = (1..=NODES).collect();
        let nodes = ids
            .iter()
            .map(|&id| {
                let mut cfg = Config::new(id);
                cfg.max_inflight_msgs = 512;
                RaftNode::new(cfg, MemStorage::new_bootstrapped(&ids)).expect("valid config")
            })
            .collect();
        Cluster {
            nodes,
            queue: VecDeque::new(),
            leader_applied_cmds: 0,
        }
    }

    fn process_all(&mut self) {
        for i in 0..self.nodes.len() {
            let node = &mut self.nodes[i];
            if !node.has_ready() {
                continue;
            }
            let rd = node.ready().expect("ready");
            self.queue.extend(rd.messages);
            if let Some(hs) = rd.hard_state {
                node.storage_mut().set_hard_state(hs);
            }
            node.storage_mut().append(&rd.entries).expect("append");
            self.queue.extend(rd.persisted_messages);
            if node.role() == Role::Leader {
                self.leader_applied_cmds += rd
                    .committed_entries
                    .iter()
                    .filter(|e| e.data.len() == COMMAND_BYTES)
                    .count() as u64;
            }
            let applied = rd.committed_entries.last().map(|e| e.index);
            node.advance().expect("advance");
            if let Some(applied) = applied {
                let first = node.storage().first_index().expect("first index");
                if applied >= first + COMPACT_EVERY_ENTRIES {
                    let conf = node.conf_state().clone();
                    node.storage_mut()
                        .compact(applied, conf, Vec::new())
                        .expect("compact");
                }
            }
        }
    }

    fn deliver_all(&mut self) {
        while let Some(m) = self.queue.pop_front() {
            let to = (m.to - 1) as usize;
            self.nodes[to].step(m).expect("step");
        }
    }

    fn elect(&mut self) {
        while self.nodes[0].role() != Role::Leader {
            self.nodes[0].tick().expect("tick");
            for _ in 0..4 {
                self.process_all();
                self.deliver_all();
            }
        }
        for _ in 0..4 {
            self.process_all();
            self.deliver_all();
        }
    }
}

/// CPU time of this thread in nanoseconds (Linux), falling back to none.
fn thread_cpu_ns() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

struct Measured {
    commits_per_s: f64,
    cpu_ns_per_entry: f64,
}

fn run(outstanding: u64, target_commits: u64) -> Measured {
    let mut c = Cluster::new();
    c.elect();
    let payload: Arc<[u8]> = Arc::from(vec![7u8; COMMAND_BYTES]);
    let start = Instant::now();
    let cpu_start = thread_cpu_ns();
    let mut proposed = 0u64;
    while c.leader_applied_cmds < target_commits {
        let in_flight = proposed - c.leader_applied_cmds;
        for _ in in_flight..outstanding {
            c.nodes[0].propose(payload.clone()).expect("leader accepts");
            proposed += 1;
        }
        c.process_all();
        c.deliver_all();
    }
    let wall = start.elapsed().as_secs_f64();
    let commits = c.leader_applied_cmds as f64;
    let cpu_ns = match (cpu_start, thread_cpu_ns()) {
        (Some(a), Some(b)) => (b - a) as f64,
        _ => wall * 1e9,
    };
    Measured {
        commits_per_s: commits / wall,
        cpu_ns_per_entry: cpu_ns / commits,
    }
}

fn main() {
    println!("cairn-raft bench: 3 nodes in memory, one thread, {COMMAND_BYTES}-byte commands");
    println!(
        "{:>12} {:>16} {:>16}",
        "outstanding", "commits/s", "cpu ns/entry"
    );
    let mut results = Vec::new();
    for (outstanding, target) in [(1u64, 50_000u64), (64, 400_000), (1024, 2_000_000)] {
        let m = run(outstanding, target);
        println!(
            "{outstanding:>12} {:>16.0} {:>16.0}",
            m.commits_per_s, m.cpu_ns_per_entry
        );
        results.push(m);
    }
    println!(
        "raft: commits_per_s_1={:.0} commits_per_s_1024={:.0} ns_per_entry={:.0}",
        results[0].commits_per_s, results[2].commits_per_s, results[2].cpu_ns_per_entry
    );
}
