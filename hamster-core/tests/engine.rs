//! The engine end to end on in-memory backends: loading, validation, matching, execution.
#![cfg(feature = "testing")]
#![allow(clippy::unwrap_used)]

use async_trait::async_trait;
use hamster_core::action::{ActionContext, ActionError, ActionOutput, ActionRegistry, TypedAction};
use hamster_core::engine::{Engine, EngineConfig};
use hamster_core::event::{EventRecord, Repository, SourceRecord};
use hamster_core::handler::{HandlerErrors, load_str};
use hamster_core::memory::{MemoryQueue, MemoryStore};
use hamster_core::store::{
    DeliveryRecord, RunId, RunRecord, RunStatus, StepRecord, StepStatus, Store,
};
use hamster_core::testing::{RecordingAction, TestKit};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

const SEED: &str = r#"name: Pull Request Linter
events: [pull_request.opened, pull_request.reopened]
criteria: source.repository is Hello-World
actions:
  - action: shell_command
    name: linter
    args: ['pip install pylint && pylint ./']
    on_failure:
      - action: pull_request_comment
        args: ['lint failed: {{ linter.output }}']
  - action: pull_request_comment
    args: ['hey @{{ source.user }} pylint returned {{ linter.output }}']
"#;

fn pr_event(name: &str, repository: &str) -> EventRecord {
    EventRecord {
        name: name.to_owned(),
        delivery_id: Some("72d3162e-cc78-11e3-81ab-4c9367dc0958".to_owned()),
        source: SourceRecord {
            kind: "pull_request".to_owned(),
            repository: Repository::new("github.com", "Codertocat", repository),
            fields: json!({"repository": repository, "owner": "Codertocat", "user": "Codertocat", "number": 2, "title": "Update the README with new information.", "labels": ["bug"]}).into(),
            checkout: None,
            deferred: vec![],
        },
        data: json!({"action": name.split('.').nth(1), "sender": "Codertocat"}).into(),
    }
}

fn shell(output: &str, success: bool) -> RecordingAction {
    let answer = if success {
        ActionOutput::success()
    } else {
        ActionOutput::failure()
    };
    RecordingAction::new("shell_command").always(
        answer
            .with("output", output)
            .with("exit_code", if success { 0 } else { 1 }),
    )
}

fn fakes() -> ActionRegistry {
    let mut registry = ActionRegistry::new();
    registry
        .register(RecordingAction::new("shell_command"))
        .unwrap();
    registry
        .register(RecordingAction::new("pull_request_comment"))
        .unwrap();
    registry.register(Greet).unwrap();
    registry
}

#[derive(Debug)]
struct Greet;

#[derive(serde::Deserialize)]
struct GreetArgs {
    who: String,
    times: u32,
}

#[async_trait]
impl TypedAction for Greet {
    const NAME: &'static str = "greet";
    type Args = GreetArgs;
    async fn run(
        &self,
        args: GreetArgs,
        _ctx: &ActionContext<'_>,
    ) -> Result<ActionOutput, ActionError> {
        Ok(ActionOutput::success().with(
            "output",
            vec![format!("hello {}", args.who); args.times as usize].join(" "),
        ))
    }
}

#[tokio::test]
async fn seed_handler_success_path_puts_linter_output_into_the_comment() {
    let comments = RecordingAction::new("pull_request_comment");
    let kit = TestKit::builder()
        .without_linked_actions()
        .action(shell("Your code has been rated at 10.00/10", true))
        .action(comments.clone())
        .handlers(SEED)
        .build()
        .await
        .unwrap();
    let runs = kit
        .run_event(&pr_event("pull_request.opened", "Hello-World"))
        .await
        .unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].status(), RunStatus::Succeeded);
    assert_eq!(
        comments.calls(),
        vec![json!([
            "hey @Codertocat pylint returned Your code has been rated at 10.00/10"
        ])]
    );
    assert_eq!(runs[0].step("linter").unwrap().data["exit_code"], json!(0));
    assert_eq!(
        runs[0].step("linter").unwrap().data["status"],
        json!("success")
    );
}

