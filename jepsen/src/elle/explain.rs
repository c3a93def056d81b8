//! Explanations of dependency cycles: the chain of edges, the evidence for each edge (the
//! appends and reads it was inferred from), and the transactions involved, so that a report
//! can be checked by hand against the history.

use super::cycles::{EdgeKind, Hop};
use super::{History, TxnId};
use crate::append_history::show_list;

/// Edges of a cycle whose evidence and transactions an explanation spells out; a longer
/// cycle (a history broken everywhere can have one of thousands) shows only in its chain.
const MAX_EXPLAINED_HOPS: usize = 24;

impl History<'_> {
    /// A cycle as a chain of edges, each edge's evidence, and its transactions.
    pub(super) fn explain_cycle(&self, cycle: &[Hop]) -> String {
        let name = |t: u32| self.txns[t as usize].name();
        let Some(first) = cycle.first() else {
            return "an empty cycle".to_string();
        };
        let mut chain = name(first.from);
        for hop in cycle {
            let label = match hop.kind {
                EdgeKind::Realtime => "realtime".to_string(),
                kind => format!("{}({})", edge_name(kind), self.keys[hop.key as usize].name),
            };
            chain.push_str(&format!(" -{label}-> {}", name(hop.to)));
        }
        let mut text = chain;
        let shown = &cycle[..cycle.len().min(MAX_EXPLAINED_HOPS)];
        for hop in shown {
            text.push_str("\n  ");
            text.push_str(&self.explain_hop(hop));
        }
        for hop in shown {
            text.push_str("\n  ");
            text.push_str(&self.txns[hop.from as usize].describe());
        }
        if shown.len() < cycle.len() {
            text.push_str(&format!(
                "\n  (and {} more edges and transactions, as the chain shows)",
                cycle.len() - shown.len()
            ));
        }
        text
    }

    fn explain_hop(&self, hop: &Hop) -> String {
        let (from, to) = (&self.txns[hop.from as usize], &self.txns[hop.to as usize]);
        if hop.kind == EdgeKind::Realtime {
            let ret = from.ret.map_or_else(|| "?".to_string(), |r| r.to_string());
            return format!(
                "{} returned at {ret}, before {} was called at {}",
                from.name(),
                to.name(),
                to.call
            );
        }
        let key = &self.keys[hop.key as usize];
        let committed = |i: usize| key.order_writers[i].filter(|&t| self.committed[t as usize]);
        let observation_of = |t: u32| key.observations.iter().find(|o| o.txn == t && o.compatible);
        match hop.kind {
            EdgeKind::Ww => {
                if let Some(why) = self.explain_ww(hop) {
                    return why;
                }
            }
            EdgeKind::Wr => {
                if let Some(observation) = observation_of(hop.to) {
                    let last = (0..observation.seen.len())
                        .rev()
                        .find(|&i| committed(i).is_some());
                    if let Some(last) = last {
                        return format!(
                            "{} read key {:?} as {}, whose last committed element {} {} appended",
                            to.name(),
                            key.name,
                            show_list(observation.seen),
                            key.order[last],
                            from.name()
                        );
                    }
                }
            }
            EdgeKind::Rw => {
                if let Some(observation) = observation_of(hop.from) {
                    let next =
                        (observation.seen.len()..key.order.len()).find(|&i| committed(i).is_some());
                    if let Some(next) = next {
                        return format!(
                            "{} read key {:?} as {}, which misses {}, appended next by {}",
                            from.name(),
                            key.name,
                            show_list(observation.seen),
                            key.order[next],
                            to.name()
                        );
                    }
                }
            }
            EdgeKind::Realtime => {}
        }
        format!(
            "{} -{}-> {} on key {:?}",
            from.name(),
            edge_name(hop.kind),
            to.name(),
            key.name
        )
    }

    /// The two appends, adjacent in the key's order (among committed writers), behind a ww edge.
    fn explain_ww(&self, hop: &Hop) -> Option<String> {
        let key = &self.keys[hop.key as usize];
        let committed = key
            .order_writers
            .iter()
            .enumerate()
            .filter_map(|(i, w)| w.filter(|&t| self.committed[t as usize]).map(|t| (i, t)));
        let mut previous: Option<(usize, TxnId)> = None;
        for (i, writer) in committed {
            if let Some((p, before)) = previous.filter(|&(_, before)| before == hop.from) {
                if writer == hop.to {
                    return Some(format!(
                        "{} appended {} to key {:?} and {} appended {} next (in the order {} read)",
                        self.txns[before as usize].name(),
                        key.order[p],
                        key.name,
                        self.txns[writer as usize].name(),
                        key.order[i],
                        self.txns[key.order_reader as usize].name()
                    ));
                }
            }
            previous = Some((i, writer));
        }
        None
    }
}

fn edge_name(kind: EdgeKind) -> &'static str {
    match kind {
        EdgeKind::Ww => "ww",
        EdgeKind::Wr => "wr",
        EdgeKind::Rw => "rw",
        EdgeKind::Realtime => "realtime",
    }
}
