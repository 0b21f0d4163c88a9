//! QUIC as the peer layer uses it: the endpoint, the one dial that both
//! the network and the fetcher make, length-prefixed frames, the close
//! codes a connection ends with, and [`NetError`], what can go wrong on
//! one request.
//!
//! A frame is a 4-byte little-endian length and that many bytes of one
//! wire message (schema/p2p.md); every read is bounded in size before it
//! allocates and in time. Nothing here knows what a message means or
//! keeps state about a peer: that is for the handshake, the peer book and
//! the services above.

use super::peerbook::NetLimits;
use super::peers::PeerAddr;
use super::tls::{self, Identity};
use super::wire::{self, Request, Response};
use crate::chain::encoding::DecodeError;
use crate::chain::Hash32;
use anyhow::Context;
use serde::Serialize;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;

/// The peer is this node, on another address, or broke the handshake.
pub const CLOSE_REFUSED: u32 = 1;
/// The peer is banned, or just was.
pub const CLOSE_BANNED: u32 = 2;
/// A second connection to a peer already connected.
pub const CLOSE_DUPLICATE: u32 = 3;
/// This node stops, or its fetch is over.
pub const CLOSE_SHUTDOWN: u32 = 4;
/// The peer did not answer in time (it may reconnect; no ban).
pub const CLOSE_SLOW: u32 = 5;
/// Every inbound slot was taken, and the peer was evicted for a new one.
pub const CLOSE_EVICTED: u32 = 6;

/// What went wrong dialing a peer or on one request to it.
#[derive(Debug, Error)]
pub enum NetError {
    #[error("timed out")]
    Timeout,
    #[error("message of {found} bytes, over the limit of {limit}")]
    Oversized { found: usize, limit: usize },
    #[error("malformed message: {0}")]
    Malformed(DecodeError),
    /// The connection failed or was closed before a stream opened.
    #[error("connection: {0}")]
    Connection(quinn::ConnectionError),
    #[error("connection: {0}")]
    Read(quinn::ReadExactError),
    #[error("connection: {0}")]
    Write(quinn::WriteError),
    /// The task that made the request ended without an answer.
    #[error("connection: the request's task failed: {0}")]
    Task(tokio::task::JoinError),
    /// This node could not make its TLS configuration for the dial.
    #[error("TLS setup for {addr}: {error:#}")]
    Tls {
        addr: SocketAddr,
        error: anyhow::Error,
    },
    #[error("connecting to {addr}: {error}")]
    Connect {
        addr: SocketAddr,
        error: quinn::ConnectError,
    },
    #[error("connecting to {addr}: {error}")]
    Handshake {
        addr: SocketAddr,
        error: quinn::ConnectionError,
    },
    /// `addr` is where it was dialed; the caller's line names it.
    #[error("no handshake in time")]
    HandshakeTimeout { addr: SocketAddr },
    #[error("the peer presented no ed25519 certificate")]
    NoKey { addr: SocketAddr },
}

impl NetError {
    /// Whether the peer broke the protocol (as opposed to a network failure).
    pub fn is_misbehaviour(&self) -> bool {
        matches!(self, NetError::Oversized { .. } | NetError::Malformed(_))
    }
}

/// The send priority of bulk answers (blocks, transactions, file chunks):
/// below the default 0 of every other stream, so that an answer to a
/// small request is not queued behind megabytes of blocks.
pub const BULK_PRIORITY: i32 = -1;
const _: () = assert!(BULK_PRIORITY < 0, "below quinn's default priority of 0");

/// QUIC transport settings: the stream, window and idle bounds of `limits`.
pub fn transport_config(limits: &NetLimits) -> anyhow::Result<Arc<quinn::TransportConfig>> {
    let mut transport = quinn::TransportConfig::default();
    transport
        .max_concurrent_bidi_streams(limits.max_streams.into())
        .max_concurrent_uni_streams(0u32.into())
        .receive_window(limits.receive_window.into())
        .stream_receive_window((wire::MAX_MESSAGE_BYTES as u32 + 1024).into())
        // Streams of one priority are sent one after the other, in the
        // order written, not interleaved: of a sync's batches asked at once,
        // the first arrives first, and its verifying starts, instead of all
        // arriving together at the end.
        .send_fairness(false)
        .keep_alive_interval(Some(Duration::from_secs(5)))
        .max_idle_timeout(Some(
            Duration::from_secs(30).try_into().context("idle timeout")?,
        ));
    Ok(Arc::new(transport))
}

/// The node's endpoint: accepting on `listen` when given, else a client
/// on an ephemeral port of every interface.
pub fn node_endpoint(
    identity: &Identity,
    transport: &Arc<quinn::TransportConfig>,
    listen: Option<SocketAddr>,
) -> anyhow::Result<quinn::Endpoint> {
    let bind = listen.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
    let endpoint = match listen {
        Some(_) => {
            let crypto =
                quinn::crypto::rustls::QuicServerConfig::try_from(identity.server_config()?)?;
            let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
            server.transport_config(Arc::clone(transport));
            endpoint(bind, Some(server))
        }
        None => endpoint(bind, None),
    }
    .with_context(|| format!("cannot bind UDP {bind}"))?;
    Ok(endpoint)
}