#[tokio::test]
async fn seed_handler_failure_runs_the_callback_and_stops() {
    let comments = RecordingAction::new("pull_request_comment");
    let kit = TestKit::builder()
        .without_linked_actions()
        .action(shell("E0001 syntax error", false))
        .action(comments.clone())
        .handlers(SEED)
        .build()
        .await
        .unwrap();
    let runs = kit
        .run_event(&pr_event("pull_request.reopened", "Hello-World"))
        .await
        .unwrap();
    assert_eq!(runs[0].status(), RunStatus::Failed);
    assert_eq!(
        comments.calls(),
        vec![json!(["lint failed: E0001 syntax error"])]
    );
    let keys: Vec<&str> = runs[0].steps.iter().map(|s| s.key.as_str()).collect();
    assert_eq!(keys, ["0", "0.on_failure.0"]);
    assert_eq!(
        runs[0].run.error.as_deref(),
        Some("step `linter` failed: exit code 1")
    );
}

#[tokio::test]
async fn criteria_and_event_names_select_handlers() {
    let kit = TestKit::builder()
        .without_linked_actions()
        .action(shell("ok", true))
        .action(RecordingAction::new("pull_request_comment"))
        .handlers(SEED)
        .build()
        .await
        .unwrap();
    assert!(
        kit.run_event(&pr_event("pull_request.opened", "Other-Repo"))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        kit.run_event(&pr_event("pull_request.closed", "Hello-World"))
            .await
            .unwrap()
            .is_empty()
    );
    let (_, dispatch) = kit
        .run_events(&[pr_event("pull_request.opened", "Other-Repo")], None)
        .await
        .unwrap();
    assert_eq!(dispatch.unmatched.len(), 1);
    assert!(
        dispatch.unmatched[0]
            .reason
            .to_string()
            .contains("criteria"),
        "{:?}",
        dispatch.unmatched
    );
}

#[tokio::test]
async fn criteria_forms() {
    let cases = [
        ("source.repository is Hello-World", true),
        ("source.repository is not Hello-World", false),
        (
            "source.number > 1 and event.sender not in [\"dependabot[bot]\"]",
            true,
        ),
        ("event.sender in [\"dependabot[bot]\"]", false),
        ("source.title is matches('^Update .* README')", true),
        ("source.title is startswith 'Update'", true),
        ("source.title is startswith 'WIP'", false),
        ("source.labels is contains 'bug'", true),
        ("source.title is contains 'README'", true),
        ("source.full_name is defined", false),
    ];
    for (criteria, expected) in cases {
        let yaml = format!(
            "name: h\nevents: [pull_request.*]\ncriteria: '{}'\nactions: [{{action: shell_command}}]\n",
            criteria.replace('\'', "''")
        );
        let kit = TestKit::builder()
            .without_linked_actions()
            .action(shell("", true))
            .handlers(yaml)
            .build()
            .await
            .unwrap();
        let runs = kit
            .run_event(&pr_event("pull_request.opened", "Hello-World"))
            .await
            .unwrap();
        assert_eq!(runs.len() == 1, expected, "criteria `{criteria}`");
    }
}

#[tokio::test]
async fn criteria_evaluation_error_does_not_match_and_says_why() {
    let yaml = "name: h\nevents: ['*']\ncriteria: source.title is matches('(')\nactions: [{action: shell_command}]\n";
    let kit = TestKit::builder()
        .without_linked_actions()
        .action(shell("", true))
        .handlers(yaml)
        .build()
        .await
        .unwrap();
    let (runs, dispatch) = kit
        .run_events(&[pr_event("pull_request.opened", "Hello-World")], None)
        .await
        .unwrap();
    assert!(runs.is_empty());
    assert!(
        dispatch.unmatched[0]
            .reason
            .to_string()
            .contains("regular expression"),
        "{:?}",
        dispatch.unmatched
    );
}

