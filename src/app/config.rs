//! Configuration: command-line flags, `HAMSTER_*` environment variables, an optional TOML
//! file and defaults, merged in that order of precedence (flags win).
//!
//! Every option has one name in each layer: the TOML key `x_y` is the environment variable
//! `HAMSTER_X_Y` and (for the options the binary takes as flags) the flag `--x-y`.
//! `docs/configuration.md` lists them all.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The listen address used when none is configured.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// The data directory used when none is configured.
pub const DEFAULT_DATA_DIR: &str = "./hamster-data";
/// The name of the SQLite file inside the data directory.
pub const DATABASE_FILE: &str = "hamster.db";
/// The Redis key prefix used when none is configured.
pub const DEFAULT_REDIS_PREFIX: &str = "hamster";
/// Runs a worker executes at once when not configured.
pub const DEFAULT_WORKERS: usize = 4;

/// Why the configuration could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The configuration file could not be read.
    #[error("cannot read the configuration file {path}: {source}")]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The configuration file is not valid TOML, or has an unknown key or a wrong type.
    #[error("invalid configuration file {path}: {message}")]
    ParseFile {
        /// The file.
        path: PathBuf,
        /// What is wrong (names the key and its position).
        message: String,
    },
    /// An environment variable has a value of the wrong form.
    #[error("invalid value for {variable}: {reason}")]
    InvalidEnv {
        /// The variable's name.
        variable: String,
        /// What is wrong and what is expected.
        reason: String,
    },
    /// An option has a value that cannot be used.
    #[error("invalid {option}: {reason}")]
    Invalid {
        /// The option's name.
        option: &'static str,
        /// What is wrong and what is expected.
        reason: String,
    },
    /// A mode needs an option that is not set.
    #[error("{option} is required for {mode}; set it (see docs/configuration.md)")]
    Missing {
        /// The option, as its environment variable.
        option: &'static str,
        /// What needs it.
        mode: &'static str,
    },
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(format!(
                "unknown log format `{other}`; expected `text` or `json`"
            )),
        }
    }
}

/// One layer of configuration: every option, unset unless this layer sets it.
///
/// It is also the schema of the TOML file: an unknown key is an error naming it.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConfigLayer {
    /// Address the HTTP server listens on.
    pub listen: Option<SocketAddr>,
    /// Directory for the embedded database and the git mirror cache.
    pub data_dir: Option<PathBuf>,
    /// Handler files or directories loaded at startup.
    pub handlers: Option<Vec<PathBuf>>,
    /// Runs a worker executes at once.
    pub workers: Option<usize>,
    /// PostgreSQL URL (appserver and worker modes).
    pub database_url: Option<String>,
    /// PostgreSQL schema holding Hamster's tables.
    pub database_schema: Option<String>,
    /// Most PostgreSQL connections a process opens.
    pub database_max_connections: Option<u32>,
    /// Redis URL (appserver and worker modes).
    pub redis_url: Option<String>,
    /// Prefix of the Redis queue's keys.
    pub redis_prefix: Option<String>,
    /// Secret that signs webhook deliveries (`X-Hub-Signature-256`).
    pub github_webhook_secret: Option<String>,
    /// Bearer tokens accepted by the REST API.
    pub api_token: Option<Vec<String>>,
    /// GitHub API token used by actions and HTTPS fetches.
    pub github_api_token: Option<String>,
    /// User name sent with the token for git over HTTPS.
    pub github_api_username: Option<String>,
    /// GitHub Enterprise Server host.
    pub github_host: Option<String>,
    /// GitHub API base URL (overrides the host; for proxies and tests).
    pub github_api_url: Option<String>,
    /// SSH private key for git fetches over SSH.
    pub github_ssh_key: Option<PathBuf>,
    /// Clone URL template, e.g. `file:///srv/git/{owner}/{repo}.git`.
    pub git_url_template: Option<String>,
    /// Directory of the git mirror cache.
    pub git_cache_dir: Option<PathBuf>,
    /// Hosts reached without a proxy.
    pub no_proxy: Option<String>,
    /// Log filter (`info`, `hamster=debug,sqlx=warn`…).
    pub log: Option<String>,
    /// Log format.
    pub log_format: Option<LogFormat>,
    /// How long a worker leases a job before another worker may take it over.
    #[serde(default, with = "humantime_serde_option")]
    pub worker_lease: Option<Duration>,
    /// On shutdown, how long runs in progress may take to finish before they are released.
    #[serde(default, with = "humantime_serde_option")]
    pub shutdown_grace: Option<Duration>,
}

