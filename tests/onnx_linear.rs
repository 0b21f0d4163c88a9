//! The `onnx_linear` rules (schema/consensus.md): checkpoints and final
//! parameters on the task's grid, re-execution compared within the
//! tolerance, the score within its own.
//!
//! These run without ONNX Runtime: the "encoder outputs" are a fixed
//! function of the standardised rows, and another machine's outputs are
//! the same plus noise of about 1e-6, somewhat more than ONNX Runtime
//! shows between batch sizes on one CPU (7.2e-7, examples/onnx_tolerance.rs).
//! tests/onnx.rs repeats the main case with the real encoder.

use crate::support::chain::{key, load_task, regtest_params, resign, Forgery, TestChain};
use pouwd::chain::{Block, Hash32};
use pouwd::consensus::params::{grid_step, ChainParams, ModelKind, OnnxLinearParams};
use pouwd::consensus::BlockError;
use pouwd::work::{Reexecution, Task};

const WIDTH: usize = 16;
const GRID_BITS: u32 = 12;
const TOLERANCE: f64 = 4e-6;
const SCORE_TOLERANCE_PPM: u32 = 20;

/// Regtest with an `onnx_linear` model of the shipped chain's grid.
fn params() -> ChainParams {
    let mut params = regtest_params();
    params.network = "regtest-onnx".into();
    params.task.model = ModelKind::OnnxLinear(OnnxLinearParams {
        file: "encoder.onnx".into(),
        blake3: Hash32([7; 32]),
        input: "features".into(),
        width: WIDTH as u32,
        encoder_batch: 64,
        param_grid_bits: GRID_BITS,
        param_tolerance: TOLERANCE,
        score_tolerance_ppm: SCORE_TOLERANCE_PPM,
    });
    params
}

/// The task with made-up encoder outputs; `noise` scales a fixed
/// pseudo-random perturbation of each output.
fn task(params: &ChainParams, noise: f64) -> Task {
    let raw = load_task(&regtest_params()).data;
    let d = raw.features();
    let rows = raw.rows_in_file_order_f32();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut jitter = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    };
    let encoded: Vec<f64> = rows
        .chunks_exact(d)
        .flat_map(|z| {
            let z: Vec<f64> = z.iter().map(|&v| f64::from(v)).collect();
            (0..WIDTH)
                .map(|k| z[k % d] * (0.5 + k as f64 / 32.0) + 0.1 * z[(k + 3) % d] * z[(k + 7) % d])
                .collect::<Vec<_>>()
        })
        .map(|e| e + noise * jitter())
        .collect();
    let names = (0..WIDTH).map(|k| format!("embedding[{k}]")).collect();
    let data = raw
        .with_features(names, &encoded)
        .expect("one output row per row");
    Task::new(&params.task, data)
}

fn now(chain: &TestChain) -> u64 {
    chain.params.genesis_time_ms
}

/// A chain mined on one machine's encoder outputs, block after block.
fn mined_chain(blocks: usize) -> (TestChain, Vec<Block>) {
    let params = params();
    let mut miner = TestChain::with_task(params.clone(), task(&params, 0.0));
    let time = now(&miner);
    let mut mined = Vec::new();
    for _ in 0..blocks {
        let block = miner.mine_child(&miner.tip, &key(1), time).block;
        let checked = miner
            .validate(block.clone(), time)
            .expect("valid to its miner");
        miner.accept(&checked);
        mined.push(block);
    }
    (miner, mined)
}

#[test]
fn blocks_mined_on_other_encoder_outputs_validate_within_the_tolerance() {
    let (_, blocks) = mined_chain(8);
    let params = params();
    let other = task(&params, 1e-6);
    let reference = task(&params, 0.0);
    let differs = reference
        .data
        .train_x
        .iter()
        .zip(&other.data.train_x)
        .any(|(a, b)| a != b);
    assert!(differs, "the two machines' outputs differ");
    let mut validator = TestChain::with_task(params.clone(), other);
    // The same machine-to-machine difference fails a bit-for-bit check.
    let mut exact = task(&params, 1e-6);
    exact.reexecution = Reexecution::Exact;
    let mut exact_validator = TestChain::with_task(params, exact);
    let time = now(&validator);
    let mut exact_refusals = 0;
    for block in blocks {
        if exact_validator.validate(block.clone(), time).is_err() {
            exact_refusals += 1;
        }
        let checked = validator
            .validate(block, time)
            .expect("valid on the other machine");
        validator.accept(&checked);
        exact_validator.accept(&checked);
    }
    assert!(exact_refusals > 0, "an exact comparison refuses some block");
}

#[test]
fn checkpoints_and_final_parameters_are_on_the_grid() {
    let (miner, blocks) = mined_chain(3);
    let step = grid_step(GRID_BITS);
    for block in &blocks {
        let all = std::iter::once(&block.body.params)
            .chain(block.body.openings.iter().map(|o| &o.params));
        for params in all {
            for p in params {
                assert_eq!((p / step).fract(), 0.0, "{p} is a multiple of {step}");
            }
        }
    }
    assert_ne!(miner.tip, miner.genesis);
}

