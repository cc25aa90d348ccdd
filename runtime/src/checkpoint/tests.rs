use std::collections::BTreeMap;
use std::fs;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::plan::{OperatorPlan, StateBound};
use crate::time::EventTime;

fn scratch(name: &str) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "weir-checkpoint-{name}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = fs::remove_dir_all(&dir);
    dir
}

fn fingerprint(window: &str) -> DataflowFingerprint {
    DataflowFingerprint::from_entries(&[
        OperatorPlan::source("Source[events]", "event-time source, 2 partitions"),
        OperatorPlan::operator("count", format!("window aggregate (tumbling {window})"))
            .state(StateBound::WindowClose("window end".into()))
            .output_mode("append"),
    ])
}

fn metadata(workers: usize, window: &str) -> CheckpointMetadata {
    CheckpointMetadata::new("query-id-1", "test", workers, fingerprint(window))
}

fn offsets(epoch: u64) -> EpochOffsets {
    let partition = |p: usize| PartitionOffset {
        partition: p,
        position: serde_json::json!(epoch * 100 + p as u64),
        watermark: WatermarkState {
            max_event_time: Some(EventTime::from_millis(epoch * 10_000 + 5_000)),
            watermark: EventTime::from_millis(epoch * 10_000),
            idle: p == 1,
        },
    };
    EpochOffsets {
        epoch,
        start: EventTime::from_millis(epoch * 10_000),
        end: EventTime::from_millis((epoch + 1) * 10_000),
        sources: BTreeMap::from([("events".to_string(), vec![partition(0), partition(1)])]),
    }
}

/// Writes a complete epoch (offsets, state of `count` on two workers, sink records, commit).
fn write_epoch(dir: &CheckpointDir, epoch: u64, commit: bool) {
    dir.write_offsets(&offsets(epoch)).unwrap();
    let mut state_files = Vec::new();
    for worker in 0..2 {
        state_files
            .push(dir.write_state("count", worker, epoch, format!("state {epoch}/{worker}").as_bytes()).unwrap());
        dir.write_sink_record(&SinkEpochRecord {
            sink: "out".into(),
            worker,
            epoch,
            status: SinkEpochStatus::Prepared,
            detail: serde_json::Value::Null,
        })
        .unwrap();
    }
    if commit {
        dir.write_commit(&CommitRecord { epoch, committed_at: EventTime::now(), state_files }).unwrap();
    }
}

#[test]
fn resumes_after_the_last_committed_epoch_and_discards_later_ones() {
    let path = scratch("resume");
    let (dir, resume) = CheckpointDir::open_or_create(&path, &metadata(2, "10s")).unwrap();
    assert_eq!(resume, Resume::Fresh);
    write_epoch(&dir, 0, true);
    write_epoch(&dir, 1, true);
    write_epoch(&dir, 2, false);
    // A temporary file left by a write interrupted by a crash.
    fs::write(path.join("commits").join(".2.tmp-1-1"), b"half").unwrap();

    let mut later = metadata(2, "10s");
    later.query_id = "another-id".into();
    let (dir, resume) = CheckpointDir::open_or_create(&path, &later).unwrap();
    assert_eq!(dir.metadata().query_id, "query-id-1", "the query id stays across restarts");
    let Resume::FromEpoch { epoch, offsets: resumed, state_files, compatible_changes, discarded_epochs } = resume
    else {
        panic!("must resume, got {resume:?}")
    };
    assert_eq!(epoch, 1);
    assert_eq!(resumed, offsets(1));
    assert_eq!(discarded_epochs, vec![2]);
    assert!(compatible_changes.is_empty());
    assert_eq!(state_files.len(), 2);
    assert_eq!((state_files[1].operator.as_str(), state_files[1].worker), ("count", 1));
    assert!(fs::read(&state_files[1].path).unwrap().ends_with(b"state 1/1"));
    assert_eq!(dir.read_state("count", 1, 1).unwrap(), b"state 1/1");
    // Epoch 2's files are gone, and so is the temporary file; epochs 0 and 1 are intact.
    assert!(!dir.offsets_path(2).exists());
    assert!(!dir.state_path("count", 0, 2).exists());
    assert!(!dir.sink_record_path("out", 0, 2).exists());
    assert!(!path.join("commits").join(".2.tmp-1-1").exists());
    assert_eq!(dir.committed_epochs().unwrap(), vec![0, 1]);
    // The next run writes epoch 2 again.
    write_epoch(&dir, 2, true);
    assert_eq!(dir.last_committed().unwrap(), Some(2));
    fs::remove_dir_all(&path).unwrap();
}

