//! `explain`: the dataflow plan of a query, as built, without running it.
//!
//! Two things make a plan. Every Weir source and operator *records* what it is when it is built
//! ([`OperatorPlan`]: its kind, what bounds its state, its output mode, where it exchanges data)
//! into the query's [`PlanRegistry`] (`ctx.plan()`). And [`crate::query::Query::explain`] builds
//! the dataflow on one worker with timely's logging switched on, so it also sees the *real* graph:
//! every timely operator and every channel between them. The [`Plan`] joins the two: one
//! [`PlanNode`] per Weir source, operator and sink, its inputs (with the plain timely operators in
//! between, such as maps, listed as `via`), and the sources whose watermark it sees (every source
//! upstream of it: its frontier is the minimum of theirs).
//!
//! An operator whose state nothing bounds says `UNBOUNDED` in capitals, so it stands out.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Mutex;

use serde::Serialize;

/// What bounds the state an operator keeps (and so when it is evicted).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "detail", rename_all = "snake_case")]
pub enum StateBound {
    /// Keeps nothing between batches (beyond what waits for the frontier).
    Stateless,
    /// Groups are dropped when the watermark passes the end of their window.
    WindowClose(String),
    /// Rows are dropped when the watermark passes their time plus the join's bound.
    JoinBound(String),
    /// Keys are forgotten when the watermark passes their time plus the deduplication horizon.
    DedupHorizon(String),
    /// The user's function removes state, or timers and timeouts it sets do.
    Timers(String),
    /// A lookup table, replaced as a whole when it is reloaded.
    Table(String),
    /// Nothing bounds the state: it grows for as long as the input does.
    Unbounded(String),
    /// A stateful operator that did not describe its state.
    Undescribed,
}

impl StateBound {
    /// Whether nothing bounds this state.
    pub fn is_unbounded(&self) -> bool {
        matches!(self, StateBound::Unbounded(_))
    }

    /// Whether the operator keeps state across batches.
    pub fn is_stateful(&self) -> bool {
        !matches!(self, StateBound::Stateless)
    }

    /// The short name of the bound: `window close`, `join bound`, `dedup horizon`, `timers`,
    /// `table`, `UNBOUNDED`, `none` (stateless) or `undescribed`.
    pub fn label(&self) -> &'static str {
        match self {
            StateBound::Stateless => "none",
            StateBound::WindowClose(_) => "window close",
            StateBound::JoinBound(_) => "join bound",
            StateBound::DedupHorizon(_) => "dedup horizon",
            StateBound::Timers(_) => "timers",
            StateBound::Table(_) => "table",
            StateBound::Unbounded(_) => "UNBOUNDED",
            StateBound::Undescribed => "undescribed",
        }
    }

    fn detail(&self) -> Option<&str> {
        match self {
            StateBound::WindowClose(d)
            | StateBound::JoinBound(d)
            | StateBound::DedupHorizon(d)
            | StateBound::Timers(d)
            | StateBound::Table(d)
            | StateBound::Unbounded(d) => Some(d),
            StateBound::Stateless | StateBound::Undescribed => None,
        }
    }
}

impl fmt::Display for StateBound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self, self.detail()) {
            (StateBound::Stateless, _) => f.write_str("none (stateless)"),
            (StateBound::Undescribed, _) => {
                f.write_str("undescribed (a stateful operator that does not say what bounds its state)")
            }
            (_, Some(detail)) => write!(f, "{}: {detail}", self.label()),
            (_, None) => f.write_str(self.label()),
        }
    }
}

/// The role of a node in the plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeRole {
    /// Reads input and sets the watermark.
    Source,
    /// Transforms records.
    Operator,
    /// Writes output.
    Sink,
}

