//! `hamster replay`: runs handlers against a recorded delivery, in process.

use crate::app::process::{EXIT_FAILED, EXIT_USAGE};
use crate::app::{self, config::Settings};
use clap::Args;
use hamster_core::engine::Engine;
use hamster_core::event::Event;
use hamster_core::memory::{MemoryQueue, MemoryStore};
use hamster_core::redact::Redactor;
use hamster_core::services::Services;
use hamster_core::store::{RunId, RunStatus};
use hamster_github::{GitHub, PullRequestEnricher, RecordingGitHub, WebhookParser};
use serde::Serialize;
use serde_json::Value;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// The flags of `hamster replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Handler file or directory; repeat for several.
    #[arg(long = "handlers", required = true, value_name = "PATH")]
    handlers: Vec<PathBuf>,
    /// The `X-GitHub-Event` of the delivery, e.g. `pull_request`.
    #[arg(long, value_name = "NAME")]
    event: String,
    /// The delivery's JSON body.
    #[arg(long, value_name = "FILE")]
    payload: PathBuf,
    /// Print the runs and the GitHub calls as one JSON document.
    #[arg(long)]
    json: bool,
    /// The `X-GitHub-Delivery` id (default: a random UUID).
    #[arg(long, value_name = "ID")]
    delivery: Option<String>,
}

/// What a replay did, as `--json` prints it.
#[derive(Debug, Serialize)]
struct Report {
    runs: Vec<RunReport>,
    github_calls: Vec<CallReport>,
}

#[derive(Debug, Serialize)]
struct RunReport {
    handler: String,
    status: RunStatus,
    steps: Vec<StepReport>,
    #[serde(skip)]
    error: Option<String>,
}

#[derive(Debug, Serialize)]
struct StepReport {
    name: String,
    action: String,
    status: hamster_core::store::StepStatus,
    output: Value,
}

#[derive(Debug, Serialize)]
struct CallReport {
    method: String,
    path: String,
    body: Value,
}

