//! `pouwd export-model`: the chain's model at a height, usable outside the
//! node: as JSON (the parameters and the standardisation, schema/export.md)
//! or as one ONNX graph (raw CSV features in, the prediction out; for an
//! `onnx_linear` chain the encoder and its head together).
//!
//! A graph of data without text columns has one input, `features`
//! [batch, d], the CSV's raw feature values. When the model's features
//! include a text column's one-hot columns, the graph takes the raw
//! columns and one-hot encodes them itself: `features` [batch, n] holds the
//! numeric feature columns and `text` [batch, t] (ONNX strings) the text
//! columns' cells, each in the order the metadata `pouwd.inputs` lists
//! (`{"features": [...], "text": [...]}`); a cell no category names
//! encodes as all zeros, as the node encodes it. `pouwd.features` lists
//! the model's features after encoding, each a column and its category.

use super::{output, DataDirArg};
use crate::chain::Hash32;
use crate::ledger::JobStatus;
use crate::model::onnx_export::{mlp_to_onnx, text_inputs, to_onnx, GraphModel};
use crate::node::chain::{job_data, prepare_inputs, EncoderFile, TaskInputs};
use crate::node::views::{job_model_json, job_state_name, model_json, resolve, BlockRef};
use crate::node::DataDir;
use crate::store::Store;
use crate::tx::Head;
use anyhow::{bail, Context, Result};
use std::io::Write;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct ExportModelArgs {
    #[command(flatten)]
    pub dir: DataDirArg,
    /// Height on the best chain (default: the tip).
    #[arg(long, value_name = "H", conflicts_with = "job")]
    pub height: Option<u64>,
    /// Export the model a training job delivers instead: its best block's
    /// (while it runs, its best so far), for the job's own data and head.
    #[arg(long, value_name = "ID", value_parser = |text: &str| Hash32::from_hex(text))]
    pub job: Option<Hash32>,
    /// Output file, or `-` for stdout.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// `json`, or `onnx`: one graph with input `features` [batch, d] of raw
    /// CSV values and output `prediction` [batch, 1] in the target's units;
    /// with text columns, `features` holds the numeric columns and a second
    /// input `text` (strings) the text columns' cells, which the graph
    /// one-hot encodes (the metadata `pouwd.inputs` lists both inputs'
    /// columns in order).
    #[arg(long, value_name = "FORMAT", default_value = "json")]
    pub format: ModelFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ModelFormat {
    Json,
    Onnx,
}

pub fn run(args: ExportModelArgs) -> Result<()> {
    let dir = DataDir::new(&args.dir.data_dir);
    let store = &dir.open_store()?;
    if let Some(job) = args.job {
        return run_job(store, &job, &args);
    }
    let files = dir.load_task_files(store.params())?;
    let (_, inputs) = prepare_inputs(store.params(), &files)?;
    let hash = match args.height {
        Some(height) => resolve(store, BlockRef::Height(height))?,
        None => store.tip()?.hash,
    };
    let model = model_json(store, &inputs, &hash)?;
    let bytes = match args.format {
        ModelFormat::Json => {
            let mut text = serde_json::to_vec_pretty(&model)?;
            text.push(b'\n');
            text
        }
        ModelFormat::Onnx => onnx_graph(store, &inputs, &hash, &model)?,
    };
    let mut out = output(&args.out)?;
    out.write_all(&bytes)?;
    out.flush()
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    if args.out.as_os_str() != "-" {
        crate::say!(
            "wrote the model of block {} (height {}) to {}",
            hash,
            model["height"],
            args.out.display()
        );
    }
    Ok(())
}

/// `--job ID`: the job's delivered model, for its own data and head.
fn run_job(store: &Store, id: &Hash32, args: &ExportModelArgs) -> Result<()> {
    let job = store.job(id)?.with_context(|| {
        format!(
            "no job {id} on the best chain (`pouwd job list` lists them; a job exists once a \
             block includes its transaction)"
        )
    })?;
    let tip = store.tip()?.hash;
    let spec = store
        .job_spec(id, &tip)?
        .with_context(|| format!("the store has no transaction for job {id}"))?;
    // Its best block's model; a job that has trained no block has none.
    let hash = match (job.best, job.status) {
        (Some(best), _) => best.block,
        (None, JobStatus::Active) => tip,
        (None, _) => bail!(
            "job {id} has trained no block yet ({}): there is no model to export",
            job_state_name(&job.status)
        ),
    };
    // The job's data prepared as every node prepares it, before the
    // encoder: the graph runs the encoder itself.
    let data = job_data(store.params(), &spec)
        .with_context(|| format!("cannot prepare the dataset of job {id}"))?;
    let params = store
        .block(&hash)?
        .with_context(|| format!("the store has no block {hash}"))?
        .body
        .params;
    let inputs = TaskInputs {
        feature_names: data.feature_names.clone(),
        feature_sources: data.feature_sources.clone(),
        feature_scaling: data.feature_scaling.clone(),
        target_name: data.target_name.clone(),
        target_scaling: data.target_scaling,
        encoder: spec.encoder.as_ref().map(|bytes| EncoderFile {
            file: format!("the encoder of job {id}"),
            blake3: Hash32(*blake3::hash(bytes).as_bytes()),
            output_width: params.len().saturating_sub(1),
            bytes: bytes.clone(),
        }),
    };
    let model = job_model_json(store, id, &spec, &inputs, &hash, &params)?;
    let bytes = match args.format {
        ModelFormat::Json => {
            let mut text = serde_json::to_vec_pretty(&model)?;
            text.push(b'\n');
            text
        }
        ModelFormat::Onnx => {
            let entries = vec![
                ("pouwd.kind", spec.head.name()),
                ("pouwd.input", input_kind(&inputs).to_string()),
                ("pouwd.feature_names", inputs.feature_names.join(",")),
                (
                    "pouwd.features",
                    serde_json::to_string(&inputs.feature_sources)?,
                ),
                ("pouwd.target", inputs.target_name.clone()),
                ("pouwd.holdout_every", spec.holdout_every.to_string()),
                ("pouwd.network", store.params().network.clone()),
                ("pouwd.job", id.to_hex()),
                ("pouwd.job_name", spec.name.clone()),
                ("pouwd.block", hash.to_hex()),
                ("pouwd.height", model["height"].to_string()),
                ("pouwd.job_block", model["job_block"].to_string()),
                ("pouwd.score_ppm", model["score_ppm"].to_string()),
                ("pouwd.trained_by", "pouwd export-model --job".to_string()),
            ];
            let metadata = with_inputs(&inputs, entries)?;
            let graph = GraphModel {
                feature_scaling: &inputs.feature_scaling,
                feature_sources: Some(&inputs.feature_sources),
                target_scaling: inputs.target_scaling,
                params: &params,
                encoder: spec.encoder.as_deref(),
                metadata: &metadata,
            };
            match spec.head {
                Head::Linear => to_onnx(&graph),
                Head::Mlp { hidden } => mlp_to_onnx(&graph, hidden as usize),
            }
            .context("cannot write the model as ONNX")?
        }
    };
    let mut out = output(&args.out)?;
    out.write_all(&bytes)?;
    out.flush()
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    if args.out.as_os_str() != "-" {
        crate::say!(
            "wrote the model job {id} delivers ({} head, block {} of the job at height {}, \
             R² {}) to {}",
            spec.head.name(),
            model["job_block"],
            model["height"],
            model["score_r2"],
            args.out.display()
        );
    }
    Ok(())
}

/// `pouwd.input` of a graph: the raw columns, text ones as strings.
fn input_kind(inputs: &TaskInputs) -> &'static str {
    if inputs.feature_sources.iter().any(|s| s.category.is_some()) {
        "raw; numeric columns in input features, text columns as strings in input text, \
         one-hot encoded by the graph; pouwd.inputs lists both in order"
    } else {
        "raw"
    }
}

