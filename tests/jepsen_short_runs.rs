//! Short runs of the fault-test harness (`cairn-jepsen test`) against real nodes: a healthy
//! cluster under kill -9 passes the register workload's linearizability check, and a planted
//! bug (followers answering linearizable reads from their own copy) is caught.
//!
//! Needs the test-only failpoints and the harness built: `cargo build -p cairn-jepsen` then
//! `cargo test --features failpoints --test jepsen_short_runs` (CI runs them so).
#![cfg(feature = "failpoints")]

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn harness() -> std::path::PathBuf {
    let path = common::cairn_bin().with_file_name("cairn-jepsen");
    assert!(
        path.exists(),
        "{} is missing: build it first with `cargo build -p cairn-jepsen`",
        path.display()
    );
    path
}

/// Runs the register workload for `seconds` with the kill nemesis; the exit code and summary.
fn short_run(seconds: &str, failpoints: &str) -> (Option<i32>, String) {
    let out = tempfile::tempdir().expect("temp dir");
    let mut run = Command::new(harness())
        .args(["test", "--workload", "register", "--nemesis", "kill"])
        .args(["--nodes", "3", "--time-limit", seconds, "--seed", "7"])
        .arg("--cairn-bin")
        .arg(common::cairn_bin())
        .arg("--out")
        .arg(out.path())
        .env("CAIRN_FAILPOINTS", failpoints)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("cairn-jepsen runs");
    // A run that does not end (a checker that never answers) fails instead of hanging CI.
    let deadline = Instant::now() + Duration::from_secs(180);
    let status = loop {
        if let Some(status) = run.try_wait().expect("wait for cairn-jepsen") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = run.kill();
            panic!("cairn-jepsen did not finish within 180 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let summary = std::fs::read_to_string(out.path().join("summary.txt"))
        .unwrap_or_else(|_| format!("no summary (exit {status})"));
    for file in ["history.jsonl", "nemesis.jsonl", "n0.log"] {
        assert!(out.path().join(file).exists(), "{file} missing: {summary}");
    }
    (status.code(), summary)
}

/// Operations that completed (not indeterminate), from the summary's counts line.
fn completed(summary: &str) -> u64 {
    summary
        .lines()
        .find_map(|line| {
            let (ops, rest) = line.split_once(" operations (")?;
            let indeterminate = rest.split_once(' ')?.0;
            Some(ops.parse::<u64>().ok()? - indeterminate.parse::<u64>().ok()?)
        })
        .unwrap_or_else(|| panic!("no operation counts in the summary: {summary}"))
}

#[test]
fn a_healthy_cluster_under_kills_stays_linearizable() {
    let (code, summary) = short_run("15", "");
    assert_eq!(code, Some(0), "{summary}");
    assert!(summary.contains("register: valid"), "{summary}");
    // A run where nothing completed would be valid too: it must have done real work.
    assert!(completed(&summary) >= 1_000, "{summary}");
}

#[test]
fn followers_answering_reads_locally_are_caught() {
    let (code, summary) = short_run("15", "follower-local-reads=on");
    assert_eq!(code, Some(1), "{summary}");
    assert!(summary.contains("INVALID"), "{summary}");
    assert!(summary.contains("is not linearizable"), "{summary}");
}
