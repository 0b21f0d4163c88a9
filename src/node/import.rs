//! import-chain: every block of a stream is checked as if a stranger sent
//! it, verification runs in parallel across blocks, and what is valid is
//! stored in atomic batches.
//!
//! The pipeline per batch: decoding and the parent contexts run in file
//! order (they are cheap, and a context needs the headers before it); the
//! header checks — the ed25519 signature is their cost — and the body
//! checks — the re-execution of the spot-checked segments and the score —
//! run on `threads` workers; then the valid prefix of the batch is stored
//! as one atomic, flushed sled batch. A duplicate work hash inside the batch
//! is caught in file order after the workers, exactly as if the blocks had
//! been checked one by one. The first bad block stops the import, and
//! everything before it stays stored.
//!
//! [`import_chain`] overlaps the batches, because sled's writes cost CPU
//! time, not only disk time, and the in-order part would otherwise leave
//! cores idle: while the workers check batch k, the calling thread reads
//! and decodes batch k+1 (its contexts come from the claimed headers of
//! batch k, which are used only if batch k turns out valid), and another
//! thread stores batch k-1. A batch is reported only once it is flushed.
//! The workers never read the store: sled makes every read wait while a
//! batch is being applied, so the store lookups (known blocks, duplicate
//! work) happen in the in-order part, which has time to spare.

use super::chain::Chain;
use super::export::{StreamError, StreamReader};
use crate::chain::{Block, Hash32};
use crate::consensus::{
    self, AncestorInfo, Ancestry, BlockError, CheckedBlock, JobContext, ParentContext, Training,
};
use crate::store::{StoreError, Stored};
use crate::tx::{JobSpec, TxKind};
use crate::work::Run;
use crate::work::Task;
use std::collections::HashMap;
use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::sync::Mutex;
use thiserror::Error;

/// Blocks verified and stored together. Each batch costs a few syncs, a
/// run file and a height range whatever its size; 1024 took 7 % less CPU
/// than 256 on a 10,000-block import (benches/RESULTS-import.md).
pub const BATCH_BLOCKS: usize = 1024;
/// A batch also ends once its blocks take this many bytes: blocks full of
/// transactions cost more to check and store than their count says, and
/// smaller batches let one be stored while the next is checked.
pub const BATCH_BYTES: usize = 2 << 20;

#[derive(Debug, Error)]
pub enum ImportError {
    #[error(transparent)]
    Stream(#[from] StreamError),
    #[error("the file is for network {file_network:?} (genesis {file_genesis}), but this data dir holds network {ours_network:?} (genesis {ours_genesis})")]
    ForeignChain {
        file_network: String,
        file_genesis: Hash32,
        ours_network: String,
        ours_genesis: Hash32,
    },
    /// The block at position `index` (from 1) of the stream; `block` is
    /// its height and hash when it decodes.
    #[error("block #{index} of the file{} is invalid: {reason}", at(.block.as_deref()))]
    BadBlock {
        index: u64,
        block: Option<Box<(u64, Hash32)>>,
        reason: BlockError,
    },
    /// A block that passed every check alone broke a ledger rule when it
    /// connected; the blocks before it are stored.
    #[error("invalid block: {0}")]
    Ledger(BlockError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Asked to stop ([`import_chain_until`]): the batches read so far
    /// are stored, the rest of the stream is left unread.
    #[error("stopped before the end of the stream")]
    Stopped,
}

impl ImportError {
    /// The error as said of blocks a peer sent, for which the position
    /// in the batch means nothing: a bad block is named by its hash and
    /// height, as in `block HASH at height H: REASON`.
    pub fn from_peer(&self) -> String {
        match self {
            ImportError::BadBlock {
                block: Some(block),
                reason,
                ..
            } => {
                let (height, hash) = **block;
                format!("block {hash} at height {height}: {reason}")
            }
            ImportError::BadBlock {
                block: None,
                reason,
                ..
            } => format!("block that does not decode: {reason}"),
            other => other.to_string(),
        }
    }
}

/// What an import did, also when it stopped at a bad block.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ImportReport {
    /// Blocks newly stored.
    pub stored: u64,
    /// Blocks the store already had.
    pub already_known: u64,
    /// Reorgs the import caused.
    pub reorgs: u64,
}

/// What a block not yet in the store gives its children: the fields
/// their contexts need and its final model, as its block claims them.
struct PendingBlock {
    info: AncestorInfo,
    parent: Hash32,
    model: Vec<f64>,
}

fn pending_block(id: Hash32, block: &Block, parent: &AncestorInfo) -> PendingBlock {
    let fields = &block.header.fields;
    PendingBlock {
        info: AncestorInfo::of_header(id, fields, parent),
        parent: fields.parent,
        model: block.body.params.clone(),
    }
}

/// Blocks of one batch that are not in the store yet.
type Layer = HashMap<Hash32, PendingBlock>;

/// The valid blocks of the batch being stored while later ones are
/// checked: their children need their contexts, models and work hashes.
#[derive(Default)]
struct InFlight {
    blocks: Layer,
    work: HashMap<Hash32, Hash32>,
}

impl InFlight {
    /// The layer of `valid`, whose first blocks' parents are stored.
    fn of(valid: &[CheckedBlock], store: &crate::store::Store) -> Result<InFlight, StoreError> {
        let mut in_flight = InFlight::default();
        for checked in valid {
            let id = checked.id();
            let parent_hash = checked.block().header.fields.parent;
            let parent = match in_flight.blocks.get(&parent_hash) {
                Some(parent) => parent.info.clone(),
                None => store
                    .walk_back(&parent_hash, 1)
                    .and_then(|mut v| v.pop())
                    .ok_or_else(|| {
                        StoreError::Corrupt(format!(
                            "parent {parent_hash} of a valid block is not stored"
                        ))
                    })?,
            };
            in_flight
                .blocks
                .insert(id, pending_block(id, checked.block(), &parent));
            in_flight.work.insert(checked.work_hash(), id);
        }
        Ok(in_flight)
    }
}

/// Blocks known but not stored: the batch being prepared, then `layers`
/// (newest first), then the store.
struct Pending<'a> {
    chain: &'a Chain,
    layers: &'a [&'a Layer],
    batch: Layer,
}

