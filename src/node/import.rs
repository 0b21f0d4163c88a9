//! import-chain: every block of a stream is checked as if a stranger sent
//! it, verification runs in parallel across blocks, and what is valid is
//! stored in atomic batches.
//!
//! The pipeline per batch: decode and header checks run in file order (they
//! are cheap and each needs its parent's context); the body checks — the
//! re-execution of the spot-checked segments and the score, nearly all of
//! the cost — run on `threads` workers; then the valid prefix of the batch
//! is stored as one atomic, flushed sled batch. The first bad block stops
//! the import, and everything before it stays stored.

use super::chain::Chain;
use super::export::{StreamError, StreamReader};
use crate::chain::{Block, Hash32};
use crate::consensus::{
    self, AncestorInfo, Ancestry, BlockError, CheckedBlock, CheckedHeader, ParentContext,
};
use crate::store::{StoreError, Stored};
use std::collections::HashMap;
use std::io::Read;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use thiserror::Error;

/// Blocks verified and stored together.
pub const BATCH_BLOCKS: usize = 256;

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
    #[error("block #{index} of the file{at} is invalid: {reason}")]
    BadBlock {
        index: u64,
        at: String,
        reason: BlockError,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
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

/// Headers and models of blocks checked in this batch but not stored yet.
struct Pending<'a> {
    chain: &'a Chain,
    infos: HashMap<Hash32, (AncestorInfo, Hash32)>,
    models: HashMap<Hash32, Vec<f64>>,
    work: HashMap<Hash32, Hash32>,
}

