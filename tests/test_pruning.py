"""Pruning: the gradual schedule in a training loop, structured channel pruning that really shrinks
the model, and the recipe's pruning / palettes reaching every target with the same weights."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import CALIB, DIGITS, EVAL, load_report, needs_torch, run_cli

torch = pytest.importorskip("torch", reason="torch is not installed (pip install 'edgeport[torch]')")


def test_polynomial_schedule_matches_zhu_and_gupta():
    from edgeport.training.pruning import polynomial_sparsity

    assert polynomial_sparsity(0, 0.9, begin=10, end=110) == 0.0
    assert polynomial_sparsity(110, 0.9, begin=10, end=110) == 0.9
    assert polynomial_sparsity(500, 0.9, begin=10, end=110) == 0.9
    # halfway: 0.9 + (0 - 0.9) * 0.5^3
    assert polynomial_sparsity(60, 0.9, begin=10, end=110) == pytest.approx(0.9 - 0.9 * 0.125)
    assert polynomial_sparsity(60, 0.8, begin=10, end=110, initial=0.2, power=1) == pytest.approx(0.5)


@pytest.mark.e2e
def test_gradual_pruner_reaches_the_target_in_a_training_loop():
    from samples.digits.data import digits_split
    from samples.digits.model import build

    from edgeport.training.pruning import GradualPruner, GradualPruningConfig, sparsity

    torch.manual_seed(0)
    model = build().train()
    x, y, _, _ = digits_split()
    x, y = torch.from_numpy(x[:512]), torch.from_numpy(y[:512]).long()
    pruner = GradualPruner(model, GradualPruningConfig(final_sparsity=0.8, begin_step=0, end_step=40, frequency=10,
                                                       skip=("features.0",)))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    seen = []
    for step in range(50):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        seen.append(pruner.step(step))
    assert seen[0] == 0.0 and seen[-1] == 0.8
    assert all(a <= b for a, b in zip(seen, seen[1:]))  # the schedule only rises
    layers = pruner.layer_sparsity()
    assert "features.0" not in layers and all(s == pytest.approx(0.8, abs=0.01) for s in layers.values())
    pruned = pruner.finalize()
    assert not any(name.endswith("_orig") for name, _ in pruned.named_parameters())
    assert float((pruned.features[2].weight == 0).float().mean()) == pytest.approx(0.8, abs=0.01)
    assert float((pruned.features[0].weight == 0).float().mean()) == 0.0
    assert 0.5 < sparsity(pruned) < 0.8


def test_prune_channels_removes_channels_and_keeps_the_output():
    from samples.digits.model import build

    from edgeport.training.pruning import output_layers, prune_channels

    model = build()
    example = (torch.zeros(1, 1, 8, 8),)
    assert output_layers(model, example) == ["classifier.3"]
    pruned, summary = prune_channels(model, 0.5, example)
    assert summary["layers"] == {"features.0": [16, 8], "features.2": [32, 16], "classifier.1": [64, 32],
                                 "classifier.3": [10, 10]}
    assert pruned.features[2].in_channels == 8 and pruned.classifier[1].in_features == 16 * 4 * 4
    assert summary["params"][1] < 0.3 * summary["params"][0]
    assert pruned(torch.zeros(3, 1, 8, 8)).shape == (3, 10)
    assert model.features[0].out_channels == 16  # the original is untouched
    kept, _ = prune_channels(model, 0.5, example, skip=("features.0",))
    assert kept.features[0].out_channels == 16


@pytest.mark.e2e
@needs_torch
def test_structured_pruning_export_is_smaller_on_every_target(tmp_path):
    dense, pruned = tmp_path / "dense", tmp_path / "pruned"
    for out, extra in ((dense, []), (pruned, ["--prune-channels", "0.5"])):
        result = run_cli("export", DIGITS, "--target", "onnx,android,cortex-m4", "--quantize", "int8",
                         "--calib", CALIB, "--eval", EVAL, "--out", str(out), "--runs", "20", *extra)
        assert result.returncode == 0, result.stderr
    before, after = load_report(dense), load_report(pruned)
    assert after["recipe"]["prune_channels"] == 0.5
    sizes = {r["target"]: r["checks"]["size"]["size_bytes"] for r in before["targets"]}
    for target in after["targets"]:
        assert target["checks"]["size"]["size_bytes"] < 0.5 * sizes[target["target"]], target["target"]
        assert "50% of channels removed" in target["recipe"]
    params = json.loads((pruned / "quant_params.json").read_text())["structure"]
    assert params["layers"]["features.2"] == [32, 16]
    arena = {name: json.loads((out / "cortex-m4" / "digits" / "edgeport.json").read_text())["library"]["arena_bytes"]
             for name, out in (("dense", dense), ("pruned", pruned))}
    assert arena["pruned"] < arena["dense"]
    onnx = next(t for t in after["targets"] if t["target"] == "onnx")["checks"]
    assert onnx["size"]["alpha"] > 3  # α against the model as given, not the pruned one


@pytest.mark.e2e
@needs_torch
def test_pruning_and_palettes_reach_tflite_with_the_same_weights(tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    out = tmp_path / "out"
    result = run_cli("export", DIGITS, "--target", "onnx,android", "--quantize", "int8", "--prune", "0.5",
                     "--palettize", "4", "--calib", CALIB, "--eval", EVAL, "--out", str(out), "--runs", "10")
    assert result.returncode == 0, result.stderr
    report = load_report(out)
    android = next(t for t in report["targets"] if t["target"] == "android")
    assert any("stored dense in TFLite" in n for n in android["notes"])
    assert report["cross_target"][0]["max_abs_diff"] == 0  # android computes exactly what onnx does
    interpreter = Interpreter(model_path=str(out / "android" / "digits.tflite"))
    # the weights are the int8 tensors with per-channel scales (activations have one scale)
    details = [d for d in interpreter.get_tensor_details()
               if d["dtype"] == np.int8 and len(d["quantization_parameters"]["scales"]) > 1]
    weights = [np.moveaxis(interpreter.get_tensor(d["index"]), d["quantization_parameters"]["quantized_dimension"], 0)
               for d in details]
    assert sorted(w.shape[0] for w in weights) == [10, 16, 32, 64]
    for w in weights:
        assert np.mean(w == 0) >= 0.49  # the recipe's zeros survived quantization
        for row in w.reshape(w.shape[0], -1):
            assert len(np.unique(row[row != 0])) <= 16  # 4-bit palette: 16 values, one scale per channel


@needs_torch
def test_structured_pruning_of_an_onnx_source_is_refused(tmp_path):
    result = run_cli("export", DIGITS, "--target", "onnx", "--out", str(tmp_path / "a"), "--input-shape", "1,1,8,8")
    assert result.returncode == 0, result.stderr
    source = tmp_path / "a" / "onnx" / "digits.onnx"
    result = run_cli("export", str(source), "--prune-channels", "0.5", "--out", str(tmp_path / "b"))
    assert result.returncode == 2
    assert "prune_channels rewrites the PyTorch module" in result.stderr and len(result.stderr.splitlines()) == 1
    assert not (tmp_path / "b").exists()
