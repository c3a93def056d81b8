//! The simulated cluster: nodes, their durable state, and the invariants' bookkeeping.

mod actors;
mod checks;
mod network;

use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};

use cairn_raft::{
    ConfChange, ConfState, Config, DropReason, EntryKind, Error, Message, MessageKind, NodeId,
    RaftNode, ReadMode, ReadState, Role, Storage,
};
use cairn_raft::{Entry, MemStorage};

/// Virtual time units per tick (messages are delayed in units, so a tick is coarse).
pub(crate) const UNITS_PER_TICK: u64 = 10;
/// Length of the fault phase, in units.
pub(crate) const FAULT_PHASE_UNITS: u64 = 4_000;
/// Liveness bound after healing, in ticks: a leader exists and a fresh proposal commits.
pub(crate) const LIVENESS_BOUND_TICKS: u64 = 200;
/// Bound for every member to apply that proposal. Longer, because a member far behind
/// catches up at the configured bandwidth (as little as one entry per message, one message
/// in flight).
pub(crate) const CATCH_UP_BOUND_TICKS: u64 = 1_000;

pub(crate) struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
    fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> Option<T> {
        if items.is_empty() {
            None
        } else {
            Some(items[self.below(items.len() as u64) as usize])
        }
    }
}

/// The replicated state machine: the list of applied client commands.
#[derive(Clone, Debug, Default)]
pub(crate) struct App {
    applied: u64,
    commands: Vec<u64>,
    conf: ConfState,
}

impl App {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 * (self.commands.len() + 1));
        out.extend_from_slice(&self.applied.to_le_bytes());
        for c in &self.commands {
            out.extend_from_slice(&c.to_le_bytes());
        }
        out
    }
    fn decode(bytes: &[u8], conf: ConfState) -> App {
        let words: Vec<u64> = bytes
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        App {
            applied: words[0],
            commands: words[1..].to_vec(),
            conf,
        }
    }
}

pub(crate) struct SimNode {
    raft: Option<RaftNode<MemStorage>>,
    /// Durable storage while crashed.
    durable: MemStorage,
    /// The state machine is durable at every apply (like a B+tree commit per batch).
    app: App,
    cfg: Config,
    snapshots_in: HashMap<u64, Vec<u8>>,
    confirmed_reads: Vec<ReadState>,
    /// Commit index last seen in this incarnation (it never goes back while alive).
    last_commit: u64,
}

#[derive(PartialEq, Eq)]
pub(crate) struct InFlight {
    at: u64,
    seq: u64,
    msg: Message,
    snapshot_data: Option<Vec<u8>>,
}

