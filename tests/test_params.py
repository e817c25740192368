"""The parameter map: PyTorch parameter path <-> ONNX initializer, made once when a source loads.

The fast tests build small ONNX graphs by hand (onnx.helper) next to a PyTorch module, so every
pairing rule is exercised without an exporter: same name, same normalized name, same values, a
value the exporter rewrote (BatchNorm folded), a parameter the graph does not hold. The e2e tests
load real sources (torch.onnx dynamo export) and prepare a real PT2E graph.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from types import SimpleNamespace

import numpy as np
import pytest

from conftest import CALIB, DIGITS, needs_torch
from edgeport.model import FloatModel
from edgeport.params import Param, ParamMap, fingerprint, normalized

needs_onnx = pytest.mark.skipif(importlib.util.find_spec("onnx") is None, reason="onnx is not installed")


def _onnx_model(initializers: dict[str, np.ndarray], conv_weights: tuple[str, ...] = ()):
    """A graph holding `initializers`; each name in `conv_weights` feeds a Conv of the input."""
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("Conv", ["input", name], [f"out_{i}"], name=f"conv_{i}")
             for i, name in enumerate(conv_weights)]
    outputs = [helper.make_tensor_value_info(f"out_{i}", TensorProto.FLOAT, None) for i in range(len(nodes))]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 2, 4, 4])],
                              outputs, initializer=[numpy_helper.from_array(v, n) for n, v in initializers.items()])
    return helper.make_model(graph)


def _module():
    """conv (`features.0`) -> BatchNorm (`features.1`) -> conv (`features.2`), fixed seed."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Module()
    model.features = nn.Sequential(nn.Conv2d(2, 3, 1), nn.BatchNorm2d(3), nn.Conv2d(3, 2, 1))
    return model.eval()


def _value(module, path: str) -> np.ndarray:
    return dict(module.named_parameters())[path].detach().numpy().copy()


# ------------------------------------------------------------------ pure functions

@pytest.mark.parametrize("name", ["features.0.weight", "features_0_weight", "Features.0.Weight", "/features/0/weight"])
def test_normalized_spellings_of_a_parameter_path_agree(name):
    assert normalized(name) == "features_0_weight"


def test_fingerprint_is_stable_and_tells_dtype_shape_and_values_apart():
    w = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert fingerprint(w) == fingerprint(w.copy()) == fingerprint(np.asfortranarray(w))
    assert len(fingerprint(w)) == 16
    others = [w.reshape(3, 2), w.astype(np.float16), w + np.float32(1e-6)]
    assert len({fingerprint(w), *map(fingerprint, others)}) == 4


# ------------------------------------------------------------------ building the map

@needs_onnx
def test_onnx_source_map_names_float_initializers_only():
    model = _onnx_model({"w": np.ones((2, 2, 1, 1), np.float32), "shape": np.array([1, 2], np.int64)}, ("w",))
    params = ParamMap.build(model)
    assert [(p.path, p.onnx, p.shape) for p in params] == [(None, "w", (2, 2, 1, 1))]
    assert params.torch_path("w") is None and params.by_onnx("shape") is None


@needs_torch
@needs_onnx
def test_parameters_pair_by_name_then_spelling_then_value():
    module = _module()
    model = _onnx_model({
        "features.0.weight": _value(module, "features.0.weight"),   # same name (torch's dynamo exporter)
        "features_0_bias": _value(module, "features.0.bias"),       # another spelling of the path
        "onnx::Conv_7": _value(module, "features.2.weight"),        # renamed, values unchanged
        "features.2.bias": _value(module, "features.2.bias") * 2,   # BatchNorm folded into it
        "val_3": np.zeros((2,), np.float32),                        # a constant the exporter made
    }, ("features.0.weight", "onnx::Conv_7"))
    params = ParamMap.build(model, module)
    assert params.onnx_name("features.0.weight") == "features.0.weight"
    assert params.onnx_name("features.0.bias") == "features_0_bias"
    assert params.onnx_name("features.2.weight") == "onnx::Conv_7"
    assert params.torch_path("features.2.bias") == "features.2.bias"
    assert params.by_path("features.2.bias").rewritten and not params.by_path("features.2.weight").rewritten
    assert params.by_path("features.1.weight").onnx is None  # BatchNorm's own parameters: folded away
    assert params.by_onnx("val_3").path is None
    assert params.by_onnx("onnx::Conv_7").fingerprint == fingerprint(_value(module, "features.2.weight"))
    assert len(params) == 7  # 6 parameters + the exporter's constant


