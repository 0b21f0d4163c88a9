//! The `pouwd` command line: clap parses, each command lives in its own
//! file, and arguments become a validated configuration before any work
//! starts.

mod backup;
mod config;
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
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use std::ffi::OsString;
use std::path::PathBuf;

pub use masternode::MasternodeConfig;

#[derive(Debug, Parser)]
#[command(
    name = "pouwd",
    version = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("POUWD_GIT_COMMIT"), ")"),
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
    /// Config files for `start --config`: `pouwd config example` prints one.
    Config(config::ConfigArgs),
    /// Print a shell completion script: bash, zsh, fish, elvish or powershell.
    Completions(CompletionsArgs),
}

#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell the script is for.
    #[arg(value_name = "SHELL")]
    pub shell: clap_complete::Shell,
}

/// Options every command that reads a data dir takes.
#[derive(Debug, clap::Args)]
pub struct DataDirArg {
    /// The node's data directory. Without it: $XDG_DATA_HOME/pouwd, else
    /// ~/.local/share/pouwd.
    #[arg(long, value_name = "DIR", default_value_os_t = config::default_data_dir())]
    pub data_dir: PathBuf,
}

/// An argument's value that clap let through but the command refused (a
/// peer address, an API address, a chain name): it exits 2, as clap's own
/// errors do. Attach it as context: `.context(InvalidArgument("--peer"))`.
#[derive(Debug)]
pub struct InvalidArgument(pub &'static str);

impl std::fmt::Display for InvalidArgument {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid value for {}", self.0)
    }
}

/// An error and its causes on one line, `what: why: …`, as `{:#}` writes
/// it, but leaving out a cause whose text the line already holds: an
/// error whose message shows its source (`cannot serve the API on …:
/// {source}`) would otherwise print the OS error twice.
pub fn error_text(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let part = cause.to_string();
        if text.is_empty() {
            text = part;
        } else if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
    }
    text
}

/// clap's parser of `--chain`: a built-in chain's name, or a path to a
/// chain file. A word that is neither a built-in name nor an existing
/// file, and does not look like a path, is refused with the known names.
fn chain_arg(text: &str) -> Result<String, String> {
    use crate::node::datadir::BUILTIN_CHAINS;
    let path_like = text.contains('/') || text.contains('.');
    if BUILTIN_CHAINS.contains(&text) || path_like || std::path::Path::new(text).exists() {
        return Ok(text.to_string());
    }
    Err(format!(
        "unknown chain {text:?}: the known chains are {}, or give a chain JSON file",
        BUILTIN_CHAINS.join(", ")
    ))
}

/// Parse the command line, with the flags of `start --config FILE` merged
/// in (`config.rs`); exits 2 on bad arguments, as clap does.
pub fn parse() -> Cli {
    let args: Vec<OsString> = std::env::args_os().collect();
    let matches = Cli::command().get_matches_from(&args);
    let matches = match config::merge(&args, &matches) {
        Ok(None) => matches,
        Ok(Some((merged, file))) => match Cli::command().try_get_matches_from(merged) {
            Ok(matches) => matches,
            Err(e) => {
                // The command line alone parsed: the file's values did not.
                let text = e.to_string();
                let text = text.trim_start_matches("error: ").trim_end();
                eprintln!("error: config file {}: {text}", file.display());
                std::process::exit(2);
            }
        },
        Err(e) => {
            eprintln!("error: {}", error_text(&e));
            std::process::exit(2);
        }
    };
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
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
        Command::Config(args) => config::run(args),
        Command::Completions(args) => {
            let mut command = Cli::command();
            clap_complete::generate(args.shell, &mut command, "pouwd", &mut std::io::stdout());
            Ok(())
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot bind {addr}: {source}")]
    struct Bind {
        addr: &'static str,
        source: std::io::Error,
    }

    #[test]
    fn no_cause_is_printed_twice() {
        let io = std::io::Error::from_raw_os_error(98);
        let error = anyhow::Error::new(Bind {
            addr: "127.0.0.1:1",
            source: io,
        })
        .context("cannot serve the API");
        assert_eq!(format!("{error:#}").matches("os error 98").count(), 2);
        let text = error_text(&error);
        assert_eq!(text.matches("os error 98").count(), 1, "{text}");
        assert!(
            text.starts_with("cannot serve the API: cannot bind 127.0.0.1:1: "),
            "{text}"
        );
        // Causes that say something new are all kept.
        let error = anyhow::anyhow!("inner").context("middle").context("outer");
        assert_eq!(error_text(&error), "outer: middle: inner");
    }

    #[test]
    fn chain_names_are_checked_and_paths_let_through() {
        for name in [
            "devnet",
            "regtest",
            "devnet-onnx",
            "x.json",
            "./chain",
            "/a/b",
        ] {
            assert_eq!(chain_arg(name).unwrap(), name);
        }
        let error = chain_arg("mainnet").unwrap_err();
        assert!(error.contains("unknown chain \"mainnet\""), "{error}");
        assert!(error.contains("devnet, regtest, devnet-onnx"), "{error}");
    }
}
