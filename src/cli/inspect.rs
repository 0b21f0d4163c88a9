//! `pouwd inspect`: one block's header, work and spot checks.

use super::{DataDirArg, InvalidArgument};
use crate::node::views::{block_json, resolve, BlockRef};
use crate::node::DataDir;
use anyhow::{Context, Result};

#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    #[command(flatten)]
    pub dir: DataDirArg,
    /// Block height on the best chain, or a block hash (64 hex digits).
    #[arg(value_name = "HEIGHT|HASH")]
    pub block: String,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: InspectArgs) -> Result<()> {
    let block = BlockRef::parse(&args.block).context(InvalidArgument("HEIGHT|HASH"))?;
    let dir = DataDir::new(&args.dir.data_dir);
    let store = dir.open_store()?;
    let hash = resolve(&store, block)?;
    let info = block_json(&store, store.params(), &hash)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&info)?);
    } else {
        super::print_fields(&info, &["reward", "fees"]);
    }
    Ok(())
}
