//! The exactly-once JSON-lines sink: each worker writes each checkpoint epoch's lines to a
//! pending file once its input frontier has passed the epoch's end, reports the epoch prepared
//! to the query's checkpoint coordinator, and renames the file into place once the coordinator
//! has committed the epoch (`docs/checkpoints.md` §4–5; file mechanics in
//! [`super::transactional`]). Output becomes visible only for committed epochs, so a crash at any
//! moment, followed by recovery from the checkpoint, neither loses nor duplicates a line.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use std::sync::atomic::Ordering;

use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::StreamVec;
use weir_runtime::checkpoint::LiveCheckpoint;
use weir_runtime::context::QueryContext;
use weir_runtime::error::{BuildError, QueryError};
use weir_runtime::time::EventTime;

use super::transactional::TransactionalJsonLinesDir;

/// Writes lines exactly once into a directory of per-epoch, per-worker files
/// (`part-<epoch>-<worker>.jsonl`), as a participant of the query's checkpoints.
#[derive(Clone, Debug)]
pub struct ExactlyOnceJsonLinesSink {
    dir: std::path::PathBuf,
}

impl ExactlyOnceJsonLinesSink {
    /// A sink writing into `dir` (created if missing).
    pub fn new(dir: impl Into<std::path::PathBuf>) -> Self {
        ExactlyOnceJsonLinesSink { dir: dir.into() }
    }

    /// Attaches the sink to `lines` as sink `name` (every worker writes its own files). The query
    /// must checkpoint (its context has a coordinator, which lists `name` among its sinks);
    /// otherwise nothing could ever be committed, which is refused here.
    pub fn write_lines<'scope>(
        self,
        lines: StreamVec<'scope, EventTime, String>,
        ctx: &QueryContext,
        name: &str,
    ) -> Result<(), BuildError> {
        if ctx.is_explaining() {
            // Explaining (also the build that fingerprints a checkpointed query): no files.
            lines.sink(Pipeline, &format!("Sink[{name}]"), |(input, _)| input.for_each_time(|_, _| {}));
            return Ok(());
        }
        let Some(checkpoint) = ctx.checkpoint() else {
            return Err(BuildError::invalid(
                format!("exactly-once sink {name}"),
                "the query does not checkpoint, so no epoch would ever be committed",
                "give the query a checkpoint directory, or use the plain JSON-lines sink",
            ));
        };
        checkpoint.register_sink(name);
        let out = TransactionalJsonLinesDir::open(&self.dir).map_err(|e| {
            BuildError::invalid(format!("exactly-once sink {name}"), e.to_string(), "check the output directory")
        })?;
        let scope = lines.scope();
        let worker = scope.index();
        if worker == 0 {
            // Before any worker runs: make the output agree with the checkpoint (roll the pending
            // files of committed epochs forward, the rest back).
            let last = checkpoint.resumed().map(|(epoch, _)| epoch);
            let report = out.recover(last).map_err(|e| {
                BuildError::invalid(format!("exactly-once sink {name}"), e.to_string(), "check the output directory")
            })?;
            if !report.rolled_forward.is_empty() || !report.rolled_back.is_empty() {
                tracing::info!(sink = name, rolled_forward = ?report.rolled_forward, rolled_back = ?report.rolled_back, "recovered the output directory");
            }
        }
        let metrics = ctx.metrics().sink(name);
        let mut builder = OperatorBuilder::new(format!("Sink[{name}]"), scope);
        let mut input = builder.new_input(lines, Pipeline);
        let activator = scope.activator_for(builder.operator_info().address);
        let ctx = ctx.clone();
        let mut state = Some(SinkState {
            out,
            checkpoint,
            worker,
            name: name.to_string(),
            pending: BTreeMap::new(),
            prepared: Vec::new(),
            next_epoch: 0,
        });
        // Incomplete while prepared epochs wait for their commit: the query does not end before
        // its last epoch is visible.
        builder.build_reschedule(move |_capabilities| {
            move |frontiers| {
                let Some(sink) = state.as_mut() else {
                    input.for_each_time(|_, _| {});
                    return false;
                };
                input.for_each_time(|time, data| {
                    let batch = sink.pending.entry(*time.time()).or_default();
                    for chunk in data {
                        batch.append(chunk);
                    }
                });
                let frontier = frontiers[0].frontier();
                let result = sink.prepare_passed(|t| !frontier.less_equal(t)).and_then(|rows| {
                    metrics.output_rows.fetch_add(rows, Ordering::Relaxed);
                    sink.commit_committed()
                });
                match result {
                    Err(error) => {
                        metrics.errors.fetch_add(1, Ordering::Relaxed);
                        ctx.fail(QueryError::Sink { sink: sink.name.clone(), message: error });
                        state = None;
                        false
                    }
                    Ok(()) => {
                        let waiting = !sink.prepared.is_empty();
                        // Epochs wait for the coordinator's commit, which no input announces: look again.
                        if waiting || !frontier.is_empty() {
                            activator.activate_after(COMMIT_POLL);
                        }
                        waiting && !ctx.stop_requested()
                    }
                }
            }
        });
        Ok(())
    }
}

