//! The lease manager against a model, on a virtual clock: random grants, puts, deletes,
//! renewals, expiries, revokes, checkpoints and restarts, applied through the real apply path
//! on an in-memory store. The model is the documented arithmetic (`crate::lease`): a lease
//! runs out one TTL after its grant or last renewal; a restart starts it from its last
//! checkpointed deadline (or now, if that has passed) plus the promotion grace. Every
//! renewal answered (at once when a recorded checkpoint covers it, else by the next
//! checkpoint) is a promise that every restart must keep.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::load::load_table;
use super::*;
use crate::mvcc::{MemBackend, MvccStore};
use crate::proto::cairn::entry::v1::{request::Op, LeaseCheckpoint, LeaseCheckpoints, Request};
use crate::proto::etcdserverpb::{
    DeleteRangeRequest, LeaseGrantRequest, LeaseRevokeRequest, PutRequest,
};
use crate::proto::mvccpb::event::EventType;
use crate::server::apply::{apply_run, AppliedRun, EntryPayload};

const WALL_BASE_MS: u64 = 1_700_000_000_000;
const KEYS: [&str; 5] = ["a", "b", "c", "d", "e"];

#[derive(Debug, Clone)]
enum Step {
    Grant { id: i64, ttl: i64 },
    Put { key: usize, lease: i64 },
    Delete { key: usize },
    Revoke { id: i64 },
    Renew { id: i64 },
    Advance { ms: u64 },
    Expire,
    Checkpoint,
    Restart,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (1i64..6, 2i64..12).prop_map(|(id, ttl)| Step::Grant { id, ttl }),
        4 => (0..KEYS.len(), 0i64..6).prop_map(|(key, lease)| Step::Put { key, lease }),
        1 => (0..KEYS.len()).prop_map(|key| Step::Delete { key }),
        1 => (1i64..6).prop_map(|id| Step::Revoke { id }),
        3 => (1i64..6).prop_map(|id| Step::Renew { id }),
        4 => (0u64..4000).prop_map(|ms| Step::Advance { ms }),
        // Renewals a fraction of a second apart: the ones a recorded checkpoint covers.
        3 => (0u64..300).prop_map(|ms| Step::Advance { ms }),
        2 => Just(Step::Expire),
        2 => Just(Step::Checkpoint),
        1 => Just(Step::Restart),
    ]
}

/// One lease in the model: milliseconds on the virtual clock.
#[derive(Debug, Clone)]
struct ModelLease {
    ttl_ms: u64,
    deadline: u64,
    checkpointed_deadline: u64,
    /// The deadline the last checkpoint this leader recorded stands for.
    recorded_deadline: Option<u64>,
    /// The latest deadline answered to a client.
    promised: u64,
    /// A renewal waiting for the next checkpoint to be answered.
    waiting: Option<u64>,
}

struct Harness {
    store: MvccStore<MemBackend>,
    leases: Leases,
    base: Instant,
    now_ms: u64,
    next_index: u64,
    model: BTreeMap<i64, ModelLease>,
    /// Which lease each key's latest version is attached to.
    attached: BTreeMap<&'static str, i64>,
    grace_ms: u64,
    share_ms: u64,
}

impl Harness {
    fn new() -> Self {
        let timing = LeaseTiming::new(Duration::from_secs(1));
        let mut leases = Leases::new(LeaseTable::default(), timing);
        leases.follow_role(Some(1));
        Harness {
            store: MvccStore::open(MemBackend::default()).unwrap(),
            leases,
            base: Instant::now(),
            now_ms: 0,
            next_index: 1,
            model: BTreeMap::new(),
            attached: BTreeMap::new(),
            grace_ms: timing.promote_grace.as_millis() as u64,
            share_ms: timing.promise_share.as_millis() as u64,
        }
    }

    fn now(&self) -> Instant {
        self.base + Duration::from_millis(self.now_ms)
    }

    fn apply(&mut self, op: Op) -> AppliedRun {
        let request = Request {
            format_version: crate::server::apply::ENTRY_FORMAT_VERSION,
            id: self.next_index,
            proposer: 1,
            proposed_at_unix_ms: WALL_BASE_MS + self.now_ms,
            leader_term: 0,
            op: Some(op),
        };
        let entries = [(self.next_index, EntryPayload::Request(request))];
        self.next_index += 1;
        let now = self.now();
        let run = apply_run(
            &self.store,
            &entries,
            &mut self.leases,
            &mut crate::server::registry::MemberRegistry::default(),
            now,
        )
        .unwrap();
        self.leases.table().check_attachments().unwrap();
        run
    }

