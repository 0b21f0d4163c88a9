//! The consensus rules of PROTOCOL §7, one test per reason a block is
//! refused, each on a block that is valid but for that one reason.
//!
//! Header faults are shown on an honest block that validates before it is
//! tampered with. Body faults use runs that commit consistently to their
//! lie (Merkle root, proofs, model hash, work hash, score), so that only
//! the rule under test can catch them; [`Forgery`] builds those.

use crate::support::chain::{
    key, loose_params, max_target, recommit_body, regtest_params, resign, sign, Forgery,
    MineOptions, TestChain,
};
use pouwd::chain::{encoding, Block, CheckpointOpening, DecodeError, Hash32};
use pouwd::consensus::target::{from_u256, to_u256};
use pouwd::consensus::JobContext;
use pouwd::consensus::{
    check_header, validate_block, Ancestry, BlockError, CheckedBlock, ParentContext,
};
use pouwd::ledger::GENESIS_JOB;
use pouwd::work::{self, miner};
use sha2::{Digest, Sha256};
use std::collections::HashSet;

/// Local time for the tests: genesis time, unless a test moves it on.
fn genesis_time(chain: &TestChain) -> u64 {
    chain.params.genesis_time_ms
}

fn valid(chain: &TestChain, block: Block, now_ms: u64) -> CheckedBlock {
    chain
        .validate(block, now_ms)
        .expect("the untampered block is valid")
}

fn refused(chain: &TestChain, block: Block, now_ms: u64) -> BlockError {
    chain
        .validate(block, now_ms)
        .expect_err("the tampered block is refused")
}

/// PROTOCOL §6 written out: `s_t = 1 + (u64_le(SHA-256("pouw/challenge" ‖
/// work_hash ‖ u32_le t)[0..8]) mod m)`, distinct and ascending.
fn reference_challenges(work_hash: &Hash32, segments: u64, spot_checks: u32) -> Vec<u64> {
    let mut chosen: Vec<u64> = (0..spot_checks)
        .map(|t| {
            let digest = Sha256::new()
                .chain_update(b"pouw/challenge")
                .chain_update(work_hash.0)
                .chain_update(t.to_le_bytes())
                .finalize();
            let word: [u8; 8] = digest[..8].try_into().expect("8 bytes");
            1 + u64::from_le_bytes(word) % segments
        })
        .collect();
    chosen.sort_unstable();
    chosen.dedup();
    chosen
}

// ---------------------------------------------------------------- valid chains

#[test]
fn a_chain_of_twenty_blocks_validates_end_to_end() {
    let mut chain = TestChain::regtest();
    let miners = [key(1), key(2)];
    let mut now = genesis_time(&chain);
    let mut blocks = Vec::new();
    for height in 1..=20u64 {
        now += chain.params.target_block_ms;
        let checked = chain.extend(&miners[height as usize % 2], now);
        assert_eq!(checked.block().height(), height);
        blocks.push(checked.into_block());
    }
    let tip_model = chain.model(&chain.tip).to_vec();
    assert!(tip_model.iter().any(|p| *p != 0.0), "the chain trained");
    assert!(blocks.last().expect("20 blocks").header.fields.score_ppm > 0);

    // A second node replays the chain from genesis through the wire format.
    let mut replay = TestChain::regtest();
    let mut ids = HashSet::new();
    for block in &blocks {
        let decoded = Block::from_bytes(&block.to_bytes(), &replay.limits())
            .expect("a valid block decodes strictly");
        assert_eq!(&decoded, block);
        let checked = replay
            .validate(decoded, now)
            .expect("every block of the chain is valid");
        assert!(ids.insert(checked.id()), "block ids are distinct");
        replay.accept(&checked);
    }
    assert_eq!(replay.tip, chain.tip);
    assert_eq!(replay.model(&replay.tip), &tip_model[..]);
}

// ------------------------------------------------------------- header rules

#[test]
fn unknown_version_is_refused() {
    let chain = TestChain::regtest();
    let now = genesis_time(&chain);
    let mut block = chain.mine_child(&chain.genesis, &key(1), now).block;
    valid(&chain, block.clone(), now);
    // Protocol 1's header, and one from the future.
    for version in [1, 3] {
        block.header.fields.version = version;
        resign(&mut block, &key(1));
        assert_eq!(
            refused(&chain, block.clone(), now),
            BlockError::UnknownVersion {
                found: version,
                known: 2
            }
        );
    }
}

#[test]
fn a_block_checked_against_another_parent_is_refused() {
    let mut chain = TestChain::regtest();
    let now = genesis_time(&chain);
    let first = chain.extend(&key(1), now);
    let child = chain.mine_child(&first.id(), &key(1), now).block;
    let genesis_ctx = chain.context(&chain.genesis);
    let genesis_model = chain.model(&chain.genesis);
    let genesis_job = chain.job(&genesis_ctx);
    let err = validate_block(
        &chain.params,
        &genesis_ctx,
        &chain.training(&genesis_job, genesis_model),
        child,
        now,
        &|_| None,
    )
    .expect_err("the context is not the block's parent");
    assert_eq!(
        err,
        BlockError::WrongParent {
            expected: chain.genesis,
            found: first.id(),
        }
    );
}

