//! JSON views of stored blocks, models, accounts and transactions, shared
//! by the command line (`pouwd inspect --json`, `pouwd export-model`,
//! `pouwd wallet --json`, `pouwd tx --json`) and the local API, so both
//! always show the same fields.
//!
//! Amounts are integers of base units; beside each, a `…_tokens` field
//! gives it as tokens with 8 decimals ([`crate::tx::amount::format`]).
//!
//! Views only read the store; they never write to it.

use super::chain::TaskInputs;
use crate::chain::Hash32;
use crate::consensus::params::ChainParams;
use crate::ledger::jobs::{JobState, JobStatus};
use crate::store::{Store, StoreError};
use crate::tx::{amount, Account, JobSpec, Tx, TxKind};
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
    #[error("no transaction {0} in the pool or on the best chain")]
    UnknownTx(Hash32),
    #[error("no job {0} on the best chain (a job exists once a block includes its transaction)")]
    UnknownJob(Hash32),
    #[error("the store's index puts transaction {tx} in block {block}, which does not hold it")]
    MissingTx { tx: Hash32, block: Hash32 },
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
            ViewError::UnknownHash(_)
                | ViewError::UnknownHeight { .. }
                | ViewError::UnknownTx(_)
                | ViewError::UnknownJob(_)
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

/// The model of block `hash` as `pouwd export-model` writes it: weights,
/// bias, normalisation and the prediction formula, usable outside the node.
pub fn model_json(store: &Store, inputs: &TaskInputs, hash: &Hash32) -> Result<Value, ViewError> {
    let meta = store.meta(hash)?.ok_or(ViewError::MissingMeta(*hash))?;
    let params = store
        .model(hash, inputs.dim())?
        .ok_or(ViewError::MissingModel(*hash))?;
    let d = inputs.dim() - 1;
    let features = feature_normalisation(inputs);
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
        "predict": "x_j = the CSV cell of features[j].column, or, when features[j] has a \
                    category, 1 if that cell equals it, else 0; \
                    z_j = (x_j - features[j].mean) / features[j].std; \
                    y = (bias + sum_j weights[j] * z_j) * target.std + target.mean",
    });
    if let Some(encoder) = &inputs.encoder {
        model["encoder"] = json!({
            "file": encoder.file,
            "blake3": encoder.blake3.to_hex(),
            "output_width": encoder.output_width,
        });
        model["predict"] = json!(
            "x_j = the CSV cell of features[j].column, or, when features[j] has a category, \
             1 if that cell equals it, else 0; \
             z_j = (x_j - features[j].mean) / features[j].std; e = encoder(float32(z)); \
             y = (bias + sum_k weights[k] * e_k) * target.std + target.mean"
        );
    }
    Ok(model)
}

/// Each feature's column (and category, for a one-hot column), mean and
/// standard deviation.
fn feature_normalisation(inputs: &TaskInputs) -> Vec<Value> {
    inputs
        .feature_names
        .iter()
        .zip(&inputs.feature_sources)
        .zip(&inputs.feature_scaling)
        .map(|((name, source), s)| {
            let mut feature = json!({
                "name": name,
                "column": source.column,
                "mean": s.mean,
                "std": s.std,
            });
            if let Some(category) = &source.category {
                feature["category"] = json!(category);
            }
            feature
        })
        .collect()
}

/// How to read a one-hot feature and standardise it, in `predict` texts.
const STANDARDISE: &str = "x_j = the CSV cell of features[j].column, or, when features[j] has \
                           a category, 1 if that cell equals it, else 0; \
                           z_j = (x_j - features[j].mean) / features[j].std; ";

