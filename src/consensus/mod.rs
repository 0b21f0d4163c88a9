//! The consensus rules, and nothing else: parameters, block validity,
//! retargeting, the quality gate and fork choice.
//!
//! Pure: every function takes the data it needs (a block, its parent's
//! context, the local time `now_ms`) and never touches a clock, a file, a
//! socket or the store. The node gathers a [`ParentContext`] through the
//! [`Ancestry`] trait and hands it in. schema/consensus.md is the normative
//! text of these rules.

pub mod params;
pub mod target;
pub mod validate;

use crate::chain::Hash32;
use crate::ledger::GENESIS_JOB;
use params::ChainParams;
use primitive_types::U256;

pub use validate::{
    check_body, check_header, validate_block, BlockError, CheckedBlock, CheckedHeader, Training,
};

/// What consensus needs to know about one block of the chain (genesis included).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AncestorInfo {
    pub hash: Hash32,
    pub height: u64,
    pub timestamp_ms: u64,
    pub target: Hash32,
    pub score_ppm: u32,
    /// The job the block trains and its number within it.
    pub job: Hash32,
    pub job_block: u64,
    /// The last block at or before this one that trains the genesis
    /// task; genesis itself when none does.
    pub genesis_task_tip: Hash32,
}

impl AncestorInfo {
    pub fn genesis(params: &ChainParams) -> AncestorInfo {
        let hash = params.genesis_hash();
        AncestorInfo {
            hash,
            height: 0,
            timestamp_ms: params.genesis_time_ms,
            target: params.initial_target,
            score_ppm: 0,
            job: GENESIS_JOB,
            job_block: 0,
            genesis_task_tip: hash,
        }
    }

    /// The fields of a block whose header is `fields`, its id `hash` and
    /// its parent `parent`.
    pub fn of_header(
        hash: Hash32,
        fields: &crate::chain::HeaderFields,
        parent: &AncestorInfo,
    ) -> AncestorInfo {
        AncestorInfo {
            hash,
            height: fields.height,
            timestamp_ms: fields.timestamp_ms,
            target: fields.target,
            score_ppm: fields.score_ppm,
            job: fields.job,
            job_block: fields.job_block,
            genesis_task_tip: if fields.job == GENESIS_JOB {
                hash
            } else {
                parent.genesis_task_tip
            },
        }
    }
}

/// Read access to known blocks, implemented by the store and by importers.
pub trait Ancestry {
    /// The block `hash` and then up to `count - 1` of its ancestors, newest
    /// first, stopping at genesis. `None` when `hash` is unknown.
    fn walk_back(&self, hash: &Hash32, count: usize) -> Option<Vec<AncestorInfo>>;
}

/// Number of blocks whose median timestamp a new block must exceed.
pub const MEDIAN_TIME_SPAN: usize = 11;

/// Everything about a parent that a child's validity depends on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParentContext {
    pub parent: AncestorInfo,
    pub median_time_past_ms: u64,
    pub required_target: Hash32,
}

impl ParentContext {
    /// Build the context of a child of `parent`; `None` when the parent is unknown.
    pub fn build(
        params: &ChainParams,
        chain: &impl Ancestry,
        parent: &Hash32,
    ) -> Option<ParentContext> {
        let child_height = chain.walk_back(parent, 1)?.first()?.height + 1;
        let first = target::retarget_first_height(params, child_height);
        let retarget_span = first.map_or(0, |f| (child_height - f) as usize);
        let depth = MEDIAN_TIME_SPAN.max(retarget_span);
        let ancestors = chain.walk_back(parent, depth)?;
        let parent_info = ancestors.first()?.clone();

        let mut times: Vec<u64> = ancestors
            .iter()
            .take(MEDIAN_TIME_SPAN)
            .map(|a| a.timestamp_ms)
            .collect();
        times.sort_unstable();
        let median_time_past_ms = times[times.len() / 2];

        let required_target = match first {
            Some(first_height) => {
                let first_block = ancestors.iter().find(|a| a.height == first_height)?;
                target::retarget(
                    params,
                    &parent_info.target,
                    first_height,
                    first_block.timestamp_ms,
                    parent_info.height,
                    parent_info.timestamp_ms,
                )
            }
            None => parent_info.target,
        };
        Some(ParentContext {
            median_time_past_ms,
            required_target,
            parent: parent_info,
        })
    }

