//! The `pouwd` command line: clap parses, each command lives in its own
//! file, and arguments become a validated configuration before any work
//! starts.

mod backup;
mod eval;
mod export;
mod id;
mod inspect;
mod job;
mod masternode;
mod model;
mod running;
mod send;
mod start;
mod status;
mod tx;
mod wallet;

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

pub use masternode::MasternodeConfig;

#[derive(Debug, Parser)]
#[command(
    name = "pouwd",
    version,
    about = "Proof-of-useful-work blockchain full node"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// `--log-level` and `--log-format`, taken before or after the command.
    #[command(flatten)]
    pub logs: crate::logs::LogArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a node on a data dir (created on first start), optionally mining.
    Start(start::StartArgs),
    /// Print the node's chain tip, work and balance.
    Status(status::StatusArgs),
    /// Write the best chain to a file (or `-` for stdout).
    ExportChain(export::ExportArgs),
    /// Check and store every block of an exported chain (or `-` for stdin).
    ImportChain(export::ImportArgs),
    /// Write the node key, chain file, task files and chain to one file,
    /// also while the node runs.
    Backup(backup::BackupArgs),
    /// Make a new data dir from a backup.
    Restore(backup::RestoreArgs),
    /// Show one block by height or hash.
    Inspect(inspect::InspectArgs),
    /// Write the chain's model, or a training job's (--job ID), as JSON or ONNX.
    ExportModel(model::ExportModelArgs),
    /// Run an ONNX model on a CSV and print R², MSE and rows/s.
    Eval(eval::EvalArgs),
    /// Print the node's id (its public key), as peers pin it in `ID@host:port`.
    Id(DataDirArg),
    /// Show the data dir's account: balance, spendable, immature, nonce.
    Wallet(wallet::WalletArgs),
    /// Sign a transfer with the data dir's key and hand it to its running node.
    Send(send::SendArgs),
    /// Show a transaction and whether it is pending or in a block.
    Tx(tx::TxArgs),
    /// Training jobs: submit one (a CSV and a bounty), list them, show one.
    Job(job::JobArgs),
}

/// Options every command that reads a data dir takes.
#[derive(Debug, clap::Args)]
pub struct DataDirArg {
    /// The node's data directory.
    #[arg(long, value_name = "DIR")]
    pub data_dir: PathBuf,
}

/// A command that ends on purpose with an exit code of its own, having
/// said why: `import-chain` stopped by a signal exits 128 + its number.
#[derive(Debug, thiserror::Error)]
#[error("exit code {code}")]
pub struct ExitCode {
    pub code: u8,
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Start(args) => start::run(args),
        Command::Status(args) => status::run(args),
        Command::ExportChain(args) => export::run_export(args),
        Command::ImportChain(args) => export::run_import(args),
        Command::Backup(args) => backup::run_backup(args),
        Command::Restore(args) => backup::run_restore(args),
        Command::Inspect(args) => inspect::run(args),
        Command::ExportModel(args) => model::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Id(args) => id::run(args),
        Command::Wallet(args) => wallet::run(args),
        Command::Send(args) => send::run(args),
        Command::Tx(args) => tx::run(args),
        Command::Job(args) => job::run(args),
    }
}

/// Print a JSON object's fields as `key: value` lines, the fields named in
/// `amounts` (integers of base units) as tokens with 8 decimals.
fn print_fields(value: &serde_json::Value, amounts: &[&str]) {
    use serde_json::Value;
    let Value::Object(map) = value else {
        println!("{value}");
        return;
    };
    for (key, value) in map {
        let amount = value.as_u64().filter(|_| amounts.contains(&key.as_str()));
        match (amount, value) {
            (Some(amount), _) => println!("{key}: {}", crate::tx::amount::format(amount)),
            (None, Value::String(s)) => println!("{key}: {s}"),
            (None, other) => println!("{key}: {other}"),
        }
    }
}

/// Open `path` for writing, or stdout for `-`.
fn output(path: &std::path::Path) -> Result<Box<dyn std::io::Write>> {
    use anyhow::Context;
    if path.as_os_str() == "-" {
        return Ok(Box::new(std::io::BufWriter::new(std::io::stdout().lock())));
    }
    let file =
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    Ok(Box::new(std::io::BufWriter::new(file)))
}
