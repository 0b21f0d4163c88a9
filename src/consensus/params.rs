//! Chain parameters: everything genesis pins (PROTOCOL §2).
//!
//! A chain is described by a JSON file (config/devnet.json is one). The
//! genesis hash is `SHA-256("pouw/genesis" ‖ postcard(ChainParams))`, so it
//! commits to every value here, the dataset's BLAKE3 hash included.

use crate::chain::{encoding, tagged_sha256, Hash32, Limits};
use primitive_types::U256;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The protocol version this node runs: 2 adds transactions and the
/// ledger (schema/transactions.md). Chain files, stores and export streams
/// of another version are refused with both versions named.
pub const PROTOCOL_VERSION: u32 = 2;

pub use crate::model::MAX_LEARNING_RATE;

/// The largest `lr_half_life_blocks`.
pub const MAX_LR_HALF_LIFE_BLOCKS: u64 = 1_000_000_000;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainParams {
    /// The protocol version; chain files of protocol 1 have no such field.
    pub protocol: u32,
    pub network: String,
    pub genesis_time_ms: u64,
    pub genesis_message: String,
    /// Big-endian 256-bit target of the first blocks, as 64 hex digits.
    #[serde(with = "hex_hash")]
    pub initial_target: Hash32,
    pub target_block_ms: u64,
    /// Blocks per retarget period; 0 keeps the target fixed.
    pub retarget_window: u64,
    /// How far ahead of local time a block's timestamp may be.
    pub max_future_drift_ms: u64,
    pub reward_amount: u64,
    /// Quality gate factor in parts per million (900000 = 0.9).
    pub validation_threshold_ppm: u32,
    pub validation_window: u32,
    /// The most transactions one block may carry.
    pub max_block_txs: u32,
    /// The most bytes the transactions of one block may take, encoded.
    pub max_block_tx_bytes: u32,
    /// The bounds on training jobs.
    pub jobs: crate::tx::JobLimits,
    pub task: TaskParams,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskParams {
    pub dataset: DatasetParams,
    pub model: ModelKind,
    pub batch_size: u32,
    /// `lr0`, the learning rate of a job's first block.
    pub learning_rate: f64,
    /// `h`: block `n` of a job trains at `lr0 · h / (h + n)`.
    pub lr_half_life_blocks: u64,
    pub checkpoint_interval: u64,
    pub spot_checks: u32,
    pub holdout_every: u32,
    /// The most holdout rows in the fixed validation set (`work::validation_set`).
    pub validation_rows: u32,
    pub max_steps_per_block: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetParams {
    /// File name of the CSV, resolved next to the chain file.
    pub file: String,
    #[serde(with = "hex_hash")]
    pub blake3: Hash32,
    pub target: String,
    /// Feature columns; absent means every column but the target.
    #[serde(default)]
    pub features: Option<Vec<String>>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// Native linear regression on the standardised features.
    Linear,
    /// A frozen ONNX encoder in front of a native linear head: the head
    /// trains on the encoder's outputs (schema/consensus.md, `onnx_linear`).
    OnnxLinear(OnnxLinearParams),
}

/// The encoder of an `onnx_linear` task and how its results are compared.
///
/// ONNX Runtime output is not bit-identical across execution providers
/// and machines, so re-executed parameters are compared within
/// `param_tolerance`; to keep that slack from becoming free lottery
/// tickets, checkpoints and final parameters lie on a grid of
/// `2^-param_grid_bits`, and a claimed value must be the grid point
/// nearest the re-executed one, give or take `param_tolerance`
/// (schema/consensus.md).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnnxLinearParams {
    /// File name of the ONNX encoder, resolved next to the chain file.
    pub file: String,
    #[serde(with = "hex_hash")]
    pub blake3: Hash32,
    /// The name of the encoder's one input, `[batch, features]` float32.
    pub input: String,
    /// Output values per row: the head's inputs.
    pub width: u32,
    /// Rows per encoder call: rows are encoded in file order in chunks of
    /// this size, the same on every node.
    pub encoder_batch: u32,
    /// Checkpoints and final parameters are multiples of `2^-param_grid_bits`.
    pub param_grid_bits: u32,
    /// How far a re-executed parameter may be from the claimed one beyond
    /// the half grid step that rounding accounts for.
    pub param_tolerance: f64,
    /// How far the validator's score may be from the header's.
    pub score_tolerance_ppm: u32,
}

impl ModelKind {
    /// The name chain files use.
    pub fn name(&self) -> &'static str {
        match self {
            ModelKind::Linear => "linear",
            ModelKind::OnnxLinear(_) => "onnx_linear",
        }
    }

    pub fn onnx(&self) -> Option<&OnnxLinearParams> {
        match self {
            ModelKind::Linear => None,
            ModelKind::OnnxLinear(onnx) => Some(onnx),
        }
    }
}

