//! End-to-end throughput: one producer task enqueues small jobs while one consumer task
//! receives and acks them, against the Redis at `HAMSTER_TEST_REDIS_URL`
//! (default `redis://127.0.0.1:6379`). Prints jobs/s per scenario, then `redis-benchmark`'s
//! figures for plain commands on the same server, for comparison.
//!
//! The consumer receives leases one after the other (as a worker's receive loop does) and
//! keeps up to `in_flight` of them being processed and acked at once, still in one task (as
//! a worker with `concurrency = in_flight` does with its job tasks). "Processing" reads the
//! payload; every job's `run` number is summed and checked, and the queue must be empty at
//! the end, so a lost, duplicated or unacked job fails the bench.
//!
//! `cargo bench -p hamster-queue-redis --bench throughput [-- <jobs per scenario>]`

use futures::{StreamExt, TryStreamExt};
use hamster_core::queue::{NewJob, Queue};
use hamster_queue_redis::{RedisQueue, RedisQueueConfig};
use serde_json::json;
use std::time::{Duration, Instant};

const LEASE: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, Debug)]
enum Producer {
    /// One `enqueue` at a time.
    Sequential,
    /// Up to this many `enqueue`s in flight on the multiplexed connection.
    InFlight(usize),
    /// `enqueue_many` in batches of this size.
    Batches(usize),
}

#[derive(Clone, Copy, Debug)]
struct Scenario {
    producer: Producer,
    prefetch: u32,
    /// Leases being processed and acked at once by the consumer task.
    in_flight: usize,
}

type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

/// Receives, processes and acks `jobs` jobs with up to `in_flight` acks outstanding; checks
/// that the payloads were exactly `{"run": 0..jobs}` once each.
async fn consume(
    consumer: &RedisQueue,
    jobs: usize,
    in_flight: usize,
    wait: Duration,
) -> BenchResult<()> {
    let leases = futures::stream::try_unfold(0, |received| async move {
        if received == jobs {
            return Ok(None);
        }
        match consumer.receive(LEASE, wait).await? {
            Some(lease) => Ok(Some((lease, received + 1))),
            None => Err(format!("the consumer waited {wait:?} for a job").into()),
        }
    });
    let processed = leases
        .map_ok(|lease| async move {
            let run = lease.job.payload["run"]
                .as_u64()
                .ok_or("a job without its run number")?;
            consumer.ack(&lease).await?;
            Ok::<_, Box<dyn std::error::Error>>(run)
        })
        .try_buffer_unordered(in_flight.max(1));
    let mut processed = std::pin::pin!(processed);
    let (mut count, mut sum) = (0u64, 0u64);
    while let Some(run) = processed.try_next().await? {
        count += 1;
        sum += run;
    }
    let jobs = jobs as u64;
    if count != jobs || sum != jobs * jobs.saturating_sub(1) / 2 {
        return Err(format!(
            "expected runs 0..{jobs} once each, got {count} jobs summing to {sum}"
        )
        .into());
    }
    let left = consumer.stats().await?;
    if left != Default::default() {
        return Err(format!("the queue is not empty after the run: {left:?}").into());
    }
    Ok(())
}

