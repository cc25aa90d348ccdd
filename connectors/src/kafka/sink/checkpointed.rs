//! Exactly-once Kafka output in a query that checkpoints: a **write-ahead staged epoch**.
//!
//! The checkpoint's epochs are the sink's transactions (`docs/checkpoints.md` §4–6):
//!
//! 1. When the sink's input frontier passes the end of epoch `N`, each worker *stages* its records
//!    of `N` in the checkpoint directory (`sinks/<sink>/<worker>/staged/<N>`, a checked file:
//!    header, length, CRC-32, then the records in a compact binary encoding) and reports the
//!    epoch prepared. An epoch without records on a worker stages nothing.
//! 2. Once the coordinator has written `commits/N`, the worker writes its staged records of every
//!    committed epoch in **one transaction** together with its **progress marker**: the offset
//!    `N + 1` of partition 0 of the progress topic, committed for the consumer group
//!    `weir-<query id>-<sink>-<worker>` through `send_offsets_to_transaction`, so the marker is
//!    committed if and only if the records are. Then it removes the staged files.
//! 3. After a restart, at build time (before any record is processed): `init_transactions` with
//!    the same `transactional.id` fences the previous run and aborts its open transaction; the
//!    worker reads its marker `m` and, for every committed epoch `e` with `m < e ≤ last
//!    committed` whose staged records are there, writes them (with the marker) in one
//!    transaction and commits it. Staged epochs `≤ m` were delivered (removed), and staged epochs
//!    after the last commit were never committed (removed; they are recomputed).
//!
//! So every epoch is written by one committed transaction per worker, from records made durable
//! before the epoch's commit: no deterministic replay is needed (a recomputation of uncommitted
//! epochs may cut records differently, as for the exactly-once file sink, because none of them
//! became visible). The marker is a committed *offset*, not a record: a broker that shows aborted
//! records to read_committed consumers (nisshi 0.7.0) still drops aborted transactional offsets.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerGroupMetadata};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, Producer};
use rdkafka::{Offset, TopicPartitionList};
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::StreamVec;
use weir_runtime::checkpoint::{CheckpointDir, CheckpointError, Corruption, LiveCheckpoint};
use weir_runtime::context::QueryContext;
use weir_runtime::error::{BuildError, QueryError};
use weir_runtime::time::EventTime;

use super::{delivery_error, send_record, DeliveryWatch, KafkaSink, ProducerRecord};
use crate::kafka::transaction::{is_fencing, ErrorClass, Reaction, TransactionMachine, TxnStep};

/// How often a worker with staged epochs looks for their commit in the checkpoint.
const COMMIT_POLL: Duration = Duration::from_millis(10);

