//! Scale searches shared by the weight quantizers.
//!
//! These follow the algorithms of llama.cpp's `make_qx_quants` (symmetric, weighted least
//! squares over a few candidate scales), `make_q3_quants` (symmetric with coordinate-descent
//! refinement), `make_qkx2_quants` (scale + min, least squares over a range of candidate scales)
//! and the IQ4 non-linear search, step for step and in the same floating-point order, so that
//! without an importance matrix our quantized files match llama-quantize's.

use super::nearest_int;

/// Blocks whose largest magnitude is below this are treated as all zero.
pub(crate) const GROUP_MAX_EPS: f32 = 1e-15;

/// `(amax, max)`: the largest magnitude and the first element having it, with its sign.
pub(crate) fn signed_abs_max(x: &[f32]) -> (f32, f32) {
    let (mut amax, mut max) = (0.0f32, 0.0f32);
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    (amax, max)
}

/// Symmetric quantization to `l` in `-nmax..nmax` (stored as `l + nmax` in `out`), weights
/// `x^2`: tries `iscale = -(nmax + 0.1 k)/max` for k in -9..=9 and keeps the least-squares scale
/// with the best fit. Returns the scale (`x ~ scale * l`). (`make_qx_quants`, rmse_type 1.)
pub(crate) fn symmetric_search(x: &[f32], nmax: i32, out: &mut [u8]) -> f32 {
    let (amax, max) = signed_abs_max(x);
    if amax < GROUP_MAX_EPS {
        out.fill(0);
        return 0.0;
    }
    let quant = |iscale: f32, v: f32| nearest_int(iscale * v).clamp(-nmax, nmax - 1);
    let sums = |iscale: f32| {
        let (mut sumlx, mut suml2) = (0.0f32, 0.0f32);
        for &v in x {
            let l = quant(iscale, v) as f32;
            let w = v * v;
            sumlx += w * v * l;
            suml2 += w * l * l;
        }
        (sumlx, suml2)
    };
    let fill = |iscale: f32, out: &mut [u8]| {
        for (o, &v) in out.iter_mut().zip(x) {
            *o = (quant(iscale, v) + nmax) as u8;
        }
    };
    let iscale = -(nmax as f32) / max;
    fill(iscale, out);
    let (sumlx, suml2) = sums(iscale);
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    let mut best = scale * sumlx;
    for k in -9..=9 {
        if k == 0 {
            continue;
        }
        let iscale = -(nmax as f32 + 0.1f32 * k as f32) / max;
        let (sumlx, suml2) = sums(iscale);
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            fill(iscale, out);
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

/// Symmetric quantization to `l` in `-nmax..nmax` (stored as `l + nmax`), weights `x^2`, starting
/// from `iscale = -nmax/max` and then moving single quants while the weighted fit improves (up to 5
/// sweeps). Returns the least-squares scale. (`make_q3_quants` with `do_rmse`.)
pub(crate) fn symmetric_refine(x: &[f32], nmax: i32, out: &mut [u8]) -> f32 {
    let (amax, max) = signed_abs_max(x);
    if amax < GROUP_MAX_EPS {
        out.fill(0);
        return 0.0;
    }
    let iscale = -(nmax as f32) / max;
    let mut l = [0i32; 32];
    let l = &mut l[..x.len()];
    let (mut sumlx, mut suml2) = (0.0f32, 0.0f32);
    for (li, &v) in l.iter_mut().zip(x) {
        *li = nearest_int(iscale * v).clamp(-nmax, nmax - 1);
        let w = v * v;
        sumlx += w * v * *li as f32;
        suml2 += w * *li as f32 * *li as f32;
    }
    for _ in 0..5 {
        let mut changed = 0;
        for (li, &v) in l.iter_mut().zip(x) {
            let w = v * v;
            let mut slx = sumlx - w * v * *li as f32;
            if slx > 0.0 {
                let mut sl2 = suml2 - w * *li as f32 * *li as f32;
                let new_l = nearest_int(v * sl2 / slx).clamp(-nmax, nmax - 1);
                if new_l != *li {
                    slx += w * v * new_l as f32;
                    sl2 += w * new_l as f32 * new_l as f32;
                    if sl2 > 0.0 && slx * slx * suml2 > sumlx * sumlx * sl2 {
                        *li = new_l;
                        sumlx = slx;
                        suml2 = sl2;
                        changed += 1;
                    }
                }
            }
        }
        if changed == 0 {
            break;
        }
    }
    for (o, li) in out.iter_mut().zip(l.iter()) {
        *o = (li + nmax) as u8;
    }
    if suml2 > 0.0 {
        sumlx / suml2
    } else {
        0.0
    }
}

/// Parameters of [`scale_min_search`]: candidate inverse scales are
/// `(rmin + rdelta * k + nmax) / (max - min)` for `k` in `0..=nstep`; `mad` picks the weighted
/// absolute error instead of the weighted squared error.
pub(crate) struct MinSearch {
    pub rmin: f32,
    pub rdelta: f32,
    pub nstep: i32,
    pub mad: bool,
}

/// Asymmetric quantization `x ~ scale * l - min_out` with `l` in `0..=nmax`, `min_out >= 0`:
/// starts from the min/max fit, then for each candidate inverse scale rounds, solves the weighted
/// least-squares scale and offset, and keeps the best. Returns `(scale, min_out)`.
/// (`make_qkx2_quants`.)
pub(crate) fn scale_min_search(
    x: &[f32],
    weights: &[f32],
    nmax: i32,
    out: &mut [u8],
    p: &MinSearch,
) -> (f32, f32) {
    let n = x.len();
    let (mut min, mut max) = (x[0], x[0]);
    let mut sum_w = weights[0];
    let mut sum_x = sum_w * x[0];
    for i in 1..n {
        if x[i] < min {
            min = x[i];
        }
        if x[i] > max {
            max = x[i];
        }
        sum_w += weights[i];
        sum_x += weights[i] * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        out.fill(0);
        return (0.0, -min);
    }
    let err = |d: f32| if p.mad { d.abs() } else { d * d };
    let nmaxf = nmax as f32;
    let iscale = nmaxf / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_error = 0.0f32;
    for i in 0..n {
        let l = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
        out[i] = l as u8;
        best_error += weights[i] * err(scale * l as f32 + min - x[i]);
    }
    if p.nstep < 1 {
        return (scale, -min);
    }
    let mut aux = [0u8; 32];
    let aux = &mut aux[..n];
    for k in 0..=p.nstep {
        let iscale = (p.rmin + p.rdelta * k as f32 + nmaxf) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0.0f32, 0.0f32, 0.0f32);
        for i in 0..n {
            let l = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
            aux[i] = l as u8;
            let (w, l) = (weights[i], l as f32);
            sum_l += w * l;
            sum_l2 += w * l * l;
            sum_xl += w * l * x[i];
        }
        let det = sum_w * sum_l2 - sum_l * sum_l;
        if det > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut cur_error = 0.0f32;
            for i in 0..n {
                cur_error += weights[i] * err(this_scale * aux[i] as f32 + this_min - x[i]);
            }
            if cur_error < best_error {
                out.copy_from_slice(aux);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

/// Index of the entry of the sorted codebook `values` (16 entries) nearest to `x`; exactly halfway
/// picks the larger entry.
#[inline]
pub(crate) fn nearest_index(values: &[i8; 16], x: f32) -> usize {
    let x2 = x + x;
    let mut idx = 0;
    let mut step = 8;
    while step > 0 {
        let j = idx + step;
        if x2 >= (values[j - 1] as i32 + values[j] as i32) as f32 {
            idx = j;
        }
        step >>= 1;
    }
    idx
}

/// Best scale for 32 values over a non-linear codebook, weights `x^2` (the per-sub-block search of
/// llama.cpp's `quantize_row_iq4_nl_impl` with `ntry = 7`): starts at `d = max/|values[0]|`, then
/// tries `1/d = (k + values[0]) / max` for k in -7..=7 and keeps the best weighted least-squares
/// scale. Writes the codebook indices of the initial fit to `out` and returns the scale.
pub(crate) fn nonlinear_search(x: &[f32], values: &[i8; 16], out: &mut [u8]) -> f32 {
    const NTRY: i32 = 7;
    let (amax, max) = signed_abs_max(x);
    if amax < GROUP_MAX_EPS {
        out.fill(0);
        return 0.0;
    }
    let sums = |id: f32, mut out: Option<&mut [u8]>| {
        let (mut sumqx, mut sumq2) = (0.0f32, 0.0f32);
        for (i, &v) in x.iter().enumerate() {
            let l = nearest_index(values, id * v);
            if let Some(o) = out.as_deref_mut() {
                o[i] = l as u8;
            }
            let q = values[l] as f32;
            let w = v * v;
            sumqx += w * q * v;
            sumq2 += w * q * q;
        }
        (sumqx, sumq2)
    };
    let d = -max / values[0] as f32;
    let (sumqx, sumq2) = sums(1.0 / d, Some(out));
    let mut d = if sumq2 > 0.0 { sumqx / sumq2 } else { 0.0 };
    let mut best = d * sumqx;
    for k in -NTRY..=NTRY {
        let id = (k + values[0] as i32) as f32 / max;
        let (sumqx, sumq2) = sums(id, None);
        if sumq2 > 0.0 && sumqx * sumqx > best * sumq2 {
            d = sumqx / sumq2;
            best = d * sumqx;
        }
    }
    d
}
