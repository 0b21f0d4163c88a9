//! Persistent chain storage in sled.
//!
//! Three kinds of files (schema/storage.md). The block file holds every
//! stored block's bytes, each followed by its record (the little its
//! header does not say). Sorted run files ([`runs`]) hold two indexes that
//! would cost a random sled key per entry: block id and work hash → record,
//! and transaction id → height. One sled tree holds the rest, under key
//! prefixes: the best-chain height index with each block's undo record,
//! in ranges of consecutive heights (one key per stored batch, not per
//! block), the ledger's accounts and jobs, and a few meta keys (format version,
//! chain parameters, tip, the block file's length, the live runs). Every
//! change — new blocks, the tip move, a reorg's rollback and replay, the
//! accounts — is one atomic sled batch, flushed before the call returns,
//! written after the file bytes it commits were synced, so a crash leaves
//! either all of it or none.
//!
//! The store accepts only [`CheckedBlock`]s; it never validates anything
//! itself and never decides fork choice beyond calling `consensus::is_better`.

use crate::chain::{encoding, Block, Hash32, Limits};
use crate::consensus::params::ChainParams;
use crate::consensus::{self, AncestorInfo, Ancestry, CheckedBlock};
use crate::ledger::{
    self, BlockTraining, Credit, JobState, JobStatus, LedgerError, LedgerState, Schedule, Undo,
};
use crate::tx::{Account, CheckedTx, JobSpec, TxKind};
use primitive_types::U256;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Mutex;
use thiserror::Error;

mod runs;
use runs::RunIndex;

/// Version of the layout below. Versions 1 and 2 hold protocol 1 chains,
/// which this node cannot read; a store of another version is refused.
pub const FORMAT_VERSION: u32 = 8;

/// The most memory sled's page cache may hold. sled's default (1 GiB) let
/// a node's memory grow with its chain. sled holds only the height index
/// and the ledger's state, and the store reads the top of the height
/// index and a few accounts: 2 MiB kept a mining node within 17 % from
/// 10,000 to 100,000 blocks, where 4 MiB let it grow by 20–22 %
/// (benches/RESULTS-store.md).
pub const CACHE_BYTES: u64 = 2 * 1024 * 1024;

const KEY_FORMAT: &[u8] = b"meta/format";
const KEY_PARAMS: &[u8] = b"meta/params";
const KEY_TIP: &[u8] = b"meta/tip";
/// How many bytes of the block file hold stored blocks.
const KEY_BLOCKS_LEN: &[u8] = b"meta/blocks";
/// The transaction index's live run files ([`runs`]).
const KEY_TX_RUNS: &[u8] = b"meta/txruns";
/// The block index's live run files.
const KEY_BLOCK_RUNS: &[u8] = b"meta/blockruns";
/// The block file, in the store's directory beside sled's files: every
/// stored block's canonical bytes, each followed by its record.
const BLOCK_FILE: &str = "blocks";

fn key(prefix: &[u8], id: &[u8]) -> Vec<u8> {
    [prefix, id].concat()
}
/// The height index, in ranges of consecutive heights (format 8):
/// `r/` ‖ `u64be(first height)` → the entries of the heights from there.
const RANGE_PREFIX: &[u8] = b"r/";
fn range_key(first: u64) -> Vec<u8> {
    key(RANGE_PREFIX, &first.to_be_bytes())
}
/// A range that a batch writes holds at most this many heights, and
/// more than one only while its entries take at most [`RANGE_BYTES`].
const RANGE_HEIGHTS: usize = 64;
const RANGE_BYTES: usize = 64 * 1024;
/// Format 7 kept one key per height, `h/` ‖ `u64be(height)`, with the
/// entry as its value. Opening such a store moves them into ranges.
const OLD_HEIGHT_PREFIX: &[u8] = b"h/";
fn account_key(id: &Hash32) -> Vec<u8> {
    key(b"a/", &id.0)
}

fn job_key(id: &Hash32) -> Vec<u8> {
    key(b"j/", &id.0)
}
const QUEUE_PREFIX: &[u8] = b"q/";
fn queue_key(job: &JobState) -> Vec<u8> {
    key(QUEUE_PREFIX, &job.queue_key().to_bytes())
}
const KEY_SCHEDULE: &[u8] = b"meta/schedule";
/// Format 5 kept the transaction index in sled, under this prefix: the
/// first 16 bytes of the id → `u64be` height. Opening such a store moves
/// it into run files.
const OLD_TX_PREFIX: &[u8] = b"t/";
/// Format 6 kept each block's record in sled under `b/` and its id, and
/// the work-hash index under `w/` and the work hash (→ block id). Opening
/// such a store moves them into the block file and the block index.
const OLD_BLOCK_PREFIX: &[u8] = b"b/";
const OLD_WORK_PREFIX: &[u8] = b"w/";
/// The indexes keep the first 16 bytes of a hash; a lookup confirms the
/// whole hash in the block or record an entry names.
fn index_key(hash: &Hash32) -> runs::Key {
    hash.0[..runs::KEY_LEN].try_into().expect("16 bytes")
}

#[derive(Debug, Error)]
pub enum StoreError {
    #[error(
        "the store at {path} is in use by another process (is a node running on this data dir?)"
    )]
    Locked { path: String },
    #[error("the store at {path} has format version {found}, newer than this pouwd supports ({supported}); upgrade pouwd")]
    NewerFormat {
        path: String,
        found: u32,
        supported: u32,
    },
    #[error("the store at {path} is not a pouwd store: {reason}")]
    NotAStore { path: String, reason: String },
    #[error("the store at {path} was never finished (creation was interrupted)")]
    Unfinished { path: String },
    #[error("the store is corrupt: {0}")]
    Corrupt(String),
    #[error("the disk holding the store is full ({detail}); nothing stored was lost: free some space and start again")]
    DiskFull { detail: String },
    #[error("storage error: {0}")]
    Sled(String),
    /// A write to the store failed earlier in this process; what sled
    /// holds in memory since may not be what is on disk, so the store
    /// answers nothing more until it is opened again.
    #[error(
        "an earlier write to the store failed ({0}); nothing stored was lost: restart the node"
    )]
    WriteFailed(String),
    #[error(
        "the disk holding the store at {path} is full, and sled writes to a store it opens; \
             reading a copy of it instead failed ({error}): free some space on either disk, \
             or set TMPDIR to a disk with room for a copy of the store ({bytes} bytes)"
    )]
    FullNoCopy {
        path: String,
        error: String,
        bytes: u64,
    },
    #[error("the store at {path} holds a protocol {protocol} chain (store format {found}); this pouwd runs protocol {runs}: start a new data dir")]
    OldProtocol {
        path: String,
        found: u32,
        protocol: u32,
        runs: u32,
    },
    #[error("the store at {path} is of format {found}, {why}; this pouwd reads format {supported}: start a new data dir")]
    OldFormat {
        path: String,
        found: u32,
        supported: u32,
        why: &'static str,
    },
    #[error("a block breaks a ledger rule: {0}")]
    Ledger(#[from] LedgerError),
    /// A block of the branch being connected breaks a ledger rule. The
    /// blocks of the batch before the one that made the store connect it
    /// were stored: `stored` says what each did.
    #[error("block {block} at height {height} breaks a ledger rule: {error}")]
    InvalidBlock {
        block: Hash32,
        height: u64,
        error: Box<LedgerError>,
        stored: Vec<Stored>,
    },
}

impl From<sled::Error> for StoreError {
    fn from(error: sled::Error) -> StoreError {
        match &error {
            sled::Error::Io(io)
                if io.kind() == std::io::ErrorKind::StorageFull
                    || io.to_string().contains("No space left on device") =>
            {
                StoreError::DiskFull {
                    detail: "No space left on device".into(),
                }
            }
            _ => StoreError::Sled(error.to_string()),
        }
    }
}

/// What the store keeps about each block besides its bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockMeta {
    pub parent: Hash32,
    pub height: u64,
    pub timestamp_ms: u64,
    pub target: Hash32,
    pub score_ppm: u32,
    pub miner: Hash32,
    /// Big-endian cumulative work up to and including this block.
    pub cumulative_work: Hash32,
    /// The job the block trains, and its number within it (the header's).
    pub job: Hash32,
    pub job_block: u64,
    /// The last block at or before this one that trains the genesis task
    /// (genesis itself when none does): where the genesis task resumes.
    pub genesis_task_tip: Hash32,
}

impl BlockMeta {
    pub fn work(&self) -> U256 {
        U256::from_big_endian(&self.cumulative_work.0)
    }
}

/// The head of the best chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tip {
    pub hash: Hash32,
    pub height: u64,
    pub cumulative_work: U256,
}

/// What storing one block did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stored {
    /// The block extends the best chain.
    Extended,
    /// The block made another branch the best: `disconnected` blocks of the
    /// old branch were rolled back above `fork_height`.
    Reorg { fork_height: u64, disconnected: u64 },
    /// Stored on a side branch with no more work than the best chain.
    SideChain,
    /// Already stored; nothing changed.
    AlreadyKnown,
}

