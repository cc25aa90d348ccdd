//! Stream-static (lookup) joins: every record of a stream looks its key up in a table that is
//! loaded once, or reloaded on an interval (Spark's stream-static join, Flink's lookup join).
//!
//! The table lives in a differential-dataflow arrangement on every worker (a broadcast join, like
//! Spark's broadcast hash join): the stream is never exchanged, and a reload enters the
//! arrangement as a difference (rows removed, rows added), which the arrangement consolidates.
//! Each version of the table is stamped with the processing time at which it was loaded, on a
//! timeline of its own: the table never holds back the stream's watermark. Records wait only for
//! the first load; after that each record sees the newest complete version of the table.
//!
//! The join is stateless for the stream, so it does not judge lateness: records that were late at
//! their source are joined too and stay on the `late` side, for the next event-time operator to
//! count and route.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use differential_dataflow::operators::arrange::{Arranged, TraceAgent};
use differential_dataflow::trace::cursor::Cursor;
use differential_dataflow::trace::implementations::{ContainerChunker, ValBatcher, ValBuilder, ValSpine};
use differential_dataflow::trace::TraceReader;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::{source, OutputBuilder};
use timely::dataflow::operators::probe::Handle as ProbeHandle;
use timely::dataflow::operators::{Capability, Probe};
use timely::dataflow::{Scope, StreamVec};
use timely::progress::Antichain;
use timely::progress::Timestamp;
use timely::ExchangeData;
use weir_runtime::context::QueryContext;
use weir_runtime::error::{BuildError, QueryError};
use weir_runtime::event::{Event, EventStream, LateRecord};
use weir_runtime::metrics::OperatorMetrics;
use weir_runtime::time::EventTime;

/// Which stream records a lookup join emits, and with what.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LookupJoinType {
    /// One output per matching table row: `(record, Some(row))`.
    Inner,
    /// Like inner, plus `(record, None)` for a record whose key is not in the table.
    LeftOuter,
    /// `(record, None)` once for a record whose key is in the table.
    LeftSemi,
    /// `(record, None)` for a record whose key is not in the table.
    LeftAnti,
}

impl std::str::FromStr for LookupJoinType {
    type Err = BuildError;

    fn from_str(text: &str) -> Result<Self, BuildError> {
        match text.to_ascii_lowercase().replace('_', "-").as_str() {
            "inner" => Ok(LookupJoinType::Inner),
            "left" | "left-outer" => Ok(LookupJoinType::LeftOuter),
            "semi" | "left-semi" => Ok(LookupJoinType::LeftSemi),
            "anti" | "left-anti" => Ok(LookupJoinType::LeftAnti),
            other => Err(BuildError::invalid(
                "lookup join type",
                format!("{other:?} is not a lookup join type"),
                "use inner, left-outer, left-semi or left-anti",
            )),
        }
    }
}

/// Loads the rows of a lookup table: `(key, row)` pairs, duplicates allowed.
pub type TableLoader<K, V> = Arc<dyn Fn() -> Result<Vec<(K, V)>, String> + Send + Sync>;

/// A table to join a stream with: where its rows come from and how often they are reloaded.
///
/// ```
/// use weir_operators::lookup_join::LookupTable;
///
/// let countries = LookupTable::from_rows("countries", vec![("fr", "France"), ("de", "Germany")]);
/// assert_eq!(countries.description(), "countries");
/// ```
pub struct LookupTable<K, V> {
    description: String,
    loader: TableLoader<K, V>,
    refresh: Option<Duration>,
}

impl<K, V> Clone for LookupTable<K, V> {
    fn clone(&self) -> Self {
        LookupTable { description: self.description.clone(), loader: self.loader.clone(), refresh: self.refresh }
    }
}

