//! The properties every decoder of untrusted bytes must keep, written once
//! and shared by the fuzz targets in `fuzz/` and the corpus replay test.
//!
//! Each function takes arbitrary bytes, runs them through one decoder and
//! panics if the decoder breaks its contract: a decode that accepts
//! something over its size limit, a decoded value that does not re-encode
//! to exactly the input, or a re-encoding that does not decode back to the
//! same value. Rejecting the input is never a failure; the functions return
//! whether the input decoded, so the replay test can tell a live corpus from
//! one that no longer exercises the success path.
//!
//! This module must never read files, clocks or sockets: the fuzzer calls it
//! millions of times with nothing but a byte slice.

use crate::chain::encoding::{decode_block, decode_header, encode, DecodeError};
use crate::chain::{Block, Body, Hash32, Limits};
use crate::node::export::{self, StreamReader};
use crate::node::mempool::{Mempool, MempoolLimits};
use crate::tx::{self, Account, CheckedTx, Tx, TxFields, TxKind, MAX_ENCODED_TX_BYTES, TX_VERSION};
use ed25519_dalek::SigningKey;
use std::collections::HashMap;

/// Decode `data` as a block and check the round trip. Returns whether it
/// decoded.
pub fn block(data: &[u8]) -> bool {
    let limits = Limits::default();
    let decoded = decode_block(data, &limits);
    if data.len() > limits.max_block_bytes() {
        assert!(
            matches!(decoded, Err(DecodeError::TooLarge { .. })),
            "a block over the size limit must be refused before decoding"
        );
        return false;
    }
    let Ok(block) = decoded else {
        return false;
    };
    check_within_limits(&block, &limits);

    let bytes = block.to_bytes();
    assert!(bytes.len() <= data.len(), "a block re-encodes longer");
    assert_eq!(bytes, data, "a decoded block must re-encode to its input");

    let again = decode_block(&bytes, &limits).expect("a block's own encoding decodes");
    assert_eq!(again.header, block.header);
    assert_same_body(&again.body, &block.body);

    // The header is the block's prefix and decodes on its own to the same.
    let header_bytes = encode(&block.header);
    assert_eq!(header_bytes[..], data[..header_bytes.len()]);
    let header = decode_header(&header_bytes, &limits).expect("a block's header decodes alone");
    assert_eq!(header, block.header);
    true
}

/// Decode `data` as a header and check the round trip. Returns whether it
/// decoded.
pub fn header(data: &[u8]) -> bool {
    let limits = Limits::default();
    let decoded = decode_header(data, &limits);
    if data.len() > limits.max_header_bytes {
        assert!(
            matches!(decoded, Err(DecodeError::TooLarge { .. })),
            "a header over the size limit must be refused before decoding"
        );
        return false;
    }
    let Ok(header) = decoded else {
        return false;
    };

    let bytes = encode(&header);
    assert!(bytes.len() <= data.len(), "a header re-encodes longer");
    assert_eq!(bytes, data, "a decoded header must re-encode to its input");

    let again = decode_header(&bytes, &limits).expect("a header's own encoding decodes");
    assert_eq!(again, header);
    true
}

/// Read `data` as a chain export stream, check that a well-formed stream
/// re-encodes to itself, and put every block record through [`block`].
/// Returns whether the stream was well formed.
pub fn export_stream(data: &[u8]) -> bool {
    // Panics if a well-formed stream does not re-encode to its input.
    if export::roundtrip_stream(data).is_none() {
        return false;
    }
    let (header, mut reader) =
        StreamReader::open(data).expect("a stream that round-trips opens again");
    assert!(header.params_json.len() <= export::MAX_PARAMS_BYTES as usize);
    let record_limit = Limits::default().max_block_bytes();
    let mut records = 0;
    while let Some(record) = reader
        .next_block()
        .expect("a stream that round-trips reads again")
    {
        assert!(
            record.len() <= record_limit,
            "a block record of {} bytes passed the reader's limit of {record_limit}",
            record.len()
        );
        records += 1;
        // The reader only frames records; whether one decodes is up to the
        // block decoder, which must keep its own contract on it.
        block(&record);
    }
    assert_eq!(records, reader.blocks_read());
    true
}