/// The model a training job delivers, from the parameters `params` of
/// its block `hash`, as `pouwd export-model --job` writes it: the linear
/// layout of [`model_json`] for a `linear` head; for `mlp:H`, `w1` (H
/// rows of d weights), `b1`, `w2` and `b2`. `inputs` is the job's
/// prepared data before its encoder, and the encoder, if it has one.
pub fn job_model_json(
    store: &Store,
    job: &Hash32,
    spec: &JobSpec,
    inputs: &TaskInputs,
    hash: &Hash32,
    params: &[f64],
) -> Result<Value, ViewError> {
    let meta = store.meta(hash)?.ok_or(ViewError::MissingMeta(*hash))?;
    let target = &inputs.target_scaling;
    // The head's inputs: the features, or the encoder's outputs.
    let d = inputs.dim() - 1;
    let mut model = json!({
        "network": store.params().network,
        "job": job.to_hex(),
        "job_name": spec.name,
        "height": meta.height,
        "block": hash.to_hex(),
        "job_block": meta.job_block,
        "kind": spec.head.name(),
        "feature_names": inputs.feature_names,
        "target_name": inputs.target_name,
        "normalisation": {
            "features": feature_normalisation(inputs),
            "target": {"name": inputs.target_name, "mean": target.mean, "std": target.std},
        },
        "score_ppm": meta.score_ppm,
        "score_r2": score(meta.score_ppm),
    });
    let expected = spec.head.param_count(d);
    if params.len() != expected {
        return Err(ViewError::Store(StoreError::Corrupt(format!(
            "block {hash} of job {job} has {} parameters; its {} head on {d} features has {expected}",
            params.len(),
            spec.head.name()
        ))));
    }
    match spec.head {
        crate::tx::Head::Linear => {
            model["format"] = "pouwd-linear-model/1".into();
            model["weights"] = json!(&params[..d]);
            model["bias"] = json!(params[d]);
            model["predict"] = format!(
                "{STANDARDISE}y = (bias + sum_j weights[j] * z_j) * target.std + target.mean"
            )
            .into();
            if let Some(encoder) = &inputs.encoder {
                model["encoder"] = json!({
                    "blake3": encoder.blake3.to_hex(),
                    "output_width": encoder.output_width,
                });
                model["predict"] = format!(
                    "{STANDARDISE}e = encoder(float32(z)), the job's ONNX encoder (its \
                     transaction holds it); \
                     y = (bias + sum_k weights[k] * e_k) * target.std + target.mean"
                )
                .into();
            }
        }
        crate::tx::Head::Mlp { hidden } => {
            let h = hidden as usize;
            let (w1, rest) = params.split_at(h * d);
            let (b1, rest) = rest.split_at(h);
            let (w2, b2) = rest.split_at(h);
            model["format"] = "pouwd-mlp-model/1".into();
            model["hidden"] = hidden.into();
            model["w1"] = w1.chunks(d.max(1)).map(|row| json!(row)).collect();
            model["b1"] = json!(b1);
            model["w2"] = json!(w2);
            model["b2"] = json!(b2[0]);
            model["predict"] = format!(
                "{STANDARDISE}a_u = max(0, b1[u] + sum_j w1[u][j] * z_j); \
                 y = (b2 + sum_u w2[u] * a_u) * target.std + target.mean"
            )
            .into();
        }
    }
    Ok(model)
}

/// The scores of `hash` and up to `limit - 1` of its ancestors, oldest
/// first: `[{height, hash, score_ppm, timestamp_ms, job}]`. Following parent links rather
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
            "timestamp_ms": meta.timestamp_ms,
            "job": meta.job.to_hex(),
        }));
        next = (meta.height > 0).then_some(meta.parent);
    }
    history.reverse();
    Ok(Value::Array(history))
}

/// An account: its balances in base units and in tokens, its nonce, and
/// `next_nonce`, the nonce its next transaction takes once the pending
/// ones (`pending` of them) are counted.
pub fn account_json(id: &Hash32, account: &Account, next_nonce: u64) -> Value {
    let total = account.spendable.saturating_add(account.immature);
    json!({
        "id": id.to_hex(),
        "total": total,
        "spendable": account.spendable,
        "immature": account.immature,
        "total_tokens": amount::format(total),
        "spendable_tokens": amount::format(account.spendable),
        "immature_tokens": amount::format(account.immature),
        "nonce": account.nonce,
        "next_nonce": next_nonce,
        "pending": next_nonce.saturating_sub(account.nonce),
    })
}

