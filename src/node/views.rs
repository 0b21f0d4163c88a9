//! JSON views of stored blocks and models, shared by the command line
//! (`pouwd inspect --json`, `pouwd export-model`) and the local API, so
//! both always show the same fields.
//!
//! Views only read the store; they never write to it.

use super::chain::TaskInputs;
use crate::chain::Hash32;
use crate::consensus::params::ChainParams;
use crate::store::{Store, StoreError};
use crate::work::{self, Run};
use serde_json::{json, Value};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ViewError {
    #[error("{text:?} is neither a height nor a block hash (64 hex digits)")]
    NotABlockRef { text: String },
    #[error("{text:?}: {reason}")]
    BadHash { text: String, reason: String },
    #[error("no block {0} in this data dir")]
    UnknownHash(Hash32),
    #[error("no block at height {height}; the best chain's tip is at {tip}")]
    UnknownHeight { height: u64, tip: u64 },
    #[error("the store has no metadata for block {0}")]
    MissingMeta(Hash32),
    #[error("the store has no model for block {0}")]
    MissingModel(Hash32),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ViewError {
    /// The caller named something malformed, rather than something absent.
    pub fn is_malformed(&self) -> bool {
        matches!(
            self,
            ViewError::NotABlockRef { .. } | ViewError::BadHash { .. }
        )
    }

    /// The caller named a block this store does not hold.
    pub fn is_unknown(&self) -> bool {
        matches!(
            self,
            ViewError::UnknownHash(_) | ViewError::UnknownHeight { .. }
        )
    }
}

/// A block named by its height on the best chain or by its hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockRef {
    Height(u64),
    Hash(Hash32),
}

impl BlockRef {
    /// 64 characters are a hash; anything else must be a decimal height.
    pub fn parse(text: &str) -> Result<BlockRef, ViewError> {
        if text.len() == 64 {
            return Hash32::from_hex(text)
                .map(BlockRef::Hash)
                .map_err(|reason| ViewError::BadHash {
                    text: text.to_string(),
                    reason,
                });
        }
        text.parse()
            .map(BlockRef::Height)
            .map_err(|_| ViewError::NotABlockRef {
                text: text.to_string(),
            })
    }
}

/// The stored block `which` names.
pub fn resolve(store: &Store, which: BlockRef) -> Result<Hash32, ViewError> {
    match which {
        BlockRef::Hash(hash) if store.contains(&hash)? => Ok(hash),
        BlockRef::Hash(hash) => Err(ViewError::UnknownHash(hash)),
        BlockRef::Height(height) => match store.hash_at(height)? {
            Some(hash) => Ok(hash),
            None => Err(ViewError::UnknownHeight {
                height,
                tip: store.tip()?.height,
            }),
        },
    }
}

/// One block's header, work and spot checks, as `pouwd inspect --json` shows it.
pub fn block_json(store: &Store, params: &ChainParams, hash: &Hash32) -> Result<Value, ViewError> {
    let meta = store.meta(hash)?.ok_or(ViewError::MissingMeta(*hash))?;
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
    let mut fees: u64 = 0;
    let txs: Vec<Value> = block
        .body
        .txs
        .iter()
        .map(|t| {
            fees = fees.saturating_add(t.fields.fee);
            tx_json(t)
        })
        .collect();
    let segments: Vec<Value> = work::challenged_segments(&work_hash, m, params.task.spot_checks)
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
        "tx_root": f.tx_root.to_hex(),
        "spot_checked_segments": segments,
        "tail_steps": [m * c + 1, f.steps],
        "reward": params.reward_amount,
        "fees": fees,
        "txs": txs,
        "cumulative_work": meta.work().to_string(),
        "size_bytes": block.to_bytes().len(),
    }))
}

