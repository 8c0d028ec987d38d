//! Loading handler files and directories given on the command line or in the configuration.

use hamster_core::action::ActionRegistry;
use hamster_core::engine::{Engine, EngineError};
use hamster_core::handler::{Diagnostic, HandlerErrors, LoadedHandler, load_file};
use hamster_core::store::{HandlerRecord, StoreError};
use std::path::{Path, PathBuf};

/// The file extensions read from a handler directory.
const HANDLER_EXTENSIONS: [&str; 3] = ["yml", "yaml", "json"];

/// The handler files named by `paths`: files as given, directories searched recursively for
/// `*.yml`, `*.yaml` and `*.json` (sorted, so that the order is stable).
pub fn handler_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, HandlerErrors> {
    let mut files = Vec::new();
    let mut problems = Vec::new();
    for path in paths {
        if path.is_dir() {
            collect_dir(path, &mut files, &mut problems);
        } else if path.exists() {
            files.push(path.clone());
        } else {
            problems.push(problem(path, "no such file or directory; check the path"));
        }
    }
    if problems.is_empty() {
        Ok(files)
    } else {
        Err(HandlerErrors(problems))
    }
}

fn collect_dir(dir: &Path, files: &mut Vec<PathBuf>, problems: &mut Vec<Diagnostic>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) => {
            problems.push(problem(dir, &format!("cannot read the directory: {error}")));
            return;
        }
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        if path.is_dir() {
            collect_dir(&path, files, problems);
        } else if path
            .extension()
            .and_then(|ext| ext.to_str())
            .is_some_and(|ext| HANDLER_EXTENSIONS.contains(&ext))
        {
            files.push(path);
        }
    }
}

fn problem(path: &Path, message: &str) -> Diagnostic {
    Diagnostic {
        origin: path.display().to_string(),
        position: None,
        pointer: String::new(),
        handler: None,
        message: message.to_owned(),
    }
}

/// Loads and validates every handler in `paths`. All or nothing: every problem in every file
/// is reported, and a handler name used in two files is a problem too.
pub fn load_handlers(
    paths: &[PathBuf],
    registry: &ActionRegistry,
) -> Result<Vec<LoadedHandler>, HandlerErrors> {
    let files = handler_files(paths)?;
    let mut loaded: Vec<(PathBuf, LoadedHandler)> = Vec::new();
    let mut problems = Vec::new();
    for file in &files {
        match load_file(file, registry) {
            Ok(handlers) => loaded.extend(handlers.into_iter().map(|h| (file.clone(), h))),
            Err(errors) => problems.extend(errors.0),
        }
    }
    for (i, (file, handler)) in loaded.iter().enumerate() {
        if let Some((first, _)) = loaded[..i]
            .iter()
            .find(|(other, h)| h.spec.name == handler.spec.name && other != file)
        {
            problems.push(Diagnostic {
                origin: file.display().to_string(),
                position: None,
                pointer: String::new(),
                handler: Some(handler.spec.name.clone()),
                message: format!(
                    "a handler named `{}` is also defined in {}; handler names must be unique",
                    handler.spec.name,
                    first.display()
                ),
            });
        }
    }
    if problems.is_empty() {
        Ok(loaded.into_iter().map(|(_, handler)| handler).collect())
    } else {
        Err(HandlerErrors(problems))
    }
}

/// Stores validated handlers (create, or update by name).
///
/// Several processes may start at once with the same files; a lost race on a name is
/// retried, so that each ends with the handler stored.
pub async fn store_handlers(
    engine: &Engine,
    handlers: Vec<LoadedHandler>,
) -> Result<Vec<HandlerRecord>, EngineError> {
    let mut records = Vec::with_capacity(handlers.len());
    for handler in handlers {
        let mut attempt = 0;
        let record = loop {
            attempt += 1;
            match engine.put_loaded(handler.clone()).await {
                Err(EngineError::Store(
                    StoreError::HandlerExists(_) | StoreError::Conflict { .. },
                )) if attempt < 5 => continue,
                other => break other?,
            }
        };
        records.push(record);
    }
    Ok(records)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const HANDLER: &str = "name: {name}\nevents: [push]\nactions:\n  - action: noop\n";

    #[derive(Debug)]
    struct Noop;

    #[async_trait::async_trait]
    impl hamster_core::action::Action for Noop {
        fn name(&self) -> &str {
            "noop"
        }
        fn validate_args(
            &self,
            _: &serde_json::Value,
        ) -> Result<(), hamster_core::action::ArgsError> {
            Ok(())
        }
        async fn run(
            &self,
            _: serde_json::Value,
            _: &hamster_core::action::ActionContext<'_>,
        ) -> Result<hamster_core::action::ActionOutput, hamster_core::action::ActionError> {
            Ok(hamster_core::action::ActionOutput::success())
        }
    }

    fn registry() -> ActionRegistry {
        let mut registry = ActionRegistry::new();
        registry.register(Noop).unwrap();
        registry
    }

    #[test]
    fn directories_are_searched_recursively_in_order() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("b.yml"), HANDLER.replace("{name}", "b")).unwrap();
        std::fs::write(dir.path().join("a.yaml"), HANDLER.replace("{name}", "a")).unwrap();
        std::fs::write(
            dir.path().join("sub/c.json"),
            r#"{"name":"c","events":["push"],"actions":[{"action":"noop"}]}"#,
        )
        .unwrap();
        std::fs::write(dir.path().join("README.md"), "not a handler").unwrap();
        let loaded = load_handlers(&[dir.path().to_owned()], &registry()).unwrap();
        let names: Vec<_> = loaded.iter().map(|h| h.spec.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
    }

    #[test]
    fn a_name_in_two_files_and_a_missing_path_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yml"), HANDLER.replace("{name}", "same")).unwrap();
        std::fs::write(dir.path().join("b.yml"), HANDLER.replace("{name}", "same")).unwrap();
        let error = load_handlers(&[dir.path().to_owned()], &registry()).unwrap_err();
        assert!(error.to_string().contains("also defined in"), "{error}");
        let error = load_handlers(&[dir.path().join("missing.yml")], &registry()).unwrap_err();
        assert!(error.to_string().contains("no such file"), "{error}");
    }
}