/// Read `data` as a backup file: its entries strictly, then the export
/// stream after them through [`export_stream`]. Entries that decode must
/// re-encode to exactly the bytes they were read from. Returns whether
/// the entries decoded.
pub fn backup(data: &[u8]) -> bool {
    use crate::node::backup::{read_entries, task_entry, write_entries, CHAIN_ENTRY, KEY_ENTRY};
    let mut rest = data;
    let Ok(backup) = read_entries(&mut rest) else {
        return false;
    };
    let consumed = &data[..data.len() - rest.len()];
    let mut entries = vec![
        (KEY_ENTRY.to_string(), &backup.key[..]),
        (CHAIN_ENTRY.to_string(), &backup.chain_json[..]),
    ];
    for (name, bytes) in &backup.files {
        entries.push((task_entry(name), &bytes[..]));
    }
    let mut again = Vec::new();
    write_entries(&mut again, &entries).expect("writing to memory");
    assert_eq!(
        again, consumed,
        "backup entries must re-encode to their bytes"
    );
    export_stream(rest);
    true
}

/// Decode `data` as a transaction, check the round trip, and run the
/// stateless checks (they must refuse, never panic). Returns whether it
/// decoded.
pub fn tx(data: &[u8]) -> bool {
    let decoded = Tx::from_bytes(data);
    if data.len() > MAX_ENCODED_TX_BYTES {
        assert!(
            matches!(decoded, Err(DecodeError::TooLarge { .. })),
            "a transaction over the size limit must be refused before decoding"
        );
        return false;
    }
    let Ok(decoded) = decoded else {
        return false;
    };
    let bytes = decoded.to_bytes();
    assert_eq!(
        bytes, data,
        "a decoded transaction must re-encode to its input"
    );
    let again = Tx::from_bytes(&bytes).expect("a transaction's own encoding decodes");
    assert_eq!(again, decoded);
    // The chain field is whatever the input says: check it against its own
    // chain, so the signature check is reached too.
    let chain = decoded.fields.chain;
    if let Ok(checked) = tx::check_tx(decoded, &chain, &tx::JobLimits::default()) {
        assert_eq!(checked.id(), checked.tx().id());
        assert!(checked.fields().cost().is_some());
    }
    true
}

