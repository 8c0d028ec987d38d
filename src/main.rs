//! The `hamster` binary: `serve`, `handlers validate`, `replay`, `send`, and the hidden
//! `appserver` and `worker` modes used by the examples and the end-to-end tests.
//!
//! Run `hamster --help`; every option is described in `docs/configuration.md`.

// The process wiring is the library's `hamster::app`, shared with `examples/appserver.rs`
// and `examples/worker.rs`.
use hamster::app;
mod cli;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    cli::Cli::parse().run()
}
