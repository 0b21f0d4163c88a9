//! Transactions in blocks (schema/transactions.md): every rule a block's
//! transactions keep, alone and against the ledger, each refused with its
//! reason; fees and their maturity; and reorgs with transfers on both
//! branches, whose state must equal a replay from genesis.
//!
//! The ticket does not cover the transactions, so each test mines honest
//! blocks and then gives them the transactions it needs (`set_txs`).

use crate::reorg::{
    bare_node, chain_of, import, node_on, open_released, replay, sled_released, snapshot, stream,
    submit, submit_all, submit_time, Node,
};
use crate::support::chain::{key, miner_id, regtest_params, set_txs, transfer, TestChain};
use ed25519_dalek::SigningKey;
use pouwd::chain::encoding::{self, DecodeError};
use pouwd::chain::{Block, Hash32};
use pouwd::consensus::{BlockError, CheckedBlock};
use pouwd::ledger::LedgerError;
use pouwd::node::import::ImportError;
use pouwd::node::SubmitError;
use pouwd::store::Stored;
use pouwd::tx::{self, Account, Tx, TxError, TxKind};

const FEE: u64 = 1_000;

/// Mine `count` blocks by `miner` on `parent`, the block at height `h`
/// carrying `txs(h)`; the builder checks and accepts each (every rule but
/// the ledger's, which the node applies when it connects them).
fn mine_with_txs(
    chain: &mut TestChain,
    parent: Hash32,
    miner: &SigningKey,
    count: usize,
    txs: impl Fn(u64) -> Vec<Tx>,
) -> Vec<Block> {
    let mut blocks = Vec::with_capacity(count);
    let mut parent = parent;
    for _ in 0..count {
        let height = chain.context(&parent).child_height();
        let now = chain.params.genesis_time_ms + height * chain.params.target_block_ms;
        let mut block = chain.mine_child(&parent, miner, now).block;
        set_txs(&mut block, txs(height), miner);
        let checked = chain
            .validate(block, now)
            .expect("a block of well-formed transactions is valid alone");
        chain.accept(&checked);
        parent = checked.id();
        blocks.push(checked.into_block());
    }
    blocks
}

/// A child of genesis carrying `txs`, checked without a ledger.
fn block_with(chain: &TestChain, txs: Vec<Tx>) -> Result<CheckedBlock, BlockError> {
    let now = chain.params.genesis_time_ms + 1_000;
    let mut block = chain.mine_child(&chain.genesis, &key(1), now).block;
    set_txs(&mut block, txs, &key(1));
    chain.validate(block, now)
}

/// A transfer of `amount` with fee [`FEE`] from key `from` to key `to`
/// on the chain of genesis `g`.
fn pay(g: Hash32, from: u8, nonce: u64, to: u8, amount: u64) -> Tx {
    transfer(g, &key(from), nonce, miner_id(&key(to)), amount, FEE)
}

/// Re-sign edited fields with the sender's key.
fn resigned(mut t: Tx, from: u8, edit: impl Fn(&mut Tx)) -> Tx {
    edit(&mut t);
    t.fields.clone().sign(&key(from))
}

/// The ledger error a node gives for a block, which it must not store.
fn ledger_refusal(node: &Node, block: &Block, now: u64) -> LedgerError {
    let tip = node.chain.store.tip().expect("tip");
    match node.chain.submit(block.clone(), now) {
        Err(SubmitError::Invalid(BlockError::Ledger {
            block: bad, error, ..
        })) => {
            assert_eq!(bad, block.id(), "the error names the block");
            assert!(
                !node.chain.store.contains(&block.id()).expect("contains"),
                "a block the ledger refuses is not stored"
            );
            assert_eq!(node.chain.store.tip().expect("tip"), tip, "the tip stays");
            *error
        }
        other => panic!("expected a ledger refusal, got {other:?}"),
    }
}

fn tx_error(error: LedgerError) -> (usize, TxError) {
    match error {
        LedgerError::Tx { index, error, .. } => (index, error),
        other => panic!("expected a transaction error, got {other}"),
    }
}

// ------------------------------------------------------------ alone

