"""Weight compression as pure NumPy functions: k-means palettes, magnitude pruning, bit packing.

k-means weight sharing follows Deep Compression (Han et al.): per layer, 2^bits centroids
initialized linearly over [min, max] (the initialization the paper found best), refined by
Lloyd's algorithm. Bit packing follows Core ML's constexpr ops: elements are packed into bytes
starting at the least significant bit.
"""

from __future__ import annotations

import numpy as np

from edgeport.recipe import PALETTE_BITS


def kmeans_palette(weight: np.ndarray, bits: int, iterations: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """Palette (2^bits float32 centroids, ascending) and per-element indices for `weight`.

    Deterministic: linear initialization, then Lloyd iterations until assignments stop changing.
    A weight with at most 2^bits distinct values keeps them (padded with its largest).
    """
    if bits not in PALETTE_BITS:
        raise ValueError(f"palette bits must be one of {PALETTE_BITS}, got {bits}")
    values = np.asarray(weight, dtype=np.float32).ravel()
    k = 2 ** bits
    distinct = np.unique(values)
    if distinct.size <= k:  # already shared (e.g. fine-tuned centroids): keep the values exactly
        lut = np.concatenate([distinct, np.full(k - distinct.size, distinct[-1], np.float32)])
        return lut, nearest_indices(weight, lut)
    lo, hi = float(values.min()), float(values.max())
    centroids = np.linspace(lo, hi, k, dtype=np.float64)
    order = np.argsort(values, kind="stable")
    sorted_values = values[order].astype(np.float64)
    assign = None
    for _ in range(iterations):
        # 1-D nearest centroid: boundaries are midpoints between sorted centroids
        bounds = (centroids[1:] + centroids[:-1]) / 2
        new_assign = np.searchsorted(bounds, sorted_values, side="right")
        if assign is not None and np.array_equal(new_assign, assign):
            break
        assign = new_assign
        sums = np.bincount(assign, weights=sorted_values, minlength=k)
        counts = np.bincount(assign, minlength=k)
        centroids = np.where(counts > 0, sums / np.maximum(counts, 1), centroids)
        centroids = np.sort(centroids)
    lut = centroids.astype(np.float32)
    return lut, nearest_indices(weight, lut)


def nearest_indices(weight: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """Index of the nearest palette entry for each element of `weight` (same shape, uint8)."""
    lut = np.asarray(lut, dtype=np.float32)
    order = np.argsort(lut, kind="stable")
    ordered = lut[order]
    bounds = (ordered[1:].astype(np.float64) + ordered[:-1]) / 2
    pos = np.searchsorted(bounds, np.asarray(weight, dtype=np.float64), side="right")
    return order[pos].astype(np.uint8)


def magnitude_mask(weight: np.ndarray, sparsity: float) -> np.ndarray:
    """Boolean keep-mask zeroing the floor(sparsity * n) smallest-magnitude elements (stable ties)."""
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
    flat = np.abs(np.asarray(weight, dtype=np.float32)).ravel()
    drop = int(np.floor(sparsity * flat.size))
    keep = np.ones(flat.size, dtype=bool)
    keep[np.argsort(flat, kind="stable")[:drop]] = False
    return keep.reshape(np.shape(weight))


def pack_bits(values: np.ndarray, bits: int) -> np.ndarray:
    """Pack unsigned integers of `bits` bits each into uint8, LSB first (Core ML's layout)."""
    values = np.asarray(values, dtype=np.uint16).ravel()
    if values.size and int(values.max()) >= 2 ** bits:
        raise ValueError(f"value {int(values.max())} does not fit in {bits} bits")
    planes = (values[:, None] >> np.arange(bits, dtype=np.uint16)) & 1
    return np.packbits(planes.astype(np.uint8).ravel(), bitorder="little")


def unpack_bits(data: np.ndarray, bits: int, count: int) -> np.ndarray:
    """Inverse of `pack_bits`: `count` integers of `bits` bits each."""
    planes = np.unpackbits(np.asarray(data, dtype=np.uint8), bitorder="little")[: count * bits]
    return (planes.reshape(count, bits).astype(np.uint16) << np.arange(bits, dtype=np.uint16)).sum(axis=1)
