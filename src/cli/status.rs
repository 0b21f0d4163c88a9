//! `pouwd status`: the tip, its work and the node's balance.
//!
//! On a stopped node it reads the store. On a running one (its store is
//! locked) it asks the node's API when the node serves one, and otherwise
//! shows the status file the node wrote at its last block.

use super::DataDirArg;
use crate::api::client::get_json;
use crate::chain::Hash32;
use crate::node::status::status_json;
use crate::node::DataDir;
use crate::store::{Store, StoreError};
use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;

/// How long `pouwd status` waits on each step of a running node's API.
const API_TIMEOUT: Duration = Duration::from_secs(3);

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
            status["source"] = "store".into();
            status
        }
        Err(StoreError::Locked { .. }) => running_status(&dir)?,
        Err(e) => return Err(e.into()),
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

/// A running node's status: from its API when it serves one and answers,
/// otherwise from the status file it wrote into its data dir.
fn running_status(dir: &DataDir) -> Result<Value> {
    let mut status = status_file(dir)?;
    if let Some(api) = status["api"].as_str().map(str::to_string) {
        match api_status(&api, &status["pid"]) {
            Ok(live) => return Ok(live),
            Err(e) => eprintln!(
                "note: the node's API at {api} did not answer ({e:#}); \
                 showing the status file the node wrote at its last block"
            ),
        }
    }
    status["source"] = "status_file".into();
    Ok(status)
}

/// `/status` from the API at `api`, if the process that answers is the
/// node that wrote the status file (`pid`).
fn api_status(api: &str, pid: &Value) -> Result<Value> {
    let addr: SocketAddr = api
        .parse()
        .with_context(|| format!("the status file's api {api:?} is not an address"))?;
    let mut status = get_json(addr, "/status", API_TIMEOUT)?;
    if status["pid"] != *pid {
        bail!(
            "it is process {}, not the node's process {pid}",
            status["pid"]
        );
    }
    status["source"] = "api".into();
    Ok(status)
}

/// The status file a running node keeps in its data dir.
fn status_file(dir: &DataDir) -> Result<Value> {
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