/// A transaction's fields as JSON: amounts in base units.
pub fn tx_json(t: &crate::tx::Tx) -> Value {
    let f = &t.fields;
    let mut out = json!({
        "id": t.id().to_hex(),
        "from": f.from.to_hex(),
        "nonce": f.nonce,
        "fee": f.fee,
        "size_bytes": t.to_bytes().len(),
    });
    match &f.kind {
        crate::tx::TxKind::Transfer { to, amount } => {
            out["kind"] = "transfer".into();
            out["to"] = to.to_hex().into();
            out["amount"] = (*amount).into();
        }
    }
    out
}

/// The model of block `hash` as `pouwd export-model` writes it: weights,
/// bias, normalisation and the prediction formula, usable outside the node.
pub fn model_json(store: &Store, inputs: &TaskInputs, hash: &Hash32) -> Result<Value, ViewError> {
    let meta = store.meta(hash)?.ok_or(ViewError::MissingMeta(*hash))?;
    let params = store
        .model(hash, inputs.dim())?
        .ok_or(ViewError::MissingModel(*hash))?;
    let d = inputs.dim() - 1;
    let features: Vec<Value> = inputs
        .feature_names
        .iter()
        .zip(&inputs.feature_scaling)
        .map(|(name, s)| json!({"name": name, "mean": s.mean, "std": s.std}))
        .collect();
    let target = &inputs.target_scaling;
    let mut model = json!({
        "format": "pouwd-linear-model/1",
        "network": store.params().network,
        "height": meta.height,
        "block": hash.to_hex(),
        "kind": store.params().task.model.name(),
        "feature_names": inputs.feature_names,
        "target_name": inputs.target_name,
        "weights": &params[..d],
        "bias": params[d],
        "normalisation": {
            "features": features,
            "target": {"name": inputs.target_name, "mean": target.mean, "std": target.std},
        },
        "score_ppm": meta.score_ppm,
        "score_r2": f64::from(meta.score_ppm) / 1e6,
        "predict": "z_j = (x_j - features[j].mean) / features[j].std; \
                    y = (bias + sum_j weights[j] * z_j) * target.std + target.mean",
    });
    if let Some(encoder) = &inputs.encoder {
        model["encoder"] = json!({
            "file": encoder.file,
            "blake3": encoder.blake3.to_hex(),
            "output_width": encoder.output_width,
        });
        model["predict"] = json!(
            "z_j = (x_j - features[j].mean) / features[j].std; e = encoder(float32(z)); \
             y = (bias + sum_k weights[k] * e_k) * target.std + target.mean"
        );
    }
    Ok(model)
}

/// The scores of `hash` and up to `limit - 1` of its ancestors, oldest
/// first: `[{height, hash, score_ppm}]`. Following parent links rather
/// than the height index keeps the history on one branch even while a
/// reorg moves the best chain.
pub fn score_history(store: &Store, hash: &Hash32, limit: usize) -> Result<Value, ViewError> {
    let mut history = Vec::with_capacity(limit.min(1024));
    let mut next = Some(*hash);
    while let Some(hash) = next.filter(|_| history.len() < limit) {
        let meta = store.meta(&hash)?.ok_or(ViewError::MissingMeta(hash))?;
        history.push(json!({
            "height": meta.height,
            "hash": hash.to_hex(),
            "score_ppm": meta.score_ppm,
        }));
        next = (meta.height > 0).then_some(meta.parent);
    }
    history.reverse();
    Ok(Value::Array(history))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_refs_parse_heights_and_hashes_and_refuse_the_rest() {
        assert_eq!(BlockRef::parse("0").unwrap(), BlockRef::Height(0));
        assert_eq!(BlockRef::parse("42").unwrap(), BlockRef::Height(42));
        let hex = "ab".repeat(32);
        assert_eq!(
            BlockRef::parse(&hex).unwrap(),
            BlockRef::Hash(Hash32([0xab; 32]))
        );
        for bad in ["", "tip", "-1", "1.5", "0x10", "18446744073709551616"] {
            let e = BlockRef::parse(bad).unwrap_err();
            assert!(e.is_malformed() && !e.is_unknown(), "{bad:?}: {e}");
        }
        let e = BlockRef::parse(&"zz".repeat(32)).unwrap_err();
        assert!(e.is_malformed(), "{e}");
    }
}
