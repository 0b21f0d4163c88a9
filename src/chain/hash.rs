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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_reads_and_prints_as_64_lowercase_hex_digits() {
        let mut bytes = [0u8; 32];
        bytes[0] = 0xab;
        bytes[31] = 0x01;
        let hash = Hash32(bytes);
        let hex = format!("ab{}01", "00".repeat(30));
        assert_eq!(hash.to_hex(), hex);
        assert_eq!(format!("{hash}"), hex);
        assert_eq!(format!("{hash:?}"), hex);
        assert_eq!(Hash32::from_hex(&hex), Ok(hash));
        assert_eq!(Hash32::from_hex(&format!(" {hex}\n")), Ok(hash));
        assert!(Hash32::from_hex(&hex[2..]).is_err(), "31 bytes");
        assert!(Hash32::from_hex(&format!("{hex}00")).is_err(), "33 bytes");
        assert!(Hash32::from_hex(&hex.replace('a', "g")).is_err(), "not hex");
        assert_eq!(hash.low_u64(), 0xab);
    }

    #[test]
    fn tagged_hashes_hash_the_tag_then_the_parts() {
        let whole = tagged_sha256(b"pouw/x", &[b"abc"]);
        assert_eq!(tagged_sha256(b"pouw/", &[b"x", b"a", b"bc"]), whole);
        assert_eq!(whole, Hash32(Sha256::digest(b"pouw/xabc").into()));
        assert_ne!(tagged_sha256(b"pouw/y", &[b"abc"]), whole);
    }
}
