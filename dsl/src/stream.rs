//! `Stream<T>`: a typed stream of records and the transformations and sinks on it.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt::Debug;
use std::marker::PhantomData;
use std::path::Path;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use floe_checkpoints::StateKey;
use floe_operators::basic::{FilterOperator, FlatMapOperator, IdentityOperator, MapOperator};
use floe_operators::process::{ProcessFunction, ProcessOperator};
use floe_operators::sink::collect::{CollectHandle, CollectSink};
use floe_operators::sink::count::{CountHandle, CountingSink};
use floe_operators::sink::exactly_once::{ExactlyOnceFileSink, ExactlyOnceJsonLinesSink};
use floe_operators::sink::json_lines::JsonLinesSink;
use floe_operators::sink::parquet::Parquet;
use floe_operators::sink::print::PrintSink;
use floe_operators::source::file::BadRecord;
use floe_operators::timestamps::{BoundedOutOfOrderness, TimestampsAndWatermarks};
use floe_operators::OutputTag;
use floe_runtime::{Data, NodeId, NodeKind, Operator, OperatorFactory, OutputSlot, TaskInfo, Timestamp};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::builder::{writer_for, Builder, Ship};
use crate::keyed::KeyedStream;

thread_local! {
    /// Error tags of file sources, by builder and node (see `bad_records`).
    static ERROR_TAGS: RefCell<HashMap<(usize, NodeId), Arc<AtomicU64>>> = RefCell::new(HashMap::new());
}

/// A stream of records of type `T` (Flink's `DataStream`). Cheap to clone: a stream can feed
/// several operators, each then sees every record.
///
/// ```
/// use floe_dsl::prelude::*;
/// let env = Env::local(1);
/// let numbers = env.from_collection(vec![1, 2, 3]);
/// let doubled = numbers.map(|x| x * 2).collect(); // one stream feeding two operators
/// let total = numbers.count();
/// env.execute("fan-out").unwrap();
/// assert_eq!((doubled.take(), total.get()), (vec![2, 4, 6], 3));
/// ```
pub struct Stream<T> {
    pub(crate) b: Rc<RefCell<Builder>>,
    pub(crate) node: NodeId,
    pub(crate) slot: OutputSlot,
    _t: PhantomData<fn() -> T>,
}

impl<T> Clone for Stream<T> {
    fn clone(&self) -> Self {
        Stream {
            b: self.b.clone(),
            node: self.node,
            slot: self.slot,
            _t: PhantomData,
        }
    }
}

/// A sink that was added; its parallelism and name can still be set.
///
/// ```
/// use floe_dsl::prelude::*;
/// let env = Env::local(1);
/// let _sink: Sink = env.from_collection(vec![1]).print().name("stdout");
/// ```
pub struct Sink {
    b: Rc<RefCell<Builder>>,
    node: NodeId,
}

impl Sink {
    /// Sets the sink's parallelism.
    ///
    /// ```
    /// use floe_dsl::prelude::*;
    /// let dir = tempfile::tempdir().unwrap();
    /// let env = Env::local(2);
    /// env.generate(10, |i| i).write_json_lines(dir.path().join("out.jsonl")).set_parallelism(1).name("numbers");
    /// env.execute("sink").unwrap();
    /// assert_eq!(std::fs::read_to_string(dir.path().join("out.jsonl")).unwrap().lines().count(), 10);
    /// ```
    pub fn set_parallelism(self, parallelism: usize) -> Self {
        self.b.borrow_mut().set_parallelism(self.node, parallelism);
        self
    }

    /// Names the sink (in logs and errors).
    pub fn name(self, name: &str) -> Self {
        self.b.borrow_mut().set_name(self.node, name);
        self
    }

