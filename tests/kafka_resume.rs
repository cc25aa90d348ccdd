//! Resuming Kafka partitions at a checkpointed position (`Source::open_at`), against a real
//! broker (`WEIR_KAFKA_BROKERS`, nisshi 0.8.1; start it with `scripts/test-env up`): the rest of
//! each partition equals the uninterrupted read, starting offsets are ignored for resumed
//! partitions, and an offset that is gone follows `fail_on_data_loss` as at the start.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::json;
use weir_connectors::kafka::{EndingOffsets, KafkaOptions, KafkaRecord, KafkaSource, StartingOffsets, TopicPartition};
use weir_runtime::source::{PartitionReader, ReadStatus, Source};

mod support;
use support::kafka::{brokers, create_topic, produce, unique_topic, TestRecord};

const BASE: i64 = 1_700_000_000_000;

/// `n` records per partition with values `p-i` and timestamps `BASE + i * 1000`.
fn fill(topic: &str, partitions: i32, n: i64) {
    let records: Vec<TestRecord> = (0..partitions)
        .flat_map(|p| (0..n).map(move |i| TestRecord::new(p, BASE + i * 1000, format!("{p}-{i}"))))
        .collect();
    produce(&brokers(), topic, &records);
}

/// Reads from `reader` in batches of at most `batch` until `count` records (or the end) are read.
fn read_up_to(reader: &mut impl PartitionReader<Record = KafkaRecord>, count: usize, batch: usize) -> Vec<KafkaRecord> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut out = Vec::new();
    while out.len() < count {
        assert!(Instant::now() < deadline, "read only {} of {count} records in 30 s", out.len());
        let max = batch.min(count - out.len());
        match reader.read(&mut out, max).expect("the read succeeds") {
            ReadStatus::Finished => break,
            ReadStatus::Ready => {}
            ReadStatus::Wait(delay) => std::thread::sleep(delay),
        }
    }
    out
}

/// (offset, value) of each record: what must match between runs.
fn summary(records: &[KafkaRecord]) -> Vec<(i64, String)> {
    records.iter().map(|r| (r.offset, String::from_utf8(r.value.clone().unwrap_or_default()).unwrap())).collect()
}

fn source(topic: &str, starting: StartingOffsets, fail_on_data_loss: bool) -> KafkaSource {
    KafkaSource::subscribe(KafkaOptions::new(brokers()), [topic])
        .starting_offsets(starting)
        .ending_offsets(EndingOffsets::Latest)
        .fail_on_data_loss(fail_on_data_loss)
        .build()
        .expect("the source builds")
}

/// Per partition and for several cut points: read `k` records in small batches, take the
/// position, resume on a fresh source (whose starting offsets say `latest`, which would read
/// nothing) at that position; the rest equals the uninterrupted read.
#[test]
fn a_resumed_partition_reads_exactly_the_rest() {
    let topic = unique_topic("resume");
    create_topic(&brokers(), &topic, 3);
    fill(&topic, 3, 40);
    let original = source(&topic, StartingOffsets::Earliest, true);
    for index in 0..3 {
        let all = read_up_to(&mut original.clone().open(index).unwrap(), usize::MAX, 1000);
        assert_eq!(all.len(), 40, "partition {index}");
        for cut in [0usize, 1, 17, 39, 40] {
            let first = original.clone();
            let mut reader = first.open(index).unwrap();
            let head = read_up_to(&mut reader, cut, 7);
            let position = reader.position();
            let tp = original.topic_partitions()[index].clone();
            assert_eq!(
                position,
                json!({ topic.clone(): { tp.partition.to_string(): all.get(cut).map_or(40, |r| r.offset) } })
            );

            // `latest` would read nothing: resumed partitions ignore the starting offsets.
            let resumed_source = source(&topic, StartingOffsets::Latest, true);
            let mut resumed = resumed_source.open_at(index, &position).expect("resumes");
            assert_eq!(resumed.position(), position);
            let rest = read_up_to(&mut resumed, usize::MAX, 5);
            assert_eq!(summary(&head), summary(&all[..cut]), "partition {index}, cut {cut}");
            assert_eq!(summary(&rest), summary(&all[cut..]), "partition {index}: resumed at {position}");
            assert_eq!(resumed_source.data_loss_events(), 0);
        }
    }
}

/// An offset deleted since the checkpoint: with `fail_on_data_loss` resuming fails naming the
/// partition and offsets; without, it continues at the earliest offset and counts the loss.
/// A position of another topic is refused.
#[test]
fn a_lost_offset_follows_fail_on_data_loss() {
    let topic = unique_topic("resume-loss");
    create_topic(&brokers(), &topic, 1);
    fill(&topic, 1, 10);
    let checkpointed = json!({ topic.clone(): { "0": 2 } });
    support::kafka::admin(&brokers())
        .delete_records(&BTreeMap::from([(TopicPartition::new(topic.clone(), 0), 6)]))
        .expect("the broker supports DeleteRecords");

    let failing = source(&topic, StartingOffsets::Earliest, true);
    let error = failing.open_at(0, &checkpointed).err().expect("a lost offset fails").to_string();
    for needle in [
        "resuming from the checkpoint",
        &format!("topic {topic:?} partition 0"),
        "offset 2",
        "earliest available offset is 6",
        "fail_on_data_loss(false)",
    ] {
        assert!(error.contains(needle), "the error should mention {needle:?}: {error}");
    }

    let continuing = source(&topic, StartingOffsets::Earliest, false);
    let mut reader = continuing.open_at(0, &checkpointed).expect("continues after the loss");
    let rest = read_up_to(&mut reader, usize::MAX, 3);
    assert_eq!(rest.iter().map(|r| r.offset).collect::<Vec<_>>(), (6..10).collect::<Vec<_>>());
    assert_eq!(continuing.data_loss_events(), 1, "the skipped range is counted");

    // Beyond the end (the topic was recreated shorter).
    let beyond = json!({ topic.clone(): { "0": 100 } });
    let error = failing.open_at(0, &beyond).err().expect("beyond the end fails").to_string();
    assert!(error.contains("offset 100") && error.contains("ends at 10"), "{error}");

    let other = json!({ "another-topic": { "0": 2 } });
    let error = failing.open_at(0, &other).err().expect("another topic's position is refused").to_string();
    assert!(error.contains("holds no offset for"), "{error}");
}
