//! The leader's side of a snapshot: a consistent copy of the key-space file streamed to one
//! follower in checksummed chunks while the leader keeps serving (the copy is a B+tree read
//! snapshot; writers carry on beside it). Memory stays bounded on both sides: one chunk being
//! filled, a few in flight.

use std::io::Write;
use std::sync::Arc;

use cairn_raft::SnapshotMeta;
use tokio::sync::{mpsc, oneshot};

use super::peer_codec::{meta_to_wire, PEER_PROTOCOL_VERSION};
use super::snapshot_file::position;
use crate::mvcc::MvccStore;
use crate::proto::cairn::peer::v1::SnapshotChunk;
use crate::storage::BtreeBackend;

/// Bytes of file per chunk.
pub const CHUNK_BYTES: usize = 1 << 20;
/// Chunks queued for the network before the copy waits.
pub const CHUNKS_IN_FLIGHT: usize = 4;

/// Who sends to whom, for every chunk's header.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    pub cluster_id: u64,
    pub from: u64,
    pub to: u64,
}

/// Asks the Raft loop for the term of a log index (the copy knows only its index).
pub type TermLookup = Box<dyn Fn(u64) -> Option<oneshot::Receiver<Option<u64>>> + Send>;

/// Fills chunks from `snapshot_to`'s byte stream and hands each to the network.
struct ChunkWriter {
    route: Route,
    chunks: mpsc::Sender<SnapshotChunk>,
    buffer: Vec<u8>,
    offset: u64,
    meta: Option<SnapshotMeta>,
}

impl ChunkWriter {
    fn send(&mut self, last: bool) -> std::io::Result<()> {
        let data = std::mem::replace(&mut self.buffer, Vec::with_capacity(CHUNK_BYTES));
        let chunk = SnapshotChunk {
            protocol_version: PEER_PROTOCOL_VERSION,
            cluster_id: self.route.cluster_id,
            from: self.route.from,
            to: self.route.to,
            meta: self.meta.take().as_ref().map(meta_to_wire),
            offset: self.offset,
            crc32: crc32fast::hash(&data),
            last,
            data,
        };
        self.offset += chunk.data.len() as u64;
        #[cfg(feature = "failpoints")]
        crate::failpoints::reach("snapshot-send");
        self.chunks.blocking_send(chunk).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "snapshot stream closed")
        })
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let room = CHUNK_BYTES - self.buffer.len();
        let taken = room.min(bytes.len());
        self.buffer.extend_from_slice(&bytes[..taken]);
        if self.buffer.len() == CHUNK_BYTES {
            self.send(false)?;
        }
        Ok(taken)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Copies the key-space file into `chunks` (on a blocking thread: it reads the whole file).
/// Returns the snapshot's position, or why it could not be taken.
pub fn produce(
    store: &Arc<MvccStore<BtreeBackend>>,
    route: Route,
    term_of: &TermLookup,
    chunks: mpsc::Sender<SnapshotChunk>,
) -> Result<SnapshotMeta, String> {
    let db = store.backend().database();
    let path = db
        .path()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default();
    let read = db.begin_read().map_err(|e| e.to_string())?;
    let (index, conf_state) = position(&read, &path).map_err(|e| e.to_string())?;
    let term = term_of(index)
        .and_then(|answer| answer.blocking_recv().ok().flatten())
        .ok_or_else(|| format!("the term of applied index {index} is not in the log"))?;
    let meta = SnapshotMeta {
        index,
        term,
        conf_state,
    };
    let mut writer = ChunkWriter {
        route,
        chunks,
        buffer: Vec::with_capacity(CHUNK_BYTES),
        offset: 0,
        meta: Some(meta.clone()),
    };
    read.snapshot_to(&mut writer).map_err(|e| e.to_string())?;
    writer.send(true).map_err(|e| e.to_string())?;
    Ok(meta)
}
