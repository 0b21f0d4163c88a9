//! Training jobs end to end through real node processes: a funded
//! account submits a job with `pouwd job submit` to its own (non-mining)
//! node, a peer mines it to its end, both nodes agree on the job, the
//! payouts and the refund, and `pouwd export-model --job` gives the same
//! delivered model on both data dirs.

use crate::api::{api_addr, get};
use crate::p2p::{dirs, mine_to, start, stop, LIMIT};
use crate::support::net::{free_port, local};
use crate::support::node::{dir_arg, run, Node};
use pouwd::chain::Hash32;
use pouwd::node::DataDir;
use pouwd::store::Store;
use serde_json::Value;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

const TOKEN: u64 = 100_000_000;

/// A node on `dir` with its API on a free loopback port.
fn api_node(dir: &Path, listen: &str, peers: &[&str], mine: bool) -> (Node, SocketAddr) {
    let mut args = vec!["--api", "127.0.0.1:0", "--listen", listen];
    for peer in peers {
        args.extend(["--peer", peer]);
    }
    if mine {
        args.push("--mine");
    }
    let node = start(dir, &args);
    let addr = api_addr(&node);
    (node, addr)
}

fn id_of(dir: &Path) -> Hash32 {
    let key = DataDir::new(dir).load_key().expect("the data dir's key");
    Hash32(key.verifying_key().to_bytes())
}

