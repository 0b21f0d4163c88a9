//! Serving training files: the files a node holds verified, by hash,
//! answered as a manifest and as chunks read from disk.

use super::manifest::{read_manifest, Manifest};
use super::training_files;
use crate::chain::Hash32;
use crate::consensus::params::ChainParams;
use crate::node::DataDir;
use crate::p2p::transport::log;
use crate::p2p::wire::Response;
use anyhow::{bail, Result};
use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;

/// A file this node serves: where it is and its manifest, computed when
/// the file's whole hash was checked.
#[derive(Debug)]
struct Served {
    path: PathBuf,
    manifest: Manifest,
}

/// The training files a node serves, by hash. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct ServedFiles {
    files: Arc<HashMap<Hash32, Served>>,
}

impl ServedFiles {
    /// Check this node's training files against their pinned hashes, once,
    /// and keep their manifests. A masternode serves its chain's training
    /// data to everyone, so it refuses to start without every file; a plain
    /// node serves the files it holds whole and verified, and leaves the
    /// rest out.
    pub fn load(dir: &DataDir, params: &ChainParams, masternode: bool) -> Result<ServedFiles> {
        let mut files = HashMap::new();
        for file in training_files(dir, params) {
            let checked = read_manifest(&file.path).and_then(|(found, manifest)| {
                if found != file.blake3 {
                    bail!(
                        "{} has BLAKE3 hash {found}, but the chain pins {}",
                        file.path.display(),
                        file.blake3
                    );
                }
                Ok(manifest)
            });
            match checked {
                Ok(manifest) => {
                    files.insert(
                        file.blake3,
                        Served {
                            path: file.path,
                            manifest,
                        },
                    );
                }
                Err(e) if masternode => {
                    return Err(e.context(format!(
                        "a masternode serves its chain's training data, but cannot serve {} {}",
                        file.what, file.name
                    )))
                }
                Err(e) => log(format_args!(
                    "not serving {} {}: {e:#}",
                    file.what, file.name
                )),
            }
        }
        Ok(ServedFiles {
            files: Arc::new(files),
        })
    }

    /// Whether this node serves the file with this hash.
    pub fn serves(&self, blake3: &Hash32) -> bool {
        self.files.contains_key(blake3)
    }

    /// The answer to `GetFile`.
    pub fn manifest(&self, blake3: &Hash32) -> Response {
        match self.files.get(blake3) {
            Some(served) => Response::File {
                size: served.manifest.size,
                chunk_hashes: served.manifest.chunk_hashes.clone(),
            },
            None => Response::NotFound,
        }
    }

    /// The answer to `GetChunk`; reads the disk, so call it off the async
    /// threads. A chunk that no longer matches the manifest (the file was
    /// changed under the node) is not served.
    pub fn chunk(&self, blake3: &Hash32, index: u32) -> Response {
        let Some(served) = self.files.get(blake3) else {
            return Response::NotFound;
        };
        let manifest = &served.manifest;
        let Ok((offset, len)) = manifest.chunk_span(index) else {
            return Response::NotFound;
        };
        let mut bytes = vec![0u8; len as usize];
        let read = File::open(&served.path).and_then(|f| f.read_exact_at(&mut bytes, offset));
        if let Err(e) = read {
            log(format_args!(
                "cannot serve chunk {index} of {}: {e}",
                served.path.display()
            ));
            return Response::NotFound;
        }
        if let Err(e) = manifest.check_chunk(index, &bytes) {
            log(format_args!(
                "not serving {}: it changed on disk since the node started ({e})",
                served.path.display()
            ));
            return Response::NotFound;
        }
        Response::Chunk(bytes)
    }
}
