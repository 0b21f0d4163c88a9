//! `pouwd export-model`: the chain's model as JSON, usable outside the node.

use super::{output, DataDirArg};
use crate::node::chain::prepare_inputs;
use crate::node::views::{model_json, resolve, BlockRef};
use crate::node::DataDir;
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
    let store = &dir.open_store()?;
    let files = dir.load_task_files(store.params())?;
    let (_, inputs) = prepare_inputs(store.params(), &files)?;
    let hash = match args.height {
        Some(height) => resolve(store, BlockRef::Height(height))?,
        None => store.tip()?.hash,
    };
    let model = model_json(store, &inputs, &hash)?;
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
