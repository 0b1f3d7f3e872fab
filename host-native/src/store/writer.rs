//! The database's one writer, taken in turns by org.
//!
//! Every change goes through one writer (SQLite has one; on PostgreSQL it keeps this process's
//! changes in the order they were decided). A plain FIFO lock let one tenant's burst of writes
//! (a thousand stored data keys per call, on 64 connections) queue in front of another's pause:
//! the pause then waited for every write queued before it. Here each org waiting has its own
//! queue, and the turn goes round the orgs waiting, one write each, never to the org that just
//! wrote while another waits: a pause waits for the write running and at most one write of each
//! other org waiting (the process's own work queues as one more), however many that org queued.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use byok_core::ScopeId;
use tokio::sync::oneshot;

/// Whose write is waiting: an org's, or the process's own (the log key, the issuer, job
/// leases, server facts), which take turns as one more org.
pub type Writer = Option<ScopeId>;

/// The writer's turns.
#[derive(Default)]
pub struct Turns {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Whether a turn is held. Invariant: the queues are empty when it is not.
    busy: bool,
    /// The writers waiting, in the order their next turn comes, each with its waiters in
    /// arrival order. A writer is in here at most once.
    waiting: VecDeque<(Writer, VecDeque<oneshot::Sender<()>>)>,
}

/// The writer's turn, held until dropped.
pub struct Turn {
    turns: Arc<Turns>,
    who: Writer,
}

impl Drop for Turn {
    fn drop(&mut self) {
        self.turns.pass(Some(self.who));
    }
}

/// A wait for a turn; passes the turn on if it arrives after the wait was given up.
struct Waiting {
    turns: Arc<Turns>,
    rx: oneshot::Receiver<()>,
    /// Whether the turn was received (and is now held by a [`Turn`]).
    received: bool,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if !self.received {
            // Given up (the request was cancelled): refuse the turn from now on, and pass on
            // one that was handed over before this (else no one would ever write again).
            self.rx.close();
            if self.rx.try_recv().is_ok() {
                self.turns.pass(None);
            }
        }
    }
}

impl Turns {
    /// Waits for `who`'s turn.
    pub async fn take(self: &Arc<Self>, who: Writer) -> Turn {
        let rx = {
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if !s.busy {
                s.busy = true;
                return Turn {
                    turns: self.clone(),
                    who,
                };
            }
            let (tx, rx) = oneshot::channel();
            match s.waiting.iter_mut().find(|(w, _)| *w == who) {
                Some((_, queue)) => queue.push_back(tx),
                None => s.waiting.push_back((who, VecDeque::from([tx]))),
            }
            rx
        };
        let mut waiting = Waiting {
            turns: self.clone(),
            rx,
            received: false,
        };
        // The sender is only dropped unsent by `pass`, which never drops a waiter's sender
        // without sending on it, or with the state, which our Arc keeps alive: this is Ok.
        let handed = (&mut waiting.rx).await;
        debug_assert!(handed.is_ok());
        waiting.received = true;
        Turn {
            turns: self.clone(),
            who,
        }
    }

    /// How many writes wait for a turn (for tests that queue some in a known order).
    pub fn waiting(&self) -> usize {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.waiting.iter().map(|(_, queue)| queue.len()).sum()
    }

    /// Hands the turn to the next writer round (the first waiter of the writer at the head, who
    /// then goes to the back if it has more waiting), or frees it if no one waits. `done` is
    /// the writer whose turn ended, if it wrote: it goes after the others waiting.
    fn pass(&self, done: Option<Writer>) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.waiting.len() > 1 && s.waiting.front().map(|(w, _)| *w) == done {
            s.waiting.rotate_left(1);
        }
        while let Some((who, mut queue)) = s.waiting.pop_front() {
            let next = queue.pop_front();
            if !queue.is_empty() {
                s.waiting.push_back((who, queue));
            }
            // A waiter that gave up refuses it: the next one gets it.
            if next.is_some_and(|tx| tx.send(()).is_ok()) {
                return;
            }
        }
        s.busy = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::task::{Context, Poll, Waker};
    use std::time::Duration;

    /// Polls once: whether the turn came at once.
    fn ready<F: Future>(f: std::pin::Pin<&mut F>) -> bool {
        matches!(
            f.poll(&mut Context::from_waker(Waker::noop())),
            Poll::Ready(_)
        )
    }

    fn org(n: u8) -> Writer {
        Some(ScopeId::from_bytes([n; 16]))
    }

    /// Waiters queued in `order` (org numbers, 0 for the process) while a turn is held; returns
    /// the order in which they got it.
    async fn served(order: &[u8]) -> Vec<u8> {
        let turns = Arc::new(Turns::default());
        let first = turns.take(org(100)).await;
        let got = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for &n in order {
            let (mine, got) = (turns.clone(), got.clone());
            let who = if n == 0 { None } else { org(n) };
            tasks.push(tokio::spawn(async move {
                let _turn = mine.take(who).await;
                got.lock().unwrap().push(n);
                tokio::task::yield_now().await;
            }));
            // Queued in this order.
            while turns.waiting() < tasks.len() {
                tokio::task::yield_now().await;
            }
        }
        drop(first);
        for t in tasks {
            t.await.unwrap();
        }
        got.lock().unwrap().clone()
    }

    #[tokio::test]
    async fn the_turn_goes_round_the_orgs_waiting() {
        // Org 1 queued five writes before org 2's one and the process's one: they go second
        // and third, not sixth and seventh.
        assert_eq!(served(&[1, 1, 1, 1, 1, 2, 0]).await, [1, 2, 0, 1, 1, 1, 1]);
        // Within an org, in arrival order; round after round.
        assert_eq!(served(&[1, 1, 2, 2, 3]).await, [1, 2, 3, 1, 2]);
        // The org writing now (100) queued more, first: the others go before its next.
        assert_eq!(served(&[100, 100, 2, 3]).await, [2, 3, 100, 100]);
    }

    #[tokio::test]
    async fn a_free_turn_is_taken_at_once_and_freed_on_drop() {
        let turns = Arc::new(Turns::default());
        drop(turns.take(org(1)).await);
        let again = tokio::time::timeout(Duration::from_secs(5), turns.take(org(2))).await;
        assert!(again.is_ok(), "the turn was not freed");
        assert!(turns.state.lock().unwrap().busy);
        drop(again);
        assert!(!turns.state.lock().unwrap().busy);
    }

    #[tokio::test]
    async fn a_waiter_that_gives_up_passes_its_turn_on() {
        let turns = Arc::new(Turns::default());
        let held = turns.take(org(1)).await;
        // Gives up before the turn arrives: skipped.
        let mut gone = Box::pin(turns.take(org(2)));
        assert!(!ready(gone.as_mut()));
        // Handed the turn, but gives up before it looks: passes it on.
        let mut late = Box::pin(turns.take(org(3)));
        assert!(!ready(late.as_mut()));
        let next = tokio::spawn({
            let turns = turns.clone();
            async move { drop(turns.take(org(4)).await) }
        });
        while turns.state.lock().unwrap().waiting.len() < 3 {
            tokio::task::yield_now().await;
        }
        drop(gone);
        drop(held); // Org 2 refuses; org 3 is handed the turn.
        drop(late); // Org 3 never looked: org 4 gets it.
        tokio::time::timeout(Duration::from_secs(5), next)
            .await
            .expect("a turn handed to a waiter that gave up was lost")
            .unwrap();
        assert!(!turns.state.lock().unwrap().busy);
    }
}
