//! Hamster's engine: events, handlers, criteria, templates and pipelines, and the
//! contracts ([`Store`](store::Store), [`Queue`](queue::Queue), [`Action`](action::Action),
//! [`Workspace`](workspace::Workspace)) that backends and integrations implement.
//!
//! See `ARCHITECTURE.md` at the repository root for how the pieces fit together.

pub mod action;
pub mod coalesce;
pub mod engine;
pub mod event;
pub mod handler;
pub mod memory;
pub mod queue;
pub mod redact;
pub mod services;
pub mod store;
pub mod template;
pub mod workspace;

#[cfg(feature = "testing")]
pub mod testing;

#[doc(hidden)]
pub mod __private {
    pub use inventory;
}
