//! Raft messages to and from the peer protocol (`cairn.peer.v1`): the one place that knows
//! both shapes. A message from the wire is checked (protocol version, cluster, known kind)
//! before Raft sees it.

use std::sync::Arc;

use cairn_raft::{ConfState, Entry, EntryKind, Message, MessageKind, SnapshotMeta};

use crate::proto::cairn::peer::v1 as wire;

/// The peer protocol version this build speaks.
pub const PEER_PROTOCOL_VERSION: u32 = 1;

/// Why a message from a peer was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerMessageError {
    #[error("peer protocol version {0} not supported (local version {PEER_PROTOCOL_VERSION})")]
    Version(u32),
    #[error("cluster id mismatch: message for {got:016x}, this member is in {expected:016x}")]
    Cluster { got: u64, expected: u64 },
    #[error("unknown raft message kind {0}")]
    Kind(i32),
    #[error("unknown entry kind {0}")]
    EntryKind(i32),
}

fn kind_to_wire(kind: MessageKind) -> wire::MessageKind {
    use wire::MessageKind as W;
    match kind {
        MessageKind::Append => W::Append,
        MessageKind::AppendResponse => W::AppendResponse,
        MessageKind::Heartbeat => W::Heartbeat,
        MessageKind::HeartbeatResponse => W::HeartbeatResponse,
        MessageKind::Vote => W::Vote,
        MessageKind::VoteResponse => W::VoteResponse,
        MessageKind::PreVote => W::PreVote,
        MessageKind::PreVoteResponse => W::PreVoteResponse,
        MessageKind::Snapshot => W::Snapshot,
        MessageKind::TimeoutNow => W::TimeoutNow,
        MessageKind::ReadIndex => W::ReadIndex,
        MessageKind::ReadIndexResponse => W::ReadIndexResponse,
        MessageKind::TransferLeader => W::TransferLeader,
        MessageKind::Propose => W::Propose,
    }
}

fn kind_from_wire(kind: i32) -> Result<MessageKind, PeerMessageError> {
    use wire::MessageKind as W;
    Ok(
        match W::try_from(kind).map_err(|_| PeerMessageError::Kind(kind))? {
            W::Unspecified => return Err(PeerMessageError::Kind(kind)),
            W::Append => MessageKind::Append,
            W::AppendResponse => MessageKind::AppendResponse,
            W::Heartbeat => MessageKind::Heartbeat,
            W::HeartbeatResponse => MessageKind::HeartbeatResponse,
            W::Vote => MessageKind::Vote,
            W::VoteResponse => MessageKind::VoteResponse,
            W::PreVote => MessageKind::PreVote,
            W::PreVoteResponse => MessageKind::PreVoteResponse,
            W::Snapshot => MessageKind::Snapshot,
            W::TimeoutNow => MessageKind::TimeoutNow,
            W::ReadIndex => MessageKind::ReadIndex,
            W::ReadIndexResponse => MessageKind::ReadIndexResponse,
            W::TransferLeader => MessageKind::TransferLeader,
            W::Propose => MessageKind::Propose,
        },
    )
}

fn conf_to_wire(conf: &ConfState) -> wire::ConfState {
    wire::ConfState {
        voters: conf.voters.clone(),
        learners: conf.learners.clone(),
    }
}

fn conf_from_wire(conf: Option<wire::ConfState>) -> ConfState {
    let conf = conf.unwrap_or_default();
    ConfState {
        voters: conf.voters,
        learners: conf.learners,
    }
}

/// A Raft message as it goes on the wire.
pub fn to_wire(message: &Message, cluster_id: u64) -> wire::RaftMessage {
    wire::RaftMessage {
        protocol_version: PEER_PROTOCOL_VERSION,
        cluster_id,
        kind: kind_to_wire(message.kind) as i32,
        from: message.from,
        to: message.to,
        term: message.term,
        log_term: message.log_term,
        index: message.index,
        entries: message
            .entries
            .iter()
            .map(|e| wire::Entry {
                index: e.index,
                term: e.term,
                kind: match e.kind {
                    EntryKind::Normal => wire::EntryKind::Normal as i32,
                    EntryKind::ConfChange => wire::EntryKind::ConfChange as i32,
                },
                data: e.data.to_vec(),
            })
            .collect(),
        commit: message.commit,
        reject: message.reject,
        reject_hint: message.reject_hint,
        context: message.context.clone(),
        snapshot: message.snapshot.as_ref().map(meta_to_wire),
    }
}