impl<K: Clone + Send + Sync + 'static, V: Clone + Send + Sync + 'static> LookupTable<K, V> {
    /// A fixed table from a collection of `(key, row)` pairs.
    pub fn from_rows(description: impl Into<String>, rows: Vec<(K, V)>) -> Self {
        let rows = Arc::new(rows);
        Self::from_loader(description, move || Ok(rows.as_ref().clone()))
    }
}

impl<K, V> LookupTable<K, V> {
    /// A table whose rows `loader` reads (a file, a database query, ...). A failed first load
    /// fails the query with the loader's message; a failed reload keeps the previous version and
    /// logs a warning.
    pub fn from_loader(
        description: impl Into<String>,
        loader: impl Fn() -> Result<Vec<(K, V)>, String> + Send + Sync + 'static,
    ) -> Self {
        LookupTable { description: description.into(), loader: Arc::new(loader), refresh: None }
    }

    /// Reloads the table every `interval` of processing time while the stream runs.
    pub fn refresh_every(mut self, interval: Duration) -> Self {
        self.refresh = Some(interval);
        self
    }

    /// What the table is (for logs and errors).
    pub fn description(&self) -> &str {
        &self.description
    }

    /// The reload interval, if the table is reloaded.
    pub fn refresh_interval(&self) -> Option<Duration> {
        self.refresh
    }
}

/// Joins an event stream with a [`LookupTable`].
pub trait LookupJoin<'scope, D: 'static> {
    /// Looks up `key_of(record)` in `table` for every record (on-time and late) and emits
    /// `(record, row)` pairs as `join_type` says, each with the record's own event time.
    ///
    /// ```
    /// use weir_operators::prelude::*;
    /// use weir_runtime::prelude::*;
    /// use weir_runtime::timely::dataflow::operators::{Inspect, ToStream};
    ///
    /// let ctx = QueryContext::ephemeral("doc");
    /// let table = LookupTable::from_rows("names", vec![(1u32, "one".to_string())]);
    /// timely::execute_directly(move |worker| {
    ///     worker.dataflow::<EventTime, _, _>(|scope| {
    ///         let records = vec![Event::new(EventTime::from_millis(5), 1u32), Event::new(EventTime::from_millis(6), 2)]
    ///             .to_stream(scope)
    ///             .container::<Vec<_>>();
    ///         let late = Vec::<LateRecord<u32>>::new().to_stream(scope).container::<Vec<_>>();
    ///         let joined = EventStream { records, late }
    ///             .lookup_join(&ctx, "names", table.clone(), |id: &u32| *id, LookupJoinType::LeftOuter)
    ///             .unwrap();
    ///         joined.records.inspect(|e| println!("{:?}", e.data)); // (1, Some("one")), (2, None)
    ///     });
    /// });
    /// ```
    fn lookup_join<K, V>(
        self,
        ctx: &QueryContext,
        name: &str,
        table: LookupTable<K, V>,
        key_of: impl Fn(&D) -> K + 'static,
        join_type: LookupJoinType,
    ) -> Result<EventStream<'scope, (D, Option<V>)>, BuildError>
    where
        K: ExchangeData + Ord + Clone,
        V: ExchangeData + Ord + Clone;
}

type Spine<K, V> = ValSpine<K, V, EventTime, isize>;
type Trace<K, V> = TraceAgent<Spine<K, V>>;
/// Batches that wait for the first version of the table, with their capabilities.
type Waiting<D> = Vec<(Capability<EventTime>, Vec<D>)>;
type VecOutput<D> = OutputBuilder<EventTime, timely::container::CapacityContainerBuilder<Vec<D>>>;

