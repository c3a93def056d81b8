//! Membership changes on a real cluster, made with real etcdctl 3.5.1 and 3.4 and with
//! cairnctl: a learner is added, joins with `--initial-cluster-state existing`, catches up,
//! serves only what a learner may, is promoted; a member is removed and stops by itself;
//! and every change etcd refuses is refused with etcd's error.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::cluster::{change_when_healthy, eventually, wait_for_value, Cluster};
use common::{etcd35_dir, etcdctl34, run, Run};

/// The three tools that drive the cluster, each as (label, program).
fn tools() -> Vec<(&'static str, PathBuf)> {
    let cairnctl = common::cairn_bin().with_file_name("cairnctl");
    vec![
        ("etcdctl 3.5.1", etcd35_dir().join("etcdctl")),
        ("etcdctl 3.4", etcdctl34()),
        ("cairnctl", cairnctl),
    ]
}

fn ctl(tool: &Path, endpoints: &str, args: &[&str]) -> Run {
    let mut argv = vec!["--endpoints", endpoints, "--command-timeout", "5s"];
    argv.extend_from_slice(args);
    run(tool, &argv, "")
}

/// Member ids by name from `member list` (simple output: `id, status, name, peers, clients,
/// learner`).
fn member_ids(tool: &Path, endpoints: &str) -> Vec<(String, String, bool)> {
    let out = ctl(tool, endpoints, &["member", "list"]);
    assert_eq!(out.code, 0, "member list: {}", out.stderr);
    out.stdout
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split(", ").collect();
            (
                fields[2].to_string(),
                fields[0].to_string(),
                fields[5] == "true",
            )
        })
        .collect()
}

/// The last line of a failed command's stderr (etcdctl's `Error: ...`).
fn error_line(out: &Run) -> String {
    out.stderr.lines().last().unwrap_or_default().to_string()
}

