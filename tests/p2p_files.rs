//! Training data transfer between real nodes: a node given only a chain
//! file fetches the dataset from its peers by the hash genesis pins,
//! resumes a stopped fetch, and refuses what lying peers send.
//!
//! The dataset is generated here, over three 64 KiB chunks, with a chain
//! file that pins its hash. Nodes listen on 127.0.0.1 only; every node is
//! killed when its handle drops.

use crate::support::node::{dir_arg, Node};
use ed25519_dalek::SigningKey;
use pouwd::chain::Hash32;
use pouwd::consensus::params::ChainParams;
use pouwd::p2p::files::Manifest;
use pouwd::p2p::tls::Identity;
use pouwd::p2p::wire::{self, Hello, Request, Response, CHUNK_BYTES};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(90);
const DATASET: &str = "big.csv";

/// The diabetes rows ten times over (about 210 KB, four chunks).
fn big_csv() -> Vec<u8> {
    let text = std::str::from_utf8(crate::support::chain::DIABETES_CSV).unwrap();
    let (header, rows) = text.split_once('\n').unwrap();
    let mut out = format!("{header}\n");
    for _ in 0..10 {
        out.push_str(rows.trim_end());
        out.push('\n');
    }
    assert!(out.len() > 3 * CHUNK_BYTES as usize);
    out.into_bytes()
}

/// A chain of regtest's rules on `dataset`.
fn chain_params(dataset: &[u8]) -> ChainParams {
    let mut params = crate::support::chain::regtest_params();
    params.network = "regtest-files".into();
    params.task.dataset.file = DATASET.into();
    params.task.dataset.blake3 = Hash32(*blake3::hash(dataset).as_bytes());
    params
}

/// A temporary world: the masternode's directory with the chain file and
/// the dataset, and a directory holding the chain file alone.
struct World {
    tmp: tempfile::TempDir,
    csv: Vec<u8>,
    params: ChainParams,
}

