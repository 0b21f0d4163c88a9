//! The useful work: deterministic training steps, the lottery ticket bound
//! to each step, checkpoints and the spot-check challenges (PROTOCOL §4–§6).
//!
//! Everything here is pure and deterministic. A run is identified by the
//! parent block, the miner key and a lane; step `i` draws its batch from
//! `BLAKE3("pouw/batch" ‖ parent ‖ miner ‖ lane ‖ i)`, trains, and yields
//! the ticket `SHA-256("pouw/work" ‖ parent ‖ miner ‖ lane ‖ i ‖
//! model_hash(W_i) ‖ ckpt_root_i)`. The derivations are in schema/hashes.md.

pub mod merkle;
pub mod miner;

use crate::chain::{tagged_sha256, Hash32};
use crate::consensus::params::{grid_step, TaskParams};
use crate::dataset::Prepared;
use crate::model::{linear, mlp};
use crate::tx::{Head, JobSpec};
use primitive_types::{U256, U512};
use sha2::{Digest, Sha256};

/// A task ready to train: the prepared data and the task's constants.
#[derive(Clone, Debug)]
pub struct Task {
    pub data: Prepared,
    pub batch_size: usize,
    /// `lr0`: the learning rate of a job's first block.
    pub learning_rate: f64,
    /// `h`: block `n` of a job trains at `lr0 · h / (h + n)`.
    pub lr_half_life_blocks: u64,
    pub checkpoint_interval: u64,
    pub spot_checks: u32,
    pub validation_rows: u32,
    pub max_steps_per_block: u64,
    /// How re-executed parameters are compared with claimed ones.
    pub reexecution: Reexecution,
    /// The holdout rows every score is computed on ([`validation_set`]).
    validation: Vec<u32>,
    /// The model trained on the features.
    pub head: Head,
    /// What one step costs ([`step_cost`]).
    pub cost: u64,
}

/// The fixed cost of one training step in the units of [`step_cost`]:
/// the batch draw, the ticket's hash and the loop around them.
pub const STEP_OVERHEAD_COST: u64 = 1024;

/// What one training step costs, in work units: `params · (batch + 2) +
/// 1024` (schema/jobs.md). The forward and backward passes touch every
/// parameter once per batch row, the model hash reads each parameter's 8
/// bytes, and the rest does not depend on the model.
pub fn step_cost(head: Head, features: usize, batch_size: usize) -> u64 {
    let params = head.param_count(features) as u64;
    params
        .saturating_mul(batch_size as u64 + 2)
        .saturating_add(STEP_OVERHEAD_COST)
}

/// How a validator compares the parameters it re-executes with the ones a
/// block claims.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Reexecution {
    /// Bit for bit: the training inputs are the same on every machine.
    Exact,
    /// On a grid, within a tolerance: the inputs come from ONNX Runtime,
    /// whose output may differ in the last bits between machines.
    Gridded(Grid),
}

/// The grid of an `onnx_linear` task (schema/consensus.md).
///
/// Checkpoints and final parameters are rounded to the nearest multiple of
/// `2^-bits` (ties to even), and training continues from the rounded
/// checkpoint. A claimed value is accepted when it is on the grid and
/// within half a step plus `tolerance` of the re-executed, unrounded value.
/// With `tolerance` under half a step, at most two grid points qualify, and
/// two only when the re-executed value is within `tolerance` of a midpoint:
/// the slack buys a miner almost no extra tickets.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Grid {
    /// `2^bits`.
    scale: f64,
    /// `2^-bits / 2 + tolerance`.
    reach: f64,
    score_tolerance_ppm: u32,
}

impl Grid {
    pub fn new(bits: u32, tolerance: f64, score_tolerance_ppm: u32) -> Grid {
        let step = grid_step(bits);
        Grid {
            scale: 1.0 / step,
            reach: step / 2.0 + tolerance,
            score_tolerance_ppm,
        }
    }

    /// The nearest grid point, ties to even. Exact: scaling by a power of
    /// two and rounding to an integer never round. Infinite when `value`
    /// is too large for the grid, so that the block is refused.
    #[inline]
    pub fn snap(&self, value: f64) -> f64 {
        (value * self.scale).round_ties_even() / self.scale
    }

    pub fn is_on_grid(&self, value: f64) -> bool {
        value.is_finite() && self.snap(value).to_bits() == value.to_bits()
    }

    /// Whether a claimed value stands for the re-executed one.
    pub fn accepts(&self, claimed: f64, reexecuted: f64) -> bool {
        self.is_on_grid(claimed) && (claimed - reexecuted).abs() <= self.reach
    }
}

