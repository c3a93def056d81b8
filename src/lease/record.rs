//! Renewals are answered only once the log has recorded them.
//!
//! A keepalive that the leader answered but never wrote down is a promise no successor knows
//! of: if the leader is deposed before its next checkpoint commits, the new leader starts the
//! lease from an older figure and may expire it while the client still counts on the TTL it
//! was given. The fault tests found this (a 5-node ring partition: the leader kept answering
//! keepalives while its checkpoints could not commit, then lost leadership and won it back
//! from its last applied figures; a key vanished half a second inside its promised TTL).
//!
//! So the leader's lease duties checkpoint in rounds, one in flight at a time, each carrying
//! every lease renewed since the last round (a group commit: a round costs one log entry
//! however many renewals wait on it). A renewal takes a [`RenewalTicket`] naming the first
//! round that will carry it, and its answer waits until that round has applied in the same
//! leadership [`epoch`](RecordedRenewals::epoch). A leadership change ends the epoch, so no
//! waiting renewal is answered from a clock its successor never saw.

use std::time::Instant;

use tokio::sync::watch;

/// What the log has recorded of this member's renewals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecordedRenewals {
    /// Bumped whenever this member starts or stops keeping lease time.
    pub epoch: u64,
    /// Every checkpoint round of `epoch` up to this one has applied.
    pub round: u64,
}

/// A renewal granted by the leader's clock, answerable once round `round` of `epoch` is
/// recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenewalTicket {
    pub epoch: u64,
    pub round: u64,
}

/// Why a renewal was not recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NotRecorded {
    #[error("leadership changed before the renewal was recorded")]
    LeadershipChanged,
    #[error("the renewal was not recorded in time")]
    TimedOut,
}

/// Checkpoint rounds and the channel their waiters watch.
#[derive(Debug)]
pub struct RenewalRounds {
    epoch: u64,
    /// The round the next renewal is carried by.
    next_round: u64,
    recorded: watch::Sender<RecordedRenewals>,
}

impl Default for RenewalRounds {
    fn default() -> Self {
        RenewalRounds {
            epoch: 0,
            next_round: 1,
            recorded: watch::Sender::new(RecordedRenewals::default()),
        }
    }
}

impl RenewalRounds {
    /// A new leadership epoch: every renewal still waiting fails.
    pub fn new_epoch(&mut self) {
        self.epoch += 1;
        self.recorded.send_replace(RecordedRenewals {
            epoch: self.epoch,
            round: 0,
        });
    }

    /// The ticket of a renewal granted now.
    pub fn ticket(&self) -> RenewalTicket {
        RenewalTicket {
            epoch: self.epoch,
            round: self.next_round,
        }
    }

    /// Starts a checkpoint round: it carries every renewal granted before this call.
    pub fn begin_round(&mut self) -> RenewalTicket {
        let round = self.ticket();
        self.next_round += 1;
        round
    }

    /// Round `round` has applied (and every earlier one of its epoch had).
    pub fn recorded(&mut self, round: RenewalTicket) {
        if round.epoch != self.epoch {
            return;
        }
        self.recorded.send_if_modified(|recorded| {
            let newer = recorded.epoch == round.epoch && recorded.round < round.round;
            if newer {
                recorded.round = round.round;
            }
            newer
        });
    }

    pub fn watch(&self) -> watch::Receiver<RecordedRenewals> {
        self.recorded.subscribe()
    }
}

/// Waits until the round of `ticket` is recorded, its epoch ends, or `give_up` passes.
pub async fn await_recorded(
    mut recorded: watch::Receiver<RecordedRenewals>,
    ticket: RenewalTicket,
    give_up: Instant,
) -> Result<(), NotRecorded> {
    let wait = async {
        loop {
            let now = *recorded.borrow_and_update();
            if now.epoch != ticket.epoch {
                return Err(NotRecorded::LeadershipChanged);
            }
            if now.round >= ticket.round {
                return Ok(());
            }
            if recorded.changed().await.is_err() {
                return Err(NotRecorded::LeadershipChanged);
            }
        }
    };
    tokio::time::timeout_at(give_up.into(), wait)
        .await
        .unwrap_or(Err(NotRecorded::TimedOut))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    #[tokio::test]
    async fn a_renewal_is_answered_once_a_round_begun_after_it_is_recorded() {
        let mut rounds = RenewalRounds::default();
        rounds.new_epoch();
        let earlier = rounds.begin_round();
        let ticket = rounds.ticket();
        rounds.recorded(earlier);
        let waiting = tokio::spawn(await_recorded(rounds.watch(), ticket, soon()));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            !waiting.is_finished(),
            "a round begun before the renewal does not carry it"
        );
        let carrying = rounds.begin_round();
        assert_eq!(carrying, ticket);
        rounds.recorded(carrying);
        assert_eq!(waiting.await.unwrap(), Ok(()));
        assert_eq!(
            await_recorded(rounds.watch(), ticket, soon()).await,
            Ok(()),
            "a later waiter sees the recorded round at once"
        );
    }

    #[tokio::test]
    async fn a_leadership_change_fails_every_waiting_renewal() {
        let mut rounds = RenewalRounds::default();
        rounds.new_epoch();
        let ticket = rounds.ticket();
        let waiting = tokio::spawn(await_recorded(rounds.watch(), ticket, soon()));
        let round = rounds.begin_round();
        rounds.new_epoch();
        rounds.recorded(round);
        assert_eq!(
            waiting.await.unwrap(),
            Err(NotRecorded::LeadershipChanged),
            "a round of the old epoch records nothing in the new one"
        );
        assert_eq!(
            *rounds.watch().borrow(),
            RecordedRenewals { epoch: 2, round: 0 }
        );
    }

    #[tokio::test]
    async fn a_renewal_never_recorded_times_out() {
        let mut rounds = RenewalRounds::default();
        rounds.new_epoch();
        let ticket = rounds.ticket();
        let give_up = Instant::now() + Duration::from_millis(30);
        assert_eq!(
            await_recorded(rounds.watch(), ticket, give_up).await,
            Err(NotRecorded::TimedOut)
        );
    }
}
