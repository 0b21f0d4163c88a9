//! `pouwd export-model`: the chain's model at a height, usable outside the
//! node: as JSON (the parameters and the standardisation, schema/export.md)
//! or as one ONNX graph (raw CSV features in, the prediction out; for an
//! `onnx_linear` chain the encoder and its head together).
//!
//! The graph does not one-hot encode: a text column's input is its
//! one-hot columns as 0.0/1.0 values, one per category, and the metadata
//! `pouwd.features` lists every input's column and category so that
//! `pouwd eval` (or any caller) can encode a CSV's text cells first.

use super::{output, DataDirArg};
use crate::chain::Hash32;
use crate::model::onnx_export::{to_onnx, GraphModel};
use crate::node::chain::{prepare_inputs, TaskInputs};
use crate::node::views::{model_json, resolve, BlockRef};
use crate::node::DataDir;
use crate::store::Store;
use anyhow::{Context, Result};
use std::io::Write;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct ExportModelArgs {
    #[command(flatten)]
    pub dir: DataDirArg,
    /// Height on the best chain (default: the tip).
    #[arg(long, value_name = "H")]
    pub height: Option<u64>,
    /// Output file, or `-` for stdout.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// `json`, or `onnx`: one graph with input `features` [batch, d] of raw
    /// CSV values (a text column as its one-hot 0/1 columns, listed in the
    /// metadata `pouwd.features`) and output `prediction` [batch, 1] in the
    /// target's units.
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
        eprintln!(
            "wrote the model of block {} (height {}) to {}",
            hash,
            model["height"],
            args.out.display()
        );
    }
    Ok(())
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
    // The graph does not one-hot encode; say so where a reader of the
    // metadata looks first.
    let input = if inputs.feature_sources.iter().any(|s| s.category.is_some()) {
        "raw, text columns one-hot encoded as pouwd.features lists"
    } else {
        "raw"
    };
    let metadata: Vec<(String, String)> = [
        ("pouwd.kind", chain.task.model.name().to_string()),
        ("pouwd.input", input.to_string()),
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
    ]
    .into_iter()
    .map(|(key, value)| (key.to_string(), value))
    .collect();
    let graph = GraphModel {
        feature_scaling: &inputs.feature_scaling,
        target_scaling: inputs.target_scaling,
        params: &params,
        encoder: inputs.encoder.as_ref().map(|e| e.bytes.as_slice()),
        metadata: &metadata,
    };
    to_onnx(&graph).context("cannot write the model as ONNX")
}
