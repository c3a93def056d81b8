//! The key-space file as a Raft snapshot. A leader sends a follower that is too far behind
//! (its next entry was compacted away) a consistent copy of its B+tree file, as etcd sends its
//! bbolt file; the copy says itself where it stands in the log: the applied index stored in it
//! and the membership its registry holds as of that index.
//!
//! The receiver keeps the copy as `member/snap/db.incoming` until it is installed:
//! 1. the copy is written, synced, opened and fully checked (every page checksum), its
//!    position compared with what the leader announced, and the membership of that position
//!    recorded in it ([`seal_incoming`]);
//! 2. the WAL takes a snapshot marker at that index (the log restarts after it);
//! 3. the copy is renamed over `member/snap/db` and the directory synced;
//! 4. the member restarts on it.
//!
//! A crash between 2 and 3 leaves a WAL whose log starts past the key space's applied index;
//! the next start finishes the rename ([`finish_interrupted_install`]). A crash before 2
//! leaves a stale `db.incoming`, which is removed.

use std::path::{Path, PathBuf};

use cairn_btree::{Database, Durability, Options, ReadTxn};
use cairn_raft::{ConfState, SnapshotMeta};

use super::member::snapshot_conf_key;
use super::raft_log::encode_conf_state;
use super::registry::MemberRegistry;
use crate::mvcc::{Bucket, META_APPLIED_INDEX};

/// The received copy's name beside `db`.
pub const INCOMING_FILE: &str = "db.incoming";

/// Why a snapshot could not be taken, checked or installed.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot file {path}: {source}")]
    File {
        path: PathBuf,
        #[source]
        source: cairn_btree::Error,
    },
    #[error("snapshot file {path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn file_error(path: &Path) -> impl Fn(cairn_btree::Error) -> SnapshotError + '_ {
    move |source| SnapshotError::File {
        path: path.to_path_buf(),
        source,
    }
}

