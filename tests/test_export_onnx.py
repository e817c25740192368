"""The digits CNN exported with every recipe to ONNX and ORT, checked in onnxruntime.

Tolerances per recipe: cosine and max abs error from conftest's TOLERANCES by the recipe's dtype
(fp32 to float rounding, fp16 to half precision, ...); int8 within the acceptance bound (accuracy
within 0.5 points of float, >= 99% top-1 agreement).
"""

import json

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from conftest import CALIB, EVAL, RECIPE_DTYPE, TOLERANCES, load_report, needs_torch

pytestmark = needs_torch

# recipe -> (min top-1 agreement, max accuracy drop in points); cosine and abs error: TOLERANCES
ACCEPTANCE = {
    "none": (1.0, 0.0),
    "fp16": (0.99, 0.5),
    "dynamic-int8": (0.99, 0.5),
    "int8": (0.99, 0.5),
    "int16x8": (0.99, 0.5),
}


@pytest.mark.parametrize("recipe", list(ACCEPTANCE))
@pytest.mark.parametrize("target", ["onnx", "onnx-mobile"])
def test_recipe_parity_and_accuracy(digits_exports, recipe, target):
    report = load_report(digits_exports(recipe))
    entry = next(t for t in report["targets"] if t["target"] == target)
    checks = entry["checks"]
    tolerance = TOLERANCES[RECIPE_DTYPE[recipe]]
    min_cos, max_err = tolerance.cosine, tolerance.abs_err
    min_agree, max_drop = ACCEPTANCE[recipe]
    parity, acc = checks["parity"], checks["accuracy"]
    assert parity["status"] == "measured" and parity["reference"] == "pytorch" and parity["samples"] == 359
    assert parity["cosine"] >= min_cos
    assert parity["max_abs_err"] <= max_err
    assert parity["top1_agreement"] >= min_agree
    assert acc["float_accuracy"] >= 0.97
    assert acc["accuracy_drop_points"] <= max_drop
    lat = checks["latency"]
    assert lat["threads"] == 1 and lat["runs"] == 20 and 0 < lat["p50_ms"] <= lat["p90_ms"] <= lat["p99_ms"]
    assert lat["delta"] == pytest.approx(lat["float_p50_ms"] / lat["p50_ms"], rel=0.01)
    size = checks["size"]
    path = digits_exports(recipe) / entry["artifact"]
    assert size["size_bytes"] == path.stat().st_size
    assert size["alpha"] == pytest.approx(size["float_size_bytes"] / size["size_bytes"], rel=1e-3)


def test_compression_rates_follow_the_recipe(digits_exports):
    alpha = {r: load_report(digits_exports(r))["targets"][0]["checks"]["size"]["alpha"] for r in ACCEPTANCE}
    assert alpha["none"] == pytest.approx(1.0)
    assert alpha["fp16"] > 1.8 and alpha["fp16"] < 2.1  # half the bytes of fp32, plus the graph
    assert alpha["int8"] > 3.0  # int8 weights plus scales and QDQ nodes
    assert alpha["dynamic-int8"] > 1.5  # the Linear layers hold most of the weights
    assert alpha["int16x8"] > 3.0


def test_int8_artifact_holds_exactly_the_planned_parameters(digits_exports):
    out = digits_exports("int8")
    plan = json.loads((out / "quant_params.json").read_text())
    report = load_report(out)
    params = report["targets"][0]["checks"]["params"]
    assert params["honored"] and params["differ"] == [] and params["unplanned"] == []
    assert params["weights"] == 4 and params["activations"] >= 6 and params["int32_biases"] == 4
    # independent read-back: every weight scale in the QDQ graph equals the plan, bit for bit
    model = onnx.load(str(out / "onnx" / "digits.onnx"))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for name, w in plan["weights"].items():
        assert w["axis"] == 0 and len(w["scale"]) == inits[f"{name}_quantized"].shape[0]
        np.testing.assert_array_equal(inits[f"{name}_scale"], np.float32(w["scale"]))
        assert inits[f"{name}_quantized"].dtype == np.int8
    np.testing.assert_array_equal(inits["input_scale"], np.float32(plan["activations"]["input"]["scale"]))
    assert plan["calibration"] == {"method": "minmax", "samples": 200, "source": CALIB}


def test_int8_onnx_and_ort_agree(digits_exports):
    report = load_report(digits_exports("int8"))
    onnx_par, ort_par = (t["checks"]["parity"] for t in report["targets"])
    assert onnx_par["max_abs_err"] == pytest.approx(ort_par["max_abs_err"], rel=1e-4, abs=1e-4)
    (row,) = report["cross_target"]
    assert (row["base"], row["target"], row["samples"]) == ("onnx", "onnx-mobile", 359)
    assert row["top1_agreement"] == 1.0 and row["max_diff_steps"] <= TOLERANCES["int8-steps"].steps  # same int8 kernels, same grid


@pytest.mark.parametrize("options", [["--per-tensor"], ["--calibration", "percentile", "--percentile", "99.9"],
                                     ["--calibration", "mse"]])
def test_int8_variants_keep_accuracy(tmp_path, options):
    from edgeport.cli import main

    out = tmp_path / "out"
    assert main(["export", "samples.digits.model:build", "--quantize", "int8", "--calib", CALIB, "--eval", EVAL,
                 "--out", str(out), "--runs", "5", "--json", *options]) == 0
    report, plan = load_report(out), json.loads((out / "quant_params.json").read_text())
    checks = report["targets"][0]["checks"]
    assert checks["accuracy"]["accuracy_drop_points"] <= 0.5 and checks["params"]["honored"]
    if "--per-tensor" in options:
        assert all(w["axis"] is None and len(w["scale"]) == 1 for w in plan["weights"].values())
    else:
        assert plan["calibration"]["method"] == options[1]
        ranges = plan["activations"]["relu"]["range"]
        assert ranges[0] == 0.0 and ranges[1] > 0


