//! The leader's lease duties, a task beside the Raft loop: revoke leases whose time ran out,
//! and checkpoint the time left on renewed ones (see `crate::lease` for why).

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use crate::api::Member;
use crate::proto::cairn::entry::v1::{request::Op, LeaseCheckpoint, LeaseCheckpoints};
use crate::proto::etcdserverpb::LeaseRevokeRequest;

/// Revokes proposed per expiry check (etcd limits revokes to 1,000 a second).
const MAX_REVOKES_PER_CHECK: usize = 500;

/// Leases per checkpoint entry (about 20 bytes each: well under the request size limit).
const MAX_CHECKPOINTS_PER_ENTRY: usize = 10_000;

/// Checkpoint entries proposed per checkpoint interval.
const MAX_CHECKPOINT_ENTRIES_PER_ROUND: usize = 10;

/// Runs until `stop` turns true.
pub async fn run<M: Member>(member: Arc<M>, mut stop: watch::Receiver<bool>) {
    let timing = member.leases().state.lock().timing();
    let mut expiry = tokio::time::interval(timing.expiry_check_interval);
    let mut checkpoint = tokio::time::interval(timing.checkpoint_interval);
    expiry.set_missed_tick_behavior(MissedTickBehavior::Delay);
    checkpoint.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let shared = Arc::clone(member.leases());
    loop {
        let checkpoint_due = tokio::select! {
            _ = expiry.tick() => false,
            _ = checkpoint.tick() => true,
            // Keepalives wait for their renewal to be recorded: checkpoint now.
            _ = shared.renewals_waiting.notified() => true,
            _ = stop.wait_for(|stopped| *stopped) => break,
        };
        if checkpoint_due {
            checkpoint_renewed(&member).await;
        } else {
            revoke_expired(&member);
        }
    }
}

fn revoke_expired<M: Member>(member: &Arc<M>) {
    let term = crate::api::lease::leading_term(&**member);
    let expired = {
        let mut leases = member.leases().state.lock();
        leases.follow_role(term);
        leases.take_expired(Instant::now(), MAX_REVOKES_PER_CHECK)
    };
    // Only a leader's clock expires leases; the decision holds only in its own term.
    let Some(term) = term else { return };
    for id in expired {
        let member = Arc::clone(member);
        // Each revoke waits for its own commit; a lost one is proposed again after a while.
        tokio::spawn(async move {
            // A delay here widens the race in which this member stops leading between the
            // decision and the proposal (which is then forwarded to its successor).
            #[cfg(feature = "failpoints")]
            crate::failpoints::reach("lease-expiry-propose");
            match member
                .propose_as_leader(Op::LeaseRevoke(LeaseRevokeRequest { id }), term)
                .await
            {
                Ok(_) => tracing::debug!(lease = format!("{id:016x}"), "expired lease revoked"),
                Err(status) => tracing::warn!(
                    lease = format!("{id:016x}"),
                    error = status.message(),
                    "revoking an expired lease failed; will retry"
                ),
            }
        });
    }
}

/// One checkpoint round: every lease renewed since the last round, recorded through Raft in
/// this member's term; the renewals waiting on the round are answered once all of it applied.
async fn checkpoint_renewed<M: Member>(member: &Arc<M>) {
    let term = crate::api::lease::leading_term(&**member);
    let round = {
        let mut leases = member.leases().state.lock();
        leases.follow_role(term);
        leases.begin_checkpoint_round()
    };
    let Some(term) = term else { return };
    for chunk in 0..MAX_CHECKPOINT_ENTRIES_PER_ROUND {
        let taken_at = Instant::now();
        let due = member
            .leases()
            .state
            .lock()
            .take_checkpoints(taken_at, MAX_CHECKPOINTS_PER_ENTRY);
        if due.is_empty() {
            break;
        }
        let full = due.len() == MAX_CHECKPOINTS_PER_ENTRY;
        let entry = LeaseCheckpoints {
            checkpoints: due
                .iter()
                .map(|&(id, remaining_ms)| LeaseCheckpoint { id, remaining_ms })
                .collect(),
        };
        if let Err(status) = member
            .propose_as_leader(Op::LeaseCheckpoints(entry), term)
            .await
        {
            tracing::warn!(
                error = status.message(),
                "lease checkpoint failed; will retry"
            );
            let mut leases = member.leases().state.lock();
            leases.checkpoint_failed(due.into_iter().map(|(id, _)| id));
            return;
        }
        member
            .leases()
            .state
            .lock()
            .checkpoints_recorded(term, taken_at, &due);
        if !full {
            break;
        }
        if chunk + 1 == MAX_CHECKPOINT_ENTRIES_PER_ROUND {
            // More renewals than a round carries: their keepalives wait for the next round.
            return;
        }
    }
    member
        .leases()
        .state
        .lock()
        .checkpoint_round_recorded(round);
}
