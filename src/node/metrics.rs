//! The node's metrics, for `GET /metrics` (Prometheus text, OpenMetrics
//! flavour): the counters the miner, the network and the import feed as
//! they work, and the encoding of those with a [`Snapshot`] of what is
//! read at scrape time (the tip, the peers, the pool, the store's size).
//!
//! The counters only count: they read no clock, file or store. What is
//! read at scrape time is read by [`read_snapshot`], on the blocking pool.
//! Every metric is described in schema/api.md.

use super::state::Shared;
use crate::store::StoreError;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The shortest window over which `pouwd_training_steps_per_second` is
/// measured; scrapes closer together see the last window's rate.
pub const STEP_RATE_WINDOW: Duration = Duration::from_secs(2);

/// What the node counts while it runs.
pub struct Metrics {
    /// Training steps the miner threads ran, found a block or not.
    pub training_steps: Counter,
    /// Blocks this node mined that extended the best chain (or moved it).
    pub blocks_mined: Counter,
    /// Blocks received from peers and newly stored.
    pub blocks_imported: Counter,
    /// Peers banned since the start.
    pub bans: Counter,
    /// Bytes of closed peer connections, received and sent.
    closed_bytes: [AtomicU64; 2],
    /// The highest byte totals reported, received and sent, so the
    /// counters never go back while a closing connection moves from the
    /// live sum to the closed one.
    reported_bytes: [AtomicU64; 2],
    step_rate: Mutex<StepRate>,
}

/// The steps counted at `at`, and the rate over the window before it.
#[derive(Clone, Copy)]
struct StepRate {
    at: Instant,
    steps: u64,
    per_second: f64,
}

/// What the node reads at scrape time.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    pub height: u64,
    /// The best chain's cumulative work (a 256-bit integer, as a float).
    pub cumulative_work: f64,
    /// Seconds since the tip's timestamp (negative for a tip stamped in
    /// the future by a clock ahead of ours).
    pub tip_age_seconds: f64,
    /// The tip's header score, 0 to 1.
    pub tip_score: f64,
    /// The best score of each job with blocks, by its label: `genesis`
    /// for the genesis task's model (its latest block's score), else the
    /// job's id.
    pub best_scores: Vec<(String, f64)>,
    pub peers_inbound: u64,
    pub peers_outbound: u64,
    /// Bytes received and sent on peer connections since the start, from
    /// [`Metrics::p2p_bytes`].
    pub p2p_bytes_in: u64,
    pub p2p_bytes_out: u64,
    pub bans_active: u64,
    pub syncing: bool,
    pub sync_target_height: u64,
    pub mempool_transactions: u64,
    pub mempool_bytes: u64,
    pub store_bytes: u64,
    pub rss_bytes: u64,
    pub uptime_seconds: f64,
}

impl Metrics {
    /// Counters at zero for a node that starts at `now`.
    pub fn new(now: Instant) -> Metrics {
        Metrics {
            training_steps: Counter::default(),
            blocks_mined: Counter::default(),
            blocks_imported: Counter::default(),
            bans: Counter::default(),
            closed_bytes: Default::default(),
            reported_bytes: Default::default(),
            step_rate: Mutex::new(StepRate {
                at: now,
                steps: 0,
                per_second: 0.0,
            }),
        }
    }

    /// Count the bytes of a peer connection that closed. The network
    /// calls it while it holds its peer list's lock, as it takes the
    /// connection out of the list, so [`Metrics::p2p_bytes`] never counts
    /// a connection twice.
    pub fn connection_closed(&self, bytes_in: u64, bytes_out: u64) {
        self.closed_bytes[0].fetch_add(bytes_in, Ordering::SeqCst);
        self.closed_bytes[1].fetch_add(bytes_out, Ordering::SeqCst);
    }

    fn closed(&self) -> (u64, u64) {
        (
            self.closed_bytes[0].load(Ordering::SeqCst),
            self.closed_bytes[1].load(Ordering::SeqCst),
        )
    }

    /// Bytes received and sent since the start: the closed connections'
    /// and those `live` sums over the open ones (read again if one closed
    /// meanwhile), never less than an earlier answer. A connection taken
    /// out of the list before its bytes are counted as closed is missed
    /// for that moment, and the totals stand still until it is counted.
    pub fn p2p_bytes(&self, live: impl Fn() -> (u64, u64)) -> (u64, u64) {
        let mut attempts = 0;
        let (closed, live) = loop {
            let before = self.closed();
            let live = live();
            attempts += 1;
            if self.closed() == before || attempts == 8 {
                break (before, live);
            }
        };
        let total = |i: usize, now: u64| {
            self.reported_bytes[i]
                .fetch_max(now, Ordering::SeqCst)
                .max(now)
        };
        (
            total(0, closed.0.saturating_add(live.0)),
            total(1, closed.1.saturating_add(live.1)),
        )
    }

