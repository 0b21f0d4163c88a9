//! The canonical encoding: serde + postcard, decoded strictly.
//!
//! A decode succeeds only when (1) the input is within its size limit,
//! checked before anything is decoded, (2) postcard consumes every byte, and
//! (3) the decoded value re-encodes to exactly the input. Rule (3) rejects
//! every non-canonical form postcard would otherwise accept, such as
//! over-long varints. After decoding, each vector length is checked against
//! its bound. serde pre-allocates at most 1 MiB per vector whatever length
//! the input claims, and the input itself is bounded first, so memory
//! stays bounded by a small multiple of the size limit.

use super::{Block, Body, Header};
use serde::{de::DeserializeOwned, Serialize};
use thiserror::Error;

/// Size bounds applied to untrusted bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted header encoding.
    pub max_header_bytes: usize,
    /// Largest accepted body encoding.
    pub max_body_bytes: usize,
    /// Largest parameter vector (features + bias).
    pub max_params: usize,
    /// Most checkpoint openings in one body.
    pub max_openings: usize,
    /// Longest Merkle proof (a tree of at most 2^64 leaves).
    pub max_proof_len: usize,
    /// Most transactions in one body.
    pub max_txs: usize,
}

impl Limits {
    /// Largest accepted block encoding: header plus body.
    pub fn max_block_bytes(&self) -> usize {
        self.max_header_bytes + self.max_body_bytes
    }
}

/// Limits any node applies before it knows which chain a block is for.
pub const MAX_HEADER_BYTES: usize = 512;
/// The most transactions any chain lets a block carry.
pub const MAX_BLOCK_TXS: usize = 16_384;
/// The most transaction bytes any chain lets a block carry: with the
/// training part, a block stays within one 4 MiB peer message.
pub const MAX_BLOCK_TX_BYTES: usize = 2 << 20;
/// The largest body of any chain: the training part (parameters and
/// openings) within 1 MiB, and the transactions.
pub const MAX_BODY_BYTES: usize = (1 << 20) + MAX_BLOCK_TX_BYTES;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_bytes: MAX_HEADER_BYTES,
            max_body_bytes: MAX_BODY_BYTES,
            max_params: 4096,
            max_openings: 257,
            max_proof_len: 64,
            max_txs: MAX_BLOCK_TXS,
        }
    }
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DecodeError {
    #[error("{what} is {found} bytes, over the limit of {limit}")]
    TooLarge {
        what: &'static str,
        found: usize,
        limit: usize,
    },
    #[error("{what} does not decode: {reason}")]
    Malformed { what: &'static str, reason: String },
    #[error("{what} has {count} trailing bytes")]
    TrailingBytes { what: &'static str, count: usize },
    #[error("{what} is not in canonical form (it re-encodes differently)")]
    NonCanonical { what: &'static str },
    #[error("{what} has {found} {item}, over the limit of {limit}")]
    TooMany {
        what: &'static str,
        item: &'static str,
        found: usize,
        limit: usize,
    },
}

/// Canonical bytes of any consensus value.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serialising plain structs of integers, arrays, floats and vectors
    // into a Vec cannot fail.
    postcard::to_stdvec(value).expect("postcard encoding of a consensus value")
}

/// Strict decode of one value of type `T`.
pub fn decode_strict<T: Serialize + DeserializeOwned>(
    bytes: &[u8],
    limit: usize,
    what: &'static str,
) -> Result<T, DecodeError> {
    if bytes.len() > limit {
        return Err(DecodeError::TooLarge {
            what,
            found: bytes.len(),
            limit,
        });
    }
    let (value, rest): (T, &[u8]) =
        postcard::take_from_bytes(bytes).map_err(|e| DecodeError::Malformed {
            what,
            reason: e.to_string(),
        })?;
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes {
            what,
            count: rest.len(),
        });
    }
    if encode(&value) != bytes {
        return Err(DecodeError::NonCanonical { what });
    }
    Ok(value)
}

/// Strictly decode a header.
pub fn decode_header(bytes: &[u8], limits: &Limits) -> Result<Header, DecodeError> {
    decode_strict(bytes, limits.max_header_bytes, "header")
}

/// Strictly decode a block and check every vector length in it.
pub fn decode_block(bytes: &[u8], limits: &Limits) -> Result<Block, DecodeError> {
    let block: Block = decode_strict(bytes, limits.max_block_bytes(), "block")?;
    let header_len = encode(&block.header).len();
    if header_len > limits.max_header_bytes {
        return Err(DecodeError::TooLarge {
            what: "header",
            found: header_len,
            limit: limits.max_header_bytes,
        });
    }
    let body_len = bytes.len() - header_len;
    if body_len > limits.max_body_bytes {
        return Err(DecodeError::TooLarge {
            what: "body",
            found: body_len,
            limit: limits.max_body_bytes,
        });
    }
    check_body_lengths(&block.body, limits)?;
    Ok(block)
}

