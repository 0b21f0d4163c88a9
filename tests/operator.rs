//! What an operator meets: the config file, the default data dir, shell
//! completions, the version, messages and exit codes, the systemd unit,
//! and a README whose every command and flag exists.

use crate::support::node::{dir_arg, run, run_with_env};
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::path::Path;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

#[test]
fn a_config_file_sets_start_flags_and_the_command_line_wins() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let config = tmp.path().join("node.toml");
    write(
        &config,
        &format!(
            "data-dir = {:?}\nchain = \"regtest\"\nmine = true\nstop-at-height = 3\n",
            dir_arg(&a)
        ),
    );
    let c = dir_arg(&config);
    let out = run(&["start", "--config", &c]);
    assert!(out.ok(), "{}", out.stderr);
    let said = out.lines().join("\n");
    assert!(said.contains("network=regtest"), "{said}");
    let said = out.lines().join("\n");
    assert!(said.contains("node stopped: height=3 "), "{said}");

    // Flags on the command line replace the file's values.
    let out = run(&[
        "start",
        "--stop-at-height",
        "1",
        "--config",
        &c,
        "--data-dir",
        &dir_arg(&b),
    ]);
    assert!(out.ok(), "{}", out.stderr);
    let said = out.lines().join("\n");
    assert!(said.contains("node stopped: height=1 "), "{said}");
    assert!(b.join("node.key").exists());

    // The global logging flags are keys too, and the command line wins
    // over them, before or after `start`.
    write(
        &config,
        &format!(
            "data-dir = {:?}\nlog-level = \"info\"\nlog-format = \"json\"\n",
            dir_arg(&a)
        ),
    );
    let out = run(&["start", "--config", &c, "--stop-at-height", "0"]);
    assert!(out.ok(), "{}", out.stderr);
    let json: Vec<serde_json::Value> = out
        .stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(
        json.iter()
            .any(|l| l["message"].as_str().unwrap().starts_with("node stopped: ")),
        "{}",
        out.stderr
    );
    for args in [
        &["start", "--config", &c, "--log-level", "warn"][..],
        &["--log-level", "warn", "start", "--config", &c],
    ] {
        let mut args = args.to_vec();
        args.extend(["--stop-at-height", "0"]);
        let out = run(&args);
        assert!(out.ok(), "{}", out.stderr);
        assert!(
            !out.stderr.contains("node stopped"),
            "{args:?}: {}",
            out.stderr
        );
    }
    let out = run(&[
        "start",
        "--config",
        &c,
        "--stop-at-height",
        "0",
        "--log-format",
        "text",
    ]);
    assert!(out.ok(), "{}", out.stderr);
    assert!(
        out.stderr.contains(" INFO ") && !out.stderr.contains("{\""),
        "{}",
        out.stderr
    );

    // The file's values go through clap's checks: a bad one exits 2 naming
    // the file and the flag.
    write(&config, "chain = \"regtest\"\nmine-threads = 0\n");
    let out = run(&["start", "--config", &c, "--data-dir", &dir_arg(&b)]);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(out.stderr.contains(&c), "{}", out.stderr);
    assert!(out.stderr.contains("--mine-threads"), "{}", out.stderr);
    // An unknown key is named, with the keys there are.
    write(&config, "mine-thread = 2\n");
    let out = run(&["start", "--config", &c, "--data-dir", &dir_arg(&b)]);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(
        out.stderr.contains("unknown key \"mine-thread\"") && out.stderr.contains("mine-threads"),
        "{}",
        out.stderr
    );
    // A file that is not TOML, and one that is not there.
    write(&config, "mine = \n");
    let out = run(&["start", "--config", &c]);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(out.stderr.contains(&c), "{}", out.stderr);
    let missing = tmp.path().join("missing.toml");
    let out = run(&["start", "--config", &dir_arg(&missing)]);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(
        out.stderr.contains("cannot read config file") && out.stderr.contains("missing.toml"),
        "{}",
        out.stderr
    );
    assert_eq!(out.stderr.matches("os error").count(), 1, "{}", out.stderr);
}

