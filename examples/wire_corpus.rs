//! Write the seed corpus of the `wire_decode` fuzz target
//! (fuzz/corpus/wire_decode/): one file per kind of request and response,
//! as a node frames them, without the length prefix.
//!
//! `cargo run --example wire_corpus`

use pouwd::chain::Hash32;
use pouwd::p2p::files::Manifest;
use pouwd::p2p::wire::{frame, Hello, Request, Response, PROTOCOL_VERSION};
use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/wire_decode");
    std::fs::create_dir_all(&dir)?;
    let hello = Hello {
        version: PROTOCOL_VERSION,
        genesis: Hash32([0x35; 32]),
        best_height: 1234,
        best_hash: Hash32([0x11; 32]),
        best_work: Hash32([0x01; 32]),
        listen_port: Some(5000),
    };
    let data: Vec<u8> = (0..150_000u32).map(|i| (i % 251) as u8).collect();
    let manifest = Manifest::of(&data);
    let requests = vec![
        ("request-hello", Request::Hello(hello.clone())),
        (
            "request-announce",
            Request::Announce {
                hash: Hash32([2; 32]),
                height: 77,
                work: Hash32([3; 32]),
            },
        ),
        (
            "request-get-hashes",
            Request::GetHashes {
                locator: vec![Hash32([4; 32]), Hash32([5; 32])],
                max: 2000,
            },
        ),
        (
            "request-get-blocks",
            Request::GetBlocks(vec![Hash32([6; 32]); 3]),
        ),
        ("request-get-addrs", Request::GetAddrs),
        (
            "request-get-file",
            Request::GetFile {
                blake3: Hash32([7; 32]),
            },
        ),
        (
            "request-get-chunk",
            Request::GetChunk {
                blake3: Hash32([7; 32]),
                index: 2,
            },
        ),
        (
            "request-announce-txs",
            Request::AnnounceTxs(vec![Hash32([8; 32]); 2]),
        ),
        ("request-get-txs", Request::GetTxs(vec![Hash32([9; 32])])),
    ];
    for (name, request) in requests {
        std::fs::write(dir.join(name), &frame(&request)[4..])?;
    }
    let responses = vec![
        ("response-hello", Response::Hello(hello)),
        ("response-refused", Response::Refused("rate limited".into())),
        ("response-ok", Response::Ok),
        (
            "response-hashes",
            Response::Hashes(vec![Hash32([10; 32]); 4]),
        ),
        (
            "response-blocks",
            Response::Blocks(vec![vec![1, 2, 3], vec![4; 40]]),
        ),
        (
            "response-addrs",
            Response::Addrs(vec!["127.0.0.1:5000".into()]),
        ),
        (
            "response-file",
            Response::File {
                size: manifest.size,
                chunk_hashes: manifest.chunk_hashes.clone(),
            },
        ),
        (
            "response-file-inconsistent",
            Response::File {
                size: 1,
                chunk_hashes: manifest.chunk_hashes,
            },
        ),
        ("response-chunk", Response::Chunk(data[..4096].to_vec())),
        ("response-not-found", Response::NotFound),
        ("response-txs", Response::Txs(vec![vec![0; 100]])),
    ];
    for (name, response) in responses {
        std::fs::write(dir.join(name), &frame(&response)[4..])?;
    }
    Ok(())
}
