//! Stream-stream joins with time bounds (interval joins): the `join_interval` operator, its
//! explicit unbounded variant `join_unbounded`, and their extension trait on [`EventStream`].
//!
//! A left row `l` and a right row `r` match when their keys are equal and
//! `l.time + lower <= r.time <= l.time + upper`. Both inputs are exchanged by the key's hash, so
//! the worker owning a key sees both sides of it. Each worker keeps the rows of each side in a
//! [`StateStore`] (join key → buffered rows) and joins every record as it arrives against the
//! rows buffered on the other side, then buffers it; a pair is therefore found exactly once, by
//! whichever of its two rows arrives second.
//!
//! **Eviction comes from the frontier of the other input.** A left row can only be matched by a
//! right row with `r.time <= l.time + upper`, and every right row still to come is at or after the
//! right input's frontier, so the left row is evicted as soon as `right frontier > l.time + upper`.
//! Symmetrically a right row is evicted once `left frontier > r.time - lower`. (The operator's
//! combined frontier, the minimum of the two, would also be safe but evicts later.) Only then is a
//! row known never to match again, so that is when the outer variants emit the NULL-padded row of
//! a row that never matched, and the anti join its left row: exactly at eviction, never before.
//!
//! **Output times.** A matched pair carries `max(l.time, r.time)`; a padded row, a semi row and an
//! anti row carry their own row's time. Every output record's event time is at or after the timely
//! time it is emitted at (except as said under *Checkpoints* below), so the output is an on-time
//! [`EventStream`] for a downstream window.
//! Pairs are emitted at the stamp of the batch that completed them. Rows emitted later (padded,
//! semi, anti) need a capability at or before their time: the operator holds one at the earliest
//! buffered row of each side that may still be emitted (left rows for left outer, full outer, semi
//! and anti; right rows for right and full outer). So the output watermark of those joins trails
//! the input watermark by about `upper` (left) or `-lower` (right), like Spark's watermark delay
//! for outer stream-stream joins; inner joins add no delay.
//!
//! **State.** Per worker and side, a [`StateStore`] (memory or RocksDB, as the context's state
//! backend says) maps each join key to its buffered rows (time, row, matched flag), and an
//! in-memory index orders keys by time for eviction (one entry per key, see `Side`). `numRowsTotal`
//! counts the buffered rows of both sides; `numRowsUpdated` the rows buffered; `numRowsRemoved`
//! the rows evicted. Semi and anti joins drop a left row as soon as it matches (it will never be
//! emitted again), earlier than eviction. On RocksDB a key's rows are one value, read and
//! rewritten whole when a row of the key arrives, so keys with very many rows in the time
//! interval are slow there.
//!
//! **Checkpoints** (`docs/checkpoints.md` §2). The join applies input as it arrives, not once its
//! frontier has passed it, so in a query that checkpoints a batch at or after the next boundary
//! `B` not snapshotted yet waits (it is not applied) until the snapshot at `B` is written. Each
//! input's frontier counts, for eviction, only as far as the input is applied: clamped to `B`.
//! When both input frontiers have passed `B`, the join acts exactly as if both stood at `{B}`:
//! it applies the waiting batches before `B`, evicts left rows below `B - upper` and right rows
//! below `B + lower` (emitting their padded / anti rows), moves the capability it holds for rows
//! emitted later up to `B`, and writes both stores (`write_store`: RocksDB checkpoints of hard
//! links, or bytes) and the held capability's time; then it goes on with the real frontiers.
//! Batches at `B` or later are not in the snapshot (the sources read them again after a restart).
//! So that rows evicted before the snapshot at `B` are emitted below `B`, the held capability
//! stays below the applied frontier between snapshots. On recovery both stores are restored, the
//! eviction index is rebuilt from them, and the held capability is re-created at the resume
//! boundary. One consequence: a padded, semi or anti row of a row buffered across a boundary is
//! emitted at or after that boundary, after its own event time (which a downstream event-time
//! operator would count as late); pairs are unaffected.
//!
//! **Late records.** A record whose event time is below its batch's stamp is late for the join: it
//! is counted and routed to the late output of its side, and joined with nothing (an earlier row
//! it could have matched may already be evicted). Records late at their source arrive on
//! [`EventStream::late`] and are relabelled with the join's name.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hash};
use std::rc::Rc;
use std::time::Duration;

use rustc_hash::FxBuildHasher;
use serde::{Deserialize, Serialize};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::operator::empty;
use timely::dataflow::operators::generic::{OutputBuilder, OutputBuilderSession};
use timely::dataflow::operators::{Capability, CapabilityTrait, Concat, InputCapability};
use timely::dataflow::StreamVec;
use timely::progress::frontier::AntichainRef;
use timely::progress::Antichain;
use timely::ExchangeData;
use weir_runtime::context::QueryContext;
use weir_runtime::error::{BuildError, QueryError};
use weir_runtime::event::{Event, EventStream, LateRecord};
use weir_runtime::metrics::OperatorMetrics;
use weir_runtime::state::{StateError, StateKey, StateStore, StateValue};
use weir_runtime::time::{parse_signed_duration, DurationParseError, EventTime};

use crate::checkpointed::OperatorCheckpoint;
use crate::join_type::JoinType;
use crate::late::relabel_late;
use crate::pending::{watermark_of, Pending};

/// A signed offset from a left row's event time, in milliseconds: the bounds of an interval join
/// (`-5s` is "5 seconds before").
///
/// ```
/// use std::time::Duration;
/// use weir_operators::interval_join::TimeOffset;
/// assert_eq!(TimeOffset::parse("-5s").unwrap(), TimeOffset::before(Duration::from_secs(5)));
/// assert_eq!(TimeOffset::parse("1m").unwrap().as_millis(), 60_000);
/// assert_eq!(TimeOffset::from(Duration::from_millis(250)), TimeOffset::from_millis(250));
/// assert_eq!(TimeOffset::from_millis(-1500).to_string(), "-1500ms");
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TimeOffset(i64);

impl TimeOffset {
    /// No offset: the left row's own time.
    pub const ZERO: TimeOffset = TimeOffset(0);

    /// An offset of `millis` milliseconds (negative: before the left row's time).
    pub const fn from_millis(millis: i64) -> Self {
        TimeOffset(millis)
    }

