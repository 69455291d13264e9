//! The logical job graph: operator descriptions and the edges between them.
//!
//! Construction is kept apart from execution: a node holds a factory that builds a fresh
//! operator for each subtask, so the same graph can be run (and, later, restarted) any number
//! of times.

use std::sync::Arc;

use floe_checkpoints::OperatorIdentity;

use crate::error::Result;
use crate::operator::{Operator, SourceFunction, TaskInfo};
use crate::route::EdgeWriterFactory;

/// Index of a node in its [`JobGraph`].
pub type NodeId = usize;

/// Builds the operator of one subtask.
pub type OperatorFactory = Arc<dyn Fn(&TaskInfo) -> Result<Box<dyn Operator>> + Send + Sync>;
/// Builds the source of one subtask.
pub type SourceFactory = Arc<dyn Fn(&TaskInfo) -> Result<Box<dyn SourceFunction>> + Send + Sync>;

/// What a node runs.
#[derive(Clone)]
pub enum NodeKind {
    /// A source (no inputs).
    Source(SourceFactory),
    /// An operator with one or more inputs.
    Operator(OperatorFactory),
}

/// One operator of the job graph.
#[derive(Clone)]
pub struct Node {
    /// Position in the graph.
    pub id: NodeId,
    /// Name shown in logs and errors.
    pub name: String,
    /// Number of parallel subtasks.
    pub parallelism: usize,
    /// What it runs.
    pub kind: NodeKind,
    /// Whether it may be chained to its predecessor.
    pub chainable: bool,
    /// Its stable id, if the user set one (Flink's `uid`): checkpoints and savepoints find
    /// the operator's state by it wherever the operator is in the graph. Without, an id is
    /// derived from its position ([`JobGraph::operator_identities`]).
    pub uid: Option<String>,
}

/// Which output of a node an edge leaves from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OutputSlot {
    /// The main output.
    Main,
    /// A side output, by tag id.
    Side(u64),
}

/// How records travel from the subtasks of one node to those of the next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShipStrategy {
    /// Subtask `i` to subtask `i` (same parallelism); such edges can be chained.
    Forward,
    /// Round robin over all downstream subtasks.
    Rebalance,
    /// By key group of the record's key.
    Hash,
    /// Every record to every downstream subtask.
    Broadcast,
}

/// A connection between two nodes.
#[derive(Clone)]
pub struct Edge {
    /// Upstream node.
    pub from: NodeId,
    /// Which of its outputs.
    pub slot: OutputSlot,
    /// Downstream node.
    pub to: NodeId,
    /// Which input of the downstream operator (0 or 1).
    pub input: usize,
    /// How records are distributed.
    pub ship: ShipStrategy,
    /// Builds the typed writer that routes records on this edge.
    pub writer: Arc<dyn EdgeWriterFactory>,
    /// Encodes its batches when they cross to another worker.
    pub codec: Arc<dyn crate::net::BatchCodec>,
}

/// A job: nodes and edges, built by the DSL.
#[derive(Clone, Default)]
pub struct JobGraph {
    /// Name of the job.
    pub name: String,
    /// Operators, indexed by [`NodeId`].
    pub nodes: Vec<Node>,
    /// Connections.
    pub edges: Vec<Edge>,
}

impl JobGraph {
    /// An empty graph.
    pub fn new(name: &str) -> Self {
        JobGraph {
            name: name.to_string(),
            ..Default::default()
        }
    }

    /// Adds a node; returns its id.
    pub fn add_node(&mut self, name: &str, parallelism: usize, kind: NodeKind) -> NodeId {
        let id = self.nodes.len();
        self.nodes.push(Node {
            id,
            name: name.to_string(),
            parallelism,
            kind,
            chainable: true,
            uid: None,
        });
        id
    }

    /// Every node's identity in checkpoints (its stable id and name), by node.
    pub fn operator_identities(&self) -> Vec<OperatorIdentity> {
        self.nodes
            .iter()
            .map(|n| OperatorIdentity::new(n.uid.as_deref(), &n.name, n.id))
            .collect()
    }

    /// Adds an edge.
    pub fn add_edge(&mut self, edge: Edge) {
        self.edges.push(edge);
    }

    /// Edges into `node`.
    pub fn inputs_of(&self, node: NodeId) -> impl Iterator<Item = &Edge> {
        self.edges.iter().filter(move |e| e.to == node)
    }

    /// Edges out of `node`.
    pub fn outputs_of(&self, node: NodeId) -> impl Iterator<Item = &Edge> {
        self.edges.iter().filter(move |e| e.from == node)
    }

    /// Checks what the DSL cannot check by types: parallelism, inputs, unique uids,
    /// acyclicity.
    pub fn validate(&self) -> Result<()> {
        use crate::error::RuntimeError::InvalidGraph;
        if self.nodes.is_empty() {
            return Err(InvalidGraph("the job has no operators: add a source and a sink".into()));
        }
        for n in &self.nodes {
            if n.parallelism == 0 {
                return Err(InvalidGraph(format!(
                    "operator `{}` has parallelism 0: set a parallelism of at least 1",
                    n.name
                )));
            }
            let has_inputs = self.inputs_of(n.id).next().is_some();
            match (&n.kind, has_inputs) {
                (NodeKind::Source(_), true) => {
                    return Err(InvalidGraph(format!("source `{}` has inputs", n.name)));
                }
                (NodeKind::Operator(_), false) => {
                    return Err(InvalidGraph(format!("operator `{}` has no input", n.name)));
                }
                _ => {}
            }
        }
        let mut uids = std::collections::HashMap::new();
        for (n, identity) in self.nodes.iter().zip(self.operator_identities()) {
            if identity.uid.is_empty() {
                return Err(InvalidGraph(format!(
                    "operator `{}` has an empty uid: give it a non-empty one",
                    n.name
                )));
            }
            if let Some(other) = uids.insert(identity.uid.clone(), n.id) {
                return Err(InvalidGraph(format!(
                    "operators `{}` and `{}` have the same uid `{}`: uids must be unique",
                    self.nodes[other].name, n.name, identity.uid
                )));
            }
        }
        for e in &self.edges {
            if e.from >= self.nodes.len() || e.to >= self.nodes.len() || e.from >= e.to {
                return Err(InvalidGraph(format!(
                    "edge {} -> {} does not point forward (graphs are built in order)",
                    e.from, e.to
                )));
            }
            if e.ship == ShipStrategy::Forward && self.nodes[e.from].parallelism != self.nodes[e.to].parallelism {
                return Err(InvalidGraph(format!(
                    "forward edge `{}` -> `{}` joins parallelism {} to {}: use rebalance",
                    self.nodes[e.from].name,
                    self.nodes[e.to].name,
                    self.nodes[e.from].parallelism,
                    self.nodes[e.to].parallelism
                )));
            }
        }
        Ok(())
    }
}