#[test]
fn the_example_config_is_a_valid_config() {
    let tmp = tempfile::tempdir().unwrap();
    let out = run(&["config", "example"]);
    assert!(out.ok(), "{}", out.stderr);
    for key in [
        "\nmine = false",
        "\nmine-threads = 1",
        "# peer = [",
        "# listen = ",
        "# log-level = \"info,p2p=debug\"",
        "\nlog-format = \"text\"",
    ] {
        assert!(out.stdout.contains(key), "no {key:?} in {}", out.stdout);
    }
    let example = tmp.path().join("example.toml");
    write(&example, &out.stdout);
    let dir = tmp.path().join("node");
    let out = run(&[
        "start",
        "--config",
        &dir_arg(&example),
        "--data-dir",
        &dir_arg(&dir),
        "--chain",
        "regtest",
        "--stop-at-height",
        "0",
    ]);
    assert!(out.ok(), "{}", out.stderr);
    let said = out.lines().join("\n");
    assert!(said.contains("node stopped: height=0 "), "{said}");
}

#[test]
fn the_default_data_dir_follows_xdg_and_data_dir_wins() {
    let tmp = tempfile::tempdir().unwrap();
    let xdg = tmp.path().join("xdg");
    let home = tmp.path().join("home");
    let start = ["start", "--chain", "regtest", "--stop-at-height", "0"];
    let out = run_with_env(
        &start,
        &[
            ("XDG_DATA_HOME", xdg.as_os_str()),
            ("HOME", home.as_os_str()),
        ],
    );
    assert!(out.ok(), "{}", out.stderr);
    assert!(xdg.join("pouwd/node.key").exists(), "{}", out.stdout);
    let out = run_with_env(&["status", "--json"], &[("XDG_DATA_HOME", xdg.as_os_str())]);
    assert!(out.ok(), "{}", out.stderr);
    assert!(out.stdout.contains("\"regtest\""), "{}", out.stdout);

    // No XDG_DATA_HOME (an empty or relative one does not count): HOME's.
    for unset in ["", "relative"] {
        let out = run_with_env(
            &start,
            &[
                ("XDG_DATA_HOME", OsStr::new(unset)),
                ("HOME", home.as_os_str()),
            ],
        );
        assert!(out.ok(), "{}", out.stderr);
        assert!(home.join(".local/share/pouwd/node.key").exists());
    }
    let out = run_with_env(&["start", "--help"], &[("XDG_DATA_HOME", xdg.as_os_str())]);
    assert!(
        out.stdout
            .contains(&format!("[default: {}]", xdg.join("pouwd").display())),
        "{}",
        out.stdout
    );

    // --data-dir wins.
    let explicit = tmp.path().join("explicit");
    let mut args = start.to_vec();
    let e = dir_arg(&explicit);
    args.extend(["--data-dir", &e]);
    let other = tmp.path().join("other");
    let out = run_with_env(&args, &[("XDG_DATA_HOME", other.as_os_str())]);
    assert!(out.ok(), "{}", out.stderr);
    assert!(explicit.join("node.key").exists());
    assert!(!other.exists());
}

/// The subcommands `pouwd --help` lists.
fn subcommands(help: &str) -> Vec<String> {
    help.split("Commands:")
        .nth(1)
        .unwrap_or("")
        .lines()
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_string)
        .collect()
}

#[test]
fn completions_name_every_subcommand() {
    let top = run(&["--help"]);
    let names = subcommands(&top.stdout);
    assert!(names.len() >= 10, "{names:?}");
    for shell in ["bash", "zsh", "fish"] {
        let out = run(&["completions", shell]);
        assert!(out.ok(), "{shell}: {}", out.stderr);
        assert!(out.stdout.len() > 1000, "{shell}: {}", out.stdout);
        for name in &names {
            assert!(out.stdout.contains(name.as_str()), "{shell} lacks {name}");
        }
        assert!(out.stdout.contains("data-dir"), "{shell} lacks --data-dir");
    }
    let out = run(&["completions", "tcsh"]);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
}

