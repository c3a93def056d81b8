//! A slow disk on one member must not cost the cluster its leader: a failpoint adds 1.5 s to
//! every WAL fsync of one follower; the leader stays, its term does not move, and writes keep
//! committing through the other two.
//!
//! Needs the test-only failpoints: `cargo test --features failpoints --test cluster_slow_disk`
//! (CI runs it so).
#![cfg(feature = "failpoints")]

mod common;

use std::time::{Duration, Instant};

use common::cluster::{
    etcdctl, leader_of, status_field, wait_for_value, wait_healthy, Cluster, Member,
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
