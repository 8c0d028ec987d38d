//! `hamster handlers validate PATH...`

use crate::app;
use crate::app::process::{EXIT_FAILED, EXIT_USAGE};
use std::path::PathBuf;
use std::process::ExitCode;

/// Validates the handlers in `paths` against the built-in actions. Prints a summary and
/// exits 0 when they are valid; prints one `file:line:col: message` line per problem and
/// exits 1 otherwise.
pub fn run(paths: &[PathBuf]) -> ExitCode {
    let registry = match app::action_registry() {
        Ok(registry) => registry,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let files = match app::handlers::handler_files(paths) {
        Ok(files) => files,
        Err(errors) => {
            println!("{errors}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    match app::handlers::load_handlers(paths, &registry) {
        Ok(handlers) => {
            for handler in &handlers {
                println!(
                    "ok: {} (on {}; {} step(s))",
                    handler.spec.name,
                    handler.spec.events.join(", "),
                    handler.spec.actions.len()
                );
            }
            println!(
                "{} handler(s) in {} file(s) are valid",
                handlers.len(),
                files.len()
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            println!("{errors}");
            eprintln!(
                "error: {} problem(s) found; nothing is valid until they are fixed",
                errors.0.len()
            );
            ExitCode::from(EXIT_FAILED)
        }
    }
}
