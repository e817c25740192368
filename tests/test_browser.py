"""Browser targets: the TF.js graph model edgeport writes runs in Chromium (tfjs-cpu, tfjs-wasm)
and matches PyTorch; ONNX runs in onnxruntime-web; the recipe reaches the weight storage; bad
input fails before any browser starts."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgeport import plugins
from edgeport.exporters import ExportJob
from edgeport.exporters.tfjs import SHARD_BYTES, affine_quantize, read_weights
from edgeport.quantizers import make_plan
from edgeport.recipe import Recipe
from edgeport.runtimes.browser import ChromiumRuntime, open_session
from edgeport.sources import load_source
from edgeport.targets import TARGETS
from conftest import CALIB, DIGITS, EVAL, TOLERANCES, needs_torch, run_cli

REASON = ChromiumRuntime().availability()
needs_browser = pytest.mark.skipif(REASON is not None, reason=str(REASON))
TFJS_BACKENDS = ("tfjs-cpu", "tfjs-wasm")


def _export_tfjs(tmp_path, source: str, shape: tuple[int, ...], recipe: Recipe | None = None,
                 weights: str | None = None):
    model = load_source(source, [shape], "float32")
    recipe = recipe or Recipe()
    options = {"browser": {"tfjs_weights": weights}} if weights else {}
    job = ExportJob(model, recipe, make_plan(model, recipe, None), options=options)
    artifact = plugins.exporters().get("tfjs").export(job, TARGETS.get("browser-tfjs"), tmp_path / "browser-tfjs")
    return model, artifact


def _max_rel_err(ref: np.ndarray, out: np.ndarray) -> float:
    return float(np.abs(ref - out).max() / max(np.abs(ref).max(), 1e-12))


# ------------------------------------------------------------------ no browser needed

def test_affine_uint8_keeps_zero_exact_and_error_within_half_a_step():
    w = np.random.default_rng(0).normal(size=1000).astype(np.float32)
    w[::7] = 0.0
    q, scale, lo = affine_quantize(w, "uint8")
    back = q.astype(np.float64) * scale + lo
    assert q.dtype == np.uint8
    np.testing.assert_array_equal(back[::7], 0.0)
    assert np.abs(back - w).max() <= scale / 2 + 1e-7


@needs_torch
def test_weights_above_4mb_are_split_into_shards_that_decode_exactly(tmp_path):
    model, artifact = _export_tfjs(tmp_path, "testmodels.zoo:build_wide", (1, 1100))
    manifest = json.loads((artifact.path / "model.json").read_text())["weightsManifest"][0]
    shards = [artifact.path / p for p in manifest["paths"]]
    assert len(shards) == 2 and all(p.stat().st_size <= SHARD_BYTES for p in shards)
    weights = read_weights(artifact.path)
    onnx_weight = {i.name: i for i in model.onnx_model().graph.initializer}
    from onnx import numpy_helper

    stored = next(v for k, v in weights.items() if k.endswith("/weight"))
    np.testing.assert_array_equal(stored, numpy_helper.to_array(onnx_weight["fc.weight"]).T)


@needs_torch
def test_an_op_tfjs_cannot_take_is_named_before_any_browser_starts(tmp_path):
    out = tmp_path / "out"
    result = run_cli("export", "testmodels.zoo:build_einsum", "--input-shape", "1,8", "--target", "onnx,browser",
                     "--out", str(out))
    assert result.returncode == 2, result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert "unsupported op 'Einsum' at node '" in line and "TF.js" in line
    assert not out.exists()


def test_tfjs_weights_conflicting_with_the_recipe_is_refused():
    result = run_cli("export", DIGITS, "--target", "browser-tfjs", "--quantize", "int8", "--calib", CALIB,
                     "--tfjs-weights", "uint8", "--out", "unused")
    assert result.returncode == 2
    assert "tfjs_weights 'uint8' applies to recipe quantize=none" in result.stderr


# ------------------------------------------------------------------ in Chromium

@pytest.mark.e2e
@needs_browser
@needs_torch
@pytest.mark.parametrize("source, shape", [
    ("testmodels.zoo:build_dscnn", (1, 1, 49, 10)),   # KWS DS-CNN: conv 10x4/2, depthwise, avg pool, softmax
    ("testmodels.zoo:build_zoo", (1, 3, 17, 15)),     # pad, concat, padded max pool, mean, add, relu6, sigmoid
    ("samples.mobilenet.model:build", (1, 3, 96, 96)),  # MobileNetV2: inverted residuals, relu6, global mean
])
def test_tfjs_graph_matches_pytorch_on_every_backend(tmp_path, source, shape):
    model, artifact = _export_tfjs(tmp_path, source, shape)
    x = np.random.default_rng(0).random((3, *shape[1:]), dtype=np.float32)
    ref = model.reference({model.inputs[0].name: x})[0]
    for backend in TFJS_BACKENDS:
        with open_session(artifact.path, backend) as session:
            out = session.run({session.inputs[0].name: x})[0]
        assert out.shape == ref.shape
        assert _max_rel_err(ref, out) < TOLERANCES["float32-tfjs"].rel_err, backend


@pytest.mark.e2e
@needs_browser
@needs_torch
@pytest.mark.parametrize("weights, max_rel_err", [(w, TOLERANCES[f"{w}-weights"].rel_err)
                                                   for w in ("float16", "uint16", "uint8")])
def test_tfjs_weight_formats_decode_in_the_browser(tmp_path, weights, max_rel_err):
    model, artifact = _export_tfjs(tmp_path, DIGITS, (1, 1, 8, 8), weights=weights)
    stored = plugins.exporters().get("tfjs").describe(artifact.path)["weight_bytes"]
    assert stored.get(weights, 0) > 0
    x = np.load(EVAL)["x"][:64]
    ref = model.reference({model.inputs[0].name: x})[0]
    with open_session(artifact.path, "tfjs-wasm") as session:
        out = session.run({session.inputs[0].name: x})[0]
    assert _max_rel_err(ref, out) < max_rel_err
    assert np.argmax(ref, 1).tolist() == np.argmax(out, 1).tolist()


@pytest.mark.e2e
@needs_browser
@needs_torch
def test_int8_per_tensor_needs_no_scale_ops_and_is_honored(tmp_path):
    calib = np.load(CALIB)["x"][:50]
    model = load_source(DIGITS, [(1, 1, 8, 8)], "float32")
    recipe = Recipe(quantize="dynamic-int8", per_channel=False)
    plan = make_plan(model, recipe, None)
    job = ExportJob(model, recipe, plan)
    exporter = plugins.exporters().get("tfjs")
    artifact = exporter.export(job, TARGETS.get("browser-tfjs"), tmp_path / "t")
    ops = exporter.describe(artifact.path)["ops"]
    assert "Mul" not in ops
    params = exporter.read_params(artifact.path, plan)
    assert params["tensors_checked"] == len(plan.weights) and not params["differ"]
    # TF.js decodes the stored integers with the plan's scale: outputs equal ORT's dequantized weights
    from edgeport.quantizers import qmath

    dequantized = {name: qmath.dequantize(qmath.quantize(w, p.scale[0], 0), p.scale[0], 0)
                   for name, p in plan.weights.items() for w in [_initializer(model, name)]}
    expected = _run_onnx_with(model, dequantized, calib)
    with open_session(artifact.path, "tfjs-wasm") as session:
        out = session.run({"input": calib})[0]
    assert _max_rel_err(expected, out) < TOLERANCES["float32-same-weights"].rel_err


def _initializer(model, name: str) -> np.ndarray:
    from onnx import numpy_helper

    return next(numpy_helper.to_array(i) for i in model.onnx_model().graph.initializer if i.name == name)


def _run_onnx_with(model, replaced: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort
    from onnx import numpy_helper

    proto = model.onnx_model()
    for init in proto.graph.initializer:
        if init.name in replaced:
            init.CopyFrom(numpy_helper.from_array(replaced[init.name].astype(np.float32), init.name))
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


@pytest.mark.e2e
@needs_browser
@needs_torch
def test_digits_int8_to_both_browser_targets(exported):
    report, out = exported("browser-int8", "browser", "--quantize", "int8", "--runs", "20", "--warmup", "2")
    targets = {t["target"]: t for t in report["targets"]}
    assert set(targets) == {"browser-tfjs", "browser-ort"}
    for name, backends in (("browser-tfjs", TFJS_BACKENDS), ("browser-ort", ("ort-wasm",))):
        checks = targets[name]["checks"]
        rows = checks["browser"]["backends"]
        assert set(rows) == set(backends)
        for row in rows.values():
            assert row["parity_top1_agreement"] >= 0.99
            assert row["p50_ms"] > 0 and row["float_p50_ms"] > 0 and row["load_ms"] > 0
            assert row["runtime_bytes"] > 0
        assert checks["params"]["honored"] is True
        assert checks["latency"]["status"] == "measured"
    tfjs_files = sorted((out / "browser-tfjs" / "digits").iterdir())
    row = targets["browser-tfjs"]["checks"]["browser"]["backends"]["tfjs-wasm"]
    assert row["model_bytes"] == sum(p.stat().st_size for p in tfjs_files)
    onnx_row = targets["browser-ort"]["checks"]["browser"]["backends"]["ort-wasm"]
    assert onnx_row["model_bytes"] == (out / "browser-ort" / "digits.onnx").stat().st_size


@pytest.mark.e2e
@needs_browser
@needs_torch
def test_uint8_weights_cut_the_gzip_download_and_keep_top1(exported):
    """Acceptance: digits CNN -> TF.js uint8: gzip download <= 30% of fp32's, top-1 agreement with
    PyTorch >= 99% in Chromium (tfjs-wasm) on the digits test split."""
    report, _ = exported("browser-uint8", "browser-tfjs", "--tfjs-weights", "uint8", "--runs", "20",
                         "--warmup", "2")
    (target,) = report["targets"]
    row = target["checks"]["browser"]["backends"]["tfjs-wasm"]
    assert row["parity_samples"] == len(np.load(EVAL)["y"])
    assert row["gzip_vs_float"] <= 0.30
    assert row["parity_top1_agreement"] >= 0.99


@pytest.mark.e2e
@needs_browser
@needs_torch
def test_check_an_existing_tfjs_model(exported, tmp_path):
    _, out = exported("browser-uint8", "browser-tfjs", "--tfjs-weights", "uint8", "--runs", "20", "--warmup", "2")
    report_path = tmp_path / "check.json"
    result = run_cli("check", str(out / "browser-tfjs" / "digits"), "--target", "browser-tfjs", "--eval", EVAL,
                     "--runs", "10", "--report", str(report_path))
    assert result.returncode == 0, result.stderr
    checks = json.loads(report_path.read_text())["targets"][0]["checks"]
    assert checks["browser"]["status"] == "measured"
    assert checks["accuracy"]["accuracy"] > 0.95

