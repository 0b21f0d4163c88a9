//! `pouwd wallet`: the account of the data dir's key (its node's miner
//! id): balance, spendable, immature and nonce.
//!
//! On a stopped node it reads the store. On a running one it asks the
//! node's API (`GET /accounts/{id}`), which also counts the transactions
//! pending in the pool; a node without an API is read from the status
//! file it wrote at its last block.

use super::running::{access, Access, RunningNode, API_TIMEOUT};
use super::DataDirArg;
use crate::api::client::get_json;
use crate::chain::Hash32;
use crate::node::views::account_json;
use crate::node::DataDir;
use crate::tx::Account;
use anyhow::{Context, Result};
use serde_json::Value;

#[derive(Debug, clap::Args)]
pub struct WalletArgs {
    #[command(flatten)]
    pub dir: DataDirArg,
    /// Print JSON (amounts in base units, and as tokens in `*_tokens`).
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: WalletArgs) -> Result<()> {
    let dir = DataDir::new(&args.dir.data_dir);
    let access = access(&dir)?;
    let key = dir.load_key()?;
    let id = Hash32(key.verifying_key().to_bytes());
    let (wallet, heading) = match access {
        Access::Stopped(store) => {
            let account = store.account(&id)?;
            // A stopped node holds no pending transactions.
            let mut wallet = account_json(&id, &account, account.nonce);
            wallet["running"] = false.into();
            wallet["source"] = "store".into();
            (wallet, None)
        }
        Access::Running(node) => running_wallet(&dir, &node, &id)?,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&wallet)?);
        return Ok(());
    }
    if let Some(heading) = heading {
        println!("{heading}");
    }
    let tokens = |field: &str| wallet[field].as_str().unwrap_or_default().to_string();
    println!("id: {id}");
    println!("balance: {}", tokens("total_tokens"));
    println!("spendable: {}", tokens("spendable_tokens"));
    println!("immature: {}", tokens("immature_tokens"));
    println!("nonce: {}", wallet["nonce"]);
    if let (Some(next), Some(pending)) = (wallet["next_nonce"].as_u64(), wallet["pending"].as_u64())
    {
        println!("next nonce: {next} ({pending} pending)");
    }
    Ok(())
}

/// The account from the running node's API, or from its status file when
/// it serves none or does not answer; and a line that says which.
fn running_wallet(
    dir: &DataDir,
    node: &RunningNode,
    id: &Hash32,
) -> Result<(Value, Option<String>)> {
    let root = dir.root.display();
    let pid = node.pid();
    match node.api() {
        Ok(Some(addr)) => match get_json(addr, &format!("/accounts/{id}"), API_TIMEOUT) {
            Ok(mut wallet) => {
                wallet["running"] = true.into();
                wallet["source"] = "api".into();
                let heading = format!(
                    "a node is running on {root} (pid {pid}); live figures from its API at {addr}:"
                );
                return Ok((wallet, Some(heading)));
            }
            Err(e) => tracing::warn!(
                target: "pouwd",
                "note: the node's API at {addr} did not answer ({e:#}); \
                 showing the status file the node wrote at its last block"
            ),
        },
        Ok(None) => {}
        Err(e) => crate::say!("note: {e:#}"),
    }
    let wallet = from_status_file(id, &node.status)?;
    let heading = format!(
        "a node is running on {root} (pid {pid}); figures as of its last block, \
         without pending transactions (a node started with --api shows live ones):"
    );
    Ok((wallet, Some(heading)))
}

/// The account as the status file has it: no pending transactions known.
fn from_status_file(id: &Hash32, status: &Value) -> Result<Value> {
    let field = |name: &str| {
        status[name]
            .as_u64()
            .with_context(|| format!("the node's status file has no {name}"))
    };
    let total = field("balance")?;
    let spendable = field("spendable")?;
    let account = Account {
        spendable,
        immature: total.saturating_sub(spendable),
        nonce: field("nonce")?,
    };
    let mut wallet = account_json(id, &account, account.nonce);
    wallet["next_nonce"] = Value::Null;
    wallet["pending"] = Value::Null;
    wallet["running"] = true.into();
    wallet["source"] = "status_file".into();
    Ok(wallet)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_status_file_gives_balances_but_no_pending_count() {
        let id = Hash32([3; 32]);
        let status = json!({"balance": 600_000_000u64, "spendable": 100_000_000u64, "nonce": 2});
        let wallet = from_status_file(&id, &status).unwrap();
        assert_eq!(wallet["spendable"], 100_000_000u64);
        assert_eq!(wallet["immature"], 500_000_000u64);
        assert_eq!(wallet["total_tokens"], "6.00000000");
        assert_eq!(wallet["nonce"], 2);
        assert_eq!(wallet["next_nonce"], Value::Null);
        assert_eq!(wallet["source"], "status_file");
        let e = from_status_file(&id, &json!({"balance": 1, "spendable": 1})).unwrap_err();
        assert!(e.to_string().contains("no nonce"), "{e}");
    }
}
