//! The log's promises through its public API: durability across reopen, truncation, release,
//! snapshot markers, validation, fatal errors, group commit and metrics.

mod common;

use std::sync::Arc;

use cairn_wal::sim_disk::{LossMode, SimDisk, SimRng};
use cairn_wal::{HardState, Metadata, Record, SnapshotMarker, Wal, WalConfig, WalError};
use common::{entry, entry_record, small_config};

fn open(disk: &SimDisk) -> (Wal, cairn_wal::Recovered) {
    Wal::open_dir(disk.dir(), small_config()).expect("open")
}

/// Waits until a `sync_data` is held at the disk's closed sync gate.
fn await_held_sync(disk: &SimDisk) {
    while disk.syncs_held() == 0 {
        std::thread::yield_now();
    }
}

fn append_range(wal: &Wal, lo: u64, hi: u64, term: u64) {
    for i in lo..hi {
        wal.append(vec![entry_record(i, term, (i % 97) as usize)])
            .wait()
            .expect("append");
    }
}

#[test]
fn appended_records_are_readable_and_survive_reopen() {
    let disk = SimDisk::new();
    let (wal, rec) = open(&disk);
    assert_eq!((rec.first_index, rec.next_index), (1, 1));
    let hs = HardState {
        term: 3,
        vote: 2,
        commit: 150,
    };
    let md = Metadata {
        cluster_id: 7,
        member_id: 9,
    };
    wal.append(vec![Record::Metadata(md)]).wait().unwrap();
    append_range(&wal, 1, 201, 3);
    wal.append(vec![Record::HardState(hs)]).wait().unwrap();
    assert!(disk.file_names().len() > 3, "small segments rotate");
    let expect: Vec<_> = (1..201).map(|i| entry(i, 3, (i % 97) as usize)).collect();
    assert_eq!(wal.read_entries(1, 201).unwrap(), expect);
    drop(wal);

    let (wal, rec) = open(&disk);
    assert_eq!((rec.first_index, rec.next_index), (1, 201));
    assert_eq!(rec.hard_state, Some(hs));
    assert_eq!(rec.metadata, Some(md));
    assert_eq!(rec.torn_tail, None);
    assert_eq!(wal.read_entries(1, 201).unwrap(), expect);
    assert_eq!(wal.read_entries(50, 60).unwrap(), expect[49..59].to_vec());
}

#[test]
fn truncate_from_durably_replaces_a_conflicting_suffix() {
    let disk = SimDisk::new();
    let (wal, _) = open(&disk);
    append_range(&wal, 1, 60, 1);
    wal.truncate_from(30).wait().unwrap();
    assert_eq!(wal.next_index(), 30);
    assert!(matches!(
        wal.read_entries(29, 31),
        Err(WalError::Unavailable { .. })
    ));
    append_range(&wal, 30, 40, 2);
    drop(wal);
    let (wal, rec) = open(&disk);
    assert_eq!(rec.next_index, 40);
    let got = wal.read_entries(1, 40).unwrap();
    assert!(got[..29].iter().all(|e| e.term == 1));
    assert!(got[29..].iter().all(|e| e.term == 2));
    assert_eq!(got[35], entry(36, 2, 36));
}

#[test]
fn truncate_below_the_first_entry_is_rejected() {
    let disk = SimDisk::new();
    let (wal, _) = open(&disk);
    wal.append(vec![Record::Snapshot(SnapshotMarker {
        index: 10,
        term: 1,
    })])
    .wait()
    .unwrap();
    append_range(&wal, 11, 20, 1);
    assert!(matches!(
        wal.truncate_from(5).wait(),
        Err(WalError::TruncateBeforeFirst {
            index: 5,
            first_index: 11
        })
    ));
    wal.truncate_from(25).wait().unwrap();
    assert_eq!(wal.next_index(), 20, "truncating past the end is a no-op");
}

