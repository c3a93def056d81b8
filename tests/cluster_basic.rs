//! A 3-member cluster of real processes on loopback, bootstrapped with etcd's flags: writes
//! through any member are readable (linearizably) through every other; killing the leader
//! with SIGKILL under writes elects a new one, loses no acknowledged write, and the old leader
//! catches up when it comes back.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::cluster::{
    etcdctl, eventually, leader_index, leader_of, wait_for_value, wait_healthy, Cluster, Member,
};
use common::{cairn_bin, etcd35_dir, run};

#[test]
fn three_members_replicate_and_survive_the_leaders_death() {
    let bin = etcd35_dir();
    let mut cluster = Cluster::start(3);
    let endpoints: Vec<String> = cluster.members.iter().map(Member::endpoint).collect();
    wait_healthy(&bin, &endpoints);
    // Writes through each member; read-your-writes through every other.
    for (i, endpoint) in endpoints.iter().enumerate() {
        let put = etcdctl(&bin, endpoint, &["put", &format!("k{i}"), &format!("v{i}")]);
        assert_eq!(put.code, 0, "put through {endpoint}: {}", put.stderr);
        for other in &endpoints {
            let get = etcdctl(
                &bin,
                other,
                &["get", &format!("k{i}"), "--print-value-only"],
            );
            assert_eq!(
                get.stdout,
                format!("v{i}\n"),
                "read through {other}: {}",
                get.stderr
            );
        }
    }
    // Every member published its client URLs: any member lists them all, and etcdctl finds
    // the whole cluster from one endpoint.
    // Publication is asynchronous: each member retries until its own applies.
    let deadline = Instant::now() + Duration::from_secs(20);
    for endpoint in &endpoints {
        loop {
            let members = etcdctl(&bin, endpoint, &["member", "list"]);
            assert_eq!(members.stdout.lines().count(), 3, "{}", members.stdout);
            let listed = |other: &String| members.stdout.contains(&format!("http://{other}"));
            if endpoints.iter().all(listed) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "client URLs not published: {}",
                members.stdout
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let status = etcdctl(&bin, &endpoints[0], &["endpoint", "status", "--cluster"]);
    assert_eq!(
        status.stdout.lines().count(),
        3,
        "{} {}",
        status.stdout,
        status.stderr
    );

    // Kill the leader; a new one is elected and every acknowledged write is still there.
    let leader_index = leader_index(&bin, &endpoints);
    let killed_at = Instant::now();
    cluster.kill(leader_index);
    let survivor = &endpoints[(leader_index + 1) % 3];
    let mut acknowledged = Vec::new();
    for n in 0..20 {
        let key = format!("after{n:02}");
        let put = eventually(&bin, survivor, &["put", &key, "x"], Duration::from_secs(15));
        assert_eq!(
            put.code, 0,
            "writes resume after the leader's death: {}",
            put.stderr
        );
        acknowledged.push(key);
    }
    eprintln!(
        "20 writes acknowledged {:?} after killing the leader",
        killed_at.elapsed()
    );
    let other_survivor = &endpoints[(leader_index + 2) % 3];
    let keys = etcdctl(
        &bin,
        other_survivor,
        &["get", "", "--prefix", "--keys-only"],
    );
    for key in ["k0", "k1", "k2"]
        .iter()
        .map(|k| k.to_string())
        .chain(acknowledged.clone())
    {
        assert!(
            keys.stdout.contains(&key),
            "{key} survives: {}",
            keys.stdout
        );
    }

    // The old leader comes back and catches up.
    cluster.spawn(leader_index);
    let back = &endpoints[leader_index];
    wait_for_value(&bin, back, "after19", "x", Duration::from_secs(30));
}

#[test]
fn a_member_refuses_a_data_dir_of_another_member_or_cluster() {
    let bin = etcd35_dir();
    let mut cluster = Cluster::start(1);
    let endpoint = cluster.members[0].endpoint();
    let health = eventually(
        &bin,
        &endpoint,
        &["endpoint", "health"],
        Duration::from_secs(30),
    );
    assert_eq!(health.code, 0, "{}", health.stderr);
    cluster.kill(0);
    let m = &cluster.members[0];
    let peer = format!("http://127.0.0.1:{}", m.peer_port);
    for (name, token) in [
        ("intruder", "etcd-cluster"),
        (m.name.as_str(), "another-cluster"),
    ] {
        let out = Command::new(cairn_bin())
            .args(["--name", name, "--data-dir"])
            .arg(&m.data_dir)
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .args(["--initial-cluster", &format!("{name}={peer}")])
            .args(["--initial-cluster-token", token])
            .args([
                "--listen-client-urls",
                &format!("http://127.0.0.1:{}", m.client_port),
            ])
            .output()
            .expect("cairn runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{name}/{token} started on another's data dir"
        );
        assert!(stderr.contains("refusing to start"), "{stderr}");
    }
    // With its own flags it starts again.
    cluster.spawn(0);
    let health = eventually(
        &bin,
        &endpoint,
        &["endpoint", "health"],
        Duration::from_secs(30),
    );
    assert_eq!(health.code, 0, "{}", health.stderr);
}

#[test]
fn five_members_survive_two_simultaneous_kills() {
    let bin = etcd35_dir();
    let mut cluster = Cluster::start(5);
    let endpoints: Vec<String> = cluster.members.iter().map(Member::endpoint).collect();
    wait_healthy(&bin, &endpoints);
    let put = etcdctl(&bin, &endpoints[0], &["put", "before", "1"]);
    assert_eq!(put.code, 0, "{}", put.stderr);
    // The leader and one follower die at once.
    let leader_index = leader_index(&bin, &endpoints);
    let follower_index = (leader_index + 1) % 5;
    cluster.kill(leader_index);
    cluster.kill(follower_index);
    let survivors: Vec<&String> = (0..5)
        .filter(|i| *i != leader_index && *i != follower_index)
        .map(|i| &endpoints[i])
        .collect();
    let put = eventually(
        &bin,
        survivors[0],
        &["put", "after", "2"],
        Duration::from_secs(15),
    );
    assert_eq!(put.code, 0, "three of five still commit: {}", put.stderr);
    for survivor in &survivors {
        let got = etcdctl(&bin, survivor, &["get", "", "--prefix", "--keys-only"]);
        assert!(
            got.stdout.contains("before") && got.stdout.contains("after"),
            "{survivor}: {}",
            got.stdout
        );
    }
}

#[test]
fn leases_work_through_followers() {
    let bin = etcd35_dir();
    let cluster = Cluster::start(3);
    let endpoints: Vec<String> = cluster.members.iter().map(Member::endpoint).collect();
    wait_healthy(&bin, &endpoints);
    let (leader, _) = leader_of(&bin, &endpoints[0]).expect("status");
    let followers: Vec<&String> = endpoints
        .iter()
        .filter(|e| leader_of(&bin, e).is_some_and(|(_, me)| me != leader))
        .collect();
    assert_eq!(followers.len(), 2);
    // Followers forward keepalives and time-to-live to the leader once they know its client
    // URL (published at start).
    let grant = eventually(
        &bin,
        followers[0],
        &["lease", "grant", "60"],
        Duration::from_secs(10),
    );
    let id = grant
        .stdout
        .split_whitespace()
        .nth(1)
        .expect("lease id")
        .to_string();
    let put = etcdctl(&bin, followers[1], &["put", "held", "x", "--lease", &id]);
    assert_eq!(put.code, 0, "{}", put.stderr);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let kept = etcdctl(&bin, followers[1], &["lease", "keep-alive", "--once", &id]);
        if kept.stdout.contains("keepalived with TTL(60)") {
            break;
        }
        assert!(Instant::now() < deadline, "{} {}", kept.stdout, kept.stderr);
        std::thread::sleep(Duration::from_millis(300));
    }
    let ttl = etcdctl(&bin, followers[0], &["lease", "timetolive", "--keys", &id]);
    assert!(
        ttl.stdout.contains("granted with TTL(60s)"),
        "{}",
        ttl.stdout
    );
    assert!(
        ttl.stdout.contains("attached keys([held])"),
        "{}",
        ttl.stdout
    );
    // A short lease expires on the leader's clock; its key is gone on every member.
    let short = etcdctl(&bin, followers[0], &["lease", "grant", "3"]);
    let short_id = short
        .stdout
        .split_whitespace()
        .nth(1)
        .expect("lease id")
        .to_string();
    let put = etcdctl(
        &bin,
        followers[1],
        &["put", "fleeting", "y", "--lease", &short_id],
    );
    assert_eq!(put.code, 0, "{}", put.stderr);
    std::thread::sleep(Duration::from_secs(5));
    for endpoint in &endpoints {
        let keys = etcdctl(&bin, endpoint, &["get", "", "--prefix", "--keys-only"]);
        assert!(
            !keys.stdout.contains("fleeting"),
            "{endpoint}: {}",
            keys.stdout
        );
        assert!(keys.stdout.contains("held"), "{endpoint}: {}", keys.stdout);
    }
    let revoke = etcdctl(&bin, followers[1], &["lease", "revoke", &id]);
    assert_eq!(revoke.code, 0, "{}", revoke.stderr);
    let keys = etcdctl(&bin, followers[0], &["get", "held"]);
    assert!(keys.stdout.is_empty(), "{}", keys.stdout);
}

#[test]
fn a_member_without_a_leader_refuses_rather_than_serves_stale_data() {
    use cairn::proto::etcdserverpb::{kv_client::KvClient, PutRequest, RangeRequest};
    let bin = etcd35_dir();
    let mut cluster = Cluster::start(3);
    let endpoints: Vec<String> = cluster.members.iter().map(Member::endpoint).collect();
    wait_healthy(&bin, &endpoints);
    let put = etcdctl(&bin, &endpoints[2], &["put", "k", "old"]);
    assert_eq!(put.code, 0, "{}", put.stderr);
    cluster.kill(0);
    cluster.kill(1);
    // After an election timeout or two the lone member knows it has no leader.
    std::thread::sleep(Duration::from_secs(3));
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let channel = tonic::transport::Channel::from_shared(format!("http://{}", endpoints[2]))
            .expect("endpoint")
            .connect()
            .await
            .expect("connect");
        let mut kv = KvClient::new(channel);
        let mut request = tonic::Request::new(PutRequest {
            key: b"k".to_vec(),
            value: b"new".to_vec(),
            ..Default::default()
        });
        request
            .metadata_mut()
            .insert("hasleader", "true".parse().expect("metadata"));
        let started = Instant::now();
        let refused = kv.put(request).await.expect_err("no leader, no write");
        assert_eq!(refused.code(), tonic::Code::Unavailable);
        assert_eq!(refused.message(), "etcdserver: no leader");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "refused at once"
        );
        // A linearizable read fails instead of answering from the cut-off member's state.
        let read = kv
            .range(RangeRequest {
                key: b"k".to_vec(),
                ..Default::default()
            })
            .await;
        assert!(
            read.is_err(),
            "a linearizable read without a leader: {read:?}"
        );
        // A serializable read is local by definition.
        let local = kv
            .range(RangeRequest {
                key: b"k".to_vec(),
                serializable: true,
                ..Default::default()
            })
            .await
            .expect("serializable read");
        assert_eq!(local.into_inner().kvs[0].value, b"old");
        // Unless the client asks for a leader: then even a local read is refused.
        let mut strict = tonic::Request::new(RangeRequest {
            key: b"k".to_vec(),
            serializable: true,
            ..Default::default()
        });
        strict
            .metadata_mut()
            .insert("hasleader", "true".parse().expect("metadata"));
        let refused = kv.range(strict).await.expect_err("hasleader honoured");
        assert_eq!(refused.message(), "etcdserver: no leader");
        // Member lists: the local one is served, a linearizable one needs a leader.
        let channel = tonic::transport::Channel::from_shared(format!("http://{}", endpoints[2]))
            .expect("endpoint")
            .connect()
            .await
            .expect("connect");
        let mut cluster_api =
            cairn::proto::etcdserverpb::cluster_client::ClusterClient::new(channel);
        let local = cluster_api
            .member_list(cairn::proto::etcdserverpb::MemberListRequest {
                linearizable: false,
            })
            .await
            .expect("local member list");
        assert_eq!(local.into_inner().members.len(), 3);
        let strict = cluster_api
            .member_list(cairn::proto::etcdserverpb::MemberListRequest { linearizable: true })
            .await;
        assert!(
            strict.is_err(),
            "a linearizable member list without a leader: {strict:?}"
        );
    });
}

