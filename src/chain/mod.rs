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
    if !y_below_p(&id.0) {
        return None;
    }
    // With y < p the encoding is canonical unless x = 0 and the sign bit
    // is set; x = 0 only for y = ±1, both of small order, refused below.
    ed25519_dalek::VerifyingKey::from_bytes(&id.0)
        .ok()
        .filter(|k| !k.is_weak())
}

/// Whether the 255-bit little-endian y of a point encoding (the sign bit
/// of byte 31 aside) is below p = 2^255 − 19: it is at least p only when
/// bits 8..254 are all ones and the low byte is 0xed or more.
fn y_below_p(bytes: &[u8; 32]) -> bool {
    !(bytes[31] & 0x7f == 0x7f && bytes[1..31].iter().all(|&b| b == 0xff) && bytes[0] >= 0xed)
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
    /// The training job the block trains (the id of its `SubmitJob`
    /// transaction), all zeros for the genesis task.
    pub job: Hash32,
    /// The block's number within that job, from 0: it sets the learning rate.
    pub job_block: u64,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The first form of the rule: decompress, refuse small order, and
    /// require that the point compresses back to the same bytes.
    fn by_recompression(id: &Hash32) -> bool {
        ed25519_dalek::VerifyingKey::from_bytes(&id.0)
            .ok()
            .filter(|k| !k.is_weak() && k.to_edwards().compress().0 == id.0)
            .is_some()
    }

    /// `strict_key` accepts exactly what decompressing and compressing
    /// again accepts: every non-canonical y (p to 2^255 − 1) with both
    /// signs, the small-order points, the edges of p, and random bytes.
    #[test]
    fn the_canonical_check_equals_recompression() {
        let mut cases: Vec<[u8; 32]> = Vec::new();
        for low in 0xe0..=0xffu8 {
            for sign in [0u8, 0x80] {
                let mut b = [0xffu8; 32];
                b[0] = low;
                b[31] = 0x7f | sign;
                cases.push(b);
            }
        }
        for y in [0u8, 1, 2] {
            for sign in [0u8, 0x80] {
                let mut b = [0u8; 32];
                b[0] = y;
                b[31] = sign;
                cases.push(b);
            }
        }
        // p − 1 (y = −1, of order 2) and its neighbours below.
        for low in [0xeau8, 0xeb, 0xec] {
            let mut b = [0xffu8; 32];
            b[0] = low;
            b[31] = 0x7f;
            cases.push(b);
        }
        let mut seed = 0x0123_4567_89ab_cdefu64;
        for _ in 0..2000 {
            let mut b = [0u8; 32];
            for chunk in b.chunks_mut(8) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                chunk.copy_from_slice(&seed.to_le_bytes());
            }
            cases.push(b);
        }
        for n in 0..64u8 {
            let key = ed25519_dalek::SigningKey::from_bytes(&[n; 32]);
            cases.push(key.verifying_key().to_bytes());
        }
        let mut accepted = 0;
        for b in cases {
            let id = Hash32(b);
            let expected = by_recompression(&id);
            assert_eq!(strict_key(&id).is_some(), expected, "{id}");
            accepted += usize::from(expected);
        }
        assert!(accepted >= 64, "real keys are accepted");
        // y = p exactly, sign clear: decompresses (as y = 0) but is not canonical.
        let mut p = [0xffu8; 32];
        p[0] = 0xed;
        p[31] = 0x7f;
        assert!(strict_key(&Hash32(p)).is_none());
    }
}
