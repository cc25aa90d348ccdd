//! `weir kafka produce-test-data`: writes a keyed, timestamped, out-of-order test stream (JSON or
//! Avro in Confluent's wire format) into a topic, creating the topic if it is missing.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use rdkafka::client::ClientContext;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use weir::jobs::test_stream::{TestEvent, TestStream};
use weir_connectors::codec::avro::{AvroEncoder, AvroEncoderConfig};
use weir_connectors::codec::Encode;
use weir_connectors::kafka::admin::KafkaAdmin;
use weir_connectors::kafka::KafkaOptions;
use weir_connectors::registry::client::RegistryClient;

use super::duration;

/// The `weir kafka` commands.
#[derive(Subcommand, Debug)]
pub enum KafkaCommand {
    /// Write a keyed, timestamped, out-of-order test stream (with some late records) into a topic:
    /// `{"key":"k7","ts":1700000000123,"value":42}` as JSON, or the same record as Avro.
    ProduceTestData(ProduceArgs),
    /// Create a topic (nothing happens if it exists).
    CreateTopic(CreateTopicArgs),
    /// Print every record value of a topic (all partitions, from the start to the end it has
    /// now), one per line.
    Consume(ConsumeArgs),
}

/// Flags of `weir kafka consume`.
#[derive(Args, Debug)]
pub struct ConsumeArgs {
    /// Kafka bootstrap servers, host:port[,host:port].
    #[arg(long)]
    pub brokers: String,
    /// The topic.
    #[arg(long)]
    pub topic: String,
    /// Read only committed transactions (read_committed) instead of everything (read_uncommitted).
    #[arg(long)]
    pub read_committed: bool,
    /// Give up after this long without reaching the end.
    #[arg(long, default_value = "30s", value_parser = duration)]
    pub timeout: Duration,
}

/// Flags of `weir kafka create-topic`.
#[derive(Args, Debug)]
pub struct CreateTopicArgs {
    /// Kafka bootstrap servers, host:port[,host:port].
    #[arg(long)]
    pub brokers: String,
    /// The topic.
    #[arg(long)]
    pub topic: String,
    /// Its partitions.
    #[arg(long, default_value_t = 1)]
    pub partitions: i32,
    /// Its replication factor.
    #[arg(long, default_value_t = 1)]
    pub replication: i32,
}

/// How records are encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ValueFormat {
    /// JSON text.
    Json,
    /// Avro binary in Confluent's wire format (magic byte, schema id, body); needs --registry.
    Avro,
}

/// Flags of `weir kafka produce-test-data`.
#[derive(Args, Debug)]
pub struct ProduceArgs {
    /// Kafka bootstrap servers, host:port[,host:port].
    #[arg(long)]
    pub brokers: String,
    /// The topic (created with --partitions if it does not exist).
    #[arg(long)]
    pub topic: String,
    /// Partitions of the topic if it is created.
    #[arg(long, default_value_t = 3)]
    pub partitions: i32,
    /// How many records.
    #[arg(long, default_value_t = 10_000)]
    pub records: u64,
    /// How many distinct keys (k0, k1, ...).
    #[arg(long, default_value_t = 100)]
    pub keys: u64,
    /// Event time of the first record, ms since the Unix epoch.
    #[arg(long, default_value_t = 1_700_000_000_000)]
    pub start_ms: i64,
    /// Event time advances by this much per record.
    #[arg(long, default_value = "10ms", value_parser = duration)]
    pub step: Duration,
    /// Records are moved back in time by up to this much (out of order).
    #[arg(long, default_value = "2s", value_parser = duration)]
    pub disorder: Duration,
    /// Fraction of records moved back by --late-by (late for a watermark delay of --disorder).
    #[arg(long, default_value_t = 0.01)]
    pub late_fraction: f64,
    /// How far back a late record is moved.
    #[arg(long, default_value = "60s", value_parser = duration)]
    pub late_by: Duration,
    /// The seed: the same flags give the same records.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Value encoding.
    #[arg(long, value_enum, default_value_t = ValueFormat::Json)]
    pub format: ValueFormat,
    /// Schema registry URL (for --format avro); the schema is registered under `<topic>-value`.
    #[arg(long)]
    pub registry: Option<String>,
    /// Also write the records as JSON lines to this file (to compute the expected answer).
    #[arg(long)]
    pub jsonl_copy: Option<PathBuf>,
    /// A librdkafka producer setting, key=value (repeatable), e.g. --kafka linger.ms=5.
    #[arg(long = "kafka", value_name = "KEY=VALUE")]
    pub kafka: Vec<String>,
    /// Give every JSON record a "type" field, one of these comma-separated names picked at random
    /// per record (deterministic for --seed; repeat a name to weight it), e.g.
    /// --event-types impression,impression,click for `weir run attribution`.
    #[arg(long, value_delimiter = ',')]
    pub event_types: Vec<String>,
}

