//! The `pouwd` commands end to end, through the real binary and real data dirs.

use crate::support::node::{dir_arg, parse_mined, run, run_with_input, Node};
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// A chain for the import tests that stop during an import: two whole
/// batches and a few blocks more.
const THREE_BATCHES: u64 = 2 * pouwd::node::import::BATCH_BLOCKS as u64 + 52;

fn mine_regtest(dir: &Path, height: u64) -> Vec<String> {
    let d = dir_arg(dir);
    let h = height.to_string();
    let out = run(&[
        "start",
        "--data-dir",
        &d,
        "--chain",
        "regtest",
        "--mine",
        "--stop-at-height",
        &h,
    ]);
    assert!(out.ok(), "start failed: {}", out.stderr);
    out.lines()
}

fn status(dir: &Path) -> Value {
    let out = run(&["status", "--data-dir", &dir_arg(dir), "--json"]);
    assert!(out.ok(), "status failed: {}", out.stderr);
    serde_json::from_str(&out.stdout).expect("status JSON")
}

fn export(dir: &Path, file: &Path) {
    let out = run(&[
        "export-chain",
        "--data-dir",
        &dir_arg(dir),
        "--out",
        &dir_arg(file),
    ]);
    assert!(out.ok(), "export failed: {}", out.stderr);
}

fn import(dir: &Path, file: &Path) -> crate::support::node::Output {
    run(&[
        "import-chain",
        "--data-dir",
        &dir_arg(dir),
        "--chain",
        "regtest",
        "--in",
        &dir_arg(file),
    ])
}

#[test]
fn start_mines_logs_each_block_and_resumes_from_the_same_tip() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    let lines = mine_regtest(&dir, 5);
    let mined: Vec<_> = lines.iter().filter_map(|l| parse_mined(l)).collect();
    assert_eq!(
        mined.iter().map(|m| m.height).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    for line in lines.iter().filter(|l| l.starts_with("mined ")) {
        for field in ["height=", "steps=", "score=", "reward=50.00000000", "time="] {
            assert!(line.contains(field), "{line:?} lacks {field}");
        }
    }
    let key_mode = std::fs::metadata(dir.join("node.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(key_mode & 0o777, 0o600);
    let before = status(&dir);
    assert_eq!(before["height"], 5);
    assert_eq!(before["tip"], mined[4].hash.as_str());

    // A restart continues on the same tip: the next block is height 6 on top of it.
    let lines = mine_regtest(&dir, 8);
    let mined_again: Vec<_> = lines.iter().filter_map(|l| parse_mined(l)).collect();
    assert_eq!(mined_again.first().map(|m| m.height), Some(6));
    let inspect = run(&["inspect", "--data-dir", &dir_arg(&dir), "6", "--json"]);
    let six: Value = serde_json::from_str(&inspect.stdout).unwrap();
    assert_eq!(six["parent"], mined[4].hash.as_str());
    let after = status(&dir);
    assert_eq!(after["height"], 8);
    assert_eq!(
        after["miner"], before["miner"],
        "the node key survives restarts"
    );
}

#[test]
fn status_reports_the_required_fields_and_a_running_node() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    mine_regtest(&dir, 12);
    let s = status(&dir);
    for field in [
        "network",
        "height",
        "tip",
        "score_ppm",
        "cumulative_work",
        "miner",
        "balance",
    ] {
        assert!(s.get(field).is_some(), "status lacks {field}: {s}");
    }
    assert_eq!(s["network"], "regtest");
    assert_eq!(s["balance"], 12 * 5_000_000_000u64);
    // Rewards of the last validation_window (10) blocks are not spendable yet.
    assert_eq!(s["spendable"], 2 * 5_000_000_000u64);
    assert_eq!(s["running"], false);

    let d = dir_arg(&dir);
    let node = Node::start(&["--data-dir", &d]);
    node.wait_for(Duration::from_secs(30), |l| l.starts_with("node started"));
    let out = run(&["status", "--data-dir", &d, "--json"]);
    assert!(out.ok(), "status on a running node failed: {}", out.stderr);
    let live: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(live["running"], true);
    assert_eq!(live["height"], 12);
    assert_eq!(live["pid"], node.pid());
    let text = run(&["status", "--data-dir", &d]);
    assert!(
        text.stdout.contains("a node is running on"),
        "{}",
        text.stdout
    );
    assert!(!text.stderr.contains("lock"), "{}", text.stderr);
}

#[test]
fn sigterm_and_sigint_stop_the_miner_cleanly() {
    for signal in ["TERM", "INT"] {
        let tmp = tempfile::tempdir().unwrap();
        let d = dir_arg(&tmp.path().join("node"));
        let mut node = Node::start(&["--data-dir", &d, "--chain", "regtest", "--mine"]);
        node.wait_for(Duration::from_secs(30), |l| {
            parse_mined(l).is_some_and(|m| m.height >= 3)
        });
        node.signal(signal);
        assert_eq!(
            node.wait(Duration::from_secs(30)),
            Some(0),
            "{}",
            node.stderr()
        );
        let lines = node.lines();
        assert!(lines
            .iter()
            .any(|l| l.starts_with(&format!("SIG{signal} received"))));
        let last = node.mined().last().cloned().unwrap();
        let stopped = lines
            .iter()
            .find(|l| l.starts_with("node stopped"))
            .unwrap();
        assert!(
            stopped.contains(&format!("height={}", last.height)),
            "{stopped}"
        );
        let s = status(Path::new(&d));
        assert_eq!(s["height"], last.height);
        assert_eq!(s["tip"], last.hash.as_str());
    }
}

#[test]
fn a_data_dir_refuses_another_chain_and_names_both() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    mine_regtest(&dir, 1);
    let out = run(&["start", "--data-dir", &dir_arg(&dir), "--chain", "devnet"]);
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr.contains("\"regtest\"") && out.stderr.contains("\"devnet\""),
        "{}",
        out.stderr
    );
}

