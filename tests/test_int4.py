"""weight-only-int4 (#16): int4 weights in blocks along linear layers' input, per channel in
convolutions, with the plan's numbers in every artifact that takes them."""

import numpy as np
import pytest

from conftest import CALIB, DIGITS, EVAL, load_report, run_cli

from edgeport.quantizers import qmath
from edgeport.quantizers.plan import QuantPlan, WeightParams


def test_blocked_scales_cover_a_ragged_last_block():
    w = np.random.default_rng(0).standard_normal((70, 5)).astype(np.float32)
    scales = qmath.int4_scales(w, 0, 32)
    assert scales.shape == (3, 5)
    assert np.allclose(scales[2], np.abs(w[64:]).max(axis=0) / 7)
    q = qmath.quantize_int4(w, scales, 0, 32)
    assert q.min() >= -7 and q.max() <= 7
    restored = q * qmath.expand_blocks(scales, 0, 32, 70)
    assert np.all(np.abs(restored - w) <= qmath.expand_blocks(scales, 0, 32, 70) / 2 + 1e-7)  # half a step


def test_per_channel_int4_and_zero_channels():
    w = np.zeros((4, 3, 3, 3), np.float32)
    w[1] = 0.7
    scales = qmath.int4_scales(w, 0, None)
    assert scales.tolist() == [1.0, np.float32(0.1), 1.0, 1.0]
    assert qmath.quantize_int4(w, scales, 0, None)[1].max() == 7


def test_plan_json_keeps_bits_and_blocks():
    plan = QuantPlan(scheme="weight-only-int4",
                     weights={"w": WeightParams([0.5, 0.25], [0, 0], 0, "fc", bits=4, block=32),
                              "c": WeightParams([0.1], [0], 0, "conv")})
    back = QuantPlan.from_json(plan.to_json())
    assert (back.weights["w"].bits, back.weights["w"].block) == (4, 32)
    assert (back.weights["c"].bits, back.weights["c"].block) == (8, None)


@pytest.mark.e2e
def test_digits_int4_on_every_target_that_takes_it(tmp_path):
    out = tmp_path / "out"
    result = run_cli("export", DIGITS, "--target", "onnx,android,ios,browser-ort", "--quantize", "weight-only-int4",
                     "--ios-target", "iOS18", "--calib", CALIB, "--eval", EVAL, "--out", str(out),
                     "--runs", "2", "--warmup", "0")
    assert result.returncode == 0, result.stderr
    plan = QuantPlan.from_json((out / "quant_params.json").read_text())
    blocked = [w for w in plan.weights.values() if w.block]
    assert blocked and all(w.bits == 4 for w in plan.weights.values())
    for target in load_report(out)["targets"]:
        checks = target["checks"]
        assert checks["size"]["alpha"] >= 5.0, (target["target"], checks["size"])  # about 1/6 of float or less
        assert checks["parity"]["cosine"] >= 0.99, target["target"]
        assert checks["accuracy"]["accuracy_drop_points"] <= 1.0, target["target"]
        if target["target"] != "android":  # LiteRT's blockwise scales are ai-edge-quantizer's own (fp16)
            params = checks["params"]
            assert params["exact"] == params["tensors_checked"] == len(plan.weights), (target["target"], params)
