//! `pouwd status`: the tip, its work and the node's balance.

use super::DataDirArg;
use crate::chain::Hash32;
use crate::node::status::status_json;
use crate::node::DataDir;
use crate::store::{Store, StoreError};
use anyhow::{bail, Context, Result};
use serde_json::Value;

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub dir: DataDirArg,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: StatusArgs) -> Result<()> {
    let dir = DataDir::new(&args.dir.data_dir);
    if !dir.exists() {
        bail!(
            "{} is not a pouwd data dir (no store/ inside)",
            dir.root.display()
        );
    }
    let status = match Store::open(&dir.store_path()) {
        Ok(store) => {
            let key = dir.load_key()?;
            let mut status = status_json(&store, &Hash32(key.verifying_key().to_bytes()))?;
            status["running"] = false.into();
            status
        }
        Err(StoreError::Locked { .. }) => running_status(&dir)?,
        Err(e) => return Err(e.into()),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        if status["running"] == true {
            println!(
                "a node is running on {} (pid {}); status as of its last block:",
                dir.root.display(),
                status["pid"]
            );
        }
        if let Value::Object(map) = &status {
            for (key, value) in map {
                match value {
                    Value::String(s) => println!("{key}: {s}"),
                    other => println!("{key}: {other}"),
                }
            }
        }
    }
    Ok(())
}

/// The status a running node wrote into its data dir.
fn running_status(dir: &DataDir) -> Result<Value> {
    let path = dir.status_path();
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "a node is running on {} (its store is locked) but its status file {} cannot be read",
            dir.root.display(),
            path.display()
        )
    })?;
    let mut status: Value = serde_json::from_str(&text)
        .with_context(|| format!("status file {} is not JSON", path.display()))?;
    status["running"] = true.into();
    Ok(status)
}