impl Task {
    pub fn new(params: &TaskParams, data: Prepared) -> Task {
        let batch_size = params.batch_size as usize;
        Task {
            batch_size,
            learning_rate: params.learning_rate,
            lr_half_life_blocks: params.lr_half_life_blocks,
            checkpoint_interval: params.checkpoint_interval,
            spot_checks: params.spot_checks,
            validation_rows: params.validation_rows,
            max_steps_per_block: params.max_steps_per_block,
            reexecution: match params.model.onnx() {
                None => Reexecution::Exact,
                Some(onnx) => Reexecution::Gridded(Grid::new(
                    onnx.param_grid_bits,
                    onnx.param_tolerance,
                    onnx.score_tolerance_ppm,
                )),
            },
            validation: validation_set(data.holdout_rows(), params.validation_rows),
            head: Head::Linear,
            cost: step_cost(Head::Linear, data.features(), batch_size),
            data,
        }
    }

    /// The task of a training job: its data, head and constants, with the
    /// chain's spot checks and validation bound, and the checkpoint
    /// interval and step bound of the chain's task scaled by
    /// `reference_cost / cost` (at least 1), so that a block takes the same
    /// time and the same verification share on any job.
    pub fn for_job(
        spec: &JobSpec,
        data: Prepared,
        chain: &TaskParams,
        reference_cost: u64,
    ) -> Task {
        let batch_size = spec.batch_size as usize;
        let cost = step_cost(spec.head, data.features(), batch_size);
        let scaled = |value: u64| {
            (u128::from(value) * u128::from(reference_cost) / u128::from(cost.max(1)))
                .clamp(1, u128::from(u64::MAX)) as u64
        };
        Task {
            batch_size,
            learning_rate: spec.learning_rate,
            lr_half_life_blocks: spec.lr_half_life_blocks,
            checkpoint_interval: scaled(chain.checkpoint_interval),
            spot_checks: chain.spot_checks,
            validation_rows: chain.validation_rows,
            max_steps_per_block: scaled(chain.max_steps_per_block),
            // A job's encoder runs in ONNX Runtime, like an `onnx_linear`
            // chain's: its head trains on the grid of schema/jobs.md.
            reexecution: match spec.encoder {
                None => Reexecution::Exact,
                Some(_) => Reexecution::Gridded(Grid::new(
                    crate::tx::job::ENCODER_JOB_GRID_BITS,
                    crate::tx::job::ENCODER_JOB_PARAM_TOLERANCE,
                    crate::tx::job::ENCODER_JOB_SCORE_TOLERANCE_PPM,
                )),
            },
            validation: validation_set(data.holdout_rows(), chain.validation_rows),
            head: spec.head,
            cost,
            data,
        }
    }

    /// The initial model of a job whose id is `job`: zeros for `linear`,
    /// the hash-derived weights of schema/consensus.md for `mlp`.
    pub fn initial_params(&self, job: &Hash32) -> Vec<f64> {
        let mut params = match self.head {
            Head::Linear => crate::model::initial_params(self.data.features()),
            Head::Mlp { hidden } => {
                crate::model::mlp::initial_params(self.data.features(), hidden as usize, job)
            }
        };
        // On the task's grid, if it has one, like every later model.
        self.snap(&mut params);
        params
    }

    /// The ticket target of this task under the chain's `target`:
    /// `floor(target · cost / reference_cost)` in exact integers, so that
    /// dearer steps need fewer of them, at most the largest target. The
    /// genesis task's is the chain's target itself.
    pub fn ticket_target(&self, target: &Hash32, reference_cost: u64) -> U256 {
        let target = U512::from_big_endian(&target.0);
        let scaled = target * U512::from(self.cost) / U512::from(reference_cost.max(1));
        U256::try_from(scaled).unwrap_or(U256::MAX)
    }

    /// The learning rate of block `n` of the job (n = 0, 1, …):
    /// `lr0 · h / (h + n)`, evaluated in that order, with `h + n` as an
    /// exact integer (saturating) converted to f64.
    pub fn learning_rate_at(&self, n: u64) -> f64 {
        let h = self.lr_half_life_blocks;
        self.learning_rate * h as f64 / h.saturating_add(n) as f64
    }

    /// The constants of every step of block `n` of the job.
    pub fn step_rate(&self, n: u64) -> linear::StepRate {
        linear::StepRate {
            learning_rate: self.learning_rate_at(n),
            grad_scale: 2.0 / self.batch_size as f64,
            clip_norm: crate::model::GRADIENT_CLIP_NORM,
        }
    }

