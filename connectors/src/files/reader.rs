//! Reading one JSON-lines input, line by line, up to `max` records per call.

use std::fmt::Debug;
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::marker::PhantomData;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::Duration;

use serde::de::DeserializeOwned;
use weir_runtime::error::QueryError;
use weir_runtime::source::{PartitionReader, ReadStatus};

use super::{stdin, JsonLinesInput};

/// How long to wait before polling stdin again when no line is buffered.
const STDIN_POLL: Duration = Duration::from_millis(10);

/// How many characters of an unreadable line are quoted in the error.
const SNIPPET_CHARS: usize = 80;

/// Where lines come from.
enum Lines {
    File(BufReader<File>),
    Stdin(Receiver<io::Result<String>>),
}

/// What [`Lines::next_line`] found.
enum NextLine {
    Line,
    End,
    Pending,
}

impl Lines {
    fn next_line(&mut self, buffer: &mut String) -> io::Result<NextLine> {
        match self {
            Lines::File(file) => Ok(if file.read_line(buffer)? == 0 { NextLine::End } else { NextLine::Line }),
            Lines::Stdin(receiver) => match receiver.try_recv() {
                Ok(line) => {
                    *buffer = line?;
                    Ok(NextLine::Line)
                }
                Err(TryRecvError::Empty) => Ok(NextLine::Pending),
                Err(TryRecvError::Disconnected) => Ok(NextLine::End),
            },
        }
    }
}

/// Reads one partition of a [`super::JsonLinesSource`]: one file, or stdin.
pub struct JsonLinesReader<D> {
    source_name: String,
    input_name: String,
    lines: Lines,
    /// Lines consumed so far (the 1-based number of the last line read).
    line: u64,
    buffer: String,
    records: PhantomData<fn() -> D>,
}

impl<D> Debug for JsonLinesReader<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonLinesReader").field("input", &self.input_name).field("line", &self.line).finish()
    }
}

impl<D> JsonLinesReader<D> {
    /// Opens `input` for the source described as `source_name` (used in errors).
    pub(crate) fn open(input: &JsonLinesInput, source_name: String) -> Result<Self, QueryError> {
        let lines = match input {
            JsonLinesInput::File(path) => {
                File::open(path).map(|file| Lines::File(BufReader::new(file))).map_err(|error| QueryError::Source {
                    source_name: source_name.clone(),
                    message: format!(
                        "cannot open {}: {error}. Check that the file exists and is readable",
                        path.display()
                    ),
                })?
            }
            JsonLinesInput::Stdin => {
                stdin::spawn_line_reader().map(Lines::Stdin).map_err(|error| QueryError::Source {
                    source_name: source_name.clone(),
                    message: format!("cannot start reading stdin: {error}"),
                })?
            }
        };
        Ok(JsonLinesReader {
            source_name,
            input_name: input.name(),
            lines,
            line: 0,
            buffer: String::new(),
            records: PhantomData,
        })
    }

    /// Opens `input` where [`PartitionReader::position`] reported `position`
    /// (`{"file": name, "line": n}`): the first `n` lines are skipped (read, not parsed). The
    /// file must still be the one checkpointed and at least as long: a file with fewer lines is
    /// an error (it was truncated or replaced), and so is another file's position. Standard input
    /// cannot be read again, so it resumes only at line 0.
    pub(crate) fn open_at(
        input: &JsonLinesInput,
        source_name: String,
        position: &serde_json::Value,
    ) -> Result<Self, QueryError> {
        let fail = |message: String| QueryError::Source { source_name: source_name.clone(), message };
        let name = input.name();
        let (file, line) =
            match (position.get("file").and_then(|f| f.as_str()), position.get("line").and_then(|l| l.as_u64())) {
                (Some(file), Some(line)) => (file, line),
                _ => {
                    return Err(fail(format!(
                "{name} cannot resume at {position}: a JSON-lines position is {{\"file\": path, \"line\": lines read}}"
            )))
                }
            };
        if file != name {
            return Err(fail(format!(
                "{name} cannot resume at {position}: the checkpoint's position belongs to {file}. The inputs must be the same files in the same order as when the checkpoint was written"
            )));
        }
        if *input == JsonLinesInput::Stdin && line > 0 {
            return Err(fail(format!(
                "<stdin> cannot resume at line {line}: standard input cannot be read again. Resume from a file, or start without the checkpoint"
            )));
        }
        let mut reader = Self::open(input, source_name.clone())?;
        if let Lines::File(buffered) = &mut reader.lines {
            let mut skipped = 0u64;
            while skipped < line {
                match buffered.skip_until(b'\n') {
                    Ok(0) => {
                        return Err(fail(format!(
                            "{name} cannot resume at line {line}: it now has only {skipped} lines. The file became shorter since the checkpoint (truncated or replaced); restore it, or start without the checkpoint"
                        )))
                    }
                    Ok(_) => skipped += 1,
                    Err(error) => {
                        return Err(fail(format!("{name}: cannot skip to line {line} to resume: {error}")));
                    }
                }
            }
            reader.line = line;
        }
        Ok(reader)
    }

    fn read_error(&self, error: io::Error) -> QueryError {
        QueryError::Source {
            source_name: self.source_name.clone(),
            message: format!(
                "{}, line {}: cannot read: {error}. The input must be UTF-8 text with one JSON value per line",
                self.input_name,
                self.line + 1
            ),
        }
    }

    fn parse_error(&self, text: &str, error: serde_json::Error) -> QueryError {
        let mut snippet: String = text.chars().take(SNIPPET_CHARS).collect();
        if snippet.len() < text.len() {
            snippet.push('…');
        }
        QueryError::Source {
            source_name: self.source_name.clone(),
            message: format!(
                "{}, line {}: not a valid record: {error}; the line reads {snippet:?}. \
                 Each non-blank line must hold one JSON value of the expected shape: fix or remove this line",
                self.input_name, self.line
            ),
        }
    }
}

impl<D: DeserializeOwned + 'static> PartitionReader for JsonLinesReader<D> {
    type Record = D;

    fn read(&mut self, out: &mut Vec<D>, max: usize) -> Result<ReadStatus, QueryError> {
        let mut produced = 0;
        while produced < max {
            self.buffer.clear();
            match self.lines.next_line(&mut self.buffer) {
                Ok(NextLine::Line) => {}
                Ok(NextLine::End) => return Ok(ReadStatus::Finished),
                Ok(NextLine::Pending) => return Ok(ReadStatus::Wait(STDIN_POLL)),
                Err(error) => return Err(self.read_error(error)),
            }
            self.line += 1;
            let text = self.buffer.trim();
            if text.is_empty() {
                continue;
            }
            match serde_json::from_str::<D>(text) {
                Ok(record) => {
                    out.push(record);
                    produced += 1;
                }
                Err(error) => return Err(self.parse_error(text, error)),
            }
        }
        Ok(ReadStatus::Ready)
    }

    fn position(&self) -> serde_json::Value {
        serde_json::json!({ "file": self.input_name, "line": self.line })
    }
}
