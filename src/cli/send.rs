//! `pouwd send`: sign a transfer with the data dir's key and hand it to the
//! node running on that data dir, through its API.
//!
//! The node must be running with `--api`: it gives the chain's genesis
//! hash (`GET /status`) and the account's next nonce counting its pending
//! transactions (`GET /accounts/{id}`), and takes the signed transaction
//! (`POST /tx`, with the token of `DATA_DIR/api.cookie`). Prints the
//! transaction's id; a refused transaction prints the node's reason and
//! exits 1. `--out FILE` writes the signed bytes instead, with or without
//! a running node.

use super::running::{access, Access, API_TIMEOUT};
use super::DataDirArg;
use crate::api::client::{get_json, post_tx, ClientError};
use crate::api::cookie;
use crate::chain::{strict_key, Hash32};
use crate::node::DataDir;
use crate::tx::{amount, TxFields, TxKind, TX_VERSION};
use anyhow::{bail, Context, Result};
use std::io::Write;
use std::path::PathBuf;

/// The fee `send` pays without `--fee`: 0.00001 tokens, 1000 base units.
/// A transfer encodes in at most 192 bytes, so the default minimum relay
/// fee (1000 base units per 1000 bytes) asks at most 192 base units of
/// it: the default pays more than five times that.
pub const DEFAULT_FEE: &str = "0.00001";

#[derive(Debug, clap::Args)]
pub struct SendArgs {
    #[command(flatten)]
    pub dir: DataDirArg,
    /// The recipient's account id: an ed25519 public key, 64 hex digits,
    /// as `pouwd id` and `pouwd wallet` print it.
    #[arg(long, value_name = "ID", value_parser = parse_recipient)]
    pub to: Hash32,
    /// Tokens to send, with at most 8 decimals (1 token = 100000000 base units).
    #[arg(long, value_name = "TOKENS", value_parser = parse_amount)]
    pub amount: u64,
    /// The fee in tokens, paid to the miner of the block that includes the
    /// transaction; it must meet the node's minimum relay fee.
    #[arg(long, value_name = "TOKENS", default_value = DEFAULT_FEE,
          value_parser = |text: &str| amount::parse(text))]
    pub fee: u64,
    /// Write the signed transaction's bytes to FILE (`-` for stdout)
    /// instead of handing it to the node, e.g. for `POST /tx`. Works
    /// without a running node too: the nonce is then the stored chain's,
    /// not counting pending transactions.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

fn parse_recipient(text: &str) -> Result<Hash32, String> {
    let id = Hash32::from_hex(text)?;
    if strict_key(&id).is_none() {
        return Err(
            "not an ed25519 public key that can sign: nobody could spend what it receives".into(),
        );
    }
    Ok(id)
}

fn parse_amount(text: &str) -> Result<u64, String> {
    match amount::parse(text) {
        Ok(0) => Err("a transfer moves at least 0.00000001 tokens (one base unit)".into()),
        Ok(value) => Ok(value),
        Err(e) => Err(e.to_string()),
    }
}

pub fn run(args: SendArgs) -> Result<()> {
    let dir = DataDir::new(&args.dir.data_dir);
    let root = dir.root.display();
    let access = access(&dir)?;
    let key = dir.load_key()?;
    let from = Hash32(key.verifying_key().to_bytes());
    let (genesis, nonce, node) = match access {
        Access::Stopped(store) => {
            if args.out.is_none() {
                bail!(
                    "no node is running on {root}: `pouwd send` hands the transaction to the \
                     node running on the data dir, through its API; start one with \
                     `pouwd start --data-dir {root} --api`, then send again (or write the \
                     signed transaction to a file with --out FILE)"
                );
            }
            let nonce = store.account(&from)?.nonce;
            crate::say!(
                "note: no node is running on {root}: nonce {nonce} is the account's on the \
                 stored chain; transactions a node may hold pending are not counted"
            );
            (store.genesis_hash(), nonce, None)
        }
        Access::Running(node) => {
            let addr = node.require_api(&dir, "`pouwd send`")?;
            let unreachable = || format!("the node's API at {addr} does not answer");
            let status = node
                .live_status(addr, API_TIMEOUT)
                .with_context(unreachable)?;
            let genesis = status["genesis"]
                .as_str()
                .and_then(|g| Hash32::from_hex(g).ok())
                .context("the node's /status has no genesis hash")?;
            let account = get_json(addr, &format!("/accounts/{from}"), API_TIMEOUT)
                .with_context(unreachable)?;
            let nonce = account["next_nonce"]
                .as_u64()
                .context("the node's /accounts answer has no next_nonce")?;
            (genesis, nonce, Some((addr, account)))
        }
    };
    let tx = TxFields {
        version: TX_VERSION,
        chain: genesis,
        from,
        nonce,
        fee: args.fee,
        kind: TxKind::Transfer {
            to: args.to,
            amount: args.amount,
        },
    }
    .sign(&key);
    let what = format!(
        "{} tokens to {} with a fee of {} (nonce {nonce})",
        amount::format(args.amount),
        args.to,
        amount::format(args.fee),
    );
    if let Some(path) = &args.out {
        return write_signed(path, &tx, &what);
    }
    let Some((addr, account)) = node else {
        bail!("no node to send to");
    };
    post_signed(&dir, addr, &tx, |message| {
        anyhow::anyhow!(
            "the node refused the transaction: {message}\n\
             (the account has {} tokens spendable and {} immature, and {} transaction(s) pending)",
            account["spendable_tokens"].as_str().unwrap_or("?"),
            account["immature_tokens"].as_str().unwrap_or("?"),
            account["pending"]
        )
    })?;
    println!("{}", tx.id());
    crate::say!(
        "sent {what}; the node holds it in its pool until a block includes it: \
         `pouwd tx --data-dir {root} {}`",
        tx.id()
    );
    Ok(())
}

