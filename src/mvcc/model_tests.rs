//! The store against a model simple enough to be obviously right: the whole key space after
//! every revision, kept in full.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::backend::BackendWrite;
use super::*;
use crate::proto::mvccpb::KeyValue;

type State = BTreeMap<Vec<u8>, KeyValue>;

/// `history[r]` is the key space at revision r (1 is the empty store).
struct Model {
    history: Vec<State>,
    compacted: i64,
}

impl Model {
    fn new() -> Self {
        Model {
            history: vec![State::new(), State::new()],
            compacted: -1,
        }
    }

    fn current(&self) -> i64 {
        self.history.len() as i64 - 1
    }

    fn range(&self, range: &KeyRange, rev: i64) -> Result<Vec<KeyValue>, &'static str> {
        let at = if rev <= 0 { self.current() } else { rev };
        if at > self.current() {
            return Err("future");
        }
        if at < self.compacted {
            return Err("compacted");
        }
        Ok(self.history[at as usize]
            .values()
            .filter(|kv| range.contains(&kv.key))
            .cloned()
            .collect())
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Op {
    Put(u8, u8),
    Delete(u8, u8),
}

#[derive(Debug, Clone)]
pub(crate) enum Step {
    /// A batch of etcd transactions; committed or dropped.
    Batch {
        txns: Vec<Vec<Op>>,
        commit: bool,
    },
    Range {
        from: u8,
        to: u8,
        rev_back: i64,
        limit: usize,
    },
    Compact {
        rev_back: i64,
    },
    Reopen,
}

const KEYS: &[&[u8]] = &[b"a", b"b", b"ba", b"c", b"d"];

fn key(i: u8) -> Vec<u8> {
    KEYS[i as usize % KEYS.len()].to_vec()
}

/// A range over the key list: single key when from == to, else [key(from), key(to)) or to
/// the end when `to` is past the list.
fn key_range(from: u8, to: u8) -> KeyRange {
    let (from, to) = (from as usize % KEYS.len(), to as usize % (KEYS.len() + 1));
    if from == to {
        KeyRange::Single(KEYS[from].to_vec())
    } else if to == KEYS.len() {
        KeyRange::from_etcd(KEYS[from], b"\0")
    } else {
        KeyRange::from_etcd(KEYS[from], KEYS[to])
    }
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (any::<u8>(), any::<u8>()).prop_map(|(k, v)| Op::Put(k, v)),
        1 => (any::<u8>(), any::<u8>()).prop_map(|(a, b)| Op::Delete(a, b)),
    ]
}

pub(crate) fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (prop::collection::vec(prop::collection::vec(op(), 0..4), 1..4), prop::bool::weighted(0.85))
            .prop_map(|(txns, commit)| Step::Batch { txns, commit }),
        3 => (any::<u8>(), any::<u8>(), 0i64..8, 0usize..4)
            .prop_map(|(from, to, rev_back, limit)| Step::Range { from, to, rev_back, limit }),
        1 => (0i64..8).prop_map(|rev_back| Step::Compact { rev_back }),
        1 => Just(Step::Reopen),
    ]
}

/// Applies one etcd transaction to the model's newest state; returns it if anything changed.
fn model_txn(model: &Model, ops: &[Op]) -> Option<State> {
    let rev = model.current() + 1;
    let mut state = model.history.last().cloned().unwrap_or_default();
    let mut changed = false;
    for op in ops {
        match op {
            Op::Put(k, v) => {
                let key = key(*k);
                let previous = state.get(&key);
                let kv = KeyValue {
                    key: key.clone(),
                    create_revision: previous.map_or(rev, |p| p.create_revision),
                    mod_revision: rev,
                    version: previous.map_or(1, |p| p.version + 1),
                    value: vec![*v],
                    lease: 0,
                };
                state.insert(key, kv);
                changed = true;
            }
            Op::Delete(a, b) => {
                let range = key_range(*a, *b);
                let before = state.len();
                state.retain(|k, _| !range.contains(k));
                changed |= state.len() != before;
            }
        }
    }
    changed.then_some(state)
}

