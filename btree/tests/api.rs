//! Promises of the public API, one per test.

use std::collections::BTreeMap;
use std::ops::Bound::{Excluded, Included, Unbounded};
use std::sync::Arc;

use cairn_btree::io::sim::SimDisk;
use cairn_btree::{Database, Durability, Error, Options};

fn temp_db() -> (tempfile::TempDir, Database) {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path().join("db.btree"), Options::default()).unwrap();
    (dir, db)
}

fn fill(db: &Database, bucket: &[u8], keys: std::ops::Range<u32>, value_len: usize) {
    let mut w = db.begin_write().unwrap();
    w.create_bucket_if_missing(bucket).unwrap();
    for i in keys {
        w.put(
            bucket,
            format!("key{i:08}").as_bytes(),
            &vec![i as u8; value_len],
        )
        .unwrap();
    }
    w.commit().unwrap();
}

#[test]
fn values_of_several_mebibytes_and_keys_of_64_kib_round_trip() {
    let (dir, db) = temp_db();
    let big_value: Vec<u8> = (0..3 * 1024 * 1024 + 17).map(|i| (i % 251) as u8).collect();
    let big_key: Vec<u8> = (0..70 * 1024).map(|i| (i % 13) as u8 + b'a').collect();
    let mut other_key = big_key.clone();
    *other_key.last_mut().unwrap() ^= 1;
    let mut w = db.begin_write().unwrap();
    w.create_bucket(b"b").unwrap();
    w.put(b"b", b"v", &big_value).unwrap();
    w.put(b"b", &big_key, b"big key").unwrap();
    w.put(b"b", &other_key, &big_value[..5000]).unwrap();
    for i in 0..300u32 {
        w.put(b"b", &[big_key.as_slice(), &i.to_be_bytes()].concat(), b"x")
            .unwrap();
    }
    w.commit().unwrap();
    drop(db);
    let db = Database::open(dir.path().join("db.btree"), Options::default()).unwrap();
    let r = db.begin_read().unwrap();
    let stats = r.check().unwrap();
    assert_eq!(r.get(b"b", b"v").unwrap().unwrap(), big_value);
    assert_eq!(r.get(b"b", &big_key).unwrap().unwrap(), b"big key");
    assert_eq!(
        r.get(b"b", &other_key).unwrap().unwrap(),
        &big_value[..5000]
    );
    assert_eq!(r.count(b"b", ..).unwrap(), 303);
    assert!(
        stats.buckets[0].overflow_pages > 3 * 1024 * 1024 / 4096,
        "value spans overflow pages"
    );
    drop(r);
    let mut w = db.begin_write().unwrap();
    assert!(w.delete(b"b", b"v").unwrap());
    assert!(w.delete(b"b", &big_key).unwrap());
    w.commit().unwrap();
    let stats = db.begin_read().unwrap().check().unwrap();
    assert!(
        stats.free_pages > 3 * 1024 * 1024 / 4096,
        "deleting the value frees its pages"
    );
}

#[test]
fn oversized_keys_and_values_are_rejected_with_typed_errors() {
    let (_dir, db) = temp_db();
    let mut w = db.begin_write().unwrap();
    w.create_bucket(b"b").unwrap();
    let key = vec![0u8; cairn_btree::MAX_KEY_BYTES + 1];
    assert!(matches!(
        w.put(b"b", &key, b""),
        Err(Error::KeyTooLarge { .. })
    ));
    assert!(matches!(w.create_bucket(b"b"), Err(Error::BucketExists(_))));
    assert!(matches!(
        w.put(b"nope", b"k", b"v"),
        Err(Error::BucketNotFound(_))
    ));
    w.commit().unwrap();
    let r = db.begin_read().unwrap();
    assert!(matches!(
        r.get(b"nope", b"k"),
        Err(Error::BucketNotFound(_))
    ));
}

#[test]
fn second_open_of_the_same_file_is_refused() {
    let (dir, _db) = temp_db();
    let again = Database::open(dir.path().join("db.btree"), Options::default());
    assert!(matches!(again, Err(Error::Locked)));
}

#[test]
fn aborted_transaction_leaves_nothing_behind() {
    let (_dir, db) = temp_db();
    fill(&db, b"b", 0..100, 10);
    let before = db.begin_read().unwrap().check().unwrap();
    let mut w = db.begin_write().unwrap();
    w.put(b"b", b"new", b"x").unwrap();
    w.delete_bucket(b"b").unwrap();
    w.abort();
    let r = db.begin_read().unwrap();
    assert_eq!(r.check().unwrap(), before);
    assert_eq!(r.len(b"b").unwrap(), 100);
}

