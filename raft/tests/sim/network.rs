//! The hostile network: delays, drops, duplicates, reordering and partitions.

use super::*;

impl Sim {
    pub(crate) fn send(&mut self, msg: Message, faulty: bool) {
        let from = msg.from;
        let to = msg.to;
        if faulty && self.rng.chance(self.drop_p) {
            self.snapshot_lost(&msg);
            return;
        }
        let snapshot_data = if msg.kind == MessageKind::Snapshot {
            let sender = &self.nodes[&from];
            let storage = sender.raft.as_ref().map(|r| r.storage());
            match (storage, &msg.snapshot) {
                (Some(s), Some(meta)) if s.snapshot().map(|m| m.index) == Ok(meta.index) => {
                    Some(s.snapshot_data().to_vec())
                }
                _ => {
                    self.snapshot_lost(&msg);
                    return;
                }
            }
        } else {
            None
        };
        let copies = if faulty && self.rng.chance(self.dup_p) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let delay = 1 + self.rng.below(self.max_delay);
            self.seq += 1;
            self.net.push(InFlight {
                at: self.now + delay,
                seq: self.seq,
                msg: msg.clone(),
                snapshot_data: snapshot_data.clone(),
            });
        }
        let _ = to;
    }

    pub(crate) fn snapshot_lost(&mut self, msg: &Message) {
        if msg.kind == MessageKind::Snapshot {
            if let Some(r) = self.nodes.get_mut(&msg.from).and_then(|n| n.raft.as_mut()) {
                r.report_snapshot(msg.to, false);
            }
        }
    }

    pub(crate) fn deliver_due(&mut self) -> Check {
        while self.net.peek().is_some_and(|m| m.at <= self.now) {
            let Some(InFlight {
                msg, snapshot_data, ..
            }) = self.net.pop()
            else {
                break;
            };
            let (from, to) = (msg.from, msg.to);
            let alive = self.nodes.get(&to).is_some_and(|n| n.raft.is_some());
            if !alive || self.blocked.contains(&(from, to)) {
                self.snapshot_lost(&msg);
                continue;
            }
            if msg.kind == MessageKind::Snapshot {
                if let Some(r) = self.nodes.get_mut(&from).and_then(|n| n.raft.as_mut()) {
                    r.report_snapshot(to, true);
                }
            }
            if self.trace.is_some_and(|t| t == from || t == to) {
                eprintln!(
                    "t={} {:?} {}->{} term={} idx={} lt={} n={} commit={} rej={} hint={}",
                    self.now,
                    msg.kind,
                    from,
                    to,
                    msg.term,
                    msg.index,
                    msg.log_term,
                    msg.entries.len(),
                    msg.commit,
                    msg.reject,
                    msg.reject_hint
                );
            }
            let node = self.nodes.get_mut(&to).unwrap();
            if let (Some(data), Some(meta)) = (snapshot_data, &msg.snapshot) {
                node.snapshots_in.insert(meta.index, data);
            }
            let raft = node.raft.as_mut().unwrap();
            if let Err(e) = raft.step(msg) {
                return fail(format!("node {to} step failed: {e}"));
            }
        }
        Ok(())
    }

    pub(crate) fn new_partition(&mut self) {
        self.blocked.clear();
        let ids = self.ids();
        match self.rng.below(6) {
            0 => {}
            1 => {
                // Symmetric split.
                let side: Vec<bool> = ids.iter().map(|_| self.rng.chance(0.5)).collect();
                for (i, &a) in ids.iter().enumerate() {
                    for (j, &b) in ids.iter().enumerate() {
                        if side[i] != side[j] {
                            self.blocked.insert((a, b));
                        }
                    }
                }
            }
            2 => {
                // Asymmetric: one node cannot send to anyone but still hears everyone.
                if let Some(a) = self.rng.pick(&ids) {
                    for &b in &ids {
                        self.blocked.insert((a, b));
                    }
                }
            }
            3 => {
                // Bridge: two halves that only talk through one node.
                let bridge = self.rng.pick(&ids).unwrap_or(1);
                let others: Vec<NodeId> = ids.iter().copied().filter(|&i| i != bridge).collect();
                let half = others.len() / 2;
                for &a in &others[..half] {
                    for &b in &others[half..] {
                        self.blocked.insert((a, b));
                        self.blocked.insert((b, a));
                    }
                }
            }
            4 => {
                // Isolate one node completely.
                if let Some(a) = self.rng.pick(&ids) {
                    for &b in &ids {
                        self.blocked.insert((a, b));
                        self.blocked.insert((b, a));
                    }
                }
            }
            _ => {
                // Random lossy links.
                for &a in &ids {
                    for &b in &ids {
                        if a != b && self.rng.chance(0.2) {
                            self.blocked.insert((a, b));
                        }
                    }
                }
            }
        }
    }
}