    /// The offset `duration` before the left row's time.
    pub fn before(duration: Duration) -> Self {
        TimeOffset(-(duration.as_millis().min(i64::MAX as u128) as i64))
    }

    /// The offset `duration` after the left row's time.
    pub fn after(duration: Duration) -> Self {
        TimeOffset(duration.as_millis().min(i64::MAX as u128) as i64)
    }

    /// Parses a signed human duration such as `-5s`, `10s`, `+1m30s` or `-250ms` (a bare number
    /// is milliseconds).
    pub fn parse(text: &str) -> Result<Self, DurationParseError> {
        let (negative, duration) = parse_signed_duration(text)?;
        Ok(if negative { TimeOffset::before(duration) } else { TimeOffset::after(duration) })
    }

    /// The offset in milliseconds.
    pub const fn as_millis(self) -> i64 {
        self.0
    }
}

impl From<Duration> for TimeOffset {
    fn from(duration: Duration) -> Self {
        TimeOffset::after(duration)
    }
}

impl std::fmt::Display for TimeOffset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}ms", self.0)
    }
}

/// One output row of a join: a matched pair, or one side padded with `None`.
///
/// Inner joins emit pairs; outer joins also emit unmatched rows with the other side `None`; semi
/// and anti joins emit left rows only (`right` is always `None`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct JoinedRow<L, R> {
    /// The left row, or `None` for an unmatched right row of a right or full outer join.
    pub left: Option<L>,
    /// The right row, or `None` for an unmatched left row, and in semi and anti joins.
    pub right: Option<R>,
}

impl<L, R> JoinedRow<L, R> {
    /// A matched pair.
    pub fn pair(left: L, right: R) -> Self {
        JoinedRow { left: Some(left), right: Some(right) }
    }

    /// A left row without a right row (unmatched in an outer join, or a semi/anti row).
    pub fn left_only(left: L) -> Self {
        JoinedRow { left: Some(left), right: None }
    }

    /// A right row without a left row (unmatched in a right or full outer join).
    pub fn right_only(right: R) -> Self {
        JoinedRow { left: None, right: Some(right) }
    }
}

/// The outputs of an interval join.
pub struct Joined<'scope, L: 'static, R: 'static> {
    /// The joined rows, each with its event time (a pair: the later of its two rows' times; a
    /// padded, semi or anti row: its own row's time), never before the timely time it is emitted
    /// at (in a query that checkpoints, a padded, semi or anti row of a row buffered across a
    /// boundary is the exception: it is emitted at or after that boundary). `rows.late` carries
    /// nothing: the join consumes the late records of its inputs and reports them on `late_left`
    /// and `late_right`, so `rows` can feed another event-time operator directly.
    pub rows: EventStream<'scope, JoinedRow<L, R>>,
    /// Left records that were late (at their source partition, or for this join), naming the join.
    pub late_left: StreamVec<'scope, EventTime, LateRecord<L>>,
    /// Right records that were late (at their source partition, or for this join), naming the join.
    pub late_right: StreamVec<'scope, EventTime, LateRecord<R>>,
}

/// Interval joins of two event streams.
pub trait IntervalJoin<'scope, L: ExchangeData + Clone> {
    /// Joins this stream (left) with `right` on `left_key(l) == right_key(r)` and
    /// `l.time + lower <= r.time <= l.time + upper`, emitting what `join_type` says.
    ///
    /// State is bounded: a left row is evicted once the right input's watermark passes
    /// `l.time + upper`, a right row once the left input's watermark passes `r.time - lower`
    /// (`numRowsTotal` counts the rows buffered on both sides). Outer joins emit a padded row,
    /// and anti joins their left row, at that eviction and only if the row never matched; semi
    /// joins emit each left row at its first match. `lower > upper` is rejected at build time.
    ///
    /// ```
    /// use std::time::Duration;
    /// use weir_operators::prelude::*;
    /// use weir_runtime::prelude::*;
    /// use weir_runtime::timely::dataflow::operators::{Inspect, ToStream};
    ///
    /// let ctx = QueryContext::ephemeral("doc");
    /// let out = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    /// let sink = out.clone();
    /// timely::execute_directly(move |worker| {
    ///     worker.dataflow::<EventTime, _, _>(|scope| {
    ///         let events = |rows: Vec<(u64, &str)>| EventStream {
    ///             records: rows.into_iter().map(|(t, ad)| Event::new(EventTime::from_millis(t), ad.to_string()))
    ///                 .collect::<Vec<_>>().to_stream(scope).container::<Vec<_>>(),
    ///             late: Vec::<LateRecord<String>>::new().to_stream(scope).container::<Vec<_>>(),
    ///         };
    ///         // Clicks (right) within 10 s after an impression (left) of the same ad.
    ///         let impressions = events(vec![(1_000, "ad1"), (2_000, "ad2")]);
    ///         let clicks = events(vec![(4_000, "ad1"), (30_000, "ad2")]);
    ///         let joined = impressions
    ///             .join_interval(&ctx, "impressions-clicks", clicks, |ad: &String| ad.clone(),
    ///                            |ad: &String| ad.clone(), TimeOffset::ZERO, Duration::from_secs(10),
    ///                            JoinType::LeftOuter)
    ///             .unwrap();
    ///         joined.rows.records.inspect(move |e| sink.lock().unwrap().push((e.time.as_millis(), e.data.clone())));
    ///     });
    /// });
    /// // (ad1, ad1) at 4000, and (ad2, None) at 2000 once the clicks' watermark passed 12000.
    /// let mut rows = out.lock().unwrap().clone();
    /// rows.sort();
    /// let ad = |s: &str| s.to_string();
    /// assert_eq!(rows, vec![(2_000, JoinedRow::left_only(ad("ad2"))), (4_000, JoinedRow::pair(ad("ad1"), ad("ad1")))]);
    /// ```
    #[allow(clippy::too_many_arguments)]
    fn join_interval<R, K>(
        self,
        ctx: &QueryContext,
        name: &str,
        right: EventStream<'scope, R>,
        left_key: impl Fn(&L) -> K + 'static,
        right_key: impl Fn(&R) -> K + 'static,
        lower: impl Into<TimeOffset>,
        upper: impl Into<TimeOffset>,
        join_type: JoinType,
    ) -> Result<Joined<'scope, L, R>, BuildError>
    where
        R: ExchangeData + Clone,
        K: ExchangeData + Clone + Hash + Eq;

    /// Joins on keys alone, whatever the event times: **state grows without bound** until an
    /// input ends (nothing can be evicted while both inputs may still deliver a match), and outer
    /// and anti rows are only emitted when the other input ends. An explicit opt-in; logs a
    /// warning when built. Prefer [`IntervalJoin::join_interval`].
    fn join_unbounded<R, K>(
        self,
        ctx: &QueryContext,
        name: &str,
        right: EventStream<'scope, R>,
        left_key: impl Fn(&L) -> K + 'static,
        right_key: impl Fn(&R) -> K + 'static,
        join_type: JoinType,
    ) -> Result<Joined<'scope, L, R>, BuildError>
    where
        R: ExchangeData + Clone,
        K: ExchangeData + Clone + Hash + Eq;
}