/// Bytes asked for each endpoint socket's receive and send buffers. The
/// kernel's default (about 200 KiB) overflows when blocks come in bursts
/// faster than a busy node reads them: every datagram dropped there costs
/// a retransmission and halves QUIC's congestion window. The kernel caps
/// what is asked at its own limit (`net.core.rmem_max`, `wmem_max`).
pub const SOCKET_BUFFER_BYTES: usize = 4 << 20;

/// An endpoint on [`udp_socket`]`(bind)`: a server when given its config.
fn endpoint(
    bind: SocketAddr,
    server: Option<quinn::ServerConfig>,
) -> std::io::Result<quinn::Endpoint> {
    let runtime = quinn::default_runtime()
        .ok_or_else(|| std::io::Error::other("no async runtime for the endpoint"))?;
    quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        server,
        udp_socket(bind)?,
        runtime,
    )
}

/// A non-blocking UDP socket bound to `bind`, with receive and send
/// buffers of [`SOCKET_BUFFER_BYTES`], or as much of that as the kernel
/// allows.
fn udp_socket(bind: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(bind),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    // A smaller buffer than asked is not an error: the kernel's limit holds.
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER_BYTES);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER_BYTES);
    socket.bind(&bind.into())?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// A client endpoint to reach `peers`: on the loopback address when every
/// peer is there, else on every interface, of the peers' address family.
pub fn client_endpoint(peers: &[PeerAddr]) -> anyhow::Result<quinn::Endpoint> {
    let loopback = !peers.is_empty() && peers.iter().all(|p| p.addr.ip().is_loopback());
    let bind = match peers.first().map(|p| p.addr) {
        Some(SocketAddr::V6(_)) if loopback => SocketAddr::from(([0u16, 0, 0, 0, 0, 0, 0, 1], 0)),
        Some(SocketAddr::V6(_)) => SocketAddr::from(([0u16; 8], 0)),
        _ if loopback => SocketAddr::from(([127, 0, 0, 1], 0)),
        _ => SocketAddr::from(([0, 0, 0, 0], 0)),
    };
    endpoint(bind, None).with_context(|| format!("cannot bind UDP {bind}"))
}

/// Open a QUIC connection to `target`, checking its certificate against
/// the key the address names, if it names one; returns the connection
/// and the peer's key. `timeout` bounds the handshake when given (else
/// the idle timeout does).
pub async fn dial(
    endpoint: &quinn::Endpoint,
    identity: &Identity,
    transport: &Arc<quinn::TransportConfig>,
    target: &PeerAddr,
    timeout: Option<Duration>,
) -> Result<(quinn::Connection, Hash32), NetError> {
    let addr = target.addr;
    let crypto = identity
        .client_config(target.id)
        .and_then(|c| Ok(quinn::crypto::rustls::QuicClientConfig::try_from(c)?))
        .map_err(|error| NetError::Tls { addr, error })?;
    let mut client = quinn::ClientConfig::new(Arc::new(crypto));
    client.transport_config(Arc::clone(transport));
    let connecting = endpoint
        .connect_with(client, addr, tls::SERVER_NAME)
        .map_err(|error| NetError::Connect { addr, error })?;
    let conn = match timeout {
        Some(timeout) => tokio::time::timeout(timeout, connecting)
            .await
            .map_err(|_| NetError::HandshakeTimeout { addr })?,
        None => connecting.await,
    }
    .map_err(|error| NetError::Handshake { addr, error })?;
    let id = tls::peer_id(&conn).ok_or(NetError::NoKey { addr })?;
    Ok((conn, id))
}

/// Read one frame of at most `limit` bytes within `timeout`.
pub async fn read_frame(
    recv: &mut quinn::RecvStream,
    limit: usize,
    timeout: Duration,
) -> Result<Vec<u8>, NetError> {
    let read = async {
        let mut len = [0u8; 4];
        recv.read_exact(&mut len).await.map_err(NetError::Read)?;
        let len = u32::from_le_bytes(len) as usize;
        if len > limit {
            return Err(NetError::Oversized { found: len, limit });
        }
        let mut bytes = vec![0u8; len];
        recv.read_exact(&mut bytes).await.map_err(NetError::Read)?;
        Ok(bytes)
    };
    tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| NetError::Timeout)?
}

/// Write `message` as one frame.
pub async fn write_frame<T: Serialize>(
    send: &mut quinn::SendStream,
    message: &T,
) -> Result<(), NetError> {
    send.write_all(&wire::frame(message))
        .await
        .map_err(NetError::Write)
}