#[test]
fn a_block_commits_to_its_transactions_and_carries_them_checked() {
    let chain = TestChain::regtest();
    let txs = vec![
        pay(chain.genesis, 2, 0, 3, 5),
        pay(chain.genesis, 2, 1, 4, 6),
    ];
    let checked = block_with(&chain, txs.clone()).expect("valid");
    let f = &checked.block().header.fields;
    assert_eq!(f.tx_root, tx::tx_root(&txs));
    assert_ne!(f.tx_root, tx::tx_root(&txs[..1]));
    assert_ne!(tx::tx_root(&[txs[1].clone(), txs[0].clone()]), f.tx_root);
    assert_eq!(
        checked.txs().iter().map(|t| t.id()).collect::<Vec<_>>(),
        txs.iter().map(Tx::id).collect::<Vec<_>>()
    );
    // Without transactions the root is the empty tree's.
    let empty = block_with(&chain, Vec::new()).expect("valid");
    assert_eq!(
        empty.block().header.fields.tx_root,
        pouwd::work::merkle::empty_root()
    );
}

#[test]
fn each_rule_of_a_transaction_alone_refuses_the_block_naming_it() {
    let chain = TestChain::regtest();
    let good = pay(chain.genesis, 2, 0, 3, 5);
    let base = pay(chain.genesis, 5, 0, 3, 5);
    let small_order = Hash32({
        let mut k = [0u8; 32];
        k[0] = 1; // the identity point
        k
    });
    let cases: Vec<(&str, Tx, TxError)> = vec![
        (
            "bad signature",
            {
                let mut t = base.clone();
                t.signature[0] ^= 1;
                t
            },
            TxError::BadSignature,
        ),
        (
            "another chain",
            resigned(base.clone(), 5, |t| t.fields.chain = Hash32([9; 32])),
            TxError::WrongChain {
                expected: chain.genesis,
                found: Hash32([9; 32]),
            },
        ),
        (
            "zero amount",
            resigned(base.clone(), 5, |t| {
                t.fields.kind = TxKind::Transfer {
                    to: miner_id(&key(3)),
                    amount: 0,
                }
            }),
            TxError::ZeroAmount,
        ),
        (
            "overflowing amount",
            resigned(base.clone(), 5, |t| {
                t.fields.kind = TxKind::Transfer {
                    to: miner_id(&key(3)),
                    amount: u64::MAX - FEE + 1,
                }
            }),
            TxError::Overflow,
        ),
        (
            "unknown version",
            resigned(base.clone(), 5, |t| t.fields.version = 2),
            TxError::UnknownVersion { found: 2, known: 1 },
        ),
        (
            "small-order sender",
            {
                let mut t = base.clone();
                t.fields.from = small_order;
                t
            },
            TxError::BadSenderKey { key: small_order },
        ),
    ];
    for (what, bad, expected) in cases {
        let id = bad.id();
        let error = block_with(&chain, vec![good.clone(), bad]).expect_err(what);
        assert_eq!(
            error,
            BlockError::Tx {
                index: 1,
                id,
                error: Box::new(expected)
            },
            "{what}"
        );
    }
}

#[test]
fn a_transaction_twice_in_a_block_is_refused() {
    let chain = TestChain::regtest();
    let (a, b) = (
        pay(chain.genesis, 2, 0, 3, 5),
        pay(chain.genesis, 2, 1, 3, 5),
    );
    let error = block_with(&chain, vec![a.clone(), b, a.clone()]).expect_err("duplicate");
    assert_eq!(
        error,
        BlockError::DuplicateTx {
            index: 2,
            id: a.id()
        }
    );
}

#[test]
fn the_transaction_count_bound_holds_at_the_limit_and_one_past_it() {
    let mut params = regtest_params();
    params.max_block_txs = 3;
    let chain = TestChain::new(params);
    let txs: Vec<Tx> = (0..4).map(|n| pay(chain.genesis, 2, n, 3, 5)).collect();
    block_with(&chain, txs[..3].to_vec()).expect("3 of 3");
    assert_eq!(
        block_with(&chain, txs).expect_err("4 of 3"),
        BlockError::TooManyTxs { found: 4, limit: 3 }
    );
}

