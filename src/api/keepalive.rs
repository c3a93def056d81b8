//! Keepalive streams: renewals granted by the leader's lease clock and answered once the log
//! has recorded them (`crate::lease::record`), or forwarded to the leader from a follower.
//!
//! A stream's renewals are taken in batches: whatever the client has sent by the time the
//! stream is read is renewed on the clock at once, and the whole batch waits for one
//! checkpoint round, so a client renewing many leases pays for one log entry, not one each.
//! Renewals a recorded checkpoint already covers (`crate::lease`) wait only for one read
//! barrier for the batch. Answers go back in the order the renewals came.

use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tonic::codegen::tokio_stream::{Stream, StreamExt};
use tonic::{Status, Streaming};

use super::lease::leading_term;
use super::lease_forward::KeepaliveProxy;
use super::{fill_header, Member};
use crate::lease::{await_recorded, NotRecorded, Renewal, RenewalTicket};
use crate::proto::etcdserverpb::{LeaseKeepAliveRequest, LeaseKeepAliveResponse};

/// Renewals of one stream handled together (and so, at most, in flight to the leader).
pub const MAX_RENEWALS_PER_BATCH: usize = 1024;

/// How often a request waiting for this member to lead looks again.
const LEADERSHIP_POLL: Duration = Duration::from_millis(20);

/// What a renewal on this member came to.
enum Renewed {
    /// The TTL to answer with (0: the lease is gone).
    Ttl(i64),
    /// Another member leads: the renewal goes to it.
    AtLeader { leader: u64, url: String },
}

/// Serves one keepalive stream until the client ends it or an answer fails.
pub async fn serve_stream<M: Member>(
    member: Arc<M>,
    mut inbound: Streaming<LeaseKeepAliveRequest>,
    sender: mpsc::Sender<Result<LeaseKeepAliveResponse, Status>>,
    forwarded: bool,
    patience: Duration,
) {
    // Renewals this member cannot grant go to the leader over one stream.
    let mut proxy: Option<KeepaliveProxy> = None;
    let stopped = member.until_stopped();
    tokio::pin!(stopped);
    loop {
        let next = tokio::select! {
            next = inbound.next() => next,
            () = &mut stopped => return,
        };
        let Some(next) = next else { break };
        let Ok(first) = next else { break };
        let mut ids = vec![first.id];
        let mut ended = false;
        while ids.len() < MAX_RENEWALS_PER_BATCH {
            // What has already arrived joins the batch. One poll, not a zero timeout: tokio's
            // timers fire on a millisecond tick, so a zero timeout cost every batch up to 1 ms.
            match poll_once(&mut inbound).await {
                Poll::Ready(Some(Ok(asked))) => ids.push(asked.id),
                Poll::Ready(_) => {
                    ended = true;
                    break;
                }
                Poll::Pending => break,
            }
        }
        let answers = renew_batch(&*member, &ids, forwarded, &mut proxy, patience).await;
        for (id, ttl) in ids.into_iter().zip(answers) {
            let answer = ttl.map(|ttl| LeaseKeepAliveResponse {
                header: fill_header(&*member, None),
                id,
                ttl,
            });
            let failed = answer.is_err();
            if sender.send(answer).await.is_err() || failed {
                return;
            }
        }
        if ended {
            return;
        }
    }
}

/// The stream's next item if it has already arrived, without waiting for one.
async fn poll_once<S: Stream + Unpin>(stream: &mut S) -> Poll<Option<S::Item>> {
    std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *stream).poll_next(cx))).await
}

