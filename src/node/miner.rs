//! Miner threads: each mines its own lanes on the current tip, restarts when
//! the tip moves, and submits what it finds through the same validation
//! path as any other block.

use super::chain::now_ms;
use super::chain::Chain;
use super::state::Shared;
use super::SubmitError;
use crate::chain::Hash32;
use crate::consensus::{passes_gate, JobContext, ParentContext};
use crate::store::Stored;
use crate::work::miner;
use crate::work::Task;
use anyhow::Result;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

/// What mining a child of the best chain's tip needs: the job the ledger
/// schedules, its task, where the child stands in it and its start model.
pub struct Work {
    pub parent: Hash32,
    pub ctx: ParentContext,
    pub job: Hash32,
    pub task: Arc<Task>,
    pub job_ctx: JobContext,
    pub start_model: Vec<f64>,
}

impl Work {
    /// The work on the best chain's tip, `tip`.
    pub fn on_tip(chain: &Chain, tip: &Hash32) -> Result<Work, SubmitError> {
        let ctx = chain.context(tip)?;
        let job = chain.store.scheduled_job()?;
        let task = chain.task_for(&job, tip)?;
        let job_ctx = chain.job_context(&ctx, &job)?;
        let start_model = chain.start_model(&job_ctx, &task)?;
        Ok(Work {
            parent: *tip,
            ctx,
            job,
            task,
            job_ctx,
            start_model,
        })
    }

    /// Mine lane `lane` as `key` until a ticket passes the gate (asking
    /// `keep_going` every [`miner::POLL_STEPS`] steps); `accept` may refuse
    /// scores beyond the gate.
    pub fn mine(
        &self,
        chain: &Chain,
        key_id: Hash32,
        lane: u32,
        keep_going: impl FnMut(u64) -> bool,
    ) -> miner::Mined {
        let params = chain.params();
        let accept = |score: u32| passes_gate(params, score, self.job_ctx.gate_score());
        let job = miner::Job {
            task: &self.task,
            parent: self.parent,
            parent_model: &self.start_model,
            miner: key_id,
            lane,
            target: self
                .task
                .ticket_target(&self.ctx.required_target, chain.task.cost),
            job_block: self.job_ctx.job_block,
            accept_score: &accept,
        };
        miner::mine(&job, keep_going)
    }

    /// The signed block of `solution`, stamped `now_ms` (or just after the
    /// median time past), with `txs`.
    pub fn seal(
        &self,
        solution: &miner::Solution,
        key: &ed25519_dalek::SigningKey,
        now_ms: u64,
        txs: Vec<crate::tx::Tx>,
    ) -> crate::chain::Block {
        let placement = miner::Placement {
            parent: self.parent,
            height: self.ctx.child_height(),
            timestamp_ms: now_ms.max(self.ctx.median_time_past_ms + 1),
            target: self.ctx.required_target,
            job: self.job,
            job_block: self.job_ctx.job_block,
        };
        miner::seal_with(&self.task, solution, &placement, key, txs)
    }
}

impl Work {
    /// What the miner says, once per job, when a run of this work ended
    /// without a block ([`exhaustion_message`]).
    pub fn exhaustion_message(&self, why: miner::Exhaustion, threshold_ppm: u32) -> String {
        exhaustion_message(&self.at(), why, threshold_ppm, self.job_ctx.gate_score())
    }

    /// What the miner says, once per job, when it mined a block whose
    /// model scores 0 ([`no_learning_message`]).
    pub fn no_learning_message(&self) -> String {
        no_learning_message(&self.at())
    }

    fn at(&self) -> Where {
        Where {
            job: self.job,
            job_block: self.job_ctx.job_block,
            learning_rate: self.task.learning_rate_at(self.job_ctx.job_block),
            max_steps: self.task.max_steps_per_block,
        }
    }
}

/// Which block of which job the miner works on, for its messages.
pub struct Where {
    pub job: Hash32,
    pub job_block: u64,
    pub learning_rate: f64,
    pub max_steps: u64,
}

/// What the miner says when a run ended without a block: the job, its
/// block, the reason and what it means. `start_score` is the start model's
/// score, which the gate holds a block to `threshold_ppm` of.
pub fn exhaustion_message(
    at: &Where,
    why: miner::Exhaustion,
    threshold_ppm: u32,
    start_score: u32,
) -> String {
    let (lr, steps) = (at.learning_rate, at.max_steps);
    let at_text = format!("miner: job {} block {}", job_name(&at.job), at.job_block);
    match why {
        miner::Exhaustion::NotFinite { step } => format!(
            "{at_text}: training diverged: the model is not finite after step {step} at \
             learning rate {lr}; no block can be mined from this start model; trying other lanes"
        ),
        miner::Exhaustion::Gate { tickets: 0, .. } => {
            format!("{at_text}: {steps} steps drew no ticket under the target; trying other lanes")
        }
        miner::Exhaustion::Gate {
            tickets,
            best_score_ppm,
        } => {
            // The least score that passes (consensus::passes_gate).
            let gate = (u64::from(threshold_ppm) * u64::from(start_score)).div_ceil(1_000_000);
            format!(
                "{at_text}: {tickets} ticket(s) in {steps} steps, none passes the quality gate: \
                 the best scores {best_score_ppm} ppm, the gate asks {gate} ppm \
                 ({threshold_ppm} ppm of the start model's {start_score} ppm); training at \
                 learning rate {lr} makes the model worse; trying other lanes"
            )
        }
    }
}

