//! An `onnx_linear` chain run by real nodes: mining, a follower that has
//! only the chain file and fetches the dataset and the encoder from a
//! masternode, then validates every block with its own ONNX Runtime; and
//! the errors a user meets (no runtime, no CUDA, a changed encoder, a
//! graph or CSV that does not fit). Nodes listen on 127.0.0.1 only and are
//! killed when their handles drop.

use crate::support::node::{dir_arg, parse_mined, run, Node};
use pouwd::chain::Hash32;
use pouwd::consensus::params::{ChainParams, ModelKind, OnnxLinearParams};
use pouwd::node::datadir::{DEVNET_ONNX_JSON, DIABETES_CSV, TRANSFORMER_ENCODER_ONNX};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(90);
const ENCODER: &str = "transformer_encoder.onnx";

/// devnet-onnx with regtest's quick blocks.
fn quick_params() -> ChainParams {
    let mut params = ChainParams::from_json(DEVNET_ONNX_JSON).unwrap();
    let regtest = crate::support::chain::regtest_params();
    params.network = "regtest-onnx".into();
    params.initial_target = regtest.initial_target;
    params.target_block_ms = regtest.target_block_ms;
    params.retarget_window = 0;
    params.task.checkpoint_interval = regtest.task.checkpoint_interval;
    params.task.spot_checks = regtest.task.spot_checks;
    params.task.max_steps_per_block = regtest.task.max_steps_per_block;
    params
}

fn onnx_of(params: &mut ChainParams) -> &mut OnnxLinearParams {
    match &mut params.task.model {
        ModelKind::OnnxLinear(onnx) => onnx,
        ModelKind::Linear => unreachable!("an onnx_linear chain"),
    }
}

/// `dir/chain.json` for `params`, with the dataset and the encoder beside
/// it when `with_files`.
fn chain_dir(root: &Path, name: &str, params: &ChainParams, with_files: bool) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("chain.json"), params.to_json()).unwrap();
    if with_files {
        std::fs::write(dir.join("diabetes.csv"), DIABETES_CSV).unwrap();
        std::fs::write(dir.join(ENCODER), TRANSFORMER_ENCODER_ONNX).unwrap();
    }
    dir.join("chain.json")
}

fn arg(path: &Path) -> String {
    dir_arg(path)
}

/// `ADDR` of a node's `p2p: listening on ADDR as ID` line.
fn listen_addr(node: &Node) -> String {
    let line = node.wait_for(LIMIT, |l| l.starts_with("p2p: listening on "));
    let rest = &line["p2p: listening on ".len()..];
    rest.split(" as ").next().unwrap().to_string()
}

#[test]
fn a_follower_fetches_the_encoder_and_validates_the_chain_with_its_own_runtime() {
    let tmp = tempfile::tempdir().unwrap();
    let params = quick_params();
    let full = chain_dir(tmp.path(), "with-files", &params, true);
    let bare = chain_dir(tmp.path(), "chain-only", &params, false);
    let config = tmp.path().join("masternode.json");
    std::fs::write(
        &config,
        r#"{"reward_amount": 5000000000, "validation_threshold": 0.5, "validation_window": 10}"#,
    )
    .unwrap();
    let master = Node::start(&[
        "--data-dir",
        &arg(&tmp.path().join("master")),
        "--chain",
        &arg(&full),
        "--listen",
        "127.0.0.1:0",
        "--masternode",
        "--masternode-config",
        &arg(&config),
        "--mine",
        "--ort-ep",
        "cpu",
    ]);
    let addr = listen_addr(&master);
    master.wait_for(LIMIT, |l| parse_mined(l).is_some_and(|m| m.height >= 4));
    assert!(
        master
            .stderr()
            .contains("onnx: transformer_encoder.onnx: running on CPUExecutionProvider"),
        "{}",
        master.stderr()
    );

    let follower_dir = tmp.path().join("follower");
    let mut follower = Node::start(&[
        "--data-dir",
        &arg(&follower_dir),
        "--chain",
        &arg(&bare),
        "--peer",
        &addr,
        "--stop-at-height",
        "4",
        "--ort-ep",
        "cpu",
        "--ort-threads",
        "2",
    ]);
    follower.wait_for(LIMIT, |l| {
        l.contains("fetched ONNX encoder transformer_encoder.onnx")
    });
    assert_eq!(follower.wait(LIMIT), Some(0), "{}", follower.stderr());
    let lines = follower.lines();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("fetched dataset diabetes.csv")),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("p2p: sync: ")),
        "{lines:?}"
    );
    assert_eq!(
        std::fs::read(follower_dir.join("dataset").join(ENCODER)).unwrap(),
        TRANSFORMER_ENCODER_ONNX
    );
    // Both nodes hold the same blocks.
    let status = |dir: &Path| {
        let out = run(&["status", "--data-dir", &arg(dir), "--json"]);
        assert!(out.ok(), "{}", out.stderr);
        serde_json::from_str::<serde_json::Value>(&out.stdout).unwrap()
    };
    let theirs = status(&follower_dir);
    assert!(theirs["height"].as_u64().unwrap() >= 4, "{theirs}");
    let model = run(&[
        "export-model",
        "--data-dir",
        &arg(&follower_dir),
        "--out",
        "-",
    ]);
    assert!(model.ok(), "{}", model.stderr);
    let model: serde_json::Value = serde_json::from_str(&model.stdout).unwrap();
    assert_eq!(model["kind"], "onnx_linear");
    assert_eq!(model["encoder"]["file"], ENCODER);
    assert_eq!(model["weights"].as_array().unwrap().len(), 16);
}

