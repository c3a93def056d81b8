//! How long the Raft loop polls for its next command before it sleeps.
//!
//! Waking a sleeping thread is cheap on bare metal but costs tens of microseconds on a virtual
//! machine whose idle vCPUs halt at once (the wake is an interrupt to another vCPU and a VM
//! exit): measured on a 2-vCPU VM, ~44 µs from a put's handler to the Raft loop, an eighth of a
//! single client's put latency. So when commands come in close succession the loop polls its
//! queue for a short budget before it sleeps, yielding its CPU to any other runnable thread
//! between polls. The budget adapts the way Linux's haltpoll governor does: it grows while
//! sleeps end soon after they began (a longer poll would have caught the command) and shrinks
//! when commands stop coming, so an idle or sparsely used member does not burn a core.
//!
//! Polling is only for a loop that waits on one client at a time, on an otherwise idle CPU.
//! Only after a turn that served exactly one client request does the loop poll: after several,
//! under load, the sleep is what batches the next turn's requests (one WAL sync, one storage
//! commit, one ReadIndex round for all of them); after none (ticks, a follower's peer
//! messages) nobody is waiting on the next command, and a polling thread looks busy to the
//! kernel, which then balances other threads away from its CPU. And a second yield that ran
//! another thread ends the poll: the CPU is wanted (the first is often the thread sending the
//! awaited command; ending the poll there cost a single client's put 4-20 µs of p50). Polling
//! after any turn cost a 2-vCPU machine 26% of its linearizable reads on one member and 15% on
//! a 3-member cluster.

use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant};

/// The first budget once polling pays.
const START: Duration = Duration::from_micros(25);
/// The longest poll: a sleep longer than this is not worth polling for.
pub const MAX_POLL: Duration = Duration::from_micros(200);

/// The adaptive poll budget of one receiving thread.
#[derive(Debug, Default)]
pub struct IdlePoll {
    budget: Duration,
    /// Client requests served since the last wait.
    served: usize,
    /// Waits that polled before sleeping (for tests).
    polls: u64,
}

/// A yield that takes longer ran another thread: the CPU is not idle.
const CONTENDED_YIELD: Duration = Duration::from_micros(10);
/// The first contended yield often ran the very thread sending the awaited command (sharing
/// this CPU); a second one means the CPU is wanted for other work.
const CONTENDED_YIELDS_ENDING_A_POLL: u32 = 2;

impl IdlePoll {
    /// Receives the next command, waiting at most `timeout`: polls for the budget, then sleeps.
    pub fn recv<T>(
        &mut self,
        commands: &Receiver<T>,
        timeout: Duration,
    ) -> Result<T, RecvTimeoutError> {
        let started = Instant::now();
        let window = poll_window(self.budget, self.served, timeout);
        self.served = 0;
        if !window.is_zero() {
            self.polls += 1;
        }
        let poll_until = started + window;
        let mut contended = 0;
        loop {
            match commands.try_recv() {
                Ok(command) => return Ok(command),
                Err(TryRecvError::Disconnected) => return Err(RecvTimeoutError::Disconnected),
                Err(TryRecvError::Empty) => {}
            }
            let before_yield = Instant::now();
            if before_yield >= poll_until {
                break;
            }
            std::thread::yield_now();
            if before_yield.elapsed() > CONTENDED_YIELD {
                contended += 1;
                if contended >= CONTENDED_YIELDS_ENDING_A_POLL {
                    break;
                }
            }
        }
        let remaining = timeout.saturating_sub(started.elapsed());
        let sleep_started = Instant::now();
        let received = commands.recv_timeout(remaining);
        let slept = sleep_started.elapsed();
        match received {
            Ok(_) => self.after_sleep(slept),
            // Nothing came for a whole timeout: idle, unless the timeout (the next tick) was
            // too near to tell.
            Err(_) if started.elapsed() > MAX_POLL => self.after_sleep(Duration::MAX),
            Err(_) => {}
        }
        received
    }

    /// Counts client requests served (a proposal, each read of a ReadIndex round).
    pub fn served(&mut self, requests: usize) {
        self.served += requests;
    }

    /// Adapts the budget to a sleep that lasted `slept` before a command came.
    fn after_sleep(&mut self, slept: Duration) {
        if slept <= MAX_POLL {
            self.budget = (self.budget * 2).clamp(START, MAX_POLL);
        } else {
            self.budget /= 2;
            if self.budget < START {
                self.budget = Duration::ZERO;
            }
        }
    }

    /// The current budget (for tests).
    pub fn budget(&self) -> Duration {
        self.budget
    }

    /// How many waits polled before sleeping (for tests).
    pub fn polls(&self) -> u64 {
        self.polls
    }
}

