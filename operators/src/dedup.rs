//! Deduplication within an event-time bound: the `dedup` operator (like Spark's
//! `dropDuplicatesWithinWatermark`) and its unbounded opt-in `dedup_unbounded`, as an extension
//! trait on [`EventStream`].
//!
//! **What passes.** Records are buffered until the frontier passes their event time, then taken
//! per key in event-time order. A record at `t` is a duplicate iff an earlier *passed* record of
//! the same key, at `f`, has `t < f + within`; otherwise it passes and its key's `f` becomes `t`.
//! So the first record of a key passes, duplicates within `within` of it are dropped, and the
//! first record at or after `f + within` passes and starts a new bound. Records of one key with
//! the same event time are tied: the smallest by `D`'s [`Ord`] passes. Both rules depend only
//! on the records themselves, so the output does not depend on worker count, batch boundaries
//! or arrival order.
//!
//! **Eviction.** A key's state is evicted when the frontier reaches `f + within`: every record
//! not yet taken (buffered, or still to come) has `t >=` the frontier `>= f + within`, so it is
//! not a duplicate whether or not `f` is still held, and dropping `f` cannot change the result.
//! [`Dedup::dedup_unbounded`] never evicts (every later record of a key is a duplicate) and so
//! needs memory for every key ever seen; it is an explicit opt-in and logs a warning.
//!
//! **Output.** Passed records come out unchanged as an [`EventStream`] whose batches are
//! stamped no later than their records' event times, so they stay on time for a window
//! downstream. Records late at their source, or behind this operator's watermark, are never
//! deduplicated silently: they are counted in `late_rows` and appear on the result's `late`
//! stream, naming this operator. Dropped duplicates are counted in `duplicates_dropped`, and
//! `rows_total` is the number of keys held.
//!
//! **Checkpoints** (docs/checkpoints.md §2): input waits by timely time until the frontier passes
//! it. At each boundary `B` the frontier passes, stage 2 applies the input of times before `B`,
//! decides the records with event times before `B` (their output is before `B`), evicts the keys
//! `B` is `within` past, and snapshots two parts: the store of each key's last passed time
//! (`write_store`: bytes for memory, a hard-linked RocksDB checkpoint for RocksDB) and `buffer`:
//! the records still undecided (read before `B`, event time `>= B`) and the expiry index. Input
//! at times `>= B` is not in the snapshot: the sources read it again after a restore. A resumed
//! query restores both and re-creates the output capability at the earliest buffered event time.

use std::collections::hash_map::Entry;
use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;
use std::time::Duration;

use rustc_hash::{FxBuildHasher, FxHashMap};
use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::OutputBuilderSession;
use timely::dataflow::operators::{Capability, Concat, Operator};
use timely::dataflow::StreamVec;
use timely::progress::frontier::AntichainRef;
use timely::progress::Antichain;
use timely::ExchangeData;
use weir_runtime::context::QueryContext;
use weir_runtime::error::{BuildError, QueryError};
use weir_runtime::event::{Event, EventStream, LateRecord};
use weir_runtime::metrics::OperatorMetrics;
use weir_runtime::state::{StateError, StateStore};
use weir_runtime::time::EventTime;

use crate::checkpointed::OperatorCheckpoint;
use crate::late::{relabel_late, split_late, Timed};
use crate::pending::{watermark_of, Pending};
use crate::store::open_store;

