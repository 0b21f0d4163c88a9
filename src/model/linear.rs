//! Native linear regression: prediction, one SGD step on mean squared
//! error, and the R² score, all in a fixed evaluation order.

use crate::dataset::Prepared;

/// `bias + Σ_j w_j x_j`, summed in ascending `j` after the bias.
#[inline]
pub fn predict(params: &[f64], row: &[f64]) -> f64 {
    let (weights, bias) = params.split_at(row.len());
    predict_with_bias(weights, bias[0], row)
}

/// [`predict`] with the bias passed apart from the weights.
#[inline]
fn predict_with_bias(weights: &[f64], bias: f64, row: &[f64]) -> f64 {
    let mut acc = bias;
    for (w, x) in weights.iter().zip(row) {
        acc += w * x;
    }
    acc
}

/// Scratch space for [`sgd_step`], so the hot loop never allocates.
#[derive(Clone, Debug)]
pub struct StepScratch {
    errors: Vec<f64>,
    /// The weights' gradient in the general kernel.
    grad: Vec<f64>,
}

impl StepScratch {
    pub fn new(batch_size: usize, features: usize) -> StepScratch {
        StepScratch {
            errors: vec![0.0; batch_size],
            grad: vec![0.0; features],
        }
    }
}

/// Batch rows whose predictions are computed together: independent
/// dependency chains that the CPU overlaps.
const ROW_LANES: usize = 4;

/// Parameters whose gradient sums are accumulated together, in registers.
const GRAD_LANES: usize = 4;

/// The constants of one training step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepRate {
    /// The learning rate of the block the step belongs to.
    pub learning_rate: f64,
    /// `2.0 / batch_size`: the gradient of the mean squared error is this
    /// times the sums `Σ e_b x_b`.
    pub grad_scale: f64,
    /// The largest Euclidean norm a step's gradient keeps
    /// ([`super::GRADIENT_CLIP_NORM`]).
    pub clip_norm: f64,
}

/// One mini-batch gradient-descent step on MSE over the training rows
/// `indices`, with the gradient clipped to a global norm. The bias is the
/// last parameter.
///
/// The evaluation order is consensus (schema/consensus.md):
/// - `pred_b` starts at the bias and adds `w_j · x_bj` in ascending `j`
///   (as [`predict`]); `e_b = pred_b − y_b`;
/// - the sum `s_j` starts at `0.0` and adds `e_b · x_bj` in ascending
///   batch position `b`; the bias's sum adds `e_b` the same way;
/// - `g_j = grad_scale · s_j`; `n = sqrt(Σ g_j²)` over `j = 0 … d` (the
///   bias last), each square added in that order from `0.0`;
/// - when `n` is not finite the step changes nothing; when
///   `n > clip_norm`, `f = clip_norm / n` and every `g_j = g_j · f`;
/// - `w_j ← w_j − learning_rate · g_j`.
///
/// Each of those is a separate product and sum, never fused. Rows are read
/// in place from the training data. The loops are blocked only across
/// independent sums (rows in the forward pass, parameters in the
/// gradient), which leaves every sum's own order as written above. Models
/// of up to 16 features run a kernel compiled for their width, which keeps
/// every gradient sum in a register.
#[inline]
pub fn sgd_step(
    params: &mut [f64],
    data: &Prepared,
    indices: &[u32],
    rate: StepRate,
    scratch: &mut StepScratch,
) {
    let d = data.features();
    let (weights, bias) = params.split_at_mut(d);
    let bias = &mut bias[0];
    let errors = &mut scratch.errors[..indices.len()];
    let (x, y) = (&data.train_x[..], &data.train_y[..]);
    macro_rules! fixed_width {
        ($($width:literal)*) => {
            match d {
                $($width => {
                    let weights: &mut [f64; $width] =
                        weights.try_into().expect("split at the width");
                    sgd_step_fixed(weights, bias, x, y, indices, rate, errors)
                })*
                _ => sgd_step_any(weights, bias, x, y, indices, rate, errors, &mut scratch.grad),
            }
        };
    }
    fixed_width!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16);
}

