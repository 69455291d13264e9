//! How `floe tail` prints one record in each [`Format`] (documented there): into a buffer,
//! so that a record is one write.

use std::fmt::Write as _;

use super::Format;

/// A record as `floe tail` shows it, apart from the Kafka client's message type.
#[derive(Clone, Debug, Default)]
pub(crate) struct RecordView<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    /// Milliseconds since the epoch, if the record has a timestamp.
    pub timestamp: Option<i64>,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: Vec<(&'a str, Option<&'a [u8]>)>,
}

/// Appends `record` in `format` to `out`, ending with a newline.
pub(crate) fn render(format: Format, show_headers: bool, record: &RecordView<'_>, out: &mut Vec<u8>) {
    match format {
        Format::Pretty => {
            let mut s = String::new();
            pretty(show_headers, record, &mut s);
            out.extend_from_slice(s.as_bytes());
        }
        Format::Json => {
            let mut s = String::new();
            json(record, &mut s);
            out.extend_from_slice(s.as_bytes());
        }
        Format::Raw => {
            out.extend_from_slice(record.value.unwrap_or_default());
            out.push(b'\n');
        }
    }
}

fn pretty(show_headers: bool, r: &RecordView<'_>, s: &mut String) {
    let _ = write!(s, "partition {}, offset {}, ", r.partition, r.offset);
    match r.timestamp {
        Some(ms) => {
            let _ = write!(s, "{} ({ms})", iso8601(ms));
        }
        None => s.push_str("no timestamp"),
    }
    s.push_str("\n  key: ");
    match r.key {
        Some(k) => push_escaped(s, k),
        None => s.push_str("(none)"),
    }
    s.push_str("\n  value: ");
    match r.value {
        Some(v) => push_escaped(s, v),
        None => s.push_str("(null)"),
    }
    s.push('\n');
    if show_headers {
        for (name, value) in &r.headers {
            s.push_str("  header ");
            push_escaped(s, name.as_bytes());
            s.push_str(": ");
            match value {
                Some(v) => push_escaped(s, v),
                None => s.push_str("(null)"),
            }
            s.push('\n');
        }
    }
}

fn json(r: &RecordView<'_>, s: &mut String) {
    s.push_str("{\"topic\":");
    push_json_string(s, r.topic);
    let _ = write!(
        s,
        ",\"partition\":{},\"offset\":{},\"timestamp\":",
        r.partition, r.offset
    );
    match r.timestamp {
        Some(ms) => {
            let _ = write!(s, "{ms}");
        }
        None => s.push_str("null"),
    }
    s.push_str(",\"key\":");
    let key_binary = push_json_bytes(s, r.key, false);
    s.push_str(",\"value\":");
    let value_binary = push_json_bytes(s, r.value, true);
    s.push_str(",\"headers\":[");
    for (i, (name, value)) in r.headers.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str("{\"key\":");
        push_json_string(s, name);
        s.push_str(",\"value\":");
        if push_json_bytes(s, *value, false) {
            s.push_str(",\"encoding\":\"base64\"");
        }
        s.push('}');
    }
    s.push(']');
    if key_binary {
        s.push_str(",\"key_encoding\":\"base64\"");
    }
    if value_binary {
        s.push_str(",\"value_encoding\":\"base64\"");
    }
    s.push_str("}\n");
}

/// Appends `bytes` as JSON: null, embedded JSON (if `as_json` and they are valid JSON), a
/// string (UTF-8), or a base64 string; returns whether it was base64.
fn push_json_bytes(s: &mut String, bytes: Option<&[u8]>, as_json: bool) -> bool {
    let Some(bytes) = bytes else {
        s.push_str("null");
        return false;
    };
    match std::str::from_utf8(bytes) {
        Ok(text) if as_json && serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok() => {
            push_compact_json(s, text);
            false
        }
        Ok(text) => {
            push_json_string(s, text);
            false
        }
        Err(_) => {
            s.push('"');
            push_base64(s, bytes);
            s.push('"');
            true
        }
    }
}

fn push_json_string(s: &mut String, text: &str) {
    // Serializing a str cannot fail.
    s.push_str(&serde_json::to_string(text).unwrap_or_default());
}

/// Appends valid JSON `text` without the whitespace between tokens (so that it fits on one
/// line), keeping everything else as it is: key order, number spelling, escapes.
fn push_compact_json(s: &mut String, text: &str) {
    let mut in_string = false;
    let mut escaped = false;
    for c in text.chars() {
        if in_string {
            s.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            s.push(c);
        } else if !matches!(c, ' ' | '\t' | '\n' | '\r') {
            s.push(c);
        }
    }
}

/// Appends `bytes` as UTF-8 with control characters escaped (`\n`, `\u{1b}`) and bytes that
/// are not UTF-8 as `\xNN`.
fn push_escaped(s: &mut String, bytes: &[u8]) {
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c.is_control() {
                s.extend(c.escape_default());
            } else {
                s.push(c);
            }
        }
        for b in chunk.invalid() {
            let _ = write!(s, "\\x{b:02x}");
        }
    }
}

