//! The bookkeeping of the epoch coordinator (`docs/checkpoints.md` §3–4), without the threads:
//! which boundaries were published, which cuts, state snapshots and prepared sinks each epoch
//! has received, and when an epoch can be committed.
//!
//! Epoch `N` ends at boundary `T_{N+1}`. It is complete when every partition of every source has
//! reported its cut at that boundary (then `offsets/N` is written, ahead), every stateful
//! operator has reported its snapshot on every worker, and every sink has reported the epoch
//! prepared on every worker. Epochs commit in order: `commits/N` is written only after
//! `commits/N-1`.

use std::collections::{BTreeMap, BTreeSet};

use crate::time::EventTime;

use super::error::CheckpointError;
use super::records::{CommitRecord, EpochOffsets, PartitionOffset, StateFileRef};
use super::CheckpointDir;

/// Who must report before an epoch is complete.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Participants {
    /// Every source (by description) with its number of partitions.
    pub sources: BTreeMap<String, usize>,
    /// Every stateful operator (a snapshot per worker).
    pub stateful_operators: BTreeSet<String>,
    /// Every sink that takes part in the protocol (prepared per worker).
    pub sinks: BTreeSet<String>,
    /// The number of workers over all processes.
    pub workers: usize,
}

#[derive(Debug, Default)]
struct EpochProgress {
    start: EventTime,
    end: EventTime,
    cuts: BTreeMap<String, BTreeMap<usize, PartitionOffset>>,
    state: BTreeMap<(String, usize), StateFileRef>,
    prepared: BTreeSet<(String, usize)>,
    offsets_written: bool,
}

/// The coordinator's bookkeeping for one query.
#[derive(Debug)]
pub struct EpochCoordinator {
    dir: CheckpointDir,
    participants: Participants,
    /// The epoch the next published boundary ends.
    next_epoch: u64,
    /// Where that epoch starts.
    next_start: EventTime,
    /// The last committed epoch.
    last_committed: Option<u64>,
    open: BTreeMap<u64, EpochProgress>,
}

impl EpochCoordinator {
    /// A coordinator writing to `dir`. `resumed` is the last committed epoch and its end
    /// boundary when the query resumed from a checkpoint (the next epoch starts there).
    pub fn new(dir: CheckpointDir, participants: Participants, resumed: Option<(u64, EventTime)>) -> Self {
        let (next_epoch, next_start, last_committed) = match resumed {
            Some((epoch, end)) => (epoch + 1, end, Some(epoch)),
            None => (0, EventTime::MIN, None),
        };
        EpochCoordinator { dir, participants, next_epoch, next_start, last_committed, open: BTreeMap::new() }
    }

    /// Publishes the boundary that ends the current epoch, strictly above `above` (the highest
    /// capability of any source, read under the sources' downgrade lock) and above the previous
    /// boundary. Returns the epoch it ends and the boundary.
    pub fn publish_boundary(&mut self, above: EventTime) -> (u64, EventTime) {
        let boundary = EventTime::from_millis(above.as_millis().max(self.next_start.as_millis()).saturating_add(1));
        let epoch = self.next_epoch;
        self.open.insert(epoch, EpochProgress { start: self.next_start, end: boundary, ..EpochProgress::default() });
        self.next_epoch += 1;
        self.next_start = boundary;
        (epoch, boundary)
    }

    /// The epochs published and not committed yet, with their `[start, end)` times.
    pub fn open_epochs(&self) -> Vec<(u64, EventTime, EventTime)> {
        self.open.iter().map(|(&epoch, p)| (epoch, p.start, p.end)).collect()
    }

    /// The last committed epoch.
    pub fn last_committed(&self) -> Option<u64> {
        self.last_committed
    }

