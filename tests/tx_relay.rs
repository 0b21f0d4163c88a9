//! Transaction relay between real processes over QUIC (schema/p2p.md,
//! "Transactions"): an announced transaction is fetched, relayed and
//! mined; a peer that sends invalid transactions, or floods ones the pool
//! refuses, is banned.

use crate::api::{api_addr, get};
use crate::p2p::{assert_banned, assert_no_bans, dirs, mine_to, start, stop, LIMIT};
use crate::support::chain::{miner_id, transfer, TestChain};
use crate::support::net::{free_port, hello, local, Adversary, Conn};
use crate::support::node::{dir_arg, run, Node};
use ed25519_dalek::SigningKey;
use pouwd::chain::Hash32;
use pouwd::node::DataDir;
use pouwd::p2p::wire::{Request, Response, MAX_TX_IDS};
use pouwd::store::Store;
use pouwd::tx::Tx;
use serde_json::Value;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Connect to `target` as a peer that answers `GetTxs` with `txs` (those
/// asked for, or all of them with `all`) and everything else politely.
fn peer_serving(target: SocketAddr, genesis: Hash32, txs: Vec<Tx>) -> (Adversary, Conn) {
    let adversary = Adversary::new();
    let conn = adversary.connect(target).expect("TLS handshake");
    conn.serve(Arc::new(move |request: &Request| {
        Some(match request {
            Request::GetTxs(ids) => Response::Txs(
                txs.iter()
                    .filter(|t| ids.contains(&t.id()))
                    .map(Tx::to_bytes)
                    .collect(),
            ),
            Request::AnnounceTxs(_) | Request::Announce { .. } => Response::Ok,
            Request::GetAddrs => Response::Addrs(Vec::new()),
            Request::GetHashes { .. } => Response::Hashes(Vec::new()),
            Request::GetBlocks(_) => Response::Blocks(Vec::new()),
            _ => Response::NotFound,
        })
    }));
    match conn.request(&Request::Hello(hello(genesis, 0, [0; 32]))) {
        Ok(Response::Hello(theirs)) => assert_eq!(theirs.genesis, genesis),
        other => panic!("hello answered with {other:?}"),
    }
    (adversary, conn)
}

fn key_of(dir: &Path) -> SigningKey {
    DataDir::new(dir).load_key().expect("the data dir's key")
}

#[test]
fn an_announced_transaction_is_fetched_relayed_to_a_miner_and_mined() {
    let tmp = tempfile::tempdir().unwrap();
    let [a, b] = dirs(tmp.path(), ["a", "b"]);
    // A's first two rewards are spendable at height 12.
    mine_to(&a, 12);
    let genesis = TestChain::regtest().genesis;
    let recipient = Hash32([0x42; 32]);
    let amount = 123_456_789;
    let t = transfer(genesis, &key_of(&a), 0, recipient, amount, 10_000);
    let (pa, pb) = (free_port(), free_port());
    let (la, lb) = (local(pa), local(pb));
    let mut node_a = start(&a, &["--mine", "--listen", &la]);
    let mut node_b = start(&b, &["--listen", &lb, "--peer", &la]);
    node_b.wait_for(LIMIT, |l| {
        l.starts_with("p2p: peer ") && l.contains(" connected at ")
    });
    // B admits the transfer only once its chain holds A's spendable
    // rewards: wait until its sync has stored past height 12.
    node_b.wait_for(LIMIT, |l| {
        l.split("tip height ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|h| h.parse::<u64>().ok())
            .is_some_and(|h| h >= 12)
    });
    let target: SocketAddr = lb.parse().unwrap();
    let (_peer, conn) = peer_serving(target, genesis, vec![t.clone()]);
    assert_eq!(
        conn.request(&Request::AnnounceTxs(vec![t.id()])),
        Ok(Response::Ok)
    );
    // B fetched it from the peer, relayed it to A, and A mined it.
    node_a.wait_for(LIMIT, |l| l.starts_with("mined") && l.contains(" txs=1 "));
    assert!(
        conn.requests
            .lock()
            .unwrap()
            .contains(&Request::GetTxs(vec![t.id()])),
        "B never asked the peer for the transaction"
    );
    drop(conn);
    stop(&mut node_a);
    stop(&mut node_b);
    let store = Store::open(&a.join("store")).expect("A's store");
    let (height, _) = store
        .tx_location(&t.id())
        .expect("index")
        .expect("the transaction is in A's best chain");
    assert!(height > 12, "mined at {height}");
    let account = store.account(&recipient).expect("account");
    assert_eq!(account.spendable, amount);
    assert_eq!(
        store
            .account(&miner_id(&key_of(&a)))
            .expect("account")
            .nonce,
        1
    );
}

#[test]
fn a_peer_that_sends_an_invalid_transaction_is_banned() {
    let tmp = tempfile::tempdir().unwrap();
    let [b] = dirs(tmp.path(), ["b"]);
    let genesis = TestChain::regtest().genesis;
    let pb = free_port();
    let lb = local(pb);
    let mut node_b = start(&b, &["--listen", &lb]);
    let key = SigningKey::from_bytes(&[3; 32]);
    let mut bad = transfer(genesis, &key, 0, Hash32([1; 32]), 5, 10_000);
    bad.signature[10] ^= 0x20;
    let (adversary, conn) = peer_serving(lb.parse().unwrap(), genesis, vec![bad.clone()]);
    // The node fetches before it answers, and bans before it would.
    let answer = conn.request(&Request::AnnounceTxs(vec![bad.id()]));
    assert!(answer.is_err(), "{answer:?}");
    assert_banned(&node_b, &adversary, &conn, "sent an invalid transaction");
    stop(&mut node_b);
}

#[test]
fn a_peer_flooding_transactions_the_pool_refuses_is_banned_past_the_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let [b] = dirs(tmp.path(), ["b"]);
    let genesis = TestChain::regtest().genesis;
    let lb = local(free_port());
    let mut node_b = start(&b, &["--listen", &lb]);
    // Well-formed and signed, from an account that holds nothing: each is
    // an overspend.
    let key = SigningKey::from_bytes(&[4; 32]);
    let txs: Vec<Tx> = (0..MAX_TX_IDS as u64)
        .map(|n| transfer(genesis, &key, 0, Hash32([1; 32]), 1 + n, 10_000))
        .collect();
    let ids: Vec<Hash32> = txs.iter().map(Tx::id).collect();
    let (adversary, conn) = peer_serving(lb.parse().unwrap(), genesis, txs);
    let answer = conn.request(&Request::AnnounceTxs(ids));
    assert!(answer.is_err(), "{answer:?}");
    assert_banned(
        &node_b,
        &adversary,
        &conn,
        "transactions within 60s that the pool refuses",
    );
    stop(&mut node_b);
}

// ------------------------------------------------------------ through the wallet

/// `pouwd send` from `dir`'s key through its node's API; the id.
fn send(dir: &Path, to: &str, amount: &str) -> String {
    let out = run(&[
        "send",
        "--data-dir",
        &dir_arg(dir),
        "--to",
        to,
        "--amount",
        amount,
    ]);
    if !out.ok() {
        // What the node's pool and chain say, for the failure message.
        let status = run(&["wallet", "--data-dir", &dir_arg(dir), "--json"]);
        panic!(
            "send {amount} to {to}: {}\nwallet: {}",
            out.stderr, status.stdout
        );
    }
    out.stdout.trim().to_string()
}

fn id_of(dir: &Path) -> String {
    miner_id(&key_of(dir)).to_hex()
}

/// Wait until `check` holds, polling every 50 ms, for at most `LIMIT`.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < LIMIT, "never: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn pending_ids(addr: SocketAddr) -> Vec<String> {
    get(addr, "/mempool?limit=1000")["transactions"]
        .as_array()
        .expect("transactions")
        .iter()
        .map(|t| t["id"].as_str().expect("id").to_string())
        .collect()
}

