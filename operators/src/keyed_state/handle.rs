//! The handle a keyed-state function gets for its key: the state value, timers and time.

use std::time::Duration;

use weir_runtime::time::EventTime;

/// Why the function was called without records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fired {
    /// The key's event-time timer at this time: the watermark has passed it.
    Timer(EventTime),
    /// The key's processing-time timeout: no records arrived for the set duration (or the input
    /// ended while the timeout was pending).
    Timeout,
}

/// The state of one key, as the function of [`super::KeyedStream::process_with_state`] sees it
/// during one call (Spark's `GroupState`, Flink's keyed state plus timer service).
///
/// Changes take effect when the call returns: the value is written to the operator's
/// [`StateStore`](weir_runtime::state::StateStore) (memory or RocksDB) only if it was updated or
/// removed; timers are kept in memory.
///
/// ```
/// use std::time::Duration;
/// use weir_operators::keyed_state::KeyedState;
/// use weir_runtime::time::EventTime;
///
/// let mut state = KeyedState::<u64>::detached(EventTime::from_millis(1_000));
/// assert!(!state.exists());
/// state.update(state.get().copied().unwrap_or(0) + 1);
/// assert_eq!(state.get(), Some(&1));
/// state.set_timer(EventTime::from_millis(31_000));
/// state.set_timeout_duration(Duration::from_secs(60));
/// assert_eq!(state.timer(), Some(EventTime::from_millis(31_000)));
/// assert!(!state.has_timed_out());
/// ```
#[derive(Debug)]
pub struct KeyedState<S> {
    pub(super) value: Option<S>,
    pub(super) changed: bool,
    pub(super) fired: Option<Fired>,
    pub(super) time: EventTime,
    pub(super) watermark: Option<EventTime>,
    pub(super) timer: Option<EventTime>,
    pub(super) timer_changed: bool,
    pub(super) timeout: Option<Duration>,
    pub(super) timeout_changed: bool,
}

impl<S> KeyedState<S> {
    /// A handle with no value, no timers and watermark `None`, for calls at `time`: lets a
    /// keyed-state function be unit-tested without a dataflow.
    pub fn detached(time: EventTime) -> Self {
        KeyedState {
            value: None,
            changed: false,
            fired: None,
            time,
            watermark: None,
            timer: None,
            timer_changed: false,
            timeout: None,
            timeout_changed: false,
        }
    }

    /// Prepares the handle for a call (no allocation: one handle serves every call).
    pub(super) fn reset(
        &mut self,
        time: EventTime,
        watermark: Option<EventTime>,
        fired: Option<Fired>,
        timer: Option<EventTime>,
        timeout: Option<Duration>,
    ) {
        self.changed = false;
        self.fired = fired;
        self.time = time;
        self.watermark = watermark;
        self.timer = timer;
        self.timer_changed = false;
        self.timeout = timeout;
        self.timeout_changed = false;
    }

    /// The key's state, if it has one.
    pub fn get(&self) -> Option<&S> {
        self.value.as_ref()
    }

    /// The key's state, to change in place (counts as an update).
    pub fn get_mut(&mut self) -> Option<&mut S> {
        if self.value.is_some() {
            self.changed = true;
        }
        self.value.as_mut()
    }

    /// Whether the key has state.
    pub fn exists(&self) -> bool {
        self.value.is_some()
    }

    /// Sets the key's state.
    pub fn update(&mut self, value: S) {
        self.value = Some(value);
        self.changed = true;
    }

    /// Removes the key's state (its timers stay set: clear them with [`KeyedState::clear_timer`]
    /// and [`KeyedState::clear_timeout`]).
    pub fn remove(&mut self) {
        if self.value.take().is_some() {
            self.changed = true;
        }
    }

    /// Whether this call was made by a timer or a timeout (then there are no records).
    pub fn has_timed_out(&self) -> bool {
        self.fired.is_some()
    }

    /// What made this call, if it was not records: the event-time timer or the processing-time
    /// timeout.
    pub fn fired(&self) -> Option<Fired> {
        self.fired
    }

    /// The event time this call is for: the records' event time, the fired timer's time, or
    /// (for a processing-time timeout) the watermark. Outputs of the call carry this time.
    pub fn event_time(&self) -> EventTime {
        self.time
    }

    /// The operator's watermark (its input frontier) at this call; `None` once the input has
    /// ended. Depends on when the operator runs, so results that must not depend on timing
    /// should use [`KeyedState::event_time`] instead.
    pub fn current_watermark(&self) -> Option<EventTime> {
        self.watermark
    }

    /// Sets the key's event-time timer to `time`, replacing any earlier one: the function is
    /// called for the key, with no records and [`KeyedState::has_timed_out`] true, once the
    /// watermark passes `time` (after the key's records at `time`). A time at or before this
    /// call's [`KeyedState::event_time`] fires right after this call.
    pub fn set_timer(&mut self, time: EventTime) {
        self.timer = Some(time);
        self.timer_changed = true;
    }

    /// Cancels the key's event-time timer.
    pub fn clear_timer(&mut self) {
        self.timer = None;
        self.timer_changed = true;
    }

    /// The key's event-time timer, if one is set.
    pub fn timer(&self) -> Option<EventTime> {
        self.timer
    }

    /// Sets a processing-time timeout: if no records arrive for the key within `duration` of
    /// wall-clock time (counted from this call, and again from every later call with records),
    /// the function is called with no records and [`KeyedState::has_timed_out`] true. A timeout
    /// fires once; set it again in that call to keep it. At the end of a bounded input every
    /// pending timeout fires at once.
    pub fn set_timeout_duration(&mut self, duration: Duration) {
        self.timeout = Some(duration);
        self.timeout_changed = true;
    }

    /// Cancels the key's processing-time timeout.
    pub fn clear_timeout(&mut self) {
        self.timeout = None;
        self.timeout_changed = true;
    }

    /// The key's processing-time timeout duration, if one is set.
    pub fn timeout_duration(&self) -> Option<Duration> {
        self.timeout
    }
}
