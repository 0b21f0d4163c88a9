//! `pouwd job`: training jobs from the command line.
//!
//! - `submit` signs a `SubmitJob` transaction with the data dir's key (a
//!   CSV file, the columns, the head, the training constants and a
//!   bounty) and hands it to the node running on that data dir, as
//!   `pouwd send` does a transfer. The job is checked here first, against
//!   the chain's `jobs` bounds and exactly as every node will prepare its
//!   dataset, so a bad file is reported (file, line, column) before
//!   anything is sent. The dataset becomes public: it is part of the
//!   chain, kept by every node.
//! - `list` and `show ID` print the jobs of the best chain, through the
//!   running node's API (`GET /jobs`, `GET /jobs/{id}`), or from the store
//!   when no node runs on the data dir.

use super::running::{access, Access, API_TIMEOUT};
use super::DataDirArg;
use crate::api::client::{get_json, ClientError};
use crate::chain::Hash32;
use crate::consensus::params::ChainParams;
use crate::node::mempool::MempoolLimits;
use crate::node::views::{job_json, jobs_json};
use crate::node::DataDir;
use crate::tx::job::{check_job, JobError};
use crate::tx::{amount, Head, JobSpec, TxFields, TxKind, TX_VERSION};
use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, clap::Args)]
pub struct JobArgs {
    #[command(subcommand)]
    pub command: JobCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum JobCommand {
    /// Sign a training job (a CSV dataset and a bounty) with the data
    /// dir's key and hand it to its running node. The dataset becomes
    /// public: it is stored in the chain by every node.
    Submit(SubmitArgs),
    /// List the jobs of the best chain: state, blocks, best score, money.
    List(ListArgs),
    /// Show one job: its spec, score curve, the miners it paid and the
    /// block whose model it delivers.
    Show(ShowArgs),
}

#[derive(Debug, clap::Args)]
pub struct SubmitArgs {
    #[command(flatten)]
    pub dir: DataDirArg,
    /// The CSV file to train on (a header line, then one row per line).
    #[arg(long, value_name = "FILE")]
    pub dataset: PathBuf,
    /// The column to predict.
    #[arg(long, value_name = "COL")]
    pub target: String,
    /// The feature columns, comma-separated (default: every column but
    /// the target); a text column is one-hot encoded.
    #[arg(long, value_name = "A,B,C", value_delimiter = ',')]
    pub features: Option<Vec<String>>,
    /// `linear`, or `mlp:H` for one hidden layer of H ReLU units.
    #[arg(long, value_name = "HEAD", default_value = "linear", value_parser = parse_head)]
    pub head: Head,
    /// A frozen ONNX encoder in front of the linear head, on a chain that
    /// allows them (devnet-onnx): one float32 input [batch, features] of
    /// standardised rows, one float32 output [batch, width]. The nodes run
    /// it once over every row, and the head trains on its outputs.
    #[arg(long, value_name = "FILE.onnx")]
    pub encoder: Option<PathBuf>,
    /// The most blocks the network trains the job for.
    #[arg(long, value_name = "N")]
    pub max_blocks: u32,
    /// Tokens escrowed from the account: each block on the job pays its
    /// miner BOUNTY / max-blocks, and what is left is refunded at the end.
    #[arg(long, value_name = "TOKENS", value_parser = parse_tokens)]
    pub bounty: u64,
    #[arg(long, value_name = "ROWS", default_value_t = 32)]
    pub batch_size: u32,
    /// The learning rate of the job's first block.
    #[arg(long, value_name = "RATE", default_value_t = 0.01)]
    pub learning_rate: f64,
    /// Block n of the job trains at RATE · h / (h + n).
    #[arg(long, value_name = "H", default_value_t = 20)]
    pub lr_half_life_blocks: u64,
    /// Every K-th data row is held out to score the models.
    #[arg(long, value_name = "K", default_value_t = 5)]
    pub holdout_every: u32,
    /// The job ends when its score has not risen by --min-improvement-ppm
    /// in this many blocks (at most --max-blocks; default the smaller of
    /// 10 and --max-blocks).
    #[arg(long, value_name = "N")]
    pub patience: Option<u32>,
    /// The rise of the score (R², in millionths) that counts as progress.
    #[arg(long, value_name = "PPM", default_value_t = 1000)]
    pub min_improvement_ppm: u32,
    /// The fee in tokens (default: twice the node's minimum relay fee for
    /// the transaction's size).
    #[arg(long, value_name = "TOKENS", value_parser = |text: &str| amount::parse(text))]
    pub fee: Option<u64>,
    /// A name for the job, 1 to 64 bytes (default: the file's name).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Write the signed transaction's bytes to FILE (`-` for stdout)
    /// instead of handing it to the node; works without a running node.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub dir: DataDirArg,
    /// Print JSON, as `GET /jobs` answers.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    #[command(flatten)]
    pub dir: DataDirArg,
    /// The job's id (its transaction's id), as `pouwd job submit` prints it.
    #[arg(value_name = "ID", value_parser = |text: &str| Hash32::from_hex(text))]
    pub id: Hash32,
    /// Print JSON, as `GET /jobs/{id}` answers.
    #[arg(long)]
    pub json: bool,
}

fn parse_head(text: &str) -> Result<Head, String> {
    Head::parse(text)
        .ok_or_else(|| format!("{text:?}: expected `linear` or `mlp:H` (H hidden units)"))
}

fn parse_tokens(text: &str) -> Result<u64, String> {
    amount::parse(text).map_err(|e| e.to_string())
}

pub fn run(args: JobArgs) -> Result<()> {
    match args.command {
        JobCommand::Submit(args) => submit(args),
        JobCommand::List(args) => list(args),
        JobCommand::Show(args) => show(args),
    }
}

/// The default patience: 10 blocks, or all of them for a shorter job.
fn default_patience(max_blocks: u32) -> u32 {
    max_blocks.clamp(1, 10)
}

/// The spec the arguments describe, with the file's bytes.
fn spec_of(args: &SubmitArgs) -> Result<JobSpec> {
    let path = &args.dataset;
    let dataset = std::fs::read(path)
        .with_context(|| format!("cannot read the dataset {}", path.display()))?;
    let name = match &args.name {
        Some(name) => name.clone(),
        None => path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .with_context(|| format!("{} names no file; give the job a --name", path.display()))?,
    };
    let encoder = match &args.encoder {
        Some(path) => Some(
            std::fs::read(path)
                .with_context(|| format!("cannot read the encoder {}", path.display()))?,
        ),
        None => None,
    };
    Ok(JobSpec {
        name,
        dataset,
        target: args.target.clone(),
        features: args.features.clone(),
        encoder,
        head: args.head,
        batch_size: args.batch_size,
        learning_rate: args.learning_rate,
        lr_half_life_blocks: args.lr_half_life_blocks,
        holdout_every: args.holdout_every,
        max_blocks: args.max_blocks,
        patience: args
            .patience
            .unwrap_or_else(|| default_patience(args.max_blocks)),
        min_improvement_ppm: args.min_improvement_ppm,
        bounty: args.bounty,
    })
}

/// The minimum relay fee of a `bytes`-long transaction.
fn min_fee(min_fee_per_kb: u64, bytes: usize) -> u64 {
    let fee = (u128::from(min_fee_per_kb) * bytes as u128).div_ceil(1000);
    u64::try_from(fee).unwrap_or(u64::MAX)
}

/// Twice the minimum relay fee of the job's transaction: its size is
/// taken with the longest fee encoding, so the fee covers itself.
fn default_fee(fields: &TxFields, min_fee_per_kb: u64) -> u64 {
    let mut largest = fields.clone();
    largest.fee = u64::MAX;
    // A signature has a fixed size: any key gives the encoded length.
    let key = ed25519_dalek::SigningKey::from_bytes(&[1; 32]);
    let bytes = largest.sign(&key).to_bytes().len();
    min_fee(min_fee_per_kb, bytes).saturating_mul(2)
}

/// What submit learns from the chain before it signs.
struct ChainView {
    genesis: Hash32,
    nonce: u64,
    limits: crate::tx::JobLimits,
    min_fee_per_kb: u64,
    spendable: Option<u64>,
    /// The node's API, when one runs.
    node: Option<SocketAddr>,
}

fn chain_view(dir: &DataDir, from: &Hash32, sending: bool) -> Result<ChainView> {
    let root = dir.root.display();
    match access(dir)? {
        Access::Stopped(store) => {
            if sending {
                bail!(
                    "no node is running on {root}: `pouwd job submit` hands the job to the \
                     node running on the data dir, through its API; start one with \
                     `pouwd start --data-dir {root} --api`, then submit again (or write the \
                     signed transaction to a file with --out FILE)"
                );
            }
            let account = store.account(from)?;
            crate::say!(
                "note: no node is running on {root}: nonce {} is the account's on the stored \
                 chain; transactions a node may hold pending are not counted",
                account.nonce
            );
            Ok(ChainView {
                genesis: store.genesis_hash(),
                nonce: account.nonce,
                limits: store.params().jobs.clone(),
                min_fee_per_kb: MempoolLimits::default().min_fee_per_kb,
                spendable: Some(account.spendable),
                node: None,
            })
        }
        Access::Running(node) => {
            let addr = node.require_api(dir, "`pouwd job submit`")?;
            let unreachable = || format!("the node's API at {addr} does not answer");
            let status = node
                .live_status(addr, API_TIMEOUT)
                .with_context(unreachable)?;
            let genesis = status["genesis"]
                .as_str()
                .and_then(|g| Hash32::from_hex(g).ok())
                .context("the node's /status has no genesis hash")?;
            let limits = match serde_json::from_value(status["job_limits"].clone()) {
                Ok(limits) => limits,
                // A node that does not say: the data dir's chain file.
                Err(_) => chain_file_limits(dir, &genesis)?,
            };
            let account = get_json(addr, &format!("/accounts/{from}"), API_TIMEOUT)
                .with_context(unreachable)?;
            let nonce = account["next_nonce"]
                .as_u64()
                .context("the node's /accounts answer has no next_nonce")?;
            let pool = get_json(addr, "/mempool?limit=0", API_TIMEOUT).with_context(unreachable)?;
            let min_fee_per_kb = pool["limits"]["min_fee_per_kb"]
                .as_u64()
                .context("the node's /mempool answer has no limits.min_fee_per_kb")?;
            Ok(ChainView {
                genesis,
                nonce,
                limits,
                min_fee_per_kb,
                spendable: account["spendable"].as_u64(),
                node: Some(addr),
            })
        }
    }
}

/// The `jobs` bounds of the data dir's `chain.json`, if it is the chain
/// with `genesis`.
fn chain_file_limits(dir: &DataDir, genesis: &Hash32) -> Result<crate::tx::JobLimits> {
    let path = dir.chain_path();
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "the node does not say its chain's job bounds, and {} cannot be read",
            path.display()
        )
    })?;
    let params =
        ChainParams::from_json(&text).with_context(|| format!("chain file {}", path.display()))?;
    if params.genesis_hash() != *genesis {
        bail!(
            "{} is not the chain of the running node (genesis {genesis})",
            path.display()
        );
    }
    Ok(params.jobs)
}

