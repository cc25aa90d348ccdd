//! JSON-lines input: one JSON value per line, from files (one partition each) or stdin.
//!
//! The source is bounded: each partition finishes at the end of its file (or of stdin). Blank
//! lines are skipped; a line that does not parse fails the query with its file and line number.

mod reader;
mod stdin;
mod table;

use std::fmt::Debug;
use std::marker::PhantomData;
use std::path::PathBuf;

use serde::de::DeserializeOwned;
use timely::dataflow::Scope;
use weir_runtime::context::QueryContext;
use weir_runtime::error::QueryError;
use weir_runtime::event::EventStream;
use weir_runtime::source::{event_source, Source};
use weir_runtime::time::EventTime;
use weir_runtime::watermark::WatermarkOptions;

pub use reader::JsonLinesReader;
pub use table::read_json_lines;

/// One input of a [`JsonLinesSource`]: a file or the process's standard input.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum JsonLinesInput {
    /// A file, read from the start to its end.
    File(PathBuf),
    /// Standard input, read until it is closed.
    Stdin,
}

impl JsonLinesInput {
    /// How the input is named in errors and positions: the path, or `<stdin>`.
    pub fn name(&self) -> String {
        match self {
            JsonLinesInput::File(path) => path.display().to_string(),
            JsonLinesInput::Stdin => "<stdin>".to_string(),
        }
    }
}

/// A bounded source of `D` records read from JSON-lines files or stdin, one partition per input.
pub struct JsonLinesSource<D> {
    inputs: Vec<JsonLinesInput>,
    records: PhantomData<fn() -> D>,
}

impl<D> Clone for JsonLinesSource<D> {
    fn clone(&self) -> Self {
        JsonLinesSource { inputs: self.inputs.clone(), records: PhantomData }
    }
}

impl<D> Debug for JsonLinesSource<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonLinesSource").field("inputs", &self.inputs).finish()
    }
}

impl<D> JsonLinesSource<D> {
    /// Reads these files, one partition each (partition `i` is `paths[i]`).
    pub fn files(paths: Vec<PathBuf>) -> Self {
        JsonLinesSource { inputs: paths.into_iter().map(JsonLinesInput::File).collect(), records: PhantomData }
    }

    /// Reads standard input as a single partition.
    pub fn stdin() -> Self {
        JsonLinesSource { inputs: vec![JsonLinesInput::Stdin], records: PhantomData }
    }

    /// Reads the file at `path`, or stdin when `path` is `-` (the command-line convention).
    pub fn from_arg(path: &str) -> Self {
        if path == "-" {
            Self::stdin()
        } else {
            Self::files(vec![PathBuf::from(path)])
        }
    }

    /// The inputs, in partition order.
    pub fn inputs(&self) -> &[JsonLinesInput] {
        &self.inputs
    }
}

impl<D: DeserializeOwned + Clone + Debug + 'static> JsonLinesSource<D> {
    /// Runs this source through [`event_source`], reading each record's event time with `time_of`
    /// (`None` when it has none; see [`WatermarkOptions::invalid_time`]).
    pub fn events<'scope>(
        self,
        scope: Scope<'scope, EventTime>,
        ctx: &QueryContext,
        time_of: impl Fn(&D) -> Option<EventTime> + 'static,
        options: WatermarkOptions,
    ) -> EventStream<'scope, D> {
        event_source(scope, ctx, self, time_of, options)
    }
}

impl<D: DeserializeOwned + Clone + Debug + 'static> Source for JsonLinesSource<D> {
    type Record = D;
    type Reader = JsonLinesReader<D>;

    fn description(&self) -> String {
        const SHOWN: usize = 3;
        let mut names: Vec<String> = self.inputs.iter().take(SHOWN).map(JsonLinesInput::name).collect();
        if self.inputs.len() > SHOWN {
            names.push(format!("+{} more", self.inputs.len() - SHOWN));
        }
        format!("JsonLinesSource[{}]", names.join(", "))
    }

    fn partitions(&self) -> usize {
        self.inputs.len()
    }

    fn open(&self, partition: usize) -> Result<JsonLinesReader<D>, QueryError> {
        let input = self.inputs.get(partition).ok_or_else(|| QueryError::Source {
            source_name: self.description(),
            message: format!("there is no partition {partition}: the source has {} inputs", self.inputs.len()),
        })?;
        JsonLinesReader::open(input, self.description())
    }

    /// Resumes at the line [`weir_runtime::source::PartitionReader::position`] reported; see
    /// [`JsonLinesReader`] for the checks (same file, not shorter; stdin only at line 0).
    fn open_at(&self, partition: usize, position: &serde_json::Value) -> Result<JsonLinesReader<D>, QueryError> {
        let input = self.inputs.get(partition).ok_or_else(|| QueryError::Source {
            source_name: self.description(),
            message: format!("there is no partition {partition}: the source has {} inputs", self.inputs.len()),
        })?;
        JsonLinesReader::open_at(input, self.description(), position)
    }
}
