//! The coordinator of a running query (`docs/checkpoints.md` §3–4): the [`EpochCoordinator`]'s
//! bookkeeping behind locks that the workers of a process share.
//!
//! - **Boundaries** are published under the *downgrade lock*: every source instance records its
//!   capability through [`LiveCheckpoint::source_downgrade`] before it stamps anything at the new
//!   time, and a boundary `T` is chosen above every capability recorded. So when `T` is
//!   published no record at a time `≥ T` exists anywhere, and no operator can have applied such a
//!   time: each can still snapshot "just before `T`". Publishing happens inside a downgrade, once
//!   the checkpoint interval has passed since the last boundary: no thread of its own.
//! - **Reports** (cuts, snapshots, prepared sinks) go to the coordinator, which writes
//!   `offsets/N` ahead and `commits/N` once epoch `N` is complete; [`LiveCheckpoint::last_committed`]
//!   then tells the sinks which epochs they may make visible.
//! - When every source instance has finished, the last boundary is [`EventTime::MAX`]: the final
//!   epoch ends with the input.
//!
//! In a cluster of processes, process 0 hosts this coordinator and the others forward to it,
//! with boundaries pushed to every process under the lock: see [`super::cluster`].

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::time::EventTime;

use super::coordinator::{EpochCoordinator, Participants};
use super::error::CheckpointError;
use super::records::{PartitionOffset, SinkEpochStatus, StateFileRef};
use super::{CheckpointDir, Resume};

/// A published boundary: epoch `epoch` ends at time `boundary` (exclusive).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Boundary {
    /// The epoch that ends here.
    pub epoch: u64,
    /// The first time of the next epoch.
    pub boundary: EventTime,
}

#[derive(Debug)]
struct DowngradeState {
    /// Every source instance's current capability; `None` once it finished.
    capabilities: BTreeMap<(String, usize), Option<EventTime>>,
    /// Boundaries published, in order.
    published: Vec<Boundary>,
    last_publish: Instant,
    finished_boundary_published: bool,
    /// The final cuts of source instances that have finished: every later boundary cuts them
    /// there, reported on their behalf.
    finished_cuts: BTreeMap<(String, usize), Vec<PartitionOffset>>,
    /// The highest capability ever recorded: a finished instance's records were stamped up to its
    /// last capability, so every later boundary must be above it too.
    highest_ever: EventTime,
}

/// The checkpoint coordinator of one running query, shared by its workers (see the module docs).
#[derive(Debug)]
pub struct LiveCheckpoint {
    interval: Duration,
    downgrades: Mutex<DowngradeState>,
    /// `None` until [`LiveCheckpoint::seal`]: participants register while the dataflow is built.
    coordinator: Mutex<Option<EpochCoordinator>>,
    /// Who registered so far.
    participants: Mutex<Participants>,
    /// The directory, and what the query resumes from.
    dir: Option<CheckpointDir>,
    resume: Resume,
    /// How many committed epochs to keep.
    keep: usize,
    /// The last committed epoch + 1 (0: none yet).
    committed: AtomicU64,
    /// The highest published boundary, readable without a lock (ms; `u64::MAX` for the last).
    highest_boundary: AtomicU64,
    /// End an epoch after this many input records too (whichever comes first with the interval).
    records_per_epoch: Option<u64>,
    /// Input records read since the last boundary.
    records_since_boundary: AtomicU64,
    /// Epochs checkpointed at a time at most (`None`: no limit).
    max_in_flight: Option<u64>,
    /// When each epoch not yet committed ended (its boundary was published).
    ended_at: Mutex<BTreeMap<u64, Instant>>,
    /// From an epoch's end to its commit (`commits/N` written), for the most recent epochs.
    commit_latencies: Mutex<std::collections::VecDeque<Duration>>,
    /// Why the coordinator cannot go on, found where no caller could be told: the sources fail
    /// the query with it (a query that runs on without committing looks healthy and is not).
    failure: Mutex<Option<String>>,
    /// In a cluster: process 0 pushes boundaries and commits to the other processes, which
    /// forward everything else to it (see [`super::cluster`]).
    cluster: super::cluster::Role,
}