#[test]
fn offsets_are_written_ahead_and_committed_epochs_are_final() {
    let path = scratch("order");
    let (dir, _) = CheckpointDir::open_or_create(&path, &metadata(1, "10s")).unwrap();
    let commit = CommitRecord { epoch: 0, committed_at: EventTime::now(), state_files: vec![] };
    let error = dir.write_commit(&commit).unwrap_err().to_string();
    assert!(error.contains("commits/0 cannot be written before offsets/0"), "{error}");

    dir.write_offsets(&offsets(0)).unwrap();
    let missing = StateFileRef { operator: "count".into(), worker: 0, bytes: 3, crc32: 0, kind: StateKind::Bytes };
    let error =
        dir.write_commit(&CommitRecord { state_files: vec![missing], ..commit.clone() }).unwrap_err().to_string();
    assert!(error.contains("state of operator `count` on worker 0: it was not written"), "{error}");

    dir.write_commit(&commit).unwrap();
    assert!(matches!(dir.write_offsets(&offsets(0)), Err(CheckpointError::AlreadyCommitted { epoch: 0, .. })));
    assert!(matches!(dir.write_state("count", 0, 0, b"x"), Err(CheckpointError::AlreadyCommitted { .. })));
    assert!(matches!(dir.write_commit(&commit), Err(CheckpointError::AlreadyCommitted { .. })));
    fs::remove_dir_all(&path).unwrap();
}

/// Builds a checkpoint with one committed epoch, damages one file with `damage`, and returns
/// the error `open_or_create` gives.
fn open_after(damage: impl FnOnce(&CheckpointDir)) -> (PathBuf, CheckpointError) {
    let path = scratch("corrupt");
    let (dir, _) = CheckpointDir::open_or_create(&path, &metadata(2, "10s")).unwrap();
    write_epoch(&dir, 0, true);
    damage(&dir);
    let error = CheckpointDir::open_or_create(&path, &metadata(2, "10s")).unwrap_err();
    (path, error)
}