    /// The holdout rows every score of this task is computed on.
    pub fn validation(&self) -> &[u32] {
        &self.validation
    }

    /// Number of model parameters.
    pub fn dim(&self) -> usize {
        self.head.param_count(self.data.features())
    }

    /// Round parameters to the task's grid, if it has one: what every
    /// checkpoint and final model is.
    #[inline]
    pub fn snap(&self, params: &mut [f64]) {
        if let Reexecution::Gridded(grid) = &self.reexecution {
            for p in params {
                *p = grid.snap(*p);
            }
        }
    }

    /// Whether claimed parameters can be a checkpoint or final model: on
    /// the grid, if the task has one.
    pub fn is_representable(&self, params: &[f64]) -> bool {
        match &self.reexecution {
            Reexecution::Exact => true,
            Reexecution::Gridded(grid) => params.iter().all(|&p| grid.is_on_grid(p)),
        }
    }

    /// Whether re-executed parameters (unrounded) match claimed ones.
    pub fn reexecution_matches(&self, reexecuted: &[f64], claimed: &[f64]) -> bool {
        if reexecuted.len() != claimed.len() {
            return false;
        }
        match &self.reexecution {
            Reexecution::Exact => reexecuted
                .iter()
                .zip(claimed)
                .all(|(r, c)| r.to_bits() == c.to_bits()),
            Reexecution::Gridded(grid) => reexecuted
                .iter()
                .zip(claimed)
                .all(|(&r, &c)| grid.accepts(c, r)),
        }
    }

    /// Whether a validator's score matches a header's.
    pub fn score_matches(&self, computed_ppm: u32, claimed_ppm: u32) -> bool {
        let slack = match &self.reexecution {
            Reexecution::Exact => 0,
            Reexecution::Gridded(grid) => grid.score_tolerance_ppm,
        };
        computed_ppm.abs_diff(claimed_ppm) <= slack
    }
}

const BATCH_TAG: &[u8] = b"pouw/batch";

/// The identity of one training run and the hashers derived from it.
#[derive(Clone)]
pub struct Run {
    /// BLAKE3 state after `"pouw/batch" ‖ parent ‖ miner ‖ lane`; each step
    /// clones it and adds `i`, so the prefix's first block is compressed
    /// once per run instead of once per step.
    batch_prefix: blake3::Hasher,
    /// SHA-256 state after `"pouw/work" ‖ parent ‖ miner ‖ lane`.
    work_prefix: Sha256,
}

impl Run {
    pub fn new(parent: &Hash32, miner: &Hash32, lane: u32) -> Run {
        let mut batch_prefix = blake3::Hasher::new();
        batch_prefix.update(BATCH_TAG);
        batch_prefix.update(&parent.0);
        batch_prefix.update(&miner.0);
        batch_prefix.update(&lane.to_le_bytes());
        let mut work_prefix = Sha256::new();
        work_prefix.update(b"pouw/work");
        work_prefix.update(parent.0);
        work_prefix.update(miner.0);
        work_prefix.update(lane.to_le_bytes());
        Run {
            batch_prefix,
            work_prefix,
        }
    }

    /// Fill `out` with the training-row indices of step `i`: consecutive
    /// little-endian u32 words of the BLAKE3 XOF, each modulo `rows`.
    /// `bytes` is scratch space of at least `4 · out.len()` bytes.
    pub fn batch_indices(&self, i: u64, rows: u32, out: &mut [u32], bytes: &mut [u8]) {
        self.draw_batch(i, RowModulus::new(rows), out, bytes);
    }

    #[inline]
    fn draw_batch(&self, i: u64, rows: RowModulus, out: &mut [u32], bytes: &mut [u8]) {
        let mut hasher = self.batch_prefix.clone();
        hasher.update(&i.to_le_bytes());
        let bytes = &mut bytes[..out.len() * 4];
        hasher.finalize_xof().fill(bytes);
        for (slot, word) in out.iter_mut().zip(bytes.chunks_exact(4)) {
            let value = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
            *slot = rows.reduce(value);
        }
    }

    /// The ticket of step `i`.
    pub fn work_hash(&self, i: u64, model_hash: &Hash32, ckpt_root: &Hash32) -> Hash32 {
        // One update of the whole suffix: the hasher's buffer is filled
        // once instead of three times.
        let mut suffix = [0u8; 8 + 32 + 32];
        suffix[..8].copy_from_slice(&i.to_le_bytes());
        suffix[8..40].copy_from_slice(&model_hash.0);
        suffix[40..].copy_from_slice(&ckpt_root.0);
        let mut h = self.work_prefix.clone();
        h.update(suffix);
        Hash32(h.finalize().into())
    }
}

