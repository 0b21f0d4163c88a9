//! Training steps per second of the native `mlp` head on one thread, with
//! the per-step hashing a miner does.
//!
//! A plain timing harness (`harness = false`):
//!
//! ```text
//! cargo bench --bench mlp
//! POUWD_MLP_HIDDEN=64 POUWD_MLP_STEPS=100000 cargo bench --bench mlp
//! ```
//!
//! The data are data/diabetes.csv prepared as devnet prepares them (354
//! training rows, 10 features); batch 32, `POUWD_MLP_HIDDEN` hidden units
//! (default 32). One step is what a miner does per step:
//!
//! 1. draw the batch: [`Run::batch_indices`] (BLAKE3 XOF);
//! 2. [`mlp::sgd_step`];
//! 3. [`model_hash`] of the parameters (SHA-256), which the ticket hashes.
//!
//! Each figure is the median of 7 timed runs of `POUWD_MLP_STEPS` steps
//! (default 200,000), after one untimed warm-up run; the parts are timed
//! the same way on their own. Time is the thread's CPU time from
//! /proc/thread-self/schedstat (wall-clock time where that is missing), so
//! that other processes on a shared machine inflate the figures less. Figures measured on the project's machine
//! are in benches/RESULTS-mlp.md.

use pouwd::chain::tagged_sha256;
use pouwd::dataset::{CsvDataset, Prepared};
use pouwd::model::{mlp, model_hash};
use pouwd::work::Run;
use std::hint::black_box;
use std::time::Instant;

const BATCH: usize = 32;
const RUNS: usize = 7;
const LEARNING_RATE: f64 = 0.01;
const CLIP_NORM: f64 = 1.0;

fn env_number(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(text) => text
            .parse()
            .unwrap_or_else(|_| panic!("{name}={text:?} is not a number")),
        Err(_) => default,
    }
}

fn diabetes() -> Prepared {
    let csv = CsvDataset::from_bytes("diabetes.csv", include_bytes!("../data/diabetes.csv"))
        .expect("data/diabetes.csv parses");
    Prepared::new(
        &csv,
        "progression",
        None,
        5,
        pouwd::dataset::DEFAULT_MAX_CATEGORIES,
    )
    .expect("the dataset prepares")
}

/// Nanoseconds this thread has run on a CPU (the first field of
/// /proc/thread-self/schedstat), or `None` where the kernel does not say.
fn cpu_ns() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// Median seconds of `RUNS` timed calls of `f`, after one untimed call:
/// the thread's CPU time where the kernel reports it (so that other
/// processes sharing the core do not count), else wall-clock time.
fn median_seconds(mut f: impl FnMut()) -> f64 {
    f();
    let mut times: Vec<f64> = (0..RUNS)
        .map(|_| {
            let (start, cpu) = (Instant::now(), cpu_ns());
            f();
            match (cpu, cpu_ns()) {
                (Some(a), Some(b)) => (b - a) as f64 * 1e-9,
                _ => start.elapsed().as_secs_f64(),
            }
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[RUNS / 2]
}

fn main() {
    let hidden = env_number("POUWD_MLP_HIDDEN", 32);
    let steps = env_number("POUWD_MLP_STEPS", 200_000) as u64;
    let data = diabetes();
    let d = data.features();
    let rows = data.train_rows() as u32;
    let run = Run::new(
        &tagged_sha256(b"bench/parent", &[]),
        &tagged_sha256(b"bench/miner", &[]),
        0,
    );
    let seed = tagged_sha256(b"bench/job", &[]);
    let mut scratch = mlp::StepScratch::new(d, hidden, BATCH);
    let mut indices = [0u32; BATCH];
    let mut bytes = [0u8; 4 * BATCH];
    let start_params = mlp::initial_params(d, hidden, &seed);
    println!(
        "mlp: {d} inputs, {hidden} hidden units, {} parameters, batch {BATCH}, {steps} steps per run",
        start_params.len()
    );

    let mut params = start_params.clone();
    let mut next = 1u64;
    let full = median_seconds(|| {
        for _ in 0..steps {
            run.batch_indices(next, rows, &mut indices, &mut bytes);
            mlp::sgd_step(
                &mut params,
                &data,
                hidden,
                &indices,
                LEARNING_RATE,
                CLIP_NORM,
                &mut scratch,
            );
            black_box(model_hash(&params));
            next += 1;
        }
    });

    let draw = median_seconds(|| {
        for i in 0..steps {
            run.batch_indices(i, rows, &mut indices, &mut bytes);
            black_box(&indices);
        }
    });

    // The SGD step alone, on pre-drawn batches cycled through.
    let batches: Vec<[u32; BATCH]> = (0..1024u64)
        .map(|i| {
            let mut out = [0u32; BATCH];
            run.batch_indices(i, rows, &mut out, &mut bytes);
            out
        })
        .collect();
    let mut params = start_params.clone();
    let sgd = median_seconds(|| {
        for i in 0..steps as usize {
            mlp::sgd_step(
                &mut params,
                &data,
                hidden,
                &batches[i % batches.len()],
                LEARNING_RATE,
                CLIP_NORM,
                &mut scratch,
            );
        }
        black_box(&params);
    });

    let hash = median_seconds(|| {
        for _ in 0..steps {
            black_box(model_hash(black_box(&params)));
        }
    });

    let per = |seconds: f64| seconds / steps as f64 * 1e9;
    println!(
        "step (draw + sgd_step + model_hash): {:>8.0} ns  {:>9.0} steps/s",
        per(full),
        steps as f64 / full
    );
    println!(
        "  batch_indices:                     {:>8.0} ns  ({:.0} %)",
        per(draw),
        100.0 * draw / full
    );
    println!(
        "  sgd_step:                          {:>8.0} ns  ({:.0} %)  {:.0} steps/s alone",
        per(sgd),
        100.0 * sgd / full,
        steps as f64 / sgd
    );
    println!(
        "  model_hash:                        {:>8.0} ns  ({:.0} %)",
        per(hash),
        100.0 * hash / full
    );
    println!(
        "  hashing (draw + model_hash):       {:>8.0} ns  ({:.0} %)",
        per(draw + hash),
        100.0 * (draw + hash) / full
    );
}
