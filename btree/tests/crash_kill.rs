//! Crash test: a child process commits numbered transactions in a loop and prints each
//! acknowledged commit; the parent SIGKILLs it at random moments, reopens the file, runs
//! `check()`, and verifies every acknowledged commit is present and no partial transaction is
//! visible; every other child commits without fsync (`Durability::NoSync`), which must
//! survive a process kill just the same. `CAIRN_BTREE_KILLS=<n>` sets the number of kills (default 20);
//! `CAIRN_BTREE_CRASH_SEED=<s>` replays the kill timing.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use cairn_btree::io::sim::SimRng;
use cairn_btree::{Database, Durability, Options};

const CHILD_ENV: &str = "CAIRN_BTREE_CRASH_CHILD";
/// Set for odd rounds: a killed process loses nothing even without fsync (the kernel keeps
/// its writes), so the same promises hold.
const NOSYNC_ENV: &str = "CAIRN_BTREE_CRASH_CHILD_NOSYNC";
const DATA: &[u8] = b"data";
/// Each transaction deletes the keys written this many transactions earlier.
const KEEP_TXNS: u64 = 3;

fn keys_of(txn: u64) -> Vec<Vec<u8>> {
    (0..txn % 5 + 1)
        .map(|i| format!("t{txn:010}-{i}").into_bytes())
        .collect()
}

fn value_of(txn: u64) -> Vec<u8> {
    let len = if txn % 10 == 0 { 3000 } else { 40 };
    txn.to_le_bytes()
        .iter()
        .copied()
        .cycle()
        .take(len)
        .collect()
}

fn committed_counter(db: &Database) -> u64 {
    let r = db.begin_read().unwrap();
    if !r.bucket_exists(DATA).unwrap() {
        return 0;
    }
    r.get(DATA, b"counter")
        .unwrap()
        .map(|v| u64::from_le_bytes(v.try_into().expect("counter is 8 bytes")))
        .unwrap_or(0)
}

fn child(path: &Path, durability: Durability) {
    let db = Database::open(path, Options { durability }).expect("child opens the database");
    let mut txn = committed_counter(&db);
    let mut out = std::io::stdout().lock();
    loop {
        txn += 1;
        let mut w = db.begin_write().unwrap();
        w.create_bucket_if_missing(DATA).unwrap();
        for key in keys_of(txn) {
            w.put(DATA, &key, &value_of(txn)).unwrap();
        }
        if txn > KEEP_TXNS {
            for key in keys_of(txn - KEEP_TXNS) {
                w.delete(DATA, &key).unwrap();
            }
        }
        w.put(DATA, b"counter", &txn.to_le_bytes()).unwrap();
        w.commit().unwrap();
        writeln!(out, "acked {txn}").unwrap();
        out.flush().unwrap();
    }
}

/// The state after commit `n`, checked exactly: the keys of the last `KEEP_TXNS` commits with
/// their values, nothing else.
fn verify(db: &Database, n: u64) {
    let r = db.begin_read().unwrap();
    r.check()
        .unwrap_or_else(|e| panic!("check after kill: {e}"));
    let first = n.saturating_sub(KEEP_TXNS - 1).max(1);
    let expected: BTreeSet<Vec<u8>> = (first..=n).flat_map(keys_of).collect();
    let mut found = BTreeSet::new();
    for entry in r.prefix(DATA, b"t").unwrap() {
        let (key, value) = entry.unwrap();
        let txn: u64 = std::str::from_utf8(&key[1..11]).unwrap().parse().unwrap();
        assert_eq!(
            value,
            value_of(txn),
            "value of {}",
            String::from_utf8_lossy(&key)
        );
        found.insert(key);
    }
    assert_eq!(found, expected, "exactly the keys of commits {first}..={n}");
}

fn main() {
    if let Ok(path) = std::env::var(CHILD_ENV) {
        let durability = if std::env::var_os(NOSYNC_ENV).is_some() {
            Durability::NoSync
        } else {
            Durability::Durable
        };
        child(Path::new(&path), durability);
        return;
    }
    let kills: u32 = std::env::var("CAIRN_BTREE_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let seed: u64 = std::env::var("CAIRN_BTREE_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    println!("crash test: {kills} kills, CAIRN_BTREE_CRASH_SEED={seed}");
    let mut rng = SimRng::new(seed);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.btree");
    let exe = std::env::current_exe().unwrap();
    let mut acked = 0u64;
    for round in 0..kills {
        let mut command = Command::new(&exe);
        command.env(CHILD_ENV, &path);
        if round % 2 == 1 {
            command.env(NOSYNC_ENV, "1");
        }
        let mut child = command
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn the child");
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut last = None;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(n) = line.strip_prefix("acked ") {
                    last = Some(n.parse::<u64>().expect("child prints numbers"));
                }
            }
            last
        });
        std::thread::sleep(Duration::from_millis(20 + rng.below(180)));
        child.kill().expect("SIGKILL the child");
        child.wait().unwrap();
        if let Some(n) = reader.join().unwrap() {
            assert!(n >= acked, "commit numbers only grow");
            acked = n;
        }
        let db = Database::open(&path, Options::default()).unwrap();
        let n = committed_counter(&db);
        assert!(
            n >= acked,
            "round {round}: acknowledged commit {acked} lost (file holds {n}); seed {seed}"
        );
        assert!(
            n <= acked + 1,
            "round {round}: file holds {n}, beyond the one in flight; seed {seed}"
        );
        verify(&db, n);
        acked = n;
    }
    assert!(acked > 0, "the child committed something");
    println!("crash test passed: {kills} kills, {acked} commits");
}