#[test]
fn the_version_names_the_commit_of_the_checkout() {
    let out = run(&["--version"]);
    assert!(out.ok(), "{}", out.stderr);
    let git = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(ROOT)
        .output();
    let commit = match git {
        Ok(git) if git.status.success() => String::from_utf8(git.stdout).unwrap(),
        // Built outside a git checkout.
        _ => "unknown".to_string(),
    };
    let wanted = format!(
        "pouwd {} (commit {})",
        env!("CARGO_PKG_VERSION"),
        commit.trim()
    );
    assert_eq!(out.stdout.trim(), wanted);
}

#[test]
fn bad_argument_values_exit_2_with_what_is_wrong() {
    let tmp = tempfile::tempdir().unwrap();
    let d = dir_arg(&tmp.path().join("node"));
    // An unknown chain name lists the known ones, in both commands.
    for command in ["start", "import-chain"] {
        let mut args = vec![command, "--data-dir", &d, "--chain", "mainnet"];
        if command == "import-chain" {
            args.extend(["--in", "-"]);
        }
        let out = run(&args);
        assert_eq!(out.code, Some(2), "{command}: {}", out.stderr);
        for name in ["\"mainnet\"", "devnet", "regtest", "devnet-onnx"] {
            assert!(out.stderr.contains(name), "{command}: {}", out.stderr);
        }
    }
    // Values checked after clap: a peer, an API address.
    for (flag, value, says) in [
        ("--peer", "notanaddress", "notanaddress"),
        ("--peer", "zz@127.0.0.1:1", "the id before '@'"),
        ("--api", "8.8.8.8:1", "--api-public"),
        ("--api", "nonsense", "nonsense"),
    ] {
        let out = run(&["start", "--data-dir", &d, "--chain", "regtest", flag, value]);
        assert_eq!(out.code, Some(2), "{flag} {value}: {}", out.stderr);
        assert!(
            out.stderr.contains(flag) && out.stderr.contains(says),
            "{flag} {value}: {}",
            out.stderr
        );
    }
    assert!(!tmp.path().join("node").exists(), "nothing created");
    // A block selector and a model hash.
    let out = run(&["inspect", "--data-dir", &d, "tip"]);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(
        out.stderr.contains("neither a height nor a block hash"),
        "{}",
        out.stderr
    );
    let out = run(&[
        "eval",
        "--model",
        "m.onnx",
        "--dataset",
        "d.csv",
        "--target",
        "y",
        "--blake3",
        "zz",
    ]);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("--blake3"), "{}", out.stderr);
}

#[test]
fn an_os_error_is_printed_once() {
    let tmp = tempfile::tempdir().unwrap();
    // A port that is taken: the API's bind error shows its io error.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let d = dir_arg(&tmp.path().join("node"));
    let out = run(&[
        "start",
        "--data-dir",
        &d,
        "--chain",
        "regtest",
        "--api",
        &port,
    ]);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(
        out.stderr.contains("cannot serve the API"),
        "{}",
        out.stderr
    );
    assert_eq!(out.stderr.matches("(os error").count(), 1, "{}", out.stderr);
    let missing = dir_arg(&tmp.path().join("missing"));
    for args in [
        vec!["start", "--data-dir", &d, "--peers", &missing],
        vec!["import-chain", "--data-dir", &d, "--in", &missing],
        vec!["start", "--data-dir", &d, "--chain", &missing],
    ] {
        let out = run(&args);
        assert_eq!(out.stderr.matches("(os error").count(), 1, "{}", out.stderr);
    }
}

/// `KEY=VALUE` lines of a systemd unit, by section.
fn unit_keys(text: &str) -> BTreeMap<String, Vec<(String, String)>> {
    let mut sections: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let mut section = String::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
            continue;
        }
        let (key, value) = line.split_once('=').expect("KEY=VALUE");
        sections
            .entry(section.clone())
            .or_default()
            .push((key.trim().to_string(), value.trim().to_string()));
    }
    sections
}