/// `Option<Duration>` written as a humantime string (`30s`, `2m`) in TOML.
mod humantime_serde_option {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let text = Option::<String>::deserialize(d)?;
        text.map(|text| humantime::parse_duration(&text).map_err(serde::de::Error::custom))
            .transpose()
    }
}

impl ConfigLayer {
    /// Reads a TOML configuration file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text, path)
    }

    /// Parses TOML text; `path` names it in errors.
    pub fn from_toml(text: &str, path: &Path) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|error| ConfigError::ParseFile {
            path: path.to_owned(),
            message: error.to_string().trim_end().to_owned(),
        })
    }

    /// Reads the `HAMSTER_*` variables (and `NO_PROXY`, `RUST_LOG`) through `lookup`.
    /// Empty values count as unset.
    pub fn from_env(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).filter(|value| !value.trim().is_empty());
        fn parse<T: std::str::FromStr>(
            name: &str,
            value: Option<String>,
            expected: &str,
        ) -> Result<Option<T>, ConfigError>
        where
            T::Err: std::fmt::Display,
        {
            value
                .map(|value| {
                    value
                        .trim()
                        .parse()
                        .map_err(|error: T::Err| ConfigError::InvalidEnv {
                            variable: name.to_owned(),
                            reason: format!("{error}; expected {expected}"),
                        })
                })
                .transpose()
        }
        let duration = |name: &str| -> Result<Option<Duration>, ConfigError> {
            get(name)
                .map(|value| {
                    humantime::parse_duration(value.trim()).map_err(|error| {
                        ConfigError::InvalidEnv {
                            variable: name.to_owned(),
                            reason: format!("{error}; expected a duration such as `30s` or `2m`"),
                        }
                    })
                })
                .transpose()
        };
        let list = |name: &str| {
            get(name).map(|value| {
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|item| !item.is_empty())
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
        };
        Ok(Self {
            listen: parse(
                "HAMSTER_LISTEN",
                get("HAMSTER_LISTEN"),
                "an address such as 127.0.0.1:8080",
            )?,
            data_dir: get("HAMSTER_DATA_DIR").map(PathBuf::from),
            handlers: list("HAMSTER_HANDLERS")
                .map(|paths| paths.into_iter().map(PathBuf::from).collect()),
            workers: parse(
                "HAMSTER_WORKERS",
                get("HAMSTER_WORKERS"),
                "a positive number",
            )?,
            database_url: get("HAMSTER_DATABASE_URL"),
            database_schema: get("HAMSTER_DATABASE_SCHEMA"),
            database_max_connections: parse(
                "HAMSTER_DATABASE_MAX_CONNECTIONS",
                get("HAMSTER_DATABASE_MAX_CONNECTIONS"),
                "a positive number",
            )?,
            redis_url: get("HAMSTER_REDIS_URL"),
            redis_prefix: get("HAMSTER_REDIS_PREFIX"),
            github_webhook_secret: get("HAMSTER_GITHUB_WEBHOOK_SECRET"),
            api_token: list("HAMSTER_API_TOKEN"),
            github_api_token: get("HAMSTER_GITHUB_API_TOKEN"),
            github_api_username: get("HAMSTER_GITHUB_API_USERNAME"),
            github_host: get("HAMSTER_GITHUB_HOST"),
            github_api_url: get("HAMSTER_GITHUB_API_URL"),
            github_ssh_key: get("HAMSTER_GITHUB_SSH_KEY").map(PathBuf::from),
            git_url_template: get("HAMSTER_GIT_URL_TEMPLATE"),
            git_cache_dir: get("HAMSTER_GIT_CACHE_DIR").map(PathBuf::from),
            no_proxy: get("NO_PROXY").or_else(|| get("no_proxy")),
            log: get("HAMSTER_LOG").or_else(|| get("RUST_LOG")),
            log_format: parse(
                "HAMSTER_LOG_FORMAT",
                get("HAMSTER_LOG_FORMAT"),
                "`text` or `json`",
            )?,
            worker_lease: duration("HAMSTER_WORKER_LEASE")?,
            shutdown_grace: duration("HAMSTER_SHUTDOWN_GRACE")?,
        })
    }

    /// This layer, with every option it leaves unset taken from `lower`.
    pub fn or(self, lower: Self) -> Self {
        Self {
            listen: self.listen.or(lower.listen),
            data_dir: self.data_dir.or(lower.data_dir),
            handlers: self.handlers.or(lower.handlers),
            workers: self.workers.or(lower.workers),
            database_url: self.database_url.or(lower.database_url),
            database_schema: self.database_schema.or(lower.database_schema),
            database_max_connections: self
                .database_max_connections
                .or(lower.database_max_connections),
            redis_url: self.redis_url.or(lower.redis_url),
            redis_prefix: self.redis_prefix.or(lower.redis_prefix),
            github_webhook_secret: self.github_webhook_secret.or(lower.github_webhook_secret),
            api_token: self.api_token.or(lower.api_token),
            github_api_token: self.github_api_token.or(lower.github_api_token),
            github_api_username: self.github_api_username.or(lower.github_api_username),
            github_host: self.github_host.or(lower.github_host),
            github_api_url: self.github_api_url.or(lower.github_api_url),
            github_ssh_key: self.github_ssh_key.or(lower.github_ssh_key),
            git_url_template: self.git_url_template.or(lower.git_url_template),
            git_cache_dir: self.git_cache_dir.or(lower.git_cache_dir),
            no_proxy: self.no_proxy.or(lower.no_proxy),
            log: self.log.or(lower.log),
            log_format: self.log_format.or(lower.log_format),
            worker_lease: self.worker_lease.or(lower.worker_lease),
            shutdown_grace: self.shutdown_grace.or(lower.shutdown_grace),
        }
    }
}

