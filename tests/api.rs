//! The local JSON API of `pouwd start --api`, through real node processes
//! and a plain HTTP/1.1 client written here, independent of the node's own.

use crate::support::node::{dir_arg, run, Node};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

const STARTUP: Duration = Duration::from_secs(60);
const STOP: Duration = Duration::from_secs(30);

/// One request over a fresh connection: the status code, the headers and
/// the JSON body.
pub(crate) fn request(addr: SocketAddr, method: &str, path: &str) -> (u16, String, Value) {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let text = String::from_utf8(response).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("end of headers");
    let status = head[9..12].parse().unwrap();
    let body = serde_json::from_str(body).unwrap_or_else(|e| panic!("{path}: {e}: {body:?}"));
    (status, head.to_ascii_lowercase(), body)
}

/// `GET path`, which must answer 200.
pub(crate) fn get(addr: SocketAddr, path: &str) -> Value {
    let (status, head, body) = request(addr, "GET", path);
    assert_eq!(status, 200, "GET {path}: {body}");
    assert!(head.contains("content-type: application/json"), "{head}");
    body
}

/// `GET path`, which must fail with `status` and a JSON `error` message.
fn get_error(addr: SocketAddr, path: &str, status: u16) -> String {
    let (found, _, body) = request(addr, "GET", path);
    assert_eq!(found, status, "GET {path}: {body}");
    body["error"]
        .as_str()
        .expect("an error message")
        .to_string()
}

/// Where a node's API listens, from its `api: listening on ADDR` line.
pub(crate) fn api_addr(node: &Node) -> SocketAddr {
    let line = node.wait_for(STARTUP, |l| l.starts_with("api: listening on "));
    line["api: listening on ".len()..].parse().unwrap()
}

pub(crate) fn mine_regtest(dir: &Path, height: u64) {
    let out = run(&[
        "start",
        "--data-dir",
        &dir_arg(dir),
        "--chain",
        "regtest",
        "--mine",
        "--stop-at-height",
        &height.to_string(),
    ]);
    assert!(out.ok(), "start failed: {}", out.stderr);
}

fn status_json(dir: &Path) -> (Value, String) {
    let out = run(&["status", "--data-dir", &dir_arg(dir), "--json"]);
    assert!(out.ok(), "status failed: {}", out.stderr);
    (serde_json::from_str(&out.stdout).unwrap(), out.stderr)
}

pub(crate) fn stop(mut node: Node, signal: &str) {
    node.signal(signal);
    assert_eq!(node.wait(STOP), Some(0), "stderr: {}", node.stderr());
    assert!(
        node.lines().iter().any(|l| l.starts_with("node stopped")),
        "{:?}",
        node.lines()
    );
}

