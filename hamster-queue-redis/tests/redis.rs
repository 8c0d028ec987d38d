//! Behaviour of the Redis queue against a real Redis.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

mod common;

use common::{TestQueue, redis_available, redis_url};
use hamster_core::queue::{NewJob, Queue, QueueError, QueueStats, RetryOutcome};
use hamster_queue_redis::{ConnectError, RedisQueue, RedisQueueConfig};
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

const LEASE: Duration = Duration::from_secs(30);
const NO_WAIT: Duration = Duration::ZERO;

macro_rules! require_redis {
    ($name:expr) => {
        if !redis_available($name) {
            return;
        }
    };
}

fn stats(ready: u64, delayed: u64, leased: u64, dead: u64) -> QueueStats {
    QueueStats {
        ready,
        delayed,
        leased,
        dead,
    }
}

#[tokio::test]
async fn ready_jobs_come_out_in_enqueue_order_and_ack_removes_them() {
    require_redis!("ready_jobs_come_out_in_enqueue_order_and_ack_removes_them");
    let queue = TestQueue::new(|_| {}).await;
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(queue.enqueue(NewJob::new(json!({ "n": n }))).await.unwrap());
    }
    assert_eq!(queue.stats().await.unwrap(), stats(5, 0, 0, 0));
    for (n, id) in ids.iter().enumerate() {
        let lease = queue.receive(LEASE, NO_WAIT).await.unwrap().expect("a job");
        assert_eq!(&lease.job.id, id);
        assert_eq!(lease.job.payload, json!({ "n": n }));
        assert_eq!(lease.job.attempt, 1);
        assert_eq!(lease.job.max_attempts, 5);
        assert!(lease.expires_at > chrono::Utc::now() + chrono::Duration::seconds(25));
        queue.ack(&lease).await.unwrap();
        // A second ack has nothing left to ack.
        assert!(matches!(
            queue.ack(&lease).await,
            Err(QueueError::LeaseLost(_))
        ));
    }
    assert!(queue.receive(LEASE, NO_WAIT).await.unwrap().is_none());
    assert_eq!(queue.stats().await.unwrap(), QueueStats::default());
}

#[tokio::test]
async fn an_expired_lease_is_redelivered_with_the_next_attempt_then_dead_lettered() {
    require_redis!("an_expired_lease_is_redelivered_with_the_next_attempt_then_dead_lettered");
    let queue = TestQueue::new(|_| {}).await;
    let id = queue
        .enqueue(NewJob::new(json!("x")).max_attempts(2))
        .await
        .unwrap();
    let short = Duration::from_millis(100);
    let first = queue.receive(short, NO_WAIT).await.unwrap().unwrap();
    assert_eq!(first.job.attempt, 1);
    assert!(
        queue.receive(short, NO_WAIT).await.unwrap().is_none(),
        "leased jobs are not redelivered"
    );
    tokio::time::sleep(Duration::from_millis(150)).await;
    let second = queue
        .receive(short, Duration::from_secs(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((second.job.id.clone(), second.job.attempt), (id.clone(), 2));
    // The first owner lost the job.
    assert!(matches!(
        queue.ack(&first).await,
        Err(QueueError::LeaseLost(_))
    ));
    assert!(matches!(
        queue.extend(&first, LEASE).await,
        Err(QueueError::LeaseLost(_))
    ));
    assert!(matches!(
        queue.release(&first).await,
        Err(QueueError::LeaseLost(_))
    ));
    assert!(matches!(
        queue.retry(&first, NO_WAIT, "x").await,
        Err(QueueError::LeaseLost(_))
    ));
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(queue.stats().await.unwrap(), stats(0, 0, 0, 1));
    let dead = queue.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].job.id, id);
    assert_eq!(dead[0].job.attempt, 2);
    assert_eq!(dead[0].reason, "lease expired");
    assert!(matches!(
        queue.ack(&second).await,
        Err(QueueError::LeaseLost(_))
    ));
}

