//! Session windows: the `session_aggregate` operator and its extension trait on [`EventStream`].
//!
//! Like Spark's `session_window(ts, gap)`: every record spans `[t, t + gap)`, and the records of
//! one key whose spans overlap, directly or through a chain of others, form one session
//! `[first, last + gap)`. The end is exclusive: a record at exactly `last + gap` starts a new
//! session. A record that falls between two sessions of its key and overlaps both bridges them
//! into one.
//!
//! A session `[start, end)` is final once the frontier reaches `end`: every record still to come
//! is on time, so its event time is at least the frontier, its span starts at or after `end`,
//! and it can neither join this session nor bridge it to another.
//!
//! Two stages, as in [`crate::window_aggregate`]. Each worker first folds every batch into
//! partial sessions per key (the batch's records of one key, sorted by time, chained while they
//! overlap), so only partials cross the exchange. The worker owning a key then merges partials
//! into the key's sessions in timestamp order, once the frontier has passed their time (that
//! order, and deciding only from the frontier, is what makes the result independent of worker
//! count and batch boundaries), and emits as the output mode says:
//!
//! * **append**: each session once, final, when the frontier reaches its end; it is emitted at
//!   timely time = its end, then evicted;
//! * **update**: at every epoch, each session that was created, grew or absorbed others, with
//!   its new bounds and value; sessions are evicted silently once the frontier reaches their end.
//!   A session's last emission is its final result. When a session grows, its earlier rows
//!   (with narrower bounds) are superseded: a consumer should let a row replace every earlier row
//!   of the same key whose window it contains;
//! * **complete** is rejected at build time: it would re-emit and keep every session forever.
//!
//! Sessions live in a [`StateStore`] (memory or RocksDB) keyed by the group key, each key
//! holding its open sessions sorted by start; an in-memory index by session end finds the
//! sessions to close.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;
use std::time::Duration;

use rustc_hash::{FxBuildHasher, FxHashMap, FxHashSet};
use serde::{Deserialize, Serialize};
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

use crate::aggregate::{Aggregator, Count};
use crate::late::{relabel_late, split_late, Timed};
use crate::output_mode::OutputMode;
use crate::pending::{watermark_of, Pending};
use crate::store::open_store;
use crate::window_aggregate::{Aggregated, WindowResult};

/// Session windows on an event stream.
pub trait SessionAggregate<'scope, D: 'static> {
    /// Groups the records of each key (`key_of`) into sessions separated by at least `gap` of
    /// event time, folds each session with `aggregator`, and emits results as `mode` says
    /// (append or update; complete is rejected). Results carry the session's bounds as
    /// `window_start` (first record) and `window_end` (last record + gap, exclusive).
    ///
    /// Fails at build time if `gap` is under one millisecond, if `mode` is complete, or if the
    /// state store cannot be opened.
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
    ///         // "a" at 1 s and 20 s (two sessions with a 10 s gap), "b" at 2 s and 9 s (one).
    ///         let records = vec![(1_000u64, "a"), (2_000, "b"), (9_000, "b"), (20_000, "a")]
    ///             .into_iter()
    ///             .map(|(t, k)| Event::new(EventTime::from_millis(t), k))
    ///             .to_stream(scope)
    ///             .container::<Vec<_>>();
    ///         let late = Vec::<LateRecord<&str>>::new().to_stream(scope).container::<Vec<_>>();
    ///         let sessions = EventStream { records, late }
    ///             .session_count(&ctx, "sessions", Duration::from_secs(10), OutputMode::Append,
    ///                            |k: &&str| k.to_string())
    ///             .unwrap();
    ///         // [1000, 11000) a 1; [2000, 19000) b 2; [20000, 30000) a 1
    ///         sessions.results.inspect(|row| println!("{row:?}"));
    ///     });
    /// });
    /// ```
    fn session_aggregate<K, A>(
        self,
        ctx: &QueryContext,
        name: &str,
        gap: Duration,
        mode: OutputMode,
        key_of: impl Fn(&D) -> K + 'static,
        aggregator: A,
    ) -> Result<Aggregated<'scope, K, A::Output, D>, BuildError>
    where
        K: ExchangeData + Hash + Eq + Clone,
        A: Aggregator<D>,
        A::Output: ExchangeData;

