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
use params::ChainParams;
use primitive_types::U256;

pub use validate::{
    check_body, check_header, validate_block, BlockError, CheckedBlock, CheckedHeader,
};

/// What consensus needs to know about one block of the chain (genesis included).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AncestorInfo {
    pub hash: Hash32,
    pub height: u64,
    pub timestamp_ms: u64,
    pub target: Hash32,
    pub score_ppm: u32,
}

impl AncestorInfo {
    pub fn genesis(params: &ChainParams) -> AncestorInfo {
        AncestorInfo {
            hash: params.genesis_hash(),
            height: 0,
            timestamp_ms: params.genesis_time_ms,
            target: params.initial_target,
            score_ppm: 0,
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
    /// Hashes of the validation window: the parent and its ancestors.
    pub window_hashes: Vec<Hash32>,
    /// Highest score in the validation window.
    pub window_max_score: u32,
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
        let window = params.validation_window as usize;
        let depth = MEDIAN_TIME_SPAN.max(window).max(retarget_span);
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
        let window_blocks = &ancestors[..window.min(ancestors.len())];
        Some(ParentContext {
            median_time_past_ms,
            required_target,
            window_hashes: window_blocks.iter().map(|a| a.hash).collect(),
            window_max_score: window_blocks.iter().map(|a| a.score_ppm).max()?,
            parent: parent_info,
        })
    }

    pub fn child_height(&self) -> u64 {
        self.parent.height + 1
    }
}

/// The quality gate: `score ≥ threshold × max(score of the window)`, in integers.
pub fn passes_gate(params: &ChainParams, score_ppm: u32, window_max_score: u32) -> bool {
    u64::from(score_ppm) * 1_000_000
        >= u64::from(params.validation_threshold_ppm) * u64::from(window_max_score)
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
