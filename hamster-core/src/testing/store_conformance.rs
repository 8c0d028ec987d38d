//! The store conformance suite: every clause of the [`Store`] contract, checked against a
//! backend.
//!
//! ```no_run
//! use hamster_core::memory::MemoryStore;
//! use hamster_core::testing::store_conformance;
//!
//! // In a `#[tokio::test(flavor = "multi_thread", worker_threads = 4)]` test; the closure
//! // must return a fresh, empty store each time it is called.
//! # async fn conforms() {
//! store_conformance(|| async { MemoryStore::new() }).await;
//! # }
//! ```
//!
//! How the suite reads the contract where a backend could reasonably differ:
//! - Timestamps are compared at millisecond precision (within 1 ms of each other), because
//!   SQL backends may store microseconds and round. The sample builders create timestamps
//!   that are whole milliseconds.
//! - Handler names in the suite are lowercase ASCII, so "sorted by name" means the same in
//!   byte order and in any database collation.
//! - JSON objects compare as maps: key order need not survive (PostgreSQL `jsonb`
//!   reorders keys). The suite never stores NUL characters, which PostgreSQL text rejects.
//! - `read_log` may return a log in several chunks; the suite reads until it gets an empty
//!   chunk. An offset that falls inside a UTF-8 character must read from the next
//!   character boundary.
//! - Transitioning an unknown run may return `Ok(None)` or [`StoreError::NotFound`];
//!   [`Store::add_delivery_runs`] on an unknown delivery must fail with
//!   [`StoreError::NotFound`].
//! - A missing status in [`Store::count_runs_by_status`] counts as zero.
//! - The concurrency check races tasks with `tokio::spawn`: run the suite on a
//!   multi-threaded runtime for it to race for real.

use crate::event::{Checkout, EventRecord, Repository, SourceRecord};
use crate::handler::{HandlerSpec, StepSpec};
use crate::store::{
    DeliveryOutcome, DeliveryRecord, HandlerRecord, LogChunk, RunFilter, RunId, RunRecord,
    RunStatus, StepRecord, StepStatus, Store, StoreError,
};
use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use serde_json::json;
use std::collections::BTreeMap;
use std::fmt::{Debug, Display};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// Runs every store conformance check, each against a fresh, empty store from `new_store`.
///
/// Prints each check's name to stderr as it starts, and panics with
/// `store conformance: <check>: <expected vs got>` at the first failure.
pub async fn store_conformance<S, F, Fut>(new_store: F)
where
    S: Store + 'static,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    macro_rules! run_checks {
        ($($check:ident),* $(,)?) => {$(
            eprintln!("store conformance: {}", stringify!($check));
            $check(Check(stringify!($check)), new_store().await).await;
        )*};
    }
    run_checks!(
        ping,
        handler_create_and_get,
        handler_duplicate_name,
        handler_update_and_versions,
        handler_update_conflict,
        handler_rename,
        handler_enable,
        handler_delete_keeps_runs,
        handler_list_sorted_by_name,
        handlers_revision_changes,
        delivery_recorded_with_runs,
        delivery_body_as_payload_reads_back_whole,
        delivery_duplicate_writes_nothing,
        delivery_atomic_on_failure,
        delivery_list_newest_first,
        delivery_add_runs,
        run_record_round_trip,
        run_list_filters,
        run_list_paging_and_limits,
        transition_compare_and_set,
        transition_timestamps,
        transition_concurrent_single_winner,
        steps_upsert_keeps_first_order,
        step_data_round_trip,
        logs_append_and_offsets,
        logs_large,
        counts_by_status,
    );
}

/// A handler spec that uses every field, for tests and conformance suites.
pub fn sample_handler(name: &str) -> HandlerSpec {
    HandlerSpec {
        name: name.to_owned(),
        description: Some(format!(
            "Lints pull requests — {name} ✓ «quotes\" \\ and\ttabs»"
        )),
        events: vec![
            "pull_request.opened".to_owned(),
            "pull_request.reopened".to_owned(),
            "issue_comment.*".to_owned(),
        ],
        criteria: Some("source.repository is Hello-World and event.action != 'closed'".into()),
        enabled: true,
        env: BTreeMap::from([
            ("GREETING".to_owned(), "{{ source.title }} 🐹".to_owned()),
            ("RUST_LOG".to_owned(), "debug".to_owned()),
        ]),
        actions: vec![
            StepSpec {
                action: "shell_command".to_owned(),
                name: Some("linter".to_owned()),
                args: json!(["pylint ./", "echo 'ünïcödé ✓'"]),
                on_success: vec![StepSpec {
                    action: "comment".to_owned(),
                    name: None,
                    args: json!({"body": "Lint passed ✅", "nested": {"list": [1, -2, 2.5, true, null]}}),
                    on_success: Vec::new(),
                    on_failure: Vec::new(),
                    timeout: None,
                    continue_on_failure: false,
                }],
                on_failure: vec![StepSpec {
                    action: "set_status".to_owned(),
                    name: Some("report".to_owned()),
                    args: json!({"state": "failure", "description": "{{ linter.output }}"}),
                    on_success: Vec::new(),
                    on_failure: Vec::new(),
                    timeout: Some(Duration::from_secs(30)),
                    continue_on_failure: false,
                }],
                timeout: Some(Duration::from_secs(90)),
                continue_on_failure: true,
            },
            StepSpec {
                action: "shell_command".to_owned(),
                name: Some("tests".to_owned()),
                args: json!(["cargo test"]),
                on_success: Vec::new(),
                on_failure: Vec::new(),
                timeout: Some(Duration::from_secs(3600)),
                continue_on_failure: false,
            },
        ],
    }
}

/// A queued run of `handler` for a `pull_request.opened` event in `repository`
/// (`owner/name`), with a fresh id and `created_at` now, in whole milliseconds.
pub fn sample_run(handler: &HandlerRecord, repository: &str) -> RunRecord {
    let (owner, name) = repository.split_once('/').unwrap_or((repository, ""));
    let repo = Repository {
        host: "github.com".to_owned(),
        owner: owner.to_owned(),
        name: name.to_owned(),
        clone_url: Some(format!("https://github.com/{repository}.git")),
        ssh_url: Some(format!("git@github.com:{repository}.git")),
    };
    let head_sha = "6dcb09b5b57875f334f61aebed695e2e4193db5e";
    RunRecord {
        id: RunId::new(),
        handler_id: handler.id,
        handler_name: handler.name.clone(),
        handler_version: handler.version,
        handler: handler.spec.clone(),
        event: EventRecord {
            name: "pull_request.opened".to_owned(),
            delivery_id: None,
            source: SourceRecord {
                kind: "pull_request".to_owned(),
                repository: repo.clone(),
                fields: json!({
                    "number": 7,
                    "title": "Ajoute l'ünïcode 🐹 — 中文",
                    "head": {"sha": head_sha, "ref": "feature/x"},
                    "labels": ["bug", "help wanted"],
                })
                .into(),
                checkout: Some(Checkout {
                    repository: repo,
                    fetch_ref: Some("refs/pull/7/head".to_owned()),
                    sha: Some(head_sha.to_owned()),
                }),
                deferred: vec!["mergeable".to_owned()],
            },
            data: json!({"action": "opened", "sender": {"login": "octocat", "id": 583231}}).into(),
        },
        repository: repository.to_owned(),
        delivery_id: None,
        status: RunStatus::Queued,
        created_at: now_ms(),
        started_at: None,
        finished_at: None,
        error: None,
    }
}

