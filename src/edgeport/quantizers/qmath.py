"""Quantization arithmetic as pure NumPy functions.

Conventions follow TFLite's int8 scheme, which ONNX QDQ can express exactly:
activations int8 asymmetric (range widened to contain 0), weights int8 symmetric in [-127, 127]
(per output channel by default), biases int32 with scale = input scale * weight scale.
"""

from __future__ import annotations

import numpy as np

INT8_MIN, INT8_MAX = -128, 127
HIST_BINS = 2048


def activation_qparams(lo: float, hi: float) -> tuple[np.float32, np.int8]:
    """Scale and zero point that map [lo, hi] (widened to contain 0) onto int8 [-128, 127]."""
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    if hi - lo < 1e-12:
        return np.float32(1.0), np.int8(0)
    scale = np.float32((hi - lo) / (INT8_MAX - INT8_MIN))
    zero_point = int(np.clip(np.round(INT8_MIN - lo / float(scale)), INT8_MIN, INT8_MAX))
    return scale, np.int8(zero_point)


def activation_qparams_int16(lo: float, hi: float) -> tuple[np.float32, np.int16]:
    """TFLite's int16 activations: symmetric, zero point 0, scale = max(|lo|, |hi|) / 32767."""
    peak = max(abs(float(lo)), abs(float(hi)))
    return (np.float32(peak / 32767.0) if peak > 1e-12 else np.float32(1.0)), np.int16(0)


def activation_qparams_uint16_grid(lo: float, hi: float) -> tuple[np.float32, np.int16]:
    """int16 asymmetric over [lo, hi] widened to contain 0 (a clipped output, [0, hi]: zero point
    -32768, so the grid's lowest step is 0)."""
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    if hi - lo < 1e-12:
        return np.float32(1.0), np.int16(0)
    scale = np.float32((hi - lo) / 65535.0)
    zero_point = int(np.clip(np.round(-32768 - lo / float(scale)), -32768, 32767))
    return scale, np.int16(zero_point)


def weight_scales(weight: np.ndarray, axis: int | None) -> np.ndarray:
    """Symmetric int8 scales (max |w| / 127), one per slice along `axis`, or one for the tensor.

    An all-zero channel gets scale 1.0 (any scale represents zeros exactly; avoids dividing by 0).
    """
    w = np.abs(np.asarray(weight, dtype=np.float32))
    if axis is None:
        peak = np.array([w.max(initial=0.0)], dtype=np.float32)
    else:
        peak = np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1).max(axis=1)
    scales = (peak / np.float32(INT8_MAX)).astype(np.float32)
    scales[scales == 0] = 1.0
    return scales


def quantize_rows(table: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """An embedding table's int8 rows: row i quantized symmetrically with scales[i]."""
    return quantize(table, scales, np.zeros(len(scales), dtype=np.int32), axis=0)


INT4_MAX = 7  # int4 weights are symmetric in [-7, 7], as int8 ones in [-127, 127]


def int4_scales(weight: np.ndarray, axis: int | None, block: int | None) -> np.ndarray:
    """Symmetric int4 scales (max |w| / 7): one per slice along `axis` when `block` is None,
    else one per `block` consecutive values along `axis` (the last block may be shorter). The
    scales have the weight's shape with `axis` shrunk to its number of blocks, as ONNX's blocked
    DequantizeLinear takes them. A zero block gets scale 1.0."""
    w = np.abs(np.asarray(weight, dtype=np.float32))
    if block is None:
        peak = np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1).max(axis=1)
    else:
        size = w.shape[axis]
        pad = [(0, 0)] * w.ndim
        pad[axis] = (0, -size % block)
        padded = np.moveaxis(np.pad(w, pad), axis, 0)
        peak = padded.reshape(-1, block, *padded.shape[1:]).max(axis=1)
        peak = np.moveaxis(peak, 0, axis)
    scales = (peak / np.float32(INT4_MAX)).astype(np.float32)
    scales[scales == 0] = 1.0
    return scales


def expand_blocks(scales: np.ndarray, axis: int, block: int, size: int) -> np.ndarray:
    """Blocked scales repeated to one per weight along `axis` (cut to the weight's `size`)."""
    return np.take(np.repeat(scales, block, axis=axis), np.arange(size), axis=axis)


def quantize_int4(weight: np.ndarray, scales: np.ndarray, axis: int, block: int | None) -> np.ndarray:
    """int4 integers (held in int8) of `weight` with `int4_scales`' scales."""
    w = np.asarray(weight, dtype=np.float32)
    if block is None:
        full = scales.reshape([-1 if d == axis else 1 for d in range(w.ndim)])
    else:
        full = expand_blocks(scales, axis, block, w.shape[axis])
    return np.clip(np.rint(w / full), -INT4_MAX, INT4_MAX).astype(np.int8)


