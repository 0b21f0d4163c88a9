//! A pure, in-memory chain for consensus tests.
//!
//! [`TestChain`] holds the chain parameters (config/regtest.json, or a
//! modified copy), the prepared task (data/diabetes.csv) and a
//! [`MemoryAncestry`]: every accepted block's [`AncestorInfo`] and final
//! model, keyed by block hash. It mines real blocks with
//! `work::miner::mine`, validates them with `consensus::validate_block`,
//! and forges runs whose checkpoints are deliberately wrong but whose
//! Merkle root, proofs, model hash and work hash are all consistent, so
//! that only the re-execution of a segment or the tail can catch them.
//!
//! Nothing here reads a clock: every function takes `now_ms`.

use ed25519_dalek::{Signer, SigningKey};
use pouwd::chain::{Block, Hash32, Header, HeaderFields, Limits};
use pouwd::consensus::params::ChainParams;
use pouwd::consensus::target::to_u256;
use pouwd::consensus::{
    passes_gate, validate_block, AncestorInfo, Ancestry, BlockError, CheckedBlock, ParentContext,
};
use pouwd::consensus::{JobContext, Training};
use pouwd::dataset::{CsvDataset, Prepared, DEFAULT_MAX_CATEGORIES};
use pouwd::ledger::GENESIS_JOB;
use pouwd::model::{initial_params, model_hash};
use pouwd::tx::{tx_root, Tx, TxFields, TxKind, TX_VERSION};
use pouwd::work::miner::{self, Job, Mined, Solution};
use pouwd::work::{self, merkle, Run, Task, Trainer};
use std::collections::HashMap;

/// The regtest chain description.
pub const REGTEST_JSON: &str = include_str!("../../config/regtest.json");
/// The task's dataset.
pub const DIABETES_CSV: &[u8] = include_bytes!("../../data/diabetes.csv");

/// The regtest chain parameters, as shipped.
pub fn regtest_params() -> ChainParams {
    ChainParams::from_json(REGTEST_JSON).expect("config/regtest.json is a valid chain")
}

/// Regtest with a target every ticket meets, so that any run "wins" and a
/// test can choose the number of steps and the checkpoints freely.
pub fn loose_params() -> ChainParams {
    let mut params = regtest_params();
    params.network = "regtest-loose".into();
    params.initial_target = max_target();
    params
}

/// The largest target: every work hash is at or below it.
pub fn max_target() -> Hash32 {
    Hash32([0xff; 32])
}

/// The prepared task of `params` on data/diabetes.csv.
pub fn load_task(params: &ChainParams) -> Task {
    let dataset = &params.task.dataset;
    let csv = CsvDataset::from_bytes(&dataset.file, DIABETES_CSV).expect("diabetes.csv parses");
    let prepared = Prepared::new(
        &csv,
        &dataset.target,
        dataset.features.as_deref(),
        params.task.holdout_every,
        DEFAULT_MAX_CATEGORIES,
    )
    .expect("diabetes.csv fits the task");
    Task::new(&params.task, prepared)
}

/// A deterministic miner key.
pub fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

/// The header's `miner` field for `key`.
pub fn miner_id(key: &SigningKey) -> Hash32 {
    Hash32(key.verifying_key().to_bytes())
}

/// Sign header fields with `key`.
pub fn sign(fields: HeaderFields, key: &SigningKey) -> Header {
    let signature = key.sign(&fields.signing_hash().0).to_bytes();
    Header { fields, signature }
}

/// Re-sign a block's header after its fields were tampered with.
pub fn resign(block: &mut Block, key: &SigningKey) {
    block.header = sign(block.header.fields.clone(), key);
}

/// Recommit the header to the (tampered) body and re-sign it.
pub fn recommit_body(block: &mut Block, key: &SigningKey) {
    block.header.fields.body_hash = block.body.hash();
    resign(block, key);
}

/// Give a block other transactions: recommit the header's body hash and
/// transaction root and re-sign it. The ticket does not cover them, so the
/// block stays exactly as valid as its transactions.
pub fn set_txs(block: &mut Block, txs: Vec<Tx>, key: &SigningKey) {
    block.body.txs = txs;
    block.header.fields.tx_root = tx_root(&block.body.txs);
    recommit_body(block, key);
}

/// A transfer signed by `from` on the chain with genesis `chain`.
pub fn transfer(
    chain: Hash32,
    from: &SigningKey,
    nonce: u64,
    to: Hash32,
    amount: u64,
    fee: u64,
) -> Tx {
    TxFields {
        version: TX_VERSION,
        chain,
        from: miner_id(from),
        nonce,
        fee,
        kind: TxKind::Transfer { to, amount },
    }
    .sign(from)
}