pub fn meta_to_wire(meta: &SnapshotMeta) -> wire::SnapshotMeta {
    wire::SnapshotMeta {
        index: meta.index,
        term: meta.term,
        conf_state: Some(conf_to_wire(&meta.conf_state)),
    }
}

pub fn meta_from_wire(meta: wire::SnapshotMeta) -> SnapshotMeta {
    SnapshotMeta {
        index: meta.index,
        term: meta.term,
        conf_state: conf_from_wire(meta.conf_state),
    }
}

/// A message from the wire, checked, as Raft takes it.
pub fn from_wire(message: wire::RaftMessage, cluster_id: u64) -> Result<Message, PeerMessageError> {
    if message.protocol_version != PEER_PROTOCOL_VERSION {
        return Err(PeerMessageError::Version(message.protocol_version));
    }
    if message.cluster_id != cluster_id {
        return Err(PeerMessageError::Cluster {
            got: message.cluster_id,
            expected: cluster_id,
        });
    }
    let mut entries = Vec::with_capacity(message.entries.len());
    for e in message.entries {
        let kind = match wire::EntryKind::try_from(e.kind) {
            Ok(wire::EntryKind::Normal) => EntryKind::Normal,
            Ok(wire::EntryKind::ConfChange) => EntryKind::ConfChange,
            Err(_) => return Err(PeerMessageError::EntryKind(e.kind)),
        };
        entries.push(Entry {
            index: e.index,
            term: e.term,
            kind,
            data: Arc::from(e.data),
        });
    }
    Ok(Message {
        kind: kind_from_wire(message.kind)?,
        from: message.from,
        to: message.to,
        term: message.term,
        log_term: message.log_term,
        index: message.index,
        entries,
        commit: message.commit,
        reject: message.reject,
        reject_hint: message.reject_hint,
        context: message.context,
        snapshot: message.snapshot.map(meta_from_wire),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_survives_the_wire() {
        let kinds = [
            MessageKind::Append,
            MessageKind::AppendResponse,
            MessageKind::Heartbeat,
            MessageKind::HeartbeatResponse,
            MessageKind::Vote,
            MessageKind::VoteResponse,
            MessageKind::PreVote,
            MessageKind::PreVoteResponse,
            MessageKind::Snapshot,
            MessageKind::TimeoutNow,
            MessageKind::ReadIndex,
            MessageKind::ReadIndexResponse,
            MessageKind::TransferLeader,
            MessageKind::Propose,
        ];
        for kind in kinds {
            let mut message = Message::new(kind, 1, 2, 7);
            message.log_term = 6;
            message.index = 40;
            message.commit = 39;
            message.reject = true;
            message.reject_hint = 12;
            message.context = b"ctx".to_vec();
            message.entries = vec![
                Entry {
                    index: 41,
                    term: 7,
                    kind: EntryKind::Normal,
                    data: Arc::from(&b"put"[..]),
                },
                Entry {
                    index: 42,
                    term: 7,
                    kind: EntryKind::ConfChange,
                    data: Arc::from(&b""[..]),
                },
            ];
            message.snapshot = Some(SnapshotMeta {
                index: 30,
                term: 5,
                conf_state: ConfState {
                    voters: vec![1, 2, 3],
                    learners: vec![4],
                },
            });
            let wire = to_wire(&message, 99);
            let bytes = prost::Message::encode_to_vec(&wire);
            let back: wire::RaftMessage = prost::Message::decode(bytes.as_slice()).unwrap();
            assert_eq!(from_wire(back, 99).unwrap(), message);
        }
    }

    #[test]
    fn messages_of_another_version_cluster_or_kind_are_refused() {
        let message = to_wire(&Message::new(MessageKind::Heartbeat, 1, 2, 3), 99);
        assert_eq!(
            from_wire(message.clone(), 98),
            Err(PeerMessageError::Cluster {
                got: 99,
                expected: 98
            })
        );
        let newer = wire::RaftMessage {
            protocol_version: 2,
            ..message.clone()
        };
        assert_eq!(from_wire(newer, 99), Err(PeerMessageError::Version(2)));
        let unknown = wire::RaftMessage {
            kind: 77,
            ..message.clone()
        };
        assert_eq!(from_wire(unknown, 99), Err(PeerMessageError::Kind(77)));
        let unspecified = wire::RaftMessage { kind: 0, ..message };
        assert_eq!(from_wire(unspecified, 99), Err(PeerMessageError::Kind(0)));
    }
}
