//! The values that cross the boundary: log entries, hard state, membership, snapshot
//! descriptions and peer messages. Field names follow `proto/cairn/peer/v1/peer.proto` so the
//! server's mapping is one line per field.

use std::sync::Arc;

use crate::error::ConfChangeDecodeError;

/// A member id. `0` is reserved for "nobody" (no vote, no leader), as in the peer protocol.
pub type NodeId = u64;

/// "Nobody": no vote cast, no known leader.
pub const NO_NODE: NodeId = 0;

/// How to interpret an entry's `data`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
pub enum EntryKind {
    /// Application command (empty for the leader's no-op at the start of its term).
    #[default]
    Normal,
    /// A membership change, encoded with [`ConfChange::encode`].
    ConfChange,
}

/// One Raft log entry. `data` is reference counted so that handing the same entry to the
/// persistence layer, to every follower and to the applier costs no copy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Log position (1-based; index 0 is the empty log's sentinel).
    pub index: u64,
    /// Term in which a leader created the entry.
    pub term: u64,
    /// How to interpret `data`.
    pub kind: EntryKind,
    /// Opaque payload.
    pub data: Arc<[u8]>,
}

/// Bytes an entry counts against message and batch limits: payload plus fixed header.
const ENTRY_HEADER_BYTES: u64 = 24;

impl Entry {
    /// A normal entry.
    pub fn new(index: u64, term: u64, data: impl Into<Arc<[u8]>>) -> Entry {
        Entry {
            index,
            term,
            kind: EntryKind::Normal,
            data: data.into(),
        }
    }

    /// Size used for `max_msg_bytes` and `max_apply_bytes` accounting.
    pub fn size_bytes(&self) -> u64 {
        self.data.len() as u64 + ENTRY_HEADER_BYTES
    }
}

/// The part of a node's state that must be durable before it answers anyone: the current term,
/// the vote cast in it, and the commit index (the latter only saves work on restart).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct HardState {
    /// Latest term this node has seen.
    pub term: u64,
    /// Candidate voted for in `term`, or [`NO_NODE`].
    pub vote: NodeId,
    /// Highest index known committed.
    pub commit: u64,
}

/// Cluster membership: who votes and who only listens. Both lists are sorted and disjoint.
#[derive(Clone, Debug, PartialEq, Eq, Default, Hash)]
pub struct ConfState {
    /// Voting member ids.
    pub voters: Vec<NodeId>,
    /// Non-voting learner ids.
    pub learners: Vec<NodeId>,
}

impl ConfState {
    /// A configuration of the given voters and no learners.
    pub fn with_voters(voters: impl IntoIterator<Item = NodeId>) -> ConfState {
        let mut voters: Vec<NodeId> = voters.into_iter().collect();
        voters.sort_unstable();
        voters.dedup();
        ConfState {
            voters,
            learners: Vec::new(),
        }
    }

    /// Whether `id` may vote.
    pub fn is_voter(&self, id: NodeId) -> bool {
        self.voters.binary_search(&id).is_ok()
    }

    /// Whether `id` is a learner.
    pub fn is_learner(&self, id: NodeId) -> bool {
        self.learners.binary_search(&id).is_ok()
    }

    /// Whether `id` is a member at all.
    pub fn contains(&self, id: NodeId) -> bool {
        self.is_voter(id) || self.is_learner(id)
    }

    /// The configuration after `change`. Changes that do not apply (removing a non-member,
    /// adding an existing voter) leave it unchanged, so that replaying a log is idempotent.
    pub fn applied(&self, change: &ConfChange) -> ConfState {
        let mut next = self.clone();
        match *change {
            ConfChange::AddVoter(id) => {
                next.learners.retain(|&l| l != id);
                if let Err(at) = next.voters.binary_search(&id) {
                    next.voters.insert(at, id);
                }
            }
            ConfChange::AddLearner(id) => {
                if !next.is_voter(id) {
                    if let Err(at) = next.learners.binary_search(&id) {
                        next.learners.insert(at, id);
                    }
                }
            }
            ConfChange::RemoveNode(id) => {
                next.voters.retain(|&v| v != id);
                next.learners.retain(|&l| l != id);
            }
        }
        next
    }

    /// Every member id, voters first.
    pub fn members(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.voters.iter().chain(self.learners.iter()).copied()
    }
}

/// One membership change. Cairn changes membership one server at a time (see the crate docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConfChange {
    /// Add a voter, or promote a learner to voter.
    AddVoter(NodeId),
    /// Add a non-voting learner (a new member catching up).
    AddLearner(NodeId),
    /// Remove a voter or learner.
    RemoveNode(NodeId),
}