#[test]
fn damaged_files_are_named_with_what_is_wrong() {
    type Damage = Box<dyn FnOnce(&CheckpointDir) -> PathBuf>;
    let cases: Vec<(&str, Damage, &str)> = vec![
        (
            "truncated offsets",
            Box::new(|dir| {
                let path = dir.offsets_path(0);
                let bytes = fs::read(&path).unwrap();
                fs::write(&path, &bytes[..bytes.len() - 10]).unwrap();
                path
            }),
            "it is truncated: the header announces",
        ),
        (
            "flipped byte in the commit",
            Box::new(|dir| {
                let path = dir.commit_path(0);
                let mut bytes = fs::read(&path).unwrap();
                let last = bytes.len() - 3;
                bytes[last] ^= 0x01;
                fs::write(&path, bytes).unwrap();
                path
            }),
            "does not match its checksum",
        ),
        (
            "empty metadata",
            Box::new(|dir| {
                let path = dir.path().join("metadata");
                fs::write(&path, b"").unwrap();
                path
            }),
            "it is empty (0 bytes)",
        ),
        (
            "metadata that is not a checkpoint file",
            Box::new(|dir| {
                let path = dir.path().join("metadata");
                fs::write(&path, b"{\"query_id\": 1}\n").unwrap();
                path
            }),
            "it is not a Weir checkpoint file (it starts with \"{\\\"query_id\\\": 1}",
        ),
        (
            "a future format version",
            Box::new(|dir| {
                let path = dir.commit_path(0);
                let text = fs::read_to_string(&path).unwrap().replacen(" v1 ", " v9 ", 1);
                fs::write(&path, text).unwrap();
                path
            }),
            "it has format version 9, this build of Weir reads version 1",
        ),
        (
            "an offsets record where a commit belongs",
            Box::new(|dir| {
                fs::copy(dir.offsets_path(0), dir.commit_path(0)).unwrap();
                dir.commit_path(0)
            }),
            "it holds a `offsets` record where a `commit` record belongs",
        ),
        (
            "intact header, invalid JSON",
            Box::new(|dir| {
                let path = dir.offsets_path(0);
                file::write_atomic(&path, FileKind::Offsets, b"{\"epoch\": \"zero\"}").unwrap();
                path
            }),
            "its content is invalid: not a valid offsets record",
        ),
        (
            "a state file listed by the commit is missing",
            Box::new(|dir| {
                let path = dir.state_path("count", 1, 0);
                fs::remove_file(&path).unwrap();
                path
            }),
            "commits/0 lists the state of operator `count` on worker 1, but the file is missing",
        ),
    ];
    for (case, damage, expected) in cases {
        let mut damaged = PathBuf::new();
        let (path, error) = open_after(|dir| damaged = damage(dir));
        let message = error.to_string();
        assert!(message.contains(&damaged.display().to_string()), "{case}: the error must name the file: {message}");
        assert!(message.contains(expected), "{case}: expected {expected:?} in: {message}");
        fs::remove_dir_all(&path).unwrap();
    }
    // A damaged state file is found when it is read.
    let path = scratch("state");
    let (dir, _) = CheckpointDir::open_or_create(&path, &metadata(2, "10s")).unwrap();
    write_epoch(&dir, 0, true);
    let state = dir.state_path("count", 0, 0);
    let mut bytes = fs::read(&state).unwrap();
    bytes.truncate(bytes.len() - 1);
    fs::write(&state, bytes).unwrap();
    let message = dir.read_state("count", 0, 0).unwrap_err().to_string();
    assert!(message.contains(&state.display().to_string()) && message.contains("truncated"), "{message}");
    fs::remove_dir_all(&path).unwrap();
}

#[test]
fn a_changed_dataflow_or_worker_count_is_refused_with_what_changed() {
    let path = scratch("changed");
    let (dir, _) = CheckpointDir::open_or_create(&path, &metadata(2, "10s")).unwrap();
    write_epoch(&dir, 0, true);

    let error = CheckpointDir::open_or_create(&path, &metadata(2, "5s")).unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains(
            "operator `count` changed from window aggregate (tumbling 10s) to window aggregate (tumbling 5s)"
        ),
        "{message}"
    );
    assert!(message.contains("--reset-checkpoint"), "{message}");

    let mut added = metadata(2, "10s");
    added.fingerprint.nodes.push(NodeFingerprint::of(
        &OperatorPlan::operator("dedup", "dedup (within 1m)").state(StateBound::DedupHorizon("1m".into())),
    ));
    let message = CheckpointDir::open_or_create(&path, &added).unwrap_err().to_string();
    assert!(message.contains("a new operator `dedup` (dedup (within 1m)) was added"), "{message}");

    let message = CheckpointDir::open_or_create(&path, &metadata(3, "10s")).unwrap_err().to_string();
    assert!(message.contains("written by 2 worker(s) in total, this run has 3"), "{message}");
    assert!(message.contains("rescaling checkpointed state to another worker count is not supported yet"), "{message}");

    // A new stateless operator is fine: reported, remembered, and the run resumes.
    let mut stateless = metadata(2, "10s");
    stateless.fingerprint.nodes.push(NodeFingerprint::of(&OperatorPlan::operator("parse", "map")));
    let (dir, resume) = CheckpointDir::open_or_create(&path, &stateless).unwrap();
    let Resume::FromEpoch { epoch: 0, compatible_changes, .. } = resume else { panic!("must resume: {resume:?}") };
    assert_eq!(compatible_changes, vec!["a new operator `parse` (map) was added"]);
    assert_eq!(dir.metadata().fingerprint, stateless.fingerprint);
    // Nothing was deleted by the refused attempts.
    assert_eq!(dir.committed_epochs().unwrap(), vec![0]);
    fs::remove_dir_all(&path).unwrap();
}

