//! The checks etcd makes on a request before it reaches consensus: purely syntactic, no store
//! access, the first failure wins, in etcd's order.

use super::error::KvError;
use crate::proto::etcdserverpb::{
    request_op::Request, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
};

/// etcd's default `--max-txn-ops`.
pub const DEFAULT_MAX_TXN_OPS: usize = 128;

pub fn check_range(r: &RangeRequest) -> Result<(), KvError> {
    if r.key.is_empty() {
        return Err(KvError::EmptyKey);
    }
    check_sort_target(r)
}

/// etcd 3.5 crashes sorting by a target it does not know; Cairn refuses it up front, before
/// a transaction holding it could reach the log.
pub fn check_sort_target(r: &RangeRequest) -> Result<(), KvError> {
    if crate::proto::etcdserverpb::range_request::SortTarget::try_from(r.sort_target).is_err() {
        return Err(KvError::InvalidSortTarget(r.sort_target));
    }
    Ok(())
}

pub fn check_put(r: &PutRequest) -> Result<(), KvError> {
    if r.key.is_empty() {
        return Err(KvError::EmptyKey);
    }
    if r.ignore_value && !r.value.is_empty() {
        return Err(KvError::ValueProvided);
    }
    if r.ignore_lease && r.lease != 0 {
        return Err(KvError::LeaseProvided);
    }
    Ok(())
}

pub fn check_delete(r: &DeleteRangeRequest) -> Result<(), KvError> {
    if r.key.is_empty() {
        return Err(KvError::EmptyKey);
    }
    Ok(())
}

/// Checks a transaction: operation counts (nested transactions get what their parent leaves
/// of `max_ops`), empty keys, every operation, then duplicate keys in each branch.
pub fn check_txn(r: &TxnRequest, max_ops: usize) -> Result<(), KvError> {
    check_txn_ops(r, max_ops)?;
    check_intervals(&r.success)?;
    check_intervals(&r.failure)?;
    Ok(())
}

fn check_txn_ops(r: &TxnRequest, max_ops: usize) -> Result<(), KvError> {
    let ops = r.compare.len().max(r.success.len()).max(r.failure.len());
    if ops > max_ops {
        return Err(KvError::TooManyOps);
    }
    if r.compare.iter().any(|c| c.key.is_empty()) {
        return Err(KvError::EmptyKey);
    }
    for op in r.success.iter().chain(&r.failure) {
        check_op(op, max_ops - ops)?;
    }
    Ok(())
}

fn check_op(op: &RequestOp, max_ops: usize) -> Result<(), KvError> {
    match &op.request {
        Some(Request::RequestRange(r)) => check_range(r),
        Some(Request::RequestPut(r)) => check_put(r),
        Some(Request::RequestDeleteRange(r)) => check_delete(r),
        Some(Request::RequestTxn(r)) => check_txn_ops(r, max_ops),
        None => Err(KvError::KeyNotFound),
    }
}

/// Deleted key ranges of one branch: `[start, end)`, or the single key `start`.
#[derive(Debug, Default)]
struct Deletions {
    spans: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl Deletions {
    fn add(&mut self, r: &DeleteRangeRequest) {
        let end = (!r.range_end.is_empty()).then(|| r.range_end.clone());
        self.spans.push((r.key.clone(), end));
    }

    /// etcd reads "\0" (every key from `start` on) literally here, as the end "\0", which no
    /// key is below: such deletions never conflict with puts. Kept for compatibility.
    fn contains(&self, key: &[u8]) -> bool {
        self.spans.iter().any(|(start, end)| match end {
            None => start.as_slice() == key,
            Some(end) => start.as_slice() <= key && key < end.as_slice(),
        })
    }

    fn extend(&mut self, other: Deletions) {
        self.spans.extend(other.spans);
    }
}

/// Puts of one branch, with the deletions they must not meet.
fn check_intervals(ops: &[RequestOp]) -> Result<(Vec<Vec<u8>>, Deletions), KvError> {
    let mut deletions = Deletions::default();
    for op in ops {
        if let Some(Request::RequestDeleteRange(r)) = &op.request {
            deletions.add(r);
        }
    }
    let mut puts: Vec<Vec<u8>> = Vec::new();
    for op in ops {
        let Some(Request::RequestTxn(nested)) = &op.request else {
            continue;
        };
        let (puts_then, dels_then) = check_intervals(&nested.success)?;
        let (puts_else, dels_else) = check_intervals(&nested.failure)?;
        for key in &puts_then {
            if puts.contains(key) || deletions.contains(key) {
                return Err(KvError::DuplicateKey);
            }
            puts.push(key.clone());
        }
        for key in &puts_else {
            // Then and else of one transaction never both run: they may write the same key.
            let earlier = puts.contains(key) && !puts_then.contains(key);
            if earlier || deletions.contains(key) {
                return Err(KvError::DuplicateKey);
            }
            puts.push(key.clone());
        }
        deletions.extend(dels_then);
        deletions.extend(dels_else);
    }
    for op in ops {
        if let Some(Request::RequestPut(r)) = &op.request {
            if puts.contains(&r.key) || deletions.contains(&r.key) {
                return Err(KvError::DuplicateKey);
            }
            puts.push(r.key.clone());
        }
    }
    Ok((puts, deletions))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(key: &str) -> RequestOp {
        RequestOp {
            request: Some(Request::RequestPut(PutRequest {
                key: key.into(),
                ..Default::default()
            })),
        }
    }

    fn del(key: &str, end: &str) -> RequestOp {
        RequestOp {
            request: Some(Request::RequestDeleteRange(DeleteRangeRequest {
                key: key.into(),
                range_end: end.into(),
                ..Default::default()
            })),
        }
    }

    fn txn(then: Vec<RequestOp>, otherwise: Vec<RequestOp>) -> RequestOp {
        RequestOp {
            request: Some(Request::RequestTxn(TxnRequest {
                success: then,
                failure: otherwise,
                ..Default::default()
            })),
        }
    }

    fn verdict(ops: Vec<RequestOp>) -> &'static str {
        let request = TxnRequest {
            success: ops,
            ..Default::default()
        };
        match check_txn(&request, DEFAULT_MAX_TXN_OPS) {
            Ok(()) => "ok",
            Err(KvError::DuplicateKey) => "dup",
            Err(other) => panic!("unexpected {other}"),
        }
    }

