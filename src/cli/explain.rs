//! `weir explain <job> <job flags>`: builds a job's dataflow on one worker without running it and
//! prints its plan (see [`weir_runtime::plan`]): each source, operator and sink, what bounds each
//! operator's state (UNBOUNDED when nothing does), which sources' watermarks it sees, its output
//! mode and its exchanges. `--dot` prints Graphviz instead, `--json` the plan as JSON.

use std::sync::OnceLock;

use anyhow::Result;
use clap::Args;
use weir::prelude::*;

/// How `weir explain` prints the plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExplainFormat {
    /// Readable text.
    Text,
    /// Graphviz DOT.
    Dot,
    /// JSON.
    Json,
}

#[derive(Args, Debug)]
pub struct ExplainArgs {
    /// Print the plan as Graphviz DOT (e.g. `weir explain --dot window-count ... | dot -Tsvg`).
    #[arg(long, global = true)]
    pub dot: bool,
    /// Print the plan as JSON.
    #[arg(long, global = true, conflicts_with = "dot")]
    pub json: bool,
    /// The job to explain, with the flags it would run with.
    #[command(subcommand)]
    pub job: crate::Job,
}

impl ExplainArgs {
    pub fn format(&self) -> ExplainFormat {
        if self.dot {
            ExplainFormat::Dot
        } else if self.json {
            ExplainFormat::Json
        } else {
            ExplainFormat::Text
        }
    }
}

static EXPLAIN: OnceLock<ExplainFormat> = OnceLock::new();

/// From now on, jobs are explained instead of run (see [`super::start_and_wait`]).
pub fn explain_instead_of_running(format: ExplainFormat) {
    let _ = EXPLAIN.set(format);
}

/// The format to explain in, if `weir explain` is running.
pub fn explaining() -> Option<ExplainFormat> {
    EXPLAIN.get().copied()
}

/// Prints the plan of a query started with [`Query::explain_only`].
pub fn print_plan(handle: &QueryHandle, format: ExplainFormat) -> Result<()> {
    let plan = handle.plan().ok_or_else(|| anyhow::anyhow!("the query was not built for explaining"))?;
    match format {
        ExplainFormat::Text => print!("{plan}"),
        ExplainFormat::Dot => print!("{}", plan.dot()),
        ExplainFormat::Json => println!("{}", serde_json::to_string_pretty(&plan)?),
    }
    Ok(())
}
