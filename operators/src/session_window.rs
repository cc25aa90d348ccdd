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
//!
//! **Checkpoints** (docs/checkpoints.md §2): at each boundary `B` the frontier passes, stage 2
//! merges the partials of times before `B`, closes the sessions ending before `B` (a session
//! ending exactly at `B` is emitted at `B`, which belongs to the next epoch), and snapshots two
//! parts: the store (`write_store`: bytes for memory, a hard-linked RocksDB checkpoint for
//! RocksDB) and the index (`index`: session ends with their keys, the merge counter of update
//! mode, the session count). Partials at times `>= B` are not in the snapshot: the sources read
//! them again after a restore. A resumed query restores both and re-creates the end capability at
//! the earliest session end (which is `>= B`, where the query resumes).

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;
use std::time::Duration;

use rustc_hash::{FxBuildHasher, FxHashMap, FxHashSet};
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

use crate::aggregate::{Aggregator, Count};
use crate::checkpointed::OperatorCheckpoint;
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
        let mut store: StateStore<K, Vec<Session<A::Acc>>> = open_store(ctx, name, worker)?;
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
        OperatorCheckpoint::record_types::<K, Vec<Session<A::Acc>>>(ctx, name);
        let checkpoint = OperatorCheckpoint::register(ctx, name, worker, &["", "index"]);
        if let Some(checkpoint) = &checkpoint {
            checkpoint.restore_store("", &mut store)?;
        }
        let metrics = ctx.metrics().operator(name);
        let (partials, operator_late) =
            pre_sessionize(self.records, name, gap_ms, key_of, aggregator.clone(), &metrics);
        let merger =
            Merger { ctx: ctx.clone(), name: name.to_string(), mode, aggregator, store, metrics: metrics.clone() };
        let results = merge_and_emit(partials, merger, checkpoint)?;
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

/// The sessions' in-memory index as a checkpoint holds it (part `index`; the sessions themselves
/// are the store, part `""`). Generic over the index so it is written from a borrow.
#[derive(Serialize, Deserialize)]
struct SessionIndex<M> {
    /// Completed timestamps merged on this worker so far (update mode's `changed_in`).
    epoch: u64,
    /// Open sessions held (for `numRowsTotal`).
    sessions: i64,
    /// Session end -> keys with (or that had) a session ending there.
    by_end: M,
}

/// What [`SessionIndex`] restores to.
type RestoredIndex<K> = SessionIndex<BTreeMap<u64, Vec<K>>>;
/// The container builder of the results stream.
type ResultBuilder<K, O> = timely::container::CapacityContainerBuilder<Vec<WindowResult<K, O>>>;
/// The results output inside an activation.
type ResultOutput<'a, K, O> = OutputBuilderSession<'a, EventTime, ResultBuilder<K, O>>;

/// Stage 2's state on one worker: the sessions (in the merger's store), the index by end, the
/// capability to emit closed sessions at, and the partials waiting for their time to complete.
struct Stage2<K: ExchangeData + Hash + Eq + Clone, A: Aggregator<D>, D> {
    merger: Merger<K, A, D>,
    pending: Pending<Partial<K, A::Acc>>,
    /// Session end -> keys that have (or had) a session ending there. An entry goes stale when
    /// its session grows or is absorbed; closing checks the key's sessions, so stale entries
    /// only cost a lookup.
    by_end: BTreeMap<u64, Vec<K>>,
    /// Append mode: a capability at or before the earliest end in `by_end`, to emit sessions
    /// at their end. New sessions end after the time they arrive at, so it can always be taken
    /// from the arriving batch's capability.
    end_cap: Option<Capability<EventTime>>,
    changed: FxHashSet<K>,
    /// Completed timestamps merged so far.
    epoch: u64,
    /// Open sessions held.
    sessions: i64,
    out: Vec<WindowResult<K, A::Output>>,
    closed: Vec<(u64, WindowResult<K, A::Output>)>,
    // This activation's counters.
    created: i64,
    removed: u64,
    updated: u64,
    emitted: u64,
}