/// The `type` of test record number `value` among `types` (a hash of the seed and the record's
/// sequence number, so the test stream itself is unchanged).
fn event_type(types: &[String], seed: u64, value: i64) -> &str {
    let mut z = seed ^ (value as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    &types[(z % types.len() as u64) as usize]
}

/// Runs a `weir kafka` command.
pub fn run(command: KafkaCommand) -> Result<()> {
    match command {
        KafkaCommand::ProduceTestData(args) => produce(args),
        KafkaCommand::Consume(args) => consume(args),
        KafkaCommand::CreateTopic(args) => {
            let admin = KafkaAdmin::connect(&KafkaOptions::new(&args.brokers), Duration::from_secs(30))
                .with_context(|| format!("cannot reach the Kafka brokers at {}", args.brokers))?;
            create_if_missing(&admin, &args.topic, args.partitions, args.replication)?;
            println!("topic {} ({} partitions) on {}", args.topic, args.partitions, args.brokers);
            Ok(())
        }
    }
}

/// Parses repeated `key=value` librdkafka settings onto `options`.
pub fn with_settings(options: KafkaOptions, settings: &[String]) -> Result<KafkaOptions> {
    Ok(options.set_all(super::kafka_args::settings(settings)?))
}

/// Counts delivery failures and keeps the first message.
#[derive(Default)]
struct Deliveries {
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

struct DeliveryContext(Arc<Deliveries>);

impl ClientContext for DeliveryContext {}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((error, _)) = result {
            self.0.failed.fetch_add(1, Ordering::Relaxed);
            self.0.first_error.lock().unwrap().get_or_insert_with(|| error.to_string());
        }
    }
}

fn produce(args: ProduceArgs) -> Result<()> {
    let options = with_settings(KafkaOptions::new(&args.brokers), &args.kafka)?;
    let admin = KafkaAdmin::connect(&options, Duration::from_secs(30))
        .with_context(|| format!("cannot reach the Kafka brokers at {}", args.brokers))?;
    create_if_missing(&admin, &args.topic, args.partitions, 1)?;

    let encoder = match args.format {
        ValueFormat::Json => None,
        ValueFormat::Avro if !args.event_types.is_empty() => bail!("--event-types works with --format json only"),
        ValueFormat::Avro => {
            let Some(url) = &args.registry else { bail!("--format avro needs --registry URL") };
            let client = RegistryClient::from_url(url).with_context(|| format!("bad registry URL {url}"))?;
            let config = AvroEncoderConfig::default().auto_register(true);
            Some(
                AvroEncoder::<TestEvent>::new(client, &args.topic, config)
                    .with_context(|| format!("cannot register the test schema at {url}"))?,
            )
        }
    };
    let deliveries = Arc::new(Deliveries::default());
    let producer: ThreadedProducer<DeliveryContext> = options
        .client_config(&[("linger.ms", "5"), ("acks", "all"), ("partitioner", "murmur2_random")])
        .create_with_context(DeliveryContext(deliveries.clone()))
        .context("cannot create the Kafka producer")?;

    let stream = TestStream {
        records: args.records,
        keys: args.keys,
        start_ms: args.start_ms,
        step: args.step,
        disorder: args.disorder,
        late_fraction: args.late_fraction,
        late_by: args.late_by,
        seed: args.seed,
    };
    let mut copy = match &args.jsonl_copy {
        Some(path) => Some(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
        )),
        None => None,
    };
    let mut value = Vec::new();
    for event in stream.events() {
        value.clear();
        match &encoder {
            Some(encoder) => encoder.encode_into(&event, &mut value).context("Avro encoding failed")?,
            None if !args.event_types.is_empty() => {
                let kind = event_type(&args.event_types, args.seed, event.value);
                let typed = serde_json::json!({"key": event.key, "ts": event.ts, "value": event.value, "type": kind});
                serde_json::to_writer(&mut value, &typed)?
            }
            None => serde_json::to_writer(&mut value, &event)?,
        }
        if let Some(copy) = copy.as_mut() {
            use std::io::Write;
            match args.format {
                ValueFormat::Json => copy.write_all(&value)?,
                ValueFormat::Avro => serde_json::to_writer(&mut *copy, &event)?,
            }
            copy.write_all(b"\n")?;
        }
        let mut record = BaseRecord::to(&args.topic).key(event.key.as_bytes()).payload(&value).timestamp(event.ts);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((error, returned)) => {
                    if error.rdkafka_error_code() != Some(rdkafka::types::RDKafkaErrorCode::QueueFull) {
                        bail!("cannot produce to {}: {error}", args.topic);
                    }
                    record = returned;
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }
    if let Some(mut copy) = copy {
        use std::io::Write;
        copy.flush()?;
    }
    producer.flush(Duration::from_secs(60)).context("not every record was acknowledged within 60 s")?;
    let failed = deliveries.failed.load(Ordering::Relaxed);
    if failed > 0 {
        bail!(
            "{failed} of {} records were not delivered to {}: {}",
            args.records,
            args.topic,
            deliveries.first_error.lock().unwrap().clone().unwrap_or_default()
        );
    }
    println!(
        "produced {} records ({} keys, {}) to {} on {}",
        args.records,
        args.keys,
        match args.format {
            ValueFormat::Json => "JSON",
            ValueFormat::Avro => "Avro",
        },
        args.topic,
        args.brokers
    );
    Ok(())
}

