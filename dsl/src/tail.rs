//! `floe tail`: follow a Kafka topic like `tail -f`, printing its records as they arrive.
//!
//! [`TailArgs`] are the command's arguments (a clap `Args` struct the `floe` binary embeds as
//! its `tail` subcommand) and [`run`] does the work, writing records to any [`Write`]r, so
//! that it can be tested and embedded.
//!
//! - Where it starts: at the end of every partition (only records produced after it started
//!   are shown), at the beginning with `--from-beginning`, at `--offset N` of the partitions
//!   chosen with `--partition` (a negative `N`: that many records before the end), or, with
//!   `--group G`, at the group's committed offsets (falling back to the end, or the beginning
//!   with `--from-beginning`, where the group has none).
//! - Partitions are assigned explicitly from the topic's metadata (no group rebalancing);
//!   partitions added to the topic later are followed from their beginning, unless
//!   `--partition` chose the partitions.
//! - Without `--group` nothing is committed (a throwaway group id, `enable.auto.commit=false`);
//!   with it, offsets are committed as records are printed and once more at exit.
//! - A topic that does not exist yet is waited for, with a note on stderr, and then shown
//!   from its beginning (all of it is new); `--timeout` gives up (as it does on brokers that
//!   do not answer: after 10 s without it).
//! - Formats: `pretty` (for people), `json` (one object per line, for `jq` and scripts) and
//!   `raw` (the value bytes and a newline); see [`Format`].
//! - It ends with [`Ended`]: after `--max` records, on SIGINT / SIGTERM (a second one kills
//!   the process) or when the reader of its output went away (a broken pipe, as in
//!   `floe tail t | head -3`): all three are normal ends. Output is flushed whenever no more
//!   records are waiting and before returning.
//!
//! Notes (what it follows, what it waits for) and warnings of the Kafka client go to stderr,
//! never to the output; `--quiet` silences the notes. Values of secret properties (`-X
//! sasl.password=…`) are never printed.

mod follow;
mod render;

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, ValueEnum};
use floe_operators::kafka::KafkaConfig;

/// The arguments of `floe tail`.
#[derive(Clone, Debug, Args)]
#[command(
    about = "Follow a Kafka topic like `tail -f`: print its records as they arrive",
    long_about = "Follow a Kafka topic like `tail -f`: print its records as they arrive.\n\n\
        Starts at the end of the topic (only records produced from now on), or where \
        --from-beginning, --offset or --group say. Stops after --max records, on Ctrl-C, or \
        when the reader of its output goes away (`floe tail t | head -3`), with exit code 0. \
        Notes about what it follows go to stderr.",
    after_help = "Examples:\n  \
        floe tail alerts\n  \
        floe tail alerts --from-beginning --max 10 --format json | jq .value\n  \
        floe tail payments --partition 2 --offset -5 --headers\n  \
        floe tail alerts --brokers kafka:9092 -X security.protocol=SASL_PLAINTEXT \\\n    \
        -X sasl.mechanism=PLAIN -X sasl.username=me -X sasl.password=secret"
)]
pub struct TailArgs {
    /// The topic to follow.
    pub topic: String,

    /// Bootstrap servers: host:port, comma-separated.
    #[arg(
        long,
        env = "FLOE_BROKERS",
        hide_env_values = true,
        default_value = "127.0.0.1:9092",
        value_name = "HOST:PORT,.."
    )]
    pub brokers: String,

    /// Start at the oldest record of each partition instead of the end.
    #[arg(long, conflicts_with = "offset")]
    pub from_beginning: bool,

    /// Follow only this partition (repeat the flag, or separate partitions with commas).
    #[arg(
        short = 'p',
        long = "partition",
        value_name = "N",
        value_delimiter = ',',
        value_parser = clap::value_parser!(i32).range(0..)
    )]
    pub partitions: Vec<i32>,

    /// Start at this offset of the partitions chosen with --partition; negative: that many
    /// records before their end (-1: the last record).
    #[arg(long, value_name = "N", requires = "partitions", allow_negative_numbers = true)]
    pub offset: Option<i64>,

    /// Exit (with code 0) after printing this many records.
    #[arg(
        short = 'n',
        long = "max",
        value_name = "N",
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub max: Option<u64>,

    /// Consume as this consumer group: start at its committed offsets and commit as records
    /// are printed. Without it nothing is committed.
    #[arg(short = 'g', long, value_name = "GROUP")]
    pub group: Option<String>,

    /// Whether records of open and aborted transactions are shown (isolation.level).
    #[arg(long, value_enum, value_name = "LEVEL", default_value_t = Isolation::ReadCommitted)]
    pub isolation: Isolation,

    /// How records are printed.
    #[arg(short = 'f', long, value_enum, value_name = "FORMAT", default_value_t = Format::Pretty)]
    pub format: Format,

    /// Show record headers in the pretty format (the json format always has them).
    #[arg(long)]
    pub headers: bool,

    /// A librdkafka property, passed through to the client (repeatable), e.g.
    /// -X security.protocol=SSL. It wins over floe's own settings.
    #[arg(short = 'X', long = "property", value_name = "KEY=VALUE", value_parser = parse_property)]
    pub properties: Vec<String>,

    /// Give up (exit code 1) when the topic does not exist, or the brokers do not answer,
    /// within this long (e.g. 30s, 500ms, 2m). Default: wait for the topic as long as it
    /// takes, and for the brokers 10s.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Option<Duration>,

    /// No notes on stderr about what is followed or waited for (errors are still shown).
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

