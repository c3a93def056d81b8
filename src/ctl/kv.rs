//! The key-value commands (`get`, `put`, `del`, `txn`, `compaction`): their flags, as
//! etcdctl spells them, and the requests they make.

use clap::Args;

use super::CtlError;
use crate::mvcc::key_range::prefix_end;
use crate::proto::etcdserverpb::{
    range_request::{SortOrder, SortTarget},
    request_op, CompactionRequest, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp,
};

/// `get [options] <key> [range_end]`
#[derive(Debug, Clone, Args, Default)]
pub struct GetArgs {
    /// The key, or the start of the range.
    pub key: Option<String>,
    /// The end of the range (exclusive).
    pub range_end: Option<String>,
    /// Linearizable (l) or Serializable (s).
    #[arg(long, default_value = "l")]
    pub consistency: String,
    /// Order of results; ASCEND or DESCEND (ASCEND by default).
    #[arg(long, default_value = "")]
    pub order: String,
    /// Sort target; CREATE, KEY, MODIFY, VALUE, or VERSION.
    #[arg(long = "sort-by", default_value = "")]
    pub sort_by: String,
    /// Maximum number of results.
    #[arg(long, default_value_t = 0)]
    pub limit: i64,
    /// Get keys with matching prefix.
    #[arg(long)]
    pub prefix: bool,
    /// Get keys that are greater than or equal to the given key using byte compare.
    #[arg(long = "from-key")]
    pub from_key: bool,
    /// Specify the kv revision.
    #[arg(long, default_value_t = 0)]
    pub rev: i64,
    /// Get only the keys.
    #[arg(long = "keys-only")]
    pub keys_only: bool,
    /// Get only the count.
    #[arg(long = "count-only")]
    pub count_only: bool,
    /// Only write values when using the "simple" output format.
    #[arg(long = "print-value-only")]
    pub print_value_only: bool,
}

/// `put [options] <key> <value>` (the value may come from standard input instead).
#[derive(Debug, Clone, Args, Default)]
pub struct PutArgs {
    pub key: Option<String>,
    pub value: Option<String>,
    /// Lease ID (in hexadecimal) to attach to the key.
    #[arg(long, default_value = "0")]
    pub lease: String,
    /// Return the previous key-value pair before modification.
    #[arg(long = "prev-kv")]
    pub prev_kv: bool,
    /// Update the key using its current value.
    #[arg(long = "ignore-value")]
    pub ignore_value: bool,
    /// Update the key using its current lease.
    #[arg(long = "ignore-lease")]
    pub ignore_lease: bool,
}

/// `del [options] <key> [range_end]`
#[derive(Debug, Clone, Args, Default)]
pub struct DelArgs {
    pub key: Option<String>,
    pub range_end: Option<String>,
    /// Delete keys with matching prefix.
    #[arg(long)]
    pub prefix: bool,
    /// Return deleted key-value pairs.
    #[arg(long = "prev-kv")]
    pub prev_kv: bool,
    /// Delete keys that are greater than or equal to the given key using byte compare.
    #[arg(long = "from-key")]
    pub from_key: bool,
}

/// `compaction [options] <revision>`
#[derive(Debug, Clone, Args, Default)]
pub struct CompactionArgs {
    pub revision: Option<String>,
    /// Wait until the compaction is physically applied (the history is gone from disk).
    #[arg(long)]
    pub physical: bool,
}

/// Resolves a key and the `--prefix`/`--from-key` flags to a key and range end, as etcdctl
/// does: an empty prefix or from-key means every key.
fn key_and_end(
    key: &str,
    range_end: Option<&str>,
    prefix: bool,
    from_key: bool,
) -> (Vec<u8>, Vec<u8>) {
    if prefix {
        if key.is_empty() {
            return (vec![0], vec![0]);
        }
        return (
            key.as_bytes().to_vec(),
            prefix_end(key.as_bytes()).unwrap_or_else(|| vec![0]),
        );
    }
    if from_key {
        let key = if key.is_empty() {
            vec![0]
        } else {
            key.as_bytes().to_vec()
        };
        return (key, vec![0]);
    }
    (
        key.as_bytes().to_vec(),
        range_end.map(|e| e.as_bytes().to_vec()).unwrap_or_default(),
    )
}