@needs_torch
@needs_onnx
def test_coreml_spellings_find_the_parameter_and_ambiguous_ones_find_none():
    module = _module()
    params = ParamMap.build(_onnx_model({"features.0.weight": _value(module, "features.0.weight")}), module)
    assert params.by_spelling("features_0_weight").onnx == "features.0.weight"
    assert params.by_spelling("features_0_weight_to_fp16").onnx == "features.0.weight"
    assert params.by_spelling("const_4_to_fp16") is None  # a weight Core ML fused: no parameter path
    twins = ParamMap((Param("a.b_c", "x", (1,), "0"), Param("a_b.c", "y", (1,), "1")))
    assert twins.by_spelling("a_b_c") is None and twins.by_path("a.b_c").onnx == "x"


@needs_torch
@needs_onnx
def test_with_values_keeps_pairs_and_follows_new_values():
    import torch

    module = _module()
    model = _onnx_model({"onnx::Conv_7": _value(module, "features.2.weight")}, ("onnx::Conv_7",))
    params = ParamMap.build(model, module)
    from onnx import numpy_helper

    new = np.full((2, 3, 1, 1), 0.5, np.float32)
    model.graph.initializer[0].CopyFrom(numpy_helper.from_array(new, "onnx::Conv_7"))
    with torch.no_grad():
        module.features[2].weight.copy_(torch.from_numpy(new))
    updated = params.with_values(model, module)
    entry = updated.by_path("features.2.weight")
    assert entry.onnx == "onnx::Conv_7" and entry.fingerprint == fingerprint(new) and not entry.rewritten
    assert updated.by_path("features.0.weight") == params.by_path("features.0.weight")  # not in the graph: as it was


def test_map_is_frozen_and_a_float_model_starts_with_an_empty_one():
    params = ParamMap((Param("w", "w", (1,), "0"),))
    with pytest.raises(dataclasses.FrozenInstanceError):
        params.entries = ()
    model = FloatModel(name="m", onnx_bytes=b"", inputs=[], outputs=[], reference=lambda feeds: [],
                       reference_kind="none")
    assert len(model.params) == 0 and model.params.torch_path("w") is None


# ------------------------------------------------------------------ users of the map

@needs_torch
@needs_onnx
def test_compression_writes_through_the_map_and_refreshes_it():
    from edgeport.compression import compress_weights
    from edgeport.recipe import Recipe

    module = _module()
    weight = _value(module, "features.2.weight")
    onnx_model = _onnx_model({"onnx::Conv_7": weight}, ("onnx::Conv_7",))
    model = FloatModel(name="m", onnx_bytes=onnx_model.SerializeToString(), inputs=[], outputs=[],
                       reference=lambda feeds: [], reference_kind="pytorch", torch_module=module,
                       params=ParamMap.build(onnx_model, module))
    compressed, applied = compress_weights(model, Recipe(palettize=1))
    assert set(applied) == {"onnx::Conv_7"}
    from onnx import numpy_helper

    stored = numpy_helper.to_array(compressed.onnx_model().graph.initializer[0])
    assert len(np.unique(stored)) <= 2 and not np.array_equal(stored, weight)
    assert np.array_equal(_value(compressed.torch_module, "features.2.weight"), stored)  # renamed, found by the map
    assert np.array_equal(_value(module, "features.2.weight"), weight)  # the original module is untouched
    assert compressed.params.by_onnx("onnx::Conv_7").fingerprint == fingerprint(stored)


@needs_torch
@needs_onnx
def test_core_ml_weight_source_names_by_map_and_falls_back_to_value_for_fused_weights():
    from edgeport.exporters.coreml_weights import _WeightSource

    module = _module()
    w0, w2 = _value(module, "features.0.weight"), _value(module, "features.2.weight")
    folded = w0 * 1.5  # what the ONNX exporter made of conv + BatchNorm
    onnx_model = _onnx_model({"features.0.weight": folded, "onnx::Conv_7": w2}, ("features.0.weight", "onnx::Conv_7"))
    model = FloatModel(name="m", onnx_bytes=onnx_model.SerializeToString(), inputs=[], outputs=[],
                       reference=lambda feeds: [], reference_kind="pytorch", torch_module=module,
                       params=ParamMap.build(onnx_model, module))
    source = _WeightSource(SimpleNamespace(model=model, uncompressed=None))
    assert source.lookup("features_2_weight_to_fp16", w2.astype(np.float16)) == "onnx::Conv_7"  # by name
    assert source.lookup("const_0_to_fp16", folded.astype(np.float16)) == "features.0.weight"  # by value
    assert source.lookup("const_1", np.full(w2.shape, 9, np.float32)) is None


