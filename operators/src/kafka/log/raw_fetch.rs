//! Raw reads of a partition's log: Fetch requests (the `kafka-protocol` crate's encoding) on
//! a plain TCP connection to the broker, with isolation level `read_uncommitted`, so that the
//! response holds every record batch as the broker stores it, data and transaction markers
//! alike. Deciding what is committed is [`committed`](super::committed)'s job, not the
//! broker's: the brokers that run here do not do it (see `shared/KAFKA-BROKERS.md`).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kafka_protocol::error::ParseResponseErrorCode;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, FetchRequest, FetchResponse, RequestHeader, ResponseHeader,
    TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};

use super::batches::{decode_batches, Batch};

/// Largest response accepted from the broker (a fetch asks for at most
/// [`MAX_PARTITION_BYTES`]; the rest is headroom for the response's own fields).
const MAX_RESPONSE_BYTES: usize = MAX_PARTITION_BYTES as usize + (1 << 20);
/// The most one fetch asks of a partition: a batch larger than the first ask (1 MiB) is
/// asked for again with twice the room, up to this.
const MAX_PARTITION_BYTES: i32 = 64 << 20;
/// Fetch versions this reader speaks (v4 is the first with an isolation level; v12 is
/// the last that names topics rather than topic ids).
const FETCH_VERSIONS: std::ops::RangeInclusive<i16> = 4..=12;
/// How long the broker may hold a fetch that finds nothing new. (tansu holds every fetch
/// this long even when it has data: keep it short.)
const FETCH_WAIT_MS: i32 = 20;

fn protocol_error(what: &str, e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("{what}: {e}"))
}

/// A connection to one broker that speaks Fetch.
pub(crate) struct RawConnection {
    stream: TcpStream,
    addr: SocketAddr,
    correlation: i32,
    fetch_version: i16,
}