struct SinkState {
    out: TransactionalJsonLinesDir,
    checkpoint: Arc<LiveCheckpoint>,
    worker: usize,
    name: String,
    /// Lines received, by timely time, not yet in a prepared epoch.
    pending: BTreeMap<EventTime, Vec<String>>,
    /// Epochs prepared and not yet committed.
    prepared: Vec<u64>,
    /// The next epoch to prepare.
    next_epoch: u64,
}

impl SinkState {
    /// Prepares every epoch whose end the frontier has passed (`passed(end)`), in order; answers
    /// the lines prepared.
    fn prepare_passed(&mut self, passed: impl Fn(&EventTime) -> bool) -> Result<u64, String> {
        let mut rows = 0;
        for boundary in self.checkpoint.boundaries_since(self.next_epoch) {
            // `passed(MAX)` only once the frontier is empty: the last epoch ends with the input.
            if !passed(&boundary.boundary) {
                break;
            }
            let lines = take_epoch(&mut self.pending, boundary.boundary);
            self.out.prepare(boundary.epoch, self.worker, &lines).map_err(|e| e.to_string())?;
            self.checkpoint.report_prepared(boundary.epoch, &self.name, self.worker).map_err(|e| e.to_string())?;
            rows += lines.len() as u64;
            self.prepared.push(boundary.epoch);
            self.next_epoch = boundary.epoch + 1;
        }
        Ok(rows)
    }

    /// Makes the prepared epochs the coordinator has committed visible.
    fn commit_committed(&mut self) -> Result<(), String> {
        let Some(last) = self.checkpoint.last_committed() else { return Ok(()) };
        while let Some(&epoch) = self.prepared.first() {
            if epoch > last {
                break;
            }
            self.out.commit(epoch, self.worker).map_err(|e| e.to_string())?;
            self.checkpoint.report_sink_committed(epoch, &self.name, self.worker).map_err(|e| e.to_string())?;
            self.prepared.remove(0);
        }
        Ok(())
    }
}

/// Takes out of `pending` (records by timely time) every record of the epoch that ends at
/// `boundary`: those at times below it, and all that remain when the boundary is the last one
/// (`EventTime::MAX`, the end of the input). Shared by the exactly-once sinks.
pub(crate) fn take_epoch<D>(pending: &mut BTreeMap<EventTime, Vec<D>>, boundary: EventTime) -> Vec<D> {
    if boundary == EventTime::MAX {
        return std::mem::take(pending).into_values().flatten().collect();
    }
    let later = pending.split_off(&boundary);
    std::mem::replace(pending, later).into_values().flatten().collect()
}