    /// Counts the records of each session (the commonest session aggregation).
    fn session_count<K>(
        self,
        ctx: &QueryContext,
        name: &str,
        gap: Duration,
        mode: OutputMode,
        key_of: impl Fn(&D) -> K + 'static,
    ) -> Result<Aggregated<'scope, K, u64, D>, BuildError>
    where
        K: ExchangeData + Hash + Eq + Clone,
        Self: Sized,
    {
        self.session_aggregate(ctx, name, gap, mode, key_of, Count)
    }
}

/// Checks a session gap and output mode, with messages that say what to change.
pub fn validate_session(gap: Duration, mode: OutputMode) -> Result<(), BuildError> {
    if gap.as_millis() == 0 {
        return Err(BuildError::invalid(
            "session gap",
            format!("a gap of {gap:?} is zero milliseconds, so no two records could ever share a session"),
            "use a positive gap of at least 1ms, e.g. --gap 30s",
        ));
    }
    if mode == OutputMode::Complete {
        return Err(BuildError::invalid(
            "output mode complete for session windows",
            "complete re-emits the whole result table at every epoch, so every session would be kept forever and the state would grow without bound",
            "use --output-mode append (each session once, when final) or update (changed sessions at every epoch)",
        ));
    }
    Ok(())
}

impl<'scope, D: 'static> SessionAggregate<'scope, D> for EventStream<'scope, D> {
    fn session_aggregate<K, A>(
        self,
        ctx: &QueryContext,
        name: &str,
        gap: Duration,
        mode: OutputMode,
        key_of: impl Fn(&D) -> K + 'static,
        aggregator: A,
    ) -> Result<Aggregated<'scope, K, A::Output, D>, BuildError>
    where
        K: ExchangeData + Hash + Eq + Clone,
        A: Aggregator<D>,
        A::Output: ExchangeData,
    {
        validate_session(gap, mode)?;
        let gap_ms = gap.as_millis().min(u64::MAX as u128) as u64;
        let worker = self.records.scope().index();
        let store: StateStore<K, Vec<Session<A::Acc>>> = open_store(ctx, name, worker)?;
        ctx.plan().record(
            weir_runtime::plan::OperatorPlan::operator(
                name,
                format!("session window aggregate, gap {}", weir_runtime::plan::format_duration(gap)),
            )
            .state(weir_runtime::plan::StateBound::WindowClose(format!(
                "a session is dropped when the watermark passes its last record + {}",
                weir_runtime::plan::format_duration(gap)
            )))
            .output_mode(mode)
            .exchange("partial sessions by key (pre-sessionized per worker before the exchange)"),
        );
        ctx.checkpoint_unsupported(name, "session windows")?;
        let metrics = ctx.metrics().operator(name);
        let (partials, operator_late) =
            pre_sessionize(self.records, name, gap_ms, key_of, aggregator.clone(), &metrics);
        let merger =
            Merger { ctx: ctx.clone(), name: name.to_string(), mode, aggregator, store, metrics: metrics.clone() };
        let results = merge_and_emit(partials, merger);
        let late = relabel_late(self.late, name, metrics).concat(operator_late);
        Ok(Aggregated { results, late })
    }
}

/// One open session of a key: `[start, end)` in ms, its partial result, and the epoch (count of
/// completed timestamps on this worker) in which it last changed, for update mode.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Session<Acc> {
    /// Event time of its first record, ms.
    pub start: u64,
    /// Event time of its last record + gap, ms (exclusive).
    pub end: u64,
    /// The folded records.
    pub acc: Acc,
    /// The epoch it last changed in.
    pub changed_in: u64,
}

/// A partial session from one batch: (key, start, end, partial result).
type Partial<K, Acc> = (K, u64, u64, Acc);
type PreSessionized<'scope, K, Acc, D> = (Timed<'scope, Partial<K, Acc>>, Timed<'scope, LateRecord<D>>);

