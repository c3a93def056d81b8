//! Strict serializability of list-append transactions, checked the way Elle does (Kingsbury
//! and Alvaro, "Elle: Inferring Isolation Anomalies from Experimental Observations", 2020).
//!
//! Why lists: a read of a register shows only the last write, so a checker must search for an
//! order of the writes that explains every read (exponential in the worst case). A read of a
//! list shows every append before it, in order. Since appended values are unique per key,
//! each key's version order can be read off the history, and which transaction wrote each
//! element is known; checking becomes finding cycles in a graph, near linear in the history.
//!
//! The steps:
//!
//! 1. Reads. Only reads of committed transactions (`ok: true`) with a known list count. A
//!    transaction's first read of a key is its observation of that key: the list, minus the
//!    transaction's own appends before the read. Later reads of the key in the same
//!    transaction must equal the earlier read plus its own appends since, and a read after an
//!    own append must end with it; otherwise the anomaly is `internal`.
//! 2. Version order. Per key, the longest observation is the order; every other observation
//!    must be a prefix of it (`incompatible-order`). Its elements must be distinct
//!    (`duplicate-elements`), appended by some transaction (`garbage-read`), and not by one
//!    that aborted (G1a). An observation must not end at a value its writer followed with
//!    another append to the same key (G1b: an intermediate state).
//! 3. Committed transactions: those with `ok: true`, and indeterminate ones (no return) one of
//!    whose appends some read saw (if one was seen, the whole transaction took effect).
//! 4. Lost appends: an acknowledged append missing from a read of its key that began after
//!    the append's transaction returned. (It may be in no read at all, so no edge to its
//!    writer exists; this is the check that catches it.)
//! 5. The dependency graph over committed transactions: ww from the writer of each element of
//!    a key's order to the writer of the next; wr from the writer of an observation's last
//!    element to the reader; rw from a reader to the writer of the element after what it saw
//!    (for an empty observation, the first element); and realtime order (see the `cycles`
//!    submodule). A cycle is an anomaly, named by its edges: G0 (ww only), G1c (some wr, no
//!    rw), G-single (one rw), G2 (more rw); one that needs realtime order ends in `-realtime`.
//!
//! Appends that no read saw have no place in any order, so they get no ww, wr or rw edge;
//! and reads in a transaction that did not commit are ignored (they saw nothing that counts).

mod cycles;
mod explain;

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use crate::append_history::{show_list, validate, AppendHistoryError, MicroOp, Txn};
use cycles::{Edge, EdgeKind, Graph, Hop, NO_KEY};

/// The kinds of anomaly the checker reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AnomalyKind {
    G0,
    G1a,
    G1b,
    G1c,
    GSingle,
    G2,
    G0Realtime,
    G1cRealtime,
    GSingleRealtime,
    G2Realtime,
    LostAppend,
    Internal,
    IncompatibleOrder,
    DuplicateElements,
    GarbageRead,
}

impl AnomalyKind {
    /// As reports name it.
    pub fn name(self) -> &'static str {
        match self {
            AnomalyKind::G0 => "G0",
            AnomalyKind::G1a => "G1a",
            AnomalyKind::G1b => "G1b",
            AnomalyKind::G1c => "G1c",
            AnomalyKind::GSingle => "G-single",
            AnomalyKind::G2 => "G2",
            AnomalyKind::G0Realtime => "G0-realtime",
            AnomalyKind::G1cRealtime => "G1c-realtime",
            AnomalyKind::GSingleRealtime => "G-single-realtime",
            AnomalyKind::G2Realtime => "G2-realtime",
            AnomalyKind::LostAppend => "lost-append",
            AnomalyKind::Internal => "internal",
            AnomalyKind::IncompatibleOrder => "incompatible-order",
            AnomalyKind::DuplicateElements => "duplicate-elements",
            AnomalyKind::GarbageRead => "garbage-read",
        }
    }
}

impl fmt::Display for AnomalyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One kind of anomaly found: how many times, and the first one spelled out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anomaly {
    pub kind: AnomalyKind,
    /// Dependency cycles count once per strongly connected component.
    pub count: usize,
    pub example: String,
}

