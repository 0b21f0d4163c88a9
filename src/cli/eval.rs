//! `pouwd eval`: run an exported ONNX model on a CSV and score it, so a
//! model trained offline can be compared with the chain's.
//!
//! The model's input takes the CSV's feature columns as raw values: the
//! inputs listed in the model's `pouwd.features` metadata when it has them
//! (`pouwd export-model` stores them: each a numeric column, or one
//! category of a text column, 1.0 when the cell equals it and 0.0
//! otherwise), else the columns named in `pouwd.feature_names` (the
//! training scripts store those), else every column but the target, in
//! file order. A CSV whose columns do not fit the model's input is refused
//! before anything runs.
//!
//! A graph `pouwd export-model` wrote for data with text columns encodes
//! them itself: besides (or instead of) `features` it has a string input
//! `text`, and its metadata `pouwd.inputs` names the CSV columns each
//! input holds, in order. Eval then feeds those numeric columns and the
//! text columns' cells (trimmed, as the node reads them) as they are.

use crate::dataset::{Column, CsvDataset, FeatureSource};
use crate::model::onnx::{self, ExecutionProvider, ModelSpec, OnnxModel, OrtSetup, SessionConfig};
use crate::model::onnx_export::{TextInputs, TEXT_INPUT_NAME};
use anyhow::{bail, Context, Result};
use serde_json::json;
use std::path::PathBuf;
use std::time::Instant;

/// How ONNX models run: the runtime library, provider and threads.
#[derive(Debug, Clone, clap::Args)]
pub struct OrtArgs {
    /// ONNX Runtime shared library (libonnxruntime.so.1.31.1). Without it:
    /// ORT_DYLIB_PATH, else the .venv that tools/ort_lib.sh installs.
    #[arg(long, value_name = "PATH")]
    pub ort_lib: Option<PathBuf>,
    /// Execution provider: auto (CUDA when it can be had, else CPU), cpu, or
    /// cuda (an error when CUDA cannot be had).
    #[arg(long, value_name = "EP", default_value = "auto")]
    pub ort_ep: ExecutionProvider,
    /// Threads one ONNX operator may use on CPU.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    pub ort_threads: u16,
}

impl OrtArgs {
    pub fn session_config(&self) -> SessionConfig {
        SessionConfig {
            provider: self.ort_ep,
            intra_threads: usize::from(self.ort_threads),
        }
    }

    pub fn setup(&self) -> OrtSetup {
        OrtSetup {
            library: self.ort_lib.clone(),
            session: self.session_config(),
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// The ONNX model: one float32 input [batch, features] (and, for a graph
    /// that encodes text columns, a string input `text`), one prediction
    /// per row.
    #[arg(long, value_name = "FILE")]
    pub model: PathBuf,
    /// A CSV file with a header row; the target and the numeric inputs must be numbers.
    #[arg(long, value_name = "FILE")]
    pub dataset: PathBuf,
    /// The column the model predicts.
    #[arg(long, value_name = "COL")]
    pub target: String,
    /// The name of the model's float32 input, as `export-model --format onnx`
    /// and the training scripts name it.
    #[arg(long, value_name = "NAME", default_value = "features")]
    pub input_name: String,
    /// Refuse the model unless its bytes have this BLAKE3 hash (hex).
    #[arg(long, value_name = "HEX", value_parser = blake3_arg)]
    pub blake3: Option<String>,
    /// Score only the holdout rows of a chain with this `holdout_every`
    /// (row r, from 0, when r % K == K - 1), as the chain and the training
    /// scripts score.
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u32).range(1..))]
    pub holdout_every: Option<u32>,
    /// Rows per inference call.
    #[arg(long, value_name = "N", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub batch: u32,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub ort: OrtArgs,
}

/// clap's parser of `--blake3`: 64 hex digits.
fn blake3_arg(text: &str) -> Result<String, String> {
    match crate::chain::Hash32::from_hex(text) {
        Ok(_) => Ok(text.to_string()),
        Err(e) => Err(format!("not a BLAKE3 hash: {e}")),
    }
}