fn now_ms() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(3)
}

/// The check being run, to name it in failures.
#[derive(Clone, Copy, Debug)]
struct Check(&'static str);

impl Check {
    #[track_caller]
    fn fail(self, message: impl Display) -> ! {
        panic!("store conformance: {}: {message}", self.0)
    }

    #[track_caller]
    fn ok<T>(self, what: &str, result: Result<T, StoreError>) -> T {
        match result {
            Ok(value) => value,
            Err(error) => self.fail(format_args!("{what}: expected success, got error: {error}")),
        }
    }

    #[track_caller]
    fn some<T>(self, what: &str, value: Option<T>) -> T {
        match value {
            Some(value) => value,
            None => self.fail(format_args!("{what}: expected a value, got None")),
        }
    }

    #[track_caller]
    fn eq<T: PartialEq + Debug>(self, what: &str, expected: &T, got: &T) {
        if expected != got {
            self.fail(format_args!("{what}: expected {expected:#?}, got {got:#?}"));
        }
    }

    #[track_caller]
    fn holds(self, what: &str, condition: bool, got: impl Debug) {
        if !condition {
            self.fail(format_args!("{what}: got {got:?}"));
        }
    }

    /// Compares runs, timestamps at millisecond precision.
    #[track_caller]
    fn eq_run(self, what: &str, expected: &RunRecord, got: &RunRecord) {
        let mut got = got.clone();
        align(&expected.created_at, &mut got.created_at);
        align_opt(&expected.started_at, &mut got.started_at);
        align_opt(&expected.finished_at, &mut got.finished_at);
        self.eq(what, expected, &got);
    }

    #[track_caller]
    fn eq_runs(self, what: &str, expected: &[RunRecord], got: &[RunRecord]) {
        self.eq(&format!("{what} (ids)"), &ids(expected), &ids(got));
        for (expected, got) in expected.iter().zip(got) {
            self.eq_run(what, expected, got);
        }
    }

    /// Compares handlers, timestamps at millisecond precision.
    #[track_caller]
    fn eq_handler(self, what: &str, expected: &HandlerRecord, got: &HandlerRecord) {
        let mut got = got.clone();
        align(&expected.created_at, &mut got.created_at);
        align(&expected.updated_at, &mut got.updated_at);
        self.eq(what, expected, &got);
    }

    /// Compares steps, timestamps at millisecond precision.
    #[track_caller]
    fn eq_step(self, what: &str, expected: &StepRecord, got: &StepRecord) {
        let mut got = got.clone();
        align(&expected.started_at, &mut got.started_at);
        align_opt(&expected.finished_at, &mut got.finished_at);
        self.eq(what, expected, &got);
    }

    /// Compares deliveries, timestamps at millisecond precision.
    #[track_caller]
    fn eq_delivery(self, what: &str, expected: &DeliveryRecord, got: &DeliveryRecord) {
        let mut got = got.clone();
        align(&expected.received_at, &mut got.received_at);
        self.eq(what, expected, &got);
    }

    /// Fails unless `result` is [`StoreError::NotFound`].
    #[track_caller]
    fn not_found<T: Debug>(self, what: &str, result: Result<T, StoreError>) {
        match result {
            Err(StoreError::NotFound { .. }) => {}
            other => self.fail(format_args!(
                "{what}: expected StoreError::NotFound, got {other:?}"
            )),
        }
    }
}

fn same_instant(a: &DateTime<Utc>, b: &DateTime<Utc>) -> bool {
    (*a - *b).abs() < TimeDelta::milliseconds(1)
}

fn align(expected: &DateTime<Utc>, got: &mut DateTime<Utc>) {
    if same_instant(expected, got) {
        *got = *expected;
    }
}

fn align_opt(expected: &Option<DateTime<Utc>>, got: &mut Option<DateTime<Utc>>) {
    if let (Some(expected), Some(got)) = (expected, got.as_mut()) {
        align(expected, got);
    }
}

fn ids(runs: &[RunRecord]) -> Vec<RunId> {
    runs.iter().map(|run| run.id).collect()
}

async fn handler<S: Store>(c: Check, store: &S, name: &str) -> HandlerRecord {
    let spec = sample_handler(name);
    let text = format!("name: {name}\n# source as written ✓\n");
    c.ok("create_handler", store.create_handler(spec, text).await)
}

/// `count` runs of `handler` in `repository`, created one second apart, oldest first.
fn runs_one_second_apart(
    handler: &HandlerRecord,
    repository: &str,
    count: usize,
) -> Vec<RunRecord> {
    let start = now_ms() - TimeDelta::hours(1);
    (0..count)
        .map(|i| {
            let mut run = sample_run(handler, repository);
            run.created_at = start + TimeDelta::seconds(i as i64);
            run
        })
        .collect()
}

fn sample_delivery(id: &str, received_at: DateTime<Utc>) -> DeliveryRecord {
    let mut body = br#"{"action":"opened","title":"\u00fcn\u00efcode \ud83d\udc39"}"#.to_vec();
    // Raw bodies are bytes, not text: they must survive exactly.
    body.extend_from_slice(&[b'\n', 0x00, 0xff, 0xfe, 0x80]);
    DeliveryRecord {
        id: id.to_owned(),
        event: "pull_request".to_owned(),
        received_at,
        headers: BTreeMap::from([
            ("x-github-delivery".to_owned(), id.to_owned()),
            ("x-github-event".to_owned(), "pull_request".to_owned()),
            (
                "x-hub-signature-256".to_owned(),
                "sha256=0123456789abcdef".to_owned(),
            ),
        ]),
        body,
        run_ids: Vec::new(),
        body_is_payload: false,
    }
}

fn runs_for_delivery(handler: &HandlerRecord, delivery_id: &str, count: usize) -> Vec<RunRecord> {
    (0..count)
        .map(|_| {
            let mut run = sample_run(handler, "octo/hello");
            run.delivery_id = Some(delivery_id.to_owned());
            run.event.delivery_id = Some(delivery_id.to_owned());
            run
        })
        .collect()
}

fn step(key: &str, status: StepStatus) -> StepRecord {
    StepRecord {
        key: key.to_owned(),
        name: format!("step {key}"),
        action: "shell_command".to_owned(),
        status,
        attempt: 1,
        started_at: now_ms(),
        finished_at: status.is_terminal().then(now_ms),
        data: serde_json::Map::new(),
        error: None,
    }
}

async fn total_runs<S: Store>(c: Check, store: &S) -> u64 {
    c.ok("count_runs_by_status", store.count_runs_by_status().await)
        .values()
        .sum()
}

/// Reads a log from `offset` until the store returns an empty chunk; returns the text and
/// the final `next_offset`.
async fn read_log_to_end<S: Store>(
    c: Check,
    store: &S,
    run: RunId,
    key: &str,
    offset: u64,
) -> (String, u64) {
    let mut text = String::new();
    let mut offset = offset;
    for _ in 0..1_000_000 {
        let LogChunk {
            text: chunk,
            next_offset,
        } = c.ok("read_log", store.read_log(run, key, offset).await);
        if chunk.is_empty() {
            return (text, next_offset);
        }
        c.holds(
            &format!("read_log from {offset} returned text, so next_offset must advance"),
            next_offset > offset,
            next_offset,
        );
        text.push_str(&chunk);
        offset = next_offset;
    }
    c.fail("read_log never returned an empty chunk at the end of the log")
}

// ---------------------------------------------------------------------------------------
// Checks. Each gets a fresh, empty store.

async fn ping<S: Store>(c: Check, store: S) {
    c.ok("ping", store.ping().await);
    c.eq(
        "list_handlers on an empty store",
        &0,
        &c.ok("list_handlers", store.list_handlers().await).len(),
    );
    c.eq("runs in an empty store", &0, &total_runs(c, &store).await);
}

async fn handler_create_and_get<S: Store>(c: Check, store: S) {
    let spec = sample_handler("linter");
    let text = "name: linter\nevents: pull_request.opened # ✓ as written\n".to_owned();
    let created = c.ok(
        "create_handler",
        store.create_handler(spec.clone(), text.clone()).await,
    );
    c.eq("name", &spec.name, &created.name);
    c.eq("version of a new handler", &1, &created.version);
    c.eq("enabled", &true, &created.enabled);
    c.eq("source_text", &text, &created.source_text);
    c.eq("spec", &spec, &created.spec);
    c.holds(
        "created_at and updated_at of a new handler are the same instant",
        same_instant(&created.created_at, &created.updated_at),
        (created.created_at, created.updated_at),
    );
    let by_id = c.some(
        "get_handler",
        c.ok("get_handler", store.get_handler(created.id).await),
    );
    c.eq_handler("get_handler round-trips every field", &created, &by_id);
    let by_name = c.some(
        "get_handler_by_name",
        c.ok(
            "get_handler_by_name",
            store.get_handler_by_name("linter").await,
        ),
    );
    c.eq_handler(
        "get_handler_by_name round-trips every field",
        &created,
        &by_name,
    );
    c.eq(
        "get_handler of an unknown id",
        &None,
        &c.ok("get_handler", store.get_handler(Default::default()).await),
    );
    c.eq(
        "get_handler_by_name of an unknown name",
        &None,
        &c.ok(
            "get_handler_by_name",
            store.get_handler_by_name("nope").await,
        ),
    );
    let listed = c.ok("list_handlers", store.list_handlers().await);
    c.eq("list_handlers length", &1, &listed.len());
    c.eq_handler(
        "list_handlers round-trips every field",
        &created,
        &listed[0],
    );
}

async fn handler_duplicate_name<S: Store>(c: Check, store: S) {
    let first = handler(c, &store, "dup").await;
    match store
        .create_handler(sample_handler("dup"), "other text".to_owned())
        .await
    {
        Err(StoreError::HandlerExists(name)) => {
            c.eq("HandlerExists names the handler", &"dup".to_owned(), &name)
        }
        other => c.fail(format_args!(
            "create_handler with a taken name: expected StoreError::HandlerExists, got {other:?}"
        )),
    }
    let listed = c.ok("list_handlers", store.list_handlers().await);
    c.eq(
        "handlers after a refused duplicate",
        &vec![first.id],
        &listed.iter().map(|h| h.id).collect(),
    );
    c.eq_handler("the first handler is untouched", &first, &listed[0]);
}

async fn handler_update_and_versions<S: Store>(c: Check, store: S) {
    let created = handler(c, &store, "build").await;
    let run = sample_run(&created, "octo/hello");
    c.ok("create_runs", store.create_runs(vec![run.clone()]).await);

    let mut new_spec = sample_handler("build");
    new_spec.description = Some("second version".to_owned());
    new_spec.events = vec!["push".to_owned()];
    let updated = c.ok(
        "update_handler with the right expected_version",
        store
            .update_handler(created.id, new_spec.clone(), "v2 text".to_owned(), Some(1))
            .await,
    );
    c.eq("id is stable across versions", &created.id, &updated.id);
    c.eq("version after one update", &2, &updated.version);
    c.eq("spec is replaced", &new_spec, &updated.spec);
    c.eq(
        "source_text is replaced",
        &"v2 text".to_owned(),
        &updated.source_text,
    );
    c.holds(
        "created_at is kept by an update",
        same_instant(&created.created_at, &updated.created_at),
        (created.created_at, updated.created_at),
    );
    c.holds(
        "updated_at does not go back",
        updated.updated_at >= created.updated_at - TimeDelta::milliseconds(1),
        (created.updated_at, updated.updated_at),
    );
    let got = c.some(
        "get_handler",
        c.ok("get_handler", store.get_handler(created.id).await),
    );
    c.eq_handler("get_handler after update", &updated, &got);

    let third = c.ok(
        "update_handler without expected_version",
        store
            .update_handler(created.id, sample_handler("build"), "v3".to_owned(), None)
            .await,
    );
    c.eq("version after two updates", &3, &third.version);

    let stored_run = c.some("get_run", c.ok("get_run", store.get_run(run.id).await));
    c.eq_run(
        "a run keeps the handler as it was when the run was created",
        &run,
        &stored_run,
    );

    c.not_found(
        "update_handler of an unknown id",
        store
            .update_handler(
                Default::default(),
                sample_handler("ghost"),
                String::new(),
                None,
            )
            .await,
    );
    c.eq(
        "update_handler of an unknown id creates nothing",
        &None,
        &c.ok(
            "get_handler_by_name",
            store.get_handler_by_name("ghost").await,
        ),
    );
}

async fn handler_update_conflict<S: Store>(c: Check, store: S) {
    let created = handler(c, &store, "deploy").await;
    c.ok(
        "update_handler",
        store
            .update_handler(
                created.id,
                sample_handler("deploy"),
                "v2".to_owned(),
                Some(1),
            )
            .await,
    );
    let before = c.some(
        "get_handler",
        c.ok("get_handler", store.get_handler(created.id).await),
    );
    let mut stale = sample_handler("deploy");
    stale.description = Some("stale edit".to_owned());
    match store
        .update_handler(created.id, stale, "stale".to_owned(), Some(1))
        .await
    {
        Err(StoreError::Conflict { expected, .. }) => {
            c.eq("Conflict carries the expected version", &1, &expected)
        }
        other => c.fail(format_args!(
            "update_handler with a stale expected_version: expected StoreError::Conflict, got {other:?}"
        )),
    }
    let after = c.some(
        "get_handler",
        c.ok("get_handler", store.get_handler(created.id).await),
    );
    c.eq_handler("a conflicting update changes nothing", &before, &after);
}

async fn handler_rename<S: Store>(c: Check, store: S) {
    let first = handler(c, &store, "first").await;
    let second = handler(c, &store, "second").await;
    let renamed = c.ok(
        "update_handler to a free name",
        store
            .update_handler(
                first.id,
                sample_handler("renamed"),
                "renamed".to_owned(),
                None,
            )
            .await,
    );
    c.eq(
        "name follows the spec",
        &"renamed".to_owned(),
        &renamed.name,
    );
    let by_new_name = c.ok(
        "get_handler_by_name",
        store.get_handler_by_name("renamed").await,
    );
    c.eq(
        "found by its new name",
        &Some(first.id),
        &by_new_name.map(|h| h.id),
    );
    c.eq(
        "not found by its old name",
        &None,
        &c.ok(
            "get_handler_by_name",
            store.get_handler_by_name("first").await,
        ),
    );
    let taken = store
        .update_handler(first.id, sample_handler("second"), "clash".to_owned(), None)
        .await;
    c.holds("renaming to a taken name fails", taken.is_err(), &taken);
    let got_second = c.some(
        "get_handler_by_name",
        c.ok(
            "get_handler_by_name",
            store.get_handler_by_name("second").await,
        ),
    );
    c.eq_handler(
        "the owner of the taken name is untouched",
        &second,
        &got_second,
    );
    let got_first = c.some(
        "get_handler",
        c.ok("get_handler", store.get_handler(first.id).await),
    );
    c.eq_handler("a refused rename changes nothing", &renamed, &got_first);
}

async fn handler_enable<S: Store>(c: Check, store: S) {
    let created = handler(c, &store, "toggle").await;
    let disabled = c.ok(
        "set_handler_enabled(false)",
        store.set_handler_enabled(created.id, false).await,
    );
    c.eq("enabled after disabling", &false, &disabled.enabled);
    let got = c.some(
        "get_handler",
        c.ok("get_handler", store.get_handler(created.id).await),
    );
    c.eq("get_handler sees it disabled", &false, &got.enabled);
    let listed = c.ok("list_handlers", store.list_handlers().await);
    c.eq("disabled handlers are still listed", &1, &listed.len());
    let enabled = c.ok(
        "set_handler_enabled(true)",
        store.set_handler_enabled(created.id, true).await,
    );
    c.eq("enabled after enabling", &true, &enabled.enabled);
    c.not_found(
        "set_handler_enabled of an unknown id",
        store.set_handler_enabled(Default::default(), true).await,
    );
}

async fn handler_delete_keeps_runs<S: Store>(c: Check, store: S) {
    let created = handler(c, &store, "doomed").await;
    let run = sample_run(&created, "octo/hello");
    c.ok("create_runs", store.create_runs(vec![run.clone()]).await);
    c.eq(
        "delete_handler of an existing handler",
        &true,
        &c.ok("delete_handler", store.delete_handler(created.id).await),
    );
    c.eq(
        "get_handler after delete",
        &None,
        &c.ok("get_handler", store.get_handler(created.id).await),
    );
    c.eq(
        "get_handler_by_name after delete",
        &None,
        &c.ok(
            "get_handler_by_name",
            store.get_handler_by_name("doomed").await,
        ),
    );
    c.eq(
        "list_handlers after delete",
        &0,
        &c.ok("list_handlers", store.list_handlers().await).len(),
    );
    c.eq(
        "delete_handler again",
        &false,
        &c.ok("delete_handler", store.delete_handler(created.id).await),
    );
    let stored_run = c.some(
        "its runs are kept",
        c.ok("get_run", store.get_run(run.id).await),
    );
    c.eq_run("a deleted handler's run is unchanged", &run, &stored_run);
    let again = handler(c, &store, "doomed").await;
    c.holds(
        "a deleted name can be reused, with a new id",
        again.id != created.id,
        again.id,
    );
}

async fn handler_list_sorted_by_name<S: Store>(c: Check, store: S) {
    for name in ["charlie", "alpha", "delta", "bravo"] {
        handler(c, &store, name).await;
    }
    let names: Vec<String> = c
        .ok("list_handlers", store.list_handlers().await)
        .into_iter()
        .map(|h| h.name)
        .collect();
    c.eq(
        "list_handlers is sorted by name",
        &vec!["alpha", "bravo", "charlie", "delta"],
        &names.iter().map(String::as_str).collect(),
    );
}

async fn handlers_revision_changes<S: Store>(c: Check, store: S) {
    let mut revision = c.ok("handlers_revision", store.handlers_revision().await);
    let again = c.ok("handlers_revision", store.handlers_revision().await);
    c.eq(
        "handlers_revision is stable without changes",
        &revision,
        &again,
    );
    let mut expect_change = |after: &str, now: u64| {
        c.holds(
            &format!("handlers_revision changes after {after} (was {revision})"),
            now != revision,
            now,
        );
        revision = now;
    };
    let created = handler(c, &store, "watched").await;
    expect_change(
        "create_handler",
        c.ok("handlers_revision", store.handlers_revision().await),
    );
    c.ok(
        "update_handler",
        store
            .update_handler(created.id, sample_handler("watched"), "v2".to_owned(), None)
            .await,
    );
    expect_change(
        "update_handler",
        c.ok("handlers_revision", store.handlers_revision().await),
    );
    c.ok(
        "set_handler_enabled",
        store.set_handler_enabled(created.id, false).await,
    );
    expect_change(
        "disabling",
        c.ok("handlers_revision", store.handlers_revision().await),
    );
    c.ok(
        "set_handler_enabled",
        store.set_handler_enabled(created.id, true).await,
    );
    expect_change(
        "enabling",
        c.ok("handlers_revision", store.handlers_revision().await),
    );
    c.ok("delete_handler", store.delete_handler(created.id).await);
    expect_change(
        "delete_handler",
        c.ok("handlers_revision", store.handlers_revision().await),
    );
}

async fn delivery_recorded_with_runs<S: Store>(c: Check, store: S) {
    let handler = handler(c, &store, "on-delivery").await;
    let runs = runs_for_delivery(&handler, "d-1", 2);
    let mut delivery = sample_delivery("d-1", now_ms());
    delivery.run_ids = ids(&runs);
    let outcome = c.ok(
        "record_delivery",
        store.record_delivery(delivery.clone(), runs.clone()).await,
    );
    c.eq(
        "record_delivery of a new id",
        &DeliveryOutcome::Recorded,
        &outcome,
    );
    let got = c.some(
        "get_delivery",
        c.ok("get_delivery", store.get_delivery("d-1").await),
    );
    c.eq_delivery("get_delivery round-trips every field", &delivery, &got);
    for run in &runs {
        let stored = c.some(
            "runs are stored with their delivery",
            c.ok("get_run", store.get_run(run.id).await),
        );
        c.eq_run("get_run of a delivery's run", run, &stored);
    }
    c.eq(
        "get_delivery of an unknown id",
        &None,
        &c.ok("get_delivery", store.get_delivery("d-unknown").await),
    );
}

/// A store may keep the payload of a delivery's runs only once, with the delivery: every
/// way of reading a run still gives the whole event, also for a run whose event came with
/// the payload left out (as intake leaves it when no criteria read it).
async fn delivery_body_as_payload_reads_back_whole<S: Store>(c: Check, store: S) {
    let handler = handler(c, &store, "on-delivery").await;
    let body =
        br#"{"action":"opened","pull_request":{"title":"\u00fcn\u00efcode \ud83d\udc39","n":7}}"#;
    let payload: serde_json::Value = match serde_json::from_slice(body) {
        Ok(payload) => payload,
        Err(error) => c.fail(format_args!("the test payload is JSON: {error}")),
    };
    let mut runs = runs_for_delivery(&handler, "d-payload", 3);
    for run in &mut runs {
        run.event.data =
            Arc::new(json!({"action": "opened", "sender": "octocat", "payload": payload}));
    }
    // The third comes with its payload left out, to be taken from the delivery.
    let mut recorded = runs.clone();
    recorded[2].event.data = Arc::new(json!({"action": "opened", "sender": "octocat"}));
    let mut delivery = sample_delivery("d-payload", now_ms());
    delivery.body = body.to_vec();
    delivery.body_is_payload = true;
    delivery.run_ids = ids(&runs);
    c.ok(
        "record_delivery",
        store.record_delivery(delivery.clone(), recorded).await,
    );
    let got = c.some(
        "get_delivery",
        c.ok("get_delivery", store.get_delivery("d-payload").await),
    );
    c.eq_delivery("get_delivery keeps body_is_payload", &delivery, &got);
    for run in &runs {
        let stored = c.some("get_run", c.ok("get_run", store.get_run(run.id).await));
        c.eq_run("get_run gives the event with its payload", run, &stored);
    }
    let listed = c.ok("list_runs", store.list_runs(&RunFilter::default()).await);
    for run in &runs {
        match listed.iter().find(|listed| listed.id == run.id) {
            Some(listed) => c.eq_run("list_runs gives the event with its payload", run, listed),
            None => c.fail(format_args!("list_runs lacks run {}", run.id)),
        }
    }
    let claimed = c.some(
        "transition_run of a queued run",
        c.ok(
            "transition_run",
            store
                .transition_run(runs[0].id, &[RunStatus::Queued], RunStatus::Running, None)
                .await,
        ),
    );
    c.eq(
        "transition_run returns the event with its payload",
        &runs[0].event,
        &claimed.event,
    );
}

async fn delivery_duplicate_writes_nothing<S: Store>(c: Check, store: S) {
    let handler = handler(c, &store, "on-delivery").await;
    let runs = runs_for_delivery(&handler, "d-dup", 2);
    let mut delivery = sample_delivery("d-dup", now_ms());
    delivery.run_ids = ids(&runs);
    c.ok(
        "record_delivery",
        store.record_delivery(delivery.clone(), runs.clone()).await,
    );

    let again_runs = runs_for_delivery(&handler, "d-dup", 3);
    let mut again = sample_delivery("d-dup", now_ms() + TimeDelta::seconds(5));
    again.body = b"a redelivery".to_vec();
    again.run_ids = ids(&again_runs);
    let outcome = c.ok(
        "record_delivery of a known id",
        store.record_delivery(again, again_runs.clone()).await,
    );
    c.eq(
        "a duplicate returns the first call's run ids",
        &DeliveryOutcome::Duplicate(ids(&runs)),
        &outcome,
    );
    for run in &again_runs {
        c.eq(
            "a duplicate's runs are not stored",
            &None,
            &c.ok("get_run", store.get_run(run.id).await),
        );
    }
    c.eq(
        "runs stored after a duplicate",
        &2,
        &total_runs(c, &store).await,
    );
    let got = c.some(
        "get_delivery",
        c.ok("get_delivery", store.get_delivery("d-dup").await),
    );
    c.eq_delivery(
        "a duplicate leaves the first delivery as it was",
        &delivery,
        &got,
    );
    c.eq(
        "deliveries after a duplicate",
        &1,
        &c.ok("list_deliveries", store.list_deliveries(10).await)
            .len(),
    );
}

async fn delivery_atomic_on_failure<S: Store>(c: Check, store: S) {
    // A run id that exists already makes the delivery's write fail in most backends; if this
    // one accepts it, there is no failure to observe. If it refuses it, nothing of the
    // delivery may be left behind.
    let handler = handler(c, &store, "atomic").await;
    let existing = sample_run(&handler, "octo/hello");
    c.ok(
        "create_runs",
        store.create_runs(vec![existing.clone()]).await,
    );
    let fresh = runs_for_delivery(&handler, "d-atomic", 1);
    let mut delivery = sample_delivery("d-atomic", now_ms());
    delivery.run_ids = vec![fresh[0].id, existing.id];
    let result = store
        .record_delivery(delivery, vec![fresh[0].clone(), existing.clone()])
        .await;
    if result.is_err() {
        c.eq(
            "a failed record_delivery stores no delivery",
            &None,
            &c.ok("get_delivery", store.get_delivery("d-atomic").await),
        );
        c.eq(
            "a failed record_delivery stores none of its runs",
            &None,
            &c.ok("get_run", store.get_run(fresh[0].id).await),
        );
    }
    let stored = c.some("get_run", c.ok("get_run", store.get_run(existing.id).await));
    c.eq_run("an existing run is never overwritten", &existing, &stored);
}

async fn delivery_list_newest_first<S: Store>(c: Check, store: S) {
    let start = now_ms() - TimeDelta::minutes(10);
    // Recorded out of order: listing follows `received_at`, not arrival.
    for (id, seconds) in [("d-b", 20), ("d-a", 10), ("d-d", 40), ("d-c", 30)] {
        let delivery = sample_delivery(id, start + TimeDelta::seconds(seconds));
        c.ok(
            "record_delivery",
            store.record_delivery(delivery, Vec::new()).await,
        );
    }
    let listed: Vec<String> = c
        .ok("list_deliveries", store.list_deliveries(10).await)
        .into_iter()
        .map(|d| d.id)
        .collect();
    c.eq(
        "list_deliveries is newest first",
        &vec!["d-d", "d-c", "d-b", "d-a"],
        &listed.iter().map(String::as_str).collect(),
    );
    let limited: Vec<String> = c
        .ok("list_deliveries", store.list_deliveries(2).await)
        .into_iter()
        .map(|d| d.id)
        .collect();
    c.eq(
        "list_deliveries honours its limit",
        &vec!["d-d", "d-c"],
        &limited.iter().map(String::as_str).collect(),
    );
}

async fn delivery_add_runs<S: Store>(c: Check, store: S) {
    let handler = handler(c, &store, "reprocess").await;
    let first = runs_for_delivery(&handler, "d-add", 2);
    let mut delivery = sample_delivery("d-add", now_ms());
    delivery.run_ids = ids(&first);
    c.ok(
        "record_delivery",
        store.record_delivery(delivery, first.clone()).await,
    );
    let more = runs_for_delivery(&handler, "d-add", 1);
    c.ok(
        "add_delivery_runs",
        store.add_delivery_runs("d-add", more.clone()).await,
    );
    let got = c.some(
        "get_delivery",
        c.ok("get_delivery", store.get_delivery("d-add").await),
    );
    let all: Vec<RunId> = ids(&first).into_iter().chain(ids(&more)).collect();
    c.eq("run_ids after add_delivery_runs", &all, &got.run_ids);
    let stored = c.some("get_run", c.ok("get_run", store.get_run(more[0].id).await));
    c.eq_run("an added run is stored", &more[0], &stored);
    let outcome = c.ok(
        "record_delivery",
        store
            .record_delivery(sample_delivery("d-add", now_ms()), Vec::new())
            .await,
    );
    c.eq(
        "a duplicate after add_delivery_runs returns every run id",
        &DeliveryOutcome::Duplicate(all),
        &outcome,
    );

    let orphan = runs_for_delivery(&handler, "d-missing", 1);
    c.not_found(
        "add_delivery_runs to an unknown delivery",
        store.add_delivery_runs("d-missing", orphan.clone()).await,
    );
    c.eq(
        "add_delivery_runs to an unknown delivery stores no run",
        &None,
        &c.ok("get_run", store.get_run(orphan[0].id).await),
    );
}

async fn run_record_round_trip<S: Store>(c: Check, store: S) {
    let handler = handler(c, &store, "round-trip").await;
    let plain = sample_run(&handler, "octo/hello");
    let mut full = sample_run(&handler, "octo/hello");
    full.delivery_id = Some("d-full".to_owned());
    full.event.delivery_id = Some("d-full".to_owned());
    full.event.data = serde_json::Value::into(json!({
        "nested": {"deep": {"deeper": [1, [2, [3, {"x": "🐹"}]]]}},
        "unicode": "日本語 عربي ελληνικά ✓",
        "escapes": "quote \" backslash \\ newline \n tab \t",
        "numbers": [0, -1, 9_007_199_254_740_993_i64, 1.5, -0.25, 1e-7],
        "empty": {}, "list": [], "null": null, "bool": false,
    }));
    full.status = RunStatus::Failed;
    full.started_at = Some(full.created_at + TimeDelta::milliseconds(1500));
    full.finished_at = Some(full.created_at + TimeDelta::seconds(42));
    full.error = Some("step `linter` failed: exit code 2 — ✗".to_owned());
    c.ok(
        "create_runs",
        store.create_runs(vec![plain.clone(), full.clone()]).await,
    );
    for expected in [&plain, &full] {
        let got = c.some("get_run", c.ok("get_run", store.get_run(expected.id).await));
        c.eq_run("get_run round-trips every field", expected, &got);
    }
    c.eq(
        "get_run of an unknown id",
        &None,
        &c.ok("get_run", store.get_run(RunId::new()).await),
    );
}

async fn run_list_filters<S: Store>(c: Check, store: S) {
    let lint = handler(c, &store, "lint").await;
    let test = handler(c, &store, "test").await;
    let repositories = ["octo/alpha", "octo/beta"];
    let start = now_ms() - TimeDelta::hours(1);
    let runs: Vec<RunRecord> = (0..15)
        .map(|i| {
            let handler = if (i / 2) % 2 == 0 { &lint } else { &test };
            let mut run = sample_run(handler, repositories[i % 2]);
            run.status = RunStatus::ALL[i % RunStatus::ALL.len()];
            run.created_at = start + TimeDelta::seconds(i as i64);
            run
        })
        .collect();
    // Stored out of creation order: listing follows `created_at`.
    let (evens, odds): (Vec<_>, Vec<_>) = runs
        .iter()
        .cloned()
        .partition(|run| (run.created_at - start).num_seconds() % 2 == 0);
    c.ok("create_runs", store.create_runs(odds).await);
    c.ok("create_runs", store.create_runs(evens).await);

    let newest_first: Vec<RunRecord> = runs.iter().rev().cloned().collect();
    let repository_filters = [
        None,
        Some("octo/alpha"),
        Some("octo/beta"),
        Some("octo/none"),
    ];
    let handler_filters = [None, Some("lint"), Some("test"), Some("none")];
    let status_filters: Vec<Option<RunStatus>> = std::iter::once(None)
        .chain(RunStatus::ALL.map(Some))
        .collect();
    for repository in repository_filters {
        for handler in handler_filters {
            for &status in &status_filters {
                let filter = RunFilter {
                    repository: repository.map(str::to_owned),
                    handler: handler.map(str::to_owned),
                    status,
                    ..RunFilter::default()
                };
                let expected: Vec<RunRecord> = newest_first
                    .iter()
                    .filter(|run| repository.is_none_or(|r| run.repository == r))
                    .filter(|run| handler.is_none_or(|h| run.handler_name == h))
                    .filter(|run| status.is_none_or(|s| run.status == s))
                    .cloned()
                    .collect();
                let got = c.ok("list_runs", store.list_runs(&filter).await);
                c.eq_runs(&format!("list_runs({filter:?})"), &expected, &got);
            }
        }
    }
}

async fn run_list_paging_and_limits<S: Store>(c: Check, store: S) {
    let handler = handler(c, &store, "pager").await;
    let runs = runs_one_second_apart(&handler, "octo/pages", 105);
    c.ok("create_runs", store.create_runs(runs.clone()).await);
    let newest_first: Vec<RunId> = ids(&runs).into_iter().rev().collect();

    let default_page = c.ok("list_runs", store.list_runs(&RunFilter::default()).await);
    c.eq(
        "list_runs without a limit returns the newest 100",
        &newest_first[..100].to_vec(),
        &ids(&default_page),
    );
    let five = RunFilter {
        limit: Some(5),
        ..RunFilter::default()
    };
    c.eq(
        "list_runs honours its limit",
        &newest_first[..5].to_vec(),
        &ids(&c.ok("list_runs", store.list_runs(&five).await)),
    );

    // Page through everything, 40 at a time.
    let mut paged = Vec::new();
    let mut page_sizes = Vec::new();
    let mut filter = RunFilter {
        limit: Some(40),
        ..RunFilter::default()
    };
    loop {
        let page = c.ok("list_runs", store.list_runs(&filter).await);
        if page.is_empty() {
            break;
        }
        c.holds("paging ends", page_sizes.len() < 10, &page_sizes);
        page_sizes.push(page.len());
        filter.before = page.last().map(|run| run.id);
        paged.extend(ids(&page));
    }
    c.eq("page sizes", &vec![40, 40, 25], &page_sizes);
    c.eq(
        "paging with `before` visits every run once, newest first",
        &newest_first,
        &paged,
    );

    // Paging combines with filters.
    let newest = &runs[runs.len() - 1];
    let filtered = RunFilter {
        repository: Some("octo/pages".to_owned()),
        handler: Some("pager".to_owned()),
        before: Some(newest.id),
        limit: Some(3),
        ..RunFilter::default()
    };
    c.eq(
        "`before` with filters",
        &newest_first[1..4].to_vec(),
        &ids(&c.ok("list_runs", store.list_runs(&filtered).await)),
    );

    // `created_before` is strict, and the tighter of it and `before` applies.
    // `newest_first[104 - i]` is `runs[i]`.
    let cut = runs[50].created_at;
    let older = |before: Option<RunId>| RunFilter {
        created_before: Some(cut),
        before,
        limit: Some(3),
        ..RunFilter::default()
    };
    for (what, before, expected) in [
        ("`created_before`", None, &newest_first[55..58]),
        (
            "`created_before` with a newer `before`",
            Some(runs[80].id),
            &newest_first[55..58],
        ),
        (
            "`created_before` with an older `before`",
            Some(runs[30].id),
            &newest_first[75..78],
        ),
    ] {
        c.eq(
            what,
            &expected.to_vec(),
            &ids(&c.ok("list_runs", store.list_runs(&older(before)).await)),
        );
    }
}

async fn transition_compare_and_set<S: Store>(c: Check, store: S) {
    let handler = handler(c, &store, "cas").await;
    let run = sample_run(&handler, "octo/hello");
    c.ok("create_runs", store.create_runs(vec![run.clone()]).await);

    let refused = c.ok(
        "transition_run with a wrong `from`",
        store
            .transition_run(run.id, &[RunStatus::Running], RunStatus::Succeeded, None)
            .await,
    );
    c.eq(
        "a wrong `from` returns None",
        &None,
        &refused.map(|r| r.status),
    );
    let unchanged = c.some("get_run", c.ok("get_run", store.get_run(run.id).await));
    c.eq_run("a wrong `from` changes nothing", &run, &unchanged);
    let refused = c.ok(
        "transition_run with an empty `from`",
        store
            .transition_run(run.id, &[], RunStatus::Running, None)
            .await,
    );
    c.eq(
        "an empty `from` returns None",
        &None,
        &refused.map(|r| r.status),
    );

    let running = c.some(
        "queued → running",
        c.ok(
            "transition_run",
            store
                .transition_run(run.id, &[RunStatus::Queued], RunStatus::Running, None)
                .await,
        ),
    );
    c.eq(
        "status after queued → running",
        &RunStatus::Running,
        &running.status,
    );
    let got = c.some("get_run", c.ok("get_run", store.get_run(run.id).await));
    c.eq_run("transition_run returns the run as stored", &running, &got);
    let mut expected = run.clone();
    expected.status = RunStatus::Running;
    expected.started_at = running.started_at;
    c.eq_run(
        "a transition changes only status and timestamps",
        &expected,
        &running,
    );

    let failed = c.some(
        "running → failed with an error",
        c.ok(
            "transition_run",
            store
                .transition_run(
                    run.id,
                    &[RunStatus::Queued, RunStatus::Running],
                    RunStatus::Failed,
                    Some("step `linter` failed ✗".to_owned()),
                )
                .await,
        ),
    );
    c.eq("status", &RunStatus::Failed, &failed.status);
    c.eq(
        "error is stored",
        &Some("step `linter` failed ✗".to_owned()),
        &failed.error,
    );
    let got = c.some("get_run", c.ok("get_run", store.get_run(run.id).await));
    c.eq_run("get_run after failing", &failed, &got);

    match store
        .transition_run(RunId::new(), &[RunStatus::Queued], RunStatus::Running, None)
        .await
    {
        Ok(None) | Err(StoreError::NotFound { .. }) => {}
        other => c.fail(format_args!(
            "transition_run of an unknown run: expected Ok(None) or NotFound, got {other:?}"
        )),
    }
}

async fn transition_timestamps<S: Store>(c: Check, store: S) {
    let handler = handler(c, &store, "clock").await;
    let run = sample_run(&handler, "octo/hello");
    c.ok("create_runs", store.create_runs(vec![run.clone()]).await);
    c.eq("a queued run has not started", &None, &run.started_at);

    let run_id = run.id;
    let transition = |from: RunStatus, to: RunStatus| {
        let store = &store;
        async move {
            let what = format!("{} → {}", from.as_str(), to.as_str());
            let result = store.transition_run(run_id, &[from], to, None).await;
            c.some(&what, c.ok(&what, result))
        }
    };
    let first = transition(RunStatus::Queued, RunStatus::Running).await;
    let started_at = c.some("started_at after the first running", first.started_at);
    c.eq("finished_at while running", &None, &first.finished_at);
    tokio::time::sleep(Duration::from_millis(5)).await;
    transition(RunStatus::Running, RunStatus::Queued).await;
    let second = transition(RunStatus::Queued, RunStatus::Running).await;
    let second_start = c.some("started_at after running again", second.started_at);
    c.holds(
        "started_at is set only the first time a run becomes running",
        same_instant(&started_at, &second_start),
        (started_at, second_start),
    );
    tokio::time::sleep(Duration::from_millis(5)).await;
    let done = transition(RunStatus::Running, RunStatus::Succeeded).await;
    let finished_at = c.some("finished_at once terminal", done.finished_at);
    c.holds(
        "finished_at comes after started_at",
        finished_at >= started_at,
        (started_at, finished_at),
    );
    let done_start = c.some("started_at once terminal", done.started_at);
    c.holds(
        "finishing keeps started_at",
        same_instant(&started_at, &done_start),
        (started_at, done_start),
    );

    let cancelled_run = sample_run(&handler, "octo/hello");
    c.ok(
        "create_runs",
        store.create_runs(vec![cancelled_run.clone()]).await,
    );
    let cancelled = c.some(
        "queued → cancelled",
        c.ok(
            "transition_run",
            store
                .transition_run(
                    cancelled_run.id,
                    &[RunStatus::Queued],
                    RunStatus::Cancelled,
                    Some("cancelled by a user".to_owned()),
                )
                .await,
        ),
    );
    c.holds(
        "a run cancelled before it started has finished_at",
        cancelled.finished_at.is_some(),
        cancelled.finished_at,
    );
    c.eq(
        "a run cancelled before it started never started",
        &None,
        &cancelled.started_at,
    );
}

async fn transition_concurrent_single_winner<S: Store + 'static>(c: Check, store: S) {
    const RACERS: usize = 10;
    let store = Arc::new(store);
    let handler = handler(c, &*store, "race").await;
    let run = sample_run(&handler, "octo/hello");
    c.ok("create_runs", store.create_runs(vec![run.clone()]).await);
    let run_id = run.id;
    let barrier = Arc::new(tokio::sync::Barrier::new(RACERS));
    let racers: Vec<_> = (0..RACERS)
        .map(|_| {
            let store = Arc::clone(&store);
            let barrier = Arc::clone(&barrier);
            tokio::spawn(async move {
                barrier.wait().await;
                store
                    .transition_run(run_id, &[RunStatus::Queued], RunStatus::Running, None)
                    .await
            })
        })
        .collect();
    let mut winners = 0;
    for racer in racers {
        let result = match racer.await {
            Ok(result) => result,
            Err(error) => c.fail(format_args!("a racing task panicked: {error}")),
        };
        if c.ok("racing transition_run", result).is_some() {
            winners += 1;
        }
    }
    c.eq(
        &format!("{RACERS} tasks racing queued → running: winners"),
        &1,
        &winners,
    );
    let counts = c.ok("count_runs_by_status", store.count_runs_by_status().await);
    c.eq(
        "running runs after the race",
        &1,
        &counts.get(&RunStatus::Running).copied().unwrap_or(0),
    );
}

