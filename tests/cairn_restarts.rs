//! Restarting never loses an acknowledged write and never applies one twice, also across
//! snapshots (which release WAL segments) and segment boundaries.

mod common;

use common::{etcd35_dir, run, EtcdServer};

fn wal_segments(server: &EtcdServer) -> usize {
    std::fs::read_dir(server.data_dir.join("member/wal"))
        .map(|dir| {
            dir.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().ends_with(".wal"))
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn writes_survive_sigkill_across_snapshots_and_wal_segments() {
    let bin = etcd35_dir();
    let etcdctl = bin.join("etcdctl");
    // Small segments and frequent snapshots: every round crosses both boundaries many times.
    let mut cairn = EtcdServer::start_cairn_with(
        &bin,
        &["--snapshot-count", "20", "--wal-segment-bytes", "65536"],
    );
    let ep = cairn.endpoint();
    let value = "x".repeat(1500);
    let mut written = 0;
    for round in 0..3 {
        for _ in 0..60 {
            written += 1;
            let out = run(
                &etcdctl,
                &[
                    "--endpoints",
                    &ep,
                    "put",
                    &format!("key{written:04}"),
                    &format!("{value}{written}"),
                ],
                "",
            );
            assert_eq!(out.code, 0, "round {round}, put {written}: {}", out.stderr);
        }
        cairn.kill_and_restart(&bin);
        let count = run(
            &etcdctl,
            &[
                "--endpoints",
                &ep,
                "get",
                "key",
                "--prefix",
                "--count-only",
                "-w",
                "fields",
            ],
            "",
        );
        assert!(
            count.stdout.contains(&format!("\"Count\" : {written}")),
            "round {round}: {}",
            count.stdout
        );
        let last = run(
            &etcdctl,
            &[
                "--endpoints",
                &ep,
                "get",
                &format!("key{written:04}"),
                "--print-value-only",
            ],
            "",
        );
        assert_eq!(last.stdout, format!("{value}{written}\n"), "round {round}");
        // Released segments: the log does not grow with the history (about 90 KiB per
        // 60 writes would otherwise mean several 64 KiB segments per round).
        assert!(
            wal_segments(&cairn) <= 3,
            "round {round}: {} WAL segments",
            wal_segments(&cairn)
        );
    }
    // Each put made exactly one revision; none was applied twice by a replay.
    let put = run(
        &etcdctl,
        &["--endpoints", &ep, "put", "final", "v", "-w", "json"],
        "",
    );
    assert!(
        put.stdout
            .contains(&format!("\"revision\":{}", written + 2)),
        "{}",
        put.stdout
    );
}

#[test]
fn a_missing_wal_segment_is_refused_not_papered_over() {
    let bin = etcd35_dir();
    let etcdctl = bin.join("etcdctl");
    let mut cairn = EtcdServer::start_cairn_with(&bin, &["--wal-segment-bytes", "65536"]);
    let ep = cairn.endpoint();
    let value = "y".repeat(4000);
    for i in 0..60 {
        assert_eq!(
            run(
                &etcdctl,
                &["--endpoints", &ep, "put", &format!("k{i}"), &value],
                ""
            )
            .code,
            0
        );
    }
    assert!(
        wal_segments(&cairn) >= 3,
        "the writes span several segments"
    );
    let _ = cairn.terminate();
    // Remove the newest segment: the key space is now ahead of the log.
    let wal_dir = cairn.data_dir.join("member/wal");
    let mut names: Vec<_> = std::fs::read_dir(&wal_dir)
        .expect("wal dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    names.sort();
    std::fs::remove_file(names.last().expect("a segment")).expect("remove");
    let out = std::process::Command::new(common::cairn_bin())
        .args(["--data-dir"])
        .arg(&cairn.data_dir)
        .args([
            "--listen-client-urls",
            &format!("http://127.0.0.1:{}", common::free_port()),
        ])
        .output()
        .expect("cairn runs");
    assert_eq!(out.status.code(), Some(1), "refuses to start");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("WAL") || stderr.contains("wal"), "{stderr}");
}
