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
    let mut told_exhausted = None;
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
        let outcome = work.mine(chain, miner_id, lane, |_| {
            !shared.stop.load(Ordering::Relaxed)
                && shared.tip_version.load(Ordering::Relaxed) == version
        });
        let solution = match outcome {
            miner::Mined::Found(solution) => solution,
            miner::Mined::Stopped(_) => continue,
            miner::Mined::Exhausted => {
                // Said once per job and thread: a job whose training cannot
                // pass the gate is not silent, and does not flood the log.
                if told_exhausted != Some(work.job) {
                    told_exhausted = Some(work.job);
                    eprintln!(
                        "miner: job {} block {}: {} steps found no ticket whose model passes the \
                         quality gate ({} ppm of {} ppm) with finite parameters; \
                         trying other lanes",
                        job_name(&work.job),
                        work.job_ctx.job_block,
                        work.task.max_steps_per_block,
                        params.validation_threshold_ppm,
                        work.job_ctx.gate_score()
                    );
                }
                round = round.wrapping_add(1);
                continue;
            }
        };
        let txs = shared.block_txs(&tip.hash)?;
        let tx_count = txs.len();
        let block = work.seal(&solution, &shared.key, now_ms(), txs);
        let id = block.id();
        match shared.submit(block) {
            Ok(Stored::Extended) | Ok(Stored::Reorg { .. }) => {
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