/// What the miner says when it mined a block whose model predicts no
/// better than the mean (R² ≤ 0, score 0): training does not learn, or
/// diverges.
pub fn no_learning_message(at: &Where) -> String {
    format!(
        "miner: job {} block {}: the trained model scores 0 (R² ≤ 0: no better than \
         predicting the mean) at learning rate {}: training diverges or does not learn; a \
         job ends by its patience",
        job_name(&at.job),
        at.job_block,
        at.learning_rate
    )
}

/// What the miner has said once per job (schema/jobs.md: a job that
/// cannot be mined, or whose training diverges, is said once).
#[derive(Default)]
pub struct Notices {
    said: std::collections::HashSet<(Hash32, Notice)>,
}

/// The kinds of [`Notices`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Notice {
    Exhausted,
    NoLearning,
}

impl Notices {
    /// True the first time `notice` is given for `job`.
    pub fn first(&mut self, job: Hash32, notice: Notice) -> bool {
        self.said.insert((job, notice))
    }
}

/// How logs name a job: `genesis` for the genesis task, else the first 16
/// hex digits of its id.
pub fn job_name(job: &Hash32) -> String {
    if *job == crate::ledger::GENESIS_JOB {
        "genesis".into()
    } else {
        job.to_hex()[..16].to_string()
    }
}

pub struct MinerOptions {
    pub threads: usize,
    pub stop_at_height: Option<u64>,
}

