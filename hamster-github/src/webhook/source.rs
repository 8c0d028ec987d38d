//! Typed sources: what a GitHub event is about.
//!
//! Everything here is read leniently from the payload: a missing or oddly typed field becomes
//! `None`/`null`/empty, never an error, because GitHub adds, drops and renames fields over
//! time (and GitHub Enterprise lags behind github.com).

use hamster_core::event::{Checkout, Repository, Source};
use serde_json::{Map, Value};

/// The fields of a pull request that a comment event (`issue_comment` on a pull request) does
/// not carry, and that [`PullRequestEnricher`](super::PullRequestEnricher) fetches.
pub const PULL_REQUEST_DEFERRED_FIELDS: [&str; 5] = ["head", "base", "branch", "draft", "merged"];

const ZERO_SHA: &str = "0000000000000000000000000000000000000000";

/// What an event is about, by kind.
#[derive(Clone, Debug, PartialEq)]
pub enum GitHubSource {
    /// A pull request (kind `pull_request`).
    PullRequest(PullRequest),
    /// A commit (kind `commit`).
    Commit(Commit),
    /// An issue (kind `issue`).
    Issue(Issue),
    /// A repository, or an account for events that concern no repository (kind `repository`).
    Repository(RepositorySource),
}

impl GitHubSource {
    fn as_source(&self) -> &dyn Source {
        match self {
            Self::PullRequest(source) => source,
            Self::Commit(source) => source,
            Self::Issue(source) => source,
            Self::Repository(source) => source,
        }
    }
}

impl Source for GitHubSource {
    fn kind(&self) -> &str {
        self.as_source().kind()
    }
    fn repository(&self) -> &Repository {
        self.as_source().repository()
    }
    fn fields(&self) -> Value {
        self.as_source().fields()
    }
    fn checkout(&self) -> Option<Checkout> {
        self.as_source().checkout()
    }
    fn deferred_fields(&self) -> Vec<String> {
        self.as_source().deferred_fields()
    }
}

/// Where an event happened: the repository, as the payload's `repository` describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepositoryInfo {
    /// Identity of the repository. For events about an account rather than a repository
    /// (`installation`, an organization's `ping`), `name` is empty and `owner` is the
    /// account's login.
    pub identity: Repository,
    /// Whether the payload named a repository (false for account-level events).
    pub has_repository: bool,
    /// The repository's default branch, e.g. `main`.
    pub default_branch: Option<String>,
    /// The repository's web page.
    pub url: Option<String>,
    /// Whether the repository is private.
    pub private: Option<bool>,
}

impl RepositoryInfo {
    /// Reads the repository (or, failing that, the account) an event payload is about.
    pub fn from_payload(payload: &Value) -> Self {
        match payload.get("repository").filter(|repo| repo.is_object()) {
            Some(repo) => Self::from_repository(repo),
            None => Self::from_account(payload),
        }
    }

    fn from_repository(repo: &Value) -> Self {
        let html_url = text(repo, "html_url");
        let host = html_url
            .as_deref()
            .and_then(host_of)
            .or_else(|| {
                // The API URL's host is the forge's for GitHub Enterprise only.
                repo.get("url")
                    .and_then(Value::as_str)
                    .and_then(host_of)
                    .filter(|host| *host != "api.github.com")
            })
            .unwrap_or("github.com")
            .to_owned();
        // `full_name` is the one field naming both parts, as API paths use them; some
        // documentation payloads disagree between it and `owner.login`.
        let (owner, name) = match repo
            .get("full_name")
            .and_then(Value::as_str)
            .and_then(|full| full.split_once('/'))
        {
            Some((owner, name)) => (owner.to_owned(), name.to_owned()),
            None => (
                repo.get("owner")
                    .and_then(|owner| text(owner, "login").or_else(|| text(owner, "name")))
                    .unwrap_or_default(),
                text(repo, "name").unwrap_or_default(),
            ),
        };
        Self {
            identity: Repository {
                host,
                owner,
                name,
                clone_url: text(repo, "clone_url"),
                ssh_url: text(repo, "ssh_url"),
            },
            has_repository: true,
            default_branch: text(repo, "default_branch").or_else(|| text(repo, "master_branch")),
            url: html_url,
            private: repo.get("private").and_then(Value::as_bool),
        }
    }

