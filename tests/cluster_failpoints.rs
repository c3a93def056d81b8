//! Faults injected through the test-only failpoints (`cargo test --features failpoints --test
//! cluster_failpoints`; CI runs it so):
//! - a slow disk on one member must not cost the cluster its leader: a failpoint adds 1.5 s to
//!   every WAL fsync of one follower; the leader stays, its term does not move, and writes keep
//!   committing through the other two;
//! - a leader cut off from its peers (its Raft traffic dropped both ways, its clients still
//!   served) serves no linearizable read once the others have moved on;
//! - the same cut-off leader answers no keepalive with a TTL: a renewal it cannot record in
//!   the log is a promise its successor would not keep.
#![cfg(feature = "failpoints")]

mod common;

use std::time::{Duration, Instant};

use common::cluster::{
    etcdctl, eventually, leader_index, leader_of, status_field, wait_for_value, wait_healthy,
    Cluster, Member,
};
use common::etcd35_dir;

#[test]
fn a_follower_with_a_slow_disk_does_not_cause_elections() {
    let bin = etcd35_dir();
    let mut cluster = Cluster::new(3);
    let endpoints: Vec<String> = cluster.members.iter().map(Member::endpoint).collect();
    // Members 0 and 1 start first and elect a leader between them (two of three), so the
    // member with the slow disk joins as a follower.
    cluster.spawn(0);
    cluster.spawn(1);
    wait_healthy(&bin, &endpoints[..2]);
    cluster.spawn_with(2, &[("CAIRN_FAILPOINTS", "wal-fsync=delay(1500)")]);
    let (leader, _) = leader_of(&bin, &endpoints[0]).expect("status");
    let leader_endpoint = endpoints[..2]
        .iter()
        .find(|e| leader_of(&bin, e).is_some_and(|(_, me)| me == leader))
        .expect("the leader is one of the first two")
        .clone();
    let term = status_field(&bin, &leader_endpoint, "raft_term").expect("term");
    // Ten seconds of writes while the slow member catches up and falls behind again.
    let started = Instant::now();
    let mut writes = 0;
    while started.elapsed() < Duration::from_secs(10) {
        let sent = Instant::now();
        let put = etcdctl(&bin, &leader_endpoint, &["put", &format!("k{writes}"), "v"]);
        assert_eq!(put.code, 0, "write {writes}: {}", put.stderr);
        assert!(
            sent.elapsed() < Duration::from_secs(1),
            "write {writes} waited {:?} on the slow member",
            sent.elapsed()
        );
        writes += 1;
    }
    let (still, _) = leader_of(&bin, &leader_endpoint).expect("status");
    assert_eq!(still, leader, "the leader did not change");
    assert_eq!(
        status_field(&bin, &leader_endpoint, "raft_term"),
        Some(term),
        "no election happened"
    );
    // The slow member is in the cluster all along: it has the writes, slowly.
    wait_for_value(&bin, &endpoints[2], "k0", "v", Duration::from_secs(30));
    // And its disk really was slow (the failpoint is in force).
    let (_, metrics) = common::http_get(cluster.members[2].client_port, "/metrics");
    let fsync_seconds: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("cairn_wal_fsync_duration_seconds_sum "))
        .and_then(|v| v.trim().parse().ok())
        .expect("fsync histogram");
    assert!(
        fsync_seconds >= 1.5,
        "the slow member's fsyncs took {fsync_seconds} s in all"
    );
    eprintln!("{writes} writes in 10 s beside a member whose fsyncs take 1.5 s; leader and term unchanged");
}

/// A healthy 3-member cluster whose member `i` loses its Raft traffic (both ways) while the
/// file `cut(i)` exists; its clients are still served.
fn cuttable_cluster(
    bin: &std::path::Path,
    cut: &dyn Fn(usize) -> std::path::PathBuf,
) -> (Cluster, Vec<String>) {
    let mut cluster = Cluster::new(3);
    let endpoints: Vec<String> = cluster.members.iter().map(Member::endpoint).collect();
    for i in 0..3 {
        let spec = format!("peer-partition=while-file({})", cut(i).display());
        cluster.spawn_with(i, &[("CAIRN_FAILPOINTS", &spec)]);
    }
    wait_healthy(bin, &endpoints);
    (cluster, endpoints)
}

