//! Training jobs on a real store, in one process (schema/jobs.md): a
//! block includes jobs, the next blocks train them in queue order on their
//! own tasks (linear and mlp), each ends, pays and refunds, the genesis
//! task resumes where it stopped, a block that trains the wrong job is
//! refused, a job whose learning rate is far too large ends by patience,
//! and a fresh node that imports the chain agrees on every job.

use ed25519_dalek::SigningKey;
use pouwd::chain::{Block, Hash32};
use pouwd::consensus::params::ChainParams;
use pouwd::consensus::{BlockError, JobContext};
use pouwd::ledger::{JobState, JobStatus, LedgerError, GENESIS_JOB};
use pouwd::model::onnx::OrtSetup;
use pouwd::node::chain::{Chain, SubmitError, TaskFiles};
use pouwd::node::miner::Work;
use pouwd::store::{Store, Stored};
use pouwd::tx::{Head, JobLimits, JobSpec, Tx, TxFields, TxKind, TX_VERSION};
use pouwd::work::miner::Mined;

const DIABETES: &[u8] = include_bytes!("../data/diabetes.csv");

fn params() -> ChainParams {
    ChainParams::from_json(include_str!("../config/regtest.json")).unwrap()
}

fn new_chain(dir: &std::path::Path) -> Chain {
    let params = params();
    let store = Store::create(&dir.join("store"), &params).unwrap();
    Chain::new(
        store,
        &TaskFiles::dataset_only(DIABETES),
        &OrtSetup::default(),
    )
    .unwrap()
}

fn id_of(key: &SigningKey) -> Hash32 {
    Hash32(key.verifying_key().to_bytes())
}

/// A block on the tip as an honest miner makes it, with `txs`.
fn mine_on_tip(chain: &Chain, key: &SigningKey, txs: Vec<Tx>) -> Block {
    let tip = chain.store.tip().unwrap().hash;
    let work = Work::on_tip(chain, &tip).unwrap();
    mine_work(chain, &work, key, txs)
}

fn mine_work(chain: &Chain, work: &Work, key: &SigningKey, txs: Vec<Tx>) -> Block {
    for lane in 0..64 {
        if let Mined::Found(solution) = work.mine(chain, id_of(key), lane, |_| true) {
            let now = chain.params().genesis_time_ms + 1000 * work.ctx.child_height();
            return work.seal(&solution, key, now, txs);
        }
    }
    panic!("no lane found a block");
}

fn submit(chain: &Chain, block: Block) -> Result<Stored, SubmitError> {
    chain.submit(block, u64::MAX / 2)
}

/// The first 200 rows of diabetes, so that the jobs differ from the
/// genesis task.
fn dataset() -> Vec<u8> {
    let text = std::str::from_utf8(DIABETES).unwrap();
    text.lines()
        .take(201)
        .flat_map(|l| format!("{l}\n").into_bytes())
        .collect()
}

fn job(head: Head, learning_rate: f64, max_blocks: u32, patience: u32, bounty: u64) -> JobSpec {
    JobSpec {
        name: "diabetes-200.csv".into(),
        dataset: dataset(),
        target: "progression".into(),
        features: None,
        encoder: None,
        head,
        batch_size: 16,
        learning_rate,
        lr_half_life_blocks: 10,
        holdout_every: 5,
        max_blocks,
        patience,
        min_improvement_ppm: 1000,
        bounty,
    }
}

fn signed(key: &SigningKey, genesis: Hash32, nonce: u64, spec: JobSpec) -> Tx {
    signed_under(&JobLimits::default(), key, genesis, nonce, spec)
}

/// A signed job that keeps every rule of its own under `limits`.
fn signed_under(
    limits: &JobLimits,
    key: &SigningKey,
    genesis: Hash32,
    nonce: u64,
    spec: JobSpec,
) -> Tx {
    let tx = TxFields {
        version: TX_VERSION,
        chain: genesis,
        from: id_of(key),
        nonce,
        fee: 10,
        kind: TxKind::SubmitJob(Box::new(spec)),
    }
    .sign(key);
    pouwd::tx::check_tx(tx.clone(), &genesis, limits).expect("a valid job");
    tx
}

fn state(chain: &Chain, job: &Hash32) -> JobState {
    chain.store.job(job).unwrap().expect("a known job")
}