/// Mine until `shared.stop` is set or the tip reaches `stop_at_height`.
pub fn run_miners(shared: Arc<Shared>, options: &MinerOptions) -> Result<()> {
    let threads = options.threads.max(1);
    let handles: Vec<_> = (0..threads)
        .map(|index| {
            let shared = Arc::clone(&shared);
            let stop_at = options.stop_at_height;
            std::thread::Builder::new()
                .name(format!("miner-{index}"))
                .spawn(move || {
                    let result = mine_loop(&shared, index as u32, threads as u32, stop_at);
                    if result.is_err() {
                        shared.stop.store(true, Ordering::SeqCst);
                    }
                    result
                })
        })
        .collect::<std::io::Result<_>>()?;
    let mut first_error = None;
    for handle in handles {
        match handle.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(_) => {
                first_error.get_or_insert(anyhow::anyhow!("a miner thread panicked"));
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}

fn mine_loop(shared: &Shared, index: u32, threads: u32, stop_at: Option<u64>) -> Result<()> {
    let chain = &shared.chain;
    let params = chain.params();
    let miner_id = shared.miner_id();
    let mut round: u32 = 0;
    let mut last_parent = Hash32::ZERO;
    while !shared.stop.load(Ordering::SeqCst) {
        if shared.tip_reached(stop_at) {
            shared.stop.store(true, Ordering::SeqCst);
            break;
        }
        let version = shared.tip_version.load(Ordering::SeqCst);
        let tip = chain.store.tip()?;
        if tip.hash != last_parent {
            last_parent = tip.hash;
            round = 0;
        }
        let work = Work::on_tip(chain, &tip.hash)?;
        let lane = index.wrapping_add(threads.wrapping_mul(round));
        let started = Instant::now();
        // Steps are counted as the run polls (before step `i`, `i - 1`
        // are done) and the rest when it ends.
        let mut counted = 0;
        let outcome = work.mine(chain, miner_id, lane, |i| {
            shared
                .metrics
                .training_steps
                .inc_by(i.saturating_sub(1 + counted));
            counted = i - 1;
            !shared.stop.load(Ordering::Relaxed)
                && shared.tip_version.load(Ordering::Relaxed) == version
        });
        let steps = match &outcome {
            miner::Mined::Found(solution) => solution.steps,
            miner::Mined::Stopped(steps) => *steps,
            miner::Mined::Exhausted(miner::Exhaustion::NotFinite { step }) => *step,
            miner::Mined::Exhausted(miner::Exhaustion::Gate { .. }) => {
                work.task.max_steps_per_block
            }
        };
        shared
            .metrics
            .training_steps
            .inc_by(steps.saturating_sub(counted));
        let solution = match outcome {
            miner::Mined::Found(solution) => solution,
            miner::Mined::Stopped(_) => continue,
            miner::Mined::Exhausted(why) => {
                // Said once per job: a job whose training cannot give a
                // block is not silent, and does not flood the log.
                if shared.notice(work.job, Notice::Exhausted) {
                    eprintln!(
                        "{}",
                        work.exhaustion_message(why, params.validation_threshold_ppm)
                    );
                }
                round = round.wrapping_add(1);
                continue;
            }
        };
        if solution.score_ppm == 0 && shared.notice(work.job, Notice::NoLearning) {
            eprintln!("{}", work.no_learning_message());
        }
        let txs = shared.block_txs(&tip.hash)?;
        let tx_count = txs.len();
        let block = work.seal(&solution, &shared.key, now_ms(), txs);
        let id = block.id();
        match shared.submit(block) {
            Ok(Stored::Extended) | Ok(Stored::Reorg { .. }) => {
                shared.metrics.blocks_mined.inc();
                crate::say!(
                    "mined height={} hash={} job={} job_block={} steps={} score={:.6} reward={} txs={} time={:.3}s stored",
                    work.ctx.child_height(),
                    id,
                    job_name(&work.job),
                    work.job_ctx.job_block,
                    solution.steps,
                    f64::from(solution.score_ppm) / 1e6,
                    crate::tx::amount::format(params.reward_amount),
                    tx_count,
                    started.elapsed().as_secs_f64()
                );
            }
            Ok(Stored::SideChain) | Ok(Stored::AlreadyKnown) => {}
            Err(super::SubmitError::Invalid(e)) => {
                // A block this node mined failed its own validation: a bug,
                // never something to store. Log it and move to another lane.
                eprintln!("error: mined block {id} is invalid: {e}");
                round = round.wrapping_add(1);
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consensus::params::ChainParams;
    use crate::consensus::passes_gate;
    use crate::work::miner::Exhaustion;

    fn at() -> Where {
        Where {
            job: Hash32([0xab; 32]),
            job_block: 7,
            learning_rate: 250.0,
            max_steps: 5000,
        }
    }

    #[test]
    fn each_reason_a_run_gives_no_block_is_said_with_the_job_and_its_figures() {
        let text = exhaustion_message(&at(), Exhaustion::NotFinite { step: 32 }, 500_000, 0);
        assert!(text.starts_with("miner: job abababababababab block 7: training diverged"));
        assert!(
            text.contains("after step 32 at learning rate 250"),
            "{text}"
        );
        let text = exhaustion_message(
            &at(),
            Exhaustion::Gate {
                tickets: 0,
                best_score_ppm: 0,
            },
            500_000,
            400_000,
        );
        assert!(
            text.contains("5000 steps drew no ticket under the target"),
            "{text}"
        );
        let text = exhaustion_message(
            &at(),
            Exhaustion::Gate {
                tickets: 3,
                best_score_ppm: 123_456,
            },
            500_000,
            400_001,
        );
        assert!(
            text.contains(
                "3 ticket(s) in 5000 steps, none passes the quality gate: the best scores \
                 123456 ppm, the gate asks 200001 ppm (500000 ppm of the start model's 400001 ppm)"
            ),
            "{text}"
        );
        assert!(
            text.contains("learning rate 250 makes the model worse"),
            "{text}"
        );
        let text = no_learning_message(&at());
        assert!(text.contains("job abababababababab block 7: the trained model scores 0"));
    }

    /// The gate a message names is the least score the gate passes.
    #[test]
    fn the_gate_a_message_names_is_the_least_passing_score() {
        let mut params = ChainParams::from_json(include_str!("../../config/regtest.json")).unwrap();
        for (threshold, start) in [
            (500_000, 400_001),
            (500_000, 0),
            (1_000_000, 7),
            (333_333, 10),
        ] {
            params.validation_threshold_ppm = threshold;
            let text = exhaustion_message(
                &at(),
                Exhaustion::Gate {
                    tickets: 1,
                    best_score_ppm: 0,
                },
                threshold,
                start,
            );
            let asked: u32 = text
                .split("the gate asks ")
                .nth(1)
                .and_then(|rest| rest.split(' ').next())
                .and_then(|n| n.parse().ok())
                .expect("a figure");
            assert!(passes_gate(&params, asked, start), "{threshold} {start}");
            if asked > 0 {
                assert!(
                    !passes_gate(&params, asked - 1, start),
                    "{threshold} {start}"
                );
            }
        }
    }

    #[test]
    fn a_notice_is_given_once_per_job_and_kind() {
        let mut notices = Notices::default();
        let (a, b) = (Hash32([1; 32]), Hash32([2; 32]));
        assert!(notices.first(a, Notice::Exhausted));
        assert!(!notices.first(a, Notice::Exhausted));
        assert!(notices.first(a, Notice::NoLearning));
        assert!(notices.first(b, Notice::Exhausted));
        assert!(!notices.first(b, Notice::Exhausted));
    }
}
