//! The forward pass's arithmetic other than matrix products, written as plain loops over
//! slices that the compiler vectorises. They are `#[inline(always)]` so that each compiled
//! variant of the forward pass (AVX-512, AVX2+FMA, baseline — see `forward.rs`) gets them
//! in its own instruction set. No float sum runs as one serial chain: reductions keep
//! `LANES` partial sums, which the compiler keeps in one vector register.

const LANES: usize = 16;

/// Σ xs, in `LANES` interleaved partial sums.
#[inline(always)]
pub(crate) fn sum(xs: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let chunks = xs.chunks_exact(LANES);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (a, x) in acc.iter_mut().zip(chunk) {
            *a += x;
        }
    }
    acc.iter().sum::<f32>() + rest.iter().sum::<f32>()
}

/// max xs (−∞ for none).
#[inline(always)]
pub(crate) fn max(xs: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = xs.chunks_exact(LANES);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (a, &x) in acc.iter_mut().zip(chunk) {
            *a = if x > *a { x } else { *a };
        }
    }
    acc.iter().chain(rest).fold(f32::NEG_INFINITY, |m, &x| if x > m { x } else { m })
}

/// eˣ to within ~2 ulp for x in [−87, 88] (clamped outside: 0-ish and 1.6e38), branch-free
/// so that a loop over it vectorises.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    // x = n·ln2 + r with n whole and |r| ≤ ln2/2; eˣ = 2ⁿ·eʳ. Adding 1.5·2²³ rounds x/ln2
    // to a whole number and leaves it in the low mantissa bits.
    const SHIFT: f32 = 12_582_912.0;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    let x = x.clamp(-87.0, 88.0);
    let t = x * std::f32::consts::LOG2_E + SHIFT;
    let n = t - SHIFT;
    let r = x - n * LN2_HI - n * LN2_LO;
    // Taylor series of eʳ to r⁷/7! (error < 2e-9 on |r| ≤ 0.347).
    let p = 1.0 + r * (1.0 + r * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
    let whole = t.to_bits().wrapping_sub(SHIFT.to_bits()) as i32;
    p * f32::from_bits(((whole + 127) as u32) << 23)
}

/// erf(x) to within 1e-6 (Abramowitz & Stegun 7.1.26: 1.5e-7, plus f32 rounding).
#[inline(always)]
pub(crate) fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = t * (0.254_829_6 + t * (-0.284_496_74 + t * (1.421_413_8 + t * (-1.453_152 + t * 1.061_405_4))));
    (1.0 - poly * exp(-a * a)).copysign(x)
}

/// In place: GELU with the exact normal CDF, `x·(1 + erf(x/√2))/2`.
#[inline(always)]
pub(crate) fn gelu(xs: &mut [f32]) {
    for x in xs {
        *x = 0.5 * *x * (1.0 + erf(*x * std::f32::consts::FRAC_1_SQRT_2));
    }
}

/// In place: GELU's tanh approximation, `x·(1 + tanh(√(2/π)·(x + 0.044715x³)))/2`.
#[inline(always)]
pub(crate) fn gelu_tanh(xs: &mut [f32]) {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    for x in xs {
        let u = SQRT_2_OVER_PI * (*x + 0.044_715 * *x * *x * *x);
        // tanh(u) = 1 − 2/(e²ᵘ + 1), exact at both ends of the clamp.
        let tanh = 1.0 - 2.0 / (exp(2.0 * u) + 1.0);
        *x = 0.5 * *x * (1.0 + tanh);
    }
}

/// In place: max(x, 0).
#[inline(always)]
pub(crate) fn relu(xs: &mut [f32]) {
    for x in xs {
        *x = if *x > 0.0 { *x } else { 0.0 };
    }
}

/// In place: the row's softmax.
#[inline(always)]
pub(crate) fn softmax(row: &mut [f32]) {
    let m = max(row);
    for x in row.iter_mut() {
        *x = exp(*x - m);
    }
    let scale = 1.0 / sum(row);
    for x in row.iter_mut() {
        *x *= scale;
    }
}

