//! What a node and its commands say, and where: log lines on stderr with
//! a timestamp, a level and a target (or as JSON), filtered by
//! `--log-level` or `RUST_LOG`; command output alone on stdout; progress
//! lines with count, total, rate and ETA when stderr is not a terminal; a
//! miner's status line; a regtest miner summarising instead of printing a
//! line a block.

use crate::support::net::{free_port, local};
use crate::support::node::{dir_arg, log_message, parse_mined, run, Node, Output};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(60);

/// `pouwd args…` with `env`, to completion; unlike `run`, no log filter
/// is set for it.
fn run_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(crate::support::node::BIN);
    command
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    for (name, value) in env {
        command.env(name, value);
    }
    let out = command.output().expect("run pouwd");
    Output {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stdout_bytes: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Mine a regtest chain to `height` in `dir`.
fn mine(dir: &Path, height: u64, extra: &[&str]) -> Output {
    let (d, h) = (dir_arg(dir), height.to_string());
    let mut args = vec![
        "start",
        "--data-dir",
        &d,
        "--chain",
        "regtest",
        "--mine",
        "--stop-at-height",
        &h,
    ];
    args.extend(extra);
    let out = run_env(&args, &[]);
    assert!(out.ok(), "start failed: {}", out.stderr);
    out
}

/// `2026-12-01T20:07:50.123456Z  INFO target: message`: the level and
/// the rest, or `None` for a line not so.
fn level_of(line: &str) -> Option<(&str, &str)> {
    let (stamp, rest) = line.split_once(' ')?;
    let stamp_ok = stamp.len() >= 20
        && stamp.as_bytes()[..4].iter().all(u8::is_ascii_digit)
        && stamp.as_bytes()[4] == b'-'
        && stamp.contains('T')
        && stamp.ends_with('Z');
    let (level, message) = rest.trim_start().split_once(' ')?;
    (stamp_ok && ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"].contains(&level))
        .then_some((level, message))
}

#[test]
fn logs_go_to_stderr_with_time_level_and_target_and_stdout_keeps_command_output() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    let out = mine(&dir, 3, &[]);
    assert_eq!(out.stdout, "", "a node prints nothing on stdout");
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert!(!lines.is_empty());
    for line in &lines {
        assert!(level_of(line).is_some(), "not a log line: {line:?}");
    }
    let started = lines
        .iter()
        .find(|l| l.contains("node started: network=regtest"))
        .unwrap_or_else(|| panic!("no start line: {lines:?}"));
    assert_eq!(
        level_of(started).map(|(level, message)| (level, &message[..7])),
        Some(("INFO", "pouwd: ")),
        "{started}"
    );
    // A command's result is its stdout, and only that.
    let id = run_env(&["id", "--data-dir", &dir_arg(&dir)], &[]);
    assert!(id.ok(), "{}", id.stderr);
    assert_eq!(id.stdout.trim().len(), 64, "{}", id.stdout);
    assert_eq!(id.stderr, "");
}

#[test]
fn json_logs_are_one_object_a_line_with_timestamp_level_target_and_message() {
    let tmp = tempfile::tempdir().unwrap();
    let out = mine(&tmp.path().join("node"), 3, &["--log-format", "json"]);
    let objects: Vec<Value> = out
        .stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect();
    assert!(objects.len() >= 3, "{}", out.stderr);
    for object in &objects {
        for field in ["timestamp", "level", "target", "message"] {
            assert!(object[field].is_string(), "no {field} in {object}");
        }
    }
    let started = objects
        .iter()
        .find(|o| {
            o["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("node started: "))
        })
        .unwrap_or_else(|| panic!("no start line: {}", out.stderr));
    assert_eq!(started["level"], "INFO");
    assert_eq!(started["target"], "pouwd");
    // A bad format is refused as a bad argument.
    let bad = run(&["status", "--data-dir", "x", "--log-format", "xml"]);
    assert_eq!(bad.code, Some(2), "{}", bad.stderr);
}

/// With `--log-format json`, what `export-chain` and `import-chain` say on
/// stderr is JSON lines too, their own messages included.
#[test]
fn export_and_import_say_only_json_lines_in_the_json_format() {
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("source");
    mine(&source, 3, &["--log-level", "warn"]);
    let file = dir_arg(&tmp.path().join("chain.pouw"));
    let (s, copy) = (dir_arg(&source), dir_arg(&tmp.path().join("copy")));
    let json = ["--log-format", "json"];
    let export = run_env(
        &[
            &["export-chain", "--data-dir", &s, "--out", &file][..],
            &json,
        ]
        .concat(),
        &[],
    );
    let import = run_env(
        &[
            &["import-chain", "--data-dir", &copy, "--in", &file][..],
            &json,
        ]
        .concat(),
        &[],
    );
    for (out, said) in [(export, "exported "), (import, "")] {
        assert!(out.ok(), "{}", out.stderr);
        let messages: Vec<String> = out
            .stderr
            .lines()
            .map(|l| {
                let object: Value =
                    serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}"));
                object["message"].as_str().unwrap().to_string()
            })
            .collect();
        assert!(
            messages.iter().any(|m| m.starts_with(said)),
            "{said:?}: {}",
            out.stderr
        );
    }
}

#[test]
fn log_level_and_rust_log_keep_only_the_lines_asked_for() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    let info = mine(&dir, 2, &[]);
    assert!(
        info.stderr.contains(" INFO pouwd: node started"),
        "{}",
        info.stderr
    );
    assert!(!info.stderr.contains(" DEBUG "), "{}", info.stderr);

    // warn hides the info lines, from the flag or from RUST_LOG.
    let quiet = mine(&dir, 4, &["--log-level", "warn"]);
    assert!(!quiet.stderr.contains(" INFO "), "{}", quiet.stderr);
    let d = dir_arg(&dir);
    let start = ["start", "--data-dir", &d, "--mine", "--stop-at-height"];
    let env_quiet = run_env(&[&start[..], &["6"]].concat(), &[("RUST_LOG", "warn")]);
    assert!(env_quiet.ok(), "{}", env_quiet.stderr);
    assert!(!env_quiet.stderr.contains(" INFO "), "{}", env_quiet.stderr);

    // The flag wins over RUST_LOG; a target can be let through alone.
    let flag = run_env(
        &[&start[..], &["8", "--log-level", "warn,pouwd=debug"]].concat(),
        &[("RUST_LOG", "error")],
    );
    assert!(flag.ok(), "{}", flag.stderr);
    let mined: Vec<_> = flag
        .stderr
        .lines()
        .filter_map(|l| parse_mined(log_message(l)))
        .map(|m| m.height)
        .collect();
    assert_eq!(mined, [7, 8], "each block at debug: {}", flag.stderr);

    // A filter that does not parse is a bad argument, from either place.
    let bad = run_env(
        &[&start[..], &["9", "--log-level", "p2p=loud"]].concat(),
        &[],
    );
    assert_eq!(bad.code, Some(2), "{}", bad.stderr);
    assert!(bad.stderr.contains("not a log filter"), "{}", bad.stderr);
    let bad_env = run_env(&[&start[..], &["9"]].concat(), &[("RUST_LOG", "p2p=loud")]);
    assert_eq!(bad_env.code, Some(2), "{}", bad_env.stderr);
    assert!(bad_env.stderr.contains("RUST_LOG"), "{}", bad_env.stderr);
}

