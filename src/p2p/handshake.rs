//! The Hello exchange that opens every connection, dialed or accepted,
//! by the node's network and by the training-file fetcher alike.
//!
//! The dialer opens a stream and sends its [`Hello`]; the acceptor checks
//! it with [`check_hello`] and answers with its own Hello or `Refused`
//! and the reason; the dialer checks that answer the same way. Two nodes
//! talk only when both run [`wire::PROTOCOL_VERSION`] and share a genesis.
//!
//! [`check_hello`] is pure; [`greet`] is the dialer's half over a
//! connection and [`answer`] the acceptor's. None of them bans: what a bad
//! Hello costs the peer is the caller's to decide, since the caller keeps
//! the peer book.

use super::transport::{self, NetError, CLOSE_BANNED, CLOSE_REFUSED};
use super::wire::{self, Hello, Request, Response};
use crate::chain::encoding::DecodeError;
use crate::chain::Hash32;
use std::time::Duration;
use thiserror::Error;

/// Why a peer's Hello is refused; the text is what the peer is told.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HelloError {
    #[error("protocol version {theirs} is not ours ({ours})")]
    Version { theirs: u32, ours: u32 },
    #[error("genesis {theirs} is not ours ({ours}): another network")]
    Genesis { theirs: Hash32, ours: Hash32 },
}

/// Whether a peer saying `theirs` may talk to a node saying `ours`: the
/// same protocol version and the same genesis. Heights and work are not
/// checked here: a peer behind or ahead is still a peer.
pub fn check_hello(ours: &Hello, theirs: &Hello) -> Result<(), HelloError> {
    if theirs.version != ours.version {
        return Err(HelloError::Version {
            theirs: theirs.version,
            ours: ours.version,
        });
    }
    if theirs.genesis != ours.genesis {
        return Err(HelloError::Genesis {
            theirs: theirs.genesis,
            ours: ours.genesis,
        });
    }
    Ok(())
}

/// How the dialer's half of the exchange ended, when the peer answered.
#[derive(Debug)]
pub enum Greeting {
    /// Both sides accept each other; `Hello` is the peer's.
    Accepted(Hello),
    /// The peer's Hello fails [`check_hello`]; the connection is closed.
    WeRefused { reason: HelloError, theirs: Hello },
    /// The peer refused ours, with its reason.
    TheyRefused(String),
    /// The peer answered with something other than Hello or Refused.
    Unexpected(Response),
}

/// Send `ours` on a new stream of `conn` and check the answer. A refusal
/// of ours closes the connection with [`CLOSE_REFUSED`] and the reason.
pub async fn greet(
    conn: &quinn::Connection,
    ours: &Hello,
    timeout: Duration,
) -> Result<Greeting, NetError> {
    Ok(
        match transport::request_on(conn, &Request::Hello(ours.clone()), timeout).await? {
            Response::Hello(theirs) => match check_hello(ours, &theirs) {
                Ok(()) => Greeting::Accepted(theirs),
                Err(reason) => {
                    conn.close(CLOSE_REFUSED.into(), reason.to_string().as_bytes());
                    Greeting::WeRefused { reason, theirs }
                }
            },
            Response::Refused(reason) => Greeting::TheyRefused(reason),
            other => Greeting::Unexpected(other),
        },
    )
}

/// How the acceptor's half of the exchange ended, when the dialer sent a
/// Hello.
#[derive(Debug)]
pub enum Answered {
    /// Both sides accept each other: ours was sent; `Hello` is the dialer's.
    Accepted(Hello),
    /// The dialer's Hello fails [`check_hello`]: it was told the reason,
    /// and the connection is closed with [`CLOSE_REFUSED`].
    Refused { reason: HelloError, theirs: Hello },
}

/// Why the acceptor's half ended before a Hello was read; the text is
/// what a ban for it says.
#[derive(Debug, Error)]
pub enum AcceptError {
    /// The dialer opened no stream in time.
    #[error("no hello in time")]
    NoStream,
    #[error("connection: {0}")]
    Connection(quinn::ConnectionError),
    /// The first frame did not come whole, in time and within the size bound.
    #[error("bad hello: {0}")]
    Frame(NetError),
    #[error("first request was not a hello")]
    NotHello,
    #[error("malformed hello: {0}")]
    Malformed(DecodeError),
}