/// Scale the gradient sums (`grad` the weights', `grad_bias` the
/// bias's) to the gradient, clip it to `rate.clip_norm` and apply it, in
/// the order [`sgd_step`] documents.
#[inline]
fn apply_gradient(
    grad: &mut [f64],
    grad_bias: f64,
    weights: &mut [f64],
    bias: &mut f64,
    rate: StepRate,
) {
    let mut squares = 0.0;
    for g in grad.iter_mut() {
        *g *= rate.grad_scale;
        squares += *g * *g;
    }
    let mut grad_bias = rate.grad_scale * grad_bias;
    squares += grad_bias * grad_bias;
    let norm = squares.sqrt();
    if !norm.is_finite() {
        return;
    }
    if norm > rate.clip_norm {
        let factor = rate.clip_norm / norm;
        for g in grad.iter_mut() {
            *g *= factor;
        }
        grad_bias *= factor;
    }
    for (w, g) in weights.iter_mut().zip(grad.iter()) {
        *w -= rate.learning_rate * g;
    }
    *bias -= rate.learning_rate * grad_bias;
}

/// [`sgd_step`] for `D` features.
#[inline]
fn sgd_step_fixed<const D: usize>(
    weights: &mut [f64; D],
    bias: &mut f64,
    x: &[f64],
    y: &[f64],
    indices: &[u32],
    rate: StepRate,
    errors: &mut [f64],
) {
    let row = |r: u32| -> &[f64; D] {
        x[r as usize * D..][..D]
            .try_into()
            .expect("a row is D values")
    };
    let mut index_blocks = indices.chunks_exact(ROW_LANES);
    let mut error_blocks = errors.chunks_exact_mut(ROW_LANES);
    for (block, out) in (&mut index_blocks).zip(&mut error_blocks) {
        let rows: [&[f64; D]; ROW_LANES] = std::array::from_fn(|l| row(block[l]));
        let mut acc = [*bias; ROW_LANES];
        for j in 0..D {
            for l in 0..ROW_LANES {
                acc[l] += weights[j] * rows[l][j];
            }
        }
        for l in 0..ROW_LANES {
            out[l] = acc[l] - y[block[l] as usize];
        }
    }
    for (&r, e) in index_blocks
        .remainder()
        .iter()
        .zip(error_blocks.into_remainder())
    {
        *e = predict_with_bias(weights, *bias, row(r)) - y[r as usize];
    }
    let mut grad = [0.0; D];
    let mut grad_bias = 0.0;
    for (&r, &e) in indices.iter().zip(&*errors) {
        let xs = row(r);
        for j in 0..D {
            grad[j] += e * xs[j];
        }
        grad_bias += e;
    }
    apply_gradient(&mut grad, grad_bias, weights, bias, rate);
}