/// Stage 1: on the worker that read them, folds each timestamp's records into partial sessions
/// per key. Records behind their batch's timestamp are late for this operator.
fn pre_sessionize<'scope, D: 'static, K, A>(
    records: StreamVec<'scope, EventTime, Event<D>>,
    name: &str,
    gap_ms: u64,
    key_of: impl Fn(&D) -> K + 'static,
    aggregator: A,
    metrics: &Arc<OperatorMetrics>,
) -> PreSessionized<'scope, K, A::Acc, D>
where
    K: ExchangeData + Hash + Eq + Clone,
    A: Aggregator<D>,
{
    // Reused buffers: a dense id per distinct key, and (key id, time, record index) sorted to walk
    // each key's records in time order.
    let mut key_ids: FxHashMap<K, u32> = FxHashMap::default();
    let mut keys: Vec<Option<K>> = Vec::new();
    let mut order: Vec<(u32, u64, u32)> = Vec::new();
    let mut runs: Vec<(u32, u64, u64, A::Acc)> = Vec::new();
    split_late(records, format!("{name}/pre-sessionize"), name, metrics, move |events, batch_out| {
        for (index, event) in events.iter().enumerate() {
            let next_id = key_ids.len() as u32;
            let id = *key_ids.entry(key_of(&event.data)).or_insert(next_id);
            order.push((id, event.time.as_millis(), index as u32));
        }
        order.sort_unstable();
        // Chain each key's records while the next one starts before the last one's span ends.
        let mut current: Option<(u32, u64, u64, A::Acc)> = None;
        for &(id, time, index) in &order {
            match &mut current {
                Some((key, _, last, acc)) if *key == id && time < last.saturating_add(gap_ms) => {
                    aggregator.add(acc, &events[index as usize].data);
                    *last = time;
                }
                _ => {
                    let mut acc = aggregator.init();
                    aggregator.add(&mut acc, &events[index as usize].data);
                    if let Some(run) = current.replace((id, time, time, acc)) {
                        runs.push(run);
                    }
                }
            }
        }
        runs.extend(current);
        if !runs.is_empty() {
            keys.resize_with(key_ids.len(), || None);
            for (key, id) in key_ids.drain() {
                keys[id as usize] = Some(key);
            }
            // Runs are grouped by key id: the last run of a key takes the key, earlier ones clone it.
            let mut ordered = runs.drain(..).peekable();
            while let Some((id, start, last, acc)) = ordered.next() {
                let shares_key = ordered.peek().is_some_and(|next| next.0 == id);
                let slot = &mut keys[id as usize];
                let key = if shares_key { slot.clone() } else { slot.take() }.expect("a key per id");
                batch_out.push((key, start, last.saturating_add(gap_ms), acc));
            }
        }
        key_ids.clear();
        keys.clear();
        order.clear();
        runs.clear();
    })
}

/// What stage 2 needs besides its input: the key's sessions and how to fold and report them.
struct Merger<K: ExchangeData + Hash + Eq + Clone, A: Aggregator<D>, D> {
    ctx: QueryContext,
    name: String,
    mode: OutputMode,
    aggregator: A,
    store: StateStore<K, Vec<Session<A::Acc>>>,
    metrics: Arc<OperatorMetrics>,
}

/// What merging one partial did to its key's sessions.
struct Merged {
    /// No existing session overlapped: a new one was created.
    created: bool,
    /// Existing sessions folded into the result (0 when created).
    absorbed: usize,
    /// The resulting session's end, if it is later than every absorbed session's end (or the
    /// session is new): the eviction index needs an entry for it.
    new_end: Option<u64>,
}