#[test]
fn the_systemd_unit_restarts_stops_cleanly_and_is_hardened() {
    let path = format!("{ROOT}/tools/systemd/pouwd.service");
    let text = std::fs::read_to_string(&path).unwrap();
    let sections = unit_keys(&text);
    let get = |section: &str, key: &str| {
        sections
            .get(section)
            .and_then(|keys| keys.iter().find(|(k, _)| k == key))
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("[{section}] {key}= missing"))
    };
    assert_eq!(get("Service", "User"), "pouwd");
    assert_eq!(get("Service", "Restart"), "on-failure");
    assert_eq!(get("Service", "KillSignal"), "SIGTERM");
    // A clean stop waits up to 5 s for peers to fetch the last blocks,
    // then closes the store: give it far longer than that.
    let stop = get("Service", "TimeoutStopSec");
    let secs: u64 = stop.trim_end_matches('s').parse().unwrap();
    assert!(secs >= 60, "TimeoutStopSec={stop}");
    for (key, value) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
    ] {
        assert_eq!(get("Service", key), value, "{key}");
    }
    assert_eq!(get("Install", "WantedBy"), "multi-user.target");
    // It runs `pouwd start` from a config file in a directory it may write.
    let exec = get("Service", "ExecStart");
    assert!(exec.contains(" start --config "), "{exec}");
    let state = get("Service", "StateDirectory");
    assert!(
        text.contains(&format!("/var/lib/{state}")),
        "the data dir is not the state directory"
    );
    // systemd's own check, where systemd is installed.
    let verify = std::process::Command::new("systemd-analyze")
        .args(["verify", "--man=no", &path])
        .output();
    if let Ok(out) = verify {
        let stderr = String::from_utf8_lossy(&out.stderr);
        // It complains about the binary's path on a machine without it.
        let problems: Vec<_> = stderr
            .lines()
            .filter(|l| !l.contains("/usr/local/bin/pouwd") && !l.trim().is_empty())
            .collect();
        assert!(problems.is_empty(), "systemd-analyze verify: {stderr}");
    }
}

/// Every `pouwd …` command line named in `text`: the inline code spans
/// and the lines of code blocks (with `\` continuations joined), each
/// cut where a shell would end the command. A file that is not Markdown
/// is read as one code block.
fn command_lines(text: &str, markdown: bool) -> Vec<String> {
    let mut segments = Vec::new();
    let mut in_block = !markdown;
    let mut pending = String::new();
    for line in text.lines() {
        if markdown && line.trim_start().starts_with("```") {
            in_block = !in_block;
            continue;
        }
        if in_block {
            pending.push_str(line.trim_end_matches('\\'));
            pending.push(' ');
            if !line.ends_with('\\') {
                segments.push(std::mem::take(&mut pending));
            }
        } else {
            segments.extend(line.split('`').skip(1).step_by(2).map(str::to_string));
        }
    }
    let mut commands = Vec::new();
    for segment in segments {
        // A table cell writes `a\|b` for `a|b`.
        let segment = segment
            .replace("\\|", "¦")
            .replace("cargo run --release -- ", "pouwd ");
        for piece in segment.split(['|', ';', '>', '#']) {
            let piece = piece.replace("&&", "|");
            let mut rest = piece.as_str();
            while let Some(at) = rest.find("pouwd ") {
                let before = rest[..at].chars().last();
                // A path to the binary, not a directory named pouwd.
                let binary = ["bin/", "release/", "debug/", "./"]
                    .iter()
                    .any(|dir| rest[..at].ends_with(dir));
                let tail = &rest[at + "pouwd ".len()..];
                let end = tail.find("pouwd ").unwrap_or(tail.len());
                if binary || before.is_none_or(|c| c.is_whitespace() || c == '(') {
                    commands.push(tail[..end].to_string());
                }
                rest = &tail[end..];
            }
        }
    }
    commands
}

/// The long flags an `--help` page lists as options.
fn help_flags(help: &str) -> BTreeSet<String> {
    help.lines()
        .filter_map(|line| {
            let line = line.trim_start();
            let line = line
                .strip_prefix('-')
                .filter(|l| !l.starts_with('-'))
                .map_or(line, |l| l[1..].trim_start_matches(", "));
            line.strip_prefix("--").map(|l| {
                l.split([' ', '=', '[', '<'])
                    .next()
                    .unwrap_or("")
                    .to_string()
            })
        })
        .collect()
}

