//! Checkpoint directories: what a query needs to resume after a crash, laid out so that a Spark
//! user recognises it.
//!
//! ```text
//! DIR/metadata                              query id, created, worker count, dataflow fingerprint
//! DIR/offsets/<epoch>                       per source partition: its cut (resume position) and watermark
//! DIR/commits/<epoch>                       the epoch is complete; lists its state snapshots
//! DIR/state/<operator>/<worker>/<epoch>     one operator's state on one worker (opaque bytes)
//! DIR/sinks/<sink>/<worker>/<epoch>         a sink instance's record of the epoch (prepared / committed)
//! DIR/sinks/<sink>/<worker>/staged/<epoch>  a sink instance's output of the epoch, staged ahead of delivery
//! ```
//!
//! Every file has a one-line header (format version, record kind, length, CRC-32) and is written
//! atomically (temporary file, fsync, rename, fsync of the directory; see [`file`]). Reading a
//! damaged file gives [`CheckpointError::Corrupt`] naming the file and what is wrong; nothing
//! here ever falls back to a fresh start on its own. Operator and sink names are
//! percent-encoded where they are not plain file-name characters (`Source[a]` is
//! `Source%5Ba%5D`).
//!
//! The protocol that fills the directory (epochs, cuts, snapshots, sink commits) is described in
//! `docs/checkpoints.md`: for epoch `N`, `offsets/N`, the state files and every sink's prepared
//! output are written first, then `commits/N`, then sinks make the epoch visible. A restart
//! resumes from the last `commits/N` ([`CheckpointDir::open_or_create`]).
//!
//! ```
//! use weir_runtime::checkpoint::*;
//! use weir_runtime::time::EventTime;
//!
//! let path = std::env::temp_dir().join(format!("weir-doc-checkpoint-{}", std::process::id()));
//! # let _ = std::fs::remove_dir_all(&path);
//! let metadata = CheckpointMetadata::new("query-1", "doc", 1, DataflowFingerprint::default());
//! let (dir, resume) = CheckpointDir::open_or_create(&path, &metadata).unwrap();
//! assert!(matches!(resume, Resume::Fresh));
//!
//! let offsets = EpochOffsets { epoch: 0, start: EventTime::MIN, end: EventTime::from_millis(10_000),
//!                              sources: Default::default() };
//! dir.write_offsets(&offsets).unwrap();
//! let state = dir.write_state("count", 0, 0, b"serialized state").unwrap();
//! dir.write_commit(&CommitRecord { epoch: 0, committed_at: EventTime::now(), state_files: vec![state] }).unwrap();
//!
//! let (_, resume) = CheckpointDir::open_or_create(&path, &metadata).unwrap();
//! let Resume::FromEpoch { epoch, state_files, .. } = resume else { panic!("must resume") };
//! assert_eq!(epoch, 0);
//! assert_eq!(std::fs::metadata(&state_files[0].path).is_ok(), true);
//! # std::fs::remove_dir_all(&path).unwrap();
//! ```

pub mod cluster;
pub mod coordinator;
pub mod cut;
mod error;
pub mod file;
mod inspect;
pub mod live;
mod metadata;
mod records;
pub mod state_dir;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use coordinator::{EpochCoordinator, Participants};
pub use cut::{PartitionCuts, StampChange};
pub use error::{CheckpointError, Corruption};
pub use file::FORMAT_VERSION;
pub use inspect::{CheckpointReport, EpochReport, OperatorStateSize, SinkEpochReport};
pub use live::{Boundary, LiveCheckpoint};
pub use metadata::{CheckpointMetadata, DataflowFingerprint, FingerprintDiff, NodeFingerprint};
pub use records::{
    CommitRecord, EpochOffsets, PartitionOffset, SinkEpochRecord, SinkEpochStatus, StateFileRef, StateKind,
    WatermarkState,
};
pub use state_dir::{ManifestEntry, StateManifest};

use file::FileKind;

