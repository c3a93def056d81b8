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

/// Writes from 16 concurrent clients; returns each acknowledged (key, value).
fn write_until_stopped(
    endpoint: String,
    round: usize,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Vec<(String, String)> {
    use cairn::proto::etcdserverpb::{kv_client::KvClient, PutRequest};
    use std::sync::atomic::Ordering;
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async move {
        let channel = tonic::transport::Channel::from_shared(endpoint)
            .expect("endpoint")
            .connect()
            .await
            .expect("connect");
        let mut writers = Vec::new();
        for writer in 0..16 {
            let mut client = KvClient::new(channel.clone());
            let stop = std::sync::Arc::clone(&stop);
            writers.push(tokio::spawn(async move {
                let mut acked = Vec::new();
                for i in 0.. {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let key = format!("r{round}-w{writer:02}-{i:05}");
                    let value = format!("{key}-value");
                    let put = PutRequest {
                        key: key.clone().into_bytes(),
                        value: value.clone().into_bytes(),
                        ..Default::default()
                    };
                    match client.put(put).await {
                        Ok(_) => acked.push((key, value)),
                        Err(_) => break,
                    }
                }
                acked
            }));
        }
        let mut acked = Vec::new();
        for writer in writers {
            acked.extend(writer.await.unwrap_or_default());
        }
        acked
    })
}

#[test]
fn acknowledged_concurrent_writes_survive_sigkill_and_none_applies_twice() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let bin = etcd35_dir();
    let mut cairn = EtcdServer::start_cairn_with(
        &bin,
        &["--snapshot-count", "50", "--wal-segment-bytes", "65536"],
    );
    let ep = cairn.endpoint();
    let mut total_acked = 0;
    for round in 0..3 {
        let stop = Arc::new(AtomicBool::new(false));
        let writers = {
            let endpoint = format!("http://{ep}");
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || write_until_stopped(endpoint, round, stop))
        };
        std::thread::sleep(std::time::Duration::from_millis(400 + 300 * round as u64));
        stop.store(true, Ordering::SeqCst);
        cairn.kill();
        let acked = writers.join().expect("writers finish");
        assert!(
            !acked.is_empty(),
            "round {round}: some writes were acknowledged"
        );
        total_acked += acked.len();
        cairn.restart(&bin);
        let stored = read_prefix(format!("http://{ep}"), format!("r{round}-"));
        for (key, value) in &acked {
            // Present, with its value, and written exactly once (a replayed apply would make
            // version 2).
            match stored.get(key) {
                Some((stored_value, version)) => {
                    assert_eq!(stored_value, value, "round {round}: {key}");
                    assert_eq!(*version, 1, "round {round}: {key} applied twice");
                }
                None => panic!("round {round}: acknowledged {key} lost"),
            }
        }
        // Unacknowledged writes may or may not have landed, but each at most once.
        assert!(
            stored.values().all(|(_, version)| *version == 1),
            "round {round}"
        );
    }
    eprintln!("{total_acked} acknowledged writes checked across 3 SIGKILLs");
}

/// Every key with `prefix`: key → (value, version).
fn read_prefix(
    endpoint: String,
    prefix: String,
) -> std::collections::HashMap<String, (String, i64)> {
    use cairn::proto::etcdserverpb::{kv_client::KvClient, RangeRequest};
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async move {
        let mut client = KvClient::connect(endpoint)
            .await
            .expect("connect")
            .max_decoding_message_size(64 << 20);
        let mut end = prefix.clone().into_bytes();
        if let Some(last) = end.last_mut() {
            *last += 1;
        }
        let response = client
            .range(RangeRequest {
                key: prefix.into_bytes(),
                range_end: end,
                ..Default::default()
            })
            .await
            .expect("range")
            .into_inner();
        response
            .kvs
            .into_iter()
            .map(|kv| {
                (
                    String::from_utf8_lossy(&kv.key).into_owned(),
                    (String::from_utf8_lossy(&kv.value).into_owned(), kv.version),
                )
            })
            .collect()
    })
}