/// Renews every lease of `ids`, in order; each answer is a TTL (0: gone) or an error.
async fn renew_batch<M: Member>(
    member: &M,
    ids: &[i64],
    forwarded: bool,
    proxy: &mut Option<KeepaliveProxy>,
    patience: Duration,
) -> Vec<Result<i64, Status>> {
    let give_up = Instant::now() + patience;
    // Everything the clock grants is granted before any waiting: one round records it all.
    let granted: Vec<Option<(i64, RenewalTicket, bool)>> = {
        let mut leases = member.leases().state.lock();
        leases.follow_role(leading_term(member));
        let now = Instant::now();
        ids.iter()
            .map(|&id| match leases.renew(id, now) {
                Renewal::Renewed {
                    ttl_seconds,
                    ticket,
                    covered,
                } => Some((ttl_seconds, ticket, covered)),
                _ => None,
            })
            .collect()
    };
    // Covered renewals are answered once this member has shown it led, with the log applied,
    // after they arrived: a revoke committed before then has applied and wins. If that fails
    // they wait for their round like the rest.
    let any_covered = granted.iter().flatten().any(|&(_, _, covered)| covered);
    if granted.iter().flatten().any(|&(_, _, covered)| !covered) {
        // The round the others wait for starts now, not after the barrier.
        member.leases().renewals_waiting.notify_one();
    }
    let caught_up = any_covered && member.read_barrier().await.is_ok();
    // One look at the table for the whole batch.
    let alive: Vec<bool> = if caught_up {
        let leases = member.leases().state.lock();
        ids.iter()
            .map(|&id| leases.table().get(id).is_some())
            .collect()
    } else {
        Vec::new()
    };
    let mut outcomes = Vec::with_capacity(ids.len());
    for (index, (&id, granted)) in ids.iter().zip(granted).enumerate() {
        outcomes.push(match granted {
            Some((ttl_seconds, _, true)) if caught_up => {
                Ok(Renewed::Ttl(if alive[index] { ttl_seconds } else { 0 }))
            }
            Some((ttl_seconds, ticket, _)) => {
                await_recorded_renewal(member, id, ttl_seconds, ticket, give_up).await
            }
            None => renew(member, id, give_up).await,
        });
    }
    // The ones another member leads for go to it together.
    let mut at_leader = Vec::new();
    let mut answers: Vec<Result<i64, Status>> = Vec::with_capacity(ids.len());
    for (index, outcome) in outcomes.into_iter().enumerate() {
        answers.push(match outcome {
            Ok(Renewed::Ttl(ttl)) => Ok(ttl),
            // Forwarded once already: this member is not the leader after all.
            Ok(Renewed::AtLeader { .. }) if forwarded => {
                Err(Status::unavailable("etcdserver: not leader"))
            }
            Ok(Renewed::AtLeader { leader, url }) => {
                at_leader.push((index, leader, url));
                Ok(0)
            }
            Err(status) => Err(status),
        });
    }
    if let Some((_, leader, url)) = at_leader.first().cloned() {
        let batch: Vec<i64> = at_leader.iter().map(|(index, ..)| ids[*index]).collect();
        let forwarded = forward_renewals(proxy, leader, &url, &batch, patience).await;
        for (position, (index, ..)) in at_leader.iter().enumerate() {
            answers[*index] = match &forwarded {
                Ok(ttls) => ttls
                    .get(position)
                    .copied()
                    .ok_or_else(|| Status::unavailable("etcdserver: leader stream closed")),
                Err(status) => Err(status.clone()),
            };
        }
    }
    answers
}