/// `pouwd start` with ONNX Runtime at `library` (via ORT_DYLIB_PATH).
fn start_with_library(args: &[&str], library: &str) -> std::process::Output {
    Command::new(crate::support::node::BIN)
        .arg("start")
        .args(args)
        .env("ORT_DYLIB_PATH", library)
        .output()
        .unwrap()
}

#[test]
fn without_onnx_runtime_an_onnx_chain_stops_with_how_to_install_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    let missing = tmp.path().join("nowhere").join("libonnxruntime.so.1.31.1");
    let out = start_with_library(
        &["--data-dir", &arg(&dir), "--chain", "devnet-onnx"],
        &arg(&missing),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("transformer_encoder.onnx"), "{stderr}");
    assert!(stderr.contains("cannot load ONNX Runtime"), "{stderr}");
    assert!(stderr.contains("tools/ort_lib.sh"), "{stderr}");
    assert!(!dir.exists(), "nothing is created");

    // A native task on a chain that allows jobs with an encoder needs
    // ONNX Runtime too: every node runs the jobs' encoders.
    let mut allowing = crate::support::chain::regtest_params();
    allowing.network = "regtest-encoder".into();
    allowing.jobs.allow_encoder = true;
    let chain_dir = tmp.path().join("allowing");
    std::fs::create_dir_all(&chain_dir).unwrap();
    std::fs::write(chain_dir.join("chain.json"), allowing.to_json()).unwrap();
    std::fs::write(chain_dir.join("diabetes.csv"), DIABETES_CSV).unwrap();
    let out = start_with_library(
        &[
            "--data-dir",
            &arg(&dir),
            "--chain",
            &arg(&chain_dir.join("chain.json")),
            "--stop-at-height",
            "0",
        ],
        &arg(&missing),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("allows training jobs with an ONNX encoder"),
        "{stderr}"
    );
    assert!(stderr.contains("cannot load ONNX Runtime"), "{stderr}");
    assert!(!dir.exists(), "nothing is created");

    // The native task needs no ONNX Runtime at all.
    let out = start_with_library(
        &[
            "--data-dir",
            &arg(&dir),
            "--chain",
            "regtest",
            "--stop-at-height",
            "0",
        ],
        &arg(&missing),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn cuda_asked_for_is_cuda_or_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    let out = run(&[
        "start",
        "--data-dir",
        &arg(&dir),
        "--chain",
        "devnet-onnx",
        "--ort-ep",
        "cuda",
        "--stop-at-height",
        "0",
    ]);
    if out.ok() {
        // A machine with CUDA: the session says so.
        assert!(
            out.stderr.contains("running on CUDAExecutionProvider"),
            "{}",
            out.stderr
        );
        return;
    }
    assert!(out.stderr.contains("CUDA"), "{}", out.stderr);
    assert!(!out.stderr.contains("running on CPU"), "{}", out.stderr);
    // The same data dir runs on the CPU when asked to.
    let out = run(&[
        "start",
        "--data-dir",
        &arg(&dir),
        "--ort-ep",
        "cpu",
        "--stop-at-height",
        "0",
    ]);
    assert!(out.ok(), "{}", out.stderr);
    assert!(
        out.stderr.contains("running on CPUExecutionProvider"),
        "{}",
        out.stderr
    );
}

