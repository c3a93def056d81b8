//! The Lease service: grants and revokes go through consensus; keepalives and time-to-live
//! are answered from the leader's lease clock (`crate::lease`).

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tonic::codegen::tokio_stream::{wrappers::ReceiverStream, Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use super::lease_forward::{self, KeepaliveProxy};
use super::{fill_header, Member};
use crate::lease::table::MAX_LEASE_TTL_SECONDS;
use crate::lease::{LeaseError, Renewal};
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

/// How often a request waiting for this member to lead looks again.
const LEADERSHIP_POLL: Duration = Duration::from_millis(20);

pub struct LeaseService<M> {
    member: Arc<M>,
}

impl<M> LeaseService<M> {
    pub fn new(member: Arc<M>) -> Self {
        LeaseService { member }
    }
}

/// The term this member leads in, if it leads.
pub fn leading_term<M: Member + ?Sized>(member: &M) -> Option<u64> {
    member.is_leader().then(|| member.header().raft_term)
}

fn unexpected(applied: Applied) -> Status {
    Status::internal(format!("etcdserver: unexpected apply result {applied:?}"))
}

/// What a renewal on this member came to.
enum Renewed {
    /// The TTL to answer with (0: the lease is gone).
    Ttl(i64),
    /// Another member leads: the renewal goes to it.
    AtLeader { leader: u64, url: String },
}

/// Renews one lease for a keepalive stream.
async fn renew<M: Member>(member: &M, id: i64, patience: Duration) -> Result<Renewed, Status> {
    let give_up = Instant::now() + patience;
    loop {
        let (renewal, revoked) = {
            let shared = member.leases();
            // Registered before looking, so a revoke applied right after is not missed.
            let revoked = shared.revoked.notified();
            let mut leases = shared.state.lock();
            leases.follow_role(leading_term(member));
            (leases.renew(id, Instant::now()), revoked)
        };
        match renewal {
            Renewal::Renewed { ttl_seconds } => return Ok(Renewed::Ttl(ttl_seconds)),
            Renewal::NotFound => return Ok(Renewed::Ttl(0)),
            // It ran out: answer once its revoke has applied, so that a client told "gone"
            // never reads the lease's keys afterwards.
            Renewal::Expired => {
                if tokio::time::timeout_at(give_up.into(), revoked)
                    .await
                    .is_err()
                {
                    return Err(Status::unavailable("etcdserver: request timed out"));
                }
            }
            Renewal::NotLeader => {
                if let Some((leader, url)) = member.leader_client_url() {
                    return Ok(Renewed::AtLeader { leader, url });
                }
                if Instant::now() >= give_up {
                    return Err(Status::unavailable("etcdserver: no leader"));
                }
                tokio::time::sleep(LEADERSHIP_POLL).await;
            }
        }
    }
}

/// Renews at the leader, over `proxy` (opened, or reopened when the leader changed).
async fn forward_renewal(
    proxy: &mut Option<KeepaliveProxy>,
    leader: u64,
    url: &str,
    id: i64,
    patience: Duration,
) -> Result<i64, Status> {
    if proxy.as_ref().is_none_or(|p| p.leader != leader) {
        *proxy = Some(KeepaliveProxy::open(leader, url, patience).await?);
    }
    let Some(open) = proxy.as_mut() else {
        return Err(Status::unavailable("etcdserver: no leader"));
    };
    let renewed = open.renew(id, patience).await;
    if renewed.is_err() {
        *proxy = None;
    }
    renewed
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
        let mut inbound = request.into_inner();
        let (sender, receiver) = mpsc::channel(KEEPALIVE_SEND_BUFFER);
        let member = Arc::clone(&self.member);
        let patience = self.member.request_timeout();
        tokio::spawn(async move {
            // Renewals this member cannot grant go to the leader over one stream.
            let mut proxy: Option<KeepaliveProxy> = None;
            while let Some(next) = inbound.next().await {
                let Ok(asked) = next else { break };
                let ttl = match renew(&*member, asked.id, patience).await {
                    Ok(Renewed::Ttl(ttl)) => Ok(ttl),
                    // Forwarded once already: this member is not the leader after all.
                    Ok(Renewed::AtLeader { .. }) if forwarded => {
                        Err(Status::unavailable("etcdserver: not leader"))
                    }
                    Ok(Renewed::AtLeader { leader, url }) => {
                        forward_renewal(&mut proxy, leader, &url, asked.id, patience).await
                    }
                    Err(status) => Err(status),
                };
                let answer = ttl.map(|ttl| LeaseKeepAliveResponse {
                    header: fill_header(&*member, None),
                    id: asked.id,
                    ttl,
                });
                let failed = answer.is_err();
                if sender.send(answer).await.is_err() || failed {
                    break;
                }
            }
        });
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
