//! The follower's side of a snapshot: chunks checked one by one (order, addressee, checksum)
//! and written straight to `db.incoming`, the whole copy checked and sealed, then handed to
//! the Raft loop, which installs it only if the member still needs it.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use cairn_raft::SnapshotMeta;
use tokio::io::AsyncWriteExt;
use tokio::sync::oneshot;
use tonic::{Status, Streaming};

use super::peer_codec::{meta_from_wire, PEER_PROTOCOL_VERSION};
use super::snapshot_file::{seal_incoming, INCOMING_FILE};
use crate::proto::cairn::peer::v1::{SnapshotAck, SnapshotChunk};

/// How long the receiver waits for the next chunk before giving up on the sender.
const CHUNK_IDLE: std::time::Duration = std::time::Duration::from_secs(30);

/// What receiving needs to know about this member.
pub struct SnapshotInbox {
    pub member_id: u64,
    pub cluster_id: u64,
    /// `member/snap`, where `db` lives.
    pub snap_dir: PathBuf,
    /// Set while a snapshot is being received (one at a time).
    pub receiving: Arc<AtomicBool>,
}

/// Clears the receiving flag however receiving ends.
struct Receiving(Arc<AtomicBool>);

impl Drop for Receiving {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl SnapshotInbox {
    /// Receives one snapshot. `wanted` says, from the position in the first chunk, whether
    /// the member needs it at all; `install` hands the sealed copy to the Raft loop and says
    /// whether it was installed (false: the member no longer needed it). A copy that is not
    /// installed is removed.
    pub async fn receive(
        &self,
        stream: Streaming<SnapshotChunk>,
        is_removed: impl Fn(u64) -> bool,
        wanted: impl AsyncFnOnce(&SnapshotMeta) -> bool,
        install: impl FnOnce(SnapshotMeta) -> Option<oneshot::Receiver<Result<bool, String>>>,
    ) -> Result<SnapshotAck, Status> {
        if self.receiving.swap(true, Ordering::AcqRel) {
            return Err(Status::unavailable("a snapshot is already being received"));
        }
        let _receiving = Receiving(Arc::clone(&self.receiving));
        let path = self.snap_dir.join(INCOMING_FILE);
        let outcome = self
            .receive_into(&path, stream, is_removed, wanted, install)
            .await;
        if !matches!(&outcome, Ok(ack) if ack.reason.is_empty()) {
            let _ = tokio::fs::remove_file(&path).await;
        }
        outcome
    }

    async fn receive_into(
        &self,
        path: &std::path::Path,
        mut stream: Streaming<SnapshotChunk>,
        is_removed: impl Fn(u64) -> bool,
        wanted: impl AsyncFnOnce(&SnapshotMeta) -> bool,
        install: impl FnOnce(SnapshotMeta) -> Option<oneshot::Receiver<Result<bool, String>>>,
    ) -> Result<SnapshotAck, Status> {
        let not_needed = |bytes_received| SnapshotAck {
            bytes_received,
            accepted: true,
            reason: "not needed: the log already reaches the snapshot".to_string(),
        };
        let path = path.to_path_buf();
        let mut file = tokio::fs::File::create(&path)
            .await
            .map_err(|e| Status::internal(format!("creating {}: {e}", path.display())))?;
        let mut meta = None;
        let mut offset = 0u64;
        let mut finished = false;
        let mut wanted = Some(wanted);
        loop {
            // A sender that vanished without a reset must not hold the receiver forever.
            let next = tokio::time::timeout(CHUNK_IDLE, stream.message())
                .await
                .map_err(|_| Status::deadline_exceeded("no snapshot chunk for 30 s"))??;
            let Some(chunk) = next else { break };
            self.check(&chunk, offset, &is_removed)?;
            if offset == 0 {
                meta = chunk.meta.map(meta_from_wire);
                let Some(announced) = &meta else {
                    return Err(Status::invalid_argument(
                        "the first snapshot chunk does not say where it stands",
                    ));
                };
                if let Some(wanted) = wanted.take() {
                    if !wanted(announced).await {
                        return Ok(not_needed(0));
                    }
                }
            }
            file.write_all(&chunk.data)
                .await
                .map_err(|e| Status::internal(format!("writing {}: {e}", path.display())))?;
            offset += chunk.data.len() as u64;
            if chunk.last {
                finished = true;
                break;
            }
        }
        let Some(meta) = meta.filter(|_| finished) else {
            return Err(Status::invalid_argument(
                "the snapshot stream ended before its last chunk, or without its position",
            ));
        };
        file.sync_all()
            .await
            .map_err(|e| Status::internal(format!("syncing {}: {e}", path.display())))?;
        drop(file);
        let sealed_path = path.clone();
        let sealed_meta = meta.clone();
        let sealed = tokio::task::spawn_blocking(move || seal_incoming(&sealed_path, &sealed_meta))
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        if let Err(err) = sealed {
            tracing::error!(%err, "refused a received snapshot");
            return Err(Status::data_loss(err.to_string()));
        }
        let outcome = match install(meta) {
            Some(answer) => answer
                .await
                .unwrap_or_else(|_| Err("the member stopped".to_string())),
            None => Err("the member is stopping".to_string()),
        };
        match outcome {
            Ok(true) => Ok(SnapshotAck {
                bytes_received: offset,
                accepted: true,
                reason: String::new(),
            }),
            Ok(false) => Ok(not_needed(offset)),
            Err(reason) => Err(Status::unavailable(reason)),
        }
    }

