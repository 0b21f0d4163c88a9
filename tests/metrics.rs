//! `GET /metrics` and the dashboard at `GET /`, on real node processes:
//! the metrics read by Prometheus's own Python parser
//! (tools/parse_metrics.py) and checked against the JSON API, and the
//! page loaded in headless Chromium, whose DOM must hold the chart's points.

use crate::api::{api_addr, get, request};
use crate::p2p::{assert_banned, start, stop, LIMIT};
use crate::support::net::{free_port, local, wait_until, Adversary};
use crate::support::node::{dir_arg, run};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// `GET path`: the status, the lower-cased head and the body as text.
fn get_text(addr: SocketAddr, path: &str) -> (u16, String, String) {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let text = String::from_utf8(response).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("end of headers");
    (
        head[9..12].parse().unwrap(),
        head.to_ascii_lowercase(),
        body.to_string(),
    )
}

/// `POST /tx` with `body` and the API's token: the whole response.
fn post_tx(addr: SocketAddr, token: &str, body: &[u8]) -> String {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "POST /tx HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Authorization: Bearer {token}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    stream.write_all(body).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Python with prometheus_client, from tools/prometheus_python.sh
/// (which installs the pinned version into .venv when it is missing).
fn prometheus_python() -> PathBuf {
    let out = Command::new(repo_root().join("tools/prometheus_python.sh"))
        .output()
        .expect("run tools/prometheus_python.sh");
    assert!(
        out.status.success(),
        "tools/prometheus_python.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// Every sample of a scrape, by sample name and labels.
#[derive(Debug)]
struct Scrape {
    samples: BTreeMap<(String, BTreeMap<String, String>), f64>,
    types: BTreeMap<String, String>,
}

impl Scrape {
    /// The one unlabelled sample `name`.
    fn value(&self, name: &str) -> f64 {
        self.labelled(name, &[])
    }

    fn labelled(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let key = (
            name.to_string(),
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        *self
            .samples
            .get(&key)
            .unwrap_or_else(|| panic!("no sample {key:?} in {self:?}"))
    }
}

/// Scrape `/metrics` and parse it with Prometheus's Python parser.
fn scrape(addr: SocketAddr, python: &Path) -> Scrape {
    let (status, head, text) = get_text(addr, "/metrics");
    assert_eq!(status, 200, "{text}");
    assert!(
        head.contains("content-type: application/openmetrics-text"),
        "{head}"
    );
    let mut child = Command::new(python)
        .arg(repo_root().join("tools/parse_metrics.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run tools/parse_metrics.py");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the parser refused the text: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let families: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut scrape = Scrape {
        samples: BTreeMap::new(),
        types: BTreeMap::new(),
    };
    for family in families.as_array().unwrap() {
        let name = family["name"].as_str().unwrap().to_string();
        assert!(
            !family["help"].as_str().unwrap().is_empty(),
            "{name} has no help"
        );
        scrape
            .types
            .insert(name, family["type"].as_str().unwrap().to_string());
        for sample in family["samples"].as_array().unwrap() {
            let labels = sample["labels"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                .collect();
            let key = (sample["name"].as_str().unwrap().to_string(), labels);
            let value = sample["value"].as_f64().unwrap();
            assert!(scrape.samples.insert(key, value).is_none(), "{sample}");
        }
    }
    scrape
}

fn height(addr: SocketAddr) -> u64 {
    get(addr, "/status")["height"].as_u64().unwrap()
}

/// Sum of the file sizes under `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                dir_bytes(&e.path())
            } else {
                e.metadata().unwrap().len()
            }
        })
        .sum()
}

#[test]
fn metrics_agree_with_the_api_on_a_two_node_network() {
    let python = prometheus_python();
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let (pa, pb) = (free_port(), free_port());
    let mut miner = start(
        &a,
        &["--mine", "--listen", &local(pa), "--api", "127.0.0.1:0"],
    );
    let miner_api = api_addr(&miner);
    wait_until(LIMIT, "the miner reaches height 20", &[&miner], || {
        height(miner_api) >= 20
    });
    let mut follower = start(
        &b,
        &[
            "--listen",
            &local(pb),
            "--peer",
            &local(pa),
            "--api",
            "127.0.0.1:0",
        ],
    );
    let follower_api = api_addr(&follower);
    wait_until(
        LIMIT,
        "the follower syncs 20 blocks",
        &[&miner, &follower],
        || height(follower_api) >= 20,
    );

    // The step rate is measured over windows of 2 s from the start.
    wait_until(LIMIT, "the miner's step rate", &[&miner], || {
        get(miner_api, "/status")["mining"]["steps_per_second"]
            .as_f64()
            .unwrap()
            > 0.0
    });

    // The miner: its height between two reads of /status around the
    // scrape (it mines on), its blocks and steps counted, one peer in.
    let before = height(miner_api);
    let m = scrape(miner_api, &python);
    let after = height(miner_api);
    let h = m.value("pouwd_height");
    assert!(
        (before as f64..=after as f64).contains(&h),
        "{before} ≤ {h} ≤ {after}"
    );
    assert_eq!(m.types["pouwd_height"], "gauge");
    assert_eq!(m.types["pouwd_blocks_mined"], "counter");
    let mined = m.value("pouwd_blocks_mined_total");
    assert!(
        mined >= 20.0 && mined <= h,
        "mined {mined} of {h} blocks, every one after genesis"
    );
    assert!(m.value("pouwd_training_steps_total") >= mined);
    assert!(m.value("pouwd_training_steps_per_second") > 0.0);
    assert_eq!(m.labelled("pouwd_peers", &[("direction", "inbound")]), 1.0);
    assert_eq!(m.labelled("pouwd_peers", &[("direction", "outbound")]), 0.0);
    for direction in ["in", "out"] {
        let bytes = m.labelled("pouwd_p2p_bytes_total", &[("direction", direction)]);
        assert!(bytes > 1000.0, "{direction}: {bytes}: 20 blocks went out");
    }
    assert_eq!(m.value("pouwd_blocks_imported_total"), 0.0);
    assert_eq!(m.value("pouwd_bans_total"), 0.0);
    assert_eq!(m.value("pouwd_bans_active"), 0.0);
    let age = m.value("pouwd_tip_age_seconds");
    assert!((-5.0..30.0).contains(&age), "tip age {age}");
    let score = m.labelled("pouwd_best_score", &[("job", "genesis")]);
    assert!(score > 0.0 && score <= 1.0, "{score}");
    // The store grows while the miner mines on: the same size within 2×.
    let store = m.value("pouwd_store_bytes");
    let on_disk = dir_bytes(&a.join("store")) as f64;
    assert!(
        store > 0.0 && store >= on_disk / 2.0 && store <= on_disk * 2.0,
        "{store} against {on_disk} on disk"
    );
    assert!(m.value("pouwd_resident_memory_bytes") > 1e6);
    assert!(m.value("pouwd_uptime_seconds") > 0.0);

    // The follower: one peer out, blocks imported, none mined.
    let f = scrape(follower_api, &python);
    assert_eq!(f.labelled("pouwd_peers", &[("direction", "outbound")]), 1.0);
    assert_eq!(f.labelled("pouwd_peers", &[("direction", "inbound")]), 0.0);
    assert!(f.value("pouwd_blocks_imported_total") >= 20.0);
    assert_eq!(f.value("pouwd_blocks_mined_total"), 0.0);
    assert_eq!(f.value("pouwd_training_steps_total"), 0.0);
    let bytes_in = f.labelled("pouwd_p2p_bytes_total", &[("direction", "in")]);

    // With the miner stopped the follower's chain stands still: its
    // figures equal the API's, and the closed connection's bytes stay
    // counted.
    stop(&mut miner);
    wait_until(
        LIMIT,
        "the follower sees the miner go",
        &[&follower],
        || get(follower_api, "/status")["peers"] == 0,
    );
    // A transfer signed with the stopped miner's key, handed to the
    // follower, waits in its pool (nothing mines it).
    let follower_id = run(&["id", "--data-dir", &dir_arg(&b)]);
    assert!(follower_id.ok(), "id: {}", follower_id.stderr);
    let signed = run(&[
        "send",
        "--data-dir",
        &dir_arg(&a),
        "--to",
        follower_id.stdout.trim(),
        "--amount",
        "1",
        "--out",
        "-",
    ]);
    assert!(signed.ok(), "send: {}", signed.stderr);
    let token = std::fs::read_to_string(b.join("api.cookie")).unwrap();
    let answer = post_tx(follower_api, &token, &signed.stdout_bytes);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let status = get(follower_api, "/status");
    let mempool = get(follower_api, "/mempool");
    assert_eq!(mempool["count"], 1, "{mempool}");
    let f = scrape(follower_api, &python);
    assert_eq!(f.value("pouwd_height"), status["height"].as_f64().unwrap());
    let work: f64 = status["cumulative_work"].as_str().unwrap().parse().unwrap();
    assert_eq!(f.value("pouwd_cumulative_work"), work);
    assert_eq!(
        f.value("pouwd_tip_score"),
        status["score_ppm"].as_f64().unwrap() / 1e6
    );
    assert_eq!(f.labelled("pouwd_peers", &[("direction", "outbound")]), 0.0);
    assert!(f.labelled("pouwd_p2p_bytes_total", &[("direction", "in")]) >= bytes_in);
    assert_eq!(f.value("pouwd_syncing"), 0.0);
    assert_eq!(
        f.value("pouwd_mempool_transactions"),
        mempool["count"].as_f64().unwrap()
    );
    assert_eq!(
        f.value("pouwd_mempool_bytes"),
        mempool["bytes"].as_f64().unwrap()
    );

    // A peer that breaks the protocol is banned, and counted. It comes
    // from another address than the honest peers' 127.0.0.1, which the
    // ban covers too.
    let adversary = Adversary::at(std::net::Ipv4Addr::new(127, 50, 1, 1));
    let conn = adversary
        .connect(local(pb).parse().unwrap())
        .expect("TLS handshake");
    let _ = conn.send_raw(&[4, 0, 0, 0, 0xff, 0xff, 0xff, 0xff], 1024);
    assert_banned(&follower, &adversary, &conn, "malformed hello");
    let f = scrape(follower_api, &python);
    assert_eq!(f.value("pouwd_bans_total"), 1.0);
    assert_eq!(f.value("pouwd_bans_active"), 1.0);

    let store = f.value("pouwd_store_bytes");
    let on_disk = dir_bytes(&b.join("store")) as f64;
    assert!(
        store > 0.0 && store >= on_disk / 2.0 && store <= on_disk * 2.0,
        "{store} against {on_disk} on disk"
    );
    stop(&mut follower);
}

/// Chromium from Debian's package (tools/test.sh installs it when missing).
fn chromium() -> PathBuf {
    let path = std::env::var_os("CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    assert!(
        path.exists(),
        "{} is missing: install Debian's chromium (`apt-get install -y chromium`, as tools/test.sh does) or set CHROMIUM",
        path.display()
    );
    path
}

/// Load `url` in headless Chromium and return the DOM once the page's
/// script has run for `budget_ms` of virtual time.
fn dump_dom(url: &str, budget_ms: u64) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--virtual-time-budget={budget_ms}"))
        .arg("--dump-dom")
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromium");
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut dom = String::new();
        let _ = stdout.read_to_string(&mut dom);
        dom
    });
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    reader.join().unwrap()
}

