//! Put, DeleteRange and Txn as etcd applies them.
//!
//! A transaction runs in four phases, as in etcd: (1) every compare on the chosen path —
//! nested transactions' too — is decided against the state before any operation runs;
//! (2) puts on that path are checked (`ignore_*` needs the key, leases must exist);
//! (3) ranges on that path are checked against the revision window; (4) the operations run
//! in order, each seeing the ones before it. Phases 1–3 only read, so a transaction that fails
//! them changes nothing; phase 4 cannot fail for a valid request.

use std::borrow::Cow;

use super::error::KvError;
use super::range::execute_range;
use super::view::KvWrite;
use crate::mvcc::{KeyRange, RangeOptions};
use crate::proto::etcdserverpb::{
    compare::{CompareResult, CompareTarget, TargetUnion},
    request_op::Request,
    response_op::Response,
    Compare, DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse, RequestOp,
    ResponseHeader, ResponseOp, TxnRequest, TxnResponse,
};
use crate::proto::mvccpb::KeyValue;

/// Whether a lease exists (leases live outside the key space).
pub type LeaseExists<'a> = &'a dyn Fn(i64) -> bool;

fn header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader {
        revision,
        ..Default::default()
    })
}

fn current(view: &dyn KvWrite, key: &[u8]) -> Result<Option<KeyValue>, KvError> {
    let mut found = view
        .range(&KeyRange::Single(key.to_vec()), RangeOptions::default())?
        .kvs;
    Ok(found.pop())
}

/// A standalone Put: the lease is checked before the key's existence, as etcd does.
pub fn execute_put(
    view: &mut dyn KvWrite,
    r: &PutRequest,
    lease_exists: LeaseExists<'_>,
) -> Result<PutResponse, KvError> {
    if r.lease != 0 && !lease_exists(r.lease) {
        return Err(KvError::LeaseNotFound);
    }
    apply_put(view, r)
}

fn apply_put(view: &mut dyn KvWrite, r: &PutRequest) -> Result<PutResponse, KvError> {
    // The write itself returns what it replaced (prev_kv); only `ignore_*` needs the key
    // before writing.
    let (value, lease) = if r.ignore_value || r.ignore_lease {
        let kept = current(view, &r.key)?.ok_or(KvError::KeyNotFound)?;
        let value = if r.ignore_value {
            Cow::Owned(kept.value)
        } else {
            Cow::Borrowed(r.value.as_slice())
        };
        (value, if r.ignore_lease { kept.lease } else { r.lease })
    } else {
        (Cow::Borrowed(r.value.as_slice()), r.lease)
    };
    let previous = view.put(&r.key, &value, lease, r.prev_kv)?;
    Ok(PutResponse {
        header: header(view.revision()),
        prev_kv: previous,
    })
}

pub fn execute_delete(
    view: &mut dyn KvWrite,
    r: &DeleteRangeRequest,
) -> Result<DeleteRangeResponse, KvError> {
    let deleted = view.delete_range(&KeyRange::from_etcd(&r.key, &r.range_end))?;
    Ok(DeleteRangeResponse {
        header: header(view.revision()),
        deleted: i64::try_from(deleted.len()).unwrap_or(i64::MAX),
        prev_kvs: if r.prev_kv { deleted } else { Vec::new() },
    })
}

/// Runs a transaction; its header carries the revision after it.
pub fn execute_txn(
    view: &mut dyn KvWrite,
    r: &TxnRequest,
    lease_exists: LeaseExists<'_>,
) -> Result<TxnResponse, KvError> {
    let mut decisions = Vec::new();
    decide(view, r, &mut decisions)?;
    let mut path = Path::new(&decisions);
    let mut deleted_before = Vec::new();
    check_puts(view, r, &mut path, &mut deleted_before, lease_exists)?;
    let mut path = Path::new(&decisions);
    let (begin, compacted) = (view.revision(), view.compacted_revision());
    check_ranges(r, &mut path, begin, compacted)?;
    let mut path = Path::new(&decisions);
    let mut response = run(view, r, &mut path)?;
    response.header = header(view.revision());
    Ok(response)
}

/// The branch each transaction on the path takes, in the order the path visits them.
struct Path<'d> {
    decisions: &'d [bool],
    next: usize,
}

impl<'d> Path<'d> {
    fn new(decisions: &'d [bool]) -> Self {
        Path { decisions, next: 0 }
    }

    fn take(&mut self) -> bool {
        // Phases walk the same path that `decide` recorded.
        debug_assert!(
            self.next < self.decisions.len(),
            "path shorter than its walk"
        );
        let decision = self.decisions.get(self.next).copied().unwrap_or(false);
        self.next += 1;
        decision
    }
}

fn branch(r: &TxnRequest, succeeded: bool) -> &[RequestOp] {
    if succeeded {
        &r.success
    } else {
        &r.failure
    }
}

fn decide(view: &dyn KvWrite, r: &TxnRequest, decisions: &mut Vec<bool>) -> Result<(), KvError> {
    let mut succeeded = true;
    for c in &r.compare {
        if !evaluate(view, c)? {
            succeeded = false;
            break;
        }
    }
    decisions.push(succeeded);
    for op in branch(r, succeeded) {
        if let Some(Request::RequestTxn(nested)) = &op.request {
            decide(view, nested, decisions)?;
        }
    }
    Ok(())
}

