//! The integration tests: one binary, one module per area, helpers in support/.
#![allow(clippy::unwrap_used)]

mod api;
mod backup;
mod cli;
mod consensus;
mod crash;
mod fuzz_corpus;
mod job_rules;
mod jobs;
mod logs;
mod metrics;
mod onnx;
mod onnx_chain;
mod onnx_linear;
mod operator;
mod p2p;
mod p2p_files;
mod reorg;
mod support;
mod transactions;
mod tx_relay;
mod wallet;
