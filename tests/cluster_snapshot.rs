//! Snapshots between members: a follower whose next entry the leader compacted away, and a
//! member added after compaction, both catch up from a copy of the leader's key space streamed
//! to them (there is no log left to catch up from), then follow the log again.

mod common;

use std::time::Duration;

use common::cluster::{change_when_healthy, etcdctl, eventually, wait_for_value, Cluster};
use common::etcd35_dir;

/// How many keys under `prefix` a member holds, by a serializable (local) read.
fn local_count(bin: &std::path::Path, endpoint: &str, prefix: &str) -> usize {
    let out = etcdctl(
        bin,
        endpoint,
        &[
            "get",
            prefix,
            "--prefix",
            "--keys-only",
            "--consistency",
            "s",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    out.stdout.lines().filter(|l| !l.is_empty()).count()
}

#[test]
fn members_beyond_the_compacted_log_catch_up_by_snapshot() {
    let bin = etcd35_dir();
    let mut cluster = Cluster::new(3);
    // A snapshot every 20 entries, keeping only 10 behind it: a member 200 entries behind
    // cannot be caught up from the log.
    cluster.flags = [
        "--snapshot-count",
        "20",
        "--experimental-snapshot-catchup-entries",
        "10",
    ]
    .iter()
    .map(ToString::to_string)
    .collect();
    for i in 0..3 {
        cluster.spawn(i);
    }
    let up = format!(
        "{},{}",
        cluster.members[0].endpoint(),
        cluster.members[1].endpoint()
    );
    assert_eq!(
        eventually(&bin, &up, &["put", "k/first", "1"], Duration::from_secs(30)).code,
        0
    );
    wait_for_value(
        &bin,
        &cluster.members[2].endpoint(),
        "k/first",
        "1",
        Duration::from_secs(10),
    );

    cluster.kill(2);
    // If m2 led, the first write waits for the next leader.
    let first = eventually(&bin, &up, &["put", "k/000", "v0"], Duration::from_secs(30));
    assert_eq!(first.code, 0, "{}", first.stderr);
    for i in 1..200 {
        let put = etcdctl(&bin, &up, &["put", &format!("k/{i:03}"), &format!("v{i}")]);
        assert_eq!(put.code, 0, "put {i}: {}", put.stderr);
    }
    assert_eq!(etcdctl(&bin, &up, &["del", "k/000"]).code, 0);
    assert_eq!(etcdctl(&bin, &up, &["put", "k/last", "done"]).code, 0);
    assert_eq!(local_count(&bin, &cluster.members[0].endpoint(), "k/"), 201);

    // The follower comes back: the entries it misses are gone from every log.
    cluster.spawn(2);
    let follower = cluster.members[2].endpoint();
    wait_for_value(&bin, &follower, "k/last", "done", Duration::from_secs(60));
    assert_eq!(local_count(&bin, &follower, "k/"), 201);
    // History came with it: an old revision of a key, and the delete.
    let old = etcdctl(&bin, &follower, &["get", "k/000", "--consistency", "s"]);
    assert_eq!(old.stdout, "", "{}", old.stderr);
    // And it follows the log again afterwards.
    assert_eq!(etcdctl(&bin, &up, &["put", "k/after", "1"]).code, 0);
    wait_for_value(&bin, &follower, "k/after", "1", Duration::from_secs(10));

    // A member added now joins from a snapshot too.
    let all = format!("{up},{follower}");
    let new = cluster.add_slot();
    let peer_url = format!("http://127.0.0.1:{}", cluster.members[new].peer_port);
    let cairnctl = common::cairn_bin().with_file_name("cairnctl");
    let added = change_when_healthy(
        &cairnctl,
        &all,
        &["member", "add", "m3", "--learner", "--peer-urls", &peer_url],
    );
    assert_eq!(added.code, 0, "{}", added.stderr);
    let initial = Cluster::initial_cluster_printed(&added);
    cluster.spawn_joining(new, &initial);
    let learner = cluster.members[new].endpoint();
    wait_for_value(&bin, &learner, "k/after", "1", Duration::from_secs(60));
    assert_eq!(local_count(&bin, &learner, "k/"), 202);
}
