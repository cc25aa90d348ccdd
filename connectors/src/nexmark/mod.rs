//! The Nexmark source: the benchmark's persons, auctions and bids (1 : 3 : 46), generated
//! deterministically from a seed, bounded by an event count, split over partitions.
//!
//! Partition `p` of `P` generates the events `p, p+P, p+2P, …` of the generation order, and every
//! event is a pure function of its number and the seed (see [`generator`]), so the events of a
//! run do not depend on the number of partitions or workers. Unthrottled (the default) it
//! generates as fast as the query takes events; event times still advance at
//! `events_per_second` of event time.
//!
//! ```no_run
//! use std::time::Duration;
//! use weir_connectors::nexmark::NexmarkSource;
//! use weir_runtime::prelude::*;
//!
//! let source = NexmarkSource::new().events(1_000_000).partitions(2).seed(7);
//! let handle = Query::new("nexmark").workers(2).start(move |scope, ctx| {
//!     let events = source.clone().stream(scope, ctx);
//!     let _bids = events.flat_map(|e| e.into_bid());
//!     Ok(())
//! })?;
//! handle.await_termination(None)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod generator;
pub mod model;

use std::time::{Duration, Instant};

use timely::dataflow::Scope;
use weir_runtime::context::QueryContext;
use weir_runtime::error::{BuildError, QueryError};
use weir_runtime::event::EventStream;
use weir_runtime::source::{event_source, PartitionReader, ReadStatus, Source};
use weir_runtime::time::EventTime;
use weir_runtime::watermark::WatermarkOptions;

pub use generator::{Generator, GeneratorConfig};
pub use model::{Auction, Bid, Event, Person};

/// A bounded (or unbounded) Nexmark event source. Build with [`NexmarkSource::new`] and the setters.
#[derive(Clone, Debug)]
pub struct NexmarkSource {
    config: GeneratorConfig,
    events: Option<u64>,
    partitions: usize,
    throttled: bool,
}

impl Default for NexmarkSource {
    fn default() -> Self {
        Self::new()
    }
}

/// The event time of event 0 unless set: 2023-11-14T22:13:20Z (fixed, so runs are reproducible).
pub const DEFAULT_BASE_TIME_MS: u64 = 1_700_000_000_000;

impl NexmarkSource {
    /// Unbounded, unthrottled, one partition, seed 0, 10,000 events per second of event time
    /// (Beam's default first-event rate), in order, no `extra` padding.
    pub fn new() -> Self {
        NexmarkSource {
            config: GeneratorConfig {
                seed: 0,
                base_time_ms: DEFAULT_BASE_TIME_MS,
                events_per_second: 10_000,
                out_of_order_group_size: 1,
                extra_bytes: 0,
            },
            events: None,
            partitions: 1,
            throttled: false,
        }
    }
    /// Stops after `n` events in total.
    pub fn events(mut self, n: u64) -> Self {
        self.events = Some(n);
        self
    }
    /// Splits the events over `n` partitions (they are spread over the workers).
    pub fn partitions(mut self, n: usize) -> Self {
        self.partitions = n;
        self
    }
    /// The seed of the generated values.
    pub fn seed(mut self, seed: u64) -> Self {
        self.config.seed = seed;
        self
    }
    /// Events per second of event time (event `n` is at `base + n·1000/rate` ms).
    pub fn rate(mut self, events_per_second: u64) -> Self {
        self.config.events_per_second = events_per_second;
        self
    }
    /// The event time of event number 0.
    pub fn base_time(mut self, time: EventTime) -> Self {
        self.config.base_time_ms = time.as_millis();
        self
    }
    /// Permutes events within groups of `size` (Beam's `outOfOrderGroupSize`; 1 = in order).
    pub fn out_of_order_group_size(mut self, size: u64) -> Self {
        self.config.out_of_order_group_size = size;
        self
    }
    /// Pads every event's `extra` field with `bytes` random letters (default 0).
    pub fn extra_bytes(mut self, bytes: usize) -> Self {
        self.config.extra_bytes = bytes;
        self
    }
    /// Releases events only when due by wall-clock time at `rate` events per second (default: unthrottled).
    pub fn throttled(mut self, throttled: bool) -> Self {
        self.throttled = throttled;
        self
    }

    /// The generator of these settings (for batch computations and tests).
    pub fn generator(&self) -> Generator {
        Generator::new(self.config.clone())
    }

