//! How far apart `onnx_linear` re-executions land when the encoder runs
//! with other batch sizes or thread counts: the figures behind the
//! tolerance in config/devnet-onnx.json (schema/consensus.md).
//!
//!     cargo run --release --example onnx_tolerance
use pouwd::chain::tagged_sha256;
use pouwd::consensus::params::{ChainParams, ModelKind};
use pouwd::model::onnx::{ExecutionProvider, OrtSetup, SessionConfig};
use pouwd::node::chain::{prepare_task, TaskFiles};
use pouwd::node::datadir::{DEVNET_ONNX_JSON, DIABETES_CSV, TRANSFORMER_ENCODER_ONNX};
use pouwd::work::{score_ppm, Run, Task, Trainer};

fn task(batch: u32, threads: usize) -> Task {
    let mut params = ChainParams::from_json(DEVNET_ONNX_JSON).expect("devnet-onnx parses");
    if let ModelKind::OnnxLinear(onnx) = &mut params.task.model {
        onnx.encoder_batch = batch;
    }
    let files = TaskFiles {
        dataset: DIABETES_CSV.to_vec(),
        encoder: Some(TRANSFORMER_ENCODER_ONNX.to_vec()),
    };
    let ort = OrtSetup {
        library: None,
        session: SessionConfig {
            provider: ExecutionProvider::Cpu,
            intra_threads: threads,
        },
    };
    prepare_task(&params, &files, &ort)
        .expect("the task prepares")
        .0
}

fn main() {
    let reference = task(64, 1);
    let others = [(1, 1), (7, 1), (442, 1), (64, 2), (442, 2)];
    let mut max_feature = 0f64;
    let variants: Vec<Task> = others.iter().map(|&(b, t)| task(b, t)).collect();
    for (v, &(b, t)) in variants.iter().zip(&others) {
        let diff = reference
            .data
            .train_x
            .iter()
            .zip(&v.data.train_x)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        println!("features: batch {b} threads {t}: max |diff| {diff:e}");
        max_feature = max_feature.max(diff);
    }
    // Train the reference from zero, then re-execute segments from points
    // along the way on every variant.
    let miner = tagged_sha256(b"tol/miner", &[]);
    let mut worst = 0f64;
    let mut worst_score = 0u32;
    for round in 0..20u32 {
        let parent = tagged_sha256(b"tol/parent", &[&round.to_le_bytes()]);
        let run = Run::new(&parent, &miner, 0);
        let mut start = vec![0.0; reference.dim()];
        // Warm up: round * 20k steps.
        let mut warm = Trainer::new(&reference, run.clone(), 0);
        warm.steps(&mut start, 1, 1 + u64::from(round) * 20_000);
        reference.snap(&mut start);
        let mut ours = start.clone();
        Trainer::new(&reference, run.clone(), 0).steps(&mut ours, 1, 1000);
        let rows = reference.validation().to_vec();
        let mut snapped = ours.clone();
        reference.snap(&mut snapped);
        let our_score = score_ppm(&reference, &snapped, &rows);
        for v in &variants {
            let mut theirs = start.clone();
            Trainer::new(v, run.clone(), 0).steps(&mut theirs, 1, 1000);
            let d = ours
                .iter()
                .zip(&theirs)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max);
            worst = worst.max(d);
            let their_score = score_ppm(v, &snapped, &rows);
            worst_score = worst_score.max(our_score.abs_diff(their_score));
        }
        if round % 5 == 0 {
            println!(
                "round {round}: score {our_score} ppm, |w| max {:.3}",
                ours.iter().fold(0.0f64, |m, x| m.max(x.abs()))
            );
        }
    }
    println!("max feature difference {max_feature:e}");
    println!("max parameter difference after a 1000-step segment {worst:e}");
    println!("max score difference {worst_score} ppm");
}
