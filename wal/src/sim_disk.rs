//! An in-memory disk for tests that can lose power: every write and directory change since
//! the last fsync is dropped, kept, or (for file data) kept per 512-byte sector at random.
//!
//! It implements [`WalDir`], so the log runs on it unchanged. It also counts mutating
//! operations and can "cut the power" at the n-th one (that operation and all later ones fail),
//! which is how the power-loss test picks its crash points.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::io::{WalDir, WalFile};

const SECTOR: usize = crate::format::SECTOR_BYTES as usize;

/// A small deterministic PRNG (SplitMix64) so simulations replay exactly from a seed.
#[derive(Debug, Clone)]
pub struct SimRng(u64);

impl SimRng {
    pub fn new(seed: u64) -> SimRng {
        SimRng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0, "empty range");
        self.next_u64() % n.max(1)
    }
    pub fn chance(&mut self, numerator: u64, denominator: u64) -> bool {
        self.below(denominator) < numerator
    }
}

/// What a power loss does with state that was not yet made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossMode {
    /// Every unsynced sector, file length and directory change independently survives or not.
    Random,
    /// Nothing unsynced survives.
    DropUnsynced,
    /// Everything written survives (as if the OS flushed just in time).
    KeepUnsynced,
}

#[derive(Debug, Clone)]
enum DirOp {
    Create { name: String, id: u64 },
    Rename { from: String, to: String },
    Remove { name: String },
}

#[derive(Debug, Default)]
struct SimFile {
    live: Vec<u8>,
    durable: Vec<u8>,
    dirty_sectors: BTreeSet<usize>,
    len_dirty: bool,
}

#[derive(Debug, Default)]
struct SimState {
    files: HashMap<u64, SimFile>,
    next_id: u64,
    live_names: BTreeMap<String, u64>,
    durable_names: BTreeMap<String, u64>,
    pending_dir_ops: Vec<DirOp>,
    mutating_ops: u64,
    power_cut_at_op: Option<u64>,
    fail_next_sync: bool,
    fail_next_write: bool,
    fail_next_create: bool,
}

impl SimState {
    /// Counts one mutating operation, failing it if the power is (now) off.
    fn spend_op(&mut self) -> io::Result<()> {
        if let Some(limit) = self.power_cut_at_op {
            if self.mutating_ops >= limit {
                return Err(io::Error::other("simulated power loss"));
            }
        }
        self.mutating_ops += 1;
        Ok(())
    }

    fn file_mut(&mut self, id: u64) -> io::Result<&mut SimFile> {
        self.files
            .get_mut(&id)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "file vanished in a power loss"))
    }
}

/// The simulated disk; clones share it.
#[derive(Clone, Default)]
pub struct SimDisk {
    state: Arc<Mutex<SimState>>,
    sync_gate: Arc<SyncGate>,
}

/// Lets a test hold `sync_data` calls in flight, to observe what queues up behind them.
#[derive(Default)]
struct SyncGate {
    state: Mutex<GateState>,
    changed: std::sync::Condvar,
}

#[derive(Default)]
struct GateState {
    closed: bool,
    waiting: usize,
}

impl SimDisk {
    pub fn new() -> SimDisk {
        SimDisk::default()
    }

    fn lock(&self) -> MutexGuard<'_, SimState> {
        // A panicking test thread must not hide the disk from the checks that follow.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The directory to hand to [`crate::Wal::open_dir`].
    pub fn dir(&self) -> Arc<dyn WalDir> {
        Arc::new(SimDir { disk: self.clone() })
    }

    /// Mutating operations performed since the last power loss.
    pub fn mutating_ops(&self) -> u64 {
        self.lock().mutating_ops
    }

    /// After `ops` more mutating operations, every further one fails (the machine died).
    pub fn cut_power_after(&self, ops: u64) {
        let mut s = self.lock();
        s.power_cut_at_op = Some(s.mutating_ops + ops);
    }

    /// From now on `sync_data` blocks (in flight) until [`SimDisk::open_sync_gate`].
    pub fn close_sync_gate(&self) {
        self.sync_gate
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .closed = true;
    }

    /// Lets held and future `sync_data` calls proceed.
    pub fn open_sync_gate(&self) {
        self.sync_gate
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .closed = false;
        self.sync_gate.changed.notify_all();
    }

    /// Number of `sync_data` calls currently held by the closed gate.
    pub fn syncs_held(&self) -> usize {
        self.sync_gate
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .waiting
    }

    fn pass_sync_gate(&self) {
        let gate = &self.sync_gate;
        let mut g = gate.state.lock().unwrap_or_else(|e| e.into_inner());
        g.waiting += 1;
        while g.closed {
            g = gate.changed.wait(g).unwrap_or_else(|e| e.into_inner());
        }
        g.waiting -= 1;
    }

    /// The next `sync_data` fails with an I/O error.
    pub fn fail_next_sync(&self) {
        self.lock().fail_next_sync = true;
    }

