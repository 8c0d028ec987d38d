//! The `shell_command` arguments: parsed from the args as written (at load time) and as
//! rendered (at run time) by the same code, so both see the same rules.

use hamster_core::action::{ArgPathSegment, ArgsError, RenderMode};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::{Component, Path};

/// The keys `shell_command` takes in its map form.
const KEYS: [&str; 6] = [
    "command",
    "env",
    "pass_env",
    "cwd",
    "checkout",
    "output_limit",
];

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Command {
    /// A script for `bash -c`.
    Script(String),
    /// A program and its arguments, run without a shell.
    Argv(Vec<String>),
}

/// `shell_command`'s arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ShellArgs {
    pub(crate) command: Command,
    pub(crate) env: BTreeMap<String, String>,
    pub(crate) pass_env: Vec<String>,
    pub(crate) cwd: Option<String>,
    pub(crate) checkout: Option<bool>,
    pub(crate) output_limit: Option<usize>,
}

/// How `shell_command` renders the string at `path` in its args: the script of the string
/// form is shell-quoted; argv words, env values and everything else are text.
pub(crate) fn render_mode(path: &[ArgPathSegment]) -> RenderMode {
    match path {
        // `args: 'make test'`, `args: ['make test']`, `args: {command: 'make test'}`.
        [] | [ArgPathSegment::Index(0)] => RenderMode::Shell,
        [ArgPathSegment::Key(key)] if key == "command" => RenderMode::Shell,
        _ => RenderMode::Text,
    }
}

fn error_at(path: Vec<ArgPathSegment>, message: impl Into<String>) -> ArgsError {
    ArgsError {
        path,
        message: message.into(),
    }
}

fn key(name: &str) -> ArgPathSegment {
    ArgPathSegment::Key(name.to_owned())
}

impl ShellArgs {
    /// Parses args, naming the path of the first problem.
    pub(crate) fn parse(args: &Value) -> Result<Self, ArgsError> {
        match args {
            Value::String(_) => Ok(Self::with_command(parse_command(args, Vec::new())?)),
            Value::Array(items) => match items.as_slice() {
                [command] => Ok(Self::with_command(parse_command(
                    command,
                    vec![ArgPathSegment::Index(0)],
                )?)),
                [] => Err(ArgsError::new(
                    "the command is missing: write it as `args: ['make test']`",
                )),
                _ => Err(ArgsError::new(format!(
                    "args has {} items but shell_command takes one command: write a script as one string (`args: ['make test']`) or the words of a command as a list under `command` (`args: {{command: [cargo, test]}}`)",
                    items.len()
                ))),
            },
            Value::Object(map) => Self::parse_map(map),
            Value::Null => Err(ArgsError::new(
                "shell_command needs a command: add `args: ['make test']`",
            )),
            other => Err(ArgsError::new(format!(
                "args must be a command (`['make test']`) or a map with `command`, not {}",
                kind(other)
            ))),
        }
    }

    fn with_command(command: Command) -> Self {
        Self {
            command,
            env: BTreeMap::new(),
            pass_env: Vec::new(),
            cwd: None,
            checkout: None,
            output_limit: None,
        }
    }

    fn parse_map(map: &Map<String, Value>) -> Result<Self, ArgsError> {
        for name in map.keys() {
            if !KEYS.contains(&name.as_str()) {
                let hint = match name.as_str() {
                    "timeout" | "continue_on_failure" => {
                        format!("`{name}` belongs to the step, next to `args`, not inside it")
                    }
                    _ => format!("shell_command takes {}", KEYS.join(", ")),
                };
                return Err(error_at(
                    vec![key(name)],
                    format!("unknown key `{name}`; {hint}"),
                ));
            }
        }
        let Some(command) = map.get("command") else {
            return Err(ArgsError::new(
                "`command` is missing: add `command: make test` (a script) or `command: [cargo, test]` (words)",
            ));
        };
        let mut args = Self::with_command(parse_command(command, vec![key("command")])?);
        if let Some(env) = map.get("env") {
            args.env = parse_env(env)?;
        }
        if let Some(pass_env) = map.get("pass_env") {
            args.pass_env = parse_pass_env(pass_env)?;
        }
        if let Some(cwd) = map.get("cwd") {
            args.cwd = Some(parse_cwd(cwd)?);
        }
        match map.get("checkout") {
            None | Some(Value::Null) => {}
            Some(Value::Bool(checkout)) => args.checkout = Some(*checkout),
            Some(other) => {
                return Err(error_at(
                    vec![key("checkout")],
                    format!("checkout must be true or false, not {}", kind(other)),
                ));
            }
        }
        match map.get("output_limit") {
            None | Some(Value::Null) => {}
            Some(value) => {
                let limit = value
                    .as_u64()
                    .filter(|limit| *limit > 0)
                    .and_then(|limit| usize::try_from(limit).ok())
                    .ok_or_else(|| {
                        error_at(
                            vec![key("output_limit")],
                            format!(
                                "output_limit must be a positive number of bytes (e.g. 1048576), not {}",
                                kind(value)
                            ),
                        )
                    })?;
                args.output_limit = Some(limit);
            }
        }
        Ok(args)
    }
}

