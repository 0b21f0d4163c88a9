//! The peer layer: QUIC (quinn) with mutual TLS 1.3 (rustls, ring) on
//! self-signed certificates made from each node's ed25519 key (rcgen).
//!
//! [`tls`] makes the identity and verifies peers, [`wire`] defines the
//! messages and their bounds, [`limits`] the per-peer rate, timeout and
//! ban rules, [`peers`] reads peer addresses, [`net`]
//! runs connections, gossip and sync, and [`files`] serves and fetches
//! the training data genesis pins by hash. Nothing here decides validity:
//! blocks go through `node::import::store_blocks`, the same path as
//! import-chain, and a fetched file must have its pinned hash.

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
