//! The one narrow door between the engine and its file, so that tests can stand a simulated
//! disk (see [`sim`]) in front of it and cut the power at any write.

pub mod sim;

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::sync::Arc;

/// Read-only bytes of the file as mapped at some moment; readers borrow pages from it.
pub trait Mapping: Send + Sync {
    /// The mapped bytes (the whole file length at mapping time).
    fn bytes(&self) -> &[u8];
}

/// Everything the engine does to its file. Writes only become durable at `sync_data`.
pub trait StorageFile: Send + Sync {
    /// Reads exactly `buf.len()` bytes at `offset`.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()>;
    /// Writes all of `buf` at `offset` (not durable until [`StorageFile::sync_data`]).
    fn write_all_at(&self, buf: &[u8], offset: u64) -> std::io::Result<()>;
    /// Makes every earlier write and length change durable (`fdatasync`).
    fn sync_data(&self) -> std::io::Result<()>;
    /// Sets the file length. The engine only ever grows the file while it is open.
    fn set_len(&self, len_bytes: u64) -> std::io::Result<()>;
    /// Current length in bytes.
    fn len_bytes(&self) -> std::io::Result<u64>;
    /// Maps the whole current length read-only.
    fn map(&self) -> std::io::Result<Arc<dyn Mapping>>;
    /// Whether an existing mapping shows later writes within its length (true for a shared
    /// mmap). If false the engine maps again after every commit.
    fn mapping_tracks_writes(&self) -> bool;
}

/// A real file, mapped with `mmap`, locked with `flock` against a second opener.
pub struct OsFile {
    file: File,
}

struct OsMapping(memmap2::Mmap);

impl Mapping for OsMapping {
    fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl OsFile {
    /// Opens (creating if missing) `path` for reading and writing and locks it exclusively.
    /// Returns `Ok(None)` if another handle holds the lock.
    pub fn open(path: &Path) -> std::io::Result<Option<OsFile>> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        // SAFETY: `flock` on a file descriptor we own; it touches no memory of ours.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                return Ok(None);
            }
            return Err(err);
        }
        Ok(Some(OsFile { file }))
    }
}

impl StorageFile for OsFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> std::io::Result<()> {
        self.file.write_all_at(buf, offset)
    }
    fn sync_data(&self) -> std::io::Result<()> {
        self.file.sync_data()
    }
    fn set_len(&self, len_bytes: u64) -> std::io::Result<()> {
        let current = self.file.metadata()?.len();
        if len_bytes > current {
            // Allocate the blocks now, so that syncing later writes need not allocate them.
            let start = libc::off_t::try_from(current).map_err(std::io::Error::other)?;
            let grow = libc::off_t::try_from(len_bytes - current).map_err(std::io::Error::other)?;
            // SAFETY: `fallocate` on a file descriptor we own; it touches no memory of ours.
            let rc = unsafe { libc::fallocate(self.file.as_raw_fd(), 0, start, grow) };
            if rc == 0 {
                return Ok(());
            }
            // Not every file system can preallocate; a plain length change is still correct.
        }
        self.file.set_len(len_bytes)
    }
    fn len_bytes(&self) -> std::io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }
    fn map(&self) -> std::io::Result<Arc<dyn Mapping>> {
        // SAFETY: the mmap invariant in the crate docs: the mapping is read-only, the file is
        // locked against other openers (I4), never shrinks while open (I3), and no page a
        // reader can reach is written while that reader lives (I1, I2).
        let map = unsafe { memmap2::MmapOptions::new().map(&self.file)? };
        Ok(Arc::new(OsMapping(map)))
    }
    fn mapping_tracks_writes(&self) -> bool {
        true
    }
}
