//! The shared buffer of one key (Flink's `SharedBuffer`): every event taken by some partial
//! match is stored once, and partial matches are paths in a tree of nodes, so that partial
//! matches with a common prefix share it.
//!
//! Nodes and events live in two slabs (vectors with free lists) and are reference counted: a
//! node is held by the computation states pointing at it and by its children; an event by the
//! nodes naming it. Releasing the last holder frees the node, then its parent and event if they
//! become unused. Everything is plain data (indices, no `Rc`), so the buffer is serializable.

use serde::{Deserialize, Serialize};

/// A vector of optional slots with a free list; ids stay stable while a slot is in use.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Slab<X> {
    slots: Vec<Option<X>>,
    free: Vec<u32>,
    len: usize,
}

impl<X> Slab<X> {
    /// Empties the slab, keeping its capacity.
    pub(crate) fn clear(&mut self) {
        self.slots.clear();
        self.free.clear();
        self.len = 0;
    }
}

impl<X> Default for Slab<X> {
    fn default() -> Self {
        Slab {
            slots: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }
}

impl<X> Slab<X> {
    fn insert(&mut self, x: X) -> u32 {
        self.len += 1;
        if let Some(id) = self.free.pop() {
            if let Some(slot) = self.slots.get_mut(id as usize) {
                *slot = Some(x);
                return id;
            }
        }
        self.slots.push(Some(x));
        (self.slots.len() - 1) as u32
    }

    fn remove(&mut self, id: u32) -> Option<X> {
        let x = self.slots.get_mut(id as usize)?.take()?;
        self.len -= 1;
        if self.len == 0 {
            // Forget the free list when empty: ids restart at zero and an idle key serializes small.
            self.slots.clear();
            self.free.clear();
        } else {
            self.free.push(id);
        }
        Some(x)
    }

    fn get(&self, id: u32) -> Option<&X> {
        self.slots.get(id as usize)?.as_ref()
    }

    fn get_mut(&mut self, id: u32) -> Option<&mut X> {
        self.slots.get_mut(id as usize)?.as_mut()
    }
}

/// An event stored in the buffer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StoredEvent<T> {
    pub(crate) event: T,
    pub(crate) ts: i64,
    /// Position of the event in the key's input (orders events with equal timestamps).
    pub(crate) seq: u64,
    refs: u32,
}

/// One event taken into one step, after the node `parent`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Node {
    event: u32,
    step: u16,
    parent: Option<u32>,
    refs: u32,
}

/// Events and match-path nodes of one key.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(bound(serialize = "T: Serialize", deserialize = "T: serde::de::DeserializeOwned"))]
pub(crate) struct SharedBuffer<T> {
    events: Slab<StoredEvent<T>>,
    nodes: Slab<Node>,
}

impl<T> Default for SharedBuffer<T> {
    fn default() -> Self {
        SharedBuffer {
            events: Slab::default(),
            nodes: Slab::default(),
        }
    }
}

impl<T> SharedBuffer<T> {
    /// Empties the buffer, keeping its capacity.
    pub(crate) fn clear(&mut self) {
        self.events.clear();
        self.nodes.clear();
    }

    /// Stores an event, unreferenced: call [`drop_if_unused`](Self::drop_if_unused) once the
    /// event has been offered to every partial match.
    pub(crate) fn insert_event(&mut self, event: T, ts: i64, seq: u64) -> u32 {
        self.events.insert(StoredEvent {
            event,
            ts,
            seq,
            refs: 0,
        })
    }

    pub(crate) fn drop_if_unused(&mut self, event: u32) {
        if self.events.get(event).is_some_and(|e| e.refs == 0) {
            self.events.remove(event);
        }
    }

    pub(crate) fn event(&self, id: u32) -> Option<&StoredEvent<T>> {
        self.events.get(id)
    }

    /// Creates a node taking `event` into `step` after `parent`; the caller must
    /// [`retain`](Self::retain) it for each holder.
    pub(crate) fn put(&mut self, event: u32, step: u16, parent: Option<u32>) -> u32 {
        if let Some(e) = self.events.get_mut(event) {
            e.refs += 1;
        }
        if let Some(p) = parent.and_then(|p| self.nodes.get_mut(p)) {
            p.refs += 1;
        }
        self.nodes.insert(Node {
            event,
            step,
            parent,
            refs: 0,
        })
    }

    pub(crate) fn retain(&mut self, node: u32) {
        if let Some(n) = self.nodes.get_mut(node) {
            n.refs += 1;
        }
    }

    /// Drops one reference to `node`, freeing it and then its unused ancestors and events.
    pub(crate) fn release(&mut self, node: u32) {
        let mut current = Some(node);
        while let Some(id) = current {
            let Some(n) = self.nodes.get_mut(id) else { return };
            n.refs = n.refs.saturating_sub(1);
            if n.refs > 0 {
                return;
            }
            let n = *n;
            self.nodes.remove(id);
            if let Some(e) = self.events.get_mut(n.event) {
                e.refs = e.refs.saturating_sub(1);
                if e.refs == 0 {
                    self.events.remove(n.event);
                }
            }
            current = n.parent;
        }
    }

    /// The path ending at `node`, first event first, as `(step, event id)` pairs.
    pub(crate) fn path_into(&self, node: Option<u32>, out: &mut Vec<(u16, u32)>) {
        out.clear();
        let mut current = node;
        while let Some(n) = current.and_then(|id| self.nodes.get(id)) {
            out.push((n.step, n.event));
            current = n.parent;
        }
        out.reverse();
    }

    pub(crate) fn live_events(&self) -> usize {
        self.events.len
    }

    pub(crate) fn live_nodes(&self) -> usize {
        self.nodes.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_prefix_is_freed_with_its_last_holder() {
        let mut b = SharedBuffer::<char>::default();
        let e0 = b.insert_event('a', 1, 0);
        let n0 = b.put(e0, 0, None);
        b.retain(n0);
        let e1 = b.insert_event('b', 2, 1);
        let n1 = b.put(e1, 1, Some(n0));
        let n2 = b.put(e1, 2, Some(n0));
        b.retain(n1);
        b.retain(n2);
        b.release(n0); // the computation state at n0 moved on
        assert_eq!((b.live_nodes(), b.live_events()), (3, 2));
        let mut path = Vec::new();
        b.path_into(Some(n2), &mut path);
        assert_eq!(path, vec![(0, e0), (2, e1)]);
        b.release(n1);
        assert_eq!((b.live_nodes(), b.live_events()), (2, 2));
        b.release(n2);
        assert_eq!((b.live_nodes(), b.live_events()), (0, 0));
    }
}
