//! The Lease service: grants and revokes go through consensus; keepalives and time-to-live
//! are answered from the leader's lease clock (`crate::lease`).

use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;
use tonic::codegen::tokio_stream::{wrappers::ReceiverStream, Stream};
use tonic::{Request, Response, Status, Streaming};

use super::keepalive;
use super::lease_forward;
use super::{fill_header, Member};
use crate::lease::table::MAX_LEASE_TTL_SECONDS;
use crate::lease::LeaseError;
use crate::proto::cairn::entry::v1::request::Op;
use crate::proto::etcdserverpb::{
    lease_server::Lease, LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest,
    LeaseKeepAliveResponse, LeaseLeasesRequest, LeaseLeasesResponse, LeaseRevokeRequest,
    LeaseRevokeResponse, LeaseStatus, LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};
use crate::server::apply::Applied;

/// Keepalive responses a stream may have in flight before its task waits for the client.
const KEEPALIVE_SEND_BUFFER: usize = 64;

/// Attempts at a grant whose server-chosen id turned out to be taken.
const MAX_GRANT_ATTEMPTS: usize = 3;

pub struct LeaseService<M> {
    member: Arc<M>,
}

impl<M> LeaseService<M> {
    pub fn new(member: Arc<M>) -> Self {
        LeaseService { member }
    }
}

/// The term this member keeps lease time in (see [`Member::lease_term`]).
pub fn leading_term<M: Member + ?Sized>(member: &M) -> Option<u64> {
    member.lease_term()
}

fn unexpected(applied: Applied) -> Status {
    Status::internal(format!("etcdserver: unexpected apply result {applied:?}"))
}

type KeepAliveStream = Pin<Box<dyn Stream<Item = Result<LeaseKeepAliveResponse, Status>> + Send>>;

#[tonic::async_trait]
impl<M: Member> Lease for LeaseService<M> {
    async fn lease_grant(
        &self,
        request: Request<LeaseGrantRequest>,
    ) -> Result<Response<LeaseGrantResponse>, Status> {
        let asked = request.into_inner();
        if asked.ttl > MAX_LEASE_TTL_SECONDS {
            return Err(crate::kv::KvError::from(LeaseError::TtlTooLarge).into());
        }
        let rules = self.member.grant_rules();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let settled = rules.settle(&asked, self.member.lease_ids());
            match self.member.propose(Op::LeaseGrant(settled)).await {
                Ok(Applied::LeaseGrant(mut response)) => {
                    response.header = fill_header(&*self.member, response.header);
                    return Ok(Response::new(response));
                }
                Ok(other) => return Err(unexpected(other)),
                // A server-chosen id that another lease already has: choose again.
                Err(status)
                    if asked.id == 0
                        && attempt < MAX_GRANT_ATTEMPTS
                        && status.message() == LeaseError::Exists.to_string() =>
                {
                    continue
                }
                Err(status) => return Err(status),
            }
        }
    }

    async fn lease_revoke(
        &self,
        request: Request<LeaseRevokeRequest>,
    ) -> Result<Response<LeaseRevokeResponse>, Status> {
        match self
            .member
            .propose(Op::LeaseRevoke(request.into_inner()))
            .await?
        {
            Applied::LeaseRevoke(mut response) => {
                response.header = fill_header(&*self.member, response.header);
                Ok(Response::new(response))
            }
            other => Err(unexpected(other)),
        }
    }

    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<Response<KeepAliveStream>, Status> {
        let forwarded = lease_forward::was_forwarded(&request);
        let inbound = request.into_inner();
        let (sender, receiver) = mpsc::channel(KEEPALIVE_SEND_BUFFER);
        let member = Arc::clone(&self.member);
        let patience = self.member.request_timeout();
        tokio::spawn(keepalive::serve_stream(
            member, inbound, sender, forwarded, patience,
        ));
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        let forwarded = lease_forward::was_forwarded(&request);
        let asked = request.into_inner();
        let (found, leading) = {
            let mut leases = self.member.leases().state.lock();
            leases.follow_role(leading_term(&*self.member));
            let found = leases.time_to_live(asked.id, asked.keys, Instant::now());
            (found, leases.is_leading())
        };
        // Only the leader knows the time left; a follower asks it.
        if let (false, false, Some((_, url))) =
            (leading, forwarded, self.member.leader_client_url())
        {
            let mut response =
                lease_forward::time_to_live(&url, asked, self.member.request_timeout()).await?;
            response.header = fill_header(&*self.member, None);
            return Ok(Response::new(response));
        }
        let response = match found {
            Some(found) => LeaseTimeToLiveResponse {
                header: fill_header(&*self.member, None),
                id: asked.id,
                ttl: found.remaining_seconds,
                granted_ttl: found.granted_ttl_seconds,
                keys: found.keys,
            },
            // etcd answers an unknown lease with TTL -1, not an error.
            None => LeaseTimeToLiveResponse {
                header: fill_header(&*self.member, None),
                id: asked.id,
                ttl: -1,
                granted_ttl: 0,
                keys: Vec::new(),
            },
        };
        Ok(Response::new(response))
    }

    async fn lease_leases(
        &self,
        _request: Request<LeaseLeasesRequest>,
    ) -> Result<Response<LeaseLeasesResponse>, Status> {
        let leases = {
            let leases = self.member.leases().state.lock();
            leases
                .ids_by_expiry(Instant::now())
                .into_iter()
                .map(|id| LeaseStatus { id })
                .collect()
        };
        Ok(Response::new(LeaseLeasesResponse {
            header: fill_header(&*self.member, None),
            leases,
        }))
    }
}
