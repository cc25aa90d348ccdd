//! Stage 2 of keyed processing, on the worker that owns each key: records wait for the watermark
//! to pass their event time, then keys are called in event-time order, interleaved with timers.
//!
//! Capabilities: the operator holds one capability, at or before everything it may still emit
//! at: the earliest waiting record, the earliest queued timer, and (while processing-time
//! timeouts are pending) the input frontier itself, where timeout outputs are stamped. Holding a
//! capability at the input frontier costs nothing downstream: the frontier there is no later.
//!
//! Checkpoints (`docs/checkpoints.md` §2): at each boundary `B` the operator acts as if its
//! frontier were `{B}` — every key's records before `B` and every event-time timer before `B`
//! (in the usual order) — emits that, then writes the state store (part `""`), the timers
//! (part `"timers"`) and the records still waiting that *arrived* before `B` (part `"pending"`:
//! records wait for their own event time, and a record stamped before `B` — so before its
//! source's cut, never read again — may have an event time at or after `B`). Records that
//! arrived at or after `B` are not snapshotted: the sources read them again after a restore.
//! Processing-time timeouts do not fire in that step: their outputs are
//! stamped at the frontier, which would put them at `B`, in the next epoch, while the
//! snapshot already holds their effect. For the same reason a boundary is snapshotted as soon
//! as the frontier *reaches* it (not only once it passes it): a timeout fired at frontier
//! `{B}` is stamped at `B`, so its effect must not be in epoch `B`'s snapshot. The capability
//! is re-created from the restored timers and records (see [`Restored`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::OutputBuilderSession;
use timely::dataflow::operators::{Capability, Operator};
use timely::dataflow::StreamVec;
use timely::progress::Antichain;
use timely::ExchangeData;
use weir_runtime::context::QueryContext;
use weir_runtime::error::QueryError;
use weir_runtime::event::Event;
use weir_runtime::metrics::OperatorMetrics;
use weir_runtime::state::{StateError, StateKey, StateStore, StateValue};
use weir_runtime::time::EventTime;

use super::handle::{Fired, KeyedState};
use super::timers::{TimerSnapshot, Timers};
use super::{Keyed, Records};
use crate::checkpointed::OperatorCheckpoint;
use crate::pending::watermark_of;

/// What a query resumed from a checkpoint gives this worker's instance, besides its state store
/// (restored into the store before it gets here): the timers, the records that were waiting,
/// and where the resumed query's times start. The instance holds a capability at `resume_at` if
/// any timeout was restored (timeout outputs are stamped at the frontier), else at its earliest
/// waiting record or event-time timer (never below `resume_at`), else none.
pub(super) struct Restored<K, D> {
    pub(super) timers: Vec<TimerSnapshot<K>>,
    pub(super) pending: Vec<Keyed<K, D>>,
    pub(super) resume_at: EventTime,
}

/// A record waiting for the watermark: (key hash, key, record, the time it arrived at).
type Waiting<K, D> = (u64, K, D, EventTime);

/// The output session of stage 2.
type Output<'a, O> = OutputBuilderSession<'a, EventTime, CapacityContainerBuilder<Vec<Event<O>>>>;

