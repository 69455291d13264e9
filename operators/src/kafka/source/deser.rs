//! Deserializers: how a Kafka record (a borrowed [`KafkaMessage`]) becomes a value of the
//! stream. A deserializer that fails sets the record aside as a dead letter; the job goes on.

use std::marker::PhantomData;

use rdkafka::message::{BorrowedHeaders, BorrowedMessage, Headers, Message};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// A borrowed view of one Kafka record: nothing is copied until a deserializer asks for it.
///
/// ```
/// use floe_operators::kafka::source::KafkaMessage;
/// let headers = [("trace", Some(&b"abc"[..]))];
/// let m = KafkaMessage::new("payments", 2, 41, Some(1_000), Some(b"user-7"), Some(b"{}")).with_headers(&headers);
/// assert_eq!(m.topic(), "payments");
/// assert_eq!(m.header("trace"), Some(Some(&b"abc"[..])));
/// ```
#[derive(Clone, Copy)]
pub struct KafkaMessage<'a> {
    topic: &'a str,
    partition: i32,
    offset: i64,
    timestamp: Option<i64>,
    key: Option<&'a [u8]>,
    payload: Option<&'a [u8]>,
    headers: HeadersView<'a>,
}

impl std::fmt::Debug for KafkaMessage<'_> {
    /// Where the record is from and how big it is (not its contents).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaMessage")
            .field("topic", &self.topic)
            .field("partition", &self.partition)
            .field("offset", &self.offset)
            .field("timestamp", &self.timestamp)
            .field("key_len", &self.key.map(<[u8]>::len))
            .field("payload_len", &self.payload.map(<[u8]>::len))
            .field("headers", &self.headers().count())
            .finish()
    }
}

/// Headers given as (name, value) pairs.
type HeaderSlice<'a> = &'a [(&'a str, Option<&'a [u8]>)];

#[derive(Clone, Copy)]
enum HeadersView<'a> {
    None,
    /// Read from the message only if asked for (most deserializers never look).
    Message(&'a BorrowedMessage<'a>),
    Slice(HeaderSlice<'a>),
}

impl<'a> KafkaMessage<'a> {
    /// A message without headers (to test deserializers without a broker).
    pub fn new(
        topic: &'a str,
        partition: i32,
        offset: i64,
        timestamp: Option<i64>,
        key: Option<&'a [u8]>,
        payload: Option<&'a [u8]>,
    ) -> Self {
        KafkaMessage {
            topic,
            partition,
            offset,
            timestamp,
            key,
            payload,
            headers: HeadersView::None,
        }
    }

    /// The same message with these headers.
    pub fn with_headers(mut self, headers: &'a [(&'a str, Option<&'a [u8]>)]) -> Self {
        self.headers = HeadersView::Slice(headers);
        self
    }

    /// A view of a message the consumer returned.
    pub(crate) fn from_borrowed(m: &'a BorrowedMessage<'a>) -> Self {
        KafkaMessage {
            topic: m.topic(),
            partition: m.partition(),
            offset: m.offset(),
            timestamp: m.timestamp().to_millis(),
            key: m.key(),
            payload: m.payload(),
            headers: HeadersView::Message(m),
        }
    }