impl<'scope, L: ExchangeData + Clone> IntervalJoin<'scope, L> for EventStream<'scope, L> {
    fn join_interval<R, K>(
        self,
        ctx: &QueryContext,
        name: &str,
        right: EventStream<'scope, R>,
        left_key: impl Fn(&L) -> K + 'static,
        right_key: impl Fn(&R) -> K + 'static,
        lower: impl Into<TimeOffset>,
        upper: impl Into<TimeOffset>,
        join_type: JoinType,
    ) -> Result<Joined<'scope, L, R>, BuildError>
    where
        R: ExchangeData + Clone,
        K: ExchangeData + Clone + Hash + Eq,
    {
        let (lower, upper) = (lower.into(), upper.into());
        if lower > upper {
            return Err(BuildError::invalid(
                format!("bounds of interval join {name}"),
                format!(
                    "the lower bound {lower} is after the upper bound {upper}, so no pair could ever match \
                     (a pair needs left.time + lower <= right.time <= left.time + upper)"
                ),
                "give lower <= upper, e.g. --lower -5s --upper 10s",
            ));
        }
        let bounds = Bounds { lower: lower.as_millis() as i128, upper: upper.as_millis() as i128 };
        build(self, ctx, name, right, Rc::new(left_key), Rc::new(right_key), bounds, join_type)
    }

    fn join_unbounded<R, K>(
        self,
        ctx: &QueryContext,
        name: &str,
        right: EventStream<'scope, R>,
        left_key: impl Fn(&L) -> K + 'static,
        right_key: impl Fn(&R) -> K + 'static,
        join_type: JoinType,
    ) -> Result<Joined<'scope, L, R>, BuildError>
    where
        R: ExchangeData + Clone,
        K: ExchangeData + Clone + Hash + Eq,
    {
        if self.records.scope().index() == 0 {
            tracing::warn!(
                operator = name,
                join_type = %join_type,
                "unbounded join: its state grows without bound until an input ends, because without time \
                 bounds no row can ever be evicted (and outer/anti rows wait for the other input to end); \
                 use join_interval with lower and upper bounds to bound it"
            );
        }
        let bounds = Bounds { lower: -UNBOUNDED, upper: UNBOUNDED };
        build(self, ctx, name, right, Rc::new(left_key), Rc::new(right_key), bounds, join_type)
    }
}

/// What `explain` says about an interval join: its bounds, or UNBOUNDED.
fn join_plan(name: &str, bounds: Bounds, join_type: JoinType) -> weir_runtime::plan::OperatorPlan {
    use weir_runtime::plan::{format_duration, OperatorPlan, StateBound};
    let offset = |ms: i128| {
        let text = format_duration(std::time::Duration::from_millis(ms.unsigned_abs() as u64));
        if ms < 0 {
            format!("-{text}")
        } else {
            text
        }
    };
    let (kind, state) = if bounds.upper >= UNBOUNDED {
        (
            format!("{join_type} join, no time bounds"),
            StateBound::Unbounded("join_unbounded keeps every row of both inputs until an input ends".to_string()),
        )
    } else {
        (
            format!(
                "{join_type} interval join, left.time {} <= right.time <= left.time {}",
                signed(&offset(bounds.lower)),
                signed(&offset(bounds.upper))
            ),
            StateBound::JoinBound(format!(
                "a left row is dropped when the right watermark passes its time {}, a right row when the left \
                 watermark passes its time {}",
                signed(&offset(bounds.upper)),
                signed(&offset(-bounds.lower))
            )),
        )
    };
    OperatorPlan::operator(name, kind).state(state).output_mode("append").exchange("both inputs by key")
}

fn signed(offset: &str) -> String {
    match offset.strip_prefix('-') {
        Some(rest) => format!("- {rest}"),
        None => format!("+ {offset}"),
    }
}

/// A bound far beyond any event time, so that `time ± UNBOUNDED` never overflows an `i128`.
const UNBOUNDED: i128 = 1 << 100;

/// The interval `[lower, upper]` of `right.time - left.time`, in milliseconds.
#[derive(Clone, Copy, Debug)]
struct Bounds {
    lower: i128,
    upper: i128,
}

impl Bounds {
    #[inline]
    fn matches(&self, left: EventTime, right: EventTime) -> bool {
        let delta = right.as_millis() as i128 - left.as_millis() as i128;
        self.lower <= delta && delta <= self.upper
    }

    /// Left rows with a time below this can no longer match: `right frontier - upper`
    /// (everything once the right input has ended).
    fn left_eviction_bound(&self, right_frontier: Option<EventTime>) -> Bound {
        Bound::of(right_frontier.map(|f| f.as_millis() as i128 - self.upper))
    }

    /// Right rows with a time below this can no longer match: `left frontier + lower`.
    fn right_eviction_bound(&self, left_frontier: Option<EventTime>) -> Bound {
        Bound::of(left_frontier.map(|f| f.as_millis() as i128 + self.lower))
    }
}

/// Rows with an event time below `0` are evictable (`None`: every row is).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Bound(Option<EventTime>);

impl Bound {
    /// Evicts no row.
    const NOTHING: Bound = Bound(Some(EventTime::MIN));

    fn of(limit: Option<i128>) -> Self {
        match limit {
            None => Bound(None),
            Some(limit) if limit > u64::MAX as i128 => Bound(None),
            Some(limit) => Bound(Some(EventTime::from_millis(limit.max(0) as u64))),
        }
    }

    #[inline]
    fn evicts(self, time: EventTime) -> bool {
        self.0.is_none_or(|limit| time < limit)
    }
}

