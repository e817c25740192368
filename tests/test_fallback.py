"""Accuracy-controlled quantization (issue #16): parity over every output, the min_cosine /
min_sqnr budgets, and `--fallback auto` moving the noisiest layers to float until they hold.

Tolerances: parity values are exact arithmetic on known arrays (1e-9); the fallback's outcome
is checked against its own measured steps (the goal is met on the calibration data, the moved
layers are the ones named)."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
from conftest import ROOT, load_report, run_cli

import edgeport
from edgeport.budgets import evaluate, parse_budgets
from edgeport.checks.numerics import all_outputs_parity
from edgeport.errors import InputError
from edgeport.recipe import Recipe

DIGITS = "samples.digits.model:build"
CALIB = "samples/digits/calib.npz"
EVAL = "samples/digits/eval.npz"


def test_parity_covers_every_output_and_reports_the_worst():
    rng = np.random.default_rng(0)
    scores, boxes = rng.normal(size=(8, 10)), rng.normal(size=(8, 4, 6))
    noisy = boxes + rng.normal(scale=0.3, size=boxes.shape)
    values = all_outputs_parity([scores, boxes], [scores, noisy], ["scores", "boxes"])
    assert values["top1_agreement"] == 1.0  # from the first output
    worst = all_outputs_parity([boxes], [noisy], ["boxes"])
    assert values["cosine"] == pytest.approx(worst["cosine"], abs=1e-9) and values["cosine"] < 0.99
    assert values["sqnr_db"] == pytest.approx(worst["sqnr_db"], abs=1e-9)
    assert [r["output"] for r in values["outputs"]] == ["scores", "boxes"]
    assert values["outputs"][0]["sqnr_db"] == 999.0  # identical


def test_sqnr_matches_its_definition():
    ref = np.linspace(-1, 1, 200).reshape(2, 100)
    out = ref + 0.01
    expected = 10 * np.log10(np.sum(ref ** 2) / np.sum((ref - out) ** 2))
    assert all_outputs_parity([ref], [out], ["y"])["sqnr_db"] == pytest.approx(expected, abs=0.01)


def test_min_cosine_and_min_sqnr_budgets():
    assert parse_budgets({"min_cosine": "99%", "min_sqnr": "30dB"}) == {"min_cosine": 0.99, "min_sqnr": 30.0}
    with pytest.raises(InputError, match="min_cosine: give a fraction"):
        parse_budgets({"min_cosine": 2})
    with pytest.raises(InputError, match="min_sqnr: must be a finite number"):
        parse_budgets({"min_sqnr": "nan"})
    results = evaluate({"min_cosine": 0.99, "min_sqnr": 30.0},
                       {"onnx": {"parity": {"cosine": 0.995, "sqnr_db": 25.0}}}, {})
    assert [(r.budget, r.ok) for r in results] == [("min_cosine", True), ("min_sqnr", False)]
    assert "25 dB" in results[1].message and ">= 30 dB" in results[1].message


def test_fallback_is_a_recipe_option_validated_before_work(tmp_path):
    assert Recipe(quantize="int8", fallback="auto").float_overrides
    with pytest.raises(InputError, match="fallback must be one of"):
        Recipe(quantize="int8", fallback="sometimes")
    with pytest.raises(InputError, match="quantizes nothing"):
        Recipe(quantize="fp16", fallback="auto")
    with pytest.raises(InputError, match="needs a numeric goal"):
        edgeport.export(DIGITS, targets=["onnx"], recipe=Recipe(quantize="int8", fallback="auto"), calib=CALIB,
                        out=str(tmp_path / "out"))
    with pytest.raises(InputError, match="give --calib"):
        edgeport.export(DIGITS, targets=["onnx"], recipe=Recipe(quantize="dynamic-int8", fallback="auto"),
                        eval=EVAL, budgets={"min_cosine": 0.99}, out=str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


@pytest.mark.e2e
def test_the_c_library_takes_the_fallback_when_nothing_moved_and_refuses_moved_layers(tmp_path):
    """The C library runs int8 kernels only: digits int8 meets cosine 0.99 as it is (nothing
    moves, the library is exported and measured); a 45 dB goal moves a layer, and the C library
    is then refused with the layers named while onnx is exported (--keep-going)."""
    met = edgeport.export(DIGITS, targets=["onnx", "cortex-m4"], recipe=Recipe(quantize="int8", fallback="auto"),
                          calib=CALIB, eval=EVAL, budgets={"min_cosine": 0.99}, out=str(tmp_path / "met"),
                          settings=edgeport.CheckSettings(runs=2, warmup=0))
    assert [t.status for t in met.targets] == ["exported", "exported"]
    assert json.loads((tmp_path / "met" / "quant_params.json").read_text())["fallback"]["moved"] == []
    assert met.targets[1].values("parity")["cosine"] >= 0.99
    moved = edgeport.export(DIGITS, targets=["onnx", "cortex-m4"], recipe=Recipe(quantize="int8", fallback="auto"),
                            calib=CALIB, eval=EVAL, budgets={"min_sqnr": 45}, out=str(tmp_path / "moved"),
                            settings=edgeport.CheckSettings(runs=2, warmup=0), keep_going=True)
    status = {t.target: (t.status, t.reason) for t in moved.targets}
    assert status["onnx"][0] == "exported"
    assert status["cortex-m4"][0] == "failed" and "runs int8 kernels only" in status["cortex-m4"][1], status
    plan = json.loads((tmp_path / "moved" / "quant_params.json").read_text())
    assert plan["fallback"]["moved"] and any(m["to"] == "int16" for m in plan["fallback"]["moved"])


@pytest.mark.e2e
def test_fallback_moves_the_noisiest_layer_until_the_goal_holds(tmp_path):
    """Digits int8 is at ~40 dB SQNR; a 45 dB goal needs at least one layer in float."""
    out = tmp_path / "out"
    report = edgeport.export(DIGITS, targets=["onnx"], recipe=Recipe(quantize="int8", fallback="auto"), calib=CALIB,
                             eval=EVAL, budgets={"min_sqnr": 45}, out=str(out),
                             settings=edgeport.CheckSettings(runs=3, warmup=1))
    fallback = json.loads((out / "quant_params.json").read_text())["fallback"]
    assert fallback["goals"] == {"min_sqnr": 45.0}
    assert fallback["met"] and fallback["moved"], fallback
    first, last = fallback["steps"][0], fallback["steps"][-1]
    assert first["sqnr_db"] < 45.0 <= last["sqnr_db"]
    kept = [s for s in fallback["steps"] if "reverted" not in s]
    assert len(kept) == len({m["step"] for m in fallback["moved"]}) + 1
    assert all(a["sqnr_db"] < b["sqnr_db"] for a, b in zip(kept, kept[1:]))  # every kept step helped
    assert 0 < fallback["float_weight_share"] <= 0.10
    # onnx writes per-layer int16: layers go there first (weights stay int8), then to float; a
    # ReLU moved along gets a grid clipped at 0 (a symmetric int16 one let negatives through)
    final = {m["node"]: m["to"] for m in fallback["moved"]}
    assert "int16" in final.values(), fallback["moved"]
    plan = json.loads((out / "quant_params.json").read_text())
    floated = [m for m in fallback["moved"] if final[m["node"]] == "float" and m["to"] == "float"]
    expected = {n for m in floated for n in [m["node"], *m.get("with", [])]}
    assert set(plan["float_nodes"]) == expected  # the plan tuned is exported (with the moves' followers)
    assert all(plan["precisions"][n] == "int16" for n, to in final.items() if to == "int16")
    followers = [f for m in fallback["moved"] if m["to"] == "int16" for f in m.get("with", [])]
    assert all(plan["precisions"].get(f) == "int16" for f in followers if f not in plan["float_nodes"])
    assert any(n.startswith("fallback auto: ") and "goal met" in n for n in report.notes)
    parity = report.target("onnx").values("parity")
    assert parity["sqnr_db"] >= 40.0  # eval data: a different set than the one tuned on
    assert report.budgets[0].budget == "min_sqnr"


def test_run_onnx_takes_a_scalar_input_one_sample_at_a_time():
    """A streaming model with a scalar input (silero's sample rate) and a batch fixed at 1: each
    sample's scalar goes in as a 0-d array (a numpy scalar made the fallback crash)."""
    from onnx import TensorProto, helper

    from edgeport.checks.layers import run_onnx

    graph = helper.make_graph(
        [helper.make_node("Cast", ["s"], ["f"], to=TensorProto.FLOAT), helper.make_node("Mul", ["x", "f"], ["y"])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4]),
              helper.make_tensor_value_info("s", TensorProto.INT64, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    scale = np.array([1, 2, 3], dtype=np.int64)
    out = run_onnx(model, {"x": x, "s": scale})
    np.testing.assert_array_equal(out["y"], x * scale[:, None])


def test_a_moved_layer_takes_its_readers_without_weights_along():
    """A float layer whose output an int8 op reads is still rounded there: its readers without
    weights move with it (also one reading it inside an If branch), up to the next layer with
    weights; shape reads are not followed."""
    from onnx import TensorProto, helper, numpy_helper

    from edgeport.fallback import _followers, _weight_sizes

    weight = numpy_helper.from_array(np.ones((4, 4), np.float32), "w")
    branch = helper.make_graph([helper.make_node("Identity", ["probs"], ["picked"], name="inner")], "then", [],
                               [helper.make_tensor_value_info("picked", TensorProto.FLOAT, [1, 4])])
    other = helper.make_graph([helper.make_node("Identity", ["x"], ["kept"], name="inner2")], "else", [],
                              [helper.make_tensor_value_info("kept", TensorProto.FLOAT, [1, 4])])
    graph = helper.make_graph(
        [helper.make_node("Sigmoid", ["x"], ["probs"], name="sigmoid"),
         helper.make_node("Shape", ["probs"], ["shape"], name="shape"),
         helper.make_node("Squeeze", ["probs"], ["flat"], name="squeeze"),
         helper.make_node("MatMul", ["flat", "w"], ["y"], name="fc"),
         helper.make_node("If", ["flag"], ["chosen"], name="if", then_branch=branch, else_branch=other),
         helper.make_node("ReduceMean", ["chosen"], ["mean"], name="mean")],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4]),
              helper.make_tensor_value_info("flag", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None),
         helper.make_tensor_value_info("mean", TensorProto.FLOAT, None),
         helper.make_tensor_value_info("shape", TensorProto.INT64, None)], [weight])
    model = helper.make_model(graph)
    assert _followers(model, "sigmoid", _weight_sizes(model)) == ["squeeze", "if", "mean"]


