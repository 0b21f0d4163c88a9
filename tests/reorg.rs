//! Fork choice, rewards and storage (PROTOCOL §8–§9), on a real sled store.
//!
//! Branches are mined in memory with the support chain builder and fed to
//! a node through `Chain::submit`, as a peer would send them. After every
//! step the node's state — tip, best-chain index, block metadata (score
//! history and cumulative work), models, balances, and the context its
//! next block would be checked against — must equal the state of a fresh
//! store that replays only the winning branch from genesis. Balances are
//! also checked against a model computed from the winning branch alone:
//! a reorg must lose nothing and count nothing twice.

use crate::support::chain::{key, miner_id, regtest_params, resign, TestChain, DIABETES_CSV};
use ed25519_dalek::SigningKey;
use pouwd::chain::{Block, Hash32};
use pouwd::consensus::params::ChainParams;
use pouwd::consensus::{Ancestry, BlockError, ParentContext};
use pouwd::node::export::StreamWriter;
use pouwd::node::import::{import_chain, ImportError, ImportReport, BATCH_BLOCKS};
use pouwd::node::{Chain, ChainSource, DataDir, SubmitError};
use pouwd::store::{Balance, BlockMeta, Store, StoreError, Stored, Tip, FORMAT_VERSION};
use pouwd::work::Run;
use std::collections::BTreeMap;
use tempfile::TempDir;

// ------------------------------------------------------------------ helpers

/// A node: a chain over a sled store in a temporary data dir.
pub(crate) struct Node {
    pub(crate) chain: Chain,
    // Dropped after the chain, so the store closes before its files go.
    _dir: TempDir,
}

/// A fresh regtest data dir, created the way `pouwd start` creates one.
pub(crate) fn node() -> Node {
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = DataDir::new(&dir.path().join("node"));
    let store = data_dir
        .create(&ChainSource::from_arg("regtest"))
        .expect("create a regtest data dir");
    let dataset = data_dir
        .load_task_files(store.params())
        .expect("the data dir holds the dataset");
    let chain = Chain::new(store, &dataset, &pouwd::model::onnx::OrtSetup::default())
        .expect("open the chain");
    Node { chain, _dir: dir }
}

/// A bare store for `params`, without a data dir around it.
pub(crate) fn bare_node(params: &ChainParams) -> Node {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::create(&dir.path().join("store"), params).expect("create store");
    node_on(store, dir)
}

/// A node over an opened store of the diabetes task; `dir` goes with it.
pub(crate) fn node_on(store: Store, dir: TempDir) -> Node {
    let chain = Chain::new(
        store,
        &pouwd::node::chain::TaskFiles::dataset_only(DIABETES_CSV),
        &pouwd::model::onnx::OrtSetup::default(),
    )
    .expect("open the chain");
    Node { chain, _dir: dir }
}

/// Local time for every submission: late enough for every timestamp the
/// builder gives (genesis time plus one second per height).
pub(crate) fn submit_time(chain: &TestChain) -> u64 {
    chain.params.genesis_time_ms + 1_000_000
}

/// Mine `count` blocks by `miner` on top of `parent`, each one target
/// block time after genesis per height, and make them known to the builder.
pub(crate) fn mine_branch(
    chain: &mut TestChain,
    parent: Hash32,
    miner: &SigningKey,
    count: usize,
) -> Vec<Block> {
    let spacing_ms = chain.params.target_block_ms;
    mine_branch_spaced(chain, parent, miner, count, spacing_ms)
}

/// [`mine_branch`] with blocks `spacing_ms` apart (genesis time plus
/// `height × spacing_ms`, or just above the median time past).
fn mine_branch_spaced(
    chain: &mut TestChain,
    parent: Hash32,
    miner: &SigningKey,
    count: usize,
    spacing_ms: u64,
) -> Vec<Block> {
    let mut blocks = Vec::with_capacity(count);
    let mut parent = parent;
    for _ in 0..count {
        let height = chain.context(&parent).child_height();
        let now = chain.params.genesis_time_ms + height * spacing_ms;
        let mined = chain.mine_child(&parent, miner, now);
        let checked = chain
            .validate(mined.block, now)
            .expect("an honestly mined block is valid");
        chain.accept(&checked);
        parent = checked.id();
        blocks.push(checked.into_block());
    }
    blocks
}

pub(crate) fn submit(node: &Node, block: &Block, now_ms: u64) -> Stored {
    node.chain
        .submit(block.clone(), now_ms)
        .unwrap_or_else(|e| panic!("block {} at height {}: {e}", block.id(), block.height()))
}

/// Submit blocks and check that each is stored with `expected`.
pub(crate) fn submit_all(node: &Node, blocks: &[Block], now_ms: u64, expected: &Stored) {
    for block in blocks {
        assert_eq!(
            &submit(node, block, now_ms),
            expected,
            "storing block at height {}",
            block.height()
        );
    }
}

/// Everything a node's state is made of, as seen through the store.
#[derive(Debug, PartialEq)]
pub(crate) struct Snapshot {
    tip: Tip,
    /// `hash_at(h)` for every height up to the highest block ever seen, so
    /// that stale index entries above the tip show up.
    best: Vec<Option<Hash32>>,
    /// Metadata of each best block: score history, timestamps, work.
    metas: Vec<BlockMeta>,
    /// Each best block's final model, as bit patterns.
    models: Vec<Vec<u64>>,
    balances: BTreeMap<Hash32, u64>,
    /// `balance()` of every key of the test.
    balance_of: BTreeMap<Hash32, Balance>,
    /// The whole account of every key of the test, nonce included.
    account_of: BTreeMap<Hash32, pouwd::tx::Account>,
    /// Where the best chain holds each transaction of its blocks.
    tx_index: Vec<(Hash32, Option<(u64, Hash32)>)>,
    /// What the next block on the tip is checked against.
    next: ParentContext,
}