#[test]
fn only_empty_or_checkpoint_directories_are_used_or_reset() {
    // An existing empty directory, and one left by a crash during creation, start fresh.
    let path = scratch("empty");
    fs::create_dir_all(path.join("offsets")).unwrap();
    fs::write(path.join(".metadata.tmp-9-9"), b"half").unwrap();
    let (_, resume) = CheckpointDir::open_or_create(&path, &metadata(1, "10s")).unwrap();
    assert_eq!(resume, Resume::Fresh);
    fs::remove_dir_all(&path).unwrap();

    // A directory with other files, or a checkpoint that lost its metadata, is refused.
    let path = scratch("foreign");
    fs::create_dir_all(path.join("commits")).unwrap();
    fs::write(path.join("commits").join("3"), b"x").unwrap();
    let message = CheckpointDir::open_or_create(&path, &metadata(1, "10s")).unwrap_err().to_string();
    assert!(message.contains("is not a Weir checkpoint directory: it has no `metadata` file but contains commits/3"));
    let message = CheckpointDir::reset(&path).unwrap_err().to_string();
    assert!(message.contains("not a Weir checkpoint directory"), "{message}");
    assert!(path.join("commits").join("3").exists(), "reset must not delete a foreign directory");
    fs::remove_dir_all(&path).unwrap();

    // A checkpoint is reset on purpose.
    let path = scratch("reset");
    let (dir, _) = CheckpointDir::open_or_create(&path, &metadata(1, "10s")).unwrap();
    write_epoch(&dir, 0, true);
    CheckpointDir::reset(&path).unwrap();
    assert!(!path.exists());
    let (_, resume) = CheckpointDir::open_or_create(&path, &metadata(1, "5s")).unwrap();
    assert_eq!(resume, Resume::Fresh);
    fs::remove_dir_all(&path).unwrap();
}

#[test]
fn cleanup_keeps_the_last_committed_epochs() {
    let path = scratch("cleanup");
    let (dir, _) = CheckpointDir::open_or_create(&path, &metadata(2, "10s")).unwrap();
    for epoch in 0..5 {
        write_epoch(&dir, epoch, epoch < 4);
    }
    assert_eq!(dir.cleanup(2).unwrap(), vec![0, 1]);
    assert_eq!(dir.committed_epochs().unwrap(), vec![2, 3]);
    assert!(!dir.offsets_path(1).exists() && !dir.state_path("count", 1, 1).exists());
    assert!(!dir.sink_record_path("out", 0, 0).exists());
    assert!(dir.offsets_path(4).exists(), "the epoch in flight is kept");
    assert!(dir.state_path("count", 0, 2).exists());
    assert_eq!(dir.cleanup(0).unwrap(), vec![2], "at least the last committed epoch is kept");
    let report = CheckpointReport::read(&path).unwrap();
    assert_eq!(report.epochs.iter().map(|e| e.epoch).collect::<Vec<_>>(), vec![3, 4]);
    assert_eq!(report.last_committed, Some(3));
    fs::remove_dir_all(&path).unwrap();
}

#[test]
fn names_are_encoded_as_single_path_components() {
    for name in ["count", "Source[events]", "a/b", "..", ".hidden", "", "über", "x%y"] {
        let encoded = encode_name(name);
        assert!(!encoded.contains('/') && !encoded.starts_with('.'), "{name} -> {encoded}");
        assert_eq!(decode_name(&encoded).as_deref(), Some(name));
    }
    assert_eq!(encode_name("Source[a]"), "Source%5Ba%5D");
}