fn delivery_of(event: &EventRecord, body: &[u8]) -> DeliveryRecord {
    DeliveryRecord {
        id: event.delivery_id.clone().unwrap(),
        event: "pull_request".into(),
        received_at: chrono::Utc::now(),
        headers: Default::default(),
        body: body.to_vec(),
        run_ids: vec![],
        body_is_payload: true,
    }
}

#[test]
fn criteria_say_whether_they_read_the_payload() {
    let reads = |criteria: &str| {
        let yaml = format!(
            "name: h\nevents: ['*']\ncriteria: '{}'\nactions: [{{action: shell_command}}]\n",
            criteria.replace('\'', "''")
        );
        load_str(&yaml, "h.yaml", &fakes()).unwrap()[0]
            .compiled
            .criteria_read_payload()
    };
    assert!(reads("event.payload.pull_request.draft"));
    assert!(reads("event.payload"));
    assert!(reads("event[\"payload\"].pull_request.draft"));
    assert!(reads("event | tojson is contains 'draft'"));
    assert!(reads(
        "source.repository is Hello-World and event.payload.number > 1"
    ));
    assert!(!reads("source.repository is Hello-World"));
    assert!(!reads(
        "event.sender == 'octocat' and event.action == 'opened'"
    ));
    assert!(!reads("event.payloads_are_not_payload"));
}

/// Intake may leave the payload in the delivery's body; criteria that read it still see it,
/// and every run reads back with it.
#[tokio::test]
async fn criteria_see_a_payload_that_intake_left_in_the_delivery() {
    let yaml = "name: not draft\nevents: [pull_request.opened]\ncriteria: event.payload.pull_request.draft == false\nactions: [{action: shell_command}]\n---\nname: by subscript\nevents: [pull_request.opened]\ncriteria: event[\"payload\"][\"pull_request\"][\"draft\"] == false\nactions: [{action: shell_command}]\n---\nname: no payload needed\nevents: [pull_request.opened]\ncriteria: source.repository is Hello-World\nactions: [{action: shell_command}]\n";
    let kit = TestKit::builder()
        .without_linked_actions()
        .action(shell("", true))
        .handlers(yaml)
        .build()
        .await
        .unwrap();
    let mut event = pr_event("pull_request.opened", "Hello-World");
    assert!(!event.has_payload());

    let body = br#"{"action": "opened", "pull_request": {"draft": false}}"#;
    let (runs, dispatch) = kit
        .run_events(
            std::slice::from_ref(&event),
            Some(delivery_of(&event, body)),
        )
        .await
        .unwrap();
    assert_eq!(runs.len(), 3, "{:?}", dispatch.unmatched);
    for report in &runs {
        assert_eq!(
            report.run.event.data["payload"]["pull_request"]["draft"],
            false
        );
    }

    event.delivery_id = Some("d-draft".to_owned());
    let body = br#"{"action": "opened", "pull_request": {"draft": true}}"#;
    let (runs, dispatch) = kit
        .run_events(
            std::slice::from_ref(&event),
            Some(delivery_of(&event, body)),
        )
        .await
        .unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].run.handler_name, "no payload needed");
    assert_eq!(dispatch.unmatched.len(), 2, "{:?}", dispatch.unmatched);

    event.delivery_id = Some("d-not-json".to_owned());
    let error = kit
        .run_events(
            std::slice::from_ref(&event),
            Some(delivery_of(&event, b"{not json")),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("d-not-json") && error.contains("not JSON"),
        "{error}"
    );
}

/// A kit with the seed handler, and the run it made of a `pull_request.opened` (finished).
async fn kit_with_a_finished_seed_run() -> (TestKit, RunRecord) {
    let kit = TestKit::builder()
        .without_linked_actions()
        .action(shell("ok", true))
        .action(RecordingAction::new("pull_request_comment"))
        .handlers(SEED)
        .build()
        .await
        .unwrap();
    let run = kit
        .run_event(&pr_event("pull_request.opened", "Hello-World"))
        .await
        .unwrap()
        .remove(0)
        .run;
    (kit, run)
}

