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
//! One process only: the lock does not span a cluster (§3 describes the broadcast it needs).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::time::EventTime;

use super::coordinator::EpochCoordinator;
use super::error::CheckpointError;
use super::records::{PartitionOffset, StateFileRef};

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
}

/// The checkpoint coordinator of one running query, shared by its workers (see the module docs).
#[derive(Debug)]
pub struct LiveCheckpoint {
    interval: Duration,
    downgrades: Mutex<DowngradeState>,
    coordinator: Mutex<EpochCoordinator>,
    /// The last committed epoch + 1 (0: none yet).
    committed: AtomicU64,
    /// The highest published boundary, readable without a lock (ms; `u64::MAX` for the last).
    highest_boundary: AtomicU64,
}

impl LiveCheckpoint {
    /// A coordinator publishing a boundary every `interval` of processing time; `source_instances`
    /// names every (source, worker) that will report its capability.
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
            }),
            coordinator: Mutex::new(coordinator),
            committed: AtomicU64::new(committed),
            highest_boundary: AtomicU64::new(0),
        }
    }

    /// Called by a source instance *before* it stamps anything at `capability` (its new
    /// capability), and with `None` when it has finished. Publishes a boundary when the interval
    /// has passed (above every capability recorded so far, including this instance's previous
    /// one), then records the new capability. Returns every boundary published so far, so the
    /// source can report its cuts.
    pub fn source_downgrade(&self, source: &str, worker: usize, capability: Option<EventTime>) -> Vec<Boundary> {
        let mut state = self.downgrades.lock().expect("checkpoint lock");
        if !state.finished_boundary_published && state.last_publish.elapsed() >= self.interval {
            let highest = state.capabilities.values().flatten().max().copied().unwrap_or(EventTime::MIN);
            self.publish(&mut state, highest);
        }
        state.capabilities.insert((source.to_string(), worker), capability);
        if !state.finished_boundary_published && state.capabilities.values().all(Option::is_none) {
            // The input has ended: the last epoch ends with it.
            let (epoch, _) = self.coordinator.lock().expect("coordinator lock").publish_boundary(EventTime::MAX);
            state.published.push(Boundary { epoch, boundary: EventTime::MAX });
            state.finished_boundary_published = true;
            self.highest_boundary.store(u64::MAX, Ordering::Release);
        }
        state.published.clone()
    }

    fn publish(&self, state: &mut DowngradeState, above: EventTime) {
        let (epoch, boundary) = self.coordinator.lock().expect("coordinator lock").publish_boundary(above);
        state.published.push(Boundary { epoch, boundary });
        state.last_publish = Instant::now();
        self.highest_boundary.store(boundary.as_millis(), Ordering::Release);
    }

    /// The boundaries published so far, in order.
    pub fn boundaries(&self) -> Vec<Boundary> {
        self.downgrades.lock().expect("checkpoint lock").published.clone()
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
        let mut coordinator = self.coordinator.lock().expect("coordinator lock");
        coordinator.report_cut(epoch, source, cut)?;
        self.advance(&mut coordinator)
    }

    /// An operator's snapshot of `epoch` on one worker (already written to the directory).
    pub fn report_state(&self, epoch: u64, state: StateFileRef) -> Result<(), CheckpointError> {
        let mut coordinator = self.coordinator.lock().expect("coordinator lock");
        coordinator.report_state(epoch, state)?;
        self.advance(&mut coordinator)
    }

    /// A sink's output of `epoch` on one worker is durable and not yet visible.
    pub fn report_prepared(&self, epoch: u64, sink: &str, worker: usize) -> Result<(), CheckpointError> {
        let mut coordinator = self.coordinator.lock().expect("coordinator lock");
        coordinator.report_prepared(epoch, sink, worker)?;
        self.advance(&mut coordinator)
    }

    fn advance(&self, coordinator: &mut EpochCoordinator) -> Result<(), CheckpointError> {
        coordinator.advance()?;
        if let Some(epoch) = coordinator.last_committed() {
            self.committed.fetch_max(epoch + 1, Ordering::AcqRel);
        }
        Ok(())
    }

    /// The last committed epoch: sinks may make its output (and every earlier epoch's) visible.
    pub fn last_committed(&self) -> Option<u64> {
        self.committed.load(Ordering::Acquire).checked_sub(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::{
        CheckpointDir, CheckpointMetadata, DataflowFingerprint, Participants, Resume, WatermarkState,
    };

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
