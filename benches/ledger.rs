//! Transactions: how fast one core validates them, what blocks of 1,000
//! transfers cost `import-chain`, and the mempool under a flood.
//!
//! A plain timing harness (`harness = false`), like benches/import.rs:
//! each figure is a whole pass over tens of thousands of transactions or a
//! whole chain, timed `POUWD_BENCH_RUNS` times (default 3); the medians
//! are printed.
//!
//! ```text
//! cargo bench --bench ledger                # all three parts, about 2 minutes
//! cargo bench --bench ledger -- validate    # 1: one core: decode, signature, account
//! cargo bench --bench ledger -- import      # 2: import-chain of blocks of 1,000 transfers
//! cargo bench --bench ledger -- mempool     # 3: a flood into the mempool, then select
//! POUWD_BENCH_TX_BLOCKS=200 POUWD_BENCH_RUNS=5 cargo bench --bench ledger -- import
//! ```
//!
//! The transactions are transfers among `ACCOUNTS` accounts (1,000), each
//! to the next account round the ring, amount 1,000 base units; transaction
//! `j` is account `j mod ACCOUNTS`'s nonce `j / ACCOUNTS`.
//!
//! 1. `validate` (one thread): `POUWD_BENCH_TXS` (50,000) pre-signed,
//!    encoded transfers, each through `Tx::from_bytes`, `check_tx` and
//!    `spend` against an in-memory account map, the recipient credited.
//!    Then each part on its own: decoding, the id (the signed hash), the
//!    sender key (`strict_key`: decompression and canonical check), the
//!    ed25519 `verify_strict` alone, the account update alone.
//! 2. `import`: a regtest chain mined in-process: 11 empty blocks (the
//!    miner's first reward matures), a block funding every account from
//!    the miner (1,000 transfers, nonces 0..999), then `POUWD_BENCH_TX_BLOCKS`
//!    (100) blocks of 1,000 transfers, one from each account. It is written
//!    with `StreamWriter` and cached as
//!    `target/bench-ledger-chain-<TX_BLOCKS>-<genesis hash prefix>.pouw`
//!    (`$CARGO_TARGET_DIR` if set); delete the file to mine it again. Rows,
//!    as in import.rs:
//!    - `import`: `import_chain` into a fresh sled store, `THREADS` workers
//!      (`POUWD_BENCH_THREADS`, default 2), from the stream in memory.
//!    - `verify`: the same checks with no store on `THREADS` threads:
//!      decoding and the parent contexts in file order, each block's header
//!      and body checks (the body's include every transaction's signature)
//!      on the workers, then in file order the duplicate-work check and the
//!      ledger (an in-memory `Ledger::connect`). The verification-bound rate.
//!    - `verify (1 thread)`, each part timed on its own; the transactions'
//!      `check_tx` is also timed apart, outside the total.
//!
//!    `import_chain` verifies and stores a batch at a time, at most
//!    `BATCH_BLOCKS` (1024) blocks and `BATCH_BYTES` (2 MiB), and overlaps
//!    the store of one batch with the checks of the next; the default
//!    112 blocks of ~150 KB are 8 batches.
//!    Then, after one more import, the mean time of `Store::tx_location`
//!    for every 50th transaction of the chain and for as many unknown ids.
//!    `POUWD_BENCH_IMPORT_ONLY=1` runs nothing but the imports, for
//!    profilers.
//! 3. `mempool`: `POUWD_BENCH_FLOOD` (100,000) transactions with fees
//!    from 1,000 to 9,999 (a fixed pseudo-random spread), offered to a
//!    `Mempool` in nonce rounds (every account's nonce 0, then every
//!    nonce 1, ...), each sender with a large spendable balance: once with
//!    the default limits, once with `max_bytes` = `POUWD_BENCH_POOL_BYTES`
//!    (4 MiB), so that the pool evicts. The bytes and count are asserted
//!    within the bounds after every admission. Admission attempts per
//!    second, what became of them and the mean time of each outcome
//!    (admitted, admitted with evictions, each refusal); the growth of
//!    VmRSS (/proc/self/status) over one pass, measured in a child process
//!    (the bench runs itself with `POUWD_BENCH_RSS_CHILD`) so that no
//!    earlier pool's freed memory hides it; then `select(max_block_tx_bytes,
//!    max_block_txs)` on each full pool. The transactions are handed in
//!    as `CheckedTx` (their checks are part 1's figure).
//!
//! Figures measured on the project's machine and what they mean are in
//! benches/RESULTS-ledger.md.

use ed25519_dalek::{Signature, SigningKey, VerifyingKey};
use pouwd::chain::{strict_key, Block, Hash32};
use pouwd::consensus::params::ChainParams;
use pouwd::consensus::target::to_u256;
use pouwd::consensus::{
    check_body, check_header, passes_gate, AncestorInfo, Ancestry, CheckedBlock, ParentContext,
};
use pouwd::consensus::{JobContext, Training};
use pouwd::ledger::Ledger;
use pouwd::ledger::GENESIS_JOB;
use pouwd::node::export::{StreamReader, StreamWriter};
use pouwd::node::import::{import_chain, BATCH_BLOCKS, BATCH_BYTES};
use pouwd::node::mempool::{Mempool, MempoolError, MempoolLimits};
use pouwd::node::{now_ms, Chain, ChainSource, DataDir};
use pouwd::tx::{check_tx, spend, Account, CheckedTx, Tx, TxFields, TxKind, TX_VERSION};
use pouwd::work::miner::{self, Job, Mined, Placement};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hint::black_box;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Accounts that send the transactions.
const ACCOUNTS: usize = 1_000;
/// What each transfer moves.
const AMOUNT: u64 = 1_000;
/// The fee of the chain's transfers.
const FEE: u64 = 1_000;
/// Empty blocks before the funding block: the miner's first reward
/// matures when block `validation_window + 1` connects.
const EMPTY_BLOCKS: u64 = 11;
/// What the funding block gives each account.
const FUNDING: u64 = 4_000_000;

