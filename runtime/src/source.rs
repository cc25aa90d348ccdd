//! The event-time source operator: reads partitions, judges lateness per partition, and stamps
//! whole batches with the source's watermark so that the frontier downstream is the watermark.
//!
//! Connectors implement [`Source`] and [`PartitionReader`]; [`event_source`] does the rest:
//! partitions are spread over all workers (partition `p` on worker `p % peers`), each record is
//! compared with its partition's watermark (late records go to the late stream), and after each
//! batch the capability moves to the minimum watermark over this worker's live, non-idle
//! partitions (rounded down to the tick). Finished sources drop their capability, so the frontier
//! empties and every window downstream flushes.

use std::fmt::Debug;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::operators::Capability;
use timely::dataflow::Scope;

use crate::checkpoint::WatermarkState;
use crate::context::QueryContext;
use crate::error::QueryError;
use crate::event::{Event, EventStream, LateRecord};
use crate::metrics::EventTimeStats;
use crate::source_cuts::SourceResume;
use crate::time::EventTime;
use crate::watermark::{Arrival, InvalidTimePolicy, PartitionWatermark, WatermarkOptions};

/// What a partition reader reports after a read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadStatus {
    /// More may be available at once: read again soon.
    Ready,
    /// Nothing is available now: try again after this long.
    Wait(Duration),
    /// The partition has ended (bounded input); it will never produce again.
    Finished,
}

/// Reads one partition of a source, in order.
pub trait PartitionReader: 'static {
    /// The records it produces.
    type Record;
    /// Appends at most `max` records to `out` and says whether more may follow.
    fn read(&mut self, out: &mut Vec<Self::Record>, max: usize) -> Result<ReadStatus, QueryError>;
    /// The position reached, as JSON (shown as the source's offset in progress reports).
    fn position(&self) -> serde_json::Value;
    /// The latest position known to exist, in the same shape as [`PartitionReader::position`]
    /// (e.g. a Kafka partition's high watermark), if the reader knows it. Progress reports show it
    /// as `latestOffset` and derive the consumer lag from it.
    fn latest(&self) -> Option<serde_json::Value> {
        None
    }
}

/// A partitioned input. Built on every worker; each worker opens only the partitions it owns.
pub trait Source: 'static {
    /// The records it produces.
    type Record: Clone + Debug + 'static;
    /// The reader of one partition.
    type Reader: PartitionReader<Record = Self::Record>;
    /// A one-line description, used as the source's name in progress reports.
    fn description(&self) -> String;
    /// How many partitions there are in total.
    fn partitions(&self) -> usize;
    /// Opens partition `partition` for reading.
    fn open(&self, partition: usize) -> Result<Self::Reader, QueryError>;
    /// Opens partition `partition` where a checkpoint left it: `position` is exactly what
    /// [`PartitionReader::position`] reported there, and the reader's first record is the one
    /// that would have followed. Starting settings (e.g. Kafka's starting offsets) do not apply.
    ///
    /// The default fails: a source that cannot resume says so instead of starting over quietly.
    fn open_at(&self, partition: usize, position: &serde_json::Value) -> Result<Self::Reader, QueryError> {
        Err(QueryError::Source {
            source_name: self.description(),
            message: format!(
                "source {} cannot resume from a checkpoint (partition {partition} was checkpointed at {position}): \
                 it does not implement Source::open_at. Start the query without the checkpoint, or reset it",
                self.description()
            ),
        })
    }
    /// Whether each partition's position is a JSON object to be merged with the others into one
    /// (Kafka's `{"topic":{"partition":offset}}`) in progress reports, instead of being listed
    /// under the partition's index.
    fn nested_offsets(&self) -> bool {
        false
    }
    /// A sentence for the diagnosis of a query whose source has read nothing since it started:
    /// where the source started and how to read older data, in the connector's own terms (e.g.
    /// Kafka's "started at the latest offsets: only records produced after the start are read;
    /// start at earliest to read the existing ones"). Shown in the `noInputSinceStart` cause of
    /// progress reports (see [`crate::diagnose`]); `None` (the default) gives a generic sentence.
    fn no_input_hint(&self) -> Option<String> {
        None
    }
}

/// How many records a source reads from one partition before it yields to other operators.
pub const DEFAULT_BATCH_SIZE: usize = 65536;

struct Partition<R> {
    index: usize,
    reader: R,
    watermark: PartitionWatermark,
    finished: bool,
}

