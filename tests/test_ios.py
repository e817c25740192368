"""The ios target: Core ML packages from the digits CNN, checked with the NumPy MIL evaluator.

Tolerances (conftest's TOLERANCES by dtype): fp16 cosine >= 0.9999 vs PyTorch (acceptance); fp32
precision to float rounding; int8 weights within 0.5 accuracy points; 4-bit palettes at most 1/7 of
the fp32 weight bytes.
"""

import importlib.util
import json

import numpy as np
import pytest

from conftest import CALIB, DIGITS, EVAL, TOLERANCES, needs_torch, run_cli

pytestmark = [needs_torch, pytest.mark.skipif(importlib.util.find_spec("coremltools") is None,
                                              reason="coremltools is not installed")]

VARIANTS = {
    "fp16": ["--quantize", "fp16"],
    "fp32": ["--ios-precision", "fp32"],
    "int8-weights": ["--quantize", "dynamic-int8"],
    "palette4": ["--palettize", "4"],
    "palette2": ["--palettize", "2"],
    "sparse50": ["--prune", "0.5"],
    "w8a8": ["--quantize", "int8", "--ios-target", "iOS17"],
}


@pytest.fixture(scope="module")
def ios_exports(exported):
    """variant -> (reports by target, output folder) of the digits CNN to onnx + ios."""
    def get(variant: str):
        report, out = exported(f"ios-{variant}", "onnx,ios", "--runs", "3", *VARIANTS[variant])
        return {t["target"]: t for t in report["targets"]}, out

    return get


@pytest.mark.e2e
def test_fp16_package_matches_pytorch(ios_exports):
    targets, out = ios_exports("fp16")
    checks = targets["ios"]["checks"]
    assert (out / "ios" / "digits.mlpackage" / "Manifest.json").is_file()
    assert checks["parity"]["reference"] == "pytorch" and checks["parity"]["samples"] == 359
    assert checks["parity"]["cosine"] >= TOLERANCES["float16"].cosine
    assert checks["parity"]["top1_agreement"] >= 0.99
    assert checks["accuracy"]["accuracy_drop_points"] <= 0.5
    assert checks["structure"]["ops"] == {"cast": 2, "conv": 2, "relu": 3, "max_pool": 1, "reshape": 1, "linear": 2}
    assert checks["latency"]["status"] == "not-run" and "macOS" in checks["latency"]["reason"]
    assert checks["coreml_predict"]["status"] == "not-run" and "Core ML predict needs macOS" in checks["coreml_predict"]["reason"]


@pytest.mark.e2e
def test_fp32_precision_matches_pytorch_to_float_rounding(ios_exports):
    targets, _ = ios_exports("fp32")
    parity = targets["ios"]["checks"]["parity"]
    tolerance = TOLERANCES["float32"]
    assert parity["cosine"] >= tolerance.cosine and parity["max_abs_err"] <= tolerance.abs_err
    assert parity["top1_agreement"] == 1.0
    assert "compute precision fp32" in targets["ios"]["notes"][0]


@pytest.mark.e2e
def test_int8_weights_use_the_recipe_scales(ios_exports):
    targets, out = ios_exports("int8-weights")
    checks = targets["ios"]["checks"]
    assert checks["accuracy"]["accuracy_drop_points"] <= 0.5
    assert checks["params"]["honored"] and checks["params"]["tensors_checked"] == 2  # the two Linear layers
    assert checks["structure"]["ops"]["constexpr_affine_dequantize"] == 2
    assert any("2 tensors with the recipe's numbers" in n for n in targets["ios"]["notes"])
    # same recipe, same numbers: Core ML and ONNX agree on every argmax
    onnx_parity, ios_parity = targets["onnx"]["checks"]["parity"], checks["parity"]
    assert abs(onnx_parity["cosine"] - ios_parity["cosine"]) < 1e-4


@pytest.mark.e2e
def test_w8a8_uses_the_plan_for_weights_and_activations(ios_exports):
    targets, out = ios_exports("w8a8")
    checks = targets["ios"]["checks"]
    assert checks["params"]["honored"] and checks["params"]["tensors_checked"] == 4
    assert checks["structure"]["ops"]["quantize"] == 4 and checks["structure"]["ops"]["dequantize"] == 4
    assert "int8 activations at 4 conv/linear inputs: 4 with the recipe's numbers" in targets["ios"]["notes"]
    assert checks["accuracy"]["accuracy_drop_points"] <= 0.5 and checks["parity"]["top1_agreement"] >= 0.99


