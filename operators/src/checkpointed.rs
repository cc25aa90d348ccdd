//! An operator instance's part in checkpoints (`docs/checkpoints.md` §2 and §5): which boundaries
//! to snapshot at, and what to restore when the query resumed.
//!
//! Every stateful operator follows the same steps, and this type keeps them in one place:
//!
//! 1. At build time, [`OperatorCheckpoint::register`] registers the operator's state *parts*
//!    (one per store or structure it snapshots; each is one file per worker and epoch).
//! 2. Still at build time, [`OperatorCheckpoint::restore_bytes`] / [`OperatorCheckpoint::restore_store`]
//!    give back each part as it was when the epoch the query resumed after ended, and
//!    [`OperatorCheckpoint::resume_at`] says where the resumed query's times start (retained
//!    capabilities are re-created at `max(their time, resume_at)`).
//! 3. In every activation, before applying input at the real frontier,
//!    [`OperatorCheckpoint::passed_boundaries`] lists the boundaries `B` the frontier has passed
//!    and that were not snapshotted yet. For each, the operator applies the input and fires what
//!    it would at the frontier `{B}` (the returned antichain; empty for the last boundary, which
//!    ends the input), then writes every part with [`OperatorCheckpoint::write_bytes`] or
//!    [`OperatorCheckpoint::write_store`], then goes on with the real frontier.

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;
use timely::progress::frontier::AntichainRef;
use timely::progress::Antichain;
use weir_runtime::checkpoint::LiveCheckpoint;
use weir_runtime::context::QueryContext;
use weir_runtime::error::{BuildError, QueryError};
use weir_runtime::state::{StateKey, StateStore, StateValue};
use weir_runtime::time::EventTime;

/// One operator instance's checkpointing: `None` from [`OperatorCheckpoint::register`] when the
/// query does not checkpoint.
#[derive(Debug)]
pub struct OperatorCheckpoint {
    live: Arc<LiveCheckpoint>,
    operator: String,
    worker: usize,
    /// The next epoch this instance snapshots.
    next_epoch: u64,
    /// That epoch's boundary, once published.
    next_boundary: Option<EventTime>,
    /// To fail the query when a snapshot cannot be written: the epoch would never commit, and a
    /// query that goes on running without committing looks healthy while its output stalls.
    ctx: QueryContext,
    /// A boundary at or above every boundary snapshotted so far (the resume point after a restart).
    snapshotted_up_to: Option<EventTime>,
}

impl OperatorCheckpoint {
    /// Records operator `operator`'s key and state types in the query's plan, so that restarting
    /// from a checkpoint written with other types fails before anything runs, naming the change
    /// (instead of failing to decode, or worse, decoding the bytes as something else). Call it at
    /// build time whether or not the query checkpoints: the fingerprint comes from a build
    /// without one.
    pub fn record_types<K: ?Sized, S: ?Sized>(ctx: &QueryContext, operator: &str) {
        ctx.plan().record_state_types(operator, std::any::type_name::<K>(), std::any::type_name::<S>());
    }

    /// Registers operator `operator`'s state parts (`parts` are suffixes: `""` is the operator
    /// itself, `"left"` is `operator/left`) if the query checkpoints. Call it at build time.
    pub fn register(ctx: &QueryContext, operator: &str, worker: usize, parts: &[&str]) -> Option<Self> {
        let live = ctx.checkpoint()?;
        let this = OperatorCheckpoint {
            next_epoch: live.resumed().map_or(0, |(epoch, _)| epoch + 1),
            next_boundary: None,
            snapshotted_up_to: live.resumed().map(|(_, at)| at),
            ctx: ctx.clone(),
            live,
            operator: operator.to_string(),
            worker,
        };
        for part in parts {
            this.live.register_stateful(&this.part_name(part));
        }
        Some(this)
    }

    /// The name a part's files are stored under: `operator` or `operator/part`.
    pub fn part_name(&self, part: &str) -> String {
        if part.is_empty() {
            self.operator.clone()
        } else {
            format!("{}/{part}", self.operator)
        }
    }

    /// Where the resumed query's times start (the end of the epoch it resumed after); `None` on
    /// a fresh start. Capabilities restored from a snapshot are re-created at
    /// `max(their time, resume_at)`.
    pub fn resume_at(&self) -> Option<EventTime> {
        self.live.resumed().map(|(_, at)| at)
    }

    /// The part `part` as [`OperatorCheckpoint::write_bytes`] wrote it (bincode), if the query
    /// resumed and the epoch lists it. A snapshot that does not decode as `S` (the state's type
    /// changed) or a damaged file is a build error naming it.
    pub fn restore_bytes<S: DeserializeOwned>(&self, part: &str) -> Result<Option<S>, BuildError> {
        let name = self.part_name(part);
        let bytes = self.live.resume_state(&name, self.worker).map_err(|error| {
            BuildError::invalid(
                format!("checkpointed state of operator {name} on worker {}", self.worker),
                error.to_string(),
                "restore the file from a backup, or restart with --reset-checkpoint to start over",
            )
        })?;
        let Some(bytes) = bytes else { return Ok(None) };
        bincode::deserialize(&bytes).map(Some).map_err(|error| {
            BuildError::invalid(
                format!("checkpointed state of operator {name} on worker {}", self.worker),
                format!("it does not decode as this operator's state: {error}"),
                "the operator's key or state type changed: restart with --reset-checkpoint",
            )
        })
    }