impl AcceptError {
    /// Whether the dialer broke the protocol (as opposed to a slow or
    /// failed connection).
    pub fn is_misbehaviour(&self) -> bool {
        match self {
            AcceptError::Frame(e) => e.is_misbehaviour(),
            AcceptError::NotHello | AcceptError::Malformed(_) => true,
            AcceptError::NoStream | AcceptError::Connection(_) => false,
        }
    }
}

/// How long a refused dialer is given to read the reason before the
/// connection closes (a close discards what is still unread).
const REFUSAL_LINGER: Duration = Duration::from_millis(200);

/// The acceptor's half: read the dialer's Hello on the first stream of
/// `conn`, check it against `ours` and answer with ours, or with
/// `Refused` and the reason. A first message that is malformed or over
/// its bound closes the connection with [`CLOSE_BANNED`], one that is not
/// a Hello with [`CLOSE_REFUSED`].
pub async fn answer(
    conn: &quinn::Connection,
    ours: &Hello,
    timeout: Duration,
) -> Result<Answered, AcceptError> {
    let (mut send, mut recv) = match tokio::time::timeout(timeout, conn.accept_bi()).await {
        Err(_) => return Err(AcceptError::NoStream),
        Ok(Err(e)) => return Err(AcceptError::Connection(e)),
        Ok(Ok(streams)) => streams,
    };
    let refuse = |error: AcceptError| {
        let code = if matches!(error, AcceptError::NotHello) || !error.is_misbehaviour() {
            CLOSE_REFUSED
        } else {
            CLOSE_BANNED
        };
        conn.close(code.into(), error.to_string().as_bytes());
        error
    };
    let bytes = transport::read_frame(&mut recv, wire::MAX_REQUEST_BYTES, timeout)
        .await
        .map_err(|e| refuse(AcceptError::Frame(e)))?;
    let theirs = match wire::decode_request(&bytes) {
        Ok(Request::Hello(hello)) => hello,
        Ok(_) => return Err(refuse(AcceptError::NotHello)),
        Err(e) => return Err(refuse(AcceptError::Malformed(e))),
    };
    if let Err(reason) = check_hello(ours, &theirs) {
        let text = reason.to_string();
        let _ = transport::write_frame(&mut send, &Response::Refused(text.clone())).await;
        let _ = send.finish();
        tokio::time::sleep(REFUSAL_LINGER).await;
        conn.close(CLOSE_REFUSED.into(), text.as_bytes());
        return Ok(Answered::Refused { reason, theirs });
    }
    transport::write_frame(&mut send, &Response::Hello(ours.clone()))
        .await
        .map_err(AcceptError::Frame)?;
    let _ = send.finish();
    Ok(Answered::Accepted(theirs))
}

/// The Hello of a node that has no chain yet: the genesis of the chain it
/// joins, at height 0, not listening.
pub fn joining_hello(genesis: Hash32) -> Hello {
    Hello {
        version: wire::PROTOCOL_VERSION,
        genesis,
        best_height: 0,
        best_hash: genesis,
        best_work: Hash32::ZERO,
        listen_port: None,
    }
}

/// What a peer whose genesis is `theirs` means to the operator, to append
/// to the refusal: both chains by name, and the flag that would join its
/// network; nothing when the genesis is `ours`.
pub fn another_network(theirs: &Hash32, ours: &Hash32, our_network: &str) -> String {
    if theirs == ours {
        return String::new();
    }
    let ours = format!("chain {our_network:?} (genesis {ours})");
    match crate::node::datadir::builtin_chain_with_genesis(theirs) {
        Some(name) => format!(
            "; it is on chain {name:?} (genesis {theirs}), this node on {ours}; \
             to join its network, start a new data dir with --chain {name} \
             (said once per peer)"
        ),
        None => format!(
            "; it is on a chain that is not built in (genesis {theirs}), this node on {ours}; \
             to join its network, start a new data dir with --chain and its chain file \
             (said once per peer)"
        ),
    }
}

