//! The dependency graph of a history's transactions, and the search for its cycles.
//!
//! Nodes are transactions, plus time nodes that carry real-time order cheaply: "T1 returned
//! before T2 was called" holds for up to n² pairs, so instead of an edge per pair there is a
//! chain of time nodes, one per distinct return time, each linked to the next; a transaction
//! links to the node of its return time, and the last node before a transaction's call links
//! to it. T1 reaches T2 along the chain exactly when T1 returned before T2 was called, with
//! O(n) edges.
//!
//! Cycles are found in two steps. Tarjan's strongly connected components, iterative because
//! histories have a hundred thousand transactions and a recursive walk would overflow the
//! stack, split the graph into the parts where cycles can be. Then, within each part, a
//! breadth-first search looks for a short cycle using only the edge kinds of the most specific
//! anomaly (write-write alone first), widening the kinds until it finds one: a cycle is
//! reported as the strongest anomaly it proves, not merely as some cycle.

use std::collections::VecDeque;

/// An edge that concerns no key (real-time order).
pub(super) const NO_KEY: u32 = u32::MAX;

/// An absent node (unvisited, outside a subgraph).
const NONE: u32 = u32::MAX;

/// Why one transaction must come before another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum EdgeKind {
    /// It appended the element right before the other's in a key's order.
    Ww,
    /// The other read its append as a list's last element.
    Wr,
    /// It read a list that misses the other's append (an anti-dependency).
    Rw,
    /// It returned before the other was called.
    Realtime,
}

const WW: u8 = EdgeKind::Ww.bit();
const WR: u8 = EdgeKind::Wr.bit();
const RW: u8 = EdgeKind::Rw.bit();
const RT: u8 = EdgeKind::Realtime.bit();

impl EdgeKind {
    const fn bit(self) -> u8 {
        1 << self as u8
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Edge {
    pub to: u32,
    pub kind: EdgeKind,
    pub key: u32,
}

/// One hop of a cycle between transactions (a run of time nodes folded into one realtime hop).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Hop {
    pub from: u32,
    pub to: u32,
    pub kind: EdgeKind,
    pub key: u32,
}

/// Adjacency lists, packed: the edges out of node v are `edges[starts[v]..starts[v + 1]]`.
pub(super) struct Graph {
    starts: Vec<usize>,
    edges: Vec<Edge>,
}

impl Graph {
    /// The graph on `nodes` nodes with these (from, edge) pairs.
    pub(super) fn from_edges(nodes: usize, pairs: &[(u32, Edge)]) -> Graph {
        // A counting sort by source: linear, where a comparison sort of a million edges is not.
        let mut starts = vec![0usize; nodes + 1];
        for &(from, _) in pairs {
            starts[from as usize + 1] += 1;
        }
        for v in 0..nodes {
            starts[v + 1] += starts[v];
        }
        let mut next = starts.clone();
        let placeholder = Edge {
            to: NONE,
            kind: EdgeKind::Ww,
            key: NO_KEY,
        };
        let mut edges = vec![placeholder; pairs.len()];
        for &(from, edge) in pairs {
            edges[next[from as usize]] = edge;
            next[from as usize] += 1;
        }
        Graph { starts, edges }
    }

    fn nodes(&self) -> usize {
        self.starts.len() - 1
    }

    fn out(&self, v: u32) -> std::ops::Range<usize> {
        self.starts[v as usize]..self.starts[v as usize + 1]
    }