/// The verdict on a whole history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendVerdict {
    pub txns: usize,
    pub keys: usize,
    /// Why the history could not be checked at all (then nothing else was looked at).
    pub malformed: Option<AppendHistoryError>,
    /// One entry per kind found, in the order of [`AnomalyKind`].
    pub found: Vec<Anomaly>,
}

impl AppendVerdict {
    pub fn valid(&self) -> bool {
        self.malformed.is_none() && self.found.is_empty()
    }

    /// The kinds of anomaly found.
    pub fn anomalies(&self) -> Vec<AnomalyKind> {
        self.found.iter().map(|anomaly| anomaly.kind).collect()
    }

    /// Each kind of anomaly found with its first instance spelled out (or why the history
    /// cannot be checked); None if the history is valid.
    pub fn explain(&self) -> Option<String> {
        if let Some(err) = &self.malformed {
            return Some(format!("the history cannot be checked: {err}"));
        }
        if self.found.is_empty() {
            return None;
        }
        let summary: Vec<String> = self
            .found
            .iter()
            .map(|anomaly| format!("{} ×{}", anomaly.kind, anomaly.count))
            .collect();
        let mut text = format!(
            "{} transactions on {} keys are not strict serializable: {}",
            self.txns,
            self.keys,
            summary.join(", ")
        );
        for anomaly in &self.found {
            text.push_str(&format!("\n{}: {}", anomaly.kind, anomaly.example));
        }
        Some(text)
    }
}

/// Checks `txns` (see the module documentation for what and how).
pub fn check(txns: &[Txn]) -> AppendVerdict {
    let mut verdict = AppendVerdict {
        txns: txns.len(),
        keys: 0,
        malformed: None,
        found: Vec::new(),
    };
    if let Err(err) = validate(txns) {
        verdict.malformed = Some(err);
        return verdict;
    }
    let mut findings = Findings::default();
    let mut history = History::index(txns, &mut findings);
    verdict.keys = history.keys.len();
    history.derive_orders(&mut findings);
    history.check_observations(&mut findings);
    history.lost_appends(&mut findings);
    let graph = history.graph();
    for cycle in cycles::cycles(&graph, txns.len()) {
        findings.note(classify(&cycle), || history.explain_cycle(&cycle));
    }
    verdict.found = findings
        .0
        .into_iter()
        .map(|(kind, (count, example))| Anomaly {
            kind,
            count,
            example,
        })
        .collect();
    verdict
}

/// Anomalies found so far: per kind, how many and the first one's explanation (written only
/// for the first: a broken history can hold a million of them).
#[derive(Default)]
struct Findings(BTreeMap<AnomalyKind, (usize, String)>);

impl Findings {
    fn note(&mut self, kind: AnomalyKind, explain: impl FnOnce() -> String) {
        self.0.entry(kind).or_insert_with(|| (0, explain())).0 += 1;
    }
}

/// The anomaly a cycle proves, from its edges.
fn classify(cycle: &[Hop]) -> AnomalyKind {
    let rw = cycle.iter().filter(|hop| hop.kind == EdgeKind::Rw).count();
    let wr = cycle.iter().any(|hop| hop.kind == EdgeKind::Wr);
    let realtime = cycle.iter().any(|hop| hop.kind == EdgeKind::Realtime);
    match (rw, wr, realtime) {
        (0, false, false) => AnomalyKind::G0,
        (0, true, false) => AnomalyKind::G1c,
        (1, _, false) => AnomalyKind::GSingle,
        (_, _, false) => AnomalyKind::G2,
        (0, false, true) => AnomalyKind::G0Realtime,
        (0, true, true) => AnomalyKind::G1cRealtime,
        (1, _, true) => AnomalyKind::GSingleRealtime,
        (_, _, true) => AnomalyKind::G2Realtime,
    }
}

/// A transaction's position in the history.
type TxnId = u32;

/// Who appended a value to a key.
#[derive(Debug, Clone, Copy)]
struct Writer {
    txn: TxnId,
    /// The same transaction appended to the same key again afterwards.
    intermediate: bool,
}

