//! Where repositories are fetched from, where their mirrors live, and how to authenticate.

use hamster_core::event::Repository;
use std::fmt;
use std::path::{Path, PathBuf};

/// Environment variable naming the mirror cache directory.
pub const ENV_CACHE_DIR: &str = "HAMSTER_GIT_CACHE_DIR";
/// Environment variable holding a clone URL template (see [`GitConfigBuilder::url_template`]).
pub const ENV_URL_TEMPLATE: &str = "HAMSTER_GIT_URL_TEMPLATE";
/// Environment variable naming the SSH private key; the public key is beside it with `.pub`.
pub const ENV_SSH_KEY: &str = "HAMSTER_GITHUB_SSH_KEY";
/// Environment variable holding the API token used for HTTPS fetches.
pub const ENV_API_TOKEN: &str = "HAMSTER_GITHUB_API_TOKEN";
/// Environment variable holding the user name sent with the API token.
pub const ENV_API_USERNAME: &str = "HAMSTER_GITHUB_API_USERNAME";

/// The mirror cache directory used when [`ENV_CACHE_DIR`] is not set.
pub const DEFAULT_CACHE_DIR: &str = "hamster-git-cache";
/// The SSH private key used when [`ENV_SSH_KEY`] is not set (and only if it exists).
pub const DEFAULT_SSH_KEY: &str = "github.key";
/// The user name sent with the API token when none is configured (GitHub apps and
/// personal access tokens both accept it).
pub const DEFAULT_API_USERNAME: &str = "x-access-token";

const PLACEHOLDERS: [&str; 3] = ["{host}", "{owner}", "{repo}"];

/// Why a [`GitConfig`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum GitConfigError {
    /// The clone URL template uses a placeholder that does not exist.
    #[error(
        "clone URL template {template:?} uses unknown placeholder {placeholder}: only {{host}}, {{owner}} and {{repo}} are supported"
    )]
    UnknownPlaceholder {
        /// The template as configured.
        template: String,
        /// The offending placeholder.
        placeholder: String,
    },
    /// The clone URL template is empty.
    #[error(
        "the clone URL template is empty: set it to e.g. file:///srv/git/{{owner}}/{{repo}}.git or leave it unset"
    )]
    EmptyTemplate,
    /// A configured SSH key file does not exist.
    #[error(
        "SSH {which} key not found at {path}: create the github.key / github.pub pair or point {ENV_SSH_KEY} at the private key"
    )]
    MissingSshKey {
        /// `private` or `public`.
        which: &'static str,
        /// Where it was looked for.
        path: PathBuf,
    },
    /// The API token is empty.
    #[error("{ENV_API_TOKEN} is set but empty: set it to a GitHub token or unset it")]
    EmptyToken,
    /// The cache directory cannot be made absolute.
    #[error("cannot resolve the git cache directory {path}: {source}")]
    CacheDir {
        /// The configured directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// An SSH keypair used for `git@…` and `ssh://…` URLs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SshKeyPair {
    /// The private key file.
    pub private_key: PathBuf,
    /// The public key file.
    pub public_key: PathBuf,
}

impl SshKeyPair {
    /// The pair `<private_key>` / `<private_key>.pub`.
    pub fn beside(private_key: impl Into<PathBuf>) -> Self {
        let private_key = private_key.into();
        let mut public = private_key.clone().into_os_string();
        public.push(".pub");
        Self {
            private_key,
            public_key: PathBuf::from(public),
        }
    }
}

/// A token sent as the password of HTTPS fetches. Its `Debug` output never shows the token.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiToken {
    username: String,
    token: String,
}

impl ApiToken {
    /// The user name sent with the token.
    pub fn username(&self) -> &str {
        &self.username
    }

    /// The token itself; hand it only to git credential callbacks.
    pub fn secret(&self) -> &str {
        &self.token
    }
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiToken")
            .field("username", &self.username)
            .field("token", &hamster_core::redact::REDACTED)
            .finish()
    }
}

/// Configuration of a [`GitMaterializer`](super::GitMaterializer).
#[derive(Clone, Debug)]
pub struct GitConfig {
    cache_dir: PathBuf,
    url_template: Option<String>,
    ssh_key: Option<SshKeyPair>,
    api_token: Option<ApiToken>,
}

