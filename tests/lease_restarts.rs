//! Leases across restarts (kill -9): a lease keeps about the time it had left, not a fresh
//! TTL (etcd's default hands out a fresh one), renewals before the crash count, and a lease
//! that ran out while the member was down is revoked promptly after it starts.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{etcd35_dir, run, EtcdServer};

fn etcdctl(bin: &Path, server: &EtcdServer, args: &[&str]) -> String {
    let mut argv = vec!["--endpoints".to_string(), server.endpoint()];
    argv.extend(args.iter().map(|a| a.to_string()));
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let out = run(&bin.join("etcdctl"), &argv, "");
    assert_eq!(out.code, 0, "etcdctl {args:?}: {}", out.stderr);
    out.stdout
}

fn grant(bin: &Path, server: &EtcdServer, ttl: u32) -> String {
    let out = etcdctl(bin, server, &["lease", "grant", &ttl.to_string()]);
    out.split_whitespace().nth(1).expect("lease id").to_string()
}

/// Seconds left on a lease, from `lease timetolive` (None: expired or unknown).
fn remaining(bin: &Path, server: &EtcdServer, id: &str) -> Option<i64> {
    let out = etcdctl(bin, server, &["lease", "timetolive", id]);
    let start = out.find("remaining(")? + "remaining(".len();
    let digits: String = out[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

#[test]
fn a_restart_keeps_the_time_left_and_counts_renewals_before_the_crash() {
    let bin = etcd35_dir();
    let mut cairn = EtcdServer::start_cairn(&bin);
    let started = Instant::now();
    let idle = grant(&bin, &cairn, 40);
    let renewed = grant(&bin, &cairn, 40);
    std::thread::sleep(Duration::from_secs(6));
    etcdctl(&bin, &cairn, &["lease", "keep-alive", "--once", &renewed]);
    // Give the leader's checkpoint (once a second) time to record the renewal.
    std::thread::sleep(Duration::from_secs(6));
    cairn.kill_and_restart(&bin);
    let since_grant = started.elapsed().as_secs() as i64;
    let idle_left = remaining(&bin, &cairn, &idle).expect("the idle lease lives");
    let renewed_left = remaining(&bin, &cairn, &renewed).expect("the renewed lease lives");
    // Fresh TTLs would say 40 for both. The grace after a restart is an election timeout
    // (1 s) and a checkpoint interval (1 s).
    let idle_expected = 40 - since_grant + 2;
    assert!(
        (idle_expected - 3..=idle_expected + 1).contains(&idle_left),
        "idle lease: {idle_left}s left, expected about {idle_expected}s ({since_grant}s after its grant)"
    );
    assert!(
        renewed_left >= idle_left + 4,
        "the renewal 6 s after the grant survived the crash: {renewed_left}s vs {idle_left}s"
    );
    assert!(renewed_left < 40, "not a fresh TTL: {renewed_left}s");
}

#[test]
fn a_lease_that_ran_out_while_the_member_was_down_is_revoked_promptly() {
    let bin = etcd35_dir();
    let mut cairn = EtcdServer::start_cairn(&bin);
    let short = grant(&bin, &cairn, 3);
    let long = grant(&bin, &cairn, 600);
    etcdctl(&bin, &cairn, &["put", "ephemeral", "x", "--lease", &short]);
    etcdctl(&bin, &cairn, &["put", "durable", "y", "--lease", &long]);
    cairn.kill();
    std::thread::sleep(Duration::from_secs(5));
    cairn.restart(&bin);
    let restarted = Instant::now();
    loop {
        let keys = etcdctl(&bin, &cairn, &["get", "--prefix", "", "--keys-only"]);
        if !keys.contains("ephemeral") {
            assert!(
                keys.contains("durable"),
                "the live lease's key stays: {keys}"
            );
            break;
        }
        assert!(
            restarted.elapsed() < Duration::from_secs(8),
            "the expired lease's key is still there {:?} after the restart",
            restarted.elapsed()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(remaining(&bin, &cairn, &short), None, "revoked");
    let long_left = remaining(&bin, &cairn, &long).expect("the long lease lives");
    assert!(long_left > 580, "{long_left}");
}