fn submit(args: SubmitArgs) -> Result<()> {
    let dir = DataDir::new(&args.dir.data_dir);
    let root = dir.root.display().to_string();
    let spec = spec_of(&args)?;
    let key = dir.load_key()?;
    let from = Hash32(key.verifying_key().to_bytes());
    let view = chain_view(&dir, &from, args.out.is_none())?;
    let mut fields = TxFields {
        version: TX_VERSION,
        chain: view.genesis,
        from,
        nonce: view.nonce,
        fee: 0,
        kind: TxKind::SubmitJob(Box::new(spec)),
    };
    fields.fee = match args.fee {
        Some(fee) => fee,
        None => default_fee(&fields, view.min_fee_per_kb),
    };
    let tx = fields.sign(&key);
    let bytes = tx.to_bytes();
    let TxKind::SubmitJob(spec) = &tx.fields.kind else {
        bail!("the transaction is not a job");
    };
    check_job(spec, &view.limits, bytes.len()).map_err(|e| refused(e, &args.dataset))?;
    let needed = min_fee(view.min_fee_per_kb, bytes.len());
    if tx.fields.fee < needed {
        bail!(
            "a fee of {} tokens is under the node's minimum relay fee for this {}-byte job: \
             {} tokens ({} base units per 1000 bytes); leave --fee out to pay twice the minimum",
            amount::format(tx.fields.fee),
            bytes.len(),
            amount::format(needed),
            view.min_fee_per_kb
        );
    }
    let cost = spec.bounty.saturating_add(tx.fields.fee);
    if let Some(spendable) = view.spendable.filter(|&s| s < cost) {
        bail!(
            "the job costs {} tokens (bounty {} and fee {}), but the account {from} has {} \
             tokens spendable",
            amount::format(cost),
            amount::format(spec.bounty),
            amount::format(tx.fields.fee),
            amount::format(spendable)
        );
    }
    tracing::warn!(
        target: "pouwd",
        "note: the dataset {} ({} bytes) becomes public: the job's transaction carries it, \
         and every node keeps it with the chain for good",
        args.dataset.display(),
        spec.dataset.len()
    );
    let what = format!(
        "job {:?} ({} head on {}), bounty {} tokens ({} per block for at most {} \
         blocks), fee {} tokens, {} bytes",
        spec.name,
        spec.head.name(),
        args.dataset.display(),
        amount::format(spec.bounty),
        amount::format(spec.pay_per_block()),
        spec.max_blocks,
        amount::format(tx.fields.fee),
        bytes.len()
    );
    if let Some(path) = &args.out {
        return super::send::write_signed(path, &tx, &what);
    }
    let Some(addr) = view.node else {
        bail!("no node to send to");
    };
    super::send::post_signed(&dir, addr, &tx, |message| {
        anyhow::anyhow!("the node refused the job: {message}")
    })?;
    println!("{}", tx.id());
    crate::say!(
        "submitted {what}; it is queued once a block includes it; follow it with \
         `pouwd job show --data-dir {root} {}`",
        tx.id()
    );
    Ok(())
}