impl Pending<'_> {
    fn get(&self, hash: &Hash32) -> Option<&PendingBlock> {
        self.batch
            .get(hash)
            .or_else(|| self.layers.iter().find_map(|layer| layer.get(hash)))
    }
}

impl Ancestry for Pending<'_> {
    fn walk_back(&self, hash: &Hash32, count: usize) -> Option<Vec<AncestorInfo>> {
        let mut out = Vec::with_capacity(count);
        let mut next = *hash;
        while out.len() < count {
            match self.get(&next) {
                Some(pending) => {
                    out.push(pending.info.clone());
                    next = pending.parent;
                }
                None => {
                    out.extend(self.chain.store.walk_back(&next, count - out.len())?);
                    break;
                }
            }
        }
        Some(out)
    }
}

/// A decoded block with its parent's context and model, waiting for its checks.
struct Unverified {
    index: u64,
    id: Hash32,
    block: Block,
    /// The bytes `block` was strictly decoded from, kept for the store.
    bytes: Vec<u8>,
    ctx: ParentContext,
    /// The task of the job the block trains, where the block stands in
    /// it, and the model it starts from.
    task: Arc<Task>,
    job: JobContext,
    start_model: Vec<f64>,
    /// The work hash its header claims, and the block that carried it
    /// before (stored, or in flight when this block was prepared).
    work_hash: Hash32,
    work_owner: Option<Hash32>,
}

/// A batch decoded in file order, ready for the header and body checks.
struct Prepared {
    items: Vec<Unverified>,
    /// The blocks of `items` as claimed, for the contexts of the next batch.
    blocks: Layer,
    /// Stream positions of the blocks skipped as already known.
    known: Vec<u64>,
    /// A block that does not decode or has no known parent; every item
    /// comes before it.
    error: Option<ImportError>,
    /// Records read from the stream up to the end of this batch.
    read: u64,
    /// The stream ended, or broke, with this batch.
    finished: bool,
    stream_error: Option<StreamError>,
}

/// One batch of records (stream position, block bytes) from the stream.
struct Records {
    records: Vec<(u64, Vec<u8>)>,
    read: u64,
    finished: bool,
    stream_error: Option<StreamError>,
}

fn read_batch<R: Read>(reader: &mut StreamReader<R>) -> Records {
    let mut records = Vec::with_capacity(BATCH_BLOCKS);
    let mut stream_error = None;
    let mut bytes_read = 0;
    let mut ended = false;
    while records.len() < BATCH_BLOCKS && bytes_read < BATCH_BYTES {
        match reader.next_block() {
            Ok(Some(bytes)) => {
                bytes_read += bytes.len();
                records.push((reader.blocks_read(), bytes));
            }
            Ok(None) => {
                ended = true;
                break;
            }
            Err(e) => {
                stream_error = Some(e);
                break;
            }
        }
    }
    Records {
        finished: ended || stream_error.is_some(),
        read: reader.blocks_read(),
        records,
        stream_error,
    }
}

