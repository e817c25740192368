"""The android target: TFLite through litert-torch, checked in the LiteRT interpreter.

Tolerances (conftest's TOLERANCES by dtype): fp32 to float rounding; fp16 cosine >= 0.9999; int8
accuracy within 0.5 points of float (acceptance) and, because the recipe's numbers are honored,
outputs equal to the ONNX int8 artifact's within one int8 step on >= 99% argmax agreement
(acceptance).
"""

import importlib.util
import json

import numpy as np
import pytest

from conftest import CALIB, DIGITS, EVAL, ROOT, TOLERANCES, load_report, needs_torch, run_cli

pytestmark = [needs_torch, pytest.mark.skipif(importlib.util.find_spec("litert_torch") is None,
                                              reason="litert-torch is not installed")]
KWS = ROOT / "tests" / "data" / "mlperf-tiny" / "kws_ref_model.tflite"


@pytest.fixture(scope="module")
def android_exports(exported):
    """recipe -> (reports by target, report, output folder) of the digits CNN to onnx + android."""
    def get(recipe: str):
        report, out = exported(f"android-{recipe}", "onnx,android", "--quantize", recipe,
                               "--runs", "10", "--warmup", "2")
        return {t["target"]: t for t in report["targets"]}, report, out

    return get


@pytest.mark.e2e
@pytest.mark.parametrize("recipe,min_cosine,max_drop", [
    ("none", TOLERANCES["float32"].cosine, 0.0), ("fp16", TOLERANCES["float16"].cosine, 0.5),
    ("dynamic-int8", TOLERANCES["dynamic-int8"].cosine, 0.5), ("int8", TOLERANCES["int8"].cosine, 0.5),
    ("int16x8", TOLERANCES["int16x8"].cosine, 0.5)])
def test_recipes_in_litert(android_exports, recipe, min_cosine, max_drop):
    targets, _, out = android_exports(recipe)
    checks = targets["android"]["checks"]
    assert (out / "android" / "digits.tflite").is_file()
    assert checks["parity"]["reference"] == "pytorch" and checks["parity"]["cosine"] >= min_cosine
    assert checks["accuracy"]["accuracy_drop_points"] <= max_drop
    latency = checks["latency"]
    assert set(latency["by_threads"]) == {"1", "2"}
    for timing in latency["by_threads"].values():
        assert 0 < timing["p50_ms"] <= timing["p90_ms"] <= timing["p99_ms"]
        assert timing["delta"] == pytest.approx(timing["float_p50_ms"] / timing["p50_ms"], rel=0.01)
    kernels = checks["reference_kernels"]
    assert kernels["samples"] == 359 and kernels["top1_agreement"] >= 0.99
    assert "CONV_2D" in checks["structure"]["ops"] and "FULLY_CONNECTED" in checks["structure"]["ops"]


@pytest.mark.e2e
def test_int8_tflite_holds_the_onnx_qdq_numbers(android_exports):
    from ai_edge_litert.interpreter import Interpreter
    from onnx import load, numpy_helper

    targets, report, out = android_exports("int8")
    assert targets["android"]["checks"]["params"]["honored"]
    onnx_model = load(str(out / "onnx" / "digits.onnx"))
    inits = {i.name: numpy_helper.to_array(i) for i in onnx_model.graph.initializer}
    onnx_weight_scales = {tuple(v.tolist()) for k, v in inits.items() if k.endswith("weight_scale")}
    onnx_activation = {(float(inits[k]), int(inits[k.replace("_scale", "_zero_point")]))
                       for k in inits if k.endswith("_scale") and inits[k].ndim == 0 and "bias" not in k}
    interpreter = Interpreter(model_path=str(out / "android" / "digits.tflite"))
    tflite_weights, tflite_activations = set(), set()
    for tensor in interpreter.get_tensor_details():
        q = tensor["quantization_parameters"]
        if np.dtype(tensor["dtype"]) != np.int8 or not len(q["scales"]):
            continue
        if len(q["scales"]) > 1:
            tflite_weights.add(tuple(np.float32(q["scales"]).tolist()))
        else:
            tflite_activations.add((float(np.float32(q["scales"][0])), int(q["zero_points"][0])))
    assert tflite_weights == onnx_weight_scales  # bit-equal float32 per-channel scales
    assert tflite_activations <= onnx_activation  # every int8 activation uses one of ONNX's (scale, zero point)
    (row,) = report["cross_target"]
    assert row["top1_agreement"] >= 0.99 and row["max_diff_steps"] <= TOLERANCES["int8-steps"].steps


