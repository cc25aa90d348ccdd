//! The Kafka sink: one librdkafka producer per worker, with at-least-once, idempotent or
//! transactional (exactly-once) delivery, acknowledged on frontier progress.
//!
//! In a query that checkpoints, exactly-once delivery follows the checkpoint's epochs instead of
//! `commit_interval`: each worker stages an epoch's records in the checkpoint and commits them,
//! in a transaction with its progress marker, once the epoch's checkpoint is committed (see
//! [`KafkaSink::write`]).
//!
//! ```no_run
//! use std::time::Duration;
//! use weir_connectors::kafka::{Delivery, KafkaOptions, KafkaSink, ProducerRecord};
//! # fn build<'scope>(
//! #     records: timely::dataflow::StreamVec<'scope, weir_runtime::time::EventTime, ProducerRecord>,
//! #     ctx: &weir_runtime::context::QueryContext,
//! # ) -> Result<(), weir_runtime::error::BuildError> {
//! KafkaSink::to_topic(KafkaOptions::new("127.0.0.1:9092"), "counts")
//!     .delivery(Delivery::ExactlyOnce)
//!     .commit_interval(Duration::from_secs(1))
//!     .write(records, ctx, "counts-out")
//! # }
//! ```

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::StreamVec;
use timely::progress::frontier::{Antichain, AntichainRef};
use timely::scheduling::Activator;
use weir_runtime::context::QueryContext;
use weir_runtime::error::{BuildError, QueryError};
use weir_runtime::metrics::SinkMetrics;
use weir_runtime::time::EventTime;

use super::options::KafkaOptions;
use super::transaction::{ErrorClass, Reaction, TransactionMachine, TxnStep};

mod checkpointed;

/// One record to write: topic (optional), key, value, headers, partition (optional) and timestamp.
///
/// Without a partition the record goes where its key hashes to with murmur2, the partitioner of
/// the Java client (librdkafka `partitioner=murmur2_random`: keyless records go to a random
/// partition), so keys land on the same partitions as records written by Java producers.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ProducerRecord {
    /// The topic; ignored when the sink has a fixed topic (like Spark's `topic` option).
    pub topic: Option<String>,
    /// The key bytes.
    pub key: Option<Vec<u8>>,
    /// The value bytes (`None` writes a tombstone).
    pub value: Option<Vec<u8>>,
    /// Headers, in order.
    pub headers: Vec<(String, Vec<u8>)>,
    /// An explicit partition; otherwise chosen from the key.
    pub partition: Option<i32>,
    /// The Kafka record timestamp; otherwise the producer's wall clock at send.
    pub timestamp: Option<EventTime>,
}

impl ProducerRecord {
    /// A record with this value and nothing else.
    pub fn new(value: impl Into<Vec<u8>>) -> Self {
        ProducerRecord { value: Some(value.into()), ..Default::default() }
    }

    /// Sets the key.
    pub fn key(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Sets the topic (used when the sink has no fixed topic).
    pub fn topic(mut self, topic: impl Into<String>) -> Self {
        self.topic = Some(topic.into());
        self
    }

    /// Adds a header.
    pub fn header(mut self, key: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((key.into(), value.into()));
        self
    }

    /// Sets an explicit partition.
    pub fn partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }

    /// Sets the Kafka record timestamp (e.g. the record's event time).
    pub fn timestamp(mut self, timestamp: EventTime) -> Self {
        self.timestamp = Some(timestamp);
        self
    }
}

/// How the sink makes its writes durable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Delivery {
    /// `acks=all`, no idempotence: records are produced as they arrive and flushed when the input
    /// frontier advances; a producer retry after a lost acknowledgement can duplicate a record.
    #[default]
    AtLeastOnce,
    /// Like `AtLeastOnce` with `enable.idempotence=true`: the broker drops the duplicates of
    /// producer retries, and per-partition order is kept. A restarted query may still write an
    /// epoch twice.
    Idempotent,
    /// Kafka transactions: one transaction per epoch, committed when the input frontier passes
    /// the epoch end; read_committed consumers see each epoch whole or not at all. In a query
    /// that checkpoints, the epochs are the checkpoint's, and a transaction commits only after
    /// its epoch's checkpoint is committed (a restart neither loses nor repeats an epoch).
    ExactlyOnce,
}

