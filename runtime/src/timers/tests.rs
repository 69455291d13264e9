use super::*;

fn s(v: &str) -> String {
    v.to_string()
}

#[test]
fn fires_once_in_order_and_skips_deleted() {
    let mut t: TimerStore<String, ()> = TimerStore::default();
    assert!(t.register(30, 0, &s("a"), &()));
    assert!(t.register(10, 0, &s("b"), &()));
    assert!(!t.register(10, 0, &s("b"), &()), "duplicate ignored");
    assert!(t.register(10, 0, &s("c"), &()));
    assert!(t.register(20, 0, &s("a"), &()));
    assert!(t.delete(20, 0, &s("a"), &()));
    assert_eq!(t.next_timestamp().unwrap(), Some(10));
    let mut fired = vec![];
    while let Some((ts, _, k, _)) = t.pop_due(25).unwrap() {
        fired.push((ts, k));
    }
    assert_eq!(fired, vec![(10, s("b")), (10, s("c"))]);
    assert_eq!(t.next_timestamp().unwrap(), Some(30));
    assert_eq!(t.pop_due(100).unwrap().map(|x| x.0), Some(30));
    assert!(t.is_empty());
    assert_eq!(t.pop_due(i64::MAX).unwrap(), None);
}

#[test]
fn timestamp_bytes_sort_like_timestamps() {
    let mut v = vec![i64::MIN, -5, -1, 0, 1, 7, 1 << 40, i64::MAX];
    let mut by_bytes = v.clone();
    by_bytes.sort_by_key(|t| ts_bytes(*t));
    v.sort();
    assert_eq!(v, by_bytes);
    for t in v {
        assert_eq!(ts_from(&ts_bytes(t)), Some(t));
    }
    assert_eq!(ts_from(&[1, 2]), None, "short input is not a timestamp");
}