/// A new run like `template`, `queued` since `created_at`, as intake records it.
fn queued_copy(template: &RunRecord, created_at: chrono::DateTime<chrono::Utc>) -> RunRecord {
    RunRecord {
        id: RunId::new(),
        status: RunStatus::Queued,
        created_at,
        started_at: None,
        finished_at: None,
        ..template.clone()
    }
}

/// A run recorded by a process that died before it enqueued the job is enqueued by the
/// sweep, once; a run whose job is still in the queue gets no second one; a young run is
/// left to intake.
#[tokio::test]
async fn stranded_runs_are_enqueued_once_and_run() {
    let (kit, template) = kit_with_a_finished_seed_run().await;
    let queued = |minutes_ago| {
        queued_copy(
            &template,
            chrono::Utc::now() - chrono::TimeDelta::minutes(minutes_ago),
        )
    };
    let (stranded, backlogged, young) = (queued(10), queued(10), queued(0));
    let store = kit.store();
    store
        .create_runs(vec![stranded.clone(), backlogged.clone(), young.clone()])
        .await
        .unwrap();
    // The backlogged run's job is in the queue; the other two have none.
    let engine = kit.engine();
    engine.requeue(backlogged.id).await.unwrap();
    let ready = || async { engine.queue().stats().await.unwrap().ready };
    assert_eq!(ready().await, 1);

    let a_minute_ago = chrono::Utc::now() - chrono::TimeDelta::minutes(1);
    let offered = engine.enqueue_stranded(a_minute_ago, None).await.unwrap();
    assert_eq!(offered, 2, "the two runs queued for 10 minutes");
    assert_eq!(ready().await, 2, "one new job, for the stranded run only");
    engine.enqueue_stranded(a_minute_ago, None).await.unwrap();
    assert_eq!(ready().await, 2, "sweeping again adds nothing");

    let executed = engine.run_until_idle().await.unwrap();
    assert_eq!(executed.len(), 2);
    for run in [&stranded, &backlogged] {
        let run = store.get_run(run.id).await.unwrap().unwrap();
        assert_eq!(run.status, RunStatus::Succeeded);
    }
    let young = store.get_run(young.id).await.unwrap().unwrap();
    assert_eq!(
        young.status,
        RunStatus::Queued,
        "a young run is intake's to enqueue"
    );
    // Once its job was acked, a run can be enqueued again (a terminal run then does nothing).
    engine.requeue(stranded.id).await.unwrap();
    assert_eq!(ready().await, 1);
}

/// A sweep with `since` enqueues only the runs created in its window, across pages of the
/// store's listing, and stops at the first older run.
#[tokio::test]
async fn a_stranded_sweep_reads_only_its_window() {
    let (kit, template) = kit_with_a_finished_seed_run().await;
    let engine = kit.engine();
    engine.run_until_idle().await.unwrap();
    // 250 runs a second apart, the newest a minute old: more than two pages.
    let newest = chrono::Utc::now() - chrono::TimeDelta::minutes(1);
    let runs: Vec<RunRecord> = (0..250)
        .map(|seconds_older| {
            queued_copy(
                &template,
                newest - chrono::TimeDelta::seconds(seconds_older),
            )
        })
        .collect();
    kit.store().create_runs(runs.clone()).await.unwrap();
    let ready = || async { engine.queue().stats().await.unwrap().ready };
    assert_eq!(ready().await, 0);

    // The newest 30 are too young; the window then holds the next 210 (`since` inclusive).
    let created_before = runs[29].created_at;
    let since = runs[239].created_at;
    let offered = engine
        .enqueue_stranded(created_before, Some(since))
        .await
        .unwrap();
    assert_eq!(offered, 210);
    assert_eq!(ready().await, 210);
    let all = engine
        .enqueue_stranded(chrono::Utc::now(), None)
        .await
        .unwrap();
    assert_eq!(all, 250, "without `since`, every queued run");
    assert_eq!(ready().await, 250, "and only the 40 left out got a job");
}

fn errors(yaml: &str) -> HandlerErrors {
    load_str(yaml, "handlers/lint.yaml", &fakes()).unwrap_err()
}