/// A job refused before sending, naming the file.
fn refused(error: JobError, path: &Path) -> anyhow::Error {
    match error {
        JobError::Dataset(message) => anyhow::anyhow!(
            "the job is refused before sending: the dataset {} does not prepare: {message}",
            path.display()
        ),
        other => anyhow::anyhow!("the job is refused before sending: {other}"),
    }
}

/// `GET path` from the running node, or `local` on the stopped store.
fn read(
    dir: &DataDir,
    path: &str,
    local: impl FnOnce(&crate::store::Store) -> Result<Value, crate::node::views::ViewError>,
) -> Result<Value> {
    match access(dir)? {
        Access::Stopped(store) => Ok(local(&store)?),
        Access::Running(node) => {
            let addr = node.require_api(dir, "`pouwd job` on a running node")?;
            get_json(addr, path, API_TIMEOUT).map_err(|e| match e {
                ClientError::Status {
                    status: 404,
                    message,
                } => anyhow::anyhow!("{message}"),
                e => anyhow::Error::new(e)
                    .context(format!("the node's API at {addr} does not answer")),
            })
        }
    }
}

fn list(args: ListArgs) -> Result<()> {
    let dir = DataDir::new(&args.dir.data_dir);
    let jobs = read(&dir, "/jobs", jobs_json)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&jobs)?);
        return Ok(());
    }
    let jobs = jobs.as_array().context("GET /jobs did not answer a list")?;
    if jobs.is_empty() {
        println!("no jobs on the best chain");
        return Ok(());
    }
    println!(
        "{:<16}  {:<20}  {:<13}  {:>11}  {:>8}  {:>14}  {:>14}  {:>14}",
        "ID", "NAME", "STATE", "BLOCKS", "BEST R2", "BOUNTY", "PAID", "REFUNDED"
    );
    for job in jobs {
        println!(
            "{:<16}  {:<20}  {:<13}  {:>11}  {:>8}  {:>14}  {:>14}  {:>14}",
            text(&job["id"]).get(..16).unwrap_or_default(),
            truncate(&text(&job["name"]), 20),
            state_word(job),
            format!("{}/{}", job["blocks"], job["max_blocks"]),
            best(job),
            tokens(&job["bounty"]),
            tokens(&job["paid"]),
            tokens(&job["refunded"]),
        );
    }
    Ok(())
}