#[tokio::test]
async fn a_waiting_receive_notices_an_expiring_lease_without_being_woken() {
    require_redis!("a_waiting_receive_notices_an_expiring_lease_without_being_woken");
    let queue = TestQueue::new(|config| config.max_block = Duration::from_secs(30)).await;
    queue.enqueue(NewJob::new(json!(1))).await.unwrap();
    let held = queue
        .receive(Duration::from_millis(300), NO_WAIT)
        .await
        .unwrap()
        .unwrap();
    let started = Instant::now();
    let again = queue
        .receive(LEASE, Duration::from_secs(5))
        .await
        .unwrap()
        .unwrap();
    let waited = started.elapsed();
    assert_eq!((again.job.id, again.job.attempt), (held.job.id, 2));
    assert!(
        waited < Duration::from_secs(1),
        "waited {waited:?} for a 300 ms lease"
    );
}

#[tokio::test]
async fn extend_keeps_the_job_from_other_consumers() {
    require_redis!("extend_keeps_the_job_from_other_consumers");
    let queue = TestQueue::new(|_| {}).await;
    queue.enqueue(NewJob::new(json!(1))).await.unwrap();
    let lease = queue
        .receive(Duration::from_millis(200), NO_WAIT)
        .await
        .unwrap()
        .unwrap();
    let expires = queue.extend(&lease, Duration::from_secs(10)).await.unwrap();
    assert!(expires > lease.expires_at + chrono::Duration::seconds(5));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(queue.receive(LEASE, NO_WAIT).await.unwrap().is_none());
    queue.ack(&lease).await.unwrap();
}

#[tokio::test]
async fn retry_backs_off_then_dead_letters_and_requeue_starts_over() {
    require_redis!("retry_backs_off_then_dead_letters_and_requeue_starts_over");
    let queue = TestQueue::new(|_| {}).await;
    let id = queue
        .enqueue(NewJob::new(json!({"k": 1})).max_attempts(2))
        .await
        .unwrap();
    let lease = queue.receive(LEASE, NO_WAIT).await.unwrap().unwrap();
    let before = chrono::Utc::now();
    let RetryOutcome::Scheduled { at } = queue
        .retry(&lease, Duration::from_millis(300), "flaky")
        .await
        .unwrap()
    else {
        panic!("attempt 1 of 2 must be rescheduled");
    };
    assert!(
        at >= before + chrono::Duration::milliseconds(250),
        "{at} vs {before}"
    );
    assert_eq!(queue.stats().await.unwrap(), stats(0, 1, 0, 0));
    assert!(queue.receive(LEASE, NO_WAIT).await.unwrap().is_none());
    let lease = queue
        .receive(LEASE, Duration::from_secs(3))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(lease.job.attempt, 2);
    assert_eq!(
        queue.retry(&lease, NO_WAIT, "still flaky").await.unwrap(),
        RetryOutcome::DeadLettered
    );
    assert_eq!(queue.stats().await.unwrap(), stats(0, 0, 0, 1));
    let dead = queue.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].reason, "still flaky");
    assert_eq!(dead[0].job.payload, json!({"k": 1}));
    assert_eq!(dead[0].job.attempt, 2);

    assert!(
        !queue
            .requeue_dead_letter(&hamster_core::queue::JobId("nope".into()))
            .await
            .unwrap()
    );
    assert!(queue.requeue_dead_letter(&id).await.unwrap());
    assert!(
        !queue.requeue_dead_letter(&id).await.unwrap(),
        "no longer dead"
    );
    let lease = queue.receive(LEASE, NO_WAIT).await.unwrap().unwrap();
    assert_eq!((lease.job.id.clone(), lease.job.attempt), (id, 1));
    queue.ack(&lease).await.unwrap();
}

#[tokio::test]
async fn dead_letters_are_listed_oldest_first_up_to_the_limit() {
    require_redis!("dead_letters_are_listed_oldest_first_up_to_the_limit");
    let queue = TestQueue::new(|_| {}).await;
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(
            queue
                .enqueue(NewJob::new(json!(n)).max_attempts(1))
                .await
                .unwrap(),
        );
        let lease = queue.receive(LEASE, NO_WAIT).await.unwrap().unwrap();
        queue
            .retry(&lease, NO_WAIT, &format!("failure {n}"))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let dead = queue.dead_letters(2).await.unwrap();
    let listed: Vec<_> = dead.iter().map(|d| d.job.id.clone()).collect();
    assert_eq!(listed, ids[..2]);
    assert_eq!(dead[1].reason, "failure 1");
    assert!(queue.dead_letters(0).await.unwrap().is_empty());
    assert_eq!(queue.dead_letters(100).await.unwrap().len(), 3);
}

