//! Training jobs in the ledger: each job's state, the queue, and which job
//! a block trains (schema/jobs.md).
//!
//! Scheduling is a pure function of the parent's state: the active job
//! while there is one, else the queued job with the highest pay per block
//! (`bounty / max_blocks`), ties to the one included first, else the
//! genesis task, job 0, which never ends. A job's blocks are consecutive:
//! once active it trains until it ends, and an ended job never comes back.

use crate::chain::Hash32;
use crate::tx::JobSpec;
use serde::{Deserialize, Serialize};

/// The id of the genesis task in headers: all zeros.
pub const GENESIS_JOB: Hash32 = Hash32::ZERO;

/// Where a job is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobStatus {
    Queued,
    Active,
    /// Ended at the block at `height`, for `reason`.
    Ended {
        height: u64,
        reason: EndReason,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EndReason {
    /// It trained `max_blocks` blocks.
    MaxBlocks,
    /// Its score did not rise by `min_improvement_ppm` in `patience` blocks.
    Patience,
}

impl EndReason {
    pub fn name(&self) -> &'static str {
        match self {
            EndReason::MaxBlocks => "max_blocks",
            EndReason::Patience => "patience",
        }
    }
}

/// A job's state as the chain derives it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobState {
    /// The account that paid the bounty and gets the refund.
    pub sender: Hash32,
    /// Inclusion order among all jobs of the chain, from 0.
    pub seq: u64,
    /// The height of the block that included it.
    pub included_height: u64,
    /// What each block on the job pays its miner.
    pub pay_per_block: u64,
    pub max_blocks: u32,
    pub patience: u32,
    pub min_improvement_ppm: u32,
    /// Base units still held: the bounty less what blocks were paid.
    pub escrow: u64,
    pub status: JobStatus,
    /// Blocks trained so far; the next one is block `blocks` of the job.
    pub blocks: u32,
    /// The best score and the earliest block that reached it.
    pub best: Option<BestBlock>,
    /// The score of the last block that rose by `min_improvement_ppm`
    /// over the one before it, and its number in the job.
    pub mark: Option<(u32, u32)>,
    /// Paid to miners so far.
    pub paid: u64,
    /// Refunded to the sender when the job ended.
    pub refunded: u64,
}

/// The best-scoring block of a job: its model is the delivered one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BestBlock {
    pub score_ppm: u32,
    pub block: Hash32,
    pub height: u64,
    /// Its number within the job.
    pub job_block: u32,
}

impl JobState {
    /// A job as its transaction's block queues it.
    pub fn queued(spec: &JobSpec, sender: Hash32, seq: u64, height: u64) -> JobState {
        JobState {
            sender,
            seq,
            included_height: height,
            pay_per_block: spec.pay_per_block(),
            max_blocks: spec.max_blocks,
            patience: spec.patience,
            min_improvement_ppm: spec.min_improvement_ppm,
            escrow: spec.bounty,
            status: JobStatus::Queued,
            blocks: 0,
            best: None,
            mark: None,
            paid: 0,
            refunded: 0,
        }
    }

    /// The queue's order: higher pay per block first, then inclusion order.
    pub fn queue_key(&self) -> QueueKey {
        QueueKey {
            pay_rank: u64::MAX - self.pay_per_block,
            seq: self.seq,
        }
    }

    pub fn is_ended(&self) -> bool {
        matches!(self.status, JobStatus::Ended { .. })
    }
}

/// A queued job's place: ascending keys are the order jobs become active.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct QueueKey {
    /// `u64::MAX − pay_per_block`.
    pub pay_rank: u64,
    pub seq: u64,
}

impl QueueKey {
    /// 16 big-endian bytes that sort as the key does.
    pub fn to_bytes(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&self.pay_rank.to_be_bytes());
        out[8..].copy_from_slice(&self.seq.to_be_bytes());
        out
    }
}

/// The chain-wide part of the job state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    /// The job being trained, if any; `None` means the next block takes
    /// the head of the queue, or the genesis task.
    pub active: Option<Hash32>,
    /// The `seq` of the next job included.
    pub next_seq: u64,
}

/// What one block did to the job it trained, as its header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockTraining {
    /// The block's id.
    pub block: Hash32,
    /// The job the header names ([`GENESIS_JOB`] for the genesis task).
    pub job: Hash32,
    /// The block's number within the job, as the header says.
    pub job_block: u64,
    pub score_ppm: u32,
}

/// How a job's state moves on after one of its blocks: the pay, the
/// score bookkeeping, and the end. Returns what the miner is paid.
pub(crate) fn train_block(job: &mut JobState, training: &BlockTraining, height: u64) -> u64 {
    let n = job.blocks;
    let pay = job.pay_per_block.min(job.escrow);
    job.escrow -= pay;
    job.paid += pay;
    job.status = JobStatus::Active;
    let score = training.score_ppm;
    if job.best.is_none_or(|best| score > best.score_ppm) {
        job.best = Some(BestBlock {
            score_ppm: score,
            block: training.block,
            height,
            job_block: n,
        });
    }
    let improved = match job.mark {
        None => true,
        Some((marked, _)) => {
            u64::from(score) >= u64::from(marked) + u64::from(job.min_improvement_ppm)
                && score > marked
        }
    };
    if improved {
        job.mark = Some((score, n));
    }
    job.blocks = n + 1;
    let since = n - job.mark.map_or(0, |(_, at)| at);
    let reason = if job.blocks >= job.max_blocks {
        Some(EndReason::MaxBlocks)
    } else if since >= job.patience {
        Some(EndReason::Patience)
    } else {
        None
    };
    if let Some(reason) = reason {
        job.status = JobStatus::Ended { height, reason };
    }
    pay
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(pay_per_block: u64, seq: u64) -> JobState {
        JobState {
            sender: Hash32::ZERO,
            seq,
            included_height: 1,
            pay_per_block,
            max_blocks: 1,
            patience: 1,
            min_improvement_ppm: 0,
            escrow: pay_per_block,
            status: JobStatus::Queued,
            blocks: 0,
            best: None,
            mark: None,
            paid: 0,
            refunded: 0,
        }
    }

    /// The higher pay first, whatever the inclusion order, even when the
    /// pays differ by one unit; then the first included.
    #[test]
    fn the_queue_key_orders_by_pay_then_inclusion() {
        let big = 1u64 << 40;
        assert!(job(big + 1, 9).queue_key() < job(big, 0).queue_key());
        assert!(job(2, 9).queue_key() < job(1, 0).queue_key());
        assert!(job(5, 0).queue_key() < job(5, 1).queue_key());
        assert!(job(u64::MAX, 3).queue_key() < job(0, 0).queue_key());
        // Bytes sort as the keys do.
        let pairs = [(job(big + 1, 9), job(big, 0)), (job(5, 0), job(5, 1))];
        for (first, second) in pairs {
            assert!(first.queue_key().to_bytes() < second.queue_key().to_bytes());
        }
    }

    #[test]
    fn end_reasons_have_their_api_names() {
        assert_eq!(EndReason::MaxBlocks.name(), "max_blocks");
        assert_eq!(EndReason::Patience.name(), "patience");
    }
}