#[test]
fn the_transaction_bytes_bound_holds_at_the_limit_and_one_past_it() {
    let probe = TestChain::regtest();
    let sizes = |chain: &TestChain| -> (Vec<Tx>, usize) {
        let txs: Vec<Tx> = (0..7).map(|n| pay(chain.genesis, 2, n, 3, 5)).collect();
        let bytes = txs.iter().map(|t| encoding::encode(t).len()).sum();
        (txs, bytes)
    };
    let (_, bytes) = sizes(&probe);
    assert!(bytes >= 1024, "seven transfers take {bytes} bytes");
    for (limit, fits) in [(bytes, true), (bytes - 1, false)] {
        let mut params = regtest_params();
        params.max_block_tx_bytes = limit as u32;
        params.jobs.max_job_bytes = 1024;
        let chain = TestChain::new(params);
        let (txs, found) = sizes(&chain);
        assert_eq!(found, bytes, "the size does not depend on the genesis");
        match block_with(&chain, txs) {
            Ok(_) => assert!(fits, "{found} bytes over a limit of {limit} accepted"),
            Err(e) => {
                assert!(!fits, "{found} bytes within {limit} refused: {e}");
                assert_eq!(e, BlockError::TxBytesOver { found, limit });
            }
        }
    }
}

#[test]
fn the_header_commits_to_the_transaction_root_and_the_body_hash_covers_them() {
    let chain = TestChain::regtest();
    let txs = vec![
        pay(chain.genesis, 2, 0, 3, 5),
        pay(chain.genesis, 2, 1, 3, 6),
    ];
    let mut block = block_with(&chain, txs.clone()).expect("valid").into_block();
    let now = chain.params.genesis_time_ms + 1_000;
    // A root over other transactions, with a body hash that matches.
    let mut wrong_root = block.clone();
    wrong_root.header.fields.tx_root = tx::tx_root(&txs[..1]);
    crate::support::chain::resign(&mut wrong_root, &key(1));
    assert_eq!(
        chain.validate(wrong_root, now).expect_err("wrong root"),
        BlockError::TxRootMismatch {
            expected: tx::tx_root(&txs[..1]),
            found: tx::tx_root(&txs),
        }
    );
    // A transaction taken out of the body: the body hash gives it away.
    block.body.txs.pop();
    assert!(matches!(
        chain.validate(block, now).expect_err("body changed"),
        BlockError::BodyHashMismatch { .. }
    ));
}

#[test]
fn a_transaction_encoded_non_canonically_in_a_block_is_refused() {
    let chain = TestChain::regtest();
    let t = pay(chain.genesis, 2, 5, 3, 5);
    let block = block_with(&chain, vec![t.clone()])
        .expect("valid")
        .into_block();
    let bytes = block.to_bytes();
    let tx_bytes = t.to_bytes();
    let at = bytes
        .windows(tx_bytes.len())
        .position(|w| w == tx_bytes)
        .expect("the block holds the transaction's bytes");
    // version (1 byte), chain (32), from (32), then the nonce 5 as one byte.
    let nonce_at = 1 + 32 + 32;
    assert_eq!(tx_bytes[nonce_at], 5);
    let long = |whole: &[u8], pos: usize| {
        let mut out = whole[..pos].to_vec();
        out.extend_from_slice(&[0x85, 0x00]);
        out.extend_from_slice(&whole[pos + 1..]);
        out
    };
    assert_eq!(
        Block::from_bytes(&long(&bytes, at + nonce_at), &chain.limits()),
        Err(DecodeError::NonCanonical { what: "block" })
    );
    assert_eq!(
        Tx::from_bytes(&long(&tx_bytes, nonce_at)),
        Err(DecodeError::NonCanonical {
            what: "transaction"
        })
    );
}

// ------------------------------------------------------------ against the ledger

/// A node and a builder on regtest where alice (key 1) mined the first
/// `blocks` blocks, so `blocks - 10` of her rewards are spendable.
fn funded(blocks: usize) -> (Node, TestChain, u64, Vec<Block>) {
    let mut chain = TestChain::regtest();
    let node = bare_node(&chain.params);
    let now = submit_time(&chain);
    let genesis = chain.genesis;
    let mined = mine_with_txs(&mut chain, genesis, &key(1), blocks, |_| Vec::new());
    submit_all(&node, &mined, now, &Stored::Extended);
    (node, chain, now, mined)
}

