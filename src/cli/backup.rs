//! `pouwd backup` and `pouwd restore`.
//!
//! A backup (schema/backup.md) holds the node key, the chain file, the
//! task's files and the chain as of one tip. It is taken from a stopped
//! node's store, or while the node runs from its API (`GET
//! /chain/export`), without stopping it. A restore builds the data dir in
//! a temporary directory next to the target, imports the chain there as
//! `import-chain` would, checking every block, and renames it into place
//! only once it is whole: a failed restore leaves nothing behind.

use super::eval::OrtArgs;
use super::export::write_chain;
use super::DataDirArg;
use crate::chain::Hash32;
use crate::consensus::params::ChainParams;
use crate::node::backup::{self, task_entry, CHAIN_ENTRY, KEY_ENTRY};
use crate::node::chain::TaskFiles;
use crate::node::datadir::pinned_files;
use crate::node::export::{StreamReader, MAX_PARAMS_BYTES};
use crate::node::import::import_chain;
use crate::node::{now_ms, Chain, DataDir};
use anyhow::{bail, Context, Result};
use std::fs;
use std::io::{BufReader, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

#[derive(Debug, clap::Args)]
pub struct BackupArgs {
    #[command(flatten)]
    pub dir: DataDirArg,
    /// The backup file to write (mode 0600: it holds the node key).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// The new data dir: a path that does not exist, or an empty directory.
    #[command(flatten)]
    pub dir: DataDirArg,
    /// The backup file to restore.
    #[arg(long = "in", value_name = "FILE")]
    pub input: PathBuf,
    /// Threads verifying blocks in parallel (default: all cores).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// ONNX Runtime, for chains whose task runs an ONNX encoder.
    #[command(flatten)]
    pub ort: OrtArgs,
}

/// A file or directory being made, removed when dropped unless kept.
pub struct Unfinished {
    pub path: PathBuf,
    kept: bool,
}

impl Unfinished {
    pub fn new(path: PathBuf) -> Unfinished {
        Unfinished { path, kept: false }
    }

    pub fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for Unfinished {
    fn drop(&mut self) {
        if self.kept {
            return;
        }
        let removed = if self.path.is_dir() {
            fs::remove_dir_all(&self.path)
        } else {
            fs::remove_file(&self.path)
        };
        if let Err(e) = removed {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(target: "pouwd", "warning: cannot remove {}: {e}", self.path.display());
            }
        }
    }
}

/// `NAME.WHAT.PID` next to `path`.
pub fn sibling(path: &Path, what: &str) -> Result<PathBuf> {
    let name = path
        .file_name()
        .with_context(|| format!("{} names no file", path.display()))?
        .to_string_lossy();
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    if !parent.is_dir() {
        bail!("{} does not exist", parent.display());
    }
    Ok(parent.join(format!(".{name}.{what}.{}", std::process::id())))
}

/// A writer that keeps the first `limit` bytes written through it.
struct Head<'a> {
    inner: &'a mut dyn Write,
    head: Vec<u8>,
    limit: usize,
}