/// Runs `steps` on a store over `backend`, checking every result against the model.
pub(crate) fn run_model<B: Backend>(backend: B, steps: Vec<Step>) -> Result<(), TestCaseError> {
    let mut store = MvccStore::open(backend).expect("open");
    let mut model = Model::new();
    for step in steps {
        match step {
            Step::Batch { txns, commit } => {
                let mut batch = store.write().expect("write");
                let mut pending = Vec::new();
                let mut tentative = Model {
                    history: model.history.clone(),
                    compacted: model.compacted,
                };
                for ops in &txns {
                    for op in ops {
                        match op {
                            Op::Put(k, v) => {
                                batch.put(&key(*k), &[*v], 0).expect("put");
                            }
                            Op::Delete(a, b) => {
                                batch.delete_range(&key_range(*a, *b)).expect("delete");
                            }
                        }
                    }
                    let rev = batch.end_txn();
                    if let Some(state) = model_txn(&tentative, ops) {
                        tentative.history.push(state.clone());
                        pending.push(state);
                    }
                    prop_assert_eq!(rev, tentative.current());
                }
                if commit {
                    let committed = batch.commit().expect("commit");
                    model.history.extend(pending);
                    prop_assert_eq!(committed.revision, model.current());
                } else {
                    drop(batch);
                }
                prop_assert_eq!(store.current_revision(), model.current());
            }
            Step::Range {
                from,
                to,
                rev_back,
                limit,
            } => {
                let range = key_range(from, to);
                let rev = if rev_back == 0 {
                    0
                } else {
                    model.current() + 1 - rev_back
                };
                let got = store.range(
                    &range,
                    RangeOptions {
                        rev,
                        limit,
                        count_only: false,
                        page: false,
                    },
                );
                match (model.range(&range, rev), got) {
                    (Ok(expected), Ok(result)) => {
                        prop_assert_eq!(result.count, expected.len());
                        let shown = if limit == 0 {
                            expected.len()
                        } else {
                            limit.min(expected.len())
                        };
                        prop_assert_eq!(&result.kvs[..], &expected[..shown]);
                        prop_assert_eq!(result.rev, model.current());
                    }
                    (Err("future"), Err(MvccError::FutureRevision { .. })) => {}
                    (Err("compacted"), Err(MvccError::Compacted { .. })) => {}
                    (expected, got) => prop_assert!(false, "model {:?}, store {:?}", expected, got),
                }
            }
            Step::Compact { rev_back } => {
                let rev = model.current() - rev_back;
                let result = store.compact(rev, None);
                if rev <= model.compacted {
                    prop_assert!(
                        matches!(result, Err(MvccError::Compacted { .. })),
                        "{:?}",
                        result
                    );
                } else {
                    prop_assert!(result.is_ok(), "{:?}", result);
                    model.compacted = rev;
                }
            }
            Step::Reopen => {
                store = MvccStore::open(store.into_backend()).expect("reopen");
                prop_assert_eq!(store.current_revision(), model.current());
                prop_assert_eq!(store.compacted_revision(), model.compacted);
            }
        }
    }
    // Every revision still readable matches the model exactly, and compaction left nothing
    // stored that no read can reach.
    let everything = KeyRange::from_etcd(b"\0", b"\0");
    for rev in model.compacted.max(1)..=model.current() {
        let result = store.range(
            &everything,
            RangeOptions {
                rev,
                ..Default::default()
            },
        );
        prop_assert_eq!(
            result.expect("readable").kvs,
            model.range(&everything, rev).expect("model")
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn store_matches_full_history_model(steps in prop::collection::vec(step(), 1..40)) {
        run_model(MemBackend::default(), steps)?;
    }
}

#[test]
fn empty_store_is_at_revision_one_and_first_write_makes_two() {
    let store = MvccStore::open(MemBackend::default()).unwrap();
    assert_eq!(store.current_revision(), 1);
    let mut batch = store.write().unwrap();
    batch.put(b"k", b"v", 0).unwrap();
    let committed = batch.commit().unwrap();
    assert_eq!(committed.revision, 2);
    let kv = &committed.events[0].kv.as_ref().unwrap();
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (2, 2, 1));
}

#[test]
fn one_transaction_shares_a_revision_with_distinct_sub_revisions() {
    let store = MvccStore::open(MemBackend::default()).unwrap();
    let mut batch = store.write().unwrap();
    batch.put(b"a", b"1", 0).unwrap();
    batch.put(b"b", b"1", 0).unwrap();
    let seen = batch
        .range(&KeyRange::prefix(b""), RangeOptions::default())
        .unwrap();
    assert_eq!(seen.count, 2, "a transaction reads its own writes");
    assert_eq!(batch.end_txn(), 2);
    batch
        .delete_range(&KeyRange::Single(b"a".to_vec()))
        .unwrap();
    assert_eq!(batch.end_txn(), 3);
    assert_eq!(batch.end_txn(), 3, "an empty transaction makes no revision");
    let committed = batch.commit().unwrap();
    let revs: Vec<i64> = committed
        .events
        .iter()
        .map(|e| e.kv.as_ref().unwrap().mod_revision)
        .collect();
    assert_eq!(revs, [2, 2, 3]);
}

#[test]
fn readers_never_see_an_uncommitted_batch() {
    let store = MvccStore::open(MemBackend::default()).unwrap();
    let mut batch = store.write().unwrap();
    batch.put(b"a", b"1", 0).unwrap();
    batch.end_txn();
    let outside = store
        .range(&KeyRange::Single(b"a".to_vec()), RangeOptions::default())
        .unwrap();
    assert_eq!((outside.count, outside.rev), (0, 1));
    let future = store.range(
        &KeyRange::Single(b"a".to_vec()),
        RangeOptions {
            rev: 2,
            ..Default::default()
        },
    );
    assert!(matches!(future, Err(MvccError::FutureRevision { .. })));
    drop(batch);
    let mut batch = store.write().unwrap();
    batch.put(b"b", b"1", 0).unwrap();
    assert_eq!(
        batch.commit().unwrap().revision,
        2,
        "the dropped batch left no trace"
    );
    let after = store
        .range(&KeyRange::prefix(b""), RangeOptions::default())
        .unwrap();
    assert_eq!(after.kvs.len(), 1);
}

#[test]
fn a_fresh_store_compacts_at_zero_once_as_etcd_does() {
    let store = MvccStore::open(MemBackend::default()).unwrap();
    assert_eq!(store.compacted_revision(), -1);
    assert!(matches!(
        store.compact(-1, None),
        Err(MvccError::Compacted { .. })
    ));
    store.compact(0, None).unwrap();
    assert!(matches!(
        store.compact(0, None),
        Err(MvccError::Compacted { .. })
    ));
    store.compact(1, None).unwrap();
    assert!(matches!(
        store.compact(2, None),
        Err(MvccError::FutureRevision { .. })
    ));
}

#[test]
fn unknown_storage_version_is_refused() {
    let backend = MemBackend::default();
    let mut write = backend.write().unwrap();
    write
        .put(Bucket::Meta, b"storage_version", b"cairn-mvcc-99")
        .unwrap();
    write.commit().unwrap();
    let err = MvccStore::open(backend).err().expect("refused");
    assert!(err.to_string().contains("cairn-mvcc-99"), "{err}");
}

#[test]
fn a_failed_commit_refuses_all_later_work() {
    use std::sync::atomic::Ordering;
    let store = MvccStore::open(backend::FailingBackend::default()).unwrap();
    let mut batch = store.write().unwrap();
    batch.put(b"a", b"1", 0).unwrap();
    assert_eq!(batch.commit().unwrap().revision, 2);
    // The disk now fails: the commit errors, readers never see its revision.
    store.backend().fail_commits.store(true, Ordering::SeqCst);
    let mut batch = store.write().unwrap();
    batch.put(b"b", b"2", 0).unwrap();
    assert!(matches!(batch.commit(), Err(MvccError::Backend(_))));
    assert_eq!(store.current_revision(), 2);
    // The state on disk is unknown: every later operation refuses, nothing guesses.
    assert!(matches!(store.write().err(), Some(MvccError::Stopped)));
    let all = KeyRange::prefix(b"");
    assert!(matches!(
        store.range(&all, RangeOptions::default()),
        Err(MvccError::Stopped)
    ));
    assert!(matches!(store.compact(1, None), Err(MvccError::Stopped)));
    // Reopening on the same storage (a restart) sees only the committed revision.
    let reopened = MvccStore::open(store.into_backend().inner).unwrap();
    assert_eq!(reopened.current_revision(), 2);
    let seen = reopened.range(&all, RangeOptions::default()).unwrap();
    assert_eq!(seen.kvs.len(), 1);
}

#[test]
fn a_read_after_an_acknowledged_write_waits_for_its_commit() {
    let store = std::sync::Arc::new(MvccStore::open(MemBackend::default()).unwrap());
    let (acked_tx, acked_rx) = std::sync::mpsc::channel();
    let writer = {
        let store = std::sync::Arc::clone(&store);
        std::thread::spawn(move || {
            let mut batch = store.write().unwrap();
            batch.put(b"k", b"v", 0).unwrap();
            batch.acknowledge();
            acked_tx.send(()).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(30));
            batch.commit().unwrap();
        })
    };
    acked_rx.recv().unwrap();
    assert_eq!(
        store.newest_revision(),
        2,
        "headers show the answered revision"
    );
    // Without the wait this would pin revision 1, where "k" does not exist.
    let at = store.readable_revision();
    assert_eq!(at, 2);
    let options = RangeOptions {
        rev: at,
        ..Default::default()
    };
    let found = store.range(&KeyRange::prefix(b""), options).unwrap();
    assert_eq!(found.count, 1);
    writer.join().unwrap();
}

