//! The Cluster service: MemberList today; membership changes arrive with the cluster.

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
        _: Request<MemberListRequest>,
    ) -> Result<Response<MemberListResponse>, Status> {
        // etcd leaves the revision out of membership responses.
        let header = self.member.header();
        Ok(Response::new(MemberListResponse {
            header: Some(header),
            members: self.member.members(),
        }))
    }
}
