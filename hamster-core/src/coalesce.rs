//! Group commit for backends: concurrent calls of one operation share one round trip.
//!
//! A caller adds its item to the pending list and waits for its own reply. If fewer than
//! `max_senders` batches are on their way to the backend, it starts a sender task; otherwise
//! items accumulate, and a sender takes them all as its next batch when its reply arrives.
//! So a lone call is sent at once (no timer, no added latency), and under load the batch
//! grows to what arrived during one round trip: the number of statements or script calls
//! per item falls as the load rises, which is where the time goes (each round trip, commit
//! or `EVALSHA` costs a fixed overhead far above the work of one small item).
//!
//! The sender is a spawned task rather than whichever caller came first, so that a caller
//! that stops waiting (its future dropped by a `select!` or a timeout) cannot strand the
//! others.

use crate::queue::QueueError;
use crate::store::StoreError;
use parking_lot::Mutex;
use std::future::Future;
use std::sync::Arc;
use tokio::sync::oneshot;

type ReplySender<Reply, Error> = oneshot::Sender<Result<Reply, Error>>;

/// The errors a [`Coalescer`] hands its callers: every caller of a failed batch gets a clone
/// of the batch's error, and a caller whose batch was lost is told so.
pub trait BatchError: Clone + Send + 'static {
    /// The batch was abandoned before the backend answered (the runtime is shutting down,
    /// or the sender panicked): it may or may not have been applied.
    fn abandoned(what: &str) -> Self;
    /// The backend answered a batch with the wrong number of replies.
    fn mismatched(message: String) -> Self;
}

/// Batches items of one kind of operation; see the module documentation.
pub struct Coalescer<Item, Reply, Error: BatchError> {
    pending: Mutex<Pending<Item, Reply, Error>>,
    /// The most items one batch takes, to bound how long one batch holds the backend.
    max_batch: usize,
    /// The most batches in flight at once.
    max_senders: usize,
    /// What the operation is ("ack", "delivery"), for errors.
    what: &'static str,
}

struct Pending<Item, Reply, Error> {
    waiting: Vec<(Item, ReplySender<Reply, Error>)>,
    /// Sender tasks running; each stops (and decrements this) when it finds nothing to send.
    senders: usize,
}

impl<Item, Reply, Error: BatchError> std::fmt::Debug for Coalescer<Item, Reply, Error> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pending = self.pending.lock();
        f.debug_struct("Coalescer")
            .field("what", &self.what)
            .field("waiting", &pending.waiting.len())
            .field("senders", &pending.senders)
            .finish()
    }
}

impl<Item, Reply, Error> Coalescer<Item, Reply, Error>
where
    Item: Send + 'static,
    Reply: Send + 'static,
    Error: BatchError,
{
    /// A coalescer of the operation `what` ("ack", "delivery") whose batches hold at most
    /// `max_batch` items, with one batch in flight at a time.
    pub fn new(what: &'static str, max_batch: usize) -> Arc<Self> {
        Self::with_senders(what, max_batch, 1)
    }

    /// Like [`new`](Self::new), with up to `max_senders` batches in flight at once (for
    /// backends that work on several connections in parallel).
    pub fn with_senders(what: &'static str, max_batch: usize, max_senders: usize) -> Arc<Self> {
        Arc::new(Self {
            pending: Mutex::new(Pending {
                waiting: Vec::new(),
                senders: 0,
            }),
            max_batch: max_batch.max(1),
            max_senders: max_senders.max(1),
            what,
        })
    }

    /// Queues `item` for the next batch and waits for its reply.
    ///
    /// `send` performs one batch and must return one reply per item, in order; it is called
    /// only if this call has to start a sender task, and then for every batch that task
    /// sends. An error of `send` is the error of every item of that batch.
    pub async fn submit<SendBatch, Sent>(
        self: &Arc<Self>,
        item: Item,
        send: SendBatch,
    ) -> Result<Reply, Error>
    where
        SendBatch: FnMut(Vec<Item>) -> Sent + Send + 'static,
        Sent: Future<Output = Result<Vec<Reply>, Error>> + Send + 'static,
    {
        let (reply, replied) = oneshot::channel();
        let start_sender = {
            let mut pending = self.pending.lock();
            pending.waiting.push((item, reply));
            let start = pending.senders < self.max_senders;
            if start {
                pending.senders += 1;
            }
            start
        };
        if start_sender {
            tokio::spawn(Arc::clone(self).send_until_empty(send));
        }
        match replied.await {
            Ok(outcome) => outcome,
            // The sender task ended without answering: the runtime is shutting down, or the
            // task panicked. The operation may or may not have reached Redis.
            Err(_) => Err(Error::abandoned(self.what)),
        }
    }

    async fn send_until_empty<SendBatch, Sent>(self: Arc<Self>, mut send: SendBatch)
    where
        SendBatch: FnMut(Vec<Item>) -> Sent,
        Sent: Future<Output = Result<Vec<Reply>, Error>>,
    {
        // Whatever else ends this task (a panic, the runtime dropping it), the next caller
        // must be able to start a sender, and callers still waiting must be told.
        let mut guard = SenderGuard {
            coalescer: &self,
            armed: true,
        };
        loop {
            let batch: Vec<(Item, ReplySender<Reply, Error>)> = {
                let mut pending = self.pending.lock();
                if pending.waiting.is_empty() {
                    pending.senders -= 1;
                    guard.armed = false;
                    return;
                }
                let take = pending.waiting.len().min(self.max_batch);
                pending.waiting.drain(..take).collect()
            };
            let (items, replies): (Vec<Item>, Vec<ReplySender<Reply, Error>>) =
                batch.into_iter().unzip();
            let expected = items.len();
            match send(items).await {
                Ok(outcomes) if outcomes.len() == expected => {
                    for (reply, outcome) in replies.into_iter().zip(outcomes) {
                        // A caller that stopped waiting does not need its reply.
                        let _ = reply.send(Ok(outcome));
                    }
                }
                Ok(outcomes) => {
                    let error = format!(
                        "a batch of {expected} {}s got {} replies",
                        self.what,
                        outcomes.len()
                    );
                    for reply in replies {
                        let _ = reply.send(Err(Error::mismatched(error.clone())));
                    }
                }
                Err(error) => {
                    for reply in replies {
                        let _ = reply.send(Err(error.clone()));
                    }
                }
            }
        }
    }
}

