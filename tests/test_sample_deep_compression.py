"""The Deep Compression sample: LeNet-300-100 on the digits, pruned + clustered + Huffman-coded in
the Cortex-M4 C library, at least 30x smaller than float32 within 0.5 points of accuracy, run in QEMU."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import needs_torch

from edgeport.runtimes.qemu import QemuRuntime

REASON = QemuRuntime().availability()
needs_qemu = pytest.mark.skipif(REASON is not None, reason=str(REASON))


@needs_torch
def test_committed_weights_are_pruned_and_clustered():
    from samples.deep_compression import model as lenet

    from edgeport.training.pruning import sparsity
    from edgeport.training.weight_sharing import distinct_values

    pruned, compressed = lenet.build_pruned(), lenet.build_compressed()
    assert sparsity(lenet.build()) == 0.0
    assert sparsity(pruned) == pytest.approx(sparsity(compressed)) and sparsity(compressed) > 0.85
    assert all(n <= 16 for n in distinct_values(compressed).values())
    for a, b in zip(pruned.modules(), compressed.modules()):  # clustering keeps the zeros where they were
        if hasattr(a, "weight") and a.weight is not None:
            assert np.array_equal(a.weight.detach().numpy() == 0, b.weight.detach().numpy() == 0)


@pytest.mark.e2e
@needs_torch
@needs_qemu
@pytest.mark.parametrize("decode", ["kernel", "init"])
def test_deep_compression_is_30x_within_half_a_point(decode, tmp_path):
    from samples.deep_compression.compress import stage_table

    data = stage_table(decode, work=tmp_path)
    stages = {s["stage"]: s for s in data["stages"]}
    float_acc = stages["float32"]["accuracy"]
    assert stages["huffman"]["alpha"] >= 30
    assert float_acc - stages["huffman"]["accuracy"] <= 0.005  # measured in QEMU on the C library
    assert stages["float32"]["bytes"] > stages["int8 dense"]["bytes"] > stages["pruned"]["bytes"] \
        > stages["clustered"]["bytes"] > stages["huffman"]["bytes"]
    for library in data["library"].values():
        assert library["bit_exact"] is True
    assert stages["huffman"]["accuracy"] == stages["int8 dense"]["accuracy"]  # the storage is lossless
    dense, deep = data["library"]["dense"], data["library"]["huffman"]
    assert deep["weight_bytes"] < 0.25 * dense["weight_bytes"]
    assert all("huffman" in t["format"] for t in deep["weight_storage"])  # csr or palette under it, the smaller
    assert (deep["decoded_bytes"] > 0) == (decode == "init")
