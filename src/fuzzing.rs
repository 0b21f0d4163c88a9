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
use crate::chain::{Block, Body, Limits};
use crate::node::export::{self, StreamReader};

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
