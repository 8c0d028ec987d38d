//! Hamster's built-in actions:
//!
//! - [`ShellCommand`] (`shell_command`): a script (`bash -c`) or a program run in the run's
//!   checkout, with a cleared environment, bounded output and its whole process group
//!   killed on timeout or cancellation;
//! - GitHub actions, through the worker's [`GitHub`](hamster_github::GitHub) service:
//!   [`PullRequestComment`] (`pull_request_comment`), [`IssueComment`] (`issue_comment`),
//!   [`SetCommitStatus`] (`commit_status`), [`CheckRun`] (`check_run`), [`AddLabels`]
//!   (`add_labels`), [`RemoveLabel`] (`remove_label`) and [`React`] (`react`).
//!
//! Every action is registered at link time with
//! [`register_action!`](hamster_core::register_action), so
//! [`ActionRegistry::with_linked`] finds them, **but only when this crate's code is
//! linked in**: a binary that never refers to `hamster_actions` may have it dropped by the
//! linker. Call [`register_builtins`] on a fresh registry instead; it is explicit and always
//! works (do not combine it with `with_linked`, which would register each action twice):
//!
//! ```
//! use hamster_core::action::ActionRegistry;
//!
//! let mut registry = ActionRegistry::new();
//! hamster_actions::register_builtins(&mut registry).expect("no other action uses these names");
//! assert!(registry.get("shell_command").is_some());
//! ```
//!
//! `docs/actions.md` documents every action's args and results.

mod github;
mod shell;
mod source;

pub use github::{
    AddLabels, CheckRun, CheckRunConclusion, CheckRunStatus, IssueComment, PullRequestComment,
    React, ReactionContent, ReactionOn, RemoveLabel, SetCommitStatus,
};
pub use shell::{
    DEFAULT_ENV_ALLOWLIST, DEFAULT_OUTPUT_LIMIT, DEFAULT_TIMEOUT, ShellCommand, ShellConfig,
};

use hamster_core::action::{ActionRegistry, DuplicateAction};

/// The names of the built-in actions, in the order [`register_builtins`] adds them.
pub const BUILTIN_NAMES: [&str; 8] = [
    "shell_command",
    "pull_request_comment",
    "issue_comment",
    "commit_status",
    "check_run",
    "add_labels",
    "remove_label",
    "react",
];

/// Adds every built-in action to `registry`; fails if one of their names is taken.
pub fn register_builtins(registry: &mut ActionRegistry) -> Result<(), DuplicateAction> {
    registry
        .register(ShellCommand)?
        .register(PullRequestComment)?
        .register(IssueComment)?
        .register(SetCommitStatus)?
        .register(CheckRun)?
        .register(AddLabels)?
        .register(RemoveLabel)?
        .register(React)?;
    Ok(())
}

hamster_core::register_action!(ShellCommand);
hamster_core::register_action!(PullRequestComment);
hamster_core::register_action!(IssueComment);
hamster_core::register_action!(SetCommitStatus);
hamster_core::register_action!(CheckRun);
hamster_core::register_action!(AddLabels);
hamster_core::register_action!(RemoveLabel);
hamster_core::register_action!(React);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_register_once_under_their_names() {
        let mut registry = ActionRegistry::new();
        register_builtins(&mut registry).expect("fresh registry");
        assert_eq!(registry.names().collect::<Vec<_>>(), {
            let mut names = BUILTIN_NAMES.to_vec();
            names.sort_unstable();
            names
        });
        assert!(register_builtins(&mut registry).is_err());
    }

    #[test]
    fn link_time_registration_finds_every_builtin() {
        let registry = ActionRegistry::with_linked().expect("unique names");
        for name in BUILTIN_NAMES {
            assert!(registry.get(name).is_some(), "{name} is not linked");
        }
    }
}