async fn steps_upsert_keeps_first_order<S: Store>(c: Check, store: S) {
    let handler = handler(c, &store, "steps").await;
    let run = sample_run(&handler, "octo/hello");
    let other = sample_run(&handler, "octo/hello");
    c.ok(
        "create_runs",
        store.create_runs(vec![run.clone(), other.clone()]).await,
    );
    c.eq(
        "list_steps of a run without steps",
        &0,
        &c.ok("list_steps", store.list_steps(run.id).await).len(),
    );

    // Not lexical order: the store keeps the order steps were first recorded.
    let keys = ["0", "2", "10", "1", "0.on_failure.0"];
    for key in keys {
        c.ok(
            "record_step",
            store
                .record_step(run.id, step(key, StepStatus::Running))
                .await,
        );
    }
    let mut replaced = step("2", StepStatus::Failure);
    replaced.attempt = 2;
    replaced.name = "renamed step".to_owned();
    replaced.data = json!({"exit_code": 2, "output": "boom ✗"})
        .as_object()
        .cloned()
        .unwrap_or_default();
    replaced.error = Some("exit code 2".to_owned());
    c.ok(
        "record_step (upsert)",
        store.record_step(run.id, replaced.clone()).await,
    );
    c.ok(
        "record_step in another run",
        store
            .record_step(other.id, step("2", StepStatus::Success))
            .await,
    );

    let listed = c.ok("list_steps", store.list_steps(run.id).await);
    let listed_keys: Vec<&str> = listed.iter().map(|s| s.key.as_str()).collect();
    c.eq(
        "list_steps keeps first-recorded order across an upsert",
        &keys.to_vec(),
        &listed_keys,
    );
    c.eq_step("an upsert replaces the step", &replaced, &listed[1]);
    let others = c.ok("list_steps", store.list_steps(other.id).await);
    c.eq(
        "steps of another run are separate",
        &vec!["2"],
        &others.iter().map(|s| s.key.as_str()).collect(),
    );
    c.eq(
        "the other run's step is its own",
        &StepStatus::Success,
        &others[0].status,
    );
}

