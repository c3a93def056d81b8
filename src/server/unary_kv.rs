//! The KV service's unary calls (Range, Put, DeleteRange, Txn, Compact) served straight off
//! an HTTP/2 stream: the request's gRPC frame decoded, the same gates and metrics as every
//! other call, the service called, and the answer written as headers, one DATA frame and
//! trailers.
//!
//! Why not through tonic's router like the other calls: under load a put spent more of the
//! server's CPU passing through the layers around it (routing, the gates' and metrics' boxed
//! futures, tonic's streaming codec and body adapters, hyper's task per stream) than in the
//! KV service itself; these five calls are nearly all of an etcd cluster's traffic.

use std::sync::Arc;
use std::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};
use prost::Message;
use tonic::codegen::http;
use tonic::{Code, Request, Status};

use super::learner_gate::LearnerGate;
use super::member::RaftMember;
use super::observability::Observability;
use super::request_gate::Gate;
use super::require_leader::RequireLeader;
use crate::api::kv::KvService;
use crate::metrics::GrpcMethodSeries;
use crate::proto::etcdserverpb::kv_server::Kv;
use crate::proto::etcdserverpb::{
    request_op, CompactionRequest, DeleteRangeRequest, PutRequest, RangeRequest, TxnRequest,
};

/// One of the KV service's unary methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvMethod {
    Range,
    Put,
    DeleteRange,
    Txn,
    Compact,
}

impl KvMethod {
    pub const ALL: [KvMethod; 5] = [
        KvMethod::Range,
        KvMethod::Put,
        KvMethod::DeleteRange,
        KvMethod::Txn,
        KvMethod::Compact,
    ];

    pub fn path(self) -> &'static str {
        match self {
            KvMethod::Range => "/etcdserverpb.KV/Range",
            KvMethod::Put => "/etcdserverpb.KV/Put",
            KvMethod::DeleteRange => "/etcdserverpb.KV/DeleteRange",
            KvMethod::Txn => "/etcdserverpb.KV/Txn",
            KvMethod::Compact => "/etcdserverpb.KV/Compact",
        }
    }

    pub fn from_path(path: &str) -> Option<KvMethod> {
        KvMethod::ALL.into_iter().find(|m| m.path() == path)
    }
}

/// What serving a KV call needs, shared by every client connection.
pub struct UnaryKv {
    kv: KvService<RaftMember>,
    learner: LearnerGate,
    require_leader: RequireLeader,
    observability: Arc<Observability>,
    /// By [`KvMethod`] order.
    series: Vec<Option<GrpcMethodSeries>>,
    /// Largest request message accepted, as tonic's `max_decoding_message_size`.
    max_message_bytes: usize,
}

/// A finished call: the message to send, or the status of a trailers-only answer.
pub type Answer = Result<Bytes, Status>;

impl UnaryKv {
    pub fn new(
        member: &Arc<RaftMember>,
        observability: &Arc<Observability>,
        max_message_bytes: usize,
    ) -> Self {
        UnaryKv {
            kv: KvService::new(Arc::clone(member)),
            learner: LearnerGate {
                learner: member.learner_flag(),
            },
            require_leader: RequireLeader {
                leader: member.leader_cell(),
            },
            observability: Arc::clone(observability),
            series: KvMethod::ALL
                .iter()
                .map(|m| observability.metrics.grpc_method_series(m.path()))
                .collect(),
            max_message_bytes,
        }
    }

    /// Refuses a call before its body is read, as the layers around the other calls do: no
    /// leader while the client asked for one, a learner, or a compressed body.
    pub fn refusal(&self, method: KvMethod, headers: &http::HeaderMap) -> Option<Status> {
        let path = method.path();
        // In the order of the layers around the other calls: leader first.
        self.require_leader
            .refusal(path, headers)
            .or_else(|| self.learner.refusal(path, headers))
            .or_else(|| unsupported_encoding(headers))
    }