/// A bad block of a file, after its position: its height and hash when it decodes.
fn at(block: Option<&(u64, Hash32)>) -> String {
    block.map_or(String::new(), |(height, id)| {
        format!(" (height {height}, hash {id})")
    })
}

/// Import a whole stream into `chain`. `progress(report, blocks_read)` is
/// called after each stored batch. Returns what was stored and, when the
/// import stopped early, why.
pub fn import_chain(
    chain: &Chain,
    input: impl Read,
    threads: usize,
    now_ms: u64,
    progress: impl FnMut(&ImportReport, u64),
) -> (ImportReport, Option<ImportError>) {
    import_chain_until(
        chain,
        input,
        threads,
        now_ms,
        &AtomicBool::new(false),
        progress,
    )
}

/// [`import_chain`], ending early once `stop` is set: the batches being
/// checked and stored then are finished and stored, nothing more is read,
/// and the error is [`ImportError::Stopped`].
pub fn import_chain_until(
    chain: &Chain,
    input: impl Read,
    threads: usize,
    now_ms: u64,
    stop: &AtomicBool,
    progress: impl FnMut(&ImportReport, u64),
) -> (ImportReport, Option<ImportError>) {
    let report = ImportReport::default();
    let (header, mut reader) = match StreamReader::open(input) {
        Ok(opened) => opened,
        Err(e) => return (report, Some(e.into())),
    };
    let ours = chain.store.genesis_hash();
    if header.genesis != ours {
        let error = ImportError::ForeignChain {
            file_network: header.params.network.clone(),
            file_genesis: header.genesis,
            ours_network: chain.params().network.clone(),
            ours_genesis: ours,
        };
        return (report, Some(error));
    }
    pipeline(
        chain,
        || read_batch(&mut reader),
        threads,
        now_ms,
        stop,
        progress,
    )
}

/// The overlapped batches of [`import_chain`] over any source of batches:
/// `next` gives the records of the next batch, called while the batch
/// before is checked.
fn pipeline(
    chain: &Chain,
    mut next: impl FnMut() -> Records,
    threads: usize,
    now_ms: u64,
    stop: &AtomicBool,
    mut progress: impl FnMut(&ImportReport, u64),
) -> (ImportReport, Option<ImportError>) {
    let mut report = ImportReport::default();
    let no_work = HashMap::new();
    let mut job_specs = JobSpecs::new();
    let mut prepared = match prepare(chain, &[], &no_work, &mut job_specs, next()) {
        Ok(prepared) => prepared,
        Err(e) => return (report, Some(e.into())),
    };
    std::thread::scope(|scope| {
        // The valid blocks of the batch being stored, and its writer.
        let mut in_flight = InFlight::default();
        let mut writer: Option<Writer> = None;
        loop {
            let Prepared {
                items,
                blocks,
                known,
                error,
                read,
                finished,
                stream_error,
            } = prepared;
            // Check this batch on the workers; meanwhile read and prepare
            // the next one on top of this one's claimed blocks.
            let more = !finished && error.is_none() && !stop.load(Ordering::SeqCst);
            let (checked, next) = std::thread::scope(|inner| {
                let checking =
                    inner.spawn(|| check(chain, items, &in_flight.work, threads, now_ms));
                let next = more.then(|| {
                    let layers = [&blocks, &in_flight.blocks];
                    prepare(chain, &layers, &in_flight.work, &mut job_specs, next())
                });
                (join(checking), next)
            });
            if let Err(e) = finish(writer.take(), &mut report, &mut progress) {
                return (report, Some(e));
            }
            let (valid, bad_block) = checked;
            let error = bad_block.or(error);
            report.already_known += known_before(&known, error.as_ref());
            // Asked to stop while this batch was checked: it is the last
            // one, and the batch read meanwhile is dropped unchecked.
            let stopped = !finished && stop.load(Ordering::SeqCst);
            let next = match (error, next) {
                (None, Some(Ok(next))) if !stopped => next,
                // The last batch, or one that ends at a bad block (the
                // batch read after it is dropped unchecked): store the
                // valid prefix here.
                (error, next) => {
                    if let Err(e) = count_stored(chain.store.insert(&valid), &mut report) {
                        return (report, Some(e));
                    }
                    let error = match (error, next) {
                        (Some(bad_block), _) => return (report, Some(bad_block)),
                        (None, Some(Err(store))) => Some(store.into()),
                        (None, _) if stopped => Some(ImportError::Stopped),
                        (None, _) => stream_error.map(ImportError::from),
                    };
                    progress(&report, read);
                    return (report, error);
                }
            };
            in_flight = match InFlight::of(&valid, &chain.store) {
                Ok(layer) => layer,
                Err(e) => return (report, Some(e.into())),
            };
            writer = Some((scope.spawn(move || chain.store.insert(&valid)), read));
            prepared = next;
        }
    })
}

