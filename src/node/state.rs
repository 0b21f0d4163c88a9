//! The state a running node shares between its miner threads, its network
//! and its API: the chain, the key, and the signals that say the tip moved
//! or the node should stop.

use super::chain::{now_ms, Chain, SubmitError};
use super::datadir::{write_atomic, DataDir};
use super::status::status_json;
use crate::chain::{Block, Hash32};
use crate::store::Stored;
use anyhow::Result;
use ed25519_dalek::SigningKey;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

/// State shared by the node's threads and tasks.
pub struct Shared {
    pub chain: Chain,
    pub dir: DataDir,
    pub key: SigningKey,
    pub stop: AtomicBool,
    /// Bumped whenever the tip changes, so mining runs on an old tip stop.
    pub tip_version: AtomicU64,
    /// Serialises writes to the chain, so log lines follow the store's order.
    pub submit: Mutex<()>,
    /// The current tip, for tasks that wait for it to move.
    pub tip_watch: tokio::sync::watch::Sender<Hash32>,
    /// Where the local API listens while it runs, for the status file.
    pub api_addr: Mutex<Option<SocketAddr>>,
}

impl Shared {
    pub fn new(chain: Chain, dir: DataDir, key: SigningKey) -> Result<Shared> {
        let tip = chain.store.tip()?.hash;
        Ok(Shared {
            chain,
            dir,
            key,
            stop: AtomicBool::new(false),
            tip_version: AtomicU64::new(0),
            submit: Mutex::new(()),
            tip_watch: tokio::sync::watch::Sender::new(tip),
            api_addr: Mutex::new(None),
        })
    }

    pub fn miner_id(&self) -> Hash32 {
        Hash32(self.key.verifying_key().to_bytes())
    }

    /// Record where the local API listens (`None` once it stops), for the
    /// status file.
    pub fn set_api_addr(&self, addr: Option<SocketAddr>) {
        *self.api_addr.lock().unwrap_or_else(|e| e.into_inner()) = addr;
    }

    /// Write DIR/status.json for `pouwd status` to read while the store is locked.
    pub fn write_status(&self) -> Result<()> {
        let mut status = status_json(&self.chain.store, &self.miner_id())?;
        status["pid"] = std::process::id().into();
        let api = *self.api_addr.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(api) = api {
            status["api"] = api.to_string().into();
        }
        write_atomic(
            &self.dir.status_path(),
            serde_json::to_string_pretty(&status)?.as_bytes(),
        )
    }

    pub fn tip_reached(&self, stop_at: Option<u64>) -> bool {
        stop_at.is_some_and(|h| self.chain.store.tip().is_ok_and(|t| t.height >= h))
    }

    /// Run `store` with writes serialised; afterwards, if the tip moved,
    /// stop stale mining runs, wake the tip watchers and refresh the status file.
    pub fn write<T>(&self, store: impl FnOnce(&Chain) -> T) -> T {
        let _guard = self.submit.lock().unwrap_or_else(|e| e.into_inner());
        let before = self.chain.store.tip().map(|t| t.hash).ok();
        let result = store(&self.chain);
        let after = self.chain.store.tip().map(|t| t.hash).ok();
        if let (Some(after), true) = (after, after != before) {
            self.tip_version.fetch_add(1, Ordering::SeqCst);
            self.tip_watch.send_replace(after);
            if let Err(e) = self.write_status() {
                eprintln!("warning: cannot write the status file: {e:#}");
            }
        }
        result
    }

    /// Validate and store one block.
    pub fn submit(&self, block: Block) -> Result<Stored, SubmitError> {
        self.write(|chain| chain.submit(block, now_ms()))
    }
}