#[test]
fn wrong_height_is_refused() {
    let chain = TestChain::regtest();
    let now = genesis_time(&chain);
    let mut block = chain.mine_child(&chain.genesis, &key(1), now).block;
    valid(&chain, block.clone(), now);
    block.header.fields.height = 2;
    resign(&mut block, &key(1));
    assert_eq!(
        refused(&chain, block, now),
        BlockError::WrongHeight {
            expected: 1,
            found: 2
        }
    );
}

#[test]
fn timestamp_not_above_the_median_time_past_is_refused() {
    let mut chain = TestChain::regtest();
    let mut now = genesis_time(&chain);
    for _ in 0..12 {
        now += chain.params.target_block_ms;
        chain.extend(&key(1), now);
    }
    let tip = chain.tip;
    // The median of the timestamps of the parent and its ten ancestors.
    let mut last_eleven: Vec<u64> = chain
        .ancestry
        .walk_back(&tip, 11)
        .expect("the tip is known")
        .iter()
        .map(|a| a.timestamp_ms)
        .collect();
    assert_eq!(last_eleven.len(), 11);
    last_eleven.sort_unstable();
    let median = last_eleven[5];
    let ctx = chain.context(&tip);
    assert_eq!(ctx.median_time_past_ms, median);
    assert!(median < ctx.parent.timestamp_ms);
    // A miner whose clock is behind stamps its block median + 1: the least allowed.
    let mut block = chain.mine_child(&tip, &key(2), 0).block;
    assert_eq!(block.header.fields.timestamp_ms, median + 1);
    valid(&chain, block.clone(), now);

    block.header.fields.timestamp_ms = median;
    resign(&mut block, &key(2));
    assert_eq!(
        refused(&chain, block, now),
        BlockError::TimestampTooOld {
            median_ms: median,
            found_ms: median,
        }
    );
}

#[test]
fn timestamp_too_far_ahead_of_local_time_is_refused() {
    let chain = TestChain::regtest();
    let now = genesis_time(&chain) + 60_000;
    let limit = now + chain.params.max_future_drift_ms;
    let mut block = chain.mine_child(&chain.genesis, &key(1), now).block;
    block.header.fields.timestamp_ms = limit;
    resign(&mut block, &key(1));
    valid(&chain, block.clone(), now);

    block.header.fields.timestamp_ms = limit + 1;
    resign(&mut block, &key(1));
    assert_eq!(
        refused(&chain, block, now),
        BlockError::TimestampTooFarAhead {
            limit_ms: limit,
            found_ms: limit + 1,
        }
    );
}

#[test]
fn target_that_ignores_the_retarget_rule_is_refused() {
    let mut params = regtest_params();
    params.network = "regtest-retarget".into();
    params.retarget_window = 4;
    let mut chain = TestChain::new(params);
    // Blocks 1..=3 come far faster than target_block_ms (each at median + 1),
    // so the target of block 4 is clamped to a quarter of the old one.
    let now = genesis_time(&chain);
    for _ in 1..=3 {
        chain.extend(&key(1), now);
    }
    let tip = chain.tip;
    let ctx = chain.context(&tip);
    assert_eq!(ctx.child_height(), 4);
    let old = ctx.parent.target;
    assert_eq!(old, chain.params.initial_target);
    assert_eq!(ctx.required_target, from_u256(to_u256(&old) / 4));

    // A miner that keeps mining on the old, easier target.
    let stale = MineOptions {
        search_target: Some(old),
        header_target: Some(old),
        ..MineOptions::default()
    };
    let block = chain.mine_child_with(&tip, &key(1), now, &stale).block;
    assert_eq!(
        refused(&chain, block, now),
        BlockError::WrongTarget {
            expected: ctx.required_target,
            found: old,
        }
    );
    // The same parent takes a block on the new target.
    let honest = chain.mine_child(&tip, &key(1), now).block;
    assert_eq!(honest.header.fields.target, ctx.required_target);
    valid(&chain, honest, now);
}

/// Slow blocks ease the target by at most four times: blocks ten times
/// slower than `target_block_ms` give a target four times the old one,
/// and a block on the unclamped (ten times) target is refused.
#[test]
fn ten_times_slower_blocks_ease_the_target_only_four_times() {
    let mut params = regtest_params();
    params.network = "regtest-retarget".into();
    params.retarget_window = 4;
    let mut chain = TestChain::new(params);
    let slow = 10 * chain.params.target_block_ms;
    let start = genesis_time(&chain);
    for i in 1..=3 {
        chain.extend(&key(1), start + i * slow);
    }
    let now = start + 3 * slow;
    let tip = chain.tip;
    let ctx = chain.context(&tip);
    assert_eq!(ctx.child_height(), 4);
    let old = ctx.parent.target;
    assert_eq!(old, chain.params.initial_target);
    // Blocks 1..=3 span two intervals of ten times the target time.
    let eased = from_u256(to_u256(&old) * 4);
    assert_eq!(ctx.required_target, eased);

    let unclamped = from_u256(to_u256(&old) * 10);
    let greedy = MineOptions {
        search_target: Some(unclamped),
        header_target: Some(unclamped),
        ..MineOptions::default()
    };
    let block = chain.mine_child_with(&tip, &key(1), now, &greedy).block;
    assert_eq!(
        refused(&chain, block, now),
        BlockError::WrongTarget {
            expected: eased,
            found: unclamped,
        }
    );
    let honest = chain.mine_child(&tip, &key(1), now).block;
    assert_eq!(honest.header.fields.target, eased);
    valid(&chain, honest, now);
}

