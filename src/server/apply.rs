//! Applying committed Raft entries to the key space: a run of entries becomes one storage
//! transaction (one commit for many client writes), each entry still its own etcd
//! transaction with its own revision, and the applied Raft index is recorded in the same
//! commit, so a restart replays exactly the entries after it.

use std::time::Instant;

use prost::Message;

use super::registry::MemberRegistry;
use crate::kv::{execute_delete, execute_put, execute_txn, KvError};
use crate::lease::apply::{apply_checkpoints, apply_grant, apply_revoke};
use crate::lease::Leases;
use crate::mvcc::{Backend, Committed, MvccError, MvccStore, WriteBatch};
use crate::proto::cairn::entry::v1::{request::Op, MemberAttributes, MemberChange, Request};
use crate::proto::etcdserverpb::{
    CompactionResponse, DeleteRangeResponse, LeaseGrantResponse, LeaseRevokeResponse, PutResponse,
    ResponseHeader, TxnResponse,
};
use crate::proto::mvccpb::Event;

/// The entry payload format this build writes (and the newest it reads): 2 added leases, 3
/// member attributes, 4 member peer-URL updates.
pub const ENTRY_FORMAT_VERSION: u32 = 5;

/// Where a member's published attributes are kept in bucket `meta`: this prefix and the member
/// id (8 bytes, big-endian).
pub const META_MEMBER_ATTRIBUTES: &[u8] = b"member_attributes/";

/// The meta key of a member's attributes.
pub fn member_attributes_key(member_id: u64) -> Vec<u8> {
    [META_MEMBER_ATTRIBUTES, &member_id.to_be_bytes()[..]].concat()
}

/// The response to one applied request (headers carry only the revision).
#[derive(Debug, Clone, PartialEq)]
pub enum Applied {
    Put(PutResponse),
    DeleteRange(DeleteRangeResponse),
    Txn(TxnResponse),
    Compaction(CompactionResponse),
    LeaseGrant(LeaseGrantResponse),
    LeaseRevoke(LeaseRevokeResponse),
    /// The leader's lease checkpoints were recorded.
    LeaseCheckpoint,
    /// A member published its attributes.
    MemberAttributes(MemberAttributes),
    /// A membership change applied (the registry has it).
    Membership(cairn_raft::ConfChange),
    /// A member's peer URLs changed.
    MemberPeerUrls,
}

/// The outcome of one request, for the member waiting on it.
#[derive(Debug)]
pub struct AppliedRequest {
    /// The log index of the entry that held it.
    pub index: u64,
    pub id: u64,
    pub proposer: u64,
    pub result: Result<Applied, KvError>,
}

/// What a committed entry holds.
#[derive(Debug, Clone)]
pub enum EntryPayload {
    /// A client request.
    Request(Request),
    /// A committed membership change and what its entry said about it.
    Membership {
        change: cairn_raft::ConfChange,
        context: Option<MemberChange>,
    },
    /// Nothing for the key space (a leader's empty entry, an undecodable membership change
    /// that raft ignored too).
    Nothing,
    /// A deposed leader's lease duty that reached the log in a later term: answered with
    /// "leader changed", not applied (see [`superseded`]).
    Superseded(Request),
}

/// Whether `request`, committed in an entry of term `entry_term`, is a lease duty decided by
/// the leader of another term. A leader's lease clock is the authority on expiry only within
/// its own term: by the time a paused or cut-off leader's decision reaches the log through
/// its successor (proposals are forwarded), the successor may have renewed the lease.
pub fn superseded(request: &Request, entry_term: u64) -> bool {
    request.leader_term != 0 && request.leader_term != entry_term
}

/// Failures that leave the key space in a state the member cannot vouch for: it stops.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("storage failed while applying entry {index}: {source}")]
    Storage {
        index: u64,
        #[source]
        source: MvccError,
    },
    #[error("entry {index} has payload format version {version}; this build applies up to {ENTRY_FORMAT_VERSION}")]
    NewerFormat { index: u64, version: u32 },
    #[error("entry {index} does not decode: {reason}")]
    Undecodable { index: u64, reason: String },
    #[error("entry {index} failed after changing the key space: {reason}")]
    Partial { index: u64, reason: String },
}

/// Format of the `MemberChange` context this build writes (and the newest it reads).
pub const MEMBER_CHANGE_FORMAT_VERSION: u32 = 1;

