//! Linearizability of a history of registers (read, write, compare-and-set per key).
//!
//! Registers are independent, so the history is checked key by key (linearizability is
//! compositional). For each key, the search is Wing and Gong's, with Lowe's refinements: walk
//! the call and return events in time order; at a call, try to make that operation take
//! effect now (if the register allows it) and start over on the rest; at the return of an
//! operation not yet taken effect, undo the last choice and try the next one. A cache of
//! (operations taken effect, register value) already explored cuts the search from
//! exponential to what the history's concurrency allows.
//!
//! Indeterminate operations (no return) may take effect at any point after their call, or
//! never; operations that definitely failed and reads that failed are left out (they changed
//! nothing and saw nothing).

use std::collections::{BTreeMap, HashSet};

use serde_json::Value;

use crate::history::{Operation, RegisterOp};

/// Upper bound on search steps per key, so a pathological history ends with an answer
/// ("unknown") instead of running for hours.
pub const MAX_STEPS_PER_KEY: u64 = 10_000_000;

/// Upper bound on remembered search states per key (each holds a bit set of the key's
/// operations), so memory stays bounded too.
pub const MAX_MEMO_STATES_PER_KEY: usize = 2_000_000;

/// The checker's verdict on one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyVerdict {
    Linearizable,
    /// No order of the operations explains what they saw: the first operation that cannot be
    /// placed, and the values the register could hold then.
    Anomaly {
        op: Box<Operation>,
        possible_values: Vec<Option<Value>>,
    },
    /// The search gave up after [`MAX_STEPS_PER_KEY`] steps.
    Unknown,
}

/// The verdict on a whole history: per key, in key order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub keys: BTreeMap<String, KeyVerdict>,
    pub operations: usize,
}

impl Verdict {
    pub fn valid(&self) -> bool {
        self.keys.values().all(|v| *v == KeyVerdict::Linearizable)
    }

    /// Whether an anomaly was found (not merely a search that gave up).
    pub fn anomalous(&self) -> bool {
        self.keys
            .values()
            .any(|v| matches!(v, KeyVerdict::Anomaly { .. }))
    }

    /// The first anomaly, spelled out; None if there is none.
    pub fn explain(&self) -> Option<String> {
        // An anomaly outranks a search that gave up.
        let mut ordered: Vec<_> = self.keys.iter().collect();
        ordered.sort_by_key(|(_, v)| !matches!(v, KeyVerdict::Anomaly { .. }));
        ordered.into_iter().find_map(|(key, verdict)| match verdict {
            KeyVerdict::Linearizable => None,
            KeyVerdict::Unknown => Some(format!(
                "key {key:?}: the search gave up (over {MAX_STEPS_PER_KEY} steps or {MAX_MEMO_STATES_PER_KEY} states): unknown"
            )),
            KeyVerdict::Anomaly {
                op,
                possible_values,
            } => {
                let values: Vec<String> = possible_values
                    .iter()
                    .map(|v| v.as_ref().map_or_else(|| "nothing".to_string(), Value::to_string))
                    .collect();
                Some(format!(
                    "key {key:?} is not linearizable: no order of the operations lets this one take effect before it returned: {}; by then the register could only hold {}",
                    op.describe(),
                    if values.is_empty() { "no value at all".to_string() } else { values.join(" or ") }
                ))
            }
        })
    }
}

/// Checks every key of `history`.
pub fn check(history: &[Operation]) -> Verdict {
    let mut by_key: BTreeMap<&str, Vec<&Operation>> = BTreeMap::new();
    for op in history {
        by_key.entry(op.key.as_str()).or_default().push(op);
    }
    let keys = by_key
        .into_iter()
        .map(|(key, ops)| (key.to_string(), check_key(&ops)))
        .collect();
    Verdict {
        keys,
        operations: history.len(),
    }
}

/// What one operation does, once it is known to matter.
#[derive(Debug, Clone)]
struct Step<'h> {
    op: &'h Operation,
}

impl Step<'_> {
    /// The register after this operation takes effect on `value`, or None if it cannot.
    fn apply(&self, value: &Option<Value>) -> Option<Option<Value>> {
        match &self.op.op {
            RegisterOp::Read(seen) => (seen == value).then(|| value.clone()),
            RegisterOp::Write(new) => Some(Some(new.clone())),
            RegisterOp::Cas { expected, new } => {
                (value.as_ref() == Some(expected)).then(|| Some(new.clone()))
            }
        }
    }
}

/// An event of the search's list: an operation's call or return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    Call(usize),
    Return(usize),
}

