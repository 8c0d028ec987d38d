//! The PostgreSQL store against the real local server, each test in its own schema.

#![allow(clippy::unwrap_used)] // Unwrapping is how a test says "this must succeed".

mod common;

use chrono::{DateTime, Duration, SubsecRound, Utc};
use common::TestStore;
use hamster_core::event::{EventRecord, Repository, SourceRecord};
use hamster_core::handler::HandlerSpec;
use hamster_core::store::{
    DeliveryOutcome, DeliveryRecord, HandlerId, LogChunk, RunFilter, RunId, RunRecord, RunStatus,
    StepRecord, StepStatus, Store, StoreError,
};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;

fn spec(name: &str) -> HandlerSpec {
    serde_json::from_value(json!({
        "name": name,
        "events": ["pull_request.opened"],
        "criteria": "source.repository is Hello-World",
        "actions": [{"action": "shell_command", "name": "linter", "args": ["pylint ./"],
                     "timeout": "5m"}],
    }))
    .unwrap()
}

fn event(repository: &str) -> EventRecord {
    let (owner, name) = repository.split_once('/').unwrap();
    EventRecord {
        name: "pull_request.opened".to_owned(),
        delivery_id: Some("delivery".to_owned()),
        source: SourceRecord {
            kind: "pull_request".to_owned(),
            repository: Repository::new("github.com", owner, name),
            fields: json!({"number": 7, "title": "Fix"}).into(),
            checkout: None,
            deferred: vec!["head".to_owned()],
        },
        data: json!({"action": "opened", "payload": {"zeta": 1, "alpha": [1.5, "x"]}}).into(),
    }
}

/// A time PostgreSQL keeps exactly (it stores microseconds).
fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

fn run(handler: &str, repository: &str, created_at: DateTime<Utc>) -> RunRecord {
    RunRecord {
        id: RunId::new(),
        handler_id: HandlerId::new(),
        handler_name: handler.to_owned(),
        handler_version: 3,
        handler: spec(handler),
        event: event(repository),
        repository: repository.to_owned(),
        delivery_id: None,
        status: RunStatus::Queued,
        created_at,
        started_at: None,
        finished_at: None,
        error: None,
    }
}

fn delivery(id: &str, run_ids: Vec<RunId>) -> DeliveryRecord {
    DeliveryRecord {
        id: id.to_owned(),
        event: "pull_request".to_owned(),
        received_at: now(),
        headers: BTreeMap::from([
            ("x-github-event".to_owned(), "pull_request".to_owned()),
            ("x-hub-signature-256".to_owned(), "sha256=abc".to_owned()),
        ]),
        body: b"{\"action\":\"opened\"}\0\xff".to_vec(),
        run_ids,
        body_is_payload: false,
    }
}

fn step(key: &str, status: StepStatus) -> StepRecord {
    StepRecord {
        key: key.to_owned(),
        name: format!("step {key}"),
        action: "shell_command".to_owned(),
        status,
        attempt: 1,
        started_at: now(),
        finished_at: status.is_terminal().then(now),
        data: json!({"output": "ok\n", "exit_code": 0})
            .as_object()
            .unwrap()
            .clone(),
        error: None,
    }
}

