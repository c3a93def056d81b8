//! Model-based test: random appends, truncations, snapshot markers, releases and reopens
//! against a plain Vec of entries. After every step the log and the model agree on the entries,
//! the indexes and the state. `PROPTEST_CASES` sets the number of cases.

mod common;

use cairn_wal::sim_disk::{LossMode, SimDisk, SimRng};
use cairn_wal::{Entry, HardState, Record, SnapshotMarker, Wal, WalConfig, WalError};
use common::entry;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Step {
    /// Entries with these payload lengths, optionally followed by a hard state.
    Append(Vec<usize>, bool),
    /// Truncate at `first + (n - first) * fraction / 256` (may be rejected below a snapshot).
    Truncate(u8),
    /// Snapshot marker at a fraction of the log, or past its end.
    Snapshot(u8, bool),
    /// Release below a fraction of the log.
    Release(u8),
    Reopen,
    /// Power loss that drops everything unsynced, then reopen: nothing acknowledged changes.
    PowerLossReopen,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (prop::collection::vec(prop_oneof![0usize..200, 0usize..3000], 1..8), any::<bool>())
            .prop_map(|(l, h)| Step::Append(l, h)),
        1 => any::<u8>().prop_map(Step::Truncate),
        1 => (any::<u8>(), prop::bool::weighted(0.2)).prop_map(|(f, past)| Step::Snapshot(f, past)),
        1 => any::<u8>().prop_map(Step::Release),
        1 => Just(Step::Reopen),
        1 => Just(Step::PowerLossReopen),
    ]
}

struct Model {
    first: u64,
    entries: Vec<Entry>,
    hard_state: Option<HardState>,
    snapshot: Option<SnapshotMarker>,
    term: u64,
}

impl Model {
    fn next(&self) -> u64 {
        self.first + self.entries.len() as u64
    }
    fn at(&self, fraction: u8) -> u64 {
        self.first + (self.entries.len() as u64 * u64::from(fraction)) / 256
    }
}

fn check(wal: &Wal, m: &Model) -> Result<(), TestCaseError> {
    prop_assert_eq!(wal.first_index(), m.first);
    prop_assert_eq!(wal.next_index(), m.next());
    prop_assert_eq!(wal.hard_state(), m.hard_state);
    prop_assert_eq!(wal.snapshot(), m.snapshot);
    prop_assert_eq!(
        wal.read_entries(m.first, m.next()).unwrap(),
        m.entries.clone()
    );
    Ok(())
}

fn run(steps: Vec<Step>) -> Result<(), TestCaseError> {
    let disk = SimDisk::new();
    let config = WalConfig {
        segment_bytes: 8192,
        max_batch_bytes: 16 << 10,
    };
    let (mut wal, _) = Wal::open_dir(disk.dir(), config.clone()).unwrap();
    let mut m = Model {
        first: 1,
        entries: Vec::new(),
        hard_state: None,
        snapshot: None,
        term: 1,
    };
    for s in steps {
        match s {
            Step::Append(lens, with_hard_state) => {
                let mut records = Vec::new();
                let mut new = Vec::new();
                for (k, len) in lens.into_iter().enumerate() {
                    let e = entry(m.next() + k as u64, m.term, len);
                    new.push(e.clone());
                    records.push(Record::Entry(e));
                }
                let hs = HardState {
                    term: m.term,
                    vote: 1,
                    commit: m.next(),
                };
                if with_hard_state {
                    records.push(Record::HardState(hs));
                }
                // Both ways in: queued for the writer thread, or written by this thread.
                if new.len() % 2 == 0 {
                    wal.append(records).wait().unwrap();
                } else {
                    wal.append_inline(records).wait().unwrap();
                }
                m.entries.extend(new);
                if with_hard_state {
                    m.hard_state = Some(hs);
                }
            }
            Step::Truncate(f) => {
                let from = m.at(f);
                let covered = m.snapshot.is_some_and(|s| from <= s.index);
                match wal.truncate_from(from).wait() {
                    Ok(()) => {
                        prop_assert!(!covered);
                        m.entries.truncate((from - m.first) as usize);
                        m.term += 1;
                    }
                    Err(WalError::TruncateCoveredBySnapshot { .. }) => prop_assert!(covered),
                    Err(e) => return Err(TestCaseError::fail(format!("truncate: {e}"))),
                }
            }
            Step::Snapshot(f, past) => {
                let index = if past {
                    m.next() + u64::from(f)
                } else {
                    m.at(f).max(1)
                };
                let marker = SnapshotMarker {
                    index,
                    term: m.term,
                };
                wal.append(vec![Record::Snapshot(marker)]).wait().unwrap();
                if index >= m.next() {
                    m.entries.clear();
                    m.first = index + 1;
                }
                m.snapshot = Some(marker);
            }
            Step::Release(f) => {
                let before = m.at(f);
                wal.release_before(before).wait().unwrap();
                let first = wal.first_index();
                prop_assert!(first >= m.first && first <= before.max(m.first));
                m.entries.drain(..(first - m.first) as usize);
                m.first = first;
            }
            Step::Reopen | Step::PowerLossReopen => {
                drop(wal);
                if matches!(s, Step::PowerLossReopen) {
                    disk.power_loss(LossMode::DropUnsynced, &mut SimRng::new(0));
                }
                let (w, rec) = Wal::open_dir(disk.dir(), config.clone()).unwrap();
                prop_assert_eq!(rec.torn_tail, None);
                prop_assert_eq!((rec.first_index, rec.next_index), (m.first, m.next()));
                wal = w;
            }
        }
        check(&wal, &m)?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(96)
    ))]
    #[test]
    fn log_matches_a_vec_model_through_appends_truncations_releases_and_reopens(
        steps in prop::collection::vec(step(), 1..60)
    ) {
        run(steps)?;
    }
}
