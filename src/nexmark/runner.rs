//! Running a Nexmark query to the end of a bounded, unthrottled generator and measuring it:
//! what `weir bench nexmark` and `cargo bench --bench nexmark` use.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use timely::dataflow::operators::Inspect;
use weir_runtime::prelude::*;

use super::{q0, q1, q2, q5, q7, NexmarkSource};

/// What to run.
#[derive(Clone, Debug, Serialize)]
pub struct NexmarkRun {
    /// The query's name, one of [`super::QUERIES`] (e.g. `q5`, `q15-hll`).
    pub query: String,
    /// Events generated in total.
    pub events: u64,
    /// Worker threads (the generator has one partition per worker).
    pub workers: usize,
    /// Events per second of event time.
    pub rate: u64,
    /// The generator's seed.
    pub seed: u64,
    /// Beam's out-of-order group size (1 = in order).
    pub out_of_order_group_size: u64,
}

/// What a run measured.
#[derive(Clone, Debug, Serialize)]
pub struct NexmarkReport {
    /// The settings.
    #[serde(flatten)]
    pub run: NexmarkRun,
    /// Wall-clock seconds from start to the end of the input.
    pub seconds: f64,
    /// Events per second, all workers.
    pub events_per_second: f64,
    /// Events per second per worker.
    pub events_per_second_per_worker: f64,
    /// Rows the query emitted.
    pub output_rows: u64,
    /// The process's peak resident memory (`VmHWM`), bytes, if known.
    pub peak_rss_bytes: Option<u64>,
}

/// The source a run reads.
pub fn source_for(run: &NexmarkRun) -> NexmarkSource {
    NexmarkSource::new()
        .events(run.events)
        .partitions(run.workers.max(1))
        .seed(run.seed)
        .rate(run.rate)
        .out_of_order_group_size(run.out_of_order_group_size)
}

/// Runs `run.query` over `run.events` generated events and counts its output rows.
pub fn run(run: NexmarkRun) -> Result<NexmarkReport, Box<dyn std::error::Error + Send + Sync>> {
    run_with_progress(run, Duration::from_secs(1), |_: &StreamingQueryProgress| {})
}

/// [`run`], pushing a progress report to `progress` every `interval` (events read so far are the
/// sum of the reports' `numInputRows`), e.g. for a progress bar.
pub fn run_with_progress(
    run: NexmarkRun,
    interval: Duration,
    progress: impl ProgressListener,
) -> Result<NexmarkReport, Box<dyn std::error::Error + Send + Sync>> {
    if !super::QUERIES.contains(&run.query.as_str()) {
        return Err(format!(
            "unknown or not yet implemented query {:?}; choose one of {:?}",
            run.query,
            super::QUERIES
        )
        .into());
    }
    let source = source_for(&run);
    source.validate()?;
    let output_rows = Arc::new(AtomicU64::new(0));
    let counter = output_rows.clone();
    let query_name = run.query.clone();
    let started = Instant::now();
    let handle = Query::new(format!("nexmark-{}", run.query))
        .workers(run.workers.max(1))
        .progress_interval(interval)
        .on_progress(progress)
        .start(move |scope, ctx| {
            let events = source.clone().stream(scope, ctx);
            let counter = counter.clone();
            macro_rules! count {
                () => {
                    move |_: &EventTime, batch: &Vec<_>| {
                        counter.fetch_add(batch.len() as u64, Ordering::Relaxed);
                    }
                };
            }
            match query_name.as_str() {
                "q0" => {
                    q0::q0(events).records.inspect_batch(count!());
                }
                "q1" => {
                    q1::q1(events).records.inspect_batch(count!());
                }
                "q2" => {
                    q2::q2(events).records.inspect_batch(count!());
                }
                "q5" => {
                    q5::q5(ctx, events)?.records.inspect_batch(count!());
                }
                "q11" => {
                    super::q11::q11(ctx, events)?.records.inspect_batch(count!());
                }
                "q3" => {
                    super::q3::q3(ctx, events)?.records.inspect_batch(count!());
                }
                "q8" => {
                    super::q8::q8(ctx, events)?.records.inspect_batch(count!());
                }
                "q4" => {
                    let lifetime = super::q4::max_auction_lifetime(&source);
                    super::q4::q4(ctx, events, lifetime)?.records.inspect_batch(count!());
                }
                "q7" => {
                    q7::q7(ctx, events)?.records.inspect_batch(count!());
                }
                "q15" => {
                    super::q15::q15(ctx, events)?.records.inspect_batch(count!());
                }
                "q15-hll" => {
                    super::q15::q15_hll(ctx, events)?.records.inspect_batch(count!());
                }
                "q16" => {
                    super::q16::q16(ctx, events)?.records.inspect_batch(count!());
                }
                "q16-hll" => {
                    super::q16::q16_hll(ctx, events)?.records.inspect_batch(count!());
                }
                "q18" => {
                    super::q18::q18(ctx, events)?.records.inspect_batch(count!());
                }
                "q12" => {
                    super::q12::q12(ctx, events)?.records.inspect_batch(count!());
                }
                other => unreachable!("query {other} was checked"),
            }
            Ok(())
        })?;
    handle.await_termination(None)?;
    let seconds = started.elapsed().max(Duration::from_nanos(1)).as_secs_f64();
    let events_per_second = run.events as f64 / seconds;
    Ok(NexmarkReport {
        events_per_second,
        events_per_second_per_worker: events_per_second / run.workers.max(1) as f64,
        seconds,
        output_rows: output_rows.load(Ordering::Relaxed),
        peak_rss_bytes: peak_rss_bytes(),
        run,
    })
}

/// The process's peak resident set size (`VmHWM` in `/proc/self/status`), bytes; `None` off Linux.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

impl NexmarkReport {
    /// One human-readable line.
    pub fn line(&self) -> String {
        format!(
            "nexmark {} events={} workers={} rate={}/s seed={} out_of_order_group_size={}: {:.3} s, {:.2} M events/s total, {:.2} M events/s per worker, output_rows={}, peak_rss={}",
            self.run.query,
            self.run.events,
            self.run.workers,
            self.run.rate,
            self.run.seed,
            self.run.out_of_order_group_size,
            self.seconds,
            self.events_per_second / 1e6,
            self.events_per_second_per_worker / 1e6,
            self.output_rows,
            self.peak_rss_bytes.map_or("unknown".to_string(), |b| format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0)))
        )
    }
}
