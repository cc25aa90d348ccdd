//! Late records at an operator: labelling the ones that were late at their source, and routing
//! the ones an operator finds behind its own watermark. Shared by every event-time operator so
//! that each counts late records the same way and names itself on them.

use std::sync::Arc;

use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::Operator;
use timely::dataflow::StreamVec;
use weir_runtime::event::LateRecord;
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