/// Drive a mempool with the operations `data` spells out, five bytes each:
/// admissions of transfers from eight senders (with chosen nonce offsets,
/// fees and amounts), blocks that mine the best of the pool, and reorgs
/// that put them back. After every step the pool must keep its bounds and
/// its invariants: consecutive nonces per sender from the account's next
/// one, covered by the spendable balance, and byte accounting that adds up.
/// Returns how many transactions were admitted.
pub fn mempool(data: &[u8]) -> usize {
    const GENESIS: Hash32 = Hash32([0x42; 32]);
    let keys: Vec<SigningKey> = (1..=8u8)
        .map(|i| SigningKey::from_bytes(&[i; 32]))
        .collect();
    let ids: Vec<Hash32> = keys
        .iter()
        .map(|k| Hash32(k.verifying_key().to_bytes()))
        .collect();
    let limits = MempoolLimits {
        max_bytes: 8 * 170,
        max_count: 6,
        min_fee_per_kb: 500,
    };
    let mut pool = Mempool::new(limits.clone());
    let mut accounts: HashMap<Hash32, Account> = ids
        .iter()
        .map(|id| {
            let account = Account {
                spendable: 2_000,
                immature: 0,
                nonce: 0,
            };
            (*id, account)
        })
        .collect();
    let mut mined: Vec<Vec<CheckedTx>> = Vec::new();
    let mut admitted = 0;
    for op in data.chunks_exact(5) {
        let sender = usize::from(op[1] % 8);
        match op[0] % 4 {
            0 | 1 => {
                let account = accounts[&ids[sender]];
                let base = pool.next_nonce(&ids[sender], &account);
                let nonce = (base + u64::from(op[2] % 4)).saturating_sub(1);
                let fields = TxFields {
                    version: TX_VERSION,
                    chain: GENESIS,
                    from: ids[sender],
                    nonce,
                    fee: u64::from(op[3]) * 4,
                    kind: TxKind::Transfer {
                        to: ids[usize::from(op[4] % 8)],
                        amount: 1 + u64::from(op[4]) * 3,
                    },
                };
                let checked = tx::check_tx(
                    fields.sign(&keys[sender]),
                    &GENESIS,
                    &tx::JobLimits::default(),
                )
                .expect("a transfer signed by its sender is valid");
                if pool.admit(checked, &account).is_ok() {
                    admitted += 1;
                }
            }
            2 => {
                // Mine a block of the pool's best, as the ledger would apply it.
                let block = pool.select(3 * 170, 3);
                for t in &block {
                    let f = t.fields();
                    let sender = accounts.get_mut(&f.from).expect("a known sender");
                    *sender = tx::spend(t, sender).expect("the pool offers only what applies");
                    match f.kind {
                        TxKind::Transfer { to, amount } => {
                            let recipient = accounts.get_mut(&to).expect("a known recipient");
                            recipient.spendable += amount;
                        }
                        TxKind::SubmitJob(_) => unreachable!("the fuzz target makes transfers"),
                    }
                }
                pool.block_connected(&block, |id| accounts[id]);
                mined.push(block);
            }
            _ => {
                // Disconnect the last block.
                let Some(block) = mined.pop() else { continue };
                for t in block.iter().rev() {
                    let f = t.fields();
                    match f.kind {
                        TxKind::Transfer { to, amount } => {
                            let recipient = accounts.get_mut(&to).expect("a known recipient");
                            recipient.spendable -= amount;
                        }
                        TxKind::SubmitJob(_) => unreachable!("the fuzz target makes transfers"),
                    }
                    let sender = accounts.get_mut(&f.from).expect("a known sender");
                    sender.spendable += f.cost().expect("no overflow");
                    sender.nonce -= 1;
                }
                pool.reorganised(block, |id| accounts[id]);
            }
        }
        check_pool(&pool, &limits, &accounts);
    }
    admitted
}

fn check_pool(pool: &Mempool, limits: &MempoolLimits, accounts: &HashMap<Hash32, Account>) {
    assert!(
        pool.len() <= limits.max_count,
        "{} transactions",
        pool.len()
    );
    assert!(pool.bytes() <= limits.max_bytes, "{} bytes", pool.bytes());
    if let Err(e) = pool.check_indexes() {
        panic!("the pool's indexes disagree: {e}");
    }
    let bytes: usize = pool.iter().map(|t| t.tx().to_bytes().len()).sum();
    assert_eq!(bytes, pool.bytes());
    let mut chains: HashMap<Hash32, Vec<&CheckedTx>> = HashMap::new();
    for t in pool.iter() {
        chains.entry(t.fields().from).or_default().push(t);
    }
    for (sender, mut chain) in chains {
        chain.sort_by_key(|t| t.fields().nonce);
        let account = accounts[&sender];
        let mut cost = 0u128;
        for (i, t) in chain.iter().enumerate() {
            assert_eq!(t.fields().nonce, account.nonce + i as u64, "a gap");
            cost += u128::from(t.fields().cost().expect("no overflow"));
        }
        assert!(cost <= u128::from(account.spendable), "overspent");
    }
}

/// Every vector in a decoded block is within its bound.
fn check_within_limits(block: &Block, limits: &Limits) {
    let body = &block.body;
    assert!(body.params.len() <= limits.max_params);
    assert!(body.openings.len() <= limits.max_openings);
    for opening in &body.openings {
        assert!(opening.params.len() <= limits.max_params);
        assert!(opening.proof.len() <= limits.max_proof_len);
    }
}

