//! The set workload's checker (history format in [`crate::set`]). For each read, of one
//! epoch or (the final read) of all of them:
//! - unexpected: it holds an element no add attempted;
//! - lost: an add acknowledged before the read began is missing, and the final read lacks it
//!   too (the write is gone);
//! - stale: such an add is missing from this read but present in the final one (a read that
//!   did not see a write it must have seen);
//! - vanished: an element an earlier read saw (one that returned before this read began) is
//!   missing.
//!
//! Indeterminate adds may or may not appear; once seen they count as adds that happened.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum SetHistoryError {
    #[error("line {line}: {reason}")]
    Line { line: usize, reason: String },
}

#[derive(Deserialize)]
struct RawOp {
    client: u64,
    call: u64,
    #[serde(rename = "return")]
    ret: Option<u64>,
    op: String,
    epoch: Option<u64>,
    #[serde(default)]
    value: Value,
    ok: bool,
}

#[derive(Debug, Clone)]
pub struct Add {
    pub client: u64,
    pub call: u64,
    pub ret: Option<u64>,
    pub epoch: u64,
    pub value: u64,
    pub ok: bool,
    pub line: usize,
}

#[derive(Debug, Clone)]
pub struct Read {
    pub client: u64,
    pub call: u64,
    pub ret: u64,
    /// None: the whole set.
    pub epoch: Option<u64>,
    pub values: Vec<u64>,
    pub line: usize,
}

#[derive(Debug, Default)]
pub struct SetHistory {
    pub adds: Vec<Add>,
    /// Successful reads only (a failed read tells nothing).
    pub reads: Vec<Read>,
}

pub fn parse(text: &str) -> Result<SetHistory, SetHistoryError> {
    let mut history = SetHistory::default();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        if line.trim().is_empty() {
            continue;
        }
        let bad = |reason: String| SetHistoryError::Line {
            line: number,
            reason,
        };
        let raw: RawOp = serde_json::from_str(line).map_err(|err| bad(err.to_string()))?;
        match raw.op.as_str() {
            "add" => history.adds.push(Add {
                client: raw.client,
                call: raw.call,
                ret: raw.ret,
                epoch: raw
                    .epoch
                    .ok_or_else(|| bad("an add needs its epoch".into()))?,
                value: raw.value.as_u64().ok_or_else(|| {
                    bad(format!(
                        "an add's value must be a number, not {}",
                        raw.value
                    ))
                })?,
                ok: raw.ok,
                line: number,
            }),
            "read" if raw.ok => {
                let ret = raw
                    .ret
                    .ok_or_else(|| bad("a successful read needs its return".into()))?;
                let values = raw
                    .value
                    .as_array()
                    .and_then(|items| items.iter().map(Value::as_u64).collect::<Option<Vec<_>>>())
                    .ok_or_else(|| {
                        bad(format!(
                            "a read's value must be a list of numbers, not {}",
                            raw.value
                        ))
                    })?;
                history.reads.push(Read {
                    client: raw.client,
                    call: raw.call,
                    ret,
                    epoch: raw.epoch,
                    values,
                    line: number,
                });
            }
            "read" => {}
            other => return Err(bad(format!("unknown op {other:?} (add or read)"))),
        }
    }
    Ok(history)
}

/// The checker's findings: each kind of anomaly with its count and first example.
#[derive(Debug, Default)]
pub struct SetVerdict {
    pub adds: usize,
    pub reads: usize,
    /// Kind → (count, first example).
    pub anomalies: BTreeMap<&'static str, (usize, String)>,
    /// No read of the whole set came after the run: lost adds could not be told from stale.
    pub no_final_read: bool,
}

impl SetVerdict {
    pub fn valid(&self) -> bool {
        self.anomalies.is_empty()
    }

    pub fn explain(&self) -> Option<String> {
        if self.valid() {
            return None;
        }
        Some(
            self.anomalies
                .iter()
                .map(|(kind, (count, first))| format!("{kind} ({count}): {first}"))
                .collect::<Vec<_>>()
                .join("; "),
        )
    }

    fn note(&mut self, kind: &'static str, example: impl FnOnce() -> String) {
        let entry = self.anomalies.entry(kind).or_insert_with(|| (0, example()));
        entry.0 += 1;
    }
}

pub fn check(history: &SetHistory) -> SetVerdict {
    let mut verdict = SetVerdict {
        adds: history.adds.len(),
        reads: history.reads.len(),
        ..Default::default()
    };
    let adds: HashMap<u64, &Add> = history.adds.iter().map(|add| (add.value, add)).collect();
    let final_read = history
        .reads
        .iter()
        .filter(|read| read.epoch.is_none())
        .max_by_key(|read| read.call);
    verdict.no_final_read = final_read.is_none();
    let in_final =
        |value: u64| final_read.is_none_or(|read| read.values.binary_search(&value).is_ok());

    // When each element was first seen to be present: the earliest return of a read holding it.
    let mut first_seen: HashMap<u64, (u64, usize)> = HashMap::new();
    for read in &history.reads {
        for &value in &read.values {
            let seen = first_seen.entry(value).or_insert((read.ret, read.line));
            if read.ret < seen.0 {
                *seen = (read.ret, read.line);
            }
        }
    }
    // Elements by epoch, in value order, for the per-read scans.
    let mut by_epoch: BTreeMap<u64, Vec<&Add>> = BTreeMap::new();
    for add in &history.adds {
        by_epoch.entry(add.epoch).or_default().push(add);
    }

    for read in &history.reads {
        for &value in &read.values {
            let expected_epoch = adds.get(&value).map(|add| add.epoch);
            if expected_epoch.is_none() || (read.epoch.is_some() && read.epoch != expected_epoch) {
                verdict.note("unexpected", || {
                    format!(
                        "the read at line {} holds {value}, which no add of its range attempted",
                        read.line
                    )
                });
            }
        }
        let candidates: Vec<&Add> = match read.epoch {
            Some(epoch) => by_epoch.get(&epoch).cloned().unwrap_or_default(),
            None => history.adds.iter().collect(),
        };
        for add in candidates {
            if read.values.binary_search(&add.value).is_ok() {
                continue;
            }
            let acknowledged_before = add.ok && add.ret.is_some_and(|ret| ret < read.call);
            if acknowledged_before {
                if in_final(add.value) {
                    verdict.note("stale", || {
                        format!(
                            "the read at line {} (called at {} ns) lacks {}, whose add (line {}) was acknowledged at {} ns; later reads have it",
                            read.line, read.call, add.value, add.line, add.ret.unwrap_or(0)
                        )
                    });
                } else {
                    verdict.note("lost", || {
                        format!(
                            "{} was acknowledged (add at line {}) but is missing from the read at line {} and from the final read",
                            add.value, add.line, read.line
                        )
                    });
                }
            } else if let Some(&(seen_at, seen_line)) = first_seen.get(&add.value) {
                if seen_at < read.call {
                    verdict.note("vanished", || {
                        format!(
                            "{} was seen by the read at line {seen_line} (returned at {seen_at} ns) but is missing from the read at line {} (called at {} ns)",
                            add.value, read.line, read.call
                        )
                    });
                }
            }
        }
    }
    verdict
}
