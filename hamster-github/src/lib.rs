//! Everything Hamster knows about GitHub: turning a webhook delivery into
//! [`Event`](hamster_core::event::Event)s with typed sources ([`webhook`]), talking back to the
//! API ([`client`]), and materializing a source on a worker's disk ([`git`]).

pub mod client;
pub mod git;
pub mod webhook;

#[cfg(feature = "testing")]
pub mod testing;

pub use client::{
    GitHub, GitHubConfig, GitHubError, OctocrabGitHub, RecordedCall, RecordingGitHub, RepoRef,
};
pub use git::{GitConfig, GitMaterializer};
pub use webhook::{
    Delivery, GitHubEvent, PullRequestEnricher, WebhookError, WebhookParser, parse_delivery,
};
