//! The Cluster service: MemberList (serializable or linearizable); membership changes are
//! not served yet.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::Member;
use crate::proto::etcdserverpb::{cluster_server::Cluster, MemberListRequest, MemberListResponse};

pub struct ClusterService<M> {
    member: Arc<M>,
}

impl<M> ClusterService<M> {
    pub fn new(member: Arc<M>) -> Self {
        ClusterService { member }
    }
}

#[tonic::async_trait]
impl<M: Member> Cluster for ClusterService<M> {
    async fn member_list(
        &self,
        request: Request<MemberListRequest>,
    ) -> Result<Response<MemberListResponse>, Status> {
        // etcd 3.5's `linearizable`: the list as of every change committed before the call.
        if request.into_inner().linearizable {
            self.member.read_barrier().await?;
        }
        // etcd leaves the revision out of membership responses.
        let header = self.member.header();
        Ok(Response::new(MemberListResponse {
            header: Some(header),
            members: self.member.members(),
        }))
    }
}