    fn from_account(payload: &Value) -> Self {
        let account = payload
            .get("installation")
            .and_then(|installation| installation.get("account"))
            .into_iter()
            .chain(
                ["organization", "sender"]
                    .map(|key| payload.get(key))
                    .into_iter()
                    .flatten(),
            )
            .find(|account| account.get("login").is_some_and(Value::is_string));
        let owner = account.and_then(|account| text(account, "login"));
        let url = account.and_then(|account| text(account, "html_url"));
        let host = url.as_deref().and_then(host_of).unwrap_or("github.com");
        Self {
            identity: Repository::new(host, owner.unwrap_or_default(), ""),
            has_repository: false,
            default_branch: None,
            url,
            private: None,
        }
    }

    fn default_ref(&self) -> Option<String> {
        self.default_branch
            .as_deref()
            .map(|branch| format!("refs/heads/{branch}"))
    }

    fn default_branch_checkout(&self) -> Option<Checkout> {
        if !self.has_repository {
            return None;
        }
        Some(Checkout {
            repository: self.identity.clone(),
            fetch_ref: Some(self.default_ref()?),
            sha: None,
        })
    }

    /// The fields every source has.
    fn insert_fields(&self, kind: &str, fields: &mut Map<String, Value>) {
        let identity = &self.identity;
        fields.insert("kind".into(), kind.into());
        fields.insert("host".into(), identity.host.clone().into());
        fields.insert("owner".into(), non_empty(&identity.owner));
        if self.has_repository {
            fields.insert("repository".into(), identity.name.clone().into());
            fields.insert("full_name".into(), identity.full_name().into());
        } else {
            fields.insert("repository".into(), Value::Null);
            fields.insert("full_name".into(), Value::Null);
        }
        fields.insert("default_branch".into(), optional(&self.default_branch));
    }
}

/// What issues and pull requests have in common.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Conversation {
    /// The issue or pull request number.
    pub number: Option<u64>,
    /// Its title.
    pub title: Option<String>,
    /// Its description; `None` when GitHub sent `null` (no description).
    pub body: Option<String>,
    /// Login of its author.
    pub user: Option<String>,
    /// Its web page.
    pub url: Option<String>,
    /// Names of its labels.
    pub labels: Vec<String>,
    /// `open` or `closed`.
    pub state: Option<String>,
    /// Whether its conversation is locked.
    pub locked: Option<bool>,
    /// Logins of its assignees.
    pub assignees: Vec<String>,
    /// Title of its milestone.
    pub milestone: Option<String>,
}

impl Conversation {
    /// Reads an issue or pull request object (as in a payload or from the API).
    pub fn from_object(object: &Value) -> Self {
        Self {
            number: object.get("number").and_then(Value::as_u64),
            title: text(object, "title"),
            body: text(object, "body"),
            user: login_of(object.get("user")),
            url: text(object, "html_url"),
            labels: names(object.get("labels"), "name"),
            state: text(object, "state"),
            locked: object.get("locked").and_then(Value::as_bool),
            assignees: names(object.get("assignees"), "login"),
            milestone: object
                .get("milestone")
                .and_then(|milestone| text(milestone, "title")),
        }
    }

    fn insert_fields(&self, fields: &mut Map<String, Value>) {
        fields.insert(
            "number".into(),
            self.number.map_or(Value::Null, Value::from),
        );
        fields.insert("title".into(), optional(&self.title));
        fields.insert("body".into(), optional(&self.body));
        fields.insert("user".into(), optional(&self.user));
        fields.insert("url".into(), optional(&self.url));
        fields.insert("labels".into(), strings(&self.labels));
        fields.insert("state".into(), optional(&self.state));
        fields.insert(
            "locked".into(),
            self.locked.map_or(Value::Null, Value::Bool),
        );
        fields.insert("assignees".into(), strings(&self.assignees));
        fields.insert("milestone".into(), optional(&self.milestone));
    }
}

