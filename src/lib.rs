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
