//! What a checkpointing query's sources record so that their cuts can be computed, and what a
//! resumed source starts from.
//!
//! When the query checkpoints ([`QueryContext::records_cuts`]), every instance of a source (one
//! per worker) keeps, per partition it reads, a [`PartitionCuts`]: the partition's position and
//! watermark state each time the instance stamps its batches at a new time. The instance's
//! [`SourceCuts`] is registered in the context under the source's description and the worker
//! ([`QueryContext::source_cuts`]), so the coordinator can ask, once a boundary `T` is known,
//! for the cut of every partition of the instance at `T` ([`SourceCuts::cut`]).
//!
//! A resumed source ([`crate::source::event_source_resumed`]) is given a [`SourceResume`]: the
//! boundary the checkpoint ended at and every partition's recorded cut.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::checkpoint::{EpochOffsets, PartitionCuts, PartitionOffset, WatermarkState};
#[cfg(doc)]
use crate::context::QueryContext;
use crate::time::EventTime;

/// The cut history of one source instance (one source on one worker), shared between the
/// source operator, which feeds it, and the coordinator, which reads it.
pub type SharedSourceCuts = Arc<Mutex<SourceCuts>>;

/// The [`PartitionCuts`] of every partition one source instance reads.
#[derive(Clone, Debug, Default)]
pub struct SourceCuts {
    partitions: BTreeMap<usize, PartitionCuts>,
}

impl SourceCuts {
    /// No partition yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Notes that from `position` on, partition `partition` is stamped at `stamp` (see
    /// [`PartitionCuts::stamp_changed`]).
    pub fn stamp_changed(
        &mut self,
        partition: usize,
        stamp: EventTime,
        position: serde_json::Value,
        watermark: WatermarkState,
    ) {
        self.partitions.entry(partition).or_default().stamp_changed(stamp, position, watermark);
    }

    /// Notes that partition `partition` has ended at `position` (see [`PartitionCuts::finished`]).
    pub fn finished(&mut self, partition: usize, position: serde_json::Value, watermark: WatermarkState) {
        self.partitions.entry(partition).or_default().finished(position, watermark);
    }

    /// The partitions this instance reads, in order.
    pub fn partitions(&self) -> impl Iterator<Item = usize> + '_ {
        self.partitions.keys().copied()
    }

    /// One partition's history, if the instance reads it.
    pub fn partition(&self, partition: usize) -> Option<&PartitionCuts> {
        self.partitions.get(&partition)
    }

    /// The cut of every partition of this instance at `boundary`, in partition order, or `None`
    /// while some partition has not stamped at or after `boundary` yet (nor finished).
    pub fn cut(&self, boundary: EventTime) -> Option<Vec<PartitionOffset>> {
        self.partitions
            .iter()
            .map(|(&partition, cuts)| {
                cuts.cut(boundary).map(|(position, watermark)| PartitionOffset { partition, position, watermark })
            })
            .collect()
    }

    /// Forgets what no boundary at or after `boundary` needs (call it once the cut at `boundary`
    /// is durable; without it the history grows by one entry per stamp).
    pub fn forget_before(&mut self, boundary: EventTime) {
        for cuts in self.partitions.values_mut() {
            cuts.forget_before(boundary);
        }
    }
}

/// Where a source resumes: the boundary its checkpoint ended at and each partition's cut there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceResume {
    /// The boundary `T` the checkpoint ended at: the source's capability starts there (or higher),
    /// and every record it emits is stamped at or after it.
    pub boundary: EventTime,
    /// Every partition's cut, by partition index. A partition without one starts like a fresh
    /// partition ([`crate::source::Source::open`]), with a warning in the log.
    pub partitions: BTreeMap<usize, PartitionOffset>,
}

impl SourceResume {
    /// A resume point at `boundary` with these cuts.
    pub fn new(boundary: EventTime, cuts: impl IntoIterator<Item = PartitionOffset>) -> Self {
        SourceResume { boundary, partitions: cuts.into_iter().map(|cut| (cut.partition, cut)).collect() }
    }

    /// The resume point of the source described as `description` in a checkpoint's
    /// `offsets/N`: its cuts, at the epoch's end. `None` if the checkpoint does not list it.
    pub fn from_offsets(offsets: &EpochOffsets, description: &str) -> Option<Self> {
        offsets.sources.get(description).map(|cuts| SourceResume::new(offsets.end, cuts.iter().cloned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(ms: u64) -> WatermarkState {
        WatermarkState {
            max_event_time: Some(EventTime::from_millis(ms)),
            watermark: EventTime::from_millis(ms),
            idle: false,
        }
    }

    #[test]
    fn an_instance_cut_needs_every_partition() {
        let mut cuts = SourceCuts::new();
        cuts.stamp_changed(0, EventTime::MIN, 0.into(), state(0));
        cuts.stamp_changed(2, EventTime::MIN, 0.into(), state(0));
        cuts.stamp_changed(0, EventTime::from_millis(10), 4.into(), state(12));
        assert_eq!(cuts.cut(EventTime::MIN).unwrap().len(), 2);
        assert_eq!(cuts.cut(EventTime::from_millis(5)), None, "partition 2 has not stamped at 5 yet");
        cuts.finished(2, 7.into(), state(30));
        let cut = cuts.cut(EventTime::from_millis(5)).unwrap();
        assert_eq!(
            cut,
            vec![
                PartitionOffset { partition: 0, position: 4.into(), watermark: state(12) },
                PartitionOffset { partition: 2, position: 7.into(), watermark: state(30) },
            ]
        );
        cuts.forget_before(EventTime::from_millis(5));
        assert_eq!(cuts.partition(0).unwrap().len(), 1);
        assert_eq!(cuts.partitions().collect::<Vec<_>>(), vec![0, 2]);

        let offsets = EpochOffsets {
            epoch: 3,
            start: EventTime::from_millis(1),
            end: EventTime::from_millis(5),
            sources: BTreeMap::from([("S".to_string(), cut.clone())]),
        };
        let resume = SourceResume::from_offsets(&offsets, "S").unwrap();
        assert_eq!(resume.boundary, EventTime::from_millis(5));
        assert_eq!(resume.partitions[&2], cut[1]);
        assert!(SourceResume::from_offsets(&offsets, "other").is_none());
    }
}