// --- Shared helpers (as in benches/import.rs) ---------------------------

/// CPU time this process has used so far (all threads, user and system),
/// from /proc/self/stat; zero where that file does not exist.
fn cpu_time() -> Duration {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return Duration::ZERO;
    };
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields[11..13]
        .iter()
        .map(|f| f.parse::<u64>().unwrap_or(0))
        .sum();
    Duration::from_millis(ticks * 10)
}

/// A line of /proc/self/status in KiB (`VmRSS`, `VmHWM`); 0 where absent.
fn proc_status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
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

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

fn per_second(count: usize, time: Duration) -> f64 {
    count as f64 / time.as_secs_f64()
}

fn micros_each(time: Duration, count: usize) -> f64 {
    time.as_secs_f64() * 1e6 / count as f64
}

fn regtest_chain(root: &Path) -> Chain {
    let dir = DataDir::new(root);
    let store = dir
        .create(&ChainSource::from_arg("regtest"))
        .expect("create a regtest data dir");
    let dataset = dir.load_task_files(store.params()).expect("dataset");
    Chain::new(store, &dataset, &pouwd::model::onnx::OrtSetup::default()).expect("open the chain")
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
            .flat_map(|h| h.join().expect("a worker thread"))
            .collect()
    });
    found.sort_by_key(|(i, _)| *i);
    found.into_iter().map(|(_, r)| r).collect()
}

// --- Accounts and transactions -------------------------------------------

fn id_of(key: &SigningKey) -> Hash32 {
    Hash32(key.verifying_key().to_bytes())
}

/// The key of account `i`.
fn account_key(i: usize) -> SigningKey {
    let mut seed = [0xacu8; 32];
    seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
    SigningKey::from_bytes(&seed)
}

/// The key that mines the bench chain and funds the accounts.
fn miner_key() -> SigningKey {
    SigningKey::from_bytes(&[0x4d; 32])
}

struct Accounts {
    keys: Vec<SigningKey>,
    ids: Vec<Hash32>,
}

impl Accounts {
    fn new(count: usize) -> Accounts {
        let keys: Vec<SigningKey> = (0..count).map(account_key).collect();
        let ids = keys.iter().map(id_of).collect();
        Accounts { keys, ids }
    }

    /// Transaction `j` of the ring: account `j mod n`'s nonce
    /// `first_nonce + j / n`, to the next account.
    fn fields(&self, genesis: &Hash32, j: usize, first_nonce: u64, fee: u64) -> TxFields {
        let n = self.ids.len();
        let from = j % n;
        TxFields {
            version: TX_VERSION,
            chain: *genesis,
            from: self.ids[from],
            nonce: first_nonce + (j / n) as u64,
            fee,
            kind: TxKind::Transfer {
                to: self.ids[(from + 1) % n],
                amount: AMOUNT,
            },
        }
    }
}

/// Sign every `(signer, fields)` on two threads.
fn sign_all(keys: &[SigningKey], unsigned: Vec<(usize, TxFields)>) -> Vec<Tx> {
    on_threads(unsigned, 2, |_, (signer, fields)| {
        fields.sign(&keys[signer])
    })
}

/// A fixed pseudo-random fee from 1,000 to 9,999 for flood transaction `j`.
fn flood_fee(j: usize) -> u64 {
    let mut x = (j as u64).wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    1_000 + x % 9_000
}

/// `count` signed transfers of the ring, nonces from 0, fees spread.
fn flood(accounts: &Accounts, genesis: &Hash32, count: usize) -> Vec<Tx> {
    let n = accounts.ids.len();
    let unsigned = (0..count)
        .map(|j| (j % n, accounts.fields(genesis, j, 0, flood_fee(j))))
        .collect();
    sign_all(&accounts.keys, unsigned)
}

// --- 1. Transaction validation on one core --------------------------------