@pytest.mark.e2e
def test_palettes_shrink_weights_and_follow_the_recipe(ios_exports):
    fp32_weight_bytes = ios_exports("fp32")[0]["onnx"]["checks"]["structure"]["weight_bytes"]["float32"]
    # 2-bit palettes lose several points without centroid fine-tuning (measured: about 5)
    for variant, bits, max_drop in (("palette4", 4, 0.5), ("palette2", 2, 8.0)):
        targets, out = ios_exports(variant)
        checks = targets["ios"]["checks"]
        palettized = checks["structure"]["weight_bytes"][f"lut {bits}-bit"]  # packed indices + LUT
        assert palettized <= fp32_weight_bytes / (32 / bits) * 1.05 + 4 * 4 * 2 ** bits
        if bits == 4:
            assert palettized <= fp32_weight_bytes / 7  # acceptance
        assert checks["accuracy"]["accuracy_drop_points"] <= max_drop
        # the ONNX artifact holds the same palettes (dense): both see the same loss
        assert abs(targets["onnx"]["checks"]["parity"]["cosine"] - checks["parity"]["cosine"]) < 1e-3
        plan = json.loads((out / "quant_params.json").read_text())
        assert all(len(c["palette"]) == 2 ** bits for c in plan["compression"].values())


@pytest.mark.e2e
def test_sparse_weights(ios_exports):
    targets, out = ios_exports("sparse50")
    checks = targets["ios"]["checks"]
    sparse = checks["structure"]["weight_bytes"]["constexpr_sparse_to_dense"]
    dense_fp16 = ios_exports("fp16")[0]["ios"]["checks"]["structure"]["weight_bytes"]["dense float16"]
    assert sparse < 0.6 * dense_fp16  # half the values plus a 1-bit mask
    assert abs(targets["onnx"]["checks"]["parity"]["cosine"] - checks["parity"]["cosine"]) < 1e-3


def test_evaluator_decompression_matches_coremltools():
    from coremltools.converters.mil.mil.ops.defs.iOS16 import constexpr_ops

    from edgeport.quantizers import compress
    from edgeport.runtimes.mil_ops import OPS

    rng = np.random.default_rng(0)
    for bits in (1, 2, 4, 6, 8):
        lut = rng.normal(size=2 ** bits).astype(np.float16)
        indices = rng.integers(0, 2 ** bits, size=(7, 5, 3))
        packed = compress.pack_bits(indices, bits)
        shape = np.uint32(indices.shape)
        np.testing.assert_array_equal(OPS["constexpr_lut_to_dense"](indices=packed, lut=lut, shape=shape),
                                      constexpr_ops.constexpr_lut_to_dense.decompress(lut, packed, shape))
    mask = rng.random((6, 9)) > 0.5
    data = rng.normal(size=int(mask.sum())).astype(np.float32)
    packed = np.packbits(mask.ravel().astype(np.uint8), bitorder="little")
    np.testing.assert_array_equal(OPS["constexpr_sparse_to_dense"](nonzero_data=data, mask=packed, shape=np.uint32((6, 9))),
                                  constexpr_ops.constexpr_sparse_to_dense.decompress(data, packed, np.uint32((6, 9))))
    q = rng.integers(-127, 128, size=(4, 3, 2, 2)).astype(np.int8)
    scale = rng.random(4).astype(np.float32)
    np.testing.assert_allclose(OPS["constexpr_affine_dequantize"](quantized_data=q, zero_point=np.int8(0), scale=scale, axis=0),
                               constexpr_ops.constexpr_affine_dequantize.decompress(q, np.int8(0), scale, 0), rtol=1e-6)