/// Format version of an encoded [`ConfChange`] without a context (first byte).
pub const CONF_CHANGE_FORMAT_VERSION: u8 = 1;
/// Format version of an encoded [`ConfChange`] followed by the caller's context.
pub const CONF_CHANGE_WITH_CONTEXT_FORMAT_VERSION: u8 = 2;
/// Encoded length without context: version, operation, node id (little endian).
const CONF_CHANGE_LEN: usize = 10;

impl ConfChange {
    /// The member this change is about.
    pub fn node_id(&self) -> NodeId {
        match *self {
            ConfChange::AddVoter(id) | ConfChange::AddLearner(id) | ConfChange::RemoveNode(id) => {
                id
            }
        }
    }

    /// Encodes as `[version=1][op: 1 add voter, 2 add learner, 3 remove][node id u64 LE]`.
    /// Entries are checksummed by the WAL that stores them, so no checksum here.
    pub fn encode(&self) -> Vec<u8> {
        self.encode_as(CONF_CHANGE_FORMAT_VERSION, &[])
    }

    /// Encodes as version 2: the version 1 layout, then `context` (the caller's bytes about
    /// the change, e.g. the new member's addresses; raft carries them and never reads them).
    pub fn encode_with_context(&self, context: &[u8]) -> Vec<u8> {
        self.encode_as(CONF_CHANGE_WITH_CONTEXT_FORMAT_VERSION, context)
    }

    fn encode_as(&self, version: u8, context: &[u8]) -> Vec<u8> {
        let (op, id) = match *self {
            ConfChange::AddVoter(id) => (1u8, id),
            ConfChange::AddLearner(id) => (2u8, id),
            ConfChange::RemoveNode(id) => (3u8, id),
        };
        let mut out = Vec::with_capacity(CONF_CHANGE_LEN + context.len());
        out.push(version);
        out.push(op);
        out.extend_from_slice(&id.to_le_bytes());
        out.extend_from_slice(context);
        out
    }

    /// Decodes either format, dropping any context.
    pub fn decode(bytes: &[u8]) -> Result<ConfChange, ConfChangeDecodeError> {
        Self::decode_with_context(bytes).map(|(change, _)| change)
    }

    /// Decodes either format; the context is empty for version 1.
    pub fn decode_with_context(bytes: &[u8]) -> Result<(ConfChange, &[u8]), ConfChangeDecodeError> {
        let Some(&version) = bytes.first() else {
            return Err(ConfChangeDecodeError::Length { len: 0 });
        };
        let length_ok = match version {
            CONF_CHANGE_FORMAT_VERSION => bytes.len() == CONF_CHANGE_LEN,
            CONF_CHANGE_WITH_CONTEXT_FORMAT_VERSION => bytes.len() >= CONF_CHANGE_LEN,
            version => return Err(ConfChangeDecodeError::Version { version }),
        };
        if !length_ok {
            return Err(ConfChangeDecodeError::Length { len: bytes.len() });
        }
        let mut id_bytes = [0u8; 8];
        id_bytes.copy_from_slice(&bytes[2..CONF_CHANGE_LEN]);
        let id = u64::from_le_bytes(id_bytes);
        if id == NO_NODE {
            return Err(ConfChangeDecodeError::ZeroNodeId);
        }
        let change = match bytes[1] {
            1 => ConfChange::AddVoter(id),
            2 => ConfChange::AddLearner(id),
            3 => ConfChange::RemoveNode(id),
            op => return Err(ConfChangeDecodeError::Operation { op }),
        };
        Ok((change, &bytes[CONF_CHANGE_LEN..]))
    }
}

/// Describes the point in the log a snapshot covers. The snapshot's bytes are the
/// application's; raft only tracks where they stand.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct SnapshotMeta {
    /// Last log index included.
    pub index: u64,
    /// Term of that entry.
    pub term: u64,
    /// Membership at that index.
    pub conf_state: ConfState,
}

/// Message kinds; numbering follows the peer protocol, plus `Propose` (forwarded proposals).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MessageKind {
    /// Leader -> follower: entries to append (empty = probe).
    Append,
    /// Follower -> leader: result of an append.
    AppendResponse,
    /// Leader -> follower: liveness, commit index, and read-index round in `context`.
    Heartbeat,
    /// Follower -> leader: heartbeat reply (echoes `context`).
    HeartbeatResponse,
    /// Candidate -> all: request a vote.
    Vote,
    /// Vote granted (`reject == false`) or refused.
    VoteResponse,
    /// Pre-candidate -> all: would you vote for me at `term`? (no one's term changes).
    PreVote,
    /// Pre-vote granted or refused.
    PreVoteResponse,
    /// Leader -> follower: install the snapshot described by `snapshot` (bytes travel apart).
    Snapshot,
    /// Leader -> chosen successor: campaign now, without pre-vote.
    TimeoutNow,
    /// Follower -> leader: request a read index for the read named by `context`.
    ReadIndex,
    /// Leader -> follower: the confirmed read index in `index` (`reject` if refused).
    ReadIndexResponse,
    /// Any member -> leader: hand leadership to the member named in `index`.
    TransferLeader,
    /// Follower -> leader: forwarded client proposal in `entries`.
    Propose,
}