#[derive(Debug, Error, PartialEq)]
#[error("chain parameter {name} is invalid: {reason}")]
pub struct ParamsError {
    pub name: &'static str,
    pub reason: String,
}

fn invalid(name: &'static str, reason: impl Into<String>) -> ParamsError {
    ParamsError {
        name,
        reason: reason.into(),
    }
}

impl ChainParams {
    /// Parse and check a chain description.
    pub fn from_json(text: &str) -> Result<ChainParams, ParamsError> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| invalid("(file)", e.to_string()))?;
        // Protocol 1 chain files have no version field: name both versions
        // rather than a missing field.
        let found = match value.get("protocol") {
            None if value.get("network").is_some() => Some(1),
            None => None,
            Some(v) => v.as_u64(),
        };
        if let Some(found) = found.filter(|&v| v != u64::from(PROTOCOL_VERSION)) {
            return Err(invalid(
                "protocol",
                format!(
                    "the chain is of protocol version {found}, and this pouwd runs protocol version {PROTOCOL_VERSION}"
                ),
            ));
        }
        let params: ChainParams =
            serde_json::from_value(value).map_err(|e| invalid("(file)", e.to_string()))?;
        params.check()?;
        Ok(params)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("chain parameters serialise to JSON")
    }

    /// The genesis hash: the id of block 0 and of the network.
    pub fn genesis_hash(&self) -> Hash32 {
        tagged_sha256(b"pouw/genesis", &[&encoding::encode(self)])
    }

    pub fn initial_target_u256(&self) -> U256 {
        U256::from_big_endian(&self.initial_target.0)
    }

    /// Bounds for decoding blocks of this chain, with `features` inputs.
    pub fn limits(&self, features: usize) -> Limits {
        let spot = self.task.spot_checks as usize;
        let defaults = Limits::default();
        Limits {
            max_params: features + 1,
            max_openings: 2 * spot + 1,
            max_txs: self.max_block_txs as usize,
            // The training part keeps its 1 MiB; the transactions add theirs.
            max_body_bytes: defaults.max_body_bytes - encoding::MAX_BLOCK_TX_BYTES
                + self.max_block_tx_bytes as usize,
            ..defaults
        }
    }

    /// Reject parameter sets no chain can run on.
    pub fn check(&self) -> Result<(), ParamsError> {
        let task = &self.task;
        if self.protocol != PROTOCOL_VERSION {
            return Err(invalid(
                "protocol",
                format!("must be {PROTOCOL_VERSION}, the protocol this pouwd runs"),
            ));
        }
        if self.max_block_txs == 0 || self.max_block_txs as usize > encoding::MAX_BLOCK_TXS {
            return Err(invalid(
                "max_block_txs",
                format!("must be 1 to {}", encoding::MAX_BLOCK_TXS),
            ));
        }
        let tx_bytes = self.max_block_tx_bytes as usize;
        if !(crate::tx::MAX_TX_BYTES..=encoding::MAX_BLOCK_TX_BYTES).contains(&tx_bytes) {
            return Err(invalid(
                "max_block_tx_bytes",
                format!(
                    "must be {} to {}",
                    crate::tx::MAX_TX_BYTES,
                    encoding::MAX_BLOCK_TX_BYTES
                ),
            ));
        }
        check_jobs(&self.jobs, tx_bytes)?;
        if self.network.is_empty() || self.network.len() > 64 {
            return Err(invalid("network", "must be 1 to 64 characters"));
        }
        if self.initial_target == Hash32::ZERO {
            return Err(invalid("initial_target", "must not be zero"));
        }
        if self.target_block_ms == 0 {
            return Err(invalid("target_block_ms", "must be at least 1"));
        }
        if self.retarget_window == 1 {
            return Err(invalid("retarget_window", "must be 0 (off) or at least 2"));
        }
        if self.validation_threshold_ppm > 1_000_000 {
            return Err(invalid(
                "validation_threshold_ppm",
                "must be at most 1000000",
            ));
        }
        if self.validation_window == 0 || self.validation_window > 10_000 {
            return Err(invalid("validation_window", "must be 1 to 10000"));
        }
        if task.batch_size == 0 || task.batch_size > 4096 {
            return Err(invalid("task.batch_size", "must be 1 to 4096"));
        }
        if !(task.learning_rate > 0.0 && task.learning_rate <= MAX_LEARNING_RATE) {
            return Err(invalid(
                "task.learning_rate",
                format!("must be above 0 and at most {MAX_LEARNING_RATE}"),
            ));
        }
        if task.lr_half_life_blocks == 0 || task.lr_half_life_blocks > MAX_LR_HALF_LIFE_BLOCKS {
            return Err(invalid(
                "task.lr_half_life_blocks",
                format!("must be 1 to {MAX_LR_HALF_LIFE_BLOCKS}"),
            ));
        }
        if task.checkpoint_interval == 0 {
            return Err(invalid("task.checkpoint_interval", "must be at least 1"));
        }
        if task.spot_checks == 0 || task.spot_checks > 64 {
            return Err(invalid("task.spot_checks", "must be 1 to 64"));
        }
        if task.holdout_every < 2 {
            return Err(invalid("task.holdout_every", "must be at least 2"));
        }
        if task.validation_rows == 0 || task.validation_rows > 100_000 {
            return Err(invalid("task.validation_rows", "must be 1 to 100000"));
        }
        if task.max_steps_per_block == 0 {
            return Err(invalid("task.max_steps_per_block", "must be at least 1"));
        }
        if !is_plain_file_name(&task.dataset.file) {
            return Err(invalid(
                "task.dataset.file",
                "must be a plain file name next to the chain file",
            ));
        }
        if let Some(onnx) = task.model.onnx() {
            check_onnx(onnx, &task.dataset.file)?;
        }
        Ok(())
    }
}