impl<K: ExchangeData + Hash + Eq + Clone, A: Aggregator<D>, D> Stage2<K, A, D>
where
    A::Output: ExchangeData,
{
    /// Merges the pending partials the frontier `upto` has passed, in time order, and closes the
    /// sessions whose end it has reached — or, with `strict` (acting at a checkpoint boundary
    /// `{B}`), only those ending before it, so that nothing is emitted at `B` or later before the
    /// snapshot (docs/checkpoints.md §2). An empty `upto` ends the input: everything closes.
    fn advance(
        &mut self,
        upto: AntichainRef<'_, EventTime>,
        strict: bool,
        output: &mut ResultOutput<'_, K, A::Output>,
    ) -> Result<(), StateError> {
        let merger = &mut self.merger;
        while let Some((cap, batches)) = self.pending.pop_complete(upto) {
            self.epoch += 1;
            let epoch = self.epoch;
            for batch in batches {
                for (key, start, end, acc) in batch {
                    let merged = merger.merge(&key, start, end, acc, epoch)?;
                    self.updated += 1;
                    if merged.created {
                        self.created += 1;
                    } else {
                        self.removed += merged.absorbed as u64 - 1;
                    }
                    if let Some(end) = merged.new_end {
                        if merger.mode == OutputMode::Append
                            && self.end_cap.as_ref().is_none_or(|c| c.time().as_millis() > end)
                        {
                            self.end_cap = Some(cap.delayed(&EventTime::from_millis(end)));
                        }
                        self.by_end.entry(end).or_default().push(key.clone());
                    }
                    if merger.mode == OutputMode::Update {
                        self.changed.insert(key);
                    }
                }
            }
            if merger.mode == OutputMode::Update && !self.changed.is_empty() {
                for key in self.changed.drain() {
                    if let Some(sessions) = merger.store.get(&key)? {
                        for session in sessions.iter().filter(|s| s.changed_in == epoch) {
                            self.out.push(merger.result(key.clone(), session));
                        }
                    }
                }
                self.emitted += self.out.len() as u64;
                output.session(&cap).give_container(&mut self.out);
                self.out.clear();
            }
        }

        // Close the sessions whose end the frontier has reached: those ending at or before
        // `limit` (every one once the input is exhausted; before `B` when strict).
        let limit = match watermark_of(upto).map(EventTime::as_millis) {
            None => Some(u64::MAX),
            Some(h) if strict => h.checked_sub(1),
            Some(h) => Some(h),
        };
        while let (Some(limit), Some(entry)) = (limit, self.by_end.first_entry()) {
            if *entry.key() > limit {
                break;
            }
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
                self.removed += finished.len() as u64;
                if merger.mode == OutputMode::Append {
                    self.closed.extend(finished.iter().map(|s| (s.end, merger.result(key.clone(), s))));
                }
            }
        }
        if !self.closed.is_empty() {
            let cap = self.end_cap.as_ref().expect("a capability at or before every open session's end");
            self.closed.sort_unstable_by_key(|(end, _)| *end);
            self.emitted += self.closed.len() as u64;
            let mut rows = self.closed.drain(..).peekable();
            while let Some((end, row)) = rows.next() {
                self.out.push(row);
                while let Some((_, row)) = rows.next_if(|(e, _)| *e == end) {
                    self.out.push(row);
                }
                output.session(&cap.delayed(&EventTime::from_millis(end))).give_container(&mut self.out);
                self.out.clear();
            }
        }
        self.downgrade();
        Ok(())
    }

    /// Moves the end capability to the earliest open session's end (or drops it).
    fn downgrade(&mut self) {
        match self.by_end.keys().next() {
            Some(&earliest) => {
                if let Some(cap) = self.end_cap.as_mut() {
                    cap.downgrade(&EventTime::from_millis(earliest));
                }
            }
            None => self.end_cap = None,
        }
    }

    /// Writes epoch `epoch`'s snapshot: the store, then the index.
    fn snapshot(&self, checkpoint: &OperatorCheckpoint, epoch: u64) {
        checkpoint.write_store("", epoch, &self.merger.store);
        let index = SessionIndex {
            epoch: self.epoch,
            sessions: self.sessions + self.created - self.removed as i64,
            by_end: &self.by_end,
        };
        checkpoint.write_bytes("index", epoch, &index);
    }
}

