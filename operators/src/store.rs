//! Opening an operator's keyed state store, with a build error that says what to change.

use weir_runtime::context::QueryContext;
use weir_runtime::error::BuildError;
use weir_runtime::state::{StateKey, StateStore, StateValue};

/// Opens the state store of operator `name` on `worker` in the query's state backend; if the
/// backend refuses (e.g. the RocksDB directory is not writable), a build error naming the backend
/// and the operator, before any record is processed.
pub fn open_store<K: StateKey, V: StateValue>(
    ctx: &QueryContext,
    name: &str,
    worker: usize,
) -> Result<StateStore<K, V>, BuildError> {
    ctx.state_backend().open(ctx.id(), name, worker).map_err(|error| {
        BuildError::invalid(
            format!("state backend {} of operator {name}", ctx.state_backend().describe()),
            error.to_string(),
            "check the state directory, or use the memory backend",
        )
    })
}
