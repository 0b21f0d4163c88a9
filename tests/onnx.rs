//! ONNX models through ort, checked against Python's onnxruntime running
//! the same file on the same rows, every bad-input error, and `pouwd eval`
//! end to end. Needs ONNX Runtime: `ORT_DYLIB_PATH`, which tools/test.sh
//! exports, or else tools/ort_lib.sh is run to install it into .venv. No
//! test needs a GPU.

use crate::support::node::BIN;
use pouwd::dataset::{CsvDataset, Prepared};
use pouwd::model::onnx::{
    self, ActiveProvider, ExecutionProvider, ModelSpec, OnnxError, OnnxModel, Runtime,
    SessionConfig,
};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const CPU: SessionConfig = SessionConfig {
    provider: ExecutionProvider::Cpu,
    intra_threads: 1,
};

fn root(path: &str) -> PathBuf {
    Path::new(ROOT).join(path)
}

/// The ONNX Runtime library: ORT_DYLIB_PATH, else what tools/ort_lib.sh prints.
fn library() -> &'static Path {
    static LIBRARY: OnceLock<PathBuf> = OnceLock::new();
    LIBRARY.get_or_init(|| {
        if let Some(path) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
            return PathBuf::from(path);
        }
        let out = Command::new(root("tools/ort_lib.sh"))
            .output()
            .expect("run tools/ort_lib.sh");
        assert!(
            out.status.success(),
            "tools/ort_lib.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
    })
}

fn runtime() -> &'static Runtime {
    onnx::runtime(Some(library())).expect("load ONNX Runtime")
}

/// The Python of the virtualenv that holds the onnxruntime wheel.
fn python() -> PathBuf {
    // .venv/lib/python3.X/site-packages/onnxruntime/capi/libonnxruntime.so…
    let venv = library().ancestors().nth(6).expect("library inside a venv");
    venv.join("bin").join("python")
}

fn spec(features: Option<usize>) -> ModelSpec {
    ModelSpec {
        blake3: None,
        input_name: "features".into(),
        features,
    }
}

fn load(path: &str, spec: &ModelSpec) -> Result<OnnxModel, OnnxError> {
    let bytes = std::fs::read(root(path)).unwrap();
    OnnxModel::load(runtime(), path, &bytes, spec, &CPU)
}

fn diabetes() -> CsvDataset {
    let bytes = std::fs::read(root("data/diabetes.csv")).unwrap();
    CsvDataset::from_bytes("diabetes.csv", &bytes).unwrap()
}

/// Every row's raw feature values, row-major, as the model's f32.
fn raw_rows() -> Vec<f32> {
    let data = diabetes();
    let target = data
        .columns
        .iter()
        .position(|c| c == "progression")
        .unwrap();
    data.rows
        .iter()
        .flat_map(|row| {
            row.iter()
                .enumerate()
                .filter(move |(c, _)| *c != target)
                .map(|(_, v)| *v as f32)
        })
        .collect()
}

/// Every row standardised as the node does (holdout_every 5), as f32.
fn standardised_rows() -> Vec<f32> {
    let prepared = Prepared::new(&diabetes(), "progression", None, 5).unwrap();
    prepared
        .train_x
        .iter()
        .chain(&prepared.holdout_x)
        .map(|v| *v as f32)
        .collect()
}

/// Run `model` on `rows` with Python's onnxruntime (CPU, one thread).
fn python_outputs(model: &str, rows: &[f32], features: usize) -> Vec<f32> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rows.json");
    // f32 Display is the shortest text that reads back to the same f32.
    let rows: Vec<Vec<String>> = rows
        .chunks(features)
        .map(|row| row.iter().map(|v| v.to_string()).collect())
        .collect();
    let text = format!(
        "{{\"rows\": [{}]}}",
        rows.iter()
            .map(|r| format!("[{}]", r.join(",")))
            .collect::<Vec<_>>()
            .join(",")
    );
    std::fs::write(&file, text).unwrap();
    let out = Command::new(python())
        .arg(root("tools/onnx_predict.py"))
        .arg("--model")
        .arg(root(model))
        .arg("--rows")
        .arg(&file)
        .output()
        .expect("run tools/onnx_predict.py");
    assert!(
        out.status.success(),
        "onnx_predict.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    json["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| row.as_array().unwrap().clone())
        .map(|v| v.as_f64().unwrap() as f32)
        .collect()
}

