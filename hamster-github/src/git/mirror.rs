//! The blocking half: bare mirrors, fetches and checkouts with `git2`.
//!
//! Everything here runs on `spawn_blocking` threads, under the mirror's file lock.

use super::cancel::CancelToken;
use super::config::{ENV_API_TOKEN, ENV_SSH_KEY, ENV_URL_TEMPLATE, GitConfig};
use fs4::FileExt;
use git2::{
    AutotagOption, CredentialType, ErrorClass, ErrorCode, FetchOptions, FetchPrune, ObjectType,
    Oid, RemoteCallbacks, Repository,
};
use std::cell::Cell;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// The namespace of the mirror's own refs, so fetched refs never clash with each other.
const LOCAL_NAMESPACE: &str = "refs/hamster/";

/// Why a step failed, as far as the retry logic is concerned.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The mirror is damaged; rebuilding it may help.
    Corrupt(String),
    /// A final failure, with what to fix.
    Checkout(String),
    /// A local file system error.
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The materialization was abandoned.
    Cancelled,
}

impl Failure {
    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Failure + '_ {
        move |source| Failure::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// Counters shared by a materializer and its blocking jobs.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) fetches: AtomicU64,
    pub(crate) mirrors_created: AtomicU64,
    pub(crate) mirrors_rebuilt: AtomicU64,
    pub(crate) checkouts: AtomicU64,
}

/// Everything the blocking side needs to materialize one checkout.
#[derive(Debug)]
pub(crate) struct Job {
    pub(crate) config: std::sync::Arc<GitConfig>,
    pub(crate) url: String,
    /// The URL without any user information, for messages.
    pub(crate) shown_url: String,
    pub(crate) mirror: PathBuf,
    pub(crate) lock_file: PathBuf,
    /// The full name of the ref to fetch (`HEAD` when neither a ref nor a sha was given).
    pub(crate) fetch_ref: Option<String>,
    pub(crate) sha: Option<Oid>,
}

/// The mirror after an update: the commit to check out, and whether it was rebuilt.
#[derive(Debug)]
pub(crate) struct Updated {
    pub(crate) commit: Oid,
    pub(crate) rebuilt: bool,
}

enum LockMode {
    Shared,
    Exclusive,
}

/// Takes the mirror's advisory file lock (released when the file is closed), so that
/// worker processes sharing the cache never fetch into or rebuild a mirror another one
/// is reading.
fn lock_mirror(job: &Job, mode: LockMode) -> Result<File, Failure> {
    if let Some(parent) = job.lock_file.parent() {
        std::fs::create_dir_all(parent).map_err(Failure::io(parent))?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&job.lock_file)
        .map_err(Failure::io(&job.lock_file))?;
    // Fully qualified: std has inherent methods of the same names on newer toolchains.
    match mode {
        LockMode::Shared => FileExt::lock_shared(&file),
        LockMode::Exclusive => FileExt::lock(&file),
    }
    .map_err(Failure::io(&job.lock_file))?;
    Ok(file)
}

/// Whether an error means the local object store is damaged.
fn is_corruption(error: &git2::Error) -> bool {
    matches!(
        error.class(),
        ErrorClass::Odb | ErrorClass::Zlib | ErrorClass::Object | ErrorClass::Indexer
    )
}

/// Opens a healthy existing mirror: `None` when there is none, `Corrupt` when it is broken.
fn open_mirror(path: &Path) -> Result<Option<Repository>, Failure> {
    if !path.exists() {
        return Ok(None);
    }
    let broken =
        |what: &str, error: git2::Error| Failure::Corrupt(format!("{what}: {}", error.message()));
    let repo = Repository::open_bare(path).map_err(|e| broken("cannot open it", e))?;
    if !repo.is_bare() {
        return Err(Failure::Corrupt("it is not a bare repository".to_owned()));
    }
    // A mangled HEAD does not stop libgit2 from opening a repository, but it stops the
    // system git: a mirror whose HEAD cannot be read is not trusted.
    repo.find_reference("HEAD")
        .map_err(|e| broken("its HEAD is unreadable", e))?;
    repo.odb()
        .map_err(|e| broken("its object store is unreadable", e))?;
    Ok(Some(repo))
}