/// Bodies are equal bit for bit. `PartialEq` on `f64` would call two NaNs
/// different, yet a NaN is a valid parameter as far as decoding goes.
fn assert_same_body(left: &Body, right: &Body) {
    let bits = |params: &[f64]| params.iter().map(|p| p.to_bits()).collect::<Vec<u64>>();
    assert_eq!(bits(&left.params), bits(&right.params));
    assert_eq!(left.openings.len(), right.openings.len());
    for (l, r) in left.openings.iter().zip(&right.openings) {
        assert_eq!(l.index, r.index);
        assert_eq!(bits(&l.params), bits(&r.params));
        assert_eq!(l.proof, r.proof);
    }
}

/// Read `data` as a task's CSV and prepare it with its first column as
/// the target, checking the column kinds and the one-hot encoding: numeric
/// columns hold finite numbers, a text column's first text cell does not
/// parse, categories are distinct, sorted and within the bound, and every
/// prepared value is finite. Returns whether the CSV was read.
pub fn dataset(data: &[u8]) -> bool {
    use crate::dataset::{Column, CsvDataset, Prepared};
    const MAX_CATEGORIES: usize = 8;
    let csv = match CsvDataset::from_bytes("fuzz.csv", data) {
        Ok(csv) => csv,
        Err(e) => {
            assert!(e.to_string().starts_with("fuzz.csv: "), "{e}");
            return false;
        }
    };
    assert_eq!(csv.data.len(), csv.columns.len());
    assert!(csv.rows() > 0);
    for column in &csv.data {
        match column {
            Column::Numeric(values) => {
                assert_eq!(values.len(), csv.rows());
                assert!(values.iter().all(|v| v.is_finite()));
            }
            Column::Text { cells, first } => {
                assert_eq!(cells.len(), csv.rows());
                assert!(first.value.parse::<f64>().is_err());
                assert!(cells.contains(&first.value));
            }
        }
    }
    let Some(target) = csv.columns.first() else {
        return true;
    };
    let prepared = match Prepared::new(&csv, target, None, 2, MAX_CATEGORIES) {
        Ok(prepared) => prepared,
        Err(e) => {
            assert!(e.to_string().starts_with("fuzz.csv"), "{e}");
            return true;
        }
    };
    let d = prepared.features();
    assert_eq!(prepared.feature_sources.len(), d);
    assert_eq!(prepared.feature_scaling.len(), d);
    for (name, source) in prepared.feature_names.iter().zip(&prepared.feature_sources) {
        assert_eq!(*name, source.name());
    }
    for pair in prepared.feature_sources.windows(2) {
        if let (Some(a), Some(b)) = (&pair[0].category, &pair[1].category) {
            if pair[0].column == pair[1].column {
                assert!(a < b, "categories are distinct and sorted");
            }
        }
    }
    let raw = csv
        .encode(&prepared.feature_sources)
        .expect("a prepared task's sources encode its own file");
    assert_eq!(raw.len(), csv.rows() * d);
    for (j, source) in prepared.feature_sources.iter().enumerate() {
        if source.category.is_some() {
            assert!(raw.iter().skip(j).step_by(d).all(|&v| v == 0.0 || v == 1.0));
        }
    }
    assert_eq!(prepared.train_x.len(), prepared.train_rows() * d);
    assert_eq!(prepared.holdout_x.len(), prepared.holdout_rows() * d);
    for v in prepared.train_x.iter().chain(&prepared.holdout_x) {
        assert!(v.is_finite());
    }
    true
}