/// A batch being stored on its own thread, and the records read when it was.
type Writer<'scope> = (
    std::thread::ScopedJoinHandle<'scope, Result<Vec<Stored>, StoreError>>,
    u64,
);

/// Wait for `writer`, count what it stored and report the progress.
fn finish(
    writer: Option<Writer>,
    report: &mut ImportReport,
    progress: &mut impl FnMut(&ImportReport, u64),
) -> Result<(), ImportError> {
    if let Some((handle, read)) = writer {
        count_stored(join(handle), report)?;
        progress(report, read);
    }
    Ok(())
}

/// Join a scoped thread, passing its panic on.
fn join<T>(handle: std::thread::ScopedJoinHandle<T>) -> T {
    handle
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

fn count_stored(
    stored: Result<Vec<Stored>, StoreError>,
    report: &mut ImportReport,
) -> Result<(), ImportError> {
    let stored = match stored {
        Ok(stored) => stored,
        Err(StoreError::InvalidBlock {
            block,
            height,
            error,
            stored,
        }) => {
            count_stored(Ok(stored), report)?;
            return Err(ImportError::Ledger(BlockError::Ledger {
                block,
                height,
                error,
            }));
        }
        Err(e) => return Err(e.into()),
    };
    for outcome in stored {
        match outcome {
            Stored::AlreadyKnown => report.already_known += 1,
            Stored::Reorg { .. } => {
                report.stored += 1;
                report.reorgs += 1;
            }
            Stored::Extended | Stored::SideChain => report.stored += 1,
        }
    }
    Ok(())
}

/// Known blocks counted: those before the first bad block, if any.
fn known_before(known: &[u64], error: Option<&ImportError>) -> u64 {
    let end = match error {
        Some(ImportError::BadBlock { index, .. }) => *index,
        _ => u64::MAX,
    };
    known.iter().filter(|&&index| index < end).count() as u64
}

/// Verify and store the batches of records (position, block bytes) that
/// `next` gives, through [`import_chain`]'s pipeline: each batch is checked
/// in parallel, and its valid prefix stored atomically while the next one
/// is checked. `next` answers `None` when there are no more batches; it is
/// called while the batch before is checked, so it may wait for blocks
/// still arriving. `progress(report, position)` is called after each stored
/// batch, with the position of its last record. The error names the first
/// bad block by its position; every block before it is stored.
pub fn store_blocks(
    chain: &Chain,
    mut next: impl FnMut() -> Option<Vec<(u64, Vec<u8>)>>,
    threads: usize,
    now_ms: u64,
    progress: impl FnMut(&ImportReport, u64),
) -> (ImportReport, Option<ImportError>) {
    let mut read = 0;
    let records = || match next() {
        Some(records) => {
            read = records.last().map_or(read, |(position, _)| *position);
            Records {
                records,
                read,
                finished: false,
                stream_error: None,
            }
        }
        None => Records {
            records: Vec::new(),
            read,
            finished: true,
            stream_error: None,
        },
    };
    pipeline(
        chain,
        records,
        threads,
        now_ms,
        &AtomicBool::new(false),
        progress,
    )
}

/// The in-order part of a batch: decode each block, skip it if it is
/// already known (stored, in `layers`, or earlier in the batch: a repeated
/// block is known wherever the batches are cut, never a duplicate of its
/// own work), and build its parent's context and model from the claimed
/// blocks before it. A context built on a block that later fails is never
/// used: the import stops at that block.
/// The jobs submitted by blocks read so far, by id: later blocks of the
/// same import may train them before they are stored.
type JobSpecs = HashMap<Hash32, JobSpec>;

fn prepare(
    chain: &Chain,
    layers: &[&Layer],
    in_flight_work: &HashMap<Hash32, Hash32>,
    job_specs: &mut JobSpecs,
    records: Records,
) -> Result<Prepared, StoreError> {
    let Records {
        records,
        read,
        finished,
        stream_error,
    } = records;
    let params = chain.params();
    let mut pending = Pending {
        chain,
        layers,
        batch: HashMap::with_capacity(records.len()),
    };
    let mut items = Vec::with_capacity(records.len());
    let mut known = Vec::new();
    let mut error = None;
    for (index, bytes) in records {
        let block = match chain.decode(&bytes) {
            Ok(block) => block,
            Err(reason) => {
                error = Some(ImportError::BadBlock {
                    index,
                    block: None,
                    reason,
                });
                break;
            }
        };
        let id = block.id();
        if pending.get(&id).is_some() || chain.store.contains(&id)? {
            known.push(index);
            continue;
        }
        let fields = &block.header.fields;
        let unknown_parent = |reason| ImportError::BadBlock {
            index,
            block: Some(Box::new((fields.height, id))),
            reason,
        };
        let Some(ctx) = ParentContext::build(params, &pending, &fields.parent) else {
            error = Some(unknown_parent(BlockError::UnknownParent {
                parent: fields.parent,
            }));
            break;
        };
        let job_id = fields.job;
        let found = chain
            .job_task(&job_id, || match job_specs.get(&job_id) {
                Some(spec) => Ok(Some(spec.clone())),
                None => chain.store.job_spec(&job_id, &fields.parent),
            })
            .and_then(|task| {
                let job = JobContext::build(&pending, &ctx.parent, &job_id).ok_or(
                    BlockError::UnknownParent {
                        parent: fields.parent,
                    },
                )?;
                let start_model = match job.start {
                    Some(hash) => match pending.get(&hash) {
                        Some(block) => block.model.clone(),
                        None => chain.model(&hash)?,
                    },
                    None => task.initial_params(&job_id),
                };
                Ok((task, job, start_model))
            });
        let (task, job, start_model) = match found {
            Ok(found) => found,
            Err(super::SubmitError::Store(e)) => return Err(e),
            Err(super::SubmitError::Invalid(reason)) => {
                error = Some(unknown_parent(reason));
                break;
            }
        };
        if let Err(reason) = chain.check_encoder_jobs(&block.body.txs) {
            error = Some(unknown_parent(reason));
            break;
        }
        for t in &block.body.txs {
            if let TxKind::SubmitJob(spec) = &t.fields.kind {
                job_specs.insert(t.id(), (**spec).clone());
            }
        }
        // The duplicate-work lookup happens here rather than on the
        // workers: sled's reads wait while another thread applies a batch,
        // and this thread has the time to spare.
        let work_hash = Run::new(&fields.parent, &fields.miner, fields.lane).work_hash(
            fields.steps,
            &fields.model_hash,
            &fields.ckpt_root,
        );
        let work_owner = match in_flight_work.get(&work_hash) {
            Some(owner) => Some(*owner),
            None => chain.store.work_owner(&work_hash)?,
        };
        pending
            .batch
            .insert(id, pending_block(id, &block, &ctx.parent));
        items.push(Unverified {
            index,
            id,
            block,
            bytes,
            ctx,
            task,
            job,
            start_model,
            work_hash,
            work_owner,
        });
    }
    Ok(Prepared {
        items,
        blocks: pending.batch,
        known,
        error,
        read,
        finished,
        stream_error,
    })
}

/// What the workers found about one block.
enum Verdict {
    Valid(Box<CheckedBlock>),
    BadHeader(BlockError),
    /// The header passed with this work hash; the body did not.
    BadBody(Hash32, BlockError),
}

/// Every header and body check of `items` on `threads` workers, then, in
/// file order, the valid prefix and the first bad block. `in_flight_work`
/// holds the work hashes of valid blocks not yet in the store.
fn check(
    chain: &Chain,
    items: Vec<Unverified>,
    in_flight_work: &HashMap<Hash32, Hash32>,
    threads: usize,
    now_ms: u64,
) -> (Vec<CheckedBlock>, Option<ImportError>) {
    let params = chain.params();
    let positions: Vec<(u64, Hash32, u64)> = items
        .iter()
        .map(|u| (u.index, u.id, u.block.height()))
        .collect();
    let count = items.len();
    let slots: Vec<Mutex<Option<Unverified>>> =
        items.into_iter().map(|u| Mutex::new(Some(u))).collect();
    let next = AtomicUsize::new(0);
    let workers = threads.clamp(1, count.max(1));
    // Duplicates of work stored or in flight are found here, by
    // check_header; duplicates inside the batch below, in file order.
    let owner = |item: &Unverified, work_hash: &Hash32| {
        let earlier = in_flight_work.get(work_hash).copied();
        if *work_hash == item.work_hash {
            earlier.or(item.work_owner)
        } else {
            // Not the hash computed when the block was prepared: ask the store.
            earlier.or_else(|| chain.store.work_owner(work_hash).ok().flatten())
        }
    };
    let mut verdicts: Vec<Option<Verdict>> = (0..count).map(|_| None).collect();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    let mut found = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= count {
                            break;
                        }
                        let Some(item) = slots[i].lock().ok().and_then(|mut s| s.take()) else {
                            continue;
                        };
                        let training = Training {
                            task: &item.task,
                            job: &item.job,
                            reference_cost: chain.task.cost,
                            start_model: &item.start_model,
                        };
                        let header = consensus::check_header(
                            params,
                            &item.ctx,
                            &training,
                            &item.block.header,
                            now_ms,
                            &|work_hash| owner(&item, work_hash),
                        );
                        let verdict = match header {
                            Err(reason) => Verdict::BadHeader(reason),
                            Ok(header) => {
                                let work_hash = header.work_hash();
                                match consensus::check_body(params, &training, item.block, header) {
                                    Ok(checked) => Verdict::Valid(Box::new(
                                        checked.with_canonical_bytes(item.bytes),
                                    )),
                                    Err(reason) => Verdict::BadBody(work_hash, reason),
                                }
                            }
                        };
                        found.push((i, verdict));
                    }
                    found
                })
            })
            .collect();
        for handle in handles {
            for (i, verdict) in join(handle) {
                verdicts[i] = Some(verdict);
            }
        }
    });
    // In file order: the first bad block ends the valid prefix. A work
    // hash seen earlier in the batch is a duplicate, as check_header would
    // have said had the earlier block been stored; that check comes after
    // all other header checks and before the body.
    let mut valid = Vec::with_capacity(count);
    let mut batch_work: HashMap<Hash32, Hash32> = HashMap::with_capacity(count);
    for (verdict, (index, id, height)) in verdicts.into_iter().zip(positions) {
        let duplicate = |work_hash: &Hash32| {
            batch_work
                .get(work_hash)
                .map(|existing| BlockError::DuplicateWork {
                    work_hash: *work_hash,
                    existing: *existing,
                })
        };
        let reason = match verdict.expect("every block checked has a verdict") {
            Verdict::BadHeader(reason) => reason,
            Verdict::BadBody(work_hash, reason) => duplicate(&work_hash).unwrap_or(reason),
            Verdict::Valid(checked) => match duplicate(&checked.work_hash()) {
                Some(reason) => reason,
                None => {
                    batch_work.insert(checked.work_hash(), checked.id());
                    valid.push(*checked);
                    continue;
                }
            },
        };
        let error = ImportError::BadBlock {
            index,
            block: Some(Box::new((height, id))),
            reason,
        };
        return (valid, Some(error));
    }
    (valid, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file's bad block is named by its position in the file; a peer's,
    /// by its hash and height only.
    #[test]
    fn a_bad_block_is_named_by_file_position_or_by_hash_for_peers() {
        let hash = Hash32([0xab; 32]);
        let reason = || BlockError::UnknownParent {
            parent: Hash32([0xcd; 32]),
        };
        let error = ImportError::BadBlock {
            index: 1,
            block: Some(Box::new((7, hash))),
            reason: reason(),
        };
        let file = error.to_string();
        assert!(
            file.starts_with(&format!(
                "block #1 of the file (height 7, hash {hash}) is invalid: "
            )),
            "{file}"
        );
        let peer = error.from_peer();
        assert_eq!(peer, format!("block {hash} at height 7: {}", reason()));
        let undecodable = ImportError::BadBlock {
            index: 3,
            block: None,
            reason: reason(),
        };
        assert!(undecodable
            .to_string()
            .starts_with("block #3 of the file is invalid: "));
        let peer = undecodable.from_peer();
        assert!(peer.starts_with("block that does not decode: "), "{peer}");
        assert!(
            !peer.contains("of the file") && !peer.contains('#'),
            "{peer}"
        );
    }
}
