//! Progress of a long task (an import, a sync): a bar with the
//! count, the total, the rate and the time left when stderr is a terminal
//! and logs are text, else a log line with the same figures every
//! [`LINE_INTERVAL`], and a summary line when the task ends.
//!
//! A progress report only writes to stderr; it never decides anything.
//! `POUWD_PROGRESS_MS` sets the interval between lines (for tests).

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Time between two progress lines when no bar is drawn.
pub const LINE_INTERVAL: Duration = Duration::from_secs(5);

/// The bar being drawn, if any, so log lines can be written around it.
static BAR: Mutex<Option<ProgressBar>> = Mutex::new(None);

fn bar_lock() -> std::sync::MutexGuard<'static, Option<ProgressBar>> {
    BAR.lock().unwrap_or_else(|e| e.into_inner())
}

/// Run `write` with the bar, if one is drawn, cleared from the terminal
/// meanwhile and drawn again after.
pub fn around_bar(write: impl FnOnce()) {
    let bar = bar_lock().clone();
    match bar {
        Some(bar) => bar.suspend(write),
        None => write(),
    }
}

/// Whether progress is drawn as a bar: stderr is a terminal and logs are
/// text.
pub fn bar_wanted() -> bool {
    std::io::stderr().is_terminal() && crate::logs::format() == crate::logs::LogFormat::Text
}

/// Which task a report is about: it names the log target and the line's
/// first word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Task {
    /// `import-chain`, target `import`.
    Import,
    /// Downloading blocks from peers, target `p2p`, lines `sync: …`.
    Sync,
    /// Downloading a task's file from peers, target `p2p`: drawn as a bar
    /// only (its lines are the fetcher's own `fetching …` lines).
    Fetch,
}

/// What is counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Blocks,
    Bytes,
}

impl Task {
    fn name(self) -> &'static str {
        match self {
            Task::Import => "import",
            Task::Sync => "sync",
            Task::Fetch => "fetch",
        }
    }

    fn log(self, message: &str) {
        match self {
            Task::Import => tracing::info!(target: "import", "{message}"),
            Task::Sync => tracing::info!(target: "p2p", "sync: {message}"),
            Task::Fetch => tracing::info!(target: "p2p", "fetch: {message}"),
        }
    }
}

/// One task's progress report.
pub struct Progress {
    task: Task,
    unit: Unit,
    total: Option<u64>,
    count: u64,
    started: Instant,
    last_line: Instant,
    interval: Duration,
    bar: Option<ProgressBar>,
}

impl Progress {
    /// Start reporting `task`, of `total` units when known. A bar is drawn
    /// when stderr is a terminal and logs are text.
    pub fn start(task: Task, unit: Unit, total: Option<u64>) -> Progress {
        let bar = bar_wanted().then(|| {
            let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr());
            // The rate and the detail are the message (`update`).
            let template = match (unit, total.is_some()) {
                (Unit::Blocks, true) => {
                    "{prefix} [{wide_bar}] {human_pos}/{human_len} blocks, ETA {eta}, {msg}"
                }
                (Unit::Blocks, false) => "{prefix} {spinner} {human_pos} blocks, {msg}",
                (Unit::Bytes, true) => {
                    "{prefix} [{wide_bar}] {bytes}/{total_bytes}, ETA {eta}, {msg}"
                }
                (Unit::Bytes, false) => "{prefix} {spinner} {bytes}, {msg}",
            };
            if let Ok(style) = ProgressStyle::with_template(template) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_prefix(task.name());
            bar.enable_steady_tick(Duration::from_millis(200));
            *bar_lock() = Some(bar.clone());
            bar
        });
        let interval = std::env::var("POUWD_PROGRESS_MS")
            .ok()
            .and_then(|ms| ms.parse().ok())
            .map_or(LINE_INTERVAL, Duration::from_millis);
        let now = Instant::now();
        Progress {
            task,
            unit,
            total,
            count: 0,
            started: now,
            last_line: now,
            interval,
            bar,
        }
    }

    /// Whether a bar is drawn (else lines are logged).
    pub fn has_bar(&self) -> bool {
        self.bar.is_some()
    }

    /// The total became known or changed.
    pub fn set_total(&mut self, total: u64) {
        self.total = Some(total);
        if let Some(bar) = &self.bar {
            bar.set_length(total);
        }
    }

    /// `count` units are done; `detail` (e.g. `512 stored, 0 already
    /// known`) goes after the figures. Logs a line if the interval passed.
    pub fn update(&mut self, count: u64, detail: &str) {
        self.count = count;
        let now = Instant::now();
        if let Some(bar) = &self.bar {
            let rate = rate(count, now.duration_since(self.started));
            bar.set_position(count);
            bar.set_message(format!(
                "{}/s{}{detail}",
                self.amount(rate.round() as u64, true),
                if detail.is_empty() { "" } else { ", " }
            ));
            return;
        }
        if now.duration_since(self.last_line) < self.interval {
            return;
        }
        self.last_line = now;
        let line = self.line(now.duration_since(self.started), detail);
        self.task.log(&line);
    }

    /// The figures: `count/total unit (pct %), detail, rate/s, ETA t`.
    fn line(&self, elapsed: Duration, detail: &str) -> String {
        let rate = rate(self.count, elapsed);
        let mut line = match self.total {
            Some(total) => format!(
                "{}/{} ({}%)",
                self.amount(self.count, false),
                self.amount(total, true),
                percent(self.count, total)
            ),
            None => self.amount(self.count, true),
        };
        if !detail.is_empty() {
            line.push_str(", ");
            line.push_str(detail);
        }
        line.push_str(&format!(", {}/s", self.amount(rate.round() as u64, true)));
        if let Some(total) = self.total {
            line.push_str(&format!(
                ", ETA {}",
                eta(total.saturating_sub(self.count), rate)
            ));
        }
        line
    }

    fn amount(&self, n: u64, with_unit: bool) -> String {
        match (self.unit, with_unit) {
            (Unit::Blocks, true) => format!("{n} blocks"),
            (Unit::Blocks, false) => n.to_string(),
            (Unit::Bytes, _) => format!("{}", indicatif::HumanBytes(n)),
        }
    }

    /// End the report with a summary line: `verb count unit in t (rate/s)`.
    pub fn finish(self, verb: &str, detail: &str) {
        let elapsed = self.started.elapsed();
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
            *bar_lock() = None;
        }
        let mut line = format!(
            "{verb} {} in {:.1}s ({}/s)",
            self.amount(self.count, true),
            elapsed.as_secs_f64(),
            self.amount(rate(self.count, elapsed).round() as u64, true)
        );
        if !detail.is_empty() {
            line.push_str(", ");
            line.push_str(detail);
        }
        self.task.log(&line);
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
            *bar_lock() = None;
        }
    }
}

