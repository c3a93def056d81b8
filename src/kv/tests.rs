//! Scenarios from etcd 3.5.1's observed behaviour (docs/etcd-kv-semantics.md).

use super::*;
use crate::mvcc::{MemBackend, MvccStore};
use crate::proto::etcdserverpb::{
    compare, range_request::SortOrder, range_request::SortTarget, request_op::Request,
    response_op::Response, Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp,
    TxnRequest,
};

fn no_leases(_: i64) -> bool {
    false
}

fn store() -> MvccStore<MemBackend> {
    MvccStore::open(MemBackend::default()).unwrap()
}

fn put_req(key: &str, value: &str) -> PutRequest {
    PutRequest {
        key: key.into(),
        value: value.into(),
        ..Default::default()
    }
}

fn put(store: &MvccStore<MemBackend>, key: &str, value: &str) {
    let mut batch = store.write().unwrap();
    execute_put(&mut batch, &put_req(key, value), &no_leases).unwrap();
    batch.commit().unwrap();
}

fn range(
    store: &MvccStore<MemBackend>,
    r: RangeRequest,
) -> crate::proto::etcdserverpb::RangeResponse {
    execute_range(&PinnedRead::new(store), &r).unwrap()
}

fn keys(kvs: &[crate::proto::mvccpb::KeyValue]) -> Vec<String> {
    kvs.iter()
        .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
        .collect()
}

fn op(request: Request) -> RequestOp {
    RequestOp {
        request: Some(request),
    }
}

#[test]
fn count_ignores_limit_and_filters_but_more_follows_them() {
    let s = store();
    for k in ["a", "b", "c", "d", "e"] {
        put(&s, k, "v"); // revisions 2..=6
    }
    let all = |limit, min_mod| RangeRequest {
        key: b"a".to_vec(),
        range_end: b"\0".to_vec(),
        limit,
        min_mod_revision: min_mod,
        ..Default::default()
    };
    let r = range(&s, all(2, 0));
    assert_eq!((r.count, r.kvs.len(), r.more), (5, 2, true));
    let r = range(&s, all(3, 4)); // keeps c, d, e
    assert_eq!(
        (r.count, keys(&r.kvs), r.more),
        (5, vec!["c".into(), "d".into(), "e".into()], false)
    );
    let r = range(
        &s,
        RangeRequest {
            count_only: true,
            limit: 1,
            ..all(0, 4)
        },
    );
    assert_eq!((r.count, r.kvs.len(), r.more), (5, 0, false));
}

#[test]
fn sorting_without_order_sorts_only_the_fetched_keys() {
    let s = store();
    for (k, v) in [
        ("a", "1"),
        ("b", "1"),
        ("c", "1"),
        ("d", "1"),
        ("e", "1"),
        ("a", "2"),
        ("b", "2"),
    ] {
        put(&s, k, v); // a and b at version 2, the rest at version 1
    }
    let by_version = |order: SortOrder| RangeRequest {
        key: b"a".to_vec(),
        range_end: b"\0".to_vec(),
        limit: 2,
        sort_target: SortTarget::Version as i32,
        sort_order: order as i32,
        ..Default::default()
    };
    let r = range(&s, by_version(SortOrder::None));
    assert_eq!((keys(&r.kvs), r.more), (vec!["c".into(), "a".into()], true));
    let r = range(&s, by_version(SortOrder::Ascend));
    assert_eq!(keys(&r.kvs), ["c", "d"]);
    let r = range(
        &s,
        RangeRequest {
            keys_only: true,
            ..by_version(SortOrder::Descend)
        },
    );
    assert_eq!(keys(&r.kvs), ["a", "b"]);
    assert!(r
        .kvs
        .iter()
        .all(|kv| kv.value.is_empty() && kv.version == 2));
}

#[test]
fn unknown_sort_target_is_refused_not_a_crash() {
    let s = store();
    put(&s, "a", "1");
    let r = RangeRequest {
        key: b"a".to_vec(),
        sort_target: 9,
        ..Default::default()
    };
    assert!(matches!(
        execute_range(&PinnedRead::new(&s), &r),
        Err(KvError::InvalidSortTarget(9))
    ));
}

#[test]
fn standalone_put_checks_the_lease_before_the_key() {
    let s = store();
    let mut batch = s.write().unwrap();
    let r = PutRequest {
        key: b"k".to_vec(),
        ignore_value: true,
        lease: 7,
        ..Default::default()
    };
    assert!(matches!(
        execute_put(&mut batch, &r, &no_leases),
        Err(KvError::LeaseNotFound)
    ));
    let r = PutRequest { lease: 0, ..r };
    assert!(matches!(
        execute_put(&mut batch, &r, &no_leases),
        Err(KvError::KeyNotFound)
    ));
}

#[test]
fn ignore_value_and_lease_keep_what_the_key_had() {
    let s = store();
    let mut batch = s.write().unwrap();
    let with_lease = PutRequest {
        lease: 5,
        ..put_req("k", "v")
    };
    execute_put(&mut batch, &with_lease, &|id| id == 5).unwrap();
    batch.end_txn();
    let keep_both = PutRequest {
        key: b"k".to_vec(),
        ignore_value: true,
        ignore_lease: true,
        prev_kv: true,
        ..Default::default()
    };
    let response = execute_put(&mut batch, &keep_both, &no_leases).unwrap();
    assert_eq!(response.prev_kv.as_ref().map(|kv| kv.lease), Some(5));
    batch.commit().unwrap();
    let kv = &range(
        &s,
        RangeRequest {
            key: b"k".to_vec(),
            ..Default::default()
        },
    )
    .kvs[0];
    assert_eq!(
        (kv.value.as_slice(), kv.lease, kv.version),
        (&b"v"[..], 5, 2)
    );
}