    /// The next `write_at` fails with an I/O error.
    pub fn fail_next_write(&self) {
        self.lock().fail_next_write = true;
    }

    /// The next file creation fails with an I/O error (a full disk, say).
    pub fn fail_next_create(&self) {
        self.lock().fail_next_create = true;
    }

    /// Simulates losing power and rebooting: unsynced state is resolved per `mode`, the power
    /// comes back, and files no longer named in the directory are gone.
    pub fn power_loss(&self, mode: LossMode, rng: &mut SimRng) {
        let mut s = self.lock();
        let keep = |rng: &mut SimRng| match mode {
            LossMode::Random => rng.chance(1, 2),
            LossMode::DropUnsynced => false,
            LossMode::KeepUnsynced => true,
        };
        let ids: Vec<u64> = s.files.keys().copied().collect();
        for id in ids {
            let Some(f) = s.files.get_mut(&id) else {
                continue;
            };
            let new_len = if f.len_dirty && keep(rng) {
                f.live.len()
            } else {
                f.durable.len()
            };
            let mut content = f.durable.clone();
            content.resize(new_len, 0);
            for &sector in &f.dirty_sectors {
                let start = sector * SECTOR;
                let end = (start + SECTOR).min(new_len).min(f.live.len());
                if start < end && keep(rng) {
                    content[start..end].copy_from_slice(&f.live[start..end]);
                }
            }
            f.live = content.clone();
            f.durable = content;
            f.dirty_sectors.clear();
            f.len_dirty = false;
        }
        let ops = std::mem::take(&mut s.pending_dir_ops);
        let mut names = s.durable_names.clone();
        for op in ops {
            if !keep(rng) {
                continue;
            }
            match op {
                DirOp::Create { name, id } => {
                    names.insert(name, id);
                }
                DirOp::Rename { from, to } => {
                    if let Some(id) = names.remove(&from) {
                        names.insert(to, id);
                    }
                }
                DirOp::Remove { name } => {
                    names.remove(&name);
                }
            }
        }
        let alive: BTreeSet<u64> = names.values().copied().collect();
        s.files.retain(|id, _| alive.contains(id));
        s.live_names = names.clone();
        s.durable_names = names;
        s.mutating_ops = 0;
        s.power_cut_at_op = None;
        s.fail_next_sync = false;
        s.fail_next_write = false;
        s.fail_next_create = false;
    }

    /// Names in the (live) directory.
    pub fn file_names(&self) -> Vec<String> {
        self.lock().live_names.keys().cloned().collect()
    }

    /// The live content of a file, for tests that inspect or damage it.
    pub fn read_file(&self, name: &str) -> Option<Vec<u8>> {
        let s = self.lock();
        let id = s.live_names.get(name)?;
        s.files.get(id).map(|f| f.live.clone())
    }

    /// Replaces a file's content durably (a test damaging the disk behind the log's back).
    pub fn overwrite_file(&self, name: &str, content: Vec<u8>) -> bool {
        let mut s = self.lock();
        let Some(&id) = s.live_names.get(name) else {
            return false;
        };
        let Some(f) = s.files.get_mut(&id) else {
            return false;
        };
        f.live = content.clone();
        f.durable = content;
        f.dirty_sectors.clear();
        f.len_dirty = false;
        true
    }

    /// Removes a file durably.
    pub fn delete_file(&self, name: &str) -> bool {
        let mut s = self.lock();
        let found = s.live_names.remove(name).is_some();
        s.durable_names.remove(name);
        found
    }
}

struct SimDir {
    disk: SimDisk,
}

struct SimFileHandle {
    disk: SimDisk,
    id: u64,
}

impl WalFile for SimFileHandle {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let mut s = self.disk.lock();
        let f = s.file_mut(self.id)?;
        let start = usize::try_from(offset).map_err(io::Error::other)?;
        let end = start.saturating_add(buf.len());
        if end > f.live.len() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "read past end of file",
            ));
        }
        buf.copy_from_slice(&f.live[start..end]);
        Ok(())
    }

    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        let mut s = self.disk.lock();
        s.spend_op()?;
        if std::mem::take(&mut s.fail_next_write) {
            return Err(io::Error::other("simulated write error"));
        }
        let f = s.file_mut(self.id)?;
        let start = usize::try_from(offset).map_err(io::Error::other)?;
        let end = start + buf.len();
        if end > f.live.len() {
            f.live.resize(end, 0);
            f.len_dirty = true;
        }
        f.live[start..end].copy_from_slice(buf);
        if !buf.is_empty() {
            for sector in start / SECTOR..=(end - 1) / SECTOR {
                f.dirty_sectors.insert(sector);
            }
        }
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        self.disk.pass_sync_gate();
        let mut s = self.disk.lock();
        s.spend_op()?;
        if std::mem::take(&mut s.fail_next_sync) {
            return Err(io::Error::other("simulated fsync error"));
        }
        let f = s.file_mut(self.id)?;
        let len = f.live.len();
        f.durable.resize(len, 0);
        for &sector in &f.dirty_sectors {
            let start = sector * SECTOR;
            let end = (start + SECTOR).min(len);
            if start < end {
                f.durable[start..end].copy_from_slice(&f.live[start..end]);
            }
        }
        f.dirty_sectors.clear();
        f.len_dirty = false;
        Ok(())
    }

    fn size(&self) -> io::Result<u64> {
        let mut s = self.disk.lock();
        Ok(s.file_mut(self.id)?.live.len() as u64)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut s = self.disk.lock();
        s.spend_op()?;
        let f = s.file_mut(self.id)?;
        let len = usize::try_from(len).map_err(io::Error::other)?;
        f.live.resize(len, 0);
        f.len_dirty = true;
        Ok(())
    }
}

