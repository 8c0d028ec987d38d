//! Workspaces: the temporary directory a pipeline run works in.

use crate::event::{Checkout, SourceRecord};
use async_trait::async_trait;
use std::fmt::Debug;
use std::path::{Path, PathBuf};
use tokio::sync::OnceCell;

/// Why a workspace could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    /// The event's source cannot be put on disk (for example, an event about an organization).
    #[error(
        "this event's source ({kind}) has nothing to check out; remove the step that needs a checkout or react to an event about a repository"
    )]
    NothingToCheckOut {
        /// The source's kind.
        kind: String,
    },
    /// Fetching or checking out the source failed.
    #[error("could not check out {what}: {reason}")]
    Checkout {
        /// What was being checked out, e.g. `Codertocat/Hello-World@refs/pull/2/head`.
        what: String,
        /// Why it failed, with a hint of what to fix.
        reason: String,
    },
    /// A local file system error.
    #[error("workspace I/O error at {path}: {source}")]
    Io {
        /// Where it happened.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// The directory one pipeline run works in.
///
/// Contract:
/// - Nothing is created on disk until an action asks: the source is materialized on the
///   first call to [`source_dir`](Workspace::source_dir), so a pipeline whose actions never
///   ask for it never clones anything (nor creates a directory).
///   Later calls return the same directory without materializing again. Concurrent first
///   calls materialize once.
/// - A workspace owns everything it creates on disk and removes it when dropped. The engine
///   drops the workspace when the run ends, whether it succeeded, failed, panicked or was
///   cancelled, so implementations must clean up in `Drop`, not in an async method.
#[async_trait]
pub trait Workspace: Send + Sync + Debug {
    /// The directory holding the materialized source; materializes it on first call.
    async fn source_dir(&self) -> Result<PathBuf, WorkspaceError>;
    /// A directory private to this run for scratch files (created on first call); never
    /// holds the source.
    async fn scratch_dir(&self) -> Result<PathBuf, WorkspaceError>;
    /// Whether the source has been materialized.
    fn is_materialized(&self) -> bool;
}

/// Creates a [`Workspace`] for each pipeline run.
///
/// Contract: [`create`](WorkspaceProvider::create) must be cheap and must not fetch
/// anything; materialization is deferred to [`Workspace::source_dir`].
pub trait WorkspaceProvider: Send + Sync + Debug {
    /// Creates the workspace for a run about `source`.
    fn create(&self, source: &SourceRecord) -> Result<Box<dyn Workspace>, WorkspaceError>;
}

/// Materializes one [`Checkout`] into an empty directory.
///
/// Implemented by forge integrations (git clone, mirror caches); wrapped by
/// [`TempWorkspaces`] to get temporary, self-cleaning workspaces.
#[async_trait]
pub trait Materializer: Send + Sync + Debug {
    /// Puts `checkout` into `dir`, which exists and is empty.
    async fn materialize(&self, checkout: &Checkout, dir: &Path) -> Result<(), WorkspaceError>;
}

/// A materializer for sources that cannot be checked out: every request fails with
/// [`WorkspaceError::NothingToCheckOut`]. Useful for engines that run no local commands.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoCheckout;

#[async_trait]
impl Materializer for NoCheckout {
    async fn materialize(&self, checkout: &Checkout, _dir: &Path) -> Result<(), WorkspaceError> {
        Err(WorkspaceError::Checkout {
            what: checkout.repository.full_name(),
            reason: "this worker has no git materializer configured; configure one (hamster-github's GitMaterializer) to run actions in a checkout".to_owned(),
        })
    }
}

/// Workspaces in temporary directories, materialized by a [`Materializer`].
#[derive(Debug, Clone)]
pub struct TempWorkspaces<M> {
    materializer: std::sync::Arc<M>,
    root: Option<PathBuf>,
}

impl<M: Materializer + 'static> TempWorkspaces<M> {
    /// Workspaces under the system temporary directory.
    pub fn new(materializer: M) -> Self {
        Self {
            materializer: std::sync::Arc::new(materializer),
            root: None,
        }
    }

    /// Workspaces under `root` instead of the system temporary directory.
    pub fn in_dir(mut self, root: impl Into<PathBuf>) -> Self {
        self.root = Some(root.into());
        self
    }
}

impl<M: Materializer + 'static> WorkspaceProvider for TempWorkspaces<M> {
    fn create(&self, source: &SourceRecord) -> Result<Box<dyn Workspace>, WorkspaceError> {
        Ok(Box::new(TempWorkspace {
            checkout: source.checkout.clone(),
            kind: source.kind.clone(),
            materializer: self.materializer.clone(),
            root: self.root.clone(),
            materialized: OnceCell::new(),
            scratch: OnceCell::new(),
            dir: std::sync::OnceLock::new(),
        }))
    }
}

/// A workspace in a temporary directory (created on first use), removed on drop.
#[derive(Debug)]
struct TempWorkspace<M> {
    checkout: Option<Checkout>,
    kind: String,
    materializer: std::sync::Arc<M>,
    root: Option<PathBuf>,
    materialized: OnceCell<PathBuf>,
    scratch: OnceCell<PathBuf>,
    // Last, so that it is dropped (and the directory removed) after everything else.
    dir: std::sync::OnceLock<tempfile::TempDir>,
}

impl<M> TempWorkspace<M> {
    fn dir(&self) -> Result<&Path, WorkspaceError> {
        if let Some(dir) = self.dir.get() {
            return Ok(dir.path());
        }
        let mut builder = tempfile::Builder::new();
        builder.prefix("hamster-run-");
        let created = match &self.root {
            Some(root) => {
                std::fs::create_dir_all(root).map_err(|source| WorkspaceError::Io {
                    path: root.clone(),
                    source,
                })?;
                builder.tempdir_in(root)
            }
            None => builder.tempdir(),
        }
        .map_err(|source| WorkspaceError::Io {
            path: self.root.clone().unwrap_or_else(std::env::temp_dir),
            source,
        })?;
        // Another caller may have won the race; its directory is kept and ours removed.
        Ok(self.dir.get_or_init(|| created).path())
    }
}

#[async_trait]
impl<M: Materializer + 'static> Workspace for TempWorkspace<M> {
    async fn source_dir(&self) -> Result<PathBuf, WorkspaceError> {
        let path = self
            .materialized
            .get_or_try_init(|| async {
                let Some(checkout) = &self.checkout else {
                    return Err(WorkspaceError::NothingToCheckOut {
                        kind: self.kind.clone(),
                    });
                };
                let target = self.dir()?.join("source");
                tokio::fs::create_dir(&target)
                    .await
                    .map_err(|source| WorkspaceError::Io {
                        path: target.clone(),
                        source,
                    })?;
                self.materializer.materialize(checkout, &target).await?;
                Ok(target)
            })
            .await?;
        Ok(path.clone())
    }

    async fn scratch_dir(&self) -> Result<PathBuf, WorkspaceError> {
        let path = self
            .scratch
            .get_or_try_init(|| async {
                let scratch = self.dir()?.join("scratch");
                tokio::fs::create_dir(&scratch)
                    .await
                    .map_err(|source| WorkspaceError::Io {
                        path: scratch.clone(),
                        source,
                    })?;
                Ok(scratch)
            })
            .await?;
        Ok(path.clone())
    }

    fn is_materialized(&self) -> bool {
        self.materialized.initialized()
    }
}
