use std::collections::BTreeSet;
use std::path::Path;

use super::*;

#[test]
fn specs_parse_into_rules() {
    let rules =
        parse(" checkpoint.trigger=kill ;task.after-notify = kill@4;restore.load=pause@2;;file.after-commit=off;")
            .unwrap();
    let got: Vec<(String, Action)> = rules.iter().map(|r| (r.target(), r.action)).collect();
    assert_eq!(
        got,
        vec![
            ("checkpoint.trigger".into(), Action::Kill { at: 1 }),
            ("task.after-notify".into(), Action::Kill { at: 4 }),
            ("restore.load".into(), Action::Pause { at: 2 }),
            ("file.after-commit".into(), Action::Off),
        ]
    );
    let q = parse("kafka.after-commit[payments-dlq]=kill@2").unwrap();
    assert_eq!(
        (q[0].name, q[0].qualifier.as_deref()),
        ("kafka.after-commit", Some("payments-dlq"))
    );
    assert!(parse("").unwrap().is_empty(), "an empty spec sets nothing");
    assert!(parse(" ; ").unwrap().is_empty());
}

#[test]
fn bad_specs_say_what_is_wrong() {
    for (spec, says) in [
        ("checkpoint.trigger", "is not name=action"),
        ("checkpoint.trigerr=kill", "no failpoint `checkpoint.trigerr`"),
        ("checkpoint.trigger=explode", "unknown action `explode`"),
        ("checkpoint.trigger=kill@0", "hits count from 1"),
        ("checkpoint.trigger=kill@x", "must be a number"),
        ("checkpoint.trigger=kill@-1", "must be a number"),
        ("checkpoint.trigger=off@2", "off takes no hit number"),
        ("checkpoint.trigger[x]=kill", "takes no qualifier"),
        ("kafka.before-commit[]=kill", "name[qualifier]"),
        ("kafka.before-commit[a=kill", "name[qualifier]"),
        ("kafka.before-commit[a]]=kill", "name[qualifier]"),
        ("restore.load=kill;restore.load=off", "given twice"),
    ] {
        let err = parse(spec).expect_err(spec).to_string();
        assert!(err.contains(says), "{spec}: {err}");
        assert!(
            err.starts_with("FLOE_FAILPOINTS is not a valid failpoint spec"),
            "{err}"
        );
    }
    // The same failpoint with different qualifiers is two rules.
    assert_eq!(
        parse("kafka.before-commit[a]=kill;kafka.before-commit[b]=kill")
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn a_rule_acts_on_its_nth_hit_only() {
    let rules = parse("checkpoint.trigger=kill@3;task.before-notify=pause;file.before-commit=off").unwrap();
    let kill = &rules[0];
    let got: Vec<_> = (0..5).map(|_| kill.count()).collect();
    assert_eq!(
        got,
        vec![
            (1, None),
            (2, None),
            (3, Some(Action::Kill { at: 3 })),
            (4, None),
            (5, None)
        ]
    );
    assert_eq!(kill.hits(), 5);
    assert_eq!(rules[1].count(), (1, Some(Action::Pause { at: 1 })));
    assert_eq!(rules[1].count(), (2, None));
    assert!((0..10).all(|_| rules[2].count().1.is_none()), "off never acts");
}

#[test]
fn hits_count_from_every_thread_once() {
    let rules = parse("task.after-notify=kill@1000").unwrap();
    let rule = &rules[0];
    let due = std::thread::scope(|s| {
        let threads: Vec<_> = (0..4)
            .map(|_| s.spawn(|| (0..500).filter(|_| rule.count().1.is_some()).count()))
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).sum::<usize>()
    });
    assert_eq!(rule.hits(), 2000);
    assert_eq!(due, 1, "exactly one hit is the 1000th");
}

#[test]
fn qualified_rules_count_their_qualifier_only() {
    let rules = parse("kafka.before-commit[dlq]=kill@2;kafka.after-commit=kill@2").unwrap();
    let (dlq, any) = (&rules[0], &rules[1]);
    assert!(dlq.matches("kafka.before-commit", Some("dlq")));
    assert!(!dlq.matches("kafka.before-commit", Some("alerts")));
    assert!(!dlq.matches("kafka.before-commit", None));
    assert!(!dlq.matches("kafka.after-commit", Some("dlq")));
    assert!(any.matches("kafka.after-commit", Some("alerts")) && any.matches("kafka.after-commit", Some("dlq")));
}

/// Every `failpoint!("name"...)` in the workspace's sources, with whether it has a
/// qualifier.
fn failpoints_in_sources() -> BTreeSet<(String, bool)> {
    fn walk(dir: &Path, found: &mut BTreeSet<(String, bool)>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let path = e.path();
            if path.is_dir() {
                walk(&path, found);
            } else if path.extension().is_some_and(|x| x == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                for (i, _) in text.match_indices("failpoint!(\"") {
                    let rest = &text[i + "failpoint!(\"".len()..];
                    let Some(end) = rest.find('"') else { continue };
                    let qualified = rest[end + 1..].trim_start().starts_with(',');
                    found.insert((rest[..end].to_string(), qualified));
                }
            }
        }
    }
    // The directory cargo runs the test in (a build cache shared between checkouts can hold
    // this test compiled in another, deleted one), else where it was compiled.
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf(),
        std::path::PathBuf::from,
    );
    let root = manifest.join("..");
    let mut found = BTreeSet::new();
    for krate in ["checkpoints", "runtime", "operators", "dsl"] {
        walk(&root.join(krate).join("src"), &mut found);
    }
    found
}

#[test]
fn the_table_lists_exactly_the_failpoints_in_the_code() {
    let in_code = failpoints_in_sources();
    let table: BTreeSet<(String, bool)> = FAILPOINTS
        .iter()
        .map(|f| (f.name.to_string(), f.qualifier.is_some()))
        .collect();
    assert_eq!(FAILPOINTS.len(), table.len(), "a failpoint is listed twice");
    assert_eq!(
        in_code, table,
        "FAILPOINTS (name, takes a qualifier) and the failpoint! calls in the code differ"
    );
    // The docs' table too, in the same order.
    let docs = include_str!("lib.rs");
    let documented: Vec<&str> = docs
        .lines()
        .filter_map(|l| l.strip_prefix("//! | `")?.split('`').next())
        .map(|n| n.split('[').next().unwrap_or(n))
        .collect();
    let listed: Vec<&str> = FAILPOINTS.iter().map(|f| f.name).collect();
    assert_eq!(documented, listed, "the docs' table and FAILPOINTS differ");
}

#[test]
fn the_feature_decides_whether_failpoints_are_compiled_in() {
    assert_eq!(ENABLED, cfg!(feature = "failpoints"));
    // Expands to nothing without the feature; with it, no rule matches (none set here), so
    // passing is harmless either way.
    failpoint!("checkpoint.trigger");
    failpoint!("kafka.before-commit", "some-topic");
}
