//! The cluster's members as the log defines them: who is a member (voter or learner), their
//! peer URLs, and which ids were removed for good.
//!
//! Raft keeps only member ids; this registry keeps what the rest of the server needs about
//! each one. It changes only by applying committed entries (membership changes carry the
//! member's record as their context, peer-URL updates are ordinary entries), in the same
//! storage transaction as the applied index, so it always matches the log it came from.
//!
//! On disk, in the key-space file's meta bucket:
//! - `member/` + id (8 bytes, big-endian) → `cairn.entry.v1.MemberRecord` (protobuf);
//! - `member_removed/` + id → empty: that id may never be a member again.

use std::collections::{BTreeMap, BTreeSet};

use cairn_raft::ConfChange;
use prost::Message;

use crate::mvcc::{Backend, Bucket, MvccError, MvccStore, WriteBatch};
use crate::proto::cairn::entry::v1::MemberRecord;

pub const META_MEMBER: &[u8] = b"member/";
pub const META_MEMBER_REMOVED: &[u8] = b"member_removed/";

fn member_key(id: u64) -> Vec<u8> {
    [META_MEMBER, &id.to_be_bytes()[..]].concat()
}

fn removed_key(id: u64) -> Vec<u8> {
    [META_MEMBER_REMOVED, &id.to_be_bytes()[..]].concat()
}

/// Why the stored registry could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("stored member record {key:?} does not decode: {reason}")]
    Undecodable { key: String, reason: String },
    #[error(transparent)]
    Storage(#[from] MvccError),
}

/// The members, as applied.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MemberRegistry {
    members: BTreeMap<u64, MemberRecord>,
    removed: BTreeSet<u64>,
}

impl MemberRegistry {
    /// The registry as the key-space file holds it.
    pub fn load<B: Backend>(store: &MvccStore<B>) -> Result<MemberRegistry, RegistryError> {
        let mut registry = MemberRegistry::default();
        let mut failure = None;
        store.scan_records(Bucket::Meta, &mut |key, value| {
            failure = registry.load_record(key, value).err();
            failure.is_none()
        })?;
        failure.map_or(Ok(registry), Err)
    }

    /// Takes one record of the meta bucket (others than the registry's are skipped).
    pub fn load_record(&mut self, key: &[u8], value: &[u8]) -> Result<(), RegistryError> {
        let undecodable = |reason: String| RegistryError::Undecodable {
            key: String::from_utf8_lossy(key).into_owned(),
            reason,
        };
        if let Some(id) = key.strip_prefix(META_MEMBER).and_then(id_of) {
            let record = MemberRecord::decode(value).map_err(|e| undecodable(e.to_string()))?;
            if record.id != id {
                return Err(undecodable(format!("holds member {:x}", record.id)));
            }
            self.members.insert(id, record);
        } else if let Some(id) = key.strip_prefix(META_MEMBER_REMOVED).and_then(id_of) {
            self.removed.insert(id);
        }
        Ok(())
    }

