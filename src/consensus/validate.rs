//! Block validity (PROTOCOL §7), cheapest checks first.
//!
//! [`check_header`] needs only the header and the parent's context: it is
//! what a node runs before fetching or storing a body. [`check_body`] does
//! the expensive part: Merkle proofs, re-executing the challenged segments
//! and the tail, and the score. Only [`validate_block`] yields a
//! [`CheckedBlock`], and the store accepts nothing else.

use super::params::ChainParams;
use super::{passes_gate, JobContext, ParentContext};
use crate::chain::{encoding, strict_key, Block, DecodeError, Hash32, Header, HEADER_VERSION};
use crate::ledger::LedgerError;
use crate::model::{first_non_finite, model_hash};
use crate::tx::{self, CheckedTx, TxError};
use crate::work::{self, merkle, Run, Task, Trainer};
use ed25519_dalek::Signature;
use primitive_types::U256;
use std::collections::HashSet;
use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum BlockError {
    #[error("malformed: {0}")]
    Decode(#[from] DecodeError),
    #[error("unknown header version {found} (this node knows {known})")]
    UnknownVersion { found: u16, known: u16 },
    #[error("unknown parent {parent}")]
    UnknownParent { parent: Hash32 },
    #[error("parent is {expected}, but the header names {found}")]
    WrongParent { expected: Hash32, found: Hash32 },
    #[error("height is {found}, expected {expected}")]
    WrongHeight { expected: u64, found: u64 },
    #[error(
        "timestamp {found_ms} ms is not above the median of the last 11 blocks, {median_ms} ms"
    )]
    TimestampTooOld { median_ms: u64, found_ms: u64 },
    #[error("timestamp {found_ms} ms is more than the allowed drift ahead of local time (limit {limit_ms} ms)")]
    TimestampTooFarAhead { limit_ms: u64, found_ms: u64 },
    #[error("target is {found}, the retarget rule requires {expected}")]
    WrongTarget { expected: Hash32, found: Hash32 },
    #[error("the block trains job {found}, but its context is for job {expected}")]
    WrongJob { expected: Hash32, found: Hash32 },
    #[error("the block trains job {job}, which this chain does not know")]
    UnknownJob { job: Hash32 },
    #[error("the job cannot be trained: {reason}")]
    UntrainableJob { reason: String },
    #[error("the block says it is block {found} of its job, but it is block {expected}")]
    WrongJobBlock { expected: u64, found: u64 },
    #[error("steps {found} outside 1..={limit}")]
    WrongStepCount { limit: u64, found: u64 },
    #[error("miner key {key} is not a canonically encoded ed25519 key, or has small order")]
    BadMinerKey { key: Hash32 },
    #[error("signature does not verify under the miner key")]
    BadSignature,
    #[error("work hash {work_hash} is above the target {target}")]
    WorkAboveTarget { work_hash: Hash32, target: Hash32 },
    #[error("duplicate work hash {work_hash}: already carried by block {existing}")]
    DuplicateWork { work_hash: Hash32, existing: Hash32 },
    #[error("body hash is {found}, the header commits to {expected}")]
    BodyHashMismatch { expected: Hash32, found: Hash32 },
    #[error("transaction root is {found}, the header commits to {expected}")]
    TxRootMismatch { expected: Hash32, found: Hash32 },
    #[error("the block carries {found} transactions, over the limit of {limit}")]
    TooManyTxs { found: usize, limit: usize },
    #[error("the block's transactions take {found} bytes, over the limit of {limit}")]
    TxBytesOver { found: usize, limit: usize },
    #[error("transaction {index} ({id}) appears twice in the block")]
    DuplicateTx { index: usize, id: Hash32 },
    #[error("transaction {index} ({id}): {error}")]
    Tx {
        index: usize,
        id: Hash32,
        error: Box<TxError>,
    },
    /// Found when the block (or, in a reorg, an ancestor on its branch)
    /// connects to the ledger.
    #[error("block {block} at height {height} breaks a ledger rule: {error}")]
    Ledger {
        block: Hash32,
        height: u64,
        error: Box<LedgerError>,
    },
    #[error("{what} has {found} parameters, the task has {expected}")]
    WrongParamCount {
        what: String,
        expected: usize,
        found: usize,
    },
    #[error("{what} has a NaN or infinite parameter at index {index}")]
    NonFiniteParams { what: String, index: usize },
    #[error("{what} has a parameter that is not on the task's grid")]
    OffGrid { what: String },
    #[error("model hash of the final parameters is {found}, the header commits to {expected}")]
    ModelHashMismatch { expected: Hash32, found: Hash32 },
    #[error("body opens checkpoints {found:?}, the challenges require exactly {expected:?}")]
    WrongOpenings { expected: Vec<u64>, found: Vec<u64> },
    #[error("Merkle proof of checkpoint {index} does not match the checkpoint root")]
    BadMerkleProof { index: u64 },
    #[error("segment {segment} does not re-execute: steps {first}..={last} from checkpoint {from} do not give checkpoint {segment}")]
    SegmentMismatch {
        segment: u64,
        from: u64,
        first: u64,
        last: u64,
    },
    #[error("tail does not re-execute: steps {first}..={last} from checkpoint {from} do not give the final parameters")]
    TailMismatch { from: u64, first: u64, last: u64 },
    #[error("score is {found} ppm, but the model scores {expected} ppm on the validation set")]
    ScoreMismatch { expected: u32, found: u32 },
    #[error("score {score} ppm is under the quality gate: {threshold_ppm} ppm of the start model's score, {gate_score} ppm")]
    ScoreBelowGate {
        score: u32,
        threshold_ppm: u32,
        gate_score: u32,
    },
}

