//! The list-append workload's history: one transaction per line (JSON lines), or a JSON array
//! of the same objects.
//!
//! ```text
//! {"client":3,"call":1200,"return":1850,"ok":true,"txn":[["r","a5",[1,2,3]],["append","a7",9]]}
//! {"client":4,"call":1300,"return":null,"ok":false,"txn":[["append","a5",10],["r","a7",null]]}
//! {"client":5,"call":1400,"return":1500,"ok":false,"txn":[["r","a5",null],["append","a5",11]]}
//! ```
//!
//! `call` and `return` are nanoseconds on one clock. `return: null` marks an indeterminate
//! transaction (timed out, connection lost: it may or may not have committed, and what it read
//! is unknown). `ok: true` means it committed; `ok: false` with a return time means it
//! definitely did not (aborted). `txn` lists the micro-operations in the order the
//! transaction ran them: `["r", key, list]` is the list the transaction read for that key
//! (`null` when not known), `["append", key, value]` appends an integer to the key's list. A
//! read that follows the transaction's own append to that key includes the append.
//!
//! Appended values are unique per key across the whole history: that is what lets a checker
//! tell, from a list alone, which transaction wrote each element. [`parse`] rejects a history
//! that breaks this (or whose times are impossible) rather than let a checker draw anomalies
//! from it.

use std::collections::HashMap;
use std::fmt;

use serde::de::{self, IgnoredAny, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

/// One micro-operation of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MicroOp {
    /// What the transaction read for `key`; None: not known.
    Read {
        key: String,
        value: Option<Vec<i64>>,
    },
    Append {
        key: String,
        value: i64,
    },
}

impl MicroOp {
    pub fn key(&self) -> &str {
        match self {
            MicroOp::Read { key, .. } | MicroOp::Append { key, .. } => key,
        }
    }
}

/// One transaction of the history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Txn {
    pub client: u64,
    pub call: u64,
    /// None: indeterminate.
    pub ret: Option<u64>,
    /// Committed (with a return time) or not known to have committed.
    pub ok: bool,
    pub ops: Vec<MicroOp>,
    /// Line (JSON lines) or element (array) number, from 1, for messages.
    pub line: usize,
}

impl Txn {
    /// Neither known to have committed nor known not to have.
    pub fn indeterminate(&self) -> bool {
        self.ret.is_none()
    }

    /// Returned, and definitely did not commit.
    pub fn aborted(&self) -> bool {
        !self.ok && self.ret.is_some()
    }

    /// How messages name it: `T(line 12)`.
    pub fn name(&self) -> String {
        format!("T(line {})", self.line)
    }

    /// As it is written in a history (for messages), with long lists shortened.
    pub fn describe(&self) -> String {
        let ret = self.ret.map_or_else(
            || "never returned".to_string(),
            |r| format!("returned at {r}"),
        );
        let outcome = match (self.ok, self.ret) {
            (true, _) => "committed",
            (false, Some(_)) => "aborted",
            (false, None) => "indeterminate",
        };
        let ops: Vec<String> = self
            .ops
            .iter()
            .map(|op| match op {
                MicroOp::Read { key, value: None } => format!("r {key} unknown"),
                MicroOp::Read {
                    key,
                    value: Some(list),
                } => format!("r {key} {}", show_list(list)),
                MicroOp::Append { key, value } => format!("append {key} {value}"),
            })
            .collect();
        format!(
            "{} by client {}, called at {}, {ret}, {outcome}: {}",
            self.name(),
            self.client,
            self.call,
            ops.join("; ")
        )
    }
}

/// Elements shown at each end of a long list in messages.
const SHOWN_AT_EACH_END: usize = 4;

/// A list as JSON, or its first and last few elements if it is long (messages about lists of
/// a hundred elements should still fit on a screen).
pub fn show_list(list: &[i64]) -> String {
    let join = |part: &[i64]| {
        part.iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(",")
    };
    if list.len() <= 2 * SHOWN_AT_EACH_END + 1 {
        return format!("[{}]", join(list));
    }
    format!(
        "[{},…,{}] ({} elements)",
        join(&list[..SHOWN_AT_EACH_END]),
        join(&list[list.len() - SHOWN_AT_EACH_END..]),
        list.len()
    )
}

/// Why a history file could not be read, or cannot be checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppendHistoryError {
    #[error("line {line}: {reason}")]
    Line { line: usize, reason: String },
    #[error("not a JSON array of transactions: {0}")]
    Array(String),
    #[error(
        "lines {first} and {second} both append {value} to key {key:?}: appended values \
         must be unique per key"
    )]
    DuplicateAppend {
        key: String,
        value: i64,
        first: usize,
        second: usize,
    },
    #[error("{txns} transactions: a history can have at most {MAX_TXNS}")]
    TooLarge { txns: usize },
}

/// The most transactions a history may have: a checker numbers them, and as many time nodes
/// again, with 32-bit ids (which halves the memory of graphs of a hundred thousand).
pub const MAX_TXNS: usize = 1 << 30;

#[derive(Deserialize)]
struct RawTxn {
    client: u64,
    call: u64,
    #[serde(rename = "return")]
    ret: Option<u64>,
    ok: bool,
    txn: Vec<RawMicroOp>,
}

