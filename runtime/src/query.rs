//! Starting a query and the handle that watches and stops it (Spark's `StreamingQuery`).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use timely::dataflow::Scope;

use crate::context::QueryContext;
use crate::error::{BuildError, QueryError};
use crate::execution::Execution;
use crate::progress::{ProgressListener, ProgressTracker, StreamingQueryProgress};
use crate::state::StateBackend;
use crate::time::EventTime;

/// How many recent progress reports a handle keeps (like Spark's `recentProgress`).
pub const RECENT_PROGRESS: usize = 100;

/// A query to be started: its name, where it runs, and how often it reports progress.
pub struct Query {
    name: String,
    id: Option<String>,
    execution: Execution,
    progress_interval: Duration,
    listeners: Vec<Arc<dyn ProgressListener>>,
    state_backend: StateBackend,
    explain_only: bool,
    operator_frontiers: bool,
    checkpoint: Option<CheckpointSettings>,
}

/// Where and how often a query checkpoints (see [`Query::checkpoint`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointSettings {
    /// The checkpoint directory.
    pub dir: std::path::PathBuf,
    /// How often an epoch ends (processing time).
    pub interval: Duration,
    /// Delete the directory's checkpoint first, on purpose (`--reset-checkpoint`).
    pub reset: bool,
    /// How many committed epochs to keep.
    pub keep: usize,
    /// End an epoch after this many input records too.
    pub records_per_epoch: Option<u64>,
    /// In a cluster: where process 0 serves the checkpoint coordinator (default: process 0's
    /// host with its port + [`crate::checkpoint::cluster::COORDINATOR_PORT_OFFSET`]).
    pub coordinator: Option<String>,
}

impl Query {
    /// A query called `name`, on one worker, reporting progress every second.
    pub fn new(name: impl Into<String>) -> Self {
        Query {
            name: name.into(),
            id: None,
            execution: Execution::default(),
            progress_interval: Duration::from_secs(1),
            listeners: Vec::new(),
            state_backend: StateBackend::Memory,
            explain_only: false,
            operator_frontiers: false,
            checkpoint: None,
        }
    }

    /// Checkpoints into `dir` every `interval`: each epoch's source offsets, operator state and
    /// sink output are committed together, and a restart resumes after the last committed epoch
    /// (with the query id stored there). A changed dataflow is refused before anything runs.
    ///
    /// In a cluster of processes every process must reach `dir` (shared storage, as Spark and
    /// Flink require for checkpoint locations): each writes its workers' state there, and
    /// process 0 coordinates the epochs (see [`Query::checkpoint_coordinator`]).
    pub fn checkpoint(mut self, dir: impl Into<std::path::PathBuf>, interval: Duration) -> Self {
        self.checkpoint = Some(CheckpointSettings {
            dir: dir.into(),
            interval,
            reset: false,
            keep: 2,
            records_per_epoch: None,
            coordinator: None,
        });
        self
    }

    /// With [`Query::checkpoint`] in a cluster: the `host:port` where process 0 serves the
    /// checkpoint coordinator and the other processes reach it (default: process 0's host from
    /// the hostfile, its port + [`crate::checkpoint::cluster::COORDINATOR_PORT_OFFSET`]).
    pub fn checkpoint_coordinator(mut self, address: impl Into<String>) -> Self {
        if let Some(settings) = self.checkpoint.as_mut() {
            settings.coordinator = Some(address.into());
        }
        self
    }

    /// With [`Query::checkpoint`]: also ends an epoch every `records` input records (whichever
    /// comes first with the interval; pass `Duration::MAX` as the interval for records only).
    pub fn checkpoint_every_records(mut self, records: u64) -> Self {
        if let Some(settings) = self.checkpoint.as_mut() {
            settings.records_per_epoch = Some(records);
        }
        self
    }

    /// With [`Query::checkpoint`]: how many committed epochs the directory keeps (at least 1;
    /// default 2). Older epochs' offsets, state and sink records are deleted as new ones commit.
    pub fn keep_checkpoints(mut self, epochs: usize) -> Self {
        if let Some(settings) = self.checkpoint.as_mut() {
            settings.keep = epochs.max(1);
        }
        self
    }