fn version_is(key: &str, version: i64) -> Compare {
    Compare {
        result: compare::CompareResult::Equal as i32,
        target: compare::CompareTarget::Version as i32,
        key: key.into(),
        target_union: Some(compare::TargetUnion::Version(version)),
        ..Default::default()
    }
}

#[test]
fn nested_compares_see_the_state_before_the_transaction() {
    let s = store();
    put(&s, "x", "1"); // revision 2
    let nested = TxnRequest {
        compare: vec![version_is("c", 0)],
        success: vec![op(Request::RequestRange(RangeRequest {
            key: b"c".to_vec(),
            ..Default::default()
        }))],
        ..Default::default()
    };
    let txn = TxnRequest {
        success: vec![
            op(Request::RequestRange(RangeRequest {
                key: b"x".to_vec(),
                ..Default::default()
            })),
            op(Request::RequestPut(put_req("c", "3"))),
            op(Request::RequestTxn(nested)),
            op(Request::RequestDeleteRange(DeleteRangeRequest {
                key: b"none".to_vec(),
                ..Default::default()
            })),
        ],
        ..Default::default()
    };
    let mut batch = s.write().unwrap();
    let response = execute_txn(&mut batch, &txn, &no_leases).unwrap();
    assert!(response.succeeded);
    assert_eq!(response.header.as_ref().unwrap().revision, 3);
    let revisions: Vec<i64> = response
        .responses
        .iter()
        .map(|r| match r.response.as_ref().unwrap() {
            Response::ResponseRange(r) => r.header.as_ref().unwrap().revision,
            Response::ResponsePut(r) => r.header.as_ref().unwrap().revision,
            Response::ResponseDeleteRange(r) => r.header.as_ref().unwrap().revision,
            Response::ResponseTxn(r) => r.header.as_ref().unwrap().revision,
        })
        .collect();
    // Range before any change: 2; put: 3; nested txn header: empty (0); delete after a change: 3.
    assert_eq!(revisions, [2, 3, 0, 3]);
    let Some(Response::ResponseTxn(inner)) = &response.responses[2].response else {
        panic!()
    };
    assert!(inner.succeeded, "compare saw c before the put");
    let Some(Response::ResponseRange(seen)) = &inner.responses[0].response else {
        panic!()
    };
    assert_eq!(seen.kvs.len(), 1, "the nested range sees the put");
}

#[test]
fn value_compare_on_a_missing_key_is_always_false() {
    let s = store();
    for result in [
        compare::CompareResult::Equal,
        compare::CompareResult::NotEqual,
    ] {
        let txn = TxnRequest {
            compare: vec![Compare {
                result: result as i32,
                target: compare::CompareTarget::Value as i32,
                key: b"missing".to_vec(),
                target_union: Some(compare::TargetUnion::Value(b"x".to_vec())),
                ..Default::default()
            }],
            ..Default::default()
        };
        let mut batch = s.write().unwrap();
        assert!(!execute_txn(&mut batch, &txn, &no_leases).unwrap().succeeded);
    }
    let mut batch = s.write().unwrap();
    let txn = TxnRequest {
        compare: vec![version_is("missing", 0)],
        ..Default::default()
    };
    assert!(execute_txn(&mut batch, &txn, &no_leases).unwrap().succeeded);
}

#[test]
fn deleting_nothing_makes_no_revision() {
    let s = store();
    put(&s, "a", "1");
    let mut batch = s.write().unwrap();
    let txn = TxnRequest {
        success: vec![op(Request::RequestDeleteRange(DeleteRangeRequest {
            key: b"zz".to_vec(),
            ..Default::default()
        }))],
        ..Default::default()
    };
    let response = execute_txn(&mut batch, &txn, &no_leases).unwrap();
    assert_eq!(response.header.unwrap().revision, 2);
    assert_eq!(batch.end_txn(), 2);
}

#[test]
fn failed_checks_change_nothing() {
    let s = store();
    put(&s, "a", "1");
    let future_range = TxnRequest {
        success: vec![
            op(Request::RequestPut(put_req("b", "1"))),
            op(Request::RequestRange(RangeRequest {
                key: b"a".to_vec(),
                revision: 3,
                ..Default::default()
            })),
        ],
        ..Default::default()
    };
    let mut batch = s.write().unwrap();
    assert!(matches!(
        execute_txn(&mut batch, &future_range, &no_leases),
        Err(KvError::FutureRevision)
    ));
    assert_eq!(batch.end_txn(), 2, "nothing was written");
    // A put that keeps the value of a key an earlier delete on the path removed.
    let deleted_then_kept = TxnRequest {
        success: vec![
            op(Request::RequestDeleteRange(DeleteRangeRequest {
                key: b"a".to_vec(),
                range_end: b"\0".to_vec(),
                ..Default::default()
            })),
            op(Request::RequestPut(PutRequest {
                key: b"a".to_vec(),
                ignore_value: true,
                ..Default::default()
            })),
        ],
        ..Default::default()
    };
    assert!(matches!(
        execute_txn(&mut batch, &deleted_then_kept, &no_leases),
        Err(KvError::KeyNotFound)
    ));
    assert_eq!(batch.end_txn(), 2);
}