impl GitConfig {
    /// Starts a configuration keeping mirrors under `cache_dir`.
    pub fn builder(cache_dir: impl Into<PathBuf>) -> GitConfigBuilder {
        GitConfigBuilder {
            cache_dir: cache_dir.into(),
            url_template: None,
            ssh_key: None,
            api_token: None,
            api_username: None,
        }
    }

    /// Reads the configuration from the environment:
    /// [`ENV_CACHE_DIR`] (default [`DEFAULT_CACHE_DIR`]), [`ENV_URL_TEMPLATE`],
    /// [`ENV_SSH_KEY`] (default [`DEFAULT_SSH_KEY`], used only if that file exists),
    /// [`ENV_API_TOKEN`] and [`ENV_API_USERNAME`] (default [`DEFAULT_API_USERNAME`]).
    pub fn from_env() -> Result<Self, GitConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, GitConfigError> {
        let non_empty = |name: &str| lookup(name).filter(|value| !value.trim().is_empty());
        let cache_dir = non_empty(ENV_CACHE_DIR).unwrap_or_else(|| DEFAULT_CACHE_DIR.to_owned());
        let mut builder = GitConfig::builder(cache_dir);
        if let Some(template) = non_empty(ENV_URL_TEMPLATE) {
            builder = builder.url_template(template);
        }
        match non_empty(ENV_SSH_KEY) {
            // An explicitly configured key must exist: `build` checks it.
            Some(path) => builder = builder.ssh_key(path),
            None if Path::new(DEFAULT_SSH_KEY).is_file() => {
                builder = builder.ssh_key(DEFAULT_SSH_KEY)
            }
            None => {}
        }
        if let Some(token) = lookup(ENV_API_TOKEN) {
            builder = builder.api_token(token);
        }
        if let Some(username) = non_empty(ENV_API_USERNAME) {
            builder = builder.api_username(username);
        }
        builder.build()
    }

    /// The directory holding one bare mirror per repository.
    pub fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }

    /// The clone URL template, if any.
    pub fn url_template(&self) -> Option<&str> {
        self.url_template.as_deref()
    }

    /// The SSH keypair, if any.
    pub fn ssh_key(&self) -> Option<&SshKeyPair> {
        self.ssh_key.as_ref()
    }

    /// The API token for HTTPS fetches, if any.
    pub fn api_token(&self) -> Option<&ApiToken> {
        self.api_token.as_ref()
    }

    /// Where `repository` is fetched from: the template when configured, else its SSH URL
    /// when a key is configured, else its HTTPS URL, else `https://<host>/<owner>/<name>.git`.
    pub fn clone_url(&self, repository: &Repository) -> String {
        if let Some(template) = &self.url_template {
            return template
                .replace("{host}", &repository.host)
                .replace("{owner}", &repository.owner)
                .replace("{repo}", &repository.name);
        }
        if let (Some(_), Some(ssh_url)) = (&self.ssh_key, &repository.ssh_url) {
            return ssh_url.clone();
        }
        repository.clone_url.clone().unwrap_or_else(|| {
            format!(
                "https://{}/{}/{}.git",
                repository.host, repository.owner, repository.name
            )
        })
    }

    /// Where the bare mirror of `repository` lives: `<cache>/<host>/<owner>/<repo>.git`.
    ///
    /// Fails when a name could escape the cache directory (`..`, `/`, …).
    pub(crate) fn mirror_path(&self, repository: &Repository) -> Result<PathBuf, String> {
        for (what, value) in [
            ("host", &repository.host),
            ("owner", &repository.owner),
            ("repository name", &repository.name),
        ] {
            let unsafe_name = value.is_empty()
                || value == "."
                || value == ".."
                || value.contains(['/', '\\', '\0']);
            if unsafe_name {
                return Err(format!(
                    "the {what} {value:?} cannot name a directory in the mirror cache; check the event's repository"
                ));
            }
        }
        Ok(self
            .cache_dir
            .join(&repository.host)
            .join(&repository.owner)
            .join(format!("{}.git", repository.name)))
    }
}

/// Builds a [`GitConfig`]; see [`GitConfig::builder`].
#[derive(Clone, Debug)]
pub struct GitConfigBuilder {
    cache_dir: PathBuf,
    url_template: Option<String>,
    ssh_key: Option<SshKeyPair>,
    api_token: Option<ApiToken>,
    api_username: Option<String>,
}