#[test]
fn readers_in_threads_keep_their_snapshot_while_the_writer_commits() {
    let (_dir, db) = temp_db();
    let db = Arc::new(db);
    fill(&db, b"b", 0..2000, 50);
    let writer = {
        let db = Arc::clone(&db);
        std::thread::spawn(move || {
            for round in 0..30u32 {
                let mut w = db.begin_write().unwrap();
                for i in 0..2000u32 {
                    if i % 7 == round % 7 {
                        w.put(b"b", format!("key{i:08}").as_bytes(), &[round as u8; 80])
                            .unwrap();
                    }
                }
                w.commit().unwrap();
            }
        })
    };
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let db = Arc::clone(&db);
            std::thread::spawn(move || {
                for _ in 0..20 {
                    let r = db.begin_read().unwrap();
                    let first: Vec<_> = r.range(b"b", ..).unwrap().map(|e| e.unwrap()).collect();
                    std::thread::yield_now();
                    let second: Vec<_> = r.range(b"b", ..).unwrap().map(|e| e.unwrap()).collect();
                    assert_eq!(first.len(), 2000);
                    assert!(first == second, "a snapshot never changes");
                }
            })
        })
        .collect();
    writer.join().unwrap();
    for r in readers {
        r.join().unwrap();
    }
    db.begin_read().unwrap().check().unwrap();
}

#[test]
fn freed_pages_are_reused_only_after_the_last_reader_that_sees_them_ends() {
    let (_dir, db) = temp_db();
    fill(&db, b"b", 0..3000, 100);
    let rewrite = |db: &Database| {
        let mut w = db.begin_write().unwrap();
        for i in 0..3000u32 {
            w.put(b"b", format!("key{i:08}").as_bytes(), &[7; 100])
                .unwrap();
        }
        w.commit().unwrap();
    };
    let held = db.begin_read().unwrap();
    let held_view: Vec<_> = held.range(b"b", ..).unwrap().map(|e| e.unwrap()).collect();
    let pages_before = held.check().unwrap().page_count;
    rewrite(&db);
    rewrite(&db);
    let grown = db.begin_read().unwrap().check().unwrap().page_count;
    assert!(
        grown >= pages_before * 2,
        "pages the held reader sees were not reused"
    );
    let again: Vec<_> = held.range(b"b", ..).unwrap().map(|e| e.unwrap()).collect();
    assert!(again == held_view, "the held snapshot is intact");
    drop(held);
    for _ in 0..5 {
        rewrite(&db);
    }
    let after = db.begin_read().unwrap().check().unwrap().page_count;
    assert!(
        after <= grown + grown / 4,
        "with no reader, freed pages are reused ({after} vs {grown})"
    );
}

#[test]
fn snapshot_stream_opens_at_the_snapshot_while_writes_continue() {
    let (dir, db) = temp_db();
    fill(&db, b"a", 0..3000, 64);
    fill(&db, b"b", 0..10, 5000);
    let r = db.begin_read().unwrap();
    let expected: BTreeMap<_, _> = r.range(b"a", ..).unwrap().map(|e| e.unwrap()).collect();
    fill(&db, b"a", 0..3000, 65);
    let mut copy = Vec::new();
    r.snapshot_to(&mut copy).unwrap();
    fill(&db, b"a", 0..100, 66);
    let path = dir.path().join("copy.btree");
    std::fs::write(&path, &copy).unwrap();
    let restored = Database::open(&path, Options::default()).unwrap();
    let rr = restored.begin_read().unwrap();
    rr.check().unwrap();
    let got: BTreeMap<_, _> = rr.range(b"a", ..).unwrap().map(|e| e.unwrap()).collect();
    assert!(
        got == expected,
        "the copy holds the snapshot, not later commits"
    );
    assert_eq!(rr.len(b"b").unwrap(), 10);
    drop(rr);
    fill(&restored, b"a", 0..10, 1);
    restored.begin_read().unwrap().check().unwrap();
}

#[test]
fn compaction_shrinks_the_file_and_keeps_every_entry() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.btree");
    let db = Database::open(
        &path,
        Options {
            durability: Durability::NoSync,
        },
    )
    .unwrap();
    fill(&db, b"b", 0..20_000, 100);
    let mut w = db.begin_write().unwrap();
    for i in (0..20_000u32).filter(|i| i % 2 == 0) {
        w.delete(b"b", format!("key{i:08}").as_bytes()).unwrap();
    }
    w.commit().unwrap();
    let before = db.begin_read().unwrap().check().unwrap();
    let expected: Vec<_> = db
        .begin_read()
        .unwrap()
        .range(b"b", ..)
        .unwrap()
        .map(|e| e.unwrap())
        .collect();
    let db = db.compact().unwrap();
    let r = db.begin_read().unwrap();
    let after = r.check().unwrap();
    assert_eq!(after.free_pages, 0);
    assert!(
        after.page_count * 2 < before.page_count,
        "{} pages vs {}",
        after.page_count,
        before.page_count
    );
    let got: Vec<_> = r.range(b"b", ..).unwrap().map(|e| e.unwrap()).collect();
    assert!(got == expected);
}

