//! The mempool: signed transactions waiting for a block, bounded in bytes
//! and in count.
//!
//! Per sender, pending transactions form a chain of consecutive nonces
//! from the account's next one, which together the spendable balance
//! covers. The pool is ordered by fee per byte: when it is full, the
//! cheapest transaction at the end of a sender's chain is evicted first
//! (never one in the middle, which would leave a gap), and a newcomer that
//! pays no more than it is refused. Nothing under `min_fee_per_kb` enters.
//!
//! I/O-free: the caller hands in the sender's [`Account`] as the ledger at
//! the tip has it, and tells the pool when blocks connect or disconnect.

use crate::chain::Hash32;
use crate::tx::{Account, CheckedTx};
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet};
use thiserror::Error;

/// The bounds of a pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MempoolLimits {
    /// Encoded bytes of all pending transactions together.
    pub max_bytes: usize,
    /// Pending transactions.
    pub max_count: usize,
    /// The minimum relay fee, in base units per 1000 bytes of encoding.
    pub min_fee_per_kb: u64,
}

impl Default for MempoolLimits {
    fn default() -> Self {
        MempoolLimits {
            max_bytes: 32 << 20,
            max_count: 100_000,
            min_fee_per_kb: 1_000,
        }
    }
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum MempoolError {
    #[error("transaction {id} is already in the pool")]
    AlreadyKnown { id: Hash32 },
    #[error("fee {fee} for {bytes} bytes is under the minimum relay fee of {min_fee_per_kb} per 1000 bytes")]
    FeeTooLow {
        fee: u64,
        bytes: usize,
        min_fee_per_kb: u64,
    },
    #[error("nonce {found} was already used: the account's next nonce is {expected}")]
    NonceUsed { expected: u64, found: u64 },
    #[error(
        "nonce {found} leaves a gap: the next nonce the pool takes from this sender is {expected}"
    )]
    NonceGap { expected: u64, found: u64 },
    #[error("transaction {pending} with nonce {nonce} from this sender is already pending")]
    Conflict { nonce: u64, pending: Hash32 },
    #[error("with the sender's pending transactions it spends {needed} base units; {spendable} are spendable")]
    Overspend { needed: u128, spendable: u64 },
    #[error("the pool is full and nothing in it pays less per byte than this transaction")]
    Full,
}

/// Fee per byte, compared exactly: `fee / bytes`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FeeRate {
    fee: u64,
    bytes: u64,
}

impl Ord for FeeRate {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (u128::from(self.fee) * u128::from(other.bytes))
            .cmp(&(u128::from(other.fee) * u128::from(self.bytes)))
    }
}

impl PartialOrd for FeeRate {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

#[derive(Clone, Debug)]
struct Entry {
    tx: CheckedTx,
    bytes: usize,
    rate: FeeRate,
    /// Admission order: among equal rates, the older is kept and mined first.
    seq: u64,
}

/// Eviction order: lowest rate first, the newest first among equals.
type EvictKey = (FeeRate, std::cmp::Reverse<u64>, Hash32);

#[derive(Clone, Debug, Default)]
pub struct Mempool {
    limits: MempoolLimits,
    entries: HashMap<Hash32, Entry>,
    /// Per sender, nonce → id: a run of consecutive nonces.
    senders: HashMap<Hash32, BTreeMap<u64, Hash32>>,
    by_rate: BTreeSet<EvictKey>,
    /// The last pending transaction of each sender, in eviction order:
    /// the only ones eviction may take.
    ends: BTreeSet<EvictKey>,
    /// Per sender, what its pending transactions cost together.
    costs: HashMap<Hash32, u128>,
    bytes: usize,
    next_seq: u64,
}

impl Mempool {
    pub fn new(limits: MempoolLimits) -> Mempool {
        Mempool {
            limits,
            ..Mempool::default()
        }
    }