#[test]
fn masternode_config_must_match_the_chain() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    let d = dir_arg(&dir);
    let write = |name: &str, text: &str| {
        let path = tmp.path().join(name);
        std::fs::write(&path, text).unwrap();
        dir_arg(&path)
    };
    let good = write(
        "good.json",
        r#"{"reward_amount": 5000000000, "validation_threshold": 0.5, "validation_window": 10}"#,
    );
    let out = run(&[
        "start",
        "--data-dir",
        &d,
        "--chain",
        "regtest",
        "--masternode",
        "--masternode-config",
        &good,
        "--mine",
        "--stop-at-height",
        "1",
    ]);
    assert!(out.ok(), "{}", out.stderr);
    let cases = [
        (
            r#"{"reward_amount": 10, "validation_threshold": 0.5, "validation_window": 10}"#,
            "reward_amount is 10 but chain \"regtest\" has 5000000000",
        ),
        (
            r#"{"reward_amount": 5000000000, "validation_threshold": 0.9, "validation_window": 10}"#,
            "validation_threshold is 0.9 but chain \"regtest\" has 0.5",
        ),
        (
            r#"{"reward_amount": 5000000000, "validation_threshold": 0.5, "validation_window": 3}"#,
            "validation_window is 3 but chain \"regtest\" has 10",
        ),
        (
            r#"{"reward_amount": 50}"#,
            "missing field `validation_threshold`",
        ),
    ];
    for (text, expected) in cases {
        let file = write("bad.json", text);
        let out = run(&[
            "start",
            "--data-dir",
            &d,
            "--masternode",
            "--masternode-config",
            &file,
        ]);
        assert_eq!(out.code, Some(1), "{text}");
        assert!(out.stderr.contains(expected), "{text}: {}", out.stderr);
    }
    let out = run(&["start", "--data-dir", &d, "--masternode"]);
    assert_eq!(
        out.code,
        Some(2),
        "clap refuses --masternode alone: {}",
        out.stderr
    );
}

#[test]
fn a_changed_dataset_is_refused_with_both_hashes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    mine_regtest(&dir, 1);
    let data = dir.join("dataset/diabetes.csv");
    let mut bytes = std::fs::read(&data).unwrap();
    let last = bytes.len() - 2;
    bytes[last] = if bytes[last] == b'1' { b'2' } else { b'1' };
    std::fs::write(&data, &bytes).unwrap();
    let out = run(&["start", "--data-dir", &dir_arg(&dir)]);
    assert_eq!(out.code, Some(1));
    let found = blake3::hash(&bytes).to_hex().to_string();
    assert!(out.stderr.contains(&found), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("1b78df6e1fd538b21aaf6bd6f216e5f543b8237de717ce115134eefe1b168c8b"),
        "{}",
        out.stderr
    );

    // A chain file whose dataset was edited is refused before a data dir is made.
    let chain_dir = tmp.path().join("chain");
    std::fs::create_dir(&chain_dir).unwrap();
    std::fs::copy(
        format!("{ROOT}/config/regtest.json"),
        chain_dir.join("c.json"),
    )
    .unwrap();
    std::fs::write(chain_dir.join("diabetes.csv"), &bytes).unwrap();
    let fresh = tmp.path().join("fresh");
    let out = run(&[
        "start",
        "--data-dir",
        &dir_arg(&fresh),
        "--chain",
        &dir_arg(&chain_dir.join("c.json")),
    ]);
    assert_eq!(out.code, Some(1));
    assert!(out.stderr.contains(&found), "{}", out.stderr);
    assert!(!fresh.join("store").exists());
}

#[test]
fn a_chain_file_with_its_dataset_beside_it_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let chain = tmp.path().join("mychain.json");
    let text = std::fs::read_to_string(format!("{ROOT}/config/regtest.json"))
        .unwrap()
        .replace("\"regtest\"", "\"mychain\"");
    std::fs::write(&chain, text).unwrap();
    std::fs::copy(
        format!("{ROOT}/data/diabetes.csv"),
        tmp.path().join("diabetes.csv"),
    )
    .unwrap();
    let dir = tmp.path().join("node");
    let out = run(&[
        "start",
        "--data-dir",
        &dir_arg(&dir),
        "--chain",
        &dir_arg(&chain),
        "--mine",
        "--stop-at-height",
        "2",
    ]);
    assert!(out.ok(), "{}", out.stderr);
    assert_eq!(status(&dir)["network"], "mychain");
}

