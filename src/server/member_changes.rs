//! Membership requests on the member that leads: MemberAdd, MemberRemove, MemberPromote and
//! MemberUpdate as Raft entries, each answered once it has applied here; and the member
//! list as the registry and the published attributes tell it.

use tokio::sync::oneshot;
use tonic::Status;

use super::apply::{Applied, ENTRY_FORMAT_VERSION, MEMBER_CHANGE_FORMAT_VERSION};
use super::member::{Command, RaftMember};
use super::reconfig_check::member_not_found;
use crate::lease::unix_ms_now;
use crate::proto::cairn::entry::v1::{
    request::Op, MemberChange, MemberPeerUrls, MemberRecord, Request,
};
use crate::proto::etcdserverpb::Member as MemberInfo;

/// A new member's id: unique per request (etcd salts its hash with the time, so a member
/// added again after a removal gets a new id), never 0.
fn new_member_id(cluster_id: u64, peer_urls: &[String], salt: u64) -> u64 {
    let mut urls = peer_urls.to_vec();
    urls.sort();
    let text = format!("{cluster_id:x}/{}/{salt}", urls.join(","));
    super::identity::member_id("added", &text, &[])
}

/// Checks member URLs as etcd does: absolute http(s) URLs with a host and port, no path.
pub fn validate_peer_urls(urls: &[String]) -> Result<(), Status> {
    let bad = || Status::invalid_argument("etcdserver: given member URLs are invalid");
    if urls.is_empty() {
        return Err(bad());
    }
    for url in urls {
        let parsed = url
            .parse::<tonic::codegen::http::Uri>()
            .map_err(|_| bad())?;
        let scheme_ok = matches!(
            parsed.scheme_str(),
            Some("http" | "https" | "unix" | "unixs")
        );
        let path_ok = matches!(parsed.path(), "" | "/");
        if !scheme_ok || parsed.host().is_none() || parsed.port_u16().is_none() || !path_ok {
            return Err(bad());
        }
    }
    Ok(())
}

impl RaftMember {
    /// The members, sorted by id, as etcd lists them.
    pub fn member_list(&self) -> Vec<MemberInfo> {
        let attributes = self.attributes_table().read();
        let registry = self.registry.read();
        let info = |record: &MemberRecord| {
            let published = attributes.get(&record.id);
            let mut info = MemberInfo {
                id: record.id,
                name: published.map_or_else(|| record.name.clone(), |a| a.name.clone()),
                peer_ur_ls: record.peer_urls.clone(),
                client_ur_ls: published.map(|a| a.client_urls.clone()).unwrap_or_default(),
                is_learner: record.is_learner,
            };
            // This member knows its own client URLs before its publication applies.
            if record.id == self.identity().member_id {
                info.name.clone_from(&self.identity().name);
                info.client_ur_ls.clone_from(&self.identity().client_urls);
            }
            info
        };
        let mut members: Vec<MemberInfo> = registry.members().map(info).collect();
        if members.is_empty() {
            // The founding entries have not applied yet: the flags' view.
            let me = MemberRecord {
                id: self.identity().member_id,
                name: self.identity().name.clone(),
                peer_urls: self.identity().peer_urls.clone(),
                is_learner: false,
            };
            members.push(info(&me));
            members.extend(self.identity().others.iter().map(|other| {
                let mut other = other.clone();
                if let Some(published) = attributes.get(&other.id) {
                    other.client_ur_ls.clone_from(&published.client_urls);
                }
                other
            }));
        }
        members.sort_by_key(|m| m.id);
        members
    }

    async fn change_membership(
        &self,
        change: cairn_raft::ConfChange,
        member: Option<MemberRecord>,
    ) -> Result<(), Status> {
        let context = MemberChange {
            format_version: MEMBER_CHANGE_FORMAT_VERSION,
            id: self.next_request_id(),
            proposer: self.identity().member_id,
            member,
        };
        let (reply, receiver) = oneshot::channel();
        self.send(Command::ChangeMembership {
            change,
            context,
            reply,
        })?;
        match self.wait(receiver).await? {
            Applied::Membership(applied) if applied == change => Ok(()),
            other => Err(Status::internal(format!(
                "etcdserver: membership change {change:?} answered with {other:?}"
            ))),
        }
    }