/// How long a wait polls: the budget after a turn that served exactly one request, and never
/// past the wait's timeout (the loop's next tick).
fn poll_window(budget: Duration, served: usize, timeout: Duration) -> Duration {
    if served == 1 {
        budget.min(timeout)
    } else {
        Duration::ZERO
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn only_a_turn_that_served_one_request_polls_and_never_past_the_timeout() {
        let budget = Duration::from_micros(150);
        let long = Duration::from_secs(1);
        assert_eq!(poll_window(budget, 1, long), budget);
        assert_eq!(
            poll_window(budget, 0, long),
            Duration::ZERO,
            "ticks, peer messages"
        );
        assert_eq!(
            poll_window(budget, 2, long),
            Duration::ZERO,
            "load batches by sleeping"
        );
        let near_tick = Duration::from_micros(40);
        assert_eq!(poll_window(budget, 1, near_tick), near_tick);
        assert_eq!(poll_window(Duration::ZERO, 1, long), Duration::ZERO);
    }

    /// A poll whose budget has grown to the most.
    fn polling_at_most() -> IdlePoll {
        let mut poll = IdlePoll::default();
        for _ in 0..10 {
            poll.after_sleep(Duration::ZERO);
        }
        assert_eq!(poll.budget(), MAX_POLL);
        poll
    }

    /// Waits 5 ms on an empty queue: the wait times out, and without polling.
    fn sleeps_out(poll: &mut IdlePoll, commands: &mpsc::Receiver<u8>) {
        let started = Instant::now();
        assert_eq!(
            poll.recv(commands, Duration::from_millis(5)),
            Err(RecvTimeoutError::Timeout)
        );
        assert!(started.elapsed() >= Duration::from_millis(5));
        assert_eq!(poll.polls(), 0);
    }

    #[test]
    fn a_timeout_too_near_to_tell_leaves_the_budget_alone() {
        let (_send, commands) = mpsc::channel::<u8>();
        let mut poll = polling_at_most();
        assert_eq!(
            poll.recv(&commands, Duration::ZERO),
            Err(RecvTimeoutError::Timeout)
        );
        assert_eq!(poll.budget(), MAX_POLL);
    }

    #[test]
    fn budget_grows_while_commands_come_soon_after_a_sleep() {
        let mut poll = IdlePoll::default();
        assert_eq!(
            poll.budget(),
            Duration::ZERO,
            "an idle loop starts without polling"
        );
        poll.after_sleep(Duration::from_micros(80));
        assert_eq!(poll.budget(), START);
        for _ in 0..10 {
            poll.after_sleep(Duration::from_micros(80));
        }
        assert_eq!(poll.budget(), MAX_POLL, "the budget is capped");
    }

    #[test]
    fn budget_shrinks_to_nothing_when_commands_stop_coming() {
        let mut poll = IdlePoll::default();
        for _ in 0..10 {
            poll.after_sleep(Duration::from_micros(10));
        }
        assert_eq!(poll.budget(), MAX_POLL);
        poll.after_sleep(Duration::from_millis(5));
        assert_eq!(poll.budget(), MAX_POLL / 2, "one long sleep halves it");
        for _ in 0..5 {
            poll.after_sleep(Duration::from_millis(5));
        }
        assert_eq!(poll.budget(), Duration::ZERO);
    }

    #[test]
    fn receives_what_is_queued_and_honours_the_timeout() {
        let (send, commands) = mpsc::channel();
        let mut poll = IdlePoll::default();
        poll.after_sleep(Duration::ZERO);
        poll.served(1);
        send.send(7).unwrap();
        assert_eq!(poll.recv(&commands, Duration::from_secs(5)), Ok(7));
        assert_eq!(poll.polls(), 1);
        let started = Instant::now();
        assert_eq!(
            poll.recv(&commands, Duration::from_millis(20)),
            Err(RecvTimeoutError::Timeout)
        );
        assert!(started.elapsed() >= Duration::from_millis(20));
        assert_eq!(poll.budget(), Duration::ZERO, "a timeout counts as idle");
    }

    #[test]
    fn a_turn_that_served_several_requests_skips_the_poll() {
        let (send, commands) = mpsc::channel::<u8>();
        let mut poll = polling_at_most();
        poll.served(1);
        poll.served(2);
        // With the poll skipped, nothing can arrive before the sleep: it lasts the whole
        // timeout and counts as idle.
        sleeps_out(&mut poll, &commands);
        poll.served(1);
        send.send(1).unwrap();
        assert_eq!(poll.recv(&commands, Duration::from_secs(5)), Ok(1));
        assert_eq!(poll.polls(), 1, "one request served: the next wait polls");
    }

    #[test]
    fn a_turn_that_served_nobody_skips_the_poll() {
        let (_send, commands) = mpsc::channel::<u8>();
        let mut poll = polling_at_most();
        sleeps_out(&mut poll, &commands);
    }

    #[test]
    fn a_command_sent_while_sleeping_is_received() {
        let (send, commands) = mpsc::channel();
        let mut poll = IdlePoll::default();
        let sender = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(10));
            send.send("late").unwrap();
            send
        });
        assert_eq!(poll.recv(&commands, Duration::from_secs(10)), Ok("late"));
        drop(sender.join().unwrap());
        assert_eq!(
            poll.recv(&commands, Duration::from_secs(10)),
            Err(RecvTimeoutError::Disconnected)
        );
    }
}
