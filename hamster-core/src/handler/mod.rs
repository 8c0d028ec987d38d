//! Handlers: the model, loading from YAML with positions, validation and compilation.

mod compile;
mod diagnostic;
mod load;
mod spec;
pub mod yaml;

pub use compile::{CompiledHandler, CompiledStep, EventPattern, RenderError};
pub use diagnostic::{Diagnostic, HandlerErrors};
pub use load::{LoadedHandler, compile_spec, load_file, load_str};
pub use spec::{HandlerSpec, StepSpec};
