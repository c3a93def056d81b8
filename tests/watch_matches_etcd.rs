//! etcdctl's `watch` sees the same change feed from Cairn as from etcd: the same writes on
//! both, then watchers replaying history from a revision (and staying live), with prev-kv,
//! prefix and JSON output; the transcripts must match once ids and ports are masked.

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{etcd35_dir, mask, run, server_ids, EtcdServer};

/// Runs the writes, then each watcher for a while; returns the watchers' output.
fn transcript(etcdctl: &std::path::Path, server: &EtcdServer) -> String {
    let ep = server.endpoint();
    let writes: &[&[&str]] = &[
        &["put", "foo0", "x"],
        &["put", "foo1", "a"],
        &["put", "foo2", "b"],
        &["del", "foo1"],
        &["put", "bar", "z"],
        &["put", "foo2", "c"],
        &["del", "foo", "--prefix"],
    ];
    for args in writes {
        let mut argv = vec!["--endpoints", &ep];
        argv.extend_from_slice(args);
        assert_eq!(run(etcdctl, &argv, "").code, 0, "{args:?}");
    }
    let watchers: &[&[&str]] = &[
        &["watch", "foo", "--prefix", "--rev", "2", "--prev-kv"],
        &["watch", "foo2", "--rev", "1"],
        &["watch", "", "--prefix", "--rev", "3", "-w", "json"],
    ];
    let mut out = String::new();
    for args in watchers {
        let mut child = Command::new(etcdctl)
            .args(["--endpoints", &ep])
            .args(*args)
            .env("ETCDCTL_API", "3")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("etcdctl watch starts");
        std::thread::sleep(Duration::from_millis(1500));
        let _ = child.kill();
        let mut text = String::new();
        if let Some(mut stdout) = child.stdout.take() {
            let _ = stdout.read_to_string(&mut text);
        }
        let _ = child.wait();
        out.push_str(&format!("== {args:?}\n{text}"));
    }
    out
}

#[test]
fn etcdctl_watch_transcripts_match_etcds() {
    let bin = etcd35_dir();
    let etcdctl = bin.join("etcdctl");
    let (etcd, cairn) = (EtcdServer::start(&bin), EtcdServer::start_cairn(&bin));
    let expected = mask(
        &transcript(&etcdctl, &etcd),
        &etcd,
        &server_ids(&etcdctl, &etcd),
    );
    let got = mask(
        &transcript(&etcdctl, &cairn),
        &cairn,
        &server_ids(&etcdctl, &cairn),
    );
    assert!(
        expected.contains("DELETE"),
        "the reference transcript has events:\n{expected}"
    );
    assert_eq!(got, expected);
}
