//! Sorted run files beside the block file: the store's indexes that would
//! otherwise cost a random sled key per entry.
//!
//! sled spends several microseconds of CPU on every key a batch writes,
//! and more on the node splits that random keys cause in a growing tree;
//! a key per transaction, and two per block, made them most of what
//! storing a block costs. Here a batch of blocks writes one file per index: its
//! entries (the first 16 bytes of a hash, and a `u64` value) sorted, merged
//! with the newest runs that hold fewer than twice its entries, so that
//! every run holds at least twice the entries of the next newer one: an
//! index of `n` entries has at most `log2(n) + 1` runs, and each entry is
//! rewritten `O(log n)` times. A sled key of the same batch lists the live
//! runs, so the index and the blocks commit together.
//!
//! Two indexes use it ([`Kind`]): the transaction index (a transaction id
//! to the best-chain height of its block) and the block index (a block id
//! or a work hash to the offset of the block's record in the block file).
//! Entries are never removed, and an entry's key is only the first 16
//! bytes of the hash: the store confirms the whole hash in the block or
//! record an entry names. Runs of the block index carry a Bloom filter,
//! so that a lookup of a hash the store does not hold (every new block)
//! reads no file. Run files are written whole and synced before the batch
//! that lists them; files that no batch lists (a crash between the two,
//! or runs a merge replaced) are deleted when the store opens. Layout:
//! schema/storage.md.

use super::StoreError;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, RwLock};

/// The first bytes of a hash that an index keeps.
pub(super) const KEY_LEN: usize = 16;
pub(super) type Key = [u8; KEY_LEN];
/// One entry: the key, then the height as `u64be`.
const ENTRY: usize = KEY_LEN + 8;
/// Every `FENCE_EVERY`-th key is written again after the entries, so that
/// a lookup reads one stretch of at most this many entries per run.
const FENCE_EVERY: u64 = 128;
/// The last bytes of a run: its entry count (`u64le`), then the magic.
const FOOTER: u64 = 16;
/// Bloom filter bits per entry, and probes per key: about 0.8 % false
/// positives.
const BLOOM_BITS_PER_ENTRY: u64 = 10;
const BLOOM_PROBES: u64 = 7;

/// One index's run files: their names (the prefix, then the sequence
/// number in 16 hex digits), their magic, and whether they carry a Bloom
/// filter.
#[derive(Clone, Copy, Debug)]
pub(super) struct Kind {
    pub prefix: &'static str,
    pub magic: &'static [u8; 8],
    /// The index's name in errors.
    pub what: &'static str,
    pub bloom: bool,
}

/// Transaction id → best-chain height.
pub(super) const TRANSACTIONS: Kind = Kind {
    prefix: "txindex-",
    magic: b"pouwdtxr",
    what: "transaction index",
    bloom: false,
};

/// Block id or work hash → offset of the block's record in the block file.
pub(super) const BLOCKS: Kind = Kind {
    prefix: "blockindex-",
    magic: b"pouwdbkr",
    what: "block index",
    bloom: true,
};

/// A live run as `meta/txruns` lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct RunMeta {
    pub seq: u64,
    pub count: u64,
}

/// A run list (`meta/txruns`, `meta/blockruns`): each live run's `u64le` sequence number and `u64le`
/// entry count, oldest (largest) first.
pub(super) fn encode_list(runs: &[RunMeta]) -> Vec<u8> {
    let mut out = Vec::with_capacity(runs.len() * 16);
    for run in runs {
        out.extend_from_slice(&run.seq.to_le_bytes());
        out.extend_from_slice(&run.count.to_le_bytes());
    }
    out
}

pub(super) fn decode_list(kind: Kind, bytes: &[u8]) -> Result<Vec<RunMeta>, StoreError> {
    if !bytes.len().is_multiple_of(16) {
        return Err(StoreError::Corrupt(format!(
            "the {}'s run list is {} bytes, not a multiple of 16",
            kind.what,
            bytes.len()
        )));
    }
    Ok(bytes
        .chunks_exact(16)
        .map(|c| RunMeta {
            seq: u64::from_le_bytes(c[..8].try_into().expect("8 bytes")),
            count: u64::from_le_bytes(c[8..].try_into().expect("8 bytes")),
        })
        .collect())
}

fn file_name(kind: Kind, seq: u64) -> String {
    format!("{}{seq:016x}", kind.prefix)
}

fn fences(count: u64) -> u64 {
    count.div_ceil(FENCE_EVERY)
}