/// A transaction's fields, its id and size, and its fee per byte.
pub fn tx_json(tx: &Tx) -> Value {
    let f = &tx.fields;
    let bytes = tx.to_bytes().len();
    let mut out = json!({
        "id": tx.id().to_hex(),
        "version": f.version,
        "chain": f.chain.to_hex(),
        "from": f.from.to_hex(),
        "nonce": f.nonce,
        "fee": f.fee,
        "fee_tokens": amount::format(f.fee),
        "bytes": bytes,
        "fee_per_byte": f.fee as f64 / bytes as f64,
    });
    match &f.kind {
        TxKind::Transfer { to, amount: value } => {
            out["kind"] = "transfer".into();
            out["to"] = to.to_hex().into();
            out["amount"] = (*value).into();
            out["amount_tokens"] = amount::format(*value).into();
        }
        TxKind::SubmitJob(spec) => {
            out["kind"] = "submit_job".into();
            out["job"] = job_spec_json(spec);
        }
    }
    out
}

/// What a job asks for: everything but the dataset's bytes.
pub fn job_spec_json(spec: &JobSpec) -> Value {
    json!({
        "name": spec.name,
        "dataset_bytes": spec.dataset.len(),
        "target": spec.target,
        "features": spec.features,
        "encoder_bytes": spec.encoder.as_ref().map(Vec::len),
        "encoder_blake3": spec.encoder.as_ref().map(|e| blake3::hash(e).to_hex().to_string()),
        "head": spec.head.name(),
        "batch_size": spec.batch_size,
        "learning_rate": spec.learning_rate,
        "lr_half_life_blocks": spec.lr_half_life_blocks,
        "holdout_every": spec.holdout_every,
        "max_blocks": spec.max_blocks,
        "patience": spec.patience,
        "min_improvement_ppm": spec.min_improvement_ppm,
        "bounty": spec.bounty,
        "bounty_tokens": amount::format(spec.bounty),
        "pay_per_block": spec.pay_per_block(),
    })
}

/// A score in ppm as the decimal R² it stands for.
fn score(ppm: u32) -> f64 {
    f64::from(ppm) / 1e6
}

/// `queued`, `active` or `ended`.
pub fn job_state_name(status: &JobStatus) -> &'static str {
    match status {
        JobStatus::Queued => "queued",
        JobStatus::Active => "active",
        JobStatus::Ended { .. } => "ended",
    }
}

/// One job as `GET /jobs` lists it: its state and place in the queue
/// (`position` 1 is the next to start), its blocks, its best score and
/// its money. `queue` is [`Store::job_queue`]; `spec` is the job's, when
/// the store still finds it.
pub fn job_summary_json(
    id: &Hash32,
    job: &JobState,
    spec: Option<&JobSpec>,
    queue: &[Hash32],
) -> Value {
    let position = queue.iter().position(|q| q == id).map(|at| at + 1);
    // What was escrowed: the spec's bounty, or what the state accounts for.
    let bounty = spec.map_or(
        job.paid
            .saturating_add(job.escrow)
            .saturating_add(job.refunded),
        |s| s.bounty,
    );
    let (ended_height, end_reason) = match job.status {
        JobStatus::Ended { height, reason } => (Some(height), Some(reason.name())),
        _ => (None, None),
    };
    json!({
        "id": id.to_hex(),
        "name": spec.map(|s| s.name.clone()),
        "head": spec.map(|s| s.head.name()),
        "sender": job.sender.to_hex(),
        "included_height": job.included_height,
        "state": job_state_name(&job.status),
        "position": position,
        "blocks": job.blocks,
        "max_blocks": job.max_blocks,
        "patience": job.patience,
        "best_score_ppm": job.best.map(|b| b.score_ppm),
        "best_score": job.best.map(|b| score(b.score_ppm)),
        "bounty": bounty,
        "bounty_tokens": amount::format(bounty),
        "pay_per_block": job.pay_per_block,
        "pay_per_block_tokens": amount::format(job.pay_per_block),
        "escrow": job.escrow,
        "escrow_tokens": amount::format(job.escrow),
        "paid": job.paid,
        "paid_tokens": amount::format(job.paid),
        "refunded": job.refunded,
        "refunded_tokens": amount::format(job.refunded),
        "ended_height": ended_height,
        "end_reason": end_reason,
    })
}