#[test]
fn an_off_grid_parameter_is_refused() {
    let chain = TestChain::with_task(params(), task(&params(), 0.0));
    let time = now(&chain);
    let c = chain.task.checkpoint_interval;
    // Within the tolerance of the re-executed value, but off the grid.
    let nudge = |params: &mut [f64]| params[3] += grid_step(GRID_BITS + 8);
    let forgery = Forgery {
        steps: 3 * c + 5,
        tamper_final: Some(&nudge),
        ..Forgery::default()
    };
    let mut loose = chain.params.clone();
    loose.initial_target = crate::support::chain::max_target();
    let chain = TestChain::with_task(loose.clone(), task(&loose, 0.0));
    let mined = chain.forge_child(&chain.genesis, &key(2), time, &forgery);
    assert_eq!(
        chain.validate(mined.block, time).unwrap_err(),
        BlockError::OffGrid {
            what: "final parameters".into()
        }
    );
    let honest = Forgery {
        steps: 3 * c + 5,
        ..Forgery::default()
    };
    let mined = chain.forge_child(&chain.genesis, &key(2), time, &honest);
    chain
        .validate(mined.block, time)
        .expect("the honest run is valid");
}

#[test]
fn a_final_parameter_one_grid_step_off_is_refused() {
    let mut params = params();
    params.initial_target = crate::support::chain::max_target();
    let chain = TestChain::with_task(params.clone(), task(&params, 0.0));
    let time = now(&chain);
    let c = chain.task.checkpoint_interval;
    // On the grid, but the neighbour of the point the tail gives.
    let next_point = |params: &mut [f64]| params[0] += grid_step(GRID_BITS);
    let forgery = Forgery {
        steps: 2 * c + 9,
        tamper_final: Some(&next_point),
        ..Forgery::default()
    };
    let mined = chain.forge_child(&chain.genesis, &key(3), time, &forgery);
    assert_eq!(
        chain.validate(mined.block, time).unwrap_err(),
        BlockError::TailMismatch {
            from: 2,
            first: 2 * c + 1,
            last: 2 * c + 9,
        }
    );
}

#[test]
fn a_checkpoint_one_grid_step_off_fails_its_segment() {
    let mut params = params();
    params.initial_target = crate::support::chain::max_target();
    let chain = TestChain::with_task(params.clone(), task(&params, 0.0));
    let time = now(&chain);
    let c = chain.task.checkpoint_interval;
    let segments = 6;
    // C_3 is claimed one grid step off what its segment gives; training
    // goes on from the claim and every commitment is consistent. Find a
    // lane whose challenges include segment 3.
    let next_point = |params: &mut [f64]| params[1] += grid_step(GRID_BITS);
    let (mined, challenged) = (0..200)
        .map(|lane| {
            let forgery = Forgery {
                lane,
                steps: segments * c,
                tamper_checkpoint: Some((3, &next_point)),
                ..Forgery::default()
            };
            let mined = chain.forge_child(&chain.genesis, &key(4), time, &forgery);
            let challenged =
                pouwd::work::challenged_segments(&mined.solution.work_hash, segments, 2);
            (mined, challenged)
        })
        .find(|(_, challenged)| challenged.contains(&3))
        .expect("some lane challenges segment 3");
    assert!(
        !challenged.contains(&4),
        "lane chosen so that segment 3 is reported"
    );
    assert_eq!(
        chain.validate(mined.block, time).unwrap_err(),
        BlockError::SegmentMismatch {
            segment: 3,
            from: 2,
            first: 2 * c + 1,
            last: 3 * c,
        }
    );
}

#[test]
fn the_score_may_differ_by_the_tolerance_and_no_more() {
    let (miner, blocks) = mined_chain(1);
    let block = blocks[0].clone();
    let parent = block.header.fields.parent;
    let fresh = TestChain::with_task(miner.params.clone(), task(&miner.params, 0.0));
    let time = now(&fresh);
    let score = block.header.fields.score_ppm;
    assert!(score > SCORE_TOLERANCE_PPM, "a trained model scores");
    for (claimed, ok) in [
        (score + SCORE_TOLERANCE_PPM, true),
        (score - SCORE_TOLERANCE_PPM, true),
        (score + SCORE_TOLERANCE_PPM + 1, false),
        (score - SCORE_TOLERANCE_PPM - 1, false),
    ] {
        let mut tampered = block.clone();
        tampered.header.fields.score_ppm = claimed;
        resign(&mut tampered, &key(1));
        let result = fresh.validate(tampered, time);
        if ok {
            result.expect("within the score tolerance");
        } else {
            assert_eq!(
                result.unwrap_err(),
                BlockError::ScoreMismatch {
                    expected: score,
                    found: claimed,
                }
            );
        }
    }
    assert_eq!(parent, fresh.genesis);
}