/// The 64-bit words of the Bloom filter of a run of `count` entries.
fn bloom_words(kind: Kind, count: u64) -> u64 {
    if kind.bloom {
        (count * BLOOM_BITS_PER_ENTRY).div_ceil(64).max(1)
    } else {
        0
    }
}

/// The size of a run file of `count` entries.
fn file_len(kind: Kind, count: u64) -> u64 {
    count * ENTRY as u64 + fences(count) * KEY_LEN as u64 + bloom_words(kind, count) * 8 + FOOTER
}

/// The bits a key sets in a Bloom filter of `bits` bits. Keys are the
/// first bytes of hashes, but a block id may start with zero bytes: the
/// two halves are mixed before use.
fn bloom_bits(key: &Key, bits: u64) -> impl Iterator<Item = u64> {
    let lo = u64::from_le_bytes(key[..8].try_into().expect("8 bytes"));
    let hi = u64::from_le_bytes(key[8..].try_into().expect("8 bytes"));
    let h1 = mix(lo ^ hi.rotate_left(32));
    let h2 = mix(h1 ^ hi) | 1;
    (0..BLOOM_PROBES).map(move |i| h1.wrapping_add(i.wrapping_mul(h2)) % bits)
}

/// splitmix64's finalizer.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn io_error(kind: Kind, what: &Path, e: std::io::Error) -> StoreError {
    if e.kind() == std::io::ErrorKind::StorageFull {
        StoreError::DiskFull {
            detail: e.to_string(),
        }
    } else {
        StoreError::Sled(format!("{} {}: {e}", kind.what, what.display()))
    }
}

struct Run {
    kind: Kind,
    meta: RunMeta,
    path: PathBuf,
    file: File,
    /// Read on the first lookup.
    fences: OnceLock<Result<Vec<Key>, String>>,
    bloom: OnceLock<Result<Vec<u64>, String>>,
}

impl Run {
    fn open(dir: &Path, kind: Kind, meta: RunMeta) -> Result<Run, StoreError> {
        let path = dir.join(file_name(kind, meta.seq));
        let corrupt = |why: String| {
            StoreError::Corrupt(format!("{} run {}: {why}", kind.what, path.display()))
        };
        let file = File::open(&path).map_err(|e| corrupt(e.to_string()))?;
        let size = file.metadata().map_err(|e| corrupt(e.to_string()))?.len();
        if size != file_len(kind, meta.count) {
            return Err(corrupt(format!(
                "{size} bytes, but {} entries take {}",
                meta.count,
                file_len(kind, meta.count)
            )));
        }
        let mut footer = [0u8; FOOTER as usize];
        file.read_exact_at(&mut footer, size - FOOTER)
            .map_err(|e| corrupt(e.to_string()))?;
        if &footer[8..] != kind.magic
            || u64::from_le_bytes(footer[..8].try_into().expect("8 bytes")) != meta.count
        {
            return Err(corrupt("its footer does not match the run list".into()));
        }
        Ok(Run {
            kind,
            meta,
            path,
            file,
            fences: OnceLock::new(),
            bloom: OnceLock::new(),
        })
    }

    fn fences(&self) -> Result<&[Key], String> {
        self.fences
            .get_or_init(|| {
                let n = fences(self.meta.count) as usize;
                let mut bytes = vec![0u8; n * KEY_LEN];
                self.file
                    .read_exact_at(&mut bytes, self.meta.count * ENTRY as u64)
                    .map_err(|e| e.to_string())?;
                Ok(bytes
                    .chunks_exact(KEY_LEN)
                    .map(|c| c.try_into().expect("16 bytes"))
                    .collect())
            })
            .as_deref()
            .map_err(|e| format!("{}: {e}", self.path.display()))
    }

    /// Whether the run may hold `key`: false only when its Bloom filter
    /// says it does not.
    fn may_hold(&self, key: &Key) -> Result<bool, String> {
        if !self.kind.bloom {
            return Ok(true);
        }
        let words = self
            .bloom
            .get_or_init(|| {
                let n = bloom_words(self.kind, self.meta.count) as usize;
                let mut bytes = vec![0u8; n * 8];
                let at = self.meta.count * ENTRY as u64 + fences(self.meta.count) * KEY_LEN as u64;
                self.file
                    .read_exact_at(&mut bytes, at)
                    .map_err(|e| e.to_string())?;
                Ok(bytes
                    .chunks_exact(8)
                    .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
                    .collect())
            })
            .as_deref()
            .map_err(|e| format!("{}: {e}", self.path.display()))?;
        let bits = words.len() as u64 * 64;
        Ok(bloom_bits(key, bits).all(|bit| words[(bit / 64) as usize] & (1 << (bit % 64)) != 0))
    }