/// One buffered row with its event time and whether it has matched.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Buffered<T> {
    time: EventTime,
    matched: bool,
    row: T,
}

/// The buffered rows of one key on one side, with the time of the key's entry in the eviction
/// index (at or before every row's time).
#[derive(Clone, Debug, Serialize, Deserialize)]
struct KeyRows<T> {
    indexed_at: EventTime,
    rows: Vec<Buffered<T>>,
}

/// The rows of one side on one worker: join key → buffered rows in the state store, and an
/// in-memory index of keys by time for eviction.
///
/// The index holds one live entry per key, at the key's `indexed_at`, which is at or before the
/// key's earliest row: an insert earlier than that moves it (leaving a stale entry behind), and
/// eviction visits a key once, evicts its expired rows and re-indexes it at its earliest
/// remaining row. A visit from an entry that is not at `indexed_at` is stale and skipped (the live
/// entry is earlier, so it is visited in the same pass). So a key costs one index entry and one
/// visit per eviction pass, however many rows it holds.
struct Side<K: StateKey, T: StateValue> {
    store: StateStore<K, KeyRows<T>>,
    by_time: BTreeMap<EventTime, Vec<K>>,
}

impl<K: StateKey, T: StateValue> Side<K, T> {
    fn open(ctx: &QueryContext, name: &str, side: &str, worker: usize) -> Result<Self, BuildError> {
        let store_name = format!("{name}-{side}");
        let store = ctx.state_backend().open(ctx.id(), &store_name, worker).map_err(|error| {
            BuildError::invalid(
                format!("state backend of interval join {name} ({side} side)"),
                format!("the {} store could not be opened: {error}", ctx.state_backend().describe()),
                "check that the state directory is writable, or use the memory backend",
            )
        })?;
        Ok(Side { store, by_time: BTreeMap::new() })
    }

    /// A time at or before every buffered row's time.
    fn earliest(&self) -> Option<EventTime> {
        self.by_time.keys().next().copied()
    }

    /// Buffers `row` under `key`.
    fn insert(&mut self, key: K, row: Buffered<T>) -> Result<(), StateError> {
        let time = row.time;
        // Whether the key's index entry must move (new key, or a row before its entry).
        let add = |rows: &mut KeyRows<T>| {
            let earlier = time < rows.indexed_at;
            if earlier {
                rows.indexed_at = time;
            }
            earlier
        };
        let reindex = match &mut self.store {
            StateStore::Memory(memory) => match memory.get_mut(&key) {
                Some(rows) => {
                    rows.rows.push(row);
                    add(rows)
                }
                None => {
                    memory.put(key.clone(), KeyRows { indexed_at: time, rows: vec![row] });
                    true
                }
            },
            store => store.modify(&key, |slot| match slot {
                Some(rows) => {
                    rows.rows.push(row);
                    add(rows)
                }
                None => {
                    *slot = Some(KeyRows { indexed_at: time, rows: vec![row] });
                    true
                }
            })?,
        };
        if reindex {
            self.by_time.entry(time).or_default().push(key);
        }
        Ok(())
    }

    /// Calls `f` on the buffered rows of `key` (if any) to change them; removes the key if `f`
    /// leaves no row.
    fn update<Out>(
        &mut self,
        key: &K,
        f: impl FnOnce(&mut Vec<Buffered<T>>) -> Out,
    ) -> Result<Option<Out>, StateError> {
        self.update_key(key, |rows| f(&mut rows.rows))
    }

    fn update_key<Out>(&mut self, key: &K, f: impl FnOnce(&mut KeyRows<T>) -> Out) -> Result<Option<Out>, StateError> {
        match &mut self.store {
            StateStore::Memory(memory) => {
                let Some(rows) = memory.get_mut(key) else { return Ok(None) };
                let out = f(rows);
                if rows.rows.is_empty() {
                    memory.remove(key);
                }
                Ok(Some(out))
            }
            store => store.modify(key, |slot| {
                let rows = slot.as_mut()?;
                let out = f(rows);
                if rows.rows.is_empty() {
                    *slot = None;
                }
                Some(out)
            }),
        }
    }

    /// Removes every row with a time `bound` evicts, calling `evicted` with each; returns how many.
    fn evict(&mut self, bound: Bound, mut evicted: impl FnMut(Buffered<T>)) -> Result<u64, StateError> {
        let expired = match bound.0 {
            None => std::mem::take(&mut self.by_time),
            Some(limit) => {
                let kept = self.by_time.split_off(&limit);
                std::mem::replace(&mut self.by_time, kept)
            }
        };
        let mut removed = 0u64;
        for (entry, keys) in expired {
            for key in keys {
                let reindex = self.update_key(&key, |rows| {
                    if rows.indexed_at != entry {
                        return None; // a stale entry: the key's live one is earlier
                    }
                    let mut earliest: Option<EventTime> = None;
                    let mut index = 0;
                    while index < rows.rows.len() {
                        let time = rows.rows[index].time;
                        if bound.evicts(time) {
                            evicted(rows.rows.swap_remove(index));
                            removed += 1;
                        } else {
                            earliest = Some(earliest.map_or(time, |e| e.min(time)));
                            index += 1;
                        }
                    }
                    if let Some(time) = earliest {
                        rows.indexed_at = time;
                    }
                    earliest
                })?;
                if let Some(time) = reindex.flatten() {
                    self.by_time.entry(time).or_default().push(key);
                }
            }
        }
        Ok(removed)
    }
}

type Output<D> = OutputBuilder<EventTime, CapacityContainerBuilder<Vec<D>>>;
/// The activated output of joined rows.
type RowsSession<'a, L, R> = OutputBuilderSession<'a, EventTime, CapacityContainerBuilder<Vec<Event<JoinedRow<L, R>>>>>;

/// Port of the joined rows; the late outputs follow.
const ROWS: usize = 0;

/// Emits `$batch`, if it holds anything, at capability `$cap` through the activated output
/// `$handle`, adds its length to the counter `$count`, and leaves it empty for reuse. (A macro:
/// the left, right and later batches go to differently typed outputs.)
macro_rules! give_counted {
    ($handle:expr, $cap:expr, $batch:expr, $count:expr) => {
        if !$batch.is_empty() {
            $count += $batch.len() as u64;
            $handle.session($cap).give_container(&mut $batch);
            $batch.clear();
        }
    };
}