    /// Starts the call's metrics, as the metrics layer around the other calls does: only a
    /// gRPC request is counted.
    pub fn metered(&self, method: KvMethod, headers: &http::HeaderMap) -> Metered<'_> {
        let grpc = headers
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
        let series = self.series[method as usize].as_ref().filter(|_| grpc);
        if let Some(series) = series {
            series.record_started();
        }
        Metered {
            series,
            metrics: &self.observability.metrics,
            started: Instant::now(),
        }
    }

    /// Serves one call whose request body (`body`, gRPC-framed) has been read. A call that
    /// reads or deletes a range of keys (work without a bound) runs on a task of its own, so
    /// the caller's other calls are not held up behind it.
    pub async fn call(self: &Arc<Self>, method: KvMethod, body: Bytes) -> Answer {
        let call = self.decode(method, body)?;
        if call.spans_key_ranges() {
            let kv = Arc::clone(self);
            let mut task = AbortOnDrop(tokio::spawn(async move { kv.run(call).await }));
            return match (&mut task.0).await {
                Ok(answer) => answer,
                Err(err) => Err(Status::internal(format!("etcdserver: {err}"))),
            };
        }
        self.run(call).await
    }

    fn decode(&self, method: KvMethod, body: Bytes) -> Result<KvCall, Status> {
        let message = unframe(body, self.max_message_bytes)?;
        Ok(match method {
            KvMethod::Range => KvCall::Range(decoded(message)?),
            KvMethod::Put => KvCall::Put(decoded(message)?),
            KvMethod::DeleteRange => KvCall::DeleteRange(decoded(message)?),
            KvMethod::Txn => KvCall::Txn(decoded(message)?),
            KvMethod::Compact => KvCall::Compact(decoded(message)?),
        })
    }

    pub fn max_message_bytes(&self) -> usize {
        self.max_message_bytes
    }

    async fn run(&self, call: KvCall) -> Answer {
        let kv = &self.kv;
        match call {
            KvCall::Range(r) => reply(kv.range(Request::new(r)).await),
            KvCall::Put(r) => reply(kv.put(Request::new(r)).await),
            KvCall::DeleteRange(r) => reply(kv.delete_range(Request::new(r)).await),
            KvCall::Txn(r) => reply(kv.txn(Request::new(r)).await),
            KvCall::Compact(r) => reply(kv.compact(Request::new(r)).await),
        }
    }
}

/// A call being counted in the gRPC metrics.
pub struct Metered<'a> {
    series: Option<&'a GrpcMethodSeries>,
    metrics: &'a crate::metrics::ServerMetrics,
    started: Instant,
}

impl Metered<'_> {
    pub fn finish(self, answer: &Answer) {
        if let Some(series) = self.series {
            let code = answer.as_ref().map_or_else(Status::code, |_| Code::Ok);
            series.record(self.metrics, code, self.started.elapsed());
        }
    }
}

/// A spawned call that stops when the call waiting for it is dropped (its client reset the
/// stream, its deadline passed, the connection went away).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Identity is the only encoding served; another is refused before the body is read, in
/// tonic's words and with its hint of what is accepted.
fn unsupported_encoding(headers: &http::HeaderMap) -> Option<Status> {
    let encoding = headers.get("grpc-encoding")?;
    if encoding.as_bytes() == b"identity" {
        return None;
    }
    let named = String::from_utf8_lossy(encoding.as_bytes());
    let mut status = Status::unimplemented(format!(
        "Content is compressed with `{named}` which isn't supported"
    ));
    status.metadata_mut().insert(
        "grpc-accept-encoding",
        tonic::metadata::MetadataValue::from_static("identity"),
    );
    Some(status)
}

/// A decoded KV request.
enum KvCall {
    Range(RangeRequest),
    Put(PutRequest),
    DeleteRange(DeleteRangeRequest),
    Txn(TxnRequest),
    Compact(CompactionRequest),
}

impl KvCall {
    /// Whether it names a range of keys: reading one (or encoding the answer of deleting one)
    /// is work without a bound.
    fn spans_key_ranges(&self) -> bool {
        match self {
            KvCall::Range(r) => !r.range_end.is_empty(),
            KvCall::DeleteRange(r) => !r.range_end.is_empty(),
            KvCall::Txn(t) => txn_spans_key_ranges(t),
            KvCall::Put(_) | KvCall::Compact(_) => false,
        }
    }
}

