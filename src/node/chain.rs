//! The node's view of its chain: the store plus the prepared task, and the
//! glue that gathers a block's parent context and hands it to consensus.

use super::datadir::DataDir;
use crate::chain::{Block, Hash32, Limits};
use crate::consensus::params::ChainParams;
use crate::consensus::{self, BlockError, CheckedBlock, ParentContext};
use crate::dataset::{CsvDataset, Prepared};
use crate::store::{Store, StoreError, Stored};
use crate::work::Task;
use anyhow::{Context, Result};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum SubmitError {
    #[error("invalid block: {0}")]
    Invalid(#[from] BlockError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct Chain {
    pub store: Store,
    pub task: Task,
    pub limits: Limits,
}

/// Milliseconds since the Unix epoch, for `now_ms`.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Prepare the task of `params` from the dataset bytes.
pub fn prepare_task(params: &ChainParams, dataset: &[u8]) -> Result<Task> {
    let spec = &params.task.dataset;
    let data = CsvDataset::from_bytes(&spec.file, dataset)?;
    let prepared = Prepared::new(
        &data,
        &spec.target,
        spec.features.as_deref(),
        params.task.holdout_every,
    )?;
    Ok(Task::new(&params.task, prepared))
}

impl Chain {
    /// Open the chain of an existing data dir, checking its dataset.
    pub fn open(dir: &DataDir) -> Result<Chain> {
        let store = dir.open_store()?;
        let dataset = dir.load_dataset(store.params())?;
        Chain::new(store, &dataset)
    }

    pub fn new(store: Store, dataset: &[u8]) -> Result<Chain> {
        let task = prepare_task(store.params(), dataset).context("preparing the chain's task")?;
        let limits = store.params().limits(task.data.features());
        Ok(Chain {
            store,
            task,
            limits,
        })
    }

    pub fn params(&self) -> &ChainParams {
        self.store.params()
    }

    /// Strictly decode a block of this chain.
    pub fn decode(&self, bytes: &[u8]) -> Result<Block, BlockError> {
        Ok(Block::from_bytes(bytes, &self.limits)?)
    }

    pub fn context(&self, parent: &Hash32) -> Result<ParentContext, BlockError> {
        ParentContext::build(self.params(), &self.store, parent)
            .ok_or(BlockError::UnknownParent { parent: *parent })
    }

    pub fn model(&self, hash: &Hash32) -> Result<Vec<f64>, SubmitError> {
        self.store
            .model(hash, self.task.dim())?
            .ok_or(SubmitError::Invalid(BlockError::UnknownParent {
                parent: *hash,
            }))
    }

    fn work_owner(&self) -> impl Fn(&Hash32) -> Option<Hash32> + '_ {
        move |w| self.store.work_owner(w).ok().flatten()
    }

    /// Check a block against every rule.
    pub fn validate(&self, block: Block, now_ms: u64) -> Result<CheckedBlock, SubmitError> {
        let parent = block.header.fields.parent;
        let ctx = self.context(&parent)?;
        let parent_model = self.model(&parent)?;
        let owner = self.work_owner();
        Ok(consensus::validate_block(
            self.params(),
            &self.task,
            &ctx,
            &parent_model,
            block,
            now_ms,
            &owner,
        )?)
    }

    /// Validate and store one block.
    pub fn submit(&self, block: Block, now_ms: u64) -> Result<Stored, SubmitError> {
        if self.store.contains(&block.id())? {
            return Ok(Stored::AlreadyKnown);
        }
        let checked = self.validate(block, now_ms)?;
        let mut outcome = self.store.insert(std::slice::from_ref(&checked))?;
        Ok(outcome.pop().unwrap_or(Stored::AlreadyKnown))
    }
}