/// Joined rows are handed on at least this often while a batch is processed (a batch of a 1:N
/// join can produce N times its size).
const FLUSH_ROWS: usize = 16_384;

/// What an interval join writes to a checkpoint besides its two stores (parts `left` and
/// `right`): the time of the capability it holds for rows emitted later (padded, semi and anti
/// rows), re-created at `max(held, resume_at)` on recovery. The stores' eviction index is not
/// written: it is rebuilt from the restored rows.
#[derive(Debug, Default, Serialize, Deserialize)]
struct JoinSnapshot {
    held: Option<EventTime>,
}

/// A capability of an input batch (as it arrives, or kept while it waits for a checkpoint) from
/// which the joined-rows output's capabilities are derived.
trait RowsCapability: CapabilityTrait<EventTime> {
    fn rows_at(&self, time: &EventTime) -> Capability<EventTime>;
}

impl RowsCapability for InputCapability<EventTime> {
    fn rows_at(&self, time: &EventTime) -> Capability<EventTime> {
        self.delayed(time, ROWS)
    }
}

impl RowsCapability for Capability<EventTime> {
    fn rows_at(&self, time: &EventTime) -> Capability<EventTime> {
        self.delayed(time)
    }
}

/// Row counts of one activation, for the metrics.
#[derive(Default)]
struct Counts {
    inserted_left: i64,
    inserted_right: i64,
    removed_left: i64,
    removed_right: i64,
    emitted: u64,
}

/// One worker's join: both sides' rows, the capability held for rows emitted later, and the
/// logic applied to input batches and at eviction.
struct Core<K: StateKey, L: StateValue, R: StateValue> {
    lefts: Side<K, L>,
    rights: Side<K, R>,
    left_key: Rc<dyn Fn(&L) -> K>,
    right_key: Rc<dyn Fn(&R) -> K>,
    bounds: Bounds,
    join_type: JoinType,
    /// A capability at or before every buffered row that may still be emitted (see the module
    /// docs), and, when the query checkpoints, below the next boundary (see `settle_held`).
    held: Option<Capability<EventTime>>,
    checkpointing: bool,
    now: Vec<Event<JoinedRow<L, R>>>,
    later: Vec<Event<JoinedRow<L, R>>>,
    counts: Counts,
}

impl<K: StateKey, L: StateValue, R: StateValue> Core<K, L, R> {
    fn emits_left_later(&self) -> bool {
        self.join_type.emits_unmatched_left() || self.join_type == JoinType::LeftSemi
    }

    fn emits_right_later(&self) -> bool {
        self.join_type.emits_unmatched_right()
    }

    /// The eviction bounds of both sides for these input frontiers (`None`: ended).
    fn eviction_bounds(&self, left_frontier: Option<EventTime>, right_frontier: Option<EventTime>) -> (Bound, Bound) {
        (self.bounds.left_eviction_bound(right_frontier), self.bounds.right_eviction_bound(left_frontier))
    }

    /// Holds a capability for a row at `time` that may be emitted later, from its batch's `cap`:
    /// at the row's time, or, when checkpointing, at the batch's time (below the next boundary).
    fn hold<C: RowsCapability>(&mut self, cap: &C, time: EventTime) {
        let at = if self.checkpointing { *cap.time() } else { time };
        if self.held.as_ref().is_none_or(|h| *h.time() > at) {
            self.held = Some(cap.rows_at(&at));
        }
    }

    fn flush_now<C: RowsCapability>(&mut self, cap: &C, rows: &mut RowsSession<'_, L, R>) {
        give_counted!(rows, cap, self.now, self.counts.emitted);
    }

    /// Joins on-time left rows stamped at `cap` with the buffered right rows, then buffers them
    /// (or settles them now if `left_bound` says no right row still to come can match).
    fn join_left<C: RowsCapability>(
        &mut self,
        cap: &C,
        batch: &mut Vec<Event<L>>,
        left_bound: Bound,
        rows: &mut RowsSession<'_, L, R>,
    ) -> Result<(), StateError> {
        let (join_type, bounds) = (self.join_type, self.bounds);
        let keep_right_flags = join_type.emits_unmatched_right();
        let emits_left_later = self.emits_left_later();
        for event in batch.drain(..) {
            if self.now.len() >= FLUSH_ROWS {
                self.flush_now(cap, rows);
            }
            let (time, row) = (event.time, event.data);
            let key = (self.left_key)(&row);
            // Join with the buffered right rows.
            let mut matched = false;
            let now = &mut self.now;
            if keep_right_flags {
                self.rights.update(&key, |rights| {
                    for r in rights.iter_mut().filter(|r| bounds.matches(time, r.time)) {
                        r.matched = true;
                        matched = true;
                        now.push(pair(&row, &r.row, time, r.time));
                    }
                })?;
            } else if let Some(found) = self.rights.store.get(&key)? {
                for r in found.rows.iter() {
                    if bounds.matches(time, r.time) {
                        matched = true;
                        if join_type.emits_pairs() {
                            now.push(pair(&row, &r.row, time, r.time));
                        } else {
                            break;
                        }
                    }
                }
            }
            if matched && join_type.left_rows_only() {
                // Semi: emitted once, now; anti: never. Neither needs the row again.
                if join_type == JoinType::LeftSemi {
                    self.now.push(Event::new(time, JoinedRow::left_only(row)));
                }
                continue;
            }
            if left_bound.evicts(time) {
                // No right row still to come can match it: settle it now, unbuffered.
                if !matched && join_type.emits_unmatched_left() {
                    self.now.push(Event::new(time, JoinedRow::left_only(row)));
                }
                continue;
            }
            if emits_left_later {
                self.hold(cap, time);
            }
            self.lefts.insert(key, Buffered { time, matched, row })?;
            self.counts.inserted_left += 1;
        }
        self.flush_now(cap, rows);
        Ok(())
    }