/// What a source or operator says about itself when it is built (see [`PlanRegistry::record`]).
///
/// `name` is the name of its timely operator, or the prefix of its timely operators' names
/// (`name` and `name/<stage>`), so the plan can find it in the dataflow graph.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OperatorPlan {
    /// The operator's name (as in progress reports).
    pub name: String,
    /// Source, operator or sink.
    pub role: NodeRole,
    /// What kind of operator, e.g. `window aggregate (tumbling 10s)`.
    pub kind: String,
    /// What bounds its state.
    pub state: StateBound,
    /// Its output mode (append, update, complete), if it has one.
    pub output_mode: Option<String>,
    /// Where it moves records between workers, if it does (e.g. `by key`).
    pub exchange: Option<String>,
    /// Anything else worth knowing (e.g. a source's watermark settings).
    pub notes: Vec<String>,
}

impl OperatorPlan {
    /// An operator called `name` of kind `kind`, stateless, no output mode, no exchange.
    pub fn operator(name: impl Into<String>, kind: impl Into<String>) -> Self {
        OperatorPlan {
            name: name.into(),
            role: NodeRole::Operator,
            kind: kind.into(),
            state: StateBound::Stateless,
            output_mode: None,
            exchange: None,
            notes: Vec::new(),
        }
    }

    /// A source whose timely operator is called `name`.
    pub fn source(name: impl Into<String>, kind: impl Into<String>) -> Self {
        OperatorPlan { role: NodeRole::Source, ..OperatorPlan::operator(name, kind) }
    }

    /// A sink whose timely operator is called `name`.
    pub fn sink(name: impl Into<String>, kind: impl Into<String>) -> Self {
        OperatorPlan { role: NodeRole::Sink, ..OperatorPlan::operator(name, kind) }
    }

    /// Sets what bounds the state.
    pub fn state(mut self, state: StateBound) -> Self {
        self.state = state;
        self
    }

    /// Sets the output mode.
    pub fn output_mode(mut self, mode: impl fmt::Display) -> Self {
        self.output_mode = Some(mode.to_string());
        self
    }

    /// Sets the exchange.
    pub fn exchange(mut self, exchange: impl Into<String>) -> Self {
        self.exchange = Some(exchange.into());
        self
    }

    /// Adds a note.
    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.notes.push(note.into());
        self
    }
}

/// The timely graph of one dataflow: operators (by index in the dataflow) and channels.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TimelyGraph {
    /// Operator index in the dataflow's scope → its name.
    pub operators: BTreeMap<usize, String>,
    /// Channels as (source operator, source port, target operator, target port).
    pub channels: Vec<(usize, usize, usize, usize)>,
}

/// Where the sources and operators of one query record their plans; shared by every worker
/// (an operator built on several workers is recorded once).
#[derive(Debug, Default)]
pub struct PlanRegistry {
    entries: Mutex<Vec<OperatorPlan>>,
    graph: Mutex<Option<TimelyGraph>>,
    /// Stateful operator → (key type, state type), for the checkpoint's fingerprint.
    state_types: Mutex<BTreeMap<String, (String, String)>>,
}

impl PlanRegistry {
    /// Records what an operator is; the first record of a name wins.
    pub fn record(&self, plan: OperatorPlan) {
        let mut entries = self.entries.lock().unwrap();
        if !entries.iter().any(|e| e.name == plan.name) {
            entries.push(plan);
        }
    }

    /// Records the key and state types of stateful operator `name` (`std::any::type_name`), so
    /// a checkpoint written with other types is refused before anything runs, naming the change.
    pub fn record_state_types(&self, name: &str, key_type: &str, state_type: &str) {
        self.state_types.lock().unwrap().insert(name.to_string(), (key_type.to_string(), state_type.to_string()));
    }

    /// The key and state types recorded per stateful operator.
    pub fn state_types(&self) -> BTreeMap<String, (String, String)> {
        self.state_types.lock().unwrap().clone()
    }

    /// Every record, in the order they were made.
    pub fn entries(&self) -> Vec<OperatorPlan> {
        self.entries.lock().unwrap().clone()
    }

    /// Stores the timely graph seen while building (by [`crate::query::Query::explain`]).
    pub fn set_graph(&self, graph: TimelyGraph) {
        *self.graph.lock().unwrap() = Some(graph);
    }

    /// The timely graph, if the dataflow was built for explaining.
    pub fn graph(&self) -> Option<TimelyGraph> {
        self.graph.lock().unwrap().clone()
    }
}