fn parse_command(value: &Value, path: Vec<ArgPathSegment>) -> Result<Command, ArgsError> {
    match value {
        Value::String(script) if script.trim().is_empty() => Err(error_at(
            path,
            "the command is empty: write the command to run",
        )),
        Value::String(script) => Ok(Command::Script(script.clone())),
        Value::Array(words) if words.is_empty() => Err(error_at(
            path,
            "the command is an empty list: write the program and its arguments, e.g. [cargo, test]",
        )),
        Value::Array(words) => {
            let mut argv = Vec::with_capacity(words.len());
            for (index, word) in words.iter().enumerate() {
                let mut at = path.clone();
                at.push(ArgPathSegment::Index(index));
                argv.push(word_text(word).ok_or_else(|| {
                    error_at(at.clone(), format!(
                        "each word of the command must be a string, not {}; quote it, or write the command as one string to use a shell",
                        kind(word)
                    ))
                })?);
            }
            if argv[0].is_empty() {
                let mut at = path;
                at.push(ArgPathSegment::Index(0));
                return Err(error_at(at, "the program name is empty"));
            }
            Ok(Command::Argv(argv))
        }
        other => Err(error_at(
            path,
            format!(
                "the command must be a string (a script) or a list of strings (words), not {}",
                kind(other)
            ),
        )),
    }
}

/// A word of an argv command. As written, words are strings; once rendered, a word that
/// was a lone `{{ expression }}` keeps its value's type, so numbers and booleans count too.
fn word_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

fn parse_env(value: &Value) -> Result<BTreeMap<String, String>, ArgsError> {
    let Value::Object(map) = value else {
        return Err(error_at(
            vec![key("env")],
            format!("env must be a map of NAME: value, not {}", kind(value)),
        ));
    };
    let mut env = BTreeMap::new();
    for (name, value) in map {
        let at = || vec![key("env"), key(name)];
        check_env_name(name).map_err(|message| error_at(at(), message))?;
        let text = word_text(value).ok_or_else(|| {
            error_at(
                at(),
                format!("the value of {name} must be a string, not {}", kind(value)),
            )
        })?;
        if text.contains('\0') {
            return Err(error_at(
                at(),
                format!("the value of {name} contains a NUL byte"),
            ));
        }
        env.insert(name.clone(), text);
    }
    Ok(env)
}

fn parse_pass_env(value: &Value) -> Result<Vec<String>, ArgsError> {
    let Value::Array(names) = value else {
        return Err(error_at(
            vec![key("pass_env")],
            format!(
                "pass_env must be a list of variable names, e.g. [CARGO_HOME], not {}",
                kind(value)
            ),
        ));
    };
    names
        .iter()
        .enumerate()
        .map(|(index, name)| {
            let at = || vec![key("pass_env"), ArgPathSegment::Index(index)];
            let Value::String(name) = name else {
                return Err(error_at(
                    at(),
                    format!("a variable name must be a string, not {}", kind(name)),
                ));
            };
            check_env_name(name).map_err(|message| error_at(at(), message))?;
            Ok(name.clone())
        })
        .collect()
}

fn check_env_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("an environment variable name is empty".to_owned());
    }
    if name.contains(['=', '\0']) {
        return Err(format!(
            "`{name}` is not a valid environment variable name (it contains `=` or a NUL byte)"
        ));
    }
    Ok(())
}