#[test]
fn bad_arguments_and_bad_directories_get_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let d = dir_arg(&tmp.path().join("node"));
    let out = run(&["start", "--data-dir", &d, "--bogus"]);
    assert_eq!(out.code, Some(2));
    assert!(out.stderr.contains("--bogus"), "{}", out.stderr);
    let out = run(&["start", "--data-dir", &d, "--mine-threads", "0"]);
    assert_eq!(out.code, Some(2));
    assert!(out.stderr.contains("--mine-threads"), "{}", out.stderr);

    // A non-empty directory that is not a data dir is left alone.
    let other = tmp.path().join("photos");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("cat.jpg"), b"meow").unwrap();
    let out = run(&[
        "start",
        "--data-dir",
        &dir_arg(&other),
        "--chain",
        "regtest",
    ]);
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr.contains("is not a pouwd data dir"),
        "{}",
        out.stderr
    );
    assert_eq!(std::fs::read_dir(&other).unwrap().count(), 1);
    for cmd in ["status", "export-chain", "inspect", "export-model"] {
        let mut args = vec![cmd, "--data-dir", other.to_str().unwrap()];
        match cmd {
            "export-chain" | "export-model" => args.extend(["--out", "-"]),
            "inspect" => args.push("1"),
            _ => {}
        }
        let out = run(&args);
        assert_eq!(out.code, Some(1), "{cmd}");
        assert!(
            out.stderr.contains("is not a pouwd data dir"),
            "{cmd}: {}",
            out.stderr
        );
    }
    // A file where a directory should be.
    let file = tmp.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let out = run(&["start", "--data-dir", &dir_arg(&file)]);
    assert_eq!(out.code, Some(1));
    assert!(out.stderr.contains("is not a directory"), "{}", out.stderr);

    // Chain files: missing, not JSON, invalid values.
    let missing = run(&[
        "start",
        "--data-dir",
        &d,
        "--chain",
        "/nonexistent/chain.json",
    ]);
    assert!(
        missing
            .stderr
            .contains("cannot read chain file /nonexistent/chain.json"),
        "{}",
        missing.stderr
    );
    let bad = tmp.path().join("bad.json");
    std::fs::write(&bad, "{ not json").unwrap();
    let out = run(&["start", "--data-dir", &d, "--chain", &dir_arg(&bad)]);
    assert!(out.stderr.contains("bad.json"), "{}", out.stderr);
    let text = std::fs::read_to_string(format!("{ROOT}/config/regtest.json"))
        .unwrap()
        .replace("\"batch_size\": 32", "\"batch_size\": 0");
    std::fs::write(&bad, text).unwrap();
    let out = run(&["start", "--data-dir", &d, "--chain", &dir_arg(&bad)]);
    assert_eq!(out.code, Some(1));
    assert!(out.stderr.contains("task.batch_size"), "{}", out.stderr);
    assert!(
        !tmp.path().join("node").exists(),
        "nothing created on bad input"
    );

    // Inspect: unknown height and malformed selectors.
    let good = tmp.path().join("good");
    mine_regtest(&good, 2);
    let g = dir_arg(&good);
    let out = run(&["inspect", "--data-dir", &g, "99"]);
    assert!(
        out.stderr
            .contains("no block at height 99; the best chain's tip is at 2"),
        "{}",
        out.stderr
    );
    let out = run(&["inspect", "--data-dir", &g, "tip"]);
    assert!(
        out.stderr.contains("neither a height nor a block hash"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_newer_store_format_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    mine_regtest(&dir, 1);
    {
        let store = pouwd::store::Store::open(&dir.join("store")).unwrap();
        store
            .set_format_version(pouwd::store::FORMAT_VERSION + 1)
            .unwrap();
    }
    let out = run(&["start", "--data-dir", &dir_arg(&dir)]);
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr.contains(&format!(
            "format version {}, newer than this pouwd supports ({})",
            pouwd::store::FORMAT_VERSION + 1,
            pouwd::store::FORMAT_VERSION
        )),
        "{}",
        out.stderr
    );
}

/// A data dir and an export of protocol 1 are refused with both protocol
/// versions named, and nothing is changed.
#[test]
fn protocol_1_data_dirs_and_exports_are_refused_naming_both_versions() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    mine_regtest(&dir, 2);
    let file = tmp.path().join("chain.pouw");
    export(&dir, &file);
    // Stores of format 1 and 2 hold protocol 1 chains.
    for format in [1u32, 2] {
        {
            let db = raw_store(&dir.join("store"));
            db.insert("meta/format", &format.to_le_bytes()).unwrap();
            db.flush().unwrap();
        }
        for command in ["start", "status"] {
            let out = run(&[command, "--data-dir", &dir_arg(&dir)]);
            assert_eq!(out.code, Some(1), "{command}: {}", out.stderr);
            assert!(
                out.stderr.contains("protocol 1") && out.stderr.contains("protocol 2"),
                "{command}: {}",
                out.stderr
            );
        }
    }
    // An export stream of version 1 (protocol 1).
    let mut bytes = std::fs::read(&file).unwrap();
    assert_eq!(bytes[8..12], 2u32.to_le_bytes(), "streams are of version 2");
    bytes[8..12].copy_from_slice(&1u32.to_le_bytes());
    let old = tmp.path().join("old.pouw");
    std::fs::write(&old, &bytes).unwrap();
    let fresh = tmp.path().join("fresh");
    let out = import(&fresh, &old);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(
        out.stderr.contains("version 1, of protocol 1")
            && out.stderr.contains("version 2, of protocol 2"),
        "{}",
        out.stderr
    );
    // A chain file of protocol 1: one without the protocol field.
    let mut chain: Value =
        serde_json::from_str(&std::fs::read_to_string("config/regtest.json").unwrap()).unwrap();
    chain.as_object_mut().unwrap().remove("protocol");
    let chain_file = tmp.path().join("v1.json");
    std::fs::write(&chain_file, chain.to_string()).unwrap();
    let other = tmp.path().join("other");
    let out = run(&[
        "start",
        "--data-dir",
        &dir_arg(&other),
        "--chain",
        &dir_arg(&chain_file),
    ]);
    assert_ne!(out.code, Some(0));
    assert!(
        out.stderr.contains("protocol version 1") && out.stderr.contains("protocol version 2"),
        "{}",
        out.stderr
    );
}