/// One end of a pull request: its head or its base.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BranchTip {
    /// The branch name, e.g. `changes`.
    pub branch: Option<String>,
    /// The commit at the tip when the event happened.
    pub sha: Option<String>,
    /// `owner/name` of the repository the branch lives in (`None` when that fork was deleted).
    pub repository: Option<String>,
    /// `owner:branch`.
    pub label: Option<String>,
}

impl BranchTip {
    fn from_object(object: Option<&Value>) -> Self {
        let Some(object) = object else {
            return Self::default();
        };
        Self {
            branch: text(object, "ref"),
            sha: text(object, "sha"),
            repository: object.get("repo").and_then(|repo| text(repo, "full_name")),
            label: text(object, "label"),
        }
    }

    fn to_value(&self) -> Value {
        let mut object = Map::with_capacity(4);
        object.insert("ref".into(), optional(&self.branch));
        object.insert("sha".into(), optional(&self.sha));
        object.insert("repository".into(), optional(&self.repository));
        object.insert("label".into(), optional(&self.label));
        Value::Object(object)
    }
}

/// What a `pull_request` object says that an issue does not: branches, draft and merge state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PullRequestBranches {
    /// The branch being merged.
    pub head: BranchTip,
    /// The branch merged into.
    pub base: BranchTip,
    /// Whether it is a draft.
    pub draft: bool,
    /// Whether it was merged.
    pub merged: bool,
}

impl PullRequestBranches {
    /// Reads a `pull_request` object (as in a payload, or as the API returns it).
    pub fn from_object(pull_request: &Value) -> Self {
        let merged = pull_request
            .get("merged")
            .and_then(Value::as_bool)
            .unwrap_or_else(|| {
                pull_request
                    .get("merged_at")
                    .is_some_and(|at| !at.is_null())
            });
        Self {
            head: BranchTip::from_object(pull_request.get("head")),
            base: BranchTip::from_object(pull_request.get("base")),
            draft: pull_request
                .get("draft")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            merged,
        }
    }

    /// Whether the head branch lives in another repository than the base (a fork, possibly
    /// deleted since).
    pub fn is_fork(&self) -> bool {
        self.head.repository.is_none() || self.head.repository != self.base.repository
    }

    /// Inserts the [deferred](PULL_REQUEST_DEFERRED_FIELDS) fields, plus `fork`.
    pub fn insert_fields(&self, fields: &mut Map<String, Value>) {
        fields.insert("head".into(), self.head.to_value());
        fields.insert("base".into(), self.base.to_value());
        fields.insert("branch".into(), optional(&self.head.branch));
        fields.insert("draft".into(), self.draft.into());
        fields.insert("merged".into(), self.merged.into());
        fields.insert("fork".into(), self.is_fork().into());
    }
}

/// A pull request (kind `pull_request`).
///
/// From `pull_request*` events everything is known. From an `issue_comment` on a pull
/// request the payload only has the issue side: `branches` is `None` and the
/// [`PULL_REQUEST_DEFERRED_FIELDS`] are deferred to
/// [`PullRequestEnricher`](super::PullRequestEnricher).
#[derive(Clone, Debug, PartialEq)]
pub struct PullRequest {
    /// Where it is.
    pub repository: RepositoryInfo,
    /// Number, title, author…
    pub conversation: Conversation,
    /// Branches, draft and merge state; `None` until fetched for a comment event.
    pub branches: Option<PullRequestBranches>,
}

impl PullRequest {
    pub(crate) fn from_pull_request(repository: RepositoryInfo, payload: &Value) -> Self {
        let object = payload.get("pull_request").unwrap_or(&Value::Null);
        let mut conversation = Conversation::from_object(object);
        if conversation.number.is_none() {
            conversation.number = payload.get("number").and_then(Value::as_u64);
        }
        Self {
            repository,
            conversation,
            branches: Some(PullRequestBranches::from_object(object)),
        }
    }

