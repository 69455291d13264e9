//! How the Kafka sink turns a record's value into the bytes of a Kafka record's value:
//! the [`Serializer`] trait and the serializers Floe ships ([`Json`], [`Utf8`], [`Bytes`],
//! and any `Fn(&T) -> Vec<u8>` closure).

use std::fmt::Display;
use std::io::Write;

use floe_runtime::UserError;
use serde::Serialize;

/// Turns a value into the bytes of a Kafka record's value.
///
/// The sink hands every call the same reusable buffer (cleared, or in exactly-once mode the
/// tail of the epoch's buffer), so a serializer that appends to `out` costs no allocation
/// per record.
///
/// ```
/// use floe_operators::kafka::sink::Serializer;
/// struct Csv;
/// impl Serializer<(u32, String)> for Csv {
///     fn serialize(&self, v: &(u32, String), out: &mut Vec<u8>) -> Result<(), floe_runtime::UserError> {
///         use std::io::Write;
///         write!(out, "{},{}", v.0, v.1)?;
///         Ok(())
///     }
/// }
/// let mut buf = Vec::new();
/// Csv.serialize(&(1, "a".to_string()), &mut buf).unwrap();
/// assert_eq!(buf, b"1,a");
/// ```
pub trait Serializer<T>: Send + Sync + 'static {
    /// Appends the bytes of `value` to `out`. An error fails the job (a user error: the
    /// record cannot be written, and a retry would fail the same way).
    fn serialize(&self, value: &T, out: &mut Vec<u8>) -> Result<(), UserError>;

    /// Whether `value` is written with a null value (a tombstone) instead of
    /// [`serialize`](Self::serialize)'s bytes. No by default.
    fn is_null(&self, _value: &T) -> bool {
        false
    }
}

/// Writes values as JSON (`serde_json`).
///
/// ```
/// use floe_operators::kafka::sink::{Json, Serializer};
/// let mut buf = Vec::new();
/// Json.serialize(&serde_json::json!({"user": 7}), &mut buf).unwrap();
/// assert_eq!(buf, br#"{"user":7}"#);
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Json;

impl<T: Serialize> Serializer<T> for Json {
    fn serialize(&self, value: &T, out: &mut Vec<u8>) -> Result<(), UserError> {
        serde_json::to_writer(out, value).map_err(|e| Box::new(e) as UserError)
    }
}

/// Writes values as their `Display` text in UTF-8 (`String`, `&str`, numbers).
///
/// ```
/// use floe_operators::kafka::sink::{Serializer, Utf8};
/// let mut buf = Vec::new();
/// Utf8.serialize(&42u32, &mut buf).unwrap();
/// assert_eq!(buf, b"42");
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Utf8;

impl<T: Display> Serializer<T> for Utf8 {
    fn serialize(&self, value: &T, out: &mut Vec<u8>) -> Result<(), UserError> {
        write!(out, "{value}").map_err(|e| Box::new(e) as UserError)
    }
}

/// Writes values that are bytes already (`Vec<u8>`, `String`, `&[u8]`) as they are.
///
/// ```
/// use floe_operators::kafka::sink::{Bytes, Serializer};
/// let mut buf = Vec::new();
/// Bytes.serialize(&vec![0u8, 255], &mut buf).unwrap();
/// assert_eq!(buf, [0, 255]);
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Bytes;

impl<T: AsRef<[u8]>> Serializer<T> for Bytes {
    fn serialize(&self, value: &T, out: &mut Vec<u8>) -> Result<(), UserError> {
        out.extend_from_slice(value.as_ref());
        Ok(())
    }
}

/// Any `Fn(&T) -> Vec<u8>` closure is a serializer (it allocates its result per record;
/// implement [`Serializer`] to write into the sink's buffer instead).
///
/// ```
/// use floe_operators::kafka::sink::Serializer;
/// let upper = |s: &String| s.to_uppercase().into_bytes();
/// let mut buf = Vec::new();
/// upper.serialize(&"abc".to_string(), &mut buf).unwrap();
/// assert_eq!(buf, b"ABC");
/// ```
impl<T, F> Serializer<T> for F
where
    F: Fn(&T) -> Vec<u8> + Send + Sync + 'static,
{
    fn serialize(&self, value: &T, out: &mut Vec<u8>) -> Result<(), UserError> {
        out.extend_from_slice(&self(value));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializers_append_to_the_buffer() {
        let mut buf = b"x".to_vec();
        Json.serialize(&vec![1, 2], &mut buf).unwrap();
        Utf8.serialize(&"é", &mut buf).unwrap();
        Bytes.serialize(&"b", &mut buf).unwrap();
        (|v: &u8| vec![*v]).serialize(&0, &mut buf).unwrap();
        assert_eq!(buf, "x[1,2]éb\0".as_bytes());
        assert!(!Serializer::<u8>::is_null(&Json, &1));
    }
}
