"""The digits data split used by the sample, tests and benchmarks (fixed seed, no download)."""

from __future__ import annotations

import numpy as np

SEED = 0
TEST_FRACTION = 0.2


def digits_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_test, y_test); x is float32 [N, 1, 8, 8] in [0, 1], y int64."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images.astype(np.float32) / 16.0)[:, None, :, :]
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(SEED).permutation(len(x))
    n_test = int(len(x) * TEST_FRACTION)
    test, train = order[:n_test], order[n_test:]
    return x[train], y[train], x[test], y[test]


def calibration() -> np.ndarray:
    """200 training images: the calibration set (a callable data source: samples.digits.data:calibration)."""
    x_train, _, _, _ = digits_split()
    return x_train[:200]


def evaluation() -> tuple[np.ndarray, np.ndarray]:
    """The held-out test split with labels (samples.digits.data:evaluation)."""
    _, _, x_test, y_test = digits_split()
    return x_test, y_test
