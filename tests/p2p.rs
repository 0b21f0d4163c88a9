//! The peer network end to end: several real `pouwd` processes talking
//! QUIC on 127.0.0.1, and an in-process adversary (support/net.rs) that
//! breaks the protocol on purpose while honest nodes keep going. Every
//! process a test starts is stopped (or killed on drop) before it ends.

use crate::support::chain::{resign, TestChain};
use crate::support::net::{
    free_port, hello, local, running_status, running_tip, wait_until, Adversary, Conn,
};
use crate::support::node::{dir_arg, run, Node};
use pouwd::chain::Hash32;
use pouwd::p2p::wire::{Request, Response};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Bound on every wait; a loaded 2-core machine needs the slack.
pub(crate) const LIMIT: Duration = Duration::from_secs(40);

/// `pouwd start --data-dir DIR --chain regtest ARGS…`, once it is up.
pub(crate) fn start(dir: &Path, args: &[&str]) -> Node {
    let d = dir_arg(dir);
    let mut all = vec!["--data-dir", &d, "--chain", "regtest"];
    all.extend_from_slice(args);
    let node = Node::start(&all);
    node.wait_for(LIMIT, |l| l.starts_with("node started"));
    node
}

/// SIGTERM, a clean exit, and the height and tip it stopped on.
pub(crate) fn stop(node: &mut Node) -> (u64, String) {
    node.signal("TERM");
    assert_eq!(node.wait(LIMIT), Some(0), "stderr: {}", node.stderr());
    let lines = node.lines();
    let line = lines
        .iter()
        .find(|l| l.starts_with("node stopped"))
        .expect("a 'node stopped' line");
    parse_stopped(line)
}

/// `node stopped: height=H tip=T`
fn parse_stopped(line: &str) -> (u64, String) {
    let field = |name: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(name))
            .unwrap_or_else(|| panic!("{line:?} lacks {name}"))
            .to_string()
    };
    (field("height=").parse().unwrap(), field("tip="))
}

/// `pouwd status --json` of a stopped node.
fn status(dir: &Path) -> Value {
    let out = run(&["status", "--data-dir", &dir_arg(dir), "--json"]);
    assert!(out.ok(), "status failed: {}", out.stderr);
    serde_json::from_str(&out.stdout).unwrap()
}

/// `pouwd id`: the node's id, as peers pin it.
fn node_id(dir: &Path) -> String {
    let out = run(&["id", "--data-dir", &dir_arg(dir)]);
    assert!(out.ok(), "id failed: {}", out.stderr);
    out.stdout.trim().to_string()
}

/// The model as `export-model` writes it.
fn model(dir: &Path) -> String {
    let file = dir.with_extension("model.json");
    let out = run(&[
        "export-model",
        "--data-dir",
        &dir_arg(dir),
        "--out",
        &dir_arg(&file),
    ]);
    assert!(out.ok(), "export-model failed: {}", out.stderr);
    std::fs::read_to_string(file).unwrap()
}

/// Create a data dir (and its key) and mine it to `height` without a network.
pub(crate) fn mine_to(dir: &Path, height: u64) {
    let h = height.to_string();
    let out = run(&[
        "start",
        "--data-dir",
        &dir_arg(dir),
        "--chain",
        "regtest",
        "--mine",
        "--stop-at-height",
        &h,
    ]);
    assert!(out.ok(), "mining to {height} failed: {}", out.stderr);
}

/// The first 12 hex digits, as log lines name peers.
fn short(id: &str) -> &str {
    &id[..12]
}

pub(crate) fn dirs<const N: usize>(root: &Path, names: [&str; N]) -> [PathBuf; N] {
    names.map(|n| root.join(n))
}

/// No honest node banned anyone.
pub(crate) fn assert_no_bans(nodes: &[&Node]) {
    for node in nodes {
        let bans: Vec<String> = node
            .lines()
            .into_iter()
            .filter(|l| l.starts_with("p2p: banning peer"))
            .collect();
        assert!(bans.is_empty(), "an honest peer was banned: {bans:?}");
    }
}

#[test]
fn peers_join_by_the_original_file_pinned_ids_and_repeated_flags() {
    let tmp = tempfile::tempdir().unwrap();
    let [a, b, c, d] = dirs(tmp.path(), ["a", "b", "c", "d"]);
    mine_to(&a, 40);
    for dir in [&b, &c, &d] {
        mine_to(dir, 0);
    }
    let no_key = run(&["id", "--data-dir", &dir_arg(&tmp.path().join("none"))]);
    assert!(
        !no_key.ok() && no_key.stderr.contains("no node key"),
        "{}",
        no_key.stderr
    );
    let (id_a, id_b) = (node_id(&a), node_id(&b));
    assert_eq!(id_a.len(), 64);
    assert!(id_a.bytes().all(|c| c.is_ascii_hexdigit()), "{id_a}");
    assert_eq!(
        status(&a)["miner"],
        id_a.as_str(),
        "the id is the miner key"
    );
    assert_ne!(id_a, id_b);
    let tip_a = (40, status(&a)["tip"].as_str().unwrap().to_string());
    let (pa, pb) = (free_port(), free_port());

    let mut node_a = start(&a, &["--listen", &local(pa)]);
    node_a.wait_for(LIMIT, |l| {
        l == format!("p2p: listening on {} as {id_a}", local(pa))
    });

    // B: the original design's p2p_network.json, with A's id pinned; with
    // no --listen, its "port" is where B listens.
    let peers_file = tmp.path().join("p2p_network.json");
    let json = serde_json::json!({ "peers": [format!("{id_a}@{}", local(pa))], "port": pb });
    std::fs::write(&peers_file, json.to_string()).unwrap();
    let mut node_b = start(&b, &["--peers", &dir_arg(&peers_file)]);
    node_b.wait_for(LIMIT, |l| {
        l == format!("p2p: listening on 0.0.0.0:{pb} as {id_b}")
    });
    node_b.wait_for(LIMIT, |l| {
        l.starts_with(&format!(
            "p2p: peer {} connected at {}",
            short(&id_a),
            local(pa)
        ))
    });

    // C: --peer twice, the second pinned to B's id at the file's port.
    let pinned_b = format!("{id_b}@{}", local(pb));
    let mut node_c = start(&c, &["--peer", &local(pa), "--peer", &pinned_b]);
    for (id, port) in [(&id_a, pa), (&id_b, pb)] {
        node_c.wait_for(LIMIT, |l| {
            l.starts_with(&format!(
                "p2p: peer {} connected at {}",
                short(id),
                local(port)
            ))
        });
    }
    wait_until(
        LIMIT,
        "B and C reach A's tip",
        &[&node_a, &node_b, &node_c],
        || running_tip(&b) == tip_a && running_tip(&c) == tip_a,
    );

    // D pins B's id on A's address: A cannot prove it, so D never connects.
    let wrong = format!("{id_b}@{}", local(pa));
    let mut node_d = start(&d, &["--peer", &wrong]);
    let failure = node_d.wait_for(LIMIT, |l| {
        l.starts_with(&format!("p2p: cannot connect to {}", local(pa)))
    });
    node_a.wait_for(LIMIT, |l| {
        l.starts_with("p2p: inbound connection failed: handshake")
    });
    // A few redials later, still nothing.
    std::thread::sleep(Duration::from_millis(1500));
    let connected: Vec<String> = node_d
        .lines()
        .into_iter()
        .filter(|l| l.contains(" connected "))
        .collect();
    assert!(connected.is_empty(), "{failure}; yet {connected:?}");
    assert_eq!(running_tip(&d).0, 0);

    for node in [&mut node_d, &mut node_c, &mut node_b, &mut node_a] {
        stop(node);
    }
    assert_no_bans(&[&node_a, &node_b, &node_c, &node_d]);
    for dir in [&b, &c] {
        let s = status(dir);
        assert_eq!(s["height"], 40);
        assert_eq!(s["tip"], tip_a.1.as_str());
    }
    assert_eq!(status(&d)["height"], 0);
}