#[test]
fn a_transfer_moves_its_amount_and_its_fee_matures_with_the_reward() {
    let (node, mut chain, now, _) = funded(11);
    let reward = chain.params.reward_amount;
    let store = &node.chain.store;
    let (alice, bob, carol) = (miner_id(&key(1)), miner_id(&key(2)), miner_id(&key(3)));
    assert_eq!(
        store.account(&alice).expect("account"),
        Account {
            spendable: reward,
            immature: 10 * reward,
            nonce: 0
        }
    );
    let amount = reward / 2;
    let t = pay(chain.genesis, 1, 0, 3, amount);
    let tip = chain.tip;
    let block = mine_with_txs(&mut chain, tip, &key(2), 1, |_| vec![t.clone()]);
    submit_all(&node, &block, now, &Stored::Extended);
    assert_eq!(
        store.account(&alice).expect("account"),
        Account {
            spendable: 2 * reward - amount - FEE,
            immature: 9 * reward,
            nonce: 1
        }
    );
    assert_eq!(
        store.account(&carol).expect("account"),
        Account {
            spendable: amount,
            immature: 0,
            nonce: 0
        }
    );
    // The fee is bob's, immature with his reward until ten blocks later.
    assert_eq!(store.account(&bob).expect("account").immature, reward + FEE);
    assert_eq!(
        store.tx_location(&t.id()).expect("index"),
        Some((12, block[0].id()))
    );
    // The index is keyed by the id's first 16 bytes: an id that shares them
    // is not taken for this transaction.
    let mut twin = t.id();
    twin.0[31] ^= 1;
    assert_eq!(store.tx_location(&twin).expect("index"), None);
    let tip = chain.tip;
    let later = mine_with_txs(&mut chain, tip, &key(4), 10, |_| Vec::new());
    submit_all(&node, &later[..9], now, &Stored::Extended);
    assert_eq!(store.account(&bob).expect("account").spendable, 0);
    submit_all(&node, &later[9..], now, &Stored::Extended);
    assert_eq!(
        store.account(&bob).expect("account"),
        Account {
            spendable: reward + FEE,
            immature: 0,
            nonce: 0
        }
    );
}

#[test]
fn a_replayed_transaction_is_refused_as_a_used_nonce() {
    let (node, mut chain, now, _) = funded(11);
    let t = pay(chain.genesis, 1, 0, 3, 5);
    let tip = chain.tip;
    let first = mine_with_txs(&mut chain, tip, &key(2), 1, |_| vec![t.clone()]);
    submit_all(&node, &first, now, &Stored::Extended);
    let tip = chain.tip;
    let replay = mine_with_txs(&mut chain, tip, &key(2), 1, |_| vec![t.clone()]);
    let (index, error) = tx_error(ledger_refusal(&node, &replay[0], now));
    assert_eq!(index, 0);
    assert_eq!(
        error,
        TxError::NonceUsed {
            expected: 1,
            found: 0
        }
    );
}

#[test]
fn a_nonce_gap_is_refused() {
    let (node, mut chain, now, _) = funded(11);
    let (ok, gap) = (
        pay(chain.genesis, 1, 0, 3, 5),
        pay(chain.genesis, 1, 2, 3, 5),
    );
    let tip = chain.tip;
    let block = mine_with_txs(&mut chain, tip, &key(2), 1, |_| {
        vec![ok.clone(), gap.clone()]
    });
    let (index, error) = tx_error(ledger_refusal(&node, &block[0], now));
    assert_eq!(index, 1);
    assert_eq!(
        error,
        TxError::NonceGap {
            expected: 1,
            found: 2
        }
    );
}

#[test]
fn spending_more_than_is_spendable_is_refused_and_immature_rewards_do_not_count() {
    let (node, mut chain, now, _) = funded(11);
    let reward = chain.params.reward_amount;
    // Alice has one reward spendable: exactly it, fee included, is fine.
    let all = pay(chain.genesis, 1, 0, 3, reward - FEE);
    let over = pay(chain.genesis, 1, 0, 3, reward - FEE + 1);
    let tip = chain.tip;
    let block = mine_with_txs(&mut chain, tip, &key(2), 1, |_| vec![over.clone()]);
    let (_, error) = tx_error(ledger_refusal(&node, &block[0], now));
    assert_eq!(
        error,
        TxError::Overspend {
            needed: reward + 1,
            spendable: reward,
            immature: 10 * reward,
        }
    );
    // Bob, whose only reward is immature, cannot spend any of it.
    let mut chain2 = TestChain::regtest();
    let node2 = bare_node(&chain2.params);
    let genesis = chain2.genesis;
    let bobs = mine_with_txs(&mut chain2, genesis, &key(2), 1, |_| Vec::new());
    submit_all(&node2, &bobs, now, &Stored::Extended);
    let spend = pay(chain2.genesis, 2, 0, 3, 1);
    let tip = chain2.tip;
    let block = mine_with_txs(&mut chain2, tip, &key(4), 1, |_| vec![spend.clone()]);
    let (_, error) = tx_error(ledger_refusal(&node2, &block[0], now));
    assert_eq!(
        error,
        TxError::Overspend {
            needed: 1 + FEE,
            spendable: 0,
            immature: reward,
        }
    );
    // The exact amount goes through on the first node, on its tip (the
    // builder alone took the refused block).
    let tip = node.chain.store.tip().expect("tip").hash;
    // (Another miner: bob's child of this tip is the refused one.)
    let ok = mine_with_txs(&mut chain, tip, &key(5), 1, |_| vec![all.clone()]);
    submit_all(&node, &ok, now, &Stored::Extended);
    assert_eq!(
        node.chain
            .store
            .account(&miner_id(&key(1)))
            .expect("account")
            .spendable,
        reward
    );
}