impl Delivery {
    /// The name used in options and logs: `at_least_once`, `idempotent`, `exactly_once`.
    pub fn name(self) -> &'static str {
        match self {
            Delivery::AtLeastOnce => "at_least_once",
            Delivery::Idempotent => "idempotent",
            Delivery::ExactlyOnce => "exactly_once",
        }
    }

    /// Parses [`Delivery::name`] (also with dashes).
    pub fn parse(text: &str) -> Result<Self, BuildError> {
        match text.replace('-', "_").as_str() {
            "at_least_once" => Ok(Delivery::AtLeastOnce),
            "idempotent" => Ok(Delivery::Idempotent),
            "exactly_once" => Ok(Delivery::ExactlyOnce),
            _ => Err(BuildError::invalid(
                "Kafka sink delivery",
                format!("unknown delivery mode {text:?}"),
                "use at_least_once, idempotent or exactly_once",
            )),
        }
    }
}

/// Writes a stream of [`ProducerRecord`]s to Kafka with one producer per worker (records are
/// not moved between workers).
///
/// An **epoch** is everything received with a timely time below the input frontier at a commit
/// moment; commit moments come every `commit_interval` of processing time (and when the input
/// ends). At-least-once and idempotent sinks produce records as they arrive and flush at each
/// commit moment; the exactly-once sink buffers records per time and writes each epoch in one
/// transaction, so records at times the frontier has not passed wait for the next one. In a query
/// that checkpoints, the exactly-once sink's epochs are the checkpoint's instead (see
/// [`KafkaSink::write`]).
#[derive(Clone, Debug)]
pub struct KafkaSink {
    options: KafkaOptions,
    topic: Option<String>,
    delivery: Delivery,
    commit_interval: Duration,
    delivery_timeout: Duration,
    preflight_timeout: Duration,
    max_retries: u32,
    progress_topic: Option<String>,
    epoch_headers: bool,
}

impl KafkaSink {
    /// A sink writing every record to `topic` (a record's own topic is ignored).
    pub fn to_topic(options: KafkaOptions, topic: impl Into<String>) -> Self {
        KafkaSink { topic: Some(topic.into()), ..KafkaSink::topic_per_record(options) }
    }

    /// A sink writing each record to its own [`ProducerRecord::topic`]; a record without one
    /// fails the query.
    pub fn topic_per_record(options: KafkaOptions) -> Self {
        KafkaSink {
            options,
            topic: None,
            delivery: Delivery::AtLeastOnce,
            commit_interval: Duration::from_secs(1),
            delivery_timeout: Duration::from_secs(30),
            preflight_timeout: Duration::from_secs(10),
            max_retries: 5,
            progress_topic: None,
            epoch_headers: false,
        }
    }

    /// The delivery mode (default [`Delivery::AtLeastOnce`]).
    pub fn delivery(mut self, delivery: Delivery) -> Self {
        self.delivery = delivery;
        self
    }

    /// How often (processing time) an epoch is flushed or committed (default 1 s).
    pub fn commit_interval(mut self, interval: Duration) -> Self {
        self.commit_interval = interval;
        self
    }

    /// How long a record may wait for its acknowledgement before the query fails (librdkafka
    /// `message.timeout.ms`, default 30 s; a `message.timeout.ms` setting in the options wins).
    /// Flushes and commits wait at most this long plus 5 s.
    pub fn delivery_timeout(mut self, timeout: Duration) -> Self {
        self.delivery_timeout = timeout;
        self
    }

    /// How long the build-time checks wait for the brokers (default 10 s).
    pub fn preflight_timeout(mut self, timeout: Duration) -> Self {
        self.preflight_timeout = timeout;
        self
    }

    /// Exactly-once in a checkpointing query: the topic whose partition 0 keys the progress
    /// marker (default: the sink's fixed topic). Each worker's transaction commits, through
    /// `send_offsets_to_transaction`, the offset `epoch + 1` of this partition for the consumer
    /// group [`KafkaSink::progress_group`]; nothing is written to the topic. It must exist.
    pub fn progress_topic(mut self, topic: impl Into<String>) -> Self {
        self.progress_topic = Some(topic.into());
        self
    }

    /// Exactly-once in a checkpointing query: adds the headers `weir-epoch` (the checkpoint
    /// epoch), `weir-worker` and `weir-run` (the run id of the process that produced it) to every
    /// record, so a reader can tell which epoch and transaction a record came from (default off).
    pub fn epoch_headers(mut self, on: bool) -> Self {
        self.epoch_headers = on;
        self
    }

