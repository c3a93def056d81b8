//! Leases as etcdctl sees them: one script of lease commands (grant, attach keys, timetolive,
//! keep-alive, revoke and the keys it deletes, list, and every error) runs against a real etcd
//! 3.5.1 and against cairn, through etcdctl 3.5.1 and 3.4, and cairnctl runs it against a real
//! etcd; every step's output and exit code must match once server ids, ports and lease ids
//! (which servers choose) are masked. Revisions are compared as they are: a revoke deletes all
//! of a lease's keys in one revision on both.
//!
//! The one timing-dependent figure, the remaining TTL, is masked and checked to be within a
//! few seconds of the granted TTL; etcd lists a lease's keys in random order, so the lists
//! are compared sorted.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use common::{etcd35_dir, etcdctl34, mask, server_ids, step, EtcdServer, Run};

/// Steps; `$L1`, `$L2`… stand for the lease ids the grants earlier in the script returned.
const LEASE_SCRIPT: &[&str] = &[
    "lease grant 60",
    "lease grant 100 -w json",
    "put k1 v1 --lease=$L1",
    "put k2 v2 --lease=$L1",
    "put k3 v3 --lease=$L2",
    "put k4 v4",
    "put k4 v4b --lease=$L1",
    "put k2 v2b",
    "put k3 v3b --ignore-lease",
    "lease timetolive $L1",
    "lease timetolive --keys $L1",
    "lease timetolive --keys $L2 -w json",
    "lease timetolive $L1 -w json",
    "lease keep-alive --once $L1",
    "lease keep-alive --once $L2 -w json",
    "get --prefix k -w json",
    "lease revoke $L1",
    "get --prefix k -w json",
    "lease timetolive $L1",
    "lease timetolive $L1 -w json",
    "lease revoke $L1",
    "lease keep-alive --once $L1",
    "put k5 v --lease=$L1",
    "lease list",
    "lease list -w json",
    "lease revoke $L2 -w json",
    "get --prefix k -w json",
    "lease list",
    "lease list -w json",
    "lease grant 1",
    "lease grant 0 -w json",
    "lease grant",
    "lease grant abc",
    "lease grant 9000000001",
    "lease revoke",
    "lease revoke zz",
    "lease revoke 1234",
    "lease timetolive",
    "lease timetolive 1234",
    "lease keep-alive",
    "lease keep-alive --once 1234",
    "lease grant 5 -w table",
];