const METADATA: &str = "metadata";
const OFFSETS: &str = "offsets";
const COMMITS: &str = "commits";
const STATE: &str = "state";
const SINKS: &str = "sinks";
/// `sinks/<sink>/<worker>/staged/`: a sink's staged epoch outputs (see [`CheckpointDir::write_sink_data`]).
const STAGED: &str = "staged";
const SUBDIRS: [&str; 4] = [OFFSETS, COMMITS, STATE, SINKS];

/// Where a query starts, as decided by [`CheckpointDir::open_or_create`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resume {
    /// No epoch was ever committed: start from the sources' starting offsets, with empty state.
    Fresh,
    /// Resume after the last committed epoch.
    FromEpoch {
        /// The last committed epoch: the run continues with epoch `epoch + 1`.
        epoch: u64,
        /// Where each source partition resumes, with its watermark state (`offsets/<epoch>`).
        offsets: EpochOffsets,
        /// The state snapshots to restore (listed by `commits/<epoch>`), sorted by operator and worker.
        state_files: Vec<StateFile>,
        /// Changes of the dataflow that the checkpoint can follow (stateless operators, sinks),
        /// for the startup log.
        compatible_changes: Vec<String>,
        /// Epochs after `epoch` that were started but never committed; their files were removed.
        discarded_epochs: Vec<u64>,
    },
}

/// One state snapshot to restore.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateFile {
    /// The operator.
    pub operator: String,
    /// The worker.
    pub worker: usize,
    /// The epoch it belongs to.
    pub epoch: u64,
    /// The file (read it with [`CheckpointDir::read_state`], which checks it), or the directory
    /// (check it with [`CheckpointDir::read_state_dir`]).
    pub path: PathBuf,
    /// The snapshot's length (for a directory, the total size of its files).
    pub bytes: u64,
    /// A file of bytes or a directory.
    pub kind: StateKind,
}

/// An open checkpoint directory; cheap to clone, shared by every worker of a process.
#[derive(Clone, Debug)]
pub struct CheckpointDir {
    root: Arc<PathBuf>,
    metadata: Arc<CheckpointMetadata>,
}

