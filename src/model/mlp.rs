//! The native `mlp` head: one hidden layer of ReLU units in front of one
//! linear output, trained by clipped SGD, in a fixed evaluation order that
//! every node reproduces bit for bit (schema/consensus.md, "`mlp` head").
//!
//! Layout of the flat parameter vector, for `d` inputs and `H` hidden units:
//! `[W1 (H rows × d, row-major: unit u's d weights together), b1 (H),
//! w2 (H), b2]`, [`param_count`] values in all.
//!
//! What this module must never do, because validators re-execute its
//! arithmetic and compare bits:
//! - change the order of any sum, fuse a multiply and an add (`mul_add`),
//!   or call a libm function (`sqrt`, correctly rounded, is the only one);
//! - reduce in parallel or in a different association: the kernels are
//!   blocked only across *independent* sums (hidden units in the forward
//!   pass, batch rows in the output sums, inputs in the backward pass), so
//!   that each individual sum keeps the order that the schema writes down;
//! - add a term the schema leaves out: a unit's gradient sums skip its
//!   inactive rows rather than adding zeros (`0 · ∞` would be NaN);
//! - allocate, read a clock or do I/O in a step (the miner steps millions
//!   of times; [`StepScratch`] holds everything a step needs), or depend on
//!   anything but its arguments.
//!
//! `reference_step` in the tests is the step as the schema writes it, one
//! sum at a time; the kernels are checked against it bit for bit.

use crate::chain::Hash32;
use crate::dataset::Prepared;

/// Tag of the BLAKE3 XOF that draws the initial weights.
const INIT_TAG: &[u8] = b"pouw/mlp-init";

/// `2^-53`: the weight of the lowest bit of a 53-bit uniform draw.
const UNIT: f64 = 1.0 / (1u64 << 53) as f64;

/// `H·d + 2·H + 1`, saturating at `usize::MAX` (which no real vector has).
pub fn param_count(features: usize, hidden: usize) -> usize {
    hidden
        .saturating_mul(features)
        .saturating_add(hidden.saturating_mul(2))
        .saturating_add(1)
}

/// Offsets of the four parameter blocks.
#[derive(Clone, Copy, Debug)]
struct Layout {
    /// Start of `b1`, which is also `H·d`.
    b1: usize,
    /// Start of `w2`.
    w2: usize,
    /// Index of `b2`.
    b2: usize,
}

impl Layout {
    fn new(features: usize, hidden: usize) -> Layout {
        let b1 = hidden * features;
        Layout {
            b1,
            w2: b1 + hidden,
            b2: b1 + 2 * hidden,
        }
    }
}

/// The initial model of a job: Glorot-uniform weights drawn from `seed`,
/// zero biases.
///
/// The uniform values are consecutive little-endian u64 words of the
/// BLAKE3 XOF of `"pouw/mlp-init" ‖ seed`: word `k` gives
/// `u_k = (word >> 11) as f64 · 2^-53` in `[0, 1)`, and the value is
/// `a · ((2.0 · u_k) − 1.0)`, which rounds only in the last product. Words
/// `0 … H·d − 1` fill `W1` in layout order with
/// `a1 = sqrt(6.0 / (d + H) as f64)`, the next `H` words fill `w2` with
/// `a2 = sqrt(6.0 / (H + 1) as f64)`.
pub fn initial_params(features: usize, hidden: usize, seed: &Hash32) -> Vec<f64> {
    let layout = Layout::new(features, hidden);
    let mut params = vec![0.0; param_count(features, hidden)];
    let mut hasher = blake3::Hasher::new();
    hasher.update(INIT_TAG);
    hasher.update(&seed.0);
    let mut xof = hasher.finalize_xof();
    let mut uniform = move || {
        let mut word = [0u8; 8];
        xof.fill(&mut word);
        (u64::from_le_bytes(word) >> 11) as f64 * UNIT
    };
    let a1 = (6.0 / features.saturating_add(hidden) as f64).sqrt();
    for w in &mut params[..layout.b1] {
        *w = a1 * (2.0 * uniform() - 1.0);
    }
    let a2 = (6.0 / hidden.saturating_add(1) as f64).sqrt();
    for w in &mut params[layout.w2..layout.b2] {
        *w = a2 * (2.0 * uniform() - 1.0);
    }
    params
}

/// `if z > 0.0 { z } else { 0.0 }`: `-0.0`, `+0.0` and NaN all give `+0.0`.
#[inline(always)]
fn relu(z: f64) -> f64 {
    if z > 0.0 {
        z
    } else {
        0.0
    }
}

/// The prediction for one row of `d = row.len()` standardised features:
///
/// ```text
/// p = b2
/// for u = 0 … H−1:
///     z = b1[u];  for j = 0 … d−1: z = z + W1[u][j]·x[j]
///     p = p + w2[u]·relu(z)
/// ```
///
/// # Panics
/// When `params` is shorter than [`param_count`]`(row.len(), hidden)`;
/// consensus checks the length of every parameter vector it receives.
pub fn predict(params: &[f64], hidden: usize, row: &[f64]) -> f64 {
    let d = row.len();
    let layout = Layout::new(d, hidden);
    let mut p = params[layout.b2];
    for u in 0..hidden {
        let weights = &params[u * d..(u + 1) * d];
        let mut z = params[layout.b1 + u];
        for (w, x) in weights.iter().zip(row) {
            z += w * x;
        }
        p += params[layout.w2 + u] * relu(z);
    }
    p
}

/// `max(0, R²)` in ppm of the model on the holdout rows `rows` (repeats
/// allowed), with the formula and order of [`linear::score_ppm`]
/// (see [`super::r2_score_ppm`]); only the prediction differs.
///
/// [`linear::score_ppm`]: super::linear::score_ppm
pub fn score_ppm(params: &[f64], hidden: usize, data: &Prepared, rows: &[u32]) -> u32 {
    let d = data.features();
    super::r2_score_ppm(&data.holdout_y, rows, |r| {
        predict(params, hidden, &data.holdout_x[r * d..(r + 1) * d])
    })
}

/// Scratch space for [`sgd_step`], so a step never allocates once the
/// scratch has grown to the task's sizes.
#[derive(Clone, Debug, Default)]
pub struct StepScratch {
    /// `W1` transposed, `d × H`: `w1t[j·H + u] = W1[u][j]`, so that one
    /// input's weights of consecutive units are contiguous.
    w1t: Vec<f64>,
    /// Hidden activations, row-major, `B × H`: `h[q·H + u] = relu(z_qu)`.
    h: Vec<f64>,
    /// Active rows of each unit as bits: word `k` of unit `u` is
    /// `active[u·W + k]` (`W = ⌈B / 64⌉`), bit `i` set iff `z_qu > 0` for
    /// `q = 64·k + i`.
    active: Vec<u64>,
    /// `s_q = c · e_q`: the loss's derivative by the prediction of row `q`.
    s: Vec<f64>,
    /// The gradient, in parameter layout.
    grad: Vec<f64>,
    /// The batch rows for the AVX2 backward pass: row `q` at
    /// `xb[q·P ..][..d]`, `P = 4·⌈d / 4⌉`, zeros in the last `P − d`
    /// places (which only fill lanes that are never read back).
    xb: Vec<f64>,
}

impl StepScratch {
    /// Scratch for steps of `batch_size` rows on a model of `features`
    /// inputs and `hidden` units.
    pub fn new(features: usize, hidden: usize, batch_size: usize) -> StepScratch {
        let mut scratch = StepScratch::default();
        scratch.fit(features, hidden, batch_size);
        scratch
    }