#[test]
fn mining_nodes_agree_on_the_tip_within_seconds_of_the_last_block() {
    let tmp = tempfile::tempdir().unwrap();
    let [m1, m2, r] = dirs(tmp.path(), ["m1", "m2", "r"]);
    let (p1, p2, p3) = (free_port(), free_port(), free_port());
    let (l1, l2, l3) = (local(p1), local(p2), local(p3));
    // The two miners dial each other at once: one connection must survive.
    let mut miner1 = start(&m1, &["--mine", "--listen", &l1, "--peer", &l2]);
    let mut miner2 = start(&m2, &["--mine", "--listen", &l2, "--peer", &l1]);
    let mut relay = start(&r, &["--listen", &l3, "--peer", &l1, "--peer", &l2]);
    wait_until(
        LIMIT,
        "the relay follows two racing miners",
        &[&miner1, &miner2, &relay],
        || running_tip(&r).0 >= 300,
    );
    let mut lags = Vec::new();
    for _ in 0..5 {
        let heights = [&m1, &m2, &r].map(|d| running_tip(d).0);
        lags.push(heights.iter().max().unwrap() - heights.iter().min().unwrap());
        std::thread::sleep(Duration::from_millis(100));
    }
    println!("height spread while two miners race: {lags:?}");

    // Miner 2 stops mining and comes back as a relay; miner 1 goes on alone.
    stop(&mut miner2);
    let mut relay2 = start(&m2, &["--listen", &l2, "--peer", &l1]);
    let ahead = running_tip(&m1).0 + 100;
    wait_until(
        LIMIT,
        "everyone follows the one miner left",
        &[&miner1, &relay2, &relay],
        || [&m2, &r].iter().all(|d| running_tip(d).0 >= ahead),
    );

    // Miner 1 stops too: within seconds every node is on its last block.
    let last = stop(&mut miner1);
    let mut relay1 = start(&m1, &["--listen", &l1, "--peer", &l2, "--peer", &l3]);
    let took = wait_until(
        Duration::from_secs(15),
        "all tips equal",
        &[&relay1, &relay2, &relay],
        || [&m1, &m2, &r].iter().all(|d| running_tip(d) == last),
    );
    println!("all three on height {} within {took:?}", last.0);

    for node in [&mut relay, &mut relay2, &mut relay1] {
        assert_eq!(stop(node), last);
    }
    assert!(!miner1.mined().is_empty() && !miner2.mined().is_empty());
    let first = status(&m1);
    for dir in [&m2, &r] {
        let s = status(dir);
        for field in ["height", "tip", "cumulative_work"] {
            assert_eq!(s[field], first[field], "{field} of {}", dir.display());
        }
    }
    assert!(relay.lines().iter().any(|l| l.starts_with("p2p: sync: ")));
    assert_no_bans(&[&miner1, &miner2, &relay, &relay1, &relay2]);
}