#[tokio::test]
async fn release_gives_the_job_back_first_without_counting_an_attempt() {
    require_redis!("release_gives_the_job_back_first_without_counting_an_attempt");
    let queue = TestQueue::new(|_| {}).await;
    let first = queue.enqueue(NewJob::new(json!(1))).await.unwrap();
    queue.enqueue(NewJob::new(json!(2))).await.unwrap();
    let lease = queue.receive(LEASE, NO_WAIT).await.unwrap().unwrap();
    queue.release(&lease).await.unwrap();
    assert!(matches!(
        queue.release(&lease).await,
        Err(QueueError::LeaseLost(_))
    ));
    let again = queue.receive(LEASE, NO_WAIT).await.unwrap().unwrap();
    assert_eq!((again.job.id, again.job.attempt), (first, 1));
    assert_ne!(again.token, lease.token);
}

#[tokio::test]
async fn delayed_jobs_wait_for_their_time() {
    require_redis!("delayed_jobs_wait_for_their_time");
    let queue = TestQueue::new(|_| {}).await;
    let later = chrono::Utc::now() + chrono::Duration::milliseconds(400);
    let delayed = queue
        .enqueue(NewJob::new(json!("later")).not_before(later))
        .await
        .unwrap();
    let past = chrono::Utc::now() - chrono::Duration::seconds(10);
    let now = queue
        .enqueue(NewJob::new(json!("now")).not_before(past))
        .await
        .unwrap();
    assert_eq!(queue.stats().await.unwrap(), stats(1, 1, 0, 0));
    let lease = queue.receive(LEASE, NO_WAIT).await.unwrap().unwrap();
    assert_eq!(lease.job.id, now);
    assert!(queue.receive(LEASE, NO_WAIT).await.unwrap().is_none());
    let lease = queue
        .receive(LEASE, Duration::from_secs(3))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(lease.job.id, delayed);
    assert!(chrono::Utc::now() >= later - chrono::Duration::milliseconds(50));
}

