//! The ledger: every account's state as the chain derives it, block by
//! block, and the undo record that takes a block back off exactly.
//!
//! Pure: blocks' effects go in as (height, miner, reward, checked
//! transactions), and the state they change is behind [`LedgerState`]: a
//! map in memory ([`Ledger`]), or the store's tables, which keep each
//! best-chain block's [`Undo`] next to it. Nothing is read from a clock. A block's
//! reward and fees are immature until the block is `maturity` blocks deep
//! (the chain's `validation_window`), then spendable. Connecting a block
//! and then disconnecting it with its [`Undo`] gives back the state before
//! it, bit for bit, so a reorg leaves the same state as a replay of the
//! new branch from genesis.

pub mod jobs;

use crate::chain::Hash32;
use crate::tx::{spend, Account, CheckedTx, TxError, TxKind};
pub use jobs::{BlockTraining, JobState, JobStatus, Schedule, GENESIS_JOB};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum LedgerError {
    #[error("transaction {index} ({id}): {error}")]
    Tx {
        index: usize,
        id: Hash32,
        error: TxError,
    },
    #[error("transaction {index} ({id}) appears twice in the block")]
    Duplicate { index: usize, id: Hash32 },
    #[error("block at height {found} does not follow the ledger's height {tip}")]
    WrongHeight { tip: u64, found: u64 },
    #[error("crediting {account} overflows its balance")]
    BalanceOverflow { account: Hash32 },
    #[error("the undo record is for height {found}, the ledger is at {tip}")]
    WrongUndo { tip: u64, found: u64 },
    #[error("the credit of block {height}, which matures now, is unknown")]
    MissingCredit { height: u64 },
    #[error("the block trains job {found}, but the job scheduled after its parent is {expected}")]
    WrongJob { expected: Hash32, found: Hash32 },
    #[error("the block says it is block {found} of job {job}, but the job has trained {expected} blocks")]
    WrongJobBlock {
        job: Hash32,
        expected: u64,
        found: u64,
    },
    #[error("job {job} is scheduled but its state is unknown")]
    MissingJob { job: Hash32 },
}

/// What one block credits its miner: the reward and the fees, immature
/// until the block is `maturity` deep.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credit {
    pub miner: Hash32,
    pub amount: u64,
}

/// Everything needed to disconnect one block, and the block's credit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Undo {
    pub height: u64,
    pub credit: Credit,
    /// Each account the block touched, as it was before (`None`: absent),
    /// by ascending id.
    accounts: Vec<(Hash32, Option<Account>)>,
    /// Each job the block touched, as it was before, by ascending id.
    jobs: Vec<(Hash32, Option<JobState>)>,
    /// The schedule before the block.
    schedule: Schedule,
}

/// Where a ledger's state lives: a map in memory, or the store's tables.
/// `E` is the error its reads and writes can fail with.
pub trait LedgerState<E: From<LedgerError>> {
    /// An account's state; `None` for one never seen.
    fn get_account(&self, id: &Hash32) -> Result<Option<Account>, E>;
    /// Set an account, or remove it with `None`.
    fn set_account(&mut self, id: Hash32, account: Option<Account>) -> Result<(), E>;
    /// The credit of the chain's block at `height` (1 or more).
    fn credit_at(&self, height: u64) -> Result<Option<Credit>, E>;
    /// A job's state; `None` for one never included.
    fn get_job(&self, id: &Hash32) -> Result<Option<JobState>, E>;
    /// Set a job, or remove it with `None`; the queue follows its status.
    fn set_job(&mut self, id: Hash32, job: Option<JobState>) -> Result<(), E>;
    /// The queued job that becomes active next: the highest pay per
    /// block, then the first included.
    fn queue_head(&self) -> Result<Option<Hash32>, E>;
    fn get_schedule(&self) -> Result<Schedule, E>;
    fn set_schedule(&mut self, schedule: Schedule) -> Result<(), E>;
}

/// The job a child of the ledger's block trains: the active one, else the
/// head of the queue, else the genesis task.
pub fn scheduled_job<E: From<LedgerError>>(state: &impl LedgerState<E>) -> Result<Hash32, E> {
    let schedule = state.get_schedule()?;
    Ok(match schedule.active {
        Some(id) => id,
        None => state.queue_head()?.unwrap_or(GENESIS_JOB),
    })
}

/// What connecting a block touched, as it was before.
#[derive(Default)]
struct Before {
    accounts: BTreeMap<Hash32, Option<Account>>,
    jobs: BTreeMap<Hash32, Option<JobState>>,
}