    fn revoke(&mut self, id: i64) -> Result<(), TestCaseError> {
        let before = self.store.current_revision();
        let run = self.apply(Op::LeaseRevoke(LeaseRevokeRequest { id }));
        let known = self.model.remove(&id).is_some();
        prop_assert_eq!(run.requests[0].result.is_ok(), known, "revoke of {}", id);
        let doomed: Vec<&str> = self
            .attached
            .iter()
            .filter(|(_, lease)| **lease == id)
            .map(|(key, _)| *key)
            .collect();
        let deleted: Vec<String> = run
            .events
            .iter()
            .map(|e| String::from_utf8(e.kv.as_ref().unwrap().key.clone()).unwrap())
            .collect();
        prop_assert_eq!(
            &deleted,
            &doomed,
            "revoke deletes exactly the attached keys"
        );
        for event in &run.events {
            prop_assert_eq!(event.r#type, EventType::Delete as i32);
            prop_assert_eq!(event.kv.as_ref().unwrap().mod_revision, before + 1);
        }
        let expected_revision = before + i64::from(!doomed.is_empty());
        prop_assert_eq!(run.revision, expected_revision, "one revision for all keys");
        self.attached.retain(|_, lease| *lease != id);
        Ok(())
    }

    fn run(&mut self, step: &Step) -> Result<(), TestCaseError> {
        let now = self.now();
        match *step {
            Step::Grant { id, ttl } => {
                let run = self.apply(Op::LeaseGrant(LeaseGrantRequest { ttl, id }));
                let fresh = !self.model.contains_key(&id);
                prop_assert_eq!(run.requests[0].result.is_ok(), fresh);
                if fresh {
                    let deadline = self.now_ms + ttl as u64 * 1000;
                    self.model.insert(
                        id,
                        ModelLease {
                            ttl_ms: ttl as u64 * 1000,
                            deadline,
                            checkpointed_deadline: deadline,
                            recorded_deadline: None,
                            promised: 0,
                            waiting: None,
                        },
                    );
                }
            }
            Step::Put { key, lease } => {
                let run = self.apply(Op::Put(PutRequest {
                    key: KEYS[key].into(),
                    value: b"v".to_vec(),
                    lease,
                    ..Default::default()
                }));
                let valid = lease == 0 || self.model.contains_key(&lease);
                prop_assert_eq!(run.requests[0].result.is_ok(), valid);
                if valid {
                    if lease == 0 {
                        self.attached.remove(KEYS[key]);
                    } else {
                        self.attached.insert(KEYS[key], lease);
                    }
                }
            }
            Step::Delete { key } => {
                self.apply(Op::DeleteRange(DeleteRangeRequest {
                    key: KEYS[key].into(),
                    ..Default::default()
                }));
                self.attached.remove(KEYS[key]);
            }
            Step::Revoke { id } => self.revoke(id)?,
            Step::Renew { id } => {
                let renewal = self.leases.renew(id, now);
                match self.model.get_mut(&id) {
                    None => prop_assert_eq!(renewal, Renewal::NotFound),
                    Some(lease) if lease.deadline > self.now_ms => {
                        let Renewal::Renewed { covered, .. } = renewal else {
                            return Err(TestCaseError::fail(format!("{renewal:?}")));
                        };
                        lease.deadline = self.now_ms + lease.ttl_ms;
                        let expected = lease
                            .recorded_deadline
                            .is_some_and(|recorded| lease.deadline <= recorded + self.share_ms);
                        prop_assert_eq!(covered, expected, "lease {} covered", id);
                        if covered {
                            lease.promised = lease.promised.max(lease.deadline);
                        } else {
                            lease.waiting = Some(lease.deadline);
                        }
                    }
                    Some(_) => prop_assert_eq!(renewal, Renewal::Expired),
                }
            }
            Step::Advance { ms } => self.now_ms += ms,
            Step::Expire => {
                let expired = self.leases.take_expired(now, usize::MAX);
                let mut due: Vec<(u64, i64)> = self
                    .model
                    .iter()
                    .filter(|(_, l)| l.deadline <= self.now_ms)
                    .map(|(id, l)| (l.deadline, *id))
                    .collect();
                due.sort();
                let due: Vec<i64> = due.into_iter().map(|(_, id)| id).collect();
                prop_assert_eq!(&expired, &due, "expired leases, in deadline order");
                for id in expired {
                    self.revoke(id)?;
                }
            }
            Step::Checkpoint => {
                let due = self.leases.take_checkpoints(now, usize::MAX);
                for &(id, remaining_ms) in &due {
                    let lease = &self.model[&id];
                    prop_assert_eq!(
                        remaining_ms as u64,
                        lease.deadline.saturating_sub(self.now_ms)
                    );
                }
                let checkpoints = due
                    .iter()
                    .map(|&(id, remaining_ms)| LeaseCheckpoint { id, remaining_ms })
                    .collect();
                self.apply(Op::LeaseCheckpoints(LeaseCheckpoints { checkpoints }));
                self.leases.checkpoints_recorded(1, now, &due);
                for (id, remaining_ms) in due {
                    let lease = self.model.get_mut(&id).unwrap();
                    lease.checkpointed_deadline = self.now_ms + remaining_ms as u64;
                    lease.recorded_deadline = Some(lease.checkpointed_deadline);
                }
                // The round is recorded: the renewals waiting on it are answered.
                for lease in self.model.values_mut() {
                    if let Some(deadline) = lease.waiting.take() {
                        lease.promised = lease.promised.max(deadline);
                    }
                }
            }
            Step::Restart => {
                let table = load_table(&self.store, now, WALL_BASE_MS + self.now_ms).unwrap();
                self.leases = Leases::new(table, self.leases.timing());
                self.leases.follow_role(Some(1));
                for (id, lease) in &mut self.model {
                    lease.deadline = lease.checkpointed_deadline.max(self.now_ms) + self.grace_ms;
                    lease.checkpointed_deadline = lease.deadline - self.grace_ms;
                    // Every answered renewal is kept, with the unshared grace to spare.
                    prop_assert!(
                        lease.promised + (self.grace_ms - self.share_ms) <= lease.deadline,
                        "lease {} promised {} kept until {}",
                        id,
                        lease.promised,
                        lease.deadline
                    );
                    // A renewal not yet recorded was never answered (leadership changed).
                    lease.waiting = None;
                    lease.recorded_deadline = None;
                }
            }
        }
        self.check_time_to_live()
    }

    fn check_time_to_live(&self) -> Result<(), TestCaseError> {
        let now = self.now();
        for (id, lease) in &self.model {
            let ttl = self.leases.time_to_live(*id, true, now).unwrap();
            let left_ms = lease.deadline.saturating_sub(self.now_ms);
            prop_assert_eq!(ttl.remaining_seconds as u64, left_ms / 1000, "lease {}", id);
            prop_assert_eq!(ttl.granted_ttl_seconds as u64 * 1000, lease.ttl_ms);
            let keys: BTreeSet<Vec<u8>> = self
                .attached
                .iter()
                .filter(|(_, l)| *l == id)
                .map(|(k, _)| k.as_bytes().to_vec())
                .collect();
            prop_assert_eq!(ttl.keys.into_iter().collect::<BTreeSet<_>>(), keys);
        }
        prop_assert_eq!(self.leases.table().len(), self.model.len());
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn leases_follow_the_documented_arithmetic(steps in prop::collection::vec(step(), 1..80)) {
        let mut harness = Harness::new();
        for step in &steps {
            harness.run(step)?;
        }
    }
}

#[test]
fn leases_are_listed_soonest_expiry_first_as_etcd_lists_them() {
    let now = Instant::now();
    let mut table = LeaseTable::default();
    for (id, ttl) in [(2001, 50), (2002, 40), (2003, 45), (-7, 45)] {
        table.grant(id, ttl, 0, now, 0).unwrap();
    }
    let mut leases = Leases::new(table, LeaseTiming::new(Duration::from_secs(1)));
    assert_eq!(leases.ids_by_expiry(now), vec![2002, -7, 2003, 2001]);
    leases.follow_role(Some(1));
    assert!(matches!(
        leases.renew(2002, now + Duration::from_secs(30)),
        Renewal::Renewed {
            ttl_seconds: 40,
            ..
        }
    ));
    assert_eq!(leases.ids_by_expiry(now), vec![-7, 2003, 2001, 2002]);
}

#[test]
fn a_member_that_leads_again_in_a_new_term_starts_from_the_applied_figures() {
    let t0 = Instant::now();
    let timing = LeaseTiming::new(Duration::from_secs(1));
    // This member led in term 2; another leader (term 3) renewed lease 1 at t0 + 8 s and
    // checkpointed it; this member saw only the checkpoint.
    let run = |second_term: u64| {
        let mut table = LeaseTable::default();
        table.grant(1, 10, 0, t0, 0).unwrap();
        let mut leases = Leases::new(table, timing);
        leases.follow_role(Some(2));
        leases
            .table_mut()
            .checkpoint(1, 10_000, 0, t0 + Duration::from_secs(8), 0);
        leases.follow_role(Some(second_term));
        leases
    };
    let mut same_term = run(2);
    assert_eq!(
        same_term.take_expired(t0 + Duration::from_secs(13), 10),
        vec![1],
        "within one term the clock stands (it granted no renewal)"
    );
    let mut new_term = run(4);
    assert!(
        new_term
            .take_expired(t0 + Duration::from_secs(13), 10)
            .is_empty(),
        "a new term re-reads the applied checkpoint"
    );
    let left = new_term
        .time_to_live(1, false, t0 + Duration::from_secs(8))
        .unwrap()
        .remaining_seconds;
    assert_eq!(
        left,
        (Duration::from_secs(10) + timing.promote_grace).as_secs() as i64
    );
}

#[test]
fn a_restart_attaches_every_key_across_many_pages_of_the_key_space() {
    let mut harness = Harness::new();
    for id in [1, 2] {
        harness.apply(Op::LeaseGrant(LeaseGrantRequest { ttl: 60, id }));
    }
    // Two and a half pages of keys: a third under lease 1, a third under lease 2.
    let keys = super::load::ATTACH_SCAN_KEYS * 5 / 2;
    let mut expected: BTreeMap<i64, BTreeSet<Vec<u8>>> = BTreeMap::new();
    for n in 0..keys {
        let key = format!("k/{n:05}").into_bytes();
        let lease = (n % 3) as i64;
        harness.apply(Op::Put(PutRequest {
            key: key.clone(),
            value: b"v".to_vec(),
            lease,
            ..Default::default()
        }));
        if lease != 0 {
            expected.entry(lease).or_default().insert(key);
        }
    }
    let table = load_table(&harness.store, harness.now(), WALL_BASE_MS).unwrap();
    let leases = Leases::new(table, harness.leases.timing());
    for (id, keys) in expected {
        let found = leases.time_to_live(id, true, harness.now()).unwrap().keys;
        assert_eq!(
            found.into_iter().collect::<BTreeSet<_>>(),
            keys,
            "lease {id}"
        );
    }
}

#[test]
fn a_renewal_soon_after_a_recorded_checkpoint_is_covered_and_survives_a_restart() {
    let mut harness = Harness::new();
    let steps = [
        Step::Grant { id: 1, ttl: 5 },
        Step::Advance { ms: 300 },
        Step::Renew { id: 1 },
        Step::Checkpoint,
        Step::Advance { ms: 200 },
        Step::Renew { id: 1 },
    ];
    for step in &steps {
        harness.run(step).unwrap();
    }
    assert_eq!(
        harness.leases.counts.renewed_from_checkpoint, 1,
        "the second renewal is covered by the recorded checkpoint"
    );
    // Past the share: the next renewal must wait for a round of its own.
    harness.run(&Step::Advance { ms: 600 }).unwrap();
    harness.run(&Step::Renew { id: 1 }).unwrap();
    assert_eq!(harness.leases.counts.renewed_from_checkpoint, 1);
    // A restart keeps the covered promise (the harness checks every answered one).
    harness.run(&Step::Restart).unwrap();
    let model = &harness.model[&1];
    assert!(model.deadline >= 500 + 5_000 + (harness.grace_ms - harness.share_ms));
}

#[test]
fn checkpoints_taken_in_an_earlier_term_cover_nothing_in_a_later_one() {
    let t0 = Instant::now();
    let mut table = LeaseTable::default();
    table.grant(1, 10, 0, t0, 0).unwrap();
    let mut leases = Leases::new(table, LeaseTiming::new(Duration::from_secs(1)));
    leases.follow_role(Some(2));
    leases.renew(1, t0);
    let due = leases.take_checkpoints(t0, 10);
    assert_eq!(due, vec![(1, 10_000)]);
    let covered = |renewal| matches!(renewal, Renewal::Renewed { covered: true, .. });
    // Reported as committed in another term than the clock's: ignored.
    leases.checkpoints_recorded(3, t0, &due);
    assert!(!covered(leases.renew(1, t0 + Duration::from_millis(100))));
    // Recorded by the term that took it: a renewal soon after is covered.
    leases.checkpoints_recorded(2, t0, &due);
    assert!(covered(leases.renew(1, t0 + Duration::from_millis(150))));
    // Taken in term 2, committed only once this member leads again in term 4: ignored.
    let due = leases.take_checkpoints(t0 + Duration::from_millis(200), 10);
    leases.follow_role(Some(4));
    leases.checkpoints_recorded(2, t0 + Duration::from_millis(200), &due);
    assert!(!covered(leases.renew(1, t0 + Duration::from_millis(300))));
}