    /// Grow (never shrink) to the sizes of a step; allocates only when a
    /// size grows.
    fn fit(&mut self, features: usize, hidden: usize, batch_size: usize) {
        fn at_least<T: Clone + Default>(v: &mut Vec<T>, n: usize) {
            if v.len() < n {
                v.resize(n, T::default());
            }
        }
        at_least(&mut self.w1t, features * hidden);
        at_least(&mut self.h, hidden * batch_size);
        at_least(&mut self.active, hidden * batch_size.div_ceil(64));
        at_least(&mut self.s, batch_size);
        at_least(&mut self.grad, param_count(features, hidden));
        if features <= MAX_WIDE_INPUTS {
            at_least(&mut self.xb, 4 * features.div_ceil(4) * batch_size);
        }
    }
}

/// Hidden units whose pre-activations for one row are accumulated
/// together: independent sums, kept in registers.
const UNIT_LANES: usize = 16;

/// Batch rows whose predictions are accumulated together.
const ROW_LANES: usize = 8;

/// The most inputs for which the AVX2 kernel's backward pass keeps a
/// unit's input gradients in (four) vector registers.
const MAX_WIDE_INPUTS: usize = 16;

/// One step of clipped mini-batch SGD on `(1/B) Σ_q (p_q − y_q)²` over the
/// training rows `indices` (`B = indices.len()`), in the order of
/// schema/consensus.md ("`mlp` head"):
///
/// ```text
/// forward, for each q and u:   z_qu = b1[u] + Σ_j W1[u][j]·X[r_q][j]   (j ascending)
///                              h_qu = relu(z_qu)
///                              p_q  = b2 + Σ_u w2[u]·h_qu              (u ascending)
/// c = 2.0 / (B as f64);  s_q = c · (p_q − Y[r_q])
/// G[b2] = Σ_q s_q                                                      (q ascending)
/// for each u, over the rows A_u = {q : z_qu > 0}, q ascending:
///     G[w2[u]]    = Σ s_q·h_qu
///     δ_qu        = s_q·w2[u]
///     G[b1[u]]    = Σ δ_qu
///     G[W1[u][j]] = Σ δ_qu·X[r_q][j]
/// n = sqrt(Σ_i G_i·G_i)                      (i in parameter-layout order)
/// if n is not finite: no change to the parameters
/// if n > clip_norm:   f = clip_norm / n;  G_i = G_i · f
/// W_i = W_i − learning_rate · G_i
/// ```
///
/// Every sum starts from `+0.0` (the forward sums from their bias) and
/// adds one separately rounded product at a time; rows where a unit is
/// inactive add nothing to that unit's sums. An empty batch changes
/// nothing.
///
/// # Panics
/// When `params.len() != param_count(d, hidden)` or an index is not a
/// training row; consensus checks both before re-executing a step.
pub fn sgd_step(
    params: &mut [f64],
    data: &Prepared,
    hidden: usize,
    indices: &[u32],
    learning_rate: f64,
    clip_norm: f64,
    scratch: &mut StepScratch,
) {
    let d = data.features();
    assert_eq!(
        params.len(),
        param_count(d, hidden),
        "an mlp of {d} inputs and {hidden} hidden units"
    );
    if indices.is_empty() {
        return;
    }
    scratch.fit(d, hidden, indices.len());
    let batch = Batch {
        x: &data.train_x,
        y: &data.train_y,
        indices,
    };
    let squares = kernel::Kernel::detect().gradient(d, hidden, params, &batch, scratch);
    let norm = squares.sqrt();
    if !norm.is_finite() {
        return;
    }
    let grad = &scratch.grad[..params.len()];
    if norm > clip_norm {
        let factor = clip_norm / norm;
        for (p, g) in params.iter_mut().zip(grad) {
            let g = g * factor;
            *p -= learning_rate * g;
        }
    } else {
        for (p, g) in params.iter_mut().zip(grad) {
            *p -= learning_rate * g;
        }
    }
}

/// The training rows of one step.
#[derive(Clone, Copy)]
struct Batch<'a> {
    x: &'a [f64],
    y: &'a [f64],
    indices: &'a [u32],
}

/// Copies of [`gradient`] compiled for wider vector instructions, and the
/// choice among them at run time.
///
/// Every copy is the same source: [`gradient`] is `#[inline(always)]`, so
/// each `#[target_feature]` function below gets its own copy of the body,
/// compiled with that feature's registers. The order of every sum is the
/// source's, whatever the vector width: the kernels are vectorised only
/// across independent sums, and Rust never contracts a multiply and an
/// add into one rounding (no `mul_add`, no FMA intrinsics, and LLVM fuses
/// only operations marked `contract`, which Rust never emits), so every
/// copy gives the same bits; the tests check it.
///
/// Two parts have a second source, written with explicit AVX2 operations
/// because the compiler's own vectorisation of them is poor: the hidden
/// layer's full blocks of [`UNIT_LANES`] units (`x86::forward_block`; the
/// compiler splits the 16 lanes unevenly and spills the active bits), and
/// the backward pass for up to [`MAX_WIDE_INPUTS`] inputs
/// (`x86::backward`; the compiler keeps 10 input sums in five two-lane
/// registers and checks every row's bounds). Both perform the portable
/// loops' operations lane for lane, in the same order, and a test
/// compares them with the portable kernel bit for bit.
mod kernel {
    use super::{gradient, Batch, StepScratch};