/// Connect the block at `height` to `state`, the ledger at its parent:
/// the job it trains (`training`, which must be the scheduled one) pays
/// its miner and may end with a refund, then its transactions in order,
/// then `reward`, the fees and the job's pay go to `miner` as immature,
/// then the block `maturity` below matures. On an error the state is left
/// as it was.
pub fn connect_block<E: From<LedgerError>>(
    state: &mut impl LedgerState<E>,
    maturity: u64,
    height: u64,
    miner: &Hash32,
    reward: u64,
    txs: &[CheckedTx],
    training: &BlockTraining,
) -> Result<Undo, E> {
    let mut before = Before::default();
    let schedule = state.get_schedule()?;
    match apply(
        state,
        maturity,
        height,
        miner,
        reward,
        txs,
        training,
        schedule,
        &mut before,
    ) {
        Ok(credit) => Ok(Undo {
            height,
            credit,
            accounts: before.accounts.into_iter().collect(),
            jobs: before.jobs.into_iter().collect(),
            schedule,
        }),
        Err(error) => {
            restore(state, before, schedule)?;
            Err(error)
        }
    }
}

fn restore<E: From<LedgerError>>(
    state: &mut impl LedgerState<E>,
    before: Before,
    schedule: Schedule,
) -> Result<(), E> {
    for (id, account) in before.accounts {
        state.set_account(id, account)?;
    }
    for (id, job) in before.jobs {
        state.set_job(id, job)?;
    }
    state.set_schedule(schedule)
}

/// Take the block of `undo` back off `state`, the ledger at that block.
pub fn disconnect_block<E: From<LedgerError>>(
    state: &mut impl LedgerState<E>,
    undo: Undo,
) -> Result<(), E> {
    let before = Before {
        accounts: undo.accounts.into_iter().collect(),
        jobs: undo.jobs.into_iter().collect(),
    };
    restore(state, before, undo.schedule)
}

#[allow(clippy::too_many_arguments)]
fn apply<E: From<LedgerError>>(
    state: &mut impl LedgerState<E>,
    maturity: u64,
    height: u64,
    miner: &Hash32,
    reward: u64,
    txs: &[CheckedTx],
    training: &BlockTraining,
    mut schedule: Schedule,
    before: &mut Before,
) -> Result<Credit, E> {
    let overflow = |account: &Hash32| LedgerError::BalanceOverflow { account: *account };
    let expected = scheduled_job(state)?;
    if training.job != expected {
        return Err(LedgerError::WrongJob {
            expected,
            found: training.job,
        }
        .into());
    }
    let mut job_pay = 0;
    if expected != GENESIS_JOB {
        let old = state
            .get_job(&expected)?
            .ok_or(LedgerError::MissingJob { job: expected })?;
        if training.job_block != u64::from(old.blocks) {
            return Err(LedgerError::WrongJobBlock {
                job: expected,
                expected: u64::from(old.blocks),
                found: training.job_block,
            }
            .into());
        }
        let mut job = old.clone();
        job_pay = jobs::train_block(&mut job, training, height);
        schedule.active = Some(expected);
        if job.is_ended() {
            schedule.active = None;
            let refund = job.escrow;
            job.escrow = 0;
            job.refunded = refund;
            let old = state.get_account(&job.sender)?;
            let mut account = old.unwrap_or_default();
            account.spendable = account
                .spendable
                .checked_add(refund)
                .ok_or(overflow(&job.sender))?;
            put(state, before, job.sender, old, account)?;
        }
        put_job(state, before, expected, Some(old), job)?;
    }
    let mut seen = HashSet::with_capacity(txs.len());
    let mut fees = job_pay;
    for (index, tx) in txs.iter().enumerate() {
        let id = tx.id();
        if !seen.insert(id) {
            return Err(LedgerError::Duplicate { index, id }.into());
        }
        let f = tx.fields();
        let old = state.get_account(&f.from)?;
        let sender = spend(tx, &old.unwrap_or_default()).map_err(|error| LedgerError::Tx {
            index,
            id,
            error,
        })?;
        put(state, before, f.from, old, sender)?;
        match &f.kind {
            TxKind::Transfer { to, amount } => {
                let old = state.get_account(to)?;
                let mut recipient = old.unwrap_or_default();
                recipient.spendable = recipient
                    .spendable
                    .checked_add(*amount)
                    .ok_or(overflow(to))?;
                put(state, before, *to, old, recipient)?;
            }
            TxKind::SubmitJob(spec) => {
                let job = JobState::queued(spec, f.from, schedule.next_seq, height);
                schedule.next_seq += 1;
                put_job(state, before, id, None, job)?;
            }
        }
        fees = fees.checked_add(f.fee).ok_or(overflow(miner))?;
    }
    let amount = reward.checked_add(fees).ok_or(overflow(miner))?;
    let old = state.get_account(miner)?;
    let mut account = old.unwrap_or_default();
    account.immature = account
        .immature
        .checked_add(amount)
        .ok_or(overflow(miner))?;
    put(state, before, *miner, old, account)?;
    if height > maturity {
        let matured = height - maturity;
        let credit = state
            .credit_at(matured)?
            .ok_or(LedgerError::MissingCredit { height: matured })?;
        let old = state.get_account(&credit.miner)?;
        let mut account = old.unwrap_or_default();
        account.immature = account
            .immature
            .checked_sub(credit.amount)
            .expect("a maturing credit is held as immature");
        account.spendable = account
            .spendable
            .checked_add(credit.amount)
            .ok_or(overflow(&credit.miner))?;
        put(state, before, credit.miner, old, account)?;
    }
    state.set_schedule(schedule)?;
    Ok(Credit {
        miner: *miner,
        amount,
    })
}