/// Appends standard, padded base64 of `bytes`.
fn push_base64(s: &mut String, bytes: &[u8]) {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for chunk in bytes.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(chunk.get(1).copied().unwrap_or(0)) << 8)
            | u32::from(chunk.get(2).copied().unwrap_or(0));
        for i in 0..4 {
            if i <= chunk.len() {
                s.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                s.push('=');
            }
        }
    }
}

/// `ms` since the epoch as ISO-8601 UTC with milliseconds: `2024-05-01T12:00:00.123Z`.
pub(crate) fn iso8601(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, day_secs) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        day_secs / 3600,
        day_secs % 3600 / 60,
        day_secs % 60,
        ms.rem_euclid(1000)
    )
}

/// The proleptic Gregorian date of `days` since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(format: Format, headers: bool, r: &RecordView<'_>) -> String {
        let mut out = Vec::new();
        render(format, headers, r, &mut out);
        String::from_utf8(out).unwrap()
    }

    fn record<'a>(key: Option<&'a [u8]>, value: Option<&'a [u8]>) -> RecordView<'a> {
        RecordView {
            topic: "t",
            partition: 2,
            offset: 7,
            timestamp: Some(1_714_564_800_123),
            key,
            value,
            headers: vec![("trace", Some(b"abc")), ("none", None), ("bin", Some(b"\xff\x00"))],
        }
    }

    #[test]
    fn timestamps() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(1_714_564_800_123), "2024-05-01T12:00:00.123Z");
        assert_eq!(iso8601(951_825_600_000), "2000-02-29T12:00:00.000Z");
        assert_eq!(iso8601(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(iso8601(253_402_300_799_999), "9999-12-31T23:59:59.999Z");
    }

    #[test]
    fn base64() {
        for (bytes, expected) in [
            (&b""[..], ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
            (b"foob", "Zm9vYg=="),
            (b"\xff\xfe\x00", "//4A"),
        ] {
            let mut s = String::new();
            push_base64(&mut s, bytes);
            assert_eq!(s, expected);
        }
    }

    #[test]
    fn pretty_escapes_and_shows_headers_on_request() {
        let r = record(Some(b"user-7"), Some(b"line1\nline2 \x1b[31m\xff caf\xc3\xa9"));
        assert_eq!(
            rendered(Format::Pretty, false, &r),
            "partition 2, offset 7, 2024-05-01T12:00:00.123Z (1714564800123)\n  key: user-7\n  \
             value: line1\\nline2 \\u{1b}[31m\\xff caf\u{e9}\n"
        );
        let r = RecordView {
            timestamp: None,
            ..record(None, None)
        };
        assert_eq!(
            rendered(Format::Pretty, true, &r),
            "partition 2, offset 7, no timestamp\n  key: (none)\n  value: (null)\n  header trace: abc\n  \
             header none: (null)\n  header bin: \\xff\\u{0}\n"
        );
    }

    #[test]
    fn json_embeds_json_values_and_base64_for_binary() {
        let r = record(Some(b"42"), Some(b"{ \"b\": 1,\n \"a\": [1.50, \"x y\\\" z\"] }"));
        let line = rendered(Format::Json, false, &r);
        assert_eq!(
            line,
            "{\"topic\":\"t\",\"partition\":2,\"offset\":7,\"timestamp\":1714564800123,\"key\":\"42\",\
             \"value\":{\"b\":1,\"a\":[1.50,\"x y\\\" z\"]},\"headers\":[{\"key\":\"trace\",\"value\":\"abc\"},\
             {\"key\":\"none\",\"value\":null},{\"key\":\"bin\",\"value\":\"/wA=\",\"encoding\":\"base64\"}]}\n"
        );
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["value"]["a"][1], "x y\" z");

        let r = RecordView {
            timestamp: None,
            headers: vec![],
            ..record(Some(b"\x80"), Some(b"plain text"))
        };
        let v: serde_json::Value = serde_json::from_str(&rendered(Format::Json, false, &r)).unwrap();
        assert_eq!(v["value"], "plain text");
        assert_eq!(v["key"], "gA==");
        assert_eq!(v["key_encoding"], "base64");
        assert!(v["timestamp"].is_null() && v.get("value_encoding").is_none());

        let r = record(None, Some(b"\x00\xff"));
        let v: serde_json::Value = serde_json::from_str(&rendered(Format::Json, false, &r)).unwrap();
        assert_eq!(
            (v["key"].clone(), v["value"].clone()),
            (serde_json::Value::Null, "AP8=".into())
        );
        assert_eq!(v["value_encoding"], "base64");
    }

    #[test]
    fn raw_is_the_value_and_a_newline() {
        let mut out = Vec::new();
        render(Format::Raw, true, &record(Some(b"k"), Some(b"\xffv")), &mut out);
        assert_eq!(out, b"\xffv\n");
        assert_eq!(rendered(Format::Raw, true, &record(Some(b"k"), None)), "\n");
    }
}