#[test]
fn late_nodes_sync_from_several_peers_even_when_killed_midway() {
    let tmp = tempfile::tempdir().unwrap();
    let [s1, s2, k, l] = dirs(tmp.path(), ["s1", "s2", "k", "l"]);
    // More than one locator answer's worth of blocks (2000), so the sync
    // takes several rounds.
    mine_to(&s1, 2100);
    let tip = (2100, status(&s1)["tip"].as_str().unwrap().to_string());
    let (p1, p2) = (free_port(), free_port());
    let (l1, l2) = (local(p1), local(p2));
    let mut source1 = start(&s1, &["--listen", &l1]);
    let mut source2 = start(&s2, &["--listen", &l2, "--peer", &l1]);
    wait_until(
        LIMIT,
        "the second source syncs",
        &[&source1, &source2],
        || running_tip(&s2) == tip,
    );

    // K is SIGKILLed in the middle of its sync, then restarted.
    let mut killed = start(&k, &["--peer", &l1, "--peer", &l2]);
    wait_until(LIMIT, "K starts syncing", &[&killed], || {
        running_tip(&k).0 >= 300
    });
    killed.kill();
    let at_kill = running_tip(&k).0;
    assert!(at_kill < tip.0, "the sync finished before the kill");
    let mut restarted = start(&k, &["--peer", &l1, "--peer", &l2]);
    let resumed = restarted.wait_for(LIMIT, |l| l.starts_with("node started"));
    let resumed_at: u64 = resumed
        .split_whitespace()
        .find_map(|w| w.strip_prefix("height="))
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        resumed_at >= at_kill,
        "blocks reported stored before the kill are gone: {resumed}"
    );
    // Well within the 30 s its peers would take to drop its old connections.
    wait_until(
        Duration::from_secs(15),
        "K finishes after its restart",
        &[&restarted, &source1, &source2],
        || running_tip(&k) == tip,
    );

    // L starts late and fetches from both sources at once.
    let mut late = start(&l, &["--peer", &l1, "--peer", &l2]);
    wait_until(LIMIT, "L syncs the whole chain", &[&late], || {
        running_tip(&l) == tip
    });
    // The status file moves before the sync logs the batch that moved it.
    late.wait_for(LIMIT, |x| {
        x.starts_with("p2p: sync: ") && x.contains(&format!("tip height {} ", tip.0))
    });
    let lines = late.lines();
    for port in [p1, p2] {
        assert!(
            lines.iter().any(|x| x.starts_with("p2p: peer ")
                && x.contains(&format!(" connected at {}", local(port)))),
            "L did not connect to {port}: {lines:?}"
        );
    }
    let syncs: Vec<&String> = lines
        .iter()
        .filter(|x| x.starts_with("p2p: sync: "))
        .collect();
    assert!(syncs.len() >= 2, "{syncs:?}");
    // The progress counts from the start of the whole sync, across its
    // rounds of 2000 blocks: it never goes back, and it ends at the target.
    let counts: Vec<(u64, u64)> = syncs
        .iter()
        .map(|x| {
            let count = x["p2p: sync: ".len()..].split(' ').next().unwrap();
            let (done, wanted) = count.split_once('/').unwrap();
            (done.parse().unwrap(), wanted.parse().unwrap())
        })
        .collect();
    assert!(
        counts.windows(2).all(|w| w[0].0 <= w[1].0),
        "the sync's count went back: {syncs:?}"
    );
    assert_eq!(counts.last(), Some(&(tip.0, tip.0)), "{syncs:?}");
    // The last line was said in a later round than the first.
    let round_size = |x: &str| -> u64 {
        let (before, _) = x.split_once(" of this round").unwrap();
        let fetched = before.rsplit(' ').next().unwrap();
        fetched.split_once('/').unwrap().1.parse().unwrap()
    };
    assert!(
        round_size(syncs.last().unwrap()) < tip.0,
        "the last line is not from a later round: {syncs:?}"
    );
    assert!(
        syncs.iter().any(|x| x.ends_with(", 2 peers)")),
        "no round fetched from both sources: {syncs:?}"
    );
    // The hashes after the first round's 2000 blocks were asked for, and
    // the last 100 blocks fetched, while the first round was stored.
    assert!(
        lines
            .iter()
            .any(|x| x.starts_with("p2p: sync round: the next 100 blocks, named by peer ")),
        "the second round waited for the first: {lines:?}"
    );
    // Those hashes were asked ahead, with the first round's blocks: they
    // were named before the first round's last block was stored.
    let named = lines
        .iter()
        .position(|x| x.starts_with("p2p: sync hashes: peer ") && x.contains(" named the 100 "))
        .unwrap_or_else(|| panic!("the second round's hashes were not asked ahead: {lines:?}"));
    let first_round_stored = lines
        .iter()
        .position(|x| {
            x.starts_with("p2p: sync: ")
                && x.split_once(" tip height ")
                    .and_then(|(_, h)| h.split(' ').next()?.parse::<u64>().ok())
                    .is_some_and(|h| h >= 2000)
        })
        .unwrap();
    assert!(
        named < first_round_stored,
        "the second round's hashes came after the first round was stored: {lines:?}"
    );

    for node in [&mut late, &mut restarted, &mut source2, &mut source1] {
        assert_eq!(stop(node), tip);
    }
    assert_no_bans(&[&source1, &source2, &restarted, &late]);
}

#[test]
fn a_healed_partition_ends_on_the_heavier_branch_with_its_balances_and_model() {
    let tmp = tempfile::tempdir().unwrap();
    let [a, a2, b, b2] = dirs(tmp.path(), ["a", "a2", "b", "b2"]);
    let [pa, pa2, pb, pb2] = [(); 4].map(|_| free_port());
    let [la, la2, lb, lb2] = [pa, pa2, pb, pb2].map(local);
    // Two groups that do not know each other mine apart: A's is heavier.
    let mut miner_a = start(&a, &["--mine", "--stop-at-height", "300", "--listen", &la]);
    let mut relay_a = start(&a2, &["--listen", &la2, "--peer", &la]);
    let mut miner_b = start(&b, &["--mine", "--stop-at-height", "150", "--listen", &lb]);
    let mut relay_b = start(&b2, &["--listen", &lb2, "--peer", &lb]);
    assert_eq!(miner_a.wait(LIMIT), Some(0), "{}", miner_a.stderr());
    assert_eq!(miner_b.wait(LIMIT), Some(0), "{}", miner_b.stderr());
    let (before_a, before_b) = (status(&a), status(&b));
    assert_eq!(before_a["height"], 300);
    assert_eq!(before_a["balance"], 300 * 5_000_000_000u64);
    assert_eq!(before_b["height"], 150);
    assert_eq!(before_b["balance"], 150 * 5_000_000_000u64);
    let (model_a, model_b) = (model(&a), model(&b));
    assert_ne!(model_a, model_b);
    assert!(running_tip(&b2).0 > 0, "B's relay followed B");
    let heavy = (300, before_a["tip"].as_str().unwrap().to_string());

    // Heal: A comes back, and B comes back dialing A.
    let mut miner_a = start(&a, &["--listen", &la]);
    let mut miner_b = start(&b, &["--listen", &lb, "--peer", &la]);
    let took = wait_until(
        LIMIT,
        "all four on A's branch",
        &[&miner_a, &relay_a, &miner_b, &relay_b],
        || [&a, &a2, &b, &b2].iter().all(|d| running_tip(d) == heavy),
    );
    println!("partition healed in {took:?}");

    for node in [&mut relay_b, &mut miner_b, &mut relay_a, &mut miner_a] {
        assert_eq!(stop(node), heavy);
    }
    assert_no_bans(&[&miner_a, &relay_a, &miner_b, &relay_b]);
    for dir in [&a2, &b, &b2] {
        let s = status(dir);
        for field in ["height", "tip", "cumulative_work"] {
            assert_eq!(s[field], before_a[field], "{field} of {}", dir.display());
        }
        assert_eq!(model(dir), model_a, "model of {}", dir.display());
    }
    assert_eq!(status(&a)["balance"], 300 * 5_000_000_000u64);
    assert_eq!(
        status(&b)["balance"],
        0,
        "B's rewards were all on the lighter branch"
    );
}

/// Connect, say hello on `genesis` claiming `work`, and answer the node politely.
pub(crate) fn greet(target: SocketAddr, genesis: Hash32, work: [u8; 32]) -> (Adversary, Conn) {
    let adversary = Adversary::new();
    let conn = adversary.connect(target).expect("TLS handshake");
    conn.serve_politely();
    match conn.request(&Request::Hello(hello(genesis, 0, work))) {
        Ok(Response::Hello(theirs)) => assert_eq!(theirs.genesis, genesis),
        other => panic!("hello answered with {other:?}"),
    }
    (adversary, conn)
}