/// A retarget window longer than the median-time span and the validation
/// window: the context reaches back to the first block of the period.
#[test]
fn a_long_retarget_window_is_measured_from_the_first_block_of_its_period() {
    let mut params = regtest_params();
    params.network = "regtest-long-retarget".into();
    params.retarget_window = 16;
    params.validation_window = 3;
    params.validation_threshold_ppm = 0;
    let mut chain = TestChain::new(params);
    let start = genesis_time(&chain);
    let spacing = 3 * chain.params.target_block_ms;
    for height in 1..=31 {
        chain.extend(&key(1), start + height * spacing);
    }
    let ctx = chain.context(&chain.tip);
    assert_eq!(ctx.child_height(), 32);
    let period = chain.ancestry.walk_back(&chain.tip, 16).expect("known tip");
    let (first, last) = (&period[15], &period[0]);
    assert_eq!((first.height, last.height), (16, 31));
    let expected = pouwd::consensus::target::retarget(
        &chain.params,
        &last.target,
        first.height,
        first.timestamp_ms,
        last.height,
        last.timestamp_ms,
    );
    assert_eq!(ctx.required_target, expected);
    // Blocks three times slower than the target time: the target eases.
    assert!(to_u256(&expected) > to_u256(&last.target));
}

#[test]
fn step_count_outside_the_bounds_is_refused() {
    let mut params = loose_params();
    params.task.max_steps_per_block = 64;
    let chain = TestChain::new(params);
    let now = genesis_time(&chain);
    let at_limit = Forgery {
        steps: 64,
        ..Forgery::default()
    };
    valid(
        &chain,
        chain
            .forge_child(&chain.genesis, &key(1), now, &at_limit)
            .block,
        now,
    );

    let over = Forgery {
        steps: 65,
        ..Forgery::default()
    };
    let block = chain.forge_child(&chain.genesis, &key(1), now, &over).block;
    assert_eq!(
        refused(&chain, block, now),
        BlockError::WrongStepCount {
            limit: 64,
            found: 65
        }
    );

    let mut block = chain
        .forge_child(&chain.genesis, &key(1), now, &at_limit)
        .block;
    block.header.fields.steps = 0;
    resign(&mut block, &key(1));
    assert_eq!(
        refused(&chain, block, now),
        BlockError::WrongStepCount {
            limit: 64,
            found: 0
        }
    );
}

#[test]
fn small_order_miner_key_is_refused() {
    let chain = TestChain::regtest();
    let now = genesis_time(&chain);
    let mut block = chain.mine_child(&chain.genesis, &key(1), now).block;
    // The identity point: a valid encoding of a point of small order.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    block.header.fields.miner = Hash32(identity);
    resign(&mut block, &key(1));
    assert_eq!(
        refused(&chain, block, now),
        BlockError::BadMinerKey {
            key: Hash32(identity)
        }
    );
}

#[test]
fn non_canonical_miner_key_is_refused() {
    let chain = TestChain::regtest();
    let now = genesis_time(&chain);
    let mut block = chain.mine_child(&chain.genesis, &key(1), now).block;
    // y = p + δ (p = 2^255 − 19) encodes the same point as y = δ; find a
    // δ whose point exists and is not of small order.
    let non_canonical = (2u8..=18)
        .flat_map(|delta| [false, true].map(|sign| (delta, sign)))
        .map(|(delta, sign)| {
            let mut bytes = [0xffu8; 32];
            bytes[0] = 0xed + delta;
            bytes[31] = if sign { 0xff } else { 0x7f };
            bytes
        })
        .find(|bytes| ed25519_dalek::VerifyingKey::from_bytes(bytes).is_ok_and(|k| !k.is_weak()))
        .expect("some y ≥ p decodes to a point of large order");
    block.header.fields.miner = Hash32(non_canonical);
    resign(&mut block, &key(1));
    assert_eq!(
        refused(&chain, block, now),
        BlockError::BadMinerKey {
            key: Hash32(non_canonical)
        }
    );
}

#[test]
fn bad_signature_is_refused() {
    let chain = TestChain::regtest();
    let now = genesis_time(&chain);
    let mined = chain.mine_child(&chain.genesis, &key(1), now);
    valid(&chain, mined.block.clone(), now);

    // Signed by another key than the header's miner.
    let mut other_key = mined.block.clone();
    other_key.header.signature = sign(other_key.header.fields.clone(), &key(2)).signature;
    assert_eq!(refused(&chain, other_key, now), BlockError::BadSignature);

    // Signed by the miner, but over other fields.
    let mut other_fields = mined.block.clone();
    let mut fields = other_fields.header.fields.clone();
    fields.timestamp_ms += 1;
    other_fields.header.signature = sign(fields, &key(1)).signature;
    assert_eq!(refused(&chain, other_fields, now), BlockError::BadSignature);

    // A flipped bit in the scalar half.
    let mut flipped = mined.block;
    flipped.header.signature[40] ^= 1;
    assert_eq!(refused(&chain, flipped, now), BlockError::BadSignature);
}

