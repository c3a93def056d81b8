//! The command-line surface that deployment recipes depend on: etcd's flag names, the version
//! line with its commit, and a clear refusal of a bad configuration.

use std::process::Command;

fn run(binary: &str, args: &[&str]) -> (i32, String, String) {
    let output = Command::new(binary)
        .args(args)
        .env_remove("CAIRN_NAME")
        .output()
        .unwrap_or_else(|err| panic!("{binary} runs: {err}"));
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn server_help_lists_etcd_flags() {
    let (code, help, _) = run(env!("CARGO_BIN_EXE_cairn"), &["--help"]);
    assert_eq!(code, 0);
    for flag in [
        "--name",
        "--data-dir",
        "--listen-client-urls",
        "--advertise-client-urls",
        "--listen-peer-urls",
        "--initial-advertise-peer-urls",
        "--initial-cluster ",
        "--initial-cluster-state",
        "--initial-cluster-token",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
}

#[test]
fn both_binaries_print_version_and_commit() {
    for (binary, name) in [
        (env!("CARGO_BIN_EXE_cairn"), "cairn"),
        (env!("CARGO_BIN_EXE_cairnctl"), "cairnctl"),
    ] {
        let (code, out, _) = run(binary, &["--version"]);
        assert_eq!(code, 0, "{name} --version");
        let expected = format!("{name} {} (git ", env!("CARGO_PKG_VERSION"));
        assert!(out.starts_with(&expected), "{name}: {out}");
        assert!(out.contains("etcd API 3.5"), "{name}: {out}");
        let commit = out
            .split("(git ")
            .nth(1)
            .and_then(|rest| rest.split(',').next())
            .unwrap_or_default();
        assert!(
            commit == "unknown"
                || (commit.len() == 12 && commit.chars().all(|c| c.is_ascii_hexdigit())),
            "{name}: commit {commit:?}"
        );
    }
    let (code, out, _) = run(env!("CARGO_BIN_EXE_cairnctl"), &["version"]);
    assert_eq!(code, 0);
    assert!(out.contains("API version: 3.5"), "{out}");
}

#[test]
fn bad_configuration_is_refused_with_etcds_message() {
    let (code, _, err) = run(
        env!("CARGO_BIN_EXE_cairn"),
        &[
            "--name",
            "x",
            "--initial-cluster",
            "a=http://localhost:2380",
        ],
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("couldn't find local name \"x\" in the initial cluster configuration"),
        "{err}"
    );
    let (code, _, err) = run(
        env!("CARGO_BIN_EXE_cairn"),
        &["--listen-client-urls", "localhost:2379"],
    );
    assert_eq!(code, 1);
    assert!(err.contains("--listen-client-urls"), "{err}");
}

#[test]
fn config_file_replaces_flags_and_environment() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("cairn.yml");
    // Read as flags: this configuration is refused with etcd's message, which proves the
    // file's name (not the environment's) was used.
    std::fs::write(
        &path,
        "name: 'from-file'\ninitial-cluster: other=http://localhost:2380\nenable-v2: true\n",
    )
    .expect("write config");
    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .arg("--config-file")
        .arg(&path)
        .env("CAIRN_NAME", "from-env")
        .output()
        .expect("cairn runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        err.contains("couldn't find local name \"from-file\" in the initial cluster configuration"),
        "{err}"
    );
    // A malformed file names its line.
    std::fs::write(&path, "name: ok\nthis is not yaml\n").expect("write config");
    let (code, _, err) = run(
        env!("CARGO_BIN_EXE_cairn"),
        &["--config-file", path.to_str().expect("utf-8 path")],
    );
    assert_eq!(code, 1);
    assert!(err.contains("cairn.yml:2:"), "{err}");
}