impl World {
    fn new() -> World {
        let tmp = tempfile::tempdir().unwrap();
        let csv = big_csv();
        let params = chain_params(&csv);
        for dir in ["with-data", "chain-only"] {
            std::fs::create_dir(tmp.path().join(dir)).unwrap();
            std::fs::write(tmp.path().join(dir).join("chain.json"), params.to_json()).unwrap();
        }
        std::fs::write(tmp.path().join("with-data").join(DATASET), &csv).unwrap();
        std::fs::write(
            tmp.path().join("masternode.json"),
            r#"{"reward_amount": 5000000000, "validation_threshold": 0.5, "validation_window": 10}"#,
        )
        .unwrap();
        World { tmp, csv, params }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    fn arg(&self, name: &str) -> String {
        dir_arg(&self.path(name))
    }

    /// A masternode on the chain, with the dataset beside its chain file.
    fn masternode(&self, extra: &[&str]) -> (Node, String) {
        let mut args = vec![
            "--data-dir".to_string(),
            self.arg("master"),
            "--chain".into(),
            self.arg("with-data/chain.json"),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--masternode".into(),
            "--masternode-config".into(),
            self.arg("masternode.json"),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let node = Node::start(&args);
        let addr = listen_addr(&node);
        (node, addr)
    }

    /// `pouwd start` on a new data dir with only the chain file, and peers.
    fn fetcher(&self, dir: &str, peers: &[&str], extra: &[&str]) -> Node {
        let mut args = vec![
            "--data-dir".to_string(),
            self.arg(dir),
            "--chain".into(),
            self.arg("chain-only/chain.json"),
        ];
        for peer in peers {
            args.push("--peer".into());
            args.push(peer.to_string());
        }
        args.extend(extra.iter().map(|a| a.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Node::start(&args)
    }

    fn fetched_file(&self, dir: &str) -> Vec<u8> {
        std::fs::read(self.path(dir).join("dataset").join(DATASET)).unwrap()
    }

    fn partial_path(&self, dir: &str) -> PathBuf {
        self.path(dir)
            .join("dataset")
            .join(format!("{DATASET}.partial"))
    }
}

/// `ADDR` of a node's `p2p: listening on ADDR as ID` line.
fn listen_addr(node: &Node) -> String {
    let line = node.wait_for(LIMIT, |l| l.starts_with("p2p: listening on "));
    let rest = &line["p2p: listening on ".len()..];
    rest.split(" as ").next().unwrap().to_string()
}

fn chunk(bytes: &[u8], index: usize) -> &[u8] {
    let start = index * CHUNK_BYTES as usize;
    &bytes[start..(start + CHUNK_BYTES as usize).min(bytes.len())]
}

#[test]
fn a_node_with_only_the_chain_file_fetches_the_dataset_then_syncs() {
    let world = World::new();
    let (master, addr) = world.masternode(&["--mine"]);
    master.wait_for(LIMIT, |l| {
        crate::support::node::parse_mined(l).is_some_and(|m| m.height >= 3)
    });

    // No peers: the error says where it looked and how to fetch instead.
    let out = crate::support::node::run(&[
        "start",
        "--data-dir",
        &world.arg("alone"),
        "--chain",
        &world.arg("chain-only/chain.json"),
    ]);
    assert_eq!(out.code, Some(1));
    assert!(out.stderr.contains("not found"), "{}", out.stderr);
    assert!(out.stderr.contains("--peer"), "{}", out.stderr);
    assert!(!world.path("alone").exists());

    let mut node = world.fetcher("follower", &[&addr], &["--stop-at-height", "3"]);
    let fetched = node.wait_for(LIMIT, |l| l.contains("fetched dataset big.csv"));
    assert!(fetched.contains("4/4 chunks verified"), "{fetched}");
    assert_eq!(node.wait(LIMIT), Some(0), "{}", node.stderr());
    let lines = node.lines();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("p2p: fetching dataset big.csv (BLAKE3 ")
                && l.contains("from 1 peers: 0/4 chunks (0%), ")
                && l.contains("/s, ETA ")),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("p2p: sync: ")),
        "{lines:?}"
    );
    assert_eq!(world.fetched_file("follower"), world.csv);
    assert!(!world.partial_path("follower").exists());

    // The new node is a complete data dir: it opens without peers and
    // serves the dataset it fetched.
    let out = crate::support::node::run(&["status", "--data-dir", &world.arg("follower")]);
    assert!(out.ok(), "{}", out.stderr);
    let (third, follower_addr) = {
        let node = Node::start(&[
            "--data-dir",
            &world.arg("follower"),
            "--listen",
            "127.0.0.1:0",
        ]);
        let addr = listen_addr(&node);
        (node, addr)
    };
    let mut last = world.fetcher("last", &[&follower_addr], &["--stop-at-height", "0"]);
    assert_eq!(last.wait(LIMIT), Some(0), "{}", last.stderr());
    assert_eq!(world.fetched_file("last"), world.csv);
    drop(third);
}

#[test]
fn a_stopped_fetch_keeps_its_verified_chunks_and_refetches_the_rest() {
    let world = World::new();
    let (_master, addr) = world.masternode(&[]);
    // What a fetch killed half way leaves: chunks 0 and 2 written, chunk 1
    // torn, chunk 3 never reached.
    let partial = world.partial_path("resumed");
    std::fs::create_dir_all(partial.parent().unwrap()).unwrap();
    let mut bytes = world.csv[..3 * CHUNK_BYTES as usize].to_vec();
    bytes[CHUNK_BYTES as usize + 100] ^= 0x55;
    std::fs::write(&partial, &bytes).unwrap();

    let mut node = world.fetcher("resumed", &[&addr], &["--stop-at-height", "0"]);
    let resumed = node.wait_for(LIMIT, |l| l.contains("resuming dataset big.csv"));
    assert!(
        resumed.ends_with("2/4 chunks already there and verified"),
        "{resumed}"
    );
    let fetched = node.wait_for(LIMIT, |l| l.contains("fetched dataset big.csv"));
    assert!(
        fetched.contains("4/4 chunks verified, 2 fetched from 1 peers"),
        "{fetched}"
    );
    assert_eq!(node.wait(LIMIT), Some(0), "{}", node.stderr());
    assert_eq!(world.fetched_file("resumed"), world.csv);
    assert!(!partial.exists());
}

#[test]
fn a_masternode_refuses_to_start_without_the_training_data() {
    let world = World::new();
    let out = crate::support::node::run(&[
        "start",
        "--data-dir",
        &world.arg("master"),
        "--chain",
        &world.arg("chain-only/chain.json"),
        "--masternode",
        "--masternode-config",
        &world.arg("masternode.json"),
        "--peer",
        "127.0.0.1:9",
    ]);
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr
            .contains("a masternode serves its chain's training data"),
        "{}",
        out.stderr
    );
    assert!(!world.path("master").exists());
}

/// How a fake peer lies.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Lie {
    /// The true manifest, but every chunk it sends has a flipped byte.
    Chunks,
    /// The manifest and chunks of another file, consistent with each other.
    Manifest,
}

/// A peer on the right chain that lies about the dataset. Counts the
/// chunk requests it answers.
struct FakePeer {
    addr: String,
    id: Hash32,
    chunks_served: Arc<AtomicUsize>,
    _runtime: tokio::runtime::Runtime,
}