/// `value % divisor` computed with one multiplication instead of a
/// division: `M = ⌈2^64 / divisor⌉`, `value % divisor = ((M · value mod
/// 2^64) · divisor) >> 64`, exact for every 32-bit value and divisor
/// (Lemire, Kaser and Kurz, "Faster remainder by direct computation",
/// 2019). The batch draw reduces `batch_size` words per step, and a
/// hardware division per word was a visible part of the step's cost.
#[derive(Clone, Copy, Debug)]
struct RowModulus {
    divisor: u32,
    magic: u64,
}

impl RowModulus {
    /// Panics when `divisor` is 0, as `%` would.
    fn new(divisor: u32) -> RowModulus {
        assert!(divisor > 0, "modulo zero rows");
        RowModulus {
            divisor,
            // ⌈2^64 / d⌉ = ⌊(2^64 − 1) / d⌋ + 1, which wraps to 0 for d = 1
            // and so gives the right remainder, 0.
            magic: (u64::MAX / u64::from(divisor)).wrapping_add(1),
        }
    }

    #[inline]
    fn reduce(self, value: u32) -> u32 {
        let low = self.magic.wrapping_mul(u64::from(value));
        ((u128::from(low) * u128::from(self.divisor)) >> 64) as u32
    }
}

/// Runs training steps of one run without allocating.
pub struct Trainer<'a> {
    task: &'a Task,
    run: Run,
    rows: RowModulus,
    indices: Vec<u32>,
    bytes: Vec<u8>,
    rate: linear::StepRate,
    scratch: HeadScratch,
}

/// The scratch space of the task's head.
enum HeadScratch {
    Linear(linear::StepScratch),
    Mlp(mlp::StepScratch),
}

