//! Blocks, headers and their one canonical byte encoding.
//!
//! Everything here is pure: bytes in, typed values out, and back. Decoding
//! is strict (see [`encoding`]): a value decodes only from the exact bytes
//! it encodes to, with nothing trailing and nothing over the size limits,
//! so the block id (SHA-256 of the canonical header bytes) is unambiguous.
//! This module never validates consensus rules; a decoded [`Block`] is
//! *unchecked* until `consensus::validate` turns it into a checked one.

pub mod encoding;
pub mod hash;

use crate::tx::Tx;
use serde::{Deserialize, Serialize};
use serde_big_array::BigArray;

pub use encoding::{DecodeError, Limits};
pub use hash::{tagged_sha256, Hash32};

/// The ed25519 key that `id` encodes, when the encoding is canonical
/// (y < p) and the point is not of small order; `None` otherwise. So one
/// key has exactly one id, as a miner and as a sender.
pub fn strict_key(id: &Hash32) -> Option<ed25519_dalek::VerifyingKey> {
    ed25519_dalek::VerifyingKey::from_bytes(&id.0)
        .ok()
        .filter(|k| !k.is_weak() && k.to_edwards().compress().0 == id.0)
}

/// The only header version this node knows: protocol 2's, whose header
/// commits to the block's transactions.
pub const HEADER_VERSION: u16 = 2;

/// The fields of a header that the miner signs: everything but the signature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeaderFields {
    pub version: u16,
    pub height: u64,
    pub parent: Hash32,
    pub timestamp_ms: u64,
    /// Big-endian 256-bit target: the block is valid when `work_hash <= target`.
    pub target: Hash32,
    /// ed25519 public key of the miner; the reward goes to it.
    pub miner: Hash32,
    /// Which independent training run of this miner on this parent found the block.
    pub lane: u32,
    /// Number of training steps `k` behind this block.
    pub steps: u64,
    /// `model_hash(W_k)`.
    pub model_hash: Hash32,
    /// RFC 6962 root over the checkpoint hashes `C_1 … C_m`, `m = floor(k / c)`.
    pub ckpt_root: Hash32,
    /// Score of `W_k` on this block's validation set, parts per million of `max(0, R²)`.
    pub score_ppm: u32,
    /// `SHA-256("pouw/body" ‖ body bytes)`.
    pub body_hash: Hash32,
    /// RFC 6962 root over the ids of the body's transactions, in order
    /// (`tx::tx_root`). Not part of the ticket: only the signature binds it.
    pub tx_root: Hash32,
}

/// A signed header. Its canonical encoding is the fields followed by the
/// 64 signature bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub fields: HeaderFields,
    #[serde(with = "BigArray")]
    pub signature: [u8; 64],
}

/// One opened checkpoint `C_index` with its inclusion proof against `ckpt_root`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckpointOpening {
    pub index: u64,
    pub params: Vec<f64>,
    pub proof: Vec<Hash32>,
}

/// The block body: the final parameters, the openings the spot checks
/// need, and the transactions the block carries.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Body {
    /// The final parameters `W_k`.
    pub params: Vec<f64>,
    /// Every checkpoint the challenges and the tail need, by ascending index,
    /// each once; `C_0` (the parent's model) is never included.
    pub openings: Vec<CheckpointOpening>,
    /// Transactions, applied to the ledger in this order.
    pub txs: Vec<Tx>,
}

/// A block as decoded: not yet checked against any consensus rule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Block {
    pub header: Header,
    pub body: Body,
}

impl HeaderFields {
    /// The message the miner signs: `SHA-256("pouw/header" ‖ encode(fields))`.
    pub fn signing_hash(&self) -> Hash32 {
        tagged_sha256(b"pouw/header", &[&encoding::encode(self)])
    }
}

impl Header {
    /// The block id: `SHA-256("pouw/block" ‖ encode(header))`, signature included.
    pub fn id(&self) -> Hash32 {
        tagged_sha256(b"pouw/block", &[&encoding::encode(self)])
    }
}

impl Body {
    /// `SHA-256("pouw/body" ‖ encode(body))`.
    pub fn hash(&self) -> Hash32 {
        tagged_sha256(b"pouw/body", &[&encoding::encode(self)])
    }
}

impl Block {
    pub fn id(&self) -> Hash32 {
        self.header.id()
    }

    pub fn height(&self) -> u64 {
        self.header.fields.height
    }

    /// Canonical bytes of the whole block.
    pub fn to_bytes(&self) -> Vec<u8> {
        encoding::encode(self)
    }

    /// Strictly decode a block: within `limits`, canonical, nothing trailing.
    pub fn from_bytes(bytes: &[u8], limits: &Limits) -> Result<Block, DecodeError> {
        encoding::decode_block(bytes, limits)
    }
}