#[test]
fn every_command_and_flag_the_docs_name_exists() {
    let mut docs = vec![format!("{ROOT}/README.md")];
    for entry in std::fs::read_dir(format!("{ROOT}/schema")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension() == Some(OsStr::new("md")) {
            docs.push(path.display().to_string());
        }
    }
    docs.push(format!("{ROOT}/tools/systemd/pouwd.service"));
    let top = run(&["--help"]);
    let subs = subcommands(&top.stdout);
    let mut helps: BTreeMap<Vec<String>, (Vec<String>, BTreeSet<String>)> = BTreeMap::new();
    let mut help = |path: &[String]| {
        helps
            .entry(path.to_vec())
            .or_insert_with(|| {
                let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
                args.push("--help");
                let out = run(&args);
                assert!(out.ok(), "pouwd {args:?}: {}", out.stderr);
                (subcommands(&out.stdout), help_flags(&out.stdout))
            })
            .clone()
    };
    let mut checked = 0;
    let mut problems = Vec::new();
    for doc in &docs {
        let text = std::fs::read_to_string(doc).unwrap();
        for command in command_lines(&text, doc.ends_with(".md")) {
            let words: Vec<&str> = command.split_whitespace().collect();
            let Some(first) = words.first() else { continue };
            // `…/bin/pouwd /usr/local/bin/pouwd` names paths, not a command.
            if !first.starts_with(|c: char| c.is_ascii_lowercase() || c == '-') {
                continue;
            }
            let mut path = Vec::new();
            if !first.starts_with('-') {
                if !subs.iter().any(|s| s == first) {
                    problems.push(format!("{doc}: `pouwd {command}`: no command {first:?}"));
                    continue;
                }
                path.push(first.to_string());
                if let Some(second) = words.get(1) {
                    if help(&path).0.iter().any(|s| s == second) {
                        path.push(second.to_string());
                    }
                }
            }
            let flags = help(&path).1;
            for word in &words {
                for flag in word.split(['[', ']', '(', ')', '¦', ',']) {
                    let Some(name) = flag.strip_prefix("--") else {
                        continue;
                    };
                    let name = name.split('=').next().unwrap_or("");
                    if name.is_empty() || name.starts_with('-') {
                        continue;
                    }
                    checked += 1;
                    if !flags.contains(name) {
                        problems.push(format!(
                            "{doc}: `pouwd {command}`: `pouwd {}` has no --{name}",
                            path.join(" ")
                        ));
                    }
                }
            }
        }
    }

    // A flag named alone (`--listen ADDR`, or bare in a table row) is a
    // flag of some command.
    let mut all_flags = BTreeSet::new();
    let mut todo = vec![Vec::new()];
    while let Some(path) = todo.pop() {
        let (subs, flags) = help(&path);
        all_flags.extend(flags);
        for sub in subs {
            let mut next = path.clone();
            next.push(sub);
            todo.push(next);
        }
    }
    // Flags of other programs that the docs name alone.
    let others = [
        // cargo mutants', run by tools/mutants.sh (the mutation results).
        "iterate", // tools/bench_p2p.py's (the gossip benchmark).
        "topology",
    ];
    let mut alone = 0;
    for doc in docs.iter().filter(|d| d.ends_with(".md")) {
        let text = std::fs::read_to_string(doc).unwrap();
        for name in flags_named_alone(&text) {
            alone += 1;
            // `--ort-*` names a family of flags.
            let known = match name.strip_suffix('*') {
                Some(prefix) => all_flags.iter().any(|f| f.starts_with(prefix)),
                None => all_flags.contains(&name),
            };
            if !known && !others.contains(&name.as_str()) {
                problems.push(format!("{doc}: `--{name}` is a flag of no command"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(
        checked > 100,
        "only {checked} flags found: is the parser blind?"
    );
    assert!(
        alone > 50,
        "only {alone} flags named alone found: is the parser blind?"
    );
}

/// The flags a Markdown text names alone, without their dashes: in an
/// inline code span that begins with one (`--listen ADDR`), or bare in a
/// table row. Code blocks are left to [`command_lines`].
fn flags_named_alone(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_block = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_block = !in_block;
            continue;
        }
        if in_block {
            continue;
        }
        let parts: Vec<&str> = line.split('`').collect();
        let mut texts: Vec<&str> = parts
            .iter()
            .skip(1)
            .step_by(2)
            .copied()
            .filter(|span| span.trim_start().starts_with("--"))
            .collect();
        if line.trim_start().starts_with('|') {
            texts.extend(parts.iter().step_by(2).copied());
        }
        for text in texts {
            for word in text.split(|c: char| c.is_whitespace() || "[](),|\\".contains(c)) {
                let Some(name) = word.strip_prefix("--") else {
                    continue;
                };
                let name: String = name
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '*')
                    .collect();
                if name.starts_with(|c: char| c.is_ascii_lowercase()) {
                    out.push(name);
                }
            }
        }
    }
    out
}

#[test]
fn a_peer_on_another_network_is_logged_once_naming_both_chains() {
    use crate::support::net::{free_port, local};
    use crate::support::node::Node;
    use std::time::Duration;
    let tmp = tempfile::tempdir().unwrap();
    let listen = local(free_port());
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let a_dir = dir_arg(&a);
    let regtest = Node::start(&[
        "--data-dir",
        &a_dir,
        "--chain",
        "regtest",
        "--listen",
        &listen,
    ]);
    regtest.wait_for(Duration::from_secs(30), |l| l.starts_with("node started"));
    let b_dir = dir_arg(&b);
    let devnet = Node::start(&["--data-dir", &b_dir, "--chain", "devnet", "--peer", &listen]);
    let limit = Duration::from_secs(30);
    let refusing = regtest.wait_for(limit, |l| l.starts_with("p2p: refusing peer"));
    let refused = devnet.wait_for(limit, |l| l.contains(") refused us: "));
    for (line, theirs, ours) in [
        (&refusing, "devnet", "regtest"),
        (&refused, "regtest", "devnet"),
    ] {
        assert!(
            line.contains(&format!("it is on chain \"{theirs}\""))
                && line.contains(&format!("this node on chain \"{ours}\""))
                && line.contains(&format!("--chain {theirs}")),
            "{line}"
        );
    }
    // The follower dials again 0.5, 1 and 2 s after each refusal: each
    // side refuses or is refused twice more, said only at debug.
    let repeated = |node: &Node| {
        node.lines()
            .iter()
            .filter(|l| l.starts_with("p2p: refusal repeated with peer "))
            .count()
    };
    let started = std::time::Instant::now();
    while repeated(&regtest) < 2 || repeated(&devnet) < 2 {
        assert!(
            started.elapsed() < limit,
            "no repeated refusals: {:#?} {:#?}",
            regtest.lines(),
            devnet.lines()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for (node, what) in [(&regtest, "refusing peer"), (&devnet, "refused us")] {
        let lines: Vec<_> = node
            .lines()
            .into_iter()
            .filter(|l| l.contains(what))
            .collect();
        assert_eq!(lines.len(), 1, "{lines:#?}");
    }
}

#[test]
fn predict_py_refuses_a_model_it_cannot_compute() {
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
        "--stop-at-height",
        "2",
    ]);
    assert!(out.ok(), "{}", out.stderr);
    let linear = tmp.path().join("linear.json");
    let out = run(&["export-model", "--data-dir", &d, "--out", &dir_arg(&linear)]);
    assert!(out.ok(), "{}", out.stderr);
    let predict = |model: &Path| {
        std::process::Command::new("python3")
            .arg(format!("{ROOT}/tools/predict.py"))
            .args(["--model", &dir_arg(model), "--csv"])
            .arg(format!("{ROOT}/data/diabetes.csv"))
            .output()
            .expect("python3 runs")
    };
    let out = predict(&linear);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("r2="));
    // The same weights, as an onnx_linear model's (which apply to its
    // encoder's outputs) or an mlp's: refused, exit 1, saying what to use.
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&linear).unwrap()).unwrap();
    for kind in ["onnx_linear", "mlp"] {
        let mut other = json.clone();
        other["kind"] = kind.into();
        let path = tmp.path().join(format!("{kind}.json"));
        write(&path, &other.to_string());
        let out = predict(&path);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{kind}: {stderr}");
        assert!(
            stderr.contains(&format!("'{kind}'")) && stderr.contains("pouwd eval"),
            "{stderr}"
        );
        assert!(out.stdout.is_empty(), "{kind} was scored");
    }
}

