//! `pouwd export-chain` and `pouwd import-chain`.

use super::eval::OrtArgs;
use super::{output, DataDirArg, ExitCode};
use crate::node::export::export_chain;
use crate::node::import::{import_chain_until, ImportError};
use crate::node::{now_ms, Chain, ChainSource, DataDir};
use anyhow::{bail, Context, Result};
use std::io::{BufReader, Read};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;

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
    #[arg(long, value_name = "CHAIN", value_parser = super::chain_arg)]
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
    let signals = Signals::watch()?;
    let started = std::time::Instant::now();
    // The tip as of the last batch stored and flushed. When a write fails
    // (a full disk), sled's view already holds the batch it could not
    // flush, so the tip read from the store would name blocks that are not
    // stored, and that the count leaves out.
    let mut stored_tip = chain.store.tip()?;
    let (report, error) = import_chain_until(
        &chain,
        BufReader::with_capacity(1 << 20, input),
        threads,
        now_ms(),
        &signals.stop,
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
    let seconds = started.elapsed().as_secs_f64();
    match error {
        None => {
            println!(
                "imported {} blocks ({} already known) in {seconds:.2}s; tip height={} hash={}",
                report.stored, report.already_known, tip.height, tip.hash
            );
            match signals.received() {
                // It came with the last batch: the import is whole, and
                // the exit code still says the signal was taken.
                Some((_, code)) => Err(ExitCode { code }.into()),
                None => Ok(()),
            }
        }
        Some(ImportError::Stopped) => {
            let (name, code) = signals.received().unwrap_or(("a signal", 1));
            eprintln!(
                "import stopped by {name}: {} blocks stored ({} already known) in {seconds:.2}s; \
                 tip height={} hash={}; running the same import again stores the rest",
                report.stored, report.already_known, tip.height, tip.hash
            );
            Err(ExitCode { code }.into())
        }
        Some(error) => Err(anyhow::Error::new(error).context(format!(
            "import refused; the {} valid blocks before the problem are stored (tip height={} hash={})",
            report.stored, tip.height, tip.hash
        ))),
    }
}

/// SIGINT and SIGTERM during an import. The first sets `stop`, and the
/// import stores the batches it has in hand and ends; a second ends the
/// process at once, keeping every batch stored before it (each is one
/// atomic, flushed write).
struct Signals {
    stop: Arc<AtomicBool>,
    /// The exit code of the signal received: 130 (SIGINT), 143 (SIGTERM).
    code: Arc<AtomicU8>,
}

impl Signals {
    fn watch() -> Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the signal watcher")?;
        let (mut terminate, mut interrupt) = runtime.block_on(async {
            anyhow::Ok((
                signal(SignalKind::terminate()).context("cannot watch SIGTERM")?,
                signal(SignalKind::interrupt()).context("cannot watch SIGINT")?,
            ))
        })?;
        let stop = Arc::new(AtomicBool::new(false));
        let code = Arc::new(AtomicU8::new(0));
        let signals = Signals {
            stop: Arc::clone(&stop),
            code: Arc::clone(&code),
        };
        std::thread::spawn(move || {
            runtime.block_on(async move {
                loop {
                    let received = tokio::select! {
                        _ = terminate.recv() => 143,
                        _ = interrupt.recv() => 130,
                    };
                    let name = signal_name(received);
                    if code
                        .compare_exchange(0, received, Ordering::SeqCst, Ordering::SeqCst)
                        .is_ok()
                    {
                        eprintln!("import: {name} received, stopping after the current batch");
                        stop.store(true, Ordering::SeqCst);
                    } else {
                        eprintln!(
                            "import: {name} received again, exiting now; the blocks reported \
                             stored are kept"
                        );
                        std::process::exit(i32::from(received));
                    }
                }
            })
        });
        Ok(signals)
    }

    /// The first signal received, by name, and its exit code.
    fn received(&self) -> Option<(&'static str, u8)> {
        match self.code.load(Ordering::SeqCst) {
            0 => None,
            code => Some((signal_name(code), code)),
        }
    }
}

fn signal_name(code: u8) -> &'static str {
    if code == 130 {
        "SIGINT"
    } else {
        "SIGTERM"
    }
}
