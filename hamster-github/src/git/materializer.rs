//! [`GitMaterializer`]: the async half, with the per-repository locks and retries.

use super::cancel::{CancelOnDrop, CancelToken};
use super::config::{GitConfig, GitConfigError};
use super::mirror::{self, Counters, Failure, Job};
use async_trait::async_trait;
use hamster_core::event::Checkout;
use hamster_core::redact::Redactor;
use hamster_core::workspace::{Materializer, WorkspaceError};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::sync::RwLock;
use tracing::Instrument;

/// How often a checkout goes back to the mirror when the commit vanished in between
/// (another worker process rebuilt it). Bounds a loop that in practice runs once or twice.
const MAX_MIRROR_ROUNDS: usize = 3;

/// Counts of what a [`GitMaterializer`] did, for tests and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MaterializerStats {
    /// Network fetches into mirrors (a checkout of a commit already cached makes none).
    pub fetches: u64,
    /// Mirrors created on first use.
    pub mirrors_created: u64,
    /// Damaged mirrors removed and fetched again.
    pub mirrors_rebuilt: u64,
    /// Successful checkouts.
    pub checkouts: u64,
}

/// Materializes checkouts from a per-worker cache of bare mirrors.
///
/// Each repository is mirrored once under the cache directory
/// (`<cache>/<host>/<owner>/<repo>.git`) and updated by fetching only the ref and commit a
/// checkout needs; a checkout whose commit is already cached makes no network call. Each
/// workspace is a normal git repository (HEAD detached at the commit, index written, so
/// `git status` and `git log` work) that borrows the mirror's objects through
/// `objects/info/alternates` instead of copying the history.
///
/// Checkouts of one repository are serialized against mirror updates both between tasks
/// (an async lock) and between processes sharing the cache (an advisory file lock beside
/// the mirror); checkouts of cached commits and of different repositories run in
/// parallel. Mirrors are never garbage collected, because live checkouts borrow their
/// objects: to reclaim space, delete the cache directory while no worker runs. (A mirror
/// found damaged is rebuilt, once per checkout; checkouts still borrowing from it were
/// already reading a damaged store.)
///
/// git2 is blocking, so the work runs on `spawn_blocking`. When a run is cancelled while
/// files are being written into its workspace, dropping the materialization waits for that
/// local write to finish (a fetch under way is interrupted instead), so that the
/// workspace's cleanup, which runs right after, leaves nothing behind.
#[derive(Debug)]
pub struct GitMaterializer {
    config: Arc<GitConfig>,
    redactor: Redactor,
    locks: parking_lot::Mutex<HashMap<PathBuf, Arc<RwLock<()>>>>,
    counters: Arc<Counters>,
}

impl GitMaterializer {
    /// A materializer with this configuration. Creates nothing until the first checkout.
    pub fn new(config: GitConfig) -> Self {
        let redactor = Redactor::new(config.api_token().map(|token| token.secret().to_owned()));
        Self {
            config: Arc::new(config),
            redactor,
            locks: parking_lot::Mutex::default(),
            counters: Arc::default(),
        }
    }

    /// A materializer configured by [`GitConfig::from_env`].
    pub fn from_env() -> Result<Self, GitConfigError> {
        GitConfig::from_env().map(Self::new)
    }

    /// The configuration.
    pub fn config(&self) -> &GitConfig {
        &self.config
    }

    /// What this materializer did so far.
    pub fn stats(&self) -> MaterializerStats {
        let counters = &self.counters;
        MaterializerStats {
            fetches: counters.fetches.load(Ordering::Relaxed),
            mirrors_created: counters.mirrors_created.load(Ordering::Relaxed),
            mirrors_rebuilt: counters.mirrors_rebuilt.load(Ordering::Relaxed),
            checkouts: counters.checkouts.load(Ordering::Relaxed),
        }
    }