/// Deduplication on an event stream.
pub trait Dedup<'scope, D: 'static> {
    /// Passes the first record per key (`key_of`) and drops the records of the same key less
    /// than `within` of event time after it; the key's state is evicted once the frontier is
    /// `within` past it. See the [module documentation](self) for the exact rule.
    ///
    /// Fails at build time if `within` is under one millisecond or the state store cannot be
    /// opened.
    ///
    /// ```
    /// use std::time::Duration;
    /// use weir_operators::prelude::*;
    /// use weir_runtime::prelude::*;
    /// use weir_runtime::timely::dataflow::operators::{Inspect, ToStream};
    ///
    /// let ctx = QueryContext::ephemeral("doc");
    /// timely::execute_directly(move |worker| {
    ///     worker.dataflow::<EventTime, _, _>(|scope| {
    ///         // (event id, payload): id 1 at 0 s, 30 s and 70 s; id 2 at 5 s.
    ///         let records = vec![(0u64, (1, "a")), (5_000, (2, "b")), (30_000, (1, "c")), (70_000, (1, "d"))]
    ///             .into_iter()
    ///             .map(|(t, (id, payload))| Event::new(EventTime::from_millis(t), (id, payload.to_string())))
    ///             .to_stream(scope)
    ///             .container::<Vec<_>>();
    ///         let late = Vec::<LateRecord<(u32, String)>>::new().to_stream(scope).container::<Vec<_>>();
    ///         let unique = EventStream { records, late }
    ///             .dedup(&ctx, "dedup", |r: &(u32, String)| r.0, Duration::from_secs(60))
    ///             .unwrap();
    ///         // (1, "a"), (2, "b") and (1, "d"); (1, "c") is a duplicate of (1, "a").
    ///         unique.records.inspect(|e| println!("{e:?}"));
    ///     });
    /// });
    /// ```
    fn dedup<K>(
        self,
        ctx: &QueryContext,
        name: &str,
        key_of: impl Fn(&D) -> K + 'static,
        within: Duration,
    ) -> Result<EventStream<'scope, D>, BuildError>
    where
        K: ExchangeData + Hash + Eq + Clone,
        D: ExchangeData + Ord;

    /// Passes only the first record per key ever (earliest event time; ties by `D`'s order) and
    /// keeps every key forever: state grows with the number of distinct keys. Prefer
    /// [`Dedup::dedup`] with a bound; this logs a warning when built.
    fn dedup_unbounded<K>(
        self,
        ctx: &QueryContext,
        name: &str,
        key_of: impl Fn(&D) -> K + 'static,
    ) -> Result<EventStream<'scope, D>, BuildError>
    where
        K: ExchangeData + Hash + Eq + Clone,
        D: ExchangeData + Ord;
}

impl<'scope, D: 'static> Dedup<'scope, D> for EventStream<'scope, D> {
    fn dedup<K>(
        self,
        ctx: &QueryContext,
        name: &str,
        key_of: impl Fn(&D) -> K + 'static,
        within: Duration,
    ) -> Result<EventStream<'scope, D>, BuildError>
    where
        K: ExchangeData + Hash + Eq + Clone,
        D: ExchangeData + Ord,
    {
        validate_within(within)?;
        let within_ms = within.as_millis().min(u64::MAX as u128) as u64;
        build(self, ctx, name, key_of, Some(within_ms))
    }

    fn dedup_unbounded<K>(
        self,
        ctx: &QueryContext,
        name: &str,
        key_of: impl Fn(&D) -> K + 'static,
    ) -> Result<EventStream<'scope, D>, BuildError>
    where
        K: ExchangeData + Hash + Eq + Clone,
        D: ExchangeData + Ord,
    {
        if self.records.scope().index() == 0 {
            tracing::warn!(
                operator = name,
                "dedup_unbounded keeps every key it has ever seen: its state grows without bound. Use dedup(.., within) to evict keys once the watermark is past them"
            );
        }
        build(self, ctx, name, key_of, None)
    }
}

/// Checks a deduplication bound, with a message that says what to change.
pub fn validate_within(within: Duration) -> Result<(), BuildError> {
    if within.as_millis() == 0 {
        return Err(BuildError::invalid(
            "dedup bound (within)",
            format!("{within:?} is zero milliseconds, so no record could ever be a duplicate of another"),
            "use a positive bound of at least 1ms, e.g. --within 1m (or dedup_unbounded to keep every key forever)",
        ));
    }
    Ok(())
}

type Keyed<K, D> = (K, Event<D>);

