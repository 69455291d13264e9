//! The execution environment: where a job's sources are created and from which it runs.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use clap::Parser;
use floe_operators::source::collection::CollectionSource;
use floe_operators::source::file::{FileSource, FileSourceOptions, LineFormat};
use floe_operators::source::generator::GeneratorSource;
use std::time::Duration;

use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1};
use signal_hook::iterator::Signals;

use floe_runtime::{
    CheckpointConfig, Clock, Data, ExecutionConfig, JobHandle, JobResult, NodeKind, SourceFactory, SourceFunction,
    SystemClock, TaskInfo,
};
use serde::de::DeserializeOwned;

use crate::builder::Builder;
use crate::error::{DslError, Result};
use crate::options::{EnvOptions, JobConfig};
use crate::stream::Stream;

#[derive(Parser, Debug)]
#[command(about = "A Floe job", long_about = None)]
struct EnvOnlyArgs {
    #[command(flatten)]
    options: EnvOptions,
}

/// Where a job is defined and run (Flink's `StreamExecutionEnvironment`).
///
/// ```
/// use floe_dsl::prelude::*;
/// let env = Env::local(2);
/// let out = env.from_collection(vec![1, 2, 3]).map(|x| x * 10).collect();
/// env.execute("times-ten").unwrap();
/// let mut v = out.take();
/// v.sort();
/// assert_eq!(v, vec![10, 20, 30]);
/// ```
#[derive(Clone)]
pub struct Env {
    pub(crate) b: Rc<RefCell<Builder>>,
    clock: Arc<dyn Clock>,
    /// The metrics endpoint (`--metrics-addr`), served while the environment lives.
    metrics: Option<Rc<floe_runtime::metrics::server::MetricsServer>>,
}

impl Env {
    /// Parses the process arguments (and `FLOE_*` variables, and `--config FILE`) for the
    /// options every job has, after the built-in command word ([`crate::job::args`]: `run`,
    /// `graph`, `submit`, `worker`); `--help` prints them and exits. Also starts logging
    /// (`RUST_LOG`, default `info`).
    ///
    /// ```no_run
    /// use floe_dsl::prelude::*;
    /// fn main() -> Result<(), Box<dyn std::error::Error>> {
    ///     let env = Env::from_args()?; // e.g. `my-job --parallelism 4`
    ///     env.generate(10, |i| i).print();
    ///     env.execute("my-job")?;
    ///     Ok(())
    /// }
    /// ```
    pub fn from_args() -> Result<Env> {
        let args = match EnvOnlyArgs::try_parse_from(crate::job::args()) {
            Ok(a) => a,
            Err(e) if !e.use_stderr() => e.exit(),
            Err(e) => return Err(DslError::Config(e.render().to_string())),
        };
        init_logging();
        Env::from_options(&args.options)
    }

    /// An environment from options a job parsed itself (with `#[command(flatten)]`).
    ///
    /// ```
    /// use floe_dsl::prelude::*;
    /// let options = EnvOptions { parallelism: Some(3), ..Default::default() };
    /// assert_eq!(Env::from_options(&options).unwrap().config().parallelism, 3);
    /// let bad = EnvOptions { parallelism: Some(0), ..Default::default() };
    /// assert!(Env::from_options(&bad).is_err());
    /// ```
    pub fn from_options(options: &EnvOptions) -> Result<Env> {
        let mut env = Env::with_config(options.resolve()?);
        let metrics = match env.config().metrics_addr {
            None => None,
            Some(addr) => {
                let server = floe_runtime::metrics::server::MetricsServer::start(
                    addr,
                    floe_runtime::metrics::Registry::global().clone(),
                )
                .map_err(|e| DslError::Config(format!("--metrics-addr {addr}: cannot listen there ({e})")))?;
                tracing::info!(url = %format!("http://{}/metrics", server.addr()), "serving metrics");
                Some(Rc::new(server))
            }
        };
        env.metrics = metrics;
        Ok(env)
    }

