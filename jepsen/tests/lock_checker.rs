//! The lock checker against hand-made histories: fenced writes that keep the guarded list in
//! token order are valid, each way of breaking the fence is caught, and bare holds that
//! overlap are documented without making the run invalid.

use cairn_jepsen::lock_check::{check, parse, LockHistoryError, LockVerdict};

const MS: u64 = 1_000_000;

fn line(client: u64, call: u64, ret: Option<u64>, ok: bool, fields: &str) -> String {
    let ret = ret.map_or("null".to_string(), |r| r.to_string());
    format!("{{\"client\":{client},\"call\":{call},\"return\":{ret},\"ok\":{ok},{fields}}}\n")
}

fn acquire(client: u64, at: u64, token: i64) -> String {
    line(
        client,
        at,
        Some(at + MS),
        true,
        &format!(
            "\"op\":\"acquire\",\"key\":\"lock/{client}\",\"lease\":{client},\"token\":{token}"
        ),
    )
}

/// A fenced write of `token:client:seq`: ok (Some(true)), refused (Some(false)) or unknown.
fn write(client: u64, at: u64, token: i64, seq: u64, outcome: Option<bool>) -> String {
    let fields =
        format!("\"op\":\"fenced-write\",\"token\":{token},\"entry\":\"{token}:{client}:{seq}\"");
    match outcome {
        Some(ok) => line(client, at, Some(at + MS), ok, &fields),
        None => line(client, at, None, false, &fields),
    }
}

fn hold(client: u64, token: i64, from: u64, to: u64) -> String {
    line(
        client,
        to,
        Some(to),
        true,
        &format!(
            "\"op\":\"hold\",\"token\":{token},\"from\":{from},\"to\":{to},\"end\":\"released\""
        ),
    )
}

fn release(client: u64, at: u64, token: i64) -> String {
    line(
        client,
        at,
        Some(at + MS),
        true,
        &format!("\"op\":\"release\",\"token\":{token},\"key\":\"lock/{client}\",\"revoked\":true"),
    )
}

fn final_read(at: u64, entries: &[&str]) -> String {
    let list: Vec<String> = entries.iter().map(|e| format!("\"{e}\"")).collect();
    line(
        0,
        at,
        Some(at + MS),
        true,
        &format!(
            "\"op\":\"final\",\"value\":[{}],\"fence\":null",
            list.join(",")
        ),
    )
}

/// Client 1 holds token 10 (10–40 ms), then client 2 holds token 20 (50–80 ms), each with
/// two fenced writes.
fn two_holds() -> String {
    acquire(1, 9 * MS, 10)
        + &write(1, 11 * MS, 10, 1, Some(true))
        + &write(1, 20 * MS, 10, 2, Some(true))
        + &hold(1, 10, 10 * MS, 40 * MS)
        + &release(1, 40 * MS, 10)
        + &acquire(2, 30 * MS, 20)
        + &write(2, 51 * MS, 20, 1, Some(true))
        + &write(2, 60 * MS, 20, 2, Some(true))
        + &hold(2, 20, 50 * MS, 80 * MS)
        + &release(2, 80 * MS, 20)
}

fn verdict(text: &str) -> LockVerdict {
    check(&parse(text).expect("history parses"))
}

fn kinds(verdict: &LockVerdict) -> Vec<&'static str> {
    verdict.findings.keys().copied().collect()
}

#[test]
fn holders_writing_in_token_order_are_valid() {
    let text = two_holds() + &final_read(100 * MS, &["10:1:1", "10:1:2", "20:2:1", "20:2:2"]);
    let verdict = verdict(&text);
    assert!(verdict.valid(), "{:?}", verdict.explain());
    assert!(kinds(&verdict).is_empty(), "{:?}", verdict.findings);
    assert_eq!(verdict.acquisitions, 2);
    assert_eq!(verdict.committed_writes, 4);
    assert_eq!(verdict.final_entries, Some(4));
    assert!(verdict.counts().contains("final list of 4 entries"));
}

#[test]
fn unknown_writes_may_land_or_not() {
    let text = two_holds()
        + &write(2, 70 * MS, 20, 3, None)
        + &write(2, 75 * MS, 20, 4, None)
        + &final_read(
            100 * MS,
            &["10:1:1", "10:1:2", "20:2:1", "20:2:2", "20:2:4"],
        );
    assert!(verdict(&text).valid());
}

#[test]
fn an_older_holders_write_after_a_newer_ones_violates_the_fence() {
    let text = two_holds()
        + &write(1, 65 * MS, 10, 3, None)
        + &final_read(
            100 * MS,
            &["10:1:1", "10:1:2", "20:2:1", "10:1:3", "20:2:2"],
        );
    let verdict = verdict(&text);
    assert!(!verdict.valid());
    assert_eq!(kinds(&verdict), ["fence-violated"]);
    let why = verdict.explain().expect("an explanation");
    assert!(why.contains("\"10:1:3\""), "{why}");
}