#[test]
fn learners_join_catch_up_and_are_promoted_and_removed_members_stop() {
    let bin = etcd35_dir();
    let mut cluster = Cluster::start(3);
    let mut voters: Vec<usize> = vec![0, 1, 2];
    let endpoints_of = |cluster: &Cluster, voters: &[usize]| -> String {
        voters
            .iter()
            .map(|&i| cluster.members[i].endpoint())
            .collect::<Vec<_>>()
            .join(",")
    };
    let first = cluster.members[0].endpoint();
    assert_eq!(
        eventually(
            &bin,
            &first,
            &["put", "before", "1"],
            Duration::from_secs(30)
        )
        .code,
        0
    );

    // Each tool in turn: add a learner, start it, promote it, remove the oldest voter.
    for (round, (label, tool)) in tools().into_iter().enumerate() {
        let endpoints = endpoints_of(&cluster, &voters);
        let (new, added) = cluster.add_learner(&tool, &endpoints);
        let name = cluster.members[new].name.clone();
        let peer_url = format!("http://127.0.0.1:{}", cluster.members[new].peer_port);
        assert_eq!(added.code, 0, "{label}: member add: {}", added.stderr);
        let lines: Vec<&str> = added.stdout.lines().collect();
        assert!(
            lines[0].starts_with("Member ") && lines[0].contains(" added to cluster "),
            "{label}: {}",
            added.stdout
        );
        assert_eq!(lines[1], "", "{label}");
        assert_eq!(lines[2], format!("ETCD_NAME=\"{name}\""), "{label}");
        let initial = lines[3]
            .strip_prefix("ETCD_INITIAL_CLUSTER=\"")
            .and_then(|rest| rest.strip_suffix('"'))
            .unwrap_or_else(|| panic!("{label}: {}", added.stdout));
        assert!(
            initial.contains(&format!("{name}={peer_url}")),
            "{label}: {initial}"
        );
        assert_eq!(
            lines[4],
            format!("ETCD_INITIAL_ADVERTISE_PEER_URLS=\"{peer_url}\"")
        );
        assert_eq!(lines[5], "ETCD_INITIAL_CLUSTER_STATE=\"existing\"");
        let listed = member_ids(&tool, &endpoints);
        let (_, new_id, learner) = listed
            .iter()
            .find(|(_, _, learner)| *learner)
            .cloned()
            .unwrap_or_else(|| panic!("{label}: no learner listed: {listed:?}"));
        assert!(learner);

        // The learner joins, catches up with writes made before and after it was added.
        let key = format!("round{round}");
        assert_eq!(ctl(&tool, &endpoints, &["put", &key, "x"]).code, 0);
        cluster.spawn_joining(new, initial);
        let learner_endpoint = cluster.members[new].endpoint();
        wait_for_value(&bin, &learner_endpoint, &key, "x", Duration::from_secs(30));
        wait_for_value(
            &bin,
            &learner_endpoint,
            "before",
            "1",
            Duration::from_secs(5),
        );
        // A learner serves serializable reads and status only.
        let put = ctl(&tool, &learner_endpoint, &["put", "k", "v"]);
        assert_eq!(put.code, 1, "{label}: put on a learner: {}", put.stdout);
        assert_eq!(
            error_line(&put),
            "Error: etcdserver: rpc not supported for learner"
        );
        let status = ctl(
            &bin.join("etcdctl"),
            &learner_endpoint,
            &["endpoint", "status", "-w", "json"],
        );
        assert!(
            status.stdout.contains("\"isLearner\":true"),
            "{}",
            status.stdout
        );

        // etcdctl prints the ids of these lines as Go's %16x: space-padded to 16.
        let promoted = change_when_healthy(&tool, &endpoints, &["member", "promote", &new_id]);
        assert_eq!(promoted.code, 0, "{label}: promote: {}", promoted.stderr);
        assert!(
            promoted
                .stdout
                .starts_with(&format!("Member {new_id:>16} promoted in cluster ")),
            "{label}: {}",
            promoted.stdout
        );
        voters.push(new);

        // The oldest voter leaves; its process stops by itself, cleanly, as etcd's does.
        let leaving = voters.remove(0);
        let endpoints = endpoints_of(&cluster, &voters);
        let leaving_name = cluster.members[leaving].name.clone();
        let leaving_id = member_ids(&tool, &endpoints)
            .into_iter()
            .find(|(n, _, _)| *n == leaving_name)
            .map(|(_, id, _)| id)
            .unwrap_or_else(|| panic!("{label}: {leaving_name} not listed"));
        let removed = change_when_healthy(&tool, &endpoints, &["member", "remove", &leaving_id]);
        assert_eq!(removed.code, 0, "{label}: remove: {}", removed.stderr);
        assert!(
            removed
                .stdout
                .starts_with(&format!("Member {leaving_id:>16} removed from cluster ")),
            "{label}: {}",
            removed.stdout
        );
        assert_eq!(
            cluster.wait_exit(leaving, Duration::from_secs(20)),
            Some(0),
            "{label}: the removed member {leaving_name} keeps running"
        );
        let listed = member_ids(&tool, &endpoints);
        assert_eq!(listed.len(), 3, "{label}: {listed:?}");
        assert!(
            listed.iter().all(|(_, _, learner)| !learner),
            "{label}: {listed:?}"
        );
        // Writes keep committing on the new configuration, visible on the new voter.
        let after = format!("after{round}");
        let wrote = eventually(
            &bin,
            &endpoints,
            &["put", &after, "y"],
            Duration::from_secs(20),
        );
        assert_eq!(wrote.code, 0, "{label}: {}", wrote.stderr);
        wait_for_value(
            &bin,
            &learner_endpoint,
            &after,
            "y",
            Duration::from_secs(10),
        );
    }
    // None of the founders is left; the cluster still serves linearizable reads everywhere.
    for &i in &voters {
        let got = ctl(
            &bin.join("etcdctl"),
            &cluster.members[i].endpoint(),
            &["get", "before", "--print-value-only"],
        );
        assert_eq!(got.stdout, "1\n", "member {i}: {}", got.stderr);
    }
}