#[test]
fn export_and_import_round_trip_through_files_and_pipes() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    mine_regtest(&a, 25);
    let file = tmp.path().join("chain.pouw");
    export(&a, &file);
    let b = tmp.path().join("b");
    let out = import(&b, &file);
    assert!(out.ok(), "{}", out.stderr);
    assert!(out.stdout.contains("imported 25 blocks"), "{}", out.stdout);
    assert_eq!(status(&b)["tip"], status(&a)["tip"]);
    // Again: nothing new, nothing doubled.
    let out = import(&b, &file);
    assert!(
        out.stdout.contains("imported 0 blocks (25 already known)"),
        "{}",
        out.stdout
    );
    assert_eq!(status(&b)["cumulative_work"], status(&a)["cumulative_work"]);

    // `-` streams through stdout and stdin.
    let piped = run(&["export-chain", "--data-dir", &dir_arg(&a), "--out", "-"]);
    assert!(piped.ok());
    let c = tmp.path().join("c");
    let out = run_with_input(
        &[
            "import-chain",
            "--data-dir",
            &dir_arg(&c),
            "--chain",
            "regtest",
            "--in",
            "-",
        ],
        Some(&piped.stdout_bytes),
        Duration::from_secs(60),
    );
    assert!(out.ok(), "{}", out.stderr);
    assert_eq!(status(&c)["tip"], status(&a)["tip"]);
}

/// Offsets of the block records in an export file: (start of length, length).
fn records(bytes: &[u8]) -> Vec<(usize, usize)> {
    let json_len = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
    let mut at = 16 + json_len + 32;
    let mut out = Vec::new();
    loop {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        if len == 0 {
            return out;
        }
        out.push((at, len));
        at += 4 + len;
    }
}

#[test]
fn bad_export_files_are_refused_naming_the_first_bad_block() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    mine_regtest(&a, 12);
    let file = tmp.path().join("chain.pouw");
    export(&a, &file);
    let bytes = std::fs::read(&file).unwrap();
    let recs = records(&bytes);
    assert_eq!(recs.len(), 12);
    let write = |name: &str, data: &[u8]| {
        let path = tmp.path().join(name);
        std::fs::write(&path, data).unwrap();
        path
    };
    let import_fresh = |name: &str, path: &Path| {
        let dir = tmp.path().join(format!("dir-{name}"));
        let out = import(&dir, path);
        (dir, out)
    };

    // Truncated in the middle of block 8: blocks 1..=7 stay stored.
    let (start, _) = recs[7];
    let cut = write("truncated", &bytes[..start + 10]);
    let (dir, out) = import_fresh("truncated", &cut);
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr.contains("truncated") && out.stderr.contains("after 7 complete blocks"),
        "{}",
        out.stderr
    );
    assert_eq!(status(&dir)["height"], 7);

    // Missing end marker.
    let (start, len) = recs[11];
    let no_end = write("noend", &bytes[..start + 4 + len]);
    let (dir, out) = import_fresh("noend", &no_end);
    assert!(
        out.stderr.contains("end marker is missing"),
        "{}",
        out.stderr
    );
    assert_eq!(status(&dir)["height"], 12);

    // Reordered: blocks 5 and 6 swapped.
    let mut swapped = bytes[..recs[4].0].to_vec();
    let rec = |i: usize| &bytes[recs[i].0..recs[i].0 + 4 + recs[i].1];
    swapped.extend_from_slice(rec(5));
    swapped.extend_from_slice(rec(4));
    swapped.extend_from_slice(&bytes[recs[6].0..]);
    let path = write("swapped", &swapped);
    let (dir, out) = import_fresh("swapped", &path);
    assert!(
        out.stderr.contains("block #5 of the file (height 6"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("unknown parent"), "{}", out.stderr);
    assert_eq!(status(&dir)["height"], 4);

    // Tampered: flip one byte of block 9's final parameters (its body).
    let mut tampered = bytes.clone();
    let (start, len) = recs[8];
    tampered[start + 4 + len - 3] ^= 0x40;
    let path = write("tampered", &tampered);
    let (dir, out) = import_fresh("tampered", &path);
    assert!(
        out.stderr.contains("block #9 of the file"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("body hash"), "{}", out.stderr);
    assert_eq!(status(&dir)["height"], 8);

    // Tampered header: the signature no longer verifies.
    let mut tampered = bytes.clone();
    let (start, _) = recs[2];
    tampered[start + 4 + 3] ^= 0x01;
    let path = write("tampered-header", &tampered);
    let (dir, out) = import_fresh("tampered-header", &path);
    assert!(
        out.stderr.contains("block #3 of the file"),
        "{}",
        out.stderr
    );
    assert_eq!(status(&dir)["height"], 2);

    // A file of another chain.
    let other = tmp.path().join("other");
    let chain = tmp.path().join("other.json");
    let text = std::fs::read_to_string(format!("{ROOT}/config/regtest.json"))
        .unwrap()
        .replace("\"regtest\"", "\"elsewhere\"");
    std::fs::write(&chain, text).unwrap();
    std::fs::copy(
        format!("{ROOT}/data/diabetes.csv"),
        tmp.path().join("diabetes.csv"),
    )
    .unwrap();
    let out = run(&[
        "start",
        "--data-dir",
        &dir_arg(&other),
        "--chain",
        &dir_arg(&chain),
        "--mine",
        "--stop-at-height",
        "2",
    ]);
    assert!(out.ok(), "{}", out.stderr);
    let foreign = tmp.path().join("foreign.pouw");
    export(&other, &foreign);
    let (dir, out) = import_fresh("foreign", &foreign);
    assert!(
        out.stderr.contains("export of chain \"elsewhere\"")
            && out.stderr.contains("--chain names chain \"regtest\""),
        "{}",
        out.stderr
    );
    assert!(!dir.exists(), "refused before anything was written");

    // Not an export at all.
    let path = write("garbage", b"hello, world");
    let (dir, out) = import_fresh("garbage", &path);
    assert!(
        out.stderr.contains("not a pouwd chain export"),
        "{}",
        out.stderr
    );
    assert!(!dir.exists(), "refused before anything was written");
}

#[test]
fn a_full_disk_is_an_error_not_a_crash() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    mine_regtest(&a, 3);
    let out = run(&[
        "export-chain",
        "--data-dir",
        &dir_arg(&a),
        "--out",
        "/dev/full",
    ]);
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr.contains("No space left on device"),
        "{}",
        out.stderr
    );
    let out = run(&[
        "export-model",
        "--data-dir",
        &dir_arg(&a),
        "--out",
        "/dev/full",
    ]);
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr.contains("No space left on device"),
        "{}",
        out.stderr
    );
    assert_eq!(status(&a)["height"], 3, "the store is untouched");
}

