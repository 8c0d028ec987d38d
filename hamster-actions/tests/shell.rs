//! `shell_command` end to end through the engine and the real template layer.
#![allow(clippy::unwrap_used)]

mod common;

use common::{FakeCheckout, builder, data, handler, pr_event, wait_until_dead};
use hamster_actions::ShellConfig;
use hamster_core::engine::EngineConfig;
use hamster_core::redact::Redactor;
use hamster_core::store::{RunStatus, StepStatus, Store};
use hamster_core::workspace::TempWorkspaces;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn read_pid(path: &std::path::Path) -> u32 {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("pid file {}: {e}", path.display()))
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn step_timeout_kills_the_whole_process_group() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("grandchild.pid");
    let yaml = handler(&format!(
        "  - action: shell_command\n    name: slow\n    timeout: 1s\n    args:\n      command: 'sleep 100 & echo $! > \"$PID_FILE\"; echo started; sleep 100'\n      env: {{PID_FILE: '{}'}}\n",
        pid_file.display()
    ));
    let kit = builder().handlers(yaml).build().await.unwrap();
    let started = Instant::now();
    let runs = kit.run_event(&pr_event(json!({}), false)).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(runs[0].status(), RunStatus::Failed);
    assert_eq!(runs[0].step("slow").unwrap().status, StepStatus::TimedOut);
    let grandchild = read_pid(&pid_file);
    assert!(
        wait_until_dead(grandchild).await,
        "the background `sleep 100` (pid {grandchild}) survived the timeout"
    );
    // The output was streamed to the log before the future was dropped.
    let log = kit
        .store()
        .read_log(runs[0].run.id, &runs[0].step("slow").unwrap().key, 0)
        .await
        .unwrap();
    assert!(log.text.contains("started"), "{log:?}");
}

#[tokio::test]
async fn shell_config_timeout_reports_the_kill() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("grandchild.pid");
    let yaml = handler(&format!(
        "  - action: shell_command\n    name: slow\n    args: ['sleep 100 & echo $! > {}; echo partial; sleep 100']\n",
        pid_file.display()
    ));
    let kit = builder()
        .config(EngineConfig {
            default_step_timeout: None,
            ..EngineConfig::default()
        })
        .service(Arc::new(
            ShellConfig::default().default_timeout(Duration::from_millis(500)),
        ))
        .handlers(yaml)
        .build()
        .await
        .unwrap();
    let runs = kit.run_event(&pr_event(json!({}), false)).await.unwrap();
    let run = &runs[0];
    assert_eq!(run.step("slow").unwrap().status, StepStatus::Failure);
    assert_eq!(data(run, "slow", "timed_out"), &json!(true));
    assert_eq!(data(run, "slow", "exit_code"), &json!(null));
    assert_eq!(data(run, "slow", "signal"), &json!("SIGKILL"));
    assert_eq!(data(run, "slow", "output"), &json!("partial\n"));
    assert!(
        data(run, "slow", "error")
            .as_str()
            .unwrap()
            .contains("timed out"),
        "{:?}",
        run.steps
    );
    assert!(wait_until_dead(read_pid(&pid_file)).await);
}

#[tokio::test]
async fn background_processes_die_when_the_command_exits() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("left-behind.pid");
    let yaml = handler(&format!(
        "  - action: shell_command\n    name: quick\n    args: ['sleep 100 & echo $! > {}; echo done']\n",
        pid_file.display()
    ));
    let kit = builder().handlers(yaml).build().await.unwrap();
    let started = Instant::now();
    let runs = kit.run_event(&pr_event(json!({}), false)).await.unwrap();
    // The background sleep holds stdout open: the step must not wait for it.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        runs[0].status(),
        RunStatus::Succeeded,
        "{:?}",
        runs[0].steps
    );
    assert_eq!(data(&runs[0], "quick", "output"), &json!("done\n"));
    assert!(wait_until_dead(read_pid(&pid_file)).await);
}

/// Values an attacker controls, rendered into a script, must stay data.
#[tokio::test]
async fn injection_in_title_branch_and_comment_never_executes() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("pwned-XYZ");
    let m = marker.display();
    let title = format!("\"; touch {m}; echo \"");
    let branch = format!("$(touch {m})");
    let body = format!("`touch {m}` '; touch {m}; ' \\\n && touch {m}");
    let yaml = handler(
        "  - action: shell_command\n    name: echo\n    args: [\"printf '%s\\\\n' {{ source.title }} {{ source.branch }} {{ event.comment.body }} {{ source.head.ref }}\"]\n",
    );
    let kit = builder().handlers(yaml).build().await.unwrap();
    let mut event = pr_event(
        json!({"title": title, "branch": branch, "head": {"ref": format!("x;touch {m}"), "sha": "abc"}}),
        false,
    );
    event.data = json!({"comment": {"body": body}}).into();
    let runs = kit.run_event(&event).await.unwrap();
    assert_eq!(
        runs[0].status(),
        RunStatus::Succeeded,
        "{:?}",
        runs[0].steps
    );
    assert_eq!(
        data(&runs[0], "echo", "output"),
        &json!(format!("{title}\n{branch}\n{body}\nx;touch {m}\n"))
    );
    assert!(!marker.exists(), "an injected command ran");
}

