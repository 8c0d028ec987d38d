//! `shell_command`: runs a script (through `bash -c`) or a program (without a shell) in the
//! run's checkout.

mod args;
mod capture;
mod process;

use crate::source;
use args::{Command, ShellArgs};
use async_trait::async_trait;
use hamster_core::action::{
    Action, ActionContext, ActionError, ActionOutput, ArgPathSegment, ArgsError, RenderMode,
};
use process::{Limits, Stopped};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Bytes of output kept by default (each of `output`, `stdout`, `stderr`).
pub const DEFAULT_OUTPUT_LIMIT: usize = 1024 * 1024;

/// Timeout used when neither the step nor the engine sets one.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// Variables inherited from the worker's environment by default; a trailing `*` matches a
/// prefix. Everything else (the API token, the webhook secret, database URLs…) is left out
/// unless a step names it in `pass_env`.
pub const DEFAULT_ENV_ALLOWLIST: [&str; 8] = [
    "PATH", "HOME", "LANG", "LC_*", "TERM", "TMPDIR", "USER", "SHELL",
];

/// Worker-wide settings of `shell_command`, registered as a service:
///
/// ```
/// # use hamster_core::services::Services;
/// # use std::sync::Arc;
/// use hamster_actions::ShellConfig;
///
/// let mut services = Services::new();
/// services.insert(Arc::new(
///     ShellConfig::default()
///         .output_limit(4 * 1024 * 1024)
///         .env_allowlist(["PATH", "HOME", "LANG", "LC_*", "CARGO_HOME"]),
/// ));
/// ```
///
/// Without one, the defaults apply.
#[derive(Debug, Clone)]
pub struct ShellConfig {
    output_limit: usize,
    default_timeout: Duration,
    env_allowlist: Vec<String>,
    shell: PathBuf,
}

impl Default for ShellConfig {
    fn default() -> Self {
        Self {
            output_limit: DEFAULT_OUTPUT_LIMIT,
            default_timeout: DEFAULT_TIMEOUT,
            env_allowlist: DEFAULT_ENV_ALLOWLIST.map(str::to_owned).to_vec(),
            shell: PathBuf::from("bash"),
        }
    }
}

impl ShellConfig {
    /// Bytes kept of each of `output`, `stdout` and `stderr` when a step sets no
    /// `output_limit` (default [`DEFAULT_OUTPUT_LIMIT`]). Beyond it the head and the tail
    /// are kept.
    pub fn output_limit(mut self, bytes: usize) -> Self {
        self.output_limit = bytes.max(2);
        self
    }

    /// The timeout applied when the engine gives the step none (default
    /// [`DEFAULT_TIMEOUT`]). A step's `timeout` is enforced by the engine.
    pub fn default_timeout(mut self, timeout: Duration) -> Self {
        self.default_timeout = timeout;
        self
    }

    /// The worker's environment variables commands inherit (default
    /// [`DEFAULT_ENV_ALLOWLIST`]); `NAME_*` matches a prefix.
    pub fn env_allowlist<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.env_allowlist = names.into_iter().map(Into::into).collect();
        self
    }

    /// The shell that runs scripts with `-c` (default `bash`, looked up in `PATH`).
    pub fn shell(mut self, program: impl Into<PathBuf>) -> Self {
        self.shell = program.into();
        self
    }

    fn allows(&self, name: &str) -> bool {
        self.env_allowlist
            .iter()
            .any(|pattern| match pattern.strip_suffix('*') {
                Some(prefix) => name.starts_with(prefix),
                None => name == pattern,
            })
    }
}

/// The `shell_command` action. See `docs/actions.md`.
#[derive(Debug, Default, Clone, Copy)]
pub struct ShellCommand;

impl ShellCommand {
    /// The name handlers use.
    pub const NAME: &'static str = "shell_command";
}

#[async_trait]
impl Action for ShellCommand {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn validate_args(&self, args: &Value) -> Result<(), ArgsError> {
        ShellArgs::parse(args).map(drop)
    }

    fn render_mode(&self, path: &[ArgPathSegment]) -> RenderMode {
        args::render_mode(path)
    }

