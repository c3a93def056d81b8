//! Short runs of the fault-test harness (`cairn-jepsen test`) against real nodes: a healthy
//! cluster under kill -9 passes the register workload's linearizability check, and a planted
//! bug (followers answering linearizable reads from their own copy) is caught.
//!
//! Needs the test-only failpoints and the harness built: `cargo build -p cairn-jepsen` then
//! `cargo test --features failpoints --test jepsen_short_runs` (CI runs them so).
#![cfg(feature = "failpoints")]

mod common;

use std::process::Command;

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
    let run = Command::new(harness())
        .args([
            "test",
            "--workload",
            "register",
            "--nemesis",
            "kill",
            "--nodes",
            "3",
        ])
        .args(["--time-limit", seconds, "--seed", "7", "--cairn-bin"])
        .arg(common::cairn_bin())
        .arg("--out")
        .arg(out.path())
        .env("CAIRN_FAILPOINTS", failpoints)
        .output()
        .expect("cairn-jepsen runs");
    let summary = std::fs::read_to_string(out.path().join("summary.txt")).unwrap_or_else(|_| {
        format!(
            "no summary; stderr: {}",
            String::from_utf8_lossy(&run.stderr)
        )
    });
    for file in ["history.jsonl", "nemesis.jsonl", "n0.log"] {
        assert!(out.path().join(file).exists(), "{file} missing: {summary}");
    }
    (run.status.code(), summary)
}

#[test]
fn a_healthy_cluster_under_kills_stays_linearizable() {
    let (code, summary) = short_run("15", "");
    assert_eq!(code, Some(0), "{summary}");
    assert!(summary.contains("register: valid"), "{summary}");
}

#[test]
fn followers_answering_reads_locally_are_caught() {
    let (code, summary) = short_run("15", "follower-local-reads=on");
    assert_eq!(code, Some(1), "{summary}");
    assert!(summary.contains("INVALID"), "{summary}");
}