#[test]
fn work_above_target_is_refused() {
    let chain = TestChain::regtest();
    let now = genesis_time(&chain);
    let required = chain.context(&chain.genesis).required_target;
    // An honest run that stops at its first step, whatever its ticket, and
    // whose ticket does not meet the target.
    let loses = |s: &miner::Solution| to_u256(&s.work_hash) > to_u256(&required);
    let options = MineOptions {
        search_target: Some(max_target()),
        accept_solution: Some(&loses),
        ..MineOptions::default()
    };
    let mined = chain.mine_child_with(&chain.genesis, &key(1), now, &options);
    assert_eq!(mined.solution.steps, 1);
    assert_eq!(mined.block.header.fields.target, required);
    // The training itself is valid: under a target its ticket meets, the
    // same run is accepted.
    let mut loose_ctx = mined.ctx.clone();
    loose_ctx.required_target = max_target();
    let mut loose = mined.block.clone();
    loose.header.fields.target = max_target();
    resign(&mut loose, &key(1));
    let job = chain.job(&loose_ctx);
    validate_block(
        &chain.params,
        &loose_ctx,
        &chain.training(&job, chain.model(&chain.genesis)),
        loose,
        now,
        &|_| None,
    )
    .expect("the run is valid under a target it meets");
    assert_eq!(
        refused(&chain, mined.block, now),
        BlockError::WorkAboveTarget {
            work_hash: mined.solution.work_hash,
            target: required,
        }
    );
}

/// The target is inclusive: a work hash equal to it wins, one above it
/// does not. The ticket does not cover the target, so one run is tried
/// under a target of exactly its work hash and of one less.
#[test]
fn work_hash_equal_to_the_target_is_accepted_and_one_above_is_refused() {
    let chain = TestChain::new(loose_params());
    let now = genesis_time(&chain);
    let mined = chain.mine_child(&chain.genesis, &key(1), now);
    let work_hash = mined.solution.work_hash;
    let under = |target: Hash32| {
        let mut ctx = mined.ctx.clone();
        ctx.required_target = target;
        let mut block = mined.block.clone();
        block.header.fields.target = target;
        resign(&mut block, &key(1));
        let job = chain.job(&ctx);
        validate_block(
            &chain.params,
            &ctx,
            &chain.training(&job, chain.model(&chain.genesis)),
            block,
            now,
            &|_| None,
        )
    };
    let checked = under(work_hash).expect("a work hash equal to the target wins");
    assert_eq!(checked.work_hash(), work_hash);
    // The header check alone derives the same work hash.
    let job = chain.job(&mined.ctx);
    let header = check_header(
        &chain.params,
        &mined.ctx,
        &chain.training(&job, chain.model(&chain.genesis)),
        &mined.block.header,
        now,
        &|_| None,
    )
    .expect("the header is valid");
    assert_eq!(header.work_hash(), work_hash);
    let below = from_u256(to_u256(&work_hash) - 1);
    assert_eq!(
        under(below).expect_err("one above the target loses"),
        BlockError::WorkAboveTarget {
            work_hash,
            target: below,
        }
    );
}

#[test]
fn duplicate_work_hash_is_refused() {
    let mut chain = TestChain::regtest();
    let now = genesis_time(&chain);
    let first = chain.mine_child(&chain.genesis, &key(1), now).block;
    let first = valid(&chain, first, now);
    chain.accept(&first);

    // The same work, re-signed with another timestamp: another block id.
    let mut again = first.block().clone();
    again.header.fields.timestamp_ms += 1;
    resign(&mut again, &key(1));
    assert_ne!(again.id(), first.id());
    chain
        .validate_with_owner(again.clone(), now, &|_| None)
        .expect("valid on its own");
    assert_eq!(
        refused(&chain, again, now),
        BlockError::DuplicateWork {
            work_hash: first.work_hash(),
            existing: first.id(),
        }
    );
}

// --------------------------------------------------------------- body rules

#[test]
fn body_hash_mismatch_is_refused() {
    let chain = TestChain::regtest();
    let now = genesis_time(&chain);
    let mut block = chain.mine_child(&chain.genesis, &key(1), now).block;
    let committed = block.header.fields.body_hash;
    block.body.params[0] += 1.0;
    assert_eq!(
        refused(&chain, block.clone(), now),
        BlockError::BodyHashMismatch {
            expected: committed,
            found: block.body.hash(),
        }
    );
}

#[test]
fn wrong_parameter_count_is_refused() {
    let chain = TestChain::regtest();
    let now = genesis_time(&chain);
    let mut block = chain.mine_child(&chain.genesis, &key(1), now).block;
    block.body.params.push(0.0);
    recommit_body(&mut block, &key(1));
    let dim = chain.task.dim();
    assert_eq!(
        refused(&chain, block, now),
        BlockError::WrongParamCount {
            what: "final parameters".into(),
            expected: dim,
            found: dim + 1,
        }
    );
}

