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
    request_op, CompactionRequest, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp,
    TxnRequest,
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

    /// Serves one call whose request body (`body`, gRPC-framed) has been read in full. A
    /// read over a range of keys (the one call whose own work has no bound) runs on a task of
    /// its own, so the caller's other calls are not held up behind it.
    pub async fn call(
        self: &Arc<Self>,
        method: KvMethod,
        headers: &http::HeaderMap,
        body: Bytes,
    ) -> Answer {
        let series = self.series[method as usize].as_ref();
        if let Some(series) = series {
            series.record_started();
        }
        let started = Instant::now();
        let answer = match self.prepare(method, headers, body) {
            Err(refused) => Err(refused),
            Ok(call) if call.reads_key_ranges() => {
                let kv = Arc::clone(self);
                tokio::spawn(async move { kv.run(call).await })
                    .await
                    .unwrap_or_else(|err| Err(Status::internal(format!("etcdserver: {err}"))))
            }
            Ok(call) => self.run(call).await,
        };
        if let Some(series) = series {
            let code = answer.as_ref().map_or_else(Status::code, |_| Code::Ok);
            series.record(&self.observability.metrics, code, started.elapsed());
        }
        answer
    }

    fn prepare(
        &self,
        method: KvMethod,
        headers: &http::HeaderMap,
        body: Bytes,
    ) -> Result<KvCall, Status> {
        let path = method.path();
        // In the order of the layers around the other calls: leader first.
        if let Some(refused) = self
            .require_leader
            .refusal(path, headers)
            .or_else(|| self.learner.refusal(path, headers))
        {
            return Err(refused);
        }
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

/// A decoded KV request.
enum KvCall {
    Range(RangeRequest),
    Put(PutRequest),
    DeleteRange(DeleteRangeRequest),
    Txn(TxnRequest),
    Compact(CompactionRequest),
}

impl KvCall {
    /// Whether serving it here reads a range of keys (a write's work is the Raft loop's).
    fn reads_key_ranges(&self) -> bool {
        match self {
            KvCall::Range(r) => !r.range_end.is_empty(),
            KvCall::Txn(t) => t.success.iter().chain(&t.failure).any(reads_key_range),
            KvCall::Put(_) | KvCall::DeleteRange(_) | KvCall::Compact(_) => false,
        }
    }
}

fn reads_key_range(op: &RequestOp) -> bool {
    match &op.request {
        Some(request_op::Request::RequestRange(r)) => !r.range_end.is_empty(),
        Some(request_op::Request::RequestTxn(t)) => {
            t.success.iter().chain(&t.failure).any(reads_key_range)
        }
        Some(request_op::Request::RequestPut(_) | request_op::Request::RequestDeleteRange(_))
        | None => false,
    }
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
fn unframe(mut body: Bytes, max_message_bytes: usize) -> Result<Bytes, Status> {
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
        1 => {
            return Err(Status::unimplemented(
                "Message compressed, compression not supported.",
            ))
        }
        flag => {
            return Err(Status::internal(format!(
                "protocol error: received message with invalid compression flag: {flag} (valid flags are 0 and 1) while receiving response with status: 200 OK"
            )))
        }
    }
    if len > max_message_bytes {
        return Err(message_too_large(len, max_message_bytes));
    }
    if body.len() != 5 + len {
        return Err(Status::internal(if body.len() < 5 + len {
            "Unexpected EOF decoding stream."
        } else {
            "Expected one request message, found more."
        }));
    }
    Ok(body.split_off(5))
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
        assert_eq!(compressed.code(), Code::Unimplemented);
        assert_eq!(
            unframe(framed(7, b"x"), 100).unwrap_err().code(),
            Code::Internal
        );
        let mut two = framed(0, b"a").to_vec();
        two.extend_from_slice(&framed(0, b"b"));
        assert_eq!(
            unframe(Bytes::from(two), 100).unwrap_err().code(),
            Code::Internal
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
    fn only_reads_over_key_ranges_leave_the_connection() {
        let single = RangeRequest {
            key: b"a".to_vec(),
            ..Default::default()
        };
        let span = RangeRequest {
            key: b"a".to_vec(),
            range_end: b"b".to_vec(),
            ..Default::default()
        };
        assert!(!KvCall::Range(single.clone()).reads_key_ranges());
        assert!(KvCall::Range(span.clone()).reads_key_ranges());
        assert!(!KvCall::Put(PutRequest::default()).reads_key_ranges());
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
        assert!(!KvCall::Txn(txn(vec![op(single)])).reads_key_ranges());
        assert!(KvCall::Txn(txn(vec![RequestOp {
            request: Some(request_op::Request::RequestTxn(nested)),
        }]))
        .reads_key_ranges());
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