@pytest.mark.e2e
def test_fallback_and_layers_on_a_graph_fixed_at_batch_one(tmp_path):
    """Exporters pin the batch of some graphs (torch's attention at batch 1): the fallback's and
    --layers' runs take the calibration data one sample at a time there (all at once crashed)."""
    import onnx

    first = tmp_path / "first"
    edgeport.export(DIGITS, targets=["onnx"], recipe=Recipe(), calib=CALIB, out=str(first),
                    settings=edgeport.CheckSettings(runs=2, warmup=0))
    model = onnx.load(str(first / "onnx" / "digits.onnx"))
    for value in [*model.graph.input, *model.graph.output]:
        value.type.tensor_type.shape.dim[0].dim_value = 1
    source = tmp_path / "fixed.onnx"
    onnx.save(model, str(source))
    out = tmp_path / "out"
    report = edgeport.export(str(source), targets=["onnx"], recipe=Recipe(quantize="int8", fallback="auto"),
                             calib=CALIB, eval=EVAL, budgets={"min_sqnr": 45}, out=str(out),
                             settings=edgeport.CheckSettings(runs=2, warmup=0, layers=True))
    fallback = json.loads((out / "quant_params.json").read_text())["fallback"]
    assert fallback["met"] and fallback["moved"], fallback
    assert report.target("onnx").values("layers")["compared"] >= 5