    /// Joins on-time right rows stamped at `cap` with the buffered left rows, then buffers them
    /// (or settles them now if `right_bound` says no left row still to come can match).
    fn join_right<C: RowsCapability>(
        &mut self,
        cap: &C,
        batch: &mut Vec<Event<R>>,
        right_bound: Bound,
        rows: &mut RowsSession<'_, L, R>,
    ) -> Result<(), StateError> {
        let (join_type, bounds) = (self.join_type, self.bounds);
        let keep_left_flags = join_type.emits_unmatched_left();
        let emits_right_later = self.emits_right_later();
        for event in batch.drain(..) {
            if self.now.len() >= FLUSH_ROWS {
                self.flush_now(cap, rows);
            }
            let (time, row) = (event.time, event.data);
            let key = (self.right_key)(&row);
            let mut matched = false;
            let (now, later, removed_left) = (&mut self.now, &mut self.later, &mut self.counts.removed_left);
            match join_type {
                JoinType::LeftSemi | JoinType::LeftAnti => {
                    self.lefts.update(&key, |lefts| {
                        // Each matching left row is settled: semi emits it (its first match),
                        // anti drops it. Either way it leaves the state.
                        let mut index = 0;
                        while index < lefts.len() {
                            if bounds.matches(lefts[index].time, time) {
                                let l = lefts.swap_remove(index);
                                matched = true;
                                *removed_left += 1;
                                if join_type == JoinType::LeftSemi {
                                    later.push(Event::new(l.time, JoinedRow::left_only(l.row)));
                                }
                            } else {
                                index += 1;
                            }
                        }
                    })?;
                }
                _ if keep_left_flags => {
                    self.lefts.update(&key, |lefts| {
                        for l in lefts.iter_mut().filter(|l| bounds.matches(l.time, time)) {
                            l.matched = true;
                            matched = true;
                            now.push(pair(&l.row, &row, l.time, time));
                        }
                    })?;
                }
                _ => {
                    if let Some(found) = self.lefts.store.get(&key)? {
                        for l in found.rows.iter() {
                            if bounds.matches(l.time, time) {
                                matched = true;
                                now.push(pair(&l.row, &row, l.time, time));
                            }
                        }
                    }
                }
            }
            if right_bound.evicts(time) {
                if !matched && join_type.emits_unmatched_right() {
                    self.now.push(Event::new(time, JoinedRow::right_only(row)));
                }
                continue;
            }
            if emits_right_later {
                self.hold(cap, time);
            }
            self.rights.insert(key, Buffered { time, matched, row })?;
            self.counts.inserted_right += 1;
        }
        self.flush_now(cap, rows);
        Ok(())
    }

    /// Evicts what the bounds say can no longer match, and emits the padded / anti rows of the
    /// evicted rows that never matched (and the semi rows found since the last call) at the held
    /// capability.
    fn evict(
        &mut self,
        left_bound: Bound,
        right_bound: Bound,
        rows: &mut RowsSession<'_, L, R>,
    ) -> Result<(), StateError> {
        let join_type = self.join_type;
        let later = &mut self.later;
        let evicted = self.lefts.evict(left_bound, |l| {
            if !l.matched && join_type.emits_unmatched_left() {
                later.push(Event::new(l.time, JoinedRow::left_only(l.row)));
            }
        })?;
        self.counts.removed_left += evicted as i64;
        let evicted = self.rights.evict(right_bound, |r| {
            if !r.matched && join_type.emits_unmatched_right() {
                later.push(Event::new(r.time, JoinedRow::right_only(r.row)));
            }
        })?;
        self.counts.removed_right += evicted as i64;
        if !self.later.is_empty() {
            let cap = self.held.as_ref().expect("a held capability for every buffered row that may be emitted");
            give_counted!(rows, cap, self.later, self.counts.emitted);
        }
        Ok(())
    }

    /// Moves the held capability up to the earliest buffered row that may still be emitted (or
    /// drops it when there is none), never above `ceiling` nor below `floor` (both only when
    /// checkpointing: below the next boundary, at or above the last one snapshotted).
    fn settle_held(&mut self, ceiling: Option<EventTime>, floor: Option<EventTime>) {
        let earliest = [
            self.emits_left_later().then(|| self.lefts.earliest()),
            self.emits_right_later().then(|| self.rights.earliest()),
        ]
        .into_iter()
        .flatten()
        .flatten()
        .min();
        let Some(mut target) = earliest else {
            self.held = None;
            return;
        };
        if self.checkpointing {
            if let Some(ceiling) = ceiling {
                target = target.min(ceiling);
            }
            if let Some(floor) = floor {
                target = target.max(floor);
            }
        }
        if let Some(cap) = self.held.as_mut() {
            if target > *cap.time() {
                cap.downgrade(&target);
            }
        }
    }

    /// Applies the waiting batches before `upto` and evicts as if both input frontiers stood at
    /// `watermark` (`upto`'s time; `None` once every input has ended).
    fn catch_up(
        &mut self,
        upto: AntichainRef<'_, EventTime>,
        watermarks: (Option<EventTime>, Option<EventTime>),
        waiting: &mut (Pending<Event<L>>, Pending<Event<R>>),
        rows: &mut RowsSession<'_, L, R>,
    ) -> Result<(), StateError> {
        // The waiting batches are buffered without settling any row on the way: the other side's
        // waiting rows before `upto` are applied after them, and may match them. The eviction
        // after settles what the bounds allow.
        while let Some((cap, batches)) = waiting.0.pop_complete(upto) {
            for mut batch in batches {
                self.join_left(&cap, &mut batch, Bound::NOTHING, rows)?;
            }
        }
        while let Some((cap, batches)) = waiting.1.pop_complete(upto) {
            for mut batch in batches {
                self.join_right(&cap, &mut batch, Bound::NOTHING, rows)?;
            }
        }
        let (left_bound, right_bound) = self.eviction_bounds(watermarks.0, watermarks.1);
        self.evict(left_bound, right_bound, rows)
    }
}

/// Moves the records of `batch` that are behind its stamp to `late` (they are late for the join).
fn split_late<D>(batch: &mut Vec<Event<D>>, stamp: EventTime, late: &mut Vec<LateRecord<D>>, name: &str) {
    if !batch.iter().any(|event| event.time < stamp) {
        return;
    }
    let mut on_time = Vec::with_capacity(batch.len());
    for event in batch.drain(..) {
        if event.time < stamp {
            late.push(LateRecord::new(event.data, event.time, stamp, name));
        } else {
            on_time.push(event);
        }
    }
    *batch = on_time;
}

