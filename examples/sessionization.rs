//! Sessionization with keyed state and an event-time timer: user events → sessions with their
//! event count and duration. A session ends when the user is inactive for 30 s of event time:
//! every event moves the user's timer to `last event + 30 s`; when the watermark passes it, the
//! function is called with `has_timed_out()`, emits the session and removes the state.
//!
//! Events arrive out of order (the watermark trails the newest event by 10 s): the one that is
//! more than 10 s behind is late and reported instead of being dropped silently.
//!
//! ```sh
//! cargo run --example sessionization
//! cargo run --example sessionization -- --rocksdb
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};
use weir::prelude::*;
use weir::runtime::source::event_source_with_batch;

/// 2024-06-01T00:00:00Z: event times below are seconds after it.
const BASE_MS: u64 = 1_717_200_000_000;

/// Inactivity that closes a session.
const GAP: Duration = Duration::from_secs(30);

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct UserEvent {
    at_s: u64,
    user: String,
    page: String,
}

/// A session being built: kept in the keyed state between calls.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct OpenSession {
    start: EventTime,
    last: EventTime,
    events: u64,
}

/// A finished session: the operator's output.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Session {
    user: String,
    start: EventTime,
    end: EventTime,
    events: u64,
}

fn event(at_s: u64, user: &str, page: &str) -> UserEvent {
    UserEvent { at_s, user: user.into(), page: page.into() }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let backend = if std::env::args().any(|a| a == "--rocksdb") {
        StateBackend::rocksdb(std::env::temp_dir().join("weir-example-sessionization"))
    } else {
        StateBackend::Memory
    };
    let events = vec![
        event(0, "alice", "/home"),
        event(5, "bob", "/home"),
        event(12, "alice", "/search"),
        event(9, "bob", "/cart"), // out of order, within the 10 s delay: counted
        event(30, "alice", "/item/7"),
        event(50, "bob", "/home"),   // 41 s after bob's last event: a new session
        event(20, "bob", "/help"),   // 30 s behind the newest event: late
        event(95, "alice", "/home"), // 65 s after alice's last event: a new session
        event(96, "carol", "/home"),
    ];
    let sessions = Collector::new();
    let late = Collector::new();
    let (sessions_into, late_into) = (sessions.clone(), late.clone());

    let query = Query::new("sessionization").state_backend(backend).start(move |scope, ctx| {
        let events = event_source_with_batch(
            scope,
            ctx,
            MemorySource::new(vec![events.clone()]),
            |e: &UserEvent| Some(EventTime::from_millis(BASE_MS + e.at_s * 1_000)),
            WatermarkOptions::with_delay(Duration::from_secs(10)),
            2,
        );
        let processed = events.key_by(|e: &UserEvent| e.user.clone()).process_with_state(
            ctx,
            "sessions",
            |user: &String, events, state: &mut KeyedState<OpenSession>, out: &mut Vec<Session>| {
                if state.has_timed_out() {
                    // The watermark passed last event + GAP: the session is over.
                    if let Some(open) = state.get() {
                        out.push(Session {
                            user: user.clone(),
                            start: open.start,
                            end: open.last,
                            events: open.events,
                        });
                    }
                    state.remove();
                    return;
                }
                let now = state.event_time();
                let mut open = state.get().cloned().unwrap_or(OpenSession { start: now, last: now, events: 0 });
                open.events += events.len() as u64;
                open.last = now;
                state.update(open);
                state.set_timer(now.saturating_add(GAP));
            },
        )?;
        sessions_into.attach(processed.output.records, ctx, "sessions");
        late_into.attach(processed.late, ctx, "late");
        Ok(())
    })?;
    query.await_termination(Some(Duration::from_secs(30)))?;
    // The stores delete their own directories when the query ends; this removes the empty root.
    let _ = std::fs::remove_dir(std::env::temp_dir().join("weir-example-sessionization"));

    let mut rows: Vec<Session> = sessions.take().into_iter().map(|(_, e)| e.data).collect();
    rows.sort_by(|a, b| (a.start, &a.user).cmp(&(b.start, &b.user)));
    println!("{:<6} {:<26} {:<26} {:>6} {:>9}", "user", "start", "end", "events", "duration");
    for s in &rows {
        let duration = s.start.until(s.end);
        println!(
            "{:<6} {:<26} {:<26} {:>6} {:>8}s",
            s.user,
            s.start.to_string(),
            s.end.to_string(),
            s.events,
            duration.as_secs()
        );
    }
    for (_, l) in late.take() {
        println!(
            "late: {} {} at {} s, {} ms behind the watermark (operator {})",
            l.record.user, l.record.page, l.record.at_s, l.lateness_ms, l.operator
        );
    }
    Ok(())
}