    /// The watermark delay that makes no event late: the event time spanned by one out-of-order group.
    pub fn watermark_delay(&self) -> Duration {
        let g = self.config.out_of_order_group_size.max(1);
        let rate = self.config.events_per_second.max(1);
        Duration::from_millis((g * 1000).div_ceil(rate))
    }

    /// Checks the settings; the same checks make [`Source::open`] fail.
    pub fn validate(&self) -> Result<(), BuildError> {
        if self.partitions == 0 {
            return Err(BuildError::invalid(
                "nexmark partitions",
                "0 partitions cannot produce events",
                "use at least 1",
            ));
        }
        if self.config.events_per_second == 0 {
            return Err(BuildError::invalid("nexmark rate", "0 events per second", "use a rate of at least 1"));
        }
        let g = self.config.out_of_order_group_size;
        if g == 0 || g.is_multiple_of(953) {
            return Err(BuildError::invalid(
                "nexmark out-of-order group size",
                format!("{g} does not give a permutation (it must be positive and not a multiple of 953)"),
                "use 1 for in-order events, or e.g. 100",
            ));
        }
        Ok(())
    }

    /// Runs this source through [`event_source`], with each event's `date_time` as its event time
    /// and a watermark delay of [`NexmarkSource::watermark_delay`], so no event is late.
    pub fn stream<'scope>(self, scope: Scope<'scope, EventTime>, ctx: &QueryContext) -> EventStream<'scope, Event> {
        let options = WatermarkOptions::with_delay(self.watermark_delay());
        event_source(scope, ctx, self, |e: &Event| Some(EventTime::from_millis(e.date_time())), options)
    }
}

impl Source for NexmarkSource {
    type Record = Event;
    type Reader = NexmarkReader;

    fn description(&self) -> String {
        let mut text = format!(
            "NexmarkSource[seed={}, rate={}/s, partitions={}, outOfOrderGroupSize={}",
            self.config.seed, self.config.events_per_second, self.partitions, self.config.out_of_order_group_size
        );
        if let Some(n) = self.events {
            text.push_str(&format!(", events={n}"));
        }
        text.push(']');
        text
    }

    fn partitions(&self) -> usize {
        self.partitions.max(1)
    }

    fn open(&self, partition: usize) -> Result<NexmarkReader, QueryError> {
        self.validate()
            .map_err(|error| QueryError::Source { source_name: self.description(), message: error.to_string() })?;
        Ok(NexmarkReader {
            generator: self.generator(),
            next: partition as u64,
            step: self.partitions as u64,
            limit: self.events.unwrap_or(u64::MAX),
            opened: self.throttled.then(Instant::now),
        })
    }
}

/// Reads one partition of a [`NexmarkSource`].
#[derive(Debug)]
pub struct NexmarkReader {
    generator: Generator,
    next: u64,
    step: u64,
    limit: u64,
    opened: Option<Instant>,
}

impl NexmarkReader {
    /// Events of this partition still to produce.
    fn remaining(&self) -> u64 {
        if self.next >= self.limit {
            0
        } else {
            (self.limit - self.next - 1) / self.step + 1
        }
    }
}

impl PartitionReader for NexmarkReader {
    type Record = Event;

    fn read(&mut self, out: &mut Vec<Event>, max: usize) -> Result<ReadStatus, QueryError> {
        let mut count = self.remaining().min(max as u64);
        if let Some(opened) = self.opened {
            // Events due by now: those whose (in-order) time offset has passed.
            let elapsed_ms = opened.elapsed().as_millis() as u64;
            let rate = self.generator.config().events_per_second.max(1);
            let due = (elapsed_ms.saturating_mul(rate) / 1000).saturating_add(1).min(self.limit);
            let due_here = if due > self.next { (due - self.next - 1) / self.step + 1 } else { 0 };
            if due_here == 0 && self.next < self.limit {
                return Ok(ReadStatus::Wait(Duration::from_millis(1)));
            }
            count = count.min(due_here);
        }
        out.reserve(count as usize);
        for _ in 0..count {
            out.push(self.generator.event(self.next));
            self.next += self.step;
        }
        Ok(if self.next >= self.limit { ReadStatus::Finished } else { ReadStatus::Ready })
    }

    fn position(&self) -> serde_json::Value {
        serde_json::Value::from(self.next)
    }
}
