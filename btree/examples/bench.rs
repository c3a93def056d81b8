//! cairn-btree side by side with redb, same workloads, same disk, one run:
//! `cargo run --release -p cairn-btree --example bench`.
//!
//! Sizes: `CAIRN_BENCH_KEYS` (default 1,000,000), `CAIRN_BENCH_COMMIT_SECS` (default 5),
//! directory `CAIRN_BENCH_DIR` (default a temporary directory under the system's temp dir).
//! The last line is `btree-vs-redb: <workload>=<ratio>x ...`, ratio = redb / cairn (time or
//! bytes), so above 1 means cairn-btree is faster or smaller.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cairn_btree::{Database, Options};
use redb::ReadableDatabase;

const TABLE: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("bench");
const BUCKET: &[u8] = b"bench";
const BATCH_KEYS: u64 = 1000;
const VALUE_BYTES: usize = 256;
const READ_THREADS: u64 = 4;
const SCAN_KEYS: usize = 1000;
const SCANS: u64 = 2000;

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn seq_key(i: u64) -> [u8; 16] {
    (i as u128).to_be_bytes()
}

fn rand_key(i: u64) -> [u8; 16] {
    ((u128::from(mix(i)) << 64) | u128::from(mix(i ^ 0xABCD))).to_be_bytes()
}

fn value(i: u64) -> Vec<u8> {
    vec![(i % 251) as u8; VALUE_BYTES]
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

trait Engine: Sync {
    fn insert_batches(&self, keys: &mut dyn Iterator<Item = ([u8; 16], Vec<u8>)>, batch: u64);
    fn delete_batches(&self, keys: &mut dyn Iterator<Item = [u8; 16]>, batch: u64);
    fn get_len(&self, key: &[u8]) -> usize;
    fn scan(&self, start: &[u8], n: usize) -> usize;
}

struct Cairn(Database);
struct Redb(redb::Database);

impl Engine for Cairn {
    fn insert_batches(&self, keys: &mut dyn Iterator<Item = ([u8; 16], Vec<u8>)>, batch: u64) {
        let mut keys = keys.peekable();
        while keys.peek().is_some() {
            let mut w = self.0.begin_write().unwrap();
            w.create_bucket_if_missing(BUCKET).unwrap();
            for (k, v) in keys.by_ref().take(batch as usize) {
                w.put(BUCKET, &k, &v).unwrap();
            }
            w.commit().unwrap();
        }
    }
    fn delete_batches(&self, keys: &mut dyn Iterator<Item = [u8; 16]>, batch: u64) {
        let mut keys = keys.peekable();
        while keys.peek().is_some() {
            let mut w = self.0.begin_write().unwrap();
            for k in keys.by_ref().take(batch as usize) {
                w.delete(BUCKET, &k).unwrap();
            }
            w.commit().unwrap();
        }
    }
    fn get_len(&self, key: &[u8]) -> usize {
        let r = self.0.begin_read().unwrap();
        r.get(BUCKET, key).unwrap().map_or(0, |v| v.len())
    }
    fn scan(&self, start: &[u8], n: usize) -> usize {
        let r = self.0.begin_read().unwrap();
        let bounds = (std::ops::Bound::Included(start), std::ops::Bound::Unbounded);
        r.range(BUCKET, bounds)
            .unwrap()
            .take(n)
            .map(|e| e.unwrap().1.len())
            .sum()
    }
}

impl Engine for Redb {
    fn insert_batches(&self, keys: &mut dyn Iterator<Item = ([u8; 16], Vec<u8>)>, batch: u64) {
        let mut keys = keys.peekable();
        while keys.peek().is_some() {
            let w = self.0.begin_write().unwrap();
            {
                let mut t = w.open_table(TABLE).unwrap();
                for (k, v) in keys.by_ref().take(batch as usize) {
                    t.insert(k.as_slice(), v.as_slice()).unwrap();
                }
            }
            w.commit().unwrap();
        }
    }
    fn delete_batches(&self, keys: &mut dyn Iterator<Item = [u8; 16]>, batch: u64) {
        let mut keys = keys.peekable();
        while keys.peek().is_some() {
            let w = self.0.begin_write().unwrap();
            {
                let mut t = w.open_table(TABLE).unwrap();
                for k in keys.by_ref().take(batch as usize) {
                    t.remove(k.as_slice()).unwrap();
                }
            }
            w.commit().unwrap();
        }
    }
    fn get_len(&self, key: &[u8]) -> usize {
        let r = self.0.begin_read().unwrap();
        let t = r.open_table(TABLE).unwrap();
        t.get(key).unwrap().map_or(0, |v| v.value().len())
    }
    fn scan(&self, start: &[u8], n: usize) -> usize {
        let r = self.0.begin_read().unwrap();
        let t = r.open_table(TABLE).unwrap();
        t.range(start..)
            .unwrap()
            .take(n)
            .map(|e| e.unwrap().1.value().len())
            .sum()
    }
}

fn timed(f: impl FnOnce()) -> Duration {
    let start = Instant::now();
    f();
    start.elapsed()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p) as usize]
}

