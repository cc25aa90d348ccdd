//! Per-partition cuts: where a partition stands at an epoch boundary.
//!
//! A source stamps each partition's records with times that never go down as its offsets go
//! up. The *cut* of a partition at boundary `T` is the first offset whose stamp is `>= T`:
//! everything before it belongs to epochs that end at or before `T`. The boundary may become
//! known after the partition has already read past it (in a cluster it is broadcast), so the
//! source keeps a short history of its stamp changes, [`PartitionCuts`], and computes the cut
//! from it.

use std::collections::VecDeque;

use crate::time::EventTime;

use super::records::WatermarkState;

/// One stamp change of a partition: from `position` on, records are stamped at `stamp` (or
/// later), and the partition's watermark state just before `position` was `watermark`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StampChange {
    /// The new stamp.
    pub stamp: EventTime,
    /// The first position stamped at it (the JSON the reader reports).
    pub position: serde_json::Value,
    /// The watermark state at that position.
    pub watermark: WatermarkState,
}

/// The stamp changes of one partition since the last boundary that was cut.
#[derive(Clone, Debug, Default)]
pub struct PartitionCuts {
    changes: VecDeque<StampChange>,
    finished: Option<(serde_json::Value, WatermarkState)>,
}

impl PartitionCuts {
    /// No changes recorded.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that from `position` on the partition stamps at `stamp`. Call it whenever the
    /// stamp changes (also when no record is emitted at it), with the position of the next record
    /// to be read and the watermark state there. A stamp that does not increase is ignored.
    pub fn stamp_changed(&mut self, stamp: EventTime, position: serde_json::Value, watermark: WatermarkState) {
        if self.changes.back().is_some_and(|last| last.stamp >= stamp) {
            return;
        }
        self.changes.push_back(StampChange { stamp, position, watermark });
    }

    /// Records that the partition has ended at `position`: every later boundary cuts it there.
    pub fn finished(&mut self, position: serde_json::Value, watermark: WatermarkState) {
        self.finished = Some((position, watermark));
    }

    /// The cut at `boundary`: the position of the first record stamped at or after it, with the
    /// watermark state there. `None` while the partition has not stamped at or after `boundary`
    /// yet (the cut is not known), unless it has finished.
    pub fn cut(&self, boundary: EventTime) -> Option<(serde_json::Value, WatermarkState)> {
        self.changes
            .iter()
            .find(|change| change.stamp >= boundary)
            .map(|change| (change.position.clone(), change.watermark))
            .or_else(|| self.finished.clone())
    }

    /// Forgets the changes no boundary at or after `boundary` needs (those stamped before it).
    pub fn forget_before(&mut self, boundary: EventTime) {
        while self.changes.front().is_some_and(|change| change.stamp < boundary) {
            self.changes.pop_front();
        }
    }

    /// How many changes are kept (bounded by the number of stamps since the last cut boundary).
    pub fn len(&self) -> usize {
        self.changes.len()
    }

    /// Whether no change is kept.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator (the runtime has no `rand` dependency).
    struct XorShift(u64);
    impl XorShift {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
    }

    fn state(ms: u64) -> WatermarkState {
        WatermarkState {
            max_event_time: Some(EventTime::from_millis(ms)),
            watermark: EventTime::from_millis(ms),
            idle: false,
        }
    }

    /// A random partition read in random batches, each batch stamped at the partition's
    /// watermark; the cut at any boundary must be the first offset whose stamp is `>= T`,
    /// computed directly from the per-record stamps.
    #[test]
    fn the_cut_is_the_first_offset_stamped_at_or_after_the_boundary() {
        for seed in 0..50 {
            let mut rng = XorShift(seed * 2 + 1);
            let mut cuts = PartitionCuts::new();
            let mut stamps: Vec<u64> = Vec::new(); // per record (offset = index)
            let mut watermark = 0u64;
            let mut offset = 0u64;
            let mut last_stamp = None;
            while offset < 500 {
                // The stamp of the next batch: the watermark reached so far (never decreasing).
                let stamp = watermark;
                if last_stamp != Some(stamp) {
                    cuts.stamp_changed(EventTime::from_millis(stamp), offset.into(), state(watermark));
                    last_stamp = Some(stamp);
                }
                let batch = rng.below(20);
                for _ in 0..batch {
                    stamps.push(stamp);
                    watermark += rng.below(3);
                }
                offset += batch;
            }
            for boundary in (0..=stamps.last().copied().unwrap_or(0) + 2).step_by(3) {
                let expected = stamps.iter().position(|&s| s >= boundary).map(|o| serde_json::json!(o as u64));
                let found = cuts.cut(EventTime::from_millis(boundary)).map(|(position, _)| position);
                // The partition's stamp may reach the boundary with no record read at it yet: the
                // cut is then the next offset (where the next record, stamped >= T, will be).
                match expected {
                    Some(expected) => assert_eq!(found, Some(expected), "seed {seed} boundary {boundary}"),
                    None => assert!(found.is_none_or(|p| p == serde_json::json!(stamps.len() as u64)), "seed {seed}"),
                }
            }
        }
    }

    #[test]
    fn forgetting_keeps_what_later_boundaries_need_and_finished_partitions_cut_at_their_end() {
        let mut cuts = PartitionCuts::new();
        for (stamp, offset) in [(0u64, 0u64), (10, 5), (20, 9), (30, 15)] {
            cuts.stamp_changed(EventTime::from_millis(stamp), offset.into(), state(stamp));
        }
        cuts.stamp_changed(EventTime::from_millis(25), 99.into(), state(25)); // not an increase: ignored
        assert_eq!(cuts.cut(EventTime::from_millis(15)).unwrap().0, serde_json::json!(9));
        assert_eq!(cuts.cut(EventTime::from_millis(15)).unwrap().1, state(20));
        cuts.forget_before(EventTime::from_millis(15));
        assert_eq!(cuts.len(), 2);
        assert_eq!(cuts.cut(EventTime::from_millis(30)).unwrap().0, serde_json::json!(15));
        assert_eq!(cuts.cut(EventTime::from_millis(31)), None, "not reached yet");
        cuts.finished(serde_json::json!(40), state(35));
        assert_eq!(cuts.cut(EventTime::from_millis(31)).unwrap().0, serde_json::json!(40));
        assert_eq!(cuts.cut(EventTime::MAX).unwrap().0, serde_json::json!(40));
    }
}
