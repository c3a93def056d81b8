//! The list-append checker against hand-made histories: each anomaly it names, the legal
//! behaviours that resemble them (concurrency, indeterminate and aborted transactions), the
//! history format's errors, and a large generated legal history.

use std::time::Instant;

use cairn_jepsen::append_history::{parse, AppendHistoryError, MicroOp, Txn};
use cairn_jepsen::elle::{check, AnomalyKind, AppendVerdict};

/// One transaction: client, call, return (None: indeterminate), ok, micro-ops as JSON.
type Row<'a> = (u64, u64, Option<u64>, bool, &'a str);

/// Rows as JSON lines (line i + 1 holds row i).
fn history(rows: &[Row<'_>]) -> String {
    rows.iter()
        .map(|(client, call, ret, ok, txn)| {
            let ret = ret.map_or("null".to_string(), |r| r.to_string());
            format!(r#"{{"client":{client},"call":{call},"return":{ret},"ok":{ok},"txn":{txn}}}"#)
                + "\n"
        })
        .collect()
}

fn verdict_of(rows: &[Row<'_>]) -> AppendVerdict {
    check(&parse(&history(rows)).expect("history parses"))
}

/// Checks that exactly these kinds are found; returns the explanation.
fn expect_anomalies(rows: &[Row<'_>], kinds: &[AnomalyKind]) -> String {
    let verdict = verdict_of(rows);
    assert_eq!(verdict.anomalies(), kinds, "{:?}", verdict.explain());
    assert!(!verdict.valid());
    verdict.explain().expect("an anomaly is explained")
}

fn expect_valid(rows: &[Row<'_>]) {
    let verdict = verdict_of(rows);
    assert!(verdict.valid(), "{:?}", verdict.explain());
    assert_eq!(verdict.explain(), None);
}

#[test]
fn a_serial_history_is_valid() {
    expect_valid(&[
        (1, 0, Some(10), true, r#"[["append","x",1],["r","x",[1]]]"#),
        (2, 20, Some(30), true, r#"[["r","x",[1]],["append","y",1]]"#),
        (
            1,
            40,
            Some(50),
            true,
            r#"[["r","y",[1]],["append","x",2],["r","x",[1,2]]]"#,
        ),
        (
            2,
            60,
            Some(70),
            true,
            r#"[["r","x",[1,2]],["r","y",[1]],["r","z",[]]]"#,
        ),
    ]);
    let verdict = verdict_of(&[(1, 0, Some(10), true, r#"[["r","x",[]],["r","y",[]]]"#)]);
    assert_eq!((verdict.txns, verdict.keys), (1, 2));
}

#[test]
fn concurrent_transactions_may_serialize_in_any_order_their_reads_allow() {
    // x's order is [2,1]: T(line 2) before T(line 1); T(line 3) saw 2 but not 1, and its y
    // append came after T(line 2)'s empty read of y. Serial order: 2, 3, 1, 5.
    expect_valid(&[
        (1, 0, Some(100), true, r#"[["append","x",1]]"#),
        (2, 10, Some(90), true, r#"[["append","x",2],["r","y",[]]]"#),
        (3, 20, Some(80), true, r#"[["r","x",[2]],["append","y",1]]"#),
        (4, 30, None, false, r#"[["append","x",3]]"#),
        (
            5,
            200,
            Some(210),
            true,
            r#"[["r","x",[2,1]],["r","y",[1]]]"#,
        ),
    ]);
}

#[test]
fn g0_write_cycle_is_caught() {
    // The reads show x: T1 then T2, and y: T2 then T1.
    let why = expect_anomalies(
        &[
            (
                1,
                0,
                Some(100),
                true,
                r#"[["append","x",1],["append","y",1]]"#,
            ),
            (
                2,
                0,
                Some(100),
                true,
                r#"[["append","x",2],["append","y",2]]"#,
            ),
            (
                3,
                200,
                Some(210),
                true,
                r#"[["r","x",[1,2]],["r","y",[2,1]]]"#,
            ),
        ],
        &[AnomalyKind::G0],
    );
    assert!(
        why.contains("T(line 1) -ww(x)-> T(line 2) -ww(y)-> T(line 1)"),
        "{why}"
    );
}

#[test]
fn g1a_aborted_read_is_caught() {
    let why = expect_anomalies(
        &[
            (1, 0, Some(10), false, r#"[["append","x",1]]"#),
            (2, 20, Some(30), true, r#"[["r","x",[1]]]"#),
        ],
        &[AnomalyKind::G1a],
    );
    assert!(
        why.contains(
            "T(line 2) read key \"x\" as [1], which holds 1, appended by T(line 1), which aborted"
        ),
        "{why}"
    );
}

#[test]
fn g1b_intermediate_read_is_caught() {
    let why = expect_anomalies(
        &[
            (
                1,
                0,
                Some(100),
                true,
                r#"[["append","x",1],["append","x",2]]"#,
            ),
            (2, 10, Some(50), true, r#"[["r","x",[1]]]"#),
        ],
        &[AnomalyKind::G1b],
    );
    assert!(why.contains("ending at 1"), "{why}");
}

#[test]
fn g1c_circular_information_flow_is_caught() {
    // Each saw the other's append.
    let why = expect_anomalies(
        &[
            (1, 0, Some(100), true, r#"[["append","x",1],["r","y",[1]]]"#),
            (2, 0, Some(100), true, r#"[["append","y",1],["r","x",[1]]]"#),
        ],
        &[AnomalyKind::G1c],
    );
    assert!(
        why.contains("T(line 1) -wr(x)-> T(line 2) -wr(y)-> T(line 1)"),
        "{why}"
    );
}

#[test]
fn g_single_read_skew_is_caught() {
    // T(line 2) saw T(line 1)'s append to y but not its append to x.
    let why = expect_anomalies(
        &[
            (
                1,
                0,
                Some(100),
                true,
                r#"[["append","x",1],["append","y",1]]"#,
            ),
            (2, 10, Some(90), true, r#"[["r","x",[]],["r","y",[1]]]"#),
            (3, 200, Some(210), true, r#"[["r","x",[1]],["r","y",[1]]]"#),
        ],
        &[AnomalyKind::GSingle],
    );
    assert!(
        why.contains("T(line 1) -wr(y)-> T(line 2) -rw(x)-> T(line 1)"),
        "{why}"
    );
    assert!(
        why.contains("T(line 2) read key \"x\" as [], which misses 1, appended next by T(line 1)"),
        "{why}"
    );
}

#[test]
fn g2_write_skew_is_caught() {
    // Each read the key the other appends to, empty, then appended to the other key.
    expect_anomalies(
        &[
            (1, 0, Some(100), true, r#"[["r","x",[]],["append","y",1]]"#),
            (2, 0, Some(100), true, r#"[["r","y",[]],["append","x",1]]"#),
            (3, 200, Some(210), true, r#"[["r","x",[1]],["r","y",[1]]]"#),
        ],
        &[AnomalyKind::G2],
    );
}

#[test]
fn an_acknowledged_append_that_later_reads_miss_is_lost() {
    let why = expect_anomalies(
        &[
            (1, 0, Some(10), true, r#"[["append","x",1]]"#),
            (2, 20, Some(30), true, r#"[["r","x",[]]]"#),
        ],
        &[AnomalyKind::LostAppend],
    );
    assert!(why.contains("no read ever saw it"), "{why}");
    // Lost from the middle: 2 is seen, 1 (acknowledged first) never is.
    expect_anomalies(
        &[
            (1, 0, Some(10), true, r#"[["append","x",1]]"#),
            (2, 0, Some(20), true, r#"[["append","x",2]]"#),
            (3, 30, Some(40), true, r#"[["r","x",[2]]]"#),
        ],
        &[AnomalyKind::LostAppend],
    );
}

#[test]
fn a_stale_read_violates_realtime_order() {
    // T(line 2) began after T(line 1)'s append returned, and read without it; a later read
    // shows the append did happen.
    let verdict = verdict_of(&[
        (1, 0, Some(10), true, r#"[["append","x",1]]"#),
        (2, 20, Some(30), true, r#"[["r","x",[]]]"#),
        (3, 40, Some(50), true, r#"[["r","x",[1]]]"#),
    ]);
    assert_eq!(
        verdict.anomalies(),
        [AnomalyKind::GSingleRealtime, AnomalyKind::LostAppend]
    );
    let why = verdict.explain().unwrap_or_default();
    assert!(
        why.contains("T(line 1) -realtime-> T(line 2) -rw(x)-> T(line 1)"),
        "{why}"
    );
    assert!(why.contains("T(line 1) returned at 10, before T(line 2) was called at 20"));
    // The same reads by overlapping transactions are fine.
    expect_valid(&[
        (1, 0, Some(30), true, r#"[["append","x",1]]"#),
        (2, 20, Some(30), true, r#"[["r","x",[]]]"#),
        (3, 40, Some(50), true, r#"[["r","x",[1]]]"#),
    ]);
}

#[test]
fn reads_that_disagree_on_the_order_are_caught() {
    let why = expect_anomalies(
        &[
            (1, 0, Some(100), true, r#"[["append","x",1]]"#),
            (2, 0, Some(100), true, r#"[["append","x",2]]"#),
            (3, 10, Some(90), true, r#"[["r","x",[1]]]"#),
            (4, 10, Some(90), true, r#"[["r","x",[2]]]"#),
        ],
        &[AnomalyKind::IncompatibleOrder],
    );
    assert!(
        why.contains("T(line 4) saw [2] and T(line 3) saw [1]"),
        "{why}"
    );
}

#[test]
fn a_value_read_twice_in_one_list_is_caught() {
    expect_anomalies(
        &[
            (1, 0, Some(100), true, r#"[["append","x",1]]"#),
            (2, 10, Some(90), true, r#"[["r","x",[1,1]]]"#),
        ],
        &[AnomalyKind::DuplicateElements],
    );
    // Its own append, before and after it.
    expect_anomalies(
        &[(
            1,
            0,
            Some(100),
            true,
            r#"[["append","x",1],["r","x",[1,1]]]"#,
        )],
        &[AnomalyKind::DuplicateElements],
    );
}

#[test]
fn a_value_nobody_appended_is_garbage() {
    expect_anomalies(
        &[
            (1, 0, Some(100), true, r#"[["append","x",1]]"#),
            (2, 10, Some(90), true, r#"[["r","x",[1,7]]]"#),
        ],
        &[AnomalyKind::GarbageRead],
    );
}

#[test]
fn a_transaction_must_see_its_own_appends_and_only_after_it_makes_them() {
    for txn in [
        // Appended, then read without it.
        r#"[["append","x",1],["r","x",[]]]"#,
        // Read its own append before making it.
        r#"[["r","x",[1]],["append","x",1]]"#,
        // Two reads with nothing between them that disagree.
        r#"[["append","y",5],["r","x",[5]],["r","x",[]]]"#,
    ] {
        let verdict = verdict_of(&[
            (1, 0, Some(100), true, txn),
            (2, 0, Some(100), true, r#"[["append","x",5]]"#),
        ]);
        assert!(
            verdict.anomalies().contains(&AnomalyKind::Internal),
            "{txn}: {:?}",
            verdict.explain()
        );
    }
    expect_anomalies(
        &[(1, 0, Some(100), true, r#"[["append","x",1],["r","x",[]]]"#)],
        &[AnomalyKind::Internal],
    );
}

#[test]
fn indeterminate_and_aborted_transactions_are_judged_by_what_was_seen() {
    // An indeterminate append that was read took effect; one never read, and an aborted one
    // never read, change nothing.
    expect_valid(&[
        (1, 0, None, false, r#"[["append","x",1],["r","y",null]]"#),
        (2, 20, Some(30), true, r#"[["r","x",[1]]]"#),
        (3, 40, None, false, r#"[["append","x",2]]"#),
        (
            4,
            50,
            Some(60),
            false,
            r#"[["r","x",null],["append","x",3]]"#,
        ),
        (5, 70, Some(80), true, r#"[["r","x",[1]]]"#),
    ]);
    // Seen, it took effect whole: a read that saw one of its appends but not the other is
    // read skew.
    expect_anomalies(
        &[
            (1, 0, None, false, r#"[["append","x",1],["append","y",1]]"#),
            (2, 10, Some(90), true, r#"[["r","x",[]],["r","y",[1]]]"#),
            (3, 200, Some(210), true, r#"[["r","x",[1]]]"#),
        ],
        &[AnomalyKind::GSingle],
    );
}

#[test]
fn format_errors_name_the_line() {
    let good = r#"{"client":1,"call":1,"return":2,"ok":true,"txn":[["append","x",1]]}"#;
    let cases = [
        (format!("{good}\n\n{{\"client\":1"), "line 3:"),
        (
            r#"{"client":1,"call":1,"return":2,"ok":true,"txn":[["w","x",1]]}"#.to_string(),
            "line 1: unknown micro-op \"w\" (r or append)",
        ),
        (
            r#"{"client":1,"call":5,"return":2,"ok":true,"txn":[]}"#.to_string(),
            "line 1: returns at 2, before its call at 5",
        ),
        (
            r#"{"client":1,"call":5,"return":null,"ok":true,"txn":[]}"#.to_string(),
            "line 1: ok: true but no return time",
        ),
        (
            format!(
                "{good}\n{}",
                good.replace("\"call\":1", "\"call\":3")
                    .replace("\"return\":2", "\"return\":4")
            ),
            "lines 1 and 2 both append 1 to key \"x\"",
        ),
        (format!("[{good},{good}]"), "lines 1 and 2 both append 1"),
        (format!("[{good},{{}}]"), "not a JSON array of transactions"),
    ];
    for (text, says) in cases {
        let err = parse(&text).expect_err(&text).to_string();
        assert!(err.starts_with(says), "{text}: {err}");
    }
    let from_array = parse(&format!("[{good}]")).expect("an array parses");
    assert_eq!(from_array, parse(good).expect("a line parses"));
}

#[test]
fn a_duplicate_append_built_by_hand_cannot_be_checked() {
    let txn = |line| Txn {
        client: 1,
        call: 0,
        ret: Some(1),
        ok: true,
        ops: vec![MicroOp::Append {
            key: "x".into(),
            value: 7,
        }],
        line,
    };
    let verdict = check(&[txn(1), txn(2)]);
    assert!(!verdict.valid());
    assert!(verdict.anomalies().is_empty());
    assert!(matches!(
        verdict.malformed,
        Some(AppendHistoryError::DuplicateAppend { value: 7, .. })
    ));
    assert!(verdict
        .explain()
        .is_some_and(|why| why.starts_with("the history cannot be checked")));
}

/// A serial history of `txns` transactions: each reads two keys, appends to one of them and
/// reads it again. Keys rotate, `keys` at a time, so no list grows past `txns / keys`.
/// `stale`: the first read misses the key's last append (a stale read in every transaction).
fn generated_serial_history(txns: u64, keys: u64, stale: bool) -> String {
    let mut lists: Vec<Vec<u64>> = vec![Vec::new(); keys as usize];
    let mut out = String::new();
    let show = |list: &[u64]| {
        let items: Vec<String> = list.iter().map(u64::to_string).collect();
        format!("[{}]", items.join(","))
    };
    for i in 0..txns {
        let (a, b) = ((i % keys) as usize, ((i * 7 + 3) % keys) as usize);
        let seen = lists[b].len() - usize::from(stale && !lists[b].is_empty());
        let read_b = show(&lists[b][..seen]);
        lists[a].push(i);
        let txn = format!(
            r#"[["r","k{b}",{read_b}],["append","k{a}",{i}],["r","k{a}",{}]]"#,
            show(&lists[a])
        );
        let (call, ret) = (10 * i, 10 * i + 5);
        out.push_str(&format!(
            "{{\"client\":{},\"call\":{call},\"return\":{ret},\"ok\":true,\"txn\":{txn}}}\n",
            i % 10
        ));
    }
    out
}

/// A history of a strict serializable store under heavy concurrency: transaction i takes
/// effect at time 100 i, but is called up to 250 earlier and returns up to 250 later; one in
/// ten never returns (and took effect or not), one in ten aborts.
fn generated_concurrent_history(txns: u64, keys: u64, seed: u64) -> String {
    let mut state = seed | 1;
    let mut random = move |below: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % below
    };
    let mut lists: Vec<Vec<u64>> = vec![Vec::new(); keys as usize];
    let mut out = String::new();
    for i in 0..txns {
        let at = 100 * i + 1_000;
        let (call, ret) = (at - random(250), at + random(250));
        let outcome = random(10);
        let (ret, ok, effect) = match outcome {
            0 => ("null".to_string(), false, random(2) == 0),
            1 => (ret.to_string(), false, false),
            _ => (ret.to_string(), true, true),
        };
        let mut ops = Vec::new();
        let mut after: Vec<(usize, Vec<u64>)> = Vec::new();
        for _ in 0..1 + random(4) {
            let k = random(keys) as usize;
            let list = after
                .iter_mut()
                .find(|(key, _)| *key == k)
                .map(|(_, list)| list.clone())
                .unwrap_or_else(|| lists[k].clone());
            if random(2) == 0 {
                let value = i * 10 + ops.len() as u64;
                ops.push(format!(r#"["append","k{k}",{value}]"#));
                let mut list = list;
                list.push(value);
                after.retain(|(key, _)| *key != k);
                after.push((k, list));
            } else if ok {
                ops.push(format!(r#"["r","k{k}",{list:?}]"#).replace(' ', ""));
            } else {
                ops.push(format!(r#"["r","k{k}",null]"#));
            }
        }
        if effect {
            for (k, list) in after {
                lists[k] = list;
            }
        }
        out.push_str(&format!(
            r#"{{"client":{},"call":{call},"return":{ret},"ok":{ok},"txn":[{}]}}"#,
            i % 7,
            ops.join(",")
        ));
        out.push('\n');
    }
    out
}

#[test]
fn concurrent_histories_of_a_strict_serializable_store_are_valid() {
    for seed in 1..=20 {
        let txns = parse(&generated_concurrent_history(2_000, 8, seed)).expect("parses");
        let verdict = check(&txns);
        assert!(verdict.valid(), "seed {seed}: {:?}", verdict.explain());
    }
}

#[test]
fn a_large_generated_serial_history_is_valid_and_one_with_stale_reads_is_not() {
    let txns = parse(&generated_serial_history(20_000, 200, false)).expect("parses");
    let verdict = check(&txns);
    assert!(verdict.valid(), "{:?}", verdict.explain());
    assert_eq!((verdict.txns, verdict.keys), (20_000, 200));
    let txns = parse(&generated_serial_history(20_000, 200, true)).expect("parses");
    assert!(!check(&txns).valid());
}

/// The size the checker is built for, timed: `CAIRN_ELLE_TXNS=100000 cargo test --release -p
/// cairn-jepsen --test append_checker -- --nocapture hundred` (5,000 by default, so CI
/// runs it too).
#[test]
fn a_hundred_thousand_transactions_check_in_seconds() {
    let count: u64 = std::env::var("CAIRN_ELLE_TXNS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(5_000);
    for stale in [false, true] {
        let text = generated_serial_history(count, (count / 100).clamp(1, 1_000), stale);
        let started = Instant::now();
        let txns = parse(&text).expect("parses");
        let parsed = started.elapsed();
        let verdict = check(&txns);
        let checked = started.elapsed() - parsed;
        println!("{count} transactions, stale reads: {stale}; parsed in {parsed:?}, checked in {checked:?}");
        assert_eq!(verdict.valid(), !stale, "{:?}", verdict.explain());
    }
}