impl CheckpointDir {
    /// Opens the checkpoint in `path`, or creates one there (with `metadata`) if the directory
    /// does not exist or holds nothing.
    ///
    /// An existing checkpoint keeps its query id and creation time. It is refused if its worker
    /// count differs from `metadata.workers` ([`CheckpointError::Rescale`]) or its dataflow
    /// differs in a way its state cannot follow ([`CheckpointError::Incompatible`], naming each
    /// difference). Otherwise the run resumes after the last committed epoch, and files of
    /// later, uncommitted epochs (a crash in the middle of one) are removed.
    pub fn open_or_create(
        path: impl AsRef<Path>,
        metadata: &CheckpointMetadata,
    ) -> Result<(CheckpointDir, Resume), CheckpointError> {
        let root = path.as_ref().to_path_buf();
        if root.exists() && !root.is_dir() {
            return Err(CheckpointError::io(
                "cannot use",
                &root,
                std::io::Error::other("it is a file, not a directory"),
            ));
        }
        let metadata_path = root.join(METADATA);
        if !metadata_path.exists() {
            if let Some(found) = first_file(&root)? {
                return Err(CheckpointError::NotACheckpoint { path: root, found });
            }
            file::create_dir_durable(&root)?;
            for sub in SUBDIRS {
                file::create_dir_durable(&root.join(sub))?;
            }
            file::write_json(&metadata_path, FileKind::Metadata, metadata)?;
            tracing::info!(checkpoint = %root.display(), query_id = %metadata.query_id, "new checkpoint");
            let dir = CheckpointDir { root: Arc::new(root), metadata: Arc::new(metadata.clone()) };
            return Ok((dir, Resume::Fresh));
        }

        let stored: CheckpointMetadata = file::read_json(&metadata_path, FileKind::Metadata)?;
        if stored.format_version != FORMAT_VERSION {
            return Err(CheckpointError::corrupt(
                &metadata_path,
                Corruption::UnsupportedVersion { found: stored.format_version, supported: FORMAT_VERSION },
            ));
        }
        if stored.workers != metadata.workers {
            return Err(CheckpointError::Rescale {
                path: root,
                checkpoint_workers: stored.workers,
                workers: metadata.workers,
            });
        }
        let diff = stored.fingerprint.diff(&metadata.fingerprint);
        if !diff.incompatible.is_empty() {
            return Err(CheckpointError::Incompatible { path: root, differences: diff.incompatible });
        }
        let mut effective = stored.clone();
        if !diff.compatible.is_empty() {
            // Remember the new dataflow, so the next restart compares against it.
            effective.fingerprint = metadata.fingerprint.clone();
            effective.query_name = metadata.query_name.clone();
            file::write_json(&metadata_path, FileKind::Metadata, &effective)?;
        }
        for sub in SUBDIRS {
            file::create_dir_durable(&root.join(sub))?;
        }
        let dir = CheckpointDir { root: Arc::new(root), metadata: Arc::new(effective) };

        let last = dir.last_committed()?;
        let discarded_epochs = dir.discard_after(last)?;
        let Some(epoch) = last else {
            tracing::info!(checkpoint = %dir.root.display(), "checkpoint has no committed epoch: starting fresh");
            return Ok((dir, Resume::Fresh));
        };
        let commit = dir.read_commit(epoch)?;
        let offsets_path = dir.offsets_path(epoch);
        if !offsets_path.exists() {
            return Err(CheckpointError::Inconsistent {
                path: offsets_path,
                problem: format!("epoch {epoch} is committed but its offsets file is missing"),
            });
        }
        let offsets = dir.read_offsets(epoch)?;
        if offsets.epoch != epoch {
            return Err(CheckpointError::corrupt(
                &offsets_path,
                Corruption::InvalidContent(format!("it holds the offsets of epoch {}, not {epoch}", offsets.epoch)),
            ));
        }
        let mut state_files = Vec::new();
        for state in &commit.state_files {
            let path = dir.state_path(&state.operator, state.worker, epoch);
            if !path.exists() {
                return Err(CheckpointError::Inconsistent {
                    path,
                    problem: format!(
                        "commits/{epoch} lists the state of operator `{}` on worker {}, but the {} is missing",
                        state.operator,
                        state.worker,
                        state.kind.as_str()
                    ),
                });
            }
            check_shape(&path, state.kind)?;
            state_files.push(StateFile {
                operator: state.operator.clone(),
                worker: state.worker,
                epoch,
                path,
                bytes: state.bytes,
                kind: state.kind,
            });
        }
        state_files.sort_by(|a, b| (&a.operator, a.worker).cmp(&(&b.operator, b.worker)));
        tracing::debug!(checkpoint = %dir.root.display(), epoch, "opened at the last committed epoch");
        let resume =
            Resume::FromEpoch { epoch, offsets, state_files, compatible_changes: diff.compatible, discarded_epochs };
        Ok((dir, resume))
    }

