//! The KV service: Range, Put, DeleteRange, Txn and Compact.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::{fill_header, Member};
use crate::kv::{execute_range, execute_txn, validate, KvError, PinnedRead, ReadOnly};
use crate::proto::cairn::entry::v1::request::Op;
use crate::proto::etcdserverpb::{
    kv_server::Kv, request_op, CompactionRequest, CompactionResponse, DeleteRangeRequest,
    DeleteRangeResponse, PutRequest, PutResponse, RangeRequest, RangeResponse, RequestOp,
    TxnRequest, TxnResponse,
};
use crate::server::apply::Applied;

pub struct KvService<M> {
    member: Arc<M>,
}

impl<M> KvService<M> {
    pub fn new(member: Arc<M>) -> Self {
        KvService { member }
    }
}

fn unexpected(applied: Applied) -> Status {
    Status::internal(format!("etcdserver: unexpected apply result {applied:?}"))
}

/// Whether a transaction writes anywhere (then it goes through consensus).
fn writes(ops: &[RequestOp]) -> bool {
    ops.iter().any(|op| match &op.request {
        Some(request_op::Request::RequestPut(_) | request_op::Request::RequestDeleteRange(_)) => {
            true
        }
        Some(request_op::Request::RequestTxn(nested)) => {
            writes(&nested.success) || writes(&nested.failure)
        }
        _ => false,
    })
}

/// Bytes etcd's internal request adds around a write's operation (header tag and length, the
/// request id varint, the operation's tag and length).
const ETCD_REQUEST_HEADER_BYTES: usize = 14;

/// Whether every range in a read-only transaction asks for a serializable read. As in etcd,
/// a nested transaction makes the whole read linearizable.
fn all_serializable(ops: &[RequestOp]) -> bool {
    ops.iter().all(|op| match &op.request {
        Some(request_op::Request::RequestRange(r)) => r.serializable,
        Some(request_op::Request::RequestTxn(_)) => false,
        _ => true,
    })
}

/// Runs a read at the store's current revision. A compaction that overtakes the pinned
/// revision mid-read would fail a read that named no revision, which etcd never does: such
/// a read runs again at a fresh pin.
fn with_fresh_pin<B: crate::mvcc::Backend, T>(
    store: &crate::mvcc::MvccStore<B>,
    mut read: impl FnMut(&PinnedRead<'_, B>) -> Result<T, KvError>,
) -> Result<T, KvError> {
    const MAX_READ_ATTEMPTS: usize = 3;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let view = PinnedRead::new(store);
        match read(&view) {
            Err(KvError::Compacted)
                if attempt < MAX_READ_ATTEMPTS
                    && crate::kv::KvRead::revision(&view) < store.compacted_revision() =>
            {
                continue
            }
            result => return result,
        }
    }
}

impl<M: Member> KvService<M> {
    /// Proposes `op`, refusing it first if its entry would exceed the request size limit.
    async fn propose(&self, op: Op) -> Result<Applied, Status> {
        let limit = self.member.limits().max_request_bytes;
        // etcd measures its whole internal request: the operation plus a header of about
        // 14 bytes (request id). Count the same, so the same requests pass.
        if op.encoded_len() + ETCD_REQUEST_HEADER_BYTES > limit {
            return Err(KvError::RequestTooLarge.into());
        }
        self.member.propose(op).await
    }
}

#[tonic::async_trait]
impl<M: Member> Kv for KvService<M> {
    async fn range(
        &self,
        request: Request<RangeRequest>,
    ) -> Result<Response<RangeResponse>, Status> {
        let r = request.into_inner();
        validate::check_range(&r)?;
        if !r.serializable {
            if self.member.is_learner() {
                return Err(crate::server::learner_gate::not_supported_for_learner());
            }
            #[cfg(feature = "failpoints")]
            let planted_bug =
                !self.member.is_leader() && crate::failpoints::failing("follower-local-reads");
            #[cfg(not(feature = "failpoints"))]
            let planted_bug = false;
            if !planted_bug {
                self.member.read_barrier().await?;
            }
        }
        let mut response = with_fresh_pin(self.member.store(), |view| execute_range(view, &r))?;
        response.header = fill_header(&*self.member, response.header);
        Ok(Response::new(response))
    }

    async fn put(&self, request: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let r = request.into_inner();
        validate::check_put(&r)?;
        match self.propose(Op::Put(r)).await? {
            Applied::Put(mut response) => {
                response.header = fill_header(&*self.member, response.header);
                Ok(Response::new(response))
            }
            other => Err(unexpected(other)),
        }
    }

    async fn delete_range(
        &self,
        request: Request<DeleteRangeRequest>,
    ) -> Result<Response<DeleteRangeResponse>, Status> {
        let r = request.into_inner();
        validate::check_delete(&r)?;
        match self.propose(Op::DeleteRange(r)).await? {
            Applied::DeleteRange(mut response) => {
                response.header = fill_header(&*self.member, response.header);
                Ok(Response::new(response))
            }
            other => Err(unexpected(other)),
        }
    }

    async fn txn(&self, request: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        let r = request.into_inner();
        validate::check_txn(&r, self.member.limits().max_txn_ops)?;
        let mut response = if writes(&r.success) || writes(&r.failure) {
            match self.propose(Op::Txn(r)).await? {
                Applied::Txn(response) => response,
                other => return Err(unexpected(other)),
            }
        } else {
            if !(all_serializable(&r.success) && all_serializable(&r.failure)) {
                self.member.read_barrier().await?;
            }
            with_fresh_pin(self.member.store(), |view| {
                execute_txn(&mut ReadOnly(view), &r, &|_| false)
            })?
        };
        response.header = fill_header(&*self.member, response.header);
        Ok(Response::new(response))
    }

    async fn compact(
        &self,
        request: Request<CompactionRequest>,
    ) -> Result<Response<CompactionResponse>, Status> {
        let r = request.into_inner();
        match self.propose(Op::Compaction(r)).await? {
            Applied::Compaction(mut response) => {
                response.header = fill_header(&*self.member, response.header);
                Ok(Response::new(response))
            }
            other => Err(unexpected(other)),
        }
    }
}
