//! What a job graph looks like once planned: its operators with their parallelism and the
//! chain (task) each runs in, and its edges with how records cross them — as data to
//! serialize (JSON) or to draw (Graphviz DOT), for `graph` commands and web pages.

use std::fmt::Write as _;

use serde::Serialize;

use crate::executor::{chained_predecessors, ExecutionConfig};
use crate::graph::{JobGraph, NodeKind, OutputSlot, ShipStrategy};

/// One operator of a described graph.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NodeDescription {
    /// Its id (index in the graph).
    pub id: usize,
    /// Its name.
    pub name: String,
    /// Its stable id in checkpoints (set with `uid`, or derived from its position).
    pub uid: String,
    /// `source` or `operator`.
    pub kind: &'static str,
    /// Its parallel subtasks.
    pub parallelism: usize,
    /// The operator it is chained to (runs in the same task as, called directly), if any.
    pub chained_to: Option<usize>,
}

/// One edge of a described graph.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EdgeDescription {
    /// The upstream operator.
    pub from: usize,
    /// The downstream operator.
    pub to: usize,
    /// Which input of the downstream operator it feeds.
    pub input: usize,
    /// How records are distributed: `forward`, `rebalance`, `hash` or `broadcast`.
    pub ship: &'static str,
    /// The side output it carries (its tag), or none for the main output.
    pub side_output: Option<u64>,
    /// Whether records cross it by a direct call (the two operators are chained).
    pub chained: bool,
}

/// A job graph as planned to run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GraphDescription {
    /// The job's name.
    pub name: String,
    /// Its operators.
    pub nodes: Vec<NodeDescription>,
    /// Its edges.
    pub edges: Vec<EdgeDescription>,
}

/// Describes `graph` as `config` would run it (chaining included).
pub fn describe(graph: &JobGraph, config: &ExecutionConfig) -> GraphDescription {
    let pred = chained_predecessors(graph, config);
    let identities = graph.operator_identities();
    let nodes = graph
        .nodes
        .iter()
        .zip(identities)
        .map(|(n, identity)| NodeDescription {
            id: n.id,
            name: n.name.clone(),
            uid: identity.uid,
            kind: match n.kind {
                NodeKind::Source(_) => "source",
                NodeKind::Operator(_) => "operator",
            },
            parallelism: n.parallelism,
            chained_to: pred[n.id],
        })
        .collect();
    let edges = graph
        .edges
        .iter()
        .map(|e| EdgeDescription {
            from: e.from,
            to: e.to,
            input: e.input,
            ship: match e.ship {
                ShipStrategy::Forward => "forward",
                ShipStrategy::Rebalance => "rebalance",
                ShipStrategy::Hash => "hash",
                ShipStrategy::Broadcast => "broadcast",
            },
            side_output: match e.slot {
                OutputSlot::Main => None,
                OutputSlot::Side(tag) => Some(tag),
            },
            chained: pred[e.to] == Some(e.from) && e.slot == OutputSlot::Main,
        })
        .collect();
    GraphDescription {
        name: graph.name.clone(),
        nodes,
        edges,
    }
}

impl GraphDescription {
    /// The graph in Graphviz DOT: one box per operator (name and parallelism), chained edges
    /// bold, side outputs dashed.
    ///
    /// ```
    /// use floe_runtime::describe::{EdgeDescription, GraphDescription, NodeDescription};
    /// let node = |id, name: &str| NodeDescription { id, name: name.into(), uid: format!("u{id}"), kind: "operator", parallelism: 2, chained_to: None };
    /// let g = GraphDescription {
    ///     name: "job".into(),
    ///     nodes: vec![node(0, "source"), node(1, "map \"x\"")],
    ///     edges: vec![EdgeDescription { from: 0, to: 1, input: 0, ship: "hash", side_output: None, chained: false }],
    /// };
    /// let dot = g.to_dot();
    /// assert!(dot.starts_with("digraph \"job\" {"));
    /// assert!(dot.contains("n1 [label=\"map \\\"x\\\"\\np=2\"]"));
    /// assert!(dot.contains("n0 -> n1 [label=\"hash\"]"));
    /// ```
    pub fn to_dot(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "digraph \"{}\" {{", escape(&self.name));
        let _ = writeln!(out, "  rankdir=LR;\n  node [shape=box];");
        for n in &self.nodes {
            let _ = writeln!(
                out,
                "  n{} [label=\"{}\\np={}\"];",
                n.id,
                escape(&n.name),
                n.parallelism
            );
        }
        for e in &self.edges {
            let mut attrs = vec![format!("label=\"{}\"", e.ship)];
            if e.chained {
                attrs.push("style=bold".into());
            }
            if let Some(tag) = e.side_output {
                attrs.push("style=dashed".into());
                attrs[0] = format!("label=\"{} (side {tag})\"", e.ship);
            }
            let _ = writeln!(out, "  n{} -> n{} [{}];", e.from, e.to, attrs.join(", "));
        }
        out.push_str("}\n");
        out
    }
}

/// Escapes a DOT string.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}