#[test]
fn inspect_shows_the_header_work_and_spot_checks() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    mine_regtest(&a, 6);
    let d = dir_arg(&a);
    for height in 1..=6 {
        let out = run(&["inspect", "--data-dir", &d, &height.to_string(), "--json"]);
        assert!(out.ok(), "{}", out.stderr);
        let block: Value = serde_json::from_str(&out.stdout).unwrap();
        let by_hash = run(&[
            "inspect",
            "--data-dir",
            &d,
            block["hash"].as_str().unwrap(),
            "--json",
        ]);
        assert_eq!(by_hash.stdout, out.stdout);
        let steps = block["steps"].as_u64().unwrap();
        let m = steps / 16;
        assert_eq!(block["checkpoints"], m);
        let segments = block["spot_checked_segments"].as_array().unwrap();
        assert_eq!(segments.is_empty(), m == 0);
        assert!(segments.len() <= 2);
        for s in segments {
            let seg = s["segment"].as_u64().unwrap();
            assert!((1..=m).contains(&seg));
        }
        assert_eq!(block["tail_steps"][1], steps);
        assert_eq!(block["reward"], 5_000_000_000u64);
        for field in [
            "target",
            "score_ppm",
            "timestamp_ms",
            "miner",
            "parent",
            "work_hash",
        ] {
            assert!(block.get(field).is_some(), "{field}");
        }
    }
}

#[test]
fn the_exported_model_predicts_outside_the_node() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    mine_regtest(&a, 30);
    let model_path = tmp.path().join("model.json");
    let out = run(&[
        "export-model",
        "--data-dir",
        &dir_arg(&a),
        "--out",
        &dir_arg(&model_path),
    ]);
    assert!(out.ok(), "{}", out.stderr);
    let model: Value =
        serde_json::from_str(&std::fs::read_to_string(&model_path).unwrap()).unwrap();
    assert_eq!(model["height"], 30);
    assert_eq!(model["weights"].as_array().unwrap().len(), 10);
    assert_eq!(model["feature_names"][2], "bmi");

    // Python, standard library only, reads the JSON and predicts on the CSV.
    let predictions = tmp.path().join("pred.txt");
    let py = std::process::Command::new("python3")
        .args([
            &format!("{ROOT}/tools/predict.py"),
            "--model",
            &dir_arg(&model_path),
            "--csv",
            &format!("{ROOT}/data/diabetes.csv"),
            "--out",
            &dir_arg(&predictions),
        ])
        .output()
        .expect("python3 runs");
    assert!(
        py.status.success(),
        "{}",
        String::from_utf8_lossy(&py.stderr)
    );
    let report = String::from_utf8_lossy(&py.stdout);
    let r2: f64 = report.trim().rsplit("r2=").next().unwrap().parse().unwrap();
    assert!(
        r2 > 0.4 && r2 < 0.6,
        "R² of a linear model on diabetes: {report}"
    );

    // The same predictions as the node's own arithmetic.
    let csv = std::fs::read(format!("{ROOT}/data/diabetes.csv")).unwrap();
    let data = pouwd::dataset::CsvDataset::from_bytes("diabetes.csv", &csv).unwrap();
    let prepared = pouwd::dataset::Prepared::new(
        &data,
        "progression",
        None,
        5,
        pouwd::dataset::DEFAULT_MAX_CATEGORIES,
    )
    .unwrap();
    let mut params: Vec<f64> = model["weights"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_f64().unwrap())
        .collect();
    params.push(model["bias"].as_f64().unwrap());
    let python: Vec<f64> = std::fs::read_to_string(&predictions)
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert_eq!(python.len(), 442);
    for (row, predicted) in data.numeric_rows().unwrap().iter().zip(&python) {
        let z: Vec<f64> = (0..10)
            .map(|j| prepared.feature_scaling[j].apply(row[j]))
            .collect();
        let ours = pouwd::model::linear::predict(&params, &z) * prepared.target_scaling.std
            + prepared.target_scaling.mean;
        assert!(
            (ours - predicted).abs() < 1e-9 * ours.abs().max(1.0),
            "{ours} vs {predicted}"
        );
    }
}

/// A creation that fails part-way: on a 16 KiB tmpfs (a private mount
/// namespace; needs root, as CI has) the key and chain.json fit but the
/// dataset's copy (21 kB) does not. The new data dir is removed again, and
/// an empty one given is emptied again.
#[test]
fn a_creation_that_fails_part_way_leaves_no_half_made_data_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let t = dir_arg(tmp.path());
    let script = format!(
        r#"set -u
mkdir -p {t}/mnt
mount -t tmpfs -o size=16k tmpfs {t}/mnt || exit 90
{bin} start --data-dir {t}/mnt/node --chain regtest --stop-at-height 0 2> {t}/err-new
echo $? > {t}/rc-new
mkdir {t}/mnt/empty
{bin} start --data-dir {t}/mnt/empty --chain regtest --stop-at-height 0 2> {t}/err-empty
echo $? > {t}/rc-empty
ls -A {t}/mnt > {t}/left
ls -A {t}/mnt/empty > {t}/left-empty
"#,
        bin = crate::support::node::BIN
    );
    let status = std::process::Command::new("unshare")
        .args(["--mount", "bash", "-c", &script])
        .status()
        .expect("unshare runs");
    assert!(
        status.success(),
        "the disk-full test needs root to mount a tmpfs in a private namespace: {status}"
    );
    let read = |name: &str| std::fs::read_to_string(tmp.path().join(name)).unwrap();
    for case in ["new", "empty"] {
        assert_eq!(read(&format!("rc-{case}")).trim(), "1", "{case}");
        let err = read(&format!("err-{case}"));
        assert!(
            err.contains("No space left on device") || err.contains("disk"),
            "{case}: {err}"
        );
    }
    assert_eq!(
        read("left").split_whitespace().collect::<Vec<_>>(),
        ["empty"]
    );
    assert_eq!(
        read("left-empty"),
        "",
        "the empty dir given is emptied again"
    );
}

