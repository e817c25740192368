"""The low-bit digits sample: QAT int8, binary, ternary and XNOR variants exported with the int8
recipe; the issue's accuracy targets, and the binary model running packed in QEMU."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import needs_torch

from edgeport.runtimes.qemu import QemuRuntime

REASON = QemuRuntime().availability()
needs_qemu = pytest.mark.skipif(REASON is not None, reason=str(REASON))


@needs_torch
def test_committed_variants_hold_their_bits():
    from samples.digits_lowbit import model as lowbit

    from torch import nn

    from edgeport.training.lowbit import Sign

    assert set(lowbit.qat_int8().edgeport_qparams["weights"]) == {
        "features.0.weight", "features.2.weight", "classifier.1.weight", "classifier.3.weight"}
    for variant, allowed in (("binary", 2), ("ternary", 3), ("xnor", 2)):
        net = getattr(lowbit, variant)()
        layers = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        middle = [m.weight.detach().numpy() for m in layers[1:-1]]  # first and last stay int8
        assert middle
        for w in middle:
            for row in np.abs(w.reshape(len(w), -1)):
                assert len(np.unique(row[row > 0])) == 1  # one magnitude α per output channel
            assert len(np.unique(np.sign(w))) <= allowed
    assert sum(isinstance(m, Sign) for m in lowbit.xnor().modules()) == 2


@pytest.mark.e2e
@needs_torch
@needs_qemu
def test_lowbit_variants_meet_the_targets(tmp_path):
    from samples.digits_lowbit.table import table

    results = table(("onnx", "cortex-m4"), work=tmp_path)
    acc = {name: {t: row["accuracy"] for t, row in rows.items()} for name, rows in results.items()}
    float_acc = acc["float"]["onnx"]
    for target in ("onnx", "cortex-m4"):
        assert acc["QAT int8"][target] >= acc["PTQ int8"][target]
        assert float_acc - acc["QAT int8"][target] <= 0.001  # within 0.1 points of float
        assert float_acc - acc["binary weights"][target] <= 0.03  # within 3 points
        assert float_acc - acc["ternary weights"][target] <= 0.03
        assert float_acc - acc["XNOR"][target] <= 0.03
    for name in ("PTQ int8", "QAT int8", "binary weights", "ternary weights", "XNOR"):
        assert results[name]["cortex-m4"]["bit_exact"] is True, name  # QEMU == LiteRT reference kernels
    storage = results["binary weights"]["cortex-m4"]["library"]["weight_storage"]
    packed = [t for t in storage if t["format"].startswith("binary")]
    assert len(packed) == 2
    assert sum(t["stored_bytes"] for t in packed) <= sum(t["dense_bytes"] for t in packed) / 6
    xnor = [t["format"] for t in results["XNOR"]["cortex-m4"]["library"]["weight_storage"]]
    assert any("xnor" in f for f in xnor), xnor
    ternary = [t["format"] for t in results["ternary weights"]["cortex-m4"]["library"]["weight_storage"]]
    assert sum(f.startswith("ternary") for f in ternary) == 2