pub(crate) fn snapshot(node: &Node, keys: &[Hash32], probe_height: u64) -> Snapshot {
    let store = &node.chain.store;
    let tip = store.tip().expect("tip");
    let best: Vec<Option<Hash32>> = (0..=probe_height.max(tip.height))
        .map(|h| store.hash_at(h).expect("height index"))
        .collect();
    let on_best: Vec<Hash32> = best[..=tip.height as usize]
        .iter()
        .map(|h| h.expect("every height up to the tip has a best block"))
        .collect();
    assert_eq!(
        store
            .hashes_between(0, probe_height.max(tip.height) + 1)
            .expect("height index"),
        on_best,
        "the best chain's hashes in one read"
    );
    // A window that ends inside the chain ends at its last height.
    if tip.height >= 3 {
        let last = tip.height - 1;
        assert_eq!(
            store.hashes_between(2, last).expect("height index"),
            on_best[2..=last as usize],
            "the best chain's hashes from 2 to {last}"
        );
    }
    let metas = on_best
        .iter()
        .map(|h| {
            store
                .meta(h)
                .expect("meta")
                .expect("best block has metadata")
        })
        .collect();
    let models = on_best
        .iter()
        .map(|h| {
            node.chain
                .model(h)
                .expect("best block has a model")
                .iter()
                .map(|p| p.to_bits())
                .collect()
        })
        .collect();
    let balance_of = keys
        .iter()
        .map(|k| (*k, store.balance(k).expect("balance")))
        .collect();
    let account_of = keys
        .iter()
        .map(|k| (*k, store.account(k).expect("account")))
        .collect();
    let tx_index = on_best
        .iter()
        .filter_map(|h| store.block(h).expect("block"))
        .flat_map(|b| b.body.txs)
        .map(|t| (t.id(), store.tx_location(&t.id()).expect("tx index")))
        .collect();
    Snapshot {
        next: node.chain.context(&tip.hash).expect("context of the tip"),
        tip,
        best,
        metas,
        models,
        balances: store.balances().expect("balances"),
        balance_of,
        account_of,
        tx_index,
    }
}

/// The state of a fresh store that stored only `path` (heights 1.., in order).
pub(crate) fn replay(
    params: &ChainParams,
    path: &[&Block],
    keys: &[Hash32],
    probe_height: u64,
    now_ms: u64,
) -> Snapshot {
    let fresh = bare_node(params);
    for block in path {
        assert_eq!(
            submit(&fresh, block, now_ms),
            Stored::Extended,
            "a replay from genesis only extends"
        );
    }
    snapshot(&fresh, keys, probe_height)
}

/// Balances computed from the best chain's miners alone: every block
/// credits `reward_amount`; the last `validation_window` are not spendable.
fn reward_model(
    params: &ChainParams,
    path: &[&Block],
    keys: &[Hash32],
) -> BTreeMap<Hash32, Balance> {
    let tip_height = path.len() as u64;
    let window = u64::from(params.validation_window);
    keys.iter()
        .map(|k| {
            let mined: Vec<u64> = path
                .iter()
                .filter(|b| b.header.fields.miner == *k)
                .map(|b| b.height())
                .collect();
            let mature = mined.iter().filter(|h| **h + window <= tip_height).count() as u64;
            let balance = Balance {
                total: mined.len() as u64 * params.reward_amount,
                spendable: mature * params.reward_amount,
            };
            (*k, balance)
        })
        .collect()
}

/// The node's state equals a replay of `path` from genesis, and its
/// balances equal the reward model of `path`.
fn assert_state_is_replay_of(node: &Node, path: &[&Block], keys: &[Hash32], probe: u64, now: u64) {
    let params = node.chain.params();
    let state = snapshot(node, keys, probe);
    let expected = replay(params, path, keys, probe, now);
    assert_eq!(state, expected, "state after storing differs from a replay");
    let tip = path.last().expect("a non-empty path");
    assert_eq!(state.tip.hash, tip.id());
    assert_eq!(state.balance_of, reward_model(params, path, keys));
    let nonzero: BTreeMap<Hash32, u64> = reward_model(params, path, keys)
        .into_iter()
        .filter(|(_, b)| b.total > 0)
        .map(|(k, b)| (k, b.total))
        .collect();
    assert_eq!(state.balances, nonzero, "no balance lost or counted twice");
}

pub(crate) fn chain_of<'a>(parts: &[&'a [Block]]) -> Vec<&'a Block> {
    parts.iter().flat_map(|p| p.iter()).collect()
}

pub(crate) fn stream(params: &ChainParams, blocks: &[Block]) -> Vec<u8> {
    let mut writer = StreamWriter::new(Vec::new(), &params.to_json(), &params.genesis_hash())
        .expect("writing to memory");
    for block in blocks {
        writer
            .write_block(&block.to_bytes())
            .expect("writing to memory");
    }
    writer.finish().expect("writing to memory")
}

pub(crate) fn import(
    node: &Node,
    bytes: &[u8],
    now_ms: u64,
) -> (ImportReport, Option<ImportError>) {
    import_chain(&node.chain, bytes, 2, now_ms, |_, _| {})
}

// ------------------------------------------------------------------ fork choice

#[test]
fn a_reorg_deeper_than_the_validation_window_and_back_matches_a_replay() {
    let mut builder = TestChain::regtest();
    let (common, alice, bob) = (key(3), key(1), key(2));
    let keys = [miner_id(&common), miner_id(&alice), miner_id(&bob)];
    let now = submit_time(&builder);
    let window = u64::from(builder.params.validation_window);
    let genesis = builder.genesis;

    let prefix = mine_branch(&mut builder, genesis, &common, 3);
    let fork = prefix.last().expect("3 blocks").id();
    let fork_height = 3;
    // A: 15 blocks, of which the first 12 are seen first; B: 14 blocks.
    let branch_a = mine_branch(&mut builder, fork, &alice, 15);
    let branch_b = mine_branch(&mut builder, fork, &bob, 14);
    let probe = fork_height + 15;
    assert!(12 > window + 1, "the first reorg is deeper than the window");

    let node = node();
    submit_all(&node, &prefix, now, &Stored::Extended);
    submit_all(&node, &branch_a[..12], now, &Stored::Extended);
    let on_a = chain_of(&[&prefix, &branch_a[..12]]);
    assert_state_is_replay_of(&node, &on_a, &keys, probe, now);

    // B up to equal work stays a side chain: the first seen wins ties.
    submit_all(&node, &branch_b[..12], now, &Stored::SideChain);
    assert_state_is_replay_of(&node, &on_a, &keys, probe, now);

    // One block more and B is the best chain, 12 blocks deep.
    assert_eq!(
        submit(&node, &branch_b[12], now),
        Stored::Reorg {
            fork_height,
            disconnected: 12
        }
    );
    let on_b = chain_of(&[&prefix, &branch_b[..13]]);
    assert_state_is_replay_of(&node, &on_b, &keys, probe, now);
    assert_eq!(
        node.chain.store.balance(&keys[1]).expect("balance").total,
        0
    );

    assert_eq!(submit(&node, &branch_b[13], now), Stored::Extended);
    let on_b = chain_of(&[&prefix, &branch_b]);
    assert_state_is_replay_of(&node, &on_b, &keys, probe, now);

    // A catches up (a tie again changes nothing), then overtakes B.
    submit_all(&node, &branch_a[12..14], now, &Stored::SideChain);
    assert_state_is_replay_of(&node, &on_b, &keys, probe, now);
    assert_eq!(
        submit(&node, &branch_a[14], now),
        Stored::Reorg {
            fork_height,
            disconnected: 14
        }
    );
    let on_a = chain_of(&[&prefix, &branch_a]);
    assert_state_is_replay_of(&node, &on_a, &keys, probe, now);
    assert_eq!(
        node.chain.store.balance(&keys[2]).expect("balance").total,
        0
    );

    // Every block stays stored, and a block seen again changes nothing.
    for block in prefix.iter().chain(&branch_a).chain(&branch_b) {
        assert!(node.chain.store.contains(&block.id()).expect("contains"));
        assert_eq!(submit(&node, block, now), Stored::AlreadyKnown);
    }
    assert_state_is_replay_of(&node, &on_a, &keys, probe, now);

    // The node goes on from the new tip like any other.
    let next = mine_branch(&mut builder, branch_a[14].id(), &common, 1);
    assert_eq!(submit(&node, &next[0], now), Stored::Extended);
    let on_a = chain_of(&[&prefix, &branch_a, &next]);
    assert_state_is_replay_of(&node, &on_a, &keys, probe + 1, now);
}