    /// With [`Query::checkpoint`]: deletes the checkpoint first and starts fresh, on purpose.
    pub fn reset_checkpoint(mut self) -> Self {
        if let Some(settings) = self.checkpoint.as_mut() {
            settings.reset = true;
        }
        self
    }

    /// Lets progress reports give each operator its own frontier (the minimum watermark of the
    /// sources upstream of it) instead of the query's: worker 0 then builds the dataflow with
    /// timely's logging on to learn its graph. Off by default, because the operators keep the
    /// logger and log their scheduling for the whole run (a small cost per batch).
    pub fn operator_frontiers(mut self) -> Self {
        self.operator_frontiers = true;
        self
    }

    /// Runs on `n` worker threads in this process.
    pub fn workers(mut self, n: usize) -> Self {
        self.execution = Execution::workers(n);
        self
    }

    /// Runs as described (threads, or one process of a cluster).
    pub fn execution(mut self, execution: Execution) -> Self {
        self.execution = execution;
        self
    }

    /// Uses this id instead of a fresh one (a restarted query keeps its id).
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// How often a progress report is made.
    pub fn progress_interval(mut self, interval: Duration) -> Self {
        self.progress_interval = interval.max(Duration::from_millis(10));
        self
    }

    /// Where the dataflow's stateful operators keep state unless an operator chooses otherwise
    /// (memory by default; RocksDB for state larger than memory).
    pub fn state_backend(mut self, backend: StateBackend) -> Self {
        self.state_backend = backend;
        self
    }

    /// Pushes every progress report to `listener`.
    pub fn on_progress(mut self, listener: impl ProgressListener) -> Self {
        self.listeners.push(Arc::new(listener));
        self
    }

    /// Makes [`Query::start`] only build the dataflow, on one worker, and not run it: the handle
    /// it returns has already stopped and its [`QueryHandle::plan`] is the dataflow's plan. This
    /// is how `weir explain <job>` explains a job that is started through `start`.
    pub fn explain_only(mut self) -> Self {
        self.explain_only = true;
        self
    }