/// [`sgd_step`] for any number of features; `grad` holds at least `d` values.
#[allow(clippy::too_many_arguments)]
fn sgd_step_any(
    weights: &mut [f64],
    bias: &mut f64,
    x: &[f64],
    y: &[f64],
    indices: &[u32],
    rate: StepRate,
    errors: &mut [f64],
    grad: &mut [f64],
) {
    let d = weights.len();
    let row = |r: u32| -> &[f64] { &x[r as usize * d..][..d] };
    let mut index_blocks = indices.chunks_exact(ROW_LANES);
    let mut error_blocks = errors.chunks_exact_mut(ROW_LANES);
    for (block, out) in (&mut index_blocks).zip(&mut error_blocks) {
        let rows: [&[f64]; ROW_LANES] = std::array::from_fn(|l| row(block[l]));
        let mut acc = [*bias; ROW_LANES];
        for (j, w) in weights.iter().enumerate() {
            for l in 0..ROW_LANES {
                acc[l] += w * rows[l][j];
            }
        }
        for l in 0..ROW_LANES {
            out[l] = acc[l] - y[block[l] as usize];
        }
    }
    for (&r, e) in index_blocks
        .remainder()
        .iter()
        .zip(error_blocks.into_remainder())
    {
        *e = predict_with_bias(weights, *bias, row(r)) - y[r as usize];
    }
    let errors = &*errors;
    let mut j = 0;
    while j + GRAD_LANES <= d {
        let mut sums = [0.0; GRAD_LANES];
        for (&r, e) in indices.iter().zip(errors) {
            let xs = &row(r)[j..j + GRAD_LANES];
            for l in 0..GRAD_LANES {
                sums[l] += e * xs[l];
            }
        }
        grad[j..j + GRAD_LANES].copy_from_slice(&sums);
        j += GRAD_LANES;
    }
    for (j, g) in grad.iter_mut().enumerate().take(d).skip(j) {
        let mut sum = 0.0;
        for (&r, e) in indices.iter().zip(errors) {
            sum += e * row(r)[j];
        }
        *g = sum;
    }
    let mut grad_bias = 0.0;
    for e in errors {
        grad_bias += e;
    }
    apply_gradient(&mut grad[..d], grad_bias, weights, bias, rate);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The step as first written: rows copied out, one sum at a time, no
    /// blocking. The fast kernels must match it bit for bit.
    fn reference_step(params: &mut [f64], data: &Prepared, indices: &[u32], rate: StepRate) {
        let d = data.features();
        let rows: Vec<&[f64]> = indices
            .iter()
            .map(|&r| &data.train_x[r as usize * d..(r as usize + 1) * d])
            .collect();
        let errors: Vec<f64> = rows
            .iter()
            .zip(indices)
            .map(|(row, &r)| predict(params, row) - data.train_y[r as usize])
            .collect();
        let mut grad = vec![0.0; d + 1];
        for (row, e) in rows.iter().zip(&errors) {
            for j in 0..d {
                grad[j] += e * row[j];
            }
            grad[d] += e;
        }
        let grad: Vec<f64> = grad.iter().map(|g| rate.grad_scale * g).collect();
        let norm = grad.iter().fold(0.0, |acc, g| acc + g * g).sqrt();
        if !norm.is_finite() {
            return;
        }
        let factor = if norm > rate.clip_norm {
            rate.clip_norm / norm
        } else {
            1.0
        };
        for (p, g) in params.iter_mut().zip(&grad) {
            let g = if norm > rate.clip_norm {
                g * factor
            } else {
                *g
            };
            *p -= rate.learning_rate * g;
        }
    }

    fn rate(learning_rate: f64, batch: usize, clip_norm: f64) -> StepRate {
        StepRate {
            learning_rate,
            grad_scale: 2.0 / batch as f64,
            clip_norm,
        }
    }

    /// Training data of `rows × features` values with wide exponents, so
    /// that any change of rounding order shows in the bits.
    fn synthetic(rows: usize, features: usize, seed: u64) -> Prepared {
        let mut state = seed;
        let mut next = move || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let unit = (state >> 11) as f64 / (1u64 << 53) as f64;
            let scale = [1e-3, 1.0, 37.0, 1e4][(state & 3) as usize];
            (unit - 0.5) * scale
        };
        Prepared {
            feature_names: (0..features).map(|j| format!("x{j}")).collect(),
            feature_sources: (0..features)
                .map(|j| crate::dataset::FeatureSource::numeric(&format!("x{j}")))
                .collect(),
            target_name: "y".into(),
            feature_scaling: Vec::new(),
            target_scaling: crate::dataset::Scaling {
                mean: 0.0,
                std: 1.0,
            },
            train_x: (0..rows * features).map(|_| next()).collect(),
            train_y: (0..rows).map(|_| next()).collect(),
            holdout_x: Vec::new(),
            holdout_y: Vec::new(),
            holdout_every: 2,
        }
    }

    #[test]
    fn kernels_match_the_reference_bit_for_bit() {
        let rows = 50;
        // 1..=16 take the fixed-width kernels, the rest the general one.
        for features in 1..=20 {
            let data = synthetic(rows, features, features as u64);
            for batch in [1usize, 3, 4, 5, 8, 31, 32, 33] {
                let indices: Vec<u32> = (0..batch)
                    .map(|b| ((b * 7 + features) % rows) as u32)
                    .collect();
                let mut fast = vec![0.0; features + 1];
                let mut slow = fast.clone();
                let mut scratch = StepScratch::new(batch, features);
                for step in 0..20 {
                    // Every other step is clipped hard; the others barely.
                    let clip = if step % 2 == 0 { 1e-2 } else { 1e6 };
                    let rate = rate(1e-3 * (step + 1) as f64, batch, clip);
                    sgd_step(&mut fast, &data, &indices, rate, &mut scratch);
                    reference_step(&mut slow, &data, &indices, rate);
                    let fast_bits: Vec<u64> = fast.iter().map(|p| p.to_bits()).collect();
                    let slow_bits: Vec<u64> = slow.iter().map(|p| p.to_bits()).collect();
                    assert_eq!(fast_bits, slow_bits, "{features} features, batch {batch}");
                }
                let mut general = slow.clone();
                let mut fixed = slow.clone();
                let (weights, bias) = general.split_at_mut(features);
                sgd_step_any(
                    weights,
                    &mut bias[0],
                    &data.train_x,
                    &data.train_y,
                    &indices,
                    rate(0.01, batch, 1.0),
                    &mut scratch.errors[..batch],
                    &mut scratch.grad,
                );
                sgd_step(
                    &mut fixed,
                    &data,
                    &indices,
                    rate(0.01, batch, 1.0),
                    &mut scratch,
                );
                let general_bits: Vec<u64> = general.iter().map(|p| p.to_bits()).collect();
                let fixed_bits: Vec<u64> = fixed.iter().map(|p| p.to_bits()).collect();
                assert_eq!(
                    general_bits, fixed_bits,
                    "{features} features, batch {batch}"
                );
            }
        }
    }

    /// One row `x = [3]`, `y = 0`, from `w = [0], b = 1`: e = 1, the sums
    /// are [3, 1], the gradient with batch 1 is [6, 2], of norm √40.
    fn one_row() -> Prepared {
        let mut data = synthetic(1, 1, 1);
        data.train_x = vec![3.0];
        data.train_y = vec![0.0];
        data
    }

    #[test]
    fn a_gradient_at_the_clip_norm_is_kept_and_one_past_it_is_scaled() {
        let data = one_row();
        let norm = 40f64.sqrt();
        let mut scratch = StepScratch::new(1, 1);
        // At the norm: the plain step, w = 0 − 0.5·6, b = 1 − 0.5·2.
        let mut params = vec![0.0, 1.0];
        sgd_step(&mut params, &data, &[0], rate(0.5, 1, norm), &mut scratch);
        assert_eq!(params, vec![-3.0, 0.0]);
        // Just under it: scaled by clip / norm.
        let clip = f64::from_bits(norm.to_bits() - 1);
        let mut params = vec![0.0, 1.0];
        sgd_step(&mut params, &data, &[0], rate(0.5, 1, clip), &mut scratch);
        let factor = clip / norm;
        assert_eq!(
            params,
            vec![0.0 - 0.5 * (6.0 * factor), 1.0 - 0.5 * (2.0 * factor)]
        );
        assert_ne!(params, vec![-3.0, 0.0]);
        // Far under it: the step moves the parameters by lr · clip.
        let mut params = vec![0.0, 1.0];
        sgd_step(&mut params, &data, &[0], rate(0.5, 1, 1.0), &mut scratch);
        let moved = (params[0] * params[0] + (params[1] - 1.0) * (params[1] - 1.0)).sqrt();
        assert!((moved - 0.5).abs() < 1e-15, "moved {moved}");
    }

    #[test]
    fn a_huge_learning_rate_stays_finite_and_a_non_finite_gradient_changes_nothing() {
        let data = synthetic(40, 5, 3);
        let indices: Vec<u32> = (0..8).collect();
        let mut scratch = StepScratch::new(8, 5);
        let mut params = vec![0.0; 6];
        for _ in 0..10_000 {
            sgd_step(
                &mut params,
                &data,
                &indices,
                rate(1e6, 8, 8.0),
                &mut scratch,
            );
        }
        assert!(params.iter().all(|p| p.is_finite()), "{params:?}");
        // A gradient that overflows: the step is skipped.
        let mut params = vec![f64::MAX; 6];
        let before = params.clone();
        sgd_step(
            &mut params,
            &data,
            &indices,
            rate(1.0, 8, 8.0),
            &mut scratch,
        );
        assert_eq!(params, before);
    }
}