fn build<'scope, D, K>(
    events: EventStream<'scope, D>,
    ctx: &QueryContext,
    name: &str,
    key_of: impl Fn(&D) -> K + 'static,
    within: Option<u64>,
) -> Result<EventStream<'scope, D>, BuildError>
where
    K: ExchangeData + Hash + Eq + Clone,
    D: ExchangeData + Ord,
{
    let worker = events.records.scope().index();
    let mut store: StateStore<K, u64> = open_store(ctx, name, worker)?;
    let state = match within {
        Some(ms) => weir_runtime::plan::StateBound::DedupHorizon(format!(
            "a key is forgotten when the watermark passes its first time + {}",
            weir_runtime::plan::format_duration(std::time::Duration::from_millis(ms))
        )),
        None => {
            weir_runtime::plan::StateBound::Unbounded("dedup_unbounded keeps every key it has ever seen".to_string())
        }
    };
    ctx.plan().record(
        weir_runtime::plan::OperatorPlan::operator(name, "deduplication")
            .state(state)
            .output_mode("append (first record per key)")
            .exchange("records by key"),
    );
    // The state: each key's last passed time, and the records buffered until their time passes.
    OperatorCheckpoint::record_types::<K, (u64, D)>(ctx, name);
    let checkpoint = OperatorCheckpoint::register(ctx, name, worker, &["", "buffer"]);
    if let Some(checkpoint) = &checkpoint {
        checkpoint.restore_store("", &mut store)?;
    }
    let metrics = ctx.metrics().operator(name);
    let (keyed, operator_late) = key_and_split_late(events.records, name, key_of, &metrics);
    let records = deduplicate(keyed, ctx.clone(), name, within, store, metrics.clone(), checkpoint)?;
    let late = relabel_late(events.late, name, metrics).concat(operator_late);
    Ok(EventStream { records, late })
}

/// Stage 1: on the worker that read them, pairs each on-time record with its key (so the key is
/// computed once) and routes records behind their batch's timestamp to the late output.
fn key_and_split_late<'scope, D, K>(
    records: StreamVec<'scope, EventTime, Event<D>>,
    name: &str,
    key_of: impl Fn(&D) -> K + 'static,
    metrics: &Arc<OperatorMetrics>,
) -> (Timed<'scope, Keyed<K, D>>, Timed<'scope, LateRecord<D>>)
where
    K: ExchangeData + Hash + Eq + Clone,
    D: ExchangeData,
{
    split_late(records, format!("{name}/key"), name, metrics, move |events, keyed| {
        keyed.extend(events.drain(..).map(|event| (key_of(&event.data), event)))
    })
}

/// Stage 2's in-memory state as a checkpoint holds it (part `buffer`; the keys' last passed
/// times are the store, part `""`). Generic so it is written from borrows.
#[derive(Serialize, Deserialize)]
struct DedupSnapshot<B, E> {
    /// Records not yet decided (their time is before the boundary, their event time at or after
    /// it), by event time.
    buffered: B,
    /// Bounded dedup: `f + within` -> keys whose state may expire then.
    expiry: E,
}

/// What [`DedupSnapshot`] restores to.
type Restored<K, D> = DedupSnapshot<BTreeMap<u64, Vec<(K, D)>>, BTreeMap<u64, Vec<K>>>;

/// Stage 2's state on one worker.
struct Stage2<K: ExchangeData + Hash + Eq + Clone, D> {
    store: StateStore<K, u64>,
    within: Option<u64>,
    /// Input batches by time, until the frontier passes it.
    pending: Pending<Keyed<K, D>>,
    /// Records not yet decided, by event time (ms). Emptied bucket vectors are kept for reuse.
    buffered: BTreeMap<u64, Vec<(K, D)>>,
    spare: Vec<Vec<(K, D)>>,
    /// A capability at or before the earliest buffered event time, to emit passed records at.
    buffer_cap: Option<Capability<EventTime>>,
    /// Bounded dedup: `f + within` -> keys whose state may expire then. An entry is stale once
    /// its key passed a newer record (which added a later entry); eviction re-checks the state.
    expiry: BTreeMap<u64, Vec<K>>,
    /// The records of one key at one event time, when a bucket holds several: the least wins.
    tied: FxHashMap<K, D>,
    out: Vec<Event<D>>,
    // This activation's counters.
    new_keys: i64,
    removed: u64,
    passed: u64,
    duplicates: u64,
}