/// Renews one lease when the clock could not grant it at once: waits out an expiry's revoke
/// or a leader election, or names the leader to forward to.
async fn renew<M: Member>(member: &M, id: i64, give_up: Instant) -> Result<Renewed, Status> {
    loop {
        let (renewal, revoked) = {
            let shared = member.leases();
            // Registered before looking, so a revoke applied right after is not missed.
            let revoked = shared.revoked.notified();
            let mut leases = shared.state.lock();
            leases.follow_role(leading_term(member));
            (leases.renew(id, Instant::now()), revoked)
        };
        match renewal {
            // Rare (a renewal retried after an election or an expiry): the round is enough.
            Renewal::Renewed {
                ttl_seconds,
                ticket,
                ..
            } => return await_recorded_renewal(member, id, ttl_seconds, ticket, give_up).await,
            Renewal::NotFound => return Ok(Renewed::Ttl(0)),
            // It ran out: answer once its revoke has applied, so that a client told "gone"
            // never reads the lease's keys afterwards.
            Renewal::Expired => {
                if tokio::time::timeout_at(give_up.into(), revoked)
                    .await
                    .is_err()
                {
                    return Err(Status::unavailable("etcdserver: request timed out"));
                }
            }
            Renewal::NotLeader => {
                if let Some((leader, url)) = member.leader_client_url() {
                    return Ok(Renewed::AtLeader { leader, url });
                }
                if Instant::now() >= give_up {
                    return Err(Status::unavailable("etcdserver: no leader"));
                }
                tokio::time::sleep(LEADERSHIP_POLL).await;
            }
        }
    }
}

/// Answers a renewal once the log has recorded it: a TTL no later leader knows of is never
/// promised.
async fn await_recorded_renewal<M: Member>(
    member: &M,
    id: i64,
    ttl_seconds: i64,
    ticket: RenewalTicket,
    give_up: Instant,
) -> Result<Renewed, Status> {
    let shared = member.leases();
    let recorded = shared.state.lock().recorded_renewals();
    shared.renewals_waiting.notify_one();
    match await_recorded(recorded, ticket, give_up).await {
        // A revoke that applied before the checkpoint (a predecessor's expiry, or a client's
        // revoke) wins: the lease is gone.
        Ok(()) if shared.state.lock().table().get(id).is_none() => Ok(Renewed::Ttl(0)),
        Ok(()) => Ok(Renewed::Ttl(ttl_seconds)),
        Err(NotRecorded::LeadershipChanged) => {
            Err(Status::unavailable("etcdserver: leader changed"))
        }
        Err(NotRecorded::TimedOut) => Err(Status::unavailable("etcdserver: request timed out")),
    }
}

/// Renews `ids` at the leader, over `proxy` (opened, or reopened when the leader changed).
async fn forward_renewals(
    proxy: &mut Option<KeepaliveProxy>,
    leader: u64,
    url: &str,
    ids: &[i64],
    patience: Duration,
) -> Result<Vec<i64>, Status> {
    if proxy.as_ref().is_none_or(|p| p.leader != leader) {
        *proxy = Some(KeepaliveProxy::open(leader, url, patience).await?);
    }
    let Some(open) = proxy.as_mut() else {
        return Err(Status::unavailable("etcdserver: no leader"));
    };
    let renewed = open.renew_all(ids, patience).await;
    if renewed.is_err() {
        *proxy = None;
    }
    renewed
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Polls `future` once, as a runtime would, and reports whether it finished.
    fn finishes_on_first_poll<F: std::future::Future>(future: F) -> Option<F::Output> {
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        match std::pin::pin!(future).poll(&mut context) {
            Poll::Ready(output) => Some(output),
            Poll::Pending => None,
        }
    }

    #[test]
    fn a_batch_takes_what_arrived_and_never_waits_for_more() {
        let (sender, receiver) = mpsc::channel::<i64>(4);
        let mut stream = tonic::codegen::tokio_stream::wrappers::ReceiverStream::new(receiver);
        sender.try_send(7).unwrap();
        let took = finishes_on_first_poll(poll_once(&mut stream));
        assert_eq!(took, Some(Poll::Ready(Some(7))));
        // Nothing more has arrived: the answer comes on the first poll, no timer in between.
        let took = finishes_on_first_poll(poll_once(&mut stream));
        assert_eq!(took, Some(Poll::Pending));
        drop(sender);
        let took = finishes_on_first_poll(poll_once(&mut stream));
        assert_eq!(took, Some(Poll::Ready(None)));
    }
}