#[test]
fn the_api_shows_what_the_commands_show() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    mine_regtest(&dir, 4);
    let d = dir_arg(&dir);
    let node = Node::start(&["--data-dir", &d, "--api", "127.0.0.1:0"]);
    let addr = api_addr(&node);

    let status = get(addr, "/status");
    assert_eq!(status["network"], "regtest");
    assert_eq!(status["height"], 4);
    assert_eq!(status["balance"], 4 * 5_000_000_000u64);
    assert_eq!(status["peers"], 0);
    assert_eq!(status["sync"]["state"], "idle");
    assert_eq!(status["running"], true);
    assert_eq!(status["pid"], node.pid());
    assert_eq!(status["api"], addr.to_string());
    let tip = status["tip"].as_str().unwrap().to_string();

    assert_eq!(get(addr, "/peers"), serde_json::json!([]));

    let block = get(addr, "/blocks/2");
    assert_eq!(block["height"], 2);
    assert_eq!(block["best_chain"], true);
    let hash = block["hash"].as_str().unwrap().to_string();
    assert_eq!(get(addr, &format!("/blocks/{hash}")), block);
    assert_eq!(get(addr, "/blocks/4")["hash"], tip);
    assert_eq!(get(addr, "/blocks/0")["genesis"], true);

    let error = get_error(addr, "/blocks/99", 404);
    assert!(error.contains("no block at height 99"), "{error}");
    let error = get_error(addr, &format!("/blocks/{}", "00".repeat(32)), 404);
    assert!(error.contains("no block"), "{error}");
    let error = get_error(addr, "/blocks/tip", 400);
    assert!(
        error.contains("neither a height nor a block hash"),
        "{error}"
    );
    get_error(addr, &format!("/blocks/{}", "zz".repeat(32)), 400);
    get_error(addr, "/blocks/-1", 400);

    let model = get(addr, "/model");
    assert_eq!(model["format"], "pouwd-linear-model/1");
    assert_eq!(model["block"], tip);
    let history = model["score_history"].as_array().unwrap();
    let heights: Vec<u64> = history
        .iter()
        .map(|h| h["height"].as_u64().unwrap())
        .collect();
    assert_eq!(heights, [0, 1, 2, 3, 4], "oldest first, back to genesis");
    assert_eq!(history[2]["hash"], hash.as_str());
    assert_eq!(history[4]["score_ppm"], model["score_ppm"]);
    let last_two = get(addr, "/model?limit=2");
    assert_eq!(last_two["score_history"], serde_json::json!(history[3..]));
    assert_eq!(
        get(addr, "/model?limit=0")["score_history"],
        serde_json::json!([])
    );
    get_error(addr, "/model?limit=10001", 400);
    get_error(addr, "/model?limit=many", 400);

    let error = get_error(addr, "/nope", 404);
    assert!(error.contains("/status"), "names the endpoints: {error}");
    get_error(addr, "/status/", 404);
    for method in ["POST", "PUT", "DELETE"] {
        let (code, head, body) = request(addr, method, "/status");
        assert_eq!(code, 405, "{method}: {body}");
        assert!(head.contains("allow: get"), "{head}");
        assert!(body["error"].as_str().unwrap().contains("read-only"));
    }

    // `pouwd status` on the running node asks the API.
    let (live, stderr) = status_json(&dir);
    assert_eq!(live["source"], "api", "{live} {stderr}");
    assert_eq!(live["peers"], 0);
    assert_eq!(live["sync"]["state"], "idle");
    assert_eq!(live["pid"], node.pid());
    assert_eq!(live["tip"], tip);
    let text = run(&["status", "--data-dir", &d]);
    assert!(
        text.stdout.contains("live status from its API"),
        "{}",
        text.stdout
    );

    stop(node, "TERM");

    // The same JSON as the commands that read the store.
    let inspect = run(&["inspect", "--data-dir", &d, "2", "--json"]);
    assert!(inspect.ok(), "{}", inspect.stderr);
    assert_eq!(
        serde_json::from_str::<Value>(&inspect.stdout).unwrap(),
        block
    );
    let export = run(&["export-model", "--data-dir", &d, "--out", "-"]);
    assert!(export.ok(), "{}", export.stderr);
    let mut exported: Value = serde_json::from_str(&export.stdout).unwrap();
    exported["score_history"] = model["score_history"].clone();
    assert_eq!(exported, model);

    // A stopped node's status comes from the store, and names no API.
    let (stopped, _) = status_json(&dir);
    assert_eq!(stopped["running"], false);
    assert_eq!(stopped["source"], "store");
    let file: Value =
        serde_json::from_slice(&std::fs::read(dir.join("status.json")).unwrap()).unwrap();
    assert!(file.get("api").is_none(), "{file}");
}