    /// Builds the dataflow on one worker, without running it, and returns its plan: every
    /// source, operator and sink, what bounds each operator's state, which sources' watermarks
    /// it sees, its output mode and its exchanges (see [`crate::plan`]). Sinks open no files.
    ///
    /// ```
    /// use weir_runtime::prelude::*;
    /// let plan = Query::new("empty").explain(|_scope, _ctx| Ok(())).unwrap();
    /// assert!(plan.nodes.is_empty());
    /// ```
    pub fn explain<F>(self, build: F) -> Result<crate::plan::Plan, BuildError>
    where
        F: for<'scope> Fn(Scope<'scope, EventTime>, &QueryContext) -> Result<(), BuildError> + Send + Sync + 'static,
    {
        let handle = self.explain_only().start(build)?;
        Ok(handle.plan().expect("an explained query has a plan"))
    }

    /// Opens (or creates) the checkpoint directory: a first, explaining build gives the dataflow's
    /// fingerprint, which must match the checkpoint's. Answers the query id to use (the
    /// checkpoint's) and the coordinator.
    fn open_checkpoint<F>(
        &self,
        settings: &CheckpointSettings,
        build: Arc<F>,
    ) -> Result<(String, Arc<crate::checkpoint::LiveCheckpoint>), BuildError>
    where
        F: for<'scope> Fn(Scope<'scope, EventTime>, &QueryContext) -> Result<(), BuildError> + Send + Sync + 'static,
    {
        use crate::checkpoint::{cluster, CheckpointDir, CheckpointMetadata, DataflowFingerprint, LiveCheckpoint};
        let what = format!("checkpoint {}", settings.dir.display());
        let coordinator = if self.execution.is_cluster() {
            let address = match &settings.coordinator {
                Some(address) => address.clone(),
                None => cluster::default_coordinator_address(&self.execution.addresses[0]).map_err(|why| {
                    BuildError::invalid(&what, why, "give the coordinator's address with --checkpoint-coordinator")
                })?,
            };
            Some(address)
        } else {
            None
        };
        // Only process 0 resets: the others join the checkpoint it opened.
        if settings.reset && self.execution.process == 0 {
            CheckpointDir::reset(&settings.dir).map_err(|e| {
                BuildError::invalid(&what, e.to_string(), "check that the directory is writable by this user")
            })?;
        }
        let explain = Query {
            name: self.name.clone(),
            id: self.id.clone(),
            execution: self.execution.clone(),
            progress_interval: self.progress_interval,
            listeners: Vec::new(),
            state_backend: self.state_backend.clone(),
            explain_only: true,
            operator_frontiers: false,
            checkpoint: None,
        };
        // `start_explaining` directly: going through `start` would instantiate it for ever.
        let handle = explain.start_explaining(move |scope, ctx| build(scope, ctx))?;
        let plan = handle.plan().expect("an explained query has a plan");
        let mut fingerprint = DataflowFingerprint::from_plan(&plan);
        for (name, (key_type, state_type)) in handle.context().plan().state_types() {
            fingerprint.set_types(&name, key_type, state_type);
        }
        let id = self.id.clone().unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let total_workers = self.execution.workers * self.execution.addresses.len().max(1);
        if let (Some(address), true) = (&coordinator, self.execution.process != 0) {
            // Another process of a cluster: process 0 opened the checkpoint and coordinates.
            let join = cluster::JoinSettings {
                address: address.clone(),
                hello: cluster::JoinRequest {
                    process: self.execution.process,
                    workers: total_workers,
                    fingerprint: fingerprint.clone(),
                },
                dir: settings.dir.clone(),
                interval: settings.interval,
                keep: settings.keep,
                records_per_epoch: settings.records_per_epoch,
                timeout: cluster::JOIN_TIMEOUT,
            };
            return cluster::join(&join).map_err(|e| {
                BuildError::invalid(&what, e.to_string(), "start process 0 with the same job, flags and checkpoint")
            });
        }
        let metadata = CheckpointMetadata::new(id, self.name.clone(), total_workers, fingerprint);
        let (dir, resume) = CheckpointDir::open_or_create(&settings.dir, &metadata)
            .map_err(|e| BuildError::invalid(&what, e.to_string(), "nothing was processed; the query did not start"))?;
        let id = dir.metadata().query_id.clone();
        match &resume {
            crate::checkpoint::Resume::Fresh => tracing::info!(
                target: "weir::checkpoint",
                checkpoint = %settings.dir.display(),
                query_id = %id,
                "no committed epoch: starting fresh from the sources' starting offsets"
            ),
            crate::checkpoint::Resume::FromEpoch { epoch, offsets, .. } => tracing::info!(
                target: "weir::checkpoint",
                checkpoint = %settings.dir.display(),
                query_id = %id,
                epoch,
                next_epoch_starts = %describe_boundary(offsets.end),
                offsets = %describe_offsets(offsets),
                "resuming after the last committed epoch"
            ),
        }
        let live = LiveCheckpoint::open(dir, resume, settings.interval, settings.keep)
            .with_records_per_epoch(settings.records_per_epoch);
        let live = match &coordinator {
            // Process 0 of a cluster serves the coordinator to the other processes.
            Some(address) => cluster::coordinate(address, self.execution.addresses.len(), live).map_err(|e| {
                BuildError::invalid(&what, e.to_string(), "choose a free address with --checkpoint-coordinator")
            })?,
            None => Arc::new(live),
        };
        Ok((id, live))
    }

    fn start_explaining<F>(self, build: F) -> Result<QueryHandle, BuildError>
    where
        F: for<'scope> Fn(Scope<'scope, EventTime>, &QueryContext) -> Result<(), BuildError> + Send + Sync + 'static,
    {
        let id = self.id.clone().unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let ctx = QueryContext::new(id, uuid::Uuid::new_v4().to_string(), self.name.clone())
            .with_state_backend(self.state_backend.clone());
        ctx.set_explaining();
        let worker_ctx = ctx.clone();
        let graph = timely::execute_directly(move |worker| {
            let (result, graph) = build_seeing_graph(worker, |worker| {
                worker.dataflow::<EventTime, _, _>(|scope| build(scope, &worker_ctx))
            });
            for dataflow in worker.installed_dataflows() {
                worker.drop_dataflow(dataflow);
            }
            result.map(|()| graph)
        })?;
        ctx.plan().set_graph(graph);
        let shared = Arc::new(Shared {
            active: AtomicBool::new(true),
            status: Mutex::new(QueryStatus::new("Explained, not run")),
            progress: Mutex::new(VecDeque::new()),
            outcome: Mutex::new(None),
            finished: Condvar::new(),
        });
        shared.finish(Ok(()));
        Ok(QueryHandle { ctx, shared, threads: Mutex::new(Vec::new()) })
    }

    /// Builds the dataflow on every worker and starts it; returns at once with a handle.
    ///
    /// `build` runs once per worker with the worker's scope and the query's shared context. A
    /// [`BuildError`] from any worker is returned here, before any record is processed.
    pub fn start<F>(self, build: F) -> Result<QueryHandle, BuildError>
    where
        F: for<'scope> Fn(Scope<'scope, EventTime>, &QueryContext) -> Result<(), BuildError> + Send + Sync + 'static,
    {
        if self.explain_only {
            return self.start_explaining(build);
        }
        let build = Arc::new(build);
        let (id, live) = match self.checkpoint.clone() {
            None => (self.id.clone().unwrap_or_else(|| uuid::Uuid::new_v4().to_string()), None),
            Some(settings) => {
                let (id, live) = self.open_checkpoint(&settings, build.clone())?;
                (id, Some(live))
            }
        };
        let ctx = QueryContext::new(id, uuid::Uuid::new_v4().to_string(), self.name.clone())
            .with_state_backend(self.state_backend.clone());
        if let Some(live) = &live {
            ctx.set_checkpoint(live.clone());
            ctx.set_records_cuts();
            if let Some(offsets) = live.resume_offsets() {
                ctx.set_resume_offsets(offsets);
            }
        }
        let total_workers = self.execution.workers * self.execution.addresses.len().max(1);
        if self.execution.process != 0 {
            ctx.set_other_process();
        }
        let shared = Arc::new(Shared {
            active: AtomicBool::new(true),
            status: Mutex::new(QueryStatus::new("Initializing sources")),
            progress: Mutex::new(VecDeque::new()),
            outcome: Mutex::new(None),
            finished: Condvar::new(),
        });

        let local_workers = self.execution.workers;
        let built = Arc::new(Barrier::new(local_workers));
        let sealed = Arc::new(Barrier::new(local_workers));
        let build_error: Arc<Mutex<Option<BuildError>>> = Arc::new(Mutex::new(None));
        let (built_tx, built_rx) = std::sync::mpsc::channel::<()>();
        let built_tx = Mutex::new(built_tx);

        let worker_ctx = ctx.clone();
        let worker_build_error = build_error.clone();
        let operator_frontiers = self.operator_frontiers;
        let worker_build = build.clone();
        let worker_fn = move |worker: &mut timely::worker::Worker| {
            let ctx = worker_ctx.clone();
            let build = &worker_build;
            // Worker 0 keeps the dataflow graph, for the operators' frontiers in progress reports.
            let result = if worker.index() == 0 && operator_frontiers {
                let (result, graph) =
                    build_seeing_graph(worker, |worker| worker.dataflow::<EventTime, _, _>(|scope| build(scope, &ctx)));
                ctx.plan().set_graph(graph);
                result
            } else {
                worker.dataflow::<EventTime, _, _>(|scope| build(scope, &ctx))
            };
            if let Err(error) = result {
                worker_build_error.lock().unwrap().get_or_insert(error);
            }
            if built.wait().is_leader() {
                // Every participant of the checkpoint registered while building: start coordinating
                // before any worker runs.
                let failed = worker_build_error.lock().unwrap().as_ref().map(ToString::to_string);
                if let (Some(live), Some(why)) = (ctx.checkpoint(), failed) {
                    // The other processes of a cluster must not wait for this one's workers.
                    live.abandon_seal(&why);
                } else if let Some(live) = ctx.checkpoint() {
                    if let Err(error) = live.seal(total_workers) {
                        let error =
                            BuildError::invalid("checkpoint", error.to_string(), "see the other processes' logs");
                        worker_build_error.lock().unwrap().get_or_insert(error);
                    }
                }
                let _ = built_tx.lock().unwrap().send(());
            }
            sealed.wait();
            let failed = worker_build_error.lock().unwrap().is_some();
            if failed {
                for dataflow in worker.installed_dataflows() {
                    worker.drop_dataflow(dataflow);
                }
                return;
            }
            let stepped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                while worker.has_dataflows() && !ctx.stop_requested() {
                    worker.step_or_park(Some(Duration::from_millis(10)));
                }
            }));
            if let Err(payload) = stepped {
                // Keep the panic's own message for `exception()`; timely only reports `Any`.
                let message = panic_message(payload.as_ref());
                ctx.fail(QueryError::Worker(format!("worker {} panicked: {message}", worker.index())));
                std::panic::resume_unwind(payload);
            }
            if ctx.stop_requested() {
                // Graceful: sources have stopped reading; let in-flight batches drain briefly.
                let deadline = Instant::now() + Duration::from_millis(200);
                while worker.has_dataflows() && Instant::now() < deadline {
                    worker.step_or_park(Some(Duration::from_millis(1)));
                }
                for dataflow in worker.installed_dataflows() {
                    worker.drop_dataflow(dataflow);
                }
            }
        };

        let config = self.execution.timely_config();
        let supervisor_ctx = ctx.clone();
        let supervisor_shared = shared.clone();
        let (start_tx, start_rx) = std::sync::mpsc::channel::<Result<(), String>>();
        let supervisor = std::thread::Builder::new()
            .name(format!("weir-query-{}", self.name))
            .spawn(move || {
                let guards = match timely::execute(config, worker_fn) {
                    Ok(guards) => {
                        let _ = start_tx.send(Ok(()));
                        guards
                    }
                    Err(message) => {
                        let _ = start_tx.send(Err(message.clone()));
                        supervisor_shared.finish(Err(QueryError::Worker(message)));
                        return;
                    }
                };
                let mut outcome: Result<(), QueryError> = Ok(());
                for result in guards.join() {
                    if let Err(message) = result {
                        outcome = Err(QueryError::Worker(message));
                    }
                }
                if let Some(failure) = supervisor_ctx.failure() {
                    outcome = Err(failure);
                }
                supervisor_shared.finish(outcome);
            })
            .map_err(|e| {
                BuildError::invalid(
                    "workers",
                    format!("cannot spawn the query thread: {e}"),
                    "check the process limits",
                )
            })?;

        match start_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(message)) => {
                let _ = supervisor.join();
                return Err(BuildError::invalid(
                    "execution",
                    message,
                    "check the worker, process and hostfile settings",
                ));
            }
            Err(_) => {
                let _ = supervisor.join();
                return Err(BuildError::invalid("execution", "the query thread ended before starting", "see the log"));
            }
        }
        let _ = built_rx.recv();
        let failed = build_error.lock().unwrap().clone();
        if let Some(error) = failed {
            ctx.request_stop();
            let _ = supervisor.join();
            return Err(error);
        }
        tracing::info!(query = %ctx.name(), id = %ctx.id(), run_id = %ctx.run_id(), workers = self.execution.total_workers(), "query started");
        *shared.status.lock().unwrap() = QueryStatus::new("Processing new data");

        let reporter = {
            let shared = shared.clone();
            let ctx = ctx.clone();
            let listeners = self.listeners;
            let interval = self.progress_interval;
            std::thread::Builder::new()
                .name(format!("weir-progress-{}", self.name))
                .spawn(move || {
                    let mut tracker = ProgressTracker::new(ctx);
                    loop {
                        let done = shared.wait_finished(interval);
                        let report = tracker.report();
                        shared.set_status_from(&report, done);
                        for listener in &listeners {
                            listener.on_progress(&report);
                        }
                        shared.push_progress(report);
                        if done {
                            break;
                        }
                    }
                })
                .ok()
        };

        Ok(QueryHandle { ctx, shared, threads: Mutex::new(vec![supervisor].into_iter().chain(reporter).collect()) })
    }
}