#[test]
fn the_readme_and_schema_point_only_inside_the_repository() {
    let root = std::fs::canonicalize(ROOT).unwrap();
    let mut docs = vec![root.join("README.md")];
    for entry in std::fs::read_dir(root.join("schema")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension() == Some(OsStr::new("md")) {
            docs.push(path);
        }
    }
    let mut links = 0;
    for doc in &docs {
        let text = std::fs::read_to_string(doc).unwrap();
        for outside in ["../shared", "PROTOCOL.md", "JOBS.md", "STYLE.md"] {
            assert!(
                !text.contains(outside),
                "{}: names {outside}",
                doc.display()
            );
        }
        // Every relative Markdown link names a file of the repository.
        for (_, rest) in text.match_indices("](").map(|(i, _)| ((), &text[i + 2..])) {
            let Some(end) = rest.find(')') else { continue };
            let target = rest[..end].split('#').next().unwrap();
            if target.is_empty() || target.contains("://") {
                continue;
            }
            links += 1;
            let path = doc.parent().unwrap().join(target);
            let path = std::fs::canonicalize(&path)
                .unwrap_or_else(|_| panic!("{}: broken link {target}", doc.display()));
            assert!(
                path.starts_with(&root),
                "{}: {target} is outside the repository",
                doc.display()
            );
        }
    }
    assert!(links > 10, "only {links} links found");
}