#[tokio::test]
async fn handlers_are_unique_versioned_and_bump_the_revision() {
    let Some(test) = TestStore::new("handlers_are_unique_versioned_and_bump_the_revision").await
    else {
        return;
    };
    let store = &test.store;
    let revision = store.handlers_revision().await.unwrap();

    let linter = store
        .create_handler(spec("linter"), "name: linter".to_owned())
        .await
        .unwrap();
    assert_eq!((linter.version, linter.enabled), (1, true));
    assert_eq!(linter.spec, spec("linter"));
    assert_eq!(linter.source_text, "name: linter");
    let after_create = store.handlers_revision().await.unwrap();
    assert_ne!(after_create, revision);

    let taken = store
        .create_handler(spec("linter"), String::new())
        .await
        .unwrap_err();
    assert!(
        matches!(&taken, StoreError::HandlerExists(name) if name == "linter"),
        "{taken}"
    );
    assert_eq!(store.handlers_revision().await.unwrap(), after_create);

    let mut changed = spec("linter");
    changed.description = Some("now described".to_owned());
    let updated = store
        .update_handler(linter.id, changed.clone(), "v2".to_owned(), Some(1))
        .await
        .unwrap();
    assert_eq!((updated.version, updated.id), (2, linter.id));
    assert_eq!(updated.created_at, linter.created_at);
    assert!(updated.updated_at >= linter.updated_at);
    assert_eq!(updated.spec, changed);
    let after_update = store.handlers_revision().await.unwrap();
    assert_ne!(after_update, after_create);

    let stale = store
        .update_handler(linter.id, spec("linter"), String::new(), Some(1))
        .await
        .unwrap_err();
    assert!(
        matches!(stale, StoreError::Conflict { expected: 1, .. }),
        "{stale}"
    );
    assert_eq!(store.handlers_revision().await.unwrap(), after_update);
    let missing = store
        .update_handler(HandlerId::new(), spec("x"), String::new(), None)
        .await
        .unwrap_err();
    assert!(
        matches!(
            missing,
            StoreError::NotFound {
                what: "handler",
                ..
            }
        ),
        "{missing}"
    );

    let other = store
        .create_handler(spec("another"), String::new())
        .await
        .unwrap();
    let renamed_onto_taken = store
        .update_handler(other.id, spec("linter"), String::new(), None)
        .await
        .unwrap_err();
    assert!(
        matches!(renamed_onto_taken, StoreError::HandlerExists(_)),
        "{renamed_onto_taken}"
    );

    let before_disable = store.handlers_revision().await.unwrap();
    let disabled = store.set_handler_enabled(linter.id, false).await.unwrap();
    assert!(!disabled.enabled && !disabled.spec.enabled);
    assert_eq!(disabled.version, 2);
    assert_ne!(store.handlers_revision().await.unwrap(), before_disable);
    assert!(matches!(
        store.set_handler_enabled(HandlerId::new(), true).await,
        Err(StoreError::NotFound { .. })
    ));

    assert_eq!(
        store.get_handler(linter.id).await.unwrap(),
        Some(disabled.clone())
    );
    assert_eq!(
        store.get_handler_by_name("linter").await.unwrap(),
        Some(disabled)
    );
    assert_eq!(store.get_handler_by_name("nope").await.unwrap(), None);
    let names: Vec<String> = store
        .list_handlers()
        .await
        .unwrap()
        .into_iter()
        .map(|h| h.name)
        .collect();
    assert_eq!(names, ["another", "linter"]);

    let before_delete = store.handlers_revision().await.unwrap();
    assert!(store.delete_handler(other.id).await.unwrap());
    let after_delete = store.handlers_revision().await.unwrap();
    assert_ne!(after_delete, before_delete);
    assert!(!store.delete_handler(other.id).await.unwrap());
    assert_eq!(store.handlers_revision().await.unwrap(), after_delete);
    assert_eq!(store.get_handler(other.id).await.unwrap(), None);
    test.finish().await;
}