/// A block that passed every rule, with the values validation derived.
#[derive(Clone, Debug)]
pub struct CheckedBlock {
    block: Block,
    id: Hash32,
    work_hash: Hash32,
    txs: Vec<CheckedTx>,
    /// The block's canonical bytes, when the caller had them already.
    bytes: Option<Vec<u8>>,
}

impl CheckedBlock {
    pub fn block(&self) -> &Block {
        &self.block
    }
    pub fn id(&self) -> Hash32 {
        self.id
    }
    pub fn work_hash(&self) -> Hash32 {
        self.work_hash
    }
    pub fn into_block(self) -> Block {
        self.block
    }
    /// The block's transactions, each past every rule that needs no ledger.
    pub fn txs(&self) -> &[CheckedTx] {
        &self.txs
    }
    /// Keep `bytes`, the bytes the block was strictly decoded from (which
    /// are therefore its canonical encoding), so that storing it does not
    /// encode it again.
    pub fn with_canonical_bytes(mut self, bytes: Vec<u8>) -> CheckedBlock {
        debug_assert!(
            bytes == self.block.to_bytes(),
            "not the block's canonical bytes"
        );
        self.bytes = Some(bytes);
        self
    }
    /// The block's canonical bytes: those it came with, or its encoding.
    pub fn bytes(&self) -> std::borrow::Cow<'_, [u8]> {
        match &self.bytes {
            Some(bytes) => std::borrow::Cow::Borrowed(bytes),
            None => std::borrow::Cow::Owned(self.block.to_bytes()),
        }
    }
}

/// Proof that a header passed [`check_header`]; [`check_body`] needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckedHeader {
    work_hash: Hash32,
}

impl CheckedHeader {
    pub fn work_hash(&self) -> Hash32 {
        self.work_hash
    }
}

/// The job a block trains, as a validator sees it: the job's task, where
/// the block stands in it, and the model it starts from.
#[derive(Clone, Copy, Debug)]
pub struct Training<'a> {
    pub task: &'a Task,
    pub job: &'a JobContext,
    /// The step cost of the chain's genesis task: ticket targets scale by
    /// `task.cost / reference_cost`.
    pub reference_cost: u64,
    /// The final model of the block `job.start` names, or the job's
    /// initial model.
    pub start_model: &'a [f64],
}