impl LiveCheckpoint {
    /// A coordinator publishing a boundary every `interval` of processing time; `source_instances`
    /// names every (source, worker) that will report its capability. (Tests and programs that
    /// know their participants up front; a query uses [`LiveCheckpoint::open`].)
    pub fn new(
        coordinator: EpochCoordinator,
        interval: Duration,
        source_instances: impl IntoIterator<Item = (String, usize)>,
    ) -> Self {
        let committed = coordinator.last_committed().map_or(0, |e| e + 1);
        LiveCheckpoint {
            interval,
            downgrades: Mutex::new(DowngradeState {
                capabilities: source_instances.into_iter().map(|key| (key, Some(EventTime::MIN))).collect(),
                published: Vec::new(),
                last_publish: Instant::now(),
                finished_boundary_published: false,
                finished_cuts: BTreeMap::new(),
                highest_ever: EventTime::MIN,
            }),
            coordinator: Mutex::new(Some(coordinator)),
            participants: Mutex::new(Participants::default()),
            dir: None,
            resume: Resume::Fresh,
            keep: 2,
            committed: AtomicU64::new(committed),
            highest_boundary: AtomicU64::new(0),
            records_per_epoch: None,
            records_since_boundary: AtomicU64::new(0),
            max_in_flight: None,
            ended_at: Mutex::new(BTreeMap::new()),
            commit_latencies: Mutex::new(std::collections::VecDeque::new()),
            failure: Mutex::new(None),
            cluster: super::cluster::Role::Single,
        }
    }

    /// The coordinator of a query that checkpoints into `dir` (opened, with what it resumes
    /// from). Sources, stateful operators and sinks register while the dataflow is built;
    /// [`LiveCheckpoint::seal`] then starts the coordination, before any worker runs.
    pub fn open(dir: CheckpointDir, resume: Resume, interval: Duration, keep: usize) -> Self {
        let committed = match &resume {
            Resume::Fresh => 0,
            Resume::FromEpoch { epoch, .. } => epoch + 1,
        };
        LiveCheckpoint {
            interval,
            downgrades: Mutex::new(DowngradeState {
                capabilities: BTreeMap::new(),
                published: Vec::new(),
                last_publish: Instant::now(),
                finished_boundary_published: false,
                finished_cuts: BTreeMap::new(),
                highest_ever: EventTime::MIN,
            }),
            coordinator: Mutex::new(None),
            participants: Mutex::new(Participants::default()),
            dir: Some(dir),
            resume,
            keep: keep.max(1),
            committed: AtomicU64::new(committed),
            highest_boundary: AtomicU64::new(0),
            records_per_epoch: None,
            records_since_boundary: AtomicU64::new(0),
            max_in_flight: Some(MAX_EPOCHS_IN_FLIGHT),
            ended_at: Mutex::new(BTreeMap::new()),
            commit_latencies: Mutex::new(std::collections::VecDeque::new()),
            failure: Mutex::new(None),
            cluster: super::cluster::Role::Single,
        }
    }

    /// Also ends an epoch once `records` input records were read since the last boundary
    /// (whichever comes first with the interval; `Duration::MAX` as the interval leaves only this).
    pub fn with_records_per_epoch(mut self, records: Option<u64>) -> Self {
        self.records_per_epoch = records.filter(|n| *n > 0);
        self
    }

    /// Sources count the records they read (once per activation), for
    /// [`LiveCheckpoint::with_records_per_epoch`].
    pub fn count_records(&self, records: u64) {
        if self.records_per_epoch.is_some() {
            self.records_since_boundary.fetch_add(records, Ordering::Relaxed);
        }
    }

    /// Checkpoints at most this many epochs at a time (published, not yet committed) — like
    /// Flink's `maxConcurrentCheckpoints`. Default: none for coordinators built by tests,
    /// [`MAX_EPOCHS_IN_FLIGHT`] for a query's.
    pub fn with_max_epochs_in_flight(mut self, epochs: Option<u64>) -> Self {
        self.max_in_flight = epochs.map(|n| n.max(1));
        self
    }