    /// The topic the record was read from.
    pub fn topic(&self) -> &'a str {
        self.topic
    }

    /// Its partition.
    pub fn partition(&self) -> i32 {
        self.partition
    }

    /// Its offset.
    pub fn offset(&self) -> i64 {
        self.offset
    }

    /// Its timestamp (create time or log-append time, ms since the epoch), if it has one.
    pub fn timestamp(&self) -> Option<i64> {
        self.timestamp
    }

    /// Its key, if it has one.
    pub fn key(&self) -> Option<&'a [u8]> {
        self.key
    }

    /// Its value; `None` for a tombstone (a record with a null value).
    pub fn payload(&self) -> Option<&'a [u8]> {
        self.payload
    }

    /// Its headers in order, as (name, value); a header may have a null value.
    pub fn headers(&self) -> impl Iterator<Item = (&'a str, Option<&'a [u8]>)> + 'a {
        let (borrowed, slice): (Option<&'a BorrowedHeaders>, HeaderSlice<'a>) = match self.headers {
            HeadersView::None => (None, &[]),
            HeadersView::Message(m) => (m.headers(), &[]),
            HeadersView::Slice(s) => (None, s),
        };
        let count = borrowed.map_or(slice.len(), |h| h.count());
        (0..count).filter_map(move |i| match borrowed {
            Some(h) => h.try_get(i).map(|h| (h.key, h.value)),
            None => slice.get(i).copied(),
        })
    }

    /// The value of the first header called `name`: `None` if there is none,
    /// `Some(None)` if it has a null value.
    pub fn header(&self, name: &str) -> Option<Option<&'a [u8]>> {
        self.headers().find(|(k, _)| *k == name).map(|(_, v)| v)
    }

    /// The payload, or an error saying the record has none.
    pub fn require_payload(&self) -> Result<&'a [u8], String> {
        self.payload
            .ok_or_else(|| "the record has no value (a tombstone)".to_string())
    }
}

/// Turns a Kafka record into a value of the stream, or says why it cannot.
///
/// Closures `Fn(&KafkaMessage<'_>) -> Result<T, String>` are deserializers too:
///
/// ```
/// use floe_operators::kafka::source::{Deserializer, KafkaMessage};
/// let len = |m: &KafkaMessage<'_>| m.require_payload().map(|p| p.len());
/// let m = KafkaMessage::new("t", 0, 0, None, None, Some(b"abc"));
/// assert_eq!(len.deserialize(&m), Ok(3));
/// ```
pub trait Deserializer<T>: Send + Sync + 'static {
    /// The value of `message`, or the reason it has none (which goes into the dead letter).
    fn deserialize(&self, message: &KafkaMessage<'_>) -> Result<T, String>;

    /// Passes each value read to `then`, a user function that validates or converts it: an
    /// `Err(reason)` makes the record a dead letter (error `rejected: <reason>`) with its
    /// original bytes and origin, exactly like a record that does not deserialize.
    ///
    /// ```
    /// use floe_operators::kafka::source::{Deserializer, Json, KafkaMessage};
    /// #[derive(serde::Deserialize, Debug, PartialEq)]
    /// struct Payment { amount: i64 }
    /// let positive = Json::<Payment>::new()
    ///     .and_then(|p: Payment| if p.amount > 0 { Ok(p) } else { Err(format!("amount {} is not positive", p.amount)) });
    /// let ok = KafkaMessage::new("t", 0, 0, None, None, Some(br#"{"amount":5}"#));
    /// assert_eq!(positive.deserialize(&ok), Ok(Payment { amount: 5 }));
    /// let bad = KafkaMessage::new("t", 0, 1, None, None, Some(br#"{"amount":-5}"#));
    /// assert_eq!(positive.deserialize(&bad), Err("rejected: amount -5 is not positive".into()));
    /// ```
    fn and_then<U, F>(self, then: F) -> AndThen<Self, F, T>
    where
        Self: Sized,
        F: Fn(T) -> Result<U, String> + Send + Sync + 'static,
    {
        AndThen {
            inner: self,
            then,
            _t: PhantomData,
        }
    }
}