fn consume(args: ConsumeArgs) -> Result<()> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{Message, Offset, TopicPartitionList};
    use std::io::Write;

    let options = KafkaOptions::new(&args.brokers);
    let admin = KafkaAdmin::connect(&options, Duration::from_secs(30))
        .with_context(|| format!("cannot reach the Kafka brokers at {}", args.brokers))?;
    let partitions = admin.partitions_of(std::slice::from_ref(&args.topic))?;
    let isolation = if args.read_committed { "read_committed" } else { "read_uncommitted" };
    let consumer: BaseConsumer<QuietEof> = options
        .client_config(&[
            ("group.id", "weir-kafka-consume"),
            ("enable.auto.commit", "false"),
            ("enable.partition.eof", "true"),
            ("isolation.level", isolation),
        ])
        .create_with_context(QuietEof)
        .context("cannot create the Kafka consumer")?;
    let mut assignment = TopicPartitionList::new();
    let mut open = std::collections::BTreeSet::new();
    for tp in &partitions {
        assignment.add_partition_offset(&tp.topic, tp.partition, Offset::Beginning)?;
        open.insert(tp.partition);
    }
    consumer.assign(&assignment)?;
    let deadline = std::time::Instant::now() + args.timeout;
    let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
    while !open.is_empty() {
        if std::time::Instant::now() > deadline {
            bail!("partitions {open:?} of {} did not reach their end within {:?}", args.topic, args.timeout);
        }
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => {
                stdout.write_all(message.payload().unwrap_or_default())?;
                stdout.write_all(b"\n")?;
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(partition))) => {
                open.remove(&partition);
            }
            Some(Err(error)) => bail!("cannot read {}: {error}", args.topic),
            None => {}
        }
    }
    stdout.flush()?;
    Ok(())
}

/// A consumer context that leaves end-of-partition events to `poll` instead of logging them as
/// errors.
struct QuietEof;

impl ClientContext for QuietEof {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        use rdkafka::error::KafkaError;
        use rdkafka::types::RDKafkaErrorCode;
        if !matches!(error, KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF)) {
            tracing::error!("librdkafka: {error}: {reason}");
        }
    }
}

impl rdkafka::consumer::ConsumerContext for QuietEof {}

/// Creates `topic` unless it exists already.
fn create_if_missing(admin: &KafkaAdmin, topic: &str, partitions: i32, replication: i32) -> Result<()> {
    match admin.create_topic(topic, partitions, replication) {
        Err(error) if error.code == Some(rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists) => Ok(()),
        result => result.with_context(|| format!("cannot create topic {topic} ({partitions} partitions)")),
    }
}