    /// Push the values of the entries with `key` onto `out`.
    fn find(&self, key: &Key, out: &mut Vec<u64>) -> Result<(), String> {
        if !self.may_hold(key)? {
            return Ok(());
        }
        let Some((first, last)) = stretch(self.fences()?, self.meta.count, key) else {
            return Ok(());
        };
        let mut bytes = vec![0u8; ((last - first) as usize) * ENTRY];
        self.file
            .read_exact_at(&mut bytes, first * ENTRY as u64)
            .map_err(|e| format!("{}: {e}", self.path.display()))?;
        for entry in bytes.chunks_exact(ENTRY) {
            if entry[..KEY_LEN] == key[..] {
                out.push(u64::from_be_bytes(
                    entry[KEY_LEN..].try_into().expect("8 bytes"),
                ));
            }
        }
        Ok(())
    }
}

/// The entries `first..last` of a run of `count` entries with `fences`
/// that can hold `key`; `None` when none can. Fence i is the key of entry
/// i·FENCE_EVERY: entries equal to `key` start in the stretch of the last
/// fence below it, and end before the first fence above it.
fn stretch(fences: &[Key], count: u64, key: &Key) -> Option<(u64, u64)> {
    let end = fences.partition_point(|f| f <= key) as u64;
    if end == 0 {
        return None;
    }
    let start = (fences.partition_point(|f| f < key) as u64).saturating_sub(1);
    Some((start * FENCE_EVERY, (end * FENCE_EVERY).min(count)))
}

/// The live runs of one store.
pub(super) struct RunIndex {
    kind: Kind,
    dir: PathBuf,
    /// Oldest first. Lookups take a copy of the list, so a batch that
    /// replaces runs never waits for them.
    runs: RwLock<Arc<Vec<Arc<Run>>>>,
}

/// A run published before its batch is applied ([`RunIndex::publish`]).
pub(super) struct Published {
    previous: Arc<Vec<Arc<Run>>>,
    run: Arc<Run>,
    merged: usize,
}

/// A run written for a batch that is not committed yet.
pub(super) struct Staged {
    /// The list the batch commits (`meta/txruns`).
    pub list: Vec<RunMeta>,
    run: Arc<Run>,
    /// How many of the newest runs the new one replaces.
    merged: usize,
}

impl RunIndex {
    /// An index with no runs (a new store).
    pub fn empty(dir: &Path, kind: Kind) -> RunIndex {
        RunIndex {
            kind,
            dir: dir.to_path_buf(),
            runs: RwLock::new(Arc::new(Vec::new())),
        }
    }

