//! The applied lease state every member holds alike: which leases exist, their TTLs, the keys
//! attached to each, and how much time each had left at its last grant or checkpoint.
//!
//! Everything here changes only by applying Raft entries (and loading at start), so every
//! member's table is the same at the same applied index. The one local fact is `as_of`, the
//! monotonic instant at which this member learned a lease's `remaining` time.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use prost::Message;

use crate::proto::cairn::lease::v1::LeaseRecord;
use crate::proto::mvccpb::{event::EventType, Event};

/// The stored lease record format this build writes and reads.
pub const LEASE_RECORD_FORMAT_VERSION: u32 = 1;

/// etcd's largest TTL (`MaxLeaseTTL`, about 285 years).
pub const MAX_LEASE_TTL_SECONDS: i64 = 9_000_000_000;

/// A lease as the applied state knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Lease {
    pub id: i64,
    /// Granted TTL, seconds.
    pub ttl_seconds: i64,
    /// Keys attached to the lease (their latest version names it).
    pub keys: BTreeSet<Vec<u8>>,
    /// Time left as of `as_of`, from the last grant or checkpoint applied (or the load).
    pub remaining: Duration,
    pub as_of: Instant,
    /// The stored record's facts (identical on every member).
    record: LeaseRecord,
}

impl Lease {
    /// The instant the lease runs out if nobody renews it, as this member last learned.
    pub fn applied_deadline(&self) -> Instant {
        self.as_of + self.remaining
    }

    pub fn ttl(&self) -> Duration {
        Duration::from_secs(u64::try_from(self.ttl_seconds).unwrap_or(0))
    }
}

/// Why a lease operation was refused (the text is etcd's).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseError {
    #[error("etcdserver: requested lease not found")]
    NotFound,
    #[error("etcdserver: lease already exists")]
    Exists,
    #[error("etcdserver: too large lease TTL")]
    TtlTooLarge,
}

/// A stored lease record that cannot be used: the member refuses to start.
#[derive(Debug, thiserror::Error)]
pub enum LeaseLoadError {
    #[error("lease record {key:02x?} does not decode: {reason}")]
    Undecodable { key: Vec<u8>, reason: String },
    #[error("lease record {id:016x} has format version {version}; this build reads up to {LEASE_RECORD_FORMAT_VERSION}")]
    NewerFormat { id: i64, version: u32 },
    #[error("lease record stored under {key:02x?} names lease {id:016x}")]
    Misfiled { key: Vec<u8>, id: i64 },
}

/// The lease bucket's key for a lease id.
pub fn record_key(id: i64) -> [u8; 8] {
    id.to_be_bytes()
}

/// Every lease, and which lease each leased key is attached to.
#[derive(Debug, Default)]
pub struct LeaseTable {
    leases: BTreeMap<i64, Lease>,
    /// The lease each attached key's latest version names.
    key_leases: HashMap<Vec<u8>, i64>,
}

impl LeaseTable {
    /// Rebuilds the table from stored records. Time the member was down counts against each
    /// lease: its remaining time is the record's less the wall-clock time since the record's
    /// checkpoint (never less than zero; a clock that went backwards counts as no time).
    pub fn load(
        records: impl IntoIterator<Item = (Vec<u8>, Vec<u8>)>,
        now: Instant,
        now_unix_ms: u64,
    ) -> Result<Self, LeaseLoadError> {
        let mut table = LeaseTable::default();
        for (key, value) in records {
            let record = LeaseRecord::decode(value.as_slice()).map_err(|err| {
                LeaseLoadError::Undecodable {
                    key: key.clone(),
                    reason: err.to_string(),
                }
            })?;
            if record.format_version > LEASE_RECORD_FORMAT_VERSION {
                return Err(LeaseLoadError::NewerFormat {
                    id: record.id,
                    version: record.format_version,
                });
            }
            if key.as_slice() != record_key(record.id) {
                return Err(LeaseLoadError::Misfiled { key, id: record.id });
            }
            let down_ms = now_unix_ms.saturating_sub(record.checkpoint_unix_ms);
            let remaining_ms = u64::try_from(record.remaining_ms)
                .unwrap_or(0)
                .saturating_sub(down_ms);
            table.leases.insert(
                record.id,
                Lease {
                    id: record.id,
                    ttl_seconds: record.ttl_seconds,
                    keys: BTreeSet::new(),
                    remaining: Duration::from_millis(remaining_ms),
                    as_of: now,
                    record,
                },
            );
        }
        Ok(table)
    }