async fn step_data_round_trip<S: Store>(c: Check, store: S) {
    let handler = handler(c, &store, "data").await;
    let run = sample_run(&handler, "octo/hello");
    c.ok("create_runs", store.create_runs(vec![run.clone()]).await);
    let mut full = step("0", StepStatus::TimedOut);
    full.attempt = 3;
    full.started_at = now_ms() - TimeDelta::seconds(30);
    full.finished_at = Some(now_ms());
    full.error = Some("timed out after 30s ⏱".to_owned());
    full.data = json!({
        "output": "line 1\nligne 2 — ünïcödé\n第三行 🐹\n\ttabbed \"quoted\" \\ backslash",
        "exit_code": -9,
        "nested": {"a": [1, 2.5, {"b": null, "c": [true, false]}], "empty": {}, "none": []},
        "big": 9_007_199_254_740_993_i64,
        "fraction": 0.125,
    })
    .as_object()
    .cloned()
    .unwrap_or_default();
    c.ok("record_step", store.record_step(run.id, full.clone()).await);
    for status in [
        StepStatus::Success,
        StepStatus::Failure,
        StepStatus::Cancelled,
    ] {
        let key = format!("status.{}", status.as_str());
        c.ok(
            "record_step",
            store.record_step(run.id, step(&key, status)).await,
        );
    }
    let listed = c.ok("list_steps", store.list_steps(run.id).await);
    c.eq("steps stored", &4, &listed.len());
    c.eq_step("a step round-trips every field", &full, &listed[0]);
    let statuses: Vec<StepStatus> = listed.iter().map(|s| s.status).collect();
    c.eq(
        "every step status round-trips",
        &vec![
            StepStatus::TimedOut,
            StepStatus::Success,
            StepStatus::Failure,
            StepStatus::Cancelled,
        ],
        &statuses,
    );
}

