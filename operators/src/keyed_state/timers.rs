//! The timers of every key on one worker: at most one event-time timer and one processing-time
//! timeout per key, kept in memory.
//!
//! Each queue holds at most one live entry per key, at or before the key's real time: moving a
//! timer later (sessionization does so on every record) costs nothing; the entry is moved when
//! it comes due. Entries left behind by cancelled timers are skipped when they come due.

use std::collections::BTreeMap;
use std::hash::Hash;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use weir_runtime::time::EventTime;

/// One key's timers as a checkpoint stores them (`docs/checkpoints.md` §2): the event-time
/// timer, and the processing-time timeout as its duration and its **absolute wall-clock
/// deadline** (ms since the Unix epoch), as Spark restores `GroupState` timeouts: the time the
/// query was down counts as time without records, so a timeout that fell due meanwhile fires as
/// soon as the query resumes. (An `Instant` means nothing in another process.)
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct TimerSnapshot<K> {
    pub(super) key: K,
    pub(super) event: Option<EventTime>,
    pub(super) timeout: Option<(Duration, u64)>,
}

#[derive(Default)]
struct KeyTimers {
    /// The event-time timer (already moved to no earlier than the call that set it).
    event: Option<EventTime>,
    /// Where the key's live entry in the event queue is.
    event_queued: Option<EventTime>,
    /// The timeout duration and its current deadline.
    timeout: Option<(Duration, Instant)>,
    /// Where the key's live entry in the timeout queue is.
    timeout_queued: Option<Instant>,
}

impl KeyTimers {
    fn is_unset(&self) -> bool {
        self.event.is_none() && self.timeout.is_none()
    }
}

/// Timers and timeouts of the keys of one operator on one worker.
pub(super) struct Timers<K> {
    keys: FxHashMap<K, KeyTimers>,
    events: BTreeMap<EventTime, Vec<K>>,
    timeouts: BTreeMap<Instant, Vec<K>>,
}

impl<K: Hash + Eq + Clone> Timers<K> {
    pub(super) fn new() -> Self {
        Timers { keys: FxHashMap::default(), events: BTreeMap::new(), timeouts: BTreeMap::new() }
    }

    /// Whether any key has a timer or timeout (if not, calls need not look theirs up).
    pub(super) fn any_key(&self) -> bool {
        !self.keys.is_empty()
    }

    /// The key's event-time timer and timeout duration.
    pub(super) fn of(&self, key: &K) -> (Option<EventTime>, Option<Duration>) {
        match self.keys.get(key) {
            Some(timers) => (timers.event, timers.timeout.map(|(d, _)| d)),
            None => (None, None),
        }
    }

    /// Sets (or with `None` clears) the key's event-time timer.
    pub(super) fn set_event(&mut self, key: &K, at: Option<EventTime>) {
        match at {
            Some(at) => {
                let timers = self.keys.entry(key.clone()).or_default();
                timers.event = Some(at);
                if timers.event_queued.is_none_or(|queued| at < queued) {
                    timers.event_queued = Some(at);
                    self.events.entry(at).or_default().push(key.clone());
                }
            }
            None => self.update_existing(key, |timers| timers.event = None),
        }
    }

    /// Sets (or with `None` clears) the key's timeout: `(duration, deadline)`.
    pub(super) fn set_timeout(&mut self, key: &K, timeout: Option<(Duration, Instant)>) {
        match timeout {
            Some((duration, deadline)) => {
                let timers = self.keys.entry(key.clone()).or_default();
                timers.timeout = Some((duration, deadline));
                if timers.timeout_queued.is_none_or(|queued| deadline < queued) {
                    timers.timeout_queued = Some(deadline);
                    self.timeouts.entry(deadline).or_default().push(key.clone());
                }
            }
            None => self.update_existing(key, |timers| timers.timeout = None),
        }
    }

    /// Records arrived for the key: its timeout, if any, counts again from `now`.
    pub(super) fn rearm_timeout(&mut self, key: &K, now: Instant) {
        if let Some(KeyTimers { timeout: Some((duration, deadline)), .. }) = self.keys.get_mut(key) {
            *deadline = now + *duration;
        }
    }

    fn update_existing(&mut self, key: &K, change: impl FnOnce(&mut KeyTimers)) {
        if let Some(timers) = self.keys.get_mut(key) {
            change(timers);
            if timers.is_unset() {
                self.keys.remove(key);
            }
        }
    }

    /// The earliest time in the event queue (possibly a cancelled timer's).
    pub(super) fn next_event_time(&self) -> Option<EventTime> {
        self.events.keys().next().copied()
    }

    /// Removes and returns the keys queued at event time `at`.
    pub(super) fn take_events_at(&mut self, at: EventTime) -> Vec<K> {
        self.events.remove(&at).unwrap_or_default()
    }