    /// Attaches a key found in the key space at start to its lease; false if the lease does
    /// not exist (the key is then left unattached, as etcd leaves it).
    pub fn attach_loaded_key(&mut self, key: &[u8], id: i64) -> bool {
        let Some(lease) = self.leases.get_mut(&id) else {
            return false;
        };
        lease.keys.insert(key.to_vec());
        self.key_leases.insert(key.to_vec(), id);
        true
    }

    pub fn contains(&self, id: i64) -> bool {
        self.leases.contains_key(&id)
    }

    pub fn get(&self, id: i64) -> Option<&Lease> {
        self.leases.get(&id)
    }

    pub fn len(&self) -> usize {
        self.leases.len()
    }

    pub fn is_empty(&self) -> bool {
        self.leases.is_empty()
    }

    /// Every lease, by id.
    pub fn iter(&self) -> impl Iterator<Item = &Lease> {
        self.leases.values()
    }

    /// Applies a grant; returns the record to store. `ttl_seconds` is final (the proposer
    /// applied the minimum-TTL rule).
    pub fn grant(
        &mut self,
        id: i64,
        ttl_seconds: i64,
        proposed_at_unix_ms: u64,
        now: Instant,
        now_unix_ms: u64,
    ) -> Result<LeaseRecord, LeaseError> {
        if ttl_seconds > MAX_LEASE_TTL_SECONDS {
            return Err(LeaseError::TtlTooLarge);
        }
        if self.leases.contains_key(&id) {
            return Err(LeaseError::Exists);
        }
        let ttl_ms = ttl_seconds.max(0).saturating_mul(1000);
        let record = LeaseRecord {
            format_version: LEASE_RECORD_FORMAT_VERSION,
            id,
            ttl_seconds,
            remaining_ms: ttl_ms,
            checkpoint_unix_ms: proposed_at_unix_ms,
        };
        self.leases.insert(
            id,
            Lease {
                id,
                ttl_seconds,
                keys: BTreeSet::new(),
                remaining: since_proposed(ttl_ms, proposed_at_unix_ms, now_unix_ms),
                as_of: now,
                record,
            },
        );
        Ok(record)
    }

    /// Applies a revoke: the lease is gone; returns the keys attached to it, in key order
    /// (the caller deletes them in the same revision).
    pub fn revoke(&mut self, id: i64) -> Result<Vec<Vec<u8>>, LeaseError> {
        let lease = self.leases.remove(&id).ok_or(LeaseError::NotFound)?;
        Ok(lease.keys.into_iter().collect())
    }

    /// Applies the leader's checkpoint of one lease; returns the record to store, or None
    /// when the lease is gone by now (revoked after the checkpoint was proposed).
    pub fn checkpoint(
        &mut self,
        id: i64,
        remaining_ms: i64,
        proposed_at_unix_ms: u64,
        now: Instant,
        now_unix_ms: u64,
    ) -> Option<LeaseRecord> {
        let lease = self.leases.get_mut(&id)?;
        let ttl_ms = lease.ttl_seconds.max(0).saturating_mul(1000);
        // A checkpoint never promises more than the TTL, whatever the proposer sent.
        let remaining_ms = remaining_ms.clamp(0, ttl_ms);
        lease.remaining = since_proposed(remaining_ms, proposed_at_unix_ms, now_unix_ms);
        lease.as_of = now;
        lease.record.remaining_ms = remaining_ms;
        lease.record.checkpoint_unix_ms = proposed_at_unix_ms;
        Some(lease.record)
    }