/// `| raw` opts out of quoting: the danger docs/actions.md warns about is real.
#[tokio::test]
async fn raw_opts_out_of_quoting() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("raw-ran");
    let yaml = handler(
        "  - action: shell_command\n    name: raw\n    args: ['echo {{ source.title | raw }}']\n",
    );
    let kit = builder().handlers(yaml).build().await.unwrap();
    let event = pr_event(
        json!({"title": format!("hi; touch {}", marker.display())}),
        false,
    );
    let runs = kit.run_event(&event).await.unwrap();
    assert_eq!(
        runs[0].status(),
        RunStatus::Succeeded,
        "{:?}",
        runs[0].steps
    );
    assert!(
        marker.exists(),
        "`| raw` should have inserted the title as shell syntax"
    );
}

#[tokio::test]
async fn argv_form_passes_each_word_unchanged() {
    let yaml = handler(
        "  - action: shell_command\n    name: words\n    args:\n      command: [printf, '<%s>', 'a b', \"it's\", '$HOME', \"line1\\nline2\", '\"q\"', '{{ source.title }}', '{{ source.number }}', '`id`']\n",
    );
    let kit = builder().handlers(yaml).build().await.unwrap();
    let title = "Fix: \"quotes\" $(rm -rf /) & `ls` ; newline\nhere";
    let runs = kit
        .run_event(&pr_event(json!({"title": title}), false))
        .await
        .unwrap();
    assert_eq!(
        runs[0].status(),
        RunStatus::Succeeded,
        "{:?}",
        runs[0].steps
    );
    assert_eq!(
        data(&runs[0], "words", "output"),
        &json!(format!(
            "<a b><it's><$HOME><line1\nline2><\"q\"><{title}><2><`id`>"
        ))
    );
}

#[tokio::test]
async fn secrets_are_redacted_from_results_and_log() {
    let secret = "ghp_0123456789abcdefSECRET";
    let yaml = handler(&format!(
        "  - action: shell_command\n    name: leak\n    args: ['echo out {secret}; echo err {secret} >&2; exit 1']\n"
    ));
    let kit = builder()
        .redactor(Redactor::new([secret]))
        .handlers(yaml)
        .build()
        .await
        .unwrap();
    let runs = kit.run_event(&pr_event(json!({}), false)).await.unwrap();
    let run = &runs[0];
    assert_eq!(data(run, "leak", "exit_code"), &json!(1));
    assert_eq!(data(run, "leak", "stdout"), &json!("out [REDACTED]\n"));
    assert_eq!(data(run, "leak", "stderr"), &json!("err [REDACTED]\n"));
    let output = data(run, "leak", "output").as_str().unwrap();
    assert!(
        output.contains("out [REDACTED]") && output.contains("err [REDACTED]"),
        "{output}"
    );
    let log = kit
        .store()
        .read_log(run.run.id, &run.step("leak").unwrap().key, 0)
        .await
        .unwrap();
    assert!(
        log.text.contains("[REDACTED]") && !log.text.contains(secret),
        "{log:?}"
    );
    assert!(!format!("{:?}", run.steps).contains(secret));
}

const SECRET_VAR: &str = "HAMSTER_ACTIONS_TEST_SECRET";

/// The worker's own environment is not inherited (unless named in `pass_env`). The test
/// re-runs itself with a secret in its environment, since setting variables in a running
/// multi-threaded process is unsound.
#[tokio::test]
async fn environment_is_cleared_and_rebuilt() {
    if std::env::var_os(SECRET_VAR).is_none() {
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "environment_is_cleared_and_rebuilt",
                "--exact",
                "--nocapture",
            ])
            .env(SECRET_VAR, "s3cret-value")
            .env("DATABASE_URL", "postgres://user:pw@db/hamster")
            .status()
            .unwrap();
        assert!(status.success(), "the re-run test failed");
        return;
    }
    let script = r#"echo "secret=${HAMSTER_ACTIONS_TEST_SECRET-unset} db=${DATABASE_URL-unset} path=${PATH:+set} event=$HAMSTER_EVENT repo=$HAMSTER_REPOSITORY pr=$HAMSTER_PR_NUMBER sha=$HAMSTER_SHA ref=$HAMSTER_REF step=$HAMSTER_STEP delivery=$HAMSTER_DELIVERY handler_env=$FROM_HANDLER step_env=$FROM_STEP""#;
    let yaml = format!(
        "name: test\nevents: [pull_request.opened]\nenv: {{FROM_HANDLER: 'pr {{{{ source.number }}}}'}}\nactions:\n  - action: shell_command\n    name: hidden\n    args:\n      command: '{script}'\n      env: {{FROM_STEP: '{{{{ source.user }}}}'}}\n  - action: shell_command\n    name: passed\n    args:\n      command: 'echo $HAMSTER_ACTIONS_TEST_SECRET; env | grep -c HAMSTER_RUN_ID'\n      pass_env: [HAMSTER_ACTIONS_TEST_SECRET]\n"
    );
    let kit = builder().handlers(yaml).build().await.unwrap();
    let runs = kit.run_event(&pr_event(json!({}), false)).await.unwrap();
    let run = &runs[0];
    assert_eq!(run.status(), RunStatus::Succeeded, "{:?}", run.steps);
    assert_eq!(
        data(run, "hidden", "output"),
        &json!(
            "secret=unset db=unset path=set event=pull_request.opened repo=Codertocat/Hello-World pr=2 sha=ec26c3e57ca3a959ca5aad62de7213c562f8c821 ref=refs/pull/2/head step=hidden delivery=72d3162e-cc78-11e3-81ab-4c9367dc0958 handler_env=pr 2 step_env=Codertocat\n"
        )
    );
    assert_eq!(data(run, "passed", "output"), &json!("s3cret-value\n1\n"));
}