async fn logs_append_and_offsets<S: Store>(c: Check, store: S) {
    let handler = handler(c, &store, "logs").await;
    let run = sample_run(&handler, "octo/hello");
    c.ok("create_runs", store.create_runs(vec![run.clone()]).await);
    let (empty, offset) = read_log_to_end(c, &store, run.id, "0", 0).await;
    c.eq(
        "a log never written is empty",
        &(String::new(), 0),
        &(empty, offset),
    );

    let parts = ["hello ", "wörld ✓\n", "🐹 done — 中文\n"];
    for part in parts {
        c.ok("append_log", store.append_log(run.id, "0", part).await);
    }
    c.ok(
        "append_log",
        store.append_log(run.id, "1", "another step\n").await,
    );
    let full: String = parts.concat();
    let (text, end) = read_log_to_end(c, &store, run.id, "0", 0).await;
    c.eq("the log is the appends, in order", &full, &text);
    c.eq(
        "next_offset at the end is the log's length in bytes",
        &(full.len() as u64),
        &end,
    );

    for offset in 0..=full.len() {
        let start = (offset..=full.len())
            .find(|&i| full.is_char_boundary(i))
            .unwrap_or(full.len());
        let (text, end) = read_log_to_end(c, &store, run.id, "0", offset as u64).await;
        c.eq(
            &format!("read_log from byte {offset} (reads from the next character boundary)"),
            &full[start..].to_owned(),
            &text,
        );
        c.eq(
            &format!("final next_offset reading from {offset}"),
            &(full.len() as u64),
            &end,
        );
    }

    let more = "more ✓ after a read\n";
    c.ok("append_log", store.append_log(run.id, "0", more).await);
    let (text, new_end) = read_log_to_end(c, &store, run.id, "0", end).await;
    c.eq(
        "reading from the previous next_offset returns only new text",
        &more.to_owned(),
        &text,
    );
    c.eq(
        "next_offset after more text",
        &((full.len() + more.len()) as u64),
        &new_end,
    );
    let (other, _) = read_log_to_end(c, &store, run.id, "1", 0).await;
    c.eq(
        "logs of different steps are separate",
        &"another step\n".to_owned(),
        &other,
    );
}