/// Attaches the exactly-once sink of a checkpointing query (see the module docs).
pub(super) fn write<'scope>(
    sink: KafkaSink,
    stream: StreamVec<'scope, EventTime, ProducerRecord>,
    ctx: &QueryContext,
    name: &str,
    checkpoint: Arc<LiveCheckpoint>,
) -> Result<(), BuildError> {
    let what = format!("Kafka sink {name}");
    if ctx.is_explaining() {
        stream.sink(Pipeline, &format!("KafkaSink[{name}]"), |(input, _)| input.for_each_time(|_, _| {}));
        return Ok(());
    }
    let Some(progress_topic) = sink.progress_topic.clone().or_else(|| sink.topic.clone()) else {
        return Err(BuildError::invalid(
            &what,
            "exactly-once output in a checkpointing query keys its progress marker on a topic, and this sink has no fixed topic",
            "write to a fixed topic (KafkaSink::to_topic) or name one with KafkaSink::progress_topic",
        ));
    };
    let Some(dir) = checkpoint.dir().cloned() else {
        return Err(BuildError::invalid(
            &what,
            "the query's checkpoint has no directory",
            "checkpoint into a directory",
        ));
    };
    checkpoint.register_sink(name);
    let scope = stream.scope();
    let worker = scope.index();
    let transactional_id = KafkaSink::transactional_id(ctx.id(), name, worker);
    let group = KafkaSink::progress_group(ctx.id(), name, worker);
    if sink.commit_interval != Duration::from_secs(1) {
        tracing::debug!(sink = name, "commit_interval is not used: transactions follow the checkpoint's epochs");
    }
    // Fences the previous run's producer and aborts its open transaction.
    let producer = sink.connect(name, worker, &transactional_id)?;
    if sink.topic.as_deref() != Some(progress_topic.as_str()) {
        check_topic(&producer, &progress_topic, &sink, &what)?;
    }
    let client_id = format!("weir-{name}-{worker}-progress");
    let marker_reader: BaseConsumer = sink
        .options
        .client_config(&[
            ("group.id", group.as_str()),
            ("client.id", client_id.as_str()),
            ("enable.auto.commit", "false"),
            // Offset fetches then wait for pending transactional offsets (KIP-447 require_stable).
            ("isolation.level", "read_committed"),
        ])
        .create()
        .map_err(|e| {
            BuildError::invalid(
                &what,
                format!("cannot create the progress-marker reader: {e}"),
                "check the Kafka options",
            )
        })?;
    let group_metadata = marker_reader.group_metadata().ok_or_else(|| {
        BuildError::invalid(&what, "librdkafka gave no consumer group metadata for the progress marker", "report a bug")
    })?;
    let mut machine = TransactionMachine::new(sink.max_retries);
    machine.start(TxnStep::Init).expect("a fresh machine accepts init");
    machine.succeeded(TxnStep::Init);
    let mut output = KafkaEpochs {
        producer,
        machine,
        group_metadata,
        marker_reader: Some(marker_reader),
        group: group.clone(),
        progress_topic,
        topic: sink.topic.clone(),
        headers: sink.epoch_headers.then(|| (worker.to_string(), ctx.run_id().to_string())),
        transactional_id,
        brokers: sink.options.bootstrap_servers.clone(),
        wait: sink.delivery_timeout + Duration::from_secs(5),
        name: name.to_string(),
    };
    let mut staging = Staging::new(dir, name, worker);
    let last_committed = checkpoint.resumed().map(|(epoch, _)| epoch);
    let recovered = staging.recover(&mut output, last_committed).map_err(|e| {
        BuildError::invalid(
            &what,
            format!("recovering worker {worker}'s epochs (progress marker: consumer group {group}): {e}"),
            "see the message; --reset-checkpoint starts over with a new query id (and a new progress marker)",
        )
    })?;
    output.marker_reader = None;
    let metrics = ctx.metrics().sink(name);
    if !recovered.replayed.is_empty() || !recovered.dropped.is_empty() {
        tracing::info!(
            sink = name,
            worker,
            marker = ?recovered.marker,
            last_committed = ?last_committed,
            delivered = ?recovered.replayed,
            removed = ?recovered.dropped,
            "delivered the committed epochs the previous run had not written"
        );
    }
    metrics.output_rows.fetch_add(recovered.rows, Ordering::Relaxed);

    let mut builder = OperatorBuilder::new(format!("KafkaSink[{name}]"), scope);
    let mut input = builder.new_input(stream, Pipeline);
    let activator = scope.activator_for(builder.operator_info().address);
    let ctx = ctx.clone();
    let mut state = Some(Running {
        output,
        staging,
        checkpoint,
        name: name.to_string(),
        worker,
        pending: BTreeMap::new(),
        next_epoch: 0,
        invisible: Vec::new(),
    });
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
            sink.output.producer.poll(Duration::ZERO);
            let result = sink.prepare_passed(|t| !frontier.less_equal(t)).and_then(|()| sink.deliver_committed());
            match result {
                Err(message) => {
                    metrics.errors.fetch_add(1, Ordering::Relaxed);
                    ctx.fail(QueryError::Sink { sink: sink.name.clone(), message });
                    state = None;
                    false
                }
                Ok(delivered) => {
                    if let Some((rows, took)) = delivered {
                        metrics.output_rows.fetch_add(rows, Ordering::Relaxed);
                        metrics.epoch_committed(took);
                    }
                    // Staged epochs (and empty ones, for their sink records) wait for the
                    // coordinator's commit, which no input announces.
                    let waiting = sink.staging.waiting() || !sink.invisible.is_empty();
                    if waiting {
                        activator.activate_after(COMMIT_POLL);
                    }
                    waiting && !ctx.stop_requested()
                }
            }
        }
    });
    Ok(())
}

