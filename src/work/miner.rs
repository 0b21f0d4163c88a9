//! Mining: train step after step until a ticket wins and the model passes
//! the quality gate, then assemble the body with its openings.
//!
//! Pure: the caller decides when to stop through `keep_going`, which is
//! asked every [`POLL_STEPS`] steps.

use super::{merkle, Reexecution, Run, Task, Trainer};
use crate::chain::{Block, Body, CheckpointOpening, Hash32, Header, HeaderFields, HEADER_VERSION};
use crate::model::model_hash;
use crate::tx::{self, Tx};
use ed25519_dalek::{Signer, SigningKey};
use primitive_types::U256;

/// How often the miner asks whether it should keep going.
pub const POLL_STEPS: u64 = 4096;

/// What a miner needs to know about the block it builds on.
pub struct Job<'a> {
    pub task: &'a Task,
    pub parent: Hash32,
    pub parent_model: &'a [f64],
    pub miner: Hash32,
    pub lane: u32,
    pub target: U256,
    /// The block's number within its job: it sets the learning rate.
    pub job_block: u64,
    /// The quality gate: whether a score is high enough for this parent.
    pub accept_score: &'a dyn Fn(u32) -> bool,
}

/// A winning run.
#[derive(Clone, Debug)]
pub struct Solution {
    pub lane: u32,
    pub steps: u64,
    pub params: Vec<f64>,
    pub model_hash: Hash32,
    pub ckpt_root: Hash32,
    pub work_hash: Hash32,
    pub score_ppm: u32,
    /// `C_1 … C_m`.
    pub checkpoints: Vec<Vec<f64>>,
    /// Leaf hashes of `C_1 … C_m`.
    pub leaves: Vec<Hash32>,
}

/// Outcome of [`mine`].
#[derive(Debug)]
pub enum Mined {
    Found(Box<Solution>),
    /// `keep_going` said stop; the number of steps done.
    Stopped(u64),
    /// The run ended without a block, for this reason.
    Exhausted(Exhaustion),
}

impl Mined {
    /// Why the run ended without a block, if it did.
    pub fn exhaustion(&self) -> Option<Exhaustion> {
        match self {
            Mined::Exhausted(why) => Some(*why),
            _ => None,
        }
    }
}

/// Why a run ended without a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exhaustion {
    /// The parameters were not finite at checkpoint or ticket step `step`:
    /// training diverged, and no later step can give a valid block.
    NotFinite { step: u64 },
    /// `max_steps_per_block` steps drew `tickets` tickets under the
    /// target, and none of their models passed the quality gate; the best
    /// of their scores (0 when there was none).
    Gate { tickets: u64, best_score_ppm: u32 },
}

/// Mine one run. `keep_going(steps_done)` is polled every [`POLL_STEPS`].
pub fn mine(job: &Job, mut keep_going: impl FnMut(u64) -> bool) -> Mined {
    let task = job.task;
    let c = task.checkpoint_interval;
    let mut trainer = Trainer::new(
        task,
        Run::new(&job.parent, &job.miner, job.lane),
        job.job_block,
    );
    let mut params = job.parent_model.to_vec();
    let mut frontier = merkle::Frontier::default();
    let mut ckpt_root = frontier.root();
    let mut checkpoints = Vec::new();
    let mut leaves = Vec::new();
    // Big-endian bytes compare in the order of the numbers they encode.
    let target = job.target.to_big_endian();
    let gridded = task.reexecution != Reexecution::Exact;
    let mut snapped = params.clone();
    let (mut tickets, mut best_score_ppm) = (0u64, 0u32);
    for i in 1..=task.max_steps_per_block {
        if i % POLL_STEPS == 0 && !keep_going(i) {
            return Mined::Stopped(i - 1);
        }
        trainer.step(&mut params, i);
        let hash = if gridded {
            // Checkpoints are rounded and training goes on from them; the
            // ticket of any other step is that of its rounded model.
            if i % c == 0 {
                task.snap(&mut params);
                model_hash(&params)
            } else {
                snapped.copy_from_slice(&params);
                task.snap(&mut snapped);
                model_hash(&snapped)
            }
        } else {
            model_hash(&params)
        };
        if i % c == 0 {
            if params.iter().any(|p| !p.is_finite()) {
                // Diverged: no later step can give a valid block.
                return Mined::Exhausted(Exhaustion::NotFinite { step: i });
            }
            let leaf = merkle::leaf_hash(&hash);
            frontier.push(leaf);
            leaves.push(leaf);
            checkpoints.push(params.clone());
            ckpt_root = frontier.root();
        }
        let work_hash = trainer.run().work_hash(i, &hash, &ckpt_root);
        if work_hash.0 > target {
            continue;
        }
        let final_params = if gridded && i % c != 0 {
            &snapped
        } else {
            &params
        };
        if final_params.iter().any(|p| !p.is_finite()) {
            return Mined::Exhausted(Exhaustion::NotFinite { step: i });
        }
        let score_ppm = super::score_ppm(task, final_params, task.validation());
        if !(job.accept_score)(score_ppm) {
            tickets += 1;
            best_score_ppm = best_score_ppm.max(score_ppm);
            continue;
        }
        return Mined::Found(Box::new(Solution {
            lane: job.lane,
            steps: i,
            params: final_params.clone(),
            model_hash: hash,
            ckpt_root,
            work_hash,
            score_ppm,
            checkpoints,
            leaves,
        }));
    }
    Mined::Exhausted(Exhaustion::Gate {
        tickets,
        best_score_ppm,
    })
}