/// One source, operator or sink in a [`Plan`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PlanNode {
    /// Its number in the plan, from 1, in the order the dataflow was built.
    pub id: usize,
    /// Its name.
    pub name: String,
    /// Source, operator or sink.
    pub role: NodeRole,
    /// What kind of operator.
    pub kind: String,
    /// The nodes it reads from, with the plain timely operators in between.
    pub inputs: Vec<PlanInput>,
    /// What bounds its state.
    pub state: StateBound,
    /// Its output mode, if any.
    pub output_mode: Option<String>,
    /// Where it exchanges records between workers, if it does.
    pub exchange: Option<String>,
    /// The sources whose watermarks make up this node's frontier (node ids).
    pub watermark_from: Vec<usize>,
    /// Anything else worth knowing.
    pub notes: Vec<String>,
}

/// One input edge of a [`PlanNode`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PlanInput {
    /// The node it comes from.
    pub from: usize,
    /// Plain timely operators the records pass on the way (maps, concatenations, ...).
    pub via: Vec<String>,
}

/// The plan of a query's dataflow: what [`crate::query::Query::explain`] returns. `Display`
/// prints it as text; [`Plan::dot`] as Graphviz.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// The query's name.
    pub query: String,
    /// Sources, operators and sinks, in the order they were built.
    pub nodes: Vec<PlanNode>,
}

impl Plan {
    /// Joins the operators' records with the timely graph. `stateful` names the operators that
    /// registered state counters, so one that did not record a plan still shows as stateful;
    /// `sinks` the registered sinks, so a timely operator called `Anything[<sink>]` is a sink.
    pub fn assemble(
        query: &str,
        entries: &[OperatorPlan],
        graph: &TimelyGraph,
        stateful: &[String],
        sinks: &[String],
    ) -> Plan {
        // Which plan entry (by index) each timely operator belongs to.
        let owner_of = |op_name: &str| -> Option<usize> {
            entries
                .iter()
                .enumerate()
                .filter(|(_, e)| {
                    op_name == e.name || op_name.strip_prefix(e.name.as_str()).is_some_and(|r| r.starts_with('/'))
                })
                .max_by_key(|(_, e)| e.name.len())
                .map(|(i, _)| i)
        };
        let mut extra: Vec<OperatorPlan> = Vec::new();
        let mut owner: BTreeMap<usize, String> = BTreeMap::new();
        for (&index, op_name) in &graph.operators {
            let key = match owner_of(op_name) {
                Some(i) => Some(entries[i].name.clone()),
                None => implicit_plan(op_name, stateful, sinks).map(|plan| {
                    let name = plan.name.clone();
                    if !extra.iter().any(|e| e.name == name) {
                        extra.push(plan);
                    }
                    name
                }),
            };
            if let Some(key) = key {
                owner.insert(index, key);
            }
        }
        let all: Vec<&OperatorPlan> = entries.iter().chain(extra.iter()).collect();
        // Nodes in build order: by their first timely operator.
        let mut order: Vec<(usize, String)> = Vec::new();
        for (&index, key) in &owner {
            if !order.iter().any(|(_, k)| k == key) {
                order.push((index, key.clone()));
            }
        }
        let id_of: BTreeMap<String, usize> = order.iter().enumerate().map(|(i, (_, k))| (k.clone(), i + 1)).collect();

        let mut upstream: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for &(src, _, tgt, _) in &graph.channels {
            if src != 0 && tgt != 0 {
                upstream.entry(tgt).or_default().push(src);
            }
        }
        let mut nodes: Vec<PlanNode> = Vec::new();
        for (id, (_, key)) in order.iter().enumerate() {
            let plan = all.iter().find(|e| &e.name == key).expect("plan entry");
            let mut inputs: Vec<PlanInput> = Vec::new();
            for (&index, k) in &owner {
                if k != key {
                    continue;
                }
                for &src in upstream.get(&index).into_iter().flatten() {
                    if owner.get(&src) == Some(key) {
                        continue;
                    }
                    for (from, via) in weir_ancestors(src, &owner, &upstream, &graph.operators) {
                        let from = id_of[&from];
                        if !inputs.iter().any(|i| i.from == from && i.via == via) {
                            inputs.push(PlanInput { from, via });
                        }
                    }
                }
            }
            inputs.sort_by(|a, b| (a.from, &a.via).cmp(&(b.from, &b.via)));
            nodes.push(PlanNode {
                id: id + 1,
                name: plan.name.clone(),
                role: plan.role,
                kind: plan.kind.clone(),
                inputs,
                state: plan.state.clone(),
                output_mode: plan.output_mode.clone(),
                exchange: plan.exchange.clone(),
                watermark_from: Vec::new(),
                notes: plan.notes.clone(),
            });
        }
        // The frontier of a node is the minimum over every source upstream of it.
        for i in 0..nodes.len() {
            let mut seen = BTreeSet::new();
            let mut stack: Vec<usize> = nodes[i].inputs.iter().map(|input| input.from).collect();
            let mut sources = BTreeSet::new();
            while let Some(id) = stack.pop() {
                if !seen.insert(id) {
                    continue;
                }
                let node = &nodes[id - 1];
                if node.role == NodeRole::Source {
                    sources.insert(id);
                }
                stack.extend(node.inputs.iter().map(|input| input.from));
            }
            nodes[i].watermark_from = sources.into_iter().collect();
        }
        Plan { query: query.to_string(), nodes }
    }