#[test]
fn leadership_moves_on_request_through_etcdctl_and_cairnctl() {
    let bin = etcd35_dir();
    let cluster = Cluster::start(3);
    let endpoints: Vec<String> = cluster.members.iter().map(Member::endpoint).collect();
    wait_healthy(&bin, &endpoints);
    let all = endpoints.join(",");
    let cairnctl = PathBuf::from(env!("CARGO_BIN_EXE_cairnctl"));
    for tool in [bin.join("etcdctl"), cairnctl] {
        let (leader, _) = leader_of(&bin, &endpoints[0]).expect("status");
        let ids: Vec<u64> = endpoints
            .iter()
            .filter_map(|e| leader_of(&bin, e).map(|(_, me)| me))
            .collect();
        let target = *ids.iter().find(|id| **id != leader).expect("a follower");
        let moved = run(
            &tool,
            &["--endpoints", &all, "move-leader", &format!("{target:x}")],
            "",
        );
        assert_eq!(moved.code, 0, "{}: {}", tool.display(), moved.stderr);
        assert_eq!(
            moved.stdout,
            format!("Leadership transferred from {leader:x} to {target:x}\n")
        );
        let (now, _) = leader_of(&bin, &endpoints[0]).expect("status");
        assert_eq!(now, target, "{} moved leadership", tool.display());
        // A transferee that is no member is refused by the leader.
        let bad = run(&tool, &["--endpoints", &all, "move-leader", "abcdef"], "");
        assert_eq!(bad.code, 1, "{}", bad.stderr);
        assert!(
            bad.stderr.contains("etcdserver: bad leader transferee"),
            "{}",
            bad.stderr
        );
        // Without the leader among the endpoints there is no one to ask.
        let followers: Vec<&str> = endpoints
            .iter()
            .filter(|e| leader_of(&bin, e).is_some_and(|(_, me)| me != target))
            .map(String::as_str)
            .collect();
        let nobody = run(
            &tool,
            &["--endpoints", &followers.join(","), "move-leader", "1"],
            "",
        );
        assert_eq!(nobody.code, 128, "{}", nobody.stderr);
        assert!(
            nobody.stderr.contains("no leader endpoint given at"),
            "{}",
            nobody.stderr
        );
    }
}

