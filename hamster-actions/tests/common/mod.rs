//! Helpers shared by the integration tests: a kit with the built-in actions, events, and a
//! materializer that writes a small tree instead of cloning.
#![allow(dead_code, clippy::unwrap_used)]

use async_trait::async_trait;
use hamster_core::event::{Checkout, EventRecord, Repository, SourceRecord};
use hamster_core::testing::{RunReport, TestKitBuilder};
use hamster_core::workspace::{Materializer, WorkspaceError};
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;

/// A kit builder with every built-in action and nothing else.
pub fn builder() -> TestKitBuilder {
    hamster_core::testing::TestKit::builder()
        .without_linked_actions()
        .action(hamster_actions::ShellCommand)
        .action(hamster_actions::PullRequestComment)
        .action(hamster_actions::IssueComment)
        .action(hamster_actions::SetCommitStatus)
        .action(hamster_actions::CheckRun)
        .action(hamster_actions::AddLabels)
        .action(hamster_actions::RemoveLabel)
        .action(hamster_actions::React)
}

/// A `pull_request.opened` event on Codertocat/Hello-World#2 with these extra source fields,
/// and a checkout when `checkout` is true.
pub fn pr_event(extra_fields: Value, checkout: bool) -> EventRecord {
    let mut fields = json!({
        "kind": "pull_request",
        "repository": "Hello-World",
        "owner": "Codertocat",
        "full_name": "Codertocat/Hello-World",
        "number": 2,
        "title": "Update the README with new information.",
        "user": "Codertocat",
        "ref": "refs/pull/2/head",
        "branch": "changes",
        "head": {"sha": "ec26c3e57ca3a959ca5aad62de7213c562f8c821", "ref": "changes"},
    });
    if let (Value::Object(fields), Value::Object(extra)) = (&mut fields, extra_fields) {
        fields.extend(extra);
    }
    let repository = Repository::new("github.com", "Codertocat", "Hello-World");
    EventRecord {
        name: "pull_request.opened".into(),
        delivery_id: Some("72d3162e-cc78-11e3-81ab-4c9367dc0958".into()),
        source: SourceRecord {
            kind: "pull_request".into(),
            repository: repository.clone(),
            fields: fields.into(),
            checkout: checkout.then(|| Checkout {
                repository,
                fetch_ref: Some("refs/pull/2/head".into()),
                sha: Some("ec26c3e57ca3a959ca5aad62de7213c562f8c821".into()),
            }),
            deferred: vec![],
        },
        data: json!({"action": "opened", "sender": "Codertocat"}).into(),
    }
}

/// One handler reacting to `pull_request.opened` with these steps (YAML, indented by 2).
pub fn handler(steps: &str) -> String {
    format!("name: test\nevents: [pull_request.opened, issue_comment.created]\nactions:\n{steps}")
}

/// Writes `README` and `sub/file.txt` (and a `escape` symlink to `/tmp`) as the checkout.
#[derive(Debug, Default)]
pub struct FakeCheckout;

#[async_trait]
impl Materializer for FakeCheckout {
    async fn materialize(&self, _checkout: &Checkout, dir: &Path) -> Result<(), WorkspaceError> {
        let io = |source| WorkspaceError::Io {
            path: dir.to_owned(),
            source,
        };
        std::fs::write(dir.join("README"), "hello from the checkout\n").map_err(io)?;
        std::fs::create_dir(dir.join("sub")).map_err(io)?;
        std::fs::write(dir.join("sub/file.txt"), "in sub\n").map_err(io)?;
        std::os::unix::fs::symlink("/tmp", dir.join("escape")).map_err(io)?;
        Ok(())
    }
}

/// A step's data field.
pub fn data<'a>(run: &'a RunReport, step: &str, field: &str) -> &'a Value {
    &run.step(step)
        .unwrap_or_else(|| panic!("no step {step} in {:#?}", run.steps))
        .data[field]
}

/// Whether process `pid` is gone (or a zombie nobody reaped yet, which runs nothing).
pub fn process_is_dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // The state follows the command name in parentheses.
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X')),
    }
}

/// Waits up to 5 s for `pid` to die.
pub async fn wait_until_dead(pid: u32) -> bool {
    for _ in 0..50 {
        if process_is_dead(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    process_is_dead(pid)
}
