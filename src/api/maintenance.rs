//! The Maintenance service: Status, Alarm (list) and MoveLeader; the rest answer
//! UNIMPLEMENTED until they exist.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::{fill_header, Member};
use crate::proto::etcdserverpb::{
    alarm_request::AlarmAction, maintenance_server::Maintenance, AlarmRequest, AlarmResponse,
    MoveLeaderRequest, MoveLeaderResponse, StatusRequest, StatusResponse,
};

pub struct MaintenanceService<M> {
    member: Arc<M>,
}

impl<M> MaintenanceService<M> {
    pub fn new(member: Arc<M>) -> Self {
        MaintenanceService { member }
    }
}

#[tonic::async_trait]
impl<M: Member> Maintenance for MaintenanceService<M> {
    /// No alarm can be raised yet (the space quota arrives later), so the list is empty and
    /// disarming finds nothing; health checks (`etcdctl endpoint health`) read this list.
    async fn alarm(
        &self,
        request: Request<AlarmRequest>,
    ) -> Result<Response<AlarmResponse>, Status> {
        match AlarmAction::try_from(request.into_inner().action) {
            Ok(AlarmAction::Get | AlarmAction::Deactivate) => Ok(Response::new(AlarmResponse {
                header: fill_header(&*self.member, None),
                alarms: Vec::new(),
            })),
            _ => Err(Status::unimplemented(
                "etcdserver: raising alarms is not supported yet",
            )),
        }
    }

    async fn move_leader(
        &self,
        request: Request<MoveLeaderRequest>,
    ) -> Result<Response<MoveLeaderResponse>, Status> {
        self.member
            .move_leader(request.into_inner().target_id)
            .await?;
        Ok(Response::new(MoveLeaderResponse {
            header: fill_header(&*self.member, None),
        }))
    }

    async fn status(&self, _: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        let mut status = self.member.status();
        if let Some(in_use) = self.member.db_size_in_use() {
            status.db_size_in_use = in_use;
        }
        status.header = fill_header(&*self.member, None);
        Ok(Response::new(status))
    }
}
