//! Arbitrary keyed state with timers (Spark's `flatMapGroupsWithState`, Flink's
//! `KeyedProcessFunction`): `stream.key_by(key_of).process_with_state(ctx, name, f)`.
//!
//! `f(key, records, state, out)` is called per key with the key's records of one event time and a
//! [`KeyedState`] handle (`get`/`exists`/`update`/`remove`, `set_timer`, `set_timeout_duration`,
//! `has_timed_out`, `current_watermark`), and pushes any number of outputs to `out`.
//!
//! # Semantics (why results do not depend on worker count or batch boundaries)
//!
//! * Records are exchanged by key (`FxBuildHasher.hash_one(&key)`) and buffered until the
//!   watermark (the operator's input frontier) passes **their own event time**. Then each key is
//!   called once per event time, in event-time order, with all its records of that instant,
//!   sorted by `D: Ord` (equal records in any order, which cannot be told apart).
//! * Event-time timers fire in time order, interleaved with records: at time `t`, a key's records
//!   of `t` come first, then its timer at `t`, once the frontier is past `t`. A timer call has no
//!   records and `has_timed_out()` true. A timer set at or before the time being processed fires
//!   right after the call that set it. Each key has at most one timer: setting it replaces the
//!   previous one; it stays set until it fires or is cleared. When the input ends every timer
//!   fires (a timer call that always sets a later timer never lets a bounded query finish).
//! * Outputs carry the event time of the call that produced them (the records' or the timer's
//!   time) as [`Event::time`], and are stamped no later than that, so they are on time for
//!   windows and other event-time operators downstream.
//! * `set_timeout_duration(d)` is a processing-time timeout: the key is called (no records,
//!   `has_timed_out()` true) once no records arrived for it for `d` of wall-clock time. Its
//!   outputs carry the watermark at that moment. Timeouts depend on timing, so results that use
//!   them are not deterministic; at the end of a bounded input every pending timeout fires.
//! * A record whose event time is behind the batch it arrives in (late at this operator), or that
//!   was late at its source, never reaches the function: it is counted in `late_rows`
//!   (`numRowsDroppedByWatermark`) and sent to [`Processed::late`] once, naming this operator.
//!
//! # State
//!
//! The state values live in a [`StateStore`](weir_runtime::state::StateStore) opened from the
//! context's backend (`ctx.state_backend()`: memory by default, or RocksDB chosen per query with
//! `Query::state_backend` or per operator with `ctx.with_state_backend(..)`). Timers, timeouts
//! and records waiting for the watermark are kept in memory. The operator reports
//! `numRowsTotal` = keys with state, updates, removals, late drops and estimated memory.
//!
//! # Checkpoints
//!
//! In a query that checkpoints (`Query::checkpoint`, `--checkpoint DIR`), each worker's instance
//! snapshots at every epoch boundary `B` (`docs/checkpoints.md` §2): it first calls the function
//! for every key's records before `B` and fires every event-time timer before `B`, exactly as a
//! frontier of `{B}` would, then writes its state store (part `<name>`: bytes for the memory
//! backend, a hard-linked RocksDB checkpoint for RocksDB), its timers (part `<name>/timers`) and
//! the records still waiting for the watermark that arrived (were stamped) before `B` (part
//! `<name>/pending`: a record stamped before `B` may have an event time after it, and its source
//! will not read it again). Records stamped at or after `B` are not in the snapshot: the sources
//! read them again after a restore. A resumed query restores all three and re-creates the
//! capability its timers and records need at `max(their time, resume point)`.
//!
//! Processing-time timeouts are stored with their duration and their **absolute wall-clock
//! deadline** (as Spark does): the time the query was down counts as time without records, so a
//! timeout that fell due meanwhile fires right after the restore. Timeouts do not fire in the
//! boundary step (their outputs carry the frontier, which belongs to the next epoch). Output that
//! depends on timeouts depends on wall-clock time, so a run resumed after a crash may produce
//! different (equally valid) output than an uninterrupted one: fine for the exactly-once file
//! sink, which never shows anything of an epoch that was not committed, but not a deterministic
//! replay (which a Kafka transactional sink re-sending an epoch would need).
//!
//! ```
//! use std::time::Duration;
//! use weir_operators::prelude::*;
//! use weir_runtime::prelude::*;
//! use weir_runtime::timely::dataflow::operators::Inspect;
//!
//! // (event time in ms, user), one partition.
//! let clicks: Vec<(u64, String)> =
//!     ["alice", "bob", "alice", "alice", "bob"].iter().enumerate().map(|(i, u)| (i as u64 * 1_000, u.to_string())).collect();
//! let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
//! let into = seen.clone();
//! let query = Query::new("running-count").start(move |scope, ctx| {
//!     let events = event_source(scope, ctx, MemorySource::new(vec![clicks.clone()]),
//!         |click: &(u64, String)| Some(EventTime::from_millis(click.0)),
//!         WatermarkOptions::with_delay(Duration::ZERO));
//!     let counts = events.key_by(|click: &(u64, String)| click.1.clone()).process_with_state(ctx, "count",
//!         |user: &String, records, state: &mut KeyedState<u64>, out: &mut Vec<(String, u64)>| {
//!             let mut count = state.get().copied().unwrap_or(0);
//!             for _ in records {
//!                 count += 1;
//!                 out.push((user.clone(), count));
//!             }
//!             state.update(count);
//!         })?;
//!     let into = into.clone();
//!     counts.output.records.inspect(move |e| into.lock().unwrap().push((e.time.as_millis(), e.data.clone())));
//!     Ok(())
//! }).unwrap();
//! query.await_termination(None).unwrap();
//! let mut seen = seen.lock().unwrap().clone();
//! seen.sort();
//! let counts: Vec<u64> = seen.iter().map(|(_, (_, n))| *n).collect();
//! assert_eq!(counts, vec![1, 1, 2, 3, 2]);
//! ```