    /// The subgraph on `nodes` (local node i is `nodes[i]`) with the edges whose kind is in
    /// `mask`. `local` maps every node to NONE on entry, and does again on return.
    fn induced(&self, nodes: &[u32], mask: u8, local: &mut [u32]) -> Graph {
        for (i, &v) in nodes.iter().enumerate() {
            local[v as usize] = i as u32;
        }
        let mut starts = Vec::with_capacity(nodes.len() + 1);
        let mut edges = Vec::new();
        starts.push(0);
        for &v in nodes {
            for edge in &self.edges[self.out(v)] {
                let to = local[edge.to as usize];
                if mask & edge.kind.bit() != 0 && to != NONE {
                    edges.push(Edge { to, ..*edge });
                }
            }
            starts.push(edges.len());
        }
        for &v in nodes {
            local[v as usize] = NONE;
        }
        Graph { starts, edges }
    }
}

/// The strongly connected components with more than one node (there are no self-edges, so
/// these are the ones that hold cycles). Tarjan's algorithm with an explicit stack of frames
/// (node, next edge to look at) in place of recursion.
fn components(graph: &Graph) -> Vec<Vec<u32>> {
    let mut tarjan = Tarjan::new(graph.nodes());
    let mut found = Vec::new();
    for root in 0..graph.nodes() as u32 {
        if tarjan.index[root as usize] != NONE {
            continue;
        }
        tarjan.enter(graph, root);
        while let Some(&mut (v, ref mut next_edge)) = tarjan.frames.last_mut() {
            if *next_edge < graph.starts[v as usize + 1] {
                let w = graph.edges[*next_edge].to;
                *next_edge += 1;
                if tarjan.index[w as usize] == NONE {
                    tarjan.enter(graph, w);
                } else if tarjan.on_stack[w as usize] {
                    tarjan.low[v as usize] = tarjan.low[v as usize].min(tarjan.index[w as usize]);
                }
                continue;
            }
            tarjan.frames.pop();
            if let Some(component) = tarjan.leave(v) {
                found.push(component);
            }
        }
    }
    found
}

struct Tarjan {
    index: Vec<u32>,
    low: Vec<u32>,
    on_stack: Vec<bool>,
    stack: Vec<u32>,
    frames: Vec<(u32, usize)>,
    next_index: u32,
}

impl Tarjan {
    fn new(nodes: usize) -> Tarjan {
        Tarjan {
            index: vec![NONE; nodes],
            low: vec![0; nodes],
            on_stack: vec![false; nodes],
            stack: Vec::new(),
            frames: Vec::new(),
            next_index: 0,
        }
    }

    fn enter(&mut self, graph: &Graph, v: u32) {
        self.index[v as usize] = self.next_index;
        self.low[v as usize] = self.next_index;
        self.next_index += 1;
        self.on_stack[v as usize] = true;
        self.stack.push(v);
        self.frames.push((v, graph.starts[v as usize]));
    }

    /// After v's last edge (its frame already popped): its component, if v is the root of
    /// one with more than one node.
    fn leave(&mut self, v: u32) -> Option<Vec<u32>> {
        if let Some(&(parent, _)) = self.frames.last() {
            self.low[parent as usize] = self.low[parent as usize].min(self.low[v as usize]);
        }
        if self.low[v as usize] != self.index[v as usize] {
            return None;
        }
        let mut component = Vec::new();
        while let Some(w) = self.stack.pop() {
            self.on_stack[w as usize] = false;
            component.push(w);
            if w == v {
                break;
            }
        }
        (component.len() > 1).then_some(component)
    }
}

/// Breadth-first search state, reused across searches in one graph.
struct Bfs {
    /// How each visited node was reached: (previous node, edge index); NONE: not visited.
    parent: Vec<(u32, usize)>,
    touched: Vec<u32>,
    queue: VecDeque<u32>,
}

impl Bfs {
    fn new(nodes: usize) -> Bfs {
        Bfs {
            parent: vec![(NONE, 0); nodes],
            touched: Vec::new(),
            queue: VecDeque::new(),
        }
    }

