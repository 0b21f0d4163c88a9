//! Benchmarks of the consensus core on the devnet task (config/devnet.json,
//! data/diabetes.csv): how fast a miner trains, and what verifying a block
//! costs against the mining it checks. Everything runs on one thread.
//!
//! ```text
//! cargo bench --bench consensus               # every benchmark below
//! cargo bench --bench consensus -- train      # per-step cost and its parts
//! cargo bench --bench consensus -- mine       # work::miner::mine, the real loop
//! cargo bench --bench consensus -- verify     # validating one devnet block
//! cargo bench --bench consensus -- ratio      # verification / mining, in one line
//! ```
//!
//! - `train/step`: [`Trainer::step`] alone (batch draw and SGD step).
//! - `train/miner_step`: what the miner does per step: the step,
//!   `model_hash`, a checkpoint every `checkpoint_interval` steps and the
//!   ticket `work_hash`. One iteration is one segment, so the checkpoint
//!   cost is included in its true proportion.
//! - `train/{batch_indices,sgd_step,model_hash,work_hash}`: the parts.
//! - `mine/steps`: [`miner::mine`] with a target of zero (it never wins),
//!   stopped through `keep_going` after 16 polls.
//! - `verify/{check_header,validate_block}`: a block mined
//!   with devnet's task and an easier target, so it has millions of steps.
//!   Verification re-executes `spot_checks × c` steps plus the tail, so its
//!   cost does not depend on the target; the body checks are the
//!   difference of the two.
//! - `ratio` (not a criterion benchmark): times `mine` and
//!   `validate_block` itself and prints `verification time / (expected
//!   steps per devnet block × time per mined step)`, where the expected
//!   steps are `2^256 / (initial_target + 1)`.
//!
//! Figures measured on the project's machine are in benches/RESULTS.md.

use criterion::{black_box, BatchSize, Criterion, Throughput};
use ed25519_dalek::SigningKey;
use pouwd::chain::{tagged_sha256, Block, Hash32};
use pouwd::consensus::params::ChainParams;
use pouwd::consensus::{self, target, AncestorInfo, ParentContext};
use pouwd::consensus::{JobContext, Training};
use pouwd::dataset::{CsvDataset, Prepared, DEFAULT_MAX_CATEGORIES};
use pouwd::ledger::GENESIS_JOB;
use pouwd::model::{initial_params, linear, model_hash};
use pouwd::work::{merkle, miner, Run, Task, Trainer};
use primitive_types::U256;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

struct Devnet {
    params: ChainParams,
    task: Task,
}

static DEVNET: LazyLock<Devnet> = LazyLock::new(|| {
    let params = ChainParams::from_json(include_str!("../config/devnet.json"))
        .expect("config/devnet.json parses");
    let csv = CsvDataset::from_bytes("diabetes.csv", include_bytes!("../data/diabetes.csv"))
        .expect("data/diabetes.csv parses");
    let spec = &params.task;
    let data = Prepared::new(
        &csv,
        &spec.dataset.target,
        spec.dataset.features.as_deref(),
        spec.holdout_every,
        DEFAULT_MAX_CATEGORIES,
    )
    .expect("the devnet dataset prepares");
    let task = Task::new(spec, data);
    Devnet { params, task }
});

fn bench_run() -> Run {
    let parent = tagged_sha256(b"bench/parent", &[]);
    let miner = tagged_sha256(b"bench/miner", &[]);
    Run::new(&parent, &miner, 0)
}

/// Parameters part-way through training, so the numbers are not all zero.
fn warm_params(task: &Task) -> Vec<f64> {
    let mut params = initial_params(task.data.features());
    Trainer::new(task, bench_run(), 0).steps(&mut params, 1, 1000);
    params
}

