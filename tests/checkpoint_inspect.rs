//! `weir checkpoint inspect` end to end: a checkpoint directory built through the library API
//! (random offsets, watermarks and state sizes over 2 workers, committed and uncommitted epochs,
//! prepared and committed sinks), inspected by the real binary as text and as JSON and compared
//! with what was written; then damaged files, each of which must give a non-zero exit code and a
//! message naming the file and what is wrong.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use weir_runtime::checkpoint::{
    CheckpointDir, CheckpointMetadata, CommitRecord, DataflowFingerprint, EpochOffsets, PartitionOffset,
    SinkEpochRecord, SinkEpochStatus, WatermarkState,
};
use weir_runtime::plan::{OperatorPlan, StateBound};
use weir_runtime::time::EventTime;

mod support;
use support::{check, tempdir, weir};

const WORKERS: usize = 2;

/// What the test wrote, to compare the report with.
struct Written {
    offsets: BTreeMap<u64, EpochOffsets>,
    state_bytes: BTreeMap<(u64, String), u64>,
    committed: Vec<u64>,
}

fn build(path: &Path, seed: u64) -> Written {
    let mut rng = SmallRng::seed_from_u64(seed);
    let fingerprint = DataflowFingerprint::from_entries(&[
        OperatorPlan::source("Source[events]", "event-time source, 3 partitions"),
        OperatorPlan::operator("count", "window aggregate (tumbling 10s)")
            .state(StateBound::WindowClose("when the watermark passes the window end".into()))
            .output_mode("append")
            .exchange("by key"),
        OperatorPlan::operator("dedup", "dedup (within 1m)").state(StateBound::DedupHorizon("1m".into())),
    ]);
    let metadata = CheckpointMetadata::new("q-42", "inspect-test", WORKERS, fingerprint);
    let (dir, _) = CheckpointDir::open_or_create(path, &metadata).unwrap();
    let mut written = Written { offsets: BTreeMap::new(), state_bytes: BTreeMap::new(), committed: Vec::new() };
    let mut positions = [0u64; 3];
    let mut max_time = 1_700_000_000_000u64;
    for epoch in 0..4u64 {
        let start = EventTime::from_millis(1_700_000_000_000 + epoch * 10_000);
        let end = EventTime::from_millis(1_700_000_000_000 + (epoch + 1) * 10_000);
        let mut partitions = Vec::new();
        for (p, position) in positions.iter_mut().enumerate() {
            *position += rng.random_range(0..1000);
            max_time += rng.random_range(0..5000);
            partitions.push(PartitionOffset {
                partition: p,
                // Kafka-shaped positions for partition 0, plain numbers for the others.
                position: if p == 0 { json!({"events": {"0": *position}}) } else { json!(*position) },
                watermark: WatermarkState {
                    max_event_time: Some(EventTime::from_millis(max_time)),
                    watermark: EventTime::from_millis(max_time - 2_000),
                    idle: rng.random_bool(0.3),
                },
            });
        }
        let offsets =
            EpochOffsets { epoch, start, end, sources: BTreeMap::from([("Source[events]".to_string(), partitions)]) };
        dir.write_offsets(&offsets).unwrap();
        written.offsets.insert(epoch, offsets);
        let mut state_files = Vec::new();
        for operator in ["count", "dedup"] {
            for worker in 0..WORKERS {
                let bytes: Vec<u8> = (0..rng.random_range(0..4096)).map(|_| rng.random()).collect();
                *written.state_bytes.entry((epoch, operator.to_string())).or_default() += bytes.len() as u64;
                state_files.push(dir.write_state(operator, worker, epoch, &bytes).unwrap());
            }
        }
        // Epoch 3 is in flight: offsets and state written ahead, no commit, sinks only prepared.
        let commit = epoch < 3;
        for worker in 0..WORKERS {
            let status = if commit { SinkEpochStatus::Committed } else { SinkEpochStatus::Prepared };
            dir.write_sink_record(&SinkEpochRecord { sink: "out".into(), worker, epoch, status, detail: Value::Null })
                .unwrap();
        }
        if commit {
            dir.write_commit(&CommitRecord { epoch, committed_at: EventTime::now(), state_files }).unwrap();
            written.committed.push(epoch);
        }
    }
    written
}

fn scratch(name: &str) -> PathBuf {
    let dir = tempdir("checkpoint-inspect").join(name);
    let _ = fs::remove_dir_all(&dir);
    dir
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files.sort();
    files
}