#[tokio::test]
async fn a_waiting_consumer_is_woken_by_an_enqueue_from_another_process() {
    require_redis!("a_waiting_consumer_is_woken_by_an_enqueue_from_another_process");
    let consumer =
        Arc::new(TestQueue::new(|config| config.max_block = Duration::from_secs(30)).await);
    let producer = RedisQueue::connect(&redis_url(), consumer.config().clone())
        .await
        .unwrap();
    let waiting = {
        let consumer = consumer.clone();
        tokio::spawn(async move {
            let lease = consumer.receive(LEASE, Duration::from_secs(10)).await;
            (lease, Instant::now())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let enqueued_at = Instant::now();
    let id = producer
        .enqueue(NewJob::new(json!("wake up")))
        .await
        .unwrap();
    let (lease, received_at) = waiting.await.unwrap();
    assert_eq!(lease.unwrap().unwrap().job.id, id);
    let latency = received_at - enqueued_at;
    assert!(
        latency < Duration::from_millis(200),
        "woken after {latency:?}"
    );
}

#[tokio::test]
async fn receive_returns_none_after_waiting_on_an_empty_queue() {
    require_redis!("receive_returns_none_after_waiting_on_an_empty_queue");
    let queue = TestQueue::new(|_| {}).await;
    let started = Instant::now();
    assert!(
        queue
            .receive(LEASE, Duration::from_millis(300))
            .await
            .unwrap()
            .is_none()
    );
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(290) && waited < Duration::from_millis(900),
        "{waited:?}"
    );
}

#[tokio::test]
async fn close_wakes_waiting_consumers_and_releases_prefetched_leases() {
    require_redis!("close_wakes_waiting_consumers_and_releases_prefetched_leases");
    let queue = Arc::new(TestQueue::new(|config| config.prefetch = 4).await);
    for n in 0..6 {
        queue.enqueue(NewJob::new(json!(n))).await.unwrap();
    }
    let lease = queue.receive(LEASE, NO_WAIT).await.unwrap().unwrap();
    assert_eq!(lease.job.payload, json!(0));
    assert_eq!(queue.stats().await.unwrap(), stats(2, 0, 4, 0));
    let next = queue.receive(LEASE, NO_WAIT).await.unwrap().unwrap();
    assert_eq!(
        next.job.payload,
        json!(1),
        "prefetched leases keep FIFO order"
    );
    queue.ack(&next).await.unwrap();

    let empty = TestQueue::new(|_| {}).await;
    let empty = Arc::new(empty);
    let waiting = {
        let empty = empty.clone();
        tokio::spawn(async move { empty.receive(LEASE, Duration::from_secs(20)).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    empty.close().await;
    assert!(waiting.await.unwrap().unwrap().is_none());
    assert!(started.elapsed() < Duration::from_secs(1));

    queue.close().await;
    // The two unused prefetched leases went back; the one handed out is still ours.
    assert_eq!(queue.stats().await.unwrap(), stats(4, 0, 1, 0));
    assert!(
        queue.receive(LEASE, NO_WAIT).await.unwrap().is_none(),
        "closed"
    );
    queue.ack(&lease).await.unwrap();
}

#[tokio::test]
async fn a_stale_prefetched_lease_is_released_not_handed_out() {
    require_redis!("a_stale_prefetched_lease_is_released_not_handed_out");
    let queue = TestQueue::new(|config| config.prefetch = 2).await;
    queue.enqueue(NewJob::new(json!(0))).await.unwrap();
    queue.enqueue(NewJob::new(json!(1))).await.unwrap();
    let first = queue
        .receive(Duration::from_millis(400), NO_WAIT)
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // 300 ms left of the prefetched lease, less than 90% of 400 ms: it is released and
    // leased again in full.
    let second = queue
        .receive(Duration::from_millis(400), NO_WAIT)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (second.job.payload.clone(), second.job.attempt),
        (json!(1), 1)
    );
    assert!(second.expires_at > first.expires_at + chrono::Duration::milliseconds(50));
    queue.ack(&second).await.unwrap();
}

#[tokio::test]
async fn enqueue_many_keeps_order_across_chunks() {
    require_redis!("enqueue_many_keeps_order_across_chunks");
    let queue = TestQueue::new(|config| config.prefetch = 64).await;
    let ids = queue
        .enqueue_many((0..1200).map(|n| NewJob::new(json!(n))))
        .await
        .unwrap();
    assert_eq!(ids.len(), 1200);
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 1200);
    for (n, id) in ids.iter().enumerate() {
        let lease = queue.receive(LEASE, NO_WAIT).await.unwrap().unwrap();
        assert_eq!((&lease.job.id, &lease.job.payload), (id, &json!(n)));
        queue.ack(&lease).await.unwrap();
    }
}

/// Every key a queue creates carries its hash tag, so a Redis Cluster puts them all in one
/// slot and the multi-key scripts are legal there.
#[tokio::test]
async fn every_key_shares_the_queue_hash_tag() {
    require_redis!("every_key_shares_the_queue_hash_tag");
    let queue = TestQueue::new(|_| {}).await;
    let prefix = queue.config().prefix.clone();
    // Put jobs in every state.
    for n in 0..4 {
        queue
            .enqueue(NewJob::new(json!(n)).max_attempts(1))
            .await
            .unwrap();
    }
    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    queue
        .enqueue(NewJob::new(json!("d")).not_before(later))
        .await
        .unwrap();
    let dead = queue.receive(LEASE, NO_WAIT).await.unwrap().unwrap();
    queue.retry(&dead, NO_WAIT, "x").await.unwrap();
    let _held = queue.receive(LEASE, NO_WAIT).await.unwrap().unwrap();

    let client = redis::Client::open(redis_url()).unwrap();
    let mut connection = client.get_connection().unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("*{prefix}*"))
        .query(&mut connection)
        .unwrap();
    assert!(keys.len() >= 8, "{keys:?}");
    let slot = hash_slot(&format!("{{{prefix}}}"));
    for key in &keys {
        assert!(key.starts_with(&format!("{{{prefix}}}:")), "{key}");
        assert_eq!(hash_slot(key), slot, "{key}");
    }
}

/// The Redis Cluster slot of a key (CRC16/XMODEM of its hash tag, modulo 16384).
fn hash_slot(key: &str) -> u16 {
    let bytes = key.as_bytes();
    let hashed = match key.find('{') {
        Some(open) => match key[open + 1..].find('}') {
            Some(len) if len > 0 => &bytes[open + 1..open + 1 + len],
            _ => bytes,
        },
        None => bytes,
    };
    let mut crc: u16 = 0;
    for &byte in hashed {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % 16384
}

#[test]
fn hash_slot_matches_redis_cluster() {
    // Values from the Redis Cluster specification / `CLUSTER KEYSLOT`.
    // CRC16/XMODEM("123456789") is 0x31C3, the reference check value.
    assert_eq!(hash_slot("123456789"), 0x31C3);
    assert_eq!(hash_slot("{user1000}.following"), hash_slot("user1000"));
    assert_eq!(hash_slot("foo"), 12182);
}

/// Many consumers racing on one queue never get the same job twice while leases hold, and
/// every job enqueued by concurrent producers is delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_consumers_never_share_a_job() {
    require_redis!("concurrent_consumers_never_share_a_job");
    let owner = TestQueue::new(|_| {}).await;
    let config = owner.config().clone();
    const PRODUCERS: usize = 3;
    const CONSUMERS: usize = 6;
    const JOBS_EACH: usize = 200;
    let mut producers = Vec::new();
    for p in 0..PRODUCERS {
        let queue = RedisQueue::connect(&redis_url(), config.clone())
            .await
            .unwrap();
        producers.push(tokio::spawn(async move {
            for n in 0..JOBS_EACH {
                queue.enqueue(NewJob::new(json!([p, n]))).await.unwrap();
            }
        }));
    }
    let mut consumers = Vec::new();
    for c in 0..CONSUMERS {
        // Half share one queue object (and its connection), half have their own.
        let mut config = config.clone();
        config.prefetch = if c % 2 == 0 { 1 } else { 3 };
        let queue = RedisQueue::connect(&redis_url(), config).await.unwrap();
        consumers.push(tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(lease) = queue
                .receive(LEASE, Duration::from_millis(500))
                .await
                .unwrap()
            {
                got.push(lease.job.payload.clone());
                queue.ack(&lease).await.unwrap();
            }
            got
        }));
    }
    for producer in producers {
        producer.await.unwrap();
    }
    let mut seen: HashMap<String, usize> = HashMap::new();
    for consumer in consumers {
        for payload in consumer.await.unwrap() {
            *seen.entry(payload.to_string()).or_default() += 1;
        }
    }
    assert_eq!(seen.len(), PRODUCERS * JOBS_EACH, "every job delivered");
    assert!(
        seen.values().all(|&count| count == 1),
        "no job delivered twice"
    );
    assert_eq!(owner.stats().await.unwrap(), QueueStats::default());
}