    pub fn child_height(&self) -> u64 {
        self.parent.height + 1
    }
}

/// Where a child of a parent stands in the job its header names: what
/// its training and gate depend on, read from the headers of its
/// ancestors (schema/jobs.md). Whether the job is the one scheduled is a
/// ledger rule, checked when the block connects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobContext {
    pub job: Hash32,
    /// The child's number within the job.
    pub job_block: u64,
    /// The block whose final model the child starts from; `None` for the
    /// job's first block, which starts from the job's initial model.
    pub start: Option<Hash32>,
    /// The score of the start model, the header score of the block
    /// `start` names (0 for genesis and for a job's initial model): the
    /// quality gate holds the child to it.
    pub start_score: u32,
}

impl JobContext {
    /// The score the quality gate holds a child to: its start model's. A
    /// block must not be much worse than the model it started from. (Held
    /// to the best of a window of earlier blocks instead, a job whose
    /// score had fallen, such as an MLP that overfits, left no ticket that
    /// passed, and the chain stalled on it; schema/decisions.md.)
    pub fn gate_score(&self) -> u32 {
        self.start_score
    }

    /// The context of a child of `parent` that trains `job`. A job other
    /// than the genesis task trains consecutive blocks, so the parent is
    /// its previous block, unless the child is its first; the genesis
    /// task resumes where its last block left off, found through
    /// `genesis_task_tip`. `None` when an ancestor is unknown.
    pub fn build(chain: &impl Ancestry, parent: &AncestorInfo, job: &Hash32) -> Option<JobContext> {
        if *job != GENESIS_JOB {
            if parent.job != *job || parent.height == 0 {
                return Some(JobContext {
                    job: *job,
                    job_block: 0,
                    start: None,
                    start_score: 0,
                });
            }
            return Some(JobContext {
                job: *job,
                job_block: parent.job_block + 1,
                start: Some(parent.hash),
                start_score: parent.score_ppm,
            });
        }
        let last = parent.genesis_task_tip;
        let info = chain.walk_back(&last, 1)?.into_iter().next()?;
        Some(JobContext {
            job: GENESIS_JOB,
            job_block: if info.height > 0 {
                info.job_block + 1
            } else {
                0
            },
            start: Some(last),
            start_score: info.score_ppm,
        })
    }
}

/// The quality gate: `score ≥ threshold × gate score`, in integers.
pub fn passes_gate(params: &ChainParams, score_ppm: u32, gate_score: u32) -> bool {
    u64::from(score_ppm) * 1_000_000
        >= u64::from(params.validation_threshold_ppm) * u64::from(gate_score)
}

/// Cumulative work after a block with `target` on top of `parent_work`.
pub fn cumulative_work(parent_work: U256, target: &Hash32) -> U256 {
    parent_work.saturating_add(target::block_work(target))
}