/// What a committed transaction saw of a key written by others (see the module docs).
struct Observation<'h> {
    txn: TxnId,
    seen: &'h [i64],
    /// A prefix of the key's order.
    compatible: bool,
}

/// A key's appends, observations and version order.
struct Key<'h> {
    name: &'h str,
    writers: HashMap<i64, Writer>,
    observations: Vec<Observation<'h>>,
    /// Appends of committed transactions: (return time, value, writer).
    acknowledged: Vec<(u64, i64, TxnId)>,
    /// The version order: the longest observation (empty if none).
    order: &'h [i64],
    order_reader: TxnId,
    /// Where each value of `order` first stands.
    position: HashMap<i64, usize>,
    /// The writer of each element of `order` (None: garbage).
    order_writers: Vec<Option<TxnId>>,
}

impl<'h> Key<'h> {
    fn new(name: &'h str) -> Key<'h> {
        Key {
            name,
            writers: HashMap::new(),
            observations: Vec::new(),
            acknowledged: Vec::new(),
            order: &[],
            order_reader: 0,
            position: HashMap::new(),
            order_writers: Vec::new(),
        }
    }
}

/// An append made after the same transaction's observation of the key: it must not be in it.
struct FutureRead {
    key: u32,
    observation: usize,
    value: i64,
}

/// Where a transaction stands with one key while its micro-ops are replayed.
#[derive(Default)]
struct KeyInTxn<'h> {
    last_read: Option<&'h [i64]>,
    /// Own appends since `last_read` (or since the start).
    own: Vec<i64>,
    /// This transaction's observation of the key, once made.
    observation: Option<usize>,
}

/// What a read in a committed transaction tells.
enum ReadCheck<'h> {
    /// The first read of the key: what others had appended.
    Observed(&'h [i64]),
    /// A later read, agreeing with the earlier one and the appends since.
    Consistent,
    /// Disagrees with the transaction's own earlier read or appends: why.
    Inconsistent(String),
    /// Holds one of the transaction's own appends twice.
    Duplicate(i64),
}

impl<'h> KeyInTxn<'h> {
    fn read(&self, list: &'h [i64]) -> ReadCheck<'h> {
        let own = self.own.as_slice();
        match self.last_read {
            Some(before) => {
                let agrees = list.len() == before.len() + own.len()
                    && list.starts_with(before)
                    && list.ends_with(own);
                if agrees {
                    ReadCheck::Consistent
                } else if own.is_empty() {
                    ReadCheck::Inconsistent(format!(
                        "read {} after reading {} and appending nothing",
                        show_list(list),
                        show_list(before)
                    ))
                } else {
                    ReadCheck::Inconsistent(format!(
                        "read {} after reading {} and appending {}",
                        show_list(list),
                        show_list(before),
                        show_list(own)
                    ))
                }
            }
            None if own.is_empty() => ReadCheck::Observed(list),
            None if !list.ends_with(own) => ReadCheck::Inconsistent(format!(
                "appended {} then read {}, which does not end with its own appends",
                show_list(own),
                show_list(list)
            )),
            None => {
                let seen = &list[..list.len() - own.len()];
                match own.iter().find(|value| seen.contains(value)) {
                    Some(&value) => ReadCheck::Duplicate(value),
                    None => ReadCheck::Observed(seen),
                }
            }
        }
    }
}

/// The history, indexed by key.
struct History<'h> {
    txns: &'h [Txn],
    keys: Vec<Key<'h>>,
    future_reads: Vec<FutureRead>,
    /// Per transaction: committed (see the module docs); known after `derive_orders`.
    committed: Vec<bool>,
}

