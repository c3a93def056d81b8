//! Representative messages encode to exactly the bytes etcd's clients and servers exchange.
//!
//! The golden vectors were derived by hand from etcd's field numbers and protobuf's encoding
//! rules (tag = field_number << 3 | wire_type; varint, length-delimited, packed repeated), and
//! each is annotated field by field. A changed field number, type or oneof arm changes the bytes.

use cairn::proto::etcdserverpb::{
    compare, request_op, watch_request, Compare, DeleteRangeRequest, PutRequest, RangeRequest,
    RequestOp, TxnRequest, WatchCreateRequest, WatchRequest,
};
use prost::Message;

/// Parses "0a 01 61 ..." (whitespace and `|` separators ignored).
fn hex(text: &str) -> Vec<u8> {
    let digits: String = text.chars().filter(char::is_ascii_hexdigit).collect();
    assert_eq!(digits.len() % 2, 0, "odd number of hex digits");
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).expect("hex digit pair"))
        .collect()
}

/// Encoding gives the golden bytes, and decoding them gives the message back.
fn assert_wire<M: Message + Default + PartialEq + std::fmt::Debug>(message: &M, golden: &str) {
    let golden = hex(golden);
    assert_eq!(
        message.encode_to_vec(),
        golden,
        "encoding differs from the golden vector"
    );
    assert_eq!(
        &M::decode(golden.as_slice()).expect("golden decodes"),
        message
    );
}

#[test]
fn range_request_with_every_field_set() {
    let request = RangeRequest {
        key: b"a".to_vec(),
        range_end: b"b".to_vec(),
        limit: 10,
        revision: 5,
        sort_order: 2,  // DESCEND
        sort_target: 3, // MOD
        serializable: true,
        keys_only: true,
        count_only: true,
        min_mod_revision: 1,
        max_mod_revision: 300,
        min_create_revision: 2,
        max_create_revision: -1,
    };
    assert_wire(
        &request,
        "0a 01 61 | 12 01 62 | 18 0a | 20 05 | 28 02 | 30 03 | 38 01 | 40 01 | 48 01 | 50 01 \
         | 58 ac 02 | 60 02 | 68 ff ff ff ff ff ff ff ff ff 01",
    );
    // key=1 range_end=2 limit=3 revision=4 sort_order=5 sort_target=6 serializable=7
    // keys_only=8 count_only=9 min_mod=10 max_mod=11 (300 = varint ac 02) min_create=12
    // max_create=13 (int64 -1 is a ten-byte varint, not zigzag).
}

#[test]
fn sort_enums_keep_etcd_values() {
    use cairn::proto::etcdserverpb::range_request::{SortOrder, SortTarget};
    assert_eq!(
        [SortOrder::None, SortOrder::Ascend, SortOrder::Descend].map(|v| v as i32),
        [0, 1, 2]
    );
    assert_eq!(
        [
            SortTarget::Key,
            SortTarget::Version,
            SortTarget::Create,
            SortTarget::Mod,
            SortTarget::Value
        ]
        .map(|v| v as i32),
        [0, 1, 2, 3, 4]
    );
}

#[test]
fn txn_request_with_nested_ops() {
    let compare = Compare {
        result: compare::CompareResult::Greater as i32,
        target: compare::CompareTarget::Mod as i32,
        key: b"k".to_vec(),
        range_end: b"l".to_vec(),
        target_union: Some(compare::TargetUnion::ModRevision(7)),
    };
    let put = RequestOp {
        request: Some(request_op::Request::RequestPut(PutRequest {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            prev_kv: true,
            ..Default::default()
        })),
    };
    let range = RequestOp {
        request: Some(request_op::Request::RequestRange(RangeRequest {
            key: b"k".to_vec(),
            ..Default::default()
        })),
    };
    let nested_txn = RequestOp {
        request: Some(request_op::Request::RequestTxn(TxnRequest {
            success: vec![RequestOp {
                request: Some(request_op::Request::RequestDeleteRange(
                    DeleteRangeRequest {
                        key: b"k".to_vec(),
                        ..Default::default()
                    },
                )),
            }],
            ..Default::default()
        })),
    };
    let txn = TxnRequest {
        compare: vec![compare],
        success: vec![put],
        failure: vec![range, nested_txn],
    };
    assert_wire(
        &txn,
        // compare=1: Compare{result=1 GREATER, target=2 MOD, key=3 "k", mod_revision=6 7,
        //            range_end=64 "l" (tag 64<<3|2 = 514 = varint 82 04)}
        "0a 0d | 08 01 | 10 02 | 1a 01 6b | 30 07 | 82 04 01 6c \
         \
         | 12 0a | 12 08 | 0a 01 6b | 12 01 76 | 20 01 \
         \
         | 1a 05 | 0a 03 | 0a 01 6b \
         \
         | 1a 09 | 22 07 | 12 05 | 1a 03 | 0a 01 6b",
        // success=2: RequestOp{request_put=2: Put{key=1 "k", value=2 "v", prev_kv=4 true}}
        // failure=3: RequestOp{request_range=1: Range{key=1 "k"}}
        // failure=3: RequestOp{request_txn=4: Txn{success=2: RequestOp{request_delete_range=3:
        //            DeleteRange{key=1 "k"}}}}
    );
}

#[test]
fn compare_enums_keep_etcd_values() {
    use compare::{CompareResult, CompareTarget};
    assert_eq!(
        [
            CompareResult::Equal,
            CompareResult::Greater,
            CompareResult::Less,
            CompareResult::NotEqual
        ]
        .map(|v| v as i32),
        [0, 1, 2, 3]
    );
    assert_eq!(
        [
            CompareTarget::Version,
            CompareTarget::Create,
            CompareTarget::Mod,
            CompareTarget::Value,
            CompareTarget::Lease
        ]
        .map(|v| v as i32),
        [0, 1, 2, 3, 4]
    );
}

#[test]
fn watch_create_request_with_filters() {
    use cairn::proto::etcdserverpb::watch_create_request::FilterType;
    let request = WatchRequest {
        request_union: Some(watch_request::RequestUnion::CreateRequest(
            WatchCreateRequest {
                key: b"a".to_vec(),
                range_end: b"b".to_vec(),
                start_revision: 42,
                progress_notify: true,
                filters: vec![FilterType::Noput as i32, FilterType::Nodelete as i32],
                prev_kv: true,
                watch_id: 3,
                fragment: true,
            },
        )),
    };
    assert_wire(
        &request,
        // create_request=1, 20 bytes: key=1 "a", range_end=2 "b", start_revision=3 42,
        // progress_notify=4, filters=5 packed [NOPUT=0, NODELETE=1], prev_kv=6, watch_id=7 3,
        // fragment=8
        "0a 14 | 0a 01 61 | 12 01 62 | 18 2a | 20 01 | 2a 02 00 01 | 30 01 | 38 03 | 40 01",
    );
}

#[test]
fn watch_cancel_and_progress_arms() {
    use cairn::proto::etcdserverpb::{WatchCancelRequest, WatchProgressRequest};
    let cancel = WatchRequest {
        request_union: Some(watch_request::RequestUnion::CancelRequest(
            WatchCancelRequest { watch_id: 9 },
        )),
    };
    // cancel_request=2 {watch_id=1 9}
    assert_wire(&cancel, "12 02 08 09");
    let progress = WatchRequest {
        request_union: Some(watch_request::RequestUnion::ProgressRequest(
            WatchProgressRequest {},
        )),
    };
    // progress_request=3, empty message
    assert_wire(&progress, "1a 00");
}