fn show(args: ShowArgs) -> Result<()> {
    let dir = DataDir::new(&args.dir.data_dir);
    let id = args.id;
    let job = read(&dir, &format!("/jobs/{id}"), |store| job_json(store, &id))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&job)?);
        return Ok(());
    }
    print!("{}", describe(&job, &dir.root));
    Ok(())
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn truncate(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    let mut out: String = text.chars().take(width - 1).collect();
    out.push('…');
    out
}

fn tokens(value: &Value) -> String {
    value.as_u64().map_or_else(|| "-".into(), amount::format)
}

/// A score in ppm as R² with 6 decimals.
fn score(value: &Value) -> String {
    value
        .as_u64()
        .map_or_else(|| "-".into(), |ppm| format!("{:.6}", ppm as f64 / 1e6))
}

fn best(job: &Value) -> String {
    score(&job["best_score_ppm"])
}

/// `queued #N`, `active` or `ended`.
fn state_word(job: &Value) -> String {
    match (job["state"].as_str(), job["position"].as_u64()) {
        (Some("queued"), Some(position)) => format!("queued #{position}"),
        (Some(state), _) => state.to_string(),
        (None, _) => "?".into(),
    }
}

/// `pouwd job show` as text.
fn describe(job: &Value, root: &Path) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let id = text(&job["id"]);
    let _ = writeln!(out, "id: {id}");
    let _ = writeln!(out, "name: {}", text(&job["name"]));
    let state = match job["state"].as_str() {
        Some("queued") => format!(
            "queued, number {} in the queue (higher pay per block first)",
            text(&job["position"])
        ),
        Some("active") => "active: the network is training it".into(),
        Some("ended") => format!(
            "ended at height {} ({})",
            text(&job["ended_height"]),
            match job["end_reason"].as_str() {
                Some("max_blocks") => "it trained its max_blocks blocks",
                Some("patience") => "its score stopped rising for patience blocks",
                _ => "?",
            }
        ),
        _ => text(&job["state"]),
    };
    let _ = writeln!(out, "state: {state}");
    let _ = writeln!(out, "sender: {}", text(&job["sender"]));
    let _ = writeln!(out, "included at height: {}", text(&job["included_height"]));
    let _ = writeln!(
        out,
        "blocks: {} of at most {} (patience {})",
        job["blocks"], job["max_blocks"], job["patience"]
    );
    let _ = writeln!(out, "best score (R²): {}", best(job));
    let _ = writeln!(
        out,
        "bounty: {} ({} per block)",
        tokens(&job["bounty"]),
        tokens(&job["pay_per_block"])
    );
    let _ = writeln!(out, "paid: {}", tokens(&job["paid"]));
    let _ = writeln!(out, "escrow: {}", tokens(&job["escrow"]));
    let _ = writeln!(out, "refunded: {}", tokens(&job["refunded"]));
    let spec = &job["spec"];
    if spec.is_object() {
        let features = match spec["features"].as_array() {
            Some(names) => names.iter().map(text).collect::<Vec<_>>().join(","),
            None => "every column but the target".into(),
        };
        let _ = writeln!(
            out,
            "spec: head {}, target {}, features {features}, {} bytes of CSV",
            text(&spec["head"]),
            text(&spec["target"]),
            text(&spec["dataset_bytes"])
        );
        let _ = writeln!(
            out,
            "training: batch size {}, learning rate {} (half life {} blocks), holdout every \
             {} rows, min improvement {} ppm",
            spec["batch_size"],
            spec["learning_rate"],
            spec["lr_half_life_blocks"],
            spec["holdout_every"],
            spec["min_improvement_ppm"]
        );
    }
    let curve = job["curve"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    if !curve.is_empty() {
        let _ = writeln!(out, "score curve:");
        let _ = writeln!(
            out,
            "  {:>5}  {:>8}  {:>8}  {:<16}  {:<16}",
            "BLOCK", "HEIGHT", "R2", "HASH", "MINER"
        );
        for point in curve {
            let _ = writeln!(
                out,
                "  {:>5}  {:>8}  {:>8}  {:<16}  {:<16}",
                text(&point["job_block"]),
                text(&point["height"]),
                score(&point["score_ppm"]),
                text(&point["hash"]).get(..16).unwrap_or_default(),
                text(&point["miner"]).get(..16).unwrap_or_default(),
            );
        }
    }
    if let Some(miners) = job["miners"].as_array().filter(|m| !m.is_empty()) {
        let _ = writeln!(out, "miners paid:");
        for miner in miners {
            let _ = writeln!(
                out,
                "  {}: {} block(s), {}",
                text(&miner["miner"]),
                miner["blocks"],
                tokens(&miner["paid"])
            );
        }
    }
    let delivered = &job["delivered"];
    if delivered.is_object() {
        let _ = writeln!(
            out,
            "delivered model: block {} of the job, height {}, R² {} ({})",
            text(&delivered["job_block"]),
            text(&delivered["height"]),
            score(&delivered["score_ppm"]),
            text(&delivered["block"])
        );
        let _ = writeln!(
            out,
            "export it (with the node stopped): pouwd export-model --data-dir {} --job {id} \
             --out model.json (or --format onnx)",
            root.display()
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn heads_and_amounts_parse_or_say_what_is_expected() {
        assert_eq!(parse_head("linear"), Ok(Head::Linear));
        assert_eq!(parse_head("mlp:16"), Ok(Head::Mlp { hidden: 16 }));
        for bad in ["", "mlp", "mlp:", "mlp:x", "relu"] {
            assert!(parse_head(bad).unwrap_err().contains("mlp:H"), "{bad:?}");
        }
        assert_eq!(parse_tokens("1.5"), Ok(150_000_000));
        assert!(parse_tokens("x").is_err());
        assert_eq!(default_patience(5), 5);
        assert_eq!(default_patience(100), 10);
    }

    #[test]
    fn the_default_fee_covers_twice_the_minimum_of_the_signed_job() {
        let key = ed25519_dalek::SigningKey::from_bytes(&[3; 32]);
        let spec = JobSpec {
            name: "x.csv".into(),
            dataset: vec![b'1'; 50_000],
            target: "y".into(),
            features: None,
            encoder: None,
            head: Head::Linear,
            batch_size: 32,
            learning_rate: 0.01,
            lr_half_life_blocks: 20,
            holdout_every: 5,
            max_blocks: 5,
            patience: 5,
            min_improvement_ppm: 1000,
            bounty: 100_000_000,
        };
        let mut fields = TxFields {
            version: TX_VERSION,
            chain: Hash32([1; 32]),
            from: Hash32(key.verifying_key().to_bytes()),
            nonce: 0,
            fee: 0,
            kind: TxKind::SubmitJob(Box::new(spec)),
        };
        fields.fee = default_fee(&fields, 1_000);
        let fee = fields.fee;
        let bytes = fields.sign(&key).to_bytes().len();
        assert!(bytes > 50_000);
        assert!(fee >= 2 * min_fee(1_000, bytes), "{fee}");
        assert!(fee <= 2 * min_fee(1_000, bytes + 16), "{fee}");
    }

    #[test]
    fn a_job_reads_as_lines_with_tokens_and_scores() {
        let job = json!({
            "id": "ab".repeat(32), "name": "d.csv", "state": "ended", "position": null,
            "ended_height": 20, "end_reason": "max_blocks", "blocks": 5, "max_blocks": 5,
            "patience": 5, "best_score_ppm": 412_345, "bounty": 100_000_000u64,
            "pay_per_block": 20_000_000u64, "paid": 100_000_000u64, "escrow": 0,
            "refunded": 0, "spec": null,
            "curve": [{"job_block": 0, "height": 16, "score_ppm": 100_000, "hash": "cd".repeat(32),
                       "miner": "ef".repeat(32)}],
            "miners": [{"miner": "ef".repeat(32), "blocks": 5, "paid": 100_000_000u64}],
            "delivered": {"job_block": 4, "height": 20, "score_ppm": 412_345, "block": "12".repeat(32)},
        });
        let text = describe(&job, Path::new("/d"));
        assert!(
            text.contains("state: ended at height 20 (it trained its max_blocks blocks)"),
            "{text}"
        );
        assert!(text.contains("best score (R²): 0.412345"), "{text}");
        assert!(
            text.contains("bounty: 1.00000000 (0.20000000 per block)"),
            "{text}"
        );
        assert!(text.contains("0.100000"), "{text}");
        assert!(text.contains("5 block(s), 1.00000000"), "{text}");
        assert!(text.contains("--job"), "{text}");
        assert_eq!(
            state_word(&json!({"state": "queued", "position": 2})),
            "queued #2"
        );
        assert_eq!(truncate("abcdef", 4), "abc…");
    }
}
