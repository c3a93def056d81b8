//! Model-based test: random puts, deletes, range reads, commits, aborts, readers held across
//! commits, bucket resets and reopens, checked against `BTreeMap` models.
//! Replay a failure with `PROPTEST_RNG_SEED=<seed>`; scale with `CAIRN_BTREE_MODEL_CASES`.

use std::collections::BTreeMap;
use std::ops::Bound;

use cairn_btree::{Database, Options, ReadTxn};
use proptest::prelude::*;

type Model = BTreeMap<Vec<u8>, BTreeMap<Vec<u8>, Vec<u8>>>;

const BUCKETS: [&[u8]; 2] = [b"alpha", b"beta"];

#[derive(Clone, Debug)]
enum Op {
    Put {
        bucket: usize,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Delete {
        bucket: usize,
        key: Vec<u8>,
    },
    Range {
        bucket: usize,
        lo: Bound<Vec<u8>>,
        hi: Bound<Vec<u8>>,
        reverse: bool,
    },
    Prefix {
        bucket: usize,
        prefix: Vec<u8>,
    },
    ResetBucket {
        bucket: usize,
    },
    Commit,
    Abort,
    OpenReader,
    CheckReaders,
    DropReader(usize),
    Reopen,
}

fn key() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        20 => (0u32..400).prop_map(|i| format!("k{i:04}").into_bytes()),
        1 => (0u32..8).prop_map(|i| {
            let mut k = vec![b'L'; 1500 + i as usize * 700];
            k.extend_from_slice(format!("{i}").as_bytes());
            k
        }),
    ]
}

fn value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        20 => prop::collection::vec(any::<u8>(), 0..60),
        2 => (1001usize..12_000, any::<u8>()).prop_map(|(n, b)| vec![b; n]),
        1 => (300usize..1000, any::<u8>()).prop_map(|(n, b)| vec![b; n]),
    ]
}

fn bound() -> impl Strategy<Value = Bound<Vec<u8>>> {
    prop_oneof![
        Just(Bound::Unbounded),
        key().prop_map(Bound::Included),
        key().prop_map(Bound::Excluded),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        40 => (0..2usize, key(), value()).prop_map(|(bucket, key, value)| Op::Put { bucket, key, value }),
        15 => (0..2usize, key()).prop_map(|(bucket, key)| Op::Delete { bucket, key }),
        5 => (0..2usize, bound(), bound(), any::<bool>())
            .prop_map(|(bucket, lo, hi, reverse)| Op::Range { bucket, lo, hi, reverse }),
        2 => (0..2usize, prop::collection::vec(b'0'..=b'9', 0..3)).prop_map(|(bucket, d)| {
            let mut prefix = b"k0".to_vec();
            prefix.extend(d);
            Op::Prefix { bucket, prefix }
        }),
        1 => (0..2usize).prop_map(|bucket| Op::ResetBucket { bucket }),
        8 => Just(Op::Commit),
        2 => Just(Op::Abort),
        3 => Just(Op::OpenReader),
        2 => Just(Op::CheckReaders),
        2 => (0..4usize).prop_map(Op::DropReader),
        1 => Just(Op::Reopen),
    ]
}

fn in_range(k: &[u8], lo: &Bound<Vec<u8>>, hi: &Bound<Vec<u8>>) -> bool {
    let above = match lo {
        Bound::Included(l) => k >= l.as_slice(),
        Bound::Excluded(l) => k > l.as_slice(),
        Bound::Unbounded => true,
    };
    let below = match hi {
        Bound::Included(h) => k <= h.as_slice(),
        Bound::Excluded(h) => k < h.as_slice(),
        Bound::Unbounded => true,
    };
    above && below
}

fn expected_range(
    model: &BTreeMap<Vec<u8>, Vec<u8>>,
    lo: &Bound<Vec<u8>>,
    hi: &Bound<Vec<u8>>,
    reverse: bool,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out: Vec<_> = model
        .iter()
        .filter(|(k, _)| in_range(k, lo, hi))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if reverse {
        out.reverse();
    }
    out
}