fn bench_validate(
    params: &ChainParams,
    accounts: &Accounts,
    txs: &[Tx],
    runs: usize,
) -> ValidateFigures {
    let genesis = params.genesis_hash();
    let count = txs.len();
    let encoded: Vec<Vec<u8>> = txs.iter().map(Tx::to_bytes).collect();
    let rich = Account {
        spendable: 1 << 50,
        immature: 0,
        nonce: 0,
    };
    let start: HashMap<Hash32, Account> = accounts.ids.iter().map(|id| (*id, rich)).collect();

    // What the parts need, prepared outside their timing.
    let decoded: Vec<Tx> = encoded
        .iter()
        .map(|b| Tx::from_bytes(b).expect("decodes"))
        .collect();
    let ids: Vec<Hash32> = decoded.iter().map(Tx::id).collect();
    let keys: Vec<VerifyingKey> = decoded
        .iter()
        .map(|t| strict_key(&t.fields.from).expect("a strict key"))
        .collect();
    let signatures: Vec<Signature> = decoded
        .iter()
        .map(|t| Signature::from_bytes(&t.signature))
        .collect();
    let checked: Vec<CheckedTx> = decoded
        .iter()
        .cloned()
        .map(CheckedTx::of_stored_block)
        .collect();

    let full = || {
        let mut map = start.clone();
        let started = Instant::now();
        for bytes in &encoded {
            let tx = Tx::from_bytes(bytes).expect("a valid encoding");
            let tx = check_tx(tx, &genesis, &pouwd::tx::JobLimits::default())
                .expect("a valid transaction");
            apply(&mut map, &tx);
        }
        let elapsed = started.elapsed();
        black_box(&map);
        elapsed
    };
    let decode = || {
        let started = Instant::now();
        for bytes in &encoded {
            black_box(Tx::from_bytes(bytes).expect("a valid encoding"));
        }
        started.elapsed()
    };
    let id = || {
        let started = Instant::now();
        for tx in &decoded {
            black_box(tx.id());
        }
        started.elapsed()
    };
    let key = || {
        let started = Instant::now();
        for tx in &decoded {
            black_box(strict_key(&tx.fields.from));
        }
        started.elapsed()
    };
    let verify = || {
        let started = Instant::now();
        for ((key, id), signature) in keys.iter().zip(&ids).zip(&signatures) {
            key.verify_strict(&id.0, signature).expect("verifies");
        }
        started.elapsed()
    };
    let state = || {
        let mut map = start.clone();
        let started = Instant::now();
        for tx in &checked {
            apply(&mut map, tx);
        }
        let elapsed = started.elapsed();
        black_box(&map);
        elapsed
    };
    // One untimed pass warms the caches.
    full();
    let mut figures = ValidateFigures::default();
    for _ in 0..runs {
        figures.full.push(full());
        figures.decode.push(decode());
        figures.id.push(id());
        figures.key.push(key());
        figures.verify.push(verify());
        figures.state.push(state());
    }
    figures.count = count;
    figures
}

/// `spend` for the sender, the amount to the recipient.
fn apply(map: &mut HashMap<Hash32, Account>, tx: &CheckedTx) {
    let f = tx.fields();
    let sender = map.get(&f.from).copied().unwrap_or_default();
    let after = spend(tx, &sender).expect("the account allows it");
    map.insert(f.from, after);
    let TxKind::Transfer { to, amount } = &f.kind else {
        unreachable!("the bench makes transfers")
    };
    let recipient = map.entry(*to).or_default();
    recipient.spendable = recipient
        .spendable
        .checked_add(*amount)
        .expect("no overflow");
}

#[derive(Default)]
struct ValidateFigures {
    count: usize,
    full: Vec<Duration>,
    decode: Vec<Duration>,
    id: Vec<Duration>,
    key: Vec<Duration>,
    verify: Vec<Duration>,
    state: Vec<Duration>,
}

fn print_validate(f: &ValidateFigures) {
    let n = f.count;
    let full = median(f.full.clone());
    println!("\n1. transaction validation, one thread: {n} transfers from {ACCOUNTS} accounts");
    println!("{:<42} {:>10} {:>9} {:>8}", "", "tx/s", "µs/tx", "share");
    let row = |name: &str, runs: &[Duration]| {
        let t = median(runs.to_vec());
        println!(
            "{name:<42} {:>10.0} {:>9.2} {:>7.1}%",
            per_second(n, t),
            micros_each(t, n),
            100.0 * t.as_secs_f64() / full.as_secs_f64()
        );
    };
    row("decode + check_tx + spend (all)", &f.full);
    row("  Tx::from_bytes", &f.decode);
    row("  id (encode + tagged SHA-256)", &f.id);
    row("  strict_key (decompress + canonical)", &f.key);
    row("  verify_strict", &f.verify);
    row("  spend + credit (HashMap)", &f.state);
    println!(
        "runs (tx/s): {:?}",
        f.full
            .iter()
            .map(|t| format!("{:.0}", per_second(n, *t)))
            .collect::<Vec<_>>()
    );
    let rate = per_second(n, full);
    println!(
        "target ≥ 20,000 tx/s: {} ({rate:.0} tx/s)",
        if rate >= 20_000.0 { "met" } else { "MISSED" }
    );
}

// --- 2. import-chain of blocks with transactions --------------------------

/// Headers of the chain so far, in memory, for the parent contexts.
/// What validating a block of the genesis task needs besides its context.
fn training<'a>(
    task: &'a pouwd::work::Task,
    job: &'a JobContext,
    start_model: &'a [f64],
) -> Training<'a> {
    Training {
        task,
        job,
        reference_cost: task.cost,
        start_model,
    }
}

#[derive(Default)]
struct Headers {
    infos: HashMap<Hash32, (AncestorInfo, Hash32)>,
}

