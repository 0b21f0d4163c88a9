//! ONNX inference through ort on one thread, against Python's onnxruntime
//! running the same model on the same rows (benches/onnx_python.py).
//!
//! ```text
//! export ORT_DYLIB_PATH="$(tools/ort_lib.sh)"
//! cargo bench --bench onnx                      # ort, every model and batch
//! .venv/bin/python benches/onnx_python.py       # the same in Python
//! ```
//!
//! - `onnx/{linear,transformer}/{1,32,1024}`: one `OnnxModel::run` of a
//!   batch of that many rows of data/diabetes.csv (raw features, the rows
//!   cycled to fill 1024) through data/linear.onnx or data/transformer.onnx,
//!   CPU provider, one intra-op thread. Throughput is rows per second.
//!   The call includes what a caller pays: wrapping the rows in a tensor,
//!   the run, and copying the outputs out.
//!
//! `POUWD_BENCH_EP=cuda` (or `auto`) runs the same benchmarks on that
//! provider; the provider is printed on stderr before the figures.
//! Figures measured on the project's machine are in benches/RESULTS-onnx.md.

use criterion::{black_box, Criterion, Throughput};
use pouwd::dataset::CsvDataset;
use pouwd::model::onnx::{self, ExecutionProvider, ModelSpec, OnnxModel, SessionConfig};
use std::time::Duration;

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
    for row in data.rows.iter().cycle().take(1024) {
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
            input_name: "features".into(),
            features: Some(10),
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

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    bench(&mut criterion);
    criterion.final_summary();
}
