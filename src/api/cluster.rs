//! The Cluster service: MemberList (serializable or linearizable), and the membership changes
//! MemberAdd, MemberRemove, MemberUpdate and MemberPromote. Changes are made by the leader
//! (it alone can check them against the cluster's health); a follower forwards them to the
//! leader's client URL, then waits until it has applied them itself, so the client's next
//! request to this member already sees the change.

use std::future::Future;
use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::lease_forward::{leader_channel, marked, was_forwarded};
use super::Member;
use crate::proto::etcdserverpb::{
    cluster_client::ClusterClient, cluster_server::Cluster, Member as MemberInfo, MemberAddRequest,
    MemberAddResponse, MemberListRequest, MemberListResponse, MemberPromoteRequest,
    MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse, MemberUpdateRequest,
    MemberUpdateResponse, ResponseHeader,
};

/// How often a follower looks again for a leader it can forward to.
const LEADER_POLL: std::time::Duration = std::time::Duration::from_millis(50);

pub struct ClusterService<M> {
    member: Arc<M>,
}

impl<M> ClusterService<M> {
    pub fn new(member: Arc<M>) -> Self {
        ClusterService { member }
    }
}

/// Where a membership change is carried out.
enum Route {
    Here,
    Leader(ClusterClient<tonic::transport::Channel>),
}

impl<M: Member> ClusterService<M> {
    /// Membership changes go to the leader; a request that was forwarded here already is
    /// served here or refused, never forwarded again.
    /// A leader just elected, or whose client URLs have not applied here yet, is waited
    /// for (up to the request timeout), as a proposal would wait for it.
    async fn route<T>(&self, request: &Request<T>) -> Result<Route, Status> {
        let deadline = tokio::time::Instant::now() + self.member.request_timeout();
        loop {
            if self.member.is_leader() || was_forwarded(request) {
                return Ok(Route::Here);
            }
            if let Some((_, url)) = self.member.leader_client_url() {
                return Ok(Route::Leader(ClusterClient::new(leader_channel(&url)?)));
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Status::unavailable("etcdserver: no leader"));
            }
            tokio::time::sleep(LEADER_POLL).await;
        }
    }

    /// The leader's answer.
    async fn ask_leader<T>(
        &self,
        call: impl Future<Output = Result<Response<T>, Status>>,
    ) -> Result<T, Status> {
        Ok(tokio::time::timeout(self.member.request_timeout(), call)
            .await
            .map_err(|_| Status::unavailable("etcdserver: request timed out"))??
            .into_inner())
    }

    /// Waits until this member's list shows a change the leader made (`applied`). Bounded:
    /// the change is committed already, and a leader that removed itself leaves no one to
    /// ask for a read index for a while, so this polls what has applied here.
    async fn until_applied_here(&self, applied: impl Fn(&[MemberInfo]) -> bool) {
        let deadline = tokio::time::Instant::now() + self.member.request_timeout();
        while !applied(&self.member.members()) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(LEADER_POLL).await;
        }
    }

    fn header(&self) -> Option<ResponseHeader> {
        // etcd leaves the revision out of membership responses.
        Some(self.member.header())
    }
}

#[tonic::async_trait]
impl<M: Member> Cluster for ClusterService<M> {
    async fn member_add(
        &self,
        request: Request<MemberAddRequest>,
    ) -> Result<Response<MemberAddResponse>, Status> {
        let route = self.route(&request).await?;
        let add = request.into_inner();
        let (member, members): (Option<MemberInfo>, Vec<MemberInfo>) = match route {
            Route::Here => {
                let (member, members) = self
                    .member
                    .add_member(add.peer_ur_ls, add.is_learner)
                    .await?;
                (Some(member), members)
            }
            Route::Leader(mut leader) => {
                let answer = self.ask_leader(leader.member_add(marked(add))).await?;
                let id = answer.member.as_ref().map_or(0, |m| m.id);
                self.until_applied_here(|members| members.iter().any(|m| m.id == id))
                    .await;
                (answer.member, self.member.members())
            }
        };
        Ok(Response::new(MemberAddResponse {
            header: self.header(),
            member,
            members,
        }))
    }

    async fn member_remove(
        &self,
        request: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        let route = self.route(&request).await?;
        let remove = request.into_inner();
        let members = match route {
            Route::Here => self.member.remove_member(remove.id).await?,
            Route::Leader(mut leader) => {
                let id = remove.id;
                self.ask_leader(leader.member_remove(marked(remove)))
                    .await?;
                self.until_applied_here(|members| members.iter().all(|m| m.id != id))
                    .await;
                self.member.members()
            }
        };
        Ok(Response::new(MemberRemoveResponse {
            header: self.header(),
            members,
        }))
    }

    async fn member_update(
        &self,
        request: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        let route = self.route(&request).await?;
        let update = request.into_inner();
        let members = match route {
            Route::Here => {
                self.member
                    .update_member(update.id, update.peer_ur_ls)
                    .await?
            }
            Route::Leader(mut leader) => {
                let (id, urls) = (update.id, update.peer_ur_ls.clone());
                self.ask_leader(leader.member_update(marked(update)))
                    .await?;
                self.until_applied_here(|members| {
                    members.iter().any(|m| m.id == id && m.peer_ur_ls == urls)
                })
                .await;
                self.member.members()
            }
        };
        Ok(Response::new(MemberUpdateResponse {
            header: self.header(),
            members,
        }))
    }

    async fn member_promote(
        &self,
        request: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        let route = self.route(&request).await?;
        let promote = request.into_inner();
        let members = match route {
            Route::Here => self.member.promote_member(promote.id).await?,
            Route::Leader(mut leader) => {
                let id = promote.id;
                self.ask_leader(leader.member_promote(marked(promote)))
                    .await?;
                self.until_applied_here(|members| {
                    members.iter().any(|m| m.id == id && !m.is_learner)
                })
                .await;
                self.member.members()
            }
        };
        Ok(Response::new(MemberPromoteResponse {
            header: self.header(),
            members,
        }))
    }

    async fn member_list(
        &self,
        request: Request<MemberListRequest>,
    ) -> Result<Response<MemberListResponse>, Status> {
        // etcd 3.5's `linearizable`: the list as of every change committed before the call.
        if request.into_inner().linearizable {
            self.member.read_barrier().await?;
        }
        Ok(Response::new(MemberListResponse {
            header: self.header(),
            members: self.member.members(),
        }))
    }
}