/// The value of `attr="…"` in `tag`.
fn attr<'a>(tag: &'a str, attr: &str) -> Option<&'a str> {
    let start = tag.find(&format!(" {attr}=\""))? + attr.len() + 3;
    Some(&tag[start..start + tag[start..].find('"')?])
}

#[test]
fn the_dashboard_charts_the_scores_in_headless_chromium() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    let mut node = start(&dir, &["--mine", "--api", "127.0.0.1:0"]);
    let addr = api_addr(&node);
    wait_until(LIMIT, "the node mines 10 blocks", &[&node], || {
        height(addr) >= 10
    });

    // The page and its files come from the binary, with their types.
    for (path, kind) in [
        ("/", "text/html"),
        ("/dashboard.js", "text/javascript"),
        ("/dashboard.css", "text/css"),
    ] {
        let (status, head, body) = get_text(addr, path);
        assert_eq!(status, 200, "{path}");
        assert!(head.contains(&format!("content-type: {kind}")), "{head}");
        assert!(!body.is_empty());
    }

    let dom = dump_dom(&format!("http://{addr}/"), 5000);
    let after = height(addr);
    assert!(dom.contains("id=\"chart\""), "{dom}");
    let points: Vec<(u64, f64)> = chart_points(&dom)
        .into_iter()
        .map(|(height, score, _)| (height, score))
        .collect();
    assert!(points.len() >= 10, "{} points in {dom}", points.len());
    for pair in points.windows(2) {
        assert_eq!(pair[1].0, pair[0].0 + 1, "consecutive heights: {points:?}");
    }
    let (last, _) = *points.last().unwrap();
    assert!((10..=after).contains(&last), "{last} of {after}");
    assert!(points.iter().all(|(_, s)| (0.0..=1.0).contains(s)));
    // The point at each height carries that block's score.
    let (height_seen, score_seen) = points[points.len() / 2];
    let block = get(addr, &format!("/blocks/{height_seen}"));
    let ppm = block["score_ppm"].as_f64().unwrap();
    assert_eq!(score_seen, ppm / 1e6);
    // The tiles show the node's figures.
    let tile = |id: &str| {
        let start = dom.find(&format!("id=\"{id}\">")).unwrap() + id.len() + 6;
        dom[start..start + dom[start..].find('<').unwrap()].to_string()
    };
    let shown: u64 = tile("height").parse().unwrap();
    assert!((10..=after).contains(&shown), "{shown}");
    assert_eq!(tile("peers"), "0");
    assert!(tile("mined").parse::<u64>().unwrap() >= 10);
    assert!(dom.contains("class=\"muted\">updated "), "{dom}");
    stop(&mut node);
}