/// With leases expiring under the consumers' feet and jobs retried, failing and acked at
/// random, every job still ends up acked or dead-lettered, exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_job_is_lost_or_duplicated_under_churn() {
    require_redis!("no_job_is_lost_or_duplicated_under_churn");
    let owner = TestQueue::new(|_| {}).await;
    let config = owner.config().clone();
    const JOBS: usize = 300;
    let ids: HashSet<_> = owner
        .enqueue_many((0..JOBS).map(|n| NewJob::new(json!(n)).max_attempts(3)))
        .await
        .unwrap()
        .into_iter()
        .collect();
    let mut consumers = Vec::new();
    for _ in 0..4 {
        let queue = RedisQueue::connect(&redis_url(), config.clone())
            .await
            .unwrap();
        consumers.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            while let Some(lease) = queue
                .receive(Duration::from_millis(50), Duration::from_millis(400))
                .await
                .unwrap()
            {
                match fastrand::u8(0..10) {
                    // Abandon the lease: it expires and is redelivered or dead-lettered.
                    0 => {}
                    1 => tokio::time::sleep(Duration::from_millis(60)).await,
                    2..=3 => match queue
                        .retry(&lease, Duration::from_millis(5), "random")
                        .await
                    {
                        Ok(_) | Err(QueueError::LeaseLost(_)) => {}
                        Err(error) => panic!("{error}"),
                    },
                    4 => match queue.release(&lease).await {
                        Ok(()) | Err(QueueError::LeaseLost(_)) => {}
                        Err(error) => panic!("{error}"),
                    },
                    _ => match queue.ack(&lease).await {
                        Ok(()) => acked.push(lease.job.id.clone()),
                        Err(QueueError::LeaseLost(_)) => {}
                        Err(error) => panic!("{error}"),
                    },
                }
            }
            acked
        }));
    }
    let mut acked = Vec::new();
    for consumer in consumers {
        acked.extend(consumer.await.unwrap());
    }
    // Let the last abandoned leases expire and settle.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut leftovers = Vec::new();
    while let Some(lease) = owner
        .receive(LEASE, Duration::from_millis(200))
        .await
        .unwrap()
    {
        owner.ack(&lease).await.unwrap();
        leftovers.push(lease.job.id);
    }
    let dead: Vec<_> = owner
        .dead_letters(1000)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.job.id)
        .collect();
    let mut outcomes: HashMap<_, usize> = HashMap::new();
    for id in acked.iter().chain(&leftovers).chain(&dead) {
        *outcomes.entry(id.clone()).or_default() += 1;
    }
    assert_eq!(
        outcomes.keys().cloned().collect::<HashSet<_>>(),
        ids,
        "every job has an outcome"
    );
    assert!(
        outcomes.values().all(|&n| n == 1),
        "each job acked or dead exactly once"
    );
    assert_eq!(
        owner.stats().await.unwrap(),
        stats(0, 0, 0, dead.len() as u64)
    );
}