    /// Gives the sink a stable id in checkpoints and savepoints, as
    /// [`Stream::uid`] does for other operators.
    ///
    /// ```
    /// use floe_dsl::prelude::*;
    /// let env = Env::local(1);
    /// env.from_collection(vec![1]).print().uid("stdout");
    /// assert_eq!(env.graph("sink-uid").unwrap().nodes[1].uid, "stdout");
    /// ```
    pub fn uid(self, uid: &str) -> Self {
        self.b.borrow_mut().set_uid(self.node, uid);
        self
    }
}

/// A user function from which every subtask gets its own clone. Functions need only be
/// `Send` (they may hold non-`Sync` caches such as state descriptors); the factory that
/// clones them must be shared, hence the lock, taken once per subtask at start.
pub(crate) struct Prototype<P>(Mutex<P>);

impl<P: Clone> Prototype<P> {
    pub(crate) fn new(p: P) -> Self {
        Prototype(Mutex::new(p))
    }

    pub(crate) fn get(&self) -> P {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

pub(crate) fn factory(f: impl Fn(&TaskInfo) -> Box<dyn Operator> + Send + Sync + 'static) -> OperatorFactory {
    Arc::new(move |info| Ok(f(info)))
}

impl<T: Data> Stream<T> {
    pub(crate) fn new(b: Rc<RefCell<Builder>>, node: NodeId) -> Self {
        Stream {
            b,
            node,
            slot: OutputSlot::Main,
            _t: PhantomData,
        }
    }

    fn builder_id(&self) -> usize {
        Rc::as_ptr(&self.b) as *const () as usize
    }

    /// The parallelism of the operator this stream comes out of (sinks take it by default).
    pub(crate) fn upstream_parallelism(&self) -> usize {
        self.b.borrow().parallelism(self.node)
    }

    /// The index of the operator this stream comes out of, in the job graph.
    pub(crate) fn node_index(&self) -> usize {
        self.node
    }

    pub(crate) fn set_errors_tag(&self, tag: Arc<AtomicU64>) {
        ERROR_TAGS.with(|t| t.borrow_mut().insert((self.builder_id(), self.node), tag));
    }

    /// Adds an operator fed by this stream over an edge of kind `ship`.
    pub(crate) fn add_operator<O: Data>(
        &self,
        name: &str,
        parallelism: usize,
        ship: Ship,
        route: Option<floe_runtime::Route<T>>,
        f: OperatorFactory,
    ) -> Stream<O> {
        let mut b = self.b.borrow_mut();
        let node = b.add_node(name, parallelism, NodeKind::Operator(f));
        b.add_edge(self.node, self.slot, node, 0, ship, writer_for::<T>(route));
        drop(b);
        Stream::new(self.b.clone(), node)
    }

    pub(crate) fn one_to_one<O: Data>(&self, name: &str, f: OperatorFactory) -> Stream<O> {
        let p = self.b.borrow().config.parallelism;
        self.add_operator(name, p, Ship::Auto, None, f)
    }

    pub(crate) fn sink(&self, name: &str, parallelism: usize, f: OperatorFactory) -> Sink {
        let s: Stream<()> = self.add_operator(name, parallelism, Ship::Auto, None, f);
        Sink {
            b: self.b.clone(),
            node: s.node,
        }
    }

    /// Transforms every record.
    ///
    /// ```
    /// use floe_dsl::prelude::*;
    /// let env = Env::local(1);
    /// let out = env.from_collection(vec![1, 2]).map(|x| x + 1).collect();
    /// env.execute("map").unwrap();
    /// assert_eq!(out.take(), vec![2, 3]);
    /// ```
    pub fn map<O: Data>(&self, f: impl Fn(T) -> O + Send + Sync + 'static) -> Stream<O> {
        let f = Arc::new(f);
        self.one_to_one("map", factory(move |_| Box::new(MapOperator::new(f.clone()))))
    }

    /// Keeps the records for which `f` is true.
    ///
    /// ```
    /// use floe_dsl::prelude::*;
    /// let env = Env::local(1);
    /// let out = env.from_collection(1..=6).filter(|x| x % 3 == 0).collect();
    /// env.execute("filter").unwrap();
    /// assert_eq!(out.take(), vec![3, 6]);
    /// ```
    pub fn filter(&self, f: impl Fn(&T) -> bool + Send + Sync + 'static) -> Stream<T> {
        let f = Arc::new(f);
        self.one_to_one("filter", factory(move |_| Box::new(FilterOperator::new(f.clone()))))
    }

    /// Turns every record into zero or more records.
    ///
    /// ```
    /// use floe_dsl::prelude::*;
    /// let env = Env::local(1);
    /// let words = env.from_collection(vec!["a b".to_string(), "c".to_string()]).flat_map(|l| l.split(' ').map(String::from).collect::<Vec<_>>()).collect();
    /// env.execute("flat_map").unwrap();
    /// assert_eq!(words.take(), vec!["a", "b", "c"]);
    /// ```
    pub fn flat_map<O: Data, I: IntoIterator<Item = O> + 'static>(
        &self,
        f: impl Fn(T) -> I + Send + Sync + 'static,
    ) -> Stream<O> {
        let f = Arc::new(f);
        self.one_to_one("flat_map", factory(move |_| Box::new(FlatMapOperator::new(f.clone()))))
    }

    /// Runs a [`ProcessFunction`] (cloned for every subtask): any number of outputs per
    /// record, side outputs, access to timestamps and the watermark.
    ///
    /// ```
    /// use floe_dsl::prelude::*;
    /// let env = Env::local(1);
    /// let negative: OutputTag<i32> = OutputTag::new("negative");
    /// let tag = negative.clone();
    /// let main = env.from_collection(vec![1, -2, 3]).process(
    ///     move |v: i32, _ctx: &mut ProcessContext<'_>, out: &mut Collector<i32>| -> Result<(), UserError> {
    ///         if v < 0 { out.side(&tag, v) } else { out.collect(v) }
    ///         Ok(())
    ///     });
    /// let neg = main.side_output(&negative).collect();
    /// let pos = main.collect();
    /// env.execute("process").unwrap();
    /// assert_eq!((pos.take(), neg.take()), (vec![1, 3], vec![-2]));
    /// ```
    pub fn process<O: Data, P: ProcessFunction<T, O> + Clone>(&self, function: P) -> Stream<O> {
        let prototype = Prototype::new(function);
        self.one_to_one(
            "process",
            factory(move |_| Box::new(ProcessOperator::new(prototype.get()))),
        )
    }

    /// The records a process function (or window) emitted on `tag`.
    ///
    /// ```
    /// use floe_dsl::prelude::*;
    /// let env = Env::local(1);
    /// let long: OutputTag<String> = OutputTag::new("long");
    /// let tag = long.clone();
    /// let short = env.from_collection(vec!["a".to_string(), "abcdef".to_string()]).process(
    ///     move |w: String, _: &mut ProcessContext<'_>, out: &mut Collector<String>| -> Result<(), UserError> {
    ///         if w.len() > 3 { out.side(&tag, w) } else { out.collect(w) }
    ///         Ok(())
    ///     });
    /// let long_words = short.side_output(&long).collect();
    /// env.execute("side").unwrap();
    /// assert_eq!(long_words.take(), vec!["abcdef"]);
    /// ```
    pub fn side_output<S: Data>(&self, tag: &OutputTag<S>) -> Stream<S> {
        Stream {
            b: self.b.clone(),
            node: self.node,
            slot: OutputSlot::Side(tag.id()),
            _t: PhantomData,
        }
    }

    /// The malformed lines of a file source ([`Env::read_json_lines`](crate::Env::read_json_lines),
    /// [`Env::read_csv`](crate::Env::read_csv)), with their file, line number, text and error.
    ///
    /// ```
    /// use floe_dsl::prelude::*;
    /// let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("n.jsonl");
    /// std::fs::write(&path, "1\ntwo\n3\n").unwrap();
    /// let env = Env::local(1);
    /// let numbers = env.read_json_lines::<u32>(&path);
    /// let bad = numbers.bad_records().collect();
    /// numbers.count();
    /// env.execute("bad").unwrap();
    /// let bad = bad.take();
    /// assert_eq!((bad[0].line, bad[0].raw.as_str()), (2, "two"));
    /// ```
    pub fn bad_records(&self) -> Stream<BadRecord> {
        self.error_output(
            "bad-records",
            "bad_records() is only available directly on a file source (read_json_lines, read_csv)",
        )
    }

    /// The side output on which this stream's source sets aside what it could not read
    /// (allocated on first use, read by the source's factory when the job starts); `misuse`
    /// is the job's error if this stream is not such a source.
    pub(crate) fn error_output<E: Data>(&self, name: &str, misuse: &str) -> Stream<E> {
        let tag: OutputTag<E> = OutputTag::new(name);
        let slot = ERROR_TAGS.with(|t| t.borrow().get(&(self.builder_id(), self.node)).cloned());
        match slot {
            Some(s) if self.slot == OutputSlot::Main => {
                let existing = s.load(Ordering::SeqCst);
                if existing != 0 {
                    return Stream {
                        b: self.b.clone(),
                        node: self.node,
                        slot: OutputSlot::Side(existing),
                        _t: PhantomData,
                    };
                }
                s.store(tag.id(), Ordering::SeqCst);
            }
            _ => self.b.borrow_mut().error(misuse.into()),
        }
        self.side_output(&tag)
    }

    /// Sets each record's event timestamp with `f` and generates watermarks by `strategy`.
    ///
    /// ```
    /// use floe_dsl::prelude::*;
    /// use std::time::Duration;
    /// let env = Env::local(1);
    /// let counts = env.from_collection(vec![1_000i64, 2_000, 61_000])
    ///     .assign_timestamps(|ts| *ts, BoundedOutOfOrderness::new(Duration::from_secs(1)))
    ///     .key_by(|_| 0u8)
    ///     .window(TumblingEventTimeWindows::of(Duration::from_secs(60)))
    ///     .aggregate(Count)
    ///     .map(|w| w.value)
    ///     .collect();
    /// env.execute("timestamps").unwrap();
    /// assert_eq!(counts.take(), vec![2, 1]);
    /// ```
    pub fn assign_timestamps(
        &self,
        f: impl Fn(&T) -> Timestamp + Send + Sync + 'static,
        strategy: BoundedOutOfOrderness,
    ) -> Stream<T> {
        let f = Arc::new(f);
        self.one_to_one(
            "timestamps",
            factory(move |_| Box::new(TimestampsAndWatermarks::new(f.clone(), strategy))),
        )
    }

    /// Partitions the stream by key: records with equal keys go to the same subtask, where
    /// keyed state and timers are scoped to the key.
    ///
    /// ```
    /// use floe_dsl::prelude::*;
    /// let env = Env::local(2);
    /// let sums = env.from_collection(vec![("a".to_string(), 1), ("b".to_string(), 2), ("a".to_string(), 3)])
    ///     .key_by(|v| v.0.clone())
    ///     .reduce(|x, y| (x.0.clone(), x.1 + y.1))
    ///     .collect();
    /// env.execute("key_by").unwrap();
    /// let mut s = sums.take();
    /// s.sort();
    /// let s: Vec<(&str, i32)> = s.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    /// assert_eq!(s, vec![("a", 1), ("a", 4), ("b", 2)]);
    /// ```
    pub fn key_by<K: StateKey>(&self, f: impl Fn(&T) -> K + Send + Sync + 'static) -> KeyedStream<K, T> {
        KeyedStream::new(self.clone(), Arc::new(f))
    }

    /// Merges streams of the same type.
    ///
    /// ```
    /// use floe_dsl::prelude::*;
    /// let env = Env::local(2);
    /// let a = env.from_collection(vec![1, 2]);
    /// let b = env.from_collection(vec![3]);
    /// let out = a.union(&[b]).collect();
    /// env.execute("union").unwrap();
    /// let mut v = out.take();
    /// v.sort();
    /// assert_eq!(v, vec![1, 2, 3]);
    /// ```
    pub fn union(&self, others: &[Stream<T>]) -> Stream<T> {
        let p = self.b.borrow().config.parallelism;
        let merged: Stream<T> =
            self.add_operator("union", p, Ship::Auto, None, factory(|_| Box::new(IdentityOperator)));
        let mut b = self.b.borrow_mut();
        for o in others {
            b.add_edge(o.node, o.slot, merged.node, 0, Ship::Auto, writer_for::<T>(None));
        }
        drop(b);
        merged
    }

    /// Spreads records round robin over the next operator's subtasks.
    ///
    /// ```
    /// use floe_dsl::prelude::*;
    /// let env = Env::local(2);
    /// let out = env.from_collection(0..10).rebalance().map(|x| x * 2).collect();
    /// env.execute("rebalance").unwrap();
    /// assert_eq!(out.take().iter().sum::<i32>(), 90);
    /// ```
    pub fn rebalance(&self) -> Stream<T> {
        let p = self.b.borrow().config.parallelism;
        self.add_operator(
            "rebalance",
            p,
            Ship::Rebalance,
            None,
            factory(|_| Box::new(IdentityOperator)),
        )
    }

    /// Sends every record to every subtask of the next operator.
    ///
    /// ```
    /// use floe_dsl::prelude::*;
    /// let env = Env::local(3);
    /// let out = env.from_collection(vec![7]).broadcast().collect();
    /// env.execute("broadcast").unwrap();
    /// assert_eq!(out.take(), vec![7, 7, 7]);
    /// ```
    pub fn broadcast(&self) -> Stream<T> {
        let p = self.b.borrow().config.parallelism;
        self.add_operator(
            "broadcast",
            p,
            Ship::Broadcast,
            None,
            factory(|_| Box::new(IdentityOperator)),
        )
    }

    /// Sets the parallelism of the operator that produces this stream.
    ///
    /// ```
    /// use floe_dsl::prelude::*;
    /// let env = Env::local(1);
    /// let out = env.generate(100, |i| i).map(|i| i + 1).set_parallelism(3).count();
    /// env.execute("p").unwrap();
    /// assert_eq!(out.get(), 100);
    /// ```
    pub fn set_parallelism(self, parallelism: usize) -> Self {
        self.b.borrow_mut().set_parallelism(self.node, parallelism);
        self
    }

    /// Names the operator that produces this stream (in logs and errors).
    ///
    /// ```
    /// use floe_dsl::prelude::*;
    /// let env = Env::local(1);
    /// env.from_collection(vec![0]).map(|x: i32| 10 / x).name("divide").count();
    /// let err = env.execute("named").unwrap_err().to_string();
    /// assert!(err.contains("operator `divide`"), "{err}");
    /// ```
    pub fn name(self, name: &str) -> Self {
        self.b.borrow_mut().set_name(self.node, name);
        self
    }

    /// Gives the operator that produces this stream a stable id (Flink's `uid`):
    /// checkpoints and savepoints find its state by it, so a job changed around it (an
    /// operator added before it, say) still restores its state. Without one the id is
    /// derived from the operator's position in the graph (not its name, which may carry a
    /// path), and changes when the operator moves. Uids must be unique within a job.
    ///
    /// ```
    /// use floe_dsl::prelude::*;
    /// let env = Env::local(1);
    /// env.from_collection(vec![1u32, 2]).uid("numbers").key_by(|x| *x).reduce(|a, b| a + b).uid("sums").print();
    /// let g = env.graph("with-uids").unwrap();
    /// assert_eq!(g.nodes[0].uid, "numbers");
    /// assert!(g.nodes.iter().any(|n| n.uid == "sums"));
    ///
    /// let env = Env::local(1);
    /// env.from_collection(vec![1]).uid("x").map(|v| v + 1).uid("x").print();
    /// let err = env.execute("twice").unwrap_err().to_string();
    /// assert!(err.contains("same uid `x`"), "{err}");
    /// ```
    pub fn uid(self, uid: &str) -> Self {
        self.b.borrow_mut().set_uid(self.node, uid);
        self
    }

    /// Runs the operator that produces this stream in a task of its own, not chained to
    /// its predecessor.
    ///
    /// ```
    /// use floe_dsl::prelude::*;
    /// let env = Env::local(1);
    /// let n = env.generate(10, |i| i).map(|i| i).disable_chaining().count();
    /// env.execute("unchained").unwrap();
    /// assert_eq!(n.get(), 10);
    /// ```
    pub fn disable_chaining(self) -> Self {
        self.b.borrow_mut().disable_chaining(self.node);
        self
    }

    /// Adds a custom sink operator built per subtask by `f`.
    ///
    /// ```
    /// use floe_dsl::prelude::*;
    /// use floe_operators::sink::count::CountingSink;
    /// use std::sync::{atomic::AtomicU64, Arc};
    /// let env = Env::local(1);
    /// let counter = Arc::new(AtomicU64::new(0));
    /// let c = counter.clone();
    /// env.generate(5, |i| i).add_sink("my-sink", move |_| Box::new(CountingSink::new(c.clone())));
    /// env.execute("custom-sink").unwrap();
    /// assert_eq!(counter.load(std::sync::atomic::Ordering::Relaxed), 5);
    /// ```
    pub fn add_sink(&self, name: &str, f: impl Fn(&TaskInfo) -> Box<dyn Operator> + Send + Sync + 'static) -> Sink {
        let p = self.b.borrow().config.parallelism;
        self.sink(name, p, factory(f))
    }

    /// Collects every value in memory; read them after the job with
    /// [`CollectHandle::take`]. For tests and examples.
    ///
    /// ```
    /// use floe_dsl::prelude::*;
    /// let env = Env::local(1);
    /// let out = env.from_collection(vec!['x', 'y']).collect();
    /// env.execute("collect").unwrap();
    /// assert_eq!(out.take(), vec!['x', 'y']);
    /// ```
    pub fn collect(&self) -> CollectHandle<T> {
        let target = Arc::new(Mutex::new(Vec::new()));
        let handle = CollectHandle::new(target.clone());
        let p = self.b.borrow().parallelism(self.node);
        self.sink(
            "collect",
            p,
            factory(move |_| Box::new(CollectSink::new(target.clone()))),
        );
        handle
    }

    /// Counts records and drops them (for benchmarks).
    ///
    /// ```
    /// use floe_dsl::prelude::*;
    /// let env = Env::local(2);
    /// let n = env.generate(1_000, |i| i).filter(|i| i % 2 == 0).count();
    /// env.execute("count").unwrap();
    /// assert_eq!(n.get(), 500);
    /// ```
    pub fn count(&self) -> CountHandle {
        let counter = Arc::new(AtomicU64::new(0));
        let handle = CountHandle::new(counter.clone());
        let p = self.b.borrow().parallelism(self.node);
        self.sink(
            "count",
            p,
            factory(move |_| Box::new(CountingSink::new(counter.clone()))),
        );
        handle
    }

    /// Writes every value as one JSON document per line to `path` (one file, written by one
    /// subtask).
    ///
    /// ```
    /// use floe_dsl::prelude::*;
    /// let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("pairs.jsonl");
    /// let env = Env::local(1);
    /// env.from_collection(vec![(1, "a".to_string())]).write_json_lines(&path);
    /// env.execute("write").unwrap();
    /// assert_eq!(std::fs::read_to_string(&path).unwrap(), "[1,\"a\"]\n");
    /// ```
    pub fn write_json_lines(&self, path: impl AsRef<Path>) -> Sink
    where
        T: Serialize,
    {
        let path = path.as_ref().to_path_buf();
        self.sink(
            &format!("json-lines: {}", path.display()),
            1,
            factory(move |_| Box::new(JsonLinesSink::<T>::new(path.clone()))),
        )
    }

    /// Writes every value as JSON lines into part files in `dir`, exactly once: files are
    /// committed (renamed from hidden in-progress files) when the checkpoint that covers
    /// them completes, so after any crash and restore each record is in the committed files
    /// once. Without checkpoints, files are committed when the input ends.
    ///
    /// ```
    /// use floe_dsl::prelude::*;
    /// let dir = tempfile::tempdir().unwrap();
    /// let env = Env::local(2);
    /// env.generate(100, |i| i).write_json_lines_exactly_once(dir.path());
    /// env.execute("exactly-once").unwrap();
    /// let mut n = 0;
    /// for f in std::fs::read_dir(dir.path()).unwrap() {
    ///     n += std::fs::read_to_string(f.unwrap().path()).unwrap().lines().count();
    /// }
    /// assert_eq!(n, 100);
    /// ```
    pub fn write_json_lines_exactly_once(&self, dir: impl AsRef<Path>) -> Sink
    where
        T: Serialize,
    {
        let dir = dir.as_ref().to_path_buf();
        let p = self.b.borrow().parallelism(self.node);
        self.sink(
            &format!("exactly-once json-lines: {}", dir.display()),
            p,
            factory(move |_| Box::new(ExactlyOnceJsonLinesSink::<T>::new(dir.clone()))),
        )
    }

    /// Writes every value into Parquet part files in `dir`, exactly once, like
    /// [`write_json_lines_exactly_once`](Self::write_json_lines_exactly_once): a part file
    /// becomes visible (`part-<checkpoint>-<subtask>-<attempt>-<n>.parquet`) when the
    /// checkpoint that covers it completes, and is then a complete Parquet file. The columns
    /// come from `T`, which must be a struct: its fields' serde description gives the Arrow
    /// schema (options are nullable columns, unit enum variants strings). A type without a
    /// columnar form fails the job before it starts, saying why.
    ///
    /// ```
    /// use floe_dsl::prelude::*;
    /// #[derive(Clone, serde::Serialize, serde::Deserialize)]
    /// struct Row { key: u64, square: u64 }
    /// let dir = tempfile::tempdir().unwrap();
    /// let env = Env::local(2);
    /// env.generate(100, |i| Row { key: i, square: i * i }).write_parquet_exactly_once(dir.path());
    /// env.execute("parquet").unwrap();
    /// let parts = std::fs::read_dir(dir.path()).unwrap().count();
    /// assert!(parts >= 1);
    /// ```
    pub fn write_parquet_exactly_once(&self, dir: impl AsRef<Path>) -> Sink
    where
        T: Serialize + DeserializeOwned,
    {
        let dir = dir.as_ref().to_path_buf();
        let p = self.b.borrow().parallelism(self.node);
        let format = match Parquet::<T>::for_type() {
            Ok(f) => f,
            Err(e) => {
                self.b
                    .borrow_mut()
                    .error(format!("write_parquet_exactly_once({}): {e}", dir.display()));
                // Never built: the job fails before it runs.
                return self.sink(
                    "parquet (invalid)",
                    p,
                    factory(|_| Box::new(CountingSink::new(Arc::default()))),
                );
            }
        };
        self.sink(
            &format!("exactly-once parquet: {}", dir.display()),
            p,
            factory(move |_| Box::new(ExactlyOnceFileSink::<T, _>::with_format(dir.clone(), format.clone()))),
        )
    }

    /// Prints every value on stdout (`{:?}`), prefixed by the subtask when parallel.
    ///
    /// ```
    /// use floe_dsl::prelude::*;
    /// let env = Env::local(1);
    /// env.from_collection(vec!["hello".to_string()]).print(); // prints "hello" with {:?}
    /// env.execute("print").unwrap();
    /// ```
    pub fn print(&self) -> Sink
    where
        T: Debug,
    {
        let p = self.b.borrow().parallelism(self.node);
        self.sink("print", p, factory(|_| Box::new(PrintSink::<T>::new())))
    }
}