impl Write for Head<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(bytes)?;
        let room = self.limit.saturating_sub(self.head.len());
        self.head.extend_from_slice(&bytes[..n.min(room)]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

pub fn run_backup(args: BackupArgs) -> Result<()> {
    if args.out.as_os_str() == "-" {
        bail!("--out -: a backup holds the node key, so it is written to a file only (mode 0600)");
    }
    let dir = DataDir::new(&args.dir.data_dir);
    if !dir.exists() {
        bail!(
            "{} is not a pouwd data dir (no store/ inside)",
            dir.root.display()
        );
    }
    // Checks the key's mode and that it parses.
    let key = dir.load_key()?;
    let id = Hash32(key.verifying_key().to_bytes());
    let key_path = dir.key_path();
    let key_bytes =
        fs::read(&key_path).with_context(|| format!("cannot read {}", key_path.display()))?;
    let chain_path = dir.chain_path();
    let chain_json =
        fs::read(&chain_path).with_context(|| format!("cannot read {}", chain_path.display()))?;
    let params = std::str::from_utf8(&chain_json)
        .map_err(anyhow::Error::new)
        .and_then(|text| ChainParams::from_json(text).map_err(anyhow::Error::new))
        .with_context(|| format!("chain file {}", chain_path.display()))?;
    let files = dir.load_task_files(&params)?;
    let mut entries = vec![
        (KEY_ENTRY.to_string(), &key_bytes[..]),
        (CHAIN_ENTRY.to_string(), &chain_json[..]),
    ];
    let contents = [Some(&files.dataset), files.encoder.as_ref()];
    for (file, bytes) in pinned_files(&params).iter().zip(contents) {
        let bytes = bytes.with_context(|| format!("the {} is not loaded", file.what))?;
        entries.push((task_entry(&file.name), &bytes[..]));
    }

    let temp = sibling(&args.out, "writing")?;
    let unfinished = Unfinished::new(temp.clone());
    let file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp)
        .with_context(|| format!("cannot create {}", temp.display()))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let cannot_write = || format!("cannot write {}", temp.display());
    backup::write_entries(&mut out, &entries).with_context(cannot_write)?;
    let mut head = Head {
        inner: &mut out,
        head: Vec::new(),
        limit: 48 + MAX_PARAMS_BYTES as usize,
    };
    let written = write_chain(&dir, &mut head, "backup")?;
    // The chain written must be the chain the entries name.
    let (header, _) = StreamReader::open(&head.head[..])
        .context("the chain written to the backup does not start with a stream header")?;
    if header.genesis != params.genesis_hash() {
        bail!(
            "{} names chain {:?} (genesis {}), but the store holds chain {:?} (genesis {}); \
             no backup was written",
            chain_path.display(),
            params.network,
            params.genesis_hash(),
            header.params.network,
            header.genesis
        );
    }
    let file = out
        .into_inner()
        .map_err(|e| e.into_error())
        .with_context(cannot_write)?;
    file.sync_all().with_context(cannot_write)?;
    fs::rename(&temp, &args.out)
        .with_context(|| format!("cannot rename {} to {}", temp.display(), args.out.display()))?;
    unfinished.keep();
    let names: Vec<&str> = entries.iter().map(|(name, _)| name.as_str()).collect();
    println!(
        "backed up {} to {}: {} (id {id}) and the chain of {} up to tip {}",
        dir.root.display(),
        args.out.display(),
        names.join(", "),
        written.from,
        written.tip
    );
    Ok(())
}

pub fn run_restore(args: RestoreArgs) -> Result<()> {
    let target = &args.dir.data_dir;
    if target.exists() {
        if !target.is_dir() {
            bail!("{} exists and is not a directory", target.display());
        }
        let mut entries =
            fs::read_dir(target).with_context(|| format!("cannot read {}", target.display()))?;
        if entries.next().is_some() {
            bail!(
                "refusing to restore into {}: it is not empty; restore into a new or empty \
                 directory",
                target.display()
            );
        }
    }
    let file = fs::File::open(&args.input)
        .with_context(|| format!("cannot open {}", args.input.display()))?;
    let mut input = BufReader::with_capacity(1 << 20, file);
    let backup = backup::read_entries(&mut input)
        .with_context(|| format!("cannot restore {}", args.input.display()))?;

    let temp = sibling(target, "restoring")?;
    let unfinished = Unfinished::new(temp.clone());
    fs::create_dir(&temp).with_context(|| format!("cannot create {}", temp.display()))?;
    let dir = DataDir::new(&temp);
    let key_path = dir.key_path();
    let mut key = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&key_path)
        .with_context(|| format!("cannot create {}", key_path.display()))?;
    key.write_all(&backup.key)?;
    key.sync_all()?;
    let mut files = backup.files.into_iter().map(|(_, bytes)| bytes);
    let files = TaskFiles {
        dataset: files.next().unwrap_or_default(),
        encoder: files.next(),
    };
    let store = dir.create_with(&backup.params, &files)?;
    // chain.json as the data dir had it, byte for byte.
    crate::node::datadir::write_atomic(&dir.chain_path(), &backup.chain_json)?;
    let ort = args.ort.setup();
    let chain = Chain::new(store, &files, &ort)?;
    let threads = args.threads.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    let (report, error) = import_chain(&chain, input, threads, now_ms(), |report, read| {
        crate::say!("restore: {read} blocks read, {} stored", report.stored);
    });
    if let Some(error) = error {
        return Err(anyhow::Error::new(error).context(format!(
            "cannot restore {}: its chain is refused, and nothing was written to {}",
            args.input.display(),
            target.display()
        )));
    }
    let tip = chain.store.tip()?;
    let balance = chain.store.balance(&backup.id)?;
    let network = chain.params().network.clone();
    drop(chain);
    // Renaming onto an empty directory replaces it.
    fs::rename(&temp, target)
        .with_context(|| format!("cannot rename {} to {}", temp.display(), target.display()))?;
    unfinished.keep();
    println!(
        "restored {} into {}: id {}, chain {network:?}, {} blocks, tip height={} hash={}, \
         balance {}",
        args.input.display(),
        target.display(),
        backup.id,
        report.stored,
        tip.height,
        tip.hash,
        crate::tx::amount::format(balance.total)
    );
    Ok(())
}
