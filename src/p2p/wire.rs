//! Wire messages and their bounds (schema/p2p.md).
//!
//! Every exchange is one request and one response on its own QUIC
//! bidirectional stream. A message is a little-endian u32 length and that
//! many bytes of canonical postcard; the length is checked against the
//! bound of the message type before anything is read or decoded, and the
//! decode is strict (nothing trailing, canonical form).

use crate::chain::encoding::{decode_strict, encode, DecodeError};
use crate::chain::Hash32;
use serde::{Deserialize, Serialize};

/// Version exchanged in [`Hello`]; ALPN carries it too. Version 2 adds
/// transaction relay (protocol 2's ledger).
pub const PROTOCOL_VERSION: u32 = 2;
/// No message is ever longer.
pub const MAX_MESSAGE_BYTES: usize = 4 << 20;
/// The most transaction bytes one `Txs` answer carries: those asked for
/// past it are left out, as if no longer pending, and fetched again when
/// announced again.
pub const MAX_TXS_RESPONSE_BYTES: usize = MAX_MESSAGE_BYTES - (64 << 10);
/// Longest request.
pub const MAX_REQUEST_BYTES: usize = 8 << 10;
/// Most hashes in a locator.
pub const MAX_LOCATOR: usize = 64;
/// Most hashes one `GetHashes` returns.
pub const MAX_HASHES: usize = 2000;
/// Most blocks one `GetBlocks` asks for.
pub const MAX_BLOCKS_PER_REQUEST: usize = 64;
/// Most addresses one `Addrs` carries.
pub const MAX_ADDRS: usize = 32;
/// Most transaction ids one `AnnounceTxs` or `GetTxs` carries.
pub const MAX_TX_IDS: usize = 128;
/// Size of a training-data chunk.
pub const CHUNK_BYTES: u32 = 64 << 10;

/// The first request on a connection, and its answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub version: u32,
    pub genesis: Hash32,
    pub best_height: u64,
    pub best_hash: Hash32,
    /// Big-endian cumulative work of the best chain.
    pub best_work: Hash32,
    /// The port this node accepts connections on, if any.
    pub listen_port: Option<u16>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    Hello(Hello),
    /// A new best block.
    Announce {
        hash: Hash32,
        height: u64,
        work: Hash32,
    },
    /// Best-chain hashes after the first locator entry the peer knows.
    GetHashes {
        locator: Vec<Hash32>,
        max: u32,
    },
    GetBlocks(Vec<Hash32>),
    GetAddrs,
    /// The chunk hashes of a file known by its BLAKE3 hash.
    GetFile {
        blake3: Hash32,
    },
    GetChunk {
        blake3: Hash32,
        index: u32,
    },
    /// Transactions the sender has in its pool, by id.
    AnnounceTxs(Vec<Hash32>),
    /// Pending transactions by id.
    GetTxs(Vec<Hash32>),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    Hello(Hello),
    /// The request was refused; the reason is for logs.
    Refused(String),
    Ok,
    Hashes(Vec<Hash32>),
    /// Canonical block bytes, in the order asked; unknown ones are left out.
    Blocks(#[serde(with = "byte_strings")] Vec<Vec<u8>>),
    Addrs(Vec<String>),
    File {
        size: u64,
        chunk_hashes: Vec<Hash32>,
    },
    Chunk(#[serde(with = "byte_string")] Vec<u8>),
    NotFound,
    /// Canonical transaction bytes, in the order asked; those no longer
    /// pending are left out.
    Txs(#[serde(with = "byte_strings")] Vec<Vec<u8>>),
}

/// A byte string (`Vec<u8>`) exactly as postcard encodes one, a varint
/// length and then the bytes, but written and read as one slice rather
/// than byte by byte, which for a sync's megabytes of blocks costs more
/// than the network.
mod byte_string {
    use serde::{de, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(bytes)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        deserializer.deserialize_byte_buf(Visitor)
    }

    struct Visitor;

    impl<'de> de::Visitor<'de> for Visitor {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a byte string")
        }

        // postcard lends the bytes of the message (`visit_borrowed_bytes`,
        // which falls back to this).
        fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<Vec<u8>, E> {
            Ok(bytes.to_vec())
        }
    }

    /// One byte string of a list, as `serialize` writes it.
    pub struct Ref<'a>(pub &'a [u8]);

    impl serde::Serialize for Ref<'_> {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serialize(self.0, serializer)
        }
    }

    /// One byte string of a list, as `deserialize` reads it.
    pub struct Owned(pub Vec<u8>);

    impl<'de> serde::Deserialize<'de> for Owned {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            deserialize(deserializer).map(Owned)
        }
    }
}

