//! The running node: its data dir, its chain, the miner threads, import
//! and export of chains, and the backup file.
//!
//! This is where time, files and threads live; every rule it applies comes
//! from `consensus`, every byte it stores goes through `store`.

pub mod backup;
pub mod chain;
pub mod datadir;
pub mod export;
pub mod import;
pub mod mempool;
pub mod metrics;
pub mod miner;
pub mod state;
pub mod status;
pub mod views;

pub use chain::{now_ms, Chain, SubmitError};
pub use datadir::{ChainSource, DataDir};
