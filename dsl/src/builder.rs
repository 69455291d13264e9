//! The graph under construction, shared by the streams of one [`Env`](crate::Env).

use std::sync::Arc;

use floe_runtime::{
    BatchCodec, BincodeCodec, Data, Edge, EdgeWriterFactory, JobGraph, NodeId, NodeKind, OutputSlot, Route,
    ShipStrategy, TypedEdgeWriterFactory,
};

use crate::options::JobConfig;

/// How an edge ships records, decided when the job is built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ship {
    /// Forward when both sides have the same parallelism, else rebalance.
    Auto,
    /// Round robin.
    Rebalance,
    /// By key.
    Hash,
    /// To all.
    Broadcast,
}

type WriterFor = Arc<dyn Fn(ShipStrategy) -> (Arc<dyn EdgeWriterFactory>, Arc<dyn BatchCodec>) + Send + Sync>;

struct EdgeSpec {
    from: NodeId,
    slot: OutputSlot,
    to: NodeId,
    input: usize,
    ship: Ship,
    writer: WriterFor,
}

struct NodeSpec {
    name: String,
    parallelism: usize,
    kind: NodeKind,
    chainable: bool,
    uid: Option<String>,
}

/// Nodes and edges added so far, and the mistakes found while adding them.
pub(crate) struct Builder {
    nodes: Vec<NodeSpec>,
    edges: Vec<EdgeSpec>,
    errors: Vec<String>,
    pub(crate) config: JobConfig,
}

/// The writer factory of an edge carrying `T`, routed by key when `hash` is given.
pub(crate) fn writer_for<T: Data>(hash: Option<Route<T>>) -> WriterFor {
    Arc::new(move |ship| {
        let route = match (&hash, ship) {
            (Some(r), _) => r.clone(),
            (None, ShipStrategy::Forward) => Route::Forward,
            (None, ShipStrategy::Broadcast) => Route::Broadcast,
            (None, _) => Route::Rebalance,
        };
        (
            Arc::new(TypedEdgeWriterFactory::new(route)) as Arc<dyn EdgeWriterFactory>,
            Arc::new(BincodeCodec::<T>::new()) as Arc<dyn BatchCodec>,
        )
    })
}

impl Builder {
    pub(crate) fn new(config: JobConfig) -> Self {
        Builder {
            nodes: Vec::new(),
            edges: Vec::new(),
            errors: Vec::new(),
            config,
        }
    }

    pub(crate) fn add_node(&mut self, name: &str, parallelism: usize, kind: NodeKind) -> NodeId {
        self.nodes.push(NodeSpec {
            name: name.to_string(),
            parallelism,
            kind,
            chainable: true,
            uid: None,
        });
        self.nodes.len() - 1
    }

    pub(crate) fn add_edge(
        &mut self,
        from: NodeId,
        slot: OutputSlot,
        to: NodeId,
        input: usize,
        ship: Ship,
        writer: WriterFor,
    ) {
        self.edges.push(EdgeSpec {
            from,
            slot,
            to,
            input,
            ship,
            writer,
        });
    }

    pub(crate) fn error(&mut self, message: String) {
        self.errors.push(message);
    }

    pub(crate) fn set_parallelism(&mut self, node: NodeId, p: usize) {
        if p == 0 {
            self.error(format!(
                "operator `{}`: parallelism must be at least 1",
                self.nodes[node].name
            ));
        }
        self.nodes[node].parallelism = p;
    }

    pub(crate) fn parallelism(&self, node: NodeId) -> usize {
        self.nodes[node].parallelism
    }

    pub(crate) fn set_name(&mut self, node: NodeId, name: &str) {
        self.nodes[node].name = name.to_string();
    }

    pub(crate) fn set_uid(&mut self, node: NodeId, uid: &str) {
        self.nodes[node].uid = Some(uid.to_string());
    }

    pub(crate) fn disable_chaining(&mut self, node: NodeId) {
        self.nodes[node].chainable = false;
    }

    /// The runnable graph, or every mistake found while building it.
    pub(crate) fn build(&self, name: &str) -> Result<JobGraph, String> {
        if !self.errors.is_empty() {
            return Err(self.errors.join("; "));
        }
        let mut g = JobGraph::new(name);
        for n in &self.nodes {
            let id = g.add_node(&n.name, n.parallelism, n.kind.clone());
            g.nodes[id].chainable = n.chainable;
            g.nodes[id].uid.clone_from(&n.uid);
        }
        for e in &self.edges {
            let same = self.nodes[e.from].parallelism == self.nodes[e.to].parallelism;
            let ship = match e.ship {
                Ship::Auto if same => ShipStrategy::Forward,
                Ship::Auto | Ship::Rebalance => ShipStrategy::Rebalance,
                Ship::Hash => ShipStrategy::Hash,
                Ship::Broadcast => ShipStrategy::Broadcast,
            };
            let (writer, codec) = (e.writer)(ship);
            g.add_edge(Edge {
                from: e.from,
                slot: e.slot,
                to: e.to,
                input: e.input,
                ship,
                writer,
                codec,
            });
        }
        Ok(g)
    }
}