fn train(c: &mut Criterion) {
    let devnet = &*DEVNET;
    let task = &devnet.task;
    let interval = task.checkpoint_interval;
    let mut group = c.benchmark_group("train");

    group.throughput(Throughput::Elements(interval));
    group.bench_function("step", |b| {
        let mut trainer = Trainer::new(task, bench_run(), 0);
        let mut params = warm_params(task);
        let mut next = 1u64;
        b.iter(|| {
            for _ in 0..interval {
                trainer.step(&mut params, next);
                next += 1;
            }
        });
        black_box(&params);
    });
    group.bench_function("miner_step", |b| {
        let mut trainer = Trainer::new(task, bench_run(), 0);
        let mut params = warm_params(task);
        let mut frontier = merkle::Frontier::default();
        let mut ckpt_root = frontier.root();
        let mut next = 1u64;
        b.iter(|| {
            for _ in 0..interval {
                let i = next;
                next += 1;
                trainer.step(&mut params, i);
                let hash = model_hash(&params);
                if i.is_multiple_of(interval) {
                    frontier.push(merkle::leaf_hash(&hash));
                    ckpt_root = frontier.root();
                }
                black_box(trainer.run().work_hash(i, &hash, &ckpt_root));
            }
        });
    });

    group.throughput(Throughput::Elements(1));
    group.bench_function("batch_indices", |b| {
        let run = bench_run();
        let mut indices = vec![0u32; task.batch_size];
        let mut bytes = vec![0u8; task.batch_size * 4];
        let rows = task.data.train_rows() as u32;
        let mut i = 0u64;
        b.iter(|| {
            i += 1;
            run.batch_indices(i, rows, &mut indices, &mut bytes);
            black_box(&indices);
        });
    });
    group.bench_function("sgd_step", |b| {
        let run = bench_run();
        let mut indices = vec![0u32; task.batch_size];
        let mut bytes = vec![0u8; task.batch_size * 4];
        run.batch_indices(1, task.data.train_rows() as u32, &mut indices, &mut bytes);
        let mut scratch = linear::StepScratch::new(task.batch_size, task.data.features());
        let mut params = warm_params(task);
        let rate = task.step_rate(0);
        b.iter(|| {
            linear::sgd_step(&mut params, &task.data, &indices, rate, &mut scratch);
        });
        black_box(&params);
    });
    group.bench_function("model_hash", |b| {
        let params = warm_params(task);
        b.iter(|| model_hash(black_box(&params)));
    });
    group.bench_function("work_hash", |b| {
        let run = bench_run();
        let hash = model_hash(&warm_params(task));
        let root = merkle::leaf_hash(&hash);
        let mut i = 0u64;
        b.iter(|| {
            i += 1;
            run.work_hash(i, &hash, &root)
        });
    });
    group.finish();
}

/// Polls of `keep_going` per `mine/steps` iteration.
const MINE_POLLS: u64 = 16;

/// Run [`miner::mine`] on a never-winning job until `keep_going` stops it
/// at step `MINE_POLLS × POLL_STEPS`; returns the steps done.
fn mine_never_winning(task: &Task, parent_model: &[f64]) -> u64 {
    let run_parent = tagged_sha256(b"bench/parent", &[]);
    let job = miner::Job {
        task,
        parent: run_parent,
        parent_model,
        miner: tagged_sha256(b"bench/miner", &[]),
        lane: 0,
        target: U256::zero(),
        job_block: 0,
        accept_score: &|_| true,
    };
    let stop_at = MINE_POLLS * miner::POLL_STEPS;
    match miner::mine(&job, |i| i < stop_at) {
        miner::Mined::Stopped(done) => done,
        other => panic!("a zero target never wins, but mine returned {other:?}"),
    }
}

fn mine(c: &mut Criterion) {
    let task = &DEVNET.task;
    let parent_model = warm_params(task);
    let steps = MINE_POLLS * miner::POLL_STEPS - 1;
    let mut group = c.benchmark_group("mine");
    group.throughput(Throughput::Elements(steps));
    group.sample_size(20);
    group.bench_function("steps", |b| {
        b.iter(|| assert_eq!(mine_never_winning(task, &parent_model), steps));
    });
    group.finish();
}

/// A devnet block and what validating it needs.
struct MinedBlock {
    params: ChainParams,
    ctx: ParentContext,
    job: JobContext,
    parent_model: Vec<f64>,
    block: Block,
    now_ms: u64,
}

/// Expected tickets per block at the easier target the verify benchmarks
/// mine with: enough for a block with millions of steps, found in seconds.
const EASY_EXPECTED_STEPS: u64 = 2_000_000;