    /// The consumer group whose committed offset is the progress marker of worker `worker` of
    /// sink `sink` in query `query_id` (exactly-once in a checkpointing query): the same string as
    /// [`KafkaSink::transactional_id`].
    pub fn progress_group(query_id: &str, sink: &str, worker: usize) -> String {
        Self::transactional_id(query_id, sink, worker)
    }

    /// The stable `transactional.id` of worker `worker` of sink `sink` in query `query_id`:
    /// `weir-<query id>-<sink>-<worker>`. It must be the same after a restart, so that
    /// `init_transactions` fences the producer of the previous run; the query id is stable across
    /// restarts from the same checkpoint.
    pub fn transactional_id(query_id: &str, sink: &str, worker: usize) -> String {
        format!("weir-{query_id}-{sink}-{worker}")
    }

    /// Attaches the sink to `stream` as sink `name`. Must be called on every worker. Checks now,
    /// before any record is processed, that the brokers answer, that a fixed topic exists and
    /// (exactly-once) that `init_transactions` succeeds, which also fences older producers with
    /// the same `transactional.id`.
    ///
    /// Exactly-once in a query that checkpoints (`ctx.checkpoint()`): the sink is a participant
    /// of the checkpoint. When its input frontier passes an epoch's end, each worker stages the
    /// epoch's records in the checkpoint directory (`sinks/<sink>/<worker>/staged/<epoch>`) and
    /// reports the epoch prepared; once the epoch is committed it writes them in one transaction
    /// together with its progress marker (the epoch, as a committed offset of the consumer group
    /// [`KafkaSink::progress_group`]), commits, and removes the staged file. At build time after a
    /// restart, `init_transactions` fences the previous run and aborts its open transaction; the
    /// worker then reads its marker and delivers, in one transaction, every committed epoch the
    /// marker does not cover whose staged records are there. So each epoch is written once.
    pub fn write<'scope>(
        self,
        stream: StreamVec<'scope, EventTime, ProducerRecord>,
        ctx: &QueryContext,
        name: &str,
    ) -> Result<(), BuildError> {
        if self.delivery == Delivery::ExactlyOnce {
            if let Some(checkpoint) = ctx.checkpoint() {
                return checkpointed::write(self, stream, ctx, name, checkpoint);
            }
        }
        if self.commit_interval.is_zero() && self.delivery == Delivery::ExactlyOnce {
            tracing::debug!(sink = name, "commit_interval 0: one transaction per frontier advance");
        }
        let scope = stream.scope();
        let worker = scope.index();
        let transactional_id = Self::transactional_id(ctx.id(), name, worker);
        let producer = self.connect(name, worker, &transactional_id)?;

        let mut builder = OperatorBuilder::new(format!("KafkaSink[{name}]"), scope);
        let mut input = builder.new_input(stream, Pipeline);
        let activator = scope.activator_for(builder.operator_info().address);
        let mut machine = TransactionMachine::new(self.max_retries);
        if self.delivery == Delivery::ExactlyOnce {
            machine.start(TxnStep::Init).expect("a fresh machine accepts init");
            machine.succeeded(TxnStep::Init);
        }
        let mut state = SinkState {
            producer,
            delivery: self.delivery,
            topic: self.topic.clone(),
            commit_interval: self.commit_interval,
            wait: self.delivery_timeout + Duration::from_secs(5),
            name: name.to_string(),
            brokers: self.options.bootstrap_servers.clone(),
            transactional_id,
            ctx: ctx.clone(),
            metrics: ctx.metrics().sink(name),
            machine,
            pending: BTreeMap::new(),
            unflushed: 0,
            flushed_frontier: Antichain::from_elem(EventTime::from_millis(0)),
            last_commit: Instant::now(),
            activator,
            failed: false,
        };
        builder.build_reschedule(move |_capabilities| {
            move |frontiers| {
                input.for_each_time(|time, data| {
                    for chunk in data {
                        state.accept(*time.time(), chunk);
                    }
                });
                state.step(frontiers[0].frontier())
            }
        });
        Ok(())
    }

    /// Creates this worker's producer and runs the pre-flight checks.
    fn connect(
        &self,
        sink: &str,
        worker: usize,
        transactional_id: &str,
    ) -> Result<BaseProducer<DeliveryWatch>, BuildError> {
        let timeout_ms = self.delivery_timeout.as_millis().to_string();
        let client_id = format!("weir-{sink}-{worker}");
        let mut defaults: Vec<(&str, &str)> = vec![
            ("acks", "all"),
            ("partitioner", "murmur2_random"),
            ("message.timeout.ms", &timeout_ms),
            ("client.id", &client_id),
        ];
        match self.delivery {
            Delivery::AtLeastOnce => defaults.push(("enable.idempotence", "false")),
            Delivery::Idempotent => defaults.push(("enable.idempotence", "true")),
            Delivery::ExactlyOnce => {
                defaults.push(("enable.idempotence", "true"));
                defaults.push(("transactional.id", transactional_id));
            }
        }
        let what = format!("Kafka sink {sink}");
        let brokers = &self.options.bootstrap_servers;
        let producer: BaseProducer<DeliveryWatch> =
            self.options.client_config(&defaults).create_with_context(DeliveryWatch::default()).map_err(|e| {
                BuildError::invalid(
                    &what,
                    format!("cannot create a {} producer for {brokers}: {e}", self.delivery.name()),
                    "check the Kafka options (librdkafka setting names and values)",
                )
            })?;
        let metadata = producer.client().fetch_metadata(None, self.preflight_timeout).map_err(|e| {
            BuildError::invalid(
                &what,
                format!(
                    "the brokers at {brokers} did not answer a metadata request within {:?}: {e}",
                    self.preflight_timeout
                ),
                "check that the brokers are running and that bootstrap servers and security settings are right",
            )
        })?;
        if let Some(topic) = &self.topic {
            match metadata.topics().iter().find(|t| t.name() == topic) {
                None => {
                    return Err(BuildError::invalid(
                        &what,
                        format!("topic {topic} does not exist on {brokers}"),
                        "create the topic first (the sink does not create topics) or fix the topic name",
                    ))
                }
                Some(t) if t.error().is_some() || t.partitions().is_empty() => {
                    let error = t.error().map(|e| RDKafkaErrorCode::from(e).to_string()).unwrap_or_default();
                    return Err(BuildError::invalid(
                        &what,
                        format!(
                            "topic {topic} on {brokers} is not writable: {error} ({} partitions)",
                            t.partitions().len()
                        ),
                        "check the topic and the principal's WRITE permission on it",
                    ));
                }
                Some(_) => {}
            }
        }
        if self.delivery == Delivery::ExactlyOnce {
            producer.init_transactions(self.preflight_timeout).map_err(|e| {
                BuildError::invalid(
                    &what,
                    format!("init_transactions for transactional.id {transactional_id} on {brokers} failed: {e}"),
                    "the brokers must support transactions (Apache Kafka >= 0.11 with a transaction coordinator; \
                     nisshi 0.8.1 refuses them) and the principal needs WRITE on the transactional id; \
                     or choose delivery at_least_once or idempotent",
                )
            })?;
        }
        Ok(producer)
    }
}