pub fn run(args: EvalArgs) -> Result<()> {
    let model_file = args.model.display().to_string();
    let csv_file = args.dataset.display().to_string();
    let model_bytes =
        std::fs::read(&args.model).with_context(|| format!("cannot read {model_file}"))?;
    let csv_bytes =
        std::fs::read(&args.dataset).with_context(|| format!("cannot read {csv_file}"))?;
    let mut data = CsvDataset::from_bytes(&csv_file, &csv_bytes)?;
    let runtime = onnx::runtime(args.ort.ort_lib.as_deref())?;
    let spec = ModelSpec {
        blake3: args.blake3.clone(),
        input_name: Some(args.input_name.clone()),
        features: None,
        text_input: Some(TEXT_INPUT_NAME.to_string()),
    };
    let mut model = OnnxModel::load(
        runtime,
        &model_file,
        &model_bytes,
        &spec,
        &args.ort.session_config(),
    )?;
    if model.output_width() != 1 {
        bail!(
            "{model_file}: output {:?} has {} values per row; eval scores a model with one \
             prediction per row (is this an encoder?)",
            model.output_name(),
            model.output_width()
        );
    }

    // Before the columns are matched, which may fail for the very reason.
    if let Some(trained) = model.metadata("pouwd.target") {
        if trained != args.target {
            tracing::warn!(
                target: "pouwd",
                "warning: {model_file} was trained to predict {trained:?}, scoring it against {:?}",
                args.target
            );
        }
    }
    let sources = match model.metadata("pouwd.features") {
        Some(text) => serde_json::from_str::<Vec<FeatureSource>>(&text).with_context(|| {
            format!("{model_file}: metadata pouwd.features is not a list of features: {text}")
        })?,
        None => {
            let named: Option<Vec<String>> = model
                .metadata("pouwd.feature_names")
                .map(|names| names.split(',').map(str::to_string).collect());
            data.resolve_features(&args.target, named.as_deref())?
                .iter()
                .map(|name| FeatureSource::numeric(name))
                .collect()
        }
    };
    let features: Vec<String> = sources.iter().map(FeatureSource::name).collect();
    let scored: Vec<usize> = match args.holdout_every {
        Some(k) => {
            let k = k as usize;
            (0..data.rows()).skip(k - 1).step_by(k).collect()
        }
        None => (0..data.rows()).collect(),
    };
    if scored.len() < 2 {
        bail!(
            "{csv_file}: {} rows to score; R² needs at least 2",
            scored.len()
        );
    }
    let batch = args.batch as usize;
    let mut predictions = Vec::with_capacity(scored.len());
    let started;
    if let Some((text_name, columns)) = model.text_input() {
        let text_name = text_name.to_string();
        let inputs = model.metadata("pouwd.inputs").with_context(|| {
            format!(
                "{model_file}: the graph has the text input {text_name:?} but no metadata \
                 pouwd.inputs naming its columns"
            )
        })?;
        let inputs: TextInputs = serde_json::from_str(&inputs).with_context(|| {
            format!("{model_file}: metadata pouwd.inputs is not {{\"features\": [...], \"text\": [...]}}: {inputs}")
        })?;
        if inputs.text.len() != columns || inputs.features.len() != model.features() {
            bail!(
                "{model_file}: metadata pouwd.inputs names {} numeric and {} text columns, but \
                 the graph's inputs take {} and {columns}",
                inputs.features.len(),
                inputs.text.len(),
                model.features()
            );
        }
        // Text columns are compared as text, even where this CSV's column
        // holds only numbers.
        let text: Vec<&str> = inputs.text.iter().map(String::as_str).collect();
        data = CsvDataset::from_bytes_with_text(&csv_file, &csv_bytes, &text)?;
        let numeric = inputs
            .features
            .iter()
            .map(|name| data.numeric(name))
            .collect::<Result<Vec<_>, _>>()?;
        let mut cells = Vec::with_capacity(text.len());
        for name in &text {
            let c = data.column_index(name)?;
            let Column::Text { cells: column, .. } = &data.data[c] else {
                bail!("{csv_file}: column {name:?} was not read as text");
            };
            cells.push(column);
        }
        let (mut rows, mut row_cells) = (Vec::new(), Vec::new());
        started = Instant::now();
        for chunk in scored.chunks(batch) {
            rows.clear();
            row_cells.clear();
            for &r in chunk {
                // f64 to the nearest f32: the model's input type.
                rows.extend(numeric.iter().map(|values| values[r] as f32));
                row_cells.extend(cells.iter().map(|column| column[r].as_str()));
            }
            model.run_text_into(&rows, &row_cells, &mut predictions)?;
        }
    } else {
        if features.len() != model.features() {
            bail!(
                "{csv_file} does not fit {model_file}: the model's input {:?} takes {} values per \
                 row, but the CSV has {} feature columns besides the target {:?}: {}",
                model.input_name(),
                model.features(),
                features.len(),
                args.target,
                features.join(",")
            );
        }
        // A one-hot input compares the cells of its column as text, even
        // where this CSV's column holds only numbers.
        let one_hot: Vec<&str> = sources
            .iter()
            .filter(|s| s.category.is_some())
            .map(|s| s.column.as_str())
            .collect();
        let read_as_numbers = |name: &&str| {
            data.column_index(name)
                .is_ok_and(|c| matches!(data.data[c], Column::Numeric(_)))
        };
        if one_hot.iter().any(read_as_numbers) {
            data = CsvDataset::from_bytes_with_text(&csv_file, &csv_bytes, &one_hot)?;
        }
        let raw = data.encode(&sources)?;
        let d = model.features();
        let mut rows = Vec::with_capacity(scored.len() * d);
        for &r in &scored {
            // f64 to the nearest f32: the model's input type.
            rows.extend(raw[r * d..(r + 1) * d].iter().map(|&v| v as f32));
        }
        started = Instant::now();
        for chunk in rows.chunks(batch * d) {
            model.run_into(chunk, &mut predictions)?;
        }
    }
    let target = data.numeric(&args.target)?;
    let seconds = started.elapsed().as_secs_f64();

    let actual: Vec<f64> = scored.iter().map(|&r| target[r]).collect();
    let (r2, mse) = r2_and_mse(&predictions, &actual);
    let rows_per_s = actual.len() as f64 / seconds.max(1e-9);
    if args.json {
        let out = json!({
            "model": model_file,
            "blake3": model.blake3(),
            "provider": model.provider().ort_name(),
            "dataset": csv_file,
            "rows": actual.len(),
            "holdout_every": args.holdout_every,
            "features": features,
            "target": args.target,
            "r2": r2,
            "mse": mse,
            "rows_per_s": rows_per_s,
            "batch": batch,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("model: {model_file} (blake3 {})", model.blake3());
        let which = match args.holdout_every {
            Some(k) => format!(" (the holdout rows, every {k}th)"),
            None => String::new(),
        };
        println!(
            "dataset: {csv_file}: {} rows{which}, target {}, {} features",
            actual.len(),
            args.target,
            features.len()
        );
        println!("provider: {}", model.provider().ort_name());
        println!("R²: {r2:.6}");
        println!("MSE: {mse:.6}");
        println!(
            "rows/s: {rows_per_s:.0} ({} rows in {:.3} ms, batch {batch})",
            actual.len(),
            seconds * 1e3
        );
    }
    Ok(())
}

/// R² and mean squared error of float32 predictions against the target, in f64.
fn r2_and_mse(predicted: &[f32], actual: &[f64]) -> (f64, f64) {
    let n = actual.len() as f64;
    let mean = actual.iter().sum::<f64>() / n;
    let mut residual = 0.0;
    let mut total = 0.0;
    for (&p, &y) in predicted.iter().zip(actual) {
        let e = f64::from(p) - y;
        residual += e * e;
        total += (y - mean) * (y - mean);
    }
    let r2 = if total > 0.0 {
        1.0 - residual / total
    } else {
        f64::NAN
    };
    (r2, residual / n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfect_predictions_score_one() {
        let (r2, mse) = r2_and_mse(&[1.0, 2.0, 3.0], &[1.0, 2.0, 3.0]);
        assert_eq!((r2, mse), (1.0, 0.0));
    }

    #[test]
    fn predicting_the_mean_scores_zero() {
        let (r2, mse) = r2_and_mse(&[2.0, 2.0, 2.0], &[1.0, 2.0, 3.0]);
        assert_eq!(r2, 0.0);
        assert!((mse - 2.0 / 3.0).abs() < 1e-15);
    }
}