impl GitConfigBuilder {
    /// Fetches every repository from this URL instead of the forge's, with `{host}`,
    /// `{owner}` and `{repo}` replaced, e.g. `file:///srv/git/{owner}/{repo}.git` for an
    /// air-gapped mirror.
    pub fn url_template(mut self, template: impl Into<String>) -> Self {
        self.url_template = Some(template.into());
        self
    }

    /// Authenticates SSH fetches with this private key and the `.pub` file beside it.
    pub fn ssh_key(mut self, private_key: impl Into<PathBuf>) -> Self {
        self.ssh_key = Some(SshKeyPair::beside(private_key));
        self
    }

    /// Authenticates SSH fetches with this keypair.
    pub fn ssh_keypair(mut self, keypair: SshKeyPair) -> Self {
        self.ssh_key = Some(keypair);
        self
    }

    /// Authenticates HTTPS fetches with this token.
    pub fn api_token(mut self, token: impl Into<String>) -> Self {
        self.api_token = Some(ApiToken {
            username: String::new(),
            token: token.into(),
        });
        self
    }

    /// The user name sent with the API token (default [`DEFAULT_API_USERNAME`]).
    pub fn api_username(mut self, username: impl Into<String>) -> Self {
        self.api_username = Some(username.into());
        self
    }

    /// Checks the configuration and makes the cache directory absolute (checkouts point
    /// at the mirrors' object stores by absolute path).
    pub fn build(self) -> Result<GitConfig, GitConfigError> {
        if let Some(template) = &self.url_template {
            check_template(template)?;
        }
        if let Some(keypair) = &self.ssh_key {
            for (which, path) in [
                ("private", &keypair.private_key),
                ("public", &keypair.public_key),
            ] {
                if !path.is_file() {
                    return Err(GitConfigError::MissingSshKey {
                        which,
                        path: path.clone(),
                    });
                }
            }
        }
        let api_token = match self.api_token {
            Some(token) if token.token.trim().is_empty() => return Err(GitConfigError::EmptyToken),
            Some(token) => Some(ApiToken {
                username: self
                    .api_username
                    .unwrap_or_else(|| DEFAULT_API_USERNAME.to_owned()),
                token: token.token,
            }),
            None => None,
        };
        let cache_dir =
            std::path::absolute(&self.cache_dir).map_err(|source| GitConfigError::CacheDir {
                path: self.cache_dir.clone(),
                source,
            })?;
        Ok(GitConfig {
            cache_dir,
            url_template: self.url_template,
            ssh_key: self.ssh_key,
            api_token,
        })
    }
}

