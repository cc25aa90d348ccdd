//! The records of one epoch: `offsets/<epoch>`, `commits/<epoch>` and `sinks/<sink>/<worker>/<epoch>`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::time::EventTime;

/// `offsets/<epoch>`: where every source partition stands at the end of epoch `epoch`, i.e.
/// where it resumes if the query restarts from this epoch, with its watermark state there.
///
/// Epoch `N` covers the timely times `[start, end)`. A partition's position here is its *cut*:
/// the first record it stamped at a time `>= end` (everything before belongs to epochs `<= N`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochOffsets {
    /// The epoch.
    pub epoch: u64,
    /// The first timely time of the epoch (inclusive).
    pub start: EventTime,
    /// The boundary that ends the epoch (exclusive): the next epoch starts here.
    pub end: EventTime,
    /// Per source (by its description), its partitions' cuts.
    pub sources: BTreeMap<String, Vec<PartitionOffset>>,
}

/// One partition's cut in [`EpochOffsets`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionOffset {
    /// The partition's index in its source.
    pub partition: usize,
    /// The position to resume from, in the JSON shape the source reports
    /// ([`crate::source::PartitionReader::position`]).
    pub position: serde_json::Value,
    /// The partition's watermark state at that position.
    pub watermark: WatermarkState,
}

/// The watermark state of one partition at a cut, restored with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatermarkState {
    /// The largest event time the partition had seen before the cut.
    pub max_event_time: Option<EventTime>,
    /// Its watermark (max event time − delay).
    pub watermark: EventTime,
    /// Whether it was idle (not holding the watermark back).
    #[serde(default)]
    pub idle: bool,
}

/// `commits/<epoch>`: epoch `epoch` is complete (its offsets, every state snapshot and every
/// sink's prepared output are durable); sinks may now make its output visible.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitRecord {
    /// The epoch.
    pub epoch: u64,
    /// When it was committed (processing time).
    pub committed_at: EventTime,
    /// The state snapshots that make up the epoch, one per stateful operator and worker.
    pub state_files: Vec<StateFileRef>,
}

/// One state snapshot listed in a [`CommitRecord`]: `state/<operator>/<worker>/<epoch>`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct StateFileRef {
    /// The operator's name.
    pub operator: String,
    /// The worker whose state it is.
    pub worker: usize,
    /// The length of the snapshot (without the file's header); for a directory, the total size
    /// of the files its manifest lists.
    pub bytes: u64,
    /// The CRC-32 of the snapshot; for a directory, the CRC-32 of its manifest's content.
    pub crc32: u32,
    /// Whether the snapshot is one file of bytes or a directory (a RocksDB checkpoint). Commits
    /// written before directories existed have no such field: they hold files.
    #[serde(default, skip_serializing_if = "StateKind::is_bytes")]
    pub kind: StateKind,
}

/// The two shapes of a state snapshot in `state/<operator>/<worker>/<epoch>`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StateKind {
    /// One checkpoint file holding opaque bytes (a memory store's snapshot, an operator's
    /// serialized structures): [`super::CheckpointDir::write_state`].
    #[default]
    Bytes,
    /// A directory of files (a RocksDB checkpoint: hard links, no full copy) with a manifest
    /// listing every file with its size and CRC-32, written last:
    /// [`super::CheckpointDir::write_state_dir`].
    Directory,
}

impl StateKind {
    /// Whether this is [`StateKind::Bytes`].
    pub fn is_bytes(&self) -> bool {
        *self == StateKind::Bytes
    }

    /// `file` or `directory`, for messages.
    pub fn as_str(self) -> &'static str {
        match self {
            StateKind::Bytes => "file",
            StateKind::Directory => "directory",
        }
    }
}

/// What a sink did with one epoch's output on one worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SinkEpochStatus {
    /// The output is durable but not visible (a pending file, an open transaction).
    Prepared,
    /// The output is visible (the file renamed, the transaction committed).
    Committed,
}

/// `sinks/<sink>/<worker>/<epoch>`: a sink instance's record of one epoch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SinkEpochRecord {
    /// The sink's name.
    pub sink: String,
    /// The worker.
    pub worker: usize,
    /// The epoch.
    pub epoch: u64,
    /// Prepared or committed.
    pub status: SinkEpochStatus,
    /// Anything the sink needs to resolve the epoch after a crash (e.g. its file names or its
    /// transactional id).
    #[serde(default)]
    pub detail: serde_json::Value,
}