/// Fork choice: a chain replaces the best one only with strictly more
/// work; the first seen wins ties.
pub fn is_better(candidate_work: U256, best_work: U256) -> bool {
    candidate_work > best_work
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn regtest() -> ChainParams {
        ChainParams::from_json(include_str!("../../config/regtest.json"))
            .expect("config/regtest.json is a valid chain")
    }

    /// A straight chain of `n` blocks after genesis: block h has hash [h; 32],
    /// timestamp `times(h)` and score `scores(h)`.
    struct Line {
        blocks: HashMap<Hash32, AncestorInfo>,
        /// The most blocks one `walk_back` asked for.
        deepest: std::cell::Cell<usize>,
    }

    impl Line {
        fn new(
            params: &ChainParams,
            n: u64,
            times: impl Fn(u64) -> u64,
            scores: impl Fn(u64) -> u32,
        ) -> Line {
            let mut blocks = HashMap::new();
            let mut genesis = AncestorInfo::genesis(params);
            // Genesis is stored under its line hash.
            genesis.genesis_task_tip = Line::hash(0);
            blocks.insert(Line::hash(0), genesis);
            for h in 1..=n {
                let info = AncestorInfo {
                    hash: Line::hash(h),
                    height: h,
                    timestamp_ms: times(h),
                    target: params.initial_target,
                    score_ppm: scores(h),
                    job: GENESIS_JOB,
                    job_block: h - 1,
                    genesis_task_tip: Line::hash(h),
                };
                blocks.insert(info.hash, info);
            }
            Line {
                blocks,
                deepest: std::cell::Cell::new(0),
            }
        }

        fn hash(height: u64) -> Hash32 {
            let mut hash = [0u8; 32];
            hash[..8].copy_from_slice(&height.to_le_bytes());
            hash[31] = 1;
            Hash32(hash)
        }
    }

    impl Ancestry for Line {
        fn walk_back(&self, hash: &Hash32, count: usize) -> Option<Vec<AncestorInfo>> {
            let tip = self.blocks.get(hash)?;
            self.deepest.set(self.deepest.get().max(count));
            Some(
                (0..=tip.height)
                    .rev()
                    .take(count)
                    .map(|h| self.blocks[&Line::hash(h)].clone())
                    .collect(),
            )
        }
    }

    #[test]
    fn the_gate_passes_at_the_threshold_and_not_one_below() {
        let mut params = regtest();
        params.validation_threshold_ppm = 500_000;
        assert!(passes_gate(&params, 400_000, 800_000));
        assert!(!passes_gate(&params, 399_999, 800_000));
        assert!(passes_gate(&params, 0, 0));
        params.validation_threshold_ppm = 1_000_000;
        assert!(passes_gate(&params, 800_000, 800_000));
        assert!(!passes_gate(&params, 799_999, 800_000));
        params.validation_threshold_ppm = 900_000;
        // 0.9 × 1_000_000 = 900_000, in integers without rounding.
        assert!(passes_gate(&params, 900_000, 1_000_000));
        assert!(!passes_gate(&params, 899_999, 1_000_000));
        assert!(passes_gate(&params, 1, 1));
        assert!(!passes_gate(&params, 0, 1));
        params.validation_threshold_ppm = 0;
        assert!(passes_gate(&params, 0, u32::MAX));
    }

    #[test]
    fn fork_choice_needs_strictly_more_work() {
        assert!(is_better(U256::from(11), U256::from(10)));
        assert!(!is_better(U256::from(10), U256::from(10)));
        assert!(!is_better(U256::from(9), U256::from(10)));
        let target = Hash32([0xff; 32]);
        assert_eq!(cumulative_work(U256::from(5), &target), U256::from(6));
        assert_eq!(cumulative_work(U256::MAX, &target), U256::MAX);
    }

    #[test]
    fn the_context_of_a_child_reads_its_ancestors() {
        let mut params = regtest();
        params.validation_window = 3;
        let g = params.genesis_time_ms;
        // Timestamps out of order, so that the median is not the parent's.
        let times = |h: u64| g + [0, 50, 10, 40, 20, 30, 90, 60, 70, 80, 100, 5, 95][h as usize];
        let scores = |h: u64| [0, 9, 1, 2, 8, 3, 7, 4, 5, 6, 1, 2, 3][h as usize];
        let line = Line::new(&params, 12, times, scores);
        let ctx = ParentContext::build(&params, &line, &Line::hash(12)).expect("known");
        assert_eq!(ctx.child_height(), 13);
        assert_eq!(ctx.parent, line.blocks[&Line::hash(12)]);
        // The last 11 blocks, 2..=12: sorted, the middle one is block 7's 60.
        assert_eq!(ctx.median_time_past_ms, g + 60);
        // The genesis task goes on from the parent, held to its score.
        let job = JobContext::build(&line, &ctx.parent, &GENESIS_JOB).expect("known");
        assert_eq!(job.gate_score(), 3);
        assert_eq!(job.job_block, 12);
        assert_eq!(job.start, Some(Line::hash(12)));
        assert_eq!(ctx.required_target, params.initial_target);
        // It reads the 11 blocks of the median, no more.
        assert_eq!(line.deepest.get(), MEDIAN_TIME_SPAN);

        // Near genesis the window and the median take what there is.
        let ctx = ParentContext::build(&params, &line, &Line::hash(1)).expect("known");
        let job = JobContext::build(&line, &ctx.parent, &GENESIS_JOB).expect("known");
        assert_eq!(job.gate_score(), 9);
        assert_eq!(ctx.median_time_past_ms, g + 50);
        let ctx = ParentContext::build(&params, &line, &Line::hash(0)).expect("known");
        assert_eq!(ctx.child_height(), 1);
        let job = JobContext::build(&line, &ctx.parent, &GENESIS_JOB).expect("known");
        assert_eq!(job.job_block, 0);
        assert_eq!(job.start, Some(Line::hash(0)));
        assert_eq!(ctx.median_time_past_ms, g);
        assert_eq!(job.gate_score(), 0);
        assert_eq!(ParentContext::build(&params, &line, &Hash32([9; 32])), None);
    }

    /// Blocks 1–3 train the genesis task (scores 5, 9, 4), blocks 4–5 a
    /// job (100, 200). A child on the genesis task resumes from block 3, as
    /// its block 3, held to block 3's score; a child on the job continues
    /// it from block 5; a child on another job starts it, with no gate.
    #[test]
    fn a_job_context_reads_the_job_s_own_blocks() {
        let params = regtest();
        let g = params.genesis_time_ms;
        let scores = |h: u64| [0, 5, 9, 4, 100, 200][h as usize];
        let mut line = Line::new(&params, 5, |h| g + h, scores);
        let job = Hash32([7; 32]);
        for (h, n) in [(4u64, 0u64), (5, 1)] {
            let info = line.blocks.get_mut(&Line::hash(h)).expect("known");
            info.job = job;
            info.job_block = n;
            info.genesis_task_tip = Line::hash(3);
        }
        let ctx = ParentContext::build(&params, &line, &Line::hash(5)).expect("known");
        let genesis_task = JobContext::build(&line, &ctx.parent, &GENESIS_JOB).expect("known");
        assert_eq!(
            genesis_task,
            JobContext {
                job: GENESIS_JOB,
                job_block: 3,
                start: Some(Line::hash(3)),
                start_score: 4,
            }
        );
        let same = JobContext::build(&line, &ctx.parent, &job).expect("known");
        assert_eq!(
            same,
            JobContext {
                job,
                job_block: 2,
                start: Some(Line::hash(5)),
                start_score: 200,
            }
        );
        let other = Hash32([8; 32]);
        let new = JobContext::build(&line, &ctx.parent, &other).expect("known");
        assert_eq!(
            new,
            JobContext {
                job: other,
                job_block: 0,
                start: None,
                start_score: 0,
            }
        );
        assert_eq!(
            (
                genesis_task.gate_score(),
                same.gate_score(),
                new.gate_score()
            ),
            (4, 200, 0)
        );
    }

    #[test]
    fn a_retarget_window_longer_than_the_others_is_read_in_full() {
        let mut params = regtest();
        params.retarget_window = 16;
        params.validation_window = 3;
        let g = params.genesis_time_ms;
        let step = params.target_block_ms;
        // Blocks 16..=31 come twice as slow as the target time.
        let times = |h: u64| {
            g + if h <= 16 {
                h * step
            } else {
                16 * step + (h - 16) * 2 * step
            }
        };
        let line = Line::new(&params, 31, times, |_| 0);
        let ctx = ParentContext::build(&params, &line, &Line::hash(31)).expect("known");
        assert_eq!(ctx.child_height(), 32);
        let doubled = target::to_u256(&params.initial_target) * 2;
        assert_eq!(target::to_u256(&ctx.required_target), doubled);
        // It reads the period back to its first block, no further.
        assert_eq!(line.deepest.get(), 16);
        // Not a retarget height: the parent's target.
        let ctx = ParentContext::build(&params, &line, &Line::hash(30)).expect("known");
        assert_eq!(ctx.required_target, params.initial_target);
    }
}