/// The configuration in effect: every layer merged, defaults applied.
///
/// Secrets are kept out of `Debug`.
#[derive(Clone)]
pub struct Settings {
    /// Address the HTTP server listens on.
    pub listen: SocketAddr,
    /// Directory for the embedded database and the git mirror cache.
    pub data_dir: PathBuf,
    /// Handler files or directories loaded at startup.
    pub handlers: Vec<PathBuf>,
    /// Runs a worker executes at once (at least 1).
    pub workers: usize,
    /// PostgreSQL URL.
    pub database_url: Option<String>,
    /// PostgreSQL schema.
    pub database_schema: Option<String>,
    /// Most PostgreSQL connections this process opens (default 10).
    pub database_max_connections: u32,
    /// Redis URL.
    pub redis_url: Option<String>,
    /// Prefix of the Redis queue's keys.
    pub redis_prefix: String,
    /// Webhook secret; deliveries must be signed with it when set.
    pub webhook_secret: Option<String>,
    /// Bearer tokens accepted by the REST API; none means the API refuses every request.
    pub api_tokens: Vec<String>,
    /// GitHub API token.
    pub github_api_token: Option<String>,
    /// User name sent with the token for git over HTTPS.
    pub github_api_username: Option<String>,
    /// GitHub Enterprise Server host.
    pub github_host: Option<String>,
    /// GitHub API base URL.
    pub github_api_url: Option<String>,
    /// SSH private key for git fetches.
    pub github_ssh_key: Option<PathBuf>,
    /// Clone URL template.
    pub git_url_template: Option<String>,
    /// Directory of the git mirror cache (default: `git` in the data directory).
    pub git_cache_dir: PathBuf,
    /// Hosts reached without a proxy.
    pub no_proxy: Option<String>,
    /// Log filter.
    pub log: String,
    /// Log format.
    pub log_format: LogFormat,
    /// Job lease of workers.
    pub worker_lease: Duration,
    /// Shutdown grace period of workers.
    pub shutdown_grace: Duration,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = |value: bool| if value { "[set]" } else { "[unset]" };
        f.debug_struct("Settings")
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .field("handlers", &self.handlers)
            .field("workers", &self.workers)
            .field("database_url", &set(self.database_url.is_some()))
            .field("database_schema", &self.database_schema)
            .field("database_max_connections", &self.database_max_connections)
            .field("redis_url", &set(self.redis_url.is_some()))
            .field("redis_prefix", &self.redis_prefix)
            .field("webhook_secret", &set(self.webhook_secret.is_some()))
            .field("api_tokens", &self.api_tokens.len())
            .field("github_api_token", &set(self.github_api_token.is_some()))
            .field("github_api_username", &self.github_api_username)
            .field("github_host", &self.github_host)
            .field("github_api_url", &self.github_api_url)
            .field("github_ssh_key", &self.github_ssh_key)
            .field("git_url_template", &self.git_url_template)
            .field("git_cache_dir", &self.git_cache_dir)
            .field("no_proxy", &self.no_proxy)
            .field("log", &self.log)
            .field("log_format", &self.log_format)
            .field("worker_lease", &self.worker_lease)
            .field("shutdown_grace", &self.shutdown_grace)
            .finish()
    }
}

