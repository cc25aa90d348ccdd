//! Standard input read on a background thread, so that a worker never blocks waiting for a line.

use std::io::{self, BufRead};
use std::sync::mpsc::{self, Receiver};

/// How many lines may wait in the channel before the reading thread blocks.
const BUFFERED_LINES: usize = 16 * 1024;

/// Starts a thread that reads stdin line by line (lines keep their terminators) and sends each
/// line, or the error that ended reading. The channel closes at the end of stdin.
pub(crate) fn spawn_line_reader() -> io::Result<Receiver<io::Result<String>>> {
    let (sender, receiver) = mpsc::sync_channel(BUFFERED_LINES);
    std::thread::Builder::new().name("weir-stdin".to_string()).spawn(move || {
        let stdin = io::stdin();
        let mut input = stdin.lock();
        loop {
            let mut line = String::new();
            match input.read_line(&mut line) {
                Ok(0) => break,
                Ok(_) => {
                    if sender.send(Ok(line)).is_err() {
                        break;
                    }
                }
                Err(error) => {
                    let _ = sender.send(Err(error));
                    break;
                }
            }
        }
    })?;
    Ok(receiver)
}
