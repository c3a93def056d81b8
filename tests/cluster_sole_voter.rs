//! A member that is its cluster's only voter serves linearizable reads without a ReadIndex
//! round; once a second voter joins it must not: with that voter gone, no quorum can confirm
//! its leadership, and linearizable reads fail as etcd's do while serializable ones still work.

mod common;

use std::time::Duration;

use common::cluster::{change_when_healthy, eventually, wait_for_value, Cluster};
use common::etcd35_dir;

#[test]
fn a_sole_voter_reads_at_once_but_not_after_a_second_voter_joins() {
    let bin = etcd35_dir();
    let etcdctl = bin.join("etcdctl");
    let mut cluster = Cluster::new(1);
    // Elections far slower than the test: when the second voter is killed, the first stays
    // leader (no check-quorum step-down) for as long as the refused read below waits, so
    // only the read path can refuse it.
    cluster.flags = ["--heartbeat-interval", "250", "--election-timeout", "6000"]
        .map(String::from)
        .to_vec();
    cluster.spawn(0);
    let first = cluster.members[0].endpoint();
    assert_eq!(
        eventually(&bin, &first, &["put", "k", "1"], Duration::from_secs(30)).code,
        0
    );
    // Alone: linearizable reads (and lease renewals' barriers) are served.
    let read = common::run(
        &etcdctl,
        &["--endpoints", &first, "--command-timeout", "5s", "get", "k"],
        "",
    );
    assert_eq!(read.code, 0, "{}", read.stderr);
    assert_eq!(read.stdout, "k\n1\n");

    // A learner joins, catches up and is promoted: two voters.
    let (new, added) = cluster.add_learner(&etcdctl, &first);
    assert_eq!(added.code, 0, "member add: {}", added.stderr);
    let initial = Cluster::initial_cluster_printed(&added);
    let learner_id = added
        .stdout
        .split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("{}", added.stdout))
        .to_string();
    cluster.spawn_joining(new, &initial);
    wait_for_value(
        &bin,
        &cluster.members[new].endpoint(),
        "k",
        "1",
        Duration::from_secs(30),
    );
    let promoted = change_when_healthy(&etcdctl, &first, &["member", "promote", &learner_id]);
    assert_eq!(promoted.code, 0, "member promote: {}", promoted.stderr);
    let read = common::run(
        &etcdctl,
        &["--endpoints", &first, "--command-timeout", "5s", "get", "k"],
        "",
    );
    assert_eq!(read.code, 0, "two voters up: {}", read.stderr);

    // The second voter goes: the first cannot confirm it leads, so it must not answer a
    // linearizable read from its own state (it may not be the leader any more).
    cluster.kill(new);
    let refused = common::run(
        &etcdctl,
        &["--endpoints", &first, "--command-timeout", "3s", "get", "k"],
        "",
    );
    assert_ne!(
        refused.code, 0,
        "a linearizable read without quorum was answered: {}",
        refused.stdout
    );
    let serializable = common::run(
        &etcdctl,
        &[
            "--endpoints",
            &first,
            "--command-timeout",
            "5s",
            "get",
            "k",
            "--consistency=s",
        ],
        "",
    );
    assert_eq!(serializable.code, 0, "{}", serializable.stderr);
    assert_eq!(serializable.stdout, "k\n1\n");
}