/// An import stores the height index in ranges of 64 heights; reorgs that
/// fork inside a range, one block at a time or inside an import batch,
/// rewrite it from its first height, and the state is that of a replay
/// (which stores one height per range).
#[test]
fn reorgs_that_fork_inside_a_height_range_match_a_replay() {
    let mut builder = TestChain::regtest();
    let (alice, bob, carol) = (key(1), key(2), key(3));
    let keys = [miner_id(&alice), miner_id(&bob), miner_id(&carol)];
    let now = submit_time(&builder);
    let genesis = builder.genesis;
    let a = mine_branch(&mut builder, genesis, &alice, 150);
    // B forks at 100, inside the range of 65..=128, and passes A at 151.
    let b = mine_branch(&mut builder, a[99].id(), &bob, 51);
    // C forks at 70, inside the same range, and passes B within a batch.
    let c = mine_branch(&mut builder, a[69].id(), &carol, 90);
    let probe = 170;

    let node = node();
    let (report, error) = import(&node, &stream(node.chain.params(), &a), now);
    assert!(error.is_none(), "{error:?}");
    assert_eq!(report.stored, 150);
    assert_state_is_replay_of(&node, &chain_of(&[&a]), &keys, probe, now);

    submit_all(&node, &b[..50], now, &Stored::SideChain);
    assert_eq!(
        submit(&node, &b[50], now),
        Stored::Reorg {
            fork_height: 100,
            disconnected: 50
        }
    );
    assert_state_is_replay_of(&node, &chain_of(&[&a[..100], &b]), &keys, probe, now);

    let (report, error) = import(&node, &stream(node.chain.params(), &c), now);
    assert!(error.is_none(), "{error:?}");
    assert_eq!((report.stored, report.reorgs), (90, 1));
    assert_state_is_replay_of(&node, &chain_of(&[&a[..70], &c]), &keys, probe, now);
}

#[test]
fn equal_work_keeps_whichever_branch_was_seen_first() {
    let mut builder = TestChain::regtest();
    let (alice, bob) = (key(1), key(2));
    let keys = [miner_id(&alice), miner_id(&bob)];
    let now = submit_time(&builder);
    let genesis = builder.genesis;
    let branch_a = mine_branch(&mut builder, genesis, &alice, 2);
    let branch_b = mine_branch(&mut builder, genesis, &bob, 3);

    let a_first = node();
    submit_all(&a_first, &branch_a, now, &Stored::Extended);
    submit_all(&a_first, &branch_b[..2], now, &Stored::SideChain);
    assert_state_is_replay_of(&a_first, &chain_of(&[&branch_a]), &keys, 3, now);

    let b_first = node();
    submit_all(&b_first, &branch_b[..2], now, &Stored::Extended);
    submit_all(&b_first, &branch_a, now, &Stored::SideChain);
    assert_state_is_replay_of(&b_first, &chain_of(&[&branch_b[..2]]), &keys, 3, now);

    // More work wins, from genesis up.
    assert_eq!(
        submit(&a_first, &branch_b[2], now),
        Stored::Reorg {
            fork_height: 0,
            disconnected: 2
        }
    );
    assert_state_is_replay_of(&a_first, &chain_of(&[&branch_b]), &keys, 3, now);
}

#[test]
fn a_heavier_but_shorter_branch_wins_and_the_index_above_its_tip_is_cleared() {
    // Retargeting every 4 blocks lets a branch with fewer, harder blocks
    // carry more work than a longer, easier one.
    let mut params = regtest_params();
    params.network = "regtest-retarget".into();
    params.retarget_window = 4;
    let mut builder = TestChain::new(params.clone());
    let (alice, bob) = (key(1), key(2));
    let keys = [miner_id(&alice), miner_id(&bob)];
    let now = submit_time(&builder);
    let genesis = builder.genesis;
    // A is slow (4× the target time, so its target grows 4× at height 4
    // and again at 8); B is fast (its target shrinks 4× at height 4).
    let slow = mine_branch_spaced(&mut builder, genesis, &alice, 8, 4 * params.target_block_ms);
    let fast = mine_branch_spaced(&mut builder, genesis, &bob, 4, params.target_block_ms / 4);
    assert!(slow[4].header.fields.target > slow[0].header.fields.target);
    assert!(fast[3].header.fields.target < fast[0].header.fields.target);

    let node = bare_node(&params);
    submit_all(&node, &slow, now, &Stored::Extended);
    submit_all(&node, &fast[..3], now, &Stored::SideChain);
    assert_eq!(
        submit(&node, &fast[3], now),
        Stored::Reorg {
            fork_height: 0,
            disconnected: 8
        }
    );
    let state = snapshot(&node, &keys, 8);
    assert_eq!(state.tip.height, 4);
    assert_eq!(state.best[5..], [None, None, None, None]);
    assert_state_is_replay_of(&node, &chain_of(&[&fast]), &keys, 8, now);
}

// ------------------------------------------------------------------ rewards