#[tokio::test]
async fn deliveries_are_recorded_once_with_their_runs() {
    let Some(test) = TestStore::new("deliveries_are_recorded_once_with_their_runs").await else {
        return;
    };
    let store = &test.store;
    let first = run("linter", "octo/hello", now());
    let second = run("tests", "octo/hello", now());
    let outcome = store
        .record_delivery(delivery("d-1", vec![]), vec![first.clone(), second.clone()])
        .await
        .unwrap();
    assert_eq!(outcome, DeliveryOutcome::Recorded);
    assert_eq!(store.get_run(first.id).await.unwrap(), Some(first.clone()));
    assert_eq!(
        store.get_run(second.id).await.unwrap(),
        Some(second.clone())
    );

    let again = run("linter", "octo/hello", now());
    let outcome = store
        .record_delivery(delivery("d-1", vec![]), vec![again.clone()])
        .await
        .unwrap();
    assert_eq!(
        outcome,
        DeliveryOutcome::Duplicate(vec![first.id, second.id])
    );
    assert_eq!(
        store.get_run(again.id).await.unwrap(),
        None,
        "a redelivery wrote a run"
    );

    let stored = store.get_delivery("d-1").await.unwrap().unwrap();
    assert_eq!(stored.run_ids, vec![first.id, second.id]);
    assert_eq!(stored.body, delivery("d-1", vec![]).body);
    assert_eq!(stored.headers, delivery("d-1", vec![]).headers);
    assert_eq!(store.get_delivery("d-unknown").await.unwrap(), None);

    let replay = run("linter", "octo/hello", now());
    store
        .add_delivery_runs("d-1", vec![replay.clone()])
        .await
        .unwrap();
    let stored = store.get_delivery("d-1").await.unwrap().unwrap();
    assert_eq!(stored.run_ids, vec![first.id, second.id, replay.id]);
    assert!(store.get_run(replay.id).await.unwrap().is_some());
    let orphan = run("linter", "octo/hello", now());
    let missing = store
        .add_delivery_runs("d-unknown", vec![orphan.clone()])
        .await
        .unwrap_err();
    assert!(
        matches!(
            missing,
            StoreError::NotFound {
                what: "delivery",
                ..
            }
        ),
        "{missing}"
    );
    assert_eq!(store.get_run(orphan.id).await.unwrap(), None);

    let mut later = delivery("d-2", vec![]);
    later.received_at = stored.received_at + Duration::seconds(1);
    store.record_delivery(later, vec![]).await.unwrap();
    let ids: Vec<String> = store
        .list_deliveries(10)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(ids, ["d-2", "d-1"]);
    assert_eq!(store.list_deliveries(1).await.unwrap().len(), 1);

    // A run id that is taken fails the whole delivery: neither it nor its runs are stored.
    let fresh = run("linter", "octo/hello", now());
    let clash = store
        .record_delivery(delivery("d-3", vec![]), vec![fresh.clone(), first.clone()])
        .await
        .unwrap_err();
    assert!(matches!(clash, StoreError::Backend(_)), "{clash}");
    assert_eq!(store.get_delivery("d-3").await.unwrap(), None);
    assert_eq!(store.get_run(fresh.id).await.unwrap(), None);
    test.finish().await;
}

#[tokio::test]
async fn concurrent_redeliveries_create_one_set_of_runs() {
    let Some(test) = TestStore::new("concurrent_redeliveries_create_one_set_of_runs").await else {
        return;
    };
    let store = Arc::new(test.store.clone());
    let attempts = (0..8).map(|_| {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            let candidate = run("linter", "octo/hello", now());
            let outcome = store
                .record_delivery(delivery("same", vec![]), vec![candidate.clone()])
                .await
                .unwrap();
            (outcome, candidate.id)
        })
    });
    let outcomes = futures::future::try_join_all(attempts).await.unwrap();
    let winners: Vec<RunId> = outcomes
        .iter()
        .filter(|(outcome, _)| *outcome == DeliveryOutcome::Recorded)
        .map(|(_, id)| *id)
        .collect();
    assert_eq!(winners.len(), 1, "{outcomes:?}");
    for (outcome, _) in &outcomes {
        if let DeliveryOutcome::Duplicate(ids) = outcome {
            assert_eq!(ids, &winners);
        }
    }
    let runs = store.list_runs(&RunFilter::default()).await.unwrap();
    assert_eq!(runs.iter().map(|run| run.id).collect::<Vec<_>>(), winners);
    test.finish().await;
}