    /// A shortest path from `from` to `to` (a cycle when they are the same node) over edges
    /// whose kind is in `mask` and whose target `keep` accepts, as (node, edge index) steps.
    /// None if there is none, or if `budget` edge visits run out first.
    fn path(
        &mut self,
        graph: &Graph,
        (from, to): (u32, u32),
        mask: u8,
        keep: impl Fn(u32) -> bool,
        budget: &mut u64,
    ) -> Option<Vec<(u32, usize)>> {
        for v in self.touched.drain(..) {
            self.parent[v as usize] = (NONE, 0);
        }
        self.queue.clear();
        self.queue.push_back(from);
        let mut last = None;
        'search: while let Some(u) = self.queue.pop_front() {
            for e in graph.out(u) {
                if *budget == 0 {
                    return None;
                }
                *budget -= 1;
                let edge = graph.edges[e];
                if mask & edge.kind.bit() == 0 || !keep(edge.to) {
                    continue;
                }
                if edge.to == to {
                    last = Some((u, e));
                    break 'search;
                }
                if edge.to == from || self.parent[edge.to as usize].0 != NONE {
                    continue;
                }
                self.parent[edge.to as usize] = (u, e);
                self.touched.push(edge.to);
                self.queue.push_back(edge.to);
            }
        }
        let (mut u, e) = last?;
        let mut steps = vec![(u, e)];
        while u != from {
            let (previous, e) = self.parent[u as usize];
            steps.push((previous, e));
            u = previous;
        }
        steps.reverse();
        Some(steps)
    }
}

/// The searches, most specific anomaly first: edge kinds allowed, and whether the cycle must
/// hold exactly one anti-dependency (G-single) rather than any number.
const SEARCHES: [(u8, bool); 8] = [
    (WW, false),
    (WW | WR, false),
    (WW | WR | RW, true),
    (WW | WR | RW, false),
    (WW | RT, false),
    (WW | WR | RT, false),
    (WW | WR | RW | RT, true),
    (WW | WR | RW | RT, false),
];

/// Edge visits allowed per component to the search for a cycle with exactly one
/// anti-dependency (one breadth-first search per anti-dependency edge). When it runs out, the
/// component's cycle is whatever the next, wider search finds: still a real cycle, classified
/// by its own edges, but perhaps not the most specific one.
pub(super) const MAX_SINGLE_RW_STEPS: u64 = 5_000_000;

/// One cycle per strongly connected component, in the order of each component's first
/// transaction, each the most specific the searches find; nodes from `transactions` on are
/// time nodes, and are folded away.
pub(super) fn cycles(graph: &Graph, transactions: usize) -> Vec<Vec<Hop>> {
    let mut local = vec![NONE; graph.nodes()];
    let mut found = components(graph);
    for component in &mut found {
        component.sort_unstable();
    }
    found.sort_unstable_by_key(|component| component[0]);
    found
        .iter()
        .filter_map(|component| most_specific_cycle(graph, component, transactions, &mut local))
        .collect()
}

fn most_specific_cycle(
    graph: &Graph,
    component: &[u32],
    transactions: usize,
    local: &mut [u32],
) -> Option<Vec<Hop>> {
    for (mask, single_rw) in SEARCHES {
        let sub = graph.induced(component, mask, local);
        let parts = components(&sub);
        if parts.is_empty() {
            continue;
        }
        let steps = if single_rw {
            single_anti_dependency(&sub, &parts, mask)
        } else {
            // The component is sorted, so the smallest local id is the earliest transaction
            // (time nodes, numbered after every transaction, are never the smallest of a cycle).
            let start = parts.iter().flatten().copied().min()?;
            // Linear in the component: no budget needed.
            let mut unbounded = u64::MAX;
            Bfs::new(sub.nodes()).path(&sub, (start, start), mask, |_| true, &mut unbounded)
        };
        if let Some(steps) = steps {
            return Some(fold(&sub, &steps, component, transactions));
        }
    }
    None
}

