//! End-to-end throughput: one producer task enqueues small jobs while one consumer task
//! receives and acks them, against the Redis at `HAMSTER_TEST_REDIS_URL`
//! (default `redis://127.0.0.1:6379`). Prints jobs/s per scenario, then `redis-benchmark`'s
//! figures for plain commands on the same server, for comparison.
//!
//! `cargo bench -p hamster-queue-redis --bench throughput [-- <jobs per scenario>]`

use futures::StreamExt;
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
}

fn url() -> String {
    std::env::var("HAMSTER_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

async fn run(scenario: Scenario, jobs: usize) -> Result<f64, Box<dyn std::error::Error>> {
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
    let mut acked = 0;
    while acked < jobs {
        if let Some(lease) = consumer.receive(LEASE, Duration::from_secs(5)).await? {
            consumer.ack(&lease).await?;
            acked += 1;
        } else {
            return Err("the consumer waited 5 s for a job".into());
        }
    }
    let elapsed = started.elapsed();
    let producer = producing.await??;
    producer.purge().await?;
    Ok(jobs as f64 / elapsed.as_secs_f64())
}

/// Each side alone, to show where the time goes: enqueues (64 in flight) into an idle queue,
/// then receive + ack (prefetch 32) of the jobs already there.
async fn split(jobs: usize) -> Result<(), Box<dyn std::error::Error>> {
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
    let started = Instant::now();
    let mut enqueues = futures::stream::iter(0..jobs)
        .map(|n| producer.enqueue(NewJob::new(json!({ "run": n }))))
        .buffer_unordered(64);
    while let Some(outcome) = enqueues.next().await {
        outcome?;
    }
    let enqueue_rate = jobs as f64 / started.elapsed().as_secs_f64();
    let started = Instant::now();
    for _ in 0..jobs {
        let lease = consumer
            .receive(LEASE, Duration::ZERO)
            .await?
            .ok_or("missing job")?;
        consumer.ack(&lease).await?;
    }
    let consume_rate = jobs as f64 / started.elapsed().as_secs_f64();
    producer.purge().await?;
    println!(
        "alone: enqueue (64 in flight) {enqueue_rate:>8.0} jobs/s; receive+ack (prefetch 32) {consume_rate:>8.0} jobs/s"
    );
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
    let scenarios = [
        Scenario {
            producer: Producer::Sequential,
            prefetch: 1,
        },
        Scenario {
            producer: Producer::InFlight(64),
            prefetch: 1,
        },
        Scenario {
            producer: Producer::InFlight(64),
            prefetch: 32,
        },
        Scenario {
            producer: Producer::Batches(100),
            prefetch: 32,
        },
    ];
    println!(
        "{jobs} jobs per scenario; enqueue → receive → ack, one producer task, one consumer task"
    );
    for scenario in scenarios {
        let rate = runtime.block_on(run(scenario, jobs))?;
        println!(
            "producer {:<14} consumer prefetch {:>2}: {:>8.0} jobs/s",
            format!("{:?}", scenario.producer),
            scenario.prefetch,
            rate
        );
    }
    runtime.block_on(split(jobs))?;
    redis_benchmark();
    Ok(())
}