impl RawTxn {
    fn into_txn(self, line: usize) -> Txn {
        Txn {
            client: self.client,
            call: self.call,
            ret: self.ret,
            ok: self.ok,
            ops: self.txn.into_iter().map(|RawMicroOp(op)| op).collect(),
            line,
        }
    }
}

/// A micro-operation as written: a three-element array whose last element's type depends on
/// the first. Read straight from the text (not through `serde_json::Value`) because lists of a
/// hundred elements in a hundred thousand transactions make the detour costly.
struct RawMicroOp(MicroOp);

impl<'de> Deserialize<'de> for RawMicroOp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_seq(MicroOpVisitor).map(RawMicroOp)
    }
}

struct MicroOpVisitor;

impl<'de> Visitor<'de> for MicroOpVisitor {
    type Value = MicroOp;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(r#"a micro-op: ["r", key, list or null] or ["append", key, integer]"#)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<MicroOp, A::Error> {
        let function: String = seq
            .next_element()?
            .ok_or_else(|| de::Error::invalid_length(0, &self))?;
        let key: String = seq
            .next_element()?
            .ok_or_else(|| de::Error::invalid_length(1, &self))?;
        let op = match function.as_str() {
            "r" => MicroOp::Read {
                key,
                value: seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(2, &self))?,
            },
            "append" => MicroOp::Append {
                key,
                value: seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(2, &self))?,
            },
            other => {
                return Err(de::Error::custom(format!(
                    "unknown micro-op {other:?} (r or append)"
                )))
            }
        };
        if seq.next_element::<IgnoredAny>()?.is_some() {
            return Err(de::Error::invalid_length(4, &self));
        }
        Ok(op)
    }
}

/// Reads a history: JSON lines, or (if the text starts with `[`) a JSON array; then
/// [`validate`]s it.
pub fn parse(text: &str) -> Result<Vec<Txn>, AppendHistoryError> {
    let txns = if text.trim_start().starts_with('[') {
        let raw: Vec<RawTxn> =
            serde_json::from_str(text).map_err(|e| AppendHistoryError::Array(e.to_string()))?;
        raw.into_iter()
            .enumerate()
            .map(|(i, txn)| txn.into_txn(i + 1))
            .collect()
    } else {
        let mut txns = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let raw: RawTxn = serde_json::from_str(line).map_err(|e| AppendHistoryError::Line {
                line: i + 1,
                reason: e.to_string(),
            })?;
            txns.push(raw.into_txn(i + 1));
        }
        txns
    };
    validate(&txns)?;
    Ok(txns)
}

/// Checks what a checker relies on and cannot judge itself: times in order, `ok` only with a
/// return time, every appended value unique per key, and at most [`MAX_TXNS`] transactions.
pub fn validate(txns: &[Txn]) -> Result<(), AppendHistoryError> {
    if txns.len() > MAX_TXNS {
        return Err(AppendHistoryError::TooLarge { txns: txns.len() });
    }
    let mut appended: HashMap<(&str, i64), usize> = HashMap::new();
    for txn in txns {
        let bad = |reason: String| AppendHistoryError::Line {
            line: txn.line,
            reason,
        };
        match txn.ret {
            Some(ret) if ret < txn.call => {
                return Err(bad(format!(
                    "returns at {ret}, before its call at {}",
                    txn.call
                )))
            }
            None if txn.ok => {
                return Err(bad(
                    "ok: true but no return time (an indeterminate transaction has ok: false)"
                        .to_string(),
                ))
            }
            _ => {}
        }
        for op in &txn.ops {
            if let MicroOp::Append { key, value } = op {
                if let Some(first) = appended.insert((key.as_str(), *value), txn.line) {
                    return Err(AppendHistoryError::DuplicateAppend {
                        key: key.clone(),
                        value: *value,
                        first,
                        second: txn.line,
                    });
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn micro_ops_are_read_by_their_function() {
        let line = concat!(
            r#"{"client":3,"call":1200,"return":1850,"ok":true,"#,
            r#""txn":[["r","a5",[1,2,3]],["append","a7",9],["r","a7",null]]}"#
        );
        let txns = parse(line).unwrap();
        assert_eq!(
            txns[0].ops,
            vec![
                MicroOp::Read {
                    key: "a5".into(),
                    value: Some(vec![1, 2, 3])
                },
                MicroOp::Append {
                    key: "a7".into(),
                    value: 9
                },
                MicroOp::Read {
                    key: "a7".into(),
                    value: None
                },
            ]
        );
        for (bad, says) in [
            (r#"[["w","a",1]]"#, "unknown micro-op \"w\""),
            (r#"[["r","a"]]"#, "invalid length 2"),
            (r#"[["append","a",1,2]]"#, "invalid length 4"),
            (r#"[["append","a",[1]]]"#, "invalid type"),
        ] {
            let line = format!(r#"{{"client":1,"call":1,"return":2,"ok":true,"txn":{bad}}}"#);
            let err = parse(&line).unwrap_err().to_string();
            assert!(err.starts_with("line 1:") && err.contains(says), "{err}");
        }
    }

    #[test]
    fn long_lists_are_shortened_in_messages() {
        assert_eq!(show_list(&[1, 2, 3]), "[1,2,3]");
        let long: Vec<i64> = (1..=100).collect();
        assert_eq!(show_list(&long), "[1,2,3,4,…,97,98,99,100] (100 elements)");
    }
}