    pub(crate) fn from_issue(repository: RepositoryInfo, issue: &Value) -> Self {
        Self {
            repository,
            conversation: Conversation::from_object(issue),
            branches: None,
        }
    }

    /// `refs/pull/<number>/head`.
    pub fn fetch_ref(&self) -> Option<String> {
        self.conversation
            .number
            .map(|number| format!("refs/pull/{number}/head"))
    }
}

impl Source for PullRequest {
    fn kind(&self) -> &str {
        "pull_request"
    }
    fn repository(&self) -> &Repository {
        &self.repository.identity
    }
    fn fields(&self) -> Value {
        let mut fields = Map::with_capacity(24);
        self.repository.insert_fields(self.kind(), &mut fields);
        self.conversation.insert_fields(&mut fields);
        fields.insert(
            "ref".into(),
            self.fetch_ref().map_or(Value::Null, Value::from),
        );
        if let Some(branches) = &self.branches {
            branches.insert_fields(&mut fields);
        }
        Value::Object(fields)
    }
    fn checkout(&self) -> Option<Checkout> {
        Some(Checkout {
            repository: self.repository.identity.clone(),
            fetch_ref: Some(self.fetch_ref()?),
            sha: self
                .branches
                .as_ref()
                .and_then(|branches| branches.head.sha.clone()),
        })
    }
    fn deferred_fields(&self) -> Vec<String> {
        if self.branches.is_some() {
            return Vec::new();
        }
        PULL_REQUEST_DEFERRED_FIELDS
            .iter()
            .map(|&field| field.to_owned())
            .collect()
    }
}

/// An issue (kind `issue`).
#[derive(Clone, Debug, PartialEq)]
pub struct Issue {
    /// Where it is.
    pub repository: RepositoryInfo,
    /// Number, title, author…
    pub conversation: Conversation,
    /// Whether the issue is a pull request's conversation (GitHub sends `issues.milestoned`
    /// for pull requests too).
    pub is_pull_request: bool,
}

impl Issue {
    pub(crate) fn from_issue(repository: RepositoryInfo, issue: &Value) -> Self {
        Self {
            repository,
            conversation: Conversation::from_object(issue),
            is_pull_request: Self::is_pull_request(issue),
        }
    }

    /// Whether an `issue` object is a pull request's conversation: GitHub then adds a
    /// `pull_request` object of links.
    pub(crate) fn is_pull_request(issue: &Value) -> bool {
        issue.get("pull_request").is_some_and(Value::is_object)
    }
}

impl Source for Issue {
    fn kind(&self) -> &str {
        "issue"
    }
    fn repository(&self) -> &Repository {
        &self.repository.identity
    }
    fn fields(&self) -> Value {
        let mut fields = Map::with_capacity(20);
        self.repository.insert_fields(self.kind(), &mut fields);
        self.conversation.insert_fields(&mut fields);
        fields.insert("pull_request".into(), self.is_pull_request.into());
        insert_default_branch_ref(&self.repository, &mut fields);
        Value::Object(fields)
    }
    fn checkout(&self) -> Option<Checkout> {
        self.repository.default_branch_checkout()
    }
}

/// A commit (kind `commit`): pushed (`push`), or given a status (`status`) or checks
/// (`check_suite`, `check_run`).
#[derive(Clone, Debug, PartialEq)]
pub struct Commit {
    /// Where it is.
    pub repository: RepositoryInfo,
    /// The commit; `None` when a push deleted the ref.
    pub sha: Option<String>,
    /// The full ref, e.g. `refs/heads/main` or `refs/tags/v1`, when known.
    pub git_ref: Option<String>,
    /// Whether the push deleted `git_ref`.
    pub deleted: bool,
    /// The commit's author (login when GitHub knows it, else the git author name).
    pub author: Option<String>,
    /// The commit message.
    pub message: Option<String>,
    /// A web page about the commit (or the check run).
    pub url: Option<String>,
    /// What only this kind of event says (a push's `before`, a status's `state`, a check's
    /// `conclusion`…), documented in `docs/templates.md`.
    pub details: Map<String, Value>,
}

