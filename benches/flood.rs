//! A running node under a flood of transactions: does its pool stay within
//! its bound, does it keep mining, does its API keep answering?
//!
//! A plain timing harness (`harness = false`) around real processes:
//!
//! ```text
//! cargo bench --bench flood
//! POUWD_FLOOD_ACCOUNTS=1000 POUWD_FLOOD_PER_ACCOUNT=100 POUWD_FLOOD_POOL_BYTES=4194304 cargo bench --bench flood
//! ```
//!
//! 1. A chain like regtest, whose blocks take `POUWD_FLOOD_STEPS_PER_BLOCK`
//!    training steps on average (default 100,000: a block every ~0.1–0.3 s
//!    on one core), is mined to height 40 with the `pouwd` binary, so its
//!    key holds 30 spendable rewards.
//! 2. The node starts mining with `--api` (and `--mempool-max-bytes` from
//!    `POUWD_FLOOD_POOL_BYTES`, default 32 MiB, the node's default).
//! 3. Its key funds `POUWD_FLOOD_ACCOUNTS` (default 1,000) fresh accounts
//!    through `POST /tx`, and the bench waits until every one is mined.
//! 4. The flood: every account sends `POUWD_FLOOD_PER_ACCOUNT` (default
//!    100) transfers, nonces in order, signed beforehand, posted by four
//!    client threads (one TCP connection per request, as `pouwd send`
//!    does), as fast as the node answers.
//! 5. Meanwhile a monitor samples every 200 ms: the node's RSS
//!    (/proc/PID/status), the pool's bytes and count (`GET /mempool`), the
//!    tip height and the time `GET /status` takes.
//!
//! Printed: admissions per second and the answers by status code, the
//! pool's largest size against its bound, the RSS before and at its
//! largest, blocks and transactions mined during the flood, and the
//! `GET /status` latencies. Figures measured on the project's machine are
//! in benches/RESULTS-flood.md.

use ed25519_dalek::SigningKey;
use pouwd::api::client;
use pouwd::chain::Hash32;
use pouwd::tx::{Tx, TxFields, TxKind, TX_VERSION};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(30);
const FEE: u64 = 1_000;

fn env_number(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(text) => text
            .parse()
            .unwrap_or_else(|_| panic!("{name}={text:?} is not a number")),
        Err(_) => default,
    }
}

fn pouwd(args: &[&str]) {
    let status = Command::new(env!("CARGO_BIN_EXE_pouwd"))
        .args(args)
        .stdout(Stdio::null())
        .status()
        .expect("run pouwd");
    assert!(status.success(), "pouwd {args:?} failed: {status}");
}

fn id_of(key: &SigningKey) -> Hash32 {
    Hash32(key.verifying_key().to_bytes())
}

fn transfer(chain: Hash32, from: &SigningKey, nonce: u64, to: Hash32, amount: u64) -> Tx {
    TxFields {
        version: TX_VERSION,
        chain,
        from: id_of(from),
        nonce,
        fee: FEE,
        kind: TxKind::Transfer { to, amount },
    }
    .sign(from)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// The running node, its API address and its cookie; mined-block lines
/// are counted as they come.
struct Node {
    child: Child,
    api: SocketAddr,
    token: String,
    mined_txs: Arc<AtomicU64>,
    mined_blocks: Arc<AtomicU64>,
}

fn start(dir: &Path, pool_bytes: usize) -> Node {
    let d = dir.to_str().expect("UTF-8 path");
    let bytes = pool_bytes.to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_pouwd"))
        .args([
            "start",
            "--data-dir",
            d,
            "--mine",
            "--api",
            "127.0.0.1:0",
            "--mempool-max-bytes",
            &bytes,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the node");
    let stdout = child.stdout.take().expect("stdout");
    let (api_tx, api_rx) = std::sync::mpsc::channel();
    let mined_txs = Arc::new(AtomicU64::new(0));
    let mined_blocks = Arc::new(AtomicU64::new(0));
    let (txs, blocks) = (Arc::clone(&mined_txs), Arc::clone(&mined_blocks));
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(addr) = line.strip_prefix("api: listening on ") {
                let _ = api_tx.send(addr.trim().to_string());
            }
            if line.starts_with("mined ") {
                blocks.fetch_add(1, Ordering::Relaxed);
                if let Some(n) = line
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("txs="))
                    .and_then(|n| n.parse::<u64>().ok())
                {
                    txs.fetch_add(n, Ordering::Relaxed);
                }
            }
        }
    });
    let api: SocketAddr = api_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the node's API line")
        .parse()
        .expect("an address");
    let token = std::fs::read_to_string(dir.join("api.cookie"))
        .expect("the cookie")
        .trim()
        .to_string();
    Node {
        child,
        api,
        token,
        mined_txs,
        mined_blocks,
    }
}