impl Headers {
    fn insert(&mut self, block: &Block) -> Hash32 {
        let fields = &block.header.fields;
        let id = block.id();
        let parent = self.infos[&fields.parent].0.clone();
        let info = AncestorInfo::of_header(id, fields, &parent);
        self.infos.insert(id, (info, fields.parent));
        id
    }
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

/// Mine a child of `parent` carrying `txs`: the ticket does not cover
/// them, so they are sealed into the block after the solution is found.
fn mine_child(
    chain: &Chain,
    headers: &Headers,
    parent_model: &[f64],
    parent: Hash32,
    key: &SigningKey,
    txs: Vec<Tx>,
) -> Block {
    let params = chain.params();
    let task = &chain.task;
    let ctx = ParentContext::build(params, headers, &parent).expect("parent known");
    let job = JobContext::build(headers, &ctx.parent, &GENESIS_JOB).expect("known");
    let gate = |score| passes_gate(params, score, job.gate_score());
    let height = ctx.child_height();
    for lane in 0..256 {
        let job = Job {
            task,
            parent,
            parent_model,
            miner: id_of(key),
            lane,
            target: to_u256(&ctx.required_target),
            job_block: job.job_block,
            accept_score: &gate,
        };
        let Mined::Found(solution) = miner::mine(&job, |_| true) else {
            continue;
        };
        let placement = Placement {
            parent,
            height,
            timestamp_ms: (params.genesis_time_ms + height * params.target_block_ms)
                .max(ctx.median_time_past_ms + 1),
            target: ctx.required_target,
            job: pouwd::ledger::GENESIS_JOB,
            job_block: job.job_block,
        };
        return miner::seal_with(task, &solution, &placement, key, txs);
    }
    panic!("no lane of 256 gave a block at height {height}");
}

/// The cached bench chain of `tx_blocks` blocks of transfers, mined if missing.
fn ledger_chain_file(chain: &Chain, accounts: &Accounts, tx_blocks: usize) -> PathBuf {
    let params = chain.params();
    let genesis = params.genesis_hash();
    let file = target_dir().join(format!(
        "bench-ledger-chain-{tx_blocks}-{}.pouw",
        &genesis.to_string()[..12]
    ));
    if file.is_file() {
        return file;
    }
    let n = accounts.ids.len();
    let per_account = tx_blocks as u64 * FEE;
    assert!(
        per_account < FUNDING,
        "{tx_blocks} blocks of fees ({per_account}) exceed what each account is given ({FUNDING})"
    );
    eprintln!(
        "mining a regtest chain of {} blocks ({tx_blocks} of {n} transfers) for {}",
        EMPTY_BLOCKS + 1 + tx_blocks as u64,
        file.display()
    );
    let started = Instant::now();
    std::fs::create_dir_all(target_dir()).expect("create the target dir");
    let partial = file.with_extension("pouw.partial");
    let out = std::io::BufWriter::new(std::fs::File::create(&partial).expect("create the file"));
    let mut writer = StreamWriter::new(out, &params.to_json(), &genesis).expect("write");
    let genesis_info = AncestorInfo::genesis(params);
    let mut headers = Headers::default();
    headers
        .infos
        .insert(genesis_info.hash, (genesis_info.clone(), Hash32::ZERO));
    let mut model = chain.model(&genesis_info.hash).expect("genesis model");
    let mut tip = genesis_info.hash;
    let key = miner_key();

    // The funding transfers, from the miner: nonces 0..n.
    let funding: Vec<(usize, TxFields)> = (0..n)
        .map(|i| {
            let fields = TxFields {
                version: TX_VERSION,
                chain: genesis,
                from: id_of(&key),
                nonce: i as u64,
                fee: FEE,
                kind: TxKind::Transfer {
                    to: accounts.ids[i],
                    amount: FUNDING,
                },
            };
            (0, fields)
        })
        .collect();
    assert!(
        n as u64 * (FUNDING + FEE) <= params.reward_amount,
        "one reward funds every account"
    );
    let mut funding = Some(sign_all(std::slice::from_ref(&key), funding));
    let blocks = EMPTY_BLOCKS + 1 + tx_blocks as u64;
    for height in 1..=blocks {
        let txs = if height <= EMPTY_BLOCKS {
            Vec::new()
        } else if height == EMPTY_BLOCKS + 1 {
            funding.take().expect("one funding block")
        } else {
            // Round k: every account's nonce k.
            let round = height - EMPTY_BLOCKS - 2;
            let unsigned = (0..n)
                .map(|j| (j, accounts.fields(&genesis, j, round, FEE)))
                .collect();
            sign_all(&accounts.keys, unsigned)
        };
        let block = mine_child(chain, &headers, &model, tip, &key, txs);
        writer.write_block(&block.to_bytes()).expect("write");
        tip = headers.insert(&block);
        model = block.body.params;
    }
    let mut out = writer.finish().expect("finish the stream");
    out.flush().expect("flush");
    drop(out);
    std::fs::rename(&partial, &file).expect("move the chain into place");
    eprintln!("mined in {:.1}s", started.elapsed().as_secs_f64());
    file
}

/// One `import_chain` of the whole stream into a fresh store: wall and CPU time.
fn time_import(stream: &[u8], blocks: usize, threads: usize, now: u64) -> (Duration, Duration) {
    let dir = tempfile::tempdir().expect("temp dir");
    let chain = regtest_chain(&dir.path().join("node"));
    let cpu = cpu_time();
    let started = Instant::now();
    let (report, error) = import_chain(&chain, stream, threads, now, |_, _| {});
    let elapsed = started.elapsed();
    let cpu = cpu_time() - cpu;
    assert!(error.is_none(), "import failed: {error:?}");
    assert_eq!(report.stored, blocks as u64);
    // The ledger the store derived: every account sent its last nonce.
    let account = chain
        .store
        .account(&id_of(&account_key(0)))
        .expect("read an account");
    assert_eq!(account.nonce, (blocks as u64) - EMPTY_BLOCKS - 1);
    (elapsed, cpu)
}

/// After an import into a fresh store, the mean time of `Store::tx_location`
/// for every 50th transaction of the chain (each found at its block's
/// height), and for as many ids that no block holds.
fn time_lookups(stream: &[u8], records: &[Vec<u8>], threads: usize, now: u64) -> (f64, f64, usize) {
    let dir = tempfile::tempdir().expect("temp dir");
    let chain = regtest_chain(&dir.path().join("node"));
    let (_, error) = import_chain(&chain, stream, threads, now, |_, _| {});
    assert!(error.is_none(), "import failed: {error:?}");
    let mut present = Vec::new();
    for bytes in records {
        let block = chain.decode(bytes).expect("a valid block decodes");
        for tx in block.body.txs.iter().step_by(50) {
            present.push((tx.id(), block.height()));
        }
    }
    let started = Instant::now();
    for (id, height) in &present {
        let found = chain.store.tx_location(id).expect("lookup");
        assert_eq!(found.map(|(h, _)| h), Some(*height));
    }
    let found = started.elapsed();
    let absent: Vec<Hash32> = (0..present.len() as u64)
        .map(|i| Hash32(*blake3::hash(&i.to_le_bytes()).as_bytes()))
        .collect();
    let started = Instant::now();
    for id in &absent {
        assert_eq!(chain.store.tx_location(id).expect("lookup"), None);
    }
    let missing = started.elapsed();
    (
        micros_each(found, present.len()),
        micros_each(missing, absent.len()),
        present.len(),
    )
}

/// Time spent in each part of [`verify`].
#[derive(Default)]
struct Parts {
    /// Decoding and the parent contexts, in file order.
    decode: Duration,
    /// Header and body checks; on one thread, the header checks alone.
    checks: Duration,
    /// On one thread, the body checks alone.
    bodies: Duration,
    /// Duplicate work and the in-memory ledger, in file order.
    ledger: Duration,
    /// CPU time of the whole run, all threads.
    cpu: Duration,
}

impl Parts {
    fn total(&self) -> Duration {
        self.decode + self.checks + self.bodies + self.ledger
    }
}

/// Every check `import_chain` makes, with no store: decoding and the
/// parent contexts in file order, each block's header and body checks on
/// `threads` threads (on one thread all headers, then all bodies, each
/// part timed), then in file order the duplicate-work check and the
/// ledger rules.
fn verify(chain: &Chain, records: &[Vec<u8>], threads: usize) -> Parts {
    let params = chain.params();
    let task = &chain.task;
    let now = now_ms().max(last_timestamp(params, records.len()));
    let no_owner = |_: &Hash32| None;
    let mut parts = Parts::default();
    let cpu = cpu_time();

    let started = Instant::now();
    let genesis = AncestorInfo::genesis(params);
    let mut models: HashMap<Hash32, Vec<f64>> = HashMap::with_capacity(records.len() + 1);
    models.insert(genesis.hash, chain.model(&genesis.hash).expect("genesis"));
    let mut headers = Headers::default();
    headers.infos.insert(genesis.hash, (genesis, Hash32::ZERO));
    let mut items = Vec::with_capacity(records.len());
    for bytes in records {
        let block = chain.decode(bytes).expect("a valid block decodes");
        let parent = block.header.fields.parent;
        let ctx = ParentContext::build(params, &headers, &parent).expect("parent known");
        let job = JobContext::build(&headers, &ctx.parent, &GENESIS_JOB).expect("known");
        let id = headers.insert(&block);
        let parent_model = models[&parent].clone();
        models.insert(id, block.body.params.clone());
        items.push((block, ctx, (job, parent_model)));
    }
    parts.decode = started.elapsed();

    let checked: Vec<CheckedBlock> = if threads > 1 {
        let started = Instant::now();
        let checked = on_threads(items, threads, |_, (block, ctx, (job, parent_model))| {
            let training = training(task, &job, &parent_model);
            let header = check_header(params, &ctx, &training, &block.header, now, &no_owner)
                .expect("a valid header");
            check_body(params, &training, block, header).expect("a valid body")
        });
        parts.checks = started.elapsed();
        checked
    } else {
        let started = Instant::now();
        let with_headers: Vec<_> = items
            .into_iter()
            .map(|(block, ctx, (job, parent_model))| {
                let header = check_header(
                    params,
                    &ctx,
                    &training(task, &job, &parent_model),
                    &block.header,
                    now,
                    &no_owner,
                )
                .expect("a valid header");
                (block, (job, parent_model), header)
            })
            .collect();
        parts.checks = started.elapsed();
        let started = Instant::now();
        let checked = with_headers
            .into_iter()
            .map(|(block, (job, parent_model), header)| {
                check_body(params, &training(task, &job, &parent_model), block, header)
                    .expect("a valid body")
            })
            .collect();
        parts.bodies = started.elapsed();
        checked
    };

    let started = Instant::now();
    let mut seen = HashSet::with_capacity(checked.len());
    let mut ledger = Ledger::genesis(u64::from(params.validation_window));
    for block in &checked {
        assert!(seen.insert(block.work_hash()), "no duplicate work");
        let fields = &block.block().header.fields;
        ledger
            .connect(
                fields.height,
                &fields.miner,
                params.reward_amount,
                block.txs(),
            )
            .expect("the ledger allows the block");
    }
    black_box(&ledger);
    parts.ledger = started.elapsed();
    parts.cpu = cpu_time() - cpu;
    parts
}

/// The timestamp the bench chain gives its last block.
fn last_timestamp(params: &ChainParams, blocks: usize) -> u64 {
    params.genesis_time_ms + blocks as u64 * params.target_block_ms
}

/// `check_tx` of every transaction of the chain, one thread: the share of
/// the body checks that is the transactions'.
fn time_tx_checks(chain: &Chain, records: &[Vec<u8>]) -> (Duration, usize) {
    let genesis = chain.params().genesis_hash();
    let txs: Vec<Tx> = records
        .iter()
        .flat_map(|bytes| chain.decode(bytes).expect("decodes").body.txs)
        .collect();
    let count = txs.len();
    let started = Instant::now();
    for tx in txs {
        black_box(check_tx(tx, &genesis, &pouwd::tx::JobLimits::default()).expect("valid"));
    }
    (started.elapsed(), count)
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

    fn print(&self, name: &str, blocks: usize, txs: usize) {
        println!(
            "{name:<24} {:>9.1} {:>9.0} {:>9.3} {:>9.3} {:>9.2}",
            per_second(blocks, self.wall),
            per_second(txs, self.wall),
            self.wall.as_secs_f64(),
            self.best.as_secs_f64(),
            self.cpu.as_secs_f64()
        );
    }
}

fn bench_import(chain: &Chain, accounts: &Accounts, runs: usize, threads: usize) {
    let tx_blocks = env_number("POUWD_BENCH_TX_BLOCKS", 100);
    let file = ledger_chain_file(chain, accounts, tx_blocks);
    let stream = std::fs::read(&file).expect("read the chain file");
    let (header, mut reader) = StreamReader::open(&stream[..]).expect("a chain export");
    assert_eq!(header.genesis, chain.params().genesis_hash());
    let mut records = Vec::new();
    while let Some(bytes) = reader.next_block().expect("a well-formed stream") {
        records.push(bytes);
    }
    let blocks = records.len();
    let txs: usize = ACCOUNTS * (tx_blocks + 1);
    assert_eq!(blocks as u64, EMPTY_BLOCKS + 1 + tx_blocks as u64);
    let now = now_ms().max(last_timestamp(chain.params(), blocks));
    println!(
        "\n2. import-chain: {blocks} regtest blocks, {tx_blocks} of {ACCOUNTS} transfers after the funding block ({txs} transactions, {} bytes), {threads} threads, {runs} runs, import batches of up to {BATCH_BLOCKS} blocks and {BATCH_BYTES} bytes",
        stream.len(),
    );
    if std::env::var_os("POUWD_BENCH_IMPORT_ONLY").is_some() {
        // For profilers: nothing but imports.
        for _ in 0..runs {
            let (wall, cpu) = time_import(&stream, blocks, threads, now);
            println!(
                "import wall {:.3} s cpu {:.2} s",
                wall.as_secs_f64(),
                cpu.as_secs_f64()
            );
        }
        return;
    }
    // One untimed pass of each warms the caches and the page cache.
    verify(chain, &records, threads);
    time_import(&stream, blocks, threads, now);
    let mut imports = Vec::new();
    let mut parallel = Vec::new();
    let mut single = Vec::new();
    let mut tx_checks = Vec::new();
    for _ in 0..runs {
        imports.push(time_import(&stream, blocks, threads, now));
        parallel.push(verify(chain, &records, threads));
        single.push(verify(chain, &records, 1));
        tx_checks.push(time_tx_checks(chain, &records).0);
    }
    let as_pairs = |runs: &[Parts]| -> Vec<(Duration, Duration)> {
        runs.iter().map(|p| (p.total(), p.cpu)).collect()
    };
    let import = Figures::of(&imports);
    let parallel_figures = Figures::of(&as_pairs(&parallel));
    let single_figures = Figures::of(&as_pairs(&single));
    println!(
        "{:<24} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "", "blocks/s", "tx/s", "wall s", "best s", "cpu s"
    );
    import.print(&format!("import ({threads} threads)"), blocks, txs);
    parallel_figures.print(&format!("verify ({threads} threads)"), blocks, txs);
    single_figures.print("verify (1 thread)", blocks, txs);
    let part = |runs: &[Parts], f: fn(&Parts) -> Duration| median(runs.iter().map(f).collect());
    println!(
        "1 thread: decode+contexts {:.3} s, headers {:.3} s, bodies {:.3} s (of which check_tx of the {} transactions {:.3} s), duplicate work + ledger {:.3} s",
        part(&single, |p| p.decode).as_secs_f64(),
        part(&single, |p| p.checks).as_secs_f64(),
        part(&single, |p| p.bodies).as_secs_f64(),
        txs,
        median(tx_checks).as_secs_f64(),
        part(&single, |p| p.ledger).as_secs_f64(),
    );
    println!(
        "{threads} threads: decode+contexts {:.3} s, checks {:.3} s, duplicate work + ledger {:.3} s",
        part(&parallel, |p| p.decode).as_secs_f64(),
        part(&parallel, |p| p.checks).as_secs_f64(),
        part(&parallel, |p| p.ledger).as_secs_f64(),
    );
    println!(
        "import runs (wall s): {:?}",
        imports
            .iter()
            .map(|(wall, _)| format!("{:.3}", wall.as_secs_f64()))
            .collect::<Vec<_>>()
    );
    let (found, absent, lookups) = time_lookups(&stream, &records, threads, now);
    println!(
        "tx_location after the import: {found:.1} µs for a transaction of the chain, {absent:.1} µs for an unknown id ({lookups} of each)"
    );
    let percent = |reference: Duration, import: Duration| {
        100.0 * reference.as_secs_f64() / import.as_secs_f64()
    };
    let ratio = percent(parallel_figures.wall, import.wall);
    println!(
        "import / verify ({threads} threads): {ratio:.1}% (median), {:.1}% (best); import / its CPU-time bound (cpu ÷ {threads}): {:.1}%",
        percent(parallel_figures.best, import.best),
        percent(import.cpu / threads as u32, import.wall),
    );
    println!(
        "target ≥ 80% of the verification-bound rate: {}",
        if ratio >= 80.0 { "met" } else { "MISSED" }
    );
}

// --- 3. The mempool under a flood ------------------------------------------

fn refusal(error: &MempoolError) -> &'static str {
    match error {
        MempoolError::AlreadyKnown { .. } => "already known",
        MempoolError::FeeTooLow { .. } => "fee too low",
        MempoolError::NonceUsed { .. } => "nonce used",
        MempoolError::NonceGap { .. } => "nonce gap",
        MempoolError::Conflict { .. } => "conflict",
        MempoolError::Overspend { .. } => "overspend",
        MempoolError::Full => "full",
    }
}