/// The store's disk fills up while the node mines: a private mount
/// namespace with a 3 MiB tmpfs (needs root, as CI has).
#[test]
fn a_store_on_a_full_disk_stops_the_node_and_keeps_every_stored_block() {
    let tmp = tempfile::tempdir().unwrap();
    let t = dir_arg(tmp.path());
    let script = format!(
        r#"set -u
mkdir -p {t}/mnt
mount -t tmpfs -o size=3m tmpfs {t}/mnt || exit 90
timeout 120 {bin} start --data-dir {t}/mnt/node --chain regtest --mine > {t}/out 2> {t}/err
echo $? > {t}/rc
mount -o remount,size=64m {t}/mnt || exit 91
{bin} export-chain --data-dir {t}/mnt/node --out {t}/chain.pouw 2> {t}/export.err
"#,
        bin = crate::support::node::BIN
    );
    let status = std::process::Command::new("unshare")
        .args(["--mount", "bash", "-c", &script])
        .env("RUST_LOG", crate::support::node::TEST_LOG_FILTER)
        .status()
        .expect("unshare runs");
    assert!(
        status.success(),
        "the disk-full test needs root to mount a tmpfs in a private namespace: {status}"
    );
    let read = |name: &str| std::fs::read_to_string(tmp.path().join(name)).unwrap();
    assert_eq!(read("rc").trim(), "1", "the node stops with an error");
    let err = read("err");
    assert!(
        err.contains("the disk holding the store is full"),
        "clear message: {err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    let mined: Vec<_> = read("err")
        .lines()
        .map(crate::support::node::log_message)
        .filter_map(parse_mined)
        .collect();
    assert!(mined.len() > 100, "it mined until the disk was full");

    // After space is freed the store opens, and every reported block is
    // in a chain that imports, fully checked, into a fresh data dir.
    let fresh = tmp.path().join("fresh");
    let out = import(&fresh, &tmp.path().join("chain.pouw"));
    assert!(out.ok(), "{}", out.stderr);
    let store = pouwd::store::Store::open(&fresh.join("store")).unwrap();
    for block in &mined {
        let hash = pouwd::chain::Hash32::from_hex(&block.hash).unwrap();
        assert_eq!(
            store.hash_at(block.height).unwrap(),
            Some(hash),
            "reported block {} is missing",
            block.hash
        );
    }
}

/// `status` and `export-chain` work on a data dir whose disk is full (a
/// 3 MiB tmpfs in a private mount namespace, filled up), which is when a
/// backup is wanted, although sled writes to any store it opens.
#[test]
fn status_and_export_work_while_the_disk_is_full() {
    let tmp = tempfile::tempdir().unwrap();
    let t = dir_arg(tmp.path());
    let script = format!(
        r#"set -u
mkdir -p {t}/mnt
mount -t tmpfs -o size=3m tmpfs {t}/mnt || exit 90
{bin} start --data-dir {t}/mnt/node --chain regtest --mine --stop-at-height 20 > /dev/null 2> {t}/start.err || exit 91
head -c 4m /dev/zero > {t}/mnt/filler 2> /dev/null
{bin} status --data-dir {t}/mnt/node --json > {t}/status 2> {t}/status.err
echo $? > {t}/status.rc
{bin} export-chain --data-dir {t}/mnt/node --out {t}/chain.pouw 2> {t}/export.err
echo $? > {t}/export.rc
df -k {t}/mnt > {t}/df
"#,
        bin = crate::support::node::BIN
    );
    let ran = std::process::Command::new("unshare")
        .args(["--mount", "bash", "-c", &script])
        .status()
        .expect("unshare runs");
    assert!(
        ran.success(),
        "the disk-full test needs root to mount a tmpfs in a private namespace: {ran}"
    );
    let read = |name: &str| std::fs::read_to_string(tmp.path().join(name)).unwrap();
    let df = read("df");
    assert!(
        df.lines().nth(1).is_some_and(|l| l.contains(" 100% ")),
        "{df}"
    );
    assert_eq!(read("status.rc").trim(), "0", "{}", read("status.err"));
    let s: Value = serde_json::from_str(&read("status")).expect("status JSON");
    assert_eq!(s["height"], 20);
    assert_eq!(read("export.rc").trim(), "0", "{}", read("export.err"));
    assert!(
        read("export.err").contains("exported 20 blocks"),
        "{}",
        read("export.err")
    );
    let fresh = tmp.path().join("fresh");
    let out = import(&fresh, &tmp.path().join("chain.pouw"));
    assert!(out.ok(), "{}", out.stderr);
    assert_eq!(status(&fresh)["tip"], s["tip"]);
}

/// An import that fills the disk (a 2 MiB tmpfs in a private mount
/// namespace, as above, which holds the first batch but not the second)
/// names, beside the count of blocks it stored, the
/// tip they end at: the stored one, which the store has once space is
/// freed, not the one of a batch the disk had no room for.
#[test]
fn an_import_that_fills_the_disk_names_the_stored_count_and_tip() {
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("source");
    mine_regtest(&source, THREE_BATCHES);
    export(&source, &tmp.path().join("chain.pouw"));
    let t = dir_arg(tmp.path());
    let script = format!(
        r#"set -u
mkdir -p {t}/mnt
mount -t tmpfs -o size=2048k tmpfs {t}/mnt || exit 90
{bin} import-chain --data-dir {t}/mnt/node --chain regtest --in {t}/chain.pouw 2> {t}/err
echo $? > {t}/rc
mount -o remount,size=64m {t}/mnt || exit 91
{bin} status --data-dir {t}/mnt/node --json > {t}/status 2>&1
"#,
        bin = crate::support::node::BIN
    );
    let status = std::process::Command::new("unshare")
        .args(["--mount", "bash", "-c", &script])
        .status()
        .expect("unshare runs");
    assert!(
        status.success(),
        "the disk-full test needs root to mount a tmpfs in a private namespace: {status}"
    );
    let read = |name: &str| std::fs::read_to_string(tmp.path().join(name)).unwrap();
    let err = read("err");
    assert_eq!(read("rc").trim(), "1", "the import stops: {err}");
    assert!(err.contains("the disk holding the store is full"), "{err}");
    // "the N valid blocks before the problem are stored (tip height=H …"
    let number_after = |text: &str, marker: &str| -> u64 {
        let start = text
            .find(marker)
            .unwrap_or_else(|| panic!("{marker:?}: {text}"))
            + marker.len();
        let digits: String = text[start..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits
            .parse()
            .unwrap_or_else(|_| panic!("{marker:?}: {text}"))
    };
    let stored = number_after(&err, "refused; the ");
    let named = number_after(&err, "(tip height=");
    assert!(stored > 0, "{err}");
    assert_eq!(
        named, stored,
        "a fresh data dir's tip is at its block count: {err}"
    );
    let status: Value = serde_json::from_str(&read("status")).expect("status JSON");
    assert_eq!(
        status["height"], named,
        "the named tip is the stored one: {err}"
    );
}

#[test]
fn mine_threads_mine_independent_lanes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    let d = dir_arg(&dir);
    let out = run(&[
        "start",
        "--data-dir",
        &d,
        "--chain",
        "regtest",
        "--mine",
        "--mine-threads",
        "2",
        "--stop-at-height",
        "40",
    ]);
    assert!(out.ok(), "{}", out.stderr);
    assert!(out.stderr.contains("mining=2 thread(s)"), "{}", out.stderr);
    let mut lanes = std::collections::BTreeSet::new();
    for height in 1..=40 {
        let out = run(&["inspect", "--data-dir", &d, &height.to_string(), "--json"]);
        let block: Value = serde_json::from_str(&out.stdout).unwrap();
        lanes.insert(block["lane"].as_u64().unwrap() % 2);
    }
    assert_eq!(lanes.len(), 2, "both threads found blocks");
}

#[test]
fn an_interrupted_creation_is_finished_on_the_next_start() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    let d = dir_arg(&dir);
    let out = run(&[
        "start",
        "--data-dir",
        &d,
        "--chain",
        "regtest",
        "--stop-at-height",
        "0",
    ]);
    assert!(out.ok(), "{}", out.stderr);
    assert!(
        !dir.join("store.creating").exists(),
        "a complete store has no marker"
    );
    // A kill inside store creation leaves an empty sled store behind, and
    // the marker written before it.
    std::fs::remove_dir_all(dir.join("store")).unwrap();
    drop(raw_store(&dir.join("store")));
    std::fs::write(dir.join("store.creating"), b"").unwrap();
    let out = run(&["status", "--data-dir", &d]);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(
        out.stderr.contains("was interrupted") && out.stderr.contains("pouwd start --data-dir"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("damaged"), "{}", out.stderr);
    let out = run(&["start", "--data-dir", &d, "--mine", "--stop-at-height", "2"]);
    assert!(out.ok(), "{}", out.stderr);
    let s = status(&dir);
    assert_eq!(s["network"], "regtest");
    assert_eq!(s["height"], 2);
    assert!(!dir.join("store.creating").exists());
}

/// A store whose files are damaged so that nothing in them can be read
/// (here the head of store/db, zeroed) is not taken for an interrupted
/// creation: it is said to be damaged, and `start` does not replace it
/// with a new chain.
#[test]
fn a_damaged_store_is_not_taken_for_an_interrupted_creation() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    let d = dir_arg(&dir);
    mine_regtest(&dir, 5);
    let db = dir.join("store").join("db");
    let mut bytes = std::fs::read(&db).unwrap();
    bytes[..64].fill(0);
    std::fs::write(&db, bytes).unwrap();
    for args in [
        vec!["status", "--data-dir", &d],
        vec!["export-chain", "--data-dir", &d, "--out", "-"],
        vec!["start", "--data-dir", &d, "--stop-at-height", "0"],
        vec!["status", "--data-dir", &d],
    ] {
        let out = run(&args);
        assert_eq!(out.code, Some(1), "{args:?}: {}", out.stderr);
        assert!(
            out.stderr
                .contains(&format!("{} is damaged", dir.join("store").display())),
            "{args:?}: {}",
            out.stderr
        );
        assert!(out.stderr.contains("restore the data dir from a backup"));
        assert!(!out.stderr.contains("interrupted"), "{}", out.stderr);
    }
}

