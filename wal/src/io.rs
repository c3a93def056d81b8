//! The one I/O layer every file operation of the log goes through, so a test layer
//! ([`crate::sim_disk::SimDisk`]) can simulate power loss; [`OsDir`] is the real one.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// One open segment file. Methods take `&self`: positional reads and writes need no cursor.
pub trait WalFile: Send + Sync {
    /// Fills `buf` from `offset`; an error if the file ends first.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
    /// Writes all of `buf` at `offset` (not durable until `sync_data`).
    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()>;
    /// Makes every completed write to this file durable (fdatasync).
    fn sync_data(&self) -> io::Result<()>;
    fn size(&self) -> io::Result<u64>;
    /// Grows (zero-filled) or shrinks the file.
    fn set_len(&self, len: u64) -> io::Result<()>;
}

/// The log's directory.
pub trait WalDir: Send + Sync {
    /// Names of the files in the directory.
    fn list(&self) -> io::Result<Vec<String>>;
    fn open(&self, name: &str) -> io::Result<Arc<dyn WalFile>>;
    /// Creates (or truncates) `name` and preallocates `len` zero bytes.
    fn create(&self, name: &str, len: u64) -> io::Result<Arc<dyn WalFile>>;
    /// Whether `create` is slow enough to be worth doing ahead of need on a helper thread
    /// (the simulated disk says no: its tests stay deterministic).
    fn prepare_ahead(&self) -> bool {
        false
    }
    /// `create`, giving up (and removing the file) once `cancel` turns true; a failed
    /// creation removes the file too.
    fn create_cancellable(
        &self,
        name: &str,
        len: u64,
        _cancel: &AtomicBool,
    ) -> io::Result<Arc<dyn WalFile>> {
        self.create(name, len)
    }
    fn rename(&self, from: &str, to: &str) -> io::Result<()>;
    fn remove(&self, name: &str) -> io::Result<()>;
    /// Makes creations, renames and removals so far durable (fsync of the directory).
    fn sync_dir(&self) -> io::Result<()>;
    /// A human-readable path of `name`, for error messages.
    fn describe(&self, name: &str) -> String;
}

/// A directory of the real file system, locked (`flock`) against a second process opening
/// the same log while this handle lives.
pub struct OsDir {
    path: PathBuf,
    /// Kept open to fsync the directory and to hold the lock.
    handle: File,
}

impl OsDir {
    /// Opens (creating it, durably, if needed) the directory at `path` and locks it.
    pub fn open(path: &Path) -> io::Result<OsDir> {
        if !path.exists() {
            std::fs::create_dir_all(path)?;
            // The new directory's own entry must survive a power loss with the log inside it.
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                File::open(parent)?.sync_all()?;
            }
        }
        let handle = File::open(path)?;
        // SAFETY: the descriptor belongs to `handle`, which outlives the call.
        let rc = unsafe { libc::flock(handle.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(
                e.kind(),
                format!("wal directory is locked by another process: {e}"),
            ));
        }
        Ok(OsDir {
            path: path.to_path_buf(),
            handle,
        })
    }
}

struct OsFile {
    file: File,
}

impl WalFile for OsFile {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }
    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        self.file.write_all_at(buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }
    fn size(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }
}

/// Zeros written per `write` while filling a segment.
const FILL_CHUNK_BYTES: usize = 1 << 20;
/// Zeros written between fdatasyncs while filling: a few megabytes per flush keep the fill
/// from holding up the active segment's fsyncs behind one long flush.
const FILL_SYNC_BYTES: u64 = 8 << 20;

/// Writes `len` zero bytes into `file` and makes them durable: appends then overwrite data
/// blocks and their fdatasync has no block allocation to commit (see `spare`). Stops with
/// `Interrupted` once `cancel` turns true.
fn fill_with_zeros(file: &File, len: u64, cancel: &AtomicBool) -> io::Result<()> {
    let zeros = vec![0u8; FILL_CHUNK_BYTES];
    let mut written = 0u64;
    let mut unsynced = 0u64;
    while written < len {
        if cancel.load(Ordering::Relaxed) {
            return Err(io::Error::new(
                io::ErrorKind::Interrupted,
                "segment fill cancelled",
            ));
        }
        let n = (len - written).min(FILL_CHUNK_BYTES as u64);
        // n <= FILL_CHUNK_BYTES, so the slice is in bounds.
        file.write_all_at(&zeros[..n as usize], written)?;
        written += n;
        unsynced += n;
        if unsynced >= FILL_SYNC_BYTES {
            file.sync_data()?;
            unsynced = 0;
        }
    }
    file.sync_data()
}

impl WalDir for OsDir {
    fn list(&self) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&self.path)? {
            if let Ok(name) = entry?.file_name().into_string() {
                names.push(name);
            }
        }
        Ok(names)
    }
    fn open(&self, name: &str) -> io::Result<Arc<dyn WalFile>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(self.path.join(name))?;
        Ok(Arc::new(OsFile { file }))
    }
    fn create(&self, name: &str, len: u64) -> io::Result<Arc<dyn WalFile>> {
        self.create_cancellable(name, len, &AtomicBool::new(false))
    }
    fn prepare_ahead(&self) -> bool {
        true
    }
    fn create_cancellable(
        &self,
        name: &str,
        len: u64,
        cancel: &AtomicBool,
    ) -> io::Result<Arc<dyn WalFile>> {
        let path = self.path.join(name);
        let filled = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .and_then(|file| fill_with_zeros(&file, len, cancel).map(|()| file));
        match filled {
            Ok(file) => Ok(Arc::new(OsFile { file })),
            Err(err) => {
                // A partial file would only take disk space until the next open.
                let _ = std::fs::remove_file(&path);
                Err(err)
            }
        }
    }
    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        std::fs::rename(self.path.join(from), self.path.join(to))
    }
    fn remove(&self, name: &str) -> io::Result<()> {
        std::fs::remove_file(self.path.join(name))
    }
    fn sync_dir(&self) -> io::Result<()> {
        self.handle.sync_all()
    }
    fn describe(&self, name: &str) -> String {
        self.path.join(name).display().to_string()
    }
}