struct Shared {
    active: AtomicBool,
    status: Mutex<QueryStatus>,
    progress: Mutex<VecDeque<StreamingQueryProgress>>,
    outcome: Mutex<Option<Result<(), QueryError>>>,
    finished: Condvar,
}

impl Shared {
    fn finish(&self, outcome: Result<(), QueryError>) {
        let mut slot = self.outcome.lock().unwrap();
        self.active.store(false, Ordering::SeqCst);
        *slot = Some(outcome);
        self.finished.notify_all();
    }

    /// Waits up to `timeout` for the query to finish; true if it has.
    fn wait_finished(&self, timeout: Duration) -> bool {
        let slot = self.outcome.lock().unwrap();
        let (slot, _) = self.finished.wait_timeout_while(slot, timeout, |o| o.is_none()).unwrap();
        slot.is_some()
    }

    fn push_progress(&self, report: StreamingQueryProgress) {
        let mut progress = self.progress.lock().unwrap();
        if progress.len() == RECENT_PROGRESS {
            progress.pop_front();
        }
        progress.push_back(report);
    }

    fn set_status_from(&self, report: &StreamingQueryProgress, done: bool) {
        let mut status = self.status.lock().unwrap();
        *status = if done {
            QueryStatus { message: "Stopped".into(), is_data_available: false, is_trigger_active: false }
        } else if report.num_input_rows > 0 {
            QueryStatus { message: "Processing new data".into(), is_data_available: true, is_trigger_active: true }
        } else {
            QueryStatus {
                message: "Waiting for data to arrive".into(),
                is_data_available: false,
                is_trigger_active: false,
            }
        };
    }
}