async fn logs_large<S: Store>(c: Check, store: S) {
    let handler = handler(c, &store, "big-logs").await;
    let run = sample_run(&handler, "octo/hello");
    c.ok("create_runs", store.create_runs(vec![run.clone()]).await);
    // Over 2 MiB in appends of 12 KiB: more than a built-in store returns at once.
    let mut expected = String::new();
    for i in 0..180 {
        let line = format!("{i:04} {} 🐹\n", "ö✓x".repeat(2000));
        c.ok("append_log", store.append_log(run.id, "0", &line).await);
        expected.push_str(&line);
    }
    let (text, end) = read_log_to_end(c, &store, run.id, "0", 0).await;
    c.eq("a large log's length", &expected.len(), &text.len());
    c.holds(
        "a large log reads back exactly",
        text == expected,
        "different text",
    );
    c.eq(
        "next_offset at the end of a large log",
        &(expected.len() as u64),
        &end,
    );
    // From inside a character, past the first MiB.
    let inside = (1_100_000..expected.len())
        .find(|&i| !expected.is_char_boundary(i))
        .unwrap_or(expected.len());
    let boundary = (inside..expected.len())
        .find(|&i| expected.is_char_boundary(i))
        .unwrap_or(expected.len());
    let (text, _) = read_log_to_end(c, &store, run.id, "0", inside as u64).await;
    c.holds(
        &format!("a large log read from byte {inside} starts at {boundary}"),
        text.as_str() == &expected[boundary..],
        "different text",
    );
}

