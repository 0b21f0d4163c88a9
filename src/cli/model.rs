//! `pouwd export-model`: the chain's model as JSON, usable outside the node.

use super::{output, DataDirArg};
use crate::node::views::{model_json, resolve, BlockRef};
use crate::node::{Chain, DataDir};
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
}

pub fn run(args: ExportModelArgs) -> Result<()> {
    let dir = DataDir::new(&args.dir.data_dir);
    let chain = Chain::open(&dir)?;
    let store = &chain.store;
    let hash = match args.height {
        Some(height) => resolve(store, BlockRef::Height(height))?,
        None => store.tip()?.hash,
    };
    let model = model_json(&chain, &hash)?;
    let mut out = output(&args.out)?;
    serde_json::to_writer_pretty(&mut out, &model)?;
    writeln!(out)?;
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