#[test]
fn non_finite_parameters_are_refused() {
    let chain = TestChain::new(loose_params());
    let now = genesis_time(&chain);
    let c = chain.task.checkpoint_interval;
    // A run whose final model holds a NaN, committed to consistently.
    let nan_at_two = |params: &mut [f64]| params[2] = f64::NAN;
    let forgery = Forgery {
        steps: 3 * c + 4,
        tamper_final: Some(&nan_at_two),
        ..Forgery::default()
    };
    let mined = chain.forge_child(&chain.genesis, &key(1), now, &forgery);
    assert!(mined.block.body.params[2].is_nan());
    assert_eq!(
        refused(&chain, mined.block, now),
        BlockError::NonFiniteParams {
            what: "final parameters".into(),
            index: 2,
        }
    );

    // An infinity in an opened checkpoint.
    let honest = Forgery {
        steps: 3 * c + 4,
        ..Forgery::default()
    };
    let mut block = chain
        .forge_child(&chain.genesis, &key(1), now, &honest)
        .block;
    valid(&chain, block.clone(), now);
    let opening = &mut block.body.openings[0];
    let index = opening.index;
    opening.params[5] = f64::INFINITY;
    recommit_body(&mut block, &key(1));
    assert_eq!(
        refused(&chain, block, now),
        BlockError::NonFiniteParams {
            what: format!("checkpoint {index}"),
            index: 5,
        }
    );
}

#[test]
fn model_hash_mismatch_is_refused() {
    let chain = TestChain::regtest();
    let now = genesis_time(&chain);
    let mut block = chain.mine_child(&chain.genesis, &key(1), now).block;
    let committed = block.header.fields.model_hash;
    let p = &mut block.body.params[0];
    *p = f64::from_bits(p.to_bits() ^ 1);
    recommit_body(&mut block, &key(1));
    assert_eq!(
        refused(&chain, block.clone(), now),
        BlockError::ModelHashMismatch {
            expected: committed,
            found: pouwd::model::model_hash(&block.body.params),
        }
    );
}

#[test]
fn spot_check_challenges_depend_on_the_work_hash() {
    // The derivation matches PROTOCOL §6 and moves with every work hash.
    let mut sets = HashSet::new();
    for n in 0u32..64 {
        let work_hash = pouwd::chain::tagged_sha256(b"test/work", &[&n.to_le_bytes()]);
        let challenged = work::challenged_segments(&work_hash, 1000, 3);
        assert_eq!(challenged, reference_challenges(&work_hash, 1000, 3));
        sets.insert(challenged);
    }
    assert!(
        sets.len() >= 60,
        "only {} distinct challenge sets",
        sets.len()
    );

    // A block must open exactly what its own work hash challenges: a body
    // prepared for another work hash (a miner choosing its spot checks) is
    // refused.
    let chain = TestChain::regtest();
    let now = genesis_time(&chain);
    let c = chain.task.checkpoint_interval;
    let options = MineOptions {
        accept_solution: Some(&|s| s.steps / c >= 8),
        ..MineOptions::default()
    };
    let mined = chain.mine_child_with(&chain.genesis, &key(1), now, &options);
    let segments = mined.solution.steps / c;
    let own = work::required_openings(mined.solution.steps, c, 2, &mined.solution.work_hash);
    let opened: Vec<u64> = mined.block.body.openings.iter().map(|o| o.index).collect();
    assert_eq!(opened, own);
    let challenged = reference_challenges(&mined.solution.work_hash, segments, 2);
    for s in &challenged {
        assert!(opened.contains(s) && (*s == 1 || opened.contains(&(s - 1))));
    }
    assert!(
        opened.contains(&segments),
        "the tail's checkpoint is opened"
    );
    valid(&chain, mined.block.clone(), now);

    let chosen = (0..32usize)
        .map(|byte| {
            let mut other = mined.solution.clone();
            other.work_hash.0[byte] ^= 0x80;
            other
        })
        .find(|other| miner::build_body(&chain.task, other).openings != mined.block.body.openings)
        .expect("some other work hash challenges other segments");
    let mut block = mined.block.clone();
    block.body = miner::build_body(&chain.task, &chosen);
    let found: Vec<u64> = block.body.openings.iter().map(|o| o.index).collect();
    recommit_body(&mut block, &key(1));
    assert_eq!(
        refused(&chain, block, now),
        BlockError::WrongOpenings {
            expected: own,
            found,
        }
    );
}

/// Every challenged checkpoint must be in `ckpt_root`: each opening's
/// proof is tampered in turn, and each is refused naming that checkpoint.
#[test]
fn bad_merkle_proof_is_refused() {
    let chain = TestChain::regtest();
    let now = genesis_time(&chain);
    let c = chain.task.checkpoint_interval;
    let options = MineOptions {
        accept_solution: Some(&|s| s.steps / c >= 4),
        ..MineOptions::default()
    };
    let honest = chain
        .mine_child_with(&chain.genesis, &key(1), now, &options)
        .block;
    valid(&chain, honest.clone(), now);
    let openings = honest.body.openings.len();
    assert!(openings >= 2, "{openings} openings");
    for at in 0..openings {
        for hash in 0..honest.body.openings[at].proof.len() {
            let mut block = honest.clone();
            let opening = &mut block.body.openings[at];
            let index = opening.index;
            opening.proof[hash].0[7] ^= 0x10;
            recommit_body(&mut block, &key(1));
            assert_eq!(
                refused(&chain, block, now),
                BlockError::BadMerkleProof { index },
                "opening {at}, proof hash {hash}"
            );
        }
        // A proof one hash short of the tree's height.
        let mut block = honest.clone();
        let opening = &mut block.body.openings[at];
        let index = opening.index;
        assert!(opening.proof.pop().is_some(), "opening {at} has a proof");
        recommit_body(&mut block, &key(1));
        assert_eq!(
            refused(&chain, block, now),
            BlockError::BadMerkleProof { index },
            "opening {at} with a short proof"
        );
    }
}

