//! etcdctl's `watch` sees the same change feed from Cairn as from etcd: the same writes on
//! both, then watchers replaying history from a revision (and staying live), with prev-kv,
//! prefix and JSON output; the transcripts must match once ids and ports are masked.

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{etcd35_dir, etcdctl34, mask, run, server_ids, EtcdServer};

const ETCDCTL_WATCHERS: &[&[&str]] = &[
    &["watch", "foo", "--prefix", "--rev", "2", "--prev-kv"],
    &["watch", "foo2", "--rev", "1"],
    &["watch", "", "--prefix", "--rev", "3", "-w", "json"],
];

/// Runs the writes with etcdctl, then each watcher (run by `tool`) for a while; returns the
/// watchers' output.
fn transcript(
    etcdctl: &std::path::Path,
    tool: &std::path::Path,
    watchers: &[&[&str]],
    server: &EtcdServer,
) -> String {
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
    let mut out = String::new();
    for args in watchers {
        let mut child = Command::new(tool)
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
        &transcript(&etcdctl, &etcdctl, ETCDCTL_WATCHERS, &etcd),
        &etcd,
        &server_ids(&etcdctl, &etcd),
    );
    let got = mask(
        &transcript(&etcdctl, &etcdctl, ETCDCTL_WATCHERS, &cairn),
        &cairn,
        &server_ids(&etcdctl, &cairn),
    );
    assert!(
        expected.contains("DELETE"),
        "the reference transcript has events:\n{expected}"
    );
    assert_eq!(got, expected);
}

#[test]
fn cairnctl_watch_prints_what_etcdctl_watch_prints() {
    let bin = etcd35_dir();
    let etcdctl = bin.join("etcdctl");
    let cairnctl = std::path::PathBuf::from(env!("CARGO_BIN_EXE_cairnctl"));
    let (etcd, cairn) = (EtcdServer::start(&bin), EtcdServer::start_cairn(&bin));
    let simple = &ETCDCTL_WATCHERS[..2];
    let expected = transcript(&etcdctl, &etcdctl, simple, &etcd);
    let got = transcript(&etcdctl, &cairnctl, simple, &cairn);
    assert!(expected.contains("DELETE"), "{expected}");
    assert_eq!(got, expected);
}

#[test]
fn etcdctl_3_4_watch_transcripts_match_etcds() {
    let bin = etcd35_dir();
    let etcdctl = bin.join("etcdctl");
    let old = etcdctl34();
    let (etcd, cairn) = (EtcdServer::start(&bin), EtcdServer::start_cairn(&bin));
    let expected = mask(
        &transcript(&etcdctl, &old, ETCDCTL_WATCHERS, &etcd),
        &etcd,
        &server_ids(&etcdctl, &etcd),
    );
    let got = mask(
        &transcript(&etcdctl, &old, ETCDCTL_WATCHERS, &cairn),
        &cairn,
        &server_ids(&etcdctl, &cairn),
    );
    assert!(expected.contains("DELETE"), "{expected}");
    assert_eq!(got, expected);
}

/// `watch -i` with `lines` on standard input, closed after a while: (stdout, stderr, exit code).
fn interactive(tool: &std::path::Path, server: &EtcdServer, lines: &str) -> (String, String, i32) {
    use std::io::Write;
    let mut child = Command::new(tool)
        .args(["--endpoints", &server.endpoint(), "watch", "-i"])
        .env("ETCDCTL_API", "3")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("watch -i starts");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(lines.as_bytes()).expect("lines written");
    std::thread::sleep(Duration::from_millis(1500));
    drop(stdin);
    let out = child
        .wait_with_output()
        .expect("watch -i ends at end of input");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.code().unwrap_or(-1),
    )
}

#[test]
fn cairnctl_interactive_watch_behaves_as_etcdctls() {
    let bin = etcd35_dir();
    let etcdctl = bin.join("etcdctl");
    let cairnctl = std::path::PathBuf::from(env!("CARGO_BIN_EXE_cairnctl"));
    let (etcd, cairn) = (EtcdServer::start(&bin), EtcdServer::start_cairn(&bin));
    // The same history on both (the transcript's writes), then one replaying watcher and
    // every kind of bad line.
    transcript(&etcdctl, &etcdctl, &[], &etcd);
    transcript(&etcdctl, &etcdctl, &[], &cairn);
    let lines = "bogus\nwatch\nwatch --prefix foo bar\nwatch foo --prefix --rev 2 --prev-kv\n";
    let expected = interactive(&etcdctl, &etcd, lines);
    let got = interactive(&cairnctl, &cairn, lines);
    assert!(expected.0.contains("DELETE"), "{expected:?}");
    assert_eq!(got, expected);
    let unknown_flag = "watch --bogus x\n";
    assert_eq!(
        interactive(&cairnctl, &cairn, unknown_flag),
        interactive(&etcdctl, &etcd, unknown_flag)
    );
}