#[test]
fn every_best_block_credits_its_miner_and_matures_after_the_window() {
    let mut builder = TestChain::regtest();
    let (alice, bob, carol) = (key(1), key(2), key(3));
    let keys = [miner_id(&alice), miner_id(&bob), miner_id(&carol)];
    let now = submit_time(&builder);
    let params = builder.params.clone();
    let window = u64::from(params.validation_window);

    // 24 blocks: Alice mines two of every three, Bob the third.
    let mut blocks = Vec::new();
    let mut parent = builder.genesis;
    for height in 1..=24u64 {
        let miner = if height % 3 == 0 { &bob } else { &alice };
        let block = mine_branch(&mut builder, parent, miner, 1).remove(0);
        parent = block.id();
        blocks.push(block);
    }
    let node = node();
    for (at, block) in blocks.iter().enumerate() {
        assert_eq!(submit(&node, block, now), Stored::Extended);
        let best = chain_of(&[&blocks[..=at]]);
        let model = reward_model(&params, &best, &keys);
        for k in &keys {
            assert_eq!(
                node.chain.store.balance(k).expect("balance"),
                model[k],
                "balance of {k} at height {}",
                at + 1
            );
        }
    }
    let height = blocks.len() as u64;
    let alice_blocks = 16u64;
    assert_eq!(
        node.chain.store.balance(&keys[0]).expect("balance"),
        Balance {
            total: alice_blocks * params.reward_amount,
            // Heights 1..=14 are mature at tip 24; Alice mined 10 of them.
            spendable: 10 * params.reward_amount,
        }
    );
    assert_eq!(height - window, 14);

    // Carol forks off at height 20 and overtakes: Alice's and Bob's blocks
    // 21..=24 stop counting, Carol's count, and maturity follows her tip.
    let fork = blocks[19].id();
    let carol_branch = mine_branch(&mut builder, fork, &carol, 5);
    submit_all(&node, &carol_branch[..4], now, &Stored::SideChain);
    assert_eq!(
        submit(&node, &carol_branch[4], now),
        Stored::Reorg {
            fork_height: 20,
            disconnected: 4
        }
    );
    let best = chain_of(&[&blocks[..20], &carol_branch]);
    assert_state_is_replay_of(&node, &best, &keys, 25, now);
    assert_eq!(
        node.chain.store.balance(&keys[2]).expect("balance"),
        Balance {
            total: 5 * params.reward_amount,
            spendable: 0,
        }
    );
}

// ------------------------------------------------------------------ the store

#[test]
fn a_store_with_a_newer_format_version_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store");
    let store = Store::create(&path, &regtest_params()).expect("create store");
    store
        .set_format_version(FORMAT_VERSION + 1)
        .expect("write the format version");
    drop(store);
    let error = match open_released(&path) {
        Ok(_) => panic!("a store of a newer format must not open"),
        Err(e) => e,
    };
    match &error {
        StoreError::NewerFormat {
            found, supported, ..
        } => {
            assert_eq!(*found, FORMAT_VERSION + 1);
            assert_eq!(*supported, FORMAT_VERSION);
        }
        other => panic!("expected NewerFormat, got {other:?}"),
    }
    let text = error.to_string();
    assert!(
        text.contains(&format!("format version {}", FORMAT_VERSION + 1)),
        "{text}"
    );
    assert!(
        text.contains(&format!("supports ({FORMAT_VERSION})")),
        "{text}"
    );
    // The refusal changes nothing: the store is refused again, also
    // through its data dir.
    assert!(matches!(
        open_released(&path),
        Err(StoreError::NewerFormat { .. })
    ));
}

#[test]
fn a_store_of_the_current_format_opens_again_with_its_chain() {
    let mut builder = TestChain::regtest();
    let alice = key(1);
    let now = submit_time(&builder);
    let genesis = builder.genesis;
    let blocks = mine_branch(&mut builder, genesis, &alice, 5);
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store");
    {
        let store = Store::create(&path, &regtest_params()).expect("create store");
        let chain = Chain::new(
            store,
            &pouwd::node::chain::TaskFiles::dataset_only(DIABETES_CSV),
            &pouwd::model::onnx::OrtSetup::default(),
        )
        .expect("open the chain");
        for block in &blocks {
            assert_eq!(
                chain.submit(block.clone(), now).expect("submit"),
                Stored::Extended
            );
        }
    }
    // An entry that no replay would write: a store of the current format
    // is opened as it is, never rebuilt.
    let planted = Hash32([9; 32]);
    let account = pouwd::tx::Account {
        spendable: 7,
        immature: 0,
        nonce: 3,
    };
    {
        let db = sled_released(&path);
        db.insert(
            [&b"a/"[..], &planted.0].concat(),
            postcard::to_stdvec(&account).expect("encode"),
        )
        .expect("plant an account");
        db.flush().expect("flush");
    }
    let store = open_released(&path).expect("a store of the current format opens");
    assert_eq!(store.account(&planted).expect("account"), account);
    assert_eq!(store.balances().expect("balances").get(&planted), Some(&7));
    // An account that has spent everything has no balance to list.
    let spent = Hash32([8; 32]);
    drop(store);
    {
        let db = sled_released(&path);
        let empty = pouwd::tx::Account {
            spendable: 0,
            immature: 0,
            nonce: 1,
        };
        db.insert(
            [&b"a/"[..], &spent.0].concat(),
            postcard::to_stdvec(&empty).expect("encode"),
        )
        .expect("plant a spent account");
        db.flush().expect("flush");
    }
    let store = open_released(&path).expect("a store of the current format opens");
    assert_eq!(store.account(&spent).expect("account").nonce, 1);
    assert!(!store.balances().expect("balances").contains_key(&spent));
    {
        let db_path = path.clone();
        drop(store);
        let db = sled::open(&db_path).expect("open the sled tree");
        db.remove([&b"a/"[..], &planted.0].concat())
            .expect("remove it again");
        db.flush().expect("flush");
    }
    let store = open_released(&path).expect("a store of the current format opens");
    let reopened = node_on(store, dir);
    let keys = [miner_id(&alice)];
    assert_state_is_replay_of(&reopened, &chain_of(&[&blocks]), &keys, 5, now);
}

/// Formats 1 and 2 hold protocol 1 chains, which this node cannot read:
/// such a store is refused with both protocol versions named, and left as
/// it was.
#[test]
fn a_store_of_a_protocol_1_format_is_refused_naming_both_versions() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store");
    drop(Store::create(&path, &regtest_params()).expect("create store"));
    for format in [1u32, 2] {
        {
            let db = sled_released(&path);
            db.insert(&b"meta/format"[..], &format.to_le_bytes())
                .expect("write the format");
            db.flush().expect("flush");
        }
        let error = open_released(&path)
            .err()
            .expect("a protocol 1 store is refused");
        let text = error.to_string();
        assert!(
            matches!(error, StoreError::OldProtocol { found, .. } if found == format),
            "{text}"
        );
        assert!(
            text.contains("protocol 1") && text.contains("protocol 2"),
            "{text}"
        );
        let db = sled_released(&path);
        assert_eq!(
            db.get(b"meta/format").expect("read").as_deref(),
            Some(&format.to_le_bytes()[..]),
            "the refused store is left as it was"
        );
    }
}

#[test]
fn stores_of_formats_3_and_4_are_refused_saying_to_start_a_new_data_dir() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store");
    drop(Store::create(&path, &regtest_params()).expect("create store"));
    for format in [3u32, 4] {
        {
            let db = sled_released(&path);
            db.insert(&b"meta/format"[..], &format.to_le_bytes())
                .expect("write the format");
            db.flush().expect("flush");
        }
        let error = open_released(&path)
            .err()
            .expect("a store of an old format is refused");
        let text = error.to_string();
        assert!(
            matches!(
                error,
                StoreError::OldFormat { found, supported: FORMAT_VERSION, .. } if found == format
            ),
            "{text}"
        );
        assert!(text.contains("start a new data dir"), "{text}");
    }
}