    /// Training steps per second over the last window of at least
    /// [`STEP_RATE_WINDOW`] that ended by `now` (the first window starts
    /// with the node); 0 until one has.
    pub fn steps_per_second(&self, now: Instant) -> f64 {
        let steps = self.training_steps.get();
        let mut rate = self.step_rate.lock().unwrap_or_else(|e| e.into_inner());
        let elapsed = now.saturating_duration_since(rate.at);
        if elapsed < STEP_RATE_WINDOW {
            return rate.per_second;
        }
        let per_second = steps.saturating_sub(rate.steps) as f64 / elapsed.as_secs_f64();
        *rate = StepRate {
            at: now,
            steps,
            per_second,
        };
        per_second
    }

    /// The Prometheus text of every metric: the counters as they stand and
    /// `snapshot`, with the step rate as of `now`.
    pub fn encode(&self, snapshot: &Snapshot, now: Instant) -> String {
        let s = snapshot;
        let mut registry = Registry::with_prefix("pouwd");
        let gauge = |value: f64| ConstGauge::new(value);
        let count = |value: u64| ConstCounter::new(value);

        registry.register(
            "height",
            "Height of the best chain's tip",
            gauge(s.height as f64),
        );
        registry.register(
            "cumulative_work",
            "Cumulative work of the best chain (expected hashes, as a float)",
            gauge(s.cumulative_work),
        );
        registry.register(
            "tip_age_seconds",
            "Seconds since the tip block's timestamp",
            gauge(s.tip_age_seconds),
        );
        registry.register(
            "tip_score",
            "The tip block's score, 0 to 1",
            gauge(s.tip_score),
        );
        let best: Family<Vec<(String, String)>, Gauge<f64, AtomicU64>> = Family::default();
        for (job, score) in &s.best_scores {
            best.get_or_create(&vec![("job".to_string(), job.clone())])
                .set(*score);
        }
        registry.register(
            "best_score",
            "Best score of each job with blocks, 0 to 1 (job=\"genesis\": the genesis task's model)",
            best,
        );

        registry.register(
            "training_steps",
            "Training steps the miner ran",
            count(self.training_steps.get()),
        );
        registry.register(
            "training_steps_per_second",
            "Training steps per second over the last few seconds",
            gauge(self.steps_per_second(now)),
        );
        registry.register(
            "blocks_mined",
            "Blocks this node mined onto the best chain",
            count(self.blocks_mined.get()),
        );

        let peers: Family<Vec<(String, String)>, Gauge> = Family::default();
        for (direction, n) in [("inbound", s.peers_inbound), ("outbound", s.peers_outbound)] {
            peers
                .get_or_create(&vec![("direction".to_string(), direction.to_string())])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        registry.register("peers", "Connected peers by direction", peers);
        let (bytes_in, bytes_out) = (s.p2p_bytes_in, s.p2p_bytes_out);
        let bytes: Family<Vec<(String, String)>, Counter> = Family::default();
        for (direction, n) in [("in", bytes_in), ("out", bytes_out)] {
            bytes
                .get_or_create(&vec![("direction".to_string(), direction.to_string())])
                .inc_by(n);
        }
        registry.register(
            "p2p_bytes",
            "UDP bytes received (in) and sent (out) on peer connections",
            bytes,
        );
        registry.register(
            "bans",
            "Peers banned since the start",
            count(self.bans.get()),
        );
        registry.register("bans_active", "Bans in force", gauge(s.bans_active as f64));

        registry.register(
            "syncing",
            "1 while the node syncs from a peer ahead of it, else 0",
            gauge(if s.syncing { 1.0 } else { 0.0 }),
        );
        registry.register(
            "sync_target_height",
            "Height the node syncs towards (0 when idle)",
            gauge(s.sync_target_height as f64),
        );
        registry.register(
            "blocks_imported",
            "Blocks received from peers and newly stored",
            count(self.blocks_imported.get()),
        );
        registry.register(
            "mempool_transactions",
            "Transactions in the pool",
            gauge(s.mempool_transactions as f64),
        );
        registry.register(
            "mempool_bytes",
            "Bytes of the pool's transactions' encodings",
            gauge(s.mempool_bytes as f64),
        );

        registry.register(
            "store_bytes",
            "Size on disk of the files under the data dir's store/",
            gauge(s.store_bytes as f64),
        );
        registry.register(
            "resident_memory_bytes",
            "Resident set size of the node's process",
            gauge(s.rss_bytes as f64),
        );
        registry.register(
            "uptime_seconds",
            "Seconds since the node started",
            gauge(s.uptime_seconds),
        );

        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut text, &registry);
        text
    }
}

