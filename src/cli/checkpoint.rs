//! `weir checkpoint inspect DIR`: what a checkpoint directory holds, epoch by epoch: each source
//! partition's offset and watermark, whether the epoch is committed, the size of each operator's
//! state and what each sink did with the epoch. `--json` prints the same for machines. A damaged
//! file is reported (which file, what is wrong) with a non-zero exit code.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand};
use weir_runtime::checkpoint::CheckpointReport;

/// The `weir checkpoint` commands.
#[derive(Subcommand, Debug)]
pub enum CheckpointCommand {
    /// Show a checkpoint directory epoch by epoch (offsets per partition, watermarks, commit
    /// status, state size per operator, sink commit status); reads it without changing it.
    Inspect(InspectArgs),
}

/// Flags of `weir checkpoint inspect`.
#[derive(Args, Debug)]
pub struct InspectArgs {
    /// The checkpoint directory.
    pub dir: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs a `weir checkpoint` command.
pub fn run(command: CheckpointCommand) -> Result<()> {
    match command {
        CheckpointCommand::Inspect(args) => {
            let report = CheckpointReport::read(&args.dir)?;
            let text =
                if args.json { format!("{}\n", serde_json::to_string_pretty(&report)?) } else { report.to_string() };
            // A reader that stops early (`| head`) is not an error.
            match std::io::stdout().lock().write_all(text.as_bytes()) {
                Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
                result => Ok(result?),
            }
        }
    }
}
