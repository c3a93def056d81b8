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

/// Whether every range in a read-only transaction asks for a serializable read.
fn all_serializable(ops: &[RequestOp]) -> bool {
    ops.iter().all(|op| match &op.request {
        Some(request_op::Request::RequestRange(r)) => r.serializable,
        Some(request_op::Request::RequestTxn(nested)) => {
            all_serializable(&nested.success) && all_serializable(&nested.failure)
        }
        _ => true,
    })
}

impl<M: Member> KvService<M> {
    /// Proposes `op`, refusing it first if its entry would exceed the request size limit.
    async fn propose(&self, op: Op) -> Result<Applied, Status> {
        let limit = self.member.limits().max_request_bytes;
        if op.encoded_len() > limit {
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
            self.member.read_barrier().await?;
        }
        let mut response = execute_range(&PinnedRead::new(self.member.store()), &r)?;
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
            let mut view = ReadOnly(PinnedRead::new(self.member.store()));
            execute_txn(&mut view, &r, &|_| false)?
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
