//! A console sink like Spark's: each epoch printed as a `Batch: N` header and an ASCII table.

mod table;

use std::io::{self, Write};
use std::sync::atomic::Ordering;

use serde::de::DeserializeOwned;
use serde::Serialize;
use timely::dataflow::StreamVec;
use weir_runtime::context::QueryContext;
use weir_runtime::error::{BuildError, QueryError};
use weir_runtime::time::EventTime;

use crate::foreach::gather_epochs;

/// Prints each complete epoch, in time order, as Spark's console sink does: a rule, `Batch: N`
/// (epochs printed so far, from 0), a rule, then a table of at most `num_rows` records whose
/// columns are the keys of each record's JSON object (`value` for non-objects).
pub struct ConsoleSink {
    num_rows: usize,
    truncate: bool,
    writer: Option<Box<dyn Write + Send>>,
}

impl Default for ConsoleSink {
    fn default() -> Self {
        ConsoleSink { num_rows: 20, truncate: true, writer: None }
    }
}

impl std::fmt::Debug for ConsoleSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleSink")
            .field("num_rows", &self.num_rows)
            .field("truncate", &self.truncate)
            .field("to_stdout", &self.writer.is_none())
            .finish()
    }
}

impl ConsoleSink {
    /// A sink printing to stdout, at most 20 rows per epoch, truncating long cells.
    pub fn new() -> Self {
        Self::default()
    }

    /// Prints at most `n` rows per epoch (default 20), then `only showing top n rows`.
    pub fn num_rows(mut self, n: usize) -> Self {
        self.num_rows = n;
        self
    }

    /// Whether cells longer than 20 characters are cut to 17 and `...` (default true).
    pub fn truncate(mut self, truncate: bool) -> Self {
        self.truncate = truncate;
        self
    }

    /// Prints to `writer` instead of stdout (for tests, or to capture the output).
    pub fn to_writer(mut self, writer: Box<dyn Write + Send>) -> Self {
        self.writer = Some(writer);
        self
    }

    /// Attaches the sink to `stream`, counting rows as sink `name`. Must be called on every
    /// worker; records are gathered to worker 0, which prints each epoch sorted.
    pub fn write<'scope, D>(
        self,
        stream: StreamVec<'scope, EventTime, D>,
        ctx: &QueryContext,
        name: &str,
    ) -> Result<(), BuildError>
    where
        D: Serialize + DeserializeOwned + Ord + Clone + Send + 'static,
    {
        if self.num_rows == 0 {
            return Err(BuildError::invalid(
                "console sink numRows",
                "0 rows would print empty tables",
                "use a positive number of rows",
            ));
        }
        let (num_rows, truncate) = (self.num_rows, self.truncate);
        let mut writer: Option<Box<dyn Write + Send>> = if stream.scope().index() == 0 {
            Some(self.writer.unwrap_or_else(|| Box::new(io::stdout())))
        } else {
            None
        };
        let metrics = ctx.metrics().sink(name);
        let ctx = ctx.clone();
        let sink = name.to_string();
        let mut batch_id = 0u64;
        gather_epochs(stream, name, move |_epoch: EventTime, mut batch: Vec<D>| {
            let Some(out) = writer.as_mut() else { return };
            batch.sort();
            let shown = &batch[..batch.len().min(num_rows)];
            let result = render(batch_id, shown, batch.len() > num_rows, truncate)
                .map_err(|error| format!("cannot render a record as JSON: {error}"))
                .and_then(|text| {
                    out.write_all(text.as_bytes())
                        .and_then(|()| out.flush())
                        .map_err(|error| format!("cannot write to the console: {error}"))
                });
            match result {
                Ok(()) => {
                    batch_id += 1;
                    metrics.output_rows.fetch_add(batch.len() as u64, Ordering::Relaxed);
                }
                Err(message) => {
                    metrics.errors.fetch_add(1, Ordering::Relaxed);
                    ctx.fail(QueryError::Sink { sink: sink.clone(), message });
                    writer = None;
                }
            }
        });
        Ok(())
    }
}

fn render<D: Serialize>(batch_id: u64, rows: &[D], more: bool, truncate: bool) -> serde_json::Result<String> {
    let fields = rows
        .iter()
        .map(|row| serde_json::to_string(row).and_then(|json| table::fields_of(&json)))
        .collect::<serde_json::Result<Vec<_>>>()?;
    Ok(table::render_batch(batch_id, &fields, more, truncate))
}
