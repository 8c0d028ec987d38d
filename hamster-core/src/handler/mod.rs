//! Handlers: the model, loading from YAML with positions, validation and compilation.

mod spec;
pub mod yaml;

pub use spec::{HandlerSpec, StepSpec};
