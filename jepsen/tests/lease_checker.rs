//! The lease checker against hand-made histories: keys readable exactly while their lease
//! lives, with each way of breaking that caught.

use cairn_jepsen::lease_check::{check, parse, EXPIRY_SLACK_NS};

const S: u64 = 1_000_000_000;

fn op(call: u64, ret: Option<u64>, ok: bool, fields: &str) -> String {
    let ret = ret.map_or("null".to_string(), |r| r.to_string());
    format!("{{\"client\":2,\"call\":{call},\"return\":{ret},\"ok\":{ok},{fields}}}\n")
}

fn read(call: u64, ret: u64, keys: &[(&str, i64)]) -> String {
    let pairs: Vec<String> = keys.iter().map(|(k, l)| format!("[\"{k}\",{l}]")).collect();
    format!(
        "{{\"client\":1,\"call\":{call},\"return\":{ret},\"ok\":true,\"op\":\"read\",\"value\":[{}]}}\n",
        pairs.join(",")
    )
}

/// Lease 7 granted with TTL 4 at 0 s, its key put at 0.1 s, renewed at 2 s and 4 s.
fn life() -> String {
    op(
        0,
        Some(S / 100),
        true,
        "\"op\":\"grant\",\"lease\":7,\"ttl\":4",
    ) + &op(
        S / 10,
        Some(S / 5),
        true,
        "\"op\":\"put\",\"key\":\"l/2/1\",\"lease\":7",
    ) + &op(
        2 * S,
        Some(2 * S + 1),
        true,
        "\"op\":\"keepalive\",\"lease\":7,\"ttl\":4",
    ) + &op(
        4 * S,
        Some(4 * S + 1),
        true,
        "\"op\":\"keepalive\",\"lease\":7,\"ttl\":4",
    )
}

fn anomalies(text: &str) -> Vec<&'static str> {
    check(&parse(text).expect("history parses"))
        .anomalies
        .keys()
        .copied()
        .collect()
}

#[test]
fn a_key_present_while_kept_alive_and_gone_after_expiry_is_valid() {
    let text = life()
        + &read(S, S + 10, &[("l/2/1", 7)])
        + &read(7 * S, 7 * S + 10, &[("l/2/1", 7)])
        // Expired (alive until 8 s at least), gone a little later: fine.
        + &read(10 * S, 10 * S + 10, &[]);
    assert!(anomalies(&text).is_empty(), "{:?}", anomalies(&text));
}

#[test]
fn a_key_missing_while_its_lease_lives_vanished() {
    let text = life() + &read(5 * S, 5 * S + 10, &[]);
    assert_eq!(anomalies(&text), ["vanished-while-alive"]);
}

#[test]
fn a_key_read_after_its_revoke_returned_is_caught() {
    let text = life()
        + &op(
            5 * S,
            Some(5 * S + 5),
            true,
            "\"op\":\"revoke\",\"lease\":7",
        )
        + &read(6 * S, 6 * S + 10, &[("l/2/1", 7)]);
    assert_eq!(anomalies(&text), ["revoked-but-readable"]);
}

#[test]
fn a_key_read_after_a_keepalive_found_its_lease_gone_is_caught() {
    let text = life()
        + &op(
            9 * S,
            Some(9 * S + 5),
            true,
            "\"op\":\"keepalive\",\"lease\":7,\"ttl\":0",
        )
        + &read(9 * S + 100, 9 * S + 200, &[("l/2/1", 7)]);
    assert_eq!(anomalies(&text), ["expired-but-readable"]);
}

/// Reads of `keys` every half second from `from` until `to` (ns): the cluster serving.
fn steady_reads(from: u64, to: u64, keys: &[(&str, i64)]) -> String {
    (from..to)
        .step_by((S / 2) as usize)
        .map(|at| read(at, at + 10, keys))
        .collect()
}

#[test]
fn a_key_readable_long_after_any_renewal_outlived_its_lease() {
    let late = 8 * S + EXPIRY_SLACK_NS + S;
    let text = life()
        + &steady_reads(5 * S, late, &[("l/2/1", 7)])
        + &read(late, late + 10, &[("l/2/1", 7)]);
    assert_eq!(anomalies(&text), ["outlived-lease"]);
}

#[test]
fn time_in_which_nothing_was_served_does_not_count_against_a_lease() {
    // Nothing succeeds from 5 s to 40 s (no leader, so no expiry); the first read after it
    // still holds the key, and the lease is gone soon after.
    let back = 40 * S;
    let late = 8 * S + EXPIRY_SLACK_NS + S;
    assert!(back > late);
    let text = life()
        + &read(5 * S, 5 * S + 10, &[("l/2/1", 7)])
        + &steady_reads(back, back + 5 * S, &[("l/2/1", 7)])
        + &read(back + 6 * S, back + 6 * S + 10, &[]);
    assert!(anomalies(&text).is_empty(), "{:?}", anomalies(&text));
    // Served all along, the same reads are late.
    let served = life() + &steady_reads(5 * S, back + 5 * S, &[("l/2/1", 7)]);
    assert_eq!(anomalies(&served), ["outlived-lease"]);
}

#[test]
fn a_revoke_in_flight_lifts_the_promise_of_life() {
    // The revoke is indeterminate: the key may be gone from its call on.
    let text = life()
        + &op(5 * S, None, false, "\"op\":\"revoke\",\"lease\":7")
        + &read(6 * S, 6 * S + 10, &[]);
    assert!(anomalies(&text).is_empty(), "{:?}", anomalies(&text));
}

#[test]
fn a_key_under_the_wrong_lease_is_unexpected() {
    let text = life() + &read(S, S + 10, &[("l/2/1", 8)]);
    assert!(anomalies(&text).contains(&"unexpected"));
}

#[test]
fn an_early_expiry_while_a_clock_ran_fast_shows_the_assumption_not_an_anomaly() {
    use cairn_jepsen::lease_check::{check_with_fast_clocks, fast_clock_windows};
    let text = life() + &read(5 * S, 5 * S + 10, &[]);
    let history = parse(&text).expect("history parses");
    let timeline = format!(
        "{{\"time\":{},\"action\":\"clock rate x3\"}}\n{{\"time\":{},\"action\":\"clock over\"}}\n",
        3 * S,
        4 * S
    );
    let windows = fast_clock_windows(&timeline);
    assert_eq!(windows.len(), 1);
    let verdict = check_with_fast_clocks(&history, &windows);
    assert!(verdict.valid(), "{:?}", verdict.explain());
    assert!(verdict.assumptions().is_some());
    // A slow clock explains nothing: the same read is an anomaly.
    let slow = timeline.replace("x3", "x0.5");
    let verdict = check_with_fast_clocks(&history, &fast_clock_windows(&slow));
    assert!(!verdict.valid());
}