/// Checks that the progress topic exists (its partition 0 keys the marker).
fn check_topic(
    producer: &BaseProducer<DeliveryWatch>,
    topic: &str,
    sink: &KafkaSink,
    what: &str,
) -> Result<(), BuildError> {
    let metadata = producer.client().fetch_metadata(Some(topic), sink.preflight_timeout).map_err(|e| {
        BuildError::invalid(
            what,
            format!("cannot read the metadata of progress topic {topic}: {e}"),
            "check the brokers",
        )
    })?;
    match metadata.topics().first() {
        Some(t) if t.error().is_none() && !t.partitions().is_empty() => Ok(()),
        _ => Err(BuildError::invalid(
            what,
            format!("progress topic {topic} does not exist on {}", sink.options.bootstrap_servers),
            "create it (one partition is enough; nothing is written to it) or name another with KafkaSink::progress_topic",
        )),
    }
}

/// The sink on one worker while the query runs.
struct Running {
    output: KafkaEpochs,
    staging: Staging,
    checkpoint: Arc<LiveCheckpoint>,
    name: String,
    worker: usize,
    /// Records received, by timely time, not yet in a staged epoch.
    pending: BTreeMap<EventTime, Vec<ProducerRecord>>,
    /// The next epoch to stage.
    next_epoch: u64,
    /// Epochs staged (or empty) whose output is not visible yet, for the sink records.
    invisible: Vec<u64>,
}

impl Running {
    /// Stages every epoch whose end the frontier has passed (`passed(end)`), in order, and
    /// reports it prepared.
    fn prepare_passed(&mut self, passed: impl Fn(&EventTime) -> bool) -> Result<(), String> {
        for boundary in self.checkpoint.boundaries_since(self.next_epoch) {
            // `passed(MAX)` only once the frontier is empty: the last epoch ends with the input.
            if !passed(&boundary.boundary) {
                break;
            }
            let records = crate::jsonl::exactly_once::take_epoch(&mut self.pending, boundary.boundary);
            self.staging.stage(boundary.epoch, records)?;
            self.checkpoint.report_prepared(boundary.epoch, &self.name, self.worker).map_err(|e| e.to_string())?;
            self.invisible.push(boundary.epoch);
            self.next_epoch = boundary.epoch + 1;
        }
        Ok(())
    }

    /// Delivers the staged epochs the coordinator has committed; answers the records written and
    /// how long the transaction took, if there was one.
    fn deliver_committed(&mut self) -> Result<Option<(u64, Duration)>, String> {
        let started = Instant::now();
        let last_committed = self.checkpoint.last_committed();
        let delivered = self.staging.deliver(&mut self.output, last_committed)?;
        // Every epoch up to the last committed one is now delivered (or had nothing to deliver).
        if let Some(last) = last_committed {
            while let Some(&epoch) = self.invisible.first() {
                if epoch > last {
                    break;
                }
                self.checkpoint.report_sink_committed(epoch, &self.name, self.worker).map_err(|e| e.to_string())?;
                self.invisible.remove(0);
            }
        }
        Ok(delivered.map(|(rows, waited)| {
            let took = started.elapsed();
            tracing::debug!(
                sink = %self.name,
                worker = self.worker,
                rows,
                staged_to_committed_ms = waited.as_secs_f64() * 1e3,
                transaction_ms = took.as_secs_f64() * 1e3,
                "delivered committed epochs"
            );
            (rows, took)
        }))
    }
}