fn fake_peer(params: &ChainParams, csv: &[u8], lie: Lie) -> FakePeer {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let key = SigningKey::from_bytes(&[0x5a; 32]);
    let id = Hash32(key.verifying_key().to_bytes());
    let identity = Identity::new(&key).unwrap();
    let crypto =
        quinn::crypto::rustls::QuicServerConfig::try_from(identity.server_config().unwrap())
            .unwrap();
    let server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let endpoint = {
        let _guard = runtime.enter();
        quinn::Endpoint::server(server, "127.0.0.1:0".parse().unwrap()).unwrap()
    };
    let addr = endpoint.local_addr().unwrap().to_string();
    let served: Vec<u8> = match lie {
        Lie::Chunks => csv.to_vec(),
        Lie::Manifest => {
            let mut other = csv.to_vec();
            other[10] ^= 1;
            other
        }
    };
    let genesis = params.genesis_hash();
    let chunks_served = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&chunks_served);
    runtime.spawn(async move {
        let served = Arc::new(served);
        while let Some(incoming) = endpoint.accept().await {
            let Ok(conn) = incoming.await else { continue };
            let served = Arc::clone(&served);
            let counter = Arc::clone(&counter);
            tokio::spawn(async move {
                while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                    let mut len = [0u8; 4];
                    if recv.read_exact(&mut len).await.is_err() {
                        continue;
                    }
                    let mut bytes = vec![0u8; u32::from_le_bytes(len) as usize];
                    if recv.read_exact(&mut bytes).await.is_err() {
                        continue;
                    }
                    let response = match wire::decode_request(&bytes) {
                        Ok(Request::Hello(_)) => Response::Hello(Hello {
                            version: wire::PROTOCOL_VERSION,
                            genesis,
                            best_height: 0,
                            best_hash: genesis,
                            best_work: Hash32::ZERO,
                            listen_port: None,
                        }),
                        Ok(Request::GetFile { .. }) => {
                            let manifest = Manifest::of(&served);
                            Response::File {
                                size: manifest.size,
                                chunk_hashes: manifest.chunk_hashes,
                            }
                        }
                        Ok(Request::GetChunk { index, .. }) => {
                            counter.fetch_add(1, Ordering::SeqCst);
                            let mut bytes = chunk(&served, index as usize).to_vec();
                            if lie == Lie::Chunks {
                                bytes[0] ^= 0xff;
                            }
                            Response::Chunk(bytes)
                        }
                        _ => Response::Refused("fake peer".into()),
                    };
                    let _ = send.write_all(&wire::frame(&response)).await;
                    let _ = send.finish();
                }
            });
        }
    });
    FakePeer {
        addr,
        id,
        chunks_served,
        _runtime: runtime,
    }
}

fn short(id: &Hash32) -> String {
    id.to_hex()[..12].to_string()
}

#[test]
fn a_peer_sending_corrupt_chunks_is_refused_and_banned() {
    let world = World::new();
    let (_master, honest) = world.masternode(&[]);
    let fake = fake_peer(&world.params, &world.csv, Lie::Chunks);
    // Chunks are striped over the peers in this order: the fake gets 1 and 3.
    let mut node = world.fetcher("victim", &[&honest, &fake.addr], &["--stop-at-height", "0"]);
    assert_eq!(node.wait(LIMIT), Some(0), "{}", node.stderr());
    let lines = node.lines();
    let liar = short(&fake.id);
    assert!(fake.chunks_served.load(Ordering::SeqCst) >= 1);
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("p2p: refusing chunk ") && l.contains(&liar)),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&format!("p2p: banning peer {liar}"))
                && l.contains("does not match its own manifest")),
        "{lines:?}"
    );
    assert_eq!(world.fetched_file("victim"), world.csv);
    assert!(!world.partial_path("victim").exists());
}

/// A peer banned while the dataset was fetched stays banned once the
/// node's network runs: it is refused for the rest of its ban period.
#[test]
fn a_ban_made_while_fetching_holds_in_the_running_network() {
    let world = World::new();
    let (_master, honest) = world.masternode(&[]);
    let fake = fake_peer(&world.params, &world.csv, Lie::Chunks);
    let node = world.fetcher(
        "victim",
        &[&honest, &fake.addr],
        &["--api", "127.0.0.1:0", "--ban-secs", "600"],
    );
    let api = crate::api::api_addr(&node);
    let liar = fake.id.to_hex();
    let peers = crate::api::get(api, "/peers");
    let entry = peers
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == liar.as_str())
        .unwrap_or_else(|| panic!("the liar is listed: {peers}"));
    assert_eq!(entry["banned"], true, "{peers}");
    assert!(
        entry["reason"]
            .as_str()
            .unwrap()
            .contains("does not match its own manifest"),
        "{peers}"
    );
    let left = entry["seconds_left"].as_u64().unwrap();
    assert!(left > 500 && left <= 600, "{peers}");
    drop(node);
}

#[test]
fn peers_vouching_for_a_false_manifest_are_banned_and_the_fetch_starts_over() {
    let world = World::new();
    let (_master, honest) = world.masternode(&[]);
    let fake = fake_peer(&world.params, &world.csv, Lie::Manifest);
    // One voucher each: the first offer (the fake's) is tried first.
    let mut node = world.fetcher("victim", &[&fake.addr, &honest], &["--stop-at-height", "0"]);
    assert_eq!(node.wait(LIMIT), Some(0), "{}", node.stderr());
    let lines = node.lines();
    let liar = short(&fake.id);
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&format!("p2p: banning peer {liar}"))
                && l.contains("is not the file genesis pins")),
        "{lines:?}"
    );
    assert_eq!(world.fetched_file("victim"), world.csv);
}
