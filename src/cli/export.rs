//! `pouwd export-chain` and `pouwd import-chain`.
//!
//! export-chain reads a stopped node's store, or asks a running node's API
//! for its chain (`GET /chain/export`): a running node holds its store
//! locked. import-chain reads the stream's header first, and takes the
//! chain it names: a new data dir is created for it, an existing one of
//! another chain is refused, and nothing is written before these checks.

use super::backup::{sibling, Unfinished};
use super::eval::OrtArgs;
use super::running::{access, Access};
use super::{output, DataDirArg, ExitCode};
use crate::api::{client, cookie};
use crate::chain::Hash32;
use crate::node::datadir::{Cleanup, BUILTIN_CHAINS};
use crate::node::export::{export_chain_at, StreamReader};
use crate::node::import::{import_chain_until, ImportError};
use crate::node::{now_ms, Chain, ChainSource, DataDir};
use crate::progress::{Progress, Task, Unit};
use anyhow::{bail, Context, Result};
use std::io::{BufReader, Read, Write};
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
    /// The chain the file must be of: `devnet`, `regtest`, `devnet-onnx` or
    /// a chain JSON file. A new data dir takes the file's own chain without
    /// it; a chain that is not built in needs its chain file here, so that
    /// its task's files are found.
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
    // A file is written under a temporary name and renamed once whole, so
    // a failed export leaves none; stdout and special files (a pipe, a
    // device) are written as they are.
    let special = args.out.as_os_str() == "-" || (args.out.exists() && !args.out.is_file());
    let unfinished = if special {
        None
    } else {
        Some(Unfinished::new(sibling(&args.out, "writing")?))
    };
    let target = unfinished.as_ref().map_or(&args.out, |u| &u.path);
    let mut out = output(target)?;
    let written = write_chain(&dir, &mut out, "export-chain")
        .and_then(|written| {
            out.flush()?;
            Ok(written)
        })
        .with_context(|| format!("cannot export the chain to {}", args.out.display()))?;
    drop(out);
    if let Some(unfinished) = unfinished {
        std::fs::rename(&unfinished.path, &args.out).with_context(|| {
            format!(
                "cannot rename {} to {}",
                unfinished.path.display(),
                args.out.display()
            )
        })?;
        unfinished.keep();
    }
    crate::say!(
        "exported {} blocks of {} to {}; tip {}",
        written.blocks,
        written.from,
        args.out.display(),
        written.tip
    );
    Ok(())
}

/// How long `export-chain` and `backup` wait on each step of a running
/// node's export: longer than the wallet commands' `API_TIMEOUT`, since
/// the node first walks its whole chain back from the tip; the node itself
/// ends an export whose reader takes nothing for 30 s.
const EXPORT_STEP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// What [`write_chain`] wrote.
pub struct ChainWritten {
    /// Where the chain came from: the store, or the running node.
    pub from: String,
    /// The tip the stream ends at: `height=H hash=X`.
    pub tip: String,
    /// Blocks in the stream: those from height 1 up to the tip.
    pub blocks: u64,
}

/// Write the data dir's best chain as an export stream: from its store
/// when no node runs on it, else from the running node's API
/// (`GET /chain/export`), which needs the node to serve one. `command`
/// names the command in errors.
pub fn write_chain(dir: &DataDir, out: &mut dyn Write, command: &str) -> Result<ChainWritten> {
    match access(dir)? {
        Access::Stopped(store) => {
            let tip = store.tip()?;
            let (blocks, _) = export_chain_at(&store, &tip.hash, out)?;
            Ok(ChainWritten {
                from: format!("chain {:?} (store)", store.params().network),
                tip: format!("height={} hash={}", tip.height, tip.hash),
                blocks,
            })
        }
        Access::Running(node) => {
            let what = format!("`pouwd {command}` of a running node");
            let addr = node.require_api(dir, &what)?;
            let cookie_path = dir.cookie_path();
            let token = cookie::read(&cookie_path).with_context(|| {
                format!(
                    "cannot read the API's token {} (the node writes it when it starts with --api)",
                    cookie_path.display()
                )
            })?;
            let tip = client::export_chain(addr, &token, out, EXPORT_STEP_TIMEOUT)
                .with_context(|| format!("the running node's API at {addr} (GET /chain/export)"))?;
            let (height, hash) = tip
                .split_once(' ')
                .and_then(|(height, hash)| Some((height.parse::<u64>().ok()?, hash)))
                .with_context(|| {
                    format!("the running node named its tip {tip:?}, not `HEIGHT HASH`")
                })?;
            Ok(ChainWritten {
                from: format!("the running node (pid {})", node.pid()),
                tip: format!("height={height} hash={hash}"),
                blocks: height,
            })
        }
    }
}

/// A reader that keeps a copy of what is read through it, so that a
/// stream's header can be read and checked, then read again.
struct Recording<R> {
    inner: R,
    seen: Vec<u8>,
}

impl<R: Read> Read for Recording<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.seen.extend_from_slice(&buf[..n]);
        Ok(n)
    }
}

/// The built-in chain with `genesis`, if there is one.
pub fn builtin_source(genesis: &Hash32) -> Result<Option<ChainSource>> {
    for name in BUILTIN_CHAINS {
        let source = ChainSource::from_arg(name);
        if source.params()?.genesis_hash() == *genesis {
            return Ok(Some(source));
        }
    }
    Ok(None)
}