    /// Restores `store` (just opened, empty) from part `part` as [`OperatorCheckpoint::write_store`]
    /// wrote it, if the query resumed; a RocksDB checkpoint is reopened from its hard links.
    pub fn restore_store<K: StateKey, V: StateValue>(
        &self,
        part: &str,
        store: &mut StateStore<K, V>,
    ) -> Result<(), BuildError> {
        let name = self.part_name(part);
        let (Some(file), Some(dir)) = (self.live.resume_state_file(&name, self.worker), self.live.dir()) else {
            return Ok(());
        };
        store.restore_snapshot(dir, &file).map_err(|error| {
            BuildError::invalid(
                format!("checkpointed state of operator {name} on worker {}", self.worker),
                error.to_string(),
                "the operator's key or state type or the state backend changed: restart with --reset-checkpoint",
            )
        })
    }

    /// The boundaries `frontier` has passed and that this instance has not snapshotted yet, in
    /// order: `(epoch, the frontier to act at)`. The second is `{B}`, or empty for the boundary
    /// that ends the input. After acting at it, write every part of that epoch.
    pub fn passed_boundaries(&mut self, frontier: AntichainRef<'_, EventTime>) -> Vec<(u64, Antichain<EventTime>)> {
        if self.live.highest_boundary().is_none() {
            return Vec::new();
        }
        // Cheap check: the next boundary to snapshot is known and not passed yet.
        if let Some(next) = self.next_boundary {
            if frontier.less_equal(&next) {
                return Vec::new();
            }
        }
        let mut passed = Vec::new();
        for boundary in self.live.boundaries_since(self.next_epoch) {
            if boundary.epoch < self.next_epoch {
                continue;
            }
            if frontier.less_equal(&boundary.boundary) {
                self.next_boundary = Some(boundary.boundary);
                return passed;
            }
            let at = if boundary.boundary == EventTime::MAX {
                Antichain::new()
            } else {
                Antichain::from_elem(boundary.boundary)
            };
            passed.push((boundary.epoch, at));
            self.next_epoch = boundary.epoch + 1;
            self.snapshotted_up_to = Some(boundary.boundary);
        }
        self.next_boundary = None;
        passed
    }

    /// The first boundary this instance has not snapshotted yet, if it is published already.
    ///
    /// For operators that apply input as it arrives instead of once their frontier has passed it
    /// (the interval join): a batch at a time at or after this boundary must wait until the
    /// boundary is snapshotted. Asking *after* receiving the batch is enough, since a boundary is
    /// published before any record at or above it exists. Cheap (one atomic load) unless a new
    /// boundary was published since the last call.
    pub fn next_boundary(&mut self) -> Option<EventTime> {
        if self.next_boundary.is_some() {
            return self.next_boundary;
        }
        let highest = self.live.highest_boundary()?;
        if self.snapshotted_up_to.is_some_and(|done| highest <= done) {
            return None;
        }
        match self.live.boundaries_since(self.next_epoch).into_iter().next() {
            Some(next) => self.next_boundary = Some(next.boundary),
            // Every boundary published up to `highest` is snapshotted.
            None => self.snapshotted_up_to = Some(highest),
        }
        self.next_boundary
    }

    /// Writes part `part` of `epoch` as bincode of `state` and reports it. A failure fails the
    /// query (naming the operator and the file): the epoch could never commit.
    pub fn write_bytes<S: Serialize + ?Sized>(&self, part: &str, epoch: u64, state: &S) {
        let name = self.part_name(part);
        let written = bincode::serialize(state)
            .map_err(|error| format!("cannot serialize its snapshot of epoch {epoch}: {error}"))
            .and_then(|bytes| {
                self.live
                    .snapshot(&name, self.worker, epoch, &bytes)
                    .map_err(|error| format!("cannot write its snapshot of epoch {epoch} into the checkpoint: {error}"))
            });
        if let Err(message) = written {
            self.fail(&name, message);
        }
    }

    fn fail(&self, operator: &str, message: String) {
        tracing::error!(operator, worker = self.worker, %message, "checkpoint snapshot failed");
        self.ctx.fail(QueryError::State { operator: operator.to_string(), message });
    }

    /// Writes part `part` of `epoch` from `store` (bytes for memory, a RocksDB checkpoint of
    /// hard-linked files for RocksDB: no full copy) and reports it.
    pub fn write_store<K: StateKey, V: StateValue>(&self, part: &str, epoch: u64, store: &StateStore<K, V>) {
        let name = self.part_name(part);
        let Some(dir) = self.live.dir() else { return };
        let reported = match store.write_snapshot(dir, &name, self.worker, epoch) {
            Ok(file) => self.live.report_state(epoch, file).map_err(|e| e.to_string()),
            Err(error) => Err(error.to_string()),
        };
        if let Err(error) = reported {
            self.fail(&name, format!("cannot write its snapshot of epoch {epoch} into the checkpoint: {error}"));
        }
    }
}
