//! Helpers for the peer-network tests: free UDP ports, the status file a
//! running node keeps, and [`Adversary`], an in-process peer that speaks
//! the real protocol — mutual TLS from a fresh ed25519 key, the real ALPN,
//! framed wire messages — so that a test can break it on purpose.

use super::node::Node;
use ed25519_dalek::SigningKey;
use pouwd::chain::Hash32;
use pouwd::p2p::tls::{Identity, ALPN, SERVER_NAME};
use pouwd::p2p::wire::{self, Hello, Request, Response};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde_json::Value;
use std::collections::BTreeSet;
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A UDP port on 127.0.0.1 that was free a moment ago and that no other
/// test of this process has been given.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    loop {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind a UDP socket");
        let port = socket.local_addr().expect("local address").port();
        if GIVEN.lock().expect("ports").insert(port) {
            return port;
        }
    }
}

/// `127.0.0.1:port`
pub fn local(port: u16) -> String {
    format!("127.0.0.1:{port}")
}

/// The status a running node last wrote into its data dir.
pub fn running_status(dir: &Path) -> Option<Value> {
    let text = std::fs::read_to_string(dir.join("status.json")).ok()?;
    serde_json::from_str(&text).ok()
}

/// Height and tip hash from a running node's status file (0 and "" before it exists).
pub fn running_tip(dir: &Path) -> (u64, String) {
    running_status(dir).map_or((0, String::new()), |s| {
        (
            s["height"].as_u64().unwrap_or(0),
            s["tip"].as_str().unwrap_or("").to_string(),
        )
    })
}