/// Header checks (§7 steps 1–4). `work_owner` finds the block that already
/// carries a work hash, if any.
pub fn check_header(
    params: &ChainParams,
    ctx: &ParentContext,
    training: &Training,
    header: &Header,
    now_ms: u64,
    work_owner: &dyn Fn(&Hash32) -> Option<Hash32>,
) -> Result<CheckedHeader, BlockError> {
    let f = &header.fields;
    if f.version != HEADER_VERSION {
        return Err(BlockError::UnknownVersion {
            found: f.version,
            known: HEADER_VERSION,
        });
    }
    if f.parent != ctx.parent.hash {
        return Err(BlockError::WrongParent {
            expected: ctx.parent.hash,
            found: f.parent,
        });
    }
    if f.height != ctx.child_height() {
        return Err(BlockError::WrongHeight {
            expected: ctx.child_height(),
            found: f.height,
        });
    }
    if f.timestamp_ms <= ctx.median_time_past_ms {
        return Err(BlockError::TimestampTooOld {
            median_ms: ctx.median_time_past_ms,
            found_ms: f.timestamp_ms,
        });
    }
    let limit_ms = now_ms.saturating_add(params.max_future_drift_ms);
    if f.timestamp_ms > limit_ms {
        return Err(BlockError::TimestampTooFarAhead {
            limit_ms,
            found_ms: f.timestamp_ms,
        });
    }
    if f.target != ctx.required_target {
        return Err(BlockError::WrongTarget {
            expected: ctx.required_target,
            found: f.target,
        });
    }
    if f.job != training.job.job {
        return Err(BlockError::WrongJob {
            expected: training.job.job,
            found: f.job,
        });
    }
    if f.job_block != training.job.job_block {
        return Err(BlockError::WrongJobBlock {
            expected: training.job.job_block,
            found: f.job_block,
        });
    }
    let max_steps = training.task.max_steps_per_block;
    if f.steps == 0 || f.steps > max_steps {
        return Err(BlockError::WrongStepCount {
            limit: max_steps,
            found: f.steps,
        });
    }
    // Canonical encodings only (y < p): a key has exactly one miner id.
    let key = strict_key(&f.miner).ok_or(BlockError::BadMinerKey { key: f.miner })?;
    let signature = Signature::from_bytes(&header.signature);
    key.verify_strict(&f.signing_hash().0, &signature)
        .map_err(|_| BlockError::BadSignature)?;
    let run = Run::new(&f.parent, &f.miner, f.lane);
    let work_hash = run.work_hash(f.steps, &f.model_hash, &f.ckpt_root);
    let ticket_target = training
        .task
        .ticket_target(&f.target, training.reference_cost);
    if U256::from_big_endian(&work_hash.0) > ticket_target {
        return Err(BlockError::WorkAboveTarget {
            work_hash,
            target: Hash32(ticket_target.to_big_endian()),
        });
    }
    if let Some(existing) = work_owner(&work_hash) {
        return Err(BlockError::DuplicateWork {
            work_hash,
            existing,
        });
    }
    Ok(CheckedHeader { work_hash })
}

fn check_params(task: &Task, what: impl Fn() -> String, params: &[f64]) -> Result<(), BlockError> {
    if params.len() != task.dim() {
        return Err(BlockError::WrongParamCount {
            what: what(),
            expected: task.dim(),
            found: params.len(),
        });
    }
    if let Some(index) = first_non_finite(params) {
        return Err(BlockError::NonFiniteParams {
            what: what(),
            index,
        });
    }
    if !task.is_representable(params) {
        return Err(BlockError::OffGrid { what: what() });
    }
    Ok(())
}

/// Body checks (§7 steps 5–7) for a block whose header passed
/// [`check_header`].
pub fn check_body(
    params: &ChainParams,
    training: &Training,
    block: Block,
    header: CheckedHeader,
) -> Result<CheckedBlock, BlockError> {
    check_body_rules(params, training, &block, &header.work_hash)?;
    let txs = check_txs(params, &block)?;
    Ok(CheckedBlock {
        id: block.id(),
        block,
        work_hash: header.work_hash,
        txs,
        bytes: None,
    })
}

/// The transaction rules that need no ledger (schema/transactions.md):
/// the count and byte bounds, no id twice, and each transaction's own
/// rules. The ledger's rules run when the block connects.
fn check_txs(params: &ChainParams, block: &Block) -> Result<Vec<CheckedTx>, BlockError> {
    let txs = &block.body.txs;
    let limit = params.max_block_txs as usize;
    if txs.len() > limit {
        return Err(BlockError::TooManyTxs {
            found: txs.len(),
            limit,
        });
    }
    let bytes: usize = txs.iter().map(|t| encoding::encode(t).len()).sum();
    let limit = params.max_block_tx_bytes as usize;
    if bytes > limit {
        return Err(BlockError::TxBytesOver {
            found: bytes,
            limit,
        });
    }
    let genesis = params.genesis_hash();
    let mut seen = HashSet::with_capacity(txs.len());
    let mut checked = Vec::with_capacity(txs.len());
    for (index, t) in txs.iter().enumerate() {
        let id = t.id();
        if !seen.insert(id) {
            return Err(BlockError::DuplicateTx { index, id });
        }
        let tx =
            tx::check_tx(t.clone(), &genesis, &params.jobs).map_err(|error| BlockError::Tx {
                index,
                id,
                error: Box::new(error),
            })?;
        checked.push(tx);
    }
    Ok(checked)
}