    /// The plan of the query `ctx`, if its dataflow graph was seen while it was built (by
    /// [`crate::query::Query::explain`], or with [`crate::query::Query::operator_frontiers`]).
    pub fn of(ctx: &crate::context::QueryContext) -> Option<Plan> {
        let graph = ctx.plan().graph()?;
        let stateful: Vec<String> = ctx.metrics().operators().iter().map(|op| op.name.clone()).collect();
        let sinks: Vec<String> = ctx.metrics().sinks().iter().map(|sink| sink.description.clone()).collect();
        Some(Plan::assemble(ctx.name(), &ctx.plan().entries(), &graph, &stateful, &sinks))
    }

    /// The nodes whose state nothing bounds.
    pub fn unbounded(&self) -> Vec<&PlanNode> {
        self.nodes.iter().filter(|n| n.state.is_unbounded()).collect()
    }

    /// The node called `name`.
    pub fn node(&self, name: &str) -> Option<&PlanNode> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// The plan as Graphviz DOT (`weir explain --dot | dot -Tsvg`): sources as ellipses, sinks
    /// as notes, operators as boxes; unbounded state in red, exchanges as bold edges.
    pub fn dot(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!("digraph {} {{\n", dot_quote(&self.query)));
        out.push_str("  rankdir=LR;\n  node [fontname=\"Helvetica\", fontsize=10];\n  edge [fontname=\"Helvetica\", fontsize=9];\n");
        for node in &self.nodes {
            let shape = match node.role {
                NodeRole::Source => "ellipse",
                NodeRole::Sink => "note",
                NodeRole::Operator => "box",
            };
            let mut label = format!("[{}] {}\\n{}", node.id, dot_escape(&node.name), dot_escape(&node.kind));
            if node.state.is_stateful() {
                label.push_str(&format!("\\nstate: {}", dot_escape(node.state.label())));
            }
            if let Some(mode) = &node.output_mode {
                label.push_str(&format!("\\noutput: {}", dot_escape(mode)));
            }
            let style = if node.state.is_unbounded() {
                ", color=red, fontcolor=red, penwidth=2"
            } else if node.state.is_stateful() {
                ", style=filled, fillcolor=\"#eef3ff\""
            } else {
                ""
            };
            out.push_str(&format!("  n{} [shape={shape}, label=\"{label}\"{style}];\n", node.id));
        }
        for node in &self.nodes {
            for input in &node.inputs {
                let mut attrs = Vec::new();
                if !input.via.is_empty() {
                    attrs.push(format!("label=\"{}\"", dot_escape(&input.via.join(", "))));
                }
                if let Some(exchange) = &node.exchange {
                    attrs.push(format!("xlabel=\"exchange: {}\"", dot_escape(exchange)));
                    attrs.push("style=bold".to_string());
                }
                let attrs = if attrs.is_empty() { String::new() } else { format!(" [{}]", attrs.join(", ")) };
                out.push_str(&format!("  n{} -> n{}{attrs};\n", input.from, node.id));
            }
        }
        out.push_str("}\n");
        out
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Plan of query \"{}\" ({} nodes)", self.query, self.nodes.len())?;
        let name_of = |id: usize| format!("[{id}] {}", self.nodes[id - 1].name);
        for node in &self.nodes {
            let role = match node.role {
                NodeRole::Source => "source",
                NodeRole::Operator => "operator",
                NodeRole::Sink => "sink",
            };
            writeln!(f)?;
            writeln!(f, "[{}] {}  ({role}: {})", node.id, node.name, node.kind)?;
            for input in &node.inputs {
                let via = if input.via.is_empty() { String::new() } else { format!(" via {}", input.via.join(" > ")) };
                writeln!(f, "    input:     {}{via}", name_of(input.from))?;
            }
            if node.role != NodeRole::Source {
                writeln!(f, "    state:     {}", node.state)?;
                let sources: Vec<String> = node.watermark_from.iter().map(|&id| name_of(id)).collect();
                let watermark = match sources.len() {
                    0 => "none (no source upstream)".to_string(),
                    1 => sources[0].clone(),
                    _ => format!("min of {}", sources.join(", ")),
                };
                writeln!(f, "    watermark: {watermark}")?;
            }
            if let Some(mode) = &node.output_mode {
                writeln!(f, "    output:    {mode}")?;
            }
            if let Some(exchange) = &node.exchange {
                writeln!(f, "    exchange:  {exchange}")?;
            }
            for note in &node.notes {
                writeln!(f, "    note:      {note}")?;
            }
        }
        writeln!(f)?;
        let unbounded = self.unbounded();
        if unbounded.is_empty() {
            writeln!(f, "State: every stateful operator's state is bounded by the watermark.")
        } else {
            let names: Vec<String> = unbounded.iter().map(|n| name_of(n.id)).collect();
            writeln!(f, "State: UNBOUNDED in {} (it grows until the input ends).", names.join(", "))
        }
    }
}