/// The bounds on jobs: each at least 1 and at most what any node can run.
fn check_jobs(jobs: &crate::tx::JobLimits, max_block_tx_bytes: usize) -> Result<(), ParamsError> {
    let job_bytes = jobs.max_job_bytes as usize;
    let most = crate::tx::job::MAX_JOB_TX_BYTES.min(max_block_tx_bytes);
    if !(crate::tx::MAX_TX_BYTES..=most).contains(&job_bytes) {
        return Err(invalid(
            "jobs.max_job_bytes",
            format!(
                "must be {} to {most} (the smaller of {} and max_block_tx_bytes)",
                crate::tx::MAX_TX_BYTES,
                crate::tx::job::MAX_JOB_TX_BYTES
            ),
        ));
    }
    let bounded = [
        ("jobs.max_rows", jobs.max_rows, 10_000_000),
        ("jobs.max_features", jobs.max_features, 4096),
        ("jobs.max_categories", jobs.max_categories, 4096),
        ("jobs.max_hidden", jobs.max_hidden, 4096),
        ("jobs.max_params", jobs.max_params, 1 << 20),
        ("jobs.max_blocks", jobs.max_blocks, 100_000_000),
    ];
    for (name, value, limit) in bounded {
        if value == 0 || value > limit {
            return Err(invalid(name, format!("must be 1 to {limit}")));
        }
    }
    Ok(())
}

fn is_plain_file_name(name: &str) -> bool {
    !(name.is_empty() || name.contains('/') || name.contains('\\') || name.starts_with('.'))
}

fn check_onnx(onnx: &OnnxLinearParams, dataset_file: &str) -> Result<(), ParamsError> {
    if !is_plain_file_name(&onnx.file) {
        return Err(invalid(
            "task.model.onnx_linear.file",
            "must be a plain file name next to the chain file",
        ));
    }
    if onnx.file == dataset_file {
        return Err(invalid(
            "task.model.onnx_linear.file",
            "must not be the dataset's file",
        ));
    }
    if onnx.input.is_empty() {
        return Err(invalid("task.model.onnx_linear.input", "must not be empty"));
    }
    if onnx.width == 0 || onnx.width > 4096 {
        return Err(invalid("task.model.onnx_linear.width", "must be 1 to 4096"));
    }
    if onnx.encoder_batch == 0 || onnx.encoder_batch > 65_536 {
        return Err(invalid(
            "task.model.onnx_linear.encoder_batch",
            "must be 1 to 65536",
        ));
    }
    if !(4..=40).contains(&onnx.param_grid_bits) {
        return Err(invalid(
            "task.model.onnx_linear.param_grid_bits",
            "must be 4 to 40",
        ));
    }
    // Past half a grid step, two grid points would fit every re-execution.
    let half_step = 0.5 * grid_step(onnx.param_grid_bits);
    if !(onnx.param_tolerance.is_finite()
        && onnx.param_tolerance >= 0.0
        && onnx.param_tolerance < half_step)
    {
        return Err(invalid(
            "task.model.onnx_linear.param_tolerance",
            format!("must be at least 0 and under half a grid step, {half_step:e}"),
        ));
    }
    if onnx.score_tolerance_ppm > 10_000 {
        return Err(invalid(
            "task.model.onnx_linear.score_tolerance_ppm",
            "must be at most 10000",
        ));
    }
    Ok(())
}