/// The genesis of a peer that refused us for being on another network,
/// from its reason: "genesis OURS is not ours (THEIRS): another network…".
pub fn refuser_genesis(reason: &str) -> Option<Hash32> {
    let (_, rest) = reason.split_once(" is not ours (")?;
    let (theirs, _) = rest.split_once(')')?;
    Hash32::from_hex(theirs).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(genesis: u8) -> Hello {
        Hello {
            version: wire::PROTOCOL_VERSION,
            genesis: Hash32([genesis; 32]),
            best_height: 7,
            best_hash: Hash32([9; 32]),
            best_work: Hash32([1; 32]),
            listen_port: Some(9000),
        }
    }

    #[test]
    fn the_same_version_and_genesis_are_accepted_whatever_the_tip() {
        let ours = hello(1);
        let mut theirs = joining_hello(Hash32([1; 32]));
        assert_eq!(check_hello(&ours, &theirs), Ok(()));
        theirs.best_height = u64::MAX;
        assert_eq!(check_hello(&ours, &theirs), Ok(()));
    }

    #[test]
    fn another_protocol_version_is_refused_naming_both() {
        let ours = hello(1);
        let mut theirs = hello(1);
        theirs.version = wire::PROTOCOL_VERSION + 1;
        let refusal = check_hello(&ours, &theirs).unwrap_err();
        assert_eq!(
            refusal,
            HelloError::Version {
                theirs: wire::PROTOCOL_VERSION + 1,
                ours: wire::PROTOCOL_VERSION
            }
        );
        assert_eq!(
            refusal.to_string(),
            format!(
                "protocol version {} is not ours ({})",
                wire::PROTOCOL_VERSION + 1,
                wire::PROTOCOL_VERSION
            )
        );
    }

    #[test]
    fn another_genesis_is_refused_and_the_refused_side_reads_it_back() {
        let ours = hello(1);
        let theirs = hello(2);
        let refusal = check_hello(&ours, &theirs).unwrap_err();
        assert_eq!(
            refusal,
            HelloError::Genesis {
                theirs: Hash32([2; 32]),
                ours: Hash32([1; 32])
            }
        );
        // The refused peer learns the refuser's genesis from the reason.
        let reason = refusal.to_string();
        assert!(reason.ends_with("another network"), "{reason}");
        assert_eq!(refuser_genesis(&reason), Some(Hash32([1; 32])));
        assert_eq!(refuser_genesis("too many peers"), None);
    }

    #[test]
    fn a_version_mismatch_is_named_before_a_genesis_mismatch() {
        let ours = hello(1);
        let mut theirs = hello(2);
        theirs.version = 0;
        assert!(matches!(
            check_hello(&ours, &theirs),
            Err(HelloError::Version { theirs: 0, .. })
        ));
    }

    #[test]
    fn the_same_genesis_needs_no_explanation() {
        let genesis = Hash32([3; 32]);
        assert_eq!(another_network(&genesis, &genesis, "regtest"), "");
        let other = another_network(&Hash32([4; 32]), &genesis, "regtest");
        assert!(other.contains("chain \"regtest\""), "{other}");
    }

    #[test]
    fn only_a_broken_first_message_counts_against_the_dialer() {
        let malformed = || DecodeError::Malformed {
            what: "request",
            reason: "x".into(),
        };
        assert!(AcceptError::NotHello.is_misbehaviour());
        assert!(AcceptError::Malformed(malformed()).is_misbehaviour());
        assert!(AcceptError::Frame(NetError::Malformed(malformed())).is_misbehaviour());
        assert!(AcceptError::Frame(NetError::Oversized {
            found: wire::MAX_REQUEST_BYTES + 1,
            limit: wire::MAX_REQUEST_BYTES
        })
        .is_misbehaviour());
        // Slow or gone is not misbehaviour.
        assert!(!AcceptError::NoStream.is_misbehaviour());
        assert!(!AcceptError::Frame(NetError::Timeout).is_misbehaviour());
        assert!(!AcceptError::Connection(quinn::ConnectionError::TimedOut).is_misbehaviour());
        // What a ban for each says.
        assert_eq!(
            AcceptError::NotHello.to_string(),
            "first request was not a hello"
        );
        assert!(AcceptError::Malformed(malformed())
            .to_string()
            .starts_with("malformed hello: "));
    }
}