/// The block file past the length the store gives holds bytes of a batch
/// that a crash stopped before sled committed it: opening cuts them off.
/// A block file shorter than that length is corruption.
#[test]
fn the_block_file_is_cut_back_to_the_stored_blocks_and_never_short() {
    let mut builder = TestChain::regtest();
    let alice = key(1);
    let now = submit_time(&builder);
    let genesis = builder.genesis;
    let blocks = mine_branch(&mut builder, genesis, &alice, 3);
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store");
    {
        let store = Store::create(&path, &regtest_params()).expect("create store");
        let chain = Chain::new(
            store,
            &pouwd::node::chain::TaskFiles::dataset_only(DIABETES_CSV),
            &pouwd::model::onnx::OrtSetup::default(),
        )
        .expect("open the chain");
        for block in &blocks {
            chain.submit(block.clone(), now).expect("submit");
        }
    }
    let file = path.join("blocks");
    let stored = std::fs::metadata(&file).expect("the block file").len();
    // Each block's bytes once, each followed by its record (a 2-byte
    // length, then a few hundred bytes).
    let contents = std::fs::read(&file).expect("the block file");
    let mut at = 0;
    for block in &blocks {
        let bytes = block.to_bytes();
        assert_eq!(
            &contents[at..at + bytes.len()],
            &bytes[..],
            "block {}",
            block.height()
        );
        at += bytes.len();
        let record = u16::from_le_bytes([contents[at], contents[at + 1]]) as usize;
        assert!((100..510).contains(&record), "a record of {record} bytes");
        at += 2 + record;
    }
    assert_eq!(at as u64, stored, "the block file holds each block once");
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&file)
            .expect("open the block file");
        f.write_all(&[7; 1000]).expect("append");
    }
    let store = open_released(&path).expect("a store with an unfinished append opens");
    assert_eq!(std::fs::metadata(&file).expect("block file").len(), stored);
    for block in &blocks {
        assert_eq!(
            store.block_bytes(&block.id()).expect("read"),
            Some(block.to_bytes())
        );
    }
    assert_eq!(store.tip().expect("tip").height, 3);
    drop(store);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .expect("open the block file")
        .set_len(stored - 1)
        .expect("cut the block file");
    match open_released(&path) {
        Err(StoreError::Corrupt(text)) => assert!(text.contains("block file"), "{text}"),
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("a short block file opened"),
    }
}

/// A write that fails (here the block file is `/dev/full`, which refuses
/// every write with "no space") leaves the store answering that error to
/// every later call until it is opened again, instead of reading what
/// sled holds in memory after a batch that may have stopped half-way.
#[test]
fn after_a_failed_write_the_store_answers_only_that_error_until_reopened() {
    let mut builder = TestChain::regtest();
    let alice = key(1);
    let now = submit_time(&builder);
    let genesis = builder.genesis;
    let blocks = mine_branch(&mut builder, genesis, &alice, 2);
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store");
    drop(Store::create(&path, &regtest_params()).expect("create store"));
    let file = path.join("blocks");
    std::fs::remove_file(&file).expect("remove the empty block file");
    std::os::unix::fs::symlink("/dev/full", &file).expect("link /dev/full");
    let node = node_on(open_released(&path).expect("open"), dir);
    let store = &node.chain.store;
    assert_eq!(store.tip().expect("tip before").hash, genesis);
    match node.chain.submit(blocks[0].clone(), now) {
        Err(SubmitError::Store(StoreError::DiskFull { .. })) => {}
        other => panic!("a write to /dev/full is a full disk, got {other:?}"),
    }
    let full = |what: &str, result: Result<(), StoreError>| match result {
        Err(StoreError::DiskFull { .. }) => {}
        other => panic!("{what} after the failed write: {other:?}"),
    };
    full("tip", store.tip().map(drop));
    full("meta", store.meta(&genesis).map(drop));
    full("contains", store.contains(&genesis).map(drop));
    full("hash_at", store.hash_at(0).map(drop));
    full("balance", store.balance(&miner_id(&alice)).map(drop));
    full(
        "insert",
        node.chain
            .submit(blocks[0].clone(), now)
            .map(drop)
            .map_err(|e| match e {
                SubmitError::Store(e) => e,
                other => panic!("{other}"),
            }),
    );
}

/// What the store answers about the blocks it holds, on both branches of
/// a fork, and about blocks it does not hold.
#[test]
fn the_store_answers_for_every_block_it_holds_and_only_those() {
    let mut builder = TestChain::regtest();
    let (alice, bob) = (key(1), key(2));
    let now = submit_time(&builder);
    let genesis = builder.genesis;
    let best = mine_branch(&mut builder, genesis, &alice, 4);
    let side = mine_branch(&mut builder, best[0].id(), &bob, 2);
    let node = bare_node(&regtest_params());
    submit_all(&node, &best, now, &Stored::Extended);
    submit_all(&node, &side, now, &Stored::SideChain);
    let store = &node.chain.store;
    let tip = store.tip().expect("tip");
    assert_eq!((tip.hash, tip.height), (best[3].id(), 4));
    for block in best.iter().chain(&side) {
        let id = block.id();
        assert!(store.contains(&id).expect("contains"));
        assert_eq!(
            store.block_bytes(&id).expect("bytes"),
            Some(block.to_bytes())
        );
        assert_eq!(store.block(&id).expect("block").as_ref(), Some(block));
        let meta = store.meta(&id).expect("meta").expect("stored");
        assert_eq!(meta.height, block.height());
        assert_eq!(meta.miner, block.header.fields.miner);
        let work_hash = Run::new(
            &block.header.fields.parent,
            &block.header.fields.miner,
            block.header.fields.lane,
        )
        .work_hash(
            block.header.fields.steps,
            &block.header.fields.model_hash,
            &block.header.fields.ckpt_root,
        );
        assert_eq!(store.work_owner(&work_hash).expect("owner"), Some(id));
        let model = store.model(&id, 11).expect("model").expect("stored");
        assert_eq!(model, block.body.params);
    }
    for (height, block) in (1..).zip(&best) {
        assert_eq!(store.hash_at(height).expect("index"), Some(block.id()));
    }
    assert_eq!(store.hash_at(0).expect("index"), Some(genesis));
    assert_eq!(store.hash_at(5).expect("index"), None);
    // Genesis: metadata and the all-zero model, but no block bytes.
    assert!(store.contains(&genesis).expect("contains"));
    assert_eq!(store.block_bytes(&genesis).expect("bytes"), None);
    assert_eq!(
        store.model(&genesis, 11).expect("model"),
        Some(vec![0.0; 11])
    );
    // A block it never saw.
    let unknown = Hash32([0x5a; 32]);
    assert!(!store.contains(&unknown).expect("contains"));
    assert_eq!(store.meta(&unknown).expect("meta"), None);
    assert_eq!(store.block(&unknown).expect("block"), None);
    assert_eq!(store.model(&unknown, 11).expect("model"), None);
    assert_eq!(store.work_owner(&unknown).expect("owner"), None);
    assert_eq!(store.genesis_hash(), genesis);
    assert_eq!(store.params(), &regtest_params());
    // Ancestry: exactly as many as asked, or down to genesis.
    let heights = |count| -> Vec<u64> {
        store
            .walk_back(&best[3].id(), count)
            .expect("known")
            .iter()
            .map(|a| a.height)
            .collect()
    };
    assert_eq!(heights(1), vec![4]);
    assert_eq!(heights(3), vec![4, 3, 2]);
    assert_eq!(heights(5), vec![4, 3, 2, 1, 0]);
    assert_eq!(heights(9), vec![4, 3, 2, 1, 0]);
    assert!(store.walk_back(&unknown, 3).is_none());
}