impl RawConnection {
    /// Connects to `addr` and agrees on a Fetch version with it.
    pub(crate) fn connect(addr: SocketAddr) -> io::Result<Self> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        stream.set_write_timeout(Some(Duration::from_secs(30)))?;
        stream.set_nodelay(true)?;
        let mut c = RawConnection {
            stream,
            addr,
            correlation: 0,
            fetch_version: *FETCH_VERSIONS.start(),
        };
        let versions: ApiVersionsResponse = c.call(ApiKey::ApiVersions, 0, &ApiVersionsRequest::default())?;
        if let Some(e) = versions.error_code.err() {
            return Err(protocol_error(&format!("ApiVersions from {addr}"), e));
        }
        let fetch = versions
            .api_keys
            .iter()
            .find(|k| k.api_key == ApiKey::Fetch as i16)
            .ok_or_else(|| protocol_error(&format!("ApiVersions from {addr}"), "no Fetch API"))?;
        let best = fetch.max_version.min(*FETCH_VERSIONS.end());
        if best < fetch.min_version || !FETCH_VERSIONS.contains(&best) {
            return Err(protocol_error(
                &format!("broker {addr}"),
                format!(
                    "it serves Fetch v{}..v{}, this reader needs one of v{}..v{}",
                    fetch.min_version,
                    fetch.max_version,
                    FETCH_VERSIONS.start(),
                    FETCH_VERSIONS.end()
                ),
            ));
        }
        c.fetch_version = best;
        Ok(c)
    }

    /// Sends one request and reads its response.
    fn call<Q: Encodable + HeaderVersion, R: Decodable + HeaderVersion>(
        &mut self,
        key: ApiKey,
        version: i16,
        request: &Q,
    ) -> io::Result<R> {
        let what = format!("{key:?} v{version} to {}", self.addr);
        self.correlation = self.correlation.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(StrBytes::from_static_str("floe-raw-reader")));
        let mut body = BytesMut::new();
        header
            .encode(&mut body, Q::header_version(version))
            .and_then(|()| request.encode(&mut body, version))
            .map_err(|e| protocol_error(&what, e))?;
        let length = u32::try_from(body.len()).map_err(|_| protocol_error(&what, "request too large"))?;
        let mut frame = Vec::with_capacity(4 + body.len());
        frame.extend_from_slice(&length.to_be_bytes());
        frame.extend_from_slice(&body);
        self.stream.write_all(&frame)?;

        let mut length = [0u8; 4];
        self.stream.read_exact(&mut length)?;
        let length = u32::from_be_bytes(length) as usize;
        if length > MAX_RESPONSE_BYTES {
            return Err(protocol_error(
                &what,
                format!("a response of {length} bytes (at most {MAX_RESPONSE_BYTES} accepted)"),
            ));
        }
        let mut response = vec![0u8; length];
        self.stream.read_exact(&mut response)?;
        let mut buf = Bytes::from(response);
        let header =
            ResponseHeader::decode(&mut buf, R::header_version(version)).map_err(|e| protocol_error(&what, e))?;
        if header.correlation_id != self.correlation {
            return Err(protocol_error(
                &what,
                format!(
                    "response to request {} while waiting for {}",
                    header.correlation_id, self.correlation
                ),
            ));
        }
        R::decode(&mut buf, version).map_err(|e| protocol_error(&what, e))
    }

    /// One fetch of `topic`'s `partition` from `offset` (read uncommitted): the record
    /// bytes the broker returned (possibly ending in part of a batch).
    fn fetch(&mut self, topic: &str, partition: i32, offset: i64, max_bytes: i32) -> io::Result<Bytes> {
        let request = FetchRequest::default()
            .with_replica_id((-1).into())
            .with_max_wait_ms(FETCH_WAIT_MS)
            .with_min_bytes(1)
            .with_max_bytes(max_bytes)
            .with_isolation_level(0)
            .with_topics(vec![FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(partition)
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(max_bytes)])]);
        let version = self.fetch_version;
        let response: FetchResponse = self.call(ApiKey::Fetch, version, &request)?;
        let what = format!("fetching {topic}/{partition} from offset {offset}");
        if let Some(e) = response.error_code.err() {
            return Err(protocol_error(&what, e));
        }
        let data = response
            .responses
            .into_iter()
            .filter(|t| t.topic.0.as_str() == topic)
            .flat_map(|t| t.partitions)
            .find(|p| p.partition_index == partition)
            .ok_or_else(|| protocol_error(&what, "the response does not hold the partition"))?;
        if let Some(e) = data.error_code.err() {
            return Err(protocol_error(&what, e));
        }
        Ok(data.records.unwrap_or_default())
    }

    /// The batches of `topic`'s `partition` from offset 0 up to and including the batch
    /// holding the first record for which `is_end` is true, or, without `is_end`, up to the
    /// first fetch that returns nothing (a batch that starts before an offset already read is
    /// cut to the records not read yet, so each offset appears once). Fails if the end is not
    /// reached by `deadline`.
    pub(crate) fn read_partition(
        &mut self,
        topic: &str,
        partition: i32,
        is_end: Option<&dyn Fn(&super::batches::BatchRecord) -> bool>,
        deadline: Instant,
    ) -> io::Result<Vec<Batch>> {
        let mut next = 0i64;
        let mut max_bytes = 1 << 20;
        let mut out = Vec::new();
        loop {
            if Instant::now() > deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("{topic}/{partition}: no end marker by offset {next} before the deadline"),
                ));
            }
            let bytes = self.fetch(topic, partition, next, max_bytes)?;
            let decoded = decode_batches(&bytes)
                .map_err(|e| protocol_error(&format!("{topic}/{partition} from offset {next}"), e))?;
            if is_end.is_none() && decoded.batches.is_empty() && decoded.partial == 0 {
                return Ok(out);
            }
            if decoded.batches.is_empty() && decoded.partial > 0 {
                // One batch larger than the room given: give more.
                if max_bytes >= MAX_PARTITION_BYTES {
                    return Err(protocol_error(
                        &format!("{topic}/{partition} at offset {next}"),
                        format!("a batch larger than {MAX_PARTITION_BYTES} bytes"),
                    ));
                }
                max_bytes = max_bytes.saturating_mul(2).min(MAX_PARTITION_BYTES);
                continue;
            }
            for mut batch in decoded.batches {
                let after = batch.next_offset();
                if after <= next {
                    continue; // read already
                }
                batch.records.retain(|r| r.offset >= next);
                next = after;
                let end = is_end.and_then(|is_end| batch.records.iter().position(is_end));
                if let Some(at) = end {
                    batch.records.truncate(at + 1);
                    out.push(batch);
                    return Ok(out);
                }
                out.push(batch);
            }
        }
    }
}