impl<K: ExchangeData + Hash + Eq + Clone, A: Aggregator<D>, D> Merger<K, A, D> {
    /// Folds partial session `[start, end)` into the sessions of `key`: every existing session
    /// that overlaps it (`s < end && start < e`) is absorbed, and the result spans all of them.
    fn merge(&mut self, key: &K, start: u64, end: u64, acc: A::Acc, epoch: u64) -> Result<Merged, StateError> {
        let aggregator = &self.aggregator;
        self.store.modify(key, |slot| {
            let sessions = slot.get_or_insert_with(Vec::new);
            // Sessions are disjoint and sorted by start, hence by end: the overlapping ones are a run.
            let first = sessions.partition_point(|s| s.end <= start);
            let past = first + sessions[first..].partition_point(|s| s.start < end);
            if first == past {
                sessions.insert(first, Session { start, end, acc, changed_in: epoch });
                return Merged { created: true, absorbed: 0, new_end: Some(end) };
            }
            let absorbed = past - first;
            let old_end = sessions[past - 1].end;
            let mut rest = sessions.drain(first + 1..past).collect::<Vec<_>>().into_iter();
            let session = &mut sessions[first];
            session.start = session.start.min(start);
            session.end = old_end.max(end);
            for other in rest.by_ref() {
                aggregator.merge(&mut session.acc, other.acc);
            }
            aggregator.merge(&mut session.acc, acc);
            session.changed_in = epoch;
            Merged { created: false, absorbed, new_end: (end > old_end).then_some(end) }
        })
    }

    /// The result row of a session.
    fn result(&self, key: K, session: &Session<A::Acc>) -> WindowResult<K, A::Output> {
        WindowResult {
            window_start: session.start as i64,
            window_end: session.end as i64,
            key,
            value: self.aggregator.finish(&session.acc),
        }
    }

    fn fail(&self, error: StateError) {
        self.ctx.fail(QueryError::State { operator: self.name.clone(), message: error.to_string() });
    }
}