impl Settings {
    /// Merges `flags` over the environment (read through `lookup`) over the configuration
    /// file (`config_file`, else `HAMSTER_CONFIG`) over `defaults` over the built-in
    /// defaults. `defaults` lets a command differ from the servers (a quieter log for
    /// `replay`).
    pub fn resolve(
        flags: ConfigLayer,
        defaults: ConfigLayer,
        config_file: Option<&Path>,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let env = ConfigLayer::from_env(lookup)?;
        let file_path = config_file.map(Path::to_owned).or_else(|| {
            lookup("HAMSTER_CONFIG")
                .filter(|value| !value.trim().is_empty())
                .map(PathBuf::from)
        });
        let file = match &file_path {
            Some(path) => ConfigLayer::from_file(path)?,
            None => ConfigLayer::default(),
        };
        Self::from_layer(flags.or(env).or(file).or(defaults))
    }

    /// [`Settings::resolve`] on the process environment.
    pub fn from_process(
        flags: ConfigLayer,
        defaults: ConfigLayer,
        config_file: Option<&Path>,
    ) -> Result<Self, ConfigError> {
        Self::resolve(flags, defaults, config_file, &|name| {
            std::env::var(name).ok()
        })
    }

    /// Applies the defaults to a merged layer and checks the values.
    pub fn from_layer(layer: ConfigLayer) -> Result<Self, ConfigError> {
        let listen = match layer.listen {
            Some(listen) => listen,
            None => DEFAULT_LISTEN.parse().map_err(|_| ConfigError::Invalid {
                option: "listen",
                reason: "the default address does not parse".to_owned(),
            })?,
        };
        let workers = layer.workers.unwrap_or(DEFAULT_WORKERS);
        if workers == 0 {
            return Err(ConfigError::Invalid {
                option: "workers",
                reason: "it must be at least 1".to_owned(),
            });
        }
        let worker_lease = layer.worker_lease.unwrap_or(Duration::from_secs(30));
        if worker_lease < Duration::from_millis(300) {
            return Err(ConfigError::Invalid {
                option: "worker_lease",
                reason: "it must be at least 300ms (the lease is extended every third of it)"
                    .to_owned(),
            });
        }
        let database_max_connections = layer.database_max_connections.unwrap_or(10);
        if database_max_connections == 0 {
            return Err(ConfigError::Invalid {
                option: "database_max_connections",
                reason: "it must be at least 1".to_owned(),
            });
        }
        let data_dir = layer
            .data_dir
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let git_cache_dir = layer.git_cache_dir.unwrap_or_else(|| data_dir.join("git"));
        Ok(Self {
            listen,
            handlers: layer.handlers.unwrap_or_default(),
            workers,
            database_url: layer.database_url,
            database_schema: layer.database_schema,
            database_max_connections,
            redis_url: layer.redis_url,
            redis_prefix: layer
                .redis_prefix
                .unwrap_or_else(|| DEFAULT_REDIS_PREFIX.to_owned()),
            webhook_secret: layer.github_webhook_secret,
            api_tokens: layer.api_token.unwrap_or_default(),
            github_api_token: layer.github_api_token,
            github_api_username: layer.github_api_username,
            github_host: layer.github_host,
            github_api_url: layer.github_api_url,
            github_ssh_key: layer.github_ssh_key,
            git_url_template: layer.git_url_template,
            git_cache_dir,
            no_proxy: layer.no_proxy,
            log: layer.log.unwrap_or_else(|| "info".to_owned()),
            log_format: layer.log_format.unwrap_or_default(),
            worker_lease,
            shutdown_grace: layer.shutdown_grace.unwrap_or(Duration::from_secs(25)),
            data_dir,
        })
    }

    /// The embedded database file.
    pub fn database_file(&self) -> PathBuf {
        self.data_dir.join(DATABASE_FILE)
    }

    /// Every secret value configured, for the [`Redactor`](hamster_core::redact::Redactor):
    /// tokens, the webhook secret, and the passwords inside the database and Redis URLs.
    pub fn secrets(&self) -> Vec<String> {
        let mut secrets: Vec<String> = self
            .api_tokens
            .iter()
            .cloned()
            .chain(self.webhook_secret.clone())
            .chain(self.github_api_token.clone())
            .collect();
        for url in [&self.database_url, &self.redis_url].into_iter().flatten() {
            if let Some(password) = url_password(url) {
                secrets.push(password);
            }
        }
        secrets
    }
}