    fn check(
        &self,
        chunk: &SnapshotChunk,
        offset: u64,
        is_removed: &impl Fn(u64) -> bool,
    ) -> Result<(), Status> {
        if chunk.protocol_version != PEER_PROTOCOL_VERSION {
            return Err(Status::failed_precondition(format!(
                "peer protocol version {} not supported (local version {PEER_PROTOCOL_VERSION})",
                chunk.protocol_version
            )));
        }
        if chunk.cluster_id != self.cluster_id || chunk.to != self.member_id {
            return Err(Status::invalid_argument(format!(
                "snapshot for member {:x} of cluster {:x} sent to member {:x} of cluster {:x}",
                chunk.to, chunk.cluster_id, self.member_id, self.cluster_id
            )));
        }
        if is_removed(chunk.from) {
            return Err(Status::permission_denied(format!(
                "member {:x} was removed from the cluster",
                chunk.from
            )));
        }
        if chunk.offset != offset {
            return Err(Status::invalid_argument(format!(
                "snapshot chunk at offset {}, expected {offset}",
                chunk.offset
            )));
        }
        if crc32fast::hash(&chunk.data) != chunk.crc32 {
            return Err(Status::data_loss(format!(
                "snapshot chunk at offset {offset} fails its checksum"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inbox() -> SnapshotInbox {
        SnapshotInbox {
            member_id: 7,
            cluster_id: 99,
            snap_dir: PathBuf::new(),
            receiving: Arc::default(),
        }
    }

    fn chunk(offset: u64, data: &[u8]) -> SnapshotChunk {
        SnapshotChunk {
            protocol_version: PEER_PROTOCOL_VERSION,
            cluster_id: 99,
            from: 1,
            to: 7,
            meta: None,
            offset,
            data: data.to_vec(),
            last: false,
            crc32: crc32fast::hash(data),
        }
    }

    #[test]
    fn chunks_out_of_order_damaged_misaddressed_or_from_removed_members_are_refused() {
        let inbox = inbox();
        let nobody_removed = |_: u64| false;
        assert!(inbox.check(&chunk(0, b"page"), 0, &nobody_removed).is_ok());
        let skipped = inbox
            .check(&chunk(8, b"page"), 4, &nobody_removed)
            .unwrap_err();
        assert!(skipped.message().contains("expected 4"), "{skipped:?}");
        let mut damaged = chunk(0, b"page");
        damaged.data[0] ^= 1;
        let damaged = inbox.check(&damaged, 0, &nobody_removed).unwrap_err();
        assert_eq!(damaged.code(), tonic::Code::DataLoss);
        let mut elsewhere = chunk(0, b"page");
        elsewhere.to = 8;
        assert!(inbox.check(&elsewhere, 0, &nobody_removed).is_err());
        let removed = inbox
            .check(&chunk(0, b"page"), 0, &|id| id == 1)
            .unwrap_err();
        assert_eq!(removed.code(), tonic::Code::PermissionDenied);
    }
}