fn assert_reader_matches(r: &ReadTxn<'_>, model: &Model) {
    for name in BUCKETS {
        let expected: Vec<_> = model[name]
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let got: Vec<_> = r.range(name, ..).unwrap().map(Result::unwrap).collect();
        assert_eq!(
            got.len(),
            expected.len(),
            "entry count of {:?}",
            String::from_utf8_lossy(name)
        );
        assert!(
            got == expected,
            "contents of {:?} differ from the model",
            String::from_utf8_lossy(name)
        );
        assert_eq!(r.len(name).unwrap(), expected.len() as u64);
    }
}

fn run(ops: Vec<Op>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.btree");
    let mut committed: Model = BUCKETS
        .iter()
        .map(|b| (b.to_vec(), BTreeMap::new()))
        .collect();
    {
        let db = Database::open(&path, Options::default()).unwrap();
        let mut w = db.begin_write().unwrap();
        for b in BUCKETS {
            w.create_bucket(b).unwrap();
        }
        w.commit().unwrap();
    }
    let mut i = 0;
    while i < ops.len() {
        let db = Database::open(&path, Options::default()).unwrap();
        {
            let r = db.begin_read().unwrap();
            r.check().unwrap();
            assert_reader_matches(&r, &committed);
        }
        let mut pending = committed.clone();
        let mut w = None;
        let mut readers: Vec<(ReadTxn<'_>, Model)> = Vec::new();
        while i < ops.len() {
            let op = ops[i].clone();
            i += 1;
            match op {
                Op::Put { bucket, key, value } => {
                    let w = w.get_or_insert_with(|| db.begin_write().unwrap());
                    w.put(BUCKETS[bucket], &key, &value).unwrap();
                    pending.get_mut(BUCKETS[bucket]).unwrap().insert(key, value);
                }
                Op::Delete { bucket, key } => {
                    let w = w.get_or_insert_with(|| db.begin_write().unwrap());
                    let existed = w.delete(BUCKETS[bucket], &key).unwrap();
                    let modeled = pending
                        .get_mut(BUCKETS[bucket])
                        .unwrap()
                        .remove(&key)
                        .is_some();
                    assert_eq!(existed, modeled, "delete reports presence");
                }
                Op::Range {
                    bucket,
                    lo,
                    hi,
                    reverse,
                } => {
                    let expected = expected_range(&pending[BUCKETS[bucket]], &lo, &hi, reverse);
                    let bounds = (
                        lo.as_ref().map(|v| v.as_slice()),
                        hi.as_ref().map(|v| v.as_slice()),
                    );
                    let got: Vec<_> = match &mut w {
                        Some(w) if reverse => w
                            .range_rev(BUCKETS[bucket], bounds)
                            .unwrap()
                            .map(Result::unwrap)
                            .collect(),
                        Some(w) => w
                            .range(BUCKETS[bucket], bounds)
                            .unwrap()
                            .map(Result::unwrap)
                            .collect(),
                        None => {
                            let r = db.begin_read().unwrap();
                            let it = if reverse {
                                r.range_rev(BUCKETS[bucket], bounds)
                            } else {
                                r.range(BUCKETS[bucket], bounds)
                            };
                            let got = it.unwrap().map(Result::unwrap).collect();
                            let count = r.count(BUCKETS[bucket], bounds).unwrap();
                            assert_eq!(count as usize, expected.len(), "count of a range");
                            got
                        }
                    };
                    assert!(got == expected, "range {bounds:?} rev={reverse} differs");
                }
                Op::Prefix { bucket, prefix } => {
                    let r = db.begin_read().unwrap();
                    let got: Vec<_> = r
                        .prefix(BUCKETS[bucket], &prefix)
                        .unwrap()
                        .map(|e| e.unwrap().0)
                        .collect();
                    let expected: Vec<_> = committed[BUCKETS[bucket]]
                        .keys()
                        .filter(|k| k.starts_with(&prefix))
                        .cloned()
                        .collect();
                    assert_eq!(got, expected, "prefix scan");
                }
                Op::ResetBucket { bucket } => {
                    let w = w.get_or_insert_with(|| db.begin_write().unwrap());
                    w.delete_bucket(BUCKETS[bucket]).unwrap();
                    w.create_bucket(BUCKETS[bucket]).unwrap();
                    pending.get_mut(BUCKETS[bucket]).unwrap().clear();
                }
                Op::Commit => {
                    if let Some(w) = w.take() {
                        w.commit().unwrap();
                        committed = pending.clone();
                        let r = db.begin_read().unwrap();
                        r.check().unwrap();
                    }
                }
                Op::Abort => {
                    drop(w.take());
                    pending = committed.clone();
                }
                Op::OpenReader => readers.push((db.begin_read().unwrap(), committed.clone())),
                Op::CheckReaders => {
                    for (r, model) in &readers {
                        assert_reader_matches(r, model);
                    }
                }
                Op::DropReader(n) => {
                    if !readers.is_empty() {
                        let (r, model) = readers.remove(n % readers.len());
                        assert_reader_matches(&r, &model);
                    }
                }
                Op::Reopen => break,
            }
        }
        for (r, model) in &readers {
            assert_reader_matches(r, model);
        }
        drop(readers);
        drop(w);
    }
    let db = Database::open(&path, Options::default()).unwrap();
    let r = db.begin_read().unwrap();
    r.check().unwrap();
    assert_reader_matches(&r, &committed);
}

fn cases() -> u32 {
    std::env::var("CAIRN_BTREE_MODEL_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(48)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn every_snapshot_and_reopen_matches_the_btreemap_model(ops in prop::collection::vec(op(), 1..400)) {
        run(ops);
    }
}

/// Many small transactions over one big bucket: deep trees, splits and merges on every level.
#[test]
fn deep_tree_survives_bulk_insert_and_delete_with_reader_held() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(
        dir.path().join("deep.btree"),
        Options {
            durability: cairn_btree::Durability::NoSync,
        },
    )
    .unwrap();
    let mut model = BTreeMap::new();
    let mut w = db.begin_write().unwrap();
    w.create_bucket(b"b").unwrap();
    w.commit().unwrap();
    let mut x: u64 = 1;
    for round in 0..40 {
        let mut w = db.begin_write().unwrap();
        for _ in 0..1000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let k = (x >> 40) % 30_000;
            let key = format!("{k:08}").into_bytes();
            if round % 3 == 2 && x % 2 == 0 {
                assert_eq!(w.delete(b"b", &key).unwrap(), model.remove(&key).is_some());
            } else {
                let v = vec![(k % 251) as u8; (k % 300) as usize];
                w.put(b"b", &key, &v).unwrap();
                model.insert(key, v);
            }
        }
        w.commit().unwrap();
    }
    let held = db.begin_read().unwrap();
    let held_model = model.clone();
    let mut w = db.begin_write().unwrap();
    let keys: Vec<_> = model.keys().cloned().collect();
    for k in keys.iter().step_by(2) {
        assert!(w.delete(b"b", k).unwrap());
        model.remove(k);
    }
    w.commit().unwrap();
    let stats = db.begin_read().unwrap().check().unwrap();
    assert!(
        stats.buckets[0].depth >= 3,
        "a tree of ~20k keys has at least 3 levels"
    );
    let got: Vec<_> = held.range(b"b", ..).unwrap().map(|e| e.unwrap()).collect();
    assert!(
        got.into_iter().eq(held_model.into_iter()),
        "held reader still sees its snapshot"
    );
    let r = db.begin_read().unwrap();
    let got: Vec<_> = r.range(b"b", ..).unwrap().map(|e| e.unwrap()).collect();
    assert!(got.into_iter().eq(model.into_iter()));
}
