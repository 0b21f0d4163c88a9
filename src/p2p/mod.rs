//! The peer layer: QUIC (quinn) with mutual TLS 1.3 (rustls, ring) on
//! self-signed certificates made from each node's ed25519 key (rcgen).
//!
//! [`tls`] makes the identity and verifies peers, [`wire`] defines the
//! messages and their bounds, [`peers`] reads peer addresses, and [`net`]
//! runs connections, gossip and sync. Nothing here decides validity: blocks
//! go through `node::import::store_blocks`, the same path as import-chain.

pub mod net;
pub mod peers;
pub mod tls;
pub mod wire;

pub use net::{NetConfig, NetLimits, Network};
pub use peers::{PeerAddr, PeersFile};