/// Wait until `check` gives a value, polling every 50 ms, for at most 2 × `LIMIT`.
fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(found) = check() {
            return found;
        }
        assert!(started.elapsed() < 2 * LIMIT, "never: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `GET /jobs/{id}` once the job has ended on the node at `addr`.
fn ended(addr: SocketAddr, id: &str) -> Option<Value> {
    let (status, _, body) = crate::api::request(addr, "GET", &format!("/jobs/{id}"));
    assert!(
        status == 200 || status == 404,
        "GET /jobs/{id}: {status} {body}"
    );
    (body["state"] == "ended").then_some(body)
}

fn export(dir: &Path, id: &str, format: &str) -> Vec<u8> {
    let file = dir.with_extension(format!("job.{format}"));
    let out = run(&[
        "export-model",
        "--data-dir",
        &dir_arg(dir),
        "--job",
        id,
        "--format",
        format,
        "--out",
        &dir_arg(&file),
    ]);
    assert!(out.ok(), "export-model --job failed: {}", out.stderr);
    std::fs::read(file).unwrap()
}

#[test]
fn a_job_submitted_on_one_node_is_mined_on_another_and_both_agree_on_its_end() {
    let tmp = tempfile::tempdir().unwrap();
    let [a, b] = dirs(tmp.path(), ["a", "b"]);
    // The first 200 rows of the diabetes data.
    let csv = tmp.path().join("diabetes-200.csv");
    let text = std::fs::read_to_string("data/diabetes.csv").unwrap();
    let head: Vec<&str> = text.lines().take(201).collect();
    std::fs::write(&csv, head.join("\n") + "\n").unwrap();
    let bad = tmp.path().join("bad.csv");
    std::fs::write(&bad, "age,progression\n1,2\n3,x\n").unwrap();

    // A's first two rewards mature at height 12 (validation_window 10).
    mine_to(&a, 12);
    let (la, lb) = (local(free_port()), local(free_port()));
    let (mut node_a, api_a) = api_node(&a, &la, &[], true);
    let (mut node_b, api_b) = api_node(&b, &lb, &[&la], false);
    let (ida, idb) = (id_of(&a).to_hex(), id_of(&b).to_hex());

    // B has nothing yet: A pays it 10 tokens.
    let out = run(&[
        "send",
        "--data-dir",
        &dir_arg(&a),
        "--to",
        &idb,
        "--amount",
        "10",
    ]);
    assert!(out.ok(), "send: {}", out.stderr);
    let transfer = out.stdout.trim().to_string();
    eventually("B sees the transfer mined", || {
        let (status, _, body) = crate::api::request(api_b, "GET", &format!("/tx/{transfer}"));
        (status == 200 && body["state"] == "in_block").then_some(())
    });

    // A bad file is reported with its line and column, and nothing is sent.
    let b_dir = dir_arg(&b);
    let submit = |dataset: &Path| {
        run(&[
            "job",
            "submit",
            "--data-dir",
            &b_dir,
            "--dataset",
            &dir_arg(dataset),
            "--target",
            "progression",
            "--head",
            "mlp:4",
            "--max-blocks",
            "5",
            "--patience",
            "5",
            "--bounty",
            "1.00000003",
        ])
    };
    let out = submit(&bad);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(
        out.stderr.contains("bad.csv: line 3, column 2"),
        "{}",
        out.stderr
    );
    assert_eq!(get(api_b, "/mempool")["count"], 0);

    let out = submit(&csv);
    assert!(out.ok(), "job submit: {}", out.stderr);
    assert!(out.stderr.contains("becomes public"), "{}", out.stderr);
    let id = out.stdout.trim().to_string();
    assert!(out.stderr.contains("pouwd job show"), "{}", out.stderr);
    let fee = get(api_b, &format!("/tx/{id}"))["fee"].as_u64().unwrap();

    let on_a = eventually("A ends the job", || ended(api_a, &id));
    let on_b = eventually("B sees the job end", || ended(api_b, &id));
    assert_eq!(on_a, on_b, "the nodes disagree on the job");
    let bounty = TOKEN + 3;
    let pay = bounty / 5;
    assert_eq!(on_a["blocks"], 5);
    assert_eq!(on_a["end_reason"], "max_blocks");
    assert_eq!(on_a["bounty"], bounty);
    assert_eq!(on_a["pay_per_block"], pay);
    assert_eq!(on_a["paid"], 5 * pay);
    assert_eq!(on_a["refunded"], bounty - 5 * pay);
    assert_eq!(on_a["refunded"], 3);
    assert_eq!(on_a["sender"], idb);
    assert_eq!(on_a["spec"]["head"], "mlp:4");
    let curve = on_a["curve"].as_array().unwrap();
    assert_eq!(curve.len(), 5);
    for (n, point) in curve.iter().enumerate() {
        assert_eq!(point["job_block"], n);
        assert_eq!(point["miner"], ida);
    }
    assert_eq!(on_a["miners"][0]["miner"], ida);
    assert_eq!(on_a["miners"][0]["blocks"], 5);
    assert_eq!(on_a["miners"][0]["paid"], 5 * pay);
    let delivered = &on_a["delivered"];
    assert_eq!(delivered["score_ppm"], on_a["best_score_ppm"]);
    let listed = get(api_b, "/jobs");
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(listed[0]["state"], "ended");

    // The commands show the same, through the API.
    let out = run(&["job", "list", "--data-dir", &b_dir]);
    assert!(out.ok(), "{}", out.stderr);
    assert!(out.stdout.contains(&id[..16]), "{}", out.stdout);
    let out = run(&["job", "show", "--data-dir", &b_dir, &id]);
    assert!(out.ok(), "{}", out.stderr);
    assert!(
        out.stdout.contains("state: ended at height"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("5 block(s), 1.00000000"),
        "{}",
        out.stdout
    );

    // A's log names the job in each of its blocks.
    let short = &id[..16];
    for n in 0..5 {
        let needle = format!(" job={short} job_block={n} ");
        assert!(
            node_a.lines().iter().any(|l| l.contains(&needle)),
            "no mined line with {needle}"
        );
    }

    stop(&mut node_a);
    stop(&mut node_b);

    // A was paid 5 blocks of the job on top of its rewards and fees; B paid
    // the bounty and fee and got the rest back.
    let store = Store::open(&a.join("store")).unwrap();
    let height = store.tip().unwrap().height;
    let account = store.account(&id_of(&a)).unwrap();
    let total = account.spendable + account.immature;
    assert_eq!(total, height * 50 * TOKEN - 10 * TOKEN + fee + 5 * pay);
    drop(store);
    let store = Store::open(&b.join("store")).unwrap();
    let account = store.account(&id_of(&b)).unwrap();
    assert_eq!(
        account.spendable + account.immature,
        10 * TOKEN - bounty - fee + 3
    );
    drop(store);

    // Both data dirs deliver the same model.
    let json_a = export(&a, &id, "json");
    assert_eq!(json_a, export(&b, &id, "json"));
    let model: Value = serde_json::from_slice(&json_a).unwrap();
    assert_eq!(model["format"], "pouwd-mlp-model/1");
    assert_eq!(model["block"], delivered["block"]);
    assert_eq!(model["w1"].as_array().unwrap().len(), 4);
    assert_eq!(model["w1"][0].as_array().unwrap().len(), 10);
    let onnx = export(&a, &id, "onnx");
    assert_eq!(onnx, export(&b, &id, "onnx"));

    // Python's onnxruntime runs the graph as the JSON's formula predicts.
    let file = tmp.path().join("job.onnx");
    std::fs::write(&file, &onnx).unwrap();
    let rows: Vec<Vec<f64>> = head[1..]
        .iter()
        .map(|line| {
            line.split(',')
                .take(10)
                .map(|v| v.parse().unwrap())
                .collect()
        })
        .collect();
    let raw: Vec<f32> = rows.iter().flatten().map(|v| *v as f32).collect();
    let theirs = crate::onnx::python_outputs(file.to_str().unwrap(), &raw, 10);
    let numbers = |v: &Value| -> Vec<f64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    };
    let norm = &model["normalisation"];
    let (b1, w2) = (numbers(&model["b1"]), numbers(&model["w2"]));
    let w1: Vec<Vec<f64>> = model["w1"]
        .as_array()
        .unwrap()
        .iter()
        .map(numbers)
        .collect();
    for (row, got) in rows.iter().zip(&theirs) {
        let z: Vec<f64> = row
            .iter()
            .zip(norm["features"].as_array().unwrap())
            .map(|(x, f)| {
                (f64::from(*x as f32) - f["mean"].as_f64().unwrap()) / f["std"].as_f64().unwrap()
            })
            .collect();
        let mut y = model["b2"].as_f64().unwrap();
        for u in 0..4 {
            let a: f64 = b1[u] + w1[u].iter().zip(&z).map(|(w, z)| w * z).sum::<f64>();
            y += w2[u] * a.max(0.0);
        }
        let y =
            y * norm["target"]["std"].as_f64().unwrap() + norm["target"]["mean"].as_f64().unwrap();
        assert!(
            (f64::from(*got) - y).abs() <= 1e-4 * y.abs().max(1.0),
            "onnxruntime gives {got}, the JSON model {y}"
        );
    }
}

/// A job with an ONNX encoder, through a real node on a chain that
/// allows them: `pouwd job submit --encoder` is refused, with the reason,
/// when the encoder does not fit the job's columns; a fitting one is mined
/// to its end; and the exported graph (the encoder, then the head) run by
/// Python's onnxruntime on the job's holdout rows scores what the chain
/// says its delivered model scores.
#[test]
fn a_job_with_an_onnx_encoder_is_mined_and_its_exported_graph_scores_as_the_chain_says() {
    let tmp = tempfile::tempdir().unwrap();
    let chain_dir = tmp.path().join("chain");
    std::fs::create_dir_all(&chain_dir).unwrap();
    let mut params = crate::support::chain::regtest_params();
    params.network = "regtest-encoder".into();
    params.jobs.allow_encoder = true;
    std::fs::write(chain_dir.join("chain.json"), params.to_json()).unwrap();
    std::fs::copy("data/diabetes.csv", chain_dir.join("diabetes.csv")).unwrap();
    let csv = tmp.path().join("diabetes-200.csv");
    let text = std::fs::read_to_string("data/diabetes.csv").unwrap();
    let head: Vec<&str> = text.lines().take(201).collect();
    std::fs::write(&csv, head.join("\n") + "\n").unwrap();

    let a = tmp.path().join("a");
    let chain_file = dir_arg(&chain_dir.join("chain.json"));
    let node_args = [
        "--data-dir",
        &dir_arg(&a),
        "--chain",
        &chain_file,
        "--api",
        "127.0.0.1:0",
        "--listen",
        "127.0.0.1:0",
        "--mine",
    ];
    let mut node = Node::start(&node_args);
    node.wait_for(LIMIT, |l| l.starts_with("node started"));
    let addr = api_addr(&node);
    // The first rewards mature at height 11.
    eventually("rewards mature", || {
        (get(addr, "/status")["height"].as_u64()? >= 12).then_some(())
    });

    let submit = |features: Option<&str>| {
        let mut args = vec![
            "job".to_string(),
            "submit".into(),
            "--data-dir".into(),
            dir_arg(&a),
            "--dataset".into(),
            dir_arg(&csv),
            "--target".into(),
            "progression".into(),
            "--encoder".into(),
            "data/transformer_encoder.onnx".into(),
            "--max-blocks".into(),
            "3".into(),
            "--bounty".into(),
            "1".into(),
        ];
        if let Some(features) = features {
            args.extend(["--features".to_string(), features.to_string()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&args)
    };
    // The encoder takes 10 features; a job on 2 columns cannot run it.
    let out = submit(Some("age,bmi"));
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(
        out.stderr.contains("cannot be trained") && out.stderr.contains("2 feature columns"),
        "{}",
        out.stderr
    );
    assert_eq!(get(addr, "/mempool")["count"], 0);

    let out = submit(None);
    assert!(out.ok(), "job submit --encoder: {}", out.stderr);
    let id = out.stdout.trim().to_string();
    let done = eventually("the job ends", || ended(addr, &id));
    assert_eq!(done["blocks"], 3);
    assert_eq!(
        done["spec"]["encoder_blake3"],
        blake3::hash(&std::fs::read("data/transformer_encoder.onnx").unwrap())
            .to_hex()
            .as_str()
    );
    let score_ppm = done["best_score_ppm"].as_f64().unwrap();
    assert!(score_ppm > 0.0, "{done}");
    stop(&mut node);

    let model: Value = serde_json::from_slice(&export(&a, &id, "json")).unwrap();
    assert_eq!(model["weights"].as_array().unwrap().len(), 16);
    assert_eq!(model["encoder"]["output_width"], 16);
    let onnx = export(&a, &id, "onnx");
    let file = tmp.path().join("encoder-job.onnx");
    std::fs::write(&file, &onnx).unwrap();
    // Data row r is a holdout row when r % 5 == 4; the chain scores its
    // delivered model on all of them.
    let rows: Vec<Vec<f64>> = head[1..]
        .iter()
        .enumerate()
        .filter(|(r, _)| r % 5 == 4)
        .map(|(_, line)| line.split(',').map(|v| v.parse().unwrap()).collect())
        .collect();
    let raw: Vec<f32> = rows
        .iter()
        .flat_map(|row| row[..10].iter().map(|v| *v as f32))
        .collect();
    let predicted = crate::onnx::python_outputs(file.to_str().unwrap(), &raw, 10);
    let y: Vec<f64> = rows.iter().map(|row| row[10]).collect();
    let mean = y.iter().sum::<f64>() / y.len() as f64;
    let total: f64 = y.iter().map(|v| (v - mean).powi(2)).sum();
    let residual: f64 = y
        .iter()
        .zip(&predicted)
        .map(|(v, p)| (v - f64::from(*p)).powi(2))
        .sum();
    let r2_ppm = (1.0 - residual / total) * 1e6;
    assert!(
        (r2_ppm - score_ppm).abs() <= 50.0,
        "onnxruntime's graph scores {r2_ppm} ppm, the chain {score_ppm}"
    );
}

/// A miner is not silent when its work gives no block, and says so once
/// per job: on a chain whose runs are 3 steps long most runs draw no
/// ticket, and a job whose learning rate is far too large trains models
/// that score 0. The job ends by its patience and the chain goes on.
#[test]
fn a_miner_says_once_per_job_why_its_runs_give_no_block_or_do_not_learn() {
    let tmp = tempfile::tempdir().unwrap();
    let chain_dir = tmp.path().join("chain");
    std::fs::create_dir_all(&chain_dir).unwrap();
    let mut params = crate::support::chain::regtest_params();
    params.network = "regtest-short-runs".into();
    params.task.max_steps_per_block = 3;
    std::fs::write(chain_dir.join("chain.json"), params.to_json()).unwrap();
    std::fs::copy("data/diabetes.csv", chain_dir.join("diabetes.csv")).unwrap();
    let csv = tmp.path().join("diabetes-200.csv");
    let text = std::fs::read_to_string("data/diabetes.csv").unwrap();
    let head: Vec<&str> = text.lines().take(201).collect();
    std::fs::write(&csv, head.join("\n") + "\n").unwrap();

    let a = tmp.path().join("a");
    let mut node = Node::start(&[
        "--data-dir",
        &dir_arg(&a),
        "--chain",
        &dir_arg(&chain_dir.join("chain.json")),
        "--api",
        "127.0.0.1:0",
        "--listen",
        "127.0.0.1:0",
        "--mine",
    ]);
    node.wait_for(LIMIT, |l| l.starts_with("node started"));
    let addr = api_addr(&node);
    eventually("rewards mature", || {
        (get(addr, "/status")["height"].as_u64()? >= 12).then_some(())
    });
    let out = run(&[
        "job",
        "submit",
        "--data-dir",
        &dir_arg(&a),
        "--dataset",
        &dir_arg(&csv),
        "--target",
        "progression",
        "--learning-rate",
        "1000",
        "--max-blocks",
        "50",
        "--patience",
        "3",
        "--bounty",
        "1",
    ]);
    assert!(out.ok(), "job submit: {}", out.stderr);
    let id = out.stdout.trim().to_string();
    let done = eventually("the job ends", || ended(addr, &id));
    assert_eq!(done["end_reason"], "patience", "{done}");
    // The first block sets the mark; three more without a rise end it.
    assert_eq!(done["blocks"], 4, "{done}");
    let end = done["ended_height"].as_u64().expect("an end height");
    eventually("the chain goes on past the job", || {
        (get(addr, "/status")["height"].as_u64()? > end + 2).then_some(())
    });
    stop(&mut node);

    let stderr = node.stderr();
    let said = |needle: &str| -> Vec<String> {
        stderr
            .lines()
            .map(str::to_string)
            .filter(|l| l.starts_with("miner: ") && l.contains(needle))
            .collect()
    };
    // Once per job and reason, however many runs gave no block.
    let no_ticket = said("steps drew no ticket under the target");
    let short = &id[..16];
    let genesis: Vec<&String> = no_ticket
        .iter()
        .filter(|l| l.starts_with("miner: job genesis block "))
        .collect();
    assert_eq!(genesis.len(), 1, "{no_ticket:?}");
    assert!(genesis[0].contains(": 3 steps drew"), "{genesis:?}");
    let on_job = no_ticket
        .iter()
        .filter(|l| l.starts_with(&format!("miner: job {short} block ")))
        .count();
    assert!(on_job <= 1, "{no_ticket:?}");
    assert_eq!(genesis.len() + on_job, no_ticket.len(), "{no_ticket:?}");
    // (The genesis task's first 3-step blocks may score 0 too: said once.)
    let zero: Vec<String> = said("the trained model scores 0")
        .into_iter()
        .filter(|l| !l.starts_with("miner: job genesis "))
        .collect();
    assert!(said("job genesis block").len() <= 2);
    assert_eq!(zero.len(), 1, "{zero:?}");
    assert!(
        zero[0].starts_with(&format!("miner: job {short} block 0: "))
            && zero[0].contains("learning rate 1000"),
        "{zero:?}"
    );
}