    /// Whether the key's queue entry at `at` is a timer that fires now (then it is cleared).
    /// A timer that was moved later is queued again at its time; a cancelled one is dropped.
    pub(super) fn event_fires(&mut self, key: &K, at: EventTime) -> bool {
        let Some(timers) = self.keys.get_mut(key) else { return false };
        if timers.event_queued != Some(at) {
            return false;
        }
        timers.event_queued = None;
        let fires = match timers.event {
            Some(real) if real > at => {
                timers.event_queued = Some(real);
                self.events.entry(real).or_default().push(key.clone());
                false
            }
            Some(_) => {
                timers.event = None;
                true
            }
            None => false,
        };
        if self.keys.get(key).is_some_and(KeyTimers::is_unset) {
            self.keys.remove(key);
        }
        fires
    }

    /// Whether any timeout is queued.
    pub(super) fn any_timeout(&self) -> bool {
        !self.timeouts.is_empty()
    }

    /// The earliest deadline in the timeout queue.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.timeouts.keys().next().copied()
    }

    /// Removes and returns the queue entries due at `now` (all of them if `all`).
    pub(super) fn take_timeouts_due(&mut self, now: Instant, all: bool) -> Vec<(Instant, K)> {
        let mut due = Vec::new();
        while let Some(entry) = self.timeouts.first_entry() {
            if !all && *entry.key() > now {
                break;
            }
            let (at, keys) = entry.remove_entry();
            due.extend(keys.into_iter().map(|key| (at, key)));
        }
        due
    }

    /// Whether the key's timeout queued at `at` fires now (then it is cleared); `force` fires it
    /// whatever its deadline (end of input). A timeout pushed later is queued again.
    pub(super) fn timeout_fires(&mut self, key: &K, at: Instant, now: Instant, force: bool) -> bool {
        let Some(timers) = self.keys.get_mut(key) else { return false };
        if timers.timeout_queued != Some(at) {
            return false;
        }
        timers.timeout_queued = None;
        let fires = match timers.timeout {
            Some((_, deadline)) if !force && deadline > now => {
                timers.timeout_queued = Some(deadline);
                self.timeouts.entry(deadline).or_default().push(key.clone());
                false
            }
            Some(_) => {
                timers.timeout = None;
                true
            }
            None => false,
        };
        if self.keys.get(key).is_some_and(KeyTimers::is_unset) {
            self.keys.remove(key);
        }
        fires
    }

    /// Every key's timers, for a checkpoint taken at processing time `now` (wall clock
    /// `wall_now`): timeout deadlines become wall-clock times.
    pub(super) fn snapshot(&self, now: Instant, wall_now: SystemTime) -> Vec<TimerSnapshot<&K>> {
        let wall_ms = |deadline: Instant| -> u64 {
            let wall = match deadline.checked_duration_since(now) {
                Some(ahead) => wall_now + ahead,
                None => wall_now - now.duration_since(deadline),
            };
            // Rounded up: a restored timeout never fires earlier than it would have.
            let since = wall.duration_since(UNIX_EPOCH).unwrap_or_default();
            since.as_millis() as u64 + u64::from(since.subsec_nanos() % 1_000_000 != 0)
        };
        self.keys
            .iter()
            .map(|(key, timers)| TimerSnapshot {
                key,
                event: timers.event,
                timeout: timers.timeout.map(|(duration, deadline)| (duration, wall_ms(deadline))),
            })
            .collect()
    }

    /// Timers restored from a [`Timers::snapshot`], at processing time `now` (wall clock
    /// `wall_now`): a timeout whose wall-clock deadline has passed is due at once.
    pub(super) fn restore(snapshot: Vec<TimerSnapshot<K>>, now: Instant, wall_now: SystemTime) -> Self {
        let mut timers = Timers::new();
        let wall_now_ms = wall_now.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64;
        for TimerSnapshot { key, event, timeout } in snapshot {
            timers.set_event(&key, event);
            let timeout = timeout.map(|(duration, deadline_ms)| {
                (duration, now + Duration::from_millis(deadline_ms.saturating_sub(wall_now_ms)))
            });
            timers.set_timeout(&key, timeout);
        }
        timers
    }

    /// Whether nothing is set or queued.
    pub(super) fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.events.is_empty() && self.timeouts.is_empty()
    }

    /// Estimated bytes held.
    pub(super) fn memory_bytes(&self) -> u64 {
        let per_key = std::mem::size_of::<K>() + std::mem::size_of::<KeyTimers>() + 8;
        let queued: usize =
            self.events.values().map(Vec::len).sum::<usize>() + self.timeouts.values().map(Vec::len).sum::<usize>();
        (self.keys.capacity() * per_key + queued * (std::mem::size_of::<K>() + 16)) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: u64) -> EventTime {
        EventTime::from_millis(ms)
    }

    /// Pops every queue entry up to `until` in order, as the operator does, and returns the
    /// (time, key) pairs that fired.
    fn fire_until(timers: &mut Timers<&'static str>, until: EventTime) -> Vec<(u64, &'static str)> {
        let mut fired = Vec::new();
        while let Some(at) = timers.next_event_time().filter(|at| *at <= until) {
            for key in timers.take_events_at(at) {
                if timers.event_fires(&key, at) {
                    fired.push((at.as_millis(), key));
                }
            }
        }
        fired
    }

    #[test]
    fn a_timer_moved_later_fires_once_at_its_last_time() {
        let mut timers = Timers::new();
        timers.set_event(&"a", Some(t(10)));
        timers.set_event(&"a", Some(t(20)));
        timers.set_event(&"a", Some(t(30)));
        timers.set_event(&"b", Some(t(15)));
        assert_eq!(fire_until(&mut timers, t(25)), vec![(15, "b")]);
        assert_eq!(fire_until(&mut timers, t(100)), vec![(30, "a")]);
        assert!(timers.is_empty());
    }

    #[test]
    fn a_timer_moved_earlier_or_cleared_does_not_fire_at_its_old_time() {
        let mut timers = Timers::new();
        timers.set_event(&"a", Some(t(30)));
        timers.set_event(&"a", Some(t(10)));
        timers.set_event(&"b", Some(t(20)));
        timers.set_event(&"b", None);
        assert_eq!(fire_until(&mut timers, t(100)), vec![(10, "a")]);
        assert!(timers.is_empty());
    }

    #[test]
    fn timers_restored_from_a_snapshot_fire_as_the_originals_would() {
        let start = Instant::now();
        let wall = SystemTime::now();
        let mut timers = Timers::new();
        timers.set_event(&"a", Some(t(30)));
        timers.set_event(&"a", Some(t(50)));
        timers.set_event(&"b", Some(t(20)));
        timers.set_timeout(&"b", Some((Duration::from_secs(60), start + Duration::from_secs(40))));
        timers.set_timeout(&"c", Some((Duration::from_secs(5), start + Duration::from_secs(5))));
        let snapshot: Vec<TimerSnapshot<&str>> = timers
            .snapshot(start, wall)
            .into_iter()
            .map(|s| TimerSnapshot { key: *s.key, event: s.event, timeout: s.timeout })
            .collect();
        assert_eq!(snapshot.len(), 3);
        let wall_ms = wall.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
        let b = snapshot.iter().find(|s| s.key == "b").unwrap();
        assert!((wall_ms + 40_000..=wall_ms + 40_001).contains(&b.timeout.unwrap().1), "absolute deadline");

        // Restored 10 s later (wall clock), in a process whose `Instant`s start elsewhere.
        let later = Instant::now() + Duration::from_secs(1_000);
        let mut restored = Timers::restore(snapshot, later, wall + Duration::from_secs(10));
        assert_eq!(fire_until(&mut restored, t(100)), vec![(20, "b"), (50, "a")]);
        assert_eq!(restored.of(&"b"), (None, Some(Duration::from_secs(60))));
        // c's deadline passed while "down": due at once; b's is 30 s after the restore.
        let due = restored.take_timeouts_due(later, false);
        assert_eq!(due.len(), 1);
        assert!(restored.timeout_fires(&"c", due[0].0, later, false));
        let deadline = restored.next_deadline().unwrap();
        let ahead = deadline.duration_since(later);
        assert!(ahead >= Duration::from_millis(29_999) && ahead <= Duration::from_millis(30_001), "{ahead:?}");
    }

    #[test]
    fn a_timeout_pushed_back_by_records_fires_at_its_new_deadline() {
        let start = Instant::now();
        let mut timers = Timers::new();
        timers.set_timeout(&"a", Some((Duration::from_millis(100), start + Duration::from_millis(100))));
        timers.rearm_timeout(&"a", start + Duration::from_millis(50));
        let now = start + Duration::from_millis(120);
        let due = timers.take_timeouts_due(now, false);
        assert_eq!(due.len(), 1);
        assert!(!timers.timeout_fires(&"a", due[0].0, now, false), "the deadline moved to 150 ms");
        assert_eq!(timers.next_deadline(), Some(start + Duration::from_millis(150)));
        let now = start + Duration::from_millis(160);
        let due = timers.take_timeouts_due(now, false);
        assert!(timers.timeout_fires(&"a", due[0].0, now, false));
        assert!(timers.is_empty());
    }
}
