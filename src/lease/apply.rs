//! Applying lease entries inside the apply loop's write batch: the lease record and the key
//! changes a lease operation causes commit in one storage transaction.

use std::time::Instant;

use prost::Message;

use super::table::record_key;
use super::Leases;
use crate::kv::KvError;
use crate::mvcc::{Backend, Bucket, KeyRange, WriteBatch};
use crate::proto::cairn::entry::v1::LeaseCheckpoints;
use crate::proto::etcdserverpb::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseRevokeRequest, LeaseRevokeResponse, ResponseHeader,
};

fn header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader {
        revision,
        ..Default::default()
    })
}

/// A grant: the lease and its record.
pub fn apply_grant<B: Backend>(
    batch: &mut WriteBatch<'_, B>,
    leases: &mut Leases,
    request: &LeaseGrantRequest,
    proposed_at_unix_ms: u64,
    now: Instant,
) -> Result<LeaseGrantResponse, KvError> {
    // The proposer chose an id; an entry without one is refused as etcd refuses it.
    if request.id == 0 {
        return Err(KvError::LeaseNotFound);
    }
    let record = leases.table_mut().grant(
        request.id,
        request.ttl,
        proposed_at_unix_ms,
        now,
        super::unix_ms_now(),
    )?;
    if let Err(err) = batch.put_record(
        Bucket::Lease,
        &record_key(request.id),
        &record.encode_to_vec(),
    ) {
        // The store stops on a storage failure; keep the table as the disk has it anyway.
        let _ = leases.table_mut().revoke(request.id);
        return Err(err.into());
    }
    leases.granted(request.id, now);
    Ok(LeaseGrantResponse {
        header: header(batch.read_revision()),
        id: request.id,
        ttl: request.ttl,
        error: String::new(),
    })
}

/// A revoke: every attached key is deleted in one revision, with the lease's record.
pub fn apply_revoke<B: Backend>(
    batch: &mut WriteBatch<'_, B>,
    leases: &mut Leases,
    request: &LeaseRevokeRequest,
) -> Result<LeaseRevokeResponse, KvError> {
    let keys = leases.table_mut().revoke(request.id)?;
    leases.revoked(request.id);
    for key in keys {
        let deleted = batch.delete_range(&KeyRange::Single(key))?;
        // The table attaches a key only while its latest version names the lease.
        debug_assert_eq!(deleted.len(), 1, "an attached key exists");
    }
    batch.delete_record(Bucket::Lease, &record_key(request.id))?;
    Ok(LeaseRevokeResponse {
        header: header(batch.read_revision()),
    })
}

/// The leader's checkpoints: each live lease's time left, recorded. Leases revoked since
/// the checkpoint was proposed are skipped.
pub fn apply_checkpoints<B: Backend>(
    batch: &mut WriteBatch<'_, B>,
    leases: &mut Leases,
    request: &LeaseCheckpoints,
    proposed_at_unix_ms: u64,
    now: Instant,
) -> Result<(), KvError> {
    let now_unix_ms = super::unix_ms_now();
    for checkpoint in &request.checkpoints {
        let Some(record) = leases.table_mut().checkpoint(
            checkpoint.id,
            checkpoint.remaining_ms,
            proposed_at_unix_ms,
            now,
            now_unix_ms,
        ) else {
            continue;
        };
        batch.put_record(
            Bucket::Lease,
            &record_key(checkpoint.id),
            &record.encode_to_vec(),
        )?;
    }
    Ok(())
}
