//! Replays the committed fuzz seed corpus (fuzz/corpus/<target>/) through
//! the same checks the fuzz targets run, so every decoder's round trip is
//! exercised on each test run without cargo-fuzz or a nightly compiler.

use std::fs;
use std::path::PathBuf;

/// Run every file of one target's corpus through `check`; return how many
/// decoded. Fails if the corpus is missing or empty.
fn replay(target: &str, mut check: impl FnMut(&[u8]) -> bool) -> usize {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let entries = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read the corpus {}: {e}", dir.display()));
    let mut files = 0;
    let mut decoded = 0;
    for entry in entries {
        let path = entry.expect("a corpus directory entry").path();
        let data =
            fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        files += 1;
        if check(&data) {
            decoded += 1;
        }
    }
    assert!(files > 0, "the corpus {} is empty", dir.display());
    decoded
}

#[test]
fn block_corpus_round_trips() {
    let decoded = replay("block_decode", pouwd::fuzzing::block);
    assert!(decoded > 0, "no block in the corpus decodes");
}

#[test]
fn header_corpus_round_trips() {
    let decoded = replay("header_decode", pouwd::fuzzing::header);
    assert!(decoded > 0, "no header in the corpus decodes");
}

#[test]
fn export_stream_corpus_round_trips() {
    let decoded = replay("export_stream", pouwd::fuzzing::export_stream);
    assert!(decoded > 0, "no stream in the corpus is well formed");
}

#[test]
fn backup_corpus_round_trips() {
    let decoded = replay("backup_file", pouwd::fuzzing::backup);
    assert!(decoded > 0, "no backup in the corpus decodes");
}

#[test]
fn tx_corpus_round_trips() {
    let decoded = replay("tx_decode", pouwd::fuzzing::tx);
    assert!(decoded > 0, "no transaction in the corpus decodes");
}

#[test]
fn mempool_corpus_keeps_the_pool_invariants() {
    let mut admitted = 0;
    replay("mempool_admit", |data| {
        admitted += pouwd::fuzzing::mempool(data);
        true
    });
    assert!(admitted > 0, "no run of the corpus admits a transaction");
}

#[test]
fn dataset_corpus_keeps_the_column_and_encoding_rules() {
    let read = replay("dataset_decode", pouwd::fuzzing::dataset);
    assert!(read > 0, "no CSV in the corpus is read");
}

#[test]
fn wire_corpus_round_trips_and_keeps_the_manifest_rules() {
    let decoded = replay("wire_decode", pouwd::fuzzing::wire);
    assert!(decoded > 0, "no message in the corpus decodes");
}

#[test]
fn manifest_corpus_keeps_the_chunk_rules() {
    let checked = replay("manifest_check", pouwd::fuzzing::manifest);
    assert!(checked > 0, "no manifest in the corpus passes its check");
}
