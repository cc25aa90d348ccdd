//! The concepts guide (`docs/guide`, an mdBook) as doctests: every Rust block of every page is
//! compiled, and run unless marked `no_run`, by `cargo test --doc`, so the guide cannot drift
//! from the code. Compiled only for doctests.

/// `docs/guide/src/introduction.md`
#[doc = include_str!("../docs/guide/src/introduction.md")]
pub struct Introduction;

/// `docs/guide/src/event-time.md`
#[doc = include_str!("../docs/guide/src/event-time.md")]
pub struct EventTime;

/// `docs/guide/src/late-data.md`
#[doc = include_str!("../docs/guide/src/late-data.md")]
pub struct LateData;

/// `docs/guide/src/output-modes.md`
#[doc = include_str!("../docs/guide/src/output-modes.md")]
pub struct OutputModes;

/// `docs/guide/src/windows.md`
#[doc = include_str!("../docs/guide/src/windows.md")]
pub struct Windows;

/// `docs/guide/src/joins.md`
#[doc = include_str!("../docs/guide/src/joins.md")]
pub struct Joins;

/// `docs/guide/src/keyed-state.md`
#[doc = include_str!("../docs/guide/src/keyed-state.md")]
pub struct KeyedState;

/// `docs/guide/src/dedup.md`
#[doc = include_str!("../docs/guide/src/dedup.md")]
pub struct Dedup;

/// `docs/guide/src/exactly-once.md`
#[doc = include_str!("../docs/guide/src/exactly-once.md")]
pub struct ExactlyOnce;

/// `docs/guide/src/kafka.md`
#[doc = include_str!("../docs/guide/src/kafka.md")]
pub struct Kafka;

/// `docs/guide/src/avro.md`
#[doc = include_str!("../docs/guide/src/avro.md")]
pub struct Avro;

/// `docs/guide/src/cluster.md`
#[doc = include_str!("../docs/guide/src/cluster.md")]
pub struct Cluster;

/// `docs/guide/src/tuning.md`
#[doc = include_str!("../docs/guide/src/tuning.md")]
pub struct Tuning;

/// `docs/guide/src/no-output.md`
#[doc = include_str!("../docs/guide/src/no-output.md")]
pub struct NoOutput;
