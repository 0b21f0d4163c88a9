//! `import-chain` throughput against the rate verification alone allows.
//!
//! A plain timing harness (`harness = false`): one iteration imports a
//! whole 10,000-block regtest chain, so criterion's sampling would add
//! minutes per figure and nothing that a few timed runs do not give.
//!
//! ```text
//! cargo bench --bench import
//! POUWD_BENCH_BLOCKS=2000 POUWD_BENCH_RUNS=5 cargo bench --bench import
//! ```
//!
//! The chain is mined once with the `pouwd` binary (`start --chain regtest
//! --mine --stop-at-height N`, then `export-chain`) and cached as
//! `target/bench-chain-N.pouw` (`$CARGO_TARGET_DIR` if set); delete the
//! file to mine a new one. Each measurement runs `POUWD_BENCH_RUNS` times
//! (default 3) over the stream held in memory, so disk reads of the stream
//! are not measured; the rows are:
//!
//! - `import`: [`import_chain`] into a fresh sled store, `THREADS` workers
//!   (default 2, `POUWD_BENCH_THREADS`), everything included: decode,
//!   header and body checks, the atomic store batches and their flushes.
//! - `verify`: the same checks with no store, as fast as `THREADS` workers
//!   can do them: decoding and the parent contexts in file order (each
//!   context needs the headers before it), then each block's header and
//!   body checks on the workers. This is the verification-bound rate the
//!   import is compared with.
//! - `verify, headers in order`: the header checks in file order on one
//!   thread, then the body checks on the workers: the shape import-chain
//!   had before it checked headers on its workers.
//! - `verify (1 thread)`: everything on one thread, each part timed on its
//!   own: decoding with the contexts, the header checks (mostly the
//!   ed25519 signature) and the body checks (re-execution and score).
//!
//! Columns: blocks/s from the median wall time, the median and best wall
//! times, and the median CPU time of all threads (from /proc/self/stat).
//! `POUWD_BENCH_IMPORT_ONLY=1` runs nothing but the imports, and
//! `POUWD_BENCH_VERIFY_ONLY=1` nothing but the fully parallel verification,
//! for profilers.
//!
//! The last line gives `import / verify` for both verify shapes. Figures
//! measured on the project's machine and what they mean are in
//! benches/RESULTS-import.md.

use pouwd::chain::{Block, Hash32};
use pouwd::consensus::params::ChainParams;
use pouwd::consensus::{
    check_body, check_header, AncestorInfo, Ancestry, CheckedBlock, CheckedHeader, ParentContext,
};
use pouwd::consensus::{JobContext, Training};
use pouwd::ledger::GENESIS_JOB;
use pouwd::node::export::StreamReader;
use pouwd::node::import::import_chain;
use pouwd::node::{now_ms, Chain, ChainSource, DataDir};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// CPU time this process has used so far (all threads, user and system),
/// from /proc/self/stat; zero where that file does not exist.
fn cpu_time() -> Duration {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return Duration::ZERO;
    };
    // Fields after the command name (which may hold spaces): utime and
    // stime are the 12th and 13th, in clock ticks of 10 ms.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields[11..13]
        .iter()
        .map(|f| f.parse::<u64>().unwrap_or(0))
        .sum();
    Duration::from_millis(ticks * 10)
}

fn env_number(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(text) => text
            .parse()
            .unwrap_or_else(|_| panic!("{name}={text:?} is not a number")),
        Err(_) => default,
    }
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

fn pouwd(args: &[&str]) {
    let status = Command::new(env!("CARGO_BIN_EXE_pouwd"))
        .args(args)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("run pouwd");
    assert!(status.success(), "pouwd {args:?} failed: {status}");
}

/// The cached export of a regtest chain of `blocks` blocks, mined if missing.
fn chain_file(blocks: usize) -> PathBuf {
    let file = target_dir().join(format!("bench-chain-{blocks}.pouw"));
    if file.is_file() {
        return file;
    }
    eprintln!(
        "mining a {blocks}-block regtest chain for {}",
        file.display()
    );
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().join("node");
    let data_dir = data_dir.to_str().expect("UTF-8 temp path");
    let height = blocks.to_string();
    pouwd(&[
        "start",
        "--data-dir",
        data_dir,
        "--chain",
        "regtest",
        "--mine",
        "--stop-at-height",
        &height,
    ]);
    std::fs::create_dir_all(target_dir()).expect("create the target dir");
    let partial = file.with_extension("pouw.partial");
    let partial_str = partial.to_str().expect("UTF-8 target path");
    pouwd(&["export-chain", "--data-dir", data_dir, "--out", partial_str]);
    std::fs::rename(&partial, &file).expect("move the chain into place");
    eprintln!("mined in {:.1}s", started.elapsed().as_secs_f64());
    file
}

