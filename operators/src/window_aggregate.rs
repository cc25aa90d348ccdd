//! Windowed aggregation with output modes: the `window_aggregate` operator and its extension
//! trait on [`EventStream`].
//!
//! Two stages. Each worker first folds every batch into partial results per (window, key), so
//! only partials cross the exchange; then the worker owning a key merges partials in timestamp
//! order once the frontier has passed their time, and emits according to the output mode.
//! Window completeness is decided by the frontier alone: a window `[start, end)` is final when
//! the frontier reaches `end`, because no on-time record with an earlier event time can follow.

use std::collections::hash_map::Entry;
use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hash};

use rustc_hash::{FxBuildHasher, FxHashMap, FxHashSet};
use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::OutputBuilderSession;
use timely::dataflow::operators::{Capability, Concat, Operator};
use timely::dataflow::StreamVec;
use timely::ExchangeData;
use weir_runtime::context::QueryContext;
use weir_runtime::error::BuildError;
use weir_runtime::event::{Event, EventStream, LateRecord};
use weir_runtime::metrics::OperatorMetrics;
use weir_runtime::time::EventTime;

use crate::aggregate::{Aggregator, Count};
use crate::checkpointed::OperatorCheckpoint;
use crate::late::{relabel_late, split_late, Timed};
use crate::output_mode::OutputMode;
use crate::pending::{watermark_of, Pending};
use crate::window::{WindowAssigner, Windowing};

/// One row of an aggregation's result: a group (window and key) and its aggregated value.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct WindowResult<K, O> {
    /// Window start, ms since the epoch (inclusive).
    pub window_start: i64,
    /// Window end, ms since the epoch (exclusive).
    pub window_end: i64,
    /// The group key.
    pub key: K,
    /// The aggregated value.
    pub value: O,
}

/// The outputs of a windowed aggregation.
pub struct Aggregated<'scope, K: 'static, O: 'static, D: 'static> {
    /// Result rows, as the output mode dictates, stamped with the epoch they belong to.
    pub results: StreamVec<'scope, EventTime, WindowResult<K, O>>,
    /// Records this operator dropped as late (late at their source partition, or behind this
    /// operator's watermark), each naming this operator.
    pub late: StreamVec<'scope, EventTime, LateRecord<D>>,
}

/// Windowed aggregation on an event stream.
pub trait WindowAggregate<'scope, D: 'static> {
    /// Groups records by window and `key_of`, folds each group with `aggregator`, and emits
    /// results as `mode` says. Fails at build time if the window or the mode is invalid.
    ///
    /// ```
    /// use std::time::Duration;
    /// use weir_operators::prelude::*;
    /// use weir_runtime::prelude::*;
    /// use weir_runtime::timely::dataflow::operators::ToStream;
    /// use weir_runtime::timely::dataflow::operators::Inspect;
    ///
    /// let ctx = QueryContext::ephemeral("doc");
    /// timely::execute_directly(move |worker| {
    ///     worker.dataflow::<EventTime, _, _>(|scope| {
    ///         let records = vec![(1_000u64, "a"), (2_000, "b"), (12_000, "a")]
    ///             .into_iter()
    ///             .map(|(t, k)| Event::new(EventTime::from_millis(t), k))
    ///             .to_stream(scope)
    ///             .container::<Vec<_>>();
    ///         let late = Vec::<LateRecord<&str>>::new().to_stream(scope).container::<Vec<_>>();
    ///         let counts = EventStream { records, late }
    ///             .window_aggregate(&ctx, "counts", Windowing::tumbling(Duration::from_secs(10)),
    ///                               OutputMode::Append, |k: &&str| k.to_string(), Count)
    ///             .unwrap();
    ///         counts.results.inspect(|row| println!("{row:?}"));
    ///     });
    /// });
    /// ```
    fn window_aggregate<K, A>(
        self,
        ctx: &QueryContext,
        name: &str,
        windowing: Windowing,
        mode: OutputMode,
        key_of: impl Fn(&D) -> K + 'static,
        aggregator: A,
    ) -> Result<Aggregated<'scope, K, A::Output, D>, BuildError>
    where
        K: ExchangeData + Hash + Eq + Clone,
        A: Aggregator<D>,
        A::Output: ExchangeData;