/// How `floe tail` prints a record.
///
/// - `pretty`: a line `partition P, offset O, <ISO-8601 UTC time> (<ms since the epoch>)`,
///   then indented `key: …`, `value: …` and, with `--headers`, one `header NAME: VALUE` line
///   per header. Bytes are shown as UTF-8; control characters are escaped (`\n`, `\u{1b}`)
///   and bytes that are not UTF-8 shown as `\xNN`, so that one record never breaks the
///   layout. A missing key shows as `(none)`, a null value or header value as `(null)`.
/// - `json`: one JSON object per line, `{"topic", "partition", "offset", "timestamp" (ms, or
///   null), "key", "value", "headers"}`. The value is embedded as JSON when it is valid JSON
///   (compacted, keys in their order), else it is a string; the key is a string. A key or
///   value that is not UTF-8 is a base64 string (standard alphabet, padded) and the object
///   then says so with `"key_encoding": "base64"` / `"value_encoding": "base64"`. Headers are
///   a list of `{"key", "value"}` (value a string, null, or base64 with
///   `"encoding": "base64"`), in record order: names may repeat.
/// - `raw`: the value's bytes as they are, then a newline (a null value: just the newline).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// For people: partition, offset, time, key, value (and headers).
    #[default]
    Pretty,
    /// One JSON object per line.
    Json,
    /// The value bytes and a newline.
    Raw,
}

/// The consumer's `isolation.level`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Isolation {
    /// Only records of committed transactions (and non-transactional ones), like Kafka
    /// consumers of transactional output.
    #[default]
    ReadCommitted,
    /// Every record, including those of open and aborted transactions.
    ReadUncommitted,
}

impl Isolation {
    /// The librdkafka value of `isolation.level`.
    pub fn as_kafka(self) -> &'static str {
        match self {
            Isolation::ReadCommitted => "read_committed",
            Isolation::ReadUncommitted => "read_uncommitted",
        }
    }
}

/// Why [`run`] returned normally.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// It printed the `--max` records asked for.
    MaxRecords,
    /// SIGINT or SIGTERM (Ctrl-C), or the stop flag of [`run_until`].
    Stopped,
    /// The reader of the output went away (a broken pipe).
    OutputClosed,
}

/// What went wrong in `floe tail`; each message says what to change.
#[derive(Debug, thiserror::Error)]
pub enum TailError {
    /// An argument is wrong (checked by clap already when run from the command line).
    #[error("{0}")]
    Usage(String),
    /// The Kafka client refused the configuration (a `-X` property, most likely).
    #[error("the Kafka client refused the configuration: {0}; change or remove that property")]
    Config(String),
    /// The brokers did not answer.
    #[error("no answer from the brokers at {brokers} within {:.1}s ({error}); check --brokers (or FLOE_BROKERS) and the -X security settings", .waited.as_secs_f64())]
    Brokers {
        /// The bootstrap servers.
        brokers: String,
        /// How long it waited.
        waited: Duration,
        /// The client's last error.
        error: String,
    },
    /// The topic did not appear within `--timeout`.
    #[error("topic `{topic}` does not exist (waited {:.1}s); check the name, or create it first", .waited.as_secs_f64())]
    NoTopic {
        /// The topic.
        topic: String,
        /// How long it waited.
        waited: Duration,
    },
    /// A partition chosen with `--partition` is not in the topic.
    #[error("topic `{topic}` has no partition {partition} (it has {count}: 0 to {last}); change --partition", last = .count - 1)]
    NoPartition {
        /// The topic.
        topic: String,
        /// The partition asked for.
        partition: i32,
        /// How many partitions the topic has.
        count: usize,
    },
    /// The Kafka client failed for good while following.
    #[error("the Kafka client failed: {0}")]
    Kafka(String),
    /// Writing the output failed (other than by a broken pipe, which is a normal end).
    #[error("cannot write the output: {0}")]
    Output(std::io::Error),
    /// The SIGINT / SIGTERM handler could not be installed.
    #[error("cannot handle Ctrl-C: {0}")]
    Signals(std::io::Error),
}