fn header_of_tip(chain: &Chain) -> pouwd::chain::HeaderFields {
    let tip = chain.store.tip().unwrap().hash;
    chain.store.block(&tip).unwrap().unwrap().header.fields
}

#[test]
fn jobs_are_trained_in_queue_order_paid_refunded_and_imported_alike() {
    let dir = tempfile::tempdir().unwrap();
    let chain = new_chain(dir.path());
    let alice = SigningKey::from_bytes(&[11; 32]);
    let miner = SigningKey::from_bytes(&[12; 32]);
    let genesis = chain.store.genesis_hash();
    // Alice mines 11 blocks: block 1's reward matures at height 11.
    for _ in 0..11 {
        let block = mine_on_tip(&chain, &alice, Vec::new());
        assert_eq!(block.header.fields.job, GENESIS_JOB);
        submit(&chain, block).unwrap();
    }
    assert_eq!(header_of_tip(&chain).job_block, 10);
    // Three jobs in one block: pay per block 1000, 1000 (included later)
    // and 10.
    let linear = signed(&alice, genesis, 0, job(Head::Linear, 0.05, 4, 4, 4000));
    let mlp = signed(
        &alice,
        genesis,
        1,
        job(Head::Mlp { hidden: 8 }, 0.05, 3, 3, 3000),
    );
    let wild = signed(&alice, genesis, 2, job(Head::Linear, 1000.0, 40, 2, 400));
    let (linear_id, mlp_id, wild_id) = (linear.id(), mlp.id(), wild.id());
    let before = chain.store.account(&id_of(&alice)).unwrap();
    submit(&chain, mine_on_tip(&chain, &miner, vec![linear, mlp, wild])).unwrap();
    let after = chain.store.account(&id_of(&alice)).unwrap();
    // Block 2's reward (Alice's) matures in the same block.
    let reward = chain.params().reward_amount;
    assert_eq!(
        after.spendable,
        before.spendable + reward - (4000 + 3000 + 400 + 30)
    );
    assert_eq!(
        chain.store.job_queue().unwrap(),
        vec![linear_id, mlp_id, wild_id]
    );
    assert_eq!(chain.store.scheduled_job().unwrap(), linear_id);

    // A block that keeps training the genesis task is refused when it
    // connects: the ledger schedules the linear job.
    let tip = chain.store.tip().unwrap().hash;
    let ctx = chain.context(&tip).unwrap();
    let stale = Work {
        parent: tip,
        job: GENESIS_JOB,
        task: chain.task_for(&GENESIS_JOB, &tip).unwrap(),
        job_ctx: JobContext::build(&chain.store, &ctx.parent, &GENESIS_JOB).unwrap(),
        start_model: chain.model(&header_of_tip(&chain).parent).unwrap(),
        ctx,
    };
    let stale = Work {
        start_model: chain.start_model(&stale.job_ctx, &stale.task).unwrap(),
        ..stale
    };
    let refused = submit(&chain, mine_work(&chain, &stale, &miner, Vec::new()));
    assert!(
        matches!(
            &refused,
            Err(SubmitError::Invalid(BlockError::Ledger { error, .. }))
                if **error == LedgerError::WrongJob { expected: linear_id, found: GENESIS_JOB }
        ),
        "{refused:?}"
    );

    // The linear job: 4 blocks, numbered 0 to 3, each paying 1000.
    for n in 0..4 {
        let block = mine_on_tip(&chain, &miner, Vec::new());
        assert_eq!(
            (block.header.fields.job, block.header.fields.job_block),
            (linear_id, n)
        );
        assert_eq!(block.body.params.len(), 11);
        submit(&chain, block).unwrap();
    }
    let done = state(&chain, &linear_id);
    assert!(matches!(done.status, JobStatus::Ended { .. }), "{done:?}");
    assert_eq!((done.blocks, done.paid, done.refunded), (4, 4000, 0));
    let best = done.best.expect("a best block");
    assert!(best.score_ppm > 0, "the linear job learned: {best:?}");

    // The mlp job: 3 blocks of 8·10 + 2·8 + 1 = 97 parameters.
    for n in 0..3 {
        let block = mine_on_tip(&chain, &miner, Vec::new());
        assert_eq!(
            (block.header.fields.job, block.header.fields.job_block),
            (mlp_id, n)
        );
        assert_eq!(block.body.params.len(), 97);
        submit(&chain, block).unwrap();
    }
    assert!(state(&chain, &mlp_id).is_ended());

    // The job whose learning rate is far too large: its models stay finite
    // and score nothing, and it ends by patience (its first block sets the
    // mark, two more without a rise end it), with the rest refunded.
    let mut blocks = 0;
    while chain.store.scheduled_job().unwrap() == wild_id {
        let block = mine_on_tip(&chain, &miner, Vec::new());
        assert!(block.body.params.iter().all(|p| p.is_finite()));
        submit(&chain, block).unwrap();
        blocks += 1;
        assert!(blocks <= 40, "the job never ended");
    }
    let wild = state(&chain, &wild_id);
    assert_eq!(wild.blocks, 3, "{wild:?}");
    assert!(
        matches!(
            wild.status,
            JobStatus::Ended {
                reason: pouwd::ledger::jobs::EndReason::Patience,
                ..
            }
        ),
        "{wild:?}"
    );
    assert_eq!((wild.paid, wild.refunded), (30, 370));

    // The chain goes on with the genesis task: blocks 1 to 12 were its
    // blocks 0 to 11.
    let block = mine_on_tip(&chain, &miner, Vec::new());
    assert_eq!(
        (block.header.fields.job, block.header.fields.job_block),
        (GENESIS_JOB, 12)
    );
    submit(&chain, block).unwrap();

    // A fresh node imports the chain and agrees on every job.
    let (_, bytes) = pouwd::node::export::export_chain(&chain.store, Vec::new()).unwrap();
    let other_dir = tempfile::tempdir().unwrap();
    let other = new_chain(other_dir.path());
    let (report, error) =
        pouwd::node::import::import_chain(&other, &bytes[..], 2, u64::MAX / 2, |_, _| {});
    assert!(error.is_none(), "{error:?}");
    assert_eq!(report.stored, chain.store.tip().unwrap().height);
    assert_eq!(other.store.jobs().unwrap(), chain.store.jobs().unwrap());
    assert_eq!(
        other.store.balances().unwrap(),
        chain.store.balances().unwrap()
    );

    // And one that imports it in two batches, the first ending with the
    // block that queued the jobs: in the second, the job at the head of
    // the stored queue starts and ends, and the next one is found behind
    // it, in the same batch.
    let tip = chain.store.tip().unwrap().height;
    let blocks: Vec<Block> = (1..=tip)
        .map(|h| {
            let hash = chain.store.hash_at(h).unwrap().unwrap();
            chain.store.block(&hash).unwrap().unwrap()
        })
        .collect();
    assert_eq!(blocks[11].body.txs.len(), 3, "block 12 queued the jobs");
    let split_dir = tempfile::tempdir().unwrap();
    let split = new_chain(split_dir.path());
    for part in [&blocks[..12], &blocks[12..]] {
        let bytes = crate::reorg::stream(chain.params(), part);
        let (report, error) =
            pouwd::node::import::import_chain(&split, &bytes[..], 2, u64::MAX / 2, |_, _| {});
        assert!(error.is_none(), "{error:?}");
        assert_eq!(report.stored, part.len() as u64);
    }
    assert_eq!(split.store.jobs().unwrap(), chain.store.jobs().unwrap());
    assert_eq!(
        split.store.balances().unwrap(),
        chain.store.balances().unwrap()
    );
}

