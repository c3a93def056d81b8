//! The register workload's history: one line per operation (JSON lines), or a JSON array of
//! the same objects.
//!
//! ```text
//! {"client":3,"call":1200,"return":1850,"op":"write","key":"k1","value":5,"ok":true}
//! {"client":4,"call":1300,"return":null,"op":"cas","key":"k1","value":[5,6],"ok":false}
//! {"client":5,"call":1400,"return":1500,"op":"read","key":"k1","value":null,"ok":true}
//! ```
//!
//! `call` and `return` are nanoseconds on one clock; `return: null` marks an indeterminate
//! operation (timed out, connection lost: it may or may not have taken effect). `ok: false`
//! with a return time means the operation definitely did not change the register (an error,
//! or a compare-and-set whose compare failed). A read's `value` is what it saw (`null`: the
//! key did not exist); a write's what it wrote; a cas's `[expected, new]`.

use serde::Deserialize;
use serde_json::Value;

/// What an operation did to a register.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegisterOp {
    Read(Option<Value>),
    Write(Value),
    Cas { expected: Value, new: Value },
}

/// One operation of the history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    pub client: u64,
    pub call: u64,
    /// None: indeterminate.
    pub ret: Option<u64>,
    pub key: String,
    pub op: RegisterOp,
    pub ok: bool,
    /// Line (JSON lines) or element (array) number, from 1, for messages.
    pub line: usize,
}

/// Why a history file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("line {line}: {reason}")]
    Line { line: usize, reason: String },
    #[error("not a JSON array of operations: {0}")]
    Array(String),
}

#[derive(Deserialize)]
struct RawOperation {
    client: u64,
    call: u64,
    #[serde(rename = "return")]
    ret: Option<u64>,
    op: String,
    key: String,
    #[serde(default)]
    value: Value,
    ok: bool,
}

impl RawOperation {
    fn check(self, line: usize) -> Result<Operation, HistoryError> {
        let bad = |reason: String| HistoryError::Line { line, reason };
        let op = match self.op.as_str() {
            "read" => RegisterOp::Read((!self.value.is_null()).then_some(self.value)),
            "write" => RegisterOp::Write(self.value),
            "cas" => match self.value {
                Value::Array(pair) if pair.len() == 2 => {
                    let mut pair = pair.into_iter();
                    let expected = pair.next().unwrap_or(Value::Null);
                    let new = pair.next().unwrap_or(Value::Null);
                    RegisterOp::Cas { expected, new }
                }
                other => {
                    return Err(bad(format!(
                        "cas value must be [expected, new], not {other}"
                    )))
                }
            },
            other => return Err(bad(format!("unknown op {other:?} (read, write or cas)"))),
        };
        if let Some(ret) = self.ret {
            if ret < self.call {
                return Err(bad(format!(
                    "returns at {ret}, before its call at {}",
                    self.call
                )));
            }
        }
        Ok(Operation {
            client: self.client,
            call: self.call,
            ret: self.ret,
            key: self.key,
            op,
            ok: self.ok,
            line,
        })
    }
}

/// Reads a history: JSON lines, or (if the text starts with `[`) a JSON array.
pub fn parse(text: &str) -> Result<Vec<Operation>, HistoryError> {
    if text.trim_start().starts_with('[') {
        let raw: Vec<RawOperation> =
            serde_json::from_str(text).map_err(|e| HistoryError::Array(e.to_string()))?;
        return raw
            .into_iter()
            .enumerate()
            .map(|(i, op)| op.check(i + 1))
            .collect();
    }
    let mut ops = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let raw: RawOperation = serde_json::from_str(line).map_err(|e| HistoryError::Line {
            line: i + 1,
            reason: e.to_string(),
        })?;
        ops.push(raw.check(i + 1)?);
    }
    Ok(ops)
}

impl Operation {
    /// As it is written in a history (for messages).
    pub fn describe(&self) -> String {
        let what = match &self.op {
            RegisterOp::Read(None) => "read nothing".to_string(),
            RegisterOp::Read(Some(v)) => format!("read {v}"),
            RegisterOp::Write(v) => format!("write {v}"),
            RegisterOp::Cas { expected, new } => format!("cas {expected} -> {new}"),
        };
        let ret = self.ret.map_or_else(
            || "never returned".to_string(),
            |r| format!("returned at {r}"),
        );
        format!(
            "{what} by client {} (line {}, called at {}, {ret}{})",
            self.client,
            self.line,
            self.call,
            if self.ok { "" } else { ", failed" }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_arrays_read_alike_and_bad_input_is_named_by_line() {
        let lines = r#"{"client":1,"call":1,"return":2,"op":"write","key":"a","value":1,"ok":true}
{"client":2,"call":3,"return":null,"op":"cas","key":"a","value":[1,2],"ok":false}

{"client":3,"call":4,"return":5,"op":"read","key":"a","value":null,"ok":true}"#;
        let ops = parse(lines).unwrap();
        assert_eq!(ops.len(), 3);
        assert_eq!(ops[1].ret, None);
        assert_eq!(ops[2].op, RegisterOp::Read(None));
        assert_eq!(ops[2].line, 4);
        let array = format!("[{}]", lines.replace("\n\n", "\n").replace('\n', ","));
        let from_array = parse(&array).unwrap();
        assert_eq!(from_array[1].op, ops[1].op);
        let bad = r#"{"client":1,"call":5,"return":2,"op":"write","key":"a","value":1,"ok":true}"#;
        assert!(parse(bad).unwrap_err().to_string().starts_with("line 1:"));
        let bad = r#"{"client":1,"call":1,"return":2,"op":"cas","key":"a","value":3,"ok":true}"#;
        assert!(parse(bad)
            .unwrap_err()
            .to_string()
            .contains("[expected, new]"));
    }
}