/// A compare holds when every key in its range satisfies it; with no key, VALUE compares
/// fail and the others compare against zero.
fn evaluate(view: &dyn KvWrite, c: &Compare) -> Result<bool, KvError> {
    let kvs = view
        .range(
            &KeyRange::from_etcd(&c.key, &c.range_end),
            RangeOptions::default(),
        )?
        .kvs;
    if kvs.is_empty() {
        if c.target == CompareTarget::Value as i32 {
            return Ok(false);
        }
        return Ok(holds(c, &KeyValue::default()));
    }
    Ok(kvs.iter().all(|kv| holds(c, kv)))
}

fn holds(c: &Compare, kv: &KeyValue) -> bool {
    use std::cmp::Ordering;
    let number = |field: i64, expect: fn(&TargetUnion) -> Option<i64>| {
        field.cmp(&c.target_union.as_ref().and_then(expect).unwrap_or(0))
    };
    let ordering = match CompareTarget::try_from(c.target) {
        Ok(CompareTarget::Value) => {
            let operand: &[u8] = match &c.target_union {
                Some(TargetUnion::Value(v)) => v,
                _ => &[],
            };
            kv.value.as_slice().cmp(operand)
        }
        Ok(CompareTarget::Version) => number(kv.version, |u| match u {
            TargetUnion::Version(v) => Some(*v),
            _ => None,
        }),
        Ok(CompareTarget::Create) => number(kv.create_revision, |u| match u {
            TargetUnion::CreateRevision(v) => Some(*v),
            _ => None,
        }),
        Ok(CompareTarget::Mod) => number(kv.mod_revision, |u| match u {
            TargetUnion::ModRevision(v) => Some(*v),
            _ => None,
        }),
        Ok(CompareTarget::Lease) => number(kv.lease, |u| match u {
            TargetUnion::Lease(v) => Some(*v),
            _ => None,
        }),
        Err(_) => Ordering::Equal,
    };
    match CompareResult::try_from(c.result) {
        Ok(CompareResult::Equal) => ordering == Ordering::Equal,
        Ok(CompareResult::NotEqual) => ordering != Ordering::Equal,
        Ok(CompareResult::Greater) => ordering == Ordering::Greater,
        Ok(CompareResult::Less) => ordering == Ordering::Less,
        Err(_) => true,
    }
}

/// Puts on the path: `ignore_*` needs the key (in the state before the transaction, and not
/// deleted earlier on the path), then a lease must exist.
fn check_puts(
    view: &dyn KvWrite,
    r: &TxnRequest,
    path: &mut Path<'_>,
    deleted_before: &mut Vec<KeyRange>,
    lease_exists: LeaseExists<'_>,
) -> Result<(), KvError> {
    let succeeded = path.take();
    for op in branch(r, succeeded) {
        match &op.request {
            Some(Request::RequestPut(p)) => {
                if p.ignore_value || p.ignore_lease {
                    // etcd crashes when an earlier delete on the path removed the key; Cairn
                    // refuses the transaction before changing anything.
                    let gone = deleted_before.iter().any(|d| d.contains(&p.key));
                    if gone || current(view, &p.key)?.is_none() {
                        return Err(KvError::KeyNotFound);
                    }
                }
                if p.lease != 0 && !lease_exists(p.lease) {
                    return Err(KvError::LeaseNotFound);
                }
            }
            Some(Request::RequestDeleteRange(d)) => {
                deleted_before.push(KeyRange::from_etcd(&d.key, &d.range_end));
            }
            Some(Request::RequestTxn(nested)) => {
                check_puts(view, nested, path, deleted_before, lease_exists)?
            }
            Some(Request::RequestRange(_)) | None => {}
        }
    }
    Ok(())
}

/// Ranges on the path must ask for a revision that exists and is not compacted.
fn check_ranges(
    r: &TxnRequest,
    path: &mut Path<'_>,
    begin: i64,
    compacted: i64,
) -> Result<(), KvError> {
    let succeeded = path.take();
    for op in branch(r, succeeded) {
        match &op.request {
            Some(Request::RequestRange(range)) => {
                // Entries logged before validation refused these must still fail here,
                // before anything changes, not halfway through.
                crate::kv::validate::check_sort_target(range)?;
                if range.revision > begin {
                    return Err(KvError::FutureRevision);
                }
                if range.revision > 0 && range.revision < compacted {
                    return Err(KvError::Compacted);
                }
            }
            Some(Request::RequestTxn(nested)) => check_ranges(nested, path, begin, compacted)?,
            _ => {}
        }
    }
    Ok(())
}

fn run(
    view: &mut dyn KvWrite,
    r: &TxnRequest,
    path: &mut Path<'_>,
) -> Result<TxnResponse, KvError> {
    let succeeded = path.take();
    let mut responses = Vec::new();
    for op in branch(r, succeeded) {
        let response = match &op.request {
            Some(Request::RequestRange(range)) => {
                Response::ResponseRange(execute_range(&*view, range)?)
            }
            Some(Request::RequestPut(put)) => Response::ResponsePut(apply_put(view, put)?),
            Some(Request::RequestDeleteRange(del)) => {
                Response::ResponseDeleteRange(execute_delete(view, del)?)
            }
            Some(Request::RequestTxn(nested)) => {
                let mut inner = run(view, nested, path)?;
                // etcd sends a nested transaction's header present but empty.
                inner.header = Some(ResponseHeader::default());
                Response::ResponseTxn(inner)
            }
            None => return Err(KvError::KeyNotFound),
        };
        responses.push(ResponseOp {
            response: Some(response),
        });
    }
    Ok(TxnResponse {
        header: None,
        succeeded,
        responses,
    })
}
