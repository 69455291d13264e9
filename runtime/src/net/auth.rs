//! Who may connect to a worker: every connection between the workers of an attempt starts
//! with a mutual challenge-response over the attempt's secret ([`AttemptSecret`], which the
//! job manager gives each worker of the attempt and no one else), so a stranger can neither
//! feed a worker records or reports, nor receive them by listening on a reused port.
//!
//! The exchange, in frames (a little-endian `u32` length, then that many bytes):
//!
//! 1. acceptor → connector: the challenge, 32 random bytes `a`.
//! 2. connector → acceptor: `h ‖ c ‖ m`, where `h` is the connector's [`Hello`] (bincode),
//!    `c` 32 random bytes, and `m = HMAC-SHA256(secret, "floe-net-1 connector" ‖ a ‖ c ‖ h)`.
//! 3. acceptor → connector: `HMAC-SHA256(secret, "floe-net-1 acceptor" ‖ a ‖ c ‖ h)`.
//!
//! The acceptor checks `m` (in constant time) before it reads the hello at all, and the
//! connector checks the acceptor's answer before it sends a record or believes a restore
//! point. Fresh nonces on both sides make a recorded exchange useless to replay, and the two
//! labels keep one side's MAC from passing as the other's. After the exchange the
//! connection carries frames as before, with no cost per frame.

use std::io::{Read, Write};

use hmac::{Hmac, Mac};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::Sha256;

use super::codec::{read_frame, write_frame};
use super::reject::{Reason, Refusal};
use super::Hello;
use crate::error::{Result, RuntimeError};

/// Length of nonces and MACs.
const LEN: usize = 32;
/// Largest connector answer: a hello is a few dozen bytes.
pub(crate) const ANSWER_MAX: usize = 256;
const CONNECTOR: &[u8] = b"floe-net-1 connector";
const ACCEPTOR: &[u8] = b"floe-net-1 acceptor";
const DERIVE: &[u8] = b"floe-net-1 attempt";

type HmacSha256 = Hmac<Sha256>;

/// The secret the workers of one attempt share: 32 random bytes. It never appears in
/// `Debug` output; serde writes it as hex (the job manager hands it to workers inside
/// their `WorkerSpec`).
///
/// ```
/// use floe_runtime::AttemptSecret;
/// let key = AttemptSecret::from_bytes([7; 32]);
/// let (a, b) = (key.derive(1), key.derive(2));
/// assert_ne!(a, b);
/// assert_eq!(a, key.derive(1));
/// assert_eq!(format!("{a:?}"), "AttemptSecret(..)");
/// assert_eq!(AttemptSecret::from_hex(&a.to_hex()).unwrap(), a);
/// ```
#[derive(Clone)]
pub struct AttemptSecret([u8; LEN]);

impl AttemptSecret {
    /// A new secret from the operating system's random source.
    pub fn random() -> Result<Self> {
        Ok(AttemptSecret(random_bytes()?))
    }

    /// The secret with these bytes.
    pub fn from_bytes(bytes: [u8; LEN]) -> Self {
        AttemptSecret(bytes)
    }

    /// The secret of attempt `attempt` under this key (`HMAC-SHA256(key, label ‖ attempt)`):
    /// as unpredictable as random bytes to anyone without the key, different for every
    /// attempt, and telling nothing of the key or of other attempts' secrets. The job
    /// manager keeps one random key for its life and gives each attempt its own secret.
    pub fn derive(&self, attempt: u64) -> AttemptSecret {
        let mut mac = self.mac();
        mac.update(DERIVE);
        mac.update(&attempt.to_le_bytes());
        AttemptSecret(mac.finalize().into_bytes().into())
    }

    /// The secret as 64 hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Reads a secret written by [`AttemptSecret::to_hex`].
    pub fn from_hex(text: &str) -> Result<Self> {
        let mut bytes = [0u8; LEN];
        hex::decode_to_slice(text.trim(), &mut bytes)
            .map_err(|e| RuntimeError::InvalidGraph(format!("an attempt secret is 64 hex digits: {e}")))?;
        Ok(AttemptSecret(bytes))
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC takes keys of any length: this never fails.
        <HmacSha256 as Mac>::new_from_slice(&self.0).unwrap_or_else(|_| unreachable!("HMAC accepts any key length"))
    }

    /// The MAC of one side (`label`) over the exchange.
    fn tag(&self, label: &[u8], a: &[u8; LEN], c: &[u8; LEN], hello: &[u8]) -> HmacSha256 {
        let mut mac = self.mac();
        mac.update(label);
        mac.update(a);
        mac.update(c);
        mac.update(hello);
        mac
    }
}

impl PartialEq for AttemptSecret {
    /// Compares in time independent of where the secrets differ.
    fn eq(&self, other: &Self) -> bool {
        self.0.iter().zip(other.0.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl Eq for AttemptSecret {}

impl std::fmt::Debug for AttemptSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AttemptSecret(..)")
    }
}

impl Serialize for AttemptSecret {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for AttemptSecret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        AttemptSecret::from_hex(&text).map_err(serde::de::Error::custom)
    }
}

