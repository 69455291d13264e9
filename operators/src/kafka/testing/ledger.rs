//! The exactly-once ledger: every expected input explained by exactly one committed
//! output, and every committed output explained by expected inputs. Inputs are named by
//! their own content (an id the test carried from the input into the output), never by the
//! sink's bookkeeping, and nothing is deduplicated: an input explained twice is reported
//! with the positions of both copies.
//!
//! ```
//! use floe_operators::kafka::testing::{check_exactly_once, CommittedRecord};
//! let out = |offset: i64, v: &str| CommittedRecord {
//!     partition: 0, offset, timestamp: 0, key: None,
//!     value: Some(v.as_bytes().to_vec()), headers: vec![], transaction: None,
//! };
//! let explain = |r: &CommittedRecord| Ok(vec![r.value_str()]);
//! let expected = ["a", "b"].map(String::from);
//! assert!(check_exactly_once("t", expected.clone(), &[out(0, "a"), out(1, "b")], explain).is_ok());
//! let err = check_exactly_once("t", expected, &[out(0, "a"), out(1, "a")], explain).unwrap_err();
//! assert!(err.to_string().contains("input \"a\" is explained 2 times"));
//! assert!(err.to_string().contains("input \"b\" is missing"));
//! ```

use std::collections::BTreeMap;
use std::fmt::{self, Debug, Write as _};

use crate::kafka::log::{CommittedRead, CommittedRecord, Position};

/// How many of each kind of violation a message lists.
const SHOWN: usize = 20;

/// One input whose outputs are not exactly what was expected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Miscount<I> {
    /// The input.
    pub input: I,
    /// How many times it should be explained (how often it is in the expected inputs).
    pub expected: usize,
    /// Where the outputs that explain it are (their number is how often it is).
    pub found: Vec<Position>,
}

/// An output that could not be read as explaining any input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unreadable {
    /// Where it is.
    pub at: Position,
    /// Why.
    pub reason: String,
}

/// What a ledger check found wrong, with enough to say which input is missing or doubled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LedgerViolations<I> {
    /// The topic checked.
    pub topic: String,
    /// Inputs explained fewer times than expected.
    pub missing: Vec<Miscount<I>>,
    /// Inputs explained more times than expected.
    pub doubled: Vec<Miscount<I>>,
    /// Outputs explaining an input that was not expected at all.
    pub unexpected: Vec<Miscount<I>>,
    /// Outputs that explain nothing.
    pub unreadable: Vec<Unreadable>,
    /// How many outputs were read.
    pub outputs: usize,
    /// How many inputs were expected.
    pub inputs: usize,
}

fn positions(found: &[Position]) -> String {
    let shown: Vec<String> = found.iter().map(Position::to_string).collect();
    shown.join(", ")
}

fn times(n: usize) -> String {
    match n {
        1 => "once".into(),
        n => format!("{n} times"),
    }
}

impl<I: Debug> fmt::Display for LedgerViolations<I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "exactly-once violated in `{}` ({} inputs expected, {} committed outputs): {} missing, \
             {} doubled, {} unexpected, {} unreadable",
            self.topic,
            self.inputs,
            self.outputs,
            self.missing.len(),
            self.doubled.len(),
            self.unexpected.len(),
            self.unreadable.len()
        )?;
        let more = |f: &mut fmt::Formatter<'_>, n: usize| {
            if n > SHOWN {
                write!(f, "\n  ... and {} more", n - SHOWN)
            } else {
                Ok(())
            }
        };
        for m in self.missing.iter().take(SHOWN) {
            write!(
                f,
                "\n  input {:?} is missing: expected {}, ",
                m.input,
                times(m.expected)
            )?;
            match m.found.len() {
                0 => write!(f, "found in no committed output")?,
                _ => write!(f, "found {} at {}", times(m.found.len()), positions(&m.found))?,
            }
        }
        more(f, self.missing.len())?;
        for m in self.doubled.iter().take(SHOWN) {
            write!(
                f,
                "\n  input {:?} is explained {} (expected {}): at {}",
                m.input,
                times(m.found.len()),
                times(m.expected),
                positions(&m.found)
            )?;
        }
        more(f, self.doubled.len())?;
        for m in self.unexpected.iter().take(SHOWN) {
            write!(
                f,
                "\n  input {:?} was never written but is explained {}: at {}",
                m.input,
                times(m.found.len()),
                positions(&m.found)
            )?;
        }
        more(f, self.unexpected.len())?;
        for u in self.unreadable.iter().take(SHOWN) {
            write!(f, "\n  the output at {} explains no input: {}", u.at, u.reason)?;
        }
        more(f, self.unreadable.len())
    }
}

impl<I: Debug> std::error::Error for LedgerViolations<I> {}

/// The ledger of one check: expected inputs (a multiset) and the outputs that explain them.
#[derive(Debug)]
pub struct Ledger<I> {
    topic: String,
    expected: BTreeMap<I, usize>,
    inputs: usize,
    found: BTreeMap<I, Vec<Position>>,
    unreadable: Vec<Unreadable>,
    outputs: usize,
}

impl<I: Ord + Clone + Debug> Ledger<I> {
    /// A ledger for output topic `topic` expecting each of `expected` (an input listed
    /// twice must be explained twice).
    pub fn new(topic: &str, expected: impl IntoIterator<Item = I>) -> Self {
        let mut counts = BTreeMap::new();
        let mut inputs = 0;
        for i in expected {
            *counts.entry(i).or_insert(0) += 1;
            inputs += 1;
        }
        Ledger {
            topic: topic.to_string(),
            expected: counts,
            inputs,
            found: BTreeMap::new(),
            unreadable: Vec::new(),
            outputs: 0,
        }
    }

