//! How a command reaches a data dir's chain: through its store when no
//! node runs on it, else through the running node, which holds the store
//! locked: its API when it serves one, or the status file it keeps.

use crate::api::client::get_json;
use crate::node::DataDir;
use crate::store::{Store, StoreError};
use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;

/// How long the wallet commands wait on each step of a node's API.
pub const API_TIMEOUT: Duration = Duration::from_secs(10);

/// A data dir, as a command can reach it.
pub enum Access {
    /// No node runs on it: its store, opened by this command.
    Stopped(Box<Store>),
    /// A node runs on it.
    Running(RunningNode),
}

/// A node running on a data dir, as its status file describes it.
pub struct RunningNode {
    /// The status file: the node's status at its last block, its `pid`,
    /// and `api` while it serves one.
    pub status: Value,
}

/// Open the data dir's store, or find the node that holds it.
pub fn access(dir: &DataDir) -> Result<Access> {
    if !dir.exists() {
        bail!(
            "{} is not a pouwd data dir (no store/ inside)",
            dir.root.display()
        );
    }
    match Store::open_to_read(&dir.store_path()) {
        Ok(store) => Ok(Access::Stopped(Box::new(store))),
        Err(StoreError::Locked { .. }) => Ok(Access::Running(RunningNode {
            status: status_file(dir)?,
        })),
        Err(StoreError::Unfinished { .. }) => Err(dir.empty_store()),
        Err(e) => Err(e.into()),
    }
}

impl RunningNode {
    pub fn pid(&self) -> &Value {
        &self.status["pid"]
    }

    /// Where its API listens, if it serves one.
    pub fn api(&self) -> Result<Option<SocketAddr>> {
        let Some(api) = self.status["api"].as_str() else {
            return Ok(None);
        };
        let addr = api
            .parse()
            .with_context(|| format!("the status file's api {api:?} is not an address"))?;
        Ok(Some(addr))
    }

    /// Where its API listens; an error that says how to serve one when it
    /// serves none. `what` is what the command needs the API for.
    pub fn require_api(&self, dir: &DataDir, what: &str) -> Result<SocketAddr> {
        match self.api()? {
            Some(addr) => Ok(addr),
            None => bail!(
                "a node is running on {} (pid {}) but serves no API, which {what} needs; \
                 stop it and start it again with `pouwd start --data-dir {} --api` \
                 (and its other options)",
                dir.root.display(),
                self.pid(),
                dir.root.display()
            ),
        }
    }

    /// `/status` from the API at `addr`, if the process that answers is
    /// the node that wrote the status file.
    pub fn live_status(&self, addr: SocketAddr, timeout: Duration) -> Result<Value> {
        let status = get_json(addr, "/status", timeout)?;
        if status["pid"] != *self.pid() {
            bail!(
                "it is process {}, not the node's process {}",
                status["pid"],
                self.pid()
            );
        }
        Ok(status)
    }
}

/// The status file a running node keeps in its data dir.
pub fn status_file(dir: &DataDir) -> Result<Value> {
    let path = dir.status_path();
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "a node is running on {} (its store is locked) but its status file {} cannot be read",
            dir.root.display(),
            path.display()
        )
    })?;
    let mut status: Value = serde_json::from_str(&text)
        .with_context(|| format!("status file {} is not JSON", path.display()))?;
    status["running"] = true.into();
    Ok(status)
}
