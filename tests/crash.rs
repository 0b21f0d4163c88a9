//! Crash safety: SIGKILL the mining node at random moments, many times.
//! After every restart the store must open, its tip must head a chain that
//! passes full validation, and every block the node reported stored must
//! still be there.

use crate::support::node::{dir_arg, Mined, Node};
use pouwd::node::export::export_chain;
use pouwd::node::import::import_chain;
use pouwd::node::{Chain, ChainSource, DataDir};
use pouwd::store::Store;
use std::path::Path;
use std::time::{Duration, Instant};

/// A small deterministic generator; the seed is printed so a failure replays.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, bound: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % bound
    }
}

/// Open the store, check every reported block, and fully validate the best
/// chain by importing it into a fresh data dir. Returns the tip height.
fn check_store(dir: &Path, reported: &[Mined], scratch: &Path) -> u64 {
    let store = Store::open(&dir.join("store")).expect("the store opens after SIGKILL");
    for block in reported {
        let hash = pouwd::chain::Hash32::from_hex(&block.hash).unwrap();
        assert!(
            store.contains(&hash).unwrap(),
            "block {} at height {} was reported stored but is gone",
            block.hash,
            block.height
        );
        assert_eq!(
            store.hash_at(block.height).unwrap(),
            Some(hash),
            "a single miner never reorgs"
        );
    }
    let tip = store.tip().unwrap();
    let (count, stream) = export_chain(&store, Vec::new()).unwrap();
    assert_eq!(count, tip.height);
    drop(store);

    let fresh = DataDir::new(scratch);
    let _ = std::fs::remove_dir_all(scratch);
    let store = fresh.create(&ChainSource::from_arg("regtest")).unwrap();
    let dataset = fresh.load_task_files(store.params()).unwrap();
    let chain = Chain::new(store, &dataset, &pouwd::model::onnx::OrtSetup::default()).unwrap();
    let (report, error) = import_chain(
        &chain,
        stream.as_slice(),
        2,
        pouwd::node::now_ms(),
        |_, _| {},
    );
    assert!(error.is_none(), "the tip heads an invalid chain: {error:?}");
    assert_eq!(report.stored, tip.height);
    assert_eq!(chain.store.tip().unwrap().hash, tip.hash);
    tip.height
}

#[test]
fn sigkill_at_random_moments_loses_no_reported_block() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    let d = dir_arg(&dir);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    println!("crash test seed {seed}");
    let mut rng = Lcg(seed);
    let mut reported: Vec<Mined> = Vec::new();
    let mut last_height = 0;
    let rounds = 15;
    for round in 0..rounds {
        let mut node = Node::start(&["--data-dir", &d, "--chain", "regtest", "--mine"]);
        if round == 0 {
            // The first start must get far enough to create the data dir.
            node.wait_for(Duration::from_secs(30), |l| l.starts_with("mined "));
        }
        let started = Instant::now();
        let delay = Duration::from_millis(20 + rng.next(400));
        while started.elapsed() < delay {
            std::thread::sleep(Duration::from_millis(5));
        }
        node.signal("KILL");
        assert_eq!(
            node.wait(Duration::from_secs(10)),
            None,
            "killed by the signal"
        );
        let mined = node.mined();
        assert!(
            node.stderr().is_empty() || !node.stderr().contains("panicked"),
            "{}",
            node.stderr()
        );
        reported.extend(mined);
        let height = check_store(&dir, &reported, &tmp.path().join("verify"));
        assert!(height >= last_height, "the tip never goes back");
        assert!(
            reported.iter().all(|m| m.height <= height),
            "the tip is at least as high as every reported block"
        );
        last_height = height;
    }
    assert!(
        last_height > 0 && !reported.is_empty(),
        "the node made progress"
    );
    println!(
        "{rounds} kills, {} blocks reported, tip at {last_height}",
        reported.len()
    );
}