#[test]
fn a_follower_back_after_snapshots_catches_up_from_the_log() {
    let bin = etcd35_dir();
    let mut cluster = Cluster::new(3);
    // Snapshots (and WAL compaction) every 50 entries on every member.
    cluster.flags = vec!["--snapshot-count".into(), "50".into()];
    for i in 0..3 {
        cluster.spawn(i);
    }
    let endpoints: Vec<String> = cluster.members.iter().map(Member::endpoint).collect();
    wait_healthy(&bin, &endpoints);
    let follower = (leader_index(&bin, &endpoints) + 1) % 3;
    cluster.kill(follower);
    let writer = &endpoints[(follower + 1) % 3];
    for n in 0..200 {
        let put = eventually(
            &bin,
            writer,
            &["put", &format!("k{n:03}"), "v"],
            Duration::from_secs(10),
        );
        assert_eq!(put.code, 0, "{}", put.stderr);
    }
    // The others snapshotted several times meanwhile; the log still reaches back far enough.
    cluster.spawn(follower);
    let back = &endpoints[follower];
    wait_for_value(&bin, back, "k199", "v", Duration::from_secs(30));
    let count = etcdctl(
        &bin,
        back,
        &[
            "get",
            "k",
            "--prefix",
            "--count-only",
            "-w",
            "fields",
            "--consistency",
            "s",
        ],
    );
    assert!(count.stdout.contains("\"Count\" : 200"), "{}", count.stdout);
}