/// How often a sink with prepared, uncommitted epochs looks for their commit.
pub const COMMIT_POLL: Duration = Duration::from_millis(20);

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use timely::dataflow::operators::Input;
    use weir_runtime::checkpoint::{
        CheckpointDir, CheckpointMetadata, DataflowFingerprint, EpochCoordinator, Participants, Resume,
    };

    /// Lines become visible exactly when their epoch commits, each in the file of the epoch its
    /// time belongs to; a query without checkpoints cannot build the sink.
    #[test]
    fn epochs_are_prepared_when_passed_and_visible_once_committed() {
        let root = std::env::temp_dir().join(format!("weir-exactly-once-sink-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let participants = Participants { sinks: ["out".to_string()].into(), workers: 1, ..Participants::default() };
        let metadata = CheckpointMetadata::new("q", "sink-test", 1, DataflowFingerprint::default());
        let (dir, resume) = CheckpointDir::open_or_create(root.join("checkpoint"), &metadata).unwrap();
        assert!(matches!(resume, Resume::Fresh));
        let live = Arc::new(LiveCheckpoint::new(
            EpochCoordinator::new(dir, participants, None),
            Duration::ZERO,
            [("s".to_string(), 0)],
        ));
        let ctx = QueryContext::ephemeral("sink-test");
        let plain = QueryContext::ephemeral("no-checkpoint");
        ctx.set_checkpoint(live.clone());
        let output = root.join("out");
        let out = TransactionalJsonLinesDir::open(&output).unwrap();

        timely::execute_directly(move |worker| {
            let sink_dir = output.clone();
            let (mut input, error) = worker.dataflow::<EventTime, _, _>(|scope| {
                let (input, lines) = scope.new_input::<Vec<String>>();
                let ok = ExactlyOnceJsonLinesSink::new(sink_dir.clone()).write_lines(lines, &ctx, "out");
                assert!(ok.is_ok());
                let (_, unused) = scope.new_input::<Vec<String>>();
                let refused = ExactlyOnceJsonLinesSink::new(sink_dir).write_lines(unused, &plain, "plain");
                (input, refused.err())
            });
            assert!(error.unwrap().to_string().contains("does not checkpoint"));
            let step_until = |worker: &mut timely::worker::Worker, done: &dyn Fn() -> bool| {
                for _ in 0..500 {
                    worker.step();
                    if done() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
                panic!("not done in time");
            };
            // Epoch 0 ends at 1 (published above the initial capabilities), epoch 1 at 11, ...
            live.source_downgrade("s", 0, Some(EventTime::from_millis(10)));
            input.advance_to(EventTime::from_millis(10));
            input.send("a@10".to_string());
            input.send("b@10".to_string());
            live.source_downgrade("s", 0, Some(EventTime::from_millis(20)));
            input.advance_to(EventTime::from_millis(20));
            input.send("c@20".to_string());
            // Epochs 0 ([MIN, 1)) and 1 ([1, 11)) are passed: prepared and, with no other
            // participant, committed at once.
            step_until(worker, &|| out.committed_parts().unwrap().len() == 2);
            assert_eq!(out.committed_lines().unwrap(), vec!["a@10", "b@10"]);
            assert!(out.pending_parts().unwrap().is_empty());
            // The input ends: the last epoch (up to MAX) takes the rest.
            live.source_downgrade("s", 0, None);
            drop(input);
            step_until(worker, &|| out.committed_parts().unwrap().len() == 4);
        });
        let out = TransactionalJsonLinesDir::open(root.join("out")).unwrap();
        let parts: BTreeSet<u64> = out.committed_parts().unwrap().into_iter().map(|(epoch, _)| epoch).collect();
        assert_eq!(parts, BTreeSet::from([0, 1, 2, 3]));
        assert_eq!(out.committed_lines().unwrap(), vec!["a@10", "b@10", "c@20"]);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