/// Balance of one key on the best chain: its account's spendable and
/// immature base units together, and the spendable part.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Balance {
    pub total: u64,
    /// Credits at least `validation_window` blocks deep.
    pub spendable: u64,
}

pub struct Store {
    db: sled::Db,
    blocks: BlockFile,
    params: ChainParams,
    genesis: Hash32,
    /// The temporary directory of the copy `db` was opened from
    /// ([`Store::open_to_read`]), removed after `db` is dropped.
    copy: Option<tempfile::TempDir>,
    /// Genesis has no record: its metadata follows from the parameters.
    genesis_meta: BlockMeta,
    /// Which best-chain height holds each transaction.
    txindex: RunIndex,
    /// Where each block's record is in the block file, by block id and by
    /// work hash.
    blockindex: RunIndex,
    /// The first write that failed. sled applies a batch key by key in
    /// memory, so a batch that fails half-way (a full disk) can leave a
    /// tip without its block there: after a failed write, every call
    /// answers this error instead of reading that state.
    failed: std::sync::OnceLock<Failure>,
}

/// Why the store stopped answering ([`Store::check_usable`]).
#[derive(Clone, Debug)]
enum Failure {
    DiskFull(String),
    Other(String),
}

impl Failure {
    fn of(error: &StoreError) -> Option<Failure> {
        match error {
            StoreError::DiskFull { detail } => Some(Failure::DiskFull(detail.clone())),
            StoreError::Sled(detail) => Some(Failure::Other(detail.clone())),
            // A refused block, or an error found before anything was written.
            _ => None,
        }
    }

    fn error(&self) -> StoreError {
        match self {
            Failure::DiskFull(detail) => StoreError::DiskFull {
                detail: detail.clone(),
            },
            Failure::Other(detail) => StoreError::WriteFailed(detail.clone()),
        }
    }
}

/// The block file and how much of it the store's records cover.
struct BlockFile {
    file: std::fs::File,
    /// The length the store's `meta/blocks` gives. Held while a batch is
    /// staged and written, so that batches append one after another.
    len: Mutex<u64>,
}

fn block_file_error(e: std::io::Error) -> StoreError {
    if e.kind() == std::io::ErrorKind::StorageFull {
        StoreError::DiskFull {
            detail: e.to_string(),
        }
    } else {
        StoreError::Sled(format!("block file: {e}"))
    }
}

impl BlockFile {
    /// Open the block file of a store whose records cover `len` bytes of
    /// it. Bytes past `len` were written by a batch that a crash stopped
    /// before sled committed it: they are cut off.
    fn open(dir: &Path, len: u64) -> Result<BlockFile, StoreError> {
        let path = dir.join(BLOCK_FILE);
        let file = match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
        {
            // A store created with no block yet may have lost the file's
            // directory entry in a crash: nothing is missing.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && len == 0 => {
                return BlockFile::create(dir)
            }
            Err(e) => {
                return Err(StoreError::Corrupt(format!(
                    "block file {}: {e}",
                    path.display()
                )))
            }
            Ok(file) => file,
        };
        let size = file.metadata().map_err(block_file_error)?.len();
        if size < len {
            return Err(StoreError::Corrupt(format!(
                "the block file {} holds {size} bytes; the store's blocks take {len}",
                path.display()
            )));
        }
        if size > len {
            file.set_len(len).map_err(block_file_error)?;
            file.sync_all().map_err(block_file_error)?;
        }
        Ok(BlockFile {
            file,
            len: Mutex::new(len),
        })
    }

    fn create(dir: &Path) -> Result<BlockFile, StoreError> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.join(BLOCK_FILE))
            .map_err(block_file_error)?;
        file.sync_all().map_err(block_file_error)?;
        Ok(BlockFile {
            file,
            len: Mutex::new(0),
        })
    }

    fn read(&self, id: &Hash32, record: &BlockRecord) -> Result<Vec<u8>, StoreError> {
        let mut bytes = vec![0u8; record.len as usize];
        self.file
            .read_exact_at(&mut bytes, record.offset)
            .map_err(|e| corrupt_record(id, format!("reading the block file: {e}")))?;
        Ok(bytes)
    }

    /// The record that starts at `offset` (an index entry's value).
    fn read_record(&self, offset: u64) -> Result<FileRecord, StoreError> {
        let corrupt = |why: String| {
            StoreError::Corrupt(format!("the block file's record at offset {offset}: {why}"))
        };
        let mut len = [0u8; 2];
        self.file
            .read_exact_at(&mut len, offset)
            .map_err(|e| corrupt(e.to_string()))?;
        let mut bytes = vec![0u8; usize::from(u16::from_le_bytes(len))];
        self.file
            .read_exact_at(&mut bytes, offset + 2)
            .map_err(|e| corrupt(e.to_string()))?;
        postcard::from_bytes(&bytes).map_err(|e| corrupt(e.to_string()))
    }
}

/// A block's record in the block file, right after the block's bytes: its
/// id and work hash, which the block index's entries are confirmed
/// against, and its [`BlockRecord`]. Stored as `u16le` length, then
/// postcard.
#[derive(Deserialize)]
struct FileRecord {
    id: Hash32,
    work_hash: Hash32,
    block: BlockRecord,
}

/// [`FileRecord`] as it is written.
#[derive(Serialize)]
struct FileRecordRef<'a> {
    id: &'a Hash32,
    work_hash: &'a Hash32,
    block: &'a BlockRecord,
}

/// Append a block's record to `out`.
fn write_record(
    out: &mut Vec<u8>,
    id: &Hash32,
    work_hash: &Hash32,
    block: &BlockRecord,
) -> Result<(), StoreError> {
    let bytes = encoding::encode(&FileRecordRef {
        id,
        work_hash,
        block,
    });
    // About 190 bytes on a regtest chain, 300 at most.
    let len = u16::try_from(bytes.len())
        .map_err(|_| corrupt_record(id, format!("{} bytes", bytes.len())))?;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&bytes);
    Ok(())
}

/// Pending writes over the tree: reads see them, and they become one batch.
struct Overlay<'a> {
    tree: &'a sled::Db,
    /// Kept as sled's own byte strings, so that the batch takes them as they are.
    writes: BTreeMap<sled::IVec, Option<sled::IVec>>,
    /// Where the staged blocks' bytes go in the block file, and the bytes.
    base: u64,
    appended: Vec<u8>,
    /// The records of the blocks staged.
    staged: HashMap<Hash32, BlockRecord>,
    /// The transaction index entries of the blocks connected.
    tx_entries: Vec<(runs::Key, u64)>,
    /// The block index entries of the blocks staged: their ids and work
    /// hashes, each with the offset of the block's record.
    block_entries: Vec<(runs::Key, u64)>,
    /// Height index entries written (`Some`) or removed (`None`).
    heights: BTreeMap<u64, Option<Vec<u8>>>,
    /// The stored range read last: the next reads are mostly in it.
    range: std::cell::RefCell<Option<Range>>,
    /// The first stored `q/` entry (`Some(None)`: there is none), read once.
    queue_front: std::cell::OnceCell<Option<(sled::IVec, sled::IVec)>>,
}

/// A stored range of the height index: its key's first height, its value,
/// and where each entry lies in the value.
struct Range {
    first: u64,
    value: sled::IVec,
    spans: Vec<(usize, usize)>,
}

impl Range {
    /// A range's value: each entry as `u32le(length)` ‖ entry.
    fn decode(key: &[u8], value: sled::IVec) -> Result<Range, StoreError> {
        let first = key
            .strip_prefix(RANGE_PREFIX)
            .and_then(|k| k.try_into().ok())
            .map(u64::from_be_bytes)
            .ok_or_else(|| StoreError::Corrupt("a height range key is not 10 bytes".into()))?;
        let mut spans = Vec::new();
        let mut at = 0;
        while at < value.len() {
            let len = value
                .get(at..at + 4)
                .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize)
                .ok_or_else(|| corrupt_range(first, "an entry length is cut off"))?;
            let start = at + 4;
            let end = start
                .checked_add(len)
                .filter(|&end| end <= value.len())
                .ok_or_else(|| corrupt_range(first, "an entry is cut off"))?;
            spans.push((start, end));
            at = end;
        }
        if spans.is_empty() {
            return Err(corrupt_range(first, "it is empty"));
        }
        Ok(Range {
            first,
            value,
            spans,
        })
    }

    /// The last height it holds.
    fn last(&self) -> u64 {
        self.first + self.spans.len() as u64 - 1
    }

    fn entry(&self, height: u64) -> Option<&[u8]> {
        let i = usize::try_from(height.checked_sub(self.first)?).ok()?;
        self.spans
            .get(i)
            .map(|&(start, end)| &self.value[start..end])
    }

    fn entries(&self) -> impl Iterator<Item = (u64, &[u8])> {
        self.spans
            .iter()
            .enumerate()
            .map(|(i, &(start, end))| (self.first + i as u64, &self.value[start..end]))
    }

    /// The stored range that holds `height`, if any.
    fn holding(tree: &sled::Tree, height: u64) -> Result<Option<Range>, StoreError> {
        let Some(item) = tree.range(range_key(0)..=range_key(height)).next_back() else {
            return Ok(None);
        };
        let (key, value) = item?;
        let range = Range::decode(&key, value)?;
        Ok((range.last() >= height).then_some(range))
    }
}

