//! 32-byte hashes and the domain-tagged SHA-256 every consensus hash uses.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;

/// A 32-byte value: a hash, a public key or a big-endian 256-bit target.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct Hash32(pub [u8; 32]);

impl Hash32 {
    pub const ZERO: Hash32 = Hash32([0; 32]);

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parse 64 hex digits.
    pub fn from_hex(text: &str) -> Result<Hash32, String> {
        let bytes = hex::decode(text.trim()).map_err(|e| format!("not hex: {e}"))?;
        let array: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| {
            format!("expected 32 bytes (64 hex digits), found {}", b.len())
        })?;
        Ok(Hash32(array))
    }

    /// First 8 bytes as a little-endian integer (used for challenges).
    pub fn low_u64(&self) -> u64 {
        let mut word = [0u8; 8];
        word.copy_from_slice(&self.0[..8]);
        u64::from_le_bytes(word)
    }
}

impl fmt::Display for Hash32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Hash32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_hex())
    }
}

/// `SHA-256(tag ‖ parts[0] ‖ parts[1] ‖ …)`. Every tag is an ASCII string
/// starting with `pouw/`; the list is in schema/hashes.md.
pub fn tagged_sha256(tag: &[u8], parts: &[&[u8]]) -> Hash32 {
    let mut hasher = Sha256::new();
    hasher.update(tag);
    for part in parts {
        hasher.update(part);
    }
    Hash32(hasher.finalize().into())
}
