//! `GitMaterializer` end to end, against bare repositories created by the tests and
//! fetched over `file://` through the clone URL template.

#![allow(clippy::unwrap_used)]

use git2::build::TreeUpdateBuilder;
use git2::{FileMode, Oid, Repository as GitRepository, Signature, Time};
use hamster_core::event::{Checkout, Repository, SourceRecord};
use hamster_core::workspace::{TempWorkspaces, WorkspaceError, WorkspaceProvider};
use hamster_github::git::{GitConfig, GitMaterializer, MaterializerStats};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

const OWNER: &str = "acme";
const NAME: &str = "widgets";

/// A temporary "GitHub": bare repositories under `remotes/<owner>/<repo>.git`, plus the
/// cache and workspace directories of one worker.
struct Forge {
    root: tempfile::TempDir,
    main_v1: Oid,
    main_v2: Oid,
    pr: Oid,
}

impl Forge {
    /// `acme/widgets`: two commits on main, a PR on top pushed as `refs/pull/7/head`.
    fn new() -> Self {
        // Under target/ rather than the system temporary directory: on some machines
        // (this one included) /tmp makes every file creation a thousand times slower.
        let root = tempfile::Builder::new()
            .prefix("git-workspace-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .unwrap();
        let origin =
            GitRepository::init_bare(root.path().join("remotes/acme/widgets.git")).unwrap();
        let main_v1 = commit(
            &origin,
            Some("refs/heads/main"),
            None,
            &[("README.md", "v1\n"), ("src/lib.rs", "pub fn one() {}\n")],
        );
        let main_v2 = commit(
            &origin,
            Some("refs/heads/main"),
            Some(main_v1),
            &[("README.md", "v2\n")],
        );
        let pr = commit(
            &origin,
            Some("refs/pull/7/head"),
            Some(main_v2),
            &[
                ("README.md", "pr 7\n"),
                ("src/feature.rs", "pub fn feature() {}\n"),
            ],
        );
        origin.set_head("refs/heads/main").unwrap();
        Self {
            root,
            main_v1,
            main_v2,
            pr,
        }
    }

    fn remotes(&self) -> PathBuf {
        self.root.path().join("remotes")
    }

    fn cache(&self) -> PathBuf {
        self.root.path().join("cache")
    }

    fn workspaces_root(&self) -> PathBuf {
        self.root.path().join("workspaces")
    }

    fn mirror(&self) -> PathBuf {
        self.cache().join("github.com/acme/widgets.git")
    }

    fn config(&self) -> hamster_github::git::GitConfigBuilder {
        GitConfig::builder(self.cache()).url_template(format!(
            "file://{}/{{owner}}/{{repo}}.git",
            self.remotes().display()
        ))
    }

    fn materializer(&self) -> GitMaterializer {
        GitMaterializer::new(self.config().build().unwrap())
    }

    fn workspaces(&self) -> TempWorkspaces<GitMaterializer> {
        TempWorkspaces::new(self.materializer()).in_dir(self.workspaces_root())
    }

    /// Every entry left in the workspace root.
    fn leftovers(&self) -> Vec<PathBuf> {
        match std::fs::read_dir(self.workspaces_root()) {
            Ok(entries) => entries.map(|entry| entry.unwrap().path()).collect(),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(error) => panic!("cannot list the workspace root: {error}"),
        }
    }
}

fn signature() -> Signature<'static> {
    Signature::new("Test", "test@example.com", &Time::new(1_700_000_000, 0)).unwrap()
}

/// Commits `files` (path, content) on top of `parent` and points `update_ref` at it.
fn commit(
    repo: &GitRepository,
    update_ref: Option<&str>,
    parent: Option<Oid>,
    files: &[(&str, &str)],
) -> Oid {
    let parent = parent.map(|oid| repo.find_commit(oid).unwrap());
    let base = match &parent {
        Some(parent) => parent.tree().unwrap(),
        None => {
            let empty = repo.treebuilder(None).unwrap().write().unwrap();
            repo.find_tree(empty).unwrap()
        }
    };
    let mut updates = TreeUpdateBuilder::new();
    for (path, content) in files {
        let blob = repo.blob(content.as_bytes()).unwrap();
        updates.upsert(*path, blob, FileMode::Blob);
    }
    let tree = repo
        .find_tree(updates.create_updated(repo, &base).unwrap())
        .unwrap();
    let parents: Vec<_> = parent.iter().collect();
    let message = format!("change {}", files[0].0);
    repo.commit(
        update_ref,
        &signature(),
        &signature(),
        &message,
        &tree,
        &parents,
    )
    .unwrap()
}