#[test]
fn a_branch_that_breaks_the_ledger_never_becomes_best() {
    let (node, mut chain, now, funding) = funded(11);
    let reward = chain.params.reward_amount;
    let fork = chain.tip;
    let best = mine_with_txs(&mut chain, fork, &key(2), 2, |_| Vec::new());
    submit_all(&node, &best, now, &Stored::Extended);
    // A side branch whose first block overspends: stored on the side,
    // where the ledger does not run, and refused when it would become best.
    let over = pay(chain.genesis, 1, 0, 3, 2 * reward);
    let side = mine_with_txs(&mut chain, fork, &key(3), 3, |h| {
        if h == 12 {
            vec![over.clone()]
        } else {
            Vec::new()
        }
    });
    submit_all(&node, &side[..2], now, &Stored::SideChain);
    match node.chain.submit(side[2].clone(), now) {
        Err(SubmitError::Invalid(BlockError::Ledger { block, height, .. })) => {
            assert_eq!(
                (block, height),
                (side[0].id(), 12),
                "names the bad ancestor"
            );
        }
        other => panic!("expected a ledger refusal, got {other:?}"),
    }
    let keys: Vec<Hash32> = (1..=4).map(|k| miner_id(&key(k))).collect();
    let path = chain_of(&[&funding, &best]);
    assert_eq!(
        snapshot(&node, &keys, 14),
        replay(&chain.params, &path, &keys, 14, now)
    );
}

#[test]
fn an_import_stops_at_a_block_the_ledger_refuses_and_keeps_the_blocks_before_it() {
    let mut chain = TestChain::regtest();
    let now = submit_time(&chain);
    let reward = chain.params.reward_amount;
    let genesis = chain.genesis;
    let over = pay(chain.genesis, 1, 0, 3, 2 * reward);
    let blocks = mine_with_txs(&mut chain, genesis, &key(1), 14, |h| {
        if h == 13 {
            vec![over.clone()]
        } else {
            Vec::new()
        }
    });
    let node = bare_node(&chain.params);
    let (report, error) = import(&node, &stream(&chain.params, &blocks), now);
    match error {
        Some(ImportError::Ledger(BlockError::Ledger { block, height, .. })) => {
            assert_eq!((block, height), (blocks[12].id(), 13));
        }
        other => panic!("expected a ledger refusal, got {other:?}"),
    }
    assert_eq!(report.stored, 12);
    let tip = node.chain.store.tip().expect("tip");
    assert_eq!((tip.height, tip.hash), (12, blocks[11].id()));
}