#[tokio::test]
async fn runs_in_the_checkout_when_the_event_has_one() {
    let yaml = handler(
        "  - action: shell_command\n    name: root\n    args: ['cat README; pwd']\n  - action: shell_command\n    name: sub\n    args: {command: [cat, file.txt], cwd: sub}\n  - action: shell_command\n    name: scratch\n    args: {command: 'ls -A | wc -l', checkout: false}\n  - action: shell_command\n    name: escape\n    continue_on_failure: true\n    args: {command: 'true', cwd: escape}\n",
    );
    let root = tempfile::tempdir().unwrap();
    let kit = builder()
        .workspaces(Arc::new(
            TempWorkspaces::new(FakeCheckout).in_dir(root.path()),
        ))
        .handlers(yaml)
        .build()
        .await
        .unwrap();
    let runs = kit.run_event(&pr_event(json!({}), true)).await.unwrap();
    let run = &runs[0];
    let root_output = data(run, "root", "output").as_str().unwrap();
    assert!(
        root_output.starts_with("hello from the checkout\n"),
        "{root_output}"
    );
    assert!(root_output.trim_end().ends_with("/source"), "{root_output}");
    assert_eq!(data(run, "sub", "output"), &json!("in sub\n"));
    assert_eq!(data(run, "scratch", "output"), &json!("0\n"));
    let escape = run.step("escape").unwrap();
    assert_eq!(escape.status, StepStatus::Failure);
    assert!(
        escape
            .error
            .as_deref()
            .unwrap()
            .contains("outside the checkout"),
        "{escape:?}"
    );
    // Everything the run created is removed with it.
    assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0);
}

#[tokio::test]
async fn a_failing_command_fails_the_step_and_feeds_on_failure() {
    let yaml = handler(
        "  - action: shell_command\n    name: lint\n    args: ['echo E0001 bad syntax; exit 3']\n    on_failure:\n      - action: shell_command\n        name: report\n        args: ['echo lint said {{ lint.output }} code {{ lint.exit_code }}']\n",
    );
    let kit = builder().handlers(yaml).build().await.unwrap();
    let runs = kit.run_event(&pr_event(json!({}), false)).await.unwrap();
    let run = &runs[0];
    assert_eq!(run.status(), RunStatus::Failed);
    assert_eq!(data(run, "lint", "exit_code"), &json!(3));
    assert_eq!(data(run, "lint", "timed_out"), &json!(false));
    assert_eq!(
        run.step("lint").unwrap().error.as_deref(),
        Some("the command exited with status 3")
    );
    assert_eq!(
        data(run, "report", "output"),
        &json!("lint said E0001 bad syntax\n code 3\n")
    );
}

#[tokio::test]
async fn a_missing_program_is_a_clear_error() {
    let yaml = handler(
        "  - action: shell_command\n    name: missing\n    args: {command: [no-such-program-hamster]}\n",
    );
    let kit = builder().handlers(yaml).build().await.unwrap();
    let runs = kit.run_event(&pr_event(json!({}), false)).await.unwrap();
    let error = runs[0].step("missing").unwrap().error.clone().unwrap();
    assert!(error.contains("not found in PATH"), "{error}");
}

#[tokio::test]
async fn invalid_args_are_refused_when_the_handler_loads() {
    for (args, expected) in [
        ("{command: [cargo, {x: 1}]}", "must be a string"),
        ("{command: 'make', colour: red}", "unknown key `colour`"),
        ("{command: ''}", "empty"),
        ("{command: []}", "empty list"),
        ("{command: make, timeout: 5m}", "belongs to the step"),
        ("{command: make, cwd: ../x}", "`..`"),
        ("[]", "missing"),
    ] {
        let yaml = handler(&format!("  - action: shell_command\n    args: {args}\n"));
        let error = builder()
            .handlers(yaml)
            .build()
            .await
            .err()
            .unwrap_or_else(|| panic!("{args} was accepted"));
        assert!(error.to_string().contains(expected), "{args}: {error}");
    }
    // A template may still render to something valid: checked when the step runs.
    let yaml = handler(
        "  - action: shell_command\n    args: {command: make, checkout: '{{ source.number > 1 }}'}\n",
    );
    builder().handlers(yaml).build().await.unwrap();
}
