//! `pouwd backup` and `restore`, `export-chain` of a running node, and
//! `import-chain` taking its chain from the file: through real node
//! processes, with the chain itself as the reference for what a restore
//! must give back.

use crate::api::{api_addr, mine_regtest, request, stop};
use crate::support::node::{dir_arg, run, Node};
use pouwd::chain::Hash32;
use pouwd::node::DataDir;
use pouwd::store::Store;
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(60);

fn id_of(dir: &Path) -> Hash32 {
    let key = DataDir::new(dir).load_key().expect("the data dir's key");
    Hash32(key.verifying_key().to_bytes())
}

fn status(dir: &Path) -> Value {
    let out = run(&["status", "--data-dir", &dir_arg(dir), "--json"]);
    assert!(out.ok(), "status failed: {}", out.stderr);
    serde_json::from_str(&out.stdout).expect("status JSON")
}

/// The `height=H hash=X` a command printed.
fn tip_in(text: &str) -> (u64, String) {
    let field = |name: &str| {
        text.split_whitespace()
            .find_map(|w| w.strip_prefix(name))
            .map(|v| v.trim_end_matches([',', '.', ')']).to_string())
            .unwrap_or_else(|| panic!("no {name} in {text:?}"))
    };
    (field("height=").parse().unwrap(), field("hash="))
}