impl Commit {
    pub(crate) fn from_push(repository: RepositoryInfo, payload: &Value) -> Self {
        let after = text(payload, "after");
        let deleted = payload.get("deleted").and_then(Value::as_bool) == Some(true)
            || after.as_deref() == Some(ZERO_SHA);
        let head_commit = payload
            .get("head_commit")
            .filter(|commit| commit.is_object());
        let author = head_commit
            .and_then(|commit| commit.get("author"))
            .and_then(|author| text(author, "username").or_else(|| text(author, "name")));
        let mut details = Map::new();
        copy(payload, "before", &mut details);
        copy(payload, "created", &mut details);
        copy(payload, "forced", &mut details);
        copy(payload, "base_ref", &mut details);
        copy(payload, "compare", &mut details);
        details.insert(
            "pusher".into(),
            payload
                .get("pusher")
                .and_then(|pusher| text(pusher, "name"))
                .map_or(Value::Null, Value::from),
        );
        details.insert(
            "commits".into(),
            payload
                .get("commits")
                .and_then(Value::as_array)
                .map_or(0, Vec::len)
                .into(),
        );
        Self {
            repository,
            sha: if deleted { None } else { after },
            git_ref: text(payload, "ref"),
            deleted,
            author,
            message: head_commit.and_then(|commit| text(commit, "message")),
            url: head_commit
                .and_then(|commit| text(commit, "url"))
                .or_else(|| text(payload, "compare")),
            details,
        }
    }

    pub(crate) fn from_status(repository: RepositoryInfo, payload: &Value) -> Self {
        let sha = text(payload, "sha");
        // `branches` lists every branch containing the commit; only one whose tip *is* the
        // commit is a ref worth fetching.
        let branch_names = names(payload.get("branches"), "name");
        let tip_branch = payload
            .get("branches")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|branch| {
                sha.is_some()
                    && branch
                        .get("commit")
                        .and_then(|commit| commit.get("sha"))
                        .and_then(Value::as_str)
                        == sha.as_deref()
            })
            .and_then(|branch| text(branch, "name"));
        let commit = payload.get("commit").unwrap_or(&Value::Null);
        let git_commit = commit.get("commit").unwrap_or(&Value::Null);
        let author = login_of(commit.get("author")).or_else(|| {
            git_commit
                .get("author")
                .and_then(|author| text(author, "name"))
        });
        let mut details = Map::new();
        copy(payload, "state", &mut details);
        copy(payload, "context", &mut details);
        copy(payload, "description", &mut details);
        copy(payload, "target_url", &mut details);
        details.insert("branches".into(), strings(&branch_names));
        Self {
            repository,
            sha,
            git_ref: tip_branch.map(|branch| format!("refs/heads/{branch}")),
            deleted: false,
            author,
            message: text(git_commit, "message"),
            url: text(commit, "html_url"),
            details,
        }
    }

    pub(crate) fn from_check_suite(repository: RepositoryInfo, payload: &Value) -> Self {
        let suite = payload.get("check_suite").unwrap_or(&Value::Null);
        let mut details = Map::new();
        copy(suite, "status", &mut details);
        copy(suite, "conclusion", &mut details);
        Self::from_check(repository, suite, suite, details, None)
    }

    pub(crate) fn from_check_run(repository: RepositoryInfo, payload: &Value) -> Self {
        let run = payload.get("check_run").unwrap_or(&Value::Null);
        let suite = run.get("check_suite").unwrap_or(&Value::Null);
        let mut details = Map::new();
        copy(run, "name", &mut details);
        copy(run, "status", &mut details);
        copy(run, "conclusion", &mut details);
        copy(run, "details_url", &mut details);
        Self::from_check(repository, run, suite, details, text(run, "html_url"))
    }

    /// A check suite, or a check run and its suite.
    fn from_check(
        repository: RepositoryInfo,
        check: &Value,
        suite: &Value,
        mut details: Map<String, Value>,
        url: Option<String>,
    ) -> Self {
        details.insert(
            "app".into(),
            check
                .get("app")
                .and_then(|app| text(app, "slug").or_else(|| text(app, "name")))
                .map_or(Value::Null, Value::from),
        );
        let pull_requests: Vec<Value> = check
            .get("pull_requests")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|pull| pull.get("number").and_then(Value::as_u64).map(Value::from))
            .collect();
        details.insert("pull_requests".into(), Value::Array(pull_requests));
        let head_commit = suite.get("head_commit").unwrap_or(&Value::Null);
        Self {
            repository,
            sha: text(check, "head_sha"),
            git_ref: text(suite, "head_branch").map(|branch| format!("refs/heads/{branch}")),
            deleted: false,
            author: head_commit
                .get("author")
                .and_then(|author| text(author, "name")),
            message: text(head_commit, "message"),
            url,
            details,
        }
    }

    /// The branch name when `git_ref` is a branch.
    pub fn branch(&self) -> Option<&str> {
        self.git_ref.as_deref()?.strip_prefix("refs/heads/")
    }

    /// The tag name when `git_ref` is a tag.
    pub fn tag(&self) -> Option<&str> {
        self.git_ref.as_deref()?.strip_prefix("refs/tags/")
    }
}