    /// A source partition's cut at the end of `epoch`.
    pub fn report_cut(&mut self, epoch: u64, source: &str, cut: PartitionOffset) -> Result<(), CheckpointError> {
        let Some(&partitions) = self.participants.sources.get(source) else {
            return Err(self.misuse(format!("a cut was reported for unknown source `{source}`")));
        };
        if cut.partition >= partitions {
            return Err(self.misuse(format!(
                "source `{source}` has {partitions} partitions, a cut was reported for partition {}",
                cut.partition
            )));
        }
        let progress = self.progress(epoch)?;
        progress.cuts.entry(source.to_string()).or_default().insert(cut.partition, cut);
        Ok(())
    }

    /// An operator's snapshot of `epoch` on one worker, already written (`CheckpointDir::write_state`).
    pub fn report_state(&mut self, epoch: u64, state: StateFileRef) -> Result<(), CheckpointError> {
        if !self.participants.stateful_operators.contains(&state.operator) || state.worker >= self.participants.workers
        {
            return Err(self.misuse(format!(
                "a snapshot was reported for unknown operator `{}` or worker {}",
                state.operator, state.worker
            )));
        }
        let progress = self.progress(epoch)?;
        progress.state.insert((state.operator.clone(), state.worker), state);
        Ok(())
    }

    /// A sink's output of `epoch` on one worker is prepared (durable, not visible).
    pub fn report_prepared(&mut self, epoch: u64, sink: &str, worker: usize) -> Result<(), CheckpointError> {
        if !self.participants.sinks.contains(sink) || worker >= self.participants.workers {
            return Err(self.misuse(format!("sink `{sink}` on worker {worker} is not a participant")));
        }
        self.progress(epoch)?.prepared.insert((sink.to_string(), worker));
        Ok(())
    }

    /// Writes what can be written, in order: `offsets/N` of every epoch whose cuts are all in,
    /// then `commits/N` of every complete epoch after the last committed one. Returns the epochs
    /// committed now (their sinks may now make them visible).
    pub fn advance(&mut self) -> Result<Vec<u64>, CheckpointError> {
        let participants = &self.participants;
        for (&epoch, progress) in self.open.iter_mut() {
            let cuts_in = participants
                .sources
                .iter()
                .all(|(source, &n)| progress.cuts.get(source).is_some_and(|cuts| cuts.len() == n));
            if cuts_in && !progress.offsets_written {
                let sources = progress
                    .cuts
                    .iter()
                    .map(|(source, cuts)| (source.clone(), cuts.values().cloned().collect()))
                    .collect();
                self.dir.write_offsets(&EpochOffsets { epoch, start: progress.start, end: progress.end, sources })?;
                progress.offsets_written = true;
            }
        }
        let mut committed = Vec::new();
        while let Some(entry) = self.open.first_entry() {
            let progress = entry.get();
            let complete = progress.offsets_written
                && progress.state.len() == participants.stateful_operators.len() * participants.workers
                && progress.prepared.len() == participants.sinks.len() * participants.workers;
            if !complete {
                break;
            }
            let epoch = *entry.key();
            let state_files = progress.state.values().cloned().collect();
            self.dir.write_commit(&CommitRecord { epoch, committed_at: EventTime::now(), state_files })?;
            entry.remove();
            self.last_committed = Some(epoch);
            committed.push(epoch);
        }
        Ok(committed)
    }

    fn progress(&mut self, epoch: u64) -> Result<&mut EpochProgress, CheckpointError> {
        if !self.open.contains_key(&epoch) {
            return Err(self.misuse(format!("epoch {epoch} is not open (not published, or already committed)")));
        }
        Ok(self.open.get_mut(&epoch).expect("checked"))
    }

