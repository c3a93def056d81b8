//! Snapshots between members, the loop's side: starting a transfer to a follower Raft says
//! needs one, and installing one a leader sent (the member then restarts on it). Methods of
//! the raft loop, kept apart from its message handling; the transfer itself is
//! `snapshot_send` and `snapshot_receive`.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::oneshot;
use tonic::Status;

use super::member::Command;
use super::raft_loop::{RaftLoop, SNAPSHOT_INSTALLED};

impl RaftLoop {
    /// Raft asks for a snapshot to `to`: a copy of the key space as it stands now goes out
    /// (its position is its own applied index, not Raft's last compaction point: a newer
    /// state serves the follower as well, as etcd sends its current backend).
    pub(super) fn send_snapshot(&mut self, to: u64) {
        if !self.snapshots.in_flight.insert(to) {
            return;
        }
        let store = Arc::clone(&self.store);
        let route = super::snapshot_send::Route {
            cluster_id: self.snapshots.cluster_id,
            from: self.member_id,
            to,
        };
        let ask = self.snapshots.commands.clone();
        let term_of: super::snapshot_send::TermLookup = Box::new(move |index| {
            let (reply, answer) = oneshot::channel();
            ask.try_send(Command::TermOf { index, reply }).ok()?;
            Some(answer)
        });
        let report = self.snapshots.commands.clone();
        let started = self.transport.send_snapshot(
            to,
            move |chunks| super::snapshot_send::produce(&store, route, &term_of, chunks),
            move |delivered| {
                // Waits for room in the queue (off the async threads): a lost report would
                // leave `to` marked in flight, and every later snapshot for it ignored.
                tokio::task::spawn_blocking(move || {
                    let _ = report.send(Command::ReportSnapshot { to, delivered });
                });
            },
        );
        if !started {
            // Reported (and `to` freed) once the backoff has passed.
            self.snapshots.retries.failed(to, Instant::now());
        } else {
            tracing::info!(to = format!("{to:x}"), "sending a snapshot");
        }
    }

    /// Raft's rule: a log that holds the snapshot's last entry, or has committed past it,
    /// catches up by appends (entries it holds may be committed; they must stay).
    pub(super) fn needs_snapshot(&self, meta: &cairn_raft::SnapshotMeta) -> bool {
        let commit = self.node.status().commit;
        let applied = self.published.applied.load(Ordering::Relaxed);
        let matching = cairn_raft::Storage::term(self.node.storage(), meta.index)
            .is_ok_and(|term| term == meta.term);
        meta.index > commit && meta.index > applied && !matching
    }

    /// Installs a received snapshot if the log does not already reach it; returns false
    /// (the loop stops, and the member restarts on the new key space) once it is installed.
    pub(super) fn install_snapshot(
        &mut self,
        meta: cairn_raft::SnapshotMeta,
        reply: oneshot::Sender<Result<bool, String>>,
    ) -> bool {
        if !self.needs_snapshot(&meta) {
            let _ = reply.send(Ok(false));
            return true;
        }
        let status = self.node.status();
        let hard_state = cairn_raft::HardState {
            term: status.term,
            vote: status.vote,
            commit: meta.index,
        };
        let index = meta.index;
        let installed = self
            .node
            .storage_mut()
            .install_snapshot(meta, hard_state)
            .map_err(|e| e.to_string())
            .and_then(|()| {
                super::snapshot_file::install_incoming(&self.snapshots.snap_dir)
                    .map_err(|e| e.to_string())
            });
        match installed {
            Ok(()) => {
                tracing::info!(
                    index,
                    "installed a snapshot from the leader; restarting on it"
                );
                let _ = reply.send(Ok(true));
                self.stop_with(
                    Status::unavailable("etcdserver: server stopped"),
                    SNAPSHOT_INSTALLED,
                );
                false
            }
            Err(reason) => {
                tracing::error!(%reason, "installing a snapshot failed; stopping");
                let _ = reply.send(Err(reason.clone()));
                self.stop_with(Status::unavailable("etcdserver: server stopped"), &reason);
                false
            }
        }
    }
}