impl Source for Commit {
    fn kind(&self) -> &str {
        "commit"
    }
    fn repository(&self) -> &Repository {
        &self.repository.identity
    }
    fn fields(&self) -> Value {
        let mut fields = Map::with_capacity(16 + self.details.len());
        self.repository.insert_fields(self.kind(), &mut fields);
        fields.insert("sha".into(), optional(&self.sha));
        fields.insert("ref".into(), optional(&self.git_ref));
        fields.insert(
            "branch".into(),
            self.branch().map_or(Value::Null, Value::from),
        );
        fields.insert("tag".into(), self.tag().map_or(Value::Null, Value::from));
        fields.insert("deleted".into(), self.deleted.into());
        fields.insert("author".into(), optional(&self.author));
        fields.insert("message".into(), optional(&self.message));
        fields.insert("url".into(), optional(&self.url));
        for (key, value) in &self.details {
            fields.entry(key.clone()).or_insert_with(|| value.clone());
        }
        Value::Object(fields)
    }
    fn checkout(&self) -> Option<Checkout> {
        if self.deleted {
            return None;
        }
        let sha = self.sha.clone()?;
        Some(Checkout {
            repository: self.repository.identity.clone(),
            fetch_ref: self.git_ref.clone(),
            sha: Some(sha),
        })
    }
}

/// A repository (kind `repository`): the source of every event that is not about a pull
/// request, an issue or a commit (`release`, `create`, `workflow_run`, …). For events about
/// an account (`installation`, an organization's `ping`), `repository` is null in the fields
/// and there is nothing to check out.
#[derive(Clone, Debug, PartialEq)]
pub struct RepositorySource {
    /// The repository.
    pub repository: RepositoryInfo,
}

impl Source for RepositorySource {
    fn kind(&self) -> &str {
        "repository"
    }
    fn repository(&self) -> &Repository {
        &self.repository.identity
    }
    fn fields(&self) -> Value {
        let mut fields = Map::with_capacity(12);
        self.repository.insert_fields(self.kind(), &mut fields);
        fields.insert("url".into(), optional(&self.repository.url));
        fields.insert(
            "private".into(),
            self.repository.private.map_or(Value::Null, Value::Bool),
        );
        insert_default_branch_ref(&self.repository, &mut fields);
        Value::Object(fields)
    }
    fn checkout(&self) -> Option<Checkout> {
        self.repository.default_branch_checkout()
    }
}

fn insert_default_branch_ref(repository: &RepositoryInfo, fields: &mut Map<String, Value>) {
    fields.insert(
        "ref".into(),
        repository.default_ref().map_or(Value::Null, Value::from),
    );
    fields.insert("branch".into(), optional(&repository.default_branch));
}