impl WalDir for SimDir {
    fn list(&self) -> io::Result<Vec<String>> {
        Ok(self.disk.file_names())
    }

    fn open(&self, name: &str) -> io::Result<Arc<dyn WalFile>> {
        let s = self.disk.lock();
        let id = *s
            .live_names
            .get(name)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, name.to_string()))?;
        Ok(Arc::new(SimFileHandle {
            disk: self.disk.clone(),
            id,
        }))
    }

    fn create(&self, name: &str, len: u64) -> io::Result<Arc<dyn WalFile>> {
        let mut s = self.disk.lock();
        s.spend_op()?;
        if std::mem::take(&mut s.fail_next_create) {
            return Err(io::Error::other("simulated create error"));
        }
        let len = usize::try_from(len).map_err(io::Error::other)?;
        let id = s.next_id;
        s.next_id += 1;
        s.files.insert(
            id,
            SimFile {
                live: vec![0; len],
                durable: Vec::new(),
                dirty_sectors: BTreeSet::new(),
                len_dirty: true,
            },
        );
        s.live_names.insert(name.to_string(), id);
        s.pending_dir_ops.push(DirOp::Create {
            name: name.to_string(),
            id,
        });
        Ok(Arc::new(SimFileHandle {
            disk: self.disk.clone(),
            id,
        }))
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let mut s = self.disk.lock();
        s.spend_op()?;
        let id = s
            .live_names
            .remove(from)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, from.to_string()))?;
        s.live_names.insert(to.to_string(), id);
        s.pending_dir_ops.push(DirOp::Rename {
            from: from.to_string(),
            to: to.to_string(),
        });
        Ok(())
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        let mut s = self.disk.lock();
        s.spend_op()?;
        s.live_names
            .remove(name)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, name.to_string()))?;
        s.pending_dir_ops.push(DirOp::Remove {
            name: name.to_string(),
        });
        Ok(())
    }

    fn sync_dir(&self) -> io::Result<()> {
        let mut s = self.disk.lock();
        s.spend_op()?;
        s.pending_dir_ops.clear();
        s.durable_names = s.live_names.clone();
        Ok(())
    }

    fn describe(&self, name: &str) -> String {
        format!("sim:{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synced_data_and_directory_entries_survive_power_loss() {
        let disk = SimDisk::new();
        let dir = disk.dir();
        let f = dir.create("a", 1024).unwrap();
        f.write_at(0, b"durable").unwrap();
        f.sync_data().unwrap();
        dir.sync_dir().unwrap();
        f.write_at(600, b"volatile").unwrap();
        disk.power_loss(LossMode::DropUnsynced, &mut SimRng::new(1));
        let content = disk.read_file("a").unwrap();
        assert_eq!(&content[0..7], b"durable");
        assert_eq!(&content[600..608], &[0; 8]);
    }

    #[test]
    fn unsynced_directory_entries_can_vanish() {
        let disk = SimDisk::new();
        let dir = disk.dir();
        let f = dir.create("a", 512).unwrap();
        f.write_at(0, b"x").unwrap();
        f.sync_data().unwrap();
        disk.power_loss(LossMode::DropUnsynced, &mut SimRng::new(1));
        assert!(disk.file_names().is_empty());
    }

    #[test]
    fn random_loss_keeps_each_unsynced_sector_whole_or_not_at_all() {
        for seed in 0..50 {
            let disk = SimDisk::new();
            let dir = disk.dir();
            let f = dir.create("a", 4096).unwrap();
            f.sync_data().unwrap();
            dir.sync_dir().unwrap();
            f.write_at(0, &[7u8; 4096]).unwrap();
            disk.power_loss(LossMode::Random, &mut SimRng::new(seed));
            let c = disk.read_file("a").unwrap();
            for sector in c.chunks(SECTOR) {
                assert!(sector.iter().all(|&b| b == 7) || sector.iter().all(|&b| b == 0));
            }
        }
    }

    #[test]
    fn power_cut_fails_the_nth_operation_and_all_later_ones() {
        let disk = SimDisk::new();
        let dir = disk.dir();
        let f = dir.create("a", 512).unwrap();
        disk.cut_power_after(1);
        assert!(f.write_at(0, b"ok").is_ok());
        assert!(f.sync_data().is_err());
        assert!(f.write_at(0, b"no").is_err());
    }
}