#[test]
fn a_live_store_cannot_be_opened_a_second_time() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = DataDir::new(&dir.path().join("node"));
    let store = data_dir
        .create(&ChainSource::from_arg("regtest"))
        .expect("create a data dir");
    match Store::open(&data_dir.store_path()) {
        Err(StoreError::Locked { path }) => {
            assert_eq!(path, data_dir.store_path().display().to_string());
        }
        Err(other) => panic!("expected Locked, got {other:?}"),
        Ok(_) => panic!("a store in use must not open a second time"),
    }
    let error = match data_dir.open_store() {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a store in use must not open through its data dir"),
    };
    assert!(error.contains("is running"), "{error}");

    // A second process is refused too, with the same advice.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_pouwd"))
        .args(["inspect", "--data-dir"])
        .arg(&data_dir.root)
        .arg("0")
        .output()
        .expect("run pouwd inspect");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "inspect opened a live store");
    assert!(stderr.contains("is running"), "{stderr}");

    drop(store);
    data_dir
        .open_store()
        .expect("the store opens once the first holder closed it");
}

#[test]
fn an_import_stops_at_a_bad_block_and_keeps_exactly_the_valid_prefix() {
    let mut builder = TestChain::regtest();
    let alice = key(1);
    let keys = [miner_id(&alice)];
    let now = submit_time(&builder);
    let genesis = builder.genesis;
    let long = BATCH_BLOCKS + 44;
    let blocks = mine_branch(&mut builder, genesis, &alice, long);

    // One fault caught by the header checks, one only by re-executing the
    // body; each in the first batch, and in a later one after a full batch.
    type Fault = fn(&mut Block);
    let faults: [(&str, Fault); 2] = [
        ("timestamp", |b| b.header.fields.timestamp_ms = 0),
        ("score", |b| b.header.fields.score_ppm ^= 1),
    ];
    // (blocks in the stream, 1-based index of the bad one, which is its height)
    let cases = [(40usize, 25usize), (long, BATCH_BLOCKS + 14)];
    for (length, bad_at) in cases {
        for (name, fault) in faults {
            let mut tampered = blocks[..length].to_vec();
            fault(&mut tampered[bad_at - 1]);
            resign(&mut tampered[bad_at - 1], &alice);

            let node = node();
            let (report, error) = import(&node, &stream(&builder.params, &tampered), now);
            let reason = match error {
                Some(ImportError::BadBlock { index, reason, .. }) => {
                    assert_eq!(index, bad_at as u64, "{name}: the bad block is named");
                    reason
                }
                other => panic!("{name} at {bad_at}: expected BadBlock, got {other:?}"),
            };
            match (name, &reason) {
                ("timestamp", BlockError::TimestampTooOld { .. })
                | ("score", BlockError::ScoreMismatch { .. }) => {}
                _ => panic!("{name} at {bad_at}: unexpected reason {reason}"),
            }
            assert_eq!(
                report,
                ImportReport {
                    stored: bad_at as u64 - 1,
                    already_known: 0,
                    reorgs: 0,
                },
                "{name} at {bad_at}"
            );
            let prefix = chain_of(&[&blocks[..bad_at - 1]]);
            assert_state_is_replay_of(&node, &prefix, &keys, length as u64, now);
            for block in &tampered[bad_at - 1..] {
                assert!(
                    !node.chain.store.contains(&block.id()).expect("contains"),
                    "{name} at {bad_at}: nothing at or after the bad block is stored"
                );
            }
        }
    }
}

#[test]
fn importing_the_same_stream_twice_reports_every_block_already_known() {
    let mut builder = TestChain::regtest();
    let alice = key(1);
    let keys = [miner_id(&alice)];
    let now = submit_time(&builder);
    let genesis = builder.genesis;
    let blocks = mine_branch(&mut builder, genesis, &alice, 30);
    let bytes = stream(&builder.params, &blocks);

    let node = node();
    let (first, error) = import(&node, &bytes, now);
    assert!(error.is_none(), "{error:?}");
    assert_eq!(
        first,
        ImportReport {
            stored: 30,
            already_known: 0,
            reorgs: 0
        }
    );
    let all = chain_of(&[&blocks]);
    assert_state_is_replay_of(&node, &all, &keys, 30, now);

    let (second, error) = import(&node, &bytes, now);
    assert!(error.is_none(), "{error:?}");
    assert_eq!(
        second,
        ImportReport {
            stored: 0,
            already_known: 30,
            reorgs: 0
        }
    );
    assert_state_is_replay_of(&node, &all, &keys, 30, now);
}

#[test]
fn an_import_that_reorgs_inside_one_batch_matches_a_replay() {
    let mut builder = TestChain::regtest();
    let (common, alice, bob) = (key(3), key(1), key(2));
    let keys = [miner_id(&common), miner_id(&alice), miner_id(&bob)];
    let now = submit_time(&builder);
    let genesis = builder.genesis;
    let prefix = mine_branch(&mut builder, genesis, &common, 3);
    let fork = prefix.last().expect("3 blocks").id();
    let branch_a = mine_branch(&mut builder, fork, &alice, 15);
    let branch_b = mine_branch(&mut builder, fork, &bob, 14);

    // Prefix, 12 blocks of A, then all of B: one batch, one reorg.
    let first: Vec<Block> = chain_of(&[&prefix, &branch_a[..12], &branch_b])
        .into_iter()
        .cloned()
        .collect();
    let node = node();
    let (report, error) = import(&node, &stream(&builder.params, &first), now);
    assert!(error.is_none(), "{error:?}");
    assert_eq!(
        report,
        ImportReport {
            stored: 29,
            already_known: 0,
            reorgs: 1
        }
    );
    assert_state_is_replay_of(&node, &chain_of(&[&prefix, &branch_b]), &keys, 18, now);

    // The rest of A, on a parent that is stored but not on the best chain.
    let (report, error) = import(&node, &stream(&builder.params, &branch_a[12..]), now);
    assert!(error.is_none(), "{error:?}");
    assert_eq!(
        report,
        ImportReport {
            stored: 3,
            already_known: 0,
            reorgs: 1
        }
    );
    assert_state_is_replay_of(&node, &chain_of(&[&prefix, &branch_a]), &keys, 18, now);
}

