//! `pouwd export-chain` and `pouwd import-chain`.

use super::eval::OrtArgs;
use super::{output, DataDirArg};
use crate::node::export::export_chain;
use crate::node::import::{import_chain, ImportError};
use crate::node::{now_ms, Chain, ChainSource, DataDir};
use anyhow::{bail, Context, Result};
use std::io::{BufReader, Read};
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub dir: DataDirArg,
    /// Output file, or `-` for stdout.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    #[command(flatten)]
    pub dir: DataDirArg,
    /// Input file, or `-` for stdin.
    #[arg(long = "in", value_name = "FILE")]
    pub input: PathBuf,
    /// Chain of a new data dir: `devnet` (default), `regtest`, `devnet-onnx`
    /// or a chain JSON file.
    #[arg(long, value_name = "CHAIN")]
    pub chain: Option<String>,
    /// Threads verifying blocks in parallel (default: all cores).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// ONNX Runtime, for chains whose task runs an ONNX encoder.
    #[command(flatten)]
    pub ort: OrtArgs,
}

pub fn run_export(args: ExportArgs) -> Result<()> {
    let dir = DataDir::new(&args.dir.data_dir);
    let store = dir.read_store()?;
    let (blocks, _) = export_chain(&store, output(&args.out)?)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    eprintln!(
        "exported {blocks} blocks of chain {:?} (tip {}) to {}",
        store.params().network,
        store.tip()?.hash,
        args.out.display()
    );
    Ok(())
}

pub fn run_import(args: ImportArgs) -> Result<()> {
    let dir = DataDir::new(&args.dir.data_dir);
    let ort = args.ort.setup();
    let chain = if dir.exists() {
        Chain::open(&dir, &ort)?
    } else {
        let source = ChainSource::from_arg(args.chain.as_deref().unwrap_or("devnet"));
        let store = dir.create(&source)?;
        let files = dir.load_task_files(store.params())?;
        Chain::new(store, &files, &ort)?
    };
    if let Some(name) = &args.chain {
        let named = ChainSource::from_arg(name).params()?;
        if named.genesis_hash() != chain.store.genesis_hash() {
            bail!(
                "data dir {} holds chain {:?}, but --chain names {:?}",
                dir.root.display(),
                chain.params().network,
                named.network
            );
        }
    }
    let input: Box<dyn Read> = if args.input.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(
            std::fs::File::open(&args.input)
                .with_context(|| format!("cannot open {}", args.input.display()))?,
        )
    };
    let threads = args.threads.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    let started = std::time::Instant::now();
    // The tip as of the last batch stored and flushed. When a write fails
    // (a full disk), sled's view already holds the batch it could not
    // flush, so the tip read from the store would name blocks that are not
    // stored, and that the count leaves out.
    let mut stored_tip = chain.store.tip()?;
    let (report, error) = import_chain(
        &chain,
        BufReader::with_capacity(1 << 20, input),
        threads,
        now_ms(),
        |report, read| {
            eprintln!(
                "import: {read} blocks read, {} stored, {} already known",
                report.stored, report.already_known
            );
            if let Ok(tip) = chain.store.tip() {
                stored_tip = tip;
            }
        },
    );
    let tip = match &error {
        Some(ImportError::Store(_)) => stored_tip,
        _ => chain.store.tip()?,
    };
    match error {
        None => {
            let seconds = started.elapsed().as_secs_f64();
            println!(
                "imported {} blocks ({} already known) in {seconds:.2}s; tip height={} hash={}",
                report.stored, report.already_known, tip.height, tip.hash
            );
            Ok(())
        }
        Some(error) => Err(anyhow::Error::new(error).context(format!(
            "import refused; the {} valid blocks before the problem are stored (tip height={} hash={})",
            report.stored, tip.height, tip.hash
        ))),
    }
}