impl<K: ExchangeData + Hash + Eq + Clone, D: ExchangeData + Ord> Stage2<K, D> {
    /// Applies the input the frontier `upto` has passed, decides the buffered records whose event
    /// time it has passed, in event-time order, and evicts the keys it is `within` past. Every
    /// record decided is before `upto`, and so is its output, which makes acting at a checkpoint
    /// boundary `{B}` the same as at any frontier. An empty `upto` ends the input.
    fn advance(
        &mut self,
        upto: AntichainRef<'_, EventTime>,
        output: &mut EventOutput<'_, D>,
    ) -> Result<(), StateError> {
        while let Some((cap, batches)) = self.pending.pop_complete(upto) {
            if self.buffer_cap.as_ref().is_none_or(|c| c.time() > cap.time()) {
                self.buffer_cap = Some(cap);
            }
            for mut batch in batches {
                for (key, event) in batch.drain(..) {
                    self.buffered
                        .entry(event.time.as_millis())
                        .or_insert_with(|| self.spare.pop().unwrap_or_default())
                        .push((key, event.data));
                }
            }
        }
        // `None` once the input is exhausted: every buffered record can be decided.
        let horizon: Option<u64> = watermark_of(upto).map(EventTime::as_millis);
        let within = self.within;
        let mut first_time: Option<u64> = None;
        let mut tie_losers = 0u64;
        let (store, expiry, out) = (&mut self.store, &mut self.expiry, &mut self.out);
        let (new_keys, passed, duplicates) = (&mut self.new_keys, &mut self.passed, &mut self.duplicates);
        // Decides one record at `time` that won its (key, time) tie.
        let mut decide = |key: K, time: u64, data: D| {
            let seen = store.get(&key)?.map(|f| *f);
            if seen.is_some_and(|f| within.is_none_or(|w| time < f.saturating_add(w))) {
                *duplicates += 1;
                return Ok(());
            }
            if let Some(w) = within {
                expiry.entry(time.saturating_add(w)).or_default().push(key.clone());
            }
            store.put(key, time)?;
            *new_keys += i64::from(seen.is_none());
            *passed += 1;
            out.push(Event::new(EventTime::from_millis(time), data));
            Ok::<(), StateError>(())
        };
        while let Some(entry) = self.buffered.first_entry() {
            if horizon.is_some_and(|h| *entry.key() >= h) {
                break;
            }
            let (time, mut bucket) = entry.remove_entry();
            first_time.get_or_insert(time);
            if bucket.len() == 1 {
                let (key, data) = bucket.pop().expect("one record");
                decide(key, time, data)?;
            } else {
                for (key, data) in bucket.drain(..) {
                    match self.tied.entry(key) {
                        Entry::Occupied(mut least) => {
                            tie_losers += 1;
                            if data < *least.get() {
                                *least.get_mut() = data;
                            }
                        }
                        Entry::Vacant(slot) => {
                            slot.insert(data);
                        }
                    }
                }
                for (key, data) in self.tied.drain() {
                    decide(key, time, data)?;
                }
            }
            if self.spare.len() < 1024 {
                self.spare.push(bucket);
            }
        }
        self.duplicates += tie_losers;
        if let Some(time) = first_time.filter(|_| !self.out.is_empty()) {
            let cap = self.buffer_cap.as_ref().expect("a capability at or before every buffered record");
            output.session(&cap.delayed(&EventTime::from_millis(time))).give_container(&mut self.out);
            self.out.clear();
        }
        // Evict the keys whose bound the frontier has reached (see the module docs for why
        // this never changes the result).
        let limit = horizon.unwrap_or(u64::MAX);
        while let Some(entry) = self.expiry.first_entry() {
            if *entry.key() > limit {
                break;
            }
            let w = within.expect("expiry is only kept for bounded dedup");
            for key in entry.remove() {
                let expired = self.store.get(&key)?.is_some_and(|f| f.saturating_add(w) <= limit);
                if expired {
                    self.store.remove(&key)?;
                    self.removed += 1;
                }
            }
        }
        if horizon.is_none() && within.is_none() && !self.store.is_empty() {
            // The input has ended: the unbounded state is no longer needed.
            self.removed += self.store.drain()?.len() as u64;
        }
        match self.buffered.keys().next() {
            Some(&earliest) => {
                if let Some(cap) = self.buffer_cap.as_mut() {
                    cap.downgrade(&EventTime::from_millis(earliest));
                }
            }
            None => self.buffer_cap = None,
        }
        Ok(())
    }

    /// Writes epoch `epoch`'s snapshot: the store, then the buffered records and the expiry index.
    fn snapshot(&self, checkpoint: &OperatorCheckpoint, epoch: u64) {
        checkpoint.write_store("", epoch, &self.store);
        checkpoint.write_bytes("buffer", epoch, &DedupSnapshot { buffered: &self.buffered, expiry: &self.expiry });
    }
}

/// The passed-records output inside an activation.
type EventOutput<'a, D> =
    OutputBuilderSession<'a, EventTime, timely::container::CapacityContainerBuilder<Vec<Event<D>>>>;