/// Decodes a membership-change entry's data. A change raft cannot decode is ignored by raft
/// on every member alike, so it is nothing here too.
pub fn decode_membership(index: u64, data: &[u8]) -> Result<EntryPayload, ApplyError> {
    let Ok((change, context)) = cairn_raft::ConfChange::decode_with_context(data) else {
        return Ok(EntryPayload::Nothing);
    };
    let context = if context.is_empty() {
        None
    } else {
        Some(decode_versioned(
            index,
            context,
            MEMBER_CHANGE_FORMAT_VERSION,
            |c: &MemberChange| c.format_version,
        )?)
    };
    Ok(EntryPayload::Membership { change, context })
}

/// Decodes a protobuf payload of entry `index`, refusing one of a format newer than
/// `newest` (a member must stop rather than apply what it may misread).
fn decode_versioned<T: Message + Default>(
    index: u64,
    data: &[u8],
    newest: u32,
    version_of: impl Fn(&T) -> u32,
) -> Result<T, ApplyError> {
    let decoded = T::decode(data).map_err(|err| ApplyError::Undecodable {
        index,
        reason: err.to_string(),
    })?;
    let version = version_of(&decoded);
    if version > newest {
        return Err(ApplyError::NewerFormat { index, version });
    }
    Ok(decoded)
}

/// Decodes a normal entry's data; empty data is a leader's no-op entry.
pub fn decode_payload(index: u64, data: &[u8]) -> Result<EntryPayload, ApplyError> {
    if data.is_empty() {
        return Ok(EntryPayload::Nothing);
    }
    let request = decode_versioned(index, data, ENTRY_FORMAT_VERSION, |r: &Request| {
        r.format_version
    })?;
    Ok(EntryPayload::Request(request))
}

/// Everything a run of entries did.
#[derive(Debug, Default)]
pub struct AppliedRun {
    pub requests: Vec<AppliedRequest>,
    /// Key-space changes in revision order (for watchers).
    pub events: Vec<Event>,
    /// Revision after the run.
    pub revision: i64,
    /// How long each storage commit of the run took.
    pub commit_durations: Vec<std::time::Duration>,
    /// Whether the members or their peer URLs changed.
    pub membership_changed: bool,
}

/// Applies `entries` (index, payload) in order; lease entries change `leases`, membership
/// entries `registry`, and every key change is shown to the lease table (attachments). `now`
/// is when this member applies.
pub fn apply_run<B: Backend>(
    store: &MvccStore<B>,
    entries: &[(u64, EntryPayload)],
    leases: &mut Leases,
    registry: &mut MemberRegistry,
    now: Instant,
) -> Result<AppliedRun, ApplyError> {
    apply_run_answering(store, entries, leases, registry, now, None)
}