impl<'a> Trainer<'a> {
    /// A trainer of `run` for block `job_block` of the task's job, which
    /// sets the learning rate ([`Task::learning_rate_at`]).
    pub fn new(task: &'a Task, run: Run, job_block: u64) -> Trainer<'a> {
        Trainer {
            task,
            run,
            rows: RowModulus::new(task.data.train_rows() as u32),
            indices: vec![0; task.batch_size],
            bytes: vec![0; task.batch_size * 4],
            rate: task.step_rate(job_block),
            scratch: match task.head {
                Head::Linear => HeadScratch::Linear(linear::StepScratch::new(
                    task.batch_size,
                    task.data.features(),
                )),
                Head::Mlp { hidden } => HeadScratch::Mlp(mlp::StepScratch::new(
                    task.data.features(),
                    hidden as usize,
                    task.batch_size,
                )),
            },
        }
    }

    pub fn run(&self) -> &Run {
        &self.run
    }

    /// Step `i`: `W_{i-1}` in `params` becomes `W_i`.
    #[inline]
    pub fn step(&mut self, params: &mut [f64], i: u64) {
        self.run
            .draw_batch(i, self.rows, &mut self.indices, &mut self.bytes);
        match (&mut self.scratch, self.task.head) {
            (HeadScratch::Linear(scratch), _) => {
                linear::sgd_step(params, &self.task.data, &self.indices, self.rate, scratch)
            }
            (HeadScratch::Mlp(scratch), Head::Mlp { hidden }) => mlp::sgd_step(
                params,
                &self.task.data,
                hidden as usize,
                &self.indices,
                self.rate.learning_rate,
                self.rate.clip_norm,
                scratch,
            ),
            (HeadScratch::Mlp(_), Head::Linear) => unreachable!("the scratch follows the head"),
        }
    }

    /// Steps `first ..= last`.
    pub fn steps(&mut self, params: &mut [f64], first: u64, last: u64) {
        for i in first..=last {
            self.step(params, i);
        }
    }
}

/// Segment `s` covers steps `(s-1)·c + 1 ..= s·c`; challenge `t` picks
/// `s_t = 1 + (u64_le(SHA-256("pouw/challenge" ‖ work_hash ‖ u32_le t)[0..8]) mod m)`.
/// Returns the distinct challenged segments, ascending; none when `m = 0`.
pub fn challenged_segments(work_hash: &Hash32, segments: u64, spot_checks: u32) -> Vec<u64> {
    if segments == 0 {
        return Vec::new();
    }
    let mut chosen: Vec<u64> = (0..spot_checks)
        .map(|t| {
            let h = tagged_sha256(b"pouw/challenge", &[&work_hash.0, &t.to_le_bytes()]);
            1 + h.low_u64() % segments
        })
        .collect();
    chosen.sort_unstable();
    chosen.dedup();
    chosen
}

/// The checkpoint indices a body must open, ascending and distinct:
/// `s-1` and `s` for each challenged `s`, and `m` for the tail; never 0.
pub fn required_openings(
    steps: u64,
    checkpoint_interval: u64,
    spot_checks: u32,
    work_hash: &Hash32,
) -> Vec<u64> {
    let m = steps / checkpoint_interval;
    let mut indices: Vec<u64> = challenged_segments(work_hash, m, spot_checks)
        .into_iter()
        .flat_map(|s| [s - 1, s])
        .chain(std::iter::once(m))
        .filter(|&j| j > 0)
        .collect();
    indices.sort_unstable();
    indices.dedup();
    indices
}

/// The fixed validation set of a task with `holdout` holdout rows: every
/// holdout row when there are at most `limit`, else `limit` rows spread
/// evenly, row `floor(i · holdout / limit)` for `i = 0 … limit − 1`
/// (integer arithmetic). The same model always gets the same score.
pub fn validation_set(holdout: usize, limit: u32) -> Vec<u32> {
    let (holdout, limit) = (holdout as u64, u64::from(limit));
    if holdout <= limit {
        return (0..holdout as u32).collect();
    }
    (0..limit).map(|i| (i * holdout / limit) as u32).collect()
}

/// Score of `params` on the validation rows, in ppm.
pub fn score_ppm(task: &Task, params: &[f64], rows: &[u32]) -> u32 {
    match task.head {
        Head::Linear => linear::score_ppm(params, &task.data, rows),
        Head::Mlp { hidden } => mlp::score_ppm(params, hidden as usize, &task.data, rows),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consensus::params::ChainParams;
    use crate::dataset::{CsvDataset, DEFAULT_MAX_CATEGORIES};
    use crate::model::{initial_params, model_hash};

    /// The devnet task, built from the files the repository ships.
    fn devnet_task() -> Task {
        let params = ChainParams::from_json(include_str!("../../config/devnet.json"))
            .expect("devnet chain file parses");
        let csv = CsvDataset::from_bytes("diabetes.csv", include_bytes!("../../data/diabetes.csv"))
            .expect("dataset parses");
        let task = &params.task;
        let data = Prepared::new(
            &csv,
            &task.dataset.target,
            task.dataset.features.as_deref(),
            task.holdout_every,
            DEFAULT_MAX_CATEGORIES,
        )
        .expect("dataset prepares");
        Task::new(task, data)
    }

    fn fixed_run() -> Run {
        let parent = tagged_sha256(b"test/parent", &[]);
        let miner = tagged_sha256(b"test/miner", &[]);
        Run::new(&parent, &miner, 7)
    }

    /// The miner's per-step work (train, hash, checkpoint, ticket) for
    /// `steps` steps from zero parameters, with every ticket folded into
    /// one digest.
    fn replay(task: &Task, steps: u64) -> (Vec<f64>, Hash32, Hash32) {
        let mut trainer = Trainer::new(task, fixed_run(), 0);
        let mut params = initial_params(task.data.features());
        let mut frontier = merkle::Frontier::default();
        let mut ckpt_root = frontier.root();
        let mut tickets = Sha256::new();
        for i in 1..=steps {
            trainer.step(&mut params, i);
            let hash = model_hash(&params);
            if i % task.checkpoint_interval == 0 {
                frontier.push(merkle::leaf_hash(&hash));
                ckpt_root = frontier.root();
            }
            tickets.update(trainer.run().work_hash(i, &hash, &ckpt_root).0);
        }
        (params, ckpt_root, Hash32(tickets.finalize().into()))
    }

    /// Known answers computed by the first implementation of the training
    /// step and the hashes: any change to the arithmetic's evaluation
    /// order, the batch draw or a hash input changes them, and is a
    /// consensus change.
    #[test]
    fn devnet_run_matches_known_answer() {
        let task = devnet_task();
        assert_eq!(task.data.train_rows(), 354);
        assert_eq!(task.dim(), 11);
        let (params, ckpt_root, tickets) = replay(&task, 2500);
        let bits: Vec<String> = params
            .iter()
            .map(|p| format!("{:016x}", p.to_bits()))
            .collect();
        assert_eq!(
            bits,
            [
                "bf8981b02474bfe2",
                "bfc592aabde56eb8",
                "3fd4aa1c13d883af",
                "3fcc8667a45b36e5",
                "bfc3cf0ba2a4744c",
                "bf63002b0bed257a",
                "bfbd5f7fcea0df11",
                "3fb4a76b5c977596",
                "3fd469f76489384a",
                "bf9621fb5a1cf9b0",
                "3f8a507babf64d72",
            ],
            "parameter bits"
        );
        assert_eq!(
            model_hash(&params).to_hex(),
            "e2ff191a72746345e7a8490418eda7a0d5ad550943c6c9e3ed47e7656919c168",
            "model hash"
        );
        assert_eq!(
            ckpt_root.to_hex(),
            "15414ceda9d3760ccf37d393381a39fefd6b32d95906397a594b81550f635fe2",
            "checkpoint root"
        );
        assert_eq!(
            tickets.to_hex(),
            "2fb136743941ad66a6afa18e5ae2a520bb04acbe148dd70a96c3d13e03efa80c",
            "tickets"
        );
    }

    /// `lr0 · h / (h + n)`: the first block trains at `lr0`, block `h` at
    /// half of it; the values are pinned to the bit.
    #[test]
    fn the_learning_rate_decays_as_the_schedule_says() {
        let mut task = devnet_task();
        task.learning_rate = 0.01;
        task.lr_half_life_blocks = 100;
        assert_eq!(task.learning_rate_at(0), 0.01);
        assert_eq!(task.learning_rate_at(100), 0.005);
        assert_eq!(task.learning_rate_at(300), 0.0025);
        // Python's `0.01 * 100.0 / 101.0` and `/ 107.0` give the same bits.
        assert_eq!(task.learning_rate_at(1).to_bits(), 0x3f8446f86562d9fb);
        assert_eq!(task.learning_rate_at(7).to_bits(), 0x3f8323e34a2b10bf);
        // Decreasing, and never zero or negative, even at the end of u64.
        let mut last = f64::INFINITY;
        for n in [0, 1, 2, 99, 100, 10_000, u64::MAX / 2, u64::MAX] {
            let lr = task.learning_rate_at(n);
            assert!(lr > 0.0 && lr <= last, "block {n}: {lr}");
            last = lr;
        }
        assert_eq!(task.step_rate(100).learning_rate, 0.005);
        assert_eq!(task.step_rate(0).grad_scale, 2.0 / 32.0);
        assert_eq!(
            task.step_rate(0).clip_norm,
            crate::model::GRADIENT_CLIP_NORM
        );
    }

    /// Every holdout row up to the limit; past it, rows spread evenly.
    #[test]
    fn the_validation_set_is_fixed_and_bounded() {
        assert_eq!(validation_set(5, 5), vec![0, 1, 2, 3, 4]);
        assert_eq!(validation_set(5, 6), vec![0, 1, 2, 3, 4]);
        assert_eq!(validation_set(6, 5), vec![0, 1, 2, 3, 4]);
        assert_eq!(validation_set(10, 4), vec![0, 2, 5, 7]);
        assert_eq!(validation_set(0, 4), Vec::<u32>::new());
        let task = devnet_task();
        assert_eq!(task.data.holdout_rows(), 88);
        assert_eq!(task.validation(), (0..88).collect::<Vec<u32>>());
    }

    #[test]
    fn batch_draw_matches_known_answer() {
        let run = fixed_run();
        let mut indices = [0u32; 8];
        let mut bytes = [0u8; 32];
        run.batch_indices(1, 354, &mut indices, &mut bytes);
        assert_eq!(indices, [82, 154, 68, 104, 21, 59, 60, 261]);
    }

    /// The whole mining loop, stopped at its first winning ticket.
    #[test]
    fn mining_an_easy_target_matches_known_answer() {
        let task = devnet_task();
        let parent = tagged_sha256(b"test/parent", &[]);
        let zero = initial_params(task.data.features());
        let job = miner::Job {
            task: &task,
            parent,
            parent_model: &zero,
            miner: tagged_sha256(b"test/miner", &[]),
            lane: 7,
            // One ticket in about 3000 wins.
            target: primitive_types::U256::MAX / 3000,
            job_block: 0,
            accept_score: &|_| true,
        };
        let miner::Mined::Found(solution) = miner::mine(&job, |_| true) else {
            panic!("an easy target is found");
        };
        assert_eq!(solution.steps, 2983);
        assert_eq!(
            solution.work_hash.to_hex(),
            "001513c800bac20e8f31aa21ad5931ade817e0424c4bdcfb10646fe3b9fe2d59"
        );
        assert_eq!(
            solution.ckpt_root.to_hex(),
            "15414ceda9d3760ccf37d393381a39fefd6b32d95906397a594b81550f635fe2"
        );
        assert_eq!(solution.score_ppm, 442_737);
        assert_eq!(solution.checkpoints.len() as u64, solution.steps / 1000);
    }

    #[test]
    fn the_grid_rounds_exactly_and_accepts_only_the_nearest_points() {
        // Step 2^-4 = 0.0625, tolerance 0.01: reach 0.04125.
        let grid = Grid::new(4, 0.01, 0);
        assert_eq!(grid.snap(0.03), 0.0);
        assert_eq!(grid.snap(0.04), 0.0625);
        // Ties go to the even multiple.
        assert_eq!(grid.snap(0.03125), 0.0);
        assert_eq!(grid.snap(0.09375), 0.125);
        assert_eq!(grid.snap(-0.09375), -0.125);
        // Snapping is idempotent and leaves grid points alone.
        for x in [1.0e-9, 0.7, -3.3, 1234.5678] {
            let once = grid.snap(x);
            assert_eq!(grid.snap(once).to_bits(), once.to_bits());
            assert!(grid.is_on_grid(once));
        }
        assert!(!grid.is_on_grid(0.07));
        assert!(!grid.is_on_grid(f64::NAN));
        assert!(!grid.is_on_grid(f64::INFINITY));
        // Far outside the grid's range the value becomes infinite.
        assert!(Grid::new(40, 0.0, 0).snap(f64::MAX).is_infinite());
        // The nearest point is accepted, and its neighbour only when the
        // re-executed value is within the tolerance of the midpoint.
        assert!(grid.accepts(0.0625, 0.05));
        assert!(!grid.accepts(0.125, 0.05));
        assert!(grid.accepts(0.0625, 0.03));
        assert!(grid.accepts(0.0, 0.03));
        assert!(!grid.accepts(0.0625, 0.02));
        assert!(!grid.accepts(0.07, 0.07));
    }

    /// The devnet task compared on a grid of 2^-4 with a tolerance of 0.01
    /// and a score slack of 20 ppm.
    fn gridded_task() -> Task {
        let mut task = devnet_task();
        task.reexecution = Reexecution::Gridded(Grid::new(4, 0.01, 20));
        task
    }

    #[test]
    fn an_exact_task_compares_bits() {
        let task = devnet_task();
        assert_eq!(task.dim(), task.data.features() + 1);
        let mut params = vec![0.07; task.dim()];
        assert!(task.is_representable(&params));
        task.snap(&mut params);
        assert!(
            params.iter().all(|p| *p == 0.07),
            "an exact task never rounds"
        );
        let same = params.clone();
        assert!(task.reexecution_matches(&params, &same));
        let mut last_bit = same.clone();
        last_bit[3] = f64::from_bits(last_bit[3].to_bits() + 1);
        assert!(!task.reexecution_matches(&params, &last_bit));
        let mut signed_zero = vec![0.0; task.dim()];
        let zero = signed_zero.clone();
        signed_zero[0] = -0.0;
        assert!(!task.reexecution_matches(&zero, &signed_zero));
        assert!(!task.reexecution_matches(&params, &same[1..]));
        assert!(task.score_matches(5, 5));
        assert!(!task.score_matches(5, 6));
        assert!(!task.score_matches(6, 5));
    }

    #[test]
    fn a_gridded_task_compares_on_its_grid_within_the_tolerance() {
        let task = gridded_task();
        let mut params = vec![0.07; task.dim()];
        assert!(!task.is_representable(&params));
        task.snap(&mut params);
        assert!(params.iter().all(|p| *p == 0.0625));
        assert!(task.is_representable(&params));
        let mut one_off = params.clone();
        one_off[2] = 0.07;
        assert!(!task.is_representable(&one_off));
        // Re-executed values near the claimed grid points match …
        let reexecuted = vec![0.05; task.dim()];
        assert!(task.reexecution_matches(&reexecuted, &params));
        // … but not when one claimed value is the wrong grid point.
        let mut wrong = params.clone();
        wrong[5] = 0.125;
        assert!(!task.reexecution_matches(&reexecuted, &wrong));
        assert!(!task.reexecution_matches(&reexecuted, &params[1..]));
        // The score may differ by the slack, 20 ppm, either way.
        assert!(task.score_matches(100, 120));
        assert!(task.score_matches(120, 100));
        assert!(!task.score_matches(100, 121));
        assert!(!task.score_matches(121, 100));
    }

    /// A devnet job on zero parameters with `target`, gate open.
    fn job_with<'a>(
        task: &'a Task,
        zero: &'a [f64],
        target: primitive_types::U256,
    ) -> miner::Job<'a> {
        miner::Job {
            task,
            parent: tagged_sha256(b"test/parent", &[]),
            parent_model: zero,
            miner: tagged_sha256(b"test/miner", &[]),
            lane: 7,
            target,
            job_block: 0,
            accept_score: &|_| true,
        }
    }