    /// Follows key changes: a put attaches its key to the lease it names (and detaches it
    /// from any other); a delete detaches it.
    pub fn observe(&mut self, changes: &[Event]) {
        for event in changes {
            let Some(kv) = &event.kv else { continue };
            let attach_to = (event.r#type == EventType::Put as i32 && kv.lease != 0)
                .then_some(kv.lease)
                .filter(|id| self.leases.contains_key(id));
            let previous = match attach_to {
                Some(id) => self.key_leases.insert(kv.key.clone(), id),
                None => self.key_leases.remove(&kv.key),
            };
            if let Some(old) = previous.filter(|old| Some(*old) != attach_to) {
                if let Some(lease) = self.leases.get_mut(&old) {
                    lease.keys.remove(&kv.key);
                }
            }
            if let Some(lease) = attach_to.and_then(|id| self.leases.get_mut(&id)) {
                lease.keys.insert(kv.key.clone());
            }
        }
    }

    /// Checks that the two views of attachments agree (tests and debug builds).
    pub fn check_attachments(&self) -> Result<(), String> {
        let mut attached = 0;
        for lease in self.leases.values() {
            for key in &lease.keys {
                attached += 1;
                if self.key_leases.get(key) != Some(&lease.id) {
                    return Err(format!("key {key:?} of lease {} not indexed", lease.id));
                }
            }
        }
        if attached != self.key_leases.len() {
            return Err(format!(
                "{} keys indexed, {attached} attached",
                self.key_leases.len()
            ));
        }
        Ok(())
    }
}

/// Time left, applied at wall-clock `now_unix_ms`, of a figure the proposer's wall clock
/// stamped `proposed_at_unix_ms`: the time the entry spent reaching this member (a lagging
/// follower, a restart replaying its log) is not handed to the lease again. The rule a
/// restart applies to stored records; a wall clock behind the proposer's counts as no time
/// (longer, never shorter). Found by the fault tests: members applying old grants and
/// checkpoints late, then leading, kept a lease over a minute past its last renewal.
fn since_proposed(remaining_ms: i64, proposed_at_unix_ms: u64, now_unix_ms: u64) -> Duration {
    let age_ms = now_unix_ms.saturating_sub(proposed_at_unix_ms);
    Duration::from_millis(
        u64::try_from(remaining_ms)
            .unwrap_or(0)
            .saturating_sub(age_ms),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::mvccpb::KeyValue;

    fn put(key: &str, lease: i64) -> Event {
        Event {
            r#type: EventType::Put as i32,
            kv: Some(KeyValue {
                key: key.into(),
                lease,
                ..Default::default()
            }),
            prev_kv: None,
        }
    }

    fn delete(key: &str) -> Event {
        Event {
            r#type: EventType::Delete as i32,
            kv: Some(KeyValue {
                key: key.into(),
                ..Default::default()
            }),
            prev_kv: None,
        }
    }

    #[test]
    fn a_put_attaches_its_key_and_moves_it_between_leases() {
        let now = Instant::now();
        let mut table = LeaseTable::default();
        table.grant(1, 10, 0, now, 0).unwrap();
        table.grant(2, 10, 0, now, 0).unwrap();
        table.observe(&[put("a", 1), put("b", 1), put("a", 2)]);
        assert_eq!(table.get(1).unwrap().keys, BTreeSet::from([b"b".to_vec()]));
        assert_eq!(table.get(2).unwrap().keys, BTreeSet::from([b"a".to_vec()]));
        table.observe(&[put("b", 0), delete("a")]);
        assert!(table.get(1).unwrap().keys.is_empty());
        assert!(table.get(2).unwrap().keys.is_empty());
        table.check_attachments().unwrap();
    }

    #[test]
    fn revoke_hands_back_the_attached_keys_in_key_order() {
        let now = Instant::now();
        let mut table = LeaseTable::default();
        table.grant(7, 5, 0, now, 0).unwrap();
        table.observe(&[put("z", 7), put("m", 7), put("a", 7)]);
        assert_eq!(
            table.revoke(7).unwrap(),
            vec![b"a".to_vec(), b"m".to_vec(), b"z".to_vec()]
        );
        assert_eq!(table.revoke(7), Err(LeaseError::NotFound));
        // The deletes that follow a revoke find no lease to detach from.
        table.observe(&[delete("a"), delete("m"), delete("z")]);
        table.check_attachments().unwrap();
    }

    #[test]
    fn grant_refuses_a_taken_id_and_a_ttl_above_etcds_maximum() {
        let now = Instant::now();
        let mut table = LeaseTable::default();
        table.grant(3, 5, 0, now, 0).unwrap();
        assert_eq!(table.grant(3, 5, 0, now, 0), Err(LeaseError::Exists));
        assert_eq!(
            table.grant(4, MAX_LEASE_TTL_SECONDS + 1, 0, now, 0),
            Err(LeaseError::TtlTooLarge)
        );
        assert!(table.grant(4, MAX_LEASE_TTL_SECONDS, 0, now, 0).is_ok());
    }

    #[test]
    fn a_put_naming_a_missing_lease_attaches_nothing() {
        let mut table = LeaseTable::default();
        table.observe(&[put("a", 99)]);
        table.check_attachments().unwrap();
        assert!(table.is_empty());
    }

    fn stored(table: &LeaseTable) -> Vec<(Vec<u8>, Vec<u8>)> {
        table
            .iter()
            .map(|l| (record_key(l.id).to_vec(), l.record.encode_to_vec()))
            .collect()
    }

    #[test]
    fn a_grant_or_checkpoint_applied_late_counts_the_time_since_its_proposal() {
        let now = Instant::now();
        let mut table = LeaseTable::default();
        // Applied 3 s after the proposer stamped it (a lagging follower, a replay).
        table.grant(1, 10, 1_000_000, now, 1_003_000).unwrap();
        assert_eq!(
            table.get(1).unwrap().applied_deadline(),
            now + Duration::from_secs(7)
        );
        table
            .checkpoint(1, 8_000, 1_010_000, now, 1_019_000)
            .unwrap();
        assert_eq!(
            table.get(1).unwrap().applied_deadline(),
            now,
            "a checkpoint older than its figure leaves no time"
        );
        // A wall clock behind the proposer's counts as no time: longer, never shorter.
        table.grant(2, 10, 1_000_000, now, 990_000).unwrap();
        assert_eq!(
            table.get(2).unwrap().applied_deadline(),
            now + Duration::from_secs(10)
        );
        let record = table
            .checkpoint(2, 6_000, 1_000_000, now, 1_002_000)
            .unwrap();
        assert_eq!(
            record.remaining_ms, 6_000,
            "the stored record keeps the proposer's figure"
        );
    }

    #[test]
    fn loading_counts_the_time_the_member_was_down_against_each_lease() {
        let start = Instant::now();
        let mut table = LeaseTable::default();
        table.grant(1, 60, 1_000_000, start, 1_000_000).unwrap();
        table.grant(2, 60, 1_000_000, start, 1_000_000).unwrap();
        // Lease 2 was checkpointed 20 s later with 45 s left.
        table
            .checkpoint(2, 45_000, 1_020_000, start, 1_020_000)
            .unwrap();
        // Restarted 30 s after the grant.
        let later = start + Duration::from_secs(100);
        let loaded = LeaseTable::load(stored(&table), later, 1_030_000).unwrap();
        assert_eq!(loaded.get(1).unwrap().remaining, Duration::from_secs(30));
        assert_eq!(loaded.get(2).unwrap().remaining, Duration::from_secs(35));
        assert_eq!(loaded.get(2).unwrap().as_of, later);
        // Down longer than the TTL: nothing left. A clock behind the record: no time passed.
        let late = LeaseTable::load(stored(&table), later, 2_000_000).unwrap();
        assert_eq!(late.get(1).unwrap().remaining, Duration::ZERO);
        let behind = LeaseTable::load(stored(&table), later, 0).unwrap();
        assert_eq!(behind.get(1).unwrap().remaining, Duration::from_secs(60));
    }

    #[test]
    fn a_checkpoint_never_promises_more_than_the_ttl() {
        let now = Instant::now();
        let mut table = LeaseTable::default();
        table.grant(1, 10, 0, now, 0).unwrap();
        let record = table.checkpoint(1, 99_000, 5, now, 5).unwrap();
        assert_eq!(record.remaining_ms, 10_000);
        assert_eq!(table.checkpoint(1, -5, 6, now, 6).unwrap().remaining_ms, 0);
        assert!(table.checkpoint(2, 1, 7, now, 7).is_none());
    }

    #[test]
    fn loading_refuses_records_it_cannot_vouch_for() {
        let now = Instant::now();
        let garbage = vec![(record_key(1).to_vec(), vec![0xff, 0xff, 0xff])];
        assert!(matches!(
            LeaseTable::load(garbage, now, 0),
            Err(LeaseLoadError::Undecodable { .. })
        ));
        let newer = LeaseRecord {
            format_version: 2,
            id: 1,
            ..Default::default()
        };
        let newer = vec![(record_key(1).to_vec(), newer.encode_to_vec())];
        assert!(matches!(
            LeaseTable::load(newer, now, 0),
            Err(LeaseLoadError::NewerFormat { version: 2, .. })
        ));
        let misfiled = LeaseRecord {
            format_version: 1,
            id: 1,
            ..Default::default()
        };
        let misfiled = vec![(record_key(2).to_vec(), misfiled.encode_to_vec())];
        assert!(matches!(
            LeaseTable::load(misfiled, now, 0),
            Err(LeaseLoadError::Misfiled { id: 1, .. })
        ));
    }
}
