//! Transactions: their one canonical encoding, their id and signature,
//! and the rules a transaction must keep, alone and against its sender's
//! account (schema/transactions.md).
//!
//! Pure, like [`crate::chain`]: bytes, the chain's genesis hash and an
//! [`Account`] go in, a [`CheckedTx`] or the [`TxError`] that names the
//! broken rule comes out. Nothing here reads a clock, a file, the store or
//! a socket. The checks run cheapest first: the encoding, then the fields,
//! then the signature, then the account.

pub mod amount;
pub mod job;

use crate::chain::encoding::{decode_strict, encode, DecodeError};
use crate::chain::{strict_key, tagged_sha256, Hash32};
use crate::work::merkle;
use ed25519_dalek::Signature;
pub use job::{Head, JobError, JobLimits, JobSpec};
use serde::{Deserialize, Serialize};
use serde_big_array::BigArray;
use thiserror::Error;

/// The only transaction version this node knows.
pub const TX_VERSION: u16 = 1;
/// The largest transfer encoding any chain accepts.
pub const MAX_TX_BYTES: usize = 1024;
/// The largest transaction encoding of any kind any chain accepts: a
/// `SubmitJob` carries its dataset ([`job::MAX_JOB_TX_BYTES`]).
pub const MAX_ENCODED_TX_BYTES: usize = job::MAX_JOB_TX_BYTES;

/// What a transaction does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxKind {
    /// Move `amount` base units from the sender's spendable balance to `to`.
    Transfer { to: Hash32, amount: u64 },
    /// Queue a training job, with `spec.bounty` taken into escrow.
    SubmitJob(Box<JobSpec>),
}

/// The fields the sender signs: everything but the signature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxFields {
    pub version: u16,
    /// The genesis hash of the chain the transaction is for.
    pub chain: Hash32,
    /// The sender: an ed25519 public key, the same as a miner id.
    pub from: Hash32,
    /// The sender's nonce: how many of its transactions the chain holds
    /// before this one.
    pub nonce: u64,
    /// Base units paid to the miner of the block that includes it.
    pub fee: u64,
    pub kind: TxKind,
}

impl TxFields {
    /// The transaction id: `SHA-256("pouw/tx" ‖ postcard(fields))`. The
    /// signature signs it.
    pub fn id(&self) -> Hash32 {
        tagged_sha256(b"pouw/tx", &[&encode(self)])
    }

    /// Sign with the sender's key: the signature over [`TxFields::id`].
    pub fn sign(self, key: &ed25519_dalek::SigningKey) -> Tx {
        use ed25519_dalek::Signer;
        let signature = key.sign(&self.id().0).to_bytes();
        Tx {
            fields: self,
            signature,
        }
    }

    /// Base units the sender's spendable balance must cover: what it moves
    /// plus the fee; `None` when that overflows.
    pub fn cost(&self) -> Option<u64> {
        match &self.kind {
            TxKind::Transfer { amount, .. } => amount.checked_add(self.fee),
            TxKind::SubmitJob(spec) => spec.bounty.checked_add(self.fee),
        }
    }
}

/// A signed transaction, as decoded: not yet checked against any rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tx {
    pub fields: TxFields,
    #[serde(with = "BigArray")]
    pub signature: [u8; 64],
}

impl Tx {
    pub fn id(&self) -> Hash32 {
        self.fields.id()
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        encode(self)
    }

    /// Strictly decode one transaction of at most [`MAX_ENCODED_TX_BYTES`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Tx, DecodeError> {
        decode_strict(bytes, MAX_ENCODED_TX_BYTES, "transaction")
    }
}