fn random_bytes() -> Result<[u8; LEN]> {
    let mut bytes = [0u8; LEN];
    getrandom::getrandom(&mut bytes)
        .map_err(|e| RuntimeError::Internal(format!("the operating system gave no random bytes: {e}")))?;
    Ok(bytes)
}

/// The acceptor's side: challenges the peer and answers its proof with ours. Returns the
/// peer's hello, authenticated but not yet checked against what this worker expects.
pub(crate) fn accept<S: Read + Write>(stream: &mut S, secret: &AttemptSecret) -> std::result::Result<Hello, Refusal> {
    let a = random_bytes().map_err(|e| Refusal::new(Reason::Internal, e.to_string()))?;
    write_frame(stream, &a)
        .and_then(|()| stream.flush())
        .map_err(|e| Refusal::io("sending the challenge", &e))?;
    let mut body = Vec::new();
    match read_frame(stream, &mut body, ANSWER_MAX) {
        Ok(true) => {}
        Ok(false) => return Err(Refusal::new(Reason::Closed, "closed without answering the challenge")),
        Err(e) => return Err(Refusal::io("reading the answer to the challenge", &e)),
    }
    if body.len() <= 2 * LEN {
        return Err(Refusal::new(
            Reason::Malformed,
            format!("an answer of {} bytes, not hello ‖ nonce ‖ MAC", body.len()),
        ));
    }
    let (hello, rest) = body.split_at(body.len() - 2 * LEN);
    let (c, m) = rest.split_at(LEN);
    let c: [u8; LEN] = c
        .try_into()
        .map_err(|_| Refusal::new(Reason::Malformed, "a short nonce"))?;
    secret
        .tag(CONNECTOR, &a, &c, hello)
        .verify_slice(m)
        .map_err(|_| Refusal::new(Reason::BadMac, "its MAC does not prove the attempt's secret"))?;
    let parsed: Hello = bincode::deserialize(hello).map_err(|e| {
        Refusal::new(
            Reason::Malformed,
            format!("an authenticated hello that does not decode: {e}"),
        )
    })?;
    let proof = secret.tag(ACCEPTOR, &a, &c, hello).finalize().into_bytes();
    write_frame(stream, &proof)
        .and_then(|()| stream.flush())
        .map_err(|e| Refusal::io("sending our proof", &e))?;
    Ok(parsed)
}

/// How the connector's side of the exchange failed.
#[derive(Debug)]
pub(crate) enum ConnectFailure {
    /// The acceptor closed the connection before its challenge (it was busy with other
    /// handshakes): connecting again may succeed.
    NoChallenge,
    /// Anything else: the connection is unusable and the peer not proven.
    Refused(Refusal),
}

