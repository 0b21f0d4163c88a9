//! Native linear regression: prediction, one SGD step on mean squared
//! error, and the R² score, all in a fixed evaluation order.

use crate::dataset::Prepared;

/// `bias + Σ_j w_j x_j`, summed in ascending `j` after the bias.
#[inline]
pub fn predict(params: &[f64], row: &[f64]) -> f64 {
    let (weights, bias) = params.split_at(row.len());
    let mut acc = bias[0];
    for (w, x) in weights.iter().zip(row) {
        acc += w * x;
    }
    acc
}

/// Scratch space for [`sgd_step`], so the hot loop never allocates.
#[derive(Clone, Debug)]
pub struct StepScratch {
    rows: Vec<f64>,
    errors: Vec<f64>,
    grad: Vec<f64>,
}

impl StepScratch {
    pub fn new(batch_size: usize, features: usize) -> StepScratch {
        StepScratch {
            rows: vec![0.0; batch_size * features],
            errors: vec![0.0; batch_size],
            grad: vec![0.0; features + 1],
        }
    }
}

/// One mini-batch gradient-descent step on MSE over the training rows
/// `indices`: `W ← W − scale · Σ_b e_b x_b`, with `e_b = pred_b − y_b` and
/// `scale = learning_rate · 2 / batch_size`. Sums run in ascending batch
/// position; the bias is the last parameter.
#[inline]
pub fn sgd_step(
    params: &mut [f64],
    data: &Prepared,
    indices: &[u32],
    scale: f64,
    scratch: &mut StepScratch,
) {
    let d = data.features();
    let batch = indices.len();
    let rows = &mut scratch.rows[..batch * d];
    for (b, &r) in indices.iter().enumerate() {
        let start = r as usize * d;
        rows[b * d..(b + 1) * d].copy_from_slice(&data.train_x[start..start + d]);
    }
    let (weights, bias) = params.split_at_mut(d);
    // Forward pass: each prediction starts at the bias and adds w_j x_j in
    // ascending j; the batch rows are independent chains.
    let errors = &mut scratch.errors[..batch];
    errors.fill(bias[0]);
    for (j, w) in weights.iter().enumerate() {
        for (b, e) in errors.iter_mut().enumerate() {
            *e += w * rows[b * d + j];
        }
    }
    for (e, &r) in errors.iter_mut().zip(indices) {
        *e -= data.train_y[r as usize];
    }
    // Gradient: for each parameter, the sum over the batch in ascending b.
    let grad = &mut scratch.grad;
    grad.fill(0.0);
    for (b, &e) in errors.iter().enumerate() {
        let row = &rows[b * d..(b + 1) * d];
        for (g, x) in grad[..d].iter_mut().zip(row) {
            *g += e * x;
        }
        grad[d] += e;
    }
    for (w, g) in weights.iter_mut().zip(&grad[..d]) {
        *w -= scale * g;
    }
    bias[0] -= scale * grad[d];
}

/// `max(0, R²)` in parts per million of `params` on the holdout rows
/// `rows` (repeats allowed), floored; 0 when the targets do not vary.
pub fn score_ppm(params: &[f64], data: &Prepared, rows: &[u32]) -> u32 {
    if rows.is_empty() {
        return 0;
    }
    let d = data.features();
    let mut sum = 0.0;
    for &r in rows {
        sum += data.holdout_y[r as usize];
    }
    let mean = sum / rows.len() as f64;
    let mut total = 0.0;
    let mut residual = 0.0;
    for &r in rows {
        let r = r as usize;
        let y = data.holdout_y[r];
        let pred = predict(params, &data.holdout_x[r * d..(r + 1) * d]);
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