/// `import-chain` with stderr piped: progress lines with the count, the
/// total from the file's end marker, the rate and the ETA, then a summary.
#[test]
fn an_import_with_stderr_piped_prints_progress_lines_and_a_summary() {
    const BLOCKS: u64 = 2000;
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("source");
    mine(&source, BLOCKS, &["--log-level", "warn"]);
    let file = tmp.path().join("chain.pouw");
    let export = run(&[
        "export-chain",
        "--data-dir",
        &dir_arg(&source),
        "--out",
        &dir_arg(&file),
    ]);
    assert!(export.ok(), "{}", export.stderr);
    let target = tmp.path().join("target");
    let out = run_env(
        &[
            "import-chain",
            "--data-dir",
            &dir_arg(&target),
            "--chain",
            "regtest",
            "--in",
            &dir_arg(&file),
        ],
        // A line at each batch rather than every 5 s: the import is quick.
        &[("POUWD_PROGRESS_MS", "1")],
    );
    assert!(out.ok(), "{}", out.stderr);
    assert!(
        out.stdout.starts_with("imported 2000 blocks"),
        "{}",
        out.stdout
    );
    let messages: Vec<&str> = out.stderr.lines().map(log_message).collect();
    // "import: 256/2000 blocks (12%), 256 stored, 0 already known, 812 blocks/s, ETA 3s"
    let progress: Vec<&&str> = messages
        .iter()
        .filter(|m| m.starts_with("import: ") && m.contains(" blocks/s, ETA "))
        .collect();
    assert!(!progress.is_empty(), "no progress line: {messages:?}");
    for line in &progress {
        let (count, total) = line["import: ".len()..]
            .split_once(' ')
            .and_then(|(figures, _)| figures.split_once('/'))
            .unwrap_or_else(|| panic!("{line}"));
        let count: u64 = count.parse().unwrap();
        assert!(count > 0 && count <= BLOCKS, "{line}");
        assert_eq!(total, "2000", "{line}");
        assert!(line.contains("%), "), "{line}");
        let rate: u64 = line
            .split(", ")
            .find_map(|part| part.strip_suffix(" blocks/s"))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no rate: {line}"));
        assert!(rate > 0, "{line}");
    }
    let summary = messages
        .iter()
        .find(|m| m.starts_with("import: read 2000 blocks in "))
        .unwrap_or_else(|| panic!("no summary: {messages:?}"));
    assert!(
        summary.contains(" blocks/s), 2000 stored, 0 already known"),
        "{summary}"
    );

    // Without a total (a pipe), the lines still have the count and rate;
    // with the default interval a short import says only its summary.
    let again = tmp.path().join("again");
    let bytes = std::fs::read(&file).unwrap();
    let piped = crate::support::node::run_with_input(
        &[
            "import-chain",
            "--data-dir",
            &dir_arg(&again),
            "--chain",
            "regtest",
            "--in",
            "-",
        ],
        Some(&bytes),
        LIMIT,
    );
    assert!(piped.ok(), "{}", piped.stderr);
    assert!(
        piped
            .stderr
            .lines()
            .map(log_message)
            .any(|m| m.starts_with("import: read 2000 blocks in ")),
        "{}",
        piped.stderr
    );

    // On a terminal (a pseudo-terminal from util-linux's `script`): a bar
    // with the count, the total, the ETA and the rate, and no progress
    // lines; the summary is still said.
    let on_tty = tmp.path().join("on-tty");
    let command = format!(
        "{} import-chain --data-dir {} --in {}",
        crate::support::node::BIN,
        dir_arg(&on_tty),
        dir_arg(&file)
    );
    let out = Command::new("script")
        .args(["-qefc", &command, "/dev/null"])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .output()
        .expect("util-linux's script runs");
    let terminal = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{terminal}");
    assert!(
        terminal.contains("import [") && terminal.contains("/2,000 blocks, ETA "),
        "no bar: {terminal:?}"
    );
    assert!(terminal.contains(" blocks/s, "), "no rate: {terminal:?}");
    // A progress line has the percentage, "(12%), "; the bar has none.
    assert!(!terminal.contains("%), "), "{terminal:?}");
    assert!(terminal.contains("read 2000 blocks in "), "{terminal:?}");
}