    fn epoch_is_due(&self, state: &DowngradeState) -> bool {
        // While earlier epochs are still being checkpointed (state snapshots slower than the
        // interval, a backlog read at full speed), the current epoch grows instead: otherwise
        // operators would snapshot boundary after boundary in one activation, holding back
        // every commit until they are through.
        let next = state.published.last().map_or(0, |b| b.epoch + 1);
        let committed = self.committed.load(Ordering::Acquire);
        if self.max_in_flight.is_some_and(|max| next.saturating_sub(committed) >= max) {
            return false;
        }
        state.last_publish.elapsed() >= self.interval
            || self.records_per_epoch.is_some_and(|n| self.records_since_boundary.load(Ordering::Relaxed) >= n)
    }

    /// The epoch the query resumed after, and where the next epoch starts; `None` for a fresh start.
    pub fn resumed(&self) -> Option<(u64, EventTime)> {
        match &self.resume {
            Resume::Fresh => None,
            Resume::FromEpoch { epoch, offsets, .. } => Some((*epoch, offsets.end)),
        }
    }

    /// Where partition `partition` of `source` resumes, if the query resumed.
    pub fn resume_cut(&self, source: &str, partition: usize) -> Option<PartitionOffset> {
        match &self.resume {
            Resume::Fresh => None,
            Resume::FromEpoch { offsets, .. } => {
                offsets.sources.get(source)?.iter().find(|cut| cut.partition == partition).cloned()
            }
        }
    }

    /// The snapshot of `operator` on `worker` to restore, if the query resumed.
    pub fn resume_state(&self, operator: &str, worker: usize) -> Result<Option<Vec<u8>>, CheckpointError> {
        match (&self.resume, &self.dir) {
            (Resume::FromEpoch { epoch, state_files, .. }, Some(dir)) => {
                if state_files.iter().any(|f| f.operator == operator && f.worker == worker) {
                    dir.read_state(operator, worker, *epoch).map(Some)
                } else {
                    Ok(None)
                }
            }
            _ => Ok(None),
        }
    }

    /// The snapshot file (or RocksDB checkpoint directory) of `operator` on `worker` that the
    /// last committed epoch lists, if the query resumed: restore a `StateStore` from it with
    /// [`crate::state::StateStore::restore_snapshot`].
    pub fn resume_state_file(&self, operator: &str, worker: usize) -> Option<super::StateFile> {
        match &self.resume {
            Resume::FromEpoch { state_files, .. } => {
                state_files.iter().find(|f| f.operator == operator && f.worker == worker).cloned()
            }
            Resume::Fresh => None,
        }
    }

    /// The checkpoint directory (`None` only for coordinators built by tests without one).
    pub fn dir(&self) -> Option<&CheckpointDir> {
        self.dir.as_ref()
    }

    /// Registers a source instance with the capability it starts at (`None`: it reads nothing);
    /// `partitions` is the source's total partition count.
    pub fn register_source(&self, source: &str, partitions: usize, worker: usize, capability: Option<EventTime>) {
        if let Some(member) = self.cluster.member() {
            return member.register_source(source, partitions, worker, capability);
        }
        self.participants.lock().expect("participants").sources.insert(source.to_string(), partitions);
        let mut state = self.downgrades.lock().expect("checkpoint lock");
        state.capabilities.insert((source.to_string(), worker), capability);
        if let Some(capability) = capability {
            state.highest_ever = state.highest_ever.max(capability);
        }
    }

    /// The offsets the query resumes from (`offsets/<epoch>` of the last committed epoch).
    pub fn resume_offsets(&self) -> Option<super::EpochOffsets> {
        match &self.resume {
            Resume::Fresh => None,
            Resume::FromEpoch { offsets, .. } => Some(offsets.clone()),
        }
    }

    /// Registers a stateful operator (it snapshots on every worker at every boundary).
    pub fn register_stateful(&self, operator: &str) {
        if let Some(member) = self.cluster.member() {
            return member.register_stateful(operator);
        }
        self.participants.lock().expect("participants").stateful_operators.insert(operator.to_string());
    }

    /// Registers a sink that prepares and commits epochs on every worker.
    pub fn register_sink(&self, sink: &str) {
        if let Some(member) = self.cluster.member() {
            return member.register_sink(sink);
        }
        self.participants.lock().expect("participants").sinks.insert(sink.to_string());
    }

