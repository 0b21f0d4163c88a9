//! The chain export stream (schema/export.md): a versioned header naming
//! the chain, then the best chain's blocks from height 1 up, each
//! length-prefixed, then an end marker with the block count.
//!
//! ```text
//! magic "POUWEXP\0" | u32 version | u32 n + n bytes chain JSON | 32-byte genesis hash
//! { u32 length (1..=limit) + canonical block bytes }*
//! u32 0 | u64 block count
//! ```
//! The reader bounds every length before allocating and reports where a
//! stream is cut short.

use crate::chain::{Hash32, Limits};
use crate::consensus::params::ChainParams;
use crate::store::Store;
use anyhow::Context;
use std::io::{self, Read, Write};
use thiserror::Error;

pub const MAGIC: &[u8; 8] = b"POUWEXP\0";
/// Version 1 streams hold protocol 1 chains; version 2, protocol 2 chains.
pub const STREAM_VERSION: u32 = 2;
/// Largest chain description accepted in a stream header.
pub const MAX_PARAMS_BYTES: u32 = 64 * 1024;

#[derive(Debug, Error)]
pub enum StreamError {
    #[error("read error: {0}")]
    Io(#[from] io::Error),
    #[error("not a pouwd chain export (bad magic bytes)")]
    BadMagic,
    #[error(
        "export stream version {found}{} is not supported: this pouwd reads version {supported}, of protocol {}",
        if *found == 1 { ", of protocol 1," } else { "" },
        crate::consensus::params::PROTOCOL_VERSION
    )]
    UnsupportedVersion { found: u32, supported: u32 },
    #[error("the chain description in the stream header is invalid: {0}")]
    BadParams(String),
    #[error("the stream header declares genesis {declared}, but its chain description hashes to {computed}")]
    GenesisMismatch { declared: Hash32, computed: Hash32 },
    #[error("the stream is truncated: {what} after {blocks} complete blocks")]
    Truncated { blocks: u64, what: &'static str },
    #[error("block #{index} of the stream claims {length} bytes, over the limit of {limit}")]
    RecordTooLarge { index: u64, length: u32, limit: u32 },
    #[error("the end marker counts {declared} blocks, but the stream holds {found}")]
    CountMismatch { declared: u64, found: u64 },
    #[error("the stream has bytes after its end marker")]
    TrailingBytes,
}

/// What a stream header says.
#[derive(Clone, Debug)]
pub struct StreamHeader {
    pub params: ChainParams,
    pub params_json: String,
    pub genesis: Hash32,
}

/// Reads an export stream record by record.
pub struct StreamReader<R> {
    inner: R,
    blocks: u64,
    limit: u32,
    done: bool,
}

/// `read_exact` that reports a cut-short stream as `Truncated`.
fn read_exact_or_truncated(
    r: &mut impl Read,
    buf: &mut [u8],
    blocks: u64,
    what: &'static str,
) -> Result<(), StreamError> {
    r.read_exact(buf).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            StreamError::Truncated { blocks, what }
        } else {
            StreamError::Io(e)
        }
    })
}

impl<R: Read> StreamReader<R> {
    /// Read and check the stream header.
    pub fn open(mut inner: R) -> Result<(StreamHeader, StreamReader<R>), StreamError> {
        let mut magic = [0u8; 8];
        read_exact_or_truncated(&mut inner, &mut magic, 0, "the header ends")?;
        if &magic != MAGIC {
            return Err(StreamError::BadMagic);
        }
        let mut word = [0u8; 4];
        read_exact_or_truncated(&mut inner, &mut word, 0, "the header ends")?;
        let version = u32::from_le_bytes(word);
        if version != STREAM_VERSION {
            return Err(StreamError::UnsupportedVersion {
                found: version,
                supported: STREAM_VERSION,
            });
        }
        read_exact_or_truncated(&mut inner, &mut word, 0, "the header ends")?;
        let length = u32::from_le_bytes(word);
        if length > MAX_PARAMS_BYTES {
            return Err(StreamError::BadParams(format!(
                "{length} bytes, over the limit of {MAX_PARAMS_BYTES}"
            )));
        }
        let mut json = vec![0u8; length as usize];
        read_exact_or_truncated(&mut inner, &mut json, 0, "the header ends")?;
        let json =
            String::from_utf8(json).map_err(|_| StreamError::BadParams("not UTF-8".into()))?;
        let params =
            ChainParams::from_json(&json).map_err(|e| StreamError::BadParams(e.to_string()))?;
        let mut genesis = [0u8; 32];
        read_exact_or_truncated(&mut inner, &mut genesis, 0, "the header ends")?;
        let declared = Hash32(genesis);
        let computed = params.genesis_hash();
        if declared != computed {
            return Err(StreamError::GenesisMismatch { declared, computed });
        }
        let limit = Limits::default().max_block_bytes() as u32;
        Ok((
            StreamHeader {
                params,
                params_json: json,
                genesis: declared,
            },
            StreamReader {
                inner,
                blocks: 0,
                limit,
                done: false,
            },
        ))
    }

    /// Number of block records read so far.
    pub fn blocks_read(&self) -> u64 {
        self.blocks
    }