fn check_body_lengths(body: &Body, limits: &Limits) -> Result<(), DecodeError> {
    let too_many = |item, found, limit| DecodeError::TooMany {
        what: "body",
        item,
        found,
        limit,
    };
    if body.params.len() > limits.max_params {
        return Err(too_many("parameters", body.params.len(), limits.max_params));
    }
    if body.openings.len() > limits.max_openings {
        return Err(too_many(
            "openings",
            body.openings.len(),
            limits.max_openings,
        ));
    }
    if body.txs.len() > limits.max_txs {
        return Err(too_many("transactions", body.txs.len(), limits.max_txs));
    }
    for opening in &body.openings {
        if opening.params.len() > limits.max_params {
            return Err(too_many(
                "opening parameters",
                opening.params.len(),
                limits.max_params,
            ));
        }
        if opening.proof.len() > limits.max_proof_len {
            return Err(too_many(
                "proof hashes",
                opening.proof.len(),
                limits.max_proof_len,
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_may_be_as_large_as_its_header_and_body_bounds_together() {
        let limits = Limits {
            max_header_bytes: 10,
            max_body_bytes: 20,
            ..Limits::default()
        };
        assert_eq!(limits.max_block_bytes(), 30);
        assert_eq!(
            Limits::default().max_block_bytes(),
            512 + (1 << 20) + (2 << 20)
        );
    }

    /// A body may carry `max_txs` transactions, not one more.
    #[test]
    fn the_transaction_count_bound_holds_at_the_limit_and_one_past_it() {
        use crate::chain::{HeaderFields, HEADER_VERSION};
        use crate::tx::{TxFields, TxKind, TX_VERSION};
        let key = ed25519_dalek::SigningKey::from_bytes(&[3; 32]);
        let tx = |nonce| {
            TxFields {
                version: TX_VERSION,
                chain: crate::chain::Hash32([1; 32]),
                from: crate::chain::Hash32(key.verifying_key().to_bytes()),
                nonce,
                fee: 1,
                kind: TxKind::Transfer {
                    to: crate::chain::Hash32([2; 32]),
                    amount: 1,
                },
            }
            .sign(&key)
        };
        let block = |n: u64| Block {
            header: Header {
                fields: HeaderFields {
                    version: HEADER_VERSION,
                    height: 1,
                    parent: crate::chain::Hash32([0; 32]),
                    timestamp_ms: 1,
                    target: crate::chain::Hash32([0xff; 32]),
                    miner: crate::chain::Hash32([4; 32]),
                    lane: 0,
                    steps: 1,
                    model_hash: crate::chain::Hash32([5; 32]),
                    ckpt_root: crate::chain::Hash32([6; 32]),
                    score_ppm: 0,
                    job: crate::chain::Hash32([0; 32]),
                    job_block: 0,
                    body_hash: crate::chain::Hash32([7; 32]),
                    tx_root: crate::chain::Hash32([8; 32]),
                },
                signature: [9; 64],
            },
            body: Body {
                params: vec![0.0],
                openings: Vec::new(),
                txs: (0..n).map(tx).collect(),
            },
        };
        let limits = Limits {
            max_txs: 3,
            ..Limits::default()
        };
        let at = block(3);
        assert_eq!(decode_block(&encode(&at), &limits), Ok(at));
        assert_eq!(
            decode_block(&encode(&block(4)), &limits),
            Err(DecodeError::TooMany {
                what: "body",
                item: "transactions",
                found: 4,
                limit: 3
            })
        );
    }

    /// The size bound is checked first: a value of exactly the limit is
    /// decoded, one byte more is refused before any decoding.
    #[test]
    fn the_size_bound_holds_at_the_limit_and_one_past_it() {
        let value: Vec<u8> = vec![7; 5];
        let bytes = encode(&value);
        assert_eq!(bytes.len(), 6);
        assert_eq!(decode_strict::<Vec<u8>>(&bytes, 6, "value"), Ok(value));
        assert_eq!(
            decode_strict::<Vec<u8>>(&bytes, 5, "value"),
            Err(DecodeError::TooLarge {
                what: "value",
                found: 6,
                limit: 5
            })
        );
    }
}