@pytest.mark.e2e
def test_android_honors_the_moved_layers(tmp_path):
    """The plan tuned on ONNX is honored by LiteRT: layers at int16 activations through
    ai-edge-quantizer (QUANTIZE ops between the int8 and int16 parts), float layers unquantized;
    the android SQNR rises with it and matches the onnx figure (digits: about 38 -> 48 dB)."""
    settings = edgeport.CheckSettings(runs=3, warmup=1)
    plain = edgeport.export(DIGITS, targets=["android"], recipe=Recipe(quantize="int8"), calib=CALIB, eval=EVAL,
                            out=str(tmp_path / "plain"), settings=settings)
    report = edgeport.export(DIGITS, targets=["onnx", "android"], recipe=Recipe(quantize="int8", fallback="auto"),
                             calib=CALIB, eval=EVAL, budgets={"min_sqnr": 45}, out=str(tmp_path / "fallback"),
                             settings=settings)
    moved = json.loads((tmp_path / "fallback" / "quant_params.json").read_text())["fallback"]["moved"]
    assert {m["to"] for m in moved} == {"int16", "float"}, moved
    target = report.target("android")
    assert any(n.startswith("at int16 activations (int8 weights): ") for n in target.notes), target.notes
    assert any(n.startswith("kept in float: ") for n in target.notes), target.notes
    before, after = plain.target("android").values("parity")["sqnr_db"], target.values("parity")["sqnr_db"]
    assert after >= before + 6.0, (before, after)
    assert after == pytest.approx(report.target("onnx").values("parity")["sqnr_db"], abs=1.0)
    assert all(b.ok for b in report.budgets)