/// The body of a solution: `W_k`, every opening the challenges need, and
/// no transactions.
pub fn build_body(task: &Task, solution: &Solution) -> Body {
    let indices = super::required_openings(
        solution.steps,
        task.checkpoint_interval,
        task.spot_checks,
        &solution.work_hash,
    );
    let openings = indices
        .into_iter()
        .map(|j| {
            let at = (j - 1) as usize;
            CheckpointOpening {
                index: j,
                params: solution.checkpoints[at].clone(),
                proof: merkle::proof(&solution.leaves, at),
            }
        })
        .collect();
    Body {
        params: solution.params.clone(),
        openings,
        txs: Vec::new(),
    }
}

/// Where a block goes and when it was made: the header fields that are not
/// the solution's.
#[derive(Clone, Copy, Debug)]
pub struct Placement {
    pub parent: Hash32,
    pub height: u64,
    pub timestamp_ms: u64,
    pub target: Hash32,
    /// The job the block trains, and its number within it.
    pub job: Hash32,
    pub job_block: u64,
}

/// The block of `solution`: its body, and the header that commits to it,
/// signed by `key` (whose public key is the miner id the run used).
pub fn seal(task: &Task, solution: &Solution, at: &Placement, key: &SigningKey) -> Block {
    seal_with(task, solution, at, key, Vec::new())
}

/// [`seal`] with transactions. The ticket does not cover them, so they
/// can be chosen after the solution is found.
pub fn seal_with(
    task: &Task,
    solution: &Solution,
    at: &Placement,
    key: &SigningKey,
    txs: Vec<Tx>,
) -> Block {
    let mut body = build_body(task, solution);
    body.txs = txs;
    let fields = HeaderFields {
        version: HEADER_VERSION,
        height: at.height,
        parent: at.parent,
        timestamp_ms: at.timestamp_ms,
        target: at.target,
        miner: Hash32(key.verifying_key().to_bytes()),
        lane: solution.lane,
        steps: solution.steps,
        model_hash: solution.model_hash,
        ckpt_root: solution.ckpt_root,
        score_ppm: solution.score_ppm,
        job: at.job,
        job_block: at.job_block,
        body_hash: body.hash(),
        tx_root: tx::tx_root(&body.txs),
    };
    let signature = key.sign(&fields.signing_hash().0).to_bytes();
    Block {
        header: Header { fields, signature },
        body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consensus::params::ChainParams;
    use crate::dataset::{CsvDataset, Prepared, DEFAULT_MAX_CATEGORIES};

    /// regtest's task with `max_steps` steps a block.
    fn task(max_steps: u64) -> Task {
        let params = ChainParams::from_json(include_str!("../../config/regtest.json"))
            .expect("regtest chain file parses");
        let csv = CsvDataset::from_bytes("diabetes.csv", include_bytes!("../../data/diabetes.csv"))
            .expect("dataset parses");
        let data = Prepared::new(
            &csv,
            "progression",
            None,
            params.task.holdout_every,
            DEFAULT_MAX_CATEGORIES,
        )
        .expect("dataset prepares");
        let mut task = Task::new(&params.task, data);
        task.max_steps_per_block = max_steps;
        task
    }

    fn run(task: &Task, start: &[f64], target: U256, gate: &dyn Fn(u32) -> bool) -> Mined {
        mine(
            &Job {
                task,
                parent: Hash32([1; 32]),
                parent_model: start,
                miner: Hash32([2; 32]),
                lane: 0,
                target,
                job_block: 0,
                accept_score: gate,
            },
            |_| true,
        )
    }

    #[test]
    fn a_run_that_no_gate_lets_through_counts_its_tickets_and_their_best_score() {
        let task = task(64);
        let start = vec![0.0; task.dim()];
        // Every step is a ticket: 64 tickets, each refused by the gate.
        let scores = std::cell::RefCell::new(Vec::new());
        let refuse_all = |score: u32| {
            scores.borrow_mut().push(score);
            false
        };
        let Mined::Exhausted(Exhaustion::Gate {
            tickets,
            best_score_ppm,
        }) = run(&task, &start, U256::MAX, &refuse_all)
        else {
            panic!("not exhausted by the gate");
        };
        assert_eq!(tickets, 64);
        let scores = scores.into_inner();
        assert_eq!(scores.len(), 64);
        assert_eq!(best_score_ppm, *scores.iter().max().unwrap());
        assert!(best_score_ppm > 0);
        // No ticket under the target at all: none counted.
        assert_eq!(
            run(&task, &start, U256::zero(), &|_| true).exhaustion(),
            Some(Exhaustion::Gate {
                tickets: 0,
                best_score_ppm: 0
            })
        );
        // The gate that lets a score through ends the run with a block.
        assert!(matches!(
            run(&task, &start, U256::MAX, &|_| true),
            Mined::Found(_)
        ));
    }

    #[test]
    fn a_model_that_is_not_finite_ends_the_run_at_once() {
        let task = task(1000);
        let mut start = vec![0.0; task.dim()];
        start[0] = f64::NAN;
        assert_eq!(
            run(&task, &start, U256::MAX, &|_| true).exhaustion(),
            Some(Exhaustion::NotFinite { step: 1 })
        );
        // With no ticket under the target, the first checkpoint finds it.
        assert_eq!(
            run(&task, &start, U256::zero(), &|_| true).exhaustion(),
            Some(Exhaustion::NotFinite {
                step: task.checkpoint_interval
            })
        );
    }
}
