//! `pouwd export-model`: the chain's model as JSON, usable outside the node.

use super::inspect::resolve;
use super::{output, DataDirArg};
use crate::node::{Chain, DataDir};
use anyhow::{Context, Result};
use serde_json::json;
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
}

pub fn run(args: ExportModelArgs) -> Result<()> {
    let dir = DataDir::new(&args.dir.data_dir);
    let chain = Chain::open(&dir)?;
    let store = &chain.store;
    let hash = match args.height {
        Some(h) => resolve(store, &h.to_string())?,
        None => store.tip()?.hash,
    };
    let meta = store.meta(&hash)?.context("block metadata missing")?;
    let params = chain.model(&hash)?;
    let data = &chain.task.data;
    let d = data.features();
    let features: Vec<_> = data
        .feature_names
        .iter()
        .zip(&data.feature_scaling)
        .map(|(name, s)| json!({"name": name, "mean": s.mean, "std": s.std}))
        .collect();
    let model = json!({
        "format": "pouwd-linear-model/1",
        "network": chain.params().network,
        "height": meta.height,
        "block": hash.to_hex(),
        "kind": "linear",
        "feature_names": data.feature_names,
        "target_name": data.target_name,
        "weights": &params[..d],
        "bias": params[d],
        "normalisation": {
            "features": features,
            "target": {"name": data.target_name, "mean": data.target_scaling.mean, "std": data.target_scaling.std},
        },
        "score_ppm": meta.score_ppm,
        "score_r2": f64::from(meta.score_ppm) / 1e6,
        "predict": "z_j = (x_j - features[j].mean) / features[j].std; \
                    y = (bias + sum_j weights[j] * z_j) * target.std + target.mean",
    });
    let mut out = output(&args.out)?;
    serde_json::to_writer_pretty(&mut out, &model)?;
    writeln!(out)?;
    out.flush()
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    if args.out.as_os_str() != "-" {
        eprintln!(
            "wrote the model of block {} (height {}) to {}",
            hash,
            meta.height,
            args.out.display()
        );
    }
    Ok(())
}