#[test]
fn a_new_data_dir_defaults_to_devnet() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    let out = run(&[
        "start",
        "--data-dir",
        &dir_arg(&dir),
        "--stop-at-height",
        "0",
    ]);
    assert!(out.ok(), "{}", out.stderr);
    assert!(
        out.stderr.contains("for chain \"devnet\""),
        "{}",
        out.stderr
    );
    let s = status(&dir);
    assert_eq!(s["network"], "devnet");
    assert_eq!(s["height"], 0);
    let devnet = std::fs::read_to_string(format!("{ROOT}/config/devnet.json")).unwrap();
    let params = pouwd::consensus::params::ChainParams::from_json(&devnet).unwrap();
    assert_eq!(s["genesis"], params.genesis_hash().to_hex().as_str());
}

/// A damaged `node.key` is named, said to be no node key, and the way
/// out given: it holds the miner's identity, so restore it, do not delete it.
#[test]
fn a_damaged_node_key_is_named_with_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    mine_regtest(&dir, 1);
    let d = dir_arg(&dir);
    let key = dir.join("node.key");
    let mut not_text = vec![0xffu8, 0xfe, 0x00, 0x80];
    not_text.extend([0x9c; 60]);
    for damaged in [not_text, b"not a key at all\n".to_vec(), b"abcd\n".to_vec()] {
        // Written over the file, which keeps its mode 0600.
        std::fs::write(&key, &damaged).unwrap();
        for args in [
            vec!["status", "--data-dir", &d],
            vec!["start", "--data-dir", &d, "--stop-at-height", "1"],
        ] {
            let out = run(&args);
            assert_eq!(out.code, Some(1), "{args:?}: {}", out.stderr);
            let err = &out.stderr;
            assert!(
                err.contains(&format!("{} is not a valid node key", key.display())),
                "{args:?}: {err}"
            );
            assert!(err.contains("restore it from a backup"), "{err}");
            assert!(err.contains("Do not delete it"), "{err}");
            assert!(!err.contains("stream did not contain"), "{err}");
        }
    }
}

