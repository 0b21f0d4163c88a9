//! `pouwd inspect`: one block's header, work and spot checks.

use super::DataDirArg;
use crate::chain::Hash32;
use crate::consensus::params::ChainParams;
use crate::node::DataDir;
use crate::store::Store;
use crate::work::{self, Run};
use anyhow::{Context, Result};
use serde_json::json;

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

/// Resolve a height or a hash to a stored block hash.
pub fn resolve(store: &Store, which: &str) -> Result<Hash32> {
    if which.len() == 64 {
        let hash = Hash32::from_hex(which).map_err(|e| anyhow::anyhow!("{which:?}: {e}"))?;
        if !store.contains(&hash)? {
            anyhow::bail!("no block {hash} in this data dir");
        }
        return Ok(hash);
    }
    let height: u64 = which.parse().with_context(|| {
        format!("{which:?} is neither a height nor a block hash (64 hex digits)")
    })?;
    let tip = store.tip()?;
    store.hash_at(height)?.with_context(|| {
        format!(
            "no block at height {height}; the best chain's tip is at {}",
            tip.height
        )
    })
}

pub fn run(args: InspectArgs) -> Result<()> {
    let dir = DataDir::new(&args.dir.data_dir);
    let store = dir.open_store()?;
    let hash = resolve(&store, &args.block)?;
    let params = store.params().clone();
    let info = describe(&store, &params, &hash)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&info)?);
    } else if let serde_json::Value::Object(map) = info {
        for (key, value) in map {
            match value {
                serde_json::Value::String(s) => println!("{key}: {s}"),
                other => println!("{key}: {other}"),
            }
        }
    }
    Ok(())
}

fn describe(store: &Store, params: &ChainParams, hash: &Hash32) -> Result<serde_json::Value> {
    let meta = store.meta(hash)?.context("block metadata missing")?;
    let on_best = store.hash_at(meta.height)? == Some(*hash);
    let Some(block) = store.block(hash)? else {
        return Ok(json!({
            "hash": hash.to_hex(),
            "height": 0,
            "genesis": true,
            "network": params.network,
            "timestamp_ms": meta.timestamp_ms,
            "target": meta.target.to_hex(),
            "message": params.genesis_message,
        }));
    };
    let f = &block.header.fields;
    let c = params.task.checkpoint_interval;
    let work_hash =
        Run::new(&f.parent, &f.miner, f.lane).work_hash(f.steps, &f.model_hash, &f.ckpt_root);
    let m = f.steps / c;
    let segments: Vec<serde_json::Value> =
        work::challenged_segments(&work_hash, m, params.task.spot_checks)
            .into_iter()
            .map(|s| json!({"segment": s, "steps": [(s - 1) * c + 1, s * c]}))
            .collect();
    Ok(json!({
        "hash": hash.to_hex(),
        "height": f.height,
        "best_chain": on_best,
        "version": f.version,
        "parent": f.parent.to_hex(),
        "timestamp_ms": f.timestamp_ms,
        "target": f.target.to_hex(),
        "work_hash": work_hash.to_hex(),
        "miner": f.miner.to_hex(),
        "lane": f.lane,
        "steps": f.steps,
        "checkpoints": m,
        "model_hash": f.model_hash.to_hex(),
        "ckpt_root": f.ckpt_root.to_hex(),
        "score_ppm": f.score_ppm,
        "body_hash": f.body_hash.to_hex(),
        "spot_checked_segments": segments,
        "tail_steps": [m * c + 1, f.steps],
        "reward": params.reward_amount,
        "cumulative_work": meta.work().to_string(),
        "size_bytes": block.to_bytes().len(),
    }))
}