/// Opens the mirror, creating it on first use or rebuilding it when `rebuild_because` is
/// set or it is damaged. Returns whether it was rebuilt.
fn open_or_create(
    job: &Job,
    mut rebuild_because: Option<String>,
    counters: &Counters,
) -> Result<(Repository, bool), Failure> {
    if rebuild_because.is_none() {
        match open_mirror(&job.mirror) {
            Ok(Some(repo)) => return Ok((repo, false)),
            Ok(None) => {}
            Err(Failure::Corrupt(reason)) => rebuild_because = Some(reason),
            Err(other) => return Err(other),
        }
    }
    let rebuilt = match rebuild_because {
        Some(reason) => {
            tracing::warn!(
                mirror = %job.mirror.display(),
                %reason,
                "git mirror is damaged; removing it and fetching it again"
            );
            if job.mirror.exists() {
                std::fs::remove_dir_all(&job.mirror).map_err(Failure::io(&job.mirror))?;
            }
            counters.mirrors_rebuilt.fetch_add(1, Ordering::Relaxed);
            true
        }
        None => {
            tracing::info!(mirror = %job.mirror.display(), "creating git mirror");
            counters.mirrors_created.fetch_add(1, Ordering::Relaxed);
            false
        }
    };
    let repo = Repository::init_bare(&job.mirror).map_err(|e| {
        Failure::Checkout(format!(
            "cannot create the mirror at {}: {}; check that the git cache directory is writable",
            job.mirror.display(),
            e.message()
        ))
    })?;
    Ok((repo, rebuilt))
}

/// The commit `oid` names (peeling annotated tags), or `None` when the mirror lacks it.
fn find_commit(repo: &Repository, oid: Oid) -> Result<Option<Oid>, Failure> {
    let odb = repo.odb().map_err(|e| {
        Failure::Corrupt(format!("its object store is unreadable: {}", e.message()))
    })?;
    if !odb.exists(oid) {
        return Ok(None);
    }
    let object = repo.find_object(oid, None).map_err(|e| {
        Failure::Corrupt(format!(
            "object {oid} is listed but unreadable: {}",
            e.message()
        ))
    })?;
    match object.peel(ObjectType::Commit) {
        Ok(commit) => Ok(Some(commit.id())),
        Err(e) if is_corruption(&e) => Err(Failure::Corrupt(format!(
            "the history of {oid} is unreadable: {}",
            e.message()
        ))),
        Err(_) => Err(Failure::Checkout(format!(
            "{oid} is a {}, not a commit: give the sha of a commit",
            object.kind().map_or("object", |kind| kind.str())
        ))),
    }
}

/// `refs/pull/7/head` → `refs/hamster/pull/7/head`; `HEAD` → `refs/hamster/HEAD`.
fn local_ref(fetch_ref: &str) -> String {
    format!(
        "{LOCAL_NAMESPACE}{}",
        fetch_ref.strip_prefix("refs/").unwrap_or(fetch_ref)
    )
}