/// Mine block 1 on devnet's genesis with devnet's task and an easier
/// target, and sign it.
static MINED: LazyLock<MinedBlock> = LazyLock::new(|| {
    let devnet = &*DEVNET;
    let mut params = devnet.params.clone();
    params.initial_target = target::from_u256(U256::MAX / EASY_EXPECTED_STEPS);
    let task = &devnet.task;
    let genesis = AncestorInfo::genesis(&params);
    let ctx = ParentContext {
        median_time_past_ms: genesis.timestamp_ms,
        required_target: genesis.target,
        parent: genesis,
    };
    let parent_model = initial_params(task.data.features());
    let key = SigningKey::from_bytes(&[7u8; 32]);
    let miner_key = Hash32(key.verifying_key().to_bytes());
    let accept = |_| true;
    let job = miner::Job {
        task,
        parent: ctx.parent.hash,
        parent_model: &parent_model,
        miner: miner_key,
        lane: 0,
        target: params.initial_target_u256(),
        job_block: 0,
        accept_score: &accept,
    };
    let started = Instant::now();
    let solution = match miner::mine(&job, |_| true) {
        miner::Mined::Found(solution) => solution,
        other => panic!("the easy target should give a block, got {other:?}"),
    };
    let placement = miner::Placement {
        parent: ctx.parent.hash,
        height: 1,
        timestamp_ms: ctx.median_time_past_ms + 1,
        target: params.initial_target,
        job: pouwd::ledger::GENESIS_JOB,
        job_block: 0,
    };
    let block = miner::seal(task, &solution, &placement, &key);
    let c = task.checkpoint_interval;
    eprintln!(
        "verify: mined a devnet-task block with k = {} steps in {:.1} s \
         ({} segments, tail of {} steps, {} openings, {} bytes)",
        solution.steps,
        started.elapsed().as_secs_f64(),
        solution.steps / c,
        solution.steps % c,
        block.body.openings.len(),
        block.to_bytes().len(),
    );
    MinedBlock {
        now_ms: block.header.fields.timestamp_ms,
        params,
        job: JobContext {
            job: GENESIS_JOB,
            job_block: 0,
            start: Some(ctx.parent.hash),
            start_score: 0,
        },
        ctx,
        parent_model,
        block,
    }
});

impl MinedBlock {
    fn training(&self) -> Training<'_> {
        Training {
            task: &DEVNET.task,
            job: &self.job,
            reference_cost: DEVNET.task.cost,
            start_model: &self.parent_model,
        }
    }
}

fn no_owner(_: &Hash32) -> Option<Hash32> {
    None
}

fn validate(mined: &MinedBlock) {
    let checked = consensus::validate_block(
        &mined.params,
        &mined.ctx,
        &mined.training(),
        mined.block.clone(),
        mined.now_ms,
        &no_owner,
    );
    assert!(checked.is_ok(), "the mined block validates: {checked:?}");
}

fn verify(c: &mut Criterion) {
    let mut group = c.benchmark_group("verify");
    group.bench_function("check_header", |b| {
        let m = &*MINED;
        b.iter(|| {
            consensus::check_header(
                &m.params,
                &m.ctx,
                &m.training(),
                &m.block.header,
                m.now_ms,
                &no_owner,
            )
            .expect("header checks")
        });
    });
    group.bench_function("validate_block", |b| {
        let m = &*MINED;
        b.iter_batched(
            || m.block.clone(),
            |block| {
                consensus::validate_block(
                    &m.params,
                    &m.ctx,
                    &m.training(),
                    block,
                    m.now_ms,
                    &no_owner,
                )
                .expect("block validates")
            },
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

/// Median of `runs` timings of `f`, each `f` call doing `per_run` units.
fn median_per_unit(runs: usize, per_run: u64, mut f: impl FnMut()) -> Duration {
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let started = Instant::now();
            f();
            started.elapsed() / per_run as u32
        })
        .collect();
    times.sort_unstable();
    times[runs / 2]
}

/// `cargo bench --bench consensus -- ratio`: verification cost of a
/// devnet block against the expected mining work it checks.
fn ratio() {
    let devnet = &*DEVNET;
    let mined = &*MINED;
    let parent_model = warm_params(&devnet.task);
    let steps = MINE_POLLS * miner::POLL_STEPS - 1;
    let step = median_per_unit(15, steps, || {
        black_box(mine_never_winning(&devnet.task, &parent_model));
    });
    let verification = median_per_unit(41, 1, || validate(mined));
    let expected_steps = target::block_work(&devnet.params.initial_target);
    let expected = expected_steps.low_u64() as f64;
    let mining_s = expected * step.as_secs_f64();
    println!(
        "ratio: mined step {:.1} ns ({:.0} steps/s); devnet expects {} steps per block, \
         {:.2} s of mining; validate_block {:.3} ms; verification / mining = {:.5} %",
        step.as_secs_f64() * 1e9,
        1.0 / step.as_secs_f64(),
        expected_steps,
        mining_s,
        verification.as_secs_f64() * 1e3,
        100.0 * verification.as_secs_f64() / mining_s,
    );
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    train(&mut criterion);
    mine(&mut criterion);
    verify(&mut criterion);
    criterion.final_summary();
    if std::env::args().skip(1).any(|arg| arg == "ratio") {
        ratio();
    }
}