    /// Deletes the checkpoint in `path` on purpose (`--reset-checkpoint`): everything in it is
    /// lost. Refuses a directory that is not a Weir checkpoint (no `metadata` file, but other
    /// files), so a mistyped path deletes nothing. An absent directory is fine.
    pub fn reset(path: impl AsRef<Path>) -> Result<(), CheckpointError> {
        let root = path.as_ref().to_path_buf();
        if !root.exists() {
            return Ok(());
        }
        if !root.join(METADATA).is_file() {
            if let Some(found) = first_file(&root)? {
                return Err(CheckpointError::NotACheckpoint { path: root, found });
            }
        }
        file::remove(&root)?;
        if let Some(parent) = root.parent().filter(|p| !p.as_os_str().is_empty()) {
            file::sync_dir(parent)?;
        }
        tracing::warn!(checkpoint = %root.display(), "checkpoint deleted on purpose (reset)");
        Ok(())
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// The metadata in force: the stored query id and creation time, the current fingerprint.
    pub fn metadata(&self) -> &CheckpointMetadata {
        &self.metadata
    }

    /// `offsets/<epoch>`.
    pub fn offsets_path(&self, epoch: u64) -> PathBuf {
        self.root.join(OFFSETS).join(epoch.to_string())
    }

    /// `commits/<epoch>`.
    pub fn commit_path(&self, epoch: u64) -> PathBuf {
        self.root.join(COMMITS).join(epoch.to_string())
    }

    /// `state/<operator>/<worker>/<epoch>`.
    pub fn state_path(&self, operator: &str, worker: usize, epoch: u64) -> PathBuf {
        self.root.join(STATE).join(encode_name(operator)).join(worker.to_string()).join(epoch.to_string())
    }

    /// `sinks/<sink>/`: the sink's own directory, for whatever else it needs to keep.
    pub fn sink_dir(&self, sink: &str) -> PathBuf {
        self.root.join(SINKS).join(encode_name(sink))
    }

    /// `sinks/<sink>/<worker>/<epoch>`.
    pub fn sink_record_path(&self, sink: &str, worker: usize, epoch: u64) -> PathBuf {
        self.sink_dir(sink).join(worker.to_string()).join(epoch.to_string())
    }

    /// Writes `offsets/<epoch>` (ahead of `commits/<epoch>`). An epoch already committed cannot be
    /// rewritten.
    pub fn write_offsets(&self, offsets: &EpochOffsets) -> Result<(), CheckpointError> {
        self.refuse_committed(offsets.epoch)?;
        file::write_json(&self.offsets_path(offsets.epoch), FileKind::Offsets, offsets)
    }

    /// Writes one operator's state on one worker for `epoch`, and returns the reference to list
    /// in the epoch's [`CommitRecord`].
    pub fn write_state(
        &self,
        operator: &str,
        worker: usize,
        epoch: u64,
        bytes: &[u8],
    ) -> Result<StateFileRef, CheckpointError> {
        self.refuse_committed(epoch)?;
        let path = self.state_path(operator, worker, epoch);
        file::create_dir_durable(path.parent().expect("state files live in a directory"))?;
        file::write_atomic(&path, FileKind::State, bytes)?;
        Ok(StateFileRef {
            operator: operator.to_string(),
            worker,
            bytes: bytes.len() as u64,
            crc32: file::crc32(bytes),
            kind: StateKind::Bytes,
        })
    }

    /// Writes one operator's state on one worker for `epoch` as a **directory** (e.g. a RocksDB
    /// checkpoint), and returns the reference to list in the epoch's [`CommitRecord`].
    ///
    /// `fill` gets an empty temporary directory beside the final one and puts the files in it
    /// (hard links are fine: the files are fsynced, not copied). Then every file's size and
    /// CRC-32 go into the manifest `weir-manifest`, written atomically after the files, and the
    /// directory is renamed to `state/<operator>/<worker>/<epoch>`. Files that are hard links of
    /// files of the previous epoch's directory keep their checksum from its manifest, so only
    /// new files are read. If `fill` fails, the
    /// temporary directory is removed and its error returned.
    ///
    /// ```
    /// use weir_runtime::checkpoint::*;
    ///
    /// let path = std::env::temp_dir().join(format!("weir-doc-state-dir-{}", std::process::id()));
    /// # let _ = std::fs::remove_dir_all(&path);
    /// let metadata = CheckpointMetadata::new("q", "doc", 1, DataflowFingerprint::default());
    /// let (dir, _) = CheckpointDir::open_or_create(&path, &metadata).unwrap();
    /// let state = dir
    ///     .write_state_dir("join", 0, 0, |staging| {
    ///         std::fs::write(staging.join("left"), b"rows")?;
    ///         Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
    ///     })
    ///     .unwrap();
    /// assert_eq!((state.kind, state.bytes), (StateKind::Directory, 4));
    /// let checked = dir.read_state_dir("join", 0, 0).unwrap();
    /// assert_eq!(std::fs::read(checked.join("left")).unwrap(), b"rows");
    /// # std::fs::remove_dir_all(&path).unwrap();
    /// ```
    pub fn write_state_dir<E>(
        &self,
        operator: &str,
        worker: usize,
        epoch: u64,
        fill: impl FnOnce(&Path) -> Result<(), E>,
    ) -> Result<StateFileRef, E>
    where
        E: From<CheckpointError>,
    {
        self.refuse_committed(epoch)?;
        let path = self.state_path(operator, worker, epoch);
        let parent = path.parent().expect("state files live in a directory");
        file::create_dir_durable(parent)?;
        let staging = file::temporary_path(&path);
        fs::create_dir(&staging).map_err(|e| CheckpointError::io("cannot create directory", &staging, e))?;
        // The latest earlier directory of this operator and worker: checksums of files shared
        // with it (hard links) are carried over instead of read again.
        let previous = epochs_in(parent)?
            .into_iter()
            .rev()
            .filter(|&e| e != epoch)
            .map(|e| parent.join(e.to_string()))
            .find(|p| p.join(state_dir::MANIFEST).is_file());
        let sealed = fill(&staging).and_then(|()| Ok(state_dir::seal(&staging, previous.as_deref())?));
        let (manifest, crc32) = match sealed {
            Ok(sealed) => sealed,
            Err(error) => {
                let _ = file::remove(&staging);
                return Err(error);
            }
        };
        // An uncommitted earlier attempt of the same epoch (after a restart) is replaced.
        file::remove(&path)?;
        if let Err(error) = fs::rename(&staging, &path) {
            let _ = file::remove(&staging);
            return Err(CheckpointError::io("cannot rename a temporary directory to", &path, error).into());
        }
        file::sync_dir(parent)?;
        Ok(StateFileRef {
            operator: operator.to_string(),
            worker,
            bytes: manifest.total_bytes(),
            crc32,
            kind: StateKind::Directory,
        })
    }

    /// Writes a sink instance's record of an epoch (`sinks/<sink>/<worker>/<epoch>`).
    pub fn write_sink_record(&self, record: &SinkEpochRecord) -> Result<(), CheckpointError> {
        let path = self.sink_record_path(&record.sink, record.worker, record.epoch);
        file::create_dir_durable(path.parent().expect("sink records live in a directory"))?;
        file::write_json(&path, FileKind::Sink, record)
    }

    /// Writes `commits/<epoch>`: the epoch is complete. Its offsets and every state file it lists
    /// must already be written (they are checked), and it must not be committed yet.
    pub fn write_commit(&self, commit: &CommitRecord) -> Result<(), CheckpointError> {
        let epoch = commit.epoch;
        self.refuse_committed(epoch)?;
        let offsets = self.offsets_path(epoch);
        if !offsets.is_file() {
            return Err(CheckpointError::Inconsistent {
                path: offsets,
                problem: format!(
                    "commits/{epoch} cannot be written before offsets/{epoch} (offsets are written ahead)"
                ),
            });
        }
        for state in &commit.state_files {
            let path = self.state_path(&state.operator, state.worker, epoch);
            if !path.exists() {
                return Err(CheckpointError::Inconsistent {
                    path,
                    problem: format!(
                        "commits/{epoch} cannot list the state of operator `{}` on worker {}: it was not written",
                        state.operator, state.worker
                    ),
                });
            }
            check_shape(&path, state.kind)?;
            if state.kind == StateKind::Directory && !path.join(state_dir::MANIFEST).is_file() {
                return Err(CheckpointError::corrupt(&path, Corruption::MissingManifest));
            }
        }
        file::write_json(&self.commit_path(epoch), FileKind::Commit, commit)
    }

    /// Reads `offsets/<epoch>`.
    pub fn read_offsets(&self, epoch: u64) -> Result<EpochOffsets, CheckpointError> {
        file::read_json(&self.offsets_path(epoch), FileKind::Offsets)
    }

    /// Reads `commits/<epoch>`.
    pub fn read_commit(&self, epoch: u64) -> Result<CommitRecord, CheckpointError> {
        file::read_json(&self.commit_path(epoch), FileKind::Commit)
    }

    /// Reads one state snapshot, checking its length and checksum.
    pub fn read_state(&self, operator: &str, worker: usize, epoch: u64) -> Result<Vec<u8>, CheckpointError> {
        let path = self.state_path(operator, worker, epoch);
        check_shape(&path, StateKind::Bytes)?;
        file::read_checked(&path, FileKind::State)
    }

    /// Checks one state directory (written by [`CheckpointDir::write_state_dir`]) in full: its
    /// manifest, and every file's presence, size and CRC-32 (this reads every file). Returns the
    /// directory, to be read, never changed: a restore copies or hard-links its files elsewhere,
    /// so the checkpoint stays intact for a later recovery.
    pub fn read_state_dir(&self, operator: &str, worker: usize, epoch: u64) -> Result<PathBuf, CheckpointError> {
        let path = self.state_path(operator, worker, epoch);
        if !path.exists() {
            return Err(CheckpointError::io(
                "cannot read",
                &path,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such state directory"),
            ));
        }
        state_dir::verify(&path)?;
        Ok(path)
    }

    /// Reads a sink instance's record of an epoch, if there is one.
    pub fn read_sink_record(
        &self,
        sink: &str,
        worker: usize,
        epoch: u64,
    ) -> Result<Option<SinkEpochRecord>, CheckpointError> {
        let path = self.sink_record_path(sink, worker, epoch);
        if !path.exists() {
            return Ok(None);
        }
        file::read_json(&path, FileKind::Sink).map(Some)
    }

    /// `sinks/<sink>/<worker>/staged/<epoch>`: a sink instance's output of one epoch, staged.
    pub fn sink_data_path(&self, sink: &str, worker: usize, epoch: u64) -> PathBuf {
        self.sink_dir(sink).join(worker.to_string()).join(STAGED).join(epoch.to_string())
    }

    /// Stages a sink instance's output of `epoch` (opaque bytes, checked by length and CRC-32
    /// like every checkpoint file) **ahead of** `commits/<epoch>`: a sink that can only make
    /// output visible after the commit (a Kafka transaction) keeps here what it will deliver, so
    /// that it can deliver it after a crash without recomputing it.
    ///
    /// Staged data is the sink's to remove ([`CheckpointDir::remove_sink_data`], once delivered):
    /// [`CheckpointDir::cleanup`] never removes it, whatever the epoch's age, because an epoch
    /// can be committed in the checkpoint and not yet delivered. Opening the checkpoint removes
    /// the staged data of epochs that were never committed (they are recomputed).
    pub fn write_sink_data(&self, sink: &str, worker: usize, epoch: u64, bytes: &[u8]) -> Result<(), CheckpointError> {
        self.refuse_committed(epoch)?;
        let path = self.sink_data_path(sink, worker, epoch);
        file::create_dir_durable(path.parent().expect("staged data lives in a directory"))?;
        file::write_atomic(&path, FileKind::SinkData, bytes)
    }

    /// Reads a sink instance's staged output of `epoch`, checking its header, length and CRC-32
    /// (a damaged file is [`CheckpointError::Corrupt`] naming it).
    pub fn read_sink_data(&self, sink: &str, worker: usize, epoch: u64) -> Result<Vec<u8>, CheckpointError> {
        file::read_checked(&self.sink_data_path(sink, worker, epoch), FileKind::SinkData)
    }

    /// The epochs a sink instance has staged output of, in increasing order.
    pub fn sink_data_epochs(&self, sink: &str, worker: usize) -> Result<Vec<u64>, CheckpointError> {
        epochs_in(&self.sink_dir(sink).join(worker.to_string()).join(STAGED))
    }

    /// Removes a sink instance's staged output of `epoch` (once delivered; absent is fine).
    pub fn remove_sink_data(&self, sink: &str, worker: usize, epoch: u64) -> Result<(), CheckpointError> {
        file::remove(&self.sink_data_path(sink, worker, epoch))
    }

    /// The committed epochs, in increasing order.
    pub fn committed_epochs(&self) -> Result<Vec<u64>, CheckpointError> {
        epochs_in(&self.root.join(COMMITS))
    }

    /// The last committed epoch, if any.
    pub fn last_committed(&self) -> Result<Option<u64>, CheckpointError> {
        Ok(self.committed_epochs()?.last().copied())
    }

    /// Removes every epoch older than the last `keep_last` committed ones (at least one is always
    /// kept), and temporary files left by interrupted writes. Returns the epochs removed. Staged
    /// sink data ([`CheckpointDir::write_sink_data`]) is not touched: its sink removes it once
    /// delivered.
    pub fn cleanup(&self, keep_last: usize) -> Result<Vec<u64>, CheckpointError> {
        let removed = self.remove_old_epochs(keep_last)?;
        self.remove_temporary()?;
        Ok(removed)
    }

    /// [`CheckpointDir::cleanup`] without removing temporary files: what a running query does
    /// after each commit, while its workers (in any process of a cluster) may be writing the
    /// temporary files of later epochs.
    pub fn remove_old_epochs(&self, keep_last: usize) -> Result<Vec<u64>, CheckpointError> {
        let committed = self.committed_epochs()?;
        let keep_last = keep_last.max(1);
        if committed.len() <= keep_last {
            return Ok(Vec::new());
        }
        let oldest_kept = committed[committed.len() - keep_last];
        let removed: Vec<u64> = self.all_epochs()?.into_iter().filter(|&e| e < oldest_kept).collect();
        // The commit goes first, so an interrupted cleanup never leaves a commit without its files.
        for &epoch in &removed {
            file::remove(&self.commit_path(epoch))?;
        }
        for &epoch in &removed {
            self.remove_epoch_files(epoch)?;
        }
        Ok(removed)
    }

    fn refuse_committed(&self, epoch: u64) -> Result<(), CheckpointError> {
        if self.commit_path(epoch).exists() {
            return Err(CheckpointError::AlreadyCommitted { path: self.root.to_path_buf(), epoch });
        }
        Ok(())
    }

    /// Removes the files of every epoch after `last` (all of them if `None`).
    fn discard_after(&self, last: Option<u64>) -> Result<Vec<u64>, CheckpointError> {
        let discarded: Vec<u64> = self.all_epochs()?.into_iter().filter(|&e| last.is_none_or(|l| e > l)).collect();
        for &epoch in &discarded {
            self.remove_epoch_files(epoch)?;
            tracing::info!(checkpoint = %self.root.display(), epoch, "removed the files of an uncommitted epoch");
        }
        // Staged sink output of uncommitted epochs: never delivered, and recomputed.
        for dir in self.staged_dirs()? {
            for epoch in epochs_in(&dir)?.into_iter().filter(|&e| last.is_none_or(|l| e > l)) {
                file::remove(&dir.join(epoch.to_string()))?;
            }
        }
        self.remove_temporary()?;
        Ok(discarded)
    }

    fn remove_epoch_files(&self, epoch: u64) -> Result<(), CheckpointError> {
        let name = epoch.to_string();
        for (dir, _) in self.epoch_dirs()? {
            file::remove(&dir.join(&name))?;
        }
        file::remove(&self.offsets_path(epoch))?;
        file::remove(&self.commit_path(epoch))?;
        Ok(())
    }

    /// Every `state/<op>/<worker>` and `sinks/<sink>/<worker>` directory, with its epochs.
    fn epoch_dirs(&self) -> Result<Vec<(PathBuf, Vec<u64>)>, CheckpointError> {
        let mut dirs = Vec::new();
        for top in [STATE, SINKS] {
            let top = self.root.join(top);
            for name in file::list(&top)? {
                let named = top.join(&name);
                if !named.is_dir() {
                    continue;
                }
                for worker in file::list(&named)? {
                    let dir = named.join(&worker);
                    if dir.is_dir() {
                        let epochs = epochs_in(&dir)?;
                        dirs.push((dir, epochs));
                    }
                }
            }
        }
        Ok(dirs)
    }

    /// Every `sinks/<sink>/<worker>/staged` directory.
    fn staged_dirs(&self) -> Result<Vec<PathBuf>, CheckpointError> {
        let sinks = self.root.join(SINKS);
        let mut dirs = Vec::new();
        for (dir, _) in self.epoch_dirs()? {
            let staged = dir.join(STAGED);
            if dir.starts_with(&sinks) && staged.is_dir() {
                dirs.push(staged);
            }
        }
        Ok(dirs)
    }

    /// Every epoch any file belongs to.
    fn all_epochs(&self) -> Result<BTreeSet<u64>, CheckpointError> {
        let mut epochs: BTreeSet<u64> = BTreeSet::new();
        epochs.extend(epochs_in(&self.root.join(OFFSETS))?);
        epochs.extend(epochs_in(&self.root.join(COMMITS))?);
        for (_, found) in self.epoch_dirs()? {
            epochs.extend(found);
        }
        Ok(epochs)
    }

    fn remove_temporary(&self) -> Result<(), CheckpointError> {
        let mut dirs = vec![self.root.to_path_buf(), self.root.join(OFFSETS), self.root.join(COMMITS)];
        dirs.extend(self.epoch_dirs()?.into_iter().map(|(dir, _)| dir));
        dirs.extend(self.staged_dirs()?);
        for dir in dirs {
            for name in file::list(&dir)? {
                if file::is_temporary(&name) {
                    file::remove(&dir.join(name))?;
                }
            }
        }
        Ok(())
    }
}

/// Checks that a state snapshot has the shape (file or directory) its reference says.
fn check_shape(path: &Path, kind: StateKind) -> Result<(), CheckpointError> {
    let is_dir = path.is_dir();
    match kind {
        StateKind::Bytes if is_dir => Err(CheckpointError::corrupt(path, Corruption::WrongShape { expected: "file" })),
        StateKind::Directory if path.exists() && !is_dir => {
            Err(CheckpointError::corrupt(path, Corruption::WrongShape { expected: "directory" }))
        }
        _ => Ok(()),
    }
}

/// The epochs named by the files in `dir` (decimal names; anything else is ignored).
fn epochs_in(dir: &Path) -> Result<Vec<u64>, CheckpointError> {
    let mut epochs: Vec<u64> = file::list(dir)?
        .iter()
        .filter(|name| !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit()))
        .filter_map(|name| name.parse().ok())
        .collect();
    epochs.sort_unstable();
    Ok(epochs)
}

/// The first file (not a directory, not a temporary file) under `dir`, relative to it.
fn first_file(dir: &Path) -> Result<Option<String>, CheckpointError> {
    fn walk(base: &Path, dir: &Path) -> Result<Option<String>, CheckpointError> {
        for name in file::list(dir)? {
            let path = dir.join(&name);
            if path.is_dir() {
                if let Some(found) = walk(base, &path)? {
                    return Ok(Some(found));
                }
            } else if !file::is_temporary(&name) {
                return Ok(Some(path.strip_prefix(base).unwrap_or(&path).display().to_string()));
            }
        }
        Ok(None)
    }
    walk(dir, dir)
}

/// An operator or sink name as one path component: ASCII letters, digits, `_`, `-` and `.` stay,
/// every other byte becomes `%XX` (and so does a leading `.`).
pub fn encode_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for (i, b) in name.bytes().enumerate() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || (b == b'.' && i > 0) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if out.is_empty() {
        out.push('%');
    }
    out
}

/// The inverse of [`encode_name`] (`None` if `encoded` is not one of its results).
pub fn decode_name(encoded: &str) -> Option<String> {
    if encoded == "%" {
        return Some(String::new());
    }
    let bytes = encoded.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = encoded.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests;
