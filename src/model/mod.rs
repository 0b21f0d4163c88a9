//! Models: their parameter vectors, canonical hash, and the native linear
//! model's arithmetic.
//!
//! A model is a flat `Vec<f64>` of parameters. For [`linear`] the layout is
//! `[w_0, …, w_{d-1}, bias]`. All arithmetic follows the determinism rules
//! of schema/consensus.md: fixed evaluation order, no fused multiply-add,
//! no libm calls.

pub mod linear;

use crate::chain::{encoding, tagged_sha256, Hash32};

/// `model_hash(W) = SHA-256("pouw/model" ‖ postcard(W))`.
pub fn model_hash(params: &[f64]) -> Hash32 {
    tagged_sha256(b"pouw/model", &[&encoding::encode(&params)])
}

/// Index of the first NaN or infinity, if any.
pub fn first_non_finite(params: &[f64]) -> Option<usize> {
    params.iter().position(|p| !p.is_finite())
}

/// Parameters of a fresh model with `features` inputs: all zero.
pub fn initial_params(features: usize) -> Vec<f64> {
    vec![0.0; features + 1]
}