/// Start a node on a chain file beside the shipped files, expecting a refusal.
fn refused(params: &ChainParams, files: &[(&str, &[u8])]) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let chain = chain_dir(tmp.path(), "chain", params, true);
    for (name, bytes) in files {
        std::fs::write(tmp.path().join("chain").join(name), bytes).unwrap();
    }
    let out = run(&[
        "start",
        "--data-dir",
        &arg(&tmp.path().join("node")),
        "--chain",
        &arg(&chain),
        "--ort-ep",
        "cpu",
        "--stop-at-height",
        "0",
    ]);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    out.stderr
}

#[test]
fn an_encoder_whose_hash_differs_from_the_chains_is_refused() {
    let mut changed = TRANSFORMER_ENCODER_ONNX.to_vec();
    let last = changed.len() - 1;
    changed[last] ^= 1;
    let stderr = refused(&quick_params(), &[(ENCODER, &changed)]);
    let found = Hash32(*blake3::hash(&changed).as_bytes());
    let pinned = onnx_of(&mut quick_params()).blake3;
    assert!(stderr.contains("ONNX encoder"), "{stderr}");
    assert!(stderr.contains(&found.to_hex()), "{stderr}");
    assert!(stderr.contains(&pinned.to_hex()), "{stderr}");
}

#[test]
fn a_file_that_is_not_onnx_is_refused() {
    let garbage = b"this is not an ONNX graph".to_vec();
    let mut params = quick_params();
    onnx_of(&mut params).blake3 = Hash32(*blake3::hash(&garbage).as_bytes());
    let stderr = refused(&params, &[(ENCODER, &garbage)]);
    assert!(stderr.contains("transformer_encoder.onnx"), "{stderr}");
    assert!(stderr.contains("not an ONNX model"), "{stderr}");
}

#[test]
fn a_graph_input_other_than_the_chains_is_refused() {
    let mut params = quick_params();
    onnx_of(&mut params).input = "rows".into();
    let stderr = refused(&params, &[]);
    assert!(stderr.contains("\"rows\""), "{stderr}");
    assert!(stderr.contains("\"features\""), "{stderr}");
}

#[test]
fn an_output_width_other_than_the_chains_is_refused() {
    let mut params = quick_params();
    onnx_of(&mut params).width = 8;
    let stderr = refused(&params, &[]);
    assert!(
        stderr.contains("has 16 values per row, the chain's task expects 8"),
        "{stderr}"
    );
}

#[test]
fn a_csv_that_does_not_fit_the_encoder_is_refused() {
    let mut params = quick_params();
    // Nine feature columns for an encoder that takes ten.
    params.task.dataset.features = Some(
        ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5"]
            .map(String::from)
            .to_vec(),
    );
    let stderr = refused(&params, &[]);
    assert!(stderr.contains("10"), "{stderr}");
    assert!(stderr.contains("9"), "{stderr}");
    assert!(stderr.contains("features"), "{stderr}");
}