fn rate(count: u64, elapsed: Duration) -> f64 {
    let seconds = elapsed.as_secs_f64();
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}

fn percent(count: u64, total: u64) -> u64 {
    (u128::from(count.min(total)) * 100)
        .checked_div(u128::from(total))
        .map_or(100, |p| p as u64)
}

/// The time `left` units take at `rate` a second: `42s`, `3m05s`,
/// `2h10m`, or `?` while there is no rate.
pub fn eta(left: u64, rate: f64) -> String {
    if left == 0 {
        return "0s".into();
    }
    if rate <= 0.0 || !rate.is_finite() {
        return "?".into();
    }
    let seconds = (left as f64 / rate).ceil().min(1e9) as u64;
    match seconds {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{:02}s", s / 60, s % 60),
        s => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(unit: Unit, total: Option<u64>) -> Progress {
        let now = Instant::now();
        Progress {
            task: Task::Import,
            unit,
            total,
            count: 0,
            started: now,
            last_line: now,
            interval: LINE_INTERVAL,
            bar: None,
        }
    }

    #[test]
    fn a_line_has_the_count_the_total_the_rate_and_the_time_left() {
        let mut progress = lines(Unit::Blocks, Some(3000));
        progress.count = 1000;
        let line = progress.line(Duration::from_secs(2), "1000 stored");
        assert_eq!(
            line,
            "1000/3000 blocks (33%), 1000 stored, 500 blocks/s, ETA 4s"
        );
        progress.total = None;
        let line = progress.line(Duration::from_secs(2), "");
        assert_eq!(line, "1000 blocks, 500 blocks/s");
    }

    #[test]
    fn bytes_are_shown_in_binary_units() {
        let mut progress = lines(Unit::Bytes, Some(4 << 20));
        progress.count = 1 << 20;
        let line = progress.line(Duration::from_secs(1), "");
        assert_eq!(line, "1.00 MiB/4.00 MiB (25%), 1.00 MiB/s, ETA 3s");
    }

    #[test]
    fn the_time_left_reads_in_seconds_minutes_or_hours() {
        assert_eq!(eta(0, 0.0), "0s");
        assert_eq!(eta(10, 0.0), "?");
        assert_eq!(eta(42, 1.0), "42s");
        assert_eq!(eta(185, 1.0), "3m05s");
        assert_eq!(eta(7800, 1.0), "2h10m");
    }

    #[test]
    fn a_line_is_logged_at_most_once_an_interval() {
        let mut progress = lines(Unit::Blocks, Some(10));
        progress.update(5, "");
        assert!(
            progress.last_line == progress.started,
            "too early for a line"
        );
        progress.last_line -= LINE_INTERVAL;
        let before = progress.last_line;
        progress.update(6, "");
        assert!(progress.last_line > before, "the interval passed: a line");
        assert_eq!(percent(6, 10), 60);
        assert_eq!(percent(0, 0), 100);
    }
}
