//! Group commit: concurrent calls of one operation share a script call.
//!
//! A caller adds its item to the pending list and waits for its own reply. If no batch is
//! on its way to Redis, it starts a sender task; while a batch is in flight, further items
//! accumulate, and the sender takes them all as its next batch when the reply arrives. So a
//! lone call is sent at once (no timer, no added latency), and under load the batch grows
//! to what arrived during one round trip: the number of script calls per job falls as the
//! load rises, which is where the time goes (each `EVALSHA` costs Redis and the client a
//! fixed overhead far above the work of acking or enqueueing one small job).
//!
//! The sender is a spawned task rather than whichever caller came first, so that a caller
//! that stops waiting (its future dropped by a `select!` or a timeout) cannot strand the
//! others.

use hamster_core::queue::QueueError;
use parking_lot::Mutex;
use std::future::Future;
use std::sync::Arc;
use tokio::sync::oneshot;

type ReplySender<Reply> = oneshot::Sender<Result<Reply, QueueError>>;

/// Batches items of one kind of operation; see the module documentation.
pub(crate) struct Coalescer<Item, Reply> {
    pending: Mutex<Pending<Item, Reply>>,
    /// The most items one batch takes, to bound how long one script holds Redis.
    max_batch: usize,
    /// What the operation is, for the error of a caller whose batch was abandoned.
    what: &'static str,
}

struct Pending<Item, Reply> {
    waiting: Vec<(Item, ReplySender<Reply>)>,
    /// Whether a sender task is running; it clears this when it finds nothing to send.
    sending: bool,
}

impl<Item, Reply> std::fmt::Debug for Coalescer<Item, Reply> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pending = self.pending.lock();
        f.debug_struct("Coalescer")
            .field("what", &self.what)
            .field("waiting", &pending.waiting.len())
            .field("sending", &pending.sending)
            .finish()
    }
}

impl<Item, Reply> Coalescer<Item, Reply>
where
    Item: Send + 'static,
    Reply: Send + 'static,
{
    /// A coalescer whose batches hold at most `max_batch` items (at least 1) of the
    /// operation `what` ("ack", "enqueue").
    pub(crate) fn new(what: &'static str, max_batch: usize) -> Arc<Self> {
        Arc::new(Self {
            pending: Mutex::new(Pending {
                waiting: Vec::new(),
                sending: false,
            }),
            max_batch: max_batch.max(1),
            what,
        })
    }

    /// Queues `item` for the next batch and waits for its reply.
    ///
    /// `send` performs one batch and must return one reply per item, in order; it is called
    /// only if this call has to start a sender task, and then for every batch that task
    /// sends. An error of `send` is the error of every item of that batch.
    pub(crate) async fn submit<SendBatch, Sent>(
        self: &Arc<Self>,
        item: Item,
        send: SendBatch,
    ) -> Result<Reply, QueueError>
    where
        SendBatch: FnMut(Vec<Item>) -> Sent + Send + 'static,
        Sent: Future<Output = Result<Vec<Reply>, QueueError>> + Send + 'static,
    {
        let (reply, replied) = oneshot::channel();
        let start_sender = {
            let mut pending = self.pending.lock();
            pending.waiting.push((item, reply));
            !std::mem::replace(&mut pending.sending, true)
        };
        if start_sender {
            tokio::spawn(Arc::clone(self).send_until_empty(send));
        }
        match replied.await {
            Ok(outcome) => outcome,
            // The sender task ended without answering: the runtime is shutting down, or the
            // task panicked. The operation may or may not have reached Redis.
            Err(_) => Err(QueueError::Backend(format!(
                "the {} was abandoned before Redis answered (the runtime is shutting down?); \
                 it may or may not have been applied",
                self.what
            ))),
        }
    }

    async fn send_until_empty<SendBatch, Sent>(self: Arc<Self>, mut send: SendBatch)
    where
        SendBatch: FnMut(Vec<Item>) -> Sent,
        Sent: Future<Output = Result<Vec<Reply>, QueueError>>,
    {
        // Whatever else ends this task (a panic, the runtime dropping it), the next caller
        // must be able to start a sender, and callers still waiting must be told.
        let mut guard = SenderGuard {
            coalescer: &self,
            armed: true,
        };
        loop {
            let batch: Vec<(Item, ReplySender<Reply>)> = {
                let mut pending = self.pending.lock();
                if pending.waiting.is_empty() {
                    pending.sending = false;
                    guard.armed = false;
                    return;
                }
                let take = pending.waiting.len().min(self.max_batch);
                pending.waiting.drain(..take).collect()
            };
            let (items, replies): (Vec<Item>, Vec<ReplySender<Reply>>) = batch.into_iter().unzip();
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
                        let _ = reply.send(Err(QueueError::Corrupt(error.clone())));
                    }
                }
                Err(error) => {
                    for reply in replies {
                        let _ = reply.send(Err(copy_error(&error)));
                    }
                }
            }
        }
    }
}

/// Resets the `sending` flag when a sender task ends abnormally, dropping the reply senders
/// of the items it never took so that their callers get an error instead of waiting forever.
/// Disarmed on the normal exit, where a new sender may already own the flag.
struct SenderGuard<'a, Item, Reply> {
    coalescer: &'a Coalescer<Item, Reply>,
    armed: bool,
}

impl<Item, Reply> Drop for SenderGuard<'_, Item, Reply> {
    fn drop(&mut self) {
        if self.armed {
            let mut pending = self.coalescer.pending.lock();
            pending.sending = false;
            pending.waiting.clear();
        }
    }
}

/// `QueueError` is not `Clone` (it is a contract type); every caller of a failed batch gets
/// the same error.
fn copy_error(error: &QueueError) -> QueueError {
    match error {
        QueueError::LeaseLost(id) => QueueError::LeaseLost(id.clone()),
        QueueError::NotFound(id) => QueueError::NotFound(id.clone()),
        QueueError::Backend(message) => QueueError::Backend(message.clone()),
        QueueError::Corrupt(message) => QueueError::Corrupt(message.clone()),
    }
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
        let coalescer = Coalescer::new("test", 10);
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
        let coalescer = Coalescer::new("test", 100);
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
        let coalescer = Coalescer::new("test", 4);
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
        let coalescer = Coalescer::new("test", 100);
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
        let coalescer = Coalescer::new("ack", 100);
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
        let coalescer = Coalescer::new("ack", 100);
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
    async fn a_caller_that_stops_waiting_does_not_strand_the_others() {
        let coalescer = Coalescer::new("test", 100);
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