/// What a query is doing now (Spark's `StreamingQueryStatus`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueryStatus {
    /// A short description, e.g. "Processing new data".
    pub message: String,
    /// Whether the last interval read any data.
    pub is_data_available: bool,
    /// Whether the query was busy in the last interval.
    pub is_trigger_active: bool,
}

impl QueryStatus {
    fn new(message: &str) -> Self {
        QueryStatus { message: message.into(), is_data_available: false, is_trigger_active: false }
    }
}

/// A running (or finished) query: watch its progress, wait for it, stop it.
pub struct QueryHandle {
    ctx: QueryContext,
    shared: Arc<Shared>,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

impl QueryHandle {
    /// The query id (stable across restarts from the same checkpoint).
    pub fn id(&self) -> &str {
        self.ctx.id()
    }

    /// The id of this run (new on every start).
    pub fn run_id(&self) -> &str {
        self.ctx.run_id()
    }

    /// The query's name.
    pub fn name(&self) -> &str {
        self.ctx.name()
    }

    /// The shared context (counters, stop flag).
    pub fn context(&self) -> &QueryContext {
        &self.ctx
    }

    /// Whether the query is still running.
    pub fn is_active(&self) -> bool {
        self.shared.active.load(Ordering::SeqCst)
    }

    /// The error that ended the query, if it failed.
    pub fn exception(&self) -> Option<QueryError> {
        match &*self.shared.outcome.lock().unwrap() {
            Some(Err(error)) => Some(error.clone()),
            _ => None,
        }
    }