fn parse_cwd(value: &Value) -> Result<String, ArgsError> {
    let at = || vec![key("cwd")];
    let Value::String(cwd) = value else {
        return Err(error_at(
            at(),
            format!("cwd must be a relative path, not {}", kind(value)),
        ));
    };
    let path = Path::new(cwd);
    if cwd.is_empty() || cwd.contains('\0') {
        return Err(error_at(at(), "cwd must be a non-empty relative path"));
    }
    if path.is_absolute() {
        return Err(error_at(
            at(),
            format!(
                "cwd `{cwd}` is absolute; commands run inside the checkout, so give a path relative to it"
            ),
        ));
    }
    if path.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(error_at(
            at(),
            format!(
                "cwd `{cwd}` uses `..`; commands run inside the checkout, so give a path below it"
            ),
        ));
    }
    Ok(cwd.clone())
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn error(args: Value) -> ArgsError {
        ShellArgs::parse(&args).expect_err("should be refused")
    }

    #[test]
    fn string_and_list_forms_are_scripts() {
        for args in [
            json!("make test"),
            json!(["make test"]),
            json!({"command": "make test"}),
        ] {
            assert_eq!(
                ShellArgs::parse(&args).expect("valid").command,
                Command::Script("make test".into()),
                "{args}"
            );
        }
    }

    #[test]
    fn argv_form_keeps_words() {
        let args = ShellArgs::parse(&json!({"command": ["cargo", "test", "--all"], "env": {"A": "1", "N": 2}, "pass_env": ["CARGO_HOME"], "cwd": "sub/dir", "checkout": false, "output_limit": 4096}))
            .expect("valid");
        assert_eq!(
            args.command,
            Command::Argv(vec!["cargo".into(), "test".into(), "--all".into()])
        );
        assert_eq!(args.env["N"], "2");
        assert_eq!(args.pass_env, ["CARGO_HOME"]);
        assert_eq!(args.cwd.as_deref(), Some("sub/dir"));
        assert_eq!(args.checkout, Some(false));
        assert_eq!(args.output_limit, Some(4096));
        let nested = ShellArgs::parse(&json!([["ls", "-l"]])).expect("valid");
        assert_eq!(
            nested.command,
            Command::Argv(vec!["ls".into(), "-l".into()])
        );
    }

    #[test]
    fn refuses_what_cannot_work_naming_the_path() {
        let e = error(json!({"command": ["cargo", {"x": 1}]}));
        assert_eq!(e.path, [key("command"), ArgPathSegment::Index(1)]);
        assert!(e.message.contains("must be a string"), "{}", e.message);

        let e = error(json!({"command": "make", "timeout": "5m"}));
        assert_eq!(e.path, [key("timeout")]);
        assert!(e.message.contains("belongs to the step"), "{}", e.message);

        let e = error(json!({"command": "make", "colour": true}));
        assert!(e.message.contains("unknown key `colour`"), "{}", e.message);

        for empty in [
            json!(""),
            json!(["  "]),
            json!({"command": []}),
            json!(null),
            json!([]),
        ] {
            let e = error(empty.clone());
            assert!(
                e.message.contains("empty")
                    || e.message.contains("missing")
                    || e.message.contains("needs"),
                "{empty}: {}",
                e.message
            );
        }
        assert!(
            error(json!({"env": {}}))
                .message
                .contains("`command` is missing")
        );
        assert!(
            error(json!(["a", "b"]))
                .message
                .contains("takes one command")
        );
        assert_eq!(
            error(json!({"command": "x", "cwd": "../up"})).path,
            [key("cwd")]
        );
        assert_eq!(
            error(json!({"command": "x", "cwd": "/etc"})).path,
            [key("cwd")]
        );
        assert_eq!(
            error(json!({"command": "x", "env": {"A=B": "1"}})).path,
            [key("env"), key("A=B")]
        );
        assert_eq!(
            error(json!({"command": "x", "pass_env": "HOME"})).path,
            [key("pass_env")]
        );
        assert_eq!(
            error(json!({"command": "x", "output_limit": 0})).path,
            [key("output_limit")]
        );
        assert_eq!(
            error(json!({"command": "x", "checkout": "yes"})).path,
            [key("checkout")]
        );
    }

    #[test]
    fn only_the_script_is_rendered_for_the_shell() {
        assert_eq!(render_mode(&[]), RenderMode::Shell);
        assert_eq!(render_mode(&[ArgPathSegment::Index(0)]), RenderMode::Shell);
        assert_eq!(render_mode(&[key("command")]), RenderMode::Shell);
        assert_eq!(
            render_mode(&[key("command"), ArgPathSegment::Index(0)]),
            RenderMode::Text
        );
        assert_eq!(
            render_mode(&[ArgPathSegment::Index(0), ArgPathSegment::Index(1)]),
            RenderMode::Text
        );
        assert_eq!(render_mode(&[key("env"), key("A")]), RenderMode::Text);
    }
}