/// A cycle with exactly one rw edge: for each rw edge a → b inside a component, a path from b
/// back to a without rw edges.
fn single_anti_dependency(sub: &Graph, parts: &[Vec<u32>], mask: u8) -> Option<Vec<(u32, usize)>> {
    let mut part_of = vec![NONE; sub.nodes()];
    for (i, part) in parts.iter().enumerate() {
        for &v in part {
            part_of[v as usize] = i as u32;
        }
    }
    let mut bfs = Bfs::new(sub.nodes());
    let mut budget = MAX_SINGLE_RW_STEPS;
    for a in 0..sub.nodes() as u32 {
        let part = part_of[a as usize];
        for e in sub.out(a) {
            let edge = sub.edges[e];
            if part == NONE || edge.kind != EdgeKind::Rw || part_of[edge.to as usize] != part {
                continue;
            }
            let keep = |v: u32| part_of[v as usize] == part;
            if let Some(path) = bfs.path(sub, (edge.to, a), mask & !RW, keep, &mut budget) {
                let mut cycle = vec![(a, e)];
                cycle.extend(path);
                return Some(cycle);
            }
            if budget == 0 {
                return None;
            }
        }
    }
    None
}

/// Steps of `sub` as hops between transactions of the whole graph.
fn fold(sub: &Graph, steps: &[(u32, usize)], component: &[u32], transactions: usize) -> Vec<Hop> {
    let mut hops: Vec<Hop> = Vec::with_capacity(steps.len());
    // Where a run of realtime edges through time nodes started.
    let mut run_from = None;
    for &(u, e) in steps {
        let edge = sub.edges[e];
        let from = run_from.take().unwrap_or(component[u as usize]);
        let to = component[edge.to as usize];
        if to as usize >= transactions {
            run_from = Some(from);
            continue;
        }
        hops.push(Hop {
            from,
            to,
            kind: edge.kind,
            key: edge.key,
        });
    }
    // Told from its earliest transaction, however the search came upon it.
    let earliest = (0..hops.len()).min_by_key(|&i| hops[i].from).unwrap_or(0);
    hops.rotate_left(earliest);
    hops
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edge(to: u32, kind: EdgeKind) -> Edge {
        Edge { to, kind, key: 0 }
    }

    #[test]
    fn a_long_cycle_does_not_overflow_the_stack() {
        let n = 300_000u32;
        let pairs: Vec<_> = (0..n)
            .map(|v| (v, edge((v + 1) % n, EdgeKind::Ww)))
            .collect();
        let graph = Graph::from_edges(n as usize, &pairs);
        let found = components(&graph);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].len(), n as usize);
    }

    #[test]
    fn the_most_specific_cycle_wins_over_a_shorter_one() {
        // 0 -rw-> 1 -wr-> 0 is shorter, but 0 -ww-> 2 -ww-> 3 -ww-> 0 proves G0.
        let pairs = [
            (0, edge(1, EdgeKind::Rw)),
            (1, edge(0, EdgeKind::Wr)),
            (0, edge(2, EdgeKind::Ww)),
            (2, edge(3, EdgeKind::Ww)),
            (3, edge(0, EdgeKind::Ww)),
        ];
        let found = cycles(&Graph::from_edges(4, &pairs), 4);
        assert_eq!(found.len(), 1);
        assert!(found[0].iter().all(|hop| hop.kind == EdgeKind::Ww));
        assert_eq!(found[0].len(), 3);
    }

    #[test]
    fn time_nodes_fold_into_one_realtime_hop() {
        // Transactions 0 and 1; time nodes 2 and 3. 0 -> 2 -> 3 -> 1 -rw-> 0.
        let pairs = [
            (0, edge(2, EdgeKind::Realtime)),
            (2, edge(3, EdgeKind::Realtime)),
            (3, edge(1, EdgeKind::Realtime)),
            (1, edge(0, EdgeKind::Rw)),
        ];
        let found = cycles(&Graph::from_edges(4, &pairs), 2);
        assert_eq!(found.len(), 1);
        let kinds: Vec<_> = found[0]
            .iter()
            .map(|hop| (hop.from, hop.to, hop.kind))
            .collect();
        assert_eq!(
            kinds,
            vec![(0, 1, EdgeKind::Realtime), (1, 0, EdgeKind::Rw)]
        );
    }
}