/// Plan entries for timely operators that no Weir operator recorded: sources, sinks, and
/// operators that registered state counters without describing themselves.
fn implicit_plan(op_name: &str, stateful: &[String], sinks: &[String]) -> Option<OperatorPlan> {
    if op_name.starts_with("Source[") {
        return Some(OperatorPlan::source(op_name, "source"));
    }
    if op_name.starts_with("Sink[") {
        return Some(
            OperatorPlan::sink(op_name, "sink (epoch by epoch, in time order)").exchange("every record to worker 0"),
        );
    }
    if op_name.starts_with("Collector[") {
        return Some(OperatorPlan::sink(op_name, "collector (in memory)"));
    }
    // Any other sink, e.g. `KafkaSink[out]` for the sink registered as `out`.
    if sinks.iter().any(|sink| op_name.ends_with(&format!("[{sink}]"))) {
        let kind = op_name.split('[').next().unwrap_or(op_name);
        return Some(OperatorPlan::sink(op_name, format!("sink ({kind})")));
    }
    let base = op_name.split('/').next().unwrap_or(op_name);
    stateful
        .iter()
        .any(|s| s == base)
        .then(|| OperatorPlan::operator(base, "stateful operator").state(StateBound::Undescribed))
}

/// The Weir nodes upstream of timely operator `start`, each with the plain operators passed.
fn weir_ancestors(
    start: usize,
    owner: &BTreeMap<usize, String>,
    upstream: &BTreeMap<usize, Vec<usize>>,
    names: &BTreeMap<usize, String>,
) -> Vec<(String, Vec<String>)> {
    let mut found = Vec::new();
    let mut stack = vec![(start, Vec::<String>::new())];
    let mut steps = 0;
    while let Some((op, via)) = stack.pop() {
        steps += 1;
        if steps > 100_000 {
            break;
        }
        if let Some(key) = owner.get(&op) {
            let mut via = via;
            via.reverse();
            found.push((key.clone(), via));
            continue;
        }
        let mut via = via;
        via.push(names.get(&op).cloned().unwrap_or_else(|| format!("#{op}")));
        for &src in upstream.get(&op).into_iter().flatten() {
            stack.push((src, via.clone()));
        }
    }
    found
}