/// The status line: `miner: 45678 steps/s, 3 blocks mined in 10.0s, best
/// score 0.812345, job genesis at block 7, height 123, 2 peers`.
fn status_lines(node: &Node) -> Vec<String> {
    node.lines()
        .into_iter()
        .filter(|l| l.starts_with("miner: ") && l.contains(" steps/s, "))
        .collect()
}

#[test]
fn a_miner_says_its_steps_a_second_blocks_best_score_job_and_peers() {
    let tmp = tempfile::tempdir().unwrap();
    let d = dir_arg(&tmp.path().join("node"));
    let listen = local(free_port());
    let node = Node::start_with_env(
        &[
            "--data-dir",
            &d,
            "--chain",
            "regtest",
            "--mine",
            "--listen",
            &listen,
        ],
        &[("POUWD_MINER_STATUS_MS", "300")],
    );
    node.wait_for(LIMIT, |l| {
        l.starts_with("miner: ") && l.contains(" steps/s, ") && !l.contains(" 0 blocks ")
    });
    let lines = status_lines(&node);
    let line = lines
        .iter()
        .find(|l| !l.contains(" 0 blocks "))
        .expect("a line with blocks");
    let rate: f64 = line["miner: ".len()..]
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    assert!(rate > 0.0, "{line}");
    for part in [
        " mined in ",
        ", best score 0.",
        ", job genesis at block ",
        ", height ",
        ", 0 peers",
    ] {
        assert!(line.contains(part), "{line} lacks {part:?}");
    }
    // Without a network it says so.
    drop(node);
    let node = Node::start_with_env(
        &["--data-dir", &d, "--mine"],
        &[("POUWD_MINER_STATUS_MS", "300")],
    );
    let line = node.wait_for(LIMIT, |l| {
        l.starts_with("miner: ") && l.contains(" steps/s, ")
    });
    assert!(line.ends_with(", no network"), "{line}");
}