@pytest.mark.e2e
def test_unknown_op_in_a_handmade_package_is_named(tmp_path):
    import coremltools as ct
    from coremltools.converters.mil import Builder as mb

    @mb.program(input_specs=[mb.TensorSpec(shape=(1, 4))], opset_version=ct.target.iOS16)
    def prog(x):
        return mb.erf(x=mb.relu(x=x, name="relu_0"), name="mystery_erf")

    model = ct.convert(prog, convert_to="mlprogram", minimum_deployment_target=ct.target.iOS16,
                       compute_precision=ct.precision.FLOAT32, skip_model_load=True)
    path = tmp_path / "hand.mlpackage"
    model.save(str(path))
    data = tmp_path / "data.npz"
    name = model.get_spec().description.input[0].name
    np.savez(data, **{name: np.ones((3, 1, 4), np.float32)[:, 0]})
    result = run_cli("check", str(path), "--target", "ios", "--eval", str(data), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    checks = json.loads(result.stdout)["targets"][0]["checks"]
    assert checks["parity"]["status"] == "not-run"
    assert checks["parity"]["reason"] == "the MIL evaluator does not support op 'erf' (node 'mystery_erf')"
    assert checks["structure"]["ops"] == {"relu": 1, "erf": 1}
    report = json.loads((tmp_path / "hand.report.json").read_text())
    assert report["targets"][0]["checks"]["structure"]["ops"]["erf"] == 1


@pytest.mark.parametrize("args,message", [
    (["--quantize", "int8", "--calib", CALIB], "ios: the int8 recipe (W8A8: int8 activations) needs --ios-target iOS17"),
    (["--palettize", "4", "--ios-target", "iOS15"], "ios: palettization needs --ios-target iOS16 or later"),
    (["--palettize", "4", "--prune", "0.5"], "ios: palettization + pruning together need iOS18"),
    (["--quantize", "int16x8", "--calib", CALIB], "ios: Core ML has no int16 activations"),
    (["--ios-target", "iOS12"], "ios: unknown deployment target 'iOS12' (known: iOS15, iOS16, iOS17, iOS18)"),
    (["--quantize", "fp16", "--ios-precision", "fp32"], "ios: recipe fp16 conflicts with --ios-precision fp32"),
])
def test_refused_combinations(tmp_path, args, message):
    result = run_cli("export", DIGITS, "--target", "ios", "--input-shape", "1,1,8,8", "--out", str(tmp_path / "out"),
                     *args)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith(f"edgeport: error: {message}")
    assert not (tmp_path / "out").exists()


@pytest.mark.e2e
def test_conversion_failure_names_the_op_and_module(tmp_path):
    (tmp_path / "oddmodel.py").write_text(
        "import torch\nfrom torch import nn\n\n\n"
        "class Odd(nn.Module):\n    def forward(self, x):\n        return torch.special.erfcx(x)\n\n\n"
        "class Net(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        self.fc = nn.Linear(4, 4)\n        self.block = nn.Sequential(nn.ReLU(), Odd())\n\n"
        "    def forward(self, x):\n        return self.block(self.fc(x))\n\n\n"
        "def build():\n    return Net().eval()\n")
    result = run_cli("export", "oddmodel:build", "--input-shape", "1,4", "--target", "ios", "--out",
                     str(tmp_path / "out"), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == ("edgeport: error: unsupported op 'aten::special_erfcx' at node 'block.1': "
                                     "Core ML (coremltools) has no conversion for it")
    assert not (tmp_path / "out").exists()


@pytest.mark.e2e
def test_keep_float_is_honored_by_core_ml(tmp_path):
    from edgeport.cli import main

    out = tmp_path / "out"
    assert main(["export", DIGITS, "--target", "onnx,ios", "--ios-target", "iOS17", "--quantize", "int8",
                 "--keep-float", "classifier.3", "--calib", CALIB, "--eval", EVAL, "--out", str(out),
                 "--runs", "2", "--json"]) == 0
    report = json.loads((out / "report.json").read_text())
    ios = next(t for t in report["targets"] if t["target"] == "ios")
    ops = ios["checks"]["structure"]["ops"]
    assert ops["constexpr_affine_dequantize"] == 3 and ops["quantize"] == 3  # the last Linear stays float
    assert ios["checks"]["params"]["honored"] and ios["checks"]["params"]["tensors_checked"] == 3
    assert "int8 weights: 3 tensors with the recipe's numbers" in ios["notes"]
    assert report["cross_target"][0]["top1_agreement"] >= 0.99
