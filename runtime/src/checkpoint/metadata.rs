//! The checkpoint's `metadata` file: who wrote it (query id and name, when, how many workers,
//! which format) and a fingerprint of the dataflow, so that a restart with a changed dataflow is
//! refused with an error that says what changed.

use serde::{Deserialize, Serialize};

use crate::plan::{NodeRole, OperatorPlan, Plan};
use crate::time::EventTime;

use super::file::FORMAT_VERSION;

/// The content of a checkpoint's `metadata` file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointMetadata {
    /// The version of the checkpoint format (see [`super::FORMAT_VERSION`]).
    pub format_version: u32,
    /// The query id: stable across restarts from this checkpoint.
    pub query_id: String,
    /// The query's name when the checkpoint was created.
    pub query_name: String,
    /// When the checkpoint was created (processing time).
    pub created: EventTime,
    /// The number of workers over all processes (state is partitioned by worker, so it only
    /// restores onto the same count).
    pub workers: usize,
    /// What the dataflow looked like.
    pub fingerprint: DataflowFingerprint,
}

impl CheckpointMetadata {
    /// Metadata for a new checkpoint of query `query_id`, created now.
    pub fn new(
        query_id: impl Into<String>,
        query_name: impl Into<String>,
        workers: usize,
        fingerprint: DataflowFingerprint,
    ) -> Self {
        CheckpointMetadata {
            format_version: FORMAT_VERSION,
            query_id: query_id.into(),
            query_name: query_name.into(),
            created: EventTime::now(),
            workers,
            fingerprint,
        }
    }
}

/// What identifies a dataflow for the purpose of restoring its checkpoint: its sources,
/// operators and sinks in build order, with their kinds, what bounds their state, output modes,
/// exchanges and (where known) key and state types.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataflowFingerprint {
    /// One entry per source, operator and sink, in the order they were built.
    pub nodes: Vec<NodeFingerprint>,
}

/// One source, operator or sink in a [`DataflowFingerprint`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeFingerprint {
    /// Its name (as in progress reports and `explain`).
    pub name: String,
    /// `source`, `operator` or `sink`.
    pub role: String,
    /// What kind of node, e.g. `window aggregate (tumbling 10s)`.
    pub kind: String,
    /// What bounds its state (as `explain` prints it); `none (stateless)` for stateless nodes.
    pub state: String,
    /// Whether it keeps state across epochs (and so has state files in the checkpoint).
    pub stateful: bool,
    /// Its output mode, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_mode: Option<String>,
    /// How it exchanges records between workers, if it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exchange: Option<String>,
    /// The Rust type of its state's keys, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_type: Option<String>,
    /// The Rust type of its state's values, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_type: Option<String>,
}

impl NodeFingerprint {
    /// The fingerprint of what a node recorded about itself when it was built.
    pub fn of(plan: &OperatorPlan) -> Self {
        NodeFingerprint {
            name: plan.name.clone(),
            role: role_name(plan.role).to_string(),
            kind: plan.kind.clone(),
            state: plan.state.to_string(),
            stateful: plan.state.is_stateful(),
            output_mode: plan.output_mode.clone(),
            exchange: plan.exchange.clone(),
            key_type: None,
            state_type: None,
        }
    }

    fn is_stateless_operator(&self) -> bool {
        self.role != "source" && !self.stateful
    }
}

fn role_name(role: NodeRole) -> &'static str {
    match role {
        NodeRole::Source => "source",
        NodeRole::Operator => "operator",
        NodeRole::Sink => "sink",
    }
}

/// How a dataflow differs from the one a checkpoint was written by.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FingerprintDiff {
    /// Differences the checkpoint's state or offsets cannot follow: a source or stateful
    /// operator added, removed or changed (kind, state bound, output mode, exchange, types).
    pub incompatible: Vec<String>,
    /// Differences that leave the state usable: stateless operators and sinks added, removed or
    /// changed. (Output written after the restart follows the new dataflow.)
    pub compatible: Vec<String>,
}

impl DataflowFingerprint {
    /// The fingerprint of the nodes recorded in a query's plan registry (`ctx.plan().entries()`),
    /// available as soon as the dataflow is built.
    pub fn from_entries(entries: &[OperatorPlan]) -> Self {
        DataflowFingerprint { nodes: entries.iter().map(NodeFingerprint::of).collect() }
    }

    /// The fingerprint of an assembled [`Plan`] (which also knows the sinks and operators that
    /// did not describe themselves).
    pub fn from_plan(plan: &Plan) -> Self {
        let nodes = plan
            .nodes
            .iter()
            .map(|node| NodeFingerprint {
                name: node.name.clone(),
                role: role_name(node.role).to_string(),
                kind: node.kind.clone(),
                state: node.state.to_string(),
                stateful: node.state.is_stateful(),
                output_mode: node.output_mode.clone(),
                exchange: node.exchange.clone(),
                key_type: None,
                state_type: None,
            })
            .collect();
        DataflowFingerprint { nodes }
    }

    /// Records the key and state types of operator `name` (e.g. from `std::any::type_name`
    /// where it opens its state store), so a changed type is caught too.
    pub fn set_types(&mut self, name: &str, key_type: impl Into<String>, state_type: impl Into<String>) {
        if let Some(node) = self.nodes.iter_mut().find(|n| n.name == name) {
            node.key_type = Some(key_type.into());
            node.state_type = Some(state_type.into());
        }
    }