#[test]
fn faked_segment_fails_re_execution() {
    let chain = TestChain::new(loose_params());
    let now = genesis_time(&chain);
    let c = chain.task.checkpoint_interval;
    let steps = 6 * c + 5;
    let honest = chain.forge_child(
        &chain.genesis,
        &key(1),
        now,
        &Forgery {
            steps,
            ..Forgery::default()
        },
    );
    valid(&chain, honest.block, now);

    // Segment 3 is claimed without being trained; everything after it is
    // honest training from that claim, and every commitment is consistent.
    // Find a run (lane) whose work hash challenges segment 3.
    let faked = [3];
    let mined = (0..200)
        .map(|lane| {
            let forgery = Forgery {
                lane,
                steps,
                faked_segments: &faked,
                tamper_final: None,
                tamper_checkpoint: None,
            };
            chain.forge_child(&chain.genesis, &key(1), now, &forgery)
        })
        .find(|m| reference_challenges(&m.solution.work_hash, 6, 2).contains(&3))
        .expect("some lane challenges segment 3");
    assert_eq!(mined.solution.checkpoints[2], mined.solution.checkpoints[1]);
    assert_eq!(
        refused(&chain, mined.block, now),
        BlockError::SegmentMismatch {
            segment: 3,
            from: 2,
            first: 2 * c + 1,
            last: 3 * c,
        }
    );
}

#[test]
fn faking_a_fraction_of_segments_is_caught_when_a_faked_segment_is_challenged() {
    let chain = TestChain::new(loose_params());
    let now = genesis_time(&chain);
    let c = chain.task.checkpoint_interval;
    let segments = 8;
    let steps = segments * c + 3;
    let faked = [2, 5]; // a quarter of the segments
    let (mut caught, mut missed) = (0, 0);
    for lane in 0..64 {
        let forgery = Forgery {
            lane,
            steps,
            faked_segments: &faked,
            tamper_final: None,
            tamper_checkpoint: None,
        };
        let mined = chain.forge_child(&chain.genesis, &key(3), now, &forgery);
        let challenged = reference_challenges(&mined.solution.work_hash, segments, 2);
        let result = chain.validate(mined.block, now);
        match challenged.iter().find(|s| faked.contains(s)) {
            Some(&segment) => {
                caught += 1;
                assert_eq!(
                    result.expect_err("a challenged fake is caught"),
                    BlockError::SegmentMismatch {
                        segment,
                        from: segment - 1,
                        first: (segment - 1) * c + 1,
                        last: segment * c,
                    },
                    "lane {lane}, challenged {challenged:?}"
                );
            }
            None => {
                missed += 1;
                result.expect("spot checks that miss every fake pass");
            }
        }
    }
    // Survival is (1 - 1/4)^2 ≈ 56% per block: both outcomes occur.
    assert!(
        caught >= 10 && missed >= 10,
        "caught {caught}, missed {missed}"
    );
}

#[test]
fn wrong_tail_is_refused() {
    let chain = TestChain::new(loose_params());
    let now = genesis_time(&chain);
    let c = chain.task.checkpoint_interval;
    // Every segment is honest; the final model is one ulp off what the
    // tail's steps give, and the header commits to it consistently.
    let one_ulp = |params: &mut [f64]| params[0] = f64::from_bits(params[0].to_bits() + 1);
    let forgery = Forgery {
        steps: 4 * c + 7,
        tamper_final: Some(&one_ulp),
        ..Forgery::default()
    };
    let mined = chain.forge_child(&chain.genesis, &key(1), now, &forgery);
    assert_eq!(
        refused(&chain, mined.block, now),
        BlockError::TailMismatch {
            from: 4,
            first: 4 * c + 1,
            last: 4 * c + 7,
        }
    );
}

#[test]
fn score_mismatch_is_refused() {
    let chain = TestChain::regtest();
    let now = genesis_time(&chain);
    let mut block = chain.mine_child(&chain.genesis, &key(1), now).block;
    let score = block.header.fields.score_ppm;
    valid(&chain, block.clone(), now);
    block.header.fields.score_ppm = score + 1;
    resign(&mut block, &key(1));
    assert_eq!(
        refused(&chain, block, now),
        BlockError::ScoreMismatch {
            expected: score,
            found: score + 1,
        }
    );
}