#[tokio::test]
async fn connecting_to_a_closed_port_fails_clearly_without_the_password() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let started = Instant::now();
    let error = RedisQueue::connect(
        &format!("redis://:hunter2secret@127.0.0.1:{port}"),
        RedisQueueConfig::new("closed"),
    )
    .await
    .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(
        matches!(error, ConnectError::Unreachable { .. }),
        "{error:?}"
    );
    let message = QueueError::from(error).to_string();
    assert!(
        message.contains(&format!("redis at 127.0.0.1:{port} is unreachable")),
        "{message}"
    );
    assert!(!message.contains("hunter2secret"), "{message}");
}

#[tokio::test]
async fn invalid_urls_and_prefixes_are_rejected_with_a_fix() {
    let error = RedisQueue::connect("http://:pw-secret@x", RedisQueueConfig::default())
        .await
        .unwrap_err();
    assert!(
        matches!(error, ConnectError::InvalidUrl { .. }),
        "{error:?}"
    );
    assert!(!error.to_string().contains("pw-secret"));
    assert!(error.to_string().contains("redis://"), "{error}");
    for prefix in ["", "a b", "a{b", "x*"] {
        let error = RedisQueue::connect(&redis_url(), RedisQueueConfig::new(prefix))
            .await
            .unwrap_err();
        assert!(
            matches!(error, ConnectError::InvalidPrefix { .. }),
            "{prefix:?}: {error:?}"
        );
    }
}