impl GetArgs {
    pub fn to_request(&self) -> Result<RangeRequest, CtlError> {
        let key = self.key.as_deref().ok_or_else(|| {
            CtlError::BadArgs(
                "get command needs one argument as key and an optional argument as range_end"
                    .into(),
            )
        })?;
        if self.prefix && self.from_key {
            return Err(CtlError::BadArgs(
                "`--prefix` and `--from-key` cannot be set at the same time, choose one".into(),
            ));
        }
        if self.keys_only && self.count_only {
            return Err(CtlError::BadArgs(
                "`--keys-only` and `--count-only` cannot be set at the same time, choose one"
                    .into(),
            ));
        }
        let serializable = match self.consistency.as_str() {
            "s" => true,
            "l" => false,
            other => {
                return Err(CtlError::BadFeature(format!(
                    "unknown consistency flag {other:?}"
                )))
            }
        };
        if self.range_end.is_some() && (self.prefix || self.from_key) {
            return Err(CtlError::BadArgs(
                "too many arguments, only accept one argument when `--prefix` or `--from-key` is set"
                    .into(),
            ));
        }
        let mut order = match self.order.to_uppercase().as_str() {
            "ASCEND" => SortOrder::Ascend,
            "DESCEND" => SortOrder::Descend,
            "" => SortOrder::None,
            _ => {
                return Err(CtlError::BadFeature(format!(
                    "bad sort order {}",
                    self.order
                )))
            }
        };
        let target = match self.sort_by.to_uppercase().as_str() {
            "CREATE" => SortTarget::Create,
            "KEY" | "" => SortTarget::Key,
            "MODIFY" => SortTarget::Mod,
            "VALUE" => SortTarget::Value,
            "VERSION" => SortTarget::Version,
            _ => {
                return Err(CtlError::BadFeature(format!(
                    "bad sort target {}",
                    self.sort_by
                )))
            }
        };
        // The server returns keys in ascending key order anyway; asking for it would make it
        // fetch the whole range before applying the limit.
        if target == SortTarget::Key && order == SortOrder::Ascend {
            order = SortOrder::None;
        }
        let (key, range_end) =
            key_and_end(key, self.range_end.as_deref(), self.prefix, self.from_key);
        Ok(RangeRequest {
            key,
            range_end,
            limit: self.limit,
            revision: self.rev.max(0),
            sort_order: order as i32,
            sort_target: target as i32,
            serializable,
            keys_only: self.keys_only,
            count_only: self.count_only,
            ..Default::default()
        })
    }
}

impl PutArgs {
    /// `stdin_value` supplies the value when none is given as an argument.
    pub fn to_request(
        &self,
        stdin_value: &mut dyn FnMut() -> Option<String>,
    ) -> Result<PutRequest, CtlError> {
        let needs = || {
            CtlError::BadArgs(
                "put command needs 1 argument and input from stdin or 2 arguments".into(),
            )
        };
        let key = self.key.as_deref().ok_or_else(needs)?;
        if self.ignore_value && self.value.is_some() {
            return Err(CtlError::BadArgs(
                "put command needs only 1 argument when 'ignore-value' is set".into(),
            ));
        }
        let value = if self.ignore_value {
            String::new()
        } else {
            match &self.value {
                Some(value) => value.clone(),
                None => stdin_value().ok_or_else(needs)?,
            }
        };
        let lease = i64::from_str_radix(&self.lease, 16).map_err(|err| {
            CtlError::BadArgs(format!(
                "bad lease ID ({}), expecting ID in Hex",
                go_parse_error(&self.lease, &err)
            ))
        })?;
        Ok(PutRequest {
            key: key.as_bytes().to_vec(),
            value: value.into_bytes(),
            lease,
            prev_kv: self.prev_kv,
            ignore_value: self.ignore_value,
            ignore_lease: self.ignore_lease,
        })
    }
}

impl DelArgs {
    pub fn to_request(&self) -> Result<DeleteRangeRequest, CtlError> {
        let key = self.key.as_deref().ok_or_else(|| {
            CtlError::BadArgs(
                "del command needs one argument as key and an optional argument as range_end"
                    .into(),
            )
        })?;
        if self.prefix && self.from_key {
            return Err(CtlError::BadArgs(
                "`--prefix` and `--from-key` cannot be set at the same time, choose one".into(),
            ));
        }
        if self.range_end.is_some() && (self.prefix || self.from_key) {
            return Err(CtlError::BadArgs(
                "too many arguments, only accept one argument when `--prefix` or `--from-key` is set"
                    .into(),
            ));
        }
        let (key, range_end) =
            key_and_end(key, self.range_end.as_deref(), self.prefix, self.from_key);
        Ok(DeleteRangeRequest {
            key,
            range_end,
            prev_kv: self.prev_kv,
        })
    }
}

impl CompactionArgs {
    pub fn to_request(&self) -> Result<CompactionRequest, CtlError> {
        let text = self
            .revision
            .as_deref()
            .ok_or_else(|| CtlError::BadArgs("compaction command needs 1 argument".into()))?;
        let revision = text
            .parse::<i64>()
            .map_err(|err| CtlError::Failed(go_parse_error(text, &err)))?;
        Ok(CompactionRequest {
            revision,
            physical: self.physical,
        })
    }
}

