//! Requests that crash or confuse etcd get a clear error from Cairn, and the member keeps
//! serving (and restarts) afterwards.

mod common;

use cairn::proto::etcdserverpb::{
    kv_client::KvClient, request_op, PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use common::{etcd35_dir, run, EtcdServer};

#[test]
fn an_unknown_sort_target_is_refused_and_writes_continue() {
    let bin = etcd35_dir();
    let etcdctl = bin.join("etcdctl");
    let mut cairn = EtcdServer::start_cairn(&bin);
    let endpoint = format!("http://{}", cairn.endpoint());
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let mut client = KvClient::connect(endpoint).await.expect("connect");
        let bad_range = RangeRequest {
            key: b"a".to_vec(),
            sort_target: 7,
            ..Default::default()
        };
        let status = client.range(bad_range.clone()).await.expect_err("refused");
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        // A write transaction holding it must not reach the log (etcd 3.5.1 crash-loops here).
        let txn = TxnRequest {
            success: vec![
                RequestOp {
                    request: Some(request_op::Request::RequestPut(PutRequest {
                        key: b"a".to_vec(),
                        value: b"1".to_vec(),
                        ..Default::default()
                    })),
                },
                RequestOp {
                    request: Some(request_op::Request::RequestRange(bad_range)),
                },
            ],
            ..Default::default()
        };
        let status = client.txn(txn).await.expect_err("refused");
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert_eq!(status.message(), "etcdserver: invalid sort target 7");
    });
    let ep = cairn.endpoint();
    assert_eq!(
        run(&etcdctl, &["--endpoints", &ep, "put", "b", "2"], "").code,
        0
    );
    cairn.kill_and_restart(&bin);
    let get = run(
        &etcdctl,
        &[
            "--endpoints",
            &ep,
            "get",
            "a",
            "--count-only",
            "-w",
            "fields",
        ],
        "",
    );
    assert!(
        get.stdout.contains("\"Count\" : 0"),
        "the refused txn wrote nothing: {}",
        get.stdout
    );
    assert_eq!(
        run(&etcdctl, &["--endpoints", &ep, "put", "c", "3"], "").code,
        0
    );
}