/// In place, each `weight.len()`-wide row: `(x − mean)/√(var + eps)·weight + bias`.
#[inline(always)]
pub(crate) fn layer_norm(rows: &mut [f32], weight: &[f32], bias: &[f32], eps: f32) {
    let width = weight.len();
    for row in rows.chunks_exact_mut(width) {
        let mean = sum(row) / width as f32;
        for x in row.iter_mut() {
            *x -= mean;
        }
        let mut squares = [0.0f32; LANES];
        let chunks = row.chunks_exact(LANES);
        let rest: f32 = chunks.remainder().iter().map(|x| x * x).sum();
        for chunk in chunks {
            for (s, x) in squares.iter_mut().zip(chunk) {
                *s += x * x;
            }
        }
        let inv = 1.0 / ((squares.iter().sum::<f32>() + rest) / width as f32 + eps).sqrt();
        for ((x, w), b) in row.iter_mut().zip(weight).zip(bias) {
            *x = *x * inv * w + b;
        }
    }
}

/// `out += s·xs`.
#[inline(always)]
pub(crate) fn axpy(out: &mut [f32], s: f32, xs: &[f32]) {
    for (o, x) in out.iter_mut().zip(xs) {
        *o += s * x;
    }
}

/// Each `bias.len()`-wide row of `out` set to `bias` (plus the same row of `base`, if given).
#[inline(always)]
pub(crate) fn fill_rows(out: &mut [f32], bias: &[f32], base: Option<&[f32]>) {
    let width = bias.len();
    match base {
        None => out.chunks_exact_mut(width).for_each(|row| row.copy_from_slice(bias)),
        Some(base) => {
            for (row, base) in out.chunks_exact_mut(width).zip(base.chunks_exact(width)) {
                for ((o, b), x) in row.iter_mut().zip(bias).zip(base) {
                    *o = b + x;
                }
            }
        }
    }
}

