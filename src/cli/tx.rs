//! `pouwd tx`: one transaction and where it is: pending in the running
//! node's pool, in a block of the best chain, or unknown.
//!
//! On a stopped node it reads the store's transaction index (a stopped
//! node's pool is empty: pending transactions live in memory only). On a
//! running one it asks the node's API (`GET /tx/{id}`).

use super::running::{access, Access, API_TIMEOUT};
use super::DataDirArg;
use crate::api::client::get_json;
use crate::chain::Hash32;
use crate::node::views::tx_in_chain;
use crate::node::DataDir;
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

#[derive(Debug, clap::Args)]
pub struct TxArgs {
    #[command(flatten)]
    pub dir: DataDirArg,
    /// The transaction's id (64 hex digits), as `pouwd send` prints it.
    #[arg(value_name = "ID", value_parser = |text: &str| Hash32::from_hex(text))]
    pub id: Hash32,
    /// Print JSON (amounts in base units, and as tokens in `*_tokens`).
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: TxArgs) -> Result<()> {
    let dir = DataDir::new(&args.dir.data_dir);
    let id = args.id;
    let (found, unknown) = match access(&dir)? {
        Access::Stopped(store) => (
            tx_in_chain(&store, &id)?,
            "no block of the best chain holds it (no node is running on the data dir, \
             so none holds it pending)",
        ),
        Access::Running(node) => {
            let addr = node.require_api(&dir, "`pouwd tx` on a running node")?;
            match get_json(addr, &format!("/tx/{id}"), API_TIMEOUT) {
                Ok(found) => (Some(found), ""),
                Err(e) if e.status() == Some(404) => (
                    None,
                    "neither the node's pool nor a block of its best chain holds it",
                ),
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("the node's API at {addr} does not answer"))
                }
            }
        }
    };
    let Some(found) = found else {
        if args.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&json!({"id": id.to_hex(), "state": "unknown"}))?
            );
        } else {
            println!("id: {id}\nstate: unknown");
        }
        bail!("transaction {id} is unknown: {unknown}");
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&found)?);
        return Ok(());
    }
    println!("id: {id}");
    println!("state: {}", state_line(&found));
    let text = |field: &str| match &found[field] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    for field in ["from", "to"] {
        println!("{field}: {}", text(field));
    }
    println!("amount: {}", text("amount_tokens"));
    println!("fee: {}", text("fee_tokens"));
    println!("nonce: {}", text("nonce"));
    println!(
        "size: {} bytes ({:.2} base units of fee per byte)",
        text("bytes"),
        found["fee_per_byte"].as_f64().unwrap_or_default()
    );
    println!("chain: {}", text("chain"));
    Ok(())
}

/// `pending (in the node's pool)`, or `in block H (HASH), N confirmations`.
fn state_line(found: &Value) -> String {
    match found["state"].as_str() {
        Some("in_block") => format!(
            "in block {} ({}), {} confirmation(s)",
            found["height"],
            found["block"].as_str().unwrap_or_default(),
            found["confirmations"]
        ),
        Some("pending") => "pending (in the node's pool, waiting for a block)".into(),
        other => other.unwrap_or("unknown").to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_read_as_sentences() {
        let mined = json!({"state": "in_block", "height": 12, "block": "ab", "confirmations": 3});
        assert_eq!(state_line(&mined), "in block 12 (ab), 3 confirmation(s)");
        assert!(state_line(&json!({"state": "pending"})).starts_with("pending"));
    }
}