fn corrupt_range(first: u64, why: &str) -> StoreError {
    StoreError::Corrupt(format!("the height range from {first}: {why}"))
}

/// The values of height ranges holding `entries`, consecutive heights
/// from the first, each with its first height.
fn pack_ranges(entries: &[(u64, Vec<u8>)]) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
    let mut ranges: Vec<(u64, Vec<u8>, usize)> = Vec::new();
    for (i, (height, entry)) in entries.iter().enumerate() {
        if let Some((first, _)) = entries.first() {
            if *height != first + i as u64 {
                return Err(StoreError::Corrupt(format!(
                    "the height index has no entry at {}",
                    first + i as u64
                )));
            }
        }
        let len = u32::try_from(entry.len()).map_err(|_| {
            StoreError::Corrupt(format!("the height index entry at {height} is over 4 GiB"))
        })?;
        let fits = ranges.last().is_some_and(|(_, value, count)| {
            *count < RANGE_HEIGHTS && value.len() + 4 + entry.len() <= RANGE_BYTES
        });
        if !fits {
            ranges.push((*height, Vec::new(), 0));
        }
        let (_, value, count) = ranges.last_mut().expect("a range");
        value.extend_from_slice(&len.to_le_bytes());
        value.extend_from_slice(entry);
        *count += 1;
    }
    Ok(ranges
        .into_iter()
        .map(|(first, value, _)| (first, value))
        .collect())
}

/// A value read through an [`Overlay`]: staged or stored, never copied.
enum Value<'a> {
    Staged(&'a [u8]),
    Stored(sled::IVec),
}

impl std::ops::Deref for Value<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Value::Staged(bytes) => bytes,
            Value::Stored(bytes) => bytes,
        }
    }
}

impl<'a> Overlay<'a> {
    fn get(&self, key: &[u8]) -> Result<Option<Value<'_>>, StoreError> {
        match self.writes.get(key) {
            Some(value) => Ok(value.as_deref().map(Value::Staged)),
            None => Ok(self.tree.get(key)?.map(Value::Stored)),
        }
    }
    fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.writes.insert(key.into(), Some(value.into()));
    }
    fn remove(&mut self, key: Vec<u8>) {
        self.writes.insert(key.into(), None);
    }
    /// The height index entry at `height`: written here, or stored.
    fn height_entry(&self, height: u64) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(entry) = self.heights.get(&height) {
            return Ok(entry.clone());
        }
        let mut cached = self.range.borrow_mut();
        if let Some(entry) = cached.as_ref().and_then(|r| r.entry(height)) {
            return Ok(Some(entry.to_vec()));
        }
        let Some(range) = Range::holding(self.tree, height)? else {
            return Ok(None);
        };
        let entry = range.entry(height).map(<[u8]>::to_vec);
        *cached = Some(range);
        Ok(entry)
    }
    fn set_height_entry(&mut self, height: u64, entry: Option<Vec<u8>>) {
        self.heights.insert(height, entry);
    }
    /// The pending writes as one batch. The height index entries changed
    /// rewrite the stored ranges from the one that holds the lowest of
    /// them up.
    fn into_batch(self) -> Result<sled::Batch, StoreError> {
        let mut batch = sled::Batch::default();
        if let Some(&lowest) = self.heights.keys().next() {
            let from = Range::holding(self.tree, lowest)?.map_or(lowest, |r| r.first);
            let mut entries = BTreeMap::new();
            for item in self.tree.range(range_key(from)..) {
                let (key, value) = item?;
                if !key.starts_with(RANGE_PREFIX) {
                    break;
                }
                let range = Range::decode(&key, value)?;
                entries.extend(range.entries().map(|(h, e)| (h, e.to_vec())));
                batch.remove(key);
            }
            for (height, entry) in self.heights {
                match entry {
                    Some(entry) => entries.insert(height, entry),
                    None => entries.remove(&height),
                };
            }
            let entries: Vec<(u64, Vec<u8>)> = entries.into_iter().collect();
            for (first, value) in pack_ranges(&entries)? {
                batch.insert(range_key(first), value);
            }
        }
        for (k, v) in self.writes {
            match v {
                Some(v) => batch.insert(k, v),
                None => batch.remove(k),
            }
        }
        Ok(batch)
    }
}

impl LedgerState<StoreError> for Overlay<'_> {
    fn get_account(&self, id: &Hash32) -> Result<Option<Account>, StoreError> {
        self.get(&account_key(id))?
            .map(|bytes| decode_value(&bytes, "account"))
            .transpose()
    }

    fn set_account(&mut self, id: Hash32, account: Option<Account>) -> Result<(), StoreError> {
        match account {
            Some(account) => self.put(account_key(&id), encoding::encode(&account)),
            None => self.remove(account_key(&id)),
        }
        Ok(())
    }

    fn get_job(&self, id: &Hash32) -> Result<Option<JobState>, StoreError> {
        self.get(&job_key(id))?
            .map(|bytes| decode_value(&bytes, "job"))
            .transpose()
    }

    fn set_job(&mut self, id: Hash32, job: Option<JobState>) -> Result<(), StoreError> {
        if let Some(old) = self.get_job(&id)? {
            if old.status == JobStatus::Queued {
                self.remove(queue_key(&old));
            }
        }
        match job {
            Some(job) => {
                if job.status == JobStatus::Queued {
                    self.put(queue_key(&job), id.0.to_vec());
                }
                self.put(job_key(&id), encoding::encode(&job));
            }
            None => self.remove(job_key(&id)),
        }
        Ok(())
    }

    /// The first `q/` key of the tree with the pending writes applied.
    fn queue_head(&self) -> Result<Option<Hash32>, StoreError> {
        let pending = self
            .writes
            .range::<[u8], _>((
                std::ops::Bound::Included(QUEUE_PREFIX),
                std::ops::Bound::Unbounded,
            ))
            .take_while(|(k, _)| k.starts_with(QUEUE_PREFIX))
            .find_map(|(k, v)| v.as_ref().map(|v| (k.to_vec(), v.to_vec())));
        // The tree does not change under an overlay: its first entry is
        // read once, and the scan goes on past it only when a write here
        // replaced or removed it.
        let front = match self.queue_front.get() {
            Some(front) => front,
            None => {
                let first = self.tree.scan_prefix(QUEUE_PREFIX).next().transpose()?;
                self.queue_front.get_or_init(|| first)
            }
        };
        let mut stored = None;
        match front {
            None => {}
            Some((k, v)) if !self.writes.contains_key(k.as_ref()) => {
                stored = Some((k.to_vec(), v.to_vec()));
            }
            Some(_) => {
                for entry in self.tree.scan_prefix(QUEUE_PREFIX) {
                    let (k, v) = entry?;
                    if !self.writes.contains_key(k.as_ref()) {
                        stored = Some((k.to_vec(), v.to_vec()));
                        break;
                    }
                }
            }
        }
        let head = match (pending, stored) {
            (Some(p), Some(s)) => Some(if p.0 <= s.0 { p } else { s }),
            (p, s) => p.or(s),
        };
        head.map(|(_, id)| decode_hash(&id, "queue entry"))
            .transpose()
    }

    fn get_schedule(&self) -> Result<Schedule, StoreError> {
        Ok(self
            .get(KEY_SCHEDULE)?
            .map(|bytes| decode_value(&bytes, "job schedule"))
            .transpose()?
            .unwrap_or_default())
    }

    fn set_schedule(&mut self, schedule: Schedule) -> Result<(), StoreError> {
        self.put(KEY_SCHEDULE.to_vec(), encoding::encode(&schedule));
        Ok(())
    }

    /// The credit is in the undo record of the best chain's block there,
    /// which its height index entry holds.
    fn credit_at(&self, height: u64) -> Result<Option<Credit>, StoreError> {
        let Some(entry) = self.height_entry(height)? else {
            return Ok(None);
        };
        Ok(decode_height_entry(&entry)?.1.map(|undo| undo.credit))
    }
}