#[test]
fn reorgs_deeper_than_the_window_with_transfers_on_both_branches_match_a_replay() {
    let mut chain = TestChain::regtest();
    let now = submit_time(&chain);
    let node = bare_node(&chain.params);
    let genesis = chain.genesis;
    let reward = chain.params.reward_amount;
    let keys: Vec<Hash32> = (1..=5).map(|k| miner_id(&key(k))).collect();
    let g = genesis;
    // Alice mines 12 blocks: two rewards spendable.
    let shared = mine_with_txs(&mut chain, genesis, &key(1), 12, |_| Vec::new());
    submit_all(&node, &shared, now, &Stored::Extended);
    let fork = chain.tip;
    // Branch A (bob mines 12): alice pays carol, then carol pays dave back
    // part of it, in later blocks.
    let a_txs = |h: u64| -> Vec<Tx> {
        match h {
            13 => vec![pay(g, 1, 0, 3, reward / 2)],
            14 => vec![pay(g, 1, 1, 4, reward / 4), pay(g, 3, 0, 4, reward / 8)],
            20 => vec![pay(g, 3, 1, 5, reward / 16)],
            _ => Vec::new(),
        }
    };
    let branch_a = mine_with_txs(&mut chain, fork, &key(2), 12, a_txs);
    submit_all(&node, &branch_a, now, &Stored::Extended);
    let path_a = chain_of(&[&shared, &branch_a]);
    assert_eq!(
        snapshot(&node, &keys, 26),
        replay(&chain.params, &path_a, &keys, 26, now)
    );
    let carol_to_dave = pay(chain.genesis, 3, 0, 4, reward / 8).id();
    assert_eq!(
        node.chain.store.tx_location(&carol_to_dave).expect("index"),
        Some((14, branch_a[1].id()))
    );
    // Branch B (carol mines 14 on the fork): alice pays bob instead, with
    // the same nonce 0 as on branch A, and bob's own spending is not there.
    let b_txs = |h: u64| -> Vec<Tx> {
        match h {
            13 => vec![pay(g, 1, 0, 2, reward / 3)],
            15 => vec![pay(g, 1, 1, 5, reward / 5)],
            _ => Vec::new(),
        }
    };
    let branch_b = mine_with_txs(&mut chain, fork, &key(3), 14, b_txs);
    submit_all(&node, &branch_b[..12], now, &Stored::SideChain);
    assert_eq!(
        submit(&node, &branch_b[12], now),
        Stored::Reorg {
            fork_height: 12,
            disconnected: 12
        }
    );
    submit_all(&node, &branch_b[13..], now, &Stored::Extended);
    let path_b = chain_of(&[&shared, &branch_b]);
    assert_eq!(
        snapshot(&node, &keys, 26),
        replay(&chain.params, &path_b, &keys, 26, now)
    );
    // Branch A's transactions are no longer in the best chain.
    assert_eq!(
        node.chain.store.tx_location(&carol_to_dave).expect("index"),
        None
    );
    // And back: branch A grows past B.
    let tip_a = branch_a[11].id();
    let more_a = mine_with_txs(&mut chain, tip_a, &key(2), 3, |h| {
        if h == 25 {
            vec![pay(g, 1, 2, 5, 7)]
        } else {
            Vec::new()
        }
    });
    submit_all(&node, &more_a[..2], now, &Stored::SideChain);
    assert_eq!(
        submit(&node, &more_a[2], now),
        Stored::Reorg {
            fork_height: 12,
            disconnected: 14
        }
    );
    let path = chain_of(&[&shared, &branch_a, &more_a]);
    assert_eq!(
        snapshot(&node, &keys, 27),
        replay(&chain.params, &path, &keys, 27, now)
    );
    assert_eq!(
        node.chain.store.account(&keys[0]).expect("account").nonce,
        3,
        "alice's three transfers on branch A count, branch B's do not"
    );
}

/// A transaction mined at one height on one branch and at another on the
/// other: the index keeps an entry for each, and a lookup answers the one
/// on the best chain, after each reorg. An id nobody mined is unknown.
#[test]
fn a_transaction_mined_at_different_heights_on_two_branches_is_found_on_the_best() {
    let (node, mut chain, now, mined) = funded(12);
    let g = chain.genesis;
    let fork = mined[11].id();
    let moved = pay(g, 1, 0, 3, 1_000);
    let with_at = |height: u64| {
        let moved = moved.clone();
        move |h: u64| {
            if h == height {
                vec![moved.clone()]
            } else {
                Vec::new()
            }
        }
    };
    let store = &node.chain.store;
    // Branch A (bob, 3 blocks) carries it at 13; branch B (carol, 5) at 15.
    let branch_a = mine_with_txs(&mut chain, fork, &key(2), 3, with_at(13));
    let branch_b = mine_with_txs(&mut chain, fork, &key(3), 5, with_at(15));
    submit_all(&node, &branch_a, now, &Stored::Extended);
    assert_eq!(
        store.tx_location(&moved.id()).expect("index"),
        Some((13, branch_a[0].id()))
    );
    submit_all(&node, &branch_b[..3], now, &Stored::SideChain);
    assert_eq!(
        submit(&node, &branch_b[3], now),
        Stored::Reorg {
            fork_height: 12,
            disconnected: 3
        }
    );
    assert_eq!(
        store.tx_location(&moved.id()).expect("index"),
        Some((15, branch_b[2].id()))
    );
    // Back to A, now longer: the entry at 13 answers again.
    let tip_a = branch_a[2].id();
    let more_a = mine_with_txs(&mut chain, tip_a, &key(2), 2, |_| Vec::new());
    submit_all(&node, &more_a[..1], now, &Stored::SideChain);
    assert_eq!(
        submit(&node, &more_a[1], now),
        Stored::Reorg {
            fork_height: 12,
            disconnected: 4
        }
    );
    assert_eq!(
        store.tx_location(&moved.id()).expect("index"),
        Some((13, branch_a[0].id()))
    );
    let never = pay(g, 1, 5, 3, 1_000);
    assert_eq!(store.tx_location(&never.id()).expect("index"), None);
}