/// Operations that bear on the register: definite successes, and indeterminate writes and
/// compare-and-sets (which may have taken effect).
fn relevant(op: &Operation) -> bool {
    match (&op.op, op.ret) {
        (RegisterOp::Read(_), None) => false,
        (_, None) => true,
        (_, Some(_)) => op.ok,
    }
}

/// Values something saw: what definite reads returned and what compare-and-sets expected.
fn observed_values(ops: &[&Operation]) -> HashSet<String> {
    ops.iter()
        .filter_map(|op| match (&op.op, op.ret) {
            (RegisterOp::Read(Some(value)), Some(_)) if op.ok => Some(value.to_string()),
            (RegisterOp::Cas { expected, .. }, _) => Some(expected.to_string()),
            _ => None,
        })
        .collect()
}

/// An indeterminate write (or compare-and-set) of a value nothing saw changes no verdict:
/// had it taken effect, nothing could have read the register before the next write (a read
/// would have returned its value), so "it never took effect" explains the history just as
/// well. Dropping such operations keeps long runs, where hundreds of them pile up around
/// kills and partitions, from multiplying the search's states.
fn unobserved_indeterminate(op: &Operation, observed: &HashSet<String>) -> bool {
    match (&op.op, op.ret) {
        (RegisterOp::Write(new) | RegisterOp::Cas { new, .. }, None) => {
            !observed.contains(&new.to_string())
        }
        _ => false,
    }
}

fn check_key(ops: &[&Operation]) -> KeyVerdict {
    let observed = observed_values(ops);
    let steps: Vec<Step<'_>> = ops
        .iter()
        .filter(|op| relevant(op) && !unobserved_indeterminate(op, &observed))
        .map(|op| Step { op })
        .collect();
    // Events in time order; at equal times calls come first: two readings of a clock that
    // show the same time do not order the events, so they count as concurrent (and an
    // operation whose call and return read the same instant stays possible).
    let mut events: Vec<(u64, u8, Event)> = Vec::with_capacity(steps.len() * 2);
    for (i, step) in steps.iter().enumerate() {
        events.push((step.op.call, 0, Event::Call(i)));
        if let Some(ret) = step.op.ret {
            events.push((ret, 1, Event::Return(i)));
        }
    }
    events.sort_by_key(|&(time, order, _)| (time, order));
    let events: Vec<Event> = events.into_iter().map(|(_, _, e)| e).collect();
    Search::new(&steps, &events).run()
}

/// A search state: head, operations taken effect past it, pending indeterminate ones, value.
type State = (usize, Vec<usize>, Vec<usize>, Option<Value>);

/// The search over one key's events.
///
/// Every event before `head` belongs to an operation that has taken effect, except the calls
/// of indeterminate operations that have not (`pending`: they may still take effect at any
/// later point). So a scan tries the pending ones, then starts at `head` and stops at the
/// first return of an operation that has not taken effect: it covers only the operations
/// concurrent with the frontier, however long the history. For the same reason a state is
/// (head, the operations taken effect past it, the pending ones, the register's value),
/// which stays small where a bit set over the whole history would not.
struct Search<'s, 'h> {
    steps: &'s [Step<'h>],
    events: &'s [Event],
    call_position: Vec<usize>,
    done: Vec<bool>,
    /// First event whose operation has not taken effect.
    head: usize,
    /// Operations taken effect whose call is at or after `head`.
    done_ahead: std::collections::BTreeSet<usize>,
    /// Indeterminate operations called before `head` that have not taken effect, by call
    /// position.
    pending: std::collections::BTreeSet<(usize, usize)>,
    value: Option<Value>,
    /// States already explored and found to lead nowhere.
    seen: HashSet<State>,
    /// Choices made: (operation, register value before it).
    stack: Vec<(usize, Option<Value>)>,
    /// The failure seen with the most operations taken effect (the most telling one).
    deepest: Option<(usize, usize, Vec<Option<Value>>)>,
}