fn decode_value<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, StoreError> {
    postcard::from_bytes(bytes).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

/// A block's record: where its bytes are in the block file, and its
/// metadata in few bytes. (Format 6 kept it in sled, under `b/`.)
#[derive(Clone, Serialize, Deserialize)]
struct BlockRecord {
    /// Offset and length of the block's canonical bytes in the block file.
    offset: u64,
    len: u32,
    parent: Hash32,
    height: u64,
    timestamp_ms: u64,
    /// The target, big-endian, without leading zero bytes.
    target: Vec<u8>,
    score_ppm: u32,
    miner: Hash32,
    /// Cumulative work, big-endian, without leading zero bytes.
    work: Vec<u8>,
    /// The job, `None` for the genesis task (all zeros).
    job: Option<Hash32>,
    job_block: u64,
    /// The last block at or before this one that trains the genesis task;
    /// `None` when that is the block itself.
    genesis_task_tip: Option<Hash32>,
}

fn trimmed(hash: &Hash32) -> Vec<u8> {
    let first = hash.0.iter().position(|&b| b != 0).unwrap_or(32);
    hash.0[first..].to_vec()
}

fn untrimmed(id: &Hash32, bytes: &[u8]) -> Result<Hash32, StoreError> {
    if bytes.len() > 32 {
        return Err(corrupt_record(id, "a 256-bit number over 32 bytes"));
    }
    let mut out = [0u8; 32];
    out[32 - bytes.len()..].copy_from_slice(bytes);
    Ok(Hash32(out))
}

impl BlockRecord {
    fn new(id: &Hash32, meta: &BlockMeta, offset: u64, len: u32) -> BlockRecord {
        BlockRecord {
            offset,
            len,
            parent: meta.parent,
            height: meta.height,
            timestamp_ms: meta.timestamp_ms,
            target: trimmed(&meta.target),
            score_ppm: meta.score_ppm,
            miner: meta.miner,
            work: trimmed(&meta.cumulative_work),
            job: (meta.job != Hash32::ZERO).then_some(meta.job),
            job_block: meta.job_block,
            genesis_task_tip: (meta.genesis_task_tip != *id).then_some(meta.genesis_task_tip),
        }
    }

    fn decode(id: &Hash32, bytes: &[u8]) -> Result<BlockRecord, StoreError> {
        postcard::from_bytes(bytes).map_err(|e| corrupt_record(id, e))
    }

    fn meta(&self, id: &Hash32) -> Result<BlockMeta, StoreError> {
        Ok(BlockMeta {
            parent: self.parent,
            height: self.height,
            timestamp_ms: self.timestamp_ms,
            target: untrimmed(id, &self.target)?,
            score_ppm: self.score_ppm,
            miner: self.miner,
            cumulative_work: untrimmed(id, &self.work)?,
            job: self.job.unwrap_or(Hash32::ZERO),
            job_block: self.job_block,
            genesis_task_tip: self.genesis_task_tip.unwrap_or(*id),
        })
    }
}

fn corrupt_record(id: &Hash32, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("record of block {id}: {e}"))
}

/// A height index entry: the block's id and, for every height but 0, its
/// undo record.
fn decode_height_entry(entry: &[u8]) -> Result<(Hash32, Option<Undo>), StoreError> {
    if entry.len() < 32 {
        return Err(StoreError::Corrupt(
            "a height index entry is under 32 bytes".into(),
        ));
    }
    let (id, undo) = entry.split_at(32);
    let id = decode_hash(id, "height index entry")?;
    let undo = if undo.is_empty() {
        None
    } else {
        Some(decode_value(undo, "undo record")?)
    };
    Ok((id, undo))
}

/// The block id a height index entry names.
fn entry_id(entry: &[u8]) -> Result<Hash32, StoreError> {
    entry
        .get(..32)
        .ok_or_else(|| StoreError::Corrupt("a height index entry is under 32 bytes".into()))
        .and_then(|id| decode_hash(id, "height index entry"))
}

fn height_entry(id: &Hash32, undo: &Undo) -> Vec<u8> {
    let mut entry = id.0.to_vec();
    entry.extend_from_slice(&encoding::encode(undo));
    entry
}

/// Genesis's metadata: it has no block, only the parameters.
fn genesis_meta(params: &ChainParams, genesis: Hash32) -> BlockMeta {
    BlockMeta {
        parent: Hash32::ZERO,
        height: 0,
        timestamp_ms: params.genesis_time_ms,
        target: params.initial_target,
        score_ppm: 0,
        miner: Hash32::ZERO,
        cumulative_work: Hash32::ZERO,
        job: Hash32::ZERO,
        job_block: 0,
        genesis_task_tip: genesis,
    }
}

fn decode_hash(bytes: &[u8], what: &str) -> Result<Hash32, StoreError> {
    let array: [u8; 32] = bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt(format!("{what} is not 32 bytes")))?;
    Ok(Hash32(array))
}

/// Copy the files of directory `from`, and of its subdirectories, into `to`.
fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

/// The bytes the files of directory `path` take, subdirectories included.
fn dir_size(path: &Path) -> std::io::Result<u64> {
    let mut bytes = 0;
    for entry in std::fs::read_dir(path)? {
        let entry = entry?;
        bytes += if entry.file_type()?.is_dir() {
            dir_size(&entry.path())?
        } else {
            entry.metadata()?.len()
        };
    }
    Ok(bytes)
}

fn open_db(path: &Path) -> Result<sled::Db, StoreError> {
    sled::Config::new()
        .path(path)
        .cache_capacity(CACHE_BYTES)
        .open()
        .map_err(|e| {
            // sled 0.34 reports a held lock as an I/O error of kind Other whose
            // text starts so (and names the OS error, WouldBlock on Linux).
            if e.to_string().contains("could not acquire lock") {
                StoreError::Locked {
                    path: path.display().to_string(),
                }
            } else {
                StoreError::from(e)
            }
        })
}

impl Store {
    /// Create a new store for `params` at `path` (which must not hold one).
    pub fn create(path: &Path, params: &ChainParams) -> Result<Store, StoreError> {
        let db = open_db(path)?;
        if db.get(KEY_FORMAT)?.is_some() {
            return Err(StoreError::NotAStore {
                path: path.display().to_string(),
                reason: "a store already exists here".into(),
            });
        }
        let genesis = params.genesis_hash();
        let blocks = BlockFile::create(path)?;
        let mut batch = sled::Batch::default();
        batch.insert(KEY_PARAMS, params.to_json().as_bytes());
        batch.insert(KEY_BLOCKS_LEN, &0u64.to_le_bytes());
        batch.insert(KEY_TX_RUNS, &[]);
        batch.insert(KEY_BLOCK_RUNS, &[]);
        batch.insert(
            range_key(0),
            pack_ranges(&[(0, genesis.0.to_vec())])?.remove(0).1,
        );
        batch.insert(KEY_TIP, &genesis.0);
        // The format key goes last in the same atomic batch: its presence
        // marks a complete store.
        batch.insert(KEY_FORMAT, &FORMAT_VERSION.to_le_bytes());
        db.apply_batch(batch)?;
        db.flush()?;
        Ok(Store {
            db,
            blocks,
            params: params.clone(),
            genesis,
            copy: None,
            failed: std::sync::OnceLock::new(),
            genesis_meta: genesis_meta(params, genesis),
            txindex: RunIndex::empty(path, runs::TRANSACTIONS),
            blockindex: RunIndex::empty(path, runs::BLOCKS),
        })
    }