/// Collects delivery reports: librdkafka calls it from `poll`/`flush` on the worker thread.
#[derive(Default)]
struct DeliveryWatch {
    first_error: Mutex<Option<(KafkaError, String)>>,
    delivered: AtomicU64,
}

impl ClientContext for DeliveryWatch {}

impl ProducerContext for DeliveryWatch {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err((error, message)) => {
                let mut first = self.first_error.lock().unwrap();
                if first.is_none() {
                    let place = format!("{} partition {}", message.topic(), message.partition());
                    *first = Some((error.clone(), place));
                }
            }
        }
    }
}

/// The operator's state on one worker.
struct SinkState {
    producer: BaseProducer<DeliveryWatch>,
    delivery: Delivery,
    topic: Option<String>,
    commit_interval: Duration,
    wait: Duration,
    name: String,
    brokers: String,
    transactional_id: String,
    ctx: QueryContext,
    metrics: Arc<SinkMetrics>,
    machine: TransactionMachine,
    /// Exactly-once: records waiting for their epoch, by timely time.
    pending: BTreeMap<EventTime, Vec<ProducerRecord>>,
    /// At-least-once: records produced since the last flush.
    unflushed: u64,
    flushed_frontier: Antichain<EventTime>,
    last_commit: Instant,
    activator: Activator,
    failed: bool,
}

impl SinkState {
    /// Takes one input batch at timely time `time`.
    fn accept(&mut self, time: EventTime, chunk: &mut Vec<ProducerRecord>) {
        if self.failed {
            chunk.clear();
        } else if self.delivery == Delivery::ExactlyOnce {
            self.pending.entry(time).or_default().append(chunk);
        } else {
            for record in chunk.drain(..) {
                if let Err(message) = self.send(&record) {
                    self.fail(message);
                    break;
                }
                self.unflushed += 1;
            }
            chunk.clear();
        }
    }