/// An account's state as the ledger derives it from the chain.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// Base units the account can spend now.
    pub spendable: u64,
    /// Rewards and fees not yet matured: they cannot be spent.
    pub immature: u64,
    /// The nonce its next transaction must carry.
    pub nonce: u64,
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum TxError {
    #[error("malformed: {0}")]
    Decode(#[from] DecodeError),
    #[error("unknown transaction version {found} (this node knows {known})")]
    UnknownVersion { found: u16, known: u16 },
    #[error("transaction is for the chain with genesis {found}, this chain's is {expected}")]
    WrongChain { expected: Hash32, found: Hash32 },
    #[error("a transfer of 0 base units")]
    ZeroAmount,
    #[error("amount plus fee overflows a 64-bit count of base units")]
    Overflow,
    #[error("sender {key} is not a canonically encoded ed25519 key, or has small order")]
    BadSenderKey { key: Hash32 },
    #[error("signature does not verify under the sender's key")]
    BadSignature,
    #[error("nonce {found} was already used: the account's next nonce is {expected}")]
    NonceUsed { expected: u64, found: u64 },
    #[error("nonce {found} leaves a gap: the account's next nonce is {expected}")]
    NonceGap { expected: u64, found: u64 },
    #[error("the job is invalid: {0}")]
    Job(#[from] JobError),
    #[error("spends {needed} base units, but only {spendable} are spendable ({immature} more are immature)")]
    Overspend {
        needed: u64,
        spendable: u64,
        immature: u64,
    },
}

/// A transaction that passed [`check_tx`]: it keeps every rule that does
/// not depend on the ledger.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckedTx {
    tx: Tx,
    id: Hash32,
}

impl CheckedTx {
    /// A transaction of a block the store holds: it was checked with its
    /// block, so it is not checked again.
    pub fn of_stored_block(tx: Tx) -> CheckedTx {
        let id = tx.id();
        CheckedTx { tx, id }
    }
    pub fn tx(&self) -> &Tx {
        &self.tx
    }
    pub fn into_tx(self) -> Tx {
        self.tx
    }
    pub fn id(&self) -> Hash32 {
        self.id
    }
    pub fn fields(&self) -> &TxFields {
        &self.tx.fields
    }
}

/// The rules that need no ledger: version, chain, amounts, a job's own
/// rules within the chain's `jobs` bounds, key and signature.
pub fn check_tx(tx: Tx, genesis: &Hash32, jobs: &JobLimits) -> Result<CheckedTx, TxError> {
    let f = &tx.fields;
    if f.version != TX_VERSION {
        return Err(TxError::UnknownVersion {
            found: f.version,
            known: TX_VERSION,
        });
    }
    if f.chain != *genesis {
        return Err(TxError::WrongChain {
            expected: *genesis,
            found: f.chain,
        });
    }
    match &f.kind {
        TxKind::Transfer { amount: 0, .. } => return Err(TxError::ZeroAmount),
        TxKind::Transfer { .. } => {}
        // Every number first: cheap, and the cost below needs the bounty.
        TxKind::SubmitJob(spec) => job::check_job_fields(spec, jobs)?,
    }
    if f.cost().is_none() {
        return Err(TxError::Overflow);
    }

    let key = strict_key(&f.from).ok_or(TxError::BadSenderKey { key: f.from })?;
    let id = f.id();
    key.verify_strict(&id.0, &Signature::from_bytes(&tx.signature))
        .map_err(|_| TxError::BadSignature)?;
    // The dearest check last: a job's dataset is parsed and prepared.
    // A transfer's fields bound its encoding (at most 192 bytes).
    if let TxKind::SubmitJob(spec) = &f.kind {
        job::check_job(spec, jobs, encode(&tx).len())?;
    }
    Ok(CheckedTx { tx, id })
}

/// The header's `tx_root`: the RFC 6962 root over the leaves
/// `SHA-256(0x00 ‖ id)` of the transactions in block order; `SHA-256()`
/// for a block without any.
pub fn tx_root(txs: &[Tx]) -> Hash32 {
    tx_root_of_ids(&txs.iter().map(Tx::id).collect::<Vec<_>>())
}

/// [`tx_root`] of transactions whose ids are known.
pub fn tx_root_of_ids(ids: &[Hash32]) -> Hash32 {
    let leaves: Vec<Hash32> = ids.iter().map(merkle::leaf_hash).collect();
    merkle::root(&leaves)
}

/// Decode and check one transaction from untrusted bytes.
pub fn decode_and_check(
    bytes: &[u8],
    genesis: &Hash32,
    jobs: &JobLimits,
) -> Result<CheckedTx, TxError> {
    check_tx(Tx::from_bytes(bytes)?, genesis, jobs)
}

/// The rules against the sender's account: the nonce is the next one and
/// the spendable balance covers amount and fee. Returns the account after
/// the transaction (the recipient is credited by the caller).
pub fn spend(tx: &CheckedTx, account: &Account) -> Result<Account, TxError> {
    let f = tx.fields();
    if f.nonce < account.nonce {
        return Err(TxError::NonceUsed {
            expected: account.nonce,
            found: f.nonce,
        });
    }
    if f.nonce > account.nonce {
        return Err(TxError::NonceGap {
            expected: account.nonce,
            found: f.nonce,
        });
    }
    // check_tx refused an overflowing cost.
    let needed = f.cost().ok_or(TxError::Overflow)?;
    let spendable = account
        .spendable
        .checked_sub(needed)
        .ok_or(TxError::Overspend {
            needed,
            spendable: account.spendable,
            immature: account.immature,
        })?;
    Ok(Account {
        spendable,
        immature: account.immature,
        nonce: account.nonce + 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;

    const GENESIS: Hash32 = Hash32([7; 32]);

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn id_of(key: &SigningKey) -> Hash32 {
        Hash32(key.verifying_key().to_bytes())
    }

    fn fields(from: &SigningKey, nonce: u64, amount: u64, fee: u64) -> TxFields {
        TxFields {
            version: TX_VERSION,
            chain: GENESIS,
            from: id_of(from),
            nonce,
            fee,
            kind: TxKind::Transfer {
                to: id_of(&key(2)),
                amount,
            },
        }
    }

    fn transfer(nonce: u64, amount: u64, fee: u64) -> Tx {
        fields(&key(1), nonce, amount, fee).sign(&key(1))
    }

    fn checked(tx: Tx) -> CheckedTx {
        check_tx(tx, &GENESIS, &crate::tx::JobLimits::default()).expect("a valid transaction")
    }

    #[test]
    fn a_signed_transfer_checks_and_round_trips() {
        let tx = transfer(0, 10, 1);
        let bytes = tx.to_bytes();
        assert!(bytes.len() <= MAX_TX_BYTES);
        let again =
            decode_and_check(&bytes, &GENESIS, &crate::tx::JobLimits::default()).expect("valid");
        assert_eq!(again.tx(), &tx);
        assert_eq!(again.id(), tx.id());
        assert_eq!(
            tx.id(),
            tagged_sha256(b"pouw/tx", &[&encode(&tx.fields)]),
            "the id hashes the fields, not the signature"
        );
    }

    #[test]
    fn a_bad_signature_is_refused() {
        let mut tx = transfer(0, 10, 1);
        tx.signature[5] ^= 1;
        assert_eq!(
            check_tx(tx, &GENESIS, &crate::tx::JobLimits::default()),
            Err(TxError::BadSignature)
        );
        // Signed by another key than the sender's.
        let tx = fields(&key(1), 0, 10, 1).sign(&key(3));
        assert_eq!(
            check_tx(tx, &GENESIS, &crate::tx::JobLimits::default()),
            Err(TxError::BadSignature)
        );
        // The fields changed after signing.
        let mut tx = transfer(0, 10, 1);
        tx.fields.fee = 2;
        assert_eq!(
            check_tx(tx, &GENESIS, &crate::tx::JobLimits::default()),
            Err(TxError::BadSignature)
        );
    }

    #[test]
    fn a_sender_key_that_is_not_canonical_or_has_small_order_is_refused() {
        // The identity point: canonical, but of small order.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        // y = p (2^255 - 19) encodes 0 non-canonically.
        let mut non_canonical = [0xffu8; 32];
        non_canonical[0] = 0xed;
        non_canonical[31] = 0x7f;
        for from in [Hash32(identity), Hash32(non_canonical)] {
            let mut tx = transfer(0, 10, 1);
            tx.fields.from = from;
            assert_eq!(
                check_tx(tx, &GENESIS, &crate::tx::JobLimits::default()),
                Err(TxError::BadSenderKey { key: from })
            );
        }
    }

    #[test]
    fn a_transaction_for_another_chain_is_refused() {
        let other = Hash32([8; 32]);
        let tx = transfer(0, 10, 1);
        assert_eq!(
            check_tx(tx.clone(), &other, &crate::tx::JobLimits::default()),
            Err(TxError::WrongChain {
                expected: other,
                found: GENESIS
            })
        );
        checked(tx);
    }

    #[test]
    fn an_unknown_version_is_refused() {
        let mut f = fields(&key(1), 0, 10, 1);
        f.version = TX_VERSION + 1;
        assert_eq!(
            check_tx(f.sign(&key(1)), &GENESIS, &crate::tx::JobLimits::default()),
            Err(TxError::UnknownVersion {
                found: TX_VERSION + 1,
                known: TX_VERSION
            })
        );
    }

    #[test]
    fn zero_and_overflowing_amounts_are_refused() {
        assert_eq!(
            check_tx(
                transfer(0, 0, 1),
                &GENESIS,
                &crate::tx::JobLimits::default()
            ),
            Err(TxError::ZeroAmount)
        );
        checked(transfer(0, 1, 0));
        // amount + fee at u64::MAX is fine, one more overflows.
        checked(transfer(0, u64::MAX - 5, 5));
        assert_eq!(
            check_tx(
                transfer(0, u64::MAX - 5, 6),
                &GENESIS,
                &crate::tx::JobLimits::default()
            ),
            Err(TxError::Overflow)
        );
        assert_eq!(
            check_tx(
                transfer(0, u64::MAX, 1),
                &GENESIS,
                &crate::tx::JobLimits::default()
            ),
            Err(TxError::Overflow)
        );
    }

    #[test]
    fn the_nonce_must_be_the_accounts_next_one() {
        let account = Account {
            spendable: 100,
            immature: 0,
            nonce: 3,
        };
        let after = spend(&checked(transfer(3, 10, 1)), &account).expect("the next nonce");
        assert_eq!(
            after,
            Account {
                spendable: 89,
                immature: 0,
                nonce: 4
            }
        );
        // A replay: the nonce was used.
        assert_eq!(
            spend(&checked(transfer(2, 10, 1)), &account),
            Err(TxError::NonceUsed {
                expected: 3,
                found: 2
            })
        );
        // A gap.
        assert_eq!(
            spend(&checked(transfer(4, 10, 1)), &account),
            Err(TxError::NonceGap {
                expected: 3,
                found: 4
            })
        );
        // Replaying a transaction against the account after it fails.
        let tx = checked(transfer(3, 10, 1));
        assert_eq!(
            spend(&tx, &after),
            Err(TxError::NonceUsed {
                expected: 4,
                found: 3
            })
        );
    }

    #[test]
    fn spending_more_than_the_spendable_balance_is_refused() {
        let account = Account {
            spendable: 11,
            immature: 1_000,
            nonce: 0,
        };
        // Exactly the spendable balance: amount 10 plus fee 1.
        let after = spend(&checked(transfer(0, 10, 1)), &account).expect("covered");
        assert_eq!(after.spendable, 0);
        assert_eq!(after.immature, 1_000, "immature rewards stay");
        // One more than spendable, however much is immature.
        assert_eq!(
            spend(&checked(transfer(0, 11, 1)), &account),
            Err(TxError::Overspend {
                needed: 12,
                spendable: 11,
                immature: 1_000
            })
        );
        assert_eq!(
            spend(&checked(transfer(0, 10, 2)), &account),
            Err(TxError::Overspend {
                needed: 12,
                spendable: 11,
                immature: 1_000
            })
        );
    }

    #[test]
    fn non_canonical_oversized_and_trailing_encodings_are_refused() {
        let bytes = transfer(0, 10, 1).to_bytes();
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(matches!(
            Tx::from_bytes(&trailing),
            Err(DecodeError::TrailingBytes { .. })
        ));
        // The nonce 0 written as a two-byte varint (0x80 0x00): postcard
        // reads it, the re-encoding check refuses it.
        let nonce_at = 1 + 32 + 32;
        assert_eq!(bytes[nonce_at], 0);
        let mut long = bytes[..nonce_at].to_vec();
        long.extend([0x80, 0x00]);
        long.extend(&bytes[nonce_at + 1..]);
        assert_eq!(
            Tx::from_bytes(&long),
            Err(DecodeError::NonCanonical {
                what: "transaction"
            })
        );
        let mut oversized = bytes.clone();
        oversized.resize(MAX_ENCODED_TX_BYTES + 1, 0);
        assert_eq!(
            decode_and_check(&oversized, &GENESIS, &crate::tx::JobLimits::default()),
            Err(TxError::Decode(DecodeError::TooLarge {
                what: "transaction",
                found: MAX_ENCODED_TX_BYTES + 1,
                limit: MAX_ENCODED_TX_BYTES
            }))
        );
    }
}