    async fn run(&self, args: Value, ctx: &ActionContext<'_>) -> Result<ActionOutput, ActionError> {
        let args = ShellArgs::parse(&args).map_err(|error| {
            let path: String = error.path.iter().map(ToString::to_string).collect();
            ActionError::InvalidArgs(format!("args{path}: {}", error.message))
        })?;
        let config = ctx.service::<ShellConfig>().unwrap_or_default();
        let dir = working_dir(&args, ctx).await?;
        let env = environment(&args, &config, ctx);
        let mut command = match &args.command {
            Command::Script(script) => {
                let mut command = tokio::process::Command::new(resolve(&config.shell, &env, &dir));
                command.arg("-c").arg(script);
                command
            }
            Command::Argv(argv) => {
                let mut command =
                    tokio::process::Command::new(resolve(Path::new(&argv[0]), &env, &dir));
                command.args(&argv[1..]);
                command
            }
        };
        command.current_dir(&dir).env_clear().envs(env);
        let limits = Limits {
            output: args.output_limit.unwrap_or(config.output_limit),
            // A step's own timeout is enforced by the engine dropping this future.
            timeout: ctx.timeout.is_none().then_some(config.default_timeout),
        };
        let program = match &args.command {
            Command::Script(_) => config.shell.display().to_string(),
            Command::Argv(argv) => argv[0].clone(),
        };
        tracing::debug!(step = ctx.step, %program, dir = %dir.display(), "running command");
        let started = Instant::now();
        let finished = process::run(command, limits, ctx.log_sink(), ctx.redactor, &ctx.cancel)
            .await
            .map_err(|error| {
                ActionError::failed(ctx.redactor.redact(&spawn_error(&program, &dir, &error)))
            })?;
        let elapsed = started.elapsed();
        let succeeded = finished.exit_code == Some(0) && finished.stopped.is_none();
        let error = match (finished.stopped, finished.exit_code, finished.signal) {
            (Some(Stopped::TimedOut(limit)), _, _) => Some(format!(
                "the command timed out after {}s and was killed",
                limit.as_secs_f64()
            )),
            (Some(Stopped::Cancelled), _, _) => {
                Some("the run was cancelled; the command was killed".to_owned())
            }
            (None, Some(0), _) => None,
            (None, Some(code), _) => Some(format!("the command exited with status {code}")),
            (None, None, Some(signal)) => {
                Some(format!("the command was killed by {}", signal_name(signal)))
            }
            (None, None, None) => Some("the command's exit status is unknown".to_owned()),
        };
        let mut data = Map::new();
        let redact = |text: String| Value::String(ctx.redactor.redact(&text));
        data.insert("output".into(), redact(finished.output));
        data.insert("stdout".into(), redact(finished.stdout));
        data.insert("stderr".into(), redact(finished.stderr));
        data.insert("exit_code".into(), finished.exit_code.into());
        data.insert("signal".into(), finished.signal.map(signal_name).into());
        data.insert(
            "timed_out".into(),
            matches!(finished.stopped, Some(Stopped::TimedOut(_))).into(),
        );
        data.insert(
            "duration_ms".into(),
            u64::try_from(elapsed.as_millis())
                .unwrap_or(u64::MAX)
                .into(),
        );
        if let Some(error) = error {
            data.insert("error".into(), redact(error));
        }
        Ok(ActionOutput {
            outcome: if succeeded {
                hamster_core::action::Outcome::Success
            } else {
                hamster_core::action::Outcome::Failure
            },
            data,
        })
    }
}

fn signal_name(signal: i32) -> String {
    nix::sys::signal::Signal::try_from(signal)
        .map(|s| s.as_str().to_owned())
        .unwrap_or_else(|_| format!("signal {signal}"))
}

fn spawn_error(program: &str, dir: &Path, error: &std::io::Error) -> String {
    match error.kind() {
        std::io::ErrorKind::NotFound => format!(
            "cannot run `{program}`: it was not found in PATH (is it installed on the worker, and is PATH in the shell's env allowlist?)"
        ),
        std::io::ErrorKind::PermissionDenied => {
            format!(
                "cannot run `{program}` in {}: permission denied",
                dir.display()
            )
        }
        _ => format!("cannot run `{program}` in {}: {error}", dir.display()),
    }
}

/// The directory the command runs in: the checkout (materialized now) or the scratch
/// directory, and `cwd` below it.
async fn working_dir(args: &ShellArgs, ctx: &ActionContext<'_>) -> Result<PathBuf, ActionError> {
    let in_checkout = args.checkout.unwrap_or(ctx.event.source.checkout.is_some());
    let base = if in_checkout {
        ctx.workspace().source_dir().await?
    } else {
        ctx.workspace().scratch_dir().await?
    };
    let Some(cwd) = &args.cwd else {
        return Ok(base);
    };
    let where_ = if in_checkout {
        "checkout"
    } else {
        "scratch directory"
    };
    let resolved = tokio::fs::canonicalize(base.join(cwd)).await.map_err(|error| {
        ActionError::failed(format!(
            "cwd `{cwd}` does not exist in the {where_} ({error}); create it in an earlier step or fix the path"
        ))
    })?;
    let root = tokio::fs::canonicalize(&base).await.map_err(|error| {
        ActionError::failed(format!(
            "cannot resolve the {where_} {}: {error}",
            base.display()
        ))
    })?;
    // A symlink in the checkout could point anywhere.
    if !resolved.starts_with(&root) {
        return Err(ActionError::failed(format!(
            "cwd `{cwd}` leads outside the {where_} (through a symlink); give a directory inside it"
        )));
    }
    if !resolved.is_dir() {
        return Err(ActionError::failed(format!(
            "cwd `{cwd}` is not a directory"
        )));
    }
    Ok(resolved)
}

