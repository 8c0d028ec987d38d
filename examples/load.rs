//! A bounded load generator for Hamster's webhook intake.
//!
//! Posts a recorded delivery (default: the ~28 KB `pull_request/opened` fixture), signed,
//! with a unique `X-GitHub-Delivery` per request, from `--concurrency` connections until
//! `--count` deliveries were sent or `--duration` elapsed, and prints throughput, latency
//! percentiles and status codes. Optionally:
//!
//! - `--dispatch-samples N` first sends N deliveries one at a time (idle workers) and reads
//!   the store (`--sqlite FILE` or `--postgres URL --schema S`) for each run's
//!   `started_at − delivery.received_at`: the dispatch latency.
//! - `--pid PID` (repeatable) samples the resident memory (VmRSS) of server or worker
//!   processes before and during the load.
//!
//! ```sh
//! cargo run --release --example load -- --url http://127.0.0.1:8080/webhooks/github \
//!     --secret "$HAMSTER_GITHUB_WEBHOOK_SECRET" --count 20000 --concurrency 64
//! ```
//! `docs/benchmarks/intake.md` has the full procedure.

use clap::Parser;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Load generator for the webhook endpoint.
#[derive(Debug, Parser)]
struct Args {
    /// The webhook URL.
    #[arg(long, default_value = "http://127.0.0.1:8080/webhooks/github")]
    url: String,
    /// Webhook secret to sign with.
    #[arg(long, env = "HAMSTER_GITHUB_WEBHOOK_SECRET", hide_env_values = true)]
    secret: Option<String>,
    /// The `X-GitHub-Event`.
    #[arg(long, default_value = "pull_request")]
    event: String,
    /// The body to send.
    #[arg(
        long,
        default_value = "tests/fixtures/github-webhooks/pull_request/opened.payload.json"
    )]
    payload: PathBuf,
    /// Deliveries to send (at most).
    #[arg(long, default_value_t = 20_000)]
    count: usize,
    /// Seconds to send for (at most).
    #[arg(long, default_value_t = 60)]
    duration: u64,
    /// Concurrent connections.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Deliveries sent (and not measured) before the measurement, to warm up connections.
    #[arg(long, default_value_t = 500)]
    warmup: usize,
    /// Deliveries sent one at a time before the load, to measure dispatch latency.
    #[arg(long, default_value_t = 0)]
    dispatch_samples: usize,
    /// The SQLite file of `hamster serve`, for dispatch latency.
    #[arg(long)]
    sqlite: Option<PathBuf>,
    /// PostgreSQL URL, for dispatch latency.
    #[arg(long)]
    postgres: Option<String>,
    /// PostgreSQL schema, with --postgres.
    #[arg(long)]
    schema: Option<String>,
    /// Process ids whose VmRSS is reported.
    #[arg(long = "pid")]
    pids: Vec<u32>,
}

fn sign(secret: &str, body: &[u8]) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        unreachable!("HMAC takes keys of any length");
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

#[derive(Clone)]
struct Sender {
    client: reqwest::Client,
    url: String,
    event: String,
    body: bytes::Bytes,
    signature: Option<String>,
    prefix: String,
}

impl Sender {
    async fn send(&self, index: usize) -> Result<u16, reqwest::Error> {
        let mut request = self
            .client
            .post(&self.url)
            .header("X-GitHub-Event", &self.event)
            .header("X-GitHub-Delivery", format!("{}-{index}", self.prefix))
            .header("Content-Type", "application/json")
            .header("User-Agent", "GitHub-Hookshot/hamster-load");
        if let Some(signature) = &self.signature {
            request = request.header("X-Hub-Signature-256", signature);
        }
        let response = request.body(self.body.clone()).send().await?;
        let status = response.status().as_u16();
        // Read the body so the connection is reused.
        let _ = response.bytes().await?;
        Ok(status)
    }
}

/// Sends `count` deliveries from `concurrency` tasks (or until `deadline`); returns the
/// latencies and the status counts.
async fn blast(
    sender: &Sender,
    first_index: usize,
    count: usize,
    concurrency: usize,
    deadline: Instant,
) -> (Vec<Duration>, BTreeMap<String, usize>, Duration) {
    let next = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let sender = sender.clone();
        let next = next.clone();
        let stop = stop.clone();
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            let mut statuses: BTreeMap<String, usize> = BTreeMap::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count || stop.load(Ordering::Relaxed) {
                    break;
                }
                if Instant::now() > deadline {
                    stop.store(true, Ordering::Relaxed);
                    break;
                }
                let sent = Instant::now();
                let key = match sender.send(first_index + i).await {
                    Ok(status) => status.to_string(),
                    Err(error) => format!("error: {error}"),
                };
                latencies.push(sent.elapsed());
                *statuses.entry(key).or_default() += 1;
            }
            (latencies, statuses)
        });
    }
    let mut latencies = Vec::new();
    let mut statuses = BTreeMap::new();
    while let Some(joined) = tasks.join_next().await {
        if let Ok((l, s)) = joined {
            latencies.extend(l);
            for (k, v) in s {
                *statuses.entry(k).or_default() += v;
            }
        }
    }
    let elapsed = started.elapsed();
    latencies.sort();
    (latencies, statuses, elapsed)
}