#[test]
fn a_mining_node_serves_its_chain_and_status_falls_back_when_the_api_is_silent() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    let d = dir_arg(&dir);
    let node = Node::start(&[
        "--data-dir",
        &d,
        "--chain",
        "regtest",
        "--mine",
        "--api",
        "127.0.0.1:0",
    ]);
    let addr = api_addr(&node);
    node.wait_for(STARTUP, |l| {
        crate::support::node::parse_mined(l).is_some_and(|m| m.height >= 3)
    });
    let mined = node.mined();
    let third = mined.iter().find(|m| m.height == 3).unwrap();
    assert!(get(addr, "/status")["height"].as_u64().unwrap() >= 3);
    let block = get(addr, &format!("/blocks/{}", third.hash));
    assert_eq!(block["height"], 3);
    let file: Value =
        serde_json::from_slice(&std::fs::read(dir.join("status.json")).unwrap()).unwrap();
    assert_eq!(file["api"], addr.to_string());

    // A stopped process keeps its store locked and its socket open but
    // answers nothing: status says so and shows the status file.
    node.signal("STOP");
    let started = Instant::now();
    let (fallback, stderr) = status_json(&dir);
    node.signal("CONT");
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(fallback["source"], "status_file", "{fallback}");
    assert_eq!(fallback["running"], true);
    assert!(stderr.contains("did not answer"), "{stderr}");

    stop(node, "INT");
}

#[test]
fn api_addresses_are_checked_before_the_node_starts() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    let d = dir_arg(&dir);
    let start = |extra: &[&str]| {
        let mut args = vec!["start", "--data-dir", &d, "--chain", "regtest"];
        args.extend(extra);
        run(&args)
    };
    // Bad values exit 2, as clap's own refusals do.
    let out = start(&["--api", "0.0.0.0:0"]);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(
        out.stderr.contains("no authentication") && out.stderr.contains("--api-public"),
        "{}",
        out.stderr
    );
    let out = start(&["--api", "somewhere"]);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("expected a port"), "{}", out.stderr);
    let out = start(&["--api-public"]);
    assert_eq!(
        out.code,
        Some(2),
        "--api-public needs --api: {}",
        out.stderr
    );
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = start(&["--api", &port]);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(
        out.stderr.contains("cannot serve the API"),
        "{}",
        out.stderr
    );
    assert!(!dir.exists(), "nothing created when the API cannot start");
}

#[test]
fn peers_show_both_ends_of_a_connection() {
    let tmp = tempfile::tempdir().unwrap();
    let (d1, d2) = (tmp.path().join("n1"), tmp.path().join("n2"));
    let (d1, d2) = (dir_arg(&d1), dir_arg(&d2));
    let common = ["--chain", "regtest", "--api", "127.0.0.1:0"];
    let mut args = vec!["--data-dir", &d1, "--listen", "127.0.0.1:0", "--mine"];
    args.extend(common);
    let n1 = Node::start(&args);
    let listening = n1.wait_for(STARTUP, |l| l.starts_with("p2p: listening on "));
    let mut words = listening["p2p: listening on ".len()..].split(" as ");
    let (listen, n1_id) = (words.next().unwrap(), words.next().unwrap().to_string());
    let api1 = api_addr(&n1);
    let mut args = vec!["--data-dir", &d2, "--peer", listen];
    args.extend(common);
    let n2 = Node::start(&args);
    let api2 = api_addr(&n2);

    let started = Instant::now();
    let (outbound, inbound) = loop {
        let (p2, p1) = (get(api2, "/peers"), get(api1, "/peers"));
        if p2.as_array().unwrap().len() == 1 && p1.as_array().unwrap().len() == 1 {
            break (p2[0].clone(), p1[0].clone());
        }
        assert!(
            started.elapsed() < STARTUP,
            "no connection: {p2} {p1}; n2: {:?}",
            n2.lines()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(outbound["id"], n1_id);
    assert_eq!(outbound["direction"], "outbound");
    assert_eq!(outbound["address"], listen);
    assert_eq!(outbound["banned"], false);
    assert!(outbound["best_height"].is_u64());
    assert!(outbound["bytes_in"].as_u64().unwrap() > 0);
    assert!(outbound["bytes_out"].as_u64().unwrap() > 0);
    assert_eq!(inbound["direction"], "inbound");
    assert_eq!(inbound["banned"], false);
    let status = get(api2, "/status");
    assert_eq!(status["peers"], 1);
    let sync = status["sync"]["state"].as_str().unwrap();
    assert!(sync == "idle" || sync == "syncing", "{sync}");

    stop(n2, "TERM");
    stop(n1, "TERM");
}