/// `--out`: write a signed transaction's bytes to `path` (`-` for
/// stdout), print its id unless it went to stdout, and say what it is.
pub(super) fn write_signed(path: &std::path::Path, tx: &crate::tx::Tx, what: &str) -> Result<()> {
    let bytes = tx.to_bytes();
    let mut out = super::output(path)?;
    out.write_all(&bytes)?;
    out.flush()?;
    if path.as_os_str() != "-" {
        println!("{}", tx.id());
    }
    crate::say!(
        "wrote transaction {} ({} bytes) to {}: {what}; not sent",
        tx.id(),
        bytes.len(),
        path.display()
    );
    Ok(())
}

/// `POST /tx` of a signed transaction with the data dir's token; a refusal
/// other than of the token becomes `refused(message)`.
pub(super) fn post_signed(
    dir: &DataDir,
    addr: std::net::SocketAddr,
    tx: &crate::tx::Tx,
    refused: impl FnOnce(String) -> anyhow::Error,
) -> Result<()> {
    let cookie_path = dir.cookie_path();
    let token = cookie::read(&cookie_path).with_context(|| {
        format!(
            "cannot read the API's token {} (the node writes it when it starts with --api)",
            cookie_path.display()
        )
    })?;
    match post_tx(addr, &token, &tx.to_bytes(), API_TIMEOUT) {
        Ok(accepted) if accepted["id"] == tx.id().to_hex() => Ok(()),
        Ok(other) => bail!("the node answered {other}, not the transaction's id"),
        Err(ClientError::Status {
            status: 401,
            message,
        }) => bail!(
            "the node refused the token of {}: {message}",
            cookie_path.display()
        ),
        Err(ClientError::Status { message, .. }) => Err(refused(message)),
        Err(e) => Err(e).with_context(|| format!("the node's API at {addr} does not answer")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_fee_is_five_times_the_default_minimum_for_the_largest_transfer() {
        let fee = amount::parse(DEFAULT_FEE).unwrap();
        assert_eq!(fee, 1_000);
        // Every varint at its longest.
        let key = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
        let largest = TxFields {
            version: TX_VERSION,
            chain: Hash32([1; 32]),
            from: Hash32(key.verifying_key().to_bytes()),
            nonce: u64::MAX,
            fee: u64::MAX,
            kind: TxKind::Transfer {
                to: Hash32([2; 32]),
                amount: u64::MAX,
            },
        }
        .sign(&key);
        let bytes = largest.to_bytes().len() as u64;
        assert_eq!(bytes, 192);
        let min_fee_per_kb = crate::node::mempool::MempoolLimits::default().min_fee_per_kb;
        let min_fee = (min_fee_per_kb * bytes).div_ceil(1000);
        assert!(fee >= 5 * min_fee, "{fee} against {min_fee}");
    }

    #[test]
    fn recipients_and_amounts_are_checked_before_anything_is_signed() {
        let key = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
        let id = hex::encode(key.verifying_key().to_bytes());
        assert_eq!(parse_recipient(&id).unwrap().to_hex(), id);
        assert!(parse_recipient("abc").unwrap_err().contains("hex"));
        // The identity point: a canonical encoding of small order.
        let mut identity = "00".repeat(32);
        identity.replace_range(0..2, "01");
        assert!(parse_recipient(&identity)
            .unwrap_err()
            .contains("nobody could spend"));
        assert_eq!(parse_amount("1.5"), Ok(150_000_000));
        assert_eq!(parse_amount("0.00000001"), Ok(1));
        assert!(parse_amount("0").unwrap_err().contains("at least"));
        assert!(parse_amount("0.000000001")
            .unwrap_err()
            .contains("8 decimals"));
    }
}
