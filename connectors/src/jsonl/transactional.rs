//! The file mechanics of an exactly-once JSON-lines sink: each worker writes each epoch's output
//! to a pending file, and the epoch becomes visible by an atomic rename once the checkpoint has
//! committed it.
//!
//! ```text
//! <dir>/.pending/part-000000000007-0001.jsonl   epoch 7 of worker 1: durable, not visible yet
//! <dir>/part-000000000006-0001.jsonl            epoch 6 of worker 1: committed
//! ```
//!
//! The protocol (see `docs/checkpoints.md`): when a worker's sink input frontier passes the end
//! of epoch `N`, it [`prepare`](TransactionalJsonLinesDir::prepare)s the epoch's lines (written
//! and fsynced); once every prepared file, state snapshot and offset of `N` is durable, the
//! checkpoint writes `commits/N`, and each worker then [`commit`](TransactionalJsonLinesDir::commit)s
//! its file of epoch `N` (a rename, then an fsync of the directory). A crash can strike between
//! any two steps, so on restart [`recover`](TransactionalJsonLinesDir::recover) resolves what
//! is left with the checkpoint's last committed epoch: pending files of epochs up to it are
//! renamed (rolled forward: the checkpoint promised them), later ones deleted (rolled back: the
//! restarted query writes them again from the replayed input).
//!
//! Epoch and worker numbers in file names are zero-padded (12 and 4 digits) so that `ls` and
//! `cat part-*` list the output in epoch order. Readers of the directory should ignore
//! `.pending/`.
//!
//! ```
//! use weir_connectors::jsonl::transactional::TransactionalJsonLinesDir;
//!
//! let dir = std::env::temp_dir().join(format!("weir-doc-txn-{}", std::process::id()));
//! # let _ = std::fs::remove_dir_all(&dir);
//! let out = TransactionalJsonLinesDir::open(&dir).unwrap();
//! out.prepare(0, 0, ["{\"n\":1}", "{\"n\":2}"]).unwrap();
//! out.prepare(1, 0, ["{\"n\":3}"]).unwrap();
//! out.commit(0, 0).unwrap();
//! // A crash here, and a restart whose checkpoint last committed epoch 0:
//! let report = out.recover(Some(0)).unwrap();
//! assert_eq!(report.rolled_back, vec![(1, 0)]);
//! assert_eq!(out.committed_lines().unwrap(), vec!["{\"n\":1}", "{\"n\":2}"]);
//! # std::fs::remove_dir_all(&dir).unwrap();
//! ```

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use thiserror::Error;

const PENDING: &str = ".pending";

/// Why the exactly-once file sink cannot do what it was asked.
#[derive(Debug, Error)]
pub enum TransactionalFileError {
    /// The operating system refused a read, write, rename or fsync.
    #[error("exactly-once JSON-lines sink: {action} {path}: {cause}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        cause: io::Error,
    },
    /// An epoch that is already committed cannot be prepared again (its output is visible).
    #[error(
        "exactly-once JSON-lines sink: epoch {epoch} of worker {worker} is already committed ({path}); \
         it cannot be written again"
    )]
    AlreadyCommitted {
        /// The epoch.
        epoch: u64,
        /// The worker.
        worker: usize,
        /// The committed file.
        path: PathBuf,
    },
    /// The output directory holds committed files of epochs the checkpoint never committed:
    /// it belongs to another run or checkpoint (e.g. the checkpoint was reset).
    #[error(
        "exactly-once JSON-lines sink: {dir} holds committed output of epoch(s) after the checkpoint's last \
         committed epoch ({last}): {files}. The directory belongs to another run or checkpoint; move those \
         files away or give an empty output directory (after --reset-checkpoint the output directory must be \
         emptied too)",
        last = .last_committed.map_or("none".to_string(), |e| e.to_string()),
        files = .files.join(", ")
    )]
    OutputAhead {
        /// The output directory.
        dir: PathBuf,
        /// The checkpoint's last committed epoch.
        last_committed: Option<u64>,
        /// The offending files.
        files: Vec<String>,
    },
}

fn io_error<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> TransactionalFileError + 'a {
    move |cause| TransactionalFileError::Io { action, path: path.to_path_buf(), cause }
}

