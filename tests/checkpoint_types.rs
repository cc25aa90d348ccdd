//! A checkpoint records the key and state types of every stateful operator: restarting with a
//! changed key type (here a window count keyed by `u64`, then by `String`) or a changed state type
//! (a count, then a sum) is refused before anything runs, naming the operator and both types —
//! instead of decoding the old bytes as something else.

use std::time::Duration;

use weir_operators::prelude::*;
use weir_runtime::prelude::*;

mod support;
use support::{memory_events, run_to_end, tempdir};

#[derive(Clone, Debug)]
struct Rec {
    key: u64,
    ts: u64,
}

fn source() -> MemorySource<Rec> {
    let records: Vec<Rec> = (0..300).map(|i| Rec { key: i % 5, ts: 1_700_000_000_000 + i * 100 }).collect();
    MemorySource::new(vec![records])
}

/// Which variant of the dataflow to build.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Variant {
    CountByNumber,
    CountByString,
    SumByNumber,
}

fn start(dir: &std::path::Path, variant: Variant) -> Result<QueryHandle, BuildError> {
    let source = source();
    let windowing = Windowing::tumbling(Duration::from_secs(10));
    Query::new("types").checkpoint(dir, Duration::from_millis(10)).start(move |scope, ctx| {
        let events = memory_events(scope, ctx, &source, |r: &Rec| r.ts, 1_000, 50);
        match variant {
            Variant::CountByNumber => {
                events.window_aggregate(ctx, "count", windowing, OutputMode::Append, |r: &Rec| r.key, Count)?;
            }
            Variant::CountByString => {
                events.window_aggregate(
                    ctx,
                    "count",
                    windowing,
                    OutputMode::Append,
                    |r: &Rec| r.key.to_string(),
                    Count,
                )?;
            }
            Variant::SumByNumber => {
                events.window_aggregate(
                    ctx,
                    "count",
                    windowing,
                    OutputMode::Append,
                    |r: &Rec| r.key,
                    Sum(|r: &Rec| r.ts as i64),
                )?;
            }
        }
        Ok(())
    })
}

/// The build error of `variant`, which must not start.
fn refusal(dir: &std::path::Path, variant: Variant) -> String {
    match start(dir, variant) {
        Ok(_) => panic!("{variant:?} on the checkpoint of another type must be refused"),
        Err(error) => error.to_string(),
    }
}

#[test]
fn changed_key_or_state_types_are_refused_naming_both() {
    let dir = tempdir("checkpoint-types").join("checkpoint");
    let _ = std::fs::remove_dir_all(&dir);
    run_to_end(start(&dir, Variant::CountByNumber), "first run", 60);

    let error = refusal(&dir, Variant::CountByString);
    assert!(
        error.contains("`count`'s key type changed from `u64` to `alloc::string::String`"),
        "the error names the operator and both key types: {error}"
    );
    assert!(error.contains("--reset-checkpoint"), "{error}");

    let error = refusal(&dir, Variant::SumByNumber);
    assert!(error.contains("`count`'s state type changed from `u64`"), "{error}");

    // The unchanged dataflow resumes.
    run_to_end(start(&dir, Variant::CountByNumber), "unchanged restart", 60);
}
