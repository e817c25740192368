"""QAT and binary-weight models export with the numbers they learned, through the PTQ recipe path.

A module fixture fine-tunes the committed digits CNN (QAT: one epoch of distillation from the
float model; binary hidden layers: one epoch), converts it and saves it for
`testmodels.saved`, whose factories the CLI exports. The PTQ baseline is the float digits CNN
exported with the same flags. Seeds fixed, one torch thread.

Tolerances: scales rel 1e-6 (float32 values copied through, so equal in practice); int8 weights
exact; accuracy QAT >= PTQ on every target (the issue's acceptance; one eval sample is 0.28
points). About 100 s on 2 cores (three exports, the Cortex-M one in QEMU).
"""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from conftest import CALIB, DIGITS, EVAL, load_report, needs_torch, run_cli

pytestmark = [needs_torch, pytest.mark.skipif(importlib.util.find_spec("litert_torch") is None,
                                              reason="litert-torch is not installed")]

TARGETS = ("onnx", "android", "browser-ort", "cortex-m4", "ios")
FLAGS = ("--quantize", "int8", "--calib", CALIB, "--eval", EVAL, "--ios-target", "iOS17",
         "--runs", "5", "--warmup", "1", "--json")
RELU_FOLLOWED = ("features.0", "features.2", "classifier.1")  # DigitsCNN layers whose output feeds a ReLU


def _missing(target: str) -> str:
    from edgeport.plugins import missing, resolve_targets

    return "; ".join(missing(resolve_targets([target])[0]))


USABLE = tuple(t for t in TARGETS if not _missing(t))


# ------------------------------------------------------------------ pure functions, exact

def test_lowbit_scales_find_binary_and_ternary_weights_only():
    from edgeport.quantizers.qmath import lowbit_scales

    binary = np.float32([[0.5, -0.5, 0.5], [-0.25, -0.25, 0.25]])
    scales, kind = lowbit_scales(binary, 0)
    assert kind == "binary" and scales.tolist() == [0.5, 0.25]
    ternary = np.float32([[0.5, 0.0, -0.5], [0.0, 0.0, 0.0]])  # an all-zero channel gets scale 1
    scales, kind = lowbit_scales(ternary, 0)
    assert kind == "ternary" and scales.tolist() == [0.5, 1.0]
    assert lowbit_scales(binary.T, 1)[0].tolist() == [0.5, 0.25]
    assert lowbit_scales(binary, None) is None  # two magnitudes in one per-tensor slice
    assert lowbit_scales(np.float32([[0.5, -0.4, 0.5]]), 0) is None
    assert lowbit_scales(np.float32([[0.5], [-0.3]]), 0) is None  # one weight per channel: not low-bit
    assert lowbit_scales(np.zeros((2, 3), np.float32), 0) is None


def test_learned_weight_scales_are_used_only_where_they_hold_the_weight():
    from edgeport.quantizers.learned import learned_weight_scales

    w = np.float32([[0.02, -0.01], [0.5, 0.25]])
    entry = {"scale": [0.01, 0.25], "axis": 0}
    assert learned_weight_scales(entry, w, 0).tolist() == pytest.approx([0.01, 0.25])
    assert learned_weight_scales({"scale": [0.01], "axis": None}, w, 0).tolist() == pytest.approx([0.01, 0.01])
    assert learned_weight_scales({"scale": [0.001], "axis": None}, w, 0) is None  # 500 steps: would clip
    assert learned_weight_scales(entry, w, None) is None  # per-channel numbers for a per-tensor plan
    assert learned_weight_scales({"scale": [0.01, 0.2, 0.3], "axis": 0}, w, 0) is None


# ------------------------------------------------------------------ the models and their exports