/// What [`TransactionalJsonLinesDir::commit`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommitOutcome {
    /// The pending file was renamed: the epoch is now visible.
    Committed,
    /// There was no pending file but the committed file exists (a commit before a crash did it).
    AlreadyCommitted,
    /// Neither exists: the worker prepared nothing for this epoch.
    NothingPending,
}

/// What [`TransactionalJsonLinesDir::recover`] did, as `(epoch, worker)` pairs in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Pending files of committed epochs, renamed into place.
    pub rolled_forward: Vec<(u64, usize)>,
    /// Pending files of uncommitted epochs, deleted.
    pub rolled_back: Vec<(u64, usize)>,
}

/// What [`TransactionalJsonLinesDir::prepare`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreparedEpoch {
    /// The pending file.
    pub path: PathBuf,
    /// Lines written.
    pub lines: u64,
    /// Bytes written.
    pub bytes: u64,
}

/// The output directory of an exactly-once JSON-lines sink (see the [module docs](self)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransactionalJsonLinesDir {
    dir: PathBuf,
}

impl TransactionalJsonLinesDir {
    /// Opens (creating if needed) the output directory `dir` and its `.pending/` directory.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, TransactionalFileError> {
        let dir = dir.as_ref().to_path_buf();
        let pending = dir.join(PENDING);
        fs::create_dir_all(&pending).map_err(io_error("cannot create directory", &pending))?;
        sync_dir(&dir)?;
        Ok(TransactionalJsonLinesDir { dir })
    }

    /// The output directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// `<dir>/.pending/part-<epoch>-<worker>.jsonl`.
    pub fn pending_path(&self, epoch: u64, worker: usize) -> PathBuf {
        self.dir.join(PENDING).join(file_name(epoch, worker))
    }

    /// `<dir>/part-<epoch>-<worker>.jsonl`.
    pub fn committed_path(&self, epoch: u64, worker: usize) -> PathBuf {
        self.dir.join(file_name(epoch, worker))
    }

    /// Writes the output of `epoch` on `worker` to its pending file (replacing any earlier
    /// attempt), one line per item, and makes it durable (fsync of the file and of `.pending/`).
    /// Lines must not contain newlines. Fails if the epoch is already committed for this worker.
    pub fn prepare<I>(&self, epoch: u64, worker: usize, lines: I) -> Result<PreparedEpoch, TransactionalFileError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let committed = self.committed_path(epoch, worker);
        if committed.exists() {
            return Err(TransactionalFileError::AlreadyCommitted { epoch, worker, path: committed });
        }
        let path = self.pending_path(epoch, worker);
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(io_error("cannot create", &path))?;
        let mut out = BufWriter::new(file);
        let (mut count, mut bytes) = (0u64, 0u64);
        for line in lines {
            let line = line.as_ref();
            out.write_all(line.as_bytes())
                .and_then(|_| out.write_all(b"\n"))
                .map_err(io_error("cannot write", &path))?;
            count += 1;
            bytes += line.len() as u64 + 1;
        }
        let file = out.into_inner().map_err(|e| io_error("cannot write", &path)(e.into_error()))?;
        file.sync_all().map_err(io_error("cannot fsync", &path))?;
        sync_dir(&self.dir.join(PENDING))?;
        Ok(PreparedEpoch { path, lines: count, bytes })
    }

    /// Makes the output of `epoch` on `worker` visible: renames its pending file into the output
    /// directory and fsyncs the directory. Call it only once the checkpoint has committed the
    /// epoch. Idempotent: a second call finds the file committed.
    pub fn commit(&self, epoch: u64, worker: usize) -> Result<CommitOutcome, TransactionalFileError> {
        let pending = self.pending_path(epoch, worker);
        let committed = self.committed_path(epoch, worker);
        if !pending.exists() {
            return Ok(if committed.exists() {
                CommitOutcome::AlreadyCommitted
            } else {
                CommitOutcome::NothingPending
            });
        }
        fs::rename(&pending, &committed).map_err(io_error("cannot rename into place", &pending))?;
        sync_dir(&self.dir)?;
        Ok(CommitOutcome::Committed)
    }

    /// Resolves the pending files after a restart, given the checkpoint's last committed epoch:
    /// those of epochs `<= last_committed` are renamed into place (rolled forward), the others
    /// deleted (rolled back). Fails, changing nothing, if committed files of later epochs exist
    /// ([`TransactionalFileError::OutputAhead`]). Running it again changes nothing.
    pub fn recover(&self, last_committed: Option<u64>) -> Result<RecoveryReport, TransactionalFileError> {
        let is_committed = |epoch: u64| last_committed.is_some_and(|last| epoch <= last);
        let ahead: Vec<String> = list_parts(&self.dir)?
            .into_iter()
            .filter(|&(epoch, worker)| !is_committed(epoch) && !self.pending_path(epoch, worker).exists())
            .map(|(epoch, worker)| file_name(epoch, worker))
            .collect();
        if !ahead.is_empty() {
            return Err(TransactionalFileError::OutputAhead { dir: self.dir.clone(), last_committed, files: ahead });
        }
        let mut report = RecoveryReport::default();
        for (epoch, worker) in list_parts(&self.dir.join(PENDING))? {
            let pending = self.pending_path(epoch, worker);
            if is_committed(epoch) {
                fs::rename(&pending, self.committed_path(epoch, worker))
                    .map_err(io_error("cannot roll forward (rename into place)", &pending))?;
                report.rolled_forward.push((epoch, worker));
            } else {
                fs::remove_file(&pending).map_err(io_error("cannot roll back (delete)", &pending))?;
                report.rolled_back.push((epoch, worker));
            }
        }
        if !report.rolled_forward.is_empty() {
            sync_dir(&self.dir)?;
        }
        if !report.rolled_back.is_empty() || !report.rolled_forward.is_empty() {
            sync_dir(&self.dir.join(PENDING))?;
        }
        Ok(report)
    }

    /// The committed files as `(epoch, worker)`, in epoch then worker order.
    pub fn committed_parts(&self) -> Result<Vec<(u64, usize)>, TransactionalFileError> {
        list_parts(&self.dir)
    }

    /// The pending files as `(epoch, worker)`, in epoch then worker order.
    pub fn pending_parts(&self) -> Result<Vec<(u64, usize)>, TransactionalFileError> {
        list_parts(&self.dir.join(PENDING))
    }

    /// Every committed line, in epoch then worker order (what a reader of the output sees).
    pub fn committed_lines(&self) -> Result<Vec<String>, TransactionalFileError> {
        let mut lines = Vec::new();
        for (epoch, worker) in self.committed_parts()? {
            let path = self.committed_path(epoch, worker);
            let file = File::open(&path).map_err(io_error("cannot open", &path))?;
            for line in BufReader::new(file).lines() {
                lines.push(line.map_err(io_error("cannot read", &path))?);
            }
        }
        Ok(lines)
    }
}

