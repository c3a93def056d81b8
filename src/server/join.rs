//! Joining a running cluster (`--initial-cluster-state existing`): a member added with
//! MemberAdd starts with an empty log, so it asks the members named in `--initial-cluster`
//! for the cluster as they know it, and finds itself there by its peer URLs. Its id and the
//! cluster id come from that answer; the log and the key space then come from the leader.

use std::time::Duration;

use tonic::transport::Endpoint;

use super::peer_codec::PEER_PROTOCOL_VERSION;
use crate::proto::cairn::entry::v1::MemberRecord;
use crate::proto::cairn::peer::v1::{peer_client::PeerClient, MembersRequest, MembersResponse};

const ASK_TIMEOUT: Duration = Duration::from_secs(2);

/// Who this member is in the cluster it joins, and who the others are.
#[derive(Debug, Clone, PartialEq)]
pub struct Joined {
    pub cluster_id: u64,
    pub member_id: u64,
    pub members: Vec<MemberRecord>,
}

/// Why a member could not join.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("could not retrieve cluster information from the given peer URLs ({urls}): {reasons}")]
    Unreachable { urls: String, reasons: String },
    #[error("this member's peer URLs ({own}) are not a member of cluster {cluster_id:x}; add it first (etcdctl member add NAME --peer-urls={own})")]
    NotAdded { own: String, cluster_id: u64 },
}

/// Asks each of `peer_urls` in turn; the first answer decides.
pub async fn join(peer_urls: &[String], own_urls: &[String]) -> Result<Joined, JoinError> {
    let mut reasons = Vec::new();
    for url in peer_urls {
        match ask(url).await {
            Ok(cluster) => return find_self(&cluster, own_urls),
            Err(reason) => reasons.push(format!("{url}: {reason}")),
        }
    }
    Err(JoinError::Unreachable {
        urls: peer_urls.join(","),
        reasons: reasons.join("; "),
    })
}

async fn ask(url: &str) -> Result<MembersResponse, String> {
    let endpoint = Endpoint::from_shared(url.to_string()).map_err(|e| format!("bad URL: {e}"))?;
    let endpoint = super::dial_source::apply(endpoint)
        .connect_timeout(ASK_TIMEOUT)
        .timeout(ASK_TIMEOUT);
    let channel = endpoint.connect().await.map_err(|e| e.to_string())?;
    let answer = PeerClient::new(channel)
        .members(MembersRequest {
            protocol_version: PEER_PROTOCOL_VERSION,
        })
        .await
        .map_err(|status| status.message().to_string())?
        .into_inner();
    if answer.protocol_version != PEER_PROTOCOL_VERSION {
        return Err(format!(
            "peer protocol version {} not supported (local version {PEER_PROTOCOL_VERSION})",
            answer.protocol_version
        ));
    }
    Ok(answer)
}

fn find_self(cluster: &MembersResponse, own_urls: &[String]) -> Result<Joined, JoinError> {
    let mut own = own_urls.to_vec();
    own.sort();
    let found = cluster.members.iter().find(|m| {
        let mut urls = m.peer_urls.clone();
        urls.sort();
        urls == own
    });
    // A removed member's record is gone, so it is never found here.
    match found {
        Some(member) => Ok(Joined {
            cluster_id: cluster.cluster_id,
            member_id: member.id,
            members: cluster.members.clone(),
        }),
        None => Err(JoinError::NotAdded {
            own: own_urls.join(","),
            cluster_id: cluster.cluster_id,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster() -> MembersResponse {
        let member = |id: u64, url: &str| MemberRecord {
            id,
            name: String::new(),
            peer_urls: vec![url.to_string()],
            is_learner: id == 4,
        };
        MembersResponse {
            protocol_version: PEER_PROTOCOL_VERSION,
            cluster_id: 77,
            members: vec![member(1, "http://a:2380"), member(4, "http://d:2380")],
            removed: vec![9],
        }
    }

    #[test]
    fn a_joining_member_finds_itself_by_its_peer_urls() {
        let joined = find_self(&cluster(), &["http://d:2380".into()]).unwrap();
        assert_eq!((joined.cluster_id, joined.member_id), (77, 4));
        assert_eq!(joined.members.len(), 2);
        let missing = find_self(&cluster(), &["http://e:2380".into()]).unwrap_err();
        assert!(missing.to_string().contains("member add"), "{missing}");
    }
}
