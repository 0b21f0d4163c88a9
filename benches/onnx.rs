//! ONNX inference through ort on one thread, against Python's onnxruntime
//! running the same model on the same rows (benches/onnx_python.py).
//!
//! ```text
//! export ORT_DYLIB_PATH="$(tools/ort_lib.sh)"
//! taskset -c 1 cargo bench --bench onnx                  # ort, every model and batch
//! taskset -c 1 .venv/bin/python benches/onnx_python.py    # the same in Python
//! ```
//!
//! - `onnx/{linear,transformer}/{1,32,1024}`: one `OnnxModel::run_into` of a
//!   batch of that many rows of data/diabetes.csv (raw features, the rows
//!   cycled to fill 1024) through data/linear.onnx or data/transformer.onnx,
//!   CPU provider, one intra-op thread. Throughput is rows per second.
//!   The call includes what a caller pays: wrapping the rows in a tensor
//!   (borrowed, not copied), the run (into an output tensor the model
//!   keeps, at these batch sizes: see `PREALLOCATED_OUTPUT_VALUES` in
//!   src/model/onnx.rs), and copying the outputs out.
//!
//! `POUWD_BENCH_EP=cuda` (or `auto`) runs the same benchmarks on that
//! provider; the provider is printed on stderr before the figures.
//!
//! ```text
//! cargo bench --bench onnx -- mining            # onnx_linear against linear
//! ```
//!
//! - `mining` (not a criterion benchmark; run only when asked, and then
//!   alone; the encoder's provider line goes to stderr): mining
//!   throughput of the devnet-onnx task (config/devnet-onnx.json: the
//!   frozen data/transformer_encoder.onnx in front of a linear head of 17
//!   parameters, checkpoints and tickets on the parameter grid) against
//!   the native devnet task (config/devnet.json: 11 parameters, exact).
//!   Both tasks are built by `node::chain::prepare_task`, the encoder on
//!   the CPU provider with one intra-op thread. It prints:
//!   - `prepare`: one `prepare_task` call per task; for onnx_linear that
//!     is loading the encoder's session and encoding all 442 rows. The
//!     first call (which also loads ONNX Runtime) is printed apart from
//!     the median of the later ones, and `session` times loading the
//!     encoder alone, so encoding costs about the difference.
//!   - `mine`: [`miner::mine`], the real loop (step, ticket hash,
//!     checkpoints, and for onnx_linear the grid rounding of every ticket's
//!     model and of each checkpoint) with a target of zero, stopped through
//!     `keep_going` after `MINE_POLLS` polls; the two tasks alternate, and
//!     the median, range and median of the per-round ratios are printed.
//!   - `verify`: the re-execution a validator does for one block,
//!     `spot_checks × c + c` steps (every challenged segment and a full
//!     tail, the worst case) from opened checkpoints, each compared with
//!     the claimed next checkpoint as `consensus::validate_block` does; and
//!     that cost against the expected mining work of one block at the
//!     task's `initial_target`.
//!
//! Figures measured on the project's machine are in benches/RESULTS-onnx.md.

use criterion::{black_box, Criterion, Throughput};
use pouwd::chain::tagged_sha256;
use pouwd::consensus::params::ChainParams;
use pouwd::consensus::target;
use pouwd::dataset::CsvDataset;
use pouwd::model::initial_params;
use pouwd::model::onnx::{self, ExecutionProvider, ModelSpec, OnnxModel, OrtSetup, SessionConfig};
use pouwd::node::chain::{prepare_task, TaskFiles};
use pouwd::node::datadir::{DEVNET_JSON, DEVNET_ONNX_JSON, DIABETES_CSV, TRANSFORMER_ENCODER_ONNX};
use pouwd::work::{miner, Run, Task, Trainer};
use primitive_types::U256;
use std::time::{Duration, Instant};

const MODELS: [(&str, &str); 2] = [
    ("linear", "data/linear.onnx"),
    ("transformer", "data/transformer.onnx"),
];
const BATCHES: [usize; 3] = [1, 32, 1024];

/// 1024 rows of raw features, the CSV's 442 rows cycled.
fn rows() -> Vec<f32> {
    let bytes = std::fs::read("data/diabetes.csv").expect("read data/diabetes.csv");
    let data = CsvDataset::from_bytes("diabetes.csv", &bytes).expect("parse diabetes.csv");
    let target = data
        .columns
        .iter()
        .position(|c| c == "progression")
        .expect("target column");
    let mut rows = Vec::with_capacity(1024 * 10);
    let all = data.numeric_rows().expect("diabetes.csv is numeric");
    for row in all.iter().cycle().take(1024) {
        for (c, v) in row.iter().enumerate() {
            if c != target {
                rows.push(*v as f32);
            }
        }
    }
    rows
}

