//! `explain`: the plan of a join + window dataflow against golden files, UNBOUNDED for unbounded
//! operators, and `weir explain` on the real binary.
//!
//! Set `WEIR_BLESS=1` to rewrite the golden files after an intended change (then review the diff).

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use timely::dataflow::operators::Concat;
use weir::prelude::*;
use weir::runtime::plan::{NodeRole, Plan, StateBound};

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
struct Click {
    user: u32,
    ts: u64,
}

fn sources() -> (MemorySource<Click>, MemorySource<Click>) {
    let rows = vec![Click { user: 1, ts: 1_000 }, Click { user: 2, ts: 2_000 }];
    (MemorySource::new(vec![rows.clone(), rows.clone()]).named("clicks"), MemorySource::new(vec![rows]).named("views"))
}

/// clicks ⋈ views within [-5s, +10s], then a tumbling 10s count of the joined rows per user; the
/// late records of the join and the window go to a second collector.
fn join_then_window(bounded: bool) -> Plan {
    let (clicks, views) = sources();
    Query::new("join-window")
        .explain(move |scope, ctx| {
            let time = |c: &Click| Some(EventTime::from_millis(c.ts));
            let options = WatermarkOptions::with_delay(Duration::from_secs(2)).idle_timeout(Duration::from_secs(30));
            let left = event_source(scope, ctx, clicks.clone(), time, options.clone());
            let right = event_source(scope, ctx, views.clone(), time, WatermarkOptions::default());
            let key = |c: &Click| c.user;
            let joined = if bounded {
                left.join_interval(
                    ctx,
                    "clicks-views",
                    right,
                    key,
                    key,
                    TimeOffset::parse("-5s").unwrap(),
                    TimeOffset::parse("10s").unwrap(),
                    JoinType::Inner,
                )?
            } else {
                left.join_unbounded(ctx, "clicks-views", right, key, key, JoinType::LeftOuter)?
            };
            let counts = joined.rows.window_count(
                ctx,
                "per-user",
                Windowing::tumbling(Duration::from_secs(10)),
                OutputMode::Append,
                |row: &JoinedRow<Click, Click>| row.left.as_ref().map_or(0, |c| c.user),
            )?;
            Collector::new().attach(counts.results, ctx, "counts");
            let late = joined.late_left.concat(joined.late_right);
            let late = timely::dataflow::operators::vec::Map::map(late, |l: LateRecord<Click>| l.record.user);
            let window_late =
                timely::dataflow::operators::vec::Map::map(counts.late, |l: LateRecord<JoinedRow<Click, Click>>| {
                    l.record.left.map_or(0, |c| c.user)
                });
            JsonLinesSink::new("/nonexistent-dir/late.jsonl").write(late.concat(window_late), ctx, "late")?;
            Ok(())
        })
        .expect("the dataflow builds")
}

fn golden(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(name);
    if std::env::var_os("WEIR_BLESS").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e} (run with WEIR_BLESS=1 to create it)", path.display()));
    assert_eq!(actual, expected, "the plan differs from {} (WEIR_BLESS=1 rewrites it)", path.display());
}

#[test]
fn join_and_window_plan_matches_the_golden_text_and_dot() {
    let plan = join_then_window(true);
    golden("explain_join_window.txt", &plan.to_string());
    golden("explain_join_window.dot", &plan.dot());
}

#[test]
fn join_and_window_plan_has_the_real_graph() {
    let plan = join_then_window(true);
    let id = |name: &str| plan.node(name).unwrap_or_else(|| panic!("no node {name} in\n{plan}")).id;
    let (clicks, views) = (id("Source[clicks]"), id("Source[views]"));
    let join = plan.node("clicks-views").unwrap();
    let froms: Vec<usize> = join.inputs.iter().map(|i| i.from).collect();
    assert!(froms.contains(&clicks) && froms.contains(&views), "{plan}");
    assert!(matches!(join.state, StateBound::JoinBound(_)), "{plan}");
    assert_eq!(join.watermark_from, vec![clicks, views]);
    let window = plan.node("per-user").unwrap();
    assert_eq!(window.inputs.iter().map(|i| i.from).collect::<Vec<_>>(), vec![join.id], "{plan}");
    assert!(matches!(window.state, StateBound::WindowClose(_)));
    assert_eq!(window.output_mode.as_deref(), Some("append"));
    assert_eq!(window.watermark_from, vec![clicks, views], "the window sees both sources through the join");
    let late_sink = plan.node("Sink[late]").unwrap();
    assert_eq!(late_sink.role, NodeRole::Sink);
    let late_from: Vec<usize> = late_sink.inputs.iter().map(|i| i.from).collect();
    assert!(late_from.contains(&join.id) && late_from.contains(&window.id), "{plan}");
    assert!(plan.unbounded().is_empty());
    // Explaining must not create the sink's file (its directory does not even exist).
    assert!(!std::path::Path::new("/nonexistent-dir").exists());
}

