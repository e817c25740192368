"""The conformance zoo (benchmarks/zoo, issue #15): the registry, its op coverage, and a fast
subset of the matrix (fp32 to onnx and onnx-mobile, parity with the float model).

The whole matrix is a benchmark (`benchmarks/zoo.py`), not a test.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from conftest import ROOT

import edgeport

pytestmark = pytest.mark.skipif(
    any(importlib.util.find_spec(p) is None for p in ("torch", "torchvision", "timm", "transformers")),
    reason="the zoo extra is not installed (pip install -e .[zoo])")

# chosen to cover the op list between them (see test_subset_covers_the_op_list)
SUBSET = ("face_detector", "conv_autoencoder", "masked_pool", "albert", "bert_tiny", "mobilenet_v3_small",
          "efficientnet_b0", "shufflenet_v2", "lraspp", "kws_gru", "ppocr_mobile_cls")


@pytest.fixture(scope="module")
def zoo():
    from benchmarks import zoo

    return zoo


@pytest.fixture(scope="module")
def features(zoo):
    """entry name -> the op-list features it exercises: every factory built once (seeded random
    weights) and run once, ATen ops recorded; ONNX files read as they are."""
    from benchmarks.zoo.coverage import entry_features

    return {name: entry_features(entry) for name, entry in zoo.ENTRIES.items()}


def test_registry_holds_30_architectures_from_packages_with_realistic_data(zoo):
    from_packages = [e for e in zoo.ENTRIES.values() if e.family not in ("ops", "autoencoder", "trained")]
    assert len(from_packages) >= 30
    for entry in zoo.ENTRIES.values():
        assert not entry.missing(), entry.missing()
        data = entry.data(2)
        assert set(data) == {i.name for i in entry.inputs}
        for spec in entry.inputs:
            array = data[spec.name]
            assert array.dtype == np.dtype(spec.dtype) and len(array) == 2, (entry.name, spec.name)
            assert np.isfinite(array).all(), (entry.name, spec.name)
            if array.dtype.kind == "f":  # (an int input may be one value: silero's sample rate)
                assert array.std() > 0, (entry.name, spec.name)
    text = [e for e in zoo.ENTRIES.values() if e.family == "text"]
    assert text and all([i.dtype for i in e.inputs] == ["int64", "int64"] for e in text)
    assert zoo.get("bert_tiny").inputs[0].name == "input_ids"


def test_data_is_seeded(zoo):
    first, again = zoo.get("ppocr_v4_rec").data(2), zoo.get("ppocr_v4_rec").data(2)
    assert np.array_equal(first["x"], again["x"])


def test_every_factory_builds_and_runs(zoo, features):
    factories = [name for name, e in zoo.ENTRIES.items() if not e.is_onnx]
    assert len(factories) >= 30 and all(name in features for name in factories)


def test_factories_are_seeded(zoo):
    import torch

    first = zoo.build(zoo.get("kws_gru")).state_dict()
    again = zoo.build(zoo.get("kws_gru")).state_dict()
    assert all(torch.equal(first[k], again[k]) for k in first)


def _table(features, names):
    table = {}
    for name in names:
        for feature in features[name]:
            table.setdefault(feature, []).append(name)
    return table


def test_zoo_covers_the_op_list(features):
    from benchmarks.zoo.coverage import FEATURES, render

    table = _table(features, features)
    assert [f for f in FEATURES if not table.get(f)] == [], render(table)


def test_subset_covers_the_op_list(features):
    """The e2e subset below exercises every op of the list on its own."""
    from benchmarks.zoo.coverage import FEATURES, render

    table = _table(features, SUBSET)
    assert [f for f in FEATURES if not table.get(f)] == [], render(table)


def test_formats_keep_large_models_off_the_c_library(zoo):
    assert "c" in zoo.formats(zoo.get("kws_gru"))
    assert "c" not in zoo.formats(zoo.get("ddddocr_common"))  # 13.5 M weights: no board holds them
    assert zoo.formats(zoo.get("mobilenet_v2"))[:5] == ("onnx", "ort", "tflite", "mlpackage", "tfjs")


@pytest.mark.e2e
@pytest.mark.parametrize("name", SUBSET)
def test_fp32_export_matches_the_float_model(zoo, name, tmp_path, monkeypatch):
    from benchmarks.zoo.trained import pin_input_dims

    monkeypatch.chdir(ROOT)  # `benchmarks.zoo.<module>:<factory>` imports from the repository root
    entry = zoo.get(name)
    data = entry.write_data(tmp_path, count=4, positional=True)
    source, shapes, dtype = entry.source, None, "float32"
    if entry.is_onnx:
        source = str(pin_input_dims(entry, tmp_path))
    elif len(entry.inputs) > 1:
        shapes = [i.shape for i in entry.inputs]
        dtypes = {i.dtype for i in entry.inputs}
        dtype = dtypes.pop() if len(dtypes) == 1 else "float32"
    report = edgeport.export(source, targets="onnx,onnx-mobile", recipe=edgeport.Recipe(quantize="none"),
                             out=tmp_path / "out", calib=str(data), input_shapes=shapes, input_dtype=dtype,
                             settings=edgeport.CheckSettings(runs=2, warmup=1))
    for target in ("onnx", "onnx-mobile"):
        parity = report.target(target).values("parity")
        assert parity, report.target(target).checks
        assert parity["cosine"] >= 0.9999, (name, target, parity)