@pytest.mark.e2e
def test_check_existing_mlperf_tflite(tmp_path):
    model = KWS
    data = tmp_path / "kws.npz"
    rng = np.random.default_rng(0)
    np.savez(data, x=rng.uniform(-100, 60, size=(16, 49, 10, 1)).astype(np.float32))
    report_path = tmp_path / "kws.json"
    result = run_cli("check", str(model), "--target", "android", "--eval", str(data), "--report", str(report_path),
                     "--runs", "5", "--json")
    assert result.returncode == 0, result.stderr
    checks = json.loads(report_path.read_text())["targets"][0]["checks"]
    assert checks["size"]["size_bytes"] == model.stat().st_size
    assert checks["structure"]["ops"].keys() >= {"CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D",
                                                 "FULLY_CONNECTED", "SOFTMAX"}
    assert checks["reference_kernels"]["samples"] == 16 and checks["reference_kernels"]["unit"] == "int8 steps"
    assert checks["latency"]["p50_ms"] > 0 and checks["parity"]["status"] == "not-run"


def test_corrupt_tflite_is_exit_2(tmp_path):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(KWS.read_bytes()[:5000])  # truncated
    result = run_cli("check", str(bad), "--target", "android", cwd=tmp_path)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith(f"edgeport: error: {bad}: corrupt or truncated .tflite")
    assert not (tmp_path / "bad.report.json").exists()