fn regtest_chain(root: &Path) -> Chain {
    let dir = DataDir::new(root);
    let store = dir
        .create(&ChainSource::from_arg("regtest"))
        .expect("create a regtest data dir");
    let dataset = dir.load_task_files(store.params()).expect("dataset");
    Chain::new(store, &dataset, &pouwd::model::onnx::OrtSetup::default()).expect("open the chain")
}

/// One `import_chain` of the whole stream into a fresh store: wall and CPU time.
fn time_import(stream: &[u8], blocks: usize, threads: usize) -> (Duration, Duration) {
    let dir = tempfile::tempdir().expect("temp dir");
    let chain = regtest_chain(&dir.path().join("node"));
    let cpu = cpu_time();
    let started = Instant::now();
    let (report, error) = import_chain(&chain, stream, threads, now_ms(), |_, _| {});
    let elapsed = started.elapsed();
    let cpu = cpu_time() - cpu;
    assert!(error.is_none(), "import failed: {error:?}");
    assert_eq!(report.stored, blocks as u64);
    (elapsed, cpu)
}

/// Headers of the chain so far, in memory, for the parent contexts.
struct Headers {
    infos: HashMap<Hash32, (AncestorInfo, Hash32)>,
}

impl Ancestry for Headers {
    fn walk_back(&self, hash: &Hash32, count: usize) -> Option<Vec<AncestorInfo>> {
        let mut out = Vec::with_capacity(count);
        let mut next = *hash;
        while out.len() < count {
            let (info, parent) = self.infos.get(&next)?;
            out.push(info.clone());
            if info.height == 0 {
                break;
            }
            next = *parent;
        }
        Some(out)
    }
}

/// Decoded blocks with their parent contexts and parent models.
struct Decoded {
    blocks: Vec<Block>,
    contexts: Vec<ParentContext>,
    parent_models: Vec<Vec<f64>>,
    jobs: Vec<JobContext>,
}

/// Decode every block and build its parent context from the headers
/// before it, in file order, as any verifier must.
fn decode_all(chain: &Chain, records: &[Vec<u8>]) -> Decoded {
    let params = chain.params();
    let genesis = AncestorInfo::genesis(params);
    let mut models: HashMap<Hash32, Vec<f64>> = HashMap::with_capacity(records.len() + 1);
    models.insert(
        genesis.hash,
        chain.model(&genesis.hash).expect("genesis model"),
    );
    let mut headers = Headers {
        infos: HashMap::with_capacity(records.len() + 1),
    };
    headers.infos.insert(genesis.hash, (genesis, Hash32::ZERO));
    let mut decoded = Decoded {
        blocks: Vec::with_capacity(records.len()),
        contexts: Vec::with_capacity(records.len()),
        parent_models: Vec::with_capacity(records.len()),
        jobs: Vec::with_capacity(records.len()),
    };
    for bytes in records {
        let block = chain.decode(bytes).expect("a valid block decodes");
        let fields = &block.header.fields;
        let ctx = ParentContext::build(params, &headers, &fields.parent).expect("parent known");
        let job = JobContext::build(&headers, &ctx.parent, &GENESIS_JOB).expect("known");
        let id = block.id();
        let info = AncestorInfo::of_header(id, fields, &ctx.parent);
        decoded.jobs.push(job);
        headers.infos.insert(id, (info, fields.parent));
        decoded.parent_models.push(models[&fields.parent].clone());
        models.insert(id, block.body.params.clone());
        decoded.contexts.push(ctx);
        decoded.blocks.push(block);
    }
    decoded
}

/// Time spent in each part of [`verify`].
#[derive(Default)]
struct Parts {
    /// Decoding and the parent contexts, in file order.
    decode: Duration,
    /// Header checks; for [`Shape::Parallel`] on several threads, header
    /// and body checks together.
    headers: Duration,
    bodies: Duration,
    /// CPU time of the whole run, all threads.
    cpu: Duration,
}

impl Parts {
    fn total(&self) -> Duration {
        self.decode + self.headers + self.bodies
    }
}