impl<T, F> Deserializer<T> for F
where
    F: Fn(&KafkaMessage<'_>) -> Result<T, String> + Send + Sync + 'static,
{
    fn deserialize(&self, message: &KafkaMessage<'_>) -> Result<T, String> {
        self(message)
    }
}

/// Checks or converts what a deserializer read: [`Deserializer::and_then`] builds it.
pub struct AndThen<D, F, T> {
    inner: D,
    then: F,
    _t: PhantomData<fn() -> T>,
}

impl<D: Clone, F: Clone, T> Clone for AndThen<D, F, T> {
    fn clone(&self) -> Self {
        AndThen {
            inner: self.inner.clone(),
            then: self.then.clone(),
            _t: PhantomData,
        }
    }
}

impl<T, U, D, F> Deserializer<U> for AndThen<D, F, T>
where
    T: 'static,
    D: Deserializer<T>,
    F: Fn(T) -> Result<U, String> + Send + Sync + 'static,
{
    fn deserialize(&self, message: &KafkaMessage<'_>) -> Result<U, String> {
        let value = self.inner.deserialize(message)?;
        (self.then)(value).map_err(|reason| format!("rejected: {reason}"))
    }
}

/// The payload as one JSON document, into any serde type (read from the borrowed bytes, no
/// copy). A tombstone, an empty payload, bad JSON or a document of the wrong shape fails.
///
/// ```
/// use floe_operators::kafka::source::{Deserializer, Json, KafkaMessage};
/// #[derive(serde::Deserialize, Debug, PartialEq)]
/// struct Payment { user: u64 }
/// let m = KafkaMessage::new("t", 0, 0, None, None, Some(br#"{"user":7}"#));
/// assert_eq!(Json::<Payment>::new().deserialize(&m), Ok(Payment { user: 7 }));
/// let bad = KafkaMessage::new("t", 0, 1, None, None, Some(br#"{"user":"x"}"#));
/// assert!(Json::<Payment>::new().deserialize(&bad).is_err());
/// ```
pub struct Json<T>(PhantomData<fn() -> T>);

impl<T> Json<T> {
    /// A JSON deserializer for `T`.
    pub fn new() -> Self {
        Json(PhantomData)
    }
}

impl<T> Default for Json<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Clone for Json<T> {
    fn clone(&self) -> Self {
        Self::new()
    }
}

impl<T: DeserializeOwned + 'static> Deserializer<T> for Json<T> {
    fn deserialize(&self, message: &KafkaMessage<'_>) -> Result<T, String> {
        let payload = message.require_payload()?;
        if payload.is_empty() {
            return Err("empty value: expected a JSON document".into());
        }
        serde_json::from_slice(payload).map_err(|e| format!("invalid JSON: {e}"))
    }
}

/// The payload as UTF-8 text. A tombstone or invalid UTF-8 fails.
///
/// ```
/// use floe_operators::kafka::source::{Deserializer, KafkaMessage, Utf8};
/// let m = KafkaMessage::new("t", 0, 0, None, None, Some("héllo".as_bytes()));
/// assert_eq!(Utf8.deserialize(&m), Ok("héllo".to_string()));
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Utf8;

impl Deserializer<String> for Utf8 {
    fn deserialize(&self, message: &KafkaMessage<'_>) -> Result<String, String> {
        let payload = message.require_payload()?;
        std::str::from_utf8(payload)
            .map(str::to_owned)
            .map_err(|e| format!("invalid UTF-8: {e}"))
    }
}

/// The payload as bytes. A tombstone fails (use [`WithMetadata`] or a closure to see them).
///
/// ```
/// use floe_operators::kafka::source::{Bytes, Deserializer, KafkaMessage};
/// let m = KafkaMessage::new("t", 0, 0, None, None, Some(&[0xff, 0]));
/// assert_eq!(Bytes.deserialize(&m), Ok(vec![0xff, 0]));
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Bytes;

impl Deserializer<Vec<u8>> for Bytes {
    fn deserialize(&self, message: &KafkaMessage<'_>) -> Result<Vec<u8>, String> {
        message.require_payload().map(<[u8]>::to_vec)
    }
}

/// A value with where it came from and the record's key and headers (what
/// [`WithMetadata`] produces).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope<T> {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The offset.
    pub offset: i64,
    /// The Kafka timestamp (ms), if the record has one.
    pub timestamp: Option<i64>,
    /// The key.
    pub key: Option<Vec<u8>>,
    /// The headers in order, as (name, value).
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    /// The value, as the inner deserializer read it.
    pub value: T,
}