    /// What the query is doing now.
    pub fn status(&self) -> QueryStatus {
        self.shared.status.lock().unwrap().clone()
    }

    /// The most recent progress report.
    pub fn last_progress(&self) -> Option<StreamingQueryProgress> {
        self.shared.progress.lock().unwrap().back().cloned()
    }

    /// The most recent progress reports, oldest first (at most [`RECENT_PROGRESS`]).
    pub fn recent_progress(&self) -> Vec<StreamingQueryProgress> {
        self.shared.progress.lock().unwrap().iter().cloned().collect()
    }

    /// The dataflow's plan, if the query was started with [`Query::explain_only`].
    pub fn plan(&self) -> Option<crate::plan::Plan> {
        crate::plan::Plan::of(&self.ctx)
    }

    /// A cloneable handle that can stop the query from elsewhere (e.g. a signal handler).
    pub fn stopper(&self) -> QueryContext {
        self.ctx.clone()
    }

    /// Stops gracefully (sources stop reading, in-flight batches drain) and waits for the end.
    pub fn stop(&self) -> Result<(), QueryError> {
        self.ctx.request_stop();
        self.await_termination(None).map(|_| ())
    }

    /// Waits for the query to end: `Ok(true)` if it ended, `Ok(false)` if `timeout` passed
    /// first, `Err` if it failed.
    pub fn await_termination(&self, timeout: Option<Duration>) -> Result<bool, QueryError> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            let remaining = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => Duration::from_secs(3600),
            };
            let done = self.shared.wait_finished(remaining);
            if done {
                for thread in self.threads.lock().unwrap().drain(..) {
                    let _ = thread.join();
                }
                return match &*self.shared.outcome.lock().unwrap() {
                    Some(Err(error)) => Err(error.clone()),
                    _ => Ok(true),
                };
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(false);
            }
        }
    }
}