/// One pass of a flood into a fresh pool.
struct Flooded {
    pool: Mempool,
    time: Duration,
    admitted: usize,
    evicted: usize,
    refused: BTreeMap<&'static str, usize>,
    /// Per outcome ("admitted", "admitted, evicting", or the refusal):
    /// how many and the time they took together.
    outcomes: BTreeMap<&'static str, (usize, Duration)>,
    /// The most bytes the pool held after any admission.
    peak_bytes: usize,
}

/// Offer every transaction to a fresh pool with `limits`, asserting the
/// bounds after each. The transactions are copied in one by one (a
/// `CheckedTx` owns no heap memory), so no large buffer is freed during
/// the pass and the RSS before and after compare.
fn admit_all(limits: &MempoolLimits, txs: &[CheckedTx]) -> Flooded {
    let account = Account {
        spendable: 1 << 50,
        immature: 0,
        nonce: 0,
    };
    let mut pool = Mempool::new(limits.clone());
    let mut admitted = 0;
    let mut evicted = 0;
    let mut refused = BTreeMap::new();
    let mut outcomes: BTreeMap<&'static str, (usize, Duration)> = BTreeMap::new();
    let mut peak_bytes = 0;
    let started = Instant::now();
    for tx in txs {
        let tx = tx.clone();
        let admitting = Instant::now();
        let result = pool.admit(tx, &account);
        let took = admitting.elapsed();
        let outcome = match result {
            Ok(gone) if gone.is_empty() => {
                admitted += 1;
                "admitted"
            }
            Ok(gone) => {
                admitted += 1;
                evicted += gone.len();
                "admitted, evicting"
            }
            Err(error) => {
                let reason = refusal(&error);
                *refused.entry(reason).or_insert(0) += 1;
                reason
            }
        };
        let entry = outcomes.entry(outcome).or_default();
        entry.0 += 1;
        entry.1 += took;
        peak_bytes = peak_bytes.max(pool.bytes());
        assert!(pool.bytes() <= limits.max_bytes, "over the byte bound");
        assert!(pool.len() <= limits.max_count, "over the count bound");
    }
    let time = started.elapsed();
    Flooded {
        pool,
        time,
        admitted,
        evicted,
        refused,
        outcomes,
        peak_bytes,
    }
}