/// Stage 2: on the worker that owns each key, merges partial sessions in timestamp order once
/// their time is complete, emits as the output mode says, and evicts the sessions the frontier
/// has closed.
fn merge_and_emit<'scope, K, A, D>(
    partials: StreamVec<'scope, EventTime, Partial<K, A::Acc>>,
    mut merger: Merger<K, A, D>,
) -> StreamVec<'scope, EventTime, WindowResult<K, A::Output>>
where
    K: ExchangeData + Hash + Eq + Clone,
    A: Aggregator<D>,
    A::Output: ExchangeData,
    D: 'static,
{
    let route = Exchange::new(|partial: &Partial<K, A::Acc>| FxBuildHasher.hash_one(&partial.0));
    let session_bytes = (std::mem::size_of::<(K, Session<A::Acc>)>() + 16) as i64;
    let name = merger.name.clone();
    partials.unary_frontier(route, &name, move |_capability, _info| {
        let mut pending: Pending<Partial<K, A::Acc>> = Pending::new();
        // Session end -> keys that have (or had) a session ending there. An entry goes stale when
        // its session grows or is absorbed; closing checks the key's sessions, so stale entries
        // only cost a lookup.
        let mut by_end: BTreeMap<u64, Vec<K>> = BTreeMap::new();
        // Append mode: a capability at or before the earliest end in `by_end`, to emit sessions
        // at their end. New sessions end after the time they arrive at, so it can always be taken
        // from the arriving batch's capability.
        let mut end_cap: Option<Capability<EventTime>> = None;
        let mut changed: FxHashSet<K> = FxHashSet::default();
        let mut epoch = 0u64;
        let mut failed = false;
        let mut out: Vec<WindowResult<K, A::Output>> = Vec::new();
        let mut closed: Vec<(u64, WindowResult<K, A::Output>)> = Vec::new();

        move |(input, frontier), output| {
            if failed {
                input.for_each_time(|_, _| {});
                return;
            }
            input.for_each_time(|cap, data| {
                for batch in data {
                    pending.stash(&cap, batch);
                }
            });
            // `None` once the input is exhausted: every time is complete, every session final.
            let horizon: Option<u64> = watermark_of(frontier.frontier()).map(EventTime::as_millis);
            let (mut created, mut removed, mut updated, mut emitted) = (0i64, 0u64, 0u64, 0u64);

            let outcome = (|| -> Result<(), StateError> {
                while let Some((cap, batches)) = pending.pop_complete(frontier.frontier()) {
                    epoch += 1;
                    for batch in batches {
                        for (key, start, end, acc) in batch {
                            let merged = merger.merge(&key, start, end, acc, epoch)?;
                            updated += 1;
                            if merged.created {
                                created += 1;
                            } else {
                                removed += merged.absorbed as u64 - 1;
                            }
                            if let Some(end) = merged.new_end {
                                if merger.mode == OutputMode::Append
                                    && end_cap.as_ref().is_none_or(|c| c.time().as_millis() > end)
                                {
                                    end_cap = Some(cap.delayed(&EventTime::from_millis(end)));
                                }
                                by_end.entry(end).or_default().push(key.clone());
                            }
                            if merger.mode == OutputMode::Update {
                                changed.insert(key);
                            }
                        }
                    }
                    if merger.mode == OutputMode::Update && !changed.is_empty() {
                        for key in changed.drain() {
                            if let Some(sessions) = merger.store.get(&key)? {
                                for session in sessions.iter().filter(|s| s.changed_in == epoch) {
                                    out.push(merger.result(key.clone(), session));
                                }
                            }
                        }
                        emitted += out.len() as u64;
                        output.session(&cap).give_container(&mut out);
                        out.clear();
                    }
                }

                // Close the sessions whose end the frontier has reached.
                while let Some(entry) = by_end.first_entry() {
                    if horizon.is_some_and(|h| *entry.key() > h) {
                        break;
                    }
                    let limit = horizon.unwrap_or(u64::MAX);
                    for key in entry.remove() {
                        let any_closed = match merger.store.get(&key)? {
                            Some(sessions) => sessions.first().is_some_and(|s| s.end <= limit),
                            None => false,
                        };
                        if !any_closed {
                            continue; // a stale entry: the session grew or was closed already
                        }
                        let finished = merger.store.modify(&key, |slot| {
                            let sessions = slot.as_mut().expect("checked above");
                            let count = sessions.partition_point(|s| s.end <= limit);
                            let finished: Vec<Session<A::Acc>> = sessions.drain(..count).collect();
                            if sessions.is_empty() {
                                *slot = None;
                            }
                            finished
                        })?;
                        removed += finished.len() as u64;
                        if merger.mode == OutputMode::Append {
                            closed.extend(finished.iter().map(|s| (s.end, merger.result(key.clone(), s))));
                        }
                    }
                }
                if !closed.is_empty() {
                    let cap = end_cap.as_ref().expect("a capability at or before every open session's end");
                    closed.sort_unstable_by_key(|(end, _)| *end);
                    emitted += closed.len() as u64;
                    let mut rows = closed.drain(..).peekable();
                    while let Some((end, row)) = rows.next() {
                        out.push(row);
                        while let Some((_, row)) = rows.next_if(|(e, _)| *e == end) {
                            out.push(row);
                        }
                        output.session(&cap.delayed(&EventTime::from_millis(end))).give_container(&mut out);
                        out.clear();
                    }
                }
                Ok(())
            })();
            if let Err(error) = outcome {
                merger.fail(error);
                failed = true;
                end_cap = None;
                pending = Pending::new();
            }

            match by_end.keys().next() {
                Some(&earliest) => {
                    if let Some(cap) = end_cap.as_mut() {
                        cap.downgrade(&EventTime::from_millis(earliest));
                    }
                }
                None => end_cap = None,
            }

            let rows = created - removed as i64;
            merger.metrics.adjust_state(rows, rows * session_bytes);
            OperatorMetrics::add(&merger.metrics.rows_updated, updated);
            OperatorMetrics::add(&merger.metrics.rows_removed, removed);
            OperatorMetrics::add(&merger.metrics.rows_out, emitted);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_settings_are_rejected() {
        let zero = validate_session(Duration::ZERO, OutputMode::Append).unwrap_err().to_string();
        assert!(zero.contains("session gap") && zero.contains("zero"), "{zero}");
        let sub_ms = validate_session(Duration::from_micros(500), OutputMode::Update).unwrap_err().to_string();
        assert!(sub_ms.contains("zero milliseconds"), "{sub_ms}");
        let complete = validate_session(Duration::from_secs(1), OutputMode::Complete).unwrap_err().to_string();
        assert!(complete.contains("complete") && complete.contains("append"), "{complete}");
        assert!(validate_session(Duration::from_millis(1), OutputMode::Append).is_ok());
        assert!(validate_session(Duration::from_secs(30), OutputMode::Update).is_ok());
    }
}