#[test]
fn an_acknowledged_fenced_write_missing_from_the_final_list_is_lost() {
    let text = two_holds() + &final_read(100 * MS, &["10:1:1", "20:2:1", "20:2:2"]);
    let verdict = verdict(&text);
    assert_eq!(kinds(&verdict), ["lost-fenced-write"]);
    assert!(verdict.explain().is_some_and(|why| why.contains("10:1:2")));
}

#[test]
fn an_entry_no_client_attempted_is_a_phantom() {
    let text = two_holds()
        + &final_read(
            100 * MS,
            &["10:1:1", "10:1:2", "20:2:1", "20:2:2", "30:3:1"],
        );
    assert_eq!(kinds(&verdict(&text)), ["phantom-write"]);
}

#[test]
fn a_refused_write_in_the_final_list_landed_anyway() {
    let text = two_holds()
        + &write(1, 65 * MS, 10, 3, Some(false))
        + &final_read(
            100 * MS,
            &["10:1:1", "10:1:2", "20:2:1", "20:2:2", "10:1:3"],
        );
    let found = kinds(&verdict(&text));
    assert!(found.contains(&"rejected-write-landed"), "{found:?}");
    assert!(found.contains(&"fence-violated"), "{found:?}");
}

#[test]
fn an_entry_applied_twice_is_caught() {
    let text = two_holds()
        + &final_read(
            100 * MS,
            &["10:1:1", "10:1:2", "20:2:1", "20:2:1", "20:2:2"],
        );
    assert_eq!(kinds(&verdict(&text)), ["duplicate-entry"]);
}

#[test]
fn two_clients_acquiring_with_one_token_is_caught() {
    let text = two_holds()
        + &acquire(3, 90 * MS, 20)
        + &final_read(100 * MS, &["10:1:1", "10:1:2", "20:2:1", "20:2:2"]);
    let verdict = verdict(&text);
    assert_eq!(kinds(&verdict), ["duplicate-token"]);
    assert!(!verdict.valid());
}

#[test]
fn overlapping_bare_holds_are_documented_but_valid() {
    // Client 1 stalls holding token 10 until 60 ms, past client 2's acquisition at 50 ms;
    // its late write is refused by the fence.
    let text = acquire(1, 9 * MS, 10)
        + &write(1, 11 * MS, 10, 1, Some(true))
        + &write(1, 58 * MS, 10, 2, Some(false))
        + &hold(1, 10, 10 * MS, 60 * MS)
        + &acquire(2, 30 * MS, 20)
        + &write(2, 51 * MS, 20, 1, Some(true))
        + &hold(2, 20, 50 * MS, 80 * MS)
        + &final_read(100 * MS, &["10:1:1", "20:2:1"]);
    let verdict = verdict(&text);
    assert!(verdict.valid(), "{:?}", verdict.explain());
    assert_eq!(verdict.explain(), None);
    assert_eq!(kinds(&verdict), ["bare-holds-overlap"]);
    assert_eq!(verdict.findings["bare-holds-overlap"].0, 1);
    let documented = verdict
        .documented_findings()
        .expect("the overlap is documented");
    assert!(documented.contains("0.010 s of overlap"), "{documented}");
    assert!(verdict.counts().contains("bare-holds-overlap (1)"));
}

#[test]
fn one_clients_successive_holds_never_overlap_themselves() {
    let text =
        hold(1, 10, 0, 10 * MS) + &hold(1, 20, 10 * MS, 20 * MS) + &hold(2, 30, 20 * MS, 30 * MS);
    assert!(kinds(&verdict(&text)).is_empty());
}

#[test]
fn without_a_final_read_only_the_final_checks_are_skipped() {
    let verdict = verdict(&two_holds());
    assert!(verdict.no_final_read());
    assert!(verdict.valid());
    assert!(verdict.counts().contains("no final read"));
}

fn parse_error_line(text: &str) -> usize {
    match parse(text) {
        Err(LockHistoryError::Line { line, .. }) => line,
        Ok(_) => panic!("{text:?} parsed"),
    }
}

#[test]
fn parse_errors_name_the_line() {
    assert_eq!(parse_error_line(&(two_holds() + "not json\n")), 11);
    let no_token = line(
        1,
        0,
        Some(1),
        true,
        "\"op\":\"acquire\",\"key\":\"lock/1\",\"lease\":1",
    );
    assert_eq!(parse_error_line(&(acquire(1, 0, 5) + "\n" + &no_token)), 3);
    let foreign_entry = line(
        1,
        0,
        Some(1),
        true,
        "\"op\":\"fenced-write\",\"token\":5,\"entry\":\"6:1:1\"",
    );
    assert_eq!(parse_error_line(&foreign_entry), 1);
    let backwards = line(
        1,
        0,
        Some(0),
        true,
        "\"op\":\"hold\",\"token\":5,\"from\":9,\"to\":3",
    );
    assert_eq!(parse_error_line(&backwards), 1);
    let unknown = line(1, 0, Some(0), true, "\"op\":\"steal\"");
    let error = parse(&unknown).expect_err("an unknown op");
    assert!(error.to_string().starts_with("line 1:"), "{error}");
    let bad_final = line(0, 0, Some(0), true, "\"op\":\"final\",\"value\":[1,2]");
    assert_eq!(parse_error_line(&bad_final), 1);
}