fn bench(c: &mut Criterion) {
    let runtime = match onnx::runtime(None) {
        Ok(runtime) => runtime,
        Err(e) => panic!("{e}"),
    };
    let provider: ExecutionProvider = std::env::var("POUWD_BENCH_EP")
        .unwrap_or_else(|_| "cpu".into())
        .parse()
        .expect("POUWD_BENCH_EP: auto, cpu or cuda");
    let config = SessionConfig {
        provider,
        intra_threads: 1,
    };
    let rows = rows();
    let mut group = c.benchmark_group("onnx");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for (name, path) in MODELS {
        let bytes = std::fs::read(path).expect("read the model");
        let spec = ModelSpec {
            blake3: None,
            input_name: Some("features".into()),
            features: Some(10),
            text_input: None,
        };
        let mut model = OnnxModel::load(runtime, path, &bytes, &spec, &config)
            .unwrap_or_else(|e| panic!("{e}"));
        let mut out = Vec::with_capacity(1024);
        for batch in BATCHES {
            group.throughput(Throughput::Elements(batch as u64));
            group.bench_function(format!("{name}/{batch}"), |b| {
                b.iter(|| {
                    out.clear();
                    model
                        .run_into(black_box(&rows[..batch * 10]), &mut out)
                        .expect("run");
                    black_box(&out);
                })
            });
        }
    }
    group.finish();
}

/// Polls of `keep_going` per timed `mine` run: 65 535 steps.
const MINE_POLLS: u64 = 16;
/// Timed `mine` runs per task, the tasks alternating.
const MINE_ROUNDS: usize = 15;

/// One of the two tasks `mining` compares.
struct MiningTask {
    name: &'static str,
    params: ChainParams,
    files: TaskFiles,
    task: Task,
}

fn cpu_one_thread() -> OrtSetup {
    OrtSetup {
        library: None,
        session: SessionConfig {
            provider: ExecutionProvider::Cpu,
            intra_threads: 1,
        },
    }
}

fn mining_task(name: &'static str, json: &str, encoder: Option<&[u8]>) -> MiningTask {
    let params = ChainParams::from_json(json).unwrap_or_else(|e| panic!("{name}: {e}"));
    let files = TaskFiles {
        dataset: DIABETES_CSV.to_vec(),
        encoder: encoder.map(<[u8]>::to_vec),
    };
    let (task, _) = prepare_task(&params, &files, &cpu_one_thread())
        .unwrap_or_else(|e| panic!("{name}: {e:#}"));
    MiningTask {
        name,
        params,
        files,
        task,
    }
}

fn mining_run() -> Run {
    Run::new(
        &tagged_sha256(b"bench/parent", &[]),
        &tagged_sha256(b"bench/miner", &[]),
        0,
    )
}

/// A parent model part-way through training, on the task's grid if it has
/// one, as every parent model is.
fn parent_model(task: &Task) -> Vec<f64> {
    let mut params = initial_params(task.data.features());
    Trainer::new(task, mining_run(), 0).steps(&mut params, 1, 1000);
    task.snap(&mut params);
    params
}

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

/// The checkpoints `C_0 … C_{spot_checks+1}` of a run from `parent`, as a
/// miner makes them: rounded to the grid, training going on from the
/// rounded value.
fn checkpoints(task: &Task, parent: &[f64]) -> Vec<Vec<f64>> {
    let c = task.checkpoint_interval;
    let mut trainer = Trainer::new(task, mining_run(), 0);
    let mut params = parent.to_vec();
    let mut out = vec![params.clone()];
    for s in 1..=u64::from(task.spot_checks) + 1 {
        trainer.steps(&mut params, (s - 1) * c + 1, s * c);
        task.snap(&mut params);
        out.push(params.clone());
    }
    out
}

/// What a validator re-executes for one block: each segment from its
/// opened start, compared with the opened end.
fn reexecute(task: &Task, checkpoints: &[Vec<f64>]) {
    let c = task.checkpoint_interval;
    let mut trainer = Trainer::new(task, mining_run(), 0);
    let mut scratch = vec![0.0; task.dim()];
    for s in 1..checkpoints.len() as u64 {
        scratch.copy_from_slice(&checkpoints[s as usize - 1]);
        trainer.steps(&mut scratch, (s - 1) * c + 1, s * c);
        assert!(
            task.reexecution_matches(&scratch, &checkpoints[s as usize]),
            "segment {s} re-executes to its checkpoint"
        );
    }
}

/// Sorted timings of `runs` calls of `f`.
fn timings(runs: usize, mut f: impl FnMut()) -> Vec<Duration> {
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let started = Instant::now();
            f();
            started.elapsed()
        })
        .collect();
    times.sort_unstable();
    times
}

