//! `member list|add|remove|update|promote`, with etcdctl's arguments, output and errors.

use clap::Subcommand;
use tonic::transport::Channel;

use super::display::{self, header_json, member_json, OutputFormat, Printed};
use super::json::JsonObject;
use super::CtlError;
use crate::proto::etcdserverpb::{
    cluster_client::ClusterClient, Member, MemberAddRequest, MemberListRequest,
    MemberPromoteRequest, MemberRemoveRequest, MemberUpdateRequest, ResponseHeader,
};

#[derive(Debug, Subcommand)]
pub enum MemberCommand {
    /// Lists all members in the cluster.
    List,
    /// Adds a member into the cluster; prints the settings to start it with.
    Add {
        /// The new member's name (its --name when it starts).
        name: Option<String>,
        /// Comma-separated peer URLs for the new member.
        #[arg(long = "peer-urls", default_value = "")]
        peer_urls: String,
        /// Add as a learner (a non-voting member that catches up before promotion).
        #[arg(long)]
        learner: bool,
    },
    /// Removes a member (its id in hexadecimal) from the cluster.
    Remove {
        /// The member's id, as `member list` prints it.
        id: Option<String>,
    },
    /// Updates a member's peer URLs.
    Update {
        /// The member's id, as `member list` prints it.
        id: Option<String>,
        /// Comma-separated new peer URLs.
        #[arg(long = "peer-urls", default_value = "")]
        peer_urls: String,
    },
    /// Promotes a learner that has caught up to a voting member.
    Promote {
        /// The learner's id, as `member list` prints it.
        id: Option<String>,
    },
}

/// A member id argument in hexadecimal, with etcdctl's complaint when it is not.
fn member_id(arg: Option<&String>) -> Result<u64, CtlError> {
    let arg = arg.ok_or_else(|| CtlError::BadArgs("member ID is not provided".into()))?;
    u64::from_str_radix(arg, 16).map_err(|err| {
        let why = if matches!(err.kind(), std::num::IntErrorKind::PosOverflow) {
            "value out of range"
        } else {
            "invalid syntax"
        };
        CtlError::BadArgs(format!(
            "bad member ID arg (strconv.ParseUint: parsing {arg:?}: {why}), expecting ID in Hex"
        ))
    })
}

fn urls(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(String::from)
        .collect()
}

fn cluster_id(header: &Option<ResponseHeader>) -> u64 {
    header.as_ref().map_or(0, |h| h.cluster_id)
}

/// etcdctl's JSON of a membership response: the header and the members.
fn members_json(
    header: &Option<ResponseHeader>,
    member: Option<&Member>,
    members: &[Member],
) -> String {
    let mut object = JsonObject::new().object("header", header_json(header));
    if let Some(member) = member {
        object = object.object("member", Some(member_json(member)));
    }
    object
        .objects("members", members.iter().map(member_json).collect())
        .finish()
        + "\n"
}

pub async fn run(
    command: &MemberCommand,
    format: OutputFormat,
    channel: Channel,
) -> Result<Printed, CtlError> {
    let mut cluster = ClusterClient::new(channel);
    match command {
        MemberCommand::List => {
            let response = cluster
                .member_list(MemberListRequest::default())
                .await?
                .into_inner();
            Ok(display::member_list(&response, format))
        }
        MemberCommand::Add {
            name,
            peer_urls,
            learner,
        } => {
            let name = name
                .as_ref()
                .ok_or_else(|| CtlError::BadArgs("member name not provided".into()))?;
            let peer_urls = urls(peer_urls);
            if peer_urls.is_empty() {
                return Err(CtlError::BadArgs("member peer urls not provided".into()));
            }
            let response = cluster
                .member_add(MemberAddRequest {
                    peer_ur_ls: peer_urls.clone(),
                    is_learner: *learner,
                })
                .await?
                .into_inner();
            let added = response.member.clone().unwrap_or_default();
            if format == OutputFormat::Json {
                return Ok(Printed::out(members_json(
                    &response.header,
                    Some(&added),
                    &response.members,
                )));
            }
            // etcdctl 3.5.1 says "added" for a learner too (observed).
            let mut out = format!(
                "Member {:16x} added to cluster {:16x}\n",
                added.id,
                cluster_id(&response.header)
            );
            let initial_cluster: Vec<String> = response
                .members
                .iter()
                .flat_map(|m| {
                    let shown = if m.id == added.id { name } else { &m.name };
                    m.peer_ur_ls.iter().map(move |u| format!("{shown}={u}"))
                })
                .collect();
            out.push('\n');
            out.push_str(&format!("ETCD_NAME={name:?}\n"));
            out.push_str(&format!(
                "ETCD_INITIAL_CLUSTER={:?}\n",
                initial_cluster.join(",")
            ));
            out.push_str(&format!(
                "ETCD_INITIAL_ADVERTISE_PEER_URLS={:?}\n",
                peer_urls.join(",")
            ));
            out.push_str("ETCD_INITIAL_CLUSTER_STATE=\"existing\"\n");
            Ok(Printed::out(out))
        }
        MemberCommand::Remove { id } => {
            let id = member_id(id.as_ref())?;
            let response = cluster
                .member_remove(MemberRemoveRequest { id })
                .await?
                .into_inner();
            Ok(changed(
                format,
                "removed from",
                id,
                &response.header,
                &response.members,
            ))
        }
        MemberCommand::Update { id, peer_urls } => {
            let id = member_id(id.as_ref())?;
            let peer_urls = urls(peer_urls);
            if peer_urls.is_empty() {
                return Err(CtlError::BadArgs("member peer urls not provided".into()));
            }
            let response = cluster
                .member_update(MemberUpdateRequest {
                    id,
                    peer_ur_ls: peer_urls,
                })
                .await?
                .into_inner();
            Ok(changed(
                format,
                "updated in",
                id,
                &response.header,
                &response.members,
            ))
        }
        MemberCommand::Promote { id } => {
            let id = member_id(id.as_ref())?;
            let response = cluster
                .member_promote(MemberPromoteRequest { id })
                .await?
                .into_inner();
            Ok(changed(
                format,
                "promoted in",
                id,
                &response.header,
                &response.members,
            ))
        }
    }
}

/// etcdctl's line for a change to one member, or the response as JSON.
fn changed(
    format: OutputFormat,
    what: &str,
    id: u64,
    header: &Option<ResponseHeader>,
    members: &[Member],
) -> Printed {
    if format == OutputFormat::Json {
        return Printed::out(members_json(header, None, members));
    }
    Printed::out(format!(
        "Member {id:16x} {what} cluster {:16x}\n",
        cluster_id(header)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_ids_are_hex_with_etcdctls_complaint() {
        assert_eq!(
            member_id(Some(&"8e9e05c52164694d".into())).unwrap(),
            0x8e9e05c52164694d
        );
        let bad = member_id(Some(&"zz".into())).unwrap_err();
        assert_eq!(
            bad.to_string(),
            "bad member ID arg (strconv.ParseUint: parsing \"zz\": invalid syntax), expecting ID in Hex"
        );
        assert_eq!(
            member_id(None).unwrap_err().to_string(),
            "member ID is not provided"
        );
        assert_eq!(
            urls("http://a:1, http://b:2,"),
            vec!["http://a:1", "http://b:2"]
        );
    }
}