    /// Starts coordinating, with every participant registered while the dataflow was built and
    /// `workers` workers in all. Call once, before any worker runs. In a cluster this is a
    /// barrier: process 0 seals once every process has registered its participants, and the
    /// other processes' calls return once process 0 has sealed (an error if one left first).
    pub fn seal(&self, workers: usize) -> Result<(), CheckpointError> {
        if self.cluster.before_seal()? {
            return Ok(());
        }
        let Some(dir) = self.dir.clone() else { return Ok(()) };
        let mut participants = self.participants.lock().expect("participants").clone();
        participants.workers = workers;
        let coordinator = EpochCoordinator::new(dir, participants, self.resumed());
        *self.coordinator.lock().expect("coordinator lock") = Some(coordinator);
        self.downgrades.lock().expect("checkpoint lock").last_publish = Instant::now();
        self.cluster.after_seal();
        Ok(())
    }

    /// Instead of [`LiveCheckpoint::seal`] when the dataflow could not be built here: in a
    /// cluster, the other processes' seals fail with `why`, so every process stops (nothing to do
    /// in one process).
    pub fn abandon_seal(&self, why: &str) {
        self.cluster.abandon(why);
    }

    /// Writes `operator`'s snapshot of `epoch` on `worker` and reports it.
    pub fn snapshot(&self, operator: &str, worker: usize, epoch: u64, bytes: &[u8]) -> Result<(), CheckpointError> {
        let dir = self.dir.as_ref().expect("a query's coordinator has a directory");
        let state = dir.write_state(operator, worker, epoch, bytes)?;
        self.report_state(epoch, state)
    }

    /// Called by a source instance *before* it stamps anything at `capability` (its new
    /// capability), and with `None` when it has finished. Publishes a boundary when the interval
    /// has passed (above every capability recorded so far, including this instance's previous
    /// one), then records the new capability. Returns every boundary published so far of the epochs
    /// not committed yet, so the source can report its cuts.
    pub fn source_downgrade(&self, source: &str, worker: usize, capability: Option<EventTime>) -> Vec<Boundary> {
        if let Some(member) = self.cluster.member() {
            // Under process 0's lock; what it published is in `published` before this returns.
            member.downgrade(source, worker, capability, self.records_since_boundary.swap(0, Ordering::Relaxed));
            return self.boundaries_since(self.committed.load(Ordering::Acquire));
        }
        let mut state = self.downgrades.lock().expect("checkpoint lock");
        let mut coordinator = self.coordinator.lock().expect("coordinator lock");
        let Some(coordinator) = coordinator.as_mut() else {
            // Not sealed yet (still building): nothing is published.
            state.capabilities.insert((source.to_string(), worker), capability);
            if let Some(capability) = capability {
                state.highest_ever = state.highest_ever.max(capability);
            }
            return Vec::new();
        };
        let mut published = Vec::new();
        if !state.finished_boundary_published && self.epoch_is_due(&state) {
            let current = state.capabilities.values().flatten().max().copied().unwrap_or(EventTime::MIN);
            let highest = current.max(state.highest_ever);
            let (epoch, boundary) = coordinator.publish_boundary(highest);
            state.published.push(Boundary { epoch, boundary });
            self.ended_at.lock().expect("epoch end times").insert(epoch, Instant::now());
            published.push(epoch);
            state.last_publish = Instant::now();
            self.records_since_boundary.store(0, Ordering::Relaxed);
            self.highest_boundary.store(boundary.as_millis(), Ordering::Release);
        }
        state.capabilities.insert((source.to_string(), worker), capability);
        if let Some(capability) = capability {
            state.highest_ever = state.highest_ever.max(capability);
        }
        if !state.finished_boundary_published && state.capabilities.values().all(Option::is_none) {
            // The input has ended: the last epoch ends with it.
            let (epoch, _) = coordinator.publish_boundary(EventTime::MAX);
            state.published.push(Boundary { epoch, boundary: EventTime::MAX });
            self.ended_at.lock().expect("epoch end times").insert(epoch, Instant::now());
            published.push(epoch);
            state.finished_boundary_published = true;
            self.highest_boundary.store(u64::MAX, Ordering::Release);
        }
        // Every process of a cluster has the new boundaries before any source can stamp above them.
        self.cluster.published(&state.published[state.published.len() - published.len()..]);
        // Finished instances cut every new boundary at their end.
        for epoch in published {
            for ((source, _), cuts) in &state.finished_cuts {
                for cut in cuts {
                    if let Err(error) = coordinator.report_cut(epoch, source, cut.clone()) {
                        self.record_failure(format!("cannot report a finished source's cut: {error}"));
                    }
                }
            }
        }
        if !state.finished_cuts.is_empty() {
            if let Err(error) = self.advance(coordinator) {
                self.record_failure(error.to_string());
            }
        }
        // Epochs already committed have every cut: the source needs only the others.
        let first = state.published.partition_point(|b| b.epoch < self.committed.load(Ordering::Acquire));
        state.published[first..].to_vec()
    }