/// Read what the store, the pool and the system say now (blocking: call
/// it off the async threads); the network's fields are left at 0 for the
/// caller to fill. `now_ms` is the wall clock, for the tip's age.
pub fn read_snapshot(shared: &Shared, now_ms: u64) -> Result<Snapshot, StoreError> {
    let store = &shared.chain.store;
    let tip = store.tip()?;
    let meta = store.meta(&tip.hash)?;
    let score = |ppm: u32| f64::from(ppm) / 1e6;
    let mut snapshot = Snapshot {
        height: tip.height,
        cumulative_work: tip.cumulative_work.to_string().parse().unwrap_or(f64::MAX),
        ..Snapshot::default()
    };
    if let Some(meta) = &meta {
        snapshot.tip_age_seconds = (now_ms as f64 - meta.timestamp_ms as f64) / 1000.0;
        snapshot.tip_score = score(meta.score_ppm);
        // The genesis task's model: the last block on the best chain that
        // trained it (none while genesis is that block).
        if let Some(genesis_task) = store.meta(&meta.genesis_task_tip)? {
            if genesis_task.height > 0 {
                let label = "genesis".to_string();
                snapshot
                    .best_scores
                    .push((label, score(genesis_task.score_ppm)));
            }
        }
    }
    for (id, job) in store.jobs()? {
        if let Some(best) = job.best {
            snapshot
                .best_scores
                .push((id.to_hex(), score(best.score_ppm)));
        }
    }
    let pool = shared.pool();
    snapshot.mempool_transactions = pool.len() as u64;
    snapshot.mempool_bytes = pool.bytes() as u64;
    drop(pool);
    snapshot.store_bytes = dir_bytes(&shared.dir.store_path()).unwrap_or(0);
    snapshot.rss_bytes = resident_bytes().unwrap_or(0);
    snapshot.uptime_seconds = shared.started.elapsed().as_secs_f64();
    Ok(snapshot)
}

/// Total size of the files under `dir`, recursively; 0 for a missing dir.
pub fn dir_bytes(dir: &std::path::Path) -> std::io::Result<u64> {
    let mut total = 0;
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            total += dir_bytes(&entry.path())?;
        } else if kind.is_file() {
            total += entry.metadata()?.len();
        }
    }
    Ok(total)
}

/// The resident set size of this process, from `/proc/self/status`
/// (`VmRSS`); `None` where there is no such file (not Linux).
pub fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    rss_from_status(&status)
}