    /// A compiled copy of the gradient kernel that this CPU can run.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub(super) enum Kernel {
        /// Built for the crate's target (SSE2 on x86-64): runs anywhere.
        Portable,
        /// AVX2 (four f64 lanes). The value holds a [`x86::Detected`],
        /// which only exists once the CPU has been seen to support it.
        #[cfg(target_arch = "x86_64")]
        Avx2(x86::Detected),
    }

    impl Kernel {
        /// The widest kernel this CPU supports (the detection is cached
        /// by the standard library: one atomic load after the first).
        #[inline]
        pub(super) fn detect() -> Kernel {
            #[cfg(target_arch = "x86_64")]
            if let Some(token) = x86::Detected::avx2() {
                return Kernel::Avx2(token);
            }
            Kernel::Portable
        }

        /// [`gradient`] with this kernel, at a compile-time width for 1 to
        /// 16 inputs and the general one beyond.
        pub(super) fn gradient(
            self,
            d: usize,
            hidden: usize,
            params: &[f64],
            batch: &Batch,
            scratch: &mut StepScratch,
        ) -> f64 {
            macro_rules! fixed_width {
                ($($width:literal)*) => {
                    match d {
                        $($width => self.at::<$width>(d, hidden, params, batch, scratch),)*
                        _ => self.at::<0>(d, hidden, params, batch, scratch),
                    }
                };
            }
            fixed_width!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16)
        }

        #[inline(always)]
        fn at<const D: usize>(
            self,
            d: usize,
            hidden: usize,
            params: &[f64],
            batch: &Batch,
            scratch: &mut StepScratch,
        ) -> f64 {
            match self {
                Kernel::Portable => gradient::<D>(d, hidden, params, batch, scratch),
                #[cfg(target_arch = "x86_64")]
                Kernel::Avx2(token) => token.gradient::<D>(d, hidden, params, batch, scratch),
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    pub(super) mod x86 {
        use super::super::{
            gradient_with, BackwardPass, Batch, ForwardBlock, StepScratch, MAX_WIDE_INPUTS,
            UNIT_LANES,
        };

        /// Proof that this CPU supports AVX2: the private field means that
        /// [`Detected::avx2`] is the only way to make one.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub(in super::super) struct Detected(());

        impl Detected {
            #[inline]
            pub(in super::super) fn avx2() -> Option<Detected> {
                is_x86_feature_detected!("avx2").then_some(Detected(()))
            }

            /// [`gradient`] compiled for AVX2.
            #[inline(always)]
            pub(super) fn gradient<const D: usize>(
                self,
                d: usize,
                hidden: usize,
                params: &[f64],
                batch: &Batch,
                scratch: &mut StepScratch,
            ) -> f64 {
                // SAFETY: `avx2` needs a CPU with AVX2, and `self` exists
                // only if `is_x86_feature_detected!("avx2")` said so.
                #[allow(unsafe_code)]
                unsafe {
                    avx2::<D>(d, hidden, params, batch, scratch)
                }
            }
        }

        /// [`gradient`] with AVX2 instructions. Only AVX2 (and what it
        /// implies) is enabled, not FMA, so that no fused multiply-add can
        /// appear even by mistake.
        #[target_feature(enable = "avx2")]
        fn avx2<const D: usize>(
            d: usize,
            hidden: usize,
            params: &[f64],
            batch: &Batch,
            scratch: &mut StepScratch,
        ) -> f64 {
            gradient_with::<D>(d, hidden, params, batch, scratch, Some(Detected(())))
        }

        impl Detected {
            /// [`forward_block`] with AVX2 instructions: what
            /// [`gradient_with`] runs for each full block of
            /// [`UNIT_LANES`] units when it is given a token.
            #[inline(always)]
            pub(in super::super) fn forward_block<const D: usize>(
                self,
                block: ForwardBlock,
                batch: &Batch,
                h: &mut [f64],
                active: &mut [u64],
            ) {
                // SAFETY: as in `gradient`: `self` exists only on a CPU
                // with AVX2.
                #[allow(unsafe_code)]
                unsafe {
                    forward_block::<D>(block, batch, h, active)
                }
            }
        }

        /// The hidden layer of [`UNIT_LANES`] units `u0 … u0 + 15` over
        /// the batch, written with AVX2 operations, with the arithmetic of
        /// the portable loop in [`gradient_with`] lane for lane: each
        /// `z_qu` starts from `b1[u]` and adds the separately rounded
        /// products `W1[u][j]·x[j]` in ascending `j` (`_mm256_mul_pd`,
        /// then `_mm256_add_pd`; never fused), `h_qu` is `z_qu` where
        /// `z_qu > 0` (an ordered compare: NaN is not) and `+0.0`
        /// elsewhere, and the same comparison sets the unit's active bit.
        #[target_feature(enable = "avx2")]
        fn forward_block<const D: usize>(
            block: ForwardBlock,
            batch: &Batch,
            h: &mut [f64],
            active: &mut [u64],
        ) {
            use std::arch::x86_64::*;
            const _: () = assert!(UNIT_LANES == 16);
            let ForwardBlock {
                d,
                hidden,
                words,
                u0,
                b1,
                w1t,
            } = block;
            let d = if D == 0 { d } else { D };
            let b = batch.indices.len();
            let b1: &[f64; 16] = b1[u0..u0 + 16].try_into().expect("16 biases");
            let bias = [load(b1, 0), load(b1, 4), load(b1, 8), load(b1, 12)];
            let zero = _mm256_setzero_pd();
            let mut bits = [_mm256_setzero_si256(); 4];
            for (q, &r) in batch.indices.iter().enumerate() {
                let x = &batch.x[r as usize * d..][..d];
                let mut acc = bias;
                for (j, &xj) in x.iter().enumerate() {
                    let xj = _mm256_set1_pd(xj);
                    let w: &[f64; 16] =
                        w1t[j * hidden + u0..][..16].try_into().expect("16 weights");
                    for (k, acc) in acc.iter_mut().enumerate() {
                        *acc = _mm256_add_pd(*acc, _mm256_mul_pd(load(w, 4 * k), xj));
                    }
                }
                let bit = _mm256_set1_epi64x((1u64 << (q % 64)) as i64);
                let out: &mut [f64; 16] = (&mut h[q * hidden + u0..][..16])
                    .try_into()
                    .expect("16 activations");
                for k in 0..4 {
                    let keep = _mm256_cmp_pd::<_CMP_GT_OQ>(acc[k], zero);
                    store(out, 4 * k, _mm256_and_pd(acc[k], keep));
                    let keep = _mm256_castpd_si256(keep);
                    bits[k] = _mm256_or_si256(bits[k], _mm256_and_si256(keep, bit));
                }
                if q % 64 == 63 || q + 1 == b {
                    let mut unit_bits = [0.0; 16];
                    for (k, bits) in bits.iter_mut().enumerate() {
                        store(&mut unit_bits, 4 * k, _mm256_castsi256_pd(*bits));
                        *bits = _mm256_setzero_si256();
                    }
                    for (l, word) in unit_bits.iter().enumerate() {
                        active[(u0 + l) * words + q / 64] = word.to_bits();
                    }
                }
            }
        }

        impl Detected {
            /// [`backward`] with AVX2 instructions.
            #[inline(always)]
            pub(in super::super) fn backward<const D: usize>(
                self,
                pass: BackwardPass,
                g_w1: &mut [f64],
                g_b1: &mut [f64],
                g_w2: &mut [f64],
            ) -> f64 {
                // SAFETY: as in `gradient`: `self` exists only on a CPU
                // with AVX2.
                #[allow(unsafe_code)]
                unsafe {
                    backward::<D>(pass, g_w1, g_b1, g_w2)
                }
            }
        }

        /// The backward pass of [`gradient_with`] for `D` (1 to 16)
        /// inputs, written with AVX2 operations: `W1`'s, `b1`'s and
        /// `w2`'s gradients into `g_w1`, `g_b1`, `g_w2`, returning the
        /// sum of the squares of `W1`'s gradients in layout order. The
        /// same operations in the same order as the portable loop: for
        /// each unit, over its active rows in ascending order, `s_q·h_qu`
        /// and `δ_qu = s_q·w2[u]` added to sums that start at `+0.0`, and
        /// `δ_qu·x_j` (multiply, then add) to input `j`'s sum, lane `j` of
        /// `⌈D / 4⌉` vectors. The padding lanes past `D` are never read.
        #[target_feature(enable = "avx2")]
        fn backward<const D: usize>(
            pass: BackwardPass,
            g_w1: &mut [f64],
            g_b1: &mut [f64],
            g_w2: &mut [f64],
        ) -> f64 {
            use std::arch::x86_64::*;
            assert!(D != 0 && D <= MAX_WIDE_INPUTS);
            let BackwardPass {
                hidden,
                words,
                w2,
                s,
                h,
                active,
                xb,
            } = pass;
            let vectors = D.div_ceil(4);
            let stride = 4 * vectors;
            let mut squares = 0.0;
            for u in 0..hidden {
                let w = w2[u];
                let mut sum_w2 = 0.0;
                let mut sum_b1 = 0.0;
                let mut acc = [_mm256_setzero_pd(); 4];
                for (k, &bits) in active[u * words..][..words].iter().enumerate() {
                    let mut bits = bits;
                    while bits != 0 {
                        let q = 64 * k + bits.trailing_zeros() as usize;
                        bits &= bits - 1;
                        let sq = s[q];
                        sum_w2 += sq * h[q * hidden + u];
                        let delta = sq * w;
                        sum_b1 += delta;
                        let delta = _mm256_set1_pd(delta);
                        let x = &xb[q * stride..][..stride];
                        for (i, acc) in acc.iter_mut().enumerate().take(vectors) {
                            *acc = _mm256_add_pd(*acc, _mm256_mul_pd(delta, load(x, 4 * i)));
                        }
                    }
                }
                let mut sums = [0.0; 16];
                for (i, acc) in acc.iter().enumerate().take(vectors) {
                    store(&mut sums, 4 * i, *acc);
                }
                let sums = &sums[..D];
                g_w1[u * D..][..D].copy_from_slice(sums);
                for &g in sums {
                    squares += g * g;
                }
                g_b1[u] = sum_b1;
                g_w2[u] = sum_w2;
            }
            squares
        }

        /// `v[at..at + 4]`.
        #[target_feature(enable = "avx2")]
        #[inline]
        fn load(v: &[f64], at: usize) -> std::arch::x86_64::__m256d {
            let v: &[f64; 4] = v[at..at + 4].try_into().expect("4 values");
            // SAFETY: `v` is 4 f64 that may be read; `loadu` needs no
            // alignment.
            #[allow(unsafe_code)]
            unsafe {
                std::arch::x86_64::_mm256_loadu_pd(v.as_ptr())
            }
        }

        /// `v[at..at + 4] = value`.
        #[target_feature(enable = "avx2")]
        #[inline]
        fn store(v: &mut [f64], at: usize, value: std::arch::x86_64::__m256d) {
            let v: &mut [f64; 4] = (&mut v[at..at + 4]).try_into().expect("4 values");
            // SAFETY: `v` is 4 f64 that may be written; `storeu` needs no
            // alignment.
            #[allow(unsafe_code)]
            unsafe {
                std::arch::x86_64::_mm256_storeu_pd(v.as_mut_ptr(), value)
            }
        }
    }
}

/// The gradient of one step into `scratch.grad`, returning `Σ_i G_i·G_i`
/// summed in layout order. `D` is the number of inputs when it is known at
/// compile time (the loops over inputs are then unrolled and the unit's
/// input gradients stay in registers), or 0 for any `d`.
#[inline(always)]
fn gradient<const D: usize>(
    d: usize,
    hidden: usize,
    params: &[f64],
    batch: &Batch,
    scratch: &mut StepScratch,
) -> f64 {
    gradient_with::<D>(d, hidden, params, batch, scratch, None)
}

/// What an AVX2 token is on this target: [`kernel::x86::Detected`] on
/// x86-64; elsewhere a type with no values, so that `None` is the only
/// choice.
#[cfg(target_arch = "x86_64")]
type Wide = kernel::x86::Detected;
#[cfg(not(target_arch = "x86_64"))]
type Wide = std::convert::Infallible;

/// Where one block of [`UNIT_LANES`] hidden units reads its weights.
#[derive(Clone, Copy)]
struct ForwardBlock<'a> {
    d: usize,
    hidden: usize,
    /// `⌈B / 64⌉`: words of active bits per unit.
    words: usize,
    /// The block's first unit.
    u0: usize,
    b1: &'a [f64],
    /// `W1` transposed, as in [`StepScratch`].
    w1t: &'a [f64],
}