    pub async fn add_member(
        &self,
        peer_urls: Vec<String>,
        is_learner: bool,
    ) -> Result<(MemberInfo, Vec<MemberInfo>), Status> {
        validate_peer_urls(&peer_urls)?;
        let id = new_member_id(self.identity().cluster_id, &peer_urls, unix_ms_now());
        let record = MemberRecord {
            id,
            name: String::new(),
            peer_urls: peer_urls.clone(),
            is_learner,
        };
        let change = if is_learner {
            cairn_raft::ConfChange::AddLearner(id)
        } else {
            cairn_raft::ConfChange::AddVoter(id)
        };
        self.change_membership(change, Some(record)).await?;
        let added = MemberInfo {
            id,
            name: String::new(),
            peer_ur_ls: peer_urls,
            client_ur_ls: Vec::new(),
            is_learner,
        };
        Ok((added, self.member_list()))
    }

    pub async fn remove_member(&self, id: u64) -> Result<Vec<MemberInfo>, Status> {
        if self.registry.read().get(id).is_none() {
            return Err(member_not_found());
        }
        self.change_membership(cairn_raft::ConfChange::RemoveNode(id), None)
            .await?;
        Ok(self.member_list())
    }

    pub async fn promote_member(&self, id: u64) -> Result<Vec<MemberInfo>, Status> {
        let record = self.registry.read().get(id).cloned();
        let Some(record) = record else {
            return Err(member_not_found());
        };
        self.change_membership(cairn_raft::ConfChange::AddVoter(id), Some(record))
            .await?;
        Ok(self.member_list())
    }

    pub async fn update_member(
        &self,
        id: u64,
        peer_urls: Vec<String>,
    ) -> Result<Vec<MemberInfo>, Status> {
        validate_peer_urls(&peer_urls)?;
        {
            let registry = self.registry.read();
            if registry.get(id).is_none() {
                return Err(member_not_found());
            }
            if registry.peer_url_owner(&peer_urls, id).is_some() {
                return Err(Status::failed_precondition(
                    "etcdserver: Peer URLs already exists",
                ));
            }
        }
        let op = Op::MemberPeerUrls(MemberPeerUrls {
            member_id: id,
            peer_urls,
        });
        let request = Request {
            format_version: ENTRY_FORMAT_VERSION,
            id: self.next_request_id(),
            proposer: self.identity().member_id,
            proposed_at_unix_ms: unix_ms_now(),
            leader_term: 0,
            op: Some(op),
        };
        let (reply, receiver) = oneshot::channel();
        self.send(Command::Propose { request, reply })?;
        self.wait(receiver).await?;
        Ok(self.member_list())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_urls_are_checked_like_etcds() {
        assert!(validate_peer_urls(&["http://127.0.0.1:2380".into()]).is_ok());
        assert!(validate_peer_urls(&["https://node-1:2380".into()]).is_ok());
        for bad in [
            "",
            "127.0.0.1:2380",
            "http://127.0.0.1",
            "ftp://a:1",
            "http://a:1/x",
        ] {
            let refused = validate_peer_urls(&[bad.to_string()]).unwrap_err();
            assert_eq!(
                refused.message(),
                "etcdserver: given member URLs are invalid",
                "{bad}"
            );
            assert_eq!(refused.code(), tonic::Code::InvalidArgument);
        }
        assert!(validate_peer_urls(&[]).is_err());
    }

    #[test]
    fn added_member_ids_differ_per_request_and_are_never_zero() {
        let urls = vec!["http://127.0.0.1:42380".to_string()];
        let a = new_member_id(7, &urls, 1);
        assert_ne!(a, new_member_id(7, &urls, 2));
        assert_ne!(a, 0);
    }
}
