//! Running the real `pouwd` binary: one-shot commands and long-running
//! nodes whose output is read line by line. Every child is killed when
//! its handle drops, so no test leaves a process behind.

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
}

/// Run `pouwd args…` to completion, at most `limit`.
pub fn run_with_input(args: &[&str], input: Option<&[u8]>, limit: Duration) -> Output {
    use std::io::Write;
    let mut child = Command::new(BIN)
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

/// A running `pouwd start`, its stdout collected line by line.
pub struct Node {
    child: Option<Child>,
    lines: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<String>>,
}

impl Node {
    pub fn start(args: &[&str]) -> Node {
        let mut child = Command::new(BIN)
            .arg("start")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn pouwd start");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let stdout = child.stdout.take().expect("stdout");
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                sink.lock().expect("lines").push(line);
            }
        });
        let err = child.stderr.take().expect("stderr");
        let sink = Arc::clone(&stderr);
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                let mut s = sink.lock().expect("stderr");
                s.push_str(&line);
                s.push('\n');
            }
        });
        Node {
            child: Some(child),
            lines,
            stderr,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().expect("lines").clone()
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().expect("stderr").clone()
    }

    pub fn mined(&self) -> Vec<Mined> {
        self.lines().iter().filter_map(|l| parse_mined(l)).collect()
    }

    /// Wait until a stdout line satisfies `pred`; panics after `limit`.
    pub fn wait_for(&self, limit: Duration, pred: impl Fn(&str) -> bool) -> String {
        let started = Instant::now();
        loop {
            if let Some(line) = self.lines().into_iter().find(|l| pred(l)) {
                return line;
            }
            if started.elapsed() > limit {
                panic!(
                    "no matching line within {limit:?}; stdout: {:?}; stderr: {}",
                    self.lines(),
                    self.stderr()
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