fn checkout(fetch_ref: Option<&str>, sha: Option<Oid>) -> Checkout {
    Checkout {
        repository: Repository {
            clone_url: Some("https://github.com/acme/widgets.git".to_owned()),
            ssh_url: Some("git@github.com:acme/widgets.git".to_owned()),
            ..Repository::new("github.com", OWNER, NAME)
        },
        fetch_ref: fetch_ref.map(str::to_owned),
        sha: sha.map(|oid| oid.to_string()),
    }
}

fn source(checkout: Checkout) -> SourceRecord {
    SourceRecord {
        kind: "pull_request".to_owned(),
        repository: checkout.repository.clone(),
        fields: serde_json::json!({}).into(),
        checkout: Some(checkout),
        deferred: Vec::new(),
    }
}

fn pr_checkout(forge: &Forge) -> Checkout {
    checkout(Some("refs/pull/7/head"), Some(forge.pr))
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file)).unwrap()
}

fn head(dir: &Path) -> Oid {
    let repo = GitRepository::open(dir).unwrap();
    assert!(repo.head_detached().unwrap(), "HEAD should be detached");
    repo.head().unwrap().target().unwrap()
}

/// Runs the system git in `dir` and returns its output, failing the test on error.
fn git(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the git CLI is needed by this test");
    assert!(
        output.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Files under `.git/objects` of a checkout, other than the alternates file.
fn own_objects(dir: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, found);
            } else if !path.ends_with("info/alternates") {
                found.push(path);
            }
        }
    }
    let mut found = Vec::new();
    walk(&dir.join(".git/objects"), &mut found);
    found
}