#[test]
fn the_report_lists_every_epoch() {
    let path = scratch("report");
    let (dir, _) = CheckpointDir::open_or_create(&path, &metadata(2, "10s")).unwrap();
    write_epoch(&dir, 0, true);
    dir.write_sink_record(&SinkEpochRecord {
        sink: "out".into(),
        worker: 1,
        epoch: 0,
        status: SinkEpochStatus::Committed,
        detail: serde_json::Value::Null,
    })
    .unwrap();
    write_epoch(&dir, 1, false);
    let report = CheckpointReport::read(&path).unwrap();
    assert_eq!(report.last_committed, Some(0));
    let first = &report.epochs[0];
    assert!(first.committed);
    assert_eq!(first.state["count"].bytes, ("state 0/0".len() * 2) as u64);
    assert_eq!(first.state["count"].workers, vec![0, 1]);
    assert_eq!(first.sinks["out"].committed, vec![1]);
    assert_eq!(first.sinks["out"].prepared, vec![0]);
    assert!(!report.epochs[1].committed);
    let text = report.to_string();
    assert!(text.contains("epoch 1: NOT committed (offsets written ahead)"), "{text}");
    assert!(text.contains("partition 1: offset 101, watermark 1970-01-01T00:00:10.000Z"), "{text}");
    fs::remove_dir_all(&path).unwrap();
}

/// Writes a state directory of two files (one in a subdirectory) for `count` on `worker`.
fn write_dir_state(dir: &CheckpointDir, worker: usize, epoch: u64) -> StateFileRef {
    dir.write_state_dir("count", worker, epoch, |staging| {
        fs::write(staging.join("store"), format!("store {epoch}/{worker}"))?;
        fs::create_dir(staging.join("rocksdb"))?;
        fs::write(staging.join("rocksdb").join("000001.sst"), vec![7u8; 1000 + worker])?;
        Ok::<_, std::io::Error>(())
    })
    .map_err(|e| e.to_string())
    .unwrap()
}

impl From<CheckpointError> for std::io::Error {
    fn from(error: CheckpointError) -> Self {
        std::io::Error::other(error.to_string())
    }
}

#[test]
fn state_directories_are_written_with_a_manifest_resumed_reported_and_cleaned_up() {
    let path = scratch("state-dir");
    let (dir, _) = CheckpointDir::open_or_create(&path, &metadata(2, "10s")).unwrap();
    for epoch in 0..3 {
        dir.write_offsets(&offsets(epoch)).unwrap();
        let state_files = vec![write_dir_state(&dir, 0, epoch), dir.write_state("count", 1, epoch, b"bytes").unwrap()];
        assert_eq!(state_files[0].kind, StateKind::Directory);
        assert_eq!(state_files[0].bytes, ("store 0/0".len() + 1000) as u64);
        if epoch < 2 {
            dir.write_commit(&CommitRecord { epoch, committed_at: EventTime::now(), state_files }).unwrap();
        }
    }
    // The commit records the kind; a bytes reference stays as it was written before directories.
    let commit = fs::read_to_string(dir.commit_path(1)).unwrap();
    assert_eq!(commit.matches("\"kind\": \"directory\"").count(), 1, "{commit}");
    // A failing fill leaves nothing behind.
    let error = dir
        .write_state_dir("count", 0, 2, |staging| {
            fs::write(staging.join("half"), b"x")?;
            Err::<(), _>(std::io::Error::other("disk full"))
        })
        .unwrap_err();
    assert_eq!(error.to_string(), "disk full");
    assert_eq!(file::list(dir.state_path("count", 0, 2).parent().unwrap()).unwrap(), vec!["0", "1", "2"]);
    // A staging directory left by a crash is removed at the next open, and so is epoch 2.
    fs::create_dir(dir.state_path("count", 0, 2).with_file_name(".3.tmp-1-1")).unwrap();

    let (dir, resume) = CheckpointDir::open_or_create(&path, &metadata(2, "10s")).unwrap();
    let Resume::FromEpoch { epoch: 1, state_files, discarded_epochs, .. } = resume else { panic!("{resume:?}") };
    assert_eq!(discarded_epochs, vec![2]);
    assert_eq!(state_files[0].kind, StateKind::Directory);
    assert_eq!(state_files[1].kind, StateKind::Bytes);
    let worker_dir = dir.state_path("count", 0, 1).parent().unwrap().to_path_buf();
    assert_eq!(file::list(&worker_dir).unwrap(), vec!["0", "1"]);
    let checked = dir.read_state_dir("count", 0, 1).unwrap();
    assert_eq!(fs::read(checked.join("store")).unwrap(), b"store 1/0");
    // The shapes are checked: a directory is not read as bytes, nor a file as a directory.
    let message = dir.read_state("count", 0, 1).unwrap_err().to_string();
    assert!(message.contains("it is a directory, a state file was expected"), "{message}");
    let message = dir.read_state_dir("count", 1, 1).unwrap_err().to_string();
    assert!(message.contains("it is a file, a state directory was expected"), "{message}");

    // The report sums the manifests' sizes without reading the files.
    let report = CheckpointReport::read(&path).unwrap();
    let state = &report.epochs[1].state["count"];
    assert_eq!((state.bytes, state.directories, state.directory_files), (("store 1/0".len() + 1000 + 5) as u64, 1, 2));
    let text = report.to_string();
    assert!(
        text.contains("state count: 1014 bytes in 1 file(s) and 1 director(ies) of 2 file(s) (workers 0, 1)"),
        "{text}"
    );
    // A size change is found by the report, a changed byte of the same size only by a full check.
    let sst = dir.state_path("count", 0, 1).join("rocksdb").join("000001.sst");
    fs::write(&sst, vec![8u8; 1000]).unwrap();
    CheckpointReport::read(&path).unwrap();
    let message = dir.read_state_dir("count", 0, 1).unwrap_err().to_string();
    assert!(
        message.contains(&sst.display().to_string()) && message.contains("does not match the checksum"),
        "{message}"
    );
    fs::write(&sst, vec![8u8; 10]).unwrap();
    let message = CheckpointReport::read(&path).unwrap_err().to_string();
    assert!(
        message.contains(&sst.display().to_string()) && message.contains("it has 10 bytes, the manifest"),
        "{message}"
    );

    // Cleanup removes the directories of old epochs.
    dir.write_offsets(&offsets(2)).unwrap();
    let state_files = vec![write_dir_state(&dir, 0, 2)];
    dir.write_commit(&CommitRecord { epoch: 2, committed_at: EventTime::now(), state_files }).unwrap();
    assert_eq!(dir.cleanup(1).unwrap(), vec![0, 1]);
    assert_eq!(file::list(&worker_dir).unwrap(), vec!["2"]);

    // A commit cannot list a directory whose manifest is missing.
    dir.write_offsets(&offsets(3)).unwrap();
    let reference = write_dir_state(&dir, 0, 3);
    fs::remove_file(dir.state_path("count", 0, 3).join(state_dir::MANIFEST)).unwrap();
    let message = dir
        .write_commit(&CommitRecord { epoch: 3, committed_at: EventTime::now(), state_files: vec![reference] })
        .unwrap_err()
        .to_string();
    assert!(message.contains("has no manifest"), "{message}");
    fs::remove_dir_all(&path).unwrap();
}

