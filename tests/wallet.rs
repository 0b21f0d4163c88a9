//! Transactions end to end through real node processes: the write API and
//! its cookie, the account, pool and transaction views, and the `wallet`,
//! `send` and `tx` commands.

use crate::api::{api_addr, get, mine_regtest, stop};
use crate::support::node::{dir_arg, run, Node};
use ed25519_dalek::SigningKey;
use pouwd::chain::Hash32;
use pouwd::tx::{Tx, TxFields, TxKind, TX_VERSION};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

const STARTUP: Duration = Duration::from_secs(60);
const TOKEN: u64 = 100_000_000;
const REWARD: u64 = 50 * TOKEN;

/// One request with optional headers and body over a fresh connection:
/// the status code, the headers (lower case) and the JSON body.
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, Value) {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("transfer-encoding"))
    {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    // The node may answer and close before reading a body it refuses.
    let _ = stream.write_all(&bytes);
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8(response).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("end of headers");
    let status = head[9..12].parse().unwrap();
    let body = serde_json::from_str(body).unwrap_or_else(|e| panic!("{path}: {e}: {body:?}"));
    (status, head.to_ascii_lowercase(), body)
}

/// `POST /tx` of `body` with the token (when given) as a bearer token.
fn post_tx(addr: SocketAddr, token: Option<&str>, body: &[u8]) -> (u16, String, Value) {
    let authorization = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", "application/octet-stream")];
    if let Some(a) = &authorization {
        headers.push(("Authorization", a));
    }
    http(addr, "POST", "/tx", &headers, body)
}

/// `POST /tx` that must be refused with `status` and an error naming `reason`.
fn refused(addr: SocketAddr, token: &str, body: &[u8], status: u16, reason: &str) {
    let (found, _, answer) = post_tx(addr, Some(token), body);
    assert_eq!(found, status, "{reason}: {answer}");
    let error = answer["error"].as_str().expect("an error message");
    assert!(error.contains(reason), "expected {reason:?} in {error:?}");
}

fn node_key(dir: &Path) -> SigningKey {
    let text = std::fs::read_to_string(dir.join("node.key")).unwrap();
    SigningKey::from_bytes(&Hash32::from_hex(&text).unwrap().0)
}

fn id_of(key: &SigningKey) -> Hash32 {
    Hash32(key.verifying_key().to_bytes())
}

fn cookie(dir: &Path) -> (String, u32) {
    let path = dir.join("api.cookie");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    (std::fs::read_to_string(&path).unwrap(), mode)
}

fn json_of(out: &crate::support::node::Output) -> Value {
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
}

fn tx_chain(genesis: &Value) -> Hash32 {
    Hash32::from_hex(genesis.as_str().unwrap()).unwrap()
}

/// A data dir with a key and a regtest store, and no blocks.
fn empty_regtest(dir: &Path) {
    let out = run(&[
        "start",
        "--data-dir",
        &dir_arg(dir),
        "--chain",
        "regtest",
        "--stop-at-height",
        "0",
    ]);
    assert!(out.ok(), "{}", out.stderr);
}

