//! **Hamster** reacts to GitHub events by running user-configured pipelines of actions on
//! distributed workers: `Event --> EventHandler --> Actions`.
//!
//! This crate gathers the parts a user needs:
//! - [`core`]: the engine and the contracts (`Event`, `Source`, `Workspace`, `Action`,
//!   `Store`, `Queue`), the in-memory backends and (feature `testing`) the test kit and the
//!   backend conformance suites.
//! - [`github`]: webhooks into events, the GitHub API client, git workspaces.
//! - [`actions`]: the built-in actions.
//! - [`server`]: the HTTP layer as an axum `Router`.
//! - [`store_sqlite`]: the embedded default store and queue; [`queue_redis`] and
//!   [`store_postgres`] (features `redis`, `postgres`) for production deployments.
//!
//! See `README.md` for how to run it and `ARCHITECTURE.md` for how it fits together.

pub use hamster_actions as actions;
pub use hamster_core as core;
pub use hamster_github as github;
#[cfg(feature = "redis")]
pub use hamster_queue_redis as queue_redis;
pub use hamster_server as server;
#[cfg(feature = "postgres")]
pub use hamster_store_postgres as store_postgres;
pub use hamster_store_sqlite as store_sqlite;

pub use hamster_core::register_action;

/// How the `hamster` binary and the example appserver and worker wire Hamster together:
/// configuration, engines on the embedded or distributed backends, and the run modes.
pub mod app;

use hamster_core::action::{ActionRegistry, DuplicateAction};

/// Every action handlers may use: the built-ins plus every action registered with
/// [`register_action!`] in the crates linked into this binary.
///
/// The built-ins are added explicitly: a linker may drop a library that nothing references,
/// and with it its link-time registrations.
pub fn action_registry() -> Result<ActionRegistry, DuplicateAction> {
    let mut registry = ActionRegistry::with_linked()?;
    let mut builtins = ActionRegistry::new();
    hamster_actions::register_builtins(&mut builtins)?;
    for name in builtins.names() {
        if registry.get(name).is_none()
            && let Some(action) = builtins.get(name)
        {
            registry.register_arc(action.clone())?;
        }
    }
    Ok(registry)
}

/// Testing handlers in-process (feature `testing`): the test kit, recorded deliveries,
/// recording fakes, and the conformance suites for custom `Store`/`Queue` backends.
#[cfg(feature = "testing")]
pub mod testing {
    pub use hamster_core::testing::*;
    pub use hamster_github::testing::*;
    pub use hamster_github::{RecordedCall, RecordingGitHub};

    /// A test kit builder whose registry has the built-in actions and every linked one.
    pub fn kit() -> Result<TestKitBuilder, hamster_core::action::DuplicateAction> {
        Ok(TestKit::builder().registry(crate::action_registry()?))
    }
}