/// 1-key synced transactions for `secs`: (p50, p99, commits).
fn commit_latency(engine: &dyn Engine, secs: u64) -> (Duration, Duration, usize) {
    let mut lat = Vec::new();
    let end = Instant::now() + Duration::from_secs(secs);
    let mut i = 10_000_000u64;
    while Instant::now() < end {
        let kv = (rand_key(i), value(i));
        lat.push(timed(|| engine.insert_batches(&mut std::iter::once(kv), 1)));
        i += 1;
    }
    lat.sort();
    (percentile(&lat, 0.5), percentile(&lat, 0.99), lat.len())
}

fn raw_fdatasync(dir: &Path, secs: u64) -> (Duration, Duration) {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(dir.join("raw"))
        .unwrap();
    file.set_len(1 << 20).unwrap();
    file.sync_all().unwrap();
    let page = vec![7u8; 4096];
    let mut lat = Vec::new();
    let end = Instant::now() + Duration::from_secs(secs);
    let mut n = 0u64;
    while Instant::now() < end {
        lat.push(timed(|| {
            file.write_all_at(&page, (n % 256) * 4096).unwrap();
            file.sync_data().unwrap();
        }));
        n += 1;
    }
    lat.sort();
    (percentile(&lat, 0.5), percentile(&lat, 0.99))
}

fn point_reads(engine: &(dyn Engine + Sync), keys: u64) -> Duration {
    timed(|| {
        std::thread::scope(|s| {
            for t in 0..READ_THREADS {
                s.spawn(move || {
                    let mut found = 0usize;
                    for j in 0..keys / READ_THREADS {
                        let i = mix(t * keys + j) % keys;
                        found += engine.get_len(&rand_key(i));
                    }
                    assert!(found > 0);
                });
            }
        });
    })
}

fn scans(engine: &dyn Engine, keys: u64) -> Duration {
    timed(|| {
        for s in 0..SCANS {
            let start = mix(s) % keys.saturating_sub(SCAN_KEYS as u64).max(1);
            assert!(engine.scan(&seq_key(start), SCAN_KEYS) > 0);
        }
    })
}

struct Row {
    name: &'static str,
    cairn: String,
    redb: String,
    ratio: f64,
}

fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

fn micros(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1 << 20) as f64)
}