#[test]
fn a_block_repeated_in_a_stream_is_already_known_not_a_duplicate() {
    let mut builder = TestChain::regtest();
    let alice = key(1);
    let keys = [miner_id(&alice)];
    let now = submit_time(&builder);
    let genesis = builder.genesis;
    let blocks = mine_branch(&mut builder, genesis, &alice, 10);
    // Block 5 again after block 10, in the same batch as its first copy:
    // the outcome must not depend on where the batches are cut.
    let mut repeated = blocks.clone();
    repeated.push(blocks[4].clone());

    let node = node();
    let (report, error) = import(&node, &stream(&builder.params, &repeated), now);
    assert!(error.is_none(), "{error:?}");
    assert_eq!(
        report,
        ImportReport {
            stored: 10,
            already_known: 1,
            reorgs: 0
        }
    );
    assert_state_is_replay_of(&node, &chain_of(&[&blocks]), &keys, 10, now);
}

#[test]
fn an_import_refuses_a_second_block_with_the_same_work_in_any_batch() {
    let mut builder = TestChain::regtest();
    let alice = key(1);
    let keys = [miner_id(&alice)];
    let now = submit_time(&builder);
    let genesis = builder.genesis;
    let blocks = mine_branch(&mut builder, genesis, &alice, BATCH_BLOCKS + 10);

    // (height of the original, 1-based stream position of its copy): the
    // copy in the same batch, and in the batch after the original's.
    for (original, copy_at) in [(6usize, 8usize), (BATCH_BLOCKS - 6, BATCH_BLOCKS + 5)] {
        // Same run, same work hash; another timestamp makes another block.
        let mut copy = blocks[original - 1].clone();
        copy.header.fields.timestamp_ms += 1;
        resign(&mut copy, &alice);
        assert_ne!(copy.id(), blocks[original - 1].id());
        let mut streamed = blocks[..copy_at - 1].to_vec();
        streamed.push(copy);
        streamed.extend_from_slice(&blocks[copy_at - 1..]);

        let node = node();
        let (report, error) = import(&node, &stream(&builder.params, &streamed), now);
        match error {
            Some(ImportError::BadBlock {
                index,
                reason: BlockError::DuplicateWork { existing, .. },
                ..
            }) => {
                assert_eq!(index, copy_at as u64);
                assert_eq!(existing, blocks[original - 1].id());
            }
            other => {
                panic!("copy of {original} at {copy_at}: expected DuplicateWork, got {other:?}")
            }
        }
        assert_eq!(report.stored, copy_at as u64 - 1);
        let prefix = chain_of(&[&blocks[..copy_at - 1]]);
        assert_state_is_replay_of(&node, &prefix, &keys, BATCH_BLOCKS as u64 + 10, now);
    }
}

