//! The node's view of its chain: the store plus the prepared task, and the
//! glue that gathers a block's parent context and hands it to consensus.

use super::datadir::DataDir;
use crate::chain::{Block, Hash32, Limits};
use crate::consensus::params::{ChainParams, OnnxLinearParams};
use crate::consensus::{self, BlockError, CheckedBlock, ParentContext};
use crate::dataset::{CsvDataset, FeatureSource, Prepared, Scaling};
use crate::model::onnx::{self, ModelSpec, OnnxError, OnnxModel, OrtSetup};
use crate::store::{Store, StoreError, Stored};
use crate::work::Task;
use anyhow::{bail, Context, Result};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum SubmitError {
    #[error("invalid block: {0}")]
    Invalid(#[from] BlockError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A block the ledger refused is an invalid block, not a storage failure.
pub fn ledger_invalid(error: StoreError) -> SubmitError {
    match error {
        StoreError::InvalidBlock {
            block,
            height,
            error,
            ..
        } => SubmitError::Invalid(BlockError::Ledger {
            block,
            height,
            error,
        }),
        other => SubmitError::Store(other),
    }
}

pub struct Chain {
    pub store: Store,
    pub task: Task,
    pub inputs: TaskInputs,
    pub limits: Limits,
}

/// Milliseconds since the Unix epoch, for `now_ms`.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The bytes of a task's files, each checked against its pinned hash.
#[derive(Clone, Debug)]
pub struct TaskFiles {
    pub dataset: Vec<u8>,
    /// The encoder of an `onnx_linear` task.
    pub encoder: Option<Vec<u8>>,
}

impl TaskFiles {
    /// The files of a `linear` task: its dataset alone.
    pub fn dataset_only(dataset: &[u8]) -> TaskFiles {
        TaskFiles {
            dataset: dataset.to_vec(),
            encoder: None,
        }
    }
}

/// What a task's model takes in, for people and programs that use it
/// outside the node: the raw columns, their standardisation, and the
/// encoder in front of the head, if any.
#[derive(Clone, Debug)]
pub struct TaskInputs {
    pub feature_names: Vec<String>,
    /// Where each feature column comes from: a numeric column, or one
    /// category of a one-hot encoded text column.
    pub feature_sources: Vec<FeatureSource>,
    pub feature_scaling: Vec<Scaling>,
    pub target_name: String,
    pub target_scaling: Scaling,
    pub encoder: Option<EncoderFile>,
}

/// An `onnx_linear` task's encoder.
#[derive(Clone, Debug)]
pub struct EncoderFile {
    pub file: String,
    pub blake3: Hash32,
    pub output_width: usize,
    pub bytes: Vec<u8>,
}

impl TaskInputs {
    /// Parameters of the task's model: the head's inputs and the bias.
    pub fn dim(&self) -> usize {
        match &self.encoder {
            Some(encoder) => encoder.output_width + 1,
            None => self.feature_names.len() + 1,
        }
    }
}

/// The raw dataset of `params`, split and standardised, and the task's
/// inputs. Runs no model.
pub fn prepare_inputs(params: &ChainParams, files: &TaskFiles) -> Result<(Prepared, TaskInputs)> {
    let spec = &params.task.dataset;
    let data = CsvDataset::from_bytes(&spec.file, &files.dataset)?;
    let prepared = Prepared::new(
        &data,
        &spec.target,
        spec.features.as_deref(),
        params.task.holdout_every,
        params.jobs.max_categories as usize,
    )?;
    let encoder = match params.task.model.onnx() {
        None => None,
        Some(onnx) => Some(EncoderFile {
            file: onnx.file.clone(),
            blake3: onnx.blake3,
            output_width: onnx.width as usize,
            bytes: files
                .encoder
                .clone()
                .with_context(|| format!("the chain's encoder {} is missing", onnx.file))?,
        }),
    };
    let inputs = TaskInputs {
        feature_names: prepared.feature_names.clone(),
        feature_sources: prepared.feature_sources.clone(),
        feature_scaling: prepared.feature_scaling.clone(),
        target_name: prepared.target_name.clone(),
        target_scaling: prepared.target_scaling,
        encoder,
    };
    Ok((prepared, inputs))
}

/// Prepare the task of `params` from its files. An `onnx_linear` task
/// loads ONNX Runtime as `ort` says and runs the encoder once over every
/// row (schema/consensus.md, `onnx_linear`).
pub fn prepare_task(
    params: &ChainParams,
    files: &TaskFiles,
    ort: &OrtSetup,
) -> Result<(Task, TaskInputs)> {
    let (prepared, inputs) = prepare_inputs(params, files)?;
    let data = match (params.task.model.onnx(), &inputs.encoder) {
        (Some(onnx), Some(encoder)) => encode(onnx, encoder, &prepared, ort)?,
        _ => prepared,
    };
    Ok((Task::new(&params.task, data), inputs))
}

/// Run the encoder over every row in file order, `encoder_batch` rows per
/// call, and train the head on its outputs.
fn encode(
    onnx: &OnnxLinearParams,
    encoder: &EncoderFile,
    prepared: &Prepared,
    ort: &OrtSetup,
) -> Result<Prepared> {
    let runtime = onnx::runtime(ort.library.as_deref())
        .with_context(|| format!("this chain's task runs the ONNX encoder {}", onnx.file))?;
    let spec = ModelSpec {
        blake3: Some(onnx.blake3.to_hex()),
        input_name: onnx.input.clone(),
        features: Some(prepared.features()),
    };
    let mut model = OnnxModel::load(runtime, &onnx.file, &encoder.bytes, &spec, &ort.session)
        .map_err(|e| match e {
            OnnxError::InputShape { .. } => anyhow::Error::new(e).context(format!(
                "the encoder runs on the {} feature columns of the dataset ({})",
                prepared.features(),
                prepared.feature_names.join(",")
            )),
            other => anyhow::Error::new(other),
        })?;
    if model.output_width() != encoder.output_width {
        bail!(
            "encoder {}: output {:?} has {} values per row, the chain's task expects {}",
            onnx.file,
            model.output_name(),
            model.output_width(),
            encoder.output_width
        );
    }
    let d = prepared.features();
    let rows = prepared.rows_in_file_order_f32();
    let mut outputs = Vec::with_capacity(rows.len() / d * encoder.output_width);
    for chunk in rows.chunks(onnx.encoder_batch as usize * d) {
        model.run_into(chunk, &mut outputs)?;
    }
    if let Some(at) = outputs.iter().position(|v| !v.is_finite()) {
        bail!(
            "encoder {}: output {} of row {} is {}; the head cannot train on it",
            onnx.file,
            at % encoder.output_width,
            at / encoder.output_width,
            outputs[at]
        );
    }
    let encoded: Vec<f64> = outputs.iter().map(|&v| f64::from(v)).collect();
    let names = (0..encoder.output_width)
        .map(|k| format!("{}[{k}]", model.output_name()))
        .collect();
    prepared
        .with_features(names, &encoded)
        .with_context(|| format!("encoder {} gave the wrong number of outputs", onnx.file))
}

impl Chain {
    /// Open the chain of an existing data dir, checking its task's files.
    pub fn open(dir: &DataDir, ort: &OrtSetup) -> Result<Chain> {
        let store = dir.open_store()?;
        let files = dir.load_task_files(store.params())?;
        Chain::new(store, &files, ort)
    }

    pub fn new(store: Store, files: &TaskFiles, ort: &OrtSetup) -> Result<Chain> {
        let (task, inputs) =
            prepare_task(store.params(), files, ort).context("preparing the chain's task")?;
        let limits = store.params().limits(task.data.features());
        Ok(Chain {
            store,
            task,
            inputs,
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
        let mut outcome = self
            .store
            .insert(std::slice::from_ref(&checked))
            .map_err(ledger_invalid)?;
        Ok(outcome.pop().unwrap_or(Stored::AlreadyKnown))
    }
}