/// The node closed the connection as a ban (code 2) and logged why.
pub(crate) fn assert_banned(node: &Node, adversary: &Adversary, conn: &Conn, reason: &str) {
    let closed = conn
        .closed_within(LIMIT)
        .expect("the node closed the connection");
    let prefix = format!("p2p: banning peer {}", adversary.short_id());
    let line = node.wait_for(LIMIT, |l| l.starts_with(&prefix));
    assert!(line.contains(reason), "{line:?} lacks {reason:?}");
    assert_eq!(Conn::close_code(&closed), Some(2), "{closed}");
}

#[test]
fn bad_peers_are_cut_off_while_honest_ones_keep_syncing() {
    let tmp = tempfile::tempdir().unwrap();
    let [m, t, h] = dirs(tmp.path(), ["m", "t", "h"]);
    let (pm, pt) = (free_port(), free_port());
    // M mines; T, the target of every attack, syncs from M; H syncs from T.
    let mut miner = start(&m, &["--mine", "--listen", &local(pm)]);
    let mut target_node = start(
        &t,
        &[
            "--listen",
            &local(pt),
            "--peer",
            &local(pm),
            "--max-inbound-per-ip",
            "3",
        ],
    );
    let mut honest = start(&h, &["--peer", &local(pt)]);
    wait_until(
        LIMIT,
        "H follows M through T",
        &[&miner, &target_node, &honest],
        || running_tip(&h).0 >= 50,
    );
    let genesis =
        Hash32::from_hex(running_status(&t).unwrap()["genesis"].as_str().unwrap()).unwrap();
    let target: SocketAddr = local(pt).parse().unwrap();
    let keeps_up = |after: &str| {
        let from = running_tip(&h).0;
        wait_until(
            LIMIT,
            &format!("H keeps syncing after {after}"),
            &[&miner, &target_node, &honest],
            || running_tip(&h).0 >= from + 20,
        );
    };

    // Mutual TLS: no client certificate, no connection.
    let stranger = Adversary::new();
    if let Ok(conn) = stranger.connect_without_certificate(target) {
        let answer = conn.request(&Request::Hello(hello(genesis, 0, [0; 32])));
        assert!(answer.is_err(), "served without a certificate: {answer:?}");
    }
    target_node.wait_for(LIMIT, |l| {
        l.starts_with("p2p: inbound connection failed: handshake")
    });

    // Garbage, and a length prefix of 4 GiB, before and after the hello.
    let mut garbage = vec![16, 0, 0, 0];
    garbage.extend([0xff; 16]);
    let mut oversized = vec![0xff; 4];
    oversized.extend([0; 64]);
    for (bytes, before, after) in [
        (&garbage, "malformed hello", "malformed request"),
        (&oversized, "over the limit", "over the limit"),
    ] {
        let adversary = Adversary::new();
        let conn = adversary.connect(target).expect("TLS handshake");
        let answer = conn.send_raw(bytes, 1024);
        assert!(answer.is_err(), "{answer:?}");
        assert_banned(&target_node, &adversary, &conn, before);

        let (adversary, conn) = greet(target, genesis, [0; 32]);
        let answer = conn.send_raw(bytes, 1024);
        assert!(answer.is_err(), "{answer:?}");
        assert_banned(&target_node, &adversary, &conn, after);
    }
    // The request bound of schema/p2p.md, 8 KiB: a frame of exactly that
    // many bytes is read (and, being garbage, refused as malformed); one
    // byte more is refused from its length alone.
    for (len, reason) in [
        (8192usize, "malformed request".to_string()),
        (
            8193,
            "message of 8193 bytes, over the limit of 8192".to_string(),
        ),
    ] {
        let mut frame = (len as u32).to_le_bytes().to_vec();
        frame.extend(std::iter::repeat_n(0xff, len));
        let (adversary, conn) = greet(target, genesis, [0; 32]);
        let answer = conn.send_raw(&frame, 1024);
        assert!(answer.is_err(), "{answer:?}");
        assert_banned(&target_node, &adversary, &conn, &reason);
    }
    keeps_up("garbage");

    // Announce more work than anyone, then serve a tampered block when asked.
    let chain = TestChain::regtest();
    assert_eq!(chain.genesis, genesis);
    let key = ed25519_dalek::SigningKey::generate(&mut rand_core::OsRng);
    let mut block = chain
        .mine_child(&chain.genesis, &key, pouwd::node::now_ms())
        .block;
    block.header.fields.score_ppm ^= 1;
    resign(&mut block, &key);
    let (id, bytes) = (block.id(), block.to_bytes());
    let liar = Adversary::new();
    let conn = liar.connect(target).expect("TLS handshake");
    conn.serve(Arc::new(move |request: &Request| {
        Some(match request {
            Request::GetHashes { .. } => Response::Hashes(vec![id]),
            Request::GetBlocks(_) => Response::Blocks(vec![bytes.clone()]),
            Request::GetAddrs => Response::Addrs(Vec::new()),
            _ => Response::Ok,
        })
    }));
    let claim = hello(genesis, 1_000_000, [0xff; 32]);
    assert!(matches!(
        conn.request(&Request::Hello(claim)),
        Ok(Response::Hello(_))
    ));
    // Named by its hash and height, not by a position as in an import file.
    assert_banned(
        &target_node,
        &liar,
        &conn,
        &format!("sent an invalid block {id} at height 1: "),
    );
    let asked = conn.requests.lock().unwrap().clone();
    assert!(
        asked.contains(&Request::GetBlocks(vec![id])),
        "T never fetched the block: {asked:?}"
    );
    keeps_up("an invalid block");

    // Another chain's genesis: refused with the reason, on both sides.
    let foreigner = Adversary::new();
    let conn = foreigner.connect(target).expect("TLS handshake");
    let other = Hash32([7; 32]);
    match conn.request(&Request::Hello(hello(other, 0, [0; 32]))) {
        Ok(Response::Refused(reason)) => {
            assert!(reason.contains("another network"), "{reason}")
        }
        answer => panic!("a foreign hello was answered with {answer:?}"),
    }
    let line = target_node.wait_for(LIMIT, |l| {
        l.starts_with(&format!("p2p: refusing peer {}", foreigner.short_id()))
    });
    assert!(line.contains(&other.to_hex()), "{line}");
    let closed = conn.closed_within(LIMIT).expect("closed after refusing");
    assert_eq!(Conn::close_code(&closed), Some(1), "{closed}");

    // Hundreds of streams, thousands of requests.
    let (flooder, conn) = greet(target, genesis, [0; 32]);
    let flood = conn.flood(64, 20_000, &Request::GetAddrs);
    assert_banned(&target_node, &flooder, &conn, "request flood");
    println!("the flood: {flood:?}");
    // schema/p2p.md: 500 requests a second are served, the next 500 are
    // refused, and the 1001st bans. The flood may straddle a few of the
    // node's one-second windows, never more than it lasted plus two.
    let windows = flood.elapsed.as_secs() as usize + 2;
    assert!(
        flood.served >= 500 && flood.served <= 500 * windows,
        "{flood:?}: served beyond 500 a second"
    );
    assert!(
        flood.refused >= 1 && flood.served + flood.refused <= 1000 * windows,
        "{flood:?}: answered beyond 1000 a second before the ban"
    );
    assert!(flood.sent < 20_000, "{flood:?}: never cut off");
    keeps_up("a flood");

    // Inbound connections per address are bounded: H and two more fill
    // T's three, so a third stranger is turned away.
    let localhost = std::net::Ipv4Addr::LOCALHOST;
    let polite = [(); 2].map(|_| {
        let adversary = Adversary::at(localhost);
        let conn = adversary.connect(target).expect("TLS handshake");
        conn.serve_politely();
        assert!(matches!(
            conn.request(&Request::Hello(hello(genesis, 0, [0; 32]))),
            Ok(Response::Hello(_))
        ));
        (adversary, conn)
    });
    assert!(Adversary::at(localhost).connect(target).is_err());
    target_node.wait_for(LIMIT, |l| l.starts_with("p2p: refusing a connection from"));
    drop(polite);
    keeps_up("a full house");

    for node in [&mut honest, &mut target_node, &mut miner] {
        stop(node);
    }
    assert_no_bans(&[&miner, &honest]);
    let (id_m, id_h) = (node_id(&m), node_id(&h));
    for line in target_node.lines() {
        assert!(
            !(line.starts_with("p2p: banning peer")
                && (line.contains(short(&id_m)) || line.contains(short(&id_h)))),
            "T banned an honest peer: {line}"
        );
    }
}