def test_keep_float_leaves_the_layer_unquantized(tmp_path):
    from edgeport.cli import main

    out = tmp_path / "out"
    assert main(["export", "samples.digits.model:build", "--quantize", "int8", "--calib", CALIB,
                 "--keep-float", "classifier.3", "--out", str(out), "--runs", "3", "--json"]) == 0
    plan = json.loads((out / "quant_params.json").read_text())
    assert "classifier.3.weight" not in plan["weights"] and len(plan["float_nodes"]) == 1
    model = onnx.load(str(out / "onnx" / "digits.onnx"))
    inits = {i.name for i in model.graph.initializer}
    assert "classifier.3.weight" in inits and "classifier.3.weight_quantized" not in inits
    assert "classifier.1.weight_quantized" in inits


def test_python_api_returns_report(tmp_path):
    import edgeport

    report = edgeport.export("samples.digits.model:build", targets="onnx", recipe=edgeport.Recipe(quantize="fp16"),
                             eval=EVAL, out=tmp_path / "api", budgets={"max_accuracy_drop": 0.5},
                             settings=edgeport.CheckSettings(runs=5, warmup=1))
    assert report.exit_code == 0
    assert report.target("onnx").values("accuracy")["accuracy_drop_points"] <= 0.5
    table = report.table()
    assert "onnx" in table and "fp16" in table and "OK" in table
    assert json.loads((tmp_path / "api" / "report.json").read_text())["exit_code"] == 0


def test_pt2_source_matches_factory_source(tmp_path):
    import torch

    from samples.digits.model import build
    from edgeport.cli import main

    program = torch.export.export(build(), (torch.zeros(1, 1, 8, 8),))
    pt2 = tmp_path / "digits.pt2"
    torch.export.save(program, str(pt2))
    out = tmp_path / "out"
    assert main(["export", str(pt2), "--eval", EVAL, "--out", str(out), "--runs", "3", "--json"]) == 0
    checks = load_report(out)["targets"][0]["checks"]
    assert checks["parity"]["reference"] == "pytorch" and checks["parity"]["max_abs_err"] < TOLERANCES["float32"].abs_err
    assert checks["accuracy"]["accuracy"] >= 0.97


def test_onnx_source_with_config_file(tmp_path, float_onnx):
    from edgeport.cli import main

    config = tmp_path / "edgeport.toml"
    out = tmp_path / "out"
    config.write_text(f'[export]\nsource = "{float_onnx}"\nout = "{out}"\ncalib = "{CALIB}"\neval = "{EVAL}"\n'
                      f'targets = ["onnx"]\n[recipe]\nquantize = "int8"\n[budgets]\nmin_agreement = "99%"\n'
                      f'[checks]\nruns = 3\n')
    assert main(["export", "--config", str(config), "--json"]) == 0
    report = load_report(out)
    assert report["targets"][0]["checks"]["parity"]["reference"] == "onnxruntime fp32"
    assert report["budgets"][0]["budget"] == "min_agreement" and report["budgets"][0]["ok"]


def test_check_command_on_existing_artifact(digits_exports, float_onnx, tmp_path):
    from edgeport.cli import main

    artifact = digits_exports("int8") / "onnx" / "digits.onnx"
    report_path = tmp_path / "check.json"
    assert main(["check", str(artifact), "--target", "onnx", "--eval", EVAL, "--reference", str(float_onnx),
                 "--report", str(report_path), "--runs", "5", "--json"]) == 0
    checks = json.loads(report_path.read_text())["targets"][0]["checks"]
    assert checks["parity"]["top1_agreement"] >= 0.99 and checks["size"]["alpha"] > 3
    assert checks["accuracy"]["accuracy_drop_points"] <= 0.5


def test_fp16_keeps_constants_beyond_float16_range_in_float32(tmp_path):
    """A BatchNorm whose running variance is 1e7 (PP-OCRv4 det has such): clamped to float16 the
    output is far off (cosine 0.74 there); the node and its constants stay float32 instead."""
    import edgeport
    from onnx import TensorProto, helper

    rng = np.random.default_rng(0)
    consts = {"scale": rng.uniform(0.5, 1.5, 4), "bias": rng.uniform(-1, 1, 4), "mean": rng.uniform(-300, 300, 4),
              "var": rng.uniform(1e7, 1e8, 4)}
    nodes = [helper.make_node("Constant", [], [k], name=f"const_{k}",
                              value=numpy_helper.from_array(v.astype(np.float32), k)) for k, v in consts.items()]
    nodes.append(helper.make_node("BatchNormalization", ["x", *consts], ["y"], name="bn", epsilon=1e-5))
    graph = helper.make_graph(nodes, "bn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4, 6])])
    path = tmp_path / "bn.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    np.savez(tmp_path / "data.npz", x=(rng.standard_normal((8, 4, 6)) * 3000).astype(np.float32))
    report = edgeport.export(str(path), targets=["onnx"], recipe=edgeport.Recipe(quantize="fp16"),
                             calib=str(tmp_path / "data.npz"), out=str(tmp_path / "out"),
                             settings=edgeport.CheckSettings(runs=2, warmup=1))
    assert report.target("onnx").values("parity")["cosine"] >= 0.9999