def test_a_clipped_int16_grid_starts_at_zero():
    """The int16 output of a Relu / Clip moved to int16 is asymmetric, its lowest step 0 (ONNX
    Runtime folds the ReLU into that grid): [0, 6] -> zero point -32768, 65535 steps."""
    from edgeport.quantizers.qmath import activation_qparams_uint16_grid

    scale, zero_point = activation_qparams_uint16_grid(0.0, 6.0)
    assert int(zero_point) == -32768 and float(scale) == pytest.approx(6.0 / 65535, rel=1e-6)
    assert (-32768 - int(zero_point)) * float(scale) == 0.0


@pytest.mark.e2e
def test_calibration_auto_picks_the_method_that_measures_best(tmp_path):
    out = tmp_path / "out"
    report = edgeport.export(DIGITS, targets=["onnx"], recipe=Recipe(quantize="int8", calibration="auto"),
                             calib=CALIB, eval=EVAL, out=str(out), settings=edgeport.CheckSettings(runs=2, warmup=0))
    plan = json.loads((out / "quant_params.json").read_text())
    auto = plan["calibration"]["auto"]
    assert set(auto["measured"]) == {"minmax", "percentile", "mse"}
    best = max(auto["measured"], key=lambda m: auto["measured"][m]["sqnr_db"])
    assert auto["chose"] == best == plan["calibration"]["method"]
    assert f"{best} calibration" in report.target("onnx").recipe
    assert any(n.startswith(f"calibration auto: {best} chosen") for n in report.notes)


def test_int16_moves_are_bisected_over_the_noisiest_layers():
    """Moving layers to int16 costs no weight bits, so the count of the noisiest layers moved is
    bisected (every layer, then halves) instead of one step per layer: here the aim needs the 4
    noisiest of 10 convolutions, found in at most 1 + ceil(log2(10)) measurements, and the plan
    kept is the one measured to meet it."""
    from types import SimpleNamespace

    from onnx import TensorProto, helper, numpy_helper

    from edgeport.fallback import Fallback, Measured, _bisect, _score, _weight_sizes

    count = 10
    weights = [numpy_helper.from_array(np.ones((1, 1, 1, 1), np.float32), f"w{i}") for i in range(count)]
    nodes = [helper.make_node("Conv", ["x" if i == 0 else f"y{i - 1}", f"w{i}"], [f"y{i}"], name=f"c{i}")
             for i in range(count)]
    graph = helper.make_model(helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])],
        [helper.make_tensor_value_info(f"y{count - 1}", TensorProto.FLOAT, None)], weights))
    rows = [{"node": f"c{i}", "op": "Conv", "layer": f"c{i}", "added_noise": float(count - i),
             "error_share": (count - i) / 55, "sqnr_db": 10.0} for i in range(count)]
    plan = SimpleNamespace(float_nodes=[], precisions={}, quantized_ops=["Conv"])
    aim = {"min_cosine": 0.995}
    measured_counts = []

    def measure(recipe):
        moved = [n for n, p in recipe.overrides.layer if p == "int16"]
        measured_counts.append(len(moved))
        # the noisiest layers first: c0 removes the most noise
        metrics = {"cosine": 1.0 - 0.01 * sum(count - int(n[1:]) for n in nodes_not(moved)) / 55}
        return Measured(_score(metrics, aim), recipe, plan, None, metrics, {"cosine": metrics["cosine"]})

    def nodes_not(moved):
        return [f"c{i}" for i in range(count) if f"c{i}" not in moved]

    base = measure(Recipe(quantize="int8"))
    result = Fallback({"min_cosine": 0.99}, aim, steps=[base.entry])
    kept = _bisect(base, rows, "int16", measure, result, graph, _weight_sizes(graph), aim)
    moved = [m["node"] for m in result.moved]
    assert moved == [f"c{i}" for i in range(len(moved))] and all(m["to"] == "int16" for m in result.moved)
    # 4 moved: 1 - 0.01 * (6+5+4+3+2+1) / 55 = 0.99618; 3 moved: 0.99491, short of the aim
    assert kept.metrics["cosine"] >= 0.995 and len(moved) == 4
    assert len(measured_counts) - 1 <= 1 + 4
    probes = [s for s in result.steps if "int16_probe" in s]
    assert [s["int16_probe"] for s in probes if "reverted" not in s] == [len(moved)]