@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Train, convert and save the QAT and the binary digits CNN; name -> converted module."""
    torch = pytest.importorskip("torch")
    from samples.digits.data import digits_split
    from samples.digits.model import build
    from testmodels.saved import FOLDER_VARIABLE, save

    from edgeport.training.distill import fit
    from edgeport.training.lowbit import LowBitConfig, convert_lowbit, prepare_lowbit
    from edgeport.training.qat import QATConfig, convert, prepare_qat

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    patch = pytest.MonkeyPatch()
    patch.setenv(FOLDER_VARIABLE, str(tmp_path_factory.mktemp("models")))
    x, y, _, _ = (torch.from_numpy(a) for a in digits_split())
    qat = prepare_qat(build(), QATConfig(), x[:256])
    fit(qat, (x, y), teacher=build(), epochs=1, lr=1e-3, seed=0)
    binary = prepare_lowbit(build(), LowBitConfig(weights="binary"))
    fit(binary, (x, y), teacher=build(), epochs=1, lr=1e-3, seed=0)
    models = {"digits_qat": convert(qat), "digits_binary": convert_lowbit(binary)}
    for name, model in models.items():
        save(model, name)
    torch.set_num_threads(threads)
    yield models
    patch.undo()


@pytest.fixture(scope="module")
def export(saved, tmp_path_factory):
    """(source, targets) -> (report, output folder), each exported once with FLAGS."""
    made = {}

    def get(source: str, targets: tuple[str, ...]) -> tuple[dict, object]:
        key = (source, targets)
        if key not in made:
            out = tmp_path_factory.mktemp(source.rpartition(":")[2])
            result = run_cli("export", source, "--target", ",".join(targets), "--out", str(out), *FLAGS)
            assert result.returncode == 0, result.stderr[-3000:]
            made[key] = (load_report(out), out)
        return made[key]

    return get


def _targets(report: dict) -> dict[str, dict]:
    return {t["target"]: t for t in report["targets"]}


def _int8_weights(path) -> list[tuple[np.ndarray, np.ndarray]]:
    """(int8 values, per-channel scales) of every per-channel int8 weight of a .tflite file."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    found = []
    for tensor in interpreter.get_tensor_details():
        q = tensor["quantization_parameters"]
        if np.dtype(tensor["dtype"]) == np.int8 and len(q["scales"]) > 1:
            found.append((interpreter.get_tensor(tensor["index"]), np.float32(q["scales"])))
    return found


