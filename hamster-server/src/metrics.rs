//! Prometheus metrics, in a registry owned by one router (no global recorder, so several
//! routers, as in tests, never collide).

use hamster_core::queue::QueueStats;
use hamster_core::store::RunStatus;
use hamster_github::client::ClientStats;
use metrics::{Counter, Key, Label, Metadata, Recorder, SharedString, Unit};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Reads the GitHub client's counters for `/metrics`, e.g.
/// `Arc::new(move || Some(client.stats()))` for an `OctocrabGitHub`.
pub type GitHubStatsSource = Arc<dyn Fn() -> Option<ClientStats> + Send + Sync>;

const DELIVERIES: &str = "hamster_webhook_deliveries_total";
const RUNS_CREATED: &str = "hamster_runs_created_total";
const RUNS: &str = "hamster_runs";
const QUEUE_JOBS: &str = "hamster_queue_jobs";
const STEP_DURATION: &str = "hamster_step_duration_seconds";
const GITHUB_CALLS: &str = "hamster_github_api_calls_total";
const GITHUB_RETRIES: &str = "hamster_github_api_retries_total";
const GITHUB_RATE_LIMITED: &str = "hamster_github_api_rate_limited_total";
const GITHUB_RATE_LIMIT_REMAINING: &str = "hamster_github_rate_limit_remaining";

/// Step durations from a few milliseconds to an hour.
const STEP_BUCKETS: &[f64] = &[
    0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];

/// Histogram samples wait in lock-free buckets until rendered; draining them every so many
/// samples keeps memory bounded when nobody scrapes.
const UPKEEP_EVERY: u64 = 1024;

/// What became of a webhook delivery, as counted by `hamster_webhook_deliveries_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DeliveryOutcome {
    /// Runs were created.
    Runs,
    /// No handler matched.
    Unmatched,
    /// A redelivery.
    Duplicate,
    /// A `ping`.
    Ping,
    /// Bad or missing signature.
    Unauthorized,
    /// Malformed request.
    Malformed,
    /// Body over the limit.
    TooLarge,
    /// The store or queue failed.
    Unavailable,
}

impl DeliveryOutcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::Runs => "runs_created",
            Self::Unmatched => "unmatched",
            Self::Duplicate => "duplicate",
            Self::Ping => "ping",
            Self::Unauthorized => "unauthorized",
            Self::Malformed => "malformed",
            Self::TooLarge => "too_large",
            Self::Unavailable => "unavailable",
        }
    }
}

/// The server's metrics registry, rendered by `GET /metrics`. Cheap to clone; clones share
/// the registry.
///
/// Pass a clone in [`ServerConfig::metrics`](crate::ServerConfig::metrics) and keep one to
/// feed what the HTTP layer cannot see, such as step durations from a worker running in the
/// same process ([`observe_step`](Self::observe_step)).
#[derive(Clone)]
pub struct ServerMetrics {
    inner: Arc<Registry>,
}

struct Registry {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    runs_created: Counter,
    samples: AtomicU64,
}

impl std::fmt::Debug for ServerMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerMetrics").finish_non_exhaustive()
    }
}

impl Default for ServerMetrics {
    fn default() -> Self {
        Self::new()
    }
}

static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));

impl ServerMetrics {
    /// A fresh, empty registry.
    pub fn new() -> Self {
        let builder = PrometheusBuilder::new();
        // Bucket boundaries are constant and non-empty, so this cannot fail; fall back to a
        // summary rather than panic should that ever change.
        let builder = match builder
            .set_buckets_for_metric(Matcher::Full(STEP_DURATION.into()), STEP_BUCKETS)
        {
            Ok(builder) => builder,
            Err(error) => {
                tracing::warn!(%error, "step duration buckets refused; using a summary");
                PrometheusBuilder::new()
            }
        };
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        describe(&recorder);
        let runs_created = recorder.register_counter(&Key::from_name(RUNS_CREATED), &METADATA);
        Self {
            inner: Arc::new(Registry {
                recorder,
                handle,
                runs_created,
                samples: AtomicU64::new(0),
            }),
        }
    }