#[test]
fn inspect_shows_every_epoch_as_text_and_json() {
    for seed in 0..3 {
        let path = scratch(&format!("ok-{seed}"));
        let written = build(&path, seed);
        let before = files_under(&path);

        let output = weir(["checkpoint".as_ref(), "inspect".as_ref(), path.as_os_str(), "--json".as_ref()]);
        check(&output);
        let report: Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(report["metadata"]["query_id"], "q-42");
        assert_eq!(report["metadata"]["workers"], WORKERS);
        assert_eq!(report["metadata"]["format_version"], 1);
        assert_eq!(report["last_committed"], 2);
        let epochs = report["epochs"].as_array().unwrap();
        assert_eq!(epochs.len(), 4);
        for (epoch, offsets) in &written.offsets {
            let shown = &epochs[*epoch as usize];
            assert_eq!(shown["epoch"], *epoch);
            assert_eq!(shown["committed"], written.committed.contains(epoch), "epoch {epoch}");
            assert_eq!(shown["offsets"], serde_json::to_value(&offsets.sources).unwrap(), "epoch {epoch}");
            assert_eq!(shown["start"], offsets.start.as_millis());
            assert_eq!(shown["end"], offsets.end.as_millis());
            for operator in ["count", "dedup"] {
                assert_eq!(
                    shown["state"][operator]["bytes"],
                    written.state_bytes[&(*epoch, operator.to_string())],
                    "epoch {epoch} operator {operator}"
                );
                assert_eq!(shown["state"][operator]["workers"], json!([0, 1]));
            }
            let (committed, prepared) =
                if written.committed.contains(epoch) { (json!([0, 1]), json!([])) } else { (json!([]), json!([0, 1])) };
            assert_eq!(shown["sinks"]["out"]["committed"], committed);
            assert_eq!(shown["sinks"]["out"]["prepared"], prepared);
        }

        let output = weir(["checkpoint".as_ref(), "inspect".as_ref(), path.as_os_str()]);
        check(&output);
        let text = String::from_utf8(output.stdout).unwrap();
        assert!(text.contains("query:     inspect-test (id q-42)"), "{text}");
        assert!(text.contains("resumes after epoch 2"), "{text}");
        assert!(text.contains("epoch 3: NOT committed (offsets written ahead)"), "{text}");
        for (epoch, offsets) in &written.offsets {
            let at =
                text.find(&format!("\nepoch {epoch}: ")).unwrap_or_else(|| panic!("epoch {epoch} missing: {text}"));
            let section = &text[at + 1..];
            let section = &section[..section[1..].find("\nepoch ").map_or(section.len(), |i| i + 1)];
            assert_eq!(section.contains("committed at"), written.committed.contains(epoch), "{section}");
            assert!(section.contains(&format!("times [{}, {})", offsets.start, offsets.end)), "{section}");
            for partition in &offsets.sources["Source[events]"] {
                let line = format!(
                    "partition {}: offset {}, watermark {}, max event time {}{}",
                    partition.partition,
                    partition.position,
                    partition.watermark.watermark,
                    partition.watermark.max_event_time.unwrap(),
                    if partition.watermark.idle { ", idle" } else { "" }
                );
                assert!(section.contains(&format!("{line}\n")), "missing {line:?} in {section}");
            }
            let bytes = written.state_bytes[&(*epoch, "count".to_string())];
            assert!(section.contains(&format!("state count: {bytes} bytes in 2 file(s) (workers 0, 1)")), "{section}");
            let sink = if written.committed.contains(epoch) {
                "sink out: committed by worker(s) 0, 1"
            } else {
                "sink out: prepared, not committed, by worker(s) 0, 1"
            };
            assert!(section.contains(sink), "{section}");
        }
        // Inspecting changes nothing (the uncommitted epoch is still there).
        assert_eq!(files_under(&path), before);
        fs::remove_dir_all(&path).unwrap();
    }
}

#[test]
fn damaged_files_fail_with_the_file_and_the_problem() {
    type Damage = fn(&Path) -> PathBuf;
    let cases: Vec<(&str, Damage, &str)> = vec![
        (
            "truncated state file",
            |dir| {
                let path = dir.join("state/count/1/2");
                let bytes = fs::read(&path).unwrap();
                fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
                path
            },
            "is truncated",
        ),
        (
            "a changed byte in an offsets file",
            |dir| {
                let path = dir.join("offsets/1");
                let text = fs::read_to_string(&path).unwrap().replacen("\"partition\": 1", "\"partition\": 7", 1);
                fs::write(&path, text).unwrap();
                path
            },
            "does not match its checksum",
        ),
        (
            "a commit file cut inside its header",
            |dir| {
                let path = dir.join("commits/0");
                fs::write(&path, b"WEIR-CHECKPOINT v1 com").unwrap();
                path
            },
            "cannot be parsed",
        ),
        (
            "metadata replaced by something else",
            |dir| {
                let path = dir.join("metadata");
                fs::write(&path, b"query_id=q-42\n").unwrap();
                path
            },
            "is not a Weir checkpoint file",
        ),
        (
            "an empty sink record",
            |dir| {
                let path = dir.join("sinks/out/0/3");
                fs::write(&path, b"").unwrap();
                path
            },
            "it is empty (0 bytes)",
        ),
        (
            "metadata removed",
            |dir| {
                fs::remove_file(dir.join("metadata")).unwrap();
                dir.to_path_buf()
            },
            "is not a Weir checkpoint directory: it has no `metadata` file",
        ),
        (
            "no such directory",
            |dir| {
                fs::remove_dir_all(dir).unwrap();
                dir.to_path_buf()
            },
            "no such directory",
        ),
    ];
    for (i, (case, damage, expected)) in cases.into_iter().enumerate() {
        let path = scratch(&format!("damaged-{i}"));
        build(&path, 7);
        let damaged = damage(&path);
        for json in [false, true] {
            let mut args = vec!["checkpoint".into(), "inspect".into(), path.clone().into_os_string()];
            if json {
                args.push("--json".into());
            }
            let output = weir(args);
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert_eq!(output.status.code(), Some(1), "{case}: must fail; stderr: {stderr}");
            assert!(output.stdout.is_empty(), "{case}: printed a report anyway");
            assert!(
                stderr.contains(&damaged.display().to_string()),
                "{case}: must name {}: {stderr}",
                damaged.display()
            );
            assert!(stderr.contains(expected), "{case}: expected {expected:?} in: {stderr}");
            assert!(!stderr.contains("panicked"), "{case}: {stderr}");
        }
        let _ = fs::remove_dir_all(&path);
    }
}