/// Every job on the best chain, in inclusion order, as [`job_summary_json`].
pub fn jobs_json(store: &Store) -> Result<Value, ViewError> {
    let tip = store.tip()?.hash;
    let queue = store.job_queue()?;
    let mut out = Vec::new();
    for (id, job) in store.jobs()? {
        let spec = store.job_spec(&id, &tip)?;
        out.push(job_summary_json(&id, &job, spec.as_ref(), &queue));
    }
    Ok(Value::Array(out))
}

/// The blocks of job `id` on the best chain, oldest first: they are
/// consecutive, so from its last block (the tip while it is active, its
/// end's block once ended) back while the header names the job.
pub fn job_blocks(
    store: &Store,
    id: &Hash32,
    job: &JobState,
) -> Result<Vec<(Hash32, crate::store::BlockMeta)>, ViewError> {
    let last = match job.status {
        JobStatus::Queued => None,
        JobStatus::Active => Some(store.tip()?.hash),
        JobStatus::Ended { height, .. } => store.hash_at(height)?,
    };
    let mut blocks = Vec::new();
    let mut next = last;
    while let Some(hash) = next {
        let meta = store.meta(&hash)?.ok_or(ViewError::MissingMeta(hash))?;
        if meta.job != *id || meta.height == 0 {
            break;
        }
        next = Some(meta.parent);
        blocks.push((hash, meta));
    }
    blocks.reverse();
    Ok(blocks)
}

/// Job `id` as `GET /jobs/{id}` shows it: [`job_summary_json`], its spec
/// ([`job_spec_json`]), its score curve (each of its blocks: height,
/// hash, number in the job, score, miner and pay), what each miner was
/// paid, and the block whose model it delivers (its best).
pub fn job_json(store: &Store, id: &Hash32) -> Result<Value, ViewError> {
    let job = store.job(id)?.ok_or(ViewError::UnknownJob(*id))?;
    let tip = store.tip()?.hash;
    let spec = store.job_spec(id, &tip)?;
    let queue = store.job_queue()?;
    let mut out = job_summary_json(id, &job, spec.as_ref(), &queue);
    out["spec"] = spec.as_ref().map_or(Value::Null, job_spec_json);
    // Each block is paid `pay_per_block` while the escrow lasts.
    let mut left = out["bounty"].as_u64().unwrap_or_default();
    let mut miners: Vec<(Hash32, u64, u64)> = Vec::new();
    let mut curve = Vec::new();
    for (hash, meta) in job_blocks(store, id, &job)? {
        let pay = job.pay_per_block.min(left);
        left -= pay;
        match miners.iter_mut().find(|(m, _, _)| *m == meta.miner) {
            Some((_, blocks, paid)) => {
                *blocks += 1;
                *paid = paid.saturating_add(pay);
            }
            None => miners.push((meta.miner, 1, pay)),
        }
        curve.push(json!({
            "height": meta.height,
            "hash": hash.to_hex(),
            "job_block": meta.job_block,
            "score_ppm": meta.score_ppm,
            "score": score(meta.score_ppm),
            "miner": meta.miner.to_hex(),
            "paid": pay,
        }));
    }
    out["curve"] = Value::Array(curve);
    out["miners"] = miners
        .into_iter()
        .map(|(miner, blocks, paid)| {
            json!({
                "miner": miner.to_hex(),
                "blocks": blocks,
                "paid": paid,
                "paid_tokens": amount::format(paid),
            })
        })
        .collect();
    out["delivered"] = match job.best {
        Some(best) => json!({
            "block": best.block.to_hex(),
            "height": best.height,
            "job_block": best.job_block,
            "score_ppm": best.score_ppm,
            "score": score(best.score_ppm),
        }),
        None => Value::Null,
    };
    Ok(out)
}