#[test]
fn a_paused_old_leader_serves_no_stale_linearizable_read() {
    let bin = etcd35_dir();
    let cluster = Cluster::start(3);
    let endpoints: Vec<String> = cluster.members.iter().map(Member::endpoint).collect();
    wait_healthy(&bin, &endpoints);
    let put = etcdctl(&bin, &endpoints[0], &["put", "x", "old"]);
    assert_eq!(put.code, 0, "{}", put.stderr);
    let old = leader_index(&bin, &endpoints);
    // The old leader freezes (as in a long GC pause or a partition); the others elect a new
    // leader and move on.
    cluster.signal(old, "STOP");
    let survivor = &endpoints[(old + 1) % 3];
    let put = eventually(
        &bin,
        survivor,
        &["put", "x", "new"],
        Duration::from_secs(15),
    );
    assert_eq!(put.code, 0, "{}", put.stderr);
    // It wakes up still believing it leads: a linearizable read on it must not answer "old".
    cluster.signal(old, "CONT");
    let read = etcdctl(&bin, &endpoints[old], &["get", "x", "--print-value-only"]);
    assert_ne!(read.stdout, "old\n", "a stale read from the deposed leader");
    // And once it has heard of the new term it serves the new value.
    let read = eventually(
        &bin,
        &endpoints[old],
        &["get", "x", "--print-value-only"],
        Duration::from_secs(10),
    );
    assert_eq!(read.stdout, "new\n", "{}", read.stderr);
}
