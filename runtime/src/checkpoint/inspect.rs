//! `weir checkpoint inspect`: what a checkpoint directory holds, epoch by epoch, read without
//! changing anything.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::time::EventTime;

use super::error::CheckpointError;
use super::file::{self, FileKind};
use super::metadata::CheckpointMetadata;
use super::records::{CommitRecord, EpochOffsets, PartitionOffset, SinkEpochRecord, SinkEpochStatus};
use super::{decode_name, epochs_in, first_file, state_dir, COMMITS, METADATA, OFFSETS, SINKS, STATE};

/// Everything in a checkpoint directory (see [`CheckpointReport::read`]).
#[derive(Clone, Debug, Serialize)]
pub struct CheckpointReport {
    /// The directory.
    pub path: PathBuf,
    /// Its metadata.
    pub metadata: CheckpointMetadata,
    /// The last committed epoch (where a restart resumes), if any.
    pub last_committed: Option<u64>,
    /// Every epoch some file belongs to, in increasing order.
    pub epochs: Vec<EpochReport>,
}

/// One epoch of a [`CheckpointReport`].
#[derive(Clone, Debug, Serialize)]
pub struct EpochReport {
    /// The epoch.
    pub epoch: u64,
    /// Whether `commits/<epoch>` exists.
    pub committed: bool,
    /// When it was committed.
    pub committed_at: Option<EventTime>,
    /// Its first timely time, from its offsets.
    pub start: Option<EventTime>,
    /// The boundary that ends it, from its offsets.
    pub end: Option<EventTime>,
    /// Per source, each partition's cut and watermark (absent if `offsets/<epoch>` is).
    pub offsets: Option<BTreeMap<String, Vec<PartitionOffset>>>,
    /// Per operator, its state files for the epoch.
    pub state: BTreeMap<String, OperatorStateSize>,
    /// Per sink, what its instances did with the epoch.
    pub sinks: BTreeMap<String, SinkEpochReport>,
}

/// The state of one operator in one epoch.
#[derive(Clone, Debug, Default, Serialize)]
pub struct OperatorStateSize {
    /// The workers that wrote a state file.
    pub workers: Vec<usize>,
    /// The total size of the snapshots (without file headers; for directories, the sizes of
    /// the files their manifests list).
    pub bytes: u64,
    /// How many of the snapshots are directories (e.g. RocksDB checkpoints) rather than files.
    pub directories: usize,
    /// How many files those directories hold (their manifests excepted).
    pub directory_files: usize,
}

/// What the instances of one sink did with one epoch.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SinkEpochReport {
    /// Workers whose output of the epoch is durable but not visible yet.
    pub prepared: Vec<usize>,
    /// Workers whose output of the epoch is visible.
    pub committed: Vec<usize>,
}

impl CheckpointReport {
    /// Reads every file of the checkpoint in `path` (checking headers, lengths and checksums,
    /// state files included) without changing anything. Any damaged file is an error naming it.
    pub fn read(path: impl AsRef<Path>) -> Result<CheckpointReport, CheckpointError> {
        let root = path.as_ref().to_path_buf();
        if !root.is_dir() {
            return Err(CheckpointError::io(
                "cannot inspect",
                &root,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such directory"),
            ));
        }
        let metadata_path = root.join(METADATA);
        if !metadata_path.exists() {
            let found = first_file(&root)?.unwrap_or_else(|| "nothing".to_string());
            return Err(CheckpointError::NotACheckpoint { path: root, found });
        }
        let metadata: CheckpointMetadata = file::read_json(&metadata_path, FileKind::Metadata)?;

        let mut epochs: BTreeMap<u64, EpochReport> = BTreeMap::new();
        for epoch in epochs_in(&root.join(OFFSETS))? {
            let offsets: EpochOffsets =
                file::read_json(&root.join(OFFSETS).join(epoch.to_string()), FileKind::Offsets)?;
            let report = report_of(&mut epochs, epoch);
            report.start = Some(offsets.start);
            report.end = Some(offsets.end);
            report.offsets = Some(offsets.sources);
        }
        for epoch in epochs_in(&root.join(COMMITS))? {
            let commit: CommitRecord = file::read_json(&root.join(COMMITS).join(epoch.to_string()), FileKind::Commit)?;
            let report = report_of(&mut epochs, epoch);
            report.committed = true;
            report.committed_at = Some(commit.committed_at);
        }
        for (name, worker, dir) in named_worker_dirs(&root.join(STATE))? {
            for epoch in epochs_in(&dir)? {
                let path = dir.join(epoch.to_string());
                let size = report_of(&mut epochs, epoch).state.entry(name.clone()).or_default();
                size.workers.push(worker);
                if path.is_dir() {
                    // A RocksDB checkpoint can be large: its manifest is checked, and its files'
                    // sizes, without reading them.
                    let manifest = state_dir::verify_sizes(&path)?;
                    size.bytes += manifest.total_bytes();
                    size.directories += 1;
                    size.directory_files += manifest.files.len();
                } else {
                    size.bytes += file::read_checked(&path, FileKind::State)?.len() as u64;
                }
            }
        }
        for (name, worker, dir) in named_worker_dirs(&root.join(SINKS))? {
            for epoch in epochs_in(&dir)? {
                let record: SinkEpochRecord = file::read_json(&dir.join(epoch.to_string()), FileKind::Sink)?;
                let sink = report_of(&mut epochs, epoch).sinks.entry(name.clone()).or_default();
                match record.status {
                    SinkEpochStatus::Prepared => sink.prepared.push(worker),
                    SinkEpochStatus::Committed => sink.committed.push(worker),
                }
            }
        }
        let mut epochs: Vec<EpochReport> = epochs.into_values().collect();
        for report in &mut epochs {
            for size in report.state.values_mut() {
                size.workers.sort_unstable();
            }
            for sink in report.sinks.values_mut() {
                sink.prepared.sort_unstable();
                sink.committed.sort_unstable();
            }
        }
        let last_committed = epochs.iter().rev().find(|e| e.committed).map(|e| e.epoch);
        Ok(CheckpointReport { path: root, metadata, last_committed, epochs })
    }
}