/// As [`apply_run`], and `answer` (if given) is handed the run just before its last storage
/// commit, its revision acknowledged (see [`MvccStore::acknowledge`]): the writers can be
/// answered while the commit is written, off their critical path. The entries are in the
/// Raft log already, so a commit that then fails loses nothing: the restart applies them.
pub fn apply_run_answering<B: Backend>(
    store: &MvccStore<B>,
    entries: &[(u64, EntryPayload)],
    leases: &mut Leases,
    registry: &mut MemberRegistry,
    now: Instant,
    answer: Option<&mut dyn FnMut(&mut AppliedRun)>,
) -> Result<AppliedRun, ApplyError> {
    let mut run = AppliedRun::default();
    let Some(&(last_index, _)) = entries.last() else {
        run.revision = store.current_revision();
        return Ok(run);
    };
    let storage = |index: u64| move |source: MvccError| ApplyError::Storage { index, source };
    let mut batch = store.write().map_err(storage(entries[0].0))?;
    let mut batch_last_index = 0;
    for (index, payload) in entries {
        let request = match payload {
            EntryPayload::Request(request) => request,
            EntryPayload::Membership { change, context } => {
                let record = context.as_ref().and_then(|c| c.member.as_ref());
                registry
                    .apply_change(&mut batch, *change, record)
                    .map_err(storage(*index))?;
                run.membership_changed = true;
                batch_last_index = *index;
                if let Some(context) = context.as_ref().filter(|c| c.id != 0) {
                    run.requests.push(AppliedRequest {
                        index: *index,
                        id: context.id,
                        proposer: context.proposer,
                        result: Ok(Applied::Membership(*change)),
                    });
                }
                continue;
            }
            EntryPayload::Nothing => {
                batch_last_index = *index;
                continue;
            }
            EntryPayload::Superseded(request) => {
                batch_last_index = *index;
                run.requests.push(AppliedRequest {
                    index: *index,
                    id: request.id,
                    proposer: request.proposer,
                    result: Err(KvError::LeaderChanged),
                });
                continue;
            }
        };
        let result = match &request.op {
            Some(Op::Compaction(compaction)) => {
                // Compaction is its own storage transaction: finish the batch before it.
                finish(batch, batch_last_index, &mut run, None).map_err(storage(*index))?;
                #[cfg(feature = "failpoints")]
                crate::failpoints::reach("compaction");
                let result = store
                    .compact(compaction.revision, Some(*index))
                    .map(|()| {
                        Applied::Compaction(CompactionResponse {
                            header: header(store.current_revision()),
                        })
                    })
                    .map_err(KvError::from);
                if let Err(KvError::Storage(source)) = result {
                    return Err(ApplyError::Storage {
                        index: *index,
                        source,
                    });
                }
                batch = store.write().map_err(storage(*index))?;
                result
            }
            op => {
                let changes_before = batch.change_count();
                let write = Write {
                    index: *index,
                    op: op.as_ref(),
                    proposed_at_unix_ms: request.proposed_at_unix_ms,
                    now,
                };
                if matches!(op, Some(Op::MemberPeerUrls(_))) {
                    run.membership_changed = true;
                }
                let result = apply_write(&mut batch, &write, leases, registry)?;
                leases
                    .table_mut()
                    .observe(batch.changes_since(changes_before));
                result
            }
        };
        batch_last_index = *index;
        run.requests.push(AppliedRequest {
            index: *index,
            id: request.id,
            proposer: request.proposer,
            result,
        });
    }
    debug_assert_eq!(batch_last_index, last_index, "every entry was applied");
    finish(batch, last_index, &mut run, answer).map_err(storage(last_index))?;
    Ok(run)
}

fn header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader {
        revision,
        ..Default::default()
    })
}

/// Commits the batch with the applied index, collecting its events; `answer` first, if given.
fn finish<B: Backend>(
    mut batch: WriteBatch<'_, B>,
    applied_index: u64,
    run: &mut AppliedRun,
    answer: Option<&mut dyn FnMut(&mut AppliedRun)>,
) -> Result<(), MvccError> {
    if applied_index > 0 {
        batch.set_applied_index(applied_index)?;
    }
    if let Some(answer) = answer {
        batch.acknowledge();
        answer(run);
    }
    let started = std::time::Instant::now();
    #[cfg(feature = "failpoints")]
    crate::failpoints::reach("btree-commit");
    let Committed { revision, events } = batch.commit()?;
    #[cfg(feature = "failpoints")]
    crate::failpoints::reach("btree-commit-after");
    run.commit_durations.push(started.elapsed());
    run.events.extend(events);
    run.revision = revision;
    Ok(())
}

/// One write entry, as `apply_write` needs it.
struct Write<'e> {
    index: u64,
    op: Option<&'e Op>,
    proposed_at_unix_ms: u64,
    now: Instant,
}