/// A list of byte strings (`Vec<Vec<u8>>`) as postcard encodes one, each
/// string written and read whole (`byte_string`).
mod byte_strings {
    use super::byte_string::{Owned, Ref};
    use serde::{de, ser::SerializeSeq, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(list: &[Vec<u8>], serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(list.len()))?;
        for bytes in list {
            seq.serialize_element(&Ref(bytes))?;
        }
        seq.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<Vec<u8>>, D::Error> {
        deserializer.deserialize_seq(Visitor)
    }

    struct Visitor;

    impl<'de> de::Visitor<'de> for Visitor {
        type Value = Vec<Vec<u8>>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a list of byte strings")
        }

        fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            // A claimed length is not trusted for the allocation: each
            // string takes at least its length's byte of the message.
            let mut list = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
            while let Some(Owned(bytes)) = seq.next_element()? {
                list.push(bytes);
            }
            Ok(list)
        }
    }
}

impl Request {
    /// Largest response this request may get.
    pub fn response_limit(&self) -> usize {
        match self {
            Request::Hello(_) | Request::Announce { .. } | Request::AnnounceTxs(_) => 1024,
            // Transfers are small, but a job carries its dataset: the
            // answer stops before [`MAX_TXS_RESPONSE_BYTES`] of them.
            Request::GetTxs(_) => MAX_MESSAGE_BYTES,
            Request::GetHashes { .. } => 16 + 32 * MAX_HASHES,
            Request::GetBlocks(_) | Request::GetFile { .. } => MAX_MESSAGE_BYTES,
            Request::GetAddrs => 16 + 128 * MAX_ADDRS,
            Request::GetChunk { .. } => 16 + CHUNK_BYTES as usize,
        }
    }

    /// Vector bounds beyond the byte bound.
    pub fn check(&self) -> Result<(), String> {
        match self {
            Request::GetHashes { locator, max } if locator.len() > MAX_LOCATOR || *max == 0 => Err(
                format!("locator of {} hashes asking for {max}", locator.len()),
            ),
            Request::GetBlocks(hashes)
                if hashes.is_empty() || hashes.len() > MAX_BLOCKS_PER_REQUEST =>
            {
                Err(format!("{} blocks asked", hashes.len()))
            }
            Request::AnnounceTxs(ids) | Request::GetTxs(ids)
                if ids.is_empty() || ids.len() > MAX_TX_IDS =>
            {
                Err(format!("{} transaction ids", ids.len()))
            }
            _ => Ok(()),
        }
    }
}

