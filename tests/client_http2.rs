//! The client port's HTTP/2 serving, seen from the wire: many calls sharing one connection,
//! calls the client abandons, requests refused before their body arrives, compressed
//! requests, and plain HTTP over HTTP/2 beside gRPC.

mod common;

use std::time::Duration;

use bytes::Bytes;
use cairn::proto::etcdserverpb::{kv_client::KvClient, PutRequest, RangeRequest};
use common::{etcd35_dir, EtcdServer};
use prost::Message;

/// An HTTP/2 connection of our own to `port` (its driver runs on the caller's runtime).
async fn raw_connection(port: u16) -> h2::client::SendRequest<Bytes> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let (send, connection) = h2::client::handshake(tcp).await.expect("handshake");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    send
}

fn grpc_request(path: &str, extra: &[(&str, &str)]) -> http::Request<()> {
    let mut request = http::Request::post(format!("http://cairn{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (name, value) in extra {
        request = request.header(*name, *value);
    }
    request.body(()).expect("request")
}

fn framed(message: &impl Message) -> Bytes {
    let body = message.encode_to_vec();
    let mut out = vec![0];
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    Bytes::from(out)
}

/// The grpc-status of an answer: from its headers (trailers-only) or its trailers.
async fn grpc_status(response: h2::client::ResponseFuture) -> (String, http::HeaderMap) {
    let response = tokio::time::timeout(Duration::from_secs(10), response)
        .await
        .expect("answered in time")
        .expect("response");
    let headers = response.headers().clone();
    if let Some(status) = headers.get("grpc-status") {
        return (status.to_str().unwrap().to_string(), headers);
    }
    let mut body = response.into_body();
    while let Some(data) = body.data().await {
        let data = data.expect("data");
        let _ = body.flow_control().release_capacity(data.len());
    }
    let trailers = body.trailers().await.expect("trailers").expect("some");
    let status = trailers["grpc-status"].to_str().unwrap().to_string();
    (status, trailers)
}

fn put(key: &str) -> PutRequest {
    PutRequest {
        key: key.as_bytes().to_vec(),
        value: b"v".to_vec(),
        ..Default::default()
    }
}

#[test]
fn hundreds_of_calls_share_one_connection() {
    let bin = etcd35_dir();
    let cairn = EtcdServer::start_cairn(&bin);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let channel =
            tonic::transport::Endpoint::from_shared(format!("http://{}", cairn.endpoint()))
                .unwrap()
                .connect()
                .await
                .expect("connect");
        // More at once than hyper's default stream limit (200), as etcd allows.
        let mut calls = Vec::new();
        for i in 0..300 {
            let mut kv = KvClient::new(channel.clone());
            calls.push(tokio::spawn(async move {
                kv.put(put(&format!("k{i:03}")))
                    .await
                    .map(|r| r.into_inner())
            }));
        }
        let mut revisions = Vec::new();
        for call in calls {
            let header = call.await.unwrap().expect("put answered").header.unwrap();
            revisions.push(header.revision);
        }
        revisions.sort_unstable();
        revisions.dedup();
        assert_eq!(revisions.len(), 300, "every put its own revision");
        // A read over the whole range (served on a task of its own) and single-key reads on
        // the same connection.
        let mut kv = KvClient::new(channel.clone());
        let all = kv
            .range(RangeRequest {
                key: b"k".to_vec(),
                range_end: b"l".to_vec(),
                ..Default::default()
            })
            .await
            .expect("range")
            .into_inner();
        assert_eq!(all.count, 300);
        let one = kv
            .range(RangeRequest {
                key: b"k150".to_vec(),
                serializable: true,
                ..Default::default()
            })
            .await
            .expect("get")
            .into_inner();
        assert_eq!(one.kvs.len(), 1);
    });
}

#[test]
fn abandoned_and_refused_calls_leave_the_connection_serving() {
    let bin = etcd35_dir();
    let cairn = EtcdServer::start_cairn(&bin);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let mut h2 = raw_connection(cairn.client_port).await;

        // A call whose body never ends, then reset by the client.
        let (response, mut body) = h2
            .send_request(grpc_request("/etcdserverpb.KV/Put", &[]), false)
            .expect("send");
        body.send_data(framed(&put("half")).slice(..3), false)
            .expect("part of a body");
        body.send_reset(h2::Reason::CANCEL);
        assert!(response.await.is_err(), "a reset call has no answer");

        // A message declared larger than the limit: refused before the rest is sent.
        let (response, mut body) = h2
            .send_request(grpc_request("/etcdserverpb.KV/Put", &[]), false)
            .expect("send");
        let mut prefix = vec![0];
        prefix.extend_from_slice(&(64u32 << 20).to_be_bytes());
        body.send_data(Bytes::from(prefix), false).expect("prefix");
        let (status, headers) = grpc_status(response).await;
        assert_eq!(status, "11", "OUT_OF_RANGE: {headers:?}");
        let message = headers["grpc-message"].to_str().unwrap();
        // Percent-encoded on the wire, as gRPC spells grpc-message.
        assert!(
            message.contains("decoded%20message%20length%20too%20large"),
            "{message}"
        );

        // A compressed request: refused, naming the encodings served.
        let (response, mut body) = h2
            .send_request(
                grpc_request("/etcdserverpb.KV/Put", &[("grpc-encoding", "gzip")]),
                false,
            )
            .expect("send");
        body.send_data(framed(&put("zipped")), true).expect("body");
        let (status, headers) = grpc_status(response).await;
        assert_eq!(status, "12", "UNIMPLEMENTED: {headers:?}");
        assert_eq!(headers["grpc-accept-encoding"], "identity");

        // A malformed message: INTERNAL, as tonic answered it.
        let (response, mut body) = h2
            .send_request(grpc_request("/etcdserverpb.KV/Range", &[]), false)
            .expect("send");
        body.send_data(Bytes::from_static(&[0, 0, 0, 0, 2, 0xff, 0xff]), true)
            .expect("body");
        assert_eq!(grpc_status(response).await.0, "13");

        // The same connection still serves: a put, and plain HTTP beside it.
        let (response, mut body) = h2
            .send_request(grpc_request("/etcdserverpb.KV/Put", &[]), false)
            .expect("send");
        body.send_data(framed(&put("after")), true).expect("body");
        assert_eq!(grpc_status(response).await.0, "0");
        let health = http::Request::get("http://cairn/health").body(()).unwrap();
        let (response, _) = h2.send_request(health, true).expect("send");
        let response = response.await.expect("health answer");
        assert_eq!(response.status(), 200);
        let mut body = response.into_body();
        let mut text = Vec::new();
        while let Some(data) = body.data().await {
            text.extend_from_slice(&data.expect("data"));
        }
        assert_eq!(
            String::from_utf8_lossy(&text),
            r#"{"health":"true","reason":""}"#
        );

        // An unknown method: tonic's UNIMPLEMENTED.
        let (response, mut body) = h2
            .send_request(grpc_request("/etcdserverpb.KV/Nothing", &[]), false)
            .expect("send");
        body.send_data(framed(&put("x")), true).expect("body");
        assert_eq!(grpc_status(response).await.0, "12");
    });
    // Only the last put applied: the abandoned and refused ones changed nothing.
    let run = common::run(
        &bin.join("etcdctl"),
        &[
            "--endpoints",
            &cairn.endpoint(),
            "get",
            "",
            "--prefix",
            "--keys-only",
        ],
        "",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let keys: Vec<&str> = run.stdout.split_whitespace().collect();
    assert_eq!(keys, ["after"], "{}", run.stdout);
}