/// The password of a `scheme://user:password@host/…` URL, percent-decoded when it can be.
fn url_password(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let userinfo = authority.rsplit_once('@')?.0;
    let password = userinfo.split_once(':')?.1;
    if password.is_empty() {
        return None;
    }
    Some(
        percent_encoding::percent_decode_str(password)
            .decode_utf8_lossy()
            .into_owned(),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn flags_beat_env_beat_file_beat_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("hamster.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:1111\"\nworkers = 7\ndata_dir = \"/from/file\"\nredis_prefix = \"file\"\n",
        )
        .unwrap();
        let flags = ConfigLayer {
            listen: Some("127.0.0.1:3333".parse().unwrap()),
            ..ConfigLayer::default()
        };
        let lookup = env(&[
            ("HAMSTER_LISTEN", "127.0.0.1:2222"),
            ("HAMSTER_WORKERS", "9"),
            ("HAMSTER_CONFIG", file.to_str().unwrap()),
        ]);
        let settings = Settings::resolve(flags, ConfigLayer::default(), None, &lookup).unwrap();
        assert_eq!(settings.listen.port(), 3333, "flag wins");
        assert_eq!(settings.workers, 9, "env beats file");
        assert_eq!(
            settings.data_dir,
            PathBuf::from("/from/file"),
            "file beats default"
        );
        assert_eq!(settings.redis_prefix, "file");
        assert_eq!(settings.git_cache_dir, PathBuf::from("/from/file/git"));
        assert_eq!(settings.log, "info", "default");
    }

    #[test]
    fn unknown_toml_key_is_named() {
        let error = ConfigLayer::from_toml(
            "listen = \"127.0.0.1:1\"\nlisten_port = 3\n",
            Path::new("x.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("listen_port"), "{error}");
        assert!(error.contains("x.toml"), "{error}");
    }

    #[test]
    fn bad_env_value_names_the_variable() {
        let error = ConfigLayer::from_env(&env(&[("HAMSTER_WORKERS", "many")]))
            .unwrap_err()
            .to_string();
        assert!(error.contains("HAMSTER_WORKERS"), "{error}");
        let error = ConfigLayer::from_env(&env(&[("HAMSTER_WORKER_LEASE", "soon")]))
            .unwrap_err()
            .to_string();
        assert!(error.contains("HAMSTER_WORKER_LEASE"), "{error}");
    }

    #[test]
    fn durations_and_lists_parse() {
        let layer = ConfigLayer::from_toml(
            "worker_lease = \"3s\"\napi_token = [\"a\", \"b\"]\nlog_format = \"json\"\n",
            Path::new("x.toml"),
        )
        .unwrap();
        assert_eq!(layer.worker_lease, Some(Duration::from_secs(3)));
        assert_eq!(layer.api_token, Some(vec!["a".to_owned(), "b".to_owned()]));
        assert_eq!(layer.log_format, Some(LogFormat::Json));
        let layer = ConfigLayer::from_env(&env(&[("HAMSTER_API_TOKEN", "one, two")])).unwrap();
        assert_eq!(
            layer.api_token,
            Some(vec!["one".to_owned(), "two".to_owned()])
        );
    }

    #[test]
    fn secrets_include_url_passwords_and_debug_hides_them() {
        let settings = Settings::from_layer(ConfigLayer {
            database_url: Some("postgres://app:p%40ss-word@db:5432/hamster".to_owned()),
            redis_url: Some("redis://:redis-pass@cache:6379/0".to_owned()),
            github_api_token: Some("ghp_token_value".to_owned()),
            github_webhook_secret: Some("hook-secret".to_owned()),
            ..ConfigLayer::default()
        })
        .unwrap();
        let secrets = settings.secrets();
        for expected in ["p@ss-word", "redis-pass", "ghp_token_value", "hook-secret"] {
            assert!(
                secrets.iter().any(|s| s == expected),
                "{expected} in {secrets:?}"
            );
        }
        let debug = format!("{settings:?}");
        for secret in [
            "p%40ss-word",
            "redis-pass",
            "ghp_token_value",
            "hook-secret",
        ] {
            assert!(!debug.contains(secret), "{debug}");
        }
    }

    #[test]
    fn zero_workers_is_refused() {
        let error = Settings::from_layer(ConfigLayer {
            workers: Some(0),
            ..ConfigLayer::default()
        })
        .unwrap_err();
        assert!(error.to_string().contains("workers"));
    }
}
