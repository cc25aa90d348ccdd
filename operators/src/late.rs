//! Late records at an operator: labelling the ones that were late at their source, and routing
//! the ones an operator finds behind its own watermark. Shared by every event-time operator so
//! that each counts late records the same way and names itself on them.

use std::sync::Arc;

use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::operators::Operator;
use timely::dataflow::StreamVec;
use timely::progress::operate::FrontierInterest;
use weir_runtime::event::{Event, LateRecord};
use weir_runtime::metrics::OperatorMetrics;
use weir_runtime::time::EventTime;

/// Counts the records that were late at their source partition as late drops of operator `name`
/// (`numRowsDroppedByWatermark`) and labels each with that operator.
pub fn relabel_late<'scope, D: 'static>(
    late: StreamVec<'scope, EventTime, LateRecord<D>>,
    name: &str,
    metrics: Arc<OperatorMetrics>,
) -> StreamVec<'scope, EventTime, LateRecord<D>> {
    let name = name.to_string();
    late.unary(Pipeline, &format!("{name}/late"), move |_, _| {
        move |input, output| {
            input.for_each_time(|cap, data| {
                let mut session = output.session(&cap);
                for batch in data {
                    OperatorMetrics::add(&metrics.late_rows, batch.len() as u64);
                    for record in batch.iter_mut() {
                        record.operator.clone_from(&name);
                    }
                    session.give_container(batch);
                }
            })
        }
    })
}

/// A timely stream of `D` at event time.
pub type Timed<'scope, D> = StreamVec<'scope, EventTime, D>;

/// Stage 1 of a two-stage event-time operator, on the worker that read each batch: routes the
/// records behind their batch's timestamp (late for operator `name`) to the second output, and
/// hands the on-time records of each timestamp to `prepare`, which moves what stage 2 needs into
/// its output buffer (keyed records, partial results, ...). Both outputs are emitted at the batch's
/// timestamp, the prepared records first. Counts `rows_in` and `late_rows` once per activation.
///
/// `prepare` gets the on-time events of one timestamp (it may drain them; they are cleared after)
/// and an empty buffer to fill; the stage is named `stage`, e.g. `"{name}/key"`.
pub fn split_late<'scope, D: 'static, P: 'static>(
    records: Timed<'scope, Event<D>>,
    stage: String,
    name: &str,
    metrics: &Arc<OperatorMetrics>,
    mut prepare: impl FnMut(&mut Vec<Event<D>>, &mut Vec<P>) + 'static,
) -> (Timed<'scope, P>, Timed<'scope, LateRecord<D>>) {
    let mut builder = OperatorBuilder::new(stage, records.scope());
    let mut input = builder.new_input(records, Pipeline);
    builder.set_notify_for(0, FrontierInterest::Never);
    let (prepared_out, prepared) = builder.new_output::<Vec<P>>();
    let (late_out, late) = builder.new_output::<Vec<LateRecord<D>>>();
    let mut prepared_out: VecOutput<P> = OutputBuilder::from(prepared_out);
    let mut late_out: VecOutput<LateRecord<D>> = OutputBuilder::from(late_out);
    let name = name.to_string();
    let metrics = metrics.clone();

    builder.build(move |_capabilities| {
        let mut events: Vec<Event<D>> = Vec::new();
        let mut prepared_batch: Vec<P> = Vec::new();
        let mut late_batch: Vec<LateRecord<D>> = Vec::new();
        move |_frontiers| {
            let mut prepared_handle = prepared_out.activate();
            let mut late_handle = late_out.activate();
            let (mut rows_in, mut late_rows) = (0u64, 0u64);
            input.for_each_time(|cap, data| {
                let stamp = *cap.time();
                for batch in data {
                    rows_in += batch.len() as u64;
                    for event in batch.drain(..) {
                        if event.time < stamp {
                            late_batch.push(LateRecord::new(event.data, event.time, stamp, name.as_str()));
                        } else {
                            events.push(event);
                        }
                    }
                }
                if !events.is_empty() {
                    prepare(&mut events, &mut prepared_batch);
                    events.clear();
                }
                if !prepared_batch.is_empty() {
                    prepared_handle.session(&cap).give_container(&mut prepared_batch);
                    prepared_batch.clear();
                }
                if !late_batch.is_empty() {
                    late_rows += late_batch.len() as u64;
                    late_handle.session(&cap).give_container(&mut late_batch);
                    late_batch.clear();
                }
            });
            OperatorMetrics::add(&metrics.rows_in, rows_in);
            OperatorMetrics::add(&metrics.late_rows, late_rows);
        }
    });
    (prepared, late)
}

type VecOutput<D> = OutputBuilder<EventTime, CapacityContainerBuilder<Vec<D>>>;