fn txn_spans_key_ranges(txn: &TxnRequest) -> bool {
    txn.compare.iter().any(|c| !c.range_end.is_empty())
        || txn
            .success
            .iter()
            .chain(&txn.failure)
            .any(|op| match &op.request {
                Some(request_op::Request::RequestRange(r)) => !r.range_end.is_empty(),
                Some(request_op::Request::RequestDeleteRange(r)) => !r.range_end.is_empty(),
                Some(request_op::Request::RequestTxn(nested)) => txn_spans_key_ranges(nested),
                Some(request_op::Request::RequestPut(_)) | None => false,
            })
}

fn decoded<T: Message + Default>(message: Bytes) -> Result<T, Status> {
    T::decode(message).map_err(|err| Status::internal(err.to_string()))
}

fn reply<T: Message>(outcome: Result<tonic::Response<T>, Status>) -> Answer {
    let message = outcome?.into_inner();
    let len = message.encoded_len();
    let mut framed = BytesMut::with_capacity(5 + len);
    framed.put_u8(0);
    framed.put_u32(
        u32::try_from(len)
            .map_err(|_| Status::resource_exhausted("etcdserver: response too large to send"))?,
    );
    message
        .encode(&mut framed)
        .map_err(|err| Status::internal(err.to_string()))?;
    Ok(framed.freeze())
}

/// The message inside a unary request's body: exactly one uncompressed gRPC frame.
/// Refusals are worded as tonic's (what the same request got before this path existed).
fn unframe(body: Bytes, max_message_bytes: usize) -> Result<Bytes, Status> {
    if body.len() < 5 {
        return Err(Status::internal(if body.is_empty() {
            "Missing request message."
        } else {
            "Unexpected EOF decoding stream."
        }));
    }
    let compressed = body[0];
    let len = declared_len(&body).unwrap_or_default();
    match compressed {
        0 => {}
        // Identity is the only encoding served, so a compressed message has no encoding.
        1 => {
            return Err(Status::internal(
                "protocol error: received message with compressed-flag but no grpc-encoding was specified",
            ))
        }
        flag => {
            return Err(Status::internal(format!(
                "protocol error: received message with invalid compression flag: {flag} (valid flags are 0 and 1), while sending request"
            )))
        }
    }
    if len > max_message_bytes {
        return Err(message_too_large(len, max_message_bytes));
    }
    if body.len() < 5 + len {
        return Err(Status::internal("Unexpected EOF decoding stream."));
    }
    // Any further message is ignored, as tonic ignored it (the body reader keeps none).
    Ok(body.slice(5..5 + len))
}

/// The message length a gRPC frame's 5-byte prefix declares, once `read` holds the prefix.
pub fn declared_len(read: &[u8]) -> Option<usize> {
    let prefix: [u8; 4] = read.get(1..5)?.try_into().ok()?;
    usize::try_from(u32::from_be_bytes(prefix)).ok()
}