    /// Where the metrics endpoint listens, if `--metrics-addr` started one.
    ///
    /// ```
    /// use floe_dsl::prelude::*;
    /// let options = EnvOptions { metrics_addr: Some("127.0.0.1:0".into()), ..Default::default() };
    /// let env = Env::from_options(&options).unwrap();
    /// assert!(env.metrics_addr().is_some_and(|a| a.port() != 0));
    /// let bad = EnvOptions { metrics_addr: Some("localhost".into()), ..Default::default() };
    /// assert!(Env::from_options(&bad).is_err());
    /// ```
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.metrics.as_ref().map(|m| m.addr())
    }

    /// An environment with default options and the given parallelism (for tests and
    /// examples).
    ///
    /// ```
    /// use floe_dsl::prelude::*;
    /// assert_eq!(Env::local(2).config().parallelism, 2);
    /// ```
    pub fn local(parallelism: usize) -> Env {
        let config = JobConfig {
            parallelism,
            ..JobConfig::default()
        };
        Env::with_config(config)
    }

    /// An environment from resolved options.
    ///
    /// ```
    /// use floe_dsl::{Env, JobConfig};
    /// let env = Env::with_config(JobConfig { parallelism: 2, chaining: false, ..JobConfig::default() });
    /// assert!(!env.config().chaining);
    /// ```
    pub fn with_config(config: JobConfig) -> Env {
        let config = crate::job::apply_mode(config);
        Env {
            b: Rc::new(RefCell::new(Builder::new(config))),
            clock: Arc::new(SystemClock),
            metrics: None,
        }
    }

    /// The options in force.
    ///
    /// ```
    /// use floe_dsl::prelude::*;
    /// assert_eq!(Env::local(1).config().max_parallelism, 128);
    /// ```
    pub fn config(&self) -> JobConfig {
        self.b.borrow().config.clone()
    }

    /// Changes the default parallelism of operators added from now on.
    ///
    /// ```
    /// use floe_dsl::prelude::*;
    /// let env = Env::local(1);
    /// env.set_parallelism(3);
    /// let n = env.generate(30, |i| i).count(); // a generator at parallelism 3
    /// env.execute("p3").unwrap();
    /// assert_eq!(n.get(), 30);
    /// ```
    pub fn set_parallelism(&self, parallelism: usize) -> &Self {
        self.b.borrow_mut().config.parallelism = parallelism;
        if parallelism == 0 {
            self.b.borrow_mut().error("parallelism must be at least 1".into());
        }
        self
    }

    /// Replaces the processing-time clock (tests drive processing time with a
    /// [`ManualClock`](floe_runtime::ManualClock)).
    ///
    /// ```
    /// use floe_dsl::prelude::*;
    /// use std::sync::Arc;
    /// let mut env = Env::local(1);
    /// env.set_clock(Arc::new(ManualClock::new(1_000)));
    /// ```
    pub fn set_clock(&mut self, clock: Arc<dyn Clock>) -> &mut Self {
        self.clock = clock;
        self
    }

    /// Adds a source built per subtask by `factory`.
    ///
    /// ```
    /// use floe_dsl::prelude::*;
    /// use floe_operators::source::collection::CollectionSource;
    /// use floe_runtime::SourceFunction;
    /// use std::sync::Arc;
    /// let env = Env::local(1);
    /// let items = Arc::new(vec![1, 2, 3]);
    /// let out = env
    ///     .add_source::<i32>("numbers", 1, move |_| Ok(Box::new(CollectionSource::new(items.clone())) as Box<dyn SourceFunction>))
    ///     .collect();
    /// env.execute("custom-source").unwrap();
    /// assert_eq!(out.take(), vec![1, 2, 3]);
    /// ```
    pub fn add_source<T: Data>(
        &self,
        name: &str,
        parallelism: usize,
        factory: impl Fn(&TaskInfo) -> floe_runtime::Result<Box<dyn SourceFunction>> + Send + Sync + 'static,
    ) -> Stream<T> {
        let f: SourceFactory = Arc::new(factory);
        let node = self.b.borrow_mut().add_node(name, parallelism, NodeKind::Source(f));
        Stream::new(self.b.clone(), node)
    }

    /// A stream of the given values, read by one subtask in order (records have no
    /// timestamp until [`Stream::assign_timestamps`]).
    ///
    /// ```
    /// use floe_dsl::prelude::*;
    /// let env = Env::local(1);
    /// let out = env.from_collection(vec!["a".to_string(), "b".to_string()]).collect();
    /// env.execute("collection").unwrap();
    /// assert_eq!(out.take(), vec!["a", "b"]);
    /// ```
    pub fn from_collection<T: Data + Sync>(&self, items: impl IntoIterator<Item = T>) -> Stream<T> {
        let items = Arc::new(items.into_iter().collect::<Vec<T>>());
        self.add_source("collection", 1, move |_| {
            Ok(Box::new(CollectionSource::new(items.clone())) as Box<dyn SourceFunction>)
        })
    }

    /// A deterministic generator: record `i` is `f(i)` for `i` in `0..count`, spread over
    /// the parallel subtasks, as fast as possible.
    ///
    /// ```
    /// use floe_dsl::prelude::*;
    /// let env = Env::local(2);
    /// let n = env.generate(1000, |i| i).count();
    /// env.execute("generate").unwrap();
    /// assert_eq!(n.get(), 1000);
    /// ```
    pub fn generate<T: Data>(&self, count: u64, f: impl Fn(u64) -> T + Send + Sync + 'static) -> Stream<T> {
        self.generator(Some(count), None, f)
    }

    /// Like [`generate`](Self::generate), at most `events_per_second` in total; `count`
    /// `None` generates forever.
    ///
    /// ```
    /// use floe_dsl::prelude::*;
    /// let env = Env::local(1);
    /// let n = env.generate_with_rate(Some(50), 10_000.0, |i| i).count();
    /// env.execute("rate").unwrap();
    /// assert_eq!(n.get(), 50);
    /// ```
    pub fn generate_with_rate<T: Data>(
        &self,
        count: Option<u64>,
        events_per_second: f64,
        f: impl Fn(u64) -> T + Send + Sync + 'static,
    ) -> Stream<T> {
        if !(events_per_second > 0.0 && events_per_second.is_finite()) {
            self.b.borrow_mut().error(format!(
                "generator rate must be a positive number of events per second, not {events_per_second}"
            ));
        }
        self.generator(count, Some(events_per_second), f)
    }

    fn generator<T: Data>(
        &self,
        count: Option<u64>,
        rate: Option<f64>,
        f: impl Fn(u64) -> T + Send + Sync + 'static,
    ) -> Stream<T> {
        let f: Arc<dyn Fn(u64) -> T + Send + Sync> = Arc::new(f);
        let p = self.config().parallelism;
        self.add_source("generator", p, move |_| {
            let mut g = GeneratorSource::new(count, f.clone());
            if let Some(r) = rate {
                g = g.with_rate(r);
            }
            Ok(Box::new(g) as Box<dyn SourceFunction>)
        })
    }

    /// Reads JSON documents, one per line, into `T`. Files are split into byte ranges that
    /// the parallel subtasks share. A line that does not parse, or is longer than
    /// `--max-record-bytes` (1 MiB by default; it is never held whole), goes to
    /// [`Stream::bad_records`] (with file, line number, byte offset, text and error) or, if
    /// that is not used, to the log; with `--fail-on-bad-input` it fails the job.
    ///
    /// ```
    /// use floe_dsl::prelude::*;
    /// #[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
    /// struct Click { user: u32 }
    /// let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("clicks.jsonl");
    /// std::fs::write(&path, "{\"user\":1}\nnot json\n{\"user\":2}\n").unwrap();
    /// let env = Env::local(2);
    /// let clicks = env.read_json_lines::<Click>(&path);
    /// let users = clicks.map(|c| c.user).collect();
    /// let bad = clicks.bad_records().collect();
    /// env.execute("read").unwrap();
    /// let mut u = users.take();
    /// u.sort();
    /// assert_eq!(u, vec![1, 2]);
    /// let bad = bad.take();
    /// assert_eq!((bad[0].line, bad[0].offset), (2, 11));
    /// ```
    pub fn read_json_lines<T: DeserializeOwned + Data>(&self, path: impl AsRef<Path>) -> Stream<T> {
        self.read_lines(path.as_ref(), LineFormat::JsonLines, "json-lines")
    }

    /// Reads a CSV file with a header row into `T` (fields matched by header name). Quoted
    /// fields may hold delimiters, doubled quotes and line breaks; bad records are handled
    /// as in [`read_json_lines`](Self::read_json_lines).
    ///
    /// ```
    /// use floe_dsl::prelude::*;
    /// #[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
    /// struct Reading { sensor: String, value: f64 }
    /// let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("r.csv");
    /// std::fs::write(&path, "sensor,value\n\"s1, north\nroof\",0.5\ns2,1.5\n").unwrap();
    /// let env = Env::local(1);
    /// let readings = env.read_csv::<Reading>(&path).collect();
    /// env.execute("csv").unwrap();
    /// let readings = readings.take();
    /// assert_eq!(readings.iter().map(|r| r.value).sum::<f64>(), 2.0);
    /// assert!(readings.iter().any(|r| r.sensor == "s1, north\nroof"));
    /// ```
    pub fn read_csv<T: DeserializeOwned + Data>(&self, path: impl AsRef<Path>) -> Stream<T> {
        self.read_lines(
            path.as_ref(),
            LineFormat::Csv {
                has_header: true,
                delimiter: b',',
            },
            "csv",
        )
    }

    fn read_lines<T: DeserializeOwned + Data>(&self, path: &Path, format: LineFormat, kind: &str) -> Stream<T> {
        let paths: Vec<PathBuf> = vec![path.to_path_buf()];
        let config = self.config();
        let errors_tag = Arc::new(AtomicU64::new(0));
        let tag = errors_tag.clone();
        let name = format!("{kind}: {}", path.display());
        let stream = self.add_source(&name, config.parallelism, move |_| {
            let tag = tag.load(std::sync::atomic::Ordering::SeqCst);
            let options = FileSourceOptions {
                fail_on_bad_input: config.fail_on_bad_input,
                errors_tag: (tag != 0).then_some(tag),
                max_record_bytes: config.max_record_bytes,
                ..FileSourceOptions::default()
            };
            Ok(Box::new(FileSource::<T>::new(paths.clone(), format.clone(), options)) as Box<dyn SourceFunction>)
        });
        stream.set_errors_tag(errors_tag);
        stream
    }

    fn execution_config(&self) -> ExecutionConfig {
        let c = self.config();
        ExecutionConfig {
            batch_size: c.batch_size,
            channel_capacity: c.channel_capacity,
            chaining: c.chaining,
            max_parallelism: c.max_parallelism,
            clock: self.clock.clone(),
            checkpoints: c.checkpoint_dir.map(|dir| {
                let interval = (c.checkpoint_interval_ms > 0).then(|| Duration::from_millis(c.checkpoint_interval_ms));
                CheckpointConfig {
                    retain: c.checkpoint_retain,
                    ..CheckpointConfig::new(dir, interval)
                }
            }),
            restore_from: c.from_savepoint,
            allow_fresh_start: c.allow_fresh_start,
            allow_non_restored_state: c.allow_non_restored_state,
            state_backend: c.state_backend,
            placement: None,
            max_frame_bytes: c.max_frame_bytes,
        }
    }

    /// Runs the job to its end (bounded sources exhausted, every window fired). With
    /// `--savepoint-dir`, SIGUSR1 writes a savepoint there and SIGTERM or Ctrl-C stops the
    /// job with one (resume with `--from-savepoint`).
    ///
    /// ```
    /// use floe_dsl::prelude::*;
    /// let env = Env::local(2);
    /// env.generate(100, |i| i).count();
    /// let result = env.execute("count").unwrap();
    /// assert_eq!(result.job_name, "count");
    /// ```
    pub fn execute(&self, name: &str) -> Result<JobResult> {
        match crate::job::mode() {
            crate::job::Mode::Run => {}
            crate::job::Mode::Graph { dot } => {
                let g = self.graph(name)?;
                if *dot {
                    println!("{}", g.to_dot());
                } else {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&g).map_err(|e| DslError::Build(e.to_string()))?
                    );
                }
                std::process::exit(0);
            }
            crate::job::Mode::Worker(spec) => {
                let worker = floe_cluster::worker::Worker::join((**spec).clone())?;
                let described = serde_json::to_value(self.graph(name)?).ok();
                let handle = self.execute_placed(name, worker.placement())?;
                return Ok(worker.run(handle, described)?);
            }
        }
        let handle = self.execute_async(name)?;
        let Some(dir) = self.config().savepoint_dir else {
            return Ok(handle.join()?);
        };
        let mut signals = Signals::new([SIGTERM, SIGINT, SIGUSR1])
            .map_err(|e| DslError::Config(format!("cannot install signal handlers for --savepoint-dir: {e}")))?;
        let closer = signals.handle();
        let control = handle.control();
        let listener = std::thread::spawn(move || {
            for signal in signals.forever() {
                if signal == SIGUSR1 {
                    tracing::info!(dir = %dir.display(), "SIGUSR1: writing a savepoint");
                    control.trigger_savepoint(&dir);
                } else {
                    tracing::info!(dir = %dir.display(), "stopping with a savepoint");
                    control.stop_with_savepoint(&dir);
                }
            }
        });
        let result = handle.join();
        closer.close();
        let _ = listener.join();
        Ok(result?)
    }

    /// The job graph as it would run (operators, parallelism, chains, edges), to print as
    /// JSON (`serde_json::to_string(&g)`) or Graphviz DOT (`g.to_dot()`), without running it.
    ///
    /// ```
    /// use floe_dsl::prelude::*;
    /// let env = Env::local(2);
    /// env.from_collection(vec![1u32, 2]).map(|x| x + 1).key_by(|x| *x).reduce(|a, b| a + b).print();
    /// let g = env.graph("plan").unwrap();
    /// assert_eq!(g.nodes.len(), 4);
    /// assert!(g.edges.iter().any(|e| e.ship == "hash" && !e.chained));
    /// assert!(g.edges.iter().any(|e| e.chained), "map is chained to its source");
    /// assert!(g.to_dot().contains("->"));
    /// assert!(serde_json::to_string(&g).unwrap().contains("\"parallelism\":2"));
    /// ```
    pub fn graph(&self, name: &str) -> Result<floe_runtime::describe::GraphDescription> {
        let graph = self.b.borrow().build(name).map_err(DslError::Build)?;
        Ok(floe_runtime::describe::describe(&graph, &self.execution_config()))
    }

    /// Starts this worker's part of the job spread over several workers as `placement`
    /// says (what `worker` mode does; every worker builds the same job). Needs a checkpoint
    /// directory all workers share.
    pub fn execute_placed(&self, name: &str, placement: Arc<floe_runtime::Placement>) -> Result<JobHandle> {
        let graph = self.b.borrow().build(name).map_err(DslError::Build)?;
        let mut config = self.execution_config();
        config.placement = Some(placement);
        Ok(floe_runtime::spawn(&graph, &config)?)
    }

    /// Starts the job and returns a handle to checkpoint, stop or cancel it.
    ///
    /// ```
    /// use floe_dsl::prelude::*;
    /// let env = Env::local(1);
    /// let n = env.generate_with_rate(None, 1_000.0, |i| i).count(); // unbounded
    /// let job = env.execute_async("forever").unwrap();
    /// job.trigger_checkpoint();
    /// while n.get() == 0 {
    ///     std::thread::yield_now();
    /// }
    /// job.stop(); // ends the sources as if their input had ended
    /// job.join().unwrap();
    /// assert!(n.get() >= 1);
    /// ```
    pub fn execute_async(&self, name: &str) -> Result<JobHandle> {
        let graph = self.b.borrow().build(name).map_err(DslError::Build)?;
        Ok(floe_runtime::spawn(&graph, &self.execution_config())?)
    }
}

/// Starts `tracing` output on stderr, filtered by `RUST_LOG` (default `info`); does nothing
/// if a subscriber is already installed.
///
/// ```
/// floe_dsl::init_logging();
/// floe_dsl::init_logging(); // a second call does nothing
/// ```
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