def test_a_tensor_read_only_by_a_relu_takes_its_grid():
    """A fused int8 graph quantizes a conv on its ReLU's grid; the plan gives the tensor a ReLU
    alone reads the ReLU's output grid, so a ReLU that cannot be fused (a mixed int8 / int16
    graph) clips the same values; a tensor with other readers keeps its own."""
    from onnx import TensorProto, helper

    from edgeport.quantizers import _clip_before_relus
    from edgeport.quantizers.plan import ActivationParams

    graph = helper.make_graph(
        [helper.make_node("Relu", ["a"], ["r"]), helper.make_node("Relu", ["b"], ["s"]),
         helper.make_node("Add", ["b", "s"], ["y"])],
        "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1]) for n in ("a", "b")],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1]) for n in ("r", "y")])
    wide = ActivationParams(0.08, 24, (-13.0, 8.9), (-13.0, 8.9))
    clipped = ActivationParams(0.035, -128, (0.0, 8.9), (0.0, 8.9))
    activations = {"a": wide, "r": clipped, "b": wide, "s": clipped}
    _clip_before_relus(helper.make_model(graph), activations)
    assert (activations["a"].scale, activations["a"].zero_point, activations["a"].observed) == (0.035, -128, (-13.0, 8.9))
    assert activations["b"] is wide  # also read by the Add


def test_a_fused_activations_noise_is_its_producers():
    """A conv's output is rounded after its ReLU: the ReLU row's added noise goes to the conv (the
    layer a move can take to int16 / float), which keeps its own."""
    from onnx import TensorProto, helper, numpy_helper

    from edgeport.fallback import _onto_producers, _weight_sizes, _weightless

    graph = helper.make_model(helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"], name="conv"), helper.make_node("Relu", ["c"], ["r"], name="relu"),
         helper.make_node("Mul", ["r", "r"], ["p"], name="square")],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])],
        [helper.make_tensor_value_info("p", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.ones((1, 1, 1, 1), np.float32), "w")]))
    rows = [{"node": "conv", "op": "Conv", "layer": "conv", "added_noise": 0.01, "error_share": 0.1, "sqnr_db": 30.0},
            {"node": "relu", "op": "Relu", "layer": "relu", "added_noise": 0.08, "error_share": 0.8, "sqnr_db": 9.0},
            {"node": "square", "op": "Mul", "layer": "square", "added_noise": 0.01, "error_share": 0.1, "sqnr_db": 8.0}]
    merged = {r["node"]: r for r in _onto_producers(rows, graph, {"conv": "features.0"}) if r["added_noise"]}
    assert merged["conv"]["added_noise"] == pytest.approx(0.09) and merged["conv"]["error_share"] == pytest.approx(0.9)
    assert merged["conv"]["layer"] == "conv"  # its own row kept its layer
    alone = {r["node"]: r for r in _onto_producers(rows[1:], graph, {"conv": "features.0"}) if r["added_noise"]}
    assert alone["conv"]["layer"] == "features.0" and alone["conv"]["added_noise"] == pytest.approx(0.08)
    assert "relu" not in merged and merged["square"]["added_noise"] == 0.01
    # the square reads no weight: a float move of it costs no weight bits
    assert [r["node"] for r in _weightless(list(merged.values()), _weight_sizes(graph))] == ["square"]