    /// Called by a source instance that has read everything, with its partitions' final cuts:
    /// records that it has finished (as `source_downgrade(.., None)` does) and reports those cuts
    /// for every boundary published from now on. Returns the boundaries published so far, whose
    /// cuts the instance reports itself.
    pub fn source_finished(&self, source: &str, worker: usize, final_cuts: Vec<PartitionOffset>) -> Vec<Boundary> {
        if let Some(member) = self.cluster.member() {
            member.finished(source, worker, final_cuts, self.records_since_boundary.swap(0, Ordering::Relaxed));
            return self.boundaries_since(self.committed.load(Ordering::Acquire));
        }
        self.downgrades.lock().expect("checkpoint lock").finished_cuts.insert((source.to_string(), worker), final_cuts);
        self.source_downgrade(source, worker, None)
    }

    /// The boundaries published so far, in order.
    pub fn boundaries(&self) -> Vec<Boundary> {
        self.downgrades.lock().expect("checkpoint lock").published.clone()
    }

    /// The boundaries published so far of epochs `epoch` and later, in order: what a participant
    /// that has handled every earlier epoch still has to look at (the whole list grows with
    /// every epoch of a long run).
    pub fn boundaries_since(&self, epoch: u64) -> Vec<Boundary> {
        let state = self.downgrades.lock().expect("checkpoint lock");
        let first = state.published.partition_point(|b| b.epoch < epoch);
        state.published[first..].to_vec()
    }

    /// The highest boundary published (ms), without taking a lock: an operator whose frontier is
    /// below it has a snapshot to take.
    pub fn highest_boundary(&self) -> Option<EventTime> {
        match self.highest_boundary.load(Ordering::Acquire) {
            0 => None,
            ms => Some(EventTime::from_millis(ms)),
        }
    }

    /// A source partition's cut at the end of `epoch`.
    pub fn report_cut(&self, epoch: u64, source: &str, cut: PartitionOffset) -> Result<(), CheckpointError> {
        if let Some(member) = self.cluster.member() {
            return member.report_cut(epoch, source, cut);
        }
        let mut guard = self.coordinator.lock().expect("coordinator lock");
        let coordinator = guard.as_mut().ok_or_else(not_sealed)?;
        coordinator.report_cut(epoch, source, cut)?;
        self.advance(coordinator)
    }

    /// An operator's snapshot of `epoch` on one worker (already written to the directory).
    pub fn report_state(&self, epoch: u64, state: StateFileRef) -> Result<(), CheckpointError> {
        if let Some(member) = self.cluster.member() {
            return member.report_state(epoch, state);
        }
        let mut guard = self.coordinator.lock().expect("coordinator lock");
        let coordinator = guard.as_mut().ok_or_else(not_sealed)?;
        coordinator.report_state(epoch, state)?;
        self.advance(coordinator)
    }

    /// A sink's output of `epoch` on one worker is durable and not yet visible.
    pub fn report_prepared(&self, epoch: u64, sink: &str, worker: usize) -> Result<(), CheckpointError> {
        self.record_sink_epoch(epoch, sink, worker, SinkEpochStatus::Prepared)?;
        if let Some(member) = self.cluster.member() {
            return member.report_prepared(epoch, sink, worker);
        }
        let mut guard = self.coordinator.lock().expect("coordinator lock");
        let coordinator = guard.as_mut().ok_or_else(not_sealed)?;
        coordinator.report_prepared(epoch, sink, worker)?;
        self.advance(coordinator)
    }

    /// Records that a sink instance made its output of `epoch` visible (renamed its file,
    /// committed its transaction), for `weir checkpoint inspect`.
    pub fn report_sink_committed(&self, epoch: u64, sink: &str, worker: usize) -> Result<(), CheckpointError> {
        self.record_sink_epoch(epoch, sink, worker, SinkEpochStatus::Committed)
    }