fn get(api: SocketAddr, path: &str) -> Value {
    client::get_json(api, path, TIMEOUT).unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// Post every transaction in order; the answers by status code.
fn post_all(api: SocketAddr, token: &str, txs: &[Tx]) -> Vec<(u16, u64)> {
    let mut codes: std::collections::BTreeMap<u16, u64> = Default::default();
    for tx in txs {
        let code = match client::post_tx(api, token, &tx.to_bytes(), TIMEOUT) {
            Ok(_) => 200,
            Err(e) => e.status().unwrap_or(0),
        };
        *codes.entry(code).or_default() += 1;
    }
    codes.into_iter().collect()
}

/// A chain like regtest whose blocks take `steps` training steps on
/// average (regtest's take 200, hundreds of blocks a second, which would
/// drain any pool at once): `flood.json` in `dir`, the dataset beside it.
fn flood_chain(dir: &Path, steps: u64) -> std::path::PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut chain: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("config/regtest.json")).expect("config/regtest.json"),
    )
    .expect("JSON");
    let target = primitive_types::U256::MAX / primitive_types::U256::from(steps);
    chain["network"] = "flood".into();
    chain["genesis_message"] = format!("pouwd flood bench: {steps} steps per block").into();
    chain["initial_target"] = hex_u256(target).into();
    chain["task"]["checkpoint_interval"] = 1_000.into();
    let file = dir.join("flood.json");
    std::fs::write(&file, chain.to_string()).expect("write the chain");
    std::fs::copy(root.join("data/diabetes.csv"), dir.join("diabetes.csv")).expect("dataset");
    file
}

