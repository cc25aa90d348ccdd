//! The RocksDB backend keeps keyed state larger than memory.
//!
//! 1.5 million keys, each with a ~100-byte value (about 160 MB of state as encoded), go through
//! `process_with_state` on RocksDB with a 4 MiB block cache and two 4 MiB write buffers; then
//! 300,000 of the keys are visited again, so their values are read back from disk and checked.
//! The process's resident memory (from `/proc/self/statm`, sampled during the run) must grow by
//! less than [`RSS_GROWTH_BOUND`], well below the state size: if the state were kept in memory the
//! bound would be broken several times over.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use weir::prelude::*;
use weir_runtime::state::RocksDbOptions;

/// Distinct keys written.
const KEYS: u64 = 1_500_000;
/// Keys visited a second time (read back from RocksDB and checked).
const REVISITS: u64 = 300_000;
/// Bytes of payload per key.
const VALUE_BYTES: usize = 100;
/// How much the process may grow while holding the state: block cache (4 MiB) + memtables
/// (2 x 4 MiB) + RocksDB's table readers and compaction buffers + allocator slack + records in
/// flight. The state itself is ~160 MB.
const RSS_GROWTH_BOUND: u64 = 64 << 20;

/// One key's state: how often it was seen, and a payload derived from the key (so a read-back
/// can be checked).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    visits: u32,
    payload: Vec<u8>,
}

fn payload(key: u64) -> Vec<u8> {
    let bytes = key.to_le_bytes();
    (0..VALUE_BYTES).map(|i| bytes[i % 8].wrapping_add(i as u8)).collect()
}

/// Resident set size of this process in bytes (`/proc/self/statm`, second field, in 4 KiB pages).
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm is readable on Linux");
    let resident: u64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).expect("statm's resident field");
    resident * 4096
}

#[test]
fn rocksdb_keyed_state_holds_far_more_than_its_memory_budget() {
    let dir = std::env::temp_dir().join(format!("weir-larger-than-memory-{}", std::process::id()));
    let backend = StateBackend::RocksDb(
        RocksDbOptions::new(&dir)
            .with_block_cache_bytes(4 << 20)
            .with_write_buffer_bytes(4 << 20)
            .with_max_write_buffers(2),
    );
    let rows = KEYS + REVISITS;
    let revisited = Arc::new(AtomicU64::new(0));
    let corrupt = Arc::new(AtomicU64::new(0));

    // Sample the resident size while the query runs.
    let baseline = rss_bytes();
    let running = Arc::new(AtomicBool::new(true));
    let peak = Arc::new(AtomicU64::new(baseline));
    let sampler = {
        let (running, peak) = (running.clone(), peak.clone());
        std::thread::spawn(move || {
            while running.load(Ordering::Relaxed) {
                peak.fetch_max(rss_bytes(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };

    let started = Instant::now();
    let (seen_again, bad) = (revisited.clone(), corrupt.clone());
    let handle = Query::new("larger-than-memory")
        .state_backend(backend)
        .start(move |scope, ctx| {
            let events = RateSource::new(1_000_000)
                .unthrottled()
                .row_limit(rows)
                .start_time(EventTime::from_millis(1_700_000_000_000))
                .events(scope, ctx, WatermarkOptions::with_delay(Duration::ZERO));
            // Rows 0..KEYS write every key once; the next REVISITS rows revisit every fifth key.
            let key_of = |row: &RateRow| if row.value < KEYS { row.value } else { (row.value - KEYS) * 5 % KEYS };
            let (seen_again, bad) = (seen_again.clone(), bad.clone());
            events.key_by(key_of).process_with_state(
                ctx,
                "keyed",
                move |key: &u64, records, state: &mut KeyedState<Entry>, _out: &mut Vec<()>| {
                    let visits = records.len() as u32;
                    match state.get_mut() {
                        Some(entry) => {
                            if entry.payload != payload(*key) {
                                bad.fetch_add(1, Ordering::Relaxed);
                            }
                            seen_again.fetch_add(1, Ordering::Relaxed);
                            entry.visits += visits;
                        }
                        None => state.update(Entry { visits, payload: payload(*key) }),
                    }
                },
            )?;
            Ok(())
        })
        .expect("the dataflow builds");
    let finished = handle.await_termination(Some(Duration::from_secs(300)));
    running.store(false, Ordering::Relaxed);
    sampler.join().unwrap();
    assert!(finished.expect("the query runs"), "the query finished within 300 s");
    let elapsed = started.elapsed();

    let metrics = handle.context().metrics().operator("keyed");
    let keys_held = metrics.rows_total.load(Ordering::SeqCst);
    let state_memory = metrics.memory_bytes.load(Ordering::SeqCst);
    let growth = peak.load(Ordering::SeqCst).saturating_sub(baseline);
    let state_bytes = KEYS * (VALUE_BYTES as u64 + 8 + 4 + 8);
    println!(
        "{KEYS} keys x {VALUE_BYTES} B (~{} MB of state) in {:.1} s; RSS grew by {:.1} MiB (bound {} MiB); \
         memoryUsedBytes {:.1} MiB",
        state_bytes / 1_000_000,
        elapsed.as_secs_f64(),
        growth as f64 / (1 << 20) as f64,
        RSS_GROWTH_BOUND >> 20,
        state_memory as f64 / (1 << 20) as f64,
    );
    drop(handle);
    let _ = std::fs::remove_dir_all(&dir);

    assert_eq!(keys_held, KEYS as i64, "every key holds state at the end");
    assert_eq!(revisited.load(Ordering::SeqCst), REVISITS, "every revisit found its key's state");
    assert_eq!(corrupt.load(Ordering::SeqCst), 0, "every value read back equals what was written");
    assert!(
        state_bytes > 2 * RSS_GROWTH_BOUND,
        "the state must be far larger than the bound for the test to mean anything"
    );
    assert!(
        growth < RSS_GROWTH_BOUND,
        "the process grew by {growth} bytes holding {KEYS} keys in RocksDB; bound {RSS_GROWTH_BOUND}"
    );
    assert!(
        (state_memory as u64) < RSS_GROWTH_BOUND,
        "the operator reports {state_memory} bytes of state in memory, more than the bound"
    );
}
