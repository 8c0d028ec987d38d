//! A developer-defined action: a Rust function with typed arguments, registered at link
//! time with `hamster::register_action!`, and used from a YAML handler.
//!
//! `cargo run --example custom_action --features testing` runs the handler below against a
//! recorded `pull_request.opened` delivery and prints the comment it would post;
//! `cargo test --example custom_action --features testing` runs its test.

use hamster::core::action::{ActionContext, ActionError, ActionOutput, ArgsError, TypedAction};
use serde::Deserialize;

/// Greets someone; handlers configure it per use.
#[derive(Debug)]
pub struct Greet;

/// The arguments, checked when a handler is loaded.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GreetArgs {
    /// Who to greet.
    who: String,
    /// The greeting word.
    #[serde(default = "hello")]
    greeting: String,
    /// Whether to shout.
    #[serde(default)]
    shout: bool,
}

fn hello() -> String {
    "Hello".to_owned()
}

#[async_trait::async_trait]
impl TypedAction for Greet {
    const NAME: &'static str = "greet";
    type Args = GreetArgs;

    fn check(&self, args: &GreetArgs) -> Result<(), ArgsError> {
        if args.greeting.trim().is_empty() {
            return Err(ArgsError::new(
                "`greeting` is empty; leave it out to say Hello",
            ));
        }
        Ok(())
    }

    async fn run(
        &self,
        args: GreetArgs,
        ctx: &ActionContext<'_>,
    ) -> Result<ActionOutput, ActionError> {
        let mut text = format!(
            "{}, @{}! Thanks for {}.",
            args.greeting, args.who, ctx.event.name
        );
        if args.shout {
            text = text.to_uppercase();
        }
        Ok(ActionOutput::success().with("output", text))
    }
}

hamster::register_action!(Greet);

/// The handler, as a user would write it.
pub const HANDLER: &str = include_str!("greeter.yaml");

/// A recorded `pull_request.opened` delivery (GitHub's documentation example).
pub const PAYLOAD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/github-webhooks/pull_request/opened.payload.json"
);

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    use hamster::github::{GitHub, RecordingGitHub};
    use hamster::testing::{RecordedDelivery, WebhookTestKit};
    use std::sync::Arc;

    let github = Arc::new(RecordingGitHub::new());
    let kit = hamster::testing::kit()?
        .service::<dyn GitHub>(github.clone())
        .handlers(HANDLER)
        .build()
        .await?;
    let runs = kit
        .run_webhook(&RecordedDelivery::from_file("pull_request", PAYLOAD)?)
        .await?;
    for run in &runs {
        println!("{}: {:?}", run.run.handler_name, run.status());
    }
    for call in github.calls() {
        println!("{} {} {}", call.method, call.path, call.body);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hamster::core::store::RunStatus;
    use hamster::github::{GitHub, RecordingGitHub};
    use hamster::testing::{RecordedDelivery, WebhookTestKit};
    use std::sync::Arc;

    #[tokio::test]
    async fn greets_the_pull_request_author_in_a_comment() {
        let github = Arc::new(RecordingGitHub::new());
        let kit = hamster::testing::kit()
            .unwrap()
            .service::<dyn GitHub>(github.clone())
            .handlers(HANDLER)
            .build()
            .await
            .unwrap();
        let runs = kit
            .run_webhook(&RecordedDelivery::from_file("pull_request", PAYLOAD).unwrap())
            .await
            .unwrap();
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].status(), RunStatus::Succeeded);
        assert_eq!(
            runs[0].output("greet"),
            Some("HOWDY, @CODERTOCAT! THANKS FOR PULL_REQUEST.OPENED.")
        );
        let calls = github.calls();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].method, "POST");
        assert_eq!(
            calls[0].path,
            "/repos/Codertocat/Hello-World/issues/2/comments"
        );
        assert_eq!(
            calls[0].body["body"],
            "HOWDY, @CODERTOCAT! THANKS FOR PULL_REQUEST.OPENED."
        );
    }

    #[tokio::test]
    async fn bad_args_are_refused_when_the_handler_loads() {
        let yaml = HANDLER.replace("greeting: Howdy", "greeting: ' '");
        let error = hamster::testing::kit()
            .unwrap()
            .handlers(yaml)
            .build()
            .await
            .unwrap_err();
        assert!(error.to_string().contains("`greeting` is empty"), "{error}");
    }
}