    /// Open an existing store.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let db = open_db(path)?;
        let not_a_store = |reason: &str| StoreError::NotAStore {
            path: path.display().to_string(),
            reason: reason.to_string(),
        };
        let Some(format) = db.get(KEY_FORMAT)? else {
            // Creation writes every key in one batch, so an empty tree is a
            // creation that was cut short, not a foreign store.
            if db.is_empty() {
                return Err(StoreError::Unfinished {
                    path: path.display().to_string(),
                });
            }
            return Err(not_a_store("it has no format version"));
        };
        let format = u32::from_le_bytes(
            format
                .as_ref()
                .try_into()
                .map_err(|_| not_a_store("its format version is not 4 bytes"))?,
        );
        if format == 0 {
            return Err(not_a_store("its format version is 0"));
        }
        if format > FORMAT_VERSION {
            return Err(StoreError::NewerFormat {
                path: path.display().to_string(),
                found: format,
                supported: FORMAT_VERSION,
            });
        }
        if format == 3 || format == 4 {
            return Err(StoreError::OldFormat {
                path: path.display().to_string(),
                found: format,
                supported: FORMAT_VERSION,
                why: if format == 3 {
                    "written before training jobs changed the chains' genesis"
                } else {
                    "of the layout before each block became one record"
                },
            });
        }
        if format < 5 {
            return Err(StoreError::OldProtocol {
                path: path.display().to_string(),
                found: format,
                protocol: 1,
                runs: crate::consensus::params::PROTOCOL_VERSION,
            });
        }
        let params_json = db
            .get(KEY_PARAMS)?
            .ok_or_else(|| not_a_store("it has no chain parameters"))?;
        let params = ChainParams::from_json(&String::from_utf8_lossy(&params_json))
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let genesis = params.genesis_hash();
        let blocks_len = db
            .get(KEY_BLOCKS_LEN)?
            .and_then(|len| Some(u64::from_le_bytes(len.as_ref().try_into().ok()?)))
            .ok_or_else(|| StoreError::Corrupt("no length of the block file".into()))?;
        let blocks = BlockFile::open(path, blocks_len)?;
        let txindex = match db.get(KEY_TX_RUNS)? {
            Some(list) => RunIndex::open(
                path,
                runs::TRANSACTIONS,
                &runs::decode_list(runs::TRANSACTIONS, &list)?,
            )?,
            None if format == 5 => RunIndex::open(path, runs::TRANSACTIONS, &[])?,
            None => return Err(StoreError::Corrupt("no transaction index run list".into())),
        };
        let blockindex = match db.get(KEY_BLOCK_RUNS)? {
            Some(list) => {
                RunIndex::open(path, runs::BLOCKS, &runs::decode_list(runs::BLOCKS, &list)?)?
            }
            None if format < 7 => RunIndex::open(path, runs::BLOCKS, &[])?,
            None => return Err(StoreError::Corrupt("no block index run list".into())),
        };
        let store = Store {
            db,
            blocks,
            genesis_meta: genesis_meta(&params, genesis),
            params,
            genesis,
            copy: None,
            failed: std::sync::OnceLock::new(),
            txindex,
            blockindex,
        };
        if format == 5 {
            store.upgrade_from_5()?;
        }
        if format < 7 {
            store.upgrade_from_6()?;
        }
        if format < 8 {
            store.upgrade_from_7()?;
        }
        Ok(store)
    }

    /// Open an existing store only to read it. sled writes whenever it
    /// opens a store (it clears the log after its last write), which a
    /// full disk refuses; then the store's files are copied, under the
    /// lock sled takes on them, into a temporary directory (`TMPDIR`), and
    /// the copy is read. A node running on the store makes it `Locked`, as
    /// [`Store::open`] does.
    pub fn open_to_read(path: &Path) -> Result<Store, StoreError> {
        match Store::open(path) {
            Err(StoreError::DiskFull { .. }) => Store::open_copy(path),
            other => other,
        }
    }

    fn open_copy(path: &Path) -> Result<Store, StoreError> {
        let failed = |error: std::io::Error| StoreError::FullNoCopy {
            path: path.display().to_string(),
            error: error.to_string(),
            bytes: dir_size(path).unwrap_or(0),
        };
        let db = std::fs::File::open(path.join("db")).map_err(failed)?;
        match db.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StoreError::Locked {
                    path: path.display().to_string(),
                })
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(failed(e)),
        }
        let copy = tempfile::Builder::new()
            .prefix("pouwd-store-")
            .tempdir()
            .map_err(failed)?;
        copy_dir(path, copy.path()).map_err(|e| {
            let e = std::io::Error::new(
                e.kind(),
                format!("copying it into {}: {e}", copy.path().display()),
            );
            failed(e)
        })?;
        drop(db);
        tracing::warn!(
            target: "pouwd",
            "the disk holding the store at {} is full; reading a copy of it made in {}",
            path.display(),
            copy.path().display()
        );
        let mut store = Store::open(copy.path())?;
        store.copy = Some(copy);
        Ok(store)
    }

    /// Connect a best-chain block to the ledger and keep its undo record.
    fn connect(
        &self,
        overlay: &mut Overlay,
        hash: &Hash32,
        meta: &BlockMeta,
        txs: &[CheckedTx],
    ) -> Result<(), StoreError> {
        let training = BlockTraining {
            block: *hash,
            job: meta.job,
            job_block: meta.job_block,
            score_ppm: meta.score_ppm,
        };
        let undo = ledger::connect_block(
            overlay,
            u64::from(self.params.validation_window),
            meta.height,
            &meta.miner,
            self.params.reward_amount,
            txs,
            &training,
        )
        .map_err(|e| match e {
            StoreError::Ledger(error) => StoreError::InvalidBlock {
                block: *hash,
                height: meta.height,
                error: Box::new(error),
                stored: Vec::new(),
            },
            other => other,
        })?;
        overlay.set_height_entry(meta.height, Some(height_entry(hash, &undo)));
        overlay
            .tx_entries
            .extend(txs.iter().map(|tx| (index_key(&tx.id()), meta.height)));
        Ok(())
    }

    /// Write a different format version (for tests of the version check).
    pub fn set_format_version(&self, version: u32) -> Result<(), StoreError> {
        self.db.insert(KEY_FORMAT, &version.to_le_bytes())?;
        self.db.flush()?;
        Ok(())
    }

    pub fn params(&self) -> &ChainParams {
        &self.params
    }

    pub fn genesis_hash(&self) -> Hash32 {
        self.genesis
    }

    pub fn tip(&self) -> Result<Tip, StoreError> {
        self.check_usable()?;
        let hash = decode_hash(
            &self
                .db
                .get(KEY_TIP)?
                .ok_or_else(|| StoreError::Corrupt("no tip".into()))?,
            "tip",
        )?;
        let meta = self
            .meta(&hash)?
            .ok_or_else(|| StoreError::Corrupt(format!("tip {hash} has no metadata")))?;
        Ok(Tip {
            hash,
            height: meta.height,
            cumulative_work: meta.work(),
        })
    }

    pub fn meta(&self, hash: &Hash32) -> Result<Option<BlockMeta>, StoreError> {
        self.check_usable()?;
        self.meta_in(&self.reader(), hash)
    }

    /// A block's metadata as `overlay` sees it.
    fn meta_in(&self, overlay: &Overlay, hash: &Hash32) -> Result<Option<BlockMeta>, StoreError> {
        if *hash == self.genesis {
            return Ok(Some(self.genesis_meta.clone()));
        }
        if let Some(record) = overlay.staged.get(hash) {
            return record.meta(hash).map(Some);
        }
        self.stored_record(hash, |r| r.id == *hash)?
            .map(|r| r.block.meta(hash))
            .transpose()
    }

    /// The record of block `hash` as `overlay` sees it: staged there, or
    /// stored. `None` for genesis (it has none) and unknown blocks.
    fn record_in(
        &self,
        overlay: &Overlay,
        hash: &Hash32,
    ) -> Result<Option<BlockRecord>, StoreError> {
        if let Some(record) = overlay.staged.get(hash) {
            return Ok(Some(record.clone()));
        }
        Ok(self
            .stored_record(hash, |r| r.id == *hash)?
            .map(|r| r.block))
    }

    /// The stored record that an entry of the block index for `key` (a
    /// block id or a work hash) names and `is` accepts.
    fn stored_record(
        &self,
        key: &Hash32,
        is: impl Fn(&FileRecord) -> bool,
    ) -> Result<Option<FileRecord>, StoreError> {
        let mut found = None;
        self.blockindex.find_first(&index_key(key), |offset| {
            let record = self.blocks.read_record(offset)?;
            let accepted = is(&record);
            if accepted {
                found = Some(record);
            }
            Ok(accepted)
        })?;
        Ok(found)
    }

    pub fn contains(&self, hash: &Hash32) -> Result<bool, StoreError> {
        self.check_usable()?;
        Ok(*hash == self.genesis || self.stored_record(hash, |r| r.id == *hash)?.is_some())
    }

    /// The block's bytes as stored (canonical). `None` for genesis and unknown blocks.
    pub fn block_bytes(&self, hash: &Hash32) -> Result<Option<Vec<u8>>, StoreError> {
        self.check_usable()?;
        self.stored_record(hash, |r| r.id == *hash)?
            .map(|record| self.blocks.read(hash, &record.block))
            .transpose()
    }

    pub fn block(&self, hash: &Hash32) -> Result<Option<Block>, StoreError> {
        self.check_usable()?;
        match self.block_bytes(hash)? {
            None => Ok(None),
            Some(bytes) => Block::from_bytes(&bytes, &Limits::default())
                .map(Some)
                .map_err(|e| StoreError::Corrupt(format!("block {hash}: {e}"))),
        }
    }

    /// The best chain's block at `height`.
    pub fn hash_at(&self, height: u64) -> Result<Option<Hash32>, StoreError> {
        self.check_usable()?;
        Range::holding(&self.db, height)?
            .as_ref()
            .and_then(|range| range.entry(height))
            .map(entry_id)
            .transpose()
    }

    /// The best chain's blocks from height `from` to `to`, both included;
    /// fewer when the best chain ends before `to`.
    pub fn hashes_between(&self, from: u64, to: u64) -> Result<Vec<Hash32>, StoreError> {
        self.check_usable()?;
        let mut hashes = Vec::new();
        let Some(holding) = Range::holding(&self.db, from)? else {
            return Ok(hashes);
        };
        for item in self.db.range(range_key(holding.first)..) {
            let (key, value) = item?;
            if !key.starts_with(RANGE_PREFIX) {
                break;
            }
            for (height, entry) in Range::decode(&key, value)?.entries() {
                if height > to {
                    return Ok(hashes);
                }
                if height >= from {
                    hashes.push(entry_id(entry)?);
                }
            }
        }
        Ok(hashes)
    }

    /// The block that carries `work_hash`, if any.
    pub fn work_owner(&self, work_hash: &Hash32) -> Result<Option<Hash32>, StoreError> {
        self.check_usable()?;
        Ok(self
            .stored_record(work_hash, |r| r.work_hash == *work_hash)?
            .map(|r| r.id))
    }

    /// Final model of a block: its body's parameters, or zeros for genesis.
    pub fn model(&self, hash: &Hash32, dim: usize) -> Result<Option<Vec<f64>>, StoreError> {
        self.check_usable()?;
        if *hash == self.genesis {
            return Ok(Some(crate::model::initial_params(dim - 1)));
        }
        Ok(self.block(hash)?.map(|b| b.body.params))
    }

    /// An account on the best chain; an account never seen is empty.
    pub fn account(&self, id: &Hash32) -> Result<Account, StoreError> {
        self.check_usable()?;
        Ok(self
            .db
            .get(account_key(id))?
            .map(|bytes| decode_value(&bytes, "account"))
            .transpose()?
            .unwrap_or_default())
    }

    /// The best-chain block that holds transaction `id`: its height and hash.
    ///
    /// Every index entry for the id's first 16 bytes names a height; the
    /// answer is the one whose best-chain block holds the whole id. The
    /// others were left by blocks a reorg rolled back, or belong to
    /// another id with the same first 16 bytes.
    pub fn tx_location(&self, id: &Hash32) -> Result<Option<(u64, Hash32)>, StoreError> {
        self.check_usable()?;
        let mut heights = self.txindex.lookup(&index_key(id))?;
        heights.sort_unstable_by(|a, b| b.cmp(a));
        heights.dedup();
        for height in heights {
            let Some(block) = self.hash_at(height)? else {
                continue;
            };
            if self
                .block(&block)?
                .is_some_and(|b| b.body.txs.iter().any(|t| t.id() == *id))
            {
                return Ok(Some((height, block)));
            }
        }
        Ok(None)
    }

    /// The spec of job `id`: from the best chain's transaction index, or
    /// else from the blocks of the branch that ends at `branch`, back to
    /// where it meets the best chain. `None` when neither holds it.
    pub fn job_spec(&self, id: &Hash32, branch: &Hash32) -> Result<Option<JobSpec>, StoreError> {
        self.check_usable()?;
        let spec_in = |block: &Hash32| -> Result<Option<JobSpec>, StoreError> {
            Ok(self.block(block)?.and_then(|b| {
                b.body
                    .txs
                    .into_iter()
                    .find(|t| t.id() == *id)
                    .and_then(|t| match t.fields.kind {
                        TxKind::SubmitJob(spec) => Some(*spec),
                        TxKind::Transfer { .. } => None,
                    })
            }))
        };
        if let Some((_, block)) = self.tx_location(id)? {
            return spec_in(&block);
        }
        let mut at = *branch;
        while let Some(meta) = self.meta(&at)? {
            if meta.height == 0 || self.hash_at(meta.height)? == Some(at) {
                break;
            }
            if let Some(spec) = spec_in(&at)? {
                return Ok(Some(spec));
            }
            at = meta.parent;
        }
        Ok(None)
    }

    /// A job's state on the best chain.
    pub fn job(&self, id: &Hash32) -> Result<Option<JobState>, StoreError> {
        self.check_usable()?;
        self.reader().get_job(id)
    }

    /// The job the next block on the best chain trains.
    pub fn scheduled_job(&self) -> Result<Hash32, StoreError> {
        self.check_usable()?;
        ledger::scheduled_job(&self.reader())
    }

    /// Every job on the best chain, in inclusion order.
    pub fn jobs(&self) -> Result<Vec<(Hash32, JobState)>, StoreError> {
        self.check_usable()?;
        let mut out = Vec::new();
        for entry in self.db.scan_prefix(b"j/") {
            let (key, value) = entry?;
            let id = decode_hash(&key[2..], "job key")?;
            out.push((id, decode_value::<JobState>(&value, "job")?));
        }
        out.sort_by_key(|(_, job)| job.seq);
        Ok(out)
    }

    /// The queued jobs in the order they become active.
    pub fn job_queue(&self) -> Result<Vec<Hash32>, StoreError> {
        self.check_usable()?;
        let mut out = Vec::new();
        for entry in self.db.scan_prefix(QUEUE_PREFIX) {
            out.push(decode_hash(&entry?.1, "queue entry")?);
        }
        Ok(out)
    }

    /// Reads of the best chain's ledger state.
    fn reader(&self) -> Overlay<'_> {
        Overlay {
            tree: &self.db,
            writes: BTreeMap::new(),
            base: u64::MAX,
            appended: Vec::new(),
            staged: HashMap::new(),
            tx_entries: Vec::new(),
            block_entries: Vec::new(),
            heights: BTreeMap::new(),
            range: std::cell::RefCell::new(None),
            queue_front: std::cell::OnceCell::new(),
        }
    }

    pub fn balance(&self, miner: &Hash32) -> Result<Balance, StoreError> {
        self.check_usable()?;
        let account = self.account(miner)?;
        Ok(Balance {
            total: account.spendable + account.immature,
            spendable: account.spendable,
        })
    }

    /// Every key with a non-zero balance on the best chain, for tests and
    /// audits.
    pub fn balances(&self) -> Result<BTreeMap<Hash32, u64>, StoreError> {
        self.check_usable()?;
        let mut out = BTreeMap::new();
        for item in self.db.scan_prefix(b"a/") {
            let (k, v) = item?;
            let id = decode_hash(&k[2..], "account key")?;
            let account: Account = decode_value(&v, "account")?;
            let total = account.spendable + account.immature;
            if total > 0 {
                out.insert(id, total);
            }
        }
        Ok(out)
    }

    /// Store checked blocks, in order, as one atomic batch, then flush.
    /// Each block's parent must be stored already or come earlier in `blocks`.
    ///
    /// A block whose branch breaks a ledger rule when it connects is not
    /// stored, nor is anything after it; the blocks before it are, and the
    /// error ([`StoreError::InvalidBlock`]) says what they did.
    pub fn insert(&self, blocks: &[CheckedBlock]) -> Result<Vec<Stored>, StoreError> {
        self.check_usable()?;
        match self.insert_all(blocks) {
            Ok(outcomes) => Ok(outcomes),
            Err((
                at,
                StoreError::InvalidBlock {
                    block,
                    height,
                    error,
                    stored: _,
                },
            )) => {
                // The blocks staged before the failing one connected: store them.
                let stored = self.insert_all(&blocks[..at]).map_err(|(_, e)| e)?;
                Err(StoreError::InvalidBlock {
                    block,
                    height,
                    error,
                    stored,
                })
            }
            Err((_, other)) => Err(other),
        }
    }

    /// [`Store::insert`] all or nothing; an error comes with the position
    /// of the block that caused it.
    ///
    /// The new blocks' bytes are written to the block file past its stored
    /// length and synced first; the sled batch, with the file's new length,
    /// then commits them. A crash before the batch leaves bytes past the
    /// stored length, which the next opening cuts off.
    fn insert_all(&self, blocks: &[CheckedBlock]) -> Result<Vec<Stored>, (usize, StoreError)> {
        let mut committed = self
            .blocks
            .len
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut overlay = Overlay {
            tree: &self.db,
            writes: BTreeMap::new(),
            base: *committed,
            appended: Vec::new(),
            staged: HashMap::new(),
            tx_entries: Vec::new(),
            block_entries: Vec::new(),
            heights: BTreeMap::new(),
            range: std::cell::RefCell::new(None),
            queue_front: std::cell::OnceCell::new(),
        };
        let mut outcomes = Vec::with_capacity(blocks.len());
        for (at, checked) in blocks.iter().enumerate() {
            outcomes.push(self.stage(&mut overlay, checked).map_err(|e| (at, e))?);
        }
        if overlay.appended.is_empty() {
            // Every block was known already: nothing changed.
            return Ok(outcomes);
        }
        let end = overlay.base + overlay.appended.len() as u64;
        self.write_staged(overlay, end)
            .map_err(|e| (blocks.len(), self.failed_with(e)))?;
        *committed = end;
        Ok(outcomes)
    }

    /// Write what `overlay` staged: the block file's new bytes, synced,
    /// and the indexes' new runs, synced; then sled's batch with the
    /// file's new length `end` and the new run lists, flushed.
    fn write_staged(&self, mut overlay: Overlay, end: u64) -> Result<(), StoreError> {
        if !overlay.appended.is_empty() {
            let file = &self.blocks.file;
            file.write_all_at(&overlay.appended, overlay.base)
                .and_then(|()| file.sync_data())
                .map_err(block_file_error)?;
            overlay.put(KEY_BLOCKS_LEN.to_vec(), end.to_le_bytes().to_vec());
        }
        let mut staged = Vec::new();
        let indexes = [
            (
                &self.txindex,
                KEY_TX_RUNS,
                std::mem::take(&mut overlay.tx_entries),
            ),
            (
                &self.blockindex,
                KEY_BLOCK_RUNS,
                std::mem::take(&mut overlay.block_entries),
            ),
        ];
        for (index, key, entries) in indexes {
            if entries.is_empty() {
                continue;
            }
            match index.stage(entries) {
                Ok(run) => {
                    overlay.put(key.to_vec(), runs::encode_list(&run.list));
                    staged.push((index, run));
                }
                Err(e) => {
                    for (index, run) in staged {
                        index.abort(run);
                    }
                    return Err(e);
                }
            }
        }
        let batch = match overlay.into_batch() {
            Ok(batch) => batch,
            Err(e) => {
                for (index, run) in staged {
                    index.abort(run);
                }
                return Err(e);
            }
        };
        self.commit(batch, staged)
    }

    /// Look up through the index runs `staged` from now on, then apply
    /// sled's `batch`, which lists them, and flush it. When the batch
    /// fails, the runs are dropped and the ones before them answer again.
    fn commit(
        &self,
        batch: sled::Batch,
        staged: Vec<(&RunIndex, runs::Staged)>,
    ) -> Result<(), StoreError> {
        let published: Vec<_> = staged
            .into_iter()
            .map(|(index, run)| (index, index.publish(run)))
            .collect();
        let written = self
            .db
            .apply_batch(batch)
            .and_then(|()| self.db.flush().map(drop));
        for (index, run) in published {
            index.settle(run, written.is_ok());
        }
        written.map_err(StoreError::from)
    }

    /// An upgrade's index: `entries`, the whole of an index that had no
    /// runs, as one staged run (none when there are no entries), and its
    /// run list, `key`, set in `batch`.
    fn stage_whole<'a>(
        &self,
        index: &'a RunIndex,
        key: &[u8],
        entries: Vec<(runs::Key, u64)>,
        batch: &mut sled::Batch,
    ) -> Result<Vec<(&'a RunIndex, runs::Staged)>, StoreError> {
        if entries.is_empty() {
            batch.insert(key, &[]);
            return Ok(Vec::new());
        }
        let run = index.stage(entries)?;
        batch.insert(key, runs::encode_list(&run.list));
        Ok(vec![(index, run)])
    }

    /// Move a format 5 store's transaction index out of sled into a run
    /// file, in one batch that also sets the format to 6.
    fn upgrade_from_5(&self) -> Result<(), StoreError> {
        let mut entries = Vec::new();
        let mut batch = sled::Batch::default();
        for item in self.db.scan_prefix(OLD_TX_PREFIX) {
            let (key, value) = item?;
            let id: runs::Key = key
                .get(OLD_TX_PREFIX.len()..)
                .and_then(|k| k.try_into().ok())
                .ok_or_else(|| {
                    StoreError::Corrupt("a format 5 index key is not 18 bytes".into())
                })?;
            let height = u64::from_be_bytes(value.as_ref().try_into().map_err(|_| {
                StoreError::Corrupt("a format 5 index entry is not 8 bytes".into())
            })?);
            entries.push((id, height));
            batch.remove(key);
        }
        let staged = self.stage_whole(&self.txindex, KEY_TX_RUNS, entries, &mut batch)?;
        batch.insert(KEY_FORMAT, &6u32.to_le_bytes());
        self.commit(batch, staged).map_err(|e| self.failed_with(e))
    }

    /// Move a format 6 store's block records (`b/`) and work-hash index
    /// (`w/`) out of sled: each record, with its block's id and work hash,
    /// is appended to the block file, the block index gets one run of
    /// their entries, and one batch removes the keys and sets format 7.
    fn upgrade_from_6(&self) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        let mut work = HashMap::new();
        for item in self.db.scan_prefix(OLD_WORK_PREFIX) {
            let (key, value) = item?;
            let work_hash = decode_hash(&key[OLD_WORK_PREFIX.len()..], "a format 6 work key")?;
            work.insert(decode_hash(&value, "a format 6 work entry")?, work_hash);
            batch.remove(key);
        }
        let mut committed = self
            .blocks
            .len
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut appended = Vec::new();
        let mut entries = Vec::new();
        for item in self.db.scan_prefix(OLD_BLOCK_PREFIX) {
            let (key, value) = item?;
            let id = decode_hash(&key[OLD_BLOCK_PREFIX.len()..], "a format 6 block key")?;
            let record = BlockRecord::decode(&id, &value)?;
            let work_hash = work
                .get(&id)
                .ok_or_else(|| corrupt_record(&id, "no work-hash index entry names it"))?;
            let at = *committed + appended.len() as u64;
            write_record(&mut appended, &id, work_hash, &record)?;
            entries.push((index_key(&id), at));
            entries.push((index_key(work_hash), at));
            batch.remove(key);
        }
        let end = *committed + appended.len() as u64;
        if !appended.is_empty() {
            let file = &self.blocks.file;
            file.write_all_at(&appended, *committed)
                .and_then(|()| file.sync_data())
                .map_err(|e| self.failed_with(block_file_error(e)))?;
        }
        batch.insert(KEY_BLOCKS_LEN, &end.to_le_bytes());
        let staged = self.stage_whole(&self.blockindex, KEY_BLOCK_RUNS, entries, &mut batch)?;
        batch.insert(KEY_FORMAT, &7u32.to_le_bytes());
        self.commit(batch, staged)
            .map_err(|e| self.failed_with(e))?;
        *committed = end;
        Ok(())
    }

    /// Record a failed write (the first one counts) and give its error.
    /// Move a format 7 store's height index, one `h/` key per height, into
    /// ranges of heights, in one batch that also sets format 8.
    fn upgrade_from_7(&self) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        let mut entries = Vec::new();
        for item in self.db.scan_prefix(OLD_HEIGHT_PREFIX) {
            let (key, value) = item?;
            let height = key
                .get(OLD_HEIGHT_PREFIX.len()..)
                .and_then(|k| k.try_into().ok())
                .map(u64::from_be_bytes)
                .ok_or_else(|| {
                    StoreError::Corrupt("a format 7 height key is not 10 bytes".into())
                })?;
            entries.push((height, value.to_vec()));
            batch.remove(key);
        }
        if entries.first().map(|(height, _)| *height) != Some(0) {
            return Err(StoreError::Corrupt(
                "the format 7 height index has no entry at 0".into(),
            ));
        }
        for (first, value) in pack_ranges(&entries)? {
            batch.insert(range_key(first), value);
        }
        batch.insert(KEY_FORMAT, &8u32.to_le_bytes());
        self.commit(batch, Vec::new())
            .map_err(|e| self.failed_with(e))
    }

    fn failed_with(&self, error: StoreError) -> StoreError {
        if let Some(failure) = Failure::of(&error) {
            let _ = self.failed.set(failure);
        }
        error
    }

    /// Every call on the store starts here: not on an async thread (in
    /// debug builds), and not after a write failed.
    fn check_usable(&self) -> Result<(), StoreError> {
        crate::offload::check_thread();
        match self.failed.get() {
            Some(failure) => Err(failure.error()),
            None => Ok(()),
        }
    }

    fn stage(&self, overlay: &mut Overlay, checked: &CheckedBlock) -> Result<Stored, StoreError> {
        let id = checked.id();
        if id == self.genesis
            || overlay.staged.contains_key(&id)
            || self.stored_record(&id, |r| r.id == id)?.is_some()
        {
            return Ok(Stored::AlreadyKnown);
        }
        let fields = &checked.block().header.fields;
        let parent_meta = self
            .meta_in(overlay, &fields.parent)?
            .ok_or_else(|| StoreError::Corrupt(format!("parent {} not stored", fields.parent)))?;
        let work = consensus::cumulative_work(parent_meta.work(), &fields.target);
        let meta = BlockMeta {
            parent: fields.parent,
            height: fields.height,
            timestamp_ms: fields.timestamp_ms,
            target: fields.target,
            score_ppm: fields.score_ppm,
            miner: fields.miner,
            cumulative_work: Hash32(work.to_big_endian()),
            job: fields.job,
            job_block: fields.job_block,
            genesis_task_tip: if fields.job == ledger::GENESIS_JOB {
                id
            } else {
                parent_meta.genesis_task_tip
            },
        };
        let bytes = checked.bytes();
        let offset = overlay.base + overlay.appended.len() as u64;
        let len = u32::try_from(bytes.len())
            .map_err(|_| StoreError::Corrupt(format!("block {id} is over 4 GiB")))?;
        overlay.appended.extend_from_slice(&bytes);
        let record = BlockRecord::new(&id, &meta, offset, len);
        let at = overlay.base + overlay.appended.len() as u64;
        let work_hash = checked.work_hash();
        write_record(&mut overlay.appended, &id, &work_hash, &record)?;
        overlay.block_entries.push((index_key(&id), at));
        overlay.block_entries.push((index_key(&work_hash), at));
        overlay.staged.insert(id, record);

        let tip_hash = decode_hash(
            &overlay
                .get(KEY_TIP)?
                .ok_or_else(|| StoreError::Corrupt("no tip".into()))?,
            "tip",
        )?;
        let tip_meta = self
            .meta_in(overlay, &tip_hash)?
            .ok_or_else(|| StoreError::Corrupt("tip has no metadata".into()))?;
        if !consensus::is_better(work, tip_meta.work()) {
            return Ok(Stored::SideChain);
        }
        // Walk the new branch back to the best chain.
        let mut branch = vec![(id, meta.clone())];
        loop {
            let (hash, m) = branch.last().expect("branch starts non-empty");
            if m.height == 0 {
                break;
            }
            // The new block is not on the best chain yet: only its
            // ancestors need the height index.
            if *hash != id
                && overlay
                    .height_entry(m.height)?
                    .is_some_and(|entry| entry.get(..32) == Some(&hash.0[..]))
            {
                break;
            }
            let parent = m.parent;
            let parent_meta = self
                .meta_in(overlay, &parent)?
                .ok_or_else(|| StoreError::Corrupt(format!("ancestor {parent} not stored")))?;
            branch.push((parent, parent_meta));
        }
        let fork = branch.pop().expect("branch ends at the fork point");
        let fork_height = fork.1.height;
        // Roll back the old branch above the fork, newest first.
        for height in (fork_height + 1..=tip_meta.height).rev() {
            let entry = overlay
                .height_entry(height)?
                .ok_or_else(|| StoreError::Corrupt(format!("no best block at {height}")))?;
            let (old, undo) = decode_height_entry(&entry)?;
            let undo = undo.ok_or_else(|| {
                StoreError::Corrupt(format!("best block {old} has no undo record"))
            })?;
            ledger::disconnect_block(overlay, undo)?;
            // Its transaction index entries stay: a lookup checks the block.
            overlay.set_height_entry(height, None);
        }
        // Connect the new branch, oldest first: the blocks stored earlier
        // as a side branch, then this one.
        for (hash, m) in branch.iter().rev() {
            if *hash == id {
                self.connect(overlay, hash, m, checked.txs())?;
            } else {
                let txs = self.stored_txs(overlay, hash)?;
                self.connect(overlay, hash, m, &txs)?;
            }
        }
        overlay.put(KEY_TIP.to_vec(), id.0.to_vec());
        // Nothing disconnected means the block extends the old tip: a longer
        // new branch would have a parent above the old tip that was never
        // best, yet a child of the tip always has more work than it.
        let disconnected = tip_meta.height - fork_height;
        Ok(if disconnected == 0 {
            Stored::Extended
        } else {
            Stored::Reorg {
                fork_height,
                disconnected,
            }
        })
    }
}