@pytest.mark.e2e
def test_unsupported_op_names_op_and_node(tmp_path):
    (tmp_path / "mysterymodel.py").write_text(
        "import torch\nfrom torch import nn\n\n\n"
        "@torch.library.custom_op('edgeport_test::mystery', mutates_args=())\n"
        "def mystery(x: torch.Tensor) -> torch.Tensor:\n    return x * 2\n\n\n"
        "@mystery.register_fake\ndef _(x):\n    return torch.empty_like(x)\n\n\n"
        "class Net(nn.Module):\n    def __init__(self):\n        super().__init__()\n        self.fc = nn.Linear(4, 4)\n\n"
        "    def forward(self, x):\n        return mystery(self.fc(x))\n\n\n"
        "def build():\n    return Net().eval()\n")
    result = run_cli("export", "mysterymodel:build", "--input-shape", "1,4", "--target", "android",
                     "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "unsupported op 'edgeport_test.mystery'" in result.stderr


@pytest.mark.e2e
def test_int16x8_uses_the_recipe_ranges(android_exports):
    targets, report, _ = android_exports("int16x8")
    android = targets["android"]
    assert android["checks"]["params"]["honored"]
    assert any(n.startswith("int16 activations (ai-edge-quantizer): ") and "with the recipe's ranges" in n
               for n in android["notes"])
    (row,) = report["cross_target"]
    assert row["top1_agreement"] >= 0.99 and row["max_diff_steps"] <= TOLERANCES["int16-steps"].steps  # int8 weights agree


@pytest.mark.e2e
def test_int8_with_float_input_and_output(tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    from edgeport.cli import main

    out = tmp_path / "out"
    assert main(["export", DIGITS, "--target", "onnx,android", "--quantize", "int8", "--android-io", "float",
                 "--calib", CALIB, "--eval", EVAL, "--out", str(out), "--runs", "3", "--json"]) == 0
    report = json.loads((out / "report.json").read_text())
    android = next(t for t in report["targets"] if t["target"] == "android")
    interpreter = Interpreter(model_path=str(out / "android" / "digits.tflite"))
    assert interpreter.get_input_details()[0]["dtype"] == np.float32
    assert interpreter.get_output_details()[0]["dtype"] == np.float32
    ops = android["checks"]["structure"]["ops"]
    assert ops["QUANTIZE"] == 1 and ops["DEQUANTIZE"] == 1
    assert android["checks"]["params"]["honored"] and android["checks"]["accuracy"]["accuracy_drop_points"] <= 0.5
    (row,) = report["cross_target"]
    assert row["top1_agreement"] >= 0.99 and row["max_diff_steps"] <= TOLERANCES["int8-steps"].steps


def test_unknown_android_io_is_refused(tmp_path):
    result = run_cli("export", DIGITS, "--target", "android", "--input-shape", "1,1,8,8", "--android-io", "double",
                     "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert result.stderr.strip() == "edgeport: error: android: io must be 'int' (integer input/output) or 'float'"


@pytest.mark.e2e
def test_keep_float_with_float_io_keeps_the_layer_float(tmp_path):
    """Float I/O goes through ai-edge-quantizer, which is told the plan's float layers (a
    no-quantization row per op): the last Linear's FULLY_CONNECTED keeps float weights."""
    from ai_edge_litert.interpreter import Interpreter

    out = tmp_path / "out"
    result = run_cli("export", DIGITS, "--target", "android", "--quantize", "int8", "--keep-float", "classifier.3",
                     "--android-io", "float", "--calib", CALIB, "--eval", EVAL, "--runs", "2", "--out", str(out))
    assert result.returncode == 0, result.stderr
    notes = load_report(out)["targets"][0]["notes"]
    assert any(n.startswith("kept in float: 1 layer(s) (classifier.3)") for n in notes), notes
    interpreter = Interpreter(model_path=str(out / "android" / "digits.tflite"))
    tensors = interpreter.get_tensor_details()
    fcs = [op for op in interpreter._get_ops_details() if op["op_name"] == "FULLY_CONNECTED"]
    assert tensors[fcs[-1]["inputs"][1]]["dtype"].__name__ == "float32"
    assert tensors[fcs[0]["inputs"][1]]["dtype"].__name__ == "int8"


@pytest.mark.e2e
def test_check_tflite_against_a_float_onnx_reference(android_exports, float_onnx, tmp_path):
    _, _, out = android_exports("int8")
    report_path = tmp_path / "check.json"
    result = run_cli("check", str(out / "android" / "digits.tflite"), "--target", "android", "--eval", EVAL,
                     "--reference", str(float_onnx), "--report", str(report_path), "--runs", "3", "--json")
    assert result.returncode == 0, result.stderr
    checks = json.loads(report_path.read_text())["targets"][0]["checks"]
    assert checks["parity"]["reference"] == "onnxruntime fp32" and checks["parity"]["top1_agreement"] >= 0.99
    assert checks["accuracy"]["accuracy_drop_points"] <= 0.5
    assert "delta" not in checks["latency"]  # an ONNX model is no speed baseline for LiteRT


@pytest.mark.e2e
@needs_torch
def test_int8_per_tensor_weights_are_symmetric_and_load(exported):
    """Per-tensor weight observers look like activation observers; they must still get the plan's
    symmetric scale (zero point 0), or XNNPACK refuses the model."""
    report, _ = exported("android-int8-per-tensor", "android", "--quantize", "int8", "--per-tensor",
                         "--runs", "5", "--warmup", "1")
    checks = {t["target"]: t for t in report["targets"]}["android"]["checks"]
    assert checks["params"]["honored"] is True and checks["params"]["tensors_checked"] > 0
    assert checks["accuracy"]["accuracy_drop_points"] <= 1.0


SWISH_RESIDUAL = """
import torch
from torch import nn


class SwishResidual(nn.Module):
    # conv -> SiLU -> conv -> hard-swish, a residual add, a product of two branches, and a closing
    # softmax: ops litert-torch's quantizer leaves float in the graphs torch.export writes

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.a, self.b = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1)
        self.gate, self.head = nn.Conv2d(8, 8, 1), nn.Linear(8, 4)

    def forward(self, x):
        y = nn.functional.silu(self.a(x))
        z = nn.functional.hardswish(self.b(y)) + y
        z = z * torch.sigmoid(self.gate(z))
        return torch.softmax(self.head(z.mean(dim=(2, 3))), dim=-1)


def build():
    return SwishResidual().eval()
"""


@pytest.mark.e2e
@needs_torch
def test_int8_tflite_has_no_float_ops_between_its_int8_layers(tmp_path):
    """SiLU (as LOGISTIC and MUL), hard-swish, a residual add, a product and a closing softmax
    are int8 ops in the int8 .tflite (no DEQUANTIZE / QUANTIZE around float ops inside), and the
    C library runs the same file bit-exact."""
    from ai_edge_litert.interpreter import Interpreter

    (tmp_path / "swish_residual.py").write_text(SWISH_RESIDUAL)
    np.savez(tmp_path / "calib.npz", input=np.random.default_rng(0).normal(size=(16, 3, 8, 8)).astype(np.float32))
    out = tmp_path / "out"
    result = run_cli("export", "swish_residual:build", "--target", "android,cortex-m4", "--quantize", "int8",
                     "--calib", str(tmp_path / "calib.npz"), "--out", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    interpreter = Interpreter(model_path=str(next((out / "android").glob("*.tflite"))))
    ops = [op["op_name"] for op in interpreter._get_ops_details()]
    assert "DEQUANTIZE" not in ops and "QUANTIZE" not in ops, ops
    assert {"LOGISTIC", "MUL", "HARD_SWISH", "ADD", "SOFTMAX"} <= set(ops)
    targets = {t["target"]: t["checks"] for t in load_report(out)["targets"]}
    assert targets["android"]["parity"]["cosine"] >= 0.99
    assert targets["cortex-m4"]["bit_exact"]["bit_exact"]