fn file_name(epoch: u64, worker: usize) -> String {
    format!("part-{epoch:012}-{worker:04}.jsonl")
}

/// Parses `part-<epoch>-<worker>.jsonl` (any number of digits).
fn parse_file_name(name: &str) -> Option<(u64, usize)> {
    let rest = name.strip_prefix("part-")?.strip_suffix(".jsonl")?;
    let (epoch, worker) = rest.split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(epoch) || !digits(worker) {
        return None;
    }
    Some((epoch.parse().ok()?, worker.parse().ok()?))
}

/// The `part-*.jsonl` files directly in `dir`, sorted by epoch and worker.
fn list_parts(dir: &Path) -> Result<Vec<(u64, usize)>, TransactionalFileError> {
    let mut parts = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_error("cannot list", dir))? {
        let entry = entry.map_err(io_error("cannot list", dir))?;
        if let Some(part) = parse_file_name(&entry.file_name().to_string_lossy()) {
            if entry.file_type().map_err(io_error("cannot list", dir))?.is_file() {
                parts.push(part);
            }
        }
    }
    parts.sort_unstable();
    Ok(parts)
}

fn sync_dir(dir: &Path) -> Result<(), TransactionalFileError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_error("cannot fsync directory", dir))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    fn scratch(name: &str) -> PathBuf {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "weir-txn-jsonl-{name}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    /// The deterministic output of `epoch` on `worker` (what a replay produces again).
    fn lines_of(epoch: u64, worker: usize) -> Vec<String> {
        (0..(epoch as usize + worker) % 3 + 1)
            .map(|i| format!("{{\"epoch\":{epoch},\"worker\":{worker},\"i\":{i}}}"))
            .collect()
    }

    fn read(path: &Path) -> Vec<String> {
        fs::read_to_string(path).unwrap().lines().map(String::from).collect()
    }

    #[test]
    fn a_crash_between_workers_renames_is_rolled_forward_and_later_epochs_back() {
        let path = scratch("crash");
        let out = TransactionalJsonLinesDir::open(&path).unwrap();
        let workers = 3;
        for epoch in 1..=3 {
            for worker in 0..workers {
                let prepared = out.prepare(epoch, worker, lines_of(epoch, worker)).unwrap();
                assert_eq!(prepared.lines as usize, lines_of(epoch, worker).len());
                assert_eq!(prepared.path, path.join(".pending").join(format!("part-{epoch:012}-{worker:04}.jsonl")));
            }
        }
        // The checkpoint committed epochs 1 and 2. Every worker committed epoch 1; of epoch 2 only
        // worker 0 had renamed its file when the process was killed.
        for worker in 0..workers {
            assert_eq!(out.commit(1, worker).unwrap(), CommitOutcome::Committed);
        }
        assert_eq!(out.commit(2, 0).unwrap(), CommitOutcome::Committed);
        // Half a line of epoch 4 was being written at the moment of the crash.
        fs::write(out.pending_path(4, 1), b"{\"epoch\":4,\"wor").unwrap();
        assert_eq!(out.committed_parts().unwrap(), vec![(1, 0), (1, 1), (1, 2), (2, 0)]);

        let report = out.recover(Some(2)).unwrap();
        assert_eq!(report.rolled_forward, vec![(2, 1), (2, 2)]);
        assert_eq!(report.rolled_back, vec![(3, 0), (3, 1), (3, 2), (4, 1)]);
        assert!(out.pending_parts().unwrap().is_empty());
        let expected: Vec<(u64, usize)> = (1..=2).flat_map(|e| (0..workers).map(move |w| (e, w))).collect();
        assert_eq!(out.committed_parts().unwrap(), expected);
        for &(epoch, worker) in &expected {
            assert_eq!(
                read(&out.committed_path(epoch, worker)),
                lines_of(epoch, worker),
                "epoch {epoch} worker {worker}"
            );
        }
        // Recovery again (a crash during recovery, then another restart) changes nothing.
        assert_eq!(out.recover(Some(2)).unwrap(), RecoveryReport::default());
        // The restarted query replays epoch 3 and commits it.
        for worker in 0..workers {
            out.prepare(3, worker, lines_of(3, worker)).unwrap();
            assert_eq!(out.commit(3, worker).unwrap(), CommitOutcome::Committed);
            assert_eq!(out.commit(3, worker).unwrap(), CommitOutcome::AlreadyCommitted);
        }
        assert_eq!(out.commit(9, 0).unwrap(), CommitOutcome::NothingPending);
        let all: Vec<String> = (1..=3).flat_map(|e| (0..workers).flat_map(move |w| lines_of(e, w))).collect();
        assert_eq!(out.committed_lines().unwrap(), all);
        fs::remove_dir_all(&path).unwrap();
    }

    #[test]
    fn nothing_committed_rolls_everything_back() {
        let path = scratch("none");
        let out = TransactionalJsonLinesDir::open(&path).unwrap();
        out.prepare(0, 0, ["a"]).unwrap();
        out.prepare(1, 1, ["b"]).unwrap();
        let report = out.recover(None).unwrap();
        assert_eq!(report.rolled_back, vec![(0, 0), (1, 1)]);
        assert!(report.rolled_forward.is_empty());
        assert!(out.committed_lines().unwrap().is_empty());
        fs::remove_dir_all(&path).unwrap();
    }

    #[test]
    fn committed_epochs_are_final_and_foreign_output_is_refused() {
        let path = scratch("final");
        let out = TransactionalJsonLinesDir::open(&path).unwrap();
        out.prepare(0, 0, ["a"]).unwrap();
        out.commit(0, 0).unwrap();
        let error = out.prepare(0, 0, ["b"]).unwrap_err();
        assert!(matches!(error, TransactionalFileError::AlreadyCommitted { epoch: 0, worker: 0, .. }), "{error}");
        // Output of epoch 5 exists, but the checkpoint (e.g. reset) has committed nothing after 0.
        fs::write(out.committed_path(5, 1), "x\n").unwrap();
        out.prepare(6, 0, ["c"]).unwrap();
        let message = out.recover(Some(0)).unwrap_err().to_string();
        assert!(message.contains("part-000000000005-0001.jsonl"), "{message}");
        assert!(message.contains("after the checkpoint's last committed epoch (0)"), "{message}");
        assert_eq!(out.pending_parts().unwrap(), vec![(6, 0)], "a refused recovery changes nothing");
        fs::remove_dir_all(&path).unwrap();
    }

    #[test]
    fn file_names_parse_back() {
        assert_eq!(parse_file_name(&file_name(123, 4)), Some((123, 4)));
        assert_eq!(parse_file_name("part-7-1.jsonl"), Some((7, 1)));
        for other in ["part-7.jsonl", "part-a-1.jsonl", "part-7-1.json", ".part-7-1.jsonl.tmp", "part--1.jsonl"] {
            assert_eq!(parse_file_name(other), None, "{other}");
        }
    }

    /// Random crash points in the protocol (during prepare, between prepare and the checkpoint
    /// commit, between workers' renames), each followed by recovery and a replay from the last
    /// committed epoch: the committed output always equals that of a run without crashes, and
    /// skipping recovery (the control) does not.
    #[test]
    fn random_crashes_leave_exactly_the_output_of_a_run_without_crashes() {
        const EPOCHS: u64 = 8;
        const WORKERS: usize = 3;
        let expected: Vec<String> = (0..EPOCHS).flat_map(|e| (0..WORKERS).flat_map(move |w| lines_of(e, w))).collect();
        let mut control_failed = 0;
        for seed in 0..40u64 {
            for recover in [true, false] {
                let path = scratch("random");
                let out = TransactionalJsonLinesDir::open(&path).unwrap();
                let mut rng = SmallRng::seed_from_u64(seed);
                // What the checkpoint has durably committed (commits/N).
                let mut last_committed: Option<u64> = None;
                let mut crashes = 0;
                'run: loop {
                    if recover {
                        out.recover(last_committed).unwrap();
                    }
                    let from = last_committed.map_or(0, |e| e + 1);
                    for epoch in from..EPOCHS {
                        // 1. Every worker prepares its output of the epoch (a crash may strike midway,
                        //    possibly in the middle of a file).
                        for worker in 0..WORKERS {
                            if crashes < 6 && rng.random_bool(0.08) {
                                fs::write(out.pending_path(epoch, worker), b"{\"half").unwrap();
                                crashes += 1;
                                continue 'run;
                            }
                            if out.committed_path(epoch, worker).exists() {
                                continue; // only possible without recovery (the control)
                            }
                            out.prepare(epoch, worker, lines_of(epoch, worker)).unwrap();
                        }
                        if crashes < 6 && rng.random_bool(0.08) {
                            crashes += 1;
                            continue 'run;
                        }
                        // 2. The checkpoint commits the epoch.
                        last_committed = Some(epoch);
                        // 3. Workers rename their files, in a random order; a crash may strike between.
                        let mut order: Vec<usize> = (0..WORKERS).collect();
                        order.sort_by_key(|_| rng.random::<u32>());
                        for worker in order {
                            if crashes < 6 && rng.random_bool(0.08) {
                                crashes += 1;
                                continue 'run;
                            }
                            out.commit(epoch, worker).unwrap();
                        }
                    }
                    break;
                }
                let lines = out.committed_lines().unwrap();
                if recover {
                    assert_eq!(lines, expected, "seed {seed}, {crashes} crashes");
                    assert!(out.pending_parts().unwrap().is_empty());
                } else if lines != expected {
                    control_failed += 1;
                }
                fs::remove_dir_all(&path).unwrap();
            }
        }
        // The control (no recovery) loses output after crashes between renames.
        assert!(control_failed > 0, "without recovery some run must lose output, or the test proves nothing");
    }
}
