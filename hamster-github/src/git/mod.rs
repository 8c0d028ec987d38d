//! Git workspaces: materializing a [`Checkout`](hamster_core::event::Checkout) on a
//! worker's disk from a per-worker cache of bare mirrors.
//!
//! Wrap a [`GitMaterializer`] in [`TempWorkspaces`](hamster_core::workspace::TempWorkspaces)
//! to get temporary, self-cleaning workspaces:
//!
//! ```no_run
//! use hamster_core::workspace::TempWorkspaces;
//! use hamster_github::git::{GitConfig, GitMaterializer};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = GitConfig::builder("/var/cache/hamster/git")
//!     .url_template("file:///srv/git/{owner}/{repo}.git")
//!     .build()?;
//! let workspaces = TempWorkspaces::new(GitMaterializer::new(config));
//! # let _ = workspaces;
//! # Ok(())
//! # }
//! ```
//!
//! Credentials never reach the disk: fetches use anonymous remotes (nothing is written to
//! the mirror's config) and the token is handed to libgit2 through its credential
//! callback only; error messages are redacted.

mod cancel;
mod config;
mod materializer;
mod mirror;

pub use config::{
    ApiToken, DEFAULT_API_USERNAME, DEFAULT_CACHE_DIR, DEFAULT_SSH_KEY, ENV_API_TOKEN,
    ENV_API_USERNAME, ENV_CACHE_DIR, ENV_SSH_KEY, ENV_URL_TEMPLATE, GitConfig, GitConfigBuilder,
    GitConfigError, SshKeyPair,
};
pub use materializer::{GitMaterializer, MaterializerStats};
