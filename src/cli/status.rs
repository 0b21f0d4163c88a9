//! `pouwd status`: the tip, its work and the node's balance.
//!
//! On a stopped node it reads the store. On a running one (its store is
//! locked) it asks the node's API when the node serves one, and otherwise
//! shows the status file the node wrote at its last block.

use super::running::{access, Access, RunningNode};
use super::{print_fields, DataDirArg};
use crate::chain::Hash32;
use crate::node::status::status_json;
use crate::node::DataDir;
use anyhow::Result;
use serde_json::Value;
use std::time::Duration;

/// How long `pouwd status` waits on each step of a running node's API.
const API_TIMEOUT: Duration = Duration::from_secs(3);

/// Fields shown in tokens in the text output (base units in JSON).
const AMOUNTS: [&str; 3] = ["balance", "spendable", "reward_amount"];

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
    let status = match access(&dir)? {
        Access::Stopped(store) => {
            let key = dir.load_key()?;
            let mut status = status_json(&store, &Hash32(key.verifying_key().to_bytes()))?;
            status["running"] = false.into();
            status["source"] = "store".into();
            status
        }
        Access::Running(node) => running_status(node),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        if status["source"] == "api" {
            println!(
                "a node is running on {} (pid {}); live status from its API at {}:",
                dir.root.display(),
                status["pid"],
                status["api"].as_str().unwrap_or_default()
            );
        } else if status["running"] == true {
            println!(
                "a node is running on {} (pid {}); status as of its last block:",
                dir.root.display(),
                status["pid"]
            );
        }
        print_fields(&status, &AMOUNTS);
    }
    Ok(())
}

/// A running node's status: from its API when it serves one and answers,
/// otherwise from the status file it wrote into its data dir.
fn running_status(node: RunningNode) -> Value {
    let api = node.api();
    if let Ok(Some(addr)) = api {
        match node.live_status(addr, API_TIMEOUT) {
            Ok(mut live) => {
                live["source"] = "api".into();
                return live;
            }
            Err(e) => tracing::warn!(
                target: "pouwd",
                "note: the node's API at {addr} did not answer ({e:#}); \
                 showing the status file the node wrote at its last block"
            ),
        }
    } else if let Err(e) = api {
        crate::say!("note: {e:#}; showing the status file the node wrote at its last block");
    }
    let mut status = node.status;
    status["source"] = "status_file".into();
    status
}