/// A TCP proxy in front of the test Redis that can be stopped and restarted on the same
/// port, to play "Redis is down".
struct Proxy {
    port: u16,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Proxy {
    async fn start(port: u16) -> Self {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let target = redis_url()
            .trim_start_matches("redis://")
            .rsplit('@')
            .next()
            .unwrap()
            .split('/')
            .next()
            .unwrap()
            .to_owned();
        let task = tokio::spawn(async move {
            // Aborting this task drops the set, which aborts every proxied connection.
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                let target = target.clone();
                connections.spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Self {
            port,
            task: Some(task),
        }
    }

    async fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

#[tokio::test]
async fn producers_get_a_clear_error_while_redis_is_down_and_recover_after() {
    require_redis!("producers_get_a_clear_error_while_redis_is_down_and_recover_after");
    let mut proxy = Proxy::start(0).await;
    let owner = TestQueue::new(|_| {}).await;
    let config = RedisQueueConfig {
        unavailable_timeout: Duration::from_millis(600),
        ..owner.config().clone()
    };
    let queue = RedisQueue::connect(&format!("redis://127.0.0.1:{}", proxy.port), config.clone())
        .await
        .unwrap();
    let mut accepted = vec![queue.enqueue(NewJob::new(json!(0))).await.unwrap()];

    proxy.stop().await;
    let started = Instant::now();
    let error = queue.enqueue(NewJob::new(json!(1))).await.unwrap_err();
    let took = started.elapsed();
    let message = error.to_string();
    assert!(
        message.contains(&format!("redis at 127.0.0.1:{} is unreachable", proxy.port)),
        "{message}"
    );
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert!(queue.receive(LEASE, NO_WAIT).await.is_err());

    // Redis is back: the same queue object works again, without being recreated.
    let _proxy = Proxy::start(proxy.port).await;
    let recovered = async {
        loop {
            match queue.enqueue(NewJob::new(json!(2))).await {
                Ok(id) => return id,
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    };
    accepted.push(
        tokio::time::timeout(Duration::from_secs(10), recovered)
            .await
            .expect("reconnected"),
    );
    // Everything that was acknowledged is there, in order.
    for id in accepted {
        let lease = owner.receive(LEASE, NO_WAIT).await.unwrap().unwrap();
        assert_eq!(lease.job.id, id);
        owner.ack(&lease).await.unwrap();
    }
}

/// Concurrent enqueues and acks on one queue object share script calls; each caller must
/// still get its own outcome: its own id, and `LeaseLost` only for its own lost lease, even
/// when the same lease is acked twice within one batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coalesced_enqueues_and_acks_each_get_their_own_outcome() {
    require_redis!("coalesced_enqueues_and_acks_each_get_their_own_outcome");
    const JOBS: usize = 300;
    let queue = TestQueue::new(|config| config.prefetch = 50).await;

    let enqueues = (0..JOBS).map(|n| queue.enqueue(NewJob::new(json!({ "n": n }))));
    let ids: Vec<_> = futures::future::join_all(enqueues)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), JOBS);
    assert_eq!(queue.stats().await.unwrap(), stats(JOBS as u64, 0, 0, 0));

    let mut leases = Vec::new();
    while let Some(lease) = queue.receive(LEASE, NO_WAIT).await.unwrap() {
        // The id each enqueue returned is the id of the job it enqueued.
        let n = lease.job.payload["n"].as_u64().unwrap() as usize;
        assert_eq!(lease.job.id, ids[n], "job {n}");
        leases.push(lease);
    }
    assert_eq!(leases.len(), JOBS);

    // Already acked: its second ack must be refused inside the batch.
    queue.ack(&leases[0]).await.unwrap();
    let mut acks: Vec<_> = leases.iter().map(|lease| queue.ack(lease)).collect();
    acks.push(queue.ack(&leases[7]));
    let outcomes = futures::future::join_all(acks).await;
    let lost: Vec<_> = outcomes
        .iter()
        .enumerate()
        .filter_map(|(index, outcome)| match outcome {
            Ok(()) => None,
            Err(QueueError::LeaseLost(id)) => Some((index, id.clone())),
            Err(error) => panic!("ack {index} failed: {error}"),
        })
        .collect();
    // Lease 0 (acked before), and exactly one of the two acks of lease 7.
    assert_eq!(lost.len(), 2, "{lost:?}");
    assert_eq!(lost[0], (0, leases[0].job.id.clone()));
    assert_eq!(lost[1].1, leases[7].job.id);
    assert!(lost[1].0 == 7 || lost[1].0 == JOBS, "{lost:?}");
    assert_eq!(queue.stats().await.unwrap(), QueueStats::default());
}