fn url() -> String {
    std::env::var("HAMSTER_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

async fn run(scenario: Scenario, jobs: usize) -> BenchResult<f64> {
    let prefix = format!("hamster-bench-{}", uuid::Uuid::new_v4().simple());
    let consumer_config = RedisQueueConfig {
        prefetch: scenario.prefetch,
        ..RedisQueueConfig::new(&prefix)
    };
    // Separate queue objects, hence connections: as an appserver and a worker would be.
    let producer = RedisQueue::connect(&url(), RedisQueueConfig::new(&prefix)).await?;
    let consumer = RedisQueue::connect(&url(), consumer_config).await?;
    let job = |n: usize| NewJob::new(json!({ "run": n }));

    let started = Instant::now();
    let producing = tokio::spawn(async move {
        match scenario.producer {
            Producer::Sequential => {
                for n in 0..jobs {
                    producer.enqueue(job(n)).await?;
                }
            }
            Producer::InFlight(depth) => {
                let mut enqueues = futures::stream::iter(0..jobs)
                    .map(|n| producer.enqueue(job(n)))
                    .buffer_unordered(depth);
                while let Some(outcome) = enqueues.next().await {
                    outcome?;
                }
            }
            Producer::Batches(size) => {
                for start in (0..jobs).step_by(size) {
                    producer
                        .enqueue_many((start..(start + size).min(jobs)).map(job))
                        .await?;
                }
            }
        }
        Ok::<_, hamster_core::queue::QueueError>(producer)
    });
    consume(&consumer, jobs, scenario.in_flight, Duration::from_secs(5)).await?;
    let elapsed = started.elapsed();
    let producer = producing.await??;
    producer.purge().await?;
    Ok(jobs as f64 / elapsed.as_secs_f64())
}

/// Each side alone, to show where the time goes: enqueues (64 in flight) into an idle queue,
/// then receive + ack (prefetch 32) of the jobs already there, one at a time and 64 at once.
async fn split(jobs: usize) -> BenchResult<()> {
    let prefix = format!("hamster-bench-{}", uuid::Uuid::new_v4().simple());
    let producer = RedisQueue::connect(&url(), RedisQueueConfig::new(&prefix)).await?;
    let consumer = RedisQueue::connect(
        &url(),
        RedisQueueConfig {
            prefetch: 32,
            ..RedisQueueConfig::new(&prefix)
        },
    )
    .await?;
    let mut rates = Vec::new();
    for in_flight in [1, 64] {
        let started = Instant::now();
        let mut enqueues = futures::stream::iter(0..jobs)
            .map(|n| producer.enqueue(NewJob::new(json!({ "run": n }))))
            .buffer_unordered(64);
        while let Some(outcome) = enqueues.next().await {
            outcome?;
        }
        let enqueue_rate = jobs as f64 / started.elapsed().as_secs_f64();
        let started = Instant::now();
        consume(&consumer, jobs, in_flight, Duration::ZERO).await?;
        rates.push((
            enqueue_rate,
            in_flight,
            jobs as f64 / started.elapsed().as_secs_f64(),
        ));
    }
    producer.purge().await?;
    for (enqueue_rate, in_flight, consume_rate) in rates {
        println!(
            "alone: enqueue (64 in flight) {enqueue_rate:>8.0} jobs/s; receive+ack (prefetch 32, {in_flight:>2} in flight) {consume_rate:>8.0} jobs/s"
        );
    }
    Ok(())
}

fn redis_benchmark() {
    let address = url();
    let host_port = address
        .trim_start_matches("redis://")
        .rsplit('@')
        .next()
        .unwrap_or("127.0.0.1:6379")
        .split('/')
        .next()
        .unwrap_or("127.0.0.1:6379")
        .to_owned();
    let (host, port) = host_port.split_once(':').unwrap_or((&host_port, "6379"));
    for (label, extra) in [("50 clients", &[][..]), ("1 client", &["-c", "1"][..])] {
        let output = std::process::Command::new("redis-benchmark")
            .args([
                "-h",
                host,
                "-p",
                port,
                "-q",
                "-n",
                "100000",
                "-t",
                "set,lpush,lpop",
            ])
            .args(extra)
            .output();
        match output {
            Ok(output) => {
                println!("redis-benchmark -q -n 100000 -t set,lpush,lpop ({label}):");
                for line in String::from_utf8_lossy(&output.stdout).split(['\r', '\n']) {
                    if line.contains("requests per second") {
                        println!("  {}", line.trim());
                    }
                }
            }
            Err(error) => println!("redis-benchmark not run: {error}"),
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // `cargo bench` passes `--bench`; a bare number sets the jobs per scenario.
    let jobs = std::env::args()
        .skip(1)
        .find_map(|arg| arg.parse().ok())
        .unwrap_or(50_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let scenario = |producer, prefetch, in_flight| Scenario {
        producer,
        prefetch,
        in_flight,
    };
    let scenarios = [
        // Everything one at a time: the latency-bound baseline.
        scenario(Producer::Sequential, 1, 1),
        scenario(Producer::InFlight(64), 32, 1),
        scenario(Producer::Batches(100), 32, 1),
        // Acks overlap with receives, as in a worker with concurrency 64.
        scenario(Producer::InFlight(64), 1, 64),
        scenario(Producer::InFlight(64), 32, 64),
        scenario(Producer::Batches(100), 32, 64),
    ];
    println!(
        "{jobs} jobs per scenario; enqueue → receive → ack, one producer task, one consumer task"
    );
    for scenario in scenarios {
        let rate = runtime.block_on(run(scenario, jobs))?;
        println!(
            "producer {:<14} consumer prefetch {:>2}, {:>2} in flight: {:>8.0} jobs/s",
            format!("{:?}", scenario.producer),
            scenario.prefetch,
            scenario.in_flight,
            rate
        );
    }
    runtime.block_on(split(jobs))?;
    redis_benchmark();
    Ok(())
}
