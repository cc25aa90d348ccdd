//! A JSON-lines sink: one `serde_json` line per record, to a file or stdout, epoch by epoch.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::sync::atomic::Ordering;

use serde::de::DeserializeOwned;
use serde::Serialize;
use timely::dataflow::StreamVec;
use weir_runtime::context::QueryContext;
use weir_runtime::error::{BuildError, QueryError};
use weir_runtime::time::EventTime;

use crate::foreach::gather_epochs;

pub mod exactly_once;
pub mod transactional;

/// Where a [`JsonLinesSink`] writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JsonLinesTarget {
    /// The process's standard output.
    Stdout,
    /// A file, created (or truncated) when the dataflow is built.
    File(PathBuf),
}

/// Writes records as JSON lines, gathered to worker 0 and written epoch by epoch in time order
/// once each epoch is complete; flushed after every epoch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JsonLinesSink {
    target: JsonLinesTarget,
    sorted: bool,
}

impl JsonLinesSink {
    /// A sink writing to `target`: `-` for stdout, anything else is a file path.
    pub fn new(target: &str) -> Self {
        let target = if target == "-" { JsonLinesTarget::Stdout } else { JsonLinesTarget::File(PathBuf::from(target)) };
        JsonLinesSink { target, sorted: true }
    }

    /// Whether each epoch's records are sorted before writing (default true), which makes the
    /// output the same whatever the number of workers.
    pub fn sorted(mut self, sorted: bool) -> Self {
        self.sorted = sorted;
        self
    }

    /// Where this sink writes.
    pub fn target(&self) -> &JsonLinesTarget {
        &self.target
    }

    /// Attaches the sink to `stream`, counting rows as sink `name`. Must be called on every worker;
    /// worker 0 creates (truncates) the file now and fails the build if it cannot.
    pub fn write<'scope, D>(
        self,
        stream: StreamVec<'scope, EventTime, D>,
        ctx: &QueryContext,
        name: &str,
    ) -> Result<(), BuildError>
    where
        D: Serialize + DeserializeOwned + Ord + Clone + Send + 'static,
    {
        self.attach(stream, ctx, name, |out, record: &D| serde_json::to_writer(out, record).map_err(io::Error::from))
    }

    /// Like [`JsonLinesSink::write`] for records already rendered as text: each string is written
    /// as it is, as one line (it must not contain a newline).
    pub fn write_lines<'scope>(
        self,
        stream: StreamVec<'scope, EventTime, String>,
        ctx: &QueryContext,
        name: &str,
    ) -> Result<(), BuildError> {
        self.attach(stream, ctx, name, |out, line: &String| out.write_all(line.as_bytes()))
    }

    fn attach<'scope, D>(
        self,
        stream: StreamVec<'scope, EventTime, D>,
        ctx: &QueryContext,
        name: &str,
        encode: fn(&mut dyn Write, &D) -> io::Result<()>,
    ) -> Result<(), BuildError>
    where
        D: Serialize + DeserializeOwned + Ord + Clone + Send + 'static,
    {
        // A dataflow built only to be explained must not create (truncate) the file.
        let mut writer = if stream.scope().index() == 0 && !ctx.is_explaining() { Some(self.open()?) } else { None };
        let target = match &self.target {
            JsonLinesTarget::Stdout => "stdout".to_string(),
            JsonLinesTarget::File(path) => path.display().to_string(),
        };
        let sorted = self.sorted;
        let metrics = ctx.metrics().sink(name);
        let ctx = ctx.clone();
        let sink = name.to_string();
        gather_epochs(stream, name, move |_epoch: EventTime, mut batch: Vec<D>| {
            let Some(out) = writer.as_mut() else { return };
            if sorted {
                batch.sort();
            }
            match write_batch(out.as_mut(), &batch, encode) {
                Ok(()) => {
                    metrics.output_rows.fetch_add(batch.len() as u64, Ordering::Relaxed);
                }
                Err(error) => {
                    metrics.errors.fetch_add(1, Ordering::Relaxed);
                    ctx.fail(QueryError::Sink {
                        sink: sink.clone(),
                        message: format!(
                            "cannot write to {target}: {error}. Check that the target is writable and the disk not full"
                        ),
                    });
                    writer = None;
                }
            }
        });
        Ok(())
    }

    fn open(&self) -> Result<Box<dyn Write>, BuildError> {
        match &self.target {
            JsonLinesTarget::Stdout => Ok(Box::new(BufWriter::new(io::stdout()))),
            JsonLinesTarget::File(path) => match File::create(path) {
                Ok(file) => Ok(Box::new(BufWriter::new(file))),
                Err(error) => Err(BuildError::invalid(
                    format!("JSON-lines sink target {}", path.display()),
                    format!("the file cannot be created: {error}"),
                    "give a path in an existing, writable directory, or - for stdout",
                )),
            },
        }
    }
}

fn write_batch<D>(
    out: &mut dyn Write,
    batch: &[D],
    encode: fn(&mut dyn Write, &D) -> io::Result<()>,
) -> io::Result<()> {
    for record in batch {
        encode(&mut *out, record)?;
        out.write_all(b"\n")?;
    }
    out.flush()
}