#[test]
fn checksums_of_hard_linked_files_are_carried_over_from_the_previous_epoch() {
    let path = scratch("carry-over");
    let (dir, _) = CheckpointDir::open_or_create(&path, &metadata(1, "10s")).unwrap();
    let write = |epoch: u64, from: Option<PathBuf>| {
        dir.write_state_dir("join", 0, epoch, |staging| {
            match &from {
                // Like a RocksDB checkpoint: the unchanged file is a hard link, the other a copy.
                Some(previous) => {
                    fs::hard_link(previous.join("shared.sst"), staging.join("shared.sst"))?;
                    fs::copy(previous.join("copied.sst"), staging.join("copied.sst"))?;
                }
                None => {
                    fs::write(staging.join("shared.sst"), vec![1u8; 5000])?;
                    fs::write(staging.join("copied.sst"), vec![2u8; 5000])?;
                }
            }
            Ok::<_, std::io::Error>(())
        })
        .map_err(|e| e.to_string())
        .unwrap()
    };
    write(0, None);
    let first = dir.state_path("join", 0, 0);
    // Damage both files of epoch 0 in place, keeping their sizes: a file that is read again gets
    // the checksum of its damaged content, a carried-over checksum is the original one.
    for name in ["shared.sst", "copied.sst"] {
        let mut file = fs::OpenOptions::new().write(true).open(first.join(name)).unwrap();
        std::io::Write::write_all(&mut file, b"XX").unwrap();
    }
    write(1, Some(first.clone()));
    let second = dir.state_path("join", 0, 1);
    let manifest: StateManifest = file::read_json(&second.join(state_dir::MANIFEST), FileKind::StateManifest).unwrap();
    let crc_of = |name: &str| manifest.files.iter().find(|f| f.path == name).unwrap().crc32;
    assert_eq!(crc_of("shared.sst"), file::crc32(&[1u8; 5000]), "the hard link keeps the original checksum");
    assert_ne!(crc_of("copied.sst"), file::crc32(&[2u8; 5000]), "a copy is checksummed again");
    // So the damage to the shared file is found in both epochs.
    let message = dir.read_state_dir("join", 0, 1).unwrap_err().to_string();
    assert!(message.contains(&second.join("shared.sst").display().to_string()), "{message}");
    let message = dir.read_state_dir("join", 0, 0).unwrap_err().to_string();
    assert!(message.contains("does not match the checksum"), "{message}");
    fs::remove_dir_all(&path).unwrap();
}