/// A reader that closes the pipe early (`pouwd inspect … | head -1`) ends
/// the command quietly, with SIGPIPE's status, not with a panic.
#[test]
fn a_closed_stdout_ends_a_command_without_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    mine_regtest(&dir, 1);
    let mut child = std::process::Command::new(crate::support::node::BIN)
        .args(["inspect", "--data-dir", &dir_arg(&dir), "1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Close the read end before the command prints anything.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(141), "{stderr}");
}

/// The sled tree of a store, opened directly, without sled's background
/// flusher: dropping it releases the directory's lock at once, so a
/// `pouwd` started right after does not find the store in use.
fn raw_store(path: &std::path::Path) -> sled::Db {
    sled::Config::new()
        .path(path)
        .flush_every_ms(None)
        .open()
        .unwrap()
}

/// SIGTERM or SIGINT stops an import once the batches it has in hand are
/// stored: it says how many blocks are stored and the tip they end at,
/// exits 143 or 130 on purpose, and the store holds exactly that. The
/// export is piped in at a steady pace, so the import is still going
/// when the signal comes.
#[test]
fn a_signal_stops_an_import_after_its_batch_and_says_what_is_stored() {
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};
    use std::sync::{Arc, Mutex};
    use std::time::Instant;
    // When the first batch's progress line comes, the second batch is
    // being stored and the third checked: both are stored after the
    // signal, the fourth is dropped.
    const BLOCKS: u64 = 3 * pouwd::node::import::BATCH_BLOCKS as u64 + 52;
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("source");
    mine_regtest(&source, BLOCKS);
    let file = tmp.path().join("chain.pouw");
    export(&source, &file);
    let bytes = Arc::new(std::fs::read(&file).unwrap());
    for (signal, code) in [("TERM", 143), ("INT", 130)] {
        let dir = tmp.path().join(signal);
        let d = dir_arg(&dir);
        let args = ["import-chain", "--data-dir", &d, "--chain", "regtest"];
        let mut child = Command::new(crate::support::node::BIN)
            .args(args)
            .args(["--in", "-"])
            .env("POUWD_PROGRESS_MS", "100")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn pouwd import-chain");
        let mut stdin = child.stdin.take().unwrap();
        let data = Arc::clone(&bytes);
        // About 14 blocks every 10 ms: the whole file takes seconds.
        let writer = std::thread::spawn(move || {
            for chunk in data.chunks(16 << 10) {
                if stdin.write_all(chunk).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        let lines = Arc::new(Mutex::new(Vec::<String>::new()));
        let reader = {
            let (lines, stderr) = (Arc::clone(&lines), child.stderr.take().unwrap());
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    let message = crate::support::node::log_message(&line).to_string();
                    lines.lock().unwrap().push(message);
                }
            })
        };
        let started = Instant::now();
        while !lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.starts_with("import: ") && l.contains(" stored, "))
        {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "no progress: {:?}",
                lines.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let status_ok = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string())
            .status()
            .unwrap();
        assert!(status_ok.success());
        let exit = loop {
            if let Some(exit) = child.try_wait().unwrap() {
                break exit;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the import did not stop"
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        writer.join().unwrap();
        reader.join().unwrap();
        let lines = lines.lock().unwrap().clone();
        assert_eq!(exit.code(), Some(code), "{lines:?}");
        assert!(
            lines.contains(&format!(
                "import: SIG{signal} received, stopping after the current batch"
            )),
            "{lines:?}"
        );
        // "import stopped by SIGTERM: N blocks stored (0 already known) in
        // Ts; tip height=H hash=X; running the same import again stores the rest"
        let prefix = format!("import stopped by SIG{signal}: ");
        let said = lines
            .iter()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} line: {lines:?}"));
        eprintln!("SIG{signal}: {said}");
        let stored: u64 = said.split(' ').next().unwrap().parse().unwrap();
        let field = |name: &str| {
            said.split([' ', ';'])
                .find_map(|w| w.strip_prefix(name))
                .unwrap_or_else(|| panic!("{said:?} lacks {name}"))
                .to_string()
        };
        let height: u64 = field("height=").parse().unwrap();
        assert!(stored > 0 && stored < BLOCKS, "{said}");
        assert_eq!(
            height, stored,
            "a fresh data dir's tip is at its count: {said}"
        );
        let s = status(&dir);
        assert_eq!(s["height"], height, "{said}");
        assert_eq!(s["tip"], field("hash=").as_str(), "{said}");
    }
}
