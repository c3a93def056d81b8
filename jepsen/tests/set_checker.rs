//! The set checker against hand-made histories: every acknowledged add must be in every read
//! that began after it was acknowledged and in the final read; nothing unattempted appears;
//! nothing once seen disappears.

use cairn_jepsen::set_check::{check, parse};

fn add(client: u64, call: u64, ret: Option<u64>, value: u64, ok: bool) -> String {
    let ret = ret.map_or("null".to_string(), |r| r.to_string());
    format!(
        "{{\"client\":{client},\"call\":{call},\"return\":{ret},\"op\":\"add\",\"epoch\":0,\"value\":{value},\"ok\":{ok}}}\n"
    )
}

fn read(call: u64, ret: u64, epoch: Option<u64>, values: &[u64]) -> String {
    let epoch = epoch.map_or("null".to_string(), |e| e.to_string());
    format!(
        "{{\"client\":1,\"call\":{call},\"return\":{ret},\"op\":\"read\",\"epoch\":{epoch},\"value\":{values:?},\"ok\":true}}\n"
    )
}

fn anomalies(text: &str) -> Vec<&'static str> {
    let verdict = check(&parse(text).expect("history parses"));
    verdict.anomalies.keys().copied().collect()
}

#[test]
fn acknowledged_and_seen_adds_everywhere_they_must_be_is_valid() {
    let text = add(2, 0, Some(10), 1, true)
        // Concurrent with the read: may or may not be in it.
        + &add(3, 15, Some(40), 2, true)
        // Indeterminate: may appear, or not.
        + &add(4, 16, None, 3, false)
        + &read(20, 30, Some(0), &[1])
        + &read(50, 60, None, &[1, 2]);
    assert!(anomalies(&text).is_empty(), "{:?}", anomalies(&text));
}

#[test]
fn an_acknowledged_add_missing_everywhere_is_lost() {
    let text = add(2, 0, Some(10), 1, true) + &read(20, 30, None, &[]);
    assert_eq!(anomalies(&text), ["lost"]);
}

#[test]
fn a_read_missing_an_acknowledged_add_the_final_read_has_is_stale() {
    let text =
        add(2, 0, Some(10), 1, true) + &read(20, 30, Some(0), &[]) + &read(50, 60, None, &[1]);
    assert_eq!(anomalies(&text), ["stale"]);
}

#[test]
fn an_element_nobody_added_is_unexpected() {
    let text = add(2, 0, Some(10), 1, true) + &read(20, 30, None, &[1, 99]);
    assert_eq!(anomalies(&text), ["unexpected"]);
}

#[test]
fn an_indeterminate_add_seen_then_missing_vanished() {
    let text = add(2, 0, None, 1, false)
        + &read(20, 30, Some(0), &[1])
        + &read(40, 50, Some(0), &[])
        + &read(60, 70, None, &[1]);
    assert_eq!(anomalies(&text), ["vanished"]);
}

#[test]
fn parse_errors_name_the_line() {
    let text = add(2, 0, Some(10), 1, true) + "{\"client\":1,\"call\":5}\n";
    let err = parse(&text).expect_err("a line without op");
    assert!(err.to_string().starts_with("line 2:"), "{err}");
}