fn check_template(template: &str) -> Result<(), GitConfigError> {
    if template.trim().is_empty() {
        return Err(GitConfigError::EmptyTemplate);
    }
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let after = &rest[start..];
        let end = after.find('}').map_or(after.len(), |end| end + 1);
        let placeholder = &after[..end];
        if !PLACEHOLDERS.contains(&placeholder) {
            return Err(GitConfigError::UnknownPlaceholder {
                template: template.to_owned(),
                placeholder: placeholder.to_owned(),
            });
        }
        rest = &after[end..];
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn repository() -> Repository {
        Repository {
            clone_url: Some("https://github.com/acme/widgets.git".to_owned()),
            ssh_url: Some("git@github.com:acme/widgets.git".to_owned()),
            ..Repository::new("github.com", "acme", "widgets")
        }
    }

    fn keypair(dir: &Path) -> PathBuf {
        let key = dir.join("github.key");
        std::fs::write(&key, "private").unwrap();
        std::fs::write(dir.join("github.key.pub"), "public").unwrap();
        key
    }

    #[test]
    fn template_replaces_every_placeholder() {
        let config = GitConfig::builder("/cache")
            .url_template("file:///srv/{host}/{owner}/{repo}.git")
            .build()
            .unwrap();
        assert_eq!(
            config.clone_url(&repository()),
            "file:///srv/github.com/acme/widgets.git"
        );
    }

    #[test]
    fn unknown_placeholder_is_rejected_with_the_supported_ones() {
        let error = GitConfig::builder("/cache")
            .url_template("file:///srv/{org}/{repo}.git")
            .build()
            .unwrap_err();
        let message = error.to_string();
        assert!(message.contains("{org}"), "{message}");
        assert!(message.contains("{owner}"), "{message}");
    }

    #[test]
    fn https_url_is_used_without_a_key_and_ssh_url_with_one() {
        let without_key = GitConfig::builder("/cache").build().unwrap();
        assert_eq!(
            without_key.clone_url(&repository()),
            "https://github.com/acme/widgets.git"
        );

        let dir = tempfile::tempdir().unwrap();
        let with_key = GitConfig::builder("/cache")
            .ssh_key(keypair(dir.path()))
            .build()
            .unwrap();
        assert_eq!(
            with_key.clone_url(&repository()),
            "git@github.com:acme/widgets.git"
        );
    }

    #[test]
    fn missing_clone_urls_fall_back_to_the_host() {
        let config = GitConfig::builder("/cache").build().unwrap();
        let bare = Repository::new("ghe.example.com", "acme", "widgets");
        assert_eq!(
            config.clone_url(&bare),
            "https://ghe.example.com/acme/widgets.git"
        );
    }

    #[test]
    fn missing_public_key_is_reported_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("github.key");
        std::fs::write(&key, "private").unwrap();
        let error = GitConfig::builder("/cache")
            .ssh_key(&key)
            .build()
            .unwrap_err();
        assert!(
            matches!(&error, GitConfigError::MissingSshKey { which: "public", path } if path.ends_with("github.key.pub")),
            "{error}"
        );
    }

    #[test]
    fn debug_output_never_shows_the_token() {
        let config = GitConfig::builder("/cache")
            .api_token("ghs_supersecret")
            .build()
            .unwrap();
        let debug = format!("{config:?}");
        assert!(!debug.contains("ghs_supersecret"), "{debug}");
        assert!(debug.contains("x-access-token"), "{debug}");
    }

    #[test]
    fn environment_is_read_with_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let key = keypair(dir.path());
        let vars: HashMap<&str, String> = HashMap::from([
            (ENV_CACHE_DIR, "/var/cache/hamster".to_owned()),
            (
                ENV_URL_TEMPLATE,
                "file:///srv/{owner}/{repo}.git".to_owned(),
            ),
            (ENV_SSH_KEY, key.display().to_string()),
            (ENV_API_TOKEN, "ghs_token".to_owned()),
        ]);
        let config = GitConfig::from_lookup(|name| vars.get(name).cloned()).unwrap();
        assert_eq!(config.cache_dir(), Path::new("/var/cache/hamster"));
        assert_eq!(
            config.url_template(),
            Some("file:///srv/{owner}/{repo}.git")
        );
        assert_eq!(config.ssh_key(), Some(&SshKeyPair::beside(&key)));
        let token = config.api_token().unwrap();
        assert_eq!(token.username(), DEFAULT_API_USERNAME);
        assert_eq!(token.secret(), "ghs_token");
    }

    #[test]
    fn explicitly_configured_missing_key_is_an_error() {
        let vars = HashMap::from([(ENV_SSH_KEY, "/nonexistent/github.key".to_owned())]);
        let error = GitConfig::from_lookup(|name| vars.get(name).cloned()).unwrap_err();
        assert!(error.to_string().contains(ENV_SSH_KEY), "{error}");
    }

    #[test]
    fn empty_token_is_an_error() {
        let vars = HashMap::from([(ENV_API_TOKEN, String::new())]);
        assert!(matches!(
            GitConfig::from_lookup(|name| vars.get(name).cloned()),
            Err(GitConfigError::EmptyToken)
        ));
    }

    #[test]
    fn mirror_path_is_per_host_owner_and_repository() {
        let config = GitConfig::builder("/cache").build().unwrap();
        assert_eq!(
            config.mirror_path(&repository()).unwrap(),
            Path::new("/cache/github.com/acme/widgets.git")
        );
    }

    #[test]
    fn dot_github_is_a_valid_repository_name() {
        let config = GitConfig::builder("/cache").build().unwrap();
        let repository = Repository::new("github.com", "acme", ".github");
        assert_eq!(
            config.mirror_path(&repository).unwrap(),
            Path::new("/cache/github.com/acme/.github.git")
        );
    }

    #[test]
    fn names_that_escape_the_cache_are_rejected() {
        let config = GitConfig::builder("/cache").build().unwrap();
        for (owner, name) in [("..", "x"), ("acme", "../etc"), ("a/b", "x"), ("acme", "")] {
            let repository = Repository::new("github.com", owner, name);
            assert!(
                config.mirror_path(&repository).is_err(),
                "{owner}/{name} was accepted"
            );
        }
    }
}
