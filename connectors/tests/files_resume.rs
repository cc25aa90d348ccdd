//! Resuming the JSON-lines file source at a checkpointed position (`Source::open_at`).

mod common;

use std::path::{Path, PathBuf};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use weir_connectors::files::JsonLinesSource;
use weir_runtime::source::{PartitionReader, ReadStatus, Source};

use common::temp_dir;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// Reads the rest of a partition in batches of `batch` records.
fn read_rest<R: PartitionReader>(reader: &mut R, batch: usize) -> Vec<R::Record> {
    let mut out = Vec::new();
    while reader.read(&mut out, batch).unwrap() != ReadStatus::Finished {}
    out
}

/// A random JSON-lines text: records, blank and whitespace-only lines, `\r\n` endings, and a
/// last line with or without a newline.
fn random_text(rng: &mut SmallRng, records: usize) -> String {
    let mut text = String::new();
    for i in 0..records {
        for _ in 0..rng.random_range(0..3u32).saturating_sub(1) {
            text.push_str(if rng.random_bool(0.5) { "\n" } else { "   \r\n" });
        }
        text.push_str(&json!({ "id": i, "pad": "x".repeat(rng.random_range(0..40)) }).to_string());
        let last = i + 1 == records;
        if !last || rng.random_bool(0.5) {
            text.push_str(if rng.random_bool(0.2) { "\r\n" } else { "\n" });
        }
    }
    text
}

/// For random files and random cut points: read `cut` records in random batches, take the
/// position, resume a fresh source there; the rest equals what the uninterrupted read gave.
#[test]
fn resuming_at_a_position_reads_the_rest_of_the_file() {
    let dir = temp_dir("files-resume");
    for seed in 0..30u64 {
        let mut rng = SmallRng::seed_from_u64(seed);
        let records = rng.random_range(1..200);
        let path = write(&dir, &format!("in-{seed}.jsonl"), &random_text(&mut rng, records));
        let other = write(&dir, &format!("other-{seed}.jsonl"), "{\"id\": -1}\n");
        let source = JsonLinesSource::<Value>::files(vec![other, path]);
        let all = read_rest(&mut source.open(1).unwrap(), 1000);
        assert_eq!(all.len(), records);
        for _ in 0..8 {
            let cut = rng.random_range(0..=records);
            let mut reader = source.open(1).unwrap();
            let mut head = Vec::new();
            while head.len() < cut {
                let max = rng.random_range(1..=cut - head.len());
                reader.read(&mut head, max).unwrap();
            }
            let position = reader.position();
            let resumed_source = source.clone();
            let mut resumed = resumed_source.open_at(1, &position).unwrap();
            assert_eq!(resumed.position(), position, "a resumed reader reports where it stands");
            let rest = read_rest(&mut resumed, rng.random_range(1..50));
            assert_eq!(head[..], all[..cut], "seed {seed}");
            assert_eq!(rest[..], all[cut..], "seed {seed}: resumed at {position} after {cut} records");
        }
    }
}

#[test]
fn a_shorter_file_another_file_and_stdin_are_refused() {
    let dir = temp_dir("files-resume-errors");
    let path = write(&dir, "a.jsonl", "{\"id\": 1}\n{\"id\": 2}\n\n{\"id\": 3}\n");
    let source = JsonLinesSource::<Value>::files(vec![path.clone()]);
    let mut reader = source.open(0).unwrap();
    let mut out = Vec::new();
    reader.read(&mut out, 3).unwrap();
    let position = reader.position();
    assert_eq!(position, json!({ "file": path.display().to_string(), "line": 4 }));

    // The same file, rewritten shorter.
    std::fs::write(&path, "{\"id\": 1}\n{\"id\": 2}\n").unwrap();
    let error = source.open_at(0, &position).expect_err("a shorter file is refused").to_string();
    for needle in [path.display().to_string().as_str(), "line 4", "only 2 lines", "became shorter"] {
        assert!(error.contains(needle), "the error should mention {needle:?}: {error}");
    }
    // Exactly as long as the position: resumes at its end.
    std::fs::write(&path, "{\"id\": 1}\n{\"id\": 2}\n\n{\"id\": 3}").unwrap();
    let mut at_end = source.open_at(0, &position).unwrap();
    assert!(read_rest(&mut at_end, 10).is_empty());

    let elsewhere = json!({ "file": "/somewhere/else.jsonl", "line": 1 });
    let error = source.open_at(0, &elsewhere).expect_err("another file's position is refused").to_string();
    assert!(error.contains("belongs to /somewhere/else.jsonl"), "{error}");
    let error = source.open_at(0, &json!(4)).expect_err("a number is not a file position").to_string();
    assert!(error.contains("\"line\""), "{error}");

    let stdin = JsonLinesSource::<Value>::stdin();
    let error =
        stdin.open_at(0, &json!({ "file": "<stdin>", "line": 3 })).expect_err("stdin cannot be re-read").to_string();
    assert!(error.contains("standard input cannot be read again"), "{error}");
}
