//! Typed errors of the runtime.

use thiserror::Error;

/// Why a dataflow could not be built: found before any worker starts processing.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BuildError {
    /// A setting is out of range or contradicts another one.
    #[error("invalid {what}: {why}. {fix}")]
    Invalid {
        /// The setting or combination at fault.
        what: String,
        /// What is wrong with it.
        why: String,
        /// What to do instead.
        fix: String,
    },
}

impl BuildError {
    /// Describes an invalid setting: what it is, why it is wrong, and how to fix it.
    pub fn invalid(what: impl Into<String>, why: impl Into<String>, fix: impl Into<String>) -> Self {
        BuildError::Invalid { what: what.into(), why: why.into(), fix: fix.into() }
    }
}

/// Why a running query failed. Carried by [`crate::query::QueryHandle::exception`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum QueryError {
    /// The dataflow was invalid (see [`BuildError`]).
    #[error(transparent)]
    Build(#[from] BuildError),
    /// A source could not read its input.
    #[error("source {source_name}: {message}")]
    Source {
        /// The source that failed.
        source_name: String,
        /// What went wrong, with what was seen.
        message: String,
    },
    /// A sink could not write its output.
    #[error("sink {sink}: {message}")]
    Sink {
        /// The sink that failed.
        sink: String,
        /// What went wrong.
        message: String,
    },
    /// An operator could not read or write its state.
    #[error("state of operator {operator}: {message}")]
    State {
        /// The operator whose state failed.
        operator: String,
        /// What went wrong (the backend's message).
        message: String,
    },
    /// A worker thread panicked or the cluster could not be formed.
    #[error("worker failure: {0}")]
    Worker(String),
}