/// Many deliveries at once share statements (group commit); each must still get its own
/// outcome: 20 distinct ids, each sent 4 times with its own candidate run; then a batch in
/// which some deliveries reuse a taken run id, which must fail alone.
#[tokio::test]
async fn concurrent_deliveries_are_batched_with_per_delivery_outcomes() {
    let Some(test) =
        TestStore::new("concurrent_deliveries_are_batched_with_per_delivery_outcomes").await
    else {
        return;
    };
    let store = Arc::new(test.store.clone());
    let taken = run("linter", "octo/hello", now());
    store.create_runs(vec![taken.clone()]).await.unwrap();

    let mut calls = Vec::new();
    for attempt in 0..4 {
        for id in 0..20 {
            let store = Arc::clone(&store);
            calls.push(tokio::spawn(async move {
                let candidate = run("linter", "octo/hello", now());
                let outcome = store
                    .record_delivery(
                        delivery(&format!("batch-{id}"), vec![]),
                        vec![candidate.clone()],
                    )
                    .await
                    .unwrap();
                (id, attempt, outcome, candidate.id)
            }));
        }
    }
    let outcomes = futures::future::try_join_all(calls).await.unwrap();

    for id in 0..20 {
        let of_id: Vec<_> = outcomes.iter().filter(|(i, ..)| *i == id).collect();
        let winners: Vec<RunId> = of_id
            .iter()
            .filter(|(_, _, outcome, _)| *outcome == DeliveryOutcome::Recorded)
            .map(|(.., run)| *run)
            .collect();
        assert_eq!(winners.len(), 1, "delivery batch-{id}: {of_id:?}");
        for (_, _, outcome, _) in &of_id {
            if let DeliveryOutcome::Duplicate(runs) = outcome {
                assert_eq!(runs, &winners, "delivery batch-{id}");
            }
        }
        let stored = store
            .get_delivery(&format!("batch-{id}"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.run_ids, winners);
        assert!(store.get_run(winners[0]).await.unwrap().is_some());
    }

    // A batch where some deliveries reuse a taken run id: those fail alone, the others are
    // recorded.
    let mut calls = Vec::new();
    for id in 0..10 {
        let store = Arc::clone(&store);
        let taken = taken.clone();
        calls.push(tokio::spawn(async move {
            let fresh = run("linter", "octo/hello", now());
            let mut runs = vec![fresh.clone()];
            if id % 3 == 0 {
                runs.push(taken);
            }
            let outcome = store
                .record_delivery(delivery(&format!("mixed-{id}"), vec![]), runs)
                .await;
            (id, outcome, fresh.id)
        }));
    }
    for (id, outcome, fresh) in futures::future::try_join_all(calls).await.unwrap() {
        let stored = store.get_delivery(&format!("mixed-{id}")).await.unwrap();
        if id % 3 == 0 {
            let clash = outcome.unwrap_err();
            assert!(clash.to_string().contains("same id"), "{clash}");
            assert_eq!(stored, None);
            assert_eq!(store.get_run(fresh).await.unwrap(), None);
        } else {
            assert_eq!(outcome.unwrap(), DeliveryOutcome::Recorded);
            assert_eq!(stored.unwrap().run_ids, vec![fresh]);
        }
    }
    // The winners' runs, the 6 mixed deliveries' and the one created first; nothing else.
    let runs = store.list_runs(&RunFilter::default()).await.unwrap();
    assert_eq!(runs.len(), 20 + 6 + 1, "{runs:?}");
    test.finish().await;
}

#[tokio::test]
async fn runs_list_newest_first_with_filters_and_paging() {
    let Some(test) = TestStore::new("runs_list_newest_first_with_filters_and_paging").await else {
        return;
    };
    let store = &test.store;
    let start = now();
    let runs: Vec<RunRecord> = (0..6)
        .map(|i| {
            let repository = if i % 2 == 0 { "octo/even" } else { "octo/odd" };
            let handler = if i < 3 { "early" } else { "late" };
            run(handler, repository, start + Duration::seconds(i))
        })
        .collect();
    store.create_runs(runs.clone()).await.unwrap();
    store.create_runs(vec![]).await.unwrap();
    let ids = |list: Vec<RunRecord>| list.into_iter().map(|run| run.id).collect::<Vec<_>>();
    let newest_first: Vec<RunId> = runs.iter().rev().map(|run| run.id).collect();

    assert_eq!(
        ids(store.list_runs(&RunFilter::default()).await.unwrap()),
        newest_first
    );
    let even = RunFilter {
        repository: Some("octo/even".to_owned()),
        ..RunFilter::default()
    };
    assert_eq!(
        ids(store.list_runs(&even).await.unwrap()),
        [runs[4].id, runs[2].id, runs[0].id]
    );
    let late_odd = RunFilter {
        repository: Some("octo/odd".to_owned()),
        handler: Some("late".to_owned()),
        ..RunFilter::default()
    };
    assert_eq!(
        ids(store.list_runs(&late_odd).await.unwrap()),
        [runs[5].id, runs[3].id]
    );

    let page = RunFilter {
        limit: Some(2),
        ..RunFilter::default()
    };
    let first_page = ids(store.list_runs(&page).await.unwrap());
    assert_eq!(first_page, newest_first[..2]);
    let next = RunFilter {
        before: first_page.last().copied(),
        limit: Some(3),
        ..page
    };
    assert_eq!(
        ids(store.list_runs(&next).await.unwrap()),
        newest_first[2..5]
    );

    store
        .transition_run(runs[1].id, &[RunStatus::Queued], RunStatus::Running, None)
        .await
        .unwrap()
        .unwrap();
    let running = RunFilter {
        status: Some(RunStatus::Running),
        ..RunFilter::default()
    };
    assert_eq!(ids(store.list_runs(&running).await.unwrap()), [runs[1].id]);
    let counts = store.count_runs_by_status().await.unwrap();
    assert_eq!(counts[&RunStatus::Queued], 5);
    assert_eq!(counts[&RunStatus::Running], 1);
    assert_eq!(counts[&RunStatus::Failed], 0);
    assert_eq!(counts.len(), RunStatus::ALL.len());
    test.finish().await;
}

#[tokio::test]
async fn transition_run_is_a_compare_and_set_that_stamps_times() {
    let Some(test) = TestStore::new("transition_run_is_a_compare_and_set_that_stamps_times").await
    else {
        return;
    };
    let store = &test.store;
    let queued = run("linter", "octo/hello", now());
    store.create_runs(vec![queued.clone()]).await.unwrap();

    let not_from = store
        .transition_run(queued.id, &[RunStatus::Running], RunStatus::Succeeded, None)
        .await
        .unwrap();
    assert_eq!(not_from, None);

    let started = store
        .transition_run(queued.id, &[RunStatus::Queued], RunStatus::Running, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(started.status, RunStatus::Running);
    let started_at = started.started_at.expect("started_at set on running");
    assert_eq!(started.finished_at, None);

    // Running again (a worker re-claiming it) keeps the first start time.
    let again = store
        .transition_run(queued.id, &[RunStatus::Running], RunStatus::Running, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.started_at, Some(started_at));

    let failed = store
        .transition_run(
            queued.id,
            &[RunStatus::Queued, RunStatus::Running],
            RunStatus::Failed,
            Some("step `linter` failed".to_owned()),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(failed.status, RunStatus::Failed);
    assert_eq!(failed.error.as_deref(), Some("step `linter` failed"));
    assert!(failed.finished_at.unwrap() >= started_at);
    assert_eq!(store.get_run(queued.id).await.unwrap(), Some(failed));

    let unknown = store
        .transition_run(RunId::new(), &[RunStatus::Queued], RunStatus::Running, None)
        .await
        .unwrap_err();
    assert!(
        matches!(unknown, StoreError::NotFound { what: "run", .. }),
        "{unknown}"
    );
    test.finish().await;
}

#[tokio::test]
async fn concurrent_transitions_let_exactly_one_worker_claim_a_run() {
    let Some(test) =
        TestStore::new("concurrent_transitions_let_exactly_one_worker_claim_a_run").await
    else {
        return;
    };
    let queued = run("linter", "octo/hello", now());
    test.store.create_runs(vec![queued.clone()]).await.unwrap();
    let claims = (0..8).map(|_| {
        let store = test.store.clone();
        tokio::spawn(async move {
            store
                .transition_run(queued.id, &[RunStatus::Queued], RunStatus::Running, None)
                .await
                .unwrap()
                .is_some()
        })
    });
    let won = futures::future::try_join_all(claims).await.unwrap();
    assert_eq!(won.iter().filter(|won| **won).count(), 1, "{won:?}");
    test.finish().await;
}

#[tokio::test]
async fn steps_upsert_by_key_and_list_in_first_recorded_order() {
    let Some(test) = TestStore::new("steps_upsert_by_key_and_list_in_first_recorded_order").await
    else {
        return;
    };
    let store = &test.store;
    let parent = run("linter", "octo/hello", now());
    store.create_runs(vec![parent.clone()]).await.unwrap();

    // Keys that sort differently as text than in the order they ran.
    for key in ["1", "0.on_failure.0", "10", "2"] {
        store
            .record_step(parent.id, step(key, StepStatus::Running))
            .await
            .unwrap();
    }
    let mut finished = step("0.on_failure.0", StepStatus::TimedOut);
    finished.attempt = 2;
    finished.error = Some("timed out after 5m".to_owned());
    finished
        .data
        .insert("output".to_owned(), json!("bin\u{0}ary"));
    store
        .record_step(parent.id, finished.clone())
        .await
        .unwrap();

    let steps = store.list_steps(parent.id).await.unwrap();
    let keys: Vec<&str> = steps.iter().map(|step| step.key.as_str()).collect();
    assert_eq!(keys, ["1", "0.on_failure.0", "10", "2"]);
    let mut expected = finished;
    expected
        .data
        .insert("output".to_owned(), json!("bin\u{FFFD}ary"));
    assert_eq!(steps[1], expected);
    assert_eq!(
        steps[0],
        step("1", StepStatus::Running).with_times_of(&steps[0])
    );
    assert_eq!(store.list_steps(RunId::new()).await.unwrap(), vec![]);

    let orphan = store
        .record_step(RunId::new(), step("0", StepStatus::Success))
        .await
        .unwrap_err();
    assert!(
        matches!(orphan, StoreError::NotFound { what: "run", .. }),
        "{orphan}"
    );
    test.finish().await;
}

trait WithTimesOf {
    fn with_times_of(self, other: &StepRecord) -> StepRecord;
}

impl WithTimesOf for StepRecord {
    /// This step with `other`'s timestamps (fixtures take `now()` when built).
    fn with_times_of(mut self, other: &StepRecord) -> StepRecord {
        self.started_at = other.started_at;
        self.finished_at = other.finished_at;
        self
    }
}

#[tokio::test]
async fn logs_append_and_read_from_byte_offsets() {
    let Some(test) = TestStore::new("logs_append_and_read_from_byte_offsets").await else {
        return;
    };
    let store = &test.store;
    let parent = run("linter", "octo/hello", now());
    store.create_runs(vec![parent.clone()]).await.unwrap();
    let id = parent.id;

    let empty = store.read_log(id, "0", 0).await.unwrap();
    assert_eq!((empty.text.as_str(), empty.next_offset), ("", 0));

    store.append_log(id, "0", "héllo ").await.unwrap();
    store.append_log(id, "0", "").await.unwrap();
    store.append_log(id, "0", "wörld\0\n").await.unwrap();
    store.append_log(id, "1", "other step").await.unwrap();
    let full = "héllo wörld\0\n";

    let all = store.read_log(id, "0", 0).await.unwrap();
    assert_eq!(
        (all.text.as_str(), all.next_offset),
        (full, full.len() as u64)
    );
    // The second chunk starts at byte 7; byte 8 starts `ö`.
    let from_middle_of_second_chunk = store.read_log(id, "0", 8).await.unwrap();
    assert_eq!(from_middle_of_second_chunk.text, &full[8..]);
    // Byte 2 is inside `é`: the text starts at the next whole character.
    let inside_a_character = store.read_log(id, "0", 2).await.unwrap();
    assert_eq!(inside_a_character.text, &full[3..]);
    let at_end = store.read_log(id, "0", full.len() as u64).await.unwrap();
    assert_eq!(
        (at_end.text.as_str(), at_end.next_offset),
        ("", full.len() as u64)
    );
    let past_end = store.read_log(id, "0", 1000).await.unwrap();
    assert_eq!(
        (past_end.text.as_str(), past_end.next_offset),
        ("", full.len() as u64)
    );
    assert_eq!(store.read_log(id, "1", 0).await.unwrap().text, "other step");

    let orphan = store.append_log(RunId::new(), "0", "x").await.unwrap_err();
    assert!(
        matches!(orphan, StoreError::NotFound { what: "run", .. }),
        "{orphan}"
    );
    test.finish().await;
}

/// A long log is read a chunk of at most `LogChunk::MAX_BYTES` at a time, cut at a
/// character, and only the rows that reach the chunk are fetched.
#[tokio::test]
async fn a_long_log_is_read_in_capped_chunks() {
    let Some(test) = TestStore::new("a_long_log_is_read_in_capped_chunks").await else {
        return;
    };
    let store = &test.store;
    let parent = run("linter", "octo/hello", now());
    store.create_runs(vec![parent.clone()]).await.unwrap();
    let id = parent.id;
    // 3-byte characters in 30 KB appends: the cap falls inside a character and a row.
    let append = "✓".repeat(10_000);
    for _ in 0..80 {
        store.append_log(id, "0", &append).await.unwrap();
    }
    let log = append.repeat(80);

    let first = store.read_log(id, "0", 0).await.unwrap();
    assert!(
        first.text.len() <= LogChunk::MAX_BYTES && first.text.len() > LogChunk::MAX_BYTES - 3,
        "{} bytes",
        first.text.len()
    );
    assert_eq!(first.next_offset, first.text.len() as u64);
    let mut text = first.text;
    let mut offset = first.next_offset;
    loop {
        let chunk = store.read_log(id, "0", offset).await.unwrap();
        if chunk.text.is_empty() {
            break;
        }
        assert!(chunk.text.len() <= LogChunk::MAX_BYTES);
        text.push_str(&chunk.text);
        offset = chunk.next_offset;
    }
    assert_eq!(offset, log.len() as u64);
    assert!(text == log, "the chunks make up the log");
    test.finish().await;
}

#[tokio::test]
async fn concurrent_log_appends_are_all_kept() {
    let Some(test) = TestStore::new("concurrent_log_appends_are_all_kept").await else {
        return;
    };
    let parent = run("linter", "octo/hello", now());
    test.store.create_runs(vec![parent.clone()]).await.unwrap();
    let writers = (0..8).map(|writer| {
        let store = test.store.clone();
        tokio::spawn(async move {
            for line in 0..25 {
                store
                    .append_log(parent.id, "0", &format!("writer {writer} line {line}\n"))
                    .await
                    .unwrap();
            }
        })
    });
    futures::future::try_join_all(writers).await.unwrap();
    let log = test.store.read_log(parent.id, "0", 0).await.unwrap();
    let mut lines: Vec<&str> = log.text.lines().collect();
    assert_eq!(log.next_offset, log.text.len() as u64);
    lines.sort_unstable();
    let mut expected: Vec<String> = (0..8)
        .flat_map(|writer| (0..25).map(move |line| format!("writer {writer} line {line}")))
        .collect();
    expected.sort_unstable();
    assert_eq!(lines, expected);
    test.finish().await;
}

#[tokio::test]
async fn timestamps_keep_microseconds() {
    let Some(test) = TestStore::new("timestamps_keep_microseconds").await else {
        return;
    };
    let precise = DateTime::from_timestamp(1_700_000_000, 123_456_789).unwrap();
    let stored = run("linter", "octo/hello", precise);
    test.store.create_runs(vec![stored.clone()]).await.unwrap();
    let read = test.store.get_run(stored.id).await.unwrap().unwrap();
    assert_eq!(
        read.created_at,
        DateTime::from_timestamp(1_700_000_000, 123_456_000).unwrap()
    );
    test.finish().await;
}

#[tokio::test]
async fn ping_answers() {
    let Some(test) = TestStore::new("ping_answers").await else {
        return;
    };
    test.store.ping().await.unwrap();
    test.finish().await;
}

#[tokio::test]
async fn events_round_trip_exactly_including_nul() {
    let Some(test) = TestStore::new("events_round_trip_exactly_including_nul").await else {
        return;
    };
    let mut stored = run("linter", "octo/hello", now());
    // JSONB would refuse U+0000; the event column keeps the bytes the store wrote.
    stored.event.data =
        json!({"action": "opened", "payload": {"title": "nul \u{0} here", "emoji": "🐹"}}).into();
    test.store.create_runs(vec![stored.clone()]).await.unwrap();
    let read = test.store.get_run(stored.id).await.unwrap().unwrap();
    assert_eq!(read.event, stored.event);
    test.finish().await;
}

#[tokio::test]
async fn large_columns_use_lz4_when_the_server_has_it() {
    let Some(test) = TestStore::new("large_columns_use_lz4_when_the_server_has_it").await else {
        return;
    };
    let pool = test.store.pool();
    let server_has_lz4: bool = sqlx::query_scalar(
        "SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'",
    )
    .fetch_optional(pool)
    .await
    .unwrap()
    .unwrap_or(false);
    let methods: Vec<(String, String)> = sqlx::query_as(
        "SELECT a.attrelid::regclass::text || '.' || a.attname, a.attcompression::text \
         FROM pg_attribute a \
         WHERE (a.attrelid::regclass::text, a.attname) IN \
             (('deliveries', 'body'), ('runs', 'event'), ('steps', 'data'), \
              ('step_log_chunks', 'content')) \
         ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert_eq!(methods.len(), 4, "{methods:?}");
    let expected = if server_has_lz4 { "l" } else { "" };
    for (column, method) in &methods {
        assert_eq!(method, expected, "compression of {column}");
    }
    test.finish().await;
}

#[tokio::test]
async fn a_payload_that_is_the_delivery_body_is_stored_once() {
    let Some(test) = TestStore::new("a_payload_that_is_the_delivery_body_is_stored_once").await
    else {
        return;
    };
    let body = br#"{"action":"opened","marker":"only-in-the-payload"}"#;
    let mut stored = run("linter", "octo/hello", now());
    stored.delivery_id = Some("d-once".to_owned());
    stored.event.data = json!({"action": "opened", "payload": serde_json::from_slice::<serde_json::Value>(body).unwrap()}).into();
    let mut record = delivery("d-once", vec![stored.id]);
    record.body = body.to_vec();
    record.body_is_payload = true;
    test.store
        .record_delivery(record, vec![stored.clone()])
        .await
        .unwrap();
    let (kept_apart, event): (bool, Vec<u8>) =
        sqlx::query_as("SELECT payload_in_delivery, event FROM runs WHERE id = $1")
            .bind(stored.id.0)
            .fetch_one(test.store.pool())
            .await
            .unwrap();
    assert!(kept_apart);
    assert!(!String::from_utf8_lossy(&event).contains("only-in-the-payload"));
    assert_eq!(
        test.store.get_run(stored.id).await.unwrap().unwrap().event,
        stored.event
    );
    test.finish().await;
}