    /// Serves delivery reports and commits or flushes if a commit moment has come. Returns
    /// whether the operator must stay alive (work left) even with an empty input frontier.
    fn step(&mut self, frontier: AntichainRef<EventTime>) -> bool {
        if self.failed {
            return false;
        }
        self.producer.poll(Duration::ZERO);
        if let Some(message) = self.delivery_error() {
            self.fail(message);
            return false;
        }
        let now = Instant::now();
        let due = frontier.is_empty() || now.duration_since(self.last_commit) >= self.commit_interval;
        match self.delivery {
            Delivery::ExactlyOnce => {
                let complete = self.pending.keys().take_while(|t| !frontier.less_equal(t)).count();
                if due && complete > 0 {
                    let mut epoch = Vec::new();
                    for _ in 0..complete {
                        let (_, mut batch) = self.pending.pop_first().expect("counted");
                        epoch.append(&mut batch);
                    }
                    self.commit_epoch(epoch);
                    self.last_commit = now;
                    if self.failed {
                        return false;
                    }
                }
                let waiting = self.pending.keys().next().is_some_and(|t| !frontier.less_equal(t));
                if waiting {
                    self.activator.activate_after(self.commit_interval.saturating_sub(now - self.last_commit));
                }
                !self.pending.is_empty() && !frontier.is_empty()
            }
            Delivery::AtLeastOnce | Delivery::Idempotent => {
                if due && self.unflushed > 0 && frontier != self.flushed_frontier.borrow() {
                    self.flush_epoch();
                    self.flushed_frontier = frontier.to_owned();
                    self.last_commit = now;
                    if self.failed {
                        return false;
                    }
                }
                if self.producer.in_flight_count() > 0 || self.unflushed > 0 {
                    // Keep serving delivery reports so an error fails the query even without new input.
                    self.activator.activate_after(
                        Duration::from_millis(100).min(self.commit_interval.max(Duration::from_millis(1))),
                    );
                }
                false
            }
        }
    }

    /// At-least-once: waits until every produced record is acknowledged.
    fn flush_epoch(&mut self) {
        let started = Instant::now();
        let result = self.producer.flush(self.wait);
        if let Some(message) = self.delivery_error() {
            self.fail(message);
            return;
        }
        match result {
            Ok(()) => {
                self.metrics.output_rows.fetch_add(self.unflushed, Ordering::Relaxed);
                self.metrics.epoch_committed(started.elapsed());
                self.unflushed = 0;
            }
            Err(error) => self.fail(format!(
                "flush to {} did not complete within {:?} ({} records unacknowledged): {error}",
                self.brokers,
                self.wait,
                self.producer.in_flight_count()
            )),
        }
    }

    /// Exactly-once: writes `records` in one transaction and commits it.
    fn commit_epoch(&mut self, records: Vec<ProducerRecord>) {
        let started = Instant::now();
        let rows = records.len() as u64;
        if !self.transactional(TxnStep::Begin, |p| p.begin_transaction()) {
            return;
        }
        if self.machine.start(TxnStep::Produce).is_err() {
            return self.fail("internal: produce outside a transaction".to_string());
        }
        for record in &records {
            if let Err(message) = self.send(record) {
                return self.abort_and_fail(message);
            }
        }
        self.producer.poll(Duration::ZERO);
        if let Some(message) = self.delivery_error() {
            return self.abort_and_fail(message);
        }
        self.machine.succeeded(TxnStep::Produce);
        let wait = self.wait;
        if !self.transactional(TxnStep::Commit, |p| p.commit_transaction(wait)) {
            return;
        }
        self.metrics.output_rows.fetch_add(rows, Ordering::Relaxed);
        self.metrics.epoch_committed(started.elapsed());
    }