/// `Store::open`, waiting up to 10 s for the lock of a store this process
/// just closed: sled's background threads release it a moment after the
/// last handle drops, later on a loaded machine.
pub(crate) fn open_released(path: &std::path::Path) -> Result<Store, StoreError> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match Store::open(path) {
            Err(StoreError::Locked { .. }) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

/// `sled::open` of a store this process just closed, waiting up to 10 s
/// for its lock as [`open_released`] does.
pub(crate) fn sled_released(path: &std::path::Path) -> sled::Db {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        // Without the background flusher, dropping it releases the lock.
        match sled::Config::new().path(path).flush_every_ms(None).open() {
            Ok(db) => return db,
            Err(e) if std::time::Instant::now() < deadline => {
                assert!(e.to_string().contains("could not acquire lock"), "{e}");
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => panic!("open the sled tree: {e}"),
        }
    }
}

/// A copy of the store in `fixture`, in a new temporary directory (kept
/// while the first value lives), and the copy's path.
fn copy_of(fixture: &std::path::Path) -> (TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store");
    std::fs::create_dir_all(&path).expect("store dir");
    for entry in std::fs::read_dir(fixture).expect("the fixture") {
        let entry = entry.expect("a fixture file");
        std::fs::copy(entry.path(), path.join(entry.file_name())).expect("copy the store");
    }
    (dir, path)
}

/// A store of format 6, made by the pouwd before format 7 (a regtest node
/// mined to height 40, then exported to `store-format-6.pouw`), kept each
/// block's record (`b/`) and the work-hash index (`w/`) in sled. Opening
/// it moves both into the block file and the block index, in one batch
/// that sets format 7, then the height index into ranges (format 8), and
/// every block, its metadata and its work hash are found as before.
#[test]
fn a_format_6_store_has_its_records_and_work_index_moved_out_of_sled() {
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let (_dir, path) = copy_of(&fixture.join("store-format-6"));
    let work: Vec<(Hash32, Hash32)> = {
        let db = sled_released(&path);
        assert_eq!(
            db.get(b"meta/format").expect("read").as_deref(),
            Some(&6u32.to_le_bytes()[..])
        );
        db.scan_prefix(b"w/")
            .map(|item| {
                let (key, id) = item.expect("read");
                (
                    Hash32(key[2..].try_into().expect("32 bytes")),
                    Hash32(id.as_ref().try_into().expect("32 bytes")),
                )
            })
            .collect()
    };
    assert_eq!(work.len(), 40);
    let export = std::fs::read(fixture.join("store-format-6.pouw")).expect("the export");
    let (_, mut stream) = pouwd::node::export::StreamReader::open(&export[..]).expect("stream");
    let mut blocks = Vec::new();
    while let Some(bytes) = stream.next_block().expect("a block") {
        blocks.push(bytes);
    }
    assert_eq!(blocks.len(), 40);
    let check = |store: &Store| {
        assert_eq!(store.tip().expect("tip").height, 40);
        let mut parent = store.genesis_hash();
        for (i, bytes) in blocks.iter().enumerate() {
            let height = i as u64 + 1;
            let id = Block::from_bytes(bytes, &pouwd::chain::Limits::default())
                .expect("a block")
                .id();
            assert_eq!(store.hash_at(height).expect("read"), Some(id));
            assert!(store.contains(&id).expect("read"));
            assert_eq!(store.block_bytes(&id).expect("read").as_ref(), Some(bytes));
            let meta = store.meta(&id).expect("read").expect("its metadata");
            assert_eq!((meta.height, meta.parent), (height, parent));
            parent = id;
        }
        for (work_hash, id) in &work {
            assert_eq!(store.work_owner(work_hash).expect("read"), Some(*id));
        }
        let unknown = Hash32([5; 32]);
        assert!(!store.contains(&unknown).expect("read"));
        assert_eq!(store.work_owner(&unknown).expect("read"), None);
    };
    check(&open_released(&path).expect("a format 6 store opens"));
    {
        let db = sled_released(&path);
        assert_eq!(db.scan_prefix(b"b/").count(), 0, "the b/ keys are gone");
        assert_eq!(db.scan_prefix(b"w/").count(), 0, "the w/ keys are gone");
        assert_eq!(db.scan_prefix(b"h/").count(), 0, "the h/ keys are gone");
        assert_eq!(
            db.get(b"meta/format").expect("read").as_deref(),
            Some(&FORMAT_VERSION.to_le_bytes()[..])
        );
        assert_eq!(FORMAT_VERSION, 8);
        assert!(db.get(b"meta/blockruns").expect("read").is_some());
    }
    // Opened again, as format 8 now, it answers the same.
    check(&open_released(&path).expect("the upgraded store opens"));
}

/// The entries of a store's height ranges (`r/` keys), by height, parsed
/// as schema/storage.md describes them.
pub(crate) fn height_ranges(db: &sled::Db) -> Vec<(u64, Vec<u8>)> {
    let mut entries = Vec::new();
    for item in db.scan_prefix(b"r/") {
        let (key, value) = item.expect("read");
        let first = u64::from_be_bytes(key[2..].try_into().expect("10-byte key"));
        let (mut at, mut height) = (0, first);
        while at < value.len() {
            let len = u32::from_le_bytes(value[at..at + 4].try_into().expect("4 bytes")) as usize;
            entries.push((height, value[at + 4..at + 4 + len].to_vec()));
            at += 4 + len;
            height += 1;
        }
    }
    entries
}

/// A store of format 7, made by the pouwd before format 8 (a regtest node
/// mined to height 40, then exported to `store-format-7.pouw`), kept one
/// sled key per height, `h/`, with the block's id and undo record. Opening
/// it moves the entries, byte for byte, into ranges of heights, in one
/// batch that sets format 8; the blocks and the ledger read as after an
/// import of the same chain into a new store.
#[test]
fn a_format_7_store_has_its_height_index_moved_into_ranges() {
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let (_dir, path) = copy_of(&fixture.join("store-format-7"));
    let old: Vec<(u64, Vec<u8>)> = {
        let db = sled_released(&path);
        assert_eq!(
            db.get(b"meta/format").expect("read").as_deref(),
            Some(&7u32.to_le_bytes()[..])
        );
        assert_eq!(db.scan_prefix(b"r/").count(), 0);
        db.scan_prefix(b"h/")
            .map(|item| {
                let (key, entry) = item.expect("read");
                let height = u64::from_be_bytes(key[2..].try_into().expect("10-byte key"));
                (height, entry.to_vec())
            })
            .collect()
    };
    assert_eq!(
        old.iter().map(|(h, _)| *h).collect::<Vec<_>>(),
        (0..=40).collect::<Vec<_>>()
    );
    let export = std::fs::read(fixture.join("store-format-7.pouw")).expect("the export");
    // The same chain imported into a new store: what the upgrade must match.
    let fresh = node();
    let (report, error) = import_chain(
        &fresh.chain,
        &export[..],
        2,
        pouwd::node::now_ms(),
        |_, _| {},
    );
    assert!(error.is_none(), "{error:?}");
    assert_eq!(report.stored, 40);
    let check = |store: &Store| {
        let reference = &fresh.chain.store;
        assert_eq!(store.tip().expect("tip"), reference.tip().expect("tip"));
        assert_eq!(
            store.balances().expect("balances"),
            reference.balances().expect("balances")
        );
        for height in 0..=41 {
            assert_eq!(
                store.hash_at(height).expect("read"),
                reference.hash_at(height).expect("read")
            );
        }
        assert_eq!(
            store.hashes_between(0, 100).expect("read"),
            reference.hashes_between(0, 100).expect("read")
        );
        assert_eq!(store.hashes_between(0, 100).expect("read").len(), 41);
    };
    check(&open_released(&path).expect("a format 7 store opens"));
    {
        let db = sled_released(&path);
        assert_eq!(db.scan_prefix(b"h/").count(), 0, "the h/ keys are gone");
        assert_eq!(height_ranges(&db), old, "every entry moved as it was");
        assert_eq!(
            db.get(b"meta/format").expect("read").as_deref(),
            Some(&8u32.to_le_bytes()[..])
        );
    }
    check(&open_released(&path).expect("the upgraded store opens"));
}

/// The store itself tells a block it holds, or holds earlier in the same
/// batch, from a new one: storing it again changes nothing, and its bytes
/// are not written twice (the node's callers check first, but the store
/// must not rely on it).
#[test]
fn the_store_stores_a_block_once_however_often_it_is_given() {
    let mut builder = TestChain::regtest();
    let alice = key(1);
    let now = submit_time(&builder);
    let genesis = builder.genesis;
    let blocks = mine_branch(&mut builder, genesis, &alice, 3);
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store");
    let store = Store::create(&path, &regtest_params()).expect("create store");
    let chain = Chain::new(
        store,
        &pouwd::node::chain::TaskFiles::dataset_only(DIABETES_CSV),
        &pouwd::model::onnx::OrtSetup::default(),
    )
    .expect("open the chain");
    let checked = |block: &Block| chain.validate(block.clone(), now).expect("valid");
    let first = checked(&blocks[0]);
    // Twice in one batch: the second is the one staged before it.
    assert_eq!(
        chain
            .store
            .insert(&[first.clone(), first.clone()])
            .expect("insert"),
        vec![Stored::Extended, Stored::AlreadyKnown]
    );
    let file = path.join("blocks");
    let size = std::fs::metadata(&file).expect("the block file").len();
    // Again, in a later batch, alone and before a new block.
    assert_eq!(
        chain
            .store
            .insert(std::slice::from_ref(&first))
            .expect("insert"),
        vec![Stored::AlreadyKnown]
    );
    assert_eq!(
        std::fs::metadata(&file).expect("the block file").len(),
        size
    );
    let second = checked(&blocks[1]);
    assert_eq!(
        chain.store.insert(&[first, second]).expect("insert"),
        vec![Stored::AlreadyKnown, Stored::Extended]
    );
    assert_eq!(chain.store.tip().expect("tip").height, 2);
}