/// Stage 2: on the worker that owns each key, merges partial sessions in timestamp order once
/// their time is complete, emits as the output mode says, and evicts the sessions the frontier
/// has closed. With a checkpoint, it snapshots at every boundary and starts from the restored
/// sessions.
fn merge_and_emit<'scope, K, A, D>(
    partials: StreamVec<'scope, EventTime, Partial<K, A::Acc>>,
    merger: Merger<K, A, D>,
    mut checkpoint: Option<OperatorCheckpoint>,
) -> Result<StreamVec<'scope, EventTime, WindowResult<K, A::Output>>, BuildError>
where
    K: ExchangeData + Hash + Eq + Clone,
    A: Aggregator<D>,
    A::Output: ExchangeData,
    D: 'static,
{
    let route = Exchange::new(|partial: &Partial<K, A::Acc>| FxBuildHasher.hash_one(&partial.0));
    let session_bytes = (std::mem::size_of::<(K, Session<A::Acc>)>() + 16) as i64;
    let name = merger.name.clone();
    // A resumed query starts from the index of the epoch it resumes after (the store was
    // restored when it was opened), with the end capability at or after where it resumes.
    let restored: Option<(RestoredIndex<K>, EventTime)> = match &checkpoint {
        Some(checkpoint) => match (checkpoint.restore_bytes("index")?, checkpoint.resume_at()) {
            (Some(index), Some(resume_at)) => Some((index, resume_at)),
            _ => None,
        },
        None => None,
    };
    Ok(partials.unary_frontier(route, &name, move |initial, _info| {
        let mut stage = Stage2 {
            merger,
            pending: Pending::new(),
            by_end: BTreeMap::new(),
            end_cap: None,
            changed: FxHashSet::default(),
            epoch: 0,
            sessions: 0,
            out: Vec::new(),
            closed: Vec::new(),
            created: 0,
            removed: 0,
            updated: 0,
            emitted: 0,
        };
        if let Some((index, resume_at)) = restored {
            stage.epoch = index.epoch;
            stage.sessions = index.sessions;
            stage.merger.metrics.adjust_state(index.sessions, index.sessions * session_bytes);
            if stage.merger.mode == OutputMode::Append {
                if let Some(&earliest) = index.by_end.keys().next() {
                    stage.end_cap = Some(initial.delayed(&EventTime::from_millis(earliest).max(resume_at)));
                }
            }
            stage.by_end = index.by_end;
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
                // Checkpoint boundaries the frontier has passed: merge and close as if the frontier
                // stood exactly at each, snapshot, then go on (docs/checkpoints.md §2).
                if let Some(checkpoint) = &mut checkpoint {
                    for (epoch, at) in checkpoint.passed_boundaries(real.borrow()) {
                        stage.advance(at.borrow(), true, output)?;
                        stage.snapshot(checkpoint, epoch);
                    }
                }
                stage.advance(real.borrow(), false, output)
            })();
            if let Err(error) = outcome {
                stage.merger.fail(error);
                failed = true;
                stage.end_cap = None;
                stage.pending = Pending::new();
            }

            let rows = stage.created - stage.removed as i64;
            stage.sessions += rows;
            let metrics = &stage.merger.metrics;
            metrics.adjust_state(rows, rows * session_bytes);
            OperatorMetrics::add(&metrics.rows_updated, stage.updated);
            OperatorMetrics::add(&metrics.rows_removed, stage.removed);
            OperatorMetrics::add(&metrics.rows_out, stage.emitted);
            (stage.created, stage.removed, stage.updated, stage.emitted) = (0, 0, 0, 0);
        }
    }))
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
