//! A simulated disk for power-loss tests: it remembers which writes were synced, can fail every
//! operation from a chosen one on (the moment the power goes), and then produces the image a
//! real disk might hold after the power comes back: every write since the last completed sync
//! dropped, kept, or torn at 512-byte sector boundaries, in any combination.

use std::sync::Arc;

use parking_lot::Mutex;

use super::{Mapping, StorageFile};

/// Granularity at which a disk may tear a write.
pub const SECTOR_BYTES: usize = 512;

/// A small deterministic generator (splitmix64) so simulations replay from their seed.
#[derive(Clone, Debug)]
pub struct SimRng(u64);

impl SimRng {
    /// A generator starting at `seed`.
    pub fn new(seed: u64) -> SimRng {
        SimRng(seed)
    }
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

#[derive(Clone, Debug)]
enum Op {
    Write { offset: u64, data: Vec<u8> },
    SetLen(u64),
}

#[derive(Default)]
struct SimState {
    durable: Vec<u8>,
    current: Vec<u8>,
    unsynced: Vec<Op>,
    ops_done: u64,
    fail_from_op: Option<u64>,
}

/// An in-memory file whose durability is modelled op by op.
pub struct SimDisk {
    state: Mutex<SimState>,
}

fn apply(image: &mut Vec<u8>, op: &Op) {
    match op {
        Op::Write { offset, data } => {
            let start = *offset as usize;
            let end = start + data.len();
            if image.len() < end {
                image.resize(end, 0);
            }
            image[start..end].copy_from_slice(data);
        }
        Op::SetLen(len) => image.resize(*len as usize, 0),
    }
}

fn power_cut() -> std::io::Error {
    std::io::Error::other("simulated power loss")
}

impl SimDisk {
    /// A disk whose durable content is `image`.
    pub fn new(image: Vec<u8>) -> Arc<SimDisk> {
        Arc::new(SimDisk {
            state: Mutex::new(SimState {
                durable: image.clone(),
                current: image,
                ..SimState::default()
            }),
        })
    }

    /// Operations (writes, syncs, length changes) performed so far.
    pub fn ops_done(&self) -> u64 {
        self.state.lock().ops_done
    }

    /// From operation number `op` on (counting from 0 at creation), every operation fails as if
    /// the machine lost power. A write that fails this way may still be partly on disk.
    pub fn cut_power_at_op(&self, op: u64) {
        self.state.lock().fail_from_op = Some(op);
    }

    /// Whether the power has been cut.
    pub fn power_is_cut(&self) -> bool {
        let state = self.state.lock();
        state.fail_from_op.is_some_and(|op| state.ops_done >= op)
    }

    /// What the disk might hold after the power returns: the synced image plus each later
    /// operation dropped, kept or (writes) torn by sector, chosen by `rng`.
    pub fn image_after_power_loss(&self, rng: &mut SimRng) -> Vec<u8> {
        let state = self.state.lock();
        let mut image = state.durable.clone();
        for op in &state.unsynced {
            match (op, rng.below(3)) {
                (_, 0) => {}
                (op, 1) => apply(&mut image, op),
                (Op::SetLen(_), _) => {}
                (Op::Write { offset, data }, _) => {
                    for (i, sector) in data.chunks(SECTOR_BYTES).enumerate() {
                        if rng.below(2) == 0 {
                            let part = Op::Write {
                                offset: offset + (i * SECTOR_BYTES) as u64,
                                data: sector.to_vec(),
                            };
                            apply(&mut image, &part);
                        }
                    }
                }
            }
        }
        image
    }

    /// The bytes a reader of the file sees now (synced or not).
    pub fn current_image(&self) -> Vec<u8> {
        self.state.lock().current.clone()
    }

    /// Counts an operation; fails it if the power is cut.
    fn begin_op(state: &mut SimState) -> std::io::Result<()> {
        let op = state.ops_done;
        state.ops_done += 1;
        if state.fail_from_op.is_some_and(|cut| op >= cut) {
            return Err(power_cut());
        }
        Ok(())
    }
}

struct SnapshotMapping(Vec<u8>);

impl Mapping for SnapshotMapping {
    fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl StorageFile for SimDisk {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        let state = self.state.lock();
        let start = usize::try_from(offset).map_err(std::io::Error::other)?;
        let src = state
            .current
            .get(start..start.saturating_add(buf.len()))
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> std::io::Result<()> {
        let mut state = self.state.lock();
        let op = Op::Write {
            offset,
            data: buf.to_vec(),
        };
        if let Err(e) = Self::begin_op(&mut state) {
            // The write was under way when the power went: some of its sectors may land.
            if state.fail_from_op == Some(state.ops_done - 1) {
                state.unsynced.push(op);
            }
            return Err(e);
        }
        apply(&mut state.current, &op);
        state.unsynced.push(op);
        Ok(())
    }

    fn sync_data(&self) -> std::io::Result<()> {
        let mut state = self.state.lock();
        Self::begin_op(&mut state)?;
        let ops = std::mem::take(&mut state.unsynced);
        for op in &ops {
            apply(&mut state.durable, op);
        }
        Ok(())
    }

    fn set_len(&self, len_bytes: u64) -> std::io::Result<()> {
        let mut state = self.state.lock();
        Self::begin_op(&mut state)?;
        let op = Op::SetLen(len_bytes);
        apply(&mut state.current, &op);
        state.unsynced.push(op);
        Ok(())
    }

    fn len_bytes(&self) -> std::io::Result<u64> {
        Ok(self.state.lock().current.len() as u64)
    }

    fn map(&self) -> std::io::Result<Arc<dyn Mapping>> {
        Ok(Arc::new(SnapshotMapping(self.state.lock().current.clone())))
    }

    fn mapping_tracks_writes(&self) -> bool {
        false
    }
}