impl<'s, 'h> Search<'s, 'h> {
    fn new(steps: &'s [Step<'h>], events: &'s [Event]) -> Self {
        let mut call_position = vec![0; steps.len()];
        for (position, event) in events.iter().enumerate() {
            if let Event::Call(i) = *event {
                call_position[i] = position;
            }
        }
        Search {
            steps,
            events,
            call_position,
            done: vec![false; steps.len()],
            head: 0,
            done_ahead: std::collections::BTreeSet::new(),
            pending: std::collections::BTreeSet::new(),
            value: None,
            seen: HashSet::new(),
            stack: Vec::new(),
            deepest: None,
        }
    }

    fn op_of(event: Event) -> usize {
        match event {
            Event::Call(i) | Event::Return(i) => i,
        }
    }

    fn indeterminate(&self, i: usize) -> bool {
        self.steps[i].op.ret.is_none()
    }

    /// Moves `head` past events that no longer matter: those of operations taken effect, and
    /// calls of indeterminate operations that have not (they become pending).
    fn advance_head(&mut self) {
        while let Some(&event) = self.events.get(self.head) {
            let i = Self::op_of(event);
            if self.done[i] {
                self.head += 1;
            } else if matches!(event, Event::Call(_)) && self.indeterminate(i) {
                self.pending.insert((self.head, i));
                self.head += 1;
            } else {
                break;
            }
        }
        let head = self.head;
        let positions = &self.call_position;
        self.done_ahead.retain(|&op| positions[op] >= head);
    }

    fn take(&mut self, i: usize) {
        self.done[i] = true;
        if !self.pending.remove(&(self.call_position[i], i)) {
            self.done_ahead.insert(i);
        }
        self.advance_head();
    }

    fn undo(&mut self, i: usize) {
        self.done[i] = false;
        let call = self.call_position[i];
        if call >= self.head {
            self.done_ahead.remove(&i);
        } else if self.indeterminate(i) {
            self.pending.insert((call, i));
        } else {
            // A definite operation the head had passed: the head goes back to its call, and
            // what lies between is "ahead" (or pending) again.
            for position in call..self.head {
                let op = Self::op_of(self.events[position]);
                if self.call_position[op] >= call && self.done[op] {
                    self.done_ahead.insert(op);
                }
            }
            self.pending.retain(|&(position, _)| position < call);
            self.head = call;
        }
    }

    fn state(&self) -> State {
        (
            self.head,
            self.done_ahead.iter().copied().collect(),
            self.pending.iter().map(|&(_, op)| op).collect(),
            self.value.clone(),
        )
    }

    fn run(mut self) -> KeyVerdict {
        let mut steps_taken = 0u64;
        // Position in `events` from which to look for the next operation to try.
        let mut from = 0usize;
        loop {
            steps_taken += 1;
            if steps_taken > MAX_STEPS_PER_KEY || self.seen.len() > MAX_MEMO_STATES_PER_KEY {
                return KeyVerdict::Unknown;
            }
            match self.next_choice(from) {
                Choice::Linearized => return KeyVerdict::Linearizable,
                Choice::Take(i, value) => {
                    let before = std::mem::replace(&mut self.value, value);
                    self.take(i);
                    if self.seen.insert(self.state()) {
                        self.stack.push((i, before));
                        from = 0;
                    } else {
                        // Explored already from here: undo and try the next candidate.
                        self.undo(i);
                        self.value = before;
                        from = self.call_position[i] + 1;
                    }
                }
                Choice::Stuck(blocking) => {
                    self.note_failure(blocking);
                    let Some((i, before)) = self.stack.pop() else {
                        return self.anomaly();
                    };
                    self.undo(i);
                    self.value = before;
                    from = self.call_position[i] + 1;
                }
            }
        }
    }

    /// From event `from` on: the next operation that can take effect now, or the return that
    /// blocks (an operation that returned but has not taken effect), or success. (Before
    /// `from`, in this state, no return blocked and no call could be taken: that is where
    /// the search stood when it made the choice it has just undone.)
    fn next_choice(&self, from: usize) -> Choice {
        for &(position, i) in &self.pending {
            if position >= from {
                if let Some(value) = self.steps[i].apply(&self.value) {
                    return Choice::Take(i, value);
                }
            }
        }
        for (position, event) in self.events.iter().enumerate().skip(self.head) {
            match *event {
                Event::Return(i) if !self.done[i] => return Choice::Stuck(i),
                Event::Call(i) if position >= from && !self.done[i] => {
                    if let Some(value) = self.steps[i].apply(&self.value) {
                        return Choice::Take(i, value);
                    }
                }
                Event::Return(_) | Event::Call(_) => {}
            }
        }
        // Every operation that returned has taken effect; the indeterminate ones left did not.
        Choice::Linearized
    }

    fn note_failure(&mut self, blocking: usize) {
        let depth = self.stack.len();
        match &mut self.deepest {
            Some((best, op, values)) if *best == depth && *op == blocking => {
                if !values.contains(&self.value) {
                    values.push(self.value.clone());
                }
            }
            Some((best, _, _)) if *best >= depth => {}
            _ => self.deepest = Some((depth, blocking, vec![self.value.clone()])),
        }
    }

    fn anomaly(self) -> KeyVerdict {
        match self.deepest {
            Some((_, op, possible_values)) => KeyVerdict::Anomaly {
                op: Box::new(self.steps[op].op.clone()),
                possible_values,
            },
            None => KeyVerdict::Unknown,
        }
    }
}

enum Choice {
    Linearized,
    Take(usize, Option<Value>),
    Stuck(usize),
}