/// The lease id a grant printed (simple or JSON output), as hex.
fn granted_id(stdout: &str) -> Option<String> {
    if let Some(rest) = stdout.strip_prefix("lease ") {
        return rest.split_whitespace().next().map(str::to_string);
    }
    let start = stdout.find("\"ID\":")? + 5;
    let digits: String = stdout[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse::<u64>().ok().map(|id| format!("{id:016x}"))
}

/// Masks remaining-TTL figures (`remaining(59s)`, `"ttl":59`) after checking each is close
/// to its granted TTL.
fn mask_remaining(text: &str) -> String {
    let mut out = text.to_string();
    for (marker, end) in [("remaining(", 's'), ("\"ttl\":", ',')] {
        let mut masked = String::new();
        let mut rest = out.as_str();
        while let Some(at) = rest.find(marker) {
            let (before, after) = rest.split_at(at + marker.len());
            masked.push_str(before);
            let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
            if digits.is_empty() || !after[digits.len()..].starts_with(end) {
                rest = after;
                continue;
            }
            let remaining: i64 = digits.parse().unwrap_or(-1);
            assert!(
                (55..=60).contains(&remaining) || (95..=100).contains(&remaining),
                "remaining TTL {remaining} is not within seconds of the grant: {text}"
            );
            masked.push_str("<REMAINING>");
            rest = &after[digits.len()..];
        }
        masked.push_str(rest);
        out = masked;
    }
    out
}

/// Runs the script with `tool` against `server`: each step's output, masked.
fn run_script(tool: &Path, server: &EtcdServer, etcdctl: &Path) -> Vec<(String, Run)> {
    let ids = server_ids(etcdctl, server);
    let mut leases: Vec<String> = Vec::new();
    let mut results = Vec::new();
    for template in LEASE_SCRIPT {
        let mut args = template.to_string();
        for (n, id) in leases.iter().enumerate().rev() {
            args = args.replace(&format!("$L{}", n + 1), id);
        }
        let mut out = step(tool, server, &args, "");
        if template.starts_with("lease grant") && out.code == 0 && leases.len() < 2 {
            leases.push(granted_id(&out.stdout).expect("a grant prints its lease id"));
        }
        let mut names: HashMap<String, String> = HashMap::new();
        for (n, id) in leases.iter().enumerate() {
            names.insert(id.clone(), format!("<L{}>", n + 1));
            let decimal = u64::from_str_radix(id, 16).unwrap_or(0).to_string();
            names.insert(decimal, format!("<L{}_DEC>", n + 1));
        }
        let mut masks: Vec<(String, &str)> = ids.clone();
        for (id, name) in &names {
            masks.push((id.clone(), name.as_str()));
        }
        out.stdout = sort_attached_keys(&mask_remaining(&mask(&out.stdout, server, &masks)));
        out.stderr = mask(&out.stderr, server, &masks);
        // Grants beyond the script's named leases choose ids too: mask them by shape.
        if template.starts_with("lease grant") && leases.len() >= 2 {
            out.stdout = mask_unnamed_grant(&out.stdout);
        }
        results.push((template.to_string(), out));
    }
    results
}

/// etcd lists a lease's attached keys in Go map order (random): sort them for comparison.
fn sort_attached_keys(stdout: &str) -> String {
    const MARKER: &str = "attached keys([";
    let Some(at) = stdout.find(MARKER) else {
        return stdout.to_string();
    };
    let (head, rest) = stdout.split_at(at + MARKER.len());
    let Some(end) = rest.find("])") else {
        return stdout.to_string();
    };
    let mut keys: Vec<&str> = rest[..end].split(' ').collect();
    keys.sort_unstable();
    format!("{head}{}{}", keys.join(" "), &rest[end..])
}

fn mask_unnamed_grant(stdout: &str) -> String {
    match granted_id(stdout) {
        Some(id) if !stdout.contains("<L") => {
            let decimal = u64::from_str_radix(&id, 16).unwrap_or(0).to_string();
            stdout.replace(&id, "<ID>").replace(&decimal, "<ID_DEC>")
        }
        _ => stdout.to_string(),
    }
}

fn assert_same(expected: (&Path, &EtcdServer), got: (&Path, &EtcdServer), etcdctl: &Path) {
    let expected = run_script(expected.0, expected.1, etcdctl);
    let got = run_script(got.0, got.1, etcdctl);
    let succeeded = expected.iter().filter(|(_, r)| r.code == 0).count();
    assert!(
        succeeded >= 20,
        "only {succeeded} steps succeeded against etcd"
    );
    let mut mismatches = Vec::new();
    for ((args, want), (_, have)) in expected.iter().zip(&got) {
        let last = |s: &str| s.lines().last().map(str::to_string);
        if want.code != have.code
            || want.stdout != have.stdout
            || last(&want.stderr) != last(&have.stderr)
        {
            mismatches.push(format!(
                "`{args}`:\n  expected (exit {}): {:?} {:?}\n  got      (exit {}): {:?} {:?}",
                want.code, want.stdout, want.stderr, have.code, have.stdout, have.stderr
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {} steps differ:\n{}",
        mismatches.len(),
        LEASE_SCRIPT.len(),
        mismatches.join("\n")
    );
}

#[test]
fn etcdctl_lease_commands_match_against_etcd_and_cairn() {
    let bin = etcd35_dir();
    let etcdctl = bin.join("etcdctl");
    let (etcd, cairn) = (EtcdServer::start(&bin), EtcdServer::start_cairn(&bin));
    assert_same((&etcdctl, &etcd), (&etcdctl, &cairn), &etcdctl);
}

#[test]
fn etcdctl_3_4_lease_commands_match_against_etcd_and_cairn() {
    let bin = etcd35_dir();
    let old = etcdctl34();
    let (etcd, cairn) = (EtcdServer::start(&bin), EtcdServer::start_cairn(&bin));
    assert_same((&old, &etcd), (&old, &cairn), &bin.join("etcdctl"));
}

#[test]
fn cairnctl_lease_commands_match_etcdctl() {
    let bin = etcd35_dir();
    let etcdctl = bin.join("etcdctl");
    let cairnctl = PathBuf::from(env!("CARGO_BIN_EXE_cairnctl"));
    let (reference, ours) = (EtcdServer::start(&bin), EtcdServer::start(&bin));
    assert_same((&etcdctl, &reference), (&cairnctl, &ours), &etcdctl);
}