    /// Records how long a step ran, by action and final status (`success`, `failure`…).
    pub fn observe_step(&self, action: &str, status: &str, duration: Duration) {
        let key = Key::from_parts(
            STEP_DURATION,
            vec![
                Label::new("action", action.to_owned()),
                Label::new("status", status.to_owned()),
            ],
        );
        self.inner
            .recorder
            .register_histogram(&key, &METADATA)
            .record(duration.as_secs_f64());
        if self.inner.samples.fetch_add(1, Ordering::Relaxed) % UPKEEP_EVERY == UPKEEP_EVERY - 1 {
            self.inner.handle.run_upkeep();
        }
    }

    /// Counts one webhook delivery by event (`unverified` when it was refused before its
    /// headers could be trusted) and outcome.
    pub(crate) fn delivery(&self, event: &str, outcome: DeliveryOutcome) {
        let key = Key::from_parts(
            DELIVERIES,
            vec![
                Label::new("event", event.to_owned()),
                Label::new("outcome", outcome.as_str()),
            ],
        );
        self.inner
            .recorder
            .register_counter(&key, &METADATA)
            .increment(1);
    }

    /// Counts runs created (by deliveries, re-runs and re-processing).
    pub(crate) fn runs_created(&self, count: usize) {
        self.inner.runs_created.increment(count as u64);
    }

    /// Sets the gauges read from the store and the queue at scrape time.
    pub(crate) fn set_backend_state(
        &self,
        runs: Option<&BTreeMap<RunStatus, u64>>,
        queue: Option<&QueueStats>,
    ) {
        let recorder = &self.inner.recorder;
        if let Some(runs) = runs {
            for status in RunStatus::ALL {
                let key = Key::from_parts(RUNS, vec![Label::new("status", status.as_str())]);
                let count = runs.get(&status).copied().unwrap_or(0);
                recorder.register_gauge(&key, &METADATA).set(count as f64);
            }
        }
        if let Some(queue) = queue {
            for (state, count) in [
                ("ready", queue.ready),
                ("delayed", queue.delayed),
                ("leased", queue.leased),
                ("dead", queue.dead),
            ] {
                let key = Key::from_parts(QUEUE_JOBS, vec![Label::new("state", state)]);
                recorder.register_gauge(&key, &METADATA).set(count as f64);
            }
        }
    }

    /// Copies the GitHub client's counters.
    pub(crate) fn set_github(&self, stats: &ClientStats) {
        let recorder = &self.inner.recorder;
        for (outcome, count) in [
            ("succeeded", stats.succeeded),
            ("refused", stats.refused),
            ("unavailable", stats.unavailable),
            ("failed", stats.failed),
        ] {
            let key = Key::from_parts(GITHUB_CALLS, vec![Label::new("outcome", outcome)]);
            recorder.register_counter(&key, &METADATA).absolute(count);
        }
        recorder
            .register_counter(&Key::from_name(GITHUB_RETRIES), &METADATA)
            .absolute(stats.retries);
        recorder
            .register_counter(&Key::from_name(GITHUB_RATE_LIMITED), &METADATA)
            .absolute(stats.rate_limited);
        if let Some(remaining) = stats.rate_limit_remaining {
            recorder
                .register_gauge(&Key::from_name(GITHUB_RATE_LIMIT_REMAINING), &METADATA)
                .set(remaining as f64);
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        self.inner.handle.render()
    }
}

fn describe(recorder: &PrometheusRecorder) {
    let counters: [(&'static str, &'static str); 5] = [
        (
            DELIVERIES,
            "GitHub webhook deliveries received, by event and outcome.",
        ),
        (
            RUNS_CREATED,
            "Runs created by deliveries, re-runs and re-processing.",
        ),
        (GITHUB_CALLS, "GitHub API calls, by outcome."),
        (GITHUB_RETRIES, "GitHub API attempts beyond the first."),
        (
            GITHUB_RATE_LIMITED,
            "GitHub API responses that said the client was rate limited.",
        ),
    ];
    for (name, help) in counters {
        recorder.describe_counter(name.into(), None, SharedString::const_str(help));
    }
    let gauges: [(&'static str, &'static str); 3] = [
        (RUNS, "Runs in the store, by status."),
        (QUEUE_JOBS, "Jobs in the queue, by state."),
        (
            GITHUB_RATE_LIMIT_REMAINING,
            "The last x-ratelimit-remaining GitHub sent.",
        ),
    ];
    for (name, help) in gauges {
        recorder.describe_gauge(name.into(), None, SharedString::const_str(help));
    }
    recorder.describe_histogram(
        STEP_DURATION.into(),
        Some(Unit::Seconds),
        SharedString::const_str("How long steps ran, by action and status."),
    );
}
