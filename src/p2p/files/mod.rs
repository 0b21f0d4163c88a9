//! Training data transfer: the files a chain pins by BLAKE3 hash (today
//! its dataset; an ONNX model file joins the list when ONNX tasks do),
//! served to peers in chunks and fetched from them by a node that lacks
//! them (schema/p2p.md, "Training data transfer").
//!
//! A file is asked for by its hash. The answer, a *manifest*, is the
//! file's size and the BLAKE3 hash of each 64 KiB chunk; it comes from a
//! peer, so it is not trusted: a chunk that does not match the manifest
//! of the peer that sent it is refused, fetched again from another peer
//! and its sender banned; and the assembled file must have the hash that
//! genesis pins, or every peer that vouched for its manifest is banned and
//! the fetch starts over from another peer's. Chunks are written into
//! `FILE.partial`; a stopped fetch resumes by re-hashing the chunks already
//! there, so nothing unverified is ever kept, and the finished file is
//! synced and renamed into place, so it appears whole or not at all.
//!
//! What this module never does: write a file under its final name before
//! its pinned hash is checked, or serve a byte that is not part of a file
//! whose whole hash it checked.

mod fetch;
mod manifest;
mod serve;

pub use fetch::{FetchReport, Fetcher};
pub use manifest::{chunk_count, read_manifest, FileError, Manifest};
pub use serve::ServedFiles;

use crate::chain::Hash32;
use crate::consensus::params::ChainParams;
use crate::node::datadir::pinned_files;
use crate::node::DataDir;
use std::path::PathBuf;
use std::sync::Mutex;

/// Largest training file this node serves or fetches.
pub const MAX_FILE_BYTES: u64 = 1 << 30;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A file a chain pins by hash, and where a data dir keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrainingFile {
    /// What the file is for, in log lines: `dataset` or `ONNX encoder`.
    pub what: &'static str,
    /// The file name the chain gives it.
    pub name: String,
    pub blake3: Hash32,
    /// Where the data dir holds it.
    pub path: PathBuf,
}

impl TrainingFile {
    /// Where a fetch keeps the chunks it has: `FILE.partial`, beside the file.
    pub fn partial_path(&self) -> PathBuf {
        let mut name = self.path.file_name().unwrap_or_default().to_os_string();
        name.push(".partial");
        self.path.with_file_name(name)
    }
}

/// Every file `params` pins by hash, at its place in `dir`.
pub fn training_files(dir: &DataDir, params: &ChainParams) -> Vec<TrainingFile> {
    pinned_files(params)
        .into_iter()
        .map(|file| TrainingFile {
            what: file.what,
            path: dir.file_path(&file.name),
            name: file.name,
            blake3: file.blake3,
        })
        .collect()
}