/// The timestamp a miner gives a child: `max(median time past + 1, now)`.
pub fn timestamp_for(ctx: &ParentContext, now_ms: u64) -> u64 {
    now_ms.max(ctx.median_time_past_ms + 1)
}

/// One block known to a [`MemoryAncestry`].
#[derive(Clone, Debug)]
pub struct StoredBlock {
    pub info: AncestorInfo,
    /// `None` for genesis.
    pub parent: Option<Hash32>,
    /// The block's final model `W_k` (all zeros for genesis).
    pub model: Vec<f64>,
}

/// An in-memory [`Ancestry`]: block hash → (info, parent, final model).
#[derive(Clone, Debug, Default)]
pub struct MemoryAncestry {
    blocks: HashMap<Hash32, StoredBlock>,
}

impl MemoryAncestry {
    pub fn insert(&mut self, parent: Option<Hash32>, info: AncestorInfo, model: Vec<f64>) {
        self.blocks.insert(
            info.hash,
            StoredBlock {
                info,
                parent,
                model,
            },
        );
    }

    pub fn get(&self, hash: &Hash32) -> Option<&StoredBlock> {
        self.blocks.get(hash)
    }

    pub fn len(&self) -> usize {
        self.blocks.len()
    }
}

impl Ancestry for MemoryAncestry {
    fn walk_back(&self, hash: &Hash32, count: usize) -> Option<Vec<AncestorInfo>> {
        let mut out = Vec::with_capacity(count.min(64));
        let mut at = self.blocks.get(hash)?;
        while out.len() < count {
            out.push(at.info.clone());
            match at.parent.and_then(|p| self.blocks.get(&p)) {
                Some(parent) => at = parent,
                None => break,
            }
        }
        Some(out)
    }
}

/// How many lanes [`TestChain::mine_child_with`] tries before it gives up.
pub const MAX_LANES: u32 = 256;

/// A miner's quality gate: whether it keeps a ticket with this score.
pub type ScoreFilter<'a> = &'a dyn Fn(u32) -> bool;
/// Whether a test keeps a solution or mines the next lane.
pub type SolutionFilter<'a> = &'a dyn Fn(&Solution) -> bool;
/// A change a forger makes to its final parameters.
pub type ParamsTamper<'a> = &'a dyn Fn(&mut [f64]);

/// How [`TestChain::mine_child_with`] mines.
#[derive(Clone, Copy, Default)]
pub struct MineOptions<'a> {
    /// First lane to try; later lanes are tried while `accept_solution` refuses.
    pub first_lane: u32,
    /// Target the miner searches under; `None`: the required target.
    pub search_target: Option<Hash32>,
    /// Target written into the header; `None`: the required target.
    pub header_target: Option<Hash32>,
    /// The miner's quality gate; `None`: the chain's gate for this parent.
    pub accept_score: Option<ScoreFilter<'a>>,
    /// Keep trying lanes until a solution passes this; `None`: any solution.
    pub accept_solution: Option<SolutionFilter<'a>>,
}

/// A deliberately dishonest run, for [`TestChain::forge_child`].
#[derive(Clone, Copy, Default)]
pub struct Forgery<'a> {
    pub lane: u32,
    /// Number of steps `k`; the run always has exactly this many.
    pub steps: u64,
    /// Segments whose steps the miner skips: it claims `C_s = C_{s-1}` and
    /// goes on training honestly from that claim.
    pub faked_segments: &'a [u64],
    /// Applied to `W_k` after the (honest) tail, before it is hashed.
    pub tamper_final: Option<ParamsTamper<'a>>,
    /// Applied to the claimed checkpoint `C_j` (training goes on from the
    /// claim), before it is hashed.
    pub tamper_checkpoint: Option<(u64, ParamsTamper<'a>)>,
}

/// A block with what was needed to build it.
#[derive(Clone, Debug)]
pub struct MinedBlock {
    pub block: Block,
    pub solution: Solution,
    pub ctx: ParentContext,
}

/// A chain in memory: parameters, task, known blocks and their work hashes.
pub struct TestChain {
    pub params: ChainParams,
    pub task: Task,
    pub ancestry: MemoryAncestry,
    /// Work hash → id of the block that carries it.
    pub work_owners: HashMap<Hash32, Hash32>,
    pub genesis: Hash32,
    /// The last accepted block.
    pub tip: Hash32,
}