    /// The Raft membership the registry describes.
    pub fn conf_state(&self) -> cairn_raft::ConfState {
        let (learners, voters): (Vec<&MemberRecord>, Vec<&MemberRecord>) =
            self.members.values().partition(|m| m.is_learner);
        cairn_raft::ConfState {
            voters: voters.iter().map(|m| m.id).collect(),
            learners: learners.iter().map(|m| m.id).collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn get(&self, id: u64) -> Option<&MemberRecord> {
        self.members.get(&id)
    }

    pub fn members(&self) -> impl Iterator<Item = &MemberRecord> {
        self.members.values()
    }

    pub fn removed(&self) -> impl Iterator<Item = u64> + '_ {
        self.removed.iter().copied()
    }

    pub fn is_removed(&self, id: u64) -> bool {
        self.removed.contains(&id)
    }

    pub fn learner_count(&self) -> usize {
        self.members.values().filter(|m| m.is_learner).count()
    }

    /// The member other than `except` that already uses one of `urls`.
    pub fn peer_url_owner(&self, urls: &[String], except: u64) -> Option<u64> {
        self.members
            .values()
            .find(|m| m.id != except && m.peer_urls.iter().any(|u| urls.contains(u)))
            .map(|m| m.id)
    }

    /// Applies a committed membership change whose context held `record` (None for a change
    /// without one), and records the result in `batch`.
    pub fn apply_change<B: Backend>(
        &mut self,
        batch: &mut WriteBatch<'_, B>,
        change: ConfChange,
        record: Option<&MemberRecord>,
    ) -> Result<(), MvccError> {
        let id = change.node_id();
        let updated = match change {
            ConfChange::AddVoter(_) | ConfChange::AddLearner(_) => {
                let learner = matches!(change, ConfChange::AddLearner(_));
                let mut member = self
                    .members
                    .get(&id)
                    .cloned()
                    .or_else(|| record.cloned())
                    .unwrap_or(MemberRecord {
                        id,
                        ..MemberRecord::default()
                    });
                debug_assert_eq!(member.id, id, "a change's record is the changed member's");
                member.id = id;
                member.is_learner = learner;
                Some(member)
            }
            ConfChange::RemoveNode(_) => None,
        };
        match updated {
            Some(member) => {
                batch.put_record(Bucket::Meta, &member_key(id), &member.encode_to_vec())?;
                self.members.insert(id, member);
            }
            None => {
                batch.delete_record(Bucket::Meta, &member_key(id))?;
                batch.put_record(Bucket::Meta, &removed_key(id), &[])?;
                self.members.remove(&id);
                self.removed.insert(id);
            }
        }
        Ok(())
    }

    /// Applies a committed peer-URL update (etcd's MemberUpdate); a member unknown here (one
    /// removed since the update was proposed) is left alone.
    pub fn apply_peer_urls<B: Backend>(
        &mut self,
        batch: &mut WriteBatch<'_, B>,
        id: u64,
        peer_urls: &[String],
    ) -> Result<bool, MvccError> {
        let Some(member) = self.members.get_mut(&id) else {
            return Ok(false);
        };
        member.peer_urls = peer_urls.to_vec();
        batch.put_record(Bucket::Meta, &member_key(id), &member.encode_to_vec())?;
        Ok(true)
    }
}

fn id_of(bytes: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(bytes).ok().map(u64::from_be_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mvcc::MemBackend;

    fn record(id: u64) -> MemberRecord {
        MemberRecord {
            id,
            name: format!("m{id}"),
            peer_urls: vec![format!("http://m{id}:2380")],
            is_learner: false,
        }
    }

    #[test]
    fn applied_changes_are_what_a_restart_loads() {
        let store = MvccStore::open(MemBackend::default()).unwrap();
        let mut registry = MemberRegistry::default();
        let mut batch = store.write().unwrap();
        for id in [1, 2] {
            registry
                .apply_change(&mut batch, ConfChange::AddVoter(id), Some(&record(id)))
                .unwrap();
        }
        registry
            .apply_change(&mut batch, ConfChange::AddLearner(3), Some(&record(3)))
            .unwrap();
        assert!(registry.get(3).unwrap().is_learner);
        // A promotion keeps the learner's record (its context may carry none).
        registry
            .apply_change(&mut batch, ConfChange::AddVoter(3), None)
            .unwrap();
        let urls = vec!["http://new:2380".to_string()];
        assert!(registry.apply_peer_urls(&mut batch, 3, &urls).unwrap());
        assert!(!registry.apply_peer_urls(&mut batch, 9, &urls).unwrap());
        registry
            .apply_change(&mut batch, ConfChange::RemoveNode(1), None)
            .unwrap();
        batch.commit().unwrap();

        let promoted = registry.get(3).unwrap();
        assert!(!promoted.is_learner);
        assert_eq!(promoted.name, "m3");
        assert_eq!(promoted.peer_urls, urls);
        assert!(registry.is_removed(1) && registry.get(1).is_none());
        assert_eq!(registry.peer_url_owner(&urls, 0), Some(3));
        assert_eq!(registry.peer_url_owner(&urls, 3), None);
        assert_eq!(MemberRegistry::load(&store).unwrap(), registry);
    }
}