@needs_torch
def test_observers_take_the_plan_by_name_first_and_by_rule_scales_only_as_fallback():
    import torch
    from torch import nn

    from edgeport.exporters.tflite_pt2e import _override_observers
    from edgeport.quantizers.plan import QuantPlan, WeightParams

    class Observer(nn.Module):
        def __init__(self, peak):
            super().__init__()
            self.register_buffer("min_val", -torch.tensor(peak))
            self.register_buffer("max_val", torch.tensor(peak))
            self.ch_axis = 0

    prepared = nn.Module()
    prepared.named = Observer([1.27, 2.54])    # known by name; its plan scales are not the rule's (QAT)
    prepared.by_scale = Observer([0.127, 0.254])  # unknown by name; its rule scales key the plan
    prepared.unknown = Observer([3.81, 5.08])   # neither: the rule
    learned = WeightParams([0.5, 0.5], [0, 0], 0, "a")
    binary = WeightParams([0.25, 0.25], [0, 0], 0, "b")
    rule_key = tuple(np.float32([0.127, 0.254]) / np.float32(127))
    counts = _override_observers(prepared, QuantPlan("int8"), {"named": learned}, {rule_key: binary})
    assert counts["weights"] == 2 and counts["weights_rule"] == 1
    assert prepared.named.calculate_qparams()[0].tolist() == [0.5, 0.5]
    assert prepared.by_scale.calculate_qparams()[0].tolist() == [0.25, 0.25]
    assert np.allclose(prepared.unknown.calculate_qparams()[0].numpy(), [0.03, 0.04])


# ------------------------------------------------------------------ real sources (e2e)

@pytest.mark.e2e
@needs_torch
def test_digits_map_pairs_every_parameter_with_its_same_named_initializer():
    from edgeport.sources import load_source

    model = load_source(DIGITS, [(1, 1, 8, 8)])
    named = {path: p.detach().numpy() for path, p in model.torch_module.named_parameters()}
    paired = {p.path: p for p in model.params if p.path is not None}
    assert set(paired) == set(named)
    for path, entry in paired.items():
        assert entry.onnx == path and not entry.rewritten and entry.fingerprint == fingerprint(named[path])
    assert [p.onnx for p in model.params if p.path is None] == []  # `val_6` (a shape) is int64, not a weight


@pytest.mark.e2e
@needs_torch
def test_batchnorm_folded_by_the_onnx_exporter_is_marked_rewritten():
    from edgeport.sources import load_source

    model = load_source("testmodels.zoo:build_dscnn", [(1, 1, 49, 10)])
    assert model.params.onnx_name("features.0.weight") == "features.0.weight"
    assert model.params.by_path("features.0.weight").rewritten  # the folded conv keeps the conv's name
    assert model.params.by_path("features.1.weight").onnx is None  # BatchNorm's scale is gone
    assert not model.params.by_path("head.weight").rewritten


@pytest.mark.e2e
@pytest.mark.skipif(importlib.util.find_spec("litert_torch") is None, reason="litert-torch is not installed")
@pytest.mark.parametrize("source, shape, by_name", [
    (DIGITS, (1, 1, 8, 8), 4),
    # BatchNorm folded into the convs by prepare_pt2e and by the ONNX exporter alike, to the same
    # float32 values (same fingerprint): by name too
    ("testmodels.zoo:build_dscnn", (1, 1, 49, 10), 10),
])
def test_pt2e_weight_observers_are_found_by_parameter_path(source, shape, by_name):
    import torch
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e

    from edgeport.data import load_dataset, random_dataset
    from edgeport.exporters.tflite_pt2e import _weights_by_name
    from edgeport.quantizers import make_plan
    from edgeport.recipe import Recipe
    from edgeport.sources import load_source

    model = load_source(source, [shape])
    calib = load_dataset(CALIB, model.inputs) if source == DIGITS else random_dataset(model.inputs, 8)
    plan = make_plan(model, Recipe(quantize="int8", calib_samples=8), calib)
    quantizer = PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    prepared = prepare_pt2e(torch.export.export(model.torch_module, model.example_inputs).module(), quantizer)
    found = _weights_by_name(prepared, model.params, plan)
    assert len(found) == by_name
    for observer, planned in found.items():
        assert any(planned is w for w in plan.weights.values())
        assert observer.startswith("activation_post_process_")