#[test]
fn the_write_api_takes_signed_transactions_with_the_cookie_only() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    // At height 12 the rewards of blocks 1 and 2 are spendable.
    mine_regtest(&dir, 12);
    let d = dir_arg(&dir);
    let node = Node::start(&["--data-dir", &d, "--api", "127.0.0.1:0"]);
    let addr = api_addr(&node);
    let (token, mode) = cookie(&dir);
    assert_eq!(mode, 0o600);
    assert_eq!(token.len(), 64);
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()), "{token}");

    let key = node_key(&dir);
    let from = id_of(&key);
    let genesis = Hash32::from_hex(get(addr, "/status")["genesis"].as_str().unwrap()).unwrap();
    let to = id_of(&SigningKey::from_bytes(&[9; 32]));
    let fields = |nonce: u64, amount: u64, fee: u64| TxFields {
        version: TX_VERSION,
        chain: genesis,
        from,
        nonce,
        fee,
        kind: TxKind::Transfer { to, amount },
    };
    let good = fields(0, 3 * TOKEN / 2, 1_000).sign(&key);
    let bytes = good.to_bytes();

    // Without the token, with a wrong one, or in another scheme: 401.
    let (status, head, body) = post_tx(addr, None, &bytes);
    assert_eq!(status, 401, "{body}");
    assert!(head.contains("www-authenticate: bearer"), "{head}");
    assert!(
        body["error"].as_str().unwrap().contains("api.cookie"),
        "{body}"
    );
    let (status, _, _) = post_tx(addr, Some(&"0".repeat(64)), &bytes);
    assert_eq!(status, 401);
    let (status, _, _) = post_tx(addr, Some(&token[..63]), &bytes);
    assert_eq!(status, 401);
    let basic = format!("Basic {token}");
    let (status, _, _) = http(addr, "POST", "/tx", &[("Authorization", &basic)], &bytes);
    assert_eq!(status, 401);
    assert_eq!(
        get(addr, "/mempool")["count"],
        0,
        "nothing entered the pool"
    );

    // Each broken rule is refused with 400 naming it.
    let mut forged = good.clone();
    forged.signature[0] ^= 1;
    refused(
        addr,
        &token,
        &forged.to_bytes(),
        400,
        "signature does not verify",
    );
    let mut other_chain = fields(0, TOKEN, 1_000);
    other_chain.chain = Hash32([1; 32]);
    refused(
        addr,
        &token,
        &other_chain.sign(&key).to_bytes(),
        400,
        "is for the chain with genesis 0101",
    );
    let gap = fields(1, TOKEN, 1_000).sign(&key);
    refused(
        addr,
        &token,
        &gap.to_bytes(),
        400,
        "nonce 1 leaves a gap: the next nonce the pool takes from this sender is 0",
    );
    // Spendable is exactly 100 tokens: 100 tokens and a fee are more.
    let overspend = fields(0, 100 * TOKEN, 1_000).sign(&key);
    refused(
        addr,
        &token,
        &overspend.to_bytes(),
        400,
        "it spends 10000001000 base units; 10000000000 are spendable",
    );
    let cheap = fields(0, TOKEN, 0).sign(&key);
    refused(
        addr,
        &token,
        &cheap.to_bytes(),
        400,
        "under the minimum relay fee of 1000 per 1000 bytes",
    );
    // The nonce 0 as a two-byte varint: postcard reads it, the strict
    // decoder refuses it.
    let nonce_at = 1 + 32 + 32;
    assert_eq!(bytes[nonce_at], 0);
    let mut long = bytes[..nonce_at].to_vec();
    long.extend([0x80, 0x00]);
    long.extend(&bytes[nonce_at + 1..]);
    refused(addr, &token, &long, 400, "not in canonical form");
    let mut trailing = bytes.clone();
    trailing.push(0);
    refused(addr, &token, &trailing, 400, "1 trailing bytes");
    refused(
        addr,
        &token,
        b"",
        400,
        "malformed: transaction does not decode",
    );
    // Bodies: the limit (2 MiB) is read and refused as a transaction over
    // its 1 MiB; one byte more is not read at all.
    refused(
        addr,
        &token,
        &vec![0; 2 << 20],
        400,
        "transaction is 2097152 bytes, over the limit of 1048576",
    );
    refused(
        addr,
        &token,
        &vec![0; (2 << 20) + 1],
        413,
        "larger than 2097152 bytes",
    );
    // A body that stops short is given up after 5 s: 408.
    let mut slow = TcpStream::connect(addr).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let asked = Instant::now();
    write!(
        slow,
        "POST /tx HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Length: {}\r\n\r\n",
        bytes.len()
    )
    .unwrap();
    slow.write_all(&bytes[..10]).unwrap();
    let mut answer = String::new();
    let _ = slow.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    let waited = asked.elapsed();
    assert!(
        waited >= Duration::from_secs(4) && waited < Duration::from_secs(15),
        "{waited:?}"
    );
    // A chunked body without a length is cut off at the limit too.
    let mut chunked = Vec::new();
    // 2 MiB and 1 KiB in chunks of 1 KiB.
    for _ in 0..2049 {
        chunked.extend(b"400\r\n");
        chunked.extend([0u8; 0x400]);
        chunked.extend(b"\r\n");
    }
    chunked.extend(b"0\r\n\r\n");
    let authorization = format!("Bearer {token}");
    let (status, _, body) = http(
        addr,
        "POST",
        "/tx",
        &[
            ("Authorization", &authorization),
            ("Transfer-Encoding", "chunked"),
        ],
        &chunked,
    );
    assert_eq!(status, 413, "{body}");
    assert_eq!(
        get(addr, "/mempool")["count"],
        0,
        "nothing entered the pool"
    );

    // A good one: 200 with its id, then in the pool's views.
    let (status, _, body) = post_tx(addr, Some(&token), &bytes);
    assert_eq!(status, 200, "{body}");
    let id = good.id().to_hex();
    assert_eq!(body["id"], id);
    let pool = get(addr, "/mempool");
    assert_eq!(pool["count"], 1);
    assert_eq!(pool["bytes"], bytes.len());
    assert_eq!(pool["limits"]["min_fee_per_kb"], 1_000);
    assert_eq!(pool["limits"]["max_count"], 100_000);
    assert_eq!(pool["listed"], 1);
    let listed = &pool["transactions"][0];
    assert_eq!(listed["id"], id);
    assert_eq!(listed["from"], from.to_hex());
    assert_eq!(listed["to"], to.to_hex());
    assert_eq!(listed["nonce"], 0);
    assert_eq!(listed["fee"], 1_000);
    assert_eq!(listed["amount"], 3 * TOKEN / 2);
    assert_eq!(listed["amount_tokens"], "1.50000000");
    assert_eq!(
        listed["fee_per_byte"].as_f64().unwrap(),
        1_000.0 / bytes.len() as f64
    );
    let none = get(addr, "/mempool?limit=0");
    assert_eq!(
        (none["count"].clone(), none["listed"].clone()),
        (1.into(), 0.into())
    );
    let account = get(addr, &format!("/accounts/{from}"));
    assert_eq!(account["nonce"], 0, "the chain has not changed");
    assert_eq!(account["next_nonce"], 1, "the pending one is counted");
    assert_eq!(account["pending"], 1);
    assert_eq!(account["spendable"], 2 * REWARD);
    assert_eq!(account["immature"], 10 * REWARD);
    assert_eq!(account["total"], 12 * REWARD);
    assert_eq!(account["spendable_tokens"], "100.00000000");
    assert_eq!(account["total_tokens"], "600.00000000");
    let recipient = get(addr, &format!("/accounts/{to}"));
    assert_eq!(
        (recipient["total"].clone(), recipient["next_nonce"].clone()),
        (0.into(), 0.into())
    );
    let pending = get(addr, &format!("/tx/{id}"));
    assert_eq!(pending["state"], "pending");
    assert_eq!(pending["amount"], 3 * TOKEN / 2);
    // Known already: 409, and still one in the pool.
    refused(addr, &token, &bytes, 409, "already in the pool");
    assert_eq!(get(addr, "/mempool")["count"], 1);

    // `pouwd send` takes the next nonce counting the pending one.
    let out = run(&[
        "send",
        "--data-dir",
        &d,
        "--to",
        &to.to_hex(),
        "--amount",
        "2",
    ]);
    assert!(out.ok(), "{}", out.stderr);
    let sent = out.stdout.trim().to_string();
    assert_eq!(sent.len(), 64, "{}", out.stdout);
    let second = get(addr, &format!("/tx/{sent}"));
    assert_eq!(second["nonce"], 1);
    assert_eq!(second["fee"], 1_000, "the default fee");
    assert_eq!(second["amount_tokens"], "2.00000000");
    let out = run(&["wallet", "--data-dir", &d, "--json"]);
    assert!(out.ok(), "{}", out.stderr);
    let wallet = json_of(&out);
    assert_eq!(wallet["source"], "api");
    assert_eq!(wallet["next_nonce"], 2);
    assert_eq!(wallet["pending"], 2);
    let out = run(&["wallet", "--data-dir", &d]);
    assert!(
        out.stdout.contains("balance: 600.00000000"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("spendable: 100.00000000"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("immature: 500.00000000"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("next nonce: 2 (2 pending)"),
        "{}",
        out.stdout
    );
    let out = run(&["tx", "--data-dir", &d, &sent]);
    assert!(out.ok(), "{}", out.stderr);
    assert!(out.stdout.contains("state: pending"), "{}", out.stdout);
    assert!(out.stdout.contains("amount: 2.00000000"), "{}", out.stdout);
    // Refused by the node: its reason, and a non-zero exit.
    let out = run(&[
        "send",
        "--data-dir",
        &d,
        "--to",
        &to.to_hex(),
        "--amount",
        "97",
    ]);
    assert_eq!(out.code, Some(1), "{}", out.stdout);
    assert!(
        out.stderr.contains("the node refused the transaction")
            && out.stderr.contains("are spendable"),
        "{}",
        out.stderr
    );
    let unknown = "ab".repeat(32);
    let out = run(&["tx", "--data-dir", &d, &unknown]);
    assert_eq!(out.code, Some(1));
    assert!(out.stdout.contains("state: unknown"), "{}", out.stdout);
    assert!(
        out.stderr.contains("neither the node's pool"),
        "{}",
        out.stderr
    );

    // A clean stop removes the token; the next start writes another.
    stop(node, "TERM");
    assert!(!dir.join("api.cookie").exists());
    let node = Node::start(&["--data-dir", &d, "--api", "127.0.0.1:0"]);
    let addr = api_addr(&node);
    let (again, mode) = cookie(&dir);
    assert_eq!(mode, 0o600);
    assert_ne!(again, token, "a fresh token at every start");
    let (status, _, _) = post_tx(addr, Some(&token), &bytes);
    assert_eq!(status, 401, "the last run's token opens nothing");
    assert_eq!(
        get(addr, "/mempool")["count"],
        0,
        "the pool lives in memory only"
    );
    let (status, _, body) = post_tx(addr, Some(&again), &bytes);
    assert_eq!(status, 200, "{body}");
    // `send --out` signs with the next nonce and writes the bytes, which
    // POST /tx takes as they are.
    let file = tmp.path().join("tx.bin");
    let out = run(&[
        "send",
        "--data-dir",
        &d,
        "--to",
        &to.to_hex(),
        "--amount",
        "0.5",
        "--out",
        &dir_arg(&file),
    ]);
    assert!(out.ok(), "{}", out.stderr);
    let written = std::fs::read(&file).unwrap();
    let tx = Tx::from_bytes(&written).unwrap();
    assert_eq!(tx.fields.nonce, 1, "after the pending one");
    assert_eq!(out.stdout.trim(), tx.id().to_hex());
    assert_eq!(get(addr, "/mempool")["count"], 1, "written, not sent");
    let (status, _, body) = post_tx(addr, Some(&again), &written);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["id"], tx.id().to_hex());
    stop(node, "INT");
    assert!(!dir.join("api.cookie").exists());
}

#[test]
fn send_needs_a_running_node_that_serves_the_api() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    empty_regtest(&dir);
    let d = dir_arg(&dir);
    let to = id_of(&SigningKey::from_bytes(&[9; 32])).to_hex();
    let send = |amount: &str| run(&["send", "--data-dir", &d, "--to", &to, "--amount", amount]);
    let out = send("1");
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr.contains("no node is running on")
            && out
                .stderr
                .contains(&format!("pouwd start --data-dir {d} --api")),
        "{}",
        out.stderr
    );
    // Bad arguments: exit 2, before anything is signed.
    for (flag, value, reason) in [
        ("--amount", "1.000000001", "more than 8 decimals"),
        ("--amount", "0", "at least"),
        ("--amount", "1,5", "not an amount"),
        ("--fee", "x", "not an amount"),
        ("--to", "xyz", "not hex"),
    ] {
        let mut args = vec!["send", "--data-dir", &d];
        for (name, default) in [
            ("--to", to.as_str()),
            ("--amount", "1"),
            ("--fee", "0.00001"),
        ] {
            args.extend([name, if name == flag { value } else { default }]);
        }
        let out = run(&args);
        assert_eq!(out.code, Some(2), "{flag} {value}: {}", out.stderr);
        assert!(out.stderr.contains(reason), "{}", out.stderr);
    }
    let out = run(&["tx", "--data-dir", &d, "nothex"]);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    // Signed without a node, for later: the stored chain's nonce.
    let out = run(&[
        "send",
        "--data-dir",
        &d,
        "--to",
        &to,
        "--amount",
        "1",
        "--out",
        "-",
    ]);
    assert!(out.ok(), "{}", out.stderr);
    assert!(out.stderr.contains("no node is running"), "{}", out.stderr);
    let tx = Tx::from_bytes(&out.stdout_bytes).unwrap();
    let key = node_key(&dir);
    assert_eq!(tx.fields.from, id_of(&key));
    assert_eq!(tx.fields.nonce, 0);
    assert_eq!(tx.fields.fee, 1_000);
    assert_eq!(
        tx.fields.kind,
        TxKind::Transfer {
            to: Hash32::from_hex(&to).unwrap(),
            amount: TOKEN
        }
    );
    let genesis = json_of(&run(&["status", "--data-dir", &d, "--json"]))["genesis"].clone();
    assert_eq!(tx.fields.chain.to_hex(), genesis.as_str().unwrap());
    pouwd::tx::check_tx(tx, &tx_chain(&genesis), &pouwd::tx::JobLimits::default())
        .expect("signed by the data dir's key");

    // A node without --api: send and tx say so; wallet reads its status file.
    std::fs::write(dir.join("api.cookie"), "stale").unwrap();
    let node = Node::start(&["--data-dir", &d]);
    node.wait_for(STARTUP, |l| l.starts_with("node started"));
    assert!(
        !dir.join("api.cookie").exists(),
        "a stale token is removed at start"
    );
    let out = send("1");
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr.contains("serves no API") && out.stderr.contains("--api"),
        "{}",
        out.stderr
    );
    let out = run(&["tx", "--data-dir", &d, &"ab".repeat(32)]);
    assert_eq!(out.code, Some(1));
    assert!(out.stderr.contains("serves no API"), "{}", out.stderr);
    let out = run(&["wallet", "--data-dir", &d, "--json"]);
    assert!(out.ok(), "{}", out.stderr);
    let wallet = json_of(&out);
    assert_eq!(wallet["source"], "status_file");
    assert_eq!(wallet["total"], 0);
    assert_eq!(wallet["next_nonce"], Value::Null, "pending ones unknown");
    stop(node, "TERM");
}

