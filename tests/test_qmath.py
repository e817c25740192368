"""The quantization arithmetic, tested directly as pure functions."""

import numpy as np
import pytest

from edgeport.quantizers import qmath


@pytest.mark.parametrize("lo,hi", [(-1.0, 3.0), (0.0, 6.0), (-5.0, -1.0), (0.5, 2.0), (-0.25, 0.25)])
def test_activation_qparams_map_range_ends_to_int8_ends(lo, hi):
    scale, zero_point = qmath.activation_qparams(lo, hi)
    lo0, hi0 = min(lo, 0.0), max(hi, 0.0)
    assert scale == pytest.approx((hi0 - lo0) / 255, rel=1e-6)
    q = qmath.quantize(np.float32([lo0, 0.0, hi0]), scale, zero_point).astype(int)
    # the zero point is rounded to an integer, so each end lands within one step of the int8 end
    assert abs(q[0] + 128) <= 1 and abs(q[2] - 127) <= 1 and q[2] - q[0] >= 254
    # zero is exactly representable (padding and ReLU rely on it)
    assert qmath.dequantize(q[1:2], scale, zero_point)[0] == 0.0


def test_weight_scales_per_channel_and_per_tensor():
    w = np.zeros((3, 2, 2), dtype=np.float32)
    w[0, 0, 0], w[1, 1, 1] = 1.27, -2.54
    per_channel = qmath.weight_scales(w, axis=0)
    np.testing.assert_allclose(per_channel, [0.01, 0.02, 1.0], rtol=1e-6)  # all-zero channel -> 1.0
    assert qmath.weight_scales(w, axis=None).tolist() == pytest.approx([0.02])
    q = qmath.quantize(w, per_channel, np.zeros(3), axis=0)
    assert q[0, 0, 0] == 127 and q[1, 1, 1] == -127


def test_quantize_roundtrip_error_is_at_most_half_a_step():
    rng = np.random.default_rng(0)
    x = rng.uniform(-3, 5, 10_000).astype(np.float32)
    scale, zero_point = qmath.activation_qparams(x.min(), x.max())
    err = np.abs(qmath.dequantize(qmath.quantize(x, scale, zero_point), scale, zero_point) - x)
    assert err.max() <= scale / 2 * (1 + 1e-5)


def _histogram(values):
    edges = np.linspace(min(values.min(), 0), max(values.max(), 0), qmath.HIST_BINS + 1)
    hist, _ = np.histogram(values, bins=edges)
    return hist.astype(np.float64), edges


def test_percentile_clips_outliers():
    rng = np.random.default_rng(1)
    values = np.concatenate([rng.normal(0, 1, 100_000), [80.0, -60.0]])
    hist, edges = _histogram(values)
    lo, hi = qmath.range_percentile(hist, edges, 99.9)
    assert -4.5 < lo < -2.5 and 2.5 < hi < 4.5
    lo100, hi100 = qmath.range_percentile(hist, edges, 100.0)
    assert lo100 == pytest.approx(-60.0, abs=0.1) and hi100 == pytest.approx(80.0, abs=0.1)


def test_mse_range_is_the_grid_minimum_and_never_worse_than_minmax():
    rng = np.random.default_rng(2)
    for values in (np.abs(rng.normal(0, 1, 20_000)),                       # ReLU-like: lower end stays 0
                   np.concatenate([rng.normal(0, 1, 20_000), [-9.0, 30.0]])):
        hist, edges = _histogram(values)
        lo, hi = qmath.range_mse(hist, edges, steps=16)
        best = qmath.quantization_mse(hist, edges, lo, hi)
        grid = np.linspace(1 / 16, 1, 16)
        lows = grid * edges[0] if edges[0] < 0 else [0.0]
        brute = min(qmath.quantization_mse(hist, edges, a, b * edges[-1]) for a in lows for b in grid)
        assert best == pytest.approx(brute, rel=1e-6)
        assert best <= qmath.quantization_mse(hist, edges, edges[0], edges[-1])
        if values.min() >= 0:
            assert lo == 0.0