impl Store {
    /// The transactions of a stored block, checked when it was stored.
    fn stored_txs(&self, overlay: &Overlay, hash: &Hash32) -> Result<Vec<CheckedTx>, StoreError> {
        let record = self
            .record_in(overlay, hash)?
            .ok_or_else(|| StoreError::Corrupt(format!("block {hash} has no bytes")))?;
        let bytes = match record.offset.checked_sub(overlay.base) {
            // Staged in this batch: not in the file yet.
            Some(at) => {
                let at = at as usize;
                overlay
                    .appended
                    .get(at..at + record.len as usize)
                    .ok_or_else(|| corrupt_record(hash, "staged bytes out of range"))?
                    .to_vec()
            }
            None => self.blocks.read(hash, &record)?,
        };
        let block = Block::from_bytes(&bytes, &Limits::default())
            .map_err(|e| StoreError::Corrupt(format!("block {hash}: {e}")))?;
        Ok(block
            .body
            .txs
            .into_iter()
            .map(CheckedTx::of_stored_block)
            .collect())
    }
}

impl Ancestry for Store {
    fn walk_back(&self, hash: &Hash32, count: usize) -> Option<Vec<AncestorInfo>> {
        let mut out = Vec::with_capacity(count);
        let mut next = *hash;
        while out.len() < count {
            let meta = self.meta(&next).ok()??;
            out.push(AncestorInfo {
                hash: next,
                height: meta.height,
                timestamp_ms: meta.timestamp_ms,
                target: meta.target,
                score_ppm: meta.score_ppm,
                job: meta.job,
                job_block: meta.job_block,
                genesis_task_tip: meta.genesis_task_tip,
            });
            if meta.height == 0 {
                break;
            }
            next = meta.parent;
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    fn entry(height: u64, len: usize) -> (u64, Vec<u8>) {
        (height, vec![height as u8; len])
    }

    /// Each range's first height and entry count.
    type Shape = Vec<(u64, usize)>;

    /// The shape of `ranges`, and their entries back.
    fn unpack(ranges: &[(u64, Vec<u8>)]) -> (Shape, Vec<(u64, Vec<u8>)>) {
        let mut shape = Vec::new();
        let mut entries = Vec::new();
        for (first, value) in ranges {
            let range = Range::decode(&range_key(*first), value.clone().into()).expect("decodes");
            assert_eq!(range.first, *first);
            shape.push((*first, range.spans.len()));
            entries.extend(range.entries().map(|(h, e)| (h, e.to_vec())));
        }
        (shape, entries)
    }

    #[test]
    fn a_range_holds_at_most_64_heights_and_64_kib_of_entries() {
        for (count, shape) in [
            (64, vec![(5, 64)]),
            (65, vec![(5, 64), (69, 1)]),
            (129, vec![(5, 64), (69, 64), (133, 1)]),
        ] {
            let entries: Vec<_> = (5..5 + count).map(|h| entry(h, 100)).collect();
            let ranges = pack_ranges(&entries).expect("packs");
            assert_eq!(unpack(&ranges), (shape, entries));
        }
        // 4 bytes of length each: two entries of 32 KiB - 4 fill 64 KiB, one
        // byte more does not fit; an entry over 64 KiB has a range alone.
        let half = RANGE_BYTES / 2 - 4;
        for (lens, shape) in [
            (vec![half, half, 1], vec![(0, 2), (2, 1)]),
            (vec![half, half + 1, 1], vec![(0, 1), (1, 2)]),
            (vec![1, RANGE_BYTES + 1, 1], vec![(0, 1), (1, 1), (2, 1)]),
        ] {
            let entries: Vec<_> = lens
                .iter()
                .enumerate()
                .map(|(h, &l)| entry(h as u64, l))
                .collect();
            let ranges = pack_ranges(&entries).expect("packs");
            assert_eq!(unpack(&ranges), (shape, entries));
        }
        assert!(pack_ranges(&[]).expect("packs").is_empty());
    }

    #[test]
    fn packing_a_height_index_with_a_gap_is_refused() {
        let error = pack_ranges(&[entry(3, 40), entry(4, 40), entry(6, 40)]).expect_err("refused");
        assert!(error.to_string().contains("no entry at 5"), "{error}");
    }

    #[test]
    fn a_damaged_height_range_is_corrupt() {
        let good = pack_ranges(&[entry(7, 40), entry(8, 3)])
            .expect("packs")
            .remove(0)
            .1;
        assert_eq!(
            unpack(&[(7, good.clone())]),
            (vec![(7, 2)], vec![entry(7, 40), entry(8, 3)])
        );
        let decode = |key: &[u8], value: &[u8]| Range::decode(key, value.to_vec().into()).err();
        for cut in [1, 2, 3, 4, 5, 43] {
            let error = decode(&range_key(7), &good[..good.len() - cut]).expect("refused");
            assert!(
                matches!(error, StoreError::Corrupt(ref why) if why.contains("from 7")),
                "{error}"
            );
        }
        assert!(decode(&range_key(7), &[]).is_some(), "an empty range");
        assert!(decode(&range_key(7)[..9], &good).is_some(), "a short key");
        assert!(
            decode(b"h/\0\0\0\0\0\0\0\x07", &good).is_some(),
            "another prefix"
        );
    }

    #[test]
    fn a_height_is_found_in_the_range_that_holds_it_and_nowhere_else() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = open_db(dir.path()).expect("sled");
        let mut entries: Vec<_> = (0..70).map(|h| entry(h, 10)).collect();
        entries.extend((70..72).map(|h| entry(h, 20)));
        for (first, value) in pack_ranges(&entries[..70]).expect("packs") {
            db.insert(range_key(first), value).expect("insert");
        }
        for (first, value) in pack_ranges(&entries[70..]).expect("packs") {
            db.insert(range_key(first), value).expect("insert");
        }
        // Keys just past the prefix are not ranges.
        db.insert(b"s/", &b"x"[..]).expect("insert");
        for (height, bytes) in &entries {
            let range = Range::holding(&db, *height).expect("read").expect("held");
            assert_eq!(range.entry(*height), Some(&bytes[..]));
            let first = match height {
                0..=63 => 0,
                64..=69 => 64,
                _ => 70,
            };
            assert_eq!(range.first, first);
        }
        assert!(Range::holding(&db, 72).expect("read").is_none());
        assert!(Range::holding(&db, u64::MAX).expect("read").is_none());
    }

    #[test]
    fn a_full_disk_is_told_apart_from_other_storage_errors() {
        let full = |e: io::Error| StoreError::from(sled::Error::Io(e));
        assert!(matches!(
            full(io::Error::from(io::ErrorKind::StorageFull)),
            StoreError::DiskFull { .. }
        ));
        // sled may wrap the OS error without its kind.
        assert!(matches!(
            full(io::Error::other("write failed: No space left on device")),
            StoreError::DiskFull { .. }
        ));
        assert!(matches!(
            full(io::Error::from(io::ErrorKind::PermissionDenied)),
            StoreError::Sled(_)
        ));
        assert!(matches!(
            StoreError::from(sled::Error::Unsupported("x".into())),
            StoreError::Sled(_)
        ));
    }

    #[test]
    fn a_store_with_format_0_or_a_foreign_tree_is_not_a_store() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("store");
        {
            let db = sled::open(&path).expect("sled");
            db.insert("something", "else").expect("insert");
            db.flush().expect("flush");
        }
        assert!(matches!(
            Store::open(&path),
            Err(StoreError::NotAStore { .. })
        ));
        {
            let db = sled::open(&path).expect("sled");
            db.insert(KEY_FORMAT, &0u32.to_le_bytes()).expect("insert");
            db.flush().expect("flush");
        }
        match Store::open(&path) {
            Err(StoreError::NotAStore { reason, .. }) => assert!(reason.contains("0"), "{reason}"),
            Err(other) => panic!("{other}"),
            Ok(_) => panic!("format 0 opened"),
        }
        let empty = dir.path().join("empty");
        drop(sled::open(&empty).expect("sled"));
        assert!(matches!(
            Store::open(&empty),
            Err(StoreError::Unfinished { .. })
        ));
    }
}