async fn open_store(args: &Args) -> Option<Arc<dyn hamster::core::store::Store>> {
    if let Some(path) = &args.sqlite {
        match hamster::store_sqlite::SqliteBackend::open(path).await {
            Ok(backend) => return Some(Arc::new(backend)),
            Err(error) => eprintln!("cannot open {}: {error}", path.display()),
        }
    }
    if let Some(url) = &args.postgres {
        let config = hamster::store_postgres::PostgresConfig {
            schema: args.schema.clone(),
            max_connections: 2,
            ..Default::default()
        };
        match hamster::store_postgres::PostgresStore::connect(url, config).await {
            Ok(store) => return Some(Arc::new(store)),
            Err(error) => eprintln!("cannot connect to PostgreSQL: {error}"),
        }
    }
    None
}

/// Sends deliveries one at a time and measures, from the store, how long each waited
/// between its arrival and its run starting on a worker.
async fn dispatch_latency(args: &Args, sender: &Sender) {
    let Some(store) = open_store(args).await else {
        eprintln!("--dispatch-samples needs --sqlite FILE or --postgres URL");
        return;
    };
    let mut ids = Vec::new();
    for i in 0..args.dispatch_samples {
        let index = usize::MAX / 2 + i;
        match sender.send(index).await {
            Ok(202) => ids.push(format!("{}-{index}", sender.prefix)),
            Ok(status) => eprintln!("dispatch sample {i}: HTTP {status} (no run created?)"),
            Err(error) => eprintln!("dispatch sample {i}: {error}"),
        }
        // Let the worker go idle again between samples.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut waits = Vec::new();
    for id in &ids {
        let Ok(Some(delivery)) = store.get_delivery(id).await else {
            continue;
        };
        for run_id in &delivery.run_ids {
            if let Ok(Some(run)) = store.get_run(*run_id).await
                && let Some(started) = run.started_at
                && let Ok(wait) = (started - delivery.received_at).to_std()
            {
                waits.push(wait);
            }
        }
    }
    waits.sort();
    println!(
        "dispatch latency (delivery received_at -> run started_at), {} runs: median {}, p90 {}, max {}",
        waits.len(),
        ms(percentile(&waits, 50.0)),
        ms(percentile(&waits, 90.0)),
        ms(waits.last().copied().unwrap_or_default())
    );
}

fn print_rss(args: &Args, when: &str) {
    for pid in &args.pids {
        match rss_kib(*pid) {
            Some(kib) => println!("RSS {when}: pid {pid}: {:.1} MiB", kib as f64 / 1024.0),
            None => println!("RSS {when}: pid {pid}: not readable"),
        }
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = Args::parse();
    let body = match std::fs::read(&args.payload) {
        Ok(body) => bytes::Bytes::from(body),
        Err(error) => {
            eprintln!("cannot read {}: {error}", args.payload.display());
            return std::process::ExitCode::from(2);
        }
    };
    let client = match reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(args.concurrency)
        .build()
    {
        Ok(client) => client,
        Err(error) => {
            eprintln!("cannot build the HTTP client: {error}");
            return std::process::ExitCode::from(1);
        }
    };
    let sender = Sender {
        client,
        url: args.url.clone(),
        event: args.event.clone(),
        signature: args.secret.as_deref().map(|s| sign(s, &body)),
        prefix: format!("load-{}", uuid::Uuid::new_v4().simple()),
        body,
    };
    println!(
        "payload {} ({} bytes), {} connection(s), signed: {}",
        args.payload.display(),
        sender.body.len(),
        args.concurrency,
        sender.signature.is_some()
    );
    print_rss(&args, "before");
    if args.dispatch_samples > 0 {
        dispatch_latency(&args, &sender).await;
    }
    let far = Instant::now() + Duration::from_secs(3600);
    if args.warmup > 0 {
        blast(&sender, usize::MAX / 4, args.warmup, args.concurrency, far).await;
    }
    let peaks: Arc<std::sync::Mutex<BTreeMap<u32, u64>>> = Arc::default();
    let sampler = {
        let pids = args.pids.clone();
        let peaks = peaks.clone();
        tokio::spawn(async move {
            loop {
                for pid in &pids {
                    if let (Some(kib), Ok(mut peaks)) = (rss_kib(*pid), peaks.lock()) {
                        let entry = peaks.entry(*pid).or_default();
                        *entry = (*entry).max(kib);
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(args.duration);
    let (latencies, statuses, elapsed) =
        blast(&sender, 0, args.count, args.concurrency, deadline).await;
    sampler.abort();
    if let Ok(peaks) = peaks.lock() {
        for (pid, kib) in peaks.iter() {
            println!(
                "RSS peak during load: pid {pid}: {:.1} MiB",
                *kib as f64 / 1024.0
            );
        }
    }
    let sent = latencies.len();
    println!(
        "sent {sent} deliveries in {:.2} s: {:.0} deliveries/s",
        elapsed.as_secs_f64(),
        sent as f64 / elapsed.as_secs_f64()
    );
    println!(
        "latency: p50 {}, p90 {}, p99 {}, max {}",
        ms(percentile(&latencies, 50.0)),
        ms(percentile(&latencies, 90.0)),
        ms(percentile(&latencies, 99.0)),
        ms(latencies.last().copied().unwrap_or_default())
    );
    println!("status codes: {statuses:?}");
    print_rss(&args, "after");
    let ok = statuses
        .keys()
        .all(|status| status == "202" || status == "200");
    if ok {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::from(1)
    }
}