/// Environment variable that makes the bench a child measuring the RSS of
/// one flood into a pool of that many `max_bytes`.
const RSS_CHILD: &str = "POUWD_BENCH_RSS_CHILD";

/// In the child: VmRSS before and after one flood, on a heap that no
/// earlier pool has left free memory in. Prints `rss BEFORE AFTER` in KiB.
fn rss_child(max_bytes: usize, flood_txs: usize) {
    let params = regtest_params();
    let accounts = Accounts::new(ACCOUNTS);
    let txs = flood(&accounts, &params.genesis_hash(), flood_txs);
    let checked: Vec<CheckedTx> = txs
        .iter()
        .cloned()
        .map(CheckedTx::of_stored_block)
        .collect();
    let limits = MempoolLimits {
        max_bytes,
        ..MempoolLimits::default()
    };
    let before = proc_status_kib("VmRSS");
    let flooded = admit_all(&limits, &checked);
    let after = proc_status_kib("VmRSS");
    black_box(&flooded.pool);
    println!("rss {before} {after}");
}

/// VmRSS in KiB before and after a flood into a pool of `max_bytes`, from
/// a child process.
fn rss_of_flood(max_bytes: usize, flood_txs: usize) -> (u64, u64) {
    let exe = std::env::current_exe().expect("the bench's path");
    let output = std::process::Command::new(exe)
        .arg("--bench")
        .env(RSS_CHILD, max_bytes.to_string())
        .env("POUWD_BENCH_FLOOD", flood_txs.to_string())
        .output()
        .expect("run the RSS child");
    assert!(output.status.success(), "the RSS child failed: {output:?}");
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("rss "))
        .expect("the child prints its RSS");
    let mut numbers = line
        .split_whitespace()
        .map(|n| n.parse().expect("a number"));
    (
        numbers.next().expect("before"),
        numbers.next().expect("after"),
    )
}

