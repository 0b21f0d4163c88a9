//! Running the real `pouwd` binary: one-shot commands and long-running
//! nodes whose output is read line by line. Every child is killed when
//! its handle drops, so no test leaves a process behind.
//!
//! A node logs on stderr, `TIMESTAMP LEVEL target: message` a line; the
//! lines a test reads are the messages ([`log_message`]), with stdout's
//! lines, in the order they came. Nodes run with each mined block logged
//! ([`TEST_LOG_FILTER`]) unless the test names a filter of its own.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_pouwd");

/// Result of a finished command.
#[derive(Debug)]
pub struct Output {
    pub code: Option<i32>,
    pub stdout: String,
    pub stdout_bytes: Vec<u8>,
    pub stderr: String,
}

impl Output {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }

    /// Stdout's lines, then the log lines' messages ([`log_message`]).
    pub fn lines(&self) -> Vec<String> {
        self.stdout
            .lines()
            .chain(self.stderr.lines().map(log_message))
            .map(str::to_string)
            .collect()
    }
}

/// Run `pouwd args…` to completion, at most `limit`, logging with
/// [`TEST_LOG_FILTER`].
pub fn run_with_input(args: &[&str], input: Option<&[u8]>, limit: Duration) -> Output {
    use std::io::Write;
    let mut child = Command::new(BIN)
        .env("RUST_LOG", TEST_LOG_FILTER)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn pouwd");
    if let Some(bytes) = input {
        let mut stdin = child.stdin.take().expect("stdin");
        let bytes = bytes.to_vec();
        std::thread::spawn(move || {
            let _ = stdin.write_all(&bytes);
        });
    }
    wait_output(child, limit)
}

fn wait_output(mut child: Child, limit: Duration) -> Output {
    use std::io::Read;
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out_thread = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stdout.read_to_end(&mut bytes);
        bytes
    });
    let err_thread = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("pouwd ran longer than {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let stdout_bytes = out_thread.join().expect("stdout reader");
    Output {
        code: status.code(),
        stdout: String::from_utf8_lossy(&stdout_bytes).into_owned(),
        stdout_bytes,
        stderr: err_thread.join().expect("stderr reader"),
    }
}

/// Run `pouwd args…` to completion within two minutes.
pub fn run(args: &[&str]) -> Output {
    run_with_input(args, None, Duration::from_secs(120))
}

/// Run `pouwd args…` with `env` added to its environment, within two
/// minutes.
pub fn run_with_env(args: &[&str], env: &[(&str, &std::ffi::OsStr)]) -> Output {
    let child = Command::new(BIN)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn pouwd");
    wait_output(child, Duration::from_secs(120))
}

/// `args` with a data dir argument in front.
pub fn dir_arg(dir: &Path) -> String {
    dir.to_str().expect("utf-8 path").to_string()
}

/// The log filter nodes run with: info, each block mined (said at debug
/// when blocks come faster than one a second) and each sync line (at
/// debug between two said at info).
pub const TEST_LOG_FILTER: &str = "info,pouwd=debug,p2p=debug";

/// A log line's message as a test reads it: `2026-…Z  INFO p2p: peer …`
/// reads `p2p: peer …`, and the node's own target is left out
/// (`… INFO pouwd: node started …` reads `node started …`). Lines that are
/// not log lines are kept as they are.
pub fn log_message(line: &str) -> &str {
    let Some((stamp, rest)) = line.split_once(' ') else {
        return line;
    };
    let is_stamp = stamp.len() >= 20
        && stamp.as_bytes()[..4].iter().all(u8::is_ascii_digit)
        && stamp.contains('T')
        && stamp.ends_with('Z');
    if !is_stamp {
        return line;
    }
    let rest = rest.trim_start();
    let Some((level, message)) = rest.split_once(' ') else {
        return line;
    };
    if !["TRACE", "DEBUG", "INFO", "WARN", "ERROR"].contains(&level) {
        return line;
    }
    message.strip_prefix("pouwd: ").unwrap_or(message)
}

/// A block the node reported as mined and stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mined {
    pub height: u64,
    pub hash: String,
}

/// Parse `mined height=H hash=X … stored` lines.
pub fn parse_mined(line: &str) -> Option<Mined> {
    if !line.starts_with("mined ") || !line.ends_with(" stored") {
        return None;
    }
    let field = |name: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(name).map(str::to_string))
    };
    Some(Mined {
        height: field("height=")?.parse().ok()?,
        hash: field("hash=")?,
    })
}

/// A running `pouwd start`, its stdout and log lines collected line by line.
pub struct Node {
    child: Option<Child>,
    lines: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<String>>,
    raw_stderr: Arc<Mutex<String>>,
}

impl Node {
    pub fn start(args: &[&str]) -> Node {
        Node::start_with_env(args, &[])
    }

    /// `pouwd start args…` with `env` set; `RUST_LOG` is
    /// [`TEST_LOG_FILTER`] unless `env` names it.
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Node {
        let mut command = Command::new(BIN);
        command.env("RUST_LOG", TEST_LOG_FILTER);
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command
            .arg("start")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn pouwd start");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let raw_stderr = Arc::new(Mutex::new(String::new()));
        let stdout = child.stdout.take().expect("stdout");
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                sink.lock().expect("lines").push(line);
            }
        });
        let err = child.stderr.take().expect("stderr");
        let (sink, raw, all) = (
            Arc::clone(&stderr),
            Arc::clone(&raw_stderr),
            Arc::clone(&lines),
        );
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                let message = log_message(&line).to_string();
                {
                    let mut s = raw.lock().expect("stderr");
                    s.push_str(&line);
                    s.push('\n');
                }
                {
                    let mut s = sink.lock().expect("stderr");
                    s.push_str(&message);
                    s.push('\n');
                }
                all.lock().expect("lines").push(message);
            }
        });
        Node {
            child: Some(child),
            lines,
            stderr,
            raw_stderr,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().expect("lines").clone()
    }

    /// The log lines' messages ([`log_message`]), one a line.
    pub fn stderr(&self) -> String {
        self.stderr.lock().expect("stderr").clone()
    }

    /// Stderr as the node wrote it.
    pub fn raw_stderr(&self) -> String {
        self.raw_stderr.lock().expect("stderr").clone()
    }

    pub fn mined(&self) -> Vec<Mined> {
        self.lines().iter().filter_map(|l| parse_mined(l)).collect()
    }

    /// Wait until a line (of stdout, or a log message) satisfies `pred`;
    /// panics after `limit`.
    pub fn wait_for(&self, limit: Duration, pred: impl Fn(&str) -> bool) -> String {
        let started = Instant::now();
        loop {
            if let Some(line) = self.lines().into_iter().find(|l| pred(l)) {
                return line;
            }
            if started.elapsed() > limit {
                panic!(
                    "no matching line within {limit:?}; lines: {:?}",
                    self.lines(),
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Send a signal by name (`TERM`, `INT`, `KILL`).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Wait for the process to exit; returns its exit code (None when killed by a signal).
    pub fn wait(&mut self, limit: Duration) -> Option<i32> {
        let child = self.child.as_mut().expect("running");
        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                self.child = None;
                // Let the readers drain the pipes.
                std::thread::sleep(Duration::from_millis(50));
                return status.code();
            }
            if started.elapsed() > limit {
                let _ = child.kill();
                let _ = child.wait();
                self.child = None;
                panic!(
                    "node did not exit within {limit:?}; stderr: {}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}