/// A job whose steps cost 50 times the genesis task's: its ticket target
/// is 50 times easier and its checkpoint interval 50 times shorter, so a
/// block takes the time of a genesis-task block and verification keeps
/// its share. Simulated on devnet's parameters with block times equal to
/// the expected steps of a block times the step's true time, which may be
/// off the cost formula by a factor of 2 either way: after one retarget
/// window the block time is within 2× of the target, and verification is
/// at most 0.1 % of the steps mined.
#[test]
fn a_job_with_50_times_dearer_steps_keeps_the_block_time_and_the_verification_share() {
    use pouwd::consensus::target::{retarget, retarget_first_height};
    use primitive_types::U256;
    let params = ChainParams::from_json(include_str!("../config/devnet.json")).unwrap();
    let csv = pouwd::dataset::CsvDataset::from_bytes("diabetes.csv", DIABETES).unwrap();
    let data = |holdout_every| {
        pouwd::dataset::Prepared::new(&csv, "progression", None, holdout_every, 64).unwrap()
    };
    let genesis_task = pouwd::work::Task::new(&params.task, data(5));
    // mlp:169 on 10 features: 2029 parameters, 2029·34 + 1024 = 70 010
    // work units a step, 50.1 times the genesis task's 1398.
    let mut spec = job(Head::Mlp { hidden: 169 }, 0.01, 1000, 100, 100_000);
    spec.batch_size = 32;
    let task = pouwd::work::Task::for_job(&spec, data(5), &params.task, genesis_task.cost);
    assert_eq!(genesis_task.cost, 1398);
    assert_eq!(task.cost, 70_010);
    let ratio = task.cost as f64 / genesis_task.cost as f64;
    assert!((50.0..50.2).contains(&ratio), "{ratio}");
    assert_eq!(task.checkpoint_interval, 1000 * 1398 / 70_010);
    // Verification: the challenged segments and the tail, against the
    // steps a block takes on average.
    let expected_steps = |target: &Hash32| {
        let ticket = task.ticket_target(target, genesis_task.cost);
        (U256::MAX / ticket).low_u64() as f64
    };
    let verified = f64::from(params.task.spot_checks + 1) * task.checkpoint_interval as f64;
    let share = verified / expected_steps(&params.initial_target);
    assert!(
        share <= 0.001,
        "verification is {:.4} % of mining",
        share * 100.0
    );
    // The genesis task mines 1 M steps/s on this simulated machine.
    let genesis_step_ms = 1e-3;
    for mismatch in [0.5, 1.0, 2.0] {
        let job_step_ms = genesis_step_ms * ratio * mismatch;
        let mut target = params.initial_target;
        let mut times = vec![params.genesis_time_ms];
        let mut block_ms = 0.0;
        for height in 1..=3 * params.retarget_window {
            if let Some(first) = retarget_first_height(&params, height) {
                let parent = height - 1;
                target = retarget(
                    &params,
                    &target,
                    first,
                    times[first as usize],
                    parent,
                    times[parent as usize],
                );
            }
            block_ms = expected_steps(&target) * job_step_ms;
            times.push(times.last().unwrap() + block_ms as u64);
        }
        let off = block_ms / params.target_block_ms as f64;
        assert!(
            (0.5..=2.0).contains(&off),
            "mismatch {mismatch}: blocks take {off:.2} times the target after the retarget"
        );
    }
}