fn invalid(path: &Path, reason: impl Into<String>) -> SnapshotError {
    SnapshotError::Invalid {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// The applied index a read snapshot of the key-space file holds, and the membership as of
/// it (from the member registry in the same snapshot).
pub fn position(read: &ReadTxn<'_>, path: &Path) -> Result<(u64, ConfState), SnapshotError> {
    let applied = match read
        .get(Bucket::Meta.name(), META_APPLIED_INDEX)
        .map_err(file_error(path))?
    {
        Some(bytes) => <[u8; 8]>::try_from(bytes.as_slice())
            .map(u64::from_be_bytes)
            .map_err(|_| invalid(path, "the applied index is not 8 bytes"))?,
        None => 0,
    };
    let mut registry = MemberRegistry::default();
    let mut failure = None;
    for entry in read
        .range(Bucket::Meta.name(), ..)
        .map_err(file_error(path))?
    {
        let (key, value) = entry.map_err(file_error(path))?;
        if let Err(err) = registry.load_record(&key, &value) {
            failure = Some(err.to_string());
            break;
        }
    }
    if let Some(reason) = failure {
        return Err(invalid(path, reason));
    }
    Ok((applied, registry.conf_state()))
}

/// Checks a received copy against what the leader announced and records the membership of
/// its position in it, durably (step 1 above).
pub fn seal_incoming(path: &Path, meta: &SnapshotMeta) -> Result<(), SnapshotError> {
    let db = Database::open(
        path,
        Options {
            durability: Durability::Durable,
        },
    )
    .map_err(file_error(path))?;
    {
        let read = db.begin_read().map_err(file_error(path))?;
        read.check().map_err(file_error(path))?;
        let (index, conf) = position(&read, path)?;
        if index != meta.index {
            return Err(invalid(
                path,
                format!(
                    "holds applied index {index}, the leader announced {}",
                    meta.index
                ),
            ));
        }
        if conf != meta.conf_state {
            return Err(invalid(
                path,
                format!(
                    "holds membership {conf:?}, the leader announced {:?}",
                    meta.conf_state
                ),
            ));
        }
    }
    let mut write = db.begin_write().map_err(file_error(path))?;
    write
        .put(
            Bucket::Meta.name(),
            &snapshot_conf_key(meta.index),
            &encode_conf_state(&meta.conf_state),
        )
        .map_err(file_error(path))?;
    write.commit().map_err(file_error(path))?;
    Ok(())
}

/// Renames the sealed copy over the key-space file and syncs the directory (step 3).
pub fn install_incoming(snap_dir: &Path) -> Result<(), SnapshotError> {
    let incoming = snap_dir.join(INCOMING_FILE);
    let db = snap_dir.join("db");
    #[cfg(feature = "failpoints")]
    crate::failpoints::reach("snapshot-install");
    std::fs::rename(&incoming, &db).map_err(|source| SnapshotError::Io {
        action: "renaming the received snapshot over",
        path: db.clone(),
        source,
    })?;
    std::fs::File::open(snap_dir)
        .and_then(|dir| dir.sync_all())
        .map_err(|source| SnapshotError::Io {
            action: "syncing",
            path: snap_dir.to_path_buf(),
            source,
        })
}

/// At start, before the key space opens: finishes an install that the WAL recorded (its
/// snapshot marker is at the copy's index, past what the key space applied), or removes a
/// copy that never got that far.
pub fn finish_interrupted_install(
    snap_dir: &Path,
    wal_snapshot_index: Option<u64>,
) -> Result<(), SnapshotError> {
    let incoming = snap_dir.join(INCOMING_FILE);
    if !incoming.exists() {
        return Ok(());
    }
    let applied_of = |path: &Path| -> Result<u64, SnapshotError> {
        let db = Database::open(path, Options::default()).map_err(file_error(path))?;
        let read = db.begin_read().map_err(file_error(path))?;
        position(&read, path).map(|(index, _)| index)
    };
    let incoming_index = applied_of(&incoming).ok();
    let db = snap_dir.join("db");
    let current = if db.exists() { applied_of(&db)? } else { 0 };
    let recorded = incoming_index.is_some_and(|index| Some(index) == wal_snapshot_index);
    if recorded && current < incoming_index.unwrap_or(0) {
        tracing::warn!(
            index = incoming_index,
            "finishing a snapshot install interrupted by a stop"
        );
        return install_incoming(snap_dir);
    }
    std::fs::remove_file(&incoming).map_err(|source| SnapshotError::Io {
        action: "removing a stale received snapshot",
        path: incoming.clone(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mvcc::MvccStore;
    use crate::proto::cairn::entry::v1::MemberRecord;
    use crate::storage::BtreeBackend;
    use cairn_raft::ConfChange;

    /// A key-space file at `dir/db` applied up to `index`, with voters 1 and 2.
    fn key_space(dir: &Path, index: u64) -> PathBuf {
        let path = dir.join("db");
        let store =
            MvccStore::open(BtreeBackend::open(&path, Durability::Durable).unwrap()).unwrap();
        let mut registry = MemberRegistry::default();
        let mut batch = store.write().unwrap();
        for id in [1, 2] {
            let record = MemberRecord {
                id,
                ..MemberRecord::default()
            };
            registry
                .apply_change(&mut batch, ConfChange::AddVoter(id), Some(&record))
                .unwrap();
        }
        batch.set_applied_index(index).unwrap();
        batch.commit().unwrap();
        path
    }

    fn copy_to_incoming(db: &Path, dir: &Path) -> PathBuf {
        let source = Database::open(db, Options::default()).unwrap();
        let incoming = dir.join(INCOMING_FILE);
        let mut out = std::fs::File::create(&incoming).unwrap();
        source.begin_read().unwrap().snapshot_to(&mut out).unwrap();
        incoming
    }

    fn meta(index: u64) -> SnapshotMeta {
        SnapshotMeta {
            index,
            term: 3,
            conf_state: ConfState::with_voters([1, 2]),
        }
    }

    #[test]
    fn a_copy_is_sealed_only_where_the_leader_said_it_stands() {
        let leader = tempfile::tempdir().unwrap();
        let follower = tempfile::tempdir().unwrap();
        let db = key_space(leader.path(), 40);
        let incoming = copy_to_incoming(&db, follower.path());
        let refused = seal_incoming(&incoming, &meta(41)).unwrap_err();
        assert!(
            refused.to_string().contains("applied index 40"),
            "{refused}"
        );
        let mut other_members = meta(40);
        other_members.conf_state = ConfState::with_voters([1, 2, 3]);
        assert!(seal_incoming(&incoming, &other_members).is_err());
        seal_incoming(&incoming, &meta(40)).unwrap();
        // The membership of its position is recorded in it, for the restart to find.
        let sealed = Database::open(&incoming, Options::default()).unwrap();
        let conf = sealed
            .begin_read()
            .unwrap()
            .get(Bucket::Meta.name(), &snapshot_conf_key(40))
            .unwrap();
        assert_eq!(
            conf,
            Some(encode_conf_state(&ConfState::with_voters([1, 2])))
        );
    }

    #[test]
    fn an_install_the_wal_recorded_is_finished_at_start_and_a_stale_copy_removed() {
        let leader = tempfile::tempdir().unwrap();
        let follower = tempfile::tempdir().unwrap();
        let newer = key_space(leader.path(), 90);
        key_space(follower.path(), 10);
        copy_to_incoming(&newer, follower.path());
        // The WAL never took the marker: the copy is stale.
        finish_interrupted_install(follower.path(), Some(10)).unwrap();
        assert!(!follower.path().join(INCOMING_FILE).exists());
        let applied = |path: &Path| {
            let db = Database::open(path, Options::default()).unwrap();
            let read = db.begin_read().unwrap();
            position(&read, path).unwrap().0
        };
        assert_eq!(applied(&follower.path().join("db")), 10);
        // The WAL took it (marker at 90): the rename is finished.
        copy_to_incoming(&newer, follower.path());
        finish_interrupted_install(follower.path(), Some(90)).unwrap();
        assert!(!follower.path().join(INCOMING_FILE).exists());
        assert_eq!(applied(&follower.path().join("db")), 90);
    }
}
