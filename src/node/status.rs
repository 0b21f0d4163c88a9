//! The node's status as JSON, shared by `pouwd status` and the status file
//! a running node keeps in its data dir.

use crate::chain::Hash32;
use crate::store::Store;
use anyhow::Result;
use serde_json::{json, Value};

pub fn status_json(store: &Store, miner: &Hash32) -> Result<Value> {
    let tip = store.tip()?;
    let meta = store.meta(&tip.hash)?;
    let account = store.account(miner)?;
    let params = store.params();
    Ok(json!({
        "network": params.network,
        "genesis": store.genesis_hash().to_hex(),
        "height": tip.height,
        "tip": tip.hash.to_hex(),
        "score_ppm": meta.as_ref().map_or(0, |m| m.score_ppm),
        "target": meta.as_ref().map(|m| m.target.to_hex()),
        "cumulative_work": tip.cumulative_work.to_string(),
        "miner": miner.to_hex(),
        "balance": account.spendable.saturating_add(account.immature),
        "spendable": account.spendable,
        "nonce": account.nonce,
        "reward_amount": params.reward_amount,
        // The job the next block trains: all zeros for the genesis task.
        "next_job": store.scheduled_job()?.to_hex(),
    }))
}