impl<'scope, D: Clone + 'static> LookupJoin<'scope, D> for EventStream<'scope, D> {
    fn lookup_join<K, V>(
        self,
        ctx: &QueryContext,
        name: &str,
        table: LookupTable<K, V>,
        key_of: impl Fn(&D) -> K + 'static,
        join_type: LookupJoinType,
    ) -> Result<EventStream<'scope, (D, Option<V>)>, BuildError>
    where
        K: ExchangeData + Ord + Clone,
        V: ExchangeData + Ord + Clone,
    {
        if table.refresh.is_some_and(|d| d.is_zero()) {
            return Err(BuildError::invalid(
                format!("the refresh interval of table {}", table.description),
                "an interval of 0 would reload the table continuously",
                "give a positive interval, or none to load the table once",
            ));
        }
        ctx.plan().record(
            weir_runtime::plan::OperatorPlan::operator(name, format!("lookup join with table {}", table.description))
                .state(weir_runtime::plan::StateBound::Table(match table.refresh {
                    Some(every) => format!(
                        "the whole table, on every worker, replaced every {}",
                        weir_runtime::plan::format_duration(every)
                    ),
                    None => "the whole table, on every worker, loaded once".to_string(),
                }))
                .exchange("none: the table is broadcast, the stream stays where it is"),
        );
        let metrics = ctx.metrics().operator(name);
        let scope = self.records.scope();
        let stream_done = ProbeHandle::new();
        let records = self.records.probe_with(&stream_done);
        let late = self.late.probe_with(&stream_done);
        let versions = table_versions(scope, ctx, name, table, stream_done, metrics.clone());
        let arranged: Arranged<'scope, Trace<K, V>> =
            differential_dataflow::operators::arrange::arrangement::arrange_core::<
                _,
                _,
                ContainerChunker<Vec<((K, V), EventTime, isize)>>,
                ValBatcher<K, V, EventTime, isize>,
                ValBuilder<K, V, EventTime, isize>,
                Spine<K, V>,
            >(versions, Pipeline, &format!("{name}/table"));
        Ok(probe_table(records, late, arranged, name, key_of, join_type, metrics))
    }
}

/// One table source per worker: loads every row (broadcast), and on each reload emits the
/// difference to the previous version, stamped with the load's processing time. It stops once
/// the stream has ended (or the query stops), so a bounded stream still finishes.
fn table_versions<'scope, K, V>(
    scope: Scope<'scope, EventTime>,
    ctx: &QueryContext,
    name: &str,
    table: LookupTable<K, V>,
    stream_done: ProbeHandle<EventTime>,
    metrics: Arc<OperatorMetrics>,
) -> StreamVec<'scope, EventTime, ((K, V), EventTime, isize)>
where
    K: ExchangeData + Ord + Clone,
    V: ExchangeData + Ord + Clone,
{
    let ctx = ctx.clone();
    let operator = name.to_string();
    let row_bytes = (std::mem::size_of::<(K, V)>() + 16) as i64;
    source(scope, &format!("{name}/load {}", table.description), move |capability, info| {
        let activator = scope.activator_for(info.address);
        let mut capability: Option<Capability<EventTime>> = Some(capability);
        let mut current: Vec<(K, V)> = Vec::new();
        let mut loaded_at: Option<Instant> = None;
        move |output| {
            let Some(cap) = capability.as_mut() else { return };
            let stream_finished = stream_done.with_frontier(|f| f.is_empty());
            if ctx.stop_requested() || (loaded_at.is_some() && stream_finished) {
                capability = None;
                return;
            }
            let due = match (loaded_at, table.refresh) {
                (None, _) => true,
                (Some(at), Some(every)) => at.elapsed() >= every,
                (Some(_), None) => false,
            };
            if due {
                match (table.loader)() {
                    Ok(mut rows) => {
                        rows.sort();
                        let version = EventTime::now().max(*cap.time());
                        let grown = rows.len() as i64 - current.len() as i64;
                        let version_cap = cap.delayed(&version);
                        let mut changes: Vec<((K, V), EventTime, isize)> =
                            current.drain(..).map(|row| (row, version, -1)).collect();
                        changes.extend(rows.iter().cloned().map(|row| (row, version, 1)));
                        OperatorMetrics::add(&metrics.rows_updated, changes.len() as u64);
                        output.session(&version_cap).give_container(&mut changes);
                        metrics.adjust_state(grown, grown * row_bytes);
                        current = rows;
                        cap.downgrade(&version.saturating_add(Duration::from_millis(1)));
                    }
                    Err(message) if loaded_at.is_none() => {
                        ctx.fail(QueryError::Source {
                            source_name: format!("{operator} table {}", table.description),
                            message: format!("cannot load the lookup table: {message}"),
                        });
                        capability = None;
                        return;
                    }
                    Err(message) => {
                        tracing::warn!(
                            operator = %operator,
                            "reloading the lookup table {} failed, keeping the previous version: {message}",
                            table.description
                        );
                    }
                }
                loaded_at = Some(Instant::now());
                if table.refresh.is_none() {
                    // Loaded once: the table is final, and the arrangement may complete.
                    capability = None;
                    return;
                }
            }
            // Look again at the next reload, or soon, to notice the end of the stream.
            let wait = table.refresh.map_or(Duration::from_millis(50), |every| {
                every.saturating_sub(loaded_at.map_or(Duration::ZERO, |at| at.elapsed())).min(Duration::from_millis(50))
            });
            activator.activate_after(wait);
        }
    })
}