/// The metadata of a graph, with `pouwd.inputs` (the columns each graph
/// input holds, in order) after `pouwd.input` when the graph encodes text;
/// a graph without text columns keeps the keys it always had.
fn with_inputs(inputs: &TaskInputs, entries: Vec<(&str, String)>) -> Result<Vec<(String, String)>> {
    let text = text_inputs(&inputs.feature_sources)?;
    let mut metadata = Vec::with_capacity(entries.len() + 1);
    for (key, value) in entries {
        metadata.push((key.to_string(), value));
        if let (Some(text), "pouwd.input") = (&text, key) {
            metadata.push(("pouwd.inputs".to_string(), serde_json::to_string(text)?));
        }
    }
    Ok(metadata)
}

/// The model of `hash` as one ONNX graph, with the metadata `pouwd eval`
/// and the training scripts' graphs carry.
fn onnx_graph(
    store: &Store,
    inputs: &TaskInputs,
    hash: &Hash32,
    model: &serde_json::Value,
) -> Result<Vec<u8>> {
    let params = store
        .model(hash, inputs.dim())?
        .with_context(|| format!("block {hash} has no stored model"))?;
    let chain = store.params();
    let entries = vec![
        ("pouwd.kind", chain.task.model.name().to_string()),
        ("pouwd.input", input_kind(inputs).to_string()),
        ("pouwd.feature_names", inputs.feature_names.join(",")),
        (
            "pouwd.features",
            serde_json::to_string(&inputs.feature_sources)?,
        ),
        ("pouwd.target", inputs.target_name.clone()),
        ("pouwd.holdout_every", chain.task.holdout_every.to_string()),
        ("pouwd.network", chain.network.clone()),
        ("pouwd.block", hash.to_hex()),
        ("pouwd.height", model["height"].to_string()),
        ("pouwd.score_ppm", model["score_ppm"].to_string()),
        ("pouwd.trained_by", "pouwd export-model".to_string()),
    ];
    let metadata = with_inputs(inputs, entries)?;
    let graph = GraphModel {
        feature_scaling: &inputs.feature_scaling,
        feature_sources: Some(&inputs.feature_sources),
        target_scaling: inputs.target_scaling,
        params: &params,
        encoder: inputs.encoder.as_ref().map(|e| e.bytes.as_slice()),
        metadata: &metadata,
    };
    to_onnx(&graph).context("cannot write the model as ONNX")
}