#[test]
fn release_before_deletes_old_segments_but_keeps_the_latest_state() {
    let disk = SimDisk::new();
    let (wal, _) = open(&disk);
    let hs = HardState {
        term: 1,
        vote: 1,
        commit: 5,
    };
    wal.append(vec![Record::HardState(hs)]).wait().unwrap();
    append_range(&wal, 1, 300, 1);
    let before = disk.file_names().len();
    let marker = SnapshotMarker {
        index: 250,
        term: 1,
    };
    wal.append(vec![Record::Snapshot(marker)]).wait().unwrap();
    wal.release_before(251).wait().unwrap();
    let after = disk.file_names().len();
    assert!(after < before, "{before} -> {after}");
    let first = wal.first_index();
    assert!(first > 1 && first <= 251, "first index {first}");
    assert!(matches!(
        wal.read_entries(1, 2),
        Err(WalError::Compacted { .. })
    ));
    drop(wal);
    let (wal, rec) = open(&disk);
    assert_eq!(
        rec.hard_state,
        Some(hs),
        "state lives in every segment's preamble"
    );
    assert_eq!(rec.snapshot, Some(marker));
    assert_eq!(rec.first_index, first);
    assert_eq!(rec.next_index, 300);
    assert_eq!(
        wal.read_entries(251, 300).unwrap()[0],
        entry(251, 1, 251 % 97)
    );
}

#[test]
fn release_never_deletes_the_segment_being_written() {
    let disk = SimDisk::new();
    let (wal, _) = open(&disk);
    append_range(&wal, 1, 100, 1);
    wal.release_before(u64::MAX).wait().unwrap();
    let segments: Vec<String> = disk
        .file_names()
        .into_iter()
        .filter(|n| n.ends_with(".wal"))
        .collect();
    assert_eq!(segments.len(), 1, "{segments:?}");
    assert_eq!(wal.next_index(), 100);
    drop(wal);
    let (_, rec) = open(&disk);
    assert_eq!(rec.next_index, 100);
}

#[test]
fn snapshot_marker_past_the_end_restarts_the_log_after_it() {
    let disk = SimDisk::new();
    let (wal, _) = open(&disk);
    append_range(&wal, 1, 11, 1);
    wal.append(vec![Record::Snapshot(SnapshotMarker {
        index: 100,
        term: 4,
    })])
    .wait()
    .unwrap();
    assert_eq!((wal.first_index(), wal.next_index()), (101, 101));
    assert!(matches!(
        wal.append(vec![entry_record(11, 1, 0)]).wait(),
        Err(WalError::NonContiguous {
            expected: 101,
            found: 11
        })
    ));
    append_range(&wal, 101, 105, 4);
    drop(wal);
    let (wal, rec) = open(&disk);
    assert_eq!((rec.first_index, rec.next_index), (101, 105));
    assert_eq!(wal.read_entries(101, 105).unwrap().len(), 4);
}

#[test]
fn an_invalid_record_rejects_the_whole_append() {
    let disk = SimDisk::new();
    let (wal, _) = open(&disk);
    let r = wal
        .append(vec![entry_record(1, 1, 3), entry_record(3, 1, 3)])
        .wait();
    assert!(matches!(
        r,
        Err(WalError::NonContiguous {
            expected: 2,
            found: 3
        })
    ));
    assert_eq!(wal.next_index(), 1);
    let too_big = vec![entry_record(1, 1, wal.max_payload_bytes() as usize + 1)];
    assert!(matches!(
        wal.append(too_big).wait(),
        Err(WalError::RecordTooLarge { .. })
    ));
    let largest = vec![entry_record(1, 1, wal.max_payload_bytes() as usize)];
    wal.append(largest).wait().unwrap();
    append_range(&wal, 2, 4, 1);
    drop(wal);
    let (wal, rec) = open(&disk);
    assert_eq!(rec.next_index, 4);
    assert_eq!(
        wal.read_entries(1, 2).unwrap()[0].payload.len() as u64,
        wal.max_payload_bytes()
    );
}

