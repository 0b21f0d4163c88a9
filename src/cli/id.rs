//! `pouwd id`: the node's peer id, its ed25519 public key.

use super::DataDirArg;
use crate::node::DataDir;
use anyhow::{bail, Result};

pub fn run(args: DataDirArg) -> Result<()> {
    let dir = DataDir::new(&args.data_dir);
    if !dir.key_path().exists() {
        bail!(
            "{} has no node key; `pouwd start --data-dir {}` creates one",
            dir.root.display(),
            dir.root.display()
        );
    }
    let key = dir.load_key()?;
    println!("{}", hex::encode(key.verifying_key().to_bytes()));
    Ok(())
}