/// One write request as one etcd transaction of the batch.
fn apply_write<B: Backend>(
    batch: &mut WriteBatch<'_, B>,
    write: &Write<'_>,
    leases: &mut Leases,
    registry: &mut MemberRegistry,
) -> Result<Result<Applied, KvError>, ApplyError> {
    let index = write.index;
    let before = batch.read_revision();
    let result = match write.op {
        Some(Op::Put(put)) => {
            let table = leases.table();
            execute_put(batch, put, &|id| table.contains(id)).map(Applied::Put)
        }
        Some(Op::DeleteRange(delete)) => execute_delete(batch, delete).map(Applied::DeleteRange),
        Some(Op::Txn(txn)) => {
            let table = leases.table();
            execute_txn(batch, txn, &|id| table.contains(id)).map(Applied::Txn)
        }
        Some(Op::LeaseGrant(grant)) => {
            apply_grant(batch, leases, grant, write.proposed_at_unix_ms, write.now)
                .map(Applied::LeaseGrant)
        }
        Some(Op::LeaseRevoke(revoke)) => {
            apply_revoke(batch, leases, revoke).map(Applied::LeaseRevoke)
        }
        Some(Op::LeaseCheckpoints(checkpoints)) => apply_checkpoints(
            batch,
            leases,
            checkpoints,
            write.proposed_at_unix_ms,
            write.now,
        )
        .map(|()| Applied::LeaseCheckpoint),
        Some(Op::MemberAttributes(attributes)) => batch
            .put_record(
                crate::mvcc::Bucket::Meta,
                &member_attributes_key(attributes.member_id),
                &attributes.encode_to_vec(),
            )
            .map(|()| Applied::MemberAttributes(attributes.clone()))
            .map_err(KvError::from),
        Some(Op::MemberPeerUrls(update)) => registry
            .apply_peer_urls(batch, update.member_id, &update.peer_urls)
            .map_err(KvError::from)
            .and_then(|known| {
                known
                    .then_some(Applied::MemberPeerUrls)
                    .ok_or(KvError::MemberNotFound)
            }),
        // An entry without an operation changes nothing (a newer member's no-op kind).
        None | Some(Op::Compaction(_)) => Ok(Applied::Txn(TxnResponse::default())),
    };
    match result {
        Err(KvError::Storage(source)) => return Err(ApplyError::Storage { index, source }),
        Err(err) if batch.read_revision() != before => {
            return Err(ApplyError::Partial {
                index,
                reason: err.to_string(),
            })
        }
        _ => {}
    }
    batch.end_txn();
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lease::{LeaseTable, LeaseTiming};
    use crate::mvcc::{KeyRange, MemBackend, RangeOptions};
    use crate::proto::etcdserverpb::{CompactionRequest, PutRequest};

    fn no_leases() -> Leases {
        Leases::new(
            LeaseTable::default(),
            LeaseTiming::new(std::time::Duration::from_secs(1)),
        )
    }

    fn put(id: u64, key: &str) -> EntryPayload {
        EntryPayload::Request(Request {
            format_version: 1,
            id,
            proposer: 9,
            proposed_at_unix_ms: 0,
            leader_term: 0,
            op: Some(Op::Put(PutRequest {
                key: key.into(),
                value: b"v".to_vec(),
                ..Default::default()
            })),
        })
    }

    #[test]
    fn a_run_applies_each_request_as_its_own_revision_and_records_the_index() {
        let store = MvccStore::open(MemBackend::default()).unwrap();
        let entries = vec![
            (1, EntryPayload::Nothing),
            (2, put(10, "a")),
            (3, put(11, "b")),
        ];
        let run = apply_run(
            &store,
            &entries,
            &mut no_leases(),
            &mut MemberRegistry::default(),
            Instant::now(),
        )
        .unwrap();
        assert_eq!(run.revision, 3);
        assert_eq!(run.events.len(), 2);
        let revisions: Vec<i64> = run
            .requests
            .iter()
            .map(|r| match r.result.as_ref().unwrap() {
                Applied::Put(p) => p.header.as_ref().unwrap().revision,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(revisions, [2, 3]);
        assert_eq!(store.applied_index().unwrap(), 3);
    }

    #[test]
    fn a_failed_request_is_answered_and_changes_nothing() {
        let store = MvccStore::open(MemBackend::default()).unwrap();
        let missing = EntryPayload::Request(Request {
            format_version: 1,
            id: 5,
            proposer: 9,
            proposed_at_unix_ms: 0,
            leader_term: 0,
            op: Some(Op::Put(PutRequest {
                key: b"k".to_vec(),
                ignore_value: true,
                ..Default::default()
            })),
        });
        let run = apply_run(
            &store,
            &[(1, missing), (2, put(6, "k"))],
            &mut no_leases(),
            &mut MemberRegistry::default(),
            Instant::now(),
        )
        .unwrap();
        assert!(matches!(run.requests[0].result, Err(KvError::KeyNotFound)));
        assert_eq!(run.revision, 2, "only the second request made a revision");
    }

    #[test]
    fn a_lease_duty_applies_only_in_the_term_of_the_leader_that_decided_it() {
        let duty = |leader_term| Request {
            leader_term,
            op: Some(Op::LeaseRevoke(
                crate::proto::etcdserverpb::LeaseRevokeRequest { id: 7 },
            )),
            ..Default::default()
        };
        assert!(
            !superseded(&duty(0), 9),
            "a client's request is never superseded"
        );
        assert!(!superseded(&duty(4), 4), "committed in its leader's term");
        assert!(
            superseded(&duty(2), 4),
            "a deposed leader's, forwarded to term 4"
        );
        assert!(
            superseded(&duty(4), 2),
            "an old term's entry with a newer decision"
        );
    }

    #[test]
    fn a_superseded_duty_is_answered_leader_changed_and_changes_nothing() {
        let store = MvccStore::open(MemBackend::default()).unwrap();
        let stale = EntryPayload::Superseded(Request {
            id: 5,
            proposer: 9,
            leader_term: 2,
            ..match put(5, "gone") {
                EntryPayload::Request(request) => request,
                _ => unreachable!("put builds a request"),
            }
        });
        let run = apply_run(
            &store,
            &[(1, stale), (2, put(6, "k"))],
            &mut no_leases(),
            &mut MemberRegistry::default(),
            Instant::now(),
        )
        .unwrap();
        assert_eq!((run.requests[0].id, run.requests[0].proposer), (5, 9));
        assert!(matches!(
            run.requests[0].result,
            Err(KvError::LeaderChanged)
        ));
        assert_eq!(run.revision, 2, "only the second request made a revision");
    }

    #[test]
    fn compaction_splits_the_run_and_is_recorded_with_its_index() {
        let store = MvccStore::open(MemBackend::default()).unwrap();
        let compact = |rev| {
            EntryPayload::Request(Request {
                format_version: 1,
                id: 7,
                proposer: 9,
                proposed_at_unix_ms: 0,
                leader_term: 0,
                op: Some(Op::Compaction(CompactionRequest {
                    revision: rev,
                    physical: false,
                })),
            })
        };
        let entries = vec![
            (1, put(1, "a")),
            (2, put(2, "a")),
            (3, compact(3)),
            (4, put(3, "b")),
            (5, compact(2)),
        ];
        let run = apply_run(
            &store,
            &entries,
            &mut no_leases(),
            &mut MemberRegistry::default(),
            Instant::now(),
        )
        .unwrap();
        assert!(run.requests[2].result.is_ok());
        assert!(matches!(run.requests[4].result, Err(KvError::Compacted)));
        assert_eq!(store.compacted_revision(), 3);
        assert_eq!(store.applied_index().unwrap(), 5);
        let old = store.range(
            &KeyRange::Single(b"a".to_vec()),
            RangeOptions {
                rev: 2,
                ..Default::default()
            },
        );
        assert!(matches!(old, Err(MvccError::Compacted { .. })));
    }

    #[test]
    fn a_storage_failure_while_applying_stops_the_member() {
        use crate::mvcc::backend::FailingBackend;
        let store = MvccStore::open(FailingBackend::default()).unwrap();
        apply_run(
            &store,
            &[(1, put(1, "a"))],
            &mut no_leases(),
            &mut MemberRegistry::default(),
            Instant::now(),
        )
        .unwrap();
        store
            .backend()
            .fail_commits
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let failed = apply_run(
            &store,
            &[(2, put(2, "b")), (3, put(3, "c"))],
            &mut no_leases(),
            &mut MemberRegistry::default(),
            Instant::now(),
        );
        assert!(
            matches!(failed, Err(ApplyError::Storage { index: 3, .. })),
            "{failed:?}"
        );
        // The applied index stays where the last durable commit left it: a restart replays 2..3.
        let reopened = MvccStore::open(store.into_backend().inner).unwrap();
        assert_eq!(reopened.applied_index().unwrap(), 1);
        assert_eq!(reopened.current_revision(), 2);
    }

    #[test]
    fn payloads_of_a_newer_format_stop_the_member() {
        let newer = Request {
            format_version: ENTRY_FORMAT_VERSION + 1,
            ..Default::default()
        }
        .encode_to_vec();
        assert!(matches!(
            decode_payload(4, &newer),
            Err(ApplyError::NewerFormat { index: 4, version }) if version == ENTRY_FORMAT_VERSION + 1
        ));
        let newer_change = cairn_raft::ConfChange::AddLearner(5).encode_with_context(
            &MemberChange {
                format_version: MEMBER_CHANGE_FORMAT_VERSION + 1,
                ..Default::default()
            }
            .encode_to_vec(),
        );
        assert!(matches!(
            decode_membership(6, &newer_change),
            Err(ApplyError::NewerFormat { index: 6, .. })
        ));
        // A change raft itself cannot read is ignored on every member alike.
        assert!(matches!(
            decode_membership(6, &[9, 9]),
            Ok(EntryPayload::Nothing)
        ));
        assert!(matches!(
            decode_payload(4, &[0xff, 0xff]),
            Err(ApplyError::Undecodable { .. })
        ));
        assert!(matches!(decode_payload(4, &[]), Ok(EntryPayload::Nothing)));
    }
}