    /// Records the output at `at` as explaining `inputs` (an output may stand for several
    /// inputs; one that stands for none is [`unreadable`](Self::unreadable)).
    pub fn explain(&mut self, at: Position, inputs: impl IntoIterator<Item = I>) {
        self.outputs += 1;
        let mut any = false;
        for i in inputs {
            any = true;
            self.found.entry(i).or_default().push(at);
        }
        if !any {
            self.unreadable.push(Unreadable {
                at,
                reason: "it names no input".into(),
            });
        }
    }

    /// Records the output at `at` as explaining nothing, for `reason`.
    pub fn unreadable(&mut self, at: Position, reason: impl Into<String>) {
        self.outputs += 1;
        self.unreadable.push(Unreadable {
            at,
            reason: reason.into(),
        });
    }

    /// The verdict: the number of outputs if every input is explained exactly as often as
    /// expected and every output by expected inputs, else everything that is not.
    pub fn check(self) -> Result<usize, Box<LedgerViolations<I>>> {
        let mut v = LedgerViolations {
            topic: self.topic,
            missing: Vec::new(),
            doubled: Vec::new(),
            unexpected: Vec::new(),
            unreadable: self.unreadable,
            outputs: self.outputs,
            inputs: self.inputs,
        };
        let mut found = self.found;
        for (input, expected) in self.expected {
            let at = found.remove(&input).unwrap_or_default();
            let m = Miscount {
                input,
                expected,
                found: at,
            };
            match m.found.len().cmp(&expected) {
                std::cmp::Ordering::Less => v.missing.push(m),
                std::cmp::Ordering::Greater => v.doubled.push(m),
                std::cmp::Ordering::Equal => {}
            }
        }
        v.unexpected = found
            .into_iter()
            .map(|(input, found)| Miscount {
                input,
                expected: 0,
                found,
            })
            .collect();
        if v.missing.is_empty() && v.doubled.is_empty() && v.unexpected.is_empty() && v.unreadable.is_empty() {
            Ok(v.outputs)
        } else {
            Err(Box::new(v))
        }
    }
}

/// Checks that the committed `outputs` of `topic` explain each of `expected` exactly once
/// (as often as it is listed) and nothing else, where `explain` names the inputs an output
/// stands for (an error: the output is unreadable). Returns the number of outputs.
pub fn check_exactly_once<I: Ord + Clone + Debug>(
    topic: &str,
    expected: impl IntoIterator<Item = I>,
    outputs: &[CommittedRecord],
    mut explain: impl FnMut(&CommittedRecord) -> Result<Vec<I>, String>,
) -> Result<usize, Box<LedgerViolations<I>>> {
    let mut ledger = Ledger::new(topic, expected);
    for r in outputs {
        match explain(r) {
            Ok(inputs) => ledger.explain(r.position(), inputs),
            Err(reason) => ledger.unreadable(r.position(), reason),
        }
    }
    ledger.check()
}

/// A short description of a read, for messages: its counts of what was left out.
pub fn describe(read: &CommittedRead) -> String {
    let mut s = format!(
        "{} committed records, {} commit and {} abort markers, {} aborted records left out",
        read.records.len(),
        read.commits,
        read.aborts,
        read.aborted
    );
    let open: usize = read.unresolved.iter().map(|u| u.records).sum();
    if open > 0 {
        let _ = write!(
            s,
            ", {open} records in {} transactions without a marker left out",
            read.unresolved.len()
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(offset: i64) -> Position {
        Position { partition: 0, offset }
    }

    #[test]
    fn exact_outputs_pass_and_report_their_number() {
        let mut l = Ledger::new("t", [1, 2, 3]);
        l.explain(at(0), [2]);
        l.explain(at(1), [1, 3]);
        assert_eq!(l.check(), Ok(2));
    }

    #[test]
    fn missing_doubled_unexpected_and_unreadable_are_each_named() {
        let mut l = Ledger::new("out", [1, 2, 3, 4, 4]);
        l.explain(at(0), [1]);
        l.explain(at(7), [1]);
        l.explain(at(8), [4]);
        l.explain(at(9), [9]);
        l.unreadable(at(10), "not JSON");
        l.explain(at(11), Vec::<i32>::new());
        let v = l.check().unwrap_err();
        assert_eq!(v.missing.iter().map(|m| m.input).collect::<Vec<_>>(), vec![2, 3, 4]);
        assert_eq!(v.doubled.len(), 1);
        assert_eq!(v.doubled[0].found, vec![at(0), at(7)]);
        assert_eq!(v.unexpected[0].input, 9);
        assert_eq!(v.unreadable.len(), 2);
        let msg = v.to_string();
        for needle in [
            "exactly-once violated in `out` (5 inputs expected, 6 committed outputs): 3 missing, 1 doubled, 1 unexpected, 2 unreadable",
            "input 2 is missing: expected once, found in no committed output",
            "input 4 is missing: expected 2 times, found once at partition 0 offset 8",
            "input 1 is explained 2 times (expected once): at partition 0 offset 0, partition 0 offset 7",
            "input 9 was never written but is explained once: at partition 0 offset 9",
            "the output at partition 0 offset 10 explains no input: not JSON",
            "the output at partition 0 offset 11 explains no input: it names no input",
        ] {
            assert!(msg.contains(needle), "`{needle}` not in:\n{msg}");
        }
    }

    #[test]
    fn long_lists_are_cut_with_a_count() {
        let l = Ledger::new("t", 0..100);
        let msg = l.check().unwrap_err().to_string();
        assert!(msg.contains("input 19 is missing"), "{msg}");
        assert!(!msg.contains("input 20 is missing"), "{msg}");
        assert!(msg.contains("... and 80 more"), "{msg}");
    }
}
