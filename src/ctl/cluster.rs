//! `endpoint status|health` and `move-leader`.

use std::time::Instant;

use clap::{Args, Subcommand};

use super::display::{self, EndpointHealth, EndpointStatus, Printed};
use super::{connect, CtlError, GlobalFlags};
use crate::proto::etcdserverpb::{
    cluster_client::ClusterClient, kv_client::KvClient, maintenance_client::MaintenanceClient,
    MemberListRequest, MoveLeaderRequest, RangeRequest, StatusRequest,
};

#[derive(Debug, Subcommand)]
pub enum EndpointCommand {
    /// Prints the status of each endpoint.
    Status(EndpointArgs),
    /// Checks that each endpoint can serve a linearizable read.
    Health(EndpointArgs),
}

#[derive(Debug, Args)]
pub struct EndpointArgs {
    /// Use all endpoints from the cluster member list.
    #[arg(long)]
    pub cluster: bool,
}

/// `move-leader <target member id, hex>`: finds the leader among the endpoints and asks it to
/// hand leadership to the target, as etcdctl does.
pub async fn run_move_leader(
    target: Option<&str>,
    global: &GlobalFlags,
    endpoints: &[String],
) -> Result<Printed, CtlError> {
    let target =
        target.ok_or_else(|| CtlError::BadArgs("move-leader command needs 1 argument".into()))?;
    let target = u64::from_str_radix(target, 16).map_err(|err| {
        CtlError::BadArgs(format!(
            "strconv.ParseUint: parsing {target:?}: {}",
            if matches!(err.kind(), std::num::IntErrorKind::PosOverflow) {
                "value out of range"
            } else {
                "invalid syntax"
            }
        ))
    })?;
    for endpoint in endpoints {
        let channel = connect::connect_one(endpoint, global.dial_timeout, global.command_timeout)
            .await
            .map_err(|err| CtlError::Failed(err.to_string()))?;
        let mut maintenance = MaintenanceClient::new(channel);
        let status = maintenance.status(StatusRequest {}).await?.into_inner();
        let me = status.header.as_ref().map_or(0, |h| h.member_id);
        if me != status.leader {
            continue;
        }
        maintenance
            .move_leader(MoveLeaderRequest { target_id: target })
            .await?;
        return Ok(Printed {
            stdout: format!("Leadership transferred from {me:x} to {target:x}\n"),
            stderr: String::new(),
        });
    }
    Err(CtlError::BadArgs(format!(
        "no leader endpoint given at [{}]",
        endpoints.join(" ")
    )))
}

/// With `--cluster`, every client URL the members advertise; else the given endpoints.
async fn target_endpoints(
    args: &EndpointArgs,
    global: &GlobalFlags,
    endpoints: &[String],
) -> Result<Vec<String>, CtlError> {
    if !args.cluster {
        return Ok(endpoints.to_vec());
    }
    let channel =
        connect::connect_any(endpoints, global.dial_timeout, global.command_timeout).await?;
    let members = ClusterClient::new(channel)
        .member_list(MemberListRequest::default())
        .await?
        .into_inner()
        .members;
    let mut urls: Vec<String> = members.into_iter().flat_map(|m| m.client_ur_ls).collect();
    urls.dedup();
    Ok(urls)
}

pub async fn run_endpoint(
    command: &EndpointCommand,
    global: &GlobalFlags,
    endpoints: &[String],
) -> Result<Printed, CtlError> {
    match command {
        EndpointCommand::Status(args) => {
            let mut statuses = Vec::new();
            let mut failures = String::new();
            for endpoint in target_endpoints(args, global, endpoints).await? {
                match status_of(&endpoint, global).await {
                    Ok(status) => statuses.push(EndpointStatus { endpoint, status }),
                    Err(err) => failures.push_str(&format!(
                        "Failed to get the status of endpoint {endpoint} ({err})\n"
                    )),
                }
            }
            let printed = display::endpoint_status(&statuses, global.write_out);
            if failures.is_empty() {
                return Ok(printed);
            }
            // etcdctl prints what it got, then fails for the endpoints that did not answer.
            print!("{}", printed.stdout);
            Err(CtlError::Failed(failures.trim_end().to_string()))
        }
        EndpointCommand::Health(args) => {
            let mut results = Vec::new();
            for endpoint in target_endpoints(args, global, endpoints).await? {
                results.push(health_of(&endpoint, global).await);
            }
            let unhealthy = results.iter().filter(|h| !h.healthy).count();
            let printed = display::endpoint_health(&results, global.write_out);
            if unhealthy > 0 {
                // etcdctl prints every result, then fails when any endpoint is unhealthy.
                eprint!("{}", printed.stderr);
                print!("{}", printed.stdout);
                return Err(CtlError::Failed("unhealthy cluster".into()));
            }
            Ok(printed)
        }
    }
}

async fn status_of(
    endpoint: &str,
    global: &GlobalFlags,
) -> Result<crate::proto::etcdserverpb::StatusResponse, String> {
    let channel =
        connect::connect_one(endpoint, global.dial_timeout, global.command_timeout).await?;
    MaintenanceClient::new(channel)
        .status(StatusRequest::default())
        .await
        .map(tonic::Response::into_inner)
        .map_err(|status| status.message().to_string())
}

/// Healthy when a linearizable read commits through the cluster (a missing key is fine; a
/// permission error still proves the read path works).
async fn health_of(endpoint: &str, global: &GlobalFlags) -> EndpointHealth {
    let started = Instant::now();
    let outcome = async {
        let channel =
            connect::connect_one(endpoint, global.dial_timeout, global.command_timeout).await?;
        let read = KvClient::new(channel)
            .range(RangeRequest {
                key: b"health".to_vec(),
                ..Default::default()
            })
            .await;
        match read {
            Ok(_) => Ok(()),
            Err(status) if status.code() == tonic::Code::PermissionDenied => Ok(()),
            Err(status) => Err(status.message().to_string()),
        }
    }
    .await;
    EndpointHealth {
        endpoint: endpoint.to_string(),
        healthy: outcome.is_ok(),
        took: started.elapsed(),
        error: outcome.err().unwrap_or_default(),
    }
}