fn assert_close(model: &str, ours: &[f32], theirs: &[f32]) {
    assert_eq!(ours.len(), theirs.len(), "{model}: output lengths");
    let mut worst = 0.0f32;
    for (i, (a, b)) in ours.iter().zip(theirs).enumerate() {
        let diff = (a - b).abs();
        assert!(
            diff <= 1e-5 * b.abs().max(1.0),
            "{model}: output {i}: ort {a}, onnxruntime in Python {b}"
        );
        worst = worst.max(diff);
    }
    eprintln!(
        "{model}: {} outputs, largest difference {worst}",
        ours.len()
    );
}

#[test]
fn ort_matches_python_onnxruntime_on_the_same_rows() {
    for (model, rows, width) in [
        ("data/linear.onnx", raw_rows(), 1),
        ("data/transformer.onnx", raw_rows(), 1),
        ("data/transformer_encoder.onnx", standardised_rows(), 16),
        ("tests/data/onnx/mean.onnx", raw_rows(), 1),
    ] {
        let mut loaded = load(model, &spec(Some(10))).unwrap();
        assert_eq!(loaded.provider(), ActiveProvider::Cpu);
        assert_eq!(loaded.output_width(), width, "{model}");
        let ours = loaded.run(&rows).unwrap();
        assert_eq!(ours.len(), rows.len() / 10 * width);
        let theirs = python_outputs(model, &rows, 10);
        assert_close(model, &ours, &theirs);
        // Row by row gives the same outputs as the whole table at once.
        let mut one_by_one = Vec::new();
        for row in rows.chunks(10).take(40) {
            loaded.run_into(row, &mut one_by_one).unwrap();
        }
        assert_close(model, &one_by_one, &ours[..one_by_one.len()]);
    }
}

#[test]
fn the_pinned_hash_is_checked_first() {
    let bytes = std::fs::read(root("data/linear.onnx")).unwrap();
    let found = onnx::blake3_hex(&bytes);
    let wrong = "00".repeat(32);
    let pinned = ModelSpec {
        blake3: Some(wrong.clone()),
        ..spec(Some(10))
    };
    let err = OnnxModel::load(runtime(), "linear.onnx", &bytes, &pinned, &CPU).unwrap_err();
    assert!(
        matches!(&err, OnnxError::HashMismatch { expected, found: f, .. } if *expected == wrong && *f == found),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains(&wrong) && text.contains(&found), "{text}");
    let right = ModelSpec {
        blake3: Some(found.to_uppercase()),
        ..spec(Some(10))
    };
    let model = OnnxModel::load(runtime(), "linear.onnx", &bytes, &right, &CPU).unwrap();
    assert_eq!(model.blake3(), found);
}

#[test]
fn a_file_that_is_not_onnx_is_refused() {
    for bytes in [
        std::fs::read(root("data/diabetes.csv")).unwrap(),
        vec![0xff; 64],
    ] {
        let err = OnnxModel::load(runtime(), "x.onnx", &bytes, &spec(None), &CPU).unwrap_err();
        assert!(matches!(err, OnnxError::NotOnnx { .. }), "{err:?}");
        assert!(
            err.to_string().starts_with("x.onnx: not an ONNX model"),
            "{err}"
        );
    }
}

#[test]
fn a_wrong_input_name_names_both() {
    let wanted = ModelSpec {
        input_name: "rows".into(),
        ..spec(None)
    };
    let err = load("data/linear.onnx", &wanted).unwrap_err();
    assert_eq!(
        err.to_string(),
        "data/linear.onnx: the graph's input is named \"features\"; expected \"rows\""
    );
}

