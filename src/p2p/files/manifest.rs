//! The manifest of a training file: its size and the BLAKE3 hash of each
//! 64 KiB chunk, what `GetFile` answers. A manifest from a peer is not
//! trusted: [`Manifest::check`] refuses an impossible one before any chunk
//! is asked for, and [`Manifest::check_chunk`] each chunk against it.
//! Pure but for [`read_manifest`], which reads a file on disk.

use super::MAX_FILE_BYTES;
use crate::chain::Hash32;
use crate::p2p::wire::CHUNK_BYTES;
use anyhow::{bail, Context, Result};
use std::fs::File;
use std::io::Read;
use std::path::Path;
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum FileError {
    #[error("a file of {size} bytes is over the limit of {limit}")]
    TooLarge { size: u64, limit: u64 },
    #[error("a file of {size} bytes has {expected} chunks, not {found}")]
    ChunkCount {
        size: u64,
        expected: u64,
        found: usize,
    },
    #[error("chunk {index} is past the last chunk ({count} chunks)")]
    NoSuchChunk { index: u32, count: usize },
    #[error("chunk {index} has {found} bytes, not {expected}")]
    ChunkLength {
        index: u32,
        expected: u64,
        found: usize,
    },
    #[error("chunk {index} has BLAKE3 hash {found}, not {expected}")]
    ChunkHash {
        index: u32,
        expected: Hash32,
        found: Hash32,
    },
}

/// A file's size and the BLAKE3 hash of each of its chunks: what
/// `GetFile` answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    pub size: u64,
    pub chunk_hashes: Vec<Hash32>,
}

/// Number of chunks of a file of `size` bytes.
pub fn chunk_count(size: u64) -> u64 {
    size.div_ceil(u64::from(CHUNK_BYTES))
}

fn blake3_of(bytes: &[u8]) -> Hash32 {
    Hash32(*blake3::hash(bytes).as_bytes())
}

impl Manifest {
    /// The manifest of `bytes`.
    pub fn of(bytes: &[u8]) -> Manifest {
        Manifest {
            size: bytes.len() as u64,
            chunk_hashes: bytes.chunks(CHUNK_BYTES as usize).map(blake3_of).collect(),
        }
    }

    /// Refuse a manifest no file this node accepts can have.
    pub fn check(&self) -> Result<(), FileError> {
        if self.size > MAX_FILE_BYTES {
            return Err(FileError::TooLarge {
                size: self.size,
                limit: MAX_FILE_BYTES,
            });
        }
        let expected = chunk_count(self.size);
        if self.chunk_hashes.len() as u64 != expected {
            return Err(FileError::ChunkCount {
                size: self.size,
                expected,
                found: self.chunk_hashes.len(),
            });
        }
        Ok(())
    }

    /// Byte offset and length of chunk `index`.
    pub fn chunk_span(&self, index: u32) -> Result<(u64, u64), FileError> {
        let offset = u64::from(index) * u64::from(CHUNK_BYTES);
        // A chunk past the size is none, even in a manifest not checked yet.
        if index as usize >= self.chunk_hashes.len() || offset >= self.size {
            return Err(FileError::NoSuchChunk {
                index,
                count: self.chunk_hashes.len(),
            });
        }
        Ok((offset, (self.size - offset).min(u64::from(CHUNK_BYTES))))
    }

    /// Whether `bytes` are chunk `index` of this manifest.
    pub fn check_chunk(&self, index: u32, bytes: &[u8]) -> Result<(), FileError> {
        let (_, len) = self.chunk_span(index)?;
        if bytes.len() as u64 != len {
            return Err(FileError::ChunkLength {
                index,
                expected: len,
                found: bytes.len(),
            });
        }
        let found = blake3_of(bytes);
        let expected = self.chunk_hashes[index as usize];
        if found != expected {
            return Err(FileError::ChunkHash {
                index,
                expected,
                found,
            });
        }
        Ok(())
    }
}

/// The BLAKE3 hash and the manifest of a file on disk, read in chunks.
pub fn read_manifest(path: &Path) -> Result<(Hash32, Manifest)> {
    let mut file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let size = file.metadata()?.len();
    if size > MAX_FILE_BYTES {
        bail!(FileError::TooLarge {
            size,
            limit: MAX_FILE_BYTES
        });
    }
    let mut whole = blake3::Hasher::new();
    let mut chunk_hashes = Vec::with_capacity(chunk_count(size) as usize);
    let mut buffer = vec![0u8; CHUNK_BYTES as usize];
    let mut left = size;
    while left > 0 {
        let len = left.min(u64::from(CHUNK_BYTES)) as usize;
        file.read_exact(&mut buffer[..len])
            .with_context(|| format!("cannot read {}", path.display()))?;
        whole.update(&buffer[..len]);
        chunk_hashes.push(blake3_of(&buffer[..len]));
        left -= len as u64;
    }
    Ok((
        Hash32(*whole.finalize().as_bytes()),
        Manifest { size, chunk_hashes },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn manifests_cover_the_file_in_chunks() {
        let data = bytes(2 * CHUNK_BYTES as usize + 10);
        let manifest = Manifest::of(&data);
        assert_eq!(manifest.chunk_hashes.len(), 3);
        manifest.check().unwrap();
        assert_eq!(
            manifest.chunk_span(2).unwrap(),
            (2 * u64::from(CHUNK_BYTES), 10)
        );
        let last = &data[2 * CHUNK_BYTES as usize..];
        manifest.check_chunk(2, last).unwrap();
        let mut bad = last.to_vec();
        bad[0] ^= 1;
        assert!(matches!(
            manifest.check_chunk(2, &bad),
            Err(FileError::ChunkHash { index: 2, .. })
        ));
        assert!(matches!(
            manifest.check_chunk(2, &data[..11]),
            Err(FileError::ChunkLength { .. })
        ));
        assert!(matches!(
            manifest.check_chunk(3, last),
            Err(FileError::NoSuchChunk { .. })
        ));
    }

    #[test]
    fn impossible_manifests_are_refused() {
        let mut manifest = Manifest::of(&bytes(100));
        manifest.chunk_hashes.push(Hash32::ZERO);
        assert!(matches!(
            manifest.check(),
            Err(FileError::ChunkCount { .. })
        ));
        let huge = Manifest {
            size: MAX_FILE_BYTES + 1,
            chunk_hashes: Vec::new(),
        };
        assert!(matches!(huge.check(), Err(FileError::TooLarge { .. })));
        assert_eq!(Manifest::of(&[]).chunk_hashes.len(), 0);
        Manifest::of(&[]).check().unwrap();
    }

    #[test]
    fn an_unchecked_manifest_names_no_chunk_past_its_size() {
        let manifest = Manifest {
            size: 0,
            chunk_hashes: vec![Hash32::ZERO; 2],
        };
        assert!(manifest.check().is_err());
        assert_eq!(
            manifest.chunk_span(1),
            Err(FileError::NoSuchChunk { index: 1, count: 2 })
        );
        assert!(manifest.check_chunk(1, &[]).is_err());
    }
}
