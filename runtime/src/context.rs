//! What the workers of one query in one process share: identity, counters, the stop flag and
//! the first failure.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::error::QueryError;
use crate::metrics::QueryMetrics;
use crate::state::StateBackend;

/// Shared by every worker thread of a query in this process; cheap to clone.
#[derive(Clone, Debug)]
pub struct QueryContext {
    inner: Arc<Inner>,
    state_backend: StateBackend,
}

#[derive(Debug)]
struct Inner {
    id: String,
    run_id: String,
    name: String,
    metrics: QueryMetrics,
    stop: AtomicBool,
    failure: Mutex<Option<QueryError>>,
    started_at: crate::time::EventTime,
    shared_watermarks: Mutex<HashMap<String, Arc<AtomicU64>>>,
    plan: crate::plan::PlanRegistry,
    explaining: AtomicBool,
    other_process: AtomicBool,
    records_cuts: AtomicBool,
    resume_offsets: Mutex<Option<Arc<crate::checkpoint::EpochOffsets>>>,
    checkpoint: Mutex<Option<Arc<crate::checkpoint::LiveCheckpoint>>>,
    source_cuts: Mutex<std::collections::BTreeMap<(String, usize), crate::source_cuts::SharedSourceCuts>>,
}

impl QueryContext {
    /// A context for a query with the given identity.
    pub fn new(id: impl Into<String>, run_id: impl Into<String>, name: impl Into<String>) -> Self {
        QueryContext {
            inner: Arc::new(Inner {
                id: id.into(),
                run_id: run_id.into(),
                name: name.into(),
                metrics: QueryMetrics::default(),
                stop: AtomicBool::new(false),
                failure: Mutex::new(None),
                started_at: crate::time::EventTime::now(),
                shared_watermarks: Mutex::new(HashMap::new()),
                plan: crate::plan::PlanRegistry::default(),
                explaining: AtomicBool::new(false),
                other_process: AtomicBool::new(false),
                records_cuts: AtomicBool::new(false),
                resume_offsets: Mutex::new(None),
                checkpoint: Mutex::new(None),
                source_cuts: Mutex::new(std::collections::BTreeMap::new()),
            }),
            state_backend: StateBackend::Memory,
        }
    }

    /// The checkpoint coordinator of this query, when it checkpoints.
    pub fn checkpoint(&self) -> Option<Arc<crate::checkpoint::LiveCheckpoint>> {
        self.inner.checkpoint.lock().unwrap().clone()
    }

    /// Fails the build of a stateful operator that cannot snapshot its state yet when the query
    /// checkpoints: a restart would lose that state without a word.
    pub fn checkpoint_unsupported(&self, operator: &str, kind: &str) -> Result<(), crate::error::BuildError> {
        if self.checkpoint().is_some() {
            return Err(crate::error::BuildError::invalid(
                format!("operator {operator} ({kind})"),
                "it cannot snapshot its state into a checkpoint yet (windowed aggregations can)",
                "run this query without --checkpoint",
            ));
        }
        Ok(())
    }

    /// Makes this query checkpoint through `coordinator` (set before the dataflow is built).
    pub fn set_checkpoint(&self, coordinator: Arc<crate::checkpoint::LiveCheckpoint>) {
        *self.inner.checkpoint.lock().unwrap() = Some(coordinator);
    }

    /// A context with fresh random ids, for tests and one-off runs.
    pub fn ephemeral(name: impl Into<String>) -> Self {
        QueryContext::new(uuid::Uuid::new_v4().to_string(), uuid::Uuid::new_v4().to_string(), name)
    }

    /// The query id (stable across restarts from the same checkpoint).
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// The id of this run (new on every start).
    pub fn run_id(&self) -> &str {
        &self.inner.run_id
    }

    /// The query's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The live counters.
    pub fn metrics(&self) -> &QueryMetrics {
        &self.inner.metrics
    }

    /// When this context was created: one instant shared by every worker of this process, so
    /// that sources which anchor event time at "now" agree across workers.
    pub fn started_at(&self) -> crate::time::EventTime {
        self.inner.started_at
    }

    /// Asks every source to stop reading; the query then winds down.
    pub fn request_stop(&self) {
        self.inner.stop.store(true, Ordering::SeqCst);
    }

    /// Whether a stop was requested (by the user or by a failure).
    pub fn stop_requested(&self) -> bool {
        self.inner.stop.load(Ordering::Relaxed)
    }

