//! The Maintenance service: Status today; the rest answer UNIMPLEMENTED until they exist.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::Member;
use crate::proto::etcdserverpb::{maintenance_server::Maintenance, StatusRequest, StatusResponse};

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
    async fn status(&self, _: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        let mut status = self.member.status();
        let mut header = self.member.header();
        header.revision = self.member.store().current_revision();
        status.header = Some(header);
        Ok(Response::new(status))
    }
}