def lowbit_scales(weight: np.ndarray, axis: int | None) -> tuple[np.ndarray, str] | None:
    """(α per slice along `axis`, kind) when every slice holds one magnitude α besides zeros.

    Such a weight (binary α·{±1}, kind "binary", or ternary α·{-1, 0, +1}, kind "ternary" when
    some weight is 0) is held exactly by int8 integers ±1 (and 0) with the scale α. None for any
    other weight, for a weight that is all zeros, and when a slice has a single element (one value
    is trivially "one magnitude"). An all-zero slice gets scale 1.0, as in `weight_scales`.
    """
    w = np.asarray(weight, dtype=np.float32)
    slices = np.abs(w.reshape(1, -1) if axis is None else np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1))
    if slices.shape[1] < 2:
        return None
    alpha = slices.max(axis=1)
    nonzero = slices > 0
    if not alpha.any() or not np.all((slices == alpha[:, None]) | ~nonzero):
        return None
    scales = alpha.astype(np.float32)
    scales[scales == 0] = 1.0
    return scales, "binary" if nonzero.all() else "ternary"


def _broadcastable(scale, zero_point, ndim: int, axis: int | None):
    """Scale / zero point as float32 / int32 arrays shaped to broadcast along `axis`."""
    scale = np.asarray(scale, dtype=np.float32)
    zero_point = np.asarray(zero_point, dtype=np.int32)
    if axis is not None and scale.ndim == 1:
        shape = [1] * ndim
        shape[axis] = -1
        scale, zero_point = scale.reshape(shape), zero_point.reshape(shape)
    return scale, zero_point


def quantize(x: np.ndarray, scale, zero_point, axis: int | None = None, qmin=INT8_MIN, qmax=INT8_MAX):
    """ONNX QuantizeLinear semantics: saturate(round_half_even(x / scale) + zero_point)."""
    scale, zero_point = _broadcastable(scale, zero_point, np.ndim(x), axis)
    q = np.rint(np.asarray(x, dtype=np.float32) / scale) + zero_point
    return np.clip(q, qmin, qmax).astype(np.int8 if qmin < 0 else np.uint8)


def dequantize(q: np.ndarray, scale, zero_point, axis: int | None = None) -> np.ndarray:
    scale, zero_point = _broadcastable(scale, zero_point, q.ndim, axis)
    return ((q.astype(np.int32) - zero_point) * scale).astype(np.float32)


# ------------------------------------------------------------------ range selection

def range_percentile(hist: np.ndarray, edges: np.ndarray, percentile: float) -> tuple[float, float]:
    """Range holding the central `percentile` % of the histogram mass (clip both tails equally)."""
    total = hist.sum()
    if total == 0:
        return float(edges[0]), float(edges[-1])
    tail = (100.0 - percentile) / 200.0 * total
    cdf = np.cumsum(hist)
    lo_bin = int(np.searchsorted(cdf, tail, side="right"))
    hi_bin = int(np.searchsorted(cdf, total - tail, side="left"))
    return float(edges[min(lo_bin, len(hist) - 1)]), float(edges[min(hi_bin + 1, len(edges) - 1)])


def quantization_mse(hist: np.ndarray, edges: np.ndarray, lo: float, hi: float) -> float:
    """Mean squared error of int8-quantizing the histogram's values with range [lo, hi]."""
    centers = (edges[:-1] + edges[1:]) / 2
    scale, zero_point = activation_qparams(lo, hi)
    restored = dequantize(quantize(centers, scale, zero_point), scale, zero_point)
    return float((hist * (centers - restored) ** 2).sum() / max(hist.sum(), 1))


def range_mse(hist: np.ndarray, edges: np.ndarray, steps: int = 64) -> tuple[float, float]:
    """Clipping range minimizing quantization MSE, searched by shrinking [min, max] towards 0.

    Each end shrinks on its own grid (fractions 1/steps .. 1), so a ReLU output (lo = 0)
    only searches its upper end. All candidates are scored at once (vectorized).
    """
    lo, hi = min(float(edges[0]), 0.0), max(float(edges[-1]), 0.0)
    fractions = np.linspace(1.0 / steps, 1.0, steps)
    f_lo, f_hi = np.meshgrid(fractions if lo < 0 else np.ones(1), fractions if hi > 0 else np.ones(1))
    cand_lo, cand_hi = (lo * f_lo).ravel(), (hi * f_hi).ravel()
    span = np.maximum(cand_hi - cand_lo, 1e-12)
    scale = (span / (INT8_MAX - INT8_MIN)).astype(np.float32)[:, None]
    zero_point = np.clip(np.round(INT8_MIN - cand_lo[:, None] / scale), INT8_MIN, INT8_MAX)
    centers = ((edges[:-1] + edges[1:]) / 2).astype(np.float32)[None, :]
    restored = (np.clip(np.rint(centers / scale) + zero_point, INT8_MIN, INT8_MAX) - zero_point) * scale
    errors = (hist[None, :] * (centers - restored) ** 2).sum(axis=1)
    best = int(np.argmin(errors))
    return float(cand_lo[best]), float(cand_hi[best])