#[test]
fn a_reader_waiting_on_an_acknowledged_batch_is_released_when_its_commit_fails() {
    use std::sync::atomic::Ordering;
    let store = std::sync::Arc::new(MvccStore::open(backend::FailingBackend::default()).unwrap());
    store.backend().fail_commits.store(true, Ordering::SeqCst);
    let (acked_tx, acked_rx) = std::sync::mpsc::channel();
    let writer = {
        let store = std::sync::Arc::clone(&store);
        std::thread::spawn(move || {
            let mut batch = store.write().unwrap();
            batch.put(b"k", b"v", 0).unwrap();
            batch.acknowledge();
            acked_tx.send(()).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(30));
            assert!(matches!(batch.commit(), Err(MvccError::Backend(_))));
        })
    };
    acked_rx.recv().unwrap();
    // The disk failed under the answered write: the reader is released (not left waiting for a
    // commit that will not come) and its read refuses rather than show the older revision.
    assert_eq!(store.readable_revision(), 1);
    assert!(matches!(
        store.range(&KeyRange::prefix(b""), RangeOptions::default()),
        Err(MvccError::Stopped)
    ));
    writer.join().unwrap();
}

#[test]
fn an_acknowledged_batch_dropped_uncommitted_stops_the_store() {
    let store = MvccStore::open(MemBackend::default()).unwrap();
    let mut batch = store.write().unwrap();
    batch.put(b"k", b"v", 0).unwrap();
    batch.acknowledge();
    drop(batch);
    // Released at once (no commit will come), and reads refuse.
    assert_eq!(store.readable_revision(), 1);
    assert!(matches!(
        store.range(&KeyRange::prefix(b""), RangeOptions::default()),
        Err(MvccError::Stopped)
    ));
}