    /// The duplicate-key table observed on etcd 3.5.1 (quirks included).
    #[test]
    fn duplicate_keys_as_etcd_decides() {
        assert_eq!(verdict(vec![put("a"), put("a")]), "dup");
        assert_eq!(verdict(vec![put("a"), del("a", "")]), "dup");
        assert_eq!(verdict(vec![del("a", ""), put("a")]), "dup");
        assert_eq!(verdict(vec![del("a", "c"), put("b")]), "dup");
        assert_eq!(verdict(vec![del("a", ""), del("a", "")]), "ok");
        assert_eq!(verdict(vec![del("a", "\0"), put("b")]), "ok");
        assert_eq!(verdict(vec![put("a"), txn(vec![put("a")], vec![])]), "dup");
        assert_eq!(
            verdict(vec![put("a"), txn(vec![del("a", "")], vec![])]),
            "dup"
        );
        assert_eq!(verdict(vec![txn(vec![put("a")], vec![put("a")])]), "ok");
        assert_eq!(
            verdict(vec![
                txn(vec![put("a")], vec![]),
                txn(vec![put("a")], vec![])
            ]),
            "dup"
        );
        assert_eq!(
            verdict(vec![
                txn(vec![put("a")], vec![]),
                txn(vec![], vec![put("a")])
            ]),
            "dup"
        );
        assert_eq!(
            verdict(vec![
                txn(vec![del("a", "")], vec![]),
                txn(vec![put("a")], vec![])
            ]),
            "dup"
        );
        assert_eq!(
            verdict(vec![
                txn(vec![put("a")], vec![]),
                txn(vec![del("a", "")], vec![])
            ]),
            "ok"
        );
    }

    #[test]
    fn nested_transactions_share_the_operation_budget() {
        let nested = |n: usize| TxnRequest {
            success: vec![txn((0..n).map(|i| put(&format!("k{i}"))).collect(), vec![])],
            ..Default::default()
        };
        assert!(check_txn(&nested(127), 128).is_ok());
        assert!(matches!(
            check_txn(&nested(128), 128),
            Err(KvError::TooManyOps)
        ));
    }

    #[test]
    fn unknown_sort_targets_never_reach_consensus() {
        let range = |target| RangeRequest {
            key: b"a".to_vec(),
            sort_target: target,
            ..Default::default()
        };
        assert!(check_range(&range(4)).is_ok());
        assert!(matches!(
            check_range(&range(7)),
            Err(KvError::InvalidSortTarget(7))
        ));
        let txn = TxnRequest {
            success: vec![
                put("a"),
                RequestOp {
                    request: Some(Request::RequestRange(range(7))),
                },
            ],
            ..Default::default()
        };
        assert!(matches!(
            check_txn(&txn, 128),
            Err(KvError::InvalidSortTarget(7))
        ));
    }

    #[test]
    fn first_failure_wins_in_etcds_order() {
        let request = TxnRequest {
            success: vec![put("a"), put("a"), put("")],
            ..Default::default()
        };
        assert!(
            matches!(check_txn(&request, 128), Err(KvError::EmptyKey)),
            "empty key before dup"
        );
        assert!(matches!(
            check_txn(
                &TxnRequest {
                    success: vec![RequestOp::default()],
                    ..Default::default()
                },
                128
            ),
            Err(KvError::KeyNotFound)
        ));
        let put_both = PutRequest {
            key: "k".into(),
            value: "v".into(),
            ignore_value: true,
            ..Default::default()
        };
        assert!(matches!(check_put(&put_both), Err(KvError::ValueProvided)));
    }
}