/// A request message over the size limit, refused in tonic's words.
pub fn message_too_large(len: usize, max_message_bytes: usize) -> Status {
    Status::out_of_range(format!(
        "Error, decoded message length too large: found {len} bytes, the limit is: {max_message_bytes} bytes"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::etcdserverpb::{Compare, RequestOp};

    fn framed(flag: u8, message: &[u8]) -> Bytes {
        let mut out = vec![flag];
        out.extend_from_slice(&(message.len() as u32).to_be_bytes());
        out.extend_from_slice(message);
        Bytes::from(out)
    }

    #[test]
    fn a_single_frame_gives_its_message() {
        let message = unframe(framed(0, b"hello"), 100).unwrap();
        assert_eq!(&message[..], b"hello");
        assert!(unframe(framed(0, b""), 100).unwrap().is_empty());
    }

    #[test]
    fn malformed_frames_are_refused_as_tonic_refused_them() {
        let missing = unframe(Bytes::new(), 100).unwrap_err();
        assert_eq!(missing.code(), Code::Internal);
        assert_eq!(missing.message(), "Missing request message.");
        let short = framed(0, b"hello").slice(..7);
        assert_eq!(unframe(short, 100).unwrap_err().code(), Code::Internal);
        let compressed = unframe(framed(1, b"x"), 100).unwrap_err();
        assert_eq!(compressed.code(), Code::Internal);
        assert!(compressed.message().contains("compressed-flag"));
        assert_eq!(
            unframe(framed(7, b"x"), 100).unwrap_err().code(),
            Code::Internal
        );
    }

    #[test]
    fn messages_after_the_first_are_ignored() {
        let mut two = framed(0, b"a").to_vec();
        two.extend_from_slice(&framed(0, b"b"));
        assert_eq!(&unframe(Bytes::from(two), 100).unwrap()[..], b"a");
    }

    #[test]
    fn only_identity_encoding_is_accepted() {
        let mut headers = http::HeaderMap::new();
        assert!(unsupported_encoding(&headers).is_none());
        headers.insert("grpc-encoding", http::HeaderValue::from_static("identity"));
        assert!(unsupported_encoding(&headers).is_none());
        headers.insert("grpc-encoding", http::HeaderValue::from_static("gzip"));
        let refused = unsupported_encoding(&headers).unwrap();
        assert_eq!(refused.code(), Code::Unimplemented);
        assert_eq!(
            refused.message(),
            "Content is compressed with `gzip` which isn't supported"
        );
        assert_eq!(
            refused.metadata().get("grpc-accept-encoding").unwrap(),
            "identity"
        );
    }

    #[test]
    fn a_message_over_the_limit_is_out_of_range() {
        let refused = unframe(framed(0, &[7; 101]), 100).unwrap_err();
        assert_eq!(refused.code(), Code::OutOfRange);
        assert_eq!(
            refused.message(),
            "Error, decoded message length too large: found 101 bytes, the limit is: 100 bytes"
        );
        assert_eq!(declared_len(&framed(0, &[7; 101])[..5]), Some(101));
        assert_eq!(declared_len(&[0, 0, 0]), None);
    }

    #[test]
    fn only_calls_over_key_ranges_leave_the_connection() {
        let single = RangeRequest {
            key: b"a".to_vec(),
            ..Default::default()
        };
        let span = RangeRequest {
            key: b"a".to_vec(),
            range_end: b"b".to_vec(),
            ..Default::default()
        };
        assert!(!KvCall::Range(single.clone()).spans_key_ranges());
        assert!(KvCall::Range(span.clone()).spans_key_ranges());
        assert!(!KvCall::Put(PutRequest::default()).spans_key_ranges());
        let delete = |range_end: &[u8]| DeleteRangeRequest {
            key: b"a".to_vec(),
            range_end: range_end.to_vec(),
            ..Default::default()
        };
        assert!(!KvCall::DeleteRange(delete(b"")).spans_key_ranges());
        assert!(KvCall::DeleteRange(delete(b"\0")).spans_key_ranges());
        let compared = TxnRequest {
            compare: vec![Compare {
                key: b"a".to_vec(),
                range_end: b"z".to_vec(),
                ..Default::default()
            }],
            ..Default::default()
        };
        assert!(KvCall::Txn(compared).spans_key_ranges());
        let op = |r: RangeRequest| RequestOp {
            request: Some(request_op::Request::RequestRange(r)),
        };
        let nested = TxnRequest {
            failure: vec![op(span)],
            ..Default::default()
        };
        let txn = |ops: Vec<RequestOp>| TxnRequest {
            success: ops,
            ..Default::default()
        };
        assert!(!KvCall::Txn(txn(vec![op(single)])).spans_key_ranges());
        assert!(KvCall::Txn(txn(vec![RequestOp {
            request: Some(request_op::Request::RequestTxn(nested)),
        }]))
        .spans_key_ranges());
    }

    #[test]
    fn every_method_has_its_etcd_path() {
        for method in KvMethod::ALL {
            assert_eq!(KvMethod::from_path(method.path()), Some(method));
            assert!(crate::server::observability::SERVED_GRPC_PATHS.contains(&method.path()));
        }
        assert_eq!(KvMethod::from_path("/etcdserverpb.KV/Watch"), None);
    }
}