    /// Where the mirror of `repository` lives (it may not exist yet).
    pub fn mirror_dir(
        &self,
        repository: &hamster_core::event::Repository,
    ) -> Result<PathBuf, WorkspaceError> {
        self.config
            .mirror_path(repository)
            .map_err(|reason| WorkspaceError::Checkout {
                what: repository.full_name(),
                reason,
            })
    }

    fn plan(&self, checkout: &Checkout, what: &str) -> Result<Job, WorkspaceError> {
        let invalid = |reason: String| WorkspaceError::Checkout {
            what: what.to_owned(),
            reason,
        };
        let sha = checkout
            .sha
            .as_deref()
            .map(|sha| parse_sha(sha).map_err(invalid))
            .transpose()?;
        let fetch_ref = match checkout.fetch_ref.as_deref() {
            Some(name) => Some(full_ref_name(name).map_err(invalid)?),
            None if sha.is_none() => Some("HEAD".to_owned()),
            None => None,
        };
        let mirror = self.mirror_dir(&checkout.repository)?;
        let mut lock_file = mirror.clone().into_os_string();
        lock_file.push(".hamster-lock");
        let url = self.config.clone_url(&checkout.repository);
        Ok(Job {
            config: self.config.clone(),
            shown_url: without_user_info(&url),
            url,
            mirror,
            lock_file: PathBuf::from(lock_file),
            fetch_ref,
            sha,
        })
    }

    fn repository_lock(&self, mirror: &Path) -> Arc<RwLock<()>> {
        let mut locks = self.locks.lock();
        // Forget locks nobody holds, so the map does not grow with every repository seen.
        locks.retain(|_, lock| Arc::strong_count(lock) > 1);
        locks.entry(mirror.to_owned()).or_default().clone()
    }

    async fn run(&self, job: Arc<Job>, dir: &Path, cancel: &CancelToken) -> Result<(), Failure> {
        let lock = self.repository_lock(&job.mirror);
        let mut target = job.sha;
        let mut rebuild_because = None;
        let mut rebuilt = false;
        for _ in 0..MAX_MIRROR_ROUNDS {
            if let Some(commit) = target {
                let _reading = lock.read().await;
                let (job, dir, cancel, counters) = (
                    job.clone(),
                    dir.to_owned(),
                    cancel.clone(),
                    self.counters.clone(),
                );
                let checked_out = blocking(move || {
                    mirror::checkout_from_mirror(&job, commit, &dir, &cancel, &counters)
                })
                .await;
                match checked_out {
                    Ok(true) => return Ok(()),
                    Ok(false) => {}
                    Err(Failure::Corrupt(reason)) if !rebuilt => rebuild_because = Some(reason),
                    Err(other) => return Err(other),
                }
            }
            let _writing = lock.write().await;
            let (job, cancel, counters, because) = (
                job.clone(),
                cancel.clone(),
                self.counters.clone(),
                rebuild_because.take(),
            );
            let updated =
                blocking(move || mirror::update_mirror(&job, because, rebuilt, &cancel, &counters))
                    .await?;
            rebuilt |= updated.rebuilt;
            target = Some(updated.commit);
        }
        Err(Failure::Checkout(
            "the commit kept disappearing from the mirror (another worker is rebuilding it?); retry the run".to_owned(),
        ))
    }

    fn workspace_error(&self, what: &str, job: &Job, failure: Failure) -> WorkspaceError {
        let reason = match failure {
            Failure::Io { path, source } => return WorkspaceError::Io { path, source },
            Failure::Checkout(reason) => reason,
            Failure::Corrupt(reason) => format!(
                "the git mirror at {} is damaged and rebuilding it did not help: {reason}; delete it and retry",
                job.mirror.display()
            ),
            Failure::Cancelled => "the checkout was cancelled".to_owned(),
        };
        WorkspaceError::Checkout {
            what: what.to_owned(),
            reason: self.redactor.redact(&reason),
        }
    }
}