/// Builds the event-time source operator for `source`, reading event times with `time_of`
/// (`None` for a record whose event time is missing or unreadable).
///
/// ```
/// use std::time::Duration;
/// use weir_runtime::prelude::*;
/// use weir_runtime::source::{event_source, PartitionReader, ReadStatus, Source};
///
/// // A source of one partition holding a few numbers, whose event time is the number itself.
/// struct Numbers(Vec<u64>);
/// struct NumberReader(Vec<u64>, usize);
/// impl PartitionReader for NumberReader {
///     type Record = u64;
///     fn read(&mut self, out: &mut Vec<u64>, max: usize) -> Result<ReadStatus, QueryError> {
///         let end = (self.1 + max).min(self.0.len());
///         out.extend_from_slice(&self.0[self.1..end]);
///         self.1 = end;
///         Ok(if end == self.0.len() { ReadStatus::Finished } else { ReadStatus::Ready })
///     }
///     fn position(&self) -> serde_json::Value { self.1.into() }
/// }
/// impl Source for Numbers {
///     type Record = u64;
///     type Reader = NumberReader;
///     fn description(&self) -> String { "Numbers".into() }
///     fn partitions(&self) -> usize { 1 }
///     fn open(&self, _: usize) -> Result<NumberReader, QueryError> { Ok(NumberReader(self.0.clone(), 0)) }
/// }
///
/// let ctx = QueryContext::ephemeral("doc");
/// timely::execute_directly(move |worker| {
///     worker.dataflow::<EventTime, _, _>(|scope| {
///         let events = event_source(scope, &ctx, Numbers(vec![10, 30, 20]), |n| Some(EventTime::from_millis(*n)),
///                                   WatermarkOptions::with_delay(Duration::from_millis(5)));
///         let _ = events;
///     });
/// });
/// ```
pub fn event_source<'scope, S: Source>(
    scope: Scope<'scope, EventTime>,
    ctx: &QueryContext,
    source: S,
    time_of: impl Fn(&S::Record) -> Option<EventTime> + 'static,
    options: WatermarkOptions,
) -> EventStream<'scope, S::Record> {
    event_source_with_batch(scope, ctx, source, time_of, options, DEFAULT_BATCH_SIZE)
}

/// [`event_source`] with an explicit number of records read per partition per activation.
/// Batches are stamped once each, so this also sets how often the watermark can move.
///
/// If the query resumes from a checkpoint that lists this source
/// ([`QueryContext::set_resume_offsets`]), the source resumes as [`event_source_resumed`] does.
pub fn event_source_with_batch<'scope, S: Source>(
    scope: Scope<'scope, EventTime>,
    ctx: &QueryContext,
    source: S,
    time_of: impl Fn(&S::Record) -> Option<EventTime> + 'static,
    options: WatermarkOptions,
    batch_size: usize,
) -> EventStream<'scope, S::Record> {
    // A query resumed from a checkpoint ([`QueryContext::set_resume_offsets`]) resumes its sources.
    let resume = ctx.source_resume(&source.description());
    build_event_source(scope, ctx, source, time_of, options, batch_size, resume)
}

/// [`event_source_with_batch`] resumed from a checkpoint: every partition this worker reads is
/// opened where `resume` says ([`Source::open_at`]) with its recorded watermark state
/// ([`PartitionWatermark::restore`]), and the capability starts at `resume.boundary` — or higher,
/// at the stamp the restored watermarks give (the minimum over the non-idle partitions, rounded
/// down to the tick), which is the stamp the interrupted run had reached there. So nothing is
/// emitted below the boundary, and records are judged late exactly as they would have been.
/// A partition without a recorded cut starts fresh ([`Source::open`]), with a warning.
pub fn event_source_resumed<'scope, S: Source>(
    scope: Scope<'scope, EventTime>,
    ctx: &QueryContext,
    source: S,
    time_of: impl Fn(&S::Record) -> Option<EventTime> + 'static,
    options: WatermarkOptions,
    batch_size: usize,
    resume: SourceResume,
) -> EventStream<'scope, S::Record> {
    build_event_source(scope, ctx, source, time_of, options, batch_size, Some(resume))
}