/// One peer message. Which fields mean something depends on `kind`; see [`MessageKind`] and
/// the peer protocol's comments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Message type.
    pub kind: MessageKind,
    /// Sender.
    pub from: NodeId,
    /// Recipient.
    pub to: NodeId,
    /// Sender's term (pre-vote: the term it would campaign in).
    pub term: u64,
    /// Term of the entry at `index`.
    pub log_term: u64,
    /// Log index the message refers to.
    pub index: u64,
    /// Entries (append and propose).
    pub entries: Vec<Entry>,
    /// Leader's commit index.
    pub commit: u64,
    /// The request is refused.
    pub reject: bool,
    /// On a rejected append: the follower's last index worth retrying from.
    pub reject_hint: u64,
    /// Opaque context (read request id, campaign type, read round).
    pub context: Vec<u8>,
    /// Snapshot description (snapshot messages only).
    pub snapshot: Option<SnapshotMeta>,
}

impl Message {
    /// A message with every optional field at its default.
    pub fn new(kind: MessageKind, from: NodeId, to: NodeId, term: u64) -> Message {
        Message {
            kind,
            from,
            to,
            term,
            log_term: 0,
            index: 0,
            entries: Vec::new(),
            commit: 0,
            reject: false,
            reject_hint: 0,
            context: Vec::new(),
            snapshot: None,
        }
    }

    /// Whether this is an answer to a request (sent only once the state it reports is durable).
    pub fn is_response(&self) -> bool {
        matches!(
            self.kind,
            MessageKind::AppendResponse
                | MessageKind::HeartbeatResponse
                | MessageKind::VoteResponse
                | MessageKind::PreVoteResponse
                | MessageKind::ReadIndexResponse
        )
    }
}

/// Context marker on `Vote` messages of a campaign started by `TimeoutNow`: voters then ignore
/// their leader lease, because the old leader itself asked for the election.
pub const CAMPAIGN_TRANSFER: &[u8] = b"transfer";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conf_change_round_trips_and_rejects_garbage() {
        for cc in [
            ConfChange::AddVoter(7),
            ConfChange::AddLearner(u64::MAX),
            ConfChange::RemoveNode(1),
        ] {
            assert_eq!(ConfChange::decode(&cc.encode()), Ok(cc));
        }
        assert!(ConfChange::decode(&[]).is_err());
        let mut bad = ConfChange::AddVoter(3).encode();
        bad[0] = 9;
        assert!(ConfChange::decode(&bad).is_err());
        bad[0] = CONF_CHANGE_FORMAT_VERSION;
        bad[1] = 77;
        assert!(ConfChange::decode(&bad).is_err());
        assert!(ConfChange::decode(&ConfChange::AddVoter(0).encode()).is_err());
    }

    #[test]
    fn conf_change_context_travels_and_version_1_stays_exact() {
        let cc = ConfChange::AddLearner(42);
        let bytes = cc.encode_with_context(b"peer urls");
        assert_eq!(bytes[0], CONF_CHANGE_WITH_CONTEXT_FORMAT_VERSION);
        assert_eq!(
            ConfChange::decode_with_context(&bytes),
            Ok((cc, &b"peer urls"[..]))
        );
        assert_eq!(ConfChange::decode(&cc.encode_with_context(&[])), Ok(cc));
        // Version 1 has no room for a context: extra bytes mean a damaged entry.
        let mut long = cc.encode();
        long.push(0);
        assert!(ConfChange::decode(&long).is_err());
        assert!(ConfChange::decode(&bytes[..9]).is_err());
    }

    #[test]
    fn conf_state_changes_keep_voters_and_learners_disjoint() {
        let c = ConfState::with_voters([1, 2, 3]);
        let c = c.applied(&ConfChange::AddLearner(4));
        assert!(c.is_learner(4) && !c.is_voter(4));
        let c = c.applied(&ConfChange::AddVoter(4));
        assert!(c.is_voter(4) && !c.is_learner(4));
        let c = c.applied(&ConfChange::AddLearner(4));
        assert!(
            c.is_voter(4) && !c.is_learner(4),
            "adding a voter as learner is a no-op"
        );
        let c = c.applied(&ConfChange::RemoveNode(2));
        assert_eq!(c.voters, vec![1, 3, 4]);
    }
}