#[test]
fn failed_fsync_fails_that_append_and_every_later_one() {
    let disk = SimDisk::new();
    let (wal, _) = open(&disk);
    append_range(&wal, 1, 10, 1);
    disk.fail_next_sync();
    assert!(matches!(
        wal.append(vec![entry_record(10, 1, 5)]).wait(),
        Err(WalError::Fatal { .. })
    ));
    for i in 10..13 {
        assert!(matches!(
            wal.append(vec![entry_record(i, 1, 5)]).wait(),
            Err(WalError::Fatal { .. })
        ));
    }
    assert!(matches!(
        wal.release_before(5).wait(),
        Err(WalError::Fatal { .. })
    ));
    assert_eq!(
        wal.next_index(),
        10,
        "nothing unacknowledged became visible"
    );
    drop(wal);
    disk.power_loss(LossMode::DropUnsynced, &mut SimRng::new(1));
    let (wal, rec) = open(&disk);
    assert_eq!(rec.next_index, 10);
    assert_eq!(wal.read_entries(1, 10).unwrap().len(), 9);
}

#[test]
fn failed_write_is_fatal_too() {
    let disk = SimDisk::new();
    let (wal, _) = open(&disk);
    disk.fail_next_write();
    assert!(wal.append(vec![entry_record(1, 1, 5)]).wait().is_err());
    assert!(matches!(
        wal.append(vec![entry_record(1, 1, 5)]).wait(),
        Err(WalError::Fatal { .. })
    ));
}

#[test]
fn corruption_under_a_live_log_is_reported_on_read() {
    let disk = SimDisk::new();
    let (wal, _) = open(&disk);
    append_range(&wal, 1, 5, 1);
    let name = disk.file_names()[0].clone();
    let mut bytes = disk.read_file(&name).unwrap();
    bytes[64 + 20] ^= 0xff; // inside the first entry's body
    assert!(disk.overwrite_file(&name, bytes));
    assert!(matches!(
        wal.read_entries(1, 2),
        Err(WalError::Corrupt { .. })
    ));
    assert_eq!(wal.read_entries(2, 5).unwrap().len(), 3);
}

#[test]
fn concurrent_appenders_share_fsyncs_on_a_real_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let config = WalConfig {
        segment_bytes: 64 << 10,
        ..WalConfig::default()
    };
    let (wal, _) = Wal::open(tmp.path(), config.clone()).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let next = Arc::new(std::sync::Mutex::new(1u64));
    let tasks = 64;
    let per_task = 20;
    rt.block_on(async {
        let mut handles = Vec::new();
        for _ in 0..tasks {
            let wal = wal.clone();
            let next = next.clone();
            handles.push(tokio::spawn(async move {
                for _ in 0..per_task {
                    let fut = {
                        let mut n = next.lock().unwrap();
                        let f = wal.append(vec![entry_record(*n, 1, 100)]);
                        *n += 1;
                        f
                    };
                    fut.await.unwrap();
                }
            }));
        }
        for h in handles {
            h.await.unwrap();
        }
    });
    let total = (tasks * per_task) as u64;
    let m = wal.metrics();
    assert!(m.records_synced >= total);
    assert!(
        m.fsyncs * 2 <= total,
        "{} fsyncs for {total} appends: group commit did not batch",
        m.fsyncs
    );
    assert_eq!(m.fsync_duration_buckets.iter().sum::<u64>(), m.fsyncs);
    drop(wal);
    let (wal, rec) = Wal::open(tmp.path(), config).unwrap();
    assert_eq!(rec.next_index, total + 1);
    let got = wal.read_entries(1, total + 1).unwrap();
    for (i, e) in got.iter().enumerate() {
        assert_eq!(*e, entry(i as u64 + 1, 1, 100));
    }
}