/// Stage 2: on the worker that owns each key, buffers records by event time until the frontier
/// passes it, decides them in event-time order, and evicts keys the frontier is `within` past.
/// With a checkpoint, it snapshots at every boundary and starts from the restored state.
fn deduplicate<'scope, D, K>(
    keyed: StreamVec<'scope, EventTime, Keyed<K, D>>,
    ctx: QueryContext,
    name: &str,
    within: Option<u64>,
    store: StateStore<K, u64>,
    metrics: Arc<OperatorMetrics>,
    mut checkpoint: Option<OperatorCheckpoint>,
) -> Result<StreamVec<'scope, EventTime, Event<D>>, BuildError>
where
    K: ExchangeData + Hash + Eq + Clone,
    D: ExchangeData + Ord,
{
    let route = Exchange::new(|record: &Keyed<K, D>| FxBuildHasher.hash_one(&record.0));
    let key_bytes = (std::mem::size_of::<(K, u64)>() + 16) as i64;
    let operator = name.to_string();
    // A resumed query starts from the buffered records and expiry index of the epoch it resumes
    // after (the store was restored when it was opened).
    let restored: Option<(Restored<K, D>, EventTime)> = match &checkpoint {
        Some(checkpoint) => match (checkpoint.restore_bytes("buffer")?, checkpoint.resume_at()) {
            (Some(snapshot), Some(resume_at)) => Some((snapshot, resume_at)),
            _ => None,
        },
        None => None,
    };
    Ok(keyed.unary_frontier(route, name, move |initial, _info| {
        let restored_keys = store.len() as i64;
        metrics.adjust_state(restored_keys, restored_keys * key_bytes);
        let mut stage = Stage2 {
            store,
            within,
            pending: Pending::new(),
            buffered: BTreeMap::new(),
            spare: Vec::new(),
            buffer_cap: None,
            expiry: BTreeMap::new(),
            tied: FxHashMap::default(),
            out: Vec::new(),
            new_keys: 0,
            removed: 0,
            passed: 0,
            duplicates: 0,
        };
        if let Some((snapshot, resume_at)) = restored {
            if let Some(&earliest) = snapshot.buffered.keys().next() {
                stage.buffer_cap = Some(initial.delayed(&EventTime::from_millis(earliest).max(resume_at)));
            }
            stage.buffered = snapshot.buffered;
            stage.expiry = snapshot.expiry;
        }
        drop(initial);
        let mut failed = false;

        move |(input, frontier), output| {
            if failed {
                input.for_each_time(|_, _| {});
                return;
            }
            input.for_each_time(|cap, data| {
                for batch in data {
                    stage.pending.stash(&cap, batch);
                }
            });
            let real: Antichain<EventTime> = frontier.frontier().to_owned();
            let outcome = (|| -> Result<(), StateError> {
                // Checkpoint boundaries the frontier has passed: decide and evict as if the
                // frontier stood exactly at each, snapshot, then go on (docs/checkpoints.md §2).
                if let Some(checkpoint) = &mut checkpoint {
                    for (epoch, at) in checkpoint.passed_boundaries(real.borrow()) {
                        stage.advance(at.borrow(), output)?;
                        stage.snapshot(checkpoint, epoch);
                    }
                }
                stage.advance(real.borrow(), output)
            })();
            if let Err(error) = outcome {
                ctx.fail(QueryError::State { operator: operator.clone(), message: error.to_string() });
                failed = true;
                stage.buffered.clear();
                stage.buffer_cap = None;
                stage.pending = Pending::new();
            }

            let rows = stage.new_keys - stage.removed as i64;
            metrics.adjust_state(rows, rows * key_bytes);
            OperatorMetrics::add(&metrics.rows_updated, stage.passed);
            OperatorMetrics::add(&metrics.rows_out, stage.passed);
            OperatorMetrics::add(&metrics.rows_removed, stage.removed);
            OperatorMetrics::add(&metrics.duplicates_dropped, stage.duplicates);
            (stage.new_keys, stage.removed, stage.passed, stage.duplicates) = (0, 0, 0, 0);
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_bound_is_rejected() {
        let error = validate_within(Duration::ZERO).unwrap_err().to_string();
        assert!(error.contains("within") && error.contains("zero"), "{error}");
        assert!(validate_within(Duration::from_micros(999)).is_err());
        assert!(validate_within(Duration::from_millis(1)).is_ok());
    }
}