/// Where a worker's epochs go: Kafka transactions in the sink, a model in the tests.
trait EpochOutput {
    /// The progress marker: the last epoch whose records this worker has committed.
    fn marker(&mut self) -> Result<Option<u64>, String>;

    /// Writes the records of `epochs` (in order) and the marker "committed up to the last of
    /// them" in one transaction, and commits it.
    fn commit(&mut self, epochs: &[(u64, Vec<ProducerRecord>)]) -> Result<(), String>;
}

/// A worker's staged epochs: written ahead into the checkpoint, delivered once committed.
struct Staging {
    dir: CheckpointDir,
    sink: String,
    worker: usize,
    /// Staged epochs not delivered yet, with their records and when they were staged.
    staged: BTreeMap<u64, (Vec<ProducerRecord>, Instant)>,
}

/// What recovery did.
#[derive(Debug, Default, PartialEq, Eq)]
struct Recovered {
    /// The progress marker found.
    marker: Option<u64>,
    /// Committed epochs delivered now (the previous run had not).
    replayed: Vec<u64>,
    /// Staged epochs removed without delivery: delivered already, or never committed.
    dropped: Vec<u64>,
    /// Records delivered.
    rows: u64,
}

impl Staging {
    fn new(dir: CheckpointDir, sink: &str, worker: usize) -> Self {
        Staging { dir, sink: sink.to_string(), worker, staged: BTreeMap::new() }
    }

    /// Makes `records` of `epoch` durable before the epoch is reported prepared. An epoch
    /// without records stages nothing (there is nothing to deliver).
    fn stage(&mut self, epoch: u64, records: Vec<ProducerRecord>) -> Result<(), String> {
        if records.is_empty() {
            return Ok(());
        }
        self.dir
            .write_sink_data(&self.sink, self.worker, epoch, &encode_records(&records))
            .map_err(|e| format!("staging epoch {epoch}: {e}"))?;
        self.staged.insert(epoch, (records, Instant::now()));
        Ok(())
    }

    /// Staged epochs wait for delivery.
    fn waiting(&self) -> bool {
        !self.staged.is_empty()
    }

    /// Delivers every staged epoch up to `last_committed` in one transaction, then removes their
    /// files; answers the records delivered and how long the oldest waited since it was staged.
    fn deliver(
        &mut self,
        output: &mut impl EpochOutput,
        last_committed: Option<u64>,
    ) -> Result<Option<(u64, Duration)>, String> {
        let Some(last) = last_committed else { return Ok(None) };
        if self.staged.first_key_value().is_none_or(|(&first, _)| first > last) {
            return Ok(None);
        }
        let later = self.staged.split_off(&(last + 1));
        let ready = std::mem::replace(&mut self.staged, later);
        let waited = ready.values().map(|(_, at)| at.elapsed()).max().unwrap_or_default();
        let epochs: Vec<(u64, Vec<ProducerRecord>)> =
            ready.into_iter().map(|(epoch, (records, _))| (epoch, records)).collect();
        output.commit(&epochs)?;
        for (epoch, _) in &epochs {
            self.dir.remove_sink_data(&self.sink, self.worker, *epoch).map_err(|e| e.to_string())?;
        }
        Ok(Some((epochs.iter().map(|(_, records)| records.len() as u64).sum(), waited)))
    }

    /// After a restart, before anything runs: delivers the committed epochs that the marker does
    /// not cover, and removes staged epochs delivered already or never committed.
    fn recover(&mut self, output: &mut impl EpochOutput, last_committed: Option<u64>) -> Result<Recovered, String> {
        let marker = output.marker()?;
        let staged = self.dir.sink_data_epochs(&self.sink, self.worker).map_err(|e| e.to_string())?;
        let plan = plan_recovery(marker, last_committed, &staged)?;
        for &epoch in plan.delivered.iter().chain(&plan.uncommitted) {
            self.dir.remove_sink_data(&self.sink, self.worker, epoch).map_err(|e| e.to_string())?;
        }
        for &epoch in &plan.replay {
            let records = self.read_staged(epoch).map_err(|e| e.to_string())?;
            self.staged.insert(epoch, (records, Instant::now()));
        }
        let rows = self.deliver(output, last_committed)?.map_or(0, |(rows, _)| rows);
        let mut dropped: Vec<u64> = plan.delivered.into_iter().chain(plan.uncommitted).collect();
        dropped.sort_unstable();
        Ok(Recovered { marker, replayed: plan.replay, dropped, rows })
    }