/// Write `account` for `id`, keeping the first value `old` for the undo record.
fn put<E: From<LedgerError>>(
    state: &mut impl LedgerState<E>,
    before: &mut Before,
    id: Hash32,
    old: Option<Account>,
    account: Account,
) -> Result<(), E> {
    before.accounts.entry(id).or_insert(old);
    state.set_account(id, Some(account))
}

/// Write `job` for `id`, keeping the first value `old` for the undo record.
fn put_job<E: From<LedgerError>>(
    state: &mut impl LedgerState<E>,
    before: &mut Before,
    id: Hash32,
    old: Option<JobState>,
    job: JobState,
) -> Result<(), E> {
    before.jobs.entry(id).or_insert(old);
    state.set_job(id, Some(job))
}

/// All accounts at one block of the chain, in memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ledger {
    maturity: u64,
    accounts: BTreeMap<Hash32, Account>,
    /// The credit of every block, by height from 1.
    credits: Vec<Credit>,
    jobs: BTreeMap<Hash32, JobState>,
    queue: BTreeMap<jobs::QueueKey, Hash32>,
    schedule: Schedule,
}

impl LedgerState<LedgerError> for Ledger {
    fn get_account(&self, id: &Hash32) -> Result<Option<Account>, LedgerError> {
        Ok(self.accounts.get(id).copied())
    }

    fn set_account(&mut self, id: Hash32, account: Option<Account>) -> Result<(), LedgerError> {
        match account {
            Some(account) => self.accounts.insert(id, account),
            None => self.accounts.remove(&id),
        };
        Ok(())
    }

    fn credit_at(&self, height: u64) -> Result<Option<Credit>, LedgerError> {
        let index = height.checked_sub(1).and_then(|i| usize::try_from(i).ok());
        Ok(index.and_then(|i| self.credits.get(i)).copied())
    }

    fn get_job(&self, id: &Hash32) -> Result<Option<JobState>, LedgerError> {
        Ok(self.jobs.get(id).cloned())
    }

    fn set_job(&mut self, id: Hash32, job: Option<JobState>) -> Result<(), LedgerError> {
        if let Some(old) = self.jobs.get(&id) {
            if old.status == JobStatus::Queued {
                self.queue.remove(&old.queue_key());
            }
        }
        match job {
            Some(job) => {
                if job.status == JobStatus::Queued {
                    self.queue.insert(job.queue_key(), id);
                }
                self.jobs.insert(id, job);
            }
            None => {
                self.jobs.remove(&id);
            }
        }
        Ok(())
    }

    fn queue_head(&self) -> Result<Option<Hash32>, LedgerError> {
        Ok(self.queue.values().next().copied())
    }

    fn get_schedule(&self) -> Result<Schedule, LedgerError> {
        Ok(self.schedule)
    }

    fn set_schedule(&mut self, schedule: Schedule) -> Result<(), LedgerError> {
        self.schedule = schedule;
        Ok(())
    }
}

impl Ledger {
    /// The ledger at genesis: no accounts. Credits mature `maturity`
    /// blocks after their block.
    pub fn genesis(maturity: u64) -> Ledger {
        Ledger {
            maturity,
            accounts: BTreeMap::new(),
            credits: Vec::new(),
            jobs: BTreeMap::new(),
            queue: BTreeMap::new(),
            schedule: Schedule::default(),
        }
    }

    pub fn height(&self) -> u64 {
        self.credits.len() as u64
    }

    /// An account's state; an account never seen is empty.
    pub fn account(&self, id: &Hash32) -> Account {
        self.accounts.get(id).copied().unwrap_or_default()
    }