/// Whether the node at `addr` has `id` in its best chain (it may not know
/// it at all yet: 404).
fn mined_on(addr: SocketAddr, id: &str) -> bool {
    let (status, _, body) = crate::api::request(addr, "GET", &format!("/tx/{id}"));
    assert!(
        status == 200 || status == 404,
        "GET /tx/{id}: {status} {body}"
    );
    body["state"] == "in_block"
}

/// A node on `dir` with its API on a free loopback port, listening on
/// `listen` and dialing `peers`.
fn api_node(dir: &Path, listen: &str, peers: &[&str], mine: bool) -> (Node, SocketAddr) {
    let mut args = vec!["--api", "127.0.0.1:0", "--listen", listen];
    for peer in peers {
        args.extend(["--peer", peer]);
    }
    if mine {
        args.push("--mine");
    }
    let node = start(dir, &args);
    let addr = api_addr(&node);
    (node, addr)
}

#[test]
fn a_transaction_sent_to_one_of_five_nodes_reaches_every_pool_and_is_mined() {
    let tmp = tempfile::tempdir().unwrap();
    let dirs = dirs(tmp.path(), ["n1", "n2", "n3", "n4", "n5"]);
    mine_to(&dirs[0], 12);
    let listen: Vec<String> = (0..5).map(|_| local(free_port())).collect();
    // A line: n1 – n2 – n3 – n4 – n5, so the transaction travels four hops.
    let mut nodes = Vec::new();
    for i in 0..5 {
        let peers: Vec<&str> = if i == 0 { vec![] } else { vec![&listen[i - 1]] };
        nodes.push(api_node(&dirs[i], &listen[i], &peers, false));
    }
    for (node, _) in &nodes[1..] {
        node.wait_for(LIMIT, |l| {
            l.starts_with("p2p: sync") || l.contains(" connected")
        });
    }
    let recipient = id_of(&dirs[3]);
    let id = send(&dirs[0], &recipient, "2.5");
    for (i, (_, addr)) in nodes.iter().enumerate() {
        eventually(&format!("n{} holds {id}", i + 1), || {
            pending_ids(*addr).contains(&id)
        });
    }
    // n5 becomes a miner: restarted, its pool is empty, and n4 tells it of
    // its whole pool when they connect; n5 mines the transaction and the
    // block travels back to n1.
    let (n5, _) = nodes.pop().expect("n5");
    stop_node(n5);
    nodes.push(api_node(&dirs[4], &listen[4], &[&listen[3]], true));
    for (i, (_, addr)) in nodes.iter().enumerate() {
        eventually(&format!("n{} has {id} in its best chain", i + 1), || {
            mined_on(*addr, &id)
        });
        // The pool follows the tip just after the store does.
        eventually(
            &format!("n{} no longer holds {id} as pending", i + 1),
            || !pending_ids(*addr).contains(&id),
        );
    }
    let credited = get(nodes[0].1, &format!("/accounts/{recipient}"));
    assert_eq!(credited["spendable"], 250_000_000u64);
    assert_no_bans(&nodes.iter().map(|(n, _)| n).collect::<Vec<_>>());
    for (node, _) in nodes {
        stop_node(node);
    }
}