mod handle;
mod operator;
mod timers;

use std::hash::BuildHasher;
use std::rc::Rc;

use rustc_hash::FxBuildHasher;
use timely::dataflow::operators::generic::operator::empty;
use timely::dataflow::operators::Concat;
use timely::dataflow::StreamVec;
use timely::ExchangeData;
use weir_runtime::context::QueryContext;
use weir_runtime::error::BuildError;
use weir_runtime::event::{Event, EventStream, LateRecord};
use weir_runtime::metrics::OperatorMetrics;
use weir_runtime::state::{StateKey, StateValue};
use weir_runtime::time::EventTime;

pub use self::handle::{Fired, KeyedState};
use self::timers::TimerSnapshot;
use crate::checkpointed::OperatorCheckpoint;
use crate::late::{relabel_late, split_late};

/// The records of one key at one event time, as the function receives them: iterate to take
/// them (in `D: Ord` order); `len()` says how many there are.
pub type Records<'a, D> = std::vec::Drain<'a, D>;

/// An event stream with a key for every record, ready for keyed processing.
pub struct KeyedStream<'scope, K, D: 'static> {
    stream: EventStream<'scope, D>,
    key_of: Rc<dyn Fn(&D) -> K>,
}

/// Keys an event stream: `stream.key_by(|r| r.user.clone())`.
pub trait KeyBy<'scope, D: 'static> {
    /// Gives every record the key `key_of` computes; records of one key are processed together,
    /// on one worker.
    fn key_by<K>(self, key_of: impl Fn(&D) -> K + 'static) -> KeyedStream<'scope, K, D>;
}

impl<'scope, D: 'static> KeyBy<'scope, D> for EventStream<'scope, D> {
    fn key_by<K>(self, key_of: impl Fn(&D) -> K + 'static) -> KeyedStream<'scope, K, D> {
        KeyedStream { stream: self, key_of: Rc::new(key_of) }
    }
}

/// The outputs of [`KeyedStream::process_with_state`].
pub struct Processed<'scope, O: 'static, D: 'static> {
    /// What the function emitted, each with the event time of the call that produced it. Its
    /// `late` side is empty: outputs are never late downstream.
    pub output: EventStream<'scope, O>,
    /// Input records dropped as late (at their source, or behind this operator's watermark),
    /// each once, naming this operator.
    pub late: StreamVec<'scope, EventTime, LateRecord<D>>,
}

/// One keyed input record on its way to the worker that owns its key: (event time, key hash,
/// key, record).
type Keyed<K, D> = (EventTime, u64, K, D);
type Timed<'scope, D> = StreamVec<'scope, EventTime, D>;

impl<'scope, K, D> KeyedStream<'scope, K, D>
where
    K: StateKey + ExchangeData,
    D: ExchangeData + Ord,
{
    /// Calls `function(key, records, state, out)` per key and event time, and on the key's timers
    /// and timeouts; see the [module documentation](self) for ordering, timers and late records.
    ///
    /// The state of each key (`S`) lives in the store of the context's state backend. Fails at
    /// build time if the store cannot be opened (e.g. an unusable RocksDB directory).
    pub fn process_with_state<S, O, F>(
        self,
        ctx: &QueryContext,
        name: &str,
        function: F,
    ) -> Result<Processed<'scope, O, D>, BuildError>
    where
        S: StateValue,
        O: Clone + 'static,
        F: FnMut(&K, Records<'_, D>, &mut KeyedState<S>, &mut Vec<O>) + 'static,
    {
        if name.is_empty() {
            return Err(BuildError::invalid(
                "keyed state operator name",
                "the name is empty",
                "name the operator: it labels its metrics, late records and state directory",
            ));
        }
        let scope = self.stream.records.scope();
        let mut store = ctx.state_backend().open::<K, S>(ctx.id(), name, scope.index()).map_err(|error| {
            BuildError::invalid(
                format!("state backend of operator {name}"),
                error.to_string(),
                "check that the state directory is writable, or use the memory backend",
            )
        })?;
        ctx.plan().record(
            weir_runtime::plan::OperatorPlan::operator(name, "keyed state (process_with_state)")
                .state(weir_runtime::plan::StateBound::Timers(
                    "the function removes a key's state, or an event-time timer or timeout it sets fires; a key \
                     it never removes stays for ever"
                        .to_string(),
                ))
                .exchange("records by key"),
        );
        // A resumed query starts from this worker's store and timers as the last committed epoch
        // left them.
        OperatorCheckpoint::record_types::<K, S>(ctx, name);
        let checkpoint = match OperatorCheckpoint::register(ctx, name, scope.index(), &["", "timers", "pending"]) {
            Some(checkpoint) => {
                checkpoint.restore_store("", &mut store)?;
                let timers = checkpoint.restore_bytes::<Vec<TimerSnapshot<K>>>("timers")?;
                let pending = checkpoint.restore_bytes::<Vec<Keyed<K, D>>>("pending")?;
                let restored = checkpoint.resume_at().map(|resume_at| operator::Restored {
                    timers: timers.unwrap_or_default(),
                    pending: pending.unwrap_or_default(),
                    resume_at,
                });
                Some((checkpoint, restored))
            }
            None => None,
        };
        let metrics = ctx.metrics().operator(name);
        let (keyed, operator_late) = key_records(self.stream.records, name, self.key_of, &metrics);
        let records = operator::process(keyed, ctx, name, store, function, metrics.clone(), checkpoint);
        let late = relabel_late(self.stream.late, name, metrics).concat(operator_late);
        Ok(Processed { output: EventStream { records, late: empty(scope) }, late })
    }
}

/// Stage 1, on the worker that read each batch: splits off records late for this operator and
/// computes each on-time record's key and key hash (stage 2 exchanges records by that hash).
fn key_records<'scope, K: ExchangeData + std::hash::Hash, D: ExchangeData>(
    records: StreamVec<'scope, EventTime, Event<D>>,
    name: &str,
    key_of: Rc<dyn Fn(&D) -> K>,
    metrics: &std::sync::Arc<OperatorMetrics>,
) -> (Timed<'scope, Keyed<K, D>>, Timed<'scope, LateRecord<D>>) {
    split_late(records, format!("{name}/key"), name, metrics, move |events, keyed| {
        keyed.extend(events.drain(..).map(|event| {
            let key = key_of(&event.data);
            let hash = FxBuildHasher.hash_one(&key);
            (event.time, hash, key, event.data)
        }))
    })
}