    /// The target is inclusive for the miner as for the validator: a ticket
    /// equal to it wins.
    #[test]
    fn a_ticket_equal_to_the_target_wins_and_one_above_does_not() {
        let task = devnet_task();
        let zero = initial_params(task.data.features());
        let first = |target| match miner::mine(&job_with(&task, &zero, target), |i| {
            i < miner::POLL_STEPS
        }) {
            miner::Mined::Found(solution) => Some(solution.steps),
            _ => None,
        };
        let miner::Mined::Found(any) =
            miner::mine(&job_with(&task, &zero, primitive_types::U256::MAX), |_| {
                true
            })
        else {
            panic!("every ticket wins the largest target");
        };
        assert_eq!(any.steps, 1);
        let ticket = primitive_types::U256::from_big_endian(&any.work_hash.0);
        assert_eq!(first(ticket), Some(1));
        assert_ne!(
            first(ticket - 1),
            Some(1),
            "one under the ticket: step 1 loses"
        );
    }

    /// The miner asks whether to go on every POLL_STEPS steps, and stops
    /// with the steps it finished.
    #[test]
    fn the_miner_stops_when_asked_at_its_poll() {
        let task = devnet_task();
        let zero = initial_params(task.data.features());
        let job = job_with(&task, &zero, primitive_types::U256::zero());
        let mut asked = Vec::new();
        let mined = miner::mine(&job, |done| {
            assert_eq!(done % miner::POLL_STEPS, 0, "asked after {done} steps");
            asked.push(done);
            done < 2 * miner::POLL_STEPS
        });
        assert!(
            matches!(mined, miner::Mined::Stopped(n) if n == 2 * miner::POLL_STEPS - 1),
            "{mined:?}"
        );
        assert_eq!(asked, vec![miner::POLL_STEPS, 2 * miner::POLL_STEPS]);
    }