#[test]
fn a_partitioned_old_leader_serves_no_stale_linearizable_read() {
    let bin = etcd35_dir();
    let cuts = tempfile::tempdir().expect("temp dir");
    let cut = |i: usize| cuts.path().join(format!("cut-{i}"));
    let (_cluster, endpoints) = cuttable_cluster(&bin, &cut);
    let put = etcdctl(&bin, &endpoints[0], &["put", "x", "old"]);
    assert_eq!(put.code, 0, "{}", put.stderr);
    wait_for_value(&bin, &endpoints[2], "x", "old", Duration::from_secs(10));
    let old = leader_index(&bin, &endpoints);
    std::fs::write(cut(old), b"").expect("cut the leader off");
    // The majority elects a new leader and moves on.
    let survivors: Vec<String> = (0..3)
        .filter(|&i| i != old)
        .map(|i| endpoints[i].clone())
        .collect();
    let put = eventually(
        &bin,
        &survivors.join(","),
        &["put", "x", "new"],
        Duration::from_secs(20),
    );
    assert_eq!(put.code, 0, "{}", put.stderr);
    // The old leader still answers its clients: from its own copy, the old value...
    let local = etcdctl(
        &bin,
        &endpoints[old],
        &["get", "x", "--consistency", "s", "--print-value-only"],
    );
    assert_eq!(local.stdout, "old\n", "{}", local.stderr);
    // ...but never as a linearizable read.
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        let read = etcdctl(&bin, &endpoints[old], &["get", "x", "--print-value-only"]);
        assert_ne!(
            read.stdout, "old\n",
            "a stale linearizable read from the cut-off leader"
        );
        assert_ne!(read.code, 0, "{}", read.stdout);
    }
    // Healed, it learns the new term and serves the new value.
    std::fs::remove_file(cut(old)).expect("heal");
    let read = eventually(
        &bin,
        &endpoints[old],
        &["get", "x", "--print-value-only"],
        Duration::from_secs(20),
    );
    assert_eq!(read.stdout, "new\n", "{}", read.stderr);
}

/// The id etcdctl printed for a granted lease ("lease <hex> granted with TTL(5s)").
fn granted_lease_id(stdout: &str) -> String {
    stdout
        .split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("no lease id in {stdout:?}"))
        .to_string()
}

#[test]
fn a_cut_off_leader_promises_no_lease_time() {
    let bin = etcd35_dir();
    let cuts = tempfile::tempdir().expect("temp dir");
    let cut = |i: usize| cuts.path().join(format!("cut-{i}"));
    let (_cluster, endpoints) = cuttable_cluster(&bin, &cut);
    let old = leader_index(&bin, &endpoints);
    let grant = etcdctl(&bin, &endpoints[old], &["lease", "grant", "5"]);
    assert_eq!(grant.code, 0, "{}", grant.stderr);
    let id = granted_lease_id(&grant.stdout);
    let renewed = etcdctl(
        &bin,
        &endpoints[old],
        &["lease", "keep-alive", "--once", &id],
    );
    assert!(
        renewed.stdout.contains("keepalived with TTL(5)"),
        "a connected leader renews: {} {}",
        renewed.stdout,
        renewed.stderr
    );
    std::fs::write(cut(old), b"").expect("cut the leader off");
    // Until it notices (one election timeout) it still believes it leads; a renewal it
    // answered now would be a promise no successor knows of, so it must answer none.
    let started = Instant::now();
    let mut attempts = 0;
    while started.elapsed() < Duration::from_secs(3) {
        attempts += 1;
        let renewed = etcdctl(
            &bin,
            &endpoints[old],
            &["lease", "keep-alive", "--once", &id],
        );
        assert!(
            !renewed.stdout.contains("keepalived with TTL(5)"),
            "the cut-off leader promised lease time it could not record (attempt {attempts}): {}",
            renewed.stdout
        );
    }
    std::fs::remove_file(cut(old)).expect("heal");
    wait_healthy(&bin, &endpoints);
    eprintln!("{attempts} keepalives to the cut-off leader, none answered with a TTL");
}