fn stop_node(mut node: Node) {
    stop(&mut node);
}

/// The balances of `keys` and every non-zero balance, as `dir`'s store
/// has them, and as a fresh data dir that imports `dir`'s exported chain
/// has them.
fn balances_and_replay(dir: &Path, keys: &[Hash32]) -> (Value, Value) {
    let read = |store: &Store| {
        let accounts: Vec<Value> = keys
            .iter()
            .map(|k| {
                let a = store.account(k).expect("account");
                serde_json::json!([a.spendable, a.immature, a.nonce])
            })
            .collect();
        let all: Vec<Value> = store
            .balances()
            .expect("balances")
            .into_iter()
            .map(|(k, v)| serde_json::json!([k.to_hex(), v]))
            .collect();
        serde_json::json!({"tip": store.tip().expect("tip").hash.to_hex(), "accounts": accounts, "all": all})
    };
    let file = dir.with_extension("pouw");
    let out = run(&[
        "export-chain",
        "--data-dir",
        &dir_arg(dir),
        "--out",
        &dir_arg(&file),
    ]);
    assert!(out.ok(), "{}", out.stderr);
    let fresh = dir.with_extension("replay");
    let out = run(&[
        "import-chain",
        "--data-dir",
        &dir_arg(&fresh),
        "--chain",
        "regtest",
        "--in",
        &dir_arg(&file),
    ]);
    assert!(out.ok(), "{}", out.stderr);
    let ours = read(&Store::open(&dir.join("store")).expect("store"));
    let replayed = read(&Store::open(&fresh.join("store")).expect("store"));
    (ours, replayed)
}

#[test]
fn three_nodes_pass_transfers_around_while_one_mines_and_balances_match_a_replay() {
    let tmp = tempfile::tempdir().unwrap();
    let [a, b, c] = dirs(tmp.path(), ["a", "b", "c"]);
    mine_to(&a, 12);
    let (la, lb, lc) = (local(free_port()), local(free_port()), local(free_port()));
    let (node_a, api_a) = api_node(&a, &la, &[], true);
    let (node_b, api_b) = api_node(&b, &lb, &[&la], false);
    let (node_c, api_c) = api_node(&c, &lc, &[&lb], false);
    let apis = [api_a, api_b, api_c];
    let everywhere = |id: &str| {
        for addr in apis {
            eventually(&format!("{id} mined, seen by {addr}"), || {
                mined_on(addr, id)
            });
        }
    };
    let (ida, idb, idc) = (id_of(&a), id_of(&b), id_of(&c));
    // The miner pays B; B pays C and the miner; C pays the miner back.
    // Each goes through the sender's own node.
    let first = send(&a, &idb, "10");
    everywhere(&first);
    let second = send(&b, &idc, "3");
    let third = send(&b, &ida, "2");
    everywhere(&second);
    everywhere(&third);
    let fourth = send(&c, &ida, "1");
    everywhere(&fourth);
    let fee = 1_000u64;
    let token = 100_000_000u64;
    let spendable = |addr: SocketAddr, id: &str| {
        get(addr, &format!("/accounts/{id}"))["spendable"]
            .as_u64()
            .expect("spendable")
    };
    for addr in apis {
        assert_eq!(spendable(addr, &idb), 10 * token - 5 * token - 2 * fee);
        assert_eq!(spendable(addr, &idc), 3 * token - token - fee);
    }
    assert_no_bans(&[&node_a, &node_b, &node_c]);
    for node in [node_a, node_b, node_c] {
        stop_node(node);
    }
    let keys: Vec<Hash32> = [&a, &b, &c].iter().map(|d| miner_id(&key_of(d))).collect();
    for dir in [&a, &b, &c] {
        let (ours, replayed) = balances_and_replay(dir, &keys);
        assert_eq!(
            ours,
            replayed,
            "{} differs from a replay of its chain",
            dir.display()
        );
        let nonces: Vec<u64> = ours["accounts"]
            .as_array()
            .expect("accounts")
            .iter()
            .map(|a| a[2].as_u64().expect("nonce"))
            .collect();
        assert_eq!(nonces, vec![1, 2, 1], "{}", dir.display());
    }
}
