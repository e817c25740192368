"""Quantizers: one planner per recipe scheme, each computing a `QuantPlan` from the float model.

The plan is made once per export and shared by every target's exporter.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from edgeport.data import Dataset
from edgeport.errors import InputError
from edgeport.model import FloatModel
from edgeport.quantizers import qmath
from edgeport.quantizers.plan import ActivationParams, QuantPlan, WeightParams
from edgeport.recipe import Recipe
from edgeport.registry import Registry

Planner = Callable[[FloatModel, Recipe, "Dataset | None"], QuantPlan]
QUANTIZERS: Registry[Planner] = Registry("recipe")

# Ops whose second input is a weight that int8 schemes quantize, and its output-channel axis.
STATIC_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
DYNAMIC_OPS = ("Gemm", "MatMul")
# Ops that move values without changing them: their int8 output must reuse the input's scale and
# zero point (TFLite requires it and onnxruntime's QDQ quantizer does the same).
PASS_THROUGH_OPS = ("MaxPool", "GlobalMaxPool", "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze",
                    "Identity", "Slice", "Gather", "Split", "DepthToSpace", "SpaceToDepth")  # ORT has int8 dynamic kernels for these (like torch's dynamic quantization)


def make_plan(model: FloatModel, recipe: Recipe, calib: Dataset | None) -> QuantPlan:
    """Compute the recipe's quantization parameters for `model` (the one public entry point)."""
    if recipe.needs_calibration and calib is None:
        raise InputError(f"recipe '{recipe.quantize}' needs calibration data (--calib FILE)")
    return QUANTIZERS.get(recipe.quantize)(model, recipe, calib)


def weight_axis(node, weight_ndim: int) -> int:
    """Output-channel axis of the weight input of `node`."""
    if node.op_type == "Conv":
        return 0
    if node.op_type == "ConvTranspose":
        return 1
    if node.op_type == "Gemm":
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        return 0 if trans_b else 1
    return weight_ndim - 1  # MatMul: (..., K, N) -> per N


def float_nodes(model, layers: dict[str, str], keep_float: tuple[str, ...]) -> list[str]:
    """Node names matched by `keep_float` entries (layer path, node name or op type)."""
    kept = []
    for entry in keep_float:
        hits = [n.name for n in model.graph.node
                if entry in (n.name, n.op_type) or layers.get(n.name, "") == entry
                or layers.get(n.name, "").startswith(entry + ".")]
        if not hits:
            known = sorted({v for v in layers.values() if v} | {n.op_type for n in model.graph.node})
            raise InputError(f"keep_float: '{entry}' matches no layer, node or op type "
                             f"(layers and ops: {', '.join(known[:30])})")
        kept += hits
    return list(dict.fromkeys(kept))


def weight_inputs(onnx_model, op_types: tuple[str, ...], skip: set[str]):
    """Yield (node, initializer name, float32 array) for the weight input of each node of `op_types`
    not in `skip`; each initializer once, only float32 tensors of rank >= 2."""
    from onnx import numpy_helper

    inits = {i.name: i for i in onnx_model.graph.initializer}
    seen = set()
    for node in onnx_model.graph.node:
        if node.op_type not in op_types or node.name in skip or len(node.input) < 2:
            continue
        name = node.input[1]
        if name not in inits or name in seen:
            continue
        seen.add(name)
        w = numpy_helper.to_array(inits[name])
        if w.dtype == np.float32 and w.ndim >= 2:
            yield node, name, w


def plan_weights(model: FloatModel, recipe: Recipe, op_types: tuple[str, ...], onnx_model,
                 skip: set[str]) -> dict[str, WeightParams]:
    weights = {}
    for node, name, w in weight_inputs(onnx_model, op_types, skip):
        axis = weight_axis(node, w.ndim) if recipe.per_channel else None
        scales = qmath.weight_scales(w, axis)
        weights[name] = WeightParams(scale=scales.tolist(), zero_point=[0] * len(scales), axis=axis,
                                     layer=model.layers.get(node.name, node.name))
    return weights


@QUANTIZERS.register("none")
def plan_none(model: FloatModel, recipe: Recipe, calib: Dataset | None) -> QuantPlan:
    return QuantPlan(scheme="none")


@QUANTIZERS.register("fp16")
def plan_fp16(model: FloatModel, recipe: Recipe, calib: Dataset | None) -> QuantPlan:
    onnx_model = model.onnx_model()
    return QuantPlan(scheme="fp16", float_nodes=float_nodes(onnx_model, model.layers, recipe.keep_float))


@QUANTIZERS.register("dynamic-int8")
def plan_dynamic_int8(model: FloatModel, recipe: Recipe, calib: Dataset | None) -> QuantPlan:
    onnx_model = model.onnx_model()
    kept = float_nodes(onnx_model, model.layers, recipe.keep_float)
    weights = plan_weights(model, recipe, DYNAMIC_OPS, onnx_model, set(kept))
    return QuantPlan(scheme="dynamic-int8", weights=weights, quantized_ops=list(DYNAMIC_OPS), float_nodes=kept)


@QUANTIZERS.register("int8")
def plan_int8(model: FloatModel, recipe: Recipe, calib: Dataset | None) -> QuantPlan:
    return _plan_static(model, recipe, calib, qmath.activation_qparams)


@QUANTIZERS.register("int16x8")
def plan_int16x8(model: FloatModel, recipe: Recipe, calib: Dataset | None) -> QuantPlan:
    return _plan_static(model, recipe, calib, qmath.activation_qparams_int16)


def _plan_static(model: FloatModel, recipe: Recipe, calib: Dataset, activation_qparams) -> QuantPlan:
    """Static schemes: calibrated activation parameters by `activation_qparams`, int8 weights."""
    from edgeport.quantizers.calibration import activation_ranges

    onnx_model = model.onnx_model()
    kept = float_nodes(onnx_model, model.layers, recipe.keep_float)
    data = calib.take(recipe.calib_samples)
    ranges, observed = activation_ranges(onnx_model, data, recipe.calibration, recipe.percentile)
    activations = {}
    for name, (lo, hi) in ranges.items():
        scale, zero_point = activation_qparams(lo, hi)
        activations[name] = ActivationParams(float(scale), int(zero_point), (lo, hi), observed[name])
    for node in onnx_model.graph.node:  # graph order is topological: sharing chains propagate
        if node.op_type in PASS_THROUGH_OPS and node.input and node.input[0] in activations:
            for out in node.output:
                if out in activations:
                    activations[out] = activations[node.input[0]]
    return QuantPlan(
        scheme=recipe.quantize, activations=activations,
        weights=plan_weights(model, recipe, STATIC_OPS, onnx_model, set(kept)),
        quantized_ops=sorted({n.op_type for n in onnx_model.graph.node}),
        float_nodes=kept,
        calibration={"method": recipe.calibration, "samples": len(data), "source": calib.source,
                     **({"percentile": recipe.percentile} if recipe.calibration == "percentile" else {})})