#[test]
fn score_under_the_quality_gate_is_refused() {
    // The gate asks each block to match the best of its window (the parent).
    let mut params = loose_params();
    params.validation_threshold_ppm = 1_000_000;
    params.validation_window = 1;
    params.task.max_steps_per_block = 2_000;
    let mut chain = TestChain::new(params);
    let now = genesis_time(&chain);
    // A well-trained parent.
    let trained = Forgery {
        steps: 300,
        ..Forgery::default()
    };
    let first = chain
        .forge_child(&chain.genesis, &key(1), now, &trained)
        .block;
    let first = valid(&chain, first, now);
    chain.accept(&first);
    let best = first.block().header.fields.score_ppm;
    assert!(best > 0);

    // An honest miner that ignores the gate: its block's model scores under
    // the parent's score on the task's validation set.
    let below = |score: u32| score < best;
    let options = MineOptions {
        accept_score: Some(&below),
        ..MineOptions::default()
    };
    let mined = chain.mine_child_with(&first.id(), &key(2), now, &options);
    let score = mined.solution.score_ppm;
    assert!(score < best);
    assert_eq!(
        refused(&chain, mined.block, now),
        BlockError::ScoreBelowGate {
            score,
            threshold_ppm: 1_000_000,
            gate_score: best,
        }
    );
}

/// The gate reads the score of the model the block starts from, its
/// parent's: a block must match it at a threshold of 1, whatever the
/// blocks before the parent scored.
#[test]
fn the_gate_reads_the_score_of_the_start_model() {
    // The ancestors are mined without a gate; the child is judged with one.
    let mut params = loose_params();
    params.validation_threshold_ppm = 0;
    params.validation_window = 3;
    let mut chain = TestChain::new(params);
    let now = genesis_time(&chain);
    for _ in 0..4 {
        chain.extend(&key(1), now);
    }
    let tip = chain.tip;
    let ancestors = chain.ancestry.walk_back(&tip, 4).expect("known tip");
    let heights: Vec<u64> = ancestors.iter().map(|a| a.height).collect();
    assert_eq!(heights, [4, 3, 2, 1]);
    let trained = Forgery {
        steps: 300,
        ..Forgery::default()
    };
    let child = chain.forge_child(&tip, &key(2), now, &trained);
    let score = child.solution.score_ppm;
    assert!(score > 0, "a trained model scores");

    let mut gated = chain.params.clone();
    gated.validation_threshold_ppm = 1_000_000;
    // Give the ancestors (newest first) chosen scores; their hashes, and so
    // the child's run and score, stay as they are.
    let with_scores = |scores: [u32; 4]| {
        let mut ancestry = chain.ancestry.clone();
        for (ancestor, score) in ancestors.iter().zip(scores) {
            let stored = chain.ancestry.get(&ancestor.hash).expect("known");
            let mut info = stored.info.clone();
            info.score_ppm = score;
            ancestry.insert(stored.parent, info, stored.model.clone());
        }
        let ctx = ParentContext::build(&gated, &ancestry, &tip).expect("known tip");
        let job = JobContext::build(&ancestry, &ctx.parent, &GENESIS_JOB).expect("known");
        validate_block(
            &gated,
            &ctx,
            &chain.training(&job, chain.model(&tip)),
            child.block.clone(),
            now,
            &|_| None,
        )
    };
    let below_gate = |gate_score| BlockError::ScoreBelowGate {
        score,
        threshold_ppm: 1_000_000,
        gate_score,
    };
    with_scores([score, 0, 0, 0]).expect("a score equal to the start model's passes");
    assert_eq!(
        with_scores([score + 1, 0, 0, 0]).expect_err("one under the start model's"),
        below_gate(score + 1)
    );
    // Better blocks before the parent do not raise the bar.
    with_scores([score, 1_000_000, 1_000_000, 1_000_000]).expect("earlier blocks do not count");
}

// ------------------------------------------------------------------ decoding

#[test]
fn non_canonical_encoding_is_refused() {
    let chain = TestChain::regtest();
    let block = chain
        .mine_child(&chain.genesis, &key(1), genesis_time(&chain))
        .block;
    let bytes = block.to_bytes();
    assert_eq!(
        Block::from_bytes(&bytes, &chain.limits()),
        Ok(block.clone())
    );
    // The header version, 2, as an over-long two-byte varint.
    assert_eq!(bytes[0], 0x02);
    let mut long = vec![0x82, 0x00];
    long.extend_from_slice(&bytes[1..]);
    assert_eq!(
        Block::from_bytes(&long, &chain.limits()),
        Err(DecodeError::NonCanonical { what: "block" })
    );
    let header = encoding::encode(&block.header);
    let mut long_header = vec![0x82, 0x00];
    long_header.extend_from_slice(&header[1..]);
    assert_eq!(
        encoding::decode_header(&long_header, &chain.limits()),
        Err(DecodeError::NonCanonical { what: "header" })
    );
}

#[test]
fn truncated_encoding_is_malformed() {
    let chain = TestChain::regtest();
    let block = chain
        .mine_child(&chain.genesis, &key(1), genesis_time(&chain))
        .block;
    let bytes = block.to_bytes();
    let err = Block::from_bytes(&bytes[..bytes.len() - 1], &chain.limits())
        .expect_err("a truncated block does not decode");
    assert!(
        matches!(err, DecodeError::Malformed { what: "block", .. }),
        "{err:?}"
    );
}