impl Ord for InFlight {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}
impl PartialOrd for InFlight {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

#[derive(Default, Debug, Clone, Copy)]
pub(crate) struct Stats {
    pub(crate) proposals: u64,
    pub(crate) dropped_proposals: u64,
    pub(crate) applied_cmds: u64,
    pub(crate) reads_served: u64,
    pub(crate) crashes: u64,
    pub(crate) snapshots_installed: u64,
    pub(crate) conf_changes: u64,
    pub(crate) transfers: u64,
    pub(crate) elections: u64,
}

pub(crate) struct Sim {
    rng: Rng,
    now: u64,
    nodes: BTreeMap<NodeId, SimNode>,
    net: BinaryHeap<InFlight>,
    seq: u64,
    /// Directed links that drop everything.
    blocked: BTreeSet<(NodeId, NodeId)>,
    drop_p: f64,
    dup_p: f64,
    max_delay: u64,
    /// Print deliveries to and from this node (`CAIRN_RAFT_TRACE=<id>`).
    trace: Option<NodeId>,
    /// Multiplier of crash, restart and partition rates.
    storm: f64,
    // Invariant state.
    leaders: HashMap<u64, NodeId>,
    entries_seen: HashMap<(u64, u64), (u64, Option<u64>)>,
    applied: BTreeMap<u64, (u64, u64)>,
    max_applied: u64,
    max_read_result: u64,
    pending_reads: HashMap<u64, (NodeId, u64)>,
    next_id: u64,
    acked_cmds: BTreeSet<u64>,
    removed: BTreeSet<NodeId>,
    /// Vote grants sent, by (term, candidate).
    grants: HashMap<(u64, NodeId), BTreeSet<NodeId>>,
    pub(crate) stats: Stats,
}

pub(crate) type Check = Result<(), String>;

pub(crate) fn fail<T>(msg: String) -> Result<T, String> {
    Err(msg)
}

pub(crate) fn entry_hash(e: &Entry) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ (e.kind == EntryKind::ConfChange) as u64;
    for b in e.data.iter() {
        h = (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
    }
    h
}

impl Sim {
    pub(crate) fn new(seed: u64) -> Sim {
        let mut rng = Rng(seed);
        let n: u64 = if seed % 2 == 0 { 3 } else { 5 };
        let founders: Vec<NodeId> = (1..=n).collect();
        let pre_vote = rng.chance(0.8);
        let check_quorum = rng.chance(0.8);
        let lease = check_quorum && rng.chance(0.3);
        let forward = rng.chance(0.7);
        let max_uncommitted = [8, 1_000][rng.below(2) as usize];
        let mut nodes = BTreeMap::new();
        for id in 1..=n + 2 {
            let mut cfg = Config::new(id);
            cfg.election_timeout_ticks = 10;
            cfg.heartbeat_interval_ticks = 2;
            cfg.pre_vote = pre_vote;
            cfg.check_quorum = check_quorum;
            cfg.read_mode = if lease {
                ReadMode::LeaseBased
            } else {
                ReadMode::Safe
            };
            cfg.max_msg_bytes = [33, 64, 320][rng.below(3) as usize];
            cfg.max_inflight_msgs = 1 + rng.below(8) as usize;
            cfg.max_promotion_lag_entries = 20;
            cfg.forward_proposals = forward;
            cfg.max_uncommitted_entries = max_uncommitted;
            cfg.seed = seed;
            let storage = if id <= n {
                MemStorage::new_bootstrapped(&founders)
            } else {
                MemStorage::default()
            };
            let raft = RaftNode::new(cfg.clone(), storage.clone()).expect("valid config");
            nodes.insert(
                id,
                SimNode {
                    raft: Some(raft),
                    durable: storage,
                    app: App::default(),
                    cfg,
                    snapshots_in: HashMap::new(),
                    confirmed_reads: Vec::new(),
                    last_commit: 0,
                },
            );
        }
        let drop_p = [0.0, 0.01, 0.05, 0.15, 0.3][rng.below(5) as usize];
        let dup_p = [0.0, 0.02, 0.1][rng.below(3) as usize];
        let max_delay = [2, 8, 25][rng.below(3) as usize];
        let storm = [1.0, 3.0, 8.0][rng.below(3) as usize];
        Sim {
            rng,
            now: 0,
            nodes,
            net: BinaryHeap::new(),
            seq: 0,
            blocked: BTreeSet::new(),
            drop_p,
            dup_p,
            max_delay,
            storm,
            trace: env_u64("CAIRN_RAFT_TRACE"),
            leaders: HashMap::new(),
            entries_seen: HashMap::new(),
            applied: BTreeMap::new(),
            max_applied: 0,
            max_read_result: 0,
            pending_reads: HashMap::new(),
            next_id: 1,
            acked_cmds: BTreeSet::new(),
            removed: BTreeSet::new(),
            grants: HashMap::new(),
            stats: Stats::default(),
        }
    }

    pub(crate) fn ids(&self) -> Vec<NodeId> {
        self.nodes.keys().copied().collect()
    }