/// A store of format 5 kept the transaction index in sled (`t/` keys);
/// opening it moves the index into a run file, in one batch that sets
/// format 6, and every transaction is found as before.
#[test]
fn a_format_5_store_has_its_transaction_index_moved_out_of_sled() {
    let mut chain = TestChain::regtest();
    let now = submit_time(&chain);
    let g = chain.genesis;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store");
    let genesis = chain.genesis;
    let mined = mine_with_txs(&mut chain, genesis, &key(1), 14, |h| match h {
        13 => vec![pay(g, 1, 0, 2, 1_000), pay(g, 1, 1, 3, 2_000)],
        14 => vec![pay(g, 1, 2, 2, 3_000)],
        _ => Vec::new(),
    });
    let txs: Vec<(Hash32, u64, Hash32)> = mined
        .iter()
        .flat_map(|b| b.body.txs.iter().map(|t| (t.id(), b.height(), b.id())))
        .collect();
    assert_eq!(txs.len(), 3);
    {
        let store = pouwd::store::Store::create(&path, &chain.params).expect("create");
        let node = node_on(store, tempfile::tempdir().expect("temp dir"));
        submit_all(&node, &mined, now, &Stored::Extended);
    }
    let run_files = || -> Vec<String> {
        std::fs::read_dir(&path)
            .expect("store dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("txindex-"))
            .collect()
    };
    // Blocks 13 (2 transactions) and 14 (1) were stored one at a time: a
    // run of 2 entries, and one of 1 (2 ≥ 2 · 1, so not merged).
    assert_eq!(run_files().len(), 2);
    // Make it the store format 5 wrote: `t/` keys, no run list, no runs.
    {
        let db = sled_released(&path);
        for (id, height, _) in &txs {
            db.insert([&b"t/"[..], &id.0[..16]].concat(), &height.to_be_bytes())
                .expect("write");
        }
        db.remove(b"meta/txruns").expect("remove");
        // And its height index one `h/` key per height, as before format 8.
        for (height, entry) in crate::reorg::height_ranges(&db) {
            db.insert([&b"h/"[..], &height.to_be_bytes()[..]].concat(), entry)
                .expect("write");
        }
        for item in db.scan_prefix(b"r/") {
            db.remove(item.expect("read").0).expect("remove");
        }
        db.insert(&b"meta/format"[..], &5u32.to_le_bytes())
            .expect("write");
        db.flush().expect("flush");
    }
    for name in run_files() {
        std::fs::remove_file(path.join(name)).expect("remove the run");
    }
    {
        let store = open_released(&path).expect("a format 5 store opens");
        for (id, height, block) in &txs {
            assert_eq!(
                store.tx_location(id).expect("index"),
                Some((*height, *block))
            );
        }
        assert_eq!(
            store.tx_location(&pay(g, 1, 3, 2, 1).id()).expect("index"),
            None
        );
    }
    assert_eq!(run_files().len(), 1);
    let db = sled_released(&path);
    assert_eq!(db.scan_prefix(b"t/").count(), 0, "the t/ keys are gone");
    assert_eq!(
        db.get(b"meta/format").expect("read").as_deref(),
        Some(&8u32.to_le_bytes()[..])
    );
    assert!(db.get(b"meta/txruns").expect("read").is_some());
    // A format 6 store without its run list is damaged, not upgraded.
    db.remove(b"meta/txruns").expect("remove");
    db.flush().expect("flush");
    drop(db);
    let error = open_released(&path).err().expect("refused");
    assert!(
        matches!(&error, pouwd::store::StoreError::Corrupt(why) if why.contains("run list")),
        "{error}"
    );
}

// ------------------------------------------------------------ the node's pool

/// A node's shared state on a fresh regtest data dir, as `start` builds it.
fn shared_node() -> (pouwd::node::state::Shared, tempfile::TempDir) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = pouwd::node::DataDir::new(&tmp.path().join("node"));
    let store = dir
        .create(&pouwd::node::ChainSource::from_arg("regtest"))
        .expect("create a regtest data dir");
    let files = dir.load_task_files(store.params()).expect("dataset");
    let chain = pouwd::node::Chain::new(store, &files, &pouwd::model::onnx::OrtSetup::default())
        .expect("open the chain");
    let shared =
        pouwd::node::state::Shared::new(chain, dir, key(9)).expect("the node's shared state");
    (shared, tmp)
}

