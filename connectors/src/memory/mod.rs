//! An in-memory sink for tests: keeps every record with the timely time it arrived at.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};

use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::StreamVec;
use weir_runtime::context::QueryContext;
use weir_runtime::time::EventTime;

/// Collects `(timely time, record)` pairs from any number of streams and workers into one shared
/// vector. Clones share the vector, so a test keeps one clone and attaches another in the dataflow.
pub struct Collector<D> {
    records: Arc<Mutex<Vec<(EventTime, D)>>>,
}

impl<D> Clone for Collector<D> {
    fn clone(&self) -> Self {
        Collector { records: self.records.clone() }
    }
}

impl<D> Default for Collector<D> {
    fn default() -> Self {
        Collector { records: Arc::new(Mutex::new(Vec::new())) }
    }
}

impl<D> std::fmt::Debug for Collector<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collector").field("records", &self.lock().len()).finish()
    }
}

impl<D: Clone + Send + 'static> Collector<D> {
    /// An empty collector.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records every record of `stream` on this worker (no exchange), with its timely time, and
    /// counts them as `output_rows` of sink `name`.
    pub fn attach<'scope>(&self, stream: StreamVec<'scope, EventTime, D>, ctx: &QueryContext, name: &str) {
        let records = self.records.clone();
        let metrics = ctx.metrics().sink(name);
        stream.sink(Pipeline, &format!("Collector[{name}]"), move |(input, _frontier)| {
            input.for_each_time(|time, data| {
                let time = *time.time();
                let mut records = records.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                let before = records.len();
                for chunk in data {
                    records.extend(chunk.drain(..).map(|record| (time, record)));
                }
                metrics.output_rows.fetch_add((records.len() - before) as u64, Ordering::Relaxed);
            });
        });
    }

    /// Removes and returns everything collected so far.
    pub fn take(&self) -> Vec<(EventTime, D)> {
        std::mem::take(&mut *self.lock())
    }

    /// A copy of everything collected so far.
    pub fn snapshot(&self) -> Vec<(EventTime, D)> {
        self.lock().clone()
    }
}

impl<D> Collector<D> {
    /// How many records were collected (and not yet taken).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether nothing was collected (or everything was taken).
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    fn lock(&self) -> MutexGuard<'_, Vec<(EventTime, D)>> {
        // A panicking test worker must not hide what was collected before it.
        self.records.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