/// `out[m×n] += a[m×k]·b[k×n]`, all row-major, on `threads` threads.
pub(crate) fn matmul_add(out: &mut [f32], a: &[f32], b: &[f32], m: usize, k: usize, n: usize, threads: usize) {
    assert!(out.len() == m * n && a.len() == m * k && b.len() == k * n, "matmul_add shapes");
    let parallelism = if threads > 1 { gemm::Parallelism::Rayon(threads) } else { gemm::Parallelism::None };
    // SAFETY: the three slices have the lengths the strides and sizes describe (asserted), and
    // `out` is borrowed mutably, so it overlaps neither input.
    unsafe {
        gemm::gemm(m, n, k, out.as_mut_ptr(), 1, n as isize, true, a.as_ptr(), 1, k as isize, b.as_ptr(), 1, n as isize, 1.0, 1.0, false, false, false, parallelism);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tolerance: f64) -> bool {
        (a - b).abs() <= tolerance * b.abs().max(1e-30)
    }

    #[test]
    fn exp_is_accurate_over_its_range() {
        let mut x = -87.0f32;
        while x < 88.0 {
            let want = (x as f64).exp();
            assert!(close(exp(x) as f64, want, 3e-7), "exp({x}) = {} want {want}", exp(x));
            x += 0.013;
        }
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(-1000.0) < 1e-37 && exp(-1000.0) >= 0.0);
        assert!(exp(1000.0).is_finite());
    }

    #[test]
    fn erf_is_accurate() {
        // Reference: erf by its Taylor series in f64 (converges fast for |x| ≤ 3).
        fn erf64(x: f64) -> f64 {
            let (mut term, mut total, mut n) = (x, x, 0.0);
            while term.abs() > 1e-17 {
                n += 1.0;
                term *= -x * x / n;
                total += term / (2.0 * n + 1.0);
            }
            total * 2.0 / std::f64::consts::PI.sqrt()
        }
        let mut x = -3.0f32;
        while x <= 3.0 {
            let want = erf64(x as f64);
            assert!((erf(x) as f64 - want).abs() < 1e-6, "erf({x}) = {} want {want}", erf(x));
            x += 0.01;
        }
        assert!((erf(6.0) - 1.0).abs() < 1e-7 && (erf(-6.0) + 1.0).abs() < 1e-7);
    }

    #[test]
    fn gelu_variants_match_their_definitions() {
        let xs: Vec<f32> = (-60..=60).map(|i| i as f32 / 10.0).collect();
        let mut exact = xs.clone();
        gelu(&mut exact);
        let mut approx = xs.clone();
        gelu_tanh(&mut approx);
        for ((x, e), a) in xs.iter().zip(&exact).zip(&approx) {
            let x = *x as f64;
            let tanh_form = 0.5 * x * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x.powi(3))).tanh());
            assert!((*a as f64 - tanh_form).abs() < 1e-6, "gelu_tanh({x})");
            // The two forms differ by < 1e-3 everywhere, and the exact one is 0 at 0, x far right.
            assert!((e - a).abs() < 1e-3, "gelu({x}) = {e}, tanh form {a}");
        }
        assert_eq!(exact[60], 0.0);
        assert!((exact[120] - 6.0).abs() < 1e-6 && exact[0].abs() < 1e-6);
        let mut r = vec![-1.0, 0.5];
        relu(&mut r);
        assert_eq!(r, vec![0.0, 0.5]);
    }

    #[test]
    fn reductions_and_row_kernels_match_naive_loops() {
        let xs: Vec<f32> = (0..389).map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0).collect();
        let naive: f64 = xs.iter().map(|&x| x as f64).sum();
        assert!((sum(&xs) as f64 - naive).abs() < 1e-3);
        assert_eq!(max(&xs), xs.iter().cloned().fold(f32::MIN, f32::max));
        assert_eq!(max(&[]), f32::NEG_INFINITY);

        let mut row = xs[..50].to_vec();
        softmax(&mut row);
        let m = xs[..50].iter().cloned().fold(f32::MIN, f32::max) as f64;
        let total: f64 = xs[..50].iter().map(|&x| (x as f64 - m).exp()).sum();
        for (p, x) in row.iter().zip(&xs[..50]) {
            assert!(close(*p as f64, (*x as f64 - m).exp() / total, 1e-5));
        }

        let width = 97;
        let weight: Vec<f32> = (0..width).map(|i| 1.0 + i as f32 / 100.0).collect();
        let bias: Vec<f32> = (0..width).map(|i| i as f32 / 10.0).collect();
        let mut rows = xs[..2 * width].to_vec();
        layer_norm(&mut rows, &weight, &bias, 1e-12);
        for (r, row) in xs[..2 * width].chunks(width).enumerate() {
            let mean = row.iter().map(|&x| x as f64).sum::<f64>() / width as f64;
            let var = row.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / width as f64;
            for c in 0..width {
                let want = (row[c] as f64 - mean) / var.sqrt() * weight[c] as f64 + bias[c] as f64;
                assert!((rows[r * width + c] as f64 - want).abs() < 1e-4);
            }
        }
    }

    #[test]
    fn matmul_adds_the_product() {
        let (m, k, n) = (5, 7, 3);
        let a: Vec<f32> = (0..m * k).map(|i| i as f32 * 0.5).collect();
        let b: Vec<f32> = (0..k * n).map(|i| 1.0 - i as f32 * 0.25).collect();
        let bias = [1.0, 2.0, 3.0];
        let mut out = vec![0.0; m * n];
        fill_rows(&mut out, &bias, None);
        for threads in [1, 2] {
            let mut out = out.clone();
            matmul_add(&mut out, &a, &b, m, k, n, threads);
            for i in 0..m {
                for j in 0..n {
                    let want: f32 = bias[j] + (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum::<f32>();
                    assert!((out[i * n + j] - want).abs() < 1e-3, "({i},{j})");
                }
            }
        }
        let mut with_base = vec![0.0; 6];
        fill_rows(&mut with_base, &bias, Some(&[10.0, 20.0, 30.0, 40.0, 50.0, 60.0]));
        assert_eq!(with_base, vec![11.0, 22.0, 33.0, 41.0, 52.0, 63.0]);
    }
}
