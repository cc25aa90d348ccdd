//! Kafka source throughput: `WEIR_BENCH_ROWS` records (default 1,000,000; 100-byte values, 8-byte
//! keys, Kafka timestamps) are produced once to a 4-partition topic on `WEIR_KAFKA_BROKERS`, then
//! read to the end (ending offsets = latest) through `KafkaSource::events` with the Kafka timestamp
//! as event time, on 1 and 2 workers; best of three, records/s per worker. This measures the source
//! (librdkafka fetch + copy into `KafkaRecord` + per-partition watermarks) with the broker on the
//! same machine, so the broker's own speed is part of the number.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;
use timely::dataflow::operators::Inspect;
use weir::prelude::*;
use weir_connectors::kafka::{EndingOffsets, KafkaAdmin, KafkaOptions, KafkaRecord, KafkaSource, StartingOffsets};

mod common;

const PARTITIONS: i32 = 4;

fn produce(brokers: &str, topic: &str, rows: u64) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "20")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "500000")
        .set("compression.type", "none")
        .create()
        .expect("producer");
    let value = [b'x'; 100];
    for i in 0..rows {
        let key = i.to_be_bytes();
        let mut record = BaseRecord::to(topic)
            .key(&key[..])
            .payload(&value[..])
            .partition((i % PARTITIONS as u64) as i32)
            .timestamp((common::START_MS + i) as i64);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, back)) => {
                    producer.poll(Duration::from_millis(5));
                    record = back;
                }
            }
        }
    }
    producer.flush(Duration::from_secs(120)).expect("all records delivered");
}

fn main() {
    if common::listing("kafka_source") {
        return;
    }
    let brokers = std::env::var("WEIR_KAFKA_BROKERS").unwrap_or_else(|_| {
        panic!("no Kafka broker: WEIR_KAFKA_BROKERS is not set. Start one with `scripts/test-env up && source target/test-env/env.sh`")
    });
    let rows = common::rows(1_000_000);
    let topic = format!("weir-bench-source-{}", std::process::id());
    let options = KafkaOptions::new(brokers.clone());
    KafkaAdmin::connect(&options, Duration::from_secs(10))
        .and_then(|admin| admin.create_topic(&topic, PARTITIONS, 1))
        .expect("bench topic");
    produce(&brokers, &topic, rows);
    println!("kafka_source: {rows} records of 100 bytes in {PARTITIONS} partitions; {}", common::machine());
    for workers in [1usize, 2] {
        let (elapsed, read) = common::best_of_three(|| {
            let source = KafkaSource::subscribe(options.clone(), [topic.as_str()])
                .starting_offsets(StartingOffsets::Earliest)
                .ending_offsets(EndingOffsets::Latest)
                .build()
                .expect("source");
            let count = Arc::new(AtomicU64::new(0));
            let counter = count.clone();
            common::run_to_end(Query::new("kafka-bench").workers(workers), move |scope, ctx| {
                let events = source.clone().events(scope, ctx, KafkaRecord::event_time, WatermarkOptions::default());
                let counter = counter.clone();
                events.records.inspect_batch(move |_, batch| {
                    counter.fetch_add(batch.len() as u64, Ordering::Relaxed);
                });
                Ok(())
            });
            count.load(Ordering::Relaxed)
        });
        assert_eq!(read, rows, "every record is read");
        common::report("read to the end, Kafka timestamps", rows, workers, elapsed);
    }
}