    fn misuse(&self, problem: String) -> CheckpointError {
        CheckpointError::Inconsistent { path: self.dir.path().to_path_buf(), problem }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::{CheckpointMetadata, DataflowFingerprint, Resume, WatermarkState};

    fn scratch() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("weir-checkpoint-coordinator-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn cut(partition: usize, offset: u64) -> PartitionOffset {
        let watermark = WatermarkState { max_event_time: None, watermark: EventTime::MIN, idle: false };
        PartitionOffset { partition, position: offset.into(), watermark }
    }

    /// Reports arrive in any order and for several epochs at once; offsets are written once the
    /// cuts are in, commits only when an epoch is complete and every earlier epoch committed.
    #[test]
    fn epochs_commit_in_order_once_complete() {
        let path = scratch();
        let metadata = CheckpointMetadata::new("q", "coordinator", 2, DataflowFingerprint::default());
        let (dir, _) = CheckpointDir::open_or_create(&path, &metadata).unwrap();
        let participants = Participants {
            sources: BTreeMap::from([("events".to_string(), 2)]),
            stateful_operators: BTreeSet::from(["count".to_string()]),
            sinks: BTreeSet::from(["out".to_string()]),
            workers: 2,
        };
        let mut coordinator = EpochCoordinator::new(dir.clone(), participants, None);
        let (e0, t1) = coordinator.publish_boundary(EventTime::from_millis(1_000));
        let (e1, t2) = coordinator.publish_boundary(EventTime::from_millis(500)); // below: moved above t1
        assert_eq!((e0, e1), (0, 1));
        assert_eq!(t1, EventTime::from_millis(1_001));
        assert_eq!(t2, EventTime::from_millis(1_002));

        // Epoch 1 completes first: nothing may commit before epoch 0.
        for p in 0..2 {
            coordinator.report_cut(1, "events", cut(p, 20 + p as u64)).unwrap();
        }
        for w in 0..2 {
            coordinator.report_state(1, dir.write_state("count", w, 1, b"s1").unwrap()).unwrap();
            coordinator.report_prepared(1, "out", w).unwrap();
        }
        assert_eq!(coordinator.advance().unwrap(), Vec::<u64>::new());
        assert!(dir.offsets_path(1).exists(), "offsets are written as soon as the cuts are in");
        assert_eq!(dir.last_committed().unwrap(), None);

        coordinator.report_cut(0, "events", cut(0, 10)).unwrap();
        coordinator.report_cut(0, "events", cut(1, 11)).unwrap();
        for w in 0..2 {
            coordinator.report_state(0, dir.write_state("count", w, 0, b"s0").unwrap()).unwrap();
        }
        coordinator.report_prepared(0, "out", 0).unwrap();
        assert_eq!(coordinator.advance().unwrap(), Vec::<u64>::new(), "sink on worker 1 has not prepared");
        coordinator.report_prepared(0, "out", 1).unwrap();
        assert_eq!(coordinator.advance().unwrap(), vec![0, 1]);
        assert_eq!(coordinator.last_committed(), Some(1));
        assert!(coordinator.open_epochs().is_empty());

        // Misuse is an error, not a silent success.
        assert!(coordinator.report_prepared(1, "out", 0).is_err(), "epoch 1 is committed");
        assert!(coordinator.report_cut(2, "events", cut(0, 1)).is_err(), "epoch 2 is not published");
        coordinator.publish_boundary(EventTime::from_millis(2_000));
        assert!(coordinator.report_cut(2, "events", cut(5, 1)).is_err(), "no partition 5");
        assert!(coordinator.report_cut(2, "other", cut(0, 1)).is_err(), "no such source");

        // A restart resumes after epoch 1, at its end boundary, with its cuts.
        let (_, resume) = CheckpointDir::open_or_create(&path, &metadata).unwrap();
        let Resume::FromEpoch { epoch, offsets, state_files, .. } = resume else { panic!("must resume") };
        assert_eq!((epoch, offsets.start, offsets.end), (1, t1, t2));
        assert_eq!(offsets.sources["events"], vec![cut(0, 20), cut(1, 21)]);
        assert_eq!(state_files.len(), 2);
        let mut resumed = EpochCoordinator::new(dir, Participants::default(), Some((epoch, offsets.end)));
        assert_eq!(resumed.publish_boundary(EventTime::MIN), (2, EventTime::from_millis(1_003)));
        std::fs::remove_dir_all(&path).unwrap();
    }
}