    /// Reads and decodes a staged epoch; a damaged file is an error naming it.
    fn read_staged(&self, epoch: u64) -> Result<Vec<ProducerRecord>, CheckpointError> {
        let bytes = self.dir.read_sink_data(&self.sink, self.worker, epoch)?;
        decode_records(&bytes).map_err(|problem| CheckpointError::Corrupt {
            path: self.dir.sink_data_path(&self.sink, self.worker, epoch),
            problem: Corruption::InvalidContent(problem),
        })
    }
}

/// What to do with a worker's staged epochs after a restart.
#[derive(Debug, Default, PartialEq, Eq)]
struct RecoveryPlan {
    /// Committed in the checkpoint, not covered by the marker: deliver them.
    replay: Vec<u64>,
    /// Covered by the marker (the crash came between the transaction's commit and the removal).
    delivered: Vec<u64>,
    /// After the last committed epoch: never committed, recomputed by this run.
    uncommitted: Vec<u64>,
}

/// Decides from the progress marker `marker` (the last epoch this worker committed), the
/// checkpoint's last committed epoch and the staged epochs what recovery does. A marker beyond
/// the last committed epoch means the topic is ahead of the checkpoint: refused.
fn plan_recovery(marker: Option<u64>, last_committed: Option<u64>, staged: &[u64]) -> Result<RecoveryPlan, String> {
    if let Some(marker) = marker {
        if last_committed.is_none_or(|last| marker > last) {
            let last = last_committed.map_or("none".to_string(), |e| format!("epoch {e}"));
            return Err(format!(
                "the progress marker says this worker delivered epoch {marker}, but the checkpoint's last committed \
                 epoch is {last}: the output is ahead of the checkpoint (the checkpoint directory was restored from an \
                 older copy, or another query with the same id wrote the topic)"
            ));
        }
    }
    let mut plan = RecoveryPlan::default();
    for &epoch in staged {
        if marker.is_some_and(|m| epoch <= m) {
            plan.delivered.push(epoch);
        } else if last_committed.is_some_and(|last| epoch <= last) {
            plan.replay.push(epoch);
        } else {
            plan.uncommitted.push(epoch);
        }
    }
    Ok(plan)
}

/// The transactional producer of one worker, with its progress marker.
struct KafkaEpochs {
    producer: BaseProducer<DeliveryWatch>,
    machine: TransactionMachine,
    group_metadata: ConsumerGroupMetadata,
    /// Reads the marker at build time; dropped afterwards.
    marker_reader: Option<BaseConsumer>,
    group: String,
    progress_topic: String,
    topic: Option<String>,
    /// With epoch headers: this worker's index and the run id, as header values.
    headers: Option<(String, String)>,
    transactional_id: String,
    brokers: String,
    wait: Duration,
    name: String,
}

impl EpochOutput for KafkaEpochs {
    fn marker(&mut self) -> Result<Option<u64>, String> {
        let reader = self.marker_reader.as_ref().ok_or("internal: the progress marker is read at build time only")?;
        let mut partitions = TopicPartitionList::new();
        partitions.add_partition(&self.progress_topic, 0);
        let committed = reader.committed_offsets(partitions, self.wait).map_err(|e| {
            format!("cannot read the committed offset of consumer group {} on {}: {e}", self.group, self.brokers)
        })?;
        let element = committed
            .find_partition(&self.progress_topic, 0)
            .ok_or_else(|| format!("the brokers did not answer for {} partition 0", self.progress_topic))?;
        element.error().map_err(|e| format!("reading the progress marker of consumer group {}: {e}", self.group))?;
        match element.offset() {
            Offset::Invalid => Ok(None),
            Offset::Offset(next) if next > 0 => Ok(Some(next as u64 - 1)),
            other => Err(format!(
                "consumer group {} has offset {other:?} on {} partition 0, which is not a progress marker of this sink",
                self.group, self.progress_topic
            )),
        }
    }