    /// Writes `sinks/<sink>/<worker>/<epoch>` (each process writes its own workers' records into
    /// the shared directory).
    fn record_sink_epoch(
        &self,
        epoch: u64,
        sink: &str,
        worker: usize,
        status: SinkEpochStatus,
    ) -> Result<(), CheckpointError> {
        let Some(dir) = &self.dir else { return Ok(()) };
        let record =
            super::SinkEpochRecord { sink: sink.to_string(), worker, epoch, status, detail: serde_json::Value::Null };
        dir.write_sink_record(&record)
    }

    fn advance(&self, coordinator: &mut EpochCoordinator) -> Result<(), CheckpointError> {
        let committed = coordinator.advance()?;
        if !committed.is_empty() {
            let mut ended_at = self.ended_at.lock().expect("epoch end times");
            let mut latencies = self.commit_latencies.lock().expect("commit latencies");
            for epoch in &committed {
                if let Some(ended) = ended_at.remove(epoch) {
                    if latencies.len() == MAX_LATENCIES {
                        latencies.pop_front();
                    }
                    latencies.push_back(ended.elapsed());
                }
            }
        }
        if let Some(epoch) = coordinator.last_committed() {
            self.committed.fetch_max(epoch + 1, Ordering::AcqRel);
        }
        if !committed.is_empty() {
            self.cluster.committed(self.committed.load(Ordering::Acquire));
        }
        if !committed.is_empty() {
            if let Some(dir) = &self.dir {
                // Not `cleanup`: workers may be writing temporary files of later epochs right now.
                dir.remove_old_epochs(self.keep)?;
            }
        }
        Ok(())
    }

    /// How long the most recent epochs (up to 10,000) took from their end (boundary published) to
    /// their commit (`commits/N` durable), oldest first: the checkpoint's commit latency.
    pub fn commit_latencies(&self) -> Vec<Duration> {
        self.commit_latencies.lock().expect("commit latencies").iter().copied().collect()
    }

    /// In a cluster: how this process takes part (set once, before the coordinator is shared).
    pub(super) fn with_cluster_role(mut self, role: super::cluster::Role) -> Self {
        self.cluster = role;
        self
    }

    /// What the query resumes from.
    pub(super) fn resume_point(&self) -> &Resume {
        &self.resume
    }

    /// Another process of a cluster: boundaries process 0 published (pushed to it before any
    /// source could stamp above them).
    pub(super) fn receive_boundaries(&self, boundaries: &[Boundary]) {
        let mut state = self.downgrades.lock().expect("checkpoint lock");
        for boundary in boundaries {
            if state.published.last().is_none_or(|last| last.epoch < boundary.epoch) {
                state.published.push(*boundary);
                self.highest_boundary.store(boundary.boundary.as_millis(), Ordering::Release);
            }
        }
    }

    /// Another process of a cluster: process 0 committed every epoch before `next`.
    pub(super) fn receive_committed(&self, next: u64) {
        self.committed.fetch_max(next, Ordering::AcqRel);
    }

    /// Why checkpointing cannot go on, if it cannot (a commit or cut that could not be written
    /// where no caller could be told); event sources fail the query with it.
    pub fn failure(&self) -> Option<String> {
        self.failure.lock().expect("checkpoint failure").clone()
    }

    fn record_failure(&self, message: String) {
        tracing::error!(%message, "checkpoint coordinator");
        self.failure.lock().expect("checkpoint failure").get_or_insert(message);
    }

    /// The last committed epoch: sinks may make its output (and every earlier epoch's) visible.
    pub fn last_committed(&self) -> Option<u64> {
        self.committed.load(Ordering::Acquire).checked_sub(1)
    }
}

/// How many epochs a query's coordinator checkpoints at a time (published, not committed).
pub const MAX_EPOCHS_IN_FLIGHT: u64 = 2;

/// How many epochs' commit latencies are kept.
const MAX_LATENCIES: usize = 10_000;

