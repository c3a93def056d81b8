//! Torn and corrupt files give the documented outcome, never a panic: a cut or zeroed last
//! record is a torn tail (dropped, the rest kept); a flipped byte before the last write, a
//! missing middle segment or an index gap refuses to open, naming the file.

mod common;

use std::path::Path;

use cairn_wal::sim_disk::{SimDisk, SimRng};
use cairn_wal::{Wal, WalConfig, WalError};
use common::{entry, entry_record, seed_from_env};

fn config() -> WalConfig {
    WalConfig {
        segment_bytes: 64 << 10,
        ..WalConfig::default()
    }
}

fn segment_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    v.sort();
    v
}

/// Writes entries 1..=n, one append each, with payload lengths that vary.
fn write_log(wal: &Wal, n: u64) {
    for i in 1..=n {
        wal.append(vec![entry_record(i, 1, (i * 37 % 700) as usize)])
            .wait()
            .unwrap();
    }
}

fn assert_prefix(wal: &Wal, next: u64) {
    let got = wal.read_entries(1, next).unwrap();
    for (k, e) in got.iter().enumerate() {
        let i = k as u64 + 1;
        assert_eq!(*e, entry(i, 1, (i * 37 % 700) as usize));
    }
}

#[test]
fn cutting_the_last_record_at_any_byte_drops_only_that_record() {
    let tmp = tempfile::tempdir().unwrap();
    let n = 299;
    {
        let (wal, _) = Wal::open(tmp.path(), config()).unwrap();
        write_log(&wal, n - 1);
    }
    let last = segment_files(tmp.path()).pop().unwrap();
    assert!(
        segment_files(tmp.path()).len() >= 2,
        "the log spans segments"
    );
    let before = std::fs::read(&last).unwrap();
    {
        let (wal, _) = Wal::open(tmp.path(), config()).unwrap();
        wal.append(vec![entry_record(n, 1, (n * 37 % 700) as usize)])
            .wait()
            .unwrap();
    }
    let after = std::fs::read(&last).unwrap();
    let start = before.iter().zip(&after).position(|(a, b)| a != b).unwrap();
    let end = after.iter().rposition(|&b| b != 0).unwrap() + 1;
    let body_len = (n * 37 % 700) as usize + 16;
    assert_eq!(end - start, 16 + body_len, "found the last record");
    for cut in start..=end {
        let mut damaged = after.clone();
        damaged.truncate(cut);
        std::fs::write(&last, &damaged).unwrap();
        let (wal, rec) =
            Wal::open(tmp.path(), config()).unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
        let expect_next = if cut == end { n + 1 } else { n };
        assert_eq!(rec.next_index, expect_next, "cut at {cut}");
        assert_eq!(
            rec.torn_tail.is_some(),
            cut > start && cut < end,
            "cut at {cut}"
        );
        assert_prefix(&wal, expect_next);
    }
    // A lost sector (zeros from a sector boundary on) inside the last record: torn as well.
    let sectors = (start / 512 + 1) * 512..end;
    assert!(
        !sectors.is_empty(),
        "the last record crosses a sector boundary"
    );
    for boundary in sectors.step_by(512) {
        let mut damaged = after.clone();
        damaged[boundary..].fill(0);
        std::fs::write(&last, &damaged).unwrap();
        let (wal, rec) = Wal::open(tmp.path(), config())
            .unwrap_or_else(|e| panic!("zeroed from {boundary}: {e}"));
        assert_eq!(rec.next_index, n, "zeroed from {boundary}");
        assert!(rec.torn_tail.is_some());
        assert_prefix(&wal, n);
    }
    // After a cut, the log keeps working and the cut record can be written again.
    let mut damaged = after.clone();
    damaged.truncate(start + 20);
    std::fs::write(&last, &damaged).unwrap();
    {
        let (wal, rec) = Wal::open(tmp.path(), config()).unwrap();
        assert_eq!(rec.next_index, n);
        write_log_from(&wal, n, n + 5);
    }
    let (wal, rec) = Wal::open(tmp.path(), config()).unwrap();
    assert_eq!((rec.next_index, rec.torn_tail), (n + 5, None));
    assert_prefix(&wal, n + 5);
}

fn write_log_from(wal: &Wal, lo: u64, hi: u64) {
    for i in lo..hi {
        wal.append(vec![entry_record(i, 1, (i * 37 % 700) as usize)])
            .wait()
            .unwrap();
    }
}

/// Logs on the simulated disk, for many cheap damaged copies.
fn sim_log(n: u64, segment_bytes: u64) -> SimDisk {
    let disk = SimDisk::new();
    let config = WalConfig {
        segment_bytes,
        ..WalConfig::default()
    };
    let (wal, _) = Wal::open_dir(disk.dir(), config).unwrap();
    write_log(&wal, n);
    disk
}

fn sim_open(disk: &SimDisk, segment_bytes: u64) -> Result<(Wal, cairn_wal::Recovered), WalError> {
    let config = WalConfig {
        segment_bytes,
        ..WalConfig::default()
    };
    Wal::open_dir(disk.dir(), config)
}