/// A peer that claims more work than anyone and then answers nothing
/// cannot hold a sync up: a peer that comes ahead while the node waits on
/// it is asked too, and the blocks come from the peer that answered,
/// well before the silent one's requests time out (10 s).
#[test]
fn a_silent_peer_claiming_the_most_work_does_not_stall_a_sync() {
    let tmp = tempfile::tempdir().unwrap();
    let [m, n] = dirs(tmp.path(), ["m", "n"]);
    mine_to(&m, 30);
    let pn = free_port();
    let node = start(&n, &["--listen", &local(pn)]);
    let genesis =
        Hash32::from_hex(running_status(&n).unwrap()["genesis"].as_str().unwrap()).unwrap();
    let silent = Adversary::new();
    let conn = silent
        .connect(local(pn).parse().unwrap())
        .expect("TLS handshake");
    conn.serve(Arc::new(|_: &Request| None));
    let claim = hello(genesis, 1_000_000, [0xff; 32]);
    assert!(matches!(
        conn.request(&Request::Hello(claim)),
        Ok(Response::Hello(_))
    ));
    let asked_for_hashes = || {
        conn.requests
            .lock()
            .unwrap()
            .iter()
            .any(|r| matches!(r, Request::GetHashes { .. }))
    };
    wait_until(
        LIMIT,
        "N asks the silent peer for hashes",
        &[&node],
        asked_for_hashes,
    );
    let honest = start(&m, &["--peer", &local(pn)]);
    wait_until(
        Duration::from_secs(8),
        "N syncs from M while the silent peer says nothing",
        &[&node, &honest],
        || running_tip(&n).0 >= 30,
    );
    let blocks_asked_of_silent = conn
        .requests
        .lock()
        .unwrap()
        .iter()
        .filter(|r| matches!(r, Request::GetBlocks(_)))
        .count();
    assert_eq!(
        blocks_asked_of_silent, 0,
        "blocks come from the peer that answered"
    );
}

/// A chain file in `root/chain/` (with its dataset): regtest with a fixed
/// target 100 times harder, about 20,000 steps a block, so a miner makes
/// tens of blocks a second rather than hundreds and a follower on a
/// loaded machine keeps up.
fn tens_of_blocks_a_second(root: &Path) -> PathBuf {
    let dir = root.join("chain");
    std::fs::create_dir_all(&dir).unwrap();
    let mut params = crate::support::chain::regtest_params();
    params.network = "regtest-relay".into();
    params.initial_target =
        Hash32::from_hex("000346dc5d63886594af4f0d844d013a92a305532617c1bda5119ce075f6fd21")
            .unwrap();
    std::fs::write(dir.join("chain.json"), params.to_json()).unwrap();
    std::fs::copy("data/diabetes.csv", dir.join("diabetes.csv")).unwrap();
    dir.join("chain.json")
}

/// A peer that finishes its Hello and then answers nothing, and a
/// follower killed with -9, hold up block relay to nobody: each peer's
/// announcements go on their own, so an honest follower keeps within 2 s
/// of every block the miner makes, for longer than the 10 s the miner
/// waits on the silent ones before it drops them.
#[test]
fn a_silent_peer_and_a_killed_follower_do_not_hold_up_block_relay() {
    use crate::api::{api_addr, get};
    let tmp = tempfile::tempdir().unwrap();
    let [m, f, k] = dirs(tmp.path(), ["m", "f", "k"]);
    let chain = dir_arg(&tens_of_blocks_a_second(tmp.path()));
    let pm = free_port();
    let node = |dir: &Path, extra: &[&str]| {
        let d = dir_arg(dir);
        let mut args = vec!["--data-dir", &d, "--chain", &chain];
        args.extend_from_slice(extra);
        let node = Node::start(&args);
        node.wait_for(LIMIT, |l| l.starts_with("node started"));
        node
    };
    let listen = local(pm);
    let mut miner = node(&m, &["--listen", &listen, "--mine", "--api", "127.0.0.1:0"]);
    let api_m = api_addr(&miner);
    let mut follower = node(&f, &["--peer", &listen, "--api", "127.0.0.1:0"]);
    let api_f = api_addr(&follower);
    let mut killed = node(&k, &["--peer", &listen]);
    wait_until(LIMIT, "both followers connect", &[&miner], || {
        get(api_m, "/status")["peers"].as_u64() == Some(2)
    });
    let genesis = Hash32::from_hex(get(api_m, "/status")["genesis"].as_str().unwrap()).unwrap();
    let silent = Adversary::new();
    let conn = silent.connect(pm_addr(pm)).expect("TLS handshake");
    conn.serve(Arc::new(|_: &Request| None));
    assert!(matches!(
        conn.request(&Request::Hello(hello(genesis, 0, [0; 32]))),
        Ok(Response::Hello(_))
    ));
    killed.kill();

    // Every height the miner reached must reach the follower within 2 s.
    let (worst, _) = follows_within_two_seconds(api_m, api_f, Duration::from_secs(14));
    let mined = get(api_m, "/status")["height"].as_u64().unwrap();
    assert!(mined >= 20, "the miner made only {mined} blocks");

    // The miner gave up on both silent peers without a ban.
    for short_id in [silent.short_id(), node_id(&k)[..12].to_string()] {
        let line = miner.wait_for(LIMIT, |l| {
            l.starts_with(&format!("p2p: dropping peer {short_id}"))
        });
        assert!(line.contains("did not answer an announcement"), "{line}");
    }
    eprintln!("worst relay lag {worst:?} over {mined} blocks");
    stop(&mut follower);
    stop(&mut miner);
    assert_no_bans(&[&miner, &follower]);
}