/// Why a replay could not run (exit code 2).
#[derive(Debug, thiserror::Error)]
enum ReplayError {
    #[error("cannot read the payload {path}: {source}")]
    Payload {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the delivery cannot be parsed: {0}")]
    Delivery(#[from] hamster_github::WebhookError),
    #[error("invalid header value: {0}")]
    Header(String),
    #[error(transparent)]
    App(#[from] app::AppError),
    #[error(transparent)]
    Engine(#[from] hamster_core::engine::EngineError),
    #[error(transparent)]
    Store(#[from] hamster_core::store::StoreError),
    #[error("cannot create a temporary git cache: {0}")]
    TempDir(#[source] std::io::Error),
}

/// Runs the replay and prints its report. Exit code 0 if every run succeeded, 1 if one
/// did not, 2 on a usage or configuration error.
pub async fn run(args: ReplayArgs, settings: Settings) -> ExitCode {
    match replay(&args, settings).await {
        Ok(report) => {
            if args.json {
                match serde_json::to_string_pretty(&report) {
                    Ok(json) => println!("{json}"),
                    Err(error) => {
                        eprintln!("error: cannot print the report: {error}");
                        return ExitCode::from(EXIT_FAILED);
                    }
                }
            } else {
                print_text(&report);
            }
            let all_succeeded = report
                .runs
                .iter()
                .all(|run| run.status == RunStatus::Succeeded);
            if all_succeeded {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_FAILED)
            }
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

async fn replay(args: &ReplayArgs, mut settings: Settings) -> Result<Report, ReplayError> {
    let body = tokio::fs::read(&args.payload)
        .await
        .map_err(|source| ReplayError::Payload {
            path: args.payload.clone(),
            source,
        })?;
    let delivery_id = args
        .delivery
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let mut headers = http::HeaderMap::new();
    for (name, value) in [
        ("x-github-event", args.event.as_str()),
        ("x-github-delivery", delivery_id.as_str()),
        ("content-type", "application/json"),
    ] {
        let value = http::HeaderValue::from_str(value)
            .map_err(|_| ReplayError::Header(format!("{name}: {value:?}")))?;
        headers.insert(name, value);
    }
    // The delivery was verified when it was recorded (or is hand-written): no signature.
    let delivery = WebhookParser::new(None).parse(&headers, &body)?;
    if delivery.is_ping() {
        eprintln!("this delivery is a ping: there is nothing to run");
    }

    // A replay leaves nothing behind: mirrors go to a temporary cache.
    let cache = tempfile::Builder::new()
        .prefix("hamster-replay-git-")
        .tempdir()
        .map_err(ReplayError::TempDir)?;
    settings.git_cache_dir = cache.path().to_owned();
    let recording = Arc::new(RecordingGitHub::new());
    let github: Arc<dyn GitHub> = recording.clone();
    let mut services = Services::new();
    services.insert::<dyn GitHub>(github.clone());
    let store = Arc::new(MemoryStore::new());
    let engine = Engine::builder(store, Arc::new(MemoryQueue::new()))
        .registry(app::action_registry()?)
        .workspaces(Arc::new(
            app::github::git_workspaces(&settings).map_err(app::AppError::from)?,
        ))
        .services(services)
        .enricher(Arc::new(PullRequestEnricher::new(github)))
        .redactor(Redactor::new(settings.secrets()))
        .build();
    let loaded = app::handlers::load_handlers(&args.handlers, engine.registry())
        .map_err(app::AppError::from)?;
    app::handlers::store_handlers(&engine, loaded).await?;

    let records: Vec<_> = delivery.events.iter().map(Event::to_record).collect();
    let dispatch = engine.dispatch(&records, None).await?;
    if dispatch.runs.is_empty() {
        let names: Vec<_> = records.iter().map(|r| r.name.as_str()).collect();
        eprintln!("no handler matched {}", names.join(", "));
        for unmatched in &dispatch.unmatched {
            eprintln!("  {}: {}", unmatched.handler, unmatched.reason);
        }
    }
    engine.run_until_idle().await?;

    let mut runs = Vec::with_capacity(dispatch.runs.len());
    for id in &dispatch.runs {
        runs.push(run_report(&engine, *id).await?);
    }
    let github_calls = recording
        .calls()
        .into_iter()
        .map(|call| CallReport {
            method: call.method,
            path: call.path,
            body: call.body,
        })
        .collect();
    Ok(Report { runs, github_calls })
}

async fn run_report(engine: &Engine, id: RunId) -> Result<RunReport, ReplayError> {
    let store = engine.store();
    let run = store
        .get_run(id)
        .await?
        .ok_or(hamster_core::engine::EngineError::RunNotFound(id))?;
    let steps = store
        .list_steps(id)
        .await?
        .into_iter()
        .map(|step| StepReport {
            output: step
                .data
                .get("output")
                .cloned()
                .or_else(|| step.error.clone().map(Value::String))
                .unwrap_or(Value::Null),
            name: step.name,
            action: step.action,
            status: step.status,
        })
        .collect();
    Ok(RunReport {
        handler: run.handler_name,
        status: run.status,
        steps,
        error: run.error,
    })
}

fn print_text(report: &Report) {
    for run in &report.runs {
        println!("{}: {}", run.handler, run.status.as_str());
        if let Some(error) = &run.error {
            println!("  error: {error}");
        }
        for step in &run.steps {
            println!(
                "  [{}] {} ({})",
                step.status.as_str(),
                step.name,
                step.action
            );
            let output = match &step.output {
                Value::Null => continue,
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            for line in output.trim_end().lines() {
                println!("      | {line}");
            }
        }
    }
    if report.github_calls.is_empty() {
        println!("no GitHub call");
    } else {
        println!("GitHub calls (recorded, not sent):");
        for call in &report.github_calls {
            println!("  {} {}", call.method, call.path);
            if !call.body.is_null() {
                println!("      {}", call.body);
            }
        }
    }
}