/// Fetches `refspecs` from the job's URL into the mirror; returns the names of the refs
/// the remote advertised.
fn fetch(
    repo: &Repository,
    job: &Job,
    refspecs: &[String],
    cancel: &CancelToken,
    counters: &Counters,
) -> Result<Vec<String>, Failure> {
    if cancel.is_cancelled() {
        return Err(Failure::Cancelled);
    }
    let mut remote = repo.remote_anonymous(&job.url).map_err(|e| {
        Failure::Checkout(format!(
            "invalid clone URL {}: {}; check {ENV_URL_TEMPLATE}",
            job.shown_url,
            e.message()
        ))
    })?;
    let credential_requests = Cell::new(0u32);
    let missing_credentials = Cell::new(false);
    let mut callbacks = RemoteCallbacks::new();
    callbacks.credentials(|_url, username_from_url, allowed| {
        credential_requests.set(credential_requests.get() + 1);
        // libgit2 asks again and again while the server rejects what it got.
        if credential_requests.get() > 4 {
            return Err(git2::Error::new(
                ErrorCode::Auth,
                ErrorClass::Callback,
                "the server rejected every credential offered",
            ));
        }
        credentials(&job.config, username_from_url, allowed).ok_or_else(|| {
            missing_credentials.set(true);
            git2::Error::new(
                ErrorCode::Auth,
                ErrorClass::Callback,
                "no usable credentials configured",
            )
        })
    });
    callbacks.transfer_progress(|_| !cancel.is_cancelled());
    callbacks.sideband_progress(|_| !cancel.is_cancelled());
    let mut options = FetchOptions::new();
    options
        .remote_callbacks(callbacks)
        .download_tags(AutotagOption::None)
        .prune(FetchPrune::Off)
        .update_fetchhead(false);

    counters.fetches.fetch_add(1, Ordering::Relaxed);
    let started = Instant::now();
    let result = remote.fetch(refspecs, Some(&mut options), None);
    drop(options);
    if let Err(error) = result {
        if cancel.is_cancelled() {
            return Err(Failure::Cancelled);
        }
        return Err(fetch_failure(
            job,
            &error,
            missing_credentials.get(),
            credential_requests.get(),
        ));
    }
    let stats = remote.stats();
    tracing::debug!(
        url = %job.shown_url,
        refspecs = ?refspecs,
        objects = stats.received_objects(),
        bytes = stats.received_bytes(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "fetched into git mirror"
    );
    // The advertisement stays available after the fetch disconnected.
    let advertised: Vec<(String, Oid)> = remote
        .list()
        .map(|heads| {
            heads
                .iter()
                .map(|head| (head.name().to_owned(), head.oid()))
                .collect()
        })
        .unwrap_or_default();
    check_fetched(repo, refspecs, &advertised)?;
    Ok(advertised.into_iter().map(|(name, _)| name).collect())
}

/// After a fetch, every ref the refspecs asked for must be in the object store. When one
/// is not, the mirror claimed to have it during negotiation (a ref of ours points at it)
/// while its objects are gone, so the server sent nothing: the mirror is damaged.
fn check_fetched(
    repo: &Repository,
    refspecs: &[String],
    advertised: &[(String, Oid)],
) -> Result<(), Failure> {
    let wanted = |name: &str| {
        refspecs.iter().any(|refspec| {
            let source = refspec.trim_start_matches('+');
            let source = source.split_once(':').map_or(source, |(source, _)| source);
            match source.strip_suffix('*') {
                Some(prefix) => name.starts_with(prefix),
                None => name == source,
            }
        })
    };
    for (name, oid) in advertised.iter().filter(|(name, _)| wanted(name)) {
        if find_commit(repo, *oid)?.is_none() {
            return Err(Failure::Corrupt(format!(
                "{name} was fetched but its commit {oid} is not in the mirror's object store"
            )));
        }
    }
    Ok(())
}

/// The credential to answer a server's challenge with, if one is configured.
fn credentials(
    config: &GitConfig,
    username_from_url: Option<&str>,
    allowed: CredentialType,
) -> Option<git2::Cred> {
    if allowed.contains(CredentialType::USERNAME) {
        return git2::Cred::username(username_from_url.unwrap_or("git")).ok();
    }
    if allowed.contains(CredentialType::SSH_KEY) {
        if let Some(keypair) = config.ssh_key() {
            return git2::Cred::ssh_key(
                username_from_url.unwrap_or("git"),
                Some(&keypair.public_key),
                &keypair.private_key,
                None,
            )
            .ok();
        }
    }
    if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) {
        if let Some(token) = config.api_token() {
            return git2::Cred::userpass_plaintext(token.username(), token.secret()).ok();
        }
    }
    None
}

fn fetch_failure(
    job: &Job,
    error: &git2::Error,
    missing_credentials: bool,
    credential_requests: u32,
) -> Failure {
    let url = &job.shown_url;
    let detail = error.message();
    if missing_credentials {
        return Failure::Checkout(format!(
            "{url} asks for credentials and none that fit are configured: provide github.key / github.pub ({ENV_SSH_KEY}) for ssh URLs or {ENV_API_TOKEN} for https URLs"
        ));
    }
    if error.code() == ErrorCode::Auth || credential_requests > 1 {
        return Failure::Checkout(format!(
            "authentication failed for {url}: check github.key / {ENV_API_TOKEN} ({detail})"
        ));
    }
    if error.code() == ErrorCode::Certificate {
        return Failure::Checkout(format!(
            "{url} presented a host key or certificate that is not trusted: add the host to ~/.ssh/known_hosts or fix the TLS setup ({detail})"
        ));
    }
    if is_corruption(error) {
        return Failure::Corrupt(format!("fetching from {url} failed: {detail}"));
    }
    Failure::Checkout(format!(
        "could not fetch from {url}: {detail}; check that the repository exists at this URL ({ENV_URL_TEMPLATE} overrides it) and that the host is reachable"
    ))
}

fn missing_ref_hint(fetch_ref: &str) -> &'static str {
    if fetch_ref.starts_with("refs/pull/") {
        "is the PR number right?"
    } else if fetch_ref.starts_with("refs/heads/") {
        "was the branch deleted or renamed?"
    } else if fetch_ref.starts_with("refs/tags/") {
        "was the tag deleted?"
    } else {
        "does the ref exist?"
    }
}