    /// Runs one transactional call through the state machine; `false` if the query failed.
    fn transactional(
        &mut self,
        step: TxnStep,
        call: impl Fn(&BaseProducer<DeliveryWatch>) -> Result<(), KafkaError>,
    ) -> bool {
        if let Err(invalid) = self.machine.start(step) {
            self.fail(format!("internal: {invalid}"));
            return false;
        }
        loop {
            let error = match call(&self.producer) {
                Ok(()) => {
                    self.machine.succeeded(step);
                    return true;
                }
                Err(error) => error,
            };
            // A delivery error explains an abortable commit better than the commit's own message.
            let delivery = self.delivery_error();
            let class = ErrorClass::of(&error);
            let mut message = format!("{step:?} of transactional.id {} failed: {error}", self.transactional_id);
            if let Some(delivery) = delivery {
                message = format!("{message}; first delivery error: {delivery}");
            }
            match self.machine.failed(step, class) {
                Reaction::Retry => {
                    tracing::warn!(sink = %self.name, "{message}; retrying");
                    self.producer.poll(Duration::from_millis(100));
                }
                Reaction::AbortAndFail => {
                    self.abort_and_fail(message);
                    return false;
                }
                Reaction::Fail { fenced: true } => {
                    self.fail(format!(
                        "{message}. This producer was fenced: another producer initialised transactions with the \
                         same transactional.id {} (another run of this query with the same query id and sink name, \
                         or a restart while this one was still running); this instance stops so that it cannot \
                         write duplicates",
                        self.transactional_id
                    ));
                    return false;
                }
                Reaction::Fail { fenced: false } => {
                    self.fail(message);
                    return false;
                }
            }
        }
    }

    fn abort_and_fail(&mut self, message: String) {
        if self.machine.start(TxnStep::Abort).is_ok() {
            match self.producer.abort_transaction(self.wait) {
                Ok(()) => self.machine.succeeded(TxnStep::Abort),
                Err(e) => tracing::warn!(sink = %self.name, "abort_transaction failed too: {e}"),
            }
        }
        self.machine.fail();
        self.fail(format!("{message} (transaction aborted)"));
    }

    /// Enqueues one record, waiting (and serving delivery reports) while librdkafka's queue is full.
    fn send(&self, record: &ProducerRecord) -> Result<(), String> {
        send_record(&self.producer, self.topic.as_deref(), record, &[], self.wait, &self.brokers)
    }

    /// The first failed delivery report, as a message.
    fn delivery_error(&self) -> Option<String> {
        delivery_error(&self.producer, &self.brokers)
    }

    fn fail(&mut self, message: String) {
        self.failed = true;
        self.pending.clear();
        self.metrics.errors.fetch_add(1, Ordering::Relaxed);
        self.ctx.fail(QueryError::Sink { sink: self.name.clone(), message });
    }
}

/// Enqueues one record (to the sink's fixed `topic`, else the record's own), with `extra`
/// headers after its own, waiting (and serving delivery reports) while librdkafka's queue is
/// full, at most `wait`.
fn send_record(
    producer: &BaseProducer<DeliveryWatch>,
    topic: Option<&str>,
    record: &ProducerRecord,
    extra: &[(&str, &[u8])],
    wait: Duration,
    brokers: &str,
) -> Result<(), String> {
    let Some(topic) = topic.or(record.topic.as_deref()) else {
        return Err("a record has no topic and the sink has no fixed topic: set ProducerRecord::topic \
                    or use KafkaSink::to_topic"
            .to_string());
    };
    let deadline = Instant::now() + wait;
    loop {
        let mut base: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic);
        if let Some(key) = &record.key {
            base = base.key(key.as_slice());
        }
        if let Some(value) = &record.value {
            base = base.payload(value.as_slice());
        }
        if let Some(partition) = record.partition {
            base = base.partition(partition);
        }
        if let Some(timestamp) = record.timestamp {
            base = base.timestamp(timestamp.as_millis() as i64);
        }
        if !record.headers.is_empty() || !extra.is_empty() {
            let mut headers = OwnedHeaders::new_with_capacity(record.headers.len() + extra.len());
            for (key, value) in &record.headers {
                headers = headers.insert(Header { key, value: Some(value.as_slice()) });
            }
            for (key, value) in extra {
                headers = headers.insert(Header { key, value: Some(*value) });
            }
            base = base.headers(headers);
        }
        match producer.send(base) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) if Instant::now() < deadline => {
                producer.poll(Duration::from_millis(10));
            }
            Err((error, _)) => return Err(format!("cannot produce to topic {topic} on {brokers}: {error}")),
        }
    }
}

/// The first failed delivery report of `producer`, as a message.
fn delivery_error(producer: &BaseProducer<DeliveryWatch>, brokers: &str) -> Option<String> {
    let first = producer.context().first_error.lock().unwrap();
    first.as_ref().map(|(error, place)| format!("delivery to {place} on {brokers} failed: {error}"))
}

impl Drop for SinkState {
    fn drop(&mut self) {
        // A query stopped before its input ended: hand what was produced to the brokers (best
        // effort; an exactly-once sink never keeps a transaction open between steps).
        if !self.failed && self.unflushed > 0 {
            let _ = self.producer.flush(Duration::from_secs(5));
        }
    }
}