    /// Counts records per window and key (the commonest aggregation).
    fn window_count<K>(
        self,
        ctx: &QueryContext,
        name: &str,
        windowing: Windowing,
        mode: OutputMode,
        key_of: impl Fn(&D) -> K + 'static,
    ) -> Result<Aggregated<'scope, K, u64, D>, BuildError>
    where
        K: ExchangeData + Hash + Eq + Clone,
        Self: Sized,
    {
        self.window_aggregate(ctx, name, windowing, mode, key_of, Count)
    }
}

impl<'scope, D: 'static> WindowAggregate<'scope, D> for EventStream<'scope, D> {
    fn window_aggregate<K, A>(
        self,
        ctx: &QueryContext,
        name: &str,
        windowing: Windowing,
        mode: OutputMode,
        key_of: impl Fn(&D) -> K + 'static,
        aggregator: A,
    ) -> Result<Aggregated<'scope, K, A::Output, D>, BuildError>
    where
        K: ExchangeData + Hash + Eq + Clone,
        A: Aggregator<D>,
        A::Output: ExchangeData,
    {
        windowing.validate()?;
        mode.validate(&windowing)?;
        ctx.plan().record(
            weir_runtime::plan::OperatorPlan::operator(name, format!("window aggregate, {}", windowing.describe()))
                .state(window_state_bound(&windowing, mode))
                .output_mode(mode)
                .exchange(if mode == OutputMode::Complete {
                    "partial aggregates to worker 0 (complete mode keeps one table)"
                } else {
                    "partial aggregates by key (pre-aggregated per worker before the exchange)"
                }),
        );
        let metrics = ctx.metrics().operator(name);
        let (partials, operator_late) =
            pre_aggregate(self.records, name, windowing, key_of, aggregator.clone(), &metrics);
        OperatorCheckpoint::record_types::<K, A::Acc>(ctx, name);
        let checkpoint = OperatorCheckpoint::register(ctx, name, partials.scope().index(), &[""]);
        let results = merge_and_emit(partials, name, windowing, mode, aggregator, metrics.clone(), checkpoint)?;
        let late = relabel_late(self.late, name, metrics).concat(operator_late);
        Ok(Aggregated { results, late })
    }
}

/// What bounds a windowed aggregation's state, for `explain`: the window close, unless there is
/// no event-time window or the complete output mode keeps every group.
pub fn window_state_bound(windowing: &Windowing, mode: OutputMode) -> weir_runtime::plan::StateBound {
    use weir_runtime::plan::StateBound;
    if !windowing.is_event_time() {
        StateBound::Unbounded("no event-time window: one group per key, kept for ever".to_string())
    } else if mode == OutputMode::Complete {
        StateBound::Unbounded("complete mode keeps every window and key to re-emit the whole table".to_string())
    } else {
        StateBound::WindowClose(format!(
            "a group is dropped when the watermark passes its window's end ({})",
            windowing.describe()
        ))
    }
}

type Partial<K, A> = (i64, K, A);
/// Open groups: window start -> key -> partial result.
type Groups<K, Acc> = BTreeMap<i64, FxHashMap<K, Acc>>;
/// Open groups as they are written to a checkpoint: (window start, [(key, partial result)]).
type GroupsSnapshot<K, Acc> = Vec<(i64, Vec<(K, Acc)>)>;
/// The container builder of the results stream.
type ResultBuilder<K, O> = timely::container::CapacityContainerBuilder<Vec<WindowResult<K, O>>>;
/// Stage 1's outputs: partial results, and records late for this operator.
type PreAggregated<'scope, K, Acc, D> = (Timed<'scope, Partial<K, Acc>>, Timed<'scope, LateRecord<D>>);