fn build_event_source<'scope, S: Source>(
    scope: Scope<'scope, EventTime>,
    ctx: &QueryContext,
    source: S,
    time_of: impl Fn(&S::Record) -> Option<EventTime> + 'static,
    options: WatermarkOptions,
    batch_size: usize,
    resume: Option<SourceResume>,
) -> EventStream<'scope, S::Record> {
    let description = source.description();
    ctx.plan().record(crate::plan::source_plan(&description, source.partitions(), &options));
    let mut builder = OperatorBuilder::new(format!("Source[{description}]"), scope);
    let info = builder.operator_info();
    let activator = scope.activator_for(info.address);
    let (records_out, records) = builder.new_output::<Vec<Event<S::Record>>>();
    let (late_out, late) = builder.new_output::<Vec<LateRecord<S::Record>>>();
    let mut records_out: OutputBuilder<EventTime, CapacityContainerBuilder<Vec<Event<S::Record>>>> =
        OutputBuilder::from(records_out);
    let mut late_out: OutputBuilder<EventTime, CapacityContainerBuilder<Vec<LateRecord<S::Record>>>> =
        OutputBuilder::from(late_out);

    let worker = scope.index();
    let peers = scope.peers();
    let ctx = ctx.clone();
    let metrics = ctx.metrics().source(&description);
    let shared_watermark = ctx.shared_watermark(&description);
    let batch_size = batch_size.max(1);
    // Off unless the query checkpoints: then every stamp change is recorded per partition.
    let cuts = ctx.records_cuts().then(|| ctx.source_cuts(&description, worker));
    metrics.nested_offsets.store(source.nested_offsets(), Ordering::Relaxed);
    if let Some(hint) = source.no_input_hint() {
        *metrics.no_input_hint.lock().unwrap() = Some(hint);
    }

    builder.build(move |mut capabilities| {
        let late_cap = capabilities.pop().expect("late output capability");
        let records_cap = capabilities.pop().expect("records output capability");
        let mut caps: Option<(Capability<EventTime>, Capability<EventTime>)> = Some((records_cap, late_cap));

        let mut partitions = Vec::new();
        // A dataflow built only to be explained never runs: it opens nothing (no file, no consumer).
        let explaining = ctx.is_explaining();
        for index in (0..source.partitions()).filter(|p| p % peers == worker && !explaining) {
            let opened = match resume.as_ref().map(|resume| resume.partitions.get(&index)) {
                Some(Some(cut)) => source.open_at(index, &cut.position).map(|reader| {
                    tracing::info!(target: "weir::checkpoint", source = %description, partition = index, position = %cut.position, "partition resumes from the checkpoint");
                    (reader, Some(cut.watermark))
                }),
                Some(None) => {
                    tracing::warn!(source = %description, partition = index, "the checkpoint has no position for this partition: it starts like a new one");
                    source.open(index).map(|reader| (reader, None))
                }
                None => source.open(index).map(|reader| (reader, None)),
            };
            match opened {
                Ok((reader, restored)) => {
                    metrics.start_offsets.lock().unwrap().insert(index, reader.position());
                    let mut watermark = PartitionWatermark::new(options.delay);
                    if let Some(state) = restored {
                        watermark.restore(state);
                    }
                    partitions.push(Partition { index, reader, watermark, finished: false })
                }
                Err(error) => {
                    ctx.fail(error);
                    caps = None;
                }
            }
        }
        if partitions.is_empty() {
            caps = None;
        }
        if let (Some(resume), Some((records_cap, late_cap))) = (resume.as_ref(), caps.as_mut()) {
            // Where the interrupted run stood: its stamp there, never below the boundary.
            let restored = partitions.iter().filter(|p| !p.watermark.is_idle()).map(|p| p.watermark.watermark()).min();
            let start = restored.map_or(resume.boundary, |mark| mark.floor_to(options.tick).max(resume.boundary));
            records_cap.downgrade(&start);
            late_cap.downgrade(&start);
            shared_watermark.fetch_max(start.as_millis(), Ordering::Relaxed);
        }
        if let (Some(cuts), Some((records_cap, _))) = (cuts.as_ref(), caps.as_ref()) {
            let mut cuts = cuts.lock().unwrap();
            for partition in &partitions {
                cuts.stamp_changed(partition.index, *records_cap.time(), partition.reader.position(), partition.watermark.state());
            }
        }
        metrics.watermarks.lock().unwrap().insert(worker, caps.as_ref().map(|(c, _)| *c.time()));
        // A checkpointed query: this instance takes part in choosing epoch boundaries, from the
        // capability it really starts at.
        let checkpoint = ctx.checkpoint();
        if let Some(live) = checkpoint.as_ref() {
            live.register_source(&description, source.partitions(), worker, caps.as_ref().map(|(c, _)| *c.time()));
        }
        let mut next_cut_epoch = checkpoint.as_ref().and_then(|live| live.resumed()).map_or(0, |(epoch, _)| epoch + 1);
        if caps.is_some() {
            tracing::info!(source = %description, worker, partitions = ?partitions.iter().map(|p| p.index).collect::<Vec<_>>(), "source started");
        }

        let mut read_buffer: Vec<S::Record> = Vec::with_capacity(batch_size);
        let mut on_time: Vec<Event<S::Record>> = Vec::with_capacity(batch_size);
        let mut late_records: Vec<LateRecord<S::Record>> = Vec::new();

        move |_frontiers| {
            let Some((records_cap, late_cap)) = caps.as_mut() else { return };
            if ctx.stop_requested() {
                // A graceful stop holds the watermark where it is (the query drains and drops the
                // dataflow); after a failure the source lets go, so the dataflow winds down on its own.
                if ctx.failure().is_some() {
                    caps = None;
                    metrics.watermarks.lock().unwrap().insert(worker, None);
                }
                return;
            }
            let now = Instant::now();
            let floor = *records_cap.time();
            let mut again = false;
            let mut wait: Option<Duration> = None;
            let mut stats = EventTimeStats::default();
            let mut read_rows = 0u64;
            let mut invalid = 0u64;

            for partition in partitions.iter_mut().filter(|p| !p.finished) {
                read_buffer.clear();
                let status = match partition.reader.read(&mut read_buffer, batch_size) {
                    Ok(status) => status,
                    Err(error) => {
                        ctx.fail(error);
                        caps = None;
                        metrics.watermarks.lock().unwrap().insert(worker, None);
                        return;
                    }
                };
                if !read_buffer.is_empty() {
                    partition.watermark.touch(now);
                }
                read_rows += read_buffer.len() as u64;
                for record in read_buffer.drain(..) {
                    let Some(time) = time_of(&record) else {
                        match options.invalid_time {
                            InvalidTimePolicy::DropAndCount => {
                                invalid += 1;
                                continue;
                            }
                            InvalidTimePolicy::Fail => {
                                ctx.fail(QueryError::Source {
                                    source_name: description.clone(),
                                    message: format!(
                                        "partition {}: record without a readable event time: {:?}. Fix the input, or choose the drop-and-count policy for invalid event times",
                                        partition.index, record
                                    ),
                                });
                                caps = None;
                                metrics.watermarks.lock().unwrap().insert(worker, None);
                                return;
                            }
                        }
                    };
                    match partition.watermark.observe(time, floor) {
                        Arrival::OnTime => on_time.push(Event { time, data: record }),
                        Arrival::Late { watermark } => {
                            late_records.push(LateRecord::new(record, time, watermark, description.as_str()))
                        }
                    }
                }
                match status {
                    ReadStatus::Ready => again = true,
                    ReadStatus::Wait(delay) => wait = Some(wait.map_or(delay, |w: Duration| w.min(delay))),
                    ReadStatus::Finished => {
                        partition.finished = true;
                        if let Some(cuts) = cuts.as_ref() {
                            // A finished partition no longer holds the watermark back: recorded as
                            // idle, so a source resumed there stamps as this one does from now on.
                            let state = WatermarkState { idle: true, ..partition.watermark.state() };
                            cuts.lock().unwrap().finished(partition.index, partition.reader.position(), state);
                        }
                    }
                }
                metrics.offsets.lock().unwrap().insert(partition.index, partition.reader.position());
                if let Some(latest) = partition.reader.latest() {
                    metrics.latest.lock().unwrap().insert(partition.index, latest);
                }
            }

            stats.add_all(on_time.iter().map(|e| e.time));
            stats.add_all(late_records.iter().map(|l| l.event_time));
            let late_count = late_records.len() as u64;
            if !on_time.is_empty() {
                records_out.activate().session(&*records_cap).give_container(&mut on_time);
                on_time.clear();
            }
            if !late_records.is_empty() {
                late_out.activate().session(&*late_cap).give_container(&mut late_records);
                late_records.clear();
            }
            if read_rows > 0 {
                if let Some(live) = checkpoint.as_ref() {
                    live.count_records(read_rows);
                }
                metrics.input_rows.fetch_add(read_rows, Ordering::Relaxed);
                metrics.late_rows.fetch_add(late_count, Ordering::Relaxed);
                metrics.invalid_time_rows.fetch_add(invalid, Ordering::Relaxed);
                metrics.event_times.lock().unwrap().merge(&stats);
            }

            // Move the capability to the new watermark of this worker's partitions.
            for partition in partitions.iter().filter(|p| p.finished) {
                metrics.partition_watermarks.lock().unwrap().remove(&partition.index);
            }
            let live: Vec<&mut Partition<S::Reader>> = partitions.iter_mut().filter(|p| !p.finished).collect();
            if live.is_empty() {
                caps = None;
                metrics.watermarks.lock().unwrap().insert(worker, None);
                if let (Some(checkpoint), Some(cuts)) = (checkpoint.as_ref(), cuts.as_ref()) {
                    // Every partition has finished: its cut at any later boundary is its end.
                    let final_cuts = cuts.lock().unwrap().cut(EventTime::MAX).unwrap_or_default();
                    let boundaries = checkpoint.source_finished(&description, worker, final_cuts);
                    report_cuts(checkpoint, &ctx, &description, cuts, &boundaries, &mut next_cut_epoch);
                }
                tracing::info!(source = %description, worker, "source finished");
                return;
            }
            let mut idle = Vec::new();
            let mut active_min: Option<EventTime> = None;
            let mut any_max = EventTime::MIN;
            let mut partition_marks = metrics.partition_watermarks.lock().unwrap();
            for partition in live {
                let mark = partition.watermark.watermark();
                partition_marks.insert(partition.index, mark);
                any_max = any_max.max(mark);
                if partition.watermark.check_idle(now, options.idle_timeout) {
                    idle.push(partition.index);
                } else {
                    active_min = Some(active_min.map_or(mark, |m| m.min(mark)));
                }
            }
            drop(partition_marks);
            let watermark = match active_min {
                Some(mark) => mark,
                // Every partition here is idle: follow the other instances instead of holding them back.
                None => any_max.max(EventTime::from_millis(shared_watermark.load(Ordering::Relaxed))),
            };
            let stamp = watermark.floor_to(options.tick);
            // Epoch boundaries are published while this instance's capability is still `floor`
            // (no record at `stamp` exists yet), under the coordinator's lock.
            let boundaries = match checkpoint.as_ref() {
                Some(live) if stamp > floor => live.source_downgrade(&description, worker, Some(stamp)),
                _ => Vec::new(),
            };
            if stamp > floor {
                records_cap.downgrade(&stamp);
                late_cap.downgrade(&stamp);
                metrics.watermarks.lock().unwrap().insert(worker, Some(stamp));
                if let Some(cuts) = cuts.as_ref() {
                    // From the next record on, every live partition is stamped at `stamp`.
                    let mut cuts = cuts.lock().unwrap();
                    for partition in partitions.iter().filter(|p| !p.finished) {
                        cuts.stamp_changed(partition.index, stamp, partition.reader.position(), partition.watermark.state());
                    }
                }
            }
            if let (Some(checkpoint), Some(cuts)) = (checkpoint.as_ref(), cuts.as_ref()) {
                report_cuts(checkpoint, &ctx, &description, cuts, &boundaries, &mut next_cut_epoch);
                if let Some(message) = checkpoint.failure() {
                    ctx.fail(QueryError::State { operator: "checkpoint coordinator".to_string(), message });
                }
            }
            shared_watermark.fetch_max(records_cap.time().as_millis(), Ordering::Relaxed);
            if options.idle_timeout.is_some() {
                *metrics.idle_partitions.lock().unwrap() = idle;
            }

            if again {
                activator.activate();
            } else {
                let mut delay = wait.unwrap_or(Duration::from_millis(10));
                if let Some(timeout) = options.idle_timeout {
                    delay = delay.min(timeout);
                }
                activator.activate_after(delay);
            }
        }
    });

    EventStream { records, late }
}