/// Frame a message: u32 LE length, then the canonical bytes.
pub fn frame<T: Serialize>(message: &T) -> Vec<u8> {
    let body = encode(message);
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// Decode the bytes after the length prefix, strictly.
pub fn decode_request(bytes: &[u8]) -> Result<Request, DecodeError> {
    decode_strict(bytes, MAX_REQUEST_BYTES, "request")
}

pub fn decode_response(bytes: &[u8], limit: usize) -> Result<Response, DecodeError> {
    decode_strict(bytes, limit, "response")
}

/// A response's variant, for log lines (not its possibly large contents).
pub fn response_name(response: &Response) -> &'static str {
    match response {
        Response::Hello(_) => "Hello",
        Response::Refused(_) => "Refused",
        Response::Ok => "Ok",
        Response::Hashes(_) => "Hashes",
        Response::Blocks(_) => "Blocks",
        Response::Addrs(_) => "Addrs",
        Response::File { .. } => "File",
        Response::Chunk(_) => "Chunk",
        Response::NotFound => "NotFound",
        Response::Txs(_) => "Txs",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// schema/p2p.md: a request is at most 8 KiB.
    #[test]
    fn a_request_of_8_kib_is_decoded_and_one_byte_more_is_too_large() {
        // The largest request that is well-formed decodes; the same bytes
        // padded past the bound are refused for their length alone.
        let at_limit = Request::GetHashes {
            locator: vec![Hash32([1; 32]); MAX_LOCATOR],
            max: 1,
        };
        let bytes = encode(&at_limit);
        assert!(bytes.len() <= 8192);
        assert_eq!(decode_request(&bytes), Ok(at_limit));
        let mut over = vec![0u8; 8193];
        over[..bytes.len()].copy_from_slice(&bytes);
        assert_eq!(
            decode_request(&over),
            Err(DecodeError::TooLarge {
                what: "request",
                found: 8193,
                limit: 8192
            })
        );
        let exactly = vec![0u8; 8192];
        assert!(
            !matches!(decode_request(&exactly), Err(DecodeError::TooLarge { .. })),
            "8192 bytes are within the bound"
        );
    }

    /// schema/p2p.md: each request bounds its response, checked before
    /// decoding; a GetBlocks answer may take the whole 4 MiB.
    #[test]
    fn each_request_bounds_its_response() {
        let hash = Hash32([1; 32]);
        let cases = [
            (Request::GetAddrs, 16 + 128 * 32),
            (Request::GetBlocks(vec![hash]), 4 << 20),
            (Request::GetFile { blake3: hash }, 4 << 20),
            (
                Request::GetChunk {
                    blake3: hash,
                    index: 0,
                },
                16 + 65_536,
            ),
            (
                Request::GetHashes {
                    locator: vec![hash],
                    max: 1,
                },
                16 + 32 * 2000,
            ),
            (
                Request::Announce {
                    hash,
                    height: 1,
                    work: hash,
                },
                1024,
            ),
            (Request::AnnounceTxs(vec![hash]), 1024),
            (Request::GetTxs(vec![hash]), 4 << 20),
        ];
        for (request, limit) in cases {
            assert_eq!(request.response_limit(), limit, "{request:?}");
            assert!(request.response_limit() <= MAX_MESSAGE_BYTES);
            assert!(matches!(
                decode_response(&vec![0; limit + 1], limit),
                Err(DecodeError::TooLarge { .. })
            ));
        }
        assert_eq!(MAX_MESSAGE_BYTES, 4 << 20);
        // The largest job fits a `Txs` answer, with its framing.
        const { assert!(crate::tx::MAX_ENCODED_TX_BYTES + 16 <= MAX_TXS_RESPONSE_BYTES) };
        // The largest block of any chain fits one message with its framing.
        let largest = crate::chain::Limits::default().max_block_bytes();
        assert!(largest + 16 <= MAX_MESSAGE_BYTES, "{largest}");
        let ok = frame(&Response::Ok);
        assert_eq!(ok[..4], (ok.len() as u32 - 4).to_le_bytes());
        assert_eq!(decode_response(&ok[4..], 1024), Ok(Response::Ok));
    }

    /// Block and transaction bytes and file chunks are written and read
    /// whole, in the same bytes as postcard's own `Vec<u8>`: the wire
    /// format is the one every earlier release speaks. Truncated and
    /// overlong strings are refused.
    #[test]
    fn byte_strings_keep_postcards_encoding() {
        /// The responses as the derive alone encodes them.
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        enum Plain {
            Hello(Hello),
            Refused(String),
            Ok,
            Hashes(Vec<Hash32>),
            Blocks(Vec<Vec<u8>>),
            Addrs(Vec<String>),
            File {
                size: u64,
                chunk_hashes: Vec<Hash32>,
            },
            Chunk(Vec<u8>),
            NotFound,
            Txs(Vec<Vec<u8>>),
        }
        let strings: Vec<Vec<u8>> = vec![vec![], vec![7], (0..=255).collect(), vec![9; 300]];
        let cases = [
            (
                Response::Blocks(strings.clone()),
                Plain::Blocks(strings.clone()),
            ),
            (Response::Blocks(vec![]), Plain::Blocks(vec![])),
            (Response::Txs(strings.clone()), Plain::Txs(strings.clone())),
            (Response::Chunk(vec![3; 200]), Plain::Chunk(vec![3; 200])),
            (Response::Chunk(vec![]), Plain::Chunk(vec![])),
        ];
        for (response, plain) in cases {
            let bytes = encode(&response);
            assert_eq!(bytes, encode(&plain), "{plain:?}");
            assert_eq!(decode_response(&bytes, MAX_MESSAGE_BYTES), Ok(response));
            // Every cut short of the whole is refused.
            for cut in 0..bytes.len() {
                assert!(decode_response(&bytes[..cut], MAX_MESSAGE_BYTES).is_err());
            }
        }
        // A string claiming more bytes than the message holds.
        let mut long = encode(&Response::Chunk(vec![1; 3]));
        *long.last_mut().unwrap() = 5;
        long[1] = 200;
        assert!(decode_response(&long, MAX_MESSAGE_BYTES).is_err());
        // A list claiming more strings than it holds.
        let mut many = encode(&Response::Blocks(vec![vec![1]]));
        many[1] = 0x7f;
        assert!(decode_response(&many, MAX_MESSAGE_BYTES).is_err());
    }

    /// Vector bounds of requests, at the limit and one past it.
    #[test]
    fn request_vectors_are_bounded() {
        let hashes = |n| vec![Hash32([2; 32]); n];
        let get_hashes = |n, max| Request::GetHashes {
            locator: hashes(n),
            max,
        };
        assert!(get_hashes(MAX_LOCATOR, 1).check().is_ok());
        assert!(get_hashes(MAX_LOCATOR + 1, 1).check().is_err());
        assert!(get_hashes(0, 1).check().is_ok());
        assert!(get_hashes(1, 0).check().is_err());
        assert!(Request::GetBlocks(hashes(MAX_BLOCKS_PER_REQUEST))
            .check()
            .is_ok());
        assert!(Request::GetBlocks(hashes(MAX_BLOCKS_PER_REQUEST + 1))
            .check()
            .is_err());
        assert!(Request::GetBlocks(hashes(1)).check().is_ok());
        assert!(Request::GetBlocks(Vec::new()).check().is_err());
        assert!(Request::GetAddrs.check().is_ok());
        for make in [Request::AnnounceTxs, Request::GetTxs] {
            assert!(make(hashes(MAX_TX_IDS)).check().is_ok());
            assert!(make(hashes(MAX_TX_IDS + 1)).check().is_err());
            assert!(make(hashes(1)).check().is_ok());
            assert!(make(Vec::new()).check().is_err());
            // The largest fits a request.
            assert!(encode(&make(hashes(MAX_TX_IDS))).len() <= MAX_REQUEST_BYTES);
        }
        assert_eq!(MAX_TX_IDS, 128);
        assert_eq!((MAX_LOCATOR, MAX_BLOCKS_PER_REQUEST), (64, 64));
    }
}