    fn commit(&mut self, epochs: &[(u64, Vec<ProducerRecord>)]) -> Result<(), String> {
        let Some(&(last, _)) = epochs.last() else { return Ok(()) };
        self.step(TxnStep::Begin, |p| p.begin_transaction())?;
        self.machine.start(TxnStep::Produce).map_err(|e| format!("internal: {e}"))?;
        for (epoch, records) in epochs {
            let epoch_text = epoch.to_string();
            let extra: Vec<(&str, &[u8])> = match &self.headers {
                Some((worker, run)) => vec![
                    ("weir-epoch", epoch_text.as_bytes()),
                    ("weir-worker", worker.as_bytes()),
                    ("weir-run", run.as_bytes()),
                ],
                None => Vec::new(),
            };
            for record in records {
                if let Err(message) =
                    send_record(&self.producer, self.topic.as_deref(), record, &extra, self.wait, &self.brokers)
                {
                    return Err(self.abort(message));
                }
            }
            self.producer.poll(Duration::ZERO);
        }
        let mut marker = TopicPartitionList::new();
        if let Err(e) = marker.add_partition_offset(&self.progress_topic, 0, Offset::Offset(last as i64 + 1)) {
            return Err(self.abort(format!("internal: progress marker: {e}")));
        }
        if let Err(e) = self.producer.send_offsets_to_transaction(&marker, &self.group_metadata, self.wait) {
            let message = format!(
                "writing the progress marker (epoch {last}, consumer group {}) into the transaction of \
                 transactional.id {}: {e}",
                self.group, self.transactional_id
            );
            return Err(if ErrorClass::of(&e).fenced { self.fenced(message) } else { self.abort(message) });
        }
        // Wait for every acknowledgement with short polls (`commit_transaction` polls in 100 ms
        // steps while records are in flight).
        let deadline = Instant::now() + self.wait;
        while self.producer.in_flight_count() > 0 {
            if let Some(message) = delivery_error(&self.producer, &self.brokers) {
                return Err(self.abort(message));
            }
            if Instant::now() >= deadline {
                let message = format!(
                    "{} records were not acknowledged by {} within {:?}",
                    self.producer.in_flight_count(),
                    self.brokers,
                    self.wait
                );
                return Err(self.abort(message));
            }
            self.producer.poll(Duration::from_millis(1));
        }
        if let Some(message) = delivery_error(&self.producer, &self.brokers) {
            return Err(self.abort(message));
        }
        self.machine.succeeded(TxnStep::Produce);
        let wait = self.wait;
        self.step(TxnStep::Commit, |p| p.commit_transaction(wait))
    }
}

impl KafkaEpochs {
    /// Runs one transactional call through the state machine, retrying what may be retried.
    fn step(
        &mut self,
        step: TxnStep,
        call: impl Fn(&BaseProducer<DeliveryWatch>) -> Result<(), KafkaError>,
    ) -> Result<(), String> {
        self.machine.start(step).map_err(|e| format!("internal: {e}"))?;
        loop {
            let error = match call(&self.producer) {
                Ok(()) => {
                    self.machine.succeeded(step);
                    return Ok(());
                }
                Err(error) => error,
            };
            let mut message = format!("{step:?} of transactional.id {} failed: {error}", self.transactional_id);
            if let Some(delivery) = delivery_error(&self.producer, &self.brokers) {
                message = format!("{message}; first delivery error: {delivery}");
            }
            match self.machine.failed(step, ErrorClass::of(&error)) {
                Reaction::Retry => {
                    tracing::warn!(sink = %self.name, "{message}; retrying");
                    self.producer.poll(Duration::from_millis(100));
                }
                Reaction::AbortAndFail => return Err(self.abort(message)),
                Reaction::Fail { fenced: true } => return Err(self.fenced(message)),
                Reaction::Fail { fenced: false } => return Err(message),
            }
        }
    }