#[test]
fn a_wrong_input_shape_or_type_names_both() {
    let err = load("data/linear.onnx", &spec(Some(9))).unwrap_err();
    assert!(matches!(err, OnnxError::InputShape { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("shape [batch, 10]"), "{text}");
    assert!(
        text.contains("expected a float32 tensor of shape [?, 9]"),
        "{text}"
    );

    let err = load("tests/data/onnx/fixed_batch.onnx", &spec(None)).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("shape [1, 10]"), "{text}");
    assert!(text.contains("a dynamic batch axis"), "{text}");

    let err = load("tests/data/onnx/int_input.onnx", &spec(None)).unwrap_err();
    assert!(err.to_string().contains("Int64"), "{err}");

    let err = load("tests/data/onnx/two_inputs.onnx", &spec(None)).unwrap_err();
    assert!(
        matches!(&err, OnnxError::InputCount { found: 2, .. }),
        "{err:?}"
    );
}

#[test]
fn a_batch_that_is_not_whole_rows_is_refused() {
    let mut model = load("data/linear.onnx", &spec(Some(10))).unwrap();
    let err = model.run(&[0.0; 15]).unwrap_err();
    assert!(matches!(
        err,
        OnnxError::RaggedBatch {
            values: 15,
            features: 10,
            ..
        }
    ));
    assert!(model.run(&[]).unwrap().is_empty());
}

#[test]
fn cuda_is_cuda_or_an_error_never_a_silent_cpu() {
    let bytes = std::fs::read(root("data/linear.onnx")).unwrap();
    let cuda = SessionConfig {
        provider: ExecutionProvider::Cuda,
        intra_threads: 1,
    };
    match OnnxModel::load(runtime(), "linear.onnx", &bytes, &spec(Some(10)), &cuda) {
        Ok(model) => assert_eq!(model.provider(), ActiveProvider::Cuda),
        Err(err) => {
            assert!(matches!(err, OnnxError::CudaUnavailable { .. }), "{err:?}");
            assert!(err.to_string().contains("--ort-ep cpu"), "{err}");
        }
    }
    let auto = SessionConfig {
        provider: ExecutionProvider::Auto,
        intra_threads: 2,
    };
    let mut model =
        OnnxModel::load(runtime(), "linear.onnx", &bytes, &spec(Some(10)), &auto).unwrap();
    assert_eq!(model.run(&[0.0; 10]).unwrap().len(), 1);
}

fn eval(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let mut command = Command::new(BIN);
    command.arg("eval").args(args).current_dir(ROOT);
    command.env("ORT_DYLIB_PATH", library());
    for (key, value) in env {
        command.env(key, value);
    }
    let out = command.output().expect("run pouwd eval");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn eval_prints_the_scores_the_training_script_reported() {
    for model in ["data/linear.onnx", "data/transformer.onnx"] {
        let loaded = load(model, &spec(Some(10))).unwrap();
        let reported: f64 = loaded
            .metadata("pouwd.holdout_r2")
            .unwrap()
            .parse()
            .unwrap();
        let mse: f64 = loaded
            .metadata("pouwd.holdout_mse")
            .unwrap()
            .parse()
            .unwrap();
        let (ok, stdout, stderr) = eval(
            &[
                "--model",
                model,
                "--dataset",
                "data/diabetes.csv",
                "--target",
                "progression",
                "--holdout-every",
                "5",
                "--ort-ep",
                "cpu",
                "--json",
            ],
            &[],
        );
        assert!(ok, "{stderr}");
        assert!(
            stderr.contains("running on CPUExecutionProvider"),
            "{stderr}"
        );
        let json: Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(json["rows"], 88);
        assert_eq!(json["provider"], "CPUExecutionProvider");
        let r2 = json["r2"].as_f64().unwrap();
        assert!(
            (r2 - reported).abs() < 1e-5,
            "{model}: R² {r2}, trained {reported}"
        );
        let ours = json["mse"].as_f64().unwrap();
        assert!(
            (ours - mse).abs() < 1e-5 * mse,
            "{model}: MSE {ours}, trained {mse}"
        );
        assert!(json["rows_per_s"].as_f64().unwrap() > 0.0);
    }

    let (ok, stdout, stderr) = eval(
        &[
            "--model",
            "data/linear.onnx",
            "--dataset",
            "data/diabetes.csv",
            "--target",
            "progression",
            "--batch",
            "7",
        ],
        &[],
    );
    assert!(ok, "{stderr}");
    for line in ["R²: 0.", "MSE: ", "rows/s: ", "442 rows"] {
        assert!(stdout.contains(line), "no {line:?} in {stdout}");
    }
}

#[test]
fn eval_refuses_a_csv_that_does_not_fit() {
    let dir = tempfile::tempdir().unwrap();
    let data = std::fs::read_to_string(root("data/diabetes.csv")).unwrap();
    // The last feature column (s6) dropped.
    let fewer: String = data
        .lines()
        .map(|line| {
            let cells: Vec<&str> = line.split(',').collect();
            let mut kept = cells[..9].to_vec();
            kept.push(cells[10]);
            kept.join(",") + "\n"
        })
        .collect();
    let fewer_path = dir.path().join("fewer.csv");
    std::fs::write(&fewer_path, fewer).unwrap();
    let fewer_arg = fewer_path.to_str().unwrap();

    // The model names its columns: the missing one is named.
    let (ok, _, stderr) = eval(
        &[
            "--model",
            "data/linear.onnx",
            "--dataset",
            fewer_arg,
            "--target",
            "progression",
        ],
        &[],
    );
    assert!(!ok);
    assert!(stderr.contains("missing column \"s6\""), "{stderr}");

    // A model without column names: the counts are compared.
    let (ok, _, stderr) = eval(
        &[
            "--model",
            "tests/data/onnx/mean.onnx",
            "--dataset",
            fewer_arg,
            "--target",
            "progression",
        ],
        &[],
    );
    assert!(!ok);
    assert!(
        stderr.contains("does not fit tests/data/onnx/mean.onnx")
            && stderr.contains("takes 10 values per row")
            && stderr.contains("has 9 feature columns"),
        "{stderr}"
    );

    // The target column must be there.
    let (ok, _, stderr) = eval(
        &[
            "--model",
            "data/linear.onnx",
            "--dataset",
            "data/diabetes.csv",
            "--target",
            "y",
        ],
        &[],
    );
    assert!(!ok);
    assert!(stderr.contains("missing column \"y\""), "{stderr}");

    // An encoder gives features, not predictions.
    let (ok, _, stderr) = eval(
        &[
            "--model",
            "data/transformer_encoder.onnx",
            "--dataset",
            "data/diabetes.csv",
            "--target",
            "progression",
        ],
        &[],
    );
    assert!(!ok);
    assert!(stderr.contains("16 values per row"), "{stderr}");
}

#[test]
fn eval_without_the_library_says_how_to_install_it() {
    let (ok, _, stderr) = eval(
        &[
            "--model",
            "data/linear.onnx",
            "--dataset",
            "data/diabetes.csv",
            "--target",
            "progression",
        ],
        &[("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so")],
    );
    assert!(!ok);
    assert!(
        stderr.contains("/nonexistent/libonnxruntime.so") && stderr.contains("tools/ort_lib.sh"),
        "{stderr}"
    );
}

#[test]
fn eval_with_a_wrong_pinned_hash_names_both() {
    let (ok, _, stderr) = eval(
        &[
            "--model",
            "data/linear.onnx",
            "--dataset",
            "data/diabetes.csv",
            "--target",
            "progression",
            "--blake3",
            &"ab".repeat(32),
        ],
        &[],
    );
    assert!(!ok);
    assert!(
        stderr.contains(&"ab".repeat(32)) && stderr.contains("BLAKE3 hash is"),
        "{stderr}"
    );
}