#[test]
fn failed_commit_poisons_the_database_until_reopened() {
    let disk = SimDisk::new(Vec::new());
    let db = Database::open_file(disk.clone(), Options::default()).unwrap();
    fill(&db, b"b", 0..10, 10);
    disk.cut_power_at_op(disk.ops_done());
    let mut w = db.begin_write().unwrap();
    w.put(b"b", b"k", b"v").unwrap();
    assert!(matches!(w.commit(), Err(Error::Io { .. })));
    assert!(matches!(db.begin_write(), Err(Error::Poisoned(_))));
    assert_eq!(
        db.begin_read().unwrap().len(b"b").unwrap(),
        10,
        "reads of the last commit still work"
    );
}

#[test]
fn prefix_scan_handles_0xff_bytes_and_reverse_ranges_respect_bounds() {
    let (_dir, db) = temp_db();
    let mut w = db.begin_write().unwrap();
    w.create_bucket(b"b").unwrap();
    for key in [
        &b"a\xff"[..],
        b"a\xff\x00",
        b"a\xff\xff",
        b"b",
        b"a",
        b"a\xfe",
    ] {
        w.put(b"b", key, key).unwrap();
    }
    w.commit().unwrap();
    let r = db.begin_read().unwrap();
    let keys = |it: cairn_btree::Range<'_>| it.map(|e| e.unwrap().0).collect::<Vec<_>>();
    assert_eq!(
        keys(r.prefix(b"b", b"a\xff").unwrap()),
        vec![
            b"a\xff".to_vec(),
            b"a\xff\x00".to_vec(),
            b"a\xff\xff".to_vec()
        ]
    );
    assert_eq!(
        keys(
            r.range_rev(b"b", (Included(&b"a"[..]), Excluded(&b"a\xff\xff"[..])))
                .unwrap()
        ),
        vec![
            b"a\xff\x00".to_vec(),
            b"a\xff".to_vec(),
            b"a\xfe".to_vec(),
            b"a".to_vec()
        ]
    );
    assert_eq!(
        r.count(b"b", (Included(&b"a\xfe"[..]), Unbounded)).unwrap(),
        5
    );
}

#[test]
fn sequential_appends_fill_leaves() {
    let (_dir, db) = temp_db();
    fill(&db, b"b", 0..20_000, 200);
    let stats = db.begin_read().unwrap().check().unwrap();
    // A 4 KiB leaf holds 18 entries of 16 + 200 bytes; an append-aware split leaves them full.
    let per_leaf = 20_000.0 / stats.buckets[0].leaf_pages as f64;
    assert!(per_leaf > 16.0, "{per_leaf:.1} entries per leaf");
}

#[test]
fn commits_too_big_for_the_meta_page_keep_their_lists_in_chains() {
    // 20 MiB spans about 5,200 overflow pages: the written list, and after the delete the free
    // list, outgrow the meta page and go to page chains.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.btree");
    let value: Vec<u8> = (0..20 << 20).map(|i: u32| (i % 253) as u8).collect();
    {
        let db = Database::open(&path, Options::default()).unwrap();
        let mut w = db.begin_write().unwrap();
        w.create_bucket(b"b").unwrap();
        w.put(b"b", b"big", &value).unwrap();
        w.commit().unwrap();
    }
    let db = Database::open(&path, Options::default()).unwrap();
    assert_eq!(
        db.begin_read().unwrap().get(b"b", b"big").unwrap().unwrap(),
        value
    );
    let mut w = db.begin_write().unwrap();
    w.delete(b"b", b"big").unwrap();
    w.commit().unwrap();
    fill(&db, b"b", 0..10, 10);
    drop(db);
    let db = Database::open(&path, Options::default()).unwrap();
    let stats = db.begin_read().unwrap().check().unwrap();
    assert!(
        stats.free_pages > 5000,
        "the value's pages are free: {}",
        stats.free_pages
    );
    fill(&db, b"b", 10..20, 10);
    assert_eq!(db.begin_read().unwrap().len(b"b").unwrap(), 20);
}