    /// Every account that holds something or has sent a transaction.
    pub fn accounts(&self) -> &BTreeMap<Hash32, Account> {
        &self.accounts
    }

    /// Every job ever included, by id.
    pub fn jobs(&self) -> &BTreeMap<Hash32, JobState> {
        &self.jobs
    }

    pub fn schedule(&self) -> Schedule {
        self.schedule
    }

    /// The job the next block trains.
    pub fn next_job(&self) -> Hash32 {
        scheduled_job(self).unwrap_or(GENESIS_JOB)
    }

    /// Connect the next block ([`connect_block`]) on the genesis task, or
    /// on whatever job is scheduled, as block `training.job_block` of it.
    /// Nothing changes on an error.
    pub fn connect(
        &mut self,
        height: u64,
        miner: &Hash32,
        reward: u64,
        txs: &[CheckedTx],
    ) -> Result<Undo, LedgerError> {
        // The ledger does not count the genesis task's blocks (their
        // number is a header rule), so any number will do.
        let training = BlockTraining {
            block: Hash32::ZERO,
            job: GENESIS_JOB,
            job_block: 0,
            score_ppm: 0,
        };
        self.connect_training(height, miner, reward, txs, &training)
    }

    /// [`Ledger::connect`] of a block that trains as `training` says.
    pub fn connect_training(
        &mut self,
        height: u64,
        miner: &Hash32,
        reward: u64,
        txs: &[CheckedTx],
        training: &BlockTraining,
    ) -> Result<Undo, LedgerError> {
        if height != self.height() + 1 {
            return Err(LedgerError::WrongHeight {
                tip: self.height(),
                found: height,
            });
        }
        let maturity = self.maturity;
        let undo = connect_block(self, maturity, height, miner, reward, txs, training)?;
        self.credits.push(undo.credit);
        Ok(undo)
    }

