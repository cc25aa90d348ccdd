//! Batches waiting until the frontier says their time is complete.
//!
//! Stateful operators apply input in timestamp order, and only once no earlier record can still
//! arrive: that is what makes their output independent of worker count and batch boundaries.

use std::collections::BTreeMap;

use timely::dataflow::operators::{Capability, InputCapability};
use timely::progress::frontier::AntichainRef;
use weir_runtime::time::EventTime;

/// Input batches per timestamp, each time with a capability to emit at it.
pub struct Pending<D> {
    by_time: BTreeMap<EventTime, (Capability<EventTime>, Vec<Vec<D>>)>,
}

impl<D> Default for Pending<D> {
    fn default() -> Self {
        Pending { by_time: BTreeMap::new() }
    }
}

impl<D> Pending<D> {
    /// Nothing pending.
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps `batch` (taken, leaving it empty) until its time is complete.
    pub fn stash(&mut self, cap: &InputCapability<EventTime>, batch: &mut Vec<D>) {
        let entry = self.by_time.entry(*cap.time()).or_insert_with(|| (cap.retain(0), Vec::new()));
        entry.1.push(std::mem::take(batch));
    }

    /// Removes and returns the earliest pending time if the frontier has passed it (or the input
    /// has ended, `frontier` empty), with its capability and batches.
    pub fn pop_complete(
        &mut self,
        frontier: AntichainRef<'_, EventTime>,
    ) -> Option<(Capability<EventTime>, Vec<Vec<D>>)> {
        let entry = self.by_time.first_entry()?;
        if frontier.less_equal(entry.key()) {
            return None;
        }
        Some(entry.remove())
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.by_time.is_empty()
    }

    /// The earliest pending time.
    pub fn first_time(&self) -> Option<EventTime> {
        self.by_time.keys().next().copied()
    }
}

/// The watermark an input frontier stands for: its least time, or `None` once the input has
/// ended (every time complete).
pub fn watermark_of(frontier: AntichainRef<'_, EventTime>) -> Option<EventTime> {
    frontier.iter().min().copied()
}