impl TestChain {
    /// The regtest chain with only its genesis block.
    pub fn regtest() -> TestChain {
        TestChain::new(regtest_params())
    }

    /// A chain with modified parameters (they are re-checked first).
    pub fn new(params: ChainParams) -> TestChain {
        let task = load_task(&params);
        TestChain::with_task(params, task)
    }

    /// A chain whose task was prepared elsewhere (an `onnx_linear` task's
    /// encoded features, say).
    pub fn with_task(params: ChainParams, task: Task) -> TestChain {
        params.check().expect("test chain parameters are valid");
        let genesis = AncestorInfo::genesis(&params);
        let genesis_hash = genesis.hash;
        let mut ancestry = MemoryAncestry::default();
        ancestry.insert(None, genesis, initial_params(task.data.features()));
        TestChain {
            params,
            task,
            ancestry,
            work_owners: HashMap::new(),
            genesis: genesis_hash,
            tip: genesis_hash,
        }
    }

    /// The decoding limits of this chain.
    pub fn limits(&self) -> Limits {
        self.params.limits(self.task.data.features())
    }

    /// The context of a child of `parent`, which must be known.
    pub fn context(&self, parent: &Hash32) -> ParentContext {
        ParentContext::build(&self.params, &self.ancestry, parent).expect("parent is known")
    }

    /// Where a child of the context's parent stands in the genesis task,
    /// which every block of a test chain trains.
    pub fn job(&self, ctx: &ParentContext) -> JobContext {
        JobContext::build(&self.ancestry, &ctx.parent, &GENESIS_JOB)
            .expect("the ancestors are known")
    }