fn regtest_params() -> ChainParams {
    ChainParams::from_json(include_str!("../config/regtest.json")).expect("config/regtest.json")
}

fn bench_mempool(params: &ChainParams, txs: &[Tx], runs: usize) {
    let count = txs.len();
    let checked: Vec<CheckedTx> = txs
        .iter()
        .cloned()
        .map(CheckedTx::of_stored_block)
        .collect();
    let encoded_bytes: usize = txs.iter().map(|t| t.to_bytes().len()).sum();
    let small = MempoolLimits {
        max_bytes: env_number("POUWD_BENCH_POOL_BYTES", 4 << 20),
        ..MempoolLimits::default()
    };
    let limits = [
        ("default limits", MempoolLimits::default()),
        ("small", small),
    ];
    println!(
        "\n3. mempool: a flood of {count} transactions ({encoded_bytes} bytes encoded) from {ACCOUNTS} accounts, {runs} runs"
    );
    let max_bytes = params.max_block_tx_bytes as usize;
    let max_txs = params.max_block_txs as usize;
    for (name, limits) in &limits {
        let mut times = Vec::new();
        let mut last = None;
        for _ in 0..runs {
            let flooded = admit_all(limits, &checked);
            times.push(flooded.time);
            last = Some(flooded);
        }
        let f = last.expect("at least one run");
        let time = median(times.clone());
        println!(
            "{name} (max_bytes {}, max_count {}): {:.0} admissions/s ({:.2} µs each, {:.3} s; runs {:?})",
            limits.max_bytes,
            limits.max_count,
            per_second(count, time),
            micros_each(time, count),
            time.as_secs_f64(),
            times
                .iter()
                .map(|t| format!("{:.3}", t.as_secs_f64()))
                .collect::<Vec<_>>()
        );
        println!(
            "  admitted {}, evicted {}, refused {:?}; pool holds {} transactions, {} bytes (peak {}, bound {}: {:.1}%)",
            f.admitted,
            f.evicted,
            f.refused,
            f.pool.len(),
            f.pool.bytes(),
            f.peak_bytes,
            limits.max_bytes,
            100.0 * f.peak_bytes as f64 / limits.max_bytes as f64
        );
        println!(
            "  per outcome (last run): {}",
            f.outcomes
                .iter()
                .map(|(outcome, (n, time))| format!(
                    "{outcome} {n} × {:.2} µs",
                    micros_each(*time, *n)
                ))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let (before, after) = rss_of_flood(limits.max_bytes, count);
        let grown = after.saturating_sub(before);
        println!(
            "  VmRSS (a fresh process) {:.1} MiB before, {:.1} MiB after: +{:.1} MiB, {:.0} bytes per pooled transaction, {:.2}× the pool's byte count",
            mib(before),
            mib(after),
            mib(grown),
            grown as f64 * 1024.0 / f.pool.len().max(1) as f64,
            grown as f64 * 1024.0 / f.pool.bytes().max(1) as f64,
        );
        let mut selects = Vec::new();
        let mut picked = Vec::new();
        for _ in 0..runs.max(5) {
            let started = Instant::now();
            picked = f.pool.select(max_bytes, max_txs);
            selects.push(started.elapsed());
        }
        let picked_bytes: usize = picked.iter().map(|t| t.tx().to_bytes().len()).sum();
        println!(
            "  select({max_bytes}, {max_txs}) on it: {:.2} ms (median of {}), {} transactions, {picked_bytes} bytes",
            median(selects.clone()).as_secs_f64() * 1e3,
            selects.len(),
            picked.len(),
        );
    }
}

fn main() {
    if let Ok(max_bytes) = std::env::var(RSS_CHILD) {
        let max_bytes = max_bytes.parse().expect("a byte count");
        rss_child(max_bytes, env_number("POUWD_BENCH_FLOOD", 100_000));
        return;
    }
    // `cargo bench` passes `--bench`; other words choose the parts.
    let chosen: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wants = |part: &str| chosen.is_empty() || chosen.iter().any(|c| part.contains(c.as_str()));
    let runs = env_number("POUWD_BENCH_RUNS", 3).max(1);
    let threads = env_number("POUWD_BENCH_THREADS", 2);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("ledger bench: {cores} cores, {runs} runs (medians)");

    let dir = tempfile::tempdir().expect("temp dir");
    let chain = regtest_chain(&dir.path().join("node"));
    let params = chain.params().clone();
    let genesis = params.genesis_hash();
    let accounts = Accounts::new(ACCOUNTS);

    let validate_txs = env_number("POUWD_BENCH_TXS", 50_000);
    let flood_txs = env_number("POUWD_BENCH_FLOOD", 100_000);
    let mut needed = 0;
    if wants("validate") {
        needed = needed.max(validate_txs);
    }
    if wants("mempool") {
        needed = needed.max(flood_txs);
    }
    let txs = flood(&accounts, &genesis, needed);
    if wants("validate") {
        let figures = bench_validate(&params, &accounts, &txs[..validate_txs], runs);
        print_validate(&figures);
    }
    if wants("import") {
        bench_import(&chain, &accounts, runs, threads);
    }
    if wants("mempool") {
        bench_mempool(&params, &txs[..flood_txs], runs);
    }
}
