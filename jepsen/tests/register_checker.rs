//! The register linearizability checker against hand-made histories (each anomaly the issue
//! names, and the legal behaviours that resemble them), a large generated legal history, and
//! the `cairn-jepsen check register` command's exit codes.

use cairn_jepsen::history::parse;
use cairn_jepsen::linearizable::{check, KeyVerdict};

/// One operation: client, call, return (None: indeterminate), op, key, value (JSON), ok.
type Row<'a> = (u64, u64, Option<u64>, &'a str, &'a str, &'a str, bool);

/// Rows as JSON lines.
fn history(rows: &[Row<'_>]) -> String {
    rows.iter()
        .map(|(client, call, ret, op, key, value, ok)| {
            let ret = ret.map_or("null".to_string(), |r| r.to_string());
            format!(
                "{{\"client\":{client},\"call\":{call},\"return\":{ret},\"op\":\"{op}\",\"key\":\"{key}\",\"value\":{value},\"ok\":{ok}}}\n"
            )
        })
        .collect()
}

fn verdict_of(rows: &[Row<'_>]) -> (bool, Option<String>) {
    let verdict = check(&parse(&history(rows)).expect("history parses"));
    (verdict.valid(), verdict.explain())
}

#[test]
fn sequential_and_concurrent_legal_histories_are_valid() {
    let (valid, why) = verdict_of(&[
        (1, 10, Some(20), "read", "k", "null", true),
        (1, 30, Some(40), "write", "k", "1", true),
        (2, 50, Some(60), "read", "k", "1", true),
        (2, 70, Some(80), "cas", "k", "[1,2]", true),
        (1, 90, Some(99), "read", "k", "2", true),
    ]);
    assert!(valid, "{why:?}");
    // A read overlapping a write may see the value before or after it.
    for seen in ["1", "2"] {
        let (valid, why) = verdict_of(&[
            (1, 0, Some(5), "write", "k", "1", true),
            (1, 10, Some(50), "write", "k", "2", true),
            (2, 20, Some(30), "read", "k", seen, true),
        ]);
        assert!(valid, "seeing {seen}: {why:?}");
    }
}

#[test]
fn events_at_the_same_instant_are_concurrent() {
    // An operation whose call and return read the same clock value.
    let (valid, why) = verdict_of(&[(1, 5, Some(5), "write", "k", "1", true)]);
    assert!(valid, "{why:?}");
    // W1 returns at 10 and W2 is called at 10: either may come first.
    let (valid, why) = verdict_of(&[
        (1, 0, Some(10), "write", "k", "1", true),
        (2, 10, Some(20), "write", "k", "2", true),
        (3, 21, Some(30), "read", "k", "1", true),
    ]);
    assert!(valid, "{why:?}");
}

#[test]
fn a_stale_read_is_caught_and_explained() {
    let (valid, why) = verdict_of(&[
        (1, 0, Some(10), "write", "k", "1", true),
        (1, 20, Some(30), "write", "k", "2", true),
        (2, 40, Some(50), "read", "k", "1", true),
    ]);
    assert!(!valid);
    let why = why.expect("explained");
    assert!(why.contains("read 1 by client 2"), "{why}");
    assert!(why.contains("could only hold 2"), "{why}");
}

#[test]
fn a_lost_acknowledged_write_is_caught() {
    // Write 2 was acknowledged; every later read still sees 1.
    let (valid, why) = verdict_of(&[
        (1, 0, Some(10), "write", "k", "1", true),
        (2, 20, Some(30), "write", "k", "2", true),
        (3, 40, Some(50), "read", "k", "1", true),
        (3, 60, Some(70), "read", "k", "1", true),
    ]);
    assert!(!valid, "{why:?}");
}

#[test]
fn indeterminate_writes_may_or_may_not_have_happened_but_not_both() {
    let base = [
        (1, 0, Some(10), "write", "k", "1", true),
        (2, 20, None, "write", "k", "2", false),
    ];
    for seen in ["1", "2"] {
        let mut rows = base.to_vec();
        rows.push((3, 100, Some(110), "read", "k", seen, true));
        let (valid, why) = verdict_of(&rows);
        assert!(valid, "seeing {seen}: {why:?}");
    }
    // Seen, then unseen with no other write: it cannot have happened and not happened.
    let mut rows = base.to_vec();
    rows.push((3, 100, Some(110), "read", "k", "2", true));
    rows.push((3, 120, Some(130), "read", "k", "1", true));
    assert!(!verdict_of(&rows).0);
}

#[test]
fn failed_operations_changed_nothing() {
    let (valid, _) = verdict_of(&[
        (1, 0, Some(10), "write", "k", "1", true),
        (2, 20, Some(30), "write", "k", "2", false),
        (3, 40, Some(50), "read", "k", "2", true),
    ]);
    assert!(!valid, "a definitely failed write was seen");
}

#[test]
fn two_compare_and_sets_from_the_same_value_cannot_both_win() {
    let (valid, why) = verdict_of(&[
        (1, 0, Some(10), "write", "k", "1", true),
        (2, 20, Some(40), "cas", "k", "[1,2]", true),
        (3, 25, Some(45), "cas", "k", "[1,3]", true),
    ]);
    assert!(!valid, "{why:?}");
    let (valid, why) = verdict_of(&[
        (1, 0, Some(10), "write", "k", "1", true),
        (2, 20, Some(40), "cas", "k", "[1,2]", true),
        (3, 25, Some(45), "cas", "k", "[1,3]", false),
    ]);
    assert!(valid, "{why:?}");
}

#[test]
fn keys_are_checked_independently() {
    let verdict = check(
        &parse(&history(&[
            (1, 0, Some(10), "write", "a", "1", true),
            (1, 20, Some(30), "write", "b", "1", true),
            (2, 40, Some(50), "read", "a", "1", true),
            (2, 60, Some(70), "read", "b", "null", true),
        ]))
        .unwrap(),
    );
    assert_eq!(verdict.keys["a"], KeyVerdict::Linearizable);
    assert!(matches!(verdict.keys["b"], KeyVerdict::Anomaly { .. }));
    assert!(verdict.explain().unwrap().starts_with("key \"b\""));
}

/// A register driven by many concurrent clients (one write in 20 timing out, taking effect or
/// not) whose operations take effect at a random
/// instant inside their call..return window: legal by construction.
fn generated_legal_history(seed: u64, clients: u64, ops: usize, keys: u64) -> String {
    let mut state = seed;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    // Each client issues one operation at a time; effects happen in global time order.
    let mut rows = Vec::new();
    let mut values: std::collections::HashMap<u64, Option<u64>> = Default::default();
    let mut client_free_at = vec![0u64; clients as usize];
    let mut pending: Vec<(u64, u64, u64, u64, u64, u64)> = Vec::new(); // effect, client, call, ret, kind, key
    for i in 0..ops {
        let client = (i as u64) % clients;
        let call = client_free_at[client as usize] + next() % 50;
        let effect = call + 1 + next() % 100;
        let ret = effect + 1 + next() % 100;
        client_free_at[client as usize] = ret;
        pending.push((effect, client, call, ret, next() % 3, next() % keys));
    }
    pending.sort();
    let mut fresh = 1000u64;
    for (_, client, call, ret, kind, key) in pending {
        let value = values.entry(key).or_insert(None);
        let key = format!("k{key}");
        let json = |v: &Option<u64>| v.map_or("null".to_string(), |v| v.to_string());
        let (op, shown, ok) = match kind {
            0 => ("read", json(value), true),
            1 => {
                fresh += 1;
                // One write in 20 times out: it took effect or not, nobody knows.
                if fresh % 20 == 0 {
                    if fresh % 40 == 0 {
                        *value = Some(fresh);
                    }
                    ("write?", fresh.to_string(), false)
                } else {
                    *value = Some(fresh);
                    ("write", fresh.to_string(), true)
                }
            }
            _ => {
                fresh += 1;
                let expected = value.unwrap_or(0);
                let ok = *value == Some(expected);
                if ok {
                    *value = Some(fresh);
                }
                ("cas", format!("[{expected},{fresh}]"), ok)
            }
        };
        let (op, ret) = match op {
            "write?" => ("write", "null".to_string()),
            op => (op, ret.to_string()),
        };
        rows.push(format!(
            "{{\"client\":{client},\"call\":{call},\"return\":{ret},\"op\":\"{op}\",\"key\":\"{key}\",\"value\":{shown},\"ok\":{ok}}}"
        ));
    }
    rows.join("\n")
}

#[test]
fn a_large_legal_history_is_valid_and_a_corrupted_one_is_not() {
    let text = generated_legal_history(7, 20, 20_000, 40);
    let ops = parse(&text).unwrap();
    let verdict = check(&ops);
    assert!(verdict.valid(), "{:?}", verdict.explain());
    // One read made to see a value nobody wrote.
    let corrupted = text.replacen(
        "\"op\":\"read\",\"key\":\"k3\",\"value\":",
        "\"op\":\"read\",\"key\":\"k3\",\"value\":777777,\"x\":",
        1,
    );
    let verdict = check(&parse(&corrupted).unwrap());
    assert!(!verdict.valid());
}

#[test]
fn the_command_exits_0_1_or_2() {
    let dir = std::env::temp_dir().join(format!("cairn-jepsen-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let run = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        std::process::Command::new(env!("CARGO_BIN_EXE_cairn-jepsen"))
            .args(["check", "register"])
            .arg(&path)
            .output()
            .unwrap()
    };
    let good = run(
        "good.jsonl",
        &history(&[(1, 0, Some(10), "write", "k", "1", true)]),
    );
    assert_eq!(good.status.code(), Some(0));
    let stale = run(
        "stale.json",
        &format!(
            "[{}]",
            history(&[
                (1, 0, Some(10), "write", "k", "1", true),
                (2, 20, Some(30), "read", "k", "null", true),
            ])
            .trim_end()
            .replace('\n', ",")
        ),
    );
    assert_eq!(stale.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&stale.stdout).contains("not linearizable"));
    let garbage = run("garbage.jsonl", "{not json");
    assert_eq!(garbage.status.code(), Some(2));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A long run piles up indeterminate writes (every kill and partition leaves some); those
/// whose value nobody saw must not multiply the search, and those someone saw still count.
#[test]
fn many_unseen_indeterminate_writes_do_not_slow_the_check() {
    let mut rows: Vec<(u64, u64, Option<u64>, String, bool)> = Vec::new();
    // 5,000 rounds: an indeterminate write nobody reads, open to the end of the history,
    // then a definite write and a read of it.
    for round in 0..5_000u64 {
        let t = round * 100;
        rows.push((
            1000 + round,
            t,
            None,
            format!("{}", 1_000_000 + round),
            false,
        ));
        rows.push((1, t + 10, Some(t + 20), format!("{round}"), true));
        rows.push((2, t + 30, Some(t + 40), format!("{round}"), true));
    }
    let text: String = rows
        .iter()
        .enumerate()
        .map(|(i, (client, call, ret, value, _))| {
            let (op, ok, ret) = match (ret, i % 3) {
                (None, _) => ("write", false, "null".to_string()),
                (Some(r), 1) => ("write", true, r.to_string()),
                (Some(r), _) => ("read", true, r.to_string()),
            };
            format!(
                "{{\"client\":{client},\"call\":{call},\"return\":{ret},\"op\":\"{op}\",\"key\":\"k\",\"value\":{value},\"ok\":{ok}}}\n"
            )
        })
        .collect();
    // Without the pruning, 5,000 pending writes exhaust the search's bounds: unknown.
    let verdict = check(&parse(&text).expect("history parses"));
    assert!(verdict.valid(), "{:?}", verdict.explain());
    // One of them seen by a late read: it took effect, and that is still linearizable.
    let seen = text.clone()
        + "{\"client\":3,\"call\":900000,\"return\":900010,\"op\":\"read\",\"key\":\"k\",\"value\":1000007,\"ok\":true}\n";
    let verdict = check(&parse(&seen).expect("history parses"));
    assert!(verdict.valid(), "{:?}", verdict.explain());
    // But a value nobody wrote is still caught.
    let bogus = text
        + "{\"client\":3,\"call\":900000,\"return\":900010,\"op\":\"read\",\"key\":\"k\",\"value\":-5,\"ok\":true}\n";
    assert!(check(&parse(&bogus).expect("history parses")).anomalous());
}