/// Decode `data` as a peer's request and as a response (the bytes after a
/// frame's length), as strictly as the network does: what decodes must
/// re-encode to the same bytes, a request must be within its bound, and
/// the checks a node runs on what it decoded (a request's bounds, a file
/// manifest's consistency, a chunk against its manifest) must refuse,
/// never panic. Returns whether either decoded.
pub fn wire(data: &[u8]) -> bool {
    use crate::p2p::files::Manifest;
    use crate::p2p::wire::{self, Response};
    let request = wire::decode_request(data);
    if let Ok(request) = &request {
        assert!(data.len() <= wire::MAX_REQUEST_BYTES);
        assert_eq!(
            &wire::frame(request)[4..],
            data,
            "a decoded request must re-encode to its input"
        );
        let _ = request.check();
        assert!(request.response_limit() <= wire::MAX_MESSAGE_BYTES);
    }
    let response = wire::decode_response(data, wire::MAX_MESSAGE_BYTES);
    if let Ok(response) = &response {
        assert_eq!(
            &wire::frame(response)[4..],
            data,
            "a decoded response must re-encode to its input"
        );
        if let Response::File { size, chunk_hashes } = response {
            let manifest = Manifest {
                size: *size,
                chunk_hashes: chunk_hashes.clone(),
            };
            if manifest.check().is_ok() {
                // A consistent manifest spans its file in whole chunks.
                let mut end = 0;
                for index in 0..manifest.chunk_hashes.len() as u32 {
                    let (offset, len) = manifest.chunk_span(index).expect("a listed chunk");
                    assert_eq!(offset, end, "chunks follow one another");
                    assert!(len > 0 && len <= u64::from(wire::CHUNK_BYTES));
                    end = offset + len;
                }
                assert_eq!(end, manifest.size);
                let _ = manifest.check_chunk(0, data);
            }
        }
    }
    request.is_ok() || response.is_ok()
}

/// A training file's manifest, made from `data`: its first 8 bytes are
/// the size (little-endian), the next 4 a chunk index, then 32-byte chunk
/// hashes, and what is left over a chunk's bytes. Whatever the manifest
/// says, checking it, its chunk spans and a chunk against it must refuse,
/// never panic; a manifest that passes `check` must span its size in
/// whole chunks. And the manifest made of `data` itself, as a served
/// file's, must pass every check with its own chunks and refuse a changed
/// one. Returns whether the manifest from the bytes passed `check`.
pub fn manifest(data: &[u8]) -> bool {
    use crate::p2p::files::{chunk_count, Manifest};
    use crate::p2p::wire::CHUNK_BYTES;
    let field = |from: usize, len: usize| {
        let mut bytes = [0u8; 8];
        let end = data.len().min(from + len);
        if from < end {
            bytes[..end - from].copy_from_slice(&data[from..end]);
        }
        u64::from_le_bytes(bytes)
    };
    let size = field(0, 8);
    let index = field(8, 4) as u32;
    let rest = data.get(12..).unwrap_or_default();
    let hashes = rest.chunks_exact(32);
    let chunk = hashes.remainder();
    let manifest = Manifest {
        size,
        chunk_hashes: hashes
            .map(|h| crate::chain::Hash32(h.try_into().expect("32 bytes")))
            .collect(),
    };
    let checked = manifest.check().is_ok();
    let _ = manifest.chunk_span(index);
    let _ = manifest.check_chunk(index, chunk);
    for i in 0..manifest.chunk_hashes.len() as u32 + 1 {
        let _ = manifest.chunk_span(i);
    }
    if checked {
        assert_eq!(manifest.chunk_hashes.len() as u64, chunk_count(size));
        let mut end = 0;
        for i in 0..manifest.chunk_hashes.len() as u32 {
            let (offset, len) = manifest.chunk_span(i).expect("a listed chunk");
            assert_eq!(offset, end, "chunks follow one another");
            assert!(len > 0 && len <= u64::from(CHUNK_BYTES));
            end = offset + len;
        }
        assert_eq!(end, size, "the chunks cover the file");
        assert!(manifest
            .chunk_span(manifest.chunk_hashes.len() as u32)
            .is_err());
    }
    // The manifest of a file made of these bytes.
    let served = Manifest::of(data);
    assert!(
        served.check().is_ok(),
        "a file's own manifest is consistent"
    );
    for (i, bytes) in data.chunks(CHUNK_BYTES as usize).enumerate() {
        let i = i as u32;
        assert!(served.check_chunk(i, bytes).is_ok(), "chunk {i} is its own");
        let mut changed = bytes.to_vec();
        changed[0] ^= 1;
        assert!(
            served.check_chunk(i, &changed).is_err(),
            "a changed chunk {i}"
        );
        assert!(
            served.check_chunk(i, &bytes[1..]).is_err(),
            "a short chunk {i}"
        );
    }
    checked
}