/// What the AVX2 backward pass reads.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
struct BackwardPass<'a> {
    hidden: usize,
    words: usize,
    w2: &'a [f64],
    s: &'a [f64],
    h: &'a [f64],
    active: &'a [u64],
    /// The batch rows, padded as in [`StepScratch`].
    xb: &'a [f64],
}

/// [`gradient`], with the hidden layer's full blocks of [`UNIT_LANES`]
/// units and the backward pass (for up to [`MAX_WIDE_INPUTS`] inputs)
/// computed by `wide`'s AVX2 copies of the portable loops when it is
/// given (same operations in the same order, so the same bits; the tests
/// check it).
#[inline(always)]
fn gradient_with<const D: usize>(
    d: usize,
    hidden: usize,
    params: &[f64],
    batch: &Batch,
    scratch: &mut StepScratch,
    wide: Option<Wide>,
) -> f64 {
    let d = if D == 0 { d } else { D };
    let b = batch.indices.len();
    let words = b.div_ceil(64);
    let layout = Layout::new(d, hidden);
    let (w1, rest) = params.split_at(layout.b1);
    let (b1, rest) = rest.split_at(hidden);
    let (w2, b2) = rest.split_at(hidden);
    let b2 = b2[0];
    let StepScratch {
        w1t,
        h,
        active,
        s,
        grad,
        xb,
    } = scratch;
    let w1t = &mut w1t[..d * hidden];
    let h = &mut h[..b * hidden];
    let active = &mut active[..hidden * words];
    let s = &mut s[..b];
    let grad = &mut grad[..layout.b2 + 1];

    // One column of W1 at a time: the rows are exactly d long, so
    // `row[j]` needs no index check.
    for j in 0..d {
        let column = &mut w1t[j * hidden..][..hidden];
        for (t, row) in column.iter_mut().zip(w1.chunks_exact(d)) {
            *t = row[j];
        }
    }

    // Hidden layer: UNIT_LANES units' sums of one row at a time; each z_qu
    // adds its inputs in ascending j. The active bits of a block of units
    // are gathered in registers and written once per 64 rows.
    let mut u0 = 0;
    while u0 < hidden {
        let lanes = UNIT_LANES.min(hidden - u0);
        if let (Some(wide), true) = (wide, lanes == UNIT_LANES) {
            let block = ForwardBlock {
                d,
                hidden,
                words,
                u0,
                b1,
                w1t,
            };
            #[cfg(target_arch = "x86_64")]
            wide.forward_block::<D>(block, batch, h, active);
            #[cfg(not(target_arch = "x86_64"))]
            match wide {}
            u0 += lanes;
            continue;
        }
        let mut bits = [0u64; UNIT_LANES];
        for (q, &r) in batch.indices.iter().enumerate() {
            let x = &batch.x[r as usize * d..][..d];
            let out = &mut h[q * hidden + u0..][..lanes];
            if lanes == UNIT_LANES {
                let mut acc: [f64; UNIT_LANES] = b1[u0..u0 + UNIT_LANES]
                    .try_into()
                    .expect("UNIT_LANES values");
                for j in 0..d {
                    let xj = x[j];
                    let w: &[f64; UNIT_LANES] = w1t[j * hidden + u0..][..UNIT_LANES]
                        .try_into()
                        .expect("UNIT_LANES values");
                    for l in 0..UNIT_LANES {
                        acc[l] += w[l] * xj;
                    }
                }
                // relu by a mask, which vectorises: +0.0 unless z > 0.
                let bit = 1u64 << (q % 64);
                for l in 0..UNIT_LANES {
                    let keep = if acc[l] > 0.0 { u64::MAX } else { 0 };
                    out[l] = f64::from_bits(acc[l].to_bits() & keep);
                    bits[l] |= keep & bit;
                }
            } else {
                for l in 0..lanes {
                    let mut z = b1[u0 + l];
                    for j in 0..d {
                        z += w1t[j * hidden + u0 + l] * x[j];
                    }
                    out[l] = relu(z);
                    bits[l] |= u64::from(z > 0.0) << (q % 64);
                }
            }
            if q % 64 == 63 || q + 1 == b {
                for l in 0..lanes {
                    active[(u0 + l) * words + q / 64] = bits[l];
                }
                bits = [0; UNIT_LANES];
            }
        }
        u0 += lanes;
    }

    // Output: each p_q adds the units in ascending u.
    let c = 2.0 / b as f64;
    let mut q0 = 0;
    while q0 + ROW_LANES <= b {
        let rows: [&[f64]; ROW_LANES] = std::array::from_fn(|l| &h[(q0 + l) * hidden..][..hidden]);
        let mut acc = [b2; ROW_LANES];
        for u in 0..hidden {
            let w = w2[u];
            for l in 0..ROW_LANES {
                acc[l] += w * rows[l][u];
            }
        }
        for l in 0..ROW_LANES {
            let e = acc[l] - batch.y[batch.indices[q0 + l] as usize];
            s[q0 + l] = c * e;
        }
        q0 += ROW_LANES;
    }
    for q in q0..b {
        let hs = &h[q * hidden..][..hidden];
        let mut p = b2;
        for u in 0..hidden {
            p += w2[u] * hs[u];
        }
        let e = p - batch.y[batch.indices[q] as usize];
        s[q] = c * e;
    }

    let mut grad_b2 = 0.0;
    for &sq in s.iter() {
        grad_b2 += sq;
    }

    // Backward, one unit at a time over its active rows, ascending. The
    // sum of squares takes W1's gradients as each unit's are done, which
    // is their layout order.
    let (g_w1, g_rest) = grad.split_at_mut(layout.b1);
    let (g_b1, g_rest) = g_rest.split_at_mut(hidden);
    let (g_w2, g_b2) = g_rest.split_at_mut(hidden);
    g_b2[0] = grad_b2;
    let mut squares = 0.0;
    #[cfg(target_arch = "x86_64")]
    let wide_backward = match wide {
        Some(wide) if D != 0 && D <= MAX_WIDE_INPUTS => {
            let stride = 4 * D.div_ceil(4);
            let xb = &mut xb[..b * stride];
            for (row, &r) in xb.chunks_exact_mut(stride).zip(batch.indices) {
                let (values, pad) = row.split_at_mut(D);
                values.copy_from_slice(&batch.x[r as usize * D..][..D]);
                pad.fill(0.0);
            }
            let pass = BackwardPass {
                hidden,
                words,
                w2,
                s,
                h,
                active,
                xb,
            };
            squares = wide.backward::<D>(pass, g_w1, g_b1, g_w2);
            true
        }
        _ => false,
    };
    #[cfg(not(target_arch = "x86_64"))]
    let wide_backward = {
        let _ = xb;
        false
    };
    for u in 0..hidden {
        if wide_backward {
            break;
        }
        let w = w2[u];
        let mut sum_w2 = 0.0;
        let mut sum_b1 = 0.0;
        let mut local = [0.0; D];
        let sums: &mut [f64] = if D == 0 {
            let sums = &mut g_w1[u * d..][..d];
            sums.fill(0.0);
            sums
        } else {
            &mut local
        };
        for (k, &bits) in active[u * words..][..words].iter().enumerate() {
            let mut bits = bits;
            while bits != 0 {
                let q = 64 * k + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                let sq = s[q];
                sum_w2 += sq * h[q * hidden + u];
                let delta = sq * w;
                sum_b1 += delta;
                let x = &batch.x[batch.indices[q] as usize * d..][..d];
                for j in 0..d {
                    sums[j] += delta * x[j];
                }
            }
        }
        if D != 0 {
            g_w1[u * d..][..d].copy_from_slice(&local);
        }
        for &g in g_w1[u * d..][..d].iter() {
            squares += g * g;
        }
        g_b1[u] = sum_b1;
        g_w2[u] = sum_w2;
    }
    for &g in g_b1.iter() {
        squares += g * g;
    }
    for &g in g_w2.iter() {
        squares += g * g;
    }
    squares += grad_b2 * grad_b2;
    squares
}

