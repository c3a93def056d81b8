//! A small synchronous cluster for rule tests: instant delivery, explicit link cuts, every
//! delivered message recorded.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use cairn_raft::{
    Config, Entry, MemStorage, Message, MessageKind, NodeId, RaftNode, ReadState, Role, Storage,
};

pub struct Cluster {
    pub nodes: BTreeMap<NodeId, RaftNode<MemStorage>>,
    pub cut: BTreeSet<(NodeId, NodeId)>,
    /// Message kinds the network swallows.
    pub dropped_kinds: Vec<MessageKind>,
    pub queue: VecDeque<Message>,
    /// Every message delivered, in order.
    pub delivered: Vec<Message>,
    pub read_states: BTreeMap<NodeId, Vec<ReadState>>,
    pub applied: BTreeMap<NodeId, Vec<Entry>>,
}

pub fn config(id: NodeId) -> Config {
    let mut c = Config::new(id);
    c.election_timeout_ticks = 10;
    c.heartbeat_interval_ticks = 1;
    c
}

impl Cluster {
    /// `founders` bootstrapped voters, plus `spares` empty nodes that may join.
    pub fn new(founders: u64, spares: u64, tune: impl Fn(&mut Config)) -> Cluster {
        let ids: Vec<NodeId> = (1..=founders).collect();
        let mut nodes = BTreeMap::new();
        for id in 1..=founders + spares {
            let mut cfg = config(id);
            tune(&mut cfg);
            let storage = if id <= founders {
                MemStorage::new_bootstrapped(&ids)
            } else {
                MemStorage::default()
            };
            nodes.insert(id, RaftNode::new(cfg, storage).unwrap());
        }
        Cluster {
            nodes,
            cut: BTreeSet::new(),
            dropped_kinds: Vec::new(),
            queue: VecDeque::new(),
            delivered: Vec::new(),
            read_states: BTreeMap::new(),
            applied: BTreeMap::new(),
        }
    }

    /// A cluster over the given storages (all voters per their bootstrap).
    pub fn from_storages(
        storages: Vec<(NodeId, MemStorage)>,
        tune: impl Fn(&mut Config),
    ) -> Cluster {
        let mut nodes = BTreeMap::new();
        for (id, storage) in storages {
            let mut cfg = config(id);
            tune(&mut cfg);
            nodes.insert(id, RaftNode::new(cfg, storage).unwrap());
        }
        Cluster {
            nodes,
            cut: BTreeSet::new(),
            dropped_kinds: Vec::new(),
            queue: VecDeque::new(),
            delivered: Vec::new(),
            read_states: BTreeMap::new(),
            applied: BTreeMap::new(),
        }
    }

    pub fn node(&mut self, id: NodeId) -> &mut RaftNode<MemStorage> {
        self.nodes.get_mut(&id).unwrap()
    }

    pub fn isolate(&mut self, id: NodeId) {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for other in ids {
            self.cut.insert((id, other));
            self.cut.insert((other, id));
        }
    }

    pub fn heal(&mut self) {
        self.cut.clear();
    }

    /// Carries out one Ready of `id` fully (persist, send, apply, advance).
    pub fn process(&mut self, id: NodeId) {
        let node = self.nodes.get_mut(&id).unwrap();
        if !node.has_ready() {
            return;
        }
        let rd = node.ready().unwrap();
        if let Some(meta) = &rd.snapshot {
            node.storage_mut().apply_snapshot(meta.clone(), Vec::new());
        }
        if let Some(hs) = rd.hard_state {
            node.storage_mut().set_hard_state(hs);
        }
        node.storage_mut().append(&rd.entries).unwrap();
        self.applied
            .entry(id)
            .or_default()
            .extend(rd.committed_entries.iter().cloned());
        self.read_states
            .entry(id)
            .or_default()
            .extend(rd.read_states.iter().cloned());
        node.advance().unwrap();
        self.queue.extend(rd.messages);
        self.queue.extend(rd.persisted_messages);
    }

    /// Delivers messages until the cluster is quiet (bounded).
    pub fn settle(&mut self) {
        for _ in 0..10_000 {
            let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
            for &id in &ids {
                self.process(id);
            }
            let Some(m) = self.queue.pop_front() else {
                if ids.iter().all(|id| !self.nodes[id].has_ready()) {
                    return;
                }
                continue;
            };
            if self.cut.contains(&(m.from, m.to))
                || !self.nodes.contains_key(&m.to)
                || self.dropped_kinds.contains(&m.kind)
            {
                continue;
            }
            self.delivered.push(m.clone());
            self.node(m.to).step(m).unwrap();
        }
        panic!("cluster did not settle");
    }

    /// Ticks `id` until it starts an election, then lets the cluster settle.
    pub fn campaign(&mut self, id: NodeId) {
        for _ in 0..100 {
            self.node(id).tick().unwrap();
            let role = self.node(id).role();
            if role != Role::Follower {
                break;
            }
        }
        self.settle();
    }

    /// Elects `id` and checks it won.
    pub fn elect(&mut self, id: NodeId) {
        self.campaign(id);
        assert_eq!(self.node(id).role(), Role::Leader, "node {id} should lead");
    }

    /// Ticks every node once (in id order) and settles.
    pub fn tick_all(&mut self) {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for id in ids {
            self.node(id).tick().unwrap();
        }
        self.settle();
    }

    /// Ticks everyone until some node leads; returns it.
    pub fn tick_until_leader(&mut self) -> NodeId {
        for _ in 0..200 {
            if let Some((&id, _)) = self.nodes.iter().find(|(_, n)| n.role() == Role::Leader) {
                return id;
            }
            self.tick_all();
        }
        panic!("no leader elected within 200 ticks");
    }

    pub fn count_delivered(&self, f: impl Fn(&Message) -> bool) -> usize {
        self.delivered.iter().filter(|m| f(m)).count()
    }

    pub fn last_index(&self, id: NodeId) -> u64 {
        self.nodes[&id].storage().last_index().unwrap()
    }
}

pub fn is_kind(kind: MessageKind) -> impl Fn(&Message) -> bool {
    move |m| m.kind == kind
}