    /// The message to fail the query with when this producer was fenced (its transaction is
    /// aborted by the producer that fenced it; this one can neither commit nor abort).
    fn fenced(&mut self, message: String) -> String {
        self.machine.fail();
        format!(
            "{message}. This producer was fenced: another producer initialised transactions with the same \
             transactional.id {} (a restart of this query while this run was still going); this run stops so \
             that it cannot write an epoch twice",
            self.transactional_id
        )
    }

    /// Aborts the open transaction (best effort) and answers the message to fail the query with.
    fn abort(&mut self, message: String) -> String {
        if let Some((code, reason)) = self.producer.client().fatal_error() {
            // A fatal error (e.g. fenced while producing): the producer cannot abort any more.
            self.machine.fail();
            return if is_fencing(code) {
                self.fenced(message)
            } else {
                format!("{message} (the producer hit a fatal error: {reason})")
            };
        }
        // `abort_transaction` needs the delivery reports of the records in flight served.
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.producer.in_flight_count() > 0 && Instant::now() < deadline {
            self.producer.poll(Duration::from_millis(1));
        }
        if self.machine.start(TxnStep::Abort).is_ok() {
            match self.producer.abort_transaction(self.wait) {
                Ok(()) => self.machine.succeeded(TxnStep::Abort),
                Err(e) => tracing::warn!(sink = %self.name, "abort_transaction failed too: {e}"),
            }
        }
        self.machine.fail();
        format!("{message} (transaction aborted; a restart delivers the epoch from the checkpoint)")
    }
}

// -------------------------------------------------------------------------------------------
// The staged records' encoding: a version byte, the record count, then per record a flags byte
// (which optional fields follow), the fields (byte strings length-prefixed, integers as LEB128
// varints, the partition zigzag-encoded) and the headers.
// -------------------------------------------------------------------------------------------

const ENCODING_VERSION: u8 = 1;
const HAS_TOPIC: u8 = 1;
const HAS_KEY: u8 = 2;
const HAS_VALUE: u8 = 4;
const HAS_PARTITION: u8 = 8;
const HAS_TIMESTAMP: u8 = 16;

/// Encodes records compactly for staging.
fn encode_records(records: &[ProducerRecord]) -> Vec<u8> {
    let size: usize = records
        .iter()
        .map(|r| {
            let headers: usize = r.headers.iter().map(|(k, v)| k.len() + v.len() + 4).sum();
            r.key.as_ref().map_or(0, Vec::len) + r.value.as_ref().map_or(0, Vec::len) + headers + 24
        })
        .sum();
    let mut out = Vec::with_capacity(size + 10);
    out.push(ENCODING_VERSION);
    put_varint(&mut out, records.len() as u64);
    for record in records {
        let mut flags = 0;
        for (present, flag) in [
            (record.topic.is_some(), HAS_TOPIC),
            (record.key.is_some(), HAS_KEY),
            (record.value.is_some(), HAS_VALUE),
            (record.partition.is_some(), HAS_PARTITION),
            (record.timestamp.is_some(), HAS_TIMESTAMP),
        ] {
            if present {
                flags |= flag;
            }
        }
        out.push(flags);
        if let Some(topic) = &record.topic {
            put_bytes(&mut out, topic.as_bytes());
        }
        if let Some(key) = &record.key {
            put_bytes(&mut out, key);
        }
        if let Some(value) = &record.value {
            put_bytes(&mut out, value);
        }
        if let Some(partition) = record.partition {
            let zigzag = ((partition << 1) ^ (partition >> 31)) as u32;
            put_varint(&mut out, u64::from(zigzag));
        }
        if let Some(timestamp) = record.timestamp {
            put_varint(&mut out, timestamp.as_millis());
        }
        put_varint(&mut out, record.headers.len() as u64);
        for (key, value) in &record.headers {
            put_bytes(&mut out, key.as_bytes());
            put_bytes(&mut out, value);
        }
    }
    out
}