/// `upstream`'s answer to `request`, asked from a thread of its own (the
/// handler runs on the adversary's runtime, which `Conn::request` blocks on).
fn forwarded(upstream: &Arc<Conn>, request: &Request) -> Option<Response> {
    let (upstream, request) = (Arc::clone(upstream), request.clone());
    std::thread::spawn(move || upstream.request(&request).ok())
        .join()
        .ok()
        .flatten()
}

fn pm_addr(port: u16) -> SocketAddr {
    local(port).parse().unwrap()
}

/// Sample the miner's and the follower's heights for `span`; every height
/// the miner reached must reach the follower within 2 s. Returns the
/// worst lag seen and the miner's last height.
fn follows_within_two_seconds(
    api_m: SocketAddr,
    api_f: SocketAddr,
    span: Duration,
) -> (Duration, u64) {
    use crate::api::get;
    use std::collections::VecDeque;
    use std::time::Instant;
    let started = Instant::now();
    let mut waiting: VecDeque<(Instant, u64)> = VecDeque::new();
    let mut worst = Duration::ZERO;
    let mut mined = 0;
    while started.elapsed() < span {
        let now = Instant::now();
        mined = get(api_m, "/status")["height"].as_u64().unwrap();
        waiting.push_back((now, mined));
        let followed = get(api_f, "/status")["height"].as_u64().unwrap();
        while let Some(&(at, height)) = waiting.front() {
            if followed < height {
                break;
            }
            worst = worst.max(now - at);
            waiting.pop_front();
        }
        if let Some(&(at, height)) = waiting.front() {
            assert!(
                now - at <= Duration::from_secs(2),
                "the follower is at {followed}, and the miner was at {height} {:?} ago",
                now - at
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    (worst, mined)
}

/// The attack on sync: a peer claims more work than anyone, keeps
/// announcing it, forwards the honest miner's answers to GetHashes (so it
/// is worth asking), and never answers GetBlocks. Its batch goes to
/// another peer within its first deadline (1 s), it loses its claim and
/// gets no more batches, and the follower keeps within 2 s of the miner.
#[test]
fn a_peer_that_gives_hashes_but_never_blocks_cannot_stall_a_sync() {
    use crate::api::{api_addr, get};
    let tmp = tempfile::tempdir().unwrap();
    let [m, f] = dirs(tmp.path(), ["m", "f"]);
    let chain = dir_arg(&tens_of_blocks_a_second(tmp.path()));
    let (pm, pf) = (free_port(), free_port());
    let node = |dir: &Path, extra: &[&str]| {
        let d = dir_arg(dir);
        let mut args = vec!["--data-dir", &d, "--chain", &chain];
        args.extend_from_slice(extra);
        let node = Node::start(&args);
        node.wait_for(LIMIT, |l| l.starts_with("node started"));
        node
    };
    let (lm, lf) = (local(pm), local(pf));
    let mut miner = node(&m, &["--listen", &lm, "--mine", "--api", "127.0.0.1:0"]);
    let api_m = api_addr(&miner);
    let mut follower = node(
        &f,
        &["--listen", &lf, "--peer", &lm, "--api", "127.0.0.1:0"],
    );
    let api_f = api_addr(&follower);
    wait_until(LIMIT, "the follower connects", &[&miner], || {
        get(api_m, "/status")["peers"].as_u64() == Some(1)
    });
    let genesis = Hash32::from_hex(get(api_m, "/status")["genesis"].as_str().unwrap()).unwrap();

    // The attacker's own link to the miner, for the answers it forwards.
    let (_upstream_peer, upstream) = greet(pm_addr(pm), genesis, [0; 32]);
    let upstream = Arc::new(upstream);
    let attacker = Adversary::new();
    let conn = Arc::new(attacker.connect(pm_addr(pf)).expect("TLS handshake"));
    conn.serve(Arc::new(move |request: &Request| match request {
        Request::GetHashes { .. } => forwarded(&upstream, request),
        Request::GetBlocks(_) => None,
        Request::Announce { .. } | Request::AnnounceTxs(_) => Some(Response::Ok),
        Request::GetAddrs => Some(Response::Addrs(Vec::new())),
        _ => Some(Response::NotFound),
    }));
    assert!(matches!(
        conn.request(&Request::Hello(hello(genesis, 1_000_000, [0xff; 32]))),
        Ok(Response::Hello(_))
    ));
    // It claims the most work again and again.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let announcer = {
        let (conn, stop) = (Arc::clone(&conn), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut n = 0u8;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                n = n.wrapping_add(1);
                let _ = conn.request(&Request::Announce {
                    hash: Hash32([n; 32]),
                    height: 1_000_000,
                    work: Hash32([0xff; 32]),
                });
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };

    let (worst, mined) = follows_within_two_seconds(api_m, api_f, Duration::from_secs(12));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    announcer.join().unwrap();
    assert!(mined >= 20, "the miner made only {mined} blocks");
    let asked = conn.requests.lock().unwrap().clone();
    let blocks_asked = asked
        .iter()
        .filter(|r| matches!(r, Request::GetBlocks(_)))
        .count();
    let hashes_asked = asked
        .iter()
        .filter(|r| matches!(r, Request::GetHashes { .. }))
        .count();
    assert!(hashes_asked >= 1, "the attacker was asked for hashes");
    eprintln!(
        "worst sync lag {worst:?} over {mined} blocks; the attacker was asked for blocks \
         {blocks_asked} times and for hashes {hashes_asked} times"
    );
    // Asked for blocks at most once before it was benched.
    assert!(blocks_asked <= 1, "asked for blocks {blocks_asked} times");
    stop_node(&mut follower);
    stop_node(&mut miner);
}

fn stop_node(node: &mut Node) {
    stop(node);
}

/// An adversary at `ip` that connects and sends a malformed Hello:
/// banned at once.
fn banned_from(node: &Node, target: SocketAddr, ip: std::net::Ipv4Addr) {
    let adversary = Adversary::at(ip);
    let conn = adversary.connect(target).expect("TLS handshake");
    let _ = conn.send_raw(&[4, 0, 0, 0, 0xff, 0xff, 0xff, 0xff], 1024);
    assert_banned(node, &adversary, &conn, "malformed hello");
}

/// Bans hold for the address and, at four addresses, the network group: a
/// fresh key from a banned address is refused before its handshake, and
/// so is any address of a /24 with four banned ones, while another /24
/// and the honest peers on 127.0.0.1 are served. With every inbound slot
/// taken, a newcomer evicts the newest peer of the largest group, never
/// the one that brought blocks.
#[test]
fn bans_hold_for_fresh_keys_from_one_place_and_full_slots_evict_the_least_useful() {
    use std::net::Ipv4Addr;
    let tmp = tempfile::tempdir().unwrap();
    let [m, n] = dirs(tmp.path(), ["m", "n"]);
    mine_to(&m, 5);
    let pn = free_port();
    let node = start(&n, &["--listen", &local(pn), "--max-inbound", "10"]);
    let target = pm_addr(pn);
    let genesis =
        Hash32::from_hex(running_status(&n).unwrap()["genesis"].as_str().unwrap()).unwrap();
    let greets = |ip: Ipv4Addr| -> Result<Conn, String> {
        let adversary = Adversary::at(ip);
        let conn = adversary.connect(target)?;
        conn.serve_politely();
        match conn.request(&Request::Hello(hello(genesis, 0, [0; 32]))) {
            Ok(Response::Hello(_)) => Ok(conn),
            other => Err(format!("{other:?}")),
        }
    };

    banned_from(&node, target, Ipv4Addr::new(127, 50, 1, 1));
    assert!(
        greets(Ipv4Addr::new(127, 50, 1, 1)).is_err(),
        "a fresh key from a banned address"
    );
    let neighbour =
        greets(Ipv4Addr::new(127, 50, 1, 9)).expect("one banned address is not the group");
    for last in 2..=4 {
        banned_from(&node, target, Ipv4Addr::new(127, 50, 1, last));
    }
    assert!(
        greets(Ipv4Addr::new(127, 50, 1, 200)).is_err(),
        "a /24 with four banned addresses"
    );
    let elsewhere = greets(Ipv4Addr::new(127, 50, 2, 1)).expect("another /24 is served");

    // An honest miner brings blocks; then the slots fill from one /24.
    let honest = start(&m, &["--peer", &local(pn)]);
    wait_until(LIMIT, "N syncs from M", &[&node, &honest], || {
        running_tip(&n).0 >= 5
    });
    let mut crowd = Vec::new();
    for last in 1..=7 {
        crowd.push(greets(Ipv4Addr::new(127, 60, 1, last)).expect("a free slot"));
    }
    // 10 inbound: M, the peers from 127.50.1.9 and 127.50.2.1, and 7 from
    // 127.60.1.0/24.
    let newcomer = greets(Ipv4Addr::new(127, 70, 1, 1)).expect("a newcomer evicts someone");
    let line = node.wait_for(LIMIT, |l| l.starts_with("p2p: evicting inbound peer"));
    assert!(
        line.contains("127.60.1.7:"),
        "the newest of the largest group: {line}"
    );
    assert!(
        crowd[6].closed_within(LIMIT).is_some(),
        "the evicted peer is disconnected"
    );
    drop((neighbour, elsewhere, newcomer, crowd));
    assert_no_bans(&[&honest]);
    for l in node.lines() {
        assert!(
            !(l.starts_with("p2p: evicting") && l.contains("127.0.0.1")),
            "an honest peer was evicted: {l}"
        );
    }
}

/// A miner stopped by `--stop-at-height` hands its last blocks to the
/// peers behind it before it closes their connections: 19 followers
/// that only the miner dials (a star) all end on its tip, and its stop
/// stays within the bound of schema/p2p.md.
#[test]
fn a_miner_stopping_at_a_height_brings_every_follower_to_it() {
    use crate::support::node::parse_mined;
    use std::time::Instant;
    const FOLLOWERS: usize = 19;
    const HEIGHT: u64 = 200;
    let tmp = tempfile::tempdir().unwrap();
    let ports: Vec<u16> = (0..FOLLOWERS).map(|_| free_port()).collect();
    let dirs: Vec<PathBuf> = (0..FOLLOWERS)
        .map(|i| tmp.path().join(format!("f{i}")))
        .collect();
    // Started all at once, then waited for.
    let mut followers: Vec<Node> = dirs
        .iter()
        .zip(&ports)
        .map(|(dir, port)| {
            let (d, l) = (dir_arg(dir), local(*port));
            Node::start(&["--data-dir", &d, "--chain", "regtest", "--listen", &l])
        })
        .collect();
    for follower in &followers {
        follower.wait_for(LIMIT, |l| l.starts_with("node started"));
    }
    let peers: Vec<String> = ports.iter().map(|p| local(*p)).collect();
    let height = HEIGHT.to_string();
    let mut args = vec!["--mine", "--stop-at-height", &height];
    for peer in &peers {
        args.extend(["--peer", peer]);
    }
    let m = tmp.path().join("m");
    let mut miner = start(&m, &args);
    miner.wait_for(LIMIT, |l| {
        parse_mined(l).is_some_and(|b| b.height == HEIGHT)
    });
    let reached = Instant::now();
    assert_eq!(miner.wait(LIMIT), Some(0), "stderr: {}", miner.stderr());
    let stop_took = reached.elapsed();
    let lines = miner.lines();
    let last = miner.mined().last().cloned().unwrap();
    assert_eq!(last.height, HEIGHT);
    let tip = (HEIGHT, last.hash.clone());
    // Every follower was connected before the miner stopped.
    let before: Vec<&String> = lines
        .iter()
        .take_while(|l| parse_mined(l).is_none_or(|b| b.height < HEIGHT))
        .collect();
    for peer in &peers {
        assert!(
            before
                .iter()
                .any(|l| l.starts_with("p2p: peer ")
                    && l.contains(&format!(" connected at {peer} "))),
            "the miner was not connected to {peer} when it stopped: {lines:?}"
        );
    }

    let took = wait_until(
        Duration::from_secs(5),
        "every follower on the miner's last block",
        &followers.iter().collect::<Vec<_>>(),
        || dirs.iter().all(|d| running_tip(d) == tip),
    );
    let relayed: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("p2p: stopping: "))
        .collect();
    eprintln!(
        "the miner stopped {stop_took:?} after its last block; the followers were on it \
         {took:?} after it exited; {relayed:?}"
    );
    assert_eq!(relayed.len(), 1, "{lines:?}");
    assert!(relayed[0].ends_with(", 0 left"), "{}", relayed[0]);
    let bound = pouwd::p2p::STOP_RELAY_BOUND + Duration::from_secs(3);
    assert!(
        stop_took < bound,
        "the miner took {stop_took:?} to stop, over {bound:?}"
    );

    for follower in &followers {
        follower.signal("TERM");
    }
    for follower in &mut followers {
        assert_eq!(follower.wait(LIMIT), Some(0), "{}", follower.stderr());
        let stopped = follower
            .lines()
            .into_iter()
            .find(|l| l.starts_with("node stopped"))
            .expect("a 'node stopped' line");
        assert_eq!(parse_stopped(&stopped), tip);
    }
    let mut all: Vec<&Node> = followers.iter().collect();
    all.push(&miner);
    assert_no_bans(&all);
}

/// A peer behind a stopping node that never fetches the tip holds the
/// stop up for the bound and no longer; the node says it was left.
#[test]
fn a_silent_peer_holds_a_stop_up_for_the_bound_only() {
    use std::time::Instant;
    let tmp = tempfile::tempdir().unwrap();
    let [n] = dirs(tmp.path(), ["n"]);
    mine_to(&n, 5);
    let pn = free_port();
    let mut node = start(&n, &["--listen", &local(pn)]);
    let genesis =
        Hash32::from_hex(running_status(&n).unwrap()["genesis"].as_str().unwrap()).unwrap();
    let silent = Adversary::new();
    let conn = silent.connect(pm_addr(pn)).expect("TLS handshake");
    conn.serve(Arc::new(|_: &Request| None));
    assert!(matches!(
        conn.request(&Request::Hello(hello(genesis, 0, [0; 32]))),
        Ok(Response::Hello(_))
    ));
    node.wait_for(LIMIT, |l| {
        l.starts_with(&format!("p2p: peer {} connected", silent.short_id()))
    });
    let asked = Instant::now();
    node.signal("TERM");
    assert_eq!(node.wait(LIMIT), Some(0), "{}", node.stderr());
    let took = asked.elapsed();
    let bound = pouwd::p2p::STOP_RELAY_BOUND;
    assert!(
        took >= bound && took < bound + Duration::from_secs(3),
        "the stop took {took:?}"
    );
    let line = node.wait_for(LIMIT, |l| l.starts_with("p2p: stopping: "));
    assert!(
        line.starts_with("p2p: stopping: 0 peers brought up to date with our tip (height 5) in ")
            && line.ends_with(" s, 1 left (1 did not catch up within 5 s)"),
        "{line}"
    );
}

/// A round whose blocks do not all come ends the store where they stop:
/// the round after it, whose hashes the leader named ahead, is not fetched
/// on top of the gap (its blocks would have no parent here). The next
/// round starts from what was stored, and each block past the first round
/// is asked for once.
#[test]
fn a_round_cut_short_is_not_followed_by_the_round_named_ahead() {
    let tmp = tempfile::tempdir().unwrap();
    let [s, f] = dirs(tmp.path(), ["s", "f"]);
    // A full round of 2000 hashes, and 100 more.
    mine_to(&s, 2100);
    let tip = (2100, status(&s)["tip"].as_str().unwrap().to_string());
    let genesis = Hash32::from_hex(status(&s)["genesis"].as_str().unwrap()).unwrap();
    let (ps, pf) = (free_port(), free_port());
    let mut source = start(&s, &["--listen", &local(ps)]);
    let mut follower = start(&f, &["--listen", &local(pf)]);

    // A relay between the two: it forwards the follower's requests to the
    // source, but refuses the first round's third batch once.
    let (_upstream_peer, upstream) = greet(pm_addr(ps), genesis, [0; 32]);
    let hashes = |after: Hash32| match upstream.request(&Request::GetHashes {
        locator: vec![after],
        max: 2000,
    }) {
        Ok(Response::Hashes(hashes)) => hashes,
        other => panic!("the source answered {other:?}"),
    };
    let first = hashes(genesis);
    assert_eq!(first.len(), 2000);
    let (third_batch, next_round) = (first[128], hashes(first[1999])[0]);
    let upstream = Arc::new(upstream);
    let refused = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let relay = Adversary::new();
    let conn = relay.connect(pm_addr(pf)).expect("TLS handshake");
    conn.serve(Arc::new(move |request: &Request| match request {
        Request::GetBlocks(asked)
            if asked[0] == third_batch
                && !refused.swap(true, std::sync::atomic::Ordering::SeqCst) =>
        {
            Some(Response::Refused("busy".into()))
        }
        Request::GetHashes { .. } | Request::GetBlocks(_) => forwarded(&upstream, request),
        Request::Announce { .. } | Request::AnnounceTxs(_) => Some(Response::Ok),
        Request::GetAddrs => Some(Response::Addrs(Vec::new())),
        _ => Some(Response::NotFound),
    }));
    assert!(matches!(
        conn.request(&Request::Hello(hello(genesis, 2100, [0xff; 32]))),
        Ok(Response::Hello(_))
    ));
    wait_until(LIMIT, "the follower syncs the chain", &[&follower], || {
        running_tip(&f) == tip
    });
    let asked: Vec<Request> = conn.requests.lock().unwrap().clone();
    let asked_for = |hash: Hash32| {
        asked
            .iter()
            .filter(|r| matches!(r, Request::GetBlocks(h) if h.contains(&hash)))
            .count()
    };
    assert_eq!(asked_for(third_batch), 2, "refused once, then asked again");
    assert_eq!(
        asked_for(next_round),
        1,
        "the next round's first block was asked for on top of the gap"
    );
    assert!(
        !follower
            .lines()
            .iter()
            .any(|l| l.contains("unknown parent")),
        "{}",
        follower.stderr()
    );
    stop(&mut follower);
    stop(&mut source);
}