fn rss_from_status(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line
        .trim_start_matches("VmRSS:")
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    kib.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(text: &str, name: &str) -> Option<f64> {
        text.lines()
            .find(|l| l.split([' ', '{']).next() == Some(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    #[test]
    fn the_text_holds_every_metric_with_its_value() {
        let metrics = Metrics::new(Instant::now());
        metrics.training_steps.inc_by(5000);
        metrics.blocks_mined.inc_by(3);
        metrics.blocks_imported.inc_by(7);
        metrics.bans.inc();
        let snapshot = Snapshot {
            height: 42,
            cumulative_work: 1e20,
            tip_age_seconds: 1.5,
            tip_score: 0.25,
            best_scores: vec![("genesis".into(), 0.5), ("ab".repeat(32), 0.75)],
            peers_inbound: 2,
            peers_outbound: 1,
            p2p_bytes_in: 110,
            p2p_bytes_out: 220,
            bans_active: 1,
            syncing: true,
            sync_target_height: 50,
            mempool_transactions: 4,
            mempool_bytes: 680,
            store_bytes: 1 << 20,
            rss_bytes: 1 << 25,
            uptime_seconds: 9.0,
        };
        let text = metrics.encode(&snapshot, Instant::now());
        let expect = [
            ("pouwd_height", 42.0),
            ("pouwd_cumulative_work", 1e20),
            ("pouwd_tip_age_seconds", 1.5),
            ("pouwd_tip_score", 0.25),
            ("pouwd_training_steps_total", 5000.0),
            ("pouwd_training_steps_per_second", 0.0),
            ("pouwd_blocks_mined_total", 3.0),
            ("pouwd_bans_total", 1.0),
            ("pouwd_bans_active", 1.0),
            ("pouwd_syncing", 1.0),
            ("pouwd_sync_target_height", 50.0),
            ("pouwd_blocks_imported_total", 7.0),
            ("pouwd_mempool_transactions", 4.0),
            ("pouwd_mempool_bytes", 680.0),
            ("pouwd_store_bytes", 1048576.0),
            ("pouwd_resident_memory_bytes", 33554432.0),
            ("pouwd_uptime_seconds", 9.0),
        ];
        for (name, value) in expect {
            assert_eq!(sample(&text, name), Some(value), "{name} in\n{text}");
            assert!(text.contains(&format!("# HELP {}", name.trim_end_matches("_total"))));
        }
        for line in [
            "pouwd_peers{direction=\"inbound\"} 2",
            "pouwd_peers{direction=\"outbound\"} 1",
            "pouwd_p2p_bytes_total{direction=\"in\"} 110",
            "pouwd_p2p_bytes_total{direction=\"out\"} 220",
            "pouwd_best_score{job=\"genesis\"} 0.5",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
        assert!(text.contains(&format!("{{job=\"{}\"}} 0.75", "ab".repeat(32))));
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn the_grafana_dashboard_uses_only_metrics_the_node_serves() {
        let dashboard: serde_json::Value =
            serde_json::from_str(include_str!("../../tools/grafana/pouwd.json")).unwrap();
        let snapshot = Snapshot {
            best_scores: vec![("genesis".into(), 0.5)],
            ..Snapshot::default()
        };
        let text = Metrics::new(Instant::now()).encode(&snapshot, Instant::now());
        let served: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split([' ', '{']).next())
            .collect();
        let mut queries = vec![dashboard["templating"]["list"][0]["definition"].clone()];
        for panel in dashboard["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().unwrap() {
                queries.push(target["expr"].clone());
            }
        }
        let mut named = 0;
        for query in &queries {
            let query = query.as_str().unwrap();
            for (at, _) in query.match_indices("pouwd_") {
                let name: String = query[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                assert!(served.contains(&name.as_str()), "{name} in {query}");
                named += 1;
            }
        }
        assert!(named >= 20, "{named} metrics named");
    }

    #[test]
    fn byte_totals_never_go_back_when_a_connection_closes() {
        let metrics = Metrics::new(Instant::now());
        assert_eq!(metrics.p2p_bytes(|| (100, 50)), (100, 50));
        // The connection left the peer list before its bytes were counted.
        assert_eq!(metrics.p2p_bytes(|| (0, 0)), (100, 50));
        metrics.connection_closed(120, 60);
        assert_eq!(metrics.p2p_bytes(|| (0, 0)), (120, 60));
        assert_eq!(metrics.p2p_bytes(|| (5, 1)), (125, 61));
        // A connection that closes while the open ones are summed is
        // counted once: the sum is taken again.
        let closing = std::cell::Cell::new(true);
        let live = || {
            if closing.replace(false) {
                metrics.connection_closed(1000, 1000);
                (1000 + 5, 1000 + 1)
            } else {
                (5, 1)
            }
        };
        assert_eq!(metrics.p2p_bytes(live), (1125, 1061));
    }

    #[test]
    fn the_step_rate_is_measured_over_a_window() {
        let start = Instant::now();
        let metrics = Metrics::new(start);
        assert_eq!(metrics.steps_per_second(start), 0.0);
        metrics.training_steps.inc_by(1000);
        // Within the first window: no rate yet.
        assert_eq!(
            metrics.steps_per_second(start + Duration::from_secs(1)),
            0.0
        );
        assert_eq!(
            metrics.steps_per_second(start + Duration::from_secs(4)),
            250.0
        );
        // Within the next window: still the last rate.
        assert_eq!(
            metrics.steps_per_second(start + Duration::from_secs(5)),
            250.0
        );
        metrics.training_steps.inc_by(300);
        assert_eq!(
            metrics.steps_per_second(start + Duration::from_secs(7)),
            100.0
        );
        assert_eq!(
            metrics.steps_per_second(start + Duration::from_secs(10)),
            0.0
        );
    }

    #[test]
    fn store_size_sums_files_below_and_rss_parses_kib() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("a/b")).unwrap();
        std::fs::write(tmp.path().join("x"), [0u8; 10]).unwrap();
        std::fs::write(tmp.path().join("a/b/y"), [0u8; 32]).unwrap();
        assert_eq!(dir_bytes(tmp.path()).unwrap(), 42);
        assert_eq!(dir_bytes(&tmp.path().join("missing")).unwrap(), 0);
        assert_eq!(
            rss_from_status("Name:\tpouwd\nVmRSS:\t   12345 kB\nVmSwap:\t0 kB\n"),
            Some(12345 * 1024)
        );
        assert_eq!(rss_from_status("Name:\tpouwd\n"), None);
        assert!(resident_bytes().is_some_and(|b| b > 0));
    }
}