def _tflite_weight(found, torch_weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The .tflite weight holding `torch_weight` (O, I[, H, W]), as (values in torch layout, scales)."""
    # TFLite convs are OHWI; a one-input-channel conv becomes a depthwise conv, 1HWO
    layouts = ((0, 3, 1, 2), (3, 0, 1, 2)) if torch_weight.ndim == 4 else ((0, 1),)
    (match,) = [(v.transpose(layout), s) for v, s in found for layout in layouts
                if v.ndim == torch_weight.ndim and v.transpose(layout).shape == torch_weight.shape]
    return match


@pytest.mark.e2e
@pytest.mark.parametrize("target", TARGETS)
def test_qat_accuracy_is_at_least_ptq_on_every_target(export, target):
    if target not in USABLE:
        pytest.skip(f"{target}: {_missing(target)}")
    qat = _targets(export("testmodels.saved:digits_qat", USABLE)[0])[target]["checks"]
    ptq = _targets(export(DIGITS, USABLE)[0])[target]["checks"]
    assert qat["accuracy"]["samples"] == ptq["accuracy"]["samples"] == 359
    assert qat["accuracy"]["accuracy"] >= ptq["accuracy"]["accuracy"]
    assert qat["params"]["honored"], qat["params"]


@pytest.mark.e2e
def test_plan_holds_the_learned_numbers(export, saved):
    from edgeport.quantizers.qmath import activation_qparams

    learned = saved["digits_qat"].edgeport_qparams
    report, out = export("testmodels.saved:digits_qat", USABLE)
    plan = json.loads((out / "quant_params.json").read_text())
    assert set(plan["weights"]) == set(learned["weights"])  # the ONNX initializers carry the parameter paths
    for name, entry in learned["weights"].items():
        assert plan["origin"][name] == "qat"
        np.testing.assert_allclose(plan["weights"][name]["scale"], entry["scale"], rtol=1e-6)
    qat_activations = [a for n, a in plan["activations"].items() if plan["origin"].get(n) == "qat"]
    for layer, (lo, hi) in learned["activations"].items():
        scale, zero_point = activation_qparams(lo, hi)
        output = [a for a in qat_activations if np.allclose(a["range"], [lo, hi], rtol=1e-6)]
        assert output and output[0]["scale"] == pytest.approx(float(scale), rel=1e-6)
        assert output[0]["zero_point"] == int(zero_point)
        if layer in RELU_FOLLOWED:  # the ReLU's output: the learned step, zero point -128
            assert any(a["zero_point"] == -128 and a["scale"] == pytest.approx(float(scale), rel=1e-6)
                       and a["range"][0] == 0.0 for a in qat_activations), layer
    (note,) = [n for n in report["notes"] if n.startswith("QAT:")]
    assert "learned in training" in note and "weight scales of 4 layers" in note
    assert "output ranges of 4 layers" in note and "not used" not in note
    assert plan["notes"] == report["notes"]


@pytest.mark.e2e
def test_tflite_holds_the_learned_scales_and_integers(export, saved):
    if "android" not in USABLE:
        pytest.skip(f"android: {_missing('android')}")
    from edgeport.quantizers.qmath import activation_qparams

    model = saved["digits_qat"]
    learned = model.edgeport_qparams
    report, out = export("testmodels.saved:digits_qat", USABLE)
    found = _int8_weights(out / "android" / "digits_qat.tflite")
    params = dict(model.named_parameters())
    for name, entry in learned["weights"].items():
        w = params[name].detach().numpy()
        values, scales = _tflite_weight(found, w)
        np.testing.assert_allclose(scales, entry["scale"], rtol=1e-6)
        grid = np.rint(w / np.float32(entry["scale"]).reshape(-1, *[1] * (w.ndim - 1)))
        np.testing.assert_array_equal(values, grid)  # the QAT integers, exactly
    android = _targets(report)["android"]
    assert "int8 weights: 4 with the recipe's scales" in android["notes"]
    assert not any("by its rule" in n for n in android["notes"])  # every observer found the plan's numbers

    from ai_edge_litert.interpreter import Interpreter

    activations = {(float(np.float32(t["quantization_parameters"]["scales"][0])),
                    int(t["quantization_parameters"]["zero_points"][0]))
                   for t in Interpreter(model_path=str(out / "android" / "digits_qat.tflite")).get_tensor_details()
                   if np.dtype(t["dtype"]) == np.int8 and len(t["quantization_parameters"]["scales"]) == 1}
    for layer in RELU_FOLLOWED:  # TFLite fuses the ReLU: its output is the tensor quantized with the learned step
        assert (float(activation_qparams(*learned["activations"][layer])[0]), -128) in activations


@pytest.mark.e2e
def test_per_tensor_recipe_leaves_per_channel_learned_scales_and_says_so(saved):
    from edgeport.data import load_dataset
    from edgeport.quantizers import make_plan
    from edgeport.recipe import Recipe
    from edgeport.sources import load_source

    model = load_source("testmodels.saved:digits_qat", [(1, 1, 8, 8)])
    assert model.learned_qparams == saved["digits_qat"].edgeport_qparams
    plan = make_plan(model, Recipe(quantize="int8", per_channel=False, calib_samples=50),
                     load_dataset(CALIB, model.inputs))
    assert not any(plan.origin.get(n) == "qat" for n in plan.weights)
    assert sum(v == "qat" for v in plan.origin.values()) >= 4  # the activations still are
    (note,) = plan.notes
    assert "not used: weight features.0.weight" in note


@pytest.mark.e2e
def test_binary_layers_are_int8_plus_minus_one_with_scale_alpha(export, saved):
    from onnx import load, numpy_helper

    model = saved["digits_binary"]
    alphas = {name: entry["alpha"] for name, entry in model.edgeport_lowbit.items()}
    assert set(alphas) == {"features.2.weight", "classifier.1.weight"}
    targets = tuple(t for t in ("onnx", "android") if t in USABLE)
    report, out = export("testmodels.saved:digits_binary", targets)
    (note,) = report["notes"]
    assert note.startswith("2 layers hold binary/ternary weights (features.2 binary, classifier.1 binary)")
    assert "int8 tensors of ±1 with the scale α (ONNX, TFLite and TF.js store 8 bits per weight" in note

    inits = {i.name: numpy_helper.to_array(i) for i in load(str(out / "onnx" / "digits_binary.onnx")).graph.initializer}
    params = dict(model.named_parameters())
    found = _int8_weights(out / "android" / "digits_binary.tflite") if "android" in targets else None
    for name, alpha in alphas.items():
        signs = np.where(params[name].detach().numpy() >= 0, 1, -1)
        np.testing.assert_array_equal(inits[f"{name}_quantized"], signs)
        np.testing.assert_allclose(inits[f"{name}_scale"], alpha, rtol=1e-6)
        if found is not None:
            values, scales = _tflite_weight(found, params[name].detach().numpy())
            np.testing.assert_array_equal(values, signs)
            np.testing.assert_allclose(scales, alpha, rtol=1e-6)
    for name in ("features.0.weight", "classifier.3.weight"):  # float layers: the rule, up to ±127
        assert np.abs(inits[f"{name}_quantized"]).max() == 127
    for target in _targets(report).values():
        assert target["checks"]["params"]["honored"], target["target"]
