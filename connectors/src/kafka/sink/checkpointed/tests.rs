use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use weir_runtime::checkpoint::{
    CheckpointMetadata, CommitRecord, DataflowFingerprint, EpochOffsets, Resume, FORMAT_VERSION,
};

use super::*;

fn scratch(name: &str) -> std::path::PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let path = std::env::temp_dir().join(format!(
        "weir-kafka-staging-{name}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&path);
    path
}

fn open(path: &std::path::Path) -> (CheckpointDir, Option<u64>) {
    let metadata = CheckpointMetadata::new("q", "staging-test", 1, DataflowFingerprint::default());
    let (dir, resume) = CheckpointDir::open_or_create(path, &metadata).unwrap();
    let last = match resume {
        Resume::Fresh => None,
        Resume::FromEpoch { epoch, .. } => Some(epoch),
    };
    (dir, last)
}

/// Writes `offsets/<epoch>` and `commits/<epoch>`: the coordinator's commit point.
fn commit_checkpoint(dir: &CheckpointDir, epoch: u64) {
    let at = |e: u64| EventTime::from_millis(e * 1_000);
    dir.write_offsets(&EpochOffsets { epoch, start: at(epoch), end: at(epoch + 1), sources: BTreeMap::new() }).unwrap();
    dir.write_commit(&CommitRecord { epoch, committed_at: EventTime::now(), state_files: Vec::new() }).unwrap();
}

fn random_record(rng: &mut SmallRng) -> ProducerRecord {
    let bytes = |rng: &mut SmallRng, max: usize| -> Vec<u8> {
        let len = rng.random_range(0..max);
        (0..len).map(|_| rng.random()).collect()
    };
    ProducerRecord {
        topic: rng.random_bool(0.3).then(|| ["t", "ünïcode", "a.b-c_d"][rng.random_range(0..3)].to_string()),
        key: rng.random_bool(0.7).then(|| bytes(rng, 20)),
        value: rng.random_bool(0.9).then(|| bytes(rng, 300)),
        headers: (0..rng.random_range(0..3)).map(|i| (format!("h{i}"), bytes(rng, 10))).collect(),
        partition: rng.random_bool(0.3).then(|| rng.random_range(-3..i32::MAX)),
        timestamp: rng.random_bool(0.8).then(|| EventTime::from_millis(rng.random_range(0..u64::MAX))),
    }
}

/// Every field survives the staging encoding, including absent ones, negative partitions,
/// extreme timestamps and empty byte strings.
#[test]
fn staged_records_round_trip() {
    let mut rng = SmallRng::seed_from_u64(1);
    for round in 0..200 {
        let records: Vec<ProducerRecord> = (0..rng.random_range(0..20)).map(|_| random_record(&mut rng)).collect();
        let bytes = encode_records(&records);
        assert_eq!(decode_records(&bytes).unwrap(), records, "round {round}");
    }
    let edges = vec![
        ProducerRecord::default(),
        ProducerRecord::new(Vec::<u8>::new()).key(Vec::<u8>::new()).partition(i32::MIN),
        ProducerRecord::new("v").partition(i32::MAX).timestamp(EventTime::MAX).header("", Vec::<u8>::new()),
        ProducerRecord::new("v").partition(-1).timestamp(EventTime::MIN).topic(""),
    ];
    assert_eq!(decode_records(&encode_records(&edges)).unwrap(), edges);
    assert_eq!(decode_records(&encode_records(&[])).unwrap(), Vec::<ProducerRecord>::new());
}

/// Bytes cut anywhere, or followed by more, never decode: each gives a message saying what is
/// wrong (the checkpoint file's CRC catches damage first; this is the second line).
#[test]
fn damaged_encodings_are_refused_with_what_is_wrong() {
    let mut rng = SmallRng::seed_from_u64(2);
    let records: Vec<ProducerRecord> = (0..5).map(|_| random_record(&mut rng)).collect();
    let bytes = encode_records(&records);
    for cut in 0..bytes.len() {
        let error = decode_records(&bytes[..cut]).unwrap_err();
        assert!(error.contains("ends") || error.contains("announces") || error.contains("larger"), "{cut}: {error}");
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert_eq!(decode_records(&longer).unwrap_err(), "1 unexpected bytes follow the last record");
    let mut version = bytes.clone();
    version[0] = 9;
    assert!(decode_records(&version).unwrap_err().contains("encoding version 9"));
    assert!(decode_records(&[ENCODING_VERSION, 1, 0x80]).unwrap_err().contains("unknown flags"));
}

/// A staged file that is truncated, damaged, or checked but undecodable is an error naming the
/// file; an intact one reads back.
#[test]
fn damaged_staged_files_are_named() {
    let path = scratch("damaged");
    let (dir, _) = open(&path);
    let mut staging = Staging::new(dir.clone(), "kafka:out", 1);
    let records =
        vec![ProducerRecord::new("a").key("k"), ProducerRecord::new("b").timestamp(EventTime::from_millis(7))];
    staging.stage(3, records.clone()).unwrap();
    staging.stage(4, Vec::new()).unwrap();
    assert_eq!(dir.sink_data_epochs("kafka:out", 1).unwrap(), vec![3], "an empty epoch stages nothing");
    assert_eq!(staging.read_staged(3).unwrap(), records);

    let file = dir.sink_data_path("kafka:out", 1, 3);
    let bytes = std::fs::read(&file).unwrap();
    assert!(bytes.starts_with(format!("WEIR-CHECKPOINT v{FORMAT_VERSION} sink-data ").as_bytes()));
    std::fs::write(&file, &bytes[..bytes.len() - 2]).unwrap();
    let error = staging.read_staged(3).unwrap_err().to_string();
    assert!(error.contains(&file.display().to_string()) && error.contains("truncated"), "{error}");

    let mut flipped = bytes.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x40;
    std::fs::write(&file, &flipped).unwrap();
    let error = staging.read_staged(3).unwrap_err().to_string();
    assert!(error.contains(&file.display().to_string()) && error.contains("checksum"), "{error}");

    // Checked by CRC, but not staged records.
    dir.write_sink_data("kafka:out", 1, 5, b"\x01\x05garbage").unwrap();
    let error = staging.read_staged(5).unwrap_err().to_string();
    assert!(error.contains(&dir.sink_data_path("kafka:out", 1, 5).display().to_string()), "{error}");
    assert!(error.contains("content is invalid"), "{error}");
    std::fs::remove_dir_all(&path).unwrap();
}

#[test]
fn recovery_plan_follows_the_marker_and_the_last_commit() {
    let plan = |marker, last, staged: &[u64]| plan_recovery(marker, last, staged);
    // Crash between commits/5 and the transactions of 4 and 5: both are delivered now.
    assert_eq!(
        plan(Some(3), Some(5), &[4, 5, 6]).unwrap(),
        RecoveryPlan { replay: vec![4, 5], delivered: vec![], uncommitted: vec![6] }
    );
    // Crash after the transaction of 5, before its staged file was removed.
    assert_eq!(
        plan(Some(5), Some(5), &[5]).unwrap(),
        RecoveryPlan { replay: vec![], delivered: vec![5], uncommitted: vec![] }
    );
    // Never delivered anything; epochs 0..=2 committed (1 had no records on this worker).
    assert_eq!(
        plan(None, Some(2), &[0, 2, 3]).unwrap(),
        RecoveryPlan { replay: vec![0, 2], delivered: vec![], uncommitted: vec![3] }
    );
    // Fresh checkpoint: nothing committed, nothing delivered.
    assert_eq!(plan(None, None, &[0]).unwrap(), RecoveryPlan { uncommitted: vec![0], ..RecoveryPlan::default() });
    // The output is ahead of the checkpoint: refused, never silently skipped or repeated.
    let error = plan(Some(7), Some(5), &[]).unwrap_err();
    assert!(error.contains("delivered epoch 7") && error.contains("last committed epoch is epoch 5"), "{error}");
    assert!(plan(Some(0), None, &[]).unwrap_err().contains("is none"));
}

/// A model of one worker's Kafka output: committed transactions and the progress marker, with
/// crashes injected before or after a transaction's commit.
#[derive(Default)]
struct Model {
    transactions: Vec<Vec<(u64, Vec<ProducerRecord>)>>,
    marker: Option<u64>,
    crash: Option<Crash>,
    /// A broken sink without a marker (the control: it must write epochs twice).
    no_marker: bool,
}

#[derive(Clone, Copy, Debug)]
enum Crash {
    /// The process dies with the transaction open: `init_transactions` of the restart aborts it.
    BeforeCommit,
    /// The commit went through, then the process died (before the staged files were removed).
    AfterCommit,
}

impl EpochOutput for Model {
    fn marker(&mut self) -> Result<Option<u64>, String> {
        Ok(if self.no_marker { None } else { self.marker })
    }

    fn commit(&mut self, epochs: &[(u64, Vec<ProducerRecord>)]) -> Result<(), String> {
        match self.crash.take() {
            Some(Crash::BeforeCommit) => Err("killed with the transaction open".into()),
            crash => {
                self.transactions.push(epochs.to_vec());
                self.marker = Some(epochs.last().unwrap().0);
                match crash {
                    Some(_) => Err("killed after the commit".into()),
                    None => Ok(()),
                }
            }
        }
    }
}

/// One simulated query of `epochs` epochs on one worker, killed at random moments (after staging,
/// between the checkpoint's commit and the transaction, inside the transaction before or after
/// its commit, during recovery) and restarted until it completes. Recomputed epochs get new
/// random records (no deterministic replay). Answers the model and, per epoch, the records the
/// checkpoint committed.
fn simulate(seed: u64, no_marker: bool) -> (Model, BTreeMap<u64, Vec<ProducerRecord>>, usize) {
    let mut rng = SmallRng::seed_from_u64(seed);
    let path = scratch("simulation");
    let epochs = 12;
    let mut model = Model { no_marker, ..Model::default() };
    let mut truth = BTreeMap::new();
    let mut restarts = 0;
    loop {
        let (dir, last) = open(&path);
        let mut staging = Staging::new(dir.clone(), "kafka:out", 0);
        if rng.random_bool(0.15) {
            model.crash = Some(if rng.random_bool(0.5) { Crash::BeforeCommit } else { Crash::AfterCommit });
        }
        if staging.recover(&mut model, last).is_err() {
            restarts += 1;
            continue;
        }
        model.crash = None;
        let start = last.map_or(0, |l| l + 1);
        // Where this run dies: (epoch, phase), or never.
        let kill = rng.random_bool(0.9).then(|| (rng.random_range(start..epochs + 1), rng.random_range(0..4)));
        let mut killed = false;
        for epoch in start..epochs {
            let count = if rng.random_bool(0.3) { 0 } else { rng.random_range(1..5) };
            let records: Vec<ProducerRecord> = (0..count).map(|_| random_record(&mut rng)).collect();
            staging.stage(epoch, records.clone()).unwrap();
            if kill == Some((epoch, 0)) {
                killed = true;
                break;
            }
            commit_checkpoint(&dir, epoch);
            truth.insert(epoch, records);
            if kill == Some((epoch, 1)) {
                killed = true;
                break;
            }
            match kill {
                Some((e, 2)) if e == epoch => model.crash = Some(Crash::BeforeCommit),
                Some((e, 3)) if e == epoch => model.crash = Some(Crash::AfterCommit),
                _ => {}
            }
            // The sink sometimes lags: several committed epochs then go into one transaction.
            let forced = model.crash.is_some() || epoch + 1 == epochs;
            if (forced || rng.random_bool(0.6)) && staging.deliver(&mut model, Some(epoch)).is_err() {
                killed = true;
                break;
            }
            if rng.random_bool(0.5) {
                dir.cleanup(1).unwrap();
            }
        }
        model.crash = None;
        if !killed {
            assert!(!staging.waiting(), "seed {seed}: the last run ends with everything delivered");
            assert!(dir.sink_data_epochs("kafka:out", 0).unwrap().is_empty(), "seed {seed}: staged files left");
            break;
        }
        restarts += 1;
    }
    std::fs::remove_dir_all(&path).unwrap();
    (model, truth, restarts)
}

/// Over many seeds and crash points, every committed epoch's records are written by exactly one
/// committed transaction, equal to what the checkpoint committed, and the marker ends at the last
/// epoch with records. The same simulation with a sink that ignores its marker writes some epoch
/// twice: the check can fail.
#[test]
fn crashes_anywhere_neither_lose_nor_repeat_an_epoch() {
    let mut restarts = 0;
    for seed in 0..40 {
        let (model, truth, restarted) = simulate(seed, false);
        restarts += restarted;
        let mut written: BTreeMap<u64, Vec<ProducerRecord>> = BTreeMap::new();
        for transaction in &model.transactions {
            assert!(transaction.windows(2).all(|w| w[0].0 < w[1].0), "seed {seed}: epochs in order");
            for (epoch, records) in transaction {
                assert!(written.insert(*epoch, records.clone()).is_none(), "seed {seed}: epoch {epoch} written twice");
            }
        }
        let expected: BTreeMap<u64, Vec<ProducerRecord>> =
            truth.into_iter().filter(|(_, records)| !records.is_empty()).collect();
        assert_eq!(written, expected, "seed {seed}");
        assert_eq!(model.marker, expected.keys().last().copied(), "seed {seed}");
        let markers: Vec<u64> = model.transactions.iter().map(|t| t.last().unwrap().0).collect();
        assert!(markers.windows(2).all(|w| w[0] < w[1]), "seed {seed}: the marker only moves forward");
    }
    assert!(restarts >= 60, "only {restarts} restarts: the simulation must crash often");

    let twice = (0..40)
        .filter(|&seed| {
            let (model, _, _) = simulate(seed, true);
            let mut seen = std::collections::BTreeSet::new();
            model.transactions.iter().flatten().any(|(epoch, _)| !seen.insert(*epoch))
        })
        .count();
    assert!(twice > 5, "without its marker the sink should write some epoch twice (did in {twice} of 40 seeds)");
}