impl Drop for QueryHandle {
    fn drop(&mut self) {
        if self.is_active() {
            self.ctx.request_stop();
            let _ = self.await_termination(Some(Duration::from_secs(10)));
        }
    }
}

/// Runs `build` with timely's logging on, and returns what it returns and the graph of the
/// dataflow it built: operators and channels (only this happens with logging on).
fn build_seeing_graph<R>(
    worker: &mut timely::worker::Worker,
    build: impl FnOnce(&mut timely::worker::Worker) -> R,
) -> (R, crate::plan::TimelyGraph) {
    use std::cell::RefCell;
    use std::rc::Rc;
    use timely::logging::{TimelyEvent, TimelyEventBuilder};

    let graph = Rc::new(RefCell::new(crate::plan::TimelyGraph::default()));
    let seen = graph.clone();
    if let Some(mut registry) = worker.log_register() {
        registry.insert::<TimelyEventBuilder, _>("timely", move |_time, data| {
            for (_, event) in data.iter().flatten() {
                match event {
                    TimelyEvent::Operates(op) if op.addr.len() == 2 => {
                        seen.borrow_mut().operators.insert(op.addr[1], op.name.clone());
                    }
                    TimelyEvent::Channels(ch) if ch.scope_addr.len() == 1 => {
                        seen.borrow_mut().channels.push((ch.source.0, ch.source.1, ch.target.0, ch.target.1));
                    }
                    _ => {}
                }
            }
        });
    }
    let result = build(worker);
    if let Some(mut registry) = worker.log_register() {
        registry.flush();
        registry.remove("timely");
    }
    let graph = graph.borrow().clone();
    (result, graph)
}

/// The text of a panic payload (`panic!("...")` carries a `&str` or a `String`).
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        text.to_string()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic without a message".to_string()
    }
}

/// A boundary for the startup log: the last one ends the input.
fn describe_boundary(boundary: EventTime) -> String {
    if boundary == EventTime::MAX {
        "after the end of the input".to_string()
    } else {
        boundary.to_string()
    }
}

/// Where each source partition resumes, for the startup log: `source p0 at {..}, p1 at {..}; ...`.
fn describe_offsets(offsets: &crate::checkpoint::EpochOffsets) -> String {
    offsets
        .sources
        .iter()
        .map(|(source, cuts)| {
            let cuts: Vec<String> = cuts
                .iter()
                .map(|cut| format!("p{} at {} (watermark {})", cut.partition, cut.position, cut.watermark.watermark))
                .collect();
            format!("{source}: {}", cuts.join(", "))
        })
        .collect::<Vec<_>>()
        .join("; ")
}
