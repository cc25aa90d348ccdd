//! `for_each_epoch`: hands each complete epoch (one timely time) to a closure, in time order
//! (like Spark's `foreachBatch`). Also the gathering operator behind the ordered sinks.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::StreamVec;
use timely::ExchangeData;
use weir_runtime::context::QueryContext;
use weir_runtime::time::EventTime;

/// Calls `f(epoch, batch)` once per epoch with that epoch's whole batch, in increasing epoch
/// order, and only after the input frontier has passed the epoch, so the batch is complete.
///
/// The epoch is the batch's timely time (deterministic for a given input), so `f` can write
/// idempotently keyed by it. Every record is gathered to worker 0: **`f` runs on worker 0 only**
/// (the copies built on other workers are never called). Counts `output_rows` of sink `name`.
pub fn for_each_epoch<'scope, D, F>(stream: StreamVec<'scope, EventTime, D>, ctx: &QueryContext, name: &str, mut f: F)
where
    D: ExchangeData,
    F: FnMut(EventTime, Vec<D>) + 'static,
{
    let metrics = ctx.metrics().sink(name);
    gather_epochs(stream, name, move |epoch, batch| {
        metrics.output_rows.fetch_add(batch.len() as u64, Ordering::Relaxed);
        f(epoch, batch);
    });
}

/// Gathers `stream` to worker 0, buffers records per timely time, and calls `emit` for each time
/// the input frontier has passed, in increasing time order. Must be built on every worker.
pub(crate) fn gather_epochs<'scope, D, F>(stream: StreamVec<'scope, EventTime, D>, name: &str, mut emit: F)
where
    D: ExchangeData,
    F: FnMut(EventTime, Vec<D>) + 'static,
{
    let mut pending: BTreeMap<EventTime, Vec<D>> = BTreeMap::new();
    stream.sink(Exchange::new(|_: &D| 0u64), &format!("Sink[{name}]"), move |(input, frontier)| {
        input.for_each_time(|time, data| {
            let batch = pending.entry(*time.time()).or_default();
            for chunk in data {
                batch.append(chunk);
            }
        });
        while let Some(entry) = pending.first_entry() {
            if frontier.less_equal(entry.key()) {
                break;
            }
            let (epoch, batch) = entry.remove_entry();
            emit(epoch, batch);
        }
    });
}
