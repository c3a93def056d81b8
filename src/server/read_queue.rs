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

/// Runs its signal when dropped, so that the loop hears of queued reads even if the read
/// that owes the signal is cancelled first (its client gave up while it yielded): every read
/// queued behind a signal depends on it.
pub struct SignalOnDrop<F: FnOnce()> {
    signal: Option<F>,
}

impl<F: FnOnce()> SignalOnDrop<F> {
    pub fn new(signal: F) -> Self {
        SignalOnDrop {
            signal: Some(signal),
        }
    }
}

impl<F: FnOnce()> Drop for SignalOnDrop<F> {
    fn drop(&mut self) {
        if let Some(signal) = self.signal.take() {
            signal();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Context, Waker};

    /// The shape of a linearizable read: join, owe the signal across a yield, then wait.
    async fn read(queue: &ReadQueue, signals: &AtomicUsize) {
        let (reply, _answer) = oneshot::channel();
        if queue.join(reply) {
            let signal = SignalOnDrop::new(|| {
                signals.fetch_add(1, Ordering::Relaxed);
            });
            tokio::task::yield_now().await;
            drop(signal);
        }
        std::future::pending::<()>().await;
    }

    #[tokio::test]
    async fn a_read_cancelled_before_signalling_still_signals_for_the_reads_behind_it() {
        let (queue, signals) = (ReadQueue::default(), AtomicUsize::new(0));
        let mut context = Context::from_waker(Waker::noop());
        let mut first = Box::pin(read(&queue, &signals));
        assert!(first.as_mut().poll(&mut context).is_pending(), "yielding");
        let mut second = Box::pin(read(&queue, &signals));
        assert!(
            second.as_mut().poll(&mut context).is_pending(),
            "queued behind"
        );
        assert_eq!(signals.load(Ordering::Relaxed), 0);
        drop(first);
        assert_eq!(
            signals.load(Ordering::Relaxed),
            1,
            "the loop still hears of both"
        );
        assert_eq!(queue.take().len(), 2);
        drop(second);
    }

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