fn checkout_reason(error: WorkspaceError) -> String {
    match error {
        WorkspaceError::Checkout { reason, .. } => reason,
        other => panic!("expected a checkout error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_request_checkout_is_the_pr_head_in_a_normal_repository() {
    let forge = Forge::new();
    let workspaces = forge.workspaces();
    let workspace = workspaces.create(&source(pr_checkout(&forge))).unwrap();
    let dir = workspace.source_dir().await.unwrap();

    assert_eq!(read(&dir, "README.md"), "pr 7\n");
    assert_eq!(read(&dir, "src/feature.rs"), "pub fn feature() {}\n");
    assert_eq!(read(&dir, "src/lib.rs"), "pub fn one() {}\n");
    assert_eq!(head(&dir), forge.pr);

    // Shell commands run with the system git in the checkout.
    assert_eq!(
        git(&dir, &["rev-parse", "HEAD"]).trim(),
        forge.pr.to_string()
    );
    assert_eq!(git(&dir, &["status", "--porcelain"]), "");
    let log: Vec<String> = git(&dir, &["log", "--format=%H"])
        .lines()
        .map(str::to_owned)
        .collect();
    let expected = [forge.pr, forge.main_v2, forge.main_v1].map(|oid| oid.to_string());
    assert_eq!(log, expected);

    let mirror = GitRepository::open_bare(forge.mirror()).unwrap();
    assert!(mirror.is_bare());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ref_without_sha_checks_out_its_tip() {
    let forge = Forge::new();
    let workspace = forge
        .workspaces()
        .create(&source(checkout(Some("refs/pull/7/head"), None)))
        .unwrap();
    let dir = workspace.source_dir().await.unwrap();
    assert_eq!(head(&dir), forge.pr);
    assert_eq!(read(&dir, "README.md"), "pr 7\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_checkout_of_an_older_sha_on_a_branch() {
    let forge = Forge::new();
    let workspace = forge
        .workspaces()
        .create(&source(checkout(
            Some("refs/heads/main"),
            Some(forge.main_v1),
        )))
        .unwrap();
    let dir = workspace.source_dir().await.unwrap();
    assert_eq!(head(&dir), forge.main_v1);
    assert_eq!(read(&dir, "README.md"), "v1\n");
    assert!(!dir.join("src/feature.rs").exists());
    assert_eq!(git(&dir, &["status", "--porcelain"]), "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sha_without_ref_is_found_on_the_remote() {
    let forge = Forge::new();
    let materializer = Arc::new(forge.materializer());
    let workspaces =
        TempWorkspaces::new(ArcMaterializer(materializer.clone())).in_dir(forge.workspaces_root());
    let workspace = workspaces
        .create(&source(checkout(None, Some(forge.main_v1))))
        .unwrap();
    let dir = workspace.source_dir().await.unwrap();
    assert_eq!(head(&dir), forge.main_v1);
    assert_eq!(read(&dir, "README.md"), "v1\n");
    assert_eq!(
        materializer.stats().fetches,
        1,
        "only the commit is fetched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn neither_ref_nor_sha_checks_out_the_default_branch() {
    let forge = Forge::new();
    let workspace = forge
        .workspaces()
        .create(&source(checkout(None, None)))
        .unwrap();
    let dir = workspace.source_dir().await.unwrap();
    assert_eq!(head(&dir), forge.main_v2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_workspace_removes_the_checkout_but_keeps_the_mirror() {
    let forge = Forge::new();
    let workspace = forge
        .workspaces()
        .create(&source(pr_checkout(&forge)))
        .unwrap();
    let dir = workspace.source_dir().await.unwrap();
    assert!(dir.join("README.md").is_file());
    assert_eq!(forge.leftovers().len(), 1);

    drop(workspace);
    assert_eq!(forge.leftovers(), Vec::<PathBuf>::new());
    assert!(!dir.exists());
    assert!(forge.mirror().join("objects").is_dir());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_task_leaves_nothing_behind() {
    let forge = Forge::new();
    let workspace = forge
        .workspaces()
        .create(&source(pr_checkout(&forge)))
        .unwrap();
    let task = tokio::spawn(async move {
        let dir = workspace.source_dir().await.unwrap();
        assert!(dir.join("README.md").is_file());
        panic!("the action failed");
    });
    let error = task.await.unwrap_err();
    assert!(error.is_panic());
    assert_eq!(forge.leftovers(), Vec::<PathBuf>::new());
}

/// A repository big enough that its checkout takes a while, so aborts land mid-way.
fn big_forge() -> Forge {
    let forge = Forge::new();
    let origin = GitRepository::open_bare(forge.remotes().join("acme/widgets.git")).unwrap();
    let files: Vec<(String, String)> = (0..2000)
        .map(|i| {
            (
                format!("generated/{:02}/file{i}.txt", i % 50),
                format!("line {i}\n").repeat(20),
            )
        })
        .collect();
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(path, content)| (path.as_str(), content.as_str()))
        .collect();
    let big = commit(&origin, Some("refs/pull/8/head"), Some(forge.pr), &files);
    Forge { pr: big, ..forge }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborting_mid_checkout_leaves_nothing_behind() {
    let forge = big_forge();
    let big = checkout(Some("refs/pull/8/head"), Some(forge.pr));

    // Cold: aborted during the mirror creation and fetch.
    for delay_ms in [0, 5, 20, 60] {
        let cache = forge.root.path().join(format!("cold-cache-{delay_ms}"));
        let materializer = GitMaterializer::new(
            GitConfig::builder(&cache)
                .url_template(format!(
                    "file://{}/{{owner}}/{{repo}}.git",
                    forge.remotes().display()
                ))
                .build()
                .unwrap(),
        );
        let workspaces = TempWorkspaces::new(materializer).in_dir(forge.workspaces_root());
        let workspace = workspaces.create(&source(big.clone())).unwrap();
        let task = tokio::spawn(async move { workspace.source_dir().await.map(|_| ()) });
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        task.abort();
        let _ = task.await;
        assert_eq!(
            forge.leftovers(),
            Vec::<PathBuf>::new(),
            "cold, aborted after {delay_ms} ms"
        );
    }

    // Warm: the mirror has the commit, so aborts land in the checkout itself.
    let workspaces = forge.workspaces();
    let warm = workspaces.create(&source(big.clone())).unwrap();
    warm.source_dir().await.unwrap();
    drop(warm);
    let mut aborted_mid_way = 0;
    for delay_ms in [0, 2, 10, 40, 150] {
        let workspace = workspaces.create(&source(big.clone())).unwrap();
        let task = tokio::spawn(async move { workspace.source_dir().await.map(|_| ()) });
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        task.abort();
        if task.await.is_err() {
            aborted_mid_way += 1;
        }
        assert_eq!(
            forge.leftovers(),
            Vec::<PathBuf>::new(),
            "warm, aborted after {delay_ms} ms"
        );
    }
    assert!(
        aborted_mid_way > 0,
        "no abort landed before the checkout finished"
    );

    // The mirror survived the aborted fetches and checkouts.
    let workspace = workspaces.create(&source(big)).unwrap();
    let dir = workspace.source_dir().await.unwrap();
    assert_eq!(head(&dir), forge.pr);
    assert_eq!(read(&dir, "generated/07/file7.txt"), "line 7\n".repeat(20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_checkout_reuses_the_mirror_without_copying_history() {
    let forge = Forge::new();
    let materializer = Arc::new(forge.materializer());
    let workspaces =
        TempWorkspaces::new(ArcMaterializer(materializer.clone())).in_dir(forge.workspaces_root());

    let first = workspaces.create(&source(pr_checkout(&forge))).unwrap();
    first.source_dir().await.unwrap();
    assert_eq!(
        materializer.stats(),
        MaterializerStats {
            fetches: 1,
            mirrors_created: 1,
            mirrors_rebuilt: 0,
            checkouts: 1
        }
    );

    let second = workspaces.create(&source(pr_checkout(&forge))).unwrap();
    let dir = second.source_dir().await.unwrap();
    let stats = materializer.stats();
    assert_eq!(stats.fetches, 1, "the cached sha must not be fetched again");
    assert_eq!(stats.checkouts, 2);
    assert_eq!(head(&dir), forge.pr);

    // The history lives in the mirror only: the checkout has no objects of its own, and
    // borrows the mirror's.
    assert_eq!(own_objects(&dir), Vec::<PathBuf>::new());
    let alternates = read(&dir, ".git/objects/info/alternates");
    assert_eq!(
        Path::new(alternates.trim()),
        forge.mirror().join("objects"),
        "alternates: {alternates}"
    );
    assert_eq!(git(&dir, &["log", "--format=%H"]).lines().count(), 3);

    // Without a sha the ref's tip is unknown, so the ref is fetched again.
    let tip = workspaces
        .create(&source(checkout(Some("refs/pull/7/head"), None)))
        .unwrap();
    tip.source_dir().await.unwrap();
    assert_eq!(materializer.stats().fetches, 2);
}

/// Shares one materializer between `TempWorkspaces` and the test, to read its stats.
#[derive(Debug, Clone)]
struct ArcMaterializer(Arc<GitMaterializer>);

#[async_trait::async_trait]
impl hamster_core::workspace::Materializer for ArcMaterializer {
    async fn materialize(&self, checkout: &Checkout, dir: &Path) -> Result<(), WorkspaceError> {
        self.0.materialize(checkout, dir).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_checkouts_of_one_repository_all_succeed() {
    let forge = Forge::new();
    let materializer = Arc::new(forge.materializer());
    let workspaces =
        TempWorkspaces::new(ArcMaterializer(materializer.clone())).in_dir(forge.workspaces_root());
    let created: Vec<_> = (0..4)
        .map(|_| workspaces.create(&source(pr_checkout(&forge))).unwrap())
        .collect();
    let dirs = futures::future::join_all(created.iter().map(|ws| ws.source_dir())).await;
    for dir in dirs {
        let dir = dir.unwrap();
        assert_eq!(head(&dir), forge.pr);
        assert_eq!(read(&dir, "README.md"), "pr 7\n");
    }
    let stats = materializer.stats();
    assert_eq!(stats.fetches, 1, "{stats:?}");
    assert_eq!(stats.checkouts, 4, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn materializers_sharing_a_cache_directory_coordinate_through_the_file_lock() {
    let forge = Forge::new();
    // Two materializers do not share in-process locks: like two worker processes, they
    // only have the file lock in common.
    let first = Arc::new(forge.materializer());
    let second = Arc::new(forge.materializer());
    let workspaces = [first.clone(), second.clone()].map(|materializer| {
        TempWorkspaces::new(ArcMaterializer(materializer)).in_dir(forge.workspaces_root())
    });
    let created: Vec<_> = workspaces
        .iter()
        .cycle()
        .take(6)
        .map(|workspaces| workspaces.create(&source(pr_checkout(&forge))).unwrap())
        .collect();
    let dirs = futures::future::join_all(created.iter().map(|ws| ws.source_dir())).await;
    for dir in dirs {
        assert_eq!(head(&dir.unwrap()), forge.pr);
    }
    let fetches = first.stats().fetches + second.stats().fetches;
    assert_eq!(
        fetches, 1,
        "the second process must find the commit already fetched"
    );
    assert_eq!(
        first.stats().mirrors_created + second.stats().mirrors_created,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn different_repositories_are_checked_out_concurrently() {
    let forge = Forge::new();
    let other = GitRepository::init_bare(forge.remotes().join("acme/gadgets.git")).unwrap();
    let gadget = commit(
        &other,
        Some("refs/heads/main"),
        None,
        &[("GADGET", "yes\n")],
    );
    let workspaces = forge.workspaces();
    let mut gadgets = checkout(Some("refs/heads/main"), Some(gadget));
    gadgets.repository = Repository::new("github.com", OWNER, "gadgets");
    let (widgets, gadgets) = (
        workspaces.create(&source(pr_checkout(&forge))).unwrap(),
        workspaces.create(&source(gadgets)).unwrap(),
    );
    let (widgets, gadgets) = tokio::join!(widgets.source_dir(), gadgets.source_dir());
    assert_eq!(read(&widgets.unwrap(), "README.md"), "pr 7\n");
    assert_eq!(read(&gadgets.unwrap(), "GADGET"), "yes\n");
    assert!(forge.cache().join("github.com/acme/gadgets.git").is_dir());
}

/// Checks out the PR once, damages the mirror with `damage`, and checks it out again.
async fn survives(damage: impl FnOnce(&Path)) -> MaterializerStats {
    let forge = Forge::new();
    let materializer = Arc::new(forge.materializer());
    let workspaces =
        TempWorkspaces::new(ArcMaterializer(materializer.clone())).in_dir(forge.workspaces_root());
    let first = workspaces.create(&source(pr_checkout(&forge))).unwrap();
    first.source_dir().await.unwrap();
    drop(first);

    damage(&forge.mirror());

    let second = workspaces.create(&source(pr_checkout(&forge))).unwrap();
    let dir = second.source_dir().await.unwrap();
    assert_eq!(head(&dir), forge.pr);
    assert_eq!(read(&dir, "README.md"), "pr 7\n");
    assert_eq!(git(&dir, &["status", "--porcelain"]), "");
    materializer.stats()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_without_objects_is_rebuilt() {
    let stats = survives(|mirror| std::fs::remove_dir_all(mirror.join("objects")).unwrap()).await;
    assert_eq!(stats.mirrors_rebuilt, 1, "{stats:?}");
    assert_eq!(stats.fetches, 2, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_with_garbage_head_is_rebuilt() {
    let stats =
        survives(|mirror| std::fs::write(mirror.join("HEAD"), "garbage\0\n").unwrap()).await;
    assert_eq!(stats.mirrors_rebuilt, 1, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_missing_objects_its_refs_claim_is_repaired() {
    let stats = survives(|mirror| {
        // Keep the refs, lose every object they point at.
        for entry in std::fs::read_dir(mirror.join("objects/pack")).unwrap() {
            std::fs::remove_file(entry.unwrap().path()).unwrap();
        }
    })
    .await;
    assert_eq!(stats.mirrors_rebuilt, 1, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_with_truncated_pack_is_rebuilt() {
    let stats = survives(|mirror| {
        for entry in std::fs::read_dir(mirror.join("objects/pack")).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|ext| ext == "pack") {
                let bytes = std::fs::read(&path).unwrap();
                std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
            }
        }
    })
    .await;
    assert_eq!(stats.mirrors_rebuilt, 1, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_ref_says_which_ref_and_what_to_check() {
    let forge = Forge::new();
    let workspace = forge
        .workspaces()
        .create(&source(checkout(Some("refs/pull/99/head"), None)))
        .unwrap();
    let error = workspace.source_dir().await.unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("acme/widgets@refs/pull/99/head"),
        "{message}"
    );
    let reason = checkout_reason(error);
    assert!(
        reason.starts_with("no ref refs/pull/99/head on remote file:///"),
        "{reason}"
    );
    assert!(reason.ends_with("is the PR number right?"), "{reason}");
    drop(workspace);
    assert_eq!(forge.leftovers(), Vec::<PathBuf>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sha_missing_from_its_ref_is_reported() {
    let forge = Forge::new();
    let unknown = Oid::from_str("0123456789abcdef0123456789abcdef01234567").unwrap();
    let workspace = forge
        .workspaces()
        .create(&source(checkout(Some("refs/heads/main"), Some(unknown))))
        .unwrap();
    let reason = checkout_reason(workspace.source_dir().await.unwrap_err());
    assert!(reason.contains(&unknown.to_string()), "{reason}");
    assert!(reason.contains("force-pushed"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_repository_is_reported_with_the_url_to_check() {
    let forge = Forge::new();
    let mut missing = pr_checkout(&forge);
    missing.repository = Repository::new("github.com", "nobody", "nothing");
    let workspace = forge.workspaces().create(&source(missing)).unwrap();
    let reason = checkout_reason(workspace.source_dir().await.unwrap_err());
    assert!(
        reason.starts_with("could not fetch from file:///"),
        "{reason}"
    );
    assert!(reason.contains("nobody/nothing.git"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abbreviated_sha_is_rejected_before_fetching() {
    let forge = Forge::new();
    let mut short = pr_checkout(&forge);
    short.sha = Some(forge.pr.to_string()[..7].to_owned());
    let workspace = forge.workspaces().create(&source(short)).unwrap();
    let reason = checkout_reason(workspace.source_dir().await.unwrap_err());
    assert!(reason.contains("40-character"), "{reason}");
    assert!(!forge.mirror().exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_is_written_nowhere() {
    let forge = Forge::new();
    let token = "ghs_TheTokenMustNeverBeWritten";
    let materializer = GitMaterializer::new(forge.config().api_token(token).build().unwrap());
    let workspaces = TempWorkspaces::new(materializer).in_dir(forge.workspaces_root());
    let workspace = workspaces.create(&source(pr_checkout(&forge))).unwrap();
    let dir = workspace.source_dir().await.unwrap();

    for config in [forge.mirror().join("config"), dir.join(".git/config")] {
        let text = std::fs::read_to_string(&config).unwrap();
        assert!(
            !text.contains(token),
            "{} holds the token",
            config.display()
        );
        assert!(
            !text.contains("[remote"),
            "{} has a remote",
            config.display()
        );
    }
    let mut missing = pr_checkout(&forge);
    missing.repository = Repository::new("github.com", "nobody", "nothing");
    let error = workspaces
        .create(&source(missing))
        .unwrap()
        .source_dir()
        .await
        .unwrap_err();
    assert!(!format!("{error} {error:?}").contains(token));
}

/// An HTTPS-style remote that rejects every request with 401, like GitHub with a bad token.
async fn rejecting_server() -> wiremock::MockServer {
    use wiremock::matchers::any;
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(
            ResponseTemplate::new(401).insert_header("WWW-Authenticate", "Basic realm=\"GitHub\""),
        )
        .mount(&server)
        .await;
    server
}

async fn fetch_over_http(
    server: &wiremock::MockServer,
    token: Option<&str>,
) -> (String, Vec<wiremock::Request>) {
    let root = tempfile::Builder::new()
        .prefix("git-http-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    let mut config = GitConfig::builder(root.path().join("cache"))
        .url_template(format!("{}/{{owner}}/{{repo}}.git", server.uri()));
    if let Some(token) = token {
        config = config.api_token(token);
    }
    let workspaces = TempWorkspaces::new(GitMaterializer::new(config.build().unwrap()))
        .in_dir(root.path().join("workspaces"));
    let workspace = workspaces
        .create(&source(checkout(Some("refs/pull/7/head"), None)))
        .unwrap();
    let error = workspace.source_dir().await.unwrap_err();
    let requests = server.received_requests().await.unwrap_or_default();
    (format!("{error}"), requests)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_token_says_to_check_the_credentials_and_is_not_shown() {
    let server = rejecting_server().await;
    let token = "ghs_RejectedTokenValue";
    let (message, requests) = fetch_over_http(&server, Some(token)).await;
    assert!(
        message.contains("authentication failed for http://127.0.0.1"),
        "{message}"
    );
    assert!(
        message.contains("check github.key / HAMSTER_GITHUB_API_TOKEN"),
        "{message}"
    );
    assert!(!message.contains(token), "{message}");
    // The token was offered through the credential callback, as basic authentication.
    assert!(
        requests
            .iter()
            .any(|request| request.headers.get("authorization").is_some()),
        "no request carried credentials"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_credentials_say_what_to_configure() {
    let server = rejecting_server().await;
    let (message, requests) = fetch_over_http(&server, None).await;
    assert!(
        message.contains("none that fit are configured"),
        "{message}"
    );
    assert!(message.contains("HAMSTER_GITHUB_API_TOKEN"), "{message}");
    assert!(
        requests
            .iter()
            .all(|request| request.headers.get("authorization").is_none())
    );
}