#[test]
fn refused_membership_changes_get_etcds_errors() {
    let bin = etcd35_dir();
    let mut cluster = Cluster::start(3);
    let endpoints: String = (0..3)
        .map(|i| cluster.members[i].endpoint())
        .collect::<Vec<_>>()
        .join(",");
    assert_eq!(
        eventually(
            &bin,
            &endpoints,
            &["put", "k", "v"],
            Duration::from_secs(30)
        )
        .code,
        0
    );
    let m1_id = member_ids(&bin.join("etcdctl"), &endpoints)
        .into_iter()
        .find(|(name, _, _)| name == "m1")
        .map(|(_, id, _)| id)
        .expect("m1 listed");
    let m0_peer = format!("http://127.0.0.1:{}", cluster.members[0].peer_port);
    let expect = |args: &[&str], error: &str| {
        for (label, tool) in tools() {
            let out = change_when_healthy(&tool, &endpoints, args);
            assert_eq!(out.code, 1, "{label} {args:?}: {}", out.stdout);
            assert_eq!(
                error_line(&out),
                format!("Error: {error}"),
                "{label} {args:?}"
            );
        }
    };
    expect(
        &["member", "promote", &m1_id],
        "etcdserver: can only promote a learner member",
    );
    expect(
        &["member", "promote", "1234"],
        "etcdserver: member not found",
    );
    expect(
        &["member", "remove", "1234"],
        "etcdserver: member not found",
    );
    expect(
        &["member", "add", "dup", "--peer-urls", &m0_peer],
        "etcdserver: Peer URLs already exists",
    );
    expect(
        &[
            "member",
            "update",
            "1234",
            "--peer-urls",
            "http://127.0.0.1:1",
        ],
        "etcdserver: member not found",
    );
    // One learner at most (etcd 3.5), and one that never started is not in sync.
    let learner = change_when_healthy(
        &bin.join("etcdctl"),
        &endpoints,
        &[
            "member",
            "add",
            "l",
            "--learner",
            "--peer-urls",
            "http://127.0.0.1:9",
        ],
    );
    assert_eq!(learner.code, 0, "{}", learner.stderr);
    expect(
        &[
            "member",
            "add",
            "l2",
            "--learner",
            "--peer-urls",
            "http://127.0.0.1:10",
        ],
        "etcdserver: too many learner members in cluster",
    );
    let learner_id = member_ids(&bin.join("etcdctl"), &endpoints)
        .into_iter()
        .find(|(_, _, learner)| *learner)
        .map(|(_, id, _)| id)
        .expect("learner listed");
    expect(
        &["member", "promote", &learner_id],
        "etcdserver: can only promote a learner member which is in sync with leader",
    );
    let removed = ctl(
        &bin.join("etcdctl"),
        &endpoints,
        &["member", "remove", &learner_id],
    );
    assert_eq!(removed.code, 0, "{}", removed.stderr);
    expect(
        &["member", "remove", &learner_id],
        "etcdserver: member not found",
    );

    // With m2 down, removing a running voter would leave no working quorum.
    cluster.kill(2);
    std::thread::sleep(Duration::from_secs(6));
    let up: String = (0..2)
        .map(|i| cluster.members[i].endpoint())
        .collect::<Vec<_>>()
        .join(",");
    for (label, tool) in tools() {
        let out = ctl(&tool, &up, &["member", "remove", &m1_id]);
        assert_eq!(
            error_line(&out),
            "Error: etcdserver: unhealthy cluster",
            "{label}"
        );
    }
    // Removing the member that is down is how an operator repairs the cluster.
    let m2_id = member_ids(&bin.join("etcdctl"), &up)
        .into_iter()
        .find(|(name, _, _)| name == "m2")
        .map(|(_, id, _)| id)
        .expect("m2 listed");
    let repaired = ctl(
        &common::cairn_bin().with_file_name("cairnctl"),
        &up,
        &["member", "remove", &m2_id],
    );
    assert_eq!(repaired.code, 0, "{}", repaired.stderr);
    assert_eq!(member_ids(&bin.join("etcdctl"), &up).len(), 2);
    // The restarted removed member is told it was removed and stops cleanly.
    cluster.spawn(2);
    assert_eq!(cluster.wait_exit(2, Duration::from_secs(20)), Some(0));
    assert_eq!(ctl(&bin.join("etcdctl"), &up, &["put", "k", "v2"]).code, 0);
}
