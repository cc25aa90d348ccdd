//! Records in flight: each carries its exact event time, and late records travel beside the on-time ones.

use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::vec::Map;
use timely::dataflow::operators::Operator;
use timely::dataflow::StreamVec;

use crate::time::EventTime;

/// One record with its exact event time. The timely timestamp of the batch that carries it is
/// never later than `time` (for on-time records), which is what makes the frontier a watermark.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Event<D> {
    /// The record's own event time.
    pub time: EventTime,
    /// The record.
    pub data: D,
}

impl<D> Event<D> {
    /// Pairs a record with its event time.
    pub fn new(time: EventTime, data: D) -> Self {
        Event { time, data }
    }
}

/// A record that arrived after the watermark had passed its event time. Late records are never
/// dropped silently: operators count them and hand them to their late side output.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LateRecord<D> {
    /// The late record.
    pub record: D,
    /// Its event time.
    pub event_time: EventTime,
    /// The watermark it was compared with when it arrived.
    pub watermark: EventTime,
    /// How far behind the watermark it was, in milliseconds (`watermark - event_time`).
    pub lateness_ms: u64,
    /// The operator that judged it late (the source, for records late at their partition).
    pub operator: String,
}

impl<D> LateRecord<D> {
    /// Describes a record that arrived with `event_time` below `watermark`.
    pub fn new(record: D, event_time: EventTime, watermark: EventTime, operator: impl Into<String>) -> Self {
        LateRecord {
            record,
            event_time,
            watermark,
            lateness_ms: watermark.as_millis().saturating_sub(event_time.as_millis()),
            operator: operator.into(),
        }
    }

    /// The same late record with another record value (used when a stage maps records).
    pub fn map<D2>(self, f: impl FnOnce(D) -> D2) -> LateRecord<D2> {
        LateRecord {
            record: f(self.record),
            event_time: self.event_time,
            watermark: self.watermark,
            lateness_ms: self.lateness_ms,
            operator: self.operator,
        }
    }
}

/// The output of an event-time source: on-time records, and records that were late at their
/// partition. Stateless stages (`map`, `filter`, `flat_map`) apply to both, so an event-time
/// operator further down still sees, counts and routes the late ones.
pub struct EventStream<'scope, D: 'static> {
    /// On-time records, stamped no later than their event time.
    pub records: StreamVec<'scope, EventTime, Event<D>>,
    /// Records late at their source partition.
    pub late: StreamVec<'scope, EventTime, LateRecord<D>>,
}

impl<'scope, D: Clone + 'static> Clone for EventStream<'scope, D> {
    fn clone(&self) -> Self {
        EventStream { records: self.records.clone(), late: self.late.clone() }
    }
}

impl<'scope, D: 'static> EventStream<'scope, D> {
    /// Transforms every record (on-time and late), keeping its event time.
    pub fn map<D2: 'static>(self, f: impl Fn(D) -> D2 + 'static) -> EventStream<'scope, D2> {
        let f = std::rc::Rc::new(f);
        let g = f.clone();
        EventStream {
            records: self.records.map(move |e| Event { time: e.time, data: f(e.data) }),
            late: self.late.map(move |l| l.map(|d| g(d))),
        }
    }

    /// Keeps the records (on-time and late) for which `keep` is true.
    pub fn filter(self, keep: impl Fn(&D) -> bool + 'static) -> EventStream<'scope, D> {
        let keep = std::rc::Rc::new(keep);
        let keep2 = keep.clone();
        EventStream {
            records: retain(self.records, move |e: &Event<D>| keep(&e.data)),
            late: retain(self.late, move |l: &LateRecord<D>| keep2(&l.record)),
        }
    }

    /// Replaces every record by zero or more records with the same event time.
    pub fn flat_map<D2: 'static, I: IntoIterator<Item = D2>>(
        self,
        f: impl Fn(D) -> I + 'static,
    ) -> EventStream<'scope, D2> {
        let f = std::rc::Rc::new(f);
        let g = f.clone();
        EventStream {
            records: self.records.flat_map(move |e| {
                let time = e.time;
                f(e.data).into_iter().map(move |data| Event { time, data })
            }),
            late: self.late.flat_map(move |l| {
                let (event_time, watermark, operator) = (l.event_time, l.watermark, l.operator);
                g(l.record)
                    .into_iter()
                    .map(move |record| LateRecord::new(record, event_time, watermark, operator.clone()))
            }),
        }
    }
}

fn retain<'scope, D: 'static>(
    stream: StreamVec<'scope, EventTime, D>,
    keep: impl Fn(&D) -> bool + 'static,
) -> StreamVec<'scope, EventTime, D> {
    stream.unary(Pipeline, "Filter", |_, _| {
        move |input, output| {
            input.for_each_time(|time, data| {
                let mut session = output.session(&time);
                for batch in data {
                    batch.retain(|d| keep(d));
                    session.give_container(batch);
                }
            })
        }
    })
}