fn in_pool(shared: &pouwd::node::state::Shared, t: &Tx) -> bool {
    shared.pool().contains(&t.id())
}

#[test]
fn the_pool_follows_the_tip_mined_transactions_leave_and_reorged_ones_come_back() {
    let (shared, _tmp) = shared_node();
    let mut chain = TestChain::regtest();
    let g = chain.genesis;
    assert_eq!(shared.chain.store.genesis_hash(), g);
    let genesis = chain.genesis;
    let funding = mine_with_txs(&mut chain, genesis, &key(1), 12, |_| Vec::new());
    for block in &funding {
        assert_eq!(
            shared.submit(block.clone()).expect("valid"),
            Stored::Extended
        );
    }
    // Alice has two rewards spendable: three transfers enter the pool.
    let txs: Vec<Tx> = (0..3).map(|n| pay(g, 1, n, 3, 1_000 + n)).collect();
    for t in &txs {
        shared.submit_tx(t.clone()).expect("admitted");
    }
    // Refused: a replay of a pending one, a gap, an invalid signature.
    assert!(shared.submit_tx(txs[0].clone()).is_err());
    assert!(shared.submit_tx(pay(g, 1, 5, 3, 1)).is_err());
    let mut forged = pay(g, 1, 3, 3, 1);
    forged.signature[0] ^= 1;
    assert!(matches!(
        shared.submit_tx(forged),
        Err(pouwd::node::state::TxSubmitError::Invalid(
            TxError::BadSignature
        ))
    ));
    // A miner on the tip takes them in nonce order.
    let tip = chain.tip;
    let picked = shared.block_txs(&tip).expect("selection");
    assert_eq!(picked, txs);
    assert_eq!(
        shared.block_txs(&funding[5].id()).expect("selection"),
        Vec::<Tx>::new(),
        "nothing for a parent that is not the tip"
    );
    // A block with the first two: they leave the pool, the third stays.
    let fork = chain.tip;
    let mined = mine_with_txs(&mut chain, fork, &key(2), 1, |_| txs[..2].to_vec());
    assert_eq!(
        shared.submit(mined[0].clone()).expect("valid"),
        Stored::Extended
    );
    assert!(!in_pool(&shared, &txs[0]) && !in_pool(&shared, &txs[1]));
    assert!(in_pool(&shared, &txs[2]));
    // A heavier branch without them: they come back, the third after them.
    let other = mine_with_txs(&mut chain, fork, &key(3), 2, |_| Vec::new());
    assert_eq!(
        shared.submit(other[0].clone()).expect("valid"),
        Stored::SideChain
    );
    assert!(matches!(
        shared.submit(other[1].clone()).expect("valid"),
        Stored::Reorg { .. }
    ));
    for t in &txs {
        assert!(in_pool(&shared, t), "{} is pending again", t.id());
    }
    let tip = other[1].id();
    assert_eq!(shared.block_txs(&tip).expect("selection"), txs);
    // A block that uses the first one's nonce for another transfer
    // invalidates it; the next ones still follow on.
    let rival = pay(g, 1, 0, 4, 77);
    let spent = mine_with_txs(&mut chain, tip, &key(2), 1, |_| vec![rival.clone()]);
    assert_eq!(
        shared.submit(spent[0].clone()).expect("valid"),
        Stored::Extended
    );
    assert!(!in_pool(&shared, &txs[0]), "its nonce is used");
    assert!(in_pool(&shared, &txs[1]) && in_pool(&shared, &txs[2]));
    assert_eq!(
        shared.block_txs(&spent[0].id()).expect("selection"),
        txs[1..]
    );
}