/// A copy of a simulated disk's segment files (not the spare prepared for the next one,
/// which every open deletes and makes anew).
fn snapshot(disk: &SimDisk) -> Vec<(String, Vec<u8>)> {
    disk.file_names()
        .into_iter()
        .filter(|n| n.ends_with(".wal"))
        .map(|n| {
            let c = disk.read_file(&n).unwrap();
            (n, c)
        })
        .collect()
}

fn restore(disk: &SimDisk, files: &[(String, Vec<u8>)]) {
    for (name, content) in files {
        assert!(disk.overwrite_file(name, content.clone()));
    }
}

#[test]
fn flipping_any_byte_before_the_last_write_refuses_to_open_naming_the_file() {
    let seg = 8192;
    let disk = sim_log(100, seg);
    let files = snapshot(&disk);
    assert!(files.len() >= 3);
    // Every byte of the first segment (header and records) and of the middle of the last one,
    // excluding the last write (whose damage is indistinguishable from a torn write).
    let (last_name, last) = files.last().unwrap().clone();
    let last_end = last.iter().rposition(|&b| b != 0).unwrap() + 1;
    let (first_name, first) = files[0].clone();
    let first_end = first.iter().rposition(|&b| b != 0).unwrap() + 1;
    let mut targets: Vec<(String, usize)> =
        (0..first_end).map(|o| (first_name.clone(), o)).collect();
    targets.extend((0..last_end.saturating_sub(1000)).map(|o| (last_name.clone(), o)));
    let mut refused = 0;
    for (name, offset) in targets {
        restore(&disk, &files);
        let mut content = disk.read_file(&name).unwrap();
        content[offset] ^= 0x5a;
        assert!(disk.overwrite_file(&name, content));
        match sim_open(&disk, seg) {
            Ok((_, rec)) => panic!("flip at {name}:{offset} accepted: {rec:?}"),
            Err(e) => {
                assert!(e.to_string().contains(&name), "{e} does not name {name}");
                refused += 1;
            }
        }
    }
    assert!(refused > 1000);
}

#[test]
fn deleting_a_middle_segment_refuses_to_open() {
    let seg = 8192;
    let disk = sim_log(100, seg);
    let names = disk.file_names();
    assert!(names.len() >= 3);
    assert!(disk.delete_file(&names[1]));
    match sim_open(&disk, seg) {
        Err(WalError::MissingSegment {
            expected_seq,
            found_file,
        }) => {
            assert_eq!(expected_seq, 2);
            assert!(found_file.contains(&names[2]));
        }
        Err(other) => panic!("wrong error {other}"),
        Ok(_) => panic!("opened with a missing segment"),
    }
}

#[test]
fn a_segment_that_does_not_continue_the_index_refuses_to_open() {
    let seg = 8192;
    let disk = sim_log(100, seg);
    let names = disk.file_names();
    // Drop the first segment too: the remaining ones still chain, so the log opens from 2.
    let second = disk.read_file(&names[1]).unwrap();
    let third = disk.read_file(&names[2]).unwrap();
    // Swapping the contents of two segments breaks name/header agreement.
    assert!(disk.overwrite_file(&names[1], third));
    assert!(disk.overwrite_file(&names[2], second));
    let err = sim_open(&disk, seg).err().expect("refused");
    assert!(matches!(err, WalError::Corrupt { offset: 16, .. }), "{err}");
}

/// Random damage of every kind (flips, zeroed runs, truncation, anywhere): opening never
/// panics, and whatever it returns is the original log's entries, unaltered.
#[test]
fn random_damage_never_panics_or_returns_altered_entries() {
    let seg = 8192;
    let disk = sim_log(60, seg);
    let files = snapshot(&disk);
    let iterations = seed_from_env("CAIRN_WAL_DAMAGE_ITERATIONS", 1500);
    let base = seed_from_env("CAIRN_WAL_SEED", 0);
    let (mut ok, mut refused) = (0, 0);
    for it in 0..iterations {
        let seed = base + it;
        let mut rng = SimRng::new(seed);
        restore(&disk, &files);
        let k = rng.below(files.len() as u64) as usize;
        let (name, mut content) = files[k].clone();
        let at = rng.below(content.len() as u64) as usize;
        match rng.below(3) {
            0 => content[at] ^= 1 << rng.below(8),
            1 => {
                let end = (at + 1 + rng.below(600) as usize).min(content.len());
                content[at..end].fill(0);
            }
            _ => content.truncate(at),
        }
        assert!(disk.overwrite_file(&name, content));
        let outcome = std::panic::catch_unwind(|| match sim_open(&disk, seg) {
            Ok((wal, rec)) => {
                let got = wal.read_entries(rec.first_index, rec.next_index).unwrap();
                for e in got {
                    assert_eq!(e, entry(e.index, 1, (e.index * 37 % 700) as usize));
                }
                true
            }
            Err(_) => false,
        });
        match outcome {
            Ok(true) => ok += 1,
            Ok(false) => refused += 1,
            Err(_) => {
                panic!("panicked; replay with CAIRN_WAL_SEED={seed} CAIRN_WAL_DAMAGE_ITERATIONS=1")
            }
        }
    }
    assert!(ok > 0 && refused > 0, "ok {ok} refused {refused}");
}