#[test]
fn leftover_tmp_segments_are_removed_on_open() {
    let tmp = tempfile::tempdir().unwrap();
    let config = WalConfig {
        segment_bytes: 64 << 10,
        ..WalConfig::default()
    };
    {
        let (wal, _) = Wal::open(tmp.path(), config.clone()).unwrap();
        append_range(&wal, 1, 10, 1);
    }
    std::fs::write(
        tmp.path().join("0000000000000002-000000000000000a.wal.tmp"),
        b"junk",
    )
    .unwrap();
    let (wal, rec) = Wal::open(tmp.path(), config.clone()).unwrap();
    assert_eq!(rec.next_index, 10);
    append_range(&wal, 10, 12, 1);
    await_full_spare(tmp.path(), config.segment_bytes);
    drop(wal);
    assert_eq!(
        file_names(tmp.path()),
        ["0000000000000001-0000000000000001.wal", SPARE],
        "the junk is gone; the spare is the one the reopened log prepared"
    );
}

const SPARE: &str = "next-segment.tmp";

/// Waits until the helper has written the whole spare (a log dropped earlier cancels it).
fn await_full_spare(dir: &std::path::Path, segment_bytes: u64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::fs::metadata(dir.join(SPARE)).map_or(true, |m| m.len() < segment_bytes) {
        assert!(std::time::Instant::now() < deadline, "no spare prepared");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// The directory's file names, sorted.
fn file_names(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn segments_on_a_real_disk_are_zero_filled_ahead_of_need() {
    let tmp = tempfile::tempdir().unwrap();
    let segment_bytes = 64u64 << 10;
    let config = WalConfig {
        segment_bytes,
        ..WalConfig::default()
    };
    let last = {
        let (wal, _) = Wal::open(tmp.path(), config.clone()).unwrap();
        // About four segments' worth of 1 KiB entries.
        append_range_sized(&wal, 1, 257, 1, 1000);
        await_full_spare(tmp.path(), segment_bytes);
        wal.metrics().records_synced
    };
    assert!(last >= 256);
    let names = file_names(tmp.path());
    let segments: Vec<&String> = names.iter().filter(|n| n.ends_with(".wal")).collect();
    assert!(segments.len() >= 4, "{names:?}");
    assert!(names.contains(&SPARE.to_string()), "{names:?}");
    // Every segment and the spare have their full size written; the spare is all zeros.
    for name in &names {
        let meta = std::fs::metadata(tmp.path().join(name)).unwrap();
        assert_eq!(meta.len(), segment_bytes, "{name}");
        use std::os::unix::fs::MetadataExt;
        assert!(meta.blocks() * 512 >= segment_bytes, "{name} is sparse");
        if let Some(unwritten) = unwritten_extents(&tmp.path().join(name)) {
            assert_eq!(
                unwritten, 0,
                "{name} has merely reserved (fallocated) blocks"
            );
        }
    }
    let spare = std::fs::read(tmp.path().join(SPARE)).unwrap();
    assert!(spare.iter().all(|&b| b == 0));
    let (wal, rec) = Wal::open(tmp.path(), config).unwrap();
    assert_eq!(rec.next_index, 257);
    let got = wal.read_entries(1, 257).unwrap();
    for (i, e) in got.iter().enumerate() {
        assert_eq!(*e, entry(i as u64 + 1, 1, 1000));
    }
    append_range_sized(&wal, 257, 330, 1, 1000);
    assert_eq!(wal.read_entries(300, 330).unwrap().len(), 30);
}

fn append_range_sized(wal: &Wal, lo: u64, hi: u64, term: u64, len: usize) {
    for i in lo..hi {
        wal.append(vec![entry_record(i, term, len)])
            .wait()
            .expect("append");
    }
}

#[test]
fn invalid_configurations_are_refused() {
    let disk = SimDisk::new();
    for segment_bytes in [0, 1000, 4097, 1 << 33] {
        let config = WalConfig {
            segment_bytes,
            ..WalConfig::default()
        };
        assert!(matches!(
            Wal::open_dir(disk.dir(), config),
            Err(WalError::InvalidConfig(_))
        ));
    }
}

#[test]
fn appends_queued_during_an_fsync_share_the_next_single_fsync() {
    let disk = SimDisk::new();
    let (wal, _) = open(&disk);
    let base = wal.metrics().fsyncs;
    disk.close_sync_gate();
    let first = wal.append(vec![entry_record(1, 1, 10)]);
    await_held_sync(&disk);
    // The writer is inside the first fsync; these queue up behind it.
    let rest: Vec<_> = (2..=9)
        .map(|i| wal.append(vec![entry_record(i, 1, 10)]))
        .collect();
    assert_eq!(
        wal.next_index(),
        1,
        "nothing is visible before its fsync returns"
    );
    disk.open_sync_gate();
    first.wait().unwrap();
    for f in rest {
        f.wait().unwrap();
    }
    let m = wal.metrics();
    assert_eq!(
        m.fsyncs - base,
        2,
        "one fsync for the first append, one for the other eight"
    );
    assert_eq!(wal.next_index(), 10);
}

#[test]
fn limited_reads_stop_at_the_byte_budget_but_return_at_least_one_entry() {
    let disk = SimDisk::new();
    let (wal, _) = open(&disk);
    for i in 1..=20 {
        wal.append(vec![entry_record(i, 1, 100)]).wait().unwrap();
    }
    // Each entry's body is 16 bytes of index and term plus its payload.
    assert_eq!(wal.read_entries_limited(1, 21, 116 * 5).unwrap().len(), 5);
    assert_eq!(
        wal.read_entries_limited(1, 21, 116 * 5 + 115)
            .unwrap()
            .len(),
        5
    );
    assert_eq!(
        wal.read_entries_limited(3, 21, 0).unwrap(),
        vec![entry(3, 1, 100)]
    );
    assert_eq!(wal.read_entries_limited(1, 21, u64::MAX).unwrap().len(), 20);
}

#[test]
fn a_second_open_of_the_same_directory_is_refused_while_the_first_lives() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("new").join("wal");
    let config = WalConfig {
        segment_bytes: 64 << 10,
        ..WalConfig::default()
    };
    let (wal, _) = Wal::open(&dir, config.clone()).unwrap();
    assert!(matches!(
        Wal::open(&dir, config.clone()),
        Err(WalError::Io { .. })
    ));
    drop(wal);
    assert!(Wal::open(&dir, config).is_ok());
}

/// How many of the file's extents are reserved but unwritten (FS_IOC_FIEMAP), or `None`
/// where the file system cannot tell.
fn unwritten_extents(path: &std::path::Path) -> Option<usize> {
    use std::os::unix::io::AsRawFd;
    const FS_IOC_FIEMAP: libc::c_ulong = 0xC020_660B;
    const FIEMAP_FLAG_SYNC: u32 = 1;
    const FIEMAP_EXTENT_UNWRITTEN: u32 = 0x800;
    const EXTENTS: usize = 64;
    // struct fiemap (32 bytes) followed by EXTENTS struct fiemap_extent (56 bytes each).
    let mut buf = vec![0u64; (32 + 56 * EXTENTS) / 8];
    buf[1] = u64::MAX; // fm_length
    buf[2] = u64::from(FIEMAP_FLAG_SYNC); // fm_flags, the u32 at byte 16
                                          // fm_extent_count is the u32 at byte 24.
    buf[3] = EXTENTS as u64;
    let file = std::fs::File::open(path).ok()?;
    // SAFETY: `buf` is a fiemap header with room for EXTENTS extents, alive for the call.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), FS_IOC_FIEMAP, buf.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    let mapped = (buf[2] >> 32) as usize; // fm_mapped_extents, the u32 at byte 20
    Some(
        (0..mapped.min(EXTENTS))
            .filter(|i| {
                // fe_flags is the u32 at byte 40 of the extent.
                let word = buf[(32 + 56 * i + 40) / 8];
                (word as u32) & FIEMAP_EXTENT_UNWRITTEN != 0
            })
            .count(),
    )
}

#[test]
fn a_log_closed_while_its_spare_fills_leaves_no_partial_spare() {
    let tmp = tempfile::tempdir().unwrap();
    let config = WalConfig::default();
    for round in 0..3 {
        let (wal, _) = Wal::open(tmp.path(), config.clone()).unwrap();
        append_range(&wal, 1 + round * 5, 6 + round * 5, 1);
        drop(wal);
        if let Ok(meta) = std::fs::metadata(tmp.path().join(SPARE)) {
            assert_eq!(meta.len(), config.segment_bytes, "a partial spare is left");
        }
    }
    let (_, rec) = Wal::open(tmp.path(), config).unwrap();
    assert_eq!(rec.next_index, 16);
}

#[test]
fn an_inline_append_made_while_the_writer_thread_writes_queues_behind_its_work() {
    let disk = SimDisk::new();
    let (wal, _) = open(&disk);
    append_range(&wal, 1, 20, 1);
    disk.close_sync_gate();
    // The writer thread is inside the truncation's fsync, holding the writer.
    let truncated = wal.truncate_from(10);
    await_held_sync(&disk);
    let inline_before = wal.metrics().inline_appends;
    let appended = wal.append_inline(vec![entry_record(10, 2, 50)]);
    assert_eq!(wal.metrics().inline_appends, inline_before, "it was queued");
    disk.open_sync_gate();
    truncated.wait().unwrap();
    appended.wait().unwrap();
    assert_eq!(wal.next_index(), 11);
    assert_eq!(wal.read_entries(10, 11).unwrap()[0], entry(10, 2, 50));
    drop(wal);
    let (wal, rec) = open(&disk);
    assert_eq!(rec.next_index, 11);
    assert_eq!(wal.read_entries(9, 11).unwrap()[1], entry(10, 2, 50));
}

#[test]
fn an_idle_log_writes_an_inline_append_at_once_and_queued_ones_share_the_next_fsync() {
    let disk = SimDisk::new();
    let (wal, _) = open(&disk);
    append_range(&wal, 1, 5, 1);
    // Long enough for the writer thread to stop watching the queue and park.
    std::thread::sleep(std::time::Duration::from_millis(50));
    let base = wal.metrics();
    disk.close_sync_gate();
    let inline = {
        let wal = wal.clone();
        std::thread::spawn(move || wal.append_inline(vec![entry_record(5, 1, 10)]).wait())
    };
    await_held_sync(&disk);
    assert_eq!(wal.metrics().inline_appends, base.inline_appends + 1);
    // The inline append holds the writer inside its fsync; these queue up behind it.
    let rest: Vec<_> = (6..=13)
        .map(|i| wal.append(vec![entry_record(i, 1, 10)]))
        .collect();
    disk.open_sync_gate();
    inline.join().unwrap().unwrap();
    for f in rest {
        f.wait().unwrap();
    }
    assert_eq!(
        wal.metrics().fsyncs - base.fsyncs,
        2,
        "one fsync for the inline append, one for the eight queued behind it"
    );
    drop(wal);
    let (wal, rec) = open(&disk);
    assert_eq!(rec.next_index, 14);
    assert_eq!(wal.read_entries(5, 6).unwrap()[0], entry(5, 1, 10));
}

#[test]
fn a_failed_inline_fsync_fails_that_append_and_every_later_one() {
    let disk = SimDisk::new();
    let (wal, _) = open(&disk);
    append_range(&wal, 1, 5, 1);
    disk.fail_next_sync();
    let failed = wal.append_inline(vec![entry_record(5, 1, 10)]).wait();
    assert!(matches!(failed, Err(WalError::Fatal { .. })), "{failed:?}");
    let later = wal.append_inline(vec![entry_record(5, 1, 10)]).wait();
    assert!(matches!(later, Err(WalError::Fatal { .. })), "{later:?}");
    let queued = wal.append(vec![entry_record(5, 1, 10)]).wait();
    assert!(matches!(queued, Err(WalError::Fatal { .. })), "{queued:?}");
}

#[test]
fn inline_and_queued_appenders_on_many_threads_keep_every_append() {
    let tmp = tempfile::tempdir().unwrap();
    let config = WalConfig {
        segment_bytes: 64 << 10,
        ..WalConfig::default()
    };
    let (wal, _) = Wal::open(tmp.path(), config.clone()).unwrap();
    let next = Arc::new(std::sync::Mutex::new(1u64));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (wal, next) = (wal.clone(), next.clone());
            std::thread::spawn(move || {
                for _ in 0..100 {
                    // The index is taken and the append called under one lock, so calls
                    // happen in index order; each waits outside it.
                    let pending = {
                        let mut n = next.lock().unwrap();
                        let record = vec![entry_record(*n, 1, 100)];
                        *n += 1;
                        if t % 2 == 0 {
                            wal.append_inline(record)
                        } else {
                            wal.append(record)
                        }
                    };
                    pending.wait().unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    drop(wal);
    let (wal, rec) = Wal::open(tmp.path(), config).unwrap();
    assert_eq!(rec.next_index, 401);
    for (i, e) in wal.read_entries(1, 401).unwrap().iter().enumerate() {
        assert_eq!(*e, entry(i as u64 + 1, 1, 100));
    }
}

/// The simulated disk's segment files.
fn segment_count(disk: &SimDisk) -> usize {
    disk.file_names()
        .iter()
        .filter(|n| n.ends_with(".wal"))
        .count()
}

/// Appends entries from `*next` on until the log has `segments` segments.
fn append_until_segments(wal: &Wal, disk: &SimDisk, next: &mut u64, segments: usize) {
    while segment_count(disk) < segments {
        wal.append(vec![entry_record(*next, 1, 100)])
            .wait()
            .expect("append");
        *next += 1;
    }
}

#[test]
fn a_spare_that_could_not_be_made_leaves_rotation_to_create_the_segment() {
    let disk = SimDisk::new();
    let (wal, _) = open(&disk);
    let mut next = 1;
    // The first rotation takes the spare made at open; making the next spare fails.
    disk.fail_next_create();
    append_until_segments(&wal, &disk, &mut next, 2);
    assert!(!disk.file_names().iter().any(|n| n == "next-segment.tmp"));
    // The second rotation has no spare and creates its segment itself.
    append_until_segments(&wal, &disk, &mut next, 3);
    drop(wal);
    let (wal, rec) = open(&disk);
    assert_eq!(rec.next_index, next);
    for (i, e) in wal.read_entries(1, next).unwrap().iter().enumerate() {
        assert_eq!(*e, entry(i as u64 + 1, 1, 100));
    }
}

#[test]
fn a_segment_that_cannot_be_created_makes_the_log_fatal_naming_it() {
    let disk = SimDisk::new();
    let (wal, _) = open(&disk);
    let mut next = 1;
    disk.fail_next_create();
    append_until_segments(&wal, &disk, &mut next, 2);
    // No spare, and the rotation's own creation fails too.
    disk.fail_next_create();
    let failed = loop {
        match wal.append(vec![entry_record(next, 1, 100)]).wait() {
            Ok(()) => next += 1,
            Err(err) => break err,
        }
    };
    match &failed {
        WalError::Fatal { file, .. } => assert!(file.ends_with(".wal.tmp"), "{file}"),
        other => panic!("expected a fatal error, got {other:?}"),
    }
    let later = wal.append_inline(vec![entry_record(next, 1, 100)]).wait();
    assert!(matches!(later, Err(WalError::Fatal { .. })), "{later:?}");
    drop(wal);
    let (_, rec) = open(&disk);
    assert_eq!(rec.next_index, next, "every acknowledged append is there");
}