/// Reports this instance's partitions' cuts at every published boundary they have reached (the
/// first position stamped at or above it), in epoch order; a boundary not reached yet waits.
fn report_cuts(
    checkpoint: &crate::checkpoint::LiveCheckpoint,
    ctx: &QueryContext,
    description: &str,
    cuts: &crate::source_cuts::SharedSourceCuts,
    boundaries: &[crate::checkpoint::Boundary],
    next_cut_epoch: &mut u64,
) {
    for boundary in boundaries {
        if boundary.epoch < *next_cut_epoch {
            continue;
        }
        let Some(partition_cuts) = cuts.lock().unwrap().cut(boundary.boundary) else {
            tracing::debug!(source = description, epoch = boundary.epoch, boundary = %boundary.boundary, "cut not known yet");
            break;
        };
        tracing::debug!(source = description, epoch = boundary.epoch, boundary = %boundary.boundary, cuts = partition_cuts.len(), "cuts reported");
        for cut in partition_cuts {
            if let Err(error) = checkpoint.report_cut(boundary.epoch, description, cut) {
                ctx.fail(QueryError::Source { source_name: description.to_string(), message: error.to_string() });
                return;
            }
        }
        *next_cut_epoch = boundary.epoch + 1;
        if boundary.boundary != EventTime::MAX {
            cuts.lock().unwrap().forget_before(boundary.boundary);
        }
    }
}