fn report_of(epochs: &mut BTreeMap<u64, EpochReport>, epoch: u64) -> &mut EpochReport {
    epochs.entry(epoch).or_insert_with(|| EpochReport {
        epoch,
        committed: false,
        committed_at: None,
        start: None,
        end: None,
        offsets: None,
        state: BTreeMap::new(),
        sinks: BTreeMap::new(),
    })
}

/// `top/<name>/<worker>` directories, with the decoded name and the worker.
fn named_worker_dirs(top: &Path) -> Result<Vec<(String, usize, PathBuf)>, CheckpointError> {
    let mut found = Vec::new();
    for encoded in file::list(top)? {
        let dir = top.join(&encoded);
        if !dir.is_dir() {
            continue;
        }
        let name = decode_name(&encoded).unwrap_or(encoded);
        for worker in file::list(&dir)? {
            if let (Ok(index), true) = (worker.parse::<usize>(), dir.join(&worker).is_dir()) {
                found.push((name.clone(), index, dir.join(&worker)));
            }
        }
    }
    Ok(found)
}

impl fmt::Display for CheckpointReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = &self.metadata;
        writeln!(f, "Checkpoint {}", self.path.display())?;
        writeln!(f, "  query:     {} (id {})", m.query_name, m.query_id)?;
        writeln!(f, "  created:   {}", m.created)?;
        writeln!(f, "  format:    v{}", m.format_version)?;
        writeln!(f, "  workers:   {}", m.workers)?;
        writeln!(f, "  dataflow:  {} node(s)", m.fingerprint.nodes.len())?;
        for node in &m.fingerprint.nodes {
            let state = if node.stateful { format!(", state: {}", node.state) } else { String::new() };
            writeln!(f, "    {} {} ({}{state})", node.role, node.name, node.kind)?;
        }
        match self.last_committed {
            Some(epoch) => writeln!(f, "  resumes after epoch {epoch}")?,
            None => writeln!(f, "  no committed epoch: a restart starts fresh")?,
        }
        for epoch in &self.epochs {
            writeln!(f)?;
            let status = match (epoch.committed, epoch.committed_at) {
                (true, Some(at)) => format!("committed at {at}"),
                (true, None) => "committed".to_string(),
                (false, _) if epoch.offsets.is_some() => "NOT committed (offsets written ahead)".to_string(),
                (false, _) => "NOT committed".to_string(),
            };
            write!(f, "epoch {}: {status}", epoch.epoch)?;
            if let (Some(start), Some(end)) = (epoch.start, epoch.end) {
                if end == crate::time::EventTime::MAX {
                    write!(f, "; times [{start}, the end of the input]")?;
                } else {
                    write!(f, "; times [{start}, {end})")?;
                }
            }
            writeln!(f)?;
            match &epoch.offsets {
                None => writeln!(f, "  offsets: none")?,
                Some(sources) => {
                    for (source, partitions) in sources {
                        writeln!(f, "  source {source}:")?;
                        for p in partitions {
                            let max = p.watermark.max_event_time.map_or("none".to_string(), |t| t.to_string());
                            let idle = if p.watermark.idle { ", idle" } else { "" };
                            writeln!(
                                f,
                                "    partition {}: offset {}, watermark {}, max event time {max}{idle}",
                                p.partition, p.position, p.watermark.watermark
                            )?;
                        }
                    }
                }
            }
            for (operator, size) in &epoch.state {
                let files = size.workers.len() - size.directories;
                let shape = match (files, size.directories) {
                    (files, 0) => format!("{files} file(s)"),
                    (0, dirs) => format!("{dirs} director(ies) of {} file(s)", size.directory_files),
                    (files, dirs) => {
                        format!("{files} file(s) and {dirs} director(ies) of {} file(s)", size.directory_files)
                    }
                };
                writeln!(f, "  state {operator}: {} bytes in {shape} (workers {})", size.bytes, list(&size.workers))?;
            }
            for (sink, report) in &epoch.sinks {
                let mut parts = Vec::new();
                if !report.committed.is_empty() {
                    parts.push(format!("committed by worker(s) {}", list(&report.committed)));
                }
                if !report.prepared.is_empty() {
                    parts.push(format!("prepared, not committed, by worker(s) {}", list(&report.prepared)));
                }
                writeln!(f, "  sink {sink}: {}", parts.join("; "))?;
            }
        }
        Ok(())
    }
}

fn list(workers: &[usize]) -> String {
    let set: BTreeSet<&usize> = workers.iter().collect();
    set.iter().map(|w| w.to_string()).collect::<Vec<_>>().join(", ")
}