/// The host of an `http(s)://host[:port]/…` URL, without user info.
pub(crate) fn host_of(url: &str) -> Option<&str> {
    let (_, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    (!host.is_empty()).then_some(host)
}

/// `object[key]` when it is a string.
pub(crate) fn text(object: &Value, key: &str) -> Option<String> {
    object.get(key)?.as_str().map(str::to_owned)
}

/// `user.login`.
pub(crate) fn login_of(user: Option<&Value>) -> Option<String> {
    text(user?, "login")
}

/// `key` of every object in an array (plain strings are taken as they are).
fn names(array: Option<&Value>, key: &str) -> Vec<String> {
    array
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|item| match item {
            Value::String(name) => Some(name.clone()),
            object => text(object, key),
        })
        .collect()
}

fn copy(from: &Value, key: &str, into: &mut Map<String, Value>) {
    into.insert(
        key.to_owned(),
        from.get(key).cloned().unwrap_or(Value::Null),
    );
}

fn optional(value: &Option<String>) -> Value {
    value.clone().map_or(Value::Null, Value::String)
}

fn non_empty(value: &str) -> Value {
    if value.is_empty() {
        Value::Null
    } else {
        Value::String(value.to_owned())
    }
}

fn strings(values: &[String]) -> Value {
    Value::Array(values.iter().cloned().map(Value::String).collect())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn host_of_handles_ports_user_info_and_garbage() {
        assert_eq!(host_of("https://github.com/a/b"), Some("github.com"));
        assert_eq!(
            host_of("https://ghe.example:8443/a/b"),
            Some("ghe.example:8443")
        );
        assert_eq!(host_of("https://user@ghe.example"), Some("ghe.example"));
        assert_eq!(host_of("https://x.io?q=1"), Some("x.io"));
        assert_eq!(host_of("github.com/a/b"), None);
        assert_eq!(host_of("https:///a"), None);
    }

    #[test]
    fn repository_identity_falls_back_to_full_name_and_api_url() {
        let info = RepositoryInfo::from_payload(&json!({
            "repository": {
                "full_name": "octo/widgets",
                "url": "https://ghe.example/api/v3/repos/octo/widgets"
            }
        }));
        assert_eq!(
            info.identity,
            Repository::new("ghe.example", "octo", "widgets")
        );
        assert!(info.has_repository);

        let info = RepositoryInfo::from_payload(&json!({
            "repository": { "full_name": "octo/widgets",
                            "url": "https://api.github.com/repos/octo/widgets" }
        }));
        assert_eq!(info.identity.host, "github.com");
    }

    #[test]
    fn account_events_have_an_owner_and_no_repository() {
        let info = RepositoryInfo::from_payload(&json!({
            "installation": { "id": 1, "account": {
                "login": "octo-org", "html_url": "https://ghe.example/octo-org" } },
            "sender": { "login": "someone" }
        }));
        assert_eq!(
            info.identity,
            Repository::new("ghe.example", "octo-org", "")
        );
        assert!(!info.has_repository);
        let source = RepositorySource { repository: info };
        assert_eq!(source.checkout(), None);
        assert_eq!(source.fields()["repository"], Value::Null);
        assert_eq!(source.fields()["owner"], "octo-org");
    }

    #[test]
    fn a_fork_is_a_head_in_another_or_a_deleted_repository() {
        let same = PullRequestBranches::from_object(&json!({
            "head": { "repo": { "full_name": "a/b" } },
            "base": { "repo": { "full_name": "a/b" } }
        }));
        assert!(!same.is_fork());
        let fork = PullRequestBranches::from_object(&json!({
            "head": { "repo": { "full_name": "c/b" } },
            "base": { "repo": { "full_name": "a/b" } }
        }));
        assert!(fork.is_fork());
        let deleted = PullRequestBranches::from_object(&json!({
            "head": { "repo": null }, "base": { "repo": { "full_name": "a/b" } }
        }));
        assert!(deleted.is_fork());
    }

    #[test]
    fn merged_is_read_from_merged_at_when_merged_is_absent() {
        let pull =
            PullRequestBranches::from_object(&json!({ "merged_at": "2019-05-15T15:20:33Z" }));
        assert!(pull.merged);
        let pull = PullRequestBranches::from_object(&json!({ "merged_at": null }));
        assert!(!pull.merged);
    }
}