async fn counts_by_status<S: Store>(c: Check, store: S) {
    let count =
        |counts: &BTreeMap<RunStatus, u64>, status| counts.get(&status).copied().unwrap_or(0);
    let empty = c.ok("count_runs_by_status", store.count_runs_by_status().await);
    for status in RunStatus::ALL {
        c.eq(
            &format!("{} runs in an empty store", status.as_str()),
            &0,
            &count(&empty, status),
        );
    }
    let handler = handler(c, &store, "counted").await;
    let mut runs = Vec::new();
    let mut expected: BTreeMap<RunStatus, u64> = BTreeMap::new();
    for (i, status) in RunStatus::ALL.into_iter().enumerate() {
        for _ in 0..=i {
            let mut run = sample_run(&handler, "octo/hello");
            run.status = status;
            runs.push(run);
            *expected.entry(status).or_default() += 1;
        }
    }
    let queued = runs[0].id;
    c.ok("create_runs", store.create_runs(runs).await);
    let counts = c.ok("count_runs_by_status", store.count_runs_by_status().await);
    for status in RunStatus::ALL {
        c.eq(
            &format!("{} runs", status.as_str()),
            &count(&expected, status),
            &count(&counts, status),
        );
    }
    c.ok(
        "transition_run",
        store
            .transition_run(queued, &[RunStatus::Queued], RunStatus::Running, None)
            .await,
    );
    *expected.entry(RunStatus::Queued).or_default() -= 1;
    *expected.entry(RunStatus::Running).or_default() += 1;
    let counts = c.ok("count_runs_by_status", store.count_runs_by_status().await);
    for status in RunStatus::ALL {
        c.eq(
            &format!("{} runs after a transition", status.as_str()),
            &count(&expected, status),
            &count(&counts, status),
        );
    }
}
