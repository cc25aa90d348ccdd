//! Kafka JSON → 10 s tumbling count per user → Kafka.
//!
//! Writes 3,000 JSON clicks (`{"user":"u7","ts":1700000000123}`, a little out of order) into a
//! 3-partition topic, then runs a bounded query over it: the Kafka source reads every partition
//! from the start to the end it had when the query started, each partition with its own
//! watermark (2 s behind its newest click); the window count emits each window once, when the
//! watermark passes its end; the Kafka sink writes one JSON record per (window, user), keyed by
//! user. Each result is printed as it is written.
//!
//! ```sh
//! scripts/test-env up && source target/test-env/env.sh   # or any Kafka at WEIR_KAFKA_BROKERS
//! cargo run --example kafka_window_count
//! ```

use std::time::Duration;

use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use serde::{Deserialize, Serialize};
use timely::dataflow::operators::vec::Map;
use timely::dataflow::operators::Inspect;
use weir::prelude::*;
use weir_connectors::kafka::sink::{Delivery, KafkaSink, ProducerRecord};
use weir_connectors::kafka::source::{EndingOffsets, KafkaSource, StartingOffsets};
use weir_connectors::kafka::{KafkaAdmin, KafkaOptions, KafkaRecord};
use weir_runtime::map_source::SourceExt;

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Click {
    user: String,
    ts: u64,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let brokers = std::env::var("WEIR_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".to_string());
    let options = KafkaOptions::new(&brokers);
    let run = std::process::id();
    let (clicks_topic, counts_topic) = (format!("clicks-{run}"), format!("click-counts-{run}"));
    let admin = KafkaAdmin::connect(&options, Duration::from_secs(10))?;
    admin.create_topic(&clicks_topic, 3, 1)?;
    admin.create_topic(&counts_topic, 1, 1)?;

    // Some input: 3,000 clicks of 10 users, 10 ms apart, each up to 1 s out of order.
    let producer: ThreadedProducer<_> = options.client_config(&[("linger.ms", "5")]).create()?;
    for i in 0..3_000u64 {
        let click = Click { user: format!("u{}", i * 7 % 10), ts: 1_700_000_000_000 + i * 10 - (i * 37 % 1_000) };
        let value = serde_json::to_vec(&click)?;
        producer.send(BaseRecord::to(&clicks_topic).key(click.user.as_bytes()).payload(&value)).map_err(|(e, _)| e)?;
    }
    producer.flush(Duration::from_secs(30))?;

    let query = Query::new("kafka-window-count").workers(2).start(move |scope, ctx| {
        // Every partition from the start to its end now; values decoded as JSON clicks (a value
        // that is not a click fails the query, naming its topic, partition and offset).
        let source = KafkaSource::subscribe(options.clone(), [clicks_topic.clone()])
            .starting_offsets(StartingOffsets::Earliest)
            .ending_offsets(EndingOffsets::Latest)
            .build()?
            .map_records(|_, record: KafkaRecord| {
                serde_json::from_slice::<Click>(record.value.as_deref().unwrap_or_default()).map(Some).map_err(|e| {
                    QueryError::Source {
                        source_name: "clicks".into(),
                        message: format!("{}-{} offset {}: {e}", record.topic, record.partition, record.offset),
                    }
                })
            });
        let clicks = event_source(
            scope,
            ctx,
            source,
            |click: &Click| Some(EventTime::from_millis(click.ts)),
            WatermarkOptions::with_delay(Duration::from_secs(2)),
        );
        let counts = clicks.window_count(
            ctx,
            "clicks-per-user",
            Windowing::tumbling(Duration::from_secs(10)),
            OutputMode::Append,
            |click: &Click| click.user.clone(),
        )?;
        let records = counts
            .results
            .inspect(|row| println!("[{}, {}) {}: {}", row.window_start, row.window_end, row.key, row.value))
            .map(|row| {
                let value = serde_json::json!({
                    "window_start": row.window_start, "window_end": row.window_end, "user": row.key, "clicks": row.value,
                });
                ProducerRecord::new(value.to_string()).key(row.key.into_bytes())
            });
        KafkaSink::to_topic(options.clone(), counts_topic.clone()).delivery(Delivery::AtLeastOnce).write(
            records,
            ctx,
            "click-counts",
        )
    })?;
    query.await_termination(Some(Duration::from_secs(60)))?;
    if let Some(error) = query.exception() {
        return Err(error.into());
    }
    println!("written to topic click-counts-{run} on {brokers}");
    Ok(())
}