/// `2^-bits`, exactly.
pub fn grid_step(bits: u32) -> f64 {
    f64::from_bits((1023 - u64::from(bits)) << 52)
}

/// Serialise a [`Hash32`] as 64 lowercase hex digits.
mod hex_hash {
    use crate::chain::Hash32;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(hash: &Hash32, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&hash.to_hex())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Hash32, D::Error> {
        let text = String::deserialize(deserializer)?;
        Hash32::from_hex(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regtest() -> ChainParams {
        ChainParams::from_json(include_str!("../../config/regtest.json"))
            .expect("config/regtest.json is a valid chain")
    }

    fn onnx() -> ChainParams {
        ChainParams::from_json(include_str!("../../config/devnet-onnx.json"))
            .expect("config/devnet-onnx.json is a valid chain")
    }

    fn onnx_of(params: &mut ChainParams) -> &mut OnnxLinearParams {
        match &mut params.task.model {
            ModelKind::OnnxLinear(onnx) => onnx,
            ModelKind::Linear => panic!("not an onnx_linear chain"),
        }
    }

    /// The genesis hashes schema/chains.md and schema/hashes.md give for
    /// the shipped chains: a change to a chain file is a new chain.
    #[test]
    fn the_shipped_chains_have_the_documented_genesis_hashes() {
        let shipped = [
            (
                include_str!("../../config/devnet.json"),
                "2e707d4abfb5d341d35d9ad9cd2e6049b1255633fcf6908fea8496a65b82c37c",
            ),
            (
                include_str!("../../config/regtest.json"),
                "35b6a39e2a5b8de0ce7be04158c99040d5effe702ba7075d8102eea597606a3c",
            ),
            (
                include_str!("../../config/devnet-onnx.json"),
                "41209ceb5693d8c9875c5bef9f0c1afff4e746603e430d810e36592bb2bb8023",
            ),
        ];
        let docs = [
            include_str!("../../schema/chains.md"),
            include_str!("../../schema/hashes.md"),
        ];
        for (json, hash) in shipped {
            let params = ChainParams::from_json(json).unwrap();
            assert_eq!(params.genesis_hash().to_hex(), hash, "{}", params.network);
            for doc in docs {
                assert!(
                    doc.contains(hash),
                    "the docs lack {}'s genesis {hash}",
                    params.network
                );
            }
        }
    }

    type Edit = fn(&mut ChainParams);

    /// `base` with `edit` applied passes `check`.
    #[track_caller]
    fn accepted(base: fn() -> ChainParams, edit: Edit) {
        let mut params = base();
        edit(&mut params);
        assert_eq!(params.check(), Ok(()));
    }

    /// `base` with `edit` applied fails `check`, naming `name`.
    #[track_caller]
    fn refused(base: fn() -> ChainParams, name: &str, edit: Edit) {
        let mut params = base();
        edit(&mut params);
        match params.check() {
            Err(e) => assert_eq!(e.name, name, "{e}"),
            Ok(()) => panic!("{name}: accepted"),
        }
    }

    #[test]
    fn the_shipped_chains_pass() {
        regtest().check().expect("regtest");
        onnx().check().expect("devnet-onnx");
        ChainParams::from_json(include_str!("../../config/devnet.json")).expect("devnet");
    }

    /// Every bound of `check`, at the limit and one past it.
    #[test]
    fn every_bound_holds_at_its_limit_and_fails_one_past_it() {
        let b = regtest;
        accepted(b, |p| p.network = "n".into());
        accepted(b, |p| p.network = "n".repeat(64));
        refused(b, "network", |p| p.network = String::new());
        refused(b, "network", |p| p.network = "n".repeat(65));
        accepted(b, |p| {
            p.initial_target = Hash32::from_hex(&format!("{:064x}", 1)).unwrap()
        });
        refused(b, "initial_target", |p| p.initial_target = Hash32::ZERO);
        accepted(b, |p| p.target_block_ms = 1);
        refused(b, "target_block_ms", |p| p.target_block_ms = 0);
        accepted(b, |p| p.retarget_window = 0);
        accepted(b, |p| p.retarget_window = 2);
        refused(b, "retarget_window", |p| p.retarget_window = 1);
        accepted(b, |p| p.validation_threshold_ppm = 1_000_000);
        refused(b, "validation_threshold_ppm", |p| {
            p.validation_threshold_ppm = 1_000_001
        });
        accepted(b, |p| p.validation_window = 1);
        accepted(b, |p| p.validation_window = 10_000);
        refused(b, "validation_window", |p| p.validation_window = 0);
        refused(b, "validation_window", |p| p.validation_window = 10_001);
        accepted(b, |p| p.task.batch_size = 1);
        accepted(b, |p| p.task.batch_size = 4096);
        refused(b, "task.batch_size", |p| p.task.batch_size = 0);
        refused(b, "task.batch_size", |p| p.task.batch_size = 4097);
        accepted(b, |p| p.task.learning_rate = f64::MIN_POSITIVE);
        accepted(b, |p| p.task.learning_rate = MAX_LEARNING_RATE);
        accepted(b, |p| p.task.lr_half_life_blocks = 1);
        accepted(b, |p| p.task.lr_half_life_blocks = MAX_LR_HALF_LIFE_BLOCKS);
        refused(b, "task.lr_half_life_blocks", |p| {
            p.task.lr_half_life_blocks = 0
        });
        refused(b, "task.lr_half_life_blocks", |p| {
            p.task.lr_half_life_blocks = MAX_LR_HALF_LIFE_BLOCKS + 1
        });
        let past = f64::from_bits(MAX_LEARNING_RATE.to_bits() + 1);
        for lr in [0.0, -0.01, past, f64::INFINITY, f64::NAN] {
            let mut params = b();
            params.task.learning_rate = lr;
            assert_eq!(
                params.check().map_err(|e| e.name),
                Err("task.learning_rate")
            );
        }
        accepted(b, |p| p.task.checkpoint_interval = 1);
        refused(b, "task.checkpoint_interval", |p| {
            p.task.checkpoint_interval = 0
        });
        accepted(b, |p| p.task.spot_checks = 1);
        accepted(b, |p| p.task.spot_checks = 64);
        refused(b, "task.spot_checks", |p| p.task.spot_checks = 0);
        refused(b, "task.spot_checks", |p| p.task.spot_checks = 65);
        accepted(b, |p| p.task.holdout_every = 2);
        refused(b, "task.holdout_every", |p| p.task.holdout_every = 1);
        accepted(b, |p| p.task.validation_rows = 1);
        accepted(b, |p| p.task.validation_rows = 100_000);
        refused(b, "task.validation_rows", |p| p.task.validation_rows = 0);
        refused(b, "task.validation_rows", |p| {
            p.task.validation_rows = 100_001
        });
        accepted(b, |p| p.task.max_steps_per_block = 1);
        refused(b, "task.max_steps_per_block", |p| {
            p.task.max_steps_per_block = 0
        });
    }

    #[test]
    fn file_names_are_plain_names_next_to_the_chain_file() {
        assert!(is_plain_file_name("diabetes.csv"));
        assert!(is_plain_file_name("a"));
        for bad in ["", "../x.csv", "d/x.csv", "d\\x.csv", ".hidden.csv"] {
            assert!(!is_plain_file_name(bad), "{bad:?}");
            let mut params = regtest();
            params.task.dataset.file = bad.into();
            assert_eq!(params.check().map_err(|e| e.name), Err("task.dataset.file"));
        }
    }

    #[test]
    fn every_onnx_bound_holds_at_its_limit_and_fails_one_past_it() {
        let b = onnx;
        let name = |field: &str| format!("task.model.onnx_linear.{field}");
        refused(b, &name("file"), |p| onnx_of(p).file = "../e.onnx".into());
        refused(b, &name("file"), |p| {
            let dataset = p.task.dataset.file.clone();
            onnx_of(p).file = dataset;
        });
        refused(b, &name("input"), |p| onnx_of(p).input = String::new());
        accepted(b, |p| onnx_of(p).width = 1);
        accepted(b, |p| onnx_of(p).width = 4096);
        refused(b, &name("width"), |p| onnx_of(p).width = 0);
        refused(b, &name("width"), |p| onnx_of(p).width = 4097);
        accepted(b, |p| onnx_of(p).encoder_batch = 1);
        accepted(b, |p| onnx_of(p).encoder_batch = 65_536);
        refused(b, &name("encoder_batch"), |p| onnx_of(p).encoder_batch = 0);
        refused(b, &name("encoder_batch"), |p| {
            onnx_of(p).encoder_batch = 65_537
        });
        // The tolerance must stay under half a grid step of each grid.
        accepted(b, |p| {
            onnx_of(p).param_grid_bits = 4;
            onnx_of(p).param_tolerance = 0.0;
        });
        accepted(b, |p| {
            onnx_of(p).param_grid_bits = 40;
            onnx_of(p).param_tolerance = 0.0;
        });
        refused(b, &name("param_grid_bits"), |p| {
            onnx_of(p).param_grid_bits = 3
        });
        refused(b, &name("param_grid_bits"), |p| {
            onnx_of(p).param_grid_bits = 41
        });
        let half_step = 0.5 * grid_step(12);
        assert_eq!(half_step, 1.0 / 8192.0);
        accepted(b, |p| {
            onnx_of(p).param_grid_bits = 12;
            onnx_of(p).param_tolerance = 1.0 / 8192.0 - f64::EPSILON / 8192.0;
        });
        refused(b, &name("param_tolerance"), |p| {
            onnx_of(p).param_grid_bits = 12;
            onnx_of(p).param_tolerance = 1.0 / 8192.0;
        });
        for tolerance in [-f64::MIN_POSITIVE, f64::NAN, f64::INFINITY] {
            let mut params = b();
            onnx_of(&mut params).param_tolerance = tolerance;
            assert_eq!(
                params.check().map_err(|e| e.name),
                Err("task.model.onnx_linear.param_tolerance"),
                "{tolerance}"
            );
        }
        accepted(b, |p| onnx_of(p).score_tolerance_ppm = 10_000);
        refused(b, &name("score_tolerance_ppm"), |p| {
            onnx_of(p).score_tolerance_ppm = 10_001
        });
    }

    #[test]
    fn grid_steps_are_exact_powers_of_two() {
        assert_eq!(grid_step(0), 1.0);
        assert_eq!(grid_step(1), 0.5);
        assert_eq!(grid_step(12), 1.0 / 4096.0);
        assert_eq!(grid_step(40), 1.0 / (1u64 << 40) as f64);
    }

    #[test]
    fn limits_follow_the_features_and_spot_checks() {
        let mut params = regtest();
        params.task.spot_checks = 3;
        let limits = params.limits(10);
        assert_eq!(limits.max_params, 11);
        assert_eq!(limits.max_openings, 7);
        assert_eq!(limits.max_header_bytes, Limits::default().max_header_bytes);
        assert_eq!(limits.max_txs, params.max_block_txs as usize);
        assert_eq!(
            limits.max_body_bytes,
            (1 << 20) + params.max_block_tx_bytes as usize
        );
    }

    #[test]
    fn a_chain_file_of_another_protocol_names_both_versions() {
        let mut json: serde_json::Value =
            serde_json::from_str(include_str!("../../config/regtest.json")).expect("json");
        json.as_object_mut().expect("object").remove("protocol");
        let error = ChainParams::from_json(&json.to_string()).expect_err("protocol 1");
        assert_eq!(error.name, "protocol");
        assert!(
            error.reason.contains("protocol version 1")
                && error.reason.contains("protocol version 2"),
            "{error}"
        );
        json["protocol"] = 3.into();
        let error = ChainParams::from_json(&json.to_string()).expect_err("protocol 3");
        assert!(error.reason.contains("protocol version 3"), "{error}");
        json["protocol"] = 2.into();
        assert!(ChainParams::from_json(&json.to_string()).is_ok());
        refused(regtest, "protocol", |p| p.protocol = 1);
    }

    #[test]
    fn job_bounds_hold_at_their_limits() {
        accepted(regtest, |p| p.jobs.max_job_bytes = 1024);
        refused(regtest, "jobs.max_job_bytes", |p| {
            p.jobs.max_job_bytes = 1023
        });
        // At most the block's bytes, and at most 1 MiB.
        accepted(regtest, |p| p.jobs.max_job_bytes = 1 << 20);
        refused(regtest, "jobs.max_job_bytes", |p| {
            p.jobs.max_job_bytes = (1 << 20) + 1
        });
        refused(regtest, "jobs.max_job_bytes", |p| {
            p.max_block_tx_bytes = 500_000;
            p.jobs.max_job_bytes = 500_001;
        });
        accepted(regtest, |p| {
            p.max_block_tx_bytes = 500_000;
            p.jobs.max_job_bytes = 500_000;
        });
        accepted(regtest, |p| p.jobs.max_rows = 1);
        refused(regtest, "jobs.max_rows", |p| p.jobs.max_rows = 0);
        accepted(regtest, |p| p.jobs.max_rows = 10_000_000);
        refused(regtest, "jobs.max_rows", |p| p.jobs.max_rows = 10_000_001);
        accepted(regtest, |p| p.jobs.max_features = 4096);
        refused(regtest, "jobs.max_features", |p| p.jobs.max_features = 4097);
        refused(regtest, "jobs.max_features", |p| p.jobs.max_features = 0);
        accepted(regtest, |p| p.jobs.max_categories = 4096);
        refused(regtest, "jobs.max_categories", |p| {
            p.jobs.max_categories = 4097
        });
        refused(regtest, "jobs.max_categories", |p| {
            p.jobs.max_categories = 0
        });
        accepted(regtest, |p| p.jobs.max_hidden = 4096);
        refused(regtest, "jobs.max_hidden", |p| p.jobs.max_hidden = 4097);
        refused(regtest, "jobs.max_hidden", |p| p.jobs.max_hidden = 0);
        accepted(regtest, |p| p.jobs.max_params = 1 << 20);
        refused(regtest, "jobs.max_params", |p| {
            p.jobs.max_params = (1 << 20) + 1
        });
        refused(regtest, "jobs.max_params", |p| p.jobs.max_params = 0);
        accepted(regtest, |p| p.jobs.max_blocks = 100_000_000);
        refused(regtest, "jobs.max_blocks", |p| {
            p.jobs.max_blocks = 100_000_001
        });
        refused(regtest, "jobs.max_blocks", |p| p.jobs.max_blocks = 0);
        accepted(regtest, |p| p.jobs.allow_encoder = true);
    }

    #[test]
    fn block_transaction_bounds_hold_at_their_limits() {
        accepted(regtest, |p| p.max_block_txs = 1);
        refused(regtest, "max_block_txs", |p| p.max_block_txs = 0);
        accepted(regtest, |p| p.max_block_txs = 16_384);
        refused(regtest, "max_block_txs", |p| p.max_block_txs = 16_385);
        accepted(regtest, |p| {
            p.max_block_tx_bytes = 1024;
            p.jobs.max_job_bytes = 1024;
        });
        refused(regtest, "max_block_tx_bytes", |p| {
            p.max_block_tx_bytes = 1023
        });
        accepted(regtest, |p| p.max_block_tx_bytes = 2 << 20);
        refused(regtest, "max_block_tx_bytes", |p| {
            p.max_block_tx_bytes = (2 << 20) + 1
        });
    }

    #[test]
    fn json_round_trips_and_the_genesis_hash_commits_to_every_value() {
        let params = onnx();
        let again = ChainParams::from_json(&params.to_json()).expect("round trip");
        assert_eq!(again, params);
        assert_eq!(again.genesis_hash(), params.genesis_hash());
        let mut other = params.clone();
        other.reward_amount += 1;
        assert_ne!(other.genesis_hash(), params.genesis_hash());
        assert_eq!(
            params.genesis_hash(),
            tagged_sha256(b"pouw/genesis", &[&encoding::encode(&params)])
        );
        assert_eq!(params.task.model.name(), "onnx_linear");
        assert_eq!(regtest().task.model.name(), "linear");
        assert!(regtest().task.model.onnx().is_none());
        assert_eq!(
            params.initial_target_u256(),
            U256::from_big_endian(&params.initial_target.0)
        );
        assert!(!params.initial_target_u256().is_zero());
        let broken = ChainParams::from_json("{}").expect_err("not a chain");
        assert_eq!(broken.name, "(file)");
    }
}