fn check_body_rules(
    params: &ChainParams,
    training: &Training,
    block: &Block,
    work_hash: &Hash32,
) -> Result<(), BlockError> {
    let task = training.task;
    let parent_model = training.start_model;
    let f = &block.header.fields;
    let body = &block.body;
    let body_hash = body.hash();
    if body_hash != f.body_hash {
        return Err(BlockError::BodyHashMismatch {
            expected: f.body_hash,
            found: body_hash,
        });
    }
    let tx_root = tx::tx_root(&body.txs);
    if tx_root != f.tx_root {
        return Err(BlockError::TxRootMismatch {
            expected: f.tx_root,
            found: tx_root,
        });
    }
    check_params(task, || "final parameters".into(), &body.params)?;
    let final_hash = model_hash(&body.params);
    if final_hash != f.model_hash {
        return Err(BlockError::ModelHashMismatch {
            expected: f.model_hash,
            found: final_hash,
        });
    }
    let c = task.checkpoint_interval;
    let m = f.steps / c;
    let expected = work::required_openings(f.steps, c, task.spot_checks, work_hash);
    let found: Vec<u64> = body.openings.iter().map(|o| o.index).collect();
    if expected != found {
        return Err(BlockError::WrongOpenings { expected, found });
    }
    for opening in &body.openings {
        let index = opening.index;
        check_params(task, || format!("checkpoint {index}"), &opening.params)?;
        let leaf = merkle::leaf_hash(&model_hash(&opening.params));
        if !merkle::verify(&leaf, index - 1, m, &opening.proof, &f.ckpt_root) {
            return Err(BlockError::BadMerkleProof { index });
        }
    }
    let checkpoint = |j: u64| -> &[f64] {
        if j == 0 {
            parent_model
        } else {
            // Present: the openings equal the required set, checked above.
            let at = body
                .openings
                .binary_search_by_key(&j, |o| o.index)
                .expect("required opening present");
            &body.openings[at].params
        }
    };
    let mut trainer = Trainer::new(
        task,
        Run::new(&f.parent, &f.miner, f.lane),
        training.job.job_block,
    );
    let mut scratch = vec![0.0; task.dim()];
    for segment in work::challenged_segments(work_hash, m, task.spot_checks) {
        let (first, last) = ((segment - 1) * c + 1, segment * c);
        scratch.copy_from_slice(checkpoint(segment - 1));
        trainer.steps(&mut scratch, first, last);
        if !task.reexecution_matches(&scratch, checkpoint(segment)) {
            return Err(BlockError::SegmentMismatch {
                segment,
                from: segment - 1,
                first,
                last,
            });
        }
    }
    scratch.copy_from_slice(checkpoint(m));
    let first = m * c + 1;
    trainer.steps(&mut scratch, first, f.steps);
    if !task.reexecution_matches(&scratch, &body.params) {
        return Err(BlockError::TailMismatch {
            from: m,
            first,
            last: f.steps,
        });
    }
    let score = work::score_ppm(task, &body.params, task.validation());
    if !task.score_matches(score, f.score_ppm) {
        return Err(BlockError::ScoreMismatch {
            expected: score,
            found: f.score_ppm,
        });
    }
    // The header's score: the one every node agrees on, and the one the
    // window's later gates read.
    let score = f.score_ppm;
    let gate_score = training.job.gate_score();
    if !passes_gate(params, score, gate_score) {
        return Err(BlockError::ScoreBelowGate {
            score,
            threshold_ppm: params.validation_threshold_ppm,
            gate_score,
        });
    }
    Ok(())
}

/// Every rule of §7: the header checks, then the body checks.
pub fn validate_block(
    params: &ChainParams,
    ctx: &ParentContext,
    training: &Training,
    block: Block,
    now_ms: u64,
    work_owner: &dyn Fn(&Hash32) -> Option<Hash32>,
) -> Result<CheckedBlock, BlockError> {
    let header = check_header(params, ctx, training, &block.header, now_ms, work_owner)?;
    check_body(params, training, block, header)
}