fn hex_u256(value: primitive_types::U256) -> String {
    value
        .to_big_endian()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[derive(Default, Debug)]
struct Samples {
    max_rss_kib: u64,
    max_pool_bytes: u64,
    max_pool_count: u64,
    status_ms: Vec<f64>,
    heights: Vec<u64>,
}

fn main() {
    let accounts = env_number("POUWD_FLOOD_ACCOUNTS", 1_000);
    let per_account = env_number("POUWD_FLOOD_PER_ACCOUNT", 100);
    let pool_bytes = env_number("POUWD_FLOOD_POOL_BYTES", 32 << 20);
    let steps_per_block = env_number("POUWD_FLOOD_STEPS_PER_BLOCK", 100_000);
    let tmp = tempfile::tempdir().expect("temp dir");
    let chain = flood_chain(tmp.path(), steps_per_block as u64);
    let dir = tmp.path().join("node");
    let d = dir.to_str().expect("UTF-8 path");
    pouwd(&[
        "start",
        "--data-dir",
        d,
        "--chain",
        chain.to_str().expect("UTF-8 path"),
        "--mine",
        "--stop-at-height",
        "40",
    ]);
    let key = pouwd::node::DataDir::new(&dir)
        .load_key()
        .expect("the node's key");
    let mut node = start(&dir, pool_bytes);
    let pid = node.child.id();
    let genesis = Hash32::from_hex(
        get(node.api, "/status")["genesis"]
            .as_str()
            .expect("genesis"),
    )
    .expect("hex");
    let rss_idle = rss_kib(pid);

    // Fund the accounts: one transfer each from the node's key.
    let keys: Vec<SigningKey> = (0..accounts)
        .map(|_| SigningKey::generate(&mut rand_core::OsRng))
        .collect();
    let start_nonce = get(node.api, &format!("/accounts/{}", id_of(&key)))["next_nonce"]
        .as_u64()
        .expect("nonce");
    let funding: Vec<Tx> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| transfer(genesis, &key, start_nonce + i as u64, id_of(k), 10_000_000))
        .collect();
    let funded_at = Instant::now();
    let codes = post_all(node.api, &node.token, &funding);
    assert_eq!(codes, vec![(200, accounts as u64)], "funding answers");
    let last = id_of(keys.last().expect("an account"));
    while get(node.api, &format!("/accounts/{last}"))["spendable"].as_u64() == Some(0) {
        assert!(
            funded_at.elapsed() < Duration::from_secs(120),
            "funding never mined"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "funded {accounts} accounts in {:.1}s",
        funded_at.elapsed().as_secs_f64()
    );

    // The flood, signed beforehand: four threads, each a quarter of the
    // accounts, each account's nonces in order.
    let sink = Hash32([0x5a; 32]);
    let signed_at = Instant::now();
    let lanes: Vec<Vec<Tx>> = (0..4)
        .map(|lane| {
            let mine: Vec<&SigningKey> = keys.iter().skip(lane).step_by(4).collect();
            let mut txs = Vec::with_capacity(mine.len() * per_account);
            for nonce in 0..per_account as u64 {
                for k in &mine {
                    txs.push(transfer(genesis, k, nonce, sink, 1));
                }
            }
            txs
        })
        .collect();
    println!(
        "signed {} transactions in {:.1}s",
        accounts * per_account,
        signed_at.elapsed().as_secs_f64()
    );
    let samples = Arc::new(Mutex::new(Samples::default()));
    let done = Arc::new(AtomicBool::new(false));
    let monitor = {
        let (samples, done, api) = (Arc::clone(&samples), Arc::clone(&done), node.api);
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                let asked = Instant::now();
                let status = get(api, "/status");
                let ms = asked.elapsed().as_secs_f64() * 1e3;
                let pool = get(api, "/mempool?limit=1");
                let mut s = samples.lock().expect("samples");
                s.status_ms.push(ms);
                s.heights.push(status["height"].as_u64().unwrap_or(0));
                s.max_rss_kib = s.max_rss_kib.max(rss_kib(pid));
                s.max_pool_bytes = s.max_pool_bytes.max(pool["bytes"].as_u64().unwrap_or(0));
                s.max_pool_count = s.max_pool_count.max(pool["count"].as_u64().unwrap_or(0));
                drop(s);
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };
    let (txs_before, blocks_before) = (
        node.mined_txs.load(Ordering::Relaxed),
        node.mined_blocks.load(Ordering::Relaxed),
    );
    let flood_at = Instant::now();
    let posted = AtomicU64::new(0);
    let totals: Vec<Vec<(u16, u64)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = lanes
            .iter()
            .map(|lane| {
                let (api, token, posted) = (node.api, node.token.as_str(), &posted);
                scope.spawn(move || {
                    let codes = post_all(api, token, lane);
                    posted.fetch_add(lane.len() as u64, Ordering::Relaxed);
                    codes
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a client thread"))
            .collect()
    });
    let flood_secs = flood_at.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(500));
    done.store(true, Ordering::Relaxed);
    monitor.join().expect("monitor");
    let mut codes: std::collections::BTreeMap<u16, u64> = Default::default();
    for lane in totals {
        for (code, n) in lane {
            *codes.entry(code).or_default() += n;
        }
    }
    let s = samples.lock().expect("samples");
    let mut latencies = s.status_ms.clone();
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize];
    let total = posted.load(Ordering::Relaxed);
    println!(
        "flood: {total} transactions in {flood_secs:.1}s = {:.0} posts/s; answers {codes:?}",
        total as f64 / flood_secs
    );
    println!(
        "pool: largest {} bytes (bound {pool_bytes}) and {} transactions",
        s.max_pool_bytes, s.max_pool_count
    );
    println!(
        "node RSS: {} MiB idle, {} MiB at most during the flood",
        rss_idle / 1024,
        s.max_rss_kib / 1024
    );
    println!(
        "mined during the flood: {} blocks, {} transactions; height {} -> {}",
        node.mined_blocks.load(Ordering::Relaxed) - blocks_before,
        node.mined_txs.load(Ordering::Relaxed) - txs_before,
        s.heights.first().copied().unwrap_or(0),
        s.heights.last().copied().unwrap_or(0)
    );
    println!(
        "GET /status during the flood: {} samples, median {:.1} ms, p95 {:.1} ms, max {:.1} ms",
        latencies.len(),
        pct(0.5),
        pct(0.95),
        pct(1.0)
    );
    assert!(
        s.max_pool_bytes as usize <= pool_bytes,
        "the pool grew past its bound"
    );
    drop(s);
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let _ = node.child.wait();
}