    /// The next block's bytes, or `None` after a well-formed end marker.
    pub fn next_block(&mut self) -> Result<Option<Vec<u8>>, StreamError> {
        if self.done {
            return Ok(None);
        }
        let mut word = [0u8; 4];
        read_exact_or_truncated(
            &mut self.inner,
            &mut word,
            self.blocks,
            "the end marker is missing",
        )?;
        let length = u32::from_le_bytes(word);
        if length == 0 {
            let mut count = [0u8; 8];
            read_exact_or_truncated(
                &mut self.inner,
                &mut count,
                self.blocks,
                "the end marker is cut short",
            )?;
            let declared = u64::from_le_bytes(count);
            if declared != self.blocks {
                return Err(StreamError::CountMismatch {
                    declared,
                    found: self.blocks,
                });
            }
            let mut extra = [0u8; 1];
            if self.inner.read(&mut extra)? != 0 {
                return Err(StreamError::TrailingBytes);
            }
            self.done = true;
            return Ok(None);
        }
        if length > self.limit {
            return Err(StreamError::RecordTooLarge {
                index: self.blocks + 1,
                length,
                limit: self.limit,
            });
        }
        // Grow with the bytes actually read, so a short input never causes
        // an allocation of the length it merely claims.
        let mut bytes = Vec::new();
        (&mut self.inner)
            .take(u64::from(length))
            .read_to_end(&mut bytes)?;
        if bytes.len() != length as usize {
            return Err(StreamError::Truncated {
                blocks: self.blocks,
                what: "the next block is cut short",
            });
        }
        self.blocks += 1;
        Ok(Some(bytes))
    }
}

/// Writes an export stream.
pub struct StreamWriter<W: Write> {
    inner: W,
    blocks: u64,
}

impl<W: Write> StreamWriter<W> {
    pub fn new(mut inner: W, params_json: &str, genesis: &Hash32) -> io::Result<StreamWriter<W>> {
        inner.write_all(MAGIC)?;
        inner.write_all(&STREAM_VERSION.to_le_bytes())?;
        inner.write_all(&(params_json.len() as u32).to_le_bytes())?;
        inner.write_all(params_json.as_bytes())?;
        inner.write_all(&genesis.0)?;
        Ok(StreamWriter { inner, blocks: 0 })
    }

    pub fn write_block(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.inner.write_all(&(bytes.len() as u32).to_le_bytes())?;
        self.inner.write_all(bytes)?;
        self.blocks += 1;
        Ok(())
    }

    /// Write the end marker and flush; returns the writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.inner.write_all(&0u32.to_le_bytes())?;
        self.inner.write_all(&self.blocks.to_le_bytes())?;
        self.inner.flush()?;
        Ok(self.inner)
    }
}

/// Write the best chain of `store` as a stream; returns the block count.
pub fn export_chain<W: Write>(store: &Store, out: W) -> anyhow::Result<(u64, W)> {
    let tip = store.tip()?;
    export_chain_at(store, &tip.hash, out)
}

/// Write the chain that ends at block `tip` as a stream; returns the block
/// count. The chain is found by following parent links back from `tip`,
/// and a stored block never changes, so the stream is the chain as of that
/// one tip even while a running node stores blocks and reorganises.
pub fn export_chain_at<W: Write>(store: &Store, tip: &Hash32, out: W) -> anyhow::Result<(u64, W)> {
    let hashes = chain_to(store, tip)?;
    let mut writer = StreamWriter::new(out, &store.params().to_json(), &store.genesis_hash())?;
    for hash in &hashes {
        let bytes = store
            .block_bytes(hash)?
            .with_context(|| format!("the store has no bytes for block {hash}"))?;
        writer.write_block(&bytes)?;
    }
    Ok((hashes.len() as u64, writer.finish()?))
}

/// The hashes of the blocks from height 1 up to `tip`, by parent links.
fn chain_to(store: &Store, tip: &Hash32) -> anyhow::Result<Vec<Hash32>> {
    let genesis = store.genesis_hash();
    let mut hashes = Vec::new();
    let mut next = *tip;
    while next != genesis {
        let meta = store
            .meta(&next)?
            .with_context(|| format!("the store has no record of block {next}"))?;
        hashes.push(next);
        next = meta.parent;
    }
    hashes.reverse();
    Ok(hashes)
}

/// Parse a whole stream held in memory and re-encode it; the fuzz targets
/// and the corpus replay use this. Returns the number of blocks when the
/// stream is well formed, and panics if a well-formed stream does not
/// re-encode to the same bytes.
pub fn roundtrip_stream(bytes: &[u8]) -> Option<u64> {
    let (header, mut reader) = StreamReader::open(bytes).ok()?;
    let mut blocks = Vec::new();
    loop {
        match reader.next_block() {
            Ok(Some(block)) => blocks.push(block),
            Ok(None) => break,
            Err(_) => return None,
        }
    }
    let mut writer = StreamWriter::new(Vec::new(), &header.params_json, &header.genesis)
        .expect("writing to memory");
    for block in &blocks {
        writer.write_block(block).expect("writing to memory");
    }
    let out = writer.finish().expect("writing to memory");
    assert_eq!(out, bytes, "a well-formed stream must re-encode to itself");
    Some(blocks.len() as u64)
}