/// Stage 1: folds each batch into partial results per (window start, key), on the worker that
/// read it. Records behind the batch's timestamp are late for this operator.
fn pre_aggregate<'scope, D: 'static, K, A>(
    records: StreamVec<'scope, EventTime, Event<D>>,
    name: &str,
    windowing: Windowing,
    key_of: impl Fn(&D) -> K + 'static,
    aggregator: A,
    metrics: &std::sync::Arc<OperatorMetrics>,
) -> PreAggregated<'scope, K, A::Acc, D>
where
    K: ExchangeData + Hash + Eq + Clone,
    A: Aggregator<D>,
{
    let mut groups: FxHashMap<(i64, K), A::Acc> = FxHashMap::default();
    let mut assigner = WindowAssigner::new(windowing);
    let sliding = matches!(windowing, Windowing::Sliding { .. });
    split_late(records, format!("{name}/pre-aggregate"), name, metrics, move |events, batch_out| {
        for event in events.drain(..) {
            let key = key_of(&event.data);
            if sliding {
                assigner.for_each_window_start(event.time, |start| {
                    let acc = groups.entry((start, key.clone())).or_insert_with(|| aggregator.init());
                    aggregator.add(acc, &event.data);
                });
            } else {
                let mut start = 0;
                assigner.for_each_window_start(event.time, |s| start = s);
                let acc = groups.entry((start, key)).or_insert_with(|| aggregator.init());
                aggregator.add(acc, &event.data);
            }
        }
        batch_out.extend(groups.drain().map(|((start, key), acc)| (start, key, acc)));
    })
}

