//! # pouwd — a proof-of-useful-work blockchain full node
//!
//! Miners train a machine-learning model instead of burning hashes. Every
//! block carries the model as it stands after its miner's training, and
//! every node checks that training by re-running a few randomly chosen
//! segments of it. Blocks also carry signed transfers between accounts
//! and training jobs that users pay for, which the chain trains one after
//! another (protocol 2). The byte-exact formats and rules are in `schema/`, and
//! `schema/decisions.md` says why they are as they are.
//!
//! ## Map of the modules
//!
//! The consensus core is pure (no I/O, no clock): [`chain`] (blocks,
//! headers, canonical encoding), [`consensus`] (parameters and rules),
//! [`work`] (training steps, lottery, checkpoints), [`tx`] (transactions),
//! [`ledger`] (accounts, jobs, the schedule and their undo), [`model`]
//! (the linear and MLP heads) and [`dataset`]. Around
//! it: [`store`] (sled), [`node`] (the running node, its mempool, metrics,
//! import, export and the backup file), [`p2p`] (the peer network and
//! transaction relay), [`api`] (the local JSON API, `/metrics` and the
//! dashboard page; writing and the chain export need the data dir's
//! cookie), [`cli`] (the `pouwd` commands), and [`logs`] and [`progress`]
//! (what a node and its commands say on stderr).

pub mod api;
pub mod chain;
pub mod cli;
pub mod consensus;
pub mod dataset;
pub mod fuzzing;
pub mod ledger;
pub mod logs;
pub mod model;
pub mod node;
pub mod offload;
pub mod p2p;
pub mod progress;
pub mod store;
pub mod tx;
pub mod work;

/// Log one line of the node's own (target `pouwd`) at info, on stderr
/// like every log line ([`logs`]).
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {
        ::tracing::info!(target: "pouwd", $($arg)*)
    };
}