/// `pouwd export-model --format onnx` of a mined chain, run by Python's
/// onnxruntime on the CSV's raw rows, gives the node's predictions: the
/// node's own encoder outputs (ort, CPU) through the chain's head, in f64.
#[test]
fn an_exported_onnx_model_predicts_what_the_node_predicts() {
    use pouwd::dataset::CsvDataset;
    use pouwd::model::linear;
    use pouwd::model::onnx::{ExecutionProvider, OrtSetup, SessionConfig};
    use pouwd::node::chain::{prepare_task, TaskFiles};
    let tmp = tempfile::tempdir().unwrap();
    let onnx_chain = chain_dir(tmp.path(), "onnx", &quick_params(), true);
    for (name, chain) in [
        ("linear", "regtest".to_string()),
        ("onnx_linear", arg(&onnx_chain)),
    ] {
        let dir = tmp.path().join(format!("node-{name}"));
        let out = run(&[
            "start",
            "--data-dir",
            &arg(&dir),
            "--chain",
            &chain,
            "--mine",
            "--stop-at-height",
            "3",
            "--ort-ep",
            "cpu",
        ]);
        assert!(out.ok(), "{}", out.stderr);
        let file = tmp.path().join(format!("{name}.onnx"));
        let out = run(&[
            "export-model",
            "--data-dir",
            &arg(&dir),
            "--format",
            "onnx",
            "--out",
            &arg(&file),
        ]);
        assert!(out.ok(), "{}", out.stderr);
        let out = run(&["export-model", "--data-dir", &arg(&dir), "--out", "-"]);
        assert!(out.ok(), "{}", out.stderr);
        let json: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(json["kind"], name);
        assert_eq!(json["height"], 3);
        let mut params: Vec<f64> = json["weights"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w.as_f64().unwrap())
            .collect();
        params.push(json["bias"].as_f64().unwrap());

        // The node's side: its task's inputs for every row, in file order.
        let chain_params: ChainParams =
            ChainParams::from_json(&std::fs::read_to_string(dir.join("chain.json")).unwrap())
                .unwrap();
        let files = TaskFiles {
            dataset: DIABETES_CSV.to_vec(),
            encoder: chain_params
                .task
                .model
                .onnx()
                .map(|_| TRANSFORMER_ENCODER_ONNX.to_vec()),
        };
        let ort = OrtSetup {
            library: None,
            session: SessionConfig {
                provider: ExecutionProvider::Cpu,
                intra_threads: 1,
            },
        };
        let (task, _) = prepare_task(&chain_params, &files, &ort).unwrap();
        let data = &task.data;
        let width = data.features();
        assert_eq!(params.len(), width + 1);
        let (mut train, mut holdout) = (data.train_x.chunks(width), data.holdout_x.chunks(width));
        let csv = CsvDataset::from_bytes("diabetes.csv", DIABETES_CSV).unwrap();
        let target = csv.columns.iter().position(|c| c == "progression").unwrap();
        let mut raw = Vec::new();
        let mut ours = Vec::new();
        for (r, row) in csv.numeric_rows().unwrap().iter().enumerate() {
            let inputs = if r % 5 == 4 {
                holdout.next()
            } else {
                train.next()
            };
            let standardised = linear::predict(&params, inputs.unwrap());
            ours.push(standardised * data.target_scaling.std + data.target_scaling.mean);
            raw.extend(
                row.iter()
                    .enumerate()
                    .filter(|&(c, _)| c != target)
                    .map(|(_, &v)| v as f32),
            );
        }
        let theirs = crate::onnx::python_outputs(&arg(&file), &raw, 10);
        assert_eq!(theirs.len(), ours.len());
        let bound = 2e-6 * data.target_scaling.std;
        let worst = ours
            .iter()
            .zip(&theirs)
            .map(|(a, &b)| (a - f64::from(b)).abs())
            .fold(0.0, f64::max);
        assert!(
            worst <= bound,
            "{name}: largest difference {worst}, bound {bound}"
        );
        // And the model is not trivial: its predictions vary.
        let spread = ours.iter().fold(0.0f64, |m, y| m.max((y - ours[0]).abs()));
        assert!(spread > 10.0, "{name}: predictions vary ({spread})");
    }
}