/// Probes the arranged table with every record of `records` and `late`, once the first version
/// of the table is complete. The table input does not hold back the outputs' frontier.
fn probe_table<'scope, D, K, V>(
    records: StreamVec<'scope, EventTime, Event<D>>,
    late: StreamVec<'scope, EventTime, LateRecord<D>>,
    arranged: Arranged<'scope, Trace<K, V>>,
    name: &str,
    key_of: impl Fn(&D) -> K + 'static,
    join_type: LookupJoinType,
    metrics: Arc<OperatorMetrics>,
) -> EventStream<'scope, (D, Option<V>)>
where
    D: Clone + 'static,
    K: ExchangeData + Ord + Clone,
    V: ExchangeData + Ord + Clone,
{
    let mut builder = OperatorBuilder::new(format!("{name}/lookup"), records.scope());
    let mut records_in = builder.new_input_connection(records, Pipeline, []);
    let mut late_in = builder.new_input_connection(late, Pipeline, []);
    let mut table_in = builder.new_input_connection(arranged.stream, Pipeline, []);
    let identity = Antichain::from_elem(Default::default());
    let (records_out, joined) = builder.new_output_connection::<Vec<Event<(D, Option<V>)>>, _>([(0, identity.clone())]);
    let (late_out, joined_late) = builder.new_output_connection::<Vec<LateRecord<(D, Option<V>)>>, _>([(1, identity)]);
    let mut records_out: VecOutput<Event<(D, Option<V>)>> = OutputBuilder::from(records_out);
    let mut late_out: VecOutput<LateRecord<(D, Option<V>)>> = OutputBuilder::from(late_out);
    let mut trace = arranged.trace;
    let key_of = Rc::new(key_of);

    builder.build(move |_capabilities| {
        // Records that arrived before the first version of the table was complete.
        let mut waiting_records: Waiting<Event<D>> = Vec::new();
        let mut waiting_late: Waiting<LateRecord<D>> = Vec::new();
        let mut out_records: Vec<Event<(D, Option<V>)>> = Vec::new();
        let mut out_late: Vec<LateRecord<(D, Option<V>)>> = Vec::new();
        let mut lookup = Lookup::new(join_type);
        move |frontiers| {
            table_in.for_each(|_, _| {});
            let table_frontier = frontiers[2].frontier();
            let ready = !table_frontier.less_equal(&EventTime::minimum());
            if ready && !table_frontier.is_empty() {
                // Old versions need not stay distinguishable: let the arrangement consolidate them.
                // (An empty frontier means the table is final; compaction must stay readable.)
                let upper = table_frontier.to_owned();
                trace.set_logical_compaction(upper.borrow());
                trace.set_physical_compaction(upper.borrow());
            }

            let mut records_handle = records_out.activate();
            let mut late_handle = late_out.activate();
            let waiting = &mut waiting_records;
            records_in.for_each_time(|cap, data| {
                for batch in data {
                    waiting.push((cap.retain(0), std::mem::take(batch)));
                }
            });
            late_in.for_each_time(|cap, data| {
                for batch in data {
                    waiting_late.push((cap.retain(1), std::mem::take(batch)));
                }
            });
            if !ready || (waiting.is_empty() && waiting_late.is_empty()) {
                return;
            }

            let (mut cursor, storage) = trace.cursor();
            let (mut rows_in, mut rows_out) = (0u64, 0u64);
            for (cap, batch) in waiting.drain(..) {
                rows_in += batch.len() as u64;
                lookup.join(
                    &mut cursor,
                    &storage,
                    batch,
                    |e: &Event<D>| key_of(&e.data),
                    |event, value| {
                        out_records.push(Event::new(event.time, (event.data.clone(), value)));
                    },
                );
                rows_out += out_records.len() as u64;
                records_handle.session(&cap).give_container(&mut out_records);
                out_records.clear();
            }
            for (cap, batch) in waiting_late.drain(..) {
                lookup.join(
                    &mut cursor,
                    &storage,
                    batch,
                    |l: &LateRecord<D>| key_of(&l.record),
                    |late, value| {
                        out_late.push(late.clone().map(|record| (record, value)));
                    },
                );
                late_handle.session(&cap).give_container(&mut out_late);
                out_late.clear();
            }
            OperatorMetrics::add(&metrics.rows_in, rows_in);
            OperatorMetrics::add(&metrics.rows_out, rows_out);
        }
    });
    EventStream { records: joined, late: joined_late }
}

