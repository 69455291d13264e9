//! HTTPS for the REST API: a certificate and key in PEM files, served with the system's
//! OpenSSL. Handshakes run on tasks of their own, so a client that connects and says
//! nothing holds up no one else; a handshake that does not finish in time is dropped.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_native_tls::{TlsAcceptor, TlsStream};

use crate::error::{ClusterError, Result};

/// Longest a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Finished handshakes waiting for the server to take them.
const READY_BACKLOG: usize = 64;

/// The job manager's certificate (chain) and private key, both PEM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate, then any intermediates (PEM).
    pub cert: PathBuf,
    /// The private key (PEM, PKCS#8: `-----BEGIN PRIVATE KEY-----`).
    pub key: PathBuf,
}

impl TlsFiles {
    /// A fresh self-signed certificate for 127.0.0.1 (a day long) and its key, written to
    /// `dir` by the `openssl` command: for tests, and for trying HTTPS out on one machine.
    pub fn self_signed(dir: &std::path::Path) -> Result<TlsFiles> {
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        let out = std::process::Command::new("openssl")
            .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"])
            .args(["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .map_err(|e| ClusterError::io("running openssl (install it: apt-get install openssl)", e))?;
        if !out.status.success() {
            return Err(ClusterError::Config(format!(
                "openssl could not make a certificate: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(TlsFiles { cert, key })
    }

    /// Reads both files and builds the acceptor; errors name the file and what to change.
    pub(crate) fn acceptor(&self) -> Result<TlsAcceptor> {
        let read = |path: &PathBuf, what: &str| {
            std::fs::read(path).map_err(|e| ClusterError::io(format!("reading the TLS {what} {}", path.display()), e))
        };
        let cert = read(&self.cert, "certificate")?;
        let key = read(&self.key, "key")?;
        let identity = native_tls::Identity::from_pkcs8(&cert, &key).map_err(|e| {
            ClusterError::Config(format!(
                "--tls-cert {} / --tls-key {}: {e} (give PEM files: the certificate, and its key \
                 in PKCS#8 form, `-----BEGIN PRIVATE KEY-----`; convert an RSA key with \
                 `openssl pkcs8 -topk8 -nocrypt`)",
                self.cert.display(),
                self.key.display()
            ))
        })?;
        let acceptor = native_tls::TlsAcceptor::new(identity)
            .map_err(|e| ClusterError::Config(format!("the TLS certificate and key do not work together: {e}")))?;
        Ok(TlsAcceptor::from(acceptor))
    }
}

/// A listener whose connections have finished their TLS handshake.
pub(crate) struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    accepting: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    /// Accepts on `tcp` in the background, handshaking each connection on its own task.
    pub(crate) fn new(tcp: TcpListener, acceptor: TlsAcceptor) -> io::Result<TlsListener> {
        let local = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(READY_BACKLOG);
        let accepting = tokio::spawn(async move {
            loop {
                let (stream, peer) = match tcp.accept().await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors and the like: wait rather than spin.
                        tracing::warn!("accepting a connection failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, "TLS handshake failed: {e}"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener {
            ready,
            local,
            accepting,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(connection) => connection,
            // The accepting task ended (it does not, short of a panic): serve nothing more.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}
