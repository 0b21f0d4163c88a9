//! The node's view of its chain: the store plus the prepared task, and the
//! glue that gathers a block's parent context and hands it to consensus.

use super::datadir::DataDir;
use crate::chain::{Block, Hash32, Limits};
use crate::consensus::params::{ChainParams, OnnxLinearParams};
use crate::consensus::{self, BlockError, CheckedBlock, JobContext, ParentContext, Training};
use crate::dataset::{CsvDataset, FeatureSource, Prepared, Scaling};
use crate::ledger::GENESIS_JOB;
use crate::model::onnx::{self, ModelSpec, OnnxError, OnnxModel, OrtSetup};
use crate::store::{Store, StoreError, Stored};
use crate::tx::job::ENCODER_JOB_BATCH;
use crate::tx::{JobSpec, Tx, TxKind};
use crate::work::Task;
use anyhow::{bail, Context, Result};
use std::sync::{Arc, Mutex};
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
    /// The genesis task (job 0).
    pub task: Arc<Task>,
    pub inputs: TaskInputs,
    pub limits: Limits,
    /// The tasks of the jobs trained lately, prepared once.
    jobs: Mutex<JobTasks>,
    /// How a job's encoder runs.
    ort: OrtSetup,
}

/// How many jobs' prepared tasks a node keeps.
const JOB_TASKS_KEPT: usize = 8;

/// Prepared job tasks, the most recently used last.
#[derive(Default)]
struct JobTasks {
    tasks: Vec<(Hash32, Arc<Task>)>,
}

impl JobTasks {
    fn get(&mut self, job: &Hash32) -> Option<Arc<Task>> {
        let at = self.tasks.iter().position(|(id, _)| id == job)?;
        let entry = self.tasks.remove(at);
        let task = Arc::clone(&entry.1);
        self.tasks.push(entry);
        Some(task)
    }

    fn put(&mut self, job: Hash32, task: Arc<Task>) {
        if self.tasks.len() >= JOB_TASKS_KEPT {
            self.tasks.remove(0);
        }
        self.tasks.push((job, task));
    }
}

/// The dataset of a job prepared as every node prepares it, before any
/// encoder: split, one-hot encoded under the chain's category bound and
/// standardised. The job's transaction passed `check_job`, which prepares
/// it the same way.
pub fn job_data(params: &ChainParams, spec: &JobSpec) -> Result<Prepared, BlockError> {
    let prepare = || -> Result<Prepared, crate::dataset::DatasetError> {
        let csv = CsvDataset::from_bytes(&spec.name, &spec.dataset)?;
        Prepared::new(
            &csv,
            &spec.target,
            spec.features.as_deref(),
            spec.holdout_every,
            params.jobs.max_categories as usize,
        )
    };
    prepare().map_err(|e| BlockError::UntrainableJob {
        reason: e.to_string(),
    })
}