/// How [`verify`] spreads the checks over its threads.
#[derive(Clone, Copy, PartialEq)]
enum Shape {
    /// Each block's header and body checks on the workers.
    Parallel,
    /// Header checks in file order on one thread, then the body checks on
    /// the workers: how import-chain ran before it checked headers on its
    /// workers too.
    HeadersInOrder,
}

/// `check(i, item)` for every item on `threads` threads, results in order.
fn on_threads<T: Send, R: Send>(
    items: Vec<T>,
    threads: usize,
    check: impl Fn(usize, T) -> R + Sync,
) -> Vec<R> {
    if threads <= 1 {
        return items
            .into_iter()
            .enumerate()
            .map(|(i, item)| check(i, item))
            .collect();
    }
    let count = items.len();
    let jobs: Vec<Mutex<Option<T>>> = items.into_iter().map(|t| Mutex::new(Some(t))).collect();
    let next = AtomicUsize::new(0);
    let mut found: Vec<(usize, R)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut found = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= count {
                            break;
                        }
                        let item = jobs[i].lock().expect("job lock").take().expect("once");
                        found.push((i, check(i, item)));
                    }
                    found
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a verifier thread"))
            .collect()
    });
    found.sort_by_key(|(i, _)| *i);
    found.into_iter().map(|(_, r)| r).collect()
}