/// A transaction waiting in the pool: [`tx_json`] with `state: pending`.
pub fn pending_tx_json(tx: &Tx) -> Value {
    let mut out = tx_json(tx);
    out["state"] = "pending".into();
    out
}

/// Transaction `id` in a block of the best chain: [`tx_json`] with
/// `state: in_block`, the block's `height` and `block` hash, its `index`
/// in the block and its `confirmations` (1 in the tip); `None` when the
/// best chain does not hold it.
pub fn tx_in_chain(store: &Store, id: &Hash32) -> Result<Option<Value>, ViewError> {
    let Some((height, hash)) = store.tx_location(id)? else {
        return Ok(None);
    };
    let missing = || ViewError::MissingTx {
        tx: *id,
        block: hash,
    };
    let block = store.block(&hash)?.ok_or_else(missing)?;
    let (index, tx) = block
        .body
        .txs
        .iter()
        .enumerate()
        .find(|(_, tx)| tx.id() == *id)
        .ok_or_else(missing)?;
    let tip = store.tip()?.height;
    let mut out = tx_json(tx);
    out["state"] = "in_block".into();
    out["height"] = height.into();
    out["block"] = hash.to_hex().into();
    out["index"] = index.into();
    out["confirmations"] = (tip.saturating_sub(height) + 1).into();
    Ok(Some(out))
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

    #[test]
    fn accounts_and_transactions_show_base_units_and_tokens() {
        let id = Hash32([1; 32]);
        let account = Account {
            spendable: 150_000_000,
            immature: 5_000_000_000,
            nonce: 3,
        };
        assert_eq!(
            account_json(&id, &account, 5),
            json!({
                "id": id.to_hex(),
                "total": 5_150_000_000u64,
                "spendable": 150_000_000,
                "immature": 5_000_000_000u64,
                "total_tokens": "51.50000000",
                "spendable_tokens": "1.50000000",
                "immature_tokens": "50.00000000",
                "nonce": 3,
                "next_nonce": 5,
                "pending": 2,
            })
        );
        let key = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
        let tx = crate::tx::TxFields {
            version: crate::tx::TX_VERSION,
            chain: Hash32([7; 32]),
            from: Hash32(key.verifying_key().to_bytes()),
            nonce: 4,
            fee: 1_000,
            kind: TxKind::Transfer {
                to: id,
                amount: 123_456_789,
            },
        }
        .sign(&key);
        let bytes = tx.to_bytes().len();
        let view = pending_tx_json(&tx);
        assert_eq!(view["state"], "pending");
        assert_eq!(view["id"], tx.id().to_hex());
        assert_eq!(view["from"], hex::encode(key.verifying_key().to_bytes()));
        assert_eq!(view["to"], id.to_hex());
        assert_eq!(view["kind"], "transfer");
        assert_eq!(view["nonce"], 4);
        assert_eq!(view["amount"], 123_456_789);
        assert_eq!(view["amount_tokens"], "1.23456789");
        assert_eq!(view["fee"], 1_000);
        assert_eq!(view["fee_tokens"], "0.00001000");
        assert_eq!(view["bytes"], bytes);
        assert_eq!(view["fee_per_byte"], 1_000.0 / bytes as f64);
    }
}
