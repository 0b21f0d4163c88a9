//! Models: their parameter vectors, canonical hash, and the native linear
//! model's arithmetic, the native [`mlp`] head's; [`onnx`] runs exported ONNX graphs through ONNX
//! Runtime, outside the consensus arithmetic.
//!
//! A model is a flat `Vec<f64>` of parameters. For [`linear`] the layout is
//! `[w_0, …, w_{d-1}, bias]`; for [`mlp`], see there. All arithmetic follows the determinism rules
//! of schema/consensus.md: fixed evaluation order, no fused multiply-add,
//! no libm calls.

pub mod linear;
pub mod mlp;
pub mod onnx;
pub mod onnx_export;

use crate::chain::Hash32;
use sha2::{Digest, Sha256};

/// `model_hash(W) = SHA-256("pouw/model" ‖ postcard(W))`.
///
/// The postcard encoding of a `&[f64]` is the length as an unsigned LEB128
/// varint followed by each value's 8 little-endian bytes; this writes those
/// bytes straight into the hasher through stack buffers instead of
/// encoding into a `Vec`, because the miner hashes the model after every
/// step and must not allocate there. The values go through a buffer of
/// [`HASH_CHUNK`] values at a time, filled by a loop without index checks
/// (a plain copy on little-endian targets), so that a model of up to that
/// many values is one `update` and SHA-256 reads whole blocks straight from
/// the buffer. A test checks it against `encoding::encode`.
pub fn model_hash(params: &[f64]) -> Hash32 {
    const TAG: &[u8] = b"pouw/model";
    // Tag, then a varint of at most 10 bytes.
    let mut head = [0u8; TAG.len() + 10];
    head[..TAG.len()].copy_from_slice(TAG);
    let mut at = TAG.len();
    let mut len = params.len() as u64;
    loop {
        let byte = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            head[at] = byte;
            at += 1;
            break;
        }
        head[at] = byte | 0x80;
        at += 1;
    }
    let mut hasher = Sha256::new();
    hasher.update(&head[..at]);
    let mut buf = [0u8; 8 * HASH_CHUNK];
    for chunk in params.chunks(HASH_CHUNK) {
        let bytes = &mut buf[..8 * chunk.len()];
        for (out, value) in bytes.chunks_exact_mut(8).zip(chunk) {
            out.copy_from_slice(&value.to_le_bytes());
        }
        hasher.update(bytes);
    }
    Hash32(hasher.finalize().into())
}

/// Values that [`model_hash`] copies into its buffer at a time (4 KiB on
/// the stack): more than the largest model the miner hashes every step.
const HASH_CHUNK: usize = 512;

/// Index of the first NaN or infinity, if any.
pub fn first_non_finite(params: &[f64]) -> Option<usize> {
    params.iter().position(|p| !p.is_finite())
}

/// Parameters of a fresh model with `features` inputs: all zero.
pub fn initial_params(features: usize) -> Vec<f64> {
    vec![0.0; features + 1]
}

/// The largest Euclidean norm a training step's gradient keeps: a larger
/// one is scaled down to it (schema/consensus.md). Standardised data give
/// healthy linear gradients a norm near 2; the clip bounds how far one
/// step can move a model whose learning rate is far too large, so that it
/// stays finite and merely scores 0.
pub const GRADIENT_CLIP_NORM: f64 = 8.0;

/// `max(0, R²)` in parts per million, floored, of the predictions
/// `predict(r)` against `holdout_y[r]` for the holdout rows `rows` (repeats
/// allowed); 0 when `rows` is empty, the targets do not vary or the
/// residual is not finite. This is the formula and order of
/// schema/consensus.md §Score and of [`linear::score_ppm`], for heads
/// whose prediction is computed differently.
pub fn r2_score_ppm(holdout_y: &[f64], rows: &[u32], mut predict: impl FnMut(usize) -> f64) -> u32 {
    if rows.is_empty() {
        return 0;
    }
    let mut sum = 0.0;
    for &r in rows {
        sum += holdout_y[r as usize];
    }
    let mean = sum / rows.len() as f64;
    let mut total = 0.0;
    let mut residual = 0.0;
    for &r in rows {
        let r = r as usize;
        let y = holdout_y[r];
        let pred = predict(r);
        total += (y - mean) * (y - mean);
        residual += (pred - y) * (pred - y);
    }
    if total <= 0.0 || !residual.is_finite() {
        return 0;
    }
    let r2 = 1.0 - residual / total;
    if r2 <= 0.0 {
        0
    } else {
        (r2 * 1_000_000.0).floor().min(1_000_000.0) as u32
    }
}

/// The largest learning rate a task or a job may start at. With the
/// gradient clipped to [`GRADIENT_CLIP_NORM`], a step moves the model by at
/// most this times the clip norm, so a model stays finite.
pub const MAX_LEARNING_RATE: f64 = 1000.0;
