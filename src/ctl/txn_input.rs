//! Reads a transaction in etcdctl's text form: compare lines, a blank line, success
//! operations, a blank line, failure operations, a blank line.
//!
//! ```text
//! mod("key1") > "0"
//!
//! put key1 "overwrote-key1"
//!
//! put key1 "created-key1"
//! put key2 "some extra key"
//! ```
//!
//! Unlike etcdctl, the end of input also ends a section, so a heredoc without the final blank
//! line works.

use std::io::BufRead;

use crate::proto::etcdserverpb::{compare, Compare, RequestOp, TxnRequest};

/// Why a transaction's text was refused. Messages follow etcdctl's.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TxnInputError {
    #[error("malformed comparison: {0}")]
    MalformedComparison(String),
    #[error("malformed comparison: {line} (unknown target {target})")]
    UnknownTarget { line: String, target: String },
    #[error("invalid txn compare request: {line} ({reason})")]
    BadCompareValue { line: String, reason: String },
    #[error("invalid txn request: {0}")]
    BadRequest(String),
    #[error("invalid txn compare request: {0}")]
    TooShort(String),
    #[error("reading standard input: {0}")]
    Read(String),
    #[error("{0}")]
    Quoting(String),
}

/// Parses one request line (`put k v`, `get k --prefix`, `del k`) into an operation.
pub type OpParser = dyn Fn(&[String]) -> Result<RequestOp, String>;

/// Reads the three sections from `input`, calling `prompt` before each (interactive mode).
pub fn read_txn(
    input: &mut dyn BufRead,
    parse_op: &OpParser,
    prompt: &mut dyn FnMut(&str),
) -> Result<TxnRequest, TxnInputError> {
    prompt("compares:");
    let compare = read_section(input)?
        .iter()
        .map(|line| parse_compare(line))
        .collect::<Result<Vec<_>, _>>()?;
    prompt("success requests (get, put, del):");
    let success = read_ops(input, parse_op)?;
    prompt("failure requests (get, put, del):");
    let failure = read_ops(input, parse_op)?;
    Ok(TxnRequest {
        compare,
        success,
        failure,
    })
}

fn read_ops(input: &mut dyn BufRead, parse_op: &OpParser) -> Result<Vec<RequestOp>, TxnInputError> {
    read_section(input)?
        .iter()
        .map(|line| {
            let args = argify(line)?;
            if args.len() < 2 {
                return Err(TxnInputError::TooShort(line.clone()));
            }
            parse_op(&args).map_err(|_| TxnInputError::BadRequest(line.clone()))
        })
        .collect()
}

/// Lines up to the next blank line or the end of input, trimmed.
fn read_section(input: &mut dyn BufRead) -> Result<Vec<String>, TxnInputError> {
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        let read = input
            .read_line(&mut line)
            .map_err(|err| TxnInputError::Read(err.to_string()))?;
        let line = line.trim();
        if read == 0 || line.is_empty() {
            return Ok(lines);
        }
        lines.push(line.to_string());
    }
}

/// Parses `target("key") op "value"`.
pub fn parse_compare(line: &str) -> Result<Compare, TxnInputError> {
    let malformed = || TxnInputError::MalformedComparison(line.to_string());
    let (target, rest) = line.split_once('(').ok_or_else(malformed)?;
    let (key, rest) = take_quoted(rest).ok_or_else(malformed)?;
    let rest = rest.strip_prefix(')').ok_or_else(malformed)?.trim_start();
    let (op, rest) = rest.split_once(char::is_whitespace).ok_or_else(malformed)?;
    let (value, _) = take_quoted(rest.trim_start()).ok_or_else(malformed)?;
    let result = match op {
        "=" | "==" => compare::CompareResult::Equal,
        "!=" => compare::CompareResult::NotEqual,
        ">" => compare::CompareResult::Greater,
        "<" => compare::CompareResult::Less,
        _ => return Err(malformed()),
    };
    let number = |radix: u32| {
        i64::from_str_radix(&value, radix).map_err(|err| TxnInputError::BadCompareValue {
            line: line.to_string(),
            reason: err.to_string(),
        })
    };
    let (target, union) = match target.trim() {
        "ver" | "version" => (
            compare::CompareTarget::Version,
            compare::TargetUnion::Version(number(10)?),
        ),
        "c" | "create" => (
            compare::CompareTarget::Create,
            compare::TargetUnion::CreateRevision(number(10)?),
        ),
        "m" | "mod" => (
            compare::CompareTarget::Mod,
            compare::TargetUnion::ModRevision(number(10)?),
        ),
        "val" | "value" => (
            compare::CompareTarget::Value,
            compare::TargetUnion::Value(value.clone().into_bytes()),
        ),
        "lease" => (
            compare::CompareTarget::Lease,
            compare::TargetUnion::Lease(number(16)?),
        ),
        other => {
            return Err(TxnInputError::UnknownTarget {
                line: line.to_string(),
                target: other.to_string(),
            })
        }
    };
    Ok(Compare {
        result: result as i32,
        target: target as i32,
        key: key.into_bytes(),
        range_end: Vec::new(),
        target_union: Some(union),
    })
}