/// What [`crate::source::event_source`] records about a source: its partitions and how it makes
/// watermarks.
pub fn source_plan(description: &str, partitions: usize, options: &crate::watermark::WatermarkOptions) -> OperatorPlan {
    let idle = match options.idle_timeout {
        Some(timeout) => format!("a partition idle for {} stops holding it back", format_duration(timeout)),
        None => "no idle timeout (a partition without data holds it back)".to_string(),
    };
    let mut plan = OperatorPlan::source(
        format!("Source[{description}]"),
        format!("event-time source, {partitions} partition{}", if partitions == 1 { "" } else { "s" }),
    )
    .note(format!(
        "watermark = max event time per partition - {}; min over partitions; {idle}",
        format_duration(options.delay)
    ));
    if !options.tick.is_zero() {
        plan = plan.note(format!("batches stamped at the watermark rounded down to {}", format_duration(options.tick)));
    }
    plan
}

/// A duration as people write it in flags: `10s`, `5m`, `2h`, `250ms`.
pub fn format_duration(duration: std::time::Duration) -> String {
    let ms = duration.as_millis();
    if ms == 0 {
        "0s".to_string()
    } else if !ms.is_multiple_of(1000) {
        format!("{ms}ms")
    } else {
        let s = ms / 1000;
        if s.is_multiple_of(3600) {
            format!("{}h", s / 3600)
        } else if s.is_multiple_of(60) {
            format!("{}m", s / 60)
        } else {
            format!("{s}s")
        }
    }
}

fn dot_escape(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

fn dot_quote(text: &str) -> String {
    format!("\"{}\"", dot_escape(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contracts_plain_operators_and_finds_upstream_sources() {
        let entries = vec![
            OperatorPlan::source("Source[a]", "memory"),
            OperatorPlan::operator("join", "interval join").state(StateBound::Unbounded("no bounds".into())),
        ];
        let graph = TimelyGraph {
            operators: BTreeMap::from([
                (1, "Source[a]".to_string()),
                (2, "Map".to_string()),
                (3, "join".to_string()),
                (4, "join/late".to_string()),
                (5, "Sink[out]".to_string()),
            ]),
            channels: vec![(1, 0, 2, 0), (2, 0, 3, 0), (1, 1, 4, 0), (3, 0, 5, 0)],
        };
        let plan = Plan::assemble("q", &entries, &graph, &[], &[]);
        let kafka = TimelyGraph {
            operators: BTreeMap::from([(1, "Source[a]".to_string()), (2, "KafkaSink[out]".to_string())]),
            channels: vec![(1, 0, 2, 0)],
        };
        let with_kafka = Plan::assemble("q", &entries, &kafka, &[], &["out".to_string()]);
        assert_eq!(with_kafka.nodes[1].role, NodeRole::Sink);
        assert_eq!(with_kafka.nodes[1].kind, "sink (KafkaSink)");
        let names: Vec<&str> = plan.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["Source[a]", "join", "Sink[out]"]);
        assert_eq!(
            plan.nodes[1].inputs,
            vec![PlanInput { from: 1, via: vec![] }, PlanInput { from: 1, via: vec!["Map".into()] }]
        );
        assert_eq!(plan.nodes[2].watermark_from, vec![1]);
        assert_eq!(plan.unbounded().len(), 1);
        assert!(plan.to_string().contains("UNBOUNDED: no bounds"), "{plan}");
        assert!(plan.dot().contains("n1 -> n2 [label=\"Map\"]"), "{}", plan.dot());
    }
}
