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

use std::collections::hash_map::Entry;
use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;
use std::time::Duration;

use rustc_hash::{FxBuildHasher, FxHashMap};
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::{Capability, Concat, Operator};
use timely::dataflow::StreamVec;
use timely::ExchangeData;
use weir_runtime::context::QueryContext;
use weir_runtime::error::{BuildError, QueryError};
use weir_runtime::event::{Event, EventStream, LateRecord};
use weir_runtime::metrics::OperatorMetrics;
use weir_runtime::state::{StateError, StateStore};
use weir_runtime::time::EventTime;

use crate::late::{relabel_late, split_late, Timed};
use crate::pending::watermark_of;
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
    let store: StateStore<K, u64> = open_store(ctx, name, worker)?;
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
    ctx.checkpoint_unsupported(name, "dedup")?;
    let metrics = ctx.metrics().operator(name);
    let (keyed, operator_late) = key_and_split_late(events.records, name, key_of, &metrics);
    let records = deduplicate(keyed, ctx.clone(), name, within, store, metrics.clone());
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

/// Stage 2: on the worker that owns each key, buffers records by event time until the frontier
/// passes it, decides them in event-time order, and evicts keys the frontier is `within` past.
fn deduplicate<'scope, D, K>(
    keyed: StreamVec<'scope, EventTime, Keyed<K, D>>,
    ctx: QueryContext,
    name: &str,
    within: Option<u64>,
    mut store: StateStore<K, u64>,
    metrics: Arc<OperatorMetrics>,
) -> StreamVec<'scope, EventTime, Event<D>>
where
    K: ExchangeData + Hash + Eq + Clone,
    D: ExchangeData + Ord,
{
    let route = Exchange::new(|record: &Keyed<K, D>| FxBuildHasher.hash_one(&record.0));
    let key_bytes = (std::mem::size_of::<(K, u64)>() + 16) as i64;
    let operator = name.to_string();
    keyed.unary_frontier(route, name, move |_capability, _info| {
        // Records not yet decided, by event time (ms). Emptied bucket vectors are kept for reuse.
        let mut buffered: BTreeMap<u64, Vec<(K, D)>> = BTreeMap::new();
        let mut spare: Vec<Vec<(K, D)>> = Vec::new();
        // A capability at or before the earliest buffered event time, to emit passed records at.
        let mut buffer_cap: Option<Capability<EventTime>> = None;
        // Bounded dedup: `f + within` -> keys whose state may expire then. An entry is stale once
        // its key passed a newer record (which added a later entry); eviction re-checks the state.
        let mut expiry: BTreeMap<u64, Vec<K>> = BTreeMap::new();
        // The records of one key at one event time, when a bucket holds several: the least wins.
        let mut tied: FxHashMap<K, D> = FxHashMap::default();
        let mut out: Vec<Event<D>> = Vec::new();
        let mut failed = false;

        move |(input, frontier), output| {
            if failed {
                input.for_each_time(|_, _| {});
                return;
            }
            input.for_each_time(|cap, data| {
                if buffer_cap.as_ref().is_none_or(|c| c.time() > cap.time()) {
                    buffer_cap = Some(cap.retain(0));
                }
                for batch in data {
                    for (key, event) in batch.drain(..) {
                        buffered
                            .entry(event.time.as_millis())
                            .or_insert_with(|| spare.pop().unwrap_or_default())
                            .push((key, event.data));
                    }
                }
            });
            // `None` once the input is exhausted: every buffered record can be decided.
            let horizon: Option<u64> = watermark_of(frontier.frontier()).map(EventTime::as_millis);
            let (mut new_keys, mut removed, mut passed, mut duplicates) = (0i64, 0u64, 0u64, 0u64);

            let outcome = (|| -> Result<(), StateError> {
                let mut first_time: Option<u64> = None;
                let mut tie_losers = 0u64;
                // Decides one record at `time` that won its (key, time) tie.
                let mut decide = |key: K, time: u64, data: D, store: &mut StateStore<K, u64>| {
                    let seen = store.get(&key)?.map(|f| *f);
                    if seen.is_some_and(|f| within.is_none_or(|w| time < f.saturating_add(w))) {
                        duplicates += 1;
                        return Ok(());
                    }
                    if let Some(w) = within {
                        expiry.entry(time.saturating_add(w)).or_default().push(key.clone());
                    }
                    store.put(key, time)?;
                    new_keys += i64::from(seen.is_none());
                    passed += 1;
                    out.push(Event::new(EventTime::from_millis(time), data));
                    Ok::<(), StateError>(())
                };
                while let Some(entry) = buffered.first_entry() {
                    if horizon.is_some_and(|h| *entry.key() >= h) {
                        break;
                    }
                    let (time, mut bucket) = entry.remove_entry();
                    first_time.get_or_insert(time);
                    if bucket.len() == 1 {
                        let (key, data) = bucket.pop().expect("one record");
                        decide(key, time, data, &mut store)?;
                    } else {
                        for (key, data) in bucket.drain(..) {
                            match tied.entry(key) {
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
                        for (key, data) in tied.drain() {
                            decide(key, time, data, &mut store)?;
                        }
                    }
                    if spare.len() < 1024 {
                        spare.push(bucket);
                    }
                }
                duplicates += tie_losers;
                if let Some(time) = first_time.filter(|_| !out.is_empty()) {
                    let cap = buffer_cap.as_ref().expect("a capability at or before every buffered record");
                    output.session(&cap.delayed(&EventTime::from_millis(time))).give_container(&mut out);
                    out.clear();
                }
                // Evict the keys whose bound the frontier has reached (see the module docs for why
                // this never changes the result).
                let limit = horizon.unwrap_or(u64::MAX);
                while let Some(entry) = expiry.first_entry() {
                    if *entry.key() > limit {
                        break;
                    }
                    let w = within.expect("expiry is only kept for bounded dedup");
                    for key in entry.remove() {
                        let expired = store.get(&key)?.is_some_and(|f| f.saturating_add(w) <= limit);
                        if expired {
                            store.remove(&key)?;
                            removed += 1;
                        }
                    }
                }
                Ok(())
            })();
            if let Err(error) = outcome {
                ctx.fail(QueryError::State { operator: operator.clone(), message: error.to_string() });
                failed = true;
                buffered.clear();
            }
            if horizon.is_none() && within.is_none() && !store.is_empty() {
                // The input has ended: the unbounded state is no longer needed.
                match store.drain() {
                    Ok(keys) => removed += keys.len() as u64,
                    Err(error) => {
                        ctx.fail(QueryError::State { operator: operator.clone(), message: error.to_string() })
                    }
                }
            }
            match buffered.keys().next() {
                Some(&earliest) => {
                    if let Some(cap) = buffer_cap.as_mut() {
                        cap.downgrade(&EventTime::from_millis(earliest));
                    }
                }
                None => buffer_cap = None,
            }

            let rows = new_keys - removed as i64;
            metrics.adjust_state(rows, rows * key_bytes);
            OperatorMetrics::add(&metrics.rows_updated, passed);
            OperatorMetrics::add(&metrics.rows_out, passed);
            OperatorMetrics::add(&metrics.rows_removed, removed);
            OperatorMetrics::add(&metrics.duplicates_dropped, duplicates);
        }
    })
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
