//! A tiny HTTP endpoint for Prometheus: `GET /metrics` answers with a registry in the text
//! exposition format, `GET /health` with `ok`. One request per connection, each connection
//! on a thread of its own (at most [`MAX_CONNECTIONS`] at once; more are answered `503`
//! at once), so a slow or silent client never holds up a scrape; no request body read:
//! nothing a user can send makes it allocate more than a few kilobytes per connection or
//! panic.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::Registry;

/// The most of a request head read before answering 431.
const MAX_HEAD: usize = 8 * 1024;
/// Connections served at once; the next ones are answered `503` without being read.
pub const MAX_CONNECTIONS: usize = 32;
/// How long a client has to send its request head, and to take the answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves a registry over HTTP until dropped.
///
/// ```
/// use std::io::{Read, Write};
/// use floe_runtime::metrics::{server::MetricsServer, Registry};
/// let registry = Registry::new();
/// registry.counter("jobs_total", "Jobs", &[]).add(3);
/// let server = MetricsServer::start("127.0.0.1:0", registry).unwrap();
/// let mut c = std::net::TcpStream::connect(server.addr()).unwrap();
/// c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
/// let mut response = String::new();
/// c.read_to_string(&mut response).unwrap();
/// assert!(response.starts_with("HTTP/1.1 200 OK"));
/// assert!(response.contains("jobs_total 3"));
/// ```
#[derive(Debug)]
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// Listens on `addr` (e.g. `127.0.0.1:9464`; port 0 picks a free one) and serves
    /// `registry` from a thread of its own.
    pub fn start(addr: impl ToSocketAddrs, registry: Registry) -> io::Result<MetricsServer> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new().name("metrics-http".into()).spawn(move || {
            let active = Arc::new(AtomicUsize::new(0));
            for conn in listener.incoming() {
                if flag.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = conn {
                    serve(stream, &registry, &active);
                }
            }
        })?;
        Ok(MetricsServer {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Answers `stream` on a thread of its own, or `503` at once when [`MAX_CONNECTIONS`] are
/// being served.
fn serve(mut stream: TcpStream, registry: &Registry, active: &Arc<AtomicUsize>) {
    if active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
        active.fetch_sub(1, Ordering::SeqCst);
        let _ = stream
            .set_write_timeout(Some(Duration::from_millis(200)))
            .and_then(|()| {
                respond(
                    &mut stream,
                    "503 Service Unavailable",
                    "text/plain",
                    "busy: try again\n",
                )
            });
        return;
    }
    let (registry, done) = (registry.clone(), active.clone());
    let spawned = std::thread::Builder::new().name("metrics-conn".into()).spawn(move || {
        if let Err(e) = answer(stream, &registry) {
            tracing::debug!(error = %e, "metrics endpoint: a request failed");
        }
        done.fetch_sub(1, Ordering::SeqCst);
    });
    if let Err(e) = spawned {
        active.fetch_sub(1, Ordering::SeqCst);
        tracing::warn!(error = %e, "metrics endpoint: cannot start a connection thread");
    }
}

/// Reads one request head and answers it.
fn answer(mut stream: TcpStream, registry: &Registry) -> io::Result<()> {
    stream.set_read_timeout(Some(CLIENT_TIMEOUT))?;
    stream.set_write_timeout(Some(CLIENT_TIMEOUT))?;
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() > MAX_HEAD {
            respond(
                &mut stream,
                "431 Request Header Fields Too Large",
                "text/plain",
                "request head too large\n",
            )?;
            // Read (a bounded amount of) what the client is still sending before closing, so
            // that it gets the answer rather than a reset.
            stream.shutdown(std::net::Shutdown::Write)?;
            stream.set_read_timeout(Some(Duration::from_millis(500)))?;
            let mut drained = 0;
            while drained < 64 * 1024 {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => drained += n,
                }
            }
            return Ok(());
        }
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = head.split(|b| *b == b'\r').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET", "/metrics") => respond(
            &mut stream,
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            &registry.render_prometheus(),
        ),
        ("GET", "/health") | ("GET", "/") => respond(&mut stream, "200 OK", "text/plain", "ok\n"),
        ("GET", _) => respond(&mut stream, "404 Not Found", "text/plain", "not found: try /metrics\n"),
        _ => respond(
            &mut stream,
            "405 Method Not Allowed",
            "text/plain",
            "only GET is served\n",
        ),
    }
}

fn respond(stream: &mut TcpStream, status: &str, content_type: &str, body: &str) -> io::Result<()> {
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(addr: SocketAddr, request: &[u8]) -> String {
        let mut c = TcpStream::connect(addr).unwrap();
        c.write_all(request).unwrap();
        let mut out = String::new();
        c.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn serves_metrics_health_and_clear_errors_then_stops() {
        let registry = Registry::new();
        let c = registry.counter("floe_test_total", "A test", &[("job", "j")]);
        let server = MetricsServer::start("127.0.0.1:0", registry).unwrap();
        let addr = server.addr();
        c.add(41);
        c.inc();
        let metrics = get(addr, b"GET /metrics?x=1 HTTP/1.1\r\n\r\n");
        assert!(metrics.starts_with("HTTP/1.1 200 OK\r\n"), "{metrics}");
        assert!(metrics.contains("version=0.0.4"));
        assert!(metrics.contains("floe_test_total{job=\"j\"} 42\n"), "{metrics}");
        assert!(get(addr, b"GET /health HTTP/1.1\r\n\r\n").ends_with("\r\n\r\nok\n"));
        assert!(get(addr, b"GET /nope HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
        assert!(get(addr, b"POST /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405"));
        let huge = vec![b'a'; MAX_HEAD + 2048];
        assert!(get(addr, &huge).starts_with("HTTP/1.1 431"));
        drop(server);
        assert!(TcpStream::connect(addr).is_err(), "the endpoint is closed once dropped");
    }

    #[test]
    fn silent_clients_do_not_hold_up_a_scrape() {
        let registry = Registry::new();
        registry.counter("floe_test_total", "A test", &[]).add(7);
        let server = MetricsServer::start("127.0.0.1:0", registry).unwrap();
        // Connections that never send a request: each is held for CLIENT_TIMEOUT, so served
        // one after another they would delay the scrape below by minutes.
        let silent: Vec<TcpStream> = (0..MAX_CONNECTIONS - 1)
            .map(|_| TcpStream::connect(server.addr()).unwrap())
            .collect();
        let mut c = TcpStream::connect(server.addr()).unwrap();
        // Less than one client timeout: the scrape must not wait for any silent client.
        c.set_read_timeout(Some(CLIENT_TIMEOUT / 2)).unwrap();
        c.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
        let mut out = String::new();
        c.read_to_string(&mut out)
            .expect("the scrape is answered while silent clients wait");
        assert!(out.contains("floe_test_total 7"), "{out}");
        // One more than the cap is turned away at once rather than queued.
        let extra: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(server.addr()).unwrap()).collect();
        let mut busy = TcpStream::connect(server.addr()).unwrap();
        busy.set_read_timeout(Some(CLIENT_TIMEOUT / 2)).unwrap();
        let mut answer = String::new();
        busy.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        drop((silent, extra));
    }
}