/// An input frontier as far as the join has applied that input: `frontier`, but never beyond
/// `boundary`, the next checkpoint boundary not snapshotted yet (input at or after it waits).
fn clamp(frontier: Option<EventTime>, boundary: Option<EventTime>) -> Option<EventTime> {
    match (frontier, boundary) {
        (_, None) => frontier,
        (_, Some(EventTime::MAX)) => frontier,
        (None, Some(boundary)) => Some(boundary),
        (Some(frontier), Some(boundary)) => Some(frontier.min(boundary)),
    }
}

/// Restores a side from the checkpoint part `part`, rebuilds its eviction index and returns its
/// row count.
fn restore_side<K: StateKey, T: StateValue>(
    checkpoint: &OperatorCheckpoint,
    part: &str,
    side: &mut Side<K, T>,
) -> Result<i64, BuildError> {
    checkpoint.restore_store(part, &mut side.store)?;
    let mut rows = 0i64;
    let by_time = &mut side.by_time;
    side.store
        .for_each(|key, value| {
            rows += value.rows.len() as i64;
            by_time.entry(value.indexed_at).or_default().push(key.clone());
        })
        .map_err(|error| {
            BuildError::invalid(
                format!("checkpointed state of operator {} ({part} side)", checkpoint.part_name(part)),
                error.to_string(),
                "restart with --reset-checkpoint to start over",
            )
        })?;
    Ok(rows)
}