fn main() {
    let keys: u64 = std::env::var("CAIRN_BENCH_KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let commit_secs: u64 = std::env::var("CAIRN_BENCH_COMMIT_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let tmp = match std::env::var("CAIRN_BENCH_DIR") {
        Ok(d) => tempfile::tempdir_in(d).unwrap(),
        Err(_) => tempfile::tempdir().unwrap(),
    };
    let dir = tmp.path();
    println!("cairn-btree vs redb: {keys} keys of 16 bytes, {VALUE_BYTES}-byte values, {BATCH_KEYS} per synced txn, in {}", dir.display());
    let path = |name: &str| -> PathBuf { dir.join(name) };
    let mut rows: Vec<Row> = Vec::new();

    let cairn_seq = Cairn(Database::open(path("cairn-seq"), Options::default()).unwrap());
    let redb_seq = Redb(redb::Database::create(path("redb-seq")).unwrap());
    let c = timed(|| {
        cairn_seq.insert_batches(&mut (0..keys).map(|i| (seq_key(i), value(i))), BATCH_KEYS)
    });
    let r = timed(|| {
        redb_seq.insert_batches(&mut (0..keys).map(|i| (seq_key(i), value(i))), BATCH_KEYS)
    });
    rows.push(Row {
        name: "seq_insert",
        cairn: secs(c),
        redb: secs(r),
        ratio: r.as_secs_f64() / c.as_secs_f64(),
    });

    let cairn_rand = Cairn(Database::open(path("cairn-rand"), Options::default()).unwrap());
    let redb_rand = Redb(redb::Database::create(path("redb-rand")).unwrap());
    let c = timed(|| {
        cairn_rand.insert_batches(&mut (0..keys).map(|i| (rand_key(i), value(i))), BATCH_KEYS)
    });
    let r = timed(|| {
        redb_rand.insert_batches(&mut (0..keys).map(|i| (rand_key(i), value(i))), BATCH_KEYS)
    });
    rows.push(Row {
        name: "rand_insert",
        cairn: secs(c),
        redb: secs(r),
        ratio: r.as_secs_f64() / c.as_secs_f64(),
    });

    let (c_size, r_size) = (
        file_len(&path("cairn-seq")) + file_len(&path("cairn-rand")),
        file_len(&path("redb-seq")) + file_len(&path("redb-rand")),
    );
    rows.push(Row {
        name: "size_after_inserts",
        cairn: mib(c_size),
        redb: mib(r_size),
        ratio: r_size as f64 / c_size as f64,
    });

    let (c50, c99, cn) = commit_latency(&cairn_rand, commit_secs);
    let (r50, r99, rn) = commit_latency(&redb_rand, commit_secs);
    let (f50, f99) = raw_fdatasync(dir, commit_secs.min(3));
    rows.push(Row {
        name: "commit_p50",
        cairn: format!("{} ({cn} commits)", micros(c50)),
        redb: format!("{} ({rn} commits)", micros(r50)),
        ratio: r50.as_secs_f64() / c50.as_secs_f64(),
    });
    rows.push(Row {
        name: "commit_p99",
        cairn: micros(c99),
        redb: micros(r99),
        ratio: r99.as_secs_f64() / c99.as_secs_f64(),
    });

    let c = point_reads(&cairn_rand, keys);
    let r = point_reads(&redb_rand, keys);
    rows.push(Row {
        name: "point_reads",
        cairn: secs(c),
        redb: secs(r),
        ratio: r.as_secs_f64() / c.as_secs_f64(),
    });

    let c = scans(&cairn_seq, keys);
    let r = scans(&redb_seq, keys);
    rows.push(Row {
        name: "range_scan_1000",
        cairn: secs(c),
        redb: secs(r),
        ratio: r.as_secs_f64() / c.as_secs_f64(),
    });

    cairn_rand.delete_batches(&mut (0..keys).step_by(2).map(rand_key), BATCH_KEYS);
    redb_rand.delete_batches(&mut (0..keys).step_by(2).map(rand_key), BATCH_KEYS);
    let (c_del, r_del) = (file_len(&path("cairn-rand")), file_len(&path("redb-rand")));
    rows.push(Row {
        name: "size_after_delete_half",
        cairn: mib(c_del),
        redb: mib(r_del),
        ratio: r_del as f64 / c_del as f64,
    });
    let cairn_compacted = cairn_rand.0.compact().unwrap();
    let mut redb_db = redb_rand.0;
    redb_db.compact().unwrap();
    let (c_cmp, r_cmp) = (file_len(&path("cairn-rand")), file_len(&path("redb-rand")));
    rows.push(Row {
        name: "size_after_compact",
        cairn: mib(c_cmp),
        redb: mib(r_cmp),
        ratio: r_cmp as f64 / c_cmp as f64,
    });
    drop(cairn_compacted);

    println!();
    println!("| workload | cairn-btree | redb | ratio (redb/cairn) |");
    println!("|---|---|---|---|");
    for row in &rows {
        println!(
            "| {} | {} | {} | {:.2}x |",
            row.name, row.cairn, row.redb, row.ratio
        );
    }
    println!(
        "| raw fdatasync of one page | p50 {} p99 {} | | cairn commit p50 = {:.2}x fdatasync |",
        micros(f50),
        micros(f99),
        c50.as_secs_f64() / f50.as_secs_f64()
    );
    println!();
    let last: Vec<String> = rows
        .iter()
        .map(|r| format!("{}={:.2}x", r.name, r.ratio))
        .collect();
    println!("btree-vs-redb: {}", last.join(" "));
}