/// RocksDB state is snapshotted as directories (RocksDB checkpoints with a manifest): inspect
/// reports their sizes from the manifests (checking that every listed file is there with its
/// size, without reading the files), and a missing or resized file fails naming it.
#[test]
fn inspect_reports_rocksdb_checkpoint_directories() {
    use weir_runtime::state::{RocksDbOptions, StateBackend};
    let path = scratch("rocksdb-dirs");
    let stores = scratch("rocksdb-dirs-stores");
    let fingerprint = DataflowFingerprint::from_entries(&[
        OperatorPlan::operator("join", "interval join").state(StateBound::DedupHorizon("1m".into()))
    ]);
    let metadata = CheckpointMetadata::new("q-7", "inspect-rocksdb", WORKERS, fingerprint);
    let (dir, _) = CheckpointDir::open_or_create(&path, &metadata).unwrap();
    let backend = StateBackend::RocksDb(RocksDbOptions::new(&stores).with_write_buffer_bytes(64 << 10));
    let mut rng = SmallRng::seed_from_u64(3);
    let offsets =
        EpochOffsets { epoch: 0, start: EventTime::MIN, end: EventTime::from_millis(10_000), sources: BTreeMap::new() };
    dir.write_offsets(&offsets).unwrap();
    let mut state_files = Vec::new();
    for worker in 0..WORKERS {
        let mut store = backend.open::<u64, Vec<u8>>("q-7", "join", worker).unwrap();
        for _ in 0..rng.random_range(5_000..20_000) {
            let value: Vec<u8> = (0..rng.random_range(0..64)).map(|_| rng.random()).collect();
            store.put(rng.random(), value).unwrap();
        }
        state_files.push(store.write_snapshot(&dir, "join", worker, 0).unwrap());
    }
    let total: u64 = state_files.iter().map(|s| s.bytes).sum();
    dir.write_commit(&CommitRecord { epoch: 0, committed_at: EventTime::now(), state_files }).unwrap();
    let files: usize =
        (0..WORKERS).map(|w| files_under(&dir.state_path("join", w, 0)).len() - 1 /* the manifest */).sum();

    let output = weir(["checkpoint".as_ref(), "inspect".as_ref(), path.as_os_str(), "--json".as_ref()]);
    check(&output);
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let state = &report["epochs"][0]["state"]["join"];
    assert_eq!(state["bytes"], total);
    assert_eq!(state["directories"], WORKERS);
    assert_eq!(state["directory_files"], files);
    let output = weir(["checkpoint".as_ref(), "inspect".as_ref(), path.as_os_str()]);
    check(&output);
    let text = String::from_utf8(output.stdout).unwrap();
    let line = format!("state join: {total} bytes in {WORKERS} director(ies) of {files} file(s) (workers 0, 1)");
    assert!(text.contains(&line), "missing {line:?} in {text}");

    // A file of a directory cut short, then removed: each fails, naming the file.
    let sst = files_under(&dir.state_path("join", 1, 0))
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "sst"))
        .expect("an SST file");
    let bytes = fs::read(&sst).unwrap();
    fs::remove_file(&sst).unwrap(); // it may be a hard link: never change it in place
    fs::write(&sst, &bytes[..bytes.len() / 2]).unwrap();
    for (expected, damage) in [("the manifest of its state directory lists", false), ("but is missing", true)] {
        if damage {
            fs::remove_file(&sst).unwrap();
        }
        let output = weir(["checkpoint".as_ref(), "inspect".as_ref(), path.as_os_str()]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "must fail: {stderr}");
        assert!(stderr.contains(&sst.display().to_string()) && stderr.contains(expected), "{stderr}");
    }
    fs::remove_dir_all(&path).unwrap();
    let _ = fs::remove_dir_all(&stores);
}