fn only(errors: &HandlerErrors) -> String {
    assert_eq!(errors.0.len(), 1, "{errors}");
    errors.0[0].to_string()
}

#[test]
fn validation_unknown_action_names_position_and_suggestion() {
    let e = errors("name: h\nevents: [push]\nactions:\n  - action: shell_comand\n");
    assert_eq!(
        only(&e),
        "handlers/lint.yaml:4:13: unknown action `shell_comand`; did you mean `shell_command`?"
    );
}

#[test]
fn validation_duplicate_step_name() {
    let e = errors(
        "name: h\nevents: [push]\nactions:\n  - action: shell_command\n    name: lint\n  - action: pull_request_comment\n    name: lint\n",
    );
    let message = only(&e);
    assert!(
        message.starts_with("handlers/lint.yaml:7:11: duplicate step name `lint`"),
        "{message}"
    );
}

#[test]
fn validation_reference_to_a_later_step() {
    let e = errors(
        "name: h\nevents: [push]\nactions:\n  - action: pull_request_comment\n    args: ['{{ linter.output }}']\n  - action: shell_command\n    name: linter\n",
    );
    let message = only(&e);
    assert!(
        message.starts_with("handlers/lint.yaml:5:12: `linter` is a step that runs after this one"),
        "{message}"
    );
}

#[test]
fn validation_template_syntax_error_points_inside_the_string() {
    let e = errors(
        "name: h\nevents: [push]\nactions:\n  - action: pull_request_comment\n    args: ['hello {{ source.user ']\n",
    );
    let message = only(&e);
    assert!(message.starts_with("handlers/lint.yaml:5:"), "{message}");
    assert!(message.contains("template syntax error"), "{message}");
    let column: usize = message.split(':').nth(2).unwrap().parse().unwrap();
    assert!(column > 12, "column should be inside the string: {message}");
}

#[test]
fn validation_criteria_syntax_error() {
    let e = errors(
        "name: h\nevents: [push]\ncriteria: source.repository ==\nactions: [{action: shell_command}]\n",
    );
    let message = only(&e);
    assert!(
        message.starts_with("handlers/lint.yaml:3:11: criteria syntax error"),
        "{message}"
    );
}

#[test]
fn validation_bad_args_for_a_typed_action() {
    let e = errors(
        "name: h\nevents: [push]\nactions:\n  - action: greet\n    args: {who: 3, times: 2}\n",
    );
    let message = only(&e);
    assert!(message.starts_with("handlers/lint.yaml:5:17: invalid args.who for action `greet`: invalid type: integer `3`, expected a string"), "{message}");
    let e = errors("name: h\nevents: [push]\nactions:\n  - action: greet\n    args: {who: me}\n");
    assert!(only(&e).contains("missing field `times`"), "{e}");
    // A templated value can only be checked once rendered.
    load_str("name: h\nevents: [push]\nactions:\n  - action: greet\n    args: {who: me, times: '{{ source.number }}'}\n", "x", &fakes()).unwrap();
}

#[test]
fn validation_unknown_field_and_yaml_syntax_and_unknown_variable() {
    let e = errors("name: h\nevents: [push]\ncriterias: x\nactions: [{action: shell_command}]\n");
    assert!(
        only(&e).starts_with("handlers/lint.yaml:3:1: unknown field `criterias`"),
        "{e}"
    );
    let e = errors("name: h\nevents: [push\nactions: []\n");
    assert!(only(&e).starts_with("handlers/lint.yaml:"), "{e}");
    assert!(only(&e).contains("invalid YAML"), "{e}");
    let e = errors(
        "name: h\nevents: [push]\nactions:\n  - action: pull_request_comment\n    args: ['{{ sourec.user }}']\n",
    );
    assert!(
        only(&e).contains("unknown variable `sourec`; did you mean `source`?"),
        "{e}"
    );
}

