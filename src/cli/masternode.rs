//! The original design's masternode.json and its check against the chain.

use crate::consensus::params::ChainParams;
use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::path::Path;

/// `{"reward_amount": 5000000000, "validation_threshold": 0.5, "validation_window": 10}`
#[derive(Debug, Deserialize)]
pub struct MasternodeConfig {
    pub reward_amount: u64,
    pub validation_threshold: f64,
    pub validation_window: u32,
}

impl MasternodeConfig {
    pub fn load(path: &Path) -> Result<MasternodeConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read masternode config {}", path.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("masternode config {} is invalid", path.display()))
    }

    /// Refuse a config whose consensus values differ from the chain's.
    pub fn check(&self, path: &Path, params: &ChainParams) -> Result<()> {
        let file = path.display();
        let chain = &params.network;
        if self.reward_amount != params.reward_amount {
            bail!(
                "masternode config {file}: reward_amount is {} but chain {chain:?} has {}",
                self.reward_amount,
                params.reward_amount
            );
        }
        let threshold = self.validation_threshold;
        let chain_threshold = f64::from(params.validation_threshold_ppm) / 1e6;
        if !threshold.is_finite()
            || (threshold * 1e6).round() != f64::from(params.validation_threshold_ppm)
        {
            bail!(
                "masternode config {file}: validation_threshold is {threshold} but chain {chain:?} has {chain_threshold} ({} ppm)",
                params.validation_threshold_ppm
            );
        }
        if self.validation_window != params.validation_window {
            bail!(
                "masternode config {file}: validation_window is {} but chain {chain:?} has {}",
                self.validation_window,
                params.validation_window
            );
        }
        Ok(())
    }
}