    /// Records a failure (the first one wins) and stops the query.
    pub fn fail(&self, error: QueryError) {
        tracing::error!(query = %self.name(), "{error}");
        let mut failure = self.inner.failure.lock().unwrap();
        if failure.is_none() {
            *failure = Some(error);
        }
        drop(failure);
        self.request_stop();
    }

    /// The first failure, if any.
    pub fn failure(&self) -> Option<QueryError> {
        self.inner.failure.lock().unwrap().clone()
    }

    /// A process-wide cell holding the highest watermark any instance of source `name` reached;
    /// an instance whose partitions are all idle follows it instead of holding the watermark back.
    pub fn shared_watermark(&self, name: &str) -> Arc<AtomicU64> {
        self.inner.shared_watermarks.lock().unwrap().entry(name.to_string()).or_default().clone()
    }

    /// Where sources and operators record what they are when built (read by `explain`).
    pub fn plan(&self) -> &crate::plan::PlanRegistry {
        &self.inner.plan
    }

    /// Whether the dataflow is being built only to be explained, not run: sinks then open no
    /// files and sources should avoid side effects.
    pub fn is_explaining(&self) -> bool {
        self.inner.explaining.load(Ordering::Relaxed)
    }

    /// Whether this process hosts worker 0, where the ordered sinks write (true unless this is a
    /// process other than the first of a cluster).
    pub fn hosts_worker_zero(&self) -> bool {
        !self.inner.other_process.load(Ordering::Relaxed)
    }

    /// Records that this process is not the first of its cluster (see
    /// [`QueryContext::hosts_worker_zero`]).
    pub fn set_other_process(&self) {
        self.inner.other_process.store(true, Ordering::Relaxed);
    }

    /// Marks the dataflow as built only to be explained (see [`QueryContext::is_explaining`]).
    pub fn set_explaining(&self) {
        self.inner.explaining.store(true, Ordering::Relaxed);
    }

    /// Whether sources record their cuts (the query checkpoints): off by default, so a query that
    /// does not checkpoint keeps no history. Set it before the dataflow is built.
    pub fn records_cuts(&self) -> bool {
        self.inner.records_cuts.load(Ordering::Relaxed)
    }

    /// Makes the sources built from now on record their cuts (see [`QueryContext::source_cuts`]).
    pub fn set_records_cuts(&self) {
        self.inner.records_cuts.store(true, Ordering::Relaxed);
    }

    /// The cut history of source `name`'s instance on `worker` (created empty on first use): the
    /// source feeds it when [`QueryContext::records_cuts`] is on, the coordinator reads the cut of
    /// every partition at a boundary from it.
    pub fn source_cuts(&self, name: &str, worker: usize) -> crate::source_cuts::SharedSourceCuts {
        self.inner.source_cuts.lock().unwrap().entry((name.to_string(), worker)).or_default().clone()
    }

    /// Makes the sources built from now on resume from a checkpoint's `offsets/N`: every
    /// [`crate::source::event_source`] whose description is listed there opens its partitions at
    /// their cuts with their watermark states and starts at the epoch's end (see
    /// [`crate::source::event_source_resumed`]). Set it before the dataflow is built.
    pub fn set_resume_offsets(&self, offsets: crate::checkpoint::EpochOffsets) {
        *self.inner.resume_offsets.lock().unwrap() = Some(Arc::new(offsets));
    }

    /// Where source `description` resumes, if the query resumes from a checkpoint that lists it.
    pub fn source_resume(&self, description: &str) -> Option<crate::source_cuts::SourceResume> {
        let offsets = self.inner.resume_offsets.lock().unwrap().clone()?;
        crate::source_cuts::SourceResume::from_offsets(&offsets, description)
    }

    /// Every registered source instance's cut history, by (source description, worker).
    pub fn all_source_cuts(&self) -> Vec<((String, usize), crate::source_cuts::SharedSourceCuts)> {
        self.inner.source_cuts.lock().unwrap().iter().map(|(key, cuts)| (key.clone(), cuts.clone())).collect()
    }

    /// Where stateful operators built with this context keep their state (memory by default).
    pub fn state_backend(&self) -> &StateBackend {
        &self.state_backend
    }

    /// The same query context with another state backend: pass it to one operator to choose
    /// its backend, e.g. `dedup(&ctx.with_state_backend(StateBackend::rocksdb(dir)), ..)`.
    pub fn with_state_backend(&self, backend: StateBackend) -> QueryContext {
        QueryContext { inner: self.inner.clone(), state_backend: backend }
    }
}