    /// How `new` differs from `self` (the dataflow that wrote the checkpoint), in words.
    pub fn diff(&self, new: &DataflowFingerprint) -> FingerprintDiff {
        let mut diff = FingerprintDiff::default();
        for old in &self.nodes {
            match new.nodes.iter().find(|n| n.name == old.name) {
                None => {
                    let text = format!("{} `{}` ({}) was removed", old.role, old.name, old.kind);
                    push(&mut diff, old.is_stateless_operator(), text);
                }
                Some(now) => {
                    let safe = old.is_stateless_operator() && now.is_stateless_operator();
                    for text in node_changes(old, now) {
                        push(&mut diff, safe, text);
                    }
                }
            }
        }
        for now in &new.nodes {
            if !self.nodes.iter().any(|n| n.name == now.name) {
                let text = format!("a new {} `{}` ({}) was added", now.role, now.name, now.kind);
                push(&mut diff, now.is_stateless_operator(), text);
            }
        }
        diff
    }
}

fn push(diff: &mut FingerprintDiff, compatible: bool, text: String) {
    if compatible {
        diff.compatible.push(text);
    } else {
        diff.incompatible.push(text);
    }
}

fn node_changes(old: &NodeFingerprint, new: &NodeFingerprint) -> Vec<String> {
    let who = format!("{} `{}`", old.role, old.name);
    let shown = |value: &Option<String>| value.clone().unwrap_or_else(|| "none".to_string());
    let mut changes = Vec::new();
    if old.role != new.role {
        changes.push(format!("`{}` changed from a {} to a {}", old.name, old.role, new.role));
    }
    if old.kind != new.kind {
        changes.push(format!("{who} changed from {} to {}", old.kind, new.kind));
    }
    if old.state != new.state {
        changes.push(format!("{who}'s state changed from {} to {}", old.state, new.state));
    }
    if old.output_mode != new.output_mode {
        changes.push(format!(
            "{who}'s output mode changed from {} to {}",
            shown(&old.output_mode),
            shown(&new.output_mode)
        ));
    }
    if old.exchange != new.exchange {
        changes.push(format!("{who}'s exchange changed from {} to {}", shown(&old.exchange), shown(&new.exchange)));
    }
    // A type that was not recorded on one side is not a difference: older checkpoints may lack it.
    if let (Some(a), Some(b)) = (&old.key_type, &new.key_type) {
        if a != b {
            changes.push(format!("{who}'s key type changed from `{a}` to `{b}`"));
        }
    }
    if let (Some(a), Some(b)) = (&old.state_type, &new.state_type) {
        if a != b {
            changes.push(format!("{who}'s state type changed from `{a}` to `{b}`"));
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::StateBound;

    fn dataflow(window: &str, with_dedup: bool) -> DataflowFingerprint {
        let mut entries = vec![
            OperatorPlan::source("Source[events]", "event-time source, 2 partitions"),
            OperatorPlan::operator("parse", "map"),
            OperatorPlan::operator("count", format!("window aggregate (tumbling {window})"))
                .state(StateBound::WindowClose("when the watermark passes the window end".into()))
                .output_mode("append")
                .exchange("by key"),
        ];
        if with_dedup {
            entries.push(
                OperatorPlan::operator("dedup", "dedup (within 1m)").state(StateBound::DedupHorizon("1m".into())),
            );
        }
        DataflowFingerprint::from_entries(&entries)
    }

    #[test]
    fn names_each_difference() {
        let old = dataflow("10s", false);
        assert_eq!(old.diff(&old), FingerprintDiff::default());

        let diff = old.diff(&dataflow("5s", true));
        assert_eq!(
            diff.incompatible,
            vec![
                "operator `count` changed from window aggregate (tumbling 10s) to window aggregate (tumbling 5s)",
                "a new operator `dedup` (dedup (within 1m)) was added",
            ]
        );
        assert!(diff.compatible.is_empty());

        let mut typed_old = old.clone();
        typed_old.set_types("count", "u64", "i64");
        let mut typed_new = old.clone();
        typed_new.set_types("count", "alloc::string::String", "i64");
        assert_eq!(
            typed_old.diff(&typed_new).incompatible,
            vec!["operator `count`'s key type changed from `u64` to `alloc::string::String`"]
        );
    }

    #[test]
    fn stateless_changes_are_compatible() {
        let old = dataflow("10s", false);
        let mut new = old.clone();
        new.nodes[1].kind = "filter".into();
        new.nodes.push(NodeFingerprint::of(&OperatorPlan::sink("Sink[out]", "sink")));
        let diff = old.diff(&new);
        assert!(diff.incompatible.is_empty(), "{diff:?}");
        assert_eq!(
            diff.compatible,
            vec!["operator `parse` changed from map to filter", "a new sink `Sink[out]` (sink) was added"]
        );
        // Removing a source is not.
        let mut fewer = old.clone();
        fewer.nodes.remove(0);
        assert_eq!(
            old.diff(&fewer).incompatible,
            vec!["source `Source[events]` (event-time source, 2 partitions) was removed"]
        );
    }
}