@pytest.mark.e2e
@pytest.mark.skipif(importlib.util.find_spec("silero_vad") is None, reason="the zoo extra is not installed")
def test_fallback_meets_the_goal_on_the_trained_voice_detector(tmp_path):
    """silero-vad (trained, from its wheel) on the zoo's speech: int8 is at cosine 0.95 on onnx.
    Its STFT's power spectrum loses its small bins to any integer grid and shows the noise only
    in the conv after it; the fallback moves the spectrum's ops (no weights) to float and the
    convs to int16, and both targets meet 0.99 on other data."""
    import sys

    sys.path.insert(0, str(ROOT))  # the zoo's data makers live with the benchmarks
    from benchmarks import zoo

    entry = zoo.get("silero_vad_16k")
    for part in ("calib", "eval"):
        (tmp_path / part).mkdir()
    calib = entry.write_data(tmp_path / "calib", 64, seed=zoo.SEED)
    evaluation = entry.write_data(tmp_path / "eval", 64, seed=zoo.SEED + 1)
    out = tmp_path / "out"
    result = run_cli("export", entry.source, "--target", "onnx,android", "--quantize", "int8", "--fallback", "auto",
                     "--min-cosine", "0.99", "--calib", str(calib), "--eval", str(evaluation), "--out", str(out),
                     "--runs", "2", "--warmup", "0")
    assert result.returncode == 0, result.stderr
    report = load_report(out)
    for target in report["targets"]:
        assert target["checks"]["parity"]["cosine"] >= 0.99, (target["target"], target["checks"]["parity"])
    fallback = json.loads((out / "quant_params.json").read_text())["fallback"]
    moved = {m["node"]: m["to"] for m in fallback["moved"]}
    assert fallback["met"] and moved.get("/model/stft/Pow_1") == "float", fallback["moved"]
    assert fallback["float_weight_share"] == 0.0


@pytest.mark.e2e
def test_android_finds_the_layers_of_nodes_named_with_at(tmp_path):
    """paddle2onnx names nodes `Conv@1`, ...: litert-torch cuts module names at '@', so the modules
    are named `Conv#1`; every layer the plan moves is found in the .tflite (none is left at int8
    for want of a name)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    convs = [helper.make_node("Conv", ["x" if i == 0 else f"r{i - 1}", f"w{i}", f"b{i}"], [f"c{i}"], name=f"Conv@{i}",
                              pads=[1, 1, 1, 1]) for i in range(3)]
    relus = [helper.make_node("Relu", [f"c{i}"], [f"r{i}"], name=f"Relu@{i}") for i in range(3)]
    inits = [t for i in range(3) for t in (
        numpy_helper.from_array(rng.standard_normal((4, 3 if i == 0 else 4, 3, 3)).astype(np.float32), f"w{i}"),
        numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), f"b{i}"))]
    graph = helper.make_graph([n for pair in zip(convs, relus) for n in pair], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("r2", TensorProto.FLOAT, [1, 4, 8, 8])], inits)
    source = tmp_path / "paddle_named.onnx"
    source.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    data = tmp_path / "x.npz"
    np.savez(data, x=rng.standard_normal((16, 3, 8, 8)).astype(np.float32))
    out = tmp_path / "out"
    result = run_cli("export", str(source), "--target", "android", "--quantize", "int8", "--override", "Conv@1=int16",
                     "--override", "Conv@2=float", "--calib", str(data), "--out", str(out), "--runs", "1",
                     "--warmup", "0")
    assert result.returncode == 0, result.stderr
    notes = load_report(out)["targets"][0]["notes"]
    assert any(n.startswith("at int16 activations (int8 weights): 1 layer(s) (Conv#1)") for n in notes), notes
    assert any(n.startswith("kept in float: 1 layer(s) (Conv#2)") for n in notes), notes
    assert not any("no op of their own" in n for n in notes), notes