/// Looks up a batch of records in a cursor over the table, in key order (a cursor only moves
/// forward), and emits per the join type.
struct Lookup<V> {
    join_type: LookupJoinType,
    matches: Vec<(V, isize)>,
}

impl<V: ExchangeData + Ord + Clone> Lookup<V> {
    fn new(join_type: LookupJoinType) -> Self {
        Lookup { join_type, matches: Vec::new() }
    }

    fn join<T, K, C>(
        &mut self,
        cursor: &mut C,
        storage: &C::Storage,
        batch: Vec<T>,
        key_of: impl Fn(&T) -> K,
        mut emit: impl FnMut(&T, Option<V>),
    ) where
        K: Ord,
        C: for<'a> Cursor<Key<'a> = &'a K, Val<'a> = &'a V, Time = EventTime, Diff = isize>,
    {
        let mut keyed: Vec<(K, T)> = batch.into_iter().map(|record| (key_of(&record), record)).collect();
        keyed.sort_by(|a, b| a.0.cmp(&b.0));
        cursor.rewind_keys(storage);
        let mut current: Option<&K> = None;
        for (key, record) in &keyed {
            if current != Some(key) {
                self.matches.clear();
                cursor.seek_key(storage, key);
                if cursor.get_key(storage) == Some(key) {
                    while let Some(value) = cursor.get_val(storage) {
                        let mut count = 0isize;
                        cursor.map_times(storage, |_, diff| count += C::owned_diff(diff));
                        if count > 0 {
                            self.matches.push((value.clone(), count));
                        }
                        cursor.step_val(storage);
                    }
                }
                current = Some(key);
            }
            match self.join_type {
                LookupJoinType::Inner | LookupJoinType::LeftOuter => {
                    for (value, count) in &self.matches {
                        for _ in 0..*count {
                            emit(record, Some(value.clone()));
                        }
                    }
                    if self.matches.is_empty() && self.join_type == LookupJoinType::LeftOuter {
                        emit(record, None);
                    }
                }
                LookupJoinType::LeftSemi if !self.matches.is_empty() => emit(record, None),
                LookupJoinType::LeftAnti if self.matches.is_empty() => emit(record, None),
                _ => {}
            }
        }
    }
}