    /// On a gridded task a run that wins at a checkpoint step ends on the
    /// checkpoint itself: the final model is the rounded checkpoint.
    #[test]
    fn a_gridded_run_that_wins_at_a_checkpoint_ends_on_it() {
        let task = gridded_task();
        let zero = initial_params(task.data.features());
        let calls = std::cell::Cell::new(0u64);
        let c = task.checkpoint_interval;
        let at_checkpoint = |_| {
            calls.set(calls.get() + 1);
            calls.get() == c
        };
        let mut job = job_with(&task, &zero, primitive_types::U256::MAX);
        job.accept_score = &at_checkpoint;
        let miner::Mined::Found(solution) = miner::mine(&job, |_| true) else {
            panic!("every ticket wins");
        };
        assert_eq!(solution.steps, c);
        assert_eq!(solution.checkpoints.len(), 1);
        assert_eq!(solution.params, solution.checkpoints[0]);
        assert_eq!(model_hash(&solution.params), solution.model_hash);
        assert!(task.is_representable(&solution.params));
    }

    #[test]
    fn row_modulus_is_exact() {
        let values = [
            0u32,
            1,
            2,
            353,
            354,
            355,
            65_535,
            1 << 31,
            u32::MAX - 1,
            u32::MAX,
        ];
        let divisors = [
            1u32,
            2,
            3,
            7,
            353,
            354,
            1 << 16,
            (1 << 31) + 1,
            u32::MAX - 1,
            u32::MAX,
        ];
        for &d in &divisors {
            let m = RowModulus::new(d);
            for &v in &values {
                assert_eq!(m.reduce(v), v % d, "{v} mod {d}");
            }
            // A pseudo-random sweep; the batch draw's words are uniform.
            let mut v = 0x9e37_79b9u32;
            for _ in 0..10_000 {
                v = v.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                assert_eq!(m.reduce(v), v % d, "{v} mod {d}");
            }
        }
    }

    /// `model_hash` is SHA-256 of the tag and the postcard encoding, for
    /// lengths whose varint prefix takes one, two and three bytes.
    #[test]
    fn model_hash_is_tagged_postcard() {
        for len in [
            0usize, 1, 11, 127, 128, 300, 511, 512, 513, 1025, 16_383, 16_384,
        ] {
            let params: Vec<f64> = (0..len).map(|i| i as f64 * -0.37 + 1e-300).collect();
            let expected =
                tagged_sha256(b"pouw/model", &[&crate::chain::encoding::encode(&params)]);
            assert_eq!(model_hash(&params), expected, "length {len}");
        }
    }
}