#[test]
fn invalid_handler_in_a_list_rejects_the_whole_file() {
    let yaml = "- name: good\n  events: [push]\n  actions: [{action: shell_command}]\n- name: bad\n  events: [push]\n  actions: [{action: nope}]\n";
    let e = errors(yaml);
    assert_eq!(e.0.len(), 1);
    assert_eq!(e.0[0].handler.as_deref(), Some("bad"));
    assert!(
        e.0[0].to_string().starts_with("handlers/lint.yaml:6:22:"),
        "{e}"
    );
}

#[tokio::test]
async fn invalid_handlers_are_never_stored() {
    let store = Arc::new(MemoryStore::new());
    let engine = Engine::builder(store.clone(), Arc::new(MemoryQueue::new()))
        .registry(fakes())
        .build();
    engine.put_handlers(SEED, "seed.yaml").await.unwrap();
    let bad = SEED.replace(
        "pull_request_comment\n    args: ['hey",
        "pull_request_comentt\n    args: ['hey",
    );
    assert!(engine.put_handlers(&bad, "seed.yaml").await.is_err());
    let stored = store.list_handlers().await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].version, 1);
    assert_eq!(stored[0].source_text, SEED);
}

#[tokio::test]
async fn undefined_variable_fails_the_step_naming_handler_step_and_variable() {
    let yaml = "name: Greeter\nevents: [push]\nactions:\n  - action: shell_command\n    name: first\n  - action: pull_request_comment\n    name: reply\n    args: ['{{ first.nothing_here }}']\n";
    let kit = TestKit::builder()
        .without_linked_actions()
        .action(shell("x", true))
        .action(RecordingAction::new("pull_request_comment"))
        .handlers(yaml)
        .build()
        .await
        .unwrap();
    let runs = kit
        .run_event(&pr_event("push", "Hello-World"))
        .await
        .unwrap();
    assert_eq!(runs[0].status(), RunStatus::Failed);
    let error = runs[0].step("reply").unwrap().error.clone().unwrap();
    assert!(
        error.contains("handler `Greeter`")
            && error.contains("step `reply`")
            && error.contains("`first.nothing_here`"),
        "{error}"
    );
}

#[tokio::test]
async fn typed_args_keep_types_from_whole_expression_templates() {
    let yaml = "name: h\nevents: [push]\nactions:\n  - action: greet\n    args: {who: '{{ source.user }}', times: '{{ source.number }}'}\n";
    let kit = TestKit::builder()
        .without_linked_actions()
        .action(Greet)
        .handlers(yaml)
        .build()
        .await
        .unwrap();
    let runs = kit
        .run_event(&pr_event("push", "Hello-World"))
        .await
        .unwrap();
    assert_eq!(
        runs[0].output("greet"),
        Some("hello Codertocat hello Codertocat")
    );
}

#[tokio::test]
async fn continue_on_failure_and_timeouts() {
    #[derive(Debug)]
    struct Sleep;
    #[async_trait]
    impl TypedAction for Sleep {
        const NAME: &'static str = "sleep";
        type Args = (u64,);
        async fn run(
            &self,
            args: (u64,),
            ctx: &ActionContext<'_>,
        ) -> Result<ActionOutput, ActionError> {
            ctx.log("started sleeping\n").await;
            tokio::time::sleep(Duration::from_millis(args.0)).await;
            Ok(ActionOutput::success())
        }
    }
    let yaml = "name: h\nevents: [push]\nactions:\n  - action: sleep\n    args: [5000]\n    timeout: 100ms\n    continue_on_failure: true\n    on_failure: [{action: shell_command, name: report, args: ['{{ sleep.status }}: {{ sleep.error }}']}]\n  - action: sleep\n    name: quick\n    args: [1]\n";
    let shell = RecordingAction::new("shell_command");
    let kit = TestKit::builder()
        .without_linked_actions()
        .action(Sleep)
        .action(shell.clone())
        .handlers(yaml)
        .build()
        .await
        .unwrap();
    let runs = kit
        .run_event(&pr_event("push", "Hello-World"))
        .await
        .unwrap();
    assert_eq!(runs[0].status(), RunStatus::Succeeded);
    assert_eq!(runs[0].step("sleep").unwrap().status, StepStatus::TimedOut);
    // What the action logged before it was stopped becomes its output.
    assert_eq!(runs[0].output("sleep"), Some("started sleeping\n"));
    assert_eq!(
        shell.calls(),
        vec![json!(["timed_out: timed out after 100ms"])]
    );
    assert_eq!(runs[0].step("quick").unwrap().status, StepStatus::Success);
}