    pub(crate) fn live_ids(&self) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.raft.is_some())
            .map(|(&id, _)| id)
            .collect()
    }

    pub(crate) fn leader_ids(&self) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.raft.as_ref().is_some_and(|r| r.role() == Role::Leader))
            .map(|(&id, _)| id)
            .collect()
    }

    pub(crate) fn crash(&mut self, id: NodeId) {
        let node = self.nodes.get_mut(&id).unwrap();
        if let Some(raft) = node.raft.take() {
            node.durable = raft.storage().clone();
            node.snapshots_in.clear();
            node.confirmed_reads.clear();
            self.pending_reads.retain(|_, (n, _)| *n != id);
            self.stats.crashes += 1;
        }
    }

    pub(crate) fn restart(&mut self, id: NodeId) -> Check {
        let node = self.nodes.get_mut(&id).unwrap();
        if node.raft.is_some() {
            return Ok(());
        }
        let mut cfg = node.cfg.clone();
        cfg.applied = node.app.applied;
        cfg.seed = cfg.seed.wrapping_add(self.now);
        match RaftNode::new(cfg, node.durable.clone()) {
            Ok(r) => {
                if r.commit() < node.app.applied {
                    return fail(format!(
                        "node {id} restarted with commit {} below its applied {}",
                        r.commit(),
                        node.app.applied
                    ));
                }
                node.last_commit = r.commit();
                node.raft = Some(r);
            }
            Err(e) => return fail(format!("node {id} restart failed: {e}")),
        }
        Ok(())
    }

    /// Carries out one Ready of `id`, checking invariants; may crash mid-way.
    pub(crate) fn process_ready(&mut self, id: NodeId, may_crash: bool) -> Check {
        let Some(raft) = self.nodes.get_mut(&id).and_then(|n| n.raft.as_mut()) else {
            return Ok(());
        };
        if !raft.has_ready() {
            return Ok(());
        }
        let conf = raft.conf_state().clone();
        let commit = raft.commit();
        let node = self.nodes.get_mut(&id).unwrap();
        if commit < node.last_commit {
            return fail(format!(
                "node {id} commit index went back from {} to {commit}",
                node.last_commit
            ));
        }
        node.last_commit = commit;
        let raft = node.raft.as_mut().unwrap();
        let rd = raft.ready().map_err(|e| format!("node {id} ready: {e}"))?;
        for m in &rd.messages {
            self.check_outgoing(id, &conf, m)?;
        }
        for m in rd.messages {
            self.send(m, true);
        }
        if may_crash && self.rng.chance(0.003 * self.storm) {
            self.crash(id);
            return Ok(());
        }
        let node = self.nodes.get_mut(&id).unwrap();
        let raft = node.raft.as_mut().unwrap();
        if let Some(meta) = &rd.snapshot {
            let Some(data) = node.snapshots_in.remove(&meta.index) else {
                return fail(format!("node {id}: snapshot {} without data", meta.index));
            };
            node.app = App::decode(&data, meta.conf_state.clone());
            if node.app.applied != meta.index {
                return fail(format!("node {id}: snapshot data/meta index mismatch"));
            }
            raft.storage_mut().apply_snapshot(meta.clone(), data);
            self.stats.snapshots_installed += 1;
        }
        if let Some(hs) = rd.hard_state {
            raft.storage_mut().set_hard_state(hs);
        }
        raft.storage_mut()
            .append(&rd.entries)
            .map_err(|e| format!("node {id}: append: {e}"))?;
        // Log matching: an (index, term) pair always names the same entry after the same
        // predecessor term, hence (by induction) the same log prefix.
        for e in &rd.entries {
            let prev = raft.storage().term(e.index - 1).ok();
            let h = entry_hash(e);
            match self.entries_seen.get(&(e.index, e.term)) {
                Some(&(h0, p0)) => {
                    if h0 != h || (p0.is_some() && prev.is_some() && p0 != prev) {
                        return fail(format!(
                            "log matching violated at index {} term {} on node {id}",
                            e.index, e.term
                        ));
                    }
                }
                None => {
                    self.entries_seen.insert((e.index, e.term), (h, prev));
                }
            }
        }
        for m in &rd.persisted_messages {
            self.check_outgoing(id, &conf, m)?;
        }
        for m in rd.persisted_messages {
            self.send(m, true);
        }
        for e in &rd.committed_entries {
            self.apply(id, e)?;
        }
        let node = self.nodes.get_mut(&id).unwrap();
        node.confirmed_reads.extend(rd.read_states);
        for ctx in rd.dropped_reads {
            let rid = u64::from_le_bytes(ctx.try_into().unwrap());
            self.pending_reads.remove(&rid);
        }
        let raft = node.raft.as_mut().unwrap();
        raft.advance()
            .map_err(|e| format!("node {id} advance: {e}"))?;
        self.serve_reads(id)?;
        self.check_leader(id)
    }

    pub(crate) fn apply(&mut self, id: NodeId, e: &Entry) -> Check {
        let node = self.nodes.get_mut(&id).unwrap();
        if e.index != node.app.applied + 1 {
            return fail(format!(
                "node {id} applied index {} after {}",
                e.index, node.app.applied
            ));
        }
        node.app.applied = e.index;
        match e.kind {
            EntryKind::ConfChange => {
                if let Ok(cc) = ConfChange::decode(&e.data) {
                    node.app.conf = node.app.conf.applied(&cc);
                }
            }
            EntryKind::Normal if e.data.len() == 8 => {
                let cmd = u64::from_le_bytes(e.data[..].try_into().unwrap());
                node.app.commands.push(cmd);
                if self.acked_cmds.insert(cmd) {
                    self.stats.applied_cmds += 1;
                }
            }
            EntryKind::Normal => {}
        }
        let h = entry_hash(e);
        match self.applied.get(&e.index) {
            Some(&(t, h0)) if (t, h0) != (e.term, h) => {
                return fail(format!(
                    "state machine safety: node {id} applied ({}, term {}) but another node applied term {t} there",
                    e.index, e.term
                ));
            }
            Some(_) => {}
            None => {
                self.applied.insert(e.index, (e.term, h));
            }
        }
        self.max_applied = self.max_applied.max(e.index);
        Ok(())
    }

    pub(crate) fn serve_reads(&mut self, id: NodeId) -> Check {
        let node = self.nodes.get_mut(&id).unwrap();
        let applied = node.app.applied;
        let mut still = Vec::new();
        let mut served = Vec::new();
        for rs in node.confirmed_reads.drain(..) {
            if rs.index <= applied {
                served.push(rs);
            } else {
                still.push(rs);
            }
        }
        node.confirmed_reads = still;
        for rs in served {
            let rid = u64::from_le_bytes(rs.context[..].try_into().unwrap());
            // A read may be answered twice (duplicated response); the first counts.
            let Some((origin, must_see)) = self.pending_reads.remove(&rid) else {
                continue;
            };
            if origin != id {
                return fail(format!(
                    "read {rid} answered on node {id}, asked on {origin}"
                ));
            }
            if applied < must_see {
                return fail(format!(
                    "stale read {rid} on node {id}: saw index {applied}, but index {must_see} was committed before it started"
                ));
            }
            self.max_read_result = self.max_read_result.max(applied);
            self.stats.reads_served += 1;
        }
        Ok(())
    }

    pub(crate) fn step_time(&mut self, faults: bool) -> Check {
        self.now += 1;
        self.deliver_due()?;
        for id in self.live_ids() {
            // Each node ticks on its own phase: clocks are not aligned.
            if (self.now + id * 3) % UNITS_PER_TICK == 0 {
                let raft = self.nodes.get_mut(&id).unwrap().raft.as_mut().unwrap();
                raft.tick().map_err(|e| format!("tick on {id}: {e}"))?;
            }
        }
        if faults {
            self.random_events()?;
        }
        for id in self.live_ids() {
            for _ in 0..3 {
                self.process_ready(id, faults)?;
            }
        }
        Ok(())
    }

    pub(crate) fn run(&mut self) -> Check {
        while self.now < FAULT_PHASE_UNITS {
            self.step_time(true)?;
        }
        self.check_liveness()
    }
}

pub(crate) fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}
