//! The peer layer: QUIC (quinn) with mutual TLS 1.3 (rustls, ring) on
//! self-signed certificates made from each node's ed25519 key (rcgen).
//!
//! In layers, each importing only those before it: [`wire`] defines the
//! messages and their bounds, [`tls`] makes the identity and verifies
//! peers, [`peers`] reads peer addresses, [`peerbook`] holds the pure
//! per-peer rules (rate, timeouts, block sources, eviction) and the one
//! ban list, [`transport`] the endpoint, the one dial, frames and close
//! codes, [`handshake`] the Hello exchange and its pure check, [`files`]
//! serves and fetches the training data genesis pins by hash, and [`net`]
//! runs connections and, in its submodules, serving, gossip and sync.
//! Nothing here decides validity: blocks go through
//! `node::import::store_blocks`, the same path as import-chain, and a
//! fetched file must have its pinned hash.

pub mod files;
pub mod handshake;
pub mod net;
pub mod peerbook;
pub mod peers;
pub mod tls;
pub mod transport;
pub mod txrelay;
pub mod wire;

pub use files::{Fetcher, ServedFiles, TrainingFile};
pub use net::{NetConfig, Network, STOP_RELAY_BOUND};
pub use peerbook::{NetLimits, PeerBook, SharedBook};
pub use peers::{PeerAddr, PeersFile};