/// Builds stage 2: exchange by key hash, then [`Processor`] on every activation.
pub(super) fn process<'scope, K, D, S, O, F>(
    keyed: StreamVec<'scope, EventTime, Keyed<K, D>>,
    ctx: &QueryContext,
    name: &str,
    store: StateStore<K, S>,
    function: F,
    metrics: Arc<OperatorMetrics>,
    checkpoint: Option<(OperatorCheckpoint, Option<Restored<K, D>>)>,
) -> StreamVec<'scope, EventTime, Event<O>>
where
    K: StateKey + ExchangeData,
    D: ExchangeData + Ord,
    S: StateValue,
    O: Clone + 'static,
    F: FnMut(&K, Records<'_, D>, &mut KeyedState<S>, &mut Vec<O>) + 'static,
{
    let scope = keyed.scope();
    let ctx = ctx.clone();
    let name = name.to_string();
    let route = Exchange::new(|item: &Keyed<K, D>| item.1);
    let (mut checkpoint, restored) = match checkpoint {
        Some((checkpoint, restored)) => (Some(checkpoint), restored),
        None => (None, None),
    };
    keyed.unary_frontier::<CapacityContainerBuilder<Vec<Event<O>>>, _, _, _>(
        route,
        &name.clone(),
        move |initial, info| {
            let activator = scope.activator_for(info.address);
            let mut processor = Processor::new(name, ctx, store, function);
            let mut held: Option<Capability<EventTime>> = None;
            if let Some(Restored { timers, mut pending, resume_at }) = restored {
                processor.timers = Timers::restore(timers, Instant::now(), SystemTime::now());
                processor.stash(&mut pending, resume_at);
                let at = if processor.timers.any_timeout() {
                    Some(resume_at)
                } else {
                    [processor.timers.next_event_time(), processor.pending.keys().next().copied()]
                        .into_iter()
                        .flatten()
                        .min()
                        .map(|at| at.max(resume_at))
                };
                held = at.map(|at| initial.delayed(&at));
            }
            drop(initial);
            let mut wake_at: Option<Instant> = None;
            let mut reported = Reported::default();

            move |(input, frontier), output| {
                processor.now = Instant::now();
                input.for_each_time(|cap, data| {
                    if held.as_ref().is_none_or(|h| cap.time() < h.time()) {
                        held = Some(cap.retain(0));
                    }
                    for batch in data {
                        processor.stash(batch, *cap.time());
                    }
                });
                if processor.failed {
                    held = None;
                    processor.discard();
                    return;
                }

                let limit = watermark_of(frontier.frontier());
                if let Some(checkpoint) = checkpoint.as_mut() {
                    // Boundaries the frontier has reached (`{B}` at `B` counts: see the module docs):
                    // act as if the frontier stood exactly there, emit, snapshot every part.
                    let reached = match limit {
                        Some(at) => Antichain::from_elem(EventTime::from_millis(at.as_millis().saturating_add(1))),
                        None => Antichain::new(),
                    };
                    for (epoch, at) in checkpoint.passed_boundaries(reached.borrow()) {
                        match watermark_of(at.borrow()) {
                            Some(boundary) => processor.run_to_boundary(boundary),
                            None => processor.run(None, held.as_ref().map(|h| *h.time())),
                        }
                        if processor.failed {
                            break;
                        }
                        processor.emit(held.as_ref(), output, &metrics);
                        checkpoint.write_store("", epoch, &processor.store);
                        let timers = processor.timers.snapshot(processor.now, SystemTime::now());
                        checkpoint.write_bytes("timers", epoch, &timers);
                        let boundary = watermark_of(at.borrow()).unwrap_or(EventTime::MAX);
                        checkpoint.write_bytes("pending", epoch, &processor.arrived_before(boundary));
                    }
                }
                processor.run(limit, held.as_ref().map(|h| *h.time()));
                processor.emit(held.as_ref(), output, &metrics);

                // Hold a capability only at or before what may still be emitted.
                let next = [
                    processor.pending.keys().next().copied(),
                    processor.timers.next_event_time(),
                    if processor.timers.any_timeout() { limit } else { None },
                ]
                .into_iter()
                .flatten()
                .min();
                match (next, held.as_mut()) {
                    (Some(next), Some(cap)) => {
                        if next > *cap.time() {
                            cap.downgrade(&next);
                        }
                    }
                    _ => held = None,
                }

                // Wake up for the next processing-time deadline.
                if limit.is_some() {
                    if let Some(deadline) = processor.timers.next_deadline() {
                        if wake_at.is_none_or(|w| deadline < w || w <= processor.now) {
                            activator.activate_after(deadline.saturating_duration_since(Instant::now()));
                            wake_at = Some(deadline);
                        }
                    }
                }
                processor.report(&metrics, &mut reported);
            }
        },
    )
}

/// The state gauges this worker last added to the shared metrics.
#[derive(Default)]
struct Reported {
    rows: i64,
    bytes: i64,
}

/// Everything stage 2 keeps on one worker.
struct Processor<K: StateKey, D, S: StateValue, O, F> {
    name: String,
    ctx: QueryContext,
    function: F,
    store: StateStore<K, S>,
    timers: Timers<K>,
    /// Records waiting for the watermark, by event time.
    pending: BTreeMap<EventTime, Vec<Waiting<K, D>>>,
    pending_records: usize,
    /// The handle passed to every call.
    state: KeyedState<S>,
    call_records: Vec<D>,
    call_out: Vec<O>,
    /// Outputs of this activation, and their earliest event time.
    out: Vec<Event<O>>,
    out_min: Option<EventTime>,
    /// Processing time of this activation.
    now: Instant,
    /// The input frontier of this activation (`None` once the input has ended).
    watermark: Option<EventTime>,
    /// At the end of input: timeouts set by timeout calls are dropped (no data can follow).
    discard_timeouts: bool,
    updated: u64,
    removed: u64,
    failed: bool,
}

impl<K, D, S, O, F> Processor<K, D, S, O, F>
where
    K: StateKey,
    D: Ord,
    S: StateValue,
    F: FnMut(&K, Records<'_, D>, &mut KeyedState<S>, &mut Vec<O>),
{
    fn new(name: String, ctx: QueryContext, store: StateStore<K, S>, function: F) -> Self {
        Processor {
            name,
            ctx,
            function,
            store,
            timers: Timers::new(),
            pending: BTreeMap::new(),
            pending_records: 0,
            state: KeyedState::detached(EventTime::MIN),
            call_records: Vec::new(),
            call_out: Vec::new(),
            out: Vec::new(),
            out_min: None,
            now: Instant::now(),
            watermark: None,
            discard_timeouts: false,
            updated: 0,
            removed: 0,
            failed: false,
        }
    }

    /// Files a batch of records that arrived at time `arrived` under their event times.
    fn stash(&mut self, batch: &mut Vec<Keyed<K, D>>, arrived: EventTime) {
        self.pending_records += batch.len();
        let mut records = batch.drain(..).peekable();
        while let Some((time, hash, key, data)) = records.next() {
            let bucket = self.pending.entry(time).or_default();
            bucket.push((hash, key, data, arrived));
            // Runs of records with one event time (the common case) share one lookup.
            while let Some((_, hash, key, data)) = records.next_if(|next| next.0 == time) {
                bucket.push((hash, key, data, arrived));
            }
        }
    }

    /// The waiting records that arrived before `boundary`, for a checkpoint: they are before
    /// their sources' cuts, so no source reads them again.
    fn arrived_before(&self, boundary: EventTime) -> Vec<(EventTime, u64, &K, &D)> {
        let mut records = Vec::new();
        for (time, waiting) in &self.pending {
            records.extend(
                waiting.iter().filter(|w| w.3 < boundary).map(|(hash, key, data, _)| (*time, *hash, key, data)),
            );
        }
        records
    }

    /// Processes every event time the watermark `limit` has passed (all of them if `None`), and
    /// the timeouts that are due; `held` is the time of the capability held (for stamping
    /// timeouts at the end of input).
    fn run(&mut self, limit: Option<EventTime>, held: Option<EventTime>) {
        self.watermark = limit;
        loop {
            self.process_event_time(limit);
            if self.failed {
                return;
            }
            match limit {
                Some(watermark) => {
                    self.fire_timeouts(watermark, false);
                    return;
                }
                None => {
                    // The input has ended: every pending timeout fires now, then whatever timers
                    // those calls set.
                    if !self.timers.any_timeout() {
                        return;
                    }
                    let Some(at) = held else { return };
                    self.discard_timeouts = true;
                    self.fire_timeouts(at, true);
                }
            }
        }
    }

    /// Acts as if the frontier were `{boundary}` for a checkpoint: the records and event-time
    /// timers before it, but no processing-time timeout (its output would be stamped at
    /// `boundary`, after the snapshot's epoch).
    fn run_to_boundary(&mut self, boundary: EventTime) {
        self.watermark = Some(boundary);
        self.process_event_time(Some(boundary));
    }

    /// Emits this activation's outputs so far, at their earliest event time.
    fn emit(&mut self, held: Option<&Capability<EventTime>>, output: &mut Output<'_, O>, metrics: &OperatorMetrics)
    where
        O: Clone + 'static,
    {
        if let Some(stamp) = self.out_min.take() {
            // Every output's time is at or after the held capability (see the module docs).
            let cap = held.expect("a capability is held while anything can be emitted");
            OperatorMetrics::add(&metrics.rows_out, self.out.len() as u64);
            output.session(&cap.delayed(&stamp)).give_container(&mut self.out);
            self.out.clear();
        }
    }

    /// Records and event-time timers before `limit`, in time order: at each time, the records
    /// first (one call per key), then the timers (which may set timers at that same time).
    fn process_event_time(&mut self, limit: Option<EventTime>) {
        let ready = match limit {
            Some(limit) => {
                let later = self.pending.split_off(&limit);
                std::mem::replace(&mut self.pending, later)
            }
            None => std::mem::take(&mut self.pending),
        };
        let mut ready = ready.into_iter().peekable();
        loop {
            let next_record = ready.peek().map(|(time, _)| *time);
            let next_timer = self.timers.next_event_time().filter(|t| limit.is_none_or(|limit| *t < limit));
            let Some(time) = next_record.into_iter().chain(next_timer).min() else { break };
            if next_record == Some(time) {
                let (_, records) = ready.next().expect("peeked");
                self.pending_records -= records.len();
                self.process_records(time, records);
            }
            while self.timers.next_event_time() == Some(time) {
                for key in self.timers.take_events_at(time) {
                    if self.timers.event_fires(&key, time) {
                        self.call(&key, time, Some(Fired::Timer(time)));
                    }
                }
            }
            if self.failed {
                return;
            }
        }
    }

    /// Calls each key of `records` (all at event `time`) once, with its records sorted.
    fn process_records(&mut self, time: EventTime, mut records: Vec<Waiting<K, D>>) {
        records.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| a.2.cmp(&b.2)));
        let mut records = records.into_iter().peekable();
        while let Some((hash, key, data, _)) = records.next() {
            self.call_records.push(data);
            // Other keys with the same hash (rare): called after this one, each with its records.
            let mut colliding: Vec<(K, D)> = Vec::new();
            while let Some((_, other, data, _)) = records.next_if(|next| next.0 == hash) {
                if other == key {
                    self.call_records.push(data);
                } else {
                    colliding.push((other, data));
                }
            }
            self.call(&key, time, None);
            while let Some((first, _)) = colliding.first() {
                let first = first.clone();
                let (same, rest): (Vec<_>, Vec<_>) = colliding.into_iter().partition(|(k, _)| *k == first);
                self.call_records.extend(same.into_iter().map(|(_, d)| d));
                self.call(&first, time, None);
                colliding = rest;
            }
        }
    }

    /// Fires the timeouts that are due (all of them if `all`), stamping outputs at `at`.
    fn fire_timeouts(&mut self, at: EventTime, all: bool) {
        if !self.timers.any_timeout() {
            return;
        }
        for (queued, key) in self.timers.take_timeouts_due(self.now, all) {
            if self.timers.timeout_fires(&key, queued, self.now, all) {
                self.call(&key, at, Some(Fired::Timeout));
            }
        }
    }

    /// One call of the function for `key` at event `time`, with `self.call_records`.
    fn call(&mut self, key: &K, time: EventTime, fired: Option<Fired>) {
        if self.failed {
            self.call_records.clear();
            return;
        }
        let (timer, timeout) = if self.timers.any_key() { self.timers.of(key) } else { (None, None) };
        self.state.reset(time, self.watermark, fired, timer, timeout);
        let Processor { store, function, state, call_records, call_out, .. } = self;
        let outcome: Result<(bool, bool), StateError> = store.modify_if_changed(key, |slot| {
            let existed = slot.is_some();
            state.value = slot.take();
            function(key, call_records.drain(..), state, call_out);
            *slot = state.value.take();
            ((existed, slot.is_some()), state.changed)
        });
        self.call_records.clear();
        match outcome {
            Ok((existed, exists)) => {
                if self.state.changed {
                    if exists {
                        self.updated += 1;
                    } else if existed {
                        self.removed += 1;
                    }
                }
            }
            Err(error) => {
                self.ctx.fail(QueryError::State { operator: self.name.clone(), message: error.to_string() });
                self.failed = true;
                return;
            }
        }
        if !self.call_out.is_empty() {
            self.out_min = Some(self.out_min.map_or(time, |m| m.min(time)));
            self.out.extend(self.call_out.drain(..).map(|data| Event { time, data }));
        }
        if self.state.timer_changed {
            // A timer at or before the time being processed fires right after this call.
            self.timers.set_event(key, self.state.timer.map(|t| t.max(time)));
        }
        if self.state.timeout_changed {
            let timeout = self.state.timeout.filter(|_| !self.discard_timeouts);
            self.timers.set_timeout(key, timeout.map(|d| (d, self.now + d)));
        } else if fired.is_none() && self.timers.any_key() {
            self.timers.rearm_timeout(key, self.now);
        }
    }

    /// After a failure: drops everything (the query is stopping).
    fn discard(&mut self) {
        self.pending.clear();
        self.pending_records = 0;
        self.timers = Timers::new();
        self.out.clear();
        self.out_min = None;
    }

    /// Adds this activation's counts and the change in held state to the shared metrics.
    fn report(&mut self, metrics: &OperatorMetrics, reported: &mut Reported) {
        OperatorMetrics::add(&metrics.rows_updated, std::mem::take(&mut self.updated));
        OperatorMetrics::add(&metrics.rows_removed, std::mem::take(&mut self.removed));
        let rows = self.store.len() as i64;
        let idle = rows == 0 && self.pending.is_empty() && self.timers.is_empty();
        let bytes = if idle {
            0
        } else {
            let pending = self.pending_records * std::mem::size_of::<Waiting<K, D>>();
            (self.store.memory_bytes() + self.timers.memory_bytes() + pending as u64) as i64
        };
        metrics.adjust_state(rows - reported.rows, bytes - reported.bytes);
        reported.rows = rows;
        reported.bytes = bytes;
    }
}