impl<'h> History<'h> {
    /// Replays every transaction's micro-ops: writers, observations, internal consistency.
    fn index(txns: &'h [Txn], findings: &mut Findings) -> History<'h> {
        let mut ids: HashMap<&'h str, u32> = HashMap::new();
        let mut keys: Vec<Key<'h>> = Vec::new();
        let mut future_reads = Vec::new();
        let mut appended_later: HashSet<&'h str> = HashSet::new();
        let mut intermediate: Vec<bool> = Vec::new();
        let mut in_txn: HashMap<u32, KeyInTxn<'h>> = HashMap::new();
        for (t, txn) in txns.iter().enumerate() {
            let t = t as TxnId;
            // An append is intermediate if the same key is appended to later in the txn.
            appended_later.clear();
            intermediate.clear();
            intermediate.resize(txn.ops.len(), false);
            for (i, op) in txn.ops.iter().enumerate().rev() {
                if let MicroOp::Append { key, .. } = op {
                    intermediate[i] = !appended_later.insert(key);
                }
            }
            in_txn.clear();
            for (i, op) in txn.ops.iter().enumerate() {
                let k = *ids.entry(op.key()).or_insert_with(|| {
                    keys.push(Key::new(op.key()));
                    (keys.len() - 1) as u32
                });
                let key = &mut keys[k as usize];
                let state = in_txn.entry(k).or_default();
                let list = match op {
                    MicroOp::Append { value, .. } => {
                        let writer = Writer {
                            txn: t,
                            intermediate: intermediate[i],
                        };
                        key.writers.insert(*value, writer);
                        if let (true, Some(ret)) = (txn.ok, txn.ret) {
                            key.acknowledged.push((ret, *value, t));
                        }
                        state.own.push(*value);
                        if let Some(observation) = state.observation {
                            future_reads.push(FutureRead {
                                key: k,
                                observation,
                                value: *value,
                            });
                        }
                        continue;
                    }
                    // Unknown, or read by a transaction that did not commit: tells nothing.
                    MicroOp::Read { value: None, .. } => continue,
                    MicroOp::Read { .. } if !txn.ok => continue,
                    MicroOp::Read {
                        value: Some(list), ..
                    } => list.as_slice(),
                };
                match state.read(list) {
                    ReadCheck::Observed(seen) => {
                        state.observation = Some(key.observations.len());
                        key.observations.push(Observation {
                            txn: t,
                            seen,
                            compatible: true,
                        });
                    }
                    ReadCheck::Consistent => {}
                    ReadCheck::Inconsistent(why) => {
                        findings.note(AnomalyKind::Internal, || {
                            format!("{} on key {:?}: {why}", txn.name(), key.name)
                        });
                    }
                    ReadCheck::Duplicate(value) => {
                        findings.note(AnomalyKind::DuplicateElements, || {
                            format!(
                                "{} read key {:?} as {}, which holds its own append {value} twice",
                                txn.name(),
                                key.name,
                                show_list(list)
                            )
                        });
                    }
                }
                state.last_read = Some(list);
                state.own.clear();
            }
        }
        History {
            txns,
            keys,
            future_reads,
            committed: Vec::new(),
        }
    }

    /// Each key's version order, the observations that disagree with it, the values in them
    /// that cannot be there; then which transactions committed.
    fn derive_orders(&mut self, findings: &mut Findings) {
        let txns = self.txns;
        let mut observed = vec![false; txns.len()];
        for key in &mut self.keys {
            let longest = (0..key.observations.len())
                .max_by_key(|&i| (key.observations[i].seen.len(), std::cmp::Reverse(i)));
            let Some(longest) = longest else {
                continue;
            };
            let order = key.observations[longest].seen;
            let order_reader = key.observations[longest].txn;
            key.order = order;
            key.order_reader = order_reader;
            for observation in &mut key.observations {
                let seen = observation.seen;
                observation.compatible = seen.len() <= order.len() && order[..seen.len()] == *seen;
                if !observation.compatible {
                    findings.note(AnomalyKind::IncompatibleOrder, || {
                        format!(
                            "key {:?}: {} saw {} and {} saw {}; neither is a prefix of the other, \
                             so they disagree on the order of the appends",
                            key.name,
                            txns[observation.txn as usize].name(),
                            show_list(seen),
                            txns[order_reader as usize].name(),
                            show_list(order)
                        )
                    });
                }
            }
            // Prefixes of the order need no look of their own: checking the order checks them.
            key.position.reserve(order.len());
            for (i, &value) in order.iter().enumerate() {
                match key.position.entry(value) {
                    Entry::Vacant(entry) => {
                        entry.insert(i);
                    }
                    Entry::Occupied(_) => {
                        note_duplicate(findings, txns, key.name, order_reader, order, value)
                    }
                }
                let writer = writer_of(findings, txns, key, order_reader, order, value);
                if let Some(writer) = writer {
                    observed[writer as usize] = true;
                }
                key.order_writers.push(writer);
            }
            for observation in key.observations.iter().filter(|o| !o.compatible) {
                let mut distinct = HashSet::with_capacity(observation.seen.len());
                for &value in observation.seen {
                    if !distinct.insert(value) {
                        note_duplicate(
                            findings,
                            txns,
                            key.name,
                            observation.txn,
                            observation.seen,
                            value,
                        );
                    }
                    if let Some(writer) = writer_of(
                        findings,
                        txns,
                        key,
                        observation.txn,
                        observation.seen,
                        value,
                    ) {
                        observed[writer as usize] = true;
                    }
                }
            }
        }
        self.committed = txns
            .iter()
            .zip(observed)
            .map(|(txn, observed)| txn.ok || (txn.indeterminate() && observed))
            .collect();
    }

    /// G1b, and observations that hold their own transaction's later appends.
    fn check_observations(&self, findings: &mut Findings) {
        let txns = self.txns;
        for key in &self.keys {
            for observation in &key.observations {
                let Some(&last) = observation.seen.last() else {
                    continue;
                };
                let Some(writer) = key.writers.get(&last) else {
                    continue;
                };
                if writer.intermediate && writer.txn != observation.txn {
                    findings.note(AnomalyKind::G1b, || {
                        format!(
                            "{} read key {:?} as {}, ending at {last}, an intermediate state: {} \
                             appended {last} and then appended to the same key again\n  {}",
                            txns[observation.txn as usize].name(),
                            key.name,
                            show_list(observation.seen),
                            txns[writer.txn as usize].name(),
                            txns[writer.txn as usize].describe()
                        )
                    });
                }
            }
        }
        for future in &self.future_reads {
            let key = &self.keys[future.key as usize];
            let observation = &key.observations[future.observation];
            let holds = if observation.compatible {
                key.position
                    .get(&future.value)
                    .is_some_and(|&at| at < observation.seen.len())
            } else {
                observation.seen.contains(&future.value)
            };
            if holds {
                findings.note(AnomalyKind::Internal, || {
                    format!(
                        "{} read key {:?} as {}, which holds {}, an append the transaction makes \
                         only after that read",
                        txns[observation.txn as usize].name(),
                        key.name,
                        show_list(observation.seen),
                        future.value
                    )
                });
            }
        }
    }

    /// Acknowledged appends missing from reads that began after they returned.
    fn lost_appends(&mut self, findings: &mut Findings) {
        let txns = self.txns;
        for key in &mut self.keys {
            key.acknowledged.sort_unstable_by_key(|&(ret, _, _)| ret);
            // For the first i acknowledged appends: the furthest position in the order of any
            // of them (usize::MAX: not in it), and which append that is.
            let mut furthest = Vec::with_capacity(key.acknowledged.len());
            let mut worst = (0usize, 0usize);
            for (i, &(_, value, _)) in key.acknowledged.iter().enumerate() {
                let at = key.position.get(&value).copied().unwrap_or(usize::MAX);
                if i == 0 || at > worst.0 {
                    worst = (at, i);
                }
                furthest.push(worst);
            }
            for observation in key.observations.iter().filter(|o| o.compatible) {
                let reader = &txns[observation.txn as usize];
                let before = key
                    .acknowledged
                    .partition_point(|&(ret, _, _)| ret < reader.call);
                let Some(&(at, i)) = before.checked_sub(1).and_then(|last| furthest.get(last))
                else {
                    continue;
                };
                if at < observation.seen.len() {
                    continue;
                }
                let (ret, value, writer) = key.acknowledged[i];
                findings.note(AnomalyKind::LostAppend, || {
                    format!(
                        "{} appended {value} to key {:?} and returned at {ret}; {}, called \
                         later at {}, read key {:?} as {}, without it{}\n  {}\n  {}",
                        txns[writer as usize].name(),
                        key.name,
                        reader.name(),
                        reader.call,
                        key.name,
                        show_list(observation.seen),
                        if at == usize::MAX {
                            " (no read ever saw it)"
                        } else {
                            ""
                        },
                        txns[writer as usize].describe(),
                        reader.describe()
                    )
                });
            }
        }
    }

    /// The dependency graph: transactions are nodes 0..n, time nodes follow.
    fn graph(&self) -> Graph {
        let committed = |txn: &Option<TxnId>| txn.filter(|&t| self.committed[t as usize]);
        let mut pairs: Vec<(u32, Edge)> = Vec::new();
        let mut add = |from: TxnId, to: TxnId, kind: EdgeKind, key: u32| {
            if from != to {
                pairs.push((from, Edge { to, kind, key }));
            }
        };
        for (k, key) in self.keys.iter().enumerate() {
            let k = k as u32;
            let mut previous = None;
            for writer in key.order_writers.iter().filter_map(committed) {
                if let Some(previous) = previous {
                    add(previous, writer, EdgeKind::Ww, k);
                }
                previous = Some(writer);
            }
            for observation in key.observations.iter().filter(|o| o.compatible) {
                let (before, after) = key.order_writers.split_at(observation.seen.len());
                if let Some(writer) = before.iter().rev().find_map(committed) {
                    add(writer, observation.txn, EdgeKind::Wr, k);
                }
                if let Some(writer) = after.iter().find_map(committed) {
                    add(observation.txn, writer, EdgeKind::Rw, k);
                }
            }
        }
        // Realtime order through time nodes: node n + j stands for "after the j-th distinct
        // return time" (see `cycles`).
        let n = self.txns.len() as u32;
        let in_graph = || {
            self.txns
                .iter()
                .enumerate()
                .filter(|&(t, _)| self.committed[t])
        };
        let mut returns: Vec<u64> = in_graph().filter_map(|(_, txn)| txn.ret).collect();
        returns.sort_unstable();
        returns.dedup();
        for j in 1..returns.len() as u32 {
            add(n + j - 1, n + j, EdgeKind::Realtime, NO_KEY);
        }
        for (t, txn) in in_graph() {
            if let Some(ret) = txn.ret {
                let j = returns.partition_point(|&r| r < ret) as u32;
                add(t as u32, n + j, EdgeKind::Realtime, NO_KEY);
            }
            let after = returns.partition_point(|&r| r < txn.call) as u32;
            if after > 0 {
                add(n + after - 1, t as u32, EdgeKind::Realtime, NO_KEY);
            }
        }
        Graph::from_edges(self.txns.len() + returns.len(), &pairs)
    }
}

fn note_duplicate(
    findings: &mut Findings,
    txns: &[Txn],
    key: &str,
    reader: TxnId,
    list: &[i64],
    value: i64,
) {
    findings.note(AnomalyKind::DuplicateElements, || {
        format!(
            "{} read key {key:?} as {}, which holds {value} more than once",
            txns[reader as usize].name(),
            show_list(list)
        )
    });
}

/// The writer of `value` in `key`, noting a garbage read (no writer) or an aborted read (G1a)
/// by `reader`, which read `list`.
fn writer_of(
    findings: &mut Findings,
    txns: &[Txn],
    key: &Key<'_>,
    reader: TxnId,
    list: &[i64],
    value: i64,
) -> Option<TxnId> {
    let reader = &txns[reader as usize];
    let Some(writer) = key.writers.get(&value) else {
        findings.note(AnomalyKind::GarbageRead, || {
            format!(
                "{} read key {:?} as {}, which holds {value}, a value no transaction \
                 appended to it",
                reader.name(),
                key.name,
                show_list(list)
            )
        });
        return None;
    };
    let writer_txn = &txns[writer.txn as usize];
    if writer_txn.aborted() {
        findings.note(AnomalyKind::G1a, || {
            format!(
                "{} read key {:?} as {}, which holds {value}, appended by {}, which aborted\n  {}",
                reader.name(),
                key.name,
                show_list(list),
                writer_txn.name(),
                writer_txn.describe()
            )
        });
    }
    Some(writer.txn)
}