/// The circles of the chart in `dom`: each point's height, score and job.
fn chart_points(dom: &str) -> Vec<(u64, f64, String)> {
    dom.split("<circle")
        .skip(1)
        .filter(|tag| attr(tag, "class") == Some("point"))
        .map(|tag| {
            (
                attr(tag, "data-height").unwrap().parse().unwrap(),
                attr(tag, "data-score").unwrap().parse().unwrap(),
                attr(tag, "data-job").unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn a_job_has_its_best_score_in_the_metrics_and_its_own_series_on_the_dashboard() {
    let python = prometheus_python();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    let d = dir_arg(&dir);
    let mut node = start(&dir, &["--mine", "--api", "127.0.0.1:0"]);
    let addr = api_addr(&node);
    // Rewards are spendable once 10 blocks deep.
    wait_until(LIMIT, "the node mines 15 blocks", &[&node], || {
        height(addr) >= 15
    });
    let csv = tmp.path().join("diabetes-200.csv");
    let text = std::fs::read_to_string("data/diabetes.csv").unwrap();
    let rows: Vec<&str> = text.lines().take(201).collect();
    std::fs::write(&csv, rows.join("\n") + "\n").unwrap();
    let out = run(&[
        "job",
        "submit",
        "--data-dir",
        &d,
        "--dataset",
        &dir_arg(&csv),
        "--target",
        "progression",
        "--head",
        "linear",
        "--max-blocks",
        "3",
        "--patience",
        "3",
        "--bounty",
        "1",
    ]);
    assert!(out.ok(), "job submit: {}", out.stderr);
    let id = out.stdout.lines().next().unwrap().trim().to_string();
    // The job is 404 until a block includes its transaction.
    wait_until(LIMIT, "the job ends", &[&node], || {
        let (status, _, job) = request(addr, "GET", &format!("/jobs/{id}"));
        status == 200 && job["state"] == "ended"
    });
    // The chart shows the last 300 blocks: stop mining, so the job's stay in it.
    stop(&mut node);
    let mut node = start(&dir, &["--api", "127.0.0.1:0"]);
    let addr = api_addr(&node);
    let job = get(addr, &format!("/jobs/{id}"));
    let tip = height(addr);
    let ended = job["ended_height"].as_u64().unwrap();
    assert!(
        tip < ended + 297,
        "the job ended at {ended}, the tip is {tip}"
    );

    let m = scrape(addr, &python);
    assert_eq!(
        m.labelled("pouwd_best_score", &[("job", &id)]),
        job["best_score"].as_f64().unwrap()
    );
    let genesis = m.labelled("pouwd_best_score", &[("job", "genesis")]);
    assert!(genesis > 0.0 && genesis <= 1.0, "{genesis}");

    let dom = dump_dom(&format!("http://{addr}/"), 5000);
    let points = chart_points(&dom);
    let of_job: Vec<_> = points.iter().filter(|p| p.2 == id).collect();
    assert_eq!(of_job.len(), 3, "the job's 3 blocks: {points:?}");
    let best = of_job.iter().map(|p| p.1).fold(0.0, f64::max);
    assert_eq!(best, job["best_score"].as_f64().unwrap());
    assert!(
        points.iter().any(|p| p.2 == "0".repeat(64)),
        "the genesis task's series: {points:?}"
    );
    assert!(dom.contains("diabetes-200.csv"), "the legend names the job");
    stop(&mut node);
}