/// Follows `args.topic`, writing records to `out`, until `--max` records, SIGINT / SIGTERM
/// or a broken pipe (see the [module documentation](self)).
///
/// It installs SIGINT and SIGTERM handlers for as long as it runs: the first signal ends it
/// normally ([`Ended::Stopped`]), a second one exits the process with code 1, so that a
/// stuck client can still be interrupted. Use [`run_until`] to stop it another way.
///
/// ```no_run
/// use clap::Parser;
/// use floe_dsl::tail::{run, TailArgs};
///
/// #[derive(Parser)]
/// struct Cli {
///     #[command(flatten)]
///     tail: TailArgs,
/// }
/// let cli = Cli::parse_from(["tail", "alerts", "--from-beginning", "--max", "3", "--format", "json"]);
/// let mut out = Vec::new();
/// run(&cli.tail, &mut out).unwrap();
/// ```
pub fn run(args: &TailArgs, out: &mut dyn Write) -> Result<Ended, TailError> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    use signal_hook::flag;
    let stop = Arc::new(AtomicBool::new(false));
    let mut ids = Vec::new();
    for signal in [SIGINT, SIGTERM] {
        // Registered first, so it runs first: exits on a signal once `stop` is already set.
        ids.push(flag::register_conditional_shutdown(signal, 1, Arc::clone(&stop)).map_err(TailError::Signals)?);
        ids.push(flag::register(signal, Arc::clone(&stop)).map_err(TailError::Signals)?);
    }
    let result = run_until(args, out, &stop);
    for id in ids {
        signal_hook::low_level::unregister(id);
    }
    result
}

/// [`run`] without signal handling: it stops when `stop` becomes true (checked at least
/// every 100 ms).
pub fn run_until(args: &TailArgs, out: &mut dyn Write, stop: &AtomicBool) -> Result<Ended, TailError> {
    if args.offset.is_some() && args.partitions.is_empty() {
        return Err(TailError::Usage("--offset needs --partition".into()));
    }
    if args.offset.is_some() && args.from_beginning {
        return Err(TailError::Usage(
            "--offset and --from-beginning exclude each other".into(),
        ));
    }
    let config = KafkaConfig::new(args.brokers.clone())
        .with_properties(args.properties.iter().map(String::as_str))
        .map_err(|e| TailError::Usage(format!("{e} (change -X / --property)")))?;
    let ended = follow::follow(args, &config, out, stop);
    // Flush on every way out; a reader gone away is a normal end.
    let flushed = out.flush();
    match (ended, flushed) {
        (Err(e), _) => Err(e),
        (Ok(ended), Ok(())) => Ok(ended),
        (Ok(_), Err(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(Ended::OutputClosed),
        (Ok(_), Err(e)) => Err(TailError::Output(e)),
    }
}

/// Whether `stop` was set.
fn stopped(stop: &AtomicBool) -> bool {
    stop.load(Ordering::Relaxed)
}

/// Checks a `-X` / `--property` value: `key=value` with a non-empty key.
fn parse_property(s: &str) -> Result<String, String> {
    KafkaConfig::new("").with_properties([s])?;
    Ok(s.to_string())
}

/// Parses a duration: a number of seconds (`30`, `1.5`) or a number with a unit (`500ms`,
/// `30s`, `2m`, `1h`).
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (write e.g. 30s, 500ms, 2m)"))?;
    let seconds = match unit.trim() {
        "ms" => number / 1000.0,
        "" | "s" => number,
        "m" | "min" => number * 60.0,
        "h" => number * 3600.0,
        other => return Err(format!("unknown unit `{other}` in `{s}` (use ms, s, m or h)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("`{s}` is not a duration (write e.g. 30s, 500ms, 2m)"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        tail: TailArgs,
    }

    fn parse(args: &[&str]) -> Result<TailArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("tail").chain(args.iter().copied())).map(|c| c.tail)
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("3 days").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn arguments() {
        let a = parse(&["t", "-p", "1,2", "--partition", "4", "--offset", "-3", "-X", "a=b=c"]).unwrap();
        assert_eq!(a.partitions, vec![1, 2, 4]);
        assert_eq!(a.offset, Some(-3));
        assert_eq!(a.properties, vec!["a=b=c".to_string()]);
        assert_eq!((a.format, a.isolation), (Format::Pretty, Isolation::ReadCommitted));
        assert_eq!(
            parse(&["t", "--isolation", "read-uncommitted"])
                .unwrap()
                .isolation
                .as_kafka(),
            "read_uncommitted"
        );
        for bad in [
            &["t", "--offset", "3"][..],
            &["t", "-p", "0", "--offset", "3", "--from-beginning"],
            &["t", "-X", "novalue"],
            &["t", "--format", "xml"],
            &["t", "--partition", "-1"],
            &["t", "--max", "0"],
            &["t", "--isolation", "serializable"],
        ] {
            let e = parse(bad).err().unwrap_or_else(|| panic!("{bad:?} parsed"));
            assert_eq!(e.exit_code(), 2, "{bad:?}");
        }
    }

    #[test]
    fn run_refuses_what_clap_would() {
        let mut a = parse(&["t"]).unwrap();
        a.offset = Some(1);
        let stop = AtomicBool::new(true);
        assert!(matches!(
            run_until(&a, &mut Vec::new(), &stop),
            Err(TailError::Usage(_))
        ));
        a.offset = None;
        a.properties = vec!["nokey".into()];
        let e = run_until(&a, &mut Vec::new(), &stop).unwrap_err();
        assert!(e.to_string().contains("-X"), "{e}");
    }
}