/// A chain on data/diamonds-small.csv, whose cut, color and clarity are text:
/// the node one-hot encodes them, and both exports predict new rows as
/// the node would, a category the training rows never had included: the
/// JSON through tools/predict.py, the ONNX graph (which takes the raw text
/// cells and encodes them itself) through Python's onnxruntime and
/// `pouwd eval`, which also scores the chain's holdout rows as the chain
/// does.
#[test]
fn a_chain_with_text_columns_exports_models_that_encode_new_rows_alike() {
    use pouwd::dataset::{CsvDataset, FeatureSource};
    use pouwd::model::linear;
    const DIAMONDS_CSV: &[u8] = include_bytes!("../data/diamonds-small.csv");
    let tmp = tempfile::tempdir().unwrap();
    let mut params = crate::support::chain::regtest_params();
    params.network = "regtest-diamonds".into();
    params.task.dataset.file = "diamonds.csv".into();
    params.task.dataset.blake3 = Hash32(*blake3::hash(DIAMONDS_CSV).as_bytes());
    params.task.dataset.target = "price".into();
    let dir = tmp.path().join("chain");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("chain.json"), params.to_json()).unwrap();
    std::fs::write(dir.join("diamonds.csv"), DIAMONDS_CSV).unwrap();
    let node = tmp.path().join("node");
    let out = run(&[
        "start",
        "--data-dir",
        &arg(&node),
        "--chain",
        &arg(&dir.join("chain.json")),
        "--mine",
        "--stop-at-height",
        "3",
    ]);
    assert!(out.ok(), "{}", out.stderr);

    let out = run(&["export-model", "--data-dir", &arg(&node), "--out", "-"]);
    assert!(out.ok(), "{}", out.stderr);
    let model: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let names: Vec<&str> = model["feature_names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    // carat, then cut's five categories sorted byte-wise, and so on.
    assert_eq!(
        names[..6],
        [
            "carat",
            "cut=Fair",
            "cut=Good",
            "cut=Ideal",
            "cut=Premium",
            "cut=Very Good"
        ]
    );
    assert_eq!(names.len(), 1 + 5 + 7 + 8 + 2);
    let features = model["normalisation"]["features"].as_array().unwrap();
    assert_eq!(features[3]["column"], "cut");
    assert_eq!(features[3]["category"], "Ideal");
    assert_eq!(features[0]["column"], "carat");
    assert!(features[0].get("category").is_none());

    // New rows: the first twenty, one with a cut and one with a colour
    // the chain never saw, and a cell with spaces around it.
    let text = String::from_utf8(DIAMONDS_CSV.to_vec()).unwrap();
    let mut lines: Vec<String> = text.lines().take(21).map(str::to_string).collect();
    lines[3] = lines[3].replacen("Ideal", "Astounding", 1);
    lines[4] = lines[4].replacen(",J,", ",Z,", 1);
    lines[7] = lines[7].replacen(",Ideal,", ", Ideal ,", 1);
    let new_csv = tmp.path().join("new.csv");
    std::fs::write(&new_csv, lines.join("\n") + "\n").unwrap();

    // The node's arithmetic on the new rows, in f64.
    let sources: Vec<FeatureSource> = features
        .iter()
        .map(|f| serde_json::from_value(f.clone()).unwrap())
        .collect();
    let bytes = std::fs::read(&new_csv).unwrap();
    let data = CsvDataset::from_bytes("new.csv", &bytes).unwrap();
    let raw = data.encode(&sources).unwrap();
    let d = sources.len();
    assert_eq!(raw[2 * d + 1..2 * d + 6], [0.0; 5], "unseen cut: all zeros");
    assert_eq!(raw[6 * d + 3], 1.0, "the trimmed cell is Ideal");
    assert_eq!(
        raw[3 * d + 6..3 * d + 13],
        [0.0; 7],
        "unseen color: all zeros"
    );
    let mut params: Vec<f64> = model["weights"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_f64().unwrap())
        .collect();
    params.push(model["bias"].as_f64().unwrap());
    let target = &model["normalisation"]["target"];
    let (mean, std) = (
        target["mean"].as_f64().unwrap(),
        target["std"].as_f64().unwrap(),
    );
    let ours: Vec<f64> = raw
        .chunks(d)
        .map(|row| {
            let z: Vec<f64> = row
                .iter()
                .zip(features)
                .map(|(x, f)| (x - f["mean"].as_f64().unwrap()) / f["std"].as_f64().unwrap())
                .collect();
            linear::predict(&params, &z) * std + mean
        })
        .collect();
    assert_eq!(ours.len(), 20);

    // tools/predict.py on the JSON.
    let json_file = tmp.path().join("model.json");
    std::fs::write(&json_file, &out.stdout).unwrap();
    let predictions = tmp.path().join("pred.txt");
    let py = Command::new("python3")
        .arg(format!("{}/tools/predict.py", env!("CARGO_MANIFEST_DIR")))
        .args(["--model", &arg(&json_file), "--csv", &arg(&new_csv)])
        .args(["--out", &arg(&predictions)])
        .output()
        .unwrap();
    assert!(
        py.status.success(),
        "{}",
        String::from_utf8_lossy(&py.stderr)
    );
    let python: Vec<f64> = std::fs::read_to_string(&predictions)
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert_eq!(python.len(), ours.len());
    for (a, b) in ours.iter().zip(&python) {
        assert!((a - b).abs() <= 1e-9 * a.abs().max(1.0), "{a} vs {b}");
    }

    // pouwd eval on the ONNX graph scores the same predictions.
    let onnx_file = tmp.path().join("model.onnx");
    let out = run(&[
        "export-model",
        "--data-dir",
        &arg(&node),
        "--format",
        "onnx",
        "--out",
        &arg(&onnx_file),
    ]);
    assert!(out.ok(), "{}", out.stderr);
    let (ok, stdout, stderr) = crate::onnx::eval(
        &[
            "--model",
            &arg(&onnx_file),
            "--dataset",
            &arg(&new_csv),
            "--target",
            "price",
            "--ort-ep",
            "cpu",
            "--json",
        ],
        &[],
    );
    assert!(ok, "{stderr}");
    let scored: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(scored["rows"], 20);
    assert_eq!(scored["features"].as_array().unwrap().len(), d);
    let actual = data.numeric("price").unwrap();
    let mse = ours
        .iter()
        .zip(actual)
        .map(|(p, y)| (p - y) * (p - y))
        .sum::<f64>()
        / 20.0;
    let eval_mse = scored["mse"].as_f64().unwrap();
    assert!(
        (eval_mse - mse).abs() <= 1e-5 * mse,
        "eval's MSE {eval_mse}, the node's {mse}"
    );

    // Python's onnxruntime on the raw columns: the numeric ones as float32,
    // the text cells as strings, in the order the metadata pouwd.inputs
    // gives (checked by the script's feed); an unseen cut or colour is
    // encoded inside the graph as all zeros, as the node encodes it.
    let (numeric, text) = (["carat", "depth", "table"], ["cut", "color", "clarity"]);
    let rows: Vec<Vec<f32>> = (0..20)
        .map(|r| {
            numeric
                .iter()
                .map(|c| data.numeric(c).unwrap()[r] as f32)
                .collect()
        })
        .collect();
    let cells: Vec<Vec<String>> = (0..20)
        .map(|r| {
            text.iter()
                .map(|c| match &data.data[data.column_index(c).unwrap()] {
                    pouwd::dataset::Column::Text { cells, .. } => cells[r].clone(),
                    _ => panic!("{c} is text"),
                })
                .collect()
        })
        .collect();
    assert_eq!(cells[2][0], "Astounding");
    assert_eq!(cells[6][0], "Ideal", "trimmed as the node trims");
    let theirs = crate::onnx::python_outputs_text(&arg(&onnx_file), &rows, &cells);
    assert_eq!(theirs.len(), 20);
    for (a, b) in ours.iter().zip(&theirs) {
        let b = f64::from(*b);
        assert!(
            (a - b).abs() <= 1e-4 * a.abs().max(1.0),
            "onnxruntime gives {b}, the node {a}"
        );
    }
    assert!(
        ours.iter().any(|y| (y - ours[0]).abs() > 100.0),
        "the predictions vary"
    );

    // The graph's inputs, as its metadata names them.
    let meta = Command::new(crate::onnx::python())
        .args([
            "-c",
            "import sys, onnxruntime as ort; s = ort.InferenceSession(sys.argv[1]); \
             print([(i.name, i.type, i.shape[1]) for i in s.get_inputs()]); \
             print(s.get_modelmeta().custom_metadata_map['pouwd.inputs'])",
            &arg(&onnx_file),
        ])
        .output()
        .unwrap();
    assert!(
        meta.status.success(),
        "{}",
        String::from_utf8_lossy(&meta.stderr)
    );
    assert_eq!(
        String::from_utf8(meta.stdout).unwrap(),
        "[('features', 'tensor(float)', 3), ('text', 'tensor(string)', 3)]\n\
         {\"features\":[\"carat\",\"depth\",\"table\"],\"text\":[\"cut\",\"color\",\"clarity\"]}\n"
    );

    // pouwd eval on the chain's holdout rows gives the R² the chain reports.
    let (ok, stdout, stderr) = crate::onnx::eval(
        &[
            "--model",
            &arg(&onnx_file),
            "--dataset",
            "data/diamonds-small.csv",
            "--target",
            "price",
            "--holdout-every",
            "5",
            "--ort-ep",
            "cpu",
            "--json",
        ],
        &[],
    );
    assert!(ok, "{stderr}");
    let scored: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(scored["rows"], 100);
    let r2 = scored["r2"].as_f64().unwrap();
    let chain = model["score_ppm"].as_f64().unwrap() / 1e6;
    assert!(r2 > 0.5, "R² {r2}");
    assert!(
        (r2 - chain).abs() <= 2e-6,
        "eval's R² {r2}, the chain's {chain}"
    );
}