/// Staged sink data (a Kafka sink's epochs written ahead of their transaction) outlives cleanup
/// of its epoch, whatever the epoch's age: only the sink removes it, once delivered. Opening the
/// checkpoint removes the staged data of epochs never committed (and temporary files), and a
/// damaged staged file is an error naming it.
#[test]
fn staged_sink_data_survives_cleanup_until_its_sink_removes_it() {
    let path = scratch("staged");
    let (dir, _) = CheckpointDir::open_or_create(&path, &metadata(2, "10s")).unwrap();
    for epoch in 0..6 {
        dir.write_sink_data("kafka:out", 1, epoch, format!("records of {epoch}").as_bytes()).unwrap();
        write_epoch(&dir, epoch, epoch < 5);
    }
    assert_eq!(dir.cleanup(1).unwrap(), vec![0, 1, 2, 3]);
    assert_eq!(dir.sink_data_epochs("kafka:out", 1).unwrap(), vec![0, 1, 2, 3, 4, 5], "cleanup keeps staged data");
    assert_eq!(dir.read_sink_data("kafka:out", 1, 0).unwrap(), b"records of 0");
    assert!(dir.sink_data_path("kafka:out", 1, 0).starts_with(dir.sink_dir("kafka:out")));
    // A committed epoch's staged data cannot be written any more (it is written ahead).
    assert!(matches!(
        dir.write_sink_data("kafka:out", 1, 4, b"late"),
        Err(CheckpointError::AlreadyCommitted { epoch: 4, .. })
    ));
    dir.remove_sink_data("kafka:out", 1, 0).unwrap();
    dir.remove_sink_data("kafka:out", 1, 0).unwrap();
    // A crash left a temporary file; the report does not mistake the staged directory for epochs.
    let temporary = file::temporary_path(&dir.sink_data_path("kafka:out", 1, 9));
    fs::write(&temporary, b"half").unwrap();
    let report = CheckpointReport::read(&path).unwrap();
    assert_eq!(report.last_committed, Some(4));

    let (dir, resume) = CheckpointDir::open_or_create(&path, &metadata(2, "10s")).unwrap();
    assert!(matches!(resume, Resume::FromEpoch { epoch: 4, .. }));
    assert_eq!(dir.sink_data_epochs("kafka:out", 1).unwrap(), vec![1, 2, 3, 4], "epoch 5 was never committed");
    assert!(!temporary.exists());

    // Damaged staged files are refused, naming the file and the problem.
    let staged = dir.sink_data_path("kafka:out", 1, 2);
    let bytes = fs::read(&staged).unwrap();
    fs::write(&staged, &bytes[..bytes.len() - 3]).unwrap();
    let message = dir.read_sink_data("kafka:out", 1, 2).unwrap_err().to_string();
    assert!(message.contains(&staged.display().to_string()) && message.contains("truncated"), "{message}");
    let mut flipped = bytes.clone();
    *flipped.last_mut().unwrap() ^= 1;
    fs::write(&staged, &flipped).unwrap();
    let message = dir.read_sink_data("kafka:out", 1, 2).unwrap_err().to_string();
    assert!(message.contains("does not match its checksum"), "{message}");
    fs::remove_dir_all(&path).unwrap();
}
