//! A restart against a damaged checkpoint fails before processing, naming the file and what is
//! wrong with it: never a panic, never a silent fresh start (which would write everything again).
//!
//! Each case runs `weir run window-count --checkpoint DIR --sink files` to its end once, damages
//! one file of the last committed epoch (truncates it, flips a byte, empties it, or removes it),
//! and runs the same command again.

use std::path::{Path, PathBuf};

mod support;
use support::{check, weir};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("weir-checkpoint-damaged-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// JSON lines with keys and times, as a file.
fn input(dir: &Path) -> PathBuf {
    let path = dir.join("events.jsonl");
    let lines: Vec<String> =
        (0..500).map(|i| format!("{{\"key\":\"k{}\",\"ts\":{}}}", i % 7, 1_700_000_000_000u64 + i * 97)).collect();
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

fn run(dir: &Path) -> std::process::Output {
    let input = input(dir);
    weir([
        "run",
        "window-count",
        "--input",
        input.to_str().unwrap(),
        "--window",
        "10s",
        "-w",
        "2",
        "--checkpoint",
        dir.join("checkpoint").to_str().unwrap(),
        "--sink",
        "files",
        "--output-dir",
        dir.join("out").to_str().unwrap(),
    ])
}

/// The newest file under `dir` (recursively) in its subdirectory `part` (or named `part`).
fn newest_file(dir: &Path, part: &str) -> PathBuf {
    let mut found: Vec<(PathBuf, std::time::SystemTime)> = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(next) = stack.pop() {
        for entry in std::fs::read_dir(&next).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.strip_prefix(dir).is_ok_and(|relative| relative.starts_with(part)) {
                let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
                found.push((path, modified));
            }
        }
    }
    found.sort_by_key(|(path, modified)| (*modified, path.clone()));
    found.pop().unwrap_or_else(|| panic!("no file with {part} under {}", dir.display())).0
}

/// The cases: which file, how it is damaged, and what the error must say.
#[test]
fn a_restart_on_a_damaged_checkpoint_fails_naming_the_file() {
    type Damage = fn(&Path);
    let truncate: Damage = |path| {
        let bytes = std::fs::read(path).unwrap();
        std::fs::write(path, &bytes[..bytes.len() / 2]).unwrap();
    };
    let flip: Damage = |path| {
        let mut bytes = std::fs::read(path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x5a;
        std::fs::write(path, bytes).unwrap();
    };
    let empty: Damage = |path| std::fs::write(path, b"").unwrap();
    let remove: Damage = |path| std::fs::remove_file(path).unwrap();
    let cases: [(&str, &str, Damage); 6] = [
        ("commit-truncated", "commits", truncate),
        ("commit-flipped", "commits", flip),
        ("offsets-empty", "offsets", empty),
        ("offsets-removed", "offsets", remove),
        ("state-flipped", "state", flip),
        ("metadata-truncated", "metadata", truncate),
    ];
    for (name, part, damage) in cases {
        let dir = scratch(name);
        check(&run(&dir));
        let victim = newest_file(&dir.join("checkpoint"), part);
        damage(&victim);
        let again = run(&dir);
        let stderr = String::from_utf8_lossy(&again.stderr);
        assert!(!again.status.success(), "{name}: the restart on a damaged checkpoint succeeded:\n{stderr}");
        assert!(!stderr.contains("panicked"), "{name}: the restart panicked instead of failing clearly:\n{stderr}");
        let file_name = victim.file_name().unwrap().to_string_lossy().to_string();
        assert!(
            stderr.contains(&file_name) || stderr.contains(&victim.parent().unwrap().display().to_string()),
            "{name}: the error does not name {}:\n{stderr}",
            victim.display()
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