/// Brings the commit the job needs into the mirror (skipping the network when it is
/// already there) and returns it.
fn fetch_into(
    repo: &Repository,
    job: &Job,
    cancel: &CancelToken,
    counters: &Counters,
) -> Result<Oid, Failure> {
    if let Some(sha) = job.sha {
        if let Some(commit) = find_commit(repo, sha)? {
            tracing::debug!(%sha, "commit already in the git mirror; not fetching");
            return Ok(commit);
        }
    }
    if let Some(fetch_ref) = &job.fetch_ref {
        let local = local_ref(fetch_ref);
        let advertised = fetch(
            repo,
            job,
            &[format!("+{fetch_ref}:{local}")],
            cancel,
            counters,
        )?;
        if !advertised.iter().any(|name| name == fetch_ref) {
            return Err(Failure::Checkout(format!(
                "no ref {fetch_ref} on remote {}: {}",
                job.shown_url,
                missing_ref_hint(fetch_ref)
            )));
        }
        let Some(sha) = job.sha else {
            let tip = repo.refname_to_id(&local).map_err(|e| {
                Failure::Corrupt(format!(
                    "{fetch_ref} was fetched but {local} is unreadable: {}",
                    e.message()
                ))
            })?;
            return find_commit(repo, tip)?.ok_or_else(|| {
                Failure::Corrupt(format!(
                    "{fetch_ref} was fetched but its commit {tip} is missing from the mirror"
                ))
            });
        };
        if let Some(commit) = find_commit(repo, sha)? {
            return Ok(commit);
        }
        return Err(Failure::Checkout(format!(
            "commit {sha} is not on {fetch_ref} of {} any more: it was probably force-pushed away; react to the new head instead",
            job.shown_url
        )));
    }
    let Some(sha) = job.sha else {
        // `Job` always has a ref or a sha; keep the invariant checkable rather than panic.
        return Err(Failure::Checkout(
            "nothing to fetch: the checkout names neither a ref nor a commit".to_owned(),
        ));
    };
    // A commit without a ref: ask for it directly (servers that allow it, like GitHub,
    // send just its history), else look for it on the branches.
    match fetch(
        repo,
        job,
        &[format!("+{sha}:{LOCAL_NAMESPACE}commits/{sha}")],
        cancel,
        counters,
    ) {
        Ok(_) => {}
        Err(Failure::Checkout(reason)) => {
            tracing::debug!(%sha, %reason, "fetching a commit by id failed; fetching the branches")
        }
        Err(other) => return Err(other),
    }
    if let Some(commit) = find_commit(repo, sha)? {
        return Ok(commit);
    }
    fetch(
        repo,
        job,
        &[format!("+refs/heads/*:{LOCAL_NAMESPACE}heads/*")],
        cancel,
        counters,
    )?;
    find_commit(repo, sha)?.ok_or_else(|| {
        Failure::Checkout(format!(
            "commit {sha} is on no branch of {}: check the sha, or give the ref it is on",
            job.shown_url
        ))
    })
}

/// Under the exclusive lock: opens (or creates, or repairs) the mirror and brings the
/// needed commit into it. A damaged mirror is rebuilt at most once per materialization
/// (`already_rebuilt` says whether that already happened).
pub(crate) fn update_mirror(
    job: &Job,
    rebuild_because: Option<String>,
    already_rebuilt: bool,
    cancel: &CancelToken,
    counters: &Counters,
) -> Result<Updated, Failure> {
    let _lock = lock_mirror(job, LockMode::Exclusive)?;
    let mut rebuilt = false;
    let mut rebuild_because = rebuild_because;
    loop {
        let (repo, just_rebuilt) = open_or_create(job, rebuild_because.take(), counters)?;
        rebuilt |= just_rebuilt;
        match fetch_into(&repo, job, cancel, counters) {
            Err(Failure::Corrupt(reason)) if !(rebuilt || already_rebuilt) => {
                rebuild_because = Some(reason);
            }
            result => return result.map(|commit| Updated { commit, rebuilt }),
        }
    }
}