/// Wait until the node has mined a block above `height`.
fn mined_above(node: &Node, height: u64) {
    let started = Instant::now();
    while !node.mined().iter().any(|m| m.height > height) {
        assert!(
            started.elapsed() < LIMIT,
            "no block above {height}; stderr: {}",
            node.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every file under `dir`, with its bytes, in order.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(next) = todo.pop() {
        for entry in std::fs::read_dir(&next).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else {
                out.push((path.clone(), std::fs::read(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// The names in `dir`, to see that a failed command left nothing.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The reference for a restored balance: what the chain up to `tip`, read
/// block by block from the store, pays `id`. The chain of this test holds
/// no transactions, so that is one reward per block `id` mined.
fn paid_by_chain(store: &Store, tip: &Hash32, id: &Hash32) -> (u64, u64) {
    let (mut mined, mut height) = (0, 0);
    let mut next = *tip;
    while next != store.genesis_hash() {
        let meta = store.meta(&next).unwrap().expect("a block of the chain");
        let block = store.block(&next).unwrap().expect("its bytes");
        assert!(block.body.txs.is_empty(), "no transactions on this chain");
        height = height.max(meta.height);
        if meta.miner == *id {
            mined += 1;
        }
        next = meta.parent;
    }
    assert!(height > 0);
    (mined * store.params().reward_amount, height)
}

/// A backup taken while the node mines, restored into a new dir: the same
/// key and id, the chain up to the backup's tip, and the balance the chain
/// gives that key there. export-chain of the same running node imports
/// into a new dir without --chain.
#[test]
fn a_backup_taken_while_mining_restores_the_key_the_chain_and_the_balance() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let d = dir_arg(&a);
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
    mined_above(&node, 3);

    // The export endpoint is the operator's: without the token, 401.
    let (code, _, body) = request(addr, "GET", "/chain/export");
    assert_eq!(code, 401, "{body}");
    assert!(body["error"].as_str().unwrap().contains("api.cookie"));

    let file = tmp.path().join("node.backup");
    let out = run(&["backup", "--data-dir", &d, "--out", &dir_arg(&file)]);
    assert!(out.ok(), "{}", out.stderr);
    assert!(out.stdout.contains("running node"), "{}", out.stdout);
    let (height, hash) = tip_in(&out.stdout);
    assert!(height >= 3, "{}", out.stdout);
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the backup holds the node key");

    // export-chain of the running node; it keeps mining meanwhile.
    let chain = tmp.path().join("chain.pouw");
    let out = run(&["export-chain", "--data-dir", &d, "--out", &dir_arg(&chain)]);
    assert!(out.ok(), "{}", out.stderr);
    let (exported_height, exported_hash) = tip_in(&out.stderr);
    assert!(exported_height >= height);
    mined_above(&node, exported_height);
    stop(node, "TERM");

    // The regtest export goes into a new dir without --chain.
    let imported = tmp.path().join("imported");
    let out = run(&[
        "import-chain",
        "--data-dir",
        &dir_arg(&imported),
        "--in",
        &dir_arg(&chain),
    ]);
    assert!(out.ok(), "{}", out.stderr);
    let s = status(&imported);
    assert_eq!(s["network"], "regtest");
    assert_eq!(s["height"], exported_height);
    assert_eq!(s["tip"], exported_hash.as_str());
    assert_ne!(
        id_of(&imported),
        id_of(&a),
        "an import makes a key of its own"
    );

    let r = tmp.path().join("restored");
    let out = run(&[
        "restore",
        "--in",
        &dir_arg(&file),
        "--data-dir",
        &dir_arg(&r),
    ]);
    assert!(out.ok(), "{}", out.stderr);
    assert_eq!(
        std::fs::read(r.join("node.key")).unwrap(),
        std::fs::read(a.join("node.key")).unwrap()
    );
    let mode = std::fs::metadata(r.join("node.key"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let id = id_of(&a);
    let out = run(&["id", "--data-dir", &dir_arg(&r)]);
    assert_eq!(out.stdout.trim(), id.to_hex());
    let s = status(&r);
    assert_eq!(s["height"], height);
    assert_eq!(s["tip"], hash.as_str());

    // The original chain went on past the backup; up to the backup's tip
    // it is the restored one, and it pays the key what the restore says.
    let store = Store::open_to_read(&a.join("store")).unwrap();
    let tip = Hash32::from_hex(&hash).unwrap();
    assert_eq!(store.hash_at(height).unwrap(), Some(tip));
    assert!(store.tip().unwrap().height > height, "it mined on");
    let (paid, at) = paid_by_chain(&store, &tip, &id);
    assert_eq!(at, height);
    assert!(paid > 0);
    drop(store);
    let out = run(&["wallet", "--data-dir", &dir_arg(&r), "--json"]);
    assert!(out.ok(), "{}", out.stderr);
    let wallet: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(wallet["total"], paid, "{wallet}");
    assert_eq!(names(tmp.path()).len(), 5, "{:?}", names(tmp.path()));
}

/// A node running without an API: backup and export-chain say how to
/// serve one, and write nothing.
#[test]
fn a_running_node_without_an_api_is_named_with_the_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    mine_regtest(&a, 2);
    let d = dir_arg(&a);
    let node = Node::start(&["--data-dir", &d]);
    node.wait_for(LIMIT, |l| l.starts_with("node started"));
    let file = tmp.path().join("out");
    for command in ["backup", "export-chain"] {
        let out = run(&[command, "--data-dir", &d, "--out", &dir_arg(&file)]);
        assert_eq!(out.code, Some(1), "{command}");
        assert!(
            out.stderr.contains("serves no API") && out.stderr.contains("--api"),
            "{command}: {}",
            out.stderr
        );
    }
    stop(node, "TERM");
    assert_eq!(names(tmp.path()), ["a"], "nothing written");
}

/// restore refuses a dir in use and every bad file, and leaves nothing
/// behind; a backup of a stopped node restores as well.
#[test]
fn restore_refuses_bad_input_and_leaves_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    mine_regtest(&a, 4);
    let out = run(&["backup", "--data-dir", &dir_arg(&a), "--out", "-"]);
    assert_eq!(out.code, Some(1));
    assert!(out.stderr.contains("to a file only"), "{}", out.stderr);
    assert!(out.stdout.is_empty(), "the key never goes to stdout");
    let file = tmp.path().join("b.backup");
    let out = run(&[
        "backup",
        "--data-dir",
        &dir_arg(&a),
        "--out",
        &dir_arg(&file),
    ]);
    assert!(out.ok(), "{}", out.stderr);
    assert!(out.stdout.contains("(store)"), "{}", out.stdout);
    let bytes = std::fs::read(&file).unwrap();
    let target = tmp.path().join("r");
    let restore = |input: &Path| {
        run(&[
            "restore",
            "--in",
            &dir_arg(input),
            "--data-dir",
            &dir_arg(&target),
        ])
    };
    let before = names(tmp.path());

    let write = |name: &str, data: &[u8]| {
        let path = tmp.path().join(name);
        std::fs::write(&path, data).unwrap();
        path
    };
    // The stream starts after node.key, chain.json and diabetes.csv.
    let chain_len = std::fs::read(a.join("chain.json")).unwrap().len();
    let dataset_len = std::fs::read(a.join("dataset/diabetes.csv")).unwrap().len();
    let stream_at = 16 + (2 + 8 + 8 + 65) + (2 + 10 + 8 + chain_len) + (2 + 20 + 8 + dataset_len);
    assert_eq!(&bytes[stream_at..stream_at + 8], b"POUWEXP\0");
    let mut tampered = bytes.clone();
    let last = tampered.len() - 20;
    tampered[last] ^= 0x40;
    let cases = [
        (tmp.path().join("missing"), "cannot open"),
        (write("garbage", b"hello, world"), "not a pouwd backup"),
        (write("cut-entries", &bytes[..100]), "truncated"),
        (
            write("cut-stream", &bytes[..bytes.len() - 30]),
            "stream is truncated",
        ),
        (write("tampered", &tampered), "block #4 of the file"),
    ];
    for (path, expected) in &cases {
        let out = restore(path);
        assert_eq!(out.code, Some(1), "{}", path.display());
        assert!(
            out.stderr.contains(expected),
            "{}: {expected:?} not in {}",
            path.display(),
            out.stderr
        );
        assert!(
            !target.exists(),
            "{}: a restore left {target:?}",
            path.display()
        );
    }
    let mut expected_names = before.clone();
    expected_names.extend(["cut-entries", "cut-stream", "garbage", "tampered"].map(String::from));
    expected_names.sort();
    assert_eq!(names(tmp.path()), expected_names, "no temporary dir left");

    // A directory with something in it is refused, and untouched.
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("notes.txt"), b"mine").unwrap();
    let out = restore(&file);
    assert_eq!(out.code, Some(1));
    assert!(out.stderr.contains("is not empty"), "{}", out.stderr);
    assert_eq!(names(&target), ["notes.txt"]);

    // An empty one is fine.
    std::fs::remove_file(target.join("notes.txt")).unwrap();
    let out = restore(&file);
    assert!(out.ok(), "{}", out.stderr);
    assert_eq!(status(&target)["tip"], status(&a)["tip"]);
    assert_eq!(id_of(&target), id_of(&a));
}

/// A start refused because its `--listen` (QUIC, UDP) or `--api` (TCP)
/// address is taken creates no data dir, empties again an empty one it was
/// given, and leaves an existing one as it was.
#[test]
fn a_start_on_a_taken_port_leaves_no_half_made_data_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let quic = udp.local_addr().unwrap().to_string();
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let api = tcp.local_addr().unwrap().to_string();
    let existing = tmp.path().join("existing");
    let out = run(&[
        "start",
        "--data-dir",
        &dir_arg(&existing),
        "--chain",
        "regtest",
        "--stop-at-height",
        "0",
    ]);
    assert!(out.ok(), "{}", out.stderr);
    // Opening the store may rewrite its files or add a snapshot; no file
    // goes, and the key and the chain stay as they were.
    let kept = |dir: &Path| -> Vec<(PathBuf, Option<Vec<u8>>)> {
        snapshot(dir)
            .into_iter()
            .map(|(path, bytes)| {
                let fixed = ["node.key", "chain.json"].iter().any(|n| path.ends_with(n));
                (path, fixed.then_some(bytes))
            })
            .collect()
    };
    let before = kept(&existing);
    let new = tmp.path().join("new");
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    for (flag, addr) in [("--listen", &quic), ("--api", &api)] {
        for dir in [&new, &empty, &existing] {
            let out = run(&[
                "start",
                "--data-dir",
                &dir_arg(dir),
                "--chain",
                "regtest",
                flag,
                addr,
            ]);
            assert_eq!(out.code, Some(1), "{flag} {dir:?}: {}", out.stderr);
            assert!(
                out.stderr.contains(addr.as_str()),
                "{flag} {dir:?}: {}",
                out.stderr
            );
        }
        assert!(!new.exists(), "a start on a taken {flag} left {new:?}");
        assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0, "{flag}");
        let after = kept(&existing);
        assert!(
            before.iter().all(|file| after.contains(file)),
            "{flag} changed {existing:?}"
        );
    }
    drop((udp, tcp));
}

/// import-chain takes the chain the file names: a mismatch with an
/// existing dir or with --chain is refused before anything is written,
/// and no failed start or import leaves a half-made data dir.
#[test]
fn import_chain_checks_the_files_chain_before_writing_anything() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    mine_regtest(&a, 3);
    let file = tmp.path().join("regtest.pouw");
    let out = run(&[
        "export-chain",
        "--data-dir",
        &dir_arg(&a),
        "--out",
        &dir_arg(&file),
    ]);
    assert!(out.ok(), "{}", out.stderr);

    // An existing devnet dir: refused, and not one byte of it changed.
    let devnet = tmp.path().join("devnet");
    let out = run(&[
        "start",
        "--data-dir",
        &dir_arg(&devnet),
        "--stop-at-height",
        "0",
    ]);
    assert!(out.ok(), "{}", out.stderr);
    let before = snapshot(&devnet);
    let out = run(&[
        "import-chain",
        "--data-dir",
        &dir_arg(&devnet),
        "--in",
        &dir_arg(&file),
    ]);
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr.contains("export of chain \"regtest\"")
            && out.stderr.contains("holds chain \"devnet\"")
            && out.stderr.contains("nothing was written"),
        "{}",
        out.stderr
    );
    assert_eq!(snapshot(&devnet), before);

    let fresh = tmp.path().join("fresh");
    let garbage = tmp.path().join("garbage");
    std::fs::write(&garbage, b"not an export").unwrap();
    let missing = tmp.path().join("missing.bin");
    let cases: [(&[&str], &str); 5] = [
        (&["--in", &dir_arg(&missing)], "cannot open"),
        (&["--in", &dir_arg(&garbage)], "not a pouwd chain export"),
        (
            &["--in", &dir_arg(&file), "--chain", "devnet"],
            "--chain names chain \"devnet\"",
        ),
        (
            &["--in", &dir_arg(&file), "--chain", "nosuch"],
            "the known chains are devnet, regtest, devnet-onnx",
        ),
        (&["--in", "-"], "the header ends"),
    ];
    for (args, expected) in cases {
        let mut all = vec!["import-chain", "--data-dir"];
        let d = dir_arg(&fresh);
        all.push(&d);
        all.extend_from_slice(args);
        let out = run(&all);
        // A chain name that is not one is a bad argument value: 2.
        let code = if args.contains(&"nosuch") { 2 } else { 1 };
        assert_eq!(out.code, Some(code), "{args:?}");
        assert!(out.stderr.contains(expected), "{args:?}: {}", out.stderr);
        assert!(!fresh.exists(), "{args:?} left {fresh:?}");
    }
    // A failed start leaves nothing either.
    // A chain name that is not one is refused by argument parsing (2);
    // a chain file that does not parse gets past it, and fails the start.
    let out = run(&["start", "--data-dir", &dir_arg(&fresh), "--chain", "nosuch"]);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(!fresh.exists());
    let bad_chain = tmp.path().join("bad-chain.json");
    std::fs::write(&bad_chain, b"{\"network\": ").unwrap();
    let out = run(&[
        "start",
        "--data-dir",
        &dir_arg(&fresh),
        "--chain",
        &dir_arg(&bad_chain),
    ]);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(!fresh.exists(), "a failed start left {fresh:?}");

    // A file none of whose blocks is valid: the dir made for it goes.
    let mut bytes = std::fs::read(&file).unwrap();
    let json_len = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
    let first_block = 16 + json_len + 32 + 4;
    bytes[first_block + 8] ^= 0x01;
    let bad = tmp.path().join("bad.pouw");
    std::fs::write(&bad, &bytes).unwrap();
    let out = run(&[
        "import-chain",
        "--data-dir",
        &dir_arg(&fresh),
        "--in",
        &dir_arg(&bad),
    ]);
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr.contains("block #1 of the file"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("was removed"), "{}", out.stderr);
    assert!(!fresh.exists());
}

/// The export of one tip is that tip's chain, by parent links, even after
/// the node has reorganised onto another branch: what a backup of a
/// running node relies on.
#[test]
fn an_export_of_a_tip_is_its_chain_even_after_a_reorg() {
    use crate::reorg::{mine_branch, node, submit_all, submit_time};
    use crate::support::chain::{key, TestChain};
    use pouwd::node::export::{export_chain, export_chain_at, StreamReader};
    use pouwd::store::Stored;

    let mut builder = TestChain::regtest();
    let now = submit_time(&builder);
    let genesis = builder.genesis;
    let branch_a = mine_branch(&mut builder, genesis, &key(1), 2);
    let branch_b = mine_branch(&mut builder, genesis, &key(2), 3);
    let node = node();
    submit_all(&node, &branch_a, now, &Stored::Extended);
    let old_tip = branch_a[1].header.id();
    submit_all(&node, &branch_b[..2], now, &Stored::SideChain);
    assert!(matches!(
        crate::reorg::submit(&node, &branch_b[2], now),
        Stored::Reorg { .. }
    ));
    let store = &node.chain.store;
    let ids = |stream: &[u8]| {
        let (header, mut reader) = StreamReader::open(stream).unwrap();
        assert_eq!(header.genesis, store.genesis_hash());
        let mut ids = Vec::new();
        while let Some(bytes) = reader.next_block().unwrap() {
            ids.push(node.chain.decode(&bytes).unwrap().header.id());
        }
        ids
    };
    let (count, old) = export_chain_at(store, &old_tip, Vec::new()).unwrap();
    assert_eq!(count, 2);
    let expected: Vec<Hash32> = branch_a.iter().map(|b| b.header.id()).collect();
    assert_eq!(ids(&old), expected, "the old tip's chain, not the best one");
    let (count, best) = export_chain(store, Vec::new()).unwrap();
    assert_eq!(count, 3);
    let expected: Vec<Hash32> = branch_b.iter().map(|b| b.header.id()).collect();
    assert_eq!(ids(&best), expected);
}