#[test]
fn trailing_bytes_are_refused() {
    let chain = TestChain::regtest();
    let block = chain
        .mine_child(&chain.genesis, &key(1), genesis_time(&chain))
        .block;
    let mut bytes = block.to_bytes();
    bytes.push(0);
    assert_eq!(
        Block::from_bytes(&bytes, &chain.limits()),
        Err(DecodeError::TrailingBytes {
            what: "block",
            count: 1
        })
    );
}

#[test]
fn oversized_body_is_refused() {
    let chain = TestChain::regtest();
    let limits = chain.limits();
    let mut block = chain
        .mine_child(&chain.genesis, &key(1), genesis_time(&chain))
        .block;
    let header_len = encoding::encode(&block.header).len();
    // A body a few bytes over its limit, in a block under the block limit.
    block.body.openings.clear();
    block.body.params = vec![0.5; limits.max_body_bytes / 8 + 1];
    let body_len = encoding::encode(&block.body).len();
    assert!(body_len > limits.max_body_bytes);
    assert!(header_len + body_len <= limits.max_block_bytes());
    assert_eq!(
        Block::from_bytes(&block.to_bytes(), &limits),
        Err(DecodeError::TooLarge {
            what: "body",
            found: body_len,
            limit: limits.max_body_bytes,
        })
    );
    // Past the block limit, the length alone refuses it, before decoding.
    let too_long = vec![0u8; limits.max_block_bytes() + 1];
    assert_eq!(
        Block::from_bytes(&too_long, &limits),
        Err(DecodeError::TooLarge {
            what: "block",
            found: limits.max_block_bytes() + 1,
            limit: limits.max_block_bytes(),
        })
    );
}

/// The header and body bounds, each at the block's own sizes and one
/// byte under them, with the block bound unchanged.
#[test]
fn header_and_body_bounds_hold_at_the_limit_and_one_past_it() {
    let chain = TestChain::regtest();
    let block = chain
        .mine_child(&chain.genesis, &key(1), genesis_time(&chain))
        .block;
    let bytes = block.to_bytes();
    let header_len = encoding::encode(&block.header).len();
    let body_len = bytes.len() - header_len;
    let with = |max_header_bytes, max_body_bytes| pouwd::chain::Limits {
        max_header_bytes,
        max_body_bytes,
        ..chain.limits()
    };
    assert_eq!(
        Block::from_bytes(&bytes, &with(header_len, body_len)),
        Ok(block.clone())
    );
    assert_eq!(
        Block::from_bytes(&bytes, &with(header_len - 1, body_len + 1)),
        Err(DecodeError::TooLarge {
            what: "header",
            found: header_len,
            limit: header_len - 1,
        })
    );
    assert_eq!(
        Block::from_bytes(&bytes, &with(header_len + 1, body_len - 1)),
        Err(DecodeError::TooLarge {
            what: "body",
            found: body_len,
            limit: body_len - 1,
        })
    );
}

#[test]
fn too_many_items_are_refused() {
    let chain = TestChain::regtest();
    let limits = chain.limits();
    let block = chain
        .mine_child(&chain.genesis, &key(1), genesis_time(&chain))
        .block;
    let dim = chain.task.dim();
    assert_eq!(limits.max_params, dim);

    let mut extra_param = block.clone();
    extra_param.body.params.push(0.0);
    assert_eq!(
        Block::from_bytes(&extra_param.to_bytes(), &limits),
        Err(DecodeError::TooMany {
            what: "body",
            item: "parameters",
            found: dim + 1,
            limit: dim,
        })
    );

    let mut extra_openings = block;
    let opening = CheckpointOpening {
        index: 1,
        params: vec![0.0; dim],
        proof: Vec::new(),
    };
    extra_openings.body.openings = vec![opening.clone(); limits.max_openings + 1];
    assert_eq!(
        Block::from_bytes(&extra_openings.to_bytes(), &limits),
        Err(DecodeError::TooMany {
            what: "body",
            item: "openings",
            found: limits.max_openings + 1,
            limit: limits.max_openings,
        })
    );
    // At each bound the block decodes (validation is another matter).
    extra_openings.body.openings.pop();
    assert!(Block::from_bytes(&extra_openings.to_bytes(), &limits).is_ok());

    let mut one = extra_openings.clone();
    one.body.openings = vec![CheckpointOpening {
        proof: vec![Hash32([3; 32]); limits.max_proof_len],
        ..opening.clone()
    }];
    assert!(Block::from_bytes(&one.to_bytes(), &limits).is_ok());
    one.body.openings[0].proof.push(Hash32([3; 32]));
    assert_eq!(
        Block::from_bytes(&one.to_bytes(), &limits),
        Err(DecodeError::TooMany {
            what: "body",
            item: "proof hashes",
            found: limits.max_proof_len + 1,
            limit: limits.max_proof_len,
        })
    );
    one.body.openings = vec![CheckpointOpening {
        params: vec![0.0; dim + 1],
        ..opening
    }];
    assert_eq!(
        Block::from_bytes(&one.to_bytes(), &limits),
        Err(DecodeError::TooMany {
            what: "body",
            item: "opening parameters",
            found: dim + 1,
            limit: dim,
        })
    );
}