/// Under the shared lock: checks `commit` out of the mirror into `dir` if the mirror has
/// it. Returns `false` (and writes nothing) when the mirror lacks it.
pub(crate) fn checkout_from_mirror(
    job: &Job,
    commit: Oid,
    dir: &Path,
    cancel: &CancelToken,
    counters: &Counters,
) -> Result<bool, Failure> {
    let _lock = lock_mirror(job, LockMode::Shared)?;
    let commit = {
        let Some(repo) = open_mirror(&job.mirror)? else {
            return Ok(false);
        };
        match find_commit(&repo, commit)? {
            Some(commit) => commit,
            None => return Ok(false),
        }
    };
    let Some(_writing) = cancel.begin_writing() else {
        return Err(Failure::Cancelled);
    };
    let started = Instant::now();
    let result = write_checkout(&job.mirror, commit, dir);
    if result.is_err() {
        // Leave the directory empty, as we got it, for a retry.
        empty_dir(dir);
    } else {
        counters.checkouts.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(
            %commit,
            dir = %dir.display(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "checked out from git mirror"
        );
    }
    result.map(|()| true)
}

/// Makes `dir` a normal repository borrowing the mirror's objects (through
/// `objects/info/alternates`, so no history is copied), HEAD detached at `commit`, with
/// the commit's tree checked out and the index written.
fn write_checkout(mirror: &Path, commit: Oid, dir: &Path) -> Result<(), Failure> {
    let failed = |what: &str, error: git2::Error| {
        if is_corruption(&error) {
            Failure::Corrupt(format!("{what}: {}", error.message()))
        } else {
            Failure::Checkout(format!(
                "{what} in {}: {}; check free disk space and permissions",
                dir.display(),
                error.message()
            ))
        }
    };
    let repo = Repository::init(dir).map_err(|e| failed("cannot create the repository", e))?;
    let info = repo.path().join("objects").join("info");
    std::fs::create_dir_all(&info).map_err(Failure::io(&info))?;
    let alternates = info.join("alternates");
    let mut line = mirror.join("objects").into_os_string().into_encoded_bytes();
    line.push(b'\n');
    std::fs::write(&alternates, line).map_err(Failure::io(&alternates))?;
    // Reopen, so that the object database is loaded with the alternate.
    drop(repo);
    let repo = Repository::open(dir).map_err(|e| failed("cannot open the new repository", e))?;
    let object = repo
        .find_object(commit, Some(ObjectType::Commit))
        .map_err(|e| failed(&format!("cannot read commit {commit}"), e))?;
    let mut options = git2::build::CheckoutBuilder::new();
    options.force();
    repo.checkout_tree(&object, Some(&mut options))
        .map_err(|e| failed(&format!("cannot check out {commit}"), e))?;
    repo.set_head_detached(commit)
        .map_err(|e| failed(&format!("cannot point HEAD at {commit}"), e))?;
    Ok(())
}

/// Removes everything inside `dir`, keeping `dir`.
fn empty_dir(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let removed = match entry.file_type() {
            Ok(kind) if kind.is_dir() => std::fs::remove_dir_all(&path),
            _ => std::fs::remove_file(&path),
        };
        if let Err(error) = removed {
            tracing::warn!(path = %path.display(), %error, "cannot clean up a failed checkout");
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn local_refs_are_namespaced() {
        assert_eq!(local_ref("refs/pull/7/head"), "refs/hamster/pull/7/head");
        assert_eq!(local_ref("refs/heads/main"), "refs/hamster/heads/main");
        assert_eq!(local_ref("HEAD"), "refs/hamster/HEAD");
    }

    #[test]
    fn missing_ref_hints_match_the_kind_of_ref() {
        assert_eq!(
            missing_ref_hint("refs/pull/7/head"),
            "is the PR number right?"
        );
        assert!(missing_ref_hint("refs/heads/topic").contains("branch"));
        assert!(missing_ref_hint("refs/tags/v1").contains("tag"));
    }

    #[test]
    fn missing_mirror_is_not_an_error_and_garbage_is_corruption() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            open_mirror(&dir.path().join("none.git")),
            Ok(None)
        ));

        let garbage = dir.path().join("garbage.git");
        std::fs::create_dir(&garbage).unwrap();
        std::fs::write(garbage.join("HEAD"), "not a ref").unwrap();
        assert!(matches!(open_mirror(&garbage), Err(Failure::Corrupt(_))));

        let healthy = dir.path().join("healthy.git");
        Repository::init_bare(&healthy).unwrap();
        assert!(matches!(open_mirror(&healthy), Ok(Some(_))));
        std::fs::write(healthy.join("HEAD"), "\x00\x01garbage").unwrap();
        assert!(matches!(open_mirror(&healthy), Err(Failure::Corrupt(_))));
    }
}