#[test]
fn join_unbounded_says_unbounded() {
    let plan = join_then_window(false);
    let join = plan.node("clicks-views").unwrap();
    assert!(join.state.is_unbounded(), "{plan}");
    let text = plan.to_string();
    assert!(text.contains("state:     UNBOUNDED: join_unbounded keeps every row"), "{text}");
    assert!(text.contains("State: UNBOUNDED in [3] clicks-views"), "{text}");
    assert!(plan.dot().contains("color=red"), "{}", plan.dot());
}

#[test]
fn dedup_unbounded_says_unbounded_and_dedup_within_names_its_horizon() {
    let explain = |bounded: bool| {
        let (clicks, _) = sources();
        Query::new("dedup")
            .explain(move |scope, ctx| {
                let time = |c: &Click| Some(EventTime::from_millis(c.ts));
                let events = event_source(scope, ctx, clicks.clone(), time, WatermarkOptions::default());
                let unique = if bounded {
                    events.dedup(ctx, "unique", |c: &Click| c.user, Duration::from_secs(3600))?
                } else {
                    events.dedup_unbounded(ctx, "unique", |c: &Click| c.user)?
                };
                Collector::new().attach(unique.records, ctx, "out");
                Ok(())
            })
            .unwrap()
    };
    let unbounded = explain(false);
    assert!(unbounded.node("unique").unwrap().state.is_unbounded(), "{unbounded}");
    assert!(unbounded.to_string().contains("UNBOUNDED: dedup_unbounded keeps every key"), "{unbounded}");
    let bounded = explain(true);
    let state = &bounded.node("unique").unwrap().state;
    assert_eq!(state.label(), "dedup horizon");
    assert!(state.to_string().contains("+ 1h"), "{bounded}");
}

fn weir(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_weir")).args(args).output().expect("run weir");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn cli_explains_jobs_without_running_them() {
    let dir = std::env::temp_dir().join(format!("weir-explain-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (left, right, out) = (dir.join("left.jsonl"), dir.join("right.jsonl"), dir.join("out.jsonl"));
    std::fs::write(&left, "{\"ts\":1,\"k\":1}\n").unwrap();
    std::fs::write(&right, "{\"ts\":2,\"k\":1}\n").unwrap();
    let (left, right, out) = (left.to_str().unwrap(), right.to_str().unwrap(), out.to_str().unwrap());

    let (ok, text, err) = weir(&[
        "explain",
        "interval-join",
        "--left",
        left,
        "--right",
        right,
        "--left-key-field",
        "k",
        "--right-key-field",
        "k",
        "--unbounded",
        "--output",
        out,
    ]);
    assert!(ok, "{err}");
    assert!(text.contains("UNBOUNDED"), "an interval join without bounds is unbounded:\n{text}");
    assert!(!std::path::Path::new(out).exists(), "explain must not create the output file");

    let (ok, text, err) = weir(&[
        "explain",
        "interval-join",
        "--left",
        left,
        "--right",
        right,
        "--left-key-field",
        "k",
        "--right-key-field",
        "k",
        "--lower",
        "-5s",
        "--upper",
        "10s",
        "--output",
        out,
    ]);
    assert!(ok, "{err}");
    assert!(text.contains("join bound") && !text.contains("UNBOUNDED"), "{text}");
    assert!(text.contains("watermark: min of [1] Source["), "{text}");

    let (ok, dot, err) =
        weir(&["explain", "--dot", "window-count", "--window", "10s", "--source", "rate", "--partitions", "2"]);
    assert!(ok, "{err}");
    assert!(dot.starts_with("digraph \"window-count\" {"), "{dot}");
    assert!(dot.contains("state: window close") && dot.contains("-> n2"), "{dot}");
    std::fs::remove_dir_all(&dir).ok();
}

/// A source that must not be opened: explaining builds the dataflow but never runs it.
struct NeverOpen;

impl weir::runtime::source::Source for NeverOpen {
    type Record = u64;
    type Reader = weir::runtime::memory_source::MemoryReader<u64>;
    fn description(&self) -> String {
        "never-open".to_string()
    }
    fn partitions(&self) -> usize {
        3
    }
    fn open(&self, partition: usize) -> Result<Self::Reader, QueryError> {
        panic!("explain opened partition {partition}")
    }
}

#[test]
fn explaining_opens_no_source_partition() {
    let plan = Query::new("never-open")
        .explain(|scope, ctx| {
            let events = event_source(
                scope,
                ctx,
                NeverOpen,
                |t: &u64| Some(EventTime::from_millis(*t)),
                WatermarkOptions::default(),
            );
            Collector::new().attach(events.records, ctx, "out");
            Ok(())
        })
        .unwrap();
    assert_eq!(plan.node("Source[never-open]").unwrap().kind, "event-time source, 3 partitions");
}