/// Poll `done` every 20 ms; after `limit`, panics naming `what` and
/// showing the last lines each of `nodes` logged (blocks mined left out).
pub fn wait_until(
    limit: Duration,
    what: &str,
    nodes: &[&Node],
    mut done: impl FnMut() -> bool,
) -> Duration {
    let started = Instant::now();
    loop {
        if done() {
            return started.elapsed();
        }
        if started.elapsed() > limit {
            let mut logs = String::new();
            for (i, node) in nodes.iter().enumerate() {
                let lines: Vec<String> = node
                    .lines()
                    .into_iter()
                    .filter(|l| !l.starts_with("mined "))
                    .collect();
                let tail = &lines[lines.len().saturating_sub(20)..];
                logs.push_str(&format!("--- node {i}:\n{}\n", tail.join("\n")));
            }
            panic!("{what}: not within {limit:?}\n{logs}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A hello for a node on `genesis`, claiming `best_work` (big-endian).
pub fn hello(genesis: Hash32, best_height: u64, best_work: [u8; 32]) -> Hello {
    Hello {
        version: wire::PROTOCOL_VERSION,
        genesis,
        best_height,
        best_hash: Hash32::ZERO,
        best_work: Hash32(best_work),
        listen_port: None,
    }
}

/// What a test's handler makes of a request the node sent: `None` leaves
/// it unanswered, its stream open.
pub type Handler = dyn Fn(&Request) -> Option<Response> + Send + Sync;

/// A peer under the test's control, on its own small async runtime.
pub struct Adversary {
    runtime: Arc<tokio::runtime::Runtime>,
    endpoint: quinn::Endpoint,
    identity: Identity,
    /// Its peer id, as nodes log it (the first 12 hex digits) and ban it.
    pub id: Hash32,
}

impl Default for Adversary {
    fn default() -> Self {
        Adversary::new()
    }
}

impl Adversary {
    /// A fresh identity: a new ed25519 key, so earlier bans do not apply,
    /// on a loopback address of its own network group (127.G.H.1), so
    /// that banning it bans neither the honest nodes on 127.0.0.1 nor
    /// other adversaries.
    pub fn new() -> Adversary {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let [_, _, g, h] = n.to_be_bytes();
        Adversary::at(std::net::Ipv4Addr::new(127, 100 + g % 100, h, 1))
    }

    /// A fresh identity connecting from the loopback address `ip`.
    pub fn at(ip: std::net::Ipv4Addr) -> Adversary {
        let key = SigningKey::generate(&mut rand_core::OsRng);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let runtime = Arc::new(runtime);
        let endpoint = {
            let _context = runtime.enter();
            quinn::Endpoint::client(SocketAddr::from((ip, 0))).expect("UDP endpoint")
        };
        Adversary {
            runtime,
            endpoint,
            identity: Identity::new(&key).expect("TLS identity"),
            id: Hash32(key.verifying_key().to_bytes()),
        }
    }

    /// The id as the node's log lines shorten it.
    pub fn short_id(&self) -> String {
        self.id.to_hex()[..12].to_string()
    }

    /// Connect with a client certificate, as nodes do.
    pub fn connect(&self, addr: SocketAddr) -> Result<Conn, String> {
        let crypto = self
            .identity
            .client_config(None)
            .map_err(|e| e.to_string())?;
        self.connect_with(addr, crypto)
    }

    /// Connect presenting no client certificate at all.
    pub fn connect_without_certificate(&self, addr: SocketAddr) -> Result<Conn, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = Arc::new(AnyServer(provider.signature_verification_algorithms));
        let mut crypto = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        crypto.alpn_protocols = vec![ALPN.to_vec()];
        self.connect_with(addr, crypto)
    }

    fn connect_with(&self, addr: SocketAddr, crypto: rustls::ClientConfig) -> Result<Conn, String> {
        let crypto =
            quinn::crypto::rustls::QuicClientConfig::try_from(crypto).map_err(|e| e.to_string())?;
        let config = quinn::ClientConfig::new(Arc::new(crypto));
        let _context = self.runtime.enter();
        let connecting = self
            .endpoint
            .connect_with(config, addr, SERVER_NAME)
            .map_err(|e| e.to_string())?;
        let conn = self.runtime.block_on(async {
            tokio::time::timeout(Duration::from_secs(10), connecting)
                .await
                .map_err(|_| "handshake timed out".to_string())?
                .map_err(|e| e.to_string())
        })?;
        Ok(Conn {
            runtime: Arc::clone(&self.runtime),
            conn,
            requests: Arc::new(Mutex::new(Vec::new())),
        })
    }
}

/// One connection of an [`Adversary`] to a node.
pub struct Conn {
    /// Shared with the adversary, so either may be dropped first.
    runtime: Arc<tokio::runtime::Runtime>,
    pub conn: quinn::Connection,
    /// Every request the node sent, in order of arrival.
    pub requests: Arc<Mutex<Vec<Request>>>,
}

/// Read one framed message, or whatever error ends the stream.
async fn read_frame(recv: &mut quinn::RecvStream, limit: usize) -> Result<Vec<u8>, String> {
    let mut len = [0u8; 4];
    recv.read_exact(&mut len).await.map_err(|e| e.to_string())?;
    let len = u32::from_le_bytes(len) as usize;
    if len > limit {
        return Err(format!("{len} bytes is over {limit}"));
    }
    let mut bytes = vec![0u8; len];
    recv.read_exact(&mut bytes)
        .await
        .map_err(|e| e.to_string())?;
    Ok(bytes)
}

/// Send `bytes` on a new stream and read the answer's frame.
async fn exchange(
    conn: &quinn::Connection,
    bytes: &[u8],
    limit: usize,
) -> Result<Response, String> {
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
    send.write_all(bytes).await.map_err(|e| e.to_string())?;
    let _ = send.finish();
    let frame = read_frame(&mut recv, limit).await?;
    wire::decode_response(&frame, limit).map_err(|e| e.to_string())
}

/// What [`Conn::flood`] got back.
#[derive(Clone, Copy, Debug)]
pub struct FloodReport {
    /// Requests sent.
    pub sent: usize,
    /// Answered with anything but `Refused`.
    pub served: usize,
    /// Answered with `Refused` (rate limited).
    pub refused: usize,
    /// From the first request to the end of the flood.
    pub elapsed: Duration,
}

impl Conn {
    /// Send one request and read its answer.
    pub fn request(&self, request: &Request) -> Result<Response, String> {
        self.send_raw(&wire::frame(request), request.response_limit())
    }

    /// Send arbitrary bytes as a request and read an answer.
    pub fn send_raw(&self, bytes: &[u8], limit: usize) -> Result<Response, String> {
        let conn = self.conn.clone();
        let bytes = bytes.to_vec();
        self.runtime.block_on(async move {
            tokio::time::timeout(Duration::from_secs(10), exchange(&conn, &bytes, limit))
                .await
                .map_err(|_| "no answer within 10 s".to_string())?
        })
    }

    /// Answer the node's requests in the background with `handler`;
    /// every request is recorded in [`Conn::requests`].
    pub fn serve(&self, handler: Arc<Handler>) {
        let conn = self.conn.clone();
        let requests = Arc::clone(&self.requests);
        self.runtime.spawn(async move {
            while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                let conn = conn.clone();
                let handler = Arc::clone(&handler);
                let requests = Arc::clone(&requests);
                tokio::spawn(async move {
                    let Ok(bytes) = read_frame(&mut recv, wire::MAX_REQUEST_BYTES).await else {
                        return;
                    };
                    let Ok(request) = wire::decode_request(&bytes) else {
                        return;
                    };
                    requests.lock().expect("requests").push(request.clone());
                    match handler(&request) {
                        Some(response) => {
                            let _ = send.write_all(&wire::frame(&response)).await;
                            let _ = send.finish();
                        }
                        // Keep the stream open, unanswered, while the connection lasts.
                        None => {
                            conn.closed().await;
                            drop(send);
                        }
                    }
                });
            }
        });
    }

    /// A well-behaved answer to what a node asks on its own.
    pub fn serve_politely(&self) {
        self.serve(Arc::new(|request: &Request| {
            Some(match request {
                Request::Announce { .. } => Response::Ok,
                Request::GetAddrs => Response::Addrs(Vec::new()),
                Request::GetHashes { .. } => Response::Hashes(Vec::new()),
                Request::GetBlocks(_) => Response::Blocks(Vec::new()),
                Request::AnnounceTxs(_) => Response::Ok,
                Request::GetTxs(_) => Response::Txs(Vec::new()),
                _ => Response::NotFound,
            })
        }));
    }

    /// Open `streams` streams at once, each sending requests back to back,
    /// until `total` were sent or the connection ends; returns what came back.
    pub fn flood(&self, streams: usize, total: usize, request: &Request) -> FloodReport {
        use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
        let sent = Arc::new(AtomicUsize::new(0));
        let served = Arc::new(AtomicUsize::new(0));
        let refused = Arc::new(AtomicUsize::new(0));
        let frame = wire::frame(request);
        let limit = request.response_limit();
        let mut tasks = tokio::task::JoinSet::new();
        let started = std::time::Instant::now();
        for _ in 0..streams {
            let conn = self.conn.clone();
            let (sent, served, refused) =
                (Arc::clone(&sent), Arc::clone(&served), Arc::clone(&refused));
            let frame = frame.clone();
            tasks.spawn_on(
                async move {
                    while sent.fetch_add(1, SeqCst) < total {
                        match exchange(&conn, &frame, limit).await {
                            Ok(Response::Refused(_)) => refused.fetch_add(1, SeqCst),
                            Ok(_) => served.fetch_add(1, SeqCst),
                            Err(_) if conn.close_reason().is_some() => break,
                            Err(_) => 0,
                        };
                    }
                },
                self.runtime.handle(),
            );
        }
        self.runtime.block_on(async {
            let _ = tokio::time::timeout(Duration::from_secs(20), async {
                while tasks.join_next().await.is_some() {}
            })
            .await;
        });
        FloodReport {
            sent: sent.load(SeqCst).min(total),
            served: served.load(SeqCst),
            refused: refused.load(SeqCst),
            elapsed: started.elapsed(),
        }
    }

    /// Wait for the node to close the connection; `None` if it stays open.
    pub fn closed_within(&self, limit: Duration) -> Option<quinn::ConnectionError> {
        let conn = self.conn.clone();
        self.runtime
            .block_on(async move { tokio::time::timeout(limit, conn.closed()).await.ok() })
    }

    /// The application close code the node gave, if it closed that way.
    pub fn close_code(error: &quinn::ConnectionError) -> Option<u64> {
        match error {
            quinn::ConnectionError::ApplicationClosed(close) => Some(close.error_code.into_inner()),
            _ => None,
        }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.conn.close(0u32.into(), b"test over");
    }
}

/// Accepts any server certificate: the point is the missing client one.
#[derive(Debug)]
struct AnyServer(rustls::crypto::WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("TLS 1.2".into()))
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}