/// Wraps a deserializer so that the job sees each value in an [`Envelope`] with the
/// record's topic, partition, offset, timestamp, key and headers.
///
/// ```
/// use floe_operators::kafka::source::{Deserializer, KafkaMessage, Utf8, WithMetadata};
/// let headers = [("h", Some(&b"1"[..]))];
/// let m = KafkaMessage::new("t", 3, 9, Some(5), Some(b"k"), Some(b"v")).with_headers(&headers);
/// let e = WithMetadata(Utf8).deserialize(&m).unwrap();
/// assert_eq!((e.key.as_deref(), e.value.as_str(), e.offset), (Some(&b"k"[..]), "v", 9));
/// assert_eq!(e.headers, vec![("h".to_string(), Some(b"1".to_vec()))]);
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct WithMetadata<D>(pub D);

impl<T, D: Deserializer<T>> Deserializer<Envelope<T>> for WithMetadata<D> {
    fn deserialize(&self, message: &KafkaMessage<'_>) -> Result<Envelope<T>, String> {
        let value = self.0.deserialize(message)?;
        Ok(Envelope {
            topic: message.topic().to_string(),
            partition: message.partition(),
            offset: message.offset(),
            timestamp: message.timestamp(),
            key: message.key().map(<[u8]>::to_vec),
            headers: message
                .headers()
                .map(|(k, v)| (k.to_string(), v.map(<[u8]>::to_vec)))
                .collect(),
            value,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(payload: Option<&[u8]>) -> KafkaMessage<'_> {
        KafkaMessage::new("t", 0, 0, None, None, payload)
    }

    #[test]
    fn json_rejects_what_is_not_a_document_of_the_type() {
        let json = Json::<Vec<u32>>::new();
        assert_eq!(json.deserialize(&msg(Some(b"[1,2]"))), Ok(vec![1, 2]));
        for bad in [&b""[..], b"[1,", b"{\"a\":1}", b"\xff\xfe\x00", b"[1,-2]"] {
            assert!(json.deserialize(&msg(Some(bad))).is_err(), "{bad:?}");
        }
        assert!(json.deserialize(&msg(None)).unwrap_err().contains("tombstone"));
        assert!(json.deserialize(&msg(Some(b""))).unwrap_err().contains("empty"));
    }

    proptest::proptest! {
        /// Arbitrary bytes (and keys and headers) into every deserializer: a value or an
        /// error, never a panic; UTF-8 and JSON agree with their reference decoders.
        #[test]
        fn arbitrary_records_are_values_or_errors(
            payload in proptest::option::of(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)),
            key in proptest::option::of(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..16)),
            header in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..16),
        ) {
            let headers = [("h", Some(header.as_slice())), ("null", None)];
            let m = KafkaMessage::new("t", 1, 2, Some(3), key.as_deref(), payload.as_deref()).with_headers(&headers);
            let text = Utf8.deserialize(&m);
            proptest::prop_assert_eq!(
                text.is_ok(),
                payload.as_deref().is_some_and(|p| std::str::from_utf8(p).is_ok())
            );
            let json = Json::<serde_json::Value>::new().deserialize(&m);
            let reference = payload.as_deref().filter(|p| !p.is_empty()).map(serde_json::from_slice::<serde_json::Value>);
            proptest::prop_assert_eq!(json.is_ok(), reference.is_some_and(|r| r.is_ok()));
            let _ = Json::<Vec<(u32, String)>>::new().deserialize(&m);
            let _ = Bytes.deserialize(&m);
            if let Ok(e) = WithMetadata(Utf8).deserialize(&m) {
                proptest::prop_assert_eq!(e.key, key.clone());
                proptest::prop_assert_eq!(e.headers.len(), 2);
            }
        }
    }

    #[test]
    fn utf8_and_bytes() {
        assert!(Utf8.deserialize(&msg(Some(b"\xff"))).is_err());
        assert_eq!(Utf8.deserialize(&msg(Some(b""))), Ok(String::new()));
        assert!(Bytes.deserialize(&msg(None)).is_err());
        let headers = [("a", None), ("b", Some(&b"2"[..]))];
        let m = msg(Some(b"x")).with_headers(&headers);
        assert_eq!(m.header("a"), Some(None));
        assert_eq!(m.header("c"), None);
        assert_eq!(m.headers().count(), 2);
    }
}