impl Ancestry for Pending<'_> {
    fn walk_back(&self, hash: &Hash32, count: usize) -> Option<Vec<AncestorInfo>> {
        let mut out = Vec::with_capacity(count);
        let mut next = *hash;
        while out.len() < count {
            match self.infos.get(&next) {
                Some((info, parent)) => {
                    out.push(info.clone());
                    next = *parent;
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

struct Unverified {
    index: u64,
    block: Block,
    ctx: ParentContext,
    header: CheckedHeader,
}

fn describe(block: &Block) -> String {
    format!(" (height {}, hash {})", block.height(), block.id())
}

/// Import a whole stream into `chain`. `progress(report, blocks_read)` is
/// called after each stored batch. Returns what was stored and, when the
/// import stopped early, why.
pub fn import_chain(
    chain: &Chain,
    input: impl Read,
    threads: usize,
    now_ms: u64,
    mut progress: impl FnMut(&ImportReport, u64),
) -> (ImportReport, Option<ImportError>) {
    let mut report = ImportReport::default();
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
    loop {
        let mut records = Vec::with_capacity(BATCH_BLOCKS);
        let mut stream_error = None;
        while records.len() < BATCH_BLOCKS {
            match reader.next_block() {
                Ok(Some(bytes)) => records.push((reader.blocks_read(), bytes)),
                Ok(None) => break,
                Err(e) => {
                    stream_error = Some(e);
                    break;
                }
            }
        }
        let finished = records.len() < BATCH_BLOCKS || stream_error.is_some();
        if let Err(e) = store_blocks(chain, records, threads, now_ms, &mut report) {
            return (report, Some(e));
        }
        progress(&report, reader.blocks_read());
        if let Some(e) = stream_error {
            return (report, Some(e.into()));
        }
        if finished {
            return (report, None);
        }
    }
}

/// Verify `records` (position, block bytes) in parallel and store the valid
/// prefix atomically; the error names the first bad block.
pub fn store_blocks(
    chain: &Chain,
    records: Vec<(u64, Vec<u8>)>,
    threads: usize,
    now_ms: u64,
    report: &mut ImportReport,
) -> Result<(), ImportError> {
    let params = chain.params();
    let mut pending = Pending {
        chain,
        infos: HashMap::new(),
        models: HashMap::new(),
        work: HashMap::new(),
    };
    let mut unverified = Vec::with_capacity(records.len());
    let mut first_error = None;
    // Sequential phase: decode and header checks, in file order.
    for (index, bytes) in records {
        let block = match chain.decode(&bytes) {
            Ok(block) => block,
            Err(reason) => {
                first_error = Some(ImportError::BadBlock {
                    index,
                    at: String::new(),
                    reason,
                });
                break;
            }
        };
        let id = block.id();
        // Known from the store or from earlier in this batch: a repeated
        // block is already known wherever the batches are cut, never a
        // duplicate of its own work.
        if chain.store.contains(&id)? || pending.infos.contains_key(&id) {
            report.already_known += 1;
            continue;
        }
        let fields = &block.header.fields;
        let checked = ParentContext::build(params, &pending, &fields.parent)
            .ok_or(BlockError::UnknownParent {
                parent: fields.parent,
            })
            .and_then(|ctx| {
                let owner = |w: &Hash32| {
                    pending
                        .work
                        .get(w)
                        .copied()
                        .or_else(|| chain.store.work_owner(w).ok().flatten())
                };
                consensus::check_header(params, &ctx, &block.header, now_ms, &owner)
                    .map(|h| (ctx, h))
            });
        let (ctx, header) = match checked {
            Ok(ok) => ok,
            Err(reason) => {
                first_error = Some(ImportError::BadBlock {
                    index,
                    at: describe(&block),
                    reason,
                });
                break;
            }
        };
        pending.work.insert(header.work_hash(), id);
        pending.infos.insert(
            id,
            (
                AncestorInfo {
                    hash: id,
                    height: fields.height,
                    timestamp_ms: fields.timestamp_ms,
                    target: fields.target,
                    score_ppm: fields.score_ppm,
                },
                fields.parent,
            ),
        );
        pending.models.insert(id, block.body.params.clone());
        unverified.push(Unverified {
            index,
            block,
            ctx,
            header,
        });
    }
    // Parallel phase: body checks. Parent models come from this batch or the store.
    let mut parent_models = Vec::with_capacity(unverified.len());
    for item in &unverified {
        let parent = item.block.header.fields.parent;
        let model = match pending.models.get(&parent) {
            Some(model) => model.clone(),
            None => chain.model(&parent).map_err(|e| match e {
                super::SubmitError::Store(s) => ImportError::Store(s),
                super::SubmitError::Invalid(reason) => ImportError::BadBlock {
                    index: item.index,
                    at: describe(&item.block),
                    reason,
                },
            })?,
        };
        parent_models.push(model);
    }
    let count = unverified.len();
    let slots: Vec<Mutex<Option<Unverified>>> = unverified
        .into_iter()
        .map(|u| Mutex::new(Some(u)))
        .collect();
    let results: Vec<Mutex<Option<Result<CheckedBlock, ImportError>>>> =
        (0..count).map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    let workers = threads.clamp(1, count.max(1));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    break;
                }
                let Some(item) = slots[i].lock().ok().and_then(|mut s| s.take()) else {
                    continue;
                };
                let at = describe(&item.block);
                let index = item.index;
                let result = consensus::check_body(
                    params,
                    &chain.task,
                    &item.ctx,
                    &parent_models[i],
                    item.block,
                    item.header,
                )
                .map_err(|reason| ImportError::BadBlock { index, at, reason });
                if let Ok(mut slot) = results[i].lock() {
                    *slot = Some(result);
                }
            });
        }
    });
    let mut valid = Vec::with_capacity(count);
    for slot in results {
        match slot.into_inner().ok().flatten() {
            Some(Ok(checked)) => valid.push(checked),
            Some(Err(e)) => {
                first_error = Some(e);
                break;
            }
            None => break,
        }
    }
    for outcome in chain.store.insert(&valid)? {
        match outcome {
            Stored::AlreadyKnown => report.already_known += 1,
            Stored::Reorg { .. } => {
                report.stored += 1;
                report.reorgs += 1;
            }
            Stored::Extended | Stored::SideChain => report.stored += 1,
        }
    }
    first_error.map_or(Ok(()), Err)
}
