//! Transaction relay between real processes over QUIC (schema/p2p.md,
//! "Transactions"): an announced transaction is fetched, relayed and
//! mined; a peer that sends invalid transactions, or floods ones the pool
//! refuses, is banned.

use crate::p2p::{assert_banned, dirs, mine_to, start, stop, LIMIT};
use crate::support::chain::{miner_id, transfer, TestChain};
use crate::support::net::{free_port, hello, local, Adversary, Conn};
use ed25519_dalek::SigningKey;
use pouwd::chain::Hash32;
use pouwd::node::DataDir;
use pouwd::p2p::wire::{Request, Response, MAX_TX_IDS};
use pouwd::store::Store;
use pouwd::tx::Tx;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

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