/// Stage 2: on the worker that owns each key, merges partials in timestamp order once their time
/// is complete, and emits as the output mode says.
fn merge_and_emit<'scope, K, A, D>(
    partials: StreamVec<'scope, EventTime, Partial<K, A::Acc>>,
    name: &str,
    windowing: Windowing,
    mode: OutputMode,
    aggregator: A,
    metrics: std::sync::Arc<OperatorMetrics>,
    mut checkpoint: Option<OperatorCheckpoint>,
) -> Result<StreamVec<'scope, EventTime, WindowResult<K, A::Output>>, BuildError>
where
    K: ExchangeData + Hash + Eq + Clone,
    A: Aggregator<D>,
    A::Output: ExchangeData,
    D: 'static,
{
    // Complete mode emits the whole table at every epoch, so one worker must see every group:
    // its partials all go to worker 0. The other modes spread groups over workers by key.
    let single_table = mode == OutputMode::Complete;
    let route = Exchange::new(
        move |partial: &Partial<K, A::Acc>| {
            if single_table {
                0
            } else {
                FxBuildHasher.hash_one(&partial.1)
            }
        },
    );
    let group_bytes = (std::mem::size_of::<(K, A::Acc)>() + 16) as i64;
    let name = name.to_string();
    // A query resumed from a checkpoint starts with this worker's groups as they were when the
    // epoch it resumes after ended.
    let restored: Option<(Groups<K, A::Acc>, EventTime)> = match &checkpoint {
        Some(checkpoint) => {
            match (checkpoint.restore_bytes::<GroupsSnapshot<K, A::Acc>>("")?, checkpoint.resume_at()) {
                (Some(groups), Some(resume_at)) => {
                    Some((groups.into_iter().map(|(start, g)| (start, g.into_iter().collect())).collect(), resume_at))
                }
                _ => None,
            }
        }
        None => None,
    };
    Ok(partials.unary_frontier(route, &name.clone(), move |initial, _info| {
        let mut pending: Pending<Partial<K, A::Acc>> = Pending::new();
        // Open groups: window start -> key -> partial result. Ordered by start, hence by end.
        let mut state: Groups<K, A::Acc> = BTreeMap::new();
        // Append mode: a capability at each open window's end, to emit it there.
        let mut window_caps: BTreeMap<i64, Capability<EventTime>> = BTreeMap::new();
        if let Some((groups, resume_at)) = restored {
            let count: usize = groups.values().map(|g| g.len()).sum();
            metrics.adjust_state(count as i64, count as i64 * group_bytes);
            if mode == OutputMode::Append {
                for start in groups.keys() {
                    let end = windowing.window(*start).end;
                    let at = EventTime::from_millis(end as u64).max(resume_at);
                    window_caps.entry(end).or_insert_with(|| initial.delayed(&at));
                }
            }
            state = groups;
        }
        drop(initial);
        let mut changed: FxHashSet<(i64, K)> = FxHashSet::default();
        let mut out: Vec<WindowResult<K, A::Output>> = Vec::new();

        move |(input, frontier), output| {
            input.for_each_time(|cap, data| {
                for batch in data {
                    pending.stash(&cap, batch);
                }
            });
            let real: timely::progress::Antichain<EventTime> = frontier.frontier().to_owned();
            let (mut new_groups, mut updated, mut removed, mut emitted) = (0i64, 0u64, 0u64, 0u64);

            // Apply everything up to `upto` (an effective frontier) and close the windows that
            // end before it (`strict`) or at it.
            let mut run =
                |state: &mut BTreeMap<i64, FxHashMap<K, A::Acc>>,
                 upto: timely::progress::frontier::AntichainRef<'_, EventTime>,
                 strict: bool,
                 output: &mut OutputBuilderSession<'_, EventTime, ResultBuilder<K, A::Output>>| {
                    // `None` once the input is exhausted: every time is complete, every window final.
                    let horizon: Option<EventTime> = watermark_of(upto);
                    while let Some((cap, batches)) = pending.pop_complete(upto) {
                        for batch in batches {
                            for (start, key, acc) in batch {
                                let groups = state.entry(start).or_default();
                                if mode == OutputMode::Append {
                                    let end = windowing.window(start).end;
                                    window_caps
                                        .entry(end)
                                        .or_insert_with(|| cap.delayed(&EventTime::from_millis(end as u64)));
                                }
                                if mode == OutputMode::Update {
                                    changed.insert((start, key.clone()));
                                }
                                match groups.entry(key) {
                                    Entry::Occupied(mut group) => aggregator.merge(group.get_mut(), acc),
                                    Entry::Vacant(group) => {
                                        group.insert(acc);
                                        new_groups += 1;
                                    }
                                }
                                updated += 1;
                            }
                        }
                        match mode {
                            OutputMode::Update if !changed.is_empty() => {
                                for (start, key) in changed.drain() {
                                    let window = windowing.window(start);
                                    let value = aggregator.finish(&state[&start][&key]);
                                    out.push(WindowResult {
                                        window_start: window.start,
                                        window_end: window.end,
                                        key,
                                        value,
                                    });
                                }
                            }
                            OutputMode::Complete if updated > 0 => {
                                for (start, groups) in state.iter() {
                                    let window = windowing.window(*start);
                                    out.extend(groups.iter().map(|(key, acc)| WindowResult {
                                        window_start: window.start,
                                        window_end: window.end,
                                        key: key.clone(),
                                        value: aggregator.finish(acc),
                                    }));
                                }
                            }
                            _ => {}
                        }
                        if !out.is_empty() {
                            emitted += out.len() as u64;
                            output.session(&cap).give_container(&mut out);
                            out.clear();
                        }
                    }

                    // Close the windows the frontier has passed (complete mode keeps everything).
                    if mode != OutputMode::Complete {
                        while let Some(first) = state.first_entry() {
                            let window = windowing.window(*first.key());
                            let end = window.end;
                            let open = match horizon {
                                None => false,
                                Some(h) if strict => end >= h.as_millis() as i64,
                                Some(h) => end > h.as_millis() as i64,
                            };
                            if open {
                                break;
                            }
                            let groups = first.remove();
                            removed += groups.len() as u64;
                            if mode == OutputMode::Append {
                                let cap = window_caps.remove(&end).expect("a capability for every open window");
                                out.extend(groups.into_iter().map(|(key, acc)| WindowResult {
                                    window_start: window.start,
                                    window_end: end,
                                    value: aggregator.finish(&acc),
                                    key,
                                }));
                                emitted += out.len() as u64;
                                output.session(&cap).give_container(&mut out);
                                out.clear();
                            }
                        }
                    }
                };

            // Checkpoint boundaries the frontier has passed: apply input and close windows as if
            // the frontier stood exactly at each, snapshot, then go on (docs/checkpoints.md §2).
            if let Some(checkpoint) = &mut checkpoint {
                for (epoch, at) in checkpoint.passed_boundaries(real.borrow()) {
                    run(&mut state, at.borrow(), true, output);
                    let groups: GroupsSnapshot<&K, &A::Acc> =
                        state.iter().map(|(start, g)| (*start, g.iter().collect())).collect();
                    checkpoint.write_bytes("", epoch, &groups);
                }
            }
            run(&mut state, real.borrow(), false, output);

            metrics.adjust_state(new_groups - removed as i64, (new_groups - removed as i64) * group_bytes);
            OperatorMetrics::add(&metrics.rows_updated, updated);
            OperatorMetrics::add(&metrics.rows_removed, removed);
            OperatorMetrics::add(&metrics.rows_out, emitted);
        }
    }))
}