/// A chain that allows jobs with an ONNX encoder (regtest's quick blocks).
fn encoder_chain(dir: &std::path::Path) -> Chain {
    let mut params = params();
    params.jobs.allow_encoder = true;
    let store = Store::create(&dir.join("store"), &params).unwrap();
    Chain::new(
        store,
        &TaskFiles::dataset_only(DIABETES),
        &OrtSetup::default(),
    )
    .expect("ONNX Runtime loads (ORT_DYLIB_PATH, tools/ort_lib.sh)")
}

/// A job for a chain that allows encoders; the encoder itself is checked
/// where it runs.
fn signed_allowing(key: &SigningKey, genesis: Hash32, nonce: u64, spec: JobSpec) -> Tx {
    let limits = JobLimits {
        allow_encoder: true,
        ..JobLimits::default()
    };
    signed_under(&limits, key, genesis, nonce, spec)
}

/// A job with the shipped transformer encoder (10 standardised features
/// in, 16 values out) trains a linear head of 17 parameters on the grid
/// of schema/jobs.md; a job whose encoder does not run on its data is
/// refused with its block; a fresh node imports the chain and agrees.
#[test]
fn a_job_with_an_onnx_encoder_trains_its_head_on_the_encoders_outputs() {
    use pouwd::node::datadir::TRANSFORMER_ENCODER_ONNX;
    let dir = tempfile::tempdir().unwrap();
    let chain = encoder_chain(dir.path());
    let alice = SigningKey::from_bytes(&[21; 32]);
    let miner = SigningKey::from_bytes(&[22; 32]);
    let genesis = chain.store.genesis_hash();
    for _ in 0..11 {
        submit(&chain, mine_on_tip(&chain, &alice, Vec::new())).unwrap();
    }

    // The encoder takes 10 features: a job on 2 columns cannot run it,
    // and bytes that are not ONNX cannot be loaded. Either block is
    // refused, naming the job.
    let mut narrow = job(Head::Linear, 0.05, 3, 3, 3000);
    narrow.features = Some(vec!["age".into(), "bmi".into()]);
    narrow.encoder = Some(TRANSFORMER_ENCODER_ONNX.to_vec());
    let mut garbage = job(Head::Linear, 0.05, 3, 3, 3000);
    garbage.encoder = Some(b"not an onnx file".to_vec());
    let mut bad_blocks = Vec::new();
    for (spec, says) in [(narrow, "feature columns"), (garbage, "encoder")] {
        let tx = signed_allowing(&alice, genesis, 0, spec);
        let id = tx.id();
        let block = mine_on_tip(&chain, &miner, vec![tx]);
        bad_blocks.push(block.clone());
        let refused = submit(&chain, block);
        match &refused {
            Err(SubmitError::Invalid(BlockError::UntrainableJob { reason })) => {
                assert!(reason.contains(&id.to_hex()), "{reason}");
                assert!(reason.contains(says), "{reason}");
            }
            other => panic!("not refused as untrainable: {other:?}"),
        }
    }
    assert_eq!(chain.store.tip().unwrap().height, 11);

    let mut spec = job(Head::Linear, 0.05, 3, 3, 3000);
    spec.encoder = Some(TRANSFORMER_ENCODER_ONNX.to_vec());
    let tx = signed_allowing(&alice, genesis, 0, spec);
    let id = tx.id();
    submit(&chain, mine_on_tip(&chain, &miner, vec![tx])).unwrap();
    assert_eq!(chain.store.scheduled_job().unwrap(), id);
    let grid = 2f64.powi(-(pouwd::tx::job::ENCODER_JOB_GRID_BITS as i32));
    for n in 0..3 {
        let block = mine_on_tip(&chain, &miner, Vec::new());
        assert_eq!(
            (block.header.fields.job, block.header.fields.job_block),
            (id, n)
        );
        // A linear head on the encoder's 16 outputs, every parameter on
        // the grid.
        assert_eq!(block.body.params.len(), 17);
        for p in &block.body.params {
            assert_eq!((p / grid).fract(), 0.0, "{p} is off the grid");
        }
        assert!(block.body.params.iter().any(|&p| p != 0.0));
        submit(&chain, block).unwrap();
    }
    let done = state(&chain, &id);
    assert!(matches!(done.status, JobStatus::Ended { .. }), "{done:?}");
    assert_eq!((done.blocks, done.paid), (3, 3000));
    assert!(done.best.expect("a best block").score_ppm > 0, "{done:?}");

    // A fresh node runs the encoder itself and agrees; an import that
    // meets a block with an untrainable job stops there, keeping the
    // blocks before it.
    let (_, bytes) = pouwd::node::export::export_chain(&chain.store, Vec::new()).unwrap();
    let other_dir = tempfile::tempdir().unwrap();
    let other = encoder_chain(other_dir.path());
    let mut first: Vec<Block> = (1..=11)
        .map(|h| {
            let hash = chain.store.hash_at(h).unwrap().unwrap();
            chain.store.block(&hash).unwrap().unwrap()
        })
        .collect();
    first.push(bad_blocks[0].clone());
    let (report, error) = pouwd::node::import::import_chain(
        &other,
        &crate::reorg::stream(chain.params(), &first)[..],
        2,
        u64::MAX / 2,
        |_, _| {},
    );
    assert_eq!(report.stored, 11);
    assert!(
        matches!(
            &error,
            Some(pouwd::node::import::ImportError::BadBlock {
                index: 12,
                reason: BlockError::UntrainableJob { .. },
                ..
            })
        ),
        "{error:?}"
    );
    let (report, error) =
        pouwd::node::import::import_chain(&other, &bytes[..], 2, u64::MAX / 2, |_, _| {});
    assert!(error.is_none(), "{error:?}");
    assert_eq!(report.stored, chain.store.tip().unwrap().height - 11);
    assert_eq!(other.store.tip().unwrap(), chain.store.tip().unwrap());
    assert_eq!(other.store.jobs().unwrap(), chain.store.jobs().unwrap());
}