/// Gives back a sender's slot when its task ends abnormally. When it was the last sender,
/// it drops the reply senders of the items nobody will take, so that their callers get an
/// error instead of waiting forever. Disarmed on the normal exit, which gives the slot back
/// itself.
struct SenderGuard<'a, Item, Reply, Error: BatchError> {
    coalescer: &'a Coalescer<Item, Reply, Error>,
    armed: bool,
}

impl<Item, Reply, Error: BatchError> Drop for SenderGuard<'_, Item, Reply, Error> {
    fn drop(&mut self) {
        if self.armed {
            let mut pending = self.coalescer.pending.lock();
            pending.senders -= 1;
            if pending.senders == 0 {
                pending.waiting.clear();
            }
        }
    }
}

impl BatchError for QueueError {
    fn abandoned(what: &str) -> Self {
        Self::Backend(abandoned(what, "queue"))
    }
    fn mismatched(message: String) -> Self {
        Self::Corrupt(message)
    }
}

impl BatchError for StoreError {
    fn abandoned(what: &str) -> Self {
        Self::Backend(abandoned(what, "store"))
    }
    fn mismatched(message: String) -> Self {
        Self::Corrupt(message)
    }
}

fn abandoned(what: &str, backend: &str) -> String {
    format!(
        "the {what} was abandoned before the {backend} answered (the runtime is shutting \
         down?); it may or may not have been applied"
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A `send` that records batch sizes, takes `delay` like a round trip, and replies
    /// with each item doubled.
    fn doubling(
        batches: Arc<Mutex<Vec<usize>>>,
        delay: Duration,
    ) -> impl FnMut(Vec<u32>) -> futures::future::BoxFuture<'static, Result<Vec<u32>, QueueError>>
    + Send
    + 'static {
        move |items| {
            batches.lock().push(items.len());
            Box::pin(async move {
                tokio::time::sleep(delay).await;
                Ok(items.into_iter().map(|item| item * 2).collect())
            })
        }
    }

    #[tokio::test]
    async fn a_lone_call_is_sent_at_once_in_a_batch_of_one() {
        let coalescer = Coalescer::<_, _, QueueError>::new("test", 10);
        let batches = Arc::new(Mutex::new(Vec::new()));
        let started = tokio::time::Instant::now();
        let reply = coalescer
            .submit(21, doubling(batches.clone(), Duration::ZERO))
            .await
            .unwrap();
        assert_eq!(reply, 42);
        assert_eq!(*batches.lock(), [1]);
        assert!(started.elapsed() < Duration::from_millis(500));
        // The sender stopped: the next call starts a new one.
        let reply = coalescer
            .submit(5, doubling(batches.clone(), Duration::ZERO))
            .await
            .unwrap();
        assert_eq!(reply, 10);
        assert_eq!(*batches.lock(), [1, 1]);
    }

    #[tokio::test]
    async fn calls_arriving_during_a_round_trip_share_the_next_batch() {
        let coalescer = Coalescer::<_, _, QueueError>::new("test", 100);
        let batches = Arc::new(Mutex::new(Vec::new()));
        let first = tokio::spawn({
            let coalescer = coalescer.clone();
            let send = doubling(batches.clone(), Duration::from_millis(100));
            async move { coalescer.submit(1000, send).await }
        });
        // Let the first call's batch leave before the others arrive.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let calls: Vec<_> = (0..49u32)
            .map(|item| {
                let send = doubling(batches.clone(), Duration::from_millis(100));
                coalescer.submit(item, send)
            })
            .collect();
        let replies: Vec<u32> = futures::future::join_all(calls)
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(replies, (0..49).map(|item| item * 2).collect::<Vec<_>>());
        assert_eq!(first.await.unwrap().unwrap(), 2000);
        assert_eq!(*batches.lock(), [1, 49]);
    }

    #[tokio::test]
    async fn batches_are_capped() {
        let coalescer = Coalescer::<_, _, QueueError>::new("test", 4);
        let batches = Arc::new(Mutex::new(Vec::new()));
        let calls: Vec<_> = (0..10u32)
            .map(|item| coalescer.submit(item, doubling(batches.clone(), Duration::ZERO)))
            .collect();
        let replies: Vec<u32> = futures::future::join_all(calls)
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(replies, (0..10).map(|item| item * 2).collect::<Vec<_>>());
        assert_eq!(*batches.lock(), [4, 4, 2]);
    }

    #[tokio::test]
    async fn a_failed_batch_fails_each_of_its_calls_and_the_next_batch_still_runs() {
        let coalescer = Coalescer::<_, _, QueueError>::new("test", 100);
        let sent = Arc::new(Mutex::new(0));
        let send = {
            let sent = sent.clone();
            move |items: Vec<u32>| {
                let first = {
                    let mut sent = sent.lock();
                    *sent += 1;
                    *sent == 1
                };
                async move {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    if first {
                        Err(QueueError::Backend("redis is down".to_owned()))
                    } else {
                        Ok(items)
                    }
                }
            }
        };
        let failing: Vec<_> = (0..2u32)
            .map(|item| {
                let coalescer = coalescer.clone();
                let send = send.clone();
                async move { coalescer.submit(item, send).await }
            })
            .collect();
        let failing = tokio::spawn(futures::future::join_all(failing));
        tokio::time::sleep(Duration::from_millis(10)).await;
        let later = coalescer.submit(7, send.clone()).await;
        for outcome in failing.await.unwrap() {
            assert!(
                matches!(&outcome, Err(QueueError::Backend(message)) if message == "redis is down"),
                "{outcome:?}"
            );
        }
        assert_eq!(later.unwrap(), 7);
        assert_eq!(*sent.lock(), 2);
    }

    #[tokio::test]
    async fn a_wrong_number_of_replies_is_reported_not_misassigned() {
        let coalescer = Coalescer::<_, _, QueueError>::new("ack", 100);
        let outcome = coalescer
            .submit(1u32, |_items: Vec<u32>| async { Ok(Vec::<u32>::new()) })
            .await;
        assert!(
            matches!(&outcome, Err(QueueError::Corrupt(message)) if message.contains("1 acks got 0 replies")),
            "{outcome:?}"
        );
    }

    #[tokio::test]
    async fn a_panicking_sender_fails_its_callers_and_does_not_block_later_calls() {
        let coalescer = Coalescer::<_, _, QueueError>::new("ack", 100);
        let outcome = coalescer
            .submit(1u32, |_items: Vec<u32>| async {
                panic!("the sender failed");
                #[allow(unreachable_code)]
                Ok(Vec::new())
            })
            .await;
        assert!(
            matches!(&outcome, Err(QueueError::Backend(message)) if message.contains("ack was abandoned")),
            "{outcome:?}"
        );
        let reply = coalescer
            .submit(3u32, |items: Vec<u32>| async move { Ok(items) })
            .await
            .unwrap();
        assert_eq!(reply, 3);
    }

    #[tokio::test]
    async fn with_several_senders_a_second_batch_leaves_while_the_first_is_in_flight() {
        let coalescer = Coalescer::<_, _, QueueError>::with_senders("test", 100, 2);
        let batches = Arc::new(Mutex::new(Vec::new()));
        let started = tokio::time::Instant::now();
        let mut calls = Vec::new();
        for item in 1..=3 {
            let coalescer = coalescer.clone();
            let send = doubling(batches.clone(), Duration::from_millis(200));
            calls.push(tokio::spawn(
                async move { coalescer.submit(item, send).await },
            ));
            // Each call arrives after the previous one's batch left.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut replies = Vec::new();
        for call in calls {
            replies.push(call.await.unwrap().unwrap());
        }
        assert_eq!(replies, [2, 4, 6]);
        // Two senders: the first two calls left at once, each alone; the third waited for
        // a sender to come back.
        assert_eq!(*batches.lock(), [1, 1, 1]);
        let elapsed = started.elapsed();
        assert!(
            elapsed >= Duration::from_millis(400) && elapsed < Duration::from_millis(600),
            "{elapsed:?}"
        );
    }

    #[tokio::test]
    async fn a_caller_that_stops_waiting_does_not_strand_the_others() {
        let coalescer = Coalescer::<_, _, QueueError>::new("test", 100);
        let batches = Arc::new(Mutex::new(Vec::new()));
        // The first caller starts the sender, then gives up before its reply.
        let first = coalescer.submit(1, doubling(batches.clone(), Duration::from_millis(50)));
        let gave_up = tokio::time::timeout(Duration::from_millis(10), first).await;
        assert!(gave_up.is_err());
        let second = coalescer
            .submit(2, doubling(batches.clone(), Duration::from_millis(50)))
            .await
            .unwrap();
        assert_eq!(second, 4);
        assert_eq!(*batches.lock(), [1, 1]);
    }
}
