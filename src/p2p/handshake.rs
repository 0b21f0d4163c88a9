//! The Hello exchange that opens every connection, dialed or accepted,
//! by the node's network and by the training-file fetcher alike.
//!
//! The dialer opens a stream and sends its [`Hello`]; the acceptor checks
//! it with [`check_hello`] and answers with its own Hello or `Refused`
//! and the reason; the dialer checks that answer the same way. Two nodes
//! talk only when both run [`wire::PROTOCOL_VERSION`] and share a genesis.
//!
//! [`check_hello`] is pure; [`greet`] is the dialer's half over a
//! connection. Neither bans: what a bad answer costs the peer is the
//! caller's to decide, since the caller keeps the peer book.

use super::transport::{self, NetError, CLOSE_REFUSED};
use super::wire::{self, Hello, Request, Response};
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
}