// The reference is written as the schema writes it: `a = a + b`, indices.
#[cfg(test)]
#[allow(clippy::assign_op_pattern, clippy::needless_range_loop)]
mod tests {
    use super::*;
    use crate::chain::tagged_sha256;
    use crate::dataset::{CsvDataset, Scaling};
    use crate::model::{linear, model_hash};
    use crate::work::Run;

    /// The step exactly as schema/consensus.md writes it: one sum at a
    /// time, nothing blocked, rows copied out. The kernels must match it
    /// bit for bit.
    fn reference_step(
        params: &mut [f64],
        data: &Prepared,
        hidden: usize,
        indices: &[u32],
        learning_rate: f64,
        clip_norm: f64,
    ) {
        let grad = reference_gradient(params, data, hidden, indices);
        let mut squares = 0.0;
        for g in &grad {
            squares += g * g;
        }
        let norm: f64 = squares.sqrt();
        if !norm.is_finite() {
            return;
        }
        let mut grad = grad;
        if norm > clip_norm {
            let factor = clip_norm / norm;
            for g in &mut grad {
                *g = *g * factor;
            }
        }
        for (p, g) in params.iter_mut().zip(&grad) {
            *p = *p - learning_rate * g;
        }
    }

    fn reference_gradient(
        params: &[f64],
        data: &Prepared,
        hidden: usize,
        indices: &[u32],
    ) -> Vec<f64> {
        let d = data.features();
        let batch = indices.len();
        let layout = Layout::new(d, hidden);
        let rows: Vec<&[f64]> = indices
            .iter()
            .map(|&r| &data.train_x[r as usize * d..(r as usize + 1) * d])
            .collect();
        let mut z = vec![vec![0.0; hidden]; batch];
        let mut s = vec![0.0; batch];
        for q in 0..batch {
            for u in 0..hidden {
                let mut acc = params[layout.b1 + u];
                for j in 0..d {
                    acc = acc + params[u * d + j] * rows[q][j];
                }
                z[q][u] = acc;
            }
            let mut p = params[layout.b2];
            for u in 0..hidden {
                let h = if z[q][u] > 0.0 { z[q][u] } else { 0.0 };
                p = p + params[layout.w2 + u] * h;
            }
            let c = 2.0 / batch as f64;
            s[q] = c * (p - data.train_y[indices[q] as usize]);
        }
        let mut grad = vec![0.0; params.len()];
        for q in 0..batch {
            grad[layout.b2] = grad[layout.b2] + s[q];
        }
        for u in 0..hidden {
            for q in 0..batch {
                if z[q][u] > 0.0 {
                    grad[layout.w2 + u] = grad[layout.w2 + u] + s[q] * z[q][u];
                    let delta = s[q] * params[layout.w2 + u];
                    grad[layout.b1 + u] = grad[layout.b1 + u] + delta;
                    for j in 0..d {
                        grad[u * d + j] = grad[u * d + j] + delta * rows[q][j];
                    }
                }
            }
        }
        grad
    }

    /// `(1/B) Σ (p_q − y_q)²`, for the finite-difference check.
    fn loss(params: &[f64], data: &Prepared, hidden: usize, indices: &[u32]) -> f64 {
        let d = data.features();
        let mut sum = 0.0;
        for &r in indices {
            let r = r as usize;
            let e = predict(params, hidden, &data.train_x[r * d..(r + 1) * d]) - data.train_y[r];
            sum += e * e;
        }
        sum / indices.len() as f64
    }

    fn bits(values: &[f64]) -> Vec<u64> {
        values.iter().map(|v| v.to_bits()).collect()
    }