    pub fn limits(&self) -> &MempoolLimits {
        &self.limits
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Encoded bytes of everything pending.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn get(&self, id: &Hash32) -> Option<&CheckedTx> {
        self.entries.get(id).map(|e| &e.tx)
    }

    pub fn contains(&self, id: &Hash32) -> bool {
        self.entries.contains_key(id)
    }

    /// Every pending transaction, best fee per byte first.
    pub fn iter(&self) -> impl Iterator<Item = &CheckedTx> {
        self.by_rate
            .iter()
            .rev()
            .map(|(_, _, id)| &self.entries[id].tx)
    }

    /// The next nonce this pool takes from `sender` whose account is `account`.
    /// Pending nonces below the account's (mined in a block the pool has
    /// not followed yet) do not count.
    pub fn next_nonce(&self, sender: &Hash32, account: &Account) -> u64 {
        account.nonce
            + self
                .senders
                .get(sender)
                .map_or(0, |c| c.range(account.nonce..).count() as u64)
    }

    /// Admit a transaction whose sender's account at the tip is `account`.
    /// Returns the ids evicted to make room.
    pub fn admit(&mut self, tx: CheckedTx, account: &Account) -> Result<Vec<Hash32>, MempoolError> {
        let id = tx.id();
        if self.entries.contains_key(&id) {
            return Err(MempoolError::AlreadyKnown { id });
        }
        let f = tx.fields();
        // The account may be newer than the pool (a block stored, the pool
        // not yet told): first drop what it no longer allows.
        let stale = self
            .senders
            .get(&f.from)
            .and_then(|c| c.keys().next())
            .is_some_and(|&first| first < account.nonce)
            || self
                .costs
                .get(&f.from)
                .is_some_and(|&cost| cost > u128::from(account.spendable));
        if stale {
            self.revalidate(&f.from, account);
        }
        let bytes = tx.tx().to_bytes().len();
        let min_fee = (u128::from(self.limits.min_fee_per_kb) * bytes as u128).div_ceil(1000);
        if u128::from(f.fee) < min_fee {
            return Err(MempoolError::FeeTooLow {
                fee: f.fee,
                bytes,
                min_fee_per_kb: self.limits.min_fee_per_kb,
            });
        }
        if f.nonce < account.nonce {
            return Err(MempoolError::NonceUsed {
                expected: account.nonce,
                found: f.nonce,
            });
        }
        let chain = self.senders.get(&f.from);
        if let Some(pending) = chain.and_then(|c| c.get(&f.nonce)) {
            return Err(MempoolError::Conflict {
                nonce: f.nonce,
                pending: *pending,
            });
        }
        let expected = self.next_nonce(&f.from, account);
        if f.nonce != expected {
            return Err(MempoolError::NonceGap {
                expected,
                found: f.nonce,
            });
        }
        let pending_cost = self.costs.get(&f.from).copied().unwrap_or(0);
        // check_tx refused an overflowing cost.
        let needed = pending_cost + u128::from(f.cost().unwrap_or(u64::MAX));
        if needed > u128::from(account.spendable) {
            return Err(MempoolError::Overspend {
                needed,
                spendable: account.spendable,
            });
        }
        let rate = FeeRate {
            fee: f.fee,
            bytes: bytes as u64,
        };
        let evicted = self.make_room(bytes, rate, &f.from)?;
        for victim in &evicted {
            self.remove(victim);
        }
        let sender = f.from;
        let nonce = f.nonce;
        let seq = self.next_seq;
        self.next_seq += 1;
        let key = (rate, std::cmp::Reverse(seq), id);
        self.by_rate.insert(key);
        if let Some(old_end) = self.end_key(&sender) {
            self.ends.remove(&old_end);
        }
        // The next nonce: the new end of the sender's chain.
        self.ends.insert(key);
        *self.costs.entry(sender).or_default() += u128::from(f.cost().unwrap_or(u64::MAX));
        self.senders.entry(sender).or_default().insert(nonce, id);
        self.bytes += bytes;
        self.entries.insert(
            id,
            Entry {
                tx,
                bytes,
                rate,
                seq,
            },
        );
        Ok(evicted)
    }

    /// Check that the pool's indexes agree with its entries: the fee
    /// order, the chain ends, each sender's total cost and the bytes. For
    /// tests and fuzzing; `Err` names the first disagreement.
    #[doc(hidden)]
    pub fn check_indexes(&self) -> Result<(), String> {
        let keys: BTreeSet<EvictKey> = self
            .entries
            .iter()
            .map(|(id, e)| (e.rate, std::cmp::Reverse(e.seq), *id))
            .collect();
        if keys != self.by_rate {
            return Err("the fee order does not match the entries".into());
        }
        let ends: BTreeSet<EvictKey> = self
            .senders
            .keys()
            .filter_map(|s| self.end_key(s))
            .collect();
        if ends != self.ends {
            return Err(format!("chain ends {:?}, expected {:?}", self.ends, ends));
        }
        for (sender, chain) in &self.senders {
            let cost: u128 = chain.values().map(|id| self.cost(id)).sum();
            if self.costs.get(sender) != Some(&cost) {
                return Err(format!(
                    "sender {sender} costs {cost}, the index says {:?}",
                    self.costs.get(sender)
                ));
            }
        }
        if self.costs.len() != self.senders.len() {
            return Err("costs of senders with nothing pending".into());
        }
        let bytes: usize = self.entries.values().map(|e| e.bytes).sum();
        if bytes != self.bytes {
            return Err(format!("{bytes} bytes, the pool counts {}", self.bytes));
        }
        Ok(())
    }

    /// The eviction key of `sender`'s last pending transaction.
    fn end_key(&self, sender: &Hash32) -> Option<EvictKey> {
        let id = self.senders.get(sender)?.values().next_back()?;
        let e = &self.entries[id];
        Some((e.rate, std::cmp::Reverse(e.seq), *id))
    }

    fn cost(&self, id: &Hash32) -> u128 {
        self.entries
            .get(id)
            .and_then(|e| e.tx.fields().cost())
            .map_or(0, u128::from)
    }

    /// The transactions to evict so that `bytes` more fit, cheapest chain
    /// ends first, none from `sender` and each cheaper than `rate`.
    fn make_room(
        &self,
        bytes: usize,
        rate: FeeRate,
        sender: &Hash32,
    ) -> Result<Vec<Hash32>, MempoolError> {
        // A transaction larger than the whole pool, or a pool of no slots,
        // runs out of victims below and is refused.
        let mut free_bytes = self.limits.max_bytes - self.bytes.min(self.limits.max_bytes);
        let mut free_slots = self.limits.max_count.saturating_sub(self.entries.len());
        let mut evicted = Vec::new();
        // Chain ends as they will be once the evicted ones are gone: the
        // pool's ends but those taken, and the transactions they uncover.
        let mut taken: HashMap<Hash32, usize> = HashMap::new();
        let mut taken_ids: HashSet<Hash32> = HashSet::new();
        let mut uncovered: BTreeSet<EvictKey> = BTreeSet::new();
        while free_bytes < bytes || free_slots == 0 {
            let from_pool = self.ends.iter().find(|(_, _, id)| {
                !taken_ids.contains(id) && self.entries[id].tx.fields().from != *sender
            });
            let victim = match (from_pool, uncovered.first()) {
                (Some(a), Some(b)) => *a.min(b),
                (Some(a), None) => *a,
                (None, Some(b)) => *b,
                (None, None) => return Err(MempoolError::Full),
            };
            let (victim_rate, _, victim_id) = victim;
            if victim_rate >= rate {
                return Err(MempoolError::Full);
            }
            uncovered.remove(&victim);
            taken_ids.insert(victim_id);
            let e = &self.entries[&victim_id];
            let from = e.tx.fields().from;
            let gone = taken.entry(from).or_default();
            *gone += 1;
            // The sender's next highest nonce is its chain's end now.
            if let Some(next) = self.senders[&from].values().rev().nth(*gone) {
                let n = &self.entries[next];
                uncovered.insert((n.rate, std::cmp::Reverse(n.seq), *next));
            }
            free_bytes += e.bytes;
            free_slots += 1;
            evicted.push(victim_id);
        }
        Ok(evicted)
    }

    fn remove(&mut self, id: &Hash32) -> Option<CheckedTx> {
        if !self.entries.contains_key(id) {
            return None;
        }
        let from = self.entries[id].tx.fields().from;
        if let Some(old_end) = self.end_key(&from) {
            self.ends.remove(&old_end);
        }
        let entry = self.entries.remove(id)?;
        self.by_rate
            .remove(&(entry.rate, std::cmp::Reverse(entry.seq), *id));
        if let Some(chain) = self.senders.get_mut(&from) {
            chain.remove(&entry.tx.fields().nonce);
            if chain.is_empty() {
                self.senders.remove(&from);
            }
        }
        if let Some(end) = self.end_key(&from) {
            self.ends.insert(end);
        }
        let cost = u128::from(entry.tx.fields().cost().unwrap_or(u64::MAX));
        if let Some(total) = self.costs.get_mut(&from) {
            *total -= cost;
            if !self.senders.contains_key(&from) {
                self.costs.remove(&from);
            }
        }
        self.bytes -= entry.bytes;
        Some(entry.tx)
    }

    /// A block connected with `txs`: they leave the pool, and so does every
    /// pending transaction of their senders that the new accounts no
    /// longer allow (a used nonce, or more than is spendable). Returns the
    /// ids dropped as invalid.
    pub fn block_connected(
        &mut self,
        txs: &[CheckedTx],
        account: impl Fn(&Hash32) -> Account,
    ) -> Vec<Hash32> {
        let mut senders = HashSet::new();
        for tx in txs {
            self.remove(&tx.id());
            senders.insert(tx.fields().from);
        }
        let mut dropped = Vec::new();
        for sender in senders {
            dropped.extend(self.revalidate(&sender, &account(&sender)));
        }
        dropped
    }

    /// After a reorg: the transactions of the disconnected blocks, oldest
    /// first, come back when the new accounts allow them, and every sender
    /// is checked again. Returns the ids dropped as invalid.
    pub fn reorganised(
        &mut self,
        disconnected: Vec<CheckedTx>,
        account: impl Fn(&Hash32) -> Account,
    ) -> Vec<Hash32> {
        // The disconnected transactions go back in nonce order, each
        // sender's pending ones after them; a pending one that conflicts
        // with a disconnected one gives way.
        let mut readmit: BTreeMap<(Hash32, u64), CheckedTx> = BTreeMap::new();
        for tx in disconnected {
            readmit.insert((tx.fields().from, tx.fields().nonce), tx);
        }
        let resent: HashSet<Hash32> = readmit.keys().map(|(from, _)| *from).collect();
        let mut dropped = Vec::new();
        for sender in &resent {
            let pending: Vec<Hash32> = self
                .senders
                .get(sender)
                .map(|c| c.values().copied().collect())
                .unwrap_or_default();
            for id in pending {
                if let Some(tx) = self.remove(&id) {
                    match readmit.entry((tx.fields().from, tx.fields().nonce)) {
                        std::collections::btree_map::Entry::Occupied(_) => dropped.push(id),
                        std::collections::btree_map::Entry::Vacant(slot) => {
                            slot.insert(tx);
                        }
                    }
                }
            }
        }
        let others: Vec<Hash32> = self.senders.keys().copied().collect();
        for sender in others {
            dropped.extend(self.revalidate(&sender, &account(&sender)));
        }
        for ((sender, _), tx) in readmit {
            let id = tx.id();
            if self.admit(tx, &account(&sender)).is_err() {
                dropped.push(id);
            }
        }
        dropped
    }

    /// Drop the sender's pending transactions the account no longer allows:
    /// used nonces, and from the first that is not covered, the rest.
    fn revalidate(&mut self, sender: &Hash32, account: &Account) -> Vec<Hash32> {
        let Some(chain) = self.senders.get(sender) else {
            return Vec::new();
        };
        let mut dropped = Vec::new();
        let mut next = account.nonce;
        let mut spent: u128 = 0;
        let mut broken = false;
        for (&nonce, id) in chain {
            if nonce < account.nonce {
                dropped.push(*id);
                continue;
            }
            spent += self.cost(id);
            if broken || nonce != next || spent > u128::from(account.spendable) {
                broken = true;
                dropped.push(*id);
            }
            next = nonce + 1;
        }
        for id in &dropped {
            self.remove(id);
        }
        dropped
    }

    /// Transactions for a block: best fee per byte first, each sender's in
    /// nonce order, within `max_bytes` and `max_count`.
    pub fn select(&self, max_bytes: usize, max_count: usize) -> Vec<CheckedTx> {
        // Each sender's first pending transaction, by rate then age.
        let head = |sender: &Hash32,
                    after: Option<u64>|
         -> Option<(FeeRate, std::cmp::Reverse<u64>, Hash32)> {
            let chain = self.senders.get(sender)?;
            let (_, id) = match after {
                None => chain.iter().next()?,
                Some(nonce) => chain.range(nonce + 1..).next()?,
            };
            let e = &self.entries[id];
            Some((e.rate, std::cmp::Reverse(e.seq), *id))
        };
        let mut heap: BinaryHeap<_> = self.senders.keys().filter_map(|s| head(s, None)).collect();
        let mut out = Vec::new();
        let mut used = 0usize;
        while let Some((_, _, id)) = heap.pop() {
            if out.len() >= max_count {
                break;
            }
            let e = &self.entries[&id];
            if used + e.bytes > max_bytes {
                // The sender's later ones would leave a gap; skip them all.
                continue;
            }
            used += e.bytes;
            out.push(e.tx.clone());
            let f = e.tx.fields();
            if let Some(next) = head(&f.from, Some(f.nonce)) {
                heap.push(next);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tx::{check_tx, TxFields, TxKind, TX_VERSION};
    use ed25519_dalek::SigningKey;

    const GENESIS: Hash32 = Hash32([7; 32]);

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn id(seed: u8) -> Hash32 {
        Hash32(key(seed).verifying_key().to_bytes())
    }

    /// A transfer of 1 from `from` with `fee`; it encodes in 166 bytes for
    /// fees of 128 to 16383.
    fn tx(from: u8, nonce: u64, fee: u64) -> CheckedTx {
        let fields = TxFields {
            version: TX_VERSION,
            chain: GENESIS,
            from: id(from),
            nonce,
            fee,
            kind: TxKind::Transfer {
                to: id(99),
                amount: 1,
            },
        };
        check_tx(
            fields.sign(&key(from)),
            &GENESIS,
            &crate::tx::JobLimits::default(),
        )
        .expect("valid")
    }

    fn rich(nonce: u64) -> Account {
        Account {
            spendable: 1_000_000,
            immature: 0,
            nonce,
        }
    }

    fn pool(max_count: usize) -> Mempool {
        Mempool::new(MempoolLimits {
            max_bytes: 1 << 20,
            max_count,
            min_fee_per_kb: 1_000,
        })
    }

    #[test]
    fn the_pool_shows_what_it_holds() {
        let limits = MempoolLimits {
            max_bytes: 1 << 20,
            max_count: 10,
            min_fee_per_kb: 1_000,
        };
        let mut pool = Mempool::new(limits.clone());
        assert_eq!(pool.limits(), &limits);
        assert!(pool.is_empty());
        let (a, b) = (tx(1, 0, 200), tx(2, 0, 300));
        pool.admit(a.clone(), &rich(0)).expect("A0");
        pool.admit(b.clone(), &rich(0)).expect("B0");
        assert!(!pool.is_empty());
        assert_eq!(pool.len(), 2);
        assert_eq!(pool.bytes(), 2 * 166);
        assert_eq!(pool.get(&a.id()), Some(&a));
        assert_eq!(pool.get(&Hash32([3; 32])), None);
        // Best fee per byte first.
        let ids: Vec<Hash32> = pool.iter().map(|t| t.id()).collect();
        assert_eq!(ids, vec![b.id(), a.id()]);
    }

    /// Among equal fees per byte, the older transaction is mined first and
    /// evicted last, whichever way their ids sort.
    #[test]
    fn equal_rates_go_by_age() {
        let (a, b) = (tx(1, 0, 200), tx(2, 0, 200));
        for (first, second) in [(&a, &b), (&b, &a)] {
            let mut pool = pool(2);
            pool.admit(first.clone(), &rich(0)).expect("first");
            pool.admit(second.clone(), &rich(0)).expect("second");
            let order: Vec<Hash32> = pool.select(1 << 20, 10).iter().map(|t| t.id()).collect();
            assert_eq!(order, vec![first.id(), second.id()]);
            let evicted = pool.admit(tx(3, 0, 201), &rich(0)).expect("pays more");
            assert_eq!(evicted, vec![second.id()], "the newer one goes");
        }
    }

    /// Room for a newcomer larger than any one pending transaction takes
    /// two evictions: the cheapest chain end, then the cheapest end of what
    /// is left.
    #[test]
    fn a_large_newcomer_evicts_chain_ends_one_after_another() {
        let mut pool = Mempool::new(MempoolLimits {
            max_bytes: 3 * 166,
            max_count: 100,
            min_fee_per_kb: 0,
        });
        pool.admit(tx(1, 0, 300), &rich(0)).expect("A0");
        pool.admit(tx(1, 1, 200), &rich(0))
            .expect("A1, the cheapest end");
        pool.admit(tx(2, 0, 250), &rich(0)).expect("B0");
        let fields = TxFields {
            version: TX_VERSION,
            chain: GENESIS,
            from: id(3),
            nonce: 0,
            fee: 1_000,
            kind: TxKind::Transfer {
                to: id(99),
                amount: 1 << 62,
            },
        };
        let large = check_tx(
            fields.sign(&key(3)),
            &GENESIS,
            &crate::tx::JobLimits::default(),
        )
        .expect("valid");
        let size = large.tx().to_bytes().len();
        assert!(size > 166 && size < 2 * 166, "{size} bytes");
        let whale = Account {
            spendable: u64::MAX,
            immature: 0,
            nonce: 0,
        };
        let evicted = pool.admit(large, &whale).expect("pays the most");
        assert_eq!(evicted, vec![tx(1, 1, 200).id(), tx(2, 0, 250).id()]);
        assert_eq!(pool.bytes(), 166 + size);
        assert!(pool.contains(&tx(1, 0, 300).id()));
        // Larger than the whole pool: refused, nothing evicted.
        let mut tiny = Mempool::new(MempoolLimits {
            max_bytes: 165,
            max_count: 100,
            min_fee_per_kb: 0,
        });
        assert_eq!(tiny.admit(tx(1, 0, 200), &rich(0)), Err(MempoolError::Full));
        // No slots at all.
        assert_eq!(
            pool_of_no_slots().admit(tx(1, 0, 200), &rich(0)),
            Err(MempoolError::Full)
        );
    }

    fn pool_of_no_slots() -> Mempool {
        pool(0)
    }

    #[test]
    fn the_minimum_relay_fee_holds_at_the_limit() {
        let mut pool = pool(10);
        // 166 bytes at 1000 per 1000 bytes: 166 is the least fee.
        assert_eq!(tx(1, 0, 166).tx().to_bytes().len(), 166);
        pool.admit(tx(1, 0, 166), &rich(0)).expect("at the minimum");
        assert_eq!(
            pool.admit(tx(2, 0, 165), &rich(0)),
            Err(MempoolError::FeeTooLow {
                fee: 165,
                bytes: 166,
                min_fee_per_kb: 1_000
            })
        );
        let again = tx(1, 0, 166);
        assert_eq!(
            pool.admit(again.clone(), &rich(0)),
            Err(MempoolError::AlreadyKnown { id: again.id() })
        );
    }

    #[test]
    fn nonces_form_a_chain_from_the_accounts_next_one() {
        let mut pool = pool(10);
        assert_eq!(
            pool.admit(tx(1, 4, 200), &rich(5)),
            Err(MempoolError::NonceUsed {
                expected: 5,
                found: 4
            })
        );
        assert_eq!(
            pool.admit(tx(1, 6, 200), &rich(5)),
            Err(MempoolError::NonceGap {
                expected: 5,
                found: 6
            })
        );
        pool.admit(tx(1, 5, 200), &rich(5)).expect("the next nonce");
        pool.admit(tx(1, 6, 200), &rich(5))
            .expect("then the one after");
        assert_eq!(pool.next_nonce(&id(1), &rich(5)), 7);
        let pending = tx(1, 6, 200).id();
        assert_eq!(
            pool.admit(tx(1, 6, 300), &rich(5)),
            Err(MempoolError::Conflict { nonce: 6, pending })
        );
    }

    #[test]
    fn a_senders_pending_transactions_together_stay_within_its_balance() {
        let mut pool = pool(10);
        // Each costs 1 + 200.
        let account = Account {
            spendable: 402,
            immature: 5_000,
            nonce: 0,
        };
        pool.admit(tx(1, 0, 200), &account).expect("201");
        pool.admit(tx(1, 1, 200), &account).expect("402, all of it");
        assert_eq!(
            pool.admit(tx(1, 2, 200), &account),
            Err(MempoolError::Overspend {
                needed: 603,
                spendable: 402
            })
        );
    }

    #[test]
    fn a_full_pool_evicts_the_cheapest_chain_end_or_refuses() {
        let mut pool = pool(3);
        pool.admit(tx(1, 0, 200), &rich(0)).expect("A0");
        pool.admit(tx(1, 1, 900), &rich(0))
            .expect("A1, after a cheap parent");
        pool.admit(tx(2, 0, 500), &rich(0)).expect("B0");
        assert_eq!(pool.len(), 3);
        // Paying no more than the cheapest evictable end (B0 at 500; A0 is
        // cheaper but not an end) is refused.
        assert_eq!(pool.admit(tx(3, 0, 500), &rich(0)), Err(MempoolError::Full));
        let evicted = pool.admit(tx(3, 0, 501), &rich(0)).expect("pays more");
        assert_eq!(evicted, vec![tx(2, 0, 500).id()]);
        assert_eq!(pool.len(), 3);
        assert!(pool.contains(&tx(1, 0, 200).id()), "no gap in A's chain");
        // A sender never evicts its own chain's end to grow it.
        assert_eq!(
            pool.admit(tx(3, 1, 10_000), &rich(0)).map(|e| e.len()),
            Ok(1)
        );
        assert!(!pool.contains(&tx(1, 1, 900).id()), "A1 went, A0 stays");
        assert!(pool.contains(&tx(1, 0, 200).id()));
    }

    #[test]
    fn the_byte_bound_holds_at_the_limit_and_one_past_it() {
        let mut pool = Mempool::new(MempoolLimits {
            max_bytes: 2 * 166,
            max_count: 100,
            min_fee_per_kb: 0,
        });
        pool.admit(tx(1, 0, 200), &rich(0)).expect("166 bytes");
        pool.admit(tx(2, 0, 200), &rich(0))
            .expect("332 bytes: exactly full");
        assert_eq!(pool.bytes(), 332);
        assert_eq!(pool.admit(tx(3, 0, 200), &rich(0)), Err(MempoolError::Full));
        let evicted = pool
            .admit(tx(3, 0, 201), &rich(0))
            .expect("pays more per byte");
        assert_eq!(evicted.len(), 1);
        assert_eq!(pool.bytes(), 332);
    }

    #[test]
    fn blocks_take_the_best_fee_per_byte_first_in_nonce_order() {
        let mut pool = pool(10);
        pool.admit(tx(1, 0, 200), &rich(0)).expect("A0");
        pool.admit(tx(1, 1, 900), &rich(0)).expect("A1");
        pool.admit(tx(2, 0, 500), &rich(0)).expect("B0");
        pool.admit(tx(3, 0, 300), &rich(0)).expect("C0");
        let ids = |txs: Vec<CheckedTx>| txs.iter().map(|t| t.id()).collect::<Vec<_>>();
        assert_eq!(
            ids(pool.select(1 << 20, 10)),
            ids(vec![
                tx(2, 0, 500),
                tx(3, 0, 300),
                tx(1, 0, 200),
                tx(1, 1, 900)
            ])
        );
        assert_eq!(
            ids(pool.select(1 << 20, 2)),
            ids(vec![tx(2, 0, 500), tx(3, 0, 300)])
        );
        // Room for exactly three.
        assert_eq!(pool.select(3 * 166, 10).len(), 3);
        assert_eq!(pool.select(3 * 166 - 1, 10).len(), 2);
    }

    #[test]
    fn a_block_removes_what_it_spends_and_what_it_invalidates() {
        let mut pool = pool(10);
        pool.admit(tx(1, 0, 200), &rich(0)).expect("A0");
        pool.admit(tx(1, 1, 200), &rich(0)).expect("A1");
        pool.admit(tx(1, 2, 200), &rich(0)).expect("A2");
        pool.admit(tx(2, 0, 200), &rich(0)).expect("B0");
        // A block carries A0 and another transaction of A's with nonce 1;
        // A is left with less than A2 costs.
        let other = tx(1, 1, 777);
        let account = |who: &Hash32| {
            if *who == id(1) {
                Account {
                    spendable: 100,
                    immature: 0,
                    nonce: 2,
                }
            } else {
                rich(0)
            }
        };
        let dropped = pool.block_connected(&[tx(1, 0, 200), other], account);
        assert_eq!(
            dropped.len(),
            2,
            "A1 (its nonce was used) and A2 (not covered)"
        );
        assert_eq!(pool.len(), 1);
        assert!(pool.contains(&tx(2, 0, 200).id()));
    }

    /// The eviction order the chain-ends index gives is exactly that of a
    /// scan of the whole fee order for chain ends, on random pools and
    /// newcomers; the indexes stay consistent through admissions,
    /// evictions, blocks and reorgs.
    #[test]
    fn eviction_by_the_chain_ends_index_equals_a_full_scan() {
        fn reference(
            pool: &Mempool,
            bytes: usize,
            rate: FeeRate,
            sender: &Hash32,
        ) -> Option<Vec<Hash32>> {
            let mut free_bytes = pool.limits.max_bytes - pool.bytes.min(pool.limits.max_bytes);
            let mut free_slots = pool.limits.max_count.saturating_sub(pool.entries.len());
            let mut evicted = Vec::new();
            let mut taken: HashMap<Hash32, usize> = HashMap::new();
            while free_bytes < bytes || free_slots == 0 {
                let &(victim_rate, _, victim) = pool.by_rate.iter().find(|(_, _, id)| {
                    let from = pool.entries[id].tx.fields().from;
                    if from == *sender {
                        return false;
                    }
                    let gone = taken.get(&from).copied().unwrap_or(0);
                    pool.senders[&from].values().rev().nth(gone) == Some(id)
                })?;
                if victim_rate >= rate {
                    return None;
                }
                let e = &pool.entries[&victim];
                *taken.entry(e.tx.fields().from).or_default() += 1;
                free_bytes += e.bytes;
                free_slots += 1;
                evicted.push(victim);
            }
            Some(evicted)
        }
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for round in 0..20 {
            let mut pool = Mempool::new(MempoolLimits {
                max_bytes: 40 * 166,
                max_count: 30,
                min_fee_per_kb: 1_000,
            });
            let mut evictions = 0;
            for _ in 0..200 {
                let sender = (next() % 6) as u8 + 1;
                let fee = 170 + next() % 2000;
                let t = tx(sender, pool.next_nonce(&id(sender), &rich(0)), fee);
                let bytes = t.tx().to_bytes().len();
                let rate = FeeRate {
                    fee,
                    bytes: bytes as u64,
                };
                let expected = reference(&pool, bytes, rate, &id(sender));
                let found = pool.make_room(bytes, rate, &id(sender)).ok();
                assert_eq!(found, expected, "round {round}");
                if let Ok(evicted) = pool.admit(t, &rich(0)) {
                    evictions += evicted.len();
                }
                pool.check_indexes().expect("consistent indexes");
            }
            assert!(evictions > 10, "round {round} evicted only {evictions}");
            let block = pool.select(10 * 166, 10);
            let mut accounts: HashMap<Hash32, Account> = HashMap::new();
            for t in &block {
                let a = accounts.entry(t.fields().from).or_insert(rich(0));
                *a = crate::tx::spend(t, a).expect("the pool offers what applies");
            }
            pool.block_connected(&block, |who| accounts.get(who).copied().unwrap_or(rich(0)));
            pool.check_indexes().expect("consistent after a block");
            pool.reorganised(block, |_| rich(0));
            pool.check_indexes().expect("consistent after a reorg");
        }
    }

    /// A block is stored before the pool is told of it: an admission with
    /// the new account drops the sender's mined nonces first, and the next
    /// nonce counts only the pending ones at or above the account's.
    #[test]
    fn an_admission_with_a_newer_account_drops_what_it_mined() {
        let mut pool = pool(10);
        pool.admit(tx(1, 0, 200), &rich(0)).expect("A0");
        pool.admit(tx(1, 1, 200), &rich(0)).expect("A1");
        // A block with A0 is stored; the account moved on, the pool not yet.
        assert_eq!(pool.next_nonce(&id(1), &rich(1)), 2, "A1 still pending");
        assert_eq!(pool.next_nonce(&id(1), &rich(2)), 2, "A0 and A1 mined");
        assert_eq!(pool.next_nonce(&id(1), &rich(0)), 2);
        pool.admit(tx(1, 2, 200), &rich(1)).expect("A2 follows A1");
        assert!(!pool.contains(&tx(1, 0, 200).id()), "A0 was mined");
        assert_eq!(pool.len(), 2);
        // Both mined: A3 is next, not a gap.
        pool.admit(tx(1, 3, 200), &rich(3)).expect("A3");
        assert_eq!(pool.len(), 1);
        assert_eq!(pool.next_nonce(&id(1), &rich(3)), 4);
    }

    /// A reorg took away funds the sender's pending transactions relied
    /// on, and the pool has not been told: an admission drops what the
    /// account no longer covers first, and then judges the newcomer.
    #[test]
    fn an_admission_with_a_poorer_account_drops_what_it_no_longer_covers() {
        let mut pool = pool(10);
        let rich = Account {
            spendable: 1_000,
            immature: 0,
            nonce: 0,
        };
        pool.admit(tx(1, 0, 200), &rich).expect("A0 costs 201");
        let poorer = Account {
            spendable: 180,
            ..rich
        };
        assert_eq!(
            pool.admit(tx(1, 1, 200), &poorer),
            Err(MempoolError::NonceGap {
                expected: 0,
                found: 1
            }),
            "A0 is gone, so nonce 1 leaves a gap"
        );
        assert!(!pool.contains(&tx(1, 0, 200).id()));
        pool.check_indexes().expect("consistent");
        let cheap = tx(1, 0, 170);
        pool.admit(cheap.clone(), &poorer)
            .expect("a nonce 0 it can pay for");
        assert!(pool.contains(&cheap.id()));
        // As rich as before: nothing pending is dropped.
        pool.admit(tx(1, 1, 200), &rich).expect("A1");
        assert_eq!(pool.len(), 2);
    }

    /// After a block, a sender's pending chain keeps exactly what the new
    /// account allows: used nonces go, the rest stays while the balance
    /// covers it, to the last base unit.
    #[test]
    fn a_block_keeps_exactly_what_the_new_account_allows() {
        let chain: Vec<CheckedTx> = (0..4).map(|n| tx(1, n, 200)).collect();
        let cost = 201u64;
        for (spendable, kept) in [(2 * cost, 2), (2 * cost - 1, 1)] {
            let mut pool = pool(10);
            for t in &chain {
                pool.admit(t.clone(), &rich(0)).expect("A's chain");
            }
            // The block mines A0 and another transaction with nonce 1.
            let account = Account {
                spendable,
                immature: 0,
                nonce: 2,
            };
            let dropped = pool.block_connected(&[chain[0].clone(), tx(1, 1, 555)], |_| account);
            let mut expected = vec![chain[1].id()];
            expected.extend(chain[2 + kept..].iter().map(|t| t.id()));
            assert_eq!(dropped, expected, "spendable {spendable}");
            let left: Vec<u64> = pool.iter().map(|t| t.fields().nonce).collect();
            assert_eq!(left.len(), kept);
            assert!(left.iter().all(|n| *n >= 2));
        }
    }

    /// A sender whose account went back (a reorg took its transaction out,
    /// and it did not come back) keeps nothing that would leave a gap.
    #[test]
    fn a_gap_after_a_reorg_drops_the_rest_of_the_chain() {
        let mut pool = pool(10);
        pool.admit(tx(1, 1, 200), &rich(1)).expect("A1");
        pool.admit(tx(1, 2, 200), &rich(1)).expect("A2");
        pool.admit(tx(2, 0, 200), &rich(0)).expect("B0");
        let dropped = pool.reorganised(Vec::new(), |_| rich(0));
        assert_eq!(dropped.len(), 2, "{dropped:?}");
        assert_eq!(pool.len(), 1);
        assert!(pool.contains(&tx(2, 0, 200).id()));
    }

    #[test]
    fn a_reorg_puts_disconnected_transactions_back() {
        let mut pool = pool(10);
        // A1 is pending; A0 was in a block that a reorg disconnected, so
        // A's nonce is 0 again.
        pool.admit(tx(1, 1, 200), &rich(1))
            .expect("A1 after A0 was mined");
        let dropped = pool.reorganised(vec![tx(1, 0, 200)], |_| rich(0));
        assert!(dropped.is_empty(), "{dropped:?}");
        assert_eq!(pool.len(), 2);
        let order: Vec<u64> = pool
            .select(1 << 20, 10)
            .iter()
            .map(|t| t.fields().nonce)
            .collect();
        assert_eq!(order, vec![0, 1]);
    }
}
