//! cairn-btree side by side with redb, same workloads, same disk, one run:
//! `cargo run --release -p cairn-btree --example bench`.
//!
//! Sizes: `CAIRN_BENCH_KEYS` (default 1,000,000), `CAIRN_BENCH_COMMIT_SECS` (default 5),
//! directory `CAIRN_BENCH_DIR` (default a temporary directory under the system's temp dir).
//! The last line is `btree-vs-redb: <workload>=<ratio>x ...`, ratio = redb / cairn (time or
//! bytes), so above 1 means cairn-btree is faster or smaller.

use std::os::unix::fs::FileExt;
use std::path::Path;
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
    /// Compacts the file in place and closes it.
    fn compact(self: Box<Self>);
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
    fn compact(self: Box<Self>) {
        drop(self.0.compact().unwrap());
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
    fn compact(self: Box<Self>) {
        let mut db = self.0;
        db.compact().unwrap();
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

/// What one engine measured in one round.
#[derive(Clone, Copy, Default)]
struct Measured {
    seq_insert: Duration,
    rand_insert: Duration,
    size_after_inserts: u64,
    commit_p50: Duration,
    commit_p99: Duration,
    commits: usize,
    point_reads: Duration,
    range_scan: Duration,
    size_after_delete_half: u64,
    size_after_compact: u64,
}

impl Measured {
    /// The better of two rounds, metric by metric (other load on a shared machine only slows).
    fn best(self, other: Measured) -> Measured {
        Measured {
            seq_insert: self.seq_insert.min(other.seq_insert),
            rand_insert: self.rand_insert.min(other.rand_insert),
            size_after_inserts: other.size_after_inserts,
            commit_p50: self.commit_p50.min(other.commit_p50),
            commit_p99: self.commit_p99.min(other.commit_p99),
            commits: self.commits.max(other.commits),
            point_reads: self.point_reads.min(other.point_reads),
            range_scan: self.range_scan.min(other.range_scan),
            size_after_delete_half: other.size_after_delete_half,
            size_after_compact: other.size_after_compact,
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Cairn,
    Redb,
}

fn open(kind: Kind, path: &Path) -> Box<dyn Engine> {
    match kind {
        Kind::Cairn => Box::new(Cairn(Database::open(path, Options::default()).unwrap())),
        Kind::Redb => Box::new(Redb(redb::Database::create(path).unwrap())),
    }
}

/// Runs every workload on one engine in fresh files under `dir`.
fn run_suite(kind: Kind, dir: &Path, keys: u64, commit_secs: u64) -> Measured {
    let seq_path = dir.join("seq");
    let rand_path = dir.join("rand");
    let mut m = Measured::default();
    let seq = open(kind, &seq_path);
    m.seq_insert =
        timed(|| seq.insert_batches(&mut (0..keys).map(|i| (seq_key(i), value(i))), BATCH_KEYS));
    let rand = open(kind, &rand_path);
    m.rand_insert =
        timed(|| rand.insert_batches(&mut (0..keys).map(|i| (rand_key(i), value(i))), BATCH_KEYS));
    m.size_after_inserts = file_len(&seq_path) + file_len(&rand_path);
    (m.commit_p50, m.commit_p99, m.commits) = commit_latency(&*rand, commit_secs);
    m.point_reads = point_reads(&*rand, keys);
    m.range_scan = scans(&*seq, keys);
    drop(seq);
    rand.delete_batches(&mut (0..keys).step_by(2).map(rand_key), BATCH_KEYS);
    m.size_after_delete_half = file_len(&rand_path);
    rand.compact();
    m.size_after_compact = file_len(&rand_path);
    m
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
    let env = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let keys = env("CAIRN_BENCH_KEYS", 1_000_000);
    let commit_secs = env("CAIRN_BENCH_COMMIT_SECS", 5);
    let rounds = env("CAIRN_BENCH_ROUNDS", 2).max(1);
    let tmp = match std::env::var("CAIRN_BENCH_DIR") {
        Ok(d) => tempfile::tempdir_in(d).unwrap(),
        Err(_) => tempfile::tempdir().unwrap(),
    };
    let dir = tmp.path();
    println!(
        "cairn-btree vs redb: {keys} keys of 16 bytes, {VALUE_BYTES}-byte values, {BATCH_KEYS} per synced txn, \
         {rounds} rounds (engines alternate who goes first; best of the rounds), in {}",
        dir.display()
    );
    let mut best: [Option<Measured>; 2] = [None, None];
    let mut raw = (Duration::MAX, Duration::MAX);
    for round in 0..rounds {
        let order = if round % 2 == 0 {
            [Kind::Cairn, Kind::Redb]
        } else {
            [Kind::Redb, Kind::Cairn]
        };
        for kind in order {
            let sub = dir.join(format!(
                "{}-{round}",
                if kind == Kind::Cairn { "cairn" } else { "redb" }
            ));
            std::fs::create_dir_all(&sub).unwrap();
            let m = run_suite(kind, &sub, keys, commit_secs);
            std::fs::remove_dir_all(&sub).unwrap();
            let slot = &mut best[usize::from(kind == Kind::Redb)];
            *slot = Some(slot.map_or(m, |b| b.best(m)));
        }
        let (p50, p99) = raw_fdatasync(dir, commit_secs.min(3));
        raw = (raw.0.min(p50), raw.1.min(p99));
    }
    let (c, r) = (best[0].unwrap_or_default(), best[1].unwrap_or_default());
    let time = |name, c: Duration, r: Duration, show: fn(Duration) -> String| {
        (name, show(c), show(r), r.as_secs_f64() / c.as_secs_f64())
    };
    let size = |name, c: u64, r: u64| (name, mib(c), mib(r), r as f64 / c as f64);
    let rows = [
        time("seq_insert", c.seq_insert, r.seq_insert, secs),
        time("rand_insert", c.rand_insert, r.rand_insert, secs),
        time("commit_p50", c.commit_p50, r.commit_p50, micros),
        time("commit_p99", c.commit_p99, r.commit_p99, micros),
        time("point_reads", c.point_reads, r.point_reads, secs),
        time("range_scan_1000", c.range_scan, r.range_scan, secs),
        size(
            "size_after_inserts",
            c.size_after_inserts,
            r.size_after_inserts,
        ),
        size(
            "size_after_delete_half",
            c.size_after_delete_half,
            r.size_after_delete_half,
        ),
        size(
            "size_after_compact",
            c.size_after_compact,
            r.size_after_compact,
        ),
    ];
    println!();
    println!("| workload | cairn-btree | redb | ratio (redb/cairn) |");
    println!("|---|---|---|---|");
    for (name, cairn, redb, ratio) in &rows {
        println!("| {name} | {cairn} | {redb} | {ratio:.2}x |");
    }
    println!(
        "| 1-key commits in {commit_secs} s | {} | {} | |",
        c.commits, r.commits
    );
    println!(
        "| raw fdatasync of one page | p50 {} p99 {} | | cairn commit p50 = {:.2}x fdatasync |",
        micros(raw.0),
        micros(raw.1),
        c.commit_p50.as_secs_f64() / raw.0.as_secs_f64()
    );
    println!();
    let last: Vec<String> = rows
        .iter()
        .map(|(name, _, _, ratio)| format!("{name}={ratio:.2}x"))
        .collect();
    println!("btree-vs-redb: {}", last.join(" "));
}
