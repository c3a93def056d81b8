//! Test-only failpoints, compiled in only with the `failpoints` cargo feature (never in
//! release builds): named places in the server where a test can inject a delay or a crash,
//! chosen at start through `CAIRN_FAILPOINTS`, e.g.
//! `CAIRN_FAILPOINTS="wal-fsync=delay(1500);apply=crash"`.
//!
//! Places: `wal-fsync` (before waiting for a WAL append's fsync), `apply` (before applying a
//! run of committed entries). Actions: `delay(<ms>)` sleeps the calling thread, `crash`
//! aborts the process (as a kill -9 would, without unwinding).

#[cfg(not(debug_assertions))]
compile_error!("the `failpoints` feature is for test builds only, never release builds");

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Duration;

/// What a failpoint does when reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Delay(Duration),
    Crash,
}

/// Parses `CAIRN_FAILPOINTS`; malformed entries are reported and ignored.
pub fn parse(spec: &str) -> HashMap<String, Action> {
    let mut points = HashMap::new();
    for entry in spec.split(';').map(str::trim).filter(|e| !e.is_empty()) {
        let Some((name, action)) = entry.split_once('=') else {
            eprintln!("CAIRN_FAILPOINTS: ignoring {entry:?} (expected name=action)");
            continue;
        };
        let action = match action.trim() {
            "crash" => Action::Crash,
            delay if delay.starts_with("delay(") && delay.ends_with(')') => {
                match delay["delay(".len()..delay.len() - 1].parse::<u64>() {
                    Ok(ms) => Action::Delay(Duration::from_millis(ms)),
                    Err(_) => {
                        eprintln!("CAIRN_FAILPOINTS: ignoring {entry:?} (bad delay)");
                        continue;
                    }
                }
            }
            other => {
                eprintln!("CAIRN_FAILPOINTS: ignoring {entry:?} (unknown action {other:?})");
                continue;
            }
        };
        points.insert(name.trim().to_string(), action);
    }
    points
}

fn configured() -> &'static HashMap<String, Action> {
    static POINTS: OnceLock<HashMap<String, Action>> = OnceLock::new();
    POINTS.get_or_init(|| parse(&std::env::var("CAIRN_FAILPOINTS").unwrap_or_default()))
}

/// Carries out failpoint `name`'s action, if one is configured.
pub fn reach(name: &str) {
    match configured().get(name) {
        Some(Action::Delay(delay)) => std::thread::sleep(*delay),
        Some(Action::Crash) => {
            eprintln!("failpoint {name}: crashing");
            std::process::abort();
        }
        None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_name_places_and_actions() {
        let points = parse("wal-fsync=delay(1500); apply=crash;bogus;x=explode;y=delay(z)");
        assert_eq!(points.len(), 2);
        assert_eq!(
            points["wal-fsync"],
            Action::Delay(Duration::from_millis(1500))
        );
        assert_eq!(points["apply"], Action::Crash);
    }
}
