//! Crash test with real processes: a child process (this binary, re-executed) appends numbered
//! entries from many tokio tasks and prints each one whose append returned; the parent
//! SIGKILLs it at random moments, reopens the log and checks that every acknowledged entry is
//! there, in order, unaltered, and that nothing durable before is lost later.
//!
//! `CAIRN_WAL_KILLS=<n>` sets the number of kills (default 20; CI's long run uses 500);
//! `CAIRN_WAL_SEED=<n>` replays the kill timings.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_wal::sim_disk::SimRng;
use cairn_wal::{Record, SnapshotMarker, Wal, WalConfig};
use common::{entry, seed_from_env};

const CHILD_ENV: &str = "CAIRN_WAL_CRASH_CHILD_DIR";
const CHILD_TASKS: u64 = 32;
/// A child that was never killed stops by itself after this long.
const CHILD_MAX_RUN: Duration = Duration::from_secs(60);
/// Every this many entries the child snapshots and releases old segments.
const RELEASE_EVERY_ENTRIES: u64 = 3000;

fn config() -> WalConfig {
    WalConfig {
        segment_bytes: 64 << 10,
        ..WalConfig::default()
    }
}

fn payload_len(index: u64) -> usize {
    (index * 13 % 400) as usize
}

/// The name test filters and `--list` see.
const TEST_NAME: &str = "acknowledged_entries_survive_sigkill";

fn main() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        child(Path::new(&dir));
        return;
    }
    // Behave like a libtest binary towards `--list` and name filters.
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        println!("{TEST_NAME}: test");
        return;
    }
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    if !filters.is_empty() && !filters.iter().any(|f| TEST_NAME.contains(f.as_str())) {
        println!("crash_kill: filtered out");
        return;
    }
    parent();
}

fn child(dir: &Path) {
    let (wal, rec) = match Wal::open(dir, config()) {
        Ok(x) => x,
        Err(e) => {
            println!("OPEN_FAILED {e}");
            std::process::exit(2);
        }
    };
    println!("READY {}", rec.next_index);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("runtime");
    let next = Arc::new(Mutex::new(rec.next_index));
    let started = Instant::now();
    rt.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..CHILD_TASKS {
            let wal = wal.clone();
            let next = next.clone();
            tasks.push(tokio::spawn(async move {
                while started.elapsed() < CHILD_MAX_RUN {
                    // Assigning the index and queueing the append together keeps entries in
                    // index order on disk.
                    let (index, fut, release) = {
                        let mut n = next.lock().expect("lock");
                        let index = *n;
                        *n += 1;
                        let mut records = vec![Record::Entry(entry(index, 1, payload_len(index)))];
                        let release = index % RELEASE_EVERY_ENTRIES == 0;
                        if release {
                            records.push(Record::Snapshot(SnapshotMarker {
                                index: index - RELEASE_EVERY_ENTRIES / 2,
                                term: 1,
                            }));
                        }
                        (index, wal.append(records), release)
                    };
                    if fut.await.is_err() {
                        return;
                    }
                    {
                        let mut out = std::io::stdout().lock();
                        let _ = writeln!(out, "ACK {index}");
                        let _ = out.flush();
                    }
                    if release {
                        let before = index - RELEASE_EVERY_ENTRIES / 2 + 1;
                        println!("RELEASE {before}");
                        if wal.release_before(before).await.is_err() {
                            return;
                        }
                    }
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    });
}

fn parent() {
    let kills = seed_from_env("CAIRN_WAL_KILLS", 20);
    let seed = seed_from_env("CAIRN_WAL_SEED", 0x5eed);
    let result = std::panic::catch_unwind(|| run_parent(kills, seed));
    if result.is_err() {
        eprintln!("crash_kill failed; replay with CAIRN_WAL_SEED={seed} CAIRN_WAL_KILLS={kills}");
        std::process::exit(1);
    }
    println!("crash_kill: {kills} kills ok");
}

/// A failing check must not leave a child appending in the background.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run_parent(kills: u64, seed: u64) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("own path");
    let mut rng = SimRng::new(seed);
    let mut acked = BTreeSet::new();
    let mut max_release = 0u64;
    let mut durable_next = 1u64;
    for kill in 0..kills {
        let mut child = KillOnDrop(
            Command::new(&exe)
                .env(CHILD_ENV, tmp.path())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("spawn child"),
        );
        let stdout = child.0.stdout.take().expect("piped");
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                match line {
                    Ok(l) => {
                        if tx.send(l).is_err() {
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
        });
        let first = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("child started");
        assert!(
            first.starts_with("READY"),
            "kill {kill}: child said {first}"
        );
        std::thread::sleep(Duration::from_millis(10 + rng.below(150)));
        child.0.kill().expect("SIGKILL");
        child.0.wait().expect("reap");
        reader.join().expect("reader");
        let mut acks_now = 0;
        for line in rx.try_iter() {
            let mut parts = line.split_whitespace();
            match (
                parts.next(),
                parts.next().and_then(|n| n.parse::<u64>().ok()),
            ) {
                (Some("ACK"), Some(i)) => {
                    acked.insert(i);
                    acks_now += 1;
                }
                (Some("RELEASE"), Some(i)) => max_release = max_release.max(i),
                _ => {} // a line cut by the kill
            }
        }

        let (wal, rec) = Wal::open(tmp.path(), config())
            .unwrap_or_else(|e| panic!("kill {kill}: reopen failed: {e}"));
        assert!(
            rec.next_index >= durable_next,
            "kill {kill}: log shrank from {durable_next} to {}",
            rec.next_index
        );
        assert!(
            rec.first_index <= max_release.max(1),
            "kill {kill}: released past the request: first {} > {max_release}",
            rec.first_index
        );
        let max_acked = acked.last().copied().unwrap_or(0);
        assert!(
            rec.next_index > max_acked,
            "kill {kill}: acknowledged {max_acked} but the log ends before {}",
            rec.next_index
        );
        let got = wal
            .read_entries(rec.first_index, rec.next_index)
            .unwrap_or_else(|e| panic!("kill {kill}: read: {e}"));
        for e in &got {
            assert_eq!(
                *e,
                entry(e.index, 1, payload_len(e.index)),
                "kill {kill}: entry {}",
                e.index
            );
        }
        durable_next = rec.next_index;
        eprintln!(
            "kill {kill}: {acks_now} acks, log {}..{}, torn tail {:?}",
            rec.first_index,
            rec.next_index,
            rec.torn_tail.map(|t| (t.offset, t.bytes))
        );
    }
    assert!(!acked.is_empty(), "the children acknowledged nothing");
}
