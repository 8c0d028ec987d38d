//! Validation errors that say where they are and how to fix them.

use super::yaml::Position;
use serde::Serialize;

/// One problem in a handler, with where it was written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// Where the handler came from: a file path, or `<api>` for a request body.
    pub origin: String,
    /// Line and column (1-based) in the origin, when known.
    pub position: Option<Position>,
    /// JSON pointer of the offending value within the document, e.g. `/actions/0/args`.
    pub pointer: String,
    /// The handler's name, when it could be read.
    pub handler: Option<String>,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.position {
            Some(p) => write!(
                f,
                "{}:{}:{}: {}",
                self.origin, p.line, p.column, self.message
            ),
            None if self.pointer.is_empty() => write!(f, "{}: {}", self.origin, self.message),
            None => write!(f, "{} (at {}): {}", self.origin, self.pointer, self.message),
        }
    }
}

/// Every problem found in a handler file; nothing of it was accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct HandlerErrors(pub Vec<Diagnostic>);

impl std::fmt::Display for HandlerErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, diagnostic) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{diagnostic}")?;
        }
        Ok(())
    }
}

/// Suggests the closest of `candidates` to `word`, for "did you mean" hints.
pub(crate) fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}