    /// Open the runs `list` names; delete run files it does not name.
    pub fn open(dir: &Path, kind: Kind, list: &[RunMeta]) -> Result<RunIndex, StoreError> {
        let runs = list
            .iter()
            .map(|meta| Run::open(dir, kind, *meta).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        let live: std::collections::HashSet<String> =
            list.iter().map(|m| file_name(kind, m.seq)).collect();
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with(kind.prefix) && !live.contains(&name) {
                    // A leftover; failing to delete it changes nothing.
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        Ok(RunIndex {
            kind,
            dir: dir.to_path_buf(),
            runs: RwLock::new(Arc::new(runs)),
        })
    }

    fn snapshot(&self) -> Arc<Vec<Arc<Run>>> {
        Arc::clone(&self.runs.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// The live runs, oldest first.
    #[cfg(test)]
    pub fn list(&self) -> Vec<RunMeta> {
        self.snapshot().iter().map(|r| r.meta).collect()
    }

    /// Every value an entry gives for `key`, newest run first.
    pub fn lookup(&self, key: &Key) -> Result<Vec<u64>, StoreError> {
        let mut out = Vec::new();
        for run in self.snapshot().iter().rev() {
            run.find(key, &mut out).map_err(|e| self.corrupt(e))?;
        }
        Ok(out)
    }

    /// The first value, newest run first, of an entry for `key` that
    /// `confirm` accepts.
    pub fn find_first(
        &self,
        key: &Key,
        mut confirm: impl FnMut(u64) -> Result<bool, StoreError>,
    ) -> Result<Option<u64>, StoreError> {
        let mut values = Vec::new();
        for run in self.snapshot().iter().rev() {
            values.clear();
            run.find(key, &mut values).map_err(|e| self.corrupt(e))?;
            for &value in &values {
                if confirm(value)? {
                    return Ok(Some(value));
                }
            }
        }
        Ok(None)
    }

    fn corrupt(&self, e: String) -> StoreError {
        StoreError::Corrupt(format!("{} run {e}", self.kind.what))
    }

    /// Write the run that a batch adding `entries` commits: them, sorted,
    /// merged with each newest run that holds fewer than twice the entries
    /// of the run being built. The file is synced, and its name too, before this
    /// returns; until [`RunIndex::commit`] nothing lists it.
    pub fn stage(&self, mut entries: Vec<(Key, u64)>) -> Result<Staged, StoreError> {
        entries.sort_unstable();
        let runs = self.snapshot();
        let mut total = entries.len() as u64;
        let mut merged = 0;
        for run in runs.iter().rev() {
            if run.meta.count >= 2 * total {
                break;
            }
            total += run.meta.count;
            merged += 1;
        }
        let keep = runs.len() - merged;
        let seq = runs.iter().map(|r| r.meta.seq + 1).max().unwrap_or(0);
        let path = self.dir.join(file_name(self.kind, seq));
        let written = write_run(self.kind, &path, &entries, &runs[keep..], total);
        if let Err(e) = written {
            let _ = std::fs::remove_file(&path);
            return Err(io_error(self.kind, &path, e));
        }
        let meta = RunMeta { seq, count: total };
        let run = Run::open(&self.dir, self.kind, meta)?;
        let mut list: Vec<RunMeta> = runs[..keep].iter().map(|r| r.meta).collect();
        list.push(meta);
        Ok(Staged {
            list,
            run: Arc::new(run),
            merged,
        })
    }

    /// Look up through `staged` from now on, before the batch that lists
    /// it is applied: a reader that sees the batch's new tip must find its
    /// blocks. The runs it replaces stay on disk until [`RunIndex::settle`].
    pub fn publish(&self, staged: Staged) -> Published {
        let mut runs = self.runs.write().unwrap_or_else(|e| e.into_inner());
        let previous = Arc::clone(&runs);
        let keep = runs.len() - staged.merged;
        let mut next: Vec<Arc<Run>> = runs[..keep].to_vec();
        next.push(Arc::clone(&staged.run));
        *runs = Arc::new(next);
        Published {
            previous,
            run: staged.run,
            merged: staged.merged,
        }
    }

    /// The batch that lists a published run was applied (`committed`):
    /// delete the runs it replaced. Or it failed: look up through the runs
    /// before it again, and delete it.
    pub fn settle(&self, published: Published, committed: bool) {
        if committed {
            let keep = published.previous.len() - published.merged;
            for run in &published.previous[keep..] {
                // Unlisted now; a file left by a failed delete goes at the next open.
                let _ = std::fs::remove_file(&run.path);
            }
        } else {
            *self.runs.write().unwrap_or_else(|e| e.into_inner()) = published.previous;
            let _ = std::fs::remove_file(&published.run.path);
        }
    }

    /// [`RunIndex::publish`], then [`RunIndex::settle`] as committed.
    #[cfg(test)]
    pub fn commit(&self, staged: Staged) {
        let published = self.publish(staged);
        self.settle(published, true);
    }

    /// The batch that would have listed `staged` failed: its file goes.
    pub fn abort(&self, staged: Staged) {
        let _ = std::fs::remove_file(&staged.run.path);
    }
}

/// Write a run of `total` entries: `entries` (sorted) merged with `runs`.
fn write_run(
    kind: Kind,
    path: &Path,
    entries: &[(Key, u64)],
    runs: &[Arc<Run>],
    total: u64,
) -> std::io::Result<()> {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    let mut out = BufWriter::with_capacity(1 << 16, &file);
    let mut sources: Vec<Source> = Vec::with_capacity(runs.len() + 1);
    for run in runs {
        let mut reader =
            BufReader::with_capacity(1 << 16, (&run.file).take(run.meta.count * ENTRY as u64));
        let head = read_entry(&mut reader)?;
        sources.push(Source::Run { reader, head });
    }
    sources.push(Source::Memory { entries, at: 0 });
    let mut fences = Vec::with_capacity(fences(total) as usize);
    let mut bloom = vec![0u64; bloom_words(kind, total) as usize];
    let bloom_len = bloom.len() as u64 * 64;
    let mut written = 0u64;
    loop {
        let mut best: Option<(usize, (Key, u64))> = None;
        for (i, source) in sources.iter().enumerate() {
            if let Some(head) = source.head() {
                if best.is_none_or(|(_, b)| head < b) {
                    best = Some((i, head));
                }
            }
        }
        let Some((i, (key, height))) = best else {
            break;
        };
        if written.is_multiple_of(FENCE_EVERY) {
            fences.push(key);
        }
        if kind.bloom {
            for bit in bloom_bits(&key, bloom_len) {
                bloom[(bit / 64) as usize] |= 1 << (bit % 64);
            }
        }
        out.write_all(&key)?;
        out.write_all(&height.to_be_bytes())?;
        written += 1;
        sources[i].advance()?;
    }
    if written != total {
        return Err(std::io::Error::other(format!(
            "merged {written} entries where {total} were expected"
        )));
    }
    for fence in &fences {
        out.write_all(fence)?;
    }
    for word in &bloom {
        out.write_all(&word.to_le_bytes())?;
    }
    out.write_all(&total.to_le_bytes())?;
    out.write_all(kind.magic)?;
    out.flush()?;
    drop(out);
    file.sync_all()?;
    // The new name must be on disk before a batch lists it.
    File::open(path.parent().unwrap_or(Path::new(".")))?.sync_all()
}

type RunReader<'a> = BufReader<std::io::Take<&'a File>>;

enum Source<'a> {
    Run {
        reader: RunReader<'a>,
        head: Option<(Key, u64)>,
    },
    Memory {
        entries: &'a [(Key, u64)],
        at: usize,
    },
}

impl Source<'_> {
    fn head(&self) -> Option<(Key, u64)> {
        match self {
            Source::Run { head, .. } => *head,
            Source::Memory { entries, at } => entries.get(*at).copied(),
        }
    }
    fn advance(&mut self) -> std::io::Result<()> {
        match self {
            Source::Run { reader, head } => *head = read_entry(reader)?,
            Source::Memory { at, .. } => *at += 1,
        }
        Ok(())
    }
}

fn read_entry(reader: &mut RunReader<'_>) -> std::io::Result<Option<(Key, u64)>> {
    let mut entry = [0u8; ENTRY];
    match reader.read_exact(&mut entry) {
        Ok(()) => Ok(Some((
            entry[..KEY_LEN].try_into().expect("16 bytes"),
            u64::from_be_bytes(entry[KEY_LEN..].try_into().expect("8 bytes")),
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u64) -> Key {
        // Spread like hashes: the order of keys is not the order of n.
        let hash = blake3::hash(&n.to_le_bytes());
        hash.as_bytes()[..KEY_LEN].try_into().expect("16 bytes")
    }

    fn add(index: &RunIndex, entries: Vec<(Key, u64)>) -> Vec<RunMeta> {
        let staged = index.stage(entries).expect("stage");
        let list = staged.list.clone();
        index.commit(staged);
        assert_eq!(index.list(), list);
        list
    }

    fn run_files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(TRANSACTIONS.prefix) || n.starts_with(BLOCKS.prefix))
            .collect();
        names.sort();
        names
    }

    #[test]
    fn runs_stay_logarithmic_and_every_entry_is_found() {
        for kind in [TRANSACTIONS, BLOCKS] {
            let dir = tempfile::tempdir().expect("dir");
            let index = RunIndex::empty(dir.path(), kind);
            let mut n = 0u64;
            for batch in 0..300u64 {
                // Batches of 1..=700 entries, some far larger than others.
                let size = 1 + (batch * 7919) % 700;
                let entries = (n..n + size).map(|i| (key(i), i / 3)).collect();
                n += size;
                let list = add(&index, entries);
                // Each run holds at least twice the entries of the next newer.
                for pair in list.windows(2) {
                    assert!(pair[0].count >= 2 * pair[1].count, "{list:?}");
                }
                assert_eq!(list.iter().map(|r| r.count).sum::<u64>(), n);
                assert!(list.len() as f64 <= (n as f64).log2() + 1.0, "{list:?}");
                // Only the listed runs are on disk: the merged ones were deleted.
                let names: Vec<String> = list.iter().map(|r| file_name(kind, r.seq)).collect();
                assert_eq!(run_files(dir.path()), names);
            }
            for i in (0..n).step_by(97).chain([0, n - 1]) {
                assert_eq!(
                    index.lookup(&key(i)).expect("lookup"),
                    vec![i / 3],
                    "entry {i}"
                );
            }
            assert_eq!(index.lookup(&key(n)).expect("lookup"), Vec::<u64>::new());
            // Reopened from its list, the index answers the same.
            let reopened = RunIndex::open(dir.path(), kind, &index.list()).expect("open");
            for i in (0..n).step_by(101) {
                assert_eq!(reopened.lookup(&key(i)).expect("lookup"), vec![i / 3]);
                assert_eq!(
                    reopened
                        .find_first(&key(i), |v| Ok(v == i / 3))
                        .expect("lookup"),
                    Some(i / 3)
                );
                // An entry the caller does not confirm is no answer.
                assert_eq!(
                    reopened.find_first(&key(i), |_| Ok(false)).expect("lookup"),
                    None
                );
            }
        }
    }

    /// The filter's bits are part of the file format: the ones
    /// schema/storage.md gives, from splitmix64's finalizer.
    #[test]
    fn a_keys_filter_bits_are_the_ones_the_format_gives() {
        // splitmix64 from seed 0: its outputs are the finalizer of
        // multiples of the golden gamma (the generator's published values).
        let gamma = 0x9e37_79b9_7f4a_7c15u64;
        assert_eq!(mix(gamma), 0xe220_a839_7b1d_cdaf);
        assert_eq!(mix(gamma.wrapping_mul(2)), 0x6e78_9e6a_a1b9_65f4);
        assert_eq!(mix(gamma.wrapping_mul(3)), 0x06c4_5d18_8009_454f);
        let bits = 64 * 101;
        let expected = |key: &Key| -> Vec<u64> {
            let lo = u64::from_le_bytes(key[..8].try_into().expect("8 bytes"));
            let hi = u64::from_le_bytes(key[8..].try_into().expect("8 bytes"));
            let h1 = mix(lo ^ hi.rotate_left(32));
            let h2 = mix(h1 ^ hi) | 1;
            (0..7u64)
                .map(|i| h1.wrapping_add(i.wrapping_mul(h2)) % bits)
                .collect()
        };
        // Several keys: half of them have an even `mix(h1 ⊕ hi)`, whose
        // step the `| 1` changes.
        for n in 0..16 {
            assert_eq!(
                bloom_bits(&key(n), bits).collect::<Vec<_>>(),
                expected(&key(n))
            );
        }
        let key: Key = std::array::from_fn(|i| (i as u8).wrapping_mul(37).wrapping_add(11));
        let expected = expected(&key);
        assert_eq!(bloom_bits(&key, bits).collect::<Vec<_>>(), expected);
        // Both halves count: keys that differ only in one give other bits.
        let mut other = key;
        other[15] ^= 1;
        assert_ne!(bloom_bits(&other, bits).collect::<Vec<_>>(), expected);
        let mut other = key;
        other[0] ^= 1;
        assert_ne!(bloom_bits(&other, bits).collect::<Vec<_>>(), expected);
    }

    #[test]
    fn a_bloom_filter_answers_for_every_key_it_holds_and_few_others() {
        let dir = tempfile::tempdir().expect("dir");
        let index = RunIndex::empty(dir.path(), BLOCKS);
        // Keys with leading zero bytes, as block ids have: only their
        // last bytes differ.
        let zeroed = |i: u64| -> Key {
            let mut k = key(i);
            k[..6].fill(0);
            k
        };
        let list = add(&index, (0..5_000).map(|i| (zeroed(i), i)).collect());
        assert_eq!(list.len(), 1);
        let run = &index.snapshot()[0];
        for i in 0..5_000 {
            assert!(run.may_hold(&zeroed(i)).expect("bloom"), "key {i}");
        }
        let false_positives = (5_000..25_000)
            .filter(|&i| run.may_hold(&zeroed(i)).expect("bloom"))
            .count();
        // 10 bits and 7 probes per key: about 0.8 %.
        assert!(false_positives < 400, "{false_positives} of 20000");
        assert!(
            false_positives > 0,
            "a filter that is never wrong is too big"
        );
        // The transaction index carries none: every key may be there.
        let plain = RunIndex::empty(dir.path(), TRANSACTIONS);
        add(&plain, vec![(key(1), 1)]);
        assert!(plain.snapshot()[0].may_hold(&key(2)).expect("no filter"));
        assert_eq!(
            file_len(BLOCKS, 5_000) - file_len(TRANSACTIONS, 5_000),
            50_000u64.div_ceil(64) * 8
        );
    }

    #[test]
    fn equal_keys_across_fences_and_runs_are_all_found() {
        let dir = tempfile::tempdir().expect("dir");
        let index = RunIndex::empty(dir.path(), TRANSACTIONS);
        let same = [7u8; KEY_LEN];
        let mut below = [7u8; KEY_LEN];
        below[KEY_LEN - 1] = 6;
        let mut above = [7u8; KEY_LEN];
        above[KEY_LEN - 1] = 8;
        // 127 smaller keys, then 300 entries of one key (they cross the
        // fences at 128, 256 and 384), then larger keys.
        let mut entries: Vec<(Key, u64)> = (0..127).map(|i| (below, i)).collect();
        entries.extend((0..300).map(|i| (same, 1000 + i)));
        entries.extend((0..200).map(|i| (above, 5000 + i)));
        add(&index, entries);
        let mut found = index.lookup(&same).expect("lookup");
        found.sort_unstable();
        assert_eq!(found, (1000..1300).collect::<Vec<u64>>());
        assert_eq!(index.lookup(&below).expect("lookup").len(), 127);
        assert_eq!(index.lookup(&above).expect("lookup").len(), 200);
        // Keys past both ends.
        assert_eq!(
            index.lookup(&[0u8; KEY_LEN]).expect("lookup"),
            Vec::<u64>::new()
        );
        assert_eq!(
            index.lookup(&[0xff; KEY_LEN]).expect("lookup"),
            Vec::<u64>::new()
        );
        // A second, smaller run with the same key: both runs answer,
        // the newer first.
        add(&index, vec![(same, 9)]);
        assert_eq!(index.list().len(), 2);
        let found = index.lookup(&same).expect("lookup");
        assert_eq!(found.len(), 301);
        assert_eq!(found[0], 9);
    }

    #[test]
    fn a_run_at_a_fence_boundary_answers_its_first_and_last_entries() {
        for count in [1u64, 127, 128, 129, 255, 256, 257] {
            let dir = tempfile::tempdir().expect("dir");
            let index = RunIndex::empty(dir.path(), TRANSACTIONS);
            let mut entries: Vec<(Key, u64)> = (0..count).map(|i| (key(i), i)).collect();
            add(&index, entries.clone());
            let size = std::fs::metadata(dir.path().join(file_name(TRANSACTIONS, 0)))
                .expect("run")
                .len();
            assert_eq!(size, file_len(TRANSACTIONS, count));
            entries.sort_unstable();
            for (k, h) in [entries[0], entries[entries.len() - 1]]
                .into_iter()
                .chain(entries.iter().copied().step_by(64))
            {
                assert_eq!(index.lookup(&k).expect("lookup"), vec![h], "count {count}");
            }
        }
    }

    #[test]
    fn unlisted_runs_are_deleted_and_damaged_runs_are_named() {
        let dir = tempfile::tempdir().expect("dir");
        let index = RunIndex::empty(dir.path(), TRANSACTIONS);
        add(&index, (0..10).map(|i| (key(i), i)).collect());
        // A run written for a batch that never committed.
        let staged = index
            .stage((10..30).map(|i| (key(i), i)).collect())
            .expect("stage");
        let list = index.list();
        assert_eq!(run_files(dir.path()).len(), 2);
        drop(staged);
        let reopened = RunIndex::open(dir.path(), TRANSACTIONS, &list).expect("open");
        assert_eq!(run_files(dir.path()), vec![file_name(TRANSACTIONS, 0)]);
        assert_eq!(reopened.lookup(&key(3)).expect("lookup"), vec![3]);
        assert!(reopened.lookup(&key(20)).expect("lookup").is_empty());

        // A listed run that is shorter than its count, or whose footer
        // disagrees, or that is missing, is corrupt and named.
        let path = dir.path().join(file_name(TRANSACTIONS, 0));
        let bytes = std::fs::read(&path).expect("read");
        std::fs::write(&path, &bytes[..bytes.len() - 1]).expect("write");
        let err = RunIndex::open(dir.path(), TRANSACTIONS, &list)
            .err()
            .expect("refused");
        assert!(
            err.to_string().contains(&file_name(TRANSACTIONS, 0)),
            "{err}"
        );
        let mut wrong = bytes.clone();
        let at = wrong.len() - 16;
        wrong[at] ^= 1;
        std::fs::write(&path, &wrong).expect("write");
        let err = RunIndex::open(dir.path(), TRANSACTIONS, &list)
            .err()
            .expect("refused");
        assert!(err.to_string().contains("footer"), "{err}");
        std::fs::remove_file(&path).expect("remove");
        let err = RunIndex::open(dir.path(), TRANSACTIONS, &list)
            .err()
            .expect("refused");
        assert!(
            err.to_string().contains(&file_name(TRANSACTIONS, 0)),
            "{err}"
        );
    }

    #[test]
    fn an_aborted_run_is_deleted_and_the_list_is_unchanged() {
        let dir = tempfile::tempdir().expect("dir");
        let index = RunIndex::empty(dir.path(), TRANSACTIONS);
        let before = add(&index, (0..10).map(|i| (key(i), i)).collect());
        let staged = index
            .stage((10..20).map(|i| (key(i), i)).collect())
            .expect("stage");
        // The staged run would merge the first one (10 < 2 · 10).
        assert_eq!(staged.list.len(), 1);
        assert_eq!(staged.list[0].count, 20);
        index.abort(staged);
        assert_eq!(index.list(), before);
        assert_eq!(run_files(dir.path()), vec![file_name(TRANSACTIONS, 0)]);
        assert_eq!(index.lookup(&key(5)).expect("lookup"), vec![5]);
    }

    /// A lookup reads one stretch of at most FENCE_EVERY entries (more
    /// only where one key fills several), not a wider range.
    #[test]
    fn a_lookup_reads_only_the_stretch_that_can_hold_its_key() {
        let fence = |n: u8| [n; KEY_LEN];
        // 100 fences, keys 0, 2, …, 198: a run of 99·128 + 50 entries.
        let fences: Vec<Key> = (0..100u8).map(|i| fence(2 * i)).collect();
        let count = 99 * FENCE_EVERY + 50;
        let stretches = |from: u64, to: u64| Some((from * FENCE_EVERY, to * FENCE_EVERY));
        // Between fence 22 (key 44) and fence 23 (key 46): one stretch.
        assert_eq!(stretch(&fences, count, &fence(45)), stretches(22, 23));
        // Equal to fence 22: entries before it may hold the key too.
        assert_eq!(stretch(&fences, count, &fence(44)), stretches(21, 23));
        assert_eq!(stretch(&fences, count, &fence(171)), stretches(85, 86));
        // Past the last fence: up to the end of the run.
        assert_eq!(
            stretch(&fences, count, &fence(199)),
            Some((99 * FENCE_EVERY, count))
        );
        // Below the first fence: no entry can hold it.
        assert_eq!(stretch(&fences[1..], count, &fence(1)), None);
    }

    /// A run that cannot be written is a full disk when the disk says so
    /// (`/dev/full` refuses every write with "no space"), else a storage
    /// error naming the file; a file begun is removed.
    #[test]
    fn a_run_that_cannot_be_written_is_refused_with_its_cause() {
        let dir = tempfile::tempdir().expect("dir");
        let index = RunIndex::empty(dir.path(), TRANSACTIONS);
        let path = dir.path().join(file_name(TRANSACTIONS, 0));
        std::os::unix::fs::symlink("/dev/full", &path).expect("symlink");
        let err = index.stage(vec![(key(1), 1)]).err().expect("refused");
        assert!(matches!(err, StoreError::DiskFull { .. }), "{err}");
        assert!(
            run_files(dir.path()).is_empty(),
            "the file begun is removed"
        );
        std::fs::create_dir(&path).expect("a directory in the way");
        let err = index.stage(vec![(key(1), 1)]).err().expect("refused");
        assert!(matches!(err, StoreError::Sled(_)), "{err}");
        assert!(
            err.to_string().contains(&file_name(TRANSACTIONS, 0)),
            "{err}"
        );
        assert!(index.lookup(&key(1)).expect("lookup").is_empty());
    }

    #[test]
    fn the_run_list_encodes_and_is_checked() {
        let list = vec![
            RunMeta {
                seq: 3,
                count: 1000,
            },
            RunMeta { seq: 9, count: 12 },
        ];
        assert_eq!(
            decode_list(TRANSACTIONS, &encode_list(&list)).expect("decode"),
            list
        );
        assert_eq!(decode_list(TRANSACTIONS, &[]).expect("decode"), vec![]);
        assert!(decode_list(TRANSACTIONS, &[0u8; 17]).is_err());
        assert!(decode_list(TRANSACTIONS, &[0u8; 15]).is_err());
    }
}