/// The genesis of an existing data dir, from its chain.json, without
/// opening its store; `None` when the file cannot tell.
fn dir_genesis(dir: &DataDir) -> Option<(String, Hash32)> {
    let text = std::fs::read_to_string(dir.chain_path()).ok()?;
    let params = crate::consensus::params::ChainParams::from_json(&text).ok()?;
    Some((params.network.clone(), params.genesis_hash()))
}

pub fn run_import(args: ImportArgs) -> Result<()> {
    let dir = DataDir::new(&args.dir.data_dir);
    dir.check_usable()?;
    // The input and its header are read, and checked against the data
    // dir and --chain, before anything is written.
    // A file says its block count in its end marker: the progress total.
    let (input, total): (Box<dyn Read>, Option<u64>) = if args.input.as_os_str() == "-" {
        (Box::new(std::io::stdin().lock()), None)
    } else {
        let mut file = std::fs::File::open(&args.input)
            .with_context(|| format!("cannot open {}", args.input.display()))?;
        let total = declared_count(&mut file);
        (Box::new(file), total)
    };
    let mut recording = Recording {
        inner: BufReader::with_capacity(1 << 20, input),
        seen: Vec::new(),
    };
    let header = StreamReader::open(&mut recording)
        .map(|(header, _)| header)
        .map_err(ImportError::from)
        .with_context(|| format!("{} is not a chain export", args.input.display()))?;
    let Recording { inner, seen } = recording;
    let input = std::io::Cursor::new(seen).chain(inner);
    let (file_network, file_genesis) = (header.params.network.clone(), header.genesis);
    let named = match &args.chain {
        Some(name) => {
            let source = ChainSource::from_arg(name);
            let params = source.params()?;
            if params.genesis_hash() != file_genesis {
                bail!(
                    "{} is an export of chain {file_network:?} (genesis {file_genesis}), but \
                     --chain names chain {:?} (genesis {}); nothing was written",
                    args.input.display(),
                    params.network,
                    params.genesis_hash()
                );
            }
            Some(source)
        }
        None => None,
    };
    let ort = args.ort.setup();
    let mut cleanup = Cleanup::Nothing;
    let chain = if dir.exists() {
        if let Some((network, genesis)) = dir_genesis(&dir) {
            if genesis != file_genesis {
                bail!(
                    "{} is an export of chain {file_network:?} (genesis {file_genesis}), but \
                     data dir {} holds chain {network:?} (genesis {genesis}); nothing was \
                     written: import it into a new data dir",
                    args.input.display(),
                    dir.root.display()
                );
            }
        }
        Chain::open(&dir, &ort)?
    } else {
        let source = match named {
            Some(source) => source,
            None => builtin_source(&file_genesis)?.with_context(|| {
                format!(
                    "{} is an export of chain {file_network:?} (genesis {file_genesis}), which \
                     is not built into pouwd; name its chain file with --chain FILE, so that \
                     its task's files are found next to it",
                    args.input.display()
                )
            })?,
        };
        let files = source.task_files(&header.params)?;
        cleanup = dir.cleanup_on_failure()?;
        let store = dir.create_or_clean(&header.params, &files)?;
        match Chain::new(store, &files, &ort) {
            Ok(chain) => chain,
            Err(e) => {
                dir.clean(cleanup);
                return Err(e);
            }
        }
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
    let mut progress = Progress::start(Task::Import, Unit::Blocks, total);
    let (report, error) = import_chain_until(
        &chain,
        input,
        threads,
        now_ms(),
        &signals.stop,
        |report, read| {
            progress.update(
                read,
                &format!(
                    "{} stored, {} already known",
                    report.stored, report.already_known
                ),
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
    progress.finish(
        "read",
        &format!(
            "{} stored, {} already known",
            report.stored, report.already_known
        ),
    );
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
            crate::say!(
                "import stopped by {name}: {} blocks stored ({} already known) in {seconds:.2}s; \
                 tip height={} hash={}; running the same import again stores the rest",
                report.stored, report.already_known, tip.height, tip.hash
            );
            Err(ExitCode { code }.into())
        }
        Some(error) if report.stored == 0 && cleanup != Cleanup::Nothing => {
            // Nothing of the file was valid: the data dir made for it goes.
            drop(chain);
            dir.clean(cleanup);
            Err(anyhow::Error::new(error).context(format!(
                "import refused; no block was stored, and the new data dir {} was removed",
                dir.root.display()
            )))
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
                        tracing::warn!(
                            target: "import",
                            "{name} received, stopping after the current batch"
                        );
                        stop.store(true, Ordering::SeqCst);
                    } else {
                        tracing::warn!(
                            target: "import",
                            "{name} received again, exiting now; the blocks reported stored \
                             are kept"
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

/// The block count an export file's end marker declares (its last 12
/// bytes: `u32 0 | u64 count`), with the file rewound; `None` when the
/// file cannot be read so or does not end in a marker (the import then
/// says what is wrong with it).
fn declared_count(file: &mut std::fs::File) -> Option<u64> {
    use std::io::{Seek, SeekFrom};
    let count = (|| {
        let length = file.metadata().ok()?.len();
        if length < 12 {
            return None;
        }
        file.seek(SeekFrom::End(-12)).ok()?;
        let mut tail = [0u8; 12];
        file.read_exact(&mut tail).ok()?;
        let (marker, count) = tail.split_at(4);
        (marker == [0; 4]).then(|| u64::from_le_bytes(count.try_into().unwrap_or([0; 8])))
    })();
    file.seek(SeekFrom::Start(0)).ok()?;
    count
}