/// Go's `strconv.ParseInt` error text, which etcdctl users see.
/// Go's `strconv.ParseInt` error text for `text`.
pub(crate) fn go_parse_error(text: &str, err: &std::num::ParseIntError) -> String {
    use std::num::IntErrorKind;
    let reason = match err.kind() {
        IntErrorKind::PosOverflow | IntErrorKind::NegOverflow => "value out of range",
        _ => "invalid syntax",
    };
    format!("strconv.ParseInt: parsing {text:?}: {reason}")
}

/// A request line inside `txn`: the same commands and flags as at the top level.
#[derive(Debug, clap::Parser)]
#[command(no_binary_name = true)]
enum TxnOpLine {
    Put(PutArgs),
    Get(GetArgs),
    Del(DelArgs),
}

/// Parses one `txn` request line (already split into arguments).
pub fn parse_txn_op(args: &[String]) -> Result<RequestOp, String> {
    use clap::Parser;
    let line = TxnOpLine::try_parse_from(args).map_err(|err| err.to_string())?;
    let request = match line {
        TxnOpLine::Put(put) => request_op::Request::RequestPut(
            put.to_request(&mut || None)
                .map_err(|err| err.to_string())?,
        ),
        TxnOpLine::Get(get) => {
            request_op::Request::RequestRange(get.to_request().map_err(|err| err.to_string())?)
        }
        TxnOpLine::Del(del) => request_op::Request::RequestDeleteRange(
            del.to_request().map_err(|err| err.to_string())?,
        ),
    };
    Ok(RequestOp {
        request: Some(request),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(key: &str) -> GetArgs {
        GetArgs {
            key: Some(key.into()),
            consistency: "l".into(),
            ..Default::default()
        }
    }

    #[test]
    fn prefix_and_from_key_ranges() {
        let r = GetArgs {
            prefix: true,
            ..get("foo")
        }
        .to_request()
        .unwrap();
        assert_eq!((r.key, r.range_end), (b"foo".to_vec(), b"fop".to_vec()));
        let r = GetArgs {
            prefix: true,
            ..get("")
        }
        .to_request()
        .unwrap();
        assert_eq!((r.key, r.range_end), (vec![0], vec![0]));
        let r = GetArgs {
            from_key: true,
            ..get("b")
        }
        .to_request()
        .unwrap();
        assert_eq!((r.key, r.range_end), (b"b".to_vec(), vec![0]));
        let r = GetArgs {
            range_end: Some("c".into()),
            ..get("a")
        }
        .to_request()
        .unwrap();
        assert_eq!(r.range_end, b"c");
    }

    #[test]
    fn sort_by_key_ascending_asks_for_no_sort() {
        let r = GetArgs {
            sort_by: "key".into(),
            order: "ascend".into(),
            ..get("a")
        }
        .to_request()
        .unwrap();
        assert_eq!(r.sort_order, SortOrder::None as i32);
        let r = GetArgs {
            sort_by: "MODIFY".into(),
            order: "DESCEND".into(),
            ..get("a")
        }
        .to_request()
        .unwrap();
        assert_eq!(
            (r.sort_order, r.sort_target),
            (SortOrder::Descend as i32, SortTarget::Mod as i32)
        );
    }

    #[test]
    fn bad_arguments_get_etcdctls_messages() {
        let err = GetArgs::default().to_request().unwrap_err();
        assert_eq!(
            err.to_string(),
            "get command needs one argument as key and an optional argument as range_end"
        );
        let err = GetArgs {
            prefix: true,
            from_key: true,
            ..get("a")
        }
        .to_request()
        .unwrap_err();
        assert_eq!(err.exit_code(), 128);
        let err = GetArgs {
            sort_by: "FOO".into(),
            ..get("a")
        }
        .to_request()
        .unwrap_err();
        assert_eq!(
            (err.to_string().as_str(), err.exit_code()),
            ("bad sort target FOO", 4)
        );
        let put = PutArgs {
            key: Some("k".into()),
            value: Some("v".into()),
            lease: "zz".into(),
            ..Default::default()
        };
        assert_eq!(
            put.to_request(&mut || None).unwrap_err().to_string(),
            "bad lease ID (strconv.ParseInt: parsing \"zz\": invalid syntax), expecting ID in Hex"
        );
    }

    #[test]
    fn txn_lines_parse_like_top_level_commands() {
        let args: Vec<String> = ["get", "a", "--prefix"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let op = parse_txn_op(&args).unwrap();
        match op.request {
            Some(request_op::Request::RequestRange(r)) => assert_eq!(r.range_end, b"b"),
            other => panic!("{other:?}"),
        }
        assert!(parse_txn_op(&["bogus".to_string(), "x".to_string()]).is_err());
    }
}
