//! Miner threads: each mines its own lanes on the current tip, restarts when
//! the tip moves, and submits what it finds through the same validation
//! path as any other block.

use super::chain::now_ms;
use super::state::Shared;
use crate::chain::Hash32;
use crate::consensus::passes_gate;
use crate::store::Stored;
use crate::work::miner;
use anyhow::Result;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

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
        let ctx = chain.context(&tip.hash)?;
        let job_id = chain.store.scheduled_job()?;
        let task = chain.task_for(&job_id, &tip.hash)?;
        let job_ctx = chain.job_context(&ctx, &job_id)?;
        let start_model = chain.start_model(&job_ctx, &task)?;
        let accept = |score: u32| passes_gate(params, score, job_ctx.window_max_score);
        let lane = index.wrapping_add(threads.wrapping_mul(round));
        let job = miner::Job {
            task: &task,
            parent: tip.hash,
            parent_model: &start_model,
            miner: miner_id,
            lane,
            target: task.ticket_target(&ctx.required_target, chain.task.cost),
            job_block: job_ctx.job_block,
            accept_score: &accept,
        };
        let started = Instant::now();
        let outcome = miner::mine(&job, |_| {
            !shared.stop.load(Ordering::Relaxed)
                && shared.tip_version.load(Ordering::Relaxed) == version
        });
        let solution = match outcome {
            miner::Mined::Found(solution) => solution,
            miner::Mined::Stopped(_) => continue,
            miner::Mined::Exhausted => {
                round = round.wrapping_add(1);
                continue;
            }
        };
        let placement = miner::Placement {
            parent: tip.hash,
            height: ctx.child_height(),
            timestamp_ms: now_ms().max(ctx.median_time_past_ms + 1),
            target: ctx.required_target,
            job: job_id,
            job_block: job_ctx.job_block,
        };
        let txs = shared.block_txs(&tip.hash)?;
        let tx_count = txs.len();
        let block = miner::seal_with(&task, &solution, &placement, &shared.key, txs);
        let id = block.id();
        match shared.submit(block) {
            Ok(Stored::Extended) | Ok(Stored::Reorg { .. }) => {
                let job_name = if job_id == crate::ledger::GENESIS_JOB {
                    "genesis".to_string()
                } else {
                    job_id.to_hex()[..16].to_string()
                };
                crate::say!(
                    "mined height={} hash={} job={job_name} job_block={} steps={} score={:.6} \
                     reward={} txs={} time={:.3}s stored",
                    ctx.child_height(),
                    id,
                    job_ctx.job_block,
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