#[allow(clippy::too_many_arguments)]
fn build<'scope, L, R, K>(
    left: EventStream<'scope, L>,
    ctx: &QueryContext,
    name: &str,
    right: EventStream<'scope, R>,
    left_key: Rc<dyn Fn(&L) -> K>,
    right_key: Rc<dyn Fn(&R) -> K>,
    bounds: Bounds,
    join_type: JoinType,
) -> Result<Joined<'scope, L, R>, BuildError>
where
    L: ExchangeData + Clone,
    R: ExchangeData + Clone,
    K: ExchangeData + Clone + Hash + Eq,
{
    let scope = left.records.scope();
    let worker = scope.index();
    ctx.plan().record(join_plan(name, bounds, join_type));
    let metrics = ctx.metrics().operator(name);
    let mut lefts: Side<K, L> = Side::open(ctx, name, "left", worker)?;
    let mut rights: Side<K, R> = Side::open(ctx, name, "right", worker)?;
    let left_bytes = (std::mem::size_of::<Buffered<L>>() + std::mem::size_of::<K>() + 8) as i64;
    let right_bytes = (std::mem::size_of::<Buffered<R>>() + std::mem::size_of::<K>() + 8) as i64;

    // Checkpoints (docs/checkpoints.md §2): both stores, and the held capability's time. A query
    // resumed from a checkpoint starts with this worker's rows as they were at its boundary.
    let mut checkpoint = OperatorCheckpoint::register(ctx, name, worker, &["", "left", "right"]);
    let mut restored_held: Option<EventTime> = None;
    let mut floor: Option<EventTime> = None;
    if let Some(checkpoint) = &checkpoint {
        if let Some(resume_at) = checkpoint.resume_at() {
            let left_rows = restore_side(checkpoint, "left", &mut lefts)?;
            let right_rows = restore_side(checkpoint, "right", &mut rights)?;
            metrics.adjust_state(left_rows + right_rows, left_rows * left_bytes + right_rows * right_bytes);
            let snapshot: JoinSnapshot = checkpoint.restore_bytes("")?.unwrap_or_default();
            // Rows that may still be emitted need a capability (the snapshot always has one then).
            let emits_later = (join_type.emits_unmatched_left() || join_type == JoinType::LeftSemi)
                && lefts.earliest().is_some()
                || join_type.emits_unmatched_right() && rights.earliest().is_some();
            restored_held = snapshot.held.or(emits_later.then_some(resume_at)).map(|held| held.max(resume_at));
            floor = Some(resume_at);
        }
    }

    let mut builder = OperatorBuilder::new(name.to_string(), scope);
    let route_left = left_key.clone();
    let mut left_input = builder.new_input(
        left.records,
        Exchange::new(move |event: &Event<L>| FxBuildHasher.hash_one(route_left(&event.data))),
    );
    let route_right = right_key.clone();
    let mut right_input = builder.new_input(
        right.records,
        Exchange::new(move |event: &Event<R>| FxBuildHasher.hash_one(route_right(&event.data))),
    );
    let (rows_out, rows) = builder.new_output::<Vec<Event<JoinedRow<L, R>>>>();
    let (late_left_out, late_left) = builder.new_output::<Vec<LateRecord<L>>>();
    let (late_right_out, late_right) = builder.new_output::<Vec<LateRecord<R>>>();
    let mut rows_out: Output<Event<JoinedRow<L, R>>> = OutputBuilder::from(rows_out);
    let mut late_left_out: Output<LateRecord<L>> = OutputBuilder::from(late_left_out);
    let mut late_right_out: Output<LateRecord<R>> = OutputBuilder::from(late_right_out);

    let op_name = name.to_string();
    let op_metrics = metrics.clone();
    let ctx = ctx.clone();

    builder.build(move |initial_capabilities| {
        let name = op_name;
        let metrics = op_metrics;
        let mut core = Core {
            lefts,
            rights,
            left_key,
            right_key,
            bounds,
            join_type,
            held: restored_held.map(|time| initial_capabilities[ROWS].delayed(&time)),
            checkpointing: checkpoint.is_some(),
            now: Vec::new(),
            later: Vec::new(),
            counts: Counts::default(),
        };
        drop(initial_capabilities);
        let mut failed = false;
        // Batches at or after a checkpoint boundary not snapshotted yet wait here until it is.
        let mut waiting: (Pending<Event<L>>, Pending<Event<R>>) = (Pending::new(), Pending::new());
        let mut late_l: Vec<LateRecord<L>> = Vec::new();
        let mut late_r: Vec<LateRecord<R>> = Vec::new();

        move |frontiers| {
            let mut rows_handle = rows_out.activate();
            let mut late_left_handle = late_left_out.activate();
            let mut late_right_handle = late_right_out.activate();
            if failed {
                left_input.for_each_time(|_, _| {});
                right_input.for_each_time(|_, _| {});
                return;
            }
            let (mut rows_in, mut late_count) = (0u64, 0u64);
            let mut failure: Option<StateError> = None;
            core.counts = Counts::default();

            // Each input's frontier, and as far as the join applies it now: input at or after
            // the next boundary not snapshotted yet waits for that snapshot.
            let left_frontier = watermark_of(frontiers[0].frontier());
            let right_frontier = watermark_of(frontiers[1].frontier());
            let first_boundary = checkpoint.as_mut().and_then(|c| c.next_boundary());
            let (left_bound, right_bound) =
                core.eviction_bounds(clamp(left_frontier, first_boundary), clamp(right_frontier, first_boundary));

            left_input.for_each_time(|cap, data| {
                let stamp = *cap.time();
                // Asked after the batch arrived: a boundary at or below its time is published.
                let wait = checkpoint.as_mut().and_then(|c| c.next_boundary()).is_some_and(|b| stamp >= b);
                for batch in data {
                    rows_in += batch.len() as u64;
                    split_late(batch, stamp, &mut late_l, &name);
                    if failure.is_some() || batch.is_empty() {
                        continue;
                    }
                    if wait {
                        waiting.0.stash(&cap, batch);
                    } else if let Err(error) = core.join_left(&cap, batch, left_bound, &mut rows_handle) {
                        failure = Some(error);
                    }
                }
                give_counted!(late_left_handle, &cap, late_l, late_count);
            });
            right_input.for_each_time(|cap, data| {
                let stamp = *cap.time();
                let wait = checkpoint.as_mut().and_then(|c| c.next_boundary()).is_some_and(|b| stamp >= b);
                for batch in data {
                    rows_in += batch.len() as u64;
                    split_late(batch, stamp, &mut late_r, &name);
                    if failure.is_some() || batch.is_empty() {
                        continue;
                    }
                    if wait {
                        waiting.1.stash(&cap, batch);
                    } else if let Err(error) = core.join_right(&cap, batch, right_bound, &mut rows_handle) {
                        failure = Some(error);
                    }
                }
                give_counted!(late_right_handle, &cap, late_r, late_count);
            });

            // Checkpoint boundaries both inputs have passed: act exactly as if both input
            // frontiers stood at the boundary (apply the waiting input before it, evict and emit
            // what that allows), snapshot, then go on (docs/checkpoints.md §2).
            let mut next_boundary = None;
            if let Some(checkpoint) = checkpoint.as_mut() {
                let mut combined: Antichain<EventTime> = Antichain::new();
                combined.extend(left_frontier.into_iter().chain(right_frontier));
                for (epoch, at) in checkpoint.passed_boundaries(combined.borrow()) {
                    if failure.is_some() {
                        break;
                    }
                    let boundary = watermark_of(at.borrow());
                    if let Err(error) = core.catch_up(at.borrow(), (boundary, boundary), &mut waiting, &mut rows_handle)
                    {
                        failure = Some(error);
                        break;
                    }
                    // No capability below the boundary after its snapshot.
                    core.settle_held(boundary, boundary);
                    floor = boundary.or(floor);
                    checkpoint.write_store("left", epoch, &core.lefts.store);
                    checkpoint.write_store("right", epoch, &core.rights.store);
                    checkpoint.write_bytes("", epoch, &JoinSnapshot { held: core.held.as_ref().map(|h| *h.time()) });
                }
                next_boundary = checkpoint.next_boundary();
            }

            // The real frontiers, as far as the join applies them.
            if failure.is_none() {
                let (left_at, right_at) = (clamp(left_frontier, next_boundary), clamp(right_frontier, next_boundary));
                let upto = match next_boundary {
                    Some(boundary) => Antichain::from_elem(boundary),
                    None => Antichain::new(),
                };
                match core.catch_up(upto.borrow(), (left_at, right_at), &mut waiting, &mut rows_handle) {
                    Ok(()) => {
                        // Rows evicted before the next snapshot are emitted below its boundary.
                        let applied = [left_at, right_at].into_iter().flatten().min();
                        let ceiling = applied.map(|t| EventTime::from_millis(t.as_millis().saturating_sub(1)));
                        core.settle_held(ceiling, floor);
                    }
                    Err(error) => failure = Some(error),
                }
            }

            let counts = std::mem::take(&mut core.counts);
            OperatorMetrics::add(&metrics.rows_in, rows_in);
            OperatorMetrics::add(&metrics.late_rows, late_count);
            OperatorMetrics::add(&metrics.rows_out, counts.emitted);
            OperatorMetrics::add(&metrics.rows_updated, (counts.inserted_left + counts.inserted_right) as u64);
            OperatorMetrics::add(&metrics.rows_removed, (counts.removed_left + counts.removed_right) as u64);
            let (delta_left, delta_right) =
                (counts.inserted_left - counts.removed_left, counts.inserted_right - counts.removed_right);
            metrics.adjust_state(delta_left + delta_right, delta_left * left_bytes + delta_right * right_bytes);

            if let Some(error) = failure {
                ctx.fail(QueryError::State { operator: name.clone(), message: error.to_string() });
                failed = true;
                core.held = None;
                core.now.clear();
                core.later.clear();
                waiting = (Pending::new(), Pending::new());
                // Forget the state (and its gauges): the query is failing.
                let (left_rows, right_rows) = (count_rows(&core.lefts.store), count_rows(&core.rights.store));
                let _ = core.lefts.store.drain();
                let _ = core.rights.store.drain();
                core.lefts.by_time.clear();
                core.rights.by_time.clear();
                metrics.adjust_state(-(left_rows + right_rows), -(left_rows * left_bytes + right_rows * right_bytes));
            }
        }
    });

    let late_left = relabel_late(left.late, name, metrics.clone()).concat(late_left);
    let late_right = relabel_late(right.late, name, metrics).concat(late_right);
    Ok(Joined { rows: EventStream { records: rows, late: empty(scope) }, late_left, late_right })
}

/// A matched pair, carrying the later of the two rows' times.
#[inline]
fn pair<L: Clone, R: Clone>(
    left: &L,
    right: &R,
    left_time: EventTime,
    right_time: EventTime,
) -> Event<JoinedRow<L, R>> {
    Event::new(left_time.max(right_time), JoinedRow::pair(left.clone(), right.clone()))
}

fn count_rows<K: StateKey, T: StateValue>(store: &StateStore<K, KeyRows<T>>) -> i64 {
    let mut rows = 0i64;
    let _ = store.for_each(|_, v| rows += v.rows.len() as i64);
    rows
}