    /// `rows × features` training (and holdout) values; `wide` spreads the
    /// exponents so that any change of rounding order shows in the bits.
    fn synthetic(rows: usize, features: usize, seed: u64, wide: bool) -> Prepared {
        let mut state = seed;
        let mut next = move || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let unit = (state >> 11) as f64 / (1u64 << 53) as f64;
            let scale = if wide {
                [1e-3, 1.0, 37.0, 1e4][(state & 3) as usize]
            } else {
                2.0
            };
            (unit - 0.5) * scale
        };
        Prepared {
            feature_names: (0..features).map(|j| format!("x{j}")).collect(),
            target_name: "y".into(),
            feature_scaling: Vec::new(),
            target_scaling: Scaling {
                mean: 0.0,
                std: 1.0,
            },
            train_x: (0..rows * features).map(|_| next()).collect(),
            train_y: (0..rows).map(|_| next()).collect(),
            holdout_x: (0..rows * features).map(|_| next()).collect(),
            holdout_y: (0..rows).map(|_| next()).collect(),
            holdout_every: 2,
            feature_sources: (0..features)
                .map(|j| crate::dataset::FeatureSource::numeric(&format!("x{j}")))
                .collect(),
        }
    }

    fn diabetes() -> Prepared {
        let csv = CsvDataset::from_bytes("diabetes.csv", include_bytes!("../../data/diabetes.csv"))
            .expect("dataset parses");
        Prepared::new(
            &csv,
            "progression",
            None,
            5,
            crate::dataset::DEFAULT_MAX_CATEGORIES,
        )
        .expect("dataset prepares")
    }

    fn fixed_run() -> Run {
        let parent = tagged_sha256(b"test/parent", &[]);
        let miner = tagged_sha256(b"test/miner", &[]);
        Run::new(&parent, &miner, 7)
    }

    fn seed() -> Hash32 {
        tagged_sha256(b"test/mlp-job", &[])
    }

    /// `steps` steps of batch 32 from the job's initial model, batches
    /// drawn by [`fixed_run`].
    fn train(data: &Prepared, hidden: usize, steps: u64, lr: f64, clip: f64) -> Vec<f64> {
        let mut params = initial_params(data.features(), hidden, &seed());
        let mut scratch = StepScratch::new(data.features(), hidden, 32);
        let (mut indices, mut bytes) = ([0u32; 32], [0u8; 128]);
        let run = fixed_run();
        for i in 1..=steps {
            run.batch_indices(i, data.train_rows() as u32, &mut indices, &mut bytes);
            sgd_step(&mut params, data, hidden, &indices, lr, clip, &mut scratch);
        }
        params
    }

    #[test]
    fn param_count_is_the_layout() {
        assert_eq!(param_count(10, 32), 385);
        assert_eq!(param_count(3, 0), 1);
        assert_eq!(param_count(usize::MAX, 2), usize::MAX);
        let layout = Layout::new(10, 32);
        assert_eq!((layout.b1, layout.w2, layout.b2), (320, 352, 384));
    }

    #[test]
    fn initial_params_known_answer() {
        let params = initial_params(10, 32, &seed());
        assert_eq!(params.len(), 385);
        let a1 = (6.0f64 / 42.0).sqrt();
        let a2 = (6.0f64 / 33.0).sqrt();
        assert!(params[..320].iter().all(|w| w.abs() <= a1 && *w != 0.0));
        assert!(params[320..352].iter().all(|b| b.to_bits() == 0));
        assert!(params[352..384].iter().all(|w| w.abs() <= a2 && *w != 0.0));
        assert_eq!(params[384].to_bits(), 0);
        // Word 0 of the XOF, by hand.
        let mut hasher = blake3::Hasher::new();
        hasher.update(b"pouw/mlp-init");
        hasher.update(&seed().0);
        let mut words = [0u8; 8 * 321];
        hasher.finalize_xof().fill(&mut words);
        let word = |k: usize| {
            u64::from_le_bytes(words[8 * k..8 * k + 8].try_into().expect("8 bytes")) >> 11
        };
        let u0 = word(0) as f64 / 9_007_199_254_740_992.0;
        assert_eq!(params[0].to_bits(), (a1 * (2.0 * u0 - 1.0)).to_bits());
        let u320 = word(320) as f64 / 9_007_199_254_740_992.0;
        assert_eq!(params[352].to_bits(), (a2 * (2.0 * u320 - 1.0)).to_bits());
        // Pinned bits.
        let pinned: Vec<(usize, u64)> = [0, 1, 319, 352, 383]
            .iter()
            .map(|&i| (i, params[i].to_bits()))
            .collect();
        assert_eq!(pinned, PINNED_INIT, "{pinned:#x?}");
        assert_eq!(model_hash(&params).to_hex(), PINNED_INIT_HASH);
        // Another seed, another model; the same seed, the same model.
        assert_ne!(params, initial_params(10, 32, &Hash32([0; 32])));
        assert_eq!(bits(&params), bits(&initial_params(10, 32, &seed())));
    }

    const PINNED_INIT: &[(usize, u64)] = &[
        (0, 0xbfd33311c94d57f6),
        (1, 0xbfb97b258522e859),
        (319, 0x3fd7d1867a31fb4a),
        (352, 0xbfb99a2d62cfc6f9),
        (383, 0x3fc4231c0c2509f1),
    ];
    const PINNED_INIT_HASH: &str =
        "f8c7ee0db3fc34225420d4a24af5b66ef6cca9bdc9574963de09065ced25f7dd";

    #[test]
    fn training_known_answer() {
        let params = train(&diabetes(), 32, 100, 0.01, 1.0);
        let pinned: Vec<(usize, u64)> = [0, 100, 320, 352, 384]
            .iter()
            .map(|&i| (i, params[i].to_bits()))
            .collect();
        assert_eq!(pinned, PINNED_TRAINED, "{pinned:#x?}");
        assert_eq!(model_hash(&params).to_hex(), PINNED_TRAINED_HASH);
    }

    const PINNED_TRAINED: &[(usize, u64)] = &[
        (0, 0xbfd29cb8b0212b64),
        (100, 0x3fc7cd541b749c57),
        (320, 0xbf6bdafd3e7f8cc2),
        (352, 0xbfa66f93398d5cfe),
        (384, 0x3fb644d6413ec2ba),
    ];
    const PINNED_TRAINED_HASH: &str =
        "62e03dfe4167cd380d970abadcad4b57067266640913b2cc8e2c89ef363ba98f";

    #[test]
    fn kernels_match_the_reference_bit_for_bit() {
        let rows = 40;
        // 1..=16 inputs take the fixed-width kernels, the rest the general one.
        for features in 1..=19 {
            let data = synthetic(rows, features, features as u64, true);
            for hidden in [1usize, 3, 8, 16, 17, 33] {
                for batch in [1usize, 7, 8, 9, 32, 33, 64, 65, 130] {
                    let indices: Vec<u32> = (0..batch)
                        .map(|q| ((q * 7 + features + hidden) % rows) as u32)
                        .collect();
                    let mut seed_bytes = [0u8; 32];
                    seed_bytes[0] = features as u8;
                    seed_bytes[1] = hidden as u8;
                    let mut fast = initial_params(features, hidden, &Hash32(seed_bytes));
                    // Non-zero biases, so that they take part.
                    for (k, p) in fast.iter_mut().enumerate().skip(hidden * features) {
                        *p = 0.1 * ((k % 5) as f64 - 2.0);
                    }
                    let mut slow = fast.clone();
                    let mut scratch = StepScratch::new(features, hidden, 4);
                    for step in 0..6 {
                        // Both sides of the clip: a small norm, then none.
                        let clip = if step % 2 == 0 { 0.5 } else { f64::INFINITY };
                        let lr = 1e-4 * (step + 1) as f64;
                        sgd_step(&mut fast, &data, hidden, &indices, lr, clip, &mut scratch);
                        reference_step(&mut slow, &data, hidden, &indices, lr, clip);
                        assert_eq!(
                            bits(&fast),
                            bits(&slow),
                            "{features} inputs, {hidden} units, batch {batch}, step {step}"
                        );
                    }
                    // The general kernel on a width the fixed ones take.
                    let batch_rows = Batch {
                        x: &data.train_x,
                        y: &data.train_y,
                        indices: &indices,
                    };
                    let fixed = reference_gradient(&fast, &data, hidden, &indices);
                    gradient::<0>(features, hidden, &fast, &batch_rows, &mut scratch);
                    let n = fixed.len();
                    assert_eq!(bits(&scratch.grad[..n]), bits(&fixed));
                }
            }
        }
    }

    #[test]
    fn the_dispatched_kernel_matches_the_portable_one() {
        let chosen = kernel::Kernel::detect();
        // On a CPU with AVX2 the comparison below is between two different
        // compiled copies; elsewhere it only checks the choice.
        #[cfg(target_arch = "x86_64")]
        assert_eq!(
            chosen != kernel::Kernel::Portable,
            is_x86_feature_detected!("avx2"),
            "{chosen:?}"
        );
        let rows = 50;
        for features in [1usize, 10, 13] {
            let data = synthetic(rows, features, 100 + features as u64, true);
            for hidden in [1usize, 3, 17, 32, 33] {
                for batch_size in [1usize, 5, 32, 65] {
                    let indices: Vec<u32> = (0..batch_size)
                        .map(|q| ((q * 13 + hidden) % rows) as u32)
                        .collect();
                    let batch = Batch {
                        x: &data.train_x,
                        y: &data.train_y,
                        indices: &indices,
                    };
                    let mut params = initial_params(features, hidden, &seed());
                    for (k, p) in params.iter_mut().enumerate().skip(hidden * features) {
                        *p = 0.1 * ((k % 7) as f64 - 3.0);
                    }
                    let n = params.len();
                    let mut fast = StepScratch::new(features, hidden, batch_size);
                    let mut slow = StepScratch::new(features, hidden, batch_size);
                    // A few steps, so that the units' activity changes.
                    for step in 0..3 {
                        let case = format!(
                            "{features} inputs, {hidden} units, batch {batch_size}, step {step}"
                        );
                        let a = chosen.gradient(features, hidden, &params, &batch, &mut fast);
                        let b = kernel::Kernel::Portable
                            .gradient(features, hidden, &params, &batch, &mut slow);
                        assert_eq!(a.to_bits(), b.to_bits(), "{case}");
                        assert_eq!(bits(&fast.grad[..n]), bits(&slow.grad[..n]), "{case}");
                        let hs = batch_size * hidden;
                        assert_eq!(bits(&fast.h[..hs]), bits(&slow.h[..hs]), "{case}");
                        for (p, g) in params.iter_mut().zip(&slow.grad) {
                            *p = *p - 0.05 * g;
                        }
                    }
                }
            }
        }
    }

    /// The AVX2 hidden layer (full blocks of 16 units) and backward pass
    /// give the portable loops' activations, active bits and gradient bit
    /// for bit, at compile-time widths (1, 4, 10, 16 inputs: partial and
    /// whole vectors) and the general one (17 inputs, portable backward
    /// pass), across the 64-row words of active bits, and with
    /// pre-activations that are exactly `±0.0`, infinite or NaN.
    #[test]
    fn the_avx2_hidden_layer_matches_the_portable_one() {
        let chosen = kernel::Kernel::detect();
        if chosen == kernel::Kernel::Portable {
            eprintln!("no AVX2 on this CPU: nothing to compare");
            return;
        }
        let rows = 140;
        for features in [1usize, 4, 10, 16, 17] {
            let data = synthetic(rows, features, 7 + features as u64, true);
            for hidden in [16usize, 32, 33, 48] {
                let layout = Layout::new(features, hidden);
                let mut params = initial_params(features, hidden, &seed());
                for (k, p) in params.iter_mut().enumerate().skip(layout.b1) {
                    *p = 0.1 * ((k % 7) as f64 - 3.0);
                }
                // Unit 1: z = +0.0 on every row; unit 2: z = -0.0 + ±0;
                // unit 3: +inf; unit 4: NaN; unit 5: -inf.
                params[features..3 * features].fill(0.0);
                params[layout.b1 + 1] = 0.0;
                params[layout.b1 + 2] = -0.0;
                params[layout.b1 + 3] = f64::INFINITY;
                params[layout.b1 + 4] = f64::NAN;
                params[layout.b1 + 5] = f64::NEG_INFINITY;
                for batch_size in [1usize, 2, 31, 63, 64, 65, 130] {
                    let indices: Vec<u32> = (0..batch_size)
                        .map(|q| ((q * 29 + hidden) % rows) as u32)
                        .collect();
                    let batch = Batch {
                        x: &data.train_x,
                        y: &data.train_y,
                        indices: &indices,
                    };
                    let mut fast = StepScratch::new(features, hidden, batch_size);
                    let mut slow = StepScratch::new(features, hidden, batch_size);
                    let case = format!("{features} inputs, {hidden} units, batch {batch_size}");
                    let a = chosen.gradient(features, hidden, &params, &batch, &mut fast);
                    let b = kernel::Kernel::Portable
                        .gradient(features, hidden, &params, &batch, &mut slow);
                    assert_eq!(a.to_bits(), b.to_bits(), "{case}");
                    let n = params.len();
                    assert_eq!(bits(&fast.grad[..n]), bits(&slow.grad[..n]), "{case}");
                    let hs = batch_size * hidden;
                    assert_eq!(bits(&fast.h[..hs]), bits(&slow.h[..hs]), "{case}");
                    let words = hidden * batch_size.div_ceil(64);
                    assert_eq!(fast.active[..words], slow.active[..words], "{case}");
                    // The special units are inactive (+0.0, -0.0, NaN,
                    // -inf) or active (+inf) on every row.
                    for q in 0..batch_size {
                        let h = &fast.h[q * hidden..][..6];
                        assert_eq!(bits(&h[1..6]), bits(&[0.0, 0.0, f64::INFINITY, 0.0, 0.0]));
                    }
                }
            }
        }
    }

    #[test]
    fn predict_is_the_training_forward_pass() {
        let data = synthetic(20, 5, 3, true);
        let params = initial_params(5, 6, &seed());
        for r in 0..20 {
            let row = &data.train_x[r * 5..(r + 1) * 5];
            let mut p = params[Layout::new(5, 6).b2];
            for u in 0..6 {
                let mut z = params[30 + u];
                for j in 0..5 {
                    z = z + params[u * 5 + j] * row[j];
                }
                p = p + params[36 + u] * relu(z);
            }
            assert_eq!(predict(&params, 6, row).to_bits(), p.to_bits());
        }
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let (features, hidden) = (3, 4);
        let data = synthetic(12, features, 11, false);
        let indices = [0u32, 3, 5, 5, 9];
        let mut params = initial_params(features, hidden, &seed());
        for (k, p) in params.iter_mut().enumerate().skip(hidden * features) {
            *p = 0.05 * (k as f64 - 14.0);
        }
        let batch = Batch {
            x: &data.train_x,
            y: &data.train_y,
            indices: &indices,
        };
        let mut scratch = StepScratch::new(features, hidden, indices.len());
        let squares = gradient::<3>(features, hidden, &params, &batch, &mut scratch);
        let grad = scratch.grad[..params.len()].to_vec();
        let mut expected_squares = 0.0;
        for g in &grad {
            expected_squares += g * g;
        }
        assert_eq!(squares.to_bits(), expected_squares.to_bits());
        // No pre-activation near the kink, where the difference quotient
        // would straddle it.
        for &r in &indices {
            let row = &data.train_x[r as usize * features..][..features];
            for u in 0..hidden {
                let mut z = params[hidden * features + u];
                for j in 0..features {
                    z += params[u * features + j] * row[j];
                }
                assert!(z.abs() > 1e-3, "z = {z}");
            }
        }
        let mut active_units = 0;
        for i in 0..params.len() {
            let step = 1e-6;
            let (mut up, mut down) = (params.clone(), params.clone());
            up[i] += step;
            down[i] -= step;
            let numeric = (loss(&up, &data, hidden, &indices)
                - loss(&down, &data, hidden, &indices))
                / (2.0 * step);
            let tolerance = 1e-6 * (1.0 + grad[i].abs());
            assert!(
                (numeric - grad[i]).abs() <= tolerance,
                "parameter {i}: analytic {}, numeric {numeric}",
                grad[i]
            );
            active_units += usize::from(grad[i] != 0.0);
        }
        // The check means something only if most parameters move the loss.
        assert!(active_units > params.len() / 2, "{active_units}");
    }

    #[test]
    fn clipping_bounds_the_step() {
        let data = diabetes();
        let (d, hidden) = (data.features(), 16);
        let mut params = initial_params(d, hidden, &seed());
        let mut scratch = StepScratch::new(d, hidden, 32);
        let run = fixed_run();
        let (mut indices, mut bytes) = ([0u32; 32], [0u8; 128]);
        for (lr, clip) in [(1.0, 1e-3), (1e6, 1.0), (0.5, 1e-300)] {
            for i in 1..=50 {
                run.batch_indices(i, data.train_rows() as u32, &mut indices, &mut bytes);
                let before = params.clone();
                sgd_step(&mut params, &data, hidden, &indices, lr, clip, &mut scratch);
                let mut moved = 0.0;
                for (a, b) in params.iter().zip(&before) {
                    moved += (a - b) * (a - b);
                }
                let moved: f64 = moved.sqrt();
                assert!(moved <= lr * clip * (1.0 + 1e-9), "{moved} > {lr} · {clip}");
            }
            params = initial_params(d, hidden, &seed());
        }
    }

    #[test]
    fn a_huge_learning_rate_stays_finite() {
        let data = diabetes();
        let params = train(&data, 32, 10_000, 1e6, 1.0);
        assert_eq!(crate::model::first_non_finite(&params), None);
        // It did move: the steps were clipped, not skipped.
        let start = initial_params(data.features(), 32, &seed());
        let mut moved = 0.0;
        for (a, b) in params.iter().zip(&start) {
            moved += (a - b) * (a - b);
        }
        assert!(moved.sqrt() > 1e6, "{}", moved.sqrt());
    }

    #[test]
    fn clipping_starts_just_past_the_limit() {
        let data = diabetes();
        let (d, hidden) = (data.features(), 8);
        let start = initial_params(d, hidden, &seed());
        let indices: Vec<u32> = (0..32).map(|q| q * 11 % 354).collect();
        let grad = reference_gradient(&start, &data, hidden, &indices);
        let mut squares = 0.0;
        for g in &grad {
            squares += g * g;
        }
        let norm: f64 = squares.sqrt();
        let lr = 0.1;
        let step = |clip: f64| {
            let mut params = start.clone();
            let mut scratch = StepScratch::new(d, hidden, 32);
            sgd_step(&mut params, &data, hidden, &indices, lr, clip, &mut scratch);
            params
        };
        let unclipped: Vec<f64> = start.iter().zip(&grad).map(|(p, g)| p - lr * g).collect();
        // At the limit: not clipped (the factor would be exactly 1 anyway,
        // so compare with an infinite limit too).
        assert_eq!(bits(&step(norm)), bits(&unclipped));
        assert_eq!(bits(&step(f64::INFINITY)), bits(&unclipped));
        // One past it: clipped by clip / norm.
        let clip = norm.next_down();
        let factor = clip / norm;
        assert!(factor < 1.0);
        let clipped: Vec<f64> = start
            .iter()
            .zip(&grad)
            .map(|(p, g)| p - lr * (g * factor))
            .collect();
        let past = step(clip);
        assert_eq!(bits(&past), bits(&clipped));
        assert_ne!(bits(&past), bits(&unclipped));
    }

    #[test]
    fn a_non_finite_gradient_skips_the_step() {
        let data = diabetes();
        let (d, hidden) = (data.features(), 4);
        let indices: Vec<u32> = (0..32).collect();
        let mut scratch = StepScratch::new(d, hidden, 32);
        for poison in [f64::NAN, f64::INFINITY, 1e200] {
            let mut params = initial_params(d, hidden, &seed());
            // b2 poisoned: every error is NaN or infinite, or (1e200) the
            // sum of squares overflows.
            let last = params.len() - 1;
            params[last] = poison;
            let before = bits(&params);
            sgd_step(&mut params, &data, hidden, &indices, 0.1, 1.0, &mut scratch);
            assert_eq!(bits(&params), before, "{poison}");
        }
        // An empty batch changes nothing.
        let mut params = initial_params(d, hidden, &seed());
        let before = bits(&params);
        sgd_step(&mut params, &data, hidden, &[], 0.1, 1.0, &mut scratch);
        assert_eq!(bits(&params), before);
    }

    #[test]
    fn relu_is_exact_at_zero() {
        assert_eq!(relu(0.0).to_bits(), 0);
        assert_eq!(relu(-0.0).to_bits(), 0);
        assert_eq!(relu(f64::NAN).to_bits(), 0);
        assert_eq!(relu(-1e-300).to_bits(), 0);
        assert_eq!(
            relu(f64::MIN_POSITIVE).to_bits(),
            f64::MIN_POSITIVE.to_bits()
        );
        assert_eq!(relu(5e-324).to_bits(), 5e-324f64.to_bits());

        // Units whose pre-activation is exactly +0.0 or -0.0 on every row
        // are inactive: their weights get no gradient at all.
        let data = synthetic(10, 2, 5, false);
        let hidden = 3;
        let mut params = initial_params(2, hidden, &seed());
        let layout = Layout::new(2, hidden);
        params[..2].fill(0.0); // unit 0: z = +0.0 + 0·x = +0.0
        params[layout.b1] = 0.0;
        params[2..4].fill(0.0); // unit 1: z = -0.0 + (±0)
        params[layout.b1 + 1] = -0.0;
        params[layout.b1 + 2] = 10.0; // unit 2: active everywhere
        let indices: Vec<u32> = (0..10).collect();
        let batch = Batch {
            x: &data.train_x,
            y: &data.train_y,
            indices: &indices,
        };
        let mut scratch = StepScratch::new(2, hidden, 10);
        gradient::<2>(2, hidden, &params, &batch, &mut scratch);
        let g = &scratch.grad;
        for u in 0..2 {
            assert_eq!(bits(&g[u * 2..u * 2 + 2]), [0, 0]);
            assert_eq!(g[layout.b1 + u].to_bits(), 0);
            assert_eq!(g[layout.w2 + u].to_bits(), 0);
        }
        assert_ne!(g[layout.w2 + 2], 0.0);
        assert_ne!(g[layout.b1 + 2], 0.0);
        for q in 0..10 {
            assert_eq!(bits(&scratch.h[q * 3..q * 3 + 2]), [0, 0]);
        }
    }

    #[test]
    fn training_on_diabetes_learns() {
        let data = diabetes();
        let holdout: Vec<u32> = (0..data.holdout_rows() as u32).collect();
        let train_rows: Vec<u32> = (0..data.train_rows() as u32).collect();
        let start = initial_params(data.features(), 32, &seed());
        let trained = train(&data, 32, 1500, 0.01, 1.0);
        let (loss_before, loss_after) = (
            loss(&start, &data, 32, &train_rows),
            loss(&trained, &data, 32, &train_rows),
        );
        let (score_before, score_after) = (
            score_ppm(&start, 32, &data, &holdout),
            score_ppm(&trained, 32, &data, &holdout),
        );
        assert!(
            loss_after < 0.6 * loss_before,
            "{loss_before} → {loss_after}"
        );
        assert!(
            score_after > score_before && score_after > 400_000,
            "{score_before} → {score_after}"
        );
    }

    #[test]
    fn score_is_linear_r2_on_an_mlp_that_is_linear() {
        // relu(z) − relu(−z) = z: two units computing ±(b + Σ w_j x_j)
        // give exactly the linear model's prediction, so the scores agree.
        let data = diabetes();
        let d = data.features();
        let mut linear_params = vec![0.0; d + 1];
        let mut scratch = linear::StepScratch::new(32, d);
        let run = fixed_run();
        let (mut indices, mut bytes) = ([0u32; 32], [0u8; 128]);
        for i in 1..=500 {
            run.batch_indices(i, data.train_rows() as u32, &mut indices, &mut bytes);
            let rate = linear::StepRate {
                learning_rate: 0.002 * 16.0,
                grad_scale: 2.0 / 32.0,
                clip_norm: f64::INFINITY,
            };
            linear::sgd_step(&mut linear_params, &data, &indices, rate, &mut scratch);
        }
        let (w, bias) = linear_params.split_at(d);
        let layout = Layout::new(d, 2);
        let mut params = vec![0.0; param_count(d, 2)];
        for j in 0..d {
            params[j] = w[j];
            params[d + j] = -w[j];
        }
        params[layout.b1] = bias[0];
        params[layout.b1 + 1] = -bias[0];
        params[layout.w2] = 1.0;
        params[layout.w2 + 1] = -1.0;
        for r in 0..data.holdout_rows() {
            let row = &data.holdout_x[r * d..(r + 1) * d];
            assert_eq!(
                predict(&params, 2, row).to_bits(),
                linear::predict(&linear_params, row).to_bits()
            );
        }
        let rows: Vec<u32> = (0..data.holdout_rows() as u32).chain([3, 3, 70]).collect();
        let expected = linear::score_ppm(&linear_params, &data, &rows);
        assert!(expected > 300_000, "{expected}");
        assert_eq!(score_ppm(&params, 2, &data, &rows), expected);
        // The shared R² is linear's on linear's predictions, and 0 on
        // no rows.
        let shared = crate::model::r2_score_ppm(&data.holdout_y, &rows, |r| {
            linear::predict(&linear_params, &data.holdout_x[r * d..(r + 1) * d])
        });
        assert_eq!(shared, expected);
        assert_eq!(score_ppm(&params, 2, &data, &[]), 0);
    }
}