    /// What validating a child of the genesis task needs.
    pub fn training<'a>(&'a self, job: &'a JobContext, start_model: &'a [f64]) -> Training<'a> {
        Training {
            task: &self.task,
            job,
            reference_cost: self.task.cost,
            start_model,
        }
    }

    /// The final model of a known block.
    pub fn model(&self, hash: &Hash32) -> &[f64] {
        &self.ancestry.get(hash).expect("block is known").model
    }

    /// The validation rows every block of the task is scored on.
    pub fn validation_rows(&self) -> &[u32] {
        self.task.validation()
    }

    /// Mine an honest child of `parent` under the chain's rules, lane 0 first.
    pub fn mine_child(&self, parent: &Hash32, key: &SigningKey, now_ms: u64) -> MinedBlock {
        self.mine_child_with(parent, key, now_ms, &MineOptions::default())
    }

    /// Mine a child of `parent`: every step is honest, but the target the
    /// miner searches under, the header's target, the score it accepts and
    /// the solutions it keeps can be changed.
    pub fn mine_child_with(
        &self,
        parent: &Hash32,
        key: &SigningKey,
        now_ms: u64,
        options: &MineOptions,
    ) -> MinedBlock {
        let ctx = self.context(parent);
        let job_ctx = self.job(&ctx);
        let chain_gate = |score| passes_gate(&self.params, score, job_ctx.gate_score());
        let accept_score: &dyn Fn(u32) -> bool = options.accept_score.unwrap_or(&chain_gate);
        let search_target = options.search_target.unwrap_or(ctx.required_target);
        let parent_model = self.model(parent);
        for lane in options.first_lane..options.first_lane.saturating_add(MAX_LANES) {
            let job = Job {
                task: &self.task,
                parent: *parent,
                parent_model,
                miner: miner_id(key),
                lane,
                target: to_u256(&search_target),
                job_block: job_ctx.job_block,
                accept_score,
            };
            let solution = match miner::mine(&job, |_| true) {
                Mined::Found(solution) => *solution,
                Mined::Stopped(_) | Mined::Exhausted(_) => continue,
            };
            if options
                .accept_solution
                .is_some_and(|accept| !accept(&solution))
            {
                continue;
            }
            let target = options.header_target.unwrap_or(ctx.required_target);
            let block = self.seal(&ctx, &solution, key, timestamp_for(&ctx, now_ms), target);
            return MinedBlock {
                block,
                solution,
                ctx,
            };
        }
        panic!("no lane of {MAX_LANES} gave an acceptable solution");
    }

    /// Run `forgery.steps` steps on `parent` as `key`, faking what the
    /// forgery says, and commit to the result exactly as an honest miner
    /// would: checkpoint leaves, Merkle root, model hash, work hash, score.
    /// The ticket is not checked against any target.
    pub fn forge_solution(&self, parent: &Hash32, key: &SigningKey, forgery: &Forgery) -> Solution {
        let ctx = self.context(parent);
        let task = &self.task;
        let c = task.checkpoint_interval;
        let k = forgery.steps;
        let m = k / c;
        let run = Run::new(parent, &miner_id(key), forgery.lane);
        let mut trainer = Trainer::new(task, run.clone(), self.job(&ctx).job_block);
        let mut params = self.model(parent).to_vec();
        let mut checkpoints = Vec::new();
        for segment in 1..=m {
            if !forgery.faked_segments.contains(&segment) {
                trainer.steps(&mut params, (segment - 1) * c + 1, segment * c);
            }
            // A gridded task's checkpoints are rounded (a no-op otherwise).
            task.snap(&mut params);
            if let Some((_, tamper)) = forgery
                .tamper_checkpoint
                .filter(|(index, _)| *index == segment)
            {
                tamper(&mut params);
            }
            checkpoints.push(params.clone());
        }
        trainer.steps(&mut params, m * c + 1, k);
        task.snap(&mut params);
        if let Some(tamper) = forgery.tamper_final {
            tamper(&mut params);
        }
        let leaves: Vec<Hash32> = checkpoints
            .iter()
            .map(|checkpoint| merkle::leaf_hash(&model_hash(checkpoint)))
            .collect();
        let ckpt_root = merkle::root(&leaves);
        let final_hash = model_hash(&params);
        Solution {
            lane: forgery.lane,
            steps: k,
            model_hash: final_hash,
            ckpt_root,
            work_hash: run.work_hash(k, &final_hash, &ckpt_root),
            score_ppm: work::score_ppm(task, &params, self.validation_rows()),
            params,
            checkpoints,
            leaves,
        }
    }

    /// A block for a forged run, with the required target in its header.
    pub fn forge_child(
        &self,
        parent: &Hash32,
        key: &SigningKey,
        now_ms: u64,
        forgery: &Forgery,
    ) -> MinedBlock {
        let ctx = self.context(parent);
        let solution = self.forge_solution(parent, key, forgery);
        let block = self.seal(
            &ctx,
            &solution,
            key,
            timestamp_for(&ctx, now_ms),
            ctx.required_target,
        );
        MinedBlock {
            block,
            solution,
            ctx,
        }
    }

    /// The block of `solution` on `ctx`'s parent, signed by `key`.
    pub fn seal(
        &self,
        ctx: &ParentContext,
        solution: &Solution,
        key: &SigningKey,
        timestamp_ms: u64,
        target: Hash32,
    ) -> Block {
        let placement = miner::Placement {
            parent: ctx.parent.hash,
            height: ctx.child_height(),
            timestamp_ms,
            target,
            job: GENESIS_JOB,
            job_block: self.job(ctx).job_block,
        };
        miner::seal(&self.task, solution, &placement, key)
    }

    /// Validate a block against this chain at local time `now_ms`; the
    /// duplicate check knows the work hashes of the accepted blocks.
    pub fn validate(&self, block: Block, now_ms: u64) -> Result<CheckedBlock, BlockError> {
        let owners = &self.work_owners;
        self.validate_with_owner(block, now_ms, &|work_hash| owners.get(work_hash).copied())
    }

    /// Validate with an explicit duplicate-work lookup.
    pub fn validate_with_owner(
        &self,
        block: Block,
        now_ms: u64,
        work_owner: &dyn Fn(&Hash32) -> Option<Hash32>,
    ) -> Result<CheckedBlock, BlockError> {
        let parent = block.header.fields.parent;
        let ctx = self.context(&parent);
        let job = self.job(&ctx);
        validate_block(
            &self.params,
            &ctx,
            &self.training(&job, self.model(&parent)),
            block,
            now_ms,
            work_owner,
        )
    }

    /// Add a checked block to the chain and make it the tip.
    pub fn accept(&mut self, checked: &CheckedBlock) {
        let f = &checked.block().header.fields;
        let parent = &self.ancestry.get(&f.parent).expect("parent known").info;
        let info = AncestorInfo::of_header(checked.id(), f, parent);
        self.ancestry
            .insert(Some(f.parent), info, checked.block().body.params.clone());
        self.work_owners.insert(checked.work_hash(), checked.id());
        self.tip = checked.id();
    }

    /// Mine an honest child of the tip, validate it at `now_ms`, accept it.
    pub fn extend(&mut self, key: &SigningKey, now_ms: u64) -> CheckedBlock {
        let tip = self.tip;
        let mined = self.mine_child(&tip, key, now_ms);
        let checked = self
            .validate(mined.block, now_ms)
            .expect("an honestly mined block is valid");
        self.accept(&checked);
        checked
    }
}