/// Takes a Go-quoted string ("..." with escapes, or `...` raw) from the start of `text`;
/// returns it unquoted and the rest.
fn take_quoted(text: &str) -> Option<(String, &str)> {
    let text = text.trim_start();
    if let Some(raw) = text.strip_prefix('`') {
        let end = raw.find('`')?;
        return Some((raw[..end].to_string(), &raw[end + 1..]));
    }
    let body = text.strip_prefix('"')?;
    let mut out = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, &body[i + 1..])),
            '\\' => {
                let (_, escape) = chars.next()?;
                match escape {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    'r' => out.push('\r'),
                    'a' => out.push('\u{7}'),
                    'b' => out.push('\u{8}'),
                    'f' => out.push('\u{c}'),
                    'v' => out.push('\u{b}'),
                    '\\' | '"' | '\'' => out.push(escape),
                    'x' | 'u' | 'U' => {
                        let digits = match escape {
                            'x' => 2,
                            'u' => 4,
                            _ => 8,
                        };
                        let mut code = 0u32;
                        for _ in 0..digits {
                            code = code * 16 + chars.next()?.1.to_digit(16)?;
                        }
                        out.push(char::from_u32(code)?);
                    }
                    _ => return None,
                }
            }
            c => out.push(c),
        }
    }
    None
}

/// Splits a request line into arguments: whitespace separates them, "double quotes" (with Go
/// escapes) and 'single quotes' group them.
pub fn argify(line: &str) -> Result<Vec<String>, TxnInputError> {
    let mut args = Vec::new();
    let mut rest = line.trim_start();
    while !rest.is_empty() {
        if rest.starts_with('"') {
            let (arg, after) = take_quoted(rest)
                .ok_or_else(|| TxnInputError::Quoting(format!("invalid syntax: {rest}")))?;
            args.push(arg);
            rest = after;
        } else if let Some(quoted) = rest.strip_prefix('\'') {
            let end = quoted
                .find('\'')
                .ok_or_else(|| TxnInputError::Quoting(format!("unterminated quote: {rest}")))?;
            args.push(quoted[..end].to_string());
            rest = &quoted[end + 1..];
        } else {
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            args.push(rest[..end].to_string());
            rest = &rest[end..];
        }
        rest = rest.trim_start();
    }
    Ok(args)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::etcdserverpb::request_op;

    #[test]
    fn compares_in_every_form() {
        let c = parse_compare(r#"mod("key1") > "0""#).unwrap();
        assert_eq!(c.key, b"key1");
        assert_eq!(c.target, compare::CompareTarget::Mod as i32);
        assert_eq!(c.result, compare::CompareResult::Greater as i32);
        assert_eq!(c.target_union, Some(compare::TargetUnion::ModRevision(0)));
        let c = parse_compare(r#"value("k") != "a \"b\"""#).unwrap();
        assert_eq!(
            c.target_union,
            Some(compare::TargetUnion::Value(b"a \"b\"".to_vec()))
        );
        let c = parse_compare(r#"lease("k") = "1f""#).unwrap();
        assert_eq!(c.target_union, Some(compare::TargetUnion::Lease(31)));
        assert!(matches!(
            parse_compare("bogus"),
            Err(TxnInputError::MalformedComparison(_))
        ));
        assert!(matches!(
            parse_compare(r#"size("k") = "1""#),
            Err(TxnInputError::UnknownTarget { .. })
        ));
        assert!(matches!(
            parse_compare(r#"ver("k") = "x""#),
            Err(TxnInputError::BadCompareValue { .. })
        ));
    }

    #[test]
    fn arguments_group_by_quotes() {
        assert_eq!(
            argify(r#"put k "two words" 'raw \n' --prev-kv"#).unwrap(),
            ["put", "k", "two words", "raw \\n", "--prev-kv"]
        );
        assert_eq!(argify(r#"put k "a\tb""#).unwrap(), ["put", "k", "a\tb"]);
    }

    #[test]
    fn sections_end_at_blank_lines_or_input_end() {
        let text = "val(\"a\") = \"1\"\n\nput b 2\nget a\n\nput c 3\n";
        let parse = |args: &[String]| -> Result<RequestOp, String> {
            let put = crate::proto::etcdserverpb::PutRequest {
                key: args[1].clone().into_bytes(),
                ..Default::default()
            };
            Ok(RequestOp {
                request: Some(request_op::Request::RequestPut(put)),
            })
        };
        let mut prompts = Vec::new();
        let txn = read_txn(&mut text.as_bytes(), &parse, &mut |p| {
            prompts.push(p.to_string())
        })
        .unwrap();
        assert_eq!(
            (txn.compare.len(), txn.success.len(), txn.failure.len()),
            (1, 2, 1)
        );
        assert_eq!(prompts.len(), 3);
    }
}
