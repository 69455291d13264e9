//! `FLOE_FAILPOINTS`: parsing the spec into rules, and each rule's hit counter.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::FAILPOINTS;

/// What a rule does when its failpoint is hit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Nothing (hits are still counted).
    Off,
    /// SIGKILL the process at hit number `at` (from 1).
    Kill {
        /// The hit that kills.
        at: u64,
    },
    /// Block the hitting thread for good at hit number `at` (from 1).
    Pause {
        /// The hit that blocks.
        at: u64,
    },
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Off => f.write_str("off"),
            Action::Kill { at } => write!(f, "kill@{at}"),
            Action::Pause { at } => write!(f, "pause@{at}"),
        }
    }
}

/// One `name[qualifier]=action` of the spec, with the hits it has counted.
#[derive(Debug)]
pub struct Rule {
    /// The failpoint's name.
    pub name: &'static str,
    /// Only hits with this qualifier count, if given.
    pub qualifier: Option<String>,
    /// What to do.
    pub action: Action,
    hits: AtomicU64,
}

impl Rule {
    /// Whether a hit of failpoint `name` with `qualifier` counts for this rule.
    pub fn matches(&self, name: &str, qualifier: Option<&str>) -> bool {
        self.name == name && self.qualifier.as_deref().is_none_or(|q| Some(q) == qualifier)
    }

    /// Counts a hit; returns its number and the action if it is due now (`Off` never is).
    pub fn count(&self) -> (u64, Option<Action>) {
        let n = self.hits.fetch_add(1, Ordering::SeqCst) + 1;
        let due = match self.action {
            Action::Off => false,
            Action::Kill { at } | Action::Pause { at } => n == at,
        };
        (n, due.then_some(self.action))
    }

    /// Hits counted so far.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
    }

    /// `name` or `name[qualifier]`.
    pub fn target(&self) -> String {
        match &self.qualifier {
            Some(q) => format!("{}[{q}]", self.name),
            None => self.name.to_string(),
        }
    }
}

/// What is wrong with a `FLOE_FAILPOINTS` spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecError(pub String);

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} is not a valid failpoint spec: {}", crate::ENV, self.0)
    }
}

impl std::error::Error for SpecError {}

fn known() -> String {
    FAILPOINTS
        .iter()
        .map(|f| match f.qualifier {
            Some(q) => format!("{}[{q}]", f.name),
            None => f.name.to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn action(text: &str) -> Result<Action, String> {
    let (word, at) = match text.split_once('@') {
        Some((w, n)) => {
            let at: u64 = n
                .trim()
                .parse()
                .map_err(|_| format!("`{text}`: the hit after @ must be a number from 1"))?;
            if at == 0 {
                return Err(format!("`{text}`: hits count from 1"));
            }
            (w.trim(), Some(at))
        }
        None => (text, None),
    };
    match (word, at) {
        ("off", None) => Ok(Action::Off),
        ("kill", at) => Ok(Action::Kill { at: at.unwrap_or(1) }),
        ("pause", at) => Ok(Action::Pause { at: at.unwrap_or(1) }),
        ("off", Some(_)) => Err(format!("`{text}`: off takes no hit number")),
        _ => Err(format!("unknown action `{text}` (kill, kill@N, pause, pause@N or off)")),
    }
}

fn rule(text: &str) -> Result<Rule, String> {
    let (target, act) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}` is not name=action"))?;
    let target = target.trim();
    let (name, qualifier) = match target.split_once('[') {
        Some((name, rest)) => {
            let q = rest
                .strip_suffix(']')
                .filter(|q| !q.is_empty() && !q.contains(['[', ']']))
                .ok_or_else(|| format!("`{target}`: a qualifier is written name[qualifier]"))?;
            (name.trim(), Some(q.to_string()))
        }
        None => (target, None),
    };
    let point = crate::find(name).ok_or_else(|| format!("no failpoint `{name}` (there are: {})", known()))?;
    if qualifier.is_some() && point.qualifier.is_none() {
        return Err(format!("failpoint `{name}` takes no qualifier"));
    }
    Ok(Rule {
        name: point.name,
        qualifier,
        action: action(act.trim())?,
        hits: AtomicU64::new(0),
    })
}

/// Parses a spec, `name=action[;name=action...]` (see the [crate docs](crate)); blank
/// entries are ignored, and a failpoint (with its qualifier) may have one rule only.
///
/// ```
/// use floe_failpoints::{parse, Action};
/// let rules = parse("checkpoint.after-manifest=kill@3; kafka.before-commit[dlq]=pause").unwrap();
/// assert_eq!(rules[0].action, Action::Kill { at: 3 });
/// assert_eq!(rules[1].target(), "kafka.before-commit[dlq]");
/// assert!(parse("checkpoint.no-such-phase=kill").is_err());
/// ```
pub fn parse(spec: &str) -> Result<Vec<Rule>, SpecError> {
    let mut rules: Vec<Rule> = Vec::new();
    for text in spec.split(';').map(str::trim).filter(|t| !t.is_empty()) {
        let r = rule(text).map_err(SpecError)?;
        if rules.iter().any(|o| o.name == r.name && o.qualifier == r.qualifier) {
            return Err(SpecError(format!("`{}` is given twice", r.target())));
        }
        rules.push(r);
    }
    Ok(rules)
}