fn not_sealed() -> CheckpointError {
    CheckpointError::Inconsistent {
        path: std::path::PathBuf::new(),
        problem: "a report came before the checkpoint coordinator was sealed".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::{CheckpointMetadata, DataflowFingerprint, WatermarkState};

    fn open(name: &str, participants: Participants) -> (std::path::PathBuf, EpochCoordinator) {
        let path = std::env::temp_dir().join(format!("weir-live-checkpoint-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        let metadata = CheckpointMetadata::new("q", name, participants.workers, DataflowFingerprint::default());
        let (dir, resume) = CheckpointDir::open_or_create(&path, &metadata).unwrap();
        assert!(matches!(resume, Resume::Fresh));
        (path, EpochCoordinator::new(dir, participants, None))
    }

    fn cut(partition: usize) -> PartitionOffset {
        let watermark = WatermarkState { max_event_time: None, watermark: EventTime::MIN, idle: false };
        PartitionOffset { partition, position: 0.into(), watermark }
    }

    /// Boundaries are above every capability recorded when they are published, and each source's
    /// later downgrades see them; the last boundary comes when every instance has finished.
    #[test]
    fn boundaries_are_above_every_recorded_capability() {
        let participants =
            Participants { sources: BTreeMap::from([("s".to_string(), 2)]), workers: 2, ..Participants::default() };
        let (path, coordinator) = open("boundaries", participants);
        let live = LiveCheckpoint::new(coordinator, Duration::ZERO, [("s".to_string(), 0), ("s".to_string(), 1)]);
        assert!(live.highest_boundary().is_none());
        live.source_downgrade("s", 0, Some(EventTime::from_millis(100)));
        let seen = live.source_downgrade("s", 1, Some(EventTime::from_millis(50)));
        // The second call published above 100 (worker 0's capability), before recording 50.
        let last = *seen.last().unwrap();
        assert!(last.boundary > EventTime::from_millis(100), "{seen:?}");
        assert_eq!(live.highest_boundary(), Some(last.boundary));
        live.source_downgrade("s", 0, None);
        let seen = live.source_downgrade("s", 1, None);
        assert_eq!(seen.last().unwrap().boundary, EventTime::MAX);
        // Boundaries strictly increase.
        assert!(seen.windows(2).all(|w| w[0].boundary < w[1].boundary && w[0].epoch + 1 == w[1].epoch));
        std::fs::remove_dir_all(path).unwrap();
    }

    /// A source instance that finished at a high capability still bounds every later boundary
    /// from below: its last records were stamped there.
    #[test]
    fn boundaries_stay_above_finished_instances() {
        let participants =
            Participants { sources: BTreeMap::from([("s".to_string(), 2)]), workers: 2, ..Participants::default() };
        let (path, coordinator) = open("finished", participants);
        let live = LiveCheckpoint::new(coordinator, Duration::ZERO, [("s".to_string(), 0), ("s".to_string(), 1)]);
        live.source_downgrade("s", 0, Some(EventTime::from_millis(1_000)));
        live.source_downgrade("s", 1, Some(EventTime::from_millis(10)));
        live.source_finished("s", 0, vec![cut(0)]);
        let boundaries = live.source_downgrade("s", 1, Some(EventTime::from_millis(20)));
        let last = boundaries.last().unwrap();
        assert!(last.boundary > EventTime::from_millis(1_000), "{boundaries:?}");
        std::fs::remove_dir_all(path).unwrap();
    }

    /// With a record count per epoch, a boundary comes once that many records were read, even
    /// though the interval has not passed; and not before.
    #[test]
    fn epochs_end_after_a_record_count() {
        let participants =
            Participants { sources: BTreeMap::from([("s".to_string(), 1)]), workers: 1, ..Participants::default() };
        let (path, coordinator) = open("records", participants);
        let live =
            LiveCheckpoint::new(coordinator, Duration::MAX, [("s".to_string(), 0)]).with_records_per_epoch(Some(100));
        live.count_records(99);
        assert!(live.source_downgrade("s", 0, Some(EventTime::from_millis(10))).is_empty(), "99 records: no epoch yet");
        live.count_records(1);
        let boundaries = live.source_downgrade("s", 0, Some(EventTime::from_millis(20)));
        assert_eq!(boundaries.len(), 1, "100 records end an epoch");
        assert!(boundaries[0].boundary > EventTime::from_millis(10));
        assert_eq!(live.source_downgrade("s", 0, Some(EventTime::from_millis(30))).len(), 1, "the count starts over");
        std::fs::remove_dir_all(path).unwrap();
    }

    /// With one epoch in flight, no boundary is published until the previous epoch committed.
    #[test]
    fn epochs_in_flight_are_limited() {
        let participants =
            Participants { sources: BTreeMap::from([("s".to_string(), 1)]), workers: 1, ..Participants::default() };
        let (path, coordinator) = open("in-flight", participants);
        let live =
            LiveCheckpoint::new(coordinator, Duration::ZERO, [("s".to_string(), 0)]).with_max_epochs_in_flight(Some(1));
        assert_eq!(live.source_downgrade("s", 0, Some(EventTime::from_millis(10))).len(), 1, "epoch 0 published");
        assert_eq!(live.source_downgrade("s", 0, Some(EventTime::from_millis(20))).len(), 1, "epoch 0 in flight");
        live.report_cut(0, "s", cut(0)).unwrap();
        assert_eq!(live.last_committed(), Some(0));
        let after = live.source_downgrade("s", 0, Some(EventTime::from_millis(30)));
        assert_eq!(after.iter().map(|b| b.epoch).collect::<Vec<_>>(), vec![1], "epoch 1 once 0 committed");
        std::fs::remove_dir_all(path).unwrap();
    }

    /// An epoch commits once its cuts and prepared sinks are in, and `last_committed` follows.
    #[test]
    fn reports_commit_epochs_in_order() {
        let participants = Participants {
            sources: BTreeMap::from([("s".to_string(), 1)]),
            sinks: ["out".to_string()].into(),
            workers: 1,
            ..Participants::default()
        };
        let (path, coordinator) = open("reports", participants);
        let live = LiveCheckpoint::new(coordinator, Duration::ZERO, [("s".to_string(), 0)]);
        live.source_downgrade("s", 0, Some(EventTime::from_millis(10)));
        let boundaries = live.source_downgrade("s", 0, Some(EventTime::from_millis(20)));
        assert_eq!(boundaries.len(), 2);
        assert_eq!(live.last_committed(), None);
        live.report_prepared(1, "out", 0).unwrap();
        live.report_cut(1, "s", cut(0)).unwrap();
        assert_eq!(live.last_committed(), None, "epoch 0 is not complete, so 1 cannot commit");
        live.report_cut(0, "s", cut(0)).unwrap();
        live.report_prepared(0, "out", 0).unwrap();
        assert_eq!(live.last_committed(), Some(1));
        assert_eq!(live.commit_latencies().len(), 2, "one commit latency per committed epoch");
        assert!(live.report_cut(7, "s", cut(0)).is_err(), "an epoch never published is refused");
        std::fs::remove_dir_all(path).unwrap();
    }

    /// Many threads downgrading at once never see a boundary at or below a capability recorded
    /// before it was published.
    #[test]
    fn concurrent_downgrades_keep_the_invariant() {
        let participants =
            Participants { sources: BTreeMap::from([("s".to_string(), 4)]), workers: 4, ..Participants::default() };
        let (path, coordinator) = open("concurrent", participants);
        let live = std::sync::Arc::new(LiveCheckpoint::new(
            coordinator,
            Duration::from_micros(50),
            (0..4).map(|w| ("s".to_string(), w)),
        ));
        let threads: Vec<_> = (0..4)
            .map(|worker| {
                let live = live.clone();
                std::thread::spawn(move || {
                    let mut previous = EventTime::MIN;
                    let mut seen = 0;
                    for step in 1..2_000u64 {
                        let capability = EventTime::from_millis(step * 10 + worker as u64);
                        let boundaries = live.source_downgrade("s", worker, Some(capability));
                        // A boundary this worker sees for the first time was published after its
                        // previous capability was recorded, so it must be above that capability.
                        for b in &boundaries[seen..] {
                            assert!(b.boundary > previous, "boundary {b:?} not above capability {previous}");
                        }
                        seen = boundaries.len();
                        previous = capability;
                    }
                    previous
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let boundaries = live.boundaries();
        assert!(boundaries.len() > 1);
        assert!(boundaries.windows(2).all(|w| w[0].boundary < w[1].boundary));
        std::fs::remove_dir_all(path).unwrap();
    }
}