#[tokio::test]
async fn redelivery_creates_no_second_run() {
    let kit = TestKit::builder()
        .without_linked_actions()
        .action(shell("", true))
        .action(RecordingAction::new("pull_request_comment"))
        .handlers(SEED)
        .build()
        .await
        .unwrap();
    let delivery = DeliveryRecord {
        id: "d-1".into(),
        event: "pull_request".into(),
        received_at: chrono::Utc::now(),
        headers: Default::default(),
        body: b"{}".to_vec(),
        run_ids: vec![],
        body_is_payload: false,
    };
    let event = pr_event("pull_request.opened", "Hello-World");
    let (first, d1) = kit
        .run_events(std::slice::from_ref(&event), Some(delivery.clone()))
        .await
        .unwrap();
    let (second, d2) = kit.run_events(&[event], Some(delivery)).await.unwrap();
    assert!(!d1.duplicate && d2.duplicate);
    assert_eq!(d1.runs, d2.runs);
    assert_eq!(first[0].run.id, second[0].run.id);
    assert_eq!(
        kit.store()
            .list_runs(&Default::default())
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn interrupted_run_resumes_at_the_step_that_was_running() {
    let store = Arc::new(MemoryStore::new());
    let queue = Arc::new(MemoryQueue::new());
    let lint = RecordingAction::new("shell_command")
        .always(ActionOutput::success().with("output", "fresh"));
    let comments = RecordingAction::new("pull_request_comment");
    let mut registry = ActionRegistry::new();
    registry.register(lint.clone()).unwrap();
    registry.register(comments.clone()).unwrap();
    let finished = Arc::new(parking_lot::Mutex::new(Vec::<String>::new()));
    let seen = finished.clone();
    let engine = Engine::builder(store.clone(), queue)
        .registry(registry)
        .on_step_finished(Arc::new(move |_run, step| {
            seen.lock().push(step.key.clone())
        }))
        .build();
    engine.put_handlers(SEED, "seed.yaml").await.unwrap();
    let dispatch = engine
        .dispatch(&[pr_event("pull_request.opened", "Hello-World")], None)
        .await
        .unwrap();
    let run = dispatch.runs[0];
    // As if a worker recorded the linter and died while commenting.
    store
        .transition_run(run, &[RunStatus::Queued], RunStatus::Running, None)
        .await
        .unwrap();
    let now = chrono::Utc::now();
    let mut data = serde_json::Map::new();
    data.insert("output".into(), json!("recorded before the crash"));
    data.insert("status".into(), json!("success"));
    store
        .record_step(
            run,
            StepRecord {
                key: "0".into(),
                name: "linter".into(),
                action: "shell_command".into(),
                status: StepStatus::Success,
                attempt: 1,
                started_at: now,
                finished_at: Some(now),
                data,
                error: None,
            },
        )
        .await
        .unwrap();
    store
        .record_step(
            run,
            StepRecord {
                key: "1".into(),
                name: "pull_request_comment".into(),
                action: "pull_request_comment".into(),
                status: StepStatus::Running,
                attempt: 1,
                started_at: now,
                finished_at: None,
                data: Default::default(),
                error: None,
            },
        )
        .await
        .unwrap();
    engine.run_until_idle().await.unwrap();
    assert!(
        lint.calls().is_empty(),
        "the finished step must not run again"
    );
    assert_eq!(
        finished.lock().as_slice(),
        ["1"],
        "hooks see each executed step once"
    );
    assert_eq!(
        comments.calls(),
        vec![json!([
            "hey @Codertocat pylint returned recorded before the crash"
        ])]
    );
    let steps = store.list_steps(run).await.unwrap();
    assert_eq!(steps[1].attempt, 2);
    assert_eq!(
        store.get_run(run).await.unwrap().unwrap().status,
        RunStatus::Succeeded
    );
}

#[derive(Debug)]
struct LinkedAction;
#[async_trait]
impl TypedAction for LinkedAction {
    const NAME: &'static str = "linked_for_tests";
    type Args = ();
    async fn run(&self, _args: (), _ctx: &ActionContext<'_>) -> Result<ActionOutput, ActionError> {
        Ok(ActionOutput::success())
    }
}
hamster_core::register_action!(LinkedAction);

#[test]
fn registry_collects_linked_actions_and_refuses_duplicates() {
    let mut registry = ActionRegistry::with_linked().unwrap();
    assert!(registry.get("linked_for_tests").is_some());
    let error = registry.register(LinkedAction).unwrap_err();
    assert!(error.to_string().contains("`linked_for_tests`"));
}

#[tokio::test]
async fn workspace_is_removed_after_the_run_even_when_a_step_panics() {
    use hamster_core::event::Checkout;
    use hamster_core::workspace::{Materializer, TempWorkspaces, WorkspaceError};
    #[derive(Debug)]
    struct WriteFile;
    #[async_trait]
    impl Materializer for WriteFile {
        async fn materialize(
            &self,
            _c: &Checkout,
            dir: &std::path::Path,
        ) -> Result<(), WorkspaceError> {
            std::fs::write(dir.join("README"), "hi").unwrap();
            Ok(())
        }
    }
    #[derive(Debug)]
    struct UseThenPanic;
    #[async_trait]
    impl TypedAction for UseThenPanic {
        const NAME: &'static str = "use_then_panic";
        type Args = (bool,);
        async fn run(
            &self,
            args: (bool,),
            ctx: &ActionContext<'_>,
        ) -> Result<ActionOutput, ActionError> {
            let dir = ctx.workspace().source_dir().await?;
            assert!(dir.join("README").exists());
            if args.0 {
                panic!("boom");
            }
            Ok(ActionOutput::success())
        }
    }
    let root = tempfile::tempdir().unwrap();
    for panics in [false, true] {
        let kit = TestKit::builder()
            .without_linked_actions()
            .action(UseThenPanic)
            .workspaces(Arc::new(TempWorkspaces::new(WriteFile).in_dir(root.path())))
            .handlers(format!(
                "name: h\nevents: [push]\nactions: [{{action: use_then_panic, args: [{panics}]}}]\n"
            ))
            .build()
            .await
            .unwrap();
        let mut event = pr_event("push", "Hello-World");
        event.source.checkout = Some(Checkout {
            repository: event.source.repository.clone(),
            fetch_ref: None,
            sha: Some("abc".into()),
        });
        let runs = kit.run_event(&event).await.unwrap();
        assert_eq!(
            runs[0].status(),
            if panics {
                RunStatus::Failed
            } else {
                RunStatus::Succeeded
            }
        );
        assert_eq!(
            std::fs::read_dir(root.path()).unwrap().count(),
            0,
            "workspace left behind (panics: {panics})"
        );
    }
}

#[tokio::test]
async fn ten_thousand_handlers_index_by_event_name() {
    let engine = Engine::builder(Arc::new(MemoryStore::new()), Arc::new(MemoryQueue::new()))
        .registry(fakes())
        .config(EngineConfig::default())
        .build();
    let mut yaml = String::new();
    for i in 0..2000 {
        let event = if i % 20 == 0 {
            "pull_request.opened".to_owned()
        } else {
            format!("event_{}.created", i % 97)
        };
        yaml.push_str(&format!(
            "- name: h{i}\n  events: [{event}]\n  actions: [{{action: shell_command}}]\n"
        ));
    }
    engine.put_handlers(&yaml, "many.yaml").await.unwrap();
    let index = engine.handler_index().await.unwrap();
    assert_eq!(index.len(), 2000);
    assert_eq!(index.candidates("pull_request.opened").len(), 100);
    assert_eq!(index.candidates("nothing.here").len(), 0);
}