    /// Disconnect the ledger's last block with the undo record that its
    /// connect returned.
    pub fn disconnect(&mut self, undo: Undo) -> Result<(), LedgerError> {
        if undo.height != self.height() || undo.height == 0 {
            return Err(LedgerError::WrongUndo {
                tip: self.height(),
                found: undo.height,
            });
        }
        disconnect_block(self, undo)?;
        self.credits.pop();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tx::{check_tx, JobSpec, TxFields, TX_VERSION};
    use ed25519_dalek::SigningKey;

    const GENESIS: Hash32 = Hash32([7; 32]);
    const REWARD: u64 = 50;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn id(seed: u8) -> Hash32 {
        Hash32(key(seed).verifying_key().to_bytes())
    }

    fn transfer(from: u8, nonce: u64, to: u8, amount: u64, fee: u64) -> CheckedTx {
        let fields = TxFields {
            version: TX_VERSION,
            chain: GENESIS,
            from: id(from),
            nonce,
            fee,
            kind: TxKind::Transfer { to: id(to), amount },
        };
        check_tx(
            fields.sign(&key(from)),
            &GENESIS,
            &crate::tx::JobLimits::default(),
        )
        .expect("a valid transfer")
    }

    fn account(spendable: u64, immature: u64, nonce: u64) -> Account {
        Account {
            spendable,
            immature,
            nonce,
        }
    }

    #[test]
    fn a_reward_matures_exactly_maturity_blocks_later() {
        let mut ledger = Ledger::genesis(3);
        ledger.connect(1, &id(1), REWARD, &[]).expect("block 1");
        assert_eq!(ledger.account(&id(1)), account(0, 50, 0));
        ledger.connect(2, &id(2), REWARD, &[]).expect("block 2");
        ledger.connect(3, &id(2), REWARD, &[]).expect("block 3");
        // Block 1 is two blocks deep: still immature.
        assert_eq!(ledger.account(&id(1)), account(0, 50, 0));
        ledger.connect(4, &id(2), REWARD, &[]).expect("block 4");
        // Three deep: spendable.
        assert_eq!(ledger.account(&id(1)), account(50, 0, 0));
        assert_eq!(ledger.account(&id(2)), account(0, 150, 0));
        ledger.connect(5, &id(2), REWARD, &[]).expect("block 5");
        assert_eq!(ledger.account(&id(2)), account(50, 150, 0));
    }

    #[test]
    fn a_transfer_moves_its_amount_and_pays_its_fee_to_the_miner() {
        let mut ledger = Ledger::genesis(1);
        ledger.connect(1, &id(1), REWARD, &[]).expect("block 1");
        ledger.connect(2, &id(9), REWARD, &[]).expect("block 2");
        assert_eq!(ledger.account(&id(1)), account(50, 0, 0));
        let undo = ledger
            .connect(3, &id(9), REWARD, &[transfer(1, 0, 2, 30, 5)])
            .expect("block 3");
        assert_eq!(ledger.account(&id(1)), account(15, 0, 1));
        assert_eq!(ledger.account(&id(2)), account(30, 0, 0));
        // Block 2's reward matured; block 3's reward and the fee are immature.
        assert_eq!(ledger.account(&id(9)), account(50, 55, 0));
        let mut holders = vec![id(1), id(2), id(9)];
        holders.sort();
        assert_eq!(
            ledger.accounts().keys().copied().collect::<Vec<_>>(),
            holders
        );
        ledger.disconnect(undo).expect("undo block 3");
        assert_eq!(ledger.account(&id(1)), account(50, 0, 0));
        assert_eq!(ledger.account(&id(2)), Account::default());
        assert!(!ledger.accounts().contains_key(&id(2)));
        assert_eq!(ledger.account(&id(9)), account(0, 50, 0));
    }

    #[test]
    fn a_block_that_breaks_a_rule_changes_nothing() {
        let mut ledger = Ledger::genesis(1);
        ledger.connect(1, &id(1), REWARD, &[]).expect("block 1");
        ledger.connect(2, &id(1), REWARD, &[]).expect("block 2");
        let before = ledger.clone();
        // The second transfer overspends: 50 spendable, 40 + 1 spent, then 10 + 1.
        let txs = [transfer(1, 0, 2, 40, 1), transfer(1, 1, 2, 10, 1)];
        let error = ledger
            .connect(3, &id(3), REWARD, &txs)
            .expect_err("overspends");
        assert_eq!(
            error,
            LedgerError::Tx {
                index: 1,
                id: txs[1].id(),
                error: TxError::Overspend {
                    needed: 11,
                    spendable: 9,
                    immature: 50
                }
            }
        );
        assert_eq!(ledger, before);
        // Exactly what is spendable passes.
        let txs = [transfer(1, 0, 2, 40, 1), transfer(1, 1, 2, 8, 1)];
        ledger
            .connect(3, &id(3), REWARD, &txs)
            .expect("within the balance");
        // Block 2's reward matures after the block's transactions ran.
        assert_eq!(ledger.account(&id(1)), account(50, 0, 2));
    }

    #[test]
    fn a_transaction_twice_in_a_block_is_refused() {
        let mut ledger = Ledger::genesis(1);
        ledger.connect(1, &id(1), REWARD, &[]).expect("block 1");
        ledger.connect(2, &id(1), REWARD, &[]).expect("block 2");
        let before = ledger.clone();
        let tx = transfer(1, 0, 2, 1, 1);
        let error = ledger
            .connect(3, &id(3), REWARD, &[tx.clone(), tx.clone()])
            .expect_err("a duplicate");
        assert_eq!(
            error,
            LedgerError::Duplicate {
                index: 1,
                id: tx.id()
            }
        );
        assert_eq!(ledger, before);
    }

    #[test]
    fn blocks_connect_in_height_order_and_undo_only_the_last() {
        let mut ledger = Ledger::genesis(2);
        assert_eq!(
            ledger.connect(2, &id(1), REWARD, &[]),
            Err(LedgerError::WrongHeight { tip: 0, found: 2 })
        );
        let first = ledger.connect(1, &id(1), REWARD, &[]).expect("block 1");
        let second = ledger.connect(2, &id(1), REWARD, &[]).expect("block 2");
        assert_eq!(
            ledger.disconnect(first.clone()),
            Err(LedgerError::WrongUndo { tip: 2, found: 1 })
        );
        ledger.disconnect(second).expect("undo 2");
        ledger.disconnect(first).expect("undo 1");
        assert_eq!(ledger, Ledger::genesis(2));
    }

    /// A small deterministic generator for the replay test.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 33) % n
        }
    }

    /// Random blocks of valid transfers among four accounts on top of `ledger`.
    fn random_blocks(
        ledger: &Ledger,
        count: usize,
        rng: &mut Rng,
    ) -> Vec<(Hash32, Vec<CheckedTx>)> {
        let mut shadow = ledger.clone();
        let mut blocks = Vec::new();
        for _ in 0..count {
            let miner = id(1 + rng.below(4) as u8);
            let mut txs = Vec::new();
            for _ in 0..rng.below(4) {
                let from = 1 + rng.below(4) as u8;
                let state = shadow.account(&id(from));
                let pending: u64 = txs
                    .iter()
                    .filter(|t: &&CheckedTx| t.fields().from == id(from))
                    .map(|t| t.fields().cost().expect("no overflow"))
                    .sum();
                let nonce =
                    state.nonce + txs.iter().filter(|t| t.fields().from == id(from)).count() as u64;
                let left = state.spendable - pending;
                if left < 2 {
                    continue;
                }
                let amount = 1 + rng.below(left - 1);
                let fee = rng.below(left - amount + 1);
                txs.push(transfer(from, nonce, 1 + rng.below(4) as u8, amount, fee));
            }
            let height = shadow.height() + 1;
            shadow
                .connect(height, &miner, REWARD, &txs)
                .expect("valid by construction");
            blocks.push((miner, txs));
        }
        blocks
    }

    fn replay(maturity: u64, blocks: &[(Hash32, Vec<CheckedTx>)]) -> Ledger {
        let mut ledger = Ledger::genesis(maturity);
        for (height, (miner, txs)) in (1..).zip(blocks) {
            ledger.connect(height, miner, REWARD, txs).expect("replays");
        }
        ledger
    }

    #[test]
    fn reorgs_deeper_than_the_maturity_match_a_replay_from_genesis() {
        let maturity = 3;
        let mut rng = Rng(42);
        let mut ledger = Ledger::genesis(maturity);
        let mut chain: Vec<(Hash32, Vec<CheckedTx>)> = Vec::new();
        let mut undos: Vec<Undo> = Vec::new();
        let mut transfers = 0;
        for round in 0..40 {
            // Roll back up to seven blocks, more than the maturity.
            let depth = (rng.below(8) as usize).min(chain.len());
            for _ in 0..depth {
                ledger
                    .disconnect(undos.pop().expect("an undo per block"))
                    .expect("undo");
                chain.pop();
            }
            assert_eq!(
                ledger,
                replay(maturity, &chain),
                "round {round}: after undoing {depth}"
            );
            for block in random_blocks(&ledger, 1 + rng.below(8) as usize, &mut rng) {
                let height = ledger.height() + 1;
                transfers += block.1.len();
                undos.push(
                    ledger
                        .connect(height, &block.0, REWARD, &block.1)
                        .expect("valid"),
                );
                chain.push(block);
            }
            assert_eq!(ledger, replay(maturity, &chain), "round {round}");
        }
        assert!(transfers > 50, "only {transfers} transfers were made");
    }

    /// A small job: 8 rows, `holdout_every` 2.
    fn job_spec(bounty: u64, max_blocks: u32, patience: u32, min_improvement_ppm: u32) -> JobSpec {
        JobSpec {
            name: "tiny.csv".into(),
            dataset: b"x,y\n1,2\n2,4\n3,6\n4,8\n5,10\n6,12\n7,14\n8,17\n".to_vec(),
            target: "y".into(),
            features: None,
            encoder: None,
            head: crate::tx::Head::Linear,
            batch_size: 4,
            learning_rate: 0.01,
            lr_half_life_blocks: 10,
            holdout_every: 2,
            max_blocks,
            patience,
            min_improvement_ppm,
            bounty,
        }
    }

    fn submit(from: u8, nonce: u64, spec: JobSpec, fee: u64) -> CheckedTx {
        let fields = TxFields {
            version: TX_VERSION,
            chain: GENESIS,
            from: id(from),
            nonce,
            fee,
            kind: TxKind::SubmitJob(Box::new(spec)),
        };
        check_tx(
            fields.sign(&key(from)),
            &GENESIS,
            &crate::tx::JobLimits::default(),
        )
        .expect("a valid job")
    }

    /// A ledger whose account 1 holds 10,000 spendable units: block 1 pays
    /// it, and blocks up to `maturity + 1` mature it.
    fn funded(maturity: u64) -> Ledger {
        let mut ledger = Ledger::genesis(maturity);
        ledger.connect(1, &id(1), 10_000, &[]).expect("block 1");
        for h in 2..=maturity + 1 {
            ledger.connect(h, &id(9), 0, &[]).expect("empty block");
        }
        assert_eq!(ledger.account(&id(1)).spendable, 10_000);
        ledger
    }

    /// Connect the next block, training what the ledger schedules with
    /// `score`, mined by 8 with no reward.
    fn train(ledger: &mut Ledger, score: u32) -> Result<Undo, LedgerError> {
        let job = ledger.next_job();
        let job_block = match ledger.jobs().get(&job) {
            Some(state) => u64::from(state.blocks),
            None => ledger.height(),
        };
        let height = ledger.height() + 1;
        let training = BlockTraining {
            block: Hash32([height as u8; 32]),
            job,
            job_block,
            score_ppm: score,
        };
        ledger.connect_training(height, &id(8), 0, &[], &training)
    }

    #[test]
    fn a_job_takes_its_bounty_into_escrow_and_is_trained_next() {
        let mut ledger = funded(2);
        let tx = submit(1, 0, job_spec(1000, 4, 4, 0), 7);
        let job = tx.id();
        let height = ledger.height() + 1;
        ledger.connect(height, &id(8), 0, &[tx]).expect("included");
        assert_eq!(ledger.account(&id(1)), account(10_000 - 1000 - 7, 0, 1));
        let state = &ledger.jobs()[&job];
        assert_eq!(state.status, JobStatus::Queued);
        assert_eq!(
            (state.escrow, state.pay_per_block, state.seq),
            (1000, 250, 0)
        );
        assert_eq!(ledger.next_job(), job);
        // A block that trains the genesis task instead is refused, and so
        // is one that says it is not the job's first block.
        let wrong = BlockTraining {
            block: Hash32([1; 32]),
            job: GENESIS_JOB,
            job_block: 3,
            score_ppm: 0,
        };
        let before = ledger.clone();
        assert_eq!(
            ledger.connect_training(height + 1, &id(8), 0, &[], &wrong),
            Err(LedgerError::WrongJob {
                expected: job,
                found: GENESIS_JOB
            })
        );
        let late = BlockTraining {
            job,
            job_block: 1,
            ..wrong
        };
        assert_eq!(
            ledger.connect_training(height + 1, &id(8), 0, &[], &late),
            Err(LedgerError::WrongJobBlock {
                job,
                expected: 0,
                found: 1
            })
        );
        assert_eq!(ledger, before, "a refused block changes nothing");
    }

    #[test]
    fn the_queue_runs_the_best_pay_first_and_an_active_job_to_its_end() {
        let mut ledger = funded(2);
        // Pay per block: 100, 250, 250 (the first two tie at 250 below).
        let cheap = submit(1, 0, job_spec(400, 4, 4, 0), 1);
        let first = submit(1, 1, job_spec(1000, 4, 4, 0), 1);
        let second = submit(1, 2, job_spec(500, 2, 2, 0), 1);
        let (cheap, first, second) = (cheap.clone(), first.clone(), second.clone());
        let height = ledger.height() + 1;
        ledger
            .connect(
                height,
                &id(8),
                0,
                &[cheap.clone(), first.clone(), second.clone()],
            )
            .expect("included");
        // 250 ties: the one included first.
        assert_eq!(ledger.next_job(), first.id());
        train(&mut ledger, 10).expect("first, block 0");
        // A better-paying job arrives: the active one keeps going.
        let rich = submit(1, 3, job_spec(4000, 4, 4, 0), 1);
        let height = ledger.height() + 1;
        let training = BlockTraining {
            block: Hash32([77; 32]),
            job: first.id(),
            job_block: 1,
            score_ppm: 20,
        };
        ledger
            .connect_training(height, &id(8), 0, std::slice::from_ref(&rich), &training)
            .expect("first, block 1, with the rich job");
        assert_eq!(ledger.next_job(), first.id());
        for score in [30, 40] {
            train(&mut ledger, score).expect("first");
        }
        assert!(ledger.jobs()[&first.id()].is_ended());
        // Then the rich one, then `second` (250 before 100), then `cheap`.
        assert_eq!(ledger.next_job(), rich.id());
        for score in [1, 2, 3, 4] {
            train(&mut ledger, score).expect("rich");
        }
        assert_eq!(ledger.next_job(), second.id());
        train(&mut ledger, 5).expect("second");
        train(&mut ledger, 6).expect("second");
        assert_eq!(ledger.next_job(), cheap.id());
        for score in [1, 2, 3, 4] {
            train(&mut ledger, score).expect("cheap");
        }
        // An empty queue: the genesis task.
        assert_eq!(ledger.next_job(), GENESIS_JOB);
        assert_eq!(ledger.schedule().active, None);
    }

    #[test]
    fn a_job_ends_at_max_blocks_and_not_one_block_before() {
        let mut ledger = funded(2);
        let tx = submit(1, 0, job_spec(900, 3, 3, 0), 0);
        let job = tx.id();
        let height = ledger.height() + 1;
        ledger.connect(height, &id(8), 0, &[tx]).expect("included");
        train(&mut ledger, 1).expect("block 0");
        assert_eq!(
            ledger.schedule(),
            Schedule {
                active: Some(job),
                next_seq: 1
            }
        );
        train(&mut ledger, 2).expect("block 1");
        let state = &ledger.jobs()[&job];
        assert_eq!(state.status, JobStatus::Active);
        assert_eq!((state.blocks, state.escrow, state.paid), (2, 300, 600));
        train(&mut ledger, 3).expect("block 2");
        let state = ledger.jobs()[&job].clone();
        assert!(matches!(
            state.status,
            JobStatus::Ended {
                reason: jobs::EndReason::MaxBlocks,
                ..
            }
        ));
        assert_eq!((state.escrow, state.paid, state.refunded), (0, 900, 0));
        // The miner got 3 × 300 on top of its (zero) rewards.
        let miner = ledger.account(&id(8));
        assert_eq!(miner.immature + miner.spendable, 900);
    }

    #[test]
    fn patience_ends_a_job_exactly_after_that_many_blocks_without_improvement() {
        let mut ledger = funded(2);
        // 10 blocks at most, patience 2, a rise counts from 100 ppm.
        let tx = submit(1, 0, job_spec(1000, 10, 2, 100), 0);
        let job = tx.id();
        let height = ledger.height() + 1;
        ledger.connect(height, &id(8), 0, &[tx]).expect("included");
        train(&mut ledger, 1000).expect("block 0: the first mark");
        train(&mut ledger, 1099).expect("block 1: 99 over the mark is not a rise");
        assert_eq!(ledger.jobs()[&job].status, JobStatus::Active);
        train(&mut ledger, 1100).expect("block 2: exactly 100 over is");
        train(&mut ledger, 1150).expect("block 3");
        assert_eq!(ledger.jobs()[&job].status, JobStatus::Active);
        train(&mut ledger, 900).expect("block 4: two blocks since the rise");
        let state = ledger.jobs()[&job].clone();
        assert!(
            matches!(
                state.status,
                JobStatus::Ended {
                    reason: jobs::EndReason::Patience,
                    ..
                }
            ),
            "{state:?}"
        );
        // The best is block 3's 1150; 5 blocks paid 100 each, 500 back.
        let best = state.best.expect("a best block");
        assert_eq!((best.score_ppm, best.job_block), (1150, 3));
        assert_eq!((state.paid, state.refunded, state.escrow), (500, 500, 0));
        assert_eq!(ledger.account(&id(1)).spendable, 10_000 - 1000 + 500);
        assert_eq!(ledger.next_job(), GENESIS_JOB);
    }

    #[test]
    fn the_best_block_is_the_earliest_of_equal_scores() {
        let mut ledger = funded(2);
        let tx = submit(1, 0, job_spec(300, 3, 3, 0), 0);
        let job = tx.id();
        let height = ledger.height() + 1;
        ledger.connect(height, &id(8), 0, &[tx]).expect("included");
        for score in [5, 7, 7] {
            train(&mut ledger, score).expect("trained");
        }
        let best = ledger.jobs()[&job].best.expect("best");
        assert_eq!((best.score_ppm, best.job_block), (7, 1));
    }

    #[test]
    fn disconnecting_job_blocks_restores_jobs_queue_escrow_and_refunds() {
        let mut ledger = funded(2);
        let start = ledger.clone();
        let mut undos = Vec::new();
        let a = submit(1, 0, job_spec(500, 2, 2, 0), 3);
        let b = submit(1, 1, job_spec(600, 3, 1, 1000), 3);
        let height = ledger.height() + 1;
        undos.push(
            ledger
                .connect(height, &id(8), 0, &[a, b])
                .expect("included"),
        );
        for score in [1, 2, 3, 4, 5, 6, 7] {
            let before = ledger.clone();
            let undo = train(&mut ledger, score).expect("trained");
            let mut back = ledger.clone();
            back.disconnect(undo.clone()).expect("undo");
            assert_eq!(back, before, "score {score}: one block undone");
            undos.push(undo);
        }
        while let Some(undo) = undos.pop() {
            ledger.disconnect(undo).expect("undo");
        }
        assert_eq!(ledger, start);
    }

    /// With no minimum rise, an equal score is no rise: patience runs on.
    #[test]
    fn an_equal_score_does_not_reset_patience() {
        let mut ledger = funded(2);
        let tx = submit(1, 0, job_spec(1000, 10, 2, 0), 0);
        let job = tx.id();
        let height = ledger.height() + 1;
        ledger.connect(height, &id(8), 0, &[tx]).expect("included");
        train(&mut ledger, 5).expect("block 0");
        train(&mut ledger, 6).expect("block 1: a rise of 1 counts");
        train(&mut ledger, 6).expect("block 2: equal");
        assert_eq!(ledger.jobs()[&job].status, JobStatus::Active);
        train(&mut ledger, 6).expect("block 3: equal again, patience spent");
        assert!(ledger.jobs()[&job].is_ended());
    }
}