/// Every check `import_chain` makes, without a store: decoding and the
/// parent contexts in file order, the header and body checks spread as
/// `shape` says, then the duplicate-work check in file order. On one
/// thread the header checks of all blocks run before the body checks, so
/// that each part is timed on its own.
fn verify(chain: &Chain, records: &[Vec<u8>], threads: usize, shape: Shape) -> Parts {
    let params: &ChainParams = chain.params();
    let task = &chain.task;
    let now = now_ms();
    let no_owner = |_: &Hash32| None;
    let mut parts = Parts::default();
    let cpu = cpu_time();
    let started = Instant::now();
    let decoded = decode_all(chain, records);
    parts.decode = started.elapsed();
    let Decoded {
        blocks,
        contexts,
        parent_models,
        jobs,
    } = decoded;
    let training = |i: usize| Training {
        task,
        job: &jobs[i],
        reference_cost: task.cost,
        start_model: &parent_models[i],
    };

    let work_hashes: Vec<Hash32> = if shape == Shape::Parallel && threads > 1 {
        let started = Instant::now();
        let work = on_threads(blocks, threads, |i, block| {
            let ctx = &contexts[i];
            let header = check_header(params, ctx, &training(i), &block.header, now, &no_owner)
                .expect("a valid header");
            check_body(params, &training(i), block, header)
                .expect("a valid body")
                .work_hash()
        });
        parts.headers = started.elapsed();
        work
    } else {
        let started = Instant::now();
        let headers: Vec<CheckedHeader> = blocks
            .iter()
            .zip(&contexts)
            .enumerate()
            .map(|(i, (block, ctx))| {
                check_header(params, ctx, &training(i), &block.header, now, &no_owner)
                    .expect("a valid header")
            })
            .collect();
        parts.headers = started.elapsed();
        let started = Instant::now();
        let items: Vec<(Block, CheckedHeader)> = blocks.into_iter().zip(headers).collect();
        let work = on_threads(items, threads, |i, (block, header)| {
            let checked: CheckedBlock =
                check_body(params, &training(i), block, header).expect("a valid body");
            checked.work_hash()
        });
        parts.bodies = started.elapsed();
        work
    };
    let started = Instant::now();
    let mut seen = HashSet::with_capacity(work_hashes.len());
    for work_hash in work_hashes {
        assert!(seen.insert(work_hash), "no duplicate work");
    }
    parts.decode += started.elapsed();
    parts.cpu = cpu_time() - cpu;
    parts
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

fn rate(blocks: usize, time: Duration) -> f64 {
    blocks as f64 / time.as_secs_f64()
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is not supported.
    let blocks = env_number("POUWD_BENCH_BLOCKS", 10_000);
    let threads = env_number("POUWD_BENCH_THREADS", 2);
    let runs = env_number("POUWD_BENCH_RUNS", 3).max(1);
    let file = chain_file(blocks);
    let stream = std::fs::read(&file).expect("read the chain file");
    let (_, mut reader) = StreamReader::open(&stream[..]).expect("a chain export");
    let mut records = Vec::with_capacity(blocks);
    while let Some(bytes) = reader.next_block().expect("a well-formed stream") {
        records.push(bytes);
    }
    assert_eq!(
        records.len(),
        blocks,
        "{} holds another chain",
        file.display()
    );
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "import bench: {blocks} regtest blocks ({} bytes), {threads} threads, {cores} cores, {runs} runs (blocks/s from the median)",
        stream.len()
    );

    if std::env::var_os("POUWD_BENCH_IMPORT_ONLY").is_some() {
        // For profilers: nothing but imports.
        for _ in 0..runs {
            let (wall, cpu) = time_import(&stream, blocks, threads);
            println!(
                "import wall {:.3} s cpu {:.2} s",
                wall.as_secs_f64(),
                cpu.as_secs_f64()
            );
        }
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let chain = regtest_chain(&dir.path().join("node"));
    if std::env::var_os("POUWD_BENCH_VERIFY_ONLY").is_some() {
        // For profilers: nothing but verification (fully parallel).
        for _ in 0..runs {
            let parts = verify(&chain, &records, threads, Shape::Parallel);
            println!(
                "verify wall {:.3} s cpu {:.2} s",
                parts.total().as_secs_f64(),
                parts.cpu.as_secs_f64()
            );
        }
        return;
    }
    // One untimed pass of each warms the caches and the page cache.
    verify(&chain, &records, threads, Shape::Parallel);
    time_import(&stream, blocks, threads);

    let mut imports = Vec::new();
    let mut parallel = Vec::new();
    let mut in_order = Vec::new();
    let mut single = Vec::new();
    for _ in 0..runs {
        imports.push(time_import(&stream, blocks, threads));
        parallel.push(verify(&chain, &records, threads, Shape::Parallel));
        in_order.push(verify(&chain, &records, threads, Shape::HeadersInOrder));
        single.push(verify(&chain, &records, 1, Shape::Parallel));
    }
    let import = Figures::of(&imports);
    let as_pairs = |runs: &[Parts]| -> Vec<(Duration, Duration)> {
        runs.iter().map(|p| (p.total(), p.cpu)).collect()
    };
    let parallel_figures = Figures::of(&as_pairs(&parallel));
    let in_order_figures = Figures::of(&as_pairs(&in_order));
    let single_figures = Figures::of(&as_pairs(&single));
    let part = |f: fn(&Parts) -> Duration| median(single.iter().map(f).collect());
    println!(
        "{:<26} {:>9} {:>9} {:>9} {:>9}",
        "", "blocks/s", "wall s", "best s", "cpu s"
    );
    import.print(&format!("import ({threads} threads)"), blocks);
    parallel_figures.print(&format!("verify ({threads} threads)"), blocks);
    in_order_figures.print("verify, headers in order", blocks);
    single_figures.print("verify (1 thread)", blocks);
    println!(
        "1 thread: decode+contexts {:.3} s, headers {:.3} s, bodies {:.3} s",
        part(|p| p.decode).as_secs_f64(),
        part(|p| p.headers).as_secs_f64(),
        part(|p| p.bodies).as_secs_f64(),
    );
    println!(
        "import runs (wall s): {:?}",
        imports
            .iter()
            .map(|(wall, _)| format!("{:.3}", wall.as_secs_f64()))
            .collect::<Vec<_>>()
    );
    let percent = |reference: Duration, import: Duration| {
        100.0 * reference.as_secs_f64() / import.as_secs_f64()
    };
    println!(
        "import / verify: {:.1}% (median), {:.1}% (best); with headers in order: {:.1}% (median), {:.1}% (best)",
        percent(parallel_figures.wall, import.wall),
        percent(parallel_figures.best, import.best),
        percent(in_order_figures.wall, import.wall),
        percent(in_order_figures.best, import.best),
    );
}

/// Median wall time, best wall time and median CPU time of some runs.
struct Figures {
    wall: Duration,
    best: Duration,
    cpu: Duration,
}

impl Figures {
    fn of(runs: &[(Duration, Duration)]) -> Figures {
        Figures {
            wall: median(runs.iter().map(|(wall, _)| *wall).collect()),
            best: runs.iter().map(|(wall, _)| *wall).min().unwrap_or_default(),
            cpu: median(runs.iter().map(|(_, cpu)| *cpu).collect()),
        }
    }

    fn print(&self, name: &str, blocks: usize) {
        println!(
            "{name:<26} {:>9.0} {:>9.3} {:>9.3} {:>9.2}",
            rate(blocks, self.wall),
            self.wall.as_secs_f64(),
            self.best.as_secs_f64(),
            self.cpu.as_secs_f64()
        );
    }
}