#[async_trait]
impl Materializer for GitMaterializer {
    async fn materialize(&self, checkout: &Checkout, dir: &Path) -> Result<(), WorkspaceError> {
        let what = describe(checkout);
        let job = Arc::new(self.plan(checkout, &what)?);
        // Dropped when this future is (a cancelled run): stops the blocking work, and
        // waits for files already being written so the workspace's cleanup sees them.
        let cancel_on_drop = CancelOnDrop::new();
        let span = tracing::info_span!("git_checkout", %what, url = %job.shown_url);
        let result = self
            .run(job.clone(), dir, &cancel_on_drop.token())
            .instrument(span)
            .await;
        result.map_err(|failure| self.workspace_error(&what, &job, failure))
    }
}

/// Runs blocking git work off the async threads, in the caller's span.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, Failure> + Send + 'static,
) -> Result<T, Failure> {
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(work))
        .await
        .unwrap_or_else(|join_error| {
            Err(Failure::Checkout(format!(
                "the git task failed ({join_error}); this is a bug in hamster-github, see the worker's log"
            )))
        })
}

/// `owner/name@ref`, `owner/name@sha` or `owner/name`, for messages.
fn describe(checkout: &Checkout) -> String {
    let name = checkout.repository.full_name();
    match (&checkout.fetch_ref, &checkout.sha) {
        (Some(fetch_ref), _) => format!("{name}@{fetch_ref}"),
        (None, Some(sha)) => format!("{name}@{sha}"),
        (None, None) => name,
    }
}

fn parse_sha(sha: &str) -> Result<git2::Oid, String> {
    // `Oid::from_str` accepts abbreviations (zero-padding them): only full ids name one
    // commit for sure.
    let full = matches!(sha.len(), 40 | 64) && sha.bytes().all(|b| b.is_ascii_hexdigit());
    if !full {
        return Err(format!(
            "{sha:?} is not a full commit id: give the 40-character hexadecimal sha"
        ));
    }
    git2::Oid::from_str(sha).map_err(|e| format!("{sha:?} is not a commit id: {}", e.message()))
}

/// `refs/pull/7/head` stays; `main` becomes `refs/heads/main`.
fn full_ref_name(name: &str) -> Result<String, String> {
    let full = if name == "HEAD" || name.starts_with("refs/") {
        name.to_owned()
    } else {
        format!("refs/heads/{name}")
    };
    if full != "HEAD" && !git2::Reference::is_valid_name(&full) {
        return Err(format!(
            "{name:?} is not a valid ref name: give a ref like refs/pull/7/head or refs/heads/main"
        ));
    }
    Ok(full)
}

/// The URL with any `user:password@` removed, for messages and logs.
fn without_user_info(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        // scp-like `git@host:path`: the user is not a secret.
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn user_info_is_removed_from_shown_urls() {
        assert_eq!(
            without_user_info("https://x-access-token:ghs_abc@github.com/acme/w.git"),
            "https://github.com/acme/w.git"
        );
        assert_eq!(
            without_user_info("git@github.com:acme/w.git"),
            "git@github.com:acme/w.git"
        );
        assert_eq!(
            without_user_info("file:///srv/git/a@b/w.git"),
            "file:///srv/git/a@b/w.git"
        );
    }

    #[test]
    fn only_full_shas_are_accepted() {
        assert!(parse_sha("0123456789abcdef0123456789abcdef01234567").is_ok());
        assert!(parse_sha("0123456").is_err());
        assert!(parse_sha("zz23456789abcdef0123456789abcdef01234567").is_err());
    }

    #[test]
    fn short_branch_names_become_full_refs() {
        assert_eq!(full_ref_name("main").unwrap(), "refs/heads/main");
        assert_eq!(
            full_ref_name("refs/pull/7/head").unwrap(),
            "refs/pull/7/head"
        );
        assert!(full_ref_name("refs/heads/bad..name").is_err());
    }
}
