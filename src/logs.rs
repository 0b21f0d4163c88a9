//! Logs: every line a node or a command logs is a `tracing` event written
//! to stderr, with a timestamp, a level and a target; stdout is left to
//! what a command prints as its result.
//!
//! The targets are short and stable, so that an operator can filter on
//! them: `pouwd` (the node starting and stopping, blocks mined), `p2p`,
//! `api`, `miner` (its status line and notices) and `import`. The text
//! format reads `2026-12-01T20:07:50.123456Z  INFO p2p: peer … connected`;
//! the JSON format writes one object a line with `timestamp`, `level`,
//! `target` and `message`. Which lines are kept is a filter in
//! `RUST_LOG`'s syntax (`warn`, `info,p2p=debug`), from `--log-level`, else
//! `RUST_LOG`, else `info`.
//!
//! A progress bar ([`crate::progress`]) may be drawn on the same terminal:
//! log lines are written around it, never through it.

use anyhow::{anyhow, Result};
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// `TIMESTAMP LEVEL target: message`, one event a line.
    #[default]
    Text,
    /// One JSON object a line: `timestamp`, `level`, `target`, `message`.
    Json,
}

/// The logging options every command takes.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct LogArgs {
    /// Which log lines to keep: a level (error, warn, info, debug, trace)
    /// or a filter such as `info,p2p=debug`. Overrides RUST_LOG; the
    /// default is RUST_LOG, else `info`.
    #[arg(long, global = true, value_name = "FILTER", value_parser = parse_filter)]
    pub log_level: Option<String>,
    /// How log lines on stderr are written: text, or json for one JSON
    /// object a line.
    #[arg(long, global = true, value_name = "FORMAT", default_value = "text")]
    pub log_format: LogFormat,
}

/// A `--log-level` value, checked as [`EnvFilter`] parses it.
fn parse_filter(text: &str) -> Result<String, String> {
    if text.trim().is_empty() {
        return Err("an empty filter keeps nothing; give a level such as info".into());
    }
    EnvFilter::builder()
        .parse(text)
        .map(|_| text.to_string())
        .map_err(|e| format!("not a log filter ({e}); give a level such as info or warn"))
}

/// The filter in force: `--log-level`, else `RUST_LOG`, else `info`.
/// `rust_log` is the environment's value.
pub fn filter_text(args: &LogArgs, rust_log: Option<&str>) -> String {
    args.log_level
        .clone()
        .or_else(|| {
            rust_log
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        })
        .unwrap_or_else(|| "info".into())
}

/// Install the process's log subscriber. A `RUST_LOG` that does not parse
/// is an error (exit 2, as for a bad argument), not silently ignored.
pub fn init(args: &LogArgs) -> Result<()> {
    let rust_log = std::env::var("RUST_LOG").ok();
    let text = filter_text(args, rust_log.as_deref());
    let filter = EnvFilter::builder().parse(&text).map_err(|e| {
        anyhow!("RUST_LOG={text:?} is not a log filter ({e}); give a level such as info")
    })?;
    *lock(&FORMAT) = args.log_format;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(StderrLines);
    let installed = match args.log_format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
            .try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
    };
    installed.map_err(|e| anyhow!("cannot install the log subscriber: {e}"))
}

static FORMAT: Mutex<LogFormat> = Mutex::new(LogFormat::Text);

/// The format [`init`] installed (text when none was).
pub fn format() -> LogFormat {
    *lock(&FORMAT)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Hands each event's line to stderr in one write, around the progress
/// bar when one is drawn.
struct StderrLines;

impl<'a> MakeWriter<'a> for StderrLines {
    type Writer = LineBuffer;
    fn make_writer(&'a self) -> LineBuffer {
        LineBuffer(Vec::with_capacity(256))
    }
}

/// One event's bytes, written out when the formatter is done with them.
pub struct LineBuffer(Vec<u8>);

impl Write for LineBuffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LineBuffer {
    fn drop(&mut self) {
        if self.0.is_empty() {
            return;
        }
        // A closed stderr must not stop the node: the line is lost.
        crate::progress::around_bar(|| {
            let _ = std::io::stderr().lock().write_all(&self.0);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(level: Option<&str>) -> LogArgs {
        LogArgs {
            log_level: level.map(str::to_string),
            log_format: LogFormat::Text,
        }
    }

    #[test]
    fn the_flag_wins_over_rust_log_which_wins_over_info() {
        assert_eq!(filter_text(&args(Some("warn")), Some("debug")), "warn");
        assert_eq!(filter_text(&args(None), Some("debug")), "debug");
        assert_eq!(filter_text(&args(None), Some("  ")), "info");
        assert_eq!(filter_text(&args(None), None), "info");
    }

    #[test]
    fn a_bad_level_is_refused_with_the_reason() {
        assert!(parse_filter("warn").is_ok());
        assert!(parse_filter("info,p2p=debug").is_ok());
        let error = parse_filter("p2p=loud").unwrap_err();
        assert!(error.contains("not a log filter"), "{error}");
        assert!(parse_filter("").is_err());
    }
}
