//! The state a running node shares between its miner threads, its network
//! and its API: the chain, the key, and the signals that say the tip moved
//! or the node should stop.

use super::chain::{now_ms, Chain, SubmitError};
use super::datadir::{write_atomic, DataDir};
use super::mempool::{Mempool, MempoolError, MempoolLimits};
use super::metrics::Metrics;
use super::miner::{Notice, Notices};
use super::status::status_json;
use crate::chain::{Block, Hash32};
use crate::consensus::BlockError;
use crate::store::{StoreError, Stored, Tip};
use crate::tx::{self, Account, CheckedTx, Tx, TxError, TxKind};
use anyhow::Result;
use ed25519_dalek::SigningKey;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use thiserror::Error;

/// Admitted ids the relay may fall behind by before it skips some.
const TX_RELAY_CAPACITY: usize = 1 << 16;

/// Why a transaction was not taken into the pool.
#[derive(Debug, Error)]
pub enum TxSubmitError {
    #[error("invalid transaction: {0}")]
    Invalid(#[from] TxError),
    #[error("not accepted into the pool: {0}")]
    Pool(#[from] MempoolError),
    #[error("invalid transaction: {0}")]
    Untrainable(BlockError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl TxSubmitError {
    /// Whether a peer that relayed the transaction should have known better:
    /// a fee under the minimum, an overspend, a used nonce. A nonce gap or
    /// a pending nonce (`Conflict`) can come of relay order and is not.
    pub fn counts_against_relayer(&self) -> bool {
        match self {
            TxSubmitError::Invalid(_) | TxSubmitError::Untrainable(_) => true,
            TxSubmitError::Pool(e) => matches!(
                e,
                MempoolError::FeeTooLow { .. }
                    | MempoolError::Overspend { .. }
                    | MempoolError::NonceUsed { .. }
            ),
            TxSubmitError::Store(_) => false,
        }
    }

    /// Whether the transaction itself is at fault (as opposed to this node).
    pub fn is_invalid(&self) -> bool {
        match self {
            TxSubmitError::Invalid(_) | TxSubmitError::Untrainable(_) => true,
            TxSubmitError::Pool(e) => {
                !matches!(e, MempoolError::AlreadyKnown { .. } | MempoolError::Full)
            }
            TxSubmitError::Store(_) => false,
        }
    }
}

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
    /// The current tip, for tasks that wait for it to move, and for
    /// async code that must not read the store (it may wait on a write).
    pub tip_watch: tokio::sync::watch::Sender<Tip>,
    /// Where the local API listens while it runs, for the status file.
    pub api_addr: Mutex<Option<SocketAddr>>,
    /// Transactions waiting for a block, valid on the tip's ledger. Its
    /// lock is held while an account is read for an admission, and while
    /// the pool follows a tip change.
    pub mempool: Mutex<Mempool>,
    /// The id of every transaction that enters the pool, for relay.
    pub tx_relay: tokio::sync::broadcast::Sender<Hash32>,
    /// What the miner has said once per job.
    notices: Mutex<Notices>,
    /// Counters for `GET /metrics`, fed by the miner, the network and sync.
    pub metrics: Metrics,
    /// When the node started, for `pouwd_uptime_seconds`.
    pub started: std::time::Instant,
}

impl Shared {
    pub fn new(chain: Chain, dir: DataDir, key: SigningKey) -> Result<Shared> {
        Shared::with_mempool(chain, dir, key, MempoolLimits::default())
    }

    pub fn with_mempool(
        chain: Chain,
        dir: DataDir,
        key: SigningKey,
        limits: MempoolLimits,
    ) -> Result<Shared> {
        let tip = chain.store.tip()?;
        let started = std::time::Instant::now();
        Ok(Shared {
            chain,
            dir,
            key,
            stop: AtomicBool::new(false),
            tip_version: AtomicU64::new(0),
            submit: Mutex::new(()),
            tip_watch: tokio::sync::watch::Sender::new(tip),
            api_addr: Mutex::new(None),
            mempool: Mutex::new(Mempool::new(limits)),
            tx_relay: tokio::sync::broadcast::Sender::new(TX_RELAY_CAPACITY),
            notices: Mutex::new(Notices::default()),
            metrics: Metrics::new(started),
            started,
        })
    }

    /// True the first time the miner gives `notice` about `job`.
    pub fn notice(&self, job: Hash32, notice: Notice) -> bool {
        self.notices
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .first(job, notice)
    }

    pub fn pool(&self) -> MutexGuard<'_, Mempool> {
        self.mempool.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Check a transaction and take it into the pool. Returns its id and
    /// the ids it evicted.
    pub fn submit_tx(&self, tx: Tx) -> Result<(Hash32, Vec<Hash32>), TxSubmitError> {
        // The signature is checked before any lock is taken.
        let checked = tx::check_tx(
            tx,
            &self.chain.store.genesis_hash(),
            &self.chain.params().jobs,
        )?;
        let id = checked.id();
        if self.pool().contains(&id) {
            return Err(MempoolError::AlreadyKnown { id }.into());
        }
        // A job's encoder runs before the pool takes it (outside its lock).
        self.chain
            .check_encoder_jobs(std::slice::from_ref(checked.tx()))
            .map_err(TxSubmitError::Untrainable)?;
        let evicted = {
            let mut pool = self.pool();
            if pool.contains(&id) {
                return Err(MempoolError::AlreadyKnown { id }.into());
            }
            let account = self.chain.store.account(&checked.fields().from)?;
            pool.admit(checked, &account)?
        };
        // Nobody listens without a network: nothing to relay then.
        let _ = self.tx_relay.send(id);
        Ok((id, evicted))
    }

    /// Transactions for a block on `parent`: the pool's best by fee per
    /// byte within the chain's limits, each checked again against the
    /// ledger at `parent` (none when the tip has moved on).
    pub fn block_txs(&self, parent: &Hash32) -> Result<Vec<Tx>, StoreError> {
        let params = self.chain.params();
        let pool = self.pool();
        if pool.is_empty() || self.chain.store.tip()?.hash != *parent {
            return Ok(Vec::new());
        }
        let selected = pool.select(
            params.max_block_tx_bytes as usize,
            params.max_block_txs as usize,
        );
        let mut accounts: HashMap<Hash32, Account> = HashMap::new();
        let mut out = Vec::with_capacity(selected.len());
        for checked in selected {
            let f = checked.fields();
            let sender = match accounts.get(&f.from) {
                Some(a) => *a,
                None => self.chain.store.account(&f.from)?,
            };
            let Ok(after) = tx::spend(&checked, &sender) else {
                continue;
            };
            accounts.insert(f.from, after);
            match &f.kind {
                TxKind::Transfer { to, amount } => {
                    let mut recipient = match accounts.get(to) {
                        Some(a) => *a,
                        None => self.chain.store.account(to)?,
                    };
                    let Some(credited) = recipient.spendable.checked_add(*amount) else {
                        accounts.insert(f.from, sender);
                        continue;
                    };
                    recipient.spendable = credited;
                    accounts.insert(*to, recipient);
                }
                TxKind::SubmitJob(_) => {}
            }
            out.push(checked.into_tx());
        }
        Ok(out)
    }

    /// The pool follows the tip from `old` to `new`: the transactions of
    /// the blocks connected leave it, those of the blocks disconnected come
    /// back when they are still valid.
    fn follow_tip(&self, old: &Hash32, new: &Hash32) -> Result<(), StoreError> {
        let store = &self.chain.store;
        let mut pool = self.pool();
        let meta = |hash: &Hash32| {
            store
                .meta(hash)?
                .ok_or_else(|| StoreError::Corrupt(format!("block {hash} has no metadata")))
        };
        let (mut a, mut b) = ((*old, meta(old)?), (*new, meta(new)?));
        let (mut disconnected, mut connected) = (Vec::new(), Vec::new());
        while a.0 != b.0 {
            if a.1.height >= b.1.height {
                disconnected.push(a.0);
                a = (a.1.parent, meta(&a.1.parent)?);
            } else {
                connected.push(b.0);
                b = (b.1.parent, meta(&b.1.parent)?);
            }
        }
        if pool.is_empty() && disconnected.is_empty() {
            return Ok(());
        }
        let txs_of = |hash: &Hash32| -> Result<Vec<CheckedTx>, StoreError> {
            Ok(store
                .block(hash)?
                .map(|b| b.body.txs)
                .unwrap_or_default()
                .into_iter()
                .map(CheckedTx::of_stored_block)
                .collect())
        };
        let account = |id: &Hash32| store.account(id).unwrap_or_default();
        let mut mined = Vec::new();
        for hash in connected.iter().rev() {
            mined.extend(txs_of(hash)?);
        }
        pool.block_connected(&mined, account);
        if !disconnected.is_empty() {
            let mut back = Vec::new();
            for hash in disconnected.iter().rev() {
                back.extend(txs_of(hash)?);
            }
            pool.reorganised(back, account);
        }
        Ok(())
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
        stop_at.is_some_and(|h| self.tip_watch.borrow().height >= h)
    }

    /// Run `store` with writes serialised; afterwards, if the tip moved,
    /// stop stale mining runs, wake the tip watchers and refresh the status file.
    pub fn write<T>(&self, store: impl FnOnce(&Chain) -> T) -> T {
        self.write_announcing(|chain, _| store(chain))
    }

    /// [`Shared::write`] for a long write: `store` may call the function it
    /// is given to say the tip it has reached so far, as the end does.
    pub fn write_announcing<T>(&self, store: impl FnOnce(&Chain, &mut dyn FnMut()) -> T) -> T {
        let _guard = self.submit.lock().unwrap_or_else(|e| e.into_inner());
        let mut before = self.chain.store.tip().map(|t| t.hash).ok();
        let mut announce = || before = self.tip_moved(before);
        let result = store(&self.chain, &mut announce);
        announce();
        result
    }

    /// What follows a write that moved the tip from `before`; answers the tip now.
    fn tip_moved(&self, before: Option<Hash32>) -> Option<Hash32> {
        let after = self.chain.store.tip().ok();
        if let Some(after) = after.clone().filter(|t| Some(t.hash) != before) {
            self.tip_version.fetch_add(1, Ordering::SeqCst);
            if let Some(before) = before {
                if let Err(e) = self.follow_tip(&before, &after.hash) {
                    tracing::warn!(target: "pouwd", "the mempool cannot follow the tip: {e:#}");
                }
            }
            self.tip_watch.send_replace(after);
            if let Err(e) = self.write_status() {
                tracing::warn!(target: "pouwd", "cannot write the status file: {e:#}");
            }
        }
        after.map(|t| t.hash).or(before)
    }

    /// Validate and store one block.
    pub fn submit(&self, block: Block) -> Result<Stored, SubmitError> {
        self.write(|chain| chain.submit(block, now_ms()))
    }
}