/// Decodes [`encode_records`]' bytes; the error says where they stop making sense.
fn decode_records(bytes: &[u8]) -> Result<Vec<ProducerRecord>, String> {
    let mut reader = Reader { bytes, at: 0 };
    let version = reader.byte("the encoding version")?;
    if version != ENCODING_VERSION {
        return Err(format!("staged records have encoding version {version}, this build reads {ENCODING_VERSION}"));
    }
    let count = reader.varint("the record count")?;
    // Every record takes at least two bytes: a count beyond that is damage, not a reason to allocate.
    if count > (bytes.len() as u64) / 2 {
        return Err(format!("it announces {count} records in {} bytes", bytes.len()));
    }
    let mut records = Vec::with_capacity(count as usize);
    for index in 0..count {
        let field = |what: &str| format!("the {what} of record {index} of {count}");
        let flags = reader.byte(&field("flags"))?;
        if flags & !(HAS_TOPIC | HAS_KEY | HAS_VALUE | HAS_PARTITION | HAS_TIMESTAMP) != 0 {
            return Err(format!("record {index} of {count} has unknown flags {flags:#04x}"));
        }
        let mut record = ProducerRecord::default();
        if flags & HAS_TOPIC != 0 {
            let topic = reader.bytes(&field("topic"))?;
            record.topic =
                Some(String::from_utf8(topic.to_vec()).map_err(|_| format!("{} is not UTF-8", field("topic")))?);
        }
        if flags & HAS_KEY != 0 {
            record.key = Some(reader.bytes(&field("key"))?.to_vec());
        }
        if flags & HAS_VALUE != 0 {
            record.value = Some(reader.bytes(&field("value"))?.to_vec());
        }
        if flags & HAS_PARTITION != 0 {
            let zigzag = u32::try_from(reader.varint(&field("partition"))?)
                .map_err(|_| format!("{} is out of range", field("partition")))?;
            record.partition = Some(((zigzag >> 1) as i32) ^ -((zigzag & 1) as i32));
        }
        if flags & HAS_TIMESTAMP != 0 {
            record.timestamp = Some(EventTime::from_millis(reader.varint(&field("timestamp"))?));
        }
        let headers = reader.varint(&field("header count"))?;
        if headers > (bytes.len() - reader.at) as u64 / 2 {
            return Err(format!("{} ({headers}) is larger than the data left", field("header count")));
        }
        for _ in 0..headers {
            let key = reader.bytes(&field("header name"))?;
            let key = String::from_utf8(key.to_vec()).map_err(|_| format!("{} is not UTF-8", field("header name")))?;
            let value = reader.bytes(&field("header value"))?.to_vec();
            record.headers.push((key, value));
        }
        records.push(record);
    }
    if reader.at != bytes.len() {
        return Err(format!("{} unexpected bytes follow the last record", bytes.len() - reader.at));
    }
    Ok(records)
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn byte(&mut self, what: &str) -> Result<u8, String> {
        let byte = *self.bytes.get(self.at).ok_or_else(|| format!("the data ends before {what}"))?;
        self.at += 1;
        Ok(byte)
    }

    fn varint(&mut self, what: &str) -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.byte(what)?;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(format!("{what} is not a valid varint"))
    }

    fn bytes(&mut self, what: &str) -> Result<&'a [u8], String> {
        let len = self.varint(what)?;
        let end = self
            .at
            .checked_add(usize::try_from(len).unwrap_or(usize::MAX))
            .filter(|&end| end <= self.bytes.len())
            .ok_or_else(|| format!("the data ends inside {what} ({len} bytes announced)"))?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }
}

#[cfg(test)]
mod tests;
