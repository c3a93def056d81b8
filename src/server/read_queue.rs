//! Linearizable reads waiting for a ReadIndex round, shared by the client tasks and the Raft
//! loop so that reads arriving together cost the loop one command and one round.
//!
//! A read may be served at a read index only if that index was asked for after the read
//! arrived. A read joins the queue; the first to join an empty queue signals the loop; the
//! loop takes everything queued when it handles the signal and asks for one read index for all
//! of it, so every read it carries arrived before the ask. A read that joins after the take
//! signals again and rides the next round. (Each read used to send its own command: a
//! cross-thread wake-up a read, and a read index apiece.)

use parking_lot::Mutex;
use tokio::sync::oneshot;
use tonic::Status;

/// Where a read learns that it may be served (or why not).
pub type ReadReply = oneshot::Sender<Result<(), Status>>;

/// The reads waiting for the loop to take them.
#[derive(Default)]
pub struct ReadQueue {
    state: Mutex<Queued>,
}

#[derive(Default)]
struct Queued {
    reads: Vec<ReadReply>,
    /// The loop has been signalled and has not taken the reads yet.
    signalled: bool,
}

impl ReadQueue {
    /// Queues a read; true when the caller must signal the loop.
    pub fn join(&self, reply: ReadReply) -> bool {
        let mut queued = self.state.lock();
        queued.reads.push(reply);
        !std::mem::replace(&mut queued.signalled, true)
    }

    /// Every read queued so far (the loop's side). A read joining afterwards signals anew.
    pub fn take(&self) -> Vec<ReadReply> {
        let mut queued = self.state.lock();
        queued.signalled = false;
        std::mem::take(&mut queued.reads)
    }

    /// Fails every queued read with `status` (the signal could not reach the loop).
    pub fn fail_all(&self, status: &Status) {
        for reply in self.take() {
            let _ = reply.send(Err(status.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_joining_before_the_take_share_one_signal_and_later_ones_signal_again() {
        let queue = ReadQueue::default();
        let (first, _a) = oneshot::channel();
        let (second, _b) = oneshot::channel();
        assert!(queue.join(first), "the first read signals the loop");
        assert!(
            !queue.join(second),
            "a read queued behind a pending signal does not"
        );
        assert_eq!(queue.take().len(), 2, "one round carries both");
        let (third, _c) = oneshot::channel();
        assert!(
            queue.join(third),
            "after the take, a read needs a round of its own"
        );
        assert_eq!(queue.take().len(), 1);
        assert!(queue.take().is_empty());
    }

    #[test]
    fn a_failed_signal_fails_the_queued_reads_and_lets_the_next_read_signal() {
        let queue = ReadQueue::default();
        let (first, mut first_answer) = oneshot::channel();
        let (second, mut second_answer) = oneshot::channel();
        assert!(queue.join(first));
        assert!(!queue.join(second));
        queue.fail_all(&Status::resource_exhausted("etcdserver: too many requests"));
        for answer in [&mut first_answer, &mut second_answer] {
            let failed = answer.try_recv().expect("answered");
            assert_eq!(failed.unwrap_err().code(), tonic::Code::ResourceExhausted);
        }
        let (third, _c) = oneshot::channel();
        assert!(
            queue.join(third),
            "nothing is left waiting on a signal that never arrived"
        );
    }
}