#[test]
fn a_sent_transaction_is_mined_and_credits_the_recipient() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    // At height 11 block 1's reward is spendable.
    mine_regtest(&a, 11);
    empty_regtest(&b);
    let (da, db) = (dir_arg(&a), dir_arg(&b));
    let out = run(&["id", "--data-dir", &db]);
    let recipient = out.stdout.trim().to_string();
    let node = Node::start(&["--data-dir", &da, "--mine", "--api", "127.0.0.1:0"]);
    let addr = api_addr(&node);

    let out = run(&[
        "send",
        "--data-dir",
        &da,
        "--to",
        &recipient,
        "--amount",
        "1.25",
        "--fee",
        "0.0001",
    ]);
    assert!(out.ok(), "{}", out.stderr);
    let id = out.stdout.trim().to_string();
    let started = Instant::now();
    let state = loop {
        let out = run(&["tx", "--data-dir", &da, &id]);
        assert!(out.ok(), "{}", out.stderr);
        if let Some(line) = out
            .stdout
            .lines()
            .find(|l| l.starts_with("state: in block "))
        {
            break line.to_string();
        }
        assert!(
            started.elapsed() < STARTUP,
            "not mined: {}; node: {:?}",
            out.stdout,
            node.lines().last()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    // "state: in block H (HASH), N confirmation(s)"
    let mut words = state["state: in block ".len()..].split_whitespace();
    let height: u64 = words.next().unwrap().parse().unwrap();
    let hash = words
        .next()
        .unwrap()
        .trim_matches(|c| c == '(' || c == ')' || c == ',');
    assert!(height > 11, "{state}");
    assert_eq!(get(addr, &format!("/blocks/{height}"))["hash"], hash);
    let mined = get(addr, &format!("/tx/{id}"));
    assert_eq!(mined["state"], "in_block");
    assert_eq!(mined["block"], hash);
    assert_eq!(mined["amount"], 125_000_000);
    let credited = get(addr, &format!("/accounts/{recipient}"));
    assert_eq!(credited["spendable"], 125_000_000);
    stop(node, "TERM");

    // Stopped: the same from the store.
    let out = run(&["tx", "--data-dir", &da, &id, "--json"]);
    assert!(out.ok(), "{}", out.stderr);
    let stored = json_of(&out);
    assert_eq!(stored["state"], "in_block");
    assert_eq!(stored["height"], height);
    assert_eq!(stored["block"], hash);
    // The recipient's data dir, once it holds the chain, shows the amount.
    let chain = tmp.path().join("chain.bin");
    let out = run(&["export-chain", "--data-dir", &da, "--out", &dir_arg(&chain)]);
    assert!(out.ok(), "{}", out.stderr);
    let out = run(&["import-chain", "--data-dir", &db, "--in", &dir_arg(&chain)]);
    assert!(out.ok(), "{}", out.stderr);
    let out = run(&["wallet", "--data-dir", &db, "--json"]);
    assert!(out.ok(), "{}", out.stderr);
    let wallet = json_of(&out);
    assert_eq!(wallet["id"], recipient.as_str());
    assert_eq!(wallet["source"], "store");
    assert_eq!(
        wallet["spendable"], 125_000_000,
        "a transfer is spendable at once"
    );
    assert_eq!(wallet["total_tokens"], "1.25000000");
    let out = run(&["wallet", "--data-dir", &db]);
    assert!(
        out.stdout.contains("spendable: 1.25000000"),
        "{}",
        out.stdout
    );
    // The sender mined every block, so it got its fee back: it has all
    // its rewards but what it sent.
    let tip = run(&["status", "--data-dir", &da, "--json"]);
    let tip = json_of(&tip)["height"].as_u64().unwrap();
    let out = run(&["wallet", "--data-dir", &da, "--json"]);
    let sender = json_of(&out);
    assert_eq!(sender["nonce"], 1);
    assert_eq!(sender["total"], tip * REWARD - 125_000_000);
}