#[test]
fn a_new_data_dir_fetching_from_another_network_says_so_once() {
    use crate::support::net::{free_port, local};
    use crate::support::node::Node;
    use std::time::Duration;
    let tmp = tempfile::tempdir().unwrap();
    let listen = local(free_port());
    let a_dir = dir_arg(&tmp.path().join("a"));
    let regtest = Node::start(&[
        "--data-dir",
        &a_dir,
        "--chain",
        "regtest",
        "--listen",
        &listen,
    ]);
    regtest.wait_for(Duration::from_secs(30), |l| l.starts_with("node started"));
    // A chain of its own whose dataset is not beside its file: a new data
    // dir fetches it from its peers.
    let chain = tmp.path().join("mychain.json");
    let text = std::fs::read_to_string(format!("{ROOT}/config/regtest.json"))
        .unwrap()
        .replace("\"network\": \"regtest\"", "\"network\": \"mychain\"");
    write(&chain, &text);
    let b_dir = dir_arg(&tmp.path().join("b"));
    let mine = Node::start(&[
        "--data-dir",
        &b_dir,
        "--chain",
        &dir_arg(&chain),
        "--peer",
        &listen,
    ]);
    let line = mine.wait_for(Duration::from_secs(30), |l| l.contains("cannot fetch from"));
    assert!(
        line.contains("it is on chain \"regtest\"")
            && line.contains("this node on chain \"mychain\"")
            && line.contains("--chain regtest"),
        "{line}"
    );
    // Rounds after 0.5, 1 and 2 s: tried again, not logged again.
    mine.wait_for(Duration::from_secs(30), |l| {
        l.contains("trying again in 2s")
    });
    let lines = mine.lines();
    let logged = lines
        .iter()
        .filter(|l| l.contains("cannot fetch from"))
        .count();
    assert_eq!(logged, 1, "{lines:#?}");
}

#[test]
fn the_release_binary_has_no_debug_info_and_profiling_has_it() {
    let text = std::fs::read_to_string(format!("{ROOT}/Cargo.toml")).unwrap();
    let cargo: toml::Table = toml::from_str(&text).unwrap();
    let profile = |name: &str| cargo["profile"][name].as_table().unwrap().clone();
    let release = profile("release");
    let no_debug = |p: &toml::Table| {
        matches!(
            p.get("debug"),
            None | Some(toml::Value::Boolean(false)) | Some(toml::Value::Integer(0))
        ) || p.get("debug").and_then(|d| d.as_str()) == Some("none")
    };
    assert!(no_debug(&release), "[profile.release] {release:?}");
    assert_eq!(release["strip"].as_str(), Some("debuginfo"));
    let profiling = profile("profiling");
    assert_eq!(profiling["inherits"].as_str(), Some("release"));
    assert!(!no_debug(&profiling), "[profile.profiling] {profiling:?}");
    assert_eq!(profiling["strip"].as_str(), Some("none"));
}