#[test]
fn a_tolerance_of_half_a_grid_step_is_refused() {
    let mut params = params();
    let ModelKind::OnnxLinear(onnx) = &mut params.task.model else {
        unreachable!()
    };
    onnx.param_tolerance = grid_step(GRID_BITS) / 2.0;
    let err = params.check().unwrap_err();
    assert_eq!(err.name, "task.model.onnx_linear.param_tolerance");
}

/// The shipped devnet-onnx task with regtest's quick blocks, its encoder
/// run by ONNX Runtime in chunks of `encoder_batch` rows.
fn devnet_onnx_task(encoder_batch: u32) -> (ChainParams, Task) {
    use pouwd::model::onnx::{ExecutionProvider, OrtSetup, SessionConfig};
    use pouwd::node::chain::{prepare_task, TaskFiles};
    use pouwd::node::datadir::{DEVNET_ONNX_JSON, DIABETES_CSV, TRANSFORMER_ENCODER_ONNX};
    let mut params = ChainParams::from_json(DEVNET_ONNX_JSON).unwrap();
    let regtest = regtest_params();
    params.initial_target = regtest.initial_target;
    params.retarget_window = 0;
    params.task.checkpoint_interval = regtest.task.checkpoint_interval;
    params.task.spot_checks = regtest.task.spot_checks;
    let mut local = params.clone();
    let ModelKind::OnnxLinear(onnx) = &mut local.task.model else {
        unreachable!("devnet-onnx is an onnx_linear chain")
    };
    onnx.encoder_batch = encoder_batch;
    let files = TaskFiles {
        dataset: DIABETES_CSV.to_vec(),
        encoder: Some(TRANSFORMER_ENCODER_ONNX.to_vec()),
    };
    let ort = OrtSetup {
        library: None,
        session: SessionConfig {
            provider: ExecutionProvider::Cpu,
            intra_threads: 1,
        },
    };
    let (task, _) = prepare_task(&local, &files, &ort).expect("the encoder runs");
    (params, task)
}

/// ONNX Runtime gives slightly different outputs for other batch sizes:
/// a miner whose encoder ran one row at a time and a validator that ran
/// the chain's 64 rows at a time still agree on every block.
#[test]
fn blocks_mined_on_real_encoder_outputs_of_another_batch_size_validate() {
    let (params, one_by_one) = devnet_onnx_task(1);
    let (_, chunked) = devnet_onnx_task(64);
    let largest = one_by_one
        .data
        .train_x
        .iter()
        .zip(&chunked.data.train_x)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(
        largest > 0.0 && largest < 1e-5,
        "outputs differ a little: {largest:e}"
    );
    let mut miner = TestChain::with_task(params.clone(), one_by_one);
    let mut validator = TestChain::with_task(params, chunked);
    let time = now(&miner);
    for _ in 0..6 {
        let block = miner.mine_child(&miner.tip, &key(5), time).block;
        let checked = validator
            .validate(block, time)
            .expect("valid to a validator that batched otherwise");
        miner.accept(&checked);
        validator.accept(&checked);
    }
}

/// The mining loop of a gridded task, stopped at its first winning
/// ticket: any change to the rounding, to which model a ticket hashes or
/// to where training resumes after a checkpoint changes these values,
/// and is a consensus change.
#[test]
fn gridded_mining_matches_known_answer() {
    use pouwd::chain::tagged_sha256;
    use pouwd::model::{initial_params, model_hash};
    use pouwd::work::miner;
    let params = params();
    let task = task(&params, 0.0);
    let parent = tagged_sha256(b"test/parent", &[]);
    let zero = initial_params(task.data.features());
    let job = miner::Job {
        task: &task,
        parent,
        parent_model: &zero,
        miner: tagged_sha256(b"test/miner", &[]),
        lane: 7,
        target: primitive_types::U256::MAX / 100,
        job_block: 0,
        accept_score: &|_| true,
    };
    let miner::Mined::Found(solution) = miner::mine(&job, |_| true) else {
        panic!("an easy target is found");
    };
    let step = grid_step(GRID_BITS);
    assert!(solution.params.iter().all(|p| (p / step).fract() == 0.0));
    assert_eq!(model_hash(&solution.params), solution.model_hash);
    assert_eq!(
        (
            solution.steps,
            solution.score_ppm,
            solution.work_hash.to_hex(),
            solution.ckpt_root.to_hex(),
            solution.model_hash.to_hex(),
        ),
        (
            147,
            452_560,
            "013a1f396d4d1d3b7ed8a64a7fe5d47f2a7a57c86c7c44f9d87bff258a6857ab".to_string(),
            "40f0cc25af33ecd518cf71eaa6d5cc64973ebd4f35fac218b3e22e25cf41b835".to_string(),
            "3d3468058d734371889cf9e78a29cd7191b0df05509a5f2c433bf18138df79c9".to_string(),
        )
    );
    // 147 = 9 checkpoints of 16 steps and a tail of 3 steps, so both the
    // rounded checkpoints and the rounded copy of a later step count.
    assert_eq!(solution.checkpoints.len(), 9);
}