#[test]
fn a_miner_with_the_default_interval_is_quiet_between_status_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let d = dir_arg(&tmp.path().join("node"));
    let node = Node::start(&["--data-dir", &d, "--chain", "regtest", "--mine"]);
    node.wait_for(LIMIT, |l| l.starts_with("node started"));
    std::thread::sleep(Duration::from_secs(2));
    assert!(status_lines(&node).is_empty(), "{:?}", node.lines());
}

/// A regtest miner mines hundreds of blocks a second: at info it says a
/// `mined` line at most about once a second, not one a block; each block
/// is still there at debug.
#[test]
fn a_regtest_miner_summarises_instead_of_a_line_a_block() {
    const BLOCKS: usize = 400;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    let started = std::time::Instant::now();
    let out = mine(&dir, BLOCKS as u64, &[]);
    let seconds = started.elapsed().as_secs_f64();
    let lines: Vec<&str> = out.stderr.lines().collect();
    let mined = lines
        .iter()
        .filter(|l| parse_mined(log_message(l)).is_some())
        .count();
    assert!(mined >= 1, "the first block is said: {lines:?}");
    // One a second at most, and the first at once.
    assert!(
        (mined as f64) <= seconds + 2.0,
        "{mined} mined lines in {seconds:.1}s"
    );
    assert!(lines.len() < BLOCKS / 4, "{} lines", lines.len());

    let out = mine(
        &dir,
        2 * BLOCKS as u64,
        &["--log-level", "info,pouwd=debug"],
    );
    let heights: Vec<u64> = out
        .stderr
        .lines()
        .filter_map(|l| parse_mined(log_message(l)))
        .map(|m| m.height)
        .collect();
    assert_eq!(heights.len(), BLOCKS, "each block at debug");
    assert_eq!(heights.first(), Some(&(BLOCKS as u64 + 1)));
}

/// A node syncing a chain of 1,500 blocks at the default level says a few
/// sync lines, not one a group of blocks, the count running from where
/// the sync began against its target, with the rate and the ETA; the
/// last one at the target.
#[test]
fn a_sync_says_its_progress_against_the_target_a_few_times_not_a_line_a_batch() {
    use crate::support::net::{running_tip, wait_until};
    const BLOCKS: u64 = 1500;
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("source");
    mine(&source, BLOCKS, &["--log-level", "warn"]);
    let port = free_port();
    let (s, f) = (dir_arg(&source), dir_arg(&tmp.path().join("follower")));
    let serving = Node::start(&["--data-dir", &s, "--listen", &local(port)]);
    serving.wait_for(LIMIT, |l| l.starts_with("p2p: listening on "));
    let follower = Node::start(&[
        "--data-dir",
        &f,
        "--chain",
        "regtest",
        "--peer",
        &local(port),
        "--log-level",
        "info",
    ]);
    wait_until(LIMIT, "the follower syncs", &[&follower], || {
        running_tip(&tmp.path().join("follower")).0 == BLOCKS
    });
    let last = follower.wait_for(LIMIT, |l| {
        l.starts_with("p2p: sync: ") && l.contains(&format!("tip height {BLOCKS} "))
    });
    assert!(
        last.starts_with("p2p: sync: 1500/1500 blocks (100%), ")
            && last.contains(" blocks/s, ETA 0s, "),
        "{last}"
    );
    let syncs: Vec<String> = follower
        .lines()
        .into_iter()
        .filter(|l| l.starts_with("p2p: sync: "))
        .collect();
    // 1,500 blocks are 6 groups of 256: a line at the start, one every 5 s
    // and the last.
    assert!(syncs.len() < 6, "{syncs:?}");
}