fn median<T: Copy + PartialOrd>(values: &[T]) -> T {
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.partial_cmp(b).expect("comparable"));
    sorted[sorted.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// `cargo bench --bench onnx -- mining`: onnx_linear against linear.
fn mining() {
    let setup = cpu_one_thread();

    // One-off: preparing each task.
    let first = Instant::now();
    let onnx = mining_task(
        "devnet-onnx",
        DEVNET_ONNX_JSON,
        Some(TRANSFORMER_ENCODER_ONNX),
    );
    let onnx_first = first.elapsed();
    let linear = mining_task("devnet", DEVNET_JSON, None);
    let tasks = [&linear, &onnx];
    for t in tasks {
        let times = timings(11, || {
            black_box(prepare_task(&t.params, &t.files, &setup).expect("prepare"));
        });
        let first = if t.name == onnx.name {
            format!(", first call (loads ONNX Runtime) {:.2} ms", ms(onnx_first))
        } else {
            String::new()
        };
        println!(
            "prepare {}: prepare_task median {:.2} ms (range {:.2}-{:.2}, 11 calls){first}",
            t.name,
            ms(times[5]),
            ms(times[0]),
            ms(times[10]),
        );
    }
    let onnx_params = onnx.params.task.model.onnx().expect("an onnx_linear task");
    let runtime = onnx::runtime(None).unwrap_or_else(|e| panic!("{e}"));
    let spec = ModelSpec {
        blake3: Some(onnx_params.blake3.to_hex()),
        input_name: Some(onnx_params.input.clone()),
        features: Some(10),
        text_input: None,
    };
    let session = timings(11, || {
        black_box(
            OnnxModel::load(
                runtime,
                &onnx_params.file,
                TRANSFORMER_ENCODER_ONNX,
                &spec,
                &setup.session,
            )
            .unwrap_or_else(|e| panic!("{e}")),
        );
    });
    println!(
        "prepare {}: session (OnnxModel::load alone) median {:.2} ms (range {:.2}-{:.2}, 11 calls)",
        onnx.name,
        ms(session[5]),
        ms(session[0]),
        ms(session[10]),
    );

    // Mining throughput, the tasks alternating round by round.
    let parents: Vec<Vec<f64>> = tasks.iter().map(|t| parent_model(&t.task)).collect();
    let steps = MINE_POLLS * miner::POLL_STEPS - 1;
    for (t, parent) in tasks.iter().zip(&parents) {
        // Warm-up.
        black_box(mine_never_winning(&t.task, parent));
    }
    let mut rates = vec![Vec::new(); tasks.len()];
    for _ in 0..MINE_ROUNDS {
        for (k, (t, parent)) in tasks.iter().zip(&parents).enumerate() {
            let started = Instant::now();
            assert_eq!(mine_never_winning(&t.task, parent), steps);
            rates[k].push(steps as f64 / started.elapsed().as_secs_f64());
        }
    }
    for (t, r) in tasks.iter().zip(&rates) {
        let (lo, hi) = r
            .iter()
            .fold((f64::MAX, 0.0f64), |(lo, hi), &x| (lo.min(x), hi.max(x)));
        println!(
            "mine {}: median {:.3} M steps/s (range {:.3}-{:.3} M; {} parameters; \
             {MINE_ROUNDS} runs of {steps} steps)",
            t.name,
            median(r) / 1e6,
            lo / 1e6,
            hi / 1e6,
            t.task.dim(),
        );
    }
    let ratios: Vec<f64> = rates[1].iter().zip(&rates[0]).map(|(o, l)| o / l).collect();
    println!(
        "mine {} / {}: median of per-round ratios {:.3} (range {:.3}-{:.3})",
        onnx.name,
        linear.name,
        median(&ratios),
        ratios.iter().copied().fold(f64::MAX, f64::min),
        ratios.iter().copied().fold(0.0, f64::max),
    );

    // Verification: one block's re-execution, against its expected mining.
    for ((t, parent), r) in tasks.iter().zip(&parents).zip(&rates) {
        let opened = checkpoints(&t.task, parent);
        let reexecuted = (opened.len() as u64 - 1) * t.task.checkpoint_interval;
        let times = timings(41, || reexecute(&t.task, &opened));
        let verify = times[20];
        let expected_steps = target::block_work(&t.params.initial_target).low_u64();
        let mining_s = expected_steps as f64 / median(r);
        println!(
            "verify {}: re-execution of {reexecuted} steps ({} spot checks + tail, c = {}) \
             median {:.3} ms (range {:.3}-{:.3}, 41 runs); {expected_steps} expected steps \
             per block, {:.2} s of mining; verification / mining = {:.4} %",
            t.name,
            t.task.spot_checks,
            t.task.checkpoint_interval,
            ms(verify),
            ms(times[0]),
            ms(times[40]),
            mining_s,
            100.0 * verify.as_secs_f64() / mining_s,
        );
    }
}

fn main() {
    if std::env::args().skip(1).any(|arg| arg == "mining") {
        // Alone, so that its first `prepare_task` is the one that loads
        // ONNX Runtime.
        mining();
        return;
    }
    let mut criterion = Criterion::default().configure_from_args();
    bench(&mut criterion);
    criterion.final_summary();
}