/// The connector's side: answers the challenge with `hello` and our proof, and checks the
/// acceptor's proof before anything else crosses.
pub(crate) fn connect<S: Read + Write>(
    stream: &mut S,
    secret: &AttemptSecret,
    hello: &Hello,
) -> std::result::Result<(), ConnectFailure> {
    let mut body = Vec::new();
    match read_frame(stream, &mut body, LEN) {
        Ok(true) => {}
        Ok(false) => return Err(ConnectFailure::NoChallenge),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Err(ConnectFailure::NoChallenge),
        Err(e) => return Err(ConnectFailure::Refused(Refusal::io("reading the challenge", &e))),
    }
    let a: [u8; LEN] = body.as_slice().try_into().map_err(|_| {
        ConnectFailure::Refused(Refusal::new(
            Reason::Impostor,
            format!("a challenge of {} bytes, not {LEN}", body.len()),
        ))
    })?;
    let refused = |r: Refusal| ConnectFailure::Refused(r);
    let c = random_bytes().map_err(|e| refused(Refusal::new(Reason::Internal, e.to_string())))?;
    let h = bincode::serialize(hello).map_err(|e| refused(Refusal::new(Reason::Internal, e.to_string())))?;
    let mut answer = Vec::with_capacity(h.len() + 2 * LEN);
    answer.extend_from_slice(&h);
    answer.extend_from_slice(&c);
    answer.extend_from_slice(&secret.tag(CONNECTOR, &a, &c, &h).finalize().into_bytes());
    write_frame(stream, &answer)
        .and_then(|()| stream.flush())
        .map_err(|e| refused(Refusal::io("sending our answer", &e)))?;
    match read_frame(stream, &mut body, LEN) {
        Ok(true) => {}
        Ok(false) => {
            return Err(refused(Refusal::new(
                Reason::Impostor,
                "closed instead of proving the attempt's secret",
            )))
        }
        Err(e) => return Err(refused(Refusal::io("reading the acceptor's proof", &e))),
    }
    secret.tag(ACCEPTOR, &a, &c, &h).verify_slice(&body).map_err(|_| {
        refused(Refusal::new(
            Reason::Impostor,
            "its proof does not show the attempt's secret: not a worker of this attempt",
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};

    fn hello() -> Hello {
        Hello::Data {
            attempt: 3,
            edge: 1,
            from: 0,
            to: 1,
        }
    }

    /// Runs `accept` on one end of a real loopback connection and `client` on the other.
    fn exchange<T: Send + 'static>(
        acceptor_secret: AttemptSecret,
        client: impl FnOnce(TcpStream) -> T + Send + 'static,
    ) -> (std::result::Result<Hello, Refusal>, T) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let c = std::thread::spawn(move || client(TcpStream::connect(addr).unwrap()));
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
        let r = accept(&mut s, &acceptor_secret);
        drop(s);
        (r, c.join().unwrap())
    }

    #[test]
    fn workers_with_the_secret_prove_it_to_each_other() {
        let secret = AttemptSecret::from_bytes([1; 32]);
        let s2 = secret.clone();
        let (accepted, connected) = exchange(secret, move |mut s| connect(&mut s, &s2, &hello()));
        assert_eq!(accepted.unwrap(), hello());
        assert!(connected.is_ok(), "{connected:?}");
    }

    #[test]
    fn a_wrong_secret_is_refused_on_both_sides() {
        let (accepted, connected) = exchange(AttemptSecret::from_bytes([1; 32]), |mut s| {
            connect(&mut s, &AttemptSecret::from_bytes([2; 32]), &hello())
        });
        assert_eq!(accepted.unwrap_err().reason, Reason::BadMac);
        match connected {
            Err(ConnectFailure::Refused(r)) => assert_eq!(r.reason, Reason::Impostor, "{r:?}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_impostor_acceptor_is_caught_by_the_connector() {
        // Someone listening on a worker's port, sending a challenge and a made-up proof.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let impostor = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            write_frame(&mut s, &[9; 32]).unwrap();
            let mut body = Vec::new();
            read_frame(&mut s, &mut body, 1024).unwrap();
            write_frame(&mut s, &[0; 32]).unwrap();
        });
        let mut s = TcpStream::connect(addr).unwrap();
        let r = connect(&mut s, &AttemptSecret::from_bytes([1; 32]), &hello());
        impostor.join().unwrap();
        match r {
            Err(ConnectFailure::Refused(r)) => assert_eq!(r.reason, Reason::Impostor),
            other => panic!("{other:?}"),
        }
    }

    /// Sends `answer` (built from the challenge) as the connector's answer.
    fn answer_with(answer: impl FnOnce([u8; 32]) -> Vec<u8> + Send + 'static) -> Refusal {
        let (accepted, ()) = exchange(AttemptSecret::from_bytes([1; 32]), move |mut s| {
            let mut body = Vec::new();
            read_frame(&mut s, &mut body, 32).unwrap();
            let a: [u8; 32] = body.as_slice().try_into().unwrap();
            let _ = write_frame(&mut s, &answer(a));
            let _ = s.read(&mut [0u8; 64]);
        });
        accepted.unwrap_err()
    }

    #[test]
    fn tampered_replayed_and_reflected_answers_are_refused() {
        let secret = AttemptSecret::from_bytes([1; 32]);
        let h = bincode::serialize(&hello()).unwrap();
        // A valid MAC over another hello than the one sent.
        let (s, h2) = (secret.clone(), h.clone());
        let r = answer_with(move |a| {
            let c = [5; 32];
            let mut other = h2.clone();
            other[4] ^= 1;
            let mut body = other;
            body.extend_from_slice(&c);
            body.extend_from_slice(&s.tag(CONNECTOR, &a, &c, &h2).finalize().into_bytes());
            body
        });
        assert_eq!(r.reason, Reason::BadMac);
        // A MAC for another challenge (a recorded exchange replayed).
        let (s, h2) = (secret.clone(), h.clone());
        let r = answer_with(move |_| {
            let c = [5; 32];
            let mut body = h2.clone();
            body.extend_from_slice(&c);
            body.extend_from_slice(&s.tag(CONNECTOR, &[0; 32], &c, &h2).finalize().into_bytes());
            body
        });
        assert_eq!(r.reason, Reason::BadMac);
        // The acceptor's own proof reflected back as the connector's MAC.
        let (s, h2) = (secret, h);
        let r = answer_with(move |a| {
            let c = [5; 32];
            let mut body = h2.clone();
            body.extend_from_slice(&c);
            body.extend_from_slice(&s.tag(ACCEPTOR, &a, &c, &h2).finalize().into_bytes());
            body
        });
        assert_eq!(r.reason, Reason::BadMac);
    }

    #[test]
    fn short_huge_and_missing_answers_are_refused_with_their_reason() {
        assert_eq!(answer_with(|_| vec![0; 10]).reason, Reason::Malformed);
        assert_eq!(answer_with(|_| vec![0; 300]).reason, Reason::Oversized);
        let (accepted, ()) = exchange(AttemptSecret::from_bytes([1; 32]), |mut s| {
            // A 4 GiB length prefix, and nothing after it.
            s.write_all(&u32::MAX.to_le_bytes()).unwrap();
            let _ = s.read(&mut [0u8; 64]);
        });
        assert_eq!(accepted.unwrap_err().reason, Reason::Oversized);
        let (accepted, ()) = exchange(AttemptSecret::from_bytes([1; 32]), drop);
        assert_eq!(accepted.unwrap_err().reason, Reason::Closed);
    }
}