/// The command's environment, from nothing: the allowlisted worker variables and
/// `pass_env`, the event's `HAMSTER_*` variables, the handler's `env`, then the step's.
/// The program's path, looked up in the command's own `PATH` (as `execvp` in the child
/// would) when it is a bare name.
///
/// Why not leave it to the spawn: given a bare name and a changed environment, the standard
/// library forks the worker (copying its page tables, tens of megabytes) instead of using
/// `posix_spawn`, which it does for a path. Measured: the fork was about a tenth of
/// `hamster serve`'s CPU under load. A name not found is left as is, so that the spawn
/// reports it.
fn resolve(program: &Path, env: &[(String, String)], dir: &Path) -> PathBuf {
    if program.components().count() != 1 || program.is_absolute() {
        return program.to_owned();
    }
    let path = env
        .iter()
        .find(|(name, _)| name == "PATH")
        .map(|(_, value)| value.as_str());
    match path {
        Some(path) => {
            which::which_in(program, Some(path), dir).unwrap_or_else(|_| program.to_owned())
        }
        None => program.to_owned(),
    }
}

fn environment(
    args: &ShellArgs,
    config: &ShellConfig,
    ctx: &ActionContext<'_>,
) -> Vec<(String, String)> {
    let mut env: std::collections::BTreeMap<String, String> = std::env::vars_os()
        .filter_map(|(name, value)| Some((name.into_string().ok()?, value.into_string().ok()?)))
        .filter(|(name, _)| config.allows(name))
        .collect();
    for name in &args.pass_env {
        match std::env::var(name) {
            Ok(value) => {
                env.insert(name.clone(), value);
            }
            Err(_) => {
                tracing::debug!(step = ctx.step, variable = %name, "pass_env names a variable the worker does not have");
            }
        }
    }
    let event = ctx.event;
    let mut hamster = vec![
        ("HAMSTER_EVENT", Some(event.name.clone())),
        ("HAMSTER_DELIVERY", event.delivery_id.clone()),
        (
            "HAMSTER_REPOSITORY",
            Some(event.source.repository.full_name()),
        ),
        ("HAMSTER_SHA", source::sha(event)),
        ("HAMSTER_REF", source::git_ref(event)),
        ("HAMSTER_RUN_ID", Some(ctx.run_id.to_string())),
        ("HAMSTER_HANDLER", Some(ctx.handler.to_owned())),
        ("HAMSTER_STEP", Some(ctx.step.to_owned())),
    ];
    if source::is_pull_request(event) {
        hamster.push((
            "HAMSTER_PR_NUMBER",
            source::number(event).map(|n| n.to_string()),
        ));
    }
    for (name, value) in hamster {
        if let Some(value) = value {
            env.insert(name.to_owned(), value);
        }
    }
    env.extend(ctx.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    env.extend(args.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    env.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_names_are_resolved_in_the_commands_own_path() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let make = |dir: &str, name: &str| {
            let dir = root.path().join(dir);
            std::fs::create_dir_all(&dir).unwrap();
            let file = dir.join(name);
            std::fs::write(&file, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).unwrap();
            file
        };
        let first = make("first", "tool");
        make("second", "tool");
        let relative = make("work/bin", "local-tool");
        let path = format!(
            "{}:{}:bin",
            root.path().join("first").display(),
            root.path().join("second").display()
        );
        let env = vec![("PATH".to_owned(), path)];
        let work = root.path().join("work");

        assert_eq!(resolve(Path::new("tool"), &env, &work), first);
        // A relative PATH entry is relative to the command's working directory.
        assert_eq!(resolve(Path::new("local-tool"), &env, &work), relative);
        // Paths and unknown names are left to the spawn.
        assert_eq!(
            resolve(Path::new("./tool"), &env, &work),
            Path::new("./tool")
        );
        assert_eq!(
            resolve(Path::new("/bin/sh"), &env, &work),
            Path::new("/bin/sh")
        );
        assert_eq!(
            resolve(Path::new("missing"), &env, &work),
            Path::new("missing")
        );
        assert_eq!(resolve(Path::new("tool"), &[], &work), Path::new("tool"));
    }

    #[test]
    fn allowlist_matches_names_and_prefixes() {
        let config = ShellConfig::default();
        assert!(config.allows("PATH"));
        assert!(config.allows("LC_ALL"));
        assert!(!config.allows("PATHS"));
        assert!(!config.allows("HAMSTER_GITHUB_API_TOKEN"));
        assert!(!config.allows("DATABASE_URL"));
        let config = config.env_allowlist(["CARGO_*"]);
        assert!(config.allows("CARGO_HOME"));
        assert!(!config.allows("PATH"));
    }
}