/// Send one request on its own stream and read the answer.
pub async fn request_on(
    conn: &quinn::Connection,
    request: &Request,
    timeout: Duration,
) -> Result<Response, NetError> {
    let (mut send, mut recv) = tokio::time::timeout(timeout, conn.open_bi())
        .await
        .map_err(|_| NetError::Timeout)?
        .map_err(NetError::Connection)?;
    write_frame(&mut send, request).await?;
    let _ = send.finish();
    let bytes = read_frame(&mut recv, request.response_limit(), timeout).await?;
    wire::decode_response(&bytes, request.response_limit()).map_err(NetError::Malformed)
}

/// A line of the peer layer's log (target `p2p`).
pub fn log(message: std::fmt::Arguments) {
    tracing::info!(target: "p2p", "{message}");
}

/// A peer's key as log lines give it: its first 12 hex digits.
pub fn short(id: &Hash32) -> String {
    id.to_hex()[..12].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_broken_message_is_misbehaviour() {
        let oversized = NetError::Oversized {
            found: 9000,
            limit: 8192,
        };
        assert!(oversized.is_misbehaviour());
        assert_eq!(
            oversized.to_string(),
            "message of 9000 bytes, over the limit of 8192"
        );
        let malformed = NetError::Malformed(DecodeError::TrailingBytes {
            what: "request",
            count: 1,
        });
        assert!(malformed.is_misbehaviour());
        assert_eq!(
            malformed.to_string(),
            "malformed message: request has 1 trailing bytes"
        );
        let addr = SocketAddr::from(([127, 0, 0, 1], 9000));
        for failure in [
            NetError::Timeout,
            NetError::HandshakeTimeout { addr },
            NetError::NoKey { addr },
            NetError::Connection(quinn::ConnectionError::TimedOut),
        ] {
            assert!(!failure.is_misbehaviour(), "{failure}");
        }
    }

    /// An endpoint's socket gets the buffers asked for, up to the
    /// kernel's limit (Linux: `net.core.rmem_max` and `wmem_max`; it
    /// reports twice what it grants, for its own bookkeeping).
    #[test]
    fn an_endpoint_socket_has_the_buffers_asked_for_or_the_kernels_most() {
        let limit = |name| {
            std::fs::read_to_string(format!("/proc/sys/net/core/{name}"))
                .map(|v| v.trim().parse::<usize>().unwrap())
                .unwrap_or(SOCKET_BUFFER_BYTES)
        };
        let socket = udp_socket(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
        assert!(socket.local_addr().unwrap().port() != 0, "bound");
        let socket = socket2::SockRef::from(&socket);
        let granted = |asked: usize| asked.min(SOCKET_BUFFER_BYTES);
        assert!(
            socket.recv_buffer_size().unwrap() >= granted(limit("rmem_max")),
            "receive buffer {} with rmem_max {}",
            socket.recv_buffer_size().unwrap(),
            limit("rmem_max")
        );
        assert!(
            socket.send_buffer_size().unwrap() >= granted(limit("wmem_max")),
            "send buffer {} with wmem_max {}",
            socket.send_buffer_size().unwrap(),
            limit("wmem_max")
        );
        assert!(
            socket.nonblocking().unwrap(),
            "non-blocking, as the runtime needs"
        );
        assert_eq!(SOCKET_BUFFER_BYTES, 4 << 20);
    }

    /// The QUIC settings come from the limits and the wire's bounds (quinn
    /// shows them only through `Debug`): a peer's streams, none of them
    /// one-way, a stream window that holds the largest message, the
    /// connection window, bulk answers sent in the order written, and a
    /// keep-alive well inside the idle timeout.
    #[test]
    fn the_transport_is_set_from_the_limits() {
        let limits = NetLimits {
            max_streams: 7,
            receive_window: 3 << 20,
            ..NetLimits::default()
        };
        let shown = format!("{:?}", transport_config(&limits).unwrap());
        for field in [
            "max_concurrent_bidi_streams: 7,".to_string(),
            "max_concurrent_uni_streams: 0,".to_string(),
            format!("stream_receive_window: {},", wire::MAX_MESSAGE_BYTES + 1024),
            format!("receive_window: {},", 3 << 20),
            "send_fairness: false,".to_string(),
            "max_idle_timeout: Some(30000),".to_string(),
            "keep_alive_interval: Some(5s),".to_string(),
        ] {
            assert!(shown.contains(&field), "{field} not in {shown}");
        }
    }

    #[test]
    fn a_frame_is_a_little_endian_length_and_the_message() {
        let request = Request::GetAddrs;
        let framed = wire::frame(&request);
        let len = u32::from_le_bytes(framed[..4].try_into().unwrap()) as usize;
        assert_eq!(len, framed.len() - 4);
        assert_eq!(wire::decode_request(&framed[4..]), Ok(request));
    }
}