/// Prepare the task of a job from its spec, as every node does: the
/// dataset ([`job_data`]), run through the job's encoder if it has one
/// (schema/jobs.md: every row in file order, [`ENCODER_JOB_BATCH`] rows a
/// call, with ONNX Runtime as `ort` says), and the chain's task constants
/// scaled by the job's step cost against the genesis task's.
///
/// An encoder that does not load, does not take the job's features,
/// gives a non-finite output, or gives more outputs per row than the
/// chain's feature or parameter bounds allow makes the job untrainable:
/// a transaction or block that carries it is refused.
pub fn job_task(
    params: &ChainParams,
    spec: &JobSpec,
    reference_cost: u64,
    ort: &OrtSetup,
) -> Result<Task, BlockError> {
    let mut data = job_data(params, spec)?;
    if let Some(bytes) = &spec.encoder {
        let untrainable = |e: anyhow::Error| BlockError::UntrainableJob {
            reason: format!("{e:#}"),
        };
        let file = format!("the encoder of job {}", spec.name);
        data = run_encoder(&file, bytes, None, None, ENCODER_JOB_BATCH, &data, ort)
            .map_err(untrainable)?;
        let limits = &params.jobs;
        if data.features() > limits.max_features as usize {
            return Err(untrainable(anyhow::anyhow!(
                "{file} gives {} values per row, over the chain's limit of {} features",
                data.features(),
                limits.max_features
            )));
        }
        let count = spec.head.param_count(data.features());
        if count > limits.max_params as usize {
            return Err(untrainable(anyhow::anyhow!(
                "the {} head on the {} outputs of {file} has {count} parameters, over the \
                 chain's limit of {}",
                spec.head.name(),
                data.features(),
                limits.max_params
            )));
        }
    }
    Ok(Task::for_job(spec, data, &params.task, reference_cost))
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

/// Run an `onnx_linear` chain's encoder over every row in file order,
/// `encoder_batch` rows per call, and train the head on its outputs.
fn encode(
    onnx: &OnnxLinearParams,
    encoder: &EncoderFile,
    prepared: &Prepared,
    ort: &OrtSetup,
) -> Result<Prepared> {
    run_encoder(
        &onnx.file,
        &encoder.bytes,
        Some((onnx.blake3, onnx.input.clone())),
        Some(encoder.output_width),
        onnx.encoder_batch as usize,
        prepared,
        ort,
    )
    .with_context(|| format!("this chain's task runs the ONNX encoder {}", onnx.file))
}

/// Run the encoder `bytes` (named `file` in messages) over every row of
/// `prepared` in file order, `batch` rows per call: the features of the
/// head it feeds. `pinned` is the hash and input name the file must have,
/// `width` the outputs per row it must give; a job's encoder has neither.
fn run_encoder(
    file: &str,
    bytes: &[u8],
    pinned: Option<(Hash32, String)>,
    width: Option<usize>,
    batch: usize,
    prepared: &Prepared,
    ort: &OrtSetup,
) -> Result<Prepared> {
    let runtime = onnx::runtime(ort.library.as_deref())?;
    let (blake3, input_name) = match pinned {
        Some((hash, input)) => (Some(hash.to_hex()), Some(input)),
        None => (None, None),
    };
    let spec = ModelSpec {
        blake3,
        input_name,
        features: Some(prepared.features()),
        text_input: None,
    };
    let mut model =
        OnnxModel::load(runtime, file, bytes, &spec, &ort.session).map_err(|e| match e {
            OnnxError::InputShape { .. } => anyhow::Error::new(e).context(format!(
                "the encoder runs on the {} feature columns of the dataset ({})",
                prepared.features(),
                prepared.feature_names.join(",")
            )),
            other => anyhow::Error::new(other),
        })?;
    let output_width = model.output_width();
    if let Some(expected) = width.filter(|&w| w != output_width) {
        bail!(
            "encoder {file}: output {:?} has {output_width} values per row, the chain's task \
             expects {expected}",
            model.output_name(),
        );
    }
    let d = prepared.features();
    let rows = prepared.rows_in_file_order_f32();
    let mut outputs = Vec::with_capacity(rows.len() / d * output_width);
    for chunk in rows.chunks(batch * d) {
        model.run_into(chunk, &mut outputs)?;
    }
    if let Some(at) = outputs.iter().position(|v| !v.is_finite()) {
        bail!(
            "encoder {file}: output {} of row {} is {}; the head cannot train on it",
            at % output_width,
            at / output_width,
            outputs[at]
        );
    }
    let encoded: Vec<f64> = outputs.iter().map(|&v| f64::from(v)).collect();
    let names = (0..output_width)
        .map(|k| format!("{}[{k}]", model.output_name()))
        .collect();
    prepared
        .with_features(names, &encoded)
        .with_context(|| format!("encoder {file} gave the wrong number of outputs"))
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
        if store.params().jobs.allow_encoder {
            // A block may carry a job whose encoder every node runs.
            onnx::runtime(ort.library.as_deref()).with_context(|| {
                format!(
                    "chain {} allows training jobs with an ONNX encoder, which every node runs",
                    store.params().network
                )
            })?;
        }
        let mut limits = store.params().limits(task.data.features());
        // A job's head may have more parameters than the genesis task's.
        limits.max_params = limits
            .max_params
            .max(store.params().jobs.max_params as usize);
        Ok(Chain {
            store,
            task: Arc::new(task),
            inputs,
            limits,
            jobs: Mutex::new(JobTasks::default()),
            ort: ort.clone(),
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

    /// The task of `job`: the genesis task, or a job's, prepared from its
    /// spec when first needed; `find_spec` finds the spec of a job not
    /// prepared yet. `UnknownJob` when there is no such job.
    pub fn job_task(
        &self,
        job: &Hash32,
        find_spec: impl FnOnce() -> Result<Option<JobSpec>, StoreError>,
    ) -> Result<Arc<Task>, SubmitError> {
        if *job == GENESIS_JOB {
            return Ok(Arc::clone(&self.task));
        }
        if let Some(task) = self.jobs.lock().unwrap_or_else(|e| e.into_inner()).get(job) {
            return Ok(task);
        }
        let spec = find_spec()?.ok_or(BlockError::UnknownJob { job: *job })?;
        let task = Arc::new(job_task(self.params(), &spec, self.task.cost, &self.ort)?);
        self.jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .put(*job, Arc::clone(&task));
        Ok(task)
    }

    /// The rule that needs ONNX Runtime (schema/jobs.md, "Jobs with an
    /// encoder"): every job in `txs` that carries an encoder can be
    /// trained. Its task is prepared, and kept for when the job runs.
    pub fn check_encoder_jobs(&self, txs: &[Tx]) -> Result<(), BlockError> {
        for t in txs {
            let TxKind::SubmitJob(spec) = &t.fields.kind else {
                continue;
            };
            if spec.encoder.is_none() {
                continue;
            }
            let job = t.id();
            match self.job_task(&job, || Ok(Some((**spec).clone()))) {
                Ok(_) => {}
                Err(SubmitError::Invalid(BlockError::UntrainableJob { reason })) => {
                    return Err(BlockError::UntrainableJob {
                        reason: format!("job {job}: {reason}"),
                    })
                }
                Err(SubmitError::Invalid(other)) => return Err(other),
                Err(SubmitError::Store(e)) => unreachable!("the spec is at hand: {e}"),
            }
        }
        Ok(())
    }

    /// The task of `job` for a child of `parent`, whose spec is on the
    /// best chain or on the branch that ends at `parent`.
    pub fn task_for(&self, job: &Hash32, parent: &Hash32) -> Result<Arc<Task>, SubmitError> {
        self.job_task(job, || self.store.job_spec(job, parent))
    }

    /// The model a block of `job` starts from.
    pub fn start_model(&self, job: &JobContext, task: &Task) -> Result<Vec<f64>, SubmitError> {
        match job.start {
            Some(hash) => self.model(&hash),
            None => Ok(task.initial_params(&job.job)),
        }
    }

    /// Where a child of `parent` stands in `job`.
    pub fn job_context(
        &self,
        ctx: &ParentContext,
        job: &Hash32,
    ) -> Result<JobContext, SubmitError> {
        JobContext::build(&self.store, &ctx.parent, job).ok_or(SubmitError::Invalid(
            BlockError::UnknownParent {
                parent: ctx.parent.hash,
            },
        ))
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
        let job = block.header.fields.job;
        let ctx = self.context(&parent)?;
        let task = self.task_for(&job, &parent)?;
        let job = self.job_context(&ctx, &job)?;
        let start_model = self.start_model(&job, &task)?;
        let training = Training {
            task: &task,
            job: &job,
            reference_cost: self.task.cost,
            start_model: &start_model,
        };
        self.check_encoder_jobs(&block.body.txs)?;
        let owner = self.work_owner();
        Ok(consensus::validate_block(
            self.params(),
            &ctx,
            &training,
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
